//! What a verify run reports: the checks' records, what `/version` said,
//! and, when it failed, which check and why ([`VerifyError`], [`Problem`]).

use std::fmt;

use reqwest::StatusCode;
use serde::{Deserialize, Serialize};

use crate::runner::{self, StepRecord};

/// What a run did: one entry per check, for the closing table and `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub url: String,
    pub ids: Vec<i32>,
    pub passed: bool,
    /// What `/version` said, when that check ran.
    pub version: Option<ServiceVersion>,
    pub checks: Vec<StepRecord>,
    pub duration_ms: u64,
    /// The error, when the run failed.
    pub error: Option<String>,
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
    pub fn check(&self, name: &str) -> Option<&StepRecord> {
        self.checks.iter().find(|c| c.name == name)
    }
}

/// The closing table.
impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&runner::table("check", &self.checks))?;
        let verdict = if self.passed { "passed" } else { "FAILED" };
        writeln!(f, "verify {}: {verdict} in {} ms", self.url, self.duration_ms)
    }
}

/// One check of a verify run (`input`: the URL and ids, before any).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Check {
    Input,
    Ready,
    Version,
    IntegList,
    ReservedIds,
    Put,
    List,
    GetById,
    Cleanup,
}

impl Check {
    /// The checks, in the order they run.
    pub const ALL: [Check; 8] = [
        Check::Ready,
        Check::Version,
        Check::IntegList,
        Check::ReservedIds,
        Check::Put,
        Check::List,
        Check::GetById,
        Check::Cleanup,
    ];

    /// Its name in reports and errors.
    pub fn name(self) -> &'static str {
        match self {
            Check::Input => "input",
            Check::Ready => "ready",
            Check::Version => "version",
            Check::IntegList => "integ-list",
            Check::ReservedIds => "reserved-ids",
            Check::Put => "put",
            Check::List => "list",
            Check::GetById => "get-by-id",
            Check::Cleanup => "cleanup",
        }
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// A failed run: which check, what went wrong, whether the cleanup failed
/// too, and the report up to there.
#[derive(Debug)]
pub struct VerifyError {
    /// The check that failed (`input` for a bad URL or bad ids).
    pub check: Check,
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
    #[error(
        "`{url}` is not a usable base URL ({reason}); pass the service's address, e.g. --url http://10.200.0.2:8080"
    )]
    BadUrl { url: String, reason: String },
    #[error("verify.ids {reason}; set `verify.ids` in harness.toml or HARNESS_VERIFY__IDS, e.g. HARNESS_VERIFY__IDS='[2147483101,2147483102,2147483103]'")]
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
    #[error("book {id} exists on {url} (title {title:?}, author {author:?}) and was not written by the checks; verify writes nothing rather than overwrite a user's book: give the checks other ids with `verify.ids` in harness.toml or HARNESS_VERIFY__IDS")]
    IdInUse { id: i32, url: String, title: String, author: String },
    #[error("the checks did not finish within {secs} s (during `{check}`): the service at {url} answers too slowly")]
    Deadline { url: String, check: Check, secs: u64 },
    #[error("{signal} during `{check}`: the checks stopped there")]
    Interrupted { signal: crate::interrupt::Interrupted, check: Check },
    #[error("book {id} at {url} is no longer the one the checks wrote, so someone replaced it during the checks: left as it is")]
    Replaced { id: i32, url: String },
    #[error("reserved id {id} was taken by someone else {when}: their book at {url} is left as it is and verify wrote nothing there; give the checks ids no one uses with `verify.ids` in harness.toml or HARNESS_VERIFY__IDS")]
    Taken { id: i32, url: String, when: &'static str },
    #[error("{first}; books the checks wrote may be left on ids {left:?}: once the service is healthy, run verify again (it removes them) or DELETE {base}/api/v1/books/_id/ID")]
    Cleanup { first: Box<Problem>, left: Vec<i32>, base: String },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::Outcome;

    #[test]
    fn the_table_lists_every_check_and_the_verdict() {
        let report = VerifyReport {
            url: "http://h:1".into(),
            ids: vec![1],
            passed: false,
            version: None,
            checks: vec![
                StepRecord { name: "ready".into(), outcome: Outcome::Failed, duration_ms: 12, detail: "503".into() },
                StepRecord {
                    name: "cleanup".into(),
                    outcome: Outcome::Skipped,
                    duration_ms: 0,
                    detail: "nothing was written".into(),
                },
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
