#!/usr/bin/env bash
# Stops what lab/up.sh started and left running: its dockerd (found by the
# pid file that dockerd itself writes). Keeps packages, images and Docker's
# data root, so the next lab/up.sh is fast. Idempotent.
#
# dockerd stops its containers first (up to 15 s each, in parallel).
# Before it, the swarm's engines (lab/swarm.sh), then the topology's
# processes (lab/topology.sh): prod's dockerd and the registry, each by its
# pid file. Their network namespace, veth pair,
# certificates, credentials and data stay, like the images.
set -euo pipefail

RUN_DIR=/run/books-lab
DOCKERD_PID="$RUN_DIR/dockerd.pid"
# shellcheck source=SCRIPTDIR/topology.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/topology.sh"
# shellcheck source=SCRIPTDIR/swarm.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/swarm.sh"

say() { printf 'lab/down: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

stop_dockerd() {
  if [[ ! -s $DOCKERD_PID ]]; then
    say "dockerd: none started by lab/up.sh is running, nothing to stop"
    return
  fi
  local pid
  pid=$(<"$DOCKERD_PID")
  # The pid may have been reused since: stop it only if it is still a
  # dockerd using our pid file.
  if ! [[ $pid =~ ^[0-9]+$ ]] || ! kill -0 "$pid" 2>/dev/null ||
    ! tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "--pidfile $DOCKERD_PID"; then
    say "dockerd: pid $pid from $DOCKERD_PID is gone, removing the stale pid file"
    rm -f "$DOCKERD_PID"
    return
  fi
  say "dockerd: stopping pid $pid"
  kill -TERM "$pid"
  local i
  # Containers get 15 s to stop, then dockerd needs a moment for itself.
  for ((i = 0; i < 60; i++)); do
    if ! kill -0 "$pid" 2>/dev/null; then
      say "dockerd: stopped"
      return
    fi
    sleep 0.5
  done
  die "dockerd (pid $pid) still running after 30 s; see /var/log/books-lab/dockerd.log"
}

main() {
  [[ $(id -u) -eq 0 ]] || die "run as root"
  swarm_down
  topology_down
  stop_dockerd
}

main "$@"
