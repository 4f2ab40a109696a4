//! One configuration for every command: defaults that work against the lab,
//! then `harness.toml` at the repo root, then `HARNESS_*` environment
//! variables (`HARNESS_PROD__APP_PORT=9090`: `__` separates sections), then
//! flags. Layered with figment.

use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub registry: RegistryConfig,
    pub images: ImagesConfig,
    pub prod: ProdConfig,
    pub checks: ChecksConfig,
    #[serde(default)]
    pub hooks: HooksConfig,
    #[serde(default)]
    pub pipeline: PipelineConfig,
    /// The swarm target (`prod.kind = "swarm"`).
    #[serde(default)]
    pub swarm: SwarmConfig,
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
/// overlay network, a proxy on every node published on `app_port`, the
/// database one service pinned to one node by id. The project, images,
/// log settings and the app's limits (`memory_mb`, `cpus`, as each task's
/// resource limits) are `[prod]`'s; `prod.health_timeout_secs` and
/// `drain_secs` do not apply (`converge_timeout_secs` bounds the wait, and
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
    /// The swarm node id (`docker node ls`) the database is pinned to when
    /// a deploy first creates it (its volume lives there); by default the
    /// manager `docker_host` reaches. An existing database keeps its node.
    pub database_node: Option<String>,
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
    /// Repository names under the registry.
    pub service: String,
    pub tests: String,
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
    /// Prefix of the containers, network and volume on prod.
    pub project: String,
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
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChecksConfig {
    /// Ids the post-deploy checks may write; no user's book is ever
    /// touched. The defaults sit at the top of the 32-bit id range.
    pub ids: Vec<i32>,
    /// The service's write token (`HARNESS_CHECKS__WRITE_TOKEN`), when its
    /// writes are not open: a deploy gives it to the app (`WRITE_TOKEN`),
    /// and the checks send it on their writes. Never printed.
    #[serde(default, skip_serializing)]
    pub write_token: Option<SecretString>,
}

/// Commands a deploy runs on this machine (`sh -c`), with the release and
/// prod's URL in their environment (`BOOKS_MS_IMAGE`, `BOOKS_MS_VERSION`,
/// `BOOKS_MS_REVISION`, `BOOKS_MS_URL`, `BOOKS_MS_COLOUR`). A failing
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
                service: "books-ms".to_owned(),
                tests: "books-ms-tests".to_owned(),
                rust: lab("BOOKS_RUST_IMAGE"),
                database: lab("BOOKS_DB_IMAGE"),
            },
            prod: ProdConfig {
                docker_host: lab("BOOKS_LAB_PROD_DOCKER_HOST"),
                cert_path: PathBuf::from(lab("BOOKS_LAB_PROD_CERT_PATH")),
                app_port: 8080,
                kind: TargetKind::Engine,
                project: "books-ms".to_owned(),
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
            },
            checks: ChecksConfig { ids: vec![2_147_483_101, 2_147_483_102, 2_147_483_103], write_token: None },
            hooks: HooksConfig::default(),
            pipeline: PipelineConfig::default(),
            swarm: SwarmConfig::default(),
        }
    }
}

impl Config {
    /// The app's environment on prod, either target: its database by name,
    /// and the write token when one is set.
    pub fn app_env(&self) -> Vec<String> {
        use secrecy::ExposeSecret;
        let mut env = vec!["DB_HOST=db".to_owned()];
        if let Some(token) = &self.checks.write_token {
            env.push(format!("WRITE_TOKEN={}", token.expose_secret()));
        }
        env
    }

    /// Defaults, then `REPO/harness.toml` (if present), then `HARNESS_*`.
    pub fn load(repo: &Path) -> anyhow::Result<Self> {
        let config: Config = Self::figment(repo).extract().map_err(|e| anyhow::anyhow!("configuration: {e}"))?;
        config.validate()?;
        Ok(config)
    }

    /// Settings that parse but cannot work: named, with what would.
    pub fn validate(&self) -> anyhow::Result<()> {
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
        if swarm.database_node.as_deref().is_some_and(|n| n.trim().is_empty()) {
            anyhow::bail!("configuration: swarm.database_node is empty: set a node id (`docker node ls`) or remove it");
        }
        Ok(())
    }

    fn figment(repo: &Path) -> Figment {
        Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::file(repo.join("harness.toml")))
            .merge(Env::prefixed("HARNESS_").split("__").ignore(&["repo"]))
    }

    /// `REGISTRY/NAME` of the service image.
    pub fn service_repository(&self) -> String {
        format!("{}/{}", self.registry.address, self.images.service)
    }

    pub fn tests_repository(&self) -> String {
        format!("{}/{}", self.registry.address, self.images.tests)
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
        ] {
            assert!(!lab(key).is_empty(), "{key} is missing from lab/topology.env or lab/lab.env");
        }
        assert!(!lab("# comment").contains('='));
    }
    use figment::Jail;

    #[test]
    fn with_no_configuration_the_defaults_are_the_labs() {
        Jail::expect_with(|jail| {
            // The user's HARNESS_* variables are not the test's.
            jail.clear_env();
            let config = Config::load(jail.directory()).unwrap();
            assert_eq!(config.service_repository(), "10.200.0.1:5000/books-ms");
            assert_eq!(config.prod_url().unwrap(), "http://10.200.0.2:8080");
            Ok(())
        });
    }

    #[test]
    fn the_file_then_the_environment_override_the_defaults() {
        Jail::expect_with(|jail| {
            // The user's HARNESS_* variables are not the test's.
            jail.clear_env();
            jail.create_file("harness.toml", "[prod]\napp_port = 9000\n[registry]\naddress = \"reg.example:5000\"\n")?;
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
                jail.create_file("harness.toml", toml)?;
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
        figment::Jail::expect_with(|jail| {
            jail.create_file("harness.toml", "[swarm]\nreplicas = 16\ndatabase_node = \"abc\"\n")?;
            assert_eq!(Config::load(jail.directory()).unwrap().swarm.replicas, 16);
            Ok(())
        });
    }

    #[test]
    fn the_swarm_target_defaults_to_the_labs_swarm_and_layers_like_prod() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            let config = Config::load(jail.directory()).unwrap();
            assert_eq!(config.prod.kind, TargetKind::Engine, "a single engine unless told");
            assert_eq!(config.swarm.replicas, 2);
            assert_eq!(config.swarm_url().unwrap(), "http://10.210.0.11:8080");
            assert_eq!(config.target_url().unwrap(), "http://10.200.0.2:8080");
            jail.create_file("harness.toml", "[prod]\nkind = \"swarm\"\n[swarm]\nreplicas = 3\napp_port = 9000\n")?;
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
            jail.create_file("harness.toml", "[prod]\napp_prot = 9000\n")?;
            let err = Config::load(jail.directory()).unwrap_err().to_string();
            assert!(err.contains("app_prot"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn every_key_is_in_docs_config_md() {
        // Every key of every section, as the defaults serialise (the
        // secrets, never serialised, named by hand), is in the reference.
        let doc = include_str!("../../docs/config.md");
        let defaults = serde_json::to_value(Config::default()).unwrap();
        let mut missing = Vec::new();
        for (section, keys) in defaults.as_object().unwrap() {
            assert!(doc.contains(&format!("## `[{section}]`")), "docs/config.md has no section [{section}]");
            let keys = keys.as_object().unwrap().keys().map(String::as_str);
            let secrets = match section.as_str() {
                "registry" => &["password"][..],
                "checks" => &["write_token"][..],
                _ => &[][..],
            };
            for key in keys.chain(secrets.iter().copied()) {
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
        assert_eq!(config.app_env(), ["DB_HOST=db"], "unset: the app's environment of before, so its spec too");
        config.checks.write_token = Some(SecretString::from("t0k3n-of-the-test"));
        assert_eq!(config.app_env(), ["DB_HOST=db", "WRITE_TOKEN=t0k3n-of-the-test"]);
        let shown = format!("{config:?} {}", serde_json::to_string(&config).unwrap());
        assert!(!shown.contains("t0k3n-of-the-test"), "{shown}");
    }

    #[test]
    fn the_password_never_prints() {
        Jail::expect_with(|jail| {
            // The user's HARNESS_* variables are not the test's.
            jail.clear_env();
            jail.set_env("HARNESS_REGISTRY__PASSWORD", "hunter2");
            let config = Config::load(jail.directory()).unwrap();
            assert!(config.registry.password.is_some());
            assert!(!format!("{config:?}").contains("hunter2"));
            assert!(!serde_json::to_string(&config).unwrap().contains("hunter2"));
            Ok(())
        });
    }
}
