//! Health, readiness, version, OpenAPI, CORS, and life with the database down.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::{
    assert_error, book, db_uri, free_port, spawn_app, spawn_app_with, start_db_container, wait_for_db, AppOptions,
};

/// A URI where nothing listens: the database is down.
fn unreachable_db() -> String {
    format!("mongodb://127.0.0.1:{}", free_port())
}

/// `DB_TIMEOUT_MS` in the tests that wait for it to pass (the database down
/// or frozen): half the default (2 s), which they spent most of their time
/// waiting for. The bounds they assert are unchanged.
const DB_TIMEOUT_MS: &str = "1000";

/// The app against `db_uri`, with [`DB_TIMEOUT_MS`].
async fn spawn_app_waiting_less(db_uri: String) -> crate::helpers::TestApp {
    let extra_env = vec![("DB_TIMEOUT_MS", DB_TIMEOUT_MS.to_owned())];
    spawn_app_with(AppOptions { db_uri: Some(db_uri), extra_env, ..Default::default() }).await
}

#[tokio::test]
async fn health_answers_without_touching_the_database() {
    let app = spawn_app_with(AppOptions { db_uri: Some(unreachable_db()), ..Default::default() }).await;
    let response = app.get("/health").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.unwrap()["status"], "ok");
}

#[tokio::test]
async fn ready_is_200_when_the_database_answers() {
    let app = spawn_app().await;
    let response = app.get("/ready").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.unwrap()["status"], "ready");
}

#[tokio::test]
async fn with_the_database_down_the_service_starts_and_answers_503_quickly() {
    let app = spawn_app_waiting_less(unreachable_db()).await;
    for (method, path) in
        [("GET", "/ready"), ("GET", "/api/v1/books"), ("GET", "/api/v1/books/_id/1"), ("DELETE", "/api/v1/books/_id/1")]
    {
        let started = Instant::now();
        let request = app.http.request(method.parse().unwrap(), app.url(path));
        let response = request.send().await.unwrap();
        assert!(started.elapsed() < Duration::from_secs(5), "{method} {path} took {:?}", started.elapsed());
        assert_eq!(response.headers()["retry-after"], "2");
        assert_error(response, 503, "database_unavailable", None).await;
    }
    let started = Instant::now();
    assert_error(app.put_json(&book(1, "T", "A", "")).await, 503, "database_unavailable", None).await;
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_write_the_database_never_confirms_is_an_unknown_outcome_not_a_refusal() {
    // Arrange: a database of this test's own, frozen once the service is
    // connected to it, so that the next write is sent and never answered.
    let container = start_db_container(None).await;
    let uri = db_uri(&container).await;
    wait_for_db(&uri).await;
    let app = spawn_app_waiting_less(uri).await;
    assert_eq!(app.put_json(&book(1, "Before", "A", "")).await.status(), 200);
    container.pause().await.expect("pause the database");

    // Act
    let started = Instant::now();
    let response = app.put_json(&book(1, "During", "A", "")).await;
    let took = started.elapsed();
    container.unpause().await.expect("unpause the database");

    // Assert: not "unavailable" (which promises nothing was written), but
    // an outcome the client must treat as unknown, within the deadline.
    assert_eq!(response.headers()["retry-after"], "2");
    let body = assert_error(response, 503, "write_outcome_unknown", None).await;
    assert!(body["message"].as_str().unwrap().contains("safe to retry"), "{body}");
    assert!(took < Duration::from_secs(15), "took {took:?}");
    // A retry of the PUT settles it.
    assert_eq!(app.put_json(&book(1, "During", "A", "")).await.status(), 200);
}

#[tokio::test]
async fn readiness_follows_the_database_as_it_stops_and_starts_again() {
    // Arrange: a database of this test's own, on a fixed port so a restart keeps it.
    let container = start_db_container(Some(free_port())).await;
    let uri = db_uri(&container).await;
    wait_for_db(&uri).await;
    let app = spawn_app_waiting_less(uri).await;
    assert_eq!(app.put_json(&book(1, "Survivor", "A", "")).await.status(), 200);
    assert_eq!(app.get("/ready").await.status(), 200);

    // Act 1: stop the database.
    container.stop().await.expect("stop the database");

    // Assert 1: not ready, and the API says so within a bounded time.
    let started = Instant::now();
    assert_error(app.get("/ready").await, 503, "database_unavailable", None).await;
    assert_error(app.get("/api/v1/books/_id/1").await, 503, "database_unavailable", None).await;
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    assert_eq!(app.get("/health").await.status(), 200);

    // Act 2: start it again.
    container.start().await.expect("start the database again");

    // Assert 2: ready again by itself (bounded wait), with the data intact.
    let deadline = Instant::now() + Duration::from_secs(30);
    while app.get("/ready").await.status() != 200 {
        assert!(Instant::now() < deadline, "not ready 30 s after the database came back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let got: Value = app.get("/api/v1/books/_id/1").await.json().await.unwrap();
    assert_eq!(got["title"], "Survivor");
}

#[tokio::test]
async fn version_reports_the_package_version_and_a_revision() {
    let app = spawn_app().await;
    let version: Value = app.get("/version").await.json().await.unwrap();
    assert_eq!(version["name"], "books-ms");
    assert_eq!(version["version"], env!("CARGO_PKG_VERSION"));
    assert!(version["revision"].as_str().is_some_and(|r| !r.is_empty()), "{version}");
}

#[tokio::test]
async fn the_openapi_document_describes_the_api() {
    let app = spawn_app().await;
    let response = app.get("/api/v1/openapi.json").await;
    assert_eq!(response.status(), 200);
    let doc: Value = response.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in ["/api/v1/books", "/api/v1/books/_id/{id}", "/health", "/ready", "/version"] {
        assert!(doc["paths"][path].is_object(), "{path} missing");
    }
    assert!(doc["paths"]["/api/v1/books"]["put"].is_object());
    assert!(doc["paths"]["/api/v1/books"]["post"].is_object());
    assert!(doc["paths"]["/api/v1/books/_id/{id}"]["delete"].is_object());
    assert!(doc["components"]["schemas"]["Book"].is_object());
}

#[tokio::test]
async fn every_response_allows_any_origin_errors_included() {
    let app = spawn_app().await;
    for path in ["/api/v1/books", "/api/v1/books/_id/777", "/api/v1/books/_id/x", "/health", "/no/such/file.js"] {
        let response = app.http.get(app.url(path)).header("origin", "https://elsewhere.example").send().await.unwrap();
        assert_eq!(response.headers()["access-control-allow-origin"], "*", "{path}");
        assert!(response.headers().contains_key("x-request-id"), "{path}");
        // A page elsewhere can read the request id, and the ETag a conditional DELETE needs.
        let exposed = response.headers()["access-control-expose-headers"].to_str().unwrap().to_ascii_lowercase();
        let exposed: Vec<&str> = exposed.split(',').map(str::trim).collect();
        assert!(exposed.contains(&"x-request-id") && exposed.contains(&"etag"), "{path}: {exposed:?}");
    }
}

#[tokio::test]
async fn a_cors_preflight_is_answered() {
    let app = spawn_app().await;
    let response = app
        .http
        .request(reqwest::Method::OPTIONS, app.url("/api/v1/books"))
        .header("origin", "https://elsewhere.example")
        .header("access-control-request-method", "PUT")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let headers = response.headers();
    assert_eq!(headers["access-control-allow-origin"], "*");
    let methods = headers["access-control-allow-methods"].to_str().unwrap();
    for m in ["GET", "PUT", "POST", "DELETE"] {
        assert!(methods.contains(m), "{methods}");
    }
    assert!(headers["access-control-allow-headers"].to_str().unwrap().to_lowercase().contains("content-type"));
    assert_eq!(app.count().await, 0);
}

#[tokio::test]
async fn each_request_gets_its_own_request_id() {
    let app = spawn_app().await;
    let a = app.get("/health").await.headers()["x-request-id"].clone();
    let b = app.get("/health").await.headers()["x-request-id"].clone();
    assert_ne!(a, b);
}
