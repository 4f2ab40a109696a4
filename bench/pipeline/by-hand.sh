#!/usr/bin/env bash
# The chapter's pipeline done by hand, as a shell script: the baseline that
# scripts/bench-pipeline.sh times beside `harness pipeline`. The same steps
# on the same lab: the pre-deploy tests, the static binary, docker build of
# both images, docker push, docker-compose pull and up -d on prod with
# DOCKER_HOST, then curl checks on ids of their own, removed afterwards.
# What the harness adds (a deploy lock, pull by digest, rollback, the
# revision check, the registry's digest read back) is not here.
#   $1  the checkout to ship (default: the repository this script is in)
# Environment: BYHAND_PROJECT (compose project on prod, default
# books-ms-by-hand), BYHAND_PORT (prod's port, default 8081),
# BYHAND_SERVICE / BYHAND_TESTS (image names, default books-ms-by-hand and
# books-ms-by-hand-tests).
set -euo pipefail
here="$(cd "$(dirname "$0")/../.." && pwd)"
cd "${1:-$here}"
# shellcheck source=../../lab/lab.env
. "$here/lab/lab.env"
# shellcheck source=../../lab/topology.env
. "$here/lab/topology.env"
DOCKER=/usr/bin/docker
REG=$BOOKS_LAB_REGISTRY
TAG=$(git rev-parse --short=12 HEAD)
SERVICE="$REG/${BYHAND_SERVICE:-books-ms-by-hand}:$TAG"
TESTS="$REG/${BYHAND_TESTS:-books-ms-by-hand-tests}:$TAG"
PROJECT=${BYHAND_PROJECT:-books-ms-by-hand}
PORT=${BYHAND_PORT:-8081}
PROD_HOST=${BOOKS_LAB_PROD_DOCKER_HOST#tcp://}
URL="http://${PROD_HOST%:*}:$PORT"

# 1-2. check out (this tree) and the pre-deploy tests
cargo test --locked -p books-ms --lib --test api -- --test-threads 8
# 3. package
BOOKS_MS_REVISION=$TAG bash scripts/dist.sh
# 4. build both images
"$DOCKER" build -q -t "$SERVICE" --build-arg REVISION="$TAG" --build-arg VERSION="$TAG" . >/dev/null
"$DOCKER" build -q -t "$TESTS" -f Dockerfile.test --build-arg RUST_IMAGE="$BOOKS_RUST_IMAGE" . >/dev/null
# 5. push the service image
"$DOCKER" push -q "$SERVICE" >/dev/null
# 6-7. deploy on prod with docker-compose, published on prod's address
(
  export DOCKER_HOST=$BOOKS_LAB_PROD_DOCKER_HOST DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH=$BOOKS_LAB_PROD_CERT_PATH
  export BOOKS_MS_IMAGE=$SERVICE DB_IMAGE=$REG/$BOOKS_DB_IMAGE APP_PORT=$PORT
  # docker-compose is Python: a REQUESTS_CA_BUNDLE in the environment would
  # replace the lab's CA from DOCKER_CERT_PATH, and prod's certificate fail.
  unset REQUESTS_CA_BUNDLE CURL_CA_BUNDLE
  docker-compose -p "$PROJECT" -f docker-compose.yml pull -q
  docker-compose -p "$PROJECT" -f docker-compose.yml up -d
)
deadline=$((SECONDS + 60))
until curl -fsS -m 2 "$URL/ready" >/dev/null 2>&1; do
  ((SECONDS < deadline)) || { echo "by-hand: $URL not ready within 60 s" >&2; exit 1; }
  sleep 0.5
done
# 8. post-deploy checks (the chapter's: PUT three books, GET the list, GET one)
for id in 2147483201 2147483202 2147483203; do
  curl -fsS -m 5 -X PUT -H 'Content-Type: application/json' \
    -d "{\"_id\":$id,\"title\":\"Check $id\",\"author\":\"by hand\"}" "$URL/api/v1/books" >/dev/null
done
list=$(curl -fsS -m 10 "$URL/api/v1/books")
[[ $list == *'"_id":2147483203'* ]] || { echo "by-hand: the list lacks 2147483203" >&2; exit 1; }
one=$(curl -fsS -m 5 "$URL/api/v1/books/_id/2147483202")
[[ $one == *'"title":"Check 2147483202"'* ]] || { echo "by-hand: 2147483202 is not the check's book" >&2; exit 1; }
for id in 2147483201 2147483202 2147483203; do
  curl -fsS -m 5 -X DELETE "$URL/api/v1/books/_id/$id" >/dev/null
done
# 9. push the tests image
"$DOCKER" push -q "$TESTS" >/dev/null
echo "by-hand: $SERVICE live on $URL" >&2
