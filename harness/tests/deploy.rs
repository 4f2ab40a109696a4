//! `harness deploy` end to end against the lab's prod: blue-green under a
//! steady stream of requests, a release that never turns healthy, two
//! deploys at once, and SIGTERM in the middle of one. What the harness did
//! is judged by independent clients: the stream of requests on prod's
//! address (common::load), prod's engine (common::prod) and the API.
//!
//! The fixture is two releases of this working tree whose `/version` reports
//! revisions of this run only (`deploy-test-a-PID`, `deploy-test-b-PID`),
//! so that a deploy is never a no-op by accident (common::release), deployed
//! by digest.
//!
//! The tests share prod: one at a time (a lock), each for its whole body.
//! They need the lab up (`lab/up.sh`) and root. They never skip.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bollard::Docker;
use serde_json::Value;

use common::release::{build_release, Release};
use common::run::{run_bounded, Run};
use common::{http_client, repo_root, without_cargo_env, Lab};

/// Where the harness publishes the service on prod (its default).
const APP_PORT: u16 = 8080;
/// One deploy: pulls, a health wait, the checks twice, the drain.
const DEPLOY_DEADLINE: Duration = Duration::from_secs(300);
/// How long a test waits for something a deploy does on prod to show.
const OBSERVE_DEADLINE: Duration = Duration::from_secs(120);
/// The containers a deploy owns on prod (project `books-ms`).
const BLUE: &str = "books-ms-blue";
const GREEN: &str = "books-ms-green";
const LOCK: &str = "books-ms-deploy-lock";

/// Release A and release B of this run, each built at most once per test
/// binary (a failed build fails every test that needs it, once).
async fn releases() -> (Release, Release) {
    tokio::task::spawn_blocking(|| (release(&RELEASE_A, "a"), release(&RELEASE_B, "b"))).await.unwrap()
}

static RELEASE_A: OnceLock<Result<Release, String>> = OnceLock::new();
static RELEASE_B: OnceLock<Result<Release, String>> = OnceLock::new();

fn release(cell: &'static OnceLock<Result<Release, String>>, which: &str) -> Release {
    let built = cell.get_or_init(|| build_release(&format!("deploy-test-{which}-{}", std::process::id())));
    built.clone().unwrap_or_else(|e| panic!("{e}"))
}

/// `harness --repo ROOT deploy --image IMAGE ARGS...` with `env`, bounded,
/// off the async runtime.
async fn deploy(image: &str, args: &[&str], env: &[(&str, &str)]) -> Run {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    common::run::harness(DEPLOY_DEADLINE)
        .arg("--repo")
        .arg(repo_root())
        .args(["deploy", "--image", image])
        .args(args)
        .envs(env)
        .run_async()
        .await
}

/// prod serves `release` through the proxy: deployed now, or already live.
async fn make_live(release: &Release) {
    let run = deploy(&release.image, &[], &[]).await;
    assert!(run.success(), "deploying {} to start from failed ({:?}):\n{}", release.revision, run.code, run.stderr);
    assert_eq!(prod_revision().await, release.revision, "after deploying it:\n{}", run.stderr);
}

fn prod_url() -> String {
    Lab::load().prod_url(APP_PORT)
}

/// The revision prod's `/version` reports, through the proxy.
async fn prod_revision() -> String {
    let url = format!("{}/version", prod_url());
    let response = common::bounded("GET /version", http_client().get(&url).send()).await.expect("prod answers");
    assert_eq!(response.status(), 200, "GET {url}");
    let version: Value = response.json().await.expect("a JSON /version");
    version["revision"].as_str().expect("a revision").to_owned()
}

/// The colour users reach now (the one that runs), and the idle one.
async fn colours(prod: &Docker) -> (String, String) {
    let live = common::prod::live_colour(prod).await.name.expect("a name").trim_start_matches('/').to_owned();
    let idle = if live == BLUE { GREEN } else { BLUE };
    (live, idle.to_owned())
}

async fn assert_no_lock(prod: &Docker) {
    let names = common::prod::names(prod).await;
    assert!(!names.iter().any(|n| n == LOCK), "the deploy lock was left on prod: {names:?}");
}

/// Polls `ready` every 100 ms until it holds, at most [`OBSERVE_DEADLINE`];
/// `gone` says why waiting is pointless (the deploy ended), with what to
/// show.
async fn wait_until<F, Fut>(what: &str, mut ready: F, gone: impl Fn() -> bool)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = Instant::now() + OBSERVE_DEADLINE;
    loop {
        if ready().await {
            return;
        }
        assert!(!gone(), "the deploy ended before {what}");
        assert!(Instant::now() < end, "no {what} within {OBSERVE_DEADLINE:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `harness deploy --image IMAGE` with `env`, run so that the test can
/// signal it: through a shell that writes its pid, then becomes it (exec
/// keeps the pid), run by the one bounded runner on the blocking pool.
struct SignalledDeploy {
    run: tokio::task::JoinHandle<Run>,
    pid_file: PathBuf,
    _pid_dir: tempfile::TempDir,
}

impl SignalledDeploy {
    fn start(image: &str, env: &[(&str, &str)]) -> SignalledDeploy {
        let pid_dir = tempfile::tempdir().unwrap();
        let pid_file = pid_dir.path().join("harness.pid");
        let mut command = Command::new("bash");
        without_cargo_env(&mut command)
            .args(["-c", r#"echo $$ > "$0.tmp" && mv "$0.tmp" "$0" && exec "$@""#])
            .arg(&pid_file)
            .arg(env!("CARGO_BIN_EXE_harness"))
            .arg("--repo")
            .arg(repo_root())
            .args(["deploy", "--image", image])
            .envs(env.iter().copied());
        let run = tokio::task::spawn_blocking(move || run_bounded(&mut command, DEPLOY_DEADLINE));
        SignalledDeploy { run, pid_file, _pid_dir: pid_dir }
    }

    fn is_finished(&self) -> bool {
        self.run.is_finished()
    }

    /// The harness's pid (once the shell wrote it).
    fn pid(&self) -> String {
        std::fs::read_to_string(&self.pid_file).expect("the harness's pid").trim().to_owned()
    }

    /// `kill -SIGNAL PID` to the harness, which must still run (the runner
    /// has not reaped it, so the pid is still its own); its pid.
    fn signal(&self, signal: &str) -> String {
        let pid = self.pid();
        assert!(!self.is_finished(), "the deploy ended before the signal");
        let sent = Command::new("kill").args([&format!("-{signal}"), &pid]).status().expect("kill runs");
        assert!(sent.success(), "kill -{signal} {pid}");
        pid
    }

    async fn finish(self) -> Run {
        self.run.await.unwrap()
    }
}

/// A user's book on prod, removed when it goes (also when a test fails).
struct PlantedBook {
    id: i64,
    book: Value,
    removed: bool,
}

impl PlantedBook {
    async fn put(id: i64) -> PlantedBook {
        let book = serde_json::json!({
            "_id": id, "title": "A user's book", "author": "Reader", "description": "must survive a deploy"
        });
        PlantedBook::put_book(id, book).await
    }

    /// Puts `book`, whose `_id` is `id`.
    async fn put_book(id: i64, book: Value) -> PlantedBook {
        let response =
            common::bounded("PUT a book", http_client().put(format!("{}/api/v1/books", prod_url())).json(&book).send())
                .await
                .unwrap();
        assert_eq!(response.status(), 200, "putting the user's book");
        PlantedBook { id, book, removed: false }
    }

    /// The book as prod serves it now, None when it is not there.
    async fn fetch(&self) -> Option<Value> {
        let url = format!("{}/api/v1/books/_id/{}", prod_url(), self.id);
        let response = common::bounded("GET a book", http_client().get(&url).send()).await.unwrap();
        if response.status() == 200 {
            Some(response.json().await.unwrap())
        } else {
            None
        }
    }

    /// Removes it; the status prod answered.
    async fn remove(&mut self) -> reqwest::StatusCode {
        let url = format!("{}/api/v1/books/_id/{}", prod_url(), self.id);
        let status = common::bounded("DELETE a book", http_client().delete(&url).send()).await.unwrap().status();
        self.removed = true;
        status
    }
}

impl Drop for PlantedBook {
    fn drop(&mut self) {
        if self.removed {
            return;
        }
        // No await in a drop: a thread with a runtime of its own, bounded.
        let url = format!("{}/api/v1/books/_id/{}", prod_url(), self.id);
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            runtime.block_on(tokio::time::timeout(Duration::from_secs(20), http_client().delete(&url).send())).ok()
        })
        .join();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deploy_under_steady_load_drops_no_request_and_switches_the_answers() {
    let _prod = common::prod_lock().await;
    let (a, b) = releases().await;
    make_live(&a).await;
    let mut book = PlantedBook::put(424_301).await;

    let load = common::load::start(&format!("{}/version", prod_url()), 2, Duration::from_millis(5));
    let run = deploy(&b.image, &[], &[]).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let load = load.stop().await;
    println!(
        "the load during the deploy of {}: {} requests, {} failed, longest gap {:?}, revisions {:?}",
        b.revision, load.requests, load.failed, load.longest_gap, load.revisions
    );

    // Observe, remove the planted book, then judge.
    let kept = book.fetch().await;
    let removed = book.remove().await;
    let prod = Lab::load().prod_docker().await;

    assert_eq!(run.code, Some(0), "deploying {}:\n{}", b.revision, run.stderr);
    assert_eq!(load.failed, 0, "requests failed during the deploy: {load:?}");
    assert_eq!(load.revisions.first(), Some(&a.revision), "{load:?}");
    assert_eq!(load.revisions.last(), Some(&b.revision), "{load:?}");
    assert_eq!(kept.as_ref(), Some(&book.book), "the user's book after the deploy");
    assert_eq!(removed, 200, "removing the user's book");
    let live = common::prod::live_colour(&prod).await;
    assert_eq!(live.config.and_then(|c| c.image).as_deref(), Some(b.image.as_str()), "the live colour's image");
    common::prod::assert_only_the_proxy_is_published(&prod).await;
    assert_no_lock(&prod).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_release_that_never_turns_healthy_is_never_switched_to() {
    let _prod = common::prod_lock().await;
    let (a, _) = releases().await;
    make_live(&a).await;
    let lab = Lab::load();
    let prod = lab.prod_docker().await;
    let (live, idle) = colours(&prod).await;

    // The database image: no HTTP, no healthcheck of the app's: never healthy.
    let never_healthy = format!("{}/books-lab/ferretdb:1.24.2", lab.registry);
    let load = common::load::start(&format!("{}/version", prod_url()), 2, Duration::from_millis(5));
    let run = deploy(&never_healthy, &["--revision", "never"], &[("HARNESS_PROD__HEALTH_TIMEOUT_SECS", "5")]).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let load = load.stop().await;
    println!(
        "the load during the failed deploy: {} requests, {} failed, longest gap {:?}, revisions {:?}",
        load.requests, load.failed, load.longest_gap, load.revisions
    );

    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(run.stderr.contains(&idle), "the error names the new colour {idle}:\n{}", run.stderr);
    assert!(run.stderr.contains("not healthy within 5 s"), "{}", run.stderr);
    assert_eq!(load.failed, 0, "requests failed during the deploy: {load:?}");
    assert_eq!(load.revisions, std::slice::from_ref(&a.revision), "{load:?}");
    assert_eq!(prod_revision().await, a.revision);
    assert_eq!(colours(&prod).await.0, live, "the live colour");
    assert_no_lock(&prod).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_deploys_at_once_one_is_refused_naming_the_holder() {
    let _prod = common::prod_lock().await;
    let (a, b) = releases().await;
    make_live(&a).await;
    let prod = Lab::load().prod_docker().await;
    assert_no_lock(&prod).await;

    let image = b.image.clone();
    let first = tokio::task::spawn_blocking(move || {
        common::run::harness(DEPLOY_DEADLINE).arg("--repo").arg(repo_root()).args(["deploy", "--image", &image]).run()
    });
    let prod_ref = &prod;
    let has_lock = move || async move { common::prod::names(prod_ref).await.iter().any(|n| n == LOCK) };
    wait_until("the first deploy's lock on prod", has_lock, || first.is_finished()).await;
    let second = deploy(&a.image, &[], &[]).await;
    let first = first.await.unwrap();

    assert_eq!(second.code, Some(1), "the second deploy:\n{}", second.stderr);
    assert!(second.stderr.contains("holds the lock"), "{}", second.stderr);
    assert!(second.stderr.contains("harness pid"), "{}", second.stderr);
    assert!(second.stderr.contains(&b.image), "the holder's release is named:\n{}", second.stderr);
    assert_eq!(first.code, Some(0), "the first deploy:\n{}", first.stderr);
    assert_eq!(prod_revision().await, b.revision);
    assert_no_lock(&prod).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_during_a_deploy_undoes_it() {
    let _prod = common::prod_lock().await;
    let (a, b) = releases().await;
    make_live(&a).await;
    let prod = Lab::load().prod_docker().await;
    let (live, idle) = colours(&prod).await;
    // What the deploy before left on the idle colour (kept for a rollback):
    // the deploy removes it first, so it may carry B already.
    let before = common::prod::inspect(&prod, &idle).await.and_then(|c| c.id);

    let run = SignalledDeploy::start(&b.image, &[]);

    // The new colour is created from B: a container of the idle colour's
    // name, from B's image, other than the one there before.
    let (prod_ref, new, image, before) = (&prod, idle.as_str(), b.image.as_str(), before.as_deref());
    let created = move || async move {
        let Some(container) = common::prod::inspect(prod_ref, new).await else { return false };
        container.id.as_deref() != before && container.config.and_then(|c| c.image).as_deref() == Some(image)
    };
    wait_until(&format!("{idle} from {}", b.image), created, || run.is_finished()).await;
    run.signal("TERM");
    let run = run.finish().await;

    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(run.stderr.contains("interrupted by SIGTERM"), "{}", run.stderr);
    assert_eq!(prod_revision().await, a.revision, "prod after the interrupted deploy");
    let left = common::prod::inspect(&prod, &idle).await.map(|c| (c.config.and_then(|c| c.image), c.state));
    assert!(left.is_none(), "{idle} is still on prod: {left:?}\n{}", run.stderr);
    assert_eq!(colours(&prod).await.0, live, "the live colour");
    assert_no_lock(&prod).await;
}

/// `harness --repo ROOT ARGS...`, bounded, off the async runtime.
async fn harness(args: &[&str]) -> Run {
    common::run::harness(DEPLOY_DEADLINE).arg("--repo").arg(repo_root()).args(args).run_async().await
}

/// A book id of this run only, `n` < 100: never a check's reserved id
/// (2147483101..103), never another run's.
fn run_book_id(n: i64) -> i64 {
    assert!((0..100).contains(&n), "{n}");
    1_000_000_000 + i64::from(std::process::id() % 10_000_000) * 100 + n
}

#[tokio::test(flavor = "multi_thread")]
async fn rollback_returns_to_the_previous_release_and_loses_no_book() {
    let _prod = common::prod_lock().await;
    let (a, b) = releases().await;
    make_live(&a).await;
    make_live(&b).await;
    let mut book = PlantedBook::put(run_book_id(0)).await;
    let after_deploy = book.fetch().await;

    let load = common::load::start(&format!("{}/version", prod_url()), 2, Duration::from_millis(5));
    let rollback = harness(&["rollback"]).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let load = load.stop().await;
    println!(
        "the load during the rollback to {} ({:?}): {} requests, {} failed, longest gap {:?}, revisions {:?}",
        a.revision, rollback.elapsed, load.requests, load.failed, load.longest_gap, load.revisions
    );
    let revision_after_rollback = prod_revision().await;
    let after_rollback = book.fetch().await;
    let history = harness(&["history", "--json"]).await;

    let forward = harness(&["rollback", "--to", &b.revision]).await;
    println!("the rollback to {} took {:?}", b.revision, forward.elapsed);
    let revision_after_forward = prod_revision().await;
    let after_forward = book.fetch().await;
    let removed = book.remove().await;

    assert_eq!(after_deploy.as_ref(), Some(&book.book), "the user's book after the deploy of {}", b.revision);
    assert_eq!(rollback.code, Some(0), "harness rollback:\n{}", rollback.stderr);
    assert_eq!(revision_after_rollback, a.revision, "prod after the rollback:\n{}", rollback.stderr);
    assert_eq!(load.failed, 0, "requests failed during the rollback: {load:?}");
    assert_eq!(load.revisions.first(), Some(&b.revision), "{load:?}");
    assert_eq!(load.revisions.last(), Some(&a.revision), "{load:?}");
    assert_eq!(after_rollback.as_ref(), Some(&book.book), "the user's book after the rollback");

    assert_eq!(history.code, Some(0), "harness history --json:\n{}", history.stderr);
    let entries: Vec<Value> = serde_json::from_str(&history.stdout)
        .unwrap_or_else(|e| panic!("harness history --json is not a list of entries ({e}):\n{}", history.stdout));
    let last = entries.last().expect("the history has entries");
    assert_eq!(last["kind"], "rollback", "the last entry: {last:#}");
    assert_eq!(last["outcome"], "succeeded", "the last entry: {last:#}");
    assert_eq!(last["release"]["revision"].as_str(), Some(a.revision.as_str()), "the last entry: {last:#}");
    for entry in &entries {
        let steps = entry["steps"].as_array().map_or(0, Vec::len);
        assert!(steps > 0, "an entry of the history without steps: {entry:#}");
    }

    assert_eq!(forward.code, Some(0), "harness rollback --to {}:\n{}", b.revision, forward.stderr);
    assert_eq!(revision_after_forward, b.revision, "prod after the rollback to {}", b.revision);
    assert_eq!(after_forward.as_ref(), Some(&book.book), "the user's book after the rollback to {}", b.revision);
    assert_eq!(removed, 200, "removing the user's book");
    assert_no_lock(&Lab::load().prod_docker().await).await;
}

/// Where a deploy is killed outright.
#[derive(Debug, Clone, Copy)]
enum KillPoint {
    /// The release pulled, the lock taken; the new colour not yet created.
    Pulled,
    /// The new colour created (and starting, or being checked).
    NewColourStarted,
    /// Users switched to the new release; the checks and the drain run.
    Switched,
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deploy_killed_outright_leaves_prod_serving_and_its_lock_reported() {
    let _prod = common::prod_lock().await;
    let (a, b) = releases().await;
    for point in [KillPoint::Pulled, KillPoint::NewColourStarted, KillPoint::Switched] {
        let started = Instant::now();
        kill_a_deploy_at(point, &a, &b).await;
        println!("{point:?}: killed, reported, released and deployed again in {:?}", started.elapsed());
    }
}

/// From A live, a deploy of B killed (SIGKILL) at `point`: prod serves on,
/// the lock stays and is named, refuses the next deploy, is released, and
/// the deploy after that puts B live.
async fn kill_a_deploy_at(point: KillPoint, a: &Release, b: &Release) {
    make_live(a).await;
    let prod = Lab::load().prod_docker().await;
    let (_, idle) = colours(&prod).await;
    let before = common::prod::inspect(&prod, &idle).await.and_then(|c| c.id);

    let load = common::load::start(&format!("{}/version", prod_url()), 2, Duration::from_millis(5));
    // After the switch, the harness checks, then drains: a longer drain
    // makes that window easy to hit.
    let env: &[(&str, &str)] =
        if matches!(point, KillPoint::Switched) { &[("HARNESS_PROD__DRAIN_SECS", "5")] } else { &[] };
    let run = SignalledDeploy::start(&b.image, env);
    let started = Instant::now();

    let (prod_ref, new, image, before_ref) = (&prod, idle.as_str(), b.image.as_str(), before.as_deref());
    let created = move || async move {
        let Some(container) = common::prod::inspect(prod_ref, new).await else { return false };
        container.id.as_deref() != before_ref && container.config.and_then(|c| c.image).as_deref() == Some(image)
    };
    match point {
        KillPoint::Pulled => {
            let locked = move || async move { common::prod::inspect(prod_ref, LOCK).await.is_some() };
            wait_until("the deploy's lock on prod", locked, || run.is_finished()).await;
        }
        KillPoint::NewColourStarted => {
            wait_until(&format!("{idle} from {}", b.image), created, || run.is_finished()).await;
        }
        KillPoint::Switched => {
            let revision = b.revision.as_str();
            let switched = move || async move { prod_revision().await == revision };
            wait_until(&format!("prod answering {}", b.revision), switched, || run.is_finished()).await;
        }
    }
    let pid = run.signal("KILL");
    let killed_at = started.elapsed();
    // Until the test releases it, the lock is the killed deploy's: if the
    // test fails before, it goes then, so that the next tests can deploy.
    let mut lock_guard = KilledDeploysLock { armed: true };
    let killed = run.finish().await;
    // What the killed deploy left, before anything else touches prod.
    let names = common::prod::names(&prod).await;
    let new_colour_created = created().await;
    let serving = prod_revision().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let load = load.stop().await;
    println!(
        "{point:?}: SIGKILL {killed_at:?} after the start of the deploy; prod then held {names:?} and served {serving}; \
         the load through the kill: {} requests, {} failed, longest gap {:?}, revisions {:?}",
        load.requests, load.failed, load.longest_gap, load.revisions
    );

    assert_eq!(killed.code, None, "{point:?}: the deploy was not killed by the signal:\n{}", killed.stderr);
    assert!(names.iter().any(|n| n == LOCK), "{point:?}: no lock left by the killed deploy: {names:?}");
    match point {
        KillPoint::Pulled => {
            assert!(!new_colour_created, "{point:?}: the kill came after {idle} was created from {}", b.image);
            assert_eq!(serving, a.revision, "{point:?}: prod after the kill");
        }
        KillPoint::NewColourStarted => assert_eq!(serving, a.revision, "{point:?}: prod after the kill"),
        KillPoint::Switched => {
            assert!([&a.revision, &b.revision].contains(&&serving), "{point:?}: prod serves {serving} after the kill")
        }
    }
    assert_eq!(load.failed, 0, "{point:?}: requests failed through the kill: {load:?}");

    // The lock is reported, naming the killed deploy.
    let holder = format!("harness pid {pid} ");
    let status = harness(&["status"]).await;
    println!("{point:?}: harness status after the kill:\n{}", status.stdout);
    assert_eq!(status.code, Some(0), "{point:?}: harness status:\n{}", status.stderr);
    assert!(status.stdout.contains("deploy lock: held by"), "{point:?}: harness status:\n{}", status.stdout);
    assert!(status.stdout.contains(&holder), "{point:?}: harness status names {holder}:\n{}", status.stdout);
    let status_json = harness(&["status", "--json"]).await;
    assert_eq!(status_json.code, Some(0), "{point:?}: harness status --json:\n{}", status_json.stderr);
    let status_json: Value = serde_json::from_str(&status_json.stdout)
        .unwrap_or_else(|e| panic!("{point:?}: harness status --json ({e}):\n{}", status_json.stdout));
    let lock = status_json["lock"].as_str().unwrap_or_else(|| panic!("{point:?}: no lock in {status_json:#}"));
    assert!(lock.contains(&holder), "{point:?}: the lock's holder {lock:?} is not {holder}");

    // It refuses the next deploy, until it is released.
    let refused = deploy(&b.image, &[], &[]).await;
    assert_eq!(refused.code, Some(1), "{point:?}: a deploy while the lock is held:\n{}", refused.stderr);
    assert!(refused.stderr.contains("holds the lock"), "{point:?}:\n{}", refused.stderr);
    assert!(refused.stderr.contains("harness lock release"), "{point:?}:\n{}", refused.stderr);
    assert!(refused.stderr.contains(&holder), "{point:?}: the refusal names {holder}:\n{}", refused.stderr);
    let released = harness(&["lock", "release"]).await;
    assert_eq!(released.code, Some(0), "{point:?}: harness lock release:\n{}", released.stderr);
    assert!(released.stdout.contains("released"), "{point:?}: harness lock release:\n{}", released.stdout);
    assert!(released.stdout.contains(&holder), "{point:?}: the release names {holder}:\n{}", released.stdout);
    lock_guard.armed = false;
    assert_no_lock(&prod).await;

    // The next deploy repairs what was left half done.
    let repaired = deploy(&b.image, &[], &[]).await;
    assert_eq!(repaired.code, Some(0), "{point:?}: the deploy after the lock's release:\n{}", repaired.stderr);
    assert_eq!(prod_revision().await, b.revision, "{point:?}: after the deploy:\n{}", repaired.stderr);
    assert_no_lock(&prod).await;
    // Repaired: B runs as the one colour, the other one stopped (kept for a
    // rollback), as after any deploy.
    let running = common::prod::running_colours(&prod).await;
    assert_eq!(
        running.len(),
        1,
        "{point:?}: after the deploy that followed the lock's release, {running:?} run (the killed deploy's old \
         colour was never stopped); that deploy said:\n{}{}",
        repaired.stdout,
        repaired.stderr
    );
    let live = common::prod::live_colour(&prod).await;
    assert_eq!(live.config.and_then(|c| c.image).as_deref(), Some(b.image.as_str()), "{point:?}: the live colour");
}

/// The lock a killed deploy left, released (`harness lock release`) when
/// the test fails while it is `armed`.
struct KilledDeploysLock {
    armed: bool,
}

impl Drop for KilledDeploysLock {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let release = || common::run::harness(DEPLOY_DEADLINE).arg("--repo").arg(repo_root()).args(["lock", "release"]);
        // Off the async runtime's thread; bounded by the runner.
        let released = std::thread::spawn(move || release().run()).join();
        eprintln!("the killed deploy's lock, released after the test failed: {released:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn books_written_before_a_deploy_are_all_there_after_it() {
    let _prod = common::prod_lock().await;
    let (a, b) = releases().await;
    make_live(&a).await;
    let mut books = Vec::new();
    for n in 1..=50 {
        let id = run_book_id(n);
        let book = serde_json::json!({
            "_id": id, "title": format!("Book {n} of a deploy"), "author": format!("Author {n}"),
            "description": format!("written before the deploy of {}", b.revision)
        });
        books.push(PlantedBook::put_book(id, book).await);
    }

    let run = deploy(&b.image, &[], &[]).await;
    let revision = prod_revision().await;
    let mut missing = Vec::new();
    for book in &books {
        let back = book.fetch().await;
        if back.as_ref() != Some(&book.book) {
            missing.push((book.id, back));
        }
    }
    let mut not_removed = Vec::new();
    for book in &mut books {
        let status = book.remove().await;
        if status != 200 {
            not_removed.push((book.id, status));
        }
    }

    assert_eq!(run.code, Some(0), "deploying {}:\n{}", b.revision, run.stderr);
    assert_eq!(revision, b.revision, "prod after the deploy");
    assert!(missing.is_empty(), "books not read back as written after the deploy: {missing:?}");
    assert!(not_removed.is_empty(), "books not removed: {not_removed:?}");
}

/// The last entry of prod's history, as `harness history --json` gives it.
async fn last_history_entry() -> Value {
    let history = harness(&["history", "--json"]).await;
    assert_eq!(history.code, Some(0), "harness history --json:\n{}", history.stderr);
    let entries: Vec<Value> = serde_json::from_str(&history.stdout)
        .unwrap_or_else(|e| panic!("harness history --json is not a list of entries ({e}):\n{}", history.stdout));
    entries.last().cloned().expect("the history has entries")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_release_that_fails_its_checks_before_the_switch_is_never_switched_to() {
    let _prod = common::prod_lock().await;
    let (a, b) = releases().await;
    make_live(&a).await;
    let prod = Lab::load().prod_docker().await;
    let (live, _) = colours(&prod).await;
    // A user's book on one of the checks' reserved ids: the checks refuse
    // to write over it, so the new colour's checks fail before the switch.
    let mut book = PlantedBook::put(2_147_483_102).await;

    let load = common::load::start(&format!("{}/version", prod_url()), 2, Duration::from_millis(5));
    let run = deploy(&b.image, &[], &[]).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let load = load.stop().await;
    let kept = book.fetch().await;
    let removed = book.remove().await;
    let last = last_history_entry().await;

    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(run.stderr.contains("with the preview header"), "it failed before the switch:\n{}", run.stderr);
    assert!(run.stderr.contains("reserved-ids"), "{}", run.stderr);
    assert_eq!(kept.as_ref(), Some(&book.book), "the user's book on the reserved id is untouched");
    assert_eq!(removed, 200);
    assert_eq!(load.failed, 0, "requests failed during the deploy: {load:?}");
    assert_eq!(load.revisions, std::slice::from_ref(&a.revision), "users only ever saw A: {load:?}");
    assert_eq!(colours(&prod).await.0, live, "the live colour");
    assert_eq!(last["outcome"], "failed", "the history says how it ended: {last:#}");
    assert!(last["error"].as_str().unwrap_or_default().contains("reserved-ids"), "and why: {last:#}");
    assert_no_lock(&prod).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_post_deploy_hook_switches_users_back() {
    let _prod = common::prod_lock().await;
    let (a, b) = releases().await;
    make_live(&a).await;
    let prod = Lab::load().prod_docker().await;
    let (live, idle) = colours(&prod).await;

    // Users already reach B when the hook runs; it refuses the release.
    let hook = r#"echo "$BOOKS_MS_REVISION on $BOOKS_MS_COLOUR is not wanted" >&2; exit 3"#;
    let load = common::load::start(&format!("{}/version", prod_url()), 2, Duration::from_millis(5));
    let run = deploy(&b.image, &[], &[("HARNESS_HOOKS__POST_DEPLOY", hook)]).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let load = load.stop().await;
    let last = last_history_entry().await;

    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(run.stderr.contains("post-deploy hook"), "{}", run.stderr);
    let refusal = format!("{} on {} is not wanted", b.revision, idle.trim_start_matches("books-ms-"));
    assert!(run.stderr.contains(&refusal), "the hook saw the release: {}", run.stderr);
    assert_eq!(load.failed, 0, "requests failed while switching and back: {load:?}");
    assert_eq!(load.revisions.last(), Some(&a.revision), "users are back on A: {load:?}");
    assert_eq!(prod_revision().await, a.revision);
    assert_eq!(common::prod::running_colours(&prod).await, [live], "the new colour is gone");
    assert_eq!(last["outcome"], "failed", "{last:#}");
    assert_no_lock(&prod).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_pre_deploy_hook_stops_the_deploy_before_prod_changes() {
    let _prod = common::prod_lock().await;
    let (a, b) = releases().await;
    make_live(&a).await;
    let prod = Lab::load().prod_docker().await;
    let (_, idle) = colours(&prod).await;
    let before = common::prod::inspect(&prod, &idle).await.and_then(|c| c.id);

    let run = deploy(&b.image, &[], &[("HARNESS_HOOKS__PRE_DEPLOY", "echo not now >&2; exit 1")]).await;

    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(run.stderr.contains("pre-deploy hook") && run.stderr.contains("not now"), "{}", run.stderr);
    assert_eq!(prod_revision().await, a.revision);
    let after = common::prod::inspect(&prod, &idle).await.and_then(|c| c.id);
    assert_eq!(after, before, "the idle colour {idle} was not touched");
    assert_no_lock(&prod).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_release_that_cannot_reach_its_database_is_never_switched_to() {
    let _prod = common::prod_lock().await;
    let (a, b) = releases().await;
    make_live(&a).await;
    let prod = Lab::load().prod_docker().await;
    let (live, _) = colours(&prod).await;

    // The database frozen: the new colour turns healthy (its /health does
    // not ask the database), and its checks through the preview find /ready
    // answering 503.
    common::bounded("pausing the database", prod.pause_container("books-ms-db")).await.expect("pause books-ms-db");
    let run = deploy(&b.image, &[], &[]).await;
    common::bounded("unpausing the database", prod.unpause_container("books-ms-db")).await.expect("unpause");
    let last = last_history_entry().await;

    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(run.stderr.contains("with the preview header"), "it failed before the switch:\n{}", run.stderr);
    assert!(run.stderr.contains("check `ready` failed") && run.stderr.contains("503"), "{}", run.stderr);
    assert_eq!(prod_revision().await, a.revision, "users still reach A");
    assert_eq!(colours(&prod).await.0, live, "the live colour");
    assert_eq!(last["outcome"], "failed", "{last:#}");
    assert_no_lock(&prod).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn another_users_lock_is_released_only_with_force_which_names_it_in_the_history() {
    let _prod = common::prod_lock().await;
    let (a, _) = releases().await;
    // A release live first: prod has the history and the image a lock
    // container needs.
    make_live(&a).await;
    let prod = Lab::load().prod_docker().await;
    let stamp = format!("{}-{}", std::process::id(), Instant::now().elapsed().as_nanos());
    let holder = format!("harness pid 1 as someone-else-{stamp} on another-machine since now, deploying {}", a.image);
    let labels = std::collections::HashMap::from([
        ("org.books-ms.project".to_owned(), "books-ms".to_owned()),
        ("org.books-ms.role".to_owned(), "deploy-lock".to_owned()),
        ("org.books-ms.lock.holder".to_owned(), holder.clone()),
    ]);
    let body = bollard::models::ContainerCreateBody {
        image: Some(a.image.clone()),
        labels: Some(labels),
        ..Default::default()
    };
    let options = bollard::query_parameters::CreateContainerOptionsBuilder::default().name(LOCK).build();
    prod.create_container(Some(options), body).await.expect("a lock of someone else's on prod");
    let mut lock_guard = KilledDeploysLock { armed: true };

    let refused = harness(&["lock", "release"]).await;

    assert_eq!(refused.code, Some(1), "another's lock, without --force:\n{}", refused.stderr);
    assert!(refused.stderr.contains(&holder), "the refusal names the holder:\n{}", refused.stderr);
    assert!(refused.stderr.contains("--force"), "and what to do:\n{}", refused.stderr);
    let names = common::prod::names(&prod).await;
    assert!(names.iter().any(|n| n == LOCK), "the lock is still there: {names:?}");

    let forced = harness(&["lock", "release", "--force"]).await;

    assert_eq!(forced.code, Some(0), "--force:\n{}", forced.stderr);
    assert!(forced.stdout.contains(&holder), "the release names whom it overrode:\n{}", forced.stdout);
    lock_guard.armed = false;
    assert_no_lock(&prod).await;
    let history = harness(&["history", "--json"]).await;
    assert_eq!(history.code, Some(0), "{}", history.stderr);
    let entries: Value = serde_json::from_str(&history.stdout).unwrap_or_else(|e| panic!("{e}: {}", history.stdout));
    let last = entries.as_array().and_then(|e| e.last()).cloned().unwrap_or_default();
    assert_eq!(last["kind"], "lock-release", "{last:#}");
    assert_eq!(last["outcome"], "forced", "{last:#}");
    assert!(last["error"].as_str().is_some_and(|e| e.contains(&holder)), "the history names the holder: {last:#}");
    let steps = last["steps"].as_array().cloned().unwrap_or_default();
    assert!(steps.iter().any(|s| s["name"].as_str().is_some_and(|n| n.contains(LOCK))), "its step: {last:#}");

    // A lock of this user on this machine needs no --force: the killed
    // deploy's test above releases one so.
}
