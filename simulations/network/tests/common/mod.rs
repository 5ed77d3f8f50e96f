//! What the network-mode market tests share.

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
    };
    let report = market::run(scenario, &options, &mut |_| {}).expect("the market runs");
    (report, scratch)
}
