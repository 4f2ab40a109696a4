//! A steady, bounded stream of requests to one URL while something else
//! happens (a deploy): how many failed, the longest time without a
//! successful answer, and what the answers said, in order.
//!
//! Each connection is a client that keeps its connections alive, as a
//! browser or an API client does; a request that fails is counted, never
//! retried by the load itself. Bounded in time and in requests.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the stream saw.
#[derive(Debug, Default)]
pub struct Load {
    pub requests: u64,
    pub failed: u64,
    /// The first few failures, for the assertion's message.
    pub failures: Vec<String>,
    /// The longest time between two successful answers (any connection).
    pub longest_gap: Duration,
    /// The revisions `/version` reported, in order, each run of equal ones
    /// once (A, B; or A, B, A, B while two routes overlap).
    pub revisions: Vec<String>,
}

/// "N requests, F failed, longest gap G, revisions [...]"; a long list of
/// revisions (two releases alternating while tasks roll over) as its
/// length, first and last.
impl fmt::Display for Load {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} requests, {} failed, longest gap {:?}, ", self.requests, self.failed, self.longest_gap)?;
        match self.revisions.as_slice() {
            [first, _, _, _, _, ..] => write!(
                f,
                "{} runs of one revision, from {first:?} to {:?}",
                self.revisions.len(),
                self.revisions.last().unwrap_or(first)
            ),
            revisions => write!(f, "revisions {revisions:?}"),
        }
    }
}

/// Runs `action` under a steady load on `base_url`'s `/version` (two
/// connections, 5 ms between requests), kept on for a second after it
/// ends so that what users reach right after is seen too; prints what the
/// load saw, as `the load during WHAT: ...`.
pub async fn during<T>(what: &str, base_url: &str, action: impl Future<Output = T>) -> (T, Load) {
    let stream = start(&format!("{base_url}/version"), 2, Duration::from_millis(5));
    let done = action.await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let load = stream.stop().await;
    println!("the load during {what}: {load}");
    (done, load)
}

/// The stream, running until [`Stream::stop`].
pub struct Stream {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    load: Load,
    last_success: Option<Instant>,
}

/// At most this many requests per connection: the stream is bounded even
/// if nobody stops it.
const MAX_REQUESTS: u64 = 200_000;
/// Nor does it run longer than this.
const MAX_DURATION: Duration = Duration::from_secs(600);

/// Starts `connections` clients requesting `url` (a `/version`) one after
/// another, each waiting `pause` between its requests.
pub fn start(url: &str, connections: usize, pause: Duration) -> Stream {
    let stop = Arc::new(AtomicBool::new(false));
    let state = Arc::new(Mutex::new(State::default()));
    let started = Instant::now();
    let tasks = (0..connections)
        .map(|_| {
            let (stop, state, url) = (Arc::clone(&stop), Arc::clone(&state), url.to_owned());
            tokio::spawn(async move {
                let client = reqwest::Client::builder()
                    .no_proxy()
                    .connect_timeout(Duration::from_secs(2))
                    .timeout(Duration::from_secs(5))
                    .build()
                    .expect("an HTTP client");
                let mut sent = 0;
                while !stop.load(Ordering::Relaxed) && sent < MAX_REQUESTS && started.elapsed() < MAX_DURATION {
                    sent += 1;
                    let answer = async {
                        let response = client.get(&url).send().await.map_err(|e| format!("{e:?}"))?;
                        let status = response.status();
                        let body: serde_json::Value = response.json().await.map_err(|e| format!("body: {e}"))?;
                        if status != 200 {
                            return Err(format!("{status}: {body}"));
                        }
                        Ok(body["revision"].as_str().unwrap_or_default().to_owned())
                    }
                    .await;
                    record(&state, answer);
                    tokio::time::sleep(pause).await;
                }
            })
        })
        .collect();
    Stream { stop, tasks, state }
}

fn record(state: &Mutex<State>, answer: Result<String, String>) {
    let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
    let now = Instant::now();
    state.load.requests += 1;
    match answer {
        Ok(revision) => {
            if let Some(last) = state.last_success {
                state.load.longest_gap = state.load.longest_gap.max(now - last);
            }
            state.last_success = Some(now);
            if state.load.revisions.last() != Some(&revision) {
                state.load.revisions.push(revision);
            }
        }
        Err(e) => {
            state.load.failed += 1;
            if state.load.failures.len() < 5 {
                state.load.failures.push(e);
            }
        }
    }
}

impl Stream {
    /// Stops the clients and returns what they saw.
    pub async fn stop(self) -> Load {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::take(&mut state.load)
    }
}
