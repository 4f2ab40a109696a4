//! Liveness, readiness and version: what orchestrators and deploys ask.

use actix_web::{web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{ApiError, ErrorBody};
use crate::repository::BookRepository;

#[derive(Serialize, ToSchema)]
pub(crate) struct Status {
    status: &'static str,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct Version {
    name: &'static str,
    /// The package version.
    version: &'static str,
    /// The git revision the binary was built from (`-dirty` when the tree had changes).
    revision: &'static str,
}

/// Alive: the process answers. No database call, so a database outage never
/// gets a healthy container restarted.
#[utoipa::path(get, path = "/health", tag = "operations", responses((status = 200, body = Status)))]
pub(crate) async fn health() -> HttpResponse {
    HttpResponse::Ok().json(Status { status: "ok" })
}

/// Ready: the database answers a ping.
#[utoipa::path(
    get, path = "/ready", tag = "operations",
    responses((status = 200, body = Status), (status = 503, description = "The database is unavailable", body = ErrorBody))
)]
pub(crate) async fn ready(repo: web::Data<BookRepository>) -> Result<HttpResponse, ApiError> {
    repo.ping().await?;
    Ok(HttpResponse::Ok().json(Status { status: "ready" }))
}

/// The version and git revision baked in at build time.
#[utoipa::path(get, path = "/version", tag = "operations", responses((status = 200, body = Version)))]
pub(crate) async fn version() -> HttpResponse {
    HttpResponse::Ok().json(Version {
        name: env!("CARGO_PKG_NAME"),
        version: env!("CARGO_PKG_VERSION"),
        revision: env!("BOOKS_MS_REVISION"),
    })
}
