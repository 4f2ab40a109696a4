#!/usr/bin/env bash
# The README's first command: raises the lab (lab/up.sh: the cd engine, the
# private registry, the prod host) while it builds the harness, then ships
# this working tree to prod with `harness pipeline`: the chapter's nine steps
# (check out, test, package, build, push, deploy, integrate, verify, push the
# tests image). Puts three demo books in an empty collection and prints the
# production URL.
# Idempotent: a second run reuses every cache, and leaves prod's container
# alone when it already runs this exact image.
# Progress: a line at least every 10 s, also when the output is a log.
# Arguments go to `harness pipeline` (e.g. --ref main, --source URL --ref TAG).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:/usr/local/go/bin:$PATH"
# shellcheck source=SCRIPTDIR/heartbeat.sh
. scripts/heartbeat.sh
say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'demo: error: %s\n' "$*" >&2; exit 1; }
started=$SECONDS

# The lab is mostly downloads, debootstrap and image builds, the builds of
# the harness and of what the pipeline compiles are mostly the processor's:
# side by side, the first command takes little more than the longer of the
# two. While the lab comes up: the harness, then (for this working tree, the
# pipeline's default) the pipeline's own compiles, the pre-deploy tests
# ([test] prepare) and the package ([build] package: the static release
# binary), with the exact commands and revision its test and package steps
# use (read from its plan), so that those steps find them built. Nothing is
# pushed or deployed before the pipeline's tests pass. The lab's lines
# start with "lab/up:".
# The system packages first (jq among them, which this script needs), then
# the rest of the lab in the background. The background jobs run in process
# groups of their own: a failure here or Ctrl-C stops them too (the lab is
# idempotent; its next run repairs what a stop left half done).
bash lab/up.sh packages
background=()
stop_background() {
  local pid
  for pid in "${background[@]}"; do
    kill -TERM -- "-$pid" 2>/dev/null || true
  done
}
trap stop_background EXIT
say "raising the lab (lab/up.sh) and building the harness and the service side by side"
setsid bash lab/up.sh >&2 &
lab=$!
background+=("$lab")
jobs_failed=()
with_heartbeat "cargo build -p harness" cargo build --locked -p harness || jobs_failed+=("building the harness")
harness="${CARGO_TARGET_DIR:-target}/debug/harness"
((${#jobs_failed[@]} > 0)) || say "harness built in $((SECONDS - started)) s"
if ((${#jobs_failed[@]} == 0 && $# == 0)); then
  plan=$("$harness" --dry-run --json pipeline) || die "harness --dry-run pipeline failed"
  # The commands of harness.toml as the plan has them ([build] package,
  # [test] prepare), run as its steps run them: sh -c, with the release's
  # HARNESS_VERSION and HARNESS_REVISION.
  export HARNESS_VERSION HARNESS_REVISION
  HARNESS_VERSION=$(jq -r .version.version <<<"$plan")
  HARNESS_REVISION=$(jq -r .version.revision <<<"$plan")
  package_command=$(jq -r '.package_command // empty' <<<"$plan")
  prepare=$(jq -r '.test_prepare // empty' <<<"$plan")
  say "compiling the pre-deploy tests (unless reused) and the package of $HARNESS_REVISION while the lab comes up"
  package=
  if [[ -n $package_command ]]; then
    setsid bash -c '. scripts/heartbeat.sh && with_heartbeat "package: $1" sh -c "$1"' package "$package_command" &
    package=$!
    background+=("$package")
  fi
  # Not when the pipeline will reuse this committed tree's passed tests.
  if [[ -n $prepare && $(jq -r .reused_tree <<<"$plan") == null ]]; then
    with_heartbeat "$prepare" sh -c "$prepare" || jobs_failed+=("compiling the pre-deploy tests ($prepare)")
  fi
  [[ -z $package ]] || wait "$package" || jobs_failed+=("the package command ($package_command)")
  unset HARNESS_VERSION HARNESS_REVISION
fi
wait "$lab" || jobs_failed+=("lab/up.sh")
((${#jobs_failed[@]} == 0)) || die "failed: ${jobs_failed[*]}; the errors are above"
background=()
say "lab up and builds done in $((SECONDS - started)) s"

say "shipping to prod (harness pipeline $*)"
"$harness" pipeline "$@"

url=$("$harness" --dry-run --json status | jq -r .url)
[[ -n $url && $url != null ]] || die "cannot read prod's URL from the harness's plan"
bash scripts/seed-demo-books.sh "$url"

cat <<MSG
books-ms runs on prod, deployed and verified by the harness (in $((SECONDS - started)) s):
  the books app      $url/
  the API            $url/api/v1/books
  OpenAPI document   $url/api/v1/openapi.json
  what runs there    $harness status
MSG
