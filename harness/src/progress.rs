//! Progress for people on stderr. On a terminal: spinners and per-layer
//! bars. Otherwise (CI logs, `| tee`, a file): plain lines, one when an
//! operation starts, one when a step ends, and while anything runs a line
//! at least every [`BEAT`] saying what it is doing, so a log never goes
//! silent for long. Results go to stdout.

use std::fmt::Display;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle, WeakProgressBar};

/// How often, at most, a running operation is silent when stderr is not a
/// terminal.
pub const BEAT: Duration = Duration::from_secs(10);

/// Passed to every step.
#[derive(Clone)]
pub struct Reporter {
    multi: MultiProgress,
    mode: Mode,
}

#[derive(Clone)]
enum Mode {
    /// Spinners and bars drawn in place.
    Terminal,
    /// Plain lines with a heartbeat.
    Lines(Arc<Beats>),
    /// Nothing but warnings (tests, `--json`).
    Hidden,
}

impl Reporter {
    pub fn new() -> Self {
        if std::io::stderr().is_terminal() {
            Reporter { multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()), mode: Mode::Terminal }
        } else {
            Reporter::lines()
        }
    }

    /// A reporter that writes plain lines with a heartbeat, as for a log.
    pub fn lines() -> Self {
        let beats = Arc::new(Beats::default());
        Beats::start(&beats, BEAT);
        Reporter { multi: hidden(), mode: Mode::Lines(beats) }
    }

    /// A reporter that shows nothing (tests, `--json`).
    pub fn hidden() -> Self {
        Reporter { multi: hidden(), mode: Mode::Hidden }
    }

    /// One line of progress (above any bars).
    pub fn line(&self, message: impl Display) {
        match &self.mode {
            Mode::Terminal => {
                let _ = self.multi.println(message.to_string());
            }
            Mode::Lines(_) => eprintln!("{message}"),
            Mode::Hidden => {}
        }
    }

    /// A warning: something went wrong that the run works around. Shown on
    /// stderr also when progress is not (it may explain a slow or odd run).
    pub fn warn(&self, message: impl Display) {
        let line = format!("harness: warning: {message}");
        match &self.mode {
            Mode::Terminal => {
                let _ = self.multi.println(line);
            }
            Mode::Lines(_) | Mode::Hidden => eprintln!("{line}"),
        }
    }

    /// A spinner for a step or an operation without a known length. Without
    /// a terminal, its message is printed now and every [`BEAT`] while it
    /// runs (with its latest message: set it as the work goes on).
    pub fn spinner(&self, message: impl Into<String>) -> ProgressBar {
        let bar = self.multi.add(ProgressBar::new_spinner());
        bar.set_style(ProgressStyle::with_template("{spinner} {msg} {elapsed:.dim}").expect("a valid template"));
        bar.set_message(message.into());
        match &self.mode {
            Mode::Terminal => bar.enable_steady_tick(Duration::from_millis(120)),
            Mode::Lines(beats) => {
                eprintln!("-> {}", bar.message());
                beats.watch(&bar);
            }
            Mode::Hidden => {}
        }
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
        if let Mode::Lines(beats) = &self.mode {
            beats.watch(&bar);
        }
        bar
    }
}

impl Default for Reporter {
    fn default() -> Self {
        Reporter::new()
    }
}

fn hidden() -> MultiProgress {
    MultiProgress::with_draw_target(ProgressDrawTarget::hidden())
}

/// The operations running now, for the heartbeat. Weak: an operation whose
/// last handle is dropped is gone, finished or not.
#[derive(Default)]
struct Beats {
    bars: Mutex<Vec<WeakProgressBar>>,
}

impl Beats {
    fn watch(&self, bar: &ProgressBar) {
        self.bars.lock().unwrap_or_else(|e| e.into_inner()).push(bar.downgrade());
    }

    /// A line for each operation still running, and forgets the others.
    fn beat(&self) -> Vec<String> {
        let mut bars = self.bars.lock().unwrap_or_else(|e| e.into_inner());
        let mut lines = Vec::new();
        bars.retain(|weak| match weak.upgrade() {
            Some(bar) if !bar.is_finished() => {
                lines.push(beat_line(&bar));
                true
            }
            _ => false,
        });
        lines
    }

    /// The heartbeat thread: every `period`, a line per running operation.
    /// It ends once the reporter (every clone of it) is gone.
    fn start(beats: &Arc<Beats>, period: Duration) {
        let weak = Arc::downgrade(beats);
        let spawned = std::thread::Builder::new().name("harness-progress".into()).spawn(move || {
            let tick = Duration::from_millis(250);
            let mut last = Instant::now();
            loop {
                std::thread::sleep(tick);
                let Some(beats) = weak.upgrade() else { return };
                if last.elapsed() < period {
                    continue;
                }
                last = Instant::now();
                for line in beats.beat() {
                    eprintln!("{line}");
                }
            }
        });
        // Without the thread, the run only loses its heartbeat.
        drop(spawned);
    }
}

/// `   push layer 12.0 MiB: 4.1 MiB of 12.0 MiB (6 s)`, or for a spinner
/// `   test: cargo: api: 23 of 57 passed (41 s)`.
fn beat_line(bar: &ProgressBar) -> String {
    let elapsed = bar.elapsed().as_secs();
    match bar.length() {
        Some(total) => {
            format!("   {}: {} of {} ({elapsed} s)", bar.message(), HumanBytes(bar.position()), HumanBytes(total))
        }
        None => format!("   {} ({elapsed} s)", bar.message()),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_heartbeat_names_what_runs_with_its_latest_message_and_forgets_what_ended() {
        let beats = Beats::default();
        let reporter = Reporter { multi: hidden(), mode: Mode::Lines(Arc::new(Beats::default())) };
        let step = reporter.multi.add(ProgressBar::new_spinner());
        step.set_message("test: compiling");
        let layer = reporter.multi.add(ProgressBar::new(2048));
        layer.set_message("layer 2 KiB");
        layer.set_position(1024);
        let dropped = ProgressBar::new_spinner();
        for bar in [&step, &layer, &dropped] {
            beats.watch(bar);
        }
        drop(dropped);
        step.set_message("test: api: 3 of 9 passed");

        let lines = beats.beat();

        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].starts_with("   test: api: 3 of 9 passed ("), "{lines:?}");
        assert!(lines[1].starts_with("   layer 2 KiB: 1.00 KiB of 2.00 KiB ("), "{lines:?}");
        step.finish_and_clear();
        assert_eq!(beats.beat().len(), 1, "a finished operation is no longer named");
    }
}
