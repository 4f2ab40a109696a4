//! `harness rollback` after a refused deploy, on both targets: release A
//! live, then B (A is what B replaced), then a release that never turns
//! healthy, refused (B keeps serving). On a single host that attempt took
//! the stopped colour where A was kept; the rollback still returns to A,
//! the release the history says B replaced, deploying A's digest again.
//! Both under a steady load: no request fails. Needs the lab up; never
//! skips.

mod common;

use common::load;
use common::prod::assert_no_lock;
use common::release::never_healthy;
use common::target::{revision, Target};

async fn rollback_returns_to_the_release_before_the_live_one_after_a_refused_deploy(target: Target) {
    let scene = target.scene().await;
    let (a, b) = (&scene.a, &scene.b);
    target.make_live(b).await;
    let never = never_healthy(a).await;
    let url = target.url();
    let refused = [("HARNESS_PROD__HEALTH_TIMEOUT_SECS", "20")];

    let (run, refusal) = load::during("the refused deploy", &url, target.deploy(&never.image, &refused)).await;
    assert_eq!(run.code, Some(1), "the never-healthy release is refused:\n{}", run.stderr);
    assert_eq!(revision(&url).await, b.revision, "B serves after the refusal:\n{}", run.stderr);

    let (rolled, rollback) = load::during("the rollback", &url, target.harness(&["rollback"], &[])).await;
    assert_eq!(rolled.code, Some(0), "{target:?}: the rollback after a refused deploy:\n{}", rolled.stderr);
    assert_eq!(revision(&url).await, a.revision, "A, the release B replaced, serves:\n{}", rolled.stderr);
    let last = target.last_history_entry().await;
    assert_eq!((last["kind"].as_str(), last["outcome"].as_str()), (Some("rollback"), Some("succeeded")), "{last}");
    assert_eq!(last["release"]["image"], a.image.as_str(), "{last}");
    assert_eq!(refusal.failed, 0, "requests failed during the refused deploy: {refusal}");
    assert_eq!(rollback.failed, 0, "requests failed during the rollback: {rollback}");
    assert_no_lock(&scene.docker).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn on_a_single_host_rollback_after_a_refused_deploy_returns_to_the_release_before_the_live_one() {
    rollback_returns_to_the_release_before_the_live_one_after_a_refused_deploy(Target::Prod).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn on_the_swarm_rollback_after_a_refused_deploy_returns_to_the_release_before_the_live_one() {
    rollback_returns_to_the_release_before_the_live_one_after_a_refused_deploy(Target::Swarm).await;
}
