//! What an agent may read without spending: the node's balances, sessions, executions
//! and each session's dual-signed receipts, as MCP resources (JSON, the documents the
//! HTTP API answers); and the bytes an agent may hand to a call as an input file by
//! link (`files: [{path, uri}]`): a rented session's workspace file and a call's whole
//! standard output or error.

use base64::Engine as _;
use orien_protocol::{ExecId, SessionId};
use rmcp::ErrorData as McpError;
use rmcp::model::{Resource, ResourceContents, ResourceTemplate};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::NodeApi;
use crate::mcp::budget::Budget;
use crate::mcp::calls::now_ms;
use crate::problem::ApiError;
use crate::sessions::ExecutionFilter;
use crate::text::parse;

const BALANCES: &str = "orien://ledger/balances";
const SESSIONS: &str = "orien://sessions";
const EXECUTIONS: &str = "orien://executions";
/// Executions the list resource shows (the newest).
const EXECUTIONS_SHOWN: u32 = 100;

/// The fixed resources.
pub(crate) fn list() -> Vec<Resource> {
    vec![
        Resource::new(BALANCES, "balances")
            .with_description("Every account of the node's double-entry ledger with its balance (USDC).")
            .with_mime_type("application/json"),
        Resource::new(SESSIONS, "sessions")
            .with_description("The node's sessions, rented and provided, newest first: state, usage, amount and split.")
            .with_mime_type("application/json"),
        Resource::new(EXECUTIONS, "executions")
            .with_description("The node's newest 100 executions: tool, state, exit, cost, output hashes and the provider's signed result.")
            .with_mime_type("application/json"),
    ]
}

/// The resources named by an id.
pub(crate) fn templates() -> Vec<ResourceTemplate> {
    vec![
        ResourceTemplate::new("orien://sessions/{id}", "session")
            .with_description("One session.")
            .with_mime_type("application/json"),
        ResourceTemplate::new("orien://sessions/{id}/receipts", "receipts")
            .with_description("A session's dual-signed receipts in order (hex envelopes, identical on both sides).")
            .with_mime_type("application/json"),
        ResourceTemplate::new("orien://executions/{id}", "execution")
            .with_description("One execution with its output so far.")
            .with_mime_type("application/json"),
        ResourceTemplate::new("orien://executions/{id}/stdout", "stdout")
            .with_description("All of an execution's standard output, byte for byte (a call's `files` may link it as an input).")
            .with_mime_type("application/octet-stream"),
        ResourceTemplate::new("orien://executions/{id}/stderr", "stderr")
            .with_description("All of an execution's standard error, byte for byte.")
            .with_mime_type("application/octet-stream"),
        ResourceTemplate::new("orien://executions/{id}/artefacts/{path}", "artefact")
            .with_description("The file a call left at an output path it named: the copy its provider kept and named in the signed result (readable after the call's session closed, for as long as the provider keeps artefacts; a call's `files` may link it as an input).")
            .with_mime_type("application/octet-stream"),
        ResourceTemplate::new("orien://sessions/{id}/files/{path}", "workspace file")
            .with_description("A file of an open rented session's workspace (a call's `files` may link it as an input, into another session).")
            .with_mime_type("application/octet-stream"),
    ]
}

/// The bytes at `uri` (a workspace file or a call's whole output), as far as
/// `budget`'s caller may see; `None` when `uri` names no such content (a JSON
/// document, say).
pub(crate) async fn bytes(
    node: &dyn NodeApi,
    budget: &Budget<'_>,
    uri: &str,
) -> Result<Option<Vec<u8>>, McpError> {
    let now = now_ms();
    let mine = |id: &str| {
        id.parse::<SessionId>()
            .is_ok_and(|s| budget.may_use(&s, now))
    };
    let Some(path) = uri.strip_prefix("orien://") else {
        return Ok(None);
    };
    let parts: Vec<&str> = path.splitn(4, '/').collect();
    match parts.as_slice() {
        ["sessions", id, "files", file] if !file.is_empty() => {
            if !mine(id) {
                return Err(not_found(uri));
            }
            node.get_file(session(id)?, (*file).to_owned())
                .await
                .map(Some)
                .map_err(|e| refused(uri, e))
        }
        ["executions", id, "artefacts", file] if !file.is_empty() => {
            let exec: ExecId = parse("id", id).map_err(|e| invalid(&e))?;
            let view = node.execution(exec).await.map_err(|e| refused(uri, e))?;
            if !mine(&view.session) {
                return Err(not_found(uri));
            }
            node.get_artefact(exec, (*file).to_owned())
                .await
                .map(Some)
                .map_err(|e| refused(uri, e))
        }
        ["executions", id, stream @ ("stdout" | "stderr")] => {
            let exec: ExecId = parse("id", id).map_err(|e| invalid(&e))?;
            let view = node.execution(exec).await.map_err(|e| refused(uri, e))?;
            if !mine(&view.session) {
                return Err(not_found(uri));
            }
            let (text, truncated, sha256) = if *stream == "stdout" {
                (view.stdout, view.stdout_truncated, view.stdout_sha256)
            } else {
                (view.stderr, view.stderr_truncated, view.stderr_sha256)
            };
            let Some(sha256) = sha256 else {
                return Err(McpError::invalid_params(
                    format!("{uri}: the call has not ended; link its output once it has"),
                    None,
                ));
            };
            // The node holds output as text: only whole, valid UTF-8 output is the
            // bytes the provider's signed result names.
            if truncated || hex::encode(Sha256::digest(text.as_bytes())) != sha256 {
                return Err(McpError::invalid_params(
                    format!(
                        "{uri}: this node no longer holds all of it byte for byte (cut at the output cap, binary, or read back after a restart); have the tool write a file and link orien://sessions/{{id}}/files/{{path}}"
                    ),
                    None,
                ));
            }
            Ok(Some(text.into_bytes()))
        }
        _ => Ok(None),
    }
}

fn not_found(uri: &str) -> McpError {
    McpError::resource_not_found(
        format!("no resource {uri} (resources/list and resources/templates/list show them)"),
        None,
    )
}

fn refused(uri: &str, e: ApiError) -> McpError {
    match e {
        ApiError::NotFound(what) => {
            McpError::resource_not_found(format!("{uri}: {what} not found"), None)
        }
        e => McpError::invalid_params(format!("{uri}: {e}"), None),
    }
}

/// Reads the resource at `uri`, as far as `budget`'s caller may see: a client only its
/// own sessions and their executions and receipts.
pub(crate) async fn read(
    node: &dyn NodeApi,
    budget: &Budget<'_>,
    uri: &str,
) -> Result<ResourceContents, McpError> {
    let now = now_ms();
    let mine = |id: &str| {
        id.parse::<SessionId>()
            .is_ok_and(|s| budget.may_use(&s, now))
    };
    let missing = || {
        McpError::resource_not_found(
            format!("no resource {uri} (resources/list and resources/templates/list show them)"),
            None,
        )
    };
    if let Some(content) = bytes(node, budget, uri).await? {
        return Ok(ResourceContents::blob(
            base64::engine::general_purpose::STANDARD.encode(content),
            uri,
        )
        .with_mime_type("application/octet-stream"));
    }
    let path = uri.strip_prefix("orien://").ok_or_else(missing)?;
    let parts: Vec<&str> = path.split('/').collect();
    let document = match parts.as_slice() {
        ["ledger", "balances"] => json(node.balances().await),
        ["sessions"] => json(
            node.sessions()
                .await
                .map(|all| all.into_iter().filter(|s| mine(&s.id)).collect::<Vec<_>>()),
        ),
        ["executions"] => json(
            node.executions(ExecutionFilter {
                session: None,
                tool: None,
                state: None,
                failure: None,
                after: None,
                limit: EXECUTIONS_SHOWN,
            })
            .await
            .map(|mut page| {
                page.executions.retain(|e| mine(&e.session));
                page
            }),
        ),
        ["sessions", id] if mine(id) => json(node.session(session(id)?).await),
        ["sessions", id, "receipts"] if mine(id) => json(node.receipts(session(id)?).await),
        ["executions", id] => {
            let exec: ExecId = parse("id", id).map_err(|e| invalid(&e))?;
            match node.execution(exec).await {
                Ok(view) if !mine(&view.session) => return Err(missing()),
                answer => json(answer),
            }
        }
        _ => return Err(missing()),
    }?;
    Ok(ResourceContents::text(document, uri).with_mime_type("application/json"))
}

fn session(id: &str) -> Result<SessionId, McpError> {
    parse("id", id).map_err(|e| invalid(&e))
}

fn invalid(e: &ApiError) -> McpError {
    McpError::invalid_params(e.to_string(), None)
}

/// A document as JSON text, or the node's refusal as an MCP error.
fn json<T: Serialize>(answer: Result<T, ApiError>) -> Result<String, McpError> {
    match answer {
        Ok(value) => serde_json::to_string_pretty(&value)
            .map_err(|e| McpError::internal_error(e.to_string(), None)),
        Err(ApiError::NotFound(what)) => Err(McpError::resource_not_found(
            format!("{what} not found"),
            None,
        )),
        Err(e) => Err(McpError::internal_error(e.to_string(), None)),
    }
}
