#!/usr/bin/env bash
# Garbage-collects the lab's registry: the blobs that no manifest references
# any more (`harness prune` deleted the manifests of the releases it does
# not keep) are removed from its storage, so that their space comes back.
# `harness prune` runs it (registry.gc_command); it can be run by hand too.
#
# The read-only window: the registry's garbage collection must not run
# beside a push (a blob uploaded while it marks would be swept, and the
# image pushed with it broken), so the registry is restarted in its
# read-only maintenance mode for the collection: pulls are served all
# along (a rollback, or a swarm moving a task, still pulls), pushes and
# deletes are refused ("unsupported") for those seconds. Then it is
# restarted read-write, also when the collection fails or this script is
# interrupted (the exit trap). Manifests that lost their tags are kept
# (no --delete-untagged): a release in a deploy history is pulled by
# digest and may have lost its tag to a later push of the same version.
#
# It holds lab/up.sh's lock, so that no lab/up.sh restarts the registry
# meanwhile. As root. Progress on stderr; on stdout one line:
#   before BYTES after BYTES freed BYTES
# (the registry's storage folder, as du counts it).
set -euo pipefail

LAB_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
say() { printf 'lab/registry-gc: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }
export PATH="/usr/local/sbin:/usr/sbin:/sbin:$PATH"
# shellcheck source=SCRIPTDIR/topology.sh
. "$LAB_DIR/topology.sh"

[[ $(id -u) -eq 0 ]] || die "run as root (the registry's storage is its system user's)"
live_pid "$REGISTRY_PID" "$REGISTRY_CONFIG" >/dev/null ||
  die "the registry is not running (no live pid in $REGISTRY_PID): lab/up.sh starts it"
close_inherited_fds
mkdir -p "$LAB_RUN_DIR"
exec 9>"$LAB_RUN_DIR/up.lock"
flock -w 300 9 || die "lab/up.sh (or another collection) holds $LAB_RUN_DIR/up.lock"

storage_bytes() { du -sb "$REGISTRY_STORAGE" | cut -f1; }

# Back to read-write, whatever happened.
read_write() {
  registry_config
  if ((FILE_CHANGED)); then
    stop_pidfile registry "$REGISTRY_PID" "$REGISTRY_CONFIG" 10
    launch_registry
    say "registry: read-write again"
  fi
}

before=$(storage_bytes)
trap read_write EXIT
registry_config readonly
stop_pidfile registry "$REGISTRY_PID" "$REGISTRY_CONFIG" 10
launch_registry
say "registry: read-only (pulls served, pushes refused) while it collects"
start=$SECONDS
# As the registry's own user: the storage is its.
timeout 600 setpriv --reuid="$REGISTRY_OS_USER" --regid="$REGISTRY_OS_USER" --clear-groups \
  "$REGISTRY_BIN" garbage-collect "$REGISTRY_CONFIG" >>"$REGISTRY_LOG" 2>&1 ||
  die "garbage-collect failed or took over 10 min; see $REGISTRY_LOG"
say "registry: collected in $((SECONDS - start)) s (log in $REGISTRY_LOG)"
read_write
trap - EXIT
after=$(storage_bytes)
echo "before $before after $after freed $((before - after))"
