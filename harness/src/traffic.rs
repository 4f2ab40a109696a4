//! The live release's request and error rates, for `harness details`:
//! what its `/metrics` (the Prometheus text format) says twice,
//! [`WINDOW`] apart, read through the proxy users reach.
//!
//! Behind the swarm's proxy each scrape reaches one task of several, so a
//! round scrapes a few times and keeps each instance it reached, told
//! apart by its `process_start_time_seconds`; a rate is the sum over the
//! instances reached in both rounds. The scrapes themselves (route
//! `/metrics`) are not counted.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;

/// Between the two rounds.
pub const WINDOW: Duration = Duration::from_secs(2);
/// Any one scrape, connect included.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(3);

/// What the rates say, or why there are none.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Traffic {
    /// Requests answered per second (every route but `/metrics`).
    pub requests_per_sec: f64,
    /// Of those, answered with a 5xx status.
    pub errors_per_sec: f64,
    /// Over how long, in seconds.
    pub window_secs: f64,
    /// The app's instances reached in both rounds (tasks, on the swarm).
    pub instances: usize,
}

/// One instance's counters at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Counts {
    at: Instant,
    requests: f64,
    errors: f64,
}

/// The counters of `text` (a `/metrics` answer), keyed by the instance's
/// start time (0 when it does not say).
fn counts(text: &str, at: Instant) -> anyhow::Result<(u64, Counts)> {
    use prometheus_parse::Value;
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape =
        prometheus_parse::Scrape::parse(lines).map_err(|e| anyhow::anyhow!("not the Prometheus text format: {e}"))?;
    let (mut requests, mut errors, mut started) = (0.0, 0.0, None);
    for sample in &scrape.samples {
        match (sample.metric.as_str(), &sample.value) {
            ("http_requests_total", Value::Counter(n) | Value::Untyped(n)) => {
                if sample.labels.get("route") == Some("/metrics") {
                    continue;
                }
                requests += n;
                if sample.labels.get("status").is_some_and(|s| s.starts_with('5')) {
                    errors += n;
                }
            }
            ("process_start_time_seconds", Value::Gauge(n) | Value::Untyped(n)) => started = Some(*n),
            _ => {}
        }
    }
    if !scrape.samples.iter().any(|s| s.metric == "http_requests_total") {
        anyhow::bail!("no http_requests_total in it");
    }
    // Whole hundredths of a second: the precision Linux gives a start time.
    let key = started.map_or(0, |s| (s * 100.0).round() as u64);
    Ok((key, Counts { at, requests, errors }))
}

/// One round: `scrapes` scrapes of `url`/metrics, the last counts of each
/// instance reached.
async fn round(http: &reqwest::Client, url: &str, scrapes: usize) -> anyhow::Result<BTreeMap<u64, Counts>> {
    use anyhow::Context;
    let url = format!("{url}/metrics");
    let mut seen = BTreeMap::new();
    for _ in 0..scrapes.max(1) {
        let response = http.get(&url).send().await.with_context(|| format!("GET {url}"))?;
        let status = response.status();
        if !status.is_success() {
            anyhow::bail!("GET {url} answered {status}");
        }
        let text = response.text().await.with_context(|| format!("GET {url}: reading the body"))?;
        let (key, counts) = counts(&text, Instant::now()).with_context(|| format!("GET {url}"))?;
        seen.insert(key, counts);
    }
    Ok(seen)
}

/// The rates between two rounds, over the instances both reached.
fn rates(before: &BTreeMap<u64, Counts>, after: &BTreeMap<u64, Counts>) -> Option<Traffic> {
    let (mut requests, mut errors, mut window, mut instances) = (0.0, 0.0, 0.0_f64, 0);
    for (key, then) in before {
        let Some(now) = after.get(key) else { continue };
        let secs = now.at.duration_since(then.at).as_secs_f64();
        if secs <= 0.0 {
            continue;
        }
        // A counter only grows within one process.
        requests += (now.requests - then.requests).max(0.0) / secs;
        errors += (now.errors - then.errors).max(0.0) / secs;
        window = window.max(secs);
        instances += 1;
    }
    (instances > 0).then_some(Traffic {
        requests_per_sec: requests,
        errors_per_sec: errors,
        window_secs: window,
        instances,
    })
}

/// The live release's rates at `url` (the proxy users reach), from
/// `scrapes` scrapes a round (about twice the instances behind it).
pub async fn sample(url: &str, scrapes: usize) -> anyhow::Result<Traffic> {
    let http = crate::http::client(SCRAPE_TIMEOUT, SCRAPE_TIMEOUT)?;
    let before = round(&http, url, scrapes).await?;
    tokio::time::sleep(WINDOW).await;
    let after = round(&http, url, scrapes).await?;
    rates(&before, &after).ok_or_else(|| {
        anyhow::anyhow!("the two rounds of scrapes of {url}/metrics reached no instance twice (a deploy under way?)")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(started: f64, ok: u64, failed: u64, scrapes: u64) -> String {
        format!(
            "# HELP http_requests_total HTTP requests answered\n\
             # TYPE http_requests_total counter\n\
             http_requests_total{{method=\"GET\",route=\"/api/v1/books\",status=\"200\"}} {ok}\n\
             http_requests_total{{method=\"PUT\",route=\"/api/v1/books\",status=\"503\"}} {failed}\n\
             http_requests_total{{method=\"GET\",route=\"/metrics\",status=\"200\"}} {scrapes}\n\
             # HELP process_start_time_seconds Start time\n\
             # TYPE process_start_time_seconds gauge\n\
             process_start_time_seconds {started}\n"
        )
    }

    #[test]
    fn requests_and_5xx_are_counted_and_the_scrapes_are_not() {
        let (key, counts) = counts(&text(1765000000.25, 40, 2, 9), Instant::now()).unwrap();
        assert_eq!(key, 176500000025);
        assert_eq!((counts.requests, counts.errors), (42.0, 2.0));
    }

    #[test]
    fn rates_sum_the_instances_reached_in_both_rounds() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(2);
        let at = |text: String, when| counts(&text, when).unwrap();
        let before: BTreeMap<_, _> =
            [at(text(100.0, 10, 0, 1), t0), at(text(200.0, 20, 1, 1), t0), at(text(300.0, 5, 0, 1), t0)].into();
        // Instance 300 was not reached again; 400 is new.
        let after: BTreeMap<_, _> =
            [at(text(100.0, 30, 0, 5), t1), at(text(200.0, 24, 3, 5), t1), at(text(400.0, 1, 0, 1), t1)].into();
        let traffic = rates(&before, &after).unwrap();
        assert_eq!(traffic.instances, 2);
        assert_eq!(traffic.requests_per_sec, (20.0 + 6.0) / 2.0);
        assert_eq!(traffic.errors_per_sec, 1.0);
        assert_eq!(traffic.window_secs, 2.0);
    }

    #[test]
    fn no_instance_reached_twice_gives_no_rate() {
        let t0 = Instant::now();
        let before: BTreeMap<_, _> = [counts(&text(1.0, 1, 0, 1), t0).unwrap()].into();
        let after: BTreeMap<_, _> = [counts(&text(2.0, 1, 0, 1), t0 + WINDOW).unwrap()].into();
        assert_eq!(rates(&before, &after), None);
    }

    #[test]
    fn a_page_that_is_not_metrics_is_refused_naming_what_is_missing() {
        let error = counts("<html>hello</html>\n", Instant::now()).unwrap_err();
        assert!(format!("{error:#}").contains("http_requests_total"), "{error:#}");
    }
}
