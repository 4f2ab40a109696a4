#!/usr/bin/env bash
# The service under database faults, measured (docs/reliability.md, "The
# service under database faults and bad data"): books-ms on loopback in front
# of a database container of this script's own, a bounded stream of PUTs over
# several connections while the container is SIGKILLed and started again
# (KILLS times), every acknowledged PUT read back; then a list cut short by
# the database killed under a slow reader (`books-bench db-faults`).
# Prints one line of JSON: requests sent, writes acknowledged, writes lost
# (goal 0), 500s, 503s by code, the longest 503 window, the time to recover
# after the database answers a ping, and what the cut list's client got.
# Exits 1 when a write was lost, a 500 answered or the cut list looked whole.
#
# Settings (environment): KILLS (3), CONNECTIONS (4), UP_S (3, load before
# each kill), DOWN_S (3, the database down), MAX_REQUESTS (20000),
# LIST_CUT_BOOKS (30000), DB_TIMEOUT_MS (1000, the service's), DB_IMAGE (the
# lab's FerretDB image from lab/lab.env).
# The container (label org.books-ms.reliability) and the service are removed
# on exit, also after a failure or Ctrl-C; every wait has a deadline. The
# service's log is in target/reliability/books-ms.log.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
# shellcheck source=../lab/lab.env
. lab/lab.env
DOCKER=/usr/bin/docker
KILLS=${KILLS:-3} CONNECTIONS=${CONNECTIONS:-4} UP_S=${UP_S:-3} DOWN_S=${DOWN_S:-3}
MAX_REQUESTS=${MAX_REQUESTS:-20000} LIST_CUT_BOOKS=${LIST_CUT_BOOKS:-30000}
DB_TIMEOUT_MS=${DB_TIMEOUT_MS:-1000}
DB_IMAGE=${DB_IMAGE:-$BOOKS_DB_IMAGE}
LABEL=org.books-ms.reliability
NAME=books-ms-reliability-db-$$
OUT=target/reliability
target_dir=${CARGO_TARGET_DIR:-target}

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'reliability-db: error: %s\n' "$*" >&2; exit 1; }

SERVICE_PID=
cleanup() {
  if [[ -n $SERVICE_PID ]]; then
    kill -TERM "$SERVICE_PID" 2>/dev/null || true
    timeout 15 tail --pid="$SERVICE_PID" -f /dev/null || kill -KILL "$SERVICE_PID" 2>/dev/null || true
  fi
  timeout 30 "$DOCKER" rm -f -v "$NAME" >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$OUT"
say "building books-ms and books-bench (debug)"
timeout 1800 cargo build -q -p books-ms -p books-bench
BENCH=$target_dir/debug/books-bench
SERVICE=$target_dir/debug/books-ms

# Containers an earlier, killed run left.
stale=$("$DOCKER" ps -aq --filter "label=$LABEL")
# shellcheck disable=SC2086 # one id per word
[[ -z $stale ]] || timeout 30 "$DOCKER" rm -f -v $stale >/dev/null

DB_PORT=$("$BENCH" free-port)
APP_PORT=$("$BENCH" free-port)
say "database $DB_IMAGE as $NAME on 127.0.0.1:$DB_PORT"
timeout 60 "$DOCKER" run -d --name "$NAME" --label "$LABEL=1" -p "127.0.0.1:$DB_PORT:27017" "$DB_IMAGE" >/dev/null
DB_URI=mongodb://127.0.0.1:$DB_PORT

say "books-ms on 127.0.0.1:$APP_PORT (DB_TIMEOUT_MS=$DB_TIMEOUT_MS)"
LISTEN_ADDR=127.0.0.1:$APP_PORT MONGODB_URI=$DB_URI DB_DBNAME=reliability DB_TIMEOUT_MS=$DB_TIMEOUT_MS \
  STATIC_DIR=client "$SERVICE" >"$OUT/books-ms.log" 2>&1 &
SERVICE_PID=$!
"$BENCH" wait-ready --addr "127.0.0.1:$APP_PORT" --timeout-s 30 >/dev/null || die "books-ms not ready within 30 s"

say "PUT load over $CONNECTIONS connections, the database SIGKILLed $KILLS times (down ${DOWN_S} s each)"
timeout 900 "$BENCH" db-faults --url "http://127.0.0.1:$APP_PORT" --db-uri "$DB_URI" --container "$NAME" \
  --connections "$CONNECTIONS" --kills "$KILLS" --up-s "$UP_S" --down-s "$DOWN_S" --max-requests "$MAX_REQUESTS" \
  --list-cut-db reliability --list-cut-books "$LIST_CUT_BOOKS"
