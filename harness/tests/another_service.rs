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

use bollard::query_parameters::{ListContainersOptionsBuilder, RemoveContainerOptionsBuilder};
use bollard::Docker;

use common::hello::{self, harness, PORT, SERVICE};
use common::target::{revision, Target};
use common::{bounded, Lab};

/// Where its releases go in the lab's registry (the swarm's test pushes to
/// its own: both tests may run at once).
const REPOSITORY: &str = "books-lab-tests/hello";
const SWARM_REPOSITORY: &str = "books-lab-tests/hello-swarm";

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

/// GET `path` on hello's port on prod: the status and body.
async fn get(path: &str) -> (u16, String) {
    hello::get(&Lab::load().prod_url(PORT), path).await
}

#[tokio::test(flavor = "multi_thread")]
async fn another_service_ships_beside_books_ms_blue_green_and_a_never_ready_release_is_refused() {
    // books-ms live on the same prod (its release A), to be left alone.
    let scene = Target::Prod.scene().await;
    let prod = &scene.docker;
    let books_before = snapshot(prod, "books-ms").await;
    let books_url = Target::Prod.url();
    remove_hello(prod).await;
    let [(a, image_a), (b, image_b), (_, image_never)] = hello::releases(REPOSITORY, "hello").await;

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
    Lab::load().empty_repository(REPOSITORY).await;
}

// ------------------------------------------------------------------ the swarm

/// hello's proxy on swarm node `i` (1: the manager).
fn swarm_url(i: usize) -> String {
    format!("http://{}:{PORT}", Lab::load().swarm_node_address(i))
}

/// `harness --repo FIXTURE --target swarm ARGS...` with `env`.
async fn on_swarm(args: &[&str], env: &[(&str, &str)]) -> common::run::Run {
    let args: Vec<&str> = ["--target", "swarm"].into_iter().chain(args.iter().copied()).collect();
    harness(&args, env).await
}

/// The swarm's services of `project`: name → (spec version, image), and
/// the ids of their tasks that should run.
async fn swarm_snapshot(manager: &Docker, project: &str) -> (BTreeMap<String, (u64, String)>, Vec<String>) {
    use bollard::query_parameters::{ListServicesOptionsBuilder, ListTasksOptionsBuilder};
    let label = format!("org.books-ms.project={project}");
    let filters = std::collections::HashMap::from([("label".to_owned(), vec![label])]);
    let options = ListServicesOptionsBuilder::default().filters(&filters).build();
    let services = bounded("listing the services", manager.list_services(Some(options))).await.unwrap();
    let mut out = BTreeMap::new();
    let mut tasks = Vec::new();
    for service in services {
        let spec = service.spec.unwrap_or_default();
        let name = spec.name.clone().unwrap_or_default();
        let image = spec.task_template.and_then(|t| t.container_spec?.image).unwrap_or_default();
        out.insert(name.clone(), (service.version.and_then(|v| v.index).unwrap_or_default(), image));
        let filters = std::collections::HashMap::from([
            ("service".to_owned(), vec![name]),
            ("desired-state".to_owned(), vec!["running".to_owned()]),
        ]);
        let options = ListTasksOptionsBuilder::default().filters(&filters).build();
        let listed = bounded("listing the tasks", manager.list_tasks(Some(options))).await.unwrap();
        tasks.extend(listed.into_iter().filter_map(|t| t.id));
    }
    tasks.sort();
    (out, tasks)
}

/// What an earlier run left of hello on the swarm goes (its services,
/// configs, network, lock, the manager's volume), bounded; only `hello…`.
async fn remove_hello_from_swarm(manager: &Docker) {
    use bollard::query_parameters::{ListConfigsOptionsBuilder, RemoveVolumeOptions};
    let (services, _) = swarm_snapshot(manager, SERVICE).await;
    for name in services.keys() {
        assert!(name.starts_with("hello-"), "only hello's services are removed, not {name}");
        let _ = bounded(&format!("removing {name}"), manager.delete_service(name)).await;
    }
    let filters =
        std::collections::HashMap::from([("label".to_owned(), vec!["org.books-ms.project=hello".to_owned()])]);
    let options = ListConfigsOptionsBuilder::default().filters(&filters).build();
    for config in bounded("listing the configs", manager.list_configs(Some(options))).await.unwrap() {
        let _ = bounded("removing a config", manager.delete_config(config.id.as_deref().unwrap_or_default())).await;
    }
    let options = RemoveContainerOptionsBuilder::default().force(true).build();
    let _ = bounded("removing hello's lock", manager.remove_container("hello-deploy-lock", Some(options))).await;
    // The tasks leave the network and the volume as their nodes stop them.
    for _ in 0..60 {
        let network = bounded("removing the network hello", manager.remove_network(SERVICE)).await;
        let volume =
            bounded("removing hello-store", manager.remove_volume("hello-store", None::<RemoveVolumeOptions>)).await;
        let gone = |e: &bollard::errors::Error| {
            matches!(e, bollard::errors::Error::DockerResponseServerError { status_code: 404, .. })
        };
        if network.as_ref().err().is_none_or(gone) && volume.as_ref().err().is_none_or(gone) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    panic!("hello's network or volume on the swarm's manager is still in use 30 s after its services went");
}

#[tokio::test(flavor = "multi_thread")]
async fn another_service_ships_to_the_swarm_beside_books_ms_gated_by_its_readiness_and_is_removed() {
    let lab = Lab::load();
    let manager = lab.swarm_docker().await;
    // books-ms on the same swarm (whatever the swarm's tests left live),
    // to be left alone: its services' specs and tasks, its answer.
    let books_before = swarm_snapshot(&manager, "books-ms").await;
    let books_revision = common::target::revision_at(&common::target::node_url(1)).await;
    remove_hello_from_swarm(&manager).await;
    lab.empty_repository(SWARM_REPOSITORY).await;
    let [(a, image_a), (b, image_b), (_, image_never)] = hello::releases(SWARM_REPOSITORY, "hello-swarm").await;

    // The first release: its accessory pinned to the manager with its
    // volume, the app's tasks reaching it by its name, a proxy on every
    // node on hello's port, the checks through it.
    let first = on_swarm(&["deploy", "--image", &image_a], &[]).await;
    assert!(first.success(), "the first deploy of hello to the swarm failed ({:?}):\n{}", first.code, first.stderr);
    for node in 1..=lab.swarm_nodes {
        assert_eq!(hello::get(&swarm_url(node), "/hello").await, (200, format!("hi from {a}\n")), "node {node}");
    }
    let (services, _) = swarm_snapshot(&manager, SERVICE).await;
    let names: Vec<&str> = services.keys().map(String::as_str).collect();
    assert_eq!(names, ["hello-app", "hello-proxy", "hello-store"], "hello's services:\n{}", first.stderr);
    let store = bounded("the service hello-store", manager.inspect_service("hello-store", None)).await.unwrap();
    let store_version = store.version.clone().and_then(|v| v.index);
    let task = store.spec.and_then(|s| s.task_template).unwrap_or_default();
    let container = task.container_spec.unwrap_or_default();
    assert_eq!(container.env.unwrap_or_default(), ["FERRETDB_LISTEN_ADDR=0.0.0.0:27017"], "its env");
    assert_eq!(container.mounts.unwrap_or_default()[0].target.as_deref(), Some("/data/db"), "its volume's path");
    let constraints = task.placement.and_then(|p| p.constraints).unwrap_or_default();
    assert!(constraints.len() == 1 && constraints[0].starts_with("node.id == "), "pinned by id: {constraints:?}");
    let app = bounded("the service hello-app", manager.inspect_service("hello-app", None)).await.unwrap();
    let app_container = app.spec.and_then(|s| s.task_template?.container_spec).unwrap_or_default();
    assert!(app_container.health_check.is_none(), "no healthcheck given to hello's tasks");

    // The second, under load through a worker's proxy: the release runs
    // beside the old tasks until ready, then the app rolls over; nobody
    // sees a failure.
    let args = ["deploy", "--image", &image_b];
    let deploying = on_swarm(&args, &[]);
    let (second, load) = common::load::during("hello's second release on the swarm", &swarm_url(2), deploying).await;
    assert!(second.success(), "the second deploy of hello to the swarm failed ({:?}):\n{}", second.code, second.stderr);
    assert_eq!(load.failed, 0, "requests failed during hello's rolling update: {load:?}");
    assert!(load.requests > 0, "{load:?}");
    assert_eq!(load.revisions.first(), Some(&a), "{load:?}");
    assert_eq!(load.revisions.last(), Some(&b), "{load:?}");
    assert!(second.stderr.contains("hello-app-next"), "the release ran beside the old tasks first:\n{}", second.stderr);
    // The revision gate and the data checks ran, as on a single host.
    let history = on_swarm(&["history", "--json"], &[]).await;
    let entries: Vec<serde_json::Value> = serde_json::from_str(&history.stdout).expect("hello's history");
    let steps: Vec<&str> = entries.last().expect("an entry")["steps"]
        .as_array()
        .expect("its steps")
        .iter()
        .filter(|step| step["outcome"] == "passed")
        .filter_map(|step| step["name"].as_str())
        .collect();
    let passed = |text: &str| steps.iter().any(|name| name.contains(text));
    for text in [
        "wait until the 2 tasks of hello-app-canary answer /ready",
        "wait until the 2 tasks of hello-app answer /ready",
        "/version reports revision",
        "run the post-deploy checks",
    ] {
        assert!(passed(text), "no passed step `{text}` in hello's deploy: {steps:#?}");
    }
    let (services, _) = swarm_snapshot(&manager, SERVICE).await;
    assert_eq!(services["hello-app"].1, image_b);
    let names: Vec<&str> = services.keys().map(String::as_str).collect();
    assert_eq!(names, ["hello-app", "hello-proxy", "hello-store"], "the canary and next went once the app was ready");
    let store = bounded("the service hello-store", manager.inspect_service("hello-store", None)).await.unwrap();
    assert_eq!(store.version.and_then(|v| v.index), store_version, "the accessory is never updated by a deploy");

    // A release whose readiness never passes: refused; users keep B.
    let env = [("HARNESS_PROD__HEALTH_TIMEOUT_SECS", "8")];
    let args = ["deploy", "--image", &image_never];
    let deploying = on_swarm(&args, &env);
    let (refused, load) =
        common::load::during("hello's never-ready release on the swarm", &swarm_url(3), deploying).await;
    assert_eq!(refused.code, Some(1), "{}", refused.stderr);
    assert!(
        refused.stderr.contains("the tasks of hello-app-canary did not all answer /ready with 2xx within 8 s"),
        "refused where no user reaches it:\n{}",
        refused.stderr
    );
    assert!(refused.stderr.contains("serves what it served before"), "{}", refused.stderr);
    assert_eq!(load.failed, 0, "requests failed during the refused deploy: {load:?}");
    assert_eq!(load.revisions, std::slice::from_ref(&b), "{load:?}");
    let (services, _) = swarm_snapshot(&manager, SERVICE).await;
    assert_eq!(services["hello-app"].1, image_b, "the app was never touched");
    let names: Vec<&str> = services.keys().map(String::as_str).collect();
    assert_eq!(names, ["hello-app", "hello-proxy", "hello-store"], "the refused release went");
    let history = on_swarm(&["history", "--json"], &[]).await;
    let entries: Vec<serde_json::Value> = serde_json::from_str(&history.stdout).expect("hello's history");
    let outcomes: Vec<&str> = entries.iter().rev().take(3).filter_map(|e| e["outcome"].as_str()).collect();
    assert_eq!(outcomes, ["failed", "succeeded", "succeeded"], "hello's own history: {}", history.stdout);

    // Taken off the swarm: its services, configs and network; its volume
    // (on the manager's node) kept unless asked.
    let removed = on_swarm(&["remove"], &[]).await;
    assert!(removed.success(), "harness remove on the swarm failed ({:?}):\n{}", removed.code, removed.stderr);
    let (services, tasks) = swarm_snapshot(&manager, SERVICE).await;
    assert!(services.is_empty() && tasks.is_empty(), "hello's services are gone: {services:?}");
    // The manager's own copy of an overlay network goes once its node let
    // go of it: within seconds of its removal.
    let mut network_gone = false;
    for _ in 0..60 {
        network_gone = bounded("the network hello", manager.inspect_network(SERVICE, None)).await.is_err();
        if network_gone {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    assert!(network_gone, "its network is still there 30 s after the removal:\n{}", removed.stderr);
    assert!(bounded("hello-store", manager.inspect_volume("hello-store")).await.is_ok(), "kept without --volumes");
    let volumes = on_swarm(&["remove", "--volumes"], &[]).await;
    assert!(volumes.success(), "harness remove --volumes ({:?}):\n{}", volumes.code, volumes.stderr);
    assert!(bounded("hello-store", manager.inspect_volume("hello-store")).await.is_err(), "--volumes");
    let history = on_swarm(&["history", "--json"], &[]).await;
    let entries: Vec<serde_json::Value> = serde_json::from_str(&history.stdout).expect("hello's history");
    let last = entries.last().expect("an entry");
    assert_eq!((last["kind"].as_str(), last["outcome"].as_str()), (Some("remove"), Some("succeeded")), "{last}");

    // books-ms on the swarm was never touched.
    assert_eq!(swarm_snapshot(&manager, "books-ms").await, books_before, "books-ms's services or tasks changed");
    assert_eq!(common::target::revision_at(&common::target::node_url(1)).await, books_revision);
    common::prod::assert_no_lock(&manager).await;
    assert!(bounded("hello's lock", manager.inspect_container("hello-deploy-lock", None)).await.is_err());
    lab.empty_repository(SWARM_REPOSITORY).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn on_the_swarm_remove_volumes_removes_an_accessorys_volume_on_a_worker_through_a_job_there() {
    // A project of its own on a port of its own: the test above may run
    // at the same time.
    const PROJECT: &str = "hello-worker";
    const REPOSITORY: &str = "books-lab-tests/hello-worker";
    const VOLUME: &str = "hello-worker-store";
    let lab = Lab::load();
    let manager = lab.swarm_docker().await;
    let worker = common::swarm::nodes(&manager).await.remove("swarm-2").expect("the node swarm-2");
    let env = [
        ("HARNESS_PROD__PROJECT", PROJECT),
        ("HARNESS_SWARM__APP_PORT", "8093"),
        ("HARNESS_SWARM__DATABASE_NODE", worker.id.as_str()),
    ];
    // The worker's own engine, as the lab's scripts reach it (its unix
    // socket): the harness has no way there but a job on that node.
    let socket = "/run/books-lab/swarm-2/docker.sock";
    let on_worker = Docker::connect_with_unix(socket, 60, bollard::API_DEFAULT_VERSION).expect("a client of swarm-2");
    let on_worker = common::negotiate(on_worker, "swarm-2's engine").await;
    let left = on_swarm(&["remove"], &env).await;
    assert!(left.success(), "removing what an earlier run left: {}", left.stderr);
    remove_volume_when_free(&on_worker, VOLUME).await;
    lab.empty_repository(REPOSITORY).await;
    let revision = format!("hello-worker-{}", std::process::id());
    let image = {
        let revision = revision.clone();
        tokio::task::spawn_blocking(move || hello::release(REPOSITORY, &revision, "yes")).await.unwrap()
    }
    .unwrap_or_else(|e| panic!("building hello's release: {e}"));

    let deployed = on_swarm(&["deploy", "--image", &image], &env).await;
    assert!(deployed.success(), "deploying with the accessory on swarm-2 ({:?}):\n{}", deployed.code, deployed.stderr);
    let url = format!("http://{}:8093", lab.swarm_node_address(1));
    assert_eq!(hello::get(&url, "/hello").await, (200, format!("hi from {revision}\n")));
    assert!(bounded("the volume on swarm-2", on_worker.inspect_volume(VOLUME)).await.is_ok(), "its data on swarm-2");

    let removed = on_swarm(&["remove", "--volumes"], &env).await;

    assert!(removed.success(), "harness remove --volumes ({:?}):\n{}", removed.code, removed.stderr);
    let (services, _) = swarm_snapshot(&manager, PROJECT).await;
    assert!(services.is_empty(), "its services went, the removal's job too: {services:?}");
    let volume = bounded("the volume on swarm-2", on_worker.inspect_volume(VOLUME)).await;
    assert!(
        matches!(volume, Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. })),
        "the volume on swarm-2 is gone: {volume:?}\n{}",
        removed.stderr
    );
    lab.empty_repository(REPOSITORY).await;
}

/// Removes `volume` on a node's engine once no container holds it (its
/// task stops within its grace period), bounded; none there is fine.
async fn remove_volume_when_free(engine: &Docker, volume: &str) {
    for _ in 0..60 {
        match bounded(
            "removing a volume",
            engine.remove_volume(volume, None::<bollard::query_parameters::RemoveVolumeOptions>),
        )
        .await
        {
            Ok(()) | Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => return,
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(500)).await,
        }
    }
    panic!("the volume {volume} is still in use 30 s after its service went");
}
