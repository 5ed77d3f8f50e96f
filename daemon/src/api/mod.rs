//! The daemon's side of the local HTTP API: [`orien_web_api::NodeApi`] for a [`Node`].

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use orien_ledger::{ExecQuery, ExecRecord, SessionStatus, StoreError};
use orien_protocol::{ExecId, SessionId, Split};
use orien_web_api::chain::{FundRequest, FundedView, LanePaid, SettlementView, WalletView};
use orien_web_api::sessions::{
    BalanceView, CloseReason, EarningsView, ExecutionFilter, ExecutionPage, ExecutionView,
    FileView, LogPage, OfferChoice, OpenSessionRequest, PaymentKind, ReceiptView, SessionRole,
    SessionState, SessionView, SuspendReason, UsageView, usdc_string,
};
use orien_web_api::{
    ApiError, HealthStatus, HealthView, NodeApi, NodeInfo, OfferFilter, OfferView, PricingView,
    api::OfferSort,
};

mod attribution;
mod errors;
mod money_out;
mod views;

use errors::{chain_error, ledger_error, payment_error};
use orien_web_api::text::PeerRef;
use views::{execution_view, log_page, record_filter, record_log_page, record_view};

use crate::node::Node;
use crate::offer_book::OfferQuery;
use crate::payments::{PaymentError, Payments};
use crate::profile_book::{ProfileQuery, ProfileSort};
use crate::session::{PaymentChoice, SessionError, Sessions, blocking as run_blocking};
use orien_web_api::providers::{
    ProviderFilter, ProviderPage, ProviderReputation, ProviderSort, ProviderView, ReputationView,
};

/// How often the log of a call known only from its record is read again while it runs.
const RECORD_POLL: Duration = Duration::from_millis(250);

/// Serves the HTTP API from a running node.
#[derive(Clone)]
pub struct NodeService {
    node: Arc<Node>,
}

impl NodeService {
    /// What this node has seen of `provider` as renter.
    fn reputation_of(&self, provider: &orien_protocol::NodeId) -> Option<ReputationView> {
        let evidence = self.node.sessions()?.reputation().standing(provider)?;
        Some(reputation_view(&evidence))
    }

    /// Whether the operator rents from `provider` (a node that does not rent: anyone).
    fn rents_from(&self, provider: &orien_protocol::NodeId) -> bool {
        self.node
            .sessions()
            .is_none_or(|s| s.config().operator.providers.permits(provider))
    }

    /// The API of `node`.
    pub fn new(node: Arc<Node>) -> Self {
        Self { node }
    }

    fn payments(&self) -> Result<&Arc<Payments>, ApiError> {
        self.sessions()?.payments().ok_or_else(|| {
            ApiError::Conflict(
                "this node is not connected to a chain; run it with --chain-rpc, --chain-id and --escrow".into(),
            )
        })
    }

    /// The durable record of an execution, if this node keeps one.
    async fn record(&self, exec: ExecId) -> Result<Option<ExecRecord>, ApiError> {
        let store = self.sessions()?.store().clone();
        run_blocking(move || store.execution(&exec))
            .await
            .map_err(ledger_error)
    }

    /// The log of an execution from its record, waiting up to `wait` for a running
    /// one to end.
    async fn record_log(
        &self,
        exec: ExecId,
        after: Option<u64>,
        wait: Duration,
    ) -> Result<LogPage, ApiError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let record = self
                .record(exec)
                .await?
                .ok_or_else(|| ApiError::from(SessionError::UnknownExec(exec)))?;
            let page = record_log_page(&record, after);
            if !page.entries.is_empty() || page.finished {
                return Ok(page);
            }
            if tokio::time::Instant::now() + RECORD_POLL > deadline {
                return Ok(page);
            }
            tokio::time::sleep(RECORD_POLL).await;
        }
    }

    fn sessions(&self) -> Result<&Sessions, ApiError> {
        self.node.sessions().ok_or_else(|| {
            ApiError::Unavailable("this node runs without a ledger, so it has no sessions".into())
        })
    }

    async fn session_view(&self, session: SessionId) -> Result<SessionView, ApiError> {
        let sessions = self.sessions()?;
        let store = sessions.store().clone();
        let found = run_blocking(move || -> Result<_, StoreError> {
            match store.session(&session)? {
                Some(record) => Ok(Some((record, store.head(&session)?))),
                None => Ok(None),
            }
        })
        .await
        .map_err(ledger_error)?;
        let Some((record, Some(head))) = found else {
            return Err(ApiError::NotFound(format!("session {session}")));
        };
        Ok(self.view_of(sessions, &record, &head))
    }

    fn view_of(
        &self,
        sessions: &Sessions,
        record: &orien_ledger::SessionRecord,
        head: &orien_ledger::SessionHead,
    ) -> SessionView {
        let rented = sessions.rented_session(record.session);
        let (state, close_reason, suspend_reason, state_detail) = match &head.status {
            SessionStatus::Open => (SessionState::Active, None, None, None),
            SessionStatus::Suspended(reason) => {
                let (kind, detail) = suspension(reason);
                (SessionState::Active, None, Some(kind), Some(detail))
            }
            SessionStatus::Closed(reason) => {
                let reason = CloseReason::from(*reason);
                let detail = reason.describe().to_owned();
                (reason.state(), Some(reason), None, Some(detail))
            }
        };
        SessionView {
            id: record.session.to_string(),
            role: if record.renter == self.node.id() {
                SessionRole::Renter
            } else {
                SessionRole::Provider
            },
            provider: record.provider.to_string(),
            renter: record.renter.to_string(),
            offer: rented.as_ref().map(|r| r.offer.to_string()),
            tool: rented.as_ref().map(|r| r.tool.to_string()),
            state,
            close_reason,
            suspend_reason,
            state_detail,
            budget: usdc_string(record.budget),
            pricing: PricingView::of(&record.pricing),
            opened_at: record.opened_at.unix_millis(),
            usage: UsageView {
                receipts: head.seq,
                session_ms: head.session_time.get(),
                exec_ms: head.exec_time.get(),
                cpu_ms: head.cpu_time.get(),
            },
            amount: usdc_string(head.amount),
            split: Split::of(head.amount).into(),
        }
    }
}

#[async_trait]
impl NodeApi for NodeService {
    async fn node_info(&self) -> Result<NodeInfo, ApiError> {
        let stats = self.node.stats().await?;
        let mut connected: Vec<String> = self
            .node
            .connected_peers()
            .await?
            .iter()
            .map(ToString::to_string)
            .collect();
        connected.sort();
        Ok(NodeInfo {
            id: self.node.id().to_string(),
            version: env!("CARGO_PKG_VERSION").into(),
            listen: self
                .node
                .listen_addrs()
                .iter()
                .map(ToString::to_string)
                .collect(),
            peers: stats.peers,
            connected,
            offers_known: stats.offers_known,
            operator: self.node.sessions().map(|s| operator_view(s.config())),
            sandbox: self
                .node
                .sessions()
                .and_then(|s| s.sandbox())
                .map(|sandbox| {
                    let load = sandbox.load();
                    orien_web_api::api::SandboxView {
                        sessions: load.sessions.iter().map(ToString::to_string).collect(),
                        warm: load
                            .warm
                            .into_iter()
                            .map(|(tool, ready)| orien_web_api::api::WarmView {
                                tool: tool.to_string(),
                                ready,
                            })
                            .collect(),
                    }
                }),
        })
    }

    async fn health(&self) -> HealthView {
        let active_sessions = self.node.sessions().map_or(0, |s| {
            s.provided_sessions().len() + s.rented_sessions().len()
        });
        HealthView {
            status: HealthStatus::Ok,
            version: env!("CARGO_PKG_VERSION").into(),
            uptime_secs: self.node.uptime().as_secs(),
            active_sessions,
        }
    }

    async fn ready(&self) -> bool {
        self.node.stats().await.is_ok()
    }

    async fn metrics(&self) -> String {
        self.node.metrics().render()
    }

    async fn offers(&self, filter: OfferFilter) -> Result<Vec<OfferView>, ApiError> {
        let query = OfferQuery {
            tool: filter.tool,
            max_exec_price: filter.max_price,
            provider: filter.provider,
        };
        let entries = self.node.offers(query).await?;
        // Offers of providers the operator does not rent from are not listed.
        let mut entries: Vec<_> = entries
            .iter()
            .filter(|e| self.rents_from(&e.offer.provider))
            .collect();
        if filter.sort == OfferSort::Reputation {
            // Stable: equal scores stay cheapest first.
            let unknown = crate::reputation::Evidence::default().score();
            let score = |provider: &orien_protocol::NodeId| {
                self.reputation_of(provider).map_or(unknown, |r| r.score)
            };
            entries.sort_by(|a, b| score(&b.offer.provider).total_cmp(&score(&a.offer.provider)));
        }
        Ok(entries
            .iter()
            .map(|e| OfferView::new(e.id, &e.offer))
            .collect())
    }

    async fn providers(&self, filter: ProviderFilter) -> Result<ProviderPage, ApiError> {
        let by_reputation = filter.sort == ProviderSort::Reputation;
        let query = ProfileQuery {
            tool: filter.tool,
            max_price: filter.max_price,
            min_uptime: filter.min_uptime,
            sort: match filter.sort {
                ProviderSort::Uptime | ProviderSort::Reputation => ProfileSort::Uptime,
                ProviderSort::Price => ProfileSort::Price,
                ProviderSort::Sessions => ProfileSort::Sessions,
                ProviderSort::Name => ProfileSort::Name,
            },
            // Sorted here by reputation, so every match is read first.
            offset: if by_reputation {
                0
            } else {
                usize::try_from(filter.offset).unwrap_or(usize::MAX)
            },
            limit: if by_reputation {
                usize::MAX
            } else {
                filter.limit as usize
            },
        };
        let page = self.node.providers(query).await?;
        let total = page.total as u64;
        let mut providers: Vec<ProviderView> = page
            .profiles
            .iter()
            .map(|e| {
                let mut view = ProviderView::new(&e.profile);
                view.reputation = self.reputation_of(&e.profile.provider);
                view
            })
            .collect();
        if by_reputation {
            // Stable: equal scores keep the longest uptime first.
            providers.sort_by(|a, b| score(b).total_cmp(&score(a)));
            let offset = usize::try_from(filter.offset).unwrap_or(usize::MAX);
            providers = providers
                .into_iter()
                .skip(offset)
                .take(filter.limit as usize)
                .collect();
        }
        let shown = filter.offset.saturating_add(providers.len() as u64);
        Ok(ProviderPage {
            providers,
            total,
            next_offset: (shown < total).then_some(shown),
        })
    }

    async fn reputation(&self) -> Result<Vec<ProviderReputation>, ApiError> {
        let Some(sessions) = self.node.sessions() else {
            return Ok(Vec::new());
        };
        Ok(sessions
            .reputation()
            .standings()
            .iter()
            .map(|(provider, evidence)| ProviderReputation {
                provider: provider.to_string(),
                reputation: reputation_view(evidence),
            })
            .collect())
    }

    async fn provider(&self, provider: orien_protocol::NodeId) -> Result<ProviderView, ApiError> {
        match self.node.provider(provider).await? {
            Some(entry) => {
                let mut view = ProviderView::new(&entry.profile);
                view.reputation = self.reputation_of(&provider);
                Ok(view)
            }
            None => Err(ApiError::NotFound(format!(
                "a profile of provider {provider}: none has reached this node (providers gossip theirs beside their offers)"
            ))),
        }
    }

    async fn tools(&self) -> Result<Vec<OfferView>, ApiError> {
        Ok(self
            .node
            .sessions()
            .map(|s| s.own_offers())
            .unwrap_or_default()
            .iter()
            .map(|(id, offer)| OfferView::new(*id, offer))
            .collect())
    }

    async fn open_session(&self, request: OpenSessionRequest) -> Result<SessionView, ApiError> {
        let sessions = self.sessions()?;
        let offer = match request.choice {
            OfferChoice::Offer(id) => id,
            OfferChoice::Tool { tool, provider } => {
                let provider = match provider {
                    None => None,
                    Some(PeerRef::Node(node)) => Some(node),
                    Some(PeerRef::Nobody) => {
                        return Err(ApiError::NotFound(format!(
                            "an offer of tool `{tool}` by that provider: the id is no node's"
                        )));
                    }
                };
                // From the book, or when it holds no such offer (not gossiped to us
                // yet), from the tool's providers in the DHT.
                let found = self.node.find_offers(tool.clone(), provider).await?;
                if let Some(denied) = provider.filter(|p| !self.rents_from(p)) {
                    return Err(crate::session::SessionError::ProviderNotAllowed(denied).into());
                }
                let permitted = found.iter().find(|e| self.rents_from(&e.offer.provider));
                permitted.map(|e| e.id).ok_or_else(|| {
                    ApiError::NotFound(format!(
                        "an offer of tool `{tool}`{}",
                        provider.map(|p| format!(" by {p}")).unwrap_or_default()
                    ))
                })?
            }
        };
        let payment = match request.payment {
            PaymentKind::Auto => PaymentChoice::Auto,
            PaymentKind::Ledger => PaymentChoice::Ledger,
            PaymentKind::Escrow => PaymentChoice::Escrow,
        };
        let rented = sessions
            .open_paid(offer, request.budget, request.max_duration, payment)
            .await?;
        self.session_view(rented.session).await
    }

    async fn sessions(&self) -> Result<Vec<SessionView>, ApiError> {
        let sessions = self.sessions()?;
        let store = sessions.store().clone();
        let all = run_blocking(move || store.sessions())
            .await
            .map_err(ledger_error)?;
        Ok(all
            .iter()
            .map(|(record, head)| self.view_of(sessions, record, head))
            .collect())
    }

    async fn session(&self, session: SessionId) -> Result<SessionView, ApiError> {
        self.session_view(session).await
    }

    async fn close_session(&self, session: SessionId) -> Result<SessionView, ApiError> {
        let sessions = self.sessions()?;
        match sessions.close(session).await {
            Ok(()) => {}
            // Not open here: closed already, provided by this node, or unknown.
            Err(SessionError::UnknownSession(_)) => {
                let view = self.session_view(session).await?;
                return Err(ApiError::Conflict(match view.role {
                    SessionRole::Provider => {
                        format!("session {session} is provided by this node; its renter closes it")
                    }
                    SessionRole::Renter => format!("session {session} is already closed"),
                }));
            }
            Err(e) => return Err(e.into()),
        }
        self.session_view(session).await
    }

    async fn start_execution(
        &self,
        session: SessionId,
        tool: Option<orien_protocol::ToolName>,
        args: serde_json::Value,
        mut outputs: Vec<String>,
    ) -> Result<ExecutionView, ApiError> {
        let sessions = self.sessions()?;
        // A path named twice counts once (the provider refuses repeats).
        let mut seen = std::collections::HashSet::new();
        outputs.retain(|p| seen.insert(p.clone()));
        orien_protocol::exec::check_outputs(&outputs)
            .map_err(|e| ApiError::field("outputs", e.to_string()))?;
        for path in &outputs {
            check_path(path)
                .map_err(|_| ())
                .and_then(|()| orien_provider::WorkspacePath::new(path).map_err(|_| ()))
                .map_err(|()| {
                    ApiError::field("outputs", format!("`{path}` is not a workspace path"))
                })?;
        }
        // Refused here, as documented, rather than forwarded for the provider to refuse.
        if !args.is_object() {
            return Err(ApiError::field(
                "args",
                "must be a JSON object: the tool's arguments by name, e.g. {\"file\": \"data.txt\"}",
            ));
        }
        let args_json =
            serde_json::to_string(&args).map_err(|e| ApiError::field("args", e.to_string()))?;
        if args_json.len() > orien_protocol::exec::MAX_ARGS_LEN {
            return Err(ApiError::field(
                "args",
                format!(
                    "at most {} bytes of JSON",
                    orien_protocol::exec::MAX_ARGS_LEN
                ),
            ));
        }
        let exec = sessions
            .exec_with_outputs(session, tool, args_json, outputs)
            .await?;
        let snapshot = sessions.execution(exec)?;
        let record = self.record(exec).await?;
        Ok(execution_view(exec, &snapshot, record.as_ref()))
    }

    async fn execution(&self, exec: ExecId) -> Result<ExecutionView, ApiError> {
        let sessions = self.sessions()?;
        // The output first, then the record: a call's end is recorded before its exit
        // reaches the output, so a snapshot with an exit finds the record ended.
        let snapshot = sessions.execution(exec);
        let record = self.record(exec).await?;
        match (snapshot, record) {
            (Ok(snapshot), record) => Ok(execution_view(exec, &snapshot, record.as_ref())),
            (Err(_), Some(record)) => Ok(record_view(&record)),
            (Err(e), None) => Err(e.into()),
        }
    }

    async fn executions(&self, filter: ExecutionFilter) -> Result<ExecutionPage, ApiError> {
        let sessions = self.sessions()?;
        let failed = orien_web_api::sessions::ExecState::Failed;
        if filter.failure.is_some() && filter.state.is_some_and(|s| s != failed) {
            // A reason of failure and another state: nothing is both.
            return Ok(ExecutionPage {
                executions: Vec::new(),
                next: None,
            });
        }
        let query = ExecQuery {
            session: filter.session,
            tool: filter.tool,
            state: record_filter(filter.state, filter.failure),
            after: filter.after,
            limit: filter.limit as usize,
        };
        let store = sessions.store().clone();
        let page = run_blocking(move || store.executions(&query))
            .await
            .map_err(ledger_error)?;
        Ok(ExecutionPage {
            executions: page.records.iter().map(record_view).collect(),
            next: page.next.map(|e| e.to_string()),
        })
    }

    async fn execution_log(
        &self,
        exec: ExecId,
        after: Option<u64>,
        wait: Duration,
    ) -> Result<LogPage, ApiError> {
        let sessions = self.sessions()?;
        if sessions.execution(exec).is_err() {
            return self.record_log(exec, after, wait).await;
        }
        let seen = after.map_or(0, |a| a.saturating_add(1)) as usize;
        // Only the events after the reader's cursor are copied.
        let snapshot = if wait.is_zero() {
            sessions.execution_from(exec, seen)?
        } else {
            sessions.wait_execution(exec, seen, wait).await?
        };
        let ends = snapshot.view.exit.is_some() || snapshot.session_ended;
        let (whole, record) = if ends {
            (Some(sessions.execution(exec)?), self.record(exec).await?)
        } else {
            (None, None)
        };
        Ok(log_page(
            exec,
            &snapshot,
            whole.as_ref(),
            record.as_ref(),
            after,
        ))
    }

    async fn upload_file(
        &self,
        session: SessionId,
        path: String,
        upload: orien_web_api::FileUpload,
    ) -> Result<FileView, ApiError> {
        let sessions = self.sessions()?;
        let stored = if upload.archive {
            if !path.is_empty() {
                check_path(&path)?;
            }
            sessions
                .upload_archive(session, &path, upload.size, upload.offset, upload.body)
                .await?
        } else {
            check_path(&path)?;
            sessions
                .upload_file(session, &path, upload.size, upload.offset, upload.body)
                .await?
        };
        Ok(FileView {
            is_dir: upload.archive,
            path,
            size: stored.size,
            sha256: Some(stored.sha256.to_string()),
        })
    }

    async fn download_file(
        &self,
        session: SessionId,
        path: String,
        archive: bool,
        offset: u64,
        expect: Option<orien_protocol::ContentHash>,
    ) -> Result<orien_web_api::FileDownload, ApiError> {
        let sessions = self.sessions()?;
        let download = if archive {
            if !path.is_empty() {
                check_path(&path)?;
            }
            sessions
                .download_archive(session, &path, offset, expect)
                .await?
        } else {
            check_path(&path)?;
            sessions
                .download_file(session, &path, offset, expect)
                .await?
        };
        Ok(orien_web_api::FileDownload {
            size: download.size,
            offset: download.offset,
            sha256: download.sha256,
            body: download.body,
        })
    }

    async fn download_artefact(
        &self,
        exec: ExecId,
        path: String,
        offset: u64,
    ) -> Result<orien_web_api::FileDownload, ApiError> {
        let sessions = self.sessions()?;
        let unknown =
            || ApiError::NotFound(format!("execution {exec} kept no artefact at `{path}`"));
        let record = self
            .record(exec)
            .await?
            .ok_or_else(|| ApiError::from(SessionError::UnknownExec(exec)))?;
        let store = sessions.store().clone();
        let session = record.session;
        let terms = run_blocking(move || store.session(&session))
            .await
            .map_err(ledger_error)?
            .ok_or_else(unknown)?;
        // Only a call this node rented: its provider kept the copy for this node.
        if terms.renter != sessions.node_id() {
            return Err(unknown());
        }
        let result = record
            .end
            .as_ref()
            .and_then(|end| end.result.as_ref())
            .and_then(|signed| signed.verify_from(&terms.provider).ok())
            .ok_or_else(unknown)?;
        let sha256 = result
            .artefacts
            .iter()
            .find_map(|a| match a.kept {
                orien_protocol::ArtefactKept::File { sha256, .. } if a.path == path => Some(sha256),
                _ => None,
            })
            .ok_or_else(unknown)?;
        let download = sessions
            .download_artefact(session, terms.provider, &path, sha256, offset)
            .await?;
        Ok(orien_web_api::FileDownload {
            size: download.size,
            offset: download.offset,
            sha256: download.sha256,
            body: download.body,
        })
    }

    async fn list_files(&self, session: SessionId) -> Result<Vec<FileView>, ApiError> {
        let files = self.sessions()?.list_files(session).await?;
        Ok(files
            .into_iter()
            .map(|f| FileView {
                path: f.path,
                size: f.size,
                is_dir: f.is_dir,
                sha256: None,
            })
            .collect())
    }

    async fn receipts(&self, session: SessionId) -> Result<Vec<ReceiptView>, ApiError> {
        let store = self.sessions()?.store().clone();
        let stored = run_blocking(move || -> Result<_, StoreError> {
            if store.session(&session)?.is_none() {
                return Ok(None);
            }
            store.receipts(&session).map(Some)
        })
        .await
        .map_err(ledger_error)?
        .ok_or_else(|| ApiError::NotFound(format!("session {session}")))?;
        stored
            .iter()
            .map(|s| {
                let receipt = s
                    .acked
                    .receipt
                    .verify()
                    .map_err(|e| ApiError::Internal(format!("stored receipt: {e}")))?;
                let hex_of = |bytes: Result<Vec<u8>, _>| {
                    bytes
                        .map(hex::encode)
                        .map_err(|e: orien_protocol::EncodeError| ApiError::Internal(e.to_string()))
                };
                Ok(ReceiptView {
                    seq: receipt.seq,
                    session_ms: receipt.session_time.get(),
                    exec_ms: receipt.exec_time.get(),
                    cpu_ms: receipt.cpu_time.get(),
                    exec_amount: usdc_string(receipt.exec_amount),
                    artefact_amount: usdc_string(receipt.artefact_amount),
                    amount: usdc_string(receipt.amount),
                    hash: s.acked.receipt.receipt_hash().to_string(),
                    prev: receipt.prev.to_string(),
                    issued_at: receipt.issued_at.unix_millis(),
                    receipt: hex_of(s.acked.receipt.to_bytes())?,
                    ack: hex_of(s.acked.ack.to_bytes())?,
                })
            })
            .collect()
    }

    async fn balances(&self) -> Result<Vec<BalanceView>, ApiError> {
        let store = self.sessions()?.store().clone();
        let balances = run_blocking(move || store.balances())
            .await
            .map_err(ledger_error)?;
        Ok(balances
            .iter()
            .map(|(account, balance)| BalanceView {
                account: account.to_string(),
                debited: usdc_string(balance.debited),
                credited: usdc_string(balance.credited),
                net_micros: i64::try_from(balance.net(account)).unwrap_or(i64::MIN),
            })
            .collect())
    }

    async fn earnings_by_day(&self) -> Result<Vec<EarningsView>, ApiError> {
        let store = self.sessions()?.store().clone();
        let me = self.node.id();
        let days = run_blocking(move || store.provider_earnings_by_day(&me))
            .await
            .map_err(ledger_error)?;
        Ok(days
            .into_iter()
            .map(|d| EarningsView {
                day: d.day,
                earned_micros: i64::try_from(d.earned_micros).unwrap_or(i64::MAX),
            })
            .collect())
    }

    async fn wallet(&self) -> Result<WalletView, ApiError> {
        let payments = self.payments()?;
        let escrow = payments.escrow();
        let address = payments.wallet();
        let token = escrow.token();
        let usdc = token.balance_of(address).await.map_err(chain_error)?;
        let earnings = escrow.earnings(address).await.map_err(chain_error)?;
        let (fees, reserve) = escrow.protocol_balances().await.map_err(chain_error)?;
        Ok(WalletView {
            address: address.to_string(),
            chain_id: escrow.domain().chain_id(),
            escrow: escrow.address().to_string(),
            token: token.address().to_string(),
            usdc: usdc_string(usdc),
            earnings: usdc_string(earnings.balance),
            fees_held: usdc_string(fees),
            reserve_held: usdc_string(reserve),
        })
    }

    async fn fund_lane(&self, request: FundRequest) -> Result<FundedView, ApiError> {
        let funded = self
            .payments()?
            .fund(request.to, request.amount)
            .await
            .map_err(payment_error)?;
        Ok(FundedView {
            lane: funded.lane.to_string(),
            deposit: usdc_string(funded.deposit),
            tx: funded.mined.tx.to_string(),
            block: funded.mined.block,
        })
    }

    async fn settlements(
        &self,
    ) -> Result<Vec<orien_web_api::chain::SettlementRecordView>, ApiError> {
        money_out::settlements(self.sessions()?).await
    }

    async fn withdraw(
        &self,
        what: orien_web_api::chain::WithdrawKind,
    ) -> Result<orien_web_api::chain::WithdrawnView, ApiError> {
        money_out::withdraw(self.payments()?, what).await
    }

    async fn reclaim(
        &self,
        payout: orien_protocol::EvmAddress,
    ) -> Result<orien_web_api::chain::ReclaimView, ApiError> {
        money_out::reclaim(self.payments()?, payout).await
    }

    async fn finish_reclaim(
        &self,
        payout: orien_protocol::EvmAddress,
    ) -> Result<orien_web_api::chain::RefundedView, ApiError> {
        money_out::finish_reclaim(self.payments()?, payout).await
    }

    async fn lane_status(&self) -> Result<Vec<orien_web_api::chain::LaneStatusView>, ApiError> {
        money_out::lane_status(self.sessions()?, self.payments()?).await
    }

    async fn settle(&self) -> Result<Vec<SettlementView>, ApiError> {
        let batches = self.payments()?.settle().await.map_err(|e| match e {
            PaymentError::Ledger(e) => ledger_error(e),
            other => ApiError::BadGateway(format!("settlement: {other}")),
        })?;
        Ok(batches
            .into_iter()
            .map(|b| SettlementView {
                tx: b.mined.tx.to_string(),
                block: b.mined.block,
                gas_used: b.mined.gas_used,
                lanes: b
                    .settled
                    .iter()
                    .map(|l| LanePaid {
                        lane: l.lane.to_string(),
                        paid: usdc_string(l.paid),
                        settled: usdc_string(l.settled),
                    })
                    .collect(),
                provider_credit_micros: i64::try_from(b.provider_credit).unwrap_or(i64::MIN),
                fee: usdc_string(b.fee),
                reserve: usdc_string(b.reserve),
            })
            .collect())
    }
}

/// Refuses a workspace path the provider would refuse anyway, before a network trip.
fn check_path(path: &str) -> Result<(), ApiError> {
    let bad = |why: &str| Err(ApiError::field("path", why));
    if path.is_empty() || path.len() > orien_protocol::rpc::MAX_PATH_LEN {
        return bad("must be 1..=1024 bytes");
    }
    if path.starts_with('/') {
        return bad("must be relative to the workspace");
    }
    if path
        .split('/')
        .any(|part| part.is_empty() || part == "." || part == "..")
    {
        return bad("must not contain empty, `.` or `..` segments");
    }
    if path.chars().any(char::is_control) {
        return bad("must not contain control characters");
    }
    Ok(())
}

/// The API's kind of a suspension, and what it means in a sentence.
fn suspension(reason: &orien_ledger::SuspendReason) -> (SuspendReason, String) {
    use orien_ledger::SuspendReason as Ledger;
    match reason {
        Ledger::BudgetReached => (SuspendReason::BudgetReached, "the budget is spent".into()),
        Ledger::AckTimeout { seq } => (
            SuspendReason::AckTimeout,
            format!("receipt #{seq} was not acknowledged in time"),
        ),
        Ledger::Dispute { seq, reason } => (
            SuspendReason::Dispute,
            format!("receipt #{seq} failed the renter's checks: {reason}"),
        ),
    }
}

/// The operator's controls as `GET /v1/node` shows them.
fn operator_view(config: &crate::SessionConfig) -> orien_web_api::api::OperatorView {
    let ids = |set: &std::collections::BTreeSet<orien_protocol::NodeId>| {
        set.iter().map(ToString::to_string).collect::<Vec<_>>()
    };
    let operator = &config.operator;
    orien_web_api::api::OperatorView {
        allow_renters: operator.renters.allow.as_ref().map(ids),
        deny_renters: ids(&operator.renters.deny),
        allow_providers: operator.providers.allow.as_ref().map(ids),
        deny_providers: ids(&operator.providers.deny),
        max_sessions_per_peer: config.max_sessions_per_peer as u64,
        max_opens_per_minute_per_peer: operator.opens_per_minute,
    }
}

/// A provider's score for sorting: its reputation, or the prior of one never seen.
fn score(view: &ProviderView) -> f64 {
    view.reputation.as_ref().map_or_else(
        || crate::reputation::Evidence::default().score(),
        |r| r.score,
    )
}

/// The API's view of a provider's standing here.
fn reputation_view(standing: &crate::reputation::Standing) -> ReputationView {
    let evidence = &standing.own;
    let latency = evidence.start_latency();
    let opens = evidence.open_latency();
    let first = evidence.first_output_latency();
    ReputationView {
        score: standing.score(),
        own_score: evidence.score(),
        attesters: standing.shared.attesters,
        attested_weight: standing.shared.weight,
        uptime: evidence.uptime(),
        calls_completed: evidence.calls_completed,
        calls_failed: evidence.calls_failed,
        sessions_completed: evidence.sessions_completed,
        sessions_failed: evidence.sessions_failed,
        disputes: evidence.disputes,
        start_p50_ms: latency.map(|(p50, _)| p50.get()),
        start_p95_ms: latency.map(|(_, p95)| p95.get()),
        first_output_p50_ms: first.map(|(p50, _)| p50.get()),
        first_output_p95_ms: first.map(|(_, p95)| p95.get()),
        open_p50_ms: opens.map(|(p50, _)| p50.get()),
        open_p95_ms: opens.map(|(_, p95)| p95.get()),
    }
}
