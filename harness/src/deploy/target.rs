//! What a target supplies to the one deploy ([`Target`]), and what it is
//! given: the observation every target shares ([`Shared`]) and the plan's
//! [`Context`] (its hooks and checks, written once). The core
//! (`deploy::core`) runs any target; the executor (`deploy::executor`)
//! calls the target's [`Target::act`].

use std::fmt;

use serde::Serialize;

use bollard::auth::DockerCredentials;
use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder};

use super::history::{Entry, Outcome};
use super::hooks;
use super::names::Colour;
use super::plan::{Core, HookKind, Plan, Planned, Step};
use crate::config::Config;
use crate::engine::{tolerate, Engine};
use crate::progress::Reporter;
use crate::release::Release;

/// What differs between targets. A new target (another orchestrator, a
/// host reached another way) is a new module implementing this. (Its
/// futures are awaited on the caller's task, never sent to another
/// thread: no `Send` bound is needed.)
#[allow(async_fn_in_trait)]
pub trait Target: Sized {
    /// What the target reads of prod before a deploy.
    type Observed;
    /// The target's own actions, each run by [`Target::act`].
    type Action: Clone + fmt::Debug + fmt::Display + Serialize;

    /// Where it deploys, in plans and messages: `prod`, `the swarm`.
    const PLACE: &'static str;

    fn config(&self) -> &Config;

    /// The URL users reach.
    fn url(&self) -> anyhow::Result<String>;

    /// What prod holds; `release`: the release a deploy (or its dry run)
    /// brings, when there is one (a target may read its image).
    async fn observe(
        &self,
        engine: &Engine,
        shared: &Shared,
        release: Option<&Release>,
    ) -> anyhow::Result<Self::Observed>;

    /// The release users reach now, if any.
    async fn live(&self, engine: &Engine, observed: &Self::Observed) -> anyhow::Result<Option<Release>>;

    /// The steps that take prod from `observed` to serving `context.release`.
    fn plan(&self, observed: &Self::Observed, context: &Context) -> Planned<Self::Action>;

    async fn act(&self, on: &On<'_>, action: &Self::Action) -> anyhow::Result<()>;

    /// What a failure at step `failed` of `plan` should quote (the new
    /// container's last log lines), if anything.
    async fn explain(&self, _on: &On<'_>, _plan: &Plan<Self::Action>, _failed: usize) -> String {
        String::new()
    }

    /// The name of what `undo` rolls back, when it is a rollback that the
    /// failure's message should name.
    fn rolls_back(_undo: &Self::Action) -> Option<&str> {
        None
    }

    /// The release a rollback without `--to` goes back to when the history
    /// names none before `live`: what the target kept of it, if anything.
    async fn kept_before(&self, engine: &Engine, observed: &Self::Observed, live: &Release) -> anyhow::Result<Release>;

    /// The steps that take the service off prod (`harness remove`): its
    /// containers or services, its network, its volumes with `volumes`;
    /// the lock and the history stay.
    fn removal(&self, observed: &Self::Observed, volumes: bool) -> Planned<Self::Action>;

    /// What a successful run of `plan` reports.
    fn deployed(&self, plan: &Plan<Self::Action>, observed: &Self::Observed, before: Option<Release>) -> Deployed;
}

/// What every target observes the same way, on the engine a deploy talks
/// to.
#[derive(Debug, Clone, Default)]
pub struct Shared {
    /// Who holds the deploy lock, when another deploy holds it.
    pub lock_holder: Option<String>,
    /// The history's container is there.
    pub history: bool,
    /// The history's entries, oldest first (none when it cannot be read: a
    /// target then trusts nothing it says).
    pub entries: Vec<Entry>,
}

impl Shared {
    /// How the history's last deploy or rollback of `image` ended (a
    /// removal of it is no deploy).
    pub fn last_outcome(&self, image: &str) -> Option<Outcome> {
        let deploys = self.entries.iter().rev().filter(|e| !matches!(e.kind, super::history::Kind::Remove));
        deploys.filter(|e| e.release.image == image).map(|e| e.outcome).next()
    }
}

/// What a target's plan is given besides what it observed.
pub struct Context<'a> {
    pub config: &'a Config,
    pub release: &'a Release,
    /// This deploy's preview token (a single host's proxy).
    pub token: &'a str,
    pub shared: &'a Shared,
    /// The URL users reach.
    pub url: String,
    /// Images the shared steps pull before the target's.
    pub pulled: Vec<String>,
}

impl Context<'_> {
    /// The hook `kind`, when configured.
    pub fn hook<A>(&self, kind: HookKind, colour: Option<Colour>) -> Option<Step<A>> {
        hooks::planned(self.config, kind, self.release, &self.url, colour).map(Step::new)
    }

    /// The revision check (`[version]`, when set) and the post-deploy
    /// checks (`[[checks]]`, when any), through the proxy with `preview`
    /// (the token that reaches the release before users do) or as users
    /// reach it.
    pub fn checks<A>(&self, preview: Option<&str>) -> Vec<Step<A>> {
        let preview = preview.map(str::to_owned);
        let url = &self.url;
        let mut steps = Vec::new();
        if let Some(version) = &self.config.version {
            steps.push(Step::new(Core::CheckVersion {
                url: format!("{url}{}", version.path),
                field: version.field.clone(),
                revision: self.release.revision.clone(),
                preview: preview.clone(),
            }));
        }
        // Validated when the configuration was loaded.
        let checks = self.config.checks().unwrap_or_default();
        if !checks.is_empty() {
            steps.push(Step::new(Core::Checks {
                url: url.clone(),
                names: checks.iter().map(|c| c.name().to_owned()).collect(),
                checks,
                revision: self.release.revision.clone(),
                preview,
                secrets: self.config.app_secrets(),
                repo: self.config.repo.clone(),
            }));
        }
        steps
    }
}

/// What a deploy did.
#[derive(Debug, Clone, Serialize)]
pub struct Deployed {
    /// What serves the release: a colour's container, or a service.
    pub container: String,
    pub image: String,
    pub url: String,
    /// What served before: the old colour's container, or the image of
    /// the release the swarm ran.
    pub previous: Option<String>,
    /// False when prod already ran this release as planned: nothing was
    /// stopped or started.
    pub replaced: bool,
}

/// What a target's action is carried out with (the executor gives it).
pub struct On<'a> {
    pub engine: &'a Engine,
    pub reporter: &'a Reporter,
    /// The registry's, for what the engine pulls.
    pub credentials: Option<DockerCredentials>,
}

impl On<'_> {
    pub async fn create_container(&self, name: &str, body: &ContainerCreateBody) -> anyhow::Result<()> {
        let options = CreateContainerOptionsBuilder::default().name(name).build();
        let create = self.engine.docker.create_container(Some(options), body.clone());
        self.engine.call(format!("to create {name}"), create).await?;
        Ok(())
    }

    /// Removes a container whatever its state; nothing when there is none.
    pub async fn remove_container(&self, name: &str) -> anyhow::Result<()> {
        let options = RemoveContainerOptionsBuilder::default().force(true).build();
        let removed = self.engine.docker.remove_container(name, Some(options));
        Ok(tolerate(self.engine.call(format!("to remove {name}"), removed).await, 404)?)
    }
}
