//! What the network-mode market tests share.

use orien_sim::report::Loss;
use orien_sim::{Report, Scenario};
use orien_sim_network::market::{self, Options};

/// Runs `scenario` in network mode with its own seed and length, its nodes' ledgers under
/// a scratch directory of the test's (returned, to look into afterwards).
pub(crate) fn run(scenario: &Scenario) -> (Report, tempfile::TempDir) {
    let scratch = tempfile::tempdir().expect("a scratch directory");
    let options = Options {
        seed: scenario.seed,
        minutes: None,
        scratch: Some(scratch.path().to_owned()),
        interrupt: None,
    };
    let report = market::run(scenario, &options, &mut |_| {}).expect("the market runs");
    (report, scratch)
}

/// The 24-node market the network-mode tests share (8 providers, 16 renters with three
/// lanes each, 40 ± 20 ms links losing 0.5 %, one tool at 0.005 to 0.020 USDC a minute):
/// `head` (name, description, seed, length) before it, `rest` (demand, sessions, the
/// test's own keys, report) after; `file` names it in errors.
#[allow(dead_code)] // Each test crate compiles this module; the market's builds none.
pub(crate) fn market_of_24((head, rest): (&str, &str), file: &str) -> Scenario {
    let toml = format!("{head}{MARKET_OF_24}{rest}");
    Scenario::parse(&toml, std::path::Path::new(file)).expect("the scenario parses")
}

const MARKET_OF_24: &str = r#"
[nodes]
providers = 8
renters = 16
lanes = 3

[network]
latency_ms = 40
jitter_ms = 20
loss = 0.005

[[tools]]
name = "sha256"
providers = 1.0
demand = 1
price_per_minute = { min = "0.005", max = "0.020" }
"#;

/// Every check named in `expected` is in the report, and every check of the report held.
pub(crate) fn assert_checks_hold(report: &Report, expected: &[&str]) {
    let names: Vec<&str> = report.checks.iter().map(|c| c.name.as_str()).collect();
    for expected in expected {
        assert!(names.contains(expected), "{expected}: {names:?}");
    }
    for check in &report.checks {
        assert!(check.held, "{}: {}", check.name, check.detail);
    }
}

/// The report's loss to `cause`, which must be there.
#[allow(dead_code)] // Each test crate compiles this module; the market's reads no loss.
pub(crate) fn loss<'a>(report: &'a Report, cause: &str) -> &'a Loss {
    report
        .losses
        .iter()
        .find(|l| l.cause == cause)
        .unwrap_or_else(|| panic!("a loss to {cause} is reported: {:?}", report.losses))
}
