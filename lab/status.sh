#!/usr/bin/env bash
# Reports each part of the lab in one line on stdout: the cd engine, the
# registry, prod's network and engine, the swarm and each of its nodes (name,
# address, role, state, availability), the lab's images, and the ones the
# registry holds for prod. Changes nothing.
#
# Usage: lab/status.sh   (as root: it reads the registry's credentials and
# the client certificate). Exit status: 0 when every part is up, 1 when one
# is down (its line says why; lab/up.sh raises it), 2 on a usage error.
set -euo pipefail

LAB_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=SCRIPTDIR/lab.env
. "$LAB_DIR/lab.env"
# shellcheck source=SCRIPTDIR/topology.sh
. "$LAB_DIR/topology.sh"
# shellcheck source=SCRIPTDIR/swarm.sh
. "$LAB_DIR/swarm.sh"

say() { printf 'lab/status: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 2; }

DOWN=0
report() { # PART up|down TEXT...
  local part=$1 state=$2
  shift 2
  printf '%-9s %-5s %s\n' "$part" "$state" "$*"
  [[ $state == up ]] || DOWN=1
}

# "(pid N)" for the process of a pid file, or how it was started otherwise.
pid_note() {
  local pid
  if pid=$(live_pid "$1" "$2"); then echo "pid $pid"; else echo "$3"; fi
}

engine_status() {
  local version
  if ! version=$(timeout 10 "$DOCKER" version --format '{{.Server.Version}}' 2>/dev/null); then
    report engine down "no answer from the Docker engine"
    return
  fi
  local note
  note=$(pid_note "$DOCKERD_PID" "--pidfile $DOCKERD_PID" "not started by lab/up.sh")
  if engine_trusts_registry timeout 10 "$DOCKER"; then
    report engine up "Docker $version ($note), trusts $BOOKS_LAB_REGISTRY"
  else
    report engine down "Docker $version ($note) does not verify $BOOKS_LAB_REGISTRY with the lab's CA ($REGISTRY_ENGINE_CA), or lists it insecure"
  fi
}

registry_report() {
  local pid plain with
  if ! pid=$(live_pid "$REGISTRY_PID" "$REGISTRY_CONFIG"); then
    report registry down "not running (no live pid in $REGISTRY_PID)"
    return
  fi
  plain=$(registry_status)
  if ! read_registry_credentials; then
    report registry down "pid $pid, /v2/ answers $plain; cannot read $BOOKS_LAB_REGISTRY_CREDENTIALS"
    return
  fi
  # The password goes to curl on stdin, never on a command line.
  with=$(printf 'user = "%s:%s"\n' "$REGISTRY_USER" "$REGISTRY_PASSWORD" |
    registry_curl -K - -o /dev/null -w '%{http_code}' "https://$BOOKS_LAB_REGISTRY/v2/" 2>/dev/null || true)
  if [[ $plain == 401 && $with == 200 ]]; then
    report registry up "https://$BOOKS_LAB_REGISTRY (pid $pid): /v2/ 401 without credentials, 200 with the lab's"
  else
    report registry down "$BOOKS_LAB_REGISTRY (pid $pid): /v2/ $plain without credentials, $with with the lab's (want 401, 200)"
  fi
}

# Outputs are matched in variables: piped into `grep -q` under pipefail,
# the writer may die of SIGPIPE and fail the check.
network_status() {
  local inside outside link
  inside=$(ip -n "$LAB_NETNS" -o addr show dev eth0 2>/dev/null || true)
  outside=$(ip -o addr show dev "$LAB_VETH" 2>/dev/null || true)
  link=$(ip -o link show dev "$LAB_VETH" 2>/dev/null || true)
  if [[ ! -e /var/run/netns/$LAB_NETNS ]]; then
    report network down "no network namespace $LAB_NETNS"
  elif [[ $inside != *" $LAB_PROD_ADDR/"* ]]; then
    report network down "$LAB_NETNS has no eth0 with $LAB_PROD_ADDR"
  elif [[ $outside != *" $LAB_CD_ADDR/"* || $link != *"state UP"* ]]; then
    report network down "$LAB_VETH is not up with $LAB_CD_ADDR"
  else
    report network up "$LAB_VETH $LAB_CD_ADDR <-> $LAB_NETNS $LAB_PROD_ADDR"
  fi
}

prod_status() {
  local version note running
  note=$(pid_note "$PROD_PID" "--pidfile $PROD_PID" "no live pid in $PROD_PID")
  if ! version=$(prod_docker version --format '{{.Server.Version}}' 2>/dev/null); then
    report prod down "no answer on $BOOKS_LAB_PROD_DOCKER_HOST over TLS ($note)"
    return
  fi
  running=$(prod_docker ps -q 2>/dev/null | wc -l)
  if engine_trusts_registry prod_docker; then
    report prod up "$BOOKS_LAB_PROD_DOCKER_HOST over TLS: Docker $version ($note), $running container(s) running"
  else
    report prod down "$BOOKS_LAB_PROD_DOCKER_HOST: Docker $version ($note) does not verify $BOOKS_LAB_REGISTRY with the lab's CA, or lists it insecure"
  fi
}

# The swarm as its manager sees it: one line for the swarm, then one per
# node the manager lists ("swarm-<i>", or "id:..." for a node without the
# lab's label): address, role, state, availability.
swarm_report() {
  local lines line f nodes=0 ready=0
  if ! lines=$(swarm_nodes); then
    report swarm down "no answer from the manager on $BOOKS_LAB_SWARM_DOCKER_HOST over TLS"
    return
  fi
  while read -r line; do
    read -r -a f <<<"$line"
    nodes=$((nodes + 1))
    [[ ${f[3]} == ready && ${f[4]} == active ]] && ready=$((ready + 1))
  done <<<"$lines"
  if ((ready == SWARM_NODES && nodes == SWARM_NODES)); then
    report swarm up "$BOOKS_LAB_SWARM_DOCKER_HOST over TLS: $ready of $SWARM_NODES node(s) Ready and Active"
  else
    report swarm down "$BOOKS_LAB_SWARM_DOCKER_HOST over TLS: $ready of $SWARM_NODES node(s) Ready and Active, $nodes listed"
  fi
  while read -r line; do
    read -r -a f <<<"$line"
    local leader=''
    [[ ${f[5]} == true ]] && leader=', leader'
    if [[ ${f[3]} == ready && ${f[4]} == active ]]; then
      report "${f[0]}" up "${f[1]} ${f[2]}$leader, ${f[3]}, ${f[4]}"
    else
      report "${f[0]}" down "${f[1]} ${f[2]}$leader, ${f[3]}, ${f[4]}"
    fi
  done <<<"$lines"
}

# Every *_IMAGE of lab.env, on the cd engine.
images_status() {
  local line name present=() missing=()
  while IFS= read -r line; do
    [[ $line =~ ^[A-Z_]+_IMAGE=(.+)$ ]] || continue
    name=${BASH_REMATCH[1]}
    if timeout 10 "$DOCKER" image inspect "$name" >/dev/null 2>&1; then
      present+=("$name")
    else
      missing+=("$name")
    fi
  done <"$LAB_DIR/lab.env"
  if ((${#missing[@]})); then
    report images down "missing: ${missing[*]}"
  else
    report images up "${present[*]}"
  fi
}

# The images prod pulls from the registry (lab/up.sh mirrors them there):
# held, and the same image as on the cd engine.
mirrors_status() {
  local name local_id pushed_id held=() stale=()
  for name in "$BOOKS_DB_IMAGE" "$BOOKS_PROXY_IMAGE"; do
    local_id=$(timeout 10 "$DOCKER" image inspect -f '{{.Id}}' "$name" 2>/dev/null || true)
    if ! pushed_id=$(registry_image_id "$name"); then
      report mirrors down "cannot read $BOOKS_LAB_REGISTRY_CREDENTIALS"
      return
    fi
    if [[ -n $pushed_id && $pushed_id == "$local_id" ]]; then
      held+=("$BOOKS_LAB_REGISTRY/$name")
    elif [[ -n $pushed_id ]]; then
      stale+=("$BOOKS_LAB_REGISTRY/$name (not the cd engine's $name)")
    else
      stale+=("$BOOKS_LAB_REGISTRY/$name (missing)")
    fi
  done
  if ((${#stale[@]})); then
    report mirrors down "${stale[*]}"
  else
    report mirrors up "${held[*]}"
  fi
}

main() {
  [[ $(id -u) -eq 0 ]] || die "run as root (it reads the registry's credentials and prod's client certificate)"
  engine_status
  registry_report
  network_status
  prod_status
  swarm_report
  images_status
  mirrors_status
  return "$DOWN"
}

main "$@"
