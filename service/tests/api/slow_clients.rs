//! Slow and hostile clients against the real binary: connections trickling
//! their headers (slowloris), connections declaring the largest body and
//! sending it a byte at a time, and connections that trickle the headers of a
//! second request on a kept-alive connection. Meanwhile another client must
//! keep being served, and the process's memory must stay bounded.
//!
//! The binary runs as a child process so that its memory (`VmHWM` in
//! `/proc/<pid>/status`) is its own. The test prints one `slow-clients:` line
//! of figures; `scripts/reliability-clients.sh` runs it to report them.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{book, free_port, shared_db_uri, wait_listening};

const HEADER_TIMEOUT: Duration = Duration::from_millis(1500);
const BODY_TIMEOUT: Duration = Duration::from_millis(2000);
/// Connections of each kind of attack.
const SLOW_HEADERS: usize = 300;
const SLOW_BODIES: usize = 300;
const KEPT_ALIVE_TRICKLES: usize = 100;
/// An attacker sends one more byte this often...
const TRICKLE_EVERY: Duration = Duration::from_millis(200);
/// ...and gives up after this long (every loop here is bounded).
const ATTACK_FOR: Duration = Duration::from_secs(8);
/// A request of the other client must be answered within this. Unloaded,
/// each takes milliseconds, but a shared 2-core machine stalls one now and
/// then for about a second even without an attack (measured: up to 1.1 s in
/// the baseline); 5 s leaves room for that and is still well below the
/// attack's 8 s: a service starved by the attackers would miss it.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// The process's peak resident memory may grow this much over its peak when
/// serving the same client without an attack: 700 connections held cost
/// about 10 MiB (buffers of a few KiB each).
const MEMORY_GROWTH_BOUND_KIB: u64 = 64 * 1024;
/// Its peak virtual memory (what it reserved, touched or not) may grow this
/// much. Measured: 0 when bodies are buffered as they arrive; 78 MiB when
/// `read_body` reserved each declared `Content-Length` (300 × 256 KiB, which
/// the resident figure does not show: the pages are never touched).
const RESERVED_GROWTH_BOUND_KIB: u64 = 48 * 1024;

/// The books-ms binary as a child process, killed on drop.
struct Service {
    child: Child,
    port: u16,
}

impl Service {
    async fn start(env: &[(&str, String)]) -> Service {
        let port = free_port();
        let db_name = format!("test_{}", uuid::Uuid::new_v4().simple());
        let child = Command::new(env!("CARGO_BIN_EXE_books-ms"))
            .env_clear()
            .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
            .env("MONGODB_URI", shared_db_uri().await)
            .env("DB_DBNAME", db_name)
            .env("RUST_LOG", "error")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start books-ms");
        let mut service = Service { child, port };
        wait_listening(&mut service.child, port);
        service
    }

    /// `VmHWM` (peak resident memory) in KiB, from `/proc/<pid>/status`.
    fn peak_rss_kib(&self) -> u64 {
        self.status_kib("VmHWM:")
    }

    /// `VmPeak` (peak virtual memory: what was reserved, touched or not) in KiB.
    fn peak_virtual_kib(&self) -> u64 {
        self.status_kib("VmPeak:")
    }

    fn status_kib(&self, key: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).expect("/proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("{key} in /proc status"))
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How one attacking connection ended.
#[derive(Debug)]
struct Ended {
    /// The service closed the connection (within `ATTACK_FOR`).
    closed: bool,
    /// After this long from the first byte.
    after: Duration,
    /// What the service answered before closing, if anything.
    response: String,
}

/// Opens a connection, sends `head`, then one byte of `trickle` every
/// `TRICKLE_EVERY` until the service closes the connection or `ATTACK_FOR`
/// passes. With `first`, sends it and reads its answer before starting.
async fn attack(port: u16, first: Option<&'static str>, head: &'static str, trickle: u8) -> Ended {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)).await else {
        return Ended { closed: true, after: Duration::ZERO, response: "connection refused".to_owned() };
    };
    if let Some(first) = first {
        stream.write_all(first.as_bytes()).await.expect("first request sent");
        let mut buf = [0u8; 1024];
        let n = tokio::time::timeout(CLIENT_TIMEOUT, stream.read(&mut buf)).await.expect("first answered").unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buf[..n]));
    }
    let started = Instant::now();
    let (mut reader, mut writer) = stream.into_split();
    let done = Arc::new(AtomicBool::new(false));
    let read_done = done.clone();
    let read = tokio::spawn(async move {
        let mut response = Vec::new();
        let result = tokio::time::timeout(ATTACK_FOR, reader.read_to_end(&mut response)).await;
        read_done.store(true, Ordering::SeqCst);
        (result.is_ok(), String::from_utf8_lossy(&response).into_owned())
    });
    let _ = writer.write_all(head.as_bytes()).await;
    while !done.load(Ordering::SeqCst) && started.elapsed() < ATTACK_FOR {
        tokio::time::sleep(TRICKLE_EVERY).await;
        if writer.write_all(&[trickle]).await.is_err() {
            break;
        }
    }
    let (closed, response) = read.await.expect("reader");
    Ended { closed, after: started.elapsed(), response }
}

/// What the well-behaved client saw.
#[derive(Debug, Default)]
struct ClientReport {
    sent: usize,
    failed: Vec<String>,
    longest: Duration,
}

/// A well-behaved client: PUT a book, GET it back, GET /health, `rounds` times.
async fn well_behaved_client(port: u16, rounds: i32, first_id: i32) -> ClientReport {
    let http = reqwest::Client::builder().timeout(CLIENT_TIMEOUT).build().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let mut report = ClientReport::default();
    for i in 0..rounds {
        let id = first_id + i;
        let requests = [
            http.put(format!("{base}/api/v1/books")).json(&book(id, "Kept serving", "Someone", "")),
            http.get(format!("{base}/api/v1/books/_id/{id}")),
            http.get(format!("{base}/health")),
        ];
        for request in requests {
            let started = Instant::now();
            report.sent += 1;
            match request.send().await {
                Ok(response) if response.status().is_success() => {}
                Ok(response) => report.failed.push(format!("status {}", response.status())),
                Err(e) => report.failed.push(e.to_string()),
            }
            report.longest = report.longest.max(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    report
}

/// Raises this process's soft limit on open files to `want` (or the hard
/// limit, if lower): Debian's default soft limit, 1024, is too close to the
/// 700 connections this test opens beside the other tests' sockets.
fn raise_descriptor_limit(want: u64) {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0, "getrlimit");
        if limit.rlim_cur < want {
            limit.rlim_cur = want.min(limit.rlim_max);
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0, "setrlimit");
        }
    }
    assert!(limit.rlim_cur >= 2048, "the hard limit on open files ({}) is too low for this test", limit.rlim_max);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_hostile_clients_are_cut_off_while_others_are_served_in_bounded_memory() {
    // Arrange: descriptors for 700 connections on each side (the binary
    // inherits the limit), and the binary with short deadlines, so that the
    // test is short.
    raise_descriptor_limit(4096);
    let service = Service::start(&[
        ("HTTP_HEADER_TIMEOUT_MS", HEADER_TIMEOUT.as_millis().to_string()),
        ("HTTP_BODY_TIMEOUT_MS", BODY_TIMEOUT.as_millis().to_string()),
    ])
    .await;
    let port = service.port;
    // The baseline: the same client, no attack, in the same process.
    let baseline = well_behaved_client(port, 40, 1).await;
    assert!(baseline.failed.is_empty(), "without an attack: {:?}", baseline.failed);
    let baseline_peak = service.peak_rss_kib();
    let baseline_virtual = service.peak_virtual_kib();

    // Act: every attacker at once, and the client again.
    let mut attackers = Vec::new();
    for _ in 0..SLOW_HEADERS {
        attackers
            .push(("header", tokio::spawn(attack(port, None, "GET /health HTTP/1.1\r\nHost: t\r\nX-Slow: ", b'a'))));
    }
    for _ in 0..SLOW_BODIES {
        let head = "PUT /api/v1/books HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
                    Content-Length: 262144\r\n\r\n{\"title\": \"";
        attackers.push(("body", tokio::spawn(attack(port, None, head, b'a'))));
    }
    for _ in 0..KEPT_ALIVE_TRICKLES {
        let first = "GET /health HTTP/1.1\r\nHost: t\r\n\r\n";
        attackers
            .push(("kept-alive", tokio::spawn(attack(port, Some(first), "GET /health HTTP/1.1\r\nX-Slow: ", b'a'))));
    }
    // Let the attackers connect before the client starts.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let during = well_behaved_client(port, 40, 1000).await;
    let mut ended = Vec::new();
    for (kind, attacker) in attackers {
        ended.push((kind, attacker.await.expect("attacker")));
    }
    let attack_peak = service.peak_rss_kib();
    let attack_virtual = service.peak_virtual_kib();

    // Figures, for scripts/reliability-clients.sh.
    let held = |kind: &str| ended.iter().filter(|(k, e)| *k == kind && !e.closed).count();
    let longest_open = |kind: &str| ended.iter().filter(|(k, _)| *k == kind).map(|(_, e)| e.after).max().unwrap();
    eprintln!(
        "slow-clients: attackers header={SLOW_HEADERS} body={SLOW_BODIES} kept-alive={KEPT_ALIVE_TRICKLES}; \
         still open after {} s: header={} body={} kept-alive={}; longest open: header={} ms body={} ms; \
         client requests sent={} failed={} longest={} ms (baseline: sent={} failed={} longest={} ms); \
         peak RSS baseline={} KiB under attack={} KiB; peak virtual baseline={} KiB under attack={} KiB",
        ATTACK_FOR.as_secs(),
        held("header"),
        held("body"),
        held("kept-alive"),
        longest_open("header").as_millis(),
        longest_open("body").as_millis(),
        during.sent,
        during.failed.len(),
        during.longest.as_millis(),
        baseline.sent,
        baseline.failed.len(),
        baseline.longest.as_millis(),
        baseline_peak,
        attack_peak,
        baseline_virtual,
        attack_virtual,
    );

    // Assert: the other client was served throughout, each request within the bound.
    assert!(during.failed.is_empty(), "the other client failed under attack: {:?}", during.failed);
    // Slow headers: 408 (actix's, no body) and closed, soon after the header deadline.
    for (_, e) in ended.iter().filter(|(k, _)| *k == "header") {
        assert!(e.closed, "a slow-header connection stayed open {:?}", e.after);
        assert!(e.after < HEADER_TIMEOUT + Duration::from_secs(3), "closed only after {:?}", e.after);
        assert!(e.response.starts_with("HTTP/1.1 408"), "{:?}", e.response);
    }
    // Slow bodies: 408 with the JSON error body, closed, soon after the body
    // deadline (actix then gives the client up to 1 s to read the answer).
    for (_, e) in ended.iter().filter(|(k, _)| *k == "body") {
        assert!(e.closed, "a slow-body connection stayed open {:?}", e.after);
        assert!(e.after < BODY_TIMEOUT + Duration::from_secs(3), "closed only after {:?}", e.after);
        assert!(e.response.starts_with("HTTP/1.1 408"), "{:?}", e.response);
        let body: Value = serde_json::from_str(e.response.split_once("\r\n\r\n").expect("a body").1).unwrap();
        assert_eq!(body["error"], "request_timeout", "{body}");
    }
    // Memory: bounded growth over the same process's baseline, and nothing
    // reserved from what the clients declared.
    assert!(
        attack_peak < baseline_peak + MEMORY_GROWTH_BOUND_KIB,
        "peak RSS grew from {baseline_peak} KiB to {attack_peak} KiB under slow clients"
    );
    assert!(
        attack_virtual < baseline_virtual + RESERVED_GROWTH_BOUND_KIB,
        "peak virtual memory grew from {baseline_virtual} KiB to {attack_virtual} KiB: memory reserved from declared \
         Content-Lengths?"
    );
}

#[tokio::test]
async fn with_keep_alive_off_a_connection_serves_one_request_so_no_second_header_can_trickle() {
    // Arrange
    let service = Service::start(&[("HTTP_KEEP_ALIVE_SECS", "0".to_owned())]).await;

    // Act: one request, then the start of a second on the same connection.
    let ended =
        attack(service.port, Some("GET /health HTTP/1.1\r\nHost: t\r\n\r\n"), "GET /health HTTP/1.1\r\n", b'a').await;

    // Assert: the service closed the connection after its first answer.
    assert!(ended.closed, "the connection stayed open {:?}", ended.after);
    assert!(ended.after < Duration::from_secs(2), "closed only after {:?}", ended.after);
}
