#!/usr/bin/env bash
# Benchmarks books-ms against the same database loaded directly with the
# driver (bench/, `books-bench`), in one run: GET by id (100 books), the
# list (1,000 books) and PUT (upsert, journaled, majority), each at a few
# connection counts; then prints one table, service beside driver, with the
# ratio of their throughputs. Also: the runtime image's size and the time
# from process start to `/ready` = 200. docs/benchmarks.md records a run.
#
# HTTP load: wrk (Debian's, installed by lab/up.sh): C with one thread, it
# takes less of the 2 cores from the service than a Rust load tool would,
# and its Lua hooks (bench/wrk/books.lua) give PUT bodies and percentiles.
#
# Idempotent: a fresh database container each run (no volume), everything
# it starts is stopped on exit (trap, by pid and container id).
# Settings (environment):
#   BENCH_DURATION     seconds measured per round (default 5)
#   BENCH_ROUNDS       rounds per cell, service and driver alternating; the
#                      table shows each column's median (default 3)
#   BENCH_WARMUP       seconds of unmeasured load before each (default 1)
#   BENCH_CONNECTIONS  connection / task counts for GET and PUT (default "1 8 32 64")
#   BENCH_LIST_CONNECTIONS  the same for the list (default "1 4 16": one list
#                      takes about 0.1 s here, so 32 at once take seconds
#                      each and finish together; a window sees few of them)
#   BENCH_LIST_DURATION  seconds per round for the list (default 2 x BENCH_DURATION)
#   BENCH_OPS          operations to run (default "get list put")
#   BENCH_READY_RUNS   start-to-ready samples (default 7)
#   BENCH_RUST_LOG     the service's RUST_LOG during the run (default warn:
#                      see docs/benchmarks.md for what info costs)
#   BENCH_SKIP_IMAGE   1: do not build the runtime image to measure its size
#   BENCH_SKIP_LAB_UP  1: do not run lab/up.sh (the lab is up already; only
#                      the local engine and the database image are used)
#   BENCH_SERVICE_BIN  another books-ms binary to measure (an older build, for
#                      a before/after comparison in one run of the driver)
# Binaries are built in and run from $CARGO_TARGET_DIR (default target).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:/usr/local/go/bin:$PATH"
# shellcheck source=../lab/lab.env
. lab/lab.env
DOCKER=/usr/bin/docker

DURATION=${BENCH_DURATION:-5}
ROUNDS=${BENCH_ROUNDS:-3}
WARMUP=${BENCH_WARMUP:-1}
CONNECTIONS=${BENCH_CONNECTIONS:-"1 8 32 64"}
LIST_CONNECTIONS=${BENCH_LIST_CONNECTIONS:-"1 4 16"}
LIST_DURATION=${BENCH_LIST_DURATION:-$((2 * DURATION))}
OPS=${BENCH_OPS:-"get list put"}
READY_RUNS=${BENCH_READY_RUNS:-7}
SERVICE_LOG_LEVEL=${BENCH_RUST_LOG:-warn}
OUT=target/bench
LABEL=org.books-ms.bench
GET_BOOKS=100
LIST_BOOKS=1000
PUT_BOOKS=100
BENCH=${CARGO_TARGET_DIR:-target}/release/books-bench
SERVICE=${BENCH_SERVICE_BIN:-${CARGO_TARGET_DIR:-target}/release/books-ms}

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'bench: error: %s\n' "$*" >&2; exit 1; }

# shellcheck source=scripts/bench-processes.sh
. scripts/bench-processes.sh

# Starts the release binary against database $1 on port $2 (stdout appended
# to $OUT/books-ms.log); sets SERVICE_PID.
start_service() {
  LISTEN_ADDR=127.0.0.1:$2 MONGODB_URI=$DB_URI DB_DBNAME=$1 STATIC_DIR=client \
    RUST_LOG=$SERVICE_LOG_LEVEL "$SERVICE" >>"$OUT/books-ms.log" 2>&1 &
  SERVICE_PID=$!
}

# The seed and the load tools write the same book for an id.
DESCRIPTION="A book written for the benchmark; its description is about as long as a real one, a couple of sentences of plain text."
book_json() { printf '{"_id":%d,"title":"Book %d","author":"Author %d","description":"%s"}' "$1" "$1" "$1" "$DESCRIPTION"; }

# PUTs books 1..$2 through the API at port $1 with one curl (one connection,
# a config block per book), then checks that the list holds exactly them.
seed() {
  local port=$1 count=$2 config=$OUT/seed.curl id body ok listed
  : >"$config"
  for ((id = 1; id <= count; id++)); do
    body=$(book_json "$id")
    # `next` separates blocks; one after the last would start an empty one.
    ((id == 1)) || echo next >>"$config"
    printf 'url = "http://127.0.0.1:%s/api/v1/books"\nrequest = "PUT"\nheader = "Content-Type: application/json"\ndata = "%s"\noutput = "/dev/null"\nwrite-out = "%%{http_code}\\n"\nmax-time = 10\n' \
      "$port" "${body//\"/\\\"}" >>"$config"
  done
  ok=$(timeout 300 curl -sS -K "$config" | grep -c '^200$' || true)
  [[ $ok == "$count" ]] || die "seeding: $ok of $count PUTs answered 200 (service log: $OUT/books-ms.log)"
  listed=$(curl -fsS -m 30 "http://127.0.0.1:$port/api/v1/books" | grep -o '"_id":' | wc -l)
  [[ $listed == "$count" ]] || die "seeding: the list holds $listed books, expected $count"
}

# Runs wrk: op $1 over $2 books, $3 connections, $4 seconds, and prints its
# line "WRK requests duration_us errors p50_us p99_us max_us p999_us". wrk closes
# its connections at the end of a run, but the service finishes what it had
# in flight (up to the run's slowest request: seconds for a list at 32
# connections); wait that long, so that work does not load the next run.
# (It matters on FerretDB too: a cursor dies with the connection that opened
# it, and the driver closes the connection of an operation cut short, so
# lists cut short would break other lists of the next run.)
wrk_run() {
  local line drain
  line=$(timeout $(($4 + 30)) wrk -t1 -c"$3" -d"$4s" --timeout 10s -s bench/wrk/books.lua \
    "http://127.0.0.1:$PORT" -- "$1" "$2" | grep '^WRK ') || die "wrk failed ($1, $3 connections)"
  drain=$(awk '{ d = $7 / 1e6; printf "%.3f", (d > 10 ? 10 : d) }' <<<"$line")
  sleep "$drain"
  echo "$line"
}

# The measured HTTP run; prints "req_per_s p50_ms p99_ms errors p999_ms".
http_load() {
  wrk_run "$@" | awk '{ printf "%.1f %.2f %.2f %d %.2f\n", ($2 - $4) / ($3 / 1e6), $5 / 1000, $6 / 1000, $4, $8 / 1000 }'
}

# It exits 1 when some operations failed, yet still prints its line: the
# errors column says so.
driver_load() {
  local line
  line=$(timeout $((WARMUP + $4 + 60)) "$BENCH" run --uri "$DB_URI" --db "bench_$1" --op "$1" --books "$2" \
    --concurrency "$3" --duration-s "$4" --warmup-s "$WARMUP" --tsv) || [[ -n $line ]] ||
    die "books-bench failed ($1, $3 tasks)"
  awk -F'\t' '{ printf "%.1f %.2f %.2f %d %.2f\n", $1, $2, $3, $4, $6 }' <<<"$line"
}

# Per column of "rps p50 p99 errors p999" lines: the medians, and the errors summed.
column_medians() {
  local lines
  lines=$(cat)
  printf '%s %s %s %s %s\n' "$(cut -d' ' -f1 <<<"$lines" | median)" "$(cut -d' ' -f2 <<<"$lines" | median)" \
    "$(cut -d' ' -f3 <<<"$lines" | median)" "$(cut -d' ' -f4 <<<"$lines" | awk '{ n += $1 } END { print n + 0 }')" \
    "$(cut -d' ' -f5 <<<"$lines" | median)"
}

median() { sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.1f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

mkdir -p "$OUT"
: >"$OUT/books-ms.log"
# Two benchmarks at once would measure each other.
exec 8>"$OUT/bench.lock"
flock -w 900 8 || die "another scripts/bench.sh holds $OUT/bench.lock"

if [[ ${BENCH_SKIP_LAB_UP:-0} == 1 ]]; then
  "$DOCKER" image inspect "$BOOKS_DB_IMAGE" >/dev/null 2>&1 ||
    die "BENCH_SKIP_LAB_UP=1 but the database image $BOOKS_DB_IMAGE is missing: run lab/up.sh"
else
  say "raising the lab (lab/up.sh)"
  bash lab/up.sh
fi

# A run killed before its trap (SIGKILL) leaves its database container:
# only this script sets the label, and the lock says no other run is live.
stale=$("$DOCKER" ps -aq --filter "label=$LABEL")
if [[ -n $stale ]]; then
  say "removing database containers left by an earlier run: $stale"
  # shellcheck disable=SC2086 # one id per word
  timeout 60 "$DOCKER" rm -f $stale >/dev/null
fi

say "building release binaries (books-ms, books-bench)"
timeout 1800 cargo build --release --locked -p books-ms -p books-bench

ferretdb_mb=$("$DOCKER" image inspect -f '{{.Size}}' "$BOOKS_DB_IMAGE" | awk '{ printf "%.1f MB", $1 / 1e6 }')
if [[ ${BENCH_SKIP_IMAGE:-0} == 1 ]]; then
  image_mb="not measured (BENCH_SKIP_IMAGE=1)"
else
  say "building the runtime image (scripts/dist.sh, then Dockerfile) to measure its size"
  timeout 1800 bash scripts/dist.sh
  timeout 600 "$DOCKER" build -q -t books-ms:bench . >/dev/null
  image_mb=$("$DOCKER" image inspect -f '{{.Size}}' books-ms:bench | awk '{ printf "%.1f MB", $1 / 1e6 }')
  # Only the size was wanted; the tag goes, the layers stay in the cache.
  "$DOCKER" image rm books-ms:bench >/dev/null
fi

say "starting a database container ($BOOKS_DB_IMAGE, loopback only)"
DB_CID=$("$DOCKER" run -d --rm --label "$LABEL" -p 127.0.0.1::27017 "$BOOKS_DB_IMAGE")
db_port=$("$DOCKER" port "$DB_CID" 27017/tcp | head -n1 | sed 's/.*://')
[[ $db_port =~ ^[0-9]+$ ]] || die "no published port for the database container ($DB_CID)"
DB_URI=mongodb://127.0.0.1:$db_port

say "start to /ready: $READY_RUNS runs, polling every 5 ms"
ready_ms=()
# Run 0 is not counted: it waits for the new database container to accept
# connections, and it brings the binary into the page cache.
for ((run = 0; run <= READY_RUNS; run++)); do
  PORT=$("$BENCH" free-port)
  t0=$EPOCHREALTIME
  start_service bench_ready "$PORT"
  "$BENCH" wait-ready --addr "127.0.0.1:$PORT" --interval-ms 5 --timeout-s 30 >/dev/null ||
    die "books-ms did not become ready (log: $OUT/books-ms.log)"
  t1=$EPOCHREALTIME
  stop_service
  ((run == 0)) || ready_ms+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", (b - a) * 1000 }')")
done
ready_median=$(printf '%s\n' "${ready_ms[@]}" | median)
say "start to /ready (ms): ${ready_ms[*]}; median $ready_median"

results=()
: >"$OUT/rounds.txt"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for op in $OPS; do
  case $op in
    get) books=$GET_BOOKS conn_counts=$CONNECTIONS seconds=$DURATION ;;
    list) books=$LIST_BOOKS conn_counts=$LIST_CONNECTIONS seconds=$LIST_DURATION ;;
    put) books=$PUT_BOOKS conn_counts=$CONNECTIONS seconds=$DURATION ;;
    *) die "BENCH_OPS: unknown operation '$op' (get, list, put)" ;;
  esac
  PORT=$("$BENCH" free-port)
  start_service "bench_$op" "$PORT"
  "$BENCH" wait-ready --addr "127.0.0.1:$PORT" --timeout-s 30 >/dev/null || die "books-ms did not become ready"
  say "$op: seeding $books books in database bench_$op through the API"
  seed "$PORT" "$books"
  for conns in $conn_counts; do
    say "$op: $conns connections: $ROUNDS rounds of service (wrk) then driver (books-bench), $seconds s each"
    # Alternating rounds: load from elsewhere on the machine falls on both sides.
    http_runs=() driver_runs=()
    for ((round = 1; round <= ROUNDS; round++)); do
      wrk_run "$op" "$books" "$conns" "$WARMUP" >/dev/null
      http_runs+=("$(http_load "$op" "$books" "$conns" "$seconds")")
      driver_runs+=("$(driver_load "$op" "$books" "$conns" "$seconds")")
      printf '%s x%s round %s: service %s | driver %s | load %s\n' "$op" "$conns" "$round" \
        "${http_runs[-1]}" "${driver_runs[-1]}" "$(cut -d' ' -f1 /proc/loadavg)" >>"$OUT/rounds.txt"
    done
    read -r h_rps h_p50 h_p99 h_err h_p999 <<<"$(printf '%s\n' "${http_runs[@]}" | column_medians)"
    read -r d_rps d_p50 d_p99 d_err d_p999 <<<"$(printf '%s\n' "${driver_runs[@]}" | column_medians)"
    ((h_err == 0 && d_err == 0)) || say "warning: $op x$conns: $h_err HTTP errors, $d_err driver errors"
    ratio=$(awk -v h="$h_rps" -v d="$d_rps" 'BEGIN { printf "%.2f", (d > 0 ? h / d : 0) }')
    tail_ratio=$(awk -v h="$h_p99" -v d="$d_p99" 'BEGIN { printf "%.2f", (d > 0 ? h / d : 0) }')
    results+=("| $op | $books | $conns | $h_rps | $h_p50 | $h_p99 | $h_p999 | $d_rps | $d_p50 | $d_p99 | $d_p999 | $ratio | $tail_ratio | $h_err / $d_err |")
  done
  stop_service
done

{
  echo "books-ms benchmark, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n1))"
  echo "service RUST_LOG=$SERVICE_LOG_LEVEL; median of $ROUNDS rounds of $DURATION s (list: $LIST_DURATION s), each after $WARMUP s of warm-up; database $BOOKS_DB_IMAGE"
  echo "load average (1, 5, 15 min) before the loads: $load_before; after: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
  echo "| operation | books | connections | service req/s | p50 ms | p99 ms | p99.9 ms | driver ops/s | p50 ms | p99 ms | p99.9 ms | service ÷ driver | p99 ÷ driver p99 | errors (service / driver) |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  printf '%s\n' "${results[@]}"
  echo
  echo "runtime image books-ms: $image_mb (reference: $BOOKS_DB_IMAGE $ferretdb_mb)"
  echo "start to /ready: median $ready_median ms of $READY_RUNS (${ready_ms[*]})"
  echo
  echo "every round: $OUT/rounds.txt (req/s p50 p99 errors p99.9)"
} | tee "$OUT/results.md"
