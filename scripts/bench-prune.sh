#!/usr/bin/env bash
# `harness prune` after 20 releases: the registry's size and prod's image
# count before and after (docs/benchmarks.md, "Prune after 20 releases").
#
# The 20 releases are this tree's service image (REGISTRY/books-ms:latest,
# which `harness build` makes; the script refuses to start without it) with
# a layer of its own each: 14 MB of random bytes, the size of the service's
# binary, as a rebuilt binary adds; each with a tests image of its own
# (FROM scratch, 2 MB), so both repositories grow as a pipeline run makes
# them grow. All in repositories of the benchmark's own
# (books-lab-tests/bench-prune and -tests), deployed in project bench-prune
# on port 8097 of prod: the lab's books-ms and other projects are never
# touched. Releases 1 to 18 are pulled on prod (what their deploys left
# there), 19 and 20 deployed (the history: 20 live, 19 what it replaced).
# Then `harness prune` (default --keep 5). What stays afterwards (the kept
# releases, the project on prod) is removed on exit; run as root, with the
# lab up; every wait is bounded.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:/usr/local/sbin:/usr/sbin:/sbin:$PATH"
say() { printf '==> %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }
# shellcheck source=../lab/topology.sh
. lab/topology.sh
DOCKER=/usr/bin/docker
RELEASES=${BENCH_PRUNE_RELEASES:-20}
NAME=books-lab-tests/bench-prune
SERVICE=$BOOKS_LAB_REGISTRY/$NAME
TESTS=$SERVICE-tests
BASE=$BOOKS_LAB_REGISTRY/books-ms:latest
OUT=$(mktemp -d /tmp/bench-prune.XXXXXX)
export HARNESS_IMAGES__SERVICE=$NAME HARNESS_IMAGES__TESTS=$NAME-tests
export HARNESS_PROD__PROJECT=bench-prune HARNESS_PROD__APP_PORT=8097

[[ $(id -u) -eq 0 ]] || die "run as root (the registry's storage is measured with du)"
"$DOCKER" image inspect "$BASE" >/dev/null 2>&1 || die "no $BASE on this engine: run \`harness build\` first"
say "building the harness"
cargo build -q --locked -p harness
HARNESS=${CARGO_TARGET_DIR:-target}/debug/harness

cleanup() {
  say "removing what the benchmark left: the project on prod, its images there, its tags here and in the registry"
  prod_docker rm -f bench-prune-blue bench-prune-green bench-prune-proxy bench-prune-db \
    bench-prune-history bench-prune-deploy-lock >/dev/null 2>&1 || true
  prod_docker network rm bench-prune >/dev/null 2>&1 || true
  prod_docker volume rm bench-prune-db bench-prune-history >/dev/null 2>&1 || true
  prod_docker images -q "$SERVICE" 2>/dev/null | sort -u | xargs -r -n 20 timeout 60 \
    env DOCKER_HOST="$BOOKS_LAB_PROD_DOCKER_HOST" DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH="$BOOKS_LAB_PROD_CERT_PATH" \
    "$DOCKER" rmi -f >/dev/null 2>&1 || true
  local repo tag digest
  read_registry_credentials || return 0
  for repo in "$NAME" "$NAME-tests"; do
    for tag in $(registry_api "/v2/$repo/tags/list" | jq -r '.tags // [] | .[]'); do
      digest=$(registry_api "/v2/$repo/manifests/$tag" -I \
        -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' |
        tr -d '\r' | awk 'tolower($1) == "docker-content-digest:" { print $2 }')
      [[ -n $digest ]] && registry_api "/v2/$repo/manifests/$digest" -X DELETE -o /dev/null
    done
  done
  { "$DOCKER" images -q "$SERVICE"; "$DOCKER" images -q "$TESTS"; } | sort -u | xargs -r "$DOCKER" rmi -f >/dev/null 2>&1 || true
  rm -rf "$OUT"
}
trap cleanup EXIT

# The registry's API as the lab's user (the password on curl's stdin).
registry_api() {
  local path=$1
  shift
  printf 'user = "%s:%s"\n' "$REGISTRY_USER" "$REGISTRY_PASSWORD" |
    registry_curl -K - "$@" "https://$BOOKS_LAB_REGISTRY$path"
}

registry_bytes() { du -sb "$REGISTRY_STORAGE" | cut -f1; }
prod_images() { prod_docker images -q | sort -u | wc -l; }

say "pushing $RELEASES releases of $SERVICE and $TESTS"
for ((i = 1; i <= RELEASES; i++)); do
  ctx=$OUT/r$i
  mkdir -p "$ctx"
  head -c 14000000 /dev/urandom >"$ctx/binary"
  head -c 2000000 /dev/urandom >"$ctx/tests"
  created=$(date -u -d "2026-01-01 + $i hours" +%Y-%m-%dT%H:%M:%SZ)
  printf 'FROM %s\nCOPY binary /release-layer\nLABEL org.opencontainers.image.created=%s\n' "$BASE" "$created" >"$ctx/Dockerfile"
  timeout 300 "$DOCKER" build -q -t "$SERVICE:r$i" "$ctx" >/dev/null
  printf 'FROM scratch\nCOPY tests /tests\nLABEL org.opencontainers.image.created=%s\n' "$created" >"$ctx/Dockerfile.tests"
  timeout 300 "$DOCKER" build -q -f "$ctx/Dockerfile.tests" -t "$TESTS:r$i" "$ctx" >/dev/null
  timeout 300 "$DOCKER" push -q "$SERVICE:r$i" >/dev/null
  timeout 300 "$DOCKER" push -q "$TESTS:r$i" >/dev/null
  rm -f "$ctx/binary" "$ctx/tests"
done
for ((i = 1; i <= RELEASES - 2; i++)); do
  prod_docker pull -q "$SERVICE:r$i" >/dev/null
done
for i in $((RELEASES - 1)) $RELEASES; do
  digest=$("$DOCKER" inspect -f '{{range .RepoDigests}}{{println .}}{{end}}' "$SERVICE:r$i" | grep -m1 "^$SERVICE@")
  say "deploying release $i ($digest) to project bench-prune"
  timeout 600 "$HARNESS" deploy --image "$digest" >/dev/null 2>"$OUT/deploy-$i.log" ||
    { tail -n 20 "$OUT/deploy-$i.log" >&2; die "deploying release $i failed"; }
done

registry_before=$(registry_bytes)
prod_before=$(prod_images)
say "harness prune (keep the last 5)"
start=$EPOCHREALTIME
timeout 1200 "$HARNESS" --json prune >"$OUT/prune.json" 2>"$OUT/prune.log" ||
  { tail -n 20 "$OUT/prune.log" >&2; die "harness prune failed"; }
seconds=$(awk -v s="$start" -v e="$EPOCHREALTIME" 'BEGIN { printf "%.1f", e - s }')
registry_after=$(registry_bytes)
prod_after=$(prod_images)

printf '%-40s %12s %12s\n' "after $RELEASES releases" before after
printf '%-40s %12s %12s\n' "registry storage (MB, du)" "$((registry_before / 1000000))" "$((registry_after / 1000000))"
printf '%-40s %12s %12s\n' "images on prod (all projects)" "$prod_before" "$prod_after"
jq -r --arg s "$seconds" '"prune: \(.registry.kept | length) manifests kept, \(.registry.removed | length) removed; on prod \(.removed.images | length) images removed (at most \(.removed.freed_bytes_at_most / 1000000 | floor) MB); the collection: \(.registry_bytes[0] / 1000000 | floor) -> \(.registry_bytes[1] / 1000000 | floor) MB; \($s) s in all"' \
  "$OUT/prune.json"
