//! Documents of sessions, executions, files, receipts and balances, and the validated
//! requests the handlers hand to the [`NodeApi`](crate::NodeApi).
//!
//! Money is always a decimal USDC string (`"0.250000"`), never a float; times are
//! milliseconds; ids are lowercase hex, node ids are libp2p peer ids.

use orien_protocol::{
    ExecExit, ExecId, ExecOutcome, Millis, OfferId, SessionId, Split, ToolName, Usdc,
};
use serde::{Deserialize, Serialize};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{IntoParams, ToSchema};

use crate::api::PricingView;
use crate::problem::ApiError;
use crate::text::{
    IdText, OfferIdText, PathText, PeerIdText, PeerRef, PositiveAmountText, ToolText, parse,
    parse_peer,
};

/// Longest session a request may ask for: one week.
pub const MAX_SESSION_SECS: u64 = 7 * 24 * 3600;
/// Session length when the request names none: one hour.
pub const DEFAULT_SESSION_SECS: u64 = 3600;

/// A USDC amount as the API writes it: `"1.250000"`.
pub fn usdc_string(amount: Usdc) -> String {
    amount.decimal().to_string()
}

/// Parses a session id from a path segment.
pub fn parse_session_id(value: &str) -> Result<SessionId, ApiError> {
    parse("session", value)
}

/// Parses an execution id from a path segment.
pub fn parse_exec_id(value: &str) -> Result<ExecId, ApiError> {
    parse("execution", value)
}

/// Body of `POST /v1/sessions`: an offer, or a tool (and optionally a provider) whose
/// cheapest offer is taken. Documented as one of the two shapes (see its schema).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenSessionBody {
    /// The offer id, from `GET /v1/offers`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offer: Option<OfferIdText>,
    /// A tool name, when no offer is named.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool: Option<ToolText>,
    /// With `tool`: only this provider's offer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<PeerIdText>,
    /// Most the session may cost, in USDC (e.g. `"0.50"`).
    pub budget: PositiveAmountText,
    /// Longest the session stays open, in seconds (default 3600, at most one week).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_duration_secs: Option<u64>,
    /// How to pay: `escrow` (an on-chain lane) or `ledger` (the embedded ledgers only);
    /// by default escrow when the node is connected to a chain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payment: Option<PaymentKind>,
}

impl utoipa::PartialSchema for OpenSessionBody {
    fn schema() -> RefOr<Schema> {
        use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, OneOfBuilder, Type};
        let shape = |chooser: ObjectBuilder| {
            chooser
                .property("budget", PositiveAmountText::schema())
                .required("budget")
                .property(
                    "max_duration_secs",
                    ObjectBuilder::new()
                        .schema_type(Type::Integer)
                        .minimum(Some(1))
                        .maximum(Some(MAX_SESSION_SECS))
                        .description(Some(
                            "Longest the session stays open, in seconds (default 3600, at most one week)",
                        )),
                )
                .property("payment", PaymentKind::schema())
                .additional_properties(Some(AdditionalProperties::FreeForm(false)))
        };
        let by_offer = ObjectBuilder::new()
            .title(Some("by offer"))
            .property("offer", OfferIdText::schema())
            .required("offer")
            .description(Some("The offer id, from `GET /v1/offers`"));
        let by_tool = ObjectBuilder::new()
            .title(Some("by tool"))
            .property("tool", ToolText::schema())
            .required("tool")
            .property("provider", PeerIdText::schema())
            .description(Some(
                "The cheapest offer of a tool, only the provider's when one is named",
            ));
        OneOfBuilder::new()
            .item(shape(by_offer))
            .item(shape(by_tool))
            .description(Some(
                "An offer, or a tool (and optionally a provider) whose cheapest offer is taken; \
                 with the most the session may cost (`budget`, USDC) and how to pay (`payment`: \
                 `escrow` when the node is connected to a chain, by default)",
            ))
            .into()
    }
}

impl utoipa::ToSchema for OpenSessionBody {}

/// How a session is paid.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaymentKind {
    /// Escrow when the node is connected to a chain, else the ledgers.
    #[default]
    Auto,
    /// The embedded ledgers only; nothing on chain.
    Ledger,
    /// An escrow lane funded by this node's wallet.
    Escrow,
}

/// Which offer to open a session on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OfferChoice {
    /// This offer.
    Offer(OfferId),
    /// The cheapest offer of a tool, optionally from one provider.
    Tool {
        /// The tool.
        tool: ToolName,
        /// Only this provider ([`PeerRef::Nobody`]: a well-formed id no node can have).
        provider: Option<PeerRef>,
    },
}

/// A validated [`OpenSessionBody`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenSessionRequest {
    /// The offer.
    pub choice: OfferChoice,
    /// The budget (not zero).
    pub budget: Usdc,
    /// The longest duration.
    pub max_duration: Millis,
    /// How to pay.
    pub payment: PaymentKind,
}

impl TryFrom<OpenSessionBody> for OpenSessionRequest {
    type Error = ApiError;

    fn try_from(body: OpenSessionBody) -> Result<Self, ApiError> {
        let choice = match (body.offer, body.tool, body.provider) {
            (Some(offer), None, None) => OfferChoice::Offer(parse("offer", offer.as_str())?),
            (None, Some(tool), provider) => OfferChoice::Tool {
                tool: parse("tool", tool.as_str())?,
                provider: provider.map(|p| parse_peer("provider", &p)).transpose()?,
            },
            (Some(_), _, _) => {
                return Err(ApiError::field(
                    "offer",
                    "name either an offer, or a tool (and optionally a provider), not both",
                ));
            }
            (None, None, _) => {
                return Err(ApiError::field(
                    "offer",
                    "name an offer (from GET /v1/offers) or a tool",
                ));
            }
        };
        let budget: Usdc = parse("budget", body.budget.as_str())?;
        if budget.is_zero() {
            return Err(ApiError::field("budget", "must be more than zero"));
        }
        let secs = body.max_duration_secs.unwrap_or(DEFAULT_SESSION_SECS);
        if secs == 0 || secs > MAX_SESSION_SECS {
            return Err(ApiError::field(
                "max_duration_secs",
                format!("must be 1..={MAX_SESSION_SECS}"),
            ));
        }
        Ok(Self {
            choice,
            budget,
            max_duration: Millis(secs * 1000),
            payment: body.payment.unwrap_or_default(),
        })
    }
}

/// Which side of a session this node is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SessionRole {
    /// This node pays.
    Renter,
    /// This node runs the tool.
    Provider,
}

/// Where a session stands. A session that ended says why in `close_reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    /// Open; metering unless `suspend_reason` says why not.
    Active,
    /// Ended as intended: closed by the renter, or its budget spent.
    Completed,
    /// Ended at its longest duration.
    Expired,
    /// Ended by a fault: the peer gone or shut down, an ack missing, a dispute, a restart.
    Failed,
}

/// Why a session closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CloseReason {
    /// The renter closed it.
    RenterRequested,
    /// The budget is spent.
    BudgetExhausted,
    /// Its longest duration was reached.
    MaxDuration,
    /// The renter did not acknowledge a receipt in time.
    AckTimeout,
    /// The peer was unreachable for longer than the grace period.
    Disconnected,
    /// The provider shut down.
    ProviderShutdown,
    /// A receipt failed the renter's checks; it is kept as evidence.
    Dispute,
    /// The renter asked to close the escrow lane the session was paid from.
    LaneClosing,
    /// The node restarted after a crash and closed out the sessions it had open.
    Restarted,
}

impl From<orien_protocol::CloseReason> for CloseReason {
    fn from(reason: orien_protocol::CloseReason) -> Self {
        use orien_protocol::CloseReason as Wire;
        match reason {
            Wire::RenterRequested => Self::RenterRequested,
            Wire::BudgetExhausted => Self::BudgetExhausted,
            Wire::MaxDuration => Self::MaxDuration,
            Wire::AckTimeout => Self::AckTimeout,
            Wire::Disconnected => Self::Disconnected,
            Wire::ProviderShutdown => Self::ProviderShutdown,
            Wire::Dispute => Self::Dispute,
            Wire::LaneClosing => Self::LaneClosing,
            Wire::Restarted => Self::Restarted,
        }
    }
}

impl CloseReason {
    /// The state a session that ended for this reason is in.
    pub fn state(self) -> SessionState {
        match self {
            Self::RenterRequested | Self::BudgetExhausted | Self::LaneClosing => {
                SessionState::Completed
            }
            Self::MaxDuration => SessionState::Expired,
            Self::AckTimeout
            | Self::Disconnected
            | Self::ProviderShutdown
            | Self::Dispute
            | Self::Restarted => SessionState::Failed,
        }
    }

    /// What it means, in a sentence.
    pub fn describe(self) -> &'static str {
        match self {
            Self::RenterRequested => "the renter closed the session",
            Self::BudgetExhausted => "the budget is spent",
            Self::MaxDuration => "the session reached its longest duration",
            Self::AckTimeout => "the renter did not acknowledge a receipt in time",
            Self::Disconnected => "the peer was unreachable for longer than the grace period",
            Self::ProviderShutdown => "the provider shut down",
            Self::Dispute => "a receipt failed the renter's checks and is kept as evidence",
            Self::LaneClosing => "the renter is closing the escrow lane the session was paid from",
            Self::Restarted => "the node restarted and closed out the sessions it had open",
        }
    }
}

/// Why a session is suspended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SuspendReason {
    /// The budget is spent.
    BudgetReached,
    /// A receipt was not acknowledged in time.
    AckTimeout,
    /// A receipt failed the renter's checks; it is kept as evidence.
    Dispute,
}

/// Usage so far, as acknowledged by both sides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UsageView {
    /// Acknowledged receipts.
    pub receipts: u64,
    /// Session time, ms.
    pub session_ms: u64,
    /// Execution time, ms.
    pub exec_ms: u64,
    /// CPU time, ms.
    pub cpu_ms: u64,
}

/// The 90/7/3 split of an amount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SplitView {
    /// The provider's share.
    pub provider: String,
    /// The network fee.
    pub fee: String,
    /// The reserve.
    pub reserve: String,
}

impl From<Split> for SplitView {
    fn from(split: Split) -> Self {
        Self {
            provider: usdc_string(split.provider()),
            fee: usdc_string(split.fee()),
            reserve: usdc_string(split.reserve()),
        }
    }
}

/// A session, from this node's ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SessionView {
    /// The session id.
    pub id: String,
    /// This node's side.
    pub role: SessionRole,
    /// The provider (peer id).
    pub provider: String,
    /// The renter (peer id).
    pub renter: String,
    /// The offer, when this node opened the session in this run.
    pub offer: Option<String>,
    /// The tool, when known.
    pub tool: Option<String>,
    /// State.
    pub state: SessionState,
    /// Why it ended (every state but `active`).
    pub close_reason: Option<CloseReason>,
    /// Why an `active` session is not metering, when it is not.
    pub suspend_reason: Option<SuspendReason>,
    /// Why it is suspended or closed, in a sentence.
    pub state_detail: Option<String>,
    /// Most the session may cost.
    pub budget: String,
    /// Prices.
    pub pricing: PricingView,
    /// Opening time, ms since the Unix epoch.
    pub opened_at: u64,
    /// Acknowledged usage.
    pub usage: UsageView,
    /// Amount owed so far (the last acknowledged receipt).
    pub amount: String,
    /// Its split.
    pub split: SplitView,
}

/// Body of `POST /v1/sessions/{id}/executions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecBody {
    /// Arguments by name, checked by the provider against the tool's JSON Schema (the
    /// offer's `args_schema`); at most 64 KiB of JSON.
    #[schema(value_type = Object)]
    pub args: serde_json::Map<String, serde_json::Value>,
    /// Another tool of the session's provider to run, over the same workspace, at its
    /// own offer's execution price (absent: the tool the session opened on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<ToolText>,
    /// Workspace paths the call will leave its outputs at (at most 16): when it ends,
    /// the provider keeps a copy of each and its signed result names each copy's
    /// SHA-256 (`artefacts`), fetched with `GET /v1/executions/{id}/artefacts/{path}`.
    /// A path named twice counts once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(max_items = 16)]
    pub outputs: Vec<PathText>,
}

/// What the provider kept of an output path when the call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ArtefactState {
    /// A copy of the regular file there: fetch it by its path.
    Kept,
    /// Nothing was there.
    Missing,
    /// Something other than a regular file was there.
    NotAFile,
    /// The provider had no room to keep it.
    NoRoom,
    /// The provider could not copy it.
    Failed,
}

/// An output of a call, as its provider's signed result names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ArtefactView {
    /// The workspace path the call named.
    pub path: String,
    /// What the provider kept of it.
    pub state: ArtefactState,
    /// Size of the kept copy, in bytes (`state: kept`).
    pub size: Option<u64>,
    /// SHA-256 of the kept copy (hex; `state: kept`): the `ETag` of its download.
    pub sha256: Option<String>,
}

/// Where an execution stands. A failed one says why in `failure`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExecState {
    /// Asked for; the provider has not confirmed it started.
    Pending,
    /// Still running.
    Running,
    /// The process exited; see `exit_code` (which may be non-zero: the tool's own failure).
    Completed,
    /// It did not run to its exit; see `failure`.
    Failed,
}

/// Why an execution failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExecFailure {
    /// Killed at the wall-time limit.
    TimedOut,
    /// Killed at the memory limit.
    OutOfMemory,
    /// The arguments did not satisfy the tool's schema; nothing ran or was charged.
    InvalidArguments,
    /// The sandbox failed; nothing was charged.
    SandboxError,
    /// The session ended before the execution reported its exit.
    Lost,
    /// The provider's signed result does not match what the renter asked for or
    /// received (`signed_result` is the evidence); the session is disputed.
    Disputed,
}

/// An execution and its output so far.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ExecutionView {
    /// The execution id.
    pub id: String,
    /// Its session.
    pub session: String,
    /// The tool it runs.
    pub tool: String,
    /// State.
    pub state: ExecState,
    /// Why it failed (with `state: failed`).
    pub failure: Option<ExecFailure>,
    /// Exit code, when the process exited.
    pub exit_code: Option<i32>,
    /// Why arguments were refused or the sandbox failed.
    pub detail: Option<String>,
    /// Wall time, ms (once ended).
    pub wall_ms: Option<u64>,
    /// CPU time, ms (once ended).
    pub cpu_ms: Option<u64>,
    /// Peak memory, bytes (once ended).
    pub peak_memory_bytes: Option<u64>,
    /// Standard output so far (UTF-8, invalid bytes replaced).
    pub stdout: String,
    /// Standard error so far (UTF-8, invalid bytes replaced).
    pub stderr: String,
    /// Whether `stdout` here is not all of it: cut at the offer's output cap, or, when
    /// the node no longer holds the output (after a restart), at what its execution
    /// record keeps (`stdout_bytes` and `stdout_sha256` still describe all of it).
    pub stdout_truncated: bool,
    /// The same for `stderr`.
    pub stderr_truncated: bool,
    /// When it was asked for (by the renter; started, on the provider), ms since the
    /// Unix epoch.
    pub requested_at: Option<u64>,
    /// When the provider confirmed it started, ms since the Unix epoch.
    pub started_at: Option<u64>,
    /// When it ended, ms since the Unix epoch.
    pub ended_at: Option<u64>,
    /// What the call cost: its metered execution time at the session's execution
    /// price (USDC; `0` for a call that did not run), once it ended.
    pub cost: Option<String>,
    /// SHA-256 of all of standard output (hex), once it ended.
    pub stdout_sha256: Option<String>,
    /// SHA-256 of all of standard error (hex), once it ended.
    pub stderr_sha256: Option<String>,
    /// Bytes of standard output in all, once it ended.
    pub stdout_bytes: Option<u64>,
    /// Bytes of standard error in all, once it ended.
    pub stderr_bytes: Option<u64>,
    /// The provider's signed result of the call (hex of the signed envelope, domain
    /// `orien/exec-result/v1`), once it ended: anyone can check what the provider said
    /// it computed with `orien-node result verify`.
    pub signed_result: Option<String>,
    /// What the provider kept of each output path the call named, from its signed
    /// result, once it ended.
    pub artefacts: Vec<ArtefactView>,
}

impl ExecutionView {
    /// An execution in `state` with nothing yet known of its end, times or output.
    pub fn new(id: String, session: String, tool: String, state: ExecState) -> Self {
        Self {
            id,
            session,
            tool,
            state,
            failure: None,
            exit_code: None,
            detail: None,
            wall_ms: None,
            cpu_ms: None,
            peak_memory_bytes: None,
            stdout: String::new(),
            stderr: String::new(),
            stdout_truncated: false,
            stderr_truncated: false,
            requested_at: None,
            started_at: None,
            ended_at: None,
            cost: None,
            stdout_sha256: None,
            stderr_sha256: None,
            stdout_bytes: None,
            stderr_bytes: None,
            signed_result: None,
            artefacts: Vec::new(),
        }
    }

    /// Fills the exit fields from an execution's exit.
    pub fn with_exit(mut self, exit: &ExecExit) -> Self {
        let (state, failure, detail) = exec_state(&exit.outcome);
        self.state = state;
        self.failure = failure;
        self.detail = detail;
        self.exit_code = exit.exit_code;
        self.wall_ms = Some(exit.wall.get());
        self.cpu_ms = Some(exit.cpu.get());
        self.peak_memory_bytes = Some(exit.peak_memory_bytes);
        self.stdout_truncated = exit.stdout_truncated;
        self.stderr_truncated = exit.stderr_truncated;
        self
    }
}

/// The API state of an outcome, why it failed, and the detail.
pub fn exec_state(outcome: &ExecOutcome) -> (ExecState, Option<ExecFailure>, Option<String>) {
    let failed = |why| (ExecState::Failed, Some(why), None);
    match outcome {
        ExecOutcome::Exited => (ExecState::Completed, None, None),
        ExecOutcome::TimedOut => failed(ExecFailure::TimedOut),
        ExecOutcome::OutOfMemory => failed(ExecFailure::OutOfMemory),
        ExecOutcome::InvalidArguments { detail } => (
            ExecState::Failed,
            Some(ExecFailure::InvalidArguments),
            Some(detail.clone()),
        ),
        ExecOutcome::SandboxError { detail } => (
            ExecState::Failed,
            Some(ExecFailure::SandboxError),
            Some(detail.clone()),
        ),
    }
}

/// What one log entry carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LogKind {
    /// A chunk of standard output.
    Stdout,
    /// A chunk of standard error.
    Stderr,
    /// The end: `data` is the execution as JSON.
    Exit,
}

/// One entry of an execution's log; `index` is its server-sent event id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LogEntry {
    /// Position in the log, from 0.
    pub index: u64,
    /// What it is.
    pub kind: LogKind,
    /// The chunk (UTF-8, invalid bytes replaced), or the final execution as JSON.
    pub data: String,
}

/// One server-sent event of `GET /v1/executions/{id}/logs`, as `event` and `data`
/// lines (its `id` line is the entry's index): a chunk of output as text, then the
/// execution as JSON once it ended, or an `error` if the node stopped following it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "event", content = "data", rename_all = "snake_case")]
pub enum LogEvent {
    /// A chunk of standard output (UTF-8, invalid bytes replaced).
    Stdout(String),
    /// A chunk of standard error (UTF-8, invalid bytes replaced).
    Stderr(String),
    /// The end: the execution, as `GET /v1/executions/{id}` answers it.
    Exit(Box<ExecutionView>),
    /// The node stopped following the log; the detail says why.
    Error(String),
}

impl LogEvent {
    /// Reads an event from its name and data; `None` for a name it does not know.
    pub fn parse(name: &str, data: String) -> Result<Option<Self>, serde_json::Error> {
        Ok(Some(match name {
            "stdout" => Self::Stdout(data),
            "stderr" => Self::Stderr(data),
            "exit" => Self::Exit(Box::new(serde_json::from_str(&data)?)),
            "error" => Self::Error(data),
            _ => return Ok(None),
        }))
    }
}

/// Entries after a position, and whether the log is complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogPage {
    /// New entries, in order.
    pub entries: Vec<LogEntry>,
    /// The execution ended and `entries` reaches the end of its log.
    pub finished: bool,
}

/// An entry of a session's workspace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FileView {
    /// Workspace-relative path.
    pub path: String,
    /// Size in bytes (0 for directories).
    pub size: u64,
    /// Whether it is a directory.
    pub is_dir: bool,
    /// On upload: the SHA-256 (hex) of the bytes this node took in and passed on to the
    /// provider, to check against the file's own. `null` in listings.
    pub sha256: Option<String>,
}

/// Query of `GET /v1/executions`: every parameter narrows the list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ExecutionQuery {
    /// Only this session's.
    pub session: Option<IdText>,
    /// Only this tool's.
    pub tool: Option<ToolText>,
    /// Only executions in this state.
    pub state: Option<ExecState>,
    /// Only executions that failed for this reason (with a `state` other than
    /// `failed`, nothing matches both).
    pub failure: Option<ExecFailure>,
    /// Only executions older than this one: the previous page's `next`.
    pub after: Option<IdText>,
    /// Most executions in the page: 1 to 500, 50 when absent.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

/// Most executions one page holds.
pub const MAX_EXECUTION_PAGE: u32 = 500;
/// Executions in a page when the query does not say.
pub const DEFAULT_EXECUTION_PAGE: u32 = 50;

/// A validated [`ExecutionQuery`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutionFilter {
    /// Only this session's.
    pub session: Option<SessionId>,
    /// Only this tool's.
    pub tool: Option<ToolName>,
    /// Only this state.
    pub state: Option<ExecState>,
    /// Only this reason of failure (with another `state`, nothing matches).
    pub failure: Option<ExecFailure>,
    /// Only older than this one.
    pub after: Option<ExecId>,
    /// Most executions.
    pub limit: u32,
}

impl ExecutionQuery {
    /// The filter these parameters ask for.
    pub fn filter(self) -> Result<ExecutionFilter, ApiError> {
        let limit = self.limit.unwrap_or(DEFAULT_EXECUTION_PAGE);
        if !(1..=MAX_EXECUTION_PAGE).contains(&limit) {
            return Err(ApiError::field(
                "limit",
                format!("must be 1 to {MAX_EXECUTION_PAGE}"),
            ));
        }
        Ok(ExecutionFilter {
            session: self
                .session
                .map(|s| parse("session", s.as_str()))
                .transpose()?,
            tool: self.tool.map(|t| parse("tool", t.as_str())).transpose()?,
            state: self.state,
            failure: self.failure,
            after: self.after.map(|a| parse("after", a.as_str())).transpose()?,
            limit,
        })
    }
}

/// One page of executions, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ExecutionPage {
    /// The executions.
    pub executions: Vec<ExecutionView>,
    /// Pass as `after` for the next page; absent on the last one.
    pub next: Option<String>,
}

/// Query of `GET /v1/receipts`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReceiptQuery {
    /// The session.
    pub session: IdText,
}

/// A dual-signed receipt, as this node's ledger holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReceiptView {
    /// Position in the chain, from 1.
    pub seq: u64,
    /// Cumulative session time, ms.
    pub session_ms: u64,
    /// Cumulative execution time, ms.
    pub exec_ms: u64,
    /// Cumulative CPU time, ms.
    pub cpu_ms: u64,
    /// Cumulative price of the execution time, each call at its own tool's price.
    pub exec_amount: String,
    /// Cumulative price of the artefacts kept by the results this receipt commits to.
    pub artefact_amount: String,
    /// Cumulative amount: the session time at the session's price plus `exec_amount`
    /// plus `artefact_amount`, capped at the budget.
    pub amount: String,
    /// Hash of this receipt (hex).
    pub hash: String,
    /// Hash of the previous receipt (hex).
    pub prev: String,
    /// When the provider issued it, ms since the Unix epoch.
    pub issued_at: u64,
    /// The provider's signed receipt, as received (hex).
    pub receipt: String,
    /// The renter's signed acknowledgement, as received (hex).
    pub ack: String,
}

/// Query of `GET /v1/earnings`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EarningsQuery {
    /// The period.
    pub by: EarningsPeriod,
}

/// A period of `GET /v1/earnings`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EarningsPeriod {
    /// UTC days.
    Day,
}

/// What this node earned as provider in one period (its share of acknowledged receipts).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EarningsView {
    /// The period, `YYYY-MM-DD` (UTC).
    pub day: String,
    /// Earned, in micro-USDC (can be −1 on a day whose only receipt stepped onto a
    /// multiple of 100 µUSDC; see the split rules).
    pub earned_micros: i64,
}

/// One ledger account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BalanceView {
    /// The account (`renter <lane>`, `provider <lane>`, `fee`, `reserve`, …).
    pub account: String,
    /// Sum of debits.
    pub debited: String,
    /// Sum of credits.
    pub credited: String,
    /// Balance on the account's normal side, in micro-USDC (may be negative).
    pub net_micros: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(json: serde_json::Value) -> Result<OpenSessionRequest, ApiError> {
        OpenSessionRequest::try_from(serde_json::from_value::<OpenSessionBody>(json).unwrap())
    }

    fn field_of(error: ApiError) -> String {
        match error {
            ApiError::BadRequest { errors, .. } => errors[0].field.clone(),
            other => panic!("expected a bad request, got {other:?}"),
        }
    }

    #[test]
    fn open_requests_are_validated_field_by_field() {
        let ok = body(serde_json::json!({"tool": "sha256", "budget": "0.5"})).unwrap();
        assert_eq!(ok.budget, Usdc::from_micros(500_000));
        assert_eq!(ok.max_duration, Millis(3_600_000));
        for (json, field) in [
            (serde_json::json!({"budget": "1"}), "offer"),
            (
                serde_json::json!({"offer": "00", "tool": "x", "budget": "1"}),
                "offer",
            ),
            (serde_json::json!({"offer": "zz", "budget": "1"}), "offer"),
            (
                serde_json::json!({"tool": "Bad Tool", "budget": "1"}),
                "tool",
            ),
            (serde_json::json!({"tool": "t", "budget": "0"}), "budget"),
            (
                serde_json::json!({"tool": "t", "budget": "1.0000001"}),
                "budget",
            ),
            (serde_json::json!({"tool": "t", "budget": "-1"}), "budget"),
            (
                serde_json::json!({"tool": "t", "budget": "1", "max_duration_secs": 0}),
                "max_duration_secs",
            ),
            (
                serde_json::json!({"tool": "t", "budget": "1", "provider": "nope"}),
                "provider",
            ),
        ] {
            assert_eq!(field_of(body(json.clone()).unwrap_err()), field, "{json}");
        }
    }
}
