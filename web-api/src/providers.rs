//! Provider profiles: `GET /v1/providers` and `GET /v1/providers/{id}`.

use orien_protocol::{Millis, NodeId, ProviderProfile, ToolName, Usdc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::ApiError;
use crate::api::PricingView;
use crate::text::{AmountText, PeerIdText, PeerRef, ToolText, parse, parse_peer};

/// Most providers one page holds.
pub const MAX_PROVIDER_PAGE: u32 = 500;
/// Providers in a page when the query does not say.
pub const DEFAULT_PROVIDER_PAGE: u32 = 50;

/// How `GET /v1/providers` sorts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProviderSort {
    /// Longest uptime first.
    #[default]
    Uptime,
    /// Cheapest first: the tool filtered by, else the provider's dearest per-minute price.
    Price,
    /// Most completed sessions first.
    Sessions,
    /// By display name.
    Name,
    /// Best reputation first: this node's own evidence of each provider (calls and
    /// sessions delivered or failed, disputes); one it never rented from scores 2/3.
    Reputation,
}

/// What this node has seen of a provider it rented from (its own evidence, from its own
/// ledger, never what the provider says of itself) and what other renters attest of it,
/// weighed by what they verifiably paid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReputationView {
    /// From 0 to 1: the chance it delivers, with the prior of a provider never seen at
    /// 2/3 (a dispute weighs ten failures), over this node's own evidence and the
    /// weighted attestations.
    pub score: f64,
    /// The same over this node's own evidence alone.
    pub own_score: f64,
    /// Other renters whose attestations of it weigh here (fresh keys weigh nothing).
    pub attesters: u32,
    /// The sum of their weights, each from 0 to 1 (by what the attester paid providers
    /// this node paid too).
    pub attested_weight: f64,
    /// Share of this node's pings of it that were answered (while connected; not
    /// scored).
    pub uptime: Option<f64>,
    /// Calls that ran to their exit (any exit code).
    pub calls_completed: u64,
    /// Calls that did not, for a reason other than their arguments (timed out, out of
    /// memory, the sandbox failed, lost, disputed).
    pub calls_failed: u64,
    /// Sessions that ended as this node wanted (counted, not scored: calls are what a
    /// provider delivers).
    pub sessions_completed: u64,
    /// Sessions the provider ended early (went silent, shut down).
    pub sessions_failed: u64,
    /// Sessions ended by a dispute of its receipts or signed results.
    pub disputes: u64,
    /// Median time from a call's request to its start, ms.
    pub start_p50_ms: Option<u64>,
    /// 95th percentile of the same, ms.
    pub start_p95_ms: Option<u64>,
    /// Median time from a call's request to its first output, ms (this run only).
    pub first_output_p50_ms: Option<u64>,
    /// 95th percentile of the same, ms.
    pub first_output_p95_ms: Option<u64>,
    /// Median time from a session's request to its acceptance, ms (this run only).
    pub open_p50_ms: Option<u64>,
    /// 95th percentile of the same, ms.
    pub open_p95_ms: Option<u64>,
}

/// A provider's reputation with this node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProviderReputation {
    /// The provider (peer id).
    pub provider: String,
    /// What this node has seen of it.
    pub reputation: ReputationView,
}

/// Query of `GET /v1/providers`: every filter narrows the list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ProviderQuery {
    /// Only providers selling this tool.
    pub tool: Option<ToolText>,
    /// Only providers whose per-minute prices (of `tool`, or of every tool they sell),
    /// session and execution alike, are at most this (USDC, e.g. `0.05`).
    pub max_price: Option<AmountText>,
    /// Only providers that had been up at least this many seconds when they signed
    /// their profile.
    pub min_uptime_secs: Option<u64>,
    /// Order (default `uptime`).
    pub sort: Option<ProviderSort>,
    /// Skip this many (the previous page's `next_offset`).
    pub offset: Option<u64>,
    /// Most providers in the page: 1 to 500, 50 when absent.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

/// A validated [`ProviderQuery`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderFilter {
    /// Only providers selling this tool.
    pub tool: Option<ToolName>,
    /// Price ceiling per minute.
    pub max_price: Option<Usdc>,
    /// Least uptime.
    pub min_uptime: Option<Millis>,
    /// Order.
    pub sort: ProviderSort,
    /// Skip this many.
    pub offset: u64,
    /// Most providers.
    pub limit: u32,
}

impl ProviderQuery {
    /// The filter these parameters ask for.
    pub fn filter(self) -> Result<ProviderFilter, ApiError> {
        let limit = self.limit.unwrap_or(DEFAULT_PROVIDER_PAGE);
        if !(1..=MAX_PROVIDER_PAGE).contains(&limit) {
            return Err(ApiError::field(
                "limit",
                format!("must be 1 to {MAX_PROVIDER_PAGE}"),
            ));
        }
        // Longer than any uptime matches nothing, which saturating says as well.
        let min_uptime = self
            .min_uptime_secs
            .map(|s| Millis(s.saturating_mul(1_000)));
        Ok(ProviderFilter {
            tool: self.tool.map(|t| parse("tool", t.as_str())).transpose()?,
            max_price: self
                .max_price
                .map(|p| parse("max_price", p.as_str()))
                .transpose()?,
            min_uptime,
            sort: self.sort.unwrap_or_default(),
            offset: self.offset.unwrap_or(0),
            limit,
        })
    }
}

/// One tool a provider sells.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProviderToolView {
    /// The tool.
    pub tool: String,
    /// Its prices.
    pub pricing: PricingView,
}

/// A provider as its signed profile describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProviderView {
    /// The provider (peer id).
    pub id: String,
    /// The name it goes by.
    pub display_name: String,
    /// What it offers.
    pub description: String,
    /// Its payout address.
    pub payout: String,
    /// Every tool it sells, by name, with prices.
    pub tools: Vec<ProviderToolView>,
    /// The lowest session and execution prices among its tools (`null` without tools).
    pub cheapest: Option<PricingView>,
    /// Its software and version.
    pub software: String,
    /// Sessions it says it provided to their normal end (closed by the renter, budget
    /// or duration reached): check it against your own receipts.
    pub sessions_completed: u64,
    /// When its node last started, ms since the Unix epoch.
    pub online_since: u64,
    /// How long it had been up when it signed, seconds.
    pub uptime_secs: u64,
    /// When it signed this profile, ms since the Unix epoch.
    pub issued_at: u64,
    /// When the profile expires, ms since the Unix epoch (it re-announces before).
    pub expires_at: u64,
    /// What this node has seen of it as renter (`null`: it never rented from it).
    pub reputation: Option<ReputationView>,
}

impl ProviderView {
    /// The view of a verified profile.
    pub fn new(profile: &ProviderProfile) -> Self {
        Self {
            id: profile.provider.to_string(),
            display_name: profile.display_name.clone(),
            description: profile.description.clone(),
            payout: profile.payout.to_string(),
            tools: profile
                .tools
                .iter()
                .map(|t| ProviderToolView {
                    tool: t.tool.to_string(),
                    pricing: PricingView::of(&t.pricing),
                })
                .collect(),
            cheapest: profile.cheapest().as_ref().map(PricingView::of),
            software: profile.software.clone(),
            sessions_completed: profile.sessions_completed,
            online_since: profile.online_since.0,
            uptime_secs: profile.uptime().get() / 1_000,
            issued_at: profile.issued_at.0,
            expires_at: profile.expires_at.0,
            reputation: None,
        }
    }
}

/// One page of `GET /v1/providers`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProviderPage {
    /// The providers.
    pub providers: Vec<ProviderView>,
    /// How many match in all.
    pub total: u64,
    /// Pass as `offset` for the next page; absent on the last one.
    pub next_offset: Option<u64>,
}

/// A provider id from a path: a node's peer id. An id of the peer-id form that no key
/// can have names no provider: `NotFound`, like any provider this node never heard of.
pub fn parse_provider_id(text: &str) -> Result<NodeId, ApiError> {
    match parse_peer("id", &PeerIdText(text.to_owned()))? {
        PeerRef::Node(node) => Ok(node),
        PeerRef::Nobody => Err(ApiError::NotFound(format!(
            "a profile of provider {text}: no node has that id"
        ))),
    }
}
