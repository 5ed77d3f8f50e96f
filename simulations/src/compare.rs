//! Two reports side by side: the same scenario in network mode and model mode, say.

use std::fmt::Write as _;

use crate::Report;

/// A Markdown table of `a` and `b`'s figures, with b's as a ratio of a's where both
/// are numbers.
pub fn side_by_side(a: &Report, b: &Report) -> String {
    let mut rows: Vec<(String, String, String)> = Vec::new();
    let mut row = |name: &str, x: String, y: String| rows.push((name.to_owned(), x, y));
    let nodes = |r: &Report| r.nodes.providers + r.nodes.renters + r.nodes.sybils;
    row("nodes", nodes(a).to_string(), nodes(b).to_string());
    row(
        "simulated minutes",
        a.simulated_minutes.to_string(),
        b.simulated_minutes.to_string(),
    );
    let (p, q) = (&a.propagation, &b.propagation);
    row("offers traced", p.traced.to_string(), q.traced.to_string());
    for (name, x, y) in [
        ("propagation p50, ms", p.p50_ms, q.p50_ms),
        ("propagation p90, ms", p.p90_ms, q.p90_ms),
        ("propagation p99, ms", p.p99_ms, q.p99_ms),
        ("propagation max, ms", p.max_ms, q.max_ms),
    ] {
        row(name, format!("{x:.0}"), format!("{y:.0}"));
    }
    for (name, x, y) in [
        ("hops p50", p.hops_p50, q.hops_p50),
        ("hops p99", p.hops_p99, q.hops_p99),
        ("hops max", p.hops_max, q.hops_max),
    ] {
        row(name, x.to_string(), y.to_string());
    }
    row(
        "coverage, worst offer",
        format!("{:.4}", p.worst_coverage),
        format!("{:.4}", q.worst_coverage),
    );
    let (s, t) = (&a.sessions, &b.sessions);
    row(
        "sessions requested",
        s.requested.to_string(),
        t.requested.to_string(),
    );
    row(
        "sessions opened",
        s.opened.to_string(),
        t.opened.to_string(),
    );
    row(
        "sessions succeeded",
        s.succeeded.to_string(),
        t.succeeded.to_string(),
    );
    let rate = |s: &crate::report::Sessions| {
        if s.requested == 0 {
            0.0
        } else {
            s.succeeded as f64 / s.requested as f64
        }
    };
    row(
        "success rate",
        format!("{:.4}", rate(s)),
        format!("{:.4}", rate(t)),
    );
    row(
        "open p50, ms",
        format!("{:.0}", s.open_p50_ms),
        format!("{:.0}", t.open_p50_ms),
    );
    row(
        "open p99, ms",
        format!("{:.0}", s.open_p99_ms),
        format!("{:.0}", t.open_p99_ms),
    );
    for (outcome, n) in &s.outcomes {
        let m = t.outcomes.get(outcome).copied().unwrap_or(0);
        if *n > 0 || m > 0 {
            row(&format!("outcome: {outcome}"), n.to_string(), m.to_string());
        }
    }
    let (e, f) = (&a.earnings, &b.earnings);
    row("providers earned, USDC", e.total.clone(), f.total.clone());
    row(
        "earnings Gini",
        format!("{:.3}", e.gini),
        format!("{:.3}", f.gini),
    );
    row(
        "providers that earned nothing",
        e.earned_nothing.to_string(),
        f.earned_nothing.to_string(),
    );
    for (name, x) in &e.percentiles {
        let y = f.percentiles.get(name).cloned().unwrap_or_default();
        row(&format!("earnings {name}, USDC"), x.clone(), y);
    }
    for (i, (x, y)) in e
        .by_price_quintile
        .iter()
        .zip(&f.by_price_quintile)
        .enumerate()
    {
        row(
            &format!("mean earnings, price quintile {}", i + 1),
            x.clone(),
            y.clone(),
        );
    }
    let (m, n) = (&a.money, &b.money);
    row(
        "renters paid, USDC",
        m.renters_paid.clone(),
        n.renters_paid.clone(),
    );
    row("fee, USDC", m.fee.clone(), n.fee.clone());
    row("reserve, USDC", m.reserve.clone(), n.reserve.clone());
    let held = |r: &Report| {
        format!(
            "{} of {}",
            r.checks.iter().filter(|c| c.held).count(),
            r.checks.len()
        )
    };
    row("checks held", held(a), held(b));

    let mut text = format!(
        "# {} beside {}\n\n| figure | {} ({} mode, seed {}) | {} ({} mode, seed {}) | second / first |\n|---|---:|---:|---:|\n",
        a.scenario, b.scenario, a.scenario, a.mode, a.seed, b.scenario, b.mode, b.seed
    );
    for (name, x, y) in rows {
        let ratio = match (x.parse::<f64>(), y.parse::<f64>()) {
            (Ok(x), Ok(y)) if x != 0.0 => format!("{:.2}", y / x),
            _ => "—".to_owned(),
        };
        let _ = writeln!(text, "| {name} | {x} | {y} | {ratio} |");
    }
    text
}
