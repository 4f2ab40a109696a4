#!/usr/bin/env bash
# Figures for docs/reliability.md, "Slow and hostile clients, and API fuzzing":
#
# 1. Slow and hostile clients against the books-ms binary on loopback (the API
#    test `slow_clients`, which asserts the behaviour and prints the figures):
#    300 connections trickling their headers, 300 declaring a 256 KiB body and
#    sending a byte every 200 ms, 100 trickling a second request's headers on
#    a kept-alive connection, all for at most 8 s, while another client PUTs
#    and GETs; the service's peak RSS without the attack, then with it, in the
#    same process.
# 2. API fuzzing: scripts/fuzz-api.sh (schemathesis, all checks and phases).
#
# Needs the lab (lab/up.sh) for the database image. Bounded: the test's own
# deadlines, and scripts/fuzz-api.sh's. Idempotent: everything it starts, it
# removes.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

say() { printf '==> %s\n' "$*" >&2; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

say "slow and hostile clients (cargo test -p books-ms --test api slow_clients)"
timeout 900 cargo test --locked -p books-ms --test api slow_and_hostile_clients -- --nocapture >"$out/slow.log" 2>&1 \
  || { tail -n 40 "$out/slow.log" >&2; echo "reliability-clients: the slow-clients test failed" >&2; exit 1; }
line=$(grep -m1 '^slow-clients:' "$out/slow.log") || { echo "reliability-clients: no figures in the test's output" >&2; exit 1; }

say "stalled readers (cargo test -p books-ms --test api slow_clients::stalled_readers)"
timeout 600 cargo test --locked -p books-ms --test api slow_clients::stalled_readers -- --nocapture >"$out/stalled.log" 2>&1 \
  || { tail -n 40 "$out/stalled.log" >&2; echo "reliability-clients: the stalled-readers test failed" >&2; exit 1; }
stalled=$(grep -m1 '^stalled-readers:' "$out/stalled.log") || { echo "reliability-clients: no stalled-readers figures" >&2; exit 1; }

say "API fuzzing (scripts/fuzz-api.sh)"
bash scripts/fuzz-api.sh 2>&1 | tee "$out/fuzz.log" >/dev/null \
  || { tail -n 60 "$out/fuzz.log" >&2; echo "reliability-clients: fuzzing found failures" >&2; exit 1; }
fuzz=$(grep -m1 '^fuzz: test cases' "$out/fuzz.log" || echo "fuzz: no figures")

echo "Slow and hostile clients (header deadline 1.5 s, body deadline 2 s, keep-alive 5 s; debug binary):"
echo "${line#slow-clients: }" | tr ';' '\n' | sed 's/^ */  /'
echo "Stalled readers of a large list (send deadline 3 s; debug binary):"
echo "${stalled#stalled-readers: }" | tr ';' '\n' | sed 's/^ */  /'
echo "API fuzzing (schemathesis):"
echo "  ${fuzz#fuzz: }"
