#!/usr/bin/env bash
# API fuzzing from the OpenAPI document: schemathesis (PyPI, pinned below)
# against the books-ms binary on loopback over a database container of the
# lab's image, with all its checks and all its phases (examples, coverage,
# fuzzing, and the stateful phase that follows the document's links: create a
# book, read it, replace it, delete it). Succeeds when schemathesis finds no
# failure: no 5xx but 503, every answer as the document says.
#
# Idempotent: schemathesis is installed once into a virtualenv under
# ${XDG_CACHE_HOME:-~/.cache}/books-ms/ (the second run reuses it); the
# database container is labelled and removed at the end, even on failure.
# Bounded: examples per operation (FUZZ_MAX_EXAMPLES), and the whole run
# (FUZZ_TIMEOUT_SECS). The last lines printed are the figures
# ("fuzz: ..."), which scripts/reliability-clients.sh reports.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

SCHEMATHESIS_VERSION=4.32.5
MAX_EXAMPLES=${FUZZ_MAX_EXAMPLES:-100}
# Random by default (a run prints its seed); FUZZ_SEED replays one.
SEED=${FUZZ_SEED:-}
TIMEOUT_SECS=${FUZZ_TIMEOUT_SECS:-600}
DOCKER=${DOCKER:-/usr/bin/docker}
LABEL=books-ms.fuzz.pid
DB_IMAGE=${BOOKS_DB_IMAGE:-$(sed -n 's/^BOOKS_DB_IMAGE=//p' lab/lab.env)}
BIN=${BOOKS_MS_BIN:-${CARGO_TARGET_DIR:-target}/debug/books-ms}

say() { printf '==> fuzz: %s\n' "$*" >&2; }
die() { printf 'fuzz: error: %s\n' "$*" >&2; exit 1; }

# --- schemathesis in a virtualenv, installed once -----------------------------
cache=${XDG_CACHE_HOME:-$HOME/.cache}/books-ms
venv=$cache/schemathesis-$SCHEMATHESIS_VERSION
# The stamp is written last: an interrupted install is started again, never trusted.
if [[ -f $venv/.installed ]]; then
  say "schemathesis $SCHEMATHESIS_VERSION already installed ($venv)"
else
  say "installing schemathesis $SCHEMATHESIS_VERSION from PyPI into $venv"
  rm -rf "$venv"
  mkdir -p "$cache"
  python3 -m venv "$venv" || die "python3 -m venv failed: install Debian's python3-venv"
  timeout 600 "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION" \
    || die "pip could not install schemathesis==$SCHEMATHESIS_VERSION from PyPI"
  touch "$venv/.installed"
fi

# --- the database and the service ----------------------------------------------
work=$(mktemp -d)
container=""
service_pid=""
cleanup() {
  if [[ -n $service_pid ]]; then
    kill "$service_pid" 2>/dev/null || true
    wait "$service_pid" 2>/dev/null || true
  fi
  if [[ -n $container ]]; then
    "$DOCKER" rm -fv "$container" >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
# Containers of earlier runs whose script is gone (killed outright).
for stale in $("$DOCKER" ps -aq --filter "label=$LABEL" 2>/dev/null); do
  pid=$("$DOCKER" inspect -f "{{index .Config.Labels \"$LABEL\"}}" "$stale" 2>/dev/null || true)
  if [[ -z $pid || ! -d /proc/$pid ]]; then "$DOCKER" rm -fv "$stale" >/dev/null 2>&1 || true; fi
done

say "building the service binary (cargo build -p books-ms)"
cargo build --locked --quiet -p books-ms --bin books-ms
[[ -x $BIN ]] || die "no service binary at $BIN: set BOOKS_MS_BIN or CARGO_TARGET_DIR"

say "starting a database container ($DB_IMAGE)"
container=$("$DOCKER" run -d --label "$LABEL=$$" -p 127.0.0.1::27017 "$DB_IMAGE") \
  || die "could not start $DB_IMAGE: is the lab up (lab/up.sh)?"
db_port=$("$DOCKER" port "$container" 27017/tcp | head -n1 | sed 's/.*://')

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
say "starting books-ms on 127.0.0.1:$port (log: $work/service.log)"
env -i PATH="$PATH" LISTEN_ADDR="127.0.0.1:$port" MONGODB_URI="mongodb://127.0.0.1:$db_port" \
  DB_DBNAME=fuzz STATIC_DIR=client RUST_LOG=warn "$BIN" >"$work/service.log" 2>&1 &
service_pid=$!
url="http://127.0.0.1:$port"
ready=""
for _ in $(seq 1 300); do # 30 s
  if curl -fsS -o /dev/null --max-time 2 "$url/ready"; then ready=1; break; fi
  kill -0 "$service_pid" 2>/dev/null || break
  sleep 0.1
done
[[ -n $ready ]] || { tail -n 20 "$work/service.log" >&2; die "books-ms was not ready within 30 s"; }

# --- the run ---------------------------------------------------------------------
say "schemathesis: all checks, all phases, $MAX_EXAMPLES examples per operation, at most $TIMEOUT_SECS s"
status=0
# From the scratch folder: schemathesis keeps its example database in the
# working directory. One worker: hypothesis parses lambdas' sources with
# `ast`, which Python 3.11 cannot do from two threads at once
# ("AST constructor recursion depth mismatch").
# 503 is the service's documented answer while its database is unavailable
# (with Retry-After): not a server error. Any other 5xx is.
# 412 answers a valid conditional request whose condition is false (a
# create-only PUT on a taken _id, a DELETE whose If-Match names another
# version): the request was well formed, the book's state refused it, as
# with the 404 and 409 that schemathesis expects by default.
cat >"$work/schemathesis.toml" <<'TOML'
[checks.not_a_server_error]
expected-statuses = ["2xx", "3xx", "4xx", "503"]

[checks.positive_data_acceptance]
expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "412", "429", "5xx"]
TOML
(cd "$work" && timeout --kill-after=10 "$TIMEOUT_SECS" "$venv/bin/st" --no-color --config-file "$work/schemathesis.toml" \
  run "$url/api/v1/openapi.json" \
  --checks all \
  --phases examples,coverage,fuzzing,stateful \
  --max-examples "$MAX_EXAMPLES" \
  --request-timeout 10 \
  --workers 1 \
  ${SEED:+--seed "$SEED"} \
  --continue-on-failure \
  --output-truncate true) | tee "$work/st.log" || status=$?

# Figures, from schemathesis's summary: "N generated, M passed" or
# "N generated, M found K unique failures", and the stateful scenarios.
cases=$(grep -A1 '^Test cases:' "$work/st.log" | tail -n1 | sed 's/^ *//')
scenarios=$(grep -m1 'Scenarios:' "$work/st.log" | sed 's/.*Scenarios: *//')
links=$(grep -m1 'API Links:' "$work/st.log" | sed 's/.*API Links: *//')
server_errors=$(grep -c '"level":"ERROR"' "$work/service.log" || true)
printf 'fuzz: test cases: %s; stateful scenarios: %s; links: %s; errors in the service log: %s\n' \
  "${cases:-none}" "${scenarios:-none}" "${links:-none}" "$server_errors" >&2
grep -m5 '"level":"ERROR"' "$work/service.log" >&2 || true
if ((status != 0)); then
  tail -n 20 "$work/service.log" >&2
  die "schemathesis found failures (exit $status): see its report above"
fi
say "no failures"
