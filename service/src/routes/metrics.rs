//! `/metrics`: the service's metrics for Prometheus (see `crate::metrics`).

use actix_web::{web, HttpResponse};

use crate::metrics::Metrics;

/// The metrics in the Prometheus text exposition format.
#[utoipa::path(
    get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "The Prometheus text exposition format, version 0.0.4",
               content_type = "text/plain; version=0.0.4", body = String))
)]
pub(crate) async fn metrics(metrics: web::Data<Metrics>) -> HttpResponse {
    match metrics.render() {
        Ok(text) => HttpResponse::Ok().content_type(prometheus::TEXT_FORMAT).body(text),
        // Only a metric with an invalid name or label could fail, and those are fixed in code.
        Err(e) => {
            tracing::error!(error = %e, "the metrics could not be encoded");
            HttpResponse::InternalServerError().finish()
        }
    }
}
