//! `harness prune` on the swarm's other nodes. The harness reaches the
//! manager's engine alone; a worker's images are removed by a one-off job
//! on that worker: a replicated job pinned to the node by id, of the proxy
//! image (every node pulls it for the proxy; it has `sh` and `socat`), with
//! the node's Docker socket bind-mounted (`swarm.node_socket`). The job
//! lists the node's images of the service's repository, removes each that
//! is not kept and no container uses (the engine refuses those), and prints
//! one line per image, which the harness reads back through the manager
//! ([`parse`]); then the job is removed. `--dry-run` runs the same job
//! without removing anything.
//!
//! Only the service's images go, never a container: a stopped task's
//! container is the swarm's (its task history), and the image it holds is
//! named as skipped.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use bollard::auth::DockerCredentials;
use bollard::models::{
    Mount, MountTypeEnum, Node, NodeState, ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicatedJob, TaskSpec,
    TaskSpecContainerSpec, TaskSpecPlacement, TaskSpecRestartPolicy, TaskSpecRestartPolicyConditionEnum, TaskState,
};
use bollard::query_parameters::{ListNodesOptions, LogsOptionsBuilder};
use futures_util::StreamExt;
use serde::Serialize;

use super::observe::{node_name, tasks_of};
use crate::config::Config;
use crate::deploy::names::{PROJECT_LABEL, ROLE_LABEL};
use crate::engine::{tolerate, Engine};

/// How long the jobs may take in all: pulling the proxy image where a
/// node lacks it, then a few API calls per image.
const JOBS_TIMEOUT: Duration = Duration::from_secs(180);
const POLL: Duration = Duration::from_millis(500);

/// What a node's job did (or, with `--dry-run`, would do).
#[derive(Debug, Default, PartialEq, Eq, Serialize)]
pub struct NodePruned {
    pub node: String,
    /// The removed images' ids (`sha256:...`); with `--dry-run`, those that
    /// would go.
    pub images: Vec<String>,
    /// Their sizes added up: the most this freed (a layer that a kept image
    /// shares stays).
    pub freed_bytes_at_most: i64,
    /// Images of the repository kept: a kept release's.
    pub kept: usize,
    /// Images the engine would not remove (a container uses them), with
    /// its answer.
    pub skipped: Vec<String>,
}

/// The job's program: `sh` with `socat` for HTTP over the node's socket
/// (HTTP/1.0, so that the engine answers without chunking). Its input:
/// `FILTER` (the image list's `filters`, URL-encoded), `REPOSITORY`,
/// `KEEP` (digests, space-separated), `DRY_RUN` (1 or 0).
const SCRIPT: &str = r#"set -u
api() {
  printf '%s %s HTTP/1.0\r\nHost: engine\r\n\r\n' "$1" "$2" | socat -t 30 -T 60 - UNIX-CONNECT:/var/run/docker.sock
}
code() { head -n 1 | cut -d ' ' -f 2; }
body() { sed '1,/^\r*$/d'; }
listed=$(api GET "/images/json?filters=$FILTER") || { echo "error cannot reach the engine on /var/run/docker.sock"; exit 1; }
status=$(printf '%s\n' "$listed" | code)
[ "$status" = 200 ] || { echo "error listing the images: HTTP $status"; exit 1; }
printf '%s\n' "$listed" | body | sed 's/,{"Containers":/\n{"Containers":/g' | while IFS= read -r image; do
  id=$(printf '%s' "$image" | grep -o '"Id":"sha256:[0-9a-f]*"' | cut -d '"' -f 4)
  [ -n "$id" ] || continue
  case "$image" in *"\"$REPOSITORY@sha256:"*|*"\"$REPOSITORY:"*) ;; *) continue ;; esac
  size=$(printf '%s' "$image" | sed -n 's/.*"Size":\([0-9]*\).*/\1/p')
  kept=no
  for digest in $KEEP; do
    case "$image" in *"\"$REPOSITORY@$digest\""*) kept=yes ;; esac
  done
  if [ "$kept" = yes ]; then echo "kept $id"; continue; fi
  if [ "$DRY_RUN" = 1 ]; then echo "removed $id ${size:-0}"; continue; fi
  answer=$(api DELETE "/images/$id")
  status=$(printf '%s\n' "$answer" | code)
  case "$status" in
    200) echo "removed $id ${size:-0}" ;;
    *) echo "skipped $id HTTP $status $(printf '%s\n' "$answer" | body | tr -d '\r\n' | cut -c 1-200)" ;;
  esac
done
echo "done"
"#;

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

/// The lines a job printed, as what it did on `node`; an `error` line or
/// no closing `done` is an error.
pub fn parse(node: &str, output: &str) -> anyhow::Result<NodePruned> {
    let mut pruned = NodePruned { node: node.to_owned(), ..Default::default() };
    let mut done = false;
    for line in output.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let mut words = line.splitn(3, ' ');
        match (words.next(), words.next(), words.next()) {
            (Some("kept"), Some(_), _) => pruned.kept += 1,
            (Some("removed"), Some(id), size) => {
                pruned.images.push(id.to_owned());
                pruned.freed_bytes_at_most += size.and_then(|s| s.parse::<i64>().ok()).unwrap_or(0);
            }
            (Some("skipped"), Some(id), why) => pruned.skipped.push(format!("{id}: {}", why.unwrap_or(""))),
            (Some("done"), None, None) => done = true,
            (Some("error"), _, _) => anyhow::bail!("pruning node {node}: {}", line.trim_start_matches("error ")),
            _ => anyhow::bail!("pruning node {node}: the job printed `{line}`, which the harness does not read"),
        }
    }
    if !done {
        anyhow::bail!("pruning node {node}: the job ended before it was done:\n{output}");
    }
    Ok(pruned)
}

/// `{"reference":["REPOSITORY"]}`, URL-encoded.
fn filter(repository: &str) -> String {
    let json = serde_json::json!({ "reference": [repository] }).to_string();
    json.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The job for `node` (pinned by id) named `name`.
fn job(
    config: &Config,
    name: &str,
    node_id: &str,
    socket: &str,
    repository: &str,
    keep: &str,
    dry_run: bool,
) -> ServiceSpec {
    let labels = HashMap::from([
        (PROJECT_LABEL.to_owned(), config.project().to_owned()),
        (ROLE_LABEL.to_owned(), "prune".to_owned()),
    ]);
    ServiceSpec {
        name: Some(name.to_owned()),
        labels: Some(labels),
        task_template: Some(TaskSpec {
            container_spec: Some(TaskSpecContainerSpec {
                image: Some(config.prod.proxy_image.clone()),
                command: Some(vec!["sh".to_owned(), "-c".to_owned(), SCRIPT.to_owned()]),
                env: Some(vec![
                    format!("FILTER={}", filter(repository)),
                    format!("REPOSITORY={repository}"),
                    format!("KEEP={keep}"),
                    format!("DRY_RUN={}", u8::from(dry_run)),
                ]),
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

/// Prunes `repository`'s images on every node but the manager's, keeping
/// the `kept` digests: what each node's job did, and a warning for each
/// node that was not pruned (down, or its job failed).
pub async fn other_nodes(
    manager: &Engine,
    config: &Config,
    repository: &str,
    kept: &BTreeSet<String>,
    dry_run: bool,
    credentials: Option<DockerCredentials>,
) -> anyhow::Result<(Vec<NodePruned>, Vec<String>)> {
    let info = manager.call("for its swarm node id", manager.docker.info()).await?;
    let own = info.swarm.and_then(|s| s.node_id).unwrap_or_default();
    let nodes = manager.call("for the swarm's nodes", manager.docker.list_nodes(None::<ListNodesOptions>)).await?;
    let keep = kept.iter().cloned().collect::<Vec<_>>().join(" ");
    let mut warnings = Vec::new();
    let mut jobs = Vec::new();
    for node in nodes.iter().filter(|n| n.id.as_deref() != Some(own.as_str())) {
        let (id, name) = (node.id.clone().unwrap_or_default(), node_name(node));
        let state = node.status.as_ref().and_then(|s| s.state);
        if state != Some(NodeState::READY) {
            warnings.push(format!("node {name} is not ready ({state:?}): its images were not pruned"));
            continue;
        }
        let socket = node_socket(&config.swarm.node_socket, node)?;
        let service = format!("{}-prune-{}", config.project(), id.chars().take(12).collect::<String>());
        // A job of an earlier prune that ended before removing it.
        let what = format!("to remove the leftover job {service}");
        tolerate(manager.call(what, manager.docker.delete_service(&service)).await, 404)?;
        let spec = job(config, &service, &id, &socket, repository, &keep, dry_run);
        let what = format!("to start the prune job {service} on node {name}");
        manager.call(what, manager.docker.create_service(spec, credentials.clone())).await?;
        jobs.push((name, service));
    }
    let outcome = read_jobs(manager, &jobs).await;
    for (_, service) in &jobs {
        let what = format!("to remove the prune job {service}");
        if let Err(e) = tolerate(manager.call(what, manager.docker.delete_service(service)).await, 404) {
            warnings.push(format!("{e:#}"));
        }
    }
    let mut pruned = Vec::new();
    for result in outcome? {
        match result {
            Ok(node) => pruned.push(node),
            Err(e) => warnings.push(format!("{e:#}")),
        }
    }
    pruned.sort_by(|a, b| a.node.cmp(&b.node));
    Ok((pruned, warnings))
}

/// Waits for every job's task to end (bounded), then reads what each
/// printed.
async fn read_jobs(manager: &Engine, jobs: &[(String, String)]) -> anyhow::Result<Vec<anyhow::Result<NodePruned>>> {
    let started = Instant::now();
    let mut ended: HashMap<&str, (String, Option<TaskState>, String)> = HashMap::new();
    while ended.len() < jobs.len() {
        for (node, service) in jobs {
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
                    "the prune job {service} on node {node} did not end within {} s: nothing more was read from \
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
    for (node, service) in jobs {
        let (task, state, message) = &ended[service.as_str()];
        if *state != Some(TaskState::COMPLETE) {
            results.push(Err(anyhow::anyhow!(
                "the prune job on node {node} ended {}: {message}",
                state.map(|s| s.to_string()).unwrap_or_default()
            )));
            continue;
        }
        let options = LogsOptionsBuilder::default().stdout(true).stderr(true).build();
        let mut stream = manager.docker.task_logs(task, Some(options));
        let mut output = String::new();
        let read = async {
            while let Some(chunk) = stream.next().await {
                output.push_str(&chunk?.to_string());
            }
            Ok::<(), bollard::errors::Error>(())
        };
        match tokio::time::timeout(Duration::from_secs(20), read).await {
            Ok(Ok(())) => results.push(parse(node, &output)),
            Ok(Err(e)) => results.push(Err(anyhow::anyhow!("reading the prune job's output on node {node}: {e}"))),
            Err(_) => {
                results.push(Err(anyhow::anyhow!("reading the prune job's output on node {node} took over 20 s")))
            }
        }
    }
    Ok(results)
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

    #[test]
    fn a_jobs_lines_are_what_it_removed_kept_and_skipped() {
        let output = "kept sha256:a\nremoved sha256:b 100\nremoved sha256:c 50\n\
                      skipped sha256:d HTTP 409 {\"message\":\"conflict: in use\"}\ndone\n";
        let pruned = parse("swarm-2", output).unwrap();
        assert_eq!(pruned.images, ["sha256:b", "sha256:c"]);
        assert_eq!((pruned.freed_bytes_at_most, pruned.kept), (150, 1));
        assert_eq!(pruned.skipped, ["sha256:d: HTTP 409 {\"message\":\"conflict: in use\"}"]);
        let err = parse("swarm-2", "error listing the images: HTTP 500\n").unwrap_err();
        assert_eq!(err.to_string(), "pruning node swarm-2: listing the images: HTTP 500");
        assert!(parse("swarm-2", "removed sha256:b 1\n").unwrap_err().to_string().contains("before it was done"));
        assert!(parse("swarm-2", "sh: socat: not found\ndone\n").unwrap_err().to_string().contains("socat"));
    }

    #[test]
    fn the_image_filter_is_url_encoded_json() {
        assert_eq!(
            filter("10.200.0.1:5000/books-ms"),
            "%7B%22reference%22%3A%5B%2210.200.0.1%3A5000%2Fbooks-ms%22%5D%7D"
        );
    }
}
