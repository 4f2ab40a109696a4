//! How the swarm target carries out its [`Action`]s through the manager's
//! API (the executor calls [`act`]; only it does).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bollard::models::{NetworkCreateRequest, ServiceSpec};
use bollard::query_parameters::UpdateServiceOptionsBuilder;

use super::observe::{self, Progress};
use super::plan::Action;
use crate::deploy::names::{PROJECT_LABEL, SPEC_LABEL};
use crate::deploy::target::On;
use crate::engine::{tolerate, EngineError};
use crate::progress::Spinner;

pub async fn act(on: &On<'_>, project: &str, action: &Action) -> anyhow::Result<()> {
    let (manager, docker, swarm) = (on.engine, &on.engine.docker, Manager(on));
    match action {
        Action::CreateOverlay { name } => {
            let labels = HashMap::from([(PROJECT_LABEL.to_owned(), project.to_owned())]);
            let request = NetworkCreateRequest {
                name: name.clone(),
                driver: Some("overlay".to_owned()),
                attachable: Some(true),
                labels: Some(labels),
                ..Default::default()
            };
            manager.call(format!("to create the overlay network {name}"), docker.create_network(request)).await?;
            Ok(())
        }
        Action::CreateConfig { name, spec } => {
            match manager.call(format!("to create the config {name}"), docker.create_config((**spec).clone())).await {
                // Named by its content: one of that name holds this text.
                Err(e) if e.status() == Some(409) => Ok(()),
                other => Ok(other.map(drop)?),
            }
        }
        Action::CreateService { name, spec, .. } => {
            let spec = swarm.with_config_ids((**spec).clone()).await?;
            let create = docker.create_service(spec, on.credentials.clone());
            manager.call(format!("to create the service {name}"), create).await?;
            Ok(())
        }
        Action::UpdateService { name, spec, .. } => swarm.update(name, spec).await,
        Action::AwaitService { name, spec, timeout_secs, .. } => {
            let _spinner = Spinner(on.reporter.spinner(format!("waiting for {name} to converge")));
            swarm.await_service(name, Some(spec), *timeout_secs).await
        }
        Action::RollbackService { name, from_spec, timeout_secs, .. } => {
            swarm.roll_back(name, from_spec).await?;
            swarm.await_service(name, None, *timeout_secs).await
        }
        Action::RemoveService { name } => {
            Ok(tolerate(manager.call(format!("to remove the service {name}"), docker.delete_service(name)).await, 404)?)
        }
        Action::RemoveConfig { name } => {
            match manager.call(format!("to remove the config {name}"), docker.delete_config(name)).await {
                // Gone already, or a service still uses it: kept.
                Err(e) if matches!(e.status(), Some(400 | 404 | 409)) => Ok(()),
                other => Ok(other?),
            }
        }
    }
}

/// The manager's engine, reached through what the action is carried out
/// with.
struct Manager<'a>(&'a On<'a>);

impl Manager<'_> {
    /// The service's spec replaced by `spec`.
    async fn update(&self, name: &str, spec: &ServiceSpec) -> anyhow::Result<()> {
        let spec = self.with_config_ids(spec.clone()).await?;
        let answer = self
            .once_more_if_out_of_sequence(name, async || {
                let version = self.service_version(name).await?;
                let options = UpdateServiceOptionsBuilder::default().version(version).build();
                let update =
                    self.0.engine.docker.update_service(name, spec.clone(), options, self.0.credentials.clone());
                Ok(self.0.engine.call(format!("to update the service {name}"), update).await?)
            })
            .await?;
        for warning in answer.warnings.unwrap_or_default() {
            self.0.reporter.warn(format!("{name}: {warning}"));
        }
        Ok(())
    }

    /// Docker's rollback of the service, when its spec is still the one
    /// labelled `from_spec`.
    async fn roll_back(&self, name: &str, from_spec: &str) -> anyhow::Result<()> {
        let rolled = self
            .once_more_if_out_of_sequence(name, async || {
                let Some(service) = observe::inspect_service(self.0.engine, name).await? else {
                    return Ok(false);
                };
                let current = service.spec.clone().unwrap_or_default();
                if current.labels.as_ref().and_then(|l| l.get(SPEC_LABEL)).map(String::as_str) != Some(from_spec) {
                    return Ok(false);
                }
                let version = version_of(name, service.version.and_then(|v| v.index))?;
                let options = UpdateServiceOptionsBuilder::default().version(version).rollback("previous").build();
                let rollback = self.0.engine.docker.update_service(name, current, options, self.0.credentials.clone());
                self.0.engine.call(format!("to roll the service {name} back"), rollback).await?;
                Ok(true)
            })
            .await?;
        if !rolled {
            self.0.reporter.line(format!(
                "prod: {name} does not run this deploy's spec (its update was not applied, or Swarm rolled it back \
                 already): nothing of it to roll back"
            ));
        }
        Ok(())
    }

    /// Runs `call` (which reads a service's version, then updates it), and
    /// once more if the engine refused the update as out of sequence:
    /// Swarm's updater changed the version between the read and the update.
    async fn once_more_if_out_of_sequence<T>(
        &self,
        name: &str,
        call: impl AsyncFn() -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        match call().await {
            Err(e) if out_of_sequence(&e) => {
                self.0.reporter.line(format!("prod: {name} changed under the update (out of sequence): once more"));
                call().await
            }
            other => other,
        }
    }

    /// The service's version, which an update must name.
    async fn service_version(&self, name: &str) -> anyhow::Result<i32> {
        let service = observe::inspect_service(self.0.engine, name)
            .await?
            .with_context(|| format!("there is no service {name} to update"))?;
        version_of(name, service.version.and_then(|v| v.index))
    }

    /// The spec with the id of each config it names (the plan knows names
    /// only; the engine wants both).
    async fn with_config_ids(&self, mut spec: ServiceSpec) -> anyhow::Result<ServiceSpec> {
        let configs = spec.task_template.as_mut().and_then(|t| t.container_spec.as_mut()?.configs.as_mut());
        for config in configs.into_iter().flatten() {
            if let (None, Some(name)) = (&config.config_id, &config.config_name) {
                let inspect = self.0.engine.docker.inspect_config(name);
                config.config_id = self.0.engine.call(format!("for the config {name}"), inspect).await?.id;
            }
        }
        Ok(spec)
    }

    /// Until the service converges ([`observe::progress`]), within
    /// `timeout_secs`; a rollback by Swarm or a paused update fails. A
    /// failed read of the swarm (a manager busy electing, a dropped
    /// connection) is retried until the deadline, and quoted if it lasts.
    async fn await_service(&self, name: &str, wanted: Option<&str>, timeout_secs: u64) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(timeout_secs);
        let within = || format!("{name} did not converge within {timeout_secs} s (swarm.converge_timeout_secs)");
        loop {
            let progress = match observe::progress(self.0.engine, name, wanted).await {
                Ok(progress) => progress,
                Err(e) if Instant::now() < deadline => {
                    self.0.reporter.line(format!("prod: reading {name}'s progress failed, retrying: {e:#}"));
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                Err(e) => return Err(e.context(format!("{}: the swarm could not be read", within()))),
            };
            match progress {
                Progress::Converged => return Ok(()),
                Progress::RolledBack(message) => bail!(
                    "Swarm rolled the update of {name} back ({message}): its previous spec serves; `harness status` \
                     shows its tasks"
                ),
                Progress::Stuck(why) => bail!("{why}; `harness status` shows its tasks"),
                Progress::Waiting(what) if Instant::now() >= deadline => bail!("{}: {what}", within()),
                Progress::Waiting(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
    }
}

fn version_of(name: &str, index: Option<u64>) -> anyhow::Result<i32> {
    let index = index.unwrap_or_default();
    i32::try_from(index)
        .with_context(|| format!("the version {index} of the service {name} is past what the API takes"))
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(status_code: u16, message: &str) -> anyhow::Error {
        let source = bollard::errors::Error::DockerResponseServerError { status_code, message: message.to_owned() };
        anyhow::Error::from(EngineError::Api { engine: "m".into(), what: "to update the service a".into(), source })
    }

    #[test]
    fn an_update_refused_as_out_of_sequence_is_told_from_other_refusals() {
        assert!(out_of_sequence(&refused(500, "rpc error: code = Unknown desc = update out of sequence")));
        assert!(out_of_sequence(&refused(500, "update out of sequence").context("rolling back")));
        assert!(!out_of_sequence(&refused(500, "no such image")));
        assert!(!out_of_sequence(&anyhow::anyhow!("update out of sequence, but not from the engine")));
    }
}
