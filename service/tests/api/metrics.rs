//! `/metrics`: the Prometheus text, its counts, and labels of bounded cardinality.

use serde_json::Value;

use crate::helpers::{book, free_port, spawn_app, spawn_app_with, AppOptions, TestApp};

const BOOK_ROUTE: &str = "/api/v1/books/_id/{id}";

/// The text of `/metrics`.
async fn scrape(app: &TestApp) -> String {
    let response = app.get("/metrics").await;
    assert_eq!(response.status(), 200);
    response.text().await.expect("the metrics' text")
}

/// The samples of the metric `name` (exactly that name, not its `_bucket`
/// or `_count`): each as its labels (`{...}` or "") and its value.
fn samples<'a>(text: &'a str, name: &str) -> Vec<(&'a str, f64)> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            let (labels, value) = match rest.strip_prefix('{') {
                Some(inside) => {
                    let end = inside.find("} ")?;
                    (&rest[..end + 2], &inside[end + 2..])
                }
                None => ("", rest.strip_prefix(' ')?),
            };
            Some((labels, value.trim().parse().expect("a sample's value is a number")))
        })
        .collect()
}

/// The one sample of `name` with exactly `labels`, if any.
fn value(text: &str, name: &str, labels: &str) -> Option<f64> {
    samples(text, name).into_iter().find(|(l, _)| *l == labels).map(|(_, v)| v)
}

#[tokio::test]
async fn metrics_are_served_in_the_prometheus_text_format() {
    let app = spawn_app().await;

    let response = app.get("/metrics").await;

    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    let text = response.text().await.unwrap();
    // Every line is a comment or `name{labels} value`.
    for line in text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("not a sample: {line}"));
        assert!(value.parse::<f64>().is_ok() || value == "+Inf", "{line}");
        let name = series.split('{').next().unwrap();
        assert!(!name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "{line}");
    }
}

#[tokio::test]
async fn the_process_is_measured_and_its_start_time_tells_instances_apart() {
    let app = spawn_app().await;

    let text = scrape(&app).await;

    let started = samples(&text, "process_start_time_seconds");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    assert!(matches!(started[..], [(_, s)] if s > now - 24.0 * 3600.0 && s <= now + 1.0), "{started:?}");
    let resident = samples(&text, "process_resident_memory_bytes");
    assert!(matches!(resident[..], [(_, bytes)] if bytes > 1e6), "{resident:?}");
    assert_eq!(samples(&text, "process_open_fds").len(), 1, "{text}");
}

#[tokio::test]
async fn requests_to_books_are_counted_by_route_template_never_by_id() {
    let app = spawn_app().await;
    let ids = [918_273_641, 918_273_642, 918_273_643];

    for id in ids {
        assert_eq!(app.get(&format!("/api/v1/books/_id/{id}")).await.status(), 404);
    }
    let text = scrape(&app).await;

    let route = format!(r#"route="{BOOK_ROUTE}""#);
    let book_series: Vec<_> =
        samples(&text, "http_requests_total").into_iter().filter(|(l, _)| l.contains(&route)).collect();
    assert_eq!(book_series, [(&*format!(r#"{{method="GET",{route},status="404"}}"#), 3.0)], "{text}");
    for id in ids {
        assert!(!text.contains(&id.to_string()), "the id {id} is in the metrics:\n{text}");
    }
}

#[tokio::test]
async fn counts_follow_the_statuses_answered() {
    let app = spawn_app().await;
    let id = 918_273_650;
    assert_eq!(app.put_json(&book(id, "Dune", "Herbert", "Spice")).await.status(), 200);
    assert_eq!(app.get(&format!("/api/v1/books/_id/{id}")).await.status(), 200);
    assert_eq!(app.get(&format!("/api/v1/books/_id/{id}")).await.status(), 200);
    assert_eq!(app.delete(&format!("/api/v1/books/_id/{id}")).await.status(), 200);
    assert_eq!(app.get(&format!("/api/v1/books/_id/{id}")).await.status(), 404);

    let text = scrape(&app).await;

    let count = |method: &str, route: &str, status: u16| {
        value(&text, "http_requests_total", &format!(r#"{{method="{method}",route="{route}",status="{status}"}}"#))
    };
    assert_eq!(count("PUT", "/api/v1/books", 200), Some(1.0), "{text}");
    assert_eq!(count("GET", BOOK_ROUTE, 200), Some(2.0), "{text}");
    assert_eq!(count("DELETE", BOOK_ROUTE, 200), Some(1.0), "{text}");
    assert_eq!(count("GET", BOOK_ROUTE, 404), Some(1.0), "{text}");
}

#[tokio::test]
async fn latency_is_a_histogram_by_route_template() {
    let app = spawn_app().await;
    for _ in 0..2 {
        assert_eq!(app.get("/health").await.status(), 200);
    }

    let text = scrape(&app).await;

    let buckets = samples(&text, "http_request_duration_seconds_bucket");
    let health: Vec<_> = buckets.iter().filter(|(l, _)| l.contains(r#"route="/health""#)).collect();
    assert!(health.len() >= 5, "too few buckets: {health:?}");
    assert!(health.iter().any(|(l, v)| l.contains(r#"le="+Inf""#) && *v == 2.0), "{health:?}");
    let count = value(&text, "http_request_duration_seconds_count", r#"{method="GET",route="/health"}"#);
    assert_eq!(count, Some(2.0), "{text}");
    assert!(value(&text, "http_request_duration_seconds_sum", r#"{method="GET",route="/health"}"#).is_some());
}

#[tokio::test]
async fn the_in_flight_gauge_counts_the_scrape_itself() {
    let app = spawn_app().await;
    assert_eq!(app.get("/health").await.status(), 200);

    let text = scrape(&app).await;

    // The finished request is no longer in flight; the scrape is.
    assert_eq!(value(&text, "http_requests_in_flight", ""), Some(1.0), "{text}");
}

#[tokio::test]
async fn build_info_has_the_version_and_revision_that_version_reports() {
    let app = spawn_app().await;
    let version: Value = app.get("/version").await.json().await.unwrap();

    let text = scrape(&app).await;

    let labels = format!(
        r#"{{revision="{}",version="{}"}}"#,
        version["revision"].as_str().unwrap(),
        version["version"].as_str().unwrap()
    );
    assert_eq!(value(&text, "books_ms_build_info", &labels), Some(1.0), "{text}");
}

#[tokio::test]
async fn unmatched_paths_share_one_series() {
    let app = spawn_app().await;
    let before = samples(&scrape(&app).await, "http_requests_total").len();
    let paths: Vec<String> = (0..200).map(|_| format!("/no-such-{}", uuid::Uuid::new_v4().simple())).collect();

    for path in &paths {
        assert_eq!(app.get(path).await.status(), 404);
    }
    let text = scrape(&app).await;

    // The first scrape's own series ({route="/metrics"}) is new too.
    let after = samples(&text, "http_requests_total").len();
    assert!(after <= before + 2, "{before} series before, {after} after:\n{text}");
    assert_eq!(value(&text, "http_requests_total", r#"{method="GET",route="unmatched",status="404"}"#), Some(200.0));
    assert!(paths.iter().all(|p| !text.contains(&p[1..])), "a raw path is a label:\n{text}");
}

#[tokio::test]
async fn unknown_methods_share_one_label() {
    let app = spawn_app().await;
    for method in ["BREW", "PROPFIND", "XYZZY"] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        assert_eq!(app.http.request(method, app.url("/health")).send().await.unwrap().status(), 405);
    }

    let text = scrape(&app).await;

    assert_eq!(value(&text, "http_requests_total", r#"{method="other",route="/health",status="405"}"#), Some(3.0));
    assert!(!text.contains("BREW") && !text.contains("XYZZY"), "{text}");
}

#[tokio::test]
async fn the_database_pool_is_measured() {
    let app = spawn_app().await;
    assert_eq!(app.get("/api/v1/books/_id/1").await.status(), 404);

    let text = scrape(&app).await;

    let checkouts = value(&text, "books_ms_db_connection_checkout_wait_seconds_count", "").unwrap_or(0.0);
    assert!(checkouts >= 1.0, "no checkout counted:\n{text}");
    assert!(value(&text, "books_ms_db_connections", "").unwrap_or(0.0) >= 1.0, "{text}");
    assert!(value(&text, "books_ms_db_connections_max", "").unwrap_or(0.0) >= 1.0, "{text}");
    assert!(value(&text, "books_ms_db_connections_checked_out", "").is_some(), "{text}");
}

#[tokio::test]
async fn database_failures_are_counted_by_kind() {
    let db_uri = Some(format!("mongodb://127.0.0.1:{}", free_port()));
    let extra_env = vec![("DB_TIMEOUT_MS", "500".to_owned())];
    let app = spawn_app_with(AppOptions { db_uri, extra_env, ..Default::default() }).await;
    assert_eq!(app.get("/ready").await.status(), 503);
    assert_eq!(app.get("/api/v1/books/_id/1").await.status(), 503);

    let text = scrape(&app).await;

    assert_eq!(value(&text, "books_ms_db_errors_total", r#"{kind="unavailable"}"#), Some(2.0), "{text}");
}

#[tokio::test]
async fn the_openapi_document_describes_metrics_as_prometheus_text() {
    let app = spawn_app().await;

    let doc: Value = app.get("/api/v1/openapi.json").await.json().await.unwrap();

    let ok = &doc["paths"]["/metrics"]["get"]["responses"]["200"];
    assert!(ok["content"]["text/plain; version=0.0.4"].is_object(), "{ok}");
}
