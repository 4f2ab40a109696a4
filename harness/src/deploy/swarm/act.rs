//! How the swarm target carries out its [`Action`]s through the manager's
//! API (the executor calls [`act`]; only it does).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bollard::models::{NetworkCreateRequest, ServiceSpec};
use bollard::query_parameters::{ListContainersOptionsBuilder, UpdateServiceOptionsBuilder};

use super::jobs;
use super::observe::{self, Progress};
use super::plan::Action;
use crate::config::Config;
use crate::deploy::names::{PROJECT_LABEL, SPEC_LABEL};
use crate::deploy::target::On;
use crate::engine::{tolerate, EngineError};
use crate::progress::Spinner;

pub async fn act(on: &On<'_>, config: &Config, action: &Action) -> anyhow::Result<()> {
    let project = config.project();
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
        Action::AwaitReady { name, besides, tasks, path, port, timeout_secs, setting, proxy } => {
            let _spinner = Spinner(on.reporter.spinner(format!("waiting for the tasks of {name} to answer {path}")));
            let probe = Probe { name, besides: besides.as_deref(), tasks: *tasks, path, port: *port, proxy };
            swarm.await_ready(&probe, *timeout_secs, setting).await
        }
        Action::RemoveService { name } => {
            Ok(tolerate(manager.call(format!("to remove the service {name}"), docker.delete_service(name)).await, 404)?)
        }
        Action::RemoveNetwork { name } => {
            // A removed service's tasks leave the network as their nodes
            // stop them: seconds.
            let remove = async || {
                tolerate(manager.call(format!("to remove the network {name}"), docker.remove_network(name)).await, 404)
            };
            until_released(&format!("the network {name}"), remove).await
        }
        Action::RemoveVolume { name } => {
            let remove = async || {
                let removed = docker.remove_volume(name, None::<bollard::query_parameters::RemoveVolumeOptions>);
                tolerate(manager.call(format!("to remove the volume {name}"), removed).await, 404)
            };
            until_released(&format!("the volume {name}"), remove).await
        }
        Action::RemoveVolumeOn { name, node } => remove_volume_on(on, config, name, node).await,
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

    /// Until every task of the probe's service answers its path with 2xx
    /// (see [`PROBE_SCRIPT`]), polled every 500 ms, within `timeout_secs`.
    /// A failed probe (the proxy's task restarting) is retried until the
    /// deadline.
    async fn await_ready(&self, probe: &Probe<'_>, timeout_secs: u64, setting: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(timeout_secs);
        loop {
            let last = match self.probe_once(probe).await {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(what)) => what,
                Err(e) => format!("the probe failed: {e:#}"),
            };
            if Instant::now() >= deadline {
                bail!(
                    "the tasks of {} did not all answer {} with 2xx within {timeout_secs} s ({setting}, \
                     healthcheck.path): {last}",
                    probe.name,
                    probe.path
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// One round of probes, from the proxy's task on the manager.
    async fn probe_once(&self, probe: &Probe<'_>) -> anyhow::Result<Result<(), String>> {
        let engine = self.0.engine;
        let filters = HashMap::from([
            ("label".to_owned(), vec![format!("com.docker.swarm.service.name={}", probe.proxy)]),
            ("status".to_owned(), vec!["running".to_owned()]),
        ]);
        let options = ListContainersOptionsBuilder::default().filters(&filters).build();
        let containers = engine
            .call(
                format!("for the tasks of {} on the manager", probe.proxy),
                engine.docker.list_containers(Some(options)),
            )
            .await?;
        let Some(container) = containers.into_iter().find_map(|c| c.id) else {
            return Ok(Err(format!("no task of {} runs on the manager to probe from", probe.proxy)));
        };
        let port = probe.port.to_string();
        let besides = probe.besides.unwrap_or_default();
        let command = ["sh", "-c", PROBE_SCRIPT, "probe", probe.name, &port, probe.path, besides];
        match engine.exec(&container, &command).await? {
            Some((0, output)) => Ok(readiness(&probed(&output), probe.tasks)),
            Some((code, output)) => Ok(Err(format!("the probe ended {code}: {}", output.trim()))),
            None => Ok(Err(format!("the task of {} on the manager stopped", probe.proxy))),
        }
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

/// How many of each task's last log lines a failure quotes.
const LOG_LINES: u64 = 10;

/// The last [`LOG_LINES`] lines of each task of `service` that runs or
/// should, read through the manager within 5 s, each marked with its
/// task's slot; `(no output)` when there are none.
pub async fn last_logs(manager: &crate::engine::Engine, service: &str) -> String {
    use futures_util::StreamExt;
    let Ok(tasks) = observe::tasks_of(manager, service).await else {
        return "(its tasks could not be read)".to_owned();
    };
    let options = bollard::query_parameters::LogsOptionsBuilder::default()
        .stdout(true)
        .stderr(true)
        .tail(&LOG_LINES.to_string())
        .build();
    let mut out = Vec::new();
    let collect = async {
        for task in tasks.iter().filter(|t| t.desired_state == Some(bollard::models::TaskState::RUNNING)) {
            let (Some(id), slot) = (task.id.as_deref(), task.slot.unwrap_or_default()) else { continue };
            let mut stream = manager.docker.task_logs(id, Some(options.clone()));
            while let Some(Ok(chunk)) = stream.next().await {
                out.extend(chunk.to_string().lines().map(|l| format!("  task {slot}: {l}")));
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), collect).await;
    if out.is_empty() {
        "  (no output)".to_owned()
    } else {
        out.join("\n")
    }
}

/// How long a removal waits for the tasks of removed services to let go
/// of a network or a volume (each node stops its tasks, within their stop
/// grace period of 15 s).
const RELEASE_TIMEOUT: Duration = Duration::from_secs(60);

/// `remove` until it is not refused as in use (403 or 409: a task still
/// holds it), every 500 ms, within [`RELEASE_TIMEOUT`].
async fn until_released(what: &str, remove: impl AsyncFn() -> Result<(), EngineError>) -> anyhow::Result<()> {
    let deadline = Instant::now() + RELEASE_TIMEOUT;
    loop {
        match remove().await {
            Err(e) if matches!(e.status(), Some(403 | 409)) && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => {
                return Err(anyhow::Error::from(e).context(format!(
                    "{what} is still in use {} s after its services were removed: `docker service ls` and `docker \
                     ps` on the manager show what holds it; `harness remove` again removes the rest",
                    RELEASE_TIMEOUT.as_secs()
                )))
            }
            Ok(()) => return Ok(()),
        }
    }
}

/// What [`Manager::await_ready`] probes: the tasks of `name` (those of
/// `besides` left out), `tasks` of them, on `port` and `path`, from a task
/// of the service `proxy`.
struct Probe<'a> {
    name: &'a str,
    besides: Option<&'a str>,
    tasks: u32,
    path: &'a str,
    port: u16,
    proxy: &'a str,
}

/// Run in the proxy's task (Debian's HAProxy with socat): each address the
/// swarm's DNS gives `tasks.$1` (running tasks; with an image healthcheck,
/// healthy ones), those of `tasks.$4` left out, probed with `GET $3` on port
/// `$2`; one line each, `ADDRESS STATUS-LINE` (`ADDRESS -` when nothing
/// answered). The arguments travel as arguments, never through the
/// shell's parser.
const PROBE_SCRIPT: &str = r#"addresses() { [ -n "$1" ] && getent ahostsv4 "tasks.$1" | cut -d' ' -f1 | sort -u; }
besides=" $(addresses "$4" | tr '\n' ' ') "
for ip in $(addresses "$1"); do
  case "$besides" in *" $ip "*) continue ;; esac
  line=$(printf 'GET %s HTTP/1.0\r\nHost: %s\r\nConnection: close\r\n\r\n' "$3" "$1" |
    timeout 4 socat -T 3 - "TCP:$ip:$2,connect-timeout=2" 2>/dev/null | head -n 1 | tr -d '\r')
  echo "$ip ${line:--}"
done"#;

/// Each address of the probe's output with its status (None: no answer).
fn probed(output: &str) -> Vec<(String, Option<u16>)> {
    output
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let address = words.next()?.to_owned();
            let status = match (words.next(), words.next()) {
                (Some(http), Some(code)) if http.starts_with("HTTP/") => code.parse().ok(),
                _ => None,
            };
            Some((address, status))
        })
        .collect()
}

/// Ready: `tasks` tasks answered, each 2xx; else what is missing.
fn readiness(probed: &[(String, Option<u16>)], tasks: u32) -> Result<(), String> {
    let failing: Vec<String> = probed
        .iter()
        .filter(|(_, status)| !status.is_some_and(|s| (200..300).contains(&s)))
        .map(|(address, status)| match status {
            Some(status) => format!("{address} answered {status}"),
            None => format!("{address} did not answer"),
        })
        .collect();
    if probed.len() == tasks as usize && failing.is_empty() {
        return Ok(());
    }
    let mut what = format!("{} of {tasks} tasks answer 2xx", probed.len() - failing.len());
    if probed.len() != tasks as usize {
        what.push_str(&format!(" ({} found in the swarm's DNS)", probed.len()));
    }
    if !failing.is_empty() {
        what.push_str(&format!(": {}", failing.join(", ")));
    }
    Err(what)
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

/// The script of a job that removes `$VOLUME` on its node once no
/// container holds it (a removed service's task stops within its grace
/// period: up to 60 tries, a second apart).
const REMOVE_VOLUME: &str = r#"tries=0
while :; do
  answer=$(api DELETE "/volumes/$VOLUME") || { echo "error cannot reach the engine on /var/run/docker.sock"; exit 1; }
  status=$(printf '%s\n' "$answer" | code)
  case "$status" in
    204) echo "removed"; break ;;
    404) echo "absent"; break ;;
    409) tries=$((tries + 1)); [ "$tries" -lt 60 ] || { echo "error the volume is still in use after 60 s"; exit 1; }; sleep 1 ;;
    *) echo "error HTTP $status $(printf '%s\n' "$answer" | body | tr -d '\r\n' | cut -c 1-200)"; exit 1 ;;
  esac
done
echo "done"
"#;

/// Removes the volume `name` on the node `node` (by id) through a job
/// there; nothing when it is gone.
async fn remove_volume_on(on: &On<'_>, config: &Config, name: &str, node: &str) -> anyhow::Result<()> {
    let manager = on.engine;
    let inspect = manager.docker.inspect_node(node);
    let found = manager.call(format!("for the node {node}, where the volume {name} is"), inspect).await?;
    let state = found.status.as_ref().and_then(|s| s.state);
    if state != Some(bollard::models::NodeState::READY) {
        bail!(
            "the volume {name} is on the node {node}, which is not ready ({state:?}): it is kept; remove it there \
             with `docker volume rm {name}` once the node is back"
        );
    }
    let env = vec![format!("VOLUME={name}")];
    let job = jobs::start(manager, config, &found, "remove", REMOVE_VOLUME, env, on.credentials.clone()).await?;
    let (outcome, warnings) = jobs::finish(manager, std::slice::from_ref(&job)).await;
    for warning in warnings {
        on.reporter.line(format!("warning: {warning}"));
    }
    let output = match outcome?.pop().expect("one job, one outcome")? {
        jobs::Output::Read(output) => output,
        // Its script completes only once the volume is removed or absent.
        jobs::Output::Unread(why) => {
            on.reporter.line(format!(
                "warning: the job that removed the volume {name} on the node {} completed; its output could not be \
                 read through the manager ({why})",
                job.node
            ));
            return Ok(());
        }
    };
    if output.lines().any(|l| matches!(l.trim(), "removed" | "absent")) {
        Ok(())
    } else {
        bail!("removing the volume {name} on the node {}: the job said {output}", job.node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(status_code: u16, message: &str) -> anyhow::Error {
        let source = bollard::errors::Error::DockerResponseServerError { status_code, message: message.to_owned() };
        anyhow::Error::from(EngineError::Api { engine: "m".into(), what: "to update the service a".into(), source })
    }

    #[test]
    fn a_probe_is_ready_when_every_task_answered_2xx() {
        let output = "10.0.1.5 HTTP/1.0 200 OK\n10.0.1.6 HTTP/1.0 503 Service Unavailable\n10.0.1.7 -\n";
        let seen = probed(output);
        assert_eq!(seen, [("10.0.1.5".into(), Some(200)), ("10.0.1.6".into(), Some(503)), ("10.0.1.7".into(), None)]);
        let why = readiness(&seen, 2).unwrap_err();
        assert_eq!(
            why,
            "1 of 2 tasks answer 2xx (3 found in the swarm's DNS): 10.0.1.6 answered 503, 10.0.1.7 did not answer"
        );
        assert!(readiness(&seen[..1], 1).is_ok());
        assert_eq!(readiness(&seen[..1], 2).unwrap_err(), "1 of 2 tasks answer 2xx (1 found in the swarm's DNS)");
        assert_eq!(readiness(&probed("10.0.1.5 HTTP/1.1 204 No Content\n"), 1), Ok(()));
    }

    #[test]
    fn an_update_refused_as_out_of_sequence_is_told_from_other_refusals() {
        assert!(out_of_sequence(&refused(500, "rpc error: code = Unknown desc = update out of sequence")));
        assert!(out_of_sequence(&refused(500, "update out of sequence").context("rolling back")));
        assert!(!out_of_sequence(&refused(500, "no such image")));
        assert!(!out_of_sequence(&anyhow::anyhow!("update out of sequence, but not from the engine")));
    }
}
