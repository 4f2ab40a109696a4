//! `harness deploy` end to end against the lab's prod: blue-green under a
//! steady stream of requests, a release that never turns healthy, two
//! deploys at once, and SIGTERM in the middle of one. What the harness did
//! is judged by independent clients: the stream of requests on prod's
//! address (common::load), prod's engine (common::prod), users' books
//! (common::books) and the API.
//!
//! The fixture is two releases of this working tree whose `/version` reports
//! revisions of this run only (`deploy-test-a-PID`, `deploy-test-b-PID`),
//! so that a deploy is never a no-op by accident (common::release), deployed
//! by digest; most tests start from A live (common::target's `Scene`).
//!
//! The tests share prod: one at a time (a lock), each for its whole body.
//! They need the lab up (`lab/up.sh`) and root. They never skip.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use bollard::Docker;
use serde_json::Value;

use common::books::{not_read_back, put_books, remove_all, run_book_id, PlantedBook};
use common::prod::{assert_no_lock, LOCK};
use common::release::Release;
use common::run::{run_bounded, Run};
use common::target::{revision, Target, OBSERVE_DEADLINE};
use common::{repo_root, Lab};

/// The containers a deploy owns on prod (project `books-ms`).
const BLUE: &str = "books-ms-blue";
const GREEN: &str = "books-ms-green";
const PROD: Target = Target::Prod;

/// `harness --repo ROOT deploy --image IMAGE` with `env`, bounded.
async fn deploy(image: &str, env: &[(&str, &str)]) -> Run {
    PROD.deploy(image, env).await
}

/// `harness --repo ROOT ARGS...`, bounded, off the async runtime.
async fn harness(args: &[&str]) -> Run {
    PROD.harness(args, &[]).await
}

/// The revision prod's `/version` reports, through the proxy.
async fn prod_revision() -> String {
    revision(&PROD.url()).await
}

/// The colour users reach now (the one that runs), and the idle one.
async fn colours(prod: &Docker) -> (String, String) {
    let live = common::prod::live_colour(prod).await.name.expect("a name").trim_start_matches('/').to_owned();
    let idle = if live == BLUE { GREEN } else { BLUE };
    (live, idle.to_owned())
}

/// The colours now (live, idle), and the id of the idle colour's container
/// (what the deploy before left there, kept for a rollback), if any.
async fn colours_and_idle_id(prod: &Docker) -> (String, String, Option<String>) {
    let (live, idle) = colours(prod).await;
    let idle_id = common::prod::inspect(prod, &idle).await.and_then(|c| c.id);
    (live, idle, idle_id)
}

/// The idle colour `idle` was made anew from `image`: a container of its
/// name, from that image, other than `before` (the one there before).
async fn new_colour_created(prod: &Docker, idle: &str, image: &str, before: Option<&str>) -> bool {
    let Some(container) = common::prod::inspect(prod, idle).await else { return false };
    container.id.as_deref() != before && container.config.and_then(|c| c.image).as_deref() == Some(image)
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
        let mut command = common::run::harness_writing_its_pid(&pid_file);
        command.arg("--repo").arg(repo_root()).args(["deploy", "--image", image]).envs(env.iter().copied());
        let run = tokio::task::spawn_blocking(move || run_bounded(&mut command, PROD.deadline()));
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

#[tokio::test(flavor = "multi_thread")]
async fn a_deploy_under_steady_load_drops_no_request_and_switches_the_answers() {
    let scene = PROD.scene().await;
    let (a, b, prod) = (&scene.a, &scene.b, &scene.docker);
    let mut book = PlantedBook::put(&PROD.url(), 424_301).await;

    let what = format!("the deploy of {}", b.revision);
    let (run, load) = common::load::during(&what, &PROD.url(), deploy(&b.image, &[])).await;

    // Observe, remove the planted book, then judge.
    let kept = book.fetch().await;
    let removed = book.remove().await;

    assert_eq!(run.code, Some(0), "deploying {}:\n{}", b.revision, run.stderr);
    assert_eq!(load.failed, 0, "requests failed during the deploy: {load:?}");
    assert_eq!(load.revisions.first(), Some(&a.revision), "{load:?}");
    assert_eq!(load.revisions.last(), Some(&b.revision), "{load:?}");
    assert_eq!(kept.as_ref(), Some(&book.book), "the user's book after the deploy");
    assert_eq!(removed, 200, "removing the user's book");
    let live = common::prod::live_colour(prod).await;
    assert_eq!(live.config.and_then(|c| c.image).as_deref(), Some(b.image.as_str()), "the live colour's image");
    common::prod::assert_only_the_proxy_is_published(prod).await;
    assert_no_lock(prod).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_release_that_never_turns_healthy_is_never_switched_to() {
    let scene = PROD.scene().await;
    let (a, prod) = (&scene.a, &scene.docker);
    let (live, idle) = colours(prod).await;

    // The database image: no HTTP, no healthcheck of the app's: never healthy.
    let never_healthy = format!("{}/books-lab/ferretdb:1.24.2", Lab::load().registry);
    let args = ["deploy", "--image", &never_healthy, "--revision", "never"];
    let deploying = PROD.harness(&args, &[("HARNESS_PROD__HEALTH_TIMEOUT_SECS", "5")]);
    let (run, load) = common::load::during("the failed deploy", &PROD.url(), deploying).await;

    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(run.stderr.contains(&idle), "the error names the new colour {idle}:\n{}", run.stderr);
    assert!(run.stderr.contains("not healthy within 5 s"), "{}", run.stderr);
    assert_eq!(load.failed, 0, "requests failed during the deploy: {load:?}");
    assert_eq!(load.revisions, std::slice::from_ref(&a.revision), "{load:?}");
    assert_eq!(prod_revision().await, a.revision);
    assert_eq!(colours(prod).await.0, live, "the live colour");
    assert_no_lock(prod).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_deploys_at_once_one_is_refused_naming_the_holder() {
    let scene = PROD.scene().await;
    let (a, b, prod) = (&scene.a, &scene.b, &scene.docker);
    assert_no_lock(prod).await;

    let image = b.image.clone();
    let first = tokio::spawn(async move { deploy(&image, &[]).await });
    let has_lock = move || async move { common::prod::names(prod).await.iter().any(|n| n == LOCK) };
    wait_until("the first deploy's lock on prod", has_lock, || first.is_finished()).await;
    let second = deploy(&a.image, &[]).await;
    let first = first.await.unwrap();

    assert_eq!(second.code, Some(1), "the second deploy:\n{}", second.stderr);
    assert!(second.stderr.contains("holds the lock"), "{}", second.stderr);
    assert!(second.stderr.contains("harness pid"), "{}", second.stderr);
    assert!(second.stderr.contains(&b.image), "the holder's release is named:\n{}", second.stderr);
    assert_eq!(first.code, Some(0), "the first deploy:\n{}", first.stderr);
    assert_eq!(prod_revision().await, b.revision);
    assert_no_lock(prod).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_during_a_deploy_undoes_it() {
    let scene = PROD.scene().await;
    let (a, b, prod) = (&scene.a, &scene.b, &scene.docker);
    // What the deploy before left on the idle colour may carry B already:
    // the deploy removes it first.
    let (live, idle, before) = colours_and_idle_id(prod).await;

    let run = SignalledDeploy::start(&b.image, &[]);

    // The new colour is created from B: a container of the idle colour's
    // name, from B's image, other than the one there before.
    let created = || new_colour_created(prod, &idle, &b.image, before.as_deref());
    wait_until(&format!("{idle} from {}", b.image), created, || run.is_finished()).await;
    run.signal("TERM");
    let run = run.finish().await;

    assert_eq!(run.code, Some(130), "{}", run.stderr);
    assert!(run.stderr.contains("interrupted by SIGTERM"), "{}", run.stderr);
    assert_eq!(prod_revision().await, a.revision, "prod after the interrupted deploy");
    let left = common::prod::inspect(prod, &idle).await.map(|c| (c.config.and_then(|c| c.image), c.state));
    assert!(left.is_none(), "{idle} is still on prod: {left:?}\n{}", run.stderr);
    assert_eq!(colours(prod).await.0, live, "the live colour");
    assert_no_lock(prod).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rollback_returns_to_the_previous_release_and_loses_no_book() {
    let scene = PROD.scene().await;
    let (a, b) = (&scene.a, &scene.b);
    PROD.make_live(b).await;
    let mut book = PlantedBook::put(&PROD.url(), run_book_id(0)).await;
    let after_deploy = book.fetch().await;

    let what = format!("the rollback to {}", a.revision);
    let (rollback, load) = common::load::during(&what, &PROD.url(), harness(&["rollback"])).await;
    println!("the rollback to {} took {:?}", a.revision, rollback.elapsed);
    let revision_after_rollback = prod_revision().await;
    let after_rollback = book.fetch().await;
    let entries = PROD.history().await;

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
    assert_no_lock(&scene.docker).await;
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
    let (a, b) = PROD.releases().await;
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
    PROD.make_live(a).await;
    let prod = &PROD.docker().await;
    let (_, idle, before) = colours_and_idle_id(prod).await;

    let load = common::load::start(&format!("{}/version", PROD.url()), 2, Duration::from_millis(5));
    // After the switch, the harness checks, then drains: a longer drain
    // makes that window easy to hit.
    let env: &[(&str, &str)] =
        if matches!(point, KillPoint::Switched) { &[("HARNESS_PROD__DRAIN_SECS", "5")] } else { &[] };
    let run = SignalledDeploy::start(&b.image, env);
    let started = Instant::now();

    let created = || new_colour_created(prod, &idle, &b.image, before.as_deref());
    match point {
        KillPoint::Pulled => {
            let locked = move || async move { common::prod::inspect(prod, LOCK).await.is_some() };
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
    let names = common::prod::names(prod).await;
    let new_colour_created = created().await;
    let serving = prod_revision().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let load = load.stop().await;
    println!(
        "{point:?}: SIGKILL {killed_at:?} after the start of the deploy; prod then held {names:?} and served {serving}; \
         the load through the kill: {load}"
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
    let refused = deploy(&b.image, &[]).await;
    assert_eq!(refused.code, Some(1), "{point:?}: a deploy while the lock is held:\n{}", refused.stderr);
    assert!(refused.stderr.contains("holds the lock"), "{point:?}:\n{}", refused.stderr);
    assert!(refused.stderr.contains("harness lock release"), "{point:?}:\n{}", refused.stderr);
    assert!(refused.stderr.contains(&holder), "{point:?}: the refusal names {holder}:\n{}", refused.stderr);
    let released = harness(&["lock", "release"]).await;
    assert_eq!(released.code, Some(0), "{point:?}: harness lock release:\n{}", released.stderr);
    assert!(released.stdout.contains("released"), "{point:?}: harness lock release:\n{}", released.stdout);
    assert!(released.stdout.contains(&holder), "{point:?}: the release names {holder}:\n{}", released.stdout);
    lock_guard.armed = false;
    assert_no_lock(prod).await;

    // The next deploy repairs what was left half done.
    let repaired = deploy(&b.image, &[]).await;
    assert_eq!(repaired.code, Some(0), "{point:?}: the deploy after the lock's release:\n{}", repaired.stderr);
    assert_eq!(prod_revision().await, b.revision, "{point:?}: after the deploy:\n{}", repaired.stderr);
    assert_no_lock(prod).await;
    // Repaired: B runs as the one colour, the other one stopped (kept for a
    // rollback), as after any deploy.
    let running = common::prod::running_colours(prod).await;
    assert_eq!(
        running.len(),
        1,
        "{point:?}: after the deploy that followed the lock's release, {running:?} run (the killed deploy's old \
         colour was never stopped); that deploy said:\n{}{}",
        repaired.stdout,
        repaired.stderr
    );
    let live = common::prod::live_colour(prod).await;
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
        let release = || common::run::harness(PROD.deadline()).arg("--repo").arg(repo_root()).args(["lock", "release"]);
        // Off the async runtime's thread; bounded by the runner.
        let released = std::thread::spawn(move || release().run()).join();
        eprintln!("the killed deploy's lock, released after the test failed: {released:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn books_written_before_a_deploy_are_all_there_after_it() {
    let scene = PROD.scene().await;
    let b = &scene.b;
    let mut books = put_books(&PROD.url(), 50, &format!("the deploy of {}", b.revision)).await;

    let run = deploy(&b.image, &[]).await;
    let revision = prod_revision().await;
    let missing = not_read_back(&books, &PROD.url()).await;
    let not_removed = remove_all(&mut books).await;

    assert_eq!(run.code, Some(0), "deploying {}:\n{}", b.revision, run.stderr);
    assert_eq!(revision, b.revision, "prod after the deploy");
    assert!(missing.is_empty(), "books not read back as written after the deploy: {missing:?}");
    assert!(not_removed.is_empty(), "books not removed: {not_removed:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_release_that_fails_its_checks_before_the_switch_is_never_switched_to() {
    let scene = PROD.scene().await;
    let (a, b, prod) = (&scene.a, &scene.b, &scene.docker);
    let (live, _) = colours(prod).await;
    // A user's book on one of the checks' reserved ids: the checks refuse
    // to write over it, so the new colour's checks fail before the switch.
    let mut book = PlantedBook::put(&PROD.url(), 2_147_483_102).await;

    let what = format!("the deploy of {}", b.revision);
    let (run, load) = common::load::during(&what, &PROD.url(), deploy(&b.image, &[])).await;
    let kept = book.fetch().await;
    let removed = book.remove().await;
    let last = PROD.last_history_entry().await;

    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(run.stderr.contains("with the preview header"), "it failed before the switch:\n{}", run.stderr);
    assert!(run.stderr.contains("reserved-ids"), "{}", run.stderr);
    assert_eq!(kept.as_ref(), Some(&book.book), "the user's book on the reserved id is untouched");
    assert_eq!(removed, 200);
    assert_eq!(load.failed, 0, "requests failed during the deploy: {load:?}");
    assert_eq!(load.revisions, std::slice::from_ref(&a.revision), "users only ever saw A: {load:?}");
    assert_eq!(colours(prod).await.0, live, "the live colour");
    assert_eq!(last["outcome"], "failed", "the history says how it ended: {last:#}");
    assert!(last["error"].as_str().unwrap_or_default().contains("reserved-ids"), "and why: {last:#}");
    assert_no_lock(prod).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_post_deploy_hook_switches_users_back() {
    let scene = PROD.scene().await;
    let (a, b, prod) = (&scene.a, &scene.b, &scene.docker);
    let (live, idle) = colours(prod).await;

    // Users already reach B when the hook runs; it refuses the release.
    let hook = r#"echo "$BOOKS_MS_REVISION on $BOOKS_MS_COLOUR is not wanted" >&2; exit 3"#;
    let env = [("HARNESS_HOOKS__POST_DEPLOY", hook)];
    let deploying = deploy(&b.image, &env);
    let (run, load) = common::load::during("a deploy whose post-deploy hook fails", &PROD.url(), deploying).await;
    let last = PROD.last_history_entry().await;

    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(run.stderr.contains("post-deploy hook"), "{}", run.stderr);
    let refusal = format!("{} on {} is not wanted", b.revision, idle.trim_start_matches("books-ms-"));
    assert!(run.stderr.contains(&refusal), "the hook saw the release: {}", run.stderr);
    assert_eq!(load.failed, 0, "requests failed while switching and back: {load:?}");
    assert_eq!(load.revisions.last(), Some(&a.revision), "users are back on A: {load:?}");
    assert_eq!(prod_revision().await, a.revision);
    assert_eq!(common::prod::running_colours(prod).await, [live], "the new colour is gone");
    assert_eq!(last["outcome"], "failed", "{last:#}");
    assert_no_lock(prod).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_pre_deploy_hook_stops_the_deploy_before_prod_changes() {
    let scene = PROD.scene().await;
    let (a, b, prod) = (&scene.a, &scene.b, &scene.docker);
    let (_, idle, before) = colours_and_idle_id(prod).await;

    let run = deploy(&b.image, &[("HARNESS_HOOKS__PRE_DEPLOY", "echo not now >&2; exit 1")]).await;

    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(run.stderr.contains("pre-deploy hook") && run.stderr.contains("not now"), "{}", run.stderr);
    assert_eq!(prod_revision().await, a.revision);
    let after = common::prod::inspect(prod, &idle).await.and_then(|c| c.id);
    assert_eq!(after, before, "the idle colour {idle} was not touched");
    assert_no_lock(prod).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_release_that_cannot_reach_its_database_is_never_switched_to() {
    let scene = PROD.scene().await;
    let (a, b, prod) = (&scene.a, &scene.b, &scene.docker);
    let (live, _) = colours(prod).await;

    // The database frozen: the new colour turns healthy (its /health does
    // not ask the database), and its readiness through the preview
    // (healthcheck.path, books-ms's /ready) finds it answering 503.
    common::bounded("pausing the database", prod.pause_container("books-ms-db")).await.expect("pause books-ms-db");
    let run = deploy(&b.image, &[("HARNESS_PROD__HEALTH_TIMEOUT_SECS", "15")]).await;
    common::bounded("unpausing the database", prod.unpause_container("books-ms-db")).await.expect("unpause");
    let last = PROD.last_history_entry().await;

    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(run.stderr.contains("with the preview header"), "it failed before the switch:\n{}", run.stderr);
    assert!(run.stderr.contains("not healthy within 15 s"), "{}", run.stderr);
    assert!(run.stderr.contains("/ready with the preview header") && run.stderr.contains("503"), "{}", run.stderr);
    assert_eq!(prod_revision().await, a.revision, "users still reach A");
    assert_eq!(colours(prod).await.0, live, "the live colour");
    assert_eq!(last["outcome"], "failed", "{last:#}");
    assert_no_lock(prod).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn another_users_lock_is_released_only_with_force_which_names_it_in_the_history() {
    // A release live first: prod has the history and the image a lock
    // container needs.
    let scene = PROD.scene().await;
    let (a, prod) = (&scene.a, &scene.docker);
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
    let names = common::prod::names(prod).await;
    assert!(names.iter().any(|n| n == LOCK), "the lock is still there: {names:?}");

    let forced = harness(&["lock", "release", "--force"]).await;

    assert_eq!(forced.code, Some(0), "--force:\n{}", forced.stderr);
    assert!(forced.stdout.contains(&holder), "the release names whom it overrode:\n{}", forced.stdout);
    lock_guard.armed = false;
    assert_no_lock(prod).await;
    let last = PROD.last_history_entry().await;
    assert_eq!(last["kind"], "lock-release", "{last:#}");
    assert_eq!(last["outcome"], "forced", "{last:#}");
    assert!(last["error"].as_str().is_some_and(|e| e.contains(&holder)), "the history names the holder: {last:#}");
    let steps = last["steps"].as_array().cloned().unwrap_or_default();
    assert!(steps.iter().any(|s| s["name"].as_str().is_some_and(|n| n.contains(LOCK))), "its step: {last:#}");

    // A lock of this user on this machine needs no --force: the killed
    // deploy's test above releases one so.
}
