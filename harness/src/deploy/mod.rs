//! `harness deploy`, `rollback`, `status`, `details`, `logs`, `history` and
//! `lock release`: the service on prod, through prod's Docker API only, on the configured
//! target (`prod.kind`).
//!
//! A deploy is data run by one executor, as Kamal splits the commands it
//! builds from the code that runs them, and it is the same deploy on every
//! target ([`core`]): the prelude (pull, lock) → observe → plan (pure) →
//! run with undo → record → release the lock. A target ([`core::Target`])
//! supplies what differs: how it observes prod, which actions it plans,
//! how it carries them out, how its proxy is configured:
//!
//! - [`host`]: one Docker engine, blue-green behind HAProxy;
//! - [`swarm`]: a Docker Swarm, rolling updates behind HAProxy on every
//!   node.
//!
//! Shared by both: [`plan`] (the plan's data and its text), [`executor`]
//! (the only code that changes prod), [`lock`], [`history`], [`hooks`],
//! [`haproxy`] (what both proxies' configurations share), [`names`] and
//! [`containers`] (the lock's and the history's containers). A failed
//! deploy leaves prod serving what it served before. The reading
//! commands `details` and `logs` share [`details`] (what is shown) and
//! [`logs`] (reading and marking the lines); each target reads its own
//! (`host::details`, `swarm::logs`, ...). They take no lock.

mod containers;
pub mod core;
pub mod details;
pub mod executor;
pub mod haproxy;
pub mod history;
pub mod hooks;
pub mod host;
pub mod lock;
pub mod logs;
pub mod names;
pub mod plan;
pub mod swarm;
pub mod target;

use bollard::auth::DockerCredentials;
use serde::Serialize;

pub use self::host::observe::{ContainerStatus, Status};
use self::host::Host;
pub use self::plan::{LockHeld, Plan};
use self::swarm::{Swarm, SwarmStatus};
pub use self::target::Deployed;
use crate::config::{Config, TargetKind};
use crate::engine::Engine;
use crate::progress::Reporter;
use crate::release::Release;

/// The engine a deploy of the configured target talks to: prod's, or the
/// swarm manager's.
pub async fn target_engine(config: &Config) -> anyhow::Result<Engine> {
    match config.prod.kind {
        TargetKind::Engine => crate::engine::prod(config).await,
        TargetKind::Swarm => crate::engine::swarm_manager(config).await,
    }
}

/// A deploy to the configured target.
pub async fn deploy(
    config: &Config,
    release: &Release,
    credentials: Option<DockerCredentials>,
    reporter: &Reporter,
) -> anyhow::Result<Deployed> {
    let engine = target_engine(config).await?;
    let kind = history::Kind::Deploy;
    match config.prod.kind {
        TargetKind::Engine => core::run(&Host::new(config), &engine, release, credentials, reporter, kind).await,
        TargetKind::Swarm => core::run(&Swarm { config }, &engine, release, credentials, reporter, kind).await,
    }
}

/// A rollback on the configured target: to the release before the live
/// one, or to `to` (a version, revision or image of the history).
pub async fn rollback(
    config: &Config,
    to: Option<&str>,
    credentials: Option<DockerCredentials>,
    reporter: &Reporter,
) -> anyhow::Result<Deployed> {
    let engine = target_engine(config).await?;
    match config.prod.kind {
        TargetKind::Engine => core::rollback(&Host::new(config), &engine, to, credentials, reporter).await,
        TargetKind::Swarm => core::rollback(&Swarm { config }, &engine, to, credentials, reporter).await,
    }
}

/// What `harness deploy --dry-run` prints: every operation a deploy would
/// run now, on either kind of target.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Preview {
    Engine(Plan<host::plan::Action>),
    Swarm(Plan<swarm::plan::Action>),
}

impl std::fmt::Display for Preview {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Preview::Engine(plan) => plan.fmt(f),
            Preview::Swarm(plan) => plan.fmt(f),
        }
    }
}

/// `harness deploy --dry-run`: reads prod, changes nothing.
pub async fn preview(config: &Config, release: &Release) -> anyhow::Result<Preview> {
    let engine = target_engine(config).await?;
    Ok(match config.prod.kind {
        TargetKind::Engine => Preview::Engine(core::preview(&Host::new(config), &engine, release).await?),
        TargetKind::Swarm => Preview::Swarm(core::preview(&Swarm { config }, &engine, release).await?),
    })
}

/// What `harness status` shows, for either kind of target.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum AnyStatus {
    Engine(Status),
    Swarm(SwarmStatus),
}

/// `harness status`: on a single host, which colour is live, the
/// project's containers; on a swarm, its nodes, services and tasks; the
/// lock and the last deploys.
pub async fn status(config: &Config) -> anyhow::Result<AnyStatus> {
    let engine = target_engine(config).await?;
    Ok(match config.prod.kind {
        TargetKind::Engine => AnyStatus::Engine(host::observe::status(&engine, config).await?),
        TargetKind::Swarm => AnyStatus::Swarm(swarm::observe::status(&engine, config).await?),
    })
}

/// `harness history`: every deploy and rollback recorded, oldest first.
pub async fn history(config: &Config) -> anyhow::Result<Vec<history::Entry>> {
    let engine = target_engine(config).await?;
    let names = names::Names::new(&config.prod.project);
    Ok(history::read(&engine, &names.history).await?)
}

/// `harness lock release [--force]`: who held the lock, if anyone.
pub async fn release_lock(config: &Config, force: bool) -> anyhow::Result<Option<String>> {
    let engine = target_engine(config).await?;
    match config.prod.kind {
        TargetKind::Engine => core::release_lock(&Host::new(config), &engine, force).await,
        TargetKind::Swarm => core::release_lock(&Swarm { config }, &engine, force).await,
    }
}

/// `harness details`: everything that runs on the configured target, read
/// only (no lock).
pub async fn details(config: &Config) -> anyhow::Result<details::Details> {
    let engine = target_engine(config).await?;
    let (mut details, scrapes) = match config.prod.kind {
        TargetKind::Engine => (host::details::details(&engine, config).await?, 1),
        // Round-robin over the tasks: twice as many scrapes reach each.
        TargetKind::Swarm => (swarm::details::details(&engine, config).await?, 2 * config.swarm.replicas as usize),
    };
    if details.live.is_some() {
        details.traffic = Some(match crate::traffic::sample(&details.url, scrapes).await {
            Ok(traffic) => details::Traffic::Measured(traffic),
            Err(e) => details::Traffic::Unknown { unknown: format!("{e:#}") },
        });
    }
    Ok(details)
}

/// `harness logs`: the live release's logs (or the accessory's) on the
/// configured target, each line handed to `sink`; with `--follow`, until
/// every source ends or this is dropped. Reads only (no lock).
pub async fn logs(
    config: &Config,
    request: &logs::LogRequest,
    reporter: &Reporter,
    sink: &mut dyn FnMut(&logs::LogLine) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let engine = target_engine(config).await?;
    let sources = match config.prod.kind {
        TargetKind::Engine => {
            host::logs::sources(&engine, &host::HostNames::new(&config.prod.project), request).await?
        }
        TargetKind::Swarm => swarm::logs::sources(&engine, &config.prod.project, request).await?,
    };
    logs::read(sources, request, reporter, sink).await
}
