//! How the single-host target carries out its [`Action`]s on prod's engine
//! (the executor calls [`act`]; only it does).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bollard::models::{HealthStatusEnum, NetworkCreateRequest, VolumeCreateRequest};
use bollard::query_parameters::{LogsOptionsBuilder, StopContainerOptionsBuilder};
use futures_util::StreamExt;

use super::plan::Action;
use super::proxy::{self, Routing};
use super::HostNames;
use crate::deploy::names::{Colour, PROJECT_LABEL};
use crate::deploy::target::On;
use crate::engine::{tolerate, Engine};
use crate::progress::Spinner;

/// How long a stopped container gets to finish its requests in flight (the
/// service takes up to 10 s on SIGTERM).
const STOP_GRACE_SECS: i32 = 15;
/// How often readiness is asked, and how long one answer may take (above
/// books-ms's own deadline for asking its database, so that its 503 is
/// seen rather than a timeout).
const READY_POLL: Duration = Duration::from_millis(100);
const READY_REQUEST: Duration = Duration::from_secs(5);
/// How often Docker's view of a container's health is read (one call to
/// prod's engine, on a kept connection).
const HEALTHY_POLL: Duration = Duration::from_millis(100);
/// How often the harness runs the image's probe itself while Docker's has
/// not run yet ([`wait_healthy`]).
const PROBE_EVERY: Duration = Duration::from_millis(500);
/// Lines of the failed container's log quoted in the error.
const LOG_LINES: usize = 20;
/// How often a drain asks the proxy whether the old colour still holds a
/// request.
const DRAIN_POLL: Duration = Duration::from_millis(200);

pub async fn act(on: &On<'_>, names: &HostNames, backends: &proxy::Backends, action: &Action) -> anyhow::Result<()> {
    let prod = on.engine;
    let docker = &prod.docker;
    match action {
        Action::CreateNetwork { name } => {
            let labels = HashMap::from([(PROJECT_LABEL.to_owned(), name.clone())]);
            let request = NetworkCreateRequest { name: name.clone(), labels: Some(labels), ..Default::default() };
            prod.call(format!("to create the network {name}"), docker.create_network(request)).await?;
            Ok(())
        }
        Action::CreateVolume { name } => {
            let request = VolumeCreateRequest { name: Some(name.clone()), ..Default::default() };
            prod.call(format!("to create the volume {name}"), docker.create_volume(request)).await?;
            Ok(())
        }
        Action::RemoveNetwork { name } => {
            Ok(tolerate(prod.call(format!("to remove the network {name}"), docker.remove_network(name)).await, 404)?)
        }
        Action::RemoveVolume { name } => {
            let removed = docker.remove_volume(name, None::<bollard::query_parameters::RemoveVolumeOptions>);
            Ok(tolerate(prod.call(format!("to remove the volume {name}"), removed).await, 404)?)
        }
        Action::Create { name, body, .. } => on.create_container(name, body).await,
        Action::Start { name } => {
            Ok(tolerate(prod.call(format!("to start {name}"), docker.start_container(name, None)).await, 304)?)
        }
        Action::Stop { name } => {
            let options = StopContainerOptionsBuilder::default().t(STOP_GRACE_SECS).build();
            let stopped = prod.call(format!("to stop {name}"), docker.stop_container(name, Some(options)));
            Ok(tolerate(stopped.await, 304)?)
        }
        Action::Remove { name } => on.remove_container(name).await,
        Action::WaitHealthy { name, timeout_secs, setting, no_healthcheck_ok } => {
            let _spinner = Spinner(on.reporter.spinner(format!("waiting for {name} to turn healthy")));
            wait_healthy(prod, name, *timeout_secs, setting, *no_healthcheck_ok).await
        }
        Action::WaitReady { name, url, token, timeout_secs, setting } => {
            let _spinner = Spinner(on.reporter.spinner(format!("waiting for {name} to answer {url}")));
            wait_ready(url, (&backends.preview_header, token), *timeout_secs, setting).await
        }
        Action::Route { proxy: name, routing, apply } => route(prod, names, backends, name, routing, *apply).await,
        Action::Drain { secs, proxy, colour } => drain(on, proxy, *colour, *secs).await,
    }
}

/// Writes the proxy's configuration and preview map for `routing` into its
/// container and, with `apply`, checks the file with HAProxy and gives the
/// running proxy the same state through its runtime API (no reload: no
/// connection is closed). A proxy that does not run takes the file when it
/// starts.
async fn route(
    prod: &Engine,
    names: &HostNames,
    backends: &proxy::Backends,
    name: &str,
    routing: &Routing,
    apply: bool,
) -> anyhow::Result<()> {
    let config = proxy::render(routing, backends, |colour| names.colour(colour));
    let files = [(proxy::CONFIG_FILE, config.as_str()), (proxy::MAP_FILE, &proxy::map(routing))];
    prod.write_files(name, proxy::CONFIG_DIR, &files).await?;
    if !apply {
        return Ok(());
    }
    let path = format!("{}/{}", proxy::CONFIG_DIR, proxy::CONFIG_FILE);
    match prod.exec(name, &["haproxy", "-c", "-q", "-f", &path]).await? {
        Some((0, _)) => {}
        None => return Ok(()), // not running: the file is what it starts with
        Some((code, output)) => bail!("HAProxy refuses the configuration it was given (exit {code}): {output}"),
    }
    let commands = proxy::commands(routing).join("; ");
    match prod.exec(name, &proxy::runtime_api(&commands)).await? {
        None => Ok(()),
        Some((0, output)) if output.trim().is_empty() => Ok(()),
        Some((code, output)) => {
            bail!("the runtime API of {name} answered `{commands}` with: {} (exit {code})", output.trim())
        }
    }
}

/// Until the proxy holds no request on `colour` in the users' backend (its
/// current sessions and queue, from HAProxy's statistics), polled, at most
/// `secs`. A proxy that cannot say (not running, an answer not understood)
/// is given the whole `secs`.
async fn drain(on: &On<'_>, proxy: &str, colour: Colour, secs: u64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let command = proxy::runtime_api(proxy::STAT_COMMAND);
    loop {
        // Users already reach the new colour: a proxy that cannot say costs
        // the drain's whole time, never the deploy.
        let answer = match on.engine.exec(proxy, &command).await {
            Ok(answer) => answer,
            Err(e) => {
                on.reporter.warn(format!("draining {colour}: cannot read {proxy}'s statistics: {e:#}"));
                None
            }
        };
        let held = answer.and_then(|(code, output)| (code == 0).then(|| proxy::held(&output, colour)).flatten());
        let left = deadline.saturating_duration_since(Instant::now());
        if held == Some(0) || left.is_zero() {
            return Ok(());
        }
        // Unknown: the rest of the time at once.
        tokio::time::sleep(if held.is_some() { DRAIN_POLL.min(left) } else { left }).await;
    }
}

/// Until Docker's healthcheck reports the container healthy, within
/// `timeout_secs` (named `setting` in the error). A container whose image
/// has no healthcheck passes once it runs when `no_healthcheck_ok`.
/// Docker runs the first probe only one interval after the start (2 s for
/// books-ms; Docker 20.10 has no start interval): while it says
/// `starting`, the harness runs the same probe itself, in the container
/// (at most every [`PROBE_EVERY`]), and one that passes is what Docker's
/// first passing probe would say. One that fails proves nothing yet:
/// Docker's own probes, with its retries, then decide.
async fn wait_healthy(
    prod: &Engine,
    name: &str,
    timeout_secs: u64,
    setting: &str,
    no_healthcheck_ok: bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(timeout_secs);
    let mut probed: Option<Instant> = None;
    loop {
        let inspected = prod.inspect_container(name).await?.with_context(|| format!("there is no container {name}"))?;
        let probe = inspected.config.as_ref().and_then(|c| c.healthcheck.as_ref()).and_then(probe_command);
        let state = inspected.state.unwrap_or_default();
        if state.running == Some(false) {
            bail!("it stopped (exit code {})", state.exit_code.unwrap_or_default());
        }
        match state.health.and_then(|h| h.status) {
            Some(HealthStatusEnum::HEALTHY) => return Ok(()),
            Some(HealthStatusEnum::UNHEALTHY) => bail!("Docker's healthcheck reports it unhealthy"),
            None | Some(HealthStatusEnum::NONE | HealthStatusEnum::EMPTY)
                if no_healthcheck_ok && state.running == Some(true) =>
            {
                return Ok(())
            }
            _ if Instant::now() > deadline => bail!("not healthy within {timeout_secs} s ({setting})"),
            Some(HealthStatusEnum::STARTING) if probed.is_none_or(|at| at.elapsed() >= PROBE_EVERY) => {
                if let Some(probe) = probe {
                    probed = Some(Instant::now());
                    let probe: Vec<&str> = probe.iter().map(String::as_str).collect();
                    // An error running it (the engine, the exec's own
                    // bound) leaves the verdict to Docker's probes.
                    if let Ok(Some((0, _))) = prod.exec(name, &probe).await {
                        return Ok(());
                    }
                }
                tokio::time::sleep(HEALTHY_POLL).await;
            }
            _ => tokio::time::sleep(HEALTHY_POLL).await,
        }
    }
}

/// The command Docker's healthcheck runs in the container, as an exec's:
/// `CMD`'s arguments, `CMD-SHELL`'s through `/bin/sh -c`; None for `NONE`
/// or no test.
fn probe_command(healthcheck: &bollard::models::HealthConfig) -> Option<Vec<String>> {
    let test = healthcheck.test.as_deref()?;
    match test.split_first()? {
        (kind, args) if kind == "CMD" && !args.is_empty() => Some(args.to_vec()),
        (kind, [command]) if kind == "CMD-SHELL" => Some(vec!["/bin/sh".into(), "-c".into(), command.clone()]),
        _ => None,
    }
}

/// Until `GET url` with the preview header (its name and `token`) answers
/// 2xx, polled every [`READY_POLL`], within `timeout_secs` (named
/// `setting` in the error, with the last answer).
async fn wait_ready(url: &str, (header, token): (&str, &str), timeout_secs: u64, setting: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(timeout_secs);
    let mut headers = reqwest::header::HeaderMap::new();
    let value = reqwest::header::HeaderValue::from_str(token).context("the preview token is not a header value")?;
    let header = reqwest::header::HeaderName::from_bytes(header.as_bytes())
        .with_context(|| format!("prod.preview_header `{header}` is not a header name"))?;
    headers.insert(header, value);
    let http = crate::http::builder(READY_REQUEST, READY_REQUEST).default_headers(headers).build()?;
    loop {
        let last = match http.get(url).send().await {
            Ok(response) if response.status().is_success() => return Ok(()),
            Ok(response) => {
                let status = response.status();
                let body = response.text().await.unwrap_or_default();
                format!("it answered {status}: {}", crate::runner::cut(body.trim(), 200))
            }
            Err(e) => format!("no answer: {}", crate::http::error_chain(&e)),
        };
        if Instant::now() >= deadline {
            bail!("not healthy within {timeout_secs} s ({setting}): GET {url} with the preview header; last, {last}");
        }
        tokio::time::sleep(READY_POLL.min(deadline.saturating_duration_since(Instant::now()))).await;
    }
}

/// The last [`LOG_LINES`] of a container's log, indented; bounded in time.
pub async fn last_logs(prod: &Engine, name: &str) -> String {
    let options = LogsOptionsBuilder::default().stdout(true).stderr(true).tail(&LOG_LINES.to_string()).build();
    let mut stream = prod.docker.logs(name, Some(options));
    let mut out = String::new();
    let collect = async {
        while let Some(Ok(chunk)) = stream.next().await {
            out.push_str(&chunk.to_string());
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), collect).await;
    if out.trim().is_empty() {
        "(no output)".to_owned()
    } else {
        out.lines().map(|l| format!("  {l}")).collect::<Vec<_>>().join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::HealthConfig;

    fn probe(test: &[&str]) -> Option<Vec<String>> {
        probe_command(&HealthConfig { test: Some(test.iter().map(|s| s.to_string()).collect()), ..Default::default() })
    }

    #[test]
    fn the_probe_is_the_command_docker_runs() {
        assert_eq!(probe(&["CMD", "/books-ms", "healthcheck"]).unwrap(), ["/books-ms", "healthcheck"]);
        assert_eq!(
            probe(&["CMD-SHELL", "curl -f localhost || exit 1"]).unwrap(),
            ["/bin/sh", "-c", "curl -f localhost || exit 1"]
        );
        assert_eq!(probe(&["NONE"]), None);
        assert_eq!(probe(&["CMD"]), None);
        assert_eq!(probe(&[]), None);
        assert_eq!(probe_command(&HealthConfig::default()), None);
    }
}
