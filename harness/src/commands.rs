//! One entry function per command of the CLI. Each returns what it did as
//! data; `main.rs` prints it (a table for people, JSON with `--json`).

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;

use crate::build::{self, Built};
use crate::checkout::{self, Source};
use crate::cli::{Accessory, Command, LabCommand};
use crate::config::Config;
use crate::deploy::{self, Deployed};
pub use crate::deploy::{AnyStatus, Preview};
use crate::engine;
use crate::pipeline::{self, PipelineReport};
use crate::plan::{Plan, Step};
use crate::progress::Reporter;
use crate::push;
use crate::registry;
use crate::release::{PushRecord, Release};
use crate::verify::{self, VerifyError, VerifyReport};
use crate::version::Version;

/// The steps a command runs, in order.
pub fn steps(command: &Command) -> Vec<Step> {
    match command {
        Command::Pipeline { .. } => Step::ALL.to_vec(),
        Command::Test => vec![Step::Test, Step::Package],
        Command::Build => vec![Step::Build],
        Command::Push => vec![Step::Push, Step::PushTests],
        Command::Deploy { .. } => vec![Step::Deploy, Step::Integrate],
        Command::Verify { .. } => vec![Step::Verify],
        Command::Rollback { .. } => vec![Step::Deploy],
        Command::Remove { .. } => vec![],
        Command::Status
        | Command::Details
        | Command::Logs { .. }
        | Command::History
        | Command::Prune { .. }
        | Command::Lock { .. }
        | Command::Lab { .. }
        | Command::Completions { .. }
        | Command::Init
        | Command::Man => vec![],
    }
}

/// What the command will do, and on what: the code it ships (the working
/// tree, or a ref checked out clean), its version, the images, prod.
pub fn plan(command: &Command, repo: &Path, config: &Config) -> anyhow::Result<Plan> {
    let (source, version) = match command {
        Command::Pipeline { source, reference, .. } if source.is_some() || reference.is_some() => {
            let from = source.clone().unwrap_or_else(|| repo.display().to_string());
            checkout::resolve(repo, &from, reference.as_deref().unwrap_or("HEAD"))?
        }
        _ => {
            // The commands on prod work on any deployed books-ms, also from a
            // tree that is not a git checkout (the tests image has no .git).
            let version = match Version::of(repo) {
                Ok(version) => version,
                Err(_)
                    if !matches!(
                        command,
                        Command::Pipeline { .. } | Command::Test | Command::Build | Command::Push
                    ) =>
                {
                    Version::unknown()
                }
                Err(e) => return Err(e),
            };
            (Source::WorkingTree { dir: repo.to_owned() }, version)
        }
    };
    let mut plan = Plan::new(repo.to_owned(), source, version, config, steps(command))?;
    plan.reuse_tests = matches!(command, Command::Pipeline { retest: false, .. });
    plan.untrusted_source = matches!(command, Command::Pipeline { source: Some(_), trust_source: false, .. });
    plan.reused_tree = crate::pipeline::reused_tree(&plan);
    Ok(plan)
}

/// The images a build or a push made: the service's, and its tests image
/// when it has one (`build.tests_dockerfile`).
#[derive(Debug, Serialize)]
pub struct Both<T> {
    pub service: T,
    pub tests: Option<T>,
}

/// `harness build`: the service image, then the tests image (if any).
pub async fn build(config: &Config, plan: &Plan, reporter: &Reporter) -> anyhow::Result<Both<Built>> {
    let cd = engine::cd().await?;
    let service = build::service_image(&cd, plan.source.dir(), config, &plan.version, reporter).await?;
    let tests = build::tests_image(&cd, plan.source.dir(), config, &plan.version, reporter).await?;
    Ok(Both { service, tests })
}

/// `harness push`: the service image (recorded as the one to deploy), then
/// the tests image (if any).
pub async fn push(config: &Config, plan: &Plan, reporter: &Reporter) -> anyhow::Result<Both<PushRecord>> {
    let service = push::push_service(&plan.repo, config, &plan.version, reporter).await?;
    let tests = push::push_tests(&plan.repo, config, &plan.version, reporter).await?;
    Ok(Both { service, tests })
}

/// The release `harness deploy` ships: the image given by digest, or what
/// `harness push` recorded.
pub fn release(plan: &Plan, image: Option<String>, revision: Option<String>) -> anyhow::Result<Release> {
    match image {
        // The revision the image carries, unless one is given (the deploy
        // reads it from the image's labels on prod).
        Some(image) => Ok(Release::given(image, plan.version.version.clone(), revision)),
        None => Release::last_pushed(&plan.repo),
    }
}

/// `harness deploy`, to the configured target.
pub async fn deploy(config: &Config, release: &Release, reporter: &Reporter) -> anyhow::Result<Deployed> {
    let credentials = registry::docker_credentials(config)?;
    deploy::deploy(config, release, credentials, reporter).await
}

/// `harness deploy --dry-run`: the operations a deploy would run on prod
/// now.
pub async fn deploy_preview(config: &Config, release: &Release) -> anyhow::Result<Preview> {
    deploy::preview(config, release).await
}

/// `harness status`.
pub async fn status(config: &Config) -> anyhow::Result<AnyStatus> {
    deploy::status(config).await
}

/// `harness details`: everything that runs on prod.
pub async fn details(config: &Config) -> anyhow::Result<deploy::details::Details> {
    deploy::details(config).await
}

/// What `harness logs` was asked for, from its flags.
pub fn log_request(
    since: Option<deploy::logs::Since>,
    lines: Option<u64>,
    follow: bool,
    grep: Option<deploy::logs::Grep>,
    accessory: Option<Accessory>,
) -> deploy::logs::LogRequest {
    let of = match accessory {
        None => deploy::logs::Of::App,
        Some(Accessory::Db) => deploy::logs::Of::Db,
    };
    deploy::logs::LogRequest { of, since, lines, follow, grep }
}

/// `harness logs`: each line (that `--grep` keeps) handed to `sink`.
pub async fn logs(
    config: &Config,
    request: &deploy::logs::LogRequest,
    reporter: &Reporter,
    sink: &mut dyn FnMut(&deploy::logs::LogLine) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    deploy::logs(config, request, reporter, sink).await
}

/// `harness history`: every deploy and rollback recorded, oldest first.
/// `harness prune [--keep N] [--dry-run]`.
pub async fn prune(
    config: &Config,
    request: &deploy::PruneRequest,
    reporter: &Reporter,
) -> anyhow::Result<deploy::PruneReport> {
    deploy::prune(config, request, reporter).await
}

/// What `harness prune` was asked.
pub fn prune_request(
    keep: usize,
    dry_run: bool,
    this_target_only: bool,
    repo: &std::path::Path,
) -> deploy::PruneRequest {
    deploy::PruneRequest { keep, dry_run, this_target_only, repo: repo.to_owned() }
}

pub async fn history(config: &Config) -> anyhow::Result<Vec<deploy::history::Entry>> {
    deploy::history(config).await
}

/// `harness rollback [--to VERSION]`.
pub async fn rollback(config: &Config, to: Option<&str>, reporter: &Reporter) -> anyhow::Result<Deployed> {
    let credentials = registry::docker_credentials(config)?;
    deploy::rollback(config, to, credentials, reporter).await
}

/// `harness remove [--volumes]`: the service off prod; the plan it ran (or,
/// with `dry_run`, would run).
pub async fn remove(config: &Config, volumes: bool, reporter: &Reporter, dry_run: bool) -> anyhow::Result<Preview> {
    let credentials = registry::docker_credentials(config)?;
    deploy::remove(config, volumes, credentials, reporter, dry_run).await
}

/// `harness lock release [--force]`: who held the lock, if anyone.
pub async fn release_lock(config: &Config, force: bool) -> anyhow::Result<Option<String>> {
    deploy::release_lock(config, force).await
}

/// `harness verify --url URL [--header 'NAME: VALUE']`.
pub async fn verify(
    config: &Config,
    url: &str,
    header: Option<&str>,
    reporter: &Reporter,
) -> Result<VerifyReport, VerifyError> {
    let headers: Vec<(String, String)> = header
        .and_then(|h| h.split_once(':'))
        .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
        .into_iter()
        .collect();
    verify::verify_configured(config, url, &headers, reporter).await
}

/// `harness pipeline` and `harness test`: the plan's steps in order, one
/// run at a time per repository.
pub async fn pipeline(config: &Config, plan: &Plan, reporter: &Reporter) -> anyhow::Result<PipelineReport> {
    if plan.untrusted_source {
        anyhow::bail!(
            "--source {} would run that tree's tests and package command on this machine as this user, where they \
             can read what the harness can: the registry's password (its environment, harness.toml, the docker \
             config file), the lab's credentials and prod's client key. If you trust that code with those, pass \
             --trust-source; otherwise ship it from a checkout you reviewed",
            plan.source
        );
    }
    let _lock = pipeline::RepoLock::take(&plan.repo)?;
    Ok(pipeline::run(config, plan, reporter).await)
}

/// The script `harness lab up|down|status` runs.
pub fn lab_script(command: &LabCommand) -> &'static str {
    match command {
        LabCommand::Up => "lab/up.sh",
        LabCommand::Down => "lab/down.sh",
        LabCommand::Status => "lab/status.sh",
    }
}

/// `harness lab up|down|status`: the lab's own scripts, their output on
/// the terminal. True when the script succeeded.
pub fn lab(command: &LabCommand, repo: &Path) -> anyhow::Result<bool> {
    let script = lab_script(command);
    let status = std::process::Command::new("bash")
        .arg(script)
        .current_dir(repo)
        .status()
        .with_context(|| format!("cannot run {script}"))?;
    Ok(status.success())
}

/// The repository root: the nearest folder, from the current one up, that
/// holds a service's `harness.toml`.
pub fn repo_root() -> anyhow::Result<PathBuf> {
    let cwd = std::env::current_dir()?;
    cwd.ancestors().find(|dir| dir.join(crate::config::SERVICE_FILE).is_file()).map(PathBuf::from).with_context(|| {
        format!(
            "not inside a service's repository (no folder from {} up holds a harness.toml); pass --repo DIR, or \
             describe the service in DIR/harness.toml (docs/config.md)",
            cwd.display()
        )
    })
}
