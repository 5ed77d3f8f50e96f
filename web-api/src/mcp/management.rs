//! The management tools: sessions an agent keeps, files, what it may still spend, the
//! providers.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;
use orien_protocol::{Millis, SessionId, Usdc};
use rmcp::ErrorData as McpError;
use rmcp::model::{CallToolResult, ContentBlock, JsonObject, Tool, ToolAnnotations};
use serde_json::{Value, json};

use crate::mcp::budget::Budget;
use crate::mcp::calls::{by_reputation, now_ms};
use crate::mcp::catalogue::{MarketOffer, names};
use crate::mcp::server::OrienMcp;
use crate::problem::ApiError;
use crate::sessions::{OfferChoice, OpenSessionRequest, PaymentKind, SessionView};
use crate::text::parse;

/// The longest a session opened through MCP may last when the agent does not say.
const DEFAULT_SESSION: Millis = Millis(15 * 60_000);
/// The longest a session opened through MCP may last.
const MAX_SESSION: Millis = Millis(24 * 3_600_000);

/// The management tools, for `tools/list`.
pub(crate) fn tools() -> Vec<Tool> {
    let session = json!({"type": "string", "pattern": "^[0-9a-f]{32}$", "description": "The session handle."});
    let path =
        json!({"type": "string", "description": "Workspace-relative path, e.g. `data/input.txt`."});
    vec![
        tool(
            names::OPEN_SESSION,
            "Opens a session with a provider of a tool and keeps it open across calls (pass its handle as `session` to the tool's calls, and to orien_upload / orien_download); it costs session time until orien_close_session. Answers the handle, the provider and the prices.",
            json!({
                "type": "object",
                "required": ["tool"],
                "properties": {
                    "tool": {"type": "string", "description": "The tool (a tool name from tools/list)."},
                    "provider": {"type": "string", "description": "Peer id of the provider (default: the cheapest)."},
                    "max_price": {"type": "string", "pattern": "^[0-9]{1,13}(\\.[0-9]{1,6})?$", "description": "Most USDC per minute of execution."},
                    "budget": {"type": "string", "pattern": "^[0-9]{1,13}(\\.[0-9]{1,6})?$", "description": "Most the session may cost, USDC (default and most: the per-session limit)."},
                    "max_duration_secs": {"type": "integer", "minimum": 1, "maximum": 86_400, "description": "Longest the session lasts (default 900)."}
                },
                "additionalProperties": false
            }),
            false,
        ),
        tool(
            names::CLOSE_SESSION,
            "Closes a session opened with orien_open_session; answers what it cost.",
            json!({"type": "object", "required": ["session"], "properties": {"session": session}, "additionalProperties": false}),
            false,
        ),
        tool(
            names::UPLOAD,
            "Writes a file (at most 512 KiB) into a session's workspace.",
            json!({
                "type": "object",
                "required": ["session", "path"],
                "properties": {
                    "session": session,
                    "path": path,
                    "text": {"type": "string", "description": "The content as text."},
                    "base64": {"type": "string", "description": "The content, base64."}
                },
                "additionalProperties": false
            }),
            false,
        ),
        tool(
            names::DOWNLOAD,
            "Reads a file from a session's workspace: text when it is UTF-8, else base64.",
            json!({"type": "object", "required": ["session", "path"], "properties": {"session": session, "path": path}, "additionalProperties": false}),
            true,
        ),
        tool(
            names::BALANCE,
            "What this node's budget policy still allows today, its limits, and the wallet when the node pays on a chain.",
            json!({"type": "object", "properties": {}, "additionalProperties": false}),
            true,
        ),
        tool(
            names::PROVIDERS,
            "The providers on the market with their tools and prices, cheapest first.",
            json!({"type": "object", "properties": {"tool": {"type": "string", "description": "Only providers of this tool."}}, "additionalProperties": false}),
            true,
        ),
    ]
}

fn tool(name: &'static str, description: &'static str, schema: Value, read_only: bool) -> Tool {
    let schema = match schema {
        Value::Object(schema) => schema,
        _ => JsonObject::new(),
    };
    let mut tool = Tool::new(name, description, Arc::new(schema));
    tool.annotations = Some(
        ToolAnnotations::new()
            .read_only(read_only)
            .destructive(false)
            .open_world(true),
    );
    tool
}

/// Runs the management tool `name`; `None` when there is none of that name.
pub(crate) async fn call(
    server: &OrienMcp,
    budget: &Budget<'_>,
    name: &str,
    args: &JsonObject,
) -> Result<Option<CallToolResult>, McpError> {
    let answer = match name {
        names::OPEN_SESSION => open_session(server, budget, args).await,
        names::CLOSE_SESSION => close_session(server, budget, args).await,
        names::UPLOAD => upload(server, budget, args).await,
        names::DOWNLOAD => return Ok(Some(download(server, budget, args).await)),
        names::BALANCE => balance(server, budget).await,
        names::PROVIDERS => providers(server, args).await,
        _ => return Ok(None),
    };
    Ok(Some(match answer {
        Ok(value) => CallToolResult::structured(value),
        Err(message) => CallToolResult::error(vec![ContentBlock::text(message)]),
    }))
}

/// A string argument (`None` when absent), or why it is wrong.
fn text<'a>(args: &'a JsonObject, name: &str) -> Result<Option<&'a str>, String> {
    match args.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(format!("`{name}` must be a string, not {other}")),
    }
}

fn required<'a>(args: &'a JsonObject, name: &str) -> Result<&'a str, String> {
    text(args, name)?.ok_or_else(|| format!("`{name}` is required"))
}

fn session_arg(args: &JsonObject) -> Result<SessionId, String> {
    parse::<SessionId>("session", required(args, "session")?).map_err(api)
}

/// The `session` argument, when the caller may use that session.
fn own_session(budget: &Budget<'_>, args: &JsonObject) -> Result<SessionId, String> {
    let session = session_arg(args)?;
    if budget.may_use(&session, now_ms()) {
        Ok(session)
    } else {
        Err(Budget::not_yours(&session))
    }
}

fn api(e: ApiError) -> String {
    e.to_string()
}

fn session_summary(view: &SessionView) -> Value {
    json!({
        "session": view.id,
        "provider": view.provider,
        "tool": view.tool,
        "state": view.state,
        "budget": view.budget,
        "amount": view.amount,
        "pricing": view.pricing,
        "receipts": view.usage.receipts,
    })
}

async fn open_session(
    server: &OrienMcp,
    budget_of: &Budget<'_>,
    args: &JsonObject,
) -> Result<Value, String> {
    let tool = required(args, "tool")?;
    let budget = text(args, "budget")?
        .map(|b| parse::<Usdc>("budget", b))
        .transpose()
        .map_err(api)?;
    let max_price = text(args, "max_price")?
        .map(|p| parse::<Usdc>("max_price", p))
        .transpose()
        .map_err(api)?;
    let provider = text(args, "provider")?;
    let duration = match args.get("max_duration_secs") {
        None | Some(Value::Null) => DEFAULT_SESSION,
        Some(secs) => match secs.as_u64() {
            Some(secs @ 1..=86_400) => Millis(secs * 1000),
            _ => {
                return Err(format!(
                    "`max_duration_secs` must be 1..={}",
                    MAX_SESSION.get() / 1000
                ));
            }
        },
    };
    let catalogue = server
        .catalogue()
        .await
        .map_err(|e| e.message.to_string())?;
    let offers = catalogue
        .offers(tool)
        .ok_or_else(|| format!("no tool `{tool}` on the market now (tools/list shows what is)"))?;
    let node = server.node();
    let matching: Vec<&MarketOffer> = offers
        .iter()
        .filter(|o| provider.is_none_or(|p| o.view.provider == p))
        .filter(|o| max_price.is_none_or(|max| o.pricing.exec_per_minute <= max))
        .collect();
    let ranked = by_reputation(matching, &node.reputation().await.map_err(api)?);
    let offer = ranked
        .first()
        .ok_or_else(|| format!("no offer of `{tool}` matches `provider` and `max_price`"))?;
    let day_left = budget_of.day_left(&node.sessions().await.map_err(api)?, now_ms());
    let budget = budget_of
        .policy()
        .session_budget(budget, day_left)
        .map_err(|e| format!("refused by this node's budget policy, nothing spent: {e}"))?;
    let view = node
        .open_session(OpenSessionRequest {
            choice: OfferChoice::Offer(parse("offer", &offer.view.id).map_err(api)?),
            budget,
            max_duration: duration,
            payment: PaymentKind::Auto,
        })
        .await
        .map_err(api)?;
    budget_of.opened(&view, now_ms());
    Ok(session_summary(&view))
}

async fn close_session(
    server: &OrienMcp,
    budget: &Budget<'_>,
    args: &JsonObject,
) -> Result<Value, String> {
    let session = own_session(budget, args)?;
    let view = server.node().close_session(session).await.map_err(api)?;
    Ok(session_summary(&view))
}

async fn upload(
    server: &OrienMcp,
    budget: &Budget<'_>,
    args: &JsonObject,
) -> Result<Value, String> {
    let session = own_session(budget, args)?;
    let path = required(args, "path")?;
    let content = match (text(args, "text")?, text(args, "base64")?) {
        (Some(text), None) => text.as_bytes().to_vec(),
        (None, Some(encoded)) => base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|e| format!("`base64` does not decode: {e}"))?,
        _ => return Err("give exactly one of `text` and `base64`".into()),
    };
    let file = server
        .node()
        .put_file(session, path.to_owned(), content)
        .await
        .map_err(api)?;
    Ok(json!({"path": file.path, "size": file.size}))
}

async fn download(server: &OrienMcp, budget: &Budget<'_>, args: &JsonObject) -> CallToolResult {
    let read = async {
        let session = own_session(budget, args)?;
        let path = required(args, "path")?;
        let bytes = server
            .node()
            .get_file(session, path.to_owned())
            .await
            .map_err(api)?;
        Ok::<_, String>((path.to_owned(), bytes))
    };
    match read.await {
        Ok((path, bytes)) => {
            let size = bytes.len();
            let value = match String::from_utf8(bytes) {
                Ok(text) => json!({"path": path, "size": size, "text": text}),
                Err(e) => json!({
                    "path": path,
                    "size": size,
                    "base64": base64::engine::general_purpose::STANDARD.encode(e.as_bytes()),
                }),
            };
            CallToolResult::structured(value)
        }
        Err(message) => CallToolResult::error(vec![ContentBlock::text(message)]),
    }
}

async fn balance(server: &OrienMcp, budget: &Budget<'_>) -> Result<Value, String> {
    let node = server.node();
    let policy = budget.policy();
    let left = budget.day_left(&node.sessions().await.map_err(api)?, now_ms());
    // A node that pays through the ledgers only has no wallet to show.
    let wallet = node
        .wallet()
        .await
        .ok()
        .and_then(|w| serde_json::to_value(w).ok());
    Ok(json!({
        "today_left": left.decimal().to_string(),
        "per_call": policy.per_call.decimal().to_string(),
        "per_session": policy.per_session.decimal().to_string(),
        "per_day": policy.per_day.decimal().to_string(),
        "wallet": wallet,
    }))
}

async fn providers(server: &OrienMcp, args: &JsonObject) -> Result<Value, String> {
    let only = text(args, "tool")?;
    let catalogue = server
        .catalogue()
        .await
        .map_err(|e| e.message.to_string())?;
    let mut by_provider: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
    let mut cheapest: BTreeMap<&str, Usdc> = BTreeMap::new();
    for tool in catalogue.tools() {
        if only.is_some_and(|t| t != tool.name) {
            continue;
        }
        for offer in catalogue.offers(&tool.name).unwrap_or_default() {
            let provider = offer.view.provider.as_str();
            by_provider.entry(provider).or_default().push(json!({
                "tool": offer.view.tool,
                "exec_per_minute": offer.view.pricing.exec_per_minute,
                "session_per_minute": offer.view.pricing.session_per_minute,
                "artefact_per_gib": offer.view.pricing.artefact_per_gib,
                "keep_artefacts_ms": offer.view.keep_artefacts_ms,
                "max_exec_ms": offer.view.limits.max_exec_ms,
            }));
            let price = cheapest.entry(provider).or_insert(Usdc::MAX);
            *price = (*price).min(offer.pricing.exec_per_minute);
        }
    }
    let mut providers: Vec<(&str, Vec<Value>)> = by_provider.into_iter().collect();
    providers.sort_by_key(|(p, _)| (cheapest.get(p).copied().unwrap_or(Usdc::MAX), *p));
    Ok(json!({
        "providers": providers
            .into_iter()
            .map(|(provider, tools)| json!({"provider": provider, "tools": tools}))
            .collect::<Vec<_>>(),
    }))
}
