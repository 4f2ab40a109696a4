//! `harness logs`: what both targets share. A target names its log
//! [`Source`]s (the colours that run on a single host, the app's running
//! tasks on a swarm, or the accessory); [`read`] reads them through the
//! engine's API, marks each line with its source, keeps those `--grep`
//! matches, and hands them to a sink (`main.rs` prints). Without
//! `--follow` the sources are read to their end within [`READ_DEADLINE`]
//! and merged in time order; with it, lines go out as they come until
//! every source ends or the run is dropped (Ctrl-C), which closes the
//! streams.

use std::str::FromStr;
use std::time::Duration;

use bollard::container::LogOutput;
use bollard::query_parameters::{LogsOptions, LogsOptionsBuilder};
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::progress::Reporter;

/// How long reading every source to its end may take without `--follow`:
/// a task on a node that is gone never ends its stream.
pub const READ_DEADLINE: Duration = Duration::from_secs(8);
/// The lines each source gives when neither `--lines`, `--since` nor
/// `--grep` says otherwise (as Kamal's `app logs`).
pub const DEFAULT_LINES: u64 = 100;

/// Whose logs: the app's (the live release), or an accessory's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Of {
    App,
    /// The database: `P-db`, a container or a service.
    Db,
}

/// What `harness logs` was asked for.
#[derive(Debug, Clone)]
pub struct LogRequest {
    pub of: Of,
    pub since: Option<Since>,
    /// The last lines of each source.
    pub lines: Option<u64>,
    pub follow: bool,
    pub grep: Option<Grep>,
}

impl LogRequest {
    /// The engine's query: both streams, with timestamps (to merge the
    /// sources in time order), from `since`, the last `lines` of each.
    pub fn api_options(&self, now: OffsetDateTime) -> LogsOptions {
        let tail = match (self.lines, &self.since, &self.grep) {
            (Some(lines), _, _) => lines.to_string(),
            (None, None, None) => DEFAULT_LINES.to_string(),
            (None, _, _) => "all".to_owned(),
        };
        let mut options =
            LogsOptionsBuilder::default().stdout(true).stderr(true).timestamps(true).follow(self.follow).tail(&tail);
        if let Some(since) = &self.since {
            // The engine takes whole seconds (and 0 means "from the start").
            options = options.since(i32::try_from(since.at(now).unix_timestamp()).unwrap_or(i32::MAX).max(1));
        }
        options.build()
    }
}

/// `--since`: a time (RFC 3339) or a duration before now (`90s`, `10m`,
/// `2h`, `1d`, `1h30m`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Since {
    Ago(Duration),
    At(OffsetDateTime),
}

impl Since {
    /// The time it names, `now` being now.
    pub fn at(&self, now: OffsetDateTime) -> OffsetDateTime {
        match self {
            Since::Ago(ago) => now - *ago,
            Since::At(at) => *at,
        }
    }
}

impl FromStr for Since {
    type Err = String;

    fn from_str(text: &str) -> Result<Since, String> {
        if let Ok(at) = OffsetDateTime::parse(text, &Rfc3339) {
            return Ok(Since::At(at));
        }
        let refuse = || format!("`{text}` is neither a duration (90s, 10m, 2h, 1d, 1h30m) nor an RFC 3339 time");
        let mut total = 0u64;
        let mut number = String::new();
        for c in text.trim().chars() {
            if c.is_ascii_digit() {
                number.push(c);
                continue;
            }
            let unit = match c {
                's' => 1,
                'm' => 60,
                'h' => 3600,
                'd' => 86_400,
                _ => return Err(refuse()),
            };
            let value: u64 = number.parse().map_err(|_| refuse())?;
            total = value.checked_mul(unit).and_then(|v| total.checked_add(v)).ok_or_else(refuse)?;
            number.clear();
        }
        if !number.is_empty() || total == 0 {
            return Err(refuse());
        }
        Ok(Since::Ago(Duration::from_secs(total)))
    }
}

/// `--grep PATTERN`: a line matches when it holds the pattern as plain
/// text, or when the pattern, read as a regular expression, matches it;
/// so `GET /books?page=2` finds itself and `5\d\d` finds the 5xx.
#[derive(Debug, Clone)]
pub struct Grep {
    text: String,
    regex: Option<regex::Regex>,
}

impl FromStr for Grep {
    type Err = String;

    fn from_str(text: &str) -> Result<Grep, String> {
        if text.is_empty() {
            return Err("an empty pattern matches every line: leave --grep out".to_owned());
        }
        Ok(Grep { text: text.to_owned(), regex: regex::Regex::new(text).ok() })
    }
}

impl Grep {
    pub fn matches(&self, line: &str) -> bool {
        line.contains(&self.text) || self.regex.as_ref().is_some_and(|r| r.is_match(line))
    }
}

/// One line of a source's log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogLine {
    /// What it is marked with: the colour (single host), the node (swarm)
    /// or the accessory (`db`).
    pub source: String,
    /// When the engine received it, as the engine wrote it (RFC 3339).
    pub time: Option<String>,
    /// `stdout` or `stderr`.
    pub stream: &'static str,
    pub line: String,
    #[serde(skip)]
    at: Option<OffsetDateTime>,
}

impl LogLine {
    /// The line as people read it: `[SOURCE] LINE`.
    pub fn marked(&self) -> String {
        format!("[{}] {}", self.source, self.line)
    }
}

/// One source: its mark and its stream from the engine.
pub struct Source {
    pub mark: String,
    pub stream: BoxStream<'static, Result<LogOutput, bollard::errors::Error>>,
}

/// The lines of one chunk of a source's stream: each with its timestamp
/// (the engine's, before the first space) split off.
pub fn lines_of(mark: &str, output: &LogOutput) -> Vec<LogLine> {
    let (stream, bytes) = match output {
        LogOutput::StdErr { message } => ("stderr", message),
        LogOutput::StdOut { message } | LogOutput::Console { message } | LogOutput::StdIn { message } => {
            ("stdout", message)
        }
    };
    String::from_utf8_lossy(bytes)
        .lines()
        .map(|text| {
            let stamped = text.split_once(' ').and_then(|(time, rest)| {
                OffsetDateTime::parse(time, &Rfc3339).ok().map(|at| (time.to_owned(), at, rest))
            });
            let (time, at, line) = match stamped {
                Some((time, at, rest)) => (Some(time), Some(at), rest),
                None => (None, None, text),
            };
            LogLine { source: mark.to_owned(), time, stream, line: line.to_owned(), at }
        })
        .collect()
}

/// Lines of several sources in time order (a source's own order kept for
/// lines of the same time).
pub fn merge(mut lines: Vec<LogLine>) -> Vec<LogLine> {
    lines.sort_by_key(|l| l.at);
    lines
}

/// Reads `sources` as `request` says, handing each line that `--grep`
/// keeps to `sink`. A source that fails or does not end in time is named
/// in a warning; the error is for when none could be read.
pub async fn read(
    sources: Vec<Source>,
    request: &LogRequest,
    reporter: &Reporter,
    sink: &mut dyn FnMut(&LogLine) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let keep = |line: &LogLine| request.grep.as_ref().is_none_or(|g| g.matches(&line.line));
    let count = sources.len();
    let problems = if request.follow {
        follow(sources, &keep, sink).await?
    } else {
        let deadline = tokio::time::Instant::now() + READ_DEADLINE;
        let read = futures_util::future::join_all(sources.into_iter().map(|s| to_the_end(s, deadline))).await;
        let mut lines = Vec::new();
        let mut problems = Vec::new();
        for (of_source, problem) in read {
            lines.extend(of_source.into_iter().filter(|l| keep(l)));
            problems.extend(problem);
        }
        for line in merge(lines) {
            sink(&line)?;
        }
        problems
    };
    if count > 0 && problems.len() == count {
        anyhow::bail!("no log could be read: {}", problems.join("; "));
    }
    for problem in problems {
        reporter.warn(problem);
    }
    Ok(())
}

/// A source read until it ends, fails or `deadline`: its lines, and what
/// went wrong.
async fn to_the_end(mut source: Source, deadline: tokio::time::Instant) -> (Vec<LogLine>, Option<String>) {
    let mut lines = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, source.stream.next()).await {
            Ok(None) => return (lines, None),
            Ok(Some(Ok(output))) => lines.extend(lines_of(&source.mark, &output)),
            Ok(Some(Err(e))) => return (lines, Some(format!("the logs of {}: {e}", source.mark))),
            Err(_) => {
                let secs = READ_DEADLINE.as_secs();
                return (
                    lines,
                    Some(format!("the logs of {} did not end within {secs} s: shown up to then", source.mark)),
                );
            }
        }
    }
}

/// Every source followed at once, each line out as it comes, until each
/// ended (its container stopped) or the caller drops this (Ctrl-C): what
/// went wrong with any.
async fn follow(
    sources: Vec<Source>,
    keep: &dyn Fn(&LogLine) -> bool,
    sink: &mut dyn FnMut(&LogLine) -> anyhow::Result<()>,
) -> anyhow::Result<Vec<String>> {
    let marked = sources.into_iter().map(|s| {
        let mark = s.mark;
        s.stream.map(move |item| (mark.clone(), item))
    });
    let mut all = futures_util::stream::select_all(marked);
    let mut problems = Vec::new();
    while let Some((mark, item)) = all.next().await {
        match item {
            Ok(output) => {
                for line in lines_of(&mark, &output).into_iter().filter(|l| keep(l)) {
                    sink(&line)?;
                }
            }
            Err(e) => problems.push(format!("the logs of {mark}: {e}")),
        }
    }
    Ok(problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(text: &str) -> LogOutput {
        LogOutput::StdOut { message: text.as_bytes().to_vec().into() }
    }

    #[test]
    fn each_line_is_marked_with_its_source_and_its_timestamp_split_off() {
        let lines = lines_of("blue", &out("2026-01-02T03:04:05.123456789Z GET /health 200\n"));
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].marked(), "[blue] GET /health 200");
        assert_eq!(lines[0].time.as_deref(), Some("2026-01-02T03:04:05.123456789Z"));
        assert_eq!(lines[0].stream, "stdout");
        let err = LogOutput::StdErr { message: "no timestamp here\n".as_bytes().to_vec().into() };
        let lines = lines_of("node2", &err);
        assert_eq!(
            (lines[0].marked(), lines[0].time.clone(), lines[0].stream),
            ("[node2] no timestamp here".to_owned(), None, "stderr")
        );
        let json = serde_json::to_value(&lines[0]).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"source": "node2", "time": null, "stream": "stderr", "line": "no timestamp here"})
        );
    }

    #[test]
    fn the_sources_are_merged_in_time_order() {
        let blue = lines_of("blue", &out("2026-01-01T00:00:01.5Z b1\n2026-01-01T00:00:03Z b2\n"));
        let green = lines_of("green", &out("2026-01-01T00:00:02.25Z g1\n2026-01-01T00:00:01.25Z g0\n"));
        let merged: Vec<String> = merge([blue, green].concat()).iter().map(LogLine::marked).collect();
        assert_eq!(merged, ["[green] g0", "[blue] b1", "[green] g1", "[blue] b2"]);
    }

    #[test]
    fn since_takes_durations_and_rfc_3339_times() {
        let now = OffsetDateTime::parse("2026-01-01T12:00:00Z", &Rfc3339).unwrap();
        let at = |text: &str| text.parse::<Since>().map(|s| s.at(now));
        assert_eq!(at("10m").unwrap(), now - Duration::from_secs(600));
        assert_eq!(at("1h30m").unwrap(), now - Duration::from_secs(5400));
        assert_eq!(at("2d").unwrap(), now - Duration::from_secs(2 * 86_400));
        assert_eq!(at("45s").unwrap(), now - Duration::from_secs(45));
        assert_eq!(at("2025-12-31T23:00:00Z").unwrap(), now - Duration::from_secs(13 * 3600));
        assert_eq!(at("2026-01-01T13:00:00+02:00").unwrap(), now - Duration::from_secs(3600));
        for bad in ["", "10", "m", "10x", "1.5h", "0m", "yesterday", "2026-01-01"] {
            assert!(bad.parse::<Since>().is_err(), "{bad:?} is refused");
        }
    }

    #[test]
    fn grep_finds_plain_text_and_regular_expressions() {
        let grep: Grep = "GET /books?page=2".parse().unwrap();
        assert!(grep.matches("200 GET /books?page=2 3ms"), "plain text, whatever its regex meaning");
        assert!(!grep.matches("GET /books"));
        let grep: Grep = r"status=5\d\d".parse().unwrap();
        assert!(grep.matches("status=503 path=/api") && !grep.matches("status=200"));
        let grep: Grep = "(unclosed".parse().unwrap();
        assert!(grep.matches("an (unclosed paren") && !grep.matches("closed"));
        assert!("".parse::<Grep>().is_err());
    }

    #[test]
    fn the_engines_query_tails_a_hundred_lines_unless_told_otherwise() {
        let now = OffsetDateTime::parse("2026-01-01T12:00:00Z", &Rfc3339).unwrap();
        let request = LogRequest { of: Of::App, since: None, lines: None, follow: false, grep: None };
        let options = request.api_options(now);
        assert_eq!((options.tail.as_str(), options.since, options.timestamps), ("100", 0, true));
        assert!(options.stdout && options.stderr && !options.follow);
        let request = LogRequest { lines: Some(7), follow: true, ..request };
        assert_eq!((request.api_options(now).tail.as_str(), request.api_options(now).follow), ("7", true));
        let request = LogRequest { lines: None, since: Some("10m".parse().unwrap()), ..request };
        let options = request.api_options(now);
        assert_eq!((options.tail.as_str(), i64::from(options.since)), ("all", now.unix_timestamp() - 600));
        let request = LogRequest { since: None, grep: Some("x".parse().unwrap()), ..request };
        assert_eq!(request.api_options(now).tail, "all", "a grep searches the whole log");
    }
}
