#!/usr/bin/env bash
# The README's first command: raises the lab (lab/up.sh: the cd engine, the
# private registry, the prod host), then ships this working tree to prod with
# `harness pipeline`: the chapter's nine steps (check out, test, package,
# build, push, deploy, integrate, verify, push the tests image). Puts three
# demo books in an empty collection and prints the production URL.
# Idempotent: a second run reuses every cache, and leaves prod's container
# alone when it already runs this exact image.
# Arguments go to `harness pipeline` (e.g. --ref main, --source URL --ref TAG).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:/usr/local/go/bin:$PATH"
say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'demo: error: %s\n' "$*" >&2; exit 1; }

say "raising the lab (lab/up.sh)"
bash lab/up.sh

say "building the harness (cargo build -p harness)"
cargo build --locked --quiet -p harness
harness="${CARGO_TARGET_DIR:-target}/debug/harness"

say "shipping to prod (harness pipeline $*)"
"$harness" pipeline "$@"

url=$("$harness" --dry-run --json status | jq -r .url)
[[ -n $url && $url != null ]] || die "cannot read prod's URL from the harness's plan"
bash scripts/seed-demo-books.sh "$url"

cat <<MSG
books-ms runs on prod, deployed and verified by the harness:
  the books app      $url/
  the API            $url/api/v1/books
  OpenAPI document   $url/api/v1/openapi.json
  what runs there    $harness status
MSG
