//! `harness verify` against the real books-ms: each test starts a database
//! container of its own and the service binary (built here if needed) on a
//! free loopback port, then runs the checks, by calling `verify()` or by
//! running the `harness` binary.
//!
//! They need Docker and the lab's database image (`lab/up.sh`, which
//! `scripts/test.sh` runs first); they never skip. Every wait and every
//! command is bounded; containers (testcontainers, labelled like the API
//! tests', so `scripts/test.sh` removes them after a killed run) and
//! processes are removed by id and pid in `Drop`, also when an assertion
//! fails.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use harness::progress::Reporter;
use harness::verify::{self, Check, Outcome, Problem, VerifyError, CHECKS, MARKER};

use common::database::Database;
use common::run::Run;

const IDS: [i32; 3] = [2_147_483_101, 2_147_483_102, 2_147_483_103];
/// Any single HTTP request of the tests themselves.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// `harness verify`, at most.
const HARNESS_DEADLINE: Duration = Duration::from_secs(120);
/// `cargo build -p books-ms`, at most (cold, it builds the dependencies).
const BUILD_DEADLINE: Duration = Duration::from_secs(900);

// ------------------------------------------------------------------ tests

#[tokio::test]
async fn verify_passes_and_leaves_no_reserved_book_while_users_books_are_untouched() {
    // Arrange: a user's book at 1 and two right around the reserved ids,
    // which the paged list must step over.
    let (_db, service) = start().await;
    let users = [user_book(1), user_book(IDS[0] - 1), user_book(IDS[2] + 1)];
    for book in &users {
        put(&service.url, book).await;
    }

    // Act
    let report = verify::verify(&service.url, &IDS, &Reporter::hidden()).await.unwrap_or_else(|e| panic!("{e}"));

    // Assert
    assert!(report.passed);
    let names: Vec<_> = report.checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, CHECKS.map(Check::name));
    assert!(report.checks.iter().all(|c| c.outcome == Outcome::Passed), "{report}");
    assert!(report.check("list").unwrap().detail.contains("1 page"), "{report}");
    let version = report.version.as_ref().expect("/version was read");
    assert_eq!(version.name, "books-ms");
    assert!(!version.revision.is_empty());
    assert_no_reserved_book(&service.url).await;
    for book in &users {
        assert_eq!(&get(&service.url, book["_id"].as_i64().unwrap() as i32).await, &Some(book.clone()));
    }
}

#[tokio::test]
async fn a_users_book_on_a_reserved_id_makes_verify_refuse_without_changing_anything() {
    let (_db, service) = start().await;
    let users = user_book(IDS[1]);
    put(&service.url, &users).await;

    let error = verify::verify(&service.url, &IDS, &Reporter::hidden()).await.expect_err("verify must refuse");

    assert_eq!(error.check, Check::ReservedIds);
    assert!(matches!(error.problem, Problem::IdInUse { id, .. } if id == IDS[1]), "{error}");
    let message = error.to_string();
    for needle in [&IDS[1].to_string(), "verify.ids", "HARNESS_VERIFY__IDS"] {
        assert!(message.contains(needle), "`{needle}` not in: {message}");
    }
    assert_eq!(error.report.check("put").unwrap().outcome, Outcome::Skipped);
    assert_eq!(error.report.check("cleanup").unwrap().outcome, Outcome::Skipped);
    assert_eq!(get(&service.url, IDS[1]).await, Some(users));
    for id in [IDS[0], IDS[2]] {
        assert_eq!(get(&service.url, id).await, None, "nothing may be written on {id}");
    }
}

#[tokio::test]
async fn a_book_left_by_an_interrupted_run_is_replaced_and_removed() {
    let (_db, service) = start().await;
    let leftover = json!({"_id": IDS[0], "title": "harness verify check 1 of 3", "author": "John Doe", "description": format!("{MARKER} (run 1-1)")});
    put(&service.url, &leftover).await;

    let report = verify::verify(&service.url, &IDS, &Reporter::hidden()).await.unwrap_or_else(|e| panic!("{e}"));

    assert!(report.check("reserved-ids").unwrap().detail.contains("interrupted run"), "{report}");
    assert_no_reserved_book(&service.url).await;
}

#[tokio::test]
async fn a_check_failing_after_the_writes_names_the_check_and_still_removes_them() {
    // Arrange: a proxy in front of the service that changes the title of
    // every book read by id, so that `get-by-id` fails after `put` wrote.
    let (_db, service) = start().await;
    let proxy = TamperingProxy::start(&service.url, Fault::Tamper).await;

    let error = verify::verify(&proxy.url, &IDS, &Reporter::hidden()).await.expect_err("get-by-id must fail");

    assert_eq!(error.check, Check::GetById, "{error}");
    let message = error.to_string();
    assert!(message.contains(&format!("GET {}/api/v1/books/_id/{}", proxy.url, IDS[0])), "{message}");
    assert!(message.contains("(tampered)"), "what came back is quoted: {message}");
    assert!(error.cleanup.is_none(), "{error}");
    assert_eq!(error.report.check("cleanup").unwrap().outcome, Outcome::Passed);
    assert_no_reserved_book(&service.url).await;
}

#[tokio::test]
async fn ctrl_c_after_the_checks_wrote_stops_them_removes_their_books_and_exits_130() {
    // Arrange: a service that stalls once the checks wrote (issue 23:
    // every interrupt ends what the run started and says what it undid).
    let (_db, service) = start().await;
    let proxy = TamperingProxy::start(&service.url, Fault::Stall).await;
    let probe = tempfile::tempdir().unwrap();
    let pid_file = probe.path().join("harness.pid");
    let ids = format!("[{}]", IDS.map(|id| id.to_string()).join(","));
    let mut command = common::run::harness_writing_its_pid(&pid_file);
    command.args(["verify", "--url", &proxy.url, "--repo"]).arg(common::repo_root()).env("HARNESS_CHECKS__IDS", ids);
    let run = tokio::task::spawn_blocking(move || common::run::run_bounded(&mut command, HARNESS_DEADLINE));

    // Act: Ctrl-C while a check waits on the stalled service.
    tokio::time::timeout(HARNESS_DEADLINE, STALLED.notified()).await.expect("the checks reached the stall");
    let pid = std::fs::read_to_string(&pid_file).expect("the harness's pid");
    let signalled = Instant::now();
    assert!(Command::new("kill").args(["-INT", pid.trim()]).status().unwrap().success());
    let run = run.await.unwrap();
    let took = signalled.elapsed();

    // Assert: it stopped there, removed what it wrote, said so, exit 130.
    assert_eq!(run.code, Some(130), "{}", run.stderr);
    assert!(took < HTTP_TIMEOUT, "it waited {took:?} after Ctrl-C, as long as the stalled request:\n{}", run.stderr);
    assert!(run.stderr.contains("interrupted by Ctrl-C (SIGINT) during `list`"), "{}", run.stderr);
    assert_no_reserved_book(&service.url).await;
}

#[tokio::test]
async fn a_user_racing_the_checks_on_the_reserved_ids_keeps_their_books_and_verify_says_the_id_was_taken() {
    // Arrange: a proxy that lets a user write at the worst moments: a book
    // on IDS[1] just before the checks' PUT there arrives (after
    // `reserved-ids` found it free), and over the checks' book on IDS[0]
    // just before their DELETE of it arrives.
    let (_db, service) = start().await;
    let proxy = TamperingProxy::start(&service.url, Fault::Race).await;

    let error = verify::verify(&proxy.url, &IDS, &Reporter::hidden()).await.expect_err("verify must fail");

    // Assert: both users' books are there, as they wrote them.
    assert_eq!(get(&service.url, IDS[1]).await, Some(user_book(IDS[1])), "the user's book was overwritten");
    assert_eq!(get(&service.url, IDS[0]).await, Some(user_book(IDS[0])), "the user's book was removed");
    assert_eq!(get(&service.url, IDS[2]).await, None, "nothing is written past the taken id");
    assert_eq!(error.check, Check::Put, "{error}");
    assert!(matches!(error.problem, Problem::Taken { id, .. } if id == IDS[1]), "{error}");
    let message = error.to_string();
    for needle in [&format!("reserved id {} was taken by someone else", IDS[1]), "left as it is", "verify.ids"] {
        assert!(message.contains(needle), "`{needle}` not in: {message}");
    }
    let cleanup = error.cleanup.as_ref().expect("the replaced book is reported by the cleanup");
    assert!(
        matches!(cleanup, Problem::Cleanup { first, .. } if matches!(**first, Problem::Replaced { id, .. } if id == IDS[0]))
    );
}

#[tokio::test]
async fn a_user_writing_the_reserved_ids_all_through_a_verify_run_never_loses_a_write() {
    // Arrange: a user who PUTs their own books on the reserved ids over and
    // over (bounded: 100 rounds) while the binary runs verify.
    let (_db, service) = start().await;
    let writer = {
        let url = service.url.clone();
        tokio::spawn(async move {
            for round in 0..100 {
                for id in IDS {
                    let mut book = user_book(id);
                    book["description"] = json!(format!("round {round}"));
                    put(&url, &book).await;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };

    let run = harness(&["verify", "--url", &service.url]).await;
    tokio::time::timeout(Duration::from_secs(120), writer).await.expect("the writer ends").expect("the writer");

    // Assert: every id holds the user's last write; verify failed, saying
    // the id is a user's.
    for id in IDS {
        let mut last = user_book(id);
        last["description"] = json!("round 99");
        assert_eq!(get(&service.url, id).await, Some(last), "the user's last write on {id} is gone");
    }
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        ["was taken by someone else", "was not written by the checks", "someone replaced it"]
            .iter()
            .any(|n| run.stderr.contains(n)),
        "{run:?}"
    );
}

#[tokio::test]
async fn against_a_books_ms_without_conditional_requests_verify_still_passes_and_cleans_up() {
    // A rollback may go to a release older than If-None-Match and If-Match.
    let (_db, service) = start().await;
    let proxy = TamperingProxy::start(&service.url, Fault::Old).await;

    let report = verify::verify(&proxy.url, &IDS, &Reporter::hidden()).await.unwrap_or_else(|e| panic!("{e}"));

    assert!(report.check("put").unwrap().detail.contains("no ETag"), "{report}");
    assert_no_reserved_book(&service.url).await;
}

#[tokio::test]
async fn with_the_database_down_verify_fails_at_ready_with_the_503_and_leaves_no_orphan() {
    let (db, service) = start().await;
    db.pause().await;

    let started = Instant::now();
    let error = verify::verify(&service.url, &IDS, &Reporter::hidden()).await.expect_err("verify must fail");

    assert!(started.elapsed() < Duration::from_secs(15), "took {:?}", started.elapsed());
    assert_eq!(error.check, Check::Ready, "{error}");
    let message = error.to_string();
    let ready = format!("GET {}/ready", service.url);
    for needle in [ready.as_str(), "503", "database_unavailable", "is the database running"] {
        assert!(message.contains(needle), "`{needle}` not in: {message}");
    }
    db.unpause().await;
    wait_ready(&service).await;
    assert_no_reserved_book(&service.url).await;
}

#[tokio::test]
async fn the_binary_prints_the_table_and_exits_0_when_every_check_passes() {
    let (_db, service) = start().await;

    let run = harness(&["verify", "--url", &service.url]).await;

    assert_eq!(run.code, Some(0), "{run:?}");
    for name in CHECKS {
        let row = run
            .stdout
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no row for {name}: {run:?}"));
        assert!(row.contains("passed"), "{row}");
    }
    assert!(run.stdout.contains(&format!("verify {}: passed", service.url)), "{run:?}");
    assert_no_reserved_book(&service.url).await;
}

#[tokio::test]
async fn the_binary_refuses_a_users_book_on_a_reserved_id_with_exit_1_and_a_json_report() {
    let (_db, service) = start().await;
    let users = user_book(IDS[2]);
    put(&service.url, &users).await;

    let run = harness(&["verify", "--url", &service.url, "--json"]).await;

    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.stderr.starts_with("harness: error: verify: check `reserved-ids` failed"), "{run:?}");
    assert!(run.stderr.contains(&IDS[2].to_string()) && run.stderr.contains("verify.ids"), "{run:?}");
    let report: Value =
        serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("stdout is not the JSON report ({e}): {run:?}"));
    assert_eq!(report["passed"], false);
    let reserved = report["checks"].as_array().unwrap().iter().find(|c| c["name"] == "reserved-ids").unwrap();
    assert_eq!(reserved["outcome"], "failed");
    assert_eq!(get(&service.url, IDS[2]).await, Some(users));
}

#[tokio::test]
async fn the_binary_fails_fast_naming_the_url_where_nothing_listens() {
    let url = format!("http://127.0.0.1:{}", free_port());

    let started = Instant::now();
    let run = harness(&["verify", "--url", &url]).await;

    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    assert_eq!(run.code, Some(1), "{run:?}");
    // One line of error; stderr is not a terminal here, so the checks'
    // progress lines come before it (each check's start and end).
    let errors: Vec<&str> = run.stderr.lines().filter(|l| l.starts_with("harness: error:")).collect();
    assert_eq!(errors.len(), 1, "one line of error: {run:?}");
    let error = errors[0];
    for needle in ["check `ready` failed", &format!("GET {url}/ready"), "no answer", "is books-ms running"] {
        assert!(error.contains(needle), "`{needle}` not in: {error}");
    }
    assert!(run.stderr.lines().any(|l| l.starts_with("-> verify: ready")), "the check's start is said: {run:?}");
    assert!(run.stdout.lines().any(|l| l.starts_with("ready ") && l.contains("FAILED")), "{run:?}");
}

#[tokio::test]
async fn bad_input_is_refused_before_any_request() {
    let reporter = Reporter::hidden();
    let error: VerifyError = verify::verify("localhost:8080", &IDS, &reporter).await.unwrap_err();
    assert_eq!(error.check, Check::Input);
    assert!(error.to_string().contains("`localhost:8080`"), "{error}");
    let error = verify::verify("http://127.0.0.1:9", &[], &reporter).await.unwrap_err();
    assert!(matches!(error.problem, Problem::BadIds { .. }), "{error}");
    assert!(error.report.checks.iter().all(|c| c.outcome == Outcome::Skipped));
}

#[tokio::test]
async fn with_a_write_token_verify_fails_at_put_without_it_and_passes_with_it() {
    // Arrange: a service whose writes need a token.
    const TOKEN: &str = "verify-token-7c41";
    let db = Database::start().await;
    let service = Service::start_with(&db, &[("WRITE_TOKEN", TOKEN)]).await;

    // Act and assert: without the token, the reads pass and the first write is refused.
    let error = verify::verify_with_token(&service.url, &IDS, &[], None, &Reporter::hidden())
        .await
        .expect_err("verify without the token must fail");
    assert_eq!(error.check, Check::Put, "{error}");
    assert!(matches!(&error.problem, Problem::Status { status, .. } if status.as_u16() == 401), "{error}");
    let message = error.to_string();
    assert!(message.contains("401") && message.contains("WRITE_TOKEN"), "{message}");
    assert_no_reserved_book(&service.url).await;

    // A wrong token is named as such.
    let error = verify::verify_with_token(&service.url, &IDS, &[], Some("not-it"), &Reporter::hidden())
        .await
        .expect_err("verify with a wrong token must fail");
    assert_eq!(error.check, Check::Put, "{error}");
    assert!(error.to_string().contains("refused the write token"), "{error}");
    assert!(!error.to_string().contains("not-it"), "{error}");

    // With it, every check passes and the cleanup removes what the checks wrote.
    let report = verify::verify_with_token(&service.url, &IDS, &[], Some(TOKEN), &Reporter::hidden())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(report.passed, "{report}");
    assert!(report.checks.iter().all(|c| c.outcome == Outcome::Passed), "{report}");
    assert_no_reserved_book(&service.url).await;
    assert!(!serde_json::to_string(&report).unwrap().contains(TOKEN));
}

// ------------------------------------------------------------------ the service and its database

async fn start() -> (Database, Service) {
    let db = Database::start().await;
    let service = Service::start(&db).await;
    (db, service)
}

/// The books-ms binary, run on a free loopback port against `db`, with a
/// database name of this test's own; killed by pid on drop.
struct Service {
    child: Child,
    url: String,
    log: tempfile::NamedTempFile,
}

impl Service {
    async fn start(db: &Database) -> Service {
        Service::start_with(db, &[]).await
    }

    /// [`Service::start`], with `env` added to the service's environment.
    async fn start_with(db: &Database, env: &[(&str, &str)]) -> Service {
        static DATABASES: AtomicUsize = AtomicUsize::new(0);
        let binary = service_binary();
        let port = free_port();
        let log = tempfile::NamedTempFile::new().expect("a log file");
        let child = Command::new(binary)
            .current_dir(common::repo_root())
            .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
            .env("MONGODB_URI", db.uri())
            .env("DB_DBNAME", format!("verify_{}_{}", std::process::id(), DATABASES.fetch_add(1, Ordering::SeqCst)))
            // A database outage becomes a 503 within about 3 s.
            .env("DB_TIMEOUT_MS", "1000")
            .env("STATIC_DIR", common::repo_root().join("client"))
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.reopen().expect("the log file"))
            .stderr(log.reopen().expect("the log file"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let service = Service { child, url: format!("http://127.0.0.1:{port}"), log };
        wait_ready(&service).await;
        service
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET /ready` answers 200 (bounded: 30 s, the database container starts
/// within a few).
async fn wait_ready(service: &Service) {
    let client = http();
    let url = format!("{}/ready", service.url);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(response) = client.get(&url).timeout(Duration::from_secs(5)).send().await {
            if response.status() == 200 {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{url} did not answer 200 within 30 s; the service's log:\n{}",
            service.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `<target>/debug/books-ms`, beside the harness binary; built once per
/// test run (a no-op when it is up to date).
fn service_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let mut build = Command::new(cargo);
        // Inherited, cargo's variables for this test would rebuild the
        // dependencies on every run.
        common::without_cargo_env(&mut build);
        build.args(["build", "-p", "books-ms", "--bin", "books-ms"]).current_dir(common::repo_root());
        let built = common::run::run_bounded(&mut build, BUILD_DEADLINE);
        assert!(built.success(), "cargo build -p books-ms failed:\n{}", built.stderr);
        let binary = Path::new(env!("CARGO_BIN_EXE_harness")).with_file_name("books-ms");
        assert!(binary.is_file(), "no {} after the build", binary.display());
        binary
    })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port()
}

// ------------------------------------------------------------------ the API, as a user

fn http() -> reqwest::Client {
    reqwest::Client::builder().timeout(HTTP_TIMEOUT).no_proxy().build().expect("an HTTP client")
}

fn user_book(id: i32) -> Value {
    json!({"_id": id, "title": format!("A user's book {id}"), "author": "A. User", "description": "not the checks'"})
}

async fn put(base: &str, book: &Value) {
    let response = http().put(format!("{base}/api/v1/books")).json(book).send().await.expect("PUT a book");
    assert_eq!(response.status(), 200, "PUT {book}");
}

async fn get(base: &str, id: i32) -> Option<Value> {
    let response = http().get(format!("{base}/api/v1/books/_id/{id}")).send().await.expect("GET a book");
    match response.status().as_u16() {
        200 => Some(response.json().await.expect("a book")),
        404 => None,
        other => panic!("GET book {id}: {other}"),
    }
}

async fn assert_no_reserved_book(base: &str) {
    for id in IDS {
        assert_eq!(get(base, id).await, None, "a book was left on reserved id {id}");
    }
    let page: Vec<Value> = http()
        .get(format!("{base}/api/v1/books?after={}&limit=3", IDS[0] - 1))
        .send()
        .await
        .expect("GET the list")
        .json()
        .await
        .expect("a list");
    assert!(page.iter().all(|s| !IDS.iter().any(|id| s["_id"] == *id)), "{page:?}");
}

// ------------------------------------------------------------------ the binary

/// `harness ARGS` in the workspace, with the checks' ids set as a user
/// would, bounded.
async fn harness(args: &[&str]) -> Run {
    let ids = format!("[{}]", IDS.map(|id| id.to_string()).join(","));
    common::run::harness(HARNESS_DEADLINE)
        .args(args)
        .arg("--repo")
        .arg(common::repo_root())
        .env("HARNESS_VERIFY__IDS", ids)
        .run_async()
        .await
}

// ------------------------------------------------------------------ a failing service

/// What the proxy does besides relaying.
#[derive(Clone, Copy)]
enum Fault {
    /// Appends " (tampered)" to the title of every book read by id: a
    /// deployed service that writes but reads back wrong.
    Tamper,
    /// A user writing at the worst moments: their book on `IDS[1]` just
    /// before a PUT of `IDS[1]` is relayed, and on `IDS[0]` just before a
    /// DELETE of `IDS[0]` is.
    Race,
    /// A books-ms from before conditional requests: the `If-*` headers
    /// are not passed on, and no `ETag` comes back.
    Old,
    /// A service that stops answering after the checks wrote: every GET
    /// after the first PUT is held (until the relay's deadline), and
    /// [`STALLED`] told. Writes pass, so the cleanup can run.
    Stall,
}

/// Told when a [`Fault::Stall`] proxy holds its first request.
static STALLED: tokio::sync::Notify = tokio::sync::Notify::const_new();
/// Set once a [`Fault::Stall`] proxy relayed a PUT.
static STALL_PUT_SEEN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// A one-request-per-connection HTTP proxy to `upstream` with a [`Fault`].
/// Stops on drop.
struct TamperingProxy {
    url: String,
    task: tokio::task::JoinHandle<()>,
}

impl TamperingProxy {
    async fn start(upstream: &str, fault: Fault) -> TamperingProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let upstream = upstream.to_owned();
        let task = tokio::spawn(async move {
            let client = http();
            while let Ok((stream, _)) = listener.accept().await {
                let (client, upstream) = (client.clone(), upstream.clone());
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(HTTP_TIMEOUT, relay(stream, &client, &upstream, fault)).await;
                });
            }
        });
        TamperingProxy { url, task }
    }
}

impl Drop for TamperingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay(
    mut stream: tokio::net::TcpStream,
    client: &reqwest::Client,
    upstream: &str,
    fault: Fault,
) -> Option<()> {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 64 * 1024 || stream.read_buf(&mut buf).await.ok()? == 0 {
            return None;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let (method, path) = (request_line.next()?.to_owned(), request_line.next()?.to_owned());
    let header = |name: &str| {
        head.split("\r\n").skip(1).find_map(|l| {
            l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim().to_owned())
        })
    };
    let length: usize = header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    while buf.len() < head_end + length {
        if stream.read_buf(&mut buf).await.ok()? == 0 {
            return None;
        }
    }
    let body = buf[head_end..head_end + length].to_vec();
    if let Fault::Race = fault {
        let put_on = serde_json::from_slice::<Value>(&body).ok().and_then(|b| b["_id"].as_i64());
        if method == "PUT" && put_on == Some(i64::from(IDS[1])) {
            put(upstream, &user_book(IDS[1])).await;
        }
        if method == "DELETE" && path == format!("/api/v1/books/_id/{}", IDS[0]) {
            put(upstream, &user_book(IDS[0])).await;
        }
    }
    if let Fault::Stall = fault {
        if method == "PUT" {
            STALL_PUT_SEEN.store(true, Ordering::SeqCst);
        } else if method == "GET" && STALL_PUT_SEEN.load(Ordering::SeqCst) {
            STALLED.notify_one();
            tokio::time::sleep(HTTP_TIMEOUT).await;
            return None;
        }
    }
    let mut request = client.request(method.parse().ok()?, format!("{upstream}{path}")).body(body);
    let names: &[&str] = match fault {
        Fault::Old => &["content-type"],
        _ => &["content-type", "if-match", "if-none-match"],
    };
    for name in names.iter().copied() {
        if let Some(value) = header(name) {
            request = request.header(name, value);
        }
    }
    let response = request.send().await.ok()?;
    let status = response.status();
    let content_type =
        response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("application/json").to_owned();
    let etag = match response.headers().get("etag").and_then(|v| v.to_str().ok()) {
        Some(etag) if !matches!(fault, Fault::Old) => format!("etag: {etag}\r\n"),
        _ => String::new(),
    };
    let mut body = response.bytes().await.ok()?.to_vec();
    if matches!(fault, Fault::Tamper) && method == "GET" && path.starts_with("/api/v1/books/_id/") && status == 200 {
        let mut book: Value = serde_json::from_slice(&body).ok()?;
        let title = format!("{} (tampered)", book["title"].as_str()?);
        book["title"] = Value::String(title);
        body = serde_json::to_vec(&book).ok()?;
    }
    let head = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: {content_type}\r\n{etag}content-length: {}\r\nconnection: close\r\n\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len()
    );
    stream.write_all(head.as_bytes()).await.ok()?;
    stream.write_all(&body).await.ok()?;
    stream.shutdown().await.ok()
}
