# Fuzzing: coverage-guided cargo-fuzz targets live in <crate>/fuzz. A bounded smoke run
# of them is part of scripts/test.
# shellcheck shell=bash

# fuzz_smoke — runs the cargo-fuzz targets of ORIEN_FUZZ_CRATES (default: protocol)
# briefly, ORIEN_FUZZ_SECONDS each (default 5). cargo-fuzz needs nightly features for its
# instrumentation; on a stable-only machine RUSTC_BOOTSTRAP enables them for the fuzz
# build only. Every crate's stable-toolchain harness (tests/fuzz_smoke.rs) already ran
# with cargo test. The ledger's targets are not in the default because their
# instrumented build recompiles RocksDB's C++ (most of an hour on 2 cores); run them with
#   ORIEN_FUZZ_CRATES="protocol ledger" ORIEN_FUZZ_SECONDS=60 scripts/fuzz
fuzz_smoke() {
  local seconds=${ORIEN_FUZZ_SECONDS:-5}
  local crates=${ORIEN_FUZZ_CRATES:-protocol}
  if ! cargo fuzz --version >/dev/null 2>&1; then
    info "installing cargo-fuzz"
    cargo install cargo-fuzz --locked --quiet >/dev/null 2>&1 \
      || { info "cargo-fuzz unavailable; the stable harnesses ran in cargo test"; return 0; }
  fi
  local crate dir target log
  log=$(mktemp)
  for crate in $crates; do
    dir="$ORIEN_ROOT/$crate/fuzz"
    [ -f "$dir/Cargo.toml" ] || die "no cargo-fuzz crate at $dir"
    for target in $(cd "$dir/.." && RUSTC_BOOTSTRAP=1 cargo fuzz list); do
      info "fuzz $crate/$target for ${seconds}s"
      (cd "$dir/.." && RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR="$CARGO_TARGET_DIR/fuzz" \
        cargo fuzz run --sanitizer none "$target" -- -max_total_time="$seconds" -rss_limit_mb=2048 >"$log" 2>&1) \
        || { tail -40 "$log"; rm -f "$log"; die "fuzz target $crate/$target failed"; }
    done
  done
  rm -f "$log"
}
