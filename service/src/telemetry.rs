//! Structured logs: readable on a terminal, JSON lines everywhere else.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber; `RUST_LOG` filters (default `info`).
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stdout);
    if std::io::stdout().is_terminal() {
        builder.compact().init();
    } else {
        // Each line carries the fields of the request's span (its request_id).
        builder.json().flatten_event(true).with_current_span(true).with_span_list(false).init();
    }
}
