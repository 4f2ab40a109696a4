//! `harness prune` on the swarm's other nodes: a job on each
//! ([`super::jobs`]) lists the node's images of the service's repository,
//! removes each that is not kept and no container uses (the engine refuses
//! those), and prints one line per image, which [`parse`] reads. With
//! `--dry-run` the same job removes nothing.
//!
//! Only the service's images go, never a container: a stopped task's
//! container is the swarm's (its task history), and the image it holds is
//! named as in use.

use std::collections::BTreeSet;

use bollard::auth::DockerCredentials;
use bollard::models::NodeState;
use bollard::query_parameters::ListNodesOptions;
use serde::Serialize;

use super::jobs;
use super::observe::node_name;
use crate::config::Config;
use crate::engine::Engine;

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

/// The job's script (after [`jobs::PREAMBLE`]). Its input: `FILTER` (the
/// image list's `filters`, URL-encoded), `REPOSITORY`, `KEEP` (digests,
/// space-separated), `DRY_RUN` (1 or 0).
const SCRIPT: &str = r#"listed=$(api GET "/images/json?filters=$FILTER") || { echo "error cannot reach the engine on /var/run/docker.sock"; exit 1; }
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

/// Prunes `repository`'s images on every node but the manager's, keeping
/// the `kept` digests: what each node's job did, and a warning for each
/// node that was not pruned (not ready, or its job failed).
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
    let mut started = Vec::new();
    for node in nodes.iter().filter(|n| n.id.as_deref() != Some(own.as_str())) {
        let state = node.status.as_ref().and_then(|s| s.state);
        if state != Some(NodeState::READY) {
            warnings.push(format!("node {} is not ready ({state:?}): its images were not pruned", node_name(node)));
            continue;
        }
        let env = vec![
            format!("FILTER={}", filter(repository)),
            format!("REPOSITORY={repository}"),
            format!("KEEP={keep}"),
            format!("DRY_RUN={}", u8::from(dry_run)),
        ];
        started.push(jobs::start(manager, config, node, "prune", SCRIPT, env, credentials.clone()).await?);
    }
    let (outcome, removal_warnings) = jobs::finish(manager, &started).await;
    warnings.extend(removal_warnings);
    let mut pruned = Vec::new();
    for (job, output) in started.iter().zip(outcome?) {
        match output {
            Ok(jobs::Output::Read(output)) => match parse(&job.node, &output) {
                Ok(node) => pruned.push(node),
                Err(e) => warnings.push(format!("{e:#}")),
            },
            Ok(jobs::Output::Unread(why)) => warnings.push(format!(
                "pruning node {}: the job completed, but what it removed is not known: its output could not be \
                 read through the manager ({why}); `harness prune --dry-run` lists what is left",
                job.node
            )),
            Err(e) => warnings.push(format!("{e:#}")),
        }
    }
    pruned.sort_by(|a, b| a.node.cmp(&b.node));
    Ok((pruned, warnings))
}

#[cfg(test)]
mod tests {
    use super::*;

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
