#!/usr/bin/env bash
# Is the list streamed? The service's peak memory while it lists 10,000 and
# then 100,000 books: if the list were built in memory, the peak would grow
# with the collection; streamed, it stays near the idle figure.
#
# For each size: a fresh database in one database container (loopback
# only), the books written with the driver (`books-bench seed`: PUTs through
# the API would take minutes for 100,000), a fresh service process, one
# small list to warm it up, then the peak resident set (VmHWM in
# /proc/PID/status) before and after LISTS whole lists, CONCURRENT at a
# time. Each list is checked: exactly the books written, as complete JSON.
# Prints one table (markdown). A script, not a test: it measures.
#
# Settings (environment):
#   MEMORY_SIZES       collection sizes (default "10000 100000")
#   MEMORY_LISTS       whole lists per size (default 4)
#   MEMORY_CONCURRENT  lists at a time (default 2)
#   BOOKS_MS_BIN       the service binary (default $CARGO_TARGET_DIR/release/books-ms)
#   BENCH_BIN          books-bench (default $CARGO_TARGET_DIR/release/books-bench)
#   MEMORY_BUILD       0: do not build the release binaries first (default 1)
# Needs the lab's database image (lab/up.sh builds it) and the local engine.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
# shellcheck source=../lab/lab.env
. lab/lab.env
DOCKER=/usr/bin/docker

SIZES=${MEMORY_SIZES:-"10000 100000"}
LISTS=${MEMORY_LISTS:-4}
CONCURRENT=${MEMORY_CONCURRENT:-2}
TARGET=${CARGO_TARGET_DIR:-target}
SERVICE=${BOOKS_MS_BIN:-$TARGET/release/books-ms}
BENCH=${BENCH_BIN:-$TARGET/release/books-bench}
OUT=target/bench
LABEL=org.books-ms.bench-memory

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'bench-list-memory: error: %s\n' "$*" >&2; exit 1; }

[[ $LISTS =~ ^[0-9]+$ && $LISTS -ge 1 && $LISTS -le 100 ]] || die "MEMORY_LISTS: a number from 1 to 100, not '$LISTS'"
[[ $CONCURRENT =~ ^[0-9]+$ && $CONCURRENT -ge 1 && $CONCURRENT -le 16 ]] ||
  die "MEMORY_CONCURRENT: a number from 1 to 16, not '$CONCURRENT'"
for size in $SIZES; do
  [[ $size =~ ^[0-9]+$ && $size -ge 1 && $size -le 1000000 ]] ||
    die "MEMORY_SIZES: numbers from 1 to 1000000, not '$size'"
done

# shellcheck source=scripts/bench-processes.sh
. scripts/bench-processes.sh

# kB of a field of /proc/PID/status (VmHWM: the peak resident set; VmRSS: now).
status_kb() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"; }

mkdir -p "$OUT"
: >"$OUT/books-ms-memory.log"
"$DOCKER" image inspect "$BOOKS_DB_IMAGE" >/dev/null 2>&1 || die "no image $BOOKS_DB_IMAGE: run lab/up.sh"
if [[ ${MEMORY_BUILD:-1} == 1 ]]; then
  say "building release binaries (books-ms, books-bench)"
  timeout 1800 cargo build --release --locked -p books-ms -p books-bench
fi
[[ -x $SERVICE && -x $BENCH ]] || die "no binaries at $SERVICE and $BENCH"

stale=$("$DOCKER" ps -aq --filter "label=$LABEL")
if [[ -n $stale ]]; then
  say "removing database containers left by an earlier run: $stale"
  # shellcheck disable=SC2086 # one id per word
  timeout 60 "$DOCKER" rm -f $stale >/dev/null
fi
say "starting a database container ($BOOKS_DB_IMAGE, loopback only)"
DB_CID=$("$DOCKER" run -d --rm --label "$LABEL" -p 127.0.0.1::27017 "$BOOKS_DB_IMAGE")
db_port=$("$DOCKER" port "$DB_CID" 27017/tcp | head -n1 | sed 's/.*://')
[[ $db_port =~ ^[0-9]+$ ]] || die "no published port for the database container ($DB_CID)"
DB_URI=mongodb://127.0.0.1:$db_port

rows=()
for size in $SIZES; do
  db=bench_memory_$size
  say "$size books: writing them with the driver"
  t0=$EPOCHREALTIME
  timeout 600 "$BENCH" seed --uri "$DB_URI" --db "$db" --books "$size" >/dev/null
  say "$size books written in $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }') s"

  port=$("$BENCH" free-port)
  LISTEN_ADDR=127.0.0.1:$port MONGODB_URI=$DB_URI DB_DBNAME=$db STATIC_DIR=client RUST_LOG=warn \
    "$SERVICE" >>"$OUT/books-ms-memory.log" 2>&1 &
  SERVICE_PID=$!
  "$BENCH" wait-ready --addr "127.0.0.1:$port" --timeout-s 30 >/dev/null ||
    die "books-ms did not become ready (log: $OUT/books-ms-memory.log)"
  curl -fsS -m 30 -o /dev/null "http://127.0.0.1:$port/api/v1/books?limit=100" || die "the warm-up list failed"
  idle_kb=$(status_kb "$SERVICE_PID" VmHWM)

  say "$size books: $LISTS lists, $CONCURRENT at a time"
  t0=$EPOCHREALTIME
  for ((done_lists = 0; done_lists < LISTS; done_lists += CONCURRENT)); do
    pids=()
    for ((i = 0; i < CONCURRENT && done_lists + i < LISTS; i++)); do
      curl -fsS -m 300 -o "$OUT/memory-list-$i.json" "http://127.0.0.1:$port/api/v1/books" &
      pids+=($!)
    done
    for pid in "${pids[@]}"; do wait "$pid" || die "a list of $size books failed (log: $OUT/books-ms-memory.log)"; done
    for ((i = 0; i < ${#pids[@]}; i++)); do
      listed=$(python3 -c 'import json, sys; print(len(json.load(open(sys.argv[1]))))' "$OUT/memory-list-$i.json") ||
        die "a list of $size books is not complete JSON"
      [[ $listed == "$size" ]] || die "a list returned $listed books, expected $size"
    done
  done
  seconds=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
  bytes=$(stat -c %s "$OUT/memory-list-0.json")
  peak_kb=$(status_kb "$SERVICE_PID" VmHWM)
  rows+=("| $size | $bytes | $LISTS ($CONCURRENT at a time) | $seconds | $((idle_kb / 1024)).$(((idle_kb % 1024) * 10 / 1024)) | $((peak_kb / 1024)).$(((peak_kb % 1024) * 10 / 1024)) |")
  stop_service
  rm -f "$OUT"/memory-list-*.json
done

{
  echo "bench-list-memory, $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- service || echo ' + uncommitted service changes'), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "service: $("$SERVICE" --version)"
  echo
  echo "| books | bytes per list | lists | seconds | peak RSS after warm-up, MiB | peak RSS after the lists, MiB |"
  echo "|---:|---:|---|---:|---:|---:|"
  printf '%s\n' "${rows[@]}"
} | tee "$OUT/list-memory.md"
