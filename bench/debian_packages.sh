# shellcheck shell=bash
# install_missing PACKAGE...: installs the Debian packages of the list that are missing, as the
# Makefile's deps rule does (as root, or through sudo).  Sourced by the bench scripts.
install_missing() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  printf '%s: installing Debian packages: %s\n' "$(basename "$0")" "${missing[*]}" >&2
  local sudo=()
  [ "$(id -u)" = 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}
