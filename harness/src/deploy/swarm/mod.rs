//! The swarm target (`prod.kind = "swarm"`): `harness deploy`, `status` and
//! `rollback` on a Docker Swarm, through the manager's API only.
//!
//! On the swarm, for project `P` (see [`services::SwarmNames`]): an
//! attachable overlay network; each of the service's `[accessories]` one
//! task pinned by node id (the manager's node, or `swarm.database_node`),
//! with its named volume; the app `swarm.replicas` tasks on `app.port`,
//! never published; a proxy on every node (a global service published
//! with `mode: host`, checking each task on `swarm.check_path`), its
//! configuration ([`haproxy`]) a config object. [`observe`] reads them,
//! [`plan::plan`] plans a rolling update gated by readiness
//! (`healthcheck.path`; a release whose image has no healthcheck is first
//! proven ready unseen as `P-app-canary`, then served beside the old tasks
//! as `P-app-next`), and [`plan::removal`] `harness remove` (pure); [`act`]
//! carries them out. The lock and the history are containers on the
//! manager's engine, as on a single host's. [`details`] and [`logs`] read
//! the tasks for `harness details` and `harness logs`.

pub mod act;
pub mod details;
#[cfg(test)]
mod golden;
pub mod haproxy;
pub mod jobs;
pub mod logs;
pub mod observe;
pub mod plan;
pub mod prune;
pub mod services;

pub use self::observe::SwarmStatus;
use self::plan::{Action, SwarmObserved};
use super::plan::{Plan, Planned};
use super::target::{Context, Deployed, On, Shared, Target};
use crate::config::Config;
use crate::engine::Engine;
use crate::release::Release;

/// A deploy to a swarm, through its manager.
pub struct Swarm<'a> {
    pub config: &'a Config,
}

impl Target for Swarm<'_> {
    type Observed = SwarmObserved;
    type Action = Action;

    const PLACE: &'static str = "the swarm";

    fn config(&self) -> &Config {
        self.config
    }

    fn url(&self) -> anyhow::Result<String> {
        self.config.swarm_url()
    }

    async fn observe(
        &self,
        engine: &Engine,
        _shared: &Shared,
        release: Option<&Release>,
    ) -> anyhow::Result<SwarmObserved> {
        observe::observe(engine, self.config, release).await
    }

    async fn live(&self, engine: &Engine, _observed: &SwarmObserved) -> anyhow::Result<Option<Release>> {
        observe::app_release(engine, self.config).await
    }

    fn plan(&self, observed: &SwarmObserved, context: &Context) -> Planned<Action> {
        plan::plan(observed, context)
    }

    async fn act(&self, on: &On<'_>, action: &Action) -> anyhow::Result<()> {
        act::act(on, self.config, action).await
    }

    /// The last log lines of the tasks of the service that did not get
    /// ready (or converge), before the undo removes them.
    async fn explain(&self, on: &On<'_>, plan: &Plan<Action>, failed: usize) -> String {
        let service = match &plan.steps[failed].action {
            super::plan::Op::Target(Action::AwaitReady { name, .. } | Action::AwaitService { name, .. }) => name,
            _ => return String::new(),
        };
        format!("\nthe last log lines of {service}'s tasks:\n{}", act::last_logs(on.engine, service).await)
    }

    fn removal(&self, observed: &SwarmObserved, volumes: bool) -> Planned<Action> {
        plan::removal(observed, self.config, volumes)
    }

    fn rolls_back(undo: &Action) -> Option<&str> {
        match undo {
            Action::RollbackService { name, .. } => Some(name),
            _ => None,
        }
    }

    /// Nothing: the swarm keeps no release beside the live one.
    async fn kept_before(
        &self,
        _engine: &Engine,
        _observed: &SwarmObserved,
        live: &Release,
    ) -> anyhow::Result<Release> {
        anyhow::bail!(
            "the swarm's history names no release before the live one ({}): roll back to one with `harness rollback \
             --to VERSION` (`harness history` lists them)",
            live.version
        )
    }

    fn deployed(&self, plan: &Plan<Action>, _observed: &SwarmObserved, before: Option<Release>) -> Deployed {
        Deployed {
            container: services::SwarmNames::new(self.config.project()).app,
            image: plan.release.image.clone(),
            url: self.url().unwrap_or_default(),
            previous: before.filter(|_| plan.replaces).map(|p| p.image),
            replaced: plan.replaces,
        }
    }
}
