#!/usr/bin/env bash
# Benchmarks `harness pipeline` beside the chapter's steps done by hand
# (bench/pipeline/by-hand.sh), in one run, on the lab:
#   cold   nothing of the release on the cd engine or on prod (the images
#          built and pulled, prod's containers, network and volume removed;
#          cargo's caches stay warm: compiling from nothing costs both the same)
#   warm   the same again at once, nothing changed
#   change a one-line change in the service (a log message in
#          service/src/startup.rs), committed in a copy of the repository
#          that was shipped once unchanged just before, until verified live
#          on prod: `harness pipeline --source COPY` beside by-hand.sh run
#          in a copy of its own
# Each side deploys to its own project and port on prod (harness:
# books-ms-bench on 8082; by hand: books-ms-by-hand on 8081), so the lab's
# books-ms on 8080 and its data are never touched; the harness's records
# in .harness/ are put back as they were. Prints one table.
# docs/benchmarks.md records a run. Idempotent; what it puts on prod is
# removed on exit, also after a failure.
# BENCH_PIPELINE_RUNS=change times only the one-line change (both sides);
# the load average (`uptime`) is printed with the table.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:/usr/local/go/bin:$PATH"
root=$PWD
# shellcheck source=../lab/lab.env
. lab/lab.env
# shellcheck source=../lab/topology.env
. lab/topology.env
DOCKER=/usr/bin/docker
say() { printf '==> %s\n' "$*" >&2; }

say "raising the lab and building the harness"
bash lab/up.sh >/dev/null
cargo build --locked --quiet -p harness
harness="${CARGO_TARGET_DIR:-$root/target}/debug/harness"

export HARNESS_PROD__PROJECT=books-ms-bench HARNESS_PROD__APP_PORT=8082
export HARNESS_IMAGES__SERVICE=books-ms-bench HARNESS_IMAGES__TESTS=books-ms-bench-tests
export BYHAND_PROJECT=books-ms-by-hand BYHAND_PORT=8081
export BYHAND_SERVICE=books-ms-by-hand BYHAND_TESTS=books-ms-by-hand-tests
# The harness records its last push and tested trees in .harness/: the
# benchmark's runs must not replace the user's (a later `harness deploy`
# would ship the benchmark's image).
saved=$(mktemp -d /tmp/books-ms-bench-state.XXXXXX)
cp -a .harness/last-push.json .harness/tested-trees "$saved/" 2>/dev/null || true
copies=""
on_exit() {
  rm -f .harness/last-push.json .harness/tested-trees
  cp -a "$saved/." .harness/ 2>/dev/null || true
  rm -rf "$saved" ${copies:+"$copies"}
  say "removing the benchmark's projects from prod"
  make_cold books-ms-by-hand books-ms-by-hand books-ms-by-hand-tests || true
  make_cold books-ms-bench books-ms-bench books-ms-bench-tests || true
}
trap on_exit EXIT

prod() { DOCKER_HOST=$BOOKS_LAB_PROD_DOCKER_HOST DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH=$BOOKS_LAB_PROD_CERT_PATH "$DOCKER" "$@"; }

# Removes everything of one side's project on prod and its images on both
# engines; the registry keeps what was pushed (a first push of a new tag
# uploads only what the registry lacks, as in the chapter).
make_cold() {
  local project=$1 service=$2 tests=$3 ids
  ids=$(prod ps -aq --filter "name=${project}-" --filter "name=${project}_" || true)
  # shellcheck disable=SC2086 # one id per word
  [[ -z $ids ]] || prod rm -f $ids >/dev/null
  prod network rm "$project" "${project}_default" >/dev/null 2>&1 || true
  prod volume rm "${project}-db" "${project}_books-db" >/dev/null 2>&1 || true
  for engine in prod "$DOCKER"; do
    ids=$($engine images -q --filter "reference=$BOOKS_LAB_REGISTRY/$service" --filter "reference=$BOOKS_LAB_REGISTRY/$tests" 2>/dev/null | sort -u || true)
    # shellcheck disable=SC2086
    [[ -z $ids ]] || $engine rmi -f $ids >/dev/null 2>&1 || true
  done
}

# timed NAME COMMAND...: runs it with its output in NAME's log and prints the
# seconds it took; a failure stops the benchmark.
log_dir=$root/.harness/logs/bench-pipeline
mkdir -p "$log_dir"
timed() {
  local name=$1 start end
  shift
  start=$(date +%s.%N)
  if ! "$@" >"$log_dir/$name.log" 2>&1; then
    tail -n 30 "$log_dir/$name.log" >&2
    say "$name failed; its log: $log_dir/$name.log"
    exit 1
  fi
  end=$(date +%s.%N)
  awk -v s="$start" -v e="$end" 'BEGIN { printf "%.1f", e - s }'
}

# Both sides then find the same builds: whoever ran first would otherwise
# pay for compiling this revision.
say "building what both sides use (the tests, the static binary of this revision)"
revision=$(git rev-parse --short=12 HEAD)
[[ -z $(git status --porcelain --untracked-files=no) ]] || revision="$revision-dirty"
{ cargo test --locked -p books-ms --lib --test api --no-run && BOOKS_MS_REVISION=$revision bash scripts/dist.sh; } \
  >"$log_dir/prime.log" 2>&1 || { tail -n 30 "$log_dir/prime.log" >&2; say "building failed; its log: $log_dir/prime.log"; exit 1; }

runs=${BENCH_PIPELINE_RUNS:-all}
[[ $runs == all || $runs == change ]] || { say "BENCH_PIPELINE_RUNS is all or change, not $runs"; exit 2; }
load_start=$(uptime)
hand_cold=- harness_cold=- hand_warm=- harness_warm_retest=- harness_warm=-
if [[ $runs == all ]]; then
say "cold: by hand"
make_cold books-ms-by-hand books-ms-by-hand books-ms-by-hand-tests
hand_cold=$(timed hand-cold bash bench/pipeline/by-hand.sh)
say "cold: harness pipeline --retest"
make_cold books-ms-bench books-ms-bench books-ms-bench-tests
harness_cold=$(timed harness-cold "$harness" pipeline --retest)

say "warm: by hand"
hand_warm=$(timed hand-warm bash bench/pipeline/by-hand.sh)
say "warm: harness pipeline --retest"
harness_warm_retest=$(timed harness-warm-retest "$harness" pipeline --retest)
say "warm: harness pipeline (the tests of this committed tree reused)"
harness_warm=$(timed harness-warm "$harness" pipeline)
fi

# The change: each side gets a copy of the repository of its own and ships
# it once unchanged (not timed: the developer's loop, with cargo's
# incremental state for that folder warm), then one commit changing one
# line of the service is timed until verified live.
copies=$(mktemp -d /tmp/books-ms-bench.XXXXXX)
copy() {
  git clone -q --shared "$root" "$copies/$1"
  printf '%s' "$copies/$1"
}
edit_and_commit() {
  local repo=$1 marker=$2
  sed -i "s/\"shutting down[^:]*:/\"shutting down ($marker):/" "$repo/service/src/startup.rs"
  git -C "$repo" diff --quiet && { say "the one-line change did not apply in $repo"; exit 1; }
  git -C "$repo" -c user.name=bench -c user.email=bench@example.invalid commit -qam "bench: $marker"
}
targets=(env CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}" BOOKS_DIST_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}/dist")

say "change: by hand, in a copy (shipped once unchanged first, not timed)"
hand_copy=$(copy hand)
timed hand-change-base "${targets[@]}" bash bench/pipeline/by-hand.sh "$hand_copy" >/dev/null
edit_and_commit "$hand_copy" "by hand $(date +%s)"
hand_change=$(timed hand-change "${targets[@]}" bash bench/pipeline/by-hand.sh "$hand_copy")

say "change: harness pipeline --source COPY (shipped once unchanged first, not timed)"
harness_copy=$(copy harness)
# --retest: the same tree passed before, and would not be compiled here.
timed harness-change-base "$harness" pipeline --retest --trust-source --source "$harness_copy" >/dev/null
edit_and_commit "$harness_copy" "harness $(date +%s)"
harness_change=$(timed harness-change "$harness" pipeline --trust-source --source "$harness_copy")

cat <<TABLE

| run | by hand (shell, docker-compose) | harness pipeline |
|---|---|---|
| cold (nothing of the release on either engine) | ${hand_cold} s | ${harness_cold} s (--retest) |
| warm (nothing changed) | ${hand_warm} s | ${harness_warm_retest} s (--retest) / ${harness_warm} s (tests reused) |
| one-line change → verified live on prod | ${hand_change} s | ${harness_change} s |

Step times of each harness run: $log_dir/harness-*.log
Load average at the start: ${load_start##*load average: }; at the end: $(uptime | sed 's/.*load average: //')
TABLE
