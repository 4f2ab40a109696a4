//! What the user can type, parsed by clap.

use std::path::PathBuf;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};

use crate::config::TargetKind;
use crate::deploy::logs::{Grep, Since};

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
    /// Where deploy, status, details, logs, rollback, history, lock, prune and pipeline work: one
    /// Docker engine or a swarm (default: `prod.kind`, else `engine`).
    #[arg(long, global = true, value_enum, value_name = "KIND")]
    pub target: Option<TargetKind>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Subcommand)]
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
    /// Run the post-deploy checks against a deployed books-ms (as a
    /// command check of a deploy, it takes HARNESS_URL and
    /// HARNESS_PREVIEW_HEADER from its environment).
    Verify {
        /// The deployed service's base URL.
        #[arg(long, env = "HARNESS_URL")]
        url: String,
        /// A header sent with every request, `NAME: VALUE` (a deploy's
        /// preview header).
        #[arg(long, env = "HARNESS_PREVIEW_HEADER")]
        header: Option<String>,
    },
    /// Show what runs on prod: the live colour, the containers, the deploy
    /// lock and the last deploys.
    Status,
    /// Everything that runs on prod, in full: each container or task (image
    /// digest, revision, colour, node, state, health, started, restarts), the
    /// proxy and the colour it serves, the database, the deploy lock and the
    /// last deploys. Reads only.
    Details,
    /// The live release's logs on prod, each line marked with its colour
    /// (single host: every colour that runs) or its node (swarm: every task).
    /// Reads only; without --follow it ends within seconds.
    Logs {
        /// Only lines from this time (RFC 3339) or this long ago (`90s`,
        /// `10m`, `2h`, `1d`, `1h30m`).
        #[arg(long, value_name = "WHEN")]
        since: Option<Since>,
        /// The last N lines of each container or task (default 100, or
        /// every line with --since or --grep).
        #[arg(long, short = 'n', value_name = "N")]
        lines: Option<u64>,
        /// Keep printing lines as they come, until Ctrl-C.
        #[arg(long, short)]
        follow: bool,
        /// Only the lines holding PATTERN, as plain text or as a regular
        /// expression.
        #[arg(long, value_name = "PATTERN")]
        grep: Option<Grep>,
        /// An accessory's logs instead of the app's.
        #[arg(long, value_enum, value_name = "NAME")]
        accessory: Option<Accessory>,
    },
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
    /// Remove what no rollback needs: in the registry the service and
    /// tests images beyond the last --keep releases (then its garbage
    /// collection), on prod the stopped containers and unused images of
    /// those releases. Keeps every release a history can roll back to.
    /// Under the deploy lock; --dry-run lists what would go.
    Prune {
        /// How many of the last releases to keep, besides those a history
        /// can still roll back to.
        #[arg(long, value_name = "N", default_value_t = crate::deploy::prune::DEFAULT_KEEP)]
        keep: usize,
        /// Read only this target's history, for a registry no other target
        /// pulls from (no swarm beside prod, or no prod beside the swarm):
        /// a release only the other could roll back to may go.
        #[arg(long)]
        this_target_only: bool,
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
    /// Take the service off prod, under the deploy lock, recorded in the
    /// history: its containers (colours, proxy, accessories) and network;
    /// its volumes (the accessories' data) only with --volumes. The lock
    /// and the history stay. On a swarm, a volume on another node than the
    /// manager's is removed by a one-off job on that node (`swarm.node_socket`).
    Remove {
        /// Remove the accessories' volumes too: their data is lost.
        #[arg(long)]
        volumes: bool,
    },
    /// Write a starting harness.toml for the repository (--repo, else the
    /// current folder) from its Dockerfile: the name from the folder, the
    /// port from EXPOSE, every other key commented.
    Init,
    /// Print a completion script for SHELL (see the README to install it).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print harness's man page (roff; `harness man | man -l -` shows it).
    Man,
}

/// The project's accessories (`harness logs --accessory`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Accessory {
    /// The database (`P-db`: a container, or a service on the swarm).
    Db,
}

/// The completion script of `shell` for this command line.
pub fn completions(shell: clap_complete::Shell) -> Vec<u8> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "harness", &mut script);
    script
}

/// The man page of this command line (roff).
pub fn man() -> std::io::Result<Vec<u8>> {
    let mut page = Vec::new();
    clap_mangen::Man::new(Cli::command()).render(&mut page)?;
    Ok(page)
}

#[derive(Debug, Clone, Subcommand)]
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

#[derive(Debug, Clone, Subcommand)]
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
        assert!(matches!(parse("prune"), Command::Prune { keep: 5, this_target_only: false }));
        let cli = Cli::try_parse_from(["harness", "prune", "--keep", "2", "--dry-run"]).unwrap();
        assert!(matches!(cli.command, Command::Prune { keep: 2, .. }) && cli.dry_run);
        let cli = Cli::try_parse_from(["harness", "prune", "--this-target-only"]).unwrap();
        assert!(matches!(cli.command, Command::Prune { this_target_only: true, .. }));
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
        assert!(matches!(cli.command, Command::Verify { url, header: None } if url == "http://10.0.0.2:8080"));
        let cli = Cli::try_parse_from(["harness", "verify", "--url", "http://h:1", "--header", "X-A: b"]).unwrap();
        assert!(matches!(cli.command, Command::Verify { header: Some(h), .. } if h == "X-A: b"));
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
    fn logs_takes_its_filters_and_refuses_bad_ones() {
        let cli = Cli::try_parse_from([
            "harness",
            "logs",
            "--since",
            "10m",
            "--lines",
            "20",
            "--follow",
            "--grep",
            "GET",
            "--accessory",
            "db",
        ])
        .unwrap();
        let Command::Logs { since, lines, follow, grep, accessory } = cli.command else { panic!("logs") };
        assert_eq!(
            (since, lines, follow, accessory),
            (Some("10m".parse().unwrap()), Some(20), true, Some(Accessory::Db))
        );
        assert!(grep.unwrap().matches("GET /health"));
        assert!(Cli::try_parse_from(["harness", "logs", "--since", "yesterday"]).is_err());
        assert!(Cli::try_parse_from(["harness", "logs", "--accessory", "cache"]).is_err());
        assert!(Cli::try_parse_from(["harness", "logs", "--lines", "-1"]).is_err());
        assert!(matches!(Cli::try_parse_from(["harness", "details"]).unwrap().command, Command::Details));
    }

    #[test]
    fn completions_and_the_man_page_come_from_the_definition() {
        let bash = String::from_utf8(completions(clap_complete::Shell::Bash)).unwrap();
        assert!(bash.contains("harness") && bash.contains("deploy") && bash.contains("--accessory"), "{bash}");
        for shell in [clap_complete::Shell::Zsh, clap_complete::Shell::Fish] {
            assert!(String::from_utf8(completions(shell)).unwrap().contains("rollback"));
        }
        let page = String::from_utf8(man().unwrap()).unwrap();
        assert!(page.starts_with(".ie") || page.contains(".TH harness"), "{page}");
        assert!(page.contains("logs") && page.contains("details"), "{page}");
        assert!(Cli::try_parse_from(["harness", "completions", "tcsh"]).is_err());
    }

    #[test]
    fn unknown_commands_are_refused() {
        assert!(Cli::try_parse_from(["harness", "deploy-everything"]).is_err());
    }
}
