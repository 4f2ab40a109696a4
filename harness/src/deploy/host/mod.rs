//! The single-host target (`prod.kind = "engine"`): blue-green behind
//! HAProxy on one Docker engine, reached through its TLS API.
//!
//! On prod, for project `P` (see [`HostNames`]): the database and its
//! volume, the two colours of the app, and the proxy (the only thing
//! published), on the project's network. [`observe`] reads them,
//! [`plan::plan`] plans a deploy from them (pure), [`act`] carries out the
//! plan's actions; [`proxy`] renders HAProxy's configuration. [`details`]
//! and [`logs`] read what runs for `harness details` and `harness logs`.

pub mod act;
pub mod containers;
pub mod details;
#[cfg(test)]
mod golden;
pub mod logs;
pub mod observe;
pub mod plan;
pub mod proxy;

use anyhow::Context as _;

use self::plan::{Action, Observed};
use super::names::Colour;
use super::plan::{Plan, Planned};
use super::target::{Context, Deployed, On, Shared, Target};
use crate::config::Config;
use crate::engine::Engine;
use crate::release::Release;

/// Names of the project's containers on prod, from the project `P` (the
/// service's name): a network `P`, each accessory `A` as the container
/// `P-A` with its named volume `P-A` (books-ms's database: `P-db`), the
/// two colours of the app `P-blue` and `P-green`, the proxy `P-proxy`.
/// `P-app` and `P-app-previous` are what deploys before blue-green left
/// (one app container published on the port): the first blue-green deploy
/// removes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostNames {
    pub project: String,
    pub network: String,
    /// The accessory `db`'s container (what `harness logs --accessory db`
    /// and `harness details` read).
    pub db: String,
    pub proxy: String,
    pub legacy_app: String,
    pub legacy_previous: String,
}

impl HostNames {
    pub fn new(project: &str) -> Self {
        HostNames {
            project: project.to_owned(),
            network: project.to_owned(),
            db: format!("{project}-db"),
            proxy: format!("{project}-proxy"),
            legacy_app: format!("{project}-app"),
            legacy_previous: format!("{project}-app-previous"),
        }
    }

    /// The container of one colour.
    pub fn colour(&self, colour: Colour) -> String {
        format!("{}-{colour}", self.project)
    }

    /// The container of the accessory `name`, and its volume.
    pub fn accessory(&self, name: &str) -> String {
        format!("{}-{name}", self.project)
    }
}

/// A deploy to one Docker engine.
pub struct Host<'a> {
    pub config: &'a Config,
    pub names: HostNames,
}

impl<'a> Host<'a> {
    pub fn new(config: &'a Config) -> Self {
        Host { config, names: HostNames::new(config.project()) }
    }
}

impl Target for Host<'_> {
    type Observed = Observed;
    type Action = Action;

    const PLACE: &'static str = "prod";

    fn config(&self) -> &Config {
        self.config
    }

    fn url(&self) -> anyhow::Result<String> {
        self.config.prod_url()
    }

    async fn observe(&self, engine: &Engine, _shared: &Shared, _release: Option<&Release>) -> anyhow::Result<Observed> {
        observe::observe(engine, &self.names, self.config.accessories.keys().map(String::as_str)).await
    }

    async fn live(&self, engine: &Engine, observed: &Observed) -> anyhow::Result<Option<Release>> {
        match observed.live() {
            Some(live) => Ok(observe::release_of(engine, &self.names.colour(live)).await?),
            None => Ok(None),
        }
    }

    fn plan(&self, observed: &Observed, context: &Context) -> Planned<Action> {
        plan::plan(observed, context)
    }

    async fn act(&self, on: &On<'_>, action: &Action) -> anyhow::Result<()> {
        act::act(on, &self.names, &proxy::Backends::of(self.config), action).await
    }

    /// The new colour's last log lines, once it was created.
    async fn explain(&self, on: &On<'_>, plan: &Plan<Action>, failed: usize) -> String {
        let Some(new) = plan.colour.map(|colour| self.names.colour(colour)) else { return String::new() };
        let created = plan.steps[..failed]
            .iter()
            .any(|s| matches!(&s.action, super::plan::Op::Target(Action::Create { name, .. }) if *name == new));
        if !created {
            return String::new();
        }
        format!("\nthe last log lines of {new}:\n{}", act::last_logs(on.engine, &new).await)
    }

    fn removal(&self, observed: &Observed, volumes: bool) -> Planned<Action> {
        plan::removal(observed, self.config, volumes)
    }

    /// The stopped colour the last deploy kept.
    async fn kept_before(&self, engine: &Engine, observed: &Observed, _live: &Release) -> anyhow::Result<Release> {
        let live = observed.live().context("nothing is live on prod")?;
        let kept = self.names.colour(live.other());
        observe::release_of(engine, &kept).await?.with_context(|| {
            format!(
                "no release before the live one is in prod's history or kept on prod ({kept} is not there): roll \
                 back to a release of the history with `harness rollback --to VERSION` (`harness history` lists them)"
            )
        })
    }

    fn deployed(&self, plan: &Plan<Action>, observed: &Observed, _before: Option<Release>) -> Deployed {
        let serving = plan.colour.or(observed.live()).map(|colour| self.names.colour(colour)).unwrap_or_default();
        let previous = if plan.replaces { observed.live().map(|colour| self.names.colour(colour)) } else { None };
        Deployed {
            container: serving,
            image: plan.release.image.clone(),
            url: self.url().unwrap_or_default(),
            previous,
            replaced: plan.replaces,
        }
    }
}
