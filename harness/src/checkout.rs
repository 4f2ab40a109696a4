//! The pipeline's first step: which code it ships. Either the working tree
//! as it stands (uncommitted changes and all, said plainly), or a ref of a
//! repository given by path or URL, fetched into `.harness/checkout` and
//! checked out clean there, so the working tree is never touched.
//!
//! The ref is resolved when the plan is made (a `git fetch` into that
//! folder, nothing else), so `--dry-run` already names the commit, the
//! version and the image tags; the checkout step then materialises exactly
//! that commit, even if the branch moved meanwhile.

use anyhow::{bail, Context};
use serde::Serialize;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::version::{git, Version};

/// Where a given ref is checked out, relative to the repo root.
pub const CHECKOUT_DIR: &str = ".harness/checkout";

/// What the pipeline ships.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Source {
    /// The working tree the harness runs in, as it is.
    WorkingTree { dir: PathBuf },
    /// `reference` of the repository at `from`, resolved to `commit` and
    /// checked out in `dir`.
    Checkout { from: String, reference: String, commit: String, dir: PathBuf },
}

impl Source {
    /// The folder holding the code the steps work on.
    pub fn dir(&self) -> &Path {
        match self {
            Source::WorkingTree { dir } | Source::Checkout { dir, .. } => dir,
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::WorkingTree { dir } => write!(f, "the working tree {}", dir.display()),
            Source::Checkout { from, reference, commit, dir } => {
                write!(f, "{reference} of {from} (commit {commit}), checked out in {}", dir.display())
            }
        }
    }
}

/// Fetches `from`'s branches and tags into `repo`'s checkout folder and
/// resolves `reference` (a branch, a tag, a commit, or HEAD) there.
pub fn resolve(repo: &Path, from: &str, reference: &str) -> anyhow::Result<(Source, Version)> {
    // Neither may be read by git as one of its options.
    if from.starts_with('-') {
        bail!("--source {from}: a repository path or URL cannot start with '-' (write ./{from} for a folder)");
    }
    if reference.starts_with('-') || reference.is_empty() {
        bail!("--ref {reference:?}: not a branch, tag or commit name");
    }
    // A local path is fetched from its absolute form: git runs in the
    // checkout folder, where a relative path means something else.
    let from = match Path::new(from).canonicalize() {
        Ok(path) if path.is_dir() => path.display().to_string(),
        _ => from.to_owned(),
    };
    let dir = repo.join(CHECKOUT_DIR);
    if !dir.join(".git").is_dir() {
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        git(&dir, &["init", "-q"])?;
    }
    git(
        &dir,
        &[
            "fetch",
            "--quiet",
            "--force",
            "--prune",
            "--no-recurse-submodules",
            "--",
            &from,
            "+HEAD:refs/remotes/source/HEAD",
            "+refs/heads/*:refs/remotes/source/*",
            "+refs/tags/*:refs/tags/*",
        ],
    )
    .with_context(|| format!("cannot fetch from {from}: is it a git repository you can read?"))?;
    let commit = [format!("refs/remotes/source/{reference}"), format!("refs/tags/{reference}"), reference.to_owned()]
        .iter()
        .find_map(|candidate| git(&dir, &["rev-parse", "--verify", "--quiet", &format!("{candidate}^{{commit}}")]).ok())
        .with_context(|| {
            format!(
                "{reference} is not a branch or tag of {from}, nor a commit reachable from one (fetched into {}); check the name with `git ls-remote {from}`",
                dir.display()
            )
        })?;
    let version = Version::of_commit(&dir, &commit)?;
    Ok((Source::Checkout { from, reference: reference.to_owned(), commit, dir }, version))
}

/// The checkout step: for a given ref, its commit checked out clean
/// (nothing left from an earlier run); for the working tree, nothing to do.
/// Returns what was checked out, for the report.
pub fn materialise(source: &Source, version: &Version) -> anyhow::Result<String> {
    match source {
        Source::WorkingTree { dir } => Ok(format!(
            "working tree {} at {}{}",
            dir.display(),
            version.revision.trim_end_matches("-dirty"),
            if version.dirty { ", with uncommitted changes" } else { ", clean" }
        )),
        Source::Checkout { from, reference, commit, dir } => {
            git(dir, &["checkout", "--quiet", "--force", "--detach", commit])
                .with_context(|| format!("cannot check out {commit} in {}", dir.display()))?;
            git(dir, &["clean", "-ffdxq"]).with_context(|| format!("cannot clean {}", dir.display()))?;
            Ok(format!("{reference} of {from} at {}, clean, in {}", version.revision, dir.display()))
        }
    }
}

/// Where the code of a checkout builds: the repo's own target folders (the
/// same rule as scripts/dist.sh's), so that what was compiled for the
/// working tree is reused.
pub fn target_dirs(repo: &Path) -> [(&'static str, PathBuf); 2] {
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| repo.join("target"));
    [("CARGO_TARGET_DIR", target.clone()), ("BOOKS_DIST_TARGET_DIR", target.join("dist"))]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A source repository with two commits on `main`, the first tagged.
    struct Upstream {
        dir: tempfile::TempDir,
        first: String,
        second: String,
    }

    fn run(dir: &Path, args: &[&str]) -> String {
        git(dir, args).unwrap_or_else(|e| panic!("{e:#}"))
    }

    fn upstream() -> Upstream {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        run(p, &["init", "-q", "-b", "main"]);
        run(p, &["config", "user.email", "t@example.invalid"]);
        run(p, &["config", "user.name", "t"]);
        std::fs::write(p.join("a.txt"), "1").unwrap();
        run(p, &["add", "a.txt"]);
        run(p, &["commit", "-qm", "one"]);
        run(p, &["tag", "v1.0.0"]);
        let first = run(p, &["rev-parse", "HEAD"]);
        std::fs::write(p.join("a.txt"), "2").unwrap();
        run(p, &["commit", "-qam", "two"]);
        let second = run(p, &["rev-parse", "HEAD"]);
        Upstream { dir, first, second }
    }

    fn commit_of(source: &Source) -> &str {
        match source {
            Source::Checkout { commit, .. } => commit,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_branch_a_tag_a_commit_and_head_resolve_to_their_commits() {
        let up = upstream();
        let repo = tempfile::tempdir().unwrap();
        let from = up.dir.path().to_str().unwrap();
        for (reference, expected) in
            [("main", &up.second), ("HEAD", &up.second), ("v1.0.0", &up.first), (up.first.as_str(), &up.first)]
        {
            let (source, _) = resolve(repo.path(), from, reference).unwrap();
            assert_eq!(commit_of(&source), expected, "{reference}");
        }
    }

    #[test]
    fn a_tag_is_the_version_and_a_commit_its_short_id() {
        let up = upstream();
        let repo = tempfile::tempdir().unwrap();
        let from = up.dir.path().to_str().unwrap();
        let (_, tagged) = resolve(repo.path(), from, "v1.0.0").unwrap();
        assert_eq!(
            (tagged.version.as_str(), tagged.revision.as_str(), tagged.dirty),
            ("v1.0.0", &up.first[..12], false)
        );
        let (_, head) = resolve(repo.path(), from, "main").unwrap();
        assert_eq!((head.version.as_str(), head.revision.as_str()), (&up.second[..12], &up.second[..12]));
    }

    #[test]
    fn the_checkout_holds_exactly_the_commit_and_leaves_the_source_alone() {
        let up = upstream();
        // Uncommitted work in the source is not shipped.
        std::fs::write(up.dir.path().join("a.txt"), "uncommitted").unwrap();
        let repo = tempfile::tempdir().unwrap();
        let from = up.dir.path().to_str().unwrap();
        let (source, version) = resolve(repo.path(), from, "v1.0.0").unwrap();
        std::fs::write(source.dir().join("stale.txt"), "from an earlier run").unwrap();
        let detail = materialise(&source, &version).unwrap();
        assert_eq!(std::fs::read_to_string(source.dir().join("a.txt")).unwrap(), "1");
        assert!(!source.dir().join("stale.txt").exists());
        assert!(detail.contains("v1.0.0") && detail.contains(&up.first[..12]), "{detail}");
        assert_eq!(std::fs::read_to_string(up.dir.path().join("a.txt")).unwrap(), "uncommitted");
        // A later ref reuses the same folder.
        let (source, version) = resolve(repo.path(), from, "main").unwrap();
        materialise(&source, &version).unwrap();
        assert_eq!(std::fs::read_to_string(source.dir().join("a.txt")).unwrap(), "2");
    }

    #[test]
    fn an_unknown_ref_names_the_ref_and_the_source() {
        let up = upstream();
        let repo = tempfile::tempdir().unwrap();
        let from = up.dir.path().to_str().unwrap();
        let err = format!("{:#}", resolve(repo.path(), from, "no-such-branch").unwrap_err());
        assert!(err.contains("no-such-branch is not a branch or tag of") && err.contains(from), "{err}");
    }

    #[test]
    fn a_source_or_ref_that_git_would_read_as_an_option_is_refused() {
        let repo = tempfile::tempdir().unwrap();
        let err = format!("{:#}", resolve(repo.path(), "--upload-pack=touch /tmp/x", "main").unwrap_err());
        assert!(err.contains("cannot start with '-'"), "{err}");
        let up = upstream();
        let err = format!("{:#}", resolve(repo.path(), up.dir.path().to_str().unwrap(), "--all").unwrap_err());
        assert!(err.contains("not a branch, tag or commit name"), "{err}");
    }

    #[test]
    fn a_source_that_is_not_a_repository_is_named() {
        let repo = tempfile::tempdir().unwrap();
        let nowhere = repo.path().join("nowhere");
        let err = format!("{:#}", resolve(repo.path(), nowhere.to_str().unwrap(), "main").unwrap_err());
        assert!(err.contains("cannot fetch from") && err.contains("nowhere"), "{err}");
    }
}
