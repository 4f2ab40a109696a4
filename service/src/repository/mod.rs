//! The books collection in MongoDB: the only module that talks to the database.
//!
//! Layout: here the repository itself (its clients, the write concern, the
//! deadline of every call, reads and plain writes); `list.rs` the streamed
//! list; `conditional.rs` create-only and delete-if-unchanged; `locks.rs`
//! the striped `_id` locks that order writes within the process;
//! `documents.rs` stored documents read as books; `errors.rs` driver errors
//! mapped to what a client needs to know.

mod conditional;
mod documents;
mod errors;
mod list;
mod locks;

use std::sync::Arc;
use std::time::Duration;

use mongodb::bson::{doc, Document};
use mongodb::error::Error as MongoError;
use mongodb::options::{Acknowledgment, ClientOptions, WriteConcern};
use mongodb::{Client, Collection, Database};
use secrecy::ExposeSecret;
use tokio::time::Instant;

use documents::book_from_stored;
pub use documents::Removed;
pub use errors::RepositoryError;
use errors::{is_duplicate_key, unknown_if_sent};
use locks::IdLocks;

use crate::configuration::{DatabaseSettings, WriteAck};
use crate::domain::{Book, BookId};
use crate::metrics::DbMetrics;

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
    metrics: Arc<DbMetrics>,
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
    metrics: Arc<DbMetrics>,
}

impl SharedRepository {
    /// Parses and checks the settings for `clients` clients: the pool size
    /// (`maxPoolSize`, else the driver's 10) is divided between them, so the
    /// process holds as many database connections as one client would.
    /// Every client reports its pool's events and its failures to `metrics`.
    pub(crate) async fn new(
        settings: &DatabaseSettings,
        clients: usize,
        metrics: Arc<DbMetrics>,
    ) -> anyhow::Result<Self> {
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
        metrics.set_max_connections(options.max_pool_size.map_or(0, |per| u64::from(per) * u64::from(clients)));
        options.cmap_event_handler = Some(metrics.cmap_handler());
        Ok(SharedRepository {
            options,
            database_name: settings.database_name.clone(),
            collection: settings.collection.clone(),
            deadline: settings.timeout * 3,
            locks: Arc::new(IdLocks::new()),
            metrics,
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
            metrics: self.metrics.clone(),
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
        let result = match tokio::time::timeout_at(until, op.into_future()).await {
            Ok(result) => result.map_err(RepositoryError::from),
            Err(_) => Err(RepositoryError::TimedOut(self.deadline)),
        };
        self.counted(result)
    }

    /// Counts a failure in `books_ms_db_errors_total` on its way up.
    fn counted<T>(&self, result: Result<T, RepositoryError>) -> Result<T, RepositoryError> {
        if let Err(e) = &result {
            self.metrics.error(e);
        }
        result
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
}
