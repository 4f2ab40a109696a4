//! books-ms: the books REST API over MongoDB, and the static web components.
//!
//! Layout:
//! - [`configuration`]: typed settings from the environment;
//! - [`domain`]: `Book`, `BookId`, `Page`: valid by construction, no I/O;
//! - `repository`: the MongoDB collection, the only module that talks to it;
//! - `routes`: HTTP handlers (books, health, OpenAPI, static files);
//! - `auth`: who may write (the write token);
//! - `metrics`: what `/metrics` exposes and the middleware that counts requests;
//! - `error`: every error a client can get, mapped to a status in one place;
//! - [`startup`]: builds the app, binds the listener, runs until stopped;
//! - [`telemetry`]: tracing set-up; [`healthcheck`]: the image's probe.
mod auth;
pub mod configuration;
pub mod domain;
mod error;
pub mod healthcheck;
mod metrics;
mod middleware;
mod repository;
mod routes;
pub mod startup;
pub mod telemetry;

pub use configuration::Settings;
pub use startup::Application;

/// The OpenAPI document of the API, as served at `/api/v1/openapi.json`.
pub fn openapi() -> serde_json::Value {
    routes::openapi_document()
}
