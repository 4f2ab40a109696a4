//! Stored documents read as books, checked like request bodies: another
//! program may have written anything to the collection.

use mongodb::bson::Document;

use crate::domain::{Book, BookError, BOOK_FIELDS};

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

/// What DELETE found and removed.
#[derive(Debug)]
pub enum Removed {
    Book(Book),
    /// The document is gone, but it was not a valid book, so it cannot be echoed.
    Invalid(InvalidStoredBook),
}

impl Removed {
    /// What a removed document was, read like any stored one.
    pub(super) fn from_document(document: Document) -> Removed {
        match book_from_stored(document) {
            Ok(book) => Removed::Book(book),
            Err(invalid) => Removed::Invalid(invalid),
        }
    }
}

/// A stored document as a book, checked like a request body (the same rules
/// and messages). Fields this service does not know are ignored rather than
/// refused: another program may keep more in the document, and a book can
/// still be shown without them.
pub(super) fn book_from_stored(document: Document) -> Result<Book, InvalidStoredBook> {
    let id =
        document.get("_id").cloned().map_or_else(|| "(missing)".to_owned(), |id| id.into_relaxed_extjson().to_string());
    let known: serde_json::Map<String, serde_json::Value> = document
        .into_iter()
        .filter(|(key, _)| BOOK_FIELDS.contains(&key.as_str()))
        .map(|(key, value)| (key, value.into_relaxed_extjson()))
        .collect();
    Book::try_from(known).map_err(|problem| InvalidStoredBook { id, problem })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::doc;

    #[test]
    fn a_valid_stored_document_is_a_book_and_unknown_stored_fields_are_ignored() {
        let book = book_from_stored(doc! { "_id": 7_i64, "title": "T", "author": "A", "isbn": "978" }).unwrap();
        assert_eq!((book.id.get(), book.title.as_str(), book.description.as_str()), (7, "T", ""));
        // A whole double is the id it spells, as a query by that integer finds it.
        let book = book_from_stored(doc! { "_id": 8.0, "title": "T", "author": "A" }).unwrap();
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
            let err = book_from_stored(document).unwrap_err();
            assert_eq!((err.id.as_str(), err.field()), (id, Some(field)), "{err}");
            assert!(err.to_string().contains(field), "{err}");
        }
    }
}
