//! The checks themselves, and the books and pages they work with.

use std::collections::{BTreeMap, BTreeSet};

use reqwest::{Method, StatusCode, Url};
use serde_json::{json, Value};

use super::http::{compact, excerpt, no_answer, request_id, Answer, Http};
use super::report::{Problem, ServiceVersion};
use super::{MARKER, MAX_IDS, MAX_PAGE};

pub(super) async fn check_ready(http: &Http) -> Result<((), String), Problem> {
    http.call(Method::GET, "/ready", None).await?.expect_status(StatusCode::OK, "200 (the database answers)", http)?;
    Ok(((), "200: the service and its database answer".to_owned()))
}

pub(super) async fn check_version(http: &Http) -> Result<(ServiceVersion, String), Problem> {
    let answer = http.call(Method::GET, "/version", None).await?;
    answer.expect_status(StatusCode::OK, "200 with {name, version, revision}", http)?;
    let version: ServiceVersion = serde_json::from_slice(&answer.body)
        .map_err(|_| answer.content("JSON {\"name\", \"version\", \"revision\"}", excerpt(&answer.body)))?;
    let detail = format!("{} {}, revision {}", version.name, version.version, version.revision);
    Ok((version, detail))
}

/// The original integ test. Reads only the start of the list: on a large
/// collection the whole of it would be slow and is not what is checked.
pub(super) async fn check_integ_list(http: &Http) -> Result<((), String), Problem> {
    let path = "/api/v1/books";
    let url = http.url(path);
    let mut response = http.client.get(&url).send().await.map_err(|e| no_answer("GET", &url, &e))?;
    let status = response.status();
    let mut head = Vec::new();
    while head.iter().all(u8::is_ascii_whitespace) && head.len() < 1024 {
        match response.chunk().await {
            Ok(Some(chunk)) => head.extend_from_slice(&chunk),
            Ok(None) => break,
            Err(e) => return Err(no_answer("GET", &url, &e)),
        }
    }
    let answer = Answer { method: "GET", url, status, request_id: request_id(&response), etag: None, body: head };
    answer.expect_status(StatusCode::OK, "200 with a JSON array", http)?;
    if answer.body.trim_ascii_start().first() != Some(&b'[') {
        return Err(answer.content("a JSON array", excerpt(&answer.body)));
    }
    Ok(((), "200: GET /api/v1/books answers".to_owned()))
}

/// Each reserved id is free, or holds a book an interrupted run left (it
/// carries [`super::MARKER`]), which is removed only if it is unchanged
/// since it was read (`If-Match` its `ETag`).
pub(super) async fn check_reserved_ids(http: &Http, ids: &[i32]) -> Result<((), String), Problem> {
    let mut leftovers = Vec::new();
    for &id in ids {
        let answer = http.call(Method::GET, &book_path(id), None).await?;
        match answer.status {
            StatusCode::NOT_FOUND => {}
            StatusCode::OK => {
                let book: Value = answer.json("a book")?;
                if !is_ours(&book) {
                    return Err(Problem::IdInUse {
                        id,
                        url: answer.url,
                        title: text_field(&book, "title"),
                        author: text_field(&book, "author"),
                    });
                }
                if !delete_if_unchanged(http, id, &answer).await? {
                    return Err(Problem::Taken { id, url: answer.url, when: "while verify removed a leftover there" });
                }
                leftovers.push(id);
            }
            _ => return Err(answer.status_problem("404 (no book) or 200 with one of the checks' books", http)),
        }
    }
    let detail = if leftovers.is_empty() {
        format!("{} ids free", ids.len())
    } else {
        format!("{} ids free; {leftovers:?} held books of an interrupted run, removed", ids.len() - leftovers.len())
    };
    Ok(((), detail))
}

/// Writes each book only if its id is free (`If-None-Match: *`): a book a
/// user created there since `reserved-ids` looked is never overwritten.
/// `created` gets each id written, as it is, with the `ETag` of the book
/// created there.
pub(super) async fn check_put(
    http: &Http,
    books: &[Value],
    created: &mut Vec<(i32, String)>,
) -> Result<((), String), Problem> {
    let mut unconditional = 0;
    for book in books {
        let id = book_id(book);
        let answer = http.call_if(Method::PUT, "/api/v1/books", Some(book), Some(("If-None-Match", "*"))).await?;
        if answer.status == StatusCode::PRECONDITION_FAILED {
            return Err(Problem::Taken {
                id,
                url: http.url(&book_path(id)),
                when: "after `reserved-ids` found it free",
            });
        }
        answer.expect_status(StatusCode::OK, "200 echoing the book", http)?;
        // A books-ms older than conditional requests sends no ETag (and
        // wrote unconditionally); the cleanup then finds the book by its
        // token, so that a rollback to such a release still passes.
        if let Some(etag) = answer.etag.clone() {
            created.push((id, etag));
        } else {
            unconditional += 1;
        }
        let echoed: Value = answer.json("the book echoed")?;
        if &echoed != book {
            return Err(answer.content(&format!("the book echoed, {}", compact(book)), compact(&echoed)));
        }
    }
    if unconditional > 0 {
        return Ok((
            (),
            format!(
                "{} books written, each echoed; the service sent no ETag (a books-ms without conditional requests), so \
                 its PUTs were not create-only",
                books.len()
            ),
        ));
    }
    Ok(((), format!("{} books created (create-only PUT), each echoed", books.len())))
}

/// The list, read a page per window of reserved ids, holds exactly the
/// summaries of the checks' books on those ids.
pub(super) async fn check_list(http: &Http, books: &[Value]) -> Result<((), String), Problem> {
    let expected: BTreeMap<i32, Value> = books.iter().map(|b| (book_id(b), summary(b))).collect();
    let ids: Vec<i32> = expected.keys().copied().collect();
    let windows = windows(&ids);
    for window in &windows {
        let path = window.path();
        let answer = http.call(Method::GET, &path, None).await?;
        answer.expect_status(StatusCode::OK, "200 with a JSON array of summaries", http)?;
        let page: Vec<Value> = answer.json("a JSON array of summaries")?;
        let mut found: BTreeMap<i32, &Value> = BTreeMap::new();
        for entry in &page {
            let Some(id) = entry.get("_id").and_then(Value::as_i64).and_then(|id| i32::try_from(id).ok()) else {
                return Err(answer.content("summaries with an integer `_id`", compact(entry)));
            };
            if !expected.contains_key(&id) {
                continue; // a book between or around the reserved ids
            }
            if found.insert(id, entry).is_some() {
                return Err(
                    answer.content(&format!("one summary with _id {id}"), format!("two: {}", excerpt(&answer.body)))
                );
            }
        }
        for id in ids.iter().filter(|id| window.contains(**id)) {
            let want = &expected[id];
            match found.get(id) {
                Some(got) if *got == want => {}
                Some(got) => return Err(answer.content(&format!("the summary {}", compact(want)), compact(got))),
                None => {
                    return Err(answer.content(
                        &format!("the summary {}", compact(want)),
                        format!("no summary with _id {id} in the page"),
                    ))
                }
            }
        }
    }
    let pages = if windows.len() == 1 { "1 page".to_owned() } else { format!("{} pages", windows.len()) };
    Ok(((), format!("{} summaries found, exactly ({pages})", ids.len())))
}

pub(super) async fn check_get_by_id(http: &Http, books: &[Value]) -> Result<((), String), Problem> {
    for book in books {
        let answer = http.call(Method::GET, &book_path(book_id(book)), None).await?;
        answer.expect_status(StatusCode::OK, "200 with the book", http)?;
        let got: Value = answer.json("the book")?;
        if &got != book {
            return Err(answer.content(&format!("the book as written, {}", compact(book)), compact(&got)));
        }
    }
    Ok(((), format!("{} books equal in all four fields", books.len())))
}

/// Removes the checks' books, best effort: every id is tried even when one
/// fails. A book this run `created` is removed only if it is still the one
/// created (`If-Match` the `ETag` its PUT returned); one replaced since is
/// left as it is, and reported. On the other ids (a PUT never sent, or
/// whose answer was lost), a book is removed only if it carries this run's
/// description (a random token no one else knows before the run) and is
/// unchanged since it was read. A user's book is never removed.
pub(super) async fn cleanup(http: &Http, books: &[Value], created: &[(i32, String)]) -> Result<((), String), Problem> {
    let mut removed = 0;
    let mut left = Vec::new();
    let mut first = None;
    for book in books {
        let id = book_id(book);
        let etag = created.iter().find(|(c, _)| *c == id).map(|(_, etag)| etag.as_str());
        match remove_ours(http, book, etag).await {
            Ok(true) => removed += 1,
            Ok(false) => {}
            Err(problem) => {
                left.push(id);
                first.get_or_insert(problem);
            }
        }
    }
    match first {
        None => Ok(((), format!("{removed} books removed, each only if unchanged (If-Match)"))),
        Some(first) => Err(Problem::Cleanup { first: Box::new(first), left, base: http.base.clone() }),
    }
}

/// `Ok(true)`: removed, `Ok(false)`: none of ours was there.
pub(super) async fn remove_ours(http: &Http, ours: &Value, created: Option<&str>) -> Result<bool, Problem> {
    let id = book_id(ours);
    let path = book_path(id);
    if let Some(etag) = created {
        let answer = http.call_if(Method::DELETE, &path, None, Some(("If-Match", etag))).await?;
        if answer.status == StatusCode::OK {
            return Ok(true);
        }
        if answer.status != StatusCode::PRECONDITION_FAILED {
            return Err(answer.status_problem("200 with the removed book, or 412 (it changed)", http));
        }
        // Replaced, or removed by someone else: which?
        let answer = http.call(Method::GET, &path, None).await?;
        return match answer.status {
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(Problem::Replaced { id, url: answer.url }),
        };
    }
    let answer = http.call(Method::GET, &path, None).await?;
    match answer.status {
        StatusCode::NOT_FOUND => Ok(false),
        StatusCode::OK => {
            let book: Value = answer.json("a book")?;
            if book.get("description") != ours.get("description") {
                return Ok(false); // another's book: left alone
            }
            delete_if_unchanged(http, id, &answer).await
        }
        _ => Err(answer.status_problem("200 or 404", http)),
    }
}

/// DELETE with `If-Match` the `ETag` of `read` (a GET of the book): true
/// when removed, false when the book changed or went meanwhile (412).
async fn delete_if_unchanged(http: &Http, id: i32, read: &Answer) -> Result<bool, Problem> {
    // No ETag: a books-ms without conditional requests; the book was just
    // read as ours, and a plain DELETE is all it takes.
    let condition = read.etag.as_deref().map(|etag| ("If-Match", etag));
    let answer = http.call_if(Method::DELETE, &book_path(id), None, condition).await?;
    if condition.is_none() && answer.status == StatusCode::NOT_FOUND {
        return Ok(true);
    }
    if answer.status == StatusCode::PRECONDITION_FAILED {
        return Ok(false);
    }
    answer.expect_status(StatusCode::OK, "200 with the removed book, or 412 (it changed)", http)?;
    Ok(true)
}

// ------------------------------------------------------------------ books and pages

/// A check's book: author "John Doe" as in the chapter, a title saying
/// what it is, and the marker plus this run's id in the description. The
/// run id holds a random token, so no one can write this very book ahead
/// of the run, and a book left by an earlier run never passes for this
/// run's.
pub(super) fn check_book(id: i32, n: usize, total: usize, run_id: &str) -> Value {
    json!({
        "_id": id,
        "title": format!("harness verify check {n} of {total}"),
        "author": "John Doe",
        "description": format!("{MARKER} (run {run_id})"),
    })
}

pub(super) fn is_ours(book: &Value) -> bool {
    book.get("description").and_then(Value::as_str).is_some_and(|d| d.contains(MARKER))
}

pub(super) fn summary(book: &Value) -> Value {
    json!({ "_id": book["_id"], "title": book["title"], "author": book["author"] })
}

pub(super) fn book_id(book: &Value) -> i32 {
    book["_id"].as_i64().and_then(|id| i32::try_from(id).ok()).expect("the checks' books have 32-bit ids")
}

pub(super) fn book_path(id: i32) -> String {
    format!("/api/v1/books/_id/{id}")
}

pub(super) fn text_field(book: &Value, field: &str) -> String {
    book.get(field).and_then(Value::as_str).unwrap_or("").to_owned()
}

/// 128 random bits from the OS, in hex.
pub(super) fn run_id() -> Result<String, Problem> {
    let mut token = [0u8; 16];
    getrandom::fill(&mut token).map_err(|e| Problem::Client(format!("no random token from the OS: {e}")))?;
    Ok(token.iter().map(|b| format!("{b:02x}")).collect())
}

/// One page of the list: the books with `first <= _id <= last`. Since the
/// window spans at most `MAX_PAGE` ids, `after=first-1&limit=span` returns
/// every book in it (and, when some ids in it have no book, a few beyond).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Window {
    pub(super) first: i32,
    pub(super) last: i32,
}

impl Window {
    fn contains(&self, id: i32) -> bool {
        (self.first..=self.last).contains(&id)
    }

    fn path(&self) -> String {
        let limit = i64::from(self.last) - i64::from(self.first) + 1;
        match self.first.checked_sub(1) {
            Some(after) => format!("/api/v1/books?limit={limit}&after={after}"),
            // Nothing is below i32::MIN: the first page is the start.
            None => format!("/api/v1/books?limit={limit}"),
        }
    }
}

/// Sorted, distinct ids grouped into as few windows as fit a page each.
pub(super) fn windows(sorted_ids: &[i32]) -> Vec<Window> {
    let mut windows: Vec<Window> = Vec::new();
    for &id in sorted_ids {
        match windows.last_mut() {
            Some(w) if i64::from(id) - i64::from(w.first) < MAX_PAGE => w.last = id,
            _ => windows.push(Window { first: id, last: id }),
        }
    }
    windows
}

pub(super) fn validate_ids(ids: &[i32]) -> Result<Vec<i32>, Problem> {
    if ids.is_empty() {
        return Err(Problem::BadIds { reason: "is empty: the checks need at least one id to write on".to_owned() });
    }
    if ids.len() > MAX_IDS {
        return Err(Problem::BadIds { reason: format!("has {} ids; at most {MAX_IDS}", ids.len()) });
    }
    let distinct: BTreeSet<i32> = ids.iter().copied().collect();
    if distinct.len() != ids.len() {
        return Err(Problem::BadIds { reason: format!("{ids:?} repeats an id") });
    }
    Ok(ids.to_vec())
}

/// `http(s)://HOST[:PORT][/PREFIX]`, kept without a trailing slash.
pub(super) fn parse_base(url: &str) -> Result<String, Problem> {
    let bad = |reason: &str| Problem::BadUrl { url: url.to_owned(), reason: reason.to_owned() };
    let parsed = Url::parse(url).map_err(|e| bad(&e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(bad("the scheme must be http or https"));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(bad("no host"));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(bad("a base URL has no query or fragment"));
    }
    Ok(parsed.as_str().trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contiguous_ids_are_one_page_starting_just_below_them() {
        let w = windows(&[2_147_483_101, 2_147_483_102, 2_147_483_103]);
        assert_eq!(w, [Window { first: 2_147_483_101, last: 2_147_483_103 }]);
        assert_eq!(w[0].path(), "/api/v1/books?limit=3&after=2147483100");
    }

    #[test]
    fn ids_further_apart_than_a_page_get_a_page_each() {
        let w = windows(&[1, 1000, 1001, 5000]);
        assert_eq!(
            w,
            [Window { first: 1, last: 1000 }, Window { first: 1001, last: 1001 }, Window { first: 5000, last: 5000 }]
        );
        assert_eq!(w[0].path(), "/api/v1/books?limit=1000&after=0");
    }

    #[test]
    fn the_lowest_id_pages_from_the_start() {
        let w = windows(&[i32::MIN, i32::MIN + 1]);
        assert_eq!(w[0].path(), "/api/v1/books?limit=2");
    }

    #[test]
    fn extreme_ids_do_not_overflow() {
        let w = windows(&[i32::MIN, i32::MAX]);
        assert_eq!(w.len(), 2);
        assert_eq!(w[1].path(), "/api/v1/books?limit=1&after=2147483646");
    }

    #[test]
    fn ids_must_be_some_and_distinct() {
        for bad in [&[][..], &[1, 2, 1][..]] {
            let err = validate_ids(bad).unwrap_err().to_string();
            assert!(err.contains("verify.ids") && err.contains("HARNESS_VERIFY__IDS"), "{err}");
        }
        assert_eq!(validate_ids(&[3, 1]).unwrap(), [3, 1]);
    }

    #[test]
    fn base_urls_lose_their_trailing_slash_and_keep_a_prefix() {
        assert_eq!(parse_base("http://10.0.0.2:8080/").unwrap(), "http://10.0.0.2:8080");
        assert_eq!(parse_base("https://books.example/ms/").unwrap(), "https://books.example/ms");
    }

    #[test]
    fn unusable_urls_are_refused_naming_them() {
        for bad in ["10.0.0.2:8080", "ftp://host/", "http://host/?a=1", "not a url"] {
            let err = parse_base(bad).unwrap_err().to_string();
            assert!(err.contains(bad) && err.contains("--url"), "{err}");
        }
    }

    #[test]
    fn the_checks_books_carry_the_marker_and_users_books_do_not() {
        let book = check_book(7, 1, 3, "run");
        assert!(is_ours(&book));
        assert_eq!(book["author"], "John Doe");
        assert!(!is_ours(&json!({"_id": 7, "title": "t", "author": "a", "description": ""})));
        assert!(!is_ours(&json!({"_id": 7, "title": "t", "author": "a"})));
        assert_eq!(summary(&book), json!({"_id": 7, "title": "harness verify check 1 of 3", "author": "John Doe"}));
    }
}
