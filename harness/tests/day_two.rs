//! Day-two operations on a live release, on each target: `harness details`
//! names the live release (its colour, revision and digest; the swarm's
//! tasks with their nodes), and `harness logs` shows the log line of a
//! request this test made, marked with the live colour or the task's node,
//! with `--grep`, `--lines`, `--since`, `--json` and `--accessory db`, each
//! within seconds; `--follow` shows a request made while it follows, and
//! Ctrl-C ends it (exit 130) at once. Also: the completion script and the
//! man page.
//!
//! Each target's test deploys a release of its own (a revision of this
//! run) first. They need the lab up (`lab/up.sh`: prod and the swarm) and
//! never skip.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::release::{build_release, Release};
use common::repo_root;
use common::run::Run;

/// One deploy, on a single host or the swarm (pulls, health, checks).
const DEPLOY_DEADLINE: Duration = Duration::from_secs(400);
/// A reading command's deadline here; it should take far less.
const READ_DEADLINE: Duration = Duration::from_secs(60);
/// What "returns within a few seconds" means for `logs` without
/// `--follow` and for `details` (the harness's own read deadline is 8 s).
const QUICK: Duration = Duration::from_secs(15);
/// From Ctrl-C to the end of `logs --follow`.
const STOP_DEADLINE: Duration = Duration::from_secs(5);

static RELEASE: OnceLock<Result<Release, String>> = OnceLock::new();

/// This run's release, built once for both targets.
async fn release() -> Release {
    tokio::task::spawn_blocking(|| {
        let built = RELEASE.get_or_init(|| build_release(&format!("day-two-{}", std::process::id())));
        built.clone().unwrap_or_else(|e| panic!("{e}"))
    })
    .await
    .unwrap()
}

/// `harness --repo ROOT --target TARGET ARGS...`, bounded.
async fn harness(target: &str, deadline: Duration, args: &[&str]) -> Run {
    common::run::harness(deadline)
        .arg("--repo")
        .arg(repo_root())
        .args(["--target", target])
        .args(args)
        .run_async()
        .await
}

/// A reading command, which must succeed within [`QUICK`].
async fn read(target: &str, args: &[&str]) -> Run {
    let run = harness(target, READ_DEADLINE, args).await;
    assert!(run.success(), "`{}` failed:\n{}", run.command, run.stderr);
    assert!(run.elapsed < QUICK, "`{}` took {:?}", run.command, run.elapsed);
    run
}

/// `harness details --json`.
async fn details(target: &str) -> Value {
    serde_json::from_str(&read(target, &["--json", "details"]).await.stdout).expect("details --json is JSON")
}

/// A book id of this run's (negative: the service's checks use positive
/// reserved ids), `n` telling this run's apart.
fn book_id(n: i32) -> i32 {
    -(1_000_000 + (std::process::id() % 100_000) as i32 * 10 + n)
}

/// Writes a book through the proxy, which the service logs
/// (`"book stored","id":"ID"`); returns that log line's text.
async fn store_book(url: &str, id: i32) -> String {
    let book = json!({ "_id": id, "title": "day two", "author": "tests", "description": "harness logs test" });
    let response = common::bounded(
        "a PUT through the proxy",
        common::http_client().put(format!("{url}/api/v1/books")).json(&book).send(),
    )
    .await
    .expect("the proxy answers");
    assert!(response.status().is_success(), "PUT {id}: {}", response.status());
    format!(r#""book stored","id":"{id}""#)
}

async fn remove_book(url: &str, id: i32) {
    let _ = common::bounded(
        "a DELETE through the proxy",
        common::http_client().delete(format!("{url}/api/v1/books/{id}")).send(),
    )
    .await;
}

/// The marks (`[MARK] ...`) of `text`'s lines; fails on an unmarked one.
fn marks(text: &str) -> Vec<String> {
    text.lines()
        .map(|line| {
            let mark = line.strip_prefix('[').and_then(|rest| rest.split_once("] ")).map(|(mark, _)| mark.to_owned());
            mark.unwrap_or_else(|| panic!("an unmarked line: {line:?}\n{text}"))
        })
        .collect()
}

/// Deploys this run's release on `target`; what `details` then says.
async fn deployed(target: &str, release: &Release) -> Value {
    let run = harness(target, DEPLOY_DEADLINE, &["deploy", "--image", &release.image]).await;
    assert!(run.success(), "the deploy on {target} failed:\n{}", run.stderr);
    let details = details(target).await;
    assert_eq!(details["target"], target, "{details:#}");
    assert_eq!(details["live"]["revision"], release.revision.as_str(), "details names the live revision: {details:#}");
    assert_eq!(details["live"]["image"], release.image.as_str(), "{details:#}");
    let last = details["history"].as_array().and_then(|h| h.last()).cloned().unwrap_or_default();
    assert_eq!(last["release"]["revision"], release.revision.as_str(), "the last deploy is this one: {details:#}");
    assert!(details["lock"].is_null(), "no lock after the deploy: {details:#}");
    let db = &details["accessories"][0];
    assert_eq!((db["role"].as_str(), db["state"].as_str()), (Some("db"), Some("running")), "{details:#}");
    the_traffic_is_measured(target, &details).await;
    details
}

/// Under a steady stream of requests, `details` reports a request rate
/// above zero, no errors, from every instance it reached in both rounds.
async fn the_traffic_is_measured(target: &str, details: &Value) {
    let url = details["url"].as_str().expect("details names the url").trim_end_matches('/').to_owned();
    let (under_load, load) = common::load::during("harness details", &url, self::details(target)).await;
    let traffic = &under_load["traffic"];
    assert_eq!(load.failed, 0, "{load:?}");
    let rate = traffic["requests_per_sec"].as_f64().unwrap_or_else(|| panic!("no rate: {under_load:#}"));
    assert!(rate > 1.0, "requests/s under load: {traffic:#}");
    assert_eq!(traffic["errors_per_sec"].as_f64(), Some(0.0), "{traffic:#}");
    assert!(traffic["instances"].as_u64().is_some_and(|n| n >= 1), "{traffic:#}");
    assert!(traffic["window_secs"].as_f64().is_some_and(|s| s >= 1.5), "{traffic:#}");
}

/// The app's containers or tasks that run this run's release.
fn running_release<'a>(details: &'a Value, release: &Release) -> Vec<&'a Value> {
    let digest = release.image.split_once('@').map(|(_, d)| d).unwrap_or_default();
    let app = details["app"].as_array().expect("app units");
    app.iter()
        .filter(|u| u["state"] == "running" && u["revision"] == release.revision.as_str() && u["digest"] == digest)
        .collect()
}

/// `logs --grep`, `--lines`, `--since`, `--json` and `--accessory db`:
/// every line marked with one of `allowed`, the request's line found;
/// `sources`: how many containers or tasks the logs come from.
async fn the_logs_show_the_request(target: &str, url: &str, allowed: &BTreeSet<String>, sources: usize) {
    let id = book_id(if target == "engine" { 1 } else { 2 });
    let line = store_book(url, id).await;
    let found = read(target, &["logs", "--grep", &line]).await;
    let found_marks = marks(&found.stdout);
    assert_eq!(found_marks.len(), 1, "the request's one line, marked:\n{}", found.stdout);
    assert!(allowed.contains(&found_marks[0]), "marked {} (expected one of {allowed:?})", found_marks[0]);

    let json = read(target, &["--json", "logs", "--grep", &line]).await;
    let lines: Vec<Value> = json.stdout.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
    assert_eq!(lines.len(), 1, "{}", json.stdout);
    assert_eq!(lines[0]["source"], found_marks[0].as_str());
    assert!(lines[0]["line"].as_str().unwrap().contains(&line) && lines[0]["time"].is_string(), "{}", json.stdout);

    let tail = read(target, &["logs", "--lines", "2"]).await;
    let tail_marks = marks(&tail.stdout);
    assert!(!tail_marks.is_empty() && tail_marks.len() <= 2 * sources, "{}", tail.stdout);
    assert!(tail_marks.iter().all(|m| allowed.contains(m)), "{tail_marks:?} vs {allowed:?}");

    let recent = read(target, &["logs", "--since", "5m", "--grep", &format!("\"id\":\"{id}\"")]).await;
    assert_eq!(marks(&recent.stdout).len(), 1, "--since 5m holds the request:\n{}", recent.stdout);
    let later = time::OffsetDateTime::now_utc() + Duration::from_secs(2);
    let later = later.format(&time::format_description::well_known::Rfc3339).unwrap();
    let none = read(target, &["logs", "--since", &later, "--grep", &line]).await;
    assert!(none.stdout.is_empty(), "nothing after {later}:\n{}", none.stdout);

    let db = read(target, &["logs", "--accessory", "db", "--lines", "5"]).await;
    let db_marks = marks(&db.stdout);
    assert!(!db_marks.is_empty() && db_marks.len() <= 5 && db_marks.iter().all(|m| m == "db"), "{}", db.stdout);
    remove_book(url, id).await;
}

/// `logs --follow`: the line of a request made while it follows comes,
/// then Ctrl-C ends it with 130 within [`STOP_DEADLINE`].
fn follow_then_ctrl_c(target: &str, url: &str, allowed: &BTreeSet<String>) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_harness"));
    common::without_cargo_env(&mut command)
        .arg("--repo")
        .arg(repo_root())
        .args(["--target", target, "logs", "--follow", "--lines", "1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("the harness starts");
    let pid = child.id().to_string();
    let (lines, received) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let kill = |child: &mut std::process::Child| {
        let _ = child.kill();
        let _ = child.wait();
    };
    // The tail's line says it follows; then a request while it does.
    let first = received.recv_timeout(READ_DEADLINE);
    if first.is_err() {
        kill(&mut child);
        panic!("logs --follow on {target} printed nothing within {READ_DEADLINE:?}");
    }
    let id = book_id(if target == "engine" { 3 } else { 4 });
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let wanted = runtime.block_on(store_book(url, id));
    let until = Instant::now() + READ_DEADLINE;
    let mut seen = None;
    while seen.is_none() && Instant::now() < until {
        match received.recv_timeout(until.saturating_duration_since(Instant::now())) {
            Ok(line) if line.contains(&wanted) => seen = Some(line),
            Ok(_) => {}
            Err(_) => break,
        }
    }
    runtime.block_on(remove_book(url, id));
    let Some(seen) = seen else {
        kill(&mut child);
        panic!("logs --follow on {target} did not show the request made while it followed");
    };
    assert!(allowed.contains(&marks(&seen)[0]), "{seen} (expected a mark of {allowed:?})");

    let signalled = Instant::now();
    assert!(Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if signalled.elapsed() > STOP_DEADLINE {
            kill(&mut child);
            panic!("logs --follow on {target} still ran {STOP_DEADLINE:?} after Ctrl-C");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(130), "Ctrl-C ends it as a shell expects:\n{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn on_a_single_host_details_names_the_live_colour_and_logs_show_a_request_marked_with_it() {
    let _prod = common::prod_lock().await;
    let release = release().await;
    let details = deployed("engine", &release).await;

    let colour = details["live"]["colour"].as_str().expect("a live colour").to_owned();
    let running = running_release(&details, &release);
    assert_eq!(running.len(), 1, "one colour runs the release: {details:#}");
    assert_eq!(running[0]["colour"], colour.as_str(), "{details:#}");
    assert_eq!(running[0]["name"], format!("books-ms-{colour}"), "{details:#}");
    assert_eq!(details["proxy"]["serves"], colour.as_str(), "{details:#}");
    let servers: BTreeSet<&str> =
        details["proxy"]["servers"].as_array().unwrap().iter().filter_map(|s| s["name"].as_str()).collect();
    assert_eq!(servers, BTreeSet::from(["blue", "green"]), "HAProxy's servers: {details:#}");
    let text = read("engine", &["details"]).await.stdout;
    assert!(text.contains(&format!("{colour} live at")) && text.contains(&release.revision), "{text}");

    // Only the live colour runs after a deploy: every line is marked with it.
    let url = details["url"].as_str().unwrap().to_owned();
    let allowed = BTreeSet::from([colour]);
    the_logs_show_the_request("engine", &url, &allowed, 1).await;
    tokio::task::spawn_blocking(move || follow_then_ctrl_c("engine", &url, &allowed)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn on_the_swarm_details_names_each_task_with_its_node_and_logs_mark_lines_with_nodes() {
    let _prod = common::prod_lock().await;
    let release = release().await;
    let details = deployed("swarm", &release).await;

    assert!(details["live"]["colour"].is_null(), "{details:#}");
    let running = running_release(&details, &release);
    assert!(running.len() >= 2, "the app's tasks run the release: {details:#}");
    let nodes: BTreeSet<String> = running
        .iter()
        .map(|u| u["node"].as_str().filter(|n| !n.is_empty()).expect("each task names its node").to_owned())
        .collect();
    let proxies = details["proxy"]["units"].as_array().unwrap();
    assert!(proxies.len() >= 2, "a proxy task on every node: {details:#}");
    assert!(proxies.iter().all(|p| p["node"].is_string() && p["state"] == "running"), "{details:#}");
    let text = read("swarm", &["details"]).await.stdout;
    assert!(nodes.iter().all(|n| text.contains(n.as_str())) && text.contains(&release.revision), "{text}");

    let url = details["url"].as_str().unwrap().to_owned();
    the_logs_show_the_request("swarm", &url, &nodes, running.len()).await;
    tokio::task::spawn_blocking(move || follow_then_ctrl_c("swarm", &url, &nodes)).await.unwrap();
}

#[test]
fn completions_and_the_man_page_are_printed_anywhere() {
    let outside = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_harness"));
        command.current_dir(outside.path()).args(args);
        common::run::run_bounded(&mut command, Duration::from_secs(30))
    };
    let bash = run(&["completions", "bash"]);
    assert!(bash.success(), "{}", bash.stderr);
    assert!(bash.stdout.contains("complete -F") && bash.stdout.contains("deploy"), "{}", bash.stdout);
    let zsh = run(&["completions", "zsh"]);
    assert!(zsh.success() && zsh.stdout.starts_with("#compdef harness"), "{}", zsh.stdout);
    let man = run(&["man"]);
    assert!(man.success(), "{}", man.stderr);
    assert!(man.stdout.contains(".TH harness 1") && man.stdout.contains(".SH NAME"), "a roff page:\n{}", man.stdout);
    assert!(man.stdout.contains("details") && man.stdout.contains("logs"), "{}", man.stdout);
}
