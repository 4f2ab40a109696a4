#!/usr/bin/env bash
# The harness's and the lab's faults and attacks, reproduced and measured
# (docs/reliability.md, "The harness and the lab"); the tests assert the
# same behaviours, this prints the figures. Needs the lab up and root.
#
#   1. the registry's password searched for in the last pushed tests image
#      (every byte `docker save` writes) and in .harness/
#   2. prod's address answered by a TLS endpoint with another CA's
#      certificate, then with an expired one from the lab's CA
#   3. harness verify racing a user who rewrites the reserved ids
#   4. the lab's certificates broken as an interrupted lab/up.sh leaves
#      them (on a copy), then repaired
#   5. the ways into prod's engine
#
# Usage: lab/faults.sh   (figures on stdout, progress on stderr)
# Everything it starts (a database container labelled books-ms.faults, the
# service, openssl s_server) is stopped by pid or id on exit.
set -euo pipefail

LAB_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(dirname -- "$LAB_DIR")
# shellcheck source=SCRIPTDIR/lab.env
. "$LAB_DIR/lab.env"
say() { printf 'lab/faults: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }
# shellcheck source=SCRIPTDIR/topology.sh
. "$LAB_DIR/topology.sh"
export PATH="$HOME/.cargo/bin:/usr/local/go/bin:$PATH"

[[ $(id -u) -eq 0 ]] || die "run as root (the registry's credentials file is root's)"
read_registry_credentials || die "cannot read $BOOKS_LAB_REGISTRY_CREDENTIALS: is the lab up? (lab/up.sh)"
TARGET=${CARGO_TARGET_DIR:-$REPO_DIR/target}
WORK=$(mktemp -d /tmp/books-faults.XXXXXX)
PIDS=()
CONTAINER=''
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  [[ -z $CONTAINER ]] || "$DOCKER" rm -fv "$CONTAINER" >/dev/null 2>&1 || true
  rm -rf -- "$WORK"
}
trap cleanup EXIT
# The password, for grep -F -f: in a 0600 file, never on a command line.
(umask 077 && printf '%s\n' "$REGISTRY_PASSWORD" >"$WORK/password")

ms() { date +%s%3N; }

say "building the harness and the service (cargo build)"
# One package at a time, as the tests build them (together, cargo would
# unify their features and rebuild the dependencies).
(cd "$REPO_DIR" && cargo build -q -p harness && cargo build -q -p books-ms --bin books-ms)
HARNESS=$TARGET/debug/harness

# ------------------------------------------------------------ 1. secrets
say "1. the registry's password in the last pushed tests image and .harness/"
record=$REPO_DIR/.harness/last-push.json
if [[ -s $record ]]; then
  image="$(jq -r '.tests.image + ":" + .tests.tag' "$record")"
  # One pass: wc counts what grep searches. (grep -c counts lines.)
  found=$(timeout 600 "$DOCKER" save "$image" | tee >(wc -c >"$WORK/bytes") |
    grep -a -c -F -f "$WORK/password" || true)
  for ((i = 0; i < 50; i++)); do [[ -s $WORK/bytes ]] && break; sleep 0.1; done
  echo "secrets: tests image $image: $(cat "$WORK/bytes") bytes searched (docker save), lines with the password: $found"
else
  echo "secrets: no .harness/last-push.json: run harness pipeline first; image not searched"
fi
# A control: the search does find the password where it is.
echo "secrets: control: lines with the password in $BOOKS_LAB_REGISTRY_CREDENTIALS:" \
  "$(grep -a -c -F -f "$WORK/password" "$BOOKS_LAB_REGISTRY_CREDENTIALS")"
files=$(find "$REPO_DIR/.harness" -type f 2>/dev/null | wc -l)
found=$(find "$REPO_DIR/.harness" -type f -print0 2>/dev/null | xargs -0 -r grep -a -l -F -f "$WORK/password" | wc -l || true)
echo "secrets: .harness/: $files files searched, $found holding the password"

# ------------------------------------------------------------ 2. TLS
say "2. a TLS endpoint in prod's place: another CA's certificate, then an expired one of the lab's CA"
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
issue() { # NAME CA CA_KEY DAYS
  key "$WORK/$1-key.pem"
  openssl req -new -key "$WORK/$1-key.pem" -subj "/CN=not prod" 2>/dev/null |
    openssl x509 -req -CA "$2" -CAkey "$3" -CAcreateserial -days "$4" -out "$WORK/$1.pem" \
      -extfile <(printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n') 2>/dev/null
}
key "$WORK/other-ca-key.pem"
openssl req -x509 -new -key "$WORK/other-ca-key.pem" -subj "/CN=another CA" -days 30 -out "$WORK/other-ca.pem" 2>/dev/null
issue foreign "$WORK/other-ca.pem" "$WORK/other-ca-key.pem" 30
issue expired "$TLS_DIR/ca.pem" "$TLS_DIR/ca-key.pem" -1
port=$((20000 + RANDOM % 20000))
for case in foreign expired; do
  openssl s_server -quiet -accept "127.0.0.1:$port" -cert "$WORK/$case.pem" -key "$WORK/$case-key.pem" \
    </dev/null >/dev/null 2>&1 &
  PIDS+=($!)
  for ((i = 0; i < 50; i++)); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
  start=$(ms)
  # The other CA counts as a system root here (SSL_CERT_FILE), as a public
  # CA would: it must not be trusted for prod all the same.
  out=$(SSL_CERT_FILE="$WORK/other-ca.pem" HARNESS_PROD__DOCKER_HOST="tcp://127.0.0.1:$port" \
    timeout 60 "$HARNESS" --repo "$REPO_DIR" status 2>&1 >/dev/null) && code=0 || code=$?
  echo "tls: $case certificate: exit $code after $(($(ms) - start)) ms: $out"
  kill "${PIDS[-1]}" 2>/dev/null || true
  port=$((port + 1))
done

# ------------------------------------------------------------ 3. verify racing a user
say "3. harness verify racing a user who rewrites the reserved ids"
CONTAINER=$("$DOCKER" run -d --label books-ms.faults=1 -p 127.0.0.1::27017 "$BOOKS_DB_IMAGE")
db_port=$("$DOCKER" port "$CONTAINER" 27017/tcp | head -n1 | sed 's/.*://')
app_port=$((port + 10))
url=http://127.0.0.1:$app_port
MONGODB_URI="mongodb://127.0.0.1:$db_port" LISTEN_ADDR="127.0.0.1:$app_port" DB_DBNAME=faults \
  STATIC_DIR="$REPO_DIR/client" "$TARGET/debug/books-ms" >"$WORK/service.log" 2>&1 &
PIDS+=($!)
for ((i = 0; i < 150; i++)); do curl -fs -m 2 "$url/ready" >/dev/null 2>&1 && break; sleep 0.2; done
curl -fs -m 2 "$url/ready" >/dev/null || die "the service did not get ready within 30 s ($WORK/service.log)"
ids=(2147483101 2147483102 2147483103)
# The user: 300 rounds (bounded); on even rounds a PUT of their own book on
# each reserved id, on odd rounds a DELETE of each: the ids are by turns
# free and taken while verify runs. Every answer is kept.
(
  for ((round = 0; round < 300; round++)); do
    for id in "${ids[@]}"; do
      if ((round % 2 == 0)); then
        code=$(curl -s -o /dev/null -w '%{http_code}' -m 5 -X PUT -H 'Content-Type: application/json' \
          -d "{\"_id\":$id,\"title\":\"A user's book\",\"author\":\"U\",\"description\":\"round $round\"}" \
          "$url/api/v1/books")
        echo "$id $round PUT $code"
      else
        code=$(curl -s -o /dev/null -w '%{http_code}' -m 5 -X DELETE "$url/api/v1/books/_id/$id")
        echo "$id $round DELETE $code"
      fi
    done
    sleep 0.02
  done
) >"$WORK/writes" &
writer=$!
PIDS+=("$writer")
runs=0 passed=0
: >"$WORK/refusals"
while kill -0 "$writer" 2>/dev/null && ((runs < 40)); do
  if HARNESS_VERIFY__IDS="[${ids[0]},${ids[1]},${ids[2]}]" timeout 60 "$HARNESS" --repo "$REPO_DIR" \
    verify --url "$url" >/dev/null 2>"$WORK/verify.err"; then
    passed=$((passed + 1))
  else
    sed -n 's/.*check `\([a-z-]*\)` failed.*/\1/p' "$WORK/verify.err" | head -n1 >>"$WORK/refusals"
    grep -q 'was taken by someone else' "$WORK/verify.err" && cp "$WORK/verify.err" "$WORK/taken.err"
  fi
  runs=$((runs + 1))
done
wait "$writer" || true
puts=$(grep -c ' PUT 200$' "$WORK/writes" || true)
deletes=$(grep -c -E ' DELETE (200|404)$' "$WORK/writes" || true)
other=$(grep -c -v -E ' (PUT 200|DELETE 200|DELETE 404)$' "$WORK/writes" || true)
lost=0
for id in "${ids[@]}"; do
  # The user's last word on this id: their book of that round, or none.
  read -r op round < <(awk -v id="$id" '$1 == id { op = $3; r = $2 } END { print op, r }' "$WORK/writes")
  have=$(curl -s -m 5 "$url/api/v1/books/_id/$id")
  if [[ $op == PUT ]]; then
    [[ $(jq -r '.description' <<<"$have") == "round $round" ]] || lost=$((lost + 1))
  else
    [[ $(jq -r '.error // empty' <<<"$have") == book_not_found ]] || lost=$((lost + 1))
  fi
done
echo "verify race: $runs verify runs during the user's $((300 * 3)) requests ($puts PUTs and $deletes DELETEs" \
  "answered as expected, $other otherwise): $passed passed, refused at:" \
  "$(sort "$WORK/refusals" | uniq -c | awk '{ printf "%s%s %s", sep, $1, $2; sep = ", " }')"
echo "verify race: the user's last word on each of the 3 ids lost or changed: $lost"
if ((other > 0)); then
  echo "verify race: the user's other answers: $(grep -v -E ' (PUT 200|DELETE 200|DELETE 404)$' "$WORK/writes" |
    awk '{ print $3, $4 }' | sort | uniq -c | paste -sd,)"
fi
if [[ -s $WORK/taken.err ]]; then
  echo "verify race: a refusal at put: $(head -c 400 "$WORK/taken.err")"
fi

# ------------------------------------------------------------ 4. lab repair
say "4. the lab's certificates as an interrupted lab/up.sh leaves them, on a copy"
for fault in server-key client-cert ca-key; do
  mkdir -p "$WORK/state-$fault"
  cp -a "$TLS_DIR" "$WORK/state-$fault/tls"
  t=$WORK/state-$fault/tls
  case $fault in
  server-key) key "$t/server/key.pem" ;;
  client-cert) printf -- '-----BEGIN' >"$t/client/cert.pem" ;;
  ca-key) key "$t/ca-key.pem" ;;
  esac
  start=$(ms)
  said=$(BOOKS_LAB_DATA_DIR="$WORK/state-$fault" bash "$LAB_DIR/up.sh" certificates 2>&1)
  took=$(($(ms) - start))
  ok=yes
  for pair in "ca.pem ca-key.pem" "server/cert.pem server/key.pem" "swarm-manager/cert.pem swarm-manager/key.pem" \
    "client/cert.pem client/key.pem"; do
    read -r c k <<<"$pair"
    [[ $(openssl x509 -in "$t/$c" -noout -pubkey) == "$(openssl pkey -in "$t/$k" -pubout)" ]] || ok=no
  done
  said=${said#lab/up: }
  echo "lab repair: $fault broken: repaired in $took ms, every key matches its certificate: $ok (${said% in *})"
done

# ------------------------------------------------------------ 5. prod's engine
say "5. the ways into prod's engine"
pid=$(cat "$PROD_PID")
hosts=$(tr '\0' '\n' <"/proc/$pid/cmdline" | awk 'prev == "-H" { print } { prev = $0 }' | paste -sd' ')
echo "prod engine: hosts: $hosts; --tlsverify: $(tr '\0' '\n' <"/proc/$pid/cmdline" | grep -c -x -- --tlsverify)"
