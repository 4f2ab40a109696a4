//! One-off jobs on a swarm node's own engine. The harness reaches the
//! manager's engine alone (the workers have no API port); what must happen
//! on another node's engine (`harness prune`'s image removal, `harness
//! remove --volumes`'s volume there) runs as a replicated job pinned to
//! that node by id, of the proxy image (every node pulls it for the proxy;
//! it has `sh` and `socat`), with the node's Docker socket bind-mounted
//! (`swarm.node_socket`). A job's script speaks HTTP to the engine with
//! [`PREAMBLE`]'s `api`, prints what it did, and ends with a `done` line
//! (its only exit 0: every failure exits 1); the harness reads its output
//! back through the manager and removes the job, also when it failed.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bollard::auth::DockerCredentials;
use bollard::models::{
    Mount, MountTypeEnum, Node, ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicatedJob, TaskSpec,
    TaskSpecContainerSpec, TaskSpecPlacement, TaskSpecRestartPolicy, TaskSpecRestartPolicyConditionEnum, TaskState,
};
use bollard::query_parameters::LogsOptionsBuilder;
use futures_util::StreamExt;

use super::observe::{node_name, tasks_of};
use crate::config::Config;
use crate::deploy::names::{PROJECT_LABEL, ROLE_LABEL};
use crate::engine::{tolerate, Engine};

/// How long the jobs may take in all: pulling the proxy image where a
/// node lacks it, then a few API calls each.
const JOBS_TIMEOUT: Duration = Duration::from_secs(180);
const POLL: Duration = Duration::from_millis(500);
/// Reading a job's output through the manager.
const READ_TIMEOUT: Duration = Duration::from_secs(20);
/// Reads of a job that completed until its output holds its `done`, a
/// second apart: the manager streams a node's lines some time after the
/// task ended, or, with its log broker out of touch with the node, never.
const READS: u32 = 3;

/// What a job that completed printed.
#[derive(Debug, PartialEq, Eq)]
pub enum Output {
    /// Its lines, the closing `done` among them.
    Read(String),
    /// It completed (exit 0, which its script reaches only at its end),
    /// but its lines could not be read through the manager: why.
    Unread(String),
}

impl Output {
    /// The verdict on a job's task: an error for one that did not complete,
    /// else its output, read (`read`, the last of its reads) or not.
    fn of(
        service: &str,
        node: &str,
        (state, message): (Option<TaskState>, &str),
        read: &Result<String, String>,
    ) -> anyhow::Result<Output> {
        let said = |output: &str| output.lines().map(|l| format!("\n  {l}")).collect::<String>();
        if state != Some(TaskState::COMPLETE) {
            let state = state.map(|s| s.to_string()).unwrap_or_default();
            let output = match read {
                Ok(output) => said(output),
                Err(e) => format!("\n  (its output could not be read: {e})"),
            };
            anyhow::bail!("the job {service} on node {node} ended {state}: {message}{output}");
        }
        Ok(match read {
            Ok(output) if done(output) => Output::Read(output.clone()),
            Ok(output) if output.trim().is_empty() => Output::Unread("the manager gave none of its lines".into()),
            Ok(output) => {
                Output::Unread(format!("the manager gave its lines without the closing `done`:{}", said(output)))
            }
            Err(e) => Output::Unread(e.clone()),
        })
    }
}

fn done(output: &str) -> bool {
    output.lines().any(|l| l.trim() == "done")
}

/// What every job's script starts with: `api METHOD PATH` (HTTP/1.0 over
/// the node's socket, so that the engine answers without chunking; the
/// request's end does not shut the socket's write side, which the engine
/// takes for a client gone and cancels the request: `shut-none`), `code`
/// (an answer's status) and `body` (its body).
pub const PREAMBLE: &str = r#"set -u
api() {
  printf '%s %s HTTP/1.0\r\nHost: engine\r\n\r\n' "$1" "$2" | socat -t 60 -T 60 - UNIX-CONNECT:/var/run/docker.sock,shut-none
}
code() { head -n 1 | cut -d ' ' -f 2; }
body() { sed '1,/^\r*$/d'; }
"#;

/// A job started on a node.
pub struct Job {
    /// The node's name (its lab label, else its hostname).
    pub node: String,
    pub service: String,
}

/// A node's Docker socket from `swarm.node_socket`: `{label:KEY}` is the
/// node's label KEY, `{hostname}` its hostname, `{id}` its id. A label the
/// node lacks is an error naming it.
pub fn node_socket(template: &str, node: &Node) -> anyhow::Result<String> {
    let id = node.id.clone().unwrap_or_default();
    let labels = node.spec.as_ref().and_then(|s| s.labels.clone()).unwrap_or_default();
    let hostname = node.description.as_ref().and_then(|d| d.hostname.clone()).unwrap_or_default();
    let mut socket = String::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        socket.push_str(&rest[..start]);
        let Some(end) = rest[start..].find('}') else {
            anyhow::bail!("swarm.node_socket `{template}`: a `{{` without its `}}`");
        };
        let field = &rest[start + 1..start + end];
        let value = match field.split_once(':') {
            Some(("label", key)) => labels.get(key).cloned().ok_or_else(|| {
                anyhow::anyhow!(
                    "swarm.node_socket `{template}` names the label {key}, which node {id} does not have \
                     (`docker node update --label-add {key}=VALUE {id}`)"
                )
            })?,
            None if field == "hostname" => hostname.clone(),
            None if field == "id" => id.clone(),
            _ => anyhow::bail!(
                "swarm.node_socket `{template}`: `{{{field}}}` is none of {{label:KEY}}, {{hostname}}, {{id}}"
            ),
        };
        socket.push_str(&value);
        rest = &rest[start + end + 1..];
    }
    socket.push_str(rest);
    Ok(socket)
}

/// Starts `script` (after [`PREAMBLE`]) with `env` as a job on `node`,
/// named `P-PURPOSE-ID`; a leftover of that name (an earlier run that
/// ended before removing it) is replaced.
pub async fn start(
    manager: &Engine,
    config: &Config,
    node: &Node,
    purpose: &str,
    script: &str,
    env: Vec<String>,
    credentials: Option<DockerCredentials>,
) -> anyhow::Result<Job> {
    let (id, name) = (node.id.clone().unwrap_or_default(), node_name(node));
    let socket = node_socket(&config.swarm.node_socket, node)?;
    let service = format!("{}-{purpose}-{}", config.project(), id.chars().take(12).collect::<String>());
    let what = format!("to remove the leftover job {service}");
    tolerate(manager.call(what, manager.docker.delete_service(&service)).await, 404)?;
    let spec = spec(config, &service, purpose, &id, &socket, &format!("{PREAMBLE}{script}"), env);
    let what = format!("to start the job {service} on node {name}");
    manager.call(what, manager.docker.create_service(spec, credentials)).await?;
    Ok(Job { node: name, service })
}

/// Waits for every job to end (bounded), reads what each printed (an
/// error for one that failed), and removes them all: each job's output,
/// and what could not be removed.
pub async fn finish(manager: &Engine, jobs: &[Job]) -> (anyhow::Result<Vec<anyhow::Result<Output>>>, Vec<String>) {
    let outcome = read(manager, jobs).await;
    let mut warnings = Vec::new();
    for job in jobs {
        let what = format!("to remove the job {}", job.service);
        if let Err(e) = tolerate(manager.call(what, manager.docker.delete_service(&job.service)).await, 404) {
            warnings.push(format!("{e:#}"));
        }
    }
    (outcome, warnings)
}

/// The job's service: `script` on the node `node_id` (pinned), with its
/// socket mounted.
fn spec(
    config: &Config,
    name: &str,
    purpose: &str,
    node_id: &str,
    socket: &str,
    script: &str,
    env: Vec<String>,
) -> ServiceSpec {
    let labels = HashMap::from([
        (PROJECT_LABEL.to_owned(), config.project().to_owned()),
        (ROLE_LABEL.to_owned(), purpose.to_owned()),
    ]);
    ServiceSpec {
        name: Some(name.to_owned()),
        labels: Some(labels),
        task_template: Some(TaskSpec {
            container_spec: Some(TaskSpecContainerSpec {
                image: Some(config.prod.proxy_image.clone()),
                command: Some(vec!["sh".to_owned(), "-c".to_owned(), script.to_owned()]),
                env: Some(env),
                user: Some("root".to_owned()),
                mounts: Some(vec![Mount {
                    target: Some("/var/run/docker.sock".to_owned()),
                    source: Some(socket.to_owned()),
                    typ: Some(MountTypeEnum::BIND),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            restart_policy: Some(TaskSpecRestartPolicy {
                condition: Some(TaskSpecRestartPolicyConditionEnum::NONE),
                ..Default::default()
            }),
            placement: Some(TaskSpecPlacement {
                constraints: Some(vec![format!("node.id=={node_id}")]),
                ..Default::default()
            }),
            ..Default::default()
        }),
        mode: Some(ServiceSpecMode {
            replicated_job: Some(ServiceSpecModeReplicatedJob { max_concurrent: Some(1), total_completions: Some(1) }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Waits for every job's task to end (bounded), then reads what each
/// printed.
async fn read(manager: &Engine, jobs: &[Job]) -> anyhow::Result<Vec<anyhow::Result<Output>>> {
    let started = Instant::now();
    let mut ended: HashMap<&str, (String, Option<TaskState>, String)> = HashMap::new();
    while ended.len() < jobs.len() {
        for Job { node, service } in jobs {
            if ended.contains_key(service.as_str()) {
                continue;
            }
            let tasks = tasks_of(manager, service).await?;
            let finished = tasks.iter().find(|t| {
                let state = t.status.as_ref().and_then(|s| s.state);
                matches!(
                    state,
                    Some(
                        TaskState::COMPLETE
                            | TaskState::FAILED
                            | TaskState::REJECTED
                            | TaskState::SHUTDOWN
                            | TaskState::ORPHANED
                    )
                )
            });
            if let Some(task) = finished {
                let status = task.status.as_ref();
                let message = status.and_then(|s| s.err.clone().or(s.message.clone())).unwrap_or_default();
                ended.insert(service, (task.id.clone().unwrap_or_default(), status.and_then(|s| s.state), message));
            } else if started.elapsed() > JOBS_TIMEOUT {
                anyhow::bail!(
                    "the job {service} on node {node} did not end within {} s: nothing more was read from \
                     it; `docker service ps {service}` on the manager says why",
                    JOBS_TIMEOUT.as_secs()
                );
            }
        }
        if ended.len() < jobs.len() {
            tokio::time::sleep(POLL).await;
        }
    }
    let mut results = Vec::new();
    for Job { node, service } in jobs {
        let (task, state, message) = &ended[service.as_str()];
        let mut reads = 0;
        let read = loop {
            let read = logs(manager, task).await.map_err(|e| format!("{e:#}"));
            reads += 1;
            if reads == READS || *state != Some(TaskState::COMPLETE) || read.as_deref().is_ok_and(done) {
                break read;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        };
        results.push(Output::of(service, node, (*state, message), &read));
    }
    Ok(results)
}

/// What a job's task printed, read through the manager (bounded).
async fn logs(manager: &Engine, task: &str) -> anyhow::Result<String> {
    let options = LogsOptionsBuilder::default().stdout(true).stderr(true).build();
    let mut stream = manager.docker.task_logs(task, Some(options));
    let mut output = String::new();
    let read = async {
        while let Some(chunk) = stream.next().await {
            output.push_str(&chunk?.to_string());
        }
        Ok::<(), bollard::errors::Error>(())
    };
    match tokio::time::timeout(READ_TIMEOUT, read).await {
        Ok(Ok(())) => Ok(output),
        Ok(Err(e)) => Err(e.into()),
        Err(_) => anyhow::bail!("it took over {} s", READ_TIMEOUT.as_secs()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{NodeDescription, NodeSpec};

    fn node(id: &str, label: Option<&str>, hostname: &str) -> Node {
        Node {
            id: Some(id.to_owned()),
            spec: Some(NodeSpec {
                labels: label.map(|l| HashMap::from([("books-lab.node".to_owned(), l.to_owned())])),
                ..Default::default()
            }),
            description: Some(NodeDescription { hostname: Some(hostname.to_owned()), ..Default::default() }),
            ..Default::default()
        }
    }

    #[test]
    fn a_job_that_completed_is_done_even_when_its_lines_cannot_be_read() {
        let of = |state, read: Result<&str, &str>| {
            Output::of("p-prune-n2", "swarm-2", (state, "msg"), &read.map(str::to_owned).map_err(str::to_owned))
        };
        let complete = Some(TaskState::COMPLETE);
        assert_eq!(of(complete, Ok("removed x 1\ndone\n")).unwrap(), Output::Read("removed x 1\ndone\n".into()));
        assert_eq!(of(complete, Ok("")).unwrap(), Output::Unread("the manager gave none of its lines".into()));
        let Output::Unread(why) = of(complete, Ok("removed x 1\n")).unwrap() else { panic!() };
        assert!(why.contains("without the closing `done`") && why.contains("removed x 1"), "{why}");
        assert_eq!(of(complete, Err("node is not available")).unwrap(), Output::Unread("node is not available".into()));
        let failed = of(Some(TaskState::FAILED), Ok("error HTTP 500\n")).unwrap_err().to_string();
        assert!(failed.contains("ended failed: msg") && failed.contains("error HTTP 500"), "{failed}");
        let failed = of(Some(TaskState::FAILED), Err("node is not available")).unwrap_err().to_string();
        assert!(failed.contains("could not be read: node is not available"), "{failed}");
    }

    #[test]
    fn a_nodes_socket_is_its_label_hostname_or_id_in_the_template() {
        let n = node("n2", Some("swarm-2"), "vm");
        assert_eq!(node_socket("/var/run/docker.sock", &n).unwrap(), "/var/run/docker.sock");
        assert_eq!(
            node_socket("/run/books-lab/{label:books-lab.node}/docker.sock", &n).unwrap(),
            "/run/books-lab/swarm-2/docker.sock"
        );
        assert_eq!(node_socket("/s/{hostname}-{id}.sock", &n).unwrap(), "/s/vm-n2.sock");
        let err = node_socket("/run/{label:books-lab.node}/d.sock", &node("n3", None, "vm")).unwrap_err();
        assert!(err.to_string().contains("names the label books-lab.node, which node n3 does not have"), "{err}");
        assert!(node_socket("/run/{ip}/d.sock", &n).unwrap_err().to_string().contains("`{ip}` is none of"));
        assert!(node_socket("/run/{id", &n).is_err());
    }
}
