//! A finished run on disk and on the terminal: `report.json`, `report.md` and the
//! plots in the output directory, and the summary table printed at the end. Both modes
//! write their reports this way.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;

use crate::Report;

/// Writes `report.json`, `report.md` and the plots into `out` (created if needed).
/// The plots' failure (no font, say) is returned beside, not as the error: the report
/// stands without them.
pub fn write(report: &Report, out: &Path) -> anyhow::Result<anyhow::Result<Vec<PathBuf>>> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    for (name, text) in [
        ("report.json", report.to_json()),
        ("report.md", report.to_markdown()),
    ] {
        let file = out.join(name);
        std::fs::write(&file, text).with_context(|| format!("cannot write {}", file.display()))?;
    }
    Ok(crate::plot::draw_all(report, out).map_err(anyhow::Error::from))
}

/// Writes the run's files ([`write()`]) and returns the summary table to print and the
/// exit code: success when every invariant held, failure (1) otherwise.
pub fn finish(
    report: &Report,
    wall: Duration,
    out: &Path,
) -> anyhow::Result<(String, std::process::ExitCode)> {
    let plots = write(report, out)?;
    let code = if report.all_held() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    };
    Ok((summary(report, wall, out, &plots), code))
}

/// The summary table: what the run found, its checks, where the files are.
pub fn summary(
    report: &Report,
    wall: Duration,
    out: &Path,
    plots: &anyhow::Result<Vec<PathBuf>>,
) -> String {
    let s = &report.sessions;
    let p = &report.propagation;
    let nodes = report.nodes.providers + report.nodes.renters + report.nodes.sybils;
    let speed = f64::from(report.simulated_minutes) * 60.0 / wall.as_secs_f64().max(1e-6);
    // Slower than real time reads as a fraction, not as "0×".
    let digits = if speed < 10.0 { 1 } else { 0 };
    let mut lines = vec![
        format!(
            "{} ({} mode) — {} nodes, {} simulated minutes in {:.1} s ({:.*}× real time)",
            report.scenario,
            report.mode,
            nodes,
            report.simulated_minutes,
            wall.as_secs_f64(),
            digits,
            speed
        ),
        format!(
            "  offers reach nodes in   p50 {:.0} ms, p99 {:.0} ms, {} hops at most",
            p.p50_ms, p.p99_ms, p.hops_max
        ),
        format!(
            "  sessions                {} requested, {} opened, {} succeeded",
            s.requested, s.opened, s.succeeded
        ),
        format!(
            "  renters paid            {} USDC: providers {}, fee {}, reserve {}",
            report.money.renters_paid,
            report.money.providers_earned,
            report.money.fee,
            report.money.reserve
        ),
        format!("  earnings Gini           {:.3}", report.earnings.gini),
    ];
    for check in &report.checks {
        lines.push(format!(
            "  {} {} ({})",
            if check.held { "ok  " } else { "FAIL" },
            check.name,
            check.detail
        ));
    }
    lines.push(format!(
        "  report                  {}",
        out.join("report.md").display()
    ));
    lines.push(match plots {
        Ok(files) => format!(
            "  plots                   {} files in {}",
            files.len(),
            out.display()
        ),
        Err(e) => format!("  plots                   not drawn: {e}"),
    });
    lines.join("\n")
}
