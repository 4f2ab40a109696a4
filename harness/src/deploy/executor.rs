//! The one place a deploy touches prod's engine: runs [`Action`]s in order,
//! reports each, stops at the first failure and then runs the plan's
//! recovery, so that a failed deploy leaves prod serving what it served
//! before.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use bollard::auth::DockerCredentials;
use bollard::models::{HealthStatusEnum, NetworkCreateRequest, VolumeCreateRequest};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
    RenameContainerOptionsBuilder, StopContainerOptionsBuilder,
};
use futures_util::StreamExt;

use super::actions::{Action, DeployPlan, LockHeld};
use super::names::{LOCK_HOLDER_LABEL, PROJECT_LABEL};
use crate::engine::{Engine, EngineError};
use crate::progress::{Reporter, Spinner};

/// One pull on prod: the image comes from the lab's registry, on the same
/// host's network.
const PULL_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a stopped container gets to finish its requests in flight (the
/// service takes up to 10 s on SIGTERM).
const STOP_GRACE_SECS: i32 = 15;
/// `GET /version` on prod.
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);
/// Lines of the failed container's log quoted in the error.
const LOG_LINES: usize = 20;

pub struct Executor<'a> {
    prod: &'a Engine,
    credentials: Option<DockerCredentials>,
    reporter: &'a Reporter,
}

impl<'a> Executor<'a> {
    pub fn new(prod: &'a Engine, credentials: Option<DockerCredentials>, reporter: &'a Reporter) -> Self {
        Executor { prod, credentials, reporter }
    }

    /// Runs `actions` in order, stopping at the first failure, which names
    /// prod and the action.
    pub async fn run_all(&self, actions: &[Action]) -> anyhow::Result<()> {
        for action in actions {
            self.run(action).await.map_err(|e| self.failed(action, e))?;
        }
        Ok(())
    }

    /// Runs the plan's actions; when one fails at or after
    /// `plan.recover_from`, runs the recovery and says how it went.
    pub async fn apply(&self, plan: &DeployPlan) -> anyhow::Result<()> {
        let mut created = false;
        for (i, action) in plan.actions.iter().enumerate() {
            let Err(failure) = self.run(action).await else {
                created |= matches!(action, Action::Create { name, .. } if Some(name.as_str()) == plan.new_container());
                continue;
            };
            if i < plan.recover_from {
                return Err(self.failed(action, failure));
            }
            let logs = match plan.new_container() {
                Some(name) if created => format!("\nits last log lines:\n{}", self.last_logs(name).await),
                _ => String::new(),
            };
            let recovery = match self.run_all(&plan.recovery).await {
                Ok(()) => match plan.recovery.iter().find_map(restored) {
                    Some(name) => format!("; {name} is serving again, healthy"),
                    None => "; nothing served before, and nothing is left of this deploy".to_owned(),
                },
                Err(e) => format!("; putting prod back failed too: {e:#}"),
            };
            bail!(
                "prod ({}): deploying {} failed at `{action}`: {failure:#}{recovery}{logs}",
                self.host(),
                plan.release.image
            );
        }
        Ok(())
    }

    fn host(&self) -> &str {
        self.prod.name.trim_start_matches("prod (").trim_end_matches(')')
    }

    fn failed(&self, action: &Action, error: anyhow::Error) -> anyhow::Error {
        match error.downcast::<LockHeld>() {
            Ok(held) => anyhow::Error::new(held),
            Err(error) => error.context(format!("{}: {action}", self.prod.name)),
        }
    }

    /// One action against prod.
    async fn run(&self, action: &Action) -> anyhow::Result<()> {
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
            Action::Rename { from, to } => {
                let options = RenameContainerOptionsBuilder::default().name(to).build();
                prod.call(format!("to rename {from} to {to}"), docker.rename_container(from, options)).await?;
                Ok(())
            }
            Action::WaitHealthy { name, timeout_secs, setting, no_healthcheck_ok } => {
                let spinner = Spinner(self.reporter.spinner(format!("waiting for {name} to turn healthy")));
                let result = self.wait_healthy(name, *timeout_secs, setting, *no_healthcheck_ok).await;
                drop(spinner);
                result
            }
            Action::CheckVersion { url, revision } => check_version(url, revision).await,
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

/// The container a recovery's last wait puts back in service.
fn restored(action: &Action) -> Option<&str> {
    match action {
        Action::WaitHealthy { name, .. } => Some(name),
        _ => None,
    }
}

/// An engine answer that means "already so" (304: already started or
/// stopped; 404: already gone) is a success.
fn tolerate(result: Result<(), EngineError>, status: u16) -> Result<(), EngineError> {
    match result {
        Err(e) if e.status() == Some(status) => Ok(()),
        other => other,
    }
}

/// `GET url` (prod's `/version`) reports `revision`.
async fn check_version(url: &str, revision: &str) -> anyhow::Result<()> {
    let http = crate::http::client(HTTP_TIMEOUT, HTTP_TIMEOUT)?;
    let version: serde_json::Value = http
        .get(url)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .with_context(|| format!("GET {url}"))?
        .json()
        .await
        .with_context(|| format!("GET {url}: not JSON"))?;
    match version["revision"].as_str() {
        Some(reported) if reported == revision => Ok(()),
        Some(other) => bail!("{url} reports revision {other}, expected {revision}"),
        None => bail!("{url} reports no revision: {version}"),
    }
}
