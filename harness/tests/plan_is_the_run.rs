//! The plan is the run, on each target: `harness deploy --dry-run` of a
//! release lists exactly the operations the deploy of that release then
//! runs, in order, the prelude (pull, lock) and the closing ones (the
//! record of how it ended, the lock's release) included. What ran is read
//! back from prod's own history, where the deploy records every operation
//! it ran before it records how it ended (that record and the lock's
//! release are the last two operations, run after it).
//!
//! Each test starts from release A live and deploys release B (revisions
//! of this run), so that the deploy replaces what prod serves. They need the lab up
//! (`lab/up.sh`: prod and the swarm) and never skip.

mod common;

use serde_json::Value;

use common::target::Target;

/// The operations of a dry run's text: the numbered lines of the deploy's
/// plan (after the pipeline's own plan), without the note of when they run.
fn operations(text: &str) -> Vec<String> {
    let deploy = text.find("\ndeploy ").map_or("", |at| &text[at..]);
    deploy
        .lines()
        .filter_map(|line| {
            let (number, rest) = line.trim_start().split_once(". ")?;
            number.parse::<u32>().ok()?;
            let rest =
                rest.trim_end_matches(" (once it succeeded, best-effort)").trim_end_matches(" (whatever happened)");
            Some(rest.to_owned())
        })
        .collect()
}

/// Dry run, deploy, and the history's record of the deploy, compared.
async fn the_dry_run_is_what_the_deploy_runs(target: Target) {
    let scene = target.scene().await;
    let release = &scene.b; // A is live: B replaces it

    let dry = target.harness(&["--dry-run", "deploy", "--image", &release.image], &[]).await;
    assert!(dry.success(), "the dry run on {target:?} failed:\n{}", dry.stderr);
    let planned = operations(&dry.stdout);
    assert!(planned.len() > 6, "a dry run lists its operations:\n{}", dry.stdout);

    let run = target.deploy(&release.image, &[]).await;
    assert!(run.success(), "the deploy on {target:?} failed:\n{}", run.stderr);

    let last: Value = target.last_history_entry().await;
    assert_eq!(last["release"]["revision"], release.revision.as_str(), "the last entry is this deploy: {last:#}");
    assert_eq!(last["outcome"], "succeeded", "{last:#}");
    let steps = last["steps"].as_array().cloned().unwrap_or_default();
    let ran: Vec<String> = steps.iter().map(|s| s["name"].as_str().unwrap_or_default().to_owned()).collect();
    assert!(steps.iter().all(|s| s["outcome"] == "passed"), "every operation passed: {last:#}");

    let (before_the_end, closing) = planned.split_at(planned.len() - 2);
    assert_eq!(ran, before_the_end, "on {target:?}, what ran (left) is what the dry run listed (right)");
    assert!(closing[0].starts_with("record in ") && closing[0].ends_with(" how this deploy ended"), "{closing:?}");
    assert!(closing[1].starts_with("release the deploy lock"), "{closing:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn on_a_single_host_the_dry_run_lists_every_operation_the_deploy_runs_in_order() {
    the_dry_run_is_what_the_deploy_runs(Target::Prod).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn on_the_swarm_the_dry_run_lists_every_operation_the_deploy_runs_in_order() {
    the_dry_run_is_what_the_deploy_runs(Target::Swarm).await;
}
