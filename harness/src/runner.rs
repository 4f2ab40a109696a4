//! The one step runner: `pipeline` and `test` run their steps with it, and
//! `verify` its checks. Each step gets a spinner (on a terminal), then a
//! [`StepRecord`]: its [`Outcome`], how long it took and one line of detail.
//! [`table`] renders the records for people; they serialise for `--json`.

use std::fmt::{self, Display};
use std::future::Future;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::progress::{Reporter, Spinner};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Passed,
    /// The step's work was already done for exactly this input (the test
    /// step, for a committed tree that passed them before).
    Reused,
    Failed,
    /// Not run: an earlier step failed, or there was nothing to do.
    Skipped,
    /// Started, then stopped before it ended: a step running beside it
    /// failed (the pipeline's package and build run beside the tests).
    Stopped,
}

impl Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad`, so that width and alignment flags apply.
        f.pad(match self {
            Outcome::Passed => "passed",
            Outcome::Reused => "reused",
            Outcome::Failed => "FAILED",
            Outcome::Skipped => "skipped",
            Outcome::Stopped => "stopped",
        })
    }
}

/// One step (or check) as it ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRecord {
    pub name: String,
    pub outcome: Outcome,
    pub duration_ms: u64,
    /// What was seen, or the first line of why it failed, or why it did not
    /// run.
    pub detail: String,
}

/// A record and when its step started, in milliseconds from the start of
/// the run: steps may run beside each other (the pipeline's), and this says
/// what ran when. Serialised as the record's fields plus `started_ms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timed {
    #[serde(flatten)]
    pub record: StepRecord,
    pub started_ms: u64,
}

/// What a step returns when it succeeds: a value for the caller, and how
/// the step went.
pub struct Done<T> {
    pub value: T,
    pub outcome: Outcome,
    pub detail: String,
}

impl<T> Done<T> {
    pub fn passed(value: T, detail: impl Into<String>) -> Self {
        Done { value, outcome: Outcome::Passed, detail: detail.into() }
    }

    pub fn reused(value: T, detail: impl Into<String>) -> Self {
        Done { value, outcome: Outcome::Reused, detail: detail.into() }
    }

    /// Not run, and why (nothing to do: the configuration has none).
    pub fn skipped(value: T, detail: impl Into<String>) -> Self {
        Done { value, outcome: Outcome::Skipped, detail: detail.into() }
    }
}

/// Runs steps and keeps their records: one at a time with [`Runner::step`],
/// or beside each other with [`Runner::measure`] and [`Runner::record`].
pub struct Runner<'r> {
    reporter: &'r Reporter,
    /// Before each step's name in progress lines ("verify: ").
    prefix: &'static str,
    /// When the run started: the origin of each record's `started_ms`.
    origin: Instant,
    records: Vec<Timed>,
    /// The step running now: set while its future runs, so that a deadline
    /// that drops the future can still record it ([`Runner::interrupted`]).
    current: Option<(String, Instant)>,
}

impl<'r> Runner<'r> {
    pub fn new(reporter: &'r Reporter, prefix: &'static str) -> Self {
        Runner { reporter, prefix, origin: Instant::now(), records: Vec::new(), current: None }
    }

    /// Runs `work` as the step `name`, described by `label` while it runs,
    /// and records how it went.
    pub async fn step<T, E, F>(&mut self, name: &str, label: &str, work: F) -> Result<T, E>
    where
        F: Future<Output = Result<Done<T>, E>>,
        E: Display,
    {
        let spinner = Spinner(self.reporter.spinner(format!("{}{name}: {label}", self.prefix)));
        self.current = Some((name.to_owned(), Instant::now()));
        let result = work.await;
        drop(spinner);
        match result {
            Ok(done) => {
                self.record_current(done.outcome, done.detail);
                Ok(done.value)
            }
            Err(error) => {
                self.record_current(Outcome::Failed, first_line(&format!("{error:#}")));
                Err(error)
            }
        }
    }

    /// Runs `work` as the step `name` like [`Runner::step`], without
    /// recording it: for steps that run beside each other, which
    /// [`Runner::record`] then records, each with its own start and
    /// duration. A step dropped before it ends is recorded by the caller
    /// (as [`Outcome::Stopped`], from `started`).
    pub async fn measure<T, E, F>(&self, name: &str, label: &str, started: Instant, work: F) -> (Result<T, E>, Timed)
    where
        F: Future<Output = Result<Done<T>, E>>,
        E: Display,
    {
        let spinner = Spinner(self.reporter.spinner(format!("{}{name}: {label}", self.prefix)));
        let result = work.await;
        drop(spinner);
        match result {
            Ok(done) => (Ok(done.value), self.timed(name, done.outcome, started, done.detail)),
            Err(error) => {
                let detail = first_line(&format!("{error:#}"));
                (Err(error), self.timed(name, Outcome::Failed, started, detail))
            }
        }
    }

    /// A record of the step `name` that started at `started` and ended now,
    /// shown as a progress line.
    pub fn timed(&self, name: &str, outcome: Outcome, started: Instant, detail: String) -> Timed {
        let duration_ms = millis(started.elapsed());
        self.reporter.line(format!("{outcome:<7} {}{name} ({}) {detail}", self.prefix, time(duration_ms)));
        let started_ms = millis(started.saturating_duration_since(self.origin));
        Timed { record: StepRecord { name: name.to_owned(), outcome, duration_ms, detail }, started_ms }
    }

    /// Keeps a record made by [`Runner::timed`] or [`Runner::measure`].
    pub fn record(&mut self, timed: Timed) {
        self.records.push(timed);
    }

    /// The step that was running when a deadline dropped it, if any: its
    /// name, now recorded as failed with `detail`.
    pub fn interrupted(&mut self, detail: impl Into<String>) -> Option<String> {
        let name = self.current.as_ref().map(|(name, _)| name.clone())?;
        self.record_current(Outcome::Failed, detail.into());
        Some(name)
    }

    /// The name of the step running now.
    pub fn current(&self) -> Option<&str> {
        self.current.as_ref().map(|(name, _)| name.as_str())
    }

    /// Records a step that did not run.
    pub fn skip(&mut self, name: &str, detail: impl Into<String>) {
        let record =
            StepRecord { name: name.to_owned(), outcome: Outcome::Skipped, duration_ms: 0, detail: detail.into() };
        let started_ms = millis(self.origin.elapsed());
        self.records.push(Timed { record, started_ms });
    }

    pub fn has(&self, name: &str) -> bool {
        self.records.iter().any(|r| r.record.name == name)
    }

    pub fn into_records(self) -> Vec<StepRecord> {
        self.records.into_iter().map(|timed| timed.record).collect()
    }

    /// The records with when each step started.
    pub fn into_timed(self) -> Vec<Timed> {
        self.records
    }

    fn record_current(&mut self, outcome: Outcome, detail: String) {
        if let Some((name, started)) = self.current.take() {
            let timed = self.timed(&name, outcome, started, detail);
            self.records.push(timed);
        }
    }
}

/// The closing table: one row per record under a heading naming the first
/// column ("step", "check"). Details are cut to one line of
/// [`DETAIL_CHARS`].
pub fn table(heading: &str, records: &[StepRecord]) -> String {
    let mut out = format!("{heading:<13} {:<8} {:>8}  detail\n", "outcome", "time");
    for record in records {
        let time = if record.outcome == Outcome::Skipped { "-".to_owned() } else { time(record.duration_ms) };
        let detail = cut(&record.detail, DETAIL_CHARS);
        let row = format!("{:<13} {:<8} {time:>8}  {detail}", record.name, record.outcome);
        out.push_str(row.trim_end());
        out.push('\n');
    }
    out
}

/// The pipeline's table: [`table`] with when each step started, in seconds
/// from the start of the run, so that steps that ran beside each other show
/// as such.
pub fn timeline(heading: &str, records: &[Timed]) -> String {
    let mut out = format!("{heading:<13} {:<8} {:>7} {:>8}  detail\n", "outcome", "start", "time");
    for Timed { record, started_ms } in records {
        let (start, time) = if record.outcome == Outcome::Skipped {
            ("-".to_owned(), "-".to_owned())
        } else {
            (format!("{:.1} s", *started_ms as f64 / 1000.0), time(record.duration_ms))
        };
        let detail = cut(&record.detail, DETAIL_CHARS);
        let row = format!("{:<13} {:<8} {start:>7} {time:>8}  {detail}", record.name, record.outcome);
        out.push_str(row.trim_end());
        out.push('\n');
    }
    out
}

/// How much of a detail a table row shows.
pub const DETAIL_CHARS: usize = 100;

/// `12 ms` under a second, `1.2 s` from there.
pub fn time(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else {
        format!("{:.1} s", ms as f64 / 1000.0)
    }
}

/// The first line of a text.
pub fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().to_owned()
}

/// At most `max` characters, with `…` when cut.
pub fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

pub fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str, outcome: Outcome, duration_ms: u64, detail: &str) -> StepRecord {
        StepRecord { name: name.into(), outcome, duration_ms, detail: detail.into() }
    }

    #[test]
    fn the_table_shows_outcomes_times_and_skips() {
        let table = table(
            "step",
            &[
                record("checkout", Outcome::Passed, 1200, "tree"),
                record("test", Outcome::Failed, 3000, "boom"),
                record("verify", Outcome::Reused, 12, "before"),
                record("package", Outcome::Skipped, 0, ""),
            ],
        );
        assert!(table.starts_with("step          outcome      time  detail\n"), "{table}");
        assert!(table.contains("checkout      passed      1.2 s  tree\n"), "{table}");
        assert!(table.contains("test          FAILED      3.0 s  boom\n"), "{table}");
        assert!(table.contains("verify        reused      12 ms  before\n"), "{table}");
        assert!(table.contains("package       skipped         -\n"), "{table}");
    }

    #[test]
    fn long_details_are_cut_in_the_table_only() {
        let long = "x".repeat(150);
        let records = [record("a", Outcome::Passed, 1, &long)];
        let table = table("step", &records);
        assert!(table.contains(&format!("{}…\n", "x".repeat(DETAIL_CHARS))), "{table}");
        assert_eq!(records[0].detail.len(), 150);
        assert_eq!(first_line("a\nb"), "a");
        assert_eq!(cut(&"é".repeat(150), 100).chars().count(), 101);
    }

    #[tokio::test]
    async fn steps_run_beside_each_other_keep_their_own_starts_and_durations() {
        let reporter = Reporter::hidden();
        let mut runner = Runner::new(&reporter, "");
        let started = Instant::now();
        let slow = async {
            tokio::time::sleep(Duration::from_millis(60)).await;
            Ok::<_, String>(Done::passed((), "slow"))
        };
        let fast = async { Err::<Done<()>, _>("bad".to_owned()) };
        let ((slow, slow_record), (fast, fast_record)) = tokio::join!(
            runner.measure("slow", "a slow step", started, slow),
            runner.measure("fast", "a failing step", started, fast)
        );
        assert!(slow.is_ok() && fast.is_err());
        let stopped = runner.timed("third", Outcome::Stopped, started, "stopped: the tests failed".into());
        for timed in [slow_record, fast_record, stopped] {
            runner.record(timed);
        }
        runner.skip("fourth", "");
        let records = runner.into_timed();
        let seen: Vec<_> = records.iter().map(|t| (t.record.name.as_str(), t.record.outcome)).collect();
        assert_eq!(
            seen,
            [
                ("slow", Outcome::Passed),
                ("fast", Outcome::Failed),
                ("third", Outcome::Stopped),
                ("fourth", Outcome::Skipped)
            ]
        );
        // Both started at once; the slow one took its time, the failing one none.
        assert!(records[0].started_ms == records[1].started_ms, "{records:?}");
        assert!(records[0].record.duration_ms >= 60 && records[1].record.duration_ms < 60, "{records:?}");
        let json = serde_json::to_value(&records[0]).unwrap();
        assert_eq!(json["name"], "slow");
        assert!(json["started_ms"].is_u64() && json["duration_ms"].is_u64(), "{json}");

        let table = timeline("step", &records);
        assert!(table.starts_with("step          outcome    start     time  detail\n"), "{table}");
        assert!(table.contains("third         stopped    0.0 s"), "{table}");
        assert!(table.contains("fourth        skipped        -        -\n"), "{table}");
    }

    #[tokio::test]
    async fn the_runner_records_a_pass_a_failure_and_an_interruption() {
        let reporter = Reporter::hidden();
        let mut runner = Runner::new(&reporter, "");
        let value = runner.step("one", "first", async { Ok::<_, String>(Done::passed(7, "seven")) }).await;
        assert_eq!(value, Ok(7));
        let failed = runner.step("two", "second", async { Err::<Done<()>, _>("bad\nmore".to_owned()) }).await;
        assert!(failed.is_err());
        let slow = runner.step("three", "third", std::future::pending::<Result<Done<()>, String>>());
        assert!(tokio::time::timeout(Duration::from_millis(10), slow).await.is_err());
        assert_eq!(runner.current(), Some("three"));
        assert_eq!(runner.interrupted("deadline").as_deref(), Some("three"));
        runner.skip("four", "an earlier step failed");
        assert!(runner.has("four"));
        let records = runner.into_records();
        let outcomes: Vec<_> = records.iter().map(|r| (r.name.as_str(), r.outcome, r.detail.as_str())).collect();
        assert_eq!(
            outcomes,
            [
                ("one", Outcome::Passed, "seven"),
                ("two", Outcome::Failed, "bad"),
                ("three", Outcome::Failed, "deadline"),
                ("four", Outcome::Skipped, "an earlier step failed"),
            ]
        );
    }
}
