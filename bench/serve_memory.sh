#!/usr/bin/env bash
# Serving memory check: does the server's resident memory stay flat over a million requests?
# Starts lunet's server (examples/serve.lua, the reference MLP of bench/serve_setup.lua, batching
# on) and drives it with wrk in short runs that take turns: JSON infer, binary infer, and a
# truncated JSON body (400, which closes the connection, so wrk reconnects: connections come
# and go too).  After each run it reads the requests answered (the sum of /metrics'
# lunet_requests_total for the model) and the server's VmRSS, and at the end compares the
# resident memory after TOTAL requests with its level after the first FIRST.
#
#   bash bench/serve_memory.sh                     # 1,000,000 requests, the baseline at 100,000
#   TOTAL=200000 FIRST=20000 bash bench/serve_memory.sh
#
# Prints one line per run and a verdict; exits 1 when the memory grew by more than LIMIT_PCT
# percent, or a run had socket errors.  Environment (defaults in brackets): TOTAL [1000000],
# FIRST [100000], LIMIT_PCT [10], CHUNK [1s] per wrk run, CONNECTIONS [32], LUNET_THREADS [2],
# LUNET_PORT [0: any free port], KEEP_WORK [0].
#
# Needs the Debian packages wrk, curl, lua5.4, lua-cjson and dataset-fashion-mnist (installed
# when missing, as root or through sudo), and lunet built in the tree (make).
set -euo pipefail
cd "$(dirname "$0")/.."

TOTAL=${TOTAL:-1000000}
FIRST=${FIRST:-100000}
LIMIT_PCT=${LIMIT_PCT:-10}
CHUNK=${CHUNK:-1s}
CONNECTIONS=${CONNECTIONS:-32}

# shellcheck source=bench/serve_common.sh
. bench/serve_common.sh

answered() {
  curl -s "$BASE_URL/metrics" | awk '/^lunet_requests_total\{model="mlp",/ {n += $2} END {printf "%d\n", n}'
}

# run KIND: one wrk run of CHUNK; fails on socket errors (non-2xx are expected for KIND=bad).
run() {
  local out errors
  case $1 in
  json) out=$(BODY=$WORK/body.json wrk -t2 -c"$CONNECTIONS" -d"$CHUNK" -s "$SHARED/bench/post.lua" "$BASE_URL$INFER_PATH") ;;
  bad) out=$(BODY=$WORK/bad.json wrk -t2 -c"$CONNECTIONS" -d"$CHUNK" -s "$SHARED/bench/post.lua" "$BASE_URL$INFER_PATH") ;;
  binary)
    out=$(HEADER=$WORK/binary_header.json TENSOR=$WORK/binary_tensor.bin \
      wrk -t2 -c"$CONNECTIONS" -d"$CHUNK" -s bench/post_binary.lua "$BASE_URL$INFER_PATH")
    ;;
  esac
  errors=$(printf '%s\n' "$out" | sed -n 's/^RESULT .* errors=\([0-9]*\) .*/\1/p')
  [ "$1" = bad ] || [ "${errors:-1}" = 0 ] || die "wrk $1 run had socket errors: $out"
}

main() {
  prepare serve-memory
  head -c 2000 "$WORK/body.json" >"$WORK/bad.json" # truncated JSON: 400
  start_lunet 64
  local kinds=(json binary bad) i=0 n=0 rss base="" base_n=0
  log "server pid $SERVER_PID at $BASE_URL; $TOTAL requests, baseline after $FIRST"
  while [ "$n" -lt "$TOTAL" ]; do
    run "${kinds[i % 3]}"
    check_alive "$WORK/lunet-batch-64.log"
    n=$(answered)
    rss=$(rss_kb)
    printf 'after %-6s run: %9d requests answered, VmRSS %7d KiB\n' "${kinds[i % 3]}" "$n" "$rss"
    if [ -z "$base" ] && [ "$n" -ge "$FIRST" ]; then base=$rss base_n=$n; fi
    i=$((i + 1))
  done
  local growth
  growth=$(awk -v a="$base" -v b="$rss" 'BEGIN {printf "%.1f", (b - a) * 100 / a}')
  echo
  echo "VmRSS after $base_n requests: $base KiB; after $n: $rss KiB; growth $growth% (limit $LIMIT_PCT%)"
  if awk -v g="$growth" -v l="$LIMIT_PCT" 'BEGIN {exit !(g > l)}'; then
    echo "FAIL: resident memory grew by more than $LIMIT_PCT%"
    exit 1
  fi
  echo "PASS: resident memory stayed within $LIMIT_PCT%"
}

main "$@"
