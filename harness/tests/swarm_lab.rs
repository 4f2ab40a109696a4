//! The lab's swarm (`lab/swarm.sh`, raised by `lab/up.sh`), tested as the
//! harness and an operator use it: the configured nodes, all Ready; the
//! manager's API only for a TLS client holding the lab's certificate; every
//! node pulling the lab's images with the registry's credentials only; a
//! second `up` that restarts nothing; `harness lab status` listing the
//! nodes; a node whose link was taken down, repaired by `up`.
//!
//! These tests need the lab up (`scripts/test.sh` runs `lab/up.sh` first)
//! and root. They never skip: a swarm that is down fails them. Addresses
//! come from `lab/topology.env` (an environment variable of the same name
//! overrides a value). The tests that take a node away or restart
//! something hold [`swarm_lock`], so that no other test of this binary
//! sees the swarm half-way; cargo runs test binaries one after another.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use bollard::auth::DockerCredentials;
use bollard::models::{Node, NodeSpecAvailabilityEnum, NodeSpecRoleEnum, NodeState};
use bollard::query_parameters::CreateImageOptionsBuilder;
use bollard::{Docker, API_DEFAULT_VERSION};
use futures_util::StreamExt;

use common::{bounded, negotiate, parse_env, repo_root, Lab, DEADLINE};

/// The label lab/swarm.sh gives node i: `swarm-<i>`.
const NODE_LABEL: &str = "books-lab.node";

/// The swarm's values in `lab/topology.env`.
struct Swarm {
    nodes: usize,
    docker_host: String,
    cert_path: PathBuf,
}

impl Swarm {
    fn load() -> Swarm {
        let path = repo_root().join("lab/topology.env");
        let file = parse_env(&std::fs::read_to_string(&path).expect("lab/topology.env"));
        let get = |key: &str| {
            std::env::var(key)
                .ok()
                .or_else(|| file.get(key).cloned())
                .unwrap_or_else(|| panic!("{key} is neither set nor in {}", path.display()))
        };
        let nodes = get("BOOKS_LAB_SWARM_NODES");
        Swarm {
            nodes: nodes.parse().unwrap_or_else(|_| panic!("BOOKS_LAB_SWARM_NODES={nodes} is not a number")),
            docker_host: get("BOOKS_LAB_SWARM_DOCKER_HOST"),
            cert_path: get("BOOKS_LAB_SWARM_CERT_PATH").into(),
        }
    }

    /// The manager's API address without the scheme, e.g. `10.210.0.11:2376`.
    fn manager_address(&self) -> &str {
        self.docker_host.trim_start_matches("tcp://")
    }

    /// Node i's address: the manager's (node 1) network, host 10 + i.
    fn node_address(&self, i: usize) -> String {
        let host = self.manager_address().rsplit_once(':').expect("HOST:PORT").0;
        let network = host.rsplit_once('.').expect("an IPv4 address").0;
        format!("{network}.{}", 10 + i)
    }

    fn cert(&self, name: &str) -> PathBuf {
        self.cert_path.join(name)
    }

    /// The manager's engine, as the harness reaches it: TLS with the client
    /// certificate.
    async fn manager(&self) -> Docker {
        install_crypto_provider();
        let docker = Docker::connect_with_ssl(
            self.manager_address(),
            &self.cert("key.pem"),
            &self.cert("cert.pem"),
            &self.cert("ca.pem"),
            DEADLINE.as_secs(),
            API_DEFAULT_VERSION,
        )
        .expect("a TLS client for the swarm's manager");
        negotiate(docker, "the swarm's manager").await
    }

    /// Node i's engine: the manager over TLS, a worker on the unix socket
    /// lab/swarm.sh gives it for the lab's own use.
    async fn node(&self, i: usize) -> Docker {
        if i == 1 {
            return self.manager().await;
        }
        let socket = format!("/run/books-lab/swarm-{i}/docker.sock");
        let docker = Docker::connect_with_unix(&socket, DEADLINE.as_secs(), API_DEFAULT_VERSION)
            .unwrap_or_else(|e| panic!("a client for {socket}: {e}"));
        negotiate(docker, &format!("swarm-{i}'s engine")).await
    }
}

fn install_crypto_provider() {
    // bollard's and reqwest's TLS take rustls's process-wide provider,
    // ambiguous should another crate ever enable a second one.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// What the manager says of a node.
#[derive(Debug, Clone, PartialEq)]
struct NodeView {
    id: String,
    label: String,
    address: String,
    role: Option<NodeSpecRoleEnum>,
    state: Option<NodeState>,
    availability: Option<NodeSpecAvailabilityEnum>,
    leader: bool,
}

impl NodeView {
    fn ready(&self) -> bool {
        self.state == Some(NodeState::READY) && self.availability == Some(NodeSpecAvailabilityEnum::ACTIVE)
    }
}

impl From<Node> for NodeView {
    fn from(node: Node) -> NodeView {
        let spec = node.spec.unwrap_or_default();
        let status = node.status.unwrap_or_default();
        NodeView {
            id: node.id.unwrap_or_default(),
            label: spec.labels.unwrap_or_default().get(NODE_LABEL).cloned().unwrap_or_default(),
            address: status.addr.unwrap_or_default(),
            role: spec.role,
            state: status.state,
            availability: spec.availability,
            leader: node.manager_status.and_then(|m| m.leader).unwrap_or(false),
        }
    }
}

/// The nodes the manager lists, by label.
async fn nodes(manager: &Docker) -> HashMap<String, NodeView> {
    let nodes =
        bounded("listing the swarm's nodes", manager.list_nodes(None)).await.expect("the manager lists its nodes");
    nodes.into_iter().map(NodeView::from).map(|n| (n.label.clone(), n)).collect()
}

/// Polls the manager (every 500 ms, at most `within`) until `done` holds
/// for its nodes; the last view otherwise, for the failure's message.
async fn await_nodes(
    manager: &Docker,
    within: Duration,
    done: impl Fn(&HashMap<String, NodeView>) -> bool,
) -> Result<HashMap<String, NodeView>, HashMap<String, NodeView>> {
    let start = Instant::now();
    loop {
        let view = nodes(manager).await;
        if done(&view) {
            return Ok(view);
        }
        if start.elapsed() > within {
            return Err(view);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The tests that take a node away, restart something, or need every node
/// Ready or reachable take this lock, one at a time. tokio's mutex, held across awaits;
/// a test that fails releases it.
async fn swarm_lock() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

/// `lab/swarm.sh ARGS`, bounded (`up` waits 60 s at most for the nodes).
fn swarm_sh(args: &[&str]) -> common::run::Run {
    let mut command = Command::new("bash");
    command.arg(repo_root().join("lab/swarm.sh")).args(args);
    common::run::run_bounded(&mut command, Duration::from_secs(180))
}

/// Each node's dockerd, from the pid files lab/swarm.sh gives them.
fn dockerd_pids(swarm: &Swarm) -> Vec<u32> {
    (1..=swarm.nodes)
        .map(|i| {
            let file = format!("/run/books-lab/swarm-{i}/dockerd.pid");
            let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{file}: {e}; is the swarm up?"));
            text.trim().parse().unwrap_or_else(|_| panic!("{file} holds {text:?}"))
        })
        .collect()
}

fn assert_all_ready(swarm: &Swarm, view: &HashMap<String, NodeView>) {
    assert_eq!(view.len(), swarm.nodes, "the manager lists {} nodes, want {}: {view:#?}", view.len(), swarm.nodes);
    for i in 1..=swarm.nodes {
        let node = view.get(&format!("swarm-{i}")).unwrap_or_else(|| panic!("no node labelled swarm-{i}: {view:#?}"));
        assert!(node.ready(), "swarm-{i} is not Ready and Active: {node:?}");
        assert_eq!(node.address, swarm.node_address(i), "swarm-{i}'s address");
        let role = if i == 1 { NodeSpecRoleEnum::MANAGER } else { NodeSpecRoleEnum::WORKER };
        assert_eq!(node.role, Some(role), "swarm-{i}'s role");
        assert_eq!(node.leader, i == 1, "swarm-{i} leads the swarm, or not");
    }
}

// ------------------------------------------------------------------ the nodes

#[tokio::test]
async fn the_swarm_has_the_configured_nodes_all_ready_with_one_manager() {
    let _lock = swarm_lock().await;
    let swarm = Swarm::load();
    let manager = swarm.manager().await;

    assert_all_ready(&swarm, &nodes(&manager).await);

    // The manager's engine is in swarm mode as a manager, the others join
    // it as workers.
    let info = bounded("the manager's info", manager.info()).await.expect("the manager's info");
    let swarm_info = info.swarm.expect("swarm info");
    assert_eq!(swarm_info.control_available, Some(true), "node 1 manages the swarm");
    assert_eq!(swarm_info.nodes, Some(swarm.nodes as i64), "the swarm's node count");
    assert_eq!(swarm_info.managers, Some(1), "one manager");
}

#[tokio::test]
async fn every_node_pulls_a_mirrored_image_with_the_registrys_credentials_only() {
    // Every node must be reachable: another test takes a link down.
    let _lock = swarm_lock().await;
    let lab = Lab::load();
    let swarm = Swarm::load();
    let env = parse_env(&std::fs::read_to_string(repo_root().join("lab/lab.env")).expect("lab/lab.env"));
    let image = env.get("BOOKS_PROXY_IMAGE").expect("BOOKS_PROXY_IMAGE in lab/lab.env");
    let (name, tag) = image.rsplit_once(':').expect("NAME:TAG");
    let repository = format!("{}/{name}", lab.registry);
    let without = DockerCredentials { serveraddress: Some(lab.registry.clone()), ..Default::default() };

    for i in 1..=swarm.nodes {
        let docker = swarm.node(i).await;
        // Even an image the node already holds is looked up in the
        // registry: without credentials, that is refused.
        let refused = pull(&docker, &repository, tag, without.clone()).await;
        assert!(refused.is_err(), "swarm-{i} pulled {repository}:{tag} without the registry's credentials");
        pull(&docker, &repository, tag, lab.docker_credentials())
            .await
            .unwrap_or_else(|e| panic!("swarm-{i} cannot pull {repository}:{tag} with the lab's credentials: {e}"));
    }
}

/// Pulls, returning the stream's first error.
async fn pull(
    docker: &Docker,
    repository: &str,
    tag: &str,
    credentials: DockerCredentials,
) -> Result<(), bollard::errors::Error> {
    let options = CreateImageOptionsBuilder::new().from_image(repository).tag(tag).build();
    let results: Vec<_> =
        bounded("a pull", docker.create_image(Some(options), None, Some(credentials)).collect()).await;
    results.into_iter().find_map(Result::err).map_or(Ok(()), Err)
}

// ------------------------------------------------------------------ the manager's API

/// A TLS client that trusts the lab's CA alone, with the client certificate
/// or without one.
fn tls_client(swarm: &Swarm, with_client_certificate: bool) -> reqwest::Client {
    let read = |name: &str| {
        let path = swarm.cert(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
    };
    install_crypto_provider();
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&read("ca.pem")).expect("the lab's CA"));
    if with_client_certificate {
        let mut pem = read("cert.pem");
        pem.extend(read("key.pem"));
        builder = builder.identity(reqwest::Identity::from_pem(&pem).expect("the client certificate"));
    }
    builder.build().expect("a TLS client")
}

#[tokio::test]
async fn the_managers_api_answers_a_tls_client_with_the_labs_certificate_and_refuses_one_without() {
    // Every node must be reachable: another test takes a link down.
    let _lock = swarm_lock().await;
    let swarm = Swarm::load();
    let url = format!("https://{}/_ping", swarm.manager_address());

    // The server's certificate names the manager's address (the client
    // checks it against the lab's CA and the IP it dialled).
    let answer =
        tls_client(&swarm, true).get(&url).send().await.expect("the manager answers a client with a certificate");
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.text().await.unwrap(), "OK");

    let refused = tls_client(&swarm, false).get(&url).send().await;
    assert!(refused.is_err(), "the manager answered a TLS client without a certificate: {refused:?}");

    // Nor does it speak plain HTTP.
    let plain = common::http_client().get(format!("http://{}/_ping", swarm.manager_address())).send().await;
    assert!(
        plain.as_ref().map_or(true, |r| r.status() != 200),
        "the manager answered plain HTTP: {:?}",
        plain.map(|r| r.status())
    );
}

#[test]
fn the_managers_engine_listens_only_on_tls_and_the_workers_on_no_tcp_port() {
    let swarm = Swarm::load();
    for (i, pid) in dockerd_pids(&swarm).into_iter().enumerate().map(|(i, pid)| (i + 1, pid)) {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("the node's dockerd runs");
        let args: Vec<String> = cmdline.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
        let hosts: Vec<&String> = args.windows(2).filter(|w| w[0] == "-H" || w[0] == "--host").map(|w| &w[1]).collect();
        if i == 1 {
            assert_eq!(hosts, [&swarm.docker_host], "the manager's dockerd listens on {hosts:?}");
            assert!(
                args.iter().any(|a| a == "--tlsverify"),
                "the manager's dockerd runs without --tlsverify: {args:?}"
            );
        } else {
            assert!(
                !hosts.is_empty() && hosts.iter().all(|h| h.starts_with("unix://")),
                "swarm-{i}'s dockerd listens on {hosts:?}"
            );
        }
    }
}

// ------------------------------------------------------------------ up, status, repair

#[test]
fn lab_swarm_sh_refuses_bad_input_with_what_to_give_and_changes_nothing() {
    let cases: [(&[&str], Option<&str>, &str); 5] = [
        (&["up"], Some("0"), "BOOKS_LAB_SWARM_NODES='0': give a number of nodes from 1 to 40"),
        (&["up"], Some("three"), "BOOKS_LAB_SWARM_NODES='three': give a number of nodes from 1 to 40"),
        (&["link-down", "0"], None, "no node '0': give a node number from 1 to"),
        (&["link-up", "x"], None, "no node 'x': give a node number from 1 to"),
        (&["restart"], None, "usage: lab/swarm.sh up|down|status|link-down I|link-up I"),
    ];
    for (args, nodes, said) in cases {
        let mut command = Command::new("bash");
        command.arg(repo_root().join("lab/swarm.sh")).args(args);
        if let Some(nodes) = nodes {
            command.env("BOOKS_LAB_SWARM_NODES", nodes);
        }
        let run = common::run::run_bounded(&mut command, Duration::from_secs(30));
        assert_eq!(run.code, Some(1), "lab/swarm.sh {args:?} (nodes {nodes:?}): {}", run.stderr);
        assert!(run.stderr.contains(said), "lab/swarm.sh {args:?} (nodes {nodes:?}) said: {}", run.stderr);
        assert!(!run.stderr.contains("tls:"), "lab/swarm.sh {args:?} went on before refusing: {}", run.stderr);
    }
}

#[tokio::test]
async fn a_second_up_restarts_nothing() {
    let _lock = swarm_lock().await;
    let swarm = Swarm::load();
    let first = swarm_sh(&["up"]);
    assert!(first.success(), "lab/swarm.sh up failed: {}", first.stderr);
    let pids = dockerd_pids(&swarm);
    let manager = swarm.manager().await;
    let before = nodes(&manager).await;

    let second = swarm_sh(&["up"]);

    assert!(second.success(), "a second lab/swarm.sh up failed: {}", second.stderr);
    assert_eq!(dockerd_pids(&swarm), pids, "a second up restarted a node's engine: {}", second.stderr);
    let after = nodes(&manager).await;
    let ids = |view: &HashMap<String, NodeView>| {
        let mut ids: Vec<(String, String)> = view.values().map(|n| (n.label.clone(), n.id.clone())).collect();
        ids.sort();
        ids
    };
    assert_eq!(ids(&after), ids(&before), "a second up changed the swarm's nodes: {}", second.stderr);
    for change in ["starting dockerd", "swarm initialised", "joined the swarm", "labelled", "removed node", "added"] {
        assert!(!second.stderr.contains(change), "a second up did something ({change}): {}", second.stderr);
    }
    assert_all_ready(&swarm, &after);
}

/// `harness lab status`, bounded: its stdout.
async fn harness_lab_status() -> common::run::Run {
    common::run::harness(Duration::from_secs(120))
        .arg("--repo")
        .arg(repo_root())
        .args(["lab", "status"])
        .run_async()
        .await
}

/// The line `harness lab status` prints for node i (it starts `swarm-<i> `).
fn status_line(stdout: &str, i: usize) -> &str {
    let name = format!("swarm-{i} ");
    stdout.lines().find(|l| l.starts_with(&name)).unwrap_or_else(|| panic!("no line for swarm-{i} in:\n{stdout}"))
}

#[tokio::test]
async fn harness_lab_status_lists_each_node_with_its_address_role_state_and_availability() {
    let _lock = swarm_lock().await;
    let swarm = Swarm::load();

    let run = harness_lab_status().await;

    assert!(run.success(), "harness lab status failed: {}{}", run.stdout, run.stderr);
    let summary = run.stdout.lines().find(|l| l.starts_with("swarm ")).expect("a line for the swarm");
    assert!(summary.contains(&format!("{0} of {0} node(s) Ready", swarm.nodes)), "{summary}");
    for i in 1..=swarm.nodes {
        let line = status_line(&run.stdout, i);
        let role = if i == 1 { "manager" } else { "worker" };
        for part in [" up ", &format!(" {} ", swarm.node_address(i)), role, "ready", "active"] {
            assert!(line.contains(part), "swarm-{i}'s status line lacks {part:?}: {line}");
        }
    }
}

/// Brings node i's link back up when the test ends, passed or failed, so
/// that a failure leaves no node lost for the tests after it.
struct LinkUpOnDrop(usize);

impl Drop for LinkUpOnDrop {
    fn drop(&mut self) {
        let run = swarm_sh(&["link-up", &self.0.to_string()]);
        if !run.success() {
            eprintln!("could not bring swarm-{}'s link back up: {}", self.0, run.stderr);
        }
    }
}

#[tokio::test]
async fn a_node_whose_link_was_taken_down_is_repaired_by_up() {
    let _lock = swarm_lock().await;
    let swarm = Swarm::load();
    assert!(swarm.nodes >= 2, "the test takes a worker away: BOOKS_LAB_SWARM_NODES >= 2");
    let lost = swarm.nodes;
    let label = format!("swarm-{lost}");
    let manager = swarm.manager().await;

    let _restore = LinkUpOnDrop(lost);
    let down = swarm_sh(&["link-down", &lost.to_string()]);
    assert!(down.success(), "lab/swarm.sh link-down {lost} failed: {}", down.stderr);
    // The manager notices a lost machine by its missed heartbeats: seconds.
    let seen = await_nodes(&manager, Duration::from_secs(60), |view| {
        view.get(&label).is_some_and(|n| n.state == Some(NodeState::DOWN))
    })
    .await
    .unwrap_or_else(|view| panic!("{label} is not seen Down within 60 s of its link going: {view:#?}"));
    assert!(seen.get("swarm-1").is_some_and(NodeView::ready), "the manager itself went: {seen:#?}");
    let status = harness_lab_status().await;
    assert!(!status.success(), "harness lab status exits 0 with {label} down:\n{}", status.stdout);
    let line = status_line(&status.stdout, lost);
    assert!(line.contains(" down ") && line.contains("down,"), "{label} is not shown down: {line}");

    let up = swarm_sh(&["up"]);

    assert!(up.success(), "lab/swarm.sh up did not repair {label}: {}", up.stderr);
    assert!(up.stderr.contains("bringing it up"), "up did not say it brought the link up: {}", up.stderr);
    // `up` returns once every node is Ready: no wait here.
    assert_all_ready(&swarm, &nodes(&manager).await);
}
