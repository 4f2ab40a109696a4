//! What prod holds of the project: read through its engine, before a
//! deploy plans ([`observe`]) and for `harness status` ([`status`]).

use std::collections::HashMap;

use anyhow::Context;
use bollard::models::{ContainerInspectResponse, ContainerSummary, HealthStatusEnum};
use bollard::query_parameters::ListContainersOptionsBuilder;
use serde::Serialize;

use super::plan::{AccessoryState, Container, Observed, ProxyState};
use super::proxy::{self, Routing};
use super::HostNames;
use crate::deploy::names::*;
use crate::engine::{found, Engine, EngineError};
use crate::release::Release;

/// The network, each accessory `accessories` names (its container and
/// volume), and each container of the deploy by its name; the proxy's
/// routing read back from its configuration.
pub async fn observe(
    prod: &Engine,
    names: &HostNames,
    accessories: impl IntoIterator<Item = &str>,
) -> anyhow::Result<Observed> {
    let network = found(
        prod.call(format!("for the network {}", names.network), prod.docker.inspect_network(&names.network, None))
            .await,
    )?
    .is_some();
    let mut observed_accessories = std::collections::BTreeMap::new();
    for accessory in accessories {
        let name = names.accessory(accessory);
        let volume = found(prod.call(format!("for the volume {name}"), prod.docker.inspect_volume(&name)).await)?;
        let container = inspect(prod, &name).await?.map(container);
        observed_accessories.insert(accessory.to_owned(), AccessoryState { volume: volume.is_some(), container });
    }
    let proxy = match inspect(prod, &names.proxy).await?.map(container) {
        // A running proxy routes as its runtime says (a deploy killed between
        // writing the file and applying it leaves them apart); a stopped one
        // will route as its file says.
        Some(container) if container.running => {
            let runtime = prod.exec(&names.proxy, &proxy::runtime_api(&proxy::state_commands())).await;
            let routing = match runtime {
                Ok(Some((0, answer))) => proxy::from_runtime(&answer),
                _ => None,
            };
            let routing = match routing {
                Some(routing) => Some(routing),
                None => routing_file(prod, &names.proxy).await?,
            };
            Some(ProxyState { container, routing })
        }
        Some(container) => Some(ProxyState { container, routing: routing_file(prod, &names.proxy).await? }),
        None => None,
    };
    let mut legacy = Vec::new();
    for name in [&names.legacy_app, &names.legacy_previous] {
        if inspect(prod, name).await?.is_some() {
            legacy.push(name.clone());
        }
    }
    Ok(Observed {
        network,
        accessories: observed_accessories,
        proxy,
        blue: inspect(prod, &names.colour(Colour::Blue)).await?.map(container),
        green: inspect(prod, &names.colour(Colour::Green)).await?.map(container),
        legacy,
    })
}

/// What the proxy's configuration file routes where; None when it has none
/// the harness wrote.
pub async fn routing_file(prod: &Engine, name: &str) -> anyhow::Result<Option<Routing>> {
    let text = prod.read_file(name, proxy::CONFIG_DIR, proxy::CONFIG_FILE).await?;
    Ok(text.as_deref().and_then(proxy::parse))
}

/// The release a colour's container runs, from its labels.
pub async fn release_of(prod: &Engine, name: &str) -> Result<Option<Release>, EngineError> {
    let Some(container) = inspect(prod, name).await? else { return Ok(None) };
    let labels = container.config.and_then(|c| c.labels).unwrap_or_default();
    let label = |key: &str| labels.get(key).cloned().unwrap_or_default();
    let image = label(IMAGE_LABEL);
    let revision = Some(label(REVISION_LABEL));
    Ok((!image.is_empty()).then(|| Release::given(image, label(VERSION_LABEL), revision)))
}

async fn inspect(prod: &Engine, name: &str) -> Result<Option<ContainerInspectResponse>, EngineError> {
    prod.inspect_container(name).await
}

fn container(inspected: ContainerInspectResponse) -> Container {
    let state = inspected.state.unwrap_or_default();
    let running = state.running == Some(true);
    // An image without a Docker healthcheck is healthy while it runs (its
    // readiness is the harness's to check, through the proxy).
    let health = state.health.and_then(|h| h.status);
    let healthy = match health {
        Some(HealthStatusEnum::HEALTHY) => true,
        None | Some(HealthStatusEnum::NONE | HealthStatusEnum::EMPTY) => running,
        Some(_) => false,
    };
    Container { running, healthy, spec: inspected.config.and_then(|c| c.labels?.get(SPEC_LABEL).cloned()) }
}

/// One container of the project on prod.
#[derive(Debug, Serialize)]
pub struct ContainerStatus {
    pub name: String,
    pub role: String,
    pub image: String,
    pub version: Option<String>,
    pub state: String,
    pub status: String,
}

/// What `harness status` shows: which colour users reach, the project's
/// containers, the deploy lock, and the last deploys.
#[derive(Debug, Serialize)]
pub struct Status {
    pub prod: String,
    pub url: String,
    pub live: Option<Colour>,
    /// A colour reachable with a preview header (a deploy runs, or died).
    pub preview: Option<Colour>,
    pub containers: Vec<ContainerStatus>,
    /// Who holds the deploy lock.
    pub lock: Option<String>,
    /// The last deploys and rollbacks, oldest first.
    pub history: Vec<crate::deploy::history::Entry>,
}

pub async fn status(prod: &Engine, config: &crate::config::Config) -> anyhow::Result<Status> {
    let names = HostNames::new(config.project());
    let observed = observe(prod, &names, config.accessories.keys().map(String::as_str)).await?;
    let (lock, history) = crate::deploy::history::lock_and_last_entries(prod, config).await?;
    let routing = observed.proxy.as_ref().and_then(|p| p.routing.clone());
    Ok(Status {
        prod: config.prod.docker_host.clone(),
        url: config.prod_url()?,
        live: observed.live(),
        preview: routing.and_then(|r| r.preview).map(|p| p.colour),
        containers: containers(prod, config.project()).await?,
        lock,
        history,
    })
}

/// One line per container of the project on prod.
pub async fn containers(prod: &Engine, project: &str) -> anyhow::Result<Vec<ContainerStatus>> {
    let filters = HashMap::from([("label".to_owned(), vec![format!("{PROJECT_LABEL}={project}")])]);
    let options = ListContainersOptionsBuilder::default().all(true).filters(&filters).build();
    let containers: Vec<ContainerSummary> = prod
        .call("for its containers", prod.docker.list_containers(Some(options)))
        .await
        .context("listing containers on prod")?;
    let mut out: Vec<ContainerStatus> = containers
        .into_iter()
        .map(|c| {
            let labels = c.labels.unwrap_or_default();
            ContainerStatus {
                name: crate::deploy::containers::listed_name(c.names),
                role: labels.get(ROLE_LABEL).cloned().unwrap_or_default(),
                image: labels.get(IMAGE_LABEL).cloned().or(c.image).unwrap_or_default(),
                version: labels.get(VERSION_LABEL).cloned(),
                state: c.state.map(|s| s.to_string()).unwrap_or_default(),
                status: c.status.unwrap_or_default(),
            }
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}
