#!/usr/bin/env bash
# Builds the static release binary of books-ms into dist/books-ms: the one
# artifact the runtime image (Dockerfile) ships. Static (glibc, crt-static),
# so it runs in a `FROM scratch` image; the host target needs no download.
# BOOKS_MS_REVISION, when set, is the git revision baked into /version.
set -euo pipefail
cd "$(dirname "$0")/.."
target=x86_64-unknown-linux-gnu
# A target dir of its own: other RUSTFLAGS than the debug build, and no lock
# contention when a test calls this script from inside `cargo test`. It is
# `dist` inside cargo's target dir (BOOKS_DIST_TARGET_DIR wins).
export CARGO_TARGET_DIR="${BOOKS_DIST_TARGET_DIR:-${CARGO_TARGET_DIR:-$PWD/target}/dist}"
echo "==> building the static release binary (cargo build --release --target $target)" >&2
RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked -p books-ms --target "$target"
mkdir -p dist
# Copied beside, then renamed: a reader of dist/books-ms (an image build)
# sees the old binary or the new one, never a half-written one, also while
# the harness's package step and the image test run this script at once.
partial=$(mktemp -p dist .books-ms.XXXXXX)
trap 'rm -f "$partial"' EXIT
install -m 0755 "$CARGO_TARGET_DIR/$target/release/books-ms" "$partial"
mv -f "$partial" dist/books-ms
echo "==> dist/books-ms ($(du -h dist/books-ms | cut -f1))" >&2
