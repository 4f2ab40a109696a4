//! The two targets of `harness deploy`, prod (one host, blue-green behind
//! HAProxy) and the lab's swarm: the harness pointed at one, where users
//! reach it, its engine, a release made live, its history read back, and
//! the [`Scene`] most deploy tests start from.

use std::time::Duration;

use bollard::Docker;
use serde_json::Value;

use super::release::{releases, Release};
use super::run::Run;
use super::{bounded, http_client, prod_lock, repo_root, Lab};

/// Where users reach the service: prod's proxy, and every swarm node's
/// (the harness's default).
pub const APP_PORT: u16 = 8080;
/// How long a test waits for something a deploy does to show.
pub const OBSERVE_DEADLINE: Duration = Duration::from_secs(120);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Prod,
    Swarm,
}

impl Target {
    /// One harness command. A deploy on prod: the pulls, a health wait, the
    /// checks twice, the drain; on the swarm, the pulls on every node and
    /// the rolling update instead of the health wait.
    pub fn deadline(self) -> Duration {
        match self {
            Target::Prod => Duration::from_secs(300),
            Target::Swarm => Duration::from_secs(400),
        }
    }

    /// `harness --repo ROOT [--target swarm] ARGS...` with `env`, bounded,
    /// off the async runtime.
    pub async fn harness(self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let target: &[&str] = match self {
            Target::Prod => &[],
            Target::Swarm => &["--target", "swarm"],
        };
        super::run::harness(self.deadline())
            .arg("--repo")
            .arg(repo_root())
            .args(target)
            .args(args)
            .envs(env.iter().copied())
            .run_async()
            .await
    }

    /// `harness deploy --image IMAGE` with `env`.
    pub async fn deploy(self, image: &str, env: &[(&str, &str)]) -> Run {
        self.harness(&["deploy", "--image", image], env).await
    }

    /// Where users reach it: prod's proxy, or node 1's (the manager's).
    pub fn url(self) -> String {
        match self {
            Target::Prod => Lab::load().prod_url(APP_PORT),
            Target::Swarm => node_url(1),
        }
    }

    /// Its engine: prod's, or the swarm manager's.
    pub async fn docker(self) -> Docker {
        match self {
            Target::Prod => Lab::load().prod_docker().await,
            Target::Swarm => Lab::load().swarm_docker().await,
        }
    }

    /// Releases A and B of this run (`deploy-test-a-PID`... on prod,
    /// `swarm-test-a-PID`... on the swarm), built at most once per test
    /// binary.
    pub async fn releases(self) -> (Release, Release) {
        releases(match self {
            Target::Prod => "deploy-test",
            Target::Swarm => "swarm-test",
        })
        .await
    }

    /// It serves `release` to users: deployed now, or already live.
    pub async fn make_live(self, release: &Release) {
        let run = self.deploy(&release.image, &[]).await;
        assert!(run.success(), "making {} live on {self:?} failed ({:?}):\n{}", release.revision, run.code, run.stderr);
        assert_eq!(revision(&self.url()).await, release.revision, "after deploying it:\n{}", run.stderr);
    }

    /// Its history, as `harness history --json` gives it.
    pub async fn history(self) -> Vec<Value> {
        let history = self.harness(&["history", "--json"], &[]).await;
        assert_eq!(history.code, Some(0), "harness history --json:\n{}", history.stderr);
        serde_json::from_str(&history.stdout)
            .unwrap_or_else(|e| panic!("harness history --json is not a list of entries ({e}):\n{}", history.stdout))
    }

    /// The last entry of its history.
    pub async fn last_history_entry(self) -> Value {
        self.history().await.pop().expect("the history has entries")
    }

    /// The target to this test alone, releases A and B, A live: see [`Scene`].
    pub async fn scene(self) -> Scene {
        let lock = prod_lock().await;
        let (a, b) = self.releases().await;
        self.make_live(&a).await;
        let docker = self.docker().await;
        Scene { a, b, docker, _lock: lock }
    }
}

/// What most deploy tests start from: the target to themselves until it is
/// dropped (prod and the swarm are shared: one test at a time), releases A
/// and B of this run, A live, and the target's engine.
pub struct Scene {
    pub a: Release,
    pub b: Release,
    pub docker: Docker,
    _lock: tokio::sync::MutexGuard<'static, ()>,
}

/// Node `i`'s proxy (1-based; node 1 is the manager).
pub fn node_url(i: usize) -> String {
    format!("http://{}:{APP_PORT}", Lab::load().swarm_node_address(i))
}

/// The revision `/version` reports at `base`, None when it does not answer
/// 200 with one.
pub async fn revision_at(base: &str) -> Option<String> {
    let response = bounded("GET /version", http_client().get(format!("{base}/version")).send()).await.ok()?;
    if response.status() != 200 {
        return None;
    }
    let version: Value = response.json().await.ok()?;
    version["revision"].as_str().map(str::to_owned)
}

/// The revision `/version` reports at `base`, which must answer.
pub async fn revision(base: &str) -> String {
    let url = format!("{base}/version");
    let response = bounded("GET /version", http_client().get(&url).send()).await.expect("the target answers");
    assert_eq!(response.status(), 200, "GET {url}");
    let version: Value = response.json().await.expect("a JSON /version");
    version["revision"].as_str().expect("a revision").to_owned()
}
