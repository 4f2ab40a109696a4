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

use crate::version::{git, git_with_env, Version};

/// Where a given ref is checked out, relative to the repo root.
pub const CHECKOUT_DIR: &str = ".harness/checkout";

/// What the pipeline ships.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Source {
    /// The working tree the harness runs in, as it is.
    WorkingTree { dir: PathBuf },
    /// `reference` of the repository at `from`, resolved to `commit` and
    /// checked out in `dir`. `from` has its credentials, if it had any,
    /// redacted ([`redact`]): it is printed, logged and recorded.
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
    let remote = Remote::of(&from);
    let from = remote.shown.clone();
    let dir = repo.join(CHECKOUT_DIR);
    if !dir.join(".git").is_dir() {
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        git(&dir, &["init", "-q"])?;
    }
    git_with_env(
        &dir,
        &[
            "fetch",
            "--quiet",
            "--force",
            "--prune",
            "--no-recurse-submodules",
            "--",
            &remote.fetch,
            "+HEAD:refs/remotes/source/HEAD",
            "+refs/heads/*:refs/remotes/source/*",
            "+refs/tags/*:refs/tags/*",
        ],
        &remote.env,
    )
    // git's own message may quote what it was given: never the credentials.
    .map_err(|e| anyhow::anyhow!("{}", remote.scrub(&format!("{e:#}"))))
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

/// A `--source` as git gets it and as people see it. Credentials in an
/// http(s) URL (`https://user:token@host/repo.git`) leave the URL: git gets
/// them as an `Authorization` header for that host only, through its
/// environment, and people see `https://***@host/repo.git`.
struct Remote {
    /// What git fetches from.
    fetch: String,
    /// Variables for git (the credentials' header), or none.
    env: Vec<(String, String)>,
    /// What is printed, logged and recorded.
    shown: String,
    /// The credentials as they appear in the given text, to scrub from
    /// git's messages.
    secrets: Vec<String>,
}

impl Remote {
    fn of(from: &str) -> Remote {
        let plain = Remote { fetch: from.to_owned(), env: Vec::new(), shown: from.to_owned(), secrets: Vec::new() };
        let Ok(url) = url::Url::parse(from) else { return plain };
        if url.username().is_empty() && url.password().is_none() {
            return plain;
        }
        let decode = |s: &str| percent_decode(s);
        let (user, password) = (decode(url.username()), url.password().map(decode).unwrap_or_default());
        let mut secrets: Vec<String> = [url.username(), url.password().unwrap_or("")]
            .into_iter()
            .map(str::to_owned)
            .chain([user.clone(), password.clone()])
            .filter(|s| !s.is_empty())
            .collect();
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        let shown = redact(from);
        if !matches!(url.scheme(), "http" | "https") {
            // Other transports take their credentials from the URL itself.
            return Remote { fetch: from.to_owned(), env: Vec::new(), shown, secrets };
        }
        let mut bare = url.clone();
        let _ = bare.set_username("");
        let _ = bare.set_password(None);
        let credentials =
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, format!("{user}:{password}"));
        let env = vec![
            ("GIT_CONFIG_COUNT".to_owned(), "1".to_owned()),
            ("GIT_CONFIG_KEY_0".to_owned(), format!("http.{}.extraHeader", bare.origin().ascii_serialization())),
            ("GIT_CONFIG_VALUE_0".to_owned(), format!("Authorization: Basic {credentials}")),
        ];
        Remote { fetch: bare.to_string(), env, shown, secrets }
    }

    fn scrub(&self, text: &str) -> String {
        self.secrets.iter().fold(text.to_owned(), |text, secret| text.replace(secret, "***"))
    }
}

/// `from` with the user and password of a URL replaced by `***`; anything
/// else (a path, `git@host:repo`) as it is.
pub fn redact(from: &str) -> String {
    match url::Url::parse(from) {
        Ok(mut url) if !url.username().is_empty() || url.password().is_some() => {
            let _ = url.set_password(None);
            let _ = url.set_username("***");
            url.to_string()
        }
        _ => from.to_owned(),
    }
}

fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text).decode_utf8_lossy().into_owned()
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

/// Where a Rust service's checkout builds: the repo's own target folder
/// (cargo's `CARGO_TARGET_DIR`, unless set already), so that what was
/// compiled for the working tree is reused; other toolchains ignore it.
pub fn target_dirs(repo: &Path) -> [(&'static str, PathBuf); 1] {
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| repo.join("target"));
    [("CARGO_TARGET_DIR", target)]
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

    /// A git server over "dumb" HTTP on loopback: the files of `repo`'s
    /// `.git`, to a client sending `Authorization: Basic` of `user:password`
    /// only (401 otherwise). Serves until the test ends.
    fn dumb_http_server(repo: &Path, user: &str, password: &str) -> u16 {
        use std::io::{BufRead, BufReader, Write};
        run(repo, &["update-server-info"]);
        let root = repo.join(".git");
        let expected = format!(
            "Basic {}",
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, format!("{user}:{password}"))
        );
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for stream in listener.incoming().take(200) {
                let Ok(mut stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(5)));
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request_line = String::new();
                let _ = reader.read_line(&mut request_line);
                let mut authorised = false;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                        break;
                    }
                    if let Some((name, value)) = line.split_once(':') {
                        authorised |= name.eq_ignore_ascii_case("authorization") && value.trim() == expected;
                    }
                }
                let path = request_line.split(' ').nth(1).unwrap_or("/").split('?').next().unwrap().to_owned();
                let file = root.join(path.trim_start_matches('/').trim_start_matches(".git/"));
                let response = match std::fs::read(&file) {
                    _ if !authorised => b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"t\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
                    Ok(body) if !path.contains("..") => {
                        let mut r = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len()).into_bytes();
                        r.extend(body);
                        r
                    }
                    _ => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
                };
                let _ = stream.write_all(&response);
            }
        });
        port
    }

    /// Every file under `dir`, as bytes, holds none of `secrets`.
    fn assert_no_secret_in_files(dir: &Path, secrets: &[&str]) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                assert_no_secret_in_files(&path, secrets);
            } else if let Ok(bytes) = std::fs::read(&path) {
                for secret in secrets {
                    assert!(!String::from_utf8_lossy(&bytes).contains(secret), "{secret} in {}", path.display());
                }
            }
        }
    }

    #[test]
    fn credentials_in_a_source_url_fetch_and_are_never_shown_recorded_or_on_gits_command_line() {
        let up = upstream();
        let (user, password) = ("reader-token-71", "s3cret-pw-4242");
        let port = dumb_http_server(up.dir.path(), user, password);
        let repo = tempfile::tempdir().unwrap();
        let from = format!("http://{user}:{password}@127.0.0.1:{port}/.git");

        let (source, version) = resolve(repo.path(), &from, "main").unwrap_or_else(|e| panic!("{e:#}"));
        let detail = materialise(&source, &version).unwrap();

        // Fetched with the credentials: the server lets no one in without.
        assert_eq!(commit_of(&source), up.second);
        let shown = [source.to_string(), serde_json::to_string(&source).unwrap(), detail];
        for text in &shown {
            assert!(!text.contains(password) && !text.contains(user), "{text}");
            assert!(text.contains(&format!("http://***@127.0.0.1:{port}/.git")), "{text}");
        }
        assert_no_secret_in_files(&repo.path().join(CHECKOUT_DIR), &[user, password]);
        let remote = Remote::of(&from);
        assert!(!remote.fetch.contains(password) && !remote.fetch.contains(user), "{}", remote.fetch);
    }

    #[test]
    fn a_refused_or_failed_fetch_names_the_source_without_its_credentials() {
        let up = upstream();
        let port = dumb_http_server(up.dir.path(), "reader", "the-right-one");
        let repo = tempfile::tempdir().unwrap();
        for (from, reference) in [
            (format!("http://reader:wrong-pw-9876@127.0.0.1:{port}/.git"), "main"),
            (format!("http://reader:the-right-one@127.0.0.1:{port}/.git"), "no-such-branch"),
        ] {
            let err = format!("{:#}", resolve(repo.path(), &from, reference).unwrap_err());
            assert!(!err.contains("wrong-pw-9876") && !err.contains("the-right-one"), "{err}");
            assert!(err.contains(&format!("http://***@127.0.0.1:{port}/.git")), "{err}");
        }
    }

    #[test]
    fn redaction_hides_users_and_passwords_of_urls_only() {
        assert_eq!(redact("https://u:p%40ss@example.invalid/r.git"), "https://***@example.invalid/r.git");
        assert_eq!(redact("https://ghp_token@example.invalid/r.git"), "https://***@example.invalid/r.git");
        assert_eq!(redact("https://example.invalid/r.git"), "https://example.invalid/r.git");
        assert_eq!(redact("git@example.invalid:r.git"), "git@example.invalid:r.git");
        assert_eq!(redact("/srv/repos/r"), "/srv/repos/r");
        let remote = Remote::of("https://u:p%40ss@example.invalid:8443/r.git");
        assert_eq!(remote.fetch, "https://example.invalid:8443/r.git");
        assert_eq!(remote.env[1].1, "http.https://example.invalid:8443.extraHeader");
        assert_eq!(remote.scrub("fatal: u p@ss p%40ss"), "fatal: *** *** ***");
    }

    #[test]
    fn a_source_that_is_not_a_repository_is_named() {
        let repo = tempfile::tempdir().unwrap();
        let nowhere = repo.path().join("nowhere");
        let err = format!("{:#}", resolve(repo.path(), nowhere.to_str().unwrap(), "main").unwrap_err());
        assert!(err.contains("cannot fetch from") && err.contains("nowhere"), "{err}");
    }
}
