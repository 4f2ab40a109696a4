//! `harness pipeline` end to end against the lab, as a user runs it on this
//! working tree, then independent clients confirm what it did: the registry's
//! HTTP API (the image and its recorded digest), prod's engine (it runs
//! exactly that digest) and the service on prod's address (the checks'
//! books are gone). Then the faults on prod, each failing fast and leaving
//! prod serving, its database and data intact.
//!
//! The tests share prod, so they run one at a time (a lock), and the
//! pipeline runs once for all of them. They need the lab up (`lab/up.sh`,
//! which `scripts/test.sh` runs first) and root. They never skip.

mod common;

use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;

use common::run::Run;
use common::{http_client, repo_root, Lab};

/// What "fails fast" means here.
const FAST: Duration = Duration::from_secs(30);
/// Where the harness publishes the service on prod (its default).
const APP_PORT: u16 = 8080;
/// A dry run, which only fetches a local repository.
const DRY_RUN_DEADLINE: Duration = Duration::from_secs(60);

/// Runs the harness binary on this working tree, bounded in time (it
/// blocks: async tests call it through `spawn_blocking`): what it did, and
/// how long it took.
fn harness(args: &[&str], env: &[(&str, &str)], deadline: Duration) -> (Run, Duration) {
    let run = common::run::harness(deadline).arg("--repo").arg(repo_root()).args(args).envs(env.iter().copied()).run();
    let took = run.elapsed;
    (run, took)
}

/// The pipeline's run: once, and a failure fails every test that needs it
/// at once rather than running the pipeline again. The registry's
/// credentials are in its environment, as a user may give them.
fn pipeline_run() -> &'static Run {
    static RUN: OnceLock<Result<Run, String>> = OnceLock::new();
    let run = RUN.get_or_init(|| {
        let credentials = Lab::load().credentials();
        let env = [
            ("HARNESS_REGISTRY__USERNAME", credentials.user.as_str()),
            ("HARNESS_REGISTRY__PASSWORD", credentials.password.as_str()),
        ];
        let (output, took) = harness(&["--json", "pipeline", "--retest"], &env, Duration::from_secs(1800));
        if !output.success() {
            return Err(format!("the pipeline failed after {took:?}:\n{}\n{}", output.stderr, output.stdout));
        }
        Ok(output)
    });
    run.as_ref().unwrap_or_else(|e| panic!("{e}"))
}

/// The pipeline's report (its `--json` output).
fn pipeline_once() -> Value {
    let run = pipeline_run();
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("no JSON report on stdout ({e}):\n{}", run.stdout))
}

fn record() -> Value {
    let path = repo_root().join(".harness/last-push.json");
    serde_json::from_str(&std::fs::read_to_string(&path).expect("the push record")).expect("JSON")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_pipeline_ships_what_independent_clients_then_find_on_the_registry_and_prod() {
    let _prod = common::prod_lock().await;
    let report = tokio::task::spawn_blocking(pipeline_once).await.unwrap();
    let lab = Lab::load();

    // Every step passed, in the chapter's order.
    let steps: Vec<(&str, &str)> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap(), s["outcome"].as_str().unwrap()))
        .collect();
    let names: Vec<&str> = steps.iter().map(|s| s.0).collect();
    assert_eq!(names, ["checkout", "test", "package", "build", "push", "deploy", "integrate", "verify", "push-tests"]);
    assert!(steps.iter().all(|s| s.1 == "passed"), "{steps:?}");
    assert_eq!(report["url"], lab.prod_url(APP_PORT));
    // The gate: the push (the first step that leaves this machine) started
    // once the tests had ended; package and build ran beside them.
    let (test, push) = (step(&report, "test"), step(&report, "push"));
    assert!(ms(&push["started_ms"]) >= ms(&test["started_ms"]) + ms(&test["duration_ms"]), "{report}");
    assert!(ms(&step(&report, "build")["started_ms"]) < ms(&test["started_ms"]) + ms(&test["duration_ms"]), "{report}");

    // The registry holds the image under its version tag with the recorded digest.
    let service = &record()["service"];
    let digest = service["digest"].as_str().unwrap();
    let name = service["image"].as_str().unwrap().trim_start_matches(&format!("{}/", lab.registry)).to_owned();
    let in_registry = lab.manifest_digest(&name, service["tag"].as_str().unwrap()).await;
    assert_eq!(in_registry.as_deref(), Some(digest), "the registry's digest of {name}");

    // prod runs exactly that digest, healthy, as the one running colour,
    // behind the proxy, the only container published.
    let prod = lab.prod_docker().await;
    let http = http_client();
    let app = common::prod::live_colour(&prod).await;
    common::prod::assert_only_the_proxy_is_published(&prod).await;
    assert_eq!(app.config.unwrap().image.unwrap(), format!("{}@{digest}", service["image"].as_str().unwrap()));
    assert_eq!(app.state.unwrap().health.unwrap().status.unwrap().to_string(), "healthy");

    // The API answers on prod's address, with the checks' books removed.
    let version: Value =
        http.get(format!("{}/version", lab.prod_url(APP_PORT))).send().await.unwrap().json().await.unwrap();
    assert_eq!(version["revision"], report["revision"]);
    for id in [2_147_483_101, 2_147_483_102, 2_147_483_103] {
        let status =
            http.get(format!("{}/api/v1/books/_id/{id}", lab.prod_url(APP_PORT))).send().await.unwrap().status();
        assert_eq!(status, 404, "the check's book {id} was left behind");
    }
}

/// A user's book on prod, to show that a fault loses nothing.
async fn put_user_book(lab: &Lab, id: i32) -> Value {
    let book =
        serde_json::json!({"_id": id, "title": "A user's book", "author": "Reader", "description": "must survive"});
    let http = http_client();
    let response = http.put(format!("{}/api/v1/books", lab.prod_url(APP_PORT))).json(&book).send().await.unwrap();
    assert_eq!(response.status(), 200);
    book
}

/// What a fault left on prod: the user's book as prod serves it, and the
/// names of the project's containers.
struct ProdAfter {
    book: Option<Value>,
    containers: Vec<String>,
    running_colours: usize,
}

async fn observe_prod(lab: &Lab, id: i32) -> ProdAfter {
    let response = http_client().get(format!("{}/api/v1/books/_id/{id}", lab.prod_url(APP_PORT))).send().await.unwrap();
    let book = if response.status() == 200 { Some(response.json().await.unwrap()) } else { None };
    let prod = lab.prod_docker().await;
    let mut containers: Vec<String> = prod
        .list_containers(Some(bollard::query_parameters::ListContainersOptionsBuilder::default().all(true).build()))
        .await
        .unwrap()
        .into_iter()
        .flat_map(|c| c.names.unwrap_or_default())
        .map(|n| n.trim_start_matches('/').to_owned())
        .filter(|n| n.starts_with("books-ms-"))
        .collect();
    containers.sort();
    let running_colours = common::prod::running_colours(&prod).await.len();
    ProdAfter { book, containers, running_colours }
}

impl ProdAfter {
    /// prod serves the user's book as it was, from the app and database
    /// containers, with no deploy lock left behind.
    fn assert_serves(&self, book: &Value) {
        assert_eq!(self.book.as_ref(), Some(book), "prod lost the user's book");
        let has = |name: &str| self.containers.iter().any(|c| c == name);
        assert!(has("books-ms-proxy") && has("books-ms-db"), "{:?}", self.containers);
        assert!(self.running_colours == 1, "one colour serves: {:?}", self.containers);
        assert!(!self.containers.iter().any(|n| n.contains("lock")), "a deploy lock was left: {:?}", self.containers);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_image_that_never_turns_healthy_is_rolled_back_and_prod_keeps_serving() {
    let _prod = common::prod_lock().await;
    tokio::task::spawn_blocking(pipeline_once).await.unwrap();
    let lab = Lab::load();
    let book = put_user_book(&lab, 424_242).await;

    // The database image has no healthcheck and no HTTP: it never turns healthy.
    let never_healthy = format!("{}/books-lab/ferretdb:1.24.2", lab.registry);
    let (output, took) = tokio::task::spawn_blocking(move || {
        harness(
            &["deploy", "--image", &never_healthy, "--revision", "never-healthy"],
            &[("HARNESS_PROD__HEALTH_TIMEOUT_SECS", "5")],
            Duration::from_secs(120),
        )
    })
    .await
    .unwrap();
    // Observe, then remove the planted book, then judge: a failed assert
    // must not leave it on prod.
    let after = observe_prod(&lab, 424_242).await;
    remove_user_book(&lab, 424_242).await;

    assert_eq!(output.code, Some(1));
    let stderr = &output.stderr;
    assert!(stderr.contains("books-ms-blue") || stderr.contains("books-ms-green"), "{stderr}");
    assert!(stderr.contains("not healthy within 5 s"), "{stderr}");
    assert!(stderr.contains("prod serves what it served before"), "{stderr}");
    assert!(took < Duration::from_secs(60), "took {took:?}");
    after.assert_serves(&book);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_prod_fails_fast_naming_it() {
    let _prod = common::prod_lock().await;
    let (output, took) = tokio::task::spawn_blocking(|| {
        // An address of the lab's link where no host answers.
        harness(
            &["deploy", "--image", "x@sha256:0"],
            &[("HARNESS_PROD__DOCKER_HOST", "tcp://10.200.0.77:2376")],
            FAST * 2,
        )
    })
    .await
    .unwrap();
    assert_eq!(output.code, Some(1));
    let stderr = &output.stderr;
    assert!(stderr.contains("10.200.0.77:2376"), "{stderr}");
    assert!(took < FAST, "took {took:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_post_deploy_check_names_the_check_and_overwrites_nothing() {
    let _prod = common::prod_lock().await;
    tokio::task::spawn_blocking(pipeline_once).await.unwrap();
    let lab = Lab::load();
    // A user's book sits on an id reserved for the checks.
    let book = put_user_book(&lab, 2_147_483_102).await;
    let url = lab.prod_url(APP_PORT);

    let (output, took) =
        tokio::task::spawn_blocking(move || harness(&["verify", "--url", &url], &[], FAST * 2)).await.unwrap();
    // A book left on a reserved id would fail every later verify: remove
    // it before judging.
    let after = observe_prod(&lab, 2_147_483_102).await;
    remove_user_book(&lab, 2_147_483_102).await;

    assert_eq!(output.code, Some(1));
    let stderr = &output.stderr;
    assert!(stderr.contains("2147483102") && stderr.contains("verify.ids"), "{stderr}");
    assert!(took < FAST, "took {took:?}");
    after.assert_serves(&book);
}

/// Removes the book a test planted as a user's.
async fn remove_user_book(lab: &Lab, id: i32) {
    let response =
        http_client().delete(format!("{}/api/v1/books/_id/{id}", lab.prod_url(APP_PORT))).send().await.unwrap();
    assert_eq!(response.status(), 200, "removing the test's book {id}");
}

#[test]
fn a_ref_of_another_repository_is_planned_with_its_commit_and_tag() {
    // An upstream with a tagged commit, and a state folder of its own so
    // this repo's .harness/checkout is left alone.
    let upstream = tempfile::tempdir().unwrap();
    let git = |args: &[&str]| common::git(upstream.path(), args);
    git(&["init", "-q"]);
    std::fs::write(upstream.path().join("README.md"), "upstream\n").unwrap();
    git(&["add", "-A"]);
    git(&["commit", "-qm", "upstream"]);
    git(&["tag", "v7.0.0"]);
    let commit = git(&["rev-parse", "HEAD"]);
    let state = common::state_for_books_ms();

    let output = common::run::harness(DRY_RUN_DEADLINE)
        .arg("--repo")
        .arg(state.path())
        .args(["--dry-run", "--json", "pipeline", "--source"])
        .arg(upstream.path())
        .args(["--ref", "v7.0.0"])
        .run();

    assert!(output.success(), "{}", output.stderr);
    let plan: Value = serde_json::from_str(&output.stdout).unwrap();
    assert_eq!(plan["source"]["kind"], "checkout");
    assert_eq!(plan["source"]["commit"], commit);
    assert_eq!(plan["source"]["reference"], "v7.0.0");
    assert_eq!(plan["version"]["version"], "v7.0.0");
    assert!(plan["service_image"].as_str().unwrap().ends_with("/books-ms:v7.0.0"), "{plan}");
    // The plan fetched the ref and checked nothing out yet.
    assert!(!state.path().join(".harness/checkout/README.md").exists());
}

// ------------------------------------------------------------------ the tests gate the pipeline

/// A repository whose pre-deploy test fails on purpose, with everything
/// else a pipeline needs: a static "binary" from `scripts/dist.sh` and two
/// images that build in a second (`FROM scratch`). Its test waits for what
/// `PROBE_IMAGE` or `PROBE_FILE` names to exist (bounded: `PROBE_SECS`, 120
/// by default), silently, then fails: so the test step fails while, or
/// after, the steps beside it ran.
fn failing_upstream() -> tempfile::TempDir {
    let files = [
        // Named as the service, which the pipeline's test command selects
        // (`cargo test -p books-ms --lib --test api`).
        ("Cargo.toml", "[package]\nname = \"books-ms\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[workspace]\n"),
        ("Cargo.lock", "version = 4\n\n[[package]]\nname = \"books-ms\"\nversion = \"0.1.0\"\n"),
        ("src/lib.rs", "//! A crate whose test fails.\n"),
        (
            "tests/api.rs",
            r#"use std::time::{Duration, Instant};

fn ready() -> bool {
    if let Ok(file) = std::env::var("PROBE_FILE") {
        return std::path::Path::new(&file).exists();
    }
    let Ok(image) = std::env::var("PROBE_IMAGE") else { return false };
    std::process::Command::new("docker")
        .args(["image", "inspect", &image])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn a_planted_failure() {
    let wait = std::env::var("PROBE_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(120);
    let deadline = Instant::now() + Duration::from_secs(wait);
    while !ready() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("planted failure");
}
"#,
        ),
        (
            "scripts/dist.sh",
            "set -eu\nmkdir -p dist\nprintf '#!/bin/sh\\n' > dist/books-ms\n\
             if [ -n \"${PROBE_FILE:-}\" ]; then\n  sleep 300 &\n  echo $! > \"$PROBE_FILE.tmp\"\n  \
             mv \"$PROBE_FILE.tmp\" \"$PROBE_FILE\"\n  wait\nfi\n",
        ),
        ("Dockerfile", "FROM scratch\nCOPY dist/books-ms /books-ms\n"),
        ("Dockerfile.test", "FROM scratch\nCOPY Cargo.toml /Cargo.toml\n"),
    ];
    common::committed_tree(&files, "a failing test")
}

/// `harness --json pipeline --source UPSTREAM` with a state folder of its
/// own and images and a prod project named `name`; its report.
fn pipeline_of(upstream: &std::path::Path, name: &str, env: &[(&str, &str)]) -> (Run, Value) {
    let state = common::state_for_books_ms();
    let run = common::run::harness(Duration::from_secs(300))
        .arg("--repo")
        .arg(state.path())
        .args(["--json", "pipeline", "--trust-source", "--source"])
        .arg(upstream)
        .envs(common::named(name))
        .envs(env.iter().copied())
        .run();
    let report = serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("no JSON report ({e}): {run:?}"));
    assert!(!state.path().join(".harness/last-push.json").exists(), "a push was recorded: {run:?}");
    (run, report)
}

fn step<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["steps"].as_array().unwrap().iter().find(|s| s["name"] == name).unwrap_or_else(|| panic!("{report}"))
}

fn ms(value: &Value) -> u64 {
    value.as_u64().unwrap()
}

/// What of the project `name` reached the registry or prod (nothing, when
/// the gate held), read with their own clients; then its images are
/// removed from the cd engine.
async fn shipped_then_clean_up(lab: &Lab, name: &str) -> Vec<String> {
    let mut shipped = Vec::new();
    let repositories = [name.to_owned(), format!("{name}-tests")];
    for repository in &repositories {
        if let Some(digest) = lab.manifest_digest(repository, "latest").await {
            shipped.push(format!("{repository}@{digest} on the registry"));
        }
    }
    let prod = lab.prod_docker().await;
    for container in common::prod::containers_named(&prod, name).await {
        shipped.push(format!("{} on prod", common::prod::name(&container)));
    }
    let cd = common::negotiate(bollard::Docker::connect_with_local_defaults().unwrap(), "the cd engine").await;
    let references: Vec<String> = repositories.iter().map(|r| format!("{}/{r}", lab.registry)).collect();
    let filters = std::collections::HashMap::from([("reference".to_owned(), references)]);
    let options = bollard::query_parameters::ListImagesOptionsBuilder::default().filters(&filters).build();
    for image in cd.list_images(Some(options)).await.unwrap_or_default() {
        let options = bollard::query_parameters::RemoveImageOptionsBuilder::default().force(true).build();
        let _ = cd.remove_image(&image.id, Some(options), None).await;
    }
    shipped
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_test_stops_the_pipeline_after_the_images_are_built_and_before_any_push_or_deploy() {
    let lab = Lab::load();
    let upstream = failing_upstream();
    let name = format!("books-ms-gate-{}", std::process::id());
    // The test fails once the tests image is built: the package and build
    // steps, beside it, have ended by then.
    let probe = format!("{}/{name}-tests:latest", lab.registry);
    let path = upstream.path().to_owned();
    let (run, report) = tokio::task::spawn_blocking({
        let name = name.clone();
        move || pipeline_of(&path, &name, &[("PROBE_IMAGE", probe.as_str())])
    })
    .await
    .unwrap();
    // Observed (and the images removed) before judging.
    let shipped = shipped_then_clean_up(&lab, &name).await;

    assert_eq!(run.code, Some(1), "{run:?}");
    let (test, package, build) = (step(&report, "test"), step(&report, "package"), step(&report, "build"));
    assert_eq!(test["outcome"], "failed", "{report}");
    assert_eq!(package["outcome"], "passed", "{report}");
    assert!(matches!(build["outcome"].as_str(), Some("passed" | "stopped")), "{report}");
    // Beside the tests: started before the tests ended.
    assert!(ms(&package["started_ms"]) < ms(&test["started_ms"]) + ms(&test["duration_ms"]), "{report}");
    for later in ["push", "deploy", "integrate", "verify", "push-tests"] {
        assert_eq!(step(&report, later)["outcome"], "skipped", "{later}: {report}");
    }
    let error = report["error"].as_str().unwrap();
    assert!(error.contains("step test failed") && error.contains("prod is untouched"), "{error}");
    assert!(run.stderr.contains("planted failure"), "the test's output is named: {}", run.stderr);
    assert_eq!(shipped, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_test_stops_the_package_step_beside_it_and_kills_its_processes() {
    let lab = Lab::load();
    let upstream = failing_upstream();
    let name = format!("books-ms-gate-stop-{}", std::process::id());
    // scripts/dist.sh starts a long sleep in the background and writes its
    // pid here; the test fails as soon as it is there.
    let pid_file = upstream.path().join("package.pid");
    let probe = pid_file.display().to_string();
    let path = upstream.path().to_owned();
    let (run, report) = tokio::task::spawn_blocking({
        let name = name.clone();
        move || pipeline_of(&path, &name, &[("PROBE_FILE", probe.as_str())])
    })
    .await
    .unwrap();
    // Observed (and the images removed) before judging.
    let shipped = shipped_then_clean_up(&lab, &name).await;

    assert_eq!(run.code, Some(1), "{run:?}");
    assert_eq!(step(&report, "test")["outcome"], "failed", "{report}");
    let package = step(&report, "package");
    assert_eq!(package["outcome"], "stopped", "{report}");
    assert!(package["detail"].as_str().unwrap().contains("the tests failed"), "{report}");
    for later in ["build", "push", "deploy", "integrate", "verify", "push-tests"] {
        assert_eq!(step(&report, later)["outcome"], "skipped", "{later}: {report}");
    }
    // The package step's whole process group is gone, the sleep its script
    // left in the background included (bounded wait for the kernel).
    let pid = std::fs::read_to_string(&pid_file).unwrap().trim().to_owned();
    let gone = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|stat| stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')))
            .unwrap_or(true)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !gone() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gone(), "the package step's background sleep (pid {pid}) still runs");
    assert_eq!(shipped, Vec::<String>::new());
}

// ------------------------------------------------------------------ no secret leaks

/// Fails when `secret` is in `bytes`, naming `what`.
fn assert_secret_not_in(what: &str, bytes: &[u8], secret: &str) {
    assert!(memchr::memmem::find(bytes, secret.as_bytes()).is_none(), "the registry's password is in {what}");
}

/// Every file under `dir` (symlinks not followed).
fn assert_secret_not_in_files(dir: &std::path::Path, secret: &str) -> usize {
    let mut files = 0;
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let entry = entry.unwrap();
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            files += assert_secret_not_in_files(&entry.path(), secret);
        } else if kind.is_file() {
            let bytes = std::fs::read(entry.path()).unwrap_or_default();
            assert_secret_not_in(&entry.path().display().to_string(), &bytes, secret);
            files += 1;
        }
    }
    files
}

#[tokio::test(flavor = "multi_thread")]
async fn the_registrys_password_is_in_no_output_no_record_and_no_layer_of_the_pushed_tests_image() {
    use futures_util::StreamExt;
    let _prod = common::prod_lock().await;
    let run = tokio::task::spawn_blocking(pipeline_run).await.unwrap();
    let lab = Lab::load();
    let password = lab.credentials().password;
    assert!(password.len() >= 16, "the lab's password is too short to search for");

    // The harness's output: the --json report and its progress and logs on stderr.
    assert_secret_not_in("the pipeline's --json output", run.stdout.as_bytes(), &password);
    assert_secret_not_in("the pipeline's stderr", run.stderr.as_bytes(), &password);

    // Its records and logs.
    let files = assert_secret_not_in_files(&repo_root().join(".harness"), &password);
    assert!(files >= 2, "only {files} files in .harness/: are the logs and the push record there?");

    // The tests image the pipeline pushed, whole as `docker save` writes it:
    // its config (environment, labels, history) and every layer's files.
    let tests = &record()["tests"];
    let image = format!("{}:{}", tests["image"].as_str().unwrap(), tests["tag"].as_str().unwrap());
    let cd = common::negotiate(bollard::Docker::connect_with_local_defaults().unwrap(), "the cd engine").await;
    let inspected = cd.inspect_image(&image).await.unwrap_or_else(|e| panic!("{image} on the cd engine: {e}"));
    let pushed = format!("{}@{}", tests["image"].as_str().unwrap(), tests["digest"].as_str().unwrap());
    assert!(
        inspected.repo_digests.unwrap_or_default().contains(&pushed),
        "{image} is not the image pushed as {pushed}"
    );
    let finder = memchr::memmem::Finder::new(password.as_bytes());
    let mut saved = cd.export_image(&image);
    let (mut tail, mut total) = (Vec::new(), 0usize);
    let search = async {
        while let Some(chunk) = saved.next().await {
            let chunk = chunk.unwrap_or_else(|e| panic!("saving {image}: {e}"));
            total += chunk.len();
            // The chunk with the end of the one before, so that a password
            // cut in two is found too.
            tail.extend_from_slice(&chunk);
            assert!(finder.find(&tail).is_none(), "the registry's password is in the tests image {image}");
            tail.drain(..tail.len().saturating_sub(password.len() - 1));
        }
    };
    tokio::time::timeout(Duration::from_secs(600), search).await.expect("docker save within 10 min");
    assert!(total > 10_000_000, "{image} saved as only {total} bytes");

    // A refused login: the wrong password (the right one and more) is not
    // echoed in the error or anywhere else.
    let wrong = format!("{password}-but-wrong");
    let (refused, _) = tokio::task::spawn_blocking(move || {
        let env = [("HARNESS_REGISTRY__USERNAME", "books-lab"), ("HARNESS_REGISTRY__PASSWORD", wrong.as_str())];
        harness(&["--json", "push"], &env, FAST * 4)
    })
    .await
    .unwrap();
    assert_eq!(refused.code, Some(1), "{refused:?}");
    assert!(refused.stderr.contains("harness: error"), "{refused:?}");
    assert_secret_not_in("the refused push's stderr", refused.stderr.as_bytes(), &password);
    assert_secret_not_in("the refused push's stdout", refused.stdout.as_bytes(), &password);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_terminal_the_pipeline_says_what_it_does_at_least_every_ten_seconds() {
    let lab = Lab::load();
    let upstream = failing_upstream();
    let name = format!("books-ms-quiet-{}", std::process::id());
    let state = common::state_for_books_ms();
    // A test that prints nothing for 25 s; stderr is a pipe, as in a CI log.
    let run = common::run::harness(Duration::from_secs(300))
        .arg("--repo")
        .arg(state.path())
        .args(["pipeline", "--trust-source", "--source"])
        .arg(upstream.path())
        .envs(common::named(&name))
        .env("PROBE_SECS", "25")
        .run_async()
        .await;
    let shipped = shipped_then_clean_up(&lab, &name).await;

    assert_eq!(run.code, Some(1), "{run:?}");
    let stderr = &run.stderr;
    assert!(
        run.stderr_longest_silence < Duration::from_secs(15),
        "silent for {:?}:\n{stderr}",
        run.stderr_longest_silence
    );
    // Each step's start and end, and what the long one is doing meanwhile.
    assert!(stderr.contains("-> test: run the pre-deployment tests"), "{stderr}");
    assert!(stderr.contains("-> test-build: cargo test --locked -p books-ms"), "{stderr}");
    assert!(stderr.contains("   test: tests/api.rs: 0 of 1 passed ("), "a heartbeat names the test binary: {stderr}");
    assert!(stderr.contains("-> package: package the code (build.package)"), "{stderr}");
    assert!(stderr.contains("\nFAILED  test ("), "{stderr}");
    assert_eq!(shipped, Vec::<String>::new());
}
