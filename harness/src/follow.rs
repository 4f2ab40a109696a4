//! What a step's command is doing, read from its log as the log grows: the
//! message of the command's spinner, and so of the progress heartbeat when
//! stderr is not a terminal ("compiling tokio (120 crates built)",
//! "tests/api/main.rs: 23 of 57 passed").

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::time::Duration;

use indicatif::ProgressBar;

/// How often the log is read.
const PERIOD: Duration = Duration::from_millis(500);
/// The longest line shown as is.
const LINE_CHARS: usize = 80;

/// Sets `bar`'s message to `label: <what the log says now>` as the log at
/// `path` grows. Runs until dropped.
pub async fn follow(path: &Path, bar: &ProgressBar, label: &str) -> std::convert::Infallible {
    let mut summary = Summary::default();
    let mut offset = 0u64;
    let mut partial = Vec::new();
    loop {
        tokio::time::sleep(PERIOD).await;
        let Ok(mut file) = std::fs::File::open(path) else { continue };
        let mut grown = Vec::new();
        if file.seek(SeekFrom::Start(offset)).is_err() || file.read_to_end(&mut grown).is_err() {
            continue;
        }
        offset += grown.len() as u64;
        partial.extend_from_slice(&grown);
        let Some(end) = partial.iter().rposition(|&b| b == b'\n') else { continue };
        for line in String::from_utf8_lossy(&partial[..end]).lines() {
            summary.feed(line);
        }
        partial.drain(..=end);
        if let Some(message) = summary.message() {
            bar.set_message(format!("{label}: {message}"));
        }
    }
}

/// What a cargo (or any) log says so far.
#[derive(Debug, Default)]
pub struct Summary {
    /// Crates compiled, and the latest.
    compiled: usize,
    compiling: Option<String>,
    /// The test binary running now, its test count and results so far.
    binary: Option<String>,
    tests: Option<usize>,
    passed: usize,
    failed: usize,
    /// Any other line, the latest.
    last: Option<String>,
}

impl Summary {
    pub fn feed(&mut self, line: &str) {
        let line = line.trim();
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("Compiling"), Some(name)) => {
                self.compiled += 1;
                self.compiling = Some(name.to_owned());
            }
            (Some("Running"), Some(_)) => {
                // `Running tests/api/main.rs (target/...)`, `Running unittests src/lib.rs (...)`.
                let what = line["Running".len()..].split(" (").next().unwrap_or_default().trim();
                self.binary = Some(what.to_owned());
                (self.tests, self.passed, self.failed) = (None, 0, 0);
            }
            (Some("running"), Some(count)) if line.ends_with(" tests") || line.ends_with(" test") => {
                self.tests = count.parse().ok();
            }
            (Some("test"), Some(_)) if line.ends_with("... ok") => self.passed += 1,
            (Some("test"), Some(_)) if line.ends_with("... FAILED") => self.failed += 1,
            (Some(_), _) => self.last = Some(crate::runner::cut(line, LINE_CHARS)),
            (None, _) => {}
        }
    }

    pub fn message(&self) -> Option<String> {
        if let Some(binary) = &self.binary {
            let total = self.tests.map_or_else(|| "?".to_owned(), |n| n.to_string());
            let failed = if self.failed > 0 { format!(", {} failed", self.failed) } else { String::new() };
            return Some(format!("{binary}: {} of {total} passed{failed}", self.passed));
        }
        if let Some(name) = &self.compiling {
            return Some(format!("compiling {name} ({} crates compiled)", self.compiled));
        }
        self.last.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(log: &str) -> Option<String> {
        let mut summary = Summary::default();
        for line in log.lines() {
            summary.feed(line);
        }
        summary.message()
    }

    #[test]
    fn a_cargo_log_reads_as_what_is_compiling_then_which_tests_passed() {
        assert_eq!(summary(""), None);
        let compiling = "   Compiling serde v1.0.229\n   Compiling tokio v1.54.1\n";
        assert_eq!(summary(compiling).as_deref(), Some("compiling tokio (2 crates compiled)"));
        let running = format!(
            "{compiling}    Finished `test` profile\n     Running tests/api/main.rs (target/debug/deps/api-1)\n\n\
             running 57 tests\ntest books::a ... ok\ntest books::b ... FAILED\ntest books::c ... ok\n"
        );
        assert_eq!(summary(&running).as_deref(), Some("tests/api/main.rs: 2 of 57 passed, 1 failed"));
        let next = format!("{running}     Running unittests src/lib.rs (target/debug/deps/books_ms-2)\n");
        assert_eq!(summary(&next).as_deref(), Some("unittests src/lib.rs: 0 of ? passed"));
    }

    #[test]
    fn any_other_log_reads_as_its_latest_line_cut_short() {
        assert_eq!(summary("==> building\nstep two\n").as_deref(), Some("step two"));
        let long = "x".repeat(200);
        assert_eq!(summary(&long).unwrap().chars().count(), LINE_CHARS + 1);
    }
}
