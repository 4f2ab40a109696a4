//! Documents another program wrote into the collection that are not valid
//! books: the list keeps working for everyone, and GET says what is wrong.

use mongodb::bson::{doc, Document};
use serde_json::{json, Value};

use crate::faults::{log_lines, start_binary_logging, stop_binary};
use crate::helpers::{assert_error, book, free_port, shared_db_uri, spawn_app, summary};

/// Two valid books and three bad documents, written with the driver.
async fn collection_with_bad_documents(app: &crate::helpers::TestApp) -> (Value, Value) {
    let (one, two) = (book(1, "One", "A", ""), book(2, "Two", "B", "d"));
    app.insert_books(&[one.clone(), two.clone()]).await;
    let bad: Vec<Document> = vec![
        doc! { "_id": 3, "author": "No title" },
        doc! { "_id": "4", "title": "String id", "author": "C" },
        doc! { "_id": 5, "title": 42, "author": "Wrong type" },
    ];
    app.collection.insert_many(bad).await.expect("bad documents inserted");
    (one, two)
}

#[tokio::test]
async fn the_list_skips_documents_that_are_not_valid_books_and_keeps_the_rest() {
    let app = spawn_app().await;
    let (one, two) = collection_with_bad_documents(&app).await;

    let response = app.get("/api/v1/books").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.unwrap(), json!([summary(&one), summary(&two)]));
    // Paging goes past them too.
    let page: Value = app.get("/api/v1/books?after=1&limit=10").await.json().await.unwrap();
    assert_eq!(page, json!([summary(&two)]));
    let page: Value = app.get("/api/v1/books?after=2").await.json().await.unwrap();
    assert_eq!(page, json!([]));
}

#[tokio::test]
async fn get_of_a_bad_document_is_500_stored_book_invalid_naming_the_field_and_the_problem() {
    let app = spawn_app().await;
    collection_with_bad_documents(&app).await;

    let body = assert_error(app.get("/api/v1/books/_id/3").await, 500, "stored_book_invalid", Some("title")).await;
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("_id 3") && message.contains("`title` is missing"), "{message}");
    let body = assert_error(app.get("/api/v1/books/_id/5").await, 500, "stored_book_invalid", Some("title")).await;
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("_id 5") && message.contains("must be a string, not a number"), "{message}");
    // A string `_id` is no book id of this API: GET of the integer 4 finds nothing.
    assert_error(app.get("/api/v1/books/_id/4").await, 404, "book_not_found", None).await;
    // Valid books are still served.
    assert_eq!(app.get("/api/v1/books/_id/1").await.status(), 200);
}

#[tokio::test]
async fn a_bad_document_can_be_replaced_by_put_or_removed_by_delete() {
    let app = spawn_app().await;
    collection_with_bad_documents(&app).await;

    let response = app.delete("/api/v1/books/_id/3").await;
    assert_eq!(response.status(), 204);
    assert_eq!(app.stored(3).await, None);

    let fixed = book(5, "Fixed", "Wrong type", "");
    assert_eq!(app.put_json(&fixed).await.status(), 200);
    assert_eq!(app.get("/api/v1/books/_id/5").await.json::<Value>().await.unwrap(), fixed);
}

#[tokio::test]
async fn each_skipped_document_is_logged_with_its_id_and_what_is_wrong() {
    // Arrange: the binary (its JSON log in a file) over a collection with bad documents.
    let app = spawn_app().await;
    collection_with_bad_documents(&app).await;
    let db = app.collection.namespace().db;
    let log = tempfile::NamedTempFile::new().unwrap();
    let port = free_port();
    let service = start_binary_logging(port, shared_db_uri().await, &db, log.reopen().unwrap());

    // Act
    let response = app.http.get(format!("http://127.0.0.1:{port}/api/v1/books")).send().await.unwrap();
    let status = response.status();
    let listed: Value = response.json().await.unwrap();
    stop_binary(service).await;

    // Assert: the two books, and one warning per bad document naming it.
    assert_eq!(status, 200);
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
    let warnings: Vec<Value> = log_lines(&log).into_iter().filter(|l| l["level"] == "WARN").collect();
    for (id, problem) in [("3", "`title` is missing"), ("\"4\"", "`_id` must be an integer"), ("5", "must be a string")]
    {
        let line = warnings.iter().find(|l| l["id"] == id);
        let line = line.unwrap_or_else(|| panic!("no warning for _id {id}: {warnings:#?}"));
        assert!(line["error"].as_str().unwrap().contains(problem), "{line}");
    }
}
