//! Progress for people on stderr: spinners and per-layer bars on a terminal,
//! nothing at all otherwise (logs and CI stay clean). Results go to stdout.

use std::fmt::Display;
use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Passed to every step.
#[derive(Clone)]
pub struct Reporter {
    multi: MultiProgress,
    tty: bool,
}

impl Reporter {
    pub fn new() -> Self {
        let tty = std::io::stderr().is_terminal();
        let target = if tty { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() };
        Reporter { multi: MultiProgress::with_draw_target(target), tty }
    }

    /// A reporter that shows nothing (tests, `--json`).
    pub fn hidden() -> Self {
        Reporter { multi: MultiProgress::with_draw_target(ProgressDrawTarget::hidden()), tty: false }
    }

    /// One line of progress (above any bars).
    pub fn line(&self, message: impl Display) {
        if self.tty {
            let _ = self.multi.println(message.to_string());
        }
    }

    /// A warning: something went wrong that the run works around. Shown on
    /// stderr also when progress is not (it may explain a slow or odd run).
    pub fn warn(&self, message: impl Display) {
        let line = format!("harness: warning: {message}");
        if self.tty {
            let _ = self.multi.println(line);
        } else {
            eprintln!("{line}");
        }
    }

    /// A spinner for a step or an operation without a known length.
    pub fn spinner(&self, message: impl Into<String>) -> ProgressBar {
        let bar = self.multi.add(ProgressBar::new_spinner());
        bar.set_style(ProgressStyle::with_template("{spinner} {msg} {elapsed:.dim}").expect("a valid template"));
        bar.set_message(message.into());
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    }

    /// A byte-counting bar, e.g. one layer of a push or a pull.
    pub fn bytes(&self, message: impl Into<String>, total: u64) -> ProgressBar {
        let bar = self.multi.add(ProgressBar::new(total));
        bar.set_style(
            ProgressStyle::with_template("  {msg:20} [{bar:30}] {bytes}/{total_bytes}")
                .expect("a valid template")
                .progress_chars("=> "),
        );
        bar.set_message(message.into());
        bar
    }
}

impl Default for Reporter {
    fn default() -> Self {
        Reporter::new()
    }
}

/// A spinner cleared when dropped: also when a deadline drops the work it
/// belongs to, or the work fails.
pub struct Spinner(pub ProgressBar);

impl Drop for Spinner {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}
