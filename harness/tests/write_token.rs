//! A service whose writes need a token, deployed by the harness on both
//! targets: with `checks.write_token` set, the deploy gives the app its
//! `WRITE_TOKEN` and the post-deploy checks send it (the deploy passes
//! only if they could write); a write without it is refused with 401; a
//! deploy without the setting opens the writes again. Needs the lab;
//! never skips.

mod common;

use common::http_client;
use common::target::Target;

const TOKEN_SETTING: &str = "HARNESS_VERIFY__WRITE_TOKEN";

/// The status of a create-only PUT of book `id` at `base`, with `token`.
async fn put(base: &str, id: i64, token: Option<&str>) -> u16 {
    let book = serde_json::json!({"_id": id, "title": "a token test's book", "author": "write_token.rs"});
    let mut request = http_client().put(format!("{base}/api/v1/books")).json(&book);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let answer = common::bounded("PUT a book", request.send()).await.expect("the service answers");
    answer.status().as_u16()
}

async fn remove(base: &str, id: i64, token: Option<&str>) {
    let mut request = http_client().delete(format!("{base}/api/v1/books/_id/{id}"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let _ = common::bounded("DELETE a book", request.send()).await;
}

async fn writes_need_the_token_the_harness_was_given(target: Target) {
    let scene = target.scene().await;
    let token = format!("token-of-test-{}", std::process::id());
    let base = target.url();
    let id = common::books::run_book_id(11);

    let run = target.deploy(&scene.b.image, &[(TOKEN_SETTING, token.as_str())]).await;
    assert!(run.success(), "{target:?}: a deploy with a write token (its checks must write with it):\n{}", run.stderr);
    assert!(!run.stderr.contains(&token), "the token is never printed:\n{}", run.stderr);
    let without = put(&base, id, None).await;
    let with = put(&base, id, Some(&token)).await;
    remove(&base, id, Some(&token)).await;

    // Back to open writes, as every other test expects.
    target.make_live(&scene.a).await;
    let open = put(&base, id, None).await;
    remove(&base, id, None).await;

    assert_eq!(without, 401, "{target:?}: a write without the token");
    assert_eq!(with, 200, "{target:?}: a write with it");
    assert_eq!(open, 200, "{target:?}: after a deploy without the setting, writes are open again");
}

#[tokio::test(flavor = "multi_thread")]
async fn on_a_single_host_the_apps_writes_need_the_token_the_harness_was_given() {
    writes_need_the_token_the_harness_was_given(Target::Prod).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn on_the_swarm_the_apps_writes_need_the_token_the_harness_was_given() {
    writes_need_the_token_the_harness_was_given(Target::Swarm).await;
}
