//! `harness verify --url URL`: the post-deploy checks, against any deployed
//! books-ms.
//!
//! In order, stopping at the first failure: `ready` (`GET /ready` is 200),
//! `version` (`/version` is `{name, version, revision}`, returned so a deploy
//! can compare the revision), `integ-list` (the original integ test: `GET
//! /api/v1/books` answers 200), then the chapter's own checks on the ids
//! reserved for them (`checks.ids`): `reserved-ids` (no user's book sits
//! there), `put` (one book per id, author "John Doe"), `list` (the list, read
//! page by page around the reserved ids, holds exactly those summaries),
//! `get-by-id` (each book comes back equal in all four fields), and last
//! `cleanup`, which also runs when a check failed after the first write.
//!
//! Invariants: a book the checks did not write is never overwritten nor
//! removed (the checks' books carry [`MARKER`] in their description); every
//! request has a timeout and the whole run a deadline.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::future::Future;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::{Method, StatusCode, Url};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::report::Reporter;

/// In the description of every book the checks write: how a later run (or a
/// person) recognises a book it may replace or remove.
pub const MARKER: &str = "written by harness verify; safe to delete";

/// The checks, in the order they run.
pub const CHECKS: [&str; 8] = ["ready", "version", "integ-list", "reserved-ids", "put", "list", "get-by-id", "cleanup"];

/// A refused connection fails at once; this only bounds a host that drops
/// packets.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Each request, body included. The service answers a database outage with
/// a 503 within about 2 s (`DB_TIMEOUT_MS`), so 10 s means it hangs.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Everything but the cleanup; the cleanup has its own budget, so a run cut
/// short by this deadline still removes what it wrote.
const CHECKS_DEADLINE: Duration = Duration::from_secs(60);
const CLEANUP_DEADLINE: Duration = Duration::from_secs(30);
/// The service takes `limit` from 1 to 1000.
const MAX_PAGE: i64 = 1000;
/// Bodies are read up to this size: a page of up to 1000 summaries fits.
const MAX_BODY: usize = 16 * 1024 * 1024;
/// More ids would only make the run longer; three are the chapter's.
const MAX_IDS: usize = 100;
/// How much of an unexpected body an error quotes.
const EXCERPT_CHARS: usize = 200;

// ------------------------------------------------------------------ report

/// What a run did: one entry per check, for the closing table and `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub url: String,
    pub ids: Vec<i32>,
    pub passed: bool,
    /// What `/version` said, when that check ran.
    pub version: Option<ServiceVersion>,
    pub checks: Vec<CheckReport>,
    pub duration_ms: u64,
    /// The error, when the run failed.
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub name: &'static str,
    pub outcome: Outcome,
    pub duration_ms: u64,
    /// What was seen, or why it failed, or why it did not run.
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Passed,
    Failed,
    Skipped,
}

/// The body of `GET /version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceVersion {
    pub name: String,
    pub version: String,
    /// The git revision the binary was built from.
    pub revision: String,
}

impl VerifyReport {
    pub fn check(&self, name: &str) -> Option<&CheckReport> {
        self.checks.iter().find(|c| c.name == name)
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Outcome::Passed => "passed",
            Outcome::Failed => "FAILED",
            Outcome::Skipped => "skipped",
        })
    }
}

/// The closing table.
impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{:<13} {:<8} {:>8}  detail", "check", "outcome", "time")?;
        for check in &self.checks {
            let time = format!("{} ms", check.duration_ms);
            writeln!(f, "{:<13} {:<8} {:>8}  {}", check.name, check.outcome, time, check.detail)?;
        }
        let verdict = if self.passed { "passed" } else { "FAILED" };
        writeln!(f, "verify {}: {verdict} in {} ms", self.url, self.duration_ms)
    }
}

// ------------------------------------------------------------------ errors

/// A failed run: which check, what went wrong, whether the cleanup failed
/// too, and the report up to there.
#[derive(Debug)]
pub struct VerifyError {
    /// The check that failed (`input` for a bad URL or bad ids).
    pub check: &'static str,
    pub problem: Problem,
    /// Set when the cleanup failed as well (after `problem`).
    pub cleanup: Option<Problem>,
    pub report: Box<VerifyReport>,
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "verify: check `{}` failed: {}", self.check, self.problem)?;
        if let Some(cleanup) = &self.cleanup {
            write!(f, "; and the cleanup failed too: {cleanup}")?;
        }
        Ok(())
    }
}

impl std::error::Error for VerifyError {}

/// One thing that went wrong, with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum Problem {
    #[error("`{url}` is not a usable base URL ({reason}); pass the service's address, e.g. --url http://10.200.0.2:8080")]
    BadUrl { url: String, reason: String },
    #[error("checks.ids {reason}; set `checks.ids` in harness.toml or HARNESS_CHECKS__IDS, e.g. HARNESS_CHECKS__IDS='[2147483101,2147483102,2147483103]'")]
    BadIds { reason: String },
    #[error("cannot make an HTTP client: {0}")]
    Client(String),
    /// `request` is the method and the URL, e.g. `GET http://…/ready`.
    #[error("{request}: no answer ({cause}); is books-ms running and reachable at that address? (`harness status` shows what runs on prod)")]
    NoAnswer { request: String, cause: String },
    #[error("{request}: expected {expected}, got {status}: {excerpt}; {hint}")]
    Status { request: String, expected: String, status: StatusCode, excerpt: String, hint: String },
    #[error("{request}: expected {expected}, got {found}; is this a books-ms, of this API version?")]
    Content { request: String, expected: String, found: String },
    #[error("book {id} exists on {url} (title {title:?}, author {author:?}) and was not written by the checks; verify writes nothing rather than overwrite a user's book: give the checks other ids with `checks.ids` in harness.toml or HARNESS_CHECKS__IDS")]
    IdInUse { id: i32, url: String, title: String, author: String },
    #[error("the checks did not finish within {secs} s (during `{check}`): the service at {url} answers too slowly")]
    Deadline { url: String, check: &'static str, secs: u64 },
    #[error("book {id} on {url} no longer carries the checks' marker, so someone replaced it during the checks: left as it is")]
    Replaced { id: i32, url: String },
    #[error("{first}; books the checks wrote may be left on ids {left:?}: once the service is healthy, run verify again (it replaces and removes them) or DELETE {base}/api/v1/books/_id/ID")]
    Cleanup { first: Box<Problem>, left: Vec<i32>, base: String },
}

// ------------------------------------------------------------------ the run

/// Runs every check against the books-ms at `url`, writing only on `ids`.
pub async fn verify(url: &str, ids: &[i32], reporter: &Reporter) -> Result<VerifyReport, VerifyError> {
    let started = Instant::now();
    let mut run = Recorder {
        report: VerifyReport {
            url: url.to_owned(),
            ids: ids.to_vec(),
            passed: false,
            version: None,
            checks: Vec::new(),
            duration_ms: 0,
            error: None,
        },
        reporter,
        current: None,
    };
    let prepared = parse_base(url).and_then(|base| Ok((base, validate_ids(ids)?))).and_then(|(base, ids)| {
        let http = Http::new(base)?;
        Ok((http, ids))
    });
    let (http, ids) = match prepared {
        Ok(ready) => ready,
        Err(problem) => return Err(run.finish(started, ("input", problem), None)),
    };
    let run_id = run_id();
    let books: Vec<Value> = ids.iter().enumerate().map(|(i, &id)| check_book(id, i + 1, ids.len(), &run_id)).collect();

    // Set just before the first write: from then on the cleanup must run.
    let mut wrote = false;
    let checks = tokio::time::timeout(CHECKS_DEADLINE, run_checks(&mut run, &http, &ids, &books, &mut wrote)).await;
    let failure = match checks {
        Ok(Ok(())) => None,
        Ok(Err(failure)) => Some(failure),
        Err(_) => {
            let check = run.current.map_or("ready", |(name, _)| name);
            let problem = Problem::Deadline { url: http.base.clone(), check, secs: CHECKS_DEADLINE.as_secs() };
            run.record_current(Outcome::Failed, problem.to_string());
            Some((check, problem))
        }
    };

    let cleanup = if wrote {
        let cleaning = tokio::time::timeout(CLEANUP_DEADLINE, run.check("cleanup", cleanup(&http, &ids))).await;
        match cleaning {
            Ok(Ok(())) => None,
            Ok(Err(problem)) => Some(problem),
            Err(_) => {
                let problem = Problem::Cleanup {
                    first: Box::new(Problem::Deadline { url: http.base.clone(), check: "cleanup", secs: CLEANUP_DEADLINE.as_secs() }),
                    left: ids.clone(),
                    base: http.base.clone(),
                };
                run.record_current(Outcome::Failed, problem.to_string());
                Some(problem)
            }
        }
    } else {
        None
    };

    match (failure, cleanup) {
        (None, None) => {
            run.report.passed = true;
            run.report.duration_ms = millis(started.elapsed());
            Ok(run.report)
        }
        (None, Some(problem)) => Err(run.finish(started, ("cleanup", problem), None)),
        (Some(failure), cleanup) => Err(run.finish(started, failure, cleanup)),
    }
}

/// Everything but the cleanup, stopping at the first failure.
async fn run_checks(
    run: &mut Recorder<'_>,
    http: &Http,
    ids: &[i32],
    books: &[Value],
    wrote: &mut bool,
) -> Result<(), (&'static str, Problem)> {
    run.check("ready", check_ready(http)).await.map_err(at("ready"))?;
    let version = run.check("version", check_version(http)).await.map_err(at("version"))?;
    run.report.version = Some(version);
    run.check("integ-list", check_integ_list(http)).await.map_err(at("integ-list"))?;
    run.check("reserved-ids", check_reserved_ids(http, ids)).await.map_err(at("reserved-ids"))?;
    *wrote = true;
    run.check("put", check_put(http, books)).await.map_err(at("put"))?;
    run.check("list", check_list(http, books)).await.map_err(at("list"))?;
    run.check("get-by-id", check_get_by_id(http, books)).await.map_err(at("get-by-id"))?;
    Ok(())
}

/// Names the check a problem came from.
fn at(check: &'static str) -> impl FnOnce(Problem) -> (&'static str, Problem) {
    move |problem| (check, problem)
}

/// Keeps the report while the checks run.
struct Recorder<'r> {
    report: VerifyReport,
    reporter: &'r Reporter,
    /// The check running now, for the deadline's error.
    current: Option<(&'static str, Instant)>,
}

impl Recorder<'_> {
    /// Runs one check and records its outcome, duration and detail.
    async fn check<T, F>(&mut self, name: &'static str, check: F) -> Result<T, Problem>
    where
        F: Future<Output = Result<(T, String), Problem>>,
    {
        let spinner = Spinner(self.reporter.spinner(format!("verify: {name}")));
        self.current = Some((name, Instant::now()));
        let result = check.await;
        drop(spinner);
        match result {
            Ok((value, detail)) => {
                self.record_current(Outcome::Passed, detail);
                Ok(value)
            }
            Err(problem) => {
                self.record_current(Outcome::Failed, problem.to_string());
                Err(problem)
            }
        }
    }

    fn record_current(&mut self, outcome: Outcome, detail: String) {
        if let Some((name, started)) = self.current.take() {
            let duration_ms = millis(started.elapsed());
            self.reporter.line(format!("{outcome:<7} {name} ({duration_ms} ms)"));
            self.report.checks.push(CheckReport { name, outcome, duration_ms, detail });
        }
    }

    /// The failed run's error, with the checks that did not run marked as
    /// skipped.
    fn finish(mut self, started: Instant, (check, problem): (&'static str, Problem), cleanup: Option<Problem>) -> VerifyError {
        for name in CHECKS {
            if self.report.check(name).is_none() {
                let detail = if name == "cleanup" { "nothing was written" } else { "an earlier check failed" };
                self.report.checks.push(CheckReport { name, outcome: Outcome::Skipped, duration_ms: 0, detail: detail.to_owned() });
            }
        }
        self.report.duration_ms = millis(started.elapsed());
        let mut error = VerifyError { check, problem, cleanup, report: Box::new(self.report) };
        error.report.error = Some(error.to_string());
        error
    }
}

/// Cleared also when a deadline drops the check it belongs to.
struct Spinner(indicatif::ProgressBar);

impl Drop for Spinner {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}

// ------------------------------------------------------------------ checks

async fn check_ready(http: &Http) -> Result<((), String), Problem> {
    http.call(Method::GET, "/ready", None).await?.expect_status(StatusCode::OK, "200 (the database answers)", http)?;
    Ok(((), "200: the service and its database answer".to_owned()))
}

async fn check_version(http: &Http) -> Result<(ServiceVersion, String), Problem> {
    let answer = http.call(Method::GET, "/version", None).await?;
    answer.expect_status(StatusCode::OK, "200 with {name, version, revision}", http)?;
    let version: ServiceVersion = serde_json::from_slice(&answer.body)
        .map_err(|_| answer.content("JSON {\"name\", \"version\", \"revision\"}", excerpt(&answer.body)))?;
    let detail = format!("{} {}, revision {}", version.name, version.version, version.revision);
    Ok((version, detail))
}

/// The original integ test. Reads only the start of the list: on a large
/// collection the whole of it would be slow and is not what is checked.
async fn check_integ_list(http: &Http) -> Result<((), String), Problem> {
    let path = "/api/v1/books";
    let url = http.url(path);
    let mut response = http.client.get(&url).send().await.map_err(|e| no_answer("GET", &url, &e))?;
    let status = response.status();
    let mut head = Vec::new();
    while head.iter().all(u8::is_ascii_whitespace) && head.len() < 1024 {
        match response.chunk().await {
            Ok(Some(chunk)) => head.extend_from_slice(&chunk),
            Ok(None) => break,
            Err(e) => return Err(no_answer("GET", &url, &e)),
        }
    }
    let answer = Answer { method: "GET", url, status, request_id: request_id(&response), body: head };
    answer.expect_status(StatusCode::OK, "200 with a JSON array", http)?;
    if answer.body.trim_ascii_start().first() != Some(&b'[') {
        return Err(answer.content("a JSON array", excerpt(&answer.body)));
    }
    Ok(((), "200: GET /api/v1/books answers".to_owned()))
}

/// Each reserved id is free, or holds a book an interrupted run left.
async fn check_reserved_ids(http: &Http, ids: &[i32]) -> Result<((), String), Problem> {
    let mut leftovers = Vec::new();
    for &id in ids {
        let answer = http.call(Method::GET, &book_path(id), None).await?;
        match answer.status {
            StatusCode::NOT_FOUND => {}
            StatusCode::OK => {
                let book: Value = answer.json("a book")?;
                if !is_ours(&book) {
                    return Err(Problem::IdInUse {
                        id,
                        url: answer.url,
                        title: text_field(&book, "title"),
                        author: text_field(&book, "author"),
                    });
                }
                leftovers.push(id);
            }
            _ => return Err(answer.status_problem("404 (no book) or 200 with one of the checks' books", http)),
        }
    }
    let detail = if leftovers.is_empty() {
        format!("{} ids free", ids.len())
    } else {
        format!("{} ids free; {leftovers:?} held books of an interrupted run, replaced", ids.len() - leftovers.len())
    };
    Ok(((), detail))
}

async fn check_put(http: &Http, books: &[Value]) -> Result<((), String), Problem> {
    for book in books {
        let answer = http.call(Method::PUT, "/api/v1/books", Some(book)).await?;
        answer.expect_status(StatusCode::OK, "200 echoing the book", http)?;
        let echoed: Value = answer.json("the book echoed")?;
        if &echoed != book {
            return Err(answer.content(&format!("the book echoed, {}", compact(book)), compact(&echoed)));
        }
    }
    Ok(((), format!("{} books written, each echoed", books.len())))
}

/// The list, read a page per window of reserved ids, holds exactly the
/// summaries of the checks' books on those ids.
async fn check_list(http: &Http, books: &[Value]) -> Result<((), String), Problem> {
    let expected: BTreeMap<i32, Value> = books.iter().map(|b| (book_id(b), summary(b))).collect();
    let ids: Vec<i32> = expected.keys().copied().collect();
    let windows = windows(&ids);
    for window in &windows {
        let path = window.path();
        let answer = http.call(Method::GET, &path, None).await?;
        answer.expect_status(StatusCode::OK, "200 with a JSON array of summaries", http)?;
        let page: Vec<Value> = answer.json("a JSON array of summaries")?;
        let mut found: BTreeMap<i32, &Value> = BTreeMap::new();
        for entry in &page {
            let Some(id) = entry.get("_id").and_then(Value::as_i64).and_then(|id| i32::try_from(id).ok()) else {
                return Err(answer.content("summaries with an integer `_id`", compact(entry)));
            };
            if !expected.contains_key(&id) {
                continue; // a book between or around the reserved ids
            }
            if found.insert(id, entry).is_some() {
                return Err(answer.content(&format!("one summary with _id {id}"), format!("two: {}", excerpt(&answer.body))));
            }
        }
        for id in ids.iter().filter(|id| window.contains(**id)) {
            let want = &expected[id];
            match found.get(id) {
                Some(got) if *got == want => {}
                Some(got) => return Err(answer.content(&format!("the summary {}", compact(want)), compact(got))),
                None => {
                    return Err(answer.content(&format!("the summary {}", compact(want)), format!("no summary with _id {id} in the page")))
                }
            }
        }
    }
    let pages = if windows.len() == 1 { "1 page".to_owned() } else { format!("{} pages", windows.len()) };
    Ok(((), format!("{} summaries found, exactly ({pages})", ids.len())))
}

async fn check_get_by_id(http: &Http, books: &[Value]) -> Result<((), String), Problem> {
    for book in books {
        let answer = http.call(Method::GET, &book_path(book_id(book)), None).await?;
        answer.expect_status(StatusCode::OK, "200 with the book", http)?;
        let got: Value = answer.json("the book")?;
        if &got != book {
            return Err(answer.content(&format!("the book as written, {}", compact(book)), compact(&got)));
        }
    }
    Ok(((), format!("{} books equal in all four fields", books.len())))
}

/// Removes the checks' books, best effort: every id is tried even when one
/// fails, a book without the marker is left alone, and each removal is
/// confirmed by a 404.
async fn cleanup(http: &Http, ids: &[i32]) -> Result<((), String), Problem> {
    let mut removed = 0;
    let mut left = Vec::new();
    let mut first = None;
    for &id in ids {
        match remove_ours(http, id).await {
            Ok(true) => removed += 1,
            Ok(false) => {}
            Err(problem) => {
                left.push(id);
                first.get_or_insert(problem);
            }
        }
    }
    match first {
        None => Ok(((), format!("{removed} books removed; every reserved id answers 404"))),
        Some(first) => Err(Problem::Cleanup { first: Box::new(first), left, base: http.base.clone() }),
    }
}

/// `Ok(true)`: removed, `Ok(false)`: there was none.
async fn remove_ours(http: &Http, id: i32) -> Result<bool, Problem> {
    let path = book_path(id);
    let answer = http.call(Method::GET, &path, None).await?;
    match answer.status {
        StatusCode::NOT_FOUND => return Ok(false),
        StatusCode::OK => {
            let book: Value = answer.json("a book")?;
            if !is_ours(&book) {
                return Err(Problem::Replaced { id, url: answer.url });
            }
        }
        _ => return Err(answer.status_problem("200 or 404", http)),
    }
    let answer = http.call(Method::DELETE, &path, None).await?;
    // 404: removed by someone else meanwhile; gone all the same.
    if answer.status != StatusCode::NOT_FOUND {
        answer.expect_status(StatusCode::OK, "200 with the removed book", http)?;
    }
    let answer = http.call(Method::GET, &path, None).await?;
    answer.expect_status(StatusCode::NOT_FOUND, "404 after the removal", http)?;
    Ok(true)
}

// ------------------------------------------------------------------ books and pages

/// A check's book: author "John Doe" as in the chapter, a title saying
/// what it is, and the marker plus this run's id in the description, so
/// that a book left by an earlier run never passes for this run's.
fn check_book(id: i32, n: usize, total: usize, run_id: &str) -> Value {
    json!({
        "_id": id,
        "title": format!("harness verify check {n} of {total}"),
        "author": "John Doe",
        "description": format!("{MARKER} (run {run_id})"),
    })
}

fn is_ours(book: &Value) -> bool {
    book.get("description").and_then(Value::as_str).is_some_and(|d| d.contains(MARKER))
}

fn summary(book: &Value) -> Value {
    json!({ "_id": book["_id"], "title": book["title"], "author": book["author"] })
}

fn book_id(book: &Value) -> i32 {
    book["_id"].as_i64().and_then(|id| i32::try_from(id).ok()).expect("the checks' books have 32-bit ids")
}

fn book_path(id: i32) -> String {
    format!("/api/v1/books/_id/{id}")
}

fn text_field(book: &Value, field: &str) -> String {
    book.get(field).and_then(Value::as_str).unwrap_or("").to_owned()
}

fn run_id() -> String {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    format!("{}-{}", since_epoch.as_millis(), std::process::id())
}

/// One page of the list: the books with `first <= _id <= last`. Since the
/// window spans at most `MAX_PAGE` ids, `after=first-1&limit=span` returns
/// every book in it (and, when some ids in it have no book, a few beyond).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Window {
    first: i32,
    last: i32,
}

impl Window {
    fn contains(&self, id: i32) -> bool {
        (self.first..=self.last).contains(&id)
    }

    fn path(&self) -> String {
        let limit = i64::from(self.last) - i64::from(self.first) + 1;
        match self.first.checked_sub(1) {
            Some(after) => format!("/api/v1/books?limit={limit}&after={after}"),
            // Nothing is below i32::MIN: the first page is the start.
            None => format!("/api/v1/books?limit={limit}"),
        }
    }
}

/// Sorted, distinct ids grouped into as few windows as fit a page each.
fn windows(sorted_ids: &[i32]) -> Vec<Window> {
    let mut windows: Vec<Window> = Vec::new();
    for &id in sorted_ids {
        match windows.last_mut() {
            Some(w) if i64::from(id) - i64::from(w.first) < MAX_PAGE => w.last = id,
            _ => windows.push(Window { first: id, last: id }),
        }
    }
    windows
}

fn validate_ids(ids: &[i32]) -> Result<Vec<i32>, Problem> {
    if ids.is_empty() {
        return Err(Problem::BadIds { reason: "is empty: the checks need at least one id to write on".to_owned() });
    }
    if ids.len() > MAX_IDS {
        return Err(Problem::BadIds { reason: format!("has {} ids; at most {MAX_IDS}", ids.len()) });
    }
    let distinct: BTreeSet<i32> = ids.iter().copied().collect();
    if distinct.len() != ids.len() {
        return Err(Problem::BadIds { reason: format!("{ids:?} repeats an id") });
    }
    Ok(ids.to_vec())
}

/// `http(s)://HOST[:PORT][/PREFIX]`, kept without a trailing slash.
fn parse_base(url: &str) -> Result<String, Problem> {
    let bad = |reason: &str| Problem::BadUrl { url: url.to_owned(), reason: reason.to_owned() };
    let parsed = Url::parse(url).map_err(|e| bad(&e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(bad("the scheme must be http or https"));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(bad("no host"));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(bad("a base URL has no query or fragment"));
    }
    Ok(parsed.as_str().trim_end_matches('/').to_owned())
}

// ------------------------------------------------------------------ HTTP

struct Http {
    client: reqwest::Client,
    /// Without a trailing slash.
    base: String,
}

/// A response read whole (up to `MAX_BODY`).
struct Answer {
    method: &'static str,
    url: String,
    status: StatusCode,
    request_id: Option<String>,
    body: Vec<u8>,
}

impl Http {
    fn new(base: String) -> Result<Self, Problem> {
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            // The checks are about the service at this URL, not about
            // whatever proxy the environment names.
            .no_proxy()
            .user_agent(concat!("harness-verify/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Problem::Client(error_chain(&e)))?;
        Ok(Http { client, base })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Answer, Problem> {
        let url = self.url(path);
        let name = method_name(&method);
        let mut request = self.client.request(method, &url);
        if let Some(body) = body {
            request = request.json(body);
        }
        let mut response = request.send().await.map_err(|e| no_answer(name, &url, &e))?;
        let status = response.status();
        let request_id = request_id(&response);
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| no_answer(name, &url, &e))? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(Problem::Content {
                    request: format!("{name} {url}"),
                    expected: format!("a body of at most {} MiB", MAX_BODY / (1024 * 1024)),
                    found: "a larger one".to_owned(),
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Answer { method: name, url, status, request_id, body })
    }
}

impl Answer {
    fn expect_status(&self, want: StatusCode, expected: &str, http: &Http) -> Result<(), Problem> {
        if self.status == want {
            Ok(())
        } else {
            Err(self.status_problem(expected, http))
        }
    }

    fn status_problem(&self, expected: &str, http: &Http) -> Problem {
        let hint = match self.status.as_u16() {
            503 => "the service answers but its database does not: is the database running? (`harness status` shows prod's containers)".to_owned(),
            500..=599 => match &self.request_id {
                Some(id) => format!("the service failed; its log has the cause (request id {id})"),
                None => "the service failed; its log has the cause".to_owned(),
            },
            404 | 405 => format!("is {} the base URL of a books-ms?", http.base),
            _ => format!("is {} a books-ms, of this API version?", http.base),
        };
        Problem::Status {
            request: self.request(),
            expected: expected.to_owned(),
            status: self.status,
            excerpt: excerpt(&self.body),
            hint,
        }
    }

    fn content(&self, expected: &str, found: String) -> Problem {
        Problem::Content { request: self.request(), expected: expected.to_owned(), found }
    }

    fn request(&self) -> String {
        format!("{} {}", self.method, self.url)
    }

    fn json<T: serde::de::DeserializeOwned>(&self, expected: &str) -> Result<T, Problem> {
        serde_json::from_slice(&self.body).map_err(|_| self.content(expected, excerpt(&self.body)))
    }
}

fn method_name(method: &Method) -> &'static str {
    match *method {
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::POST => "POST",
        _ => "GET",
    }
}

fn request_id(response: &reqwest::Response) -> Option<String> {
    response.headers().get("x-request-id").and_then(|v| v.to_str().ok()).map(str::to_owned)
}

fn no_answer(method: &str, url: &str, error: &reqwest::Error) -> Problem {
    let cause = if error.is_timeout() {
        format!("no answer within {} s", REQUEST_TIMEOUT.as_secs())
    } else {
        error_chain(error)
    };
    Problem::NoAnswer { request: format!("{method} {url}"), cause }
}

/// reqwest's own message repeats the URL; its causes say what happened
/// ("Connection refused").
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut source = error.source();
    while let Some(e) = source {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = e.source();
    }
    if parts.is_empty() {
        parts.push(error.to_string());
    }
    parts.join(": ")
}

/// The start of a body, on one line, for an error message.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.is_empty() {
        return "an empty body".to_owned();
    }
    match text.char_indices().nth(EXCERPT_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

fn compact(value: &Value) -> String {
    excerpt(value.to_string().as_bytes())
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

// ------------------------------------------------------------------ the command

/// `harness verify --url URL`: the table (or, with `--json`, the report) on
/// stdout, also when a check failed; the failure comes back as the error,
/// which main prints on stderr (exit 1).
pub async fn command(url: &str, ids: &[i32], json: bool, reporter: &Reporter) -> anyhow::Result<()> {
    let result = verify(url, ids, reporter).await;
    let report = match &result {
        Ok(report) => report,
        Err(error) => &error.report,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        print!("{report}");
    }
    result.map(drop).map_err(anyhow::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contiguous_ids_are_one_page_starting_just_below_them() {
        let w = windows(&[2_147_483_101, 2_147_483_102, 2_147_483_103]);
        assert_eq!(w, [Window { first: 2_147_483_101, last: 2_147_483_103 }]);
        assert_eq!(w[0].path(), "/api/v1/books?limit=3&after=2147483100");
    }

    #[test]
    fn ids_further_apart_than_a_page_get_a_page_each() {
        let w = windows(&[1, 1000, 1001, 5000]);
        assert_eq!(w, [Window { first: 1, last: 1000 }, Window { first: 1001, last: 1001 }, Window { first: 5000, last: 5000 }]);
        assert_eq!(w[0].path(), "/api/v1/books?limit=1000&after=0");
    }

    #[test]
    fn the_lowest_id_pages_from_the_start() {
        let w = windows(&[i32::MIN, i32::MIN + 1]);
        assert_eq!(w[0].path(), "/api/v1/books?limit=2");
    }

    #[test]
    fn extreme_ids_do_not_overflow() {
        let w = windows(&[i32::MIN, i32::MAX]);
        assert_eq!(w.len(), 2);
        assert_eq!(w[1].path(), "/api/v1/books?limit=1&after=2147483646");
    }

    #[test]
    fn ids_must_be_some_and_distinct() {
        for bad in [&[][..], &[1, 2, 1][..]] {
            let err = validate_ids(bad).unwrap_err().to_string();
            assert!(err.contains("checks.ids") && err.contains("HARNESS_CHECKS__IDS"), "{err}");
        }
        assert_eq!(validate_ids(&[3, 1]).unwrap(), [3, 1]);
    }

    #[test]
    fn base_urls_lose_their_trailing_slash_and_keep_a_prefix() {
        assert_eq!(parse_base("http://10.0.0.2:8080/").unwrap(), "http://10.0.0.2:8080");
        assert_eq!(parse_base("https://books.example/ms/").unwrap(), "https://books.example/ms");
    }

    #[test]
    fn unusable_urls_are_refused_naming_them() {
        for bad in ["10.0.0.2:8080", "ftp://host/", "http://host/?a=1", "not a url"] {
            let err = parse_base(bad).unwrap_err().to_string();
            assert!(err.contains(bad) && err.contains("--url"), "{err}");
        }
    }

    #[test]
    fn the_checks_books_carry_the_marker_and_users_books_do_not() {
        let book = check_book(7, 1, 3, "run");
        assert!(is_ours(&book));
        assert_eq!(book["author"], "John Doe");
        assert!(!is_ours(&json!({"_id": 7, "title": "t", "author": "a", "description": ""})));
        assert!(!is_ours(&json!({"_id": 7, "title": "t", "author": "a"})));
        assert_eq!(summary(&book), json!({"_id": 7, "title": "harness verify check 1 of 3", "author": "John Doe"}));
    }

    #[test]
    fn excerpts_are_one_short_line() {
        assert_eq!(excerpt(b"{\"error\":\n  \"x\"}"), "{\"error\": \"x\"}");
        assert_eq!(excerpt(b""), "an empty body");
        let long = "é".repeat(500);
        let cut = excerpt(long.as_bytes());
        assert_eq!(cut.chars().count(), EXCERPT_CHARS + 1);
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn the_table_lists_every_check_and_the_verdict() {
        let report = VerifyReport {
            url: "http://h:1".into(),
            ids: vec![1],
            passed: false,
            version: None,
            checks: vec![
                CheckReport { name: "ready", outcome: Outcome::Failed, duration_ms: 12, detail: "503".into() },
                CheckReport { name: "cleanup", outcome: Outcome::Skipped, duration_ms: 0, detail: "nothing was written".into() },
            ],
            duration_ms: 13,
            error: Some("e".into()),
        };
        let text = report.to_string();
        assert!(text.contains("ready         FAILED      12 ms  503"), "{text}");
        assert!(text.contains("cleanup       skipped"), "{text}");
        assert!(text.ends_with("verify http://h:1: FAILED in 13 ms\n"), "{text}");
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["checks"][0]["outcome"], "failed");
    }
}
