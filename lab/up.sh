#!/usr/bin/env bash
# Sets up the books-ms lab on a Debian 12 machine, as root: system packages,
# a Docker engine, the registry and prod (lab/topology.sh), the swarm of prod
# nodes (lab/swarm.sh), the images that
# cannot be pulled here, and the copies of them that prod pulls from the
# registry.
#
# Idempotent: every step checks first and does nothing when its result is
# already there, so a second run takes a few seconds and makes no apt call.
# Steps are small functions called in order at the bottom; add new ones there.
# Undo the running parts with lab/down.sh (it keeps packages, images, data).
#
# Usage: lab/up.sh        (progress on stderr; exits non-zero on the first failure)
#        lab/up.sh packages   only install the system packages the lab needs
#        lab/up.sh certificates   only check and repair the lab's CA and
#                 certificates (in $BOOKS_LAB_DATA_DIR/tls when set); a run of
#                 the whole script restarts prod's engine when its changed
set -euo pipefail

LAB_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(dirname -- "$LAB_DIR")
# shellcheck source=SCRIPTDIR/lab.env
. "$LAB_DIR/lab.env"
# The registry and the second Docker host, prod: topology_up.
# shellcheck source=SCRIPTDIR/topology.sh
. "$LAB_DIR/topology.sh"
# The swarm of prod nodes, beside prod: swarm_up.
# shellcheck source=SCRIPTDIR/swarm.sh
. "$LAB_DIR/swarm.sh"
# with_heartbeat: a line every 10 s while a long, quiet step runs.
# shellcheck source=SCRIPTDIR/../scripts/heartbeat.sh
. "$REPO_DIR/scripts/heartbeat.sh"

LOG_DIR=/var/log/books-lab
RUN_DIR=/run/books-lab
DOCKERD_PID="$RUN_DIR/dockerd.pid"
DOCKERD_LOG="$LOG_DIR/dockerd.log"
# Debian's client: a newer one may come first on PATH, without buildx, and
# then `docker build` prints a deprecation notice on every build.
DOCKER=/usr/bin/docker
# Image label holding a hash of everything an image was built from, so a
# changed input rebuilds it and an unchanged one is left alone.
INPUTS_LABEL=org.books-ms.lab.inputs

PACKAGES=(
  docker.io docker-compose debootstrap skopeo
  wrk hyperfine apache2-utils
  iproute2 openssl git ca-certificates curl
  chromium chromium-driver
  docker-registry jq
  python3-venv
)

# dockerd needs iptables (in /usr/sbin); Go, in its default install place,
# may be missing from PATH in a non-login shell.
export PATH="/usr/local/sbin:/usr/sbin:/sbin:$PATH:/usr/local/go/bin"

say() { printf 'lab/up: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

require_root() {
  [[ $(id -u) -eq 0 ]] || die "run as root (it installs packages and starts dockerd)"
}

# Two runs at once would both start a dockerd or build the same image.
# Bounded: give up after 15 minutes (a cold first run takes a few).
take_lock() {
  mkdir -p "$RUN_DIR" "$LOG_DIR"
  exec 9>"$RUN_DIR/up.lock"
  flock -w 900 9 || die "another lab/up.sh holds $RUN_DIR/up.lock"
}

install_packages() {
  local missing=() p
  for p in "${PACKAGES[@]}"; do
    if [[ $(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null) != installed ]]; then
      missing+=("$p")
    fi
  done
  if ((${#missing[@]} == 0)); then
    say "packages: all ${#PACKAGES[@]} installed"
    return
  fi
  say "packages: installing ${missing[*]}"
  # Another engineer may be running apt: wait for its lock (up to 10 min)
  # instead of failing. `update` may still lose the race for the lists lock,
  # hence a few bounded attempts.
  local apt=(apt-get -q -o DPkg::Lock::Timeout=600)
  local i
  for i in 1 2 3 4 5; do
    "${apt[@]}" update && break
    ((i < 5)) || die "apt-get update failed 5 times"
    say "packages: apt-get update failed (attempt $i/5), retrying in 10 s"
    sleep 10
  done
  DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y --no-install-recommends "${missing[@]}"
}

# Bounded: a wedged engine must not hang the script.
docker_answers() { timeout 10 "$DOCKER" info >/dev/null 2>&1; }

# No systemd here: run dockerd ourselves, in its own session so it outlives
# this script, with its own pid file so lab/down.sh stops exactly this one.
start_dockerd() {
  if docker_answers; then
    if [[ -s $DOCKERD_PID ]]; then
      say "docker: engine answers (pid $(<"$DOCKERD_PID"))"
    else
      say "docker: engine answers (not started by lab/up.sh; lab/down.sh leaves it alone)"
    fi
    return
  fi
  say "docker: starting dockerd, log in $DOCKERD_LOG"
  # fd 9 (our lock) is closed for dockerd, or it would hold the lock forever.
  # dockerd writes the pid file itself and removes it when it stops.
  setsid nohup /usr/sbin/dockerd --pidfile "$DOCKERD_PID" \
    </dev/null >>"$DOCKERD_LOG" 2>&1 9>&- &
  local pid=$!
  await_engine docker "$pid" "$DOCKERD_LOG" docker_answers
  say "docker: engine answers (pid $pid, after ~$AWAITED_SECS s)"
}

# Prints the inputs label of an image, or nothing when the image is missing.
image_inputs() {
  "$DOCKER" image inspect -f "{{ index .Config.Labels \"$INPUTS_LABEL\" }}" "$1" 2>/dev/null || true
}

image_id() { "$DOCKER" image inspect -f '{{.Id}}' "$1" 2>/dev/null || true; }

# A rebuild leaves the previous image untagged; remove it so rebuilds do not
# pile up (Docker refuses while a container still uses it, which is fine).
remove_replaced_image() {
  local old=$1 name=$2
  [[ -n $old && $old != "$(image_id "$name")" ]] || return 0
  "$DOCKER" image rm "$old" >/dev/null 2>&1 ||
    say "image $name: kept the previous one (${old:7:12}), a container still uses it"
}

# Removes a temporary directory, unmounting first anything still mounted
# below it (debootstrap mounts /proc and /sys in its target), so that rm
# cannot reach into the host's file systems.
remove_tmp_dir() {
  local dir=$1
  [[ $dir == /var/tmp/books-lab-?* ]] || die "refusing to remove '$dir'"
  [[ -d $dir ]] || return 0
  # Deepest first. (mktemp names hold no characters that /proc/mounts escapes.)
  awk -v d="$dir/" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r |
    while read -r m; do umount -l "$m" || true; done
  rm -rf --one-file-system -- "$dir"
}

FERRETDB_SRC="$REPO_DIR/db/ferretdb"
# Only the SQLite backend is used; leaving PostgreSQL out saves 4 MB.
FERRETDB_BUILD=(go build -trimpath -buildvcs=false -tags ferretdb_no_postgresql -ldflags="-s -w")

build_ferretdb_image() {
  local inputs
  inputs=$(cd "$FERRETDB_SRC" &&
    { sha256sum go.mod go.sum ./*.go Dockerfile; echo "${FERRETDB_BUILD[*]}"; } |
    sha256sum | cut -c1-16)
  if [[ $(image_inputs "$BOOKS_DB_IMAGE") == "$inputs" ]]; then
    say "image $BOOKS_DB_IMAGE: up to date"
    return
  fi
  command -v go >/dev/null || die "go not found: install Go 1.24 or newer to build $BOOKS_DB_IMAGE"
  say "image $BOOKS_DB_IMAGE: building (go build: about 2 min cold, seconds with a warm Go cache)"
  local old ctx
  old=$(image_id "$BOOKS_DB_IMAGE")
  ctx=$(mktemp -d /var/tmp/books-lab-ferretdb.XXXXXX)
  # shellcheck disable=SC2064 # expand $ctx now: it is local
  trap "remove_tmp_dir '$ctx'" EXIT
  # The Go build and module caches stay in their default places outside the
  # clone, so later builds are fast.
  (cd "$FERRETDB_SRC" &&
    CGO_ENABLED=0 with_heartbeat "lab/up: image $BOOKS_DB_IMAGE: go build" "${FERRETDB_BUILD[@]}" -o "$ctx/ferretdb" .)
  mkdir -p "$ctx/data/db" "$ctx/tmp"
  "$DOCKER" build -f "$FERRETDB_SRC/Dockerfile" --label "$INPUTS_LABEL=$inputs" \
    -t "$BOOKS_DB_IMAGE" "$ctx" >&2
  remove_tmp_dir "$ctx"
  trap - EXIT
  remove_replaced_image "$old" "$BOOKS_DB_IMAGE"
  say "image $BOOKS_DB_IMAGE: built ($("$DOCKER" image inspect -f '{{.Size}}' "$BOOKS_DB_IMAGE") bytes)"
}

# Made the way the official Debian images are: a debootstrap minbase, with
# the same apt sources (updates and security too) and no package caches.
DEBIAN_SUITE=bookworm
DEBIAN_MIRROR=http://deb.debian.org/debian
DEBIAN_SECURITY_MIRROR=http://deb.debian.org/debian-security

build_debian_image() {
  local inputs
  # The recipe is this function itself: editing it rebuilds the image.
  inputs=$({ declare -f build_debian_image debootstrap_logged debian_sources
    echo "$DEBIAN_SUITE $DEBIAN_MIRROR $DEBIAN_SECURITY_MIRROR"; } | sha256sum | cut -c1-16)
  if [[ $(image_inputs "$BOOKS_DEBIAN_IMAGE") == "$inputs" ]]; then
    say "image $BOOKS_DEBIAN_IMAGE: up to date"
    return
  fi
  say "image $BOOKS_DEBIAN_IMAGE: debootstrap $DEBIAN_SUITE (about 30 s)"
  local old root
  old=$(image_id "$BOOKS_DEBIAN_IMAGE")
  # /var/tmp, not /tmp: /tmp may be a tmpfs mounted nodev.
  root=$(mktemp -d /var/tmp/books-lab-debootstrap.XXXXXX)
  # shellcheck disable=SC2064
  trap "remove_tmp_dir '$root'" EXIT
  with_heartbeat "lab/up: image $BOOKS_DEBIAN_IMAGE: debootstrap (log in $LOG_DIR/debootstrap.log)" \
    debootstrap_logged "$root" ||
    { tail -n 20 "$LOG_DIR/debootstrap.log" >&2; die "debootstrap failed (log in $LOG_DIR/debootstrap.log)"; }
  rm -f "${root:?}/etc/apt/sources.list"
  debian_sources >"${root:?}/etc/apt/sources.list.d/debian.sources"
  # Downloaded .debs and lists are dead weight (30 MB) and stale the moment
  # the image is made; images run `apt-get update` themselves.
  # ${root:?}: never let an empty variable turn these into host paths.
  rm -rf "${root:?}"/var/cache/apt/archives/*.deb "${root:?}"/var/cache/apt/*.bin \
    "${root:?}"/var/lib/apt/lists/*
  tar --numeric-owner -C "$root" -c . |
    "$DOCKER" import \
      -c 'CMD ["bash"]' \
      -c "LABEL $INPUTS_LABEL=$inputs org.opencontainers.image.title=$BOOKS_DEBIAN_IMAGE" \
      - "$BOOKS_DEBIAN_IMAGE" >/dev/null
  remove_tmp_dir "$root"
  trap - EXIT
  remove_replaced_image "$old" "$BOOKS_DEBIAN_IMAGE"
  say "image $BOOKS_DEBIAN_IMAGE: built ($("$DOCKER" image inspect -f '{{.Size}}' "$BOOKS_DEBIAN_IMAGE") bytes)"
}

debootstrap_logged() {
  debootstrap --variant=minbase "$DEBIAN_SUITE" "$1" "$DEBIAN_MIRROR" >"$LOG_DIR/debootstrap.log" 2>&1
}

# The apt sources of the official image (deb822 format).
debian_sources() {
  printf '%s\n' \
    "Types: deb" \
    "URIs: $DEBIAN_MIRROR" \
    "Suites: $DEBIAN_SUITE $DEBIAN_SUITE-updates" \
    "Components: main" \
    "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg" \
    "" \
    "Types: deb" \
    "URIs: $DEBIAN_SECURITY_MIRROR" \
    "Suites: $DEBIAN_SUITE-security" \
    "Components: main" \
    "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg"
}

# The stand-in for the public rust:<version>-bookworm image (it cannot be
# pulled, and Debian's own rustc is too old): the lab's Debian image with the
# host's active rustup toolchain copied in, laid out as lab/rust.Dockerfile
# says. The toolchain's documentation (share/doc: 800 of its 1,400 MB) and
# man pages stay out. The context is streamed as a tar, so nothing is copied
# to disk first.
RUST_DOCKERFILE="$LAB_DIR/rust.Dockerfile"

build_rust_image() {
  local rustc sysroot version inputs
  rustc=$(command -v rustc || echo "$HOME/.cargo/bin/rustc")
  [[ -x $rustc ]] || die "rustc not found: install Rust with rustup to build $BOOKS_RUST_IMAGE"
  # Asked from the repository, so that a rust-toolchain file there would
  # choose the toolchain, as it does for cargo.
  sysroot=$(cd "$REPO_DIR" && "$rustc" --print sysroot)
  version=$("$sysroot/bin/rustc" -vV | sed -n 's/^release: //p')
  # The recipe (this function and the Dockerfile), the exact toolchain and
  # its programs, and the base image: a change to any of them rebuilds.
  inputs=$({ declare -f build_rust_image build_rust_image_from; cat "$RUST_DOCKERFILE"
    "$sysroot/bin/rustc" -vV; "$sysroot/bin/cargo" -V; ls "$sysroot/bin"
    image_id "$BOOKS_DEBIAN_IMAGE"; } | sha256sum | cut -c1-16)
  if [[ $(image_inputs "$BOOKS_RUST_IMAGE") == "$inputs" ]]; then
    say "image $BOOKS_RUST_IMAGE: up to date (rustc $version)"
    return
  fi
  say "image $BOOKS_RUST_IMAGE: building from $BOOKS_DEBIAN_IMAGE and the host's rustc $version (about 1.5 min)"
  local old
  old=$(image_id "$BOOKS_RUST_IMAGE")
  # The context: rust.Dockerfile, and the toolchain renamed to rust/ (S: a
  # symlink's target is left as it is). Bounded: apt runs in the build.
  with_heartbeat "lab/up: image $BOOKS_RUST_IMAGE" build_rust_image_from "$sysroot" "$version" "$inputs"
  remove_replaced_image "$old" "$BOOKS_RUST_IMAGE"
  say "image $BOOKS_RUST_IMAGE: built ($("$DOCKER" image inspect -f '{{.Size}}' "$BOOKS_RUST_IMAGE") bytes)"
}

build_rust_image_from() {
  local sysroot=$1 version=$2 inputs=$3
  tar -c --exclude=./share/doc --exclude=./share/man --transform='s,^\.,rust,S' \
    -C "$sysroot" . -C "$LAB_DIR" rust.Dockerfile |
    timeout 1200 "$DOCKER" build -f rust.Dockerfile \
      --build-arg "BASE_IMAGE=$BOOKS_DEBIAN_IMAGE" --build-arg "RUST_VERSION=$version" \
      --label "$INPUTS_LABEL=$inputs" --label "org.opencontainers.image.version=$version" \
      -t "$BOOKS_RUST_IMAGE" -
}

# The stand-in for the public haproxy image, the reverse proxy of the
# harness's blue-green deploys on prod: the lab's Debian image with Debian's
# haproxy and socat packages, laid out as lab/haproxy.Dockerfile says. The
# context is that file alone, streamed as a tar.
PROXY_DOCKERFILE="$LAB_DIR/haproxy.Dockerfile"

build_proxy_image() {
  local inputs
  # The recipe (this function and the Dockerfile) and the base image: a
  # change to any of them rebuilds. (Debian's updates to the packages do
  # not: rebuild the Debian image, or remove this one, to take them.)
  inputs=$({ declare -f build_proxy_image; cat "$PROXY_DOCKERFILE"
    image_id "$BOOKS_DEBIAN_IMAGE"; } | sha256sum | cut -c1-16)
  if [[ $(image_inputs "$BOOKS_PROXY_IMAGE") == "$inputs" ]]; then
    say "image $BOOKS_PROXY_IMAGE: up to date"
    return
  fi
  say "image $BOOKS_PROXY_IMAGE: building from $BOOKS_DEBIAN_IMAGE and Debian's haproxy package (about 10 s)"
  local old
  old=$(image_id "$BOOKS_PROXY_IMAGE")
  # Bounded: apt runs in the build. The title label would otherwise be the
  # base image's.
  tar -c -C "$LAB_DIR" haproxy.Dockerfile |
    timeout 600 "$DOCKER" build -f haproxy.Dockerfile \
      --build-arg "BASE_IMAGE=$BOOKS_DEBIAN_IMAGE" --label "$INPUTS_LABEL=$inputs" \
      --label "org.opencontainers.image.title=$BOOKS_PROXY_IMAGE" \
      -t "$BOOKS_PROXY_IMAGE" - >&2 ||
    die "image $BOOKS_PROXY_IMAGE: the build failed or took over 10 min (output above)"
  remove_replaced_image "$old" "$BOOKS_PROXY_IMAGE"
  say "image $BOOKS_PROXY_IMAGE: built ($("$DOCKER" image inspect -f '{{.Size}}' "$BOOKS_PROXY_IMAGE") bytes)"
}

main() {
  local start=$SECONDS
  require_root
  close_inherited_fds
  take_lock
  install_packages
  start_dockerd
  topology_up
  swarm_up
  # prod pulls only from the registry: each image it runs besides the
  # service (which the harness pushes itself) is mirrored there once built.
  build_ferretdb_image
  mirror_image "$BOOKS_DB_IMAGE" "prod's database image"
  build_debian_image
  build_proxy_image
  mirror_image "$BOOKS_PROXY_IMAGE" "prod's reverse proxy"
  build_rust_image
  # Not for prod: the tests images build on it, and with its layers in the
  # registry their first push mounts them from there instead of uploading
  # the 600 MB toolchain layer at the end of the first pipeline (24 s); the
  # upload happens here, while the first command compiles.
  mirror_image "$BOOKS_RUST_IMAGE" "the layers of the tests images"
  say "ready in $((SECONDS - start)) s (images: $BOOKS_DB_IMAGE, $BOOKS_DEBIAN_IMAGE," \
    "$BOOKS_PROXY_IMAGE, $BOOKS_RUST_IMAGE)"
}

case ${1:-} in
'') main ;;
certificates) tls_certificates ;;
packages) require_root && take_lock && install_packages ;;
*) die "unknown step '$1'; usage: lab/up.sh [certificates|packages]" ;;
esac
