//! `harness verify --url URL`: the post-deploy checks, against any deployed
//! books-ms.
//!
//! In order, stopping at the first failure: `ready` (`GET /ready` is 200),
//! `version` (`/version` is `{name, version, revision}`, returned so a deploy
//! can compare the revision), `integ-list` (the original integ test: `GET
//! /api/v1/books` answers 200), then the chapter's own checks on the ids
//! reserved for them (`verify.ids`): `reserved-ids` (no user's book sits
//! there), `put` (one book per id, author "John Doe"), `list` (the list, read
//! page by page around the reserved ids, holds exactly those summaries),
//! `get-by-id` (each book comes back equal in all four fields), and last
//! `cleanup`, which also runs when a check failed after the first write.
//!
//! Invariants: a book the checks did not write is never overwritten nor
//! removed, even by a user racing the checks: the checks' PUTs only create
//! (`If-None-Match: *`), and a DELETE removes only a book that is exactly
//! what this run wrote (a random token in its description), unchanged since
//! it was read (`If-Match` its `ETag`); every request has a timeout and the
//! whole run a deadline. A book left by an interrupted run (it carries
//! [`MARKER`]) is removed the same way, only if unchanged.
mod checks;
mod http;
mod report;

use std::time::{Duration, Instant};

use serde_json::Value;

pub use self::report::{Check, Problem, ServiceVersion, VerifyError, VerifyReport};
use crate::progress::Reporter;
pub use crate::runner::Outcome;
use crate::runner::{millis, Done, Runner};
use checks::*;
use http::Http;

/// In the description of every book the checks write: how a later run (or a
/// person) recognises a book it may replace or remove.
pub const MARKER: &str = "written by harness verify; safe to delete";

/// The checks, in the order they run.
pub const CHECKS: [Check; 8] = Check::ALL;

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

// ------------------------------------------------------------------ the run

/// Runs every check against the books-ms at `url`, writing only on `ids`.
pub async fn verify(url: &str, ids: &[i32], reporter: &Reporter) -> Result<VerifyReport, VerifyError> {
    verify_with_token(url, ids, &[], None, reporter).await
}

/// [`verify`] with the configured ids (`verify.ids`), `headers`, and the
/// write token (`verify.write_token`, else `WRITE_TOKEN` in the
/// environment, as a deploy's command check gets it), sent on the checks'
/// writes.
pub async fn verify_configured(
    config: &crate::config::Config,
    url: &str,
    headers: &[(String, String)],
    reporter: &Reporter,
) -> Result<VerifyReport, VerifyError> {
    use secrecy::ExposeSecret;
    let from_env = std::env::var("WRITE_TOKEN").ok().filter(|t| !t.is_empty());
    let token = config.verify.write_token.as_ref().map(|t| t.expose_secret().to_owned()).or(from_env);
    verify_with_token(url, &config.verify.ids, headers, token.as_deref(), reporter).await
}

/// [`verify`], sending `headers` with every request (a preview header),
/// and `token` (a books-ms's `WRITE_TOKEN`) as
/// `Authorization: Bearer` on the checks' writes (their PUTs and DELETEs)
/// and on nothing else: reads are open, and a token sent where none is
/// needed is one more place it could leak from.
pub async fn verify_with_token(
    url: &str,
    ids: &[i32],
    headers: &[(String, String)],
    token: Option<&str>,
    reporter: &Reporter,
) -> Result<VerifyReport, VerifyError> {
    let started = Instant::now();
    let report = VerifyReport {
        url: url.to_owned(),
        ids: ids.to_vec(),
        passed: false,
        version: None,
        checks: Vec::new(),
        duration_ms: 0,
        error: None,
    };
    let mut run = Recorder { report, runner: Runner::new(reporter, "verify: ") };
    let (http, ids, run_id) = match prepare(url, ids, headers, token) {
        Ok(ready) => ready,
        Err(problem) => return Err(run.finish(started, (Check::Input, problem), None)),
    };
    let books: Vec<Value> = ids.iter().enumerate().map(|(i, &id)| check_book(id, i + 1, ids.len(), &run_id)).collect();

    // Set just before the first write: from then on the cleanup must run.
    let mut wrote = false;
    // The ids this run's create-only PUTs wrote, and the ETag of each.
    let mut created = Vec::new();
    // Ctrl-C or SIGTERM ends the checks, never the cleanup: the signal is
    // theirs to answer while it is up. Only one that comes from now on: a
    // rollback's checks run after the signal that caused the rollback.
    let _shield = crate::interrupt::shield();
    let seen = crate::interrupt::received();
    let ended = tokio::select! {
        checks = tokio::time::timeout(
            CHECKS_DEADLINE,
            run_checks(&mut run, &http, &ids, &books, &mut wrote, &mut created),
        ) => Ok(checks),
        signal = crate::interrupt::requested_after(seen) => Err(signal),
    };
    let current = |run: &Recorder| {
        let check = run.runner.current().and_then(|c| CHECKS.into_iter().find(|n| n.name() == c));
        check.unwrap_or(Check::Ready)
    };
    let failure = match ended {
        Ok(Ok(Ok(()))) => None,
        Ok(Ok(Err(failure))) => Some(failure),
        Ok(Err(_)) => {
            let check = current(&run);
            let problem = Problem::Deadline { url: http.base.clone(), check, secs: CHECKS_DEADLINE.as_secs() };
            run.interrupted(problem.to_string());
            Some((check, problem))
        }
        Err(signal) => {
            let check = current(&run);
            let problem = Problem::Interrupted { signal, check };
            run.interrupted(problem.to_string());
            Some((check, problem))
        }
    };
    let cleanup = if wrote { clean_up(&mut run, &http, &ids, &books, &created).await } else { None };
    match (failure, cleanup) {
        (None, None) => {
            run.report.passed = true;
            run.report.checks = run.runner.into_records();
            run.report.duration_ms = millis(started.elapsed());
            Ok(run.report)
        }
        (None, Some(problem)) => Err(run.finish(started, (Check::Cleanup, problem), None)),
        (Some(failure), cleanup) => Err(run.finish(started, failure, cleanup)),
    }
}

/// The client, the ids and this run's token, from the input.
fn prepare(
    url: &str,
    ids: &[i32],
    headers: &[(String, String)],
    token: Option<&str>,
) -> Result<(Http, Vec<i32>, String), Problem> {
    let base = parse_base(url)?;
    let ids = validate_ids(ids)?;
    Ok((Http::new(base, headers, token)?, ids, run_id()?))
}

/// Removes what the run wrote, within its own deadline; the problem, if
/// the cleanup failed.
async fn clean_up(
    run: &mut Recorder<'_>,
    http: &Http,
    ids: &[i32],
    books: &[Value],
    created: &[(i32, String)],
) -> Option<Problem> {
    let cleaning = tokio::time::timeout(CLEANUP_DEADLINE, run.check(Check::Cleanup, cleanup(http, books, created)));
    match cleaning.await {
        Ok(Ok(())) => None,
        Ok(Err(problem)) => Some(problem),
        Err(_) => {
            let deadline =
                Problem::Deadline { url: http.base.clone(), check: Check::Cleanup, secs: CLEANUP_DEADLINE.as_secs() };
            let problem = Problem::Cleanup { first: Box::new(deadline), left: ids.to_vec(), base: http.base.clone() };
            run.interrupted(problem.to_string());
            Some(problem)
        }
    }
}

/// Everything but the cleanup, stopping at the first failure.
async fn run_checks(
    run: &mut Recorder<'_>,
    http: &Http,
    ids: &[i32],
    books: &[Value],
    wrote: &mut bool,
    created: &mut Vec<(i32, String)>,
) -> Result<(), (Check, Problem)> {
    run.check(Check::Ready, check_ready(http)).await.map_err(at(Check::Ready))?;
    let version = run.check(Check::Version, check_version(http)).await.map_err(at(Check::Version))?;
    run.report.version = Some(version);
    run.check(Check::IntegList, check_integ_list(http)).await.map_err(at(Check::IntegList))?;
    run.check(Check::ReservedIds, check_reserved_ids(http, ids)).await.map_err(at(Check::ReservedIds))?;
    *wrote = true;
    run.check(Check::Put, check_put(http, books, created)).await.map_err(at(Check::Put))?;
    run.check(Check::List, check_list(http, books)).await.map_err(at(Check::List))?;
    run.check(Check::GetById, check_get_by_id(http, books)).await.map_err(at(Check::GetById))?;
    Ok(())
}

/// Names the check a problem came from.
fn at(check: Check) -> impl FnOnce(Problem) -> (Check, Problem) {
    move |problem| (check, problem)
}

/// Runs the checks and keeps the report while they run.
struct Recorder<'r> {
    runner: Runner<'r>,
    report: VerifyReport,
}

impl Recorder<'_> {
    /// Runs one check and records its outcome, duration and detail.
    async fn check<T, F>(&mut self, name: Check, check: F) -> Result<T, Problem>
    where
        F: std::future::Future<Output = Result<(T, String), Problem>>,
    {
        let work = async { check.await.map(|(value, detail)| Done::passed(value, detail)) };
        self.runner.step(name.name(), "running", work).await
    }

    /// Records the check a deadline interrupted as failed.
    fn interrupted(&mut self, detail: String) {
        self.runner.interrupted(detail);
    }

    /// The failed run's error, with the checks that did not run marked as
    /// skipped.
    fn finish(mut self, started: Instant, (check, problem): (Check, Problem), cleanup: Option<Problem>) -> VerifyError {
        for check in CHECKS {
            if !self.runner.has(check.name()) {
                let detail = if check == Check::Cleanup { "nothing was written" } else { "an earlier check failed" };
                self.runner.skip(check.name(), detail);
            }
        }
        self.report.checks = self.runner.into_records();
        self.report.duration_ms = millis(started.elapsed());
        let mut error = VerifyError { check, problem, cleanup, report: Box::new(self.report) };
        error.report.error = Some(error.to_string());
        error
    }
}
