//! The history of deploys and rollbacks, kept on prod itself: who deployed
//! what, when, each step's outcome and duration, and how it ended.
//!
//! It lives in a named volume mounted in a container that is created and
//! never started (`P-history`): Docker's archive API reads and writes the
//! files of a stopped container, volumes included, so the record needs no
//! process on prod, survives the proxy and the colours being made again,
//! and is reached through prod's Docker API like everything else. Written
//! under the deploy lock; the last [`KEEP`] entries are kept.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::names::{Colour, Names};
use crate::config::Config;
use crate::engine::Engine;
use crate::release::Release;
use crate::runner::StepRecord;

/// Where the volume is mounted in the history container.
pub const DIR: &str = "/history";
const FILE: &str = "history.json";
/// How many entries are kept.
pub const KEEP: usize = 200;

/// What an entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Deploy,
    Rollback,
    /// `harness lock release --force` removed another's lock.
    LockRelease,
    /// `harness remove` took the service off prod.
    Remove,
    /// Written by a later release of the harness: read, kept as is.
    #[serde(other)]
    Other,
}

/// How it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Recorded when it starts; replaced by how it ended.
    Running,
    Succeeded,
    /// Prod already served the release: nothing was replaced.
    Unchanged,
    Failed,
    /// Its harness ended without saying how (killed).
    Interrupted,
    /// A lock released with `--force`.
    Forced,
    /// Written by a later release of the harness.
    #[serde(other)]
    Other,
}

impl Outcome {
    /// The release it ran serves (or served) as deployed: one a rollback
    /// can go back to.
    pub fn served(self) -> bool {
        matches!(self, Outcome::Succeeded | Outcome::Unchanged)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Kind::Deploy => "deploy",
            Kind::Rollback => "rollback",
            Kind::LockRelease => "lock-release",
            Kind::Remove => "remove",
            Kind::Other => "other",
        })
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Outcome::Running => "running",
            Outcome::Succeeded => "succeeded",
            Outcome::Unchanged => "unchanged",
            Outcome::Failed => "failed",
            Outcome::Interrupted => "interrupted",
            Outcome::Forced => "forced",
            Outcome::Other => "other",
        })
    }
}

/// One deploy or rollback.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub kind: Kind,
    /// Who ran it: the harness's process, machine and user.
    pub by: String,
    /// RFC 3339, UTC.
    pub started: String,
    pub duration_ms: u64,
    pub release: Release,
    /// The colour the release ran as; none when nothing was replaced, or
    /// on a swarm.
    pub colour: Option<Colour>,
    /// The release that was live before, if any.
    pub previous: Option<Release>,
    pub outcome: Outcome,
    pub error: Option<String>,
    pub steps: Vec<StepRecord>,
}

/// The entries on prod, oldest first; none before the first deploy.
pub async fn read(prod: &Engine, container: &str) -> Result<Vec<Entry>, HistoryError> {
    let Some(text) = prod.read_file(container, DIR, FILE).await? else { return Ok(Vec::new()) };
    serde_json::from_str(&text).map_err(|e| HistoryError::Unreadable(format!("{DIR}/{FILE} is not a history: {e}")))
}

/// How many of the last deploys `harness status` shows.
pub const STATUS_HISTORY: usize = 5;

/// For `harness status`: who holds the deploy lock, and the last
/// [`STATUS_HISTORY`] entries of the history, oldest first.
pub async fn lock_and_last_entries(engine: &Engine, config: &Config) -> anyhow::Result<(Option<String>, Vec<Entry>)> {
    let names = Names::new(config.project());
    let lock = engine.inspect_container(&names.lock).await?.map(super::names::lock_holder);
    let mut entries = read(engine, &names.history).await?;
    entries.drain(..entries.len().saturating_sub(STATUS_HISTORY));
    Ok((lock, entries))
}

/// Adds `entry`, or replaces the one of the same run (same `started` and
/// `by`: a deploy records itself `running` when it starts, then how it
/// ended), keeping the last [`KEEP`]. Whoever records holds the deploy
/// lock, so another entry still `running` belongs to a deploy that ended
/// without saying how (killed): it becomes `interrupted`.
pub async fn record(prod: &Engine, container: &str, entry: Entry) -> Result<(), HistoryError> {
    let mut entries = read(prod, container).await?;
    merge(&mut entries, entry);
    let start = entries.len().saturating_sub(KEEP);
    let text = serde_json::to_string_pretty(&entries[start..]).expect("entries serialise");
    prod.write_files(container, DIR, &[(FILE, &text)]).await?;
    Ok(())
}

fn merge(entries: &mut Vec<Entry>, entry: Entry) {
    for other in entries.iter_mut() {
        if other.outcome == Outcome::Running && (other.started != entry.started || other.by != entry.by) {
            other.outcome = Outcome::Interrupted;
            other.error = Some(
                "the harness running it ended before it could say how (killed?); prod was left as the steps \
                 recorded here say, and the next deploy repaired it"
                    .to_owned(),
            );
        }
    }
    match entries.iter_mut().find(|e| e.started == entry.started && e.by == entry.by) {
        Some(same) => *same = entry,
        None => entries.push(entry),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error(transparent)]
    Prod(#[from] anyhow::Error),
    #[error("the history on prod cannot be read: {0}")]
    Unreadable(String),
}

/// Now, RFC 3339 in UTC, to the second.
pub fn now() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::Outcome as StepOutcome;

    #[test]
    fn a_runs_start_is_replaced_by_its_end_and_another_running_one_is_interrupted() {
        let entry = Entry {
            kind: Kind::Deploy,
            by: "harness pid 1 on cd".into(),
            started: now(),
            duration_ms: 12,
            release: Release::given("r/a@sha256:1".into(), "v1".into(), Some("r1".into())),
            colour: Some(Colour::Blue),
            previous: None,
            outcome: Outcome::Succeeded,
            error: None,
            steps: vec![StepRecord {
                name: "start books-ms-blue".into(),
                outcome: StepOutcome::Passed,
                duration_ms: 3,
                detail: String::new(),
            }],
        };
        let mut entries = vec![Entry { outcome: Outcome::Running, by: "killed one".into(), ..entry.clone() }];
        merge(&mut entries, Entry { outcome: Outcome::Running, ..entry.clone() });
        merge(&mut entries, entry.clone());
        let outcomes: Vec<Outcome> = entries.iter().map(|e| e.outcome).collect();
        assert_eq!(outcomes, [Outcome::Interrupted, Outcome::Succeeded], "a run's start is replaced by its end");
        let text = serde_json::to_string(&entries).unwrap();
        let back: Vec<Entry> = serde_json::from_str(&text).unwrap();
        assert_eq!(back, entries);
        assert!(now().ends_with('Z') && now().len() == 20, "{}", now());
    }

    #[test]
    fn what_older_releases_wrote_is_read_and_what_later_ones_write_is_kept_readable() {
        let old = r#"[{"kind":"deploy","by":"harness pid 1","started":"2026-12-01T00:00:00Z","duration_ms":5,
            "release":{"image":"r/a@sha256:1","version":"v1","revision":""},"colour":"green","previous":null,
            "outcome":"unchanged","error":null,"steps":[]},
            {"kind":"canary","by":"harness pid 2","started":"2026-12-02T00:00:00Z","duration_ms":5,
            "release":{"image":"r/a@sha256:1","version":"v1","revision":"r1"},"colour":null,"previous":null,
            "outcome":"promoted","error":null,"steps":[]}]"#;
        let entries: Vec<Entry> = serde_json::from_str(old).unwrap();
        assert_eq!(
            (entries[0].kind, entries[0].outcome, entries[0].colour),
            (Kind::Deploy, Outcome::Unchanged, Some(Colour::Green))
        );
        assert_eq!(entries[0].release.revision, None);
        assert_eq!((entries[1].kind, entries[1].outcome), (Kind::Other, Outcome::Other));
        assert!(entries[0].outcome.served() && !Outcome::Failed.served());
    }
}
