//! `harness deploy --target swarm` end to end on the lab's swarm (three
//! nodes, lab/swarm.sh): a rolling update under a steady stream of
//! requests, a release that never turns healthy, books kept across an
//! update, a release rolled back by the harness when it fails after its
//! update, and a worker lost under load. What the harness did is judged by
//! independent clients: the streams of requests on the nodes' proxies
//! (common::load), the manager's engine (common::swarm), users' books
//! (common::books) and the API.
//!
//! The releases are this working tree built with revisions of this run
//! (`swarm-test-a-PID`, `swarm-test-b-PID`; common::release); most tests
//! start from A live (common::target's `Scene`), as on prod. The tests
//! share the swarm: one at a time (a lock), each for its whole body. They
//! need the lab up (`lab/up.sh` raises the swarm too) and root. They never
//! skip.

mod common;

use std::time::{Duration, Instant};

use bollard::models::{NodeState, TaskState};
use bollard::query_parameters::ListTasksOptionsBuilder;
use bollard::Docker;
use serde_json::Value;

use common::books::{not_read_back, put_books, remove_all};
use common::prod::assert_no_lock;

use common::run::Run;
use common::swarm::{nodes, LostNode};
use common::target::{node_url, revision_at, Target, OBSERVE_DEADLINE};

/// The project's app service (project `books-ms`, the default).
const APP: &str = "books-ms-app";
const SWARM: Target = Target::Swarm;

/// `harness --repo ROOT --target swarm ARGS...`, bounded, off the async
/// runtime.
async fn harness(args: &[&str]) -> Run {
    SWARM.harness(args, &[]).await
}

async fn deploy(image: &str, env: &[(&str, &str)]) -> Run {
    SWARM.deploy(image, env).await
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

#[tokio::test(flavor = "multi_thread")]
async fn a_rolling_update_under_steady_load_drops_no_request_and_switches_the_answers_and_rolls_back() {
    let scene = SWARM.scene().await;
    let (a, b, swarm) = (&scene.a, &scene.b, &scene.docker);

    // Both releases answer while the tasks roll over: A and B alternate.
    let what = format!("the rolling update to {}", b.revision);
    let (run, load) = common::load::during(&what, &node_url(1), deploy(&b.image, &[])).await;

    assert_eq!(run.code, Some(0), "deploying {}:\n{}", b.revision, run.stderr);
    assert_eq!(load.failed, 0, "requests failed during the rolling update: {load:?}");
    assert_eq!(load.revisions.first(), Some(&a.revision), "{load:?}");
    assert_eq!(load.revisions.last(), Some(&b.revision), "{load:?}");
    for node in 1..=3 {
        assert_eq!(revision_at(&node_url(node)).await.as_ref(), Some(&b.revision), "node {node}'s proxy");
    }
    assert_eq!(app_image(swarm).await, b.image);
    assert_eq!(running_app_tasks(swarm).await.len(), 2, "two replicas");
    assert_no_lock(swarm).await;

    // `harness rollback`: a rolling update back to the release B replaced.
    let (rollback, load) = common::load::during("the rollback", &node_url(3), harness(&["rollback"])).await;
    assert!(rollback.success(), "rolling back:\n{}", rollback.stderr);
    assert!(rollback.stdout.contains(&a.image), "{}", rollback.stdout);
    assert_eq!(load.failed, 0, "requests failed during the rollback: {load:?}");
    assert_eq!(revision_at(&node_url(2)).await.as_ref(), Some(&a.revision));
    assert_eq!(app_image(swarm).await, a.image);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_release_that_never_turns_healthy_is_rolled_back_and_the_previous_keeps_answering() {
    let scene = SWARM.scene().await;
    let (a, swarm) = (&scene.a, &scene.docker);
    let never = common::release::never_healthy(a).await;

    let (run, load) = common::load::during("the failed update", &node_url(1), deploy(&never.image, &[])).await;

    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(run.stderr.contains("rolled the update of books-ms-app back"), "{}", run.stderr);
    assert_eq!(load.failed, 0, "requests failed during the failed update: {load:?}");
    assert_eq!(load.revisions, std::slice::from_ref(&a.revision), "{load:?}");
    assert_eq!(app_image(swarm).await, a.image, "the service runs the previous release");
    assert_eq!(revision_at(&node_url(2)).await.as_ref(), Some(&a.revision));
    let last = SWARM.last_history_entry().await;
    assert_eq!(last["outcome"], "failed", "{last}");
    assert_eq!(last["release"]["image"], never.image.as_str(), "{last}");
    assert_no_lock(swarm).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_release_that_fails_after_its_update_is_rolled_back_by_the_harness() {
    let scene = SWARM.scene().await;
    let (a, b, swarm) = (&scene.a, &scene.b, &scene.docker);

    // The update converges, then the post-deploy hook (run after the
    // checks, as users reach the release) fails: the harness rolls back.
    let deploying = deploy(&b.image, &[("HARNESS_HOOKS__POST_DEPLOY", "exit 3")]);
    let (run, load) = common::load::during("the update and its rollback", &node_url(2), deploying).await;

    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(run.stderr.contains("post-deploy hook failed"), "{}", run.stderr);
    assert!(run.stderr.contains("rolled back (books-ms-app)"), "{}", run.stderr);
    assert_eq!(load.failed, 0, "requests failed during the update and its rollback: {load:?}");
    assert_eq!(load.revisions.last(), Some(&a.revision), "{load:?}");
    assert!(load.revisions.contains(&b.revision), "B served before the hook failed: {load:?}");
    assert_eq!(app_image(swarm).await, a.image, "the service runs the previous release again");
    assert_eq!(running_app_tasks(swarm).await.len(), 2);
    assert_no_lock(swarm).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn books_written_before_an_update_are_all_there_after_it() {
    let scene = SWARM.scene().await;
    let b = &scene.b;
    let base = node_url(1);
    let mut books = put_books(&base, 30, &format!("the update to {}", b.revision)).await;

    let run = deploy(&b.image, &[]).await;
    // Through another node's proxy: the database is the swarm's, not a node's.
    let missing = not_read_back(&books, &node_url(3)).await;
    let not_removed = remove_all(&mut books).await;

    assert_eq!(run.code, Some(0), "deploying {}:\n{}", b.revision, run.stderr);
    assert_eq!(revision_at(&base).await.as_ref(), Some(&b.revision));
    assert!(missing.is_empty(), "books not read back as written after the update: {missing:?}");
    assert!(not_removed.is_empty(), "books not removed: {not_removed:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_lost_under_load_loses_no_request_its_replicas_move_and_status_shows_it_down() {
    let scene = SWARM.scene().await;
    let (a, swarm) = (&scene.a, &scene.docker);
    let (lost_id, lost_label, lost) = a_worker_running_a_replica(swarm).await;
    let others: Vec<usize> = (1..=3).filter(|i| *i != lost).collect();

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
        let state = node_state(swarm, &lost_id).await;
        if state != last {
            // A lab script run elsewhere (`lab/swarm.sh up`) would bring the link back: say when it changed.
            eprintln!("{:?} after its link went down, the manager says swarm-{lost} is {state:?}", started.elapsed());
            last = state;
        }
        let down = state == Some(NodeState::DOWN);
        if down && seen_down.is_none() {
            seen_down = Some(started.elapsed());
        }
        let running = running_app_tasks(swarm).await;
        if seen_down.is_some() && running.len() == 2 && running.iter().all(|(_, node)| *node != lost_id) {
            moved = Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let status = harness(&["status", "--json"]).await;
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

/// A worker that runs one of the app's two replicas: its node id, its
/// label (`swarm-<i>`) and i.
async fn a_worker_running_a_replica(swarm: &Docker) -> (String, String, usize) {
    let nodes = nodes(swarm).await;
    let tasks = running_app_tasks(swarm).await;
    assert_eq!(tasks.len(), 2, "two replicas before the loss");
    let (id, label) = nodes
        .values()
        .filter(|node| node.label != "swarm-1")
        .find(|node| tasks.iter().any(|(_, on)| *on == node.id))
        .map(|node| (node.id.clone(), node.label.clone()))
        .expect("a worker running a replica");
    let i = label.trim_start_matches("swarm-").parse().expect("a node label swarm-<i>");
    (id, label, i)
}

/// What the manager says of the state of node `id`.
async fn node_state(swarm: &Docker, id: &str) -> Option<NodeState> {
    nodes(swarm).await.into_values().find(|node| node.id == id).and_then(|node| node.state)
}

/// Issue 23: on a swarm whose worker was lost and then repaired, a release
/// that never turns healthy failed users' requests (503 for about 33 s)
/// while the swarm tried it and rolled it back. The old tasks must keep
/// serving throughout, on a calm swarm (above) and on one that lost a node.
#[tokio::test(flavor = "multi_thread")]
async fn a_release_that_never_turns_healthy_after_a_node_was_lost_and_repaired_costs_no_request() {
    let scene = SWARM.scene().await;
    let (a, swarm) = (&scene.a, &scene.docker);
    let never = common::release::never_healthy(a).await;
    let (lost_id, _, lost) = a_worker_running_a_replica(swarm).await;

    // Lost until the manager says so and both replicas run elsewhere.
    let link = LostNode::take_down(lost);
    let deadline = Instant::now() + OBSERVE_DEADLINE;
    loop {
        let down = node_state(swarm, &lost_id).await == Some(NodeState::DOWN);
        let running = running_app_tasks(swarm).await;
        if down && running.len() == 2 && running.iter().all(|(_, node)| *node != lost_id) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "swarm-{lost} not seen down with its replicas moved in {OBSERVE_DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Repaired (lab/swarm.sh up): the update starts right away, as the
    // node rejoins.
    drop(link);
    println!("swarm-{lost} repaired; the manager says it is {:?}", node_state(swarm, &lost_id).await);

    let (run, load) = common::load::during("the failed update", &node_url(1), deploy(&never.image, &[])).await;

    println!("the never-healthy update after swarm-{lost} was lost and repaired: {load:?}");
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(run.stderr.contains("rolled the update of books-ms-app back"), "{}", run.stderr);
    assert_eq!(load.failed, 0, "requests failed during the failed update: {load:?}");
    assert_eq!(load.revisions, std::slice::from_ref(&a.revision), "{load:?}");
    assert_eq!(app_image(swarm).await, a.image, "the service runs the previous release");
    assert_no_lock(swarm).await;
}
