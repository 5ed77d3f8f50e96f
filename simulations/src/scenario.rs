//! Scenario files: what market to simulate, read from TOML.
//!
//! Every key is listed in [`KEYS`] with what it means (`orien-sim --help` prints them,
//! and a test checks that the list and the parser agree). A bad file gets an error that
//! names the key and its line.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use orien_protocol::Usdc;
use serde::{Deserialize, Deserializer};

/// The largest network a scenario may ask for.
pub const MAX_NODES: u32 = 1_000_000;
/// The longest simulated run, minutes (thirty days).
pub const MAX_DURATION_MINUTES: u32 = 30 * 24 * 60;

/// Every scenario key, with its meaning and default. `tools[]` keys repeat per tool.
pub const KEYS: &[(&str, &str)] = &[
    ("name", "the scenario's name, shown in reports"),
    ("description", "what the scenario shows (one paragraph)"),
    (
        "seed",
        "decides every draw; --seed overrides it (default 1)",
    ),
    ("duration_minutes", "simulated time to run"),
    ("nodes.providers", "honest providers"),
    ("nodes.renters", "renters (agents); each opens sessions"),
    (
        "nodes.lanes",
        "sessions a provider serves at once (default 2)",
    ),
    (
        "network.latency_ms",
        "mean one-way latency between two nodes (default 40)",
    ),
    (
        "network.jitter_ms",
        "one-way latency varies uniformly by ± this (default 20)",
    ),
    (
        "network.loss",
        "chance that one message is lost, 0 to 0.5 (default 0.005)",
    ),
    (
        "network.uplink_mbps",
        "each node's upload bandwidth (default 20)",
    ),
    (
        "network.mesh_degree",
        "gossipsub mesh peers a node grafts, D; each keeps D to 12 (default 6)",
    ),
    (
        "network.heartbeat_ms",
        "gossipsub heartbeat: lost messages are recovered by gossip at the next one (default 700)",
    ),
    (
        "network.partitions[].start_minute",
        "when a partition begins",
    ),
    ("network.partitions[].end_minute", "when it heals"),
    (
        "network.partitions[].fraction",
        "share of nodes cut off from the rest, 0 to 1",
    ),
    ("tools[].name", "a tool name, as offers carry it"),
    (
        "tools[].providers",
        "share of providers that offer it, 0 to 1",
    ),
    (
        "tools[].demand",
        "relative weight of renters' sessions on it (default 1)",
    ),
    (
        "tools[].price_per_minute.min",
        "lowest session price, USDC per minute (providers draw uniformly)",
    ),
    (
        "tools[].price_per_minute.max",
        "highest session price, USDC per minute",
    ),
    (
        "demand.sessions_per_minute",
        "sessions renters start, network-wide (Poisson arrivals)",
    ),
    (
        "demand.mean_session_minutes",
        "mean length renters want (exponential)",
    ),
    (
        "demand.max_session_minutes",
        "longest session a renter asks for (default 60)",
    ),
    (
        "demand.budget",
        "each session's budget, USDC; a session ends when it is spent",
    ),
    (
        "demand.candidates",
        "offers a renter compares (it tries the cheapest it has heard of first; default 5)",
    ),
    (
        "sessions.receipt_interval_secs",
        "time between receipts (default 5, as the node's meter)",
    ),
    (
        "sessions.ack_timeout_secs",
        "a provider stops serving when a receipt is unacknowledged this long (default 10, as orien-node)",
    ),
    (
        "sessions.open_timeout_secs",
        "a renter gives up on an unanswered open after this (default 10)",
    ),
    (
        "sessions.offer_ttl_minutes",
        "offers expire after this and are re-announced before (default 60, as orien-node)",
    ),
    (
        "churn.diurnal_amplitude",
        "share of home providers offline at the daily trough, 0 to 1 (default 0: always on)",
    ),
    (
        "churn.day_minutes",
        "length of the daily cycle (default 1440)",
    ),
    (
        "churn.crashes_per_hour",
        "crash rate of each provider (default 0)",
    ),
    (
        "churn.mean_downtime_minutes",
        "mean time a crashed provider stays down (default 10)",
    ),
    (
        "hostile.forged_offers_per_minute",
        "offers with bad signatures sent into the network",
    ),
    (
        "hostile.sybil_nodes",
        "nodes that flood cheap offers and never serve",
    ),
    (
        "hostile.sybil_offers_each",
        "offers each Sybil node publishes (the offer book keeps 64 per provider)",
    ),
    (
        "hostile.receipt_cheats",
        "share of providers that claim more than they metered",
    ),
    (
        "hostile.silent_renters",
        "share of renters that stop acknowledging receipts mid-session",
    ),
    (
        "hostile.exit_delayers",
        "share of providers that hold back a call's exit to bill more time",
    ),
    (
        "report.bucket_minutes",
        "width of the session-success-over-time buckets (default 10)",
    ),
    (
        "report.propagation_samples",
        "offers whose spread to every node is traced (default 40)",
    ),
];

/// A whole scenario.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Shown in reports.
    pub name: String,
    /// What it shows.
    pub description: String,
    /// Decides every draw.
    #[serde(default = "one")]
    pub seed: u64,
    /// Simulated time.
    pub duration_minutes: u32,
    /// Who takes part.
    pub nodes: Nodes,
    /// How messages travel.
    #[serde(default)]
    pub network: Network,
    /// What is sold.
    pub tools: Vec<ToolMarket>,
    /// What renters want.
    pub demand: Demand,
    /// The session protocol's timing.
    #[serde(default)]
    pub sessions: SessionRules,
    /// Providers coming and going.
    #[serde(default)]
    pub churn: Churn,
    /// Who cheats, and how.
    #[serde(default)]
    pub hostile: Hostile,
    /// What the report resolves.
    #[serde(default)]
    pub report: ReportOptions,
}

/// Who takes part.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Nodes {
    /// Honest providers.
    pub providers: u32,
    /// Renters.
    pub renters: u32,
    /// Sessions a provider serves at once.
    #[serde(default = "two")]
    pub lanes: u32,
}

/// How messages travel.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// Mean one-way latency, ms.
    #[serde(default = "forty")]
    pub latency_ms: NonNegative,
    /// Uniform variation of the latency, ms.
    #[serde(default = "twenty")]
    pub jitter_ms: NonNegative,
    /// Chance one message is lost.
    #[serde(default = "half_percent")]
    pub loss: Loss,
    /// Upload bandwidth per node, Mbit/s.
    #[serde(default = "twenty_positive")]
    pub uplink_mbps: Positive,
    /// Gossipsub mesh degree.
    #[serde(default = "six")]
    pub mesh_degree: u32,
    /// Gossipsub heartbeat, ms.
    #[serde(default = "heartbeat")]
    pub heartbeat_ms: Positive,
    /// Times when part of the network is cut off.
    #[serde(default)]
    pub partitions: Vec<Partition>,
}

impl Default for Network {
    fn default() -> Self {
        Self {
            latency_ms: forty(),
            jitter_ms: twenty(),
            loss: half_percent(),
            uplink_mbps: twenty_positive(),
            mesh_degree: 6,
            heartbeat_ms: heartbeat(),
            partitions: Vec::new(),
        }
    }
}

/// Part of the network cut off from the rest for a while.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Partition {
    /// Begins, minutes from the start.
    pub start_minute: NonNegative,
    /// Heals.
    pub end_minute: NonNegative,
    /// Share of nodes cut off.
    pub fraction: Fraction,
}

/// One tool's market.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolMarket {
    /// The tool's name.
    pub name: String,
    /// Share of providers offering it.
    pub providers: Fraction,
    /// Relative weight of demand.
    #[serde(default = "one_positive")]
    pub demand: Positive,
    /// Session price range.
    pub price_per_minute: PriceRange,
}

/// A uniform price range.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceRange {
    /// Lowest.
    pub min: Price,
    /// Highest.
    pub max: Price,
}

/// What renters want.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Demand {
    /// Network-wide arrival rate.
    pub sessions_per_minute: Positive,
    /// Mean wanted length.
    pub mean_session_minutes: Positive,
    /// Longest wanted length.
    #[serde(default = "sixty")]
    pub max_session_minutes: Positive,
    /// Budget per session.
    pub budget: Price,
    /// Offers compared per session.
    #[serde(default = "five")]
    pub candidates: u32,
}

/// The session protocol's timing.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionRules {
    /// Time between receipts, seconds.
    #[serde(default = "five_positive")]
    pub receipt_interval_secs: Positive,
    /// Unacknowledged time after which a provider stops, seconds.
    #[serde(default = "ten")]
    pub ack_timeout_secs: Positive,
    /// Unanswered open after which a renter moves on, seconds.
    #[serde(default = "ten")]
    pub open_timeout_secs: Positive,
    /// Offer lifetime, minutes.
    #[serde(default = "sixty")]
    pub offer_ttl_minutes: Positive,
}

impl Default for SessionRules {
    fn default() -> Self {
        Self {
            receipt_interval_secs: five_positive(),
            ack_timeout_secs: ten(),
            open_timeout_secs: ten(),
            offer_ttl_minutes: sixty(),
        }
    }
}

/// Providers coming and going.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Churn {
    /// Share offline at the daily trough.
    #[serde(default)]
    pub diurnal_amplitude: Fraction,
    /// Length of a day, minutes.
    #[serde(default = "day")]
    pub day_minutes: Positive,
    /// Crashes per provider per hour.
    #[serde(default)]
    pub crashes_per_hour: NonNegative,
    /// Mean time down after a crash, minutes.
    #[serde(default = "ten")]
    pub mean_downtime_minutes: Positive,
}

impl Default for Churn {
    fn default() -> Self {
        Self {
            diurnal_amplitude: Fraction(0.0),
            day_minutes: day(),
            crashes_per_hour: NonNegative(0.0),
            mean_downtime_minutes: ten(),
        }
    }
}

/// Who cheats, and how.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hostile {
    /// Offers with bad signatures per minute.
    #[serde(default)]
    pub forged_offers_per_minute: NonNegative,
    /// Nodes flooding cheap offers.
    #[serde(default)]
    pub sybil_nodes: u32,
    /// Offers per Sybil node.
    #[serde(default)]
    pub sybil_offers_each: u32,
    /// Share of providers overclaiming.
    #[serde(default)]
    pub receipt_cheats: Fraction,
    /// Share of renters that stop acknowledging.
    #[serde(default)]
    pub silent_renters: Fraction,
    /// Share of providers delaying exits.
    #[serde(default)]
    pub exit_delayers: Fraction,
}

/// What the report resolves.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportOptions {
    /// Width of the success-over-time buckets, minutes.
    #[serde(default = "ten_minutes")]
    pub bucket_minutes: u32,
    /// Offers traced to every node.
    #[serde(default = "forty_samples")]
    pub propagation_samples: u32,
}

impl Default for ReportOptions {
    fn default() -> Self {
        Self {
            bucket_minutes: 10,
            propagation_samples: 40,
        }
    }
}

/// A number ≥ 0 (finite).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default)]
pub struct NonNegative(pub f64);
/// A number > 0 (finite).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Positive(pub f64);
/// A share, 0 to 1.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default)]
pub struct Fraction(pub f64);
/// A message-loss chance, 0 to 0.5 (beyond that no protocol is being simulated).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default)]
pub struct Loss(pub f64);
/// A price in USDC, written as a decimal string (`"0.02"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Price(pub Usdc);

fn ranged<'de, D: Deserializer<'de>>(
    deserializer: D,
    ok: impl Fn(f64) -> bool,
    expected: &str,
) -> Result<f64, D::Error> {
    let value = f64::deserialize(deserializer)?;
    if value.is_finite() && ok(value) {
        Ok(value)
    } else {
        Err(serde::de::Error::custom(format!(
            "{value}: expected {expected}"
        )))
    }
}

impl<'de> Deserialize<'de> for NonNegative {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        ranged(d, |v| v >= 0.0, "a number ≥ 0").map(Self)
    }
}

impl<'de> Deserialize<'de> for Positive {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        ranged(d, |v| v > 0.0, "a number > 0").map(Self)
    }
}

impl<'de> Deserialize<'de> for Fraction {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        ranged(d, |v| (0.0..=1.0).contains(&v), "a share from 0 to 1").map(Self)
    }
}

impl<'de> Deserialize<'de> for Loss {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        ranged(d, |v| (0.0..=0.5).contains(&v), "a chance from 0 to 0.5").map(Self)
    }
}

impl<'de> Deserialize<'de> for Price {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Usdc::from_str(&text).map(Self).map_err(|e| {
            serde::de::Error::custom(format!(
                "{text:?} is not a USDC amount ({e}); write it as a string, e.g. \"0.02\""
            ))
        })
    }
}

const fn one() -> u64 {
    1
}
const fn two() -> u32 {
    2
}
const fn five() -> u32 {
    5
}
const fn six() -> u32 {
    6
}
const fn ten_minutes() -> u32 {
    10
}
const fn forty_samples() -> u32 {
    40
}
const fn forty() -> NonNegative {
    NonNegative(40.0)
}
const fn twenty() -> NonNegative {
    NonNegative(20.0)
}
const fn half_percent() -> Loss {
    Loss(0.005)
}
const fn twenty_positive() -> Positive {
    Positive(20.0)
}
const fn heartbeat() -> Positive {
    Positive(700.0)
}
const fn one_positive() -> Positive {
    Positive(1.0)
}
const fn five_positive() -> Positive {
    Positive(5.0)
}
const fn ten() -> Positive {
    Positive(10.0)
}
const fn sixty() -> Positive {
    Positive(60.0)
}
const fn day() -> Positive {
    Positive(1440.0)
}

/// Why a scenario cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file cannot be read.
    #[error("cannot read {}: {source}", file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A key is missing, unknown, of the wrong type or out of range.
    #[error("{}:{line}: {key}: {message}", file.display())]
    Key {
        /// The file.
        file: PathBuf,
        /// Its line (1-based; the key's, or its table's when the key is missing).
        line: usize,
        /// The key's path (`demand.budget`, `tools[1].name`).
        key: String,
        /// What is wrong.
        message: String,
    },
}

impl Scenario {
    /// Reads and checks a scenario file.
    pub fn load(path: &Path) -> Result<Self, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            file: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses and checks scenario text (`file` is only used in messages).
    pub fn parse(text: &str, file: &Path) -> Result<Self, ScenarioError> {
        let error = |key: String, line: usize, message: String| ScenarioError::Key {
            file: file.to_owned(),
            line,
            key,
            message,
        };
        let de = toml::Deserializer::parse(text).map_err(|e| {
            let line = e.span().map_or(1, |span| line_of(text, span.start));
            error("(document)".into(), line, first_line(&e.to_string()))
        })?;
        let scenario: Self = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let line = e
                .inner()
                .span()
                .map_or_else(|| locate(text, &key), |span| line_of(text, span.start));
            error(key, line, first_line(&e.inner().to_string()))
        })?;
        scenario
            .check()
            .map_err(|(key, message)| error(key.clone(), locate(text, &key), message))?;
        Ok(scenario)
    }

    /// The checks that involve more than one key, or a key and a limit.
    fn check(&self) -> Result<(), (String, String)> {
        let fail = |key: &str, message: String| Err((key.to_owned(), message));
        if self.name.trim().is_empty() {
            return fail("name", "must not be empty".into());
        }
        if self.duration_minutes == 0 || self.duration_minutes > MAX_DURATION_MINUTES {
            return fail(
                "duration_minutes",
                format!(
                    "{}: expected 1 to {MAX_DURATION_MINUTES}",
                    self.duration_minutes
                ),
            );
        }
        let nodes = u64::from(self.nodes.providers)
            + u64::from(self.nodes.renters)
            + u64::from(self.hostile.sybil_nodes);
        if nodes > u64::from(MAX_NODES) {
            return fail(
                "nodes.providers",
                format!("{nodes} nodes in all; at most {MAX_NODES}"),
            );
        }
        if self.nodes.providers == 0 {
            return fail("nodes.providers", "at least one provider".into());
        }
        if self.nodes.renters == 0 {
            return fail("nodes.renters", "at least one renter".into());
        }
        if self.nodes.lanes == 0 {
            return fail("nodes.lanes", "at least one session at a time".into());
        }
        if !(2..=64).contains(&self.network.mesh_degree) {
            return fail(
                "network.mesh_degree",
                format!("{}: expected 2 to 64", self.network.mesh_degree),
            );
        }
        for (i, partition) in self.network.partitions.iter().enumerate() {
            if partition.end_minute <= partition.start_minute {
                return fail(
                    &format!("network.partitions[{i}].end_minute"),
                    "must come after start_minute".into(),
                );
            }
        }
        if self.tools.is_empty() {
            return fail("tools", "at least one [[tools]] table".into());
        }
        for (i, tool) in self.tools.iter().enumerate() {
            if tool.name.is_empty() || tool.name.len() > 64 {
                return fail(&format!("tools[{i}].name"), "1 to 64 characters".into());
            }
            if self.tools[..i].iter().any(|other| other.name == tool.name) {
                return fail(
                    &format!("tools[{i}].name"),
                    format!("{:?} is listed twice", tool.name),
                );
            }
            if tool.price_per_minute.max < tool.price_per_minute.min {
                return fail(
                    &format!("tools[{i}].price_per_minute.max"),
                    "must not be below min".into(),
                );
            }
        }
        if self.demand.max_session_minutes < self.demand.mean_session_minutes {
            return fail(
                "demand.max_session_minutes",
                "must not be below mean_session_minutes".into(),
            );
        }
        if self.demand.budget.0 == Usdc::ZERO {
            return fail("demand.budget", "must be above zero".into());
        }
        if !(1..=64).contains(&self.demand.candidates) {
            return fail(
                "demand.candidates",
                format!("{}: expected 1 to 64", self.demand.candidates),
            );
        }
        if self.sessions.receipt_interval_secs.0 < 0.1 {
            return fail(
                "sessions.receipt_interval_secs",
                "at least 0.1 (the meter's minimum)".into(),
            );
        }
        if self.hostile.sybil_nodes > 0 && self.hostile.sybil_offers_each == 0 {
            return fail(
                "hostile.sybil_offers_each",
                "Sybil nodes need offers to flood".into(),
            );
        }
        if self.report.bucket_minutes == 0 {
            return fail("report.bucket_minutes", "at least 1".into());
        }
        if !(1..=1_000).contains(&self.report.propagation_samples) {
            return fail(
                "report.propagation_samples",
                format!("{}: expected 1 to 1000", self.report.propagation_samples),
            );
        }
        Ok(())
    }

    /// All nodes: providers, renters and Sybil nodes.
    pub fn node_count(&self) -> u32 {
        self.nodes.providers + self.nodes.renters + self.hostile.sybil_nodes
    }
}

impl fmt::Display for Price {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.decimal())
    }
}

fn first_line(message: &str) -> String {
    // toml's messages start "TOML parse error at line …" and quote the source; the
    // line is named separately, so keep only what is wrong.
    message
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty() && !l.starts_with("TOML parse error") && !l.contains('|'))
        .unwrap_or(message.trim())
        .to_owned()
}

/// The 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The line where a key path (`tools[1].price_per_minute.max`) is written; a key that
/// is missing is reported at the line of the nearest table it would live in (or 1).
fn locate(text: &str, path: &str) -> usize {
    let written = key_lines(text);
    let mut path = path;
    loop {
        if let Some((_, line)) = written.iter().find(|(key, _)| key == path) {
            return *line;
        }
        match path.rfind(['.', '[']) {
            Some(cut) => path = &path[..cut],
            None => return 1,
        }
    }
}

/// Every table and key a TOML text writes, by full path (`tools[1].name`), with its
/// 1-based line; keys of an inline table (`x = { min = 1 }`) share its line. A scan of
/// lines, not a parser: it only runs on text the parser has read, to name a line.
fn key_lines(text: &str) -> Vec<(String, usize)> {
    let mut written = Vec::new();
    let mut table = String::new();
    let mut arrays: Vec<(String, usize)> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if let Some(name) = line.strip_prefix("[[").and_then(|l| l.split("]]").next()) {
            let name = name.trim().to_owned();
            let index = match arrays.iter_mut().find(|(array, _)| *array == name) {
                Some((_, count)) => {
                    *count += 1;
                    *count - 1
                }
                None => {
                    arrays.push((name.clone(), 1));
                    0
                }
            };
            table = format!("{name}[{index}]");
            written.push((table.clone(), n + 1));
        } else if let Some(name) = line.strip_prefix('[').and_then(|l| l.split(']').next()) {
            table = name.trim().to_owned();
            written.push((table.clone(), n + 1));
        } else if let Some((key, value)) = line.split_once('=') {
            let key = key.trim().trim_matches('"');
            let full = if table.is_empty() {
                key.to_owned()
            } else {
                format!("{table}.{key}")
            };
            if let Some(inner) = value.trim().strip_prefix('{') {
                for pair in inner.trim_end_matches('}').split(',') {
                    if let Some((inner_key, _)) = pair.split_once('=') {
                        written.push((format!("{full}.{}", inner_key.trim()), n + 1));
                    }
                }
            }
            written.push((full, n + 1));
        }
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_found_on_their_lines() {
        let text = "name = \"x\"\n\n[demand]\nbudget = 3\n\n[[tools]]\nname = \"a\"\n[[tools]]\nname = \"b\"\nprice_per_minute = { min = \"1\", max = \"0\" }\n";
        assert_eq!(locate(text, "name"), 1);
        assert_eq!(locate(text, "demand.budget"), 4);
        assert_eq!(locate(text, "demand.candidates"), 3);
        assert_eq!(locate(text, "tools[1].name"), 9);
        assert_eq!(locate(text, "tools[1].price_per_minute.max"), 10);
        assert_eq!(locate(text, "tools[0].name"), 7);
        assert_eq!(locate(text, "churn.day_minutes"), 1);
    }
}
