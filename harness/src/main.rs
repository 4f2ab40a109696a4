//! `harness`: books-ms's continuous-deployment pipeline as one CLI.
//!
//! The thin end of the library: parses the command line (clap), builds the
//! plan (printed by `--dry-run`), calls one entry function of
//! `harness::commands` per command, and is the only place that prints
//! results: tables for people, `--json` for programs. Progress goes to
//! stderr through the library's `Reporter`. Exit codes: 0 success, 1 a step
//! failed (for `lab status`: a part of the lab is down), 2 usage error
//! (clap's), 130 interrupted (Ctrl-C or SIGTERM). A reader that goes away (`harness status --json | head -3`)
//! ends the run quietly.

use std::fmt::Display;
use std::io::{self, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use serde::Serialize;

use harness::cli::{Cli, Command, LockCommand};
use harness::commands::{self, AnyStatus};
use harness::config::Config;
use harness::deploy::logs::{LogLine, LogRequest};
use harness::deploy::swarm::SwarmStatus;
use harness::deploy::{history, Status};
use harness::interrupt;
use harness::plan::Plan;
use harness::progress::Reporter;

const EXIT_FAILED: u8 = 1;
/// 128 + SIGINT, as a shell reports a program Ctrl-C ended.
const EXIT_INTERRUPTED: u8 = 130;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(io::stderr(), "harness: error: {e:#}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

/// stdout's reader went away: nothing more to say to anyone.
fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|e| e.downcast_ref::<io::Error>().is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe))
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // Made from the command line's definition alone: no checkout, no
    // configuration needed.
    match cli.command {
        Command::Completions { shell } => return Out::bytes(&harness::cli::completions(shell)),
        Command::Man => return Out::bytes(&harness::cli::man()?),
        // For a repository with no harness.toml yet: --repo, else here.
        Command::Init => {
            let dir = match cli.repo.clone() {
                Some(dir) => dir,
                None => std::env::current_dir().context("the current folder")?,
            };
            let out = Out { json: cli.json };
            if cli.dry_run {
                out.text(format_args!("would write {}\n", dir.join(harness::config::SERVICE_FILE).display()))?;
                return Ok(ExitCode::SUCCESS);
            }
            let written = harness::init::init(&dir)?;
            let text = format!(
                "wrote {} (service {}, app port {}): check it, then commit it\n",
                written.path.display(),
                written.name,
                written.port
            );
            out.either(&written, text)?;
            return Ok(ExitCode::SUCCESS);
        }
        _ => {}
    }
    let repo = cli.repo.clone().map(Ok).unwrap_or_else(commands::repo_root)?;
    let out = Out { json: cli.json };
    if let Command::Lab { command } = &cli.command {
        let script = commands::lab_script(command);
        if cli.dry_run {
            out.text(format_args!("would run: bash {script} (in {})\n", repo.display()))?;
            return Ok(ExitCode::SUCCESS);
        }
        return Ok(exit(commands::lab(command, &repo)?));
    }
    let mut config = Config::load(&repo)?;
    if let Some(target) = cli.target {
        config.prod.kind = target;
    }
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let plan = match plan_interruptibly(&runtime, &cli.command, &repo, &config)? {
        Ok(plan) => plan,
        Err(code) => return Ok(code),
    };
    if let (true, Command::Prune { keep, this_target_only }) = (cli.dry_run, &cli.command) {
        // The dry run reads prod and the registry: what would go.
        let request = commands::prune_request(*keep, true, *this_target_only, &repo);
        let report = runtime.block_on(commands::prune(&config, &request, &Reporter::hidden()))?;
        out.either(&report, &report)?;
        return Ok(ExitCode::SUCCESS);
    }
    if cli.dry_run {
        out.either(&plan, &plan)?;
        if let Command::Deploy { image, revision } = cli.command {
            let release = commands::release(&plan, image, revision)?;
            let actions = runtime.block_on(commands::deploy_preview(&config, &release))?;
            out.either(&actions, &actions)?;
        } else if let Command::Remove { volumes } = cli.command {
            let actions = runtime.block_on(commands::remove(&config, volumes, &Reporter::hidden(), true))?;
            out.either(&actions, &actions)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let reporter = if cli.json { Reporter::hidden() } else { Reporter::new() };
    // `logs --follow` ends with Ctrl-C: nothing to stop or tidy, nothing to say.
    let reading = matches!(cli.command, Command::Logs { .. });
    runtime.block_on(async {
        match interrupt::until_interrupted(execute(cli.command, &out, &config, &plan, &reporter)).await {
            // Shielded work (a deploy, the checks, the pipeline after the
            // switch) answered the signal itself and ended: say how.
            Ok(done) if interrupt::pending().is_some() => {
                if let Err(e) = done {
                    let _ = writeln!(io::stderr(), "harness: error: {e:#}");
                }
                Ok(ExitCode::from(EXIT_INTERRUPTED))
            }
            Ok(done) => done,
            Err(_) if reading => Ok(ExitCode::from(EXIT_INTERRUPTED)),
            Err(interrupted) => Ok(stopped(interrupted, &config.test.containers_label).await),
        }
    })
}

/// The run's plan, made on a thread of its own so that Ctrl-C is answered
/// meanwhile: planning a `--source` fetches it, which may take long. On an
/// interrupt, the fetch (which sees the signal) ends its git, and the exit
/// code is the `Err`.
fn plan_interruptibly(
    runtime: &tokio::runtime::Runtime,
    command: &Command,
    repo: &std::path::Path,
    config: &Config,
) -> anyhow::Result<Result<Plan, ExitCode>> {
    let (command, repo, config) = (command.clone(), repo.to_owned(), config.clone());
    let mut planning = runtime.spawn_blocking(move || commands::plan(&command, &repo, &config));
    match runtime.block_on(interrupt::until_interrupted(&mut planning)) {
        Ok(planned) => Ok(Ok(planned.context("planning the run")??)),
        Err(interrupted) => {
            // git checks for the signal every 20 ms.
            let ended = runtime.block_on(async { tokio::time::timeout(Duration::from_secs(5), planning).await });
            let what = if ended.is_ok() { "stopped the fetch of the source" } else { "the fetch did not stop in 5 s" };
            let _ = writeln!(io::stderr(), "harness: {interrupted} while planning: {what}; nothing else had started");
            Ok(Err(ExitCode::from(EXIT_INTERRUPTED)))
        }
    }
}

/// After an interrupt outside a deploy's lock: what the run had started
/// is gone (each step's programs with their process groups, as the run was
/// dropped); the containers its tests left are removed. Says so.
async fn stopped(interrupted: interrupt::Interrupted, label: &str) -> ExitCode {
    // The test process was killed with its step a moment ago.
    let reaped = match harness::pipeline::reap_test_containers(label, Duration::from_secs(3)).await {
        Ok(names) if names.is_empty() => String::new(),
        Ok(names) => format!("; removed the containers its tests left: {}", names.join(", ")),
        Err(e) => format!("; the containers its tests left could not be removed: {e:#}"),
    };
    let _ = writeln!(
        io::stderr(),
        "harness: {interrupted}: stopped every program this run had started (each with its process group){reaped}; \
         no deploy was under way (one undoes itself before it ends), and no release was left live unchecked \
         (one is rolled back); `harness status` shows what prod runs"
    );
    ExitCode::from(EXIT_INTERRUPTED)
}

/// Runs one command and prints what it did.
async fn execute(
    command: Command,
    out: &Out,
    config: &Config,
    plan: &Plan,
    reporter: &Reporter,
) -> anyhow::Result<ExitCode> {
    match command {
        Command::Status => match commands::status(config).await? {
            AnyStatus::Engine(status) => out.either(&status, status_text(&status, config))?,
            AnyStatus::Swarm(status) => out.either(&status, swarm_status_text(&status, config))?,
        },
        Command::Details => {
            let details = commands::details(config).await?;
            out.either(&details, &details)?;
        }
        Command::Logs { since, lines, follow, grep, accessory } => {
            let request = commands::log_request(since, lines, follow, grep, accessory);
            print_logs(out, config, &request, reporter).await?;
        }
        Command::Prune { keep, this_target_only } => {
            let request = commands::prune_request(keep, false, this_target_only, &plan.repo);
            let report = commands::prune(config, &request, reporter).await?;
            out.either(&report, &report)?;
        }
        Command::History => {
            let entries = commands::history(config).await?;
            out.either(&entries, history_text(&entries))?;
        }
        Command::Rollback { to } => {
            let deployed = commands::rollback(config, to.as_deref(), reporter).await?;
            let what = if deployed.replaced { "rolled back to" } else { "already live, unchanged:" };
            let text = format!("{what} {} as {}: {}\n", deployed.image, deployed.container, deployed.url);
            out.either(&deployed, text)?;
        }
        Command::Lock { command: LockCommand::Release { force } } => {
            let holder = commands::release_lock(config, force).await?;
            let text = match &holder {
                Some(holder) => format!("released the deploy lock on prod, held by {holder}\n"),
                None => "no deploy lock on prod: nothing to release\n".to_owned(),
            };
            out.either(&serde_json::json!({ "released": holder }), text)?;
        }
        Command::Deploy { image, revision } => {
            let release = commands::release(plan, image, revision)?;
            let deployed = commands::deploy(config, &release, reporter).await?;
            let what = if deployed.replaced { "deployed" } else { "already running, unchanged:" };
            let text = format!("{what} {} as {}: {}\n", deployed.image, deployed.container, deployed.url);
            out.either(&deployed, text)?;
        }
        Command::Test | Command::Pipeline { .. } => print_pipeline(out, config, plan, reporter).await?,
        Command::Verify { url, header } => {
            // The table (or the JSON report) also when a check failed; the
            // failure is the error, on stderr.
            let result = commands::verify(config, &url, header.as_deref(), reporter).await;
            let report = match &result {
                Ok(report) => report,
                Err(error) => &error.report,
            };
            out.either(report, report)?;
            result?;
        }
        Command::Build => {
            let built = commands::build(config, plan, reporter).await?;
            let text: String = std::iter::once(&built.service)
                .chain(&built.tests)
                .map(|b| format!("{} {} {}\n", b.image, b.latest, b.id))
                .collect();
            out.either(&built, text)?;
        }
        Command::Push => {
            let pushed = commands::push(config, plan, reporter).await?;
            let text: String = std::iter::once(&pushed.service)
                .chain(&pushed.tests)
                .map(|r| format!("{}:{} {}\n", r.image, r.tag, r.reference()))
                .collect();
            out.either(&pushed, text)?;
        }
        Command::Lab { command } => return Ok(exit(commands::lab(&command, &plan.repo)?)),
        Command::Completions { shell } => return Out::bytes(&harness::cli::completions(shell)),
        Command::Man => return Out::bytes(&harness::cli::man()?),
        Command::Init => anyhow::bail!("harness init runs before any configuration is read"),
        Command::Remove { volumes } => {
            let plan = commands::remove(config, volumes, reporter, false).await?;
            let summary = match &plan {
                harness::deploy::Preview::Engine(plan) => plan.summary.clone(),
                harness::deploy::Preview::Swarm(plan) => plan.summary.clone(),
            };
            out.either(&plan, format!("{summary}\n"))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `harness pipeline` and `harness test`: the closing table (or the JSON
/// report), also when a step failed; the failure is the error.
async fn print_pipeline(out: &Out, config: &Config, plan: &Plan, reporter: &Reporter) -> anyhow::Result<()> {
    let report = commands::pipeline(config, plan, reporter).await?;
    let mut text = report.table();
    if let Some(url) = &report.url {
        text.push_str(&format!("books-ms {} is live: {url}/\n", report.version));
    }
    out.either(&report, text)?;
    match report.error {
        Some(error) => anyhow::bail!(error),
        None => Ok(()),
    }
}

/// `harness logs`: each line as it comes: people's marked, programs' one
/// JSON object a line.
async fn print_logs(out: &Out, config: &Config, request: &LogRequest, reporter: &Reporter) -> anyhow::Result<()> {
    let mut sink = |line: &LogLine| match out.json {
        true => out.text(format_args!("{}\n", serde_json::to_string(line)?)),
        false => out.text(format_args!("{}\n", line.marked())),
    };
    commands::logs(config, request, reporter, &mut sink).await
}

/// `harness status` for people.
fn status_text(status: &Status, config: &Config) -> String {
    let mut text = match status.live {
        Some(live) => format!("prod {}: {live} is live at {}\n", status.prod, status.url),
        None => format!("prod {}: no release is live\n", status.prod),
    };
    if let Some(preview) = status.preview {
        text.push_str(&format!("{preview} is in preview (a deploy runs, or one died mid-way)\n"));
    }
    if status.containers.is_empty() {
        text.push_str(&format!("nothing of {} runs on prod\n", config.project()));
    }
    for c in &status.containers {
        let version = c.version.as_deref().unwrap_or("-");
        text.push_str(&format!("{:<24} {:<7} {version:<20} {:<32} {}\n", c.name, c.role, c.status, c.image));
    }
    match &status.lock {
        Some(holder) => text.push_str(&format!(
            "deploy lock: held by {holder}; if that deploy died, `harness lock release` removes it\n"
        )),
        None => text.push_str("deploy lock: free\n"),
    }
    if !status.history.is_empty() {
        text.push_str("last deploys:\n");
        text.push_str(&history_text(&status.history));
    }
    text
}

/// `harness status --target swarm` for people: the nodes, the services,
/// each task with its node and version, the lock, the last deploys.
fn swarm_status_text(status: &SwarmStatus, config: &Config) -> String {
    let mut text = format!("swarm {} (users reach {} on every node)\nnodes:\n", status.manager, status.url);
    for n in &status.nodes {
        let leader = if n.leader { " (leader)" } else { "" };
        text.push_str(&format!(
            "  {:<12} {:<15} {:<8} {:<8} {}{leader}\n",
            n.name, n.address, n.role, n.state, n.availability
        ));
    }
    if status.services.is_empty() {
        text.push_str(&format!("no service of {} runs on the swarm\n", config.project()));
    } else {
        text.push_str("services:\n");
    }
    for s in &status.services {
        let replicas = s.replicas.map_or_else(|| "global".to_owned(), |r| format!("{r} replicas"));
        let update = match (&s.update, &s.update_message) {
            (Some(state), Some(message)) => format!(" update {state}: {message}"),
            (Some(state), None) => format!(" update {state}"),
            _ => String::new(),
        };
        let version = s.version.as_deref().unwrap_or("-");
        text.push_str(&format!("  {:<18} {:<6} {version:<20} {replicas:<11} {}{update}\n", s.name, s.role, s.image));
    }
    if !status.tasks.is_empty() {
        text.push_str("tasks:\n");
    }
    for t in &status.tasks {
        let version = t.version.as_deref().unwrap_or("-");
        let state =
            if t.state == t.desired { t.state.clone() } else { format!("{} (should be {})", t.state, t.desired) };
        text.push_str(&format!("  {:<18} {:<12} {version:<20} {state} {}\n", t.service, t.node, t.message));
    }
    match &status.lock {
        Some(holder) => text.push_str(&format!(
            "deploy lock: held by {holder}; if that deploy died, `harness lock release --target swarm` removes it\n"
        )),
        None => text.push_str("deploy lock: free\n"),
    }
    if !status.history.is_empty() {
        text.push_str("last deploys:\n");
        text.push_str(&history_text(&status.history));
    }
    text
}

/// The history for people: one line a deploy or rollback, oldest first.
fn history_text(entries: &[history::Entry]) -> String {
    if entries.is_empty() {
        return "no deploy recorded on prod yet\n".to_owned();
    }
    let mut text = String::new();
    for e in entries {
        let colour = e.colour.map_or("-", |c| c.name());
        let time = harness::runner::time(e.duration_ms);
        text.push_str(&format!(
            "{}  {:<8} {:<9} {:<20} {colour:<5} {time:>8}  {}\n",
            e.started, e.kind, e.outcome, e.release.version, e.by
        ));
        if let Some(error) = &e.error {
            text.push_str(&format!("    {}\n", harness::runner::first_line(error)));
        }
    }
    text
}

fn exit(success: bool) -> ExitCode {
    if success {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILED)
    }
}

/// stdout: the results, as text or as JSON. Write errors (a closed pipe)
/// come back as errors instead of the panic `println!` gives.
struct Out {
    json: bool,
}

impl Out {
    fn text(&self, text: impl Display) -> anyhow::Result<()> {
        let mut stdout = io::stdout().lock();
        write!(stdout, "{text}")?;
        stdout.flush()?;
        Ok(())
    }

    fn json(&self, value: &impl Serialize) -> anyhow::Result<()> {
        self.text(format_args!("{}\n", serde_json::to_string_pretty(value)?))
    }

    /// Bytes as they are (a script, a man page), then success.
    fn bytes(bytes: &[u8]) -> anyhow::Result<ExitCode> {
        let mut stdout = io::stdout().lock();
        stdout.write_all(bytes)?;
        stdout.flush()?;
        Ok(ExitCode::SUCCESS)
    }

    /// `value` as JSON with `--json`, else `text`.
    fn either(&self, value: &impl Serialize, text: impl Display) -> anyhow::Result<()> {
        if self.json {
            self.json(value)
        } else {
            self.text(text)
        }
    }
}
