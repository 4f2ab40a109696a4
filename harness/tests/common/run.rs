//! The one bounded way the tests run a program, the harness binary first of
//! all: in a process group of its own (so that a timeout also stops what it
//! started: cargo, the tests, docker clients), stdin closed, stdout and
//! stderr read in full, and a test that fails naming the command when it
//! does not end in time.
//!
//! The runner is synchronous (threads read the pipes), so that it serves
//! plain `#[test]`s and `spawn_blocking` alike; async tests call
//! [`Harness::run_async`], which runs it on tokio's blocking pool and never
//! stalls a current-thread runtime.

use std::ffi::OsStr;
use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use std::os::unix::process::CommandExt;

use super::without_cargo_env;

/// What a program did: it ended within its deadline.
#[derive(Debug)]
pub struct Run {
    /// The command line (the program's file name and its arguments; never
    /// its environment, which may hold a password).
    pub command: String,
    /// The exit code; None when a signal ended it.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// From the start to the end of the program.
    pub elapsed: Duration,
    /// The longest time stderr stayed silent: from the start to its first
    /// output, between two outputs, or from its last output to the end.
    pub stderr_longest_silence: Duration,
}

impl Run {
    /// Exit code 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// `harness` (the binary cargo built for these tests), to be given its
/// arguments and environment, then run within `deadline`.
/// The harness binary run through a shell that first writes its pid (the
/// harness's, as it `exec`s) to `pid_file`, for a test that signals it;
/// the caller adds the harness's arguments. Without this test's cargo
/// variables.
pub fn harness_writing_its_pid(pid_file: &std::path::Path) -> Command {
    let mut command = Command::new("bash");
    without_cargo_env(&mut command)
        .args(["-c", r#"echo $$ > "$0.tmp" && mv "$0.tmp" "$0" && exec "$@""#])
        .arg(pid_file)
        .arg(env!("CARGO_BIN_EXE_harness"));
    command
}

pub fn harness(deadline: Duration) -> Harness {
    let mut command = Command::new(env!("CARGO_BIN_EXE_harness"));
    // Its test step runs a nested cargo, which must not see this test's
    // cargo variables.
    without_cargo_env(&mut command);
    Harness { command, deadline }
}

/// A harness command being put together; see [`harness`].
pub struct Harness {
    command: Command,
    deadline: Duration,
}

impl Harness {
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Harness {
        self.command.arg(arg);
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Harness
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.command.args(args);
        self
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Harness {
        self.command.env(key, value);
        self
    }

    pub fn envs<I, K, V>(mut self, vars: I) -> Harness
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        self.command.envs(vars);
        self
    }

    /// None of this test's `HARNESS_*` variables: the harness is configured
    /// by what the test sets after this call only.
    pub fn without_harness_env(mut self) -> Harness {
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("HARNESS_") {
                self.command.env_remove(key);
            }
        }
        self
    }

    /// Runs it to its end and returns what it did; fails the test if it
    /// does not end within the deadline (and kills its process group).
    /// Blocks the calling thread: from async code, use [`Harness::run_async`].
    pub fn run(mut self) -> Run {
        run_bounded(&mut self.command, self.deadline)
    }

    /// Runs it with a stdout whose reader is gone before it starts (as
    /// `harness ... | head -0` at worst): every write to stdout fails with
    /// EPIPE. `Run::stdout` is empty.
    pub fn run_with_stdout_closed(mut self) -> Run {
        run_inner(&mut self.command, self.deadline, false)
    }

    /// [`Harness::run_with_stdout_closed`] on tokio's blocking pool.
    pub async fn run_with_stdout_closed_async(self) -> Run {
        match tokio::task::spawn_blocking(move || self.run_with_stdout_closed()).await {
            Ok(run) => run,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("the harness runner did not finish: {e}"),
        }
    }

    /// [`Harness::run`] on tokio's blocking pool; a failure of the runner
    /// fails the test with its own message.
    pub async fn run_async(self) -> Run {
        match tokio::task::spawn_blocking(move || self.run()).await {
            Ok(run) => run,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("the harness runner did not finish: {e}"),
        }
    }
}

/// Runs `command` as the module's doc says, within `deadline`: its stdin,
/// stdout, stderr and process group are set here. Blocks the calling thread.
pub fn run_bounded(command: &mut Command, deadline: Duration) -> Run {
    run_inner(command, deadline, true)
}

/// [`run_bounded`], with stdout read (`read_stdout`) or a pipe nobody reads.
fn run_inner(command: &mut Command, deadline: Duration, read_stdout: bool) -> Run {
    let shown = show(command);
    command.process_group(0).stdin(Stdio::null()).stderr(Stdio::piped());
    if read_stdout {
        command.stdout(Stdio::piped());
    } else {
        let (reader, writer) = std::io::pipe().expect("a pipe");
        drop(reader);
        command.stdout(writer);
    }
    let started = Instant::now();
    let end_by = started + deadline;
    let mut child = command.spawn().unwrap_or_else(|e| panic!("cannot run `{shown}`: {e}"));
    // The parent's copy of a closed stdout's writer goes with `command`'s
    // next configuration; drop it now so that only the child holds it.
    if !read_stdout {
        command.stdout(Stdio::null());
    }
    let (done, finished) = mpsc::channel();
    let stdout = if read_stdout { read_all(child.stdout.take(), done.clone()).0 } else { Buffer::default() };
    let (stderr, stderr_times) = read_all(child.stderr.take(), done);

    // Until the program and whatever else holds its output are done: both
    // pipes at their end, then its exit status. Until `try_wait` returns
    // it, the child is not reaped, so its pid still names its process group
    // (no other process can have it), and killing the group is safe.
    let mut open_pipes = if read_stdout { 2 } else { 1 };
    let status = loop {
        if open_pipes > 0 {
            match finished.recv_timeout(end_by.saturating_duration_since(Instant::now())) {
                Ok(()) => open_pipes -= 1,
                Err(_) => timed_out(&mut child, &shown, deadline, &finished, open_pipes, &stdout, &stderr),
            }
            continue;
        }
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= end_by => {
                timed_out(&mut child, &shown, deadline, &finished, 0, &stdout, &stderr)
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => {
                kill_group(&mut child);
                panic!("cannot wait for `{shown}`: {e}");
            }
        }
    };
    let stderr_longest_silence = longest_silence(started, &stderr_times.lock().unwrap_or_else(|p| p.into_inner()));
    Run {
        command: shown,
        code: status.code(),
        stdout: text(&stdout),
        stderr: text(&stderr),
        elapsed: started.elapsed(),
        stderr_longest_silence,
    }
}

/// The longest gap between `started`, the times in `outputs` and now.
fn longest_silence(started: Instant, outputs: &[Instant]) -> Duration {
    let ended = Instant::now();
    let times: Vec<Instant> = std::iter::once(started).chain(outputs.iter().copied()).chain([ended]).collect();
    times.windows(2).map(|w| w[1].saturating_duration_since(w[0])).max().unwrap_or_default()
}

/// The program's name and arguments, as a shell would show them (roughly).
fn show(command: &Command) -> String {
    let program =
        Path::new(command.get_program()).file_name().unwrap_or(command.get_program()).to_string_lossy().into_owned();
    std::iter::once(program)
        .chain(command.get_args().map(|a| a.to_string_lossy().into_owned()))
        .collect::<Vec<_>>()
        .join(" ")
}

type Buffer = Arc<Mutex<Vec<u8>>>;
type Times = Arc<Mutex<Vec<Instant>>>;

/// A thread that reads `pipe` to its end into the returned buffer (so that
/// what came before a timeout can be shown), noting when each piece came,
/// then says so on `done`.
fn read_all(pipe: Option<impl Read + Send + 'static>, done: Sender<()>) -> (Buffer, Times) {
    let (buffer, times) = (Buffer::default(), Times::default());
    let (filled, noted) = (Arc::clone(&buffer), Arc::clone(&times));
    let mut pipe = pipe.expect("a piped stream");
    std::thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        loop {
            match pipe.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    filled.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(&chunk[..n]);
                    noted.lock().unwrap_or_else(|p| p.into_inner()).push(Instant::now());
                }
            }
        }
        let _ = done.send(());
    });
    (buffer, times)
}

fn text(buffer: &Buffer) -> String {
    String::from_utf8_lossy(&buffer.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
}

/// `kill -KILL -- -PGID`: the program and everything in its group, then
/// the program reaped. Only while the child is not yet reaped (see above).
fn kill_group(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let _ = child.kill();
    let _ = child.wait();
}

/// Kills the group, then fails the test naming the command, with the end
/// of what it printed.
fn timed_out(
    child: &mut Child,
    shown: &str,
    deadline: Duration,
    finished: &Receiver<()>,
    mut open_pipes: usize,
    stdout: &Buffer,
    stderr: &Buffer,
) -> ! {
    kill_group(child);
    // The group is gone, so the pipes close; a process of another group
    // could still hold them: bounded.
    let grace = Instant::now() + Duration::from_secs(5);
    while open_pipes > 0 && finished.recv_timeout(grace.saturating_duration_since(Instant::now())).is_ok() {
        open_pipes -= 1;
    }
    panic!(
        "`{shown}` did not end within {deadline:?}: its process group was killed\n\
         --- the end of its stdout:\n{}\n--- the end of its stderr:\n{}",
        tail(&text(stdout)),
        tail(&text(stderr))
    );
}

/// The last lines of `text`, at most about 4 kB.
fn tail(text: &str) -> &str {
    const MAX: usize = 4096;
    if text.len() <= MAX {
        return text;
    }
    let mut start = text.len() - MAX;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].find('\n').map_or(&text[start..], |i| &text[start + i + 1..])
}
