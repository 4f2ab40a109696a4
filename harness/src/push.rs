//! `harness push` (steps "push" and "push-tests"): an image's two tags,
//! `VERSION` and `latest`, pushed to the registry by the cd engine; then the
//! digest read back from the registry's own API and recorded in
//! `.harness/last-push.json`, where the deploy step finds what to pull
//! (`REGISTRY/NAME@DIGEST`, see [`load_last`]).
//!
//! Credentials come from the configuration (`registry.username` and
//! `registry.password`, e.g. `HARNESS_REGISTRY__USERNAME`) or else from the
//! docker config file's `auths` entry for the registry (what `docker login`
//! wrote). They are never printed: [`Credentials`]'s Debug redacts the
//! password, and errors name only the user.
//!
//! Before anything is pushed, the registry is asked `GET /v2/` with the
//! credentials: a registry that is down, or that refuses them, fails the
//! step in seconds, before the engine starts (and retries) uploads.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use base64::Engine;
use bollard::auth::DockerCredentials;
use bollard::query_parameters::{PushImageOptionsBuilder, TagImageOptionsBuilder};
use bollard::Docker;
use futures_util::StreamExt;
use indicatif::{HumanBytes, ProgressBar};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::docker::API_TIMEOUT;
use crate::plan::Plan;
use crate::report::Reporter;
use crate::version::Version;

/// Where the last push is recorded, relative to the repo root.
pub const LAST_PUSH: &str = ".harness/last-push.json";
/// What `docker push` sends for a manifest; asked for to read its digest.
const MANIFEST_V2: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// One push of one tag. The tests image is about 1 GB (the Rust toolchain);
/// its first push to an empty registry takes under a minute here, so ten
/// leave room for a slow disk without letting a hung engine hang the run.
const PUSH_TIMEOUT: Duration = Duration::from_secs(600);
/// One request to the registry's API: it answers in milliseconds when up.
const HTTP_TIMEOUT: Duration = Duration::from_secs(15);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

// ------------------------------------------------------------ credentials

/// A user and password for the registry. Debug never shows the password.
#[derive(Clone)]
pub struct Credentials {
    pub username: String,
    password: SecretString,
    /// Where they came from, for error messages.
    pub source: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("source", &self.source)
            .finish()
    }
}

impl Credentials {
    /// For the engine (push, pull). Hand it to bollard only: its Debug
    /// shows the password.
    pub fn to_docker(&self, registry: &str) -> DockerCredentials {
        DockerCredentials {
            username: Some(self.username.clone()),
            password: Some(self.password.expose_secret().to_owned()),
            serveraddress: Some(registry.to_owned()),
            ..Default::default()
        }
    }
}

/// The registry's credentials: the configuration's, else the docker config
/// file's entry; `None` when neither has any (an anonymous registry).
pub fn credentials(config: &Config) -> anyhow::Result<Option<Credentials>> {
    let registry = &config.registry;
    match (&registry.username, &registry.password) {
        (Some(username), Some(password)) => {
            return Ok(Some(Credentials {
                username: username.clone(),
                password: password.clone(),
                source: "registry.username/password".to_owned(),
            }))
        }
        (Some(_), None) | (None, Some(_)) => anyhow::bail!(
            "registry.username and registry.password go together (HARNESS_REGISTRY__USERNAME and \
             HARNESS_REGISTRY__PASSWORD): set both, or neither to use the docker config file"
        ),
        (None, None) => {}
    }
    let Some(path) = docker_config_path(config) else { return Ok(None) };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read the docker config file {}", path.display())),
    };
    let found = from_docker_config(&text, &registry.address)
        .map_err(|e| anyhow::anyhow!("the docker config file {}: {e}", path.display()))?;
    Ok(found.map(|(username, password)| Credentials { username, password, source: path.display().to_string() }))
}

/// The same, as the engine takes them (for pulls by other steps).
pub fn docker_credentials(config: &Config) -> anyhow::Result<Option<DockerCredentials>> {
    Ok(credentials(config)?.map(|c| c.to_docker(&config.registry.address)))
}

/// `registry.docker_config`, else `$DOCKER_CONFIG/config.json`, else
/// `~/.docker/config.json`, as the docker CLI looks.
fn docker_config_path(config: &Config) -> Option<PathBuf> {
    if let Some(path) = &config.registry.docker_config {
        return Some(path.clone());
    }
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".docker/config.json"))
}

#[derive(Deserialize)]
struct DockerConfigFile {
    #[serde(default)]
    auths: HashMap<String, AuthEntry>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: HashMap<String, String>,
}

#[derive(Deserialize)]
struct AuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
    identitytoken: Option<String>,
}

/// The user and password the docker config file holds for `registry`.
fn from_docker_config(text: &str, registry: &str) -> Result<Option<(String, SecretString)>, String> {
    let file: DockerConfigFile = serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
    // `docker login` keys by `HOST:PORT`; older clients wrote URLs.
    let entry = file
        .auths
        .get(registry)
        .or_else(|| file.auths.iter().find(|(key, _)| registry_host(key) == registry).map(|(_, entry)| entry));
    let helper = file.cred_helpers.get(registry).or(file.creds_store.as_ref());
    let Some(entry) = entry else {
        return match helper {
            Some(helper) => Err(format!(
                "the credentials of {registry} are kept by docker-credential-{helper}, which the harness does \
                 not run; set HARNESS_REGISTRY__USERNAME and HARNESS_REGISTRY__PASSWORD"
            )),
            None => Ok(None),
        };
    };
    if let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|_| format!("the `auth` of {registry} is not base64"))?;
        let decoded = String::from_utf8(decoded).map_err(|_| format!("the `auth` of {registry} is not UTF-8"))?;
        let (user, password) =
            decoded.split_once(':').ok_or_else(|| format!("the `auth` of {registry} is not user:password"))?;
        return Ok(Some((user.to_owned(), SecretString::from(password.to_owned()))));
    }
    if let (Some(user), Some(password)) = (&entry.username, &entry.password) {
        return Ok(Some((user.clone(), SecretString::from(password.clone()))));
    }
    if entry.identitytoken.is_some() {
        return Err(format!(
            "{registry} has an identity token (OAuth), which the harness does not use; set \
             HARNESS_REGISTRY__USERNAME and HARNESS_REGISTRY__PASSWORD"
        ));
    }
    Ok(None)
}

/// `https://host:port/v1/` → `host:port`, as the docker CLI compares keys.
fn registry_host(key: &str) -> &str {
    let key = key.strip_prefix("https://").or_else(|| key.strip_prefix("http://")).unwrap_or(key);
    key.split('/').next().unwrap_or(key)
}

// ------------------------------------------------------------ errors

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("cannot reach the registry at {registry}: {detail}: is it running? `harness lab status`")]
    Unreachable { registry: String, detail: String },
    #[error(
        "the registry {registry} refused the credentials of {user} (from {source_}): {detail}; \
         run `docker login {registry}` or set HARNESS_REGISTRY__USERNAME/PASSWORD"
    )]
    Refused { registry: String, user: String, source_: String, detail: String },
    #[error(
        "the registry {registry} asks for credentials and there are none (neither registry.username/password \
         nor an entry in {looked_in}); run `docker login {registry}` or set HARNESS_REGISTRY__USERNAME/PASSWORD"
    )]
    NoCredentials { registry: String, looked_in: String },
    #[error("the registry {registry} answered {what} with {status}")]
    Registry { registry: String, what: String, status: String },
    #[error("asking the cd engine {what}: {source}")]
    Engine { what: String, source: bollard::errors::Error },
    #[error("the cd engine did not answer {what} within {} s", API_TIMEOUT.as_secs())]
    EngineTimeout { what: String },
    #[error("no image {image} on the cd engine: run `harness build` first")]
    NoImage { image: String },
    #[error("pushing {image}: {detail}")]
    Push { image: String, detail: String },
    #[error("pushing {image} took longer than {} s", PUSH_TIMEOUT.as_secs())]
    Timeout { image: String },
    #[error("the registry {registry} has no manifest for {image} right after its push")]
    NotInRegistry { registry: String, image: String },
    #[error("the engine pushed {image} as {pushed}, but the registry serves {served}")]
    DigestMismatch { image: String, pushed: String, served: String },
}

// ------------------------------------------------------------ the registry's API

/// The registry as the harness talks to it over HTTP(S).
struct Registry {
    address: String,
    base: String,
    http: reqwest::Client,
    credentials: Option<Credentials>,
    /// The docker config file, named when credentials are missing.
    looked_in: String,
}

impl Registry {
    /// Reaches the registry and checks the credentials (`GET /v2/`). Plain
    /// HTTP where the cd engine pushes over plain HTTP (a registry in its
    /// insecure list), HTTPS elsewhere.
    async fn open(docker: &Docker, config: &Config, credentials: Option<Credentials>) -> Result<Self, PushError> {
        let address = config.registry.address.clone();
        let scheme = if engine_pushes_in_plain_http(docker, &address).await? { "http" } else { "https" };
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(HTTP_TIMEOUT)
            .build()
            .map_err(|e| PushError::Unreachable { registry: address.clone(), detail: e.to_string() })?;
        let looked_in = docker_config_path(config)
            .map_or_else(|| "the docker config file ($HOME is not set)".to_owned(), |p| p.display().to_string());
        let registry = Registry { base: format!("{scheme}://{address}"), address, http, credentials, looked_in };
        let response = registry.send(registry.http.get(format!("{}/v2/", registry.base))).await?;
        match response.status() {
            status if status.is_success() => Ok(registry),
            reqwest::StatusCode::UNAUTHORIZED => Err(registry.refused(&format!("GET /v2/: {}", response.status()))),
            status => Err(PushError::Registry {
                registry: registry.address.clone(),
                what: "GET /v2/".to_owned(),
                status: status.to_string(),
            }),
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<reqwest::Response, PushError> {
        let request = match &self.credentials {
            Some(c) => request.basic_auth(&c.username, Some(c.password.expose_secret())),
            None => request,
        };
        request
            .send()
            .await
            .map_err(|e| PushError::Unreachable { registry: self.address.clone(), detail: error_chain(&e) })
    }

    fn refused(&self, detail: &str) -> PushError {
        match &self.credentials {
            Some(c) => PushError::Refused {
                registry: self.address.clone(),
                user: c.username.clone(),
                source_: c.source.clone(),
                detail: detail.to_owned(),
            },
            None => PushError::NoCredentials { registry: self.address.clone(), looked_in: self.looked_in.clone() },
        }
    }

    /// The digest the registry serves for `name:tag` (`HEAD` of its
    /// manifest), `None` when it has no such manifest.
    async fn digest(&self, name: &str, tag: &str) -> Result<Option<String>, PushError> {
        let what = format!("HEAD /v2/{name}/manifests/{tag}");
        let request = self
            .http
            .head(format!("{}/v2/{name}/manifests/{tag}", self.base))
            .header(reqwest::header::ACCEPT, MANIFEST_V2);
        let response = self.send(request).await?;
        match response.status() {
            reqwest::StatusCode::NOT_FOUND => Ok(None),
            reqwest::StatusCode::UNAUTHORIZED => Err(self.refused(&format!("{what}: {}", response.status()))),
            status if status.is_success() => {
                let digest = response.headers().get("docker-content-digest").and_then(|v| v.to_str().ok());
                digest.map(|d| Some(d.to_owned())).ok_or_else(|| PushError::Registry {
                    registry: self.address.clone(),
                    what,
                    status: format!("{status} without a Docker-Content-Digest header"),
                })
            }
            status => Err(PushError::Registry { registry: self.address.clone(), what, status: status.to_string() }),
        }
    }
}

/// Whether the engine talks to `address` over plain HTTP: the registry is
/// listed insecure by the engine (`insecure-registries` in daemon.json, or
/// an address in its insecure ranges, 127.0.0.0/8 by default).
async fn engine_pushes_in_plain_http(docker: &Docker, address: &str) -> Result<bool, PushError> {
    const WHAT: &str = "for its registry settings (info)";
    let info = tokio::time::timeout(API_TIMEOUT, docker.info())
        .await
        .map_err(|_| PushError::EngineTimeout { what: WHAT.into() })?
        .map_err(|source| PushError::Engine { what: WHAT.into(), source })?;
    let Some(registries) = info.registry_config else { return Ok(false) };
    if let Some(secure) = registries.index_configs.as_ref().and_then(|c| c.get(address)).and_then(|i| i.secure) {
        return Ok(!secure);
    }
    let host = address.rsplit_once(':').map_or(address, |(host, _)| host).trim_matches(['[', ']']);
    let Ok(ip) = host.parse::<IpAddr>() else { return Ok(false) };
    Ok(registries.insecure_registry_cidrs.unwrap_or_default().iter().any(|cidr| in_cidr(ip, cidr)))
}

/// `ip` in `a.b.c.d/n` (or an IPv6 range).
fn in_cidr(ip: IpAddr, cidr: &str) -> bool {
    let Some((network, bits)) = cidr.split_once('/') else { return false };
    let (Ok(network), Ok(bits)) = (network.parse::<IpAddr>(), bits.parse::<u32>()) else { return false };
    let (ip, network, width) = match (ip, network) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (u128::from(u32::from(a)), u128::from(u32::from(b)), 32),
        (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b), 128),
        _ => return false,
    };
    if bits > width {
        return false;
    }
    let mask = if bits == 0 { 0 } else { (u128::MAX >> (128 - width)) & !((1u128 << (width - bits)) - 1) };
    ip & mask == network & mask
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let line = cause.to_string();
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        next = cause.source();
    }
    text
}

// ------------------------------------------------------------ the record

/// One pushed image, as the deploy step needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushRecord {
    /// `REGISTRY/NAME`.
    pub image: String,
    /// The version tag pushed (`latest` was pushed beside it).
    pub tag: String,
    /// `sha256:...`, as the registry serves it.
    pub digest: String,
    pub version: String,
    pub revision: String,
    /// RFC 3339, UTC.
    pub pushed_at: String,
}

impl PushRecord {
    /// `REGISTRY/NAME@sha256:...`: what to pull.
    pub fn reference(&self) -> String {
        format!("{}@{}", self.image, self.digest)
    }
}

/// The file: the service image (what deploys read) and the tests image.
#[derive(Debug, Default, Serialize, Deserialize)]
struct LastPush {
    service: Option<PushRecord>,
    tests: Option<PushRecord>,
}

/// The service image pushed last from `repo`.
pub fn load_last(repo: &Path) -> anyhow::Result<PushRecord> {
    let path = repo.join(LAST_PUSH);
    read_record(&path)?
        .service
        .with_context(|| format!("{} records no push of the service image: run `harness push` first", path.display()))
}

fn read_record(path: &Path) -> anyhow::Result<LastPush> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            anyhow::bail!("no push recorded yet ({} is missing): run `harness push` first", path.display())
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    serde_json::from_str(&text).with_context(|| format!("{} is not a push record", path.display()))
}

/// Writes the file whole or not at all (a reader never sees half of it).
fn write_record(repo: &Path, update: impl FnOnce(&mut LastPush)) -> anyhow::Result<()> {
    let path = repo.join(LAST_PUSH);
    let mut record = read_record(&path).unwrap_or_default();
    update(&mut record);
    let dir = path.parent().expect("LAST_PUSH has a folder");
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let temporary = path.with_extension(format!("json.{}", std::process::id()));
    std::fs::write(&temporary, serde_json::to_string_pretty(&record)? + "\n")
        .with_context(|| format!("cannot write {}", temporary.display()))?;
    std::fs::rename(&temporary, &path).with_context(|| format!("cannot write {}", path.display()))
}

// ------------------------------------------------------------ pushing

/// `harness push`: the service image, then the tests image; prints what
/// was pushed (JSON with `--json`).
pub async fn command(config: &Config, plan: &Plan, json: bool, reporter: &Reporter) -> anyhow::Result<()> {
    let service = push_service(&plan.repo, config, &plan.version, reporter).await?;
    let tests = push_tests(&plan.repo, config, &plan.version, reporter).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "service": service, "tests": tests }))?);
    } else {
        for record in [&service, &tests] {
            println!("{}:{} {}", record.image, record.tag, record.reference());
        }
    }
    Ok(())
}

/// Step "push": the service image, recorded as the one to deploy.
pub async fn push_service(
    repo: &Path,
    config: &Config,
    version: &Version,
    reporter: &Reporter,
) -> anyhow::Result<PushRecord> {
    let record = push(config, &config.service_repository(), version, reporter).await?;
    write_record(repo, |last| {
        *last = LastPush { service: Some(record.clone()), tests: None };
    })?;
    Ok(record)
}

/// Step "push-tests" (the pipeline's last): the tests image.
pub async fn push_tests(
    repo: &Path,
    config: &Config,
    version: &Version,
    reporter: &Reporter,
) -> anyhow::Result<PushRecord> {
    let record = push(config, &config.tests_repository(), version, reporter).await?;
    write_record(repo, |last| last.tests = Some(record.clone()))?;
    Ok(record)
}

/// Pushes `repository:VERSION` and `repository:latest` (the same image),
/// and returns the digest the registry serves for it.
async fn push(config: &Config, repository: &str, version: &Version, reporter: &Reporter) -> anyhow::Result<PushRecord> {
    let docker = crate::docker::cd().await?;
    let credentials = credentials(config)?;
    let registry = Registry::open(&docker, config, credentials).await?;
    let tag = &version.version;
    let image = format!("{repository}:{tag}");

    // `latest` is made to be this very image: pushing it is then free.
    let inspect = tokio::time::timeout(API_TIMEOUT, docker.inspect_image(&image)).await;
    match inspect {
        Ok(Ok(_)) => {}
        Ok(Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. })) => {
            return Err(PushError::NoImage { image }.into())
        }
        Ok(Err(source)) => return Err(PushError::Engine { what: format!("for {image}"), source }.into()),
        Err(_) => return Err(PushError::EngineTimeout { what: format!("for {image}") }.into()),
    }
    let latest = TagImageOptionsBuilder::new().repo(repository).tag("latest").build();
    let what = format!("to tag {image} as {repository}:latest");
    tokio::time::timeout(API_TIMEOUT, docker.tag_image(&image, Some(latest)))
        .await
        .map_err(|_| PushError::EngineTimeout { what: what.clone() })?
        .map_err(|source| PushError::Engine { what, source })?;

    let start = Instant::now();
    let pushed = push_tag(&docker, &registry, repository, tag, reporter).await?;
    push_tag(&docker, &registry, repository, "latest", reporter).await?;

    let name = repository.strip_prefix(&format!("{}/", registry.address)).unwrap_or(repository);
    let served = registry
        .digest(name, tag)
        .await?
        .ok_or_else(|| PushError::NotInRegistry { registry: registry.address.clone(), image: image.clone() })?;
    if let Some(pushed) = pushed.filter(|p| *p != served) {
        return Err(PushError::DigestMismatch { image, pushed, served }.into());
    }
    reporter.line(format!("pushed {image} and :latest as {served} in {:.1} s", start.elapsed().as_secs_f64()));
    let pushed_at = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .expect("0 is a valid nanosecond")
        .format(&time::format_description::well_known::Rfc3339)
        .context("formatting the time of the push")?;
    Ok(PushRecord {
        image: repository.to_owned(),
        tag: tag.clone(),
        digest: served,
        version: version.version.clone(),
        revision: version.revision.clone(),
        pushed_at,
    })
}

/// One tag, with a bar per layer being uploaded (on a terminal). Returns
/// the digest the engine reports for it, if it reported one.
async fn push_tag(
    docker: &Docker,
    registry: &Registry,
    repository: &str,
    tag: &str,
    reporter: &Reporter,
) -> Result<Option<String>, PushError> {
    let image = format!("{repository}:{tag}");
    let spinner = reporter.spinner(format!("push {image}"));
    let mut layers = Layers::new(reporter);
    let options = PushImageOptionsBuilder::new().tag(tag).build();
    let credentials = registry.credentials.as_ref().map(|c| c.to_docker(&registry.address));
    let mut stream = docker.push_image(repository, Some(options), credentials);
    let mut digest = None;
    let outcome = tokio::time::timeout(PUSH_TIMEOUT, async {
        while let Some(message) = stream.next().await {
            let message = message.map_err(|e| push_failure(registry, &image, &e.to_string()))?;
            let status = message.status.unwrap_or_default();
            if let Some(d) = digest_in(&status) {
                digest = Some(d);
            }
            layers.update(&status, message.progress_detail.as_ref());
        }
        Ok(())
    })
    .await;
    layers.finish();
    spinner.finish_and_clear();
    match outcome {
        Err(_) => Err(PushError::Timeout { image }),
        Ok(Err(e)) => Err(e),
        Ok(Ok(())) => {
            reporter.line(format!("  {image}: {}", layers.summary()));
            Ok(digest)
        }
    }
}

/// What a failed push means for the user: refused credentials and an
/// unreachable registry get their own errors.
fn push_failure(registry: &Registry, image: &str, detail: &str) -> PushError {
    let lower = detail.to_lowercase();
    if ["unauthorized", "authentication required", "no basic auth credentials"].iter().any(|s| lower.contains(s)) {
        return registry.refused(detail);
    }
    if ["connection refused", "no route to host", "i/o timeout", "no such host"].iter().any(|s| lower.contains(s)) {
        return PushError::Unreachable { registry: registry.address.clone(), detail: detail.to_owned() };
    }
    PushError::Push { image: image.to_owned(), detail: detail.to_owned() }
}

/// `VERSION: digest: sha256:... size: 1234`, the engine's last message.
fn digest_in(status: &str) -> Option<String> {
    let rest = status.split_once("digest: ")?.1;
    let digest = rest.split_whitespace().next()?;
    digest.starts_with("sha256:").then(|| digest.to_owned())
}

/// The per-layer progress of one push.
///
/// bollard's `PushImageInfo` drops the layer id that the engine sends with
/// each message, so a layer is told apart by its size (`progressDetail.total`),
/// which differs between layers in practice; two of exactly the same size
/// would share a bar, which only blurs the display.
struct Layers<'a> {
    reporter: &'a Reporter,
    bars: HashMap<i64, ProgressBar>,
    uploaded: usize,
    existing: usize,
    mounted: usize,
}

impl<'a> Layers<'a> {
    fn new(reporter: &'a Reporter) -> Self {
        Layers { reporter, bars: HashMap::new(), uploaded: 0, existing: 0, mounted: 0 }
    }

    fn update(&mut self, status: &str, progress: Option<&bollard::models::ProgressDetail>) {
        match status {
            "Pushed" => self.uploaded += 1,
            "Layer already exists" => self.existing += 1,
            s if s.starts_with("Mounted from") => self.mounted += 1,
            "Pushing" => {
                let Some((Some(current), Some(total))) = progress.map(|p| (p.current, p.total)) else { return };
                if total <= 0 {
                    return;
                }
                let reporter = self.reporter;
                let bar = self
                    .bars
                    .entry(total)
                    .or_insert_with(|| reporter.bytes(format!("layer {}", HumanBytes(total as u64)), total as u64));
                bar.set_position(current.clamp(0, total) as u64);
            }
            _ => {}
        }
    }

    fn finish(&self) {
        for bar in self.bars.values() {
            bar.finish_and_clear();
        }
    }

    fn summary(&self) -> String {
        let total = self.uploaded + self.existing + self.mounted;
        let mut parts = vec![format!("{} uploaded", self.uploaded)];
        if self.existing > 0 {
            parts.push(format!("{} already there", self.existing));
        }
        if self.mounted > 0 {
            parts.push(format!("{} mounted from another repository", self.mounted));
        }
        format!("{total} layer(s): {}", parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REGISTRY: &str = "10.200.0.1:5000";

    fn auth(user_password: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(user_password)
    }

    #[test]
    fn the_docker_config_auth_of_the_registry_is_user_and_password() {
        let text = format!(
            r#"{{"auths": {{"{REGISTRY}": {{"auth": "{}"}}, "other:5000": {{"auth": "{}"}}}}}}"#,
            auth("lab:s3cret:with:colons"),
            auth("x:y")
        );
        let (user, password) = from_docker_config(&text, REGISTRY).unwrap().unwrap();
        assert_eq!(user, "lab");
        assert_eq!(password.expose_secret(), "s3cret:with:colons");
    }

    #[test]
    fn a_url_key_written_by_older_clients_matches_its_host() {
        let text = format!(r#"{{"auths": {{"https://{REGISTRY}/v1/": {{"auth": "{}"}}}}}}"#, auth("u:p"));
        assert_eq!(from_docker_config(&text, REGISTRY).unwrap().unwrap().0, "u");
    }

    #[test]
    fn separate_username_and_password_fields_are_read_too() {
        let text = format!(r#"{{"auths": {{"{REGISTRY}": {{"username": "u", "password": "p"}}}}}}"#);
        assert_eq!(from_docker_config(&text, REGISTRY).unwrap().unwrap().0, "u");
    }

    #[test]
    fn no_entry_for_the_registry_is_no_credentials() {
        let text = format!(r#"{{"auths": {{"elsewhere:5000": {{"auth": "{}"}}}}}}"#, auth("u:p"));
        assert!(from_docker_config(&text, REGISTRY).unwrap().is_none());
        assert!(from_docker_config("{}", REGISTRY).unwrap().is_none());
    }

    #[test]
    fn a_credential_helper_is_named_in_the_error() {
        let err = from_docker_config(r#"{"credsStore": "pass"}"#, REGISTRY).unwrap_err();
        assert!(err.contains("docker-credential-pass") && err.contains("HARNESS_REGISTRY__USERNAME"), "{err}");
    }

    #[test]
    fn a_broken_auth_is_an_error_without_the_secret() {
        let text = format!(r#"{{"auths": {{"{REGISTRY}": {{"auth": "{}"}}}}}}"#, auth("no-colon-secret"));
        let err = from_docker_config(&text, REGISTRY).unwrap_err();
        assert!(!err.contains("no-colon-secret"), "{err}");
        assert!(from_docker_config("not json", REGISTRY).is_err());
    }

    #[test]
    fn credentials_never_print_their_password() {
        let credentials =
            Credentials { username: "lab".into(), password: SecretString::from("hunter2"), source: "test".into() };
        assert!(!format!("{credentials:?}").contains("hunter2"));
        let error = PushError::Refused {
            registry: REGISTRY.into(),
            user: credentials.username.clone(),
            source_: credentials.source.clone(),
            detail: "401".into(),
        };
        let text = error.to_string();
        assert!(text.contains("refused the credentials of lab") && !text.contains("hunter2"), "{text}");
    }

    #[test]
    fn the_configuration_comes_before_the_docker_config_file() {
        figment::Jail::expect_with(|jail| {
            let file = jail.directory().join("docker.json");
            std::fs::write(&file, format!(r#"{{"auths": {{"{REGISTRY}": {{"auth": "{}"}}}}}}"#, auth("file:pw")))
                .unwrap();
            jail.set_env("HARNESS_REGISTRY__DOCKER_CONFIG", file.display());
            let config = Config::load(jail.directory()).unwrap();
            assert_eq!(credentials(&config).unwrap().unwrap().username, "file");

            jail.set_env("HARNESS_REGISTRY__USERNAME", "env");
            jail.set_env("HARNESS_REGISTRY__PASSWORD", "pw");
            let config = Config::load(jail.directory()).unwrap();
            assert_eq!(credentials(&config).unwrap().unwrap().username, "env");
            Ok(())
        });
    }

    #[test]
    fn half_of_a_pair_of_credentials_is_an_error() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("HARNESS_REGISTRY__USERNAME", "only-me");
            let config = Config::load(jail.directory()).unwrap();
            assert!(credentials(&config).unwrap_err().to_string().contains("go together"));
            Ok(())
        });
    }

    #[test]
    fn insecure_ranges_contain_their_addresses() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(in_cidr(ip("127.0.0.1"), "127.0.0.0/8"));
        assert!(!in_cidr(ip("128.0.0.1"), "127.0.0.0/8"));
        assert!(in_cidr(ip("10.200.0.1"), "10.200.0.0/24"));
        assert!(in_cidr(ip("10.200.0.1"), "0.0.0.0/0"));
        assert!(in_cidr(ip("::1"), "::1/128"));
        assert!(!in_cidr(ip("::1"), "127.0.0.0/8"));
        assert!(!in_cidr(ip("10.0.0.1"), "garbage"));
    }

    #[test]
    fn the_engines_last_message_carries_the_digest() {
        let digest = format!("sha256:{}", "a".repeat(64));
        assert_eq!(digest_in(&format!("abc123: digest: {digest} size: 739")), Some(digest));
        assert_eq!(digest_in("Pushed"), None);
    }

    #[test]
    fn the_record_round_trips_and_the_service_is_what_load_last_returns() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load_last(dir.path()).unwrap_err().to_string().contains("harness push"));
        let record = PushRecord {
            image: format!("{REGISTRY}/books-ms"),
            tag: "abc".into(),
            digest: "sha256:00".into(),
            version: "abc".into(),
            revision: "abc".into(),
            pushed_at: "2026-01-01T00:00:00Z".into(),
        };
        write_record(dir.path(), |last| last.service = Some(record.clone())).unwrap();
        let tests = PushRecord { image: format!("{REGISTRY}/books-ms-tests"), ..record.clone() };
        write_record(dir.path(), |last| last.tests = Some(tests)).unwrap();
        assert_eq!(load_last(dir.path()).unwrap(), record);
        assert_eq!(record.reference(), format!("{REGISTRY}/books-ms@sha256:00"));
    }
}
