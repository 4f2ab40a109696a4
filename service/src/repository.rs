//! The books collection in MongoDB: the only module that talks to the database.

use std::sync::Arc;
use std::time::Duration;

use futures_util::Stream;
use mongodb::bson::{doc, Document, RawDocument};
use mongodb::error::{Error as MongoError, ErrorKind, WriteFailure};
use mongodb::options::{Acknowledgment, ClientOptions, WriteConcern};
use mongodb::{Client, Collection, Database};
use secrecy::ExposeSecret;
use tokio::time::Instant;

use crate::configuration::{DatabaseSettings, WriteAck};
use crate::domain::{Book, BookError, BookId, BookSummary, Page, BOOK_FIELDS};

/// Why a database call failed, as far as a client needs to know.
#[derive(Debug, thiserror::Error)]
pub enum RepositoryError {
    /// The database cannot be reached now (down, restarting, unreachable);
    /// the driver reconnects by itself once it is back.
    #[error("the database is unavailable")]
    Unavailable(#[source] MongoError),
    #[error("the database did not answer within {0:?}")]
    TimedOut(Duration),
    /// Another write to the same book held it past the deadline (the
    /// database is slow or stuck); this one was never sent.
    #[error("another write to this book did not finish within {0:?}; this one was not sent")]
    Busy(Duration),
    /// A write was sent and no answer came: it may have been applied. Never
    /// reported as "nothing was written".
    #[error("the database did not confirm the write ({0}); it may have been applied")]
    OutcomeUnknown(String),
    /// The stored document is not a book this service can return: another
    /// program wrote it. Says which document and what is wrong with it.
    #[error(transparent)]
    InvalidStored(#[from] InvalidStoredBook),
    #[error("database error")]
    Other(#[source] MongoError),
}

/// A document in the collection that is not a valid book (a missing title, a
/// wrong type, a string `_id`...): written by another program, never by us.
#[derive(Debug, thiserror::Error)]
#[error("the stored document with _id {id} is not a valid book: {problem}")]
pub struct InvalidStoredBook {
    /// The document's `_id` as stored, in relaxed extended JSON (`7`, `"7"`, `7.0`).
    pub id: String,
    pub problem: BookError,
}

impl InvalidStoredBook {
    /// The field at fault, if one is.
    pub fn field(&self) -> Option<&str> {
        self.problem.field_name()
    }
}

/// A stored document as it was read, and the book it holds.
#[derive(Debug)]
pub struct Stored {
    document: Document,
    pub book: Result<Book, InvalidStoredBook>,
}

impl Stored {
    /// A filter matching the document only while each of its fields still
    /// holds what was read. A field name that a filter would read as an
    /// operator (`$…`) or a path (`a.b`) cannot be compared so and is left
    /// out; the `_id` and the book's fields never are such names.
    fn as_filter(&self) -> Document {
        self.document
            .iter()
            .filter(|(key, _)| !key.starts_with('$') && !key.contains('.'))
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect()
    }
}

/// What DELETE found and removed.
#[derive(Debug)]
pub enum Removed {
    Book(Book),
    /// The document is gone, but it was not a valid book, so it cannot be echoed.
    Invalid(InvalidStoredBook),
}

impl Removed {
    /// What a removed document was, read like any stored one.
    fn from_document(document: Document) -> Removed {
        match book_from_stored(document) {
            Ok(book) => Removed::Book(book),
            Err(invalid) => Removed::Invalid(invalid),
        }
    }
}

/// Server codes meaning "this server cannot serve now": the ones the
/// driver's retryable-write rules name (HostUnreachable, HostNotFound,
/// NetworkTimeout, ShutdownInProgress, ReadConcernMajorityNotAvailableYet,
/// PrimarySteppedDown, ExceededTimeLimit, SocketException, LegacyNotPrimary,
/// NotWritablePrimary, InterruptedAtShutdown,
/// InterruptedDueToReplStateChange, NotPrimaryNoSecondaryOk,
/// NotPrimaryOrSecondary), and 1, InternalError, which FerretDB answers for
/// any failure of its storage backend. MongoDB labels the retryable ones
/// `RetryableWriteError` itself; FerretDB labels nothing, and the driver adds
/// the label only to network errors, so the label alone misses them there.
const TRANSIENT_SERVER_CODES: [i32; 15] =
    [1, 6, 7, 89, 91, 134, 189, 262, 9001, 10058, 10107, 11600, 11602, 13435, 13436];

/// The code of an error the server reported for the whole command (not a
/// per-document write error such as E11000, which says something definite).
fn server_code(e: &MongoError) -> Option<i32> {
    match &*e.kind {
        ErrorKind::Command(c) => Some(c.code),
        ErrorKind::Write(WriteFailure::WriteConcernError(w)) => Some(w.code),
        _ => None,
    }
}

impl From<MongoError> for RepositoryError {
    fn from(e: MongoError) -> Self {
        match *e.kind {
            ErrorKind::ServerSelection { .. } | ErrorKind::Io(_) | ErrorKind::ConnectionPoolCleared { .. } => {
                RepositoryError::Unavailable(e)
            }
            // Failures the driver itself would retry are transient too.
            _ if e.contains_label(mongodb::error::RETRYABLE_WRITE_ERROR) => RepositoryError::Unavailable(e),
            // The same failures from a server that does not label them
            // (FerretDB). On a write, `unknown_if_sent` makes them "outcome
            // unknown": the server had the command.
            _ if server_code(&e).is_some_and(|c| TRANSIENT_SERVER_CODES.contains(&c)) => {
                RepositoryError::Unavailable(e)
            }
            _ => RepositoryError::Other(e),
        }
    }
}

/// Is this the duplicate-key error (E11000) that two concurrent upserts of a
/// new `_id` can get (both try to insert, one loses)?
fn is_duplicate_key(e: &MongoError) -> bool {
    match &*e.kind {
        ErrorKind::Write(WriteFailure::WriteError(w)) => w.code == 11000,
        ErrorKind::Command(c) => c.code == 11000,
        _ => false,
    }
}

/// A stored document as a book, checked like a request body (the same rules
/// and messages). Fields this service does not know are ignored rather than
/// refused: another program may keep more in the document, and a book can
/// still be shown without them.
fn book_from_stored(document: Document) -> Result<Book, InvalidStoredBook> {
    let id =
        document.get("_id").cloned().map_or_else(|| "(missing)".to_owned(), |id| id.into_relaxed_extjson().to_string());
    let known: serde_json::Map<String, serde_json::Value> = document
        .into_iter()
        .filter(|(key, _)| BOOK_FIELDS.contains(&key.as_str()))
        .map(|(key, value)| (key, value.into_relaxed_extjson()))
        .collect();
    Book::try_from(known).map_err(|problem| InvalidStoredBook { id, problem })
}

/// A listed document's summary, read straight from its BSON when it is what
/// this service writes (an int32 `_id`, a title and an author that are not
/// blank): no document tree and no JSON values per book, which cost more than
/// everything else the list does. `None` for anything else, which then goes
/// through [`book_from_stored`], so that the same rules and messages apply
/// (a unit test checks that both agree).
fn summary_as_written(raw: &RawDocument) -> Option<BookSummary> {
    let (id, title, author) = (raw.get_i32("_id").ok()?, raw.get_str("title").ok()?, raw.get_str("author").ok()?);
    if title.trim().is_empty() || author.trim().is_empty() {
        return None;
    }
    Some(BookSummary { id: BookId::new(id), title: title.to_owned(), author: author.to_owned() })
}

/// The write concern: `DB_W` and `DB_JOURNAL` win, then the URI's, then the
/// default, `w: majority, j: true`. Each part is decided on its own, so a URI
/// that sets only `w` keeps the journal (acknowledged means journaled).
fn write_concern(from_uri: Option<WriteConcern>, settings: &DatabaseSettings) -> WriteConcern {
    let mut concern = from_uri.unwrap_or_default();
    concern.journal = settings.journal.or(concern.journal).or(Some(true));
    concern.w = match &settings.w {
        Some(WriteAck::Majority) => Some(Acknowledgment::Majority),
        Some(WriteAck::Nodes(n)) => Some(Acknowledgment::Nodes(*n)),
        None => concern.w.or(Some(Acknowledgment::Majority)),
    };
    concern
}

/// For a write: once it may have reached the server (anything but a failed
/// server selection), a failure is an unknown outcome, not an unavailable
/// database.
fn unknown_if_sent<T>(result: Result<T, RepositoryError>) -> Result<T, RepositoryError> {
    match result {
        Err(RepositoryError::TimedOut(deadline)) => {
            Err(RepositoryError::OutcomeUnknown(format!("no answer within {deadline:?}")))
        }
        Err(RepositoryError::Unavailable(e)) if !matches!(*e.kind, ErrorKind::ServerSelection { .. }) => {
            Err(RepositoryError::OutcomeUnknown(e.to_string()))
        }
        other => other,
    }
}

/// Writes to one `_id` go one at a time through this process: FerretDB (the
/// lab's database) runs a findAndModify-remove as a find, then a delete by
/// `_id`, and an update as a query, then an update or insert of what it
/// found (v1.24's handlers), so two racing writes could both "remove"
/// the same book or a PUT be acknowledged and then lost to a delete it never
/// followed. MongoDB does each atomically; there the lock costs a mutex.
/// Striped: ids share a fixed set of locks, so memory stays fixed whatever
/// the ids (1,024 small mutexes). With 64 stripes, two writes of
/// different ids waited for each other often enough under load to double
/// the slowest PUTs (docs/benchmarks.md, issue 12).
/// It orders the writes of one process only (one live colour at a time).
#[derive(Debug)]
struct IdLocks(Vec<tokio::sync::Mutex<()>>);

impl IdLocks {
    const STRIPES: usize = 1024;

    fn new() -> Self {
        IdLocks((0..Self::STRIPES).map(|_| tokio::sync::Mutex::new(())).collect())
    }

    fn get(&self, id: BookId) -> &tokio::sync::Mutex<()> {
        &self.0[id.get().unsigned_abs() as usize % Self::STRIPES]
    }
}

/// Books in one collection. Cheap to clone (the driver's client is an `Arc`).
#[derive(Clone, Debug)]
pub struct BookRepository {
    database: Database,
    books: Collection<Book>,
    /// The same collection read as plain documents: what another program
    /// wrote there may not be a valid book, and one bad document must not
    /// fail a list or hide which document is wrong.
    documents: Collection<Document>,
    /// A deadline for a whole operation, in case the server accepts the
    /// connection but never answers (server selection alone does not bound it).
    deadline: Duration,
    locks: Arc<IdLocks>,
}

/// The summary fields, in the stored document.
fn summary_projection() -> Document {
    doc! { "_id": 1, "title": 1, "author": 1 }
}

/// The driver's default `maxPoolSize`.
const DEFAULT_POOL_SIZE: u32 = 10;

/// What the repositories of one process share: the parsed client options and
/// the write locks. Each HTTP worker makes its own client from it
/// ([`SharedRepository::client`]), so that a database round trip is awaited
/// and woken on the thread that runs the request: a client made on another
/// runtime has its sockets on that runtime's reactor, and every read then
/// crosses threads (docs/benchmarks.md, issue 12).
#[derive(Clone, Debug)]
pub struct SharedRepository {
    options: ClientOptions,
    database_name: String,
    collection: String,
    deadline: Duration,
    locks: Arc<IdLocks>,
}

impl SharedRepository {
    /// Parses and checks the settings for `clients` clients: the pool size
    /// (`maxPoolSize`, else the driver's 10) is divided between them, so the
    /// process holds as many database connections as one client would.
    pub async fn new(settings: &DatabaseSettings, clients: usize) -> anyhow::Result<Self> {
        let mut options = ClientOptions::parse(settings.uri.expose_secret())
            .await
            .map_err(|e| anyhow::anyhow!("MONGODB_URI: the URI is not valid: {e}"))?;
        options.app_name.get_or_insert_with(|| "books-ms".to_owned());
        options.server_selection_timeout.get_or_insert(settings.timeout);
        options.connect_timeout.get_or_insert(settings.timeout);
        // A write is acknowledged to the client only once the database has it
        // in its journal, unless configured otherwise.
        options.write_concern = Some(write_concern(options.write_concern.take(), settings));
        let clients = u32::try_from(clients.max(1)).unwrap_or(u32::MAX);
        let total = options.max_pool_size.unwrap_or(DEFAULT_POOL_SIZE);
        // 0 means "no limit" to the driver: keep it.
        if total > 0 {
            options.max_pool_size = Some(total.div_ceil(clients));
        }
        options.min_pool_size = options.min_pool_size.map(|min| min.div_ceil(clients));
        Ok(SharedRepository {
            options,
            database_name: settings.database_name.clone(),
            collection: settings.collection.clone(),
            deadline: settings.timeout * 3,
            locks: Arc::new(IdLocks::new()),
        })
    }

    /// A client of its own on the current runtime (it must be called inside
    /// one). It connects lazily: the service starts even when the database
    /// is down, and reports it on `/ready`.
    pub fn client(&self) -> anyhow::Result<BookRepository> {
        let client = Client::with_options(self.options.clone())
            .map_err(|e| anyhow::anyhow!("MONGODB_URI: the driver refuses these options: {e}"))?;
        let database = client.database(&self.database_name);
        Ok(BookRepository {
            books: database.collection(&self.collection),
            documents: database.collection(&self.collection),
            database,
            deadline: self.deadline,
            locks: self.locks.clone(),
        })
    }
}

impl BookRepository {
    async fn bounded<T>(
        &self,
        op: impl std::future::IntoFuture<Output = Result<T, MongoError>>,
    ) -> Result<T, RepositoryError> {
        self.bounded_until(Instant::now() + self.deadline, op).await
    }

    async fn bounded_until<T>(
        &self,
        until: Instant,
        op: impl std::future::IntoFuture<Output = Result<T, MongoError>>,
    ) -> Result<T, RepositoryError> {
        match tokio::time::timeout_at(until, op.into_future()).await {
            Ok(result) => result.map_err(RepositoryError::from),
            Err(_) => Err(RepositoryError::TimedOut(self.deadline)),
        }
    }

    /// Takes the write lock of `id` ([`IdLocks`]); the wait counts against
    /// the operation's deadline, returned for the write itself.
    async fn lock(&self, id: BookId) -> Result<(tokio::sync::MutexGuard<'_, ()>, Instant), RepositoryError> {
        let until = Instant::now() + self.deadline;
        let guard = tokio::time::timeout_at(until, self.locks.get(id).lock())
            .await
            .map_err(|_| RepositoryError::Busy(self.deadline))?;
        Ok((guard, until))
    }

    /// Is the database answering?
    #[tracing::instrument(skip(self))]
    pub async fn ping(&self) -> Result<(), RepositoryError> {
        self.bounded(self.database.run_command(doc! { "ping": 1 })).await.map(|_| ())
    }

    /// The book, if one is stored under `id`; a stored document that is not
    /// a valid book is [`RepositoryError::InvalidStored`], naming what is wrong.
    #[tracing::instrument(skip(self))]
    pub async fn get(&self, id: BookId) -> Result<Option<Book>, RepositoryError> {
        match self.bounded(self.documents.find_one(doc! { "_id": id.get() })).await? {
            Some(document) => Ok(Some(book_from_stored(document)?)),
            None => Ok(None),
        }
    }

    /// Inserts the book or replaces the whole stored document.
    #[tracing::instrument(skip(self, book), fields(id = %book.id))]
    pub async fn upsert(&self, book: &Book) -> Result<(), RepositoryError> {
        let upsert = || self.books.replace_one(doc! { "_id": book.id.get() }, book).upsert(true);
        let (_guard, until) = self.lock(book.id).await?;
        let result = match self.bounded_until(until, upsert()).await {
            // Two upserts of a new `_id` at once can both try to insert it,
            // and the loser gets E11000 (MongoDB retries only some cases by
            // itself). The document exists now, so a second try replaces it;
            // once is enough, since nothing can make it missing-then-inserted
            // twice over without a DELETE, which the client races anyway.
            Err(RepositoryError::Other(e)) if is_duplicate_key(&e) => {
                tracing::info!(error = %e, "duplicate key on upsert, a concurrent upsert inserted first; retrying once");
                self.bounded_until(until, upsert()).await
            }
            other => other,
        };
        unknown_if_sent(result).map(|_| ())
    }

    /// Removes the book and returns what was stored, if it existed. A stored
    /// document that was not a valid book is removed too (DELETE is how a
    /// client gets rid of it), and reported as such.
    #[tracing::instrument(skip(self))]
    pub async fn delete(&self, id: BookId) -> Result<Option<Removed>, RepositoryError> {
        let (_guard, until) = self.lock(id).await?;
        let removed = unknown_if_sent(
            self.bounded_until(until, self.documents.find_one_and_delete(doc! { "_id": id.get() })).await,
        )?;
        Ok(removed.map(Removed::from_document))
    }

    /// Inserts the book only when no book has its `_id`: `Ok(false)` when one
    /// has, and then nothing was written. One insert, so two creators racing
    /// cannot both win: the database's unique `_id` decides.
    #[tracing::instrument(skip(self, book), fields(id = %book.id))]
    pub async fn create(&self, book: &Book) -> Result<bool, RepositoryError> {
        let (_guard, until) = self.lock(book.id).await?;
        match unknown_if_sent(self.bounded_until(until, self.books.insert_one(book)).await) {
            Ok(_) => Ok(true),
            Err(RepositoryError::Other(e)) if is_duplicate_key(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The document stored under `id`, as it is, with the book it holds
    /// (or what is wrong with it): what a conditional write compares with.
    #[tracing::instrument(skip(self))]
    pub async fn get_stored(&self, id: BookId) -> Result<Option<Stored>, RepositoryError> {
        let document = self.bounded(self.documents.find_one(doc! { "_id": id.get() })).await?;
        Ok(document.map(|document| Stored { book: book_from_stored(document.clone()), document }))
    }

    /// Removes the document only when it is still exactly as `stored` was
    /// read (each of its fields, as stored: an `_id` of `7.0`, a missing
    /// `description`), in one operation: a document changed since is left
    /// alone (`Ok(None)`). Under the `_id`'s lock too: FerretDB's
    /// find-and-delete is a find, then a delete by `_id`.
    #[tracing::instrument(skip(self, stored))]
    pub async fn delete_if_unchanged(&self, id: BookId, stored: &Stored) -> Result<Option<Removed>, RepositoryError> {
        let (_guard, until) = self.lock(id).await?;
        let removed =
            unknown_if_sent(self.bounded_until(until, self.documents.find_one_and_delete(stored.as_filter())).await)?;
        Ok(removed.map(Removed::from_document))
    }

    /// The summaries of a page of books, ordered by `_id`, streamed from the
    /// cursor batch by batch: never the whole collection in memory. The first
    /// batch is fetched before this returns, so an unreachable database is an
    /// error here, before any response is started.
    ///
    /// A stored document that is not a valid book is skipped and logged with
    /// its `_id` and what is wrong: one bad document written by another
    /// program must not take the list away from everyone. (A page may then
    /// hold fewer than `limit` books; paging with `after` still works.)
    #[tracing::instrument(skip(self))]
    pub async fn list(
        &self,
        page: Page,
    ) -> Result<impl Stream<Item = Result<BookSummary, RepositoryError>> + Send + 'static, RepositoryError> {
        let filter = match page.after {
            Some(after) => doc! { "_id": { "$gt": after.get() } },
            None => doc! {},
        };
        let mut find =
            self.documents.find(filter).projection(summary_projection()).sort(doc! { "_id": 1 }).batch_size(256);
        if let Some(limit) = page.limit {
            find = find.limit(i64::from(limit));
        }
        let cursor = self.bounded(find).await?;
        let deadline = self.deadline;
        // Each further batch is a round trip too: bound the wait for every item.
        Ok(futures_util::stream::unfold(Some(cursor), move |cursor| async move {
            let mut cursor = cursor?;
            loop {
                match tokio::time::timeout(deadline, cursor.advance()).await {
                    Ok(Ok(true)) => {
                        let summary = match summary_as_written(cursor.current()) {
                            Some(summary) => Ok(summary),
                            None => match cursor.deserialize_current() {
                                Ok(document) => book_from_stored(document).map(|book| BookSummary {
                                    id: book.id,
                                    title: book.title,
                                    author: book.author,
                                }),
                                Err(e) => return Some((Err(RepositoryError::from(e)), None)),
                            },
                        };
                        match summary {
                            Ok(summary) => return Some((Ok(summary), Some(cursor))),
                            Err(invalid) => tracing::warn!(
                                id = %invalid.id,
                                error = %invalid,
                                "a stored document is not a valid book; left out of the list"
                            ),
                        }
                    }
                    // The stream ends after an error: the response is cut short.
                    Ok(Err(e)) => return Some((Err(RepositoryError::from(e)), None)),
                    Ok(Ok(false)) => return None,
                    Err(_) => return Some((Err(RepositoryError::TimedOut(deadline)), None)),
                }
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    fn settings(uri: &str, journal: Option<bool>, w: Option<WriteAck>) -> DatabaseSettings {
        DatabaseSettings {
            uri: SecretString::from(uri.to_owned()),
            database_name: "books".to_owned(),
            collection: "books".to_owned(),
            timeout: Duration::from_secs(2),
            journal,
            w,
        }
    }

    /// The write concern `connect` would use for this URI and these settings.
    async fn concern(uri: &str, journal: Option<bool>, w: Option<WriteAck>) -> WriteConcern {
        let options = ClientOptions::parse(uri).await.expect("a valid URI");
        write_concern(options.write_concern, &settings(uri, journal, w))
    }

    /// The list's shortcut takes a document only when the full check takes
    /// it too, and reads the same summary; it is taken for what the service
    /// writes (else it would be no shortcut).
    #[test]
    fn the_lists_shortcut_agrees_with_the_full_check() {
        let documents = [
            doc! { "_id": 7, "title": "T", "author": "A" },
            doc! { "_id": i32::MIN, "title": " T\u{3000}", "author": "Ä", "other": 1 },
            doc! { "_id": 7_i64, "title": "T", "author": "A" },
            doc! { "_id": 7.0, "title": "T", "author": "A" },
            doc! { "_id": 7.5, "title": "T", "author": "A" },
            doc! { "_id": "7", "title": "T", "author": "A" },
            doc! { "_id": 7, "title": "  ", "author": "A" },
            doc! { "_id": 7, "title": "", "author": "A" },
            doc! { "_id": 7, "title": "T", "author": "\u{3000}\u{85}" },
            doc! { "_id": 7, "title": 42, "author": "A" },
            doc! { "_id": 7, "author": "A" },
            doc! { "_id": 7, "title": "T", "author": null },
            doc! { "title": "T", "author": "A" },
        ];
        let mut taken = Vec::new();
        for (i, document) in documents.iter().enumerate() {
            let raw = mongodb::bson::RawDocumentBuf::from_document(document).expect("encodable");
            let full = book_from_stored(document.clone()).ok().map(|book| BookSummary {
                id: book.id,
                title: book.title,
                author: book.author,
            });
            if let Some(summary) = summary_as_written(&raw) {
                assert_eq!(Some(summary), full, "{document}");
                taken.push(i);
            }
        }
        assert_eq!(taken, [0, 1]);
    }

    #[tokio::test]
    async fn a_uri_that_sets_only_w_keeps_the_journal() {
        let wc = concern("mongodb://db:27017/?w=1", None, None).await;
        assert_eq!(wc.w, Some(Acknowledgment::Nodes(1)));
        assert_eq!(wc.journal, Some(true));
    }

    #[tokio::test]
    async fn without_any_setting_writes_are_majority_and_journaled() {
        let wc = concern("mongodb://db:27017", None, None).await;
        assert_eq!(wc.w, Some(Acknowledgment::Majority));
        assert_eq!(wc.journal, Some(true));
    }

    #[tokio::test]
    async fn an_explicit_choice_in_the_uri_or_the_settings_is_kept() {
        let wc = concern("mongodb://db:27017/?journal=false&wtimeoutMS=500", None, None).await;
        assert_eq!((wc.w, wc.journal), (Some(Acknowledgment::Majority), Some(false)));
        assert_eq!(wc.w_timeout, Some(Duration::from_millis(500)));
        // DB_W and DB_JOURNAL win over the URI.
        let wc = concern("mongodb://db:27017/?w=1&journal=true", Some(false), Some(WriteAck::Majority)).await;
        assert_eq!((wc.w, wc.journal), (Some(Acknowledgment::Majority), Some(false)));
        let wc = concern("mongodb://db:27017/?w=majority", None, Some(WriteAck::Nodes(2))).await;
        assert_eq!((wc.w, wc.journal), (Some(Acknowledgment::Nodes(2)), Some(true)));
    }

    fn stored(document: Document) -> Result<Book, InvalidStoredBook> {
        book_from_stored(document)
    }

    #[test]
    fn a_valid_stored_document_is_a_book_and_unknown_stored_fields_are_ignored() {
        let book = stored(doc! { "_id": 7_i64, "title": "T", "author": "A", "isbn": "978" }).unwrap();
        assert_eq!((book.id.get(), book.title.as_str(), book.description.as_str()), (7, "T", ""));
        // A whole double is the id it spells, as a query by that integer finds it.
        let book = stored(doc! { "_id": 8.0, "title": "T", "author": "A" }).unwrap();
        assert_eq!(book.id.get(), 8);
    }

    #[test]
    fn an_invalid_stored_document_names_its_id_and_the_field_at_fault() {
        let cases = [
            (doc! { "_id": 1, "author": "A" }, "1", "title"),
            (doc! { "_id": 2, "title": 42, "author": "A" }, "2", "title"),
            (doc! { "_id": "3", "title": "T", "author": "A" }, "\"3\"", "_id"),
            (doc! { "_id": 4.5, "title": "T", "author": "A" }, "4.5", "_id"),
            (doc! { "_id": 5, "title": "T", "author": "A", "description": 5 }, "5", "description"),
        ];
        for (document, id, field) in cases {
            let err = stored(document).unwrap_err();
            assert_eq!((err.id.as_str(), err.field()), (id, Some(field)), "{err}");
            assert!(err.to_string().contains(field), "{err}");
        }
    }

    fn command_error(code: i32) -> MongoError {
        let e: mongodb::error::CommandError =
            mongodb::bson::from_document(doc! { "code": code, "codeName": "X", "errmsg": "m" })
                .expect("a command error");
        MongoError::from(ErrorKind::Command(e))
    }

    /// A server that cannot serve now (FerretDB's backend failing, a
    /// shutdown, a primary stepping down) is a 503, never a 500: "unavailable"
    /// for a read, "outcome unknown" for a write. A definite refusal stays
    /// what it is.
    #[test]
    fn unlabelled_transient_server_errors_are_not_internal() {
        for code in [1, 91, 11600, 10107] {
            assert!(matches!(RepositoryError::from(command_error(code)), RepositoryError::Unavailable(_)), "{code}");
            let write = unknown_if_sent::<()>(Err(RepositoryError::from(command_error(code))));
            assert!(matches!(write, Err(RepositoryError::OutcomeUnknown(_))), "{code}");
        }
        // BadValue: the request was wrong, a retry will not help.
        assert!(matches!(RepositoryError::from(command_error(2)), RepositoryError::Other(_)));
    }
}
