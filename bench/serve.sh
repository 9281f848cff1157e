#!/usr/bin/env bash
# Serving load benchmark: wrk against lunet's server (examples/serve.lua) and, side by side, the
# Flask + gunicorn + PyTorch peer (../shared/bench/flask_peer.py under gunicorn -w 2), both
# serving the reference MLP (Flatten -> Linear(784, 128) -> ReLU -> Linear(128, 10)) and both
# sent the same request: one Fashion-MNIST test image as an Open Inference Protocol v2 body.
#
#   bash bench/serve.sh                          # every run below, 10 s each, one round
#   DURATION=30s ROUNDS=3 bash bench/serve.sh    # the figures for the docs: medians of 3 rounds
#   PEERS=flask bash bench/serve.sh              # the Flask peer alone (PEERS=lunet: lunet alone)
#
# Runs (wrk -t2, POST /v2/models/mlp/infer):
#   Flask peer  JSON    32 connections            (the JSON body through ../shared/bench/post.lua)
#   lunet       JSON    32 connections, batching on
#   lunet       binary  32 connections, batching on (Triton's binary tensor extension, bench/post_binary.lua)
#   lunet       JSON    64 connections, batching on and off (--max-batch-size MAX_BATCH vs 1)
#   lunet       JSON     1 connection,  batching on and off
# Each server is started for its runs, warmed with one short unmeasured wrk run, and stopped
# with SIGTERM.  Rounds alternate the order (Flask, lunet batching on, lunet batching off, then
# the reverse), so slow drift on a shared machine does not favour one side.  Prints a Markdown
# table of the medians and the ratios the serving issue's acceptance names, and exits non-zero
# when a run had errors or non-2xx responses.
#
# Mind the machine: wrk and the server under test share its cores (2 on the development
# machine), so a server is measured with wrk's two threads taking CPU beside it; read ratios
# between runs of one session rather than absolute figures.
#
# Environment (defaults in brackets): DURATION [10s] per measured run, WARMUP [2s], ROUNDS [1],
# PEERS ["flask lunet"], WRK_THREADS [2] (capped at the connections), LUNET_THREADS [2]
# (--threads), MAX_BATCH [64] (--max-batch-size with batching on), FLASK_PORT [8501],
# LUNET_PORT [0: any free port], IMAGE [1] (which test image), SHARED [../shared, relative to
# the repository root], KEEP_WORK [0] (1 keeps the scratch directory of bodies, models and logs;
# it is kept anyway when the script fails).
#
# Needs: Debian 12 packages wrk, gunicorn, python3-flask, python3-torch, curl, lua5.4, lua-cjson
# and dataset-fashion-mnist (installed here when missing, as root or through sudo), and lunet
# built in the tree (make).  Run it from anywhere: it changes to the repository root.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
ROUNDS=${ROUNDS:-1}
PEERS=${PEERS:-flask lunet}
WRK_THREADS=${WRK_THREADS:-2}
MAX_BATCH=${MAX_BATCH:-64}
FLASK_PORT=${FLASK_PORT:-8501}
IMAGE=${IMAGE:-1}

PACKAGES=(wrk gunicorn python3-flask python3-torch curl lua5.4 lua-cjson dataset-fashion-mnist)

SEGMENTS=()
ROUND=0

# shellcheck source=bench/serve_common.sh
. bench/serve_common.sh

start_flask() {
  local log_file=$WORK/flask.log
  /usr/bin/python3 -m gunicorn -w 2 -b "127.0.0.1:$FLASK_PORT" --chdir "$SHARED/bench" flask_peer:app \
    >>"$log_file" 2>&1 &
  SERVER_PID=$!
  BASE_URL=http://127.0.0.1:$FLASK_PORT
  wait_ready "$log_file"
}

# One request with curl before the load: a server that answers it with an error would make
# wrk's figures meaningless.  check_request json|binary
check_request() {
  local out=$WORK/check-$1.out code
  if [ "$1" = json ]; then
    code=$(curl -s -o "$out" -w '%{http_code}' -H 'Content-Type: application/json' \
      --data-binary "@$WORK/body.json" "$BASE_URL$INFER_PATH")
  else
    code=$(cat "$WORK/binary_header.json" "$WORK/binary_tensor.bin" | curl -s -o "$out" -w '%{http_code}' \
      -H 'Content-Type: application/octet-stream' \
      -H "Inference-Header-Content-Length: $(wc -c <"$WORK/binary_header.json")" \
      --data-binary @- "$BASE_URL$INFER_PATH")
  fi
  [ "$code" = 200 ] || die "a $1 request to $BASE_URL$INFER_PATH got HTTP $code: $(head -c 300 "$out")"
}

# wrk_run BODY CONNECTIONS DURATION: prints wrk's output (its last line is the RESULT line).
wrk_run() {
  local threads=$((WRK_THREADS < $2 ? WRK_THREADS : $2))
  local url=$BASE_URL$INFER_PATH
  if [ "$1" = json ]; then
    BODY=$WORK/body.json wrk -t"$threads" -c"$2" -d"$3" -s "$SHARED/bench/post.lua" --latency "$url"
  else
    HEADER=$WORK/binary_header.json TENSOR=$WORK/binary_tensor.bin \
      wrk -t"$threads" -c"$2" -d"$3" -s bench/post_binary.lua --latency "$url"
  fi
}

# measure PEER BODY BATCHING CONNECTIONS: one measured wrk run, recorded for serve_report.lua.
measure() {
  local out result
  log "round $ROUND: $1 $2 batching=$3 c=$4 for $DURATION"
  out=$(wrk_run "$2" "$4" "$DURATION" 2>&1) || log "wrk failed: $out"
  printf '== round %s: %s %s batching=%s c=%s\n%s\n' "$ROUND" "$1" "$2" "$3" "$4" "$out" >>"$WORK/wrk.log"
  result=$(printf '%s\n' "$out" | grep '^RESULT ' | tail -n 1 || true)
  log "  ${result:-no RESULT line: $out}"
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$ROUND" "${result:-RESULT missing}" >>"$WORK/results.tsv"
}

# warm_up: one short unmeasured run, so that first-request costs stay out of the figures.
warm_up() {
  wrk_run json 32 "$WARMUP" >>"$WORK/wrk.log" 2>&1 || true
}

# segment NAME [reverse]: start one server, make its runs, stop it.
segment() {
  local runs=() i
  case $1 in
  flask)
    runs=("flask json - 32")
    start_flask
    check_request json
    ;;
  lunet-on)
    runs=("lunet json on 32" "lunet binary on 32" "lunet json on 64" "lunet json on 1")
    start_lunet "$MAX_BATCH"
    check_request json
    check_request binary
    ;;
  lunet-off)
    runs=("lunet json off 64" "lunet json off 1")
    start_lunet 1
    check_request json
    ;;
  esac
  warm_up
  local run=()
  if [ "${2:-}" = reverse ]; then
    for ((i = ${#runs[@]} - 1; i >= 0; i--)); do
      read -r -a run <<<"${runs[i]}"
      measure "${run[@]}"
    done
  else
    for ((i = 0; i < ${#runs[@]}; i++)); do
      read -r -a run <<<"${runs[i]}"
      measure "${run[@]}"
    done
  fi
  stop_server
}

# Sets SEGMENTS to this benchmark's segments, in the order of a forward round.
choose_segments() {
  local peer
  SEGMENTS=()
  for peer in $PEERS; do
    case $peer in
    flask) SEGMENTS+=(flask) ;;
    lunet) SEGMENTS+=(lunet-on lunet-off) ;;
    *) die "PEERS must name flask and/or lunet, got $peer" ;;
    esac
  done
  [ ${#SEGMENTS[@]} -gt 0 ] || die "PEERS names no peer"
}

main() {
  install_missing "${PACKAGES[@]}"
  if [ ! -f "$SHARED/bench/flask_peer.py" ] || [ ! -f "$SHARED/bench/post.lua" ]; then
    die "no flask_peer.py and post.lua in $SHARED/bench (set SHARED)"
  fi
  choose_segments
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/lunet-serve-bench.XXXXXX")
  mkdir -p "$WORK/models/mlp/1"
  lua5.4 bench/serve_setup.lua "$WORK" "$IMAGE" >&2
  : >"$WORK/results.tsv"
  local name i
  for ((ROUND = 1; ROUND <= ROUNDS; ROUND++)); do
    if ((ROUND % 2 == 1)); then
      for name in "${SEGMENTS[@]}"; do segment "$name"; done
    else
      for ((i = ${#SEGMENTS[@]} - 1; i >= 0; i--)); do segment "${SEGMENTS[i]}" reverse; done
    fi
  done
  echo
  echo "medians of $ROUNDS round(s), wrk -t$WRK_THREADS, $DURATION per run, lunet --threads $LUNET_THREADS," \
    "batching on = --max-batch-size $MAX_BATCH, JSON body $(wc -c <"$WORK/body.json") bytes," \
    "$(nproc) cores shared by wrk and the server"
  echo
  lua5.4 bench/serve_report.lua "$WORK/results.tsv"
}

main "$@"
