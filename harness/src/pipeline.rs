//! `harness pipeline` (and `harness test`): the chapter's nine steps in
//! order, stopping at the first failure, with a closing table.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::Serialize;

use crate::config::Config;
use crate::deploy::{self, Release};
use crate::plan::{Plan, Step};
use crate::report::Reporter;
use crate::checkout::{self, Source};
use crate::{build, docker, push, verify};

/// Where the output of the commands a step runs goes (cargo is verbose).
const LOG_DIR: &str = ".harness/logs";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Passed,
    /// The step's work was already done for exactly this input (the test
    /// step, for a committed tree that passed them before).
    Reused,
    Failed,
    Skipped,
}

#[derive(Debug, Serialize)]
pub struct StepReport {
    pub step: Step,
    pub outcome: Outcome,
    pub duration_ms: u64,
    pub detail: String,
}

#[derive(Debug, Serialize)]
pub struct PipelineReport {
    pub version: String,
    pub revision: String,
    pub steps: Vec<StepReport>,
    /// The production URL, once verified.
    pub url: Option<String>,
    pub error: Option<String>,
}

impl PipelineReport {
    /// The closing table, for people.
    pub fn table(&self) -> String {
        let mut out = String::from("step        outcome   time     detail\n");
        for s in &self.steps {
            let outcome = match s.outcome {
                Outcome::Passed => "passed",
                Outcome::Reused => "reused",
                Outcome::Failed => "FAILED",
                Outcome::Skipped => "skipped",
            };
            let time = if s.outcome == Outcome::Skipped { "-".to_owned() } else { format!("{:.1}s", s.duration_ms as f64 / 1000.0) };
            out.push_str(&format!("{:<11} {outcome:<9} {time:<8} {}\n", s.step.to_string(), s.detail));
        }
        out
    }
}

/// Runs `plan.steps` in order. The report is complete even on failure (the
/// failed step, and every later one skipped).
pub async fn run(config: &Config, plan: &Plan, reporter: &Reporter) -> PipelineReport {
    let mut report = PipelineReport {
        version: plan.version.version.clone(),
        revision: plan.version.revision.clone(),
        steps: Vec::new(),
        url: None,
        error: None,
    };
    let mut failed = false;
    for &step in &plan.steps {
        if failed {
            report.steps.push(StepReport { step, outcome: Outcome::Skipped, duration_ms: 0, detail: String::new() });
            continue;
        }
        let spinner = reporter.spinner(format!("{step}: {}", step.describe()));
        let started = Instant::now();
        let result = run_step(step, config, plan, reporter).await;
        spinner.finish_and_clear();
        let duration_ms = started.elapsed().as_millis() as u64;
        match result {
            Ok((outcome, detail)) => {
                reporter.line(format!("✓ {step} ({:.1}s) {detail}", duration_ms as f64 / 1000.0));
                if step == Step::Verify {
                    report.url = Some(config.prod_url().unwrap_or_default());
                }
                report.steps.push(StepReport { step, outcome, duration_ms, detail });
            }
            Err(e) => {
                failed = true;
                let message = format!("step {step} failed: {e:#}");
                report.steps.push(StepReport { step, outcome: Outcome::Failed, duration_ms, detail: first_line(&format!("{e:#}")) });
                report.error = Some(message);
            }
        }
    }
    report
}

fn first_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default();
    if line.chars().count() > 100 {
        format!("{}…", line.chars().take(100).collect::<String>())
    } else {
        line.to_owned()
    }
}

async fn run_step(step: Step, config: &Config, plan: &Plan, reporter: &Reporter) -> anyhow::Result<(Outcome, String)> {
    if step != Step::Test {
        return Ok((Outcome::Passed, do_step(step, config, plan, reporter).await?));
    }
    let tree = tested::committed_tree(plan);
    if let Some(tree) = tree.as_deref().filter(|tree| plan.reuse_tests && tested::passed(&plan.repo, tree)) {
        let short: String = tree.chars().take(12).collect();
        return Ok((Outcome::Reused, format!("tree {short} passed them before (--retest runs them again)")));
    }
    let detail = do_step(step, config, plan, reporter).await?;
    if let Some(tree) = tree {
        tested::record(&plan.repo, &tree);
    }
    Ok((Outcome::Passed, detail))
}

async fn do_step(step: Step, config: &Config, plan: &Plan, reporter: &Reporter) -> anyhow::Result<String> {
    match step {
        Step::Checkout => checkout::materialise(&plan.source, &plan.version),
        Step::Test => {
            // The service's pre-deploy tests: its unit tests, the API against
            // a real database container, and the runtime image. Selected
            // from the whole workspace rather than with `-p books-ms`, so
            // that features unify as in `cargo test --workspace` and the
            // developer's build is reused instead of rebuilt.
            let args = ["test", "--workspace", "--locked", "--lib", "--test", "api"];
            run_logged(plan, "test", "cargo", &args, &[]).await?;
            Ok(format!("cargo {}", args.join(" ")))
        }
        Step::Package => {
            run_logged(plan, "package", "bash", &["scripts/dist.sh"], &[("BOOKS_MS_REVISION", plan.version.revision.as_str())]).await?;
            Ok(build::DIST_BINARY.to_owned())
        }
        Step::Build => {
            let cd = docker::cd().await?;
            let service = build::service_image(&cd, plan.source.dir(), config, &plan.version, reporter).await?;
            build::tests_image(&cd, plan.source.dir(), config, &plan.version, reporter).await?;
            Ok(service.image)
        }
        Step::Push => Ok(push::push_service(&plan.repo, config, &plan.version, reporter).await?.reference()),
        Step::Deploy => {
            let record = push::load_last(&plan.repo)?;
            let release = Release { image: record.reference(), version: record.version, revision: record.revision };
            let prod = docker::prod(config).await?;
            let credentials = push::docker_credentials(config)?;
            let deployed = deploy::deploy(&prod, config, &release, credentials, reporter).await?;
            let what = if deployed.replaced { "" } else { " (already running, unchanged)" };
            Ok(format!("{} on {}{what}", deployed.container, config.prod.docker_host))
        }
        Step::Integrate => integrate(config).await,
        Step::Verify => {
            let url = config.prod_url()?;
            let report = verify::verify(&url, &config.checks.ids, reporter).await.map_err(|e| anyhow::anyhow!("{e}"))?;
            let revision = report.version.as_ref().map(|v| v.revision.clone()).unwrap_or_default();
            if revision != plan.version.revision {
                bail!("{url}/version reports revision {revision}, but {} was deployed", plan.version.revision);
            }
            Ok(format!("{} checks passed on {url}", report.checks.len()))
        }
        Step::PushTests => Ok(push::push_tests(&plan.repo, config, &plan.version, reporter).await?.reference()),
    }
}

/// This issue's integration: the service answers on prod's own address
/// (the proxy comes with the zero-downtime switch).
async fn integrate(config: &Config) -> anyhow::Result<String> {
    let url = format!("{}/health", config.prod_url()?);
    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).no_proxy().build()?;
    let status = http.get(&url).send().await.with_context(|| format!("GET {url}: prod's address does not answer"))?.status();
    if !status.is_success() {
        bail!("GET {url} answered {status}");
    }
    Ok(format!("{url} answers"))
}

/// The trees whose pre-deploy tests passed, so that shipping the same
/// committed code again does not rerun them. A tree with uncommitted changes
/// is always tested.
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

    pub fn passed(repo: &Path, tree: &str) -> bool {
        std::fs::read_to_string(repo.join(RECORD)).is_ok_and(|text| text.lines().any(|l| l == tree))
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

/// Runs a command in the code's folder with its output in the repo's
/// `.harness/logs/NAME.log`; on failure, the error carries the log's last
/// lines. A checkout builds in the repo's own target folders.
async fn run_logged(plan: &Plan, name: &str, program: &str, args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<()> {
    let dir = plan.repo.join(LOG_DIR);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let log_path = dir.join(format!("{name}.log"));
    let log = std::fs::File::create(&log_path).with_context(|| format!("cannot write {}", log_path.display()))?;
    let mut command = tokio::process::Command::new(program);
    if let Source::Checkout { .. } = plan.source {
        command.envs(checkout::target_dirs(&plan.repo));
    }
    let status = command
        .args(args)
        .envs(env.iter().copied())
        .current_dir(plan.source.dir())
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .status()
        .await
        .with_context(|| format!("cannot run {program}"))?;
    if status.success() {
        return Ok(());
    }
    let text = std::fs::read_to_string(&log_path).unwrap_or_default();
    let tail: Vec<&str> = text.lines().rev().take(25).collect::<Vec<_>>().into_iter().rev().collect();
    bail!("`{program} {}` failed ({status}); full log in {}; its last lines:\n  {}", args.join(" "), log_path.display(), tail.join("\n  "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_shows_outcomes_and_skips() {
        let report = PipelineReport {
            version: "v".into(),
            revision: "r".into(),
            steps: vec![
                StepReport { step: Step::Checkout, outcome: Outcome::Passed, duration_ms: 1200, detail: "tree".into() },
                StepReport { step: Step::Test, outcome: Outcome::Failed, duration_ms: 3000, detail: "boom".into() },
                StepReport { step: Step::Package, outcome: Outcome::Skipped, duration_ms: 0, detail: String::new() },
            ],
            url: None,
            error: Some("step test failed: boom".into()),
        };
        let table = report.table();
        assert!(table.contains("checkout    passed    1.2s"), "{table}");
        assert!(table.contains("test        FAILED    3.0s     boom"), "{table}");
        assert!(table.contains("package     skipped   -"), "{table}");
    }

    #[test]
    fn a_tested_tree_is_remembered_and_the_record_stays_bounded() {
        let repo = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(repo.path().join(".harness")).unwrap();
        assert!(!tested::passed(repo.path(), "t0"));
        for i in 0..60 {
            tested::record(repo.path(), &format!("t{i}"));
        }
        tested::record(repo.path(), "t59");
        assert!(tested::passed(repo.path(), "t59") && tested::passed(repo.path(), "t10"));
        assert!(!tested::passed(repo.path(), "t9"), "only the last 50 are kept");
        assert!(!tested::passed(repo.path(), "t"));
    }

    #[test]
    fn long_errors_are_cut_to_one_line() {
        assert_eq!(first_line("a\nb"), "a");
        assert_eq!(first_line(&"x".repeat(150)).chars().count(), 101);
    }
}
