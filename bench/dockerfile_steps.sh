#!/usr/bin/env bash
# Runs the Dockerfile's steps as plain commands, for machines with no Docker engine, and then
# runs the result the way `docker run` and the Kubernetes Deployment would.
#
#   bash bench/dockerfile_steps.sh            (as root: it uses debootstrap, chroot, unshare)
#
# What it does, in a scratch directory that it removes at the end:
#   1. FROM debian:bookworm-slim: a bookworm root made by `debootstrap --variant=minbase`, the
#      same minimal package set the official image is made from, with the image's apt sources
#      (deb.debian.org bookworm, bookworm-updates, bookworm-security).  Each stage starts from a
#      copy of it.
#   2. The Dockerfile itself, read by bench/dockerfile_plan.lua into a list of steps (printed
#      before they run), so this cannot drift from it: RUN runs in the stage's root under chroot
#      (as the stage's USER, in its WORKDIR, with its ENV), in private mount and PID namespaces;
#      COPY copies from a scratch copy of the repository (the files git tracks or would track,
#      from the working tree) or from an earlier stage's root; WORKDIR, ENV and USER set what
#      the next steps use; EXPOSE, STOPSIGNAL, HEALTHCHECK, ENTRYPOINT and CMD are kept for the
#      run.  So the apt-get steps install the Dockerfile's packages into a bookworm root, not onto
#      this machine, and the final stage holds only what its own RUN lines installed.
#   3. In the final root: ldd of lunet/core.so (nothing missing), then a model repository
#      written by the image's own lunet (<repo>/mnist/1/model.safetensors, Flatten + Linear
#      784->10) with a request body and the model's own answer to it.
#   4. `docker run`: ENTRYPOINT + CMD as the image's USER, in private mount, PID and network
#      namespaces (the server is PID 1 and has port 8000 to itself), the repository bind-mounted
#      read-only at /models.  The HEALTHCHECK command runs inside (as `docker` would) until it
#      passes; one OIP v2 inference request is compared with the model's answer; then
#      STOPSIGNAL: the HEALTHCHECK must fail at once (readiness 503), a request during the drain
#      must still be answered, and the server must exit 0.
#   5. deploy/kubernetes: bench/kubernetes_check.py parses the YAML and checks it against itself
#      and the image (ports, probes, grace-period arithmetic, HPA target).  Then the image runs as
#      the Deployment says (its args, runAsUser/runAsGroup/fsGroup, no_new_privs, capability
#      bounding set dropped, a read-only root), the readiness probe's URL until 200, one
#      inference, then what the kubelet does on deletion: the preStop command inside the
#      container, STOPSIGNAL, and the exit (0) must come within terminationGracePeriodSeconds.
#
# What it cannot show: that a Docker engine or a kubelet would do the same (layer caching,
# overlayfs, the real debian:bookworm-slim image (debootstrap's minbase is its recipe, not its
# bytes), the pod network, the probes' own timers, an image registry, the init container).
#
# Ends with "dockerfile_steps: PASS" or "dockerfile_steps: FAIL (...)" and exits 1 on failure.
# Environment: KEEP_WORK=1 keeps the scratch directory; MIRROR [http://deb.debian.org/debian].
# Installs what it runs with when missing (Debian packages, on this machine): debootstrap, curl,
# lua5.4, lua-cjson, python3-yaml.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
SELF=$REPO/bench/dockerfile_steps.sh

DEFAULT_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# ---- inside a namespace: the container side of every step -------------------------------------

# Called through unshare (so in new mount, and maybe PID and network, namespaces) as
#   dockerfile_steps.sh __enter ARGV...
# with ENTER_ROOT, ENTER_OPTS (words: proc dev lo resolv ro-root bind:SRC:DST:ro|rw),
# ENTER_PRIV (setpriv's arguments, one a line; empty: stay root), ENTER_WORKDIR, ENTER_ENV
# (NAME=value, one a line) and optionally ENTER_PIDFILE.  Mounts what it is asked to under the
# root, writes its pid to ENTER_PIDFILE, then execs ARGV there.
enter() {
  local root=$ENTER_ROOT opt src dst mode
  local -a priv=() env=()
  [ -n "$ENTER_PRIV" ] && mapfile -t priv <<<"$ENTER_PRIV"
  [ -n "$ENTER_ENV" ] && mapfile -t env <<<"$ENTER_ENV"
  for opt in $ENTER_OPTS; do
    case $opt in
      lo) ip link set lo up ;;
      ro-root) mount --bind "$root" "$root" ;;
    esac
  done
  for opt in $ENTER_OPTS; do
    case $opt in
      proc) mount -t proc proc "$root/proc" ;;
      dev) mount --rbind /dev "$root/dev" ;;
      resolv)
        [ -e "$root/etc/resolv.conf" ] || : >"$root/etc/resolv.conf"
        mount --bind /etc/resolv.conf "$root/etc/resolv.conf"
        ;;
      bind:*)
        IFS=: read -r _ src dst mode <<<"$opt"
        mount --bind "$src" "$root$dst"
        [ "$mode" = ro ] && mount -o remount,bind,ro "$root$dst"
        ;;
    esac
  done
  case " $ENTER_OPTS " in *" ro-root "*) mount -o remount,bind,ro "$root" ;; esac
  if [ -n "${ENTER_PIDFILE:-}" ]; then
    # This process's pid as the host sees it (/proc is still the host's here; read is a
    # builtin, so /proc/self is this shell); the execs below keep it.
    local host_pid
    read -r host_pid _ </proc/self/stat
    echo "$host_pid" >"$ENTER_PIDFILE"
  fi
  if [ ${#priv[@]} -gt 0 ]; then
    exec chroot "$root" setpriv "${priv[@]}" env -i -C "$ENTER_WORKDIR" "${env[@]}" "$@"
  fi
  exec chroot "$root" env -i -C "$ENTER_WORKDIR" "${env[@]}" "$@"
}

if [ "${1:-}" = __enter ]; then
  shift
  enter "$@"
fi

# ---- reporting ------------------------------------------------------------------------------------

SCRATCH=""
FAILURES=()
CHECKS=0
SERVER_UNSHARE=""
SERVER_PID=""

say() { printf '%s\n' "$*"; }
ran() { printf '  $ %s\n' "$*"; }
check() { # check OK|FAIL what
  CHECKS=$((CHECKS + 1))
  if [ "$1" = OK ]; then
    say "  ok      $2"
  else
    say "  FAILED  $2"
    FAILURES+=("$2")
  fi
}
VERDICT_SAID=0
die() {
  VERDICT_SAID=1
  say "dockerfile_steps: FAIL ($*)"
  exit 1
}
now_ms() { date +%s%3N; }
quoted() { printf '%q ' "$@"; }

# ---- cleanup ------------------------------------------------------------------------------------

stop_server() {
  [ -n "$SERVER_UNSHARE" ] || return 0
  # The server is PID 1 of its namespace: the rest goes with it.  (unshare --kill-child would
  # not take it: the parent-death signal is cleared when setpriv changes the user.)
  if [ -n "$SERVER_PID" ]; then kill -KILL "$SERVER_PID" 2>/dev/null || true; fi
  kill -KILL "$SERVER_UNSHARE" 2>/dev/null || true
  wait "$SERVER_UNSHARE" 2>/dev/null || true
  SERVER_UNSHARE=""
  SERVER_PID=""
}

cleanup() {
  local status=$?
  stop_server
  if [ "$status" -ne 0 ] && [ "$VERDICT_SAID" = 0 ]; then
    say "dockerfile_steps: FAIL (stopped with status $status; the output above says where)"
  fi
  if [ -n "$SCRATCH" ] && [ -d "$SCRATCH" ]; then
    if [ "${KEEP_WORK:-0}" = 1 ]; then
      say "kept $SCRATCH"
    elif findmnt -rno TARGET | grep -q "^$SCRATCH"; then
      # Every mount here was made in a private namespace that is gone by now; one still visible
      # means something else mounted it: leave the directory rather than delete through it.
      say "not removing $SCRATCH: something is still mounted under it"
    else
      rm -rf --one-file-system "$SCRATCH"
    fi
  fi
  exit "$status"
}

# ---- host tools ---------------------------------------------------------------------------------

# shellcheck source=bench/debian_packages.sh
. bench/debian_packages.sh

# ---- the stages -----------------------------------------------------------------------------------

declare -A STAGE_ROOTS=()
STAGE_COUNT=0
STAGE=""
ROOT=""

# What a stage starts with: the base image's settings.
new_stage_settings() {
  WORKDIR=/
  USER_SPEC=""
  ENV_LIST=()
  EXPOSE=()
  STOPSIGNAL=SIGTERM
  HEALTHCHECK_OPTIONS=()
  HEALTHCHECK=()
  ENTRYPOINT=()
  CMD=(bash) # the base image's CMD
  CMD_FROM_BASE=1
}
new_stage_settings
LINE=0
STEP=0

# The bookworm root every FROM debian:bookworm-slim starts from.
make_base() {
  local base=$SCRATCH/base mirror=${MIRROR:-http://deb.debian.org/debian} started
  say "== FROM debian:bookworm-slim, emulated: debootstrap --variant=minbase bookworm"
  ran unshare --mount -- debootstrap --variant=minbase bookworm "$base" "$mirror"
  started=$(now_ms)
  if ! unshare --mount -- debootstrap --variant=minbase bookworm "$base" "$mirror" >"$SCRATCH/logs/debootstrap.log" 2>&1; then
    tail -20 "$SCRATCH/logs/debootstrap.log"
    die "debootstrap failed"
  fi
  # The official image's apt sources.
  rm -f "$base/etc/apt/sources.list"
  cat >"$base/etc/apt/sources.list.d/debian.sources" <<'EOF'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  chroot "$base" apt-get clean
  say "  -> $(chroot "$base" dpkg-query -W -f='.\n' | wc -l) packages, $(du -sh "$base" | cut -f1), $(($(now_ms) - started)) ms"
}

# setpriv's arguments for a USER value (name or uid, optionally :group), one a line; empty for
# root.  Returns 1 for a USER it cannot emulate (callers die: it runs in a command substitution).
priv_for() {
  local spec=$1 root=$2 user group uid gid
  user=${spec%%:*}
  group=""
  [[ $spec == *:* ]] && group=${spec#*:}
  if [ -z "$user" ] || [ "$user" = root ] || [ "$user" = 0 ]; then
    if [ -n "$group" ] && [ "$group" != root ] && [ "$group" != 0 ]; then
      echo "USER $spec: a root user with another group is not emulated" >&2
      return 1
    fi
    return 0
  fi
  if [[ $user =~ ^[0-9]+$ ]]; then
    uid=$user
    gid=${group:-$(awk -F: -v u="$uid" '$3 == u { print $4 }' "$root/etc/passwd")}
    printf -- '--reuid=%s\n--regid=%s\n--clear-groups\n' "$uid" "${gid:-0}"
  else
    gid=${group:-$(awk -F: -v u="$user" '$1 == u { print $4 }' "$root/etc/passwd")}
    if [ -z "$gid" ]; then
      echo "USER $spec: no such user in the stage" >&2
      return 1
    fi
    printf -- '--reuid=%s\n--regid=%s\n--init-groups\n' "$user" "$gid"
  fi
}

# The environment a process in the stage gets: PATH, HOME and HOSTNAME as Docker sets them, then ENV.
env_for() {
  local spec=$1 root=$2 user home kv
  user=${spec%%:*}
  user=${user:-0}
  [ "$user" = root ] && user=0
  home=$(awk -F: -v u="$user" '$1 == u || $3 == u { print $6; exit }' "$root/etc/passwd")
  printf 'PATH=%s\nHOSTNAME=lunet-steps\nHOME=%s\n' "$DEFAULT_PATH" "${home:-/}"
  for kv in "${ENV_LIST[@]}"; do printf '%s\n' "$kv"; done
}

# Runs ARGV in ROOT as USER_SPEC in WORKDIR: unshare [extra flags] -- ... (blocking).
in_root() { # in_root "unshare flags" "enter opts" argv...
  local flags=$1 opts=$2 priv env
  shift 2
  priv=$(priv_for "$USER_SPEC" "$ROOT") || die "line $LINE: USER $USER_SPEC cannot be emulated"
  env=$(env_for "$USER_SPEC" "$ROOT")
  # shellcheck disable=SC2086 # flags are words
  ENTER_ROOT=$ROOT ENTER_OPTS=$opts ENTER_PRIV=$priv ENTER_WORKDIR=$WORKDIR ENTER_ENV=$env \
    unshare $flags -- bash "$SELF" __enter "$@"
}

as_argv() { # as_argv form words...: the argv Docker runs for a shell or exec form
  local form=$1
  shift
  if [ "$form" = shell ]; then printf '%s\0' /bin/sh -c "$1"; else [ $# -eq 0 ] || printf '%s\0' "$@"; fi
}

step_line() { LINE=$1; }

step_from() {
  local image=$1 name=$2
  [ "$image" = debian:bookworm-slim ] || die "line $LINE: FROM $image: only debian:bookworm-slim is emulated"
  STAGE=${name:-$STAGE_COUNT}
  ROOT=$SCRATCH/stages/$STAGE
  STAGE_ROOTS[$STAGE]=$ROOT
  STAGE_ROOTS[$STAGE_COUNT]=$ROOT
  STAGE_COUNT=$((STAGE_COUNT + 1))
  new_stage_settings
  say ""
  say "== line $LINE: FROM $image${name:+ AS $name}  (stage $STAGE)"
  mkdir -p "$SCRATCH/stages"
  ran cp -a "$SCRATCH/base" "$ROOT"
  cp -a "$SCRATCH/base" "$ROOT"
}

step_run() {
  local form=$1 started status=0 log
  shift
  local -a argv
  mapfile -d '' -t argv < <(as_argv "$form" "$@")
  STEP=$((STEP + 1))
  log=$SCRATCH/logs/step-$STEP.log
  say "== line $LINE: RUN (stage $STAGE, as ${USER_SPEC:-root}, in $WORKDIR)"
  ran "chroot $ROOT $(quoted "${argv[@]}")"
  started=$(now_ms)
  in_root "--mount --pid --fork --kill-child" "proc dev resolv" "${argv[@]}" >"$log" 2>&1 || status=$?
  sed 's/^/    | /' "$log" | tail -n 4
  say "  -> exit $status, $(($(now_ms) - started)) ms (whole output: $log)"
  if [ "$status" -ne 0 ]; then
    sed 's/^/    | /' "$log" | tail -n 40
    die "line $LINE: RUN exited $status"
  fi
}

step_workdir() {
  local dir=$1
  [[ $dir == /* ]] || dir=${WORKDIR%/}/$dir
  WORKDIR=$dir
  say "== line $LINE: WORKDIR $dir"
  ran mkdir -p "$ROOT$dir"
  mkdir -p "$ROOT$dir"
}

step_env() {
  while [ $# -ge 2 ]; do
    say "== line $LINE: ENV $1=$2"
    ENV_LIST+=("$1=$2")
    shift 2
  done
}

step_user() {
  USER_SPEC=$1
  say "== line $LINE: USER $1 (later steps and the run use it)"
}

step_copy() {
  local from=$1 chown=$2 source_root dest src path target
  shift 2
  local -a sources=("${@:1:$#-1}")
  dest=${*: -1}
  if [ -n "$from" ]; then
    source_root=${STAGE_ROOTS[$from]:-}
    [ -n "$source_root" ] || die "line $LINE: COPY --from=$from: no such stage (images are not emulated)"
  else
    source_root=$SCRATCH/context
  fi
  [[ $dest == /* ]] || dest=${WORKDIR%/}/$dest
  say "== line $LINE: COPY${from:+ --from=$from}${chown:+ --chown=$chown} ${sources[*]} -> $dest"
  for src in "${sources[@]}"; do
    [[ $src == *[*?[]* ]] && die "line $LINE: COPY with wildcards is not emulated"
    path=$source_root/${src#/}
    [ -e "$path" ] || die "line $LINE: COPY: $src does not exist in ${from:-the build context}"
    if [ -d "$path" ]; then
      target=$ROOT$dest
      ran mkdir -p "$target" "&&" cp -a "$path/." "$target/"
      mkdir -p "$target"
      cp -a "$path/." "$target/"
    elif [[ $dest == */ ]] || [ ${#sources[@]} -gt 1 ]; then
      target=$ROOT${dest%/}/$(basename "$src")
      ran mkdir -p "$ROOT$dest" "&&" cp -a "$path" "$target"
      mkdir -p "$ROOT$dest"
      cp -a "$path" "$target"
    else
      target=$ROOT$dest
      ran mkdir -p "$(dirname "$target")" "&&" cp -a "$path" "$target"
      mkdir -p "$(dirname "$target")"
      cp -a "$path" "$target"
    fi
    # Docker gives copied files uid 0 unless --chown says otherwise.
    ran chroot "$ROOT" chown -R "${chown:-0:0}" "${target#"$ROOT"}"
    chroot "$ROOT" chown -R "${chown:-0:0}" "${target#"$ROOT"}"
  done
}

step_expose() {
  EXPOSE+=("$@")
  say "== line $LINE: EXPOSE $* (checked in the run: the server listens there)"
}

step_stopsignal() {
  STOPSIGNAL=$1
  say "== line $LINE: STOPSIGNAL $1 (sent in the run)"
}

step_healthcheck() {
  HEALTHCHECK_OPTIONS=()
  while [ $# -gt 0 ] && [ "$1" != CMD ] && [ "$1" != NONE ]; do
    HEALTHCHECK_OPTIONS+=("$1")
    shift
  done
  if [ "$1" = NONE ]; then
    HEALTHCHECK=()
  else
    shift
    mapfile -d '' -t HEALTHCHECK < <(as_argv "$@")
  fi
  say "== line $LINE: HEALTHCHECK ${HEALTHCHECK_OPTIONS[*]} CMD $(quoted "${HEALTHCHECK[@]}")(run in the container until it passes)"
}

step_entrypoint() {
  mapfile -d '' -t ENTRYPOINT < <(as_argv "$@")
  # Docker: an ENTRYPOINT drops the CMD the base image set.
  [ "$CMD_FROM_BASE" = 1 ] && CMD=()
  say "== line $LINE: ENTRYPOINT $(quoted "${ENTRYPOINT[@]}")"
}

step_cmd() {
  mapfile -d '' -t CMD < <(as_argv "$@")
  CMD_FROM_BASE=0
  say "== line $LINE: CMD $(quoted "${CMD[@]}")"
}

step_record() { say "== line $LINE: $1 $2 (recorded, nothing to run)"; }

# ---- running the final image ----------------------------------------------------------------------

# Starts the final stage's process ARGV in new mount, PID and network namespaces with the
# models read-only at /models; sets SERVER_UNSHARE (unshare's pid, whose status is the server's)
# and SERVER_PID (the server, PID 1 inside).  OPTS adds enter()'s words (ro-root).
start_container() { # start_container log opts argv...
  local log=$1 opts=$2 i
  shift 2
  local pidfile=$SCRATCH/server.pid
  rm -f "$pidfile"
  # exec, so that $! is unshare itself, whose exit status is the server's.
  (
    export ENTER_ROOT=$ROOT ENTER_OPTS="lo proc dev bind:$MODELS:/models:ro $opts" ENTER_PRIV=$RUN_PRIV \
      ENTER_WORKDIR=$WORKDIR ENTER_PIDFILE=$pidfile ENTER_ENV
    ENTER_ENV=$(env_for "$RUN_USER" "$ROOT")
    exec unshare --mount --net --pid --fork --kill-child -- bash "$SELF" __enter "$@" >"$log" 2>&1
  ) &
  SERVER_UNSHARE=$!
  for ((i = 0; i < 100; i++)); do
    [ -s "$pidfile" ] && SERVER_PID=$(<"$pidfile") && return 0
    kill -0 "$SERVER_UNSHARE" 2>/dev/null || break
    sleep 0.1
  done
  cat "$log"
  die "the container process did not start"
}

# Runs ARGV inside the running container (docker exec): its namespaces, root, user, workdir, env.
in_container() {
  local -a priv=()
  [ -n "$RUN_PRIV" ] && mapfile -t priv <<<"$RUN_PRIV"
  local -a env
  mapfile -t env < <(env_for "$RUN_USER" "$ROOT")
  if [ ${#priv[@]} -gt 0 ]; then
    nsenter --target "$SERVER_PID" --mount --net --pid -- chroot "$ROOT" setpriv "${priv[@]}" \
      env -i -C "$WORKDIR" "${env[@]}" "$@"
  else
    nsenter --target "$SERVER_PID" --mount --net --pid -- chroot "$ROOT" env -i -C "$WORKDIR" "${env[@]}" "$@"
  fi
}

# curl from the container's network namespace (what a published port or a pod IP reaches).
curl_in() { nsenter --target "$SERVER_PID" --net -- curl "$@"; }

http_code() { curl_in -s -o /dev/null -m 2 -w '%{http_code}' "http://127.0.0.1:$1$2" || true; }

# One inference: POST the body, compare the answer with the model's own; prints what it got.
infer_and_compare() { # port label
  local port=$1 label=$2 code
  code=$(curl_in -s -m 10 -o "$SCRATCH/out/answer.json" -w '%{http_code}' -H 'Content-Type: application/json' \
    --data-binary @"$SCRATCH/out/body.json" "http://127.0.0.1:$port/v2/models/mnist/infer" || true)
  say "  $ curl -X POST http://127.0.0.1:$port/v2/models/mnist/infer --data-binary @body.json  ($(stat -c %s "$SCRATCH/out/body.json") bytes, 784 numbers)"
  say "    -> HTTP $code $(head -c 300 "$SCRATCH/out/answer.json" 2>/dev/null)"
  local verdict
  verdict=$(lua5.4 - "$SCRATCH/out/answer.json" "$SCRATCH/out/expected.json" <<'EOF'
local cjson = require("cjson")
local function read(path) local f = assert(io.open(path)); local s = f:read("a"); f:close(); return s end
local ok, answer = pcall(cjson.decode, read(arg[1]))
local expected = cjson.decode(read(arg[2]))
if not ok or type(answer.outputs) ~= "table" or not answer.outputs[1] then print("no outputs"); return end
local out = answer.outputs[1]
if out.datatype ~= "FP32" or #out.data ~= #expected then print("datatype " .. tostring(out.datatype) .. ", " .. #out.data .. " values"); return end
local worst = 0
for i, e in ipairs(expected) do worst = math.max(worst, math.abs(out.data[i] - e) / math.max(1, math.abs(e))) end
print(string.format("%s %d values, largest difference from model:predict %.3g", worst <= 1e-4 and "same" or "differs", #expected, worst))
EOF
)
  say "    $verdict"
  if [ "$code" = 200 ] && [[ $verdict == same* ]]; then
    check OK "$label: inference answered 200 with the model's outputs"
  else
    check FAIL "$label: inference answered $code ($verdict)"
  fi
}

# HEALTHCHECK until it passes (each second, where Docker would wait --interval; --timeout each).
healthcheck_until_healthy() {
  local timeout=30 opt i status
  for opt in "${HEALTHCHECK_OPTIONS[@]}"; do
    [[ $opt == --timeout=* ]] && timeout=${opt#--timeout=}
  done
  say "  $ (inside the container, as ${RUN_USER:-root}) timeout $timeout $(quoted "${HEALTHCHECK[@]}")"
  for ((i = 1; i <= 60; i++)); do
    status=0
    in_container timeout "$timeout" "${HEALTHCHECK[@]}" >/dev/null 2>&1 || status=$?
    say "    attempt $i: exit $status"
    if [ "$status" = 0 ]; then
      check OK "docker run: HEALTHCHECK passes (attempt $i)"
      return 0
    fi
    kill -0 "$SERVER_UNSHARE" 2>/dev/null || break
    sleep 1
  done
  check FAIL "docker run: HEALTHCHECK never passed"
  return 1
}

wait_exit() { # sets EXIT_STATUS and EXIT_MS (since $1), waiting at most $2 s
  local since=$1 limit=$2 i
  for ((i = 0; i < limit * 10; i++)); do
    kill -0 "$SERVER_UNSHARE" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$SERVER_UNSHARE" 2>/dev/null; then
    EXIT_STATUS=timeout
  else
    EXIT_STATUS=0
    wait "$SERVER_UNSHARE" || EXIT_STATUS=$?
  fi
  EXIT_MS=$(($(now_ms) - since))
  SERVER_UNSHARE=""
  SERVER_PID=""
}

main() {
  [ "$(id -u)" = 0 ] || die "run as root: debootstrap, chroot and unshare need it"
  install_missing debootstrap curl lua5.4 lua-cjson python3-yaml
  SCRATCH=$(mktemp -d /tmp/dockerfile-steps.XXXXXX)
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  mkdir -p "$SCRATCH/logs" "$SCRATCH/context" "$SCRATCH/out"
  local started
  started=$(now_ms)

  say "== the build context: the working tree's files that git tracks or would track"
  ran "git ls-files -z --cached --others --exclude-standard | tar --null -T - -cf - | tar -xf - -C $SCRATCH/context"
  git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
    if [ -e "$f" ]; then printf '%s\0' "$f"; fi # not the files deleted in the working tree
  done | tar --null -T - -cf - | tar -xf - -C "$SCRATCH/context"
  say "  -> $(find "$SCRATCH/context" -type f | wc -l) files at $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . || echo ' with uncommitted changes')"

  say ""
  say "== the plan: lua5.4 bench/dockerfile_plan.lua Dockerfile"
  lua5.4 bench/dockerfile_plan.lua Dockerfile >"$SCRATCH/plan.sh" || die "the Dockerfile could not be read"
  grep -v '^step_line' "$SCRATCH/plan.sh" | sed 's/^/  /'

  say ""
  make_base
  # shellcheck disable=SC1091 # the plan is written above
  . "$SCRATCH/plan.sh"
  local build_ms=$(($(now_ms) - started))
  say ""
  say "== the image is stage $STAGE: $(du -sh "$ROOT" | cut -f1) unpacked, built in $((build_ms / 1000)) s"
  check OK "every step of the Dockerfile ran"

  # -- what the image holds ---------------------------------------------------------------------
  say ""
  say "== ldd /app/lunet/core.so in the image"
  local ldd_out
  ldd_out=$(chroot "$ROOT" ldd "$WORKDIR/lunet/core.so" 2>&1 || true)
  printf '%s\n' "$ldd_out" | sed 's/^/    /'
  if grep -q 'not found' <<<"$ldd_out" || ! grep -q libdnnl <<<"$ldd_out"; then
    check FAIL "a library lunet/core.so needs is missing from the image"
  else
    check OK "every library lunet/core.so links is in the image (final stage's packages only)"
  fi
  local dev_packages
  # shellcheck disable=SC2016 # dpkg-query's format, not the shell's
  dev_packages=$(chroot "$ROOT" dpkg-query -W -f='${Package}\n' | grep -E -- '-dev$|^(gcc|cpp|g\+\+)(-[0-9]+)?$|^make$|^binutils' | tr '\n' ' ' || true)
  if [ -z "$dev_packages" ]; then
    check OK "no compiler or -dev package in the image"
  else
    check FAIL "the image holds build packages: $dev_packages"
  fi

  # -- a model repository, written by the image's own lunet (set-up, run as root) ----------------
  say ""
  say "== a model repository and a request, written by the image's lunet (set-up step, as root)"
  RUN_USER=""
  RUN_PRIV=""
  cat >"$SCRATCH/out/setup.lua" <<'EOF'
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
local lunet = require("lunet")
local cjson = require("cjson")
local lfs = require("lfs")
lunet.manual_seed(7)
local l = lunet
local model = l.nn.Sequential(l.nn.Flatten(), l.nn.Linear(784, 10))
for _, dir in ipairs({ "/out/models", "/out/models/mnist", "/out/models/mnist/1" }) do lfs.mkdir(dir) end
model:save("/out/models/mnist/1/model.safetensors", { input_shape = { 1, 28, 28 } })
local data = {}
for i = 1, 784 do data[i] = ((i * 37) % 256) / 256 end
local logits = model:predict(lunet.tensor(data):reshape({ 1, 1, 28, 28 })):reshape({ 10 }):totable()
local function write(path, text) local f = assert(io.open(path, "w")); f:write(text); f:close() end
write("/out/body.json", cjson.encode({ inputs = { { name = "input", shape = { 1, 1, 28, 28 }, datatype = "FP32", data = data } } }))
write("/out/expected.json", cjson.encode(logits))
print("model:predict: " .. table.concat(logits, " ", 1, 3) .. " ...")
EOF
  local saved_user=$USER_SPEC
  USER_SPEC=""
  ran "chroot $ROOT lua5.4 /out/setup.lua  (cwd $WORKDIR; $SCRATCH/out bind-mounted at /out)"
  mkdir -p "$ROOT/out"
  in_root "--mount --pid --fork --kill-child" "proc dev bind:$SCRATCH/out:/out:rw" lua5.4 /out/setup.lua 2>&1 |
    sed 's/^/    /' || true # judged by the files it writes, just below
  rmdir "$ROOT/out"
  USER_SPEC=$saved_user
  MODELS=$SCRATCH/out/models
  [ -f "$MODELS/mnist/1/model.safetensors" ] || die "the model repository was not written"
  chmod -R a+rX "$MODELS"
  say "  -> $(find "$MODELS" -type f -printf '%P (%s bytes)\n')"

  # -- docker run ----------------------------------------------------------------------------------
  local port=${EXPOSE[0]%/*} t0 code
  local -a argv=("${ENTRYPOINT[@]}" "${CMD[@]}")
  RUN_USER=$USER_SPEC
  RUN_PRIV=$(priv_for "$RUN_USER" "$ROOT") || die "USER $RUN_USER cannot be emulated"
  say ""
  say "== docker run -v models:/models:ro: ENTRYPOINT + CMD as USER ${RUN_USER:-root}, PID 1 of new mount, PID and network namespaces"
  ran "chroot $ROOT setpriv $(tr '\n' ' ' <<<"$RUN_PRIV")env -i -C $WORKDIR ... $(quoted "${argv[@]}")"
  start_container "$SCRATCH/logs/docker-run.log" "" "${argv[@]}"
  healthcheck_until_healthy || true
  sed 's/^/    | /' "$SCRATCH/logs/docker-run.log" | head -n 5
  if grep -q "listening on http://0.0.0.0:$port " "$SCRATCH/logs/docker-run.log"; then
    check OK "docker run: the server listens on the EXPOSEd port $port"
  else
    check FAIL "docker run: no 'listening on http://0.0.0.0:$port' line"
  fi
  local who
  who=$(ps -o user=,pid= -p "$SERVER_PID" 2>/dev/null || true)
  if [ -n "$who" ] && [ "${who%% *}" != root ] && [ "${who%% *}" != 0 ]; then
    check OK "docker run: the server runs as uid ${who%% *}, not root"
  else
    check FAIL "docker run: the server runs as '$who'"
  fi
  local nspid
  nspid=$(awk '/^NSpid:/ { print $NF }' "/proc/$SERVER_PID/status" 2>/dev/null || true)
  if [ "$nspid" = 1 ]; then
    check OK "docker run: the server is PID 1 in its PID namespace, as in a container"
  else
    check FAIL "docker run: the server is PID '$nspid' in its namespace"
  fi
  infer_and_compare "$port" "docker run"

  say "  $ kill -s $STOPSIGNAL <server>   (docker stop)"
  t0=$(now_ms)
  kill -s "$STOPSIGNAL" "$SERVER_PID"
  sleep 0.2
  local hc=0
  in_container timeout 3 "${HEALTHCHECK[@]}" >/dev/null 2>&1 || hc=$?
  code=$(http_code "$port" /v2/health/ready)
  say "    0.2 s after: HEALTHCHECK exit $hc, /v2/health/ready $code"
  if [ "$hc" != 0 ] && [ "$code" = 503 ]; then
    check OK "docker stop: readiness 503 and the HEALTHCHECK fails at once"
  else
    check FAIL "docker stop: HEALTHCHECK exit $hc, readiness $code"
  fi
  infer_and_compare "$port" "docker stop, during the drain delay"
  wait_exit "$t0" 40
  sed 's/^/    | /' "$SCRATCH/logs/docker-run.log" | tail -n 3
  say "    exit status $EXIT_STATUS, $EXIT_MS ms after the signal"
  if [ "$EXIT_STATUS" = 0 ]; then
    check OK "docker stop: the server exits 0 ($EXIT_MS ms after $STOPSIGNAL)"
  else
    check FAIL "docker stop: exit status $EXIT_STATUS"
  fi

  # -- Kubernetes ------------------------------------------------------------------------------------
  say ""
  say "== deploy/kubernetes: /usr/bin/python3 bench/kubernetes_check.py deploy/kubernetes $port <the image's uid>"
  local image_uid=${RUN_USER%%:*} k8s
  [[ $image_uid =~ ^[0-9]+$ ]] || image_uid=$(awk -F: -v u="$image_uid" '$1 == u { print $3 }' "$ROOT/etc/passwd")
  if k8s=$(/usr/bin/python3 bench/kubernetes_check.py deploy/kubernetes "$port" "$image_uid" 2>"$SCRATCH/logs/k8s.log"); then
    sed 's/^/  /' "$SCRATCH/logs/k8s.log"
    check OK "deploy/kubernetes: the YAML parses and agrees with itself and the image ($(grep -c '^ok' "$SCRATCH/logs/k8s.log") checks)"
  else
    sed 's/^/  /' "$SCRATCH/logs/k8s.log"
    check FAIL "deploy/kubernetes: $(grep -c '^FAILED' "$SCRATCH/logs/k8s.log" || true) checks failed"
  fi
  [ -n "$k8s" ] || die "bench/kubernetes_check.py printed nothing"
  eval "$k8s"

  say ""
  local opts="" groups=""
  [ "$K8S_READONLY_ROOT" = 1 ] && opts=ro-root
  [ -n "$K8S_FS_GROUP" ] && groups="--groups=$K8S_FS_GROUP" || groups=--clear-groups
  RUN_USER="$K8S_UID:$K8S_GID"
  RUN_PRIV=$(printf -- '--reuid=%s\n--regid=%s\n%s\n' "$K8S_UID" "$K8S_GID" "$groups")
  [ "$K8S_NO_NEW_PRIVS" = 1 ] && RUN_PRIV+=$'\n--no-new-privs'
  [ "$K8S_DROP_ALL" = 1 ] && RUN_PRIV+=$'\n--bounding-set=-all\n--inh-caps=-all'
  argv=("${ENTRYPOINT[@]}" "${K8S_ARGS[@]}")
  say "== the Deployment's container: ENTRYPOINT + args, uid $K8S_UID gid $K8S_GID, $([ "$K8S_READONLY_ROOT" = 1 ] && echo 'read-only root' || echo 'writable root'), models at $K8S_MODELS (ro)"
  ran "chroot $ROOT setpriv $(tr '\n' ' ' <<<"$RUN_PRIV")env -i -C $WORKDIR ... $(quoted "${argv[@]}")"
  [ "$K8S_MODELS" = /models ] || die "the Deployment's --models is $K8S_MODELS; this run mounts the repository at /models"
  start_container "$SCRATCH/logs/k8s-run.log" "$opts" "${argv[@]}"
  local i ready=""
  for ((i = 1; i <= 120; i++)); do
    code=$(http_code "$K8S_PORT" "$K8S_READY_PATH")
    [ "$code" = 200 ] && ready=$i && break
    kill -0 "$SERVER_UNSHARE" 2>/dev/null || break
    sleep 0.5
  done
  sed 's/^/    | /' "$SCRATCH/logs/k8s-run.log" | head -n 5
  if [ -n "$ready" ]; then
    check OK "Kubernetes: readinessProbe GET $K8S_READY_PATH is 200 (poll $ready)"
  else
    check FAIL "Kubernetes: readinessProbe never 200 (last $code)"
  fi
  code=$(http_code "$K8S_PORT" "$K8S_LIVE_PATH")
  if [ "$code" = 200 ]; then
    check OK "Kubernetes: livenessProbe GET $K8S_LIVE_PATH is 200"
  else
    check FAIL "Kubernetes: livenessProbe $code"
  fi
  local writable
  # shellcheck disable=SC2016 # expanded by the container's shell
  writable=$(in_container sh -c 'for d in /tmp /app /models; do touch $d/.w 2>/dev/null && echo $d; done' || true)
  if [ -z "$writable" ]; then
    check OK "Kubernetes: the container can write none of /tmp, /app, /models (read-only root), and serves"
  else
    check FAIL "Kubernetes: writable: $writable"
  fi
  infer_and_compare "$K8S_PORT" "Kubernetes"
  say "    the server's resident memory now: $(awk '/^VmRSS:/ { print $2, $3 }' "/proc/$SERVER_PID/status"), $(awk '/^Threads:/ { print $2 }' "/proc/$SERVER_PID/status") threads (not a check)"

  say "  pod deletion: preStop, then $STOPSIGNAL, within terminationGracePeriodSeconds $K8S_GRACE"
  say "  $ (inside the container) $(quoted "${K8S_PRESTOP[@]}")"
  t0=$(now_ms)
  in_container "${K8S_PRESTOP[@]}" || check FAIL "Kubernetes: the preStop command failed"
  local pre_ms=$(($(now_ms) - t0))
  say "    preStop returned after $pre_ms ms; $ kill -s $STOPSIGNAL <server>"
  kill -s "$STOPSIGNAL" "$SERVER_PID"
  sleep 0.2
  code=$(http_code "$K8S_PORT" "$K8S_READY_PATH")
  if [ "$code" = 503 ]; then
    check OK "Kubernetes: readinessProbe is 503 0.2 s after $STOPSIGNAL"
  else
    check FAIL "Kubernetes: readinessProbe $code after $STOPSIGNAL"
  fi
  wait_exit "$t0" "$K8S_GRACE"
  sed 's/^/    | /' "$SCRATCH/logs/k8s-run.log" | tail -n 3
  say "    exit status $EXIT_STATUS, $EXIT_MS ms after preStop began (preStop ${K8S_PRESTOP[*]}, drain ${K8S_DRAIN_MS} ms)"
  if [ "$EXIT_STATUS" = 0 ] && [ "$EXIT_MS" -le $((K8S_GRACE * 1000)) ]; then
    check OK "Kubernetes: exit 0 after $EXIT_MS ms <= terminationGracePeriodSeconds $K8S_GRACE s"
  else
    check FAIL "Kubernetes: exit $EXIT_STATUS after $EXIT_MS ms (grace $K8S_GRACE s)"
  fi

  say ""
  if [ ${#FAILURES[@]} -eq 0 ]; then
    say "dockerfile_steps: PASS ($CHECKS checks, $((($(now_ms) - started) / 1000)) s)"
  else
    VERDICT_SAID=1
    say "dockerfile_steps: FAIL (${#FAILURES[@]} of $CHECKS checks: ${FAILURES[*]})"
    exit 1
  fi
}

main "$@"
