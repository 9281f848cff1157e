#!/usr/bin/env bash
# A real Prometheus (Debian's prometheus) scrapes lunet's /metrics on loopback every second while
# wrk loads the server, and its estimate of the 95th percentile request time,
#   histogram_quantile(0.95, sum(rate(lunet_request_duration_seconds_bucket[1m])) by (le))
# is held against wrk's own p95 (bench/wrk_post.lua).  Then `promtool check metrics` reads the
# server's /metrics text as it is after the load, every series there.
#
#   bash bench/serve_prometheus.sh
#   DURATION=90 CONNECTIONS=32 DELAY_MS=0 bash bench/serve_prometheus.sh
#
# Steps: start examples/serve.lua (the reference MLP of bench/serve_setup.lua); write a
# prometheus.yml in the scratch directory scraping 127.0.0.1:PORT/metrics (scrape_interval 1s);
# start prometheus on a free loopback port with its TSDB in the scratch directory; wait for the
# first good scrape; run wrk for DURATION seconds (each of CONNECTIONS connections sending a
# request every DELAY_MS); wait for two more scrapes; ask /api/v1/query for the expression above
# (and for the bucket rates under it) at the time wrk ended less EVAL_BEFORE_END seconds, so that
# the [1m] window lies inside the load when DURATION is at least 60 + EVAL_BEFORE_END; print both
# p95s in ms, their ratio and the bucket bounds that bracket them (bench/prometheus_p95.lua).
# The two do not time the same span: wrk from its request's first byte sent to the answer's last
# byte read, the server from the first byte it read to the answer queued for sending; the
# histogram's buckets (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, ... ms) limit the estimate to
# interpolation inside one bucket.  Prometheus' own scrapes of /metrics (1/s, model label "")
# fall into the sum too, a negligible share.
#
# Exits non-zero when the two p95s are more than 10x apart, when Prometheus could not scrape the
# target, when wrk saw errors, or when promtool complains.  Processes it started are stopped and
# the scratch directory removed on exit (kept on failure or with KEEP_WORK=1).
#
# Mind the machine: wrk, Prometheus and the server share its cores (2 on the development
# machine); the figures move with whatever else runs there.
#
# Environment (defaults in brackets): DURATION [70] seconds of load, CONNECTIONS [16],
# DELAY_MS [1] between a connection's requests (0: as fast as answers come), WRK_THREADS [2],
# EVAL_BEFORE_END [2] seconds, LUNET_THREADS [2], MAX_BATCH [64], LUNET_PORT [0: any free port],
# KEEP_WORK [0].
#
# Needs the Debian packages prometheus (prometheus and promtool), wrk, curl, lua5.4, lua-cjson,
# lua-socket and dataset-fashion-mnist (installed when missing, as root or through sudo), and
# lunet built in the tree (make).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-70}
CONNECTIONS=${CONNECTIONS:-16}
DELAY_MS=${DELAY_MS:-1}
WRK_THREADS=${WRK_THREADS:-2}
EVAL_BEFORE_END=${EVAL_BEFORE_END:-2}
MAX_BATCH=${MAX_BATCH:-64}
EXPR='histogram_quantile(0.95, sum(rate(lunet_request_duration_seconds_bucket[1m])) by (le))'
BUCKETS_EXPR='sum(rate(lunet_request_duration_seconds_bucket[1m])) by (le)'

PROM_PID=""
PROM_URL=""
WRK_PID=""

# shellcheck source=bench/serve_common.sh
. bench/serve_common.sh

# Stops Prometheus (SIGTERM, SIGKILL after 10 s).
stop_prometheus() {
  [ -n "$PROM_PID" ] || return 0
  local pid=$PROM_PID
  PROM_PID=""
  stop_pid "$pid" 10
}

# The EXIT trap: wrk and Prometheus, then serve_common.sh's cleanup (the server and WORK) with
# the script's exit status.
on_exit() {
  local status=$?
  if [ -n "$WRK_PID" ]; then
    kill -TERM "$WRK_PID" 2>/dev/null || true
    wait "$WRK_PID" 2>/dev/null || true
  fi
  stop_prometheus
  cleanup "$status"
}

free_port() {
  lua5.4 -e 'local s = assert(require("socket").bind("127.0.0.1", 0)); local _, p = s:getsockname(); print(p); s:close()'
}

# prom_query EXPR TIME OUT: Prometheus' JSON answer for EXPR at TIME (Unix seconds) into OUT.
prom_query() {
  curl -sf -G --data-urlencode "query=$1" --data-urlencode "time=$2" "$PROM_URL/api/v1/query" >"$3" ||
    die "Prometheus' query API failed for $1"
}

# The value of a one-series instant query as text ("" when there is no series).
prom_value() {
  prom_query "$1" "$2" "$WORK/value.json"
  lua5.4 - "$WORK/value.json" <<'EOF'
local f = assert(io.open(arg[1]))
local r = require("cjson").decode(f:read("a")).data.result
print(r[1] and r[1].value[2] or "")
EOF
}

start_prometheus() {
  local port i target=${BASE_URL#http://}
  cat >"$WORK/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: lunet
    metrics_path: /metrics
    static_configs:
      - targets: ['$target']
EOF
  port=$(free_port)
  prometheus --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/tsdb" \
    --web.listen-address="127.0.0.1:$port" >"$WORK/prometheus.log" 2>&1 &
  PROM_PID=$!
  PROM_URL=http://127.0.0.1:$port
  for ((i = 0; i < 300; i++)); do
    if ! kill -0 "$PROM_PID" 2>/dev/null; then
      tail -n 20 "$WORK/prometheus.log" >&2
      PROM_PID=""
      die "prometheus exited early (log: $WORK/prometheus.log)"
    fi
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$PROM_URL/-/ready" || true)" = 200 ] && break
    sleep 0.1
  done
  # The first good scrape: up{job="lunet"} is 1.
  for ((i = 0; i < 300; i++)); do
    [ "$(prom_value 'up{job="lunet"}' "$(date +%s.%N)")" = 1 ] && break
    sleep 0.1
  done
  [ "$(prom_value 'up{job="lunet"}' "$(date +%s.%N)")" = 1 ] ||
    die "Prometheus did not scrape $BASE_URL/metrics within 30 s (log: $WORK/prometheus.log)"
  log "prometheus $(prometheus --version 2>&1 | head -n 1 | cut -d' ' -f3) at $PROM_URL scraping $BASE_URL/metrics every 1 s"
}

main() {
  install_missing prometheus lua-socket
  prepare serve-prometheus
  trap on_exit EXIT
  start_lunet "$MAX_BATCH"
  start_prometheus
  [ "$DURATION" -ge $((60 + EVAL_BEFORE_END)) ] ||
    log "DURATION $DURATION s is under 60 + $EVAL_BEFORE_END: the [1m] window reaches back before the load"

  log "wrk -t$WRK_THREADS -c$CONNECTIONS for $DURATION s, DELAY_MS=$DELAY_MS, against $BASE_URL$INFER_PATH"
  # In the background, so that a signal stops the script at once rather than after wrk.
  BODY=$WORK/body.json DELAY_MS=$DELAY_MS wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"${DURATION}s" \
    -s bench/wrk_post.lua "$BASE_URL$INFER_PATH" >"$WORK/wrk.out" 2>&1 &
  WRK_PID=$!
  local ended at result wrk_p95 failed=0 wrk_status=0
  wait "$WRK_PID" || wrk_status=$?
  WRK_PID=""
  [ "$wrk_status" = 0 ] || { cat "$WORK/wrk.out" >&2; die "wrk exited with status $wrk_status"; }
  ended=$(date +%s.%N)
  at=$(lua5.4 -e "print(string.format('%.3f', $ended - $EVAL_BEFORE_END))")
  sleep 2.5 # two more scrapes, so the samples around the evaluation time are stored
  result=$(grep '^RESULT ' "$WORK/wrk.out" || true)
  [ -n "$result" ] || { cat "$WORK/wrk.out" >&2; die "wrk printed no RESULT line"; }
  echo "wrk: $result"
  wrk_p95=$(printf '%s\n' "$result" | sed -n 's/.* p95_ms=\([0-9.]*\) .*/\1/p')
  if ! printf '%s\n' "$result" | grep -q 'connect=0 write=0 read=0 timeout=0 non2xx=0'; then
    echo "FAIL: wrk saw socket errors or non-2xx answers"
    failed=1
  fi

  [ "$(prom_value 'up{job="lunet"}' "$at")" = 1 ] || { echo "FAIL: the target was not up at $at"; failed=1; }
  echo "Prometheus at $at (wrk ended at $ended, $EVAL_BEFORE_END s before that):"
  echo "  $EXPR"
  prom_query "$EXPR" "$at" "$WORK/quantile.json"
  prom_query "$BUCKETS_EXPR" "$at" "$WORK/buckets.json"
  lua5.4 bench/prometheus_p95.lua "$WORK/quantile.json" "$WORK/buckets.json" "$wrk_p95" || failed=1

  curl -sf "$BASE_URL/metrics" >"$WORK/metrics.txt" || die "GET $BASE_URL/metrics failed"
  echo "promtool check metrics on /metrics after the load ($(wc -l <"$WORK/metrics.txt") lines):"
  local out status=0
  out=$(promtool check metrics <"$WORK/metrics.txt" 2>&1) || status=$?
  printf '%s\n' "${out:-(no output)}" | sed 's/^/  /'
  if [ "$status" = 0 ]; then
    echo "promtool: exit 0"
  else
    echo "FAIL: promtool exited $status"
    failed=1
  fi
  [ "$failed" = 0 ] && echo "PASS"
  return "$failed"
}

main "$@"
