//! Ctrl-C in the middle of `harness pipeline`: everything the run started
//! ends with it, and it says so. The upstream here is a small crate named
//! as the service: its package script leaves a sleep in the background,
//! and its test starts a container labelled as the service's tests label
//! theirs, then waits; Ctrl-C comes once all three run. A second upstream
//! passes its tests at once and waits in its image's build (or makes a
//! large one, whose push takes seconds); a third is a
//! git server that never answers, so the checkout waits; a fourth ships
//! a real books-ms to prod and is interrupted while its checks run, after
//! the switch: it is rolled back. (A SIGTERM in
//! the middle of a deploy, which undoes it, is in tests/deploy.rs; Ctrl-C
//! during the checks, in tests/verify.rs.) Needs the lab's engine and
//! images (`lab/up.sh`); never skips.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::run::{run_bounded, Run};

/// The whole pipeline, should it not stop.
const RUN_DEADLINE: Duration = Duration::from_secs(300);
/// Until the package and test steps run what the test waits for.
const START_DEADLINE: Duration = Duration::from_secs(240);
/// From Ctrl-C to the harness's end.
const STOP_DEADLINE: Duration = Duration::from_secs(20);
/// The label the service's tests put on their containers (the pipeline
/// removes those whose test process is gone).
const TESTS_LABEL: &str = "books-ms.tests.pid";

/// The upstreams' crate, named as the service (the test step's `-p`).
const CARGO_TOML: &str = "[package]\nname = \"books-ms\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[workspace]\n";
const CARGO_LOCK: &str = "version = 4\n\n[[package]]\nname = \"books-ms\"\nversion = \"0.1.0\"\n";
/// The API test of an upstream whose tests pass at once.
const PASSING_TEST: &str = "#[test]\nfn passes() {}\n";

/// An upstream whose steps wait: the package script's background sleep
/// writes its pid to `$PROBE_DIR/package.pid`; the test writes its own pid
/// to `$PROBE_DIR/test.pid` after starting a container of that label named
/// in `$PROBE_DIR/container`.
fn waiting_upstream() -> tempfile::TempDir {
    let test = format!(
        r#"#[test]
fn waits() {{
    let dir = std::path::PathBuf::from(std::env::var("PROBE_DIR").unwrap());
    let pid = std::process::id().to_string();
    let name = format!("harness-interrupt-test-{{pid}}");
    let started = std::process::Command::new("docker")
        .args(["run", "-d", "--name", &name, "--label", &format!("{TESTS_LABEL}={{pid}}")])
        .args([&std::env::var("PROBE_IMAGE").unwrap(), "sleep", "300"])
        .status()
        .unwrap();
    assert!(started.success());
    std::fs::write(dir.join("container"), &name).unwrap();
    std::fs::write(dir.join("test.pid.tmp"), &pid).unwrap();
    std::fs::rename(dir.join("test.pid.tmp"), dir.join("test.pid")).unwrap();
    std::thread::sleep(std::time::Duration::from_secs(200));
}}
"#
    );
    let files = [
        ("Cargo.toml", CARGO_TOML.to_owned()),
        ("Cargo.lock", CARGO_LOCK.to_owned()),
        ("src/lib.rs", "//! A crate whose test waits.\n".to_owned()),
        ("tests/api.rs", test),
        (
            "scripts/dist.sh",
            "set -eu\nmkdir -p dist\nprintf '#!/bin/sh\\n' > dist/books-ms\nsleep 300 &\n\
             echo $! > \"$PROBE_DIR/package.pid.tmp\"\nmv \"$PROBE_DIR/package.pid.tmp\" \"$PROBE_DIR/package.pid\"\nwait\n"
                .to_owned(),
        ),
        ("Dockerfile", "FROM scratch\nCOPY dist/books-ms /books-ms\n".to_owned()),
        ("Dockerfile.test", "FROM scratch\nCOPY Cargo.toml /Cargo.toml\n".to_owned()),
    ];
    common::committed_tree(&files, "a test that waits")
}

/// `harness --repo STATE pipeline --trust-source --source UPSTREAM`, run
/// through a shell that writes the harness's pid to `pid_file`, with the
/// project named `name`; the caller adds what else it needs.
fn pipeline_of(upstream: &Path, state: &Path, pid_file: &Path, name: &str) -> Command {
    let mut command = common::run::harness_writing_its_pid(pid_file);
    command
        .arg("--repo")
        .arg(state)
        .args(["pipeline", "--trust-source", "--source"])
        .arg(upstream)
        .envs(common::named(name));
    command
}

/// The lab's Debian image (lab/lab.env).
fn debian_image() -> String {
    common::parse_env(&std::fs::read_to_string(common::repo_root().join("lab/lab.env")).unwrap())["BOOKS_DEBIAN_IMAGE"]
        .clone()
}

/// Whether process `pid` is gone (or a zombie nobody reaped yet).
fn gone(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')))
        .unwrap_or(true)
}

fn docker(args: &[&str]) -> Run {
    run_bounded(Command::new("/usr/bin/docker").args(args), Duration::from_secs(60))
}

/// Until `path` exists, or the deadline (false).
fn wait_for(path: &Path, until: Instant) -> bool {
    while !path.exists() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(100));
    }
    path.exists()
}

#[test]
fn ctrl_c_during_the_test_and_package_steps_ends_their_processes_and_the_containers_the_tests_left() {
    let upstream = waiting_upstream();
    let probe = tempfile::tempdir().unwrap();
    let state = common::state_for_books_ms();
    let name = format!("books-ms-interrupt-{}", std::process::id());
    let pid_file: PathBuf = probe.path().join("harness.pid");
    let mut command = pipeline_of(upstream.path(), state.path(), &pid_file, &name);
    command.env("PROBE_DIR", probe.path()).env("PROBE_IMAGE", debian_image());
    let run = std::thread::spawn(move || run_bounded(&mut command, RUN_DEADLINE));

    let until = Instant::now() + START_DEADLINE;
    let started = ["harness.pid", "package.pid", "test.pid"].iter().all(|f| wait_for(&probe.path().join(f), until));
    assert!(started && !run.is_finished(), "the steps did not start: {:?}", run.is_finished().then(|| run.join()));
    let read = |file: &str| std::fs::read_to_string(probe.path().join(file)).unwrap().trim().to_owned();
    let (harness, package, test, container) =
        (read("harness.pid"), read("package.pid"), read("test.pid"), read("container"));
    let signalled = Instant::now();
    assert!(Command::new("kill").args(["-INT", &harness]).status().unwrap().success());
    let run = run.join().unwrap();
    let took = signalled.elapsed();

    assert_eq!(run.code, Some(130), "{}", run.stderr);
    assert!(took < STOP_DEADLINE, "the harness took {took:?} to stop after Ctrl-C:\n{}", run.stderr);
    assert!(run.stderr.contains("interrupted by Ctrl-C (SIGINT)"), "{}", run.stderr);
    assert!(run.stderr.contains(&container), "it names the container it removed:\n{}", run.stderr);
    let until = Instant::now() + Duration::from_secs(10);
    while !(gone(&package) && gone(&test)) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(gone(&package), "the package step's background sleep (pid {package}) still runs");
    assert!(gone(&test), "the test process (pid {test}) still runs");
    let left = docker(&["ps", "-aq", "--filter", &format!("name=^{container}$")]);
    assert!(left.success() && left.stdout.trim().is_empty(), "the tests' container is still there: {left:?}");
    assert!(!state.path().join(".harness/last-push.json").exists(), "nothing was pushed");
}

/// An upstream whose test passes at once and whose image's build waits:
/// its Dockerfile runs `sleep SECS` on the lab's Debian image (`image`),
/// SECS unique to this run so that the build's container can be found.
fn building_upstream(image: &str, secs: u32) -> tempfile::TempDir {
    let files = [
        ("Cargo.toml", CARGO_TOML.to_owned()),
        ("Cargo.lock", CARGO_LOCK.to_owned()),
        ("src/lib.rs", "//! A crate whose image's build waits.\n".to_owned()),
        ("tests/api.rs", PASSING_TEST.to_owned()),
        ("scripts/dist.sh", "set -eu\nmkdir -p dist\nprintf '#!/bin/sh\\n' > dist/books-ms\n".to_owned()),
        ("Dockerfile", format!("FROM {image}\nRUN sleep {secs}\n")),
        ("Dockerfile.test", "FROM scratch\nCOPY Cargo.toml /Cargo.toml\n".to_owned()),
    ];
    common::committed_tree(&files, "a build that waits")
}

/// The running containers whose command is `sleep SECS`.
fn sleeping(secs: u32) -> Vec<String> {
    let listed = docker(&["ps", "-q", "--no-trunc", "--filter", "status=running"]);
    listed
        .stdout
        .split_whitespace()
        .filter(|id| {
            let command = docker(&["inspect", "-f", "{{json .Config.Cmd}}", id]);
            command.stdout.contains(&format!("sleep {secs}"))
        })
        .map(str::to_owned)
        .collect()
}

#[test]
fn ctrl_c_during_the_build_step_ends_the_build_and_pushes_nothing() {
    let secs = 1000 + std::process::id() % 1000;
    let upstream = building_upstream(&debian_image(), secs);
    let probe = tempfile::tempdir().unwrap();
    let state = common::state_for_books_ms();
    let name = format!("books-ms-interrupt-build-{}", std::process::id());
    let pid_file: PathBuf = probe.path().join("harness.pid");
    let mut command = pipeline_of(upstream.path(), state.path(), &pid_file, &name);
    let run = std::thread::spawn(move || run_bounded(&mut command, RUN_DEADLINE));

    // The build's `RUN sleep` container runs.
    let until = Instant::now() + START_DEADLINE;
    let mut building = Vec::new();
    while building.is_empty() && Instant::now() < until && !run.is_finished() {
        std::thread::sleep(Duration::from_millis(250));
        building = sleeping(secs);
    }
    assert!(!building.is_empty(), "the build never ran its RUN step: {:?}", run.is_finished().then(|| run.join()));
    let harness = std::fs::read_to_string(&pid_file).unwrap();
    let signalled = Instant::now();
    assert!(Command::new("kill").args(["-INT", harness.trim()]).status().unwrap().success());
    let run = run.join().unwrap();
    let took = signalled.elapsed();

    assert_eq!(run.code, Some(130), "{}", run.stderr);
    assert!(took < STOP_DEADLINE, "the harness took {took:?} to stop after Ctrl-C:\n{}", run.stderr);
    assert!(run.stderr.contains("interrupted by Ctrl-C (SIGINT)"), "{}", run.stderr);
    // The engine ends a build whose client went away.
    let until = Instant::now() + Duration::from_secs(20);
    while !sleeping(secs).is_empty() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(sleeping(secs), Vec::<String>::new(), "the build's container still runs");
    assert!(!state.path().join(".harness/last-push.json").exists(), "nothing was pushed");
}

/// The pids of the processes whose command line holds `needle`.
fn processes_with(needle: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != std::process::id())
        .filter(|pid| {
            let line = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            String::from_utf8_lossy(&line).replace('\0', " ").contains(needle)
        })
        .filter(|pid| !gone(&pid.to_string()))
        .collect()
}

#[test]
fn ctrl_c_during_the_checkout_ends_the_fetch() {
    // A git server that takes every connection and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let source = format!("http://{}/upstream.git", listener.local_addr().unwrap());
    listener.set_nonblocking(true).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopped = stop.clone();
    let held = std::thread::spawn(move || {
        let (mut held, until) = (Vec::new(), Instant::now() + RUN_DEADLINE);
        while !stopped.load(std::sync::atomic::Ordering::SeqCst) && Instant::now() < until {
            match listener.accept() {
                Ok((stream, _)) => held.push(stream),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
        held
    });
    let probe = tempfile::tempdir().unwrap();
    let state = common::state_for_books_ms();
    let pid_file: PathBuf = probe.path().join("harness.pid");
    let mut command = common::run::harness_writing_its_pid(&pid_file);
    command.arg("--repo").arg(state.path()).args(["pipeline", "--trust-source", "--source", &source]);
    let run = std::thread::spawn(move || run_bounded(&mut command, RUN_DEADLINE));

    // git is fetching from it.
    let until = Instant::now() + START_DEADLINE;
    let mut fetching = Vec::new();
    while fetching.is_empty() && Instant::now() < until && !run.is_finished() {
        std::thread::sleep(Duration::from_millis(100));
        fetching = processes_with(&source);
    }
    assert!(!fetching.is_empty(), "git never fetched {source}: {:?}", run.is_finished().then(|| run.join()));
    std::thread::sleep(Duration::from_millis(500));
    let harness = std::fs::read_to_string(&pid_file).unwrap();
    let signalled = Instant::now();
    assert!(Command::new("kill").args(["-INT", harness.trim()]).status().unwrap().success());
    let run = run.join().unwrap();
    let took = signalled.elapsed();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let connections = held.join().unwrap().len();

    assert_eq!(run.code, Some(130), "{}", run.stderr);
    assert!(took < STOP_DEADLINE, "the harness took {took:?} to stop after Ctrl-C:\n{}", run.stderr);
    assert!(run.stderr.contains("interrupted by Ctrl-C (SIGINT)"), "{}", run.stderr);
    let until = Instant::now() + Duration::from_secs(10);
    while !processes_with(&source).is_empty() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(processes_with(&source), Vec::<u32>::new(), "git still fetches {source}");
    assert!(connections >= 1, "git never connected");
}

/// An upstream that ships a real books-ms: its test passes at once, and
/// its package script copies `$PROBE_BINARY` (built by the test for the
/// upstream's own revision) where the Dockerfile, this repository's, takes
/// it; the web components are this repository's. Its revision, as the
/// harness computes it.
fn shipping_upstream() -> (tempfile::TempDir, String) {
    let root = common::repo_root();
    let read = |path: &str| std::fs::read_to_string(root.join(path)).unwrap();
    let files = [
        ("Cargo.toml", CARGO_TOML.to_owned()),
        ("Cargo.lock", CARGO_LOCK.to_owned()),
        ("src/lib.rs", "//! A crate that ships a prebuilt books-ms.\n".to_owned()),
        ("tests/api.rs", PASSING_TEST.to_owned()),
        ("scripts/dist.sh", "set -eu\nmkdir -p dist\ncp \"$PROBE_BINARY\" dist/books-ms\n".to_owned()),
        ("Dockerfile", read("Dockerfile")),
        (".dockerignore", read(".dockerignore")),
        ("Dockerfile.test", "FROM scratch\nCOPY Cargo.toml /Cargo.toml\n".to_owned()),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (path, text) in &files {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    common::release::copy_tree(&root.join("client"), &dir.path().join("client")).unwrap();
    common::git(dir.path(), &["init", "-q"]);
    common::git(dir.path(), &["add", "-A"]);
    common::git(dir.path(), &["commit", "-qm", "a books-ms built elsewhere"]);
    let revision = common::git(dir.path(), &["rev-parse", "--short=12", "HEAD"]).trim().to_owned();
    (dir, revision)
}

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_while_the_checks_run_after_the_switch_rolls_the_release_back() {
    use common::target::{revision, revision_at, Target};
    let scene = Target::Prod.scene().await;
    let (a, prod) = (&scene.a, &scene.docker);
    let (upstream, shipped) = shipping_upstream();
    let binary = tempfile::tempdir().unwrap();
    let binary_path = binary.path().join("books-ms");
    let (built, to) = (shipped.clone(), binary_path.clone());
    tokio::task::spawn_blocking(move || common::release::release_binary(&built, &to)).await.unwrap().unwrap();
    // Many ids: the checks write for a while, and the first is there early.
    let ids: Vec<i32> = (0..100).map(|i| 2_147_482_000 + i).collect();
    let ids_setting = format!("[{}]", ids.iter().map(i32::to_string).collect::<Vec<_>>().join(","));
    let name = format!("books-ms-interrupt-ship-{}", std::process::id());
    let probe = tempfile::tempdir().unwrap();
    let state = common::state_for_books_ms();
    let pid_file: PathBuf = probe.path().join("harness.pid");
    // Prod's own project (A is live there); images of its own.
    let mut command = pipeline_of(upstream.path(), state.path(), &pid_file, &name);
    command
        .env_remove("HARNESS_PROD__PROJECT")
        .env("PROBE_BINARY", &binary_path)
        .env("HARNESS_CHECKS__IDS", &ids_setting);
    let run = tokio::task::spawn_blocking(move || run_bounded(&mut command, RUN_DEADLINE));

    // The pipeline's own checks run: the deploy is over (its lock gone;
    // it checked the new colour through the preview before the switch),
    // the upstream's release answers users, and the checks wrote on prod.
    let url = Target::Prod.url();
    let first = format!("{url}/api/v1/books/_id/{}", ids[0]);
    let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().unwrap();
    let until = Instant::now() + START_DEADLINE;
    let mut checking = false;
    while !checking && Instant::now() < until && !run.is_finished() {
        checking = http.get(&first).send().await.is_ok_and(|r| r.status() == 200)
            && revision_at(&url).await.as_deref() == Some(shipped.as_str())
            && !common::prod::names(prod).await.iter().any(|n| n == common::prod::LOCK);
        if !checking {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let pid = std::fs::read_to_string(&pid_file).unwrap_or_default();
    assert!(checking, "the pipeline's checks never ran on {url} with {shipped} live: {:?}", run.is_finished());
    let live = revision(&url).await;
    let signalled = Instant::now();
    assert!(Command::new("kill").args(["-INT", pid.trim()]).status().unwrap().success());
    let run = run.await.unwrap();
    let took = signalled.elapsed();

    assert_eq!(live, shipped, "the upstream's release was live when the checks wrote");
    assert_eq!(run.code, Some(130), "{}", run.stderr);
    assert!(took < Duration::from_secs(60), "the harness took {took:?} to stop after Ctrl-C:\n{}", run.stderr);
    assert!(run.stderr.contains("interrupted by Ctrl-C (SIGINT)"), "{}", run.stderr);
    assert!(run.stderr.contains("rolled back"), "{}", run.stderr);
    assert_eq!(revision(&url).await, a.revision, "prod after the interrupted checks:\n{}", run.stderr);
    for id in &ids {
        let left = http.get(format!("{url}/api/v1/books/_id/{id}")).send().await.map(|r| r.status().as_u16());
        assert_eq!(left.ok(), Some(404), "the checks' book {id} was left on prod:\n{}", run.stderr);
    }
    common::prod::assert_no_lock(prod).await;
    // What this test pushed.
    let lab = common::Lab::load();
    for repository in [name.clone(), format!("{name}-tests")] {
        lab.empty_repository(&repository).await;
    }
}

#[test]
fn ctrl_c_during_the_push_ends_it_and_no_manifest_reaches_the_registry() {
    // A layer of 300 MB that does not compress: its push takes seconds.
    let files = [
        ("Cargo.toml", CARGO_TOML.to_owned()),
        ("Cargo.lock", CARGO_LOCK.to_owned()),
        ("src/lib.rs", "//! A crate whose image is large.\n".to_owned()),
        ("tests/api.rs", PASSING_TEST.to_owned()),
        ("scripts/dist.sh", "set -eu\nmkdir -p dist\nprintf '#!/bin/sh\\n' > dist/books-ms\n".to_owned()),
        ("Dockerfile", format!("FROM {}\nRUN head -c 300000000 /dev/urandom > /blob\n", debian_image())),
        ("Dockerfile.test", "FROM scratch\nCOPY Cargo.toml /Cargo.toml\n".to_owned()),
    ];
    let upstream = common::committed_tree(&files, "a large image");
    let revision = common::git(upstream.path(), &["rev-parse", "--short=12", "HEAD"]).trim().to_owned();
    let probe = tempfile::tempdir().unwrap();
    let state = common::state_for_books_ms();
    let name = format!("books-ms-interrupt-push-{}", std::process::id());
    let lab = common::Lab::load();
    let (service, tests) =
        (format!("{}/{name}:{revision}", lab.registry), format!("{}/{name}-tests:{revision}", lab.registry));
    let pid_file: PathBuf = probe.path().join("harness.pid");
    let mut command = pipeline_of(upstream.path(), state.path(), &pid_file, &name);
    let run = std::thread::spawn(move || run_bounded(&mut command, RUN_DEADLINE));

    // Both images are built: the push step runs.
    let built = |image: &str| docker(&["image", "inspect", image]).success();
    let until = Instant::now() + START_DEADLINE;
    while !(built(&service) && built(&tests)) && Instant::now() < until && !run.is_finished() {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        built(&service) && built(&tests),
        "the images were never built: {:?}",
        run.is_finished().then(|| run.join())
    );
    std::thread::sleep(Duration::from_millis(500));
    let harness = std::fs::read_to_string(&pid_file).unwrap();
    let signalled = Instant::now();
    assert!(Command::new("kill").args(["-INT", harness.trim()]).status().unwrap().success());
    let run = run.join().unwrap();
    let took = signalled.elapsed();

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let pushed = runtime.block_on(lab.manifest_digest(&name, &revision));
    for image in [&service, &tests] {
        docker(&["image", "rm", "-f", image]);
    }
    assert_eq!(run.code, Some(130), "{}", run.stderr);
    assert!(took < STOP_DEADLINE, "the harness took {took:?} to stop after Ctrl-C:\n{}", run.stderr);
    assert!(run.stderr.contains("-> push"), "the push had started:\n{}", run.stderr);
    assert!(!run.stderr.contains("passed  push"), "the push had ended before Ctrl-C:\n{}", run.stderr);
    assert_eq!(pushed, None, "{name}:{revision} reached the registry");
    assert!(!state.path().join(".harness/last-push.json").exists(), "a push was recorded");
}
