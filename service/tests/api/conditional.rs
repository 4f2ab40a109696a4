//! Conditional writes: `PUT` with `If-None-Match: *` only creates, and
//! `DELETE` with `If-Match` removes only the very book a client read, so a
//! program (harness verify) can write and clean up beside users without ever
//! overwriting or removing their books.

use serde_json::Value;

use crate::helpers::{assert_error, book, spawn_app, TestApp};

async fn put_create_only(app: &TestApp, body: &Value) -> reqwest::Response {
    app.http.put(app.url("/api/v1/books")).header("if-none-match", "*").json(body).send().await.expect("PUT sent")
}

async fn delete_if_match(app: &TestApp, id: i32, etag: &str) -> reqwest::Response {
    app.http.delete(app.url(&format!("/api/v1/books/_id/{id}"))).header("if-match", etag).send().await.expect("sent")
}

fn etag_of(response: &reqwest::Response) -> String {
    let etag = response.headers().get("etag");
    etag.unwrap_or_else(|| panic!("an ETag header: {response:?}")).to_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_create_only_put_on_a_free_id_stores_the_book_and_returns_its_etag() {
    let app = spawn_app().await;
    let created = book(7, "T", "A", "D");

    let response = put_create_only(&app, &created).await;

    assert_eq!(response.status(), 200);
    let etag = etag_of(&response);
    assert!(etag.starts_with('"') && etag.ends_with('"') && etag.len() > 10, "a strong ETag: {etag}");
    assert_eq!(app.stored(7).await, Some(created));
    assert_eq!(etag_of(&app.get("/api/v1/books/_id/7").await), etag, "GET names the same version");
}

#[tokio::test]
async fn a_create_only_put_on_a_taken_id_is_412_book_exists_and_writes_nothing() {
    let app = spawn_app().await;
    let users = book(7, "The user's", "U", "");
    app.insert_books(std::slice::from_ref(&users)).await;

    let response = put_create_only(&app, &book(7, "Other", "O", "")).await;

    let body = assert_error(response, 412, "book_exists", None).await;
    assert!(body["message"].as_str().unwrap().contains('7'), "{body}");
    assert_eq!(app.stored(7).await, Some(users));
}

#[tokio::test]
async fn of_many_create_only_puts_racing_on_one_id_exactly_one_wins() {
    let app = spawn_app().await;
    let puts = (0..8).map(|n| {
        let app = &app;
        async move { put_create_only(app, &book(9, &format!("writer {n}"), "W", "")).await.status().as_u16() }
    });

    let statuses = futures_util::future::join_all(puts).await;

    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == 200 || *s == 412), "{statuses:?}");
}

#[tokio::test]
async fn a_delete_with_the_current_etag_removes_the_book() {
    let app = spawn_app().await;
    let etag = etag_of(&app.put_json(&book(3, "T", "A", "D")).await);

    let response = delete_if_match(&app, 3, &etag).await;

    assert_eq!(response.status(), 200);
    assert_eq!(app.stored(3).await, None);
}

#[tokio::test]
async fn a_delete_with_a_stale_etag_is_412_and_removes_nothing() {
    let app = spawn_app().await;
    let etag = etag_of(&app.put_json(&book(3, "T", "A", "D")).await);
    let replaced = book(3, "T", "A", "D, changed by a user");
    app.put_json(&replaced).await;

    let response = delete_if_match(&app, 3, &etag).await;

    assert_error(response, 412, "precondition_failed", None).await;
    assert_eq!(app.stored(3).await, Some(replaced));
}

#[tokio::test]
async fn a_delete_with_if_match_on_a_missing_book_is_412() {
    let app = spawn_app().await;
    let response = delete_if_match(&app, 3, "\"0123456789abcdef\"").await;
    assert_error(response, 412, "precondition_failed", None).await;
}

#[tokio::test]
async fn conditional_headers_the_service_does_not_take_are_refused_not_ignored() {
    // If-None-Match other than `*` is refused (400); an If-Match that is not
    // entity tags matches no book (412). Neither writes anything.
    let app = spawn_app().await;
    app.put_json(&book(3, "T", "A", "D")).await;

    let put = app
        .http
        .put(app.url("/api/v1/books"))
        .header("if-none-match", "\"abc\"")
        .json(&book(3, "New", "A", ""))
        .send()
        .await
        .unwrap();
    let delete = delete_if_match(&app, 3, "not-quoted").await;

    assert_error(put, 400, "invalid_precondition", None).await;
    assert_error(delete, 412, "precondition_failed", None).await;
    assert_eq!(app.stored(3).await, Some(book(3, "T", "A", "D")));
}

#[tokio::test]
async fn create_only_and_plain_puts_racing_on_fresh_ids_never_fail_with_a_server_error() {
    let app = spawn_app().await;
    for id in 100..110 {
        let puts = (0..6).map(|n| {
            let app = &app;
            async move {
                let body = book(id, &format!("writer {n}"), "W", "");
                let response = if n % 2 == 0 { put_create_only(app, &body).await } else { app.put_json(&body).await };
                response.status().as_u16()
            }
        });

        let statuses = futures_util::future::join_all(puts).await;

        assert!(statuses.iter().all(|s| *s == 200 || *s == 412), "id {id}: {statuses:?}");
        assert!(statuses.iter().skip(1).step_by(2).all(|s| *s == 200), "plain PUTs always store: {statuses:?}");
    }
}

#[tokio::test]
async fn the_openapi_document_states_the_conditional_headers_their_412s_and_the_etag() {
    let app = spawn_app().await;
    let doc: Value = app.get("/api/v1/openapi.json").await.json().await.unwrap();
    let header_names = |operation: &Value| -> Vec<String> {
        let params = operation["parameters"].as_array().cloned().unwrap_or_default();
        params.iter().filter(|p| p["in"] == "header").map(|p| p["name"].as_str().unwrap().to_owned()).collect()
    };

    let put = &doc["paths"]["/api/v1/books"]["put"];
    let delete = &doc["paths"]["/api/v1/books/_id/{id}"]["delete"];
    let get = &doc["paths"]["/api/v1/books/_id/{id}"]["get"];

    assert_eq!(header_names(put), ["If-None-Match"], "{put}");
    assert_eq!(header_names(delete), ["If-Match"], "{delete}");
    for operation in [put, delete] {
        assert!(operation["responses"]["412"].is_object(), "{operation}");
    }
    for operation in [put, get] {
        assert!(operation["responses"]["200"]["headers"]["ETag"].is_object(), "{operation}");
    }
}

/// A book another program wrote in a way the service would not (an `_id`
/// stored as a double, a missing `description`): a client that read it
/// removes it conditionally like any other, with the answer telling the
/// truth.
#[tokio::test]
async fn a_book_stored_by_another_program_is_removed_with_if_match_like_any_other() {
    use mongodb::bson::doc;
    let app = spawn_app().await;
    let written = [
        doc! { "_id": 7.0, "title": "Double id", "author": "Other program", "description": "d" },
        doc! { "_id": 8, "title": "No description", "author": "Other program" },
    ];
    app.collection.insert_many(written).await.expect("the other program's documents");

    for (id, title) in [(7, "Double id"), (8, "No description")] {
        let read = app.get(&format!("/api/v1/books/_id/{id}")).await;
        assert_eq!(read.status(), 200, "GET {id}");
        let etag = etag_of(&read);

        let response = delete_if_match(&app, id, &etag).await;

        assert_eq!(response.status(), 200, "DELETE {id} with If-Match {etag}");
        let removed: Value = response.json().await.unwrap();
        assert_eq!(removed["_id"], id, "{removed}");
        assert_eq!(removed["title"], title, "{removed}");
        assert_eq!(app.stored(id).await, None, "{id} is gone");
    }
}

/// The same with a stale tag: nothing is removed, and the answer says so.
#[tokio::test]
async fn a_book_stored_by_another_program_and_changed_since_is_kept_with_412() {
    use mongodb::bson::doc;
    let app = spawn_app().await;
    app.collection.insert_one(doc! { "_id": 8, "title": "No description", "author": "A" }).await.unwrap();
    let etag = etag_of(&app.get("/api/v1/books/_id/8").await);
    app.collection.update_one(doc! { "_id": 8 }, doc! { "$set": { "title": "Changed" } }).await.unwrap();

    let response = delete_if_match(&app, 8, &etag).await;

    assert_error(response, 412, "precondition_failed", None).await;
    assert!(app.stored(8).await.is_some(), "kept");
}
