//! The second service the tests ship (issue 21): the fixture
//! `tests/fixtures/hello` (a Python HTTP app on the lab's Debian image, no
//! Docker HEALTHCHECK, an accessory, data checks), described by its own
//! harness.toml, as `tests/another_service.rs` ships it to prod and to the
//! swarm: the harness pointed at it, its releases built and pushed, its
//! answers read.

use std::path::PathBuf;
use std::time::Duration;

use super::release::build_and_push_to;
use super::run::Run;
use super::{bounded, http_client, repo_root};

/// The fixture's service name (its harness.toml's).
pub const SERVICE: &str = "hello";
/// Where users reach it on prod and on every swarm node (its harness.toml's
/// `prod.app_port` and `swarm.app_port`), beside books-ms's 8080.
pub const PORT: u16 = 8091;
/// One harness command: pulls (on every node), the accessory's start,
/// readiness, checks.
pub const COMMAND_DEADLINE: Duration = Duration::from_secs(300);

pub fn fixture() -> PathBuf {
    repo_root().join("harness/tests/fixtures/hello")
}

/// `harness --repo FIXTURE ARGS...` with `env`, bounded.
pub async fn harness(args: &[&str], env: &[(&str, &str)]) -> Run {
    super::run::harness(COMMAND_DEADLINE)
        .arg("--repo")
        .arg(fixture())
        .args(args)
        .envs(env.iter().copied())
        .run_async()
        .await
}

/// A release of the fixture in the registry's `repository`: its image
/// built with `REVISION` (and `READY`), labelled with the revision as the
/// harness's own build does, pushed, named by digest. Blocks.
pub fn release(repository: &str, revision: &str, ready: &str) -> Result<String, String> {
    let revision_arg = format!("REVISION={revision}");
    let ready_arg = format!("READY={ready}");
    let label = format!("org.opencontainers.image.revision={revision}");
    let base = format!("BASE={}", debian_image());
    let options = ["--build-arg", &base, "--build-arg", &revision_arg, "--build-arg", &ready_arg, "--label", &label];
    build_and_push_to(repository, &fixture(), revision, &options)
}

/// Releases A and B (ready) and a never-ready one, of revisions
/// `PREFIX-a-PID`, `PREFIX-b-PID`, `PREFIX-never-PID`: (revision, image)
/// each, built off the async runtime.
pub async fn releases(repository: &str, prefix: &str) -> [(String, String); 3] {
    let pid = std::process::id();
    let (repository, prefix) = (repository.to_owned(), prefix.to_owned());
    tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        for (name, ready) in [("a", "yes"), ("b", "yes"), ("never", "never")] {
            let revision = format!("{prefix}-{name}-{pid}");
            let image = release(&repository, &revision, ready)
                .unwrap_or_else(|e| panic!("building hello's release {revision}: {e}"));
            out.push((revision, image));
        }
        <[(String, String); 3]>::try_from(out).expect("three releases")
    })
    .await
    .expect("the build thread")
}

/// The lab's local Debian image (lab/lab.env).
pub fn debian_image() -> String {
    let text = std::fs::read_to_string(repo_root().join("lab/lab.env")).expect("lab/lab.env");
    super::parse_env(&text).remove("BOOKS_DEBIAN_IMAGE").expect("BOOKS_DEBIAN_IMAGE in lab/lab.env")
}

/// GET `path` at `base`: the status and body.
pub async fn get(base: &str, path: &str) -> (u16, String) {
    let url = format!("{base}{path}");
    let response = bounded(&format!("GET {url}"), http_client().get(&url).send()).await.expect("hello answers");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}
