#!/usr/bin/env bash
# Benchmarks three ways of deploying a new release on the lab's prod host,
# in one run, each under the same steady, bounded load through prod's
# published port (`books-bench steady`: 2 keep-alive connections, 5 ms
# between a client's answer and its next request, on /version):
#   1. `harness deploy` of this tree: blue-green behind HAProxy, the switch
#      through HAProxy's runtime API (no reload);
#   2. the previous harness's stop-then-start deploy: the harness of
#      c057bbf, built from a git worktree of that commit, `deploy --image`;
#   3. a plain `docker-compose up -d` recreate of the repository's
#      docker-compose.yml on prod (DOCKER_HOST, TLS), the app published
#      directly.
# Each way has its own project and port on prod (bench-bg on 8093,
# bench-old on 8094, bench-compose on 8095), so the lab's books-ms on 8080
# and anybody's other projects are never touched. Each starts from release
# A live (deployed first, not timed), then deploys release B under the
# load; B is not on prod when a deploy starts, so each pulls it. A and B
# are this tree's service built as scripts/dist.sh builds it, with
# BOOKS_MS_REVISION=bench-a and bench-b (into a build context of their own:
# the repository's dist/ is never written), pushed to
# REGISTRY/books-lab-tests/books-ms:bench-a|b and deployed by digest.
# For each way: the requests, the failed ones, the longest time between two
# successful answers, and pushed→live: from the deploy command's start
# until, after it ended, /version first answers B's revision.
# Prints one table; docs/benchmarks.md ("Deploys under load") records runs.
# Run as root from anywhere. Everything it creates (containers, networks
# and volumes of the three projects on prod, B and A pulled there, the
# worktree, the local tags) is removed on exit, also after a failure or
# Ctrl-C; every wait has a deadline.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
root=$PWD
# shellcheck source=../lab/lab.env
. lab/lab.env
# shellcheck source=../lab/topology.env
. lab/topology.env
DOCKER=/usr/bin/docker
say() { printf '==> %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

OLD_COMMIT=c057bbf
REPOSITORY=$BOOKS_LAB_REGISTRY/books-lab-tests/books-ms
PROD_HOST=${BOOKS_LAB_PROD_DOCKER_HOST#tcp://}
PROD_IP=${PROD_HOST%:*}
BG_PROJECT=bench-bg BG_PORT=8093
OLD_PROJECT=bench-old OLD_PORT=8094
COMPOSE_PROJECT=bench-compose COMPOSE_PORT=8095
# Everything of the three projects on prod, and nothing else: containers
# (bench-bg-blue, bench-old-app, bench-compose_app_1, ...), networks and
# volumes (bench-bg-db, bench-compose_books-db, ...).
OURS='^bench-(bg|old|compose)([-_].*)?$'
# The load: as the issue measured it.
LOAD_CONNECTIONS=2 LOAD_PAUSE_MS=5
# Load before the deploy starts, and after B first answers.
LOAD_BEFORE_SECS=2 LOAD_AFTER_SECS=1
# Deadlines: a build, one deploy command, B answering after it ended.
BUILD_DEADLINE=1800 DEPLOY_DEADLINE=300 LIVE_DEADLINE=60
target_dir=${CARGO_TARGET_DIR:-$root/target}
dist_target_dir=${BOOKS_DIST_TARGET_DIR:-$target_dir/dist}
# This run's logs only (the last run's are replaced).
log_dir=$root/.harness/logs/bench-deploy
rm -rf "$log_dir"
mkdir -p "$log_dir"

prod() { DOCKER_HOST=$BOOKS_LAB_PROD_DOCKER_HOST DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH=$BOOKS_LAB_PROD_CERT_PATH timeout 60 "$DOCKER" "$@"; }

# Removes every container (with its anonymous volumes), network and volume
# of the three projects (or those matching the pattern $1) from prod.
# Idempotent: also run before, for what a killed run left.
clean_prod() {
  local ours=${1:-$OURS} names
  names=$(prod ps -a --format '{{.Names}}' | grep -E "$ours" || true)
  # shellcheck disable=SC2086 # one name per word
  [[ -z $names ]] || prod rm -f -v $names >/dev/null || true
  names=$(prod network ls --format '{{.Name}}' | grep -E "$ours" || true)
  # shellcheck disable=SC2086
  [[ -z $names ]] || prod network rm $names >/dev/null || true
  names=$(prod volume ls --format '{{.Name}}' | grep -E "$ours" || true)
  # shellcheck disable=SC2086
  [[ -z $names ]] || prod volume rm $names >/dev/null || true
}

tmp="" worktree="" load_pid="" release_a="" release_b="" tagged=()
on_exit() {
  local status=$?
  trap - EXIT INT TERM
  # A deploy stopped by SIGTERM undoes its steps (the harness's undo, a
  # few seconds), and `timeout` passes the signal on.
  [[ -z $cmd_pid ]] || { say "stopping what runs (pid $cmd_pid)"; stop "$cmd_pid" 60; }
  [[ -z $load_pid ]] || stop_load >/dev/null 2>&1 || true
  say "removing what the benchmark made (prod's bench-* projects, the worktree, the local tags)"
  clean_prod || true
  # The releases as prod pulled them (not forced: an image in use stays).
  local release
  for release in "$release_a" "$release_b"; do [[ -z $release ]] || prod rmi "$release" >/dev/null 2>&1 || true; done
  ((${#tagged[@]} == 0)) || "$DOCKER" rmi "${tagged[@]}" >/dev/null 2>&1 || true
  if [[ -n $worktree ]]; then
    git worktree remove --force "$worktree" 2>/dev/null || true
    git worktree prune || true
  fi
  [[ -z $tmp ]] || rm -rf "$tmp"
  exit "$status"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# quiet NAME COMMAND...: runs it with its output in NAME's log; a failure
# stops the benchmark with the log's tail. Every COMMAND is bounded
# (`timeout`). In the background, waited for: Ctrl-C or SIGTERM then reach
# the script at once, and on_exit stops the command first (a deploy undoes
# what it did) before it cleans up.
cmd_pid=""
quiet() {
  local name=$1
  shift
  "$@" >"$log_dir/$name.log" 2>&1 &
  cmd_pid=$!
  if ! wait "$cmd_pid"; then
    cmd_pid=""
    tail -n 30 "$log_dir/$name.log" >&2
    die "$name failed (or ran out of time); its log: $log_dir/$name.log"
  fi
  cmd_pid=""
}
# stop PID SECONDS: SIGTERM, then SIGKILL after SECONDS; reaped.
stop() {
  local pid=$1 deadline=$((SECONDS + $2))
  kill -TERM "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

say "checking the lab (lab/status.sh; lab/up.sh raises it)"
bash lab/status.sh >"$log_dir/lab-status.log" 2>&1 || { cat "$log_dir/lab-status.log" >&2; die "the lab is not up: run bash lab/up.sh"; }
published=$(prod ps --format '{{.Names}} {{.Ports}}' | grep -vE "^bench-(bg|old|compose)[-_]" || true)
for port in $BG_PORT $OLD_PORT $COMPOSE_PORT; do
  taken=$(grep -F ":$port->" <<<"$published" || true)
  [[ -z $taken ]] || die "port $port on prod is taken by another project: $taken"
done
clean_prod

tmp=$(mktemp -d /tmp/books-ms-bench-deploy.XXXXXX)

# The previous harness first: it is built in the same target dir (its cache
# reused) and so replaces target/debug/harness for a moment; building this
# tree's next puts that back. Both binaries are copied out, so a build
# elsewhere during the run changes neither.
say "building the harness of $OLD_COMMIT (git worktree in $tmp)"
worktree=$tmp/harness-$OLD_COMMIT
git worktree add --detach -q "$worktree" "$OLD_COMMIT"
quiet build-old-harness timeout "$BUILD_DEADLINE" env -C "$worktree" CARGO_TARGET_DIR="$target_dir" cargo build --locked -p harness
cp "$target_dir/debug/harness" "$tmp/harness-old"
# One at a time, never in one cargo invocation: cargo would unify their
# dependencies' features, and books-bench's mongodb turns on serde_json's
# preserve_order, under which the harness's container fingerprints follow
# HashMap order (random per process): every deploy would then recreate the
# proxy, and requests would fail. The harness is measured as
# `cargo build -p harness` builds it.
say "building this tree's harness and books-bench"
quiet build-harness timeout "$BUILD_DEADLINE" cargo build --locked -p harness
cp "$target_dir/debug/harness" "$tmp/harness"
quiet build-bench timeout "$BUILD_DEADLINE" cargo build --locked -p books-bench
cp "$target_dir/debug/books-bench" "$tmp/books-bench"

# build_release REVISION: the static binary as scripts/dist.sh builds it
# (same flags and target dir, so its cache is shared) with /version's
# revision set, the runtime image from a context of its own, pushed; sets
# `built` to the image by digest.
built=""
build_release() {
  local revision=$1 context=$tmp/context-$1
  quiet "binary-$revision" timeout "$BUILD_DEADLINE" env CARGO_TARGET_DIR="$dist_target_dir" \
    RUSTFLAGS="-C target-feature=+crt-static" BOOKS_MS_REVISION="$revision" \
    cargo build --release --locked -p books-ms --target x86_64-unknown-linux-gnu
  mkdir -p "$context/dist"
  cp Dockerfile .dockerignore "$context/"
  cp -r client "$context/client"
  cp "$dist_target_dir/x86_64-unknown-linux-gnu/release/books-ms" "$context/dist/books-ms"
  tagged+=("$REPOSITORY:$revision")
  quiet "image-$revision" timeout 600 "$DOCKER" build -q --build-arg "REVISION=$revision" --build-arg "VERSION=$revision" \
    -t "$REPOSITORY:$revision" "$context"
  quiet "push-$revision" timeout 300 "$DOCKER" push -q "$REPOSITORY:$revision"
  built=$("$DOCKER" image inspect -f '{{range .RepoDigests}}{{println .}}{{end}}' "$REPOSITORY:$revision" |
    grep -m1 "^$REPOSITORY@sha256:") || die "$REPOSITORY:$revision has no digest after its push"
}
say "building and pushing releases A and B (revisions bench-a, bench-b)"
build_release bench-a
release_a=$built
build_release bench-b
release_b=$built
say "A: $release_a"
say "B: $release_b"

# The three ways, each as one command bounded in time: deploy WAY IMAGE
# REVISION sets `cmd` (a command, not a function: `quiet` runs it as its
# own process, which on_exit can stop).
cmd=()
deploy() {
  local way=$1 image=$2 revision=$3
  case $way in
    bg)
      cmd=(timeout "$DEPLOY_DEADLINE" env HARNESS_PROD__PROJECT="$BG_PROJECT" HARNESS_PROD__APP_PORT="$BG_PORT" \
        "$tmp/harness" --json deploy --image "$image")
      ;;
    old)
      # Its expected revision defaults to the checkout's: name the image's.
      cmd=(timeout "$DEPLOY_DEADLINE" env -C "$worktree" HARNESS_PROD__PROJECT="$OLD_PROJECT" HARNESS_PROD__APP_PORT="$OLD_PORT" \
        "$tmp/harness-old" deploy --image "$image" --revision "$revision")
      ;;
    compose)
      # docker-compose is Python: a REQUESTS_CA_BUNDLE in the environment
      # would replace the lab's CA from DOCKER_CERT_PATH (see by-hand.sh).
      # `up -d` pulls the missing image itself, then recreates the app.
      cmd=(timeout "$DEPLOY_DEADLINE" env -u REQUESTS_CA_BUNDLE -u CURL_CA_BUNDLE \
        DOCKER_HOST="$BOOKS_LAB_PROD_DOCKER_HOST" DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH="$BOOKS_LAB_PROD_CERT_PATH" \
        BOOKS_MS_IMAGE="$image" DB_IMAGE="$BOOKS_LAB_REGISTRY/$BOOKS_DB_IMAGE" APP_PORT="$COMPOSE_PORT" \
        docker-compose -p "$COMPOSE_PROJECT" -f "$root/docker-compose.yml" up -d)
      ;;
  esac
}
url_of() {
  case $1 in
    bg) printf 'http://%s:%s' "$PROD_IP" "$BG_PORT" ;;
    old) printf 'http://%s:%s' "$PROD_IP" "$OLD_PORT" ;;
    compose) printf 'http://%s:%s' "$PROD_IP" "$COMPOSE_PORT" ;;
  esac
}

project_of() {
  case $1 in
    bg) printf '%s' "$BG_PROJECT" ;;
    old) printf '%s' "$OLD_PROJECT" ;;
    compose) printf '%s' "$COMPOSE_PROJECT" ;;
  esac
}

# The label every container of the way's project carries.
label_of() {
  case $1 in
    bg) printf 'org.books-ms.project=%s' "$BG_PROJECT" ;;
    old) printf 'org.books-ms.project=%s' "$OLD_PROJECT" ;;
    compose) printf 'com.docker.compose.project=%s' "$COMPOSE_PROJECT" ;;
  esac
}

# wait_revision URL REVISION SECONDS: until URL/version reports REVISION.
wait_revision() {
  local url=$1 revision=$2 deadline=$((SECONDS + $3)) body
  while ((SECONDS < deadline)); do
    body=$(curl -sS -m 2 --noproxy '*' "$url/version" 2>/dev/null || true)
    [[ $(jq -r '.revision? // empty' <<<"$body" 2>/dev/null) == "$revision" ]] && return 0
    sleep 0.05
  done
  return 1
}

stop_load() {
  stop "$load_pid" 15
  load_pid=""
}

now() { date +%s.%N; }

for way in bg old compose; do
  say "$way: release A live (not timed)"
  deploy "$way" "$release_a" bench-a
  quiet "$way-deploy-a" "${cmd[@]}"
  wait_revision "$(url_of "$way")" bench-a "$LIVE_DEADLINE" || die "$way: $(url_of "$way")/version does not report bench-a"
done

# measure WAY: B deployed under the load; leaves WAY.load.json, WAY.live
# (pushed→live) and WAY.first-b (from the same start until the load's first
# answer from B).
measure() {
  local way=$1 url start end
  url=$(url_of "$way")
  "$tmp/books-bench" steady --url "$url/version" --connections "$LOAD_CONNECTIONS" --pause-ms "$LOAD_PAUSE_MS" \
    --max-seconds $((LOAD_BEFORE_SECS + DEPLOY_DEADLINE + LIVE_DEADLINE + 60)) \
    >"$log_dir/$way.load.json" 2>"$log_dir/$way.load.err" &
  load_pid=$!
  sleep "$LOAD_BEFORE_SECS"
  kill -0 "$load_pid" 2>/dev/null || die "$way: the load ended before the deploy: $(cat "$log_dir/$way.load.err")"
  start=$(now)
  deploy "$way" "$release_b" bench-b
  quiet "$way-deploy-b" "${cmd[@]}"
  wait_revision "$url" bench-b "$LIVE_DEADLINE" || die "$way: $url/version does not report bench-b $LIVE_DEADLINE s after the deploy"
  end=$(now)
  sleep "$LOAD_AFTER_SECS"
  stop_load
  # What prod's engine did meanwhile (the healthchecks' execs aside).
  prod events --since "${start%.*}" --until "$(date +%s)" --filter "label=$(label_of "$way")" \
    --format '{{.Time}} {{.Actor.Attributes.name}} {{.Action}}' 2>&1 | grep -v healthcheck >"$log_dir/$way.events" || true
  jq -e . "$log_dir/$way.load.json" >/dev/null 2>&1 || die "$way: the load printed no report: $(cat "$log_dir/$way.load.err")"
  awk -v s="$start" -v e="$end" 'BEGIN { printf "%.1f", e - s }' >"$log_dir/$way.live"
  # When the load first got an answer from B, from the same start.
  jq -r --argjson start "$start" \
    '[[.revisions, .revisions_since] | transpose[] | select(.[0] == "bench-b")] | first
     | if . == null then "never" else (.[1] - $start) * 10 | round / 10 end' \
    "$log_dir/$way.load.json" >"$log_dir/$way.first-b"
}

# Each way pulls B itself, as after a push: B is not on prod when its
# deploy starts (prod's engine is shared by the three, so the way measured
# before removes its project, and B with it, once measured).
for way in bg old compose; do
  prod rmi "$release_b" >/dev/null 2>&1 || true
  ! prod image inspect "$release_b" >/dev/null 2>&1 || die "$release_b is still on prod (in use?)"
  say "$way: release B under load"
  measure "$way"
  clean_prod "^$(project_of "$way")([-_].*)?\$"
done

row() {
  local way=$1 label=$2 json=$log_dir/$1.load.json
  printf '%-27s %9s %7s %9s ms %10s s\n' "$label" "$(jq -r .requests "$json")" "$(jq -r .failed "$json")" \
    "$(jq -r '.longest_gap_ms | round' "$json")" "$(cat "$log_dir/$way.live")"
}
echo
echo "deploy                       requests  failed  longest gap  pushed→live"
row bg "harness deploy (blue-green)"
row old "stop-then-start ($OLD_COMMIT)"
row compose "docker-compose up -d"
echo
for way in bg old compose; do
  json=$log_dir/$way.load.json
  seen=$(jq -r '.revisions | join(" → ")' "$json")
  [[ $(jq -r '.first_revision + " " + .last_revision' "$json") == "bench-a bench-b" ]] ||
    say "$way: the load saw $seen, not bench-a then bench-b"
  printf '%-8s the load saw %s, B first %s s after the command'"'"'s start; slowest request %s ms; first failure: %s\n' \
    "$way" "$seen" "$(cat "$log_dir/$way.first-b")" "$(jq -r '.slowest_request_ms | round' "$json")" \
    "$(jq -r '.failures[0] // "none"' "$json")"
done
echo "Logs (each deploy's output, each load's JSON, prod's events): $log_dir"
