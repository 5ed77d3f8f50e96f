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
