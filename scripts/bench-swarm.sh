#!/usr/bin/env bash
# Benchmarks, in one run and under the same steady, bounded load
# (`books-bench steady`: 2 keep-alive connections, 5 ms between a client's
# answer and its next request, on /version), two deploys of a new release:
#   1. `harness --target swarm deploy` on the lab's swarm: a rolling update
#      of the app's two replicas behind HAProxy on every node (the load
#      through the manager's proxy);
#   2. `harness deploy` on the single prod host: blue-green behind HAProxy.
# Each has its own project and port (bench-swarm on 8096 on the swarm,
# bench-single on 8097 on prod), so the lab's books-ms and anybody's other
# projects are never touched. Each starts from release A live (deployed
# first, not timed), then deploys release B under the load; B is not on
# prod or any node when its deploy starts, so each pulls it. A and B are
# this tree's service built as scripts/dist.sh builds it
# (BOOKS_MS_REVISION=bench-a, bench-b), pushed to
# REGISTRY/books-lab-tests/books-ms:bench-a|b and deployed by digest.
# For each: the requests, the failed ones, the longest time between two
# successful answers, and pushed→live: from the deploy command's start
# until, after it ended, /version first answers B's revision (the harness
# runs its post-deploy checks before it ends: this is "verified live").
# Prints one table; docs/benchmarks.md ("A swarm beside one host") records
# runs. BENCH_SWARM_WAYS="swarm" (or "single") runs one side only. Run
# as root from anywhere. Everything it creates is removed on exit, also
# after a failure or Ctrl-C; every wait has a deadline.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
root=$PWD
# shellcheck source=../lab/topology.env
. lab/topology.env
DOCKER=/usr/bin/docker
say() { printf '==> %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

REPOSITORY=$BOOKS_LAB_REGISTRY/books-lab-tests/books-ms
PROD_HOST=${BOOKS_LAB_PROD_DOCKER_HOST#tcp://}
PROD_IP=${PROD_HOST%:*}
MANAGER_HOST=${BOOKS_LAB_SWARM_DOCKER_HOST#tcp://}
MANAGER_IP=${MANAGER_HOST%:*}
SWARM_PROJECT=bench-swarm SWARM_PORT=8096
SINGLE_PROJECT=bench-single SINGLE_PORT=8097
WAYS=${BENCH_SWARM_WAYS:-swarm single}
LOAD_CONNECTIONS=2 LOAD_PAUSE_MS=5
LOAD_BEFORE_SECS=2 LOAD_AFTER_SECS=1
BUILD_DEADLINE=1800 DEPLOY_DEADLINE=400 LIVE_DEADLINE=60
target_dir=${CARGO_TARGET_DIR:-$root/target}
dist_target_dir=${BOOKS_DIST_TARGET_DIR:-$target_dir/dist}
log_dir=$root/.harness/logs/bench-swarm
rm -rf "$log_dir"
mkdir -p "$log_dir"

prod() { DOCKER_HOST=$BOOKS_LAB_PROD_DOCKER_HOST DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH=$BOOKS_LAB_PROD_CERT_PATH timeout 60 "$DOCKER" "$@"; }
swarm() { DOCKER_HOST=$BOOKS_LAB_SWARM_DOCKER_HOST DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH=$BOOKS_LAB_SWARM_CERT_PATH timeout 60 "$DOCKER" "$@"; }

# remove_matching PATTERN COMMAND...: the names COMMAND lists that match.
remove_matching() {
  local pattern=$1 names
  shift 1
  names=$("$@" 2>/dev/null | grep -E "$pattern" || true)
  [[ -z $names ]] || printf '%s\n' "$names"
}

# Everything of bench-single on prod; of bench-swarm on the swarm (its
# services, configs, network; the lock, history and volumes on the manager).
clean() {
  local ours='^bench-(single|swarm)([-_].*)?$' names
  names=$(remove_matching "$ours" prod ps -a --format '{{.Names}}')
  # shellcheck disable=SC2086 # one name per word
  [[ -z $names ]] || prod rm -f -v $names >/dev/null || true
  names=$(remove_matching "$ours" prod network ls --format '{{.Name}}')
  [[ -z $names ]] || prod network rm $names >/dev/null || true
  names=$(remove_matching "$ours" prod volume ls --format '{{.Name}}')
  [[ -z $names ]] || prod volume rm $names >/dev/null || true
  names=$(remove_matching "$ours" swarm service ls --format '{{.Name}}')
  [[ -z $names ]] || swarm service rm $names >/dev/null || true
  names=$(remove_matching "$ours" swarm ps -a --format '{{.Names}}')
  [[ -z $names ]] || swarm rm -f -v $names >/dev/null || true
  # The services' tasks go within seconds; their network and configs then.
  local deadline=$((SECONDS + 60))
  while ((SECONDS < deadline)); do
    names=$(remove_matching "$ours" swarm network ls --format '{{.Name}}')
    [[ -n $names ]] || break
    swarm network rm $names >/dev/null 2>&1 || sleep 1
  done
  names=$(remove_matching "$ours" swarm config ls --format '{{.Name}}')
  [[ -z $names ]] || swarm config rm $names >/dev/null || true
  # The database's and the history's volumes, once their containers are gone.
  deadline=$((SECONDS + 60))
  while ((SECONDS < deadline)); do
    names=$(remove_matching "$ours" swarm volume ls --format '{{.Name}}')
    [[ -n $names ]] || break
    swarm volume rm $names >/dev/null 2>&1 || sleep 1
  done
}

tmp="" load_pid="" cmd_pid="" tagged=()
on_exit() {
  local status=$?
  trap - EXIT INT TERM
  [[ -z $cmd_pid ]] || { say "stopping what runs (pid $cmd_pid)"; stop "$cmd_pid" 60; }
  [[ -z $load_pid ]] || stop "$load_pid" 15
  say "removing what the benchmark made (bench-single on prod, bench-swarm on the swarm, the local tags)"
  clean || true
  ((${#tagged[@]} == 0)) || "$DOCKER" rmi "${tagged[@]}" >/dev/null 2>&1 || true
  [[ -z $tmp ]] || rm -rf "$tmp"
  exit "$status"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# quiet NAME COMMAND...: bounded COMMAND, its output in NAME's log, waited
# for in the background so that a signal reaches the script at once.
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
stop() {
  local pid=$1 deadline=$((SECONDS + $2))
  kill -TERM "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

say "checking the lab (lab/status.sh; lab/up.sh raises it)"
bash lab/status.sh >"$log_dir/lab-status.log" 2>&1 || { cat "$log_dir/lab-status.log" >&2; die "the lab is not up: run bash lab/up.sh"; }
clean
tmp=$(mktemp -d /tmp/books-ms-bench-swarm.XXXXXX)

say "building the harness and books-bench (one at a time: see scripts/bench-deploy.sh)"
quiet build-harness timeout "$BUILD_DEADLINE" cargo build --locked -p harness
cp "$target_dir/debug/harness" "$tmp/harness"
quiet build-bench timeout "$BUILD_DEADLINE" cargo build --locked -p books-bench
cp "$target_dir/debug/books-bench" "$tmp/books-bench"

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

cmd=()
deploy() {
  local way=$1 image=$2
  case $way in
    swarm) cmd=(timeout "$DEPLOY_DEADLINE" env HARNESS_PROD__PROJECT="$SWARM_PROJECT" HARNESS_SWARM__APP_PORT="$SWARM_PORT" \
      "$tmp/harness" --repo "$root" --target swarm --json deploy --image "$image") ;;
    single) cmd=(timeout "$DEPLOY_DEADLINE" env HARNESS_PROD__PROJECT="$SINGLE_PROJECT" HARNESS_PROD__APP_PORT="$SINGLE_PORT" \
      "$tmp/harness" --repo "$root" --target engine --json deploy --image "$image") ;;
  esac
}
url_of() {
  case $1 in
    swarm) printf 'http://%s:%s' "$MANAGER_IP" "$SWARM_PORT" ;;
    single) printf 'http://%s:%s' "$PROD_IP" "$SINGLE_PORT" ;;
  esac
}
wait_revision() {
  local url=$1 revision=$2 deadline=$((SECONDS + $3)) body
  while ((SECONDS < deadline)); do
    body=$(curl -sS -m 2 --noproxy '*' "$url/version" 2>/dev/null || true)
    [[ $(jq -r '.revision? // empty' <<<"$body" 2>/dev/null) == "$revision" ]] && return 0
    sleep 0.05
  done
  return 1
}
now() { date +%s.%N; }

for way in $WAYS; do
  say "$way: release A live (not timed)"
  deploy "$way" "$release_a"
  quiet "$way-deploy-a" "${cmd[@]}"
  wait_revision "$(url_of "$way")" bench-a "$LIVE_DEADLINE" || die "$way: $(url_of "$way")/version does not report bench-a"
done

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
  deploy "$way" "$release_b"
  quiet "$way-deploy-b" "${cmd[@]}"
  wait_revision "$url" bench-b "$LIVE_DEADLINE" || die "$way: $url/version does not report bench-b"
  end=$(now)
  sleep "$LOAD_AFTER_SECS"
  stop "$load_pid" 15
  load_pid=""
  jq -e . "$log_dir/$way.load.json" >/dev/null 2>&1 || die "$way: the load printed no report: $(cat "$log_dir/$way.load.err")"
  awk -v s="$start" -v e="$end" 'BEGIN { printf "%.1f", e - s }' >"$log_dir/$way.live"
}
for way in $WAYS; do
  say "$way: release B under load"
  measure "$way"
done

row() {
  local way=$1 label=$2 json=$log_dir/$1.load.json
  printf '%-40s %9s %7s %9s ms %10s s\n' "$label" "$(jq -r .requests "$json")" "$(jq -r .failed "$json")" \
    "$(jq -r '.longest_gap_ms | round' "$json")" "$(cat "$log_dir/$way.live")"
}
echo
echo "deploy                                    requests  failed  longest gap  pushed→live"
for way in $WAYS; do
  case $way in
    swarm) row swarm "swarm rolling update (3 nodes, 2 tasks)" ;;
    single) row single "single host blue-green" ;;
  esac
done
echo
for way in $WAYS; do
  json=$log_dir/$way.load.json
  printf '%-7s the load saw %s; slowest request %s ms; first failure: %s\n' "$way" \
    "$(jq -r '.revisions | "\(.[0]) first, \(.[-1]) last, \(length) runs of one revision"' "$json")" \
    "$(jq -r '.slowest_request_ms | round' "$json")" \
    "$(jq -r '.failures[0] // "none"' "$json")"
done
echo "Machine: $(nproc) cores; $(uptime | sed 's/.*load average/load average/'); $(date -u +%Y-%m-%dT%H:%MZ)"
echo "Logs (each deploy's output, each load's JSON): $log_dir"
