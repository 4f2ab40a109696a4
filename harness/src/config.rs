//! One configuration for every command: defaults (what a generic service
//! expects, and the lab's topology), then the service's own `harness.toml`
//! at the repo root (committed: what the service is), then
//! `harness.local.toml` (not committed: this machine's settings and
//! secrets), then `HARNESS_*` environment variables
//! (`HARNESS_PROD__APP_PORT=9090`: `__` separates sections), then flags.
//! Layered with figment. Every key is in docs/config.md.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// The file a service describes itself in, at its repository's root.
pub const SERVICE_FILE: &str = "harness.toml";
/// This machine's settings over it, never committed (it may hold secrets).
pub const LOCAL_FILE: &str = "harness.local.toml";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The repository the configuration was loaded for: relative paths in
    /// it are relative to this folder.
    #[serde(skip)]
    pub repo: PathBuf,
    pub service: ServiceConfig,
    #[serde(default)]
    pub build: BuildConfig,
    #[serde(default)]
    pub test: TestConfig,
    #[serde(default)]
    pub app: AppConfig,
    #[serde(default)]
    pub healthcheck: HealthcheckConfig,
    /// The revision gate, when the service reports its revision.
    #[serde(default)]
    pub version: Option<VersionConfig>,
    /// Containers the app needs, kept across deploys, by name.
    #[serde(default)]
    pub accessories: BTreeMap<String, AccessoryConfig>,
    /// The post-deploy checks, run before and after the switch.
    #[serde(default)]
    pub checks: Vec<CheckConfig>,
    pub registry: RegistryConfig,
    pub images: ImagesConfig,
    pub prod: ProdConfig,
    /// `harness verify`'s own settings (books-ms's checks in code).
    pub verify: VerifyConfig,
    #[serde(default)]
    pub hooks: HooksConfig,
    #[serde(default)]
    pub pipeline: PipelineConfig,
    /// The swarm target (`prod.kind = "swarm"`).
    #[serde(default)]
    pub swarm: SwarmConfig,
}

/// What the service is called: its containers, network, volumes and image
/// repository carry the name.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceConfig {
    /// Required: lowercase letters, digits and `-` (a Docker name and an
    /// image repository alike).
    pub name: String,
}

/// How the service's image is built: the context is the repository's
/// root; the harness passes the build args `REVISION` and `VERSION` and
/// sets the label `org.opencontainers.image.revision` itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BuildConfig {
    /// The Dockerfile, relative to the repository.
    pub dockerfile: PathBuf,
    /// A command (`sh -c`, in the repository) run on the checkout before
    /// the build; empty: none.
    pub package: String,
    /// The tests image's Dockerfile (context the repository's root, pushed
    /// by the last step as `images.tests`); empty: no tests image.
    pub tests_dockerfile: PathBuf,
}

impl Default for BuildConfig {
    fn default() -> Self {
        BuildConfig {
            dockerfile: PathBuf::from("Dockerfile"),
            package: String::new(),
            tests_dockerfile: PathBuf::new(),
        }
    }
}

impl BuildConfig {
    /// `tests_dockerfile`, unless empty.
    pub fn tests_dockerfile(&self) -> Option<&Path> {
        Some(self.tests_dockerfile.as_path()).filter(|p| !p.as_os_str().is_empty())
    }
}

/// The pre-deploy tests.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TestConfig {
    /// A command (`sh -c`, in the repository) whose failure stops the
    /// pipeline before anything is pushed; empty: none.
    pub command: String,
    /// A command run before `command` (compiling the tests): the package
    /// and build steps start once it ended, beside `command`; empty: they
    /// start with `command`.
    pub prepare: String,
    /// The label the tests put on the containers they start, its value the
    /// test process's pid: those whose process ended are removed after the
    /// test step and on Ctrl-C; empty: none are.
    pub containers_label: String,
}

/// The app's container.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AppConfig {
    /// The port the app listens on inside its container (the proxy's
    /// backends; users reach `prod.app_port`).
    pub port: u16,
    /// Plain settings, given as they are.
    pub env: BTreeMap<String, String>,
    /// Names of variables whose values come from the harness's own
    /// environment at deploy time (never from a file, never printed).
    pub secrets: Vec<String>,
}

impl Default for AppConfig {
    /// 8080: the usual port of an HTTP app that does not run as root (a
    /// port under 1024 needs privileges).
    fn default() -> Self {
        AppConfig { port: 8080, env: BTreeMap::new(), secrets: Vec::new() }
    }
}

/// Readiness: polled through the proxy's preview before any user is
/// switched; any 2xx answer means ready. An image's own Docker
/// `HEALTHCHECK`, when it has one, must pass first.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthcheckConfig {
    pub path: String,
}

impl Default for HealthcheckConfig {
    fn default() -> Self {
        HealthcheckConfig { path: "/".to_owned() }
    }
}

/// The revision gate: `GET path` answers JSON whose value at the pointer
/// `field` is the revision the release carries.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionConfig {
    pub path: String,
    /// A JSON pointer (RFC 6901), e.g. `/revision`.
    pub field: String,
}

/// A container the app needs (a database, a cache), created on the first
/// deploy and kept across deploys; the app reaches it by its name.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessoryConfig {
    pub image: String,
    /// A path in the container kept in a named volume across deploys.
    #[serde(default)]
    pub volume: Option<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

/// One post-deploy check: a request and what its answer must be, or a
/// command (`sh -c`, in the repository) given `HARNESS_URL`,
/// `HARNESS_REVISION` and, before the switch, `HARNESS_PREVIEW_HEADER`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckConfig {
    pub name: String,
    #[serde(default)]
    pub command: Option<String>,
    #[serde(default)]
    pub method: Option<String>,
    #[serde(default)]
    pub path: Option<String>,
    /// The status the answer must have (default 200).
    #[serde(default)]
    pub status: Option<u16>,
    /// Text the answer's body must hold.
    #[serde(default)]
    pub body_contains: Option<String>,
}

/// What a check is, once validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Check {
    Request { name: String, method: String, path: String, status: u16, body_contains: Option<String> },
    Command { name: String, command: String },
}

impl Check {
    pub fn name(&self) -> &str {
        match self {
            Check::Request { name, .. } | Check::Command { name, .. } => name,
        }
    }
}

impl CheckConfig {
    /// The check, or what is wrong with it (`checks[i]`).
    pub fn check(&self, i: usize) -> anyhow::Result<Check> {
        let at = format!("checks[{i}] (`{}`)", self.name);
        if self.name.trim().is_empty() {
            anyhow::bail!("configuration: checks[{i}] has no name: give every check a `name`");
        }
        match (&self.command, &self.path) {
            (Some(command), None) => {
                if self.method.is_some() || self.status.is_some() || self.body_contains.is_some() {
                    anyhow::bail!(
                        "configuration: {at} has a `command` and request keys (method, status, body_contains): a \
                         check is one or the other"
                    );
                }
                if command.trim().is_empty() {
                    anyhow::bail!("configuration: {at} has an empty `command`");
                }
                Ok(Check::Command { name: self.name.clone(), command: command.clone() })
            }
            (None, Some(path)) => {
                if !path.starts_with('/') {
                    anyhow::bail!("configuration: {at}: `path` `{path}` must start with /");
                }
                let method = self.method.clone().unwrap_or_else(|| "GET".to_owned()).to_uppercase();
                if reqwest::Method::from_bytes(method.as_bytes()).is_err() {
                    anyhow::bail!("configuration: {at}: `method` `{method}` is not an HTTP method");
                }
                let status = self.status.unwrap_or(200);
                if !(100..=599).contains(&status) {
                    anyhow::bail!("configuration: {at}: `status` {status} is not an HTTP status");
                }
                let (name, path, body_contains) = (self.name.clone(), path.clone(), self.body_contains.clone());
                Ok(Check::Request { name, method, path, status, body_contains })
            }
            (Some(_), Some(_)) => {
                anyhow::bail!("configuration: {at} has both `command` and `path`: a check is one or the other")
            }
            (None, None) => anyhow::bail!("configuration: {at} needs a `path` (a request) or a `command`"),
        }
    }
}

/// Which kind of prod a deploy, `status` and `rollback` work on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    /// One Docker engine (`[prod]`): blue-green behind a proxy container.
    #[default]
    Engine,
    /// A Docker Swarm, through its manager's API (`[swarm]`): rolling
    /// updates of a replicated service behind a proxy on every node.
    Swarm,
}

/// A Docker Swarm as prod: the app a service of `replicas` tasks on an
/// overlay network, a proxy on every node published on `app_port`, each
/// accessory one service pinned to one node by id. The project, images,
/// log settings and the app's limits (`memory_mb`, `cpus`, as each task's
/// resource limits) are `[prod]`'s; `prod.health_timeout_secs` bounds the
/// wait for the tasks' readiness (`healthcheck.path`), `drain_secs` does
/// not apply (`converge_timeout_secs` bounds the wait for an update, and
/// each stopped task gets 15 s to finish its requests).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SwarmConfig {
    /// The manager's Docker API: `tcp://HOST:PORT` with TLS client
    /// certificates. Its address is also the node whose proxy the
    /// post-deploy checks go through.
    pub docker_host: String,
    /// The folder holding `ca.pem`, `cert.pem` and `key.pem`.
    pub cert_path: PathBuf,
    /// Tasks of the app (2 or more: one keeps serving while another is
    /// replaced or lost).
    pub replicas: u32,
    /// The port the proxy is published on, on every node (`mode: host`).
    pub app_port: u16,
    /// Swarm's `update_config` (and `rollback_config`): tasks replaced at a
    /// time, the pause between them, and how long a new task is watched
    /// before the next one (a failure within it rolls the service back).
    pub update_parallelism: u32,
    pub update_delay_secs: u64,
    pub update_monitor_secs: u64,
    /// How long a deploy waits for an update (or rollback) to converge.
    pub converge_timeout_secs: u64,
    /// The swarm node id (`docker node ls`) every accessory is pinned to
    /// when a deploy first creates it (its volume lives there); by default
    /// the manager `docker_host` reaches. An existing accessory keeps its
    /// node. (Named when the swarm ran one database.)
    pub database_node: Option<String>,
    /// Where each node's Docker socket is, as that node's engine sees it:
    /// `harness prune` bind-mounts it into a one-off job on every node but
    /// the manager's. `{label:KEY}`, `{hostname}` and `{id}` are the node's.
    pub node_socket: String,
    /// The path the proxy checks on every app task every second: a task
    /// gets no request until it answers 2xx there, and leaves the rotation
    /// when it stops; unset: `healthcheck.path`.
    pub check_path: Option<String>,
}

impl Default for SwarmConfig {
    /// The lab's swarm (lab/topology.env).
    fn default() -> Self {
        SwarmConfig {
            docker_host: lab("BOOKS_LAB_SWARM_DOCKER_HOST"),
            cert_path: PathBuf::from(lab("BOOKS_LAB_SWARM_CERT_PATH")),
            replicas: 2,
            app_port: 8080,
            update_parallelism: 1,
            update_delay_secs: 0,
            update_monitor_secs: 5,
            converge_timeout_secs: 300,
            database_node: None,
            node_socket: lab("BOOKS_LAB_SWARM_NODE_SOCKET"),
            check_path: None,
        }
    }
}

/// Deadlines of the pipeline's local steps: past one, the step's whole
/// process group is killed and the step named.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// The pre-deploy tests (`cargo test`): a cold build takes minutes.
    pub test_timeout_secs: u64,
    /// The static release binary.
    pub package_timeout_secs: u64,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig { test_timeout_secs: 3600, package_timeout_secs: 1800 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// `HOST:PORT` of the private registry (the chapter's `cd:5000`).
    pub address: String,
    /// Credentials; when absent, the docker config file's entry for the
    /// registry is used (what `docker login` wrote). Never printed.
    pub username: Option<String>,
    #[serde(skip_serializing)]
    pub password: Option<SecretString>,
    /// The docker config file (default `$DOCKER_CONFIG/config.json`, else
    /// `~/.docker/config.json`).
    pub docker_config: Option<PathBuf>,
    /// The CA (PEM) the harness's own HTTPS client trusts for the registry,
    /// and no other; unset or empty: the system's roots (the engines have
    /// their own: `/etc/docker/certs.d/HOST:PORT/ca.crt`).
    #[serde(default)]
    pub ca_cert: Option<PathBuf>,
    /// The command (`sh -c`, in the repository's root, as this user) that
    /// garbage-collects the registry after `harness prune` removed tags;
    /// unset or empty: none (the space comes back at the registry's own).
    #[serde(default)]
    pub gc_command: Option<String>,
}

impl RegistryConfig {
    /// `ca_cert`, unless unset or empty.
    pub fn ca_cert(&self) -> Option<&Path> {
        self.ca_cert.as_deref().filter(|p| !p.as_os_str().is_empty())
    }

    /// `gc_command`, unless unset or blank.
    pub fn gc_command(&self) -> Option<&str> {
        self.gc_command.as_deref().filter(|c| !c.trim().is_empty())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImagesConfig {
    /// Repository names under the registry: by default the service's name,
    /// and `NAME-tests`.
    #[serde(default)]
    pub service: Option<String>,
    #[serde(default)]
    pub tests: Option<String>,
    /// Base images, public names by default in production; the lab's local
    /// equivalents here, since nothing can be pulled.
    pub rust: String,
    pub database: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProdConfig {
    /// prod's Docker API: `tcp://HOST:PORT` with TLS client certificates.
    pub docker_host: String,
    /// The folder holding `ca.pem`, `cert.pem` and `key.pem`.
    pub cert_path: PathBuf,
    /// The port the service is published on, on prod's address.
    pub app_port: u16,
    /// A single engine (the default) or a swarm (`[swarm]`).
    #[serde(default)]
    pub kind: TargetKind,
    /// Prefix of the containers, network and volumes on prod (by default
    /// the service's name).
    #[serde(default)]
    pub project: Option<String>,
    /// How long a new container may take to turn healthy.
    pub health_timeout_secs: u64,
    /// How often Docker runs the image's healthcheck in the app's
    /// containers, when set (the image's own probe; only its interval is
    /// set here; unset: the image's). Docker's first probe comes one
    /// interval after the start, so this is about how long a deploy waits
    /// to see a new colour healthy; but it applies for the container's
    /// whole life (Docker 20.10 has no start interval), each probe an exec.
    #[serde(default)]
    pub health_interval_ms: Option<u64>,
    /// The database image prod runs (`mongo:7` in a real production; the lab
    /// mirrors its local FerretDB image into its registry for prod to pull).
    pub database_image: String,
    /// The reverse proxy's image (HAProxy 2.6 or newer, with socat for its
    /// runtime API; the lab mirrors its own build of Debian's packages into
    /// its registry).
    pub proxy_image: String,
    /// How long the old colour keeps serving the requests it holds after
    /// the switch, before it is stopped.
    pub drain_secs: u64,
    /// Limits of each app container (none when unset): memory in MiB, and
    /// CPUs (e.g. 1.5).
    pub memory_mb: Option<u64>,
    pub cpus: Option<f64>,
    /// Log rotation of every container: the size of one file (Docker's
    /// json-file `max-size`, e.g. "10m") and how many are kept.
    pub log_max_size: String,
    pub log_max_files: u32,
    /// The header that reaches a release before users do (a single host's
    /// preview): the proxy routes on it, the checks send it.
    pub preview_header: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyConfig {
    /// Ids the post-deploy checks may write; no user's book is ever
    /// touched. The defaults sit at the top of the 32-bit id range.
    pub ids: Vec<i32>,
    /// The service's write token (`HARNESS_VERIFY__WRITE_TOKEN`), when its
    /// writes are not open: a deploy gives it to the app (`WRITE_TOKEN`),
    /// and `harness verify` sends it on its writes. Never printed.
    #[serde(default, skip_serializing)]
    pub write_token: Option<SecretString>,
}

/// Commands a deploy runs on this machine (`sh -c`), with the release and
/// prod's URL in their environment (`HARNESS_SERVICE`, `HARNESS_IMAGE`,
/// `HARNESS_VERSION`, `HARNESS_REVISION`, `HARNESS_URL`, `HARNESS_COLOUR`,
/// and the same as `BOOKS_MS_*` for the hooks written before). A failing
/// `pre_deploy` stops the deploy before prod is changed; a failing
/// `post_deploy` (run once users reach the release, before the old colour
/// stops) switches them back, as a failed check does.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HooksConfig {
    pub pre_deploy: Option<String>,
    pub post_deploy: Option<String>,
    /// How long a hook may run (default 60 s).
    pub timeout_secs: Option<u64>,
}

/// The lab's values, compiled in from the files its scripts read: one
/// source for the addresses, the certificate folder and the local images.
const LAB_TOPOLOGY: &str = include_str!("../../lab/topology.env");
const LAB_IMAGES: &str = include_str!("../../lab/lab.env");

/// `KEY`'s value in the lab's `KEY=value` files ("" when absent: a unit
/// test checks that every key used here is present).
fn lab(key: &str) -> String {
    LAB_TOPOLOGY
        .lines()
        .chain(LAB_IMAGES.lines())
        .filter_map(|line| line.trim().split_once('='))
        .find(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_default()
}

impl Default for Config {
    /// The lab's topology (lab/topology.env and lab/lab.env).
    fn default() -> Self {
        let registry = lab("BOOKS_LAB_REGISTRY");
        Config {
            repo: PathBuf::new(),
            service: ServiceConfig::default(),
            build: BuildConfig::default(),
            test: TestConfig::default(),
            app: AppConfig::default(),
            healthcheck: HealthcheckConfig::default(),
            version: None,
            accessories: BTreeMap::new(),
            checks: Vec::new(),
            registry: RegistryConfig {
                address: registry.clone(),
                username: None,
                password: None,
                docker_config: None,
                ca_cert: Some(PathBuf::from(lab("BOOKS_LAB_REGISTRY_CA"))),
                // The lab's registry runs on this machine (lab/registry-gc.sh).
                gc_command: Some("bash lab/registry-gc.sh".to_owned()),
            },
            images: ImagesConfig {
                service: None,
                tests: None,
                rust: lab("BOOKS_RUST_IMAGE"),
                database: lab("BOOKS_DB_IMAGE"),
            },
            prod: ProdConfig {
                docker_host: lab("BOOKS_LAB_PROD_DOCKER_HOST"),
                cert_path: PathBuf::from(lab("BOOKS_LAB_PROD_CERT_PATH")),
                app_port: 8080,
                kind: TargetKind::Engine,
                project: None,
                health_timeout_secs: 60,
                health_interval_ms: None,
                // The lab mirrors its database image into its registry.
                database_image: format!("{registry}/{}", lab("BOOKS_DB_IMAGE")),
                proxy_image: format!("{registry}/{}", lab("BOOKS_PROXY_IMAGE")),
                drain_secs: 2,
                memory_mb: None,
                cpus: None,
                log_max_size: "10m".to_owned(),
                log_max_files: 3,
                preview_header: "X-Harness-Preview".to_owned(),
            },
            verify: VerifyConfig { ids: vec![2_147_483_101, 2_147_483_102, 2_147_483_103], write_token: None },
            hooks: HooksConfig::default(),
            pipeline: PipelineConfig::default(),
            swarm: SwarmConfig::default(),
        }
    }
}

impl Config {
    /// The app's environment on prod, either target: `app.env` (by name),
    /// then the secrets (see [`Config::app_secrets`]). A secret that is not
    /// set is left out: a deploy refuses to start without it first
    /// ([`Config::secrets_are_set`]).
    pub fn app_env(&self) -> Vec<String> {
        use secrecy::ExposeSecret;
        let mut env: Vec<String> = self.app.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        env.extend(self.app_secrets().into_iter().map(|(name, value)| format!("{name}={}", value.expose_secret())));
        env
    }

    /// The secrets the app is given, by name: those `app.secrets` names
    /// that the harness's environment sets, then `WRITE_TOKEN` when
    /// `verify.write_token` is set. Command checks get them too.
    pub fn app_secrets(&self) -> Vec<(String, SecretString)> {
        let mut secrets: Vec<(String, SecretString)> = self
            .app
            .secrets
            .iter()
            .filter_map(|name| Some((name.clone(), SecretString::from(std::env::var(name).ok()?))))
            .collect();
        if let Some(token) = &self.verify.write_token {
            if !self.app.secrets.iter().any(|name| name == "WRITE_TOKEN") {
                secrets.push(("WRITE_TOKEN".to_owned(), token.clone()));
            }
        }
        secrets
    }

    /// Every secret `app.secrets` names is set in the harness's
    /// environment; the first that is not, named.
    pub fn secrets_are_set(&self) -> anyhow::Result<()> {
        match self.app.secrets.iter().find(|name| std::env::var_os(name).is_none()) {
            None => Ok(()),
            Some(name) => anyhow::bail!(
                "app.secrets names {name}, which is not set in the harness's environment: export {name} before the \
                 deploy, or remove it from app.secrets"
            ),
        }
    }

    /// The prefix of everything the service owns on prod: `prod.project`,
    /// else the service's name.
    pub fn project(&self) -> &str {
        self.prod.project.as_deref().unwrap_or(&self.service.name)
    }

    /// The path the swarm's proxy checks each app task on:
    /// `swarm.check_path`, else `healthcheck.path`.
    pub fn swarm_check_path(&self) -> &str {
        self.swarm.check_path.as_deref().unwrap_or(&self.healthcheck.path)
    }

    /// The checks, validated.
    pub fn checks(&self) -> anyhow::Result<Vec<Check>> {
        self.checks.iter().enumerate().map(|(i, check)| check.check(i)).collect()
    }

    /// A path of the configuration (`build.dockerfile`), relative to the
    /// repository unless absolute.
    pub fn path(&self, path: &Path) -> PathBuf {
        self.repo.join(path)
    }

    /// Defaults, then `REPO/harness.toml` and `REPO/harness.local.toml` (if
    /// present), then `HARNESS_*`.
    pub fn load(repo: &Path) -> anyhow::Result<Self> {
        let mut config: Config = Self::figment(repo).extract().map_err(|e| anyhow::anyhow!("configuration: {e}"))?;
        config.repo = repo.to_owned();
        config.validate()?;
        Ok(config)
    }

    /// Settings that parse but cannot work: named, with what would.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.validate_service()?;
        let swarm = &self.swarm;
        let max = crate::deploy::swarm::haproxy::MAX_REPLICAS;
        if !(2..=max).contains(&swarm.replicas) {
            anyhow::bail!(
                "configuration: swarm.replicas is {}: it must be 2 to {max} (one task keeps serving while another \
                 is replaced; the proxy has room for {max})",
                swarm.replicas
            );
        }
        if swarm.update_parallelism == 0 {
            anyhow::bail!("configuration: swarm.update_parallelism is 0 (all tasks at once): it must be 1 or more");
        }
        for (setting, value) in [
            ("swarm.converge_timeout_secs", swarm.converge_timeout_secs),
            ("swarm.update_monitor_secs", swarm.update_monitor_secs),
        ] {
            if value == 0 {
                anyhow::bail!("configuration: {setting} is 0: it must be 1 or more");
            }
        }
        // Docker refuses a healthcheck interval under 1 ms; an hour is a
        // deploy that never sees its container healthy.
        if let Some(ms) = self.prod.health_interval_ms.filter(|ms| !(1..=3_600_000).contains(ms)) {
            anyhow::bail!(
                "configuration: prod.health_interval_ms is {ms}: it must be 1 to 3600000 (500 probes twice a second), \
                 or unset for the image's own interval"
            );
        }
        let check_path = self.swarm_check_path();
        if !check_path.starts_with('/') || check_path.contains(|c: char| c.is_whitespace() || c.is_control()) {
            let setting = if swarm.check_path.is_some() { "swarm.check_path" } else { "healthcheck.path" };
            anyhow::bail!(
                "configuration: {setting} `{check_path}` must start with / and hold no space: the swarm's proxy \
                 checks every task on it"
            );
        }
        if swarm.database_node.as_deref().is_some_and(|n| n.trim().is_empty()) {
            anyhow::bail!("configuration: swarm.database_node is empty: set a node id (`docker node ls`) or remove it");
        }
        Ok(())
    }

    /// What describes the service: its name, its app, its accessories and
    /// checks.
    fn validate_service(&self) -> anyhow::Result<()> {
        let name = &self.service.name;
        if name.is_empty() {
            anyhow::bail!(
                "configuration: service.name is not set: name the service in {} at the repository's root \
                 ([service] name = \"hello\"); it names its containers, network, volumes and image",
                self.repo.join(SERVICE_FILE).display()
            );
        }
        let docker_name = |name: &str| {
            name.len() <= 63
                && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        };
        if !docker_name(name) {
            anyhow::bail!(
                "configuration: service.name `{name}` must be lowercase letters, digits and -, starting with a \
                 letter or digit (at most 63): it names containers and an image repository"
            );
        }
        if self.app.port == 0 {
            anyhow::bail!("configuration: app.port is 0: set the port the app listens on inside its container");
        }
        if !self.healthcheck.path.starts_with('/') {
            anyhow::bail!("configuration: healthcheck.path `{}` must start with /", self.healthcheck.path);
        }
        let header = &self.prod.preview_header;
        if header.is_empty() || !header.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            anyhow::bail!(
                "configuration: prod.preview_header `{header}` must be an HTTP header name of letters, digits and - \
                 (e.g. X-Harness-Preview)"
            );
        }
        if let Some(version) = &self.version {
            if !version.path.starts_with('/') {
                anyhow::bail!("configuration: version.path `{}` must start with /", version.path);
            }
            if !version.field.starts_with('/') {
                anyhow::bail!(
                    "configuration: version.field `{}` must be a JSON pointer, e.g. \"/revision\"",
                    version.field
                );
            }
        }
        for (accessory, spec) in &self.accessories {
            if !docker_name(accessory) || accessory == "app" || accessory == "proxy" {
                anyhow::bail!(
                    "configuration: accessories.{accessory}: an accessory's name must be lowercase letters, digits \
                     and - (and neither app nor proxy): the app reaches it by that name"
                );
            }
            if spec.image.trim().is_empty() {
                anyhow::bail!("configuration: accessories.{accessory}.image is empty");
            }
            if spec.volume.as_deref().is_some_and(|v| !v.starts_with('/')) {
                anyhow::bail!(
                    "configuration: accessories.{accessory}.volume must be an absolute path in its container"
                );
            }
        }
        let checks = self.checks()?;
        for (i, check) in checks.iter().enumerate() {
            if checks[..i].iter().any(|c| c.name() == check.name()) {
                anyhow::bail!("configuration: two checks are named `{}`: give each its own name", check.name());
            }
        }
        Ok(())
    }

    fn figment(repo: &Path) -> Figment {
        // A setting is `HARNESS_SECTION__KEY`: a `HARNESS_` variable without
        // `__` is not one (`HARNESS_REPO`, and `HARNESS_URL`,
        // `HARNESS_VERSION`... that a deploy gives its hooks and checks,
        // which may run the harness). `[checks]` was `harness verify`'s
        // section before checks were a list: its variables still reach it.
        let settings = Env::prefixed("HARNESS_").filter(|key| key.as_str().contains("__"));
        let env = settings.split("__").map(|key| match key.as_str().to_ascii_lowercase().as_str() {
            "checks.ids" => "verify.ids".into(),
            "checks.write_token" => "verify.write_token".into(),
            _ => key.into(),
        });
        Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::file(repo.join(SERVICE_FILE)))
            .merge(Toml::file(repo.join(LOCAL_FILE)))
            .merge(env)
    }

    /// The service image's repository under the registry: `images.service`,
    /// else the service's name.
    pub fn service_image_name(&self) -> String {
        self.images.service.clone().unwrap_or_else(|| self.service.name.clone())
    }

    /// The tests image's: `images.tests`, else `NAME-tests`.
    pub fn tests_image_name(&self) -> String {
        self.images.tests.clone().unwrap_or_else(|| format!("{}-tests", self.service.name))
    }

    /// `REGISTRY/NAME` of the service image.
    pub fn service_repository(&self) -> String {
        format!("{}/{}", self.registry.address, self.service_image_name())
    }

    pub fn tests_repository(&self) -> String {
        format!("{}/{}", self.registry.address, self.tests_image_name())
    }

    /// The production URL: prod's address (from its Docker host) and the app port.
    pub fn prod_url(&self) -> anyhow::Result<String> {
        Ok(format!("http://{}:{}", self.prod_host()?, self.prod.app_port))
    }

    pub fn prod_host(&self) -> anyhow::Result<&str> {
        host_of(&self.prod.docker_host, "prod.docker_host")
    }

    /// The URL of the manager's proxy on the swarm: the manager's address
    /// (from its Docker host) and `swarm.app_port`.
    pub fn swarm_url(&self) -> anyhow::Result<String> {
        Ok(format!("http://{}:{}", host_of(&self.swarm.docker_host, "swarm.docker_host")?, self.swarm.app_port))
    }

    /// The URL users reach on the configured target.
    pub fn target_url(&self) -> anyhow::Result<String> {
        match self.prod.kind {
            TargetKind::Engine => self.prod_url(),
            TargetKind::Swarm => self.swarm_url(),
        }
    }
}

/// books-ms as its committed `harness.toml` describes it, over the
/// defaults (without the environment): what the targets' unit tests plan
/// for.
#[cfg(test)]
pub(crate) fn books_ms() -> Config {
    let mut config: Config = Figment::from(Serialized::defaults(Config::default()))
        .merge(Toml::string(include_str!("../../harness.toml")))
        .extract()
        .expect("the committed harness.toml is a configuration");
    config.validate().expect("the committed harness.toml is valid");
    config.repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    config
}

/// HOST of `tcp://HOST:PORT` (the setting named `setting`).
fn host_of<'a>(docker_host: &'a str, setting: &str) -> anyhow::Result<&'a str> {
    let rest = docker_host.strip_prefix("tcp://").ok_or_else(|| {
        let lab =
            if setting.starts_with("swarm.") { "BOOKS_LAB_SWARM_DOCKER_HOST" } else { "BOOKS_LAB_PROD_DOCKER_HOST" };
        anyhow::anyhow!("{setting} `{docker_host}` must be tcp://HOST:PORT (for the lab, lab/topology.env's {lab})")
    })?;
    Ok(rest.rsplit_once(':').map_or(rest, |(host, _)| host))
}

#[cfg(test)]
// figment::Jail's closures return its own (large) error type.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    #[test]
    fn the_lab_files_hold_every_default_the_harness_takes_from_them() {
        for key in [
            "BOOKS_LAB_REGISTRY",
            "BOOKS_LAB_REGISTRY_CA",
            "BOOKS_LAB_PROD_DOCKER_HOST",
            "BOOKS_LAB_PROD_CERT_PATH",
            "BOOKS_RUST_IMAGE",
            "BOOKS_DB_IMAGE",
            "BOOKS_PROXY_IMAGE",
            "BOOKS_LAB_SWARM_DOCKER_HOST",
            "BOOKS_LAB_SWARM_CERT_PATH",
            "BOOKS_LAB_SWARM_NODE_SOCKET",
        ] {
            assert!(!lab(key).is_empty(), "{key} is missing from lab/topology.env or lab/lab.env");
        }
        assert!(!lab("# comment").contains('='));
    }
    use figment::Jail;

    /// The least a service's file says.
    const NAMED: &str = "[service]\nname = \"hello\"\n";

    #[test]
    fn with_no_configuration_the_defaults_are_the_labs() {
        Jail::expect_with(|jail| {
            // The user's HARNESS_* variables are not the test's.
            jail.clear_env();
            jail.create_file("harness.toml", NAMED)?;
            let config = Config::load(jail.directory()).unwrap();
            assert_eq!(config.service_repository(), "10.200.0.1:5000/hello");
            assert_eq!(config.tests_repository(), "10.200.0.1:5000/hello-tests");
            assert_eq!(config.project(), "hello");
            assert_eq!(config.prod_url().unwrap(), "http://10.200.0.2:8080");
            assert_eq!(config.app.port, 8080);
            assert_eq!(config.healthcheck.path, "/");
            assert!(config.version.is_none() && config.accessories.is_empty() && config.checks.is_empty());
            assert!(config.app_env().is_empty(), "a generic service gets no settings it did not ask for");
            Ok(())
        });
    }

    #[test]
    fn the_file_then_the_environment_override_the_defaults() {
        Jail::expect_with(|jail| {
            // The user's HARNESS_* variables are not the test's.
            jail.clear_env();
            jail.create_file(
                "harness.toml",
                &format!("{NAMED}[prod]\napp_port = 9000\n[registry]\naddress = \"reg.example:5000\"\n"),
            )?;
            jail.set_env("HARNESS_PROD__APP_PORT", "9100");
            let config = Config::load(jail.directory()).unwrap();
            assert_eq!(config.prod.app_port, 9100);
            assert_eq!(config.registry.address, "reg.example:5000");
            Ok(())
        });
    }

    #[test]
    fn a_docker_host_that_is_not_tcp_is_refused_with_the_labs_matching_setting() {
        let mut config = Config::default();
        config.prod.docker_host = "unix:///var/run/docker.sock".into();
        let err = config.prod_url().unwrap_err().to_string();
        assert!(err.starts_with("prod.docker_host `unix:///var/run/docker.sock`"), "{err}");
        assert!(err.contains("BOOKS_LAB_PROD_DOCKER_HOST") && !err.contains("SWARM"), "{err}");
        config.swarm.docker_host = "10.0.0.1:2376".into();
        let err = config.swarm_url().unwrap_err().to_string();
        assert!(err.starts_with("swarm.docker_host") && err.contains("BOOKS_LAB_SWARM_DOCKER_HOST"), "{err}");
    }

    #[test]
    fn swarm_settings_that_cannot_work_are_refused_naming_the_setting() {
        let refused = |toml: &str, setting: &str| {
            figment::Jail::expect_with(|jail| {
                jail.create_file("harness.toml", &format!("{NAMED}{toml}"))?;
                let err = Config::load(jail.directory()).unwrap_err().to_string();
                assert!(err.contains(setting), "{toml}: {err}");
                Ok(())
            })
        };
        refused("[swarm]\nreplicas = 0\n", "swarm.replicas is 0");
        refused("[swarm]\nreplicas = 1\n", "swarm.replicas is 1");
        refused("[swarm]\nreplicas = 17\n", "swarm.replicas is 17");
        refused("[swarm]\nupdate_parallelism = 0\n", "swarm.update_parallelism is 0");
        refused("[swarm]\nconverge_timeout_secs = 0\n", "swarm.converge_timeout_secs is 0");
        refused("[swarm]\nupdate_monitor_secs = 0\n", "swarm.update_monitor_secs is 0");
        refused("[swarm]\ndatabase_node = \" \"\n", "swarm.database_node is empty");
        refused("[swarm]\ncheck_path = \"ready\"\n", "swarm.check_path `ready` must start with /");
        refused(
            "[swarm]\ncheck_path = \"/re ady\"\n",
            "swarm.check_path `/re ady` must start with / and hold no space",
        );
        refused(
            "[healthcheck]\npath = \"/re ady\"\n",
            "healthcheck.path `/re ady` must start with / and hold no space",
        );
        figment::Jail::expect_with(|jail| {
            jail.create_file("harness.toml", &format!("{NAMED}[swarm]\nreplicas = 16\ndatabase_node = \"abc\"\n"))?;
            assert_eq!(Config::load(jail.directory()).unwrap().swarm.replicas, 16);
            Ok(())
        });
    }

    #[test]
    fn a_preview_header_that_is_not_a_plain_header_name_is_refused_naming_the_setting() {
        for header in ["", "X Preview", "X-Preview:", "X_(a)"] {
            figment::Jail::expect_with(|jail| {
                jail.clear_env();
                jail.create_file("harness.toml", &format!("{NAMED}[prod]\npreview_header = \"{header}\"\n"))?;
                let err = Config::load(jail.directory()).unwrap_err().to_string();
                assert!(err.contains(&format!("prod.preview_header `{header}` must be")), "{header}: {err}");
                Ok(())
            });
        }
        figment::Jail::expect_with(|jail| {
            jail.clear_env();
            jail.create_file("harness.toml", &format!("{NAMED}[prod]\npreview_header = \"X-Hello-Preview\"\n"))?;
            assert_eq!(Config::load(jail.directory()).unwrap().prod.preview_header, "X-Hello-Preview");
            Ok(())
        });
    }

    #[test]
    fn the_swarm_target_defaults_to_the_labs_swarm_and_layers_like_prod() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.create_file("harness.toml", NAMED)?;
            let config = Config::load(jail.directory()).unwrap();
            assert_eq!(config.prod.kind, TargetKind::Engine, "a single engine unless told");
            assert_eq!(config.swarm.replicas, 2);
            assert_eq!(config.swarm_url().unwrap(), "http://10.210.0.11:8080");
            assert_eq!(config.target_url().unwrap(), "http://10.200.0.2:8080");
            jail.create_file(
                "harness.toml",
                &format!("{NAMED}[prod]\nkind = \"swarm\"\n[swarm]\nreplicas = 3\napp_port = 9000\n"),
            )?;
            jail.set_env("HARNESS_SWARM__REPLICAS", "4");
            let config = Config::load(jail.directory()).unwrap();
            assert_eq!(config.prod.kind, TargetKind::Swarm);
            assert_eq!(config.swarm.replicas, 4, "the environment over the file");
            assert_eq!(config.target_url().unwrap(), "http://10.210.0.11:9000");
            assert_eq!(config.swarm.update_parallelism, 1, "what the file does not say stays the default");
            jail.set_env("HARNESS_PROD__KIND", "engine");
            assert_eq!(Config::load(jail.directory()).unwrap().prod.kind, TargetKind::Engine);
            jail.set_env("HARNESS_PROD__KIND", "cluster");
            let err = Config::load(jail.directory()).unwrap_err().to_string();
            assert!(err.contains("cluster") && err.contains("swarm"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn an_unknown_key_is_an_error_naming_it() {
        Jail::expect_with(|jail| {
            // The user's HARNESS_* variables are not the test's.
            jail.clear_env();
            jail.create_file("harness.toml", &format!("{NAMED}[prod]\napp_prot = 9000\n"))?;
            let err = Config::load(jail.directory()).unwrap_err().to_string();
            assert!(err.contains("app_prot"), "{err}");
            for (toml, key) in [
                ("[[checks]]\nname = \"a\"\npath = \"/\"\nbody_contain = \"x\"\n", "body_contain"),
                ("[accessories.db]\nimage = \"i\"\nvolumes = \"/d\"\n", "volumes"),
                ("[app]\nports = 1\n", "ports"),
                ("[healthcheck]\npaht = \"/\"\n", "paht"),
                ("[version]\npath = \"/v\"\nfield = \"/r\"\npointer = \"/r\"\n", "pointer"),
            ] {
                jail.create_file("harness.toml", &format!("{NAMED}{toml}"))?;
                let err = Config::load(jail.directory()).unwrap_err().to_string();
                assert!(err.contains(key), "{toml}: {err}");
            }
            Ok(())
        });
    }

    #[test]
    fn every_key_is_in_docs_config_md() {
        // Every key of every section, as the defaults serialise (the
        // secrets, never serialised, and the keys of the sections that are
        // empty by default, named by hand), is in the reference.
        let doc = include_str!("../../docs/config.md");
        let defaults = serde_json::to_value(Config::default()).unwrap();
        let by_hand: [(&str, &str, &[&str]); 3] = [
            ("version", "[version]", &["path", "field"]),
            ("accessories", "[accessories.NAME]", &["image", "volume", "env"]),
            ("checks", "[[checks]]", &["name", "command", "method", "path", "status", "body_contains"]),
        ];
        let mut missing = Vec::new();
        for (section, keys) in defaults.as_object().unwrap() {
            let (heading, keys): (String, Vec<&str>) = match by_hand.iter().find(|(s, _, _)| s == section) {
                Some((_, heading, keys)) => (heading.to_string(), keys.to_vec()),
                None => (format!("[{section}]"), keys.as_object().unwrap().keys().map(String::as_str).collect()),
            };
            assert!(doc.contains(&format!("## `{heading}`")), "docs/config.md has no section {heading}");
            let secrets = match section.as_str() {
                "registry" => &["password"][..],
                "verify" => &["write_token"][..],
                _ => &[][..],
            };
            for key in keys.into_iter().chain(secrets.iter().copied()) {
                if !doc.contains(&format!("`{key}`")) {
                    missing.push(format!("{section}.{key}"));
                }
            }
        }
        assert!(missing.is_empty(), "not in docs/config.md: {missing:?}");
    }

    #[test]
    fn the_write_token_reaches_the_apps_environment_only_when_set_and_never_prints() {
        let mut config = Config::default();
        config.app.env = BTreeMap::from([("DB_HOST".to_owned(), "db".to_owned())]);
        assert_eq!(config.app_env(), ["DB_HOST=db"], "unset: the app's environment of before, so its spec too");
        config.verify.write_token = Some(SecretString::from("t0k3n-of-the-test"));
        assert_eq!(config.app_env(), ["DB_HOST=db", "WRITE_TOKEN=t0k3n-of-the-test"]);
        let shown = format!("{config:?} {}", serde_json::to_string(&config).unwrap());
        assert!(!shown.contains("t0k3n-of-the-test"), "{shown}");
    }

    #[test]
    fn the_password_never_prints() {
        Jail::expect_with(|jail| {
            // The user's HARNESS_* variables are not the test's.
            jail.clear_env();
            jail.create_file("harness.toml", NAMED)?;
            jail.set_env("HARNESS_REGISTRY__PASSWORD", "hunter2");
            let config = Config::load(jail.directory()).unwrap();
            assert!(config.registry.password.is_some());
            assert!(!format!("{config:?}").contains("hunter2"));
            assert!(!serde_json::to_string(&config).unwrap().contains("hunter2"));
            Ok(())
        });
    }

    #[test]
    fn a_service_is_described_by_its_file_with_the_keys_of_the_issue() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.create_file(
                "harness.toml",
                r#"
[service]
name = "hello"
[build]
dockerfile = "docker/Dockerfile"
package = "make dist"
[test]
command = "make test"
[app]
port = 5000
env = { GREETING = "hi" }
secrets = ["API_KEY"]
[prod]
app_port = 8091
[healthcheck]
path = "/ready"
[version]
path = "/version"
field = "/build/revision"
[accessories.db]
image = "reg/db:1"
volume = "/data/db"
env = { MODE = "fast" }
[[checks]]
name = "hello"
method = "get"
path = "/hello"
status = 200
body_contains = "hi"
[[checks]]
name = "books"
command = "./check.sh"
"#,
            )?;
            let config = Config::load(jail.directory()).unwrap();
            assert_eq!(config.project(), "hello");
            assert_eq!(config.path(&config.build.dockerfile), jail.directory().join("docker/Dockerfile"));
            assert_eq!((config.build.package.as_str(), config.test.command.as_str()), ("make dist", "make test"));
            assert_eq!((config.app.port, config.prod.app_port), (5000, 8091));
            assert_eq!(config.healthcheck.path, "/ready");
            assert_eq!(config.version.as_ref().map(|v| v.field.as_str()), Some("/build/revision"));
            assert_eq!(config.accessories["db"].volume.as_deref(), Some("/data/db"));
            assert_eq!(config.accessories["db"].env["MODE"], "fast");
            assert_eq!(
                config.checks().unwrap(),
                [
                    Check::Request {
                        name: "hello".into(),
                        method: "GET".into(),
                        path: "/hello".into(),
                        status: 200,
                        body_contains: Some("hi".into())
                    },
                    Check::Command { name: "books".into(), command: "./check.sh".into() },
                ]
            );
            // The secret comes from the harness's environment, when set.
            assert_eq!(config.app_env(), ["GREETING=hi"]);
            let err = config.secrets_are_set().unwrap_err().to_string();
            assert!(err.contains("API_KEY") && err.contains("app.secrets"), "{err}");
            jail.set_env("API_KEY", "k3y");
            assert_eq!(config.app_env(), ["GREETING=hi", "API_KEY=k3y"]);
            assert!(!format!("{config:?}").contains("k3y"));
            Ok(())
        });
    }

    #[test]
    fn a_service_without_a_name_or_with_checks_that_cannot_work_is_refused_naming_the_key() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            let err = Config::load(jail.directory()).unwrap_err().to_string();
            assert!(err.contains("service.name") && err.contains("harness.toml"), "{err}");
            for (toml, expected) in [
                ("[service]\nname = \"Hello World\"\n", "service.name `Hello World`"),
                (&format!("{NAMED}[[checks]]\nname = \"a\"\n"), "checks[0] (`a`) needs a `path`"),
                (&format!("{NAMED}[[checks]]\nname = \"a\"\npath = \"/\"\ncommand = \"x\"\n"), "both `command` and"),
                (&format!("{NAMED}[[checks]]\nname = \"a\"\ncommand = \"x\"\nstatus = 201\n"), "one or the other"),
                (&format!("{NAMED}[[checks]]\nname = \"a\"\npath = \"x\"\n"), "must start with /"),
                (
                    &format!(
                        "{NAMED}[[checks]]\nname = \"a\"\npath = \"/\"\n[[checks]]\nname = \"a\"\npath = \"/b\"\n"
                    ),
                    "two checks are named `a`",
                ),
                (&format!("{NAMED}[version]\npath = \"/v\"\nfield = \"revision\"\n"), "version.field `revision`"),
                (&format!("{NAMED}[accessories.Db]\nimage = \"i\"\n"), "accessories.Db"),
                (&format!("{NAMED}[accessories.proxy]\nimage = \"i\"\n"), "accessories.proxy"),
                (&format!("{NAMED}[healthcheck]\npath = \"ready\"\n"), "healthcheck.path"),
            ] {
                jail.create_file("harness.toml", toml)?;
                let err = Config::load(jail.directory()).unwrap_err().to_string();
                assert!(err.contains(expected), "{toml}: {err}");
            }
            Ok(())
        });
    }

    #[test]
    fn the_local_file_and_the_environment_go_over_the_services_file_and_the_old_checks_variables_reach_verify() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.create_file("harness.toml", &format!("{NAMED}[prod]\napp_port = 9000\n"))?;
            jail.create_file("harness.local.toml", "[prod]\napp_port = 9001\n")?;
            jail.set_env("HARNESS_CHECKS__WRITE_TOKEN", "t0k3n");
            jail.set_env("HARNESS_CHECKS__IDS", "[1,2,3]");
            let config = Config::load(jail.directory()).unwrap();
            assert_eq!(config.prod.app_port, 9001);
            assert_eq!(config.verify.ids, [1, 2, 3]);
            assert_eq!(config.app_env(), ["WRITE_TOKEN=t0k3n"]);
            Ok(())
        });
    }

    #[test]
    fn the_variables_a_deploy_gives_its_hooks_and_checks_are_not_settings() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.create_file("harness.toml", NAMED)?;
            for (key, value) in [
                ("HARNESS_URL", "http://h:1"),
                ("HARNESS_PREVIEW_HEADER", "X-Books-Ms-Preview: t"),
                ("HARNESS_REVISION", "r2"),
                ("HARNESS_VERSION", "v2"),
                ("HARNESS_SERVICE", "hello"),
                ("HARNESS_REPO", "/elsewhere"),
            ] {
                jail.set_env(key, value);
            }
            let config = Config::load(jail.directory()).unwrap();
            assert!(config.version.is_none(), "HARNESS_VERSION is not [version]");
            Ok(())
        });
    }

    #[test]
    fn books_ms_is_described_by_its_committed_file() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
            jail.create_file("harness.toml", &std::fs::read_to_string(repo.join("harness.toml")).unwrap())?;
            let config = Config::load(jail.directory()).unwrap();
            assert_eq!(config.project(), "books-ms");
            assert_eq!(config.service_repository(), "10.200.0.1:5000/books-ms");
            assert_eq!(config.tests_repository(), "10.200.0.1:5000/books-ms-tests");
            assert_eq!(config.app_env(), ["DB_HOST=db"]);
            assert_eq!(config.prod.preview_header, "X-Books-Ms-Preview", "its proxy's configuration unchanged");
            assert_eq!(config.build.tests_dockerfile(), Some(Path::new("Dockerfile.test")));
            assert_eq!(config.test.containers_label, "books-ms.tests.pid");
            assert_eq!(Config::default().prod.preview_header, "X-Harness-Preview", "a neutral name by default");
            assert_eq!(Config::default().build.tests_dockerfile(), None);
            assert_eq!(config.accessories["db"].image, Config::default().prod.database_image, "the lab's mirror");
            assert!(config
                .checks()
                .unwrap()
                .iter()
                .any(|c| matches!(c, Check::Command { command, .. } if command == "harness verify")));
            Ok(())
        });
    }
}
