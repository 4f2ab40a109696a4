//! The books domain: types that are valid by construction. No I/O here.
mod book;
mod paging;

pub use book::{Book, BookError, BookId, BookSummary, BOOK_FIELDS};
pub use paging::{Page, MAX_PAGE_SIZE};
