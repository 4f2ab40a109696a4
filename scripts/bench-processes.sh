# shellcheck shell=bash
# Sourced by the benchmark scripts (scripts/bench.sh,
# scripts/bench-list-memory.sh): the service process and the database
# container they start, and their removal on exit (also after a failure or
# Ctrl-C). The sourcing script sets DOCKER, and SERVICE_PID / DB_CID when it
# starts them.

SERVICE_PID=
DB_CID=

# Alive and not a zombie waiting to be reaped.
alive() {
  local state
  state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)
  [[ -n $state && $state != Z ]]
}

stop_service() {
  [[ -n $SERVICE_PID ]] || return 0
  kill -TERM "$SERVICE_PID" 2>/dev/null || true
  local i
  # It finishes in-flight requests and exits; 10 s is its own bound.
  for ((i = 0; i < 120; i++)); do alive "$SERVICE_PID" || break; sleep 0.1; done
  if alive "$SERVICE_PID"; then kill -KILL "$SERVICE_PID" 2>/dev/null || true; fi
  wait "$SERVICE_PID" 2>/dev/null || true
  SERVICE_PID=
}

cleanup() {
  stop_service
  if [[ -n $DB_CID ]]; then
    timeout 30 "$DOCKER" rm -f "$DB_CID" >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
