# Sourced (bash): with_heartbeat, for long commands whose output may pause
# for a long time (a compile, a go build, debootstrap), so that a log (CI,
# `| tee`, a file) never stays silent for more than HEARTBEAT_SECS.

HEARTBEAT_SECS=${HEARTBEAT_SECS:-10}

# with_heartbeat LABEL COMMAND [ARGS...]
# Runs the command with its stdout and stderr on this script's stderr, line
# by line, adding "LABEL: still running (N s)" after every HEARTBEAT_SECS
# without output. Returns the command's exit status.
with_heartbeat() {
  local label=$1 status_file rc
  shift
  status_file=$(mktemp)
  {
    { "$@" && rc=0 || rc=$?; echo "$rc" >"$status_file"; } 2>&1 </dev/null |
      _heartbeat_lines "$label" "$SECONDS"
  } >&2
  rc=$(<"$status_file")
  rm -f "$status_file"
  return "${rc:-1}"
}

_heartbeat_lines() {
  local label=$1 start=$2 line got
  while :; do
    IFS= read -r -t "$HEARTBEAT_SECS" line && got=0 || got=$?
    if ((got == 0)); then
      printf '%s\n' "$line"
    elif ((got > 128)); then
      # A timed-out read keeps what it took of an unfinished line.
      [[ -z $line ]] || printf '%s\n' "$line"
      printf '%s: still running (%d s)\n' "$label" $((SECONDS - start))
    else
      # End of the output; a last line without a newline is in $line.
      [[ -z $line ]] || printf '%s\n' "$line"
      return 0
    fi
  done
}
