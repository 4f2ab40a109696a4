//! The database killed (SIGKILL, like a crash or the OOM killer) under load
//! and in the middle of a list: what clients get, what the log says, and
//! that every acknowledged write is still there afterwards.

use std::collections::HashMap;
use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use mongodb::bson::{doc, Document};
use serde_json::Value;

use crate::helpers::{
    book, db_uri, free_port, repo_root, spawn_app_with, start_db_container, wait_for_db, wait_listening, AppOptions,
};

/// The service's database timeout in these tests (`DB_TIMEOUT_MS`). Short,
/// so that the test is (it is in the pre-deploy gate): every wait below is
/// scaled from it, and what is asserted does not depend on its length.
const DB_TIMEOUT: Duration = Duration::from_millis(400);
/// The longest any answer may take while the database is down or dying: the
/// repository's deadline for one operation (3 × DB_TIMEOUT), plus slack for
/// two busy cores.
const LONGEST_ANSWER: Duration = Duration::from_millis(3 * 400 + 2000);
/// The load before each kill (and after the last recovery): a hundred or
/// more writes at the workers' pace.
const LOAD_BEFORE_KILL: Duration = Duration::from_millis(500);
/// How long the database stays dead: twice DB_TIMEOUT, so that writes sent
/// at its start see the outage (a 503) before it ends.
const OUTAGE: Duration = Duration::from_millis(2 * 400);
/// `DB_TIMEOUT_MS` of [`start_binary_logging`]: the first batch of a list
/// of 30,000 large documents took over 1 s with the machine's load at 12,
/// and the list test waits on the kill, not on this deadline.
const LOGGING_DB_TIMEOUT: Duration = Duration::from_millis(2000);

fn docker() -> bollard::Docker {
    bollard::Docker::connect_with_local_defaults().expect("the local Docker engine")
}

async fn kill(docker: &bollard::Docker, id: &str) {
    let options = bollard::query_parameters::KillContainerOptionsBuilder::default().signal("SIGKILL").build();
    docker.kill_container(id, Some(options)).await.expect("SIGKILL the database container");
}

/// One PUT as a client saw it.
struct Answer {
    id: i32,
    title: String,
    status: u16,
    code: Option<String>,
    retry_after: bool,
    sent: Instant,
    took: Duration,
}

#[tokio::test]
async fn every_acknowledged_put_survives_the_database_killed_three_times_under_load() {
    // Arrange: a database of this test's own on a fixed port (a restart keeps
    // it), and the service in front of it.
    let container = start_db_container(Some(free_port())).await;
    let uri = db_uri(&container).await;
    wait_for_db(&uri).await;
    let app = Arc::new(
        spawn_app_with(AppOptions {
            db_uri: Some(uri.clone()),
            extra_env: vec![("DB_TIMEOUT_MS", DB_TIMEOUT.as_millis().to_string())],
            ..Default::default()
        })
        .await,
    );
    let docker = docker();
    let ping = mongodb::Client::with_uri_str(format!("{uri}/?serverSelectionTimeoutMS=500")).await.unwrap();

    // Act: four connections PUT new books (bounded: 6,000 each or until
    // stopped; 5 ms apart, so that a fast database does not use them up
    // before the kills) while the database is killed and started again
    // three times.
    const WORKERS: i32 = 4;
    const ROUNDS: usize = 3;
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| {
            let (app, stop) = (app.clone(), stop.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::builder().timeout(Duration::from_secs(15)).build().unwrap();
                let mut answers = Vec::new();
                for i in 0..6000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let (id, title) = (w * 100_000 + i, format!("w{w}-{i}"));
                    let sent = Instant::now();
                    let response = client
                        .put(app.url("/api/v1/books"))
                        .json(&book(id, &title, "Load", ""))
                        .send()
                        .await
                        .unwrap_or_else(|e| panic!("PUT {id}: no answer: {e}"));
                    let status = response.status().as_u16();
                    let retry_after = response.headers().contains_key("retry-after");
                    let body: Value = response.json().await.unwrap_or(Value::Null);
                    let code = body["error"].as_str().map(str::to_owned);
                    answers.push(Answer { id, title, status, code, retry_after, sent, took: sent.elapsed() });
                    // A client backs off a little after a failure.
                    let pause = if status == 200 { 5 } else { 20 };
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                }
                answers
            })
        })
        .collect();

    let mut windows = Vec::new(); // (killed, answering again)
    let mut recoveries = Vec::new();
    for round in 0..ROUNDS {
        tokio::time::sleep(LOAD_BEFORE_KILL).await;
        let killed = Instant::now();
        kill(&docker, container.id()).await;
        tokio::time::sleep(OUTAGE).await;
        docker.start_container(container.id(), None).await.expect("start the database again");
        let deadline = Instant::now() + Duration::from_secs(30);
        while ping.database("admin").run_command(doc! { "ping": 1 }).await.is_err() {
            assert!(Instant::now() < deadline, "round {round}: the database did not answer 30 s after its start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let answering = Instant::now();
        // The service serves again within 5 s of the database answering.
        loop {
            let response = app.http.get(app.url("/api/v1/books/_id/0")).send().await.unwrap();
            if matches!(response.status().as_u16(), 200 | 404) {
                break;
            }
            assert!(answering.elapsed() < Duration::from_secs(5), "round {round}: not serving 5 s after the database");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        recoveries.push(answering.elapsed());
        windows.push((killed, answering));
    }
    tokio::time::sleep(LOAD_BEFORE_KILL).await;
    stop.store(true, Ordering::Relaxed);
    let mut answers = Vec::new();
    for worker in workers {
        answers.extend(worker.await.expect("no panic in a worker"));
    }

    // Assert: only 200 and 503, each 503 with Retry-After and one of the two
    // codes, every answer within the deadline.
    for a in &answers {
        assert!(matches!(a.status, 200 | 503), "PUT {} answered {} {:?}", a.id, a.status, a.code);
        if a.status == 503 {
            assert!(a.retry_after, "PUT {}: 503 without Retry-After", a.id);
            let code = a.code.as_deref().unwrap_or_default();
            assert!(matches!(code, "database_unavailable" | "write_outcome_unknown"), "PUT {}: 503 {code}", a.id);
        }
        assert!(a.took <= LONGEST_ANSWER, "PUT {} took {:?} ({})", a.id, a.took, a.status);
    }
    // The faults were real: each kill turned some PUTs into 503s, and every
    // PUT sent once the service served again (after the window) succeeded.
    for (round, (killed, answering)) in windows.iter().enumerate() {
        let in_window = answers.iter().filter(|a| a.sent >= *killed && a.sent < *answering);
        assert!(in_window.clone().any(|a| a.status == 503), "round {round}: no 503 while the database was down");
    }
    // Every acknowledged PUT is there, with what it wrote, read back through the service.
    let listed: Vec<Value> = app.get("/api/v1/books").await.json().await.expect("the whole list");
    let stored: HashMap<i64, String> =
        listed.iter().map(|b| (b["_id"].as_i64().unwrap(), b["title"].as_str().unwrap().to_owned())).collect();
    let acknowledged: Vec<&Answer> = answers.iter().filter(|a| a.status == 200).collect();
    let lost: Vec<i32> =
        acknowledged.iter().filter(|a| stored.get(&i64::from(a.id)) != Some(&a.title)).map(|a| a.id).collect();
    assert!(lost.is_empty(), "acknowledged and lost: {lost:?}");
    assert!(acknowledged.len() > 100, "too few writes to mean anything: {}", acknowledged.len());
    eprintln!(
        "sent {}, acknowledged {}, 503 {}, recoveries {recoveries:?}, slowest {:?}",
        answers.len(),
        acknowledged.len(),
        answers.iter().filter(|a| a.status == 503).count(),
        answers.iter().map(|a| a.took).max()
    );
}

/// The binary with its JSON log lines going to `log`, against `uri`/`db`.
pub fn start_binary_logging(port: u16, uri: &str, db: &str, log: std::fs::File) -> std::process::Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_books-ms"))
        .env_clear()
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("MONGODB_URI", uri)
        .env("DB_DBNAME", db)
        .env("DB_TIMEOUT_MS", LOGGING_DB_TIMEOUT.as_millis().to_string())
        .env("STATIC_DIR", repo_root().join("client"))
        .stdout(log)
        .stderr(Stdio::null())
        .spawn()
        .expect("start books-ms");
    wait_listening(&mut child, port);
    child
}

#[tokio::test]
async fn a_list_cut_short_by_the_database_dying_is_a_broken_transfer_and_an_error_in_the_log() {
    // Arrange: about 18 MB of summaries, far more than the sockets between
    // the service and a client that does not read can hold, so the service
    // is still streaming from the cursor when the database dies.
    let container = start_db_container(None).await;
    let uri = db_uri(&container).await;
    wait_for_db(&uri).await;
    let db = format!("test_{}", uuid::Uuid::new_v4().simple());
    let collection = mongodb::Client::with_uri_str(&uri).await.unwrap().database(&db).collection::<Document>("books");
    let title = "t".repeat(600);
    for chunk in 0..30 {
        let books: Vec<Document> =
            (0..1000).map(|i| doc! { "_id": chunk * 1000 + i, "title": &title, "author": "A" }).collect();
        collection.insert_many(books).await.expect("books inserted");
    }
    let log_file = tempfile::NamedTempFile::new().unwrap();
    let port = free_port();
    let service = start_binary_logging(port, &uri, &db, log_file.reopen().unwrap());

    // Act: a slow reader starts the list; the database is killed while the
    // service waits for it to read; then it reads what is left.
    let client = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
    let response = client.get(format!("http://127.0.0.1:{port}/api/v1/books")).send().await.expect("the headers");
    assert_eq!(response.status(), 200);
    let request_id = response.headers()["x-request-id"].to_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(500)).await;
    kill(&docker(), container.id()).await;
    let started = Instant::now();
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    let mut error = None;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(bytes) => body.extend_from_slice(&bytes),
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }
    let took = started.elapsed();
    // Give the log line time to be written, then stop the service.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop_binary(service).await;

    // Assert: the transfer broke (not a timeout) before the closing bracket,
    // and what arrived is not a JSON array a client could take as complete.
    let error = error.unwrap_or_else(|| panic!("the body ended cleanly after {} bytes", body.len()));
    assert!(!error.is_timeout(), "the service hung instead of cutting the response: {error}");
    assert!(took < LOGGING_DB_TIMEOUT * 3 + Duration::from_secs(7), "the cut took {took:?}");
    assert!(body.starts_with(b"[") && !body.ends_with(b"]"), "{} bytes ending {:?}", body.len(), body.last());
    assert!(serde_json::from_slice::<Value>(&body).is_err());
    assert!(body.len() < 30_000 * 600, "the whole list arrived ({} bytes)", body.len());
    // The log holds an error line for this request, not only its 200.
    let lines = log_lines(&log_file);
    let failure = lines.iter().find(|l| l["level"] == "ERROR" && l["message"] == "listing failed mid-stream");
    let failure = failure.unwrap_or_else(|| panic!("no error line in the log: {lines:#?}"));
    assert_eq!(failure["span"]["request_id"], request_id.as_str(), "{failure}");
    assert_eq!(failure["span"]["otel.status_code"], "ERROR", "the request's span still says OK: {failure}");
}

/// The JSON lines of a log file.
pub fn log_lines(log: &tempfile::NamedTempFile) -> Vec<Value> {
    std::io::BufReader::new(log.reopen().unwrap())
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| serde_json::from_str(&l).ok())
        .collect()
}

/// Stops a binary started by [`start_binary_logging`] (SIGTERM, bounded wait).
pub async fn stop_binary(mut service: std::process::Child) {
    // SAFETY: kill(2) on the pid of a child this test started and has not reaped.
    unsafe { libc::kill(service.id() as i32, libc::SIGTERM) };
    let waited = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = service.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = service.kill();
        let _ = service.wait();
        false
    });
    assert!(waited.await.unwrap(), "books-ms did not stop within 15 s of SIGTERM");
}
