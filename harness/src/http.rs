//! The one constructor of HTTP clients, and the one way to turn an error's
//! chain into a line.
//!
//! Every address the harness calls (the registry, prod's service) is its
//! own to reach directly: a proxy named by `HTTP_PROXY` in the environment
//! would be wrong for all of them, so clients never use one.

use std::time::Duration;

/// A client with a connect timeout (a refused connection fails at once; this
/// bounds a host that drops packets) and a deadline per request, body
/// included.
pub fn client(connect_timeout: Duration, timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    builder(connect_timeout, timeout).build()
}

/// The same, to add to (default headers) before building.
pub fn builder(connect_timeout: Duration, timeout: Duration) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .timeout(timeout)
        .no_proxy()
        .user_agent(concat!("harness/", env!("CARGO_PKG_VERSION")))
}

/// An error and its causes on one line, each cause once: reqwest's own
/// message repeats the URL, its causes say what happened ("Connection
/// refused").
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = vec![error.to_string()];
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = cause.source();
    }
    parts.join(": ")
}

/// The causes only, without the error's own message: for reqwest errors
/// whose message repeats the URL that the caller names already.
pub fn causes(error: &dyn std::error::Error) -> String {
    match error.source() {
        Some(cause) => error_chain(cause),
        None => error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] Inner);

    #[derive(Debug, thiserror::Error)]
    #[error("inner")]
    struct Inner;

    #[test]
    fn the_chain_names_each_cause_once() {
        assert_eq!(error_chain(&Outer(Inner)), "outer: inner");
        assert_eq!(causes(&Outer(Inner)), "inner");
        assert_eq!(causes(&Inner), "inner");
    }
}
