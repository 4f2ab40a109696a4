//! The books API: `/api/v1/books`.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::{stream, StreamExt};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::auth::Writer;
use crate::domain::{Book, BookError, BookId, BookSummary, Page};
use crate::error::{ApiError, ErrorBody};
use crate::repository::{BookRepository, Removed};

/// A book is a few KB; 256 KiB leaves room for a long description and stops
/// a client from making the service buffer megabytes.
pub const BODY_LIMIT: usize = 256 * 1024;

/// The list's query, `?limit=N&after=ID`, both optional: the one parser of
/// the list's parameters (`web::Query<ListQuery>`), and what the OpenAPI
/// document says of them. The values are taken as text and checked by
/// `Page::try_from`, so that an error names the parameter and the value sent
/// (serde's own errors name neither); the document states their real type.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// At most this many books (1 to 1000). Without it, every book.
    #[param(value_type = Option<i32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// Only books whose `_id` is greater than this (the last `_id` of the previous page).
    #[param(value_type = Option<i32>, minimum = -2147483648, maximum = 2147483647)]
    after: Option<String>,
}

impl TryFrom<ListQuery> for Page {
    type Error = BookError;

    fn try_from(query: ListQuery) -> Result<Self, Self::Error> {
        Page::parse(query.limit.as_deref(), query.after.as_deref())
    }
}

/// A query string that does not fit `ListQuery` (a parameter given twice):
/// 400 with the JSON error body, like every other refusal. Registered for
/// the whole app in `startup.rs`.
pub(crate) fn query_error(error: actix_web::error::QueryPayloadError, _: &HttpRequest) -> actix_web::Error {
    ApiError::BadBody(format!("the query string is not valid: {error}")).into()
}

/// List the summaries of the books, ordered by `_id`.
#[utoipa::path(
    get, path = "/api/v1/books", tag = "books", params(ListQuery),
    responses(
        (status = 200, description = "Summaries ordered by _id", body = [BookSummary]),
        (status = 400, description = "A bad paging parameter, or a query string that cannot be decoded", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    )
)]
#[tracing::instrument(skip_all)]
pub(crate) async fn list_books(
    query: web::Query<ListQuery>,
    repo: web::Data<BookRepository>,
) -> Result<HttpResponse, ApiError> {
    let page = Page::try_from(query.into_inner())?;
    let summaries = repo.list(page).await?;

    // `[`, then each batch the cursor has ready as one chunk, then `]`.
    let mut written = 0usize;
    let items = summaries.ready_chunks(128).map(move |chunk| {
        let mut buf = BytesMut::with_capacity(chunk.len() * 80);
        for summary in chunk {
            let summary = summary.map_err(|e| {
                // The status line is gone already: all that is left is to cut
                // the response short, so the client sees an incomplete body.
                // The body is polled inside the request's root span: mark it
                // failed, so its 200 is not the last word in the log.
                tracing::Span::current().record("otel.status_code", "ERROR");
                tracing::error!(error = %crate::error::error_chain(&e), "listing failed mid-stream");
                ApiError::from(e)
            })?;
            if written > 0 {
                buf.extend_from_slice(b",");
            }
            written += 1;
            serde_json::to_writer((&mut buf).writer(), &summary).map_err(|e| ApiError::Internal(e.into()))?;
        }
        Ok::<Bytes, ApiError>(buf.freeze())
    });
    let body = stream::once(async { Ok(Bytes::from_static(b"[")) })
        .chain(items)
        .chain(stream::once(async { Ok(Bytes::from_static(b"]")) }));
    Ok(HttpResponse::Ok().content_type(mime::APPLICATION_JSON).streaming(body))
}

/// Get one book.
#[utoipa::path(
    get, path = "/api/v1/books/_id/{id}", tag = "books",
    params(("id" = i32, Path, description = "The book's _id", minimum = -2147483648, maximum = 2147483647)),
    responses(
        (status = 200, description = "The book", body = Book,
            headers(("ETag" = String, description = "The stored book's version, for `If-Match` on DELETE"))),
        (status = 400, description = "The id is not an integer in the 32-bit signed range", body = ErrorBody),
        (status = 404, description = "No book has this id", body = ErrorBody),
        (status = 500, description = "`stored_book_invalid`: the stored document is not a valid book (written by \
            another program); the message says what is wrong and `field` names the field", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    )
)]
#[tracing::instrument(skip(repo))]
pub(crate) async fn get_book(
    path: web::Path<String>,
    repo: web::Data<BookRepository>,
) -> Result<HttpResponse, ApiError> {
    let id = BookId::parse_str("_id", &path)?;
    let book = repo.get(id).await?.ok_or(ApiError::BookNotFound(id))?;
    Ok(HttpResponse::Ok().insert_header(header::ETag(etag(&book))).json(book))
}

/// Insert a book, or replace the whole stored book with the same `_id`.
/// `POST` does the same, as in the original service. With
/// `If-None-Match: *` it only creates: 412 `book_exists` when the `_id` is
/// taken, and nothing is written.
#[utoipa::path(
    method(put, post), path = "/api/v1/books", tag = "books",
    security((), ("bearer" = [])),
    params(("If-None-Match" = Option<String>, Header, nullable = false,
        description = "`*`: create only; 412 `book_exists` when a book has this `_id` (no other value is taken: 400)")),
    request_body(
        content = Book, content_type = "application/json",
        description = "A whole book, at most 256 KiB; any `application/*+json` type is accepted too"
    ),
    responses(
        (status = 200, description = "The stored book", body = Book,
            headers(("ETag" = String, description = "The stored book's version, for `If-Match` on DELETE"))),
        (status = 400, description = "Malformed JSON, an invalid field (named in `field`), or an `If-None-Match` \
            other than `*`", body = ErrorBody),
        (status = 401, description = "The service has a write token (`WRITE_TOKEN`) and the request did not carry it as `Authorization: Bearer <token>`: nothing was written", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "`Bearer`, or `Bearer error=\"invalid_token\"`"))),
        (status = 408, description = "The body did not arrive within the body deadline (`HTTP_BODY_TIMEOUT_MS`)", body = ErrorBody),
        (status = 412, description = "`If-None-Match: *` and a book has this `_id`: nothing was written", body = ErrorBody),
        (status = 413, description = "The body is larger than 256 KiB", body = ErrorBody),
        (status = 415, description = "The body is not JSON (`application/json` or `application/*+json`)", body = ErrorBody),
        (status = 503, description = "The database is unavailable; nothing was written", body = ErrorBody),
    )
)]
#[tracing::instrument(skip_all)]
pub(crate) async fn put_book(
    _: Writer,
    req: HttpRequest,
    payload: web::Payload,
    repo: web::Data<BookRepository>,
) -> Result<HttpResponse, ApiError> {
    require_json(&req)?;
    let body = read_body(&req, payload).await?;
    let book = Book::from_json(&body)?;
    if create_only(&req)? {
        if !repo.create(&book).await? {
            return Err(ApiError::BookExists(book.id));
        }
    } else {
        repo.upsert(&book).await?;
    }
    tracing::info!(id = %book.id, "book stored");
    Ok(HttpResponse::Ok().insert_header(header::ETag(etag(&book))).json(book))
}

/// `If-None-Match: *` (create only), or no such header; any other value is
/// refused rather than ignored, since a client sending it expects a check.
fn create_only(req: &HttpRequest) -> Result<bool, ApiError> {
    if !req.headers().contains_key(header::IF_NONE_MATCH) {
        return Ok(false);
    }
    match <header::IfNoneMatch as header::Header>::parse(req) {
        Ok(header::IfNoneMatch::Any) => Ok(true),
        _ => Err(ApiError::BadPrecondition(
            "If-None-Match on PUT takes only `*` (create the book only if its _id is free)".to_owned(),
        )),
    }
}

/// The stored book's entity tag: a digest of all its fields, so that any
/// change to the book changes it (strong: byte-for-byte the same book).
fn etag(book: &Book) -> header::EntityTag {
    use sha2::Digest;
    let mut hash = sha2::Sha256::new();
    for field in [&book.id.get().to_string(), &book.title, &book.author, &book.description] {
        // Length-prefixed, so that fields cannot run into one another.
        hash.update((field.len() as u64).to_le_bytes());
        hash.update(field.as_bytes());
    }
    let hex: String = hash.finalize()[..16].iter().map(|b| format!("{b:02x}")).collect();
    header::EntityTag::new_strong(hex)
}

/// Remove a book and return it. With `If-Match: "ETAG"` (the `ETag` of a
/// GET or PUT) it removes the book only if it is still that very book, in
/// one database operation: 412 `precondition_failed` otherwise, and nothing
/// is removed.
#[utoipa::path(
    delete, path = "/api/v1/books/_id/{id}", tag = "books",
    security((), ("bearer" = [])),
    params(("id" = i32, Path, description = "The book's _id", minimum = -2147483648, maximum = 2147483647),
        ("If-Match" = Option<String>, Header, nullable = false,
            description = "One or more `ETag`s (or `*`): remove only if the stored book has one of them (or exists); \
                a value that is not entity tags matches no book (412)")),
    responses(
        (status = 200, description = "The removed book", body = Book),
        (status = 204, description = "Removed a stored document that was not a valid book (nothing to echo)"),
        (status = 400, description = "The id is not an integer in the 32-bit signed range", body = ErrorBody),
        (status = 401, description = "The service has a write token (`WRITE_TOKEN`) and the request did not carry it as `Authorization: Bearer <token>`: nothing was written", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "`Bearer`, or `Bearer error=\"invalid_token\"`"))),
        (status = 404, description = "No book has this id (without `If-Match`)", body = ErrorBody),
        (status = 412, description = "`If-Match` and the book changed or is gone, or `If-Match` is not entity tags: \
            nothing was removed", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    )
)]
#[tracing::instrument(skip(req, repo))]
pub(crate) async fn delete_book(
    _: Writer,
    req: HttpRequest,
    path: web::Path<String>,
    repo: web::Data<BookRepository>,
) -> Result<HttpResponse, ApiError> {
    let id = BookId::parse_str("_id", &path)?;
    let removed = match if_match(&req) {
        None => repo.delete(id).await?.ok_or(ApiError::BookNotFound(id))?,
        Some(wanted) => {
            let gone =
                || ApiError::PreconditionFailed(format!("no book with _id {id}; nothing was removed (If-Match)"));
            let stored = repo.get_stored(id).await?.ok_or_else(gone)?;
            // A stored document that is not a valid book has no ETag: only
            // `If-Match: *` removes it.
            let current = stored.book.as_ref().ok().map(etag);
            if let header::IfMatch::Items(tags) = &wanted {
                if !current.as_ref().is_some_and(|current| tags.iter().any(|t| t.strong_eq(current))) {
                    let now = current.map_or_else(
                        || "it is not a valid book: no ETag".to_owned(),
                        |c| format!("its ETag is now {c}"),
                    );
                    return Err(ApiError::PreconditionFailed(format!(
                        "book {id} is not the one If-Match names ({now}); nothing was removed"
                    )));
                }
            }
            // Changed between the read and this delete: the filter on the
            // whole stored document no longer matches, and nothing is removed.
            repo.delete_if_unchanged(id, &stored).await?.ok_or_else(|| {
                ApiError::PreconditionFailed(format!("book {id} changed while being removed; nothing was removed"))
            })?
        }
    };
    match removed {
        Removed::Book(book) => {
            tracing::info!(%id, "book removed");
            Ok(HttpResponse::Ok().json(book))
        }
        Removed::Invalid(invalid) => {
            tracing::warn!(%id, error = %invalid, "removed a stored document that was not a valid book");
            Ok(HttpResponse::NoContent().finish())
        }
    }
}

/// The `If-Match` condition, if any. A value that is neither `*` nor a
/// list of entity tags matches no book: the DELETE answers 412 and removes
/// nothing, the safe reading of a check the service cannot make.
fn if_match(req: &HttpRequest) -> Option<header::IfMatch> {
    if !req.headers().contains_key(header::IF_MATCH) {
        return None;
    }
    Some(<header::IfMatch as header::Header>::parse(req).unwrap_or(header::IfMatch::Items(Vec::new())))
}

/// `application/json` or any `+json` type; anything else (or nothing) is 415.
fn require_json(req: &HttpRequest) -> Result<(), ApiError> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<mime::Mime>().ok())
        .ok_or(ApiError::UnsupportedMediaType)?;
    let is_json = content_type.type_() == mime::APPLICATION
        && (content_type.subtype() == mime::JSON || content_type.suffix() == Some(mime::JSON));
    if is_json {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType)
    }
}

/// How long a request body may take to arrive (`HTTP_BODY_TIMEOUT_MS`); set
/// in `startup.rs`. actix bounds the headers, not the body.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyTimeout(pub std::time::Duration);

/// The whole body, refusing it as soon as it passes `BODY_LIMIT` and when it
/// has not all arrived within the body deadline (408).
async fn read_body(req: &HttpRequest, mut payload: web::Payload) -> Result<BytesMut, ApiError> {
    let too_large = ApiError::PayloadTooLarge { limit: BODY_LIMIT };
    let declared =
        req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > BODY_LIMIT) {
        return Err(too_large);
    }
    let limit = req.app_data::<web::Data<BodyTimeout>>().map_or(DEFAULT_BODY_TIMEOUT, |t| t.0);
    // Memory grows with the bytes that arrived, never with what a client
    // declared: a thousand connections each declaring 256 KiB and sending
    // nothing cost nothing.
    let mut body = BytesMut::new();
    let read = async {
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|e| ApiError::BadBody(e.to_string()))?;
            if body.len() + chunk.len() > BODY_LIMIT {
                return Err(too_large);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(())
    };
    match tokio::time::timeout(limit, read).await {
        Ok(result) => result.map(|()| body),
        Err(_) => Err(ApiError::BodyTimeout { limit }),
    }
}

/// Used only when the app was built without `BodyTimeout` (see `startup.rs`).
const DEFAULT_BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
