//! API tests: the real app on port 0 against a real database container.
mod books;
mod conditional;
mod errors;
mod helpers;
mod image;
mod operations;
mod shutdown;
mod static_files;
