//! `harness deploy` and `harness status`: the service on prod, through prod's
//! Docker API only.
//!
//! On prod, for project `P` (default `books-ms`): a network `P`, a database
//! container `P-db` with its named volume `P-db` (created once, never
//! recreated by a deploy), and the app container `P-app` published on
//! `prod.app_port`. A deploy keeps the container it replaces, stopped, as
//! `P-app-previous`, and puts it back when the new one does not turn healthy:
//! a failed deploy leaves prod serving what it served before.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use bollard::auth::DockerCredentials;
use bollard::models::{
    ContainerCreateBody, ContainerSummary, EndpointSettings, HealthStatusEnum, HostConfig, NetworkCreateRequest,
    NetworkingConfig, PortBinding, RestartPolicy, RestartPolicyNameEnum, VolumeCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, ListContainersOptionsBuilder, LogsOptionsBuilder,
    RemoveContainerOptionsBuilder, RenameContainerOptionsBuilder, StopContainerOptionsBuilder,
};
use bollard::Docker;
use futures_util::StreamExt;
use serde::Serialize;

use crate::config::Config;
use crate::report::Reporter;

const PROJECT_LABEL: &str = "org.books-ms.project";
const ROLE_LABEL: &str = "org.books-ms.role";
const VERSION_LABEL: &str = "org.books-ms.version";
const REVISION_LABEL: &str = "org.books-ms.revision";
const IMAGE_LABEL: &str = "org.books-ms.image";
/// Everything a deploy decides about the app container, in one label: a
/// deploy whose spec equals the running container's has nothing to do.
const SPEC_LABEL: &str = "org.books-ms.spec";
/// The least time a container put back by a rollback gets to turn healthy.
const RESTORE_TIMEOUT_SECS: u64 = 60;

/// What to deploy: an image by digest, and what its `/version` must say.
#[derive(Debug, Clone, Serialize)]
pub struct Release {
    /// `REGISTRY/NAME@sha256:...`
    pub image: String,
    pub version: String,
    pub revision: String,
}

/// What a deploy did.
#[derive(Debug, Clone, Serialize)]
pub struct Deployed {
    pub container: String,
    pub image: String,
    pub url: String,
    pub previous: Option<String>,
    /// False when prod already ran this release, healthy, with this
    /// configuration: nothing was stopped or started.
    pub replaced: bool,
}

/// Names of everything on prod, from the project.
struct Names {
    network: String,
    db: String,
    volume: String,
    app: String,
    previous: String,
    lock: String,
}

impl Names {
    fn new(project: &str) -> Self {
        Names {
            network: project.to_owned(),
            db: format!("{project}-db"),
            volume: format!("{project}-db"),
            app: format!("{project}-app"),
            previous: format!("{project}-app-previous"),
            lock: format!("{project}-deploy-lock"),
        }
    }
}

pub async fn deploy(
    prod: &Docker,
    config: &Config,
    release: &Release,
    credentials: Option<DockerCredentials>,
    reporter: &Reporter,
) -> anyhow::Result<Deployed> {
    let names = Names::new(&config.prod.project);
    let host = &config.prod.docker_host;

    reporter.line(format!("pulling {} on prod", release.image));
    pull(prod, &release.image, credentials.clone(), reporter).await.with_context(|| format!("prod ({host}): pulling {}", release.image))?;

    // Kamal's habit: one deploy at a time. The lock is a container created
    // (never started) under a fixed name: creating it is atomic on the engine.
    let lock = DeployLock::take(prod, &names, &release.image).await?;
    let result = deploy_locked(prod, config, release, credentials, &names, reporter).await;
    lock.release(prod).await;
    result
}

async fn deploy_locked(
    prod: &Docker,
    config: &Config,
    release: &Release,
    credentials: Option<DockerCredentials>,
    names: &Names,
    reporter: &Reporter,
) -> anyhow::Result<Deployed> {
    let host = &config.prod.docker_host;
    ensure_network(prod, names).await.with_context(|| format!("prod ({host}): network {}", names.network))?;
    ensure_database(prod, config, names, credentials, reporter).await.with_context(|| format!("prod ({host}): database {}", names.db))?;

    let mut body = app_body(config, release, names);
    let spec = app_spec(&body);
    if serves_already(prod, &names.app, &spec).await {
        reporter.line(format!("{} already runs {} and is healthy: nothing to replace", names.app, release.image));
        return Ok(Deployed { container: names.app.clone(), image: release.image.clone(), url: config.prod_url()?, previous: None, replaced: false });
    }

    // Keep what serves now, stopped, for a rollback.
    let previous = match container_exists(prod, &names.app).await? {
        false => None,
        true => {
            remove_if_exists(prod, &names.previous).await?;
            prod.rename_container(&names.app, RenameContainerOptionsBuilder::default().name(&names.previous).build())
                .await
                .with_context(|| format!("prod ({host}): renaming {} to {}", names.app, names.previous))?;
            stop(prod, &names.previous).await?;
            Some(names.previous.clone())
        }
    };

    reporter.line(format!("starting {} from {}", names.app, release.image));
    body.labels.get_or_insert_with(HashMap::new).insert(SPEC_LABEL.to_owned(), spec);
    let started = start_app(prod, names, body).await;
    let healthy = match started {
        Ok(()) => wait_healthy(prod, config, release, &names.app, reporter).await,
        Err(e) => Err(e),
    };
    if let Err(failure) = healthy {
        let logs = last_logs(prod, &names.app, 20).await;
        remove_if_exists(prod, &names.app).await.ok();
        let rollback = match &previous {
            Some(previous) => {
                restore(prod, config, previous, &names.app).await.map(|()| format!("; {} is serving again, healthy", names.app))
            }
            None => Ok(String::new()),
        };
        let rollback = rollback.unwrap_or_else(|e| format!("; putting the previous container back failed too: {e:#}"));
        bail!(
            "prod ({host}): {} from {} failed its start: {failure:#}{rollback}\nits last log lines:\n{logs}",
            names.app,
            release.image
        );
    }
    Ok(Deployed {
        container: names.app.clone(),
        image: release.image.clone(),
        url: config.prod_url()?,
        previous,
        replaced: true,
    })
}

/// What the app container is made of, as a fingerprint of everything a
/// deploy sets on it; see SPEC_LABEL. (A different harness may compute
/// another for the same container: the cost is one needless replacement.)
fn app_spec(body: &ContainerCreateBody) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    // serde_json writes a HashMap's keys in no fixed order: go through a
    // Value, whose maps are sorted.
    let value = serde_json::to_value(body).map(|v| v.to_string()).unwrap_or_default();
    value.hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

/// The app container runs, healthy, from the same spec.
async fn serves_already(prod: &Docker, name: &str, spec: &str) -> bool {
    let Ok(container) = prod.inspect_container(name, None).await else { return false };
    let same = container.config.and_then(|c| c.labels).and_then(|l| l.get(SPEC_LABEL).cloned()).as_deref() == Some(spec);
    let state = container.state.unwrap_or_default();
    same && state.running == Some(true) && state.health.and_then(|h| h.status) == Some(HealthStatusEnum::HEALTHY)
}

/// Pulls an image on prod, bounded in time, with a bar per layer being
/// downloaded (on a terminal).
async fn pull(prod: &Docker, image: &str, credentials: Option<DockerCredentials>, reporter: &Reporter) -> anyhow::Result<()> {
    let options = CreateImageOptionsBuilder::default().from_image(image).build();
    let mut stream = prod.create_image(Some(options), None, credentials);
    let mut layers: HashMap<String, indicatif::ProgressBar> = HashMap::new();
    let pulled = async {
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| anyhow!("{e}"))?;
            let (Some(id), Some(status)) = (info.id, info.status) else { continue };
            let detail = info.progress_detail.unwrap_or_default();
            match (status.as_str(), detail.current, detail.total) {
                ("Downloading", Some(current), Some(total)) if total > 0 => {
                    let bar = layers.entry(id.clone()).or_insert_with(|| reporter.bytes(format!("layer {id}"), total as u64));
                    bar.set_position(current as u64);
                }
                ("Download complete" | "Pull complete" | "Already exists", _, _) => {
                    if let Some(bar) = layers.remove(&id) {
                        bar.finish_and_clear();
                    }
                }
                _ => {}
            }
        }
        anyhow::Ok(())
    };
    let result = tokio::time::timeout(Duration::from_secs(300), pulled).await.map_err(|_| anyhow!("no end to the pull within 300 s"));
    for bar in layers.into_values() {
        bar.finish_and_clear();
    }
    result?
}

async fn ensure_network(prod: &Docker, names: &Names) -> anyhow::Result<()> {
    if prod.inspect_network(&names.network, None).await.is_ok() {
        return Ok(());
    }
    let labels = HashMap::from([(PROJECT_LABEL.to_owned(), names.network.clone())]);
    prod.create_network(NetworkCreateRequest { name: names.network.clone(), labels: Some(labels), ..Default::default() })
        .await
        .context("creating it")?;
    Ok(())
}

/// The database and its volume: started when stopped, created when missing,
/// never recreated (its data lives in the named volume).
async fn ensure_database(
    prod: &Docker,
    config: &Config,
    names: &Names,
    credentials: Option<DockerCredentials>,
    reporter: &Reporter,
) -> anyhow::Result<()> {
    if prod.inspect_volume(&names.volume).await.is_err() {
        prod.create_volume(VolumeCreateRequest { name: Some(names.volume.clone()), ..Default::default() })
            .await
            .with_context(|| format!("creating the volume {}", names.volume))?;
    }
    if let Ok(existing) = prod.inspect_container(&names.db, None).await {
        if !existing.state.and_then(|s| s.running).unwrap_or(false) {
            prod.start_container(&names.db, None).await.context("starting it")?;
        }
        return Ok(());
    }
    let image = &config.prod.database_image;
    pull(prod, image, credentials, reporter).await.with_context(|| format!("pulling {image}"))?;
    let body = ContainerCreateBody {
        image: Some(image.clone()),
        labels: Some(HashMap::from([
            (PROJECT_LABEL.to_owned(), config.prod.project.clone()),
            (ROLE_LABEL.to_owned(), "db".to_owned()),
        ])),
        host_config: Some(HostConfig {
            binds: Some(vec![format!("{}:/data/db", names.volume)]),
            restart_policy: Some(RestartPolicy { name: Some(RestartPolicyNameEnum::UNLESS_STOPPED), maximum_retry_count: None }),
            ..Default::default()
        }),
        networking_config: Some(on_network(&names.network, "db")),
        ..Default::default()
    };
    prod.create_container(Some(CreateContainerOptionsBuilder::default().name(&names.db).build()), body)
        .await
        .context("creating it")?;
    prod.start_container(&names.db, None).await.context("starting it")?;
    Ok(())
}

fn on_network(network: &str, alias: &str) -> NetworkingConfig {
    NetworkingConfig {
        endpoints_config: Some(HashMap::from([(
            network.to_owned(),
            EndpointSettings { aliases: Some(vec![alias.to_owned()]), ..Default::default() },
        )])),
    }
}

/// The app container as a deploy creates it, without its spec label.
fn app_body(config: &Config, release: &Release, names: &Names) -> ContainerCreateBody {
    let port = config.prod.app_port.to_string();
    ContainerCreateBody {
        image: Some(release.image.clone()),
        env: Some(vec!["DB_HOST=db".to_owned()]),
        labels: Some(HashMap::from([
            (PROJECT_LABEL.to_owned(), config.prod.project.clone()),
            (ROLE_LABEL.to_owned(), "app".to_owned()),
            (VERSION_LABEL.to_owned(), release.version.clone()),
            (REVISION_LABEL.to_owned(), release.revision.clone()),
            (IMAGE_LABEL.to_owned(), release.image.clone()),
        ])),
        exposed_ports: Some(vec!["8080/tcp".to_owned()]),
        host_config: Some(HostConfig {
            port_bindings: Some(HashMap::from([(
                "8080/tcp".to_owned(),
                Some(vec![PortBinding { host_ip: None, host_port: Some(port) }]),
            )])),
            restart_policy: Some(RestartPolicy { name: Some(RestartPolicyNameEnum::UNLESS_STOPPED), maximum_retry_count: None }),
            ..Default::default()
        }),
        networking_config: Some(on_network(&names.network, "app")),
        ..Default::default()
    }
}

async fn start_app(prod: &Docker, names: &Names, body: ContainerCreateBody) -> anyhow::Result<()> {
    prod.create_container(Some(CreateContainerOptionsBuilder::default().name(&names.app).build()), body)
        .await
        .with_context(|| format!("creating {}", names.app))?;
    prod.start_container(&names.app, None).await.with_context(|| format!("starting {}", names.app))?;
    Ok(())
}

/// Healthy by Docker's healthcheck, then `/version` on prod's address must
/// report the revision that was built.
async fn wait_healthy(prod: &Docker, config: &Config, release: &Release, name: &str, reporter: &Reporter) -> anyhow::Result<()> {
    let spinner = reporter.spinner(format!("waiting for {name} to turn healthy"));
    wait_docker_healthy(prod, name, config.prod.health_timeout_secs, "prod.health_timeout_secs", false).await?;
    spinner.set_message(format!("checking {name}'s /version"));
    let url = format!("{}/version", config.prod_url()?);
    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build()?;
    let version: serde_json::Value = http
        .get(&url)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .with_context(|| format!("GET {url}"))?
        .json()
        .await
        .with_context(|| format!("GET {url}: not JSON"))?;
    spinner.finish_and_clear();
    match version["revision"].as_str() {
        Some(revision) if revision == release.revision => Ok(()),
        Some(other) => bail!("{url} reports revision {other}, expected {}", release.revision),
        None => bail!("{url} reports no revision: {version}"),
    }
}

/// Until Docker's healthcheck reports the container healthy, within
/// `timeout_secs` (named `setting` in the error). A container whose image
/// has no healthcheck passes once it runs when `no_healthcheck_ok`.
async fn wait_docker_healthy(prod: &Docker, name: &str, timeout_secs: u64, setting: &str, no_healthcheck_ok: bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(timeout_secs);
    loop {
        let state = prod.inspect_container(name, None).await?.state.unwrap_or_default();
        if state.running == Some(false) {
            bail!("it stopped (exit code {})", state.exit_code.unwrap_or_default());
        }
        match state.health.and_then(|h| h.status) {
            Some(HealthStatusEnum::HEALTHY) => return Ok(()),
            Some(HealthStatusEnum::UNHEALTHY) => bail!("Docker's healthcheck reports it unhealthy"),
            None | Some(HealthStatusEnum::NONE | HealthStatusEnum::EMPTY) if no_healthcheck_ok && state.running == Some(true) => return Ok(()),
            _ if Instant::now() > deadline => bail!("not healthy within {timeout_secs} s ({setting})"),
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

async fn container_exists(prod: &Docker, name: &str) -> anyhow::Result<bool> {
    match prod.inspect_container(name, None).await {
        Ok(_) => Ok(true),
        Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(false),
        Err(e) => Err(anyhow!("inspecting {name}: {e}")),
    }
}

async fn stop(prod: &Docker, name: &str) -> anyhow::Result<()> {
    // The service finishes requests in flight on SIGTERM within 10 s.
    let options = StopContainerOptionsBuilder::default().t(15).build();
    match prod.stop_container(name, Some(options)).await {
        Ok(()) | Err(bollard::errors::Error::DockerResponseServerError { status_code: 304, .. }) => Ok(()),
        Err(e) => Err(anyhow!("stopping {name}: {e}")),
    }
}

async fn remove_if_exists(prod: &Docker, name: &str) -> anyhow::Result<()> {
    let options = RemoveContainerOptionsBuilder::default().force(true).build();
    match prod.remove_container(name, Some(options)).await {
        Ok(()) | Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(()),
        Err(e) => Err(anyhow!("removing {name}: {e}")),
    }
}

/// Puts the previous container back under the app's name and starts it.
async fn restore(prod: &Docker, config: &Config, previous: &str, app: &str) -> anyhow::Result<()> {
    prod.rename_container(previous, RenameContainerOptionsBuilder::default().name(app).build())
        .await
        .with_context(|| format!("renaming {previous} back to {app}"))?;
    prod.start_container(app, None).await.with_context(|| format!("starting {app}"))?;
    // It was healthy before: give it at least RESTORE_TIMEOUT_SECS, however
    // short the timeout that failed the new container.
    let timeout = config.prod.health_timeout_secs.max(RESTORE_TIMEOUT_SECS);
    let setting = format!("the larger of prod.health_timeout_secs and {RESTORE_TIMEOUT_SECS}");
    wait_docker_healthy(prod, app, timeout, &setting, true).await.with_context(|| format!("{app}, put back"))
}

async fn last_logs(prod: &Docker, name: &str, lines: usize) -> String {
    let options = LogsOptionsBuilder::default().stdout(true).stderr(true).tail(&lines.to_string()).build();
    let mut stream = prod.logs(name, Some(options));
    let mut out = String::new();
    let collect = async {
        while let Some(Ok(chunk)) = stream.next().await {
            out.push_str(&chunk.to_string());
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), collect).await;
    if out.trim().is_empty() {
        "(no output)".to_owned()
    } else {
        out.lines().map(|l| format!("  {l}")).collect::<Vec<_>>().join("\n")
    }
}

/// A container created under a fixed name while a deploy runs.
struct DeployLock {
    name: String,
}

impl DeployLock {
    async fn take(prod: &Docker, names: &Names, image: &str) -> anyhow::Result<Self> {
        let holder = format!("pid {} since {}", std::process::id(), humantime_now());
        let body = ContainerCreateBody {
            image: Some(image.to_owned()),
            labels: Some(HashMap::from([
                (PROJECT_LABEL.to_owned(), names.network.clone()),
                (ROLE_LABEL.to_owned(), "deploy-lock".to_owned()),
                ("org.books-ms.lock.holder".to_owned(), holder),
            ])),
            ..Default::default()
        };
        match prod.create_container(Some(CreateContainerOptionsBuilder::default().name(&names.lock).build()), body).await {
            Ok(_) => Ok(DeployLock { name: names.lock.clone() }),
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 409, .. }) => {
                let holder = prod
                    .inspect_container(&names.lock, None)
                    .await
                    .ok()
                    .and_then(|c| c.config?.labels?.get("org.books-ms.lock.holder").cloned())
                    .unwrap_or_else(|| "unknown".to_owned());
                bail!(
                    "another deploy holds the lock on prod (container {}, held by {holder}); wait for it, or if it died, remove the lock: docker rm {}",
                    names.lock,
                    names.lock
                )
            }
            Err(e) => Err(anyhow!("taking the deploy lock {}: {e}", names.lock)),
        }
    }

    async fn release(self, prod: &Docker) {
        if let Err(e) = remove_if_exists(prod, &self.name).await {
            eprintln!("harness: warning: could not release the deploy lock: {e:#}");
        }
    }
}

fn humantime_now() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default();
    format!("unix time {secs}")
}

/// One line per container of the project on prod.
#[derive(Debug, Serialize)]
pub struct ContainerStatus {
    pub name: String,
    pub role: String,
    pub image: String,
    pub version: Option<String>,
    pub state: String,
    pub status: String,
}

pub async fn status(prod: &Docker, config: &Config) -> anyhow::Result<Vec<ContainerStatus>> {
    let filters = HashMap::from([("label".to_owned(), vec![format!("{PROJECT_LABEL}={}", config.prod.project)])]);
    let options = ListContainersOptionsBuilder::default().all(true).filters(&filters).build();
    let containers: Vec<ContainerSummary> = prod.list_containers(Some(options)).await.context("listing containers on prod")?;
    let mut out: Vec<ContainerStatus> = containers
        .into_iter()
        .map(|c| {
            let labels = c.labels.unwrap_or_default();
            ContainerStatus {
                name: c.names.unwrap_or_default().first().map(|n| n.trim_start_matches('/').to_owned()).unwrap_or_default(),
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
