//! HTTP handlers, one module per concern. Routes are registered in
//! `startup.rs`, all in one place.
mod books;
mod health;
mod metrics;
mod openapi;
mod static_files;

pub(crate) use books::{delete_book, get_book, list_books, put_book, query_error, BodyTimeout};
pub(crate) use health::{health, ready, version};
pub(crate) use metrics::metrics;
pub(crate) use openapi::{document as openapi_document, openapi_json};
pub(crate) use static_files::{static_file, StaticRoot};
