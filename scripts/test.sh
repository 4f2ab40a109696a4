#!/usr/bin/env bash
# The README's test command: checks formatting and lints, raises the lab
# (packages, Docker engine, local images), builds every workspace package
# alone (so that no package leans on a feature that only another package or
# a dev-dependency turns on), then runs every test: the
# workspace's unit, API and image tests (cargo test), the API fuzzing from the
# OpenAPI document (schemathesis) and the web components' browser tests
# (headless Chromium).
# Idempotent; the second run reuses the lab and the build caches.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:/usr/local/go/bin:$PATH"
# shellcheck source=SCRIPTDIR/heartbeat.sh
. scripts/heartbeat.sh

say() { printf '==> %s\n' "$*" >&2; }

# The API tests keep one database container per test binary for the life of
# the process; remove what this run left, even when a test failed.
cleanup() {
  local ids
  ids=$(/usr/bin/docker ps -aq --filter label=books-ms.tests.pid 2>/dev/null || true)
  if [[ -n $ids ]]; then
    # shellcheck disable=SC2086 # one id per word
    /usr/bin/docker rm -fv $ids >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT

say "formatting and lints (cargo fmt --check, cargo clippy -D warnings)"
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings

say "raising the lab (lab/up.sh)"
bash lab/up.sh

# Each with only the features its own Cargo.toml names: a workspace build
# unifies features across packages and their dev-dependencies, which once
# hid a missing one from every build but `cargo build -p harness`.
mapfile -t packages < <(cargo metadata --no-deps --format-version 1 --locked | jq -r '.packages[].name')
((${#packages[@]} > 0)) || { printf 'test: error: cargo metadata listed no package\n' >&2; exit 1; }
for package in "${packages[@]}"; do
  say "building $package alone (cargo build -p $package)"
  with_heartbeat "cargo build -p $package" cargo build --locked -p "$package"
done

# --no-fail-fast: a failing binary does not hide the verdicts of the rest.
say "unit, API and image tests (cargo test --workspace)"
cargo test --workspace --locked --no-fail-fast

say "API fuzzing from the OpenAPI document (scripts/fuzz-api.sh: schemathesis)"
bash scripts/fuzz-api.sh

say "browser tests of the web components (client/tests/run.sh)"
cargo build --locked -p books-ms --bin books-ms
bash client/tests/run.sh
say "all tests passed"
