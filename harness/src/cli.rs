//! What the user can type, parsed by clap.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::TargetKind;

#[derive(Debug, Parser)]
#[command(name = "harness", version, about = "Test, build, push, deploy and verify books-ms")]
pub struct Cli {
    /// Print the plan and change nothing.
    #[arg(long, global = true)]
    pub dry_run: bool,
    /// Print a machine-readable report on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// The books-ms checkout to work on (default: the one around the current folder).
    #[arg(long, global = true, env = "HARNESS_REPO")]
    pub repo: Option<PathBuf>,
    /// Where deploy, status, rollback, history, lock and pipeline work: one
    /// Docker engine or a swarm (default: `prod.kind`, else `engine`).
    #[arg(long, global = true, value_enum, value_name = "KIND")]
    pub target: Option<TargetKind>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Raise, remove or report the lab (engine, registry, prod host).
    Lab {
        #[command(subcommand)]
        command: LabCommand,
    },
    /// Run the pre-deploy tests and produce the release binary.
    Test,
    /// Build the service image and the tests image.
    Build,
    /// Push both images to the registry.
    Push,
    /// Deploy the pushed image to prod.
    Deploy {
        /// The image to deploy, by digest (default: what `harness push` recorded).
        #[arg(long)]
        image: Option<String>,
        /// The revision its `/version` must report (default: the one the image
        /// carries in its `org.opencontainers.image.revision` label).
        #[arg(long, requires = "image")]
        revision: Option<String>,
    },
    /// Run the post-deploy checks against a deployed books-ms.
    Verify {
        /// The deployed service's base URL.
        #[arg(long)]
        url: String,
    },
    /// Show what runs on prod: the live colour, the containers, the deploy
    /// lock and the last deploys.
    Status,
    /// Every deploy and rollback prod recorded: who, when, what, how it ended.
    History,
    /// Go back to the release before the live one (or `--to` one from the
    /// history), with the same checks and undo as a deploy.
    Rollback {
        /// A version or revision from `harness history` (default: the
        /// release the last deploy replaced, kept stopped on prod).
        #[arg(long, value_name = "VERSION")]
        to: Option<String>,
    },
    /// The deploy lock on prod.
    Lock {
        #[command(subcommand)]
        command: LockCommand,
    },
    /// All nine steps in order, stopping at the first failure.
    Pipeline {
        /// Ship this repository (a path or a git URL) instead of the working
        /// tree; it is fetched and checked out clean in .harness/checkout.
        #[arg(long, value_name = "PATH|URL")]
        source: Option<String>,
        /// The branch, tag or commit to ship (default: the source's HEAD; with
        /// no --source, a ref of this repository, checked out clean).
        #[arg(long = "ref", value_name = "REF")]
        reference: Option<String>,
        /// Run the pre-deploy tests even when this committed tree passed them before.
        #[arg(long)]
        retest: bool,
        /// Run the tests and package script of a --source tree on this
        /// machine: they run as this user, where they can read what the
        /// harness can (the registry's password, prod's client key). Without
        /// it, --source is refused (a --ref of this repository is not).
        #[arg(long)]
        trust_source: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum LockCommand {
    /// Remove the lock a deploy that died left (says who held it). Only a
    /// lock taken by this user on this machine, unless --force.
    Release {
        /// Remove a lock that another user or machine holds too: the
        /// release names the holder it overrides and is recorded in prod's
        /// history. Only when that deploy is dead.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Raise the lab, idempotently: packages, the cd engine, the registry,
    /// the prod host, the local images.
    Up,
    /// Stop the lab's processes; keep its data, certificates and images.
    Down,
    /// One line per part of the lab; fails when one is down.
    Status,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_step_parses() {
        let parse = |step: &str| Cli::try_parse_from(["harness", step]).unwrap().command;
        assert!(matches!(parse("test"), Command::Test));
        assert!(matches!(parse("build"), Command::Build));
        assert!(matches!(parse("push"), Command::Push));
        assert!(matches!(parse("deploy"), Command::Deploy { image: None, revision: None }));
        assert!(matches!(parse("status"), Command::Status));
        assert!(matches!(parse("history"), Command::History));
        assert!(matches!(parse("rollback"), Command::Rollback { to: None }));
        let cli = Cli::try_parse_from(["harness", "lock", "release"]).unwrap();
        assert!(matches!(cli.command, Command::Lock { command: LockCommand::Release { force: false } }));
        let cli = Cli::try_parse_from(["harness", "rollback", "--to", "v1.2"]).unwrap();
        assert!(matches!(cli.command, Command::Rollback { to: Some(v) } if v == "v1.2"));
        assert!(matches!(
            parse("pipeline"),
            Command::Pipeline { source: None, reference: None, retest: false, trust_source: false }
        ));
    }

    #[test]
    fn verify_needs_a_url() {
        assert!(Cli::try_parse_from(["harness", "verify"]).is_err());
        let cli = Cli::try_parse_from(["harness", "verify", "--url", "http://10.0.0.2:8080"]).unwrap();
        assert!(matches!(cli.command, Command::Verify { url } if url == "http://10.0.0.2:8080"));
    }

    #[test]
    fn global_flags_go_anywhere() {
        let cli = Cli::try_parse_from(["harness", "lab", "up", "--dry-run", "--json"]).unwrap();
        assert!(cli.dry_run && cli.json);
        assert!(matches!(cli.command, Command::Lab { command: LabCommand::Up }));
    }

    #[test]
    fn the_pipeline_takes_a_source_and_a_ref() {
        let cli =
            Cli::try_parse_from(["harness", "pipeline", "--source", "https://example.invalid/b.git", "--ref", "v1"])
                .unwrap();
        assert!(
            matches!(cli.command, Command::Pipeline { source: Some(s), reference: Some(r), retest: false, trust_source: false } if s == "https://example.invalid/b.git" && r == "v1")
        );
        let cli = Cli::try_parse_from(["harness", "pipeline"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Pipeline { source: None, reference: None, retest: false, trust_source: false }
        ));
    }

    #[test]
    fn the_target_is_a_flag_of_every_command() {
        let cli = Cli::try_parse_from(["harness", "deploy", "--target", "swarm"]).unwrap();
        assert_eq!(cli.target, Some(TargetKind::Swarm));
        let cli = Cli::try_parse_from(["harness", "--target", "engine", "status"]).unwrap();
        assert_eq!(cli.target, Some(TargetKind::Engine));
        assert_eq!(Cli::try_parse_from(["harness", "rollback"]).unwrap().target, None);
        assert!(Cli::try_parse_from(["harness", "status", "--target", "cluster"]).is_err());
    }

    #[test]
    fn unknown_commands_are_refused() {
        assert!(Cli::try_parse_from(["harness", "deploy-everything"]).is_err());
    }
}
