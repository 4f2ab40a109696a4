//! The database killed under write load (`scripts/reliability-db.sh`):
//! a bounded stream of PUTs of new books over several connections while the
//! database container is SIGKILLed and started again, several times; then
//! every acknowledged PUT is read back through the service's list.
//!
//! The figures: requests sent, writes acknowledged, writes lost (acknowledged
//! and not there afterwards: the goal is 0), 500s, other failures, the
//! longest 503 window and the time to recover after the database answers.
//! The container is killed with the docker CLI (`docker kill --signal KILL`):
//! the script owns it and names it.

use std::collections::HashMap;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use mongodb::bson::doc;
use serde::Serialize;
use serde_json::{json, Value};

/// One request never waits longer than this: a service that hangs shows up
/// as failures, not as a stuck run.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// How long the database may take to answer a ping after its start.
const DB_START_DEADLINE: Duration = Duration::from_secs(30);
/// How long the service may take to serve again after that (the goal
/// is 5 s; past this the run gives up on that round).
const RECOVERY_DEADLINE: Duration = Duration::from_secs(30);
/// Each connection's pause after a 200, and after anything else.
const PAUSE: Duration = Duration::from_millis(5);
const BACK_OFF: Duration = Duration::from_millis(20);
/// One docker command (kill, start) never takes longer than this.
const DOCKER_DEADLINE: Duration = Duration::from_secs(60);

pub struct Plan {
    /// The service, e.g. http://127.0.0.1:8080
    pub url: String,
    /// The database, for pings (`mongodb://127.0.0.1:PORT`).
    pub db_uri: String,
    /// The database container, killed and started again.
    pub container: String,
    pub connections: usize,
    pub kills: usize,
    /// Load before each kill.
    pub up: Duration,
    /// How long the database stays down.
    pub down: Duration,
    /// All connections together.
    pub max_requests: u64,
    /// When set: the service's database name, and the list-cut phase runs
    /// (this many large books written with the driver, a slow list, the
    /// database killed under it).
    pub list_cut: Option<(String, u32)>,
}

/// The list cut short: what a client reading the whole list got.
#[derive(Debug, Serialize)]
pub struct ListCut {
    pub books: u32,
    pub bytes_received: usize,
    /// The body ended in a transfer error (not a clean end, not a timeout).
    pub transfer_broken: bool,
    /// What arrived parses as JSON (the goal: false).
    pub complete_json: bool,
    /// From the kill to the end of the transfer.
    pub cut_after_ms: f64,
}

/// One PUT as a client saw it.
struct Answer {
    id: i32,
    title: String,
    /// 0 when no answer came (connection error, timeout).
    status: u16,
    code: Option<String>,
    sent: Instant,
    answered: Instant,
}

/// What the run measured: the JSON it prints.
#[derive(Debug, Serialize)]
pub struct Report {
    pub requests_sent: usize,
    pub writes_acknowledged: usize,
    pub writes_lost: usize,
    pub answers_500: usize,
    pub answers_503_database_unavailable: usize,
    pub answers_503_write_outcome_unknown: usize,
    /// No answer, or a status other than 200 and 503.
    pub other_failures: usize,
    /// The longest time from a 503 answer to the next 200 answer (any connection).
    pub longest_503_window_ms: f64,
    /// Per kill: from the SIGKILL to the database answering a ping again
    /// (down for `--down-s`, then its start).
    pub database_down_ms: Vec<f64>,
    /// Per kill: from the database answering a ping to the first 200 to a PUT sent after it.
    pub recovery_ms: Vec<f64>,
    pub slowest_answer_ms: f64,
    /// The slowest 503 of each code: `database_unavailable` should come in
    /// about `DB_TIMEOUT_MS`, `write_outcome_unknown` within 3 × that.
    pub slowest_503_database_unavailable_ms: f64,
    pub slowest_503_write_outcome_unknown_ms: f64,
    pub kills: usize,
    pub connections: usize,
    pub list_cut: Option<ListCut>,
}

fn docker(args: &[&str]) -> anyhow::Result<()> {
    let mut child = Command::new("docker")
        .args(args)
        .stdout(std::process::Stdio::null())
        .spawn()
        .with_context(|| format!("cannot run `docker {}`", args.join(" ")))?;
    let deadline = Instant::now() + DOCKER_DEADLINE;
    loop {
        if let Some(status) = child.try_wait()? {
            if !status.success() {
                bail!("`docker {}` failed: {status}", args.join(" "));
            }
            return Ok(());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("`docker {}` did not finish within {DOCKER_DEADLINE:?}", args.join(" "));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

async fn docker_async(args: &'static [&'static str], container: String) -> anyhow::Result<()> {
    tokio::task::spawn_blocking(move || {
        let mut all: Vec<&str> = args.to_vec();
        all.push(&container);
        docker(&all)
    })
    .await?
}

pub async fn run(plan: Plan) -> anyhow::Result<Report> {
    let db = mongodb::Client::with_uri_str(format!("{}/?serverSelectionTimeoutMS=500", plan.db_uri))
        .await
        .with_context(|| format!("the database URI {}", plan.db_uri))?;
    let stop = Arc::new(AtomicBool::new(false));
    let per_connection = plan.max_requests / plan.connections as u64;
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..plan.connections {
        let (url, stop) = (format!("{}/api/v1/books", plan.url), stop.clone());
        workers.spawn(async move {
            let client = reqwest::Client::builder().timeout(REQUEST_TIMEOUT).build().expect("an HTTP client");
            let mut answers = Vec::new();
            for i in 0..per_connection {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let id = (w as i32) * 1_000_000 + i as i32;
                let title = format!("c{w}-{i}");
                let sent = Instant::now();
                let body = json!({ "_id": id, "title": title, "author": "reliability-db" });
                let (status, code) = match client.put(&url).json(&body).send().await {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        let body: Value = response.json().await.unwrap_or(Value::Null);
                        (status, body["error"].as_str().map(str::to_owned))
                    }
                    Err(_) => (0, None),
                };
                answers.push(Answer { id, title, status, code, sent, answered: Instant::now() });
                // As a client would: back off a little after a failure. The
                // pause after a success keeps a fast database from using up
                // --max-requests before the kills.
                let pause = if status == 200 { PAUSE } else { BACK_OFF };
                tokio::time::sleep(pause).await;
            }
            answers
        });
    }

    let (mut answering_at, mut database_down) = (Vec::new(), Vec::new());
    for kill in 0..plan.kills {
        tokio::time::sleep(plan.up).await;
        eprintln!("==> kill {}/{}: SIGKILL {}", kill + 1, plan.kills, plan.container);
        let killed = Instant::now();
        docker_async(&["kill", "--signal", "KILL"], plan.container.clone()).await?;
        tokio::time::sleep(plan.down).await;
        docker_async(&["start"], plan.container.clone()).await?;
        let started = Instant::now();
        while db.database("admin").run_command(doc! { "ping": 1 }).await.is_err() {
            if started.elapsed() > DB_START_DEADLINE {
                stop.store(true, Ordering::Relaxed);
                bail!("the database did not answer a ping {DB_START_DEADLINE:?} after its start");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        answering_at.push(Instant::now());
        database_down.push(killed.elapsed().as_secs_f64() * 1000.0);
    }
    tokio::time::sleep(plan.up).await;
    stop.store(true, Ordering::Relaxed);
    let mut answers = Vec::new();
    while let Some(worker) = workers.join_next().await {
        answers.extend(worker.context("a load connection panicked")?);
    }

    // Read every acknowledged PUT back, through the service.
    let client = reqwest::Client::builder().timeout(Duration::from_secs(120)).build()?;
    let listed: Vec<Value> = client
        .get(format!("{}/api/v1/books", plan.url))
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .context("the list after the run")?
        .json()
        .await
        .context("the list after the run is not complete JSON")?;
    let stored: HashMap<i64, String> =
        listed.iter().filter_map(|b| Some((b["_id"].as_i64()?, b["title"].as_str()?.to_owned()))).collect();
    let acknowledged: Vec<&Answer> = answers.iter().filter(|a| a.status == 200).collect();
    let lost = acknowledged.iter().filter(|a| stored.get(&i64::from(a.id)) != Some(&a.title)).count();

    let list_cut = match &plan.list_cut {
        Some((database, books)) => Some(cut_a_list(&plan, &db, database, *books).await?),
        None => None,
    };

    Ok(Report {
        list_cut,
        requests_sent: answers.len(),
        writes_acknowledged: acknowledged.len(),
        writes_lost: lost,
        answers_500: answers.iter().filter(|a| a.status == 500).count(),
        answers_503_database_unavailable: count_503(&answers, "database_unavailable"),
        answers_503_write_outcome_unknown: count_503(&answers, "write_outcome_unknown"),
        other_failures: answers.iter().filter(|a| !matches!(a.status, 200 | 500 | 503)).count(),
        longest_503_window_ms: longest_503_window(&answers).as_secs_f64() * 1000.0,
        database_down_ms: database_down,
        recovery_ms: answering_at
            .iter()
            .map(|at| {
                answers
                    .iter()
                    .filter(|a| a.status == 200 && a.sent >= *at)
                    .map(|a| a.answered - *at)
                    .min()
                    .unwrap_or(RECOVERY_DEADLINE)
                    .as_secs_f64()
                    * 1000.0
            })
            .collect(),
        slowest_answer_ms: answers.iter().map(|a| a.answered - a.sent).max().unwrap_or_default().as_secs_f64() * 1000.0,
        slowest_503_database_unavailable_ms: slowest_503(&answers, "database_unavailable"),
        slowest_503_write_outcome_unknown_ms: slowest_503(&answers, "write_outcome_unknown"),
        kills: plan.kills,
        connections: plan.connections,
    })
}

fn count_503(answers: &[Answer], code: &str) -> usize {
    answers.iter().filter(|a| a.status == 503 && a.code.as_deref() == Some(code)).count()
}

fn slowest_503(answers: &[Answer], code: &str) -> f64 {
    let slowest = answers.iter().filter(|a| a.status == 503 && a.code.as_deref() == Some(code));
    slowest.map(|a| a.answered - a.sent).max().unwrap_or_default().as_secs_f64() * 1000.0
}

/// The longest time from a 503 answer to the next 200 answer, all
/// connections merged in the order the answers came.
fn longest_503_window(answers: &[Answer]) -> Duration {
    let mut by_time: Vec<&Answer> = answers.iter().collect();
    by_time.sort_by_key(|a| a.answered);
    let (mut open, mut longest) = (None::<Instant>, Duration::ZERO);
    for a in by_time {
        match a.status {
            503 => {
                open.get_or_insert(a.answered);
            }
            200 => {
                if let Some(start) = open.take() {
                    longest = longest.max(a.answered - start);
                }
            }
            _ => {}
        }
    }
    longest
}

/// Writes `books` books with 600-character titles (far more than the sockets
/// between the service and a client that does not read can hold), starts a
/// list and reads nothing for a while, kills the database, then reads what
/// is left; starts the database again.
async fn cut_a_list(plan: &Plan, db: &mongodb::Client, database: &str, books: u32) -> anyhow::Result<ListCut> {
    let collection = db.database(database).collection::<mongodb::bson::Document>("books");
    let title = "t".repeat(600);
    let first = 2_000_000_000 - books as i32;
    for chunk in (0..books).collect::<Vec<_>>().chunks(1000) {
        let docs = chunk.iter().map(|i| doc! { "_id": first + *i as i32, "title": &title, "author": "list-cut" });
        collection.insert_many(docs).await.context("writing the books of the list cut")?;
    }
    eprintln!("==> list cut: {books} books written; a slow list, then SIGKILL {}", plan.container);
    let client = reqwest::Client::builder().timeout(Duration::from_secs(120)).build()?;
    let mut response = client.get(format!("{}/api/v1/books", plan.url)).send().await.context("the list's headers")?;
    anyhow::ensure!(response.status() == 200, "the list answered {}", response.status());
    tokio::time::sleep(Duration::from_millis(500)).await;
    docker_async(&["kill", "--signal", "KILL"], plan.container.clone()).await?;
    let killed = Instant::now();
    let (mut received, mut broken) = (Vec::new(), false);
    loop {
        match response.chunk().await {
            Ok(Some(bytes)) => received.extend_from_slice(&bytes),
            Ok(None) => break,
            Err(e) => {
                broken = !e.is_timeout();
                break;
            }
        }
    }
    let cut_after = killed.elapsed();
    docker_async(&["start"], plan.container.clone()).await?;
    Ok(ListCut {
        books,
        bytes_received: received.len(),
        transfer_broken: broken,
        complete_json: serde_json::from_slice::<Value>(&received).is_ok(),
        cut_after_ms: cut_after.as_secs_f64() * 1000.0,
    })
}
