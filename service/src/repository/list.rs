//! The list: summaries streamed from the cursor, never the whole collection
//! in memory.

use futures_util::{Stream, StreamExt};
use mongodb::bson::{doc, Document, RawDocument};

use super::documents::book_from_stored;
use super::{BookRepository, RepositoryError};
use crate::domain::{BookId, BookSummary, Page};

/// The summary fields, in the stored document.
fn summary_projection() -> Document {
    doc! { "_id": 1, "title": 1, "author": 1 }
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

impl BookRepository {
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
        let metrics = self.metrics.clone();
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
        })
        .inspect(move |item| {
            if let Err(e) = item {
                metrics.error(e);
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
