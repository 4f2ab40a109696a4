#!/usr/bin/env bash
# A node lost under load, on the lab's swarm, with the docker CLI alone: the
# proxy settings that keep every request answering while a machine goes
# away. Prints the figures; leaves nothing behind (its services, config and
# network are removed on exit, the lost node's link is brought back).
#
# What it runs (names prefixed swarm-faults-, labelled books-lab.swarm-faults):
#   - the database: the lab's FerretDB image, one replica pinned to node 1;
#   - the app: books-ms from the lab's registry, 2 replicas, at most one per
#     node, endpoint_mode dnsrr, not published;
#   - the proxy: the lab's HAProxy image as a global service, its port 8080
#     published on PORT (8089) with mode host on every node, finding the app's tasks through
#     the swarm's DNS (resolvers on 127.0.0.11, server-template on
#     tasks.<app>), fast health checks, retry-on + option redispatch.
# Then a bounded load (CONNECTIONS keep-alive connections, GET LOAD_PATH,
# DURATION seconds) through node PROXY_NODE's proxy; LOSE_AFTER seconds in,
# node LOSE_NODE's link is taken down (lab/swarm.sh link-down). It reports
# failed requests, the longest answer, when the manager saw the node Down and
# when the app ran 2 replicas again.
#
# SCENARIO=update runs, instead of the node's loss, a rolling update of the
# app to UPDATE_TAG (start-first, one task at a time) under the same load.
#
# Usage: lab/swarm-faults.sh   (as root; the swarm up: lab/swarm.sh up)
#   IMAGE_TAG=latest DURATION=45 LOSE_AFTER=8 CONNECTIONS=2 PROXY_NODE=1 LOSE_NODE=3 PORT=8089 RETRY_ON=...
#   SERVER_EXTRA=... SCENARIO=lose-node|update UPDATE_TAG=... LOAD_PATH=/api/v1/books
set -euo pipefail

LAB_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=SCRIPTDIR/lab.env
. "$LAB_DIR/lab.env"
# shellcheck source=SCRIPTDIR/swarm.sh
. "$LAB_DIR/swarm.sh"

say() { printf 'swarm-faults: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

: "${IMAGE_TAG:=latest}" "${DURATION:=45}" "${LOSE_AFTER:=8}" "${CONNECTIONS:=2}"
: "${PROXY_NODE:=1}" "${LOSE_NODE:=3}"
# The port the proxy publishes on every node (mode host): apart from the
# harness's 8080, so that a deploy on the swarm and this script never share it.
: "${PORT:=8089}"
# HAProxy's retry-on (RETRY_ON=conn-failure is HAProxy's default, to compare),
# and more options for every server (SERVER_EXTRA, e.g. "observe layer4
# error-limit 1 on-error mark-down").
: "${SERVER_EXTRA:=}"
# SCENARIO=update: instead of losing a node, a rolling update of the app to
# UPDATE_TAG (start-first, one task at a time) under the same load.
: "${SCENARIO:=lose-node}" "${UPDATE_TAG:=}"
# What the load asks for: the list reads the database (pinned to node 1).
: "${LOAD_PATH:=/api/v1/books}"
: "${RETRY_ON:=conn-failure empty-response response-timeout 502 503 504}"
PREFIX=swarm-faults
LABEL=books-lab.swarm-faults
NET=$PREFIX-net
DB=$PREFIX-db
APP=$PREFIX-app
PROXY=$PREFIX-proxy
CONFIG=$PREFIX-haproxy-$$
APP_IMAGE=$BOOKS_LAB_REGISTRY/books-ms:$IMAGE_TAG
WORK=$(mktemp -d /tmp/swarm-faults.XXXXXX)

cleanup() {
  set +e
  ip link set "$(swarm_veth "$LOSE_NODE")" up 2>/dev/null
  manager_docker service rm "$PROXY" "$APP" "$DB" >/dev/null 2>&1
  # Tasks stop, then their network and config can go (bounded).
  local i
  for ((i = 0; i < 40; i++)); do
    manager_docker network rm "$NET" >/dev/null 2>&1 && break
    sleep 0.5
  done
  manager_docker config rm "$CONFIG" >/dev/null 2>&1
  rm -rf -- "$WORK"
}

haproxy_config() {
  cat <<EOF
global
    log stdout format raw local0 info
    stats socket /run/haproxy/admin.sock mode 600 level admin
    hard-stop-after 30s

defaults
    mode http
    log global
    option httplog
    option dontlog-normal
    # Within one data centre a connect takes well under a millisecond: a
    # lost machine is a connect that never completes.
    timeout connect 500ms
    timeout client 30s
    # An answer that stops coming (its machine gone mid-request) is
    # retried elsewhere after this long; books-ms answers in milliseconds.
    timeout server 3s
    timeout http-request 5s
    timeout http-keep-alive 15s
    timeout check 500ms
    # Every retry goes to another server (redispatch 1), on a failed
    # connect, a connection closed without an answer, an answer that never
    # came, or a 502/503/504.
    retries 3
    option redispatch 1
    retry-on $RETRY_ON

resolvers docker
    nameserver dns 127.0.0.11:53
    accepted_payload_size 8192
    resolve_retries 3
    timeout resolve 1s
    timeout retry 1s
    hold valid 1s
    hold obsolete 1s
    hold nx 1s
    hold other 1s
    hold refused 1s
    hold timeout 1s

frontend books_ms
    bind :8080
    default_backend app

backend app
    balance roundrobin
    option httpchk
    http-check send meth GET uri /health
    # A server is out after 2 failed checks 250 ms apart once the first
    # failed, back after 2 good ones.
    default-server check inter 1s fastinter 250ms downinter 1s fall 2 rise 2 resolvers docker init-addr none $SERVER_EXTRA
    server-template app 4 tasks.$APP:8080
EOF
}

# Task states of the app: "NODE_LABEL STATE" lines, for the running ones.
app_tasks() {
  local ids
  ids=$(manager_docker service ps -q --filter desired-state=running "$APP" 2>/dev/null) || return 0
  [[ -n $ids ]] || return 0
  # shellcheck disable=SC2086 # one id per word
  manager_docker inspect $ids 2>/dev/null | jq -r '.[] | "\(.NodeID) \(.Status.State)"' |
    while read -r node state; do
      printf '%s %s\n' "$(manager_docker node inspect --format '{{index .Spec.Labels "books-lab.node"}}' "$node")" "$state"
    done
}

# The load: CONNECTIONS keep-alive connections for DURATION seconds, each
# request bounded by a 10 s timeout; one JSON line of figures on stdout.
load() {
  python3 - "$1" "$DURATION" "$CONNECTIONS" "$LOAD_PATH" <<'EOF'
import http.client, json, sys, threading, time
host, port = sys.argv[1].rsplit(":", 1)
duration, connections, path = float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
end = time.monotonic() + duration
lock = threading.Lock()
figures = {"requests": 0, "failed": 0, "errors": {}, "longest_ms": 0.0, "failures_at_s": []}
start = time.monotonic()

def worker():
    conn = None
    while time.monotonic() < end:
        t0 = time.monotonic()
        error = None
        try:
            if conn is None:
                conn = http.client.HTTPConnection(host, int(port), timeout=10)
            conn.request("GET", path)
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                error = str(response.status)
        except Exception as e:  # a timeout, a reset: a failed request
            error = type(e).__name__
            conn.close()
            conn = None
        elapsed = (time.monotonic() - t0) * 1000
        with lock:
            figures["requests"] += 1
            figures["longest_ms"] = max(figures["longest_ms"], elapsed)
            if error:
                figures["failed"] += 1
                figures["errors"][error] = figures["errors"].get(error, 0) + 1
                figures["failures_at_s"].append(round(t0 - start, 2))
        time.sleep(0.01)

threads = [threading.Thread(target=worker) for _ in range(connections)]
for t in threads:
    t.start()
for t in threads:
    t.join()
figures["longest_ms"] = round(figures["longest_ms"], 1)
print(json.dumps(figures))
EOF
}

# What the proxy on PROXY_NODE logged (dontlog-normal: errors, retries,
# redispatches), counted, and its last lines.
proxy_log_summary() {
  local proxy_container
  proxy_container=$(node_docker "$PROXY_NODE" ps -q --filter "label=com.docker.swarm.service.name=$PROXY")
  [[ -n $proxy_container ]] || return 0
  node_docker "$PROXY_NODE" logs "$proxy_container" >"$WORK/proxy.log" 2>&1 || true
  if [[ -s $WORK/proxy.log ]]; then
    # httplog's "actconn/feconn/beconn/srv_conn/retries" ends "+N" when the
    # request was redispatched to another server.
    # (httplog: CLIENT [DATE] FRONTEND BACKEND/SERVER TIMERS STATUS ...)
    echo "swarm-$PROXY_NODE's proxy: $(grep -c '/+[0-9]* ' "$WORK/proxy.log" || true) request(s) redispatched," \
      "$(awk '$6 ~ /^[0-9]+$/ && $6 != 200' "$WORK/proxy.log" | wc -l) answered other than 200;" \
      "its last lines (normal requests are not logged):"
    grep -v '^\[' "$WORK/proxy.log" | tail -n 12
  fi
}

main() {
  [[ $(id -u) -eq 0 ]] || die "run as root"
  export PATH="/usr/local/sbin:/usr/sbin:/sbin:$PATH"
  swarm_check_count
  swarm_check_node "$PROXY_NODE"
  swarm_check_node "$LOSE_NODE"
  ((PROXY_NODE != LOSE_NODE)) || die "load the proxy of a node other than the lost one (PROXY_NODE, LOSE_NODE)"
  if ((LOSE_NODE == 1)) && [[ $SCENARIO == lose-node ]]; then
    say "losing the manager: nothing can be asked of the swarm until it is back; the database runs there:" \
      "load a path that needs none (LOAD_PATH=/version)"
  fi
  ((SWARM_NODES >= 3)) || die "needs 3 nodes or more (BOOKS_LAB_SWARM_NODES)"
  case $SCENARIO in
  lose-node) ;;
  update) [[ -n $UPDATE_TAG && $UPDATE_TAG != "$IMAGE_TAG" ]] || die "SCENARIO=update needs UPDATE_TAG, a tag other than $IMAGE_TAG" ;;
  *) die "SCENARIO='$SCENARIO': lose-node or update" ;;
  esac
  swarm_status >/dev/null || die "the swarm is not up with every node Ready: run lab/swarm.sh up"
  trap cleanup EXIT
  cleanup
  WORK=$(mktemp -d /tmp/swarm-faults.XXXXXX)

  manager_docker network create --driver overlay --label "$LABEL" "$NET" >/dev/null
  haproxy_config >"$WORK/haproxy.cfg"
  manager_docker config create --label "$LABEL" "$CONFIG" "$WORK/haproxy.cfg" >/dev/null
  say "database, app ($APP_IMAGE, 2 replicas) and proxy (global) starting"
  manager_docker service create --quiet --detach --with-registry-auth --name "$DB" --label "$LABEL" \
    --network "$NET" --endpoint-mode dnsrr \
    --constraint "node.labels.books-lab.node==swarm-1" \
    "$BOOKS_LAB_REGISTRY/$BOOKS_DB_IMAGE" >/dev/null
  manager_docker service create --quiet --detach --with-registry-auth --name "$APP" --label "$LABEL" \
    --network "$NET" --endpoint-mode dnsrr --replicas 2 --replicas-max-per-node 1 \
    --update-parallelism 1 --update-order start-first --update-failure-action rollback \
    --env DB_HOST="$DB" \
    "$APP_IMAGE" >/dev/null
  manager_docker service create --quiet --detach --with-registry-auth --name "$PROXY" --label "$LABEL" \
    --network "$NET" --mode global \
    --publish "mode=host,target=8080,published=$PORT" \
    --config "source=$CONFIG,target=/etc/haproxy/haproxy.cfg" \
    "$BOOKS_LAB_REGISTRY/$BOOKS_PROXY_IMAGE" >/dev/null

  local url i tasks
  url="$(swarm_addr "$PROXY_NODE"):$PORT"
  for ((i = 0; i < 180; i++)); do
    tasks=$(app_tasks)
    # The proxy on PROXY_NODE must be this script's (the port taken by
    # anything else leaves its task Pending).
    if [[ $(grep -c ' running$' <<<"$tasks") -eq 2 ]] &&
      [[ -n $(node_docker "$PROXY_NODE" ps -q --filter "label=com.docker.swarm.service.name=$PROXY" --filter status=running) ]] &&
      [[ $(curl -s -o /dev/null -w '%{http_code}' --noproxy '*' --max-time 2 "http://$url/api/v1/books") == 200 ]]; then
      break
    fi
    ((i < 179)) || die "the app did not answer through its proxy on $url within 90 s (is port $PORT taken on swarm-$PROXY_NODE? PORT=... picks another)"
    sleep 0.5
  done
  say "the app's tasks: $(tr '\n' ',' <<<"$tasks")"
  grep -q "^swarm-$LOSE_NODE " <<<"$tasks" ||
    say "note: no app task on swarm-$LOSE_NODE; its loss only takes its proxy away"
  # Both replicas answering, in the proxy's view too (its checks).
  sleep 3

  if [[ $SCENARIO == update ]]; then
    say "load: $CONNECTIONS connections through http://$url for ${DURATION}s; the app updated to $UPDATE_TAG at ${LOSE_AFTER}s"
    load "$url" >"$WORK/load.json" &
    local load_pid=$! t0=$SECONDS updated_at='' state
    sleep "$LOSE_AFTER"
    local started=$SECONDS
    manager_docker service update --quiet --detach --with-registry-auth \
      --image "$BOOKS_LAB_REGISTRY/books-ms:$UPDATE_TAG" "$APP" >/dev/null
    while kill -0 "$load_pid" 2>/dev/null && ((SECONDS - t0 < DURATION + 15)); do
      if [[ -z $updated_at ]]; then
        state=$(manager_docker service inspect --format '{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}' "$APP")
        [[ $state != completed ]] || updated_at=$((SECONDS - started))
      fi
      sleep 1
    done
    wait "$load_pid" || die "the load failed"
    echo "load through swarm-$PROXY_NODE's proxy, the app updated from $IMAGE_TAG to $UPDATE_TAG at ${LOSE_AFTER}s: $(<"$WORK/load.json")"
    echo "the update: ${updated_at:-not completed (within the run)} s; state $(manager_docker service inspect --format '{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}' "$APP")"
    proxy_log_summary
    return
  fi
  say "load: $CONNECTIONS connections through http://$url for ${DURATION}s; swarm-$LOSE_NODE's link down at ${LOSE_AFTER}s"
  load "$url" >"$WORK/load.json" &
  local load_pid=$! t0=$SECONDS down_at='' back_at='' node_state
  sleep "$LOSE_AFTER"
  ip link set "$(swarm_veth "$LOSE_NODE")" down
  local lost=$SECONDS
  # Watch the manager (bounded by the load's duration), unless it is the
  # node lost.
  while ((LOSE_NODE != 1)) && kill -0 "$load_pid" 2>/dev/null && ((SECONDS - t0 < DURATION + 15)); do
    if [[ -z $down_at ]]; then
      node_state=$(swarm_nodes | awk -v n="swarm-$LOSE_NODE" '$1 == n { print $4 }')
      [[ $node_state != down ]] || down_at=$((SECONDS - lost))
    fi
    if [[ -n $down_at && -z $back_at ]]; then
      tasks=$(app_tasks)
      if [[ $(grep -c ' running$' <<<"$tasks") -eq 2 ]] && ! grep -q "^swarm-$LOSE_NODE " <<<"$tasks"; then
        back_at=$((SECONDS - lost))
      fi
    fi
    sleep 1
  done
  wait "$load_pid" || die "the load failed"
  local tasks_during=''
  ((LOSE_NODE != 1)) || tasks_during=$(node_docker "$PROXY_NODE" ps --format '{{.Names}}' | sort | tr '\n' ' ')
  ip link set "$(swarm_veth "$LOSE_NODE")" up
  say "swarm-$LOSE_NODE: link up again"
  if ((LOSE_NODE == 1)); then
    echo "containers on swarm-$PROXY_NODE while the manager was away: $tasks_during"
    swarm_await_ready
  fi
  echo "load through swarm-$PROXY_NODE's proxy, swarm-$LOSE_NODE lost at ${LOSE_AFTER}s: $(<"$WORK/load.json")"
  echo "manager saw swarm-$LOSE_NODE down after ${down_at:-never (within the run)} s; 2 app replicas running elsewhere after ${back_at:-never (within the run)} s"
  echo "app tasks at the end: $(app_tasks | tr '\n' ',')"
  proxy_log_summary
}

[[ -n ${SWARM_FAULTS_SOURCE:-} ]] || main "$@"
