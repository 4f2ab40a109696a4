//! What the swarm holds of the project, read through the manager's API:
//! before a deploy plans ([`observe`]), while it waits for an update
//! ([`progress`]), and for `harness status` ([`status`]).

use std::collections::HashMap;

use bollard::models::{
    NodeSpecAvailabilityEnum, NodeSpecRoleEnum, NodeState, Service, ServiceUpdateStatusStateEnum as UpdateState, Task,
    TaskSpecContainerSpec, TaskState,
};
use bollard::query_parameters::{ListConfigsOptionsBuilder, ListNodesOptions, ListTasksOptionsBuilder};
use serde::Serialize;

use super::plan::{ObservedService, SwarmObserved};
use super::services::SwarmNames;
use crate::config::Config;
use crate::deploy::history;
use crate::deploy::names::*;
use crate::engine::{found, Engine, EngineError};
use crate::release::Release;

/// The node label the lab sets on each node (all report one hostname).
pub const NODE_LABEL: &str = "books-lab.node";

pub async fn observe(manager: &Engine, config: &Config, release: Option<&Release>) -> anyhow::Result<SwarmObserved> {
    let swarm = SwarmNames::new(config.project());
    let network = found(
        manager
            .call(format!("for the network {}", swarm.network), manager.docker.inspect_network(&swarm.network, None))
            .await,
    )?;
    if let Some(network) = &network {
        overlay(&swarm.network, network.driver.as_deref(), network.scope.as_deref())?;
    }
    let network = network.is_some();
    let filters = HashMap::from([("label".to_owned(), vec![format!("{PROJECT_LABEL}={}", config.project())])]);
    let options = ListConfigsOptionsBuilder::default().filters(&filters).build();
    let configs = manager.call("for the project's configs", manager.docker.list_configs(Some(options))).await?;
    let info = manager.call("for the manager's swarm node", manager.docker.info()).await?;
    let manager_node = info.swarm.and_then(|s| s.node_id).filter(|id| !id.is_empty());
    if manager_node.is_none() && config.swarm.database_node.is_none() {
        anyhow::bail!(
            "{} reports no swarm node id: is it a manager of a swarm? (swarm.docker_host; `docker info` there \
             shows its Swarm section)",
            config.swarm.docker_host
        );
    }
    let configs = configs.into_iter().filter_map(|c| c.spec?.name).collect();
    let mut accessories = std::collections::BTreeMap::new();
    for name in config.accessories.keys() {
        if let Some(service) = observed_service(manager, &swarm.accessory(name)).await? {
            accessories.insert(name.clone(), service);
        }
    }
    let release_checks_itself = match release {
        Some(release) => checks_itself(manager, config, &release.image).await?,
        None => false,
    };
    Ok(SwarmObserved {
        network,
        manager_node,
        configs,
        accessories,
        release_checks_itself,
        next: observed_service(manager, &swarm.next).await?,
        canary: observed_service(manager, &swarm.canary).await?,
        app: observed_service(manager, &swarm.app).await?,
        proxy: observed_service(manager, &swarm.proxy).await?,
    })
}

/// Whether `image` has a Docker healthcheck of its own, as the manager has
/// it (a deploy pulled it there first), else as the registry serves it (a
/// dry run before any deploy of it); neither: none (the plan then gates the
/// release on `healthcheck.path` alone, the safer plan).
async fn checks_itself(manager: &Engine, config: &Config, image: &str) -> anyhow::Result<bool> {
    let what = format!("for the image {image}");
    if let Some(inspected) = found(manager.call(what, manager.docker.inspect_image(image)).await)? {
        let test = inspected.config.and_then(|c| c.healthcheck?.test).unwrap_or_default();
        return Ok(test.first().is_some_and(|first| first != "NONE"));
    }
    let Some((name, digest)) =
        image.strip_prefix(&format!("{}/", config.registry.address)).and_then(|rest| rest.split_once('@'))
    else {
        return Ok(false);
    };
    let Ok(credentials) = crate::registry::credentials(config) else { return Ok(false) };
    let Ok(cd) = crate::engine::cd().await else { return Ok(false) };
    let Ok(registry) = crate::registry::Registry::open(&cd, config, credentials).await else { return Ok(false) };
    Ok(registry.has_healthcheck(name, digest).await.unwrap_or(false))
}

/// The project's network must be the swarm's overlay: a bridge of the
/// same name (a single-host deploy on the manager's engine) is not.
fn overlay(name: &str, driver: Option<&str>, scope: Option<&str>) -> anyhow::Result<()> {
    if driver == Some("overlay") && scope == Some("swarm") {
        return Ok(());
    }
    anyhow::bail!(
        "the network {name} on the manager is a {} network of scope {}, not the swarm's overlay: a single-host \
         deploy of the project on this engine? Deploy the swarm as another project (prod.project), or remove that \
         deploy and its network",
        driver.unwrap_or("(unknown)"),
        scope.unwrap_or("(unknown)")
    )
}

async fn observed_service(manager: &Engine, name: &str) -> anyhow::Result<Option<ObservedService>> {
    let Some(service) = inspect_service(manager, name).await? else { return Ok(None) };
    let spec = service.spec.as_ref();
    let label = spec.and_then(|s| s.labels.as_ref()?.get(SPEC_LABEL).cloned());
    let image = spec.and_then(|s| s.task_template.as_ref()?.container_spec.as_ref()?.image.clone()).unwrap_or_default();
    let constraints =
        spec.and_then(|s| s.task_template.as_ref()?.placement.as_ref()?.constraints.clone()).unwrap_or_default();
    let converged = matches!(progress(manager, name, None).await?, Progress::Converged);
    Ok(Some(ObservedService { spec: label, image, constraints, converged }))
}

pub async fn inspect_service(manager: &Engine, name: &str) -> Result<Option<Service>, EngineError> {
    found(manager.call(format!("for the service {name}"), manager.docker.inspect_service(name, None)).await)
}

/// Where a service's update stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Its update (or rollback) completed and every task runs its spec.
    Converged,
    /// Not yet: what it waits for.
    Waiting(String),
    /// Swarm rolled the update back: its message. The previous spec serves.
    RolledBack(String),
    /// It will not converge by itself: why.
    Stuck(String),
}

/// Where the update of service `name` stands; `wanted`: the spec label a
/// deploy gave it (another one there means it was rolled back).
pub async fn progress(manager: &Engine, name: &str, wanted: Option<&str>) -> anyhow::Result<Progress> {
    let Some(service) = inspect_service(manager, name).await? else {
        return Ok(Progress::Stuck(format!("there is no service {name}")));
    };
    let spec = service.spec.clone().unwrap_or_default();
    let label = spec.labels.as_ref().and_then(|l| l.get(SPEC_LABEL)).map(String::as_str);
    let status = service.update_status.clone().unwrap_or_default();
    let message = status.message.clone().unwrap_or_default();
    let state = status.state;
    if let Some(wanted) = wanted {
        if label != Some(wanted) {
            return Ok(match state {
                Some(UpdateState::ROLLBACK_STARTED) => Progress::Waiting(format!("Swarm rolls {name} back: {message}")),
                Some(UpdateState::ROLLBACK_COMPLETED) => Progress::RolledBack(message),
                Some(UpdateState::ROLLBACK_PAUSED) => {
                    Progress::Stuck(format!("Swarm's rollback of {name} paused: {message}"))
                }
                _ => Progress::Stuck(format!("{name} has a spec this deploy did not give it (another deploy?)")),
            });
        }
    }
    match state {
        Some(UpdateState::UPDATING) => return Ok(Progress::Waiting(format!("{name} updates: {message}"))),
        Some(UpdateState::ROLLBACK_STARTED) => {
            return Ok(Progress::Waiting(format!("Swarm rolls {name} back: {message}")))
        }
        Some(UpdateState::PAUSED | UpdateState::ROLLBACK_PAUSED) => {
            return Ok(Progress::Stuck(format!("the update of {name} paused: {message}")))
        }
        _ => {}
    }
    let wanted_tasks = spec.mode.as_ref().and_then(|m| m.replicated.as_ref()?.replicas);
    let template = spec.task_template.as_ref().and_then(|t| t.container_spec.as_ref());
    let tasks = tasks_of(manager, name).await?;
    let current = |task: &Task| {
        let container = task.spec.as_ref().and_then(|s| s.container_spec.as_ref());
        same_container(container, template)
    };
    let running = |task: &Task| task.status.as_ref().and_then(|s| s.state) == Some(TaskState::RUNNING);
    // A task on a node that is down is Swarm's to replace (a global
    // service's has nowhere else to go): it does not count.
    let nodes = manager.call("for the swarm's nodes", manager.docker.list_nodes(None::<ListNodesOptions>)).await?;
    let down: Vec<String> = nodes
        .iter()
        .filter(|n| n.status.as_ref().and_then(|s| s.state) != Some(NodeState::READY))
        .filter_map(|n| n.id.clone())
        .collect();
    let live: Vec<&Task> = tasks
        .iter()
        .filter(|t| t.desired_state == Some(TaskState::RUNNING))
        .filter(|t| t.node_id.as_ref().is_none_or(|node| !down.contains(node)))
        .collect();
    let ready = live.iter().filter(|t| current(t) && running(t)).count();
    let enough = match wanted_tasks {
        Some(replicas) => ready as i64 >= replicas && live.len() as i64 == replicas,
        None => ready >= 1 && ready == live.len(),
    };
    if enough {
        Ok(Progress::Converged)
    } else {
        let of = wanted_tasks.map_or_else(|| live.len().to_string(), |r| r.to_string());
        let names: HashMap<String, String> = nodes.iter().filter_map(|n| Some((n.id.clone()?, node_name(n)))).collect();
        let mut what = format!("{ready} of {of} tasks of {name} run its spec, healthy");
        for problem in task_errors(&tasks, &names) {
            what.push_str("; ");
            what.push_str(&problem);
        }
        Ok(Progress::Waiting(what))
    }
}

/// A node's lab label, else its hostname, else its id.
pub(crate) fn node_name(node: &bollard::models::Node) -> String {
    let label = node.spec.as_ref().and_then(|s| s.labels.as_ref()?.get(NODE_LABEL).cloned());
    let hostname = node.description.as_ref().and_then(|d| d.hostname.clone());
    label.or(hostname).or_else(|| node.id.clone()).unwrap_or_default()
}

/// What the engine said of the tasks that do not run: the latest error
/// of each node's (`unassigned` for a task no node took), as
/// `task on NODE: ERROR`.
fn task_errors(tasks: &[Task], names: &HashMap<String, String>) -> Vec<String> {
    let mut latest: std::collections::BTreeMap<String, &Task> = std::collections::BTreeMap::new();
    for task in tasks {
        let status = task.status.as_ref();
        if status.and_then(|s| s.state) == Some(TaskState::RUNNING) {
            continue;
        }
        if status.and_then(|s| s.err.as_deref()).is_none_or(str::is_empty) {
            continue;
        }
        let node = task
            .node_id
            .as_ref()
            .map_or_else(|| "unassigned".to_owned(), |id| names.get(id).cloned().unwrap_or_else(|| id.clone()));
        let when = |t: &Task| t.status.as_ref().and_then(|s| s.timestamp);
        match latest.get(&node) {
            Some(other) if when(other) > when(task) => {}
            _ => {
                latest.insert(node, task);
            }
        }
    }
    latest
        .into_iter()
        .map(|(node, task)| {
            let status = task.status.as_ref();
            let err = status.and_then(|s| s.err.as_deref()).unwrap_or_default();
            let state = status.and_then(|s| s.state).map(|s| s.to_string()).unwrap_or_default();
            format!("task on {node} ({state}): {err}")
        })
        .collect()
}

/// A task runs the service's spec: the same image, labels, environment
/// and config files (what a deploy changes).
fn same_container(task: Option<&TaskSpecContainerSpec>, service: Option<&TaskSpecContainerSpec>) -> bool {
    let key = |c: Option<&TaskSpecContainerSpec>| {
        c.map(|c| {
            let configs: Vec<Option<String>> =
                c.configs.iter().flatten().map(|config| config.config_name.clone()).collect();
            (c.image.clone(), c.labels.clone(), c.env.clone(), configs)
        })
    };
    key(task).is_some() && key(task) == key(service)
}

pub(crate) async fn tasks_of(manager: &Engine, service: &str) -> anyhow::Result<Vec<Task>> {
    let filters = HashMap::from([("service".to_owned(), vec![service.to_owned()])]);
    let options = ListTasksOptionsBuilder::default().filters(&filters).build();
    Ok(manager.call(format!("for the tasks of {service}"), manager.docker.list_tasks(Some(options))).await?)
}

/// One node of the swarm.
#[derive(Debug, Serialize)]
pub struct NodeStatus {
    pub id: String,
    /// The lab's node label, else its hostname.
    pub name: String,
    pub address: String,
    pub role: String,
    pub state: String,
    pub availability: String,
    pub leader: bool,
}

/// One task of the project.
#[derive(Debug, Serialize)]
pub struct TaskStatus {
    pub service: String,
    pub node: String,
    pub state: String,
    pub desired: String,
    pub version: Option<String>,
    pub image: String,
    pub message: String,
}

/// One service of the project.
#[derive(Debug, Serialize)]
pub struct ServiceStatus {
    pub name: String,
    pub role: String,
    pub image: String,
    pub version: Option<String>,
    /// Replicas wanted; none for a global service.
    pub replicas: Option<i64>,
    /// Swarm's update state (`updating`, `completed`, `rollback_completed`, ...).
    pub update: Option<String>,
    pub update_message: Option<String>,
}

/// What `harness status --target swarm` shows.
#[derive(Debug, Serialize)]
pub struct SwarmStatus {
    pub manager: String,
    pub url: String,
    pub nodes: Vec<NodeStatus>,
    pub services: Vec<ServiceStatus>,
    pub tasks: Vec<TaskStatus>,
    pub lock: Option<String>,
    pub history: Vec<history::Entry>,
}

pub async fn status(manager: &Engine, config: &Config) -> anyhow::Result<SwarmStatus> {
    let swarm = SwarmNames::new(config.project());
    let nodes = manager.call("for the swarm's nodes", manager.docker.list_nodes(None::<ListNodesOptions>)).await?;
    let mut nodes: Vec<NodeStatus> = nodes.into_iter().map(node_status).collect();
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    let node_names: HashMap<&str, &str> = nodes.iter().map(|n| (n.id.as_str(), n.name.as_str())).collect();
    let mut services = Vec::new();
    let mut tasks = Vec::new();
    let accessories = config.accessories.keys().map(|name| swarm.accessory(name));
    for name in accessories.chain([swarm.app.clone(), swarm.proxy.clone()]) {
        let name = &name;
        let Some(service) = inspect_service(manager, name).await? else { continue };
        let spec = service.spec.unwrap_or_default();
        let labels = spec.labels.clone().unwrap_or_default();
        let status = service.update_status.unwrap_or_default();
        services.push(ServiceStatus {
            name: name.clone(),
            role: labels.get(ROLE_LABEL).cloned().unwrap_or_default(),
            image: spec
                .task_template
                .as_ref()
                .and_then(|t| t.container_spec.as_ref()?.image.clone())
                .unwrap_or_default(),
            version: labels.get(VERSION_LABEL).cloned(),
            replicas: spec.mode.as_ref().and_then(|m| m.replicated.as_ref()?.replicas),
            update: status.state.map(|s| s.to_string()),
            update_message: status.message,
        });
        for task in tasks_of(manager, name).await? {
            // The running ones, and those that should run (a lost node's).
            let desired = task.desired_state.unwrap_or(TaskState::SHUTDOWN);
            let state = task.status.as_ref().and_then(|s| s.state).unwrap_or(TaskState::PENDING);
            if desired != TaskState::RUNNING && state != TaskState::RUNNING {
                continue;
            }
            let container = task.spec.as_ref().and_then(|s| s.container_spec.as_ref());
            let node = task.node_id.clone().unwrap_or_default();
            tasks.push(TaskStatus {
                service: name.clone(),
                node: node_names.get(node.as_str()).map_or(node.clone(), |n| n.to_string()),
                state: state.to_string(),
                desired: desired.to_string(),
                version: container.and_then(|c| c.labels.as_ref()?.get(VERSION_LABEL).cloned()),
                image: container.and_then(|c| c.image.clone()).unwrap_or_default(),
                message: task.status.and_then(|s| s.err.or(s.message)).unwrap_or_default(),
            });
        }
    }
    tasks.sort_by(|a, b| (&a.service, &a.node).cmp(&(&b.service, &b.node)));
    let (lock, entries) = crate::deploy::history::lock_and_last_entries(manager, config).await?;
    Ok(SwarmStatus {
        manager: config.swarm.docker_host.clone(),
        url: config.swarm_url()?,
        nodes,
        services,
        tasks,
        lock,
        history: entries,
    })
}

/// One node, as `harness status` shows it.
fn node_status(node: bollard::models::Node) -> NodeStatus {
    let name = node_name(&node);
    let spec = node.spec.unwrap_or_default();
    let status = node.status.unwrap_or_default();
    NodeStatus {
        id: node.id.unwrap_or_default(),
        name,
        address: status.addr.unwrap_or_default(),
        role: match spec.role {
            Some(NodeSpecRoleEnum::MANAGER) => "manager",
            Some(NodeSpecRoleEnum::WORKER) => "worker",
            _ => "-",
        }
        .to_owned(),
        state: status.state.unwrap_or(NodeState::UNKNOWN).to_string(),
        availability: match spec.availability {
            Some(NodeSpecAvailabilityEnum::ACTIVE) => "active",
            Some(NodeSpecAvailabilityEnum::PAUSE) => "pause",
            Some(NodeSpecAvailabilityEnum::DRAIN) => "drain",
            _ => "-",
        }
        .to_owned(),
        leader: node.manager_status.and_then(|m| m.leader).unwrap_or(false),
    }
}

/// The release the app's service runs, from its labels.
pub async fn app_release(manager: &Engine, config: &Config) -> anyhow::Result<Option<Release>> {
    let swarm = SwarmNames::new(config.project());
    let Some(service) = inspect_service(manager, &swarm.app).await? else { return Ok(None) };
    let labels = service.spec.and_then(|s| s.labels).unwrap_or_default();
    let label = |key: &str| labels.get(key).cloned().unwrap_or_default();
    let image = label(IMAGE_LABEL);
    let revision = Some(label(REVISION_LABEL));
    Ok((!image.is_empty()).then(|| Release::given(image, label(VERSION_LABEL), revision)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(node: Option<&str>, state: &str, err: &str, at: &str) -> Task {
        serde_json::from_value(serde_json::json!({
            "NodeID": node,
            "DesiredState": "running",
            "Status": { "State": state, "Err": err, "Timestamp": at },
        }))
        .unwrap()
    }

    #[test]
    fn a_waits_message_quotes_each_nodes_latest_task_error() {
        let names = HashMap::from([("n1".to_owned(), "node1".to_owned())]);
        let tasks = [
            task(Some("n1"), "rejected", "No such image: r/a@sha256:1", "2026-01-01T00:00:02Z"),
            task(Some("n1"), "failed", "older", "2026-01-01T00:00:01Z"),
            task(Some("n2"), "failed", "port 8080 is already in use", "2026-01-01T00:00:01Z"),
            task(Some("n2"), "running", "", "2026-01-01T00:00:03Z"),
            task(None, "pending", "no suitable node (insufficient resources)", "2026-01-01T00:00:01Z"),
            task(Some("n1"), "running", "", "2026-01-01T00:00:04Z"),
        ];
        assert_eq!(
            task_errors(&tasks, &names),
            [
                "task on n2 (failed): port 8080 is already in use",
                "task on node1 (rejected): No such image: r/a@sha256:1",
                "task on unassigned (pending): no suitable node (insufficient resources)",
            ]
        );
    }

    #[test]
    fn the_projects_network_must_be_an_overlay_of_the_swarm() {
        assert!(overlay("books-ms", Some("overlay"), Some("swarm")).is_ok());
        let err = overlay("books-ms", Some("bridge"), Some("local")).unwrap_err().to_string();
        assert!(err.contains("the network books-ms") && err.contains("bridge") && err.contains("local"), "{err}");
        assert!(overlay("books-ms", Some("overlay"), Some("local")).is_err());
        assert!(overlay("books-ms", None, None).unwrap_err().to_string().contains("(unknown)"));
    }
}
