#!/usr/bin/env bash
# The figures of docs/reliability.md, in one run (the lab up, as root):
#   scripts/reliability-db.sh       the database killed under writes, a list cut
#   scripts/reliability-clients.sh  slow and hostile clients, API fuzzing
#   lab/faults.sh                   secrets, TLS, verify racing a user, lab repair
# Each is bounded and removes what it starts; this stops at the first that
# fails and names it.
set -euo pipefail
cd "$(dirname "$0")/.."

for script in scripts/reliability-db.sh scripts/reliability-clients.sh lab/faults.sh; do
  printf '\n## %s\n' "$script"
  bash "$script" || { printf 'reliability: %s failed (its output is above)\n' "$script" >&2; exit 1; }
done
