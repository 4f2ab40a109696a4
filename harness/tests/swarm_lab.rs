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

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bollard::auth::DockerCredentials;
use bollard::models::{NodeSpecRoleEnum, NodeState};
use bollard::Docker;

use common::engines::{pid_in, pull, tls_client, Dockerd};
use common::swarm::{node_docker, nodes, swarm_sh, LostNode, NodeView};
use common::{bounded, parse_env, repo_root, Lab};

/// Polls the manager (every 500 ms, at most `within`) until `done` holds
/// for its nodes; the last view otherwise, for the failure's message.
async fn await_nodes(
    manager: &Docker,
    within: Duration,
    done: impl Fn(&BTreeMap<String, NodeView>) -> bool,
) -> Result<BTreeMap<String, NodeView>, BTreeMap<String, NodeView>> {
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

/// Each node's dockerd's pid, from the pid files lab/swarm.sh gives them.
fn dockerd_pids(lab: &Lab) -> Vec<u32> {
    (1..=lab.swarm_nodes).map(|i| pid_in(&dockerd_pid_file(i))).collect()
}

fn dockerd_pid_file(i: usize) -> String {
    format!("/run/books-lab/swarm-{i}/dockerd.pid")
}

fn assert_all_ready(lab: &Lab, view: &BTreeMap<String, NodeView>) {
    let want = lab.swarm_nodes;
    assert_eq!(view.len(), want, "the manager lists {} nodes, want {want}: {view:#?}", view.len());
    for i in 1..=want {
        let node = view.get(&format!("swarm-{i}")).unwrap_or_else(|| panic!("no node labelled swarm-{i}: {view:#?}"));
        assert!(node.ready(), "swarm-{i} is not Ready and Active: {node:?}");
        assert_eq!(node.address, lab.swarm_node_address(i), "swarm-{i}'s address");
        let role = if i == 1 { NodeSpecRoleEnum::MANAGER } else { NodeSpecRoleEnum::WORKER };
        assert_eq!(node.role, Some(role), "swarm-{i}'s role");
        assert_eq!(node.leader, i == 1, "swarm-{i} leads the swarm, or not");
    }
}

// ------------------------------------------------------------------ the nodes

#[tokio::test]
async fn the_swarm_has_the_configured_nodes_all_ready_with_one_manager() {
    let _lock = swarm_lock().await;
    let lab = Lab::load();
    let manager = lab.swarm_docker().await;

    assert_all_ready(&lab, &nodes(&manager).await);

    // The manager's engine is in swarm mode as a manager, the others join
    // it as workers.
    let info = bounded("the manager's info", manager.info()).await.expect("the manager's info");
    let swarm_info = info.swarm.expect("swarm info");
    assert_eq!(swarm_info.control_available, Some(true), "node 1 manages the swarm");
    assert_eq!(swarm_info.nodes, Some(lab.swarm_nodes as i64), "the swarm's node count");
    assert_eq!(swarm_info.managers, Some(1), "one manager");
}

#[tokio::test]
async fn every_node_pulls_a_mirrored_image_with_the_registrys_credentials_only() {
    // Every node must be reachable: another test takes a link down.
    let _lock = swarm_lock().await;
    let lab = Lab::load();
    let env = parse_env(&std::fs::read_to_string(repo_root().join("lab/lab.env")).expect("lab/lab.env"));
    let image = env.get("BOOKS_PROXY_IMAGE").expect("BOOKS_PROXY_IMAGE in lab/lab.env");
    let (name, tag) = image.rsplit_once(':').expect("NAME:TAG");
    let repository = format!("{}/{name}", lab.registry);
    let without = DockerCredentials { serveraddress: Some(lab.registry.clone()), ..Default::default() };

    for i in 1..=lab.swarm_nodes {
        let docker = node_docker(&lab, i).await;
        // Even an image the node already holds is looked up in the
        // registry: without credentials, that is refused.
        let refused = pull(&docker, &repository, tag, Some(without.clone())).await;
        assert!(refused.is_err(), "swarm-{i} pulled {repository}:{tag} without the registry's credentials");
        pull(&docker, &repository, tag, Some(lab.docker_credentials()))
            .await
            .unwrap_or_else(|e| panic!("swarm-{i} cannot pull {repository}:{tag} with the lab's credentials: {e}"));
    }
}

// ------------------------------------------------------------------ the manager's API

#[tokio::test]
async fn the_managers_api_answers_a_tls_client_with_the_labs_certificate_and_refuses_one_without() {
    // Every node must be reachable: another test takes a link down.
    let _lock = swarm_lock().await;
    let lab = Lab::load();
    let url = format!("https://{}/_ping", lab.swarm_manager_address());

    // The server's certificate names the manager's address (the client
    // checks it against the lab's CA and the IP it dialled).
    let answer = tls_client(&lab.swarm_cert_path, true)
        .get(&url)
        .send()
        .await
        .expect("the manager answers a client with a certificate");
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.text().await.unwrap(), "OK");

    let refused = tls_client(&lab.swarm_cert_path, false).get(&url).send().await;
    assert!(refused.is_err(), "the manager answered a TLS client without a certificate: {refused:?}");

    // Nor does it speak plain HTTP.
    let plain = common::http_client().get(format!("http://{}/_ping", lab.swarm_manager_address())).send().await;
    assert!(
        plain.as_ref().map_or(true, |r| r.status() != 200),
        "the manager answered plain HTTP: {:?}",
        plain.map(|r| r.status())
    );
}

#[test]
fn the_managers_engine_listens_only_on_tls_and_the_workers_on_no_tcp_port() {
    let lab = Lab::load();
    for i in 1..=lab.swarm_nodes {
        let dockerd = Dockerd::from_pid_file(&dockerd_pid_file(i));
        let hosts = &dockerd.hosts;
        if i == 1 {
            assert_eq!(
                hosts,
                std::slice::from_ref(&lab.swarm_docker_host),
                "the manager's dockerd listens on {hosts:?}"
            );
            assert!(dockerd.verifies_clients(), "the manager's dockerd runs without --tlsverify: {:?}", dockerd.args);
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
        let mut command = std::process::Command::new("bash");
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
    let lab = Lab::load();
    let first = swarm_sh(&["up"]);
    assert!(first.success(), "lab/swarm.sh up failed: {}", first.stderr);
    let pids = dockerd_pids(&lab);
    let manager = lab.swarm_docker().await;
    let before = nodes(&manager).await;

    let second = swarm_sh(&["up"]);

    assert!(second.success(), "a second lab/swarm.sh up failed: {}", second.stderr);
    assert_eq!(dockerd_pids(&lab), pids, "a second up restarted a node's engine: {}", second.stderr);
    let after = nodes(&manager).await;
    let ids = |view: &BTreeMap<String, NodeView>| {
        let mut ids: Vec<(String, String)> = view.values().map(|n| (n.label.clone(), n.id.clone())).collect();
        ids.sort();
        ids
    };
    assert_eq!(ids(&after), ids(&before), "a second up changed the swarm's nodes: {}", second.stderr);
    for change in ["starting dockerd", "swarm initialised", "joined the swarm", "labelled", "removed node", "added"] {
        assert!(!second.stderr.contains(change), "a second up did something ({change}): {}", second.stderr);
    }
    assert_all_ready(&lab, &after);
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
    let lab = Lab::load();

    let run = harness_lab_status().await;

    assert!(run.success(), "harness lab status failed: {}{}", run.stdout, run.stderr);
    let summary = run.stdout.lines().find(|l| l.starts_with("swarm ")).expect("a line for the swarm");
    assert!(summary.contains(&format!("{0} of {0} node(s) Ready", lab.swarm_nodes)), "{summary}");
    for i in 1..=lab.swarm_nodes {
        let line = status_line(&run.stdout, i);
        let role = if i == 1 { "manager" } else { "worker" };
        for part in [" up ", &format!(" {} ", lab.swarm_node_address(i)), role, "ready", "active"] {
            assert!(line.contains(part), "swarm-{i}'s status line lacks {part:?}: {line}");
        }
    }
}

#[tokio::test]
async fn a_node_whose_link_was_taken_down_is_repaired_by_up() {
    let _lock = swarm_lock().await;
    let lab = Lab::load();
    assert!(lab.swarm_nodes >= 2, "the test takes a worker away: BOOKS_LAB_SWARM_NODES >= 2");
    let lost = lab.swarm_nodes;
    let label = format!("swarm-{lost}");
    let manager = lab.swarm_docker().await;

    // Until dropped: a failure leaves no node lost for the tests after it.
    let _lost = LostNode::take_down(lost);
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
    assert_all_ready(&lab, &nodes(&manager).await);
}
