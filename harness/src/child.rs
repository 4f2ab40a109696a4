//! The one way the harness runs another program for a step (the test and
//! package steps' commands, the deploy hooks): in a process group of its
//! own, stdin closed, its output in a log file or captured, within a
//! deadline. Whatever the program started goes with it: its whole group is
//! killed when it ends, when the deadline passes, and when the future
//! running it is dropped (a step beside it failed, Ctrl-C, SIGTERM).
//!
//! (git, which the harness runs synchronously with a deadline of its own,
//! is `version::git`; the lab's scripts run in the foreground on the
//! user's terminal.)

use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::io::AsyncReadExt;

/// Where the program's stdout and stderr go.
pub enum Output<'a> {
    /// Both appended to this file, as they come.
    Log(&'a Path),
    /// Both kept, for the caller's message.
    Capture,
}

/// A program that ended by itself, within its deadline.
#[derive(Debug)]
pub struct Ended {
    pub status: ExitStatus,
    /// With [`Output::Capture`], stderr, or stdout when stderr is empty;
    /// otherwise empty.
    pub output: String,
}

/// How long the captured output of a program that ended is waited for: a
/// process that left its group still holds the pipes.
const DRAIN_PIPES: Duration = Duration::from_secs(2);

/// Runs `command` as the module says, within `deadline` seconds (named
/// `setting` in the error). `what` names it in errors ("the post-deploy
/// hook"). The command's program, arguments, environment and folder are
/// the caller's; its stdin, stdout, stderr and process group are set here.
pub async fn run(
    command: &mut tokio::process::Command,
    what: &str,
    output: Output<'_>,
    deadline: (u64, &str),
) -> anyhow::Result<Ended> {
    run_until(command, what, output, deadline, std::future::pending()).await
}

/// As [`run`], but once `stop` resolves the program's group is sent
/// SIGINT (what Ctrl-C on a terminal sends it) and the program is waited
/// for as before, within the same deadline: a program that tidies up on
/// Ctrl-C (`harness verify` removes what it wrote) does, where dropping
/// the future would kill it outright.
pub async fn run_until(
    command: &mut tokio::process::Command,
    what: &str,
    output: Output<'_>,
    (deadline, setting): (u64, &str),
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<Ended> {
    command.stdin(Stdio::null()).process_group(0).kill_on_drop(true);
    match output {
        Output::Log(path) => {
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("cannot write {}", path.display()))?;
            command.stdout(log.try_clone()?).stderr(log);
        }
        Output::Capture => {
            command.stdout(Stdio::piped()).stderr(Stdio::piped());
        }
    }
    let mut child = command.spawn().with_context(|| format!("cannot run {what}"))?;
    // From here on, the group goes whatever happens to this future.
    let mut group = Group(child.id());
    let stdout = child.stdout.take().map(|pipe| tokio::spawn(read_all(pipe)));
    let stderr = child.stderr.take().map(|pipe| tokio::spawn(read_all(pipe)));
    let waited = async {
        let mut stop = std::pin::pin!(stop);
        let mut stopped = false;
        loop {
            tokio::select! {
                status = child.wait() => return status,
                () = &mut stop, if !stopped => {
                    stopped = true;
                    group.signal("-INT");
                }
            }
        }
    };
    let status = match tokio::time::timeout(Duration::from_secs(deadline), waited).await {
        Ok(status) => status.with_context(|| format!("waiting for {what}")),
        Err(_) => {
            group.kill();
            let _ = child.wait().await;
            bail!("{what} did not end within {deadline} s ({setting}): killed with its process group, everything it started")
        }
    };
    // What it left running in its group goes too; then its pipes close.
    group.kill();
    let status = status?;
    let mut texts = Vec::new();
    for reader in [stderr, stdout].into_iter().flatten() {
        let text = tokio::time::timeout(DRAIN_PIPES, reader).await.ok().and_then(Result::ok).unwrap_or_default();
        texts.push(String::from_utf8_lossy(&text).trim().to_owned());
    }
    let output = texts.into_iter().find(|text| !text.is_empty()).unwrap_or_default();
    Ok(Ended { status, output })
}

async fn read_all(mut pipe: impl tokio::io::AsyncRead + Unpin) -> Vec<u8> {
    let mut bytes = Vec::new();
    let _ = pipe.read_to_end(&mut bytes).await;
    bytes
}

/// A process group, killed (SIGKILL) when this is dropped or told to.
struct Group(Option<u32>);

impl Group {
    fn kill(&mut self) {
        self.signal("-KILL");
        self.0 = None;
    }

    /// Sends `signal` (`-INT`, `-KILL`) to the whole group, while it is
    /// this one's. The group's id is the leader's pid, which names no
    /// other group while the leader is not reaped; a group already gone is
    /// fine.
    fn signal(&self, signal: &str) {
        if let Some(pgid) = self.0.and_then(|pid| i32::try_from(pid).ok()) {
            let _ = std::process::Command::new("kill")
                .args([signal, "--", &format!("-{pgid}")])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> tokio::process::Command {
        let mut command = tokio::process::Command::new("sh");
        command.arg("-c").arg(script);
        command
    }

    /// Whether the process `pid` is gone (or a zombie nobody reaped yet),
    /// within a bounded wait for the kernel.
    async fn gone(pid: &str) -> bool {
        for _ in 0..100 {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"));
            if stat.map_or(true, |s| s.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z'))) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    #[tokio::test]
    async fn a_stopped_program_gets_sigint_and_is_waited_for_while_it_tidies_up() {
        // It tidies up for a moment on Ctrl-C, then ends with its own code.
        // Stopped once its trap is set (it says so in a file), not after a
        // fixed moment. Run as the harness runs everything, under its own
        // SIGINT handler (`interrupt::until_interrupted`, around every
        // command): a process started with SIGINT ignored (any command
        // started with `&` from a script, as this test binary was by a CI
        // run) passes the ignoring on through exec, and a shell cannot trap
        // a signal ignored at its start; a handler is reset to the default
        // at exec instead. Without it the shell ignored the SIGINT and
        // waited out its sleep past the deadline.
        let dir = tempfile::tempdir().unwrap();
        let ready = dir.path().join("ready");
        let script = format!("trap 'sleep 0.3; echo tidied; exit 3' INT; : > '{}'; sleep 30 & wait", ready.display());
        let mut command = sh(&script);
        let stop = async {
            for _ in 0..200 {
                if ready.exists() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        let started = std::time::Instant::now();
        let stopped = run_until(&mut command, "the program", Output::Capture, (20, "its deadline"), stop);
        let ended = crate::interrupt::until_interrupted(stopped).await.expect("not interrupted").unwrap();
        assert_eq!(ended.status.code(), Some(3), "{ended:?}");
        assert_eq!(ended.output, "tidied");
        assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
        // Never stopped: it runs to its end.
        let mut command = sh("echo done");
        let ended = run(&mut command, "the program", Output::Capture, (20, "its deadline")).await.unwrap();
        assert!(ended.status.success() && ended.output == "done", "{ended:?}");
    }

    /// A folder of the test's own and a script whose first act is to start
    /// a long sleep in the background and write its pid there; `then` is
    /// the rest of the script.
    struct Scene {
        dir: std::path::PathBuf,
        script: String,
    }

    impl Scene {
        fn new(name: &str, then: &str) -> Scene {
            let dir = std::env::temp_dir().join(format!("harness-child-{name}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let script = format!("sleep 300 & echo $! > {}; {then}", dir.join("background.pid").display());
            Scene { dir, script }
        }

        /// The background sleep is gone, as the module promises.
        async fn assert_background_gone(&self) {
            let pid = std::fs::read_to_string(self.dir.join("background.pid")).unwrap();
            assert!(gone(pid.trim()).await, "the background sleep (pid {}) still runs", pid.trim());
        }
    }

    impl Drop for Scene {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    #[tokio::test]
    async fn past_its_deadline_the_program_and_what_it_started_in_the_background_are_killed() {
        let scene = Scene::new("deadline", "sleep 300");

        let started = std::time::Instant::now();
        let error =
            run(&mut sh(&scene.script), "the test hook", Output::Capture, (1, "hooks.timeout_secs")).await.unwrap_err();

        assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
        let message = format!("{error:#}");
        assert!(message.contains("did not end within 1 s (hooks.timeout_secs)"), "{message}");
        scene.assert_background_gone().await;
    }

    #[tokio::test]
    async fn a_program_that_ends_takes_what_it_left_running_with_it_and_its_output_is_kept() {
        // The background sleep holds the pipes: without killing the group,
        // reading the output would wait for it.
        let scene = Scene::new("ends", "echo out; echo failed >&2; exit 3");

        let started = std::time::Instant::now();
        let ended =
            run(&mut sh(&scene.script), "the test hook", Output::Capture, (60, "hooks.timeout_secs")).await.unwrap();

        assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
        assert_eq!(ended.status.code(), Some(3));
        assert_eq!(ended.output, "failed", "stderr first");
        scene.assert_background_gone().await;
    }

    #[tokio::test]
    async fn dropped_before_it_ends_the_whole_group_is_killed() {
        let scene = Scene::new("drop", "echo started; sleep 300");
        let log = scene.dir.join("out.log");

        let mut command = sh(&scene.script);
        let running = run(&mut command, "the test step", Output::Log(&log), (60, "pipeline.test_timeout_secs"));
        // Dropped once the program is under way, as a failure beside it or
        // Ctrl-C drops a step.
        let _ = tokio::time::timeout(Duration::from_secs(2), running).await;

        scene.assert_background_gone().await;
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "started\n", "the output went to the log");
    }
}
