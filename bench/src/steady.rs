//! A steady, bounded stream of requests to one URL while something else
//! happens (a deploy, in `scripts/bench-deploy.sh`): how many requests
//! failed, the longest time without a successful answer, and which
//! revisions `/version` reported.
//!
//! Each connection is a client of its own that keeps its connection alive,
//! as a browser or an API client does, and sends one request at a time
//! with a pause between them. A request that fails is counted, never
//! retried. The stream ends on SIGTERM or SIGINT, after `max_duration`, or
//! after `max_requests`, whichever comes first; a request in flight then
//! finishes (each is bounded by [`REQUEST_TIMEOUT`]) and is counted.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use serde::Serialize;
use tokio::signal::unix::{signal, SignalKind};
use tokio::task::JoinSet;

/// Connecting to a host that answers at all takes milliseconds here: two
/// seconds means nobody listens (or the packets go nowhere).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// One request never waits longer than this: a server that stops answering
/// turns into failures, not a hung stream.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the stream waits for the requests in flight once it is told to
/// stop (above REQUEST_TIMEOUT, so they all end by themselves).
const STOP_GRACE: Duration = Duration::from_secs(10);
/// The first failures are kept, to say what went wrong; the count says how often.
const KEPT_FAILURES: usize = 5;
/// Revisions are kept as runs (A, B; or A, B, A, B while two routes
/// overlap); at most this many.
const KEPT_RUNS: usize = 20;

pub struct Plan {
    pub url: String,
    pub connections: usize,
    pub pause: Duration,
    pub max_duration: Duration,
    pub max_requests: u64,
}

/// What the stream saw: the one line of JSON it prints.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub requests: u64,
    pub failed: u64,
    /// The longest time between two successful answers (any connection).
    pub longest_gap_ms: f64,
    /// The longest a single request took, answered or failed.
    pub slowest_request_ms: f64,
    /// The `revision` of the first and the last successful answer.
    pub first_revision: Option<String>,
    pub last_revision: Option<String>,
    /// Every run of equal revisions once, in order (capped).
    pub revisions: Vec<String>,
    /// When each of those runs began: its first answer, in seconds since
    /// the Unix epoch (to set beside the clock of whoever ran the deploy).
    pub revisions_since: Vec<f64>,
    /// The first few failures, each with its time since the start.
    pub failures: Vec<String>,
    /// How long the stream ran, and what ended it.
    pub seconds: f64,
    pub stopped_by: &'static str,
}

#[derive(Default)]
struct State {
    report: Report,
    last_success: Option<Instant>,
}

/// Runs the stream until a signal, the duration or the request cap.
pub async fn run(plan: Plan) -> anyhow::Result<Report> {
    // Registered before the first request: a SIGTERM from the script can
    // only arrive once the stream runs, and must never kill it unreported.
    let mut sigterm = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut sigint = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;

    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let state = Arc::new(Mutex::new(State::default()));
    let mut tasks = JoinSet::new();
    for _ in 0..plan.connections {
        let client = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .context("cannot build an HTTP client")?;
        let (stop, sent, state, url) = (Arc::clone(&stop), Arc::clone(&sent), Arc::clone(&state), plan.url.clone());
        let (pause, max_requests) = (plan.pause, plan.max_requests);
        tasks.spawn(async move {
            while !stop.load(Ordering::Relaxed) && sent.fetch_add(1, Ordering::Relaxed) < max_requests {
                let sent_at = Instant::now();
                let answer = request(&client, &url).await;
                record(&state, started, sent_at, answer);
                tokio::time::sleep(pause).await;
            }
        });
    }

    let stopped_by = tokio::select! {
        _ = sigterm.recv() => "SIGTERM",
        _ = sigint.recv() => "SIGINT",
        _ = tokio::time::sleep(plan.max_duration) => "max-seconds",
        _ = async { while tasks.join_next().await.is_some() {} } => "max-requests",
    };
    stop.store(true, Ordering::Relaxed);
    if tokio::time::timeout(STOP_GRACE, async { while tasks.join_next().await.is_some() {} }).await.is_err() {
        tasks.abort_all();
    }

    let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
    let mut report = std::mem::take(&mut state.report);
    report.seconds = round_ms(started.elapsed().as_secs_f64());
    report.stopped_by = stopped_by;
    Ok(report)
}

/// One GET: the revision of a 200 with a JSON body (empty when the body has
/// none), or what went wrong.
async fn request(client: &reqwest::Client, url: &str) -> Result<Option<String>, String> {
    let response = client.get(url).send().await.map_err(|e| error_chain(&e))?;
    let status = response.status();
    let body = response.bytes().await.map_err(|e| format!("reading the body: {}", error_chain(&e)))?;
    if status != reqwest::StatusCode::OK {
        return Err(format!("HTTP {status}: {}", String::from_utf8_lossy(&body[..body.len().min(200)])));
    }
    let revision = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|json| json.get("revision").and_then(|r| r.as_str()).map(str::to_owned));
    Ok(revision)
}

fn record(state: &Mutex<State>, started: Instant, sent_at: Instant, answer: Result<Option<String>, String>) {
    let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
    let now = Instant::now();
    state.report.requests += 1;
    let took_ms = round_ms((now - sent_at).as_secs_f64() * 1000.0);
    state.report.slowest_request_ms = state.report.slowest_request_ms.max(took_ms);
    match answer {
        Ok(revision) => {
            if let Some(last) = state.last_success {
                let gap_ms = round_ms((now - last).as_secs_f64() * 1000.0);
                state.report.longest_gap_ms = state.report.longest_gap_ms.max(gap_ms);
            }
            state.last_success = Some(now);
            if let Some(revision) = revision {
                let report = &mut state.report;
                report.first_revision.get_or_insert_with(|| revision.clone());
                if report.revisions.last() != Some(&revision) && report.revisions.len() < KEPT_RUNS {
                    report.revisions.push(revision.clone());
                    report.revisions_since.push(epoch_secs());
                }
                report.last_revision = Some(revision);
            }
        }
        Err(e) => {
            state.report.failed += 1;
            if state.report.failures.len() < KEPT_FAILURES {
                let at = now.duration_since(started).as_secs_f64();
                state.report.failures.push(format!("at {at:.3} s: {e}"));
            }
        }
    }
}

/// reqwest's error and its sources: "error sending request" alone does not
/// say that the connection was refused or reset.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn epoch_secs() -> f64 {
    let since = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    round_ms(since.as_secs_f64())
}

fn round_ms(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_runs_and_failures_are_recorded() {
        let state = Mutex::new(State::default());
        let started = Instant::now();
        record(&state, started, Instant::now(), Ok(Some("a".to_owned())));
        record(&state, started, Instant::now(), Err("connection refused".to_owned()));
        let sent_at = Instant::now();
        std::thread::sleep(Duration::from_millis(20));
        record(&state, started, sent_at, Ok(Some("b".to_owned())));
        record(&state, started, Instant::now(), Ok(Some("b".to_owned())));
        record(&state, started, Instant::now(), Ok(Some("a".to_owned())));
        let report = std::mem::take(&mut state.lock().unwrap().report);
        assert_eq!((report.requests, report.failed), (5, 1));
        assert!(report.longest_gap_ms >= 20.0, "{}", report.longest_gap_ms);
        assert!(report.slowest_request_ms >= 20.0, "{}", report.slowest_request_ms);
        assert_eq!(report.first_revision.as_deref(), Some("a"));
        assert_eq!(report.last_revision.as_deref(), Some("a"));
        assert_eq!(report.revisions, ["a", "b", "a"]);
        assert_eq!(report.revisions_since.len(), 3);
        assert!(report.revisions_since.windows(2).all(|w| w[0] <= w[1]), "{:?}", report.revisions_since);
        assert!(report.failures[0].ends_with(": connection refused"), "{:?}", report.failures);
    }

    #[tokio::test]
    async fn the_request_cap_ends_the_stream() {
        // Nothing listens on port 9 of loopback: every request fails fast.
        let plan = Plan {
            url: "http://127.0.0.1:9/version".to_owned(),
            connections: 2,
            pause: Duration::from_millis(1),
            max_duration: Duration::from_secs(30),
            max_requests: 6,
        };
        let report = run(plan).await.unwrap();
        assert_eq!(report.stopped_by, "max-requests");
        assert_eq!((report.requests, report.failed), (6, 6));
        assert_eq!(report.first_revision, None);
    }
}
