# shellcheck shell=bash
# Shell functions and settings the serving benchmarks share (bench/serve*.sh): source it from
# the repository root after setting the script's own defaults.  A server started here is in
# SERVER_PID, reachable at BASE_URL; WORK is the scratch directory prepare makes.

# Settings every serving benchmark takes from the environment (defaults after ":-").
LUNET_THREADS=${LUNET_THREADS:-2}   # the server's --threads
LUNET_PORT=${LUNET_PORT:-0}         # 0: any free port
KEEP_WORK=${KEEP_WORK:-0}           # 1 keeps the scratch directory (kept anyway on failure)
SHARED=${SHARED:-../shared}         # the peers' files, relative to the repository root
START_TIMEOUT=${START_TIMEOUT:-120} # seconds for a server to be ready (the Flask peer imports torch)
# shellcheck disable=SC2034 # the scripts that source this file read it
INFER_PATH=/v2/models/mlp/infer
WORK=""
SERVER_PID=""
BASE_URL=""

# shellcheck source=bench/debian_packages.sh
. bench/debian_packages.sh

log() { printf '%s: %s\n' "$(basename "$0")" "$*" >&2; }
die() {
  log "$*"
  exit 1
}

# The running server's resident memory in KiB.
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$SERVER_PID/status"; }

# stop_pid PID SECONDS: SIGTERM, SIGKILL when PID still runs SECONDS later; waits for it and
# leaves its exit status in STOPPED_STATUS (a variable: wait only works in this shell).
stop_pid() {
  local pid=$1 seconds=$2 i
  STOPPED_STATUS=0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < seconds * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "pid $pid did not stop within $seconds s of SIGTERM; killing it"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || STOPPED_STATUS=$?
}

# Stops the running server (SIGKILL after 20 s) and waits for it.  Both servers exit 0 on
# SIGTERM; another status is reported but does not fail the benchmark.
stop_server() {
  [ -n "$SERVER_PID" ] || return 0
  local pid=$SERVER_PID
  SERVER_PID=""
  stop_pid "$pid" 20
  [ "$STOPPED_STATUS" -eq 0 ] || log "the server (pid $pid) exited with status $STOPPED_STATUS"
}

# The EXIT trap: stops the server, removes WORK (kept when the script failed, or KEEP_WORK=1).
# cleanup STATUS does the same from another EXIT trap that saved the exit status first.
cleanup() {
  local status=${1:-$?}
  stop_server
  if [ -n "$WORK" ]; then
    if [ "$status" -ne 0 ] || [ "$KEEP_WORK" = 1 ]; then
      log "bodies, models and logs kept in $WORK"
    else
      rm -rf "$WORK"
    fi
  fi
  exit "$status"
}

# prepare NAME: installs what a load script needs, sets the EXIT trap, and makes WORK (named
# after NAME) with serve_setup.lua's bodies and model repository for image 1.
prepare() {
  install_missing wrk curl lua5.4 lua-cjson dataset-fashion-mnist
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/lunet-$1.XXXXXX")
  mkdir -p "$WORK/models/mlp/1"
  lua5.4 bench/serve_setup.lua "$WORK" 1 >&2
}

# Fails, showing the end of the server's log, unless the server process is still running.
check_alive() {
  kill -0 "$SERVER_PID" 2>/dev/null && return 0
  tail -n 20 "$1" >&2 || true
  SERVER_PID=""
  die "the server exited early (log: $1)"
}

# Waits until BASE_URL/v2/health/ready answers 200.
wait_ready() {
  local log_file=$1 i
  for ((i = 0; i < START_TIMEOUT * 10; i++)); do
    check_alive "$log_file"
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$BASE_URL/v2/health/ready" || true)" = 200 ] && return 0
    sleep 0.1
  done
  die "$BASE_URL was not ready within $START_TIMEOUT s (log: $log_file)"
}

# start_lunet MAX_BATCH_SIZE [FLAG ...]: the port comes from the "lunet: listening on
# http://HOST:PORT" line (anything after the port is ignored).  Without a drain delay (SIGTERM
# stops it at once) unless a FLAG sets one; its log is $WORK/lunet-batch-MAX_BATCH_SIZE.log,
# with an access-log line per request when ACCESS_LOG=1.
start_lunet() {
  local log_file=$WORK/lunet-batch-$1.log i port="" batch=$1 quiet=(--quiet)
  shift
  [ "${ACCESS_LOG:-0}" = 1 ] && quiet=()
  : >"$log_file"
  lua5.4 examples/serve.lua --models "$WORK/models" --port "$LUNET_PORT" --host 127.0.0.1 "${quiet[@]}" \
    --max-batch-size "$batch" --threads "$LUNET_THREADS" --drain-delay-ms 0 "$@" >>"$log_file" 2>&1 &
  SERVER_PID=$!
  for ((i = 0; i < START_TIMEOUT * 10; i++)); do
    check_alive "$log_file"
    port=$(sed -n 's|^lunet: listening on http://[^ ]*:\([0-9][0-9]*\).*|\1|p' "$log_file" | head -n 1)
    [ -n "$port" ] && break
    sleep 0.1
  done
  [ -n "$port" ] || die "lunet printed no 'lunet: listening on' line within $START_TIMEOUT s (log: $log_file)"
  BASE_URL=http://127.0.0.1:$port
  wait_ready "$log_file"
}

