//! What is being shipped: the version and revision of a checkout, from git.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::Serialize;

/// The identity of a checkout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Version {
    /// The tag on HEAD, else the short commit; `-dirty` when the tree
    /// differs from the commit where a build would see it (see `dirty`).
    /// Used as the image tag.
    pub version: String,
    /// The short commit id (with `-dirty` when the tree has changes): what
    /// the service's `/version` reports and the image's revision label.
    pub revision: String,
    /// Uncommitted changes to tracked files, or an untracked file that
    /// enters the build context (not ignored by git, which keeps build
    /// output and local settings out, nor by `.dockerignore`).
    pub dirty: bool,
}

impl Version {
    /// The working tree at `repo`: HEAD, dirty when tracked files changed
    /// or an untracked file would enter the build context.
    pub fn of(repo: &Path) -> anyhow::Result<Self> {
        git(repo, &["rev-parse", "--verify", "HEAD"])
            .with_context(|| format!("{} is not a git checkout with a commit", repo.display()))?;
        let dirty = !git(repo, &["status", "--porcelain", "--untracked-files=no"])?.is_empty()
            || !untracked_in_context(repo)?.is_empty();
        Self::at(repo, "HEAD", dirty)
    }

    /// A commit of the repository at `repo`, as it was committed.
    pub fn of_commit(repo: &Path, commit: &str) -> anyhow::Result<Self> {
        Self::at(repo, commit, false)
    }

    fn at(repo: &Path, commit: &str, dirty: bool) -> anyhow::Result<Self> {
        let short = git(repo, &["rev-parse", "--short=12", commit])?;
        let tag = git(repo, &["describe", "--tags", "--exact-match", commit]).ok().filter(|t| is_tag_safe(t));
        let suffix = if dirty { "-dirty" } else { "" };
        Ok(Version {
            version: format!("{}{suffix}", tag.unwrap_or(short.clone())),
            // The service bakes the short form in; keep the two equal so a
            // deploy can check `/version` against it.
            revision: format!("{short}{suffix}"),
            dirty,
        })
    }
}

impl Version {
    /// For commands that ship nothing and so need no version.
    pub fn unknown() -> Self {
        Version { version: "unknown".to_owned(), revision: "unknown".to_owned(), dirty: false }
    }
}

/// The untracked files of the working tree at `repo` that a build would
/// send (git does not ignore them, nor does `.dockerignore`), as paths
/// relative to `repo`.
pub fn untracked_in_context(repo: &Path) -> anyhow::Result<Vec<String>> {
    let ignore = crate::context::Ignore::read(repo)?;
    let listed = git(repo, &["ls-files", "--others", "--exclude-standard", "-z"])?;
    Ok(listed.split('\0').filter(|path| !path.is_empty() && !ignore.excludes(path)).map(str::to_owned).collect())
}

/// A docker tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn is_tag_safe(tag: &str) -> bool {
    !tag.is_empty()
        && tag.len() <= 128
        && !tag.starts_with(['.', '-'])
        && tag.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// How long one git command may take (a fetch from a slow remote included).
const GIT_DEADLINE: Duration = Duration::from_secs(120);

/// Runs git in `repo`; its output, trimmed, or its error message. Never
/// waits for a person (no prompts: a password, a host key) and never longer
/// than GIT_DEADLINE.
pub(crate) fn git(repo: &Path, args: &[&str]) -> anyhow::Result<String> {
    git_with_env(repo, args, &[])
}

/// [`git`] with more variables in its environment (credentials go there,
/// never on its command line, which every user of the machine can read).
pub(crate) fn git_with_env(repo: &Path, args: &[&str], env: &[(String, String)]) -> anyhow::Result<String> {
    let mut child = Command::new("git")
        .arg("-C")
        .arg(repo)
        // A transfer slower than 1 KB/s for 30 s is given up by git itself.
        .args(["-c", "http.lowSpeedLimit=1000", "-c", "http.lowSpeedTime=30"])
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_SSH_COMMAND", "ssh -o BatchMode=yes -o ConnectTimeout=15")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run git: is it installed?")?;
    // Read both pipes while waiting, so that a chatty git never blocks.
    let read = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_string(&mut text);
            }
            text
        })
    };
    let stdout = read(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let stderr = read(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().context("waiting for git")? {
            break status;
        }
        // Ctrl-C or SIGTERM: the run ends, and git with it.
        if let Some(interrupted) = crate::interrupt::pending() {
            let _ = child.kill();
            let _ = child.wait();
            bail!("git {}: stopped, {interrupted}", args.join(" "));
        }
        if started.elapsed() > GIT_DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "git {} did not finish within {} s; is the remote reachable?",
                args.join(" "),
                GIT_DEADLINE.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    if !status.success() {
        bail!("git {}: {}", args.join(" "), stderr.trim());
    }
    Ok(stdout.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let run = |args: &[&str]| {
            let ok = Command::new("git").arg("-C").arg(dir.path()).args(args).output().unwrap().status.success();
            assert!(ok, "git {args:?}");
        };
        run(&["init", "-q"]);
        run(&["config", "user.email", "t@example.invalid"]);
        run(&["config", "user.name", "t"]);
        std::fs::write(dir.path().join("a.txt"), "1").unwrap();
        run(&["add", "a.txt"]);
        run(&["commit", "-qm", "one"]);
        dir
    }

    #[test]
    fn a_clean_commit_is_its_short_id() {
        let dir = repo();
        let v = Version::of(dir.path()).unwrap();
        assert_eq!(v.version.len(), 12);
        assert_eq!(v.version, v.revision);
        assert!(!v.dirty);
    }

    #[test]
    fn a_changed_tracked_file_makes_it_dirty() {
        let dir = repo();
        std::fs::write(dir.path().join("a.txt"), "2").unwrap();
        let v = Version::of(dir.path()).unwrap();
        assert!(v.dirty && v.version.ends_with("-dirty") && v.revision.ends_with("-dirty"));
    }

    #[test]
    fn an_untracked_file_that_a_build_would_send_makes_it_dirty() {
        let dir = repo();
        std::fs::create_dir_all(dir.path().join("src")).unwrap();
        std::fs::write(dir.path().join("src/new.rs"), "x").unwrap();
        let v = Version::of(dir.path()).unwrap();
        assert!(v.dirty && v.revision.ends_with("-dirty"), "{v:?}");
        assert_eq!(untracked_in_context(dir.path()).unwrap(), ["src/new.rs"]);
    }

    #[test]
    fn an_untracked_file_that_git_or_dockerignore_leaves_out_does_not() {
        let dir = repo();
        // Committed ignore files: build output for git, notes for Docker.
        std::fs::write(dir.path().join(".gitignore"), "/dist\n").unwrap();
        std::fs::write(dir.path().join(".dockerignore"), "notes\n").unwrap();
        let git = |args: &[&str]| Command::new("git").arg("-C").arg(dir.path()).args(args).status().unwrap();
        assert!(git(&["add", ".gitignore", ".dockerignore"]).success());
        assert!(git(&["commit", "-qm", "ignores"]).success());
        std::fs::create_dir_all(dir.path().join("dist")).unwrap();
        std::fs::write(dir.path().join("dist/binary"), "x").unwrap();
        std::fs::create_dir_all(dir.path().join("notes")).unwrap();
        std::fs::write(dir.path().join("notes/todo.txt"), "x").unwrap();
        assert!(!Version::of(dir.path()).unwrap().dirty);
    }

    #[test]
    fn a_tag_on_head_is_the_version() {
        let dir = repo();
        assert!(Command::new("git").arg("-C").arg(dir.path()).args(["tag", "v1.2.3"]).status().unwrap().success());
        assert_eq!(Version::of(dir.path()).unwrap().version, "v1.2.3");
    }

    #[test]
    fn outside_a_checkout_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = format!("{:#}", Version::of(dir.path()).unwrap_err());
        assert!(err.contains("not a git checkout"), "{err}");
    }
}
