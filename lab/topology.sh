# shellcheck shell=bash
# The book's two machines on one host, for lab/up.sh, lab/down.sh and
# lab/status.sh (they source this file: it defines constants and functions
# and runs nothing; `say` and `die` come from the caller):
#
#   cd: this host, its Docker engine        prod: network namespace "prod"
#   (lab/up.sh), and the registry           with its own dockerd, API only on
#   on 10.200.0.1:5000 (HTTPS with  <-veth->  tcp://10.200.0.2:2376 (TLS, client
#   the lab's CA, htpasswd)                 certificate required)
#
# Addresses and the paths that the harness reads are in lab/topology.env.
# Everything here is idempotent: a network namespace, a veth pair, a data
# root or a certificate may already exist (they outlive the processes that
# made them) and are reused. State lives outside the repository:
#   /var/lib/books-lab/registry  config, htpasswd, credentials (root only), data
#   /var/lib/books-lab/tls       lab CA, the servers' certificates (prod, swarm
#                                manager, registry), the client's
#   /etc/docker/certs.d/REGISTRY/ca.crt  the lab's CA, which every engine on
#                                this host trusts for the registry
#   /var/lib/books-lab/prod      prod's daemon.json and Docker data root
#   /run/books-lab               pid files, prod's exec root
#   /var/log/books-lab           registry.log, prod-dockerd.log

TOPOLOGY_ENV="$(dirname -- "${BASH_SOURCE[0]}")/topology.env"

# KEY=value lines; a variable already set in the environment wins, as it
# does for the harness and its tests.
load_topology_env() {
  local line key
  while IFS= read -r line; do
    [[ $line =~ ^([A-Z_][A-Z0-9_]*)=(.*)$ ]] || continue
    key=${BASH_REMATCH[1]}
    [[ -n ${!key+set} ]] || printf -v "$key" '%s' "${BASH_REMATCH[2]}"
  done <"$TOPOLOGY_ENV"
}
load_topology_env

: "${DOCKER:=/usr/bin/docker}"
: "${DOCKERD_PID:=/run/books-lab/dockerd.pid}"

LAB_NETNS=prod
# The host's end of the link; prod's end is its eth0, as on a real host.
LAB_VETH=books-prod0
LAB_PREFIX=24
LAB_CD_ADDR=${BOOKS_LAB_REGISTRY%:*}
LAB_PROD_ADDR=${BOOKS_LAB_PROD_DOCKER_HOST#tcp://}
LAB_PROD_PORT=${LAB_PROD_ADDR##*:}
LAB_PROD_ADDR=${LAB_PROD_ADDR%:*}
# prod's docker0: any subnet apart from the link's will do (it lives in the
# namespace, so it cannot clash with the host's networks).
LAB_PROD_BIP=10.200.1.1/24
# The swarm's manager (node 1): its API's address and port (lab/swarm.sh
# has the rest of the swarm's layout).
LAB_SWARM_MANAGER_ADDR=${BOOKS_LAB_SWARM_DOCKER_HOST#tcp://}
# shellcheck disable=SC2034 # lab/swarm.sh reads it
LAB_SWARM_MANAGER_PORT=${LAB_SWARM_MANAGER_ADDR##*:}
LAB_SWARM_MANAGER_ADDR=${LAB_SWARM_MANAGER_ADDR%:*}

# BOOKS_LAB_DATA_DIR moves the state (tests repair a copy of the
# certificates there with `lab/up.sh certificates`).
LAB_DATA_DIR=${BOOKS_LAB_DATA_DIR:-/var/lib/books-lab}
LAB_RUN_DIR=/run/books-lab
LAB_LOG_DIR=/var/log/books-lab

REGISTRY_DIR=$LAB_DATA_DIR/registry
REGISTRY_CONFIG=$REGISTRY_DIR/config.yml
REGISTRY_HTPASSWD=$REGISTRY_DIR/htpasswd
REGISTRY_STORAGE=$REGISTRY_DIR/data
REGISTRY_PID=$LAB_RUN_DIR/registry.pid
REGISTRY_LOG=$LAB_LOG_DIR/registry.log
REGISTRY_BIN=/usr/bin/docker-registry
# The registry's certificate and key as its user reads them (copies of
# $TLS_DIR/registry's, which only root reads).
REGISTRY_TLS=$REGISTRY_DIR/tls
# The package's system user: the registry needs no root.
REGISTRY_OS_USER=docker-registry

TLS_DIR=$LAB_DATA_DIR/tls
# Where every dockerd of this host looks for the CA of a registry it talks
# to over HTTPS: Docker 20.10's certificates folder is fixed
# (/etc/docker/certs.d), and the namespaced engines (prod, the swarm's
# nodes) share this host's files, so one copy serves them all. It is read at
# each pull and push: no engine needs a restart to take it.
REGISTRY_ENGINE_CA=/etc/docker/certs.d/$BOOKS_LAB_REGISTRY/ca.crt

# Where `docker login` keeps credentials, as the docker client finds it.
DOCKER_CONFIG_FILE=${DOCKER_CONFIG:-${HOME:-/root}/.docker}/config.json

PROD_DIR=$LAB_DATA_DIR/prod
PROD_CONFIG=$PROD_DIR/daemon.json
# dockerd's identity (the ID in `docker info`); by default every dockerd
# on the host shares /etc/docker/key.json, and prod would pass for cd.
PROD_KEY=$PROD_DIR/key.json
PROD_DATA_ROOT=$PROD_DIR/docker
PROD_RUN_DIR=$LAB_RUN_DIR/prod
PROD_EXEC_ROOT=$PROD_RUN_DIR/exec
PROD_PID=$PROD_RUN_DIR/dockerd.pid
PROD_LOG=$LAB_LOG_DIR/prod-dockerd.log

# Set by the steps of topology_up for the later ones.
PROD_TLS_CHANGED=0
# shellcheck disable=SC2034 # lab/swarm.sh reads it
SWARM_TLS_CHANGED=0
REGISTRY_TLS_CHANGED=0
REGISTRY_CHANGED=0

# ---------------------------------------------------------------- helpers

# Writes stdin to $1 with mode $2 unless the file already holds exactly
# that; sets FILE_CHANGED to 1 when it wrote, 0 otherwise. (Call it as a
# statement: in an `if` condition, bash would ignore its failures.)
write_file() {
  local path=$1 mode=$2 tmp
  FILE_CHANGED=0
  tmp=$(mktemp "$path.XXXXXX")
  cat >"$tmp"
  chmod "$mode" "$tmp"
  if [[ -f $path ]] && cmp -s "$tmp" "$path"; then
    rm -f "$tmp"
    return 0
  fi
  mv -f "$tmp" "$path"
  FILE_CHANGED=1
}

# The pid in pid file $1 when that process is alive and its command line
# holds $2 (a pid can be reused by another program); fails otherwise.
# (Output is matched in variables, not piped into `grep -q`: under
# pipefail, grep's early exit can fail the writer with SIGPIPE.)
live_pid() {
  local pid cmdline
  [[ -s $1 ]] || return 1
  pid=$(<"$1")
  [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
  cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  [[ $cmdline == *"$2"* ]] || return 1
  printf '%s\n' "$pid"
}

# Before a dockerd with exec root $1 starts: the pid file of the containerd
# it ran last, unless that containerd still runs. dockerd takes any live
# process of that pid for its containerd (after a reboot or a kill, the pid
# is often another program's), then waits in vain for its socket and
# fails to start.
clear_stale_containerd() {
  local pidfile="$1/containerd/containerd.pid"
  [[ -e $pidfile ]] || return 0
  live_pid "$pidfile" "$1/containerd/containerd.toml" >/dev/null && return 0
  rm -f "$pidfile"
}

# Stops the process of pid file $2 (named $1, matched by $3), waiting at
# most $4 seconds; removes a stale pid file.
stop_pidfile() {
  local name=$1 pidfile=$2 match=$3 secs=$4 pid i
  if ! pid=$(live_pid "$pidfile" "$match"); then
    if [[ -e $pidfile ]]; then
      say "$name: not running, removing the stale pid file $pidfile"
      rm -f "$pidfile"
    else
      say "$name: not running, nothing to stop"
    fi
    return 0
  fi
  say "$name: stopping pid $pid"
  kill -TERM "$pid"
  for ((i = 0; i < secs * 4; i++)); do
    if ! kill -0 "$pid" 2>/dev/null; then
      rm -f "$pidfile"
      say "$name: stopped"
      return 0
    fi
    sleep 0.25
  done
  die "$name (pid $pid) still running after $secs s"
}

# Closes every descriptor above 2 this script inherited (bash's own, 255,
# aside): the daemons it starts would inherit them too and hold them for
# their lives. A caller's lock, e.g. `flock FILE lab/up.sh` (without -o),
# would then never be released: the registry held such a lock once.
close_inherited_fds() {
  local fd
  for fd in /proc/$$/fd/*; do
    fd=${fd##*/}
    [[ $fd =~ ^[0-9]+$ ]] && ((fd > 2 && fd != 255)) || continue
    eval "exec $fd>&-"
  done
}

# Reads the credentials file into REGISTRY_USER and REGISTRY_PASSWORD.
read_registry_credentials() {
  local line
  REGISTRY_USER='' REGISTRY_PASSWORD=''
  [[ -r $BOOKS_LAB_REGISTRY_CREDENTIALS ]] || return 1
  while IFS= read -r line; do
    case $line in
    REGISTRY_USER=*) REGISTRY_USER=${line#*=} ;;
    REGISTRY_PASSWORD=*) REGISTRY_PASSWORD=${line#*=} ;;
    esac
  done <"$BOOKS_LAB_REGISTRY_CREDENTIALS"
  [[ -n $REGISTRY_USER && -n $REGISTRY_PASSWORD ]]
}

# curl against the registry over HTTPS, trusting the lab's CA alone.
# Bounded; never through a proxy (the address is this host's).
registry_curl() {
  curl -s --noproxy '*' --max-time 5 --cacert "$TLS_DIR/ca.pem" "$@"
}

# HTTP status of the registry's /v2/ without credentials (000: no answer,
# or not over HTTPS with a certificate of the lab's CA).
registry_status() {
  registry_curl -o /dev/null -w '%{http_code}' "https://$BOOKS_LAB_REGISTRY/v2/" 2>/dev/null || true
}

# The docker client against prod's engine, as the harness reaches it: over
# TCP with the client certificate.
prod_docker() {
  DOCKER_HOST=$BOOKS_LAB_PROD_DOCKER_HOST DOCKER_TLS_VERIFY=1 \
    DOCKER_CERT_PATH=$BOOKS_LAB_PROD_CERT_PATH timeout 10 "$DOCKER" "$@"
}

# Succeeds when the engine reached by the docker command "$@" (bounded by
# the caller) talks to the registry over HTTPS only, verifying it with the
# lab's CA: the registry is not in its insecure list (from which it would
# also fall back to plain HTTP), and the CA is where every engine here
# reads it.
engine_trusts_registry() {
  local configs
  cmp -s "$TLS_DIR/ca.pem" "$REGISTRY_ENGINE_CA" || return 1
  configs=$("$@" info --format '{{json .RegistryConfig.IndexConfigs}}' 2>/dev/null) || return 1
  jq -e --arg r "$BOOKS_LAB_REGISTRY" '.[$r].Secure != false' <<<"$configs" >/dev/null 2>&1
}

# ---------------------------------------------------------------- network

# prod's network: a namespace, a veth pair to it, addresses, a default route
# via the host. prod needs nothing beyond this host (the registry is on the
# host's end of the link), so nothing is forwarded or NATed for it, and a
# rule refuses what prod would send further: dockerd turns IP forwarding on
# for its own containers, and prod must not reach the internet through it.
prod_network() {
  if [[ ! -e /var/run/netns/$LAB_NETNS ]]; then
    ip netns add "$LAB_NETNS"
    say "network: namespace $LAB_NETNS added"
  fi
  if ! ip link show "$LAB_VETH" >/dev/null 2>&1 ||
    ! ip -n "$LAB_NETNS" link show eth0 >/dev/null 2>&1; then
    # Half a pair cannot be repaired; removing one end removes both.
    ip link del "$LAB_VETH" 2>/dev/null || true
    ip link add "$LAB_VETH" type veth peer name eth0 netns "$LAB_NETNS"
    say "network: veth pair $LAB_VETH <-> $LAB_NETNS/eth0 added"
  fi
  ip addr replace "$LAB_CD_ADDR/$LAB_PREFIX" dev "$LAB_VETH"
  ip link set "$LAB_VETH" up
  ip -n "$LAB_NETNS" link set lo up
  ip -n "$LAB_NETNS" addr replace "$LAB_PROD_ADDR/$LAB_PREFIX" dev eth0
  ip -n "$LAB_NETNS" link set eth0 up
  ip -n "$LAB_NETNS" route replace default via "$LAB_CD_ADDR"
  # Replies to connections opened from the host's containers still pass.
  local rule=(FORWARD -i "$LAB_VETH" -m conntrack ! --ctstate ESTABLISHED,RELATED
    -j REJECT --reject-with icmp-admin-prohibited)
  iptables -C "${rule[@]}" 2>/dev/null || iptables -I "${rule[@]}"
  say "network: $LAB_VETH $LAB_CD_ADDR <-> $LAB_NETNS $LAB_PROD_ADDR, no route beyond this host"
}

# ---------------------------------------------------------------- TLS

# A lab CA, prod's, the swarm manager's and the registry's server
# certificates and the client's, P-256 keys. Made when missing, invalid, about to expire (30
# days), not matching their key (a run interrupted between writing a key and
# its certificate) or, for a server's, not naming its address; a new CA
# re-issues them all. The client's folder is laid out as docker expects
# (prod and the swarm take the same client certificate).
tls_certificates() {
  local ca=$TLS_DIR/ca.pem ca_key=$TLS_DIR/ca-key.pem made=() name
  mkdir -p "$TLS_DIR/server" "$TLS_DIR/swarm-manager" "$TLS_DIR/registry" "$TLS_DIR/client"
  chmod 700 "$TLS_DIR"
  if ! key_matches "$ca" "$ca_key" || ! cert_ok "$ca" "$ca"; then
    new_key "$ca_key"
    openssl req -x509 -new -key "$ca_key" -sha256 -days 3650 -subj "/CN=books-lab CA" \
      -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
      -addext "keyUsage=critical,keyCertSign,cRLSign" -out "$ca" 2>/dev/null
    made+=(CA)
  fi
  if ! server_cert_ok server "$LAB_PROD_ADDR"; then
    new_cert server "prod" "extendedKeyUsage=serverAuth" "subjectAltName=IP:$LAB_PROD_ADDR"
    made+=(server)
    PROD_TLS_CHANGED=1
  fi
  if ! server_cert_ok swarm-manager "$LAB_SWARM_MANAGER_ADDR"; then
    new_cert swarm-manager "swarm manager" "extendedKeyUsage=serverAuth" "subjectAltName=IP:$LAB_SWARM_MANAGER_ADDR"
    made+=(swarm-manager)
    SWARM_TLS_CHANGED=1
  fi
  if ! server_cert_ok registry "$LAB_CD_ADDR"; then
    new_cert registry "registry" "extendedKeyUsage=serverAuth" "subjectAltName=IP:$LAB_CD_ADDR"
    made+=(registry)
    REGISTRY_TLS_CHANGED=1
  fi
  if ! cert_ok "$TLS_DIR/client/cert.pem" "$ca" ||
    ! key_matches "$TLS_DIR/client/cert.pem" "$TLS_DIR/client/key.pem"; then
    new_cert client "books-lab client" "extendedKeyUsage=clientAuth"
    made+=(client)
  fi
  # Each folder's copy of the CA (a run may stop before the copy).
  for name in server swarm-manager registry client; do
    if ! cmp -s "$ca" "$TLS_DIR/$name/ca.pem"; then
      cp "$ca" "$TLS_DIR/$name/ca.pem"
      made+=("$name's copy of the CA")
      # shellcheck disable=SC2034 # lab/swarm.sh reads SWARM_TLS_CHANGED
      case $name in
      server) PROD_TLS_CHANGED=1 ;;
      swarm-manager) SWARM_TLS_CHANGED=1 ;;
      registry) REGISTRY_TLS_CHANGED=1 ;;
      esac
    fi
  done
  if ((${#made[@]})); then
    say "tls: made ${made[*]} in $TLS_DIR"
  else
    say "tls: CA, servers' (prod, swarm manager, registry) and client certificates valid, each with its key ($TLS_DIR)"
  fi
}

# key_matches CERT KEY: both exist and the key is the certificate's (their
# public keys are the same).
key_matches() {
  local from_cert from_key
  [[ -s $1 && -s $2 ]] || return 1
  from_cert=$(openssl x509 -in "$1" -noout -pubkey 2>/dev/null) || return 1
  from_key=$(openssl pkey -in "$2" -pubout 2>/dev/null) || return 1
  [[ -n $from_cert && $from_cert == "$from_key" ]]
}

# cert_ok CERT CA: the certificate exists, chains to the CA, and is valid
# for 30 more days.
cert_ok() {
  [[ -s $1 && -s $2 ]] &&
    openssl verify -CAfile "$2" "$1" >/dev/null 2>&1 &&
    openssl x509 -in "$1" -noout -checkend $((30 * 86400)) >/dev/null 2>&1
}

# server_cert_ok NAME ADDR: $TLS_DIR/NAME holds a valid certificate, with
# its key, that names ADDR.
server_cert_ok() {
  local dir=$TLS_DIR/$1
  cert_ok "$dir/cert.pem" "$TLS_DIR/ca.pem" && names_ip "$dir/cert.pem" "$2" &&
    key_matches "$dir/cert.pem" "$dir/key.pem"
}

# names_ip CERT ADDR: the certificate's subjectAltName holds the address.
names_ip() {
  local san
  san=$(openssl x509 -in "$1" -noout -ext subjectAltName 2>/dev/null) || return 1
  [[ $san$'\n' == *"IP Address:$2"[,$'\n']* ]]
}

new_key() {
  (umask 077 && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1")
}

# new_cert NAME CN EXTENSION...: key, certificate signed by the lab CA, and
# a copy of the CA, in $TLS_DIR/NAME as ca.pem, cert.pem, key.pem.
new_cert() {
  local dir=$TLS_DIR/$1 cn=$2
  shift 2
  new_key "$dir/key.pem"
  openssl req -new -key "$dir/key.pem" -subj "/CN=$cn" |
    openssl x509 -req -CA "$TLS_DIR/ca.pem" -CAkey "$TLS_DIR/ca-key.pem" \
      -set_serial "0x$(openssl rand -hex 16)" -days 825 -sha256 -out "$dir/cert.pem" \
      -extfile <(printf '%s\n' "basicConstraints=critical,CA:FALSE" \
        "keyUsage=critical,digitalSignature" "subjectKeyIdentifier=hash" \
        "authorityKeyIdentifier=keyid" "$@") 2>/dev/null
  cp "$TLS_DIR/ca.pem" "$dir/ca.pem"
}

# ---------------------------------------------------------------- registry

# The lab's registry user with a random password, kept in a root-only file
# outside the repository (never printed), and its bcrypt entry in htpasswd.
registry_credentials() {
  local file=$BOOKS_LAB_REGISTRY_CREDENTIALS
  mkdir -p "$(dirname -- "$file")"
  if ! read_registry_credentials; then
    (umask 077 && printf 'REGISTRY_USER=%s\nREGISTRY_PASSWORD=%s\n' \
      books-lab "$(openssl rand -hex 24)" >"$file")
    read_registry_credentials || die "cannot read back $file"
    say "registry: new credentials for user $REGISTRY_USER in $file (root only)"
  fi
  chmod 600 "$file"
  if printf '%s\n' "$REGISTRY_PASSWORD" |
    htpasswd -v -i "$REGISTRY_HTPASSWD" "$REGISTRY_USER" >/dev/null 2>&1; then
    return
  fi
  # A lone user: the file is made anew (-c), readable by no other user
  # from its first byte (umask), then given to the registry's group.
  printf '%s\n' "$REGISTRY_PASSWORD" |
    (umask 077 && htpasswd -c -i -B "$REGISTRY_HTPASSWD" "$REGISTRY_USER" 2>/dev/null)
  chown "root:$REGISTRY_OS_USER" "$REGISTRY_HTPASSWD"
  chmod 640 "$REGISTRY_HTPASSWD"
  REGISTRY_CHANGED=1
  say "registry: htpasswd written for $REGISTRY_USER"
}

# The registry's certificate and key, copied where its user reads them
# (the key: root and the registry's group only).
registry_tls_files() {
  local file mode
  mkdir -p "$REGISTRY_TLS"
  for file in cert.pem key.pem; do
    mode=644
    [[ $file == key.pem ]] && mode=640
    if ! cmp -s "$TLS_DIR/registry/$file" "$REGISTRY_TLS/$file"; then
      install -o root -g "$REGISTRY_OS_USER" -m "$mode" "$TLS_DIR/registry/$file" "$REGISTRY_TLS/$file"
      REGISTRY_CHANGED=1
    fi
  done
  ((REGISTRY_TLS_CHANGED == 0)) || REGISTRY_CHANGED=1
}

# The registry's own config (the package's listens on every address);
# `registry_config readonly` writes the read-only maintenance mode that
# garbage collection runs under (lab/registry-gc.sh): pulls are served,
# pushes and deletes refused. HTTPS only, with the lab's CA: its clients
# send the lab's password with every request.
# Without an http secret it makes one at start: fine for a single instance.
registry_config() {
  local readonly=false
  [[ ${1:-} == readonly ]] && readonly=true
  write_file "$REGISTRY_CONFIG" 644 <<EOF
# Written by lab/topology.sh; edits are overwritten.
version: 0.1
log:
  level: info
  fields:
    service: registry
storage:
  filesystem:
    rootdirectory: $REGISTRY_STORAGE
  delete:
    enabled: true
  maintenance:
    readonly:
      enabled: $readonly
  cache:
    blobdescriptor: inmemory
http:
  addr: $BOOKS_LAB_REGISTRY
  tls:
    certificate: $REGISTRY_TLS/cert.pem
    key: $REGISTRY_TLS/key.pem
  headers:
    X-Content-Type-Options: [nosniff]
auth:
  htpasswd:
    realm: books-lab
    path: $REGISTRY_HTPASSWD
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
EOF
  ((FILE_CHANGED == 0)) || REGISTRY_CHANGED=1
}

start_registry() {
  local pid i
  mkdir -p "$REGISTRY_DIR" "$REGISTRY_STORAGE" "$LAB_RUN_DIR" "$LAB_LOG_DIR"
  chown "$REGISTRY_OS_USER:$REGISTRY_OS_USER" "$REGISTRY_STORAGE"
  chmod 750 "$REGISTRY_STORAGE"
  registry_credentials
  registry_tls_files
  registry_config
  if pid=$(live_pid "$REGISTRY_PID" "$REGISTRY_CONFIG"); then
    if ((REGISTRY_CHANGED)); then
      say "registry: configuration changed, restarting"
      stop_pidfile registry "$REGISTRY_PID" "$REGISTRY_CONFIG" 10
    elif [[ $(registry_status) == 401 ]]; then
      say "registry: answers on $BOOKS_LAB_REGISTRY, credentials required (pid $pid)"
      return
    else
      say "registry: pid $pid does not answer, restarting"
      stop_pidfile registry "$REGISTRY_PID" "$REGISTRY_CONFIG" 10
    fi
  fi
  launch_registry
}

# Starts the registry with $REGISTRY_CONFIG and waits until it answers.
launch_registry() {
  local pid i
  say "registry: starting on https://$BOOKS_LAB_REGISTRY, log in $REGISTRY_LOG"
  # Its own session so it outlives this script; fd 9 (lab/up.sh's lock)
  # closed, or it would hold the lock. setpriv execs, so $! is the registry.
  setsid nohup setpriv --reuid="$REGISTRY_OS_USER" --regid="$REGISTRY_OS_USER" --clear-groups \
    "$REGISTRY_BIN" serve "$REGISTRY_CONFIG" </dev/null >>"$REGISTRY_LOG" 2>&1 9>&- &
  pid=$!
  echo "$pid" >"$REGISTRY_PID"
  # It answers within a second; 10 s is plenty.
  for ((i = 0; i < 40; i++)); do
    if [[ $(registry_status) == 401 ]]; then
      say "registry: answers, credentials required (pid $pid)"
      return
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 20 "$REGISTRY_LOG" >&2 || true
      rm -f "$REGISTRY_PID"
      die "registry exited during start (log above)"
    fi
    sleep 0.25
  done
  tail -n 20 "$REGISTRY_LOG" >&2 || true
  die "registry did not answer on $BOOKS_LAB_REGISTRY within 10 s (pid $pid; lab/down.sh stops it)"
}

# Every engine of this host verifies the registry with the lab's CA: its
# copy in Docker's certificates folder. Then the cd engine: an earlier lab
# listed the registry in insecure-registries of /etc/docker/daemon.json
# (plain HTTP); that entry is removed (the rest of the file kept) and the
# running dockerd reloads the file (SIGHUP).
cd_engine_trusts_registry() {
  local file=/etc/docker/daemon.json tmp pid i
  mkdir -p "$(dirname -- "$REGISTRY_ENGINE_CA")"
  if ! cmp -s "$TLS_DIR/ca.pem" "$REGISTRY_ENGINE_CA"; then
    install -m 644 "$TLS_DIR/ca.pem" "$REGISTRY_ENGINE_CA"
    say "engines: the lab's CA in $REGISTRY_ENGINE_CA, for the registry"
  fi
  if jq -e --arg r "$BOOKS_LAB_REGISTRY" '(.["insecure-registries"] // []) | index($r)' \
    "$file" >/dev/null 2>&1 || ! jq -e 'has("insecure-registries")' "$file" >/dev/null 2>&1; then
    [[ -s $file ]] || echo '{}' >"$file"
    tmp=$(mktemp "$file.XXXXXX")
    # The key stays, even empty: a reload leaves a setting alone when the
    # file no longer names it.
    jq --arg r "$BOOKS_LAB_REGISTRY" '.["insecure-registries"] = ((.["insecure-registries"] // []) - [$r])' "$file" \
      >"$tmp" || { rm -f "$tmp"; die "$file is not valid JSON: fix it, then run lab/up.sh again"; }
    chmod 644 "$tmp"
    mv -f "$tmp" "$file"
    say "cd engine: removed $BOOKS_LAB_REGISTRY from insecure-registries in $file (the registry speaks HTTPS)"
  fi
  if engine_trusts_registry timeout 10 "$DOCKER"; then
    say "cd engine: trusts $BOOKS_LAB_REGISTRY"
    return
  fi
  pid=$(live_pid "$DOCKERD_PID" "--pidfile $DOCKERD_PID") ||
    die "the running Docker engine was not started by lab/up.sh: reload it (kill -HUP its dockerd) so that it reads $file"
  kill -HUP "$pid"
  for ((i = 0; i < 40; i++)); do
    if engine_trusts_registry timeout 10 "$DOCKER"; then
      say "cd engine: reloaded (pid $pid), trusts $BOOKS_LAB_REGISTRY"
      return
    fi
    sleep 0.25
  done
  die "cd engine (pid $pid) still lists $BOOKS_LAB_REGISTRY as insecure after a reload; see /var/log/books-lab/dockerd.log"
}

# ---------------------------------------------------------------- prod

# prod's dockerd, in the namespace, with everything of its own: config file
# (so that it does not read the cd engine's /etc/docker/daemon.json), data
# and exec roots, pid file, bridge, and its API on TCP with TLS only: no
# unix socket, which any member of the docker group could use without a
# certificate.
start_prod_dockerd() {
  local pid config
  mkdir -p "$PROD_DIR" "$PROD_DATA_ROOT" "$PROD_RUN_DIR" "$LAB_LOG_DIR"
  # No insecure-registries: it verifies the registry with the lab's CA
  # ($REGISTRY_ENGINE_CA). An earlier lab's entry changes the file, and so
  # restarts the engine.
  config=$(jq -n --arg key "$PROD_KEY" '{"deprecated-key-path": $key}')
  write_file "$PROD_CONFIG" 644 <<<"$config"
  if pid=$(live_pid "$PROD_PID" "--pidfile $PROD_PID"); then
    if ((PROD_TLS_CHANGED || FILE_CHANGED)); then
      # dockerd reads its certificate and most settings only at start.
      say "prod: new server certificate or $PROD_CONFIG, restarting dockerd"
      stop_pidfile "prod dockerd" "$PROD_PID" "--pidfile $PROD_PID" 30
    elif [[ $(tr '\0' ' ' <"/proc/$pid/cmdline") == *"unix://"* ]]; then
      # Started by an earlier lab/up.sh, which also listened on a socket.
      say "prod: dockerd (pid $pid) listens on a unix socket too, restarting it with TLS only"
      stop_pidfile "prod dockerd" "$PROD_PID" "--pidfile $PROD_PID" 30
    elif prod_docker version >/dev/null 2>&1; then
      say "prod: engine answers on $BOOKS_LAB_PROD_DOCKER_HOST over TLS (pid $pid)"
      prod_trusts_registry "$pid"
      return
    else
      die "prod: dockerd (pid $pid) runs but does not answer on $BOOKS_LAB_PROD_DOCKER_HOST; see $PROD_LOG, or lab/down.sh then lab/up.sh"
    fi
  fi
  # A pid file left by a crash would stop dockerd if its pid were reused.
  rm -f "$PROD_PID"
  clear_stale_containerd "$PROD_EXEC_ROOT"
  say "prod: starting dockerd in namespace $LAB_NETNS, log in $PROD_LOG"
  # nsenter, not `ip netns exec`: that remounts /sys, hides the cgroup
  # mounts, and dockerd dies ("Devices cgroup isn't mounted").
  # Containerd namespaces of its own: should a system containerd run, both
  # engines would share it (dockerd uses it when its socket exists).
  setsid nohup nsenter --net="/var/run/netns/$LAB_NETNS" /usr/sbin/dockerd \
    --config-file "$PROD_CONFIG" \
    --data-root "$PROD_DATA_ROOT" --exec-root "$PROD_EXEC_ROOT" --pidfile "$PROD_PID" \
    --bip "$LAB_PROD_BIP" \
    --containerd-namespace books-prod --containerd-plugins-namespace books-prod-plugins \
    -H "tcp://$LAB_PROD_ADDR:$LAB_PROD_PORT" \
    --tlsverify --tlscacert "$TLS_DIR/server/ca.pem" \
    --tlscert "$TLS_DIR/server/cert.pem" --tlskey "$TLS_DIR/server/key.pem" \
    </dev/null >>"$PROD_LOG" 2>&1 9>&- &
  pid=$!
  # With TLS it answers in about a second (without TLS, dockerd 20.10
  # delays its own start by 15 s).
  await_engine prod "$pid" "$PROD_LOG" prod_docker version
  say "prod: engine answers on $BOOKS_LAB_PROD_DOCKER_HOST over TLS (pid $pid, after ~$AWAITED_SECS s)"
  prod_trusts_registry "$pid"
}

# await_engine NAME PID LOG CHECK...: waits until CHECK succeeds for the
# dockerd just started as PID, 30 s at most (a first start creates its data
# root and networks); dies with the tail of its LOG when it exits or stays
# silent. Sets AWAITED_SECS (not printed: die must not run in a subshell).
await_engine() {
  local name=$1 pid=$2 log=$3 i
  shift 3
  for ((i = 0; i < 60; i++)); do
    if "$@" >/dev/null 2>&1; then
      AWAITED_SECS=$((i / 2))
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 30 "$log" >&2 || true
      die "$name: dockerd exited during start (log above, full log in $log)"
    fi
    sleep 0.5
  done
  tail -n 30 "$log" >&2 || true
  die "$name: dockerd did not answer within 30 s (log above; it runs as pid $pid, lab/down.sh stops it)"
}

prod_trusts_registry() {
  local i
  for ((i = 0; i < 20; i++)); do
    engine_trusts_registry prod_docker && return
    sleep 0.25
  done
  die "prod: engine (pid $1) does not verify $BOOKS_LAB_REGISTRY with the lab's CA ($REGISTRY_ENGINE_CA); see $PROD_CONFIG"
}

# ---------------------------------------------------------------- logins

# `docker login` of the cd engine, so ~/.docker/config.json holds the
# credentials (the harness reads them there); skipped when it already holds
# these. Then the same login through prod's engine: that checks that prod
# reaches the registry and is let in (a daemon keeps no credentials; the
# harness sends them with each pull).
registry_logins() {
  local want have out
  read_registry_credentials || die "cannot read $BOOKS_LAB_REGISTRY_CREDENTIALS"
  want=$(printf '%s:%s' "$REGISTRY_USER" "$REGISTRY_PASSWORD" | base64 -w0)
  have=$(jq -r --arg r "$BOOKS_LAB_REGISTRY" '.auths[$r].auth // empty' \
    "$DOCKER_CONFIG_FILE" 2>/dev/null || true)
  if [[ $have == "$want" ]]; then
    say "login: $DOCKER_CONFIG_FILE holds the credentials for $BOOKS_LAB_REGISTRY"
  else
    out=$(printf '%s\n' "$REGISTRY_PASSWORD" | timeout 30 "$DOCKER" login \
      --username "$REGISTRY_USER" --password-stdin "$BOOKS_LAB_REGISTRY" 2>&1) ||
      { printf '%s\n' "$out" >&2; die "login: the cd engine could not log in to $BOOKS_LAB_REGISTRY"; }
    say "login: cd engine logged in to $BOOKS_LAB_REGISTRY as $REGISTRY_USER"
  fi
  out=$(printf '%s\n' "$REGISTRY_PASSWORD" | prod_docker login \
    --username "$REGISTRY_USER" --password-stdin "$BOOKS_LAB_REGISTRY" 2>&1) ||
    { printf '%s\n' "$out" >&2; die "login: prod's engine could not log in to $BOOKS_LAB_REGISTRY"; }
  say "login: prod's engine reaches $BOOKS_LAB_REGISTRY and is let in"
}

# ---------------------------------------------------------------- mirrors

# prod pulls only from the registry (nothing can be pulled from a public
# one here). mirror_image IMAGE WHAT pushes the lab's local IMAGE (NAME:TAG,
# from lab.env) there under the registry's address plus that same name
# (never a public name); WHAT says what prod runs it for. Skipped when the
# registry already holds this very image.
mirror_image() {
  local image=$1 what=$2 target local_id pushed_id
  target="$BOOKS_LAB_REGISTRY/$image"
  local_id=$("$DOCKER" image inspect -f '{{.Id}}' "$image" 2>/dev/null) ||
    die "registry: cannot mirror $image ($what): the cd engine has no such image"
  pushed_id=$(registry_image_id "$image") || die "cannot read $BOOKS_LAB_REGISTRY_CREDENTIALS"
  if [[ $pushed_id == "$local_id" ]]; then
    say "registry: holds $target ($what)"
    return
  fi
  "$DOCKER" tag "$image" "$target"
  with_heartbeat "lab/up: registry: pushing $target" push_quietly "$target" ||
    die "registry: pushing $target failed (or took over 5 min)"
  say "registry: pushed $target ($what)"
}

# Bounded: the toolchain image's 600 MB layer took 24 s on an idle machine,
# and the lab pushes it while the first command compiles on every core.
push_quietly() { timeout 300 "$DOCKER" push "$1" >/dev/null; }

# registry_image_id IMAGE: the id of the image the registry holds as
# REGISTRY/IMAGE (IMAGE is NAME:TAG), or nothing when it holds none or does
# not answer; fails when the lab's credentials cannot be read. The
# manifest's config digest is the image's id. Bounded; the password goes to
# curl on stdin, never on a command line.
registry_image_id() {
  local repo=${1%:*} tag=${1##*:}
  read_registry_credentials || return 1
  printf 'user = "%s:%s"\n' "$REGISTRY_USER" "$REGISTRY_PASSWORD" |
    registry_curl -K - -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
      "https://$BOOKS_LAB_REGISTRY/v2/$repo/manifests/$tag" 2>/dev/null |
    jq -r '.config.digest // empty' 2>/dev/null || true
}

# ---------------------------------------------------------------- entry points

topology_up() {
  prod_network
  tls_certificates
  start_registry
  cd_engine_trusts_registry
  start_prod_dockerd
  registry_logins
}

topology_down() {
  stop_pidfile "prod dockerd" "$PROD_PID" "--pidfile $PROD_PID" 30
  stop_pidfile registry "$REGISTRY_PID" "$REGISTRY_CONFIG" 10
  say "kept: network namespace $LAB_NETNS and $LAB_VETH, certificates in $TLS_DIR," \
    "registry data and credentials in $REGISTRY_DIR, prod's data in $PROD_DATA_ROOT"
}
