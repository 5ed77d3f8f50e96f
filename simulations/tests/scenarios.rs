//! The shipped scenarios run to completion with their invariants held, a seed replays
//! its report byte for byte, and bad scenario files get errors that name the key and
//! its line, from the library and from the `orien-sim` binary.

use std::path::{Path, PathBuf};
use std::process::Command;

use orien_sim::scenario::{KEYS, ScenarioError};
use orien_sim::{Scenario, model};

/// The scenarios the issue asks for, each shipped as `scenarios/<name>.toml`.
const SHIPPED: [&str; 5] = [
    "churn",
    "home-providers",
    "hostile",
    "price-competition",
    "ten-thousand",
];

fn scenarios() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios")
}

fn load(name: &str) -> Scenario {
    Scenario::load(&scenarios().join(format!("{name}.toml"))).expect("a shipped scenario parses")
}

#[test]
fn the_ten_thousand_node_market_runs_with_every_invariant_held() {
    let scenario = load("ten-thousand");
    assert!(scenario.node_count() >= 10_000);
    let mut minutes = Vec::new();
    let report = model::run(&scenario, scenario.seed, &mut |p| minutes.push(p.minute));
    assert_eq!(
        minutes.len() as u32,
        scenario.duration_minutes,
        "progress every simulated minute"
    );
    for check in &report.checks {
        assert!(check.held, "{}: {}", check.name, check.detail);
    }
    let s = &report.sessions;
    assert!(s.requested > 10_000, "{} requests", s.requested);
    assert!(
        s.succeeded * 10 > s.requested * 6,
        "{} of {} succeeded",
        s.succeeded,
        s.requested
    );
    // The scenario's churn, partition and cheats all leave a mark.
    for outcome in [
        "provider_left",
        "provider_crashed",
        "partitioned",
        "dispute",
        "renter_stopped_acking",
    ] {
        assert!(
            s.outcomes[outcome] > 0,
            "no session ended {outcome}: {:?}",
            s.outcomes
        );
    }
    assert!(!report.losses.is_empty());
    for loss in &report.losses {
        assert!(loss.worst_share_of_bound <= 1.0, "{loss:?}");
    }
    let p = &report.propagation;
    assert!(p.mean_coverage > 0.95, "{p:?}");
    assert!(p.p50_ms > 0.0 && p.p50_ms <= p.p99_ms && p.p99_ms <= p.max_ms);
    assert!(
        p.hops_max >= 3,
        "10,000 nodes of mesh degree 6 to 12 need a few hops"
    );
    assert!(report.earnings.gini > 0.0 && report.earnings.gini < 1.0);
}

#[test]
fn every_shipped_scenario_parses_and_runs() {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(scenarios()).expect("the scenarios folder") {
        let path = entry.expect("an entry").path();
        let mut scenario = Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
        // A short run each: the full ones are for people, and ten-thousand runs whole above.
        scenario.duration_minutes = scenario.duration_minutes.min(20);
        let report = model::run(&scenario, 9, &mut |_| {});
        assert!(report.all_held(), "{}: {:?}", scenario.name, report.checks);
        assert!(report.sessions.requested > 0, "{}", scenario.name);
        names.push(scenario.name);
    }
    names.sort();
    for required in SHIPPED {
        assert!(
            names.iter().any(|n| n == required),
            "{required} missing from {names:?}"
        );
    }
}

#[test]
fn a_seed_replays_its_report_byte_for_byte_and_another_seed_differs() {
    let scenario = load("hostile");
    let first = model::run(&scenario, 11, &mut |_| {}).to_json();
    let again = model::run(&scenario, 11, &mut |_| {}).to_json();
    assert_eq!(first, again);
    let other = model::run(&scenario, 12, &mut |_| {}).to_json();
    assert_ne!(first, other);
    // report.json reads back into the same report (what `orien-sim plot` relies on).
    let read: orien_sim::Report = serde_json::from_str(&first).expect("a report reads back");
    assert_eq!(read.to_json(), first);
}

#[test]
fn cheaper_providers_earn_more_when_renters_compare_prices() {
    let scenario = load("price-competition");
    let report = model::run(&scenario, scenario.seed, &mut |_| {});
    let quintiles: Vec<f64> = report
        .earnings
        .by_price_quintile
        .iter()
        .map(|q| q.parse().expect("a decimal"))
        .collect();
    assert_eq!(quintiles.len(), 5);
    assert!(
        quintiles[0] > quintiles[4],
        "cheapest {} vs dearest {}",
        quintiles[0],
        quintiles[4]
    );
}

fn parse_error(text: &str) -> (usize, String, String) {
    match Scenario::parse(text, Path::new("bad.toml")) {
        Err(ScenarioError::Key {
            line, key, message, ..
        }) => (line, key, message),
        other => panic!("expected a key error, got {other:?}"),
    }
}

const GOOD: &str = r#"name = "t"
description = "a test"
duration_minutes = 10

[nodes]
providers = 5
renters = 5

[[tools]]
name = "sha256"
providers = 1.0
price_per_minute = { min = "0.01", max = "0.02" }

[demand]
sessions_per_minute = 2
mean_session_minutes = 1
budget = "0.10"
"#;

#[test]
fn bad_scenarios_are_refused_naming_the_key_and_its_line() {
    assert!(Scenario::parse(GOOD, Path::new("good.toml")).is_ok());
    let cases: [(&str, &str, usize, &str, &str); 8] = [
        (
            "unknown key",
            "renters = 5",
            7,
            "nodes.renter",
            "unknown field `renter`",
        ),
        (
            "wrong type",
            "providers = 5",
            6,
            "nodes.providers",
            "invalid type",
        ),
        (
            "out of range",
            "providers = 1.0",
            11,
            "tools[0].providers",
            "a share from 0 to 1",
        ),
        (
            "bad price",
            "budget = \"0.10\"",
            17,
            "demand.budget",
            "not a USDC amount",
        ),
        (
            "min above max",
            "max = \"0.02\"",
            12,
            "tools[0].price_per_minute.max",
            "must not be below min",
        ),
        (
            "zero duration",
            "duration_minutes = 10",
            3,
            "duration_minutes",
            "expected 1 to",
        ),
        (
            "missing key",
            "budget = \"0.10\"",
            14,
            "demand",
            "missing field `budget`",
        ),
        ("syntax", "[demand]", 14, "(document)", ""),
    ];
    let replacements = [
        "renter = 5",
        "providers = \"five\"",
        "providers = 1.5",
        "budget = \"ten\"",
        "max = \"0.001\"",
        "duration_minutes = 0",
        "",
        "[demand",
    ];
    for ((what, find, line, key, message), replacement) in cases.iter().zip(replacements) {
        assert!(GOOD.contains(find), "{what}: the test's own text");
        let text = GOOD.replacen(find, replacement, 1);
        let (got_line, got_key, got_message) = parse_error(&text);
        assert_eq!(
            (got_line, got_key.as_str()),
            (*line, *key),
            "{what}: {got_message}"
        );
        assert!(
            got_message.contains(message),
            "{what}: {got_message:?} lacks {message:?}"
        );
    }
}

#[test]
fn every_documented_key_is_one_the_parser_reads() {
    // Each key, set on its own in an otherwise good file, must not be refused as unknown.
    for (key, _) in KEYS {
        let leaf = key.rsplit('.').next().expect("a key");
        let found = ["name", "description", "seed", "duration_minutes"].contains(key)
            || key.starts_with("tools[]")
            || key.starts_with("network.partitions[]")
            || {
                let (table, _) = key.rsplit_once('.').expect("a table key");
                let text = format!("{GOOD}\n[{table}]\n{leaf} = 1\n");
                match Scenario::parse(&text, Path::new("k.toml")) {
                    Err(ScenarioError::Key { message, .. }) => !message.contains("unknown field"),
                    Ok(_) => true,
                    Err(other) => panic!("{other}"),
                }
            };
        assert!(found, "{key} is documented but the parser does not know it");
    }
}

#[test]
fn the_binary_writes_its_reports_and_refuses_a_bad_file_with_exit_code_2() {
    let out = tempfile::tempdir().expect("a temp dir");
    let bin = env!("CARGO_BIN_EXE_orien-sim");
    let ran = Command::new(bin)
        .args(["run", "--quiet", "--seed", "4", "--out"])
        .arg(out.path())
        .arg(scenarios().join("price-competition.toml"))
        .output()
        .expect("orien-sim runs");
    assert!(
        ran.status.success(),
        "{}",
        String::from_utf8_lossy(&ran.stderr)
    );
    let stdout = String::from_utf8_lossy(&ran.stdout);
    assert!(stdout.contains("money is conserved"), "{stdout}");
    let json = std::fs::read_to_string(out.path().join("report.json")).expect("report.json");
    let parsed: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
    assert_eq!(parsed["seed"], 4);
    assert!(
        std::fs::read_to_string(out.path().join("report.md"))
            .expect("report.md")
            .contains("## Checks")
    );
    assert!(
        stdout.contains("plots                   10 files"),
        "{stdout}"
    );
    for plot in ["propagation", "sessions", "earnings", "money", "losses"] {
        let png = std::fs::read(out.path().join(format!("{plot}.png"))).expect("a PNG");
        assert!(
            png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
            "{plot}.png"
        );
        let svg = std::fs::read_to_string(out.path().join(format!("{plot}.svg"))).expect("an SVG");
        assert!(svg.contains("<svg") && svg.contains("<text"), "{plot}.svg");
    }
    let svg = std::fs::read_to_string(out.path().join("earnings.svg")).expect("an SVG");
    assert!(
        svg.contains("Gini"),
        "the earnings plot names its Gini coefficient"
    );

    // `plot` draws them again from report.json alone.
    std::fs::remove_file(out.path().join("money.png")).expect("remove");
    let plotted = Command::new(bin)
        .arg("plot")
        .arg(out.path())
        .output()
        .expect("orien-sim runs");
    assert!(
        plotted.status.success(),
        "{}",
        String::from_utf8_lossy(&plotted.stderr)
    );
    assert!(out.path().join("money.png").is_file());
    let nothing = Command::new(bin)
        .arg("plot")
        .arg(out.path().join("nowhere"))
        .output()
        .expect("runs");
    assert_eq!(nothing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&nothing.stderr).contains("report.json"));

    let bad = out.path().join("bad.toml");
    std::fs::write(&bad, GOOD.replacen("renters = 5", "renters = -5", 1)).expect("write");
    let refused = Command::new(bin)
        .arg("run")
        .arg(&bad)
        .output()
        .expect("orien-sim runs");
    assert_eq!(refused.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("bad.toml:7: nodes.renters"), "{stderr}");

    let list = Command::new(bin)
        .arg("list")
        .arg(scenarios())
        .output()
        .expect("orien-sim runs");
    let list = String::from_utf8_lossy(&list.stdout);
    for name in SHIPPED {
        assert!(
            list.lines().any(|l| l.starts_with(name)),
            "{name} not listed:\n{list}"
        );
    }

    let help = Command::new(bin)
        .args(["help", "run"])
        .output()
        .expect("orien-sim runs");
    let help = String::from_utf8_lossy(&help.stdout);
    for (key, _) in KEYS {
        assert!(help.contains(key), "--help does not explain {key}");
    }
}

#[test]
fn compare_sets_two_runs_side_by_side_and_minutes_are_refused_in_model_mode() {
    let out = tempfile::tempdir().expect("a temp dir");
    let bin = env!("CARGO_BIN_EXE_orien-sim");
    let fifty = scenarios().join("fifty.toml");
    for seed in ["1", "2"] {
        let ran = Command::new(bin)
            .args(["run", "--quiet", "--seed", seed, "--out"])
            .arg(out.path().join(seed))
            .arg(&fifty)
            .output()
            .expect("orien-sim runs");
        assert!(
            ran.status.success(),
            "{}",
            String::from_utf8_lossy(&ran.stderr)
        );
    }
    let table = out.path().join("side-by-side.md");
    let compared = Command::new(bin)
        .arg("compare")
        .arg(out.path().join("1"))
        .arg(out.path().join("2"))
        .arg("--out")
        .arg(&table)
        .output()
        .expect("orien-sim runs");
    assert!(
        compared.status.success(),
        "{}",
        String::from_utf8_lossy(&compared.stderr)
    );
    let text = std::fs::read_to_string(&table).expect("the table is written");
    assert_eq!(text, String::from_utf8_lossy(&compared.stdout));
    for row in [
        "| propagation p99, ms |",
        "| success rate |",
        "| earnings Gini |",
        "| fee, USDC |",
        "| checks held | 5 of 5 | 5 of 5 |",
    ] {
        assert!(text.contains(row), "{row} missing from\n{text}");
    }
    assert!(text.contains("(model mode, seed 1)") && text.contains("(model mode, seed 2)"));

    let refused = Command::new(bin)
        .args(["run", "--quiet", "--minutes", "3"])
        .arg(&fifty)
        .output()
        .expect("orien-sim runs");
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--minutes is for network mode"));
}
