//! The books collection in MongoDB: the only module that talks to the database.

use std::time::Duration;

use futures_util::{Stream, StreamExt};
use mongodb::bson::{doc, Document};
use mongodb::error::{Error as MongoError, ErrorKind};
use mongodb::options::{Acknowledgment, ClientOptions, WriteConcern};
use mongodb::{Client, Collection, Database};
use secrecy::ExposeSecret;

use crate::configuration::{DatabaseSettings, WriteAck};
use crate::domain::{Book, BookId, BookSummary, Page};

/// Why a database call failed, as far as a client needs to know.
#[derive(Debug, thiserror::Error)]
pub enum RepositoryError {
    /// The database cannot be reached now (down, restarting, unreachable);
    /// the driver reconnects by itself once it is back.
    #[error("the database is unavailable")]
    Unavailable(#[source] MongoError),
    #[error("the database did not answer within {0:?}")]
    TimedOut(Duration),
    /// A write was sent and no answer came: it may have been applied. Never
    /// reported as "nothing was written".
    #[error("the database did not confirm the write ({0}); it may have been applied")]
    OutcomeUnknown(String),
    #[error("database error")]
    Other(#[source] MongoError),
}

impl From<MongoError> for RepositoryError {
    fn from(e: MongoError) -> Self {
        match *e.kind {
            ErrorKind::ServerSelection { .. } | ErrorKind::Io(_) | ErrorKind::ConnectionPoolCleared { .. } => {
                RepositoryError::Unavailable(e)
            }
            // Failures the driver itself would retry are transient too.
            _ if e.contains_label(mongodb::error::RETRYABLE_WRITE_ERROR) => RepositoryError::Unavailable(e),
            _ => RepositoryError::Other(e),
        }
    }
}

/// MongoDB's `DuplicateKey`: an insert on an `_id` that is taken.
fn is_duplicate_key(e: &MongoError) -> bool {
    const DUPLICATE_KEY: i32 = 11000;
    matches!(&*e.kind, ErrorKind::Write(mongodb::error::WriteFailure::WriteError(w)) if w.code == DUPLICATE_KEY)
}

/// Books in one collection. Cheap to clone (the driver's client is an `Arc`).
#[derive(Clone, Debug)]
pub struct BookRepository {
    database: Database,
    books: Collection<Book>,
    summaries: Collection<BookSummary>,
    /// A deadline for a whole operation, in case the server accepts the
    /// connection but never answers (server selection alone does not bound it).
    deadline: Duration,
}

/// The summary fields, in the stored document.
fn summary_projection() -> Document {
    doc! { "_id": 1, "title": 1, "author": 1 }
}

impl BookRepository {
    /// Builds the client. It connects lazily: the service starts even when the
    /// database is down, and reports it on `/ready`.
    pub async fn connect(settings: &DatabaseSettings) -> anyhow::Result<Self> {
        let mut options = ClientOptions::parse(settings.uri.expose_secret())
            .await
            .map_err(|e| anyhow::anyhow!("MONGODB_URI: the URI is not valid: {e}"))?;
        options.app_name.get_or_insert_with(|| "books-ms".to_owned());
        options.server_selection_timeout.get_or_insert(settings.timeout);
        options.connect_timeout.get_or_insert(settings.timeout);
        // A write is acknowledged to the client only once the database has it
        // in its journal, unless configured otherwise.
        let mut write_concern = options
            .write_concern
            .take()
            .unwrap_or_else(|| WriteConcern::builder().w(Acknowledgment::Majority).journal(true).build());
        if let Some(journal) = settings.journal {
            write_concern.journal = Some(journal);
        }
        if let Some(w) = &settings.w {
            write_concern.w = Some(match w {
                WriteAck::Majority => Acknowledgment::Majority,
                WriteAck::Nodes(n) => Acknowledgment::Nodes(*n),
            });
        }
        options.write_concern = Some(write_concern);

        let client = Client::with_options(options)?;
        let database = client.database(&settings.database_name);
        Ok(BookRepository {
            books: database.collection(&settings.collection),
            summaries: database.collection(&settings.collection),
            database,
            deadline: settings.timeout * 3,
        })
    }

    async fn bounded<T>(
        &self,
        op: impl std::future::IntoFuture<Output = Result<T, MongoError>>,
    ) -> Result<T, RepositoryError> {
        match tokio::time::timeout(self.deadline, op.into_future()).await {
            Ok(result) => result.map_err(RepositoryError::from),
            Err(_) => Err(RepositoryError::TimedOut(self.deadline)),
        }
    }

    /// A write, bounded like [`Self::bounded`]; once it may have reached the
    /// server (anything but a failed server selection), a failure is an
    /// unknown outcome, not an unavailable database.
    async fn bounded_write<T>(
        &self,
        op: impl std::future::IntoFuture<Output = Result<T, MongoError>>,
    ) -> Result<T, RepositoryError> {
        match self.bounded(op).await {
            Err(RepositoryError::TimedOut(deadline)) => {
                Err(RepositoryError::OutcomeUnknown(format!("no answer within {deadline:?}")))
            }
            Err(RepositoryError::Unavailable(e)) if !matches!(*e.kind, ErrorKind::ServerSelection { .. }) => {
                Err(RepositoryError::OutcomeUnknown(e.to_string()))
            }
            other => other,
        }
    }

    /// Is the database answering?
    #[tracing::instrument(skip(self))]
    pub async fn ping(&self) -> Result<(), RepositoryError> {
        self.bounded(self.database.run_command(doc! { "ping": 1 })).await.map(|_| ())
    }

    #[tracing::instrument(skip(self))]
    pub async fn get(&self, id: BookId) -> Result<Option<Book>, RepositoryError> {
        self.bounded(self.books.find_one(doc! { "_id": id.get() })).await
    }

    /// Inserts the book or replaces the whole stored document.
    #[tracing::instrument(skip(self, book), fields(id = %book.id))]
    pub async fn upsert(&self, book: &Book) -> Result<(), RepositoryError> {
        let replace = || self.books.replace_one(doc! { "_id": book.id.get() }, book).upsert(true);
        match self.bounded_write(replace()).await {
            // Another writer inserted this _id between the upsert's match and
            // its insert (a create-only PUT racing this one): the book exists
            // now, so the second attempt replaces it.
            Err(RepositoryError::Other(e)) if is_duplicate_key(&e) => self.bounded_write(replace()).await.map(|_| ()),
            other => other.map(|_| ()),
        }
    }

    /// Removes the book and returns what was stored, if it existed.
    #[tracing::instrument(skip(self))]
    pub async fn delete(&self, id: BookId) -> Result<Option<Book>, RepositoryError> {
        self.bounded_write(self.books.find_one_and_delete(doc! { "_id": id.get() })).await
    }

    /// Inserts the book only when no book has its `_id`: `Ok(false)` when one
    /// has, and then nothing was written. One insert, so two creators racing
    /// cannot both win: the database's unique `_id` decides.
    #[tracing::instrument(skip(self, book), fields(id = %book.id))]
    pub async fn create(&self, book: &Book) -> Result<bool, RepositoryError> {
        match self.bounded_write(self.books.insert_one(book)).await {
            Ok(_) => Ok(true),
            Err(RepositoryError::Other(e)) if is_duplicate_key(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Removes the book only when the stored document is exactly `book`
    /// (every field in the filter), in one operation: a book changed since
    /// it was read is left alone (`Ok(None)`).
    #[tracing::instrument(skip(self, book), fields(id = %book.id))]
    pub async fn delete_if_unchanged(&self, book: &Book) -> Result<Option<Book>, RepositoryError> {
        let whole = doc! {
            "_id": book.id.get(), "title": &book.title, "author": &book.author, "description": &book.description,
        };
        self.bounded_write(self.books.find_one_and_delete(whole)).await
    }

    /// The summaries of a page of books, ordered by `_id`, streamed from the
    /// cursor batch by batch: never the whole collection in memory. The first
    /// batch is fetched before this returns, so an unreachable database is an
    /// error here, before any response is started.
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
            self.summaries.find(filter).projection(summary_projection()).sort(doc! { "_id": 1 }).batch_size(256);
        if let Some(limit) = page.limit {
            find = find.limit(i64::from(limit));
        }
        let cursor = self.bounded(find).await?;
        let deadline = self.deadline;
        // Each further batch is a round trip too: bound the wait for every item.
        Ok(futures_util::stream::unfold(Some(cursor), move |cursor| async move {
            let mut cursor = cursor?;
            match tokio::time::timeout(deadline, cursor.next()).await {
                Ok(Some(item)) => Some((item.map_err(RepositoryError::from), Some(cursor))),
                Ok(None) => None,
                Err(_) => Some((Err(RepositoryError::TimedOut(deadline)), None)),
            }
        }))
    }
}
