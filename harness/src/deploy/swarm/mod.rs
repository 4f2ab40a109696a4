//! `harness deploy`, `status` and `rollback` on a Docker Swarm
//! (`prod.kind = "swarm"`), through the manager's API only.
//!
//! As on a single host, a deploy is data run by the one executor: the
//! prelude (the release pulled on the manager, the deploy lock taken
//! there), [`observe`], [`plan::plan`] (pure), the executor's run with its
//! undo, the record in the history, the lock released. The lock and the
//! history are containers on the manager's engine, as on a single host's.
//!
//! On the swarm, for project `P` (see [`services::SwarmNames`]): an
//! attachable overlay network; the database one task pinned by node id
//! (the manager's node, or `swarm.database_node`), with its named volume; the app `swarm.replicas` tasks, never
//! published; a proxy on every node (a global service published with
//! `mode: host`), its configuration ([`haproxy`]) a config object.

pub mod haproxy;
pub mod observe;
pub mod plan;
pub mod services;

use anyhow::Context;
use bollard::auth::DockerCredentials;

pub use self::observe::SwarmStatus;
pub use self::plan::SwarmPlan;
use super::executor::Executor;
use super::names::Names;
use super::{history, Deployed};
use crate::config::Config;
use crate::engine::Engine;
use crate::progress::Reporter;
use crate::release::Release;

/// What a deploy of `release` would do on the swarm now (`--dry-run`).
pub async fn preview(manager: &Engine, config: &Config, release: &Release) -> anyhow::Result<SwarmPlan> {
    let observed = observe::observe(manager, config).await?;
    let release = super::expected_revision(manager, release).await.unwrap_or_else(|_| release.clone());
    Ok(plan::plan(&observed, &release, config, &super::holder(&release))?)
}

pub async fn deploy(
    manager: &Engine,
    config: &Config,
    release: &Release,
    credentials: Option<DockerCredentials>,
    reporter: &Reporter,
) -> anyhow::Result<Deployed> {
    run(manager, config, release, credentials, reporter, "deploy").await
}

/// A rolling update to `release`, recorded as `kind`.
async fn run(
    manager: &Engine,
    config: &Config,
    release: &Release,
    credentials: Option<DockerCredentials>,
    reporter: &Reporter,
    kind: &str,
) -> anyhow::Result<Deployed> {
    let names = Names::new(&config.prod.project);
    let swarm = services::SwarmNames::new(&config.prod.project);
    let holder = super::holder(release);
    let executor = Executor::new(manager, config, credentials, reporter);
    let started = std::time::Instant::now();
    let started_at = history::now();
    executor.run_all(&super::actions::prelude(&names, release, &holder)).await?;
    let mut planned: Option<(SwarmPlan, Option<Release>, bool)> = None;
    let result = async {
        let release = super::expected_revision(manager, release).await?;
        let mut observed = observe::observe(manager, config).await?;
        observed.lock_holder = None; // ours
        let plan = plan::plan(&observed, &release, config, &holder)?;
        let previous = observe::app_release(manager, config).await?;
        planned = Some((plan.clone(), previous.clone(), observed.history));
        for warning in &plan.warnings {
            reporter.warn(warning.clone());
        }
        if observed.history {
            let steps = plan.steps.iter().map(|step| crate::runner::StepRecord {
                name: step.action.to_string(),
                outcome: crate::runner::Outcome::Skipped,
                duration_ms: 0,
                detail: "planned".to_owned(),
            });
            let entry = entry(kind, &started_at, &plan, previous.clone(), history::RUNNING, None, steps.collect());
            if let Err(e) = history::record(manager, &names.history, entry).await {
                reporter.warn(format!("could not record this {kind}'s start in the swarm's history: {e:#}"));
            }
        }
        executor.apply_steps(&plan.release.image, &plan.steps, None).await?;
        // Verified: what is left is tidying, never a reason to undo.
        for action in &plan.cleanup {
            if let Err(e) = executor.run_all(std::slice::from_ref(action)).await {
                reporter.warn(format!("{action} failed (the deploy stands; remove it by hand): {e:#}"));
            }
        }
        Ok(Deployed {
            container: swarm.app.clone(),
            image: release.image.clone(),
            url: config.swarm_url()?,
            previous: previous.filter(|_| plan.replaces).map(|p| p.image),
            replaced: plan.replaces,
        })
    }
    .await;
    if let Some((plan, previous, _)) = planned {
        let outcome = match (&result, plan.replaces) {
            (Err(_), _) => "failed",
            (Ok(_), false) => "unchanged",
            (Ok(_), true) => "succeeded",
        };
        let error = result.as_ref().err().map(|e| format!("{e:#}"));
        let mut entry = entry(kind, &started_at, &plan, previous, outcome, error, executor.records());
        entry.duration_ms = crate::runner::millis(started.elapsed());
        if let Err(e) = history::record(manager, &names.history, entry).await {
            reporter.warn(format!("could not record this {kind} in the swarm's history: {e:#}"));
        }
    }
    if let Err(e) = executor.run_all(&super::actions::finally(&names)).await {
        reporter.warn(format!("could not release the deploy lock: {e:#}"));
    }
    result
}

fn entry(
    kind: &str,
    started: &str,
    plan: &SwarmPlan,
    previous: Option<Release>,
    outcome: &str,
    error: Option<String>,
    steps: Vec<crate::runner::StepRecord>,
) -> history::Entry {
    history::Entry {
        kind: kind.to_owned(),
        by: super::who(),
        started: started.to_owned(),
        duration_ms: 0,
        release: plan.release.clone(),
        colour: None,
        previous,
        outcome: outcome.to_owned(),
        error,
        steps,
    }
}

/// `harness rollback` on the swarm: a rolling update back to the release
/// the last succeeded deploy replaced, or to `to` (a version, revision or
/// image of the history), with the same checks and undo as a deploy.
pub async fn rollback(
    manager: &Engine,
    config: &Config,
    to: Option<&str>,
    credentials: Option<DockerCredentials>,
    reporter: &Reporter,
) -> anyhow::Result<Deployed> {
    let names = Names::new(&config.prod.project);
    let entries = history::read(manager, &names.history).await?;
    let succeeded = entries.iter().rev().filter(|e| e.outcome == "succeeded" || e.outcome == "unchanged");
    let release = match to {
        Some(to) => succeeded
            .map(|e| &e.release)
            .find(|r| r.version == to || r.revision == to || r.image == to)
            .cloned()
            .with_context(|| {
                format!("no release {to} in the swarm's history of succeeded deploys: `harness history` lists them")
            })?,
        None => {
            let live = observe::app_release(manager, config).await?.context(
                "the swarm runs no app service, so there is nothing to roll back from: deploy a release first",
            )?;
            succeeded
                .filter(|e| e.release.image == live.image)
                .find_map(|e| e.previous.clone().filter(|p| p.image != live.image))
                .with_context(|| {
                    format!(
                        "the swarm's history names no release before the live one ({}): roll back to one with \
                         `harness rollback --to VERSION` (`harness history` lists them)",
                        live.version
                    )
                })?
        }
    };
    run(manager, config, &release, credentials, reporter, "rollback").await
}

/// `harness status` on the swarm.
pub async fn status(manager: &Engine, config: &Config) -> anyhow::Result<SwarmStatus> {
    observe::status(manager, config).await
}
