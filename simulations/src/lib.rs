//! `orien-sim`: whole ORIEN markets simulated from scenario files.
//!
//! A [`Scenario`] (TOML) says who takes part, what they sell and want, how the network
//! behaves, who churns and who cheats. [`model::run`] simulates it as a discrete-event
//! model in virtual time and returns a [`Report`]: offer propagation, session success
//! over time, providers' earnings, money across every ledger, losses against their
//! bounds, and the invariants checked. The same scenario and seed give a byte-identical
//! `report.json`.

pub mod compare;
pub mod model;
pub mod output;
pub mod plot;
pub mod report;
pub mod rng;
pub mod scenario;

pub use report::Report;
pub use scenario::{Scenario, ScenarioError};
