//! API tests: the real app on port 0 against a real database container.
mod books;
mod contract;
mod errors;
mod helpers;
mod image;
mod operations;
mod shutdown;
mod slow_clients;
mod static_files;
