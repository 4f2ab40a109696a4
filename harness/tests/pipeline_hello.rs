//! `harness pipeline` ships a service that is not books-ms, from its own
//! harness.toml (issue 21): a copy of the fixture `tests/fixtures/hello`
//! (a Python HTTP app), committed in a git repository of its own, given a
//! `[test] command` (Python's unittest) and a `[build] package` whose
//! output the image copies. All nine steps on the lab's single prod, beside
//! books-ms, which is left exactly as it was; then a copy whose tests fail:
//! nothing is pushed or deployed, and the error names the command.
//!
//! Judged by independent clients: the registry's HTTP API, prod's engine
//! and HTTP on the service's port. What the tests pushed is removed from
//! the registry, what they deployed from prod (`harness remove --volumes`).
//! Needs the lab up and root; never skips.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use bollard::Docker;
use serde_json::Value;

use common::run::Run;
use common::{bounded, http_client, repo_root, Lab};

/// The prod project and image repository of these tests: not `hello`
/// (another_service.rs's), and no name another test's clean-up matches.
const PROJECT: &str = "shipped-hello";
const REPOSITORY: &str = "books-lab-tests/shipped-hello";
/// Its port on prod: beside books-ms's 8080 and another_service.rs's 8091.
const PORT: u16 = 8092;
/// A whole pipeline of the fixture: its image's apt layer is cached after
/// the first build; the accessory's start, readiness and checks.
const PIPELINE_DEADLINE: Duration = Duration::from_secs(600);

/// What the copy's tests check: the app serves /hello, and the test step
/// tells them the revision it ships.
const PASSING_TESTS: &str = r#"import os
import unittest


class App(unittest.TestCase):
    def test_the_app_serves_hello_and_its_revision(self):
        with open("app.py") as source:
            text = source.read()
        compile(text, "app.py", "exec")
        self.assertIn('"/hello"', text)
        self.assertIn('"/version"', text)

    def test_the_step_names_the_release(self):
        self.assertTrue(os.environ.get("HARNESS_REVISION"))


if __name__ == "__main__":
    unittest.main()
"#;

const FAILING_TESTS: &str = r#"import unittest


class App(unittest.TestCase):
    def test_a_planted_failure(self):
        self.assertEqual("hi", "bye", "planted failure")
"#;

/// The fixture copied into a new git repository with `tests` as
/// `test_app.py`, its harness.toml given the test and package commands,
/// its Dockerfile copying what the package made (so the build needs the
/// package step first), committed.
fn hello_repository(tests: &str) -> tempfile::TempDir {
    let fixture = repo_root().join("harness/tests/fixtures/hello");
    let read = |name: &str| std::fs::read_to_string(fixture.join(name)).unwrap();
    let dockerfile =
        read("Dockerfile").replace("USER 65532:65532", "COPY dist/packaged /app/packaged\nUSER 65532:65532");
    assert!(dockerfile.contains("COPY dist/packaged"), "the fixture's Dockerfile changed: {dockerfile}");
    let toml = format!(
        "{}\n[test]\ncommand = \"python3 -m unittest -v test_app\"\n\n[build]\npackage = \"mkdir -p dist && \
         printf '%s\\\\n' \\\"$HARNESS_REVISION\\\" > dist/packaged\"\n",
        read("harness.toml")
    );
    let files = [
        ("app.py", read("app.py")),
        ("Dockerfile", dockerfile),
        ("harness.toml", toml),
        ("test_app.py", tests.to_owned()),
        (".gitignore", "/dist\n/.harness\n__pycache__/\n".to_owned()),
    ];
    common::committed_tree(&files, "hello, shipped by the harness's pipeline")
}

/// `harness --repo REPO --json ARGS...` with these tests' project, image
/// repository and port, bounded.
async fn harness(repo: &Path, args: &[&str]) -> Run {
    common::run::harness(PIPELINE_DEADLINE)
        .arg("--repo")
        .arg(repo)
        .args(args)
        .without_harness_env()
        .env("HARNESS_PROD__PROJECT", PROJECT)
        .env("HARNESS_PROD__APP_PORT", PORT.to_string())
        .env("HARNESS_IMAGES__SERVICE", REPOSITORY)
        .env("HARNESS_IMAGES__TESTS", format!("{REPOSITORY}-tests"))
        .run_async()
        .await
}

/// The plan of a pipeline of `repo` (`--dry-run --json`).
async fn planned(repo: &Path) -> Value {
    let plan = harness(repo, &["--dry-run", "--json", "pipeline"]).await;
    assert!(plan.success(), "the dry run ({:?}):\n{}", plan.code, plan.stderr);
    serde_json::from_str(&plan.stdout).expect("the plan as JSON")
}

/// Every container named `PROJECT-…` on prod: name → (id, started at).
async fn snapshot(prod: &Docker, project: &str) -> BTreeMap<String, (String, String)> {
    let mut out = BTreeMap::new();
    for container in common::prod::containers_named(prod, project).await {
        let name = common::prod::name(&container);
        let inspected = common::prod::inspect(prod, &name).await.expect("a listed container");
        let started = inspected.state.and_then(|s| s.started_at).unwrap_or_default();
        out.insert(name, (container.id.unwrap_or_default(), started));
    }
    out
}

/// The step `name` of a pipeline's report: (outcome, detail).
fn step(report: &Value, name: &str) -> (String, String) {
    let step = report["steps"].as_array().and_then(|s| s.iter().find(|s| s["name"] == name));
    let step = step.unwrap_or_else(|| panic!("no step {name} in {report}"));
    (step["outcome"].as_str().unwrap_or_default().to_owned(), step["detail"].as_str().unwrap_or_default().to_owned())
}

/// The local images of the repository on the cd engine go (the engine's
/// own CLI, bounded); gone already is fine.
fn remove_local_images(version: &str) {
    let registry = Lab::load().registry;
    for tag in [version, "latest"] {
        let image = format!("{registry}/{REPOSITORY}:{tag}");
        common::run::run_bounded(std::process::Command::new("docker").args(["image", "rm", "-f", &image]), DOCKER);
    }
}

/// One docker CLI command of the tests themselves.
const DOCKER: Duration = Duration::from_secs(60);

/// The service off prod, volumes and all (the history stays, as `remove`
/// keeps it), and nothing of it left in the registry.
async fn clean_up(repo: &Path, version: &str) {
    let removed = harness(repo, &["remove", "--volumes"]).await;
    assert!(removed.success(), "harness remove --volumes ({:?}):\n{}", removed.code, removed.stderr);
    Lab::load().empty_repository(REPOSITORY).await;
    remove_local_images(version);
}

#[tokio::test(flavor = "multi_thread")]
async fn another_service_goes_through_the_whole_pipeline_from_its_harness_toml_beside_books_ms() {
    let _prod = common::prod_lock().await;
    let lab = Lab::load();
    let prod = lab.prod_docker().await;
    let books_before = snapshot(&prod, "books-ms").await;
    let repo = hello_repository(PASSING_TESTS);
    let plan = planned(repo.path()).await;
    assert_eq!(plan["test_command"], "python3 -m unittest -v test_app", "{plan}");
    assert_eq!(plan["tests_image"], Value::Null, "{plan}");
    let revision = plan["version"]["revision"].as_str().expect("a revision").to_owned();
    let version = plan["version"]["version"].as_str().expect("a version").to_owned();

    let run = harness(repo.path(), &["--json", "pipeline"]).await;
    let report: Option<Value> = serde_json::from_str(&run.stdout).ok();
    let answer = async {
        let url = format!("{}/hello", lab.prod_url(PORT));
        let response = bounded(&format!("GET {url}"), http_client().get(&url).send()).await.ok()?;
        Some((response.status().as_u16(), response.text().await.unwrap_or_default()))
    }
    .await;
    let digest = lab.manifest_digest(REPOSITORY, &version).await;
    let labels = match &digest {
        Some(digest) => lab.labels(REPOSITORY, digest).await,
        None => Default::default(),
    };
    let packaged = std::fs::read_to_string(repo.path().join("dist/packaged"));
    let test_log = std::fs::read_to_string(repo.path().join(".harness/logs/test.log")).unwrap_or_default();
    let live = snapshot(&prod, PROJECT).await;
    let books_after = snapshot(&prod, "books-ms").await;
    clean_up(repo.path(), &version).await;

    assert!(run.success(), "the pipeline of hello failed ({:?}):\n{}\n{}", run.code, run.stderr, run.stdout);
    let report = report.expect("a JSON report");
    for name in ["checkout", "test", "package", "build", "push", "deploy", "integrate", "verify"] {
        assert_eq!(step(&report, name).0, "passed", "{name}: {report}");
    }
    assert_eq!(step(&report, "test").1, "python3 -m unittest -v test_app");
    assert!(step(&report, "package").1.starts_with("mkdir -p dist"), "{report}");
    let (outcome, why) = step(&report, "push-tests");
    assert_eq!((outcome.as_str(), why.as_str()), ("skipped", "no tests image ([build] tests_dockerfile is not set)"));
    assert_eq!(report["url"], lab.prod_url(PORT));
    // The tests ran, and saw the release's revision; the package ran
    // with it, before the build that copies what it made.
    let named = |l: &&str| l.starts_with("test_the_step_names_the_release") && l.ends_with("... ok");
    assert!(test_log.lines().any(|l| named(&l)) && test_log.contains("Ran 2 tests"), "{test_log}");
    assert_eq!(packaged.expect("dist/packaged, the package's output").trim(), revision);
    // What users reach: this release, with its env, on its own port.
    assert_eq!(answer, Some((200, format!("hi from {revision}\n"))), "hello on prod");
    assert!(digest.is_some(), "the registry has {REPOSITORY}:{version}");
    assert_eq!(labels.get("org.opencontainers.image.revision"), Some(&revision), "the label the harness sets");
    for name in ["shipped-hello-blue", "shipped-hello-proxy", "shipped-hello-store"] {
        assert!(live.contains_key(name), "{name} on prod: {live:?}");
    }
    // books-ms's containers: the same, never restarted.
    assert_eq!(books_after, books_before, "books-ms's containers changed");
    let left: Vec<String> = snapshot(&prod, PROJECT).await.into_keys().collect();
    assert_eq!(left, ["shipped-hello-history"], "harness remove left more than the history");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_service_whose_tests_fail_is_neither_pushed_nor_deployed_and_the_error_names_the_command() {
    let _prod = common::prod_lock().await;
    let lab = Lab::load();
    let prod = lab.prod_docker().await;
    let repo = hello_repository(FAILING_TESTS);
    let version = planned(repo.path()).await["version"]["version"].as_str().expect("a version").to_owned();
    let before = snapshot(&prod, PROJECT).await;
    let tags_before = lab.tags(REPOSITORY).await;

    let run = harness(repo.path(), &["--json", "pipeline"]).await;
    let report: Option<Value> = serde_json::from_str(&run.stdout).ok();
    let tags_after = lab.tags(REPOSITORY).await;
    let after = snapshot(&prod, PROJECT).await;
    remove_local_images(&version);

    assert_eq!(run.code, Some(1), "{run:?}");
    let report = report.expect("a JSON report, also on failure");
    let error = report["error"].as_str().unwrap_or_default();
    assert!(error.starts_with("step test failed; nothing was pushed or deployed"), "{error}");
    assert!(error.contains("`python3 -m unittest -v test_app` failed"), "the error names the command: {error}");
    assert!(error.contains("planted failure"), "with the log's last lines: {error}");
    assert!(run.stderr.contains("python3 -m unittest -v test_app"), "{}", run.stderr);
    assert_eq!(step(&report, "test").0, "failed", "{report}");
    for later in ["push", "deploy", "integrate", "verify", "push-tests"] {
        assert_eq!(step(&report, later).0, "skipped", "{later}: {report}");
    }
    assert_eq!(tags_after, tags_before, "something was pushed");
    assert_eq!(after, before, "prod changed");
    assert!(!repo.path().join(".harness/last-push.json").exists(), "a push was recorded");
}
