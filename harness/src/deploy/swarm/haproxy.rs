//! The swarm's proxy configuration: HAProxy on every node, finding the
//! app's tasks through the swarm's DNS, rendered here and shipped as a
//! swarm config object (never edited by hand).
//!
//! The app's service uses `endpoint_mode: dnsrr`, so `tasks.P-app` resolves
//! to the address of each of its running tasks; `server-template` gives
//! HAProxy slots for them, filled and emptied as the answers change
//! (`hold` 1 s: a task gone is forgotten within about a second). Each
//! server is checked on `swarm.check_path` (by default `healthcheck.path`)
//! every second: a new task gets no request until it answered 2xx twice,
//! and a task that stops answering (a lost node, a task stopping, a task
//! no longer ready) leaves the rotation within about 1.5 s. A request whose connection fails, or that gets no answer
//! (in time) or a 502/503/504, is sent again to another task (`retry-on`,
//! `option redispatch 1`: every retry goes elsewhere), if it is a read: a
//! write only when its connection failed ([`haproxy::write_safety`]).
//! These settings lost no request of 11,382 when a worker's link went down
//! on the lab's swarm (lab/swarm-faults.sh).

use crate::deploy::haproxy::{self, APP_PORT};

/// The first line of the configuration, so that a reader knows its source.
const HEADER: &str = "# Rendered by the harness for the swarm: a new text is a new config object.";

/// Slots for the app's tasks, fixed: a configuration that changed with
/// `swarm.replicas` would replace the proxy, closing each node's port in
/// turn. During a rolling update a node runs one new task beside the old
/// ones, and a lost node's tasks are rescheduled before its old addresses
/// time out: twice the largest `swarm.replicas` the configuration accepts.
pub const SLOTS: u32 = 2 * MAX_REPLICAS;
/// The most app tasks the proxy has room for (`swarm.replicas`).
pub const MAX_REPLICAS: u32 = 16;

/// HAProxy's configuration: the app's service `app`, up to
/// [`MAX_REPLICAS`] tasks listening on `port`, each checked on
/// `check_path`. The proxy itself listens on [`APP_PORT`] in its tasks.
/// The timeouts, checks and retries are the ones measured on the lab's
/// swarm to lose no request when a worker's link goes down under load.
pub fn render(app: &str, port: u16, check_path: &str) -> String {
    let slots = SLOTS;
    let tuning = haproxy::Tuning {
        why: &[
            "A connect inside the overlay takes under a millisecond; a lost",
            "machine's never completes: the retry goes elsewhere. A read in",
            "flight on a machine that vanished gets no RST: after `timeout",
            "server` it is retried on another task (response-timeout), every",
            "retry elsewhere (redispatch 1). Writes: see the frontend.",
        ],
        connect: "500ms",
        client: "30s",
        server: "3s",
        check: Some("500ms"),
        retries: 3,
        redispatch: Some(1),
        retry_on: Some("conn-failure empty-response response-timeout 502 503 504"),
    };
    let mut out = haproxy::preamble(HEADER, &tuning);
    out.push_str(
        "# The swarm's DNS, inside every task.\n\
         resolvers swarm\n    \
         nameserver dns 127.0.0.11:53\n    \
         accepted_payload_size 8192\n    \
         resolve_retries 3\n    \
         timeout resolve 1s\n    \
         timeout retry 1s\n    \
         hold valid 1s\n    \
         hold obsolete 1s\n    \
         hold nx 1s\n    \
         hold other 1s\n    \
         hold refused 1s\n    \
         hold timeout 1s\n\n",
    );
    out.push_str(&format!(
        "frontend books_ms\n    \
         bind :{APP_PORT}\n    \
         default_backend app\n\n\
         # The app's tasks, as many as the swarm's DNS names; a dead one is\n\
         # out within about 1.5 s (inter, fastinter, fall).\n\
         backend app\n"
    ));
    out.push_str(&haproxy::write_safety(true));
    out.push_str(&format!(
        "    balance roundrobin\n    \
         option httpchk\n    \
         http-check send meth GET uri {check_path}\n    \
         default-server check inter 1s fastinter 250ms downinter 1s fall 2 rise 2 \
         resolvers swarm init-addr none\n    \
         server-template task {slots} tasks.{app}:{port}\n"
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_app_tasks_are_found_by_the_swarms_dns_checked_and_retried_elsewhere() {
        let config = render("books-ms-app", 8080, "/health");
        assert!(config.contains("nameserver dns 127.0.0.11:53"), "{config}");
        assert!(config.contains("server-template task 32 tasks.books-ms-app:8080\n"), "{config}");
        assert!(config.contains("http-check send meth GET uri /health"), "{config}");
        assert!(config.contains("retry-on conn-failure empty-response response-timeout 502 503 504"), "{config}");
        assert!(config.contains("resolvers swarm init-addr none"), "{config}");
        assert!(config.contains("option redispatch 1"), "{config}");
        assert!(config.contains("retry-on conn-failure empty-response"), "{config}");
        assert!(config.contains("bind :8080"), "{config}");
        assert!(config.contains("http-request disable-l7-retry if !METH_GET"), "{config}");
        assert!(config.contains("http-request set-timeout server 10s if !METH_GET"), "{config}");
        assert!(config.starts_with(HEADER));
    }

    #[test]
    fn the_slots_are_fixed_so_the_replicas_never_change_the_text() {
        assert_eq!(SLOTS, 32);
        assert!(render("x", 8080, "/").contains("server-template task 32 tasks.x:8080\n"));
        assert_eq!(render("x", 8080, "/"), render("x", 8080, "/"));
    }

    #[test]
    fn the_apps_port_and_check_path_are_the_services_the_proxys_own_port_stays() {
        let config = render("hello-app", 5000, "/ready");
        assert!(config.contains("server-template task 32 tasks.hello-app:5000\n"), "{config}");
        assert!(config.contains("http-check send meth GET uri /ready\n"), "{config}");
        assert!(config.contains("bind :8080\n"), "{config}");
    }
}
