//! Conditional writes: create only (`If-None-Match: *`) and delete only if
//! unchanged (`If-Match`), each one database operation under the `_id`'s lock.

use mongodb::bson::{doc, Document};

use super::documents::{book_from_stored, InvalidStoredBook, Removed};
use super::errors::{is_duplicate_key, unknown_if_sent};
use super::{BookRepository, RepositoryError};
use crate::domain::{Book, BookId};

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

impl BookRepository {
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
}
