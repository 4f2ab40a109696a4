//! The original service's behaviour, kept: list, get, upsert, delete.

use serde_json::{json, Value};

use crate::helpers::{book, spawn_app, summary};

#[tokio::test]
async fn list_returns_exactly_the_summaries_of_the_inserted_books() {
    // Arrange
    let app = spawn_app().await;
    let books = [book(1, "T1", "A1", "D1"), book(2, "T2", "A2", "D2"), book(3, "T3", "A3", "D3")];
    app.insert_books(&books).await;

    // Act
    let response = app.get("/api/v1/books").await;

    // Assert
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
    let listed: Value = response.json().await.unwrap();
    assert_eq!(listed, Value::Array(books.iter().map(summary).collect()));
}

#[tokio::test]
async fn list_of_an_empty_collection_is_an_empty_array() {
    let app = spawn_app().await;
    let listed: Value = app.get("/api/v1/books").await.json().await.unwrap();
    assert_eq!(listed, json!([]));
}

#[tokio::test]
async fn list_is_ordered_by_id_whatever_the_insertion_order() {
    let app = spawn_app().await;
    app.insert_books(&[book(30, "c", "a", ""), book(-2, "a", "a", ""), book(7, "b", "a", "")]).await;
    let listed: Value = app.get("/api/v1/books").await.json().await.unwrap();
    let ids: Vec<i64> = listed.as_array().unwrap().iter().map(|b| b["_id"].as_i64().unwrap()).collect();
    assert_eq!(ids, vec![-2, 7, 30]);
}

#[tokio::test]
async fn list_streams_a_collection_larger_than_one_batch() {
    let app = spawn_app().await;
    let books: Vec<Value> = (1..=700).map(|i| book(i, &format!("Title {i}"), "Author", "x")).collect();
    app.insert_books(&books).await;
    let listed: Vec<Value> = app.get("/api/v1/books").await.json().await.unwrap();
    assert_eq!(listed.len(), 700);
    assert_eq!(listed, books.iter().map(summary).collect::<Vec<_>>());
}

#[tokio::test]
async fn list_pages_with_limit_and_after() {
    let app = spawn_app().await;
    let books: Vec<Value> = (1..=10).map(|i| book(i * 10, &format!("T{i}"), "A", "")).collect();
    app.insert_books(&books).await;

    let first: Vec<Value> = app.get("/api/v1/books?limit=4").await.json().await.unwrap();
    let second: Vec<Value> = app.get("/api/v1/books?limit=4&after=40").await.json().await.unwrap();
    let last: Vec<Value> = app.get("/api/v1/books?limit=4&after=80").await.json().await.unwrap();
    let beyond: Vec<Value> = app.get("/api/v1/books?after=100").await.json().await.unwrap();

    let ids = |page: &[Value]| page.iter().map(|b| b["_id"].as_i64().unwrap()).collect::<Vec<_>>();
    assert_eq!(ids(&first), vec![10, 20, 30, 40]);
    assert_eq!(ids(&second), vec![50, 60, 70, 80]);
    assert_eq!(ids(&last), vec![90, 100]);
    assert!(beyond.is_empty());
}

#[tokio::test]
async fn get_by_id_returns_the_whole_book() {
    let app = spawn_app().await;
    let stored = book(2, "The Title", "The Author", "The Description");
    app.insert_books(&[book(1, "x", "y", "z"), stored.clone()]).await;

    let response = app.get("/api/v1/books/_id/2").await;

    assert_eq!(response.status(), 200);
    let got: Value = response.json().await.unwrap();
    assert_eq!(got, stored);
}

#[tokio::test]
async fn put_inserts_the_book_and_echoes_it() {
    let app = spawn_app().await;
    let sent = book(5, "New", "Writer", "Fresh");

    let response = app.put_json(&sent).await;

    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.unwrap(), sent);
    assert_eq!(app.stored(5).await, Some(sent));
}

#[tokio::test]
async fn put_replaces_the_whole_existing_book() {
    let app = spawn_app().await;
    app.insert_books(&[book(5, "Old", "Writer", "Old description")]).await;

    // No description this time: the stored book is replaced whole.
    let response = app.put_json(&json!({"_id": 5, "title": "New", "author": "Other"})).await;

    assert_eq!(response.status(), 200);
    let expected = book(5, "New", "Other", "");
    assert_eq!(response.json::<Value>().await.unwrap(), expected);
    assert_eq!(app.stored(5).await, Some(expected));
    assert_eq!(app.count().await, 1);
}

#[tokio::test]
async fn post_upserts_like_put() {
    let app = spawn_app().await;
    let sent = book(9, "Posted", "Someone", "");
    let response = app.http.post(app.url("/api/v1/books")).json(&sent).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.unwrap(), sent);
    assert_eq!(app.stored(9).await, Some(sent));
}

#[tokio::test]
async fn delete_returns_the_removed_book_and_leaves_the_collection_empty() {
    let app = spawn_app().await;
    let stored = book(1, "Gone", "Soon", "Bye");
    app.insert_books(std::slice::from_ref(&stored)).await;

    let response = app.delete("/api/v1/books/_id/1").await;

    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.unwrap(), stored);
    assert_eq!(app.count().await, 0);
}

#[tokio::test]
async fn the_chapters_manual_check_puts_three_books_lists_them_and_gets_one() {
    let app = spawn_app().await;
    let books = [
        book(1, "My First Book", "John Doe", "Not a very good book"),
        book(2, "My Second Book", "John Doe", "Not a bad as the first book"),
        book(3, "My Third Book", "John Doe", "Failed writers club"),
    ];
    for b in &books {
        assert_eq!(app.put_json(b).await.status(), 200);
    }

    let listed: Value = app.get("/api/v1/books").await.json().await.unwrap();
    let one: Value = app.get("/api/v1/books/_id/1").await.json().await.unwrap();

    assert_eq!(listed, Value::Array(books.iter().map(summary).collect()));
    assert_eq!(one, books[0]);
}

#[tokio::test]
async fn text_in_any_language_is_stored_and_returned_unchanged() {
    let app = spawn_app().await;
    let sent = book(42, "Война и мир 📚", "列夫·托尔斯泰", "مرحبا — «ναί» ﷺ e\u{301} \"quoted\" \\ back");

    assert_eq!(app.put_json(&sent).await.status(), 200);

    assert_eq!(app.get("/api/v1/books/_id/42").await.json::<Value>().await.unwrap(), sent);
    assert_eq!(app.stored(42).await, Some(sent.clone()));
    let listed: Value = app.get("/api/v1/books").await.json().await.unwrap();
    assert_eq!(listed[0]["title"], sent["title"]);
}

#[tokio::test]
async fn ids_at_both_ends_of_the_range_round_trip() {
    let app = spawn_app().await;
    for id in [i32::MIN, 0, i32::MAX] {
        let sent = book(id, "Edge", "Case", "");
        assert_eq!(app.put_json(&sent).await.status(), 200, "{id}");
        assert_eq!(app.get(&format!("/api/v1/books/_id/{id}")).await.json::<Value>().await.unwrap(), sent);
    }
}
