//! The one place a deploy touches prod's engine: runs [`Action`]s in order,
//! reports each, stops at the first failure and then runs the plan's
//! recovery, so that a failed deploy leaves prod serving what it served
//! before.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use bollard::auth::DockerCredentials;
use bollard::models::{HealthStatusEnum, NetworkCreateRequest, ServiceSpec, VolumeCreateRequest};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
    StopContainerOptionsBuilder, UpdateServiceOptionsBuilder,
};
use futures_util::StreamExt;

use super::actions::{Action, DeployPlan, LockHeld, Step};
use super::names::{Names, LOCK_HOLDER_LABEL, PROJECT_LABEL, SPEC_LABEL};
use super::proxy::{self, Colour, Routing, PREVIEW_HEADER};
use super::swarm::{self, observe::Progress};
use crate::config::Config;
use crate::engine::{Engine, EngineError};
use crate::progress::{Reporter, Spinner};
use crate::runner::{millis, Outcome, StepRecord};

/// One pull on prod: the image comes from the lab's registry, on the same
/// host's network.
const PULL_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a stopped container gets to finish its requests in flight (the
/// service takes up to 10 s on SIGTERM).
const STOP_GRACE_SECS: i32 = 15;
/// `GET /version` on prod.
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a change of routing may take to show (the proxy resolves a
/// colour it has just been told of within a second).
const ROUTE_SETTLE: Duration = Duration::from_secs(10);
/// Lines of the failed container's log quoted in the error.
const LOG_LINES: usize = 20;
/// How often a drain asks the proxy whether the old colour still holds a
/// request.
const DRAIN_POLL: Duration = Duration::from_millis(200);

pub struct Executor<'a> {
    prod: &'a Engine,
    credentials: Option<DockerCredentials>,
    reporter: &'a Reporter,
    names: Names,
    records: std::sync::Mutex<Vec<StepRecord>>,
    /// Ctrl-C and SIGTERM, so that an interrupted deploy is undone.
    signals: Option<tokio::sync::Mutex<Signals>>,
}

struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl<'a> Executor<'a> {
    pub fn new(
        prod: &'a Engine,
        config: &'a Config,
        credentials: Option<DockerCredentials>,
        reporter: &'a Reporter,
    ) -> Self {
        use tokio::signal::unix::{signal, SignalKind};
        let signals = match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
            (Ok(interrupt), Ok(terminate)) => Some(tokio::sync::Mutex::new(Signals { interrupt, terminate })),
            _ => None,
        };
        Executor {
            prod,
            credentials,
            reporter,
            names: Names::new(&config.prod.project),
            records: std::sync::Mutex::default(),
            signals,
        }
    }

    /// Resolves when Ctrl-C or SIGTERM arrives (never when they cannot be
    /// caught), naming it.
    async fn interrupted(&self) -> &'static str {
        let Some(signals) = &self.signals else { return std::future::pending().await };
        let mut signals = signals.lock().await;
        let Signals { interrupt, terminate } = &mut *signals;
        tokio::select! {
            _ = interrupt.recv() => "Ctrl-C (SIGINT)",
            _ = terminate.recv() => "SIGTERM",
        }
    }

    /// Runs `actions` in order, stopping at the first failure, which names
    /// prod and the action.
    pub async fn run_all(&self, actions: &[Action]) -> anyhow::Result<()> {
        for action in actions {
            self.run(action).await.map_err(|e| self.failed(action, e))?;
        }
        Ok(())
    }

    /// Runs the plan's steps; when one fails, runs the undo of that step
    /// and of every earlier one, latest first, and says how it went.
    pub async fn apply(&self, plan: &DeployPlan) -> anyhow::Result<()> {
        let new = plan.target.map(|colour| self.names.colour(colour));
        self.apply_steps(&plan.release.image, &plan.steps, new).await
    }

    /// Runs `steps` (a deploy of `image`) as [`Executor::apply`] does;
    /// `new`: the container whose last log lines a failure quotes, once
    /// created.
    pub async fn apply_steps(&self, image: &str, steps: &[Step], new: Option<String>) -> anyhow::Result<()> {
        let mut created = false;
        for (i, step) in steps.iter().enumerate() {
            let failure = tokio::select! {
                result = self.run(&step.action) => match result {
                    Ok(()) => {
                        created |= matches!(&step.action, Action::Create { name, .. } if Some(name) == new.as_ref());
                        continue;
                    }
                    Err(failure) => failure,
                },
                signal = self.interrupted() => anyhow!("interrupted by {signal}"),
            };
            let logs = match &new {
                Some(name) if created => format!("\nthe last log lines of {name}:\n{}", self.last_logs(name).await),
                _ => String::new(),
            };
            let mut undo_failures = Vec::new();
            for action in steps[..=i].iter().rev().flat_map(|s| &s.undo) {
                if let Err(e) = self.run(action).await {
                    undo_failures.push(format!("`{action}`: {e:#}"));
                }
            }
            let rolled_back: Vec<String> = steps[..=i]
                .iter()
                .flat_map(|s| &s.undo)
                .filter_map(|a| match a {
                    Action::RollbackService { name, .. } => Some(name.clone()),
                    _ => None,
                })
                .collect();
            let recovery = match (undo_failures.is_empty(), steps[..=i].iter().any(|s| !s.undo.is_empty())) {
                (true, true) if !rolled_back.is_empty() => {
                    format!("; rolled back ({}): prod serves what it served before", rolled_back.join(", "))
                }
                (true, true) => "; undone: prod serves what it served before".to_owned(),
                (true, false) => "; nothing needed undoing: prod serves what it served before".to_owned(),
                (false, _) => {
                    format!("; undoing it failed too ({}): check prod with `harness status`", undo_failures.join("; "))
                }
            };
            bail!("{}: deploying {image} failed at `{}`: {failure:#}{recovery}{logs}", self.prod.name, step.action);
        }
        Ok(())
    }

    fn failed(&self, action: &Action, error: anyhow::Error) -> anyhow::Error {
        match error.downcast::<LockHeld>() {
            Ok(held) => anyhow::Error::new(held),
            Err(error) => error.context(format!("{}: {action}", self.prod.name)),
        }
    }

    /// One action against prod, recorded.
    async fn run(&self, action: &Action) -> anyhow::Result<()> {
        let started = Instant::now();
        let result = self.act(action).await;
        let (outcome, detail) = match &result {
            Ok(()) => (Outcome::Passed, String::new()),
            Err(e) => (Outcome::Failed, crate::runner::first_line(&format!("{e:#}"))),
        };
        let record = StepRecord { name: action.to_string(), outcome, duration_ms: millis(started.elapsed()), detail };
        self.records.lock().unwrap_or_else(|p| p.into_inner()).push(record);
        result
    }

    /// What ran so far, in order (undo actions included).
    pub fn records(&self) -> Vec<StepRecord> {
        self.records.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    async fn act(&self, action: &Action) -> anyhow::Result<()> {
        self.reporter.line(format!("prod: {action}"));
        let prod = self.prod;
        let docker = &prod.docker;
        match action {
            Action::Pull { image } => self.pull(image).await,
            Action::TakeLock { name, body, .. } => {
                let options = CreateContainerOptionsBuilder::default().name(name).build();
                match prod
                    .call(format!("to create {name}"), docker.create_container(Some(options), (**body).clone()))
                    .await
                {
                    Ok(_) => Ok(()),
                    Err(e) if e.status() == Some(409) => {
                        let holder = prod
                            .call("for the lock's holder", docker.inspect_container(name, None))
                            .await
                            .ok()
                            .and_then(|c| c.config?.labels?.get(LOCK_HOLDER_LABEL).cloned())
                            .unwrap_or_else(|| "unknown".to_owned());
                        Err(LockHeld { lock: name.clone(), holder }.into())
                    }
                    Err(e) => Err(e.into()),
                }
            }
            Action::ReleaseLock { name } | Action::Remove { name } => {
                let options = RemoveContainerOptionsBuilder::default().force(true).build();
                let removed = prod.call(format!("to remove {name}"), docker.remove_container(name, Some(options)));
                Ok(tolerate(removed.await, 404)?)
            }
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
            Action::Create { name, body, .. } => {
                let options = CreateContainerOptionsBuilder::default().name(name).build();
                prod.call(format!("to create {name}"), docker.create_container(Some(options), (**body).clone()))
                    .await?;
                Ok(())
            }
            Action::Start { name } => {
                Ok(tolerate(prod.call(format!("to start {name}"), docker.start_container(name, None)).await, 304)?)
            }
            Action::Stop { name } => {
                let options = StopContainerOptionsBuilder::default().t(STOP_GRACE_SECS).build();
                Ok(tolerate(
                    prod.call(format!("to stop {name}"), docker.stop_container(name, Some(options))).await,
                    304,
                )?)
            }
            Action::Route { proxy: name, routing, apply } => self.route(name, routing, *apply).await,
            Action::Hook { name, command, timeout_secs, env } => {
                let secrets: Vec<&str> =
                    self.credentials.iter().filter_map(|c| c.password.as_deref()).filter(|p| !p.is_empty()).collect();
                let failed = hook(name, command, *timeout_secs, env).await?;
                if let Some(failed) = failed {
                    if !failed.output.is_empty() {
                        let output = redact(&crate::runner::cut(&failed.output, HOOK_OUTPUT_CHARS), &secrets);
                        self.reporter.warn(format!("the {name} hook's output (not kept in the history):\n{output}"));
                    }
                    bail!("the {name} hook failed ({}); its output, if any, is above", failed.status);
                }
                Ok(())
            }
            Action::Drain { secs, proxy, colour } => self.drain(proxy, *colour, *secs).await,
            Action::Verify { url, ids, preview } => {
                let headers = preview_header(preview);
                let report = crate::verify::verify_with(url, ids, &headers, self.reporter).await?;
                self.reporter.line(format!("prod: {} checks passed", report.checks.len()));
                Ok(())
            }
            Action::WaitHealthy { name, timeout_secs, setting, no_healthcheck_ok } => {
                let spinner = Spinner(self.reporter.spinner(format!("waiting for {name} to turn healthy")));
                let result = self.wait_healthy(name, *timeout_secs, setting, *no_healthcheck_ok).await;
                drop(spinner);
                result
            }
            Action::CheckVersion { url, revision, preview } => check_version(url, revision, preview).await,
            Action::CreateOverlay { name } => {
                let labels = HashMap::from([(PROJECT_LABEL.to_owned(), self.names.project.clone())]);
                let request = NetworkCreateRequest {
                    name: name.clone(),
                    driver: Some("overlay".to_owned()),
                    attachable: Some(true),
                    labels: Some(labels),
                    ..Default::default()
                };
                prod.call(format!("to create the overlay network {name}"), docker.create_network(request)).await?;
                Ok(())
            }
            Action::CreateConfig { name, spec } => {
                let created = prod.call(format!("to create the config {name}"), docker.create_config((**spec).clone()));
                match created.await {
                    Ok(_) => Ok(()),
                    // Named by its content: one of that name holds this text.
                    Err(e) if e.status() == Some(409) => Ok(()),
                    Err(e) => Err(e.into()),
                }
            }
            Action::CreateService { name, spec, .. } => {
                let spec = self.with_config_ids((**spec).clone()).await?;
                prod.call(
                    format!("to create the service {name}"),
                    docker.create_service(spec, self.credentials.clone()),
                )
                .await?;
                Ok(())
            }
            Action::UpdateService { name, spec, .. } => {
                let spec = self.with_config_ids((**spec).clone()).await?;
                let answer = self
                    .once_more_if_out_of_sequence(name, async || {
                        let version = self.service_version(name).await?;
                        let options = UpdateServiceOptionsBuilder::default().version(version).build();
                        let update = docker.update_service(name, spec.clone(), options, self.credentials.clone());
                        Ok(prod.call(format!("to update the service {name}"), update).await?)
                    })
                    .await?;
                for warning in answer.warnings.unwrap_or_default() {
                    self.reporter.warn(format!("{name}: {warning}"));
                }
                Ok(())
            }
            Action::AwaitService { name, spec, timeout_secs, .. } => {
                let spinner = Spinner(self.reporter.spinner(format!("waiting for {name} to converge")));
                let result = self.await_service(name, Some(spec), *timeout_secs).await;
                drop(spinner);
                result
            }
            Action::RollbackService { name, from_spec, timeout_secs, .. } => {
                let rolled = self
                    .once_more_if_out_of_sequence(name, async || {
                        let Some(service) = swarm::observe::inspect_service(prod, name).await? else {
                            return Ok(false);
                        };
                        let current = service.spec.clone().unwrap_or_default();
                        if current.labels.as_ref().and_then(|l| l.get(SPEC_LABEL)) != Some(from_spec) {
                            return Ok(false);
                        }
                        let version = service.version.and_then(|v| v.index).unwrap_or_default();
                        let version = i32::try_from(version).with_context(|| {
                            format!("the version {version} of the service {name} is past what the API takes")
                        })?;
                        let options =
                            UpdateServiceOptionsBuilder::default().version(version).rollback("previous").build();
                        let rollback = docker.update_service(name, current, options, self.credentials.clone());
                        prod.call(format!("to roll the service {name} back"), rollback).await?;
                        Ok(true)
                    })
                    .await?;
                if !rolled {
                    self.reporter.line(format!(
                        "prod: {name} does not run this deploy's spec (its update was not applied, or Swarm rolled \
                         it back already): nothing of it to roll back"
                    ));
                }
                self.await_service(name, None, *timeout_secs).await
            }
            Action::RemoveService { name } => Ok(tolerate(
                prod.call(format!("to remove the service {name}"), docker.delete_service(name)).await,
                404,
            )?),
            Action::RemoveConfig { name } => {
                match prod.call(format!("to remove the config {name}"), docker.delete_config(name)).await {
                    Ok(()) => Ok(()),
                    // Gone already, or a service still uses it: kept.
                    Err(e) if matches!(e.status(), Some(400 | 404 | 409)) => Ok(()),
                    Err(e) => Err(e.into()),
                }
            }
        }
    }

    /// Runs `call` (which reads a service's version, then updates it), and
    /// once more if the engine refused the update as out of sequence: Swarm's
    /// updater changed the version between the read and the update.
    async fn once_more_if_out_of_sequence<T>(
        &self,
        name: &str,
        call: impl AsyncFn() -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        match call().await {
            Err(e) if out_of_sequence(&e) => {
                self.reporter.line(format!("prod: {name} changed under the update (out of sequence): once more"));
                call().await
            }
            other => other,
        }
    }

    /// The service's version, which an update must name.
    async fn service_version(&self, name: &str) -> anyhow::Result<i32> {
        let service = swarm::observe::inspect_service(self.prod, name)
            .await?
            .with_context(|| format!("there is no service {name} to update"))?;
        let index = service.version.and_then(|v| v.index).unwrap_or_default();
        i32::try_from(index)
            .with_context(|| format!("the version {index} of the service {name} is past what the API takes"))
    }

    /// The spec with the id of each config it names (the plan knows names
    /// only; the engine wants both).
    async fn with_config_ids(&self, mut spec: ServiceSpec) -> anyhow::Result<ServiceSpec> {
        let configs = spec.task_template.as_mut().and_then(|t| t.container_spec.as_mut()?.configs.as_mut());
        for config in configs.into_iter().flatten() {
            if let (None, Some(name)) = (&config.config_id, &config.config_name) {
                let found =
                    self.prod.call(format!("for the config {name}"), self.prod.docker.inspect_config(name)).await?;
                config.config_id = found.id;
            }
        }
        Ok(spec)
    }

    /// Until the service converges ([`swarm::observe::progress`]), within
    /// `timeout_secs`; a rollback by Swarm or a paused update fails. A
    /// failed read of the swarm (a manager busy electing, a dropped
    /// connection) is retried until the deadline, and quoted if it lasts.
    async fn await_service(&self, name: &str, wanted: Option<&str>, timeout_secs: u64) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(timeout_secs);
        loop {
            let progress = match swarm::observe::progress(self.prod, name, wanted).await {
                Ok(progress) => progress,
                Err(e) if Instant::now() < deadline => {
                    self.reporter.line(format!("prod: reading {name}'s progress failed, retrying: {e:#}"));
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                Err(e) => {
                    return Err(e.context(format!(
                        "{name} did not converge within {timeout_secs} s (swarm.converge_timeout_secs): the swarm \
                         could not be read"
                    )))
                }
            };
            match progress {
                Progress::Converged => return Ok(()),
                Progress::RolledBack(message) => bail!(
                    "Swarm rolled the update of {name} back ({message}): its previous spec serves; `harness status` \
                     shows its tasks"
                ),
                Progress::Stuck(why) => bail!("{why}; `harness status` shows its tasks"),
                Progress::Waiting(what) if Instant::now() >= deadline => {
                    bail!("{name} did not converge within {timeout_secs} s (swarm.converge_timeout_secs): {what}")
                }
                Progress::Waiting(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
    }

    /// Writes the proxy's configuration and preview map for `routing` into
    /// its container and, with `apply`, checks the file with HAProxy and
    /// gives the running proxy the same state through its runtime API (no
    /// reload: no connection is closed). A proxy that does not run takes
    /// the file when it starts.
    async fn route(&self, name: &str, routing: &Routing, apply: bool) -> anyhow::Result<()> {
        let config = proxy::render(routing, |colour| self.names.colour(colour));
        let files = [(proxy::CONFIG_FILE, config.as_str()), (proxy::MAP_FILE, &proxy::map(routing))];
        self.prod.write_files(name, proxy::CONFIG_DIR, &files).await?;
        if !apply {
            return Ok(());
        }
        let path = format!("{}/{}", proxy::CONFIG_DIR, proxy::CONFIG_FILE);
        let check = self.prod.exec(name, &["haproxy", "-c", "-q", "-f", &path]).await?;
        let Some((0, _)) = check else {
            match check {
                None => return Ok(()), // not running: the file is what it starts with
                Some((code, output)) => bail!("HAProxy refuses the configuration it was given (exit {code}): {output}"),
            }
        };
        let commands = proxy::commands(routing).join("; ");
        match self.prod.exec(name, &proxy::runtime_api(&commands)).await? {
            None => Ok(()),
            Some((0, output)) if output.trim().is_empty() => Ok(()),
            Some((code, output)) => {
                bail!("the runtime API of {name} answered `{commands}` with: {} (exit {code})", output.trim())
            }
        }
    }

    /// Until the proxy holds no request on `colour` in the users' backend
    /// (its current sessions and queue, from HAProxy's statistics), polled,
    /// at most `secs`. A proxy that cannot say (not running, an answer not
    /// understood) is given the whole `secs`.
    async fn drain(&self, proxy: &str, colour: Colour, secs: u64) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let command = proxy::runtime_api(proxy::STAT_COMMAND);
        loop {
            // Users already reach the new colour: a proxy that cannot say
            // costs the drain's whole time, never the deploy.
            let answer = match self.prod.exec(proxy, &command).await {
                Ok(answer) => answer,
                Err(e) => {
                    self.reporter.warn(format!("draining {colour}: cannot read {proxy}'s statistics: {e:#}"));
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

    /// Pulls an image on prod, bounded in time, with a bar per layer being
    /// downloaded (on a terminal).
    async fn pull(&self, image: &str) -> anyhow::Result<()> {
        let options = CreateImageOptionsBuilder::default().from_image(image).build();
        let mut stream = self.prod.docker.create_image(Some(options), None, self.credentials.clone());
        let mut layers: HashMap<String, indicatif::ProgressBar> = HashMap::new();
        let pulled = async {
            while let Some(item) = stream.next().await {
                let info = item.map_err(|e| anyhow!("{e}"))?;
                let (Some(id), Some(status)) = (info.id, info.status) else {
                    continue;
                };
                let detail = info.progress_detail.unwrap_or_default();
                match (status.as_str(), detail.current, detail.total) {
                    ("Downloading", Some(current), Some(total)) if total > 0 => {
                        let bar = layers
                            .entry(id.clone())
                            .or_insert_with(|| self.reporter.bytes(format!("layer {id}"), total as u64));
                        bar.set_position(current as u64);
                    }
                    ("Download complete" | "Pull complete" | "Already exists", _, _) => {
                        if let Some(bar) = layers.remove(&id) {
                            bar.finish_and_clear();
                        }
                    }
                    _ => {}
                }
            }
            anyhow::Ok(())
        };
        let result = tokio::time::timeout(PULL_TIMEOUT, pulled)
            .await
            .map_err(|_| anyhow!("no end to the pull within {} s", PULL_TIMEOUT.as_secs()));
        for bar in layers.into_values() {
            bar.finish_and_clear();
        }
        result?.with_context(|| format!("pulling {image}"))
    }

    /// Until Docker's healthcheck reports the container healthy, within
    /// `timeout_secs` (named `setting` in the error). A container whose
    /// image has no healthcheck passes once it runs when `no_healthcheck_ok`.
    async fn wait_healthy(
        &self,
        name: &str,
        timeout_secs: u64,
        setting: &str,
        no_healthcheck_ok: bool,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(timeout_secs);
        loop {
            let inspected =
                self.prod.call(format!("for the state of {name}"), self.prod.docker.inspect_container(name, None));
            let state = inspected.await?.state.unwrap_or_default();
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
                _ => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
    }

    async fn last_logs(&self, name: &str) -> String {
        let options = LogsOptionsBuilder::default().stdout(true).stderr(true).tail(&LOG_LINES.to_string()).build();
        let mut stream = self.prod.docker.logs(name, Some(options));
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
}

/// An engine answer that means "already so" (304: already started or
/// stopped; 404: already gone) is a success.
/// The engine refused an update because the service's version changed
/// since it was read.
fn out_of_sequence(error: &anyhow::Error) -> bool {
    error.chain().any(|e| {
        matches!(
            e.downcast_ref::<EngineError>(),
            Some(EngineError::Api { source: bollard::errors::Error::DockerResponseServerError { message, .. }, .. })
                if message.contains("update out of sequence")
        )
    })
}

fn tolerate(result: Result<(), EngineError>, status: u16) -> Result<(), EngineError> {
    match result {
        Err(e) if e.status() == Some(status) => Ok(()),
        other => other,
    }
}

/// The variables of the harness's own environment that a hook gets,
/// besides the release's (`BOOKS_MS_*`): none of the harness's settings
/// (`HARNESS_*`: the registry's password among them), nothing else the
/// harness was started with.
pub const HOOK_INHERITS: [&str; 9] = ["PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LC_ALL", "TZ", "TMPDIR"];

/// How much of a failed hook's output is shown.
const HOOK_OUTPUT_CHARS: usize = 2000;

/// Runs a hook with `sh -c`, bounded as [`crate::child::run`] bounds it
/// (its whole process group, what it started in the background too), in
/// the environment [`HOOK_INHERITS`] says plus `env`. None when it passed;
/// how it ended when it failed.
async fn hook(
    name: &str,
    command: &str,
    timeout_secs: u64,
    env: &[(String, String)],
) -> anyhow::Result<Option<crate::child::Ended>> {
    let mut child = tokio::process::Command::new("sh");
    child.arg("-c").arg(command).env_clear();
    for key in HOOK_INHERITS {
        if let Some(value) = std::env::var_os(key) {
            child.env(key, value);
        }
    }
    child.envs(env.iter().map(|(k, v)| (k, v)));
    let what = format!("the {name} hook");
    let ended =
        crate::child::run(&mut child, &what, crate::child::Output::Capture, (timeout_secs, "hooks.timeout_secs"))
            .await?;
    Ok((!ended.status.success()).then_some(ended))
}

/// `text` with every secret in it replaced by `***`.
fn redact(text: &str, secrets: &[&str]) -> String {
    secrets.iter().filter(|s| !s.is_empty()).fold(text.to_owned(), |text, secret| text.replace(secret, "***"))
}

fn preview_header(preview: &Option<String>) -> Vec<(String, String)> {
    preview.iter().map(|token| (PREVIEW_HEADER.to_owned(), token.clone())).collect()
}

/// `GET url` (prod's `/version`) reports `revision`, within
/// [`ROUTE_SETTLE`]: a colour the proxy was just told of answers once its
/// name resolves there.
async fn check_version(url: &str, revision: &str, preview: &Option<String>) -> anyhow::Result<()> {
    let mut request = crate::http::builder(HTTP_TIMEOUT, HTTP_TIMEOUT);
    if let Some(token) = preview {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(PREVIEW_HEADER, reqwest::header::HeaderValue::from_str(token)?);
        request = request.default_headers(headers);
    }
    let http = request.build()?;
    let deadline = Instant::now() + ROUTE_SETTLE;
    loop {
        let answer = async {
            let response = http.get(url).send().await.with_context(|| format!("GET {url}"))?;
            let status = response.status();
            let body = response.text().await.with_context(|| format!("GET {url}: reading the body"))?;
            if !status.is_success() {
                bail!("GET {url} answered {status}: {}", crate::runner::cut(body.trim(), 200));
            }
            let version: serde_json::Value =
                serde_json::from_str(&body).with_context(|| format!("GET {url}: not JSON"))?;
            match version["revision"].as_str() {
                Some(reported) if reported == revision => Ok(()),
                Some(other) => bail!("{url} reports revision {other}, expected {revision}"),
                None => bail!("{url} reports no revision: {version}"),
            }
        };
        match answer.await {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hook_sees_the_release_and_a_few_of_the_harness_variables_never_its_settings() {
        // The harness's process holds a setting (as a user gives the
        // registry's password); the hook prints its environment.
        std::env::set_var("HARNESS_REGISTRY__PASSWORD", "s3cr3t-of-the-test");
        let file = std::env::temp_dir().join(format!("harness-hook-env-{}", std::process::id()));
        let env = [("BOOKS_MS_REVISION".to_owned(), "r2".to_owned())];

        let failed = hook("post-deploy", &format!("env > {}", file.display()), 10, &env).await.unwrap();

        assert!(failed.is_none(), "the hook passed");
        let seen = std::fs::read_to_string(&file).unwrap();
        std::fs::remove_file(&file).unwrap();
        assert!(!seen.contains("s3cr3t-of-the-test"), "{seen}");
        assert!(seen.lines().any(|l| l == "BOOKS_MS_REVISION=r2"), "{seen}");
        for line in seen.lines() {
            let name = line.split('=').next().unwrap_or_default();
            let documented = HOOK_INHERITS.contains(&name) || name.starts_with("BOOKS_MS_");
            // sh sets these itself.
            let from_sh = matches!(name, "PWD" | "SHLVL" | "_" | "OLDPWD");
            assert!(documented || from_sh, "the hook saw {name}: {seen}");
        }
    }

    #[tokio::test]
    async fn a_failing_hooks_output_is_returned_for_the_person_and_redacted_of_the_registrys_password() {
        let failed = hook("pre-deploy", "echo 'using pa55word here' >&2; exit 3", 10, &[]).await.unwrap().unwrap();
        assert_eq!(failed.status.code(), Some(3));
        assert_eq!(redact(&failed.output, &["pa55word", ""]), "using *** here");
    }

    fn refused(status_code: u16, message: &str) -> anyhow::Error {
        let source = bollard::errors::Error::DockerResponseServerError { status_code, message: message.to_owned() };
        anyhow::Error::from(EngineError::Api { engine: "m".into(), what: "to update the service a".into(), source })
    }

    #[test]
    fn an_update_refused_as_out_of_sequence_is_told_from_other_refusals() {
        assert!(out_of_sequence(&refused(500, "rpc error: code = Unknown desc = update out of sequence")));
        assert!(out_of_sequence(&refused(500, "update out of sequence").context("rolling back")));
        assert!(!out_of_sequence(&refused(500, "no such image")));
        assert!(!out_of_sequence(&anyhow!("update out of sequence, but not from the engine")));
    }
}
