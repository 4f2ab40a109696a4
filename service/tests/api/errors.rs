//! Where the original was weak: clear JSON errors, and nothing written.

use serde_json::json;

use crate::helpers::{assert_error, book, spawn_app};

#[tokio::test]
async fn get_missing_book_returns_404_with_a_json_error() {
    let app = spawn_app().await;
    let body = assert_error(app.get("/api/v1/books/_id/404").await, 404, "book_not_found", None).await;
    assert!(body["message"].as_str().unwrap().contains("404"));
}

#[tokio::test]
async fn delete_missing_book_returns_404_and_removes_nothing() {
    let app = spawn_app().await;
    app.insert_books(&[book(1, "Stays", "Here", "")]).await;
    assert_error(app.delete("/api/v1/books/_id/2").await, 404, "book_not_found", None).await;
    assert_eq!(app.count().await, 1);
}

#[tokio::test]
async fn a_non_integer_id_in_the_path_is_400() {
    let app = spawn_app().await;
    for path in ["/api/v1/books/_id/abc", "/api/v1/books/_id/1.5", "/api/v1/books/_id/99999999999"] {
        assert_error(app.get(path).await, 400, "invalid_field", Some("_id")).await;
        assert_error(app.delete(path).await, 400, "invalid_field", Some("_id")).await;
    }
}

#[tokio::test]
async fn empty_or_missing_title_or_author_is_400_naming_the_field_and_writes_nothing() {
    let app = spawn_app().await;
    let cases = [
        (json!({"_id": 1, "author": "A"}), "title"),
        (json!({"_id": 1, "title": "", "author": "A"}), "title"),
        (json!({"_id": 1, "title": "  ", "author": "A"}), "title"),
        (json!({"_id": 1, "title": "T"}), "author"),
        (json!({"_id": 1, "title": "T", "author": ""}), "author"),
        (json!({"_id": 1, "title": ["T"], "author": "A"}), "title"),
    ];
    for (body, field) in cases {
        assert_error(app.put_json(&body).await, 400, "invalid_field", Some(field)).await;
    }
    assert_eq!(app.count().await, 0);
}

#[tokio::test]
async fn a_bad_id_in_the_body_is_400_naming_it_and_writes_nothing() {
    let app = spawn_app().await;
    for id in ["\"1\"", "1.5", "1e-2", "2147483648.0", "2147483648", "-2147483649", "null", "true"] {
        let body = format!(r#"{{"_id":{id},"title":"T","author":"A"}}"#);
        assert_error(app.put_raw(Some("application/json"), body).await, 400, "invalid_field", Some("_id")).await;
    }
    assert_error(app.put_json(&json!({"title": "T", "author": "A"})).await, 400, "invalid_field", Some("_id")).await;
    assert_eq!(app.count().await, 0);
}

#[tokio::test]
async fn a_rejected_update_leaves_the_stored_book_as_it_was() {
    let app = spawn_app().await;
    let original = book(1, "Kept", "Intact", "Unchanged");
    app.insert_books(std::slice::from_ref(&original)).await;
    assert_error(
        app.put_json(&json!({"_id": 1, "title": "", "author": "X"})).await,
        400,
        "invalid_field",
        Some("title"),
    )
    .await;
    assert_eq!(app.stored(1).await, Some(original));
}

#[tokio::test]
async fn unknown_fields_are_refused_naming_the_field() {
    let app = spawn_app().await;
    let body = json!({"_id": 1, "title": "T", "author": "A", "isbn": "978-3"});
    assert_error(app.put_json(&body).await, 400, "invalid_field", Some("isbn")).await;
    assert_eq!(app.count().await, 0);
}

#[tokio::test]
async fn malformed_json_is_400() {
    let app = spawn_app().await;
    assert_error(app.put_raw(Some("application/json"), r#"{"_id": 1, "title": "#).await, 400, "malformed_json", None)
        .await;
    assert_error(app.put_raw(Some("application/json"), "[1, 2, 3]").await, 400, "not_a_book", None).await;
    assert_error(app.put_raw(Some("application/json"), "").await, 400, "malformed_json", None).await;
    assert_eq!(app.count().await, 0);
}

#[tokio::test]
async fn a_body_that_is_not_json_is_415() {
    let app = spawn_app().await;
    let valid = r#"{"_id":1,"title":"T","author":"A"}"#;
    assert_error(app.put_raw(Some("text/plain"), valid).await, 415, "unsupported_media_type", None).await;
    assert_error(
        app.put_raw(Some("application/x-www-form-urlencoded"), "_id=1").await,
        415,
        "unsupported_media_type",
        None,
    )
    .await;
    assert_error(app.put_raw(None, valid).await, 415, "unsupported_media_type", None).await;
    assert_eq!(app.count().await, 0);
    // A JSON type with parameters or a +json suffix is fine.
    assert_eq!(app.put_raw(Some("application/json; charset=utf-8"), valid).await.status(), 200);
    assert_eq!(app.put_raw(Some("application/vnd.books+json"), valid).await.status(), 200);
}

#[tokio::test]
async fn a_body_past_the_limit_is_413_and_writes_nothing() {
    let app = spawn_app().await;
    let huge = book(1, "Big", "Book", &"x".repeat(300 * 1024));
    let response = app.put_json(&huge).await;
    assert_error(response, 413, "payload_too_large", None).await;

    // The same, streamed without a Content-Length.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = (0..40).map(|_| Ok(vec![b' '; 10 * 1024])).collect();
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    assert_error(app.put_raw(Some("application/json"), body).await, 413, "payload_too_large", None).await;
    assert_eq!(app.count().await, 0);

    // Just under the limit is fine.
    let large = book(2, "Large", "Book", &"y".repeat(200 * 1024));
    assert_eq!(app.put_json(&large).await.status(), 200);
}

#[tokio::test]
async fn bad_paging_parameters_are_400_naming_them() {
    let app = spawn_app().await;
    assert_error(app.get("/api/v1/books?limit=0").await, 400, "invalid_field", Some("limit")).await;
    assert_error(app.get("/api/v1/books?limit=abc").await, 400, "invalid_field", Some("limit")).await;
    assert_error(app.get("/api/v1/books?limit=5000").await, 400, "invalid_field", Some("limit")).await;
    assert_error(app.get("/api/v1/books?after=x").await, 400, "invalid_field", Some("after")).await;
    // Unknown parameters are ignored, as before.
    assert_eq!(app.get("/api/v1/books?limit=2&other=x").await.status(), 200);
}

#[tokio::test]
async fn a_paging_parameter_given_twice_is_400_naming_it() {
    let app = spawn_app().await;
    let body = assert_error(app.get("/api/v1/books?limit=2&limit=3").await, 400, "bad_body", None).await;
    assert!(body["message"].as_str().unwrap().contains("duplicate field `limit`"), "{body}");
}

#[tokio::test]
async fn an_unsupported_method_is_405() {
    let app = spawn_app().await;
    let response = app.http.patch(app.url("/api/v1/books")).send().await.unwrap();
    assert_eq!(response.headers()["allow"], "GET, PUT, POST, OPTIONS", "RFC 9110 asks for Allow with a 405");
    assert_error(response, 405, "method_not_allowed", None).await;
    let response = app.http.put(app.url("/api/v1/books/_id/1")).send().await.unwrap();
    assert_eq!(response.headers()["allow"], "GET, DELETE, OPTIONS");
    assert_error(response, 405, "method_not_allowed", None).await;
    let response = app.http.delete(app.url("/index.html")).send().await.unwrap();
    assert_eq!(response.headers()["allow"], "GET, HEAD");
    assert_error(response, 405, "method_not_allowed", None).await;
}
