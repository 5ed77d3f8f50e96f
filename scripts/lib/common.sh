# Shared helpers for ORIEN's scripts. Source it; it defines functions and exports
# CARGO_TARGET_DIR, nothing else happens at source time.
# shellcheck shell=bash

ORIEN_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export ORIEN_ROOT
# A warm target directory outside the clone keeps CI in fresh clones fast.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/orien/target}
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
# CI builds each fresh clone once: incremental state (kept per clone path) would only
# fill the shared target directory.
if [ "${CI:-}" = true ]; then export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}; fi

step() { printf '\n==> %s\n' "$*"; }
info() { printf '    %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# ensure_apt PKG... — installs the Debian packages that are not installed yet.
ensure_apt() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  info "installing Debian packages: ${missing[*]}"
  if [ ! -f /var/lib/apt/lists/.orien-updated ] || [ -n "$(find /var/lib/apt/lists/.orien-updated -mmin +1440 2>/dev/null)" ]; then
    as_root apt-get update -qq && as_root touch /var/lib/apt/lists/.orien-updated
  fi
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || die "apt-get install ${missing[*]} failed"
}

# ensure_rust — cargo with rustfmt and clippy.
ensure_rust() {
  if ! command -v cargo >/dev/null 2>&1; then
    [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
  fi
  if ! command -v cargo >/dev/null 2>&1; then
    ensure_apt curl ca-certificates
    info "installing the Rust toolchain with rustup"
    curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal -c rustfmt,clippy >/dev/null \
      || die "could not install Rust; install it from https://rustup.rs and run again"
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
  if command -v rustup >/dev/null 2>&1; then
    for component in rustfmt clippy; do
      rustup component list --installed 2>/dev/null | grep -q "^$component" || rustup component add "$component" >/dev/null
    done
  fi
}

# ensure_build_deps — C/C++ toolchain and libclang for RocksDB's bindgen build.
ensure_build_deps() {
  ensure_apt build-essential clang libclang-dev pkg-config
}
