#!/usr/bin/env bash
# Hot reload under load, and its memory: does a version renamed into the repository take over
# with no failed request, does a corrupt one leave the served version in place, and does
# resident memory stay flat over many reloads?
#
# Part 1: wrk (wrk_post.lua counting answers by version, CONNECTIONS connections as fast as they go) for DURATION; after
# a third of it version 2 is renamed into models/mlp/, after two thirds a corrupt version 3.
# A background loop asks /v2/health/ready every 50 ms throughout.  Passes when wrk saw no
# socket error and no non-2xx answer, answers came from version 1 and then version 2 and none
# from 3, readiness was 200 every time, and lunet_model_loads_total{result="error"} is 1.
#
# Part 2: CYCLES reload cycles under a steady light load (wrk_post.lua with DELAY_MS, 4 connections): each
# renames version k+1 in, waits until the server serves it, removes version k and waits until
# it is unloaded.  VmRSS after cycle BASE_CYCLE is compared with after the last; passes when it
# grew by at most LIMIT_PCT percent and the light load saw no error.
#
#   bash bench/serve_reload.sh
#   CYCLES=50 DURATION=6 bash bench/serve_reload.sh
#
# Environment (defaults in brackets): DURATION [9] seconds, CONNECTIONS [16], CYCLES [200],
# BASE_CYCLE [20], LIMIT_PCT [10], LUNET_THREADS [2], LUNET_PORT [0], KEEP_WORK [0].  The server
# polls once a minute (--poll-ms 60000), so what it picks up within seconds came through the
# file-system watch.  Needs wrk, curl, lua5.4, lua-cjson, dataset-fashion-mnist (installed when
# missing) and lunet built in the tree (make).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-9}
CONNECTIONS=${CONNECTIONS:-16}
CYCLES=${CYCLES:-200}
BASE_CYCLE=${BASE_CYCLE:-20}
LIMIT_PCT=${LIMIT_PCT:-10}

# shellcheck source=bench/serve_common.sh
. bench/serve_common.sh

# roll_out VERSION [corrupt]: the model file (or garbage) staged beside the repository, then
# renamed in whole, as an operator would.
roll_out() {
  local stage=$WORK/stage-$1
  mkdir -p "$stage"
  if [ "${2:-}" = corrupt ]; then
    head -c 4096 /dev/urandom >"$stage/model.safetensors"
  else
    cp "$WORK/model.safetensors" "$stage/model.safetensors"
  fi
  mv "$stage" "$WORK/models/mlp/$1"
}

# The versions the server lists for mlp, as "1,2".
served_versions() {
  curl -s "$BASE_URL/v2/models/mlp" | sed -n 's/.*"versions":\[\([^]]*\)\].*/\1/p' | tr -d '"'
}

# wait_for VERSIONS: until the server lists exactly these (10 s at most).
wait_for() {
  local i
  for ((i = 0; i < 200; i++)); do
    [ "$(served_versions)" = "$1" ] && return 0
    sleep 0.05
  done
  die "the server lists versions '$(served_versions)', not '$1', 10 s on"
}

metric() {
  curl -s "$BASE_URL/metrics" | awk -v s="$1" '$1 == s {print $2; found = 1} END {if (!found) print 0}'
}

part1() {
  local third out result versions ready_file=$WORK/ready-codes failed=0
  third=$(awk -v d="$DURATION" 'BEGIN {printf "%.1f", d / 3}')
  (while [ ! -e "$WORK/stop-ready" ]; do
    curl -s -o /dev/null -w '%{http_code}\n' "$BASE_URL/v2/health/ready" >>"$ready_file"
    sleep 0.05
  done) &
  local ready_pid=$!
  BODY=$WORK/body.json COUNT_VERSIONS=1 wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" -s bench/wrk_post.lua \
    "$BASE_URL$INFER_PATH" >"$WORK/wrk1.out" &
  local wrk_pid=$!
  sleep "$third"
  roll_out 2
  log "renamed version 2 in"
  sleep "$third"
  roll_out 3 corrupt
  log "renamed a corrupt version 3 in"
  wait "$wrk_pid"
  touch "$WORK/stop-ready"
  wait "$ready_pid"
  out=$(cat "$WORK/wrk1.out")
  result=$(printf '%s\n' "$out" | grep '^RESULT')
  versions=$(printf '%s\n' "$out" | grep '^VERSIONS')
  local errors ready_total ready_ok
  errors=$(metric 'lunet_model_loads_total{model="mlp",result="error"}')
  ready_total=$(wc -l <"$ready_file")
  ready_ok=$(grep -c '^200$' "$ready_file" || true)
  echo "part 1 (wrk -c$CONNECTIONS ${DURATION}s; version 2 in at ${third}s, corrupt version 3 at twice that)"
  echo "  wrk:       $result"
  echo "  answered:  $versions (by model_version)"
  echo "  readiness: $ready_ok of $ready_total asks said 200"
  echo "  lunet_model_loads_total{model=\"mlp\",result=\"error\"} $errors; versions served now: $(served_versions)"
  printf '%s\n' "$result" | grep -q 'connect=0 write=0 read=0 timeout=0 non2xx=0' ||
    { echo "FAIL: wrk saw errors or non-2xx answers"; failed=1; }
  printf '%s\n' "$versions" | grep -Eq '^VERSIONS 1=[0-9]+ 2=[0-9]+$' ||
    { echo "FAIL: the answers did not come from versions 1 then 2 only"; failed=1; }
  if [ "$ready_ok" != "$ready_total" ] || [ "$ready_total" -eq 0 ]; then
    echo "FAIL: readiness was not 200 throughout"
    failed=1
  fi
  [ "$errors" = 1 ] || { echo "FAIL: the corrupt version was counted $errors times, not once"; failed=1; }
  [ "$(served_versions)" = "1,2" ] || { echo "FAIL: the server does not serve 1 and 2"; failed=1; }
  return "$failed"
}

part2() {
  local v=2 c base="" rss failed=0
  rm -rf "$WORK/models/mlp/1" "$WORK/models/mlp/3"
  wait_for 2
  BODY=$WORK/body.json DELAY_MS=5 wrk -t1 -c4 -d3600s -s bench/wrk_post.lua "$BASE_URL$INFER_PATH" \
    >"$WORK/wrk2.out" &
  local wrk_pid=$!
  for ((c = 1; c <= CYCLES; c++)); do
    roll_out $((v + 1))
    wait_for "$v,$((v + 1))"
    rm -rf "$WORK/models/mlp/$v"
    v=$((v + 1))
    wait_for "$v"
    check_alive "$WORK/lunet-batch-64.log"
    rss=$(rss_kb)
    [ "$c" = "$BASE_CYCLE" ] && base=$rss
    if [ $((c % 20)) = 0 ] || [ "$c" = 1 ]; then printf 'cycle %3d: serving version %d, VmRSS %d KiB\n' "$c" "$v" "$rss"; fi
  done
  kill -INT "$wrk_pid"
  wait "$wrk_pid" || true
  local result growth
  result=$(grep '^RESULT' "$WORK/wrk2.out" || true)
  growth=$(awk -v a="$base" -v b="$rss" 'BEGIN {printf "%.1f", (b - a) * 100 / a}')
  echo "part 2: $CYCLES reload cycles; VmRSS $base KiB after cycle $BASE_CYCLE, $rss KiB after cycle $CYCLES: ${growth}%"
  echo "  light load during the cycles: $result"
  echo "  lunet_model_loads_total{model=\"mlp\",result=\"ok\"} $(metric 'lunet_model_loads_total{model="mlp",result="ok"}')"
  awk -v g="$growth" -v l="$LIMIT_PCT" 'BEGIN {exit !(g <= l)}' || { echo "FAIL: memory grew more than ${LIMIT_PCT}%"; failed=1; }
  printf '%s\n' "$result" | grep -q 'connect=0 write=0 read=0 timeout=0 non2xx=0' ||
    { echo "FAIL: the light load saw errors or non-2xx answers"; failed=1; }
  return "$failed"
}

main() {
  [ "$BASE_CYCLE" -lt "$CYCLES" ] || die "BASE_CYCLE ($BASE_CYCLE) must be below CYCLES ($CYCLES)"
  prepare serve-reload
  cp "$WORK/models/mlp/1/model.safetensors" "$WORK/model.safetensors"
  start_lunet 64 --poll-ms 60000
  log "server pid $SERVER_PID at $BASE_URL"
  local status=0
  part1 || status=1
  part2 || status=1
  if [ "$status" = 0 ]; then echo "PASS: no request failed across the reloads, and memory stayed flat"; fi
  return "$status"
}

main "$@"
