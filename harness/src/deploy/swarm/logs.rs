//! `harness logs` on the swarm: every running task of the app's service
//! (or of the database's), each line marked with its task's node.

use std::collections::HashMap;

use bollard::models::TaskState;
use bollard::query_parameters::ListNodesOptions;
use futures_util::StreamExt;

use super::observe::{node_name, tasks_of};
use super::services::SwarmNames;
use crate::deploy::logs::{LogRequest, Of, Source};
use crate::engine::Engine;

/// The sources `request` names on the swarm: one per running task, read
/// through the manager (which asks the task's node).
pub async fn sources(manager: &Engine, project: &str, request: &LogRequest) -> anyhow::Result<Vec<Source>> {
    let names = SwarmNames::new(project);
    let service = &match request.of {
        Of::App => names.app.clone(),
        Of::Db => names.accessory("db"),
    };
    let nodes = manager.call("for the swarm's nodes", manager.docker.list_nodes(None::<ListNodesOptions>)).await?;
    let nodes: HashMap<String, String> = nodes.iter().filter_map(|n| Some((n.id.clone()?, node_name(n)))).collect();
    let options = request.api_options(time::OffsetDateTime::now_utc());
    let mut sources = Vec::new();
    for task in tasks_of(manager, service).await? {
        let running = task.status.as_ref().and_then(|s| s.state) == Some(TaskState::RUNNING);
        let (Some(id), true) = (task.id.as_deref(), running && task.desired_state == Some(TaskState::RUNNING)) else {
            continue;
        };
        let node = task.node_id.as_deref().unwrap_or_default();
        let mark = match request.of {
            Of::App => nodes.get(node).cloned().unwrap_or_else(|| node.to_owned()),
            Of::Db => "db".to_owned(),
        };
        sources.push(Source { mark, stream: manager.docker.task_logs(id, Some(options.clone())).boxed() });
    }
    if sources.is_empty() {
        anyhow::bail!("no task of {service} runs on the swarm: `harness status --target swarm` shows what is there");
    }
    sources.sort_by(|a, b| a.mark.cmp(&b.mark));
    Ok(sources)
}
