//! `harness deploy --target swarm` end to end on the lab's swarm (three
//! nodes, lab/swarm.sh): a rolling update under a steady stream of
//! requests, a release that never turns healthy, books kept across an
//! update, a release rolled back by the harness when it fails after its
//! update, and a worker lost under load. What the harness did is judged by
//! independent clients: the streams of requests on the nodes' proxies
//! (common::load), the manager's engine and the API.
//!
//! The releases are this working tree built with revisions of this run
//! (`swarm-test-a-PID`, `swarm-test-b-PID`; common::release). The tests
//! share the swarm: one at a time (a lock), each for its whole body. They
//! need the lab up (`lab/up.sh` raises the swarm too) and root. They never
//! skip.

mod common;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bollard::models::{NodeState, TaskState};
use bollard::query_parameters::{ListNodesOptions, ListTasksOptionsBuilder};
use bollard::Docker;
use serde_json::Value;

use common::release::{build_release, docker, Release, TEST_REPOSITORY};
use common::run::{run_bounded, Run};
use common::{http_client, repo_root, Lab};

/// The port the proxy is published on, on every node (the harness's default).
const APP_PORT: u16 = 8080;
/// One deploy: the pulls on every node, the rolling update, the checks.
const DEPLOY_DEADLINE: Duration = Duration::from_secs(400);
/// How long a test waits for the swarm to show something.
const OBSERVE_DEADLINE: Duration = Duration::from_secs(120);
/// The project's services (project `books-ms`, the default).
const APP: &str = "books-ms-app";
const LOCK: &str = "books-ms-deploy-lock";

static RELEASE_A: OnceLock<Result<Release, String>> = OnceLock::new();
static RELEASE_B: OnceLock<Result<Release, String>> = OnceLock::new();
static NEVER_HEALTHY: OnceLock<Result<Release, String>> = OnceLock::new();

/// Release A and release B of this run, each built at most once per test
/// binary.
async fn releases() -> (Release, Release) {
    tokio::task::spawn_blocking(|| (release(&RELEASE_A, "a"), release(&RELEASE_B, "b"))).await.unwrap()
}

fn release(cell: &'static OnceLock<Result<Release, String>>, which: &str) -> Release {
    let built = cell.get_or_init(|| build_release(&format!("swarm-test-{which}-{}", std::process::id())));
    built.clone().unwrap_or_else(|e| panic!("{e}"))
}

/// Release A with a healthcheck that always fails: its tasks start, and
/// never turn healthy.
async fn never_healthy(a: &Release) -> Release {
    let a = a.clone();
    tokio::task::spawn_blocking(move || {
        let built = NEVER_HEALTHY.get_or_init(|| {
            let revision = format!("swarm-test-never-{}", std::process::id());
            let context = tempfile::tempdir().map_err(|e| format!("a build context: {e}"))?;
            let dockerfile = format!(
                "FROM {}\nLABEL org.opencontainers.image.revision=\"{revision}\"\n\
                 HEALTHCHECK --interval=1s --timeout=1s --retries=2 CMD [\"/no-such-check\"]\n",
                a.image
            );
            std::fs::write(context.path().join("Dockerfile"), dockerfile).map_err(|e| format!("Dockerfile: {e}"))?;
            let lab = Lab::load();
            let tag = format!("{}/{TEST_REPOSITORY}:{revision}", lab.registry);
            docker(&["build", "-q", "-t", &tag]).arg(&context.path().to_string_lossy()).succeeds()?;
            docker(&["push", &tag]).succeeds()?;
            let digests = docker(&["inspect", "-f", "{{json .RepoDigests}}", &tag]).succeeds()?;
            let digests: Vec<String> = serde_json::from_str(digests.stdout.trim()).map_err(|e| format!("{e}"))?;
            let image = digests.into_iter().find(|d| d.contains("@sha256:")).ok_or("no digest after the push")?;
            Ok(Release { revision, image })
        });
        built.clone().unwrap_or_else(|e| panic!("{e}"))
    })
    .await
    .unwrap()
}

/// `harness --repo ROOT --target swarm ARGS...` with `env`, bounded, off
/// the async runtime.
async fn harness(args: &[&str], env: &[(&str, &str)]) -> Run {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    common::run::harness(DEPLOY_DEADLINE)
        .arg("--repo")
        .arg(repo_root())
        .args(["--target", "swarm"])
        .args(args)
        .envs(env)
        .run_async()
        .await
}

async fn deploy(image: &str, env: &[(&str, &str)]) -> Run {
    harness(&["deploy", "--image", image], env).await
}

/// The swarm serves `release` through its proxies: deployed now, or
/// already.
async fn make_live(release: &Release) {
    let run = deploy(&release.image, &[]).await;
    assert!(run.success(), "making {} live on the swarm:\n{}", release.revision, run.stderr);
    assert_eq!(revision_at(&node_url(1)).await.as_deref(), Some(release.revision.as_str()));
}

/// Node `i`'s proxy (1-based; node 1 is the manager), from the manager's
/// address: the lab's nodes are 10.210.0.(10+i).
fn node_url(i: u8) -> String {
    let lab = Lab::load();
    let manager = lab.swarm_docker_host.trim_start_matches("tcp://");
    let host = manager.rsplit_once(':').map_or(manager, |(host, _)| host);
    let (prefix, last) = host.rsplit_once('.').expect("an IPv4 manager address");
    let first: u8 = last.parse().expect("an IPv4 manager address");
    format!("http://{prefix}.{}:{APP_PORT}", first + i - 1)
}

/// The revision `/version` reports at `url`, None when it does not answer.
async fn revision_at(url: &str) -> Option<String> {
    let response = http_client().get(format!("{url}/version")).send().await.ok()?;
    let version: Value = response.json().await.ok()?;
    version["revision"].as_str().map(str::to_owned)
}

/// The image the app's service runs now.
async fn app_image(swarm: &Docker) -> String {
    let service = common::bounded("inspecting the app", swarm.inspect_service(APP, None)).await.unwrap();
    service.spec.and_then(|s| s.task_template?.container_spec?.image).unwrap_or_default()
}

/// The app's tasks that run, with the node of each.
async fn running_app_tasks(swarm: &Docker) -> Vec<(String, String)> {
    let filters = std::collections::HashMap::from([
        ("service".to_owned(), vec![APP.to_owned()]),
        ("desired-state".to_owned(), vec!["running".to_owned()]),
    ]);
    let options = ListTasksOptionsBuilder::default().filters(&filters).build();
    let tasks = common::bounded("listing tasks", swarm.list_tasks(Some(options))).await.unwrap();
    tasks
        .into_iter()
        .filter(|t| t.status.as_ref().and_then(|s| s.state) == Some(TaskState::RUNNING))
        .map(|t| (t.id.unwrap_or_default(), t.node_id.unwrap_or_default()))
        .collect()
}

/// Node ids by their lab label (`swarm-<i>`), with their state.
async fn nodes(swarm: &Docker) -> Vec<(String, String, Option<NodeState>)> {
    let nodes = common::bounded("listing nodes", swarm.list_nodes(None::<ListNodesOptions>)).await.unwrap();
    nodes
        .into_iter()
        .map(|n| {
            let label = n.spec.and_then(|s| s.labels?.get("books-lab.node").cloned()).unwrap_or_default();
            (n.id.unwrap_or_default(), label, n.status.and_then(|s| s.state))
        })
        .collect()
}

async fn assert_no_lock(swarm: &Docker) {
    let lock = swarm.inspect_container(LOCK, None).await;
    assert!(lock.is_err(), "the deploy lock is still on the manager");
}

/// `lab/swarm.sh link-up I` when dropped: a failed test leaves no node lost.
struct LostNode(u8);

impl LostNode {
    fn take_down(i: u8) -> LostNode {
        let run = run_bounded(
            std::process::Command::new("bash")
                .arg(repo_root().join("lab/swarm.sh"))
                .args(["link-down", &i.to_string()]),
            Duration::from_secs(60),
        );
        assert!(run.success(), "lab/swarm.sh link-down {i}: {}{}", run.stdout, run.stderr);
        LostNode(i)
    }
}

impl Drop for LostNode {
    fn drop(&mut self) {
        let run = run_bounded(
            std::process::Command::new("bash").arg(repo_root().join("lab/swarm.sh")).arg("up"),
            Duration::from_secs(180),
        );
        if !run.success() {
            eprintln!("lab/swarm.sh up after taking node {} down failed: {}{}", self.0, run.stdout, run.stderr);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rolling_update_under_steady_load_drops_no_request_and_switches_the_answers_and_rolls_back() {
    let _swarm = common::prod_lock().await;
    let (a, b) = releases().await;
    make_live(&a).await;
    let swarm = Lab::load().swarm_docker().await;

    let load = common::load::start(&format!("{}/version", node_url(1)), 2, Duration::from_millis(5));
    let run = deploy(&b.image, &[]).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let load = load.stop().await;
    // Both releases answer while the tasks roll over: A and B alternate.
    println!(
        "the load during the rolling update to {}: {} requests, {} failed, longest gap {:?}, {} runs of one \
         revision, from {:?} to {:?}",
        b.revision,
        load.requests,
        load.failed,
        load.longest_gap,
        load.revisions.len(),
        load.revisions.first(),
        load.revisions.last()
    );

    assert_eq!(run.code, Some(0), "deploying {}:\n{}", b.revision, run.stderr);
    assert_eq!(load.failed, 0, "requests failed during the rolling update: {load:?}");
    assert_eq!(load.revisions.first(), Some(&a.revision), "{load:?}");
    assert_eq!(load.revisions.last(), Some(&b.revision), "{load:?}");
    for node in 1..=3 {
        assert_eq!(revision_at(&node_url(node)).await.as_ref(), Some(&b.revision), "node {node}'s proxy");
    }
    assert_eq!(app_image(&swarm).await, b.image);
    assert_eq!(running_app_tasks(&swarm).await.len(), 2, "two replicas");
    assert_no_lock(&swarm).await;

    // `harness rollback`: a rolling update back to the release B replaced.
    let load = common::load::start(&format!("{}/version", node_url(3)), 2, Duration::from_millis(5));
    let rollback = harness(&["rollback"], &[]).await;
    let load = load.stop().await;
    assert!(rollback.success(), "rolling back:\n{}", rollback.stderr);
    assert!(rollback.stdout.contains(&a.image), "{}", rollback.stdout);
    assert_eq!(load.failed, 0, "requests failed during the rollback: {load:?}");
    assert_eq!(revision_at(&node_url(2)).await.as_ref(), Some(&a.revision));
    assert_eq!(app_image(&swarm).await, a.image);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_release_that_never_turns_healthy_is_rolled_back_and_the_previous_keeps_answering() {
    let _swarm = common::prod_lock().await;
    let (a, _) = releases().await;
    make_live(&a).await;
    let never = never_healthy(&a).await;
    let swarm = Lab::load().swarm_docker().await;

    let load = common::load::start(&format!("{}/version", node_url(1)), 2, Duration::from_millis(5));
    let run = deploy(&never.image, &[]).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let load = load.stop().await;
    println!(
        "the load during the failed update: {} requests, {} failed, longest gap {:?}, revisions {:?}",
        load.requests, load.failed, load.longest_gap, load.revisions
    );

    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(run.stderr.contains("rolled the update of books-ms-app back"), "{}", run.stderr);
    assert_eq!(load.failed, 0, "requests failed during the failed update: {load:?}");
    assert_eq!(load.revisions, std::slice::from_ref(&a.revision), "{load:?}");
    assert_eq!(app_image(&swarm).await, a.image, "the service runs the previous release");
    assert_eq!(revision_at(&node_url(2)).await.as_ref(), Some(&a.revision));
    let history = harness(&["history", "--json"], &[]).await;
    let entries: Vec<Value> = serde_json::from_str(&history.stdout).expect("the history as JSON");
    let last = entries.last().expect("an entry");
    assert_eq!(last["outcome"], "failed", "{last}");
    assert_eq!(last["release"]["image"], never.image.as_str(), "{last}");
    assert_no_lock(&swarm).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_release_that_fails_after_its_update_is_rolled_back_by_the_harness() {
    let _swarm = common::prod_lock().await;
    let (a, b) = releases().await;
    make_live(&a).await;
    let swarm = Lab::load().swarm_docker().await;

    // The update converges, then the post-deploy hook (run after the
    // checks, as users reach the release) fails: the harness rolls back.
    let load = common::load::start(&format!("{}/version", node_url(2)), 2, Duration::from_millis(5));
    let run = deploy(&b.image, &[("HARNESS_HOOKS__POST_DEPLOY", "exit 3")]).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let load = load.stop().await;
    println!(
        "the load during the update and its rollback: {} requests, {} failed, longest gap {:?}, {} runs of one \
         revision, last {:?}",
        load.requests,
        load.failed,
        load.longest_gap,
        load.revisions.len(),
        load.revisions.last()
    );

    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(run.stderr.contains("post-deploy hook failed"), "{}", run.stderr);
    assert!(run.stderr.contains("rolled back (books-ms-app)"), "{}", run.stderr);
    assert_eq!(load.failed, 0, "requests failed during the update and its rollback: {load:?}");
    assert_eq!(load.revisions.last(), Some(&a.revision), "{load:?}");
    assert!(load.revisions.contains(&b.revision), "B served before the hook failed: {load:?}");
    assert_eq!(app_image(&swarm).await, a.image, "the service runs the previous release again");
    assert_eq!(running_app_tasks(&swarm).await.len(), 2);
    assert_no_lock(&swarm).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn books_written_before_an_update_are_all_there_after_it() {
    let _swarm = common::prod_lock().await;
    let (a, b) = releases().await;
    make_live(&a).await;
    let base = node_url(1);
    let http = http_client();
    let first_id = 424_500 + i64::from(std::process::id() % 1000) * 100;
    let mut books = Vec::new();
    for n in 0..30 {
        let id = first_id + n;
        let book = serde_json::json!({
            "_id": id, "title": format!("Book {n} of a rolling update"), "author": format!("Author {n}"),
            "description": format!("written before the update to {}", b.revision)
        });
        let url = format!("{base}/api/v1/books");
        let status = common::bounded("PUT a book", http.put(&url).json(&book).send()).await.unwrap().status();
        assert!(status.is_success(), "PUT book {id}: {status}");
        books.push((id, book));
    }

    let run = deploy(&b.image, &[]).await;
    let mut missing = Vec::new();
    for (id, book) in &books {
        // Through another node's proxy: the database is the swarm's, not a node's.
        let url = format!("{}/api/v1/books/_id/{id}", node_url(3));
        let response = common::bounded("GET a book", http.get(&url).send()).await.unwrap();
        let back: Option<Value> = if response.status() == 200 { response.json().await.ok() } else { None };
        if back.as_ref() != Some(book) {
            missing.push((*id, back));
        }
    }
    let mut not_removed = Vec::new();
    for (id, _) in &books {
        let url = format!("{base}/api/v1/books/_id/{id}");
        let status = common::bounded("DELETE a book", http.delete(&url).send()).await.unwrap().status();
        if status != 200 {
            not_removed.push((*id, status));
        }
    }

    assert_eq!(run.code, Some(0), "deploying {}:\n{}", b.revision, run.stderr);
    assert_eq!(revision_at(&base).await.as_ref(), Some(&b.revision));
    assert!(missing.is_empty(), "books not read back as written after the update: {missing:?}");
    assert!(not_removed.is_empty(), "books not removed: {not_removed:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_lost_under_load_loses_no_request_its_replicas_move_and_status_shows_it_down() {
    let _swarm = common::prod_lock().await;
    let (a, _) = releases().await;
    make_live(&a).await;
    let swarm = Lab::load().swarm_docker().await;
    let nodes = nodes(&swarm).await;
    let tasks = running_app_tasks(&swarm).await;
    assert_eq!(tasks.len(), 2, "two replicas before the loss");
    // A worker that runs a replica.
    let (lost_id, lost_label) = nodes
        .iter()
        .filter(|(_, label, _)| label != "swarm-1")
        .find(|(id, _, _)| tasks.iter().any(|(_, node)| node == id))
        .map(|(id, label, _)| (id.clone(), label.clone()))
        .expect("a worker running a replica");
    let lost: u8 = lost_label.trim_start_matches("swarm-").parse().expect("a node label swarm-<i>");
    let others: Vec<u8> = (1..=3).filter(|i| *i != lost).collect();

    let streams: Vec<_> = others
        .iter()
        .map(|i| common::load::start(&format!("{}/version", node_url(*i)), 2, Duration::from_millis(10)))
        .collect();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let started = Instant::now();
    let link = LostNode::take_down(lost);

    // The manager sees it down, and the swarm runs two replicas elsewhere.
    let deadline = Instant::now() + OBSERVE_DEADLINE;
    let (mut seen_down, mut moved, mut last) = (None, None, None);
    while Instant::now() < deadline && (seen_down.is_none() || moved.is_none()) {
        let state = nodes_state(&swarm, &lost_id).await;
        if state != last {
            // A lab script run elsewhere (`lab/swarm.sh up`) would bring the link back: say when it changed.
            eprintln!("{:?} after its link went down, the manager says swarm-{lost} is {state:?}", started.elapsed());
            last = state;
        }
        let down = state == Some(NodeState::DOWN);
        if down && seen_down.is_none() {
            seen_down = Some(started.elapsed());
        }
        let running = running_app_tasks(&swarm).await;
        if seen_down.is_some() && running.len() == 2 && running.iter().all(|(_, node)| *node != lost_id) {
            moved = Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let status = harness(&["status", "--json"], &[]).await;
    let mut loads = Vec::new();
    for stream in streams {
        loads.push(stream.stop().await);
    }
    drop(link);
    let requests: u64 = loads.iter().map(|l| l.requests).sum();
    let failed: u64 = loads.iter().map(|l| l.failed).sum();
    let gap = loads.iter().map(|l| l.longest_gap).max().unwrap_or_default();
    println!(
        "node {lost} lost under load through nodes {others:?}: {requests} requests, {failed} failed, longest gap \
         {gap:?}; seen down after {seen_down:?}, both replicas elsewhere after {moved:?}"
    );

    assert!(seen_down.is_some(), "the manager never marked swarm-{lost} down");
    assert!(moved.is_some(), "the swarm did not run both replicas on the other nodes");
    assert_eq!(failed, 0, "requests failed while swarm-{lost} was lost: {loads:?}");
    assert!(status.success(), "{}", status.stderr);
    let status: Value = serde_json::from_str(&status.stdout).expect("the status as JSON");
    let node = status["nodes"].as_array().unwrap().iter().find(|n| n["name"] == lost_label.as_str()).cloned();
    assert_eq!(node.as_ref().map(|n| n["state"].clone()), Some(Value::from("down")), "{status}");
    let running: Vec<&Value> = status["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["service"] == APP && t["state"] == "running" && t["desired"] == "running")
        .collect();
    assert_eq!(running.len(), 2, "{status}");
    assert!(running.iter().all(|t| t["version"] == a.revision.as_str()), "each task's version: {status}");
}

async fn nodes_state(swarm: &Docker, id: &str) -> Option<NodeState> {
    nodes(swarm).await.into_iter().find(|(node, _, _)| node == id).and_then(|(_, _, state)| state)
}
