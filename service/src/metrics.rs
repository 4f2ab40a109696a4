//! What `/metrics` exposes, in the Prometheus text format: HTTP requests by
//! route template and status, their latency, the requests in flight, the
//! database pool (from the driver's CMAP events) and errors, the build, and
//! the process (`process_*`: memory, CPU, open files, start time).
//!
//! Each [`Application`](crate::Application) has its own registry, not the
//! crate's global one, so that two apps in one process (the API tests) count
//! apart. Every label takes a bounded set of values: routes are the
//! templates actix matched (`/api/v1/books/_id/{id}`), never the raw path,
//! and everything else is one `unmatched`; an unknown method is `other`.

use std::sync::Arc;
use std::time::Instant;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{web, Error};
use mongodb::event::cmap::{CmapEvent, ConnectionCheckoutFailedReason};
use mongodb::event::EventHandler;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::repository::RepositoryError;

/// The label of every request no resource matched: the web components
/// (the default service) and any path that is not one of ours.
pub(crate) const UNMATCHED: &str = "unmatched";

/// Checkout waits: a connection is normally free within a millisecond; a
/// wait of seconds means the pool is exhausted.
const CHECKOUT_BUCKETS: [f64; 13] =
    [0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0];

/// The process's metrics, shared by every worker (`web::Data`).
pub(crate) struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    in_flight: IntGauge,
    db: Arc<DbMetrics>,
}

/// The database's share, held by the repository and by the driver's
/// CMAP event handler.
pub(crate) struct DbMetrics {
    checked_out: IntGauge,
    connections: IntGauge,
    max_connections: IntGauge,
    checkout_wait: Histogram,
    checkout_failures: IntCounterVec,
    errors: IntCounterVec,
}

impl Metrics {
    /// The metrics of a service built as `version` from `revision`.
    pub(crate) fn new(version: &str, revision: &str) -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("http_requests_total", "HTTP requests answered, by method, route template and status"),
            &["method", "route", "status"],
        )
        .expect("a valid counter");
        // Up to the response's head: a streamed list's body is not included.
        let duration = HistogramVec::new(
            HistogramOpts::new("http_request_duration_seconds", "Time to the response's head, by route template"),
            &["method", "route"],
        )
        .expect("a valid histogram");
        let in_flight = IntGauge::new("http_requests_in_flight", "HTTP requests being handled").expect("a gauge");
        let build = IntGaugeVec::new(
            Opts::new("books_ms_build_info", "The version and git revision this binary was built from"),
            &["version", "revision"],
        )
        .expect("a valid gauge");
        build.with_label_values(&[version, revision]).set(1);
        let db = Arc::new(DbMetrics::new());
        for collector in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(duration.clone()),
            Box::new(in_flight.clone()),
            Box::new(build),
        ]
        .into_iter()
        .chain(db.collectors())
        {
            registry.register(collector).expect("metric names are unique");
        }
        // The process's memory, CPU, open files and start time (which also
        // tells one task's counters from another's behind a proxy).
        #[cfg(target_os = "linux")]
        registry
            .register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))
            .expect("metric names are unique");
        Metrics { registry, requests, duration, in_flight, db }
    }

    /// The metrics of this binary (what `/version` reports).
    pub(crate) fn for_this_build() -> Self {
        Self::new(env!("CARGO_PKG_VERSION"), env!("BOOKS_MS_REVISION"))
    }

    pub(crate) fn db(&self) -> Arc<DbMetrics> {
        self.db.clone()
    }

    /// Everything, in the text exposition format.
    pub(crate) fn render(&self) -> Result<String, prometheus::Error> {
        let mut text = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut text)?;
        String::from_utf8(text).map_err(|e| prometheus::Error::Msg(e.to_string()))
    }

    fn observe(&self, method: &Method, route: &str, status: u16, started: Instant) {
        let method = method_label(method);
        self.requests.with_label_values(&[method, route, &status.to_string()]).inc();
        self.duration.with_label_values(&[method, route]).observe(started.elapsed().as_secs_f64());
    }
}

impl std::fmt::Debug for DbMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbMetrics").finish_non_exhaustive()
    }
}

impl DbMetrics {
    fn new() -> Self {
        let gauge = |name: &str, help: &str| IntGauge::new(name, help).expect("a valid gauge");
        DbMetrics {
            checked_out: gauge("books_ms_db_connections_checked_out", "Database connections in use by an operation"),
            connections: gauge("books_ms_db_connections", "Database connections open, in use or idle"),
            max_connections: gauge("books_ms_db_connections_max", "The pool's limit over every worker's client"),
            checkout_wait: Histogram::with_opts(
                HistogramOpts::new(
                    "books_ms_db_connection_checkout_wait_seconds",
                    "Time an operation waited for a database connection",
                )
                .buckets(CHECKOUT_BUCKETS.to_vec()),
            )
            .expect("a valid histogram"),
            checkout_failures: IntCounterVec::new(
                Opts::new("books_ms_db_connection_checkout_failures_total", "Operations that got no connection"),
                &["reason"],
            )
            .expect("a valid counter"),
            errors: IntCounterVec::new(
                Opts::new("books_ms_db_errors_total", "Database calls that failed, by kind (timeout among them)"),
                &["kind"],
            )
            .expect("a valid counter"),
        }
    }

    fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        vec![
            Box::new(self.checked_out.clone()),
            Box::new(self.connections.clone()),
            Box::new(self.max_connections.clone()),
            Box::new(self.checkout_wait.clone()),
            Box::new(self.checkout_failures.clone()),
            Box::new(self.errors.clone()),
        ]
    }

    /// The pool's limit; 0 is the driver's "no limit".
    pub(crate) fn set_max_connections(&self, max: u64) {
        self.max_connections.set(i64::try_from(max).unwrap_or(i64::MAX));
    }

    /// A failed database call, counted under its kind.
    pub(crate) fn error(&self, e: &RepositoryError) {
        self.errors.with_label_values(&[e.kind()]).inc();
    }

    /// The driver's pool events, for `ClientOptions::cmap_event_handler`.
    pub(crate) fn cmap_handler(self: &Arc<Self>) -> EventHandler<CmapEvent> {
        let this = self.clone();
        EventHandler::callback(move |event| this.on_cmap(&event))
    }

    fn on_cmap(&self, event: &CmapEvent) {
        match event {
            CmapEvent::ConnectionCreated(_) => self.connections.inc(),
            CmapEvent::ConnectionClosed(_) => self.connections.dec(),
            CmapEvent::ConnectionCheckedOut(e) => {
                self.checked_out.inc();
                self.checkout_wait.observe(e.duration.as_secs_f64());
            }
            CmapEvent::ConnectionCheckedIn(_) => self.checked_out.dec(),
            CmapEvent::ConnectionCheckoutFailed(e) => {
                let reason = match e.reason {
                    ConnectionCheckoutFailedReason::Timeout => "timeout",
                    ConnectionCheckoutFailedReason::ConnectionError => "connection_error",
                    _ => "other",
                };
                self.checkout_failures.with_label_values(&[reason]).inc();
            }
            _ => {}
        }
    }
}

/// Counts every request, outermost, so that what the other middleware
/// answers (preflights, errors) is counted too. The route is the template
/// actix matches for the path, which a preflight answered before routing
/// gets as well.
pub(crate) async fn track(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let Some(metrics) = req.app_data::<web::Data<Metrics>>().cloned() else {
        return next.call(req).await.map(ServiceResponse::map_into_boxed_body);
    };
    let started = Instant::now();
    let route = route_label(req.match_pattern());
    let method = req.method().clone();
    // Decremented when dropped: also when the client goes away mid-request.
    let _in_flight = InFlight::enter(&metrics.in_flight);
    let result = next.call(req).await;
    let status = match &result {
        Ok(res) => res.status(),
        Err(e) => e.as_response_error().status_code(),
    };
    metrics.observe(&method, &route, status.as_u16(), started);
    result.map(ServiceResponse::map_into_boxed_body)
}

struct InFlight(IntGauge);

impl InFlight {
    fn enter(gauge: &IntGauge) -> Self {
        gauge.inc();
        InFlight(gauge.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The route label: the matched template, or [`UNMATCHED`].
fn route_label(pattern: Option<String>) -> String {
    pattern.unwrap_or_else(|| UNMATCHED.to_owned())
}

/// The method label: the standard methods by name, anything else `other`
/// (a client may send any token as a method).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::event::cmap::{ConnectionCheckedInEvent, ConnectionCheckedOutEvent};

    #[test]
    fn unknown_methods_share_one_label() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::from_bytes(b"BREW").expect("a token")), "other");
        assert_eq!(method_label(&Method::from_bytes(b"FOO123").expect("a token")), "other");
    }

    #[test]
    fn an_unmatched_request_has_the_one_unmatched_route() {
        assert_eq!(route_label(None), UNMATCHED);
        assert_eq!(route_label(Some("/api/v1/books/_id/{id}".to_owned())), "/api/v1/books/_id/{id}");
    }

    #[test]
    fn the_text_has_the_build_info_and_every_family() {
        let metrics = Metrics::new("1.2.3", "abc123");
        metrics.observe(&Method::GET, "/health", 200, Instant::now());
        let text = metrics.render().expect("renders");
        assert!(text.contains(r#"books_ms_build_info{revision="abc123",version="1.2.3"} 1"#), "{text}");
        assert!(text.contains(r#"http_requests_total{method="GET",route="/health",status="200"} 1"#), "{text}");
        assert!(text.contains(r#"http_request_duration_seconds_bucket{method="GET",route="/health",le="+Inf"} 1"#));
        assert!(text.contains("books_ms_db_connections_checked_out 0"), "{text}");
    }

    #[test]
    fn pool_events_move_the_pool_gauges() {
        let metrics = Metrics::new("v", "r");
        let db = metrics.db();
        let text = |m: &Metrics| m.render().expect("renders");
        // The events are `non_exhaustive`: made the way the driver's own tests read them.
        let mut out: ConnectionCheckedOutEvent =
            serde_json::from_value(serde_json::json!({ "connectionId": 1 })).expect("an event");
        out.duration = std::time::Duration::from_millis(2);
        db.on_cmap(&CmapEvent::ConnectionCheckedOut(out));
        let after_out = text(&metrics);
        assert!(after_out.contains("books_ms_db_connections_checked_out 1"), "{after_out}");
        assert!(after_out.contains("books_ms_db_connection_checkout_wait_seconds_count 1"), "{after_out}");
        assert!(after_out.contains(r#"books_ms_db_connection_checkout_wait_seconds_bucket{le="0.001"} 0"#));
        assert!(after_out.contains(r#"books_ms_db_connection_checkout_wait_seconds_bucket{le="0.0025"} 1"#));
        let checked_in: ConnectionCheckedInEvent =
            serde_json::from_value(serde_json::json!({ "connectionId": 1 })).expect("an event");
        db.on_cmap(&CmapEvent::ConnectionCheckedIn(checked_in));
        assert!(text(&metrics).contains("books_ms_db_connections_checked_out 0"));
    }

    #[test]
    fn in_flight_counts_until_dropped() {
        let metrics = Metrics::new("v", "r");
        let guard = InFlight::enter(&metrics.in_flight);
        assert_eq!(metrics.in_flight.get(), 1);
        drop(guard);
        assert_eq!(metrics.in_flight.get(), 0);
    }
}
