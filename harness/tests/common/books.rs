//! Users' books on a deploy target, written and read through its API (the
//! service behind prod's proxy or a swarm node's), never straight in the
//! database: what a deploy must keep.

use std::time::Duration;

use serde_json::Value;

use super::{bounded, http_client};

/// A book id of this run only, `n` < 100: never a check's reserved id
/// (2147483101..103), never another run's.
pub fn run_book_id(n: i64) -> i64 {
    assert!((0..100).contains(&n), "{n}");
    1_000_000_000 + i64::from(std::process::id() % 10_000_000) * 100 + n
}

/// A user's book put through `base` (`http://HOST:PORT`), removed when it
/// goes (also when a test fails).
pub struct PlantedBook {
    base: String,
    pub id: i64,
    pub book: Value,
    removed: bool,
}

impl PlantedBook {
    /// "A user's book" with id `id`.
    pub async fn put(base: &str, id: i64) -> PlantedBook {
        let book = serde_json::json!({
            "_id": id, "title": "A user's book", "author": "Reader", "description": "must survive a deploy"
        });
        PlantedBook::put_book(base, id, book).await
    }

    /// Puts `book`, whose `_id` is `id`.
    pub async fn put_book(base: &str, id: i64, book: Value) -> PlantedBook {
        let url = format!("{base}/api/v1/books");
        let response = bounded("PUT a book", http_client().put(&url).json(&book).send()).await.unwrap();
        assert_eq!(response.status(), 200, "putting the user's book {id}");
        PlantedBook { base: base.to_owned(), id, book, removed: false }
    }

    /// The book as the target serves it now, None when it is not there.
    pub async fn fetch(&self) -> Option<Value> {
        self.fetch_through(&self.base).await
    }

    /// The book as `base` serves it now (another node's proxy, say).
    pub async fn fetch_through(&self, base: &str) -> Option<Value> {
        let url = format!("{base}/api/v1/books/_id/{}", self.id);
        let response = bounded("GET a book", http_client().get(&url).send()).await.unwrap();
        if response.status() == 200 {
            Some(response.json().await.unwrap())
        } else {
            None
        }
    }

    /// Removes it; the status the target answered.
    pub async fn remove(&mut self) -> reqwest::StatusCode {
        let url = format!("{}/api/v1/books/_id/{}", self.base, self.id);
        let status = bounded("DELETE a book", http_client().delete(&url).send()).await.unwrap().status();
        self.removed = true;
        status
    }
}

impl Drop for PlantedBook {
    fn drop(&mut self) {
        if self.removed {
            return;
        }
        // No await in a drop: a thread with a runtime of its own, bounded.
        let url = format!("{}/api/v1/books/_id/{}", self.base, self.id);
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            runtime.block_on(tokio::time::timeout(Duration::from_secs(20), http_client().delete(&url).send())).ok()
        })
        .join();
    }
}

/// Books 1 to `count` of this run ([`run_book_id`]) put through `base`,
/// each saying it was written before `what` (e.g. "the deploy of REV").
pub async fn put_books(base: &str, count: i64, what: &str) -> Vec<PlantedBook> {
    let mut books = Vec::new();
    for n in 1..=count {
        let id = run_book_id(n);
        let book = serde_json::json!({
            "_id": id, "title": format!("Book {n} of {what}"), "author": format!("Author {n}"),
            "description": format!("written before {what}")
        });
        books.push(PlantedBook::put_book(base, id, book).await);
    }
    books
}

/// The books `base` does not serve as they were written, with what it
/// served instead.
pub async fn not_read_back(books: &[PlantedBook], base: &str) -> Vec<(i64, Option<Value>)> {
    let mut missing = Vec::new();
    for book in books {
        let back = book.fetch_through(base).await;
        if back.as_ref() != Some(&book.book) {
            missing.push((book.id, back));
        }
    }
    missing
}

/// Removes each book; those the target did not answer 200 for, with what
/// it answered.
pub async fn remove_all(books: &mut [PlantedBook]) -> Vec<(i64, reqwest::StatusCode)> {
    let mut not_removed = Vec::new();
    for book in books {
        let status = book.remove().await;
        if status != 200 {
            not_removed.push((book.id, status));
        }
    }
    not_removed
}
