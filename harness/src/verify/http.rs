//! The HTTP side of the checks: one client for the service under test,
//! answers read whole (up to a bound), and the problems a bad answer makes.

use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::report::Problem;
use super::{CONNECT_TIMEOUT, EXCERPT_CHARS, MAX_BODY, REQUEST_TIMEOUT};
use crate::http::causes;

pub(super) struct Http {
    pub(super) client: reqwest::Client,
    /// Without a trailing slash.
    pub(super) base: String,
    /// `Authorization: Bearer TOKEN`, sent on writes only; marked sensitive,
    /// so that reqwest and its logs never print it.
    authorization: Option<reqwest::header::HeaderValue>,
}

/// A response read whole (up to `MAX_BODY`).
pub(super) struct Answer {
    pub(super) method: &'static str,
    pub(super) url: String,
    pub(super) status: StatusCode,
    pub(super) request_id: Option<String>,
    /// The book's version (`ETag`), for a conditional DELETE.
    pub(super) etag: Option<String>,
    pub(super) body: Vec<u8>,
}

impl Http {
    /// A client for the service at `base`, sending `headers` with every
    /// request (a deploy's preview header, to reach a colour before the
    /// switch).
    pub(super) fn new(base: String, headers: &[(String, String)], token: Option<&str>) -> Result<Self, Problem> {
        let mut map = reqwest::header::HeaderMap::new();
        for (name, value) in headers {
            let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| Problem::Client(format!("header {name}: {e}")))?;
            let value = reqwest::header::HeaderValue::from_str(value)
                .map_err(|e| Problem::Client(format!("header {name}'s value: {e}")))?;
            map.insert(name, value);
        }
        let client = crate::http::builder(CONNECT_TIMEOUT, REQUEST_TIMEOUT)
            .default_headers(map)
            .build()
            .map_err(|e| Problem::Client(causes(&e)))?;
        let authorization = token
            .map(|token| {
                // The error names the problem, never the token.
                let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.trim()))
                    .map_err(|_| Problem::Client("the write token is not a valid header value".to_owned()))?;
                value.set_sensitive(true);
                Ok(value)
            })
            .transpose()?;
        Ok(Http { client, base, authorization })
    }

    pub(super) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub(super) async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Answer, Problem> {
        self.call_if(method, path, body, None).await
    }

    /// [`Self::call`] with a precondition header (`If-None-Match: *`,
    /// `If-Match: "ETAG"`).
    pub(super) async fn call_if(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        condition: Option<(&str, &str)>,
    ) -> Result<Answer, Problem> {
        let url = self.url(path);
        let name = method_name(&method);
        let write = matches!(method, Method::PUT | Method::POST | Method::DELETE);
        let mut request = self.client.request(method, &url);
        if let Some(authorization) = self.authorization.as_ref().filter(|_| write) {
            request = request.header(reqwest::header::AUTHORIZATION, authorization.clone());
        }
        if let Some((header, value)) = condition {
            request = request.header(header, value);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let mut response = request.send().await.map_err(|e| no_answer(name, &url, &e))?;
        let status = response.status();
        let request_id = request_id(&response);
        let etag = response.headers().get("etag").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| no_answer(name, &url, &e))? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(Problem::Content {
                    request: format!("{name} {url}"),
                    expected: format!("a body of at most {} MiB", MAX_BODY / (1024 * 1024)),
                    found: "a larger one".to_owned(),
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Answer { method: name, url, status, request_id, etag, body })
    }
}

impl Answer {
    pub(super) fn expect_status(&self, want: StatusCode, expected: &str, http: &Http) -> Result<(), Problem> {
        if self.status == want {
            Ok(())
        } else {
            Err(self.status_problem(expected, http))
        }
    }

    pub(super) fn status_problem(&self, expected: &str, http: &Http) -> Problem {
        let hint = match self.status.as_u16() {
            503 => "the service answers but its database does not: is the database running? (`harness status` shows prod's containers)".to_owned(),
            500..=599 => match &self.request_id {
                Some(id) => format!("the service failed; its log has the cause (request id {id})"),
                None => "the service failed; its log has the cause".to_owned(),
            },
            401 if http.authorization.is_some() => {
                "the service refused the write token: is it the one the service's WRITE_TOKEN holds?".to_owned()
            }
            401 => "the service needs a write token for writes (its WRITE_TOKEN): give verify that token".to_owned(),
            404 | 405 => format!("is {} the base URL of a books-ms?", http.base),
            _ => format!("is {} a books-ms, of this API version?", http.base),
        };
        Problem::Status {
            request: self.request(),
            expected: expected.to_owned(),
            status: self.status,
            excerpt: excerpt(&self.body),
            hint,
        }
    }

    pub(super) fn content(&self, expected: &str, found: String) -> Problem {
        Problem::Content { request: self.request(), expected: expected.to_owned(), found }
    }

    pub(super) fn request(&self) -> String {
        format!("{} {}", self.method, self.url)
    }

    pub(super) fn json<T: serde::de::DeserializeOwned>(&self, expected: &str) -> Result<T, Problem> {
        serde_json::from_slice(&self.body).map_err(|_| self.content(expected, excerpt(&self.body)))
    }
}

pub(super) fn method_name(method: &Method) -> &'static str {
    match *method {
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::POST => "POST",
        _ => "GET",
    }
}

pub(super) fn request_id(response: &reqwest::Response) -> Option<String> {
    response.headers().get("x-request-id").and_then(|v| v.to_str().ok()).map(str::to_owned)
}

pub(super) fn no_answer(method: &str, url: &str, error: &reqwest::Error) -> Problem {
    let cause =
        if error.is_timeout() { format!("no answer within {} s", REQUEST_TIMEOUT.as_secs()) } else { causes(error) };
    Problem::NoAnswer { request: format!("{method} {url}"), cause }
}

/// The start of a body, on one line, for an error message.
pub(super) fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.is_empty() {
        return "an empty body".to_owned();
    }
    match text.char_indices().nth(EXCERPT_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

pub(super) fn compact(value: &Value) -> String {
    excerpt(value.to_string().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A loopback server answering 200 to each request, sending back the
    /// request's head (lower case) for the test to read.
    async fn echo_server() -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
                let answer =
                    format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{head}", head.len());
                let _ = stream.write_all(answer.as_bytes()).await;
            }
        });
        base
    }

    #[tokio::test]
    async fn the_write_token_goes_on_writes_only() {
        let http = Http::new(echo_server().await, &[], Some("tok-1")).unwrap();
        let sent = |answer: Answer| String::from_utf8(answer.body).unwrap();
        let get = sent(http.call(Method::GET, "/api/v1/books", None).await.unwrap());
        assert!(!get.contains("authorization"), "{get}");
        for method in [Method::PUT, Method::DELETE] {
            let write =
                sent(http.call_if(method.clone(), "/api/v1/books", None, Some(("If-Match", "*"))).await.unwrap());
            assert!(write.contains("authorization: bearer tok-1\r\n"), "{method}: {write}");
        }
        let open = Http::new(http.base.clone(), &[], None).unwrap();
        let put = sent(open.call(Method::PUT, "/api/v1/books", None).await.unwrap());
        assert!(!put.contains("authorization"), "{put}");
    }

    #[test]
    fn excerpts_are_one_short_line() {
        assert_eq!(excerpt(b"{\"error\":\n  \"x\"}"), "{\"error\": \"x\"}");
        assert_eq!(excerpt(b""), "an empty body");
        let long = "é".repeat(500);
        let cut = excerpt(long.as_bytes());
        assert_eq!(cut.chars().count(), EXCERPT_CHARS + 1);
        assert!(cut.ends_with('…'));
    }
}
