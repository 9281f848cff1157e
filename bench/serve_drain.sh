#!/usr/bin/env bash
# Graceful drain under load: does SIGTERM lose any request the server accepted?
# Starts lunet's server (examples/serve.lua, the reference MLP of bench/serve_setup.lua) with
# --drain-delay-ms DRAIN_MS, drives it with wrk at a steady rate (bench/wrk_post.lua with DELAY_MS: each
# of CONNECTIONS connections sends a request every DELAY_MS), sends SIGTERM SIGNAL_AFTER seconds
# in, and reports:
#   - how long after the signal /v2/health/ready first said 503 (curl every 10 ms);
#   - the requests the server answered (its access log) against the whole answers wrk got: every
#     request the server accepted must have reached wrk whole, with status 200.  wrk's socket
#     errors are reported but not judged: once the listener closes, wrk's attempts to reconnect
#     fail as connect, write and read errors, which is the point of draining;
#   - the server's exit status and how long after the signal it came (within DRAIN_MS plus
#     --shutdown-timeout-ms, 25 s).
#
#   bash bench/serve_drain.sh
#   DRAIN_MS=2000 DURATION=10s SIGNAL_AFTER=3 bash bench/serve_drain.sh
#
# Exits 1 when a check fails.  Environment (defaults in brackets): DRAIN_MS [2000], DURATION
# [10s] of the wrk run, SIGNAL_AFTER [3] seconds, CONNECTIONS [32], DELAY_MS [10],
# LUNET_THREADS [2], LUNET_PORT [0], KEEP_WORK [0].
#
# Needs the Debian packages wrk, curl, lua5.4, lua-cjson and dataset-fashion-mnist (installed
# when missing, as root or through sudo), and lunet built in the tree (make).
set -euo pipefail
cd "$(dirname "$0")/.."

DRAIN_MS=${DRAIN_MS:-2000}
DURATION=${DURATION:-10s}
SIGNAL_AFTER=${SIGNAL_AFTER:-3}
CONNECTIONS=${CONNECTIONS:-32}
DELAY_MS=${DELAY_MS:-10}

# shellcheck source=bench/serve_common.sh
. bench/serve_common.sh

now_ms() { date +%s%3N; }

main() {
  prepare serve-drain
  ACCESS_LOG=1 start_lunet 64 --drain-delay-ms "$DRAIN_MS"

  BODY=$WORK/body.json DELAY_MS=$DELAY_MS wrk -t2 -c"$CONNECTIONS" -d"$DURATION" -s bench/wrk_post.lua \
    "$BASE_URL$INFER_PATH" >"$WORK/wrk.out" 2>&1 &
  local wrk_pid=$!
  sleep "$SIGNAL_AFTER"
  local i pid=$SERVER_PID signalled ready_ms="" code exited_ms="" status=0
  signalled=$(now_ms)
  kill -TERM "$pid"
  for ((i = 0; i < 500; i++)); do
    code=$(curl -s -o /dev/null -m 1 -w '%{http_code}' "$BASE_URL/v2/health/ready" || true)
    if [ "$code" = 503 ]; then
      ready_ms=$(($(now_ms) - signalled))
      break
    fi
    sleep 0.01
  done
  SERVER_PID="" # the script waits for it below, not cleanup
  wait "$pid" || status=$?
  exited_ms=$(($(now_ms) - signalled))
  wait "$wrk_pid" || true
  local result
  result=$(grep '^RESULT ' "$WORK/wrk.out" || true)
  echo "wrk: ${result:-no RESULT line: $(cat "$WORK/wrk.out")}"
  echo "readiness 503 after: ${ready_ms:-never} ms (limit 100)"
  echo "server exit status $status, ${exited_ms} ms after SIGTERM (drain delay $DRAIN_MS ms, shutdown timeout 25000 ms)"
  local answered got non2xx failed=0
  answered=$(grep -c '"path":"/v2/models/mlp/infer","status":200' "$WORK/lunet-batch-64.log" || true)
  got=$(printf '%s\n' "$result" | sed -n 's/.* requests=\([0-9]*\) .*/\1/p')
  non2xx=$(printf '%s\n' "$result" | sed -n 's/.* non2xx=\([0-9]*\).*/\1/p')
  echo "the server answered $answered infer requests with 200; wrk got $got whole answers, $non2xx of them not 2xx"
  if [ "$answered" != "$got" ] || [ "$non2xx" != 0 ]; then
    echo "FAIL: answers the server gave were lost, cut or refused"
    failed=1
  fi
  if [ -z "$ready_ms" ] || [ "$ready_ms" -gt 100 ]; then
    echo "FAIL: readiness did not say 503 within 100 ms"
    failed=1
  fi
  [ "$status" = 0 ] || { echo "FAIL: the server exited with status $status"; failed=1; }
  [ "$exited_ms" -le $((DRAIN_MS + 25000)) ] || { echo "FAIL: the server took longer than the drain and shutdown timeout"; failed=1; }
  if [ "$failed" = 0 ]; then echo "PASS: nothing accepted was lost; readiness, exit status and time as required"; fi
  return "$failed"
}

main "$@"
