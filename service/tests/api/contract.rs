//! What schemathesis checks against the OpenAPI document, pinned as tests:
//! methods and `Allow`, the constraints the document states, its links, and
//! the body deadline. `scripts/fuzz-api.sh` runs schemathesis itself.

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{assert_error, book, spawn_app, spawn_app_with, AppOptions};

#[tokio::test]
async fn options_lists_the_methods_of_each_resource() {
    let app = spawn_app().await;
    for (path, allow) in [
        ("/api/v1/books", "GET, PUT, POST, OPTIONS"),
        ("/api/v1/books/_id/1", "GET, DELETE, OPTIONS"),
        ("/health", "GET, OPTIONS"),
        ("/ready", "GET, OPTIONS"),
        ("/version", "GET, OPTIONS"),
        ("/metrics", "GET, OPTIONS"),
        ("/api/v1/openapi.json", "GET, OPTIONS"),
    ] {
        let response = app.http.request(reqwest::Method::OPTIONS, app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 204, "{path}");
        assert_eq!(response.headers()["allow"], allow, "{path}");
    }
}

#[tokio::test]
async fn an_unsupported_method_on_an_operations_endpoint_is_405_with_allow() {
    let app = spawn_app().await;
    for path in ["/health", "/ready", "/version", "/metrics", "/api/v1/openapi.json"] {
        let response = app.http.post(app.url(path)).send().await.unwrap();
        assert_eq!(response.headers()["allow"], "GET, OPTIONS", "{path}");
        assert_error(response, 405, "method_not_allowed", None).await;
    }
}

#[tokio::test]
async fn the_document_states_the_constraints_the_service_enforces() {
    let app = spawn_app().await;
    let doc: Value = app.get("/api/v1/openapi.json").await.json().await.unwrap();

    let book = &doc["components"]["schemas"]["Book"];
    assert_eq!(book["additionalProperties"], false, "unknown fields are refused");
    assert_eq!(book["properties"]["_id"]["minimum"], i32::MIN);
    assert_eq!(book["properties"]["_id"]["maximum"], i32::MAX);
    for field in ["title", "author"] {
        assert_eq!(book["properties"][field]["minLength"], 1, "{field}");
        assert!(book["properties"][field]["pattern"].is_string(), "{field}: not only white space");
    }
    let list = &doc["paths"]["/api/v1/books"]["get"];
    let limit = list["parameters"].as_array().unwrap().iter().find(|p| p["name"] == "limit").unwrap();
    assert_eq!((limit["schema"]["minimum"].as_i64(), limit["schema"]["maximum"].as_i64()), (Some(1), Some(1000)));
    let put = &doc["paths"]["/api/v1/books"]["put"];
    for status in ["400", "408", "413", "415", "503"] {
        assert!(put["responses"][status].is_object(), "PUT documents {status}");
    }
    assert!(put["responses"]["503"]["headers"]["Retry-After"].is_object());
    assert_ne!(put["operationId"], doc["paths"]["/api/v1/books"]["post"]["operationId"]);
}

#[tokio::test]
async fn the_served_document_links_a_stored_book_to_reading_replacing_and_deleting_it() {
    let app = spawn_app().await;
    let doc: Value = app.get("/api/v1/openapi.json").await.json().await.unwrap();

    let links = &doc["paths"]["/api/v1/books"]["put"]["responses"]["200"]["links"];
    assert_eq!(
        links["GetBook"],
        serde_json::json!({"operationId": "get_book", "parameters": {"id": "$response.body#/_id"}})
    );
    assert_eq!(links["DeleteBook"]["operationId"], "delete_book");
    assert_eq!(links["ReplaceBook"]["requestBody"]["_id"], "$response.body#/_id");
    let after_delete = &doc["paths"]["/api/v1/books/_id/{id}"]["delete"]["responses"]["200"]["links"];
    assert_eq!(after_delete["GetBook"]["operationId"], "get_book");
}

#[tokio::test]
async fn an_id_spelled_as_a_whole_float_is_that_id() {
    let app = spawn_app().await;
    let response = app.put_raw(Some("application/json"), r#"{"_id": 7.0, "title": "T", "author": "A"}"#).await;
    assert_eq!(response.status(), 200);
    let stored: Value = response.json().await.unwrap();
    assert_eq!(stored["_id"], 7);
    assert_eq!(app.get("/api/v1/books/_id/7").await.status(), 200);
    let response = app.put_raw(Some("application/json"), r#"{"_id": 7.5, "title": "T", "author": "A"}"#).await;
    assert_error(response, 400, "invalid_field", Some("_id")).await;
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_is_408_and_nothing_is_written() {
    // Arrange: a short body deadline; a PUT whose body stops half-way.
    let app = spawn_app_with(AppOptions {
        extra_env: vec![("HTTP_BODY_TIMEOUT_MS", "500".to_owned())],
        ..AppOptions::default()
    })
    .await;
    let body = serde_json::to_string(&book(1, "Half", "Sent", "")).unwrap();
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
    let head = format!(
        "PUT /api/v1/books HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );

    // Act
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body.as_bytes()[..10]).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
        .await
        .expect("the service answers and closes within 10 s")
        .unwrap();

    // Assert: 408 with the JSON error, the connection closed, nothing stored.
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert!(response.to_ascii_lowercase().contains("connection: close"), "{response}");
    let error: Value = serde_json::from_str(response.split_once("\r\n\r\n").unwrap().1).unwrap();
    assert_eq!(error["error"], "request_timeout");
    assert_eq!(app.count().await, 0);
}
