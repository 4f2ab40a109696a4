//! What prod runs, read with prod's engine as an independent client (not
//! through the harness): the colours of the app, the proxy, what is
//! published, the deploy lock (which the swarm manager's engine holds
//! alike).

use bollard::models::{ContainerInspectResponse, ContainerSummary};
use bollard::query_parameters::ListContainersOptionsBuilder;
use bollard::Docker;

/// The project's containers on prod, running or not.
pub async fn containers(prod: &Docker) -> Vec<ContainerSummary> {
    let options = ListContainersOptionsBuilder::default().all(true).build();
    let all = super::bounded("listing prod's containers", prod.list_containers(Some(options))).await.unwrap();
    all.into_iter().filter(|c| name(c).starts_with("books-ms-")).collect()
}

pub fn name(container: &ContainerSummary) -> String {
    container.names.as_ref().and_then(|n| n.first()).map(|n| n.trim_start_matches('/').to_owned()).unwrap_or_default()
}

/// The colours (`books-ms-blue`, `books-ms-green`) that run.
pub async fn running_colours(prod: &Docker) -> Vec<String> {
    containers(prod)
        .await
        .iter()
        .filter(|c| c.state.map(|s| s.to_string()).as_deref() == Some("running"))
        .map(name)
        .filter(|n| n == "books-ms-blue" || n == "books-ms-green")
        .collect()
}

/// The one colour that runs (after a deploy, the old one is stopped).
pub async fn live_colour(prod: &Docker) -> ContainerInspectResponse {
    let running = running_colours(prod).await;
    assert_eq!(running.len(), 1, "exactly one colour runs on prod: {running:?}");
    super::bounded("inspecting the live colour", prod.inspect_container(&running[0], None)).await.unwrap()
}

/// Users reach prod only through the proxy: no other container of the
/// project publishes a port.
pub async fn assert_only_the_proxy_is_published(prod: &Docker) {
    for container in containers(prod).await {
        let published = container.ports.iter().flatten().any(|p| p.public_port.is_some());
        let name = name(&container);
        assert_eq!(published, name == "books-ms-proxy", "{name} publishes {:?}", container.ports);
    }
}

/// A container of prod by name, None when there is none.
pub async fn inspect(prod: &Docker, name: &str) -> Option<ContainerInspectResponse> {
    match super::bounded(&format!("inspecting {name}"), prod.inspect_container(name, None)).await {
        Ok(container) => Some(container),
        Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => None,
        Err(e) => panic!("cannot inspect {name} on prod: {e}"),
    }
}

/// The names of the project's containers on prod, running or not, sorted.
pub async fn names(prod: &Docker) -> Vec<String> {
    let mut names: Vec<String> = containers(prod).await.iter().map(name).collect();
    names.sort();
    names
}

/// Every container on prod named `PROJECT-…` (any project's), running or not.
pub async fn containers_named(prod: &Docker, project: &str) -> Vec<ContainerSummary> {
    let options = ListContainersOptionsBuilder::default().all(true).build();
    let all = super::bounded("listing prod's containers", prod.list_containers(Some(options))).await.unwrap();
    let prefix = format!("{project}-");
    all.into_iter().filter(|c| name(c).starts_with(&prefix)).collect()
}

/// The deploy lock's container (project `books-ms`), on prod's engine or
/// on the swarm manager's.
pub const LOCK: &str = "books-ms-deploy-lock";

/// No deploy lock on `engine` (prod's, or the swarm manager's).
pub async fn assert_no_lock(engine: &Docker) {
    let names = names(engine).await;
    assert!(!names.iter().any(|n| n == LOCK), "the deploy lock was left: {names:?}");
}
