//! `harness deploy` and `harness status`: the service on prod, through
//! prod's Docker API only, blue-green behind a reverse proxy.
//!
//! A deploy is data run by one executor, as Kamal splits the commands it
//! builds from the code that runs them:
//!
//! 1. the prelude: pull the release by digest, take the deploy lock;
//! 2. [`observe`]: what prod holds of the project (network, volume, the
//!    database, the proxy and what it routes where, both colours);
//! 3. [`actions::plan`], a pure function: the observed state and the
//!    release in, the steps out, each with what undoes it;
//! 4. [`executor::Executor`] runs them (undoing on a failure, Ctrl-C or
//!    SIGTERM), then releases the lock.
//!
//! On prod, for project `P` (default `books-ms`): see [`names::Names`]. A
//! failed deploy leaves prod serving what it served before; users reach
//! the app only through the proxy, whose configuration [`proxy`] renders.

pub mod actions;
mod containers;
pub mod executor;
pub mod history;
pub mod names;
pub mod observe;
pub mod proxy;
pub mod swarm;

use anyhow::Context;
use bollard::auth::DockerCredentials;
use serde::Serialize;

pub use self::actions::{Action, DeployPlan, LockHeld, Observed};
use self::executor::Executor;
use self::names::Names;
use self::names::{IMAGE_REVISION_LABEL, IMAGE_VERSION_LABEL};
pub use self::observe::{status, ContainerStatus, Status};
use crate::config::{Config, TargetKind};
use crate::engine::Engine;
use crate::progress::Reporter;
use crate::release::Release;

/// What a deploy did.
#[derive(Debug, Clone, Serialize)]
pub struct Deployed {
    pub container: String,
    pub image: String,
    pub url: String,
    pub previous: Option<String>,
    /// False when prod already ran this release, healthy, with this
    /// configuration: nothing was stopped or started.
    pub replaced: bool,
}

/// What a deploy of `release` would do on prod now (`--dry-run`). Reads
/// prod, changes nothing.
pub async fn preview(prod: &Engine, config: &Config, release: &Release) -> anyhow::Result<DeployPlan> {
    let names = Names::new(&config.prod.project);
    let observed = observe::observe(prod, &names).await?;
    // The revision the image carries, when prod has the image already.
    let release = expected_revision(prod, release).await.unwrap_or_else(|_| release.clone());
    Ok(actions::plan(&observed, &release, config, &holder(&release), "dry-run")?)
}

pub async fn deploy(
    prod: &Engine,
    config: &Config,
    release: &Release,
    credentials: Option<DockerCredentials>,
    reporter: &Reporter,
) -> anyhow::Result<Deployed> {
    run(prod, config, release, credentials, reporter, "deploy").await
}

/// A deploy of `release`, recorded in the history as `kind` (`deploy`,
/// `rollback`).
async fn run(
    prod: &Engine,
    config: &Config,
    release: &Release,
    credentials: Option<DockerCredentials>,
    reporter: &Reporter,
    kind: &str,
) -> anyhow::Result<Deployed> {
    let names = Names::new(&config.prod.project);
    let holder = holder(release);
    let executor = Executor::new(prod, config, credentials, reporter);
    // Kamal's habit: one deploy at a time, and what is observed is observed
    // under the lock.
    let started = std::time::Instant::now();
    let started_at = history::now();
    executor.run_all(&actions::prelude(&names, release, &holder)).await?;
    let mut planned: Option<(DeployPlan, Option<Release>)> = None;
    let result = async {
        let release = expected_revision(prod, release).await?;
        let mut observed = observe::observe(prod, &names).await?;
        observed.lock_holder = None; // ours
        let plan = actions::plan(&observed, &release, config, &holder, &token()?)?;
        let previous = match observed.live() {
            Some(live) => observe::release_of(prod, &names.colour(live)).await?,
            None => None,
        };
        planned = Some((plan.clone(), previous.clone()));
        if observed.history {
            // What it will do, so that a deploy killed outright leaves its plan.
            let planned = plan.steps.iter().map(|step| crate::runner::StepRecord {
                name: step.action.to_string(),
                outcome: crate::runner::Outcome::Skipped,
                duration_ms: 0,
                detail: "planned".to_owned(),
            });
            let entry = entry(kind, &started_at, &plan, previous, history::RUNNING, None, planned.collect());
            if let Err(e) = history::record(prod, &names.history, entry).await {
                reporter.warn(format!("could not record this {kind}'s start in prod's history: {e:#}"));
            }
        }
        executor.apply(&plan).await?;
        let serving = plan.target.or(observed.live()).map(|colour| names.colour(colour)).unwrap_or_default();
        let previous = if plan.is_noop() { None } else { observed.live().map(|colour| names.colour(colour)) };
        Ok(Deployed {
            container: serving,
            image: release.image.clone(),
            url: config.prod_url()?,
            previous,
            replaced: !plan.is_noop(),
        })
    }
    .await;
    // The record, once prod was observed (a deploy refused before has
    // nothing to tell); then the lock goes, whatever happened.
    if let Some((plan, previous)) = planned {
        let outcome = match (&result, plan.is_noop()) {
            (Err(_), _) => "failed",
            (Ok(_), true) => "unchanged",
            (Ok(_), false) => "succeeded",
        };
        let error = result.as_ref().err().map(|e| format!("{e:#}"));
        let mut entry = entry(kind, &started_at, &plan, previous, outcome, error, executor.records());
        entry.duration_ms = crate::runner::millis(started.elapsed());
        if let Err(e) = history::record(prod, &names.history, entry).await {
            reporter.warn(format!("could not record this {kind} in prod's history: {e:#}"));
        }
    }
    if let Err(e) = executor.run_all(&actions::finally(&names)).await {
        reporter.warn(format!("could not release the deploy lock: {e:#}"));
    }
    result
}

/// A history entry of this run.
fn entry(
    kind: &str,
    started: &str,
    plan: &DeployPlan,
    previous: Option<Release>,
    outcome: &str,
    error: Option<String>,
    steps: Vec<crate::runner::StepRecord>,
) -> history::Entry {
    history::Entry {
        kind: kind.to_owned(),
        by: who(),
        started: started.to_owned(),
        duration_ms: 0,
        release: plan.release.clone(),
        colour: plan.target.map(|c| c.name().to_owned()),
        previous,
        outcome: outcome.to_owned(),
        error,
        steps,
    }
}

/// `harness rollback`: back to the release before the live one (the
/// stopped colour kept by the last deploy), or to `to`, a version or
/// revision from the history; as a deploy, with the same checks and undo.
pub async fn rollback(
    prod: &Engine,
    config: &Config,
    to: Option<&str>,
    credentials: Option<DockerCredentials>,
    reporter: &Reporter,
) -> anyhow::Result<Deployed> {
    let names = Names::new(&config.prod.project);
    let release = match to {
        Some(to) => {
            let entries = history::read(prod, &names.history).await?;
            entries
                .iter()
                .rev()
                .filter(|e| e.outcome == "succeeded" || e.outcome == "unchanged")
                .map(|e| &e.release)
                .find(|r| r.version == to || r.revision == to || r.image == to)
                .cloned()
                .with_context(|| {
                    format!("no release {to} in prod's history of succeeded deploys: `harness history` lists them")
                })?
        }
        None => {
            let observed = observe::observe(prod, &names).await?;
            let Some(live) = observed.live() else {
                anyhow::bail!("nothing is live on prod, so there is nothing to roll back from: deploy a release first");
            };
            observe::release_of(prod, &names.colour(live.other())).await?.with_context(|| {
                format!(
                    "no release before the live one is kept on prod ({} is not there): roll back to a release \
                     of the history with `harness rollback --to VERSION` (`harness history` lists them)",
                    names.colour(live.other())
                )
            })?
        }
    };
    run(prod, config, &release, credentials, reporter, "rollback").await
}

/// The engine a deploy of the configured target talks to: prod's, or the
/// swarm manager's.
pub async fn target_engine(config: &Config) -> anyhow::Result<Engine> {
    match config.prod.kind {
        TargetKind::Engine => crate::engine::prod(config).await,
        TargetKind::Swarm => crate::engine::swarm_manager(config).await,
    }
}

/// A deploy to the configured target (`prod.kind`).
pub async fn deploy_target(
    config: &Config,
    release: &Release,
    credentials: Option<DockerCredentials>,
    reporter: &Reporter,
) -> anyhow::Result<Deployed> {
    let engine = target_engine(config).await?;
    match config.prod.kind {
        TargetKind::Engine => deploy(&engine, config, release, credentials, reporter).await,
        TargetKind::Swarm => swarm::deploy(&engine, config, release, credentials, reporter).await,
    }
}

/// A rollback on the configured target (`prod.kind`).
pub async fn rollback_target(
    config: &Config,
    to: Option<&str>,
    credentials: Option<DockerCredentials>,
    reporter: &Reporter,
) -> anyhow::Result<Deployed> {
    let engine = target_engine(config).await?;
    match config.prod.kind {
        TargetKind::Engine => rollback(&engine, config, to, credentials, reporter).await,
        TargetKind::Swarm => swarm::rollback(&engine, config, to, credentials, reporter).await,
    }
}

/// `harness lock release [--force]`: removes the deploy lock; who held
/// it, if any. A lock that another user or machine took is refused unless
/// `force`; forced, the release is recorded in the history, naming whom it
/// overrode.
pub async fn release_lock(prod: &Engine, config: &Config, force: bool) -> anyhow::Result<Option<String>> {
    let names = Names::new(&config.prod.project);
    let observed = observe::observe(prod, &names).await?;
    let Some(holder) = observed.lock_holder else { return Ok(None) };
    let (user, host) = (user(), host());
    let ours = taken_here(&holder, &user, &host);
    if !ours && !force {
        anyhow::bail!(
            "the deploy lock {} is held by {holder}: not by {} on {}; if that deploy is dead, `harness lock release \
             --force` removes it, naming its holder in prod's history",
            names.lock,
            or_unknown(&user),
            or_unknown(&host)
        );
    }
    let reporter = Reporter::hidden();
    let executor = Executor::new(prod, config, None, &reporter);
    let started = std::time::Instant::now();
    executor.run_all(&actions::finally(&names)).await?;
    if !ours {
        let release = Release {
            image: holder.rsplit_once(", deploying ").map(|(_, image)| image.to_owned()).unwrap_or_default(),
            version: String::new(),
            revision: String::new(),
        };
        let entry = history::Entry {
            kind: "lock-release".to_owned(),
            by: who(),
            started: history::now(),
            duration_ms: crate::runner::millis(started.elapsed()),
            release,
            colour: None,
            previous: None,
            outcome: "forced".to_owned(),
            error: Some(format!("--force released the deploy lock held by {holder}")),
            steps: executor.records(),
        };
        history::record(prod, &names.history, entry).await.with_context(|| {
            format!("the lock held by {holder} is released, but recording that in the history failed")
        })?;
    }
    Ok(Some(holder))
}

/// Whether the lock's `holder` (as [`holder`] wrote it) names this `user`
/// on this `host`; never when either is unknown.
fn taken_here(holder: &str, user: &str, host: &str) -> bool {
    !user.is_empty()
        && !host.is_empty()
        && holder.starts_with("harness pid ")
        && holder.contains(&format!(" as {user} on {host} since "))
}

/// The user: `USER` or `LOGNAME`, else the real uid (`uid 0`), so that a
/// lock's holder names one also where neither is set.
fn user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|user| !user.is_empty())
        .or_else(|| {
            let status = std::fs::read_to_string("/proc/self/status").ok()?;
            let uid = status.lines().find_map(|l| l.strip_prefix("Uid:"))?.split_whitespace().next()?.to_owned();
            Some(format!("uid {uid}"))
        })
        .unwrap_or_default()
}

fn host() -> String {
    std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_owned()).unwrap_or_default()
}

fn or_unknown(text: &str) -> &str {
    if text.is_empty() {
        "(unknown)"
    } else {
        text
    }
}

/// The release with the revision its image carries (its OCI label): the
/// one a deploy given only `--image` expects, and one a given revision must
/// match, so that a container's labels tell the truth about what it runs.
pub(crate) async fn expected_revision(prod: &Engine, release: &Release) -> anyhow::Result<Release> {
    let image =
        prod.call(format!("for the image {}", release.image), prod.docker.inspect_image(&release.image)).await?;
    let labels = image.config.and_then(|c| c.labels).unwrap_or_default();
    let version = labels.get(IMAGE_VERSION_LABEL).cloned().unwrap_or_else(|| release.version.clone());
    match labels.get(IMAGE_REVISION_LABEL).cloned() {
        Some(carried) if release.revision.is_empty() || release.revision == carried => {
            Ok(Release { revision: carried, version, image: release.image.clone() })
        }
        Some(carried) => anyhow::bail!(
            "{} carries revision {carried} ({IMAGE_REVISION_LABEL}), not the expected {}: is it the image you meant? \
             (`harness deploy --image` alone expects the revision the image carries)",
            release.image,
            release.revision
        ),
        None if !release.revision.is_empty() => Ok(release.clone()),
        None => anyhow::bail!(
            "{} carries no {IMAGE_REVISION_LABEL} label: give the revision its /version reports with --revision",
            release.image
        ),
    }
}

/// A preview token nobody can guess: 128 bits from the kernel.
fn token() -> anyhow::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| anyhow::anyhow!("cannot read /dev/urandom for the preview token: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Who takes the lock: this process, on this machine, as this user, since
/// now, for which release.
pub(crate) fn holder(release: &Release) -> String {
    format!("{} since {}, deploying {}", who(), history::now(), release.image)
}

/// This process, on this machine, as this user: who deploys, in the
/// history.
pub(crate) fn who() -> String {
    let (host, user) = (host(), user());
    let mut who = format!("harness pid {}", std::process::id());
    if !user.is_empty() {
        who.push_str(&format!(" as {user}"));
    }
    if !host.is_empty() {
        who.push_str(&format!(" on {host}"));
    }
    who
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_is_ours_only_when_its_holder_names_this_user_on_this_host() {
        let holder = "harness pid 7 as ana on cd1 since 2026-12-06T20:00:00Z, deploying reg/books-ms@sha256:1";
        assert!(taken_here(holder, "ana", "cd1"));
        assert!(!taken_here(holder, "bob", "cd1"), "another user");
        assert!(!taken_here(holder, "ana", "cd2"), "another machine");
        assert!(!taken_here(holder, "an", "cd1"), "a prefix of the user is not the user");
        assert!(!taken_here(holder, "", ""), "unknown is never ours");
        assert!(!taken_here("unknown", "ana", "cd1"), "a lock without a holder label");
        assert!(!user().is_empty(), "some user is always named");
    }
}
