#!/usr/bin/env bash
# The lab's swarm: BOOKS_LAB_SWARM_NODES prod machines (lab/topology.env),
# each a network namespace with its own Docker engine, joined into one
# Docker Swarm. Node 1 is the manager, the others are workers.
#
#   this host: bridge books-swarm0 10.210.0.1/24
#     <-veth books-swarm1-> netns books-swarm-1  eth0 10.210.0.11  manager,
#                            API only on tcp://10.210.0.11:2376 (TLS, client
#                            certificate required), as prod's
#     <-veth books-swarm2-> netns books-swarm-2  eth0 10.210.0.12  worker
#     ...                                                           (unix socket
#                            for the lab's own use in /run/books-lab/swarm-<i>)
#
# Every node routes via the host, so it reaches the lab's registry on the
# host's address (BOOKS_LAB_REGISTRY), and nothing beyond this host. The
# swarm's overlay networks (VXLAN) run between the nodes over the bridge.
# Each node is labelled books-lab.node=swarm-<i> (all nodes report this
# host's hostname).
#
# Usage: lab/swarm.sh up            raise or repair it (idempotent; seconds
#                                   when it is up: nothing is restarted)
#        lab/swarm.sh down          stop the nodes' engines (keeps the
#                                   namespaces, data roots and the swarm)
#        lab/swarm.sh status        one line per node; exit 1 when one is
#                                   not Ready and Active
#        lab/swarm.sh link-down I   take node I's link down: a lost machine
#        lab/swarm.sh link-up I     bring it back (`up` does too)
# As root. lab/up.sh runs `up`, lab/down.sh runs `down`, lab/status.sh
# reports the nodes. This file is also sourced by those scripts for its
# functions (then it runs nothing; `say` and `die` come from the caller).
#
# State, outside the repository:
#   /var/lib/books-lab/swarm/<i>   the node's daemon.json, key.json, data root
#   /run/books-lab/swarm-<i>       pid file, exec root, worker's socket
#   /var/log/books-lab/swarm-<i>-dockerd.log

SWARM_LAB_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=SCRIPTDIR/topology.sh
[[ -n ${TOPOLOGY_ENV:-} ]] || . "$SWARM_LAB_DIR/topology.sh"

SWARM_NODES=${BOOKS_LAB_SWARM_NODES:-3}
SWARM_BRIDGE=books-swarm0
# Node i is 10.210.0.<10+i>: the manager's address names the network.
SWARM_NET=${LAB_SWARM_MANAGER_ADDR%.*}
SWARM_HOST_ADDR=$SWARM_NET.1
SWARM_PREFIX=24
SWARM_DIR=$LAB_DATA_DIR/swarm
# The swarm's overlay networks (swarm init's default address pool): apart
# from every engine's local networks below, the lab's links and the cd
# engine's 172.17.0.0/12 and 192.168.0.0/16 pools.
SWARM_OVERLAY_POOL=10.213.0.0/16

swarm_netns() { echo "books-swarm-$1"; }
swarm_veth() { echo "books-swarm$1"; }
swarm_addr() { echo "$SWARM_NET.$((10 + $1))"; }
swarm_node_dir() { echo "$SWARM_DIR/$1"; }
swarm_run_dir() { echo "$LAB_RUN_DIR/swarm-$1"; }
swarm_pidfile() { echo "$LAB_RUN_DIR/swarm-$1/dockerd.pid"; }
swarm_socket() { echo "$LAB_RUN_DIR/swarm-$1/docker.sock"; }
swarm_log() { echo "$LAB_LOG_DIR/swarm-$1-dockerd.log"; }
# Each engine's own bridge and local networks (docker_gwbridge among them):
# node i's docker0 is 10.211.i.1/24, its other local networks /24s of
# 10.212.(8i).0/21. They live in the node's namespace, but distinct ranges
# keep every address in the lab telling which engine it belongs to.
swarm_bip() { echo "10.211.$1.1/24"; }
swarm_pool() { echo "10.212.$((8 * $1)).0/21"; }

# The docker client against node I: the manager over TLS as the harness
# reaches it, a worker on its unix socket. Bounded.
node_docker() {
  local i=$1
  shift
  if ((i == 1)); then
    DOCKER_HOST=$BOOKS_LAB_SWARM_DOCKER_HOST DOCKER_TLS_VERIFY=1 \
      DOCKER_CERT_PATH=$BOOKS_LAB_SWARM_CERT_PATH timeout 20 "$DOCKER" "$@"
  else
    DOCKER_HOST="unix://$(swarm_socket "$i")" DOCKER_TLS_VERIFY='' DOCKER_CERT_PATH='' \
      timeout 20 "$DOCKER" "$@"
  fi
}
manager_docker() { node_docker 1 "$@"; }

swarm_check_count() {
  if ! [[ $SWARM_NODES =~ ^[1-9][0-9]?$ ]] || ((SWARM_NODES > 40)); then
    die "BOOKS_LAB_SWARM_NODES='$SWARM_NODES': give a number of nodes from 1 to 40"
  fi
  [[ $LAB_SWARM_MANAGER_ADDR == "$SWARM_NET.11" && $LAB_SWARM_MANAGER_PORT =~ ^[0-9]+$ ]] ||
    die "BOOKS_LAB_SWARM_DOCKER_HOST='$BOOKS_LAB_SWARM_DOCKER_HOST': want tcp://A.B.C.11:PORT (node i is A.B.C.<10+i>)"
}

swarm_check_node() {
  if ! [[ ${1:-} =~ ^[1-9][0-9]{0,1}$ ]] || (($1 > SWARM_NODES)); then
    die "no node '${1:-}': give a node number from 1 to $SWARM_NODES (BOOKS_LAB_SWARM_NODES)"
  fi
}

# ---------------------------------------------------------------- network

# The bridge, and each node's namespace with a veth into it. Links left
# down (lab/swarm.sh link-down, an aborted test) are brought up again.
swarm_network() {
  local i ns veth
  if ! ip link show "$SWARM_BRIDGE" >/dev/null 2>&1; then
    ip link add "$SWARM_BRIDGE" type bridge
    say "swarm network: bridge $SWARM_BRIDGE added"
  fi
  ip addr replace "$SWARM_HOST_ADDR/$SWARM_PREFIX" dev "$SWARM_BRIDGE"
  ip link set "$SWARM_BRIDGE" up
  # The cd engine sets FORWARD's policy to DROP: let the nodes talk to each
  # other across the bridge (with br_netfilter, bridged frames pass
  # FORWARD), and refuse what they would send beyond this host (the
  # registry is on one of the host's own addresses, so it is not forwarded).
  local accept=(FORWARD -i "$SWARM_BRIDGE" -o "$SWARM_BRIDGE" -j ACCEPT)
  # shellcheck disable=SC2054 # the comma is conntrack's list, not an array's
  local refuse=(FORWARD -i "$SWARM_BRIDGE" ! -o "$SWARM_BRIDGE" -m conntrack ! --ctstate ESTABLISHED,RELATED
    -j REJECT --reject-with icmp-admin-prohibited)
  iptables -C "${refuse[@]}" 2>/dev/null || iptables -I "${refuse[@]}"
  iptables -C "${accept[@]}" 2>/dev/null || iptables -I "${accept[@]}"
  for ((i = 1; i <= SWARM_NODES; i++)); do
    ns=$(swarm_netns "$i") veth=$(swarm_veth "$i")
    if [[ ! -e /var/run/netns/$ns ]]; then
      ip netns add "$ns"
      say "swarm network: namespace $ns added"
    fi
    if ! ip link show "$veth" >/dev/null 2>&1 || ! ip -n "$ns" link show eth0 >/dev/null 2>&1; then
      ip link del "$veth" 2>/dev/null || true
      ip link add "$veth" type veth peer name eth0 netns "$ns"
      say "swarm network: veth pair $veth <-> $ns/eth0 added"
    elif [[ $(ip -o link show "$veth") != *",UP"* ]]; then
      say "swarm network: $veth was down (a link taken down), bringing it up"
    fi
    ip link set "$veth" master "$SWARM_BRIDGE"
    ip link set "$veth" up
    ip -n "$ns" link set lo up
    ip -n "$ns" addr replace "$(swarm_addr "$i")/$SWARM_PREFIX" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" route replace default via "$SWARM_HOST_ADDR"
  done
  say "swarm network: $SWARM_BRIDGE $SWARM_HOST_ADDR, nodes $(swarm_addr 1)..$(swarm_addr "$SWARM_NODES")"
}

# ---------------------------------------------------------------- engines

# Node I's dockerd in its namespace, with everything of its own, as prod's.
# The manager listens only on TLS; a worker only on its unix socket (the
# harness never talks to a worker). Restarted when its daemon.json changed,
# or (the manager) its server certificate.
swarm_start_node() {
  local i=$1 dir run pidfile log config pid ns listen=()
  dir=$(swarm_node_dir "$i") run=$(swarm_run_dir "$i") pidfile=$(swarm_pidfile "$i") log=$(swarm_log "$i")
  ns=$(swarm_netns "$i")
  mkdir -p "$dir/docker" "$run" "$LAB_LOG_DIR"
  # No insecure-registries: the node verifies the registry with the lab's
  # CA (lab/topology.sh's REGISTRY_ENGINE_CA, shared by every engine here).
  config=$(jq -n --arg key "$dir/key.json" --arg pool "$(swarm_pool "$i")" \
    '{"deprecated-key-path": $key, "default-address-pools": [{"base": $pool, "size": 24}]}')
  write_file "$dir/daemon.json" 644 <<<"$config"
  if pid=$(live_pid "$pidfile" "--pidfile $pidfile"); then
    if ((FILE_CHANGED || (i == 1 && SWARM_TLS_CHANGED))); then
      say "swarm-$i: new $dir/daemon.json or server certificate, restarting dockerd"
      stop_pidfile "swarm-$i dockerd" "$pidfile" "--pidfile $pidfile" 30
    elif node_docker "$i" version >/dev/null 2>&1; then
      return
    else
      die "swarm-$i: dockerd (pid $pid) runs but does not answer; see $log, or lab/swarm.sh down then up"
    fi
  fi
  rm -f "$pidfile"
  clear_stale_containerd "$run/exec"
  if ((i == 1)); then
    listen=(-H "tcp://$LAB_SWARM_MANAGER_ADDR:$LAB_SWARM_MANAGER_PORT"
      --tlsverify --tlscacert "$TLS_DIR/swarm-manager/ca.pem"
      --tlscert "$TLS_DIR/swarm-manager/cert.pem" --tlskey "$TLS_DIR/swarm-manager/key.pem")
  else
    listen=(-H "unix://$(swarm_socket "$i")")
  fi
  say "swarm-$i: starting dockerd in namespace $ns, log in $log"
  # As prod's (lab/topology.sh): nsenter, its own containerd namespaces,
  # lab/up.sh's lock (fd 9) closed.
  setsid nohup nsenter --net="/var/run/netns/$ns" /usr/sbin/dockerd \
    --config-file "$dir/daemon.json" \
    --data-root "$dir/docker" --exec-root "$run/exec" --pidfile "$pidfile" \
    --bip "$(swarm_bip "$i")" \
    --containerd-namespace "books-swarm-$i" --containerd-plugins-namespace "books-swarm-$i-plugins" \
    "${listen[@]}" </dev/null >>"$log" 2>&1 9>&- &
  pid=$!
  await_engine "swarm-$i" "$pid" "$log" node_docker "$i" version
  say "swarm-$i: engine answers (pid $pid, after ~$AWAITED_SECS s)"
}

# The node's swarm state as its engine sees it: "STATE NODEID".
node_swarm_state() {
  node_docker "$1" info --format '{{.Swarm.LocalNodeState}} {{.Swarm.NodeID}}' 2>/dev/null
}

# The manager: a swarm of its own, initialised once (its data root keeps it
# across restarts).
swarm_manager() {
  local state i
  # Just started, it is "pending" until its own Raft store is up (seconds).
  for ((i = 0; i < 60; i++)); do
    state=$(node_swarm_state 1) || die "swarm-1: no answer on $BOOKS_LAB_SWARM_DOCKER_HOST"
    [[ ${state%% *} == pending ]] || break
    sleep 0.5
  done
  case ${state%% *} in
  active) ;;
  inactive)
    manager_docker swarm init --advertise-addr "$LAB_SWARM_MANAGER_ADDR" \
      --listen-addr "$LAB_SWARM_MANAGER_ADDR:2377" \
      --default-addr-pool "$SWARM_OVERLAY_POOL" --default-addr-pool-mask-length 24 >/dev/null ||
      die "swarm-1: swarm init failed"
    say "swarm-1: swarm initialised, manager on $LAB_SWARM_MANAGER_ADDR:2377"
    ;;
  *) die "swarm-1: swarm state '${state%% *}'; see $(swarm_log 1), or remove $(swarm_node_dir 1)/docker/swarm and run up" ;;
  esac
  state=$(manager_docker info --format '{{.Swarm.ControlAvailable}}' 2>/dev/null) || state=''
  [[ $state == true ]] || die "swarm-1: not a manager of its swarm; see $(swarm_log 1)"
}

# A worker: in the manager's swarm (the manager lists its node id), or made
# to leave whatever it was in and join.
swarm_worker() {
  local i=$1 state id token
  state=$(node_swarm_state "$i") || die "swarm-$i: engine does not answer"
  id=${state#* }
  if [[ ${state%% *} != inactive && -n $id ]] && manager_docker node inspect "$id" >/dev/null 2>&1; then
    return
  fi
  if [[ ${state%% *} != inactive ]]; then
    say "swarm-$i: in no swarm of this manager (state ${state%% *}), leaving it"
    node_docker "$i" swarm leave --force >/dev/null 2>&1 || true
  fi
  token=$(manager_docker swarm join-token -q worker) || die "swarm-1: no worker join token"
  # The token travels on stdin into the engine's API (`docker swarm join
  # --token` would show it to every user in `ps`).
  printf '%s' "$token" |
    jq -Rc --arg addr "$(swarm_addr "$i")" --arg manager "$LAB_SWARM_MANAGER_ADDR:2377" \
      '{JoinToken: ., ListenAddr: ($addr + ":2377"), AdvertiseAddr: $addr, RemoteAddrs: [$manager]}' |
    timeout 60 curl -fsS --unix-socket "$(swarm_socket "$i")" -H 'Content-Type: application/json' \
      --data-binary @- -o /dev/null http://localhost/swarm/join ||
    die "swarm-$i: could not join the swarm at $LAB_SWARM_MANAGER_ADDR:2377; see $(swarm_log "$i")"
  say "swarm-$i: joined the swarm as a worker"
}

# Labels each node books-lab.node=swarm-<i>; removes nodes the manager still
# lists that are none of today's (a worker that joined again, or one beyond
# the count).
swarm_labels() {
  local i state id ids=() label listed
  for ((i = 1; i <= SWARM_NODES; i++)); do
    state=$(node_swarm_state "$i") || die "swarm-$i: engine does not answer"
    id=${state#* }
    ids+=("$id")
    label=$(manager_docker node inspect --format '{{index .Spec.Labels "books-lab.node"}}' "$id" 2>/dev/null) ||
      die "swarm-1: does not know node $id (swarm-$i)"
    if [[ $label != "swarm-$i" ]]; then
      manager_docker node update --label-add "books-lab.node=swarm-$i" "$id" >/dev/null ||
        die "swarm-1: could not label node $id swarm-$i"
      say "swarm-$i: labelled books-lab.node=swarm-$i (node $id)"
    fi
  done
  listed=$(manager_docker node ls -q) || die "swarm-1: cannot list the nodes"
  for id in $listed; do
    [[ " ${ids[*]} " == *" $id "* ]] && continue
    manager_docker node rm --force "$id" >/dev/null || die "swarm-1: could not remove node $id"
    say "swarm: removed node $id, none of today's $SWARM_NODES"
  done
}

# One line per node the manager lists, sorted by label:
# LABEL ADDRESS ROLE STATE AVAILABILITY LEADER(true/false/-)
swarm_nodes() {
  local ids
  ids=$(manager_docker node ls -q 2>/dev/null) || return 1
  [[ -n $ids ]] || return 1
  # shellcheck disable=SC2086 # one id per word
  manager_docker node inspect $ids 2>/dev/null |
    jq -r '.[] | [(.Spec.Labels["books-lab.node"] // ("id:" + .ID)), .Status.Addr, .Spec.Role,
      .Status.State, .Spec.Availability, (.ManagerStatus.Leader // "-" | tostring)] | join(" ")' |
    sort -V
}

# Waits until the manager lists every node Ready and Active (60 s at most:
# a node that lost its link is seen Down for a few seconds after it is back).
swarm_await_ready() {
  local i lines ready
  for ((i = 0; i < 120; i++)); do
    lines=$(swarm_nodes) || lines=''
    ready=$(awk '$4 == "ready" && $5 == "active"' <<<"$lines" | wc -l)
    if ((ready == SWARM_NODES)) && [[ $(wc -l <<<"$lines") -eq $SWARM_NODES ]]; then
      return 0
    fi
    sleep 0.5
  done
  printf '%s\n' "$lines" >&2
  die "swarm: not all $SWARM_NODES nodes Ready and Active within 60 s (above: label address role state availability leader)"
}

# Each node logs in to the registry through its own engine: that checks it
# reaches the registry and is let in (an engine keeps no credentials; swarm
# services get them with --with-registry-auth).
swarm_registry_logins() {
  local i out
  read_registry_credentials || die "cannot read $BOOKS_LAB_REGISTRY_CREDENTIALS"
  for ((i = 1; i <= SWARM_NODES; i++)); do
    out=$(printf '%s\n' "$REGISTRY_PASSWORD" | node_docker "$i" login \
      --username "$REGISTRY_USER" --password-stdin "$BOOKS_LAB_REGISTRY" 2>&1) ||
      { printf '%s\n' "$out" >&2; die "swarm-$i: could not log in to $BOOKS_LAB_REGISTRY"; }
  done
  say "swarm: every node reaches $BOOKS_LAB_REGISTRY and is let in"
}

# Nodes beyond the count (BOOKS_LAB_SWARM_NODES lowered): their engines
# stopped; swarm_labels then removes them from the swarm.
swarm_stop_extra() {
  local pidfile i
  for pidfile in "$LAB_RUN_DIR"/swarm-*/dockerd.pid; do
    [[ -e $pidfile ]] || continue
    i=${pidfile#"$LAB_RUN_DIR"/swarm-}
    i=${i%%/*}
    if ! [[ $i =~ ^[0-9]+$ ]] || ((i <= SWARM_NODES)); then
      continue
    fi
    stop_pidfile "swarm-$i dockerd (beyond BOOKS_LAB_SWARM_NODES=$SWARM_NODES)" "$pidfile" "--pidfile $pidfile" 30
  done
}

# ---------------------------------------------------------------- entry points

swarm_up() {
  local i start=$SECONDS
  swarm_check_count
  swarm_network
  swarm_stop_extra
  for ((i = 1; i <= SWARM_NODES; i++)); do
    swarm_start_node "$i"
  done
  swarm_manager
  for ((i = 2; i <= SWARM_NODES; i++)); do
    swarm_worker "$i"
  done
  swarm_labels
  swarm_await_ready
  swarm_registry_logins
  say "swarm: $SWARM_NODES node(s) Ready, manager's API on $BOOKS_LAB_SWARM_DOCKER_HOST (TLS), in $((SECONDS - start)) s"
}

# Stops every node's engine, workers first (their containers stop with
# them); the swarm's state stays in the data roots, so `up` brings the same
# swarm back.
swarm_down() {
  local pidfile pidfiles=() i
  for pidfile in "$LAB_RUN_DIR"/swarm-*/dockerd.pid; do
    [[ -e $pidfile ]] && pidfiles+=("$pidfile")
  done
  for ((i = ${#pidfiles[@]} - 1; i >= 0; i--)); do
    pidfile=${pidfiles[i]}
    stop_pidfile "${pidfile#"$LAB_RUN_DIR"/} dockerd" "$pidfile" "--pidfile $pidfile" 30
  done
  ((${#pidfiles[@]})) || say "swarm: no node's engine running, nothing to stop"
  say "kept: the swarm's namespaces, $SWARM_BRIDGE and its veths, the nodes' data in $SWARM_DIR"
}

swarm_status() {
  local lines line down=0 n=0
  if ! lines=$(swarm_nodes); then
    echo "the manager does not answer on $BOOKS_LAB_SWARM_DOCKER_HOST (lab/swarm.sh up raises the swarm)"
    return 1
  fi
  printf '%-9s %-12s %-8s %-8s %-13s %s\n' NODE ADDRESS ROLE STATE AVAILABILITY LEADER
  while read -r line; do
    read -r -a f <<<"$line"
    printf '%-9s %-12s %-8s %-8s %-13s %s\n' "${f[@]}"
    [[ ${f[3]} == ready && ${f[4]} == active ]] || down=1
    n=$((n + 1))
  done <<<"$lines"
  ((n == SWARM_NODES)) || down=1
  return "$down"
}

swarm_link() {
  local i=$1 state=$2
  swarm_check_node "$i"
  ip link set "$(swarm_veth "$i")" "$state" ||
    die "swarm-$i: cannot set $(swarm_veth "$i") $state (lab/swarm.sh up makes it)"
  say "swarm-$i: link $(swarm_veth "$i") $state"
}

swarm_main() {
  say() { printf 'lab/swarm: %s\n' "$*" >&2; }
  die() { say "error: $*"; exit 1; }
  [[ $(id -u) -eq 0 ]] || die "run as root"
  export PATH="/usr/local/sbin:/usr/sbin:/sbin:$PATH"
  case ${1:-} in
  up)
    swarm_check_count
    close_inherited_fds
    # One lab/up.sh or lab/swarm.sh at a time.
    mkdir -p "$LAB_RUN_DIR"
    exec 9>"$LAB_RUN_DIR/up.lock"
    flock -w 900 9 || die "another lab/up.sh or lab/swarm.sh holds $LAB_RUN_DIR/up.lock"
    tls_certificates
    ((PROD_TLS_CHANGED == 0)) || say "tls: prod's certificate was made anew: run lab/up.sh to restart prod's engine"
    swarm_up
    ;;
  down) swarm_down ;;
  status) swarm_status ;;
  link-down | link-up) swarm_check_count ;;&
  link-down) swarm_link "${2:-}" down ;;
  link-up) swarm_link "${2:-}" up ;;
  *) die "usage: lab/swarm.sh up|down|status|link-down I|link-up I" ;;
  esac
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  set -euo pipefail
  swarm_main "$@"
fi
