# Fuzzing: coverage-guided cargo-fuzz targets live in <crate>/fuzz. A bounded smoke run
# of each target is part of scripts/test.
# shellcheck shell=bash

# fuzz_smoke — runs every cargo-fuzz target briefly (ORIEN_FUZZ_SECONDS each, default 5).
# cargo-fuzz needs nightly features for its instrumentation; on a stable-only machine
# RUSTC_BOOTSTRAP enables them for the fuzz build only. The stable-toolchain harness
# (tests/fuzz_smoke.rs in each crate) already ran with cargo test.
fuzz_smoke() {
  local seconds=${ORIEN_FUZZ_SECONDS:-5}
  if ! cargo fuzz --version >/dev/null 2>&1; then
    info "installing cargo-fuzz"
    cargo install cargo-fuzz --locked --quiet >/dev/null 2>&1 || { info "cargo-fuzz unavailable; the stable harness ran in cargo test"; return 0; }
  fi
  local dir target
  for dir in "$ORIEN_ROOT"/*/fuzz; do
    [ -f "$dir/Cargo.toml" ] || continue
    for target in $(cd "$dir/.." && RUSTC_BOOTSTRAP=1 cargo fuzz list); do
      info "fuzz $(basename "$(dirname "$dir")")/$target for ${seconds}s"
      (cd "$dir/.." && RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR="$CARGO_TARGET_DIR/fuzz" \
        cargo fuzz run --sanitizer none "$target" -- -max_total_time="$seconds" -rss_limit_mb=2048 >/tmp/orien-fuzz.log 2>&1) \
        || { tail -40 /tmp/orien-fuzz.log; die "fuzz target $target failed"; }
    done
  done
}
