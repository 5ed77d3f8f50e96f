//! One call of a market tool through MCP: choose the provider, open a session within
//! the budget policy (or use the agent's), write the files, run, report progress, and
//! close the session the call opened, whatever happens.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use orien_protocol::{ExecId, Millis, SessionId, ToolName, Usdc};
use rmcp::model::{JsonObject, ProgressNotificationParam, ProgressToken};
use rmcp::{Peer, RoleServer};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::NodeApi;
use crate::api::OfferFilter;
use crate::mcp::budget::Budget;
use crate::mcp::catalogue::{CONTROL_ARGS, MarketOffer};
use crate::mcp::policy::PolicyRefusal;
use crate::mcp::resources;
use crate::problem::ApiError;
use crate::providers::ProviderReputation;
use crate::sessions::{
    ExecState, ExecutionView, OfferChoice, OpenSessionRequest, PaymentKind, SessionRole,
    SessionState, SessionView,
};
use crate::text::parse;

/// The most files one call may write before it runs.
const MAX_FILES: usize = 16;
/// The largest file a call may write (its content decoded).
const MAX_FILE_BYTES: usize = 512 * 1024;
/// How long a session opened for one call may last beyond the call's own limit.
const SESSION_MARGIN: Millis = Millis(120_000);
/// How long one wait for new output lasts before a progress notification.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// Why a call did not run to an answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CallFailure {
    /// The budget policy does not allow it; nothing was spent.
    #[error("refused by this node's budget policy, nothing spent: {0}")]
    Refused(#[from] PolicyRefusal),
    /// An argument is wrong.
    #[error("{0}")]
    Invalid(String),
    /// No offer matches the call's options.
    #[error("{0}")]
    NoOffer(String),
    /// The node or the provider refused or failed.
    #[error("{0}")]
    Node(#[from] ApiError),
    /// The client cancelled the call; its session was closed.
    #[error("cancelled")]
    Cancelled,
}

/// Progress notifications to the client that asked for them.
pub(crate) struct Progress {
    peer: Peer<RoleServer>,
    token: ProgressToken,
}

impl Progress {
    /// Notifications for the request that carried `token`.
    pub(crate) fn new(peer: Peer<RoleServer>, token: ProgressToken) -> Self {
        Self { peer, token }
    }

    async fn report(&self, elapsed: Duration, total: Millis, message: String) {
        let param = ProgressNotificationParam::new(self.token.clone(), elapsed.as_millis() as f64)
            .with_total(total.get() as f64)
            .with_message(message);
        // A client that went away is noticed by the cancellation of its request.
        let _ = self.peer.notify_progress(param).await;
    }
}

/// The options a call's arguments carry besides the tool's own.
#[derive(Debug, Default)]
struct Options {
    provider: Option<String>,
    max_price: Option<Usdc>,
    session: Option<SessionId>,
    files: Vec<(String, Vec<u8>)>,
    /// Files given by link: their workspace path and the resource's URI.
    links: Vec<(String, String)>,
    /// Workspace paths whose files the provider keeps when the call ends.
    outputs: Vec<String>,
}

/// A call of one market tool.
pub(crate) struct MarketCall<'a> {
    /// The node.
    pub(crate) node: &'a dyn NodeApi,
    /// What the request may spend.
    pub(crate) budget: &'a Budget<'a>,
    /// The tool.
    pub(crate) tool: &'a str,
    /// Its offers, cheapest first.
    pub(crate) offers: &'a [MarketOffer],
}

impl MarketCall<'_> {
    /// Runs the call with `args` (the tool's arguments and the server's options) and
    /// answers its structured result.
    pub(crate) async fn run(
        &self,
        mut args: JsonObject,
        progress: Option<Progress>,
        cancel: CancellationToken,
    ) -> Result<Value, CallFailure> {
        let mut options = self.options(&mut args)?;
        // Linked inputs are read before anything is opened: a bad link spends nothing.
        for (path, uri) in std::mem::take(&mut options.links) {
            let content = resources::bytes(self.node, self.budget, &uri)
                .await
                .map_err(|e| CallFailure::Invalid(format!("a file of `files` ({path}): {}", e.message)))?
                .ok_or_else(|| {
                    CallFailure::Invalid(format!(
                        "a file of `files` ({path}): {uri} is not file content; link orien://sessions/{{id}}/files/{{path}}, orien://executions/{{id}}/stdout or orien://executions/{{id}}/artefacts/{{path}}"
                    ))
                })?;
            options.files.push((path, content));
        }
        let tool: ToolName = parse("tool", self.tool)?;
        let (session, own) = match options.session {
            Some(session) => (self.kept_session(session).await?, false),
            None => (self.open_for_call(&options).await?, true),
        };
        let id: SessionId = parse("session", &session.id)?;
        let ran = self
            .run_in(id, tool, &options, Value::Object(args), progress, &cancel)
            .await;
        // A session opened for this call ends with it; a cancelled call ends its
        // session too (the protocol stops a running call only by closing), which
        // stops the meter within one receipt.
        let closed = if own || matches!(ran, Err(CallFailure::Cancelled)) {
            match self.node.close_session(id).await {
                Ok(closed) => Some(closed),
                Err(e) => {
                    tracing::warn!(session = %id, error = %e, "MCP: closing the call's session failed");
                    None
                }
            }
        } else {
            None
        };
        let exec = ran?;
        let mut result = structured(&session, &exec);
        if own && let Some(closed) = closed {
            result["session_cost"] = json!(closed.amount);
        }
        Ok(result)
    }

    /// Takes the server's options out of `args`: those the tool's own schema does not
    /// use as argument names.
    fn options(&self, args: &mut JsonObject) -> Result<Options, CallFailure> {
        let own = &self.offers[0].view.args_schema["properties"];
        let mut take = |name: &str| {
            if own.get(name).is_some() {
                None
            } else {
                args.remove(name)
            }
        };
        let text = |name: &str, value: Option<Value>| -> Result<Option<String>, CallFailure> {
            match value {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s)),
                Some(other) => Err(CallFailure::Invalid(format!(
                    "`{name}` must be a string, not {other}"
                ))),
            }
        };
        let provider = text("provider", take(CONTROL_ARGS[0]))?;
        let max_price = text("max_price", take(CONTROL_ARGS[1]))?
            .map(|p| parse::<Usdc>("max_price", &p))
            .transpose()?;
        let session = text("session", take(CONTROL_ARGS[2]))?
            .map(|s| parse::<SessionId>("session", &s))
            .transpose()?;
        let given = match take(CONTROL_ARGS[3]) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(files)) => files
                .iter()
                .map(file_content)
                .collect::<Result<Vec<_>, _>>()?,
            Some(other) => {
                return Err(CallFailure::Invalid(format!(
                    "`files` must be an array of {{path, text | base64 | uri}}, not {other}"
                )));
            }
        };
        let outputs = match take(CONTROL_ARGS[4]) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(paths)) => paths
                .into_iter()
                .map(|p| match p {
                    Value::String(path) => Ok(path),
                    other => Err(CallFailure::Invalid(format!(
                        "`outputs` holds workspace paths (strings), not {other}"
                    ))),
                })
                .collect::<Result<Vec<_>, _>>()?,
            Some(other) => {
                return Err(CallFailure::Invalid(format!(
                    "`outputs` must be an array of workspace paths, not {other}"
                )));
            }
        };
        if given.len() > MAX_FILES {
            return Err(CallFailure::Invalid(format!(
                "{} files given, at most {MAX_FILES} per call; upload more with `orien_upload`",
                given.len()
            )));
        }
        let (mut files, mut links) = (Vec::new(), Vec::new());
        for (path, content) in given {
            match content {
                FileContent::Inline(bytes) => files.push((path, bytes)),
                FileContent::Link(uri) => links.push((path, uri)),
            }
        }
        Ok(Options {
            provider,
            max_price,
            session,
            files,
            links,
            outputs,
        })
    }

    /// The agent's session, when it may run this call.
    async fn kept_session(&self, session: SessionId) -> Result<SessionView, CallFailure> {
        if !self.budget.may_use(&session, now_ms()) {
            return Err(CallFailure::Invalid(Budget::not_yours(&session)));
        }
        let view = self.node.session(session).await?;
        if view.role != SessionRole::Renter || view.state != SessionState::Active {
            return Err(CallFailure::Invalid(format!(
                "session {session} is not an open session this node rents ({:?}, {:?}); open one with `orien_open_session`",
                view.role, view.state
            )));
        }
        let offer = match self
            .offers
            .iter()
            .find(|o| o.view.provider == view.provider)
        {
            Some(offer) => offer.clone(),
            None => self.offer_of(&view.provider).await?,
        };
        self.budget
            .policy()
            .check_call(self.tool, offer.metered, offer.ceiling(false))?;
        Ok(view)
    }

    /// The provider's current offer of the tool, from the book.
    async fn offer_of(&self, provider: &str) -> Result<MarketOffer, CallFailure> {
        let filter = OfferFilter {
            tool: Some(parse("tool", self.tool)?),
            max_price: None,
            provider: Some(parse("provider", provider)?),
            ..OfferFilter::default()
        };
        self.node
            .offers(filter)
            .await?
            .into_iter()
            .find_map(MarketOffer::new)
            .ok_or_else(|| {
                CallFailure::NoOffer(format!(
                    "the session's provider {provider} offers no `{}` now",
                    self.tool
                ))
            })
    }

    /// Opens a session for this call on the best offer the policy allows: by the
    /// provider's reputation with this node, then by price.
    async fn open_for_call(&self, options: &Options) -> Result<SessionView, CallFailure> {
        let candidates = matching(self.offers, options.provider.as_deref(), options.max_price);
        let candidates = by_reputation(candidates, &self.node.reputation().await?);
        let Some(cheapest) = candidates.first() else {
            return Err(CallFailure::NoOffer(no_offer(self.tool, options)));
        };
        let day_left = self.budget.day_left(&self.node.sessions().await?, now_ms());
        let policy = self.budget.policy();
        let mut refusal = None;
        for offer in &candidates {
            match policy.budget_for_call(self.tool, offer.metered, offer.ceiling(true), day_left) {
                Ok(budget) => {
                    let request = OpenSessionRequest {
                        choice: OfferChoice::Offer(parse("offer", &offer.view.id)?),
                        budget,
                        max_duration: Millis(offer.metered.get() + SESSION_MARGIN.get()),
                        payment: PaymentKind::Auto,
                    };
                    let view = self.node.open_session(request).await?;
                    self.budget.opened(&view, now_ms());
                    return Ok(view);
                }
                Err(e) => {
                    refusal.get_or_insert(e);
                }
            }
        }
        tracing::debug!(offers = candidates.len(), cheapest = %cheapest.view.id, "MCP: no offer fits the policy");
        Err(refusal.map_or_else(
            || CallFailure::NoOffer(no_offer(self.tool, options)),
            CallFailure::Refused,
        ))
    }

    /// Writes the files, starts the call and follows it to its end.
    async fn run_in(
        &self,
        session: SessionId,
        tool: ToolName,
        options: &Options,
        args: Value,
        progress: Option<Progress>,
        cancel: &CancellationToken,
    ) -> Result<ExecutionView, CallFailure> {
        for (path, content) in &options.files {
            self.node
                .put_file(session, path.clone(), content.clone())
                .await?;
        }
        let started = self
            .node
            .start_execution(session, Some(tool), args, options.outputs.clone())
            .await?;
        let exec: ExecId = parse("exec", &started.id)?;
        let total = self.offers[0].metered;
        let began = Instant::now();
        let mut after = None;
        let mut output = 0usize;
        loop {
            let page = tokio::select! {
                () = cancel.cancelled() => return Err(CallFailure::Cancelled),
                page = self.node.execution_log(exec, after, PROGRESS_EVERY) => page?,
            };
            if let Some(last) = page.entries.last() {
                after = Some(last.index);
            }
            output += page.entries.iter().map(|e| e.data.len()).sum::<usize>();
            if page.finished {
                break;
            }
            if let Some(progress) = &progress {
                let elapsed = began.elapsed();
                progress
                    .report(
                        elapsed,
                        total,
                        format!(
                            "`{}` running for {:.1} s, {output} bytes of output so far",
                            self.tool,
                            elapsed.as_secs_f64()
                        ),
                    )
                    .await;
            }
        }
        Ok(self.node.execution(exec).await?)
    }
}

/// The offers that match the call's `provider` and `max_price`, cheapest first.
fn matching<'a>(
    offers: &'a [MarketOffer],
    provider: Option<&str>,
    max_price: Option<Usdc>,
) -> Vec<&'a MarketOffer> {
    offers
        .iter()
        .filter(|o| provider.is_none_or(|p| o.view.provider == p))
        .filter(|o| max_price.is_none_or(|max| o.pricing.exec_per_minute <= max))
        .collect()
}

/// `offers` (cheapest first) ordered by their providers' reputation with this node, a
/// tenth of the score at a time, then as they were: a provider that fails half its calls
/// (about 0.5) comes after one never tried (2/3), which comes after one that delivers
/// (near 1); providers of like reputation compete on price.
pub(crate) fn by_reputation<'a>(
    mut offers: Vec<&'a MarketOffer>,
    reputation: &[ProviderReputation],
) -> Vec<&'a MarketOffer> {
    let scores: HashMap<&str, f64> = reputation
        .iter()
        .map(|r| (r.provider.as_str(), r.reputation.score))
        .collect();
    let band = |offer: &MarketOffer| {
        let score = scores
            .get(offer.view.provider.as_str())
            .copied()
            .unwrap_or(UNKNOWN_SCORE);
        -((score * 10.0).floor() as i64)
    };
    offers.sort_by_key(|o| band(o));
    offers
}

/// The score of a provider this node never rented from (the prior's mean).
const UNKNOWN_SCORE: f64 = 2.0 / 3.0;

fn no_offer(tool: &str, options: &Options) -> String {
    let mut message = format!("no offer of `{tool}`");
    if let Some(provider) = &options.provider {
        message.push_str(&format!(" by provider {provider}"));
    }
    if let Some(max) = options.max_price {
        message.push_str(&format!(
            " at {} USDC per minute of execution or less",
            max.decimal()
        ));
    }
    message.push_str(" is on the market now");
    message
}

/// What a file of the `files` option holds.
#[derive(Debug, PartialEq, Eq)]
enum FileContent {
    /// Given inline, decoded.
    Inline(Vec<u8>),
    /// A resource of this server, read when the call runs.
    Link(String),
}

/// A file of the `files` option: its path and its content or link.
fn file_content(file: &Value) -> Result<(String, FileContent), CallFailure> {
    use base64::Engine as _;
    let invalid = |why: &str| CallFailure::Invalid(format!("a file of `files`: {why}"));
    let path = file["path"]
        .as_str()
        .ok_or_else(|| invalid("`path` (a string) is missing"))?;
    let content = match (
        file["text"].as_str(),
        file["base64"].as_str(),
        file["uri"].as_str(),
    ) {
        (Some(text), None, None) => text.as_bytes().to_vec(),
        (None, Some(encoded), None) => base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|e| invalid(&format!("`base64` of {path} does not decode: {e}")))?,
        (None, None, Some(uri)) => {
            if !uri.starts_with("orien://") {
                return Err(invalid(&format!(
                    "{path}: {uri} is not a resource of this server (orien://…)"
                )));
            }
            return Ok((path.to_owned(), FileContent::Link(uri.to_owned())));
        }
        _ => return Err(invalid("give exactly one of `text`, `base64` and `uri`")),
    };
    if content.len() > MAX_FILE_BYTES {
        return Err(invalid(&format!(
            "{path} is {} bytes, at most {MAX_FILE_BYTES} inline; upload larger files with `orien_upload`",
            content.len()
        )));
    }
    Ok((path.to_owned(), FileContent::Inline(content)))
}

/// The structured result of a call that ran.
fn structured(session: &SessionView, exec: &ExecutionView) -> Value {
    let state = match exec.state {
        ExecState::Completed => "completed",
        _ => "failed",
    };
    let result_sha256 = exec
        .signed_result
        .as_deref()
        .and_then(|h| hex::decode(h).ok())
        .map(|bytes| hex::encode(Sha256::digest(bytes)));
    json!({
        "provider": session.provider,
        "session": session.id,
        "exec": exec.id,
        "state": state,
        "failure": exec.failure.map(|f| serde_json::to_value(f).unwrap_or(Value::Null)),
        "exit_code": exec.exit_code,
        "stdout": exec.stdout,
        "stderr": exec.stderr,
        "stdout_truncated": exec.stdout_truncated,
        "cost": exec.cost,
        "session_cost": null,
        "wall_ms": exec.wall_ms,
        "signed_result": exec.signed_result,
        "signed_result_sha256": result_sha256,
        "artefacts": exec.artefacts.iter().map(|a| {
            let uri = (a.state == crate::sessions::ArtefactState::Kept)
                .then(|| format!("orien://executions/{}/artefacts/{}", exec.id, a.path));
            json!({"path": a.path, "state": a.state, "size": a.size, "sha256": a.sha256, "uri": uri})
        }).collect::<Vec<_>>(),
    })
}

/// Now, ms since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_files_take_text_or_base64_links_take_a_uri_and_the_rest_is_refused() {
        let (path, content) = file_content(&json!({"path": "a.txt", "text": "hi"})).unwrap();
        assert_eq!(path, "a.txt");
        assert_eq!(content, FileContent::Inline(b"hi".to_vec()));
        let (_, content) = file_content(&json!({"path": "b", "base64": "AAEC"})).unwrap();
        assert_eq!(content, FileContent::Inline(vec![0, 1, 2]));
        let uri = "orien://sessions/00112233445566778899aabbccddeeff/files/out.txt";
        let (_, content) = file_content(&json!({"path": "in.txt", "uri": uri})).unwrap();
        assert_eq!(content, FileContent::Link(uri.into()));
        for bad in [
            json!({"text": "no path"}),
            json!({"path": "both", "text": "a", "base64": "AA=="}),
            json!({"path": "link and text", "text": "a", "uri": uri}),
            json!({"path": "neither"}),
            json!({"path": "bad", "base64": "!!"}),
            json!({"path": "local", "uri": "file:///etc/passwd"}),
        ] {
            assert!(
                matches!(file_content(&bad), Err(CallFailure::Invalid(_))),
                "{bad}"
            );
        }
        let big = "x".repeat(MAX_FILE_BYTES + 1);
        assert!(file_content(&json!({"path": "big", "text": big})).is_err());
    }
}
