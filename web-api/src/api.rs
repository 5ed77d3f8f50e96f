//! What the HTTP API needs from a node: the [`NodeApi`] trait and the documents it
//! exchanges. The daemon implements the trait; tests may implement it with fakes.

use async_trait::async_trait;
use std::time::Duration;

use axum::body::Bytes;
use orien_protocol::{
    ContentHash, ExecId, NodeId, Offer, OfferId, Pricing, SessionId, ToolName, Usdc,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::chain::{FundRequest, FundedView, SettlementRecordView, SettlementView, WalletView};
use crate::problem::ApiError;
use crate::sessions::{
    BalanceView, ExecutionView, FileView, LogPage, OpenSessionRequest, ReceiptView, SessionView,
};
use crate::text::{AmountText, PeerIdText, PeerRef, ToolText, parse, parse_peer};

/// Bytes of a file in transit, in order, or the error that cut them short.
pub type ByteStream = futures_util::stream::BoxStream<'static, std::io::Result<Bytes>>;

/// Largest file [`NodeApi::get_file`] reads whole (MCP tools carry files inline).
pub const MAX_FILE_IN_MEMORY: u64 = 16 << 20;

/// An upload as a request carries it.
pub struct FileUpload {
    /// Size of the whole file.
    pub size: u64,
    /// The first byte `body` carries (past 0: a resumed upload).
    pub offset: u64,
    /// The bytes are a tar archive to unpack under the path, a directory.
    pub archive: bool,
    /// The bytes from `offset` to the end.
    pub body: ByteStream,
}

/// A download under way.
pub struct FileDownload {
    /// Size of the whole file.
    pub size: u64,
    /// The first byte `body` carries.
    pub offset: u64,
    /// The SHA-256 of the whole file.
    pub sha256: ContentHash,
    /// The bytes from `offset` to the end, each chunk verified.
    pub body: ByteStream,
}

/// The node behind the API.
#[async_trait]
pub trait NodeApi: Send + Sync + 'static {
    /// Identity and state of the node.
    async fn node_info(&self) -> Result<NodeInfo, ApiError>;
    /// Liveness: the process answers, with how long it has run and its open sessions.
    async fn health(&self) -> HealthView;
    /// Whether the node can serve requests (network up, stores open).
    async fn ready(&self) -> bool;
    /// Prometheus text exposition of the node's metrics.
    async fn metrics(&self) -> String;
    /// Offers in the node's offer book that match `filter`, cheapest first.
    async fn offers(&self, filter: OfferFilter) -> Result<Vec<OfferView>, ApiError>;
    /// The tools this node sells, as it offers them.
    async fn tools(&self) -> Result<Vec<OfferView>, ApiError>;
    /// The providers this node has heard of, a page of them.
    async fn providers(
        &self,
        filter: crate::providers::ProviderFilter,
    ) -> Result<crate::providers::ProviderPage, ApiError>;
    /// This node's own evidence of every provider it rented from.
    async fn reputation(&self) -> Result<Vec<crate::providers::ProviderReputation>, ApiError>;
    /// One provider's profile (`NotFound` when none is known).
    async fn provider(
        &self,
        provider: orien_protocol::NodeId,
    ) -> Result<crate::providers::ProviderView, ApiError>;

    /// Opens a session as renter; answers once the provider accepted it.
    async fn open_session(&self, request: OpenSessionRequest) -> Result<SessionView, ApiError>;
    /// Every session in this node's ledger, newest first.
    async fn sessions(&self) -> Result<Vec<SessionView>, ApiError>;
    /// One session.
    async fn session(&self, session: SessionId) -> Result<SessionView, ApiError>;
    /// Closes a rented session; answers once the closing receipt is committed.
    async fn close_session(&self, session: SessionId) -> Result<SessionView, ApiError>;

    /// Starts an execution in a rented session.
    async fn start_execution(
        &self,
        session: SessionId,
        tool: Option<ToolName>,
        args: serde_json::Value,
        outputs: Vec<String>,
    ) -> Result<ExecutionView, ApiError>;
    /// An execution and its output so far.
    async fn execution(&self, exec: ExecId) -> Result<ExecutionView, ApiError>;
    /// This node's execution records matching `filter`, newest first: the calls it
    /// rented and the calls it ran as provider, from the ledger (they survive restarts).
    async fn executions(
        &self,
        filter: crate::sessions::ExecutionFilter,
    ) -> Result<crate::sessions::ExecutionPage, ApiError>;
    /// Log entries of an execution after index `after` (all when `None`), waiting up
    /// to `wait` for new ones when there are none yet.
    async fn execution_log(
        &self,
        exec: ExecId,
        after: Option<u64>,
        wait: Duration,
    ) -> Result<LogPage, ApiError>;

    /// Uploads a file into a rented session's workspace, streamed: the provider
    /// takes it whole and matching its hash, or not at all.
    async fn upload_file(
        &self,
        session: SessionId,
        path: String,
        upload: FileUpload,
    ) -> Result<FileView, ApiError>;
    /// Starts a download of a file of a rented session's workspace from `offset` (with
    /// `archive`, of a tar of the directory at `path`, empty for the workspace): of
    /// the copy with hash `expect` the provider holds, or of the file as it is now.
    async fn download_file(
        &self,
        session: SessionId,
        path: String,
        archive: bool,
        offset: u64,
        expect: Option<ContentHash>,
    ) -> Result<FileDownload, ApiError>;
    /// Starts a download, from `offset`, of the artefact that the rented call `exec`
    /// left at `path`: the copy its provider kept when the call ended and named in the
    /// signed result (while the session is open, and for as long after as the provider
    /// keeps artefacts).
    async fn download_artefact(
        &self,
        exec: ExecId,
        path: String,
        offset: u64,
    ) -> Result<FileDownload, ApiError>;
    /// Writes a file held in memory into a rented session's workspace.
    async fn put_file(
        &self,
        session: SessionId,
        path: String,
        data: Vec<u8>,
    ) -> Result<FileView, ApiError> {
        let size = data.len() as u64;
        let body = futures_util::stream::once(async move { Ok(Bytes::from(data)) });
        let upload = FileUpload {
            size,
            offset: 0,
            archive: false,
            body: Box::pin(body),
        };
        self.upload_file(session, path, upload).await
    }
    /// Reads a file of at most [`MAX_FILE_IN_MEMORY`] bytes from a rented session's
    /// workspace into memory.
    async fn get_file(&self, session: SessionId, path: String) -> Result<Vec<u8>, ApiError> {
        let download = self
            .download_file(session, path.clone(), false, 0, None)
            .await?;
        let from = format!("GET /v1/sessions/{session}/files/{path}");
        read_whole(download, &path, &from).await
    }
    /// Reads an artefact of at most [`MAX_FILE_IN_MEMORY`] bytes (see
    /// [`download_artefact`](Self::download_artefact)) into memory.
    async fn get_artefact(&self, exec: ExecId, path: String) -> Result<Vec<u8>, ApiError> {
        let download = self.download_artefact(exec, path.clone(), 0).await?;
        let from = format!("GET /v1/executions/{exec}/artefacts/{path}");
        read_whole(download, &path, &from).await
    }
    /// Lists a rented session's workspace.
    async fn list_files(&self, session: SessionId) -> Result<Vec<FileView>, ApiError>;

    /// The dual-signed receipts of a session, in order.
    async fn receipts(&self, session: SessionId) -> Result<Vec<ReceiptView>, ApiError>;
    /// Every ledger account with its balance.
    async fn balances(&self) -> Result<Vec<BalanceView>, ApiError>;
    /// This node's provider earnings per UTC day, oldest first.
    async fn earnings_by_day(&self) -> Result<Vec<crate::sessions::EarningsView>, ApiError>;

    /// The node's wallet and what the escrow holds.
    async fn wallet(&self) -> Result<WalletView, ApiError>;
    /// Adds USDC to the lane to a provider.
    async fn fund_lane(&self, request: FundRequest) -> Result<FundedView, ApiError>;
    /// Every settlement transaction in the ledger, newest first.
    async fn settlements(&self) -> Result<Vec<SettlementRecordView>, ApiError>;
    /// Settles every lane not paid in full.
    async fn settle(&self) -> Result<Vec<SettlementView>, ApiError>;
    /// Withdraws `what` from the escrow to this node's wallet.
    async fn withdraw(
        &self,
        what: crate::chain::WithdrawKind,
    ) -> Result<crate::chain::WithdrawnView, ApiError>;
    /// Asks to close this node's lane to `payout` (starts its thaw window).
    async fn reclaim(
        &self,
        payout: orien_protocol::EvmAddress,
    ) -> Result<crate::chain::ReclaimView, ApiError>;
    /// After the thaw window, takes the lane's unspent deposit back.
    async fn finish_reclaim(
        &self,
        payout: orien_protocol::EvmAddress,
    ) -> Result<crate::chain::RefundedView, ApiError>;
    /// Every escrow lane of this node, ledger and chain side by side.
    async fn lane_status(&self) -> Result<Vec<crate::chain::LaneStatusView>, ApiError>;
}

/// `GET /healthz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HealthView {
    /// Always `ok`: a node that can answer is alive (readiness is `GET /readyz`).
    pub status: HealthStatus,
    /// Version of `orien-node`.
    pub version: String,
    /// Seconds since the node started.
    pub uptime_secs: u64,
    /// Sessions open now, as renter and as provider.
    pub active_sessions: usize,
}

/// The status in [`HealthView`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    /// The node process answers.
    Ok,
}

/// `GET /v1/node`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NodeInfo {
    /// The node's id (libp2p peer id).
    pub id: String,
    /// Version of `orien-node`.
    pub version: String,
    /// Addresses the node listens on.
    pub listen: Vec<String>,
    /// Connected peers.
    pub peers: usize,
    /// The connected peers' ids, sorted.
    pub connected: Vec<String>,
    /// Offers in the offer book.
    pub offers_known: usize,
    /// The operator's controls of peers (`null` when the node runs no sessions).
    pub operator: Option<OperatorView>,
    /// What its sandbox runs now (`null` when it sells no tools).
    pub sandbox: Option<SandboxView>,
}

/// What a provider's sandbox runs now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SandboxView {
    /// Sessions whose containers run now (a container each, and one per other tool the
    /// session called).
    pub sessions: Vec<String>,
    /// Sandboxes started ahead of sessions and ready now, by tool.
    pub warm: Vec<WarmView>,
}

/// Warm sandboxes of one tool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WarmView {
    /// The tool.
    pub tool: String,
    /// How many are ready.
    pub ready: usize,
}

/// Which peers the node deals with, and how often one renter may open sessions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OperatorView {
    /// Provider: serves only these renters (`null`: anyone not denied).
    pub allow_renters: Option<Vec<String>>,
    /// Provider: never serves these renters.
    pub deny_renters: Vec<String>,
    /// Renter: rents only from these providers (`null`: anyone not denied).
    pub allow_providers: Option<Vec<String>>,
    /// Renter: never rents from these providers (their offers are not listed).
    pub deny_providers: Vec<String>,
    /// Provider: sessions one renter may hold at once.
    pub max_sessions_per_peer: u64,
    /// Provider: sessions one renter may open in a minute (0: no limit).
    pub max_opens_per_minute_per_peer: u32,
}

/// Query of `GET /v1/offers`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct OfferQueryParams {
    /// Only this tool.
    pub tool: Option<ToolText>,
    /// Only offers whose execution price per minute is at most this (USDC, e.g. `0.05`).
    pub max_price: Option<AmountText>,
    /// Only this provider (peer id).
    pub provider: Option<PeerIdText>,
    /// Order (default `price`).
    pub sort: Option<OfferSort>,
}

/// How `GET /v1/offers` sorts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OfferSort {
    /// Cheapest execution price first.
    #[default]
    Price,
    /// Best reputation of the provider with this node first (its own evidence; a
    /// provider never rented from scores 2/3), then cheapest.
    Reputation,
}

/// A validated [`OfferQueryParams`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OfferFilter {
    /// Only this tool.
    pub tool: Option<ToolName>,
    /// Price ceiling per minute of execution.
    pub max_price: Option<Usdc>,
    /// Only this provider.
    pub provider: Option<NodeId>,
    /// Order.
    pub sort: OfferSort,
}

impl OfferQueryParams {
    /// The filter these parameters ask for; `None` when no offer can match (a provider
    /// id that is no node's).
    pub fn filter(self) -> Result<Option<OfferFilter>, ApiError> {
        let provider = match self
            .provider
            .map(|p| parse_peer("provider", &p))
            .transpose()?
        {
            None => None,
            Some(PeerRef::Node(node)) => Some(node),
            Some(PeerRef::Nobody) => return Ok(None),
        };
        Ok(Some(OfferFilter {
            tool: self.tool.map(|t| parse("tool", t.as_str())).transpose()?,
            max_price: self
                .max_price
                .map(|p| parse("max_price", p.as_str()))
                .transpose()?,
            provider,
            sort: self.sort.unwrap_or_default(),
        }))
    }
}

/// Prices of an offer, as decimal USDC strings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PricingView {
    /// Per minute of open session.
    pub session_per_minute: String,
    /// Per minute of execution.
    pub exec_per_minute: String,
    /// Per GiB of a call's artefacts kept (charged once, when the receipts commit to the
    /// call's result); `0.000000` when keeping them is free.
    pub artefact_per_gib: String,
}

impl PricingView {
    /// The view of `pricing`.
    pub fn of(pricing: &Pricing) -> Self {
        let amount = crate::sessions::usdc_string;
        Self {
            session_per_minute: amount(pricing.session_per_minute),
            exec_per_minute: amount(pricing.exec_per_minute),
            artefact_per_gib: amount(pricing.artefact_per_gib),
        }
    }
}

/// Limits of one execution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LimitsView {
    /// Wall-time limit, ms.
    pub max_exec_ms: u64,
    /// CPU quota, thousandths of a core.
    pub cpu_millis: u32,
    /// Memory limit, bytes.
    pub memory_bytes: u64,
    /// Process limit.
    pub pids: u32,
    /// Output cap per stream, bytes.
    pub output_bytes: u64,
    /// Workspace quota, bytes.
    pub workspace_bytes: u64,
    /// Concurrent executions per session.
    pub concurrent_execs: u32,
}

/// An offer as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OfferView {
    /// The offer id (hex).
    pub id: String,
    /// The provider (peer id).
    pub provider: String,
    /// The tool.
    pub tool: String,
    /// Its version.
    pub version: String,
    /// What it does.
    pub description: String,
    /// The image it runs in (`sha256:…`).
    pub image_digest: String,
    /// JSON Schema of the arguments.
    #[schema(value_type = Object)]
    pub args_schema: serde_json::Value,
    /// Prices.
    pub pricing: PricingView,
    /// Limits.
    pub limits: LimitsView,
    /// The provider's payout address.
    pub payout: String,
    /// Issue time, ms since the Unix epoch.
    pub issued_at: u64,
    /// Expiry, ms since the Unix epoch.
    pub expires_at: u64,
    /// How long after a session's close the provider keeps its artefacts, ms (0: only
    /// while it is open).
    pub keep_artefacts_ms: u64,
}

impl OfferView {
    /// The view of a verified offer.
    pub fn new(id: OfferId, offer: &Offer) -> Self {
        Self {
            id: id.to_string(),
            provider: offer.provider.to_string(),
            tool: offer.tool.to_string(),
            version: offer.version.clone(),
            description: offer.description.clone(),
            image_digest: offer.image_digest.to_string(),
            args_schema: serde_json::from_str(&offer.args_schema)
                .unwrap_or(serde_json::Value::Null),
            pricing: PricingView::of(&offer.pricing),
            limits: LimitsView {
                max_exec_ms: offer.limits.max_exec.get(),
                cpu_millis: offer.limits.cpu_millis,
                memory_bytes: offer.limits.memory_bytes,
                pids: offer.limits.pids,
                output_bytes: offer.limits.output_bytes,
                workspace_bytes: offer.limits.workspace_bytes,
                concurrent_execs: offer.limits.concurrent_execs,
            },
            payout: offer.payout.to_string(),
            issued_at: offer.issued_at.unix_millis(),
            expires_at: offer.expires_at.unix_millis(),
            keep_artefacts_ms: offer.keep_artefacts.get(),
        }
    }
}

/// Reads `download` (of `path`) whole, if it is at most [`MAX_FILE_IN_MEMORY`] bytes;
/// a larger one is refused naming `from`, where it can be streamed.
async fn read_whole(download: FileDownload, path: &str, from: &str) -> Result<Vec<u8>, ApiError> {
    use futures_util::StreamExt as _;
    if download.size > MAX_FILE_IN_MEMORY {
        return Err(ApiError::TooLarge(format!(
            "`{path}` is {} bytes, more than the {MAX_FILE_IN_MEMORY} read whole here; download it from {from}",
            download.size
        )));
    }
    let mut data = Vec::with_capacity(usize::try_from(download.size).unwrap_or(0));
    let mut body = download.body;
    while let Some(piece) = body.next().await {
        let piece =
            piece.map_err(|e| ApiError::BadGateway(format!("the download broke off: {e}")))?;
        data.extend_from_slice(&piece);
    }
    Ok(data)
}
