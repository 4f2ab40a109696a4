//! What the harness's tests share: the lab's values (`lab/topology.env`,
//! each overridable by an environment variable of the same name), the
//! registry's HTTP API and the lab's engines as independent clients, the
//! environment for a nested cargo, git for test checkouts; in [`run`] the
//! one bounded runner of the harness binary (and of any other program), and
//! in [`database`] a database container of a test's own, of the one image
//! the harness's and the service's tests use.
//!
//! For the lab and deploy tests: [`engines`] (TLS clients, pulls, a lab
//! dockerd's command line), [`swarm`] (the nodes, `lab/swarm.sh`, a node
//! lost), [`target`] (prod or the swarm as a deploy target, and the scene
//! its tests start from), [`release`] (releases A and B), [`load`] (a
//! steady load during an action), [`books`] (users' books a deploy must
//! keep), [`prod`] (what prod runs, the deploy lock) and [`hello`] (the
//! second service, tests/fixtures/hello).
//!
//! These tests need the lab up (`lab/up.sh`, which `scripts/test.sh` runs
//! first) and root (the registry's credentials file is mode 600). They
//! never skip: a lab that is down fails them.

// Each test binary (`mod common;` in each of tests/*.rs) uses a part of
// this module and of its submodules, which this attribute covers too.
#![allow(dead_code)]

pub mod books;
pub mod database;
pub mod engines;
pub mod hello;
pub mod load;
pub mod prod;
pub mod release;
pub mod run;
pub mod swarm;
pub mod target;

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard::auth::DockerCredentials;
use bollard::Docker;

/// Longest any single Docker or HTTP operation may take: everything is
/// local, so this only turns a hang into a failure.
pub const DEADLINE: Duration = Duration::from_secs(60);
/// What `docker push` sends for a manifest; asked for to read its digest.
pub const MANIFEST_V2: &str = "application/vnd.docker.distribution.manifest.v2+json";

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace root").to_owned()
}

/// `KEY=value` lines; blank lines and `#` comments skipped.
pub fn parse_env(text: &str) -> HashMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| line.split_once('='))
        .map(|(key, value)| (key.trim().to_owned(), value.trim().to_owned()))
        .collect()
}

pub async fn bounded<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, future).await.unwrap_or_else(|_| panic!("{what} took longer than {DEADLINE:?}"))
}

/// Plain HTTP, never through a proxy: every address here is the lab's.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(15)).build().expect("an HTTP client")
}

/// Docker 20.10 speaks API 1.41 and refuses newer clients: agree on one.
pub async fn negotiate(docker: Docker, which: &str) -> Docker {
    bounded(&format!("version negotiation with {which}"), docker.negotiate_version())
        .await
        .unwrap_or_else(|e| panic!("{which} does not answer: {e}"))
}

/// Runs git in `dir` as a test author (commits need a name), and returns
/// its output; a failure fails the test with git's message.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let output = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.email=tests@example.invalid", "-c", "user.name=tests"])
        .args(args)
        .output()
        .expect("git runs");
    assert!(output.status.success(), "git {args:?} in {}: {}", dir.display(), String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// A nested cargo (a script or the harness's test step) must not see the
/// variables cargo sets for this test: build scripts that watch them (ring's
/// among them) would think their inputs changed and rebuild.
/// The settings that give a pipeline run images and a prod project named
/// `name` of its own (for `Harness::envs` or `Command::envs`).
pub fn named(name: &str) -> [(&'static str, String); 3] {
    [
        ("HARNESS_IMAGES__SERVICE", name.to_owned()),
        ("HARNESS_IMAGES__TESTS", format!("{name}-tests")),
        ("HARNESS_PROD__PROJECT", name.to_owned()),
    ]
}

/// A folder for the harness's state (`--repo`) when it ships a `--source`:
/// books-ms's committed harness.toml in it, which describes the service.
pub fn state_for_books_ms() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(repo_root().join("harness.toml"), dir.path().join("harness.toml")).unwrap();
    dir
}

/// A git repository of `files` (path, text), committed with `message`.
pub fn committed_tree<T: AsRef<str>>(files: &[(&str, T)], message: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (path, text) in files {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text.as_ref()).unwrap();
    }
    git(dir.path(), &["init", "-q"]);
    git(dir.path(), &["add", "-A"]);
    git(dir.path(), &["commit", "-qm", message]);
    dir
}

pub fn without_cargo_env(command: &mut std::process::Command) -> &mut std::process::Command {
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        let from_cargo = key.starts_with("CARGO_") && !matches!(key.as_str(), "CARGO_HOME" | "CARGO_TARGET_DIR");
        if from_cargo || key == "OUT_DIR" {
            command.env_remove(&key);
        }
    }
    command
}

/// The values of `lab/topology.env`.
pub struct Lab {
    pub registry: String,
    /// The CA the registry's certificate is issued by (it speaks HTTPS only).
    pub registry_ca: PathBuf,
    pub credentials_file: PathBuf,
    pub prod_docker_host: String,
    pub prod_cert_path: PathBuf,
    /// The swarm's manager API (`tcp://HOST:PORT`) and its client
    /// certificates.
    pub swarm_docker_host: String,
    pub swarm_cert_path: PathBuf,
    /// How many nodes lab/swarm.sh raises (`swarm-1` to `swarm-N`).
    pub swarm_nodes: usize,
}

pub struct Credentials {
    pub user: String,
    pub password: String,
}

/// Never prints the password.
impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials").field("user", &self.user).field("password", &"<redacted>").finish()
    }
}

impl Lab {
    pub fn load() -> Lab {
        let path = repo_root().join("lab/topology.env");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let file = parse_env(&text);
        let get = |key: &str| {
            std::env::var(key)
                .ok()
                .or_else(|| file.get(key).cloned())
                .unwrap_or_else(|| panic!("{key} is neither set nor in {}", path.display()))
        };
        Lab {
            registry: get("BOOKS_LAB_REGISTRY"),
            registry_ca: get("BOOKS_LAB_REGISTRY_CA").into(),
            credentials_file: get("BOOKS_LAB_REGISTRY_CREDENTIALS").into(),
            prod_docker_host: get("BOOKS_LAB_PROD_DOCKER_HOST"),
            prod_cert_path: get("BOOKS_LAB_PROD_CERT_PATH").into(),
            swarm_docker_host: get("BOOKS_LAB_SWARM_DOCKER_HOST"),
            swarm_cert_path: get("BOOKS_LAB_SWARM_CERT_PATH").into(),
            swarm_nodes: {
                let nodes = get("BOOKS_LAB_SWARM_NODES");
                nodes.parse().unwrap_or_else(|_| panic!("BOOKS_LAB_SWARM_NODES={nodes} is not a number"))
            },
        }
    }

    /// The registry's user and password (the file lab/up.sh writes).
    pub fn credentials(&self) -> Credentials {
        let path = &self.credentials_file;
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| {
            panic!(
                "cannot read the registry's credentials in {} ({e}): run lab/up.sh, and the tests, as root",
                path.display()
            )
        });
        let values = parse_env(&text);
        let get = |key: &str| {
            values
                .get(key)
                .filter(|v| !v.is_empty())
                .cloned()
                .unwrap_or_else(|| panic!("{} has no {key}", path.display()))
        };
        Credentials { user: get("REGISTRY_USER"), password: get("REGISTRY_PASSWORD") }
    }

    pub fn docker_credentials(&self) -> DockerCredentials {
        let credentials = self.credentials();
        DockerCredentials {
            username: Some(credentials.user),
            password: Some(credentials.password),
            serveraddress: Some(self.registry.clone()),
            ..Default::default()
        }
    }

    pub fn registry_url(&self, path: &str) -> String {
        format!("https://{}{path}", self.registry)
    }

    /// An HTTPS client of the registry trusting the lab's CA alone, never
    /// through a proxy.
    pub fn registry_client(&self) -> reqwest::Client {
        let pem = std::fs::read(&self.registry_ca)
            .unwrap_or_else(|e| panic!("cannot read the registry's CA {}: {e}", self.registry_ca.display()));
        let ca = reqwest::Certificate::from_pem(&pem).expect("the registry's CA is PEM");
        engines::install_crypto_provider();
        reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(15))
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca)
            .build()
            .expect("an HTTPS client")
    }

    /// A repository's name in the registry: `REGISTRY/` left out if there.
    fn name<'a>(&self, repository: &'a str) -> &'a str {
        repository.strip_prefix(&format!("{}/", self.registry)).unwrap_or(repository)
    }

    /// The registry's digest of `repository:reference` (read with the
    /// registry's HTTP API), None when it has no such manifest.
    pub async fn manifest_digest(&self, repository: &str, reference: &str) -> Option<String> {
        let credentials = self.credentials();
        let name = self.name(repository);
        let response = bounded(
            "reading a manifest",
            self.registry_client()
                .head(self.registry_url(&format!("/v2/{name}/manifests/{reference}")))
                .header(reqwest::header::ACCEPT, MANIFEST_V2)
                .basic_auth(&credentials.user, Some(&credentials.password))
                .send(),
        )
        .await
        .expect("the registry answers");
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return None;
        }
        assert_eq!(response.status(), 200, "HEAD of the manifest {name}:{reference}");
        let digest = response.headers().get("docker-content-digest").expect("a Docker-Content-Digest header");
        Some(digest.to_str().expect("an ASCII digest").to_owned())
    }

    /// The labels of the image `repository@digest`, from its config blob.
    pub async fn labels(&self, repository: &str, digest: &str) -> HashMap<String, String> {
        let credentials = self.credentials();
        let name = self.name(repository);
        let get = |path: String, accept: &'static str| {
            self.registry_client()
                .get(self.registry_url(&format!("/v2/{name}/{path}")))
                .header(reqwest::header::ACCEPT, accept)
                .basic_auth(&credentials.user, Some(&credentials.password))
                .send()
        };
        let manifest: serde_json::Value =
            bounded("reading a manifest", get(format!("manifests/{digest}"), MANIFEST_V2))
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
        let config_digest = manifest["config"]["digest"].as_str().expect("a config digest").to_owned();
        let config: serde_json::Value = bounded("reading a config blob", get(format!("blobs/{config_digest}"), "*/*"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        serde_json::from_value(config["config"]["Labels"].clone()).expect("labels")
    }

    /// The tags the registry lists for `repository` (none when it has no
    /// such repository).
    pub async fn tags(&self, repository: &str) -> std::collections::BTreeSet<String> {
        let credentials = self.credentials();
        let name = self.name(repository);
        let response = bounded(
            "listing tags",
            self.registry_client()
                .get(self.registry_url(&format!("/v2/{name}/tags/list")))
                .basic_auth(&credentials.user, Some(&credentials.password))
                .send(),
        )
        .await
        .expect("the registry answers");
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Default::default();
        }
        assert_eq!(response.status(), 200, "GET /v2/{name}/tags/list");
        let list: serde_json::Value = response.json().await.expect("a tag list");
        list["tags"].as_array().into_iter().flatten().filter_map(|t| Some(t.as_str()?.to_owned())).collect()
    }

    /// The registry's repositories (its catalog, up to 1,000 names).
    pub async fn repositories(&self) -> Vec<String> {
        let credentials = self.credentials();
        let response = bounded(
            "listing repositories",
            self.registry_client()
                .get(self.registry_url("/v2/_catalog?n=1000"))
                .basic_auth(&credentials.user, Some(&credentials.password))
                .send(),
        )
        .await
        .expect("the registry answers");
        assert_eq!(response.status(), 200, "GET /v2/_catalog");
        let list: serde_json::Value = response.json().await.expect("a catalog");
        list["repositories"].as_array().into_iter().flatten().filter_map(|r| Some(r.as_str()?.to_owned())).collect()
    }

    /// Removes a manifest from the registry (its `delete: enabled` allows
    /// it); the registry's answer, 202 when it was there.
    pub async fn delete_manifest(&self, repository: &str, digest: &str) -> reqwest::StatusCode {
        let credentials = self.credentials();
        let name = self.name(repository);
        bounded(
            "deleting a manifest",
            self.registry_client()
                .delete(self.registry_url(&format!("/v2/{name}/manifests/{digest}")))
                .basic_auth(&credentials.user, Some(&credentials.password))
                .send(),
        )
        .await
        .expect("the registry answers")
        .status()
    }

    /// Removes every tagged manifest of `repository` (what a test pushed
    /// there; the registry's garbage collection frees the space).
    pub async fn empty_repository(&self, repository: &str) {
        for tag in self.tags(repository).await {
            if let Some(digest) = self.manifest_digest(repository, &tag).await {
                self.delete_manifest(repository, &digest).await;
            }
        }
    }

    /// prod's API address without the scheme, e.g. `10.200.0.2:2376`.
    pub fn prod_address(&self) -> &str {
        self.prod_docker_host.trim_start_matches("tcp://")
    }

    pub fn prod_cert(&self, name: &str) -> PathBuf {
        self.prod_cert_path.join(name)
    }

    /// prod's engine, reached as the harness reaches it.
    pub async fn prod_docker(&self) -> Docker {
        engines::tls_docker(self.prod_address(), &self.prod_cert_path, "prod's engine").await
    }

    /// The swarm manager's API address without the scheme, e.g.
    /// `10.210.0.11:2376`.
    pub fn swarm_manager_address(&self) -> &str {
        self.swarm_docker_host.trim_start_matches("tcp://")
    }

    /// Node i's address (1-based; node 1 is the manager): the manager's
    /// network, host 10 + i, as lab/swarm.sh lays them out.
    pub fn swarm_node_address(&self, i: usize) -> String {
        let host = self.swarm_manager_address().rsplit_once(':').expect("HOST:PORT").0;
        let network = host.rsplit_once('.').expect("an IPv4 address").0;
        format!("{network}.{}", 10 + i)
    }

    /// The swarm manager's engine, reached as the harness reaches it.
    pub async fn swarm_docker(&self) -> Docker {
        engines::tls_docker(self.swarm_manager_address(), &self.swarm_cert_path, "the swarm manager's engine").await
    }

    /// The service on prod's address, published on `port`.
    pub fn prod_url(&self, port: u16) -> String {
        let host = self.prod_address().rsplit_once(':').map_or(self.prod_address(), |(host, _)| host);
        format!("http://{host}:{port}")
    }
}

/// prod is shared: the tests of one binary that use it take this lock, one
/// at a time (cargo runs test binaries one after another). tokio's mutex,
/// held across awaits; a test that fails releases it.
pub async fn prod_lock() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}
