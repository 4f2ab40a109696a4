//! What both targets' HAProxy configurations share: the runtime API's
//! socket, the logs, the request deadlines, and which requests may be sent
//! twice. Each target renders its own frontends and backends after this
//! (`host::proxy`, `swarm::haproxy`).
//!
//! Only reads are retried once something was sent: a write that reached the
//! app and got no answer in time may have been applied, and sending it
//! again would make the answer lie (a create-only PUT that created the book
//! answering 412, a DELETE that deleted it answering 404) and repeat it
//! during a database outage. A write is sent again only when its
//! connection failed, before anything of it left the proxy. A write gets
//! [`WRITE_TIMEOUT`], beyond the app's own deadline for a write, so that
//! the app, not the proxy, says how it ended.

/// The service's own port inside its container, and the proxy's.
pub const APP_PORT: u16 = 8080;

/// The runtime API's socket in the proxy's container.
pub const SOCKET: &str = "/run/haproxy/admin.sock";

/// How long the proxy waits for the answer to a write: above books-ms's
/// own deadline for a write (6 s), which answers 503 or 504 by itself.
pub const WRITE_TIMEOUT: &str = "10s";

/// What differs between the targets' deadlines and retries.
pub struct Tuning<'a> {
    /// Why these values, as comment lines (without `#`), written above them.
    pub why: &'a [&'a str],
    pub connect: &'a str,
    pub client: &'a str,
    /// The answer to a request (see [`write_safety`] for a write's).
    pub server: &'a str,
    /// A health check's answer, when servers are checked.
    pub check: Option<&'a str>,
    pub retries: u32,
    /// `option redispatch` and its interval (`1`: every retry elsewhere).
    pub redispatch: Option<u32>,
    /// What a read is retried on besides a failed connection.
    pub retry_on: Option<&'a str>,
}

/// The `global` and `defaults` sections, after `header` (comment lines).
pub fn preamble(header: &str, tuning: &Tuning) -> String {
    let mut out = format!(
        "{header}\n\
         global\n    \
         stats socket {SOCKET} mode 600 level admin\n    \
         hard-stop-after 30s\n    \
         log stdout format raw local0 info\n\n\
         defaults\n    \
         mode http\n    \
         log global\n    \
         option httplog\n    \
         option dontlog-normal\n"
    );
    for line in tuning.why {
        out.push_str(&format!("    # {line}\n"));
    }
    out.push_str(&format!(
        "    timeout connect {}\n    \
         # A request's headers must arrive within 5 s (slowloris, also on a\n    \
         # kept-alive connection, which books-ms itself cannot bound).\n    \
         timeout http-request 5s\n    \
         timeout client {}\n    \
         timeout server {}\n    \
         timeout http-keep-alive 15s\n",
        tuning.connect, tuning.client, tuning.server
    ));
    if let Some(check) = tuning.check {
        out.push_str(&format!("    timeout check {check}\n"));
    }
    out.push_str(&format!("    retries {}\n", tuning.retries));
    match tuning.redispatch {
        Some(interval) => out.push_str(&format!("    option redispatch {interval}\n")),
        None => out.push_str("    option redispatch\n"),
    }
    if let Some(retry_on) = tuning.retry_on {
        out.push_str(&format!("    retry-on {retry_on}\n"));
    }
    out.push('\n');
    out
}

/// The lines of a backend that keep writes from being sent twice (see the
/// module's text): no retry of a write but on a failed connection; with
/// `short_server` (a `timeout server` below the app's deadline for a
/// write), [`WRITE_TIMEOUT`] for a write's answer.
pub fn write_safety(short_server: bool) -> String {
    let mut out = "    # A write is sent again only when its connection failed: one that\n    \
                   # reached the app may have been applied.\n    \
                   http-request disable-l7-retry if !METH_GET\n"
        .to_owned();
    if short_server {
        out.push_str(&format!("    http-request set-timeout server {WRITE_TIMEOUT} if !METH_GET\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_alone_are_retried_after_sending_and_writes_wait_past_the_apps_deadline() {
        let tuning = Tuning {
            why: &["why"],
            connect: "1s",
            client: "2s",
            server: "3s",
            check: Some("4s"),
            retries: 3,
            redispatch: Some(1),
            retry_on: Some("conn-failure response-timeout"),
        };
        let text = preamble("# head", &tuning) + &write_safety(true);
        assert!(text.starts_with("# head\nglobal\n"), "{text}");
        for line in [
            "timeout connect 1s",
            "timeout server 3s",
            "timeout check 4s",
            "retries 3",
            "option redispatch 1",
            "retry-on conn-failure response-timeout",
            "# why",
            "http-request disable-l7-retry if !METH_GET",
            "http-request set-timeout server 10s if !METH_GET",
        ] {
            assert!(text.lines().any(|l| l.trim() == line), "{line} in {text}");
        }
        let plain = Tuning { check: None, redispatch: None, retry_on: None, ..tuning };
        let text = preamble("# head", &plain);
        assert!(!text.contains("retry-on") && !text.contains("timeout check"), "{text}");
        assert!(text.lines().any(|l| l.trim() == "option redispatch"), "{text}");
        assert!(!write_safety(false).contains("set-timeout"), "a long timeout server is left alone");
    }
}
