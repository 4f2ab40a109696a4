#!/usr/bin/env bash
# Times the README's first command (scripts/demo.sh) as a new user meets it,
# and prints where the time goes: the lab, the harness's build, the builds
# the demo starts beside the lab, and each step of `harness pipeline`.
#
#   bench-first-run.sh          warm: the first command as it is now
#   bench-first-run.sh --cold   cold first: wipes what a fresh machine has not
#                               (see below), runs it, then runs it again warm
# Then, in the same run, a one-line change to verified live on prod
# (scripts/bench-pipeline.sh's change row: `harness pipeline --source COPY`
# beside the chapter's steps by hand, each in a copy of the repository).
#
# --cold stops the lab (lab/down.sh) and removes the cd engine's data root
# (every image and container), the lab's registry, prod's and the swarm
# nodes' data roots and the lab's certificates (/var/lib/books-lab), Go's
# build cache and the cargo target folder the runs use (BENCH_TARGET_DIR,
# by default one of its own under /var/tmp, never the developer's target/).
# What stays, as on a machine whose package registries' downloads are
# cached: Debian's packages (installing them took 26 s on a fresh machine,
# docs/benchmarks.md), cargo's registry and Go's module cache.
# Each line of the first command's output is kept with its time in
# BENCH_LOG_DIR (default /var/tmp/books-ms-bench-first-run).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:/usr/local/go/bin:$PATH"
say() { printf '==> bench-first-run: %s\n' "$*" >&2; }
die() { printf 'bench-first-run: error: %s\n' "$*" >&2; exit 1; }

cold=false
case ${1:-} in
'') ;;
--cold) cold=true ;;
*) die "unknown argument '$1'; usage: bench-first-run.sh [--cold]" ;;
esac
[[ $(id -u) -eq 0 ]] || die "run as root (it raises the lab)"
log_dir=${BENCH_LOG_DIR:-/var/tmp/books-ms-bench-first-run}
export CARGO_TARGET_DIR=${BENCH_TARGET_DIR:-$log_dir/target}
mkdir -p "$log_dir"

wipe() {
  say "cold: stopping the lab and removing what a fresh machine has not"
  bash lab/down.sh >&2
  local dir
  for dir in /var/lib/docker /var/lib/books-lab "$(go env GOCACHE)" "$CARGO_TARGET_DIR"; do
    [[ -n $dir && $dir != / ]] || continue
    # Nothing may stay mounted below (a stopped engine unmounts its own).
    if awk -v d="$dir/" 'index($2, d) == 1 { found = 1 } END { exit !found }' /proc/mounts; then
      die "something is still mounted below $dir; stop what uses it first"
    fi
    rm -rf --one-file-system -- "$dir"
  done
  # The engine's daemon.json and the registry's CA in its certificates
  # folder come from lab/up.sh; a fresh machine has neither.
  rm -f /etc/docker/daemon.json
  rm -rf /etc/docker/certs.d/10.200.0.1:5000
}

# run NAME: the first command, each output line stamped with the seconds
# since its start; the log in $log_dir/NAME.log. Prints the total.
run() {
  local name=$1 start line
  start=$EPOCHREALTIME
  say "$name: bash scripts/demo.sh (log: $log_dir/$name.log)"
  if ! bash scripts/demo.sh 2>&1 | while IFS= read -r line; do
    printf '%7.1f %s\n' "$(awk -v s="$start" -v n="$EPOCHREALTIME" 'BEGIN { print n - s }')" "$line"
  done >"$log_dir/$name.log"; then
    tail -n 40 "$log_dir/$name.log" >&2
    die "$name: the first command failed"
  fi
}

# The seconds at which the first line matching PATTERN came, or -.
at() { awk -v p="$2" '$0 ~ p { print $1; found = 1; exit } END { if (!found) print "-" }' "$log_dir/$1.log"; }

# The pipeline's closing table: the rows of its nine steps.
steps() {
  awk '/^ *[0-9.]+ step +outcome +start +time/ { on = 1; next }
    on && $2 ~ /^(checkout|test|package|build|push|deploy|integrate|verify|push-tests)$/ { $1 = ""; print; next }
    on { exit }' "$log_dir/$1.log"
}

report() {
  local name=$1
  printf '\n%s\n' "$name"
  printf '  %-44s %8s\n' "lab up (lab/up.sh: ready)" "$(at "$name" 'lab/up: ready in')"
  printf '  %-44s %8s\n' "harness built (cargo build -p harness)" "$(at "$name" '==> harness built')"
  printf '  %-44s %8s\n' "lab and builds done" "$(at "$name" '==> lab up and builds done')"
  printf '  %-44s %8s\n' "pipeline started" "$(at "$name" '==> shipping to prod')"
  printf '  %-44s %8s\n' "first command done (URL printed)" "$(at "$name" 'books-ms runs on prod')"
  printf '  pipeline steps (start and time from the pipeline'"'"'s own start):\n'
  steps "$name" | sed 's/^ */    /'
}

revision=$(git rev-parse --short=12 HEAD)
[[ -z $(git status --porcelain --untracked-files=no) ]] || revision="$revision-dirty"
say "revision $revision, $(nproc) cores, load: $(cut -d' ' -f1-3 /proc/loadavg)"
if $cold; then
  wipe
  run cold
fi
run warm
say "change: BENCH_PIPELINE_RUNS=change bash scripts/bench-pipeline.sh"
BENCH_PIPELINE_RUNS=change bash scripts/bench-pipeline.sh >"$log_dir/change.out" 2>"$log_dir/change.err" ||
  { tail -n 40 "$log_dir/change.err" >&2; die "the change run failed"; }
$cold && report cold
report warm
printf '\nchange (one line of the service, committed, to verified live on prod)\n'
grep '^| one-line change' "$log_dir/change.out" | sed 's/^/  /'
printf '  the harness'"'"'s steps:\n'
awk '/^step +outcome +start +time/ { on = 1; next }
  on && $1 ~ /^(checkout|test|package|build|push|deploy|integrate|verify|push-tests)$/ { print "    " $0; next }
  on { exit }' .harness/logs/bench-pipeline/harness-change.log
printf '\nload average at the end: %s\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
