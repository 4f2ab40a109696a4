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

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

const MANIFEST_V2: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// What "fails fast" means here.
const FAST: Duration = Duration::from_secs(30);

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

/// The lab's values (`lab/topology.env`) and the registry's credentials.
struct Lab {
    registry: String,
    user: String,
    password: String,
    prod_docker_host: String,
    prod_cert_path: PathBuf,
}

impl Lab {
    fn load() -> Lab {
        let read = |path: &Path| std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e} (is the lab up? run as root)", path.display()));
        let env = parse_env(&read(&repo_root().join("lab/topology.env")));
        let get = |key: &str| std::env::var(key).ok().or_else(|| env.get(key).cloned()).unwrap_or_else(|| panic!("{key} unset"));
        let credentials = parse_env(&read(Path::new(&get("BOOKS_LAB_REGISTRY_CREDENTIALS"))));
        Lab {
            registry: get("BOOKS_LAB_REGISTRY"),
            user: credentials["REGISTRY_USER"].clone(),
            password: credentials["REGISTRY_PASSWORD"].clone(),
            prod_docker_host: get("BOOKS_LAB_PROD_DOCKER_HOST"),
            prod_cert_path: PathBuf::from(get("BOOKS_LAB_PROD_CERT_PATH")),
        }
    }

    async fn prod(&self) -> bollard::Docker {
        let certs = &self.prod_cert_path;
        let docker = bollard::Docker::connect_with_ssl(
            self.prod_docker_host.trim_start_matches("tcp://"),
            &certs.join("key.pem"),
            &certs.join("cert.pem"),
            &certs.join("ca.pem"),
            30,
            bollard::API_DEFAULT_VERSION,
        )
        .expect("a TLS client for prod");
        tokio::time::timeout(Duration::from_secs(10), docker.negotiate_version()).await.expect("prod answers in 10 s").expect("prod answers")
    }

    fn prod_url(&self) -> String {
        let host = self.prod_docker_host.trim_start_matches("tcp://").rsplit_once(':').unwrap().0.to_owned();
        format!("http://{host}:8080")
    }
}

fn parse_env(text: &str) -> HashMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// Runs the harness binary on this working tree, bounded in time.
fn harness(args: &[&str], env: &[(&str, &str)], deadline: Duration) -> (Output, Duration) {
    let started = Instant::now();
    let mut command = Command::new(env!("CARGO_BIN_EXE_harness"));
    // The nested cargo of the test step must not see this test's cargo
    // variables, or build scripts that watch them rebuild.
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        if key.starts_with("CARGO_") && !matches!(key.as_str(), "CARGO_HOME" | "CARGO_TARGET_DIR") {
            command.env_remove(&key);
        }
    }
    let mut child = command
        .arg("--repo")
        .arg(repo_root())
        .args(args)
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run harness");
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if started.elapsed() > deadline {
            let _ = child.kill();
            panic!("harness {args:?} did not end within {deadline:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    (child.wait_with_output().expect("output"), started.elapsed())
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// prod is shared: one test at a time, and the pipeline once for all.
fn prod_lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn pipeline_once() -> &'static Value {
    static REPORT: OnceLock<Value> = OnceLock::new();
    REPORT.get_or_init(|| {
        let (output, took) = harness(&["--json", "pipeline", "--retest"], &[], Duration::from_secs(1800));
        assert!(output.status.success(), "the pipeline failed after {took:?}:\n{}\n{}", text(&output.stderr), text(&output.stdout));
        serde_json::from_slice(&output.stdout).expect("a JSON report on stdout")
    })
}

fn record() -> Value {
    let path = repo_root().join(".harness/last-push.json");
    serde_json::from_str(&std::fs::read_to_string(&path).expect("the push record")).expect("JSON")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_pipeline_ships_what_independent_clients_then_find_on_the_registry_and_prod() {
    let _prod = prod_lock();
    let report = tokio::task::spawn_blocking(pipeline_once).await.unwrap();
    let lab = Lab::load();

    // Every step passed, in the chapter's order.
    let steps: Vec<(&str, &str)> =
        report["steps"].as_array().unwrap().iter().map(|s| (s["step"].as_str().unwrap(), s["outcome"].as_str().unwrap())).collect();
    let names: Vec<&str> = steps.iter().map(|s| s.0).collect();
    assert_eq!(names, ["checkout", "test", "package", "build", "push", "deploy", "integrate", "verify", "push-tests"]);
    assert!(steps.iter().all(|s| s.1 == "passed"), "{steps:?}");
    assert_eq!(report["url"], lab.prod_url());

    // The registry holds the image under its version tag with the recorded digest.
    let service = &record()["service"];
    let digest = service["digest"].as_str().unwrap();
    let name = service["image"].as_str().unwrap().trim_start_matches(&format!("{}/", lab.registry)).to_owned();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).no_proxy().build().unwrap();
    let manifest = http
        .head(format!("http://{}/v2/{name}/manifests/{}", lab.registry, service["tag"].as_str().unwrap()))
        .basic_auth(&lab.user, Some(&lab.password))
        .header("accept", MANIFEST_V2)
        .send()
        .await
        .unwrap();
    assert_eq!(manifest.status(), 200);
    assert_eq!(manifest.headers()["docker-content-digest"], digest);

    // prod runs exactly that digest, healthy.
    let prod = lab.prod().await;
    let app = prod.inspect_container("books-ms-app", None).await.expect("books-ms-app on prod");
    assert_eq!(app.config.unwrap().image.unwrap(), format!("{}@{digest}", service["image"].as_str().unwrap()));
    assert_eq!(app.state.unwrap().health.unwrap().status.unwrap().to_string(), "healthy");

    // The API answers on prod's address, with the checks' books removed.
    let version: Value = http.get(format!("{}/version", lab.prod_url())).send().await.unwrap().json().await.unwrap();
    assert_eq!(version["revision"], report["revision"]);
    for id in [2_147_483_101, 2_147_483_102, 2_147_483_103] {
        let status = http.get(format!("{}/api/v1/books/_id/{id}", lab.prod_url())).send().await.unwrap().status();
        assert_eq!(status, 404, "the check's book {id} was left behind");
    }
}

/// A user's book on prod, to show that a fault loses nothing.
async fn put_user_book(lab: &Lab, id: i32) -> Value {
    let book = serde_json::json!({"_id": id, "title": "A user's book", "author": "Reader", "description": "must survive"});
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).no_proxy().build().unwrap();
    let response = http.put(format!("{}/api/v1/books", lab.prod_url())).json(&book).send().await.unwrap();
    assert_eq!(response.status(), 200);
    book
}

async fn assert_prod_serves(lab: &Lab, book: &Value) {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).no_proxy().build().unwrap();
    let url = format!("{}/api/v1/books/_id/{}", lab.prod_url(), book["_id"]);
    let got: Value = http.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(&got, book, "prod lost the user's book");
    let prod = lab.prod().await;
    let names: Vec<String> = prod
        .list_containers(Some(bollard::query_parameters::ListContainersOptionsBuilder::default().all(true).build()))
        .await
        .unwrap()
        .into_iter()
        .flat_map(|c| c.names.unwrap_or_default())
        .map(|n| n.trim_start_matches('/').to_owned())
        .filter(|n| n.starts_with("books-ms-"))
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert!(sorted.contains(&"books-ms-app".to_owned()) && sorted.contains(&"books-ms-db".to_owned()), "{sorted:?}");
    assert!(!sorted.iter().any(|n| n.contains("lock")), "a deploy lock was left: {sorted:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_image_that_never_turns_healthy_is_rolled_back_and_prod_keeps_serving() {
    let _prod = prod_lock();
    tokio::task::spawn_blocking(pipeline_once).await.unwrap();
    let lab = Lab::load();
    let book = put_user_book(&lab, 424_242).await;

    // The database image has no healthcheck and no HTTP: it never turns healthy.
    let never_healthy = format!("{}/books-lab/ferretdb:1.24.2", lab.registry);
    let (output, took) = tokio::task::spawn_blocking(move || {
        harness(&["deploy", "--image", &never_healthy], &[("HARNESS_PROD__HEALTH_TIMEOUT_SECS", "5")], Duration::from_secs(120))
    })
    .await
    .unwrap();

    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("books-ms-app") && stderr.contains("not healthy within 5 s"), "{stderr}");
    assert!(stderr.contains("serving again"), "{stderr}");
    assert!(took < Duration::from_secs(60), "took {took:?}");
    assert_prod_serves(&lab, &book).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_prod_fails_fast_naming_it() {
    let _prod = prod_lock();
    let (output, took) = tokio::task::spawn_blocking(|| {
        // An address of the lab's link where no host answers.
        harness(&["deploy", "--image", "x@sha256:0"], &[("HARNESS_PROD__DOCKER_HOST", "tcp://10.200.0.77:2376")], FAST * 2)
    })
    .await
    .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("10.200.0.77:2376"), "{stderr}");
    assert!(took < FAST, "took {took:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_post_deploy_check_names_the_check_and_overwrites_nothing() {
    let _prod = prod_lock();
    tokio::task::spawn_blocking(pipeline_once).await.unwrap();
    let lab = Lab::load();
    // A user's book sits on an id reserved for the checks.
    let book = put_user_book(&lab, 2_147_483_102).await;
    let url = lab.prod_url();

    let (output, took) = tokio::task::spawn_blocking(move || harness(&["verify", "--url", &url], &[], FAST * 2)).await.unwrap();

    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("2147483102") && stderr.contains("checks.ids"), "{stderr}");
    assert!(took < FAST, "took {took:?}");
    assert_prod_serves(&lab, &book).await;
    // Clean up the user's book this test planted.
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).no_proxy().build().unwrap();
    http.delete(format!("{}/api/v1/books/_id/2147483102", lab.prod_url())).send().await.unwrap();
}
