//! API tests: the real app on port 0 against a real database container.
mod auth;
mod bad_documents;
mod books;
mod concurrency;
mod conditional;
mod contract;
mod errors;
mod faults;
mod helpers;
mod image;
mod metrics;
mod operations;
mod shutdown;
mod slow_clients;
mod static_files;
