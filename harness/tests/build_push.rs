//! `harness build` and `harness push`, end to end against the lab: the
//! harness binary as a user runs it, on a copy of this working tree, then an
//! independent client (the registry's HTTP API with the lab's credentials)
//! checks what landed in the registry.
//!
//! Each test works on its own git checkout in a temporary folder, so it
//! never writes the real repo's `.harness/`; the images go to the lab
//! registry's `books-lab-tests/` repositories under a version tag unique to
//! the run (a git tag on the copy's commit), never to the real ones. What a
//! test pushes or builds is removed from the registry and the engine, also
//! when it fails.
//!
//! These tests need the lab up (`lab/up.sh`; `scripts/test.sh` runs it
//! first) and root (the registry's credentials file is mode 600). They never
//! skip. Every command and request is bounded in time.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::run::{run_bounded, Run};
use common::{repo_root, Lab};

/// `harness build` or `push` of both images; cold, the tests image's
/// first push uploads its 1 GB base once.
const COMMAND_DEADLINE: Duration = Duration::from_secs(900);
/// What "fails fast" means for the fault tests.
const FAST: Duration = Duration::from_secs(20);
/// One docker CLI command of the tests themselves.
const DOCKER_DEADLINE: Duration = Duration::from_secs(60);
/// The test repositories, beside lab.rs's.
const SERVICE_NAME: &str = "books-lab-tests/books-ms";
const TESTS_NAME: &str = "books-lab-tests/books-ms-tests";

fn unique() -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    format!("{}-{nanos}", std::process::id())
}

// ------------------------------------------------------------------ checkouts

/// A git checkout of its own, whose HEAD carries a unique tag: the version
/// the harness gives its images.
struct Checkout {
    dir: tempfile::TempDir,
    version: String,
}

impl Checkout {
    /// A copy of this working tree (tracked and untracked files, not the
    /// ignored ones) with the release binary, committed.
    fn of_the_working_tree() -> Checkout {
        let root = repo_root();
        let binary = root.join("dist/books-ms");
        if !binary.is_file() {
            let status =
                std::process::Command::new("bash").arg(root.join("scripts/dist.sh")).current_dir(&root).status();
            assert!(status.expect("run scripts/dist.sh").success(), "scripts/dist.sh failed");
        }
        let dir = tempfile::tempdir().unwrap();
        let listed = std::process::Command::new("git")
            .arg("-C")
            .arg(&root)
            .args(["ls-files", "-z", "--cached", "--others", "--exclude-standard"])
            .output()
            .unwrap();
        assert!(listed.status.success());
        for name in listed.stdout.split(|b| *b == 0).filter(|n| !n.is_empty()) {
            let name = std::str::from_utf8(name).unwrap();
            let (from, to) = (root.join(name), dir.path().join(name));
            let Ok(meta) = std::fs::symlink_metadata(&from) else {
                continue;
            }; // deleted, not yet staged
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            if meta.file_type().is_symlink() {
                std::os::unix::fs::symlink(std::fs::read_link(&from).unwrap(), &to).unwrap();
            } else {
                std::fs::copy(&from, &to).unwrap();
            }
        }
        std::fs::create_dir_all(dir.path().join("dist")).unwrap();
        std::fs::copy(&binary, dir.path().join("dist/books-ms")).unwrap();
        Checkout::commit(dir)
    }

    /// A checkout with one file: enough for the harness's version, not for
    /// an image.
    fn bare() -> Checkout {
        Checkout::with(&[])
    }

    /// A checkout of a README and `files` (path, text), committed: an
    /// untracked file that a build would send makes the version `-dirty`.
    fn with(files: &[(&str, &str)]) -> Checkout {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("README.md"), "a test checkout\n").unwrap();
        for (path, text) in files {
            std::fs::write(dir.path().join(path), text).unwrap();
        }
        Checkout::commit(dir)
    }

    fn commit(dir: tempfile::TempDir) -> Checkout {
        let git = |args: &[&str]| common::git(dir.path(), args);
        let version = format!("test-{}", unique());
        git(&["init", "-q"]);
        git(&["add", "-A"]);
        git(&["commit", "-qm", "a test checkout"]);
        git(&["tag", &version]);
        Checkout { dir, version }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Runs the harness binary on this checkout, as a user would, with the
    /// test repositories and `env` on top of a clean environment.
    async fn harness(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        common::run::harness(COMMAND_DEADLINE)
            .arg("--repo")
            .arg(self.path())
            .args(args)
            .without_harness_env()
            // A checkout of its own, without books-ms's harness.toml.
            .env("HARNESS_SERVICE__NAME", "books-ms")
            .env("HARNESS_IMAGES__SERVICE", SERVICE_NAME)
            .env("HARNESS_IMAGES__TESTS", TESTS_NAME)
            .envs(env.iter().copied())
            .run_async()
            .await
    }
}

/// The docker CLI, bounded.
fn docker(args: &[&str]) -> Run {
    run_bounded(Command::new("docker").args(args), DOCKER_DEADLINE)
}

/// Removes local images by reference; gone already is fine.
fn remove_images(references: &[String]) {
    for reference in references {
        docker(&["image", "rm", "-f", reference]);
    }
}

/// The listing of the tests image's /src, through the docker CLI.
fn files_in(image: &str, folder: &str) -> Vec<String> {
    let output = docker(&["run", "--rm", "--network", "none", "--entrypoint", "ls", image, "-A", folder]);
    assert!(output.success(), "ls in {image}: {}", output.stderr);
    output.stdout.lines().map(str::to_owned).collect()
}

// ------------------------------------------------------------------ tests

#[tokio::test]
async fn built_and_pushed_images_are_in_the_registry_with_the_recorded_digests() {
    let lab = Lab::load();
    let checkout = Checkout::of_the_working_tree();
    let version = checkout.version.clone();
    // What a context must leave out, whatever the copy holds.
    for junk in ["target/debug/junk", ".harness/junk", "client/tests/junk.js"] {
        let path = checkout.path().join(junk);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, "junk").unwrap();
    }
    let service = format!("{}/{SERVICE_NAME}", lab.registry);
    let tests = format!("{}/{TESTS_NAME}", lab.registry);
    let local: Vec<String> =
        [&service, &tests].iter().flat_map(|r| [format!("{r}:{version}"), format!("{r}:latest")]).collect();

    let started = Instant::now();
    let built = checkout.harness(&["build", "--json"], &[]).await;
    let build_time = started.elapsed();
    // A new mtime on the binary, as scripts/dist.sh gives it on every run,
    // and nothing else changed: the same images.
    let touched = std::process::Command::new("touch").arg(checkout.path().join("dist/books-ms")).status().unwrap();
    let rebuilt = checkout.harness(&["build", "--json"], &[]).await;
    let started = Instant::now();
    let pushed = checkout.harness(&["push", "--json"], &[]).await;
    let push_time = started.elapsed();
    let record = std::fs::read_to_string(checkout.path().join(".harness/last-push.json"));
    let service_digest = lab.manifest_digest(SERVICE_NAME, &version).await;
    let service_latest = lab.manifest_digest(SERVICE_NAME, "latest").await;
    let tests_digest = lab.manifest_digest(TESTS_NAME, &version).await;
    let labels = match &service_digest {
        Some(digest) => lab.labels(SERVICE_NAME, digest).await,
        None => HashMap::new(),
    };
    let (sources, client) = if built.success() {
        let image = format!("{tests}:{version}");
        (files_in(&image, "/src"), files_in(&image, "/src/client"))
    } else {
        (vec![], vec![])
    };

    // Clean up before asserting, so a failure leaves nothing behind.
    for (name, digest) in [(SERVICE_NAME, &service_digest), (TESTS_NAME, &tests_digest)] {
        if let Some(digest) = digest {
            let status = lab.delete_manifest(name, digest).await;
            assert!(status == 202 || status == 404, "DELETE {name}@{digest}: {status}");
        }
    }
    remove_images(&local);

    assert!(built.success(), "harness build: {}", built.stderr);
    assert!(touched.success());
    assert!(rebuilt.success(), "harness build, again: {}", rebuilt.stderr);
    let built: serde_json::Value = serde_json::from_str(&built.stdout).expect("build --json prints JSON");
    let rebuilt: serde_json::Value = serde_json::from_str(&rebuilt.stdout).unwrap();
    assert_eq!(built["service"]["image"], format!("{service}:{version}"));
    assert_eq!(built["tests"]["image"], format!("{tests}:{version}"));
    assert_eq!(built["service"]["id"], rebuilt["service"]["id"], "an unchanged tree gave another service image");
    assert_eq!(built["tests"]["id"], rebuilt["tests"]["id"], "an unchanged tree gave another tests image");
    eprintln!("build of both images: {build_time:.1?}; push of both: {push_time:.1?}");

    assert!(pushed.success(), "harness push: {}", pushed.stderr);
    let printed: serde_json::Value = serde_json::from_str(&pushed.stdout).expect("push --json prints JSON");
    let record: serde_json::Value = serde_json::from_str(&record.expect("a push record")).expect("JSON");
    let service_record = &record["service"];
    assert_eq!(service_record["image"], service);
    assert_eq!(service_record["tag"], version.as_str());
    assert_eq!(service_record["version"], version.as_str());
    assert!(service_record["pushed_at"].as_str().is_some_and(|t| t.ends_with('Z')), "{service_record}");
    assert_eq!(&printed["service"], service_record);
    let digest = service_digest.expect("the registry has the service image's version tag");
    assert_eq!(service_record["digest"], digest.as_str(), "the recorded digest is not the registry's");
    assert_eq!(service_latest.as_deref(), Some(digest.as_str()), "latest is another image than the version");
    assert_eq!(record["tests"]["digest"], tests_digest.expect("the registry has the tests image").as_str());

    // The OCI labels, as the registry holds them.
    assert_eq!(labels["org.opencontainers.image.version"], version);
    assert_eq!(labels["org.opencontainers.image.revision"], service_record["revision"].as_str().unwrap());
    assert!(labels["org.opencontainers.image.created"].starts_with("20"), "{labels:?}");

    // The context honoured .dockerignore (the tests image copies it all).
    for present in ["Cargo.toml", "Dockerfile.test", "service", "harness", "client"] {
        assert!(sources.iter().any(|f| f == present), "{present} missing from /src: {sources:?}");
    }
    for absent in ["target", ".git", ".harness"] {
        assert!(!sources.iter().any(|f| f == absent), "{absent} in /src: {sources:?}");
    }
    assert!(client.iter().any(|f| f == "app.js") && !client.iter().any(|f| f == "tests"), "/src/client: {client:?}");
}

#[tokio::test]
async fn a_push_with_wrong_credentials_fails_fast_naming_the_registry_and_the_user() {
    let lab = Lab::load();
    let checkout = Checkout::bare();
    let wrong = format!("not-the-password-{}", unique());
    let user = lab.credentials().user;

    let started = Instant::now();
    let output = checkout
        .harness(&["push"], &[("HARNESS_REGISTRY__USERNAME", &user), ("HARNESS_REGISTRY__PASSWORD", &wrong)])
        .await;
    let elapsed = started.elapsed();

    let text = &output.stderr;
    assert_eq!(output.code, Some(1), "{text}");
    assert!(elapsed < FAST, "took {elapsed:?}");
    assert!(text.contains(&format!("the registry {} refused the credentials of {}", lab.registry, user)), "{text}");
    assert!(text.contains("docker login") && text.contains("HARNESS_REGISTRY__USERNAME"), "{text}");
    assert!(!text.contains(&wrong) && !output.stdout.contains(&wrong), "the password was printed");
    assert!(!checkout.path().join(".harness/last-push.json").exists(), "a failed push recorded something");
}

#[tokio::test]
async fn a_push_to_a_registry_where_nothing_listens_fails_fast() {
    let checkout = Checkout::bare();
    // A loopback port that was free a moment ago.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let address = format!("127.0.0.1:{port}");

    let started = Instant::now();
    let output = checkout.harness(&["push"], &[("HARNESS_REGISTRY__ADDRESS", &address)]).await;
    let elapsed = started.elapsed();

    let text = &output.stderr;
    assert_eq!(output.code, Some(1), "{text}");
    assert!(elapsed < FAST, "took {elapsed:?}");
    assert!(text.contains(&format!("cannot reach the registry at {address}")), "{text}");
    assert!(text.contains("harness lab status"), "{text}");
}

#[tokio::test]
async fn building_without_a_dockerfile_names_the_setting_and_what_to_do() {
    let checkout = Checkout::bare();

    let output = checkout.harness(&["build"], &[]).await;

    let text = &output.stderr;
    assert_eq!(output.code, Some(1), "{text}");
    assert!(text.contains("build.dockerfile `Dockerfile`: no such file in"), "{text}");
    assert!(text.contains("set [build] dockerfile in harness.toml"), "{text}");
}

#[tokio::test]
async fn the_service_image_carries_its_revision_label_set_by_the_harness_or_by_its_dockerfile_never_another() {
    let lab = Lab::load();
    let revision_of = |checkout: &Checkout| common::git(checkout.path(), &["rev-parse", "--short=12", "HEAD"]);
    let label = |image: &str| {
        let format = "{{index .Config.Labels \"org.opencontainers.image.revision\"}}";
        docker(&["image", "inspect", "--format", format, image]).stdout.trim().to_owned()
    };
    // The image's last step, as its history records it.
    let last_step = |image: &str| {
        let history = docker(&["history", "--no-trunc", "--format", "{{.CreatedBy}}", image]);
        history.stdout.lines().next().unwrap_or_default().to_owned()
    };

    // A Dockerfile that does not name the label: the harness sets it.
    let plain = Checkout::with(&[("Dockerfile", "FROM scratch\nCOPY README.md /README.md\n")]);
    // One that sets it from REVISION, as books-ms's does: no step added.
    let own = Checkout::with(&[(
        "Dockerfile",
        "FROM scratch\nARG REVISION=unknown\nLABEL org.opencontainers.image.revision=\"${REVISION}\"\nCOPY README.md /r\n",
    )]);
    // One that sets another: refused, named.
    let wrong = Checkout::with(&[(
        "Dockerfile",
        "FROM scratch\nLABEL org.opencontainers.image.revision=\"not-it\"\nCOPY README.md /r\n",
    )]);
    let image = |checkout: &Checkout| format!("{}/{SERVICE_NAME}:{}", lab.registry, checkout.version);
    let mut seen = Vec::new();
    for checkout in [&plain, &own, &wrong] {
        let output = checkout.harness(&["build"], &[]).await;
        seen.push((output, label(&image(checkout)), last_step(&image(checkout))));
    }
    let latest = format!("{}/{SERVICE_NAME}:latest", lab.registry);
    remove_images(&[image(&plain), image(&own), image(&wrong), latest]);

    let (plain_run, plain_label, plain_last) = &seen[0];
    assert!(plain_run.success(), "{}", plain_run.stderr);
    assert_eq!(*plain_label, revision_of(&plain), "the harness sets the label");
    assert!(plain_last.contains("LABEL org.opencontainers.image.revision"), "the harness's step: {plain_last}");
    let (own_run, own_label, own_last) = &seen[1];
    assert!(own_run.success(), "{}", own_run.stderr);
    assert_eq!(*own_label, revision_of(&own), "from the build arg REVISION");
    assert!(own_last.contains("COPY"), "no step added after the Dockerfile's own: {own_last}");
    let (wrong_run, _, _) = &seen[2];
    assert_eq!(wrong_run.code, Some(1), "{}", wrong_run.stderr);
    let text = &wrong_run.stderr;
    assert!(text.contains("carries org.opencontainers.image.revision `not-it`, not the revision"), "{text}");
    assert!(text.contains("ARG REVISION"), "it says what to do: {text}");
}

#[tokio::test]
async fn a_failing_dockerfile_step_is_named_with_the_image_and_its_output() {
    let lab = Lab::load();
    // The Dockerfile committed; the binary build output that git ignores,
    // as in the project.
    let checkout = Checkout::with(&[
        (".gitignore", "/dist\n"),
        ("Dockerfile", "FROM scratch\nCOPY dist/books-ms /books-ms\nCOPY no-such-file /x\n"),
    ]);
    std::fs::create_dir_all(checkout.path().join("dist")).unwrap();
    std::fs::write(checkout.path().join("dist/books-ms"), "not really a binary").unwrap();

    let output = checkout.harness(&["build"], &[]).await;
    remove_images(&[format!("{}/{SERVICE_NAME}:{}", lab.registry, checkout.version)]);

    let text = &output.stderr;
    assert_eq!(output.code, Some(1), "{text}");
    let image = format!("{}/{SERVICE_NAME}:{}", lab.registry, checkout.version);
    assert!(
        // Step 4/4: the revision's label, which this Dockerfile does not set.
        text.contains(&format!("building {image} from Dockerfile failed at `Step 3/4 : COPY no-such-file /x`")),
        "{text}"
    );
    assert!(text.contains("no-such-file") && text.contains("last output"), "{text}");
}
