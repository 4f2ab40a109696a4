//! The releases the deploy tests ship: this working tree built with a
//! revision of the test's own (so that a deploy is never a no-op by
//! accident), the static binary built as scripts/dist.sh builds it (same
//! flags, same target dir, so its cache is shared; never the repo's
//! dist/books-ms), the runtime image built from a context of its own with
//! the Dockerfile, pushed to the lab's registry under
//! `books-lab-tests/books-ms`, and named by digest. Also the cd engine's
//! docker CLI the fixtures use.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use bollard::query_parameters::{ListImagesOptions, RemoveImageOptions};

use super::run::{run_bounded, Run};
use super::{repo_root, without_cargo_env, Lab};

/// The release binary: about 4 s when only the revision changed, minutes
/// when dist's target dir is cold.
const BUILD_DEADLINE: Duration = Duration::from_secs(1800);
/// One docker CLI command of the fixture (build, push, inspect).
const DOCKER_DEADLINE: Duration = Duration::from_secs(300);
/// The repository of the releases these tests build, under the registry.
pub const TEST_REPOSITORY: &str = "books-lab-tests/books-ms";
/// The target dist.sh builds for.
const TARGET: &str = "x86_64-unknown-linux-gnu";

/// A release of this working tree in the lab's registry.
#[derive(Debug, Clone)]
pub struct Release {
    /// What its `/version` reports, and its image's revision label.
    pub revision: String,
    /// `REGISTRY/books-lab-tests/books-ms@sha256:...`
    pub image: String,
}

/// Builds, pushes and returns the release whose `/version` reports
/// `revision`. Blocks (minutes at worst).
pub fn build_release(revision: &str) -> Result<Release, String> {
    let root = repo_root();
    let started = Instant::now();

    // A build context of its own: the Dockerfile, its .dockerignore, the
    // web components and the binary (the repo's dist/ is left alone).
    let context = tempfile::tempdir().map_err(|e| format!("a temporary build context: {e}"))?;
    let copy = |from: &Path, to: &Path| std::fs::copy(from, to).map_err(|e| format!("copying {}: {e}", from.display()));
    copy(&root.join("Dockerfile"), &context.path().join("Dockerfile"))?;
    copy(&root.join(".dockerignore"), &context.path().join(".dockerignore"))?;
    copy_tree(&root.join("client"), &context.path().join("client"))?;
    std::fs::create_dir(context.path().join("dist")).map_err(|e| format!("the context's dist/: {e}"))?;
    release_binary(revision, &context.path().join("dist/books-ms"))?;

    let build_arg = |key: &str| format!("{key}={revision}");
    let image = build_and_push(
        context.path(),
        revision,
        &["--build-arg", &build_arg("REVISION"), "--build-arg", &build_arg("VERSION")],
    )?;
    eprintln!("release {revision}: {image} (built in {:?})", started.elapsed());
    Ok(Release { revision: revision.to_owned(), image })
}

/// The static release binary of this working tree whose `/version`
/// reports `revision`, built as scripts/dist.sh builds it, copied to `to`.
/// Blocks.
pub fn release_binary(revision: &str, to: &Path) -> Result<(), String> {
    // One build at a time: they share the binary's path in the target dir.
    static BUILDING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _building = BUILDING.lock().unwrap_or_else(|p| p.into_inner());
    let root = repo_root();
    let target_dir = dist_target_dir(&root);
    let mut cargo = Command::new("cargo");
    without_cargo_env(&mut cargo)
        .current_dir(&root)
        .env("CARGO_TARGET_DIR", &target_dir)
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .env("BOOKS_MS_REVISION", revision)
        .args(["build", "--release", "--locked", "-p", "books-ms", "--target", TARGET]);
    let built = run_bounded(&mut cargo, BUILD_DEADLINE);
    if !built.success() {
        return Err(format!("building the release binary of {revision} failed:\n{}", built.stderr));
    }
    let binary = target_dir.join(TARGET).join("release/books-ms");
    std::fs::copy(&binary, to).map_err(|e| format!("copying {} to {}: {e}", binary.display(), to.display()))?;
    Ok(())
}

/// A release made from `base` by the Dockerfile `instructions` after its
/// `FROM` (e.g. a healthcheck that always fails), with its own revision
/// label. Blocks.
pub fn derived_release(base: &Release, revision: &str, instructions: &str) -> Result<Release, String> {
    let context = tempfile::tempdir().map_err(|e| format!("a build context: {e}"))?;
    let dockerfile =
        format!("FROM {}\nLABEL org.opencontainers.image.revision=\"{revision}\"\n{instructions}", base.image);
    std::fs::write(context.path().join("Dockerfile"), dockerfile).map_err(|e| format!("Dockerfile: {e}"))?;
    let image = build_and_push(context.path(), revision, &[])?;
    Ok(Release { revision: revision.to_owned(), image })
}

/// The release `revision`, made by `make` at most once per test binary (a
/// failed one fails every test that needs it, once). Blocks.
pub fn built_once(revision: &str, make: impl FnOnce(&str) -> Result<Release, String>) -> Release {
    static BUILT: std::sync::Mutex<BTreeMap<String, Result<Release, String>>> = std::sync::Mutex::new(BTreeMap::new());
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    let release = built.entry(revision.to_owned()).or_insert_with(|| make(revision));
    release.clone().unwrap_or_else(|e| panic!("{e}"))
}

/// `base` with a healthcheck that always fails: its containers or tasks
/// start and never turn healthy. Built at most once per test binary, off
/// the async runtime.
pub async fn never_healthy(base: &Release) -> Release {
    let base = base.clone();
    let revision = format!("never-healthy-{}", std::process::id());
    let healthcheck = "HEALTHCHECK --interval=1s --timeout=1s --retries=2 CMD [\"/no-such-check\"]\n";
    let make = move || built_once(&revision, |revision| derived_release(&base, revision, healthcheck));
    tokio::task::spawn_blocking(make).await.unwrap()
}

/// Removes the releases that earlier test runs pushed to a
/// `books-lab-tests/` repository and left: a tag ending in `-PID` of a
/// process that is gone on this machine (every release these fixtures and
/// the fixture services' tests make is named so). Their blobs go at the
/// next `harness prune`'s collection. On the cd engine, the images such
/// runs built go too. Once per test binary.
pub async fn remove_finished_runs_releases() {
    static DONE: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    DONE.get_or_init(|| async {
        let lab = Lab::load();
        for repository in lab.repositories().await.iter().filter(|r| r.starts_with("books-lab-tests/")) {
            for tag in lab.tags(repository).await {
                if !of_a_finished_run(&tag) {
                    continue;
                }
                if let Some(digest) = lab.manifest_digest(repository, &tag).await {
                    lab.delete_manifest(repository, &digest).await;
                }
            }
        }
        let cd = super::negotiate(bollard::Docker::connect_with_local_defaults().unwrap(), "the cd engine").await;
        let prefix = format!("{}/books-lab-tests/", lab.registry);
        let images = super::bounded("listing the cd engine's images", cd.list_images(None::<ListImagesOptions>)).await;
        for reference in images.unwrap_or_default().into_iter().flat_map(|i| i.repo_tags) {
            let tag = reference.strip_prefix(&prefix).and_then(|r| r.rsplit_once(':')).map(|(_, tag)| tag);
            if tag.is_some_and(of_a_finished_run) {
                // Untags it; the image goes with its last name. One a
                // container uses stays.
                let _ =
                    super::bounded("removing an image", cd.remove_image(&reference, None::<RemoveImageOptions>, None))
                        .await;
            }
        }
    })
    .await;
}

/// A tag `...-PID` of a process that is gone (not this one).
fn of_a_finished_run(tag: &str) -> bool {
    let Some(pid) = tag.rsplit_once('-').and_then(|(_, pid)| pid.parse::<u32>().ok()) else { return false };
    pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists()
}

/// Releases A and B of this run, `PREFIX-a-PID` and `PREFIX-b-PID`, each
/// built at most once per test binary, off the async runtime (what
/// finished runs left is removed first).
pub async fn releases(prefix: &str) -> (Release, Release) {
    remove_finished_runs_releases().await;
    let revision = |which: &str| format!("{prefix}-{which}-{}", std::process::id());
    let (a, b) = (revision("a"), revision("b"));
    tokio::task::spawn_blocking(move || (built_once(&a, build_release), built_once(&b, build_release))).await.unwrap()
}

/// Builds `context` (with `docker build` options `options`) as
/// `REGISTRY/books-lab-tests/books-ms:REVISION`, pushes it, and returns
/// its name by digest, `REGISTRY/books-lab-tests/books-ms@sha256:...`.
fn build_and_push(context: &Path, revision: &str, options: &[&str]) -> Result<String, String> {
    build_and_push_to(TEST_REPOSITORY, context, revision, options)
}

/// [`build_and_push`] to `REGISTRY/REPOSITORY`.
pub fn build_and_push_to(repository: &str, context: &Path, revision: &str, options: &[&str]) -> Result<String, String> {
    let lab = Lab::load();
    let repository = format!("{}/{repository}", lab.registry);
    let tag = format!("{repository}:{revision}");
    docker(&["build", "-q"]).args(options).args(&["-t", &tag]).arg(&context.to_string_lossy()).succeeds()?;
    docker(&["push", &tag]).succeeds()?;
    let digests = docker(&["inspect", "-f", "{{json .RepoDigests}}", &tag]).succeeds()?;
    let digests: Vec<String> =
        serde_json::from_str(digests.stdout.trim()).map_err(|e| format!("RepoDigests of {tag}: {e}"))?;
    digests
        .into_iter()
        .find(|d| d.starts_with(&format!("{repository}@sha256:")))
        .ok_or_else(|| format!("{tag} has no digest in {repository} after its push"))
}

/// scripts/dist.sh's target dir: `BOOKS_DIST_TARGET_DIR`, else `dist` in
/// cargo's target dir.
fn dist_target_dir(root: &Path) -> PathBuf {
    if let Some(dir) = std::env::var_os("BOOKS_DIST_TARGET_DIR").filter(|d| !d.is_empty()) {
        return dir.into();
    }
    let cargo_target = std::env::var_os("CARGO_TARGET_DIR").filter(|d| !d.is_empty());
    cargo_target.map_or_else(|| root.join("target"), PathBuf::from).join("dist")
}

/// Copies a folder (files and folders only; no node_modules).
pub fn copy_tree(from: &Path, to: &Path) -> Result<(), String> {
    std::fs::create_dir_all(to).map_err(|e| format!("creating {}: {e}", to.display()))?;
    for entry in std::fs::read_dir(from).map_err(|e| format!("reading {}: {e}", from.display()))? {
        let entry = entry.map_err(|e| format!("reading {}: {e}", from.display()))?;
        let kind = entry.file_type().map_err(|e| format!("{}: {e}", entry.path().display()))?;
        let target = to.join(entry.file_name());
        if kind.is_dir() && entry.file_name() != "node_modules" {
            copy_tree(&entry.path(), &target)?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &target).map_err(|e| format!("copying {}: {e}", entry.path().display()))?;
        }
    }
    Ok(())
}

/// The cd engine's docker CLI (logged in to the lab's registry), never
/// pointed at prod by this test's environment.
pub struct DockerCli(Command);

pub fn docker(args: &[&str]) -> DockerCli {
    let mut command = Command::new("/usr/bin/docker");
    for key in ["DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "DOCKER_CONTEXT"] {
        command.env_remove(key);
    }
    command.args(args);
    DockerCli(command)
}

impl DockerCli {
    pub fn arg(mut self, arg: &str) -> DockerCli {
        self.0.arg(arg);
        self
    }

    pub fn args(mut self, args: &[&str]) -> DockerCli {
        self.0.args(args);
        self
    }

    pub fn succeeds(mut self) -> Result<Run, String> {
        let run = run_bounded(&mut self.0, DOCKER_DEADLINE);
        if run.success() {
            Ok(run)
        } else {
            Err(format!("`{}` failed ({:?}):\n{}{}", run.command, run.code, run.stdout, run.stderr))
        }
    }
}
