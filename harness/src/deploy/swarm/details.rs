//! `harness details` on the swarm, through the manager's API: each task
//! of the app, of the proxy (one a node) and of the database, with its
//! node; the lock and the last deploys. Reads only.

use std::collections::HashMap;

use bollard::models::{Task, TaskState};
use bollard::query_parameters::ListNodesOptions;
use time::format_description::well_known::Rfc3339;

use super::observe::{self, node_name, tasks_of};
use super::services::SwarmNames;
use crate::config::Config;
use crate::deploy::details::{digest_in, Details, Live, Proxy, Unit};
use crate::deploy::names::*;
use crate::engine::{found, Engine};

pub async fn details(manager: &Engine, config: &Config) -> anyhow::Result<Details> {
    let names = SwarmNames::new(config.project());
    let nodes = manager.call("for the swarm's nodes", manager.docker.list_nodes(None::<ListNodesOptions>)).await?;
    let nodes: HashMap<String, String> = nodes.iter().filter_map(|n| Some((n.id.clone()?, node_name(n)))).collect();
    let live = observe::app_release(manager, config).await?.map(|release| Live { colour: None, release });
    let (lock, history) = crate::deploy::history::lock_and_last_entries(manager, config).await?;
    let mut accessories = Vec::new();
    for name in config.accessories.keys() {
        accessories.extend(service_units(manager, &names.accessory(name), &nodes).await?);
    }
    Ok(Details {
        target: config.prod.kind,
        engine: config.swarm.docker_host.clone(),
        url: config.swarm_url()?,
        live,
        app: service_units(manager, &names.app, &nodes).await?,
        proxy: Proxy { units: service_units(manager, &names.proxy, &nodes).await?, ..Proxy::default() },
        accessories,
        lock,
        history,
        traffic: None,
    })
}

/// The tasks of `service` that run or should, by name.
async fn service_units(manager: &Engine, service: &str, nodes: &HashMap<String, String>) -> anyhow::Result<Vec<Unit>> {
    let Some(found) = observe::inspect_service(manager, service).await? else { return Ok(Vec::new()) };
    let container = found.spec.and_then(|s| s.task_template?.container_spec).unwrap_or_default();
    let checked = match container.health_check.and_then(|h| h.test) {
        Some(test) => Some(checks(&test)),
        None => image_checked(manager, container.image.as_deref().unwrap_or_default()).await?,
    };
    Ok(units(&tasks_of(manager, service).await?, service, nodes, checked))
}

/// Whether `image` has a healthcheck, as the manager's engine has the
/// image; None when it does not have it (no task ran there).
async fn image_checked(manager: &Engine, image: &str) -> anyhow::Result<Option<bool>> {
    let inspected = found(manager.call(format!("for the image {image}"), manager.docker.inspect_image(image)).await)?;
    Ok(inspected.map(|i| i.config.and_then(|c| c.healthcheck?.test).is_some_and(|test| checks(&test))))
}

/// A healthcheck's test that checks something (`NONE` disables one).
fn checks(test: &[String]) -> bool {
    test.first().is_some_and(|first| first != "NONE")
}

/// The tasks of `service` that run or should (a lost node's), by name;
/// `checked`: whether they have a healthcheck (None: unknown).
fn units(tasks: &[Task], service: &str, nodes: &HashMap<String, String>, checked: Option<bool>) -> Vec<Unit> {
    let state = |t: &Task| t.status.as_ref().and_then(|s| s.state).unwrap_or(TaskState::PENDING);
    let current = |t: &Task| t.desired_state == Some(TaskState::RUNNING) || state(t) == TaskState::RUNNING;
    // A task's place: its slot (replicated) or its node (global).
    let place = |t: &Task| (t.slot, if t.slot.is_some() { None } else { t.node_id.clone() });
    let mut out: Vec<Unit> = tasks
        .iter()
        .filter(|t| current(t))
        .map(|task| {
            let failed =
                |t: &&Task| place(t) == place(task) && matches!(state(t), TaskState::FAILED | TaskState::REJECTED);
            let mut unit = unit(task, service, nodes, checked);
            unit.restarts = Some(tasks.iter().filter(failed).count() as i64);
            unit
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// One task as `details` shows it.
fn unit(task: &Task, service: &str, nodes: &HashMap<String, String>, checked: Option<bool>) -> Unit {
    let container = task.spec.as_ref().and_then(|s| s.container_spec.as_ref());
    let labels = container.and_then(|c| c.labels.clone()).unwrap_or_default();
    let label = |key: &str| labels.get(key).filter(|v| !v.is_empty()).cloned();
    let image = container.and_then(|c| c.image.clone()).unwrap_or_default();
    let status = task.status.clone().unwrap_or_default();
    let state = status.state.unwrap_or(TaskState::PENDING);
    let node = task.node_id.as_ref().map(|id| nodes.get(id).cloned().unwrap_or_else(|| id.clone()));
    let name = match (task.slot, &node) {
        (Some(slot), _) => format!("{service}.{slot}"),
        (None, Some(node)) => format!("{service}.{node}"),
        (None, None) => service.to_owned(),
    };
    Unit {
        name,
        role: label(ROLE_LABEL).unwrap_or_default(),
        digest: digest_in(&image),
        image,
        version: label(VERSION_LABEL),
        revision: label(REVISION_LABEL),
        colour: None,
        node,
        state: state.to_string(),
        // Swarm reports a task running only once its container's
        // healthcheck passed (and replaces one that turns unhealthy); a
        // task without one (or whose image the manager lacks) says nothing.
        health: match (checked, state) {
            (Some(true), TaskState::RUNNING) => Some("healthy".to_owned()),
            (Some(true), TaskState::STARTING) => Some("starting".to_owned()),
            _ => None,
        },
        started: status.timestamp.filter(|_| state == TaskState::RUNNING).and_then(|t| t.format(&Rfc3339).ok()),
        restarts: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(slot: Option<i64>, node: &str, desired: &str, state: &str) -> Task {
        serde_json::from_value(serde_json::json!({
            "Slot": slot,
            "NodeID": node,
            "DesiredState": desired,
            "Spec": { "ContainerSpec": {
                "Image": "r/books-ms@sha256:ab12",
                "Labels": { "org.books-ms.role": "app", "org.books-ms.version": "v2", "org.books-ms.revision": "r2" }
            } },
            "Status": { "State": state, "Timestamp": "2026-01-01T00:00:00Z" },
        }))
        .unwrap()
    }

    #[test]
    fn each_running_task_is_shown_with_its_node_and_the_failed_tasks_of_its_slot() {
        let nodes = HashMap::from([("n1".to_owned(), "node1".to_owned()), ("n2".to_owned(), "node2".to_owned())]);
        let tasks = [
            task(Some(1), "n1", "running", "running"),
            task(Some(1), "n1", "shutdown", "failed"),
            task(Some(1), "n2", "shutdown", "rejected"),
            task(Some(1), "n1", "shutdown", "shutdown"),
            task(Some(2), "n2", "running", "starting"),
            task(Some(3), "n2", "shutdown", "complete"),
        ];
        let units = units(&tasks, "books-ms-app", &nodes, Some(true));
        let shown: Vec<String> = units
            .iter()
            .map(|u| format!("{} {:?} {} {:?} {:?}", u.name, u.node, u.state, u.health, u.restarts))
            .collect();
        assert_eq!(
            shown,
            [
                r#"books-ms-app.1 Some("node1") running Some("healthy") Some(2)"#,
                r#"books-ms-app.2 Some("node2") starting Some("starting") Some(0)"#,
            ]
        );
        assert_eq!((units[0].revision.as_deref(), units[0].digest.as_deref()), (Some("r2"), Some("sha256:ab12")));
        assert_eq!(units[0].started.as_deref(), Some("2026-01-01T00:00:00Z"));
        assert_eq!(units[1].started, None, "not running yet");
    }

    #[test]
    fn a_global_services_tasks_are_named_by_their_node() {
        let nodes = HashMap::from([("n2".to_owned(), "node2".to_owned())]);
        let tasks = [task(None, "n2", "running", "running"), task(None, "n2", "shutdown", "failed")];
        let units = units(&tasks, "p", &nodes, None);
        assert_eq!((units[0].name.as_str(), units[0].restarts), ("p.node2", Some(1)));
        assert_eq!(units[0].health, None, "no healthcheck known: no health");
        assert!(checks(&["CMD".to_owned(), "/app/books-ms".to_owned()]) && !checks(&["NONE".to_owned()]));
    }
}
