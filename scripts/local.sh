#!/usr/bin/env bash
# books-ms on this machine only, the way `docker compose up` users run it:
# raises the lab, builds the runtime image, runs it with its database
# (docker-compose.yml), puts a few demo books in an empty collection, and
# prints the URL to open. (The README's first command, scripts/demo.sh,
# ships to the lab's prod host instead.)
# Idempotent: a second run rebuilds only what changed and keeps the data.
#   APP_PORT   host port of the service (default 8080)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:/usr/local/go/bin:$PATH"
# shellcheck source=../lab/lab.env
. lab/lab.env
DOCKER=/usr/bin/docker
APP_PORT=${APP_PORT:-8080}
URL="http://127.0.0.1:$APP_PORT"
say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'local: error: %s\n' "$*" >&2; exit 1; }

say "raising the lab (lab/up.sh)"
bash lab/up.sh

revision=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
if [[ $revision != unknown && -n $(git status --porcelain --untracked-files=no) ]]; then
  revision="$revision-dirty"
fi
version=$(sed -n 's/^version = "\(.*\)"/\1/p' service/Cargo.toml | head -n1)
BOOKS_MS_REVISION=$revision bash scripts/dist.sh

image=books-ms:local
# CREATED is the commit's time, not now: an unchanged tree then gives the
# same image, and docker-compose leaves the running container alone.
say "building $image from Dockerfile"
"$DOCKER" build -q -t "$image" \
  --build-arg VERSION="$version" --build-arg REVISION="$revision" \
  --build-arg CREATED="$(git log -1 --format=%cI 2>/dev/null || echo unknown)" . >/dev/null

say "starting books-ms and its database (docker-compose.yml, project books-ms)"
BOOKS_MS_IMAGE=$image DB_IMAGE=$BOOKS_DB_IMAGE APP_PORT=$APP_PORT \
  docker-compose -p books-ms -f docker-compose.yml up -d

say "waiting for $URL/ready"
deadline=$((SECONDS + 60))
until curl -fsS -m 2 "$URL/ready" >/dev/null 2>&1; do
  ((SECONDS < deadline)) || die "books-ms did not become ready within 60 s; see: docker-compose -p books-ms logs app"
  sleep 0.5
done

bash scripts/seed-demo-books.sh "$URL"

cat <<EOF
books-ms $version ($revision) is running with its database:
  the books app      $URL/
  the API            $URL/api/v1/books
  OpenAPI document   $URL/api/v1/openapi.json
Stop it with: docker-compose -p books-ms -f docker-compose.yml down   (the data volume stays)
EOF
