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
//! `prune` (what is kept and what goes: [`prune`]) runs under the
//! deploy lock, taken and released by [`core::under_lock`].

pub mod checks;
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
pub mod prune;
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
    config.secrets_are_set()?;
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
    config.secrets_are_set()?;
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
    let names = names::Names::new(config.project());
    Ok(history::read(&engine, &names.history).await?)
}

/// `harness remove [--volumes]` on the configured target: the plan it ran,
/// or with `dry_run` would run.
pub async fn remove(
    config: &Config,
    volumes: bool,
    credentials: Option<DockerCredentials>,
    reporter: &Reporter,
    dry_run: bool,
) -> anyhow::Result<Preview> {
    let engine = target_engine(config).await?;
    Ok(match config.prod.kind {
        TargetKind::Engine => {
            Preview::Engine(core::remove(&Host::new(config), &engine, volumes, credentials, reporter, dry_run).await?)
        }
        TargetKind::Swarm => {
            Preview::Swarm(core::remove(&Swarm { config }, &engine, volumes, credentials, reporter, dry_run).await?)
        }
    })
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
        TargetKind::Engine => host::logs::sources(&engine, &host::HostNames::new(config.project()), request).await?,
        TargetKind::Swarm => swarm::logs::sources(&engine, config.project(), request).await?,
    };
    logs::read(sources, request, reporter, sink).await
}

/// What `harness prune` was asked for.
#[derive(Debug, Clone)]
pub struct PruneRequest {
    /// How many of the last releases are kept (besides what a history can
    /// roll back to).
    pub keep: usize,
    /// List what would go; remove nothing, take no lock.
    pub dry_run: bool,
    /// Read only the target's history, not the other target's.
    pub this_target_only: bool,
    /// The repository's root: `registry.gc_command` runs there.
    pub repo: std::path::PathBuf,
}

/// What `harness prune` removed (or, with `--dry-run`, would remove).
#[derive(Debug, Serialize)]
pub struct PruneReport {
    pub dry_run: bool,
    pub keep: usize,
    /// Where the engine's part ran: prod, or the swarm's manager.
    pub target: &'static str,
    pub registry: prune::RegistryChoice,
    pub engine: prune::EngineChoice,
    /// What the engine's part did (none with `--dry-run`).
    pub removed: Option<prune::EngineRemoved>,
    /// On the swarm, the other nodes' part: what each node's job removed
    /// (with `--dry-run`, would remove).
    pub nodes: Vec<swarm::prune::NodePruned>,
    /// The registry's storage before and after its collection, when one ran.
    pub registry_bytes: Option<(i64, i64)>,
    pub warnings: Vec<String>,
}

/// `harness prune`: on the configured target, under its deploy lock
/// (none with `--dry-run`).
pub async fn prune(config: &Config, request: &PruneRequest, reporter: &Reporter) -> anyhow::Result<PruneReport> {
    let engine = target_engine(config).await?;
    let credentials = crate::registry::credentials(config)?;
    let docker_credentials = credentials.as_ref().map(|c| c.to_docker(&config.registry.address));
    let work = prune_on(config, &engine, request, credentials, docker_credentials.clone(), reporter);
    if request.dry_run {
        return work.await;
    }
    // The lock's container is made of the image the history's is: every
    // target that was ever deployed to runs it (its proxy).
    let image = containers::kept_image(config);
    match config.prod.kind {
        TargetKind::Engine => {
            core::under_lock(&Host::new(config), &engine, image, docker_credentials, reporter, work).await
        }
        TargetKind::Swarm => {
            core::under_lock(&Swarm { config }, &engine, image, docker_credentials, reporter, work).await
        }
    }
}

async fn prune_on(
    config: &Config,
    engine: &Engine,
    request: &PruneRequest,
    credentials: Option<crate::registry::Credentials>,
    docker_credentials: Option<bollard::auth::DockerCredentials>,
    reporter: &Reporter,
) -> anyhow::Result<PruneReport> {
    use anyhow::Context as _;
    use std::collections::{BTreeMap, BTreeSet};

    let service_repository = config.service_repository();
    let names = names::Names::new(config.project());
    // Both targets pull from the one registry: a release either can roll
    // back to stays. The other target must answer, or nothing is removed
    // (unless the user says there is no other).
    let mut histories =
        vec![history::read(engine, &names.history).await.context("reading the history of the target")?];
    if !request.this_target_only {
        let (other, other_name) = match config.prod.kind {
            TargetKind::Engine => (crate::engine::swarm_manager(config).await, "the swarm (swarm.docker_host)"),
            TargetKind::Swarm => (crate::engine::prod(config).await, "prod (prod.docker_host)"),
        };
        let other = other.with_context(|| {
            format!(
                "prune reads the deploy history of both targets, which pull from the same registry, and \
                 {other_name} does not answer: nothing was removed; raise it (`harness lab up`) and prune again, \
                 or, when no such target pulls from this registry, prune with --this-target-only"
            )
        })?;
        histories.push(
            history::read(&other, &names.history)
                .await
                .with_context(|| format!("reading the history of {other_name}"))?,
        );
    }
    let mut protected: BTreeMap<String, &'static str> = BTreeMap::new();
    for image in prune::rollback_targets(&histories) {
        if let Some(digest) = prune::digest_in(&image, &service_repository) {
            protected.insert(digest, "history");
        }
    }
    let containers = prune::engine_containers(engine).await?;
    let images = prune::engine_images(engine).await?;
    let used: BTreeSet<&str> = containers.iter().map(|c| c.image_id.as_str()).collect();
    for image in images.iter().filter(|i| used.contains(i.id.as_str())) {
        for reference in &image.references {
            if let Some(digest) = prune::digest_in(reference, &service_repository) {
                protected.entry(digest).or_insert("in-use");
            }
        }
    }

    let cd = crate::engine::cd().await?;
    let registry = crate::registry::Registry::open(&cd, config, credentials).await?;
    let (service_name, tests_name) = (config.service_image_name(), config.tests_image_name());
    reporter.line(format!("prune: reading the tags of {service_name} and {tests_name}"));
    let service = prune::manifests(&registry, &service_name).await?;
    let tests = prune::manifests(&registry, &tests_name).await?;
    let choice = prune::choose_in_registry(&service, &tests, &protected, request.keep);
    let kept: BTreeSet<String> = choice
        .kept
        .iter()
        .filter(|k| k.manifest.repository == service_name)
        .map(|k| k.manifest.digest.clone())
        .chain(protected.keys().cloned())
        .collect();
    let mut on_engine = prune::choose_on_engine(&containers, &images, config.project(), &service_repository, &kept);
    let mut warnings = Vec::new();
    let mut nodes = Vec::new();
    if config.prod.kind == TargetKind::Swarm {
        // A task's container is the swarm's to remove (its task history).
        on_engine.containers.clear();
        // The other nodes' engines, each through a job of its own; before
        // the registry loses anything, so that a failure here leaves it
        // whole.
        reporter.line("prune: a job on each of the swarm's other nodes for their images".to_owned());
        let (pruned, node_warnings) =
            swarm::prune::other_nodes(engine, config, &service_repository, &kept, request.dry_run, docker_credentials)
                .await?;
        nodes = pruned;
        warnings.extend(node_warnings);
    }
    let mut report = PruneReport {
        dry_run: request.dry_run,
        keep: request.keep,
        target: match config.prod.kind {
            TargetKind::Engine => <Host as target::Target>::PLACE,
            TargetKind::Swarm => <Swarm as target::Target>::PLACE,
        },
        registry: choice,
        engine: on_engine,
        removed: None,
        nodes,
        registry_bytes: None,
        warnings,
    };
    if request.dry_run {
        return Ok(report);
    }
    reporter.line(format!(
        "prune: removing {} container(s) and {} image(s) on {}",
        report.engine.containers.len(),
        report.engine.images.len(),
        report.target
    ));
    let removed = prune::act(engine, &report.engine).await?;
    report.warnings.extend(removed.skipped.iter().map(|s| format!("not removed: {s}")));
    report.removed = Some(removed);
    reporter.line(format!("prune: removing {} manifest(s) from the registry", report.registry.removed.len()));
    for manifest in &report.registry.removed {
        registry.delete(&manifest.repository, &manifest.digest).await?;
    }
    if !report.registry.removed.is_empty() {
        match config.registry.gc_command() {
            Some(command) => report.registry_bytes = Some(collect_garbage(command, &request.repo, reporter).await?),
            None => report.warnings.push(
                "registry.gc_command is not set: the removed manifests' blobs stay until the registry's own \
                 garbage collection"
                    .to_owned(),
            ),
        }
    }
    Ok(report)
}

/// Runs `registry.gc_command` in `repo` (its progress appended to
/// `.harness/logs/registry-gc.log`); the storage's bytes before and after,
/// from its last line (`before N after M ...`).
async fn collect_garbage(command: &str, repo: &std::path::Path, reporter: &Reporter) -> anyhow::Result<(i64, i64)> {
    use anyhow::Context as _;
    let logs = repo.join(".harness/logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("cannot create {}", logs.display()))?;
    reporter
        .line(format!("prune: the registry's garbage collection ({command}; log in .harness/logs/registry-gc.log)"));
    let mut child = tokio::process::Command::new("sh");
    child.arg("-c").arg(format!("{command} 2>>.harness/logs/registry-gc.log")).current_dir(repo);
    // Seconds when little is left; minutes for a registry of many GB.
    let what = "the registry's garbage collection (registry.gc_command)";
    let ended = crate::child::run(&mut child, what, crate::child::Output::Capture, (1800, "a 30 min bound")).await?;
    if !ended.status.success() {
        anyhow::bail!(
            "{what} failed ({}): {}; see .harness/logs/registry-gc.log; the manifests are removed, their space comes \
             back at the next collection",
            ended.status,
            ended.output.trim()
        );
    }
    let words: Vec<&str> = ended.output.split_whitespace().collect();
    let field = |name: &str| words.windows(2).find(|w| w[0] == name).and_then(|w| w[1].parse::<i64>().ok());
    match (field("before"), field("after")) {
        (Some(before), Some(after)) => Ok((before, after)),
        _ => anyhow::bail!("{what} ended without saying `before N after M` on its last line: {}", ended.output.trim()),
    }
}

impl std::fmt::Display for PruneReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (keep, drop) = if self.dry_run { ("would keep", "would remove") } else { ("kept", "removed") };
        writeln!(
            f,
            "registry: {keep} {}, {drop} {} manifest(s)",
            self.registry.kept.len(),
            self.registry.removed.len()
        )?;
        for kept in &self.registry.kept {
            let m = &kept.manifest;
            writeln!(f, "  keep    {}@{} {} ({})", m.repository, m.digest, m.tags.join(","), kept.why.join(", "))?;
        }
        for m in &self.registry.removed {
            writeln!(f, "  remove  {}@{} {}", m.repository, m.digest, m.tags.join(","))?;
        }
        let engine = &self.engine;
        writeln!(
            f,
            "{}: {drop} {} container(s), {} image(s)",
            self.target,
            engine.containers.len(),
            engine.images.len()
        )?;
        for c in &engine.containers {
            writeln!(f, "  remove  container {} ({})", c.name, c.state)?;
        }
        for i in &engine.images {
            let name = i.references.first().cloned().unwrap_or_else(|| i.id.clone());
            writeln!(f, "  remove  image {name} ({} MB)", i.size / 1_000_000)?;
        }
        if let Some(removed) = &self.removed {
            writeln!(
                f,
                "freed on {}: at most {} MB (the removed images' sizes)",
                self.target,
                removed.freed_bytes_at_most / 1_000_000
            )?;
        }
        for node in &self.nodes {
            writeln!(
                f,
                "node {}: {drop} {} image(s), at most {} MB (their sizes); {keep} {}",
                node.node,
                node.images.len(),
                node.freed_bytes_at_most / 1_000_000,
                node.kept
            )?;
            for image in &node.images {
                writeln!(f, "  remove  image {image}")?;
            }
            for skipped in &node.skipped {
                writeln!(f, "  in use  image {skipped}")?;
            }
        }
        if let Some((before, after)) = self.registry_bytes {
            writeln!(
                f,
                "freed in the registry: {} MB ({} MB before, {} MB after its garbage collection)",
                (before - after) / 1_000_000,
                before / 1_000_000,
                after / 1_000_000
            )?;
        }
        for warning in &self.warnings {
            writeln!(f, "warning: {warning}")?;
        }
        Ok(())
    }
}
