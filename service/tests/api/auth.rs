//! Who may write (`WRITE_TOKEN`, `WRITE_TOKEN_FILE`) and which pages may
//! call the API (`CORS_ORIGINS`). Open writes and `*` are the default, and
//! the rest of the suite runs with them.

use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::{Method, RequestBuilder};
use serde_json::Value;

use crate::helpers::{book, spawn_app_with, AppOptions, TestApp};

const TOKEN: &str = "tok-3f9a1c";

async fn spawn_app_with_env(extra_env: Vec<(&'static str, String)>) -> TestApp {
    spawn_app_with(AppOptions { extra_env, ..Default::default() }).await
}

async fn spawn_app_with_token() -> TestApp {
    spawn_app_with_env(vec![("WRITE_TOKEN", TOKEN.to_owned())]).await
}

/// The three writes, each with `authorization` (if any), and the `_id` it touches.
fn writes(app: &TestApp, authorization: Option<&str>) -> Vec<(&'static str, i32, RequestBuilder)> {
    let with = |request: RequestBuilder| match authorization {
        Some(value) => request.header("authorization", value),
        None => request,
    };
    vec![
        ("PUT", 1, with(app.http.put(app.url("/api/v1/books")).json(&book(1, "Put", "A", "")))),
        ("POST", 2, with(app.http.post(app.url("/api/v1/books")).json(&book(2, "Post", "A", "")))),
        ("DELETE", 3, with(app.http.delete(app.url("/api/v1/books/_id/3")))),
    ]
}

/// A refused write: 401, the JSON error body, the challenge, and the
/// database as it was (book 3 exists, 1 and 2 do not).
async fn assert_refused(app: &TestApp, authorization: Option<&str>, challenge: &str) {
    for (method, id, request) in writes(app, authorization) {
        let response = request.send().await.expect("sent");
        assert_eq!(response.status(), 401, "{method} with {authorization:?}");
        assert_eq!(response.headers()["www-authenticate"], challenge, "{method}");
        assert_eq!(response.headers()["access-control-allow-origin"], "*", "{method}");
        let body: Value = response.json().await.expect("a JSON error body");
        assert_eq!(body["error"], "unauthorized", "{method}: {body}");
        assert!(body["message"].as_str().unwrap().contains("nothing was written"), "{body}");
        assert!(!body.to_string().contains(TOKEN), "{body}");
        let stored = app.stored(id).await;
        assert_eq!(stored.is_some(), id == 3, "{method} wrote: {stored:?}");
    }
    assert_eq!(app.count().await, 1);
}

#[tokio::test]
async fn writes_without_the_token_are_401_and_write_nothing() {
    let app = spawn_app_with_token().await;
    app.insert_books(&[book(3, "Kept", "A", "")]).await;
    assert_refused(&app, None, "Bearer").await;
    // Another scheme is no token either.
    assert_refused(&app, Some(&format!("Basic {TOKEN}")), "Bearer").await;
}

#[tokio::test]
async fn writes_with_a_wrong_token_are_401_and_write_nothing() {
    let app = spawn_app_with_token().await;
    app.insert_books(&[book(3, "Kept", "A", "")]).await;
    for wrong in ["Bearer wrong", "Bearer tok-3f9a1", "Bearer tok-3f9a1cc", "Bearer "] {
        let challenge = if wrong == "Bearer " { "Bearer" } else { r#"Bearer error="invalid_token""# };
        assert_refused(&app, Some(wrong), challenge).await;
    }
}

#[tokio::test]
async fn writes_with_the_token_are_done() {
    let app = spawn_app_with_token().await;
    app.insert_books(&[book(3, "Gone", "A", "")]).await;
    for (method, id, request) in writes(&app, Some(&format!("Bearer {TOKEN}"))) {
        let response = request.send().await.expect("sent");
        assert_eq!(response.status(), 200, "{method}");
        assert_eq!(app.stored(id).await.is_some(), id != 3, "{method}");
    }
}

#[tokio::test]
async fn reads_stay_open_when_writes_need_the_token() {
    let app = spawn_app_with_token().await;
    app.insert_books(&[book(3, "Open", "A", "")]).await;
    assert_eq!(app.http.put(app.url("/api/v1/books")).json(&book(4, "T", "A", "")).send().await.unwrap().status(), 401);
    for path in [
        "/api/v1/books",
        "/api/v1/books/_id/3",
        "/health",
        "/ready",
        "/version",
        "/api/v1/openapi.json",
        "/components/books-api.js",
    ] {
        assert_eq!(app.get(path).await.status(), 200, "{path}");
    }
    let preflight = app
        .http
        .request(Method::OPTIONS, app.url("/api/v1/books"))
        .header("origin", "https://elsewhere.example")
        .header("access-control-request-method", "PUT")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 204);
}

#[tokio::test]
async fn the_token_can_come_from_a_file() {
    let file = tempfile::NamedTempFile::new().unwrap();
    // As `echo TOKEN > file` writes it: the newline is not part of the token.
    std::fs::write(file.path(), format!("{TOKEN}\n")).unwrap();
    let app = spawn_app_with_env(vec![("WRITE_TOKEN_FILE", file.path().display().to_string())]).await;
    let put = |authorization: Option<String>| {
        let request = app.http.put(app.url("/api/v1/books")).json(&book(1, "File", "A", ""));
        match authorization {
            Some(value) => request.header("authorization", value),
            None => request,
        }
    };
    assert_eq!(put(None).send().await.unwrap().status(), 401);
    assert_eq!(app.count().await, 0);
    assert_eq!(put(Some(format!("Bearer {TOKEN}"))).send().await.unwrap().status(), 200);
    assert!(app.stored(1).await.is_some());
}

/// The binary with `env` (and nothing else); its exit code and stderr, or
/// `None` when it is still running after 10 s (then it is killed).
fn run_binary(env: &[(&str, &str)]) -> Option<(Option<i32>, String)> {
    let stderr = tempfile::NamedTempFile::new().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_books-ms"))
        .env_clear()
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(stderr.reopen().unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some((status.code(), std::fs::read_to_string(stderr.path()).unwrap()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

#[test]
fn both_token_variables_are_refused_at_start_up_naming_both() {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), "other").unwrap();
    let path = file.path().display().to_string();
    let (code, stderr) =
        run_binary(&[("WRITE_TOKEN", TOKEN), ("WRITE_TOKEN_FILE", &path)]).expect("books-ms refused to start");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("WRITE_TOKEN ") && stderr.contains("WRITE_TOKEN_FILE"), "{stderr}");
    assert!(!stderr.contains(TOKEN), "{stderr}");
}

#[test]
fn an_empty_token_file_is_refused_at_start_up() {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), "\n").unwrap();
    let path = file.path().display().to_string();
    let (code, stderr) = run_binary(&[("WRITE_TOKEN_FILE", &path)]).expect("books-ms refused to start");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("WRITE_TOKEN_FILE") && stderr.contains("empty"), "{stderr}");
}

const LISTED: &str = "https://books.example.com";

async fn spawn_app_with_origins() -> TestApp {
    spawn_app_with_env(vec![("CORS_ORIGINS", format!("{LISTED}, http://localhost:9000"))]).await
}

#[tokio::test]
async fn a_listed_origin_gets_itself_echoed_with_vary_origin() {
    let app = spawn_app_with_origins().await;
    for path in ["/api/v1/books", "/api/v1/books/_id/777", "/health"] {
        let response = app.http.get(app.url(path)).header("origin", LISTED).send().await.unwrap();
        let headers = response.headers();
        assert_eq!(headers["access-control-allow-origin"], LISTED, "{path}");
        let vary: Vec<_> = headers.get_all("vary").iter().map(|v| v.to_str().unwrap().to_ascii_lowercase()).collect();
        assert!(vary.iter().any(|v| v.split(',').any(|v| v.trim() == "origin")), "{path}: {vary:?}");
        assert!(headers.contains_key("access-control-expose-headers"), "{path}");
    }
}

#[tokio::test]
async fn an_unlisted_origin_gets_no_cors_header_preflights_included() {
    let app = spawn_app_with_origins().await;
    for origin in [Some("https://evil.example"), Some("https://books.example.com.evil.example"), None] {
        let mut get = app.http.get(app.url("/api/v1/books"));
        if let Some(origin) = origin {
            get = get.header("origin", origin);
        }
        let response = get.send().await.unwrap();
        assert_eq!(response.status(), 200, "{origin:?}");
        assert!(!response.headers().contains_key("access-control-allow-origin"), "{origin:?}");
    }
    let preflight = app
        .http
        .request(Method::OPTIONS, app.url("/api/v1/books"))
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "PUT")
        .header("access-control-request-headers", "content-type, authorization")
        .send()
        .await
        .unwrap();
    let headers = preflight.headers();
    for name in ["access-control-allow-origin", "access-control-allow-methods", "access-control-allow-headers"] {
        assert!(!headers.contains_key(name), "{name}: {headers:?}");
    }
    assert_eq!(app.count().await, 0);
}

#[tokio::test]
async fn a_preflight_from_a_listed_origin_allows_the_authorization_header() {
    let app = spawn_app_with_origins().await;
    let preflight = app
        .http
        .request(Method::OPTIONS, app.url("/api/v1/books/_id/1"))
        .header("origin", LISTED)
        .header("access-control-request-method", "DELETE")
        .header("access-control-request-headers", "authorization")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 204);
    let headers = preflight.headers();
    assert_eq!(headers["access-control-allow-origin"], LISTED);
    assert!(headers["access-control-allow-methods"].to_str().unwrap().contains("DELETE"));
    let allowed = headers["access-control-allow-headers"].to_str().unwrap().to_ascii_lowercase();
    assert!(allowed.split(',').any(|h| h.trim() == "authorization"), "{allowed}");
}
