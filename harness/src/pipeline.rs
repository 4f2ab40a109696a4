//! `harness pipeline` (and `harness test`): the chapter's nine steps in
//! order, package and build beside the tests, stopping at the first
//! failure, with a closing table of what ran when.

use std::time::Duration;

use anyhow::{bail, Context};
use serde::Serialize;

use crate::checkout::{self, Source};
use crate::config::Config;
use crate::plan::{Plan, Step};
use crate::progress::{Reporter, Spinner};
use crate::release::Release;
use crate::runner::{self, Done, Outcome, Runner, Timed};
use crate::{build, child, deploy, engine, follow, push, registry};

/// Where the output of the commands a step runs goes (test runners and
/// compilers are verbose).
const LOG_DIR: &str = ".harness/logs";

/// What a run did, for the closing table and `--json`.
#[derive(Debug, Serialize)]
pub struct PipelineReport {
    pub version: String,
    pub revision: String,
    /// Each step as it ran, with when it started (`started_ms`, from the
    /// start of the run): the package and build steps run beside the tests.
    pub steps: Vec<Timed>,
    /// The production URL, once verified.
    pub url: Option<String>,
    pub error: Option<String>,
}

impl PipelineReport {
    /// The closing table, for people.
    pub fn table(&self) -> String {
        runner::timeline("step", &self.steps)
    }
}

/// The steps that may run beside the tests: they only make artefacts on
/// this machine (what the package command makes, the images on the cd
/// engine). Nothing reaches the registry or prod before the tests passed:
/// the push, the deploy and every later step wait for them.
const BESIDE_TESTS: [Step; 2] = [Step::Package, Step::Build];

/// What a failure of the test step or of a step beside it says first.
const UNTOUCHED: &str = "nothing was pushed or deployed, prod is untouched";

/// Runs `plan.steps` in order, the test step with the steps after it in
/// [`BESIDE_TESTS`] beside it, stopping at the first failure. The report is
/// complete even on failure (the failed step, the steps it stopped, and
/// every later one skipped).
pub async fn run(config: &Config, plan: &Plan, reporter: &Reporter) -> PipelineReport {
    let mut runner = Runner::new(reporter, "");
    let mut error = None;
    let mut url = None;
    let state = RunState::default();
    // Up from the switch until the checks passed: a Ctrl-C or SIGTERM then
    // lets the step end (the checks remove what they wrote) and takes prod
    // back to the release before, as a failure would.
    let mut unverified: Option<crate::interrupt::Shield> = None;
    let mut rest = plan.steps.as_slice();
    while let Some((&step, after)) = rest.split_first() {
        rest = after;
        if error.is_none() && unverified.is_some() {
            if let Some(interrupted) = crate::interrupt::pending() {
                error = Some(format!("{interrupted} before step {step}{}", rolled_back(config, reporter).await));
            }
        }
        if error.is_some() {
            runner.skip(&step.to_string(), "");
            continue;
        }
        if step == Step::Test {
            let beside = after.iter().take_while(|s| BESIDE_TESTS.contains(s)).count();
            rest = &after[beside..];
            let context = StepContext { config, plan, reporter, state: &state };
            error = run_beside_tests(&mut runner, &after[..beside], &context).await.err();
            continue;
        }
        let result =
            runner.step(&step.to_string(), step.describe(), run_step(step, config, plan, reporter, &state)).await;
        if step == Step::Deploy && state.replaced.get() {
            unverified = Some(crate::interrupt::shield());
        }
        match result {
            Ok(()) if step == Step::Verify => {
                url = config.target_url().ok();
                unverified = None;
            }
            Ok(()) => {}
            Err(e) => {
                let mut message = format!("step {step} failed: {e:#}");
                // After the switch, anything that fails takes prod back to
                // the release before (the deploy undid its own failures).
                if state.replaced.get() && matches!(step, Step::Integrate | Step::Verify) {
                    message.push_str(&rolled_back(config, reporter).await);
                }
                error = Some(message);
            }
        }
    }
    if error.is_none() && unverified.is_some() {
        if let Some(interrupted) = crate::interrupt::pending() {
            error = Some(format!("{interrupted} before the checks passed{}", rolled_back(config, reporter).await));
        }
    }
    PipelineReport {
        version: plan.version.version.clone(),
        revision: plan.version.revision.clone(),
        steps: runner.into_timed(),
        url,
        error,
    }
}

/// What every step is given.
struct StepContext<'a> {
    config: &'a Config,
    plan: &'a Plan,
    reporter: &'a Reporter,
    state: &'a RunState,
}

/// What the steps of one run tell each other.
#[derive(Default)]
struct RunState {
    /// Set once the deploy step switched prod to this release.
    replaced: std::cell::Cell<bool>,
}

/// The test step, and `beside` (one after the other) at the same time,
/// from the start: the release and the images are ready early, so that the
/// tests of the runtime image need not wait for them, and the tests mostly
/// wait (on databases, deadlines, containers) while the release compiles.
/// Compiling the release beside the tests' own compile costs it little: a
/// one-line change compiled both in 9.5 s together against 7.2 s and 3.7 s
/// one after the other (docs/benchmarks.md). A failure of either side
/// stops the other at once (its processes killed, its step recorded as
/// stopped), so the pipeline never goes on without passed tests. The error
/// says that nothing reached the registry or prod.
async fn run_beside_tests(runner: &mut Runner<'_>, beside: &[Step], cx: &StepContext<'_>) -> Result<(), String> {
    use std::cell::RefCell;
    use std::time::Instant;

    let test_started = Instant::now();
    // The steps beside as they end, and the one running now.
    let ended: RefCell<Vec<Timed>> = RefCell::new(Vec::new());
    let running: std::cell::Cell<Option<(Step, Instant)>> = std::cell::Cell::new(None);
    let (test_result, beside_result) = {
        let shared: &Runner = runner;
        let test_name = Step::Test.to_string();
        let test = shared.measure(
            &test_name,
            Step::Test.describe(),
            test_started,
            run_step(Step::Test, cx.config, cx.plan, cx.reporter, cx.state),
        );
        let local = async {
            for &step in beside {
                let started = Instant::now();
                running.set(Some((step, started)));
                let work = run_step(step, cx.config, cx.plan, cx.reporter, cx.state);
                let (result, timed) = shared.measure(&step.to_string(), step.describe(), started, work).await;
                running.set(None);
                ended.borrow_mut().push(timed);
                result.map_err(|e| format!("step {step} failed; {UNTOUCHED}: {e:#}"))?;
            }
            Ok::<(), String>(())
        };
        tokio::pin!(test, local);
        let (mut test_result, mut beside_result) = (None, None);
        // Until both ended, or one failed.
        while test_result.is_none() || beside_result.is_none() {
            tokio::select! {
                result = &mut test, if test_result.is_none() => {
                    let failed = result.0.is_err();
                    test_result = Some(result);
                    if failed { break; }
                }
                result = &mut local, if beside_result.is_none() => {
                    let failed = result.is_err();
                    beside_result = Some(result);
                    if failed { break; }
                }
            }
        }
        (test_result, beside_result)
    };
    // Dropping the futures above killed what they ran; record it.
    let stopped = |name: &str, started: Instant, why: &str| {
        let detail = format!("stopped: {why}");
        runner.timed(name, Outcome::Stopped, started, detail)
    };
    let (test_error, test_record) = match test_result {
        Some((result, timed)) => (result.err().map(|e| format!("step test failed; {UNTOUCHED}: {e:#}")), timed),
        None => (None, stopped("test", test_started, "a step beside it failed")),
    };
    let mut records = vec![test_record];
    records.extend(ended.into_inner());
    // Set only while a step beside was dropped before it ended.
    if let Some((step, started)) = running.get() {
        records.push(stopped(&step.to_string(), started, "the tests failed"));
    }
    for timed in records {
        runner.record(timed);
    }
    for step in beside {
        if !runner.has(&step.to_string()) {
            runner.skip(&step.to_string(), "");
        }
    }
    match (test_error, beside_result.and_then(Result::err)) {
        (Some(error), _) | (None, Some(error)) => Err(error),
        (None, None) => Ok(()),
    }
}

/// Takes prod back to the release before this run's, and says how that
/// went (appended to the error that made it).
async fn rolled_back(config: &Config, reporter: &Reporter) -> String {
    let rollback = async {
        let credentials = registry::docker_credentials(config)?;
        deploy::rollback(config, None, credentials, reporter).await
    };
    match rollback.await {
        Ok(back) => format!("; rolled back: {} serves {} again", back.container, back.image),
        Err(e) => format!("; rolling back failed too: {e:#}; see `harness status`"),
    }
}

async fn run_step(
    step: Step,
    config: &Config,
    plan: &Plan,
    reporter: &Reporter,
    state: &RunState,
) -> anyhow::Result<Done<()>> {
    if let Some(why) = plan.skipped(step) {
        return Ok(Done::skipped((), why));
    }
    if step != Step::Test {
        return Ok(Done::passed((), do_step(step, config, plan, reporter, state).await?));
    }
    let tree = tested::committed_tree(plan);
    if let Some(tree) = tree.as_deref().filter(|tree| plan.reuse_tests && tested::passed(&plan.repo, plan, tree)) {
        let short: String = tree.chars().take(12).collect();
        return Ok(Done::reused((), format!("tree {short} passed them before (--retest runs them again)")));
    }
    let detail = do_step(step, config, plan, reporter, state).await?;
    if let Some(tree) = tree {
        tested::record(&plan.repo, &tested::key(plan, &tree));
    }
    Ok(Done::passed((), detail))
}

async fn do_step(
    step: Step,
    config: &Config,
    plan: &Plan,
    reporter: &Reporter,
    state: &RunState,
) -> anyhow::Result<String> {
    match step {
        Step::Checkout => checkout::materialise(&plan.source, &plan.version),
        Step::Test => {
            // `test.prepare` first, when set (test-build.log), then
            // `test.command` (test.log).
            let test = plan.test_command.as_deref().context("the plan has no test command ([test] command)")?;
            let env = release_env(plan);
            let setting = "pipeline.test_timeout_secs";
            let started = std::time::Instant::now();
            let tested = async {
                if let Some(prepare) = &plan.test_prepare {
                    let deadline = (config.pipeline.test_timeout_secs, setting);
                    run_logged(plan, reporter, "test-build", prepare, &env, deadline).await?;
                }
                let left = config.pipeline.test_timeout_secs.saturating_sub(started.elapsed().as_secs()).max(1);
                run_logged(plan, reporter, "test", test, &env, (left, setting)).await
            }
            .await;
            // What the tests started and left (a test binary keeps its
            // database container for its life), whether they passed or not.
            if let Err(e) = reap_test_containers(&config.test.containers_label, std::time::Duration::ZERO).await {
                reporter.warn(format!("the tests' leftover containers could not be removed: {e:#}"));
            }
            tested?;
            Ok(test.to_owned())
        }
        Step::Package => {
            let package =
                plan.package_command.as_deref().context("the plan has no package command ([build] package)")?;
            let deadline = (config.pipeline.package_timeout_secs, "pipeline.package_timeout_secs");
            run_logged(plan, reporter, "package", package, &release_env(plan), deadline).await?;
            Ok(package.to_owned())
        }
        Step::Build => {
            let cd = engine::cd().await?;
            let service = build::service_image(&cd, plan.source.dir(), config, &plan.version, reporter).await?;
            let tests = build::tests_image(&cd, plan.source.dir(), config, &plan.version, reporter).await?;
            Ok(match tests {
                Some(tests) => format!("{} and {}", service.image, tests.image),
                None => service.image,
            })
        }
        Step::Push => Ok(push::push_service(&plan.repo, config, &plan.version, reporter).await?.reference()),
        Step::Deploy => {
            let release = Release::last_pushed(&plan.repo)?;
            let credentials = registry::docker_credentials(config)?;
            let deployed = deploy::deploy(config, &release, credentials, reporter).await?;
            state.replaced.set(deployed.replaced);
            let what = if deployed.replaced { "" } else { " (already running, unchanged)" };
            Ok(format!("{} on {}{what}", deployed.container, target_host(config)))
        }
        Step::Integrate => integrate(config, &plan.version.revision).await,
        Step::Verify => verify(config, &plan.version.revision, reporter).await,
        Step::PushTests => match push::push_tests(&plan.repo, config, &plan.version, reporter).await? {
            Some(pushed) => Ok(pushed.reference()),
            None => Ok("no tests image ([build] tests_dockerfile is not set)".to_owned()),
        },
    }
}

/// The Docker API a deploy goes to: prod's, or the swarm manager's.
fn target_host(config: &Config) -> &str {
    match config.prod.kind {
        crate::config::TargetKind::Engine => &config.prod.docker_host,
        crate::config::TargetKind::Swarm => &config.swarm.docker_host,
    }
}

/// The integration: users reach the release through the proxy, on prod's
/// own address (on the swarm, the manager's proxy): `[version]`'s path
/// reports the revision deployed, or (a service without `[version]`)
/// `healthcheck.path` answers 2xx.
async fn integrate(config: &Config, revision: &str) -> anyhow::Result<String> {
    let base = config.target_url()?;
    let http = crate::http::client(Duration::from_secs(5), Duration::from_secs(5))?;
    let target = match config.prod.kind {
        crate::config::TargetKind::Engine => "prod's proxy (prod.docker_host's address, prod.app_port)",
        crate::config::TargetKind::Swarm => "the swarm manager's proxy (swarm.docker_host's address, swarm.app_port)",
    };
    let path = config.version.as_ref().map_or(config.healthcheck.path.as_str(), |v| v.path.as_str());
    let url = format!("{base}{path}");
    let response = http.get(&url).send().await.with_context(|| format!("GET {url}: {target} does not answer"))?;
    let status = response.status();
    if !status.is_success() {
        bail!("GET {url} answered {status}");
    }
    let Some(version) = &config.version else {
        return Ok(format!("{url} answers {status} through the proxy (no [version] to check the revision)"));
    };
    let body: serde_json::Value = response.json().await.with_context(|| format!("GET {url}: not JSON"))?;
    match body.pointer(&version.field).and_then(serde_json::Value::as_str) {
        Some(reported) if reported == revision => Ok(format!("{url} reports {revision} through the proxy")),
        other => bail!(
            "{url} reports revision {} at {} (version.field), but {revision} was deployed",
            other.unwrap_or("none"),
            version.field
        ),
    }
}

/// The post-deployment checks: the service's `[[checks]]` as users reach
/// it (books-ms's include `harness verify`, its checks in code), then the
/// revision again (`[version]`), so that the run ends on what it shipped.
/// The pipeline's shield is up: Ctrl-C or SIGTERM ends the running check
/// as Ctrl-C would (a command check gets SIGINT and tidies up, `harness
/// verify` removing what it wrote), runs no further one, and fails the
/// step, which rolls the release back.
async fn verify(config: &Config, revision: &str, reporter: &Reporter) -> anyhow::Result<String> {
    let url = config.target_url()?;
    let checks = config.checks()?;
    let secrets = config.app_secrets();
    let seen = crate::interrupt::received();
    let on = deploy::checks::Run {
        url: &url,
        revision: Some(revision),
        preview: None,
        preview_header: &config.prod.preview_header,
        secrets: &secrets,
        repo: &config.repo,
        verify_ids: &config.verify.ids,
        interrupt_after: Some(seen),
    };
    let interrupted = || (crate::interrupt::received() > seen).then(crate::interrupt::pending).flatten();
    for check in &checks {
        if let Some(interrupted) = interrupted() {
            bail!("{interrupted} before the check `{}`", check.name());
        }
        let _spinner = Spinner(reporter.spinner(format!("check {}", check.name())));
        let checked = deploy::checks::run(check, &on).await;
        match (checked, interrupted()) {
            (Err(e), Some(interrupted)) => {
                bail!("{interrupted} while the check `{}` ran; it stopped: {e:#}", check.name())
            }
            (checked, _) => checked?,
        }
    }
    if let Some(interrupted) = interrupted() {
        bail!("{interrupted} while the checks ran");
    }
    let mut passed = format!("{} checks", checks.len());
    if config.version.is_some() {
        integrate(config, revision).await?;
        passed.push_str(" and the revision");
    }
    Ok(format!("{passed} passed on {url}"))
}

/// The committed tree whose tests the test step will reuse (it passed them
/// before), if any: what `--dry-run` says of the working tree. A checkout
/// (`--source`, `--ref`) is only known once the checkout step ran: None.
pub fn reused_tree(plan: &Plan) -> Option<String> {
    if !plan.reuse_tests || plan.test_command.is_none() || !matches!(plan.source, Source::WorkingTree { .. }) {
        return None;
    }
    tested::committed_tree(plan).filter(|tree| tested::passed(&plan.repo, plan, tree))
}

/// One pipeline at a time per repository: the runs share `.harness/`
/// (the checkout, the logs, the push record) and what the steps write in
/// the tree (the package command's output). An advisory lock
/// on `.harness/pipeline.lock`, held while the process lives: a killed run
/// leaves no lock behind.
pub struct RepoLock {
    _file: std::fs::File,
}

impl RepoLock {
    pub fn take(repo: &std::path::Path) -> anyhow::Result<RepoLock> {
        use std::io::{Read, Seek, Write};
        let dir = repo.join(".harness");
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let path = dir.join("pipeline.lock");
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {
                let holder = format!("pid {} since {}", std::process::id(), crate::deploy::history::now());
                file.set_len(0)?;
                file.rewind()?;
                file.write_all(holder.as_bytes())?;
                Ok(RepoLock { _file: file })
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                bail!(
                    "another harness pipeline runs in {} ({}); wait for it to end: they would share .harness/ and what the \
                     steps write in the tree",
                    repo.display(),
                    if holder.trim().is_empty() { "holder unknown" } else { holder.trim() }
                )
            }
            Err(std::fs::TryLockError::Error(e)) => Err(e).with_context(|| format!("cannot lock {}", path.display())),
        }
    }
}

/// The trees whose pre-deploy tests passed, so that shipping the same
/// committed code again does not rerun them. A tree with uncommitted changes
/// is always tested, and so is one whose test commands changed since it
/// passed (a `--source` tree's come from the state folder's harness.toml,
/// or the environment, which the tree does not hold).
mod tested {
    use std::path::Path;

    use crate::checkout::Source;
    use crate::plan::Plan;
    use crate::version::git;

    const RECORD: &str = ".harness/tested-trees";
    /// How many trees the record keeps.
    const KEEP: usize = 50;

    /// The git tree of the code the plan ships, when that is all of it: a
    /// checkout, or a working tree without changes or untracked files
    /// (which a build would pick up).
    pub fn committed_tree(plan: &Plan) -> Option<String> {
        let commit = match &plan.source {
            Source::WorkingTree { dir } => {
                let status = git(dir, &["status", "--porcelain", "--untracked-files=normal"]).ok()?;
                if plan.version.dirty || !status.is_empty() {
                    return None;
                }
                "HEAD".to_owned()
            }
            Source::Checkout { commit, .. } => commit.clone(),
        };
        git(plan.source.dir(), &["rev-parse", &format!("{commit}^{{tree}}")]).ok()
    }

    /// What the record holds for `tree` tested by the plan's commands:
    /// the tree, and a digest of `test.prepare` and `test.command`.
    pub fn key(plan: &Plan, tree: &str) -> String {
        use sha2::Digest;
        let commands =
            [plan.test_prepare.as_deref().unwrap_or_default(), plan.test_command.as_deref().unwrap_or_default()];
        let digest = sha2::Sha256::digest(commands.join("\0").as_bytes());
        let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        format!("{tree} tests:{hex}")
    }

    /// `tree` passed the plan's commands before.
    pub fn passed(repo: &Path, plan: &Plan, tree: &str) -> bool {
        let key = key(plan, tree);
        std::fs::read_to_string(repo.join(RECORD)).is_ok_and(|text| text.lines().any(|l| l == key))
    }

    /// Best effort: losing the record only means testing again.
    pub fn record(repo: &Path, tree: &str) {
        let path = repo.join(RECORD);
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let mut trees: Vec<&str> = text.lines().filter(|l| !l.is_empty() && *l != tree).collect();
        trees.push(tree);
        let start = trees.len().saturating_sub(KEEP);
        let _ = std::fs::write(&path, trees[start..].join("\n") + "\n");
    }
}

/// What the test and package commands are told of the release they make:
/// `HARNESS_VERSION`, `HARNESS_REVISION`.
fn release_env(plan: &Plan) -> [(&'static str, &str); 2] {
    [("HARNESS_VERSION", plan.version.version.as_str()), ("HARNESS_REVISION", plan.version.revision.as_str())]
}

/// Removes the containers on this machine's engine that tests started
/// (labelled `label`, the test process's pid as its value:
/// `test.containers_label`) and whose test process no longer runs (ended,
/// failed, or stopped with its step: a process killed a moment ago gets
/// `grace` to be gone); their names. Another run's, still running, are
/// left alone. No label: nothing to do.
pub async fn reap_test_containers(label: &str, grace: std::time::Duration) -> anyhow::Result<Vec<String>> {
    use bollard::query_parameters::{ListContainersOptionsBuilder, RemoveContainerOptionsBuilder};
    if label.is_empty() {
        return Ok(Vec::new());
    }
    let cd = crate::engine::cd().await?;
    let filters = std::collections::HashMap::from([("label".to_owned(), vec![label.to_owned()])]);
    let options = ListContainersOptionsBuilder::default().all(true).filters(&filters).build();
    let containers = cd.call("for the tests' containers", cd.docker.list_containers(Some(options))).await?;
    let mut removed = Vec::new();
    for container in containers {
        let pid = container.labels.as_ref().and_then(|l| l.get(label)).cloned().unwrap_or_default();
        let until = std::time::Instant::now() + grace;
        while runs(&pid) && std::time::Instant::now() < until {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let Some(id) = container.id.filter(|_| !runs(&pid)) else { continue };
        let options = RemoveContainerOptionsBuilder::default().force(true).v(true).build();
        let name = container.names.and_then(|n| n.first().cloned()).unwrap_or_else(|| id.clone());
        let name = name.trim_start_matches('/').to_owned();
        // 409: a removal is already under way (one this run asked for in
        // a step that the interrupt dropped mid-call): the engine finishes
        // it; the container is removed once it is gone.
        let removing = cd.call(format!("to remove {name}"), cd.docker.remove_container(&id, Some(options))).await;
        crate::engine::tolerate(crate::engine::tolerate(removing, 404), 409)?;
        let until = std::time::Instant::now() + REMOVAL_DEADLINE;
        while cd.inspect_container(&id).await?.is_some() {
            if std::time::Instant::now() >= until {
                anyhow::bail!("{name} is still there {} s after its removal", REMOVAL_DEADLINE.as_secs());
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        removed.push(name);
    }
    Ok(removed)
}

/// How long a tests' container may take to be gone once removed.
const REMOVAL_DEADLINE: std::time::Duration = std::time::Duration::from_secs(15);

/// Whether process `pid` runs (a zombie does not).
fn runs(pid: &str) -> bool {
    pid.parse::<u32>().is_ok()
        && std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|stat| !stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')))
}

/// Runs `command` (`sh -c`) in the code's folder with its output in the
/// repo's `.harness/logs/NAME.log`, bounded as [`child::run`] bounds it
/// (its whole process group, within `deadline`: seconds, and the setting
/// that sets them), saying what it does as its log grows; on failure, the
/// error names the command and carries the log's last lines. A checkout
/// builds in the repo's own target folder ([`checkout::target_dirs`]). The
/// command never sees the harness's own settings (`HARNESS_*`, the
/// registry's password among them): it may be someone else's code
/// (`--source`); it gets `env`.
async fn run_logged(
    plan: &Plan,
    reporter: &Reporter,
    name: &str,
    shell_command: &str,
    env: &[(&str, &str)],
    deadline: (u64, &str),
) -> anyhow::Result<()> {
    let dir = plan.repo.join(LOG_DIR);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let log_path = dir.join(format!("{name}.log"));
    std::fs::File::create(&log_path).with_context(|| format!("cannot write {}", log_path.display()))?;
    // By its path: found also when PATH is unset or empty (sh then uses
    // its own default PATH for the command's programs).
    let mut command = tokio::process::Command::new("/bin/sh");
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("HARNESS_") {
            command.env_remove(key);
        }
    }
    if let Source::Checkout { .. } = plan.source {
        command.envs(checkout::target_dirs(&plan.repo));
    }
    command.arg("-c").arg(shell_command).envs(env.iter().copied()).current_dir(plan.source.dir());
    let shown = shell_command;
    // What the command is doing, from its log, for people watching.
    let spinner = Spinner(reporter.spinner(format!("{name}: {shown}")));
    let what = format!("`{shown}`");
    let ended = tokio::select! {
        ended = child::run(&mut command, &what, child::Output::Log(&log_path), deadline) => ended,
        never = follow::follow(&log_path, &spinner.0, name) => match never {},
    };
    drop(spinner);
    let ended = ended.with_context(|| format!("its log is {}", log_path.display()))?;
    if ended.status.success() {
        return Ok(());
    }
    let text = std::fs::read_to_string(&log_path).unwrap_or_default();
    let tail: Vec<&str> = text.lines().rev().take(25).collect::<Vec<_>>().into_iter().rev().collect();
    bail!(
        "`{shown}` failed ({}); full log in {}; its last lines:\n  {}",
        ended.status,
        log_path.display(),
        tail.join("\n  ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A committed git repository of `files`, and a service `hello`
    /// described by `toml` over the defaults, planned for `harness test`
    /// (the test and package steps): no engine, no lab.
    fn service(toml: &str, files: &[(&str, &str)]) -> (tempfile::TempDir, Config, Plan) {
        use figment::providers::{Format, Serialized, Toml};
        let repo = tempfile::tempdir().unwrap();
        for (path, text) in files {
            std::fs::write(repo.path().join(path), text).unwrap();
        }
        std::fs::write(repo.path().join(".gitignore"), "/.harness\n/out\n").unwrap();
        let git = |args: &[&str]| {
            let status = std::process::Command::new("git")
                .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
                .args(args)
                .current_dir(repo.path())
                .output()
                .unwrap();
            assert!(status.status.success(), "git {args:?}: {status:?}");
        };
        git(&["init", "-q"]);
        git(&["add", "-A"]);
        git(&["commit", "-qm", "a service"]);
        let mut config: Config = figment::Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string(&format!("[service]\nname = \"hello\"\n{toml}")))
            .extract()
            .unwrap();
        config.repo = repo.path().to_owned();
        let version = crate::version::Version::of(repo.path()).unwrap();
        let source = Source::WorkingTree { dir: repo.path().to_owned() };
        let plan =
            Plan::new(repo.path().to_owned(), source, version, &config, vec![Step::Test, Step::Package]).unwrap();
        (repo, config, plan)
    }

    fn outcomes(report: &PipelineReport) -> Vec<(String, String, String)> {
        let outcome =
            |t: &Timed| serde_json::to_value(t.record.outcome).unwrap().as_str().unwrap_or_default().to_owned();
        report.steps.iter().map(|t| (t.record.name.clone(), outcome(t), t.record.detail.clone())).collect()
    }

    #[tokio::test]
    async fn a_service_without_test_or_package_commands_skips_those_steps_saying_why() {
        let (_repo, config, plan) = service("", &[("app.py", "print('hi')\n")]);
        let report = run(&config, &plan, &Reporter::hidden()).await;
        assert_eq!(report.error, None);
        assert_eq!(
            outcomes(&report),
            [
                ("test".to_owned(), "skipped".to_owned(), "no [test] command in harness.toml".to_owned()),
                ("package".to_owned(), "skipped".to_owned(), "no [build] package in harness.toml".to_owned()),
            ]
        );
    }

    #[tokio::test]
    async fn the_test_and_package_commands_run_in_the_code_with_the_release_named() {
        let toml = "[test]\nprepare = \"mkdir -p out && echo prepared > out/prepared\"\n\
                    command = \"test -f out/prepared && printf %s \\\"$HARNESS_REVISION\\\" > out/tested\"\n\
                    [build]\npackage = \"mkdir -p out && printf %s \\\"$HARNESS_VERSION\\\" > out/packaged\"\n";
        let (repo, config, plan) = service(toml, &[("app.py", "print('hi')\n")]);
        let report = run(&config, &plan, &Reporter::hidden()).await;
        assert_eq!(report.error, None, "{:?}", outcomes(&report));
        let steps = outcomes(&report);
        assert_eq!((steps[0].0.as_str(), steps[0].1.as_str()), ("test", "passed"), "{steps:?}");
        assert!(steps[0].2.starts_with("test -f out/prepared"), "the detail is the command: {steps:?}");
        assert_eq!((steps[1].0.as_str(), steps[1].1.as_str()), ("package", "passed"), "{steps:?}");
        let read = |name: &str| std::fs::read_to_string(repo.path().join("out").join(name)).unwrap();
        assert_eq!(read("tested"), plan.version.revision);
        assert_eq!(read("packaged"), plan.version.version);
        assert!(
            repo.path().join(".harness/logs/test-build.log").is_file()
                && repo.path().join(".harness/logs/test.log").is_file()
        );
    }

    #[tokio::test]
    async fn a_failing_test_command_is_named_with_its_output_and_nothing_after_it_runs() {
        let toml = "[test]\ncommand = \"echo planted failure >&2; exit 3\"\n[build]\npackage = \"sleep 20\"\n";
        let (_repo, config, plan) = service(toml, &[("app.py", "print('hi')\n")]);
        let started = std::time::Instant::now();
        let report = run(&config, &plan, &Reporter::hidden()).await;
        let error = report.error.clone().expect("the run failed");
        assert!(error.starts_with("step test failed; nothing was pushed or deployed, prod is untouched"), "{error}");
        assert!(error.contains("`echo planted failure >&2; exit 3` failed (exit status: 3)"), "{error}");
        assert!(error.contains("planted failure"), "the log's last lines: {error}");
        let steps = outcomes(&report);
        assert_eq!(steps[0].1, "failed", "{steps:?}");
        assert_ne!(steps[1].1, "passed", "the package beside it was stopped: {steps:?}");
        assert!(started.elapsed() < std::time::Duration::from_secs(15), "the package's sleep was not stopped");
    }

    #[test]
    fn a_second_pipeline_in_the_same_repository_is_refused_naming_the_first() {
        let repo = tempfile::tempdir().unwrap();
        let first = RepoLock::take(repo.path()).unwrap();
        let error = RepoLock::take(repo.path()).err().expect("the second is refused").to_string();
        assert!(
            error.contains(&format!("pid {}", std::process::id())) && error.contains("another harness pipeline"),
            "{error}"
        );
        drop(first);
        // A process another test forks at that moment holds a copy of the
        // descriptor until it execs (close-on-exec): bounded retries.
        let again = (0..100).find_map(|_| {
            RepoLock::take(repo.path()).ok().or_else(|| {
                std::thread::sleep(std::time::Duration::from_millis(20));
                None
            })
        });
        assert!(again.is_some(), "free again once the first ends");
    }

    #[test]
    fn a_tested_tree_is_remembered_and_the_record_stays_bounded() {
        let repo = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(repo.path().join(".harness")).unwrap();
        let version = crate::version::Version { version: "v".into(), revision: "r".into(), dirty: false };
        let source = Source::WorkingTree { dir: repo.path().to_owned() };
        let config = crate::config::books_ms();
        let plan = Plan::new(repo.path().to_owned(), source, version, &config, vec![]).unwrap();
        assert!(!tested::passed(repo.path(), &plan, "t0"));
        for i in 0..60 {
            tested::record(repo.path(), &tested::key(&plan, &format!("t{i}")));
        }
        tested::record(repo.path(), &tested::key(&plan, "t59"));
        assert!(tested::passed(repo.path(), &plan, "t59") && tested::passed(repo.path(), &plan, "t10"));
        assert!(!tested::passed(repo.path(), &plan, "t9"), "only the last 50 are kept");
        assert!(!tested::passed(repo.path(), &plan, "t"));
        // Another test command: the same tree is tested again.
        let mut other = plan;
        other.test_command = Some("cargo test --workspace".into());
        assert!(!tested::passed(repo.path(), &other, "t59"));
    }
}
