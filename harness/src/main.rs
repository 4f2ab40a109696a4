//! `harness`: books-ms's continuous-deployment pipeline as one CLI.
//!
//! What the user typed becomes a `Plan` (printed by `--dry-run`), then each
//! command runs its steps: `lab up|down|status` call the lab's scripts;
//! `test`, `build`, `push`, `deploy`, `verify`, `status` and `pipeline` are
//! the chapter's steps (see README.md). Exit codes: 0 success, 1 a step
//! failed (for `lab status`: a part of the lab is down), 2 usage error
//! (clap's).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

mod build;
mod checkout;
mod cli;
mod config;
mod context;
mod deploy;
mod docker;
mod pipeline;
mod plan;
mod push;
mod report;
mod verify;
mod version;

use cli::{Cli, Command, LabCommand};
use config::Config;
use plan::{Plan, Step};

const EXIT_FAILED: u8 = 1;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("harness: error: {e:#}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let repo = cli.repo.clone().map(Ok).unwrap_or_else(repo_root)?;
    match cli.command {
        Command::Lab { command } => lab(command, cli.dry_run, &repo),
        other => {
            let steps = match &other {
                Command::Pipeline { .. } => Step::ALL.to_vec(),
                Command::Test => vec![Step::Test, Step::Package],
                Command::Build => vec![Step::Build],
                Command::Push => vec![Step::Push, Step::PushTests],
                Command::Deploy { .. } => vec![Step::Deploy, Step::Integrate],
                Command::Verify { .. } => vec![Step::Verify],
                Command::Status | Command::Lab { .. } => vec![],
            };
            let config = Config::load(&repo)?;
            // `verify` and `status` work on any deployed books-ms, also from
            // a tree that is not a git checkout (the tests image has no .git).
            let (source, version) = match &other {
                Command::Pipeline { source, reference, .. } if source.is_some() || reference.is_some() => {
                    let from = source.clone().unwrap_or_else(|| repo.display().to_string());
                    checkout::resolve(&repo, &from, reference.as_deref().unwrap_or("HEAD"))?
                }
                _ => {
                    let version = match version::Version::of(&repo) {
                        Ok(version) => version,
                        Err(_) if matches!(other, Command::Verify { .. } | Command::Status) => version::Version::unknown(),
                        Err(e) => return Err(e),
                    };
                    (checkout::Source::WorkingTree { dir: repo.clone() }, version)
                }
            };
            let mut plan = Plan::new(repo.clone(), source, version, &config, steps)?;
            plan.reuse_tests = matches!(other, Command::Pipeline { retest: false, .. });
            if cli.dry_run {
                if cli.json {
                    println!("{}", serde_json::to_string_pretty(&plan)?);
                } else {
                    print!("{plan}");
                }
                return Ok(ExitCode::SUCCESS);
            }
            let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
            runtime.block_on(execute(other, cli.json, &config, &plan))
        }
    }
}

/// Runs one command; each arm is one step or a sequence of them.
async fn execute(command: Command, json: bool, config: &Config, plan: &Plan) -> anyhow::Result<ExitCode> {
    let reporter = if json { report::Reporter::hidden() } else { report::Reporter::new() };
    match command {
        Command::Status => {
            let prod = docker::prod(config).await?;
            let containers = deploy::status(&prod, config).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&containers)?);
            } else if containers.is_empty() {
                println!("nothing of {} runs on prod ({})", config.prod.project, config.prod.docker_host);
            } else {
                for c in &containers {
                    println!(
                        "{:<24} {:<5} {:<10} {:<45} {}",
                        c.name,
                        c.role,
                        c.version.as_deref().unwrap_or("-"),
                        c.status,
                        c.image
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Deploy { image, revision } => {
            // The image by digest: given, or what `harness push` recorded.
            let release = match image {
                Some(image) => deploy::Release {
                    revision: revision.unwrap_or_else(|| plan.version.revision.clone()),
                    version: plan.version.version.clone(),
                    image,
                },
                None => {
                    let record = push::load_last(&plan.repo)?;
                    deploy::Release { image: record.reference(), version: record.version, revision: record.revision }
                }
            };
            let prod = docker::prod(config).await?;
            let credentials = push::docker_credentials(config)?;
            let deployed = deploy::deploy(&prod, config, &release, credentials, &reporter).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&deployed)?);
            } else {
                let what = if deployed.replaced { "deployed" } else { "already running, unchanged:" };
                println!("{what} {} as {}: {}", deployed.image, deployed.container, deployed.url);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Test | Command::Pipeline { .. } => {
            let report = pipeline::run(config, plan, &reporter).await;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.table());
                if let Some(url) = &report.url {
                    println!("books-ms {} is live: {url}/", report.version);
                }
            }
            match report.error {
                Some(error) => Err(anyhow::anyhow!(error)),
                None => Ok(ExitCode::SUCCESS),
            }
        }
        Command::Verify { url } => verify::command(&url, &config.checks.ids, json, &reporter).await.map(|()| ExitCode::SUCCESS),
        Command::Build => build::command(config, plan, json, &reporter).await.map(|()| ExitCode::SUCCESS),
        Command::Push => push::command(config, plan, json, &reporter).await.map(|()| ExitCode::SUCCESS),
        Command::Lab { command } => lab(command, false, &plan.repo),
    }
}

/// `harness lab up|down|status`: the lab's own scripts.
fn lab(command: LabCommand, dry_run: bool, repo: &std::path::Path) -> anyhow::Result<ExitCode> {
    let script = match command {
        LabCommand::Up => "lab/up.sh",
        LabCommand::Down => "lab/down.sh",
        LabCommand::Status => "lab/status.sh",
    };
    if dry_run {
        println!("would run: bash {script} (in {})", repo.display());
        return Ok(ExitCode::SUCCESS);
    }
    let status =
        std::process::Command::new("bash").arg(script).current_dir(repo).status().with_context(|| format!("cannot run {script}"))?;
    Ok(if status.success() { ExitCode::SUCCESS } else { ExitCode::from(EXIT_FAILED) })
}

/// The repository root: the nearest folder above the current one holding
/// `harness/` and `service/`.
fn repo_root() -> anyhow::Result<PathBuf> {
    let cwd = std::env::current_dir()?;
    cwd.ancestors()
        .find(|dir| dir.join("harness").is_dir() && dir.join("service").is_dir())
        .map(PathBuf::from)
        .context("not inside a books-ms checkout (no folder above holds harness/ and service/); pass --repo DIR")
}

