//! Benchmark rows from tests that double as benchmarks (`scripts/bench faults` runs them
//! longer): when `ORIEN_BENCH_ROWS` names a file, rows are appended to it, one JSON list
//! per line. `#[path]`-included.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::io::Write;

/// Appends `rows` (a JSON list of `{name, value, unit, baseline, ratio, goal}`) to the
/// file named by `ORIEN_BENCH_ROWS`, if any.
pub fn report(rows: serde_json::Value) {
    let Some(path) = std::env::var_os("ORIEN_BENCH_ROWS") else {
        return;
    };
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    writeln!(file, "{rows}").unwrap();
}
