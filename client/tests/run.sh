#!/usr/bin/env bash
# Runs the browser tests of the web components in headless Chromium against
# the real service and database (see README.md beside this script).
# Installs playwright-core from the lock file only when node_modules is
# missing or older than the lock, so a second run starts at once.
set -euo pipefail
cd "$(dirname "$0")"

stamp=node_modules/.books-ms-lock.sha256
want="$(cat package.json package-lock.json | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "client tests: installing dependencies (npm ci)" >&2
  npm ci --no-audit --no-fund --loglevel=error
  echo "$want" > "$stamp"
else
  echo "client tests: dependencies up to date" >&2
fi

chromium="${CHROMIUM_PATH:-/usr/bin/chromium}"
if [ ! -x "$chromium" ]; then
  echo "client tests: no Chromium at $chromium; install Debian's chromium package or set CHROMIUM_PATH" >&2
  exit 1
fi

mkdir -p artifacts
echo "client tests: running (service: ${BOOKS_MS_BIN:-${CARGO_TARGET_DIR:-target}/debug/books-ms}, database image: ${BOOKS_DB_IMAGE:-books-lab/ferretdb:1.24.2})" >&2
# One file at a time: each starts its own database, service and browser, and
# two cores are busy enough with one of each.
if [ "$#" -eq 0 ]; then set -- ./*.test.js; fi
exec node --test --test-concurrency=1 "$@"
