//! Writes through the swarm's proxy while the database does not answer:
//! each write reaches the service once, and its answer tells what
//! happened. The proxy used to give an answer 3 s (`timeout server`) and
//! then send the request to another task, up to three more times, so a
//! create-only PUT applied by a slow first task could answer 412, and a
//! write reached the service four times during an outage. Counted at the
//! service: each task logs `request failed` with the request's span (its
//! method and user agent) for every write it answered 5xx, also after the
//! client went away. Needs the lab's swarm; never skips.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use common::run::run_bounded;
use common::target::{node_url, Target};
use common::Lab;

/// One write's answer: the service's deadline for a write (6 s) with room.
const WRITE_DEADLINE: Duration = Duration::from_secs(40);

/// How long the tasks' log lines of the writes may take to show in their
/// containers' logs.
const LOGS_DEADLINE: Duration = Duration::from_secs(20);

/// The docker CLI on the swarm's manager (TLS), bounded.
fn manager(args: &[&str]) -> common::run::Run {
    let lab = Lab::load();
    let mut command = Command::new("/usr/bin/docker");
    command
        .env("DOCKER_HOST", &lab.swarm_docker_host)
        .env("DOCKER_TLS_VERIFY", "1")
        .env("DOCKER_CERT_PATH", &lab.swarm_cert_path)
        .args(args);
    run_bounded(&mut command, Duration::from_secs(60))
}

/// The database's task paused until dropped (unpaused then, also when the
/// test fails).
struct Paused(String);

impl Paused {
    fn database() -> Paused {
        let ps = manager(&["ps", "-q", "--filter", "label=com.docker.swarm.service.name=books-ms-db"]);
        let id = ps.stdout.lines().next().unwrap_or_else(|| panic!("no database task on the manager: {ps:?}"));
        let paused = manager(&["pause", id]);
        assert!(paused.success(), "{paused:?}");
        Paused(id.to_owned())
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        let unpaused = manager(&["unpause", &self.0]);
        assert!(unpaused.success() || std::thread::panicking(), "{unpaused:?}");
    }
}

/// `method` on `url` with `agent` as the user agent and `headers`; the
/// status and body, or what went wrong.
async fn write(
    method: reqwest::Method,
    url: &str,
    agent: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> String {
    let client = reqwest::Client::builder().no_proxy().timeout(WRITE_DEADLINE).user_agent(agent).build().unwrap();
    let mut request = client.request(method, url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    match request.send().await {
        Ok(response) => format!("{} {}", response.status().as_u16(), response.text().await.unwrap_or_default()),
        Err(e) => format!("no answer: {e}"),
    }
}

/// How many times the app's tasks logged a failed PUT and DELETE sent by
/// `agent`: each node's engine asked for its app containers' logs.
/// `docker service logs` is not the count's source: it left out a running
/// task's lines now and then, and a stream for the service ends at the
/// first task whose node is gone (the lab's repaired nodes rejoin with a
/// new id).
async fn failed_writes(agent: &str) -> (usize, usize) {
    use bollard::query_parameters::{ListContainersOptionsBuilder, LogsOptionsBuilder};
    use futures_util::StreamExt;
    let lab = Lab::load();
    let label = "com.docker.swarm.service.name=books-ms-app".to_owned();
    let filters = std::collections::HashMap::from([("label".to_owned(), vec![label])]);
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() - 300;
    let mut text = String::new();
    for i in 1..=lab.swarm_nodes {
        let docker = common::swarm::node_docker(&lab, i).await;
        let options = ListContainersOptionsBuilder::default().all(true).filters(&filters).build();
        let containers = common::bounded("listing a node's app containers", docker.list_containers(Some(options)))
            .await
            .unwrap_or_else(|e| panic!("swarm-{i}: listing the app's containers: {e}"));
        for id in containers.into_iter().filter_map(|c| c.id) {
            let options = LogsOptionsBuilder::default().stdout(true).stderr(true).since(since as i32).build();
            let mut logs = docker.logs(&id, Some(options));
            common::bounded("reading a container's logs", async {
                while let Some(chunk) = logs.next().await {
                    text.push_str(&chunk.unwrap_or_else(|e| panic!("swarm-{i}: the logs of {id}: {e}")).to_string());
                }
            })
            .await;
        }
    }
    let count = |method: &str| {
        text.lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|line| line["message"] == "request failed")
            .filter(|line| line["span"]["http.user_agent"] == agent && line["span"]["http.method"] == method)
            .count()
    };
    (count("PUT"), count("DELETE"))
}

#[tokio::test(flavor = "multi_thread")]
async fn with_the_database_paused_each_write_reaches_the_service_once_and_answers_what_happened() {
    let _scene = Target::Swarm.scene().await;
    let base = node_url(1);
    let agent = format!("swarm-writes-test-{}", std::process::id());
    let id = common::books::run_book_id(7);
    let book = serde_json::json!({"_id": id, "title": "written during an outage", "author": "the swarm test"});

    let (put, delete, took) = {
        let _paused = Paused::database();
        let started = Instant::now();
        let put =
            write(reqwest::Method::PUT, &format!("{base}/api/v1/books"), &agent, &[("If-None-Match", "*")], Some(book))
                .await;
        let delete = write(reqwest::Method::DELETE, &format!("{base}/api/v1/books/_id/{id}"), &agent, &[], None).await;
        (put, delete, started.elapsed())
    };
    // A task's log line reaches its container's logs a moment after the
    // answer (later from a worker, and later under load): polled until
    // both writes show, bounded. Any retry of the proxy's happened before
    // its answer, so its lines are not later than the first's; the final
    // count, a moment after, would show them.
    let deadline = Instant::now() + LOGS_DEADLINE;
    while matches!(failed_writes(&agent).await, (0, _) | (_, 0)) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (puts, deletes) = failed_writes(&agent).await;
    println!("PUT: {put}\nDELETE: {delete}\nboth in {took:?}; reached the service: PUT {puts}, DELETE {deletes}");

    for (what, answer) in [("PUT", &put), ("DELETE", &delete)] {
        // The service's own answer, which says the outcome is unknown or
        // that nothing was done: never the proxy's after a retry.
        assert!(answer.starts_with("503 ") || answer.starts_with("504 "), "{what}: {answer}");
        assert!(
            answer.contains("write_outcome_unknown") || answer.contains("database_unavailable"),
            "{what} answered by the service, which says what happened: {answer}"
        );
    }
    assert_eq!((puts, deletes), (1, 1), "each write reached the service once (PUT: {put}; DELETE: {delete})");
    // Whatever became of the book, remove it.
    let _ = write(reqwest::Method::DELETE, &format!("{base}/api/v1/books/_id/{id}"), &agent, &[], None).await;
}
