//! Static files from `client/`, and no way out of it.

use crate::helpers::{raw_get, repo_root, spawn_app, spawn_app_with, AppOptions};

#[tokio::test]
async fn a_static_page_under_client_is_served_with_its_exact_content() {
    let app = spawn_app().await;
    let expected = std::fs::read_to_string(repo_root().join("client/index.html")).expect("client/index.html");

    let response = app.get("/index.html").await;

    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    assert_eq!(response.text().await.unwrap(), expected);
    // `/` is the same page.
    assert_eq!(app.get("/").await.text().await.unwrap(), expected);
}

/// A static folder of the test's own, with a secret beside it and a
/// symlink inside pointing at the secret.
fn site() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let site = dir.path().join("site");
    std::fs::create_dir_all(site.join("components")).unwrap();
    std::fs::write(site.join("index.html"), "<!doctype html><title>home</title>").unwrap();
    std::fs::write(site.join("components/list.js"), "export const x = 1;\n").unwrap();
    std::fs::write(site.join("components/style.css"), "p { color: red }\n").unwrap();
    std::fs::write(dir.path().join("secret.txt"), "TOP SECRET").unwrap();
    std::os::unix::fs::symlink(dir.path().join("secret.txt"), site.join("link.txt")).unwrap();
    std::os::unix::fs::symlink(dir.path(), site.join("up")).unwrap();
    dir
}

#[tokio::test]
async fn files_get_their_content_types_and_revalidating_cache_headers() {
    let dir = site();
    let app = spawn_app_with(AppOptions { static_dir: dir.path().join("site"), ..Default::default() }).await;

    let js = app.get("/components/list.js").await;
    assert_eq!(js.status(), 200);
    assert!(js.headers()["content-type"].to_str().unwrap().contains("javascript"));
    assert_eq!(js.headers()["cache-control"], "no-cache");
    let etag = js.headers()["etag"].clone();
    let css = app.get("/components/style.css").await;
    assert!(css.headers()["content-type"].to_str().unwrap().starts_with("text/css"));

    let again = app.http.get(app.url("/components/list.js")).header("if-none-match", etag).send().await.unwrap();
    assert_eq!(again.status(), 304);
}

#[tokio::test]
async fn traversal_attempts_never_leave_the_static_folder() {
    let dir = site();
    let app = spawn_app_with(AppOptions { static_dir: dir.path().join("site"), ..Default::default() }).await;
    for path in [
        "/../secret.txt",
        "/components/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2E/secret.txt",
        "/components/%2e%2e/%2e%2e/secret.txt",
        "/%2e%2e%2fsecret.txt",
        "/..%2Fsecret.txt",
        "/..%5csecret.txt",
        "/%252e%252e/secret.txt",
        "/link.txt",
        "/up/secret.txt",
        "/.%2e/secret.txt",
        "//etc/passwd",
        "/%00",
    ] {
        let (status, body) = raw_get(app.port, path).await;
        assert!(status == 404 || status == 400, "{path}: {status}");
        assert!(!body.contains("TOP SECRET"), "{path} leaked the secret");
    }
    // The legitimate file next to them is served.
    assert_eq!(raw_get(app.port, "/components/list.js").await.0, 200);
}

#[tokio::test]
async fn a_missing_file_is_a_json_404() {
    let app = spawn_app().await;
    crate::helpers::assert_error(app.get("/components/nope.js").await, 404, "not_found", None).await;
}
