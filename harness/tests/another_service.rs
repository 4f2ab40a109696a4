//! The harness ships a service that is not books-ms (issue 21): the
//! fixture `tests/fixtures/hello` (a Python HTTP app on the lab's Debian
//! image, no Docker HEALTHCHECK, an accessory, data checks), described by
//! its own harness.toml, to the lab's prod beside books-ms. Its first
//! release, a second one under load (blue-green: no failed request), and
//! one whose readiness never passes (refused: users keep the second),
//! then `harness remove` (and `--volumes`), while books-ms, live on the
//! same prod, is left exactly as it was.
//!
//! Judged by independent clients: prod's engine (containers, volumes) and
//! HTTP on both services' ports. Needs the lab up and root; never skips.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use bollard::query_parameters::{ListContainersOptionsBuilder, RemoveContainerOptionsBuilder};
use bollard::Docker;

use common::release::build_and_push_to;
use common::run::Run;
use common::target::{revision, Target};
use common::{bounded, http_client, repo_root, Lab};

/// The fixture's service name, its port on prod (its harness.toml's).
const SERVICE: &str = "hello";
const PORT: u16 = 8091;
/// Where its releases go in the lab's registry.
const REPOSITORY: &str = "books-lab-tests/hello";
/// One harness command: pulls, the accessory's start, readiness, checks.
const COMMAND_DEADLINE: Duration = Duration::from_secs(300);

fn fixture() -> PathBuf {
    repo_root().join("harness/tests/fixtures/hello")
}

/// `harness --repo FIXTURE ARGS...` with `env`, bounded.
async fn harness(args: &[&str], env: &[(&str, &str)]) -> Run {
    common::run::harness(COMMAND_DEADLINE)
        .arg("--repo")
        .arg(fixture())
        .args(args)
        .envs(env.iter().copied())
        .run_async()
        .await
}

/// A release of the fixture: its image built with `REVISION` (and
/// `READY`), labelled with the revision as the harness's own build does,
/// pushed, named by digest. Blocks.
fn hello_release(revision: &str, ready: &str) -> Result<String, String> {
    let revision_arg = format!("REVISION={revision}");
    let ready_arg = format!("READY={ready}");
    let label = format!("org.opencontainers.image.revision={revision}");
    let base = format!("BASE={}", debian_image());
    let options = ["--build-arg", &base, "--build-arg", &revision_arg, "--build-arg", &ready_arg, "--label", &label];
    build_and_push_to(REPOSITORY, &fixture(), revision, &options)
}

/// The lab's local Debian image (lab/lab.env).
fn debian_image() -> String {
    let text = std::fs::read_to_string(repo_root().join("lab/lab.env")).expect("lab/lab.env");
    common::parse_env(&text).remove("BOOKS_DEBIAN_IMAGE").expect("BOOKS_DEBIAN_IMAGE in lab/lab.env")
}

/// Every container named `PROJECT-…` on prod: name → (id, running, started).
async fn snapshot(prod: &Docker, project: &str) -> BTreeMap<String, (String, String, String)> {
    let mut out = BTreeMap::new();
    for container in common::prod::containers_named(prod, project).await {
        let name = common::prod::name(&container);
        let inspected = common::prod::inspect(prod, &name).await.expect("a listed container");
        let state = inspected.state.unwrap_or_default();
        let running = format!("{:?}", state.running);
        out.insert(name, (container.id.unwrap_or_default(), running, state.started_at.unwrap_or_default()));
    }
    out
}

/// What a run of the fixture left on prod goes: its containers, network
/// and volume (there is no `harness remove` yet). Only `hello-…`.
async fn remove_hello(prod: &Docker) {
    let filters = std::collections::HashMap::from([("label", vec!["org.books-ms.project=hello"])]);
    let options = ListContainersOptionsBuilder::default().all(true).filters(&filters).build();
    let labelled = bounded("listing hello's containers", prod.list_containers(Some(options))).await.unwrap();
    let named = common::prod::containers_named(prod, SERVICE).await;
    for container in labelled.iter().chain(&named) {
        let name = common::prod::name(container);
        assert!(name.starts_with("hello-"), "only hello's containers are removed, not {name}");
        let options = RemoveContainerOptionsBuilder::default().force(true).v(true).build();
        let _ = bounded(&format!("removing {name}"), prod.remove_container(&name, Some(options))).await;
    }
    let _ = bounded("removing the network hello", prod.remove_network(SERVICE)).await;
    let _ = bounded(
        "removing the volume hello-store",
        prod.remove_volume("hello-store", None::<bollard::query_parameters::RemoveVolumeOptions>),
    )
    .await;
}

/// GET `path` on hello's port: the status and body.
async fn get(path: &str) -> (u16, String) {
    let url = format!("{}{path}", Lab::load().prod_url(PORT));
    let response = bounded(&format!("GET {url}"), http_client().get(&url).send()).await.expect("hello answers");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread")]
async fn another_service_ships_beside_books_ms_blue_green_and_a_never_ready_release_is_refused() {
    // books-ms live on the same prod (its release A), to be left alone.
    let scene = Target::Prod.scene().await;
    let prod = &scene.docker;
    let books_before = snapshot(prod, "books-ms").await;
    let books_url = Target::Prod.url();
    remove_hello(prod).await;
    let pid = std::process::id();
    let (a, b, never) = (format!("hello-a-{pid}"), format!("hello-b-{pid}"), format!("hello-never-{pid}"));
    let images = {
        let (a, b, never) = (a.clone(), b.clone(), never.clone());
        tokio::task::spawn_blocking(move || {
            Ok::<_, String>((hello_release(&a, "yes")?, hello_release(&b, "yes")?, hello_release(&never, "never")?))
        })
        .await
        .unwrap()
    };
    let (image_a, image_b, image_never) = images.unwrap_or_else(|e| panic!("building hello's releases: {e}"));

    // The first release: the accessory, the proxy on hello's port, checks.
    let first = harness(&["deploy", "--image", &image_a], &[]).await;
    assert!(first.success(), "the first deploy of hello failed ({:?}):\n{}", first.code, first.stderr);
    assert_eq!(get("/hello").await, (200, format!("hi from {a}\n")), "the app has its env; users reach it");
    assert_eq!(revision(&Lab::load().prod_url(PORT)).await, a);
    let store = common::prod::inspect(prod, "hello-store").await.expect("the accessory hello-store");
    let store_id = store.id.clone();
    assert_eq!(store.state.and_then(|s| s.running), Some(true), "the accessory runs");
    let aliases = store.network_settings.and_then(|n| n.networks).and_then(|mut n| n.remove("hello"));
    // (Docker adds the container's short id to the aliases it was given.)
    let aliases = aliases.and_then(|e| e.aliases).unwrap_or_default();
    assert!(aliases.iter().any(|a| a == "store"), "reached by its name: {aliases:?}");
    let live = common::prod::inspect(prod, "hello-blue").await.expect("hello-blue");
    assert!(live.config.and_then(|c| c.healthcheck).is_none(), "no Docker healthcheck in hello's image");

    // The second: blue-green under load, nobody sees a failure.
    let args = ["deploy", "--image", &image_b];
    let deploying = harness(&args, &[]);
    let (second, load) = common::load::during("hello's second release", &Lab::load().prod_url(PORT), deploying).await;
    assert!(second.success(), "the second deploy of hello failed ({:?}):\n{}", second.code, second.stderr);
    assert_eq!(load.failed, 0, "requests failed during hello's deploy: {load:?}");
    assert!(load.requests > 0, "{load:?}");
    // Users move from A to B (two kept-alive connections may each see the
    // switch at its own moment, as with books-ms): A first, B last.
    assert_eq!(load.revisions.first(), Some(&a), "{load:?}");
    assert_eq!(load.revisions.last(), Some(&b), "{load:?}");
    assert_eq!(get("/hello").await, (200, format!("hi from {b}\n")));
    let store = common::prod::inspect(prod, "hello-store").await.expect("hello-store");
    assert_eq!(store.id, store_id, "the accessory is kept across deploys, not recreated");

    // A release whose readiness never passes: refused, users keep B.
    let env = [("HARNESS_PROD__HEALTH_TIMEOUT_SECS", "5")];
    let args = ["deploy", "--image", &image_never];
    let deploying = harness(&args, &env);
    let (refused, load) =
        common::load::during("hello's never-ready release", &Lab::load().prod_url(PORT), deploying).await;
    assert_eq!(refused.code, Some(1), "{}", refused.stderr);
    assert!(refused.stderr.contains("not healthy within 5 s"), "{}", refused.stderr);
    assert!(refused.stderr.contains("/ready"), "the error names the healthcheck path:\n{}", refused.stderr);
    assert!(refused.stderr.contains("prod serves what it served before"), "{}", refused.stderr);
    assert_eq!(load.failed, 0, "requests failed during the refused deploy: {load:?}");
    assert_eq!(load.revisions, std::slice::from_ref(&b), "{load:?}");
    assert_eq!(get("/hello").await, (200, format!("hi from {b}\n")));
    let history = harness(&["history", "--json"], &[]).await;
    let entries: Vec<serde_json::Value> = serde_json::from_str(&history.stdout).expect("hello's history");
    let outcomes: Vec<&str> = entries.iter().rev().take(3).filter_map(|e| e["outcome"].as_str()).collect();
    assert_eq!(outcomes, ["failed", "succeeded", "succeeded"], "hello's own history: {}", history.stdout);

    // Taken off prod: its containers and network, its volume kept unless
    // asked; its history stays, with the removal in it.
    let removed = harness(&["remove"], &[]).await;
    assert!(removed.success(), "harness remove failed ({:?}):\n{}", removed.code, removed.stderr);
    let left: Vec<String> = snapshot(prod, SERVICE).await.into_keys().collect();
    assert_eq!(left, ["hello-history"], "only the history stays:\n{}", removed.stderr);
    let volume = bounded("the volume hello-store", prod.inspect_volume("hello-store")).await;
    assert!(volume.is_ok(), "without --volumes the accessory's data stays");
    assert!(bounded("the network hello", prod.inspect_network("hello", None)).await.is_err(), "its network went");
    let volumes = harness(&["remove", "--volumes"], &[]).await;
    assert!(volumes.success(), "harness remove --volumes ({:?}):\n{}", volumes.code, volumes.stderr);
    assert!(bounded("the volume hello-store", prod.inspect_volume("hello-store")).await.is_err(), "--volumes");
    let history = harness(&["history", "--json"], &[]).await;
    let entries: Vec<serde_json::Value> = serde_json::from_str(&history.stdout).expect("hello's history");
    let last = entries.last().expect("an entry");
    assert_eq!((last["kind"].as_str(), last["outcome"].as_str()), (Some("remove"), Some("succeeded")), "{last}");

    // books-ms was never touched: the same containers, never restarted,
    // the same release served.
    assert_eq!(snapshot(prod, "books-ms").await, books_before, "books-ms's containers changed");
    assert_eq!(revision(&books_url).await, scene.a.revision);
    common::prod::assert_no_lock(prod).await;
    assert!(common::prod::inspect(prod, "hello-deploy-lock").await.is_none(), "hello's lock was left");
    remove_hello(prod).await;
}
