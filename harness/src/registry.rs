//! The private registry: whose credentials to use, and its HTTP API.
//!
//! Credentials come from the configuration (`registry.username` and
//! `registry.password`, e.g. `HARNESS_REGISTRY__USERNAME`) or else from the
//! docker config file's `auths` entry for the registry (what `docker login`
//! wrote). They are never printed: [`Credentials`]'s Debug redacts the
//! password, and errors name only the user.
//!
//! [`Registry::open`] asks `GET /v2/` with the credentials, so that a
//! registry that is down, or that refuses them, fails a step in seconds,
//! before the engine starts (and retries) uploads. Over HTTPS it trusts
//! `registry.ca_cert` alone when set (the lab's CA), as the engines trust
//! their copy of it: the password goes with every request.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use base64::Engine as _;
use bollard::auth::DockerCredentials;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::config::Config;
use crate::engine::{Engine, EngineError};
use crate::http::error_chain;

/// What `docker push` sends for a manifest; asked for to read its digest.
const MANIFEST_V2: &str = "application/vnd.docker.distribution.manifest.v2+json";
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
    let Some(path) = docker_config_path(config) else {
        return Ok(None);
    };
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
pub enum RegistryError {
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
    Answered { registry: String, what: String, status: String },
    #[error(
        "cannot use {path} as the registry's CA (registry.ca_cert): {detail}; point HARNESS_REGISTRY__CA_CERT at \
         the CA's PEM file (the lab's: lab/up.sh makes it), or set it empty to trust the system's roots"
    )]
    Ca { path: String, detail: String },
    #[error(transparent)]
    Engine(#[from] EngineError),
}

// ------------------------------------------------------------ the registry's API

/// The registry as the harness talks to it over HTTP(S).
pub struct Registry {
    /// `HOST:PORT`.
    pub address: String,
    base: String,
    http: reqwest::Client,
    pub credentials: Option<Credentials>,
    /// The docker config file, named when credentials are missing.
    looked_in: String,
}

impl Registry {
    /// Reaches the registry and checks the credentials (`GET /v2/`). Plain
    /// HTTP where the cd engine pushes over plain HTTP (a registry in its
    /// insecure list), HTTPS elsewhere.
    pub async fn open(
        engine: &Engine,
        config: &Config,
        credentials: Option<Credentials>,
    ) -> Result<Self, RegistryError> {
        let address = config.registry.address.clone();
        let plain = engine_pushes_in_plain_http(engine, &address).await?;
        let scheme = if plain { "http" } else { "https" };
        let http = client(config.registry.ca_cert().filter(|_| !plain))?
            .build()
            .map_err(|e| RegistryError::Unreachable { registry: address.clone(), detail: error_chain(&e) })?;
        let looked_in = docker_config_path(config)
            .map_or_else(|| "the docker config file ($HOME is not set)".to_owned(), |p| p.display().to_string());
        let registry = Registry { base: format!("{scheme}://{address}"), address, http, credentials, looked_in };
        let response = registry.send(registry.http.get(format!("{}/v2/", registry.base))).await?;
        match response.status() {
            status if status.is_success() => Ok(registry),
            reqwest::StatusCode::UNAUTHORIZED => Err(registry.refused(&format!("GET /v2/: {}", response.status()))),
            status => Err(RegistryError::Answered {
                registry: registry.address.clone(),
                what: "GET /v2/".to_owned(),
                status: status.to_string(),
            }),
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<reqwest::Response, RegistryError> {
        let request = match &self.credentials {
            Some(c) => request.basic_auth(&c.username, Some(c.password.expose_secret())),
            None => request,
        };
        request
            .send()
            .await
            .map_err(|e| RegistryError::Unreachable { registry: self.address.clone(), detail: error_chain(&e) })
    }

    pub fn refused(&self, detail: &str) -> RegistryError {
        match &self.credentials {
            Some(c) => RegistryError::Refused {
                registry: self.address.clone(),
                user: c.username.clone(),
                source_: c.source.clone(),
                detail: detail.to_owned(),
            },
            None => RegistryError::NoCredentials { registry: self.address.clone(), looked_in: self.looked_in.clone() },
        }
    }

    /// The digest the registry serves for `name:tag` (`HEAD` of its
    /// manifest), `None` when it has no such manifest.
    pub async fn digest(&self, name: &str, tag: &str) -> Result<Option<String>, RegistryError> {
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
                digest.map(|d| Some(d.to_owned())).ok_or_else(|| RegistryError::Answered {
                    registry: self.address.clone(),
                    what,
                    status: format!("{status} without a Docker-Content-Digest header"),
                })
            }
            status => Err(RegistryError::Answered { registry: self.address.clone(), what, status: status.to_string() }),
        }
    }
}

impl Registry {
    /// The labels of the image `name@reference` (its config's), as the
    /// registry serves them: what an image carries before any engine pulled
    /// it.
    pub async fn labels(
        &self,
        name: &str,
        reference: &str,
    ) -> Result<std::collections::HashMap<String, String>, RegistryError> {
        let blob = self.image_config(name, reference).await?;
        let labels = blob["config"]["Labels"].as_object().cloned().unwrap_or_default();
        Ok(labels.into_iter().filter_map(|(k, v)| Some((k, v.as_str()?.to_owned()))).collect())
    }

    /// Whether the image `name@reference` has a Docker healthcheck of its
    /// own (a `HEALTHCHECK` other than `NONE`).
    pub async fn has_healthcheck(&self, name: &str, reference: &str) -> Result<bool, RegistryError> {
        let blob = self.image_config(name, reference).await?;
        Ok(blob["config"]["Healthcheck"]["Test"]
            .as_array()
            .and_then(|test| test.first()?.as_str())
            .is_some_and(|first| first != "NONE"))
    }

    /// The tags of repository `name` (none when the registry has no such
    /// repository).
    pub async fn tags(&self, name: &str) -> Result<Vec<String>, RegistryError> {
        let what = format!("GET /v2/{name}/tags/list");
        let response = self.send(self.http.get(format!("{}/v2/{name}/tags/list", self.base))).await?;
        match response.status() {
            reqwest::StatusCode::NOT_FOUND => Ok(Vec::new()),
            reqwest::StatusCode::UNAUTHORIZED => Err(self.refused(&format!("{what}: {}", response.status()))),
            status if status.is_success() => {
                let list: TagList = response.json().await.map_err(|e| RegistryError::Answered {
                    registry: self.address.clone(),
                    what,
                    status: format!("{status} with a body that is not a tag list: {e}"),
                })?;
                Ok(list.tags.unwrap_or_default())
            }
            status => Err(RegistryError::Answered { registry: self.address.clone(), what, status: status.to_string() }),
        }
    }

    /// When the image `name@reference` was made, RFC 3339 in UTC to the
    /// second (so that times compare as text): its config's
    /// `org.opencontainers.image.created` label (the commit's time, which
    /// the build sets) when it is a time (a build without it says
    /// `unknown`), else the config's `created`; "" when neither is.
    pub async fn created(&self, name: &str, reference: &str) -> Result<String, RegistryError> {
        let config = self.image_config(name, reference).await?;
        let label = config["config"]["Labels"]["org.opencontainers.image.created"].as_str();
        let created = [label, config["created"].as_str()].into_iter().flatten().find_map(utc_second);
        Ok(created.unwrap_or_default())
    }

    /// Removes the manifest `name@digest`, and with it every tag that
    /// points to it (the registry's `delete: enabled`); its blobs stay
    /// until the registry's garbage collection. A manifest already gone is
    /// fine.
    pub async fn delete(&self, name: &str, digest: &str) -> Result<(), RegistryError> {
        let what = format!("DELETE /v2/{name}/manifests/{digest}");
        let response = self.send(self.http.delete(format!("{}/v2/{name}/manifests/{digest}", self.base))).await?;
        match response.status() {
            reqwest::StatusCode::NOT_FOUND => Ok(()),
            reqwest::StatusCode::UNAUTHORIZED => Err(self.refused(&format!("{what}: {}", response.status()))),
            status if status.is_success() => Ok(()),
            status => Err(RegistryError::Answered {
                registry: self.address.clone(),
                what,
                status: format!("{status} (405: deletes are off, or the registry is read-only for a collection)"),
            }),
        }
    }

    /// The config blob of the image `name@reference`.
    async fn image_config(&self, name: &str, reference: &str) -> Result<serde_json::Value, RegistryError> {
        let manifest: serde_json::Value = self.json(&format!("manifests/{reference}"), name, MANIFEST_ACCEPT).await?;
        let Some(config) = manifest["config"]["digest"].as_str() else {
            let what = format!("GET /v2/{name}/manifests/{reference}");
            let status = "a manifest without a config (an index?)".to_owned();
            return Err(RegistryError::Answered { registry: self.address.clone(), what, status });
        };
        self.json(&format!("blobs/{config}"), name, "*/*").await
    }

    /// `GET /v2/NAME/PATH` as JSON.
    async fn json(&self, path: &str, name: &str, accept: &str) -> Result<serde_json::Value, RegistryError> {
        let what = format!("GET /v2/{name}/{path}");
        let request = self.http.get(format!("{}/v2/{name}/{path}", self.base)).header(reqwest::header::ACCEPT, accept);
        let response = self.send(request).await?;
        match response.status() {
            reqwest::StatusCode::UNAUTHORIZED => Err(self.refused(&format!("{what}: {}", response.status()))),
            status if status.is_success() => response.json().await.map_err(|e| RegistryError::Answered {
                registry: self.address.clone(),
                what,
                status: format!("{status} with a body that is not JSON: {e}"),
            }),
            status => Err(RegistryError::Answered { registry: self.address.clone(), what, status: status.to_string() }),
        }
    }
}

/// The registry's HTTP client: with `ca`, trusting that CA alone.
fn client(ca: Option<&Path>) -> Result<reqwest::ClientBuilder, RegistryError> {
    let builder = crate::http::builder(CONNECT_TIMEOUT, HTTP_TIMEOUT);
    let Some(ca) = ca else { return Ok(builder) };
    let error = |detail: String| RegistryError::Ca { path: ca.display().to_string(), detail };
    let pem = std::fs::read(ca).map_err(|e| error(e.to_string()))?;
    let certificates = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| error(error_chain(&e)))?;
    if certificates.is_empty() {
        return Err(error("no PEM certificate in it".to_owned()));
    }
    Ok(certificates.into_iter().fold(builder.tls_built_in_root_certs(false), |b, c| b.add_root_certificate(c)))
}

/// An RFC 3339 time as RFC 3339 in UTC, to the second; None when `text`
/// is not one.
fn utc_second(text: &str) -> Option<String> {
    use time::format_description::well_known::Rfc3339;
    let time = time::OffsetDateTime::parse(text, &Rfc3339).ok()?.to_offset(time::UtcOffset::UTC);
    time.replace_nanosecond(0).ok()?.format(&Rfc3339).ok()
}

#[derive(Deserialize)]
struct TagList {
    tags: Option<Vec<String>>,
}

/// The manifests [`Registry::labels`] reads: Docker's and OCI's.
const MANIFEST_ACCEPT: &str =
    "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json";

/// Whether the engine talks to `address` over plain HTTP: the registry is
/// listed insecure by the engine (`insecure-registries` in daemon.json, or
/// an address in its insecure ranges, 127.0.0.0/8 by default).
async fn engine_pushes_in_plain_http(engine: &Engine, address: &str) -> Result<bool, RegistryError> {
    let info = engine.call("for its registry settings (info)", engine.docker.info()).await?;
    let Some(registries) = info.registry_config else {
        return Ok(false);
    };
    if let Some(secure) = registries.index_configs.as_ref().and_then(|c| c.get(address)).and_then(|i| i.secure) {
        return Ok(!secure);
    }
    let host = address.rsplit_once(':').map_or(address, |(host, _)| host).trim_matches(['[', ']']);
    let Ok(ip) = host.parse::<IpAddr>() else {
        return Ok(false);
    };
    Ok(registries.insecure_registry_cidrs.unwrap_or_default().iter().any(|cidr| in_cidr(ip, cidr)))
}

/// `ip` in `a.b.c.d/n` (or an IPv6 range).
fn in_cidr(ip: IpAddr, cidr: &str) -> bool {
    let Some((network, bits)) = cidr.split_once('/') else {
        return false;
    };
    let (Ok(network), Ok(bits)) = (network.parse::<IpAddr>(), bits.parse::<u32>()) else {
        return false;
    };
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

#[cfg(test)]
// figment::Jail's closures return its own (large) error type.
#[allow(clippy::result_large_err)]
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
        let error = RegistryError::Refused {
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
            // The user's HARNESS_* variables are not the test's.
            jail.clear_env();
            jail.create_file("harness.toml", "[service]\nname = \"hello\"\n")?;
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
            // The user's HARNESS_* variables are not the test's.
            jail.clear_env();
            jail.create_file("harness.toml", "[service]\nname = \"hello\"\n")?;
            jail.set_env("HARNESS_REGISTRY__USERNAME", "only-me");
            let config = Config::load(jail.directory()).unwrap();
            assert!(credentials(&config).unwrap_err().to_string().contains("go together"));
            Ok(())
        });
    }

    #[test]
    fn a_ca_that_cannot_be_read_or_holds_no_certificate_is_named_with_its_setting() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        for path in [&missing, &empty] {
            let text = client(Some(path)).expect_err("refused").to_string();
            assert!(text.contains(&path.display().to_string()) && text.contains("registry.ca_cert"), "{text}");
        }
        assert!(client(None).is_ok());
    }

    #[test]
    fn created_times_compare_as_text_and_unknown_is_none() {
        assert_eq!(utc_second("2026-12-07T03:24:34.94729168Z").as_deref(), Some("2026-12-07T03:24:34Z"));
        assert_eq!(utc_second("2026-12-07T04:24:34+01:00").as_deref(), Some("2026-12-07T03:24:34Z"));
        assert_eq!(utc_second("unknown"), None);
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
}
