//! Executions: start one, read its state, follow its log as server-sent events.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;

use crate::api::NodeApi;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::sessions::{
    ExecBody, ExecutionPage, ExecutionQuery, ExecutionView, LogEntry, LogEvent, LogKind,
    parse_exec_id, parse_session_id,
};
use crate::{ApiError, AppState};

/// How long one wait for new log entries lasts before the stream polls again.
const LOG_POLL: Duration = Duration::from_secs(15);

/// Starts an execution; answers `202` at once, with the execution to poll or follow.
///
/// Honours `Idempotency-Key`: a retry with the same key and body does not run twice.
#[utoipa::path(post, path = "/v1/sessions/{id}/executions", tag = "executions", security(("bearer" = [])),
    params(
        ("id" = crate::text::IdText, Path, description = "Session id (hex)"),
        ("Idempotency-Key" = Option<crate::text::IdempotencyKeyText>, Header, description = "Replays the first answer to a retried request"),
    ),
    request_body = ExecBody,
    responses(
        (status = 202, description = "Started; follow `Location` or its logs", body = ExecutionView),
        (status = 400, description = "Invalid request", body = crate::ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong token", body = crate::ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such session", body = crate::ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "The session is not open, or at its concurrency limit", body = crate::ProblemBody, content_type = "application/problem+json"),
        (status = 502, description = "The provider could not be reached", body = crate::ProblemBody, content_type = "application/problem+json"),
    ))]
pub(crate) async fn start_execution(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<ExecBody>,
) -> Result<Response, ApiError> {
    let session = parse_session_id(&id)?;
    let tool = body
        .tool
        .map(|t| crate::text::parse("tool", t.as_str()))
        .transpose()?;
    let view = state
        .node
        .start_execution(
            session,
            tool,
            serde_json::Value::Object(body.args),
            body.outputs.into_iter().map(|p| p.0).collect(),
        )
        .await?;
    let location = HeaderValue::from_str(&format!("/v1/executions/{}", view.id))
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(view),
    )
        .into_response())
}

/// This node's executions, newest first, a page at a time: the calls it rented and the
/// calls it ran as provider, from its ledger (they survive restarts). Output is what
/// each record keeps (see `stdout_truncated`); `GET /v1/executions/{id}` gives all of
/// it while the node holds it.
#[utoipa::path(get, path = "/v1/executions", tag = "executions", security(("bearer" = [])), params(ExecutionQuery),
    responses(
        (status = 200, description = "A page of executions", body = ExecutionPage),
        (status = 400, description = "Malformed filter", body = crate::ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong token", body = crate::ProblemBody, content_type = "application/problem+json"),
    ))]
pub(crate) async fn list_executions(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<ExecutionQuery>,
) -> Result<Json<ExecutionPage>, ApiError> {
    Ok(Json(state.node.executions(query.filter()?).await?))
}

/// An execution: state, exit and output so far.
#[utoipa::path(get, path = "/v1/executions/{id}", tag = "executions", security(("bearer" = [])),
    params(("id" = crate::text::IdText, Path, description = "Execution id (hex)")),
    responses(
        (status = 200, description = "The execution", body = ExecutionView),
        (status = 400, description = "Malformed id", body = crate::ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong token", body = crate::ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such execution", body = crate::ProblemBody, content_type = "application/problem+json"),
    ))]
pub(crate) async fn get_execution(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ExecutionView>, ApiError> {
    Ok(Json(state.node.execution(parse_exec_id(&id)?).await?))
}

/// The execution's output as server-sent events: `stdout` and `stderr` chunks, then one
/// `exit` event whose data is the execution as JSON; the stream then ends. Each event's
/// id is its index: reconnect with `Last-Event-ID` to resume after it.
#[utoipa::path(get, path = "/v1/executions/{id}/logs", tag = "executions", security(("bearer" = [])),
    params(
        ("id" = crate::text::IdText, Path, description = "Execution id (hex)"),
        ("Last-Event-ID" = Option<u64>, Header, description = "Resume after this event"),
    ),
    responses(
        (status = 200, description = "Server-sent events, each a `LogEvent`: `event:` its name, `data:` its data (text; for `exit` the execution as JSON), `id:` its index", content_type = "text/event-stream", body = LogEvent),
        (status = 400, description = "Malformed id or Last-Event-ID", body = crate::ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong token", body = crate::ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such execution", body = crate::ProblemBody, content_type = "application/problem+json"),
    ))]
pub(crate) async fn execution_logs(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let exec = parse_exec_id(&id)?;
    let after = headers
        .get("last-event-id")
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| ApiError::field("Last-Event-ID", "must be an event index"))
        })
        .transpose()?;
    // The first page is read before answering, so an unknown execution is a 404 and not
    // an empty stream.
    let first = state
        .node
        .execution_log(exec, after, Duration::ZERO)
        .await?;
    let follow = LogFollower {
        node: state.node.clone(),
        exec,
        after: first.entries.last().map(|e| e.index).or(after),
        pending: first.entries.into(),
        finished: first.finished,
    };
    let stream = futures_util::stream::unfold(follow, |mut follow| async move {
        let event = follow.next().await?;
        Some((Ok(event), follow))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

struct LogFollower {
    node: Arc<dyn NodeApi>,
    exec: orien_protocol::ExecId,
    after: Option<u64>,
    pending: VecDeque<LogEntry>,
    finished: bool,
}

impl LogFollower {
    /// The next event, or `None` once the log is complete (or the node failed, which
    /// is sent as a final `error` event first).
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(entry) = self.pending.pop_front() {
                return Some(event_of(&entry));
            }
            if self.finished {
                return None;
            }
            match self
                .node
                .execution_log(self.exec, self.after, LOG_POLL)
                .await
            {
                Ok(page) => {
                    if let Some(last) = page.entries.last() {
                        self.after = Some(last.index);
                    }
                    self.pending.extend(page.entries);
                    self.finished = page.finished;
                }
                Err(e) => {
                    self.finished = true;
                    return Some(Event::default().event("error").data(e.body().detail));
                }
            }
        }
    }
}

fn event_of(entry: &LogEntry) -> Event {
    let name = match entry.kind {
        LogKind::Stdout => "stdout",
        LogKind::Stderr => "stderr",
        LogKind::Exit => "exit",
    };
    Event::default()
        .id(entry.index.to_string())
        .event(name)
        .data(&entry.data)
}
