//! The lab's swarm (lab/swarm.sh), read and shaken as an operator would:
//! its nodes as the manager reports them, `lab/swarm.sh` run bounded, and a
//! node lost (its link down) until the test lets it go.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use bollard::models::{Node, NodeSpecAvailabilityEnum, NodeSpecRoleEnum, NodeState};
use bollard::query_parameters::ListNodesOptions;
use bollard::Docker;

use super::run::{run_bounded, Run};
use super::{bounded, negotiate, repo_root, Lab, DEADLINE};

/// The label lab/swarm.sh gives node i: `swarm-<i>`.
pub const NODE_LABEL: &str = "books-lab.node";

/// What the manager says of a node.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeView {
    pub id: String,
    pub label: String,
    pub address: String,
    pub role: Option<NodeSpecRoleEnum>,
    pub state: Option<NodeState>,
    pub availability: Option<NodeSpecAvailabilityEnum>,
    pub leader: bool,
}

impl NodeView {
    pub fn ready(&self) -> bool {
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

/// The nodes the manager lists, by label (`swarm-1` first).
pub async fn nodes(manager: &Docker) -> BTreeMap<String, NodeView> {
    let nodes = bounded("listing the swarm's nodes", manager.list_nodes(None::<ListNodesOptions>))
        .await
        .expect("the manager lists its nodes");
    nodes.into_iter().map(NodeView::from).map(|n| (n.label.clone(), n)).collect()
}

/// `lab/swarm.sh ARGS`, bounded (`up` waits 60 s at most for the nodes).
pub fn swarm_sh(args: &[&str]) -> Run {
    let mut command = Command::new("bash");
    command.arg(repo_root().join("lab/swarm.sh")).args(args);
    run_bounded(&mut command, Duration::from_secs(180))
}

/// Node i with its link down (a machine lost, `lab/swarm.sh link-down I`)
/// until dropped: then `lab/swarm.sh up` brings it back and waits until
/// every node is Ready, so that a test, passed or failed, leaves no node
/// lost for the tests after it.
pub struct LostNode(usize);

impl LostNode {
    pub fn take_down(i: usize) -> LostNode {
        // Made first: a link-down that fails half-way is repaired too.
        let lost = LostNode(i);
        let run = swarm_sh(&["link-down", &i.to_string()]);
        assert!(run.success(), "lab/swarm.sh link-down {i} failed: {}{}", run.stdout, run.stderr);
        lost
    }
}

impl Drop for LostNode {
    fn drop(&mut self) {
        let run = swarm_sh(&["up"]);
        if !run.success() {
            eprintln!("lab/swarm.sh up after taking swarm-{} down failed: {}{}", self.0, run.stdout, run.stderr);
        }
    }
}

/// Node i's engine: the manager over TLS, a worker on the unix socket
/// lab/swarm.sh gives it for the lab's own use.
pub async fn node_docker(lab: &Lab, i: usize) -> Docker {
    if i == 1 {
        return lab.swarm_docker().await;
    }
    let socket = format!("/run/books-lab/swarm-{i}/docker.sock");
    let docker = Docker::connect_with_unix(&socket, DEADLINE.as_secs(), bollard::API_DEFAULT_VERSION)
        .unwrap_or_else(|e| panic!("a client for {socket}: {e}"));
    negotiate(docker, &format!("swarm-{i}'s engine")).await
}
