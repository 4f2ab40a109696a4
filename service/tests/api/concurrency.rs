//! PUT and DELETE racing on one id: every answer fits some order of the
//! operations, and nothing is a server error.

use std::sync::Arc;

use serde_json::Value;
use tokio::sync::Barrier;

use crate::helpers::{book, spawn_app, spawn_app_with, AppOptions};

#[derive(Debug, Clone, PartialEq)]
enum Op {
    Put(String),
    Delete,
}

/// What a client saw: a PUT's echoed title, a DELETE's removed title or 404.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Stored(String),
    Removed(String),
    NotFound,
}

/// Is there an order of `ops` that, from `initial`, gives every answer in
/// `seen` and ends with `last`? (Brute force: a round has a few operations.)
fn explained(initial: &Option<String>, ops: &[(Op, Seen)], last: &Option<String>) -> bool {
    fn go(state: &Option<String>, left: &[(Op, Seen)], used: &mut Vec<bool>, last: &Option<String>) -> bool {
        if used.iter().all(|u| *u) {
            return state == last;
        }
        for i in 0..left.len() {
            if used[i] {
                continue;
            }
            let (op, seen) = &left[i];
            let next = match (op, seen, state) {
                (Op::Put(t), Seen::Stored(s), _) if t == s => Some(t.clone()),
                (Op::Delete, Seen::Removed(r), Some(current)) if r == current => None,
                (Op::Delete, Seen::NotFound, None) => None,
                _ => continue,
            };
            used[i] = true;
            if go(&next, left, used, last) {
                return true;
            }
            used[i] = false;
        }
        false
    }
    go(initial, ops, &mut vec![false; ops.len()], last)
}

#[tokio::test]
async fn put_and_delete_racing_on_one_id_give_answers_some_order_explains() {
    let app = Arc::new(spawn_app().await);
    const ROUNDS: i32 = 30;
    const PUTS: usize = 3;
    const DELETES: usize = 3;

    for round in 0..ROUNDS {
        // Arrange: odd rounds start with the book stored, even ones without.
        let id = 1000 + round;
        let initial = (round % 2 == 1).then(|| format!("initial-{round}"));
        if let Some(title) = &initial {
            assert_eq!(app.put_json(&book(id, title, "A", "")).await.status(), 200);
        }
        let mut ops: Vec<Op> = (0..PUTS).map(|k| Op::Put(format!("r{round}-put{k}"))).collect();
        ops.extend((0..DELETES).map(|_| Op::Delete));

        // Act: all at once, each on its own connection.
        let barrier = Arc::new(Barrier::new(ops.len()));
        let tasks: Vec<_> = ops
            .iter()
            .cloned()
            .map(|op| {
                let (app, barrier) = (app.clone(), barrier.clone());
                tokio::spawn(async move {
                    let client = reqwest::Client::builder().build().unwrap();
                    barrier.wait().await;
                    let response = match &op {
                        Op::Put(title) => client.put(app.url("/api/v1/books")).json(&book(id, title, "A", "")),
                        Op::Delete => client.delete(app.url(&format!("/api/v1/books/_id/{id}"))),
                    }
                    .timeout(std::time::Duration::from_secs(20))
                    .send()
                    .await
                    .expect("an answer");
                    let status = response.status().as_u16();
                    let body: Value = response.json().await.unwrap_or(Value::Null);
                    let seen = match (&op, status) {
                        (Op::Put(_), 200) => Seen::Stored(body["title"].as_str().unwrap().to_owned()),
                        (Op::Delete, 200) => Seen::Removed(body["title"].as_str().unwrap().to_owned()),
                        (Op::Delete, 404) => Seen::NotFound,
                        _ => panic!("round {round}: {op:?} answered {status} {body}"),
                    };
                    (op, seen)
                })
            })
            .collect();
        let mut results = Vec::new();
        for task in tasks {
            results.push(task.await.expect("no panic"));
        }
        let response = app.get(&format!("/api/v1/books/_id/{id}")).await;
        let last = match response.status().as_u16() {
            200 => Some(response.json::<Value>().await.unwrap()["title"].as_str().unwrap().to_owned()),
            404 => None,
            other => panic!("round {round}: GET after the race answered {other}"),
        };

        // Assert
        assert!(
            explained(&initial, &results, &last),
            "round {round}: no order explains {results:?} ending in {last:?}"
        );
    }
}

#[test]
fn the_order_check_itself_rejects_impossible_histories() {
    let put = |t: &str| (Op::Put(t.to_owned()), Seen::Stored(t.to_owned()));
    let removed = |t: &str| (Op::Delete, Seen::Removed(t.to_owned()));
    // Two deletes cannot both remove the same single write.
    assert!(!explained(&None, &[put("a"), removed("a"), removed("a")], &None));
    // A delete cannot remove what was never written.
    assert!(!explained(&None, &[put("a"), removed("b")], &None));
    // Nor can the book end as a title nobody wrote last.
    assert!(!explained(&None, &[put("a"), put("b"), (Op::Delete, Seen::NotFound)], &None));
    assert!(explained(&None, &[put("a"), put("b"), (Op::Delete, Seen::NotFound)], &Some("b".to_owned())));
    assert!(explained(&Some("x".into()), &[removed("x"), put("a"), (Op::Delete, Seen::NotFound)], &Some("a".into())));
}

#[tokio::test]
async fn two_instances_inserting_the_same_new_id_at_once_both_succeed() {
    // Arrange: two services on one database (as two colours are during a
    // deploy): their upserts are not ordered by one process.
    let db = format!("test_{}", uuid::Uuid::new_v4().simple());
    let options = || AppOptions { extra_env: vec![("DB_DBNAME", db.clone())], ..Default::default() };
    let (first, second) = (Arc::new(spawn_app_with(options()).await), Arc::new(spawn_app_with(options()).await));

    for id in 0..40 {
        // Act: both insert the same new id at once.
        let barrier = Arc::new(Barrier::new(2));
        let tasks: Vec<_> = [(first.clone(), "first"), (second.clone(), "second")]
            .into_iter()
            .map(|(app, title)| {
                let barrier = barrier.clone();
                tokio::spawn(async move {
                    barrier.wait().await;
                    let response = app.put_json(&book(id, title, "A", "")).await;
                    (response.status().as_u16(), response.text().await.unwrap_or_default())
                })
            })
            .collect();
        // Assert: both acknowledged (a duplicate key, E11000, is retried as a
        // replace), and the book holds one of the two.
        for task in tasks {
            let (status, body) = task.await.expect("no panic");
            assert_eq!(status, 200, "id {id}: {body}");
        }
        let stored: Value = first.get(&format!("/api/v1/books/_id/{id}")).await.json().await.unwrap();
        assert!(matches!(stored["title"].as_str(), Some("first" | "second")), "{stored}");
    }
}
