//! How the node's errors answer over HTTP.

use orien_ledger::StoreError;
use orien_protocol::RpcErrorCode;
use orien_web_api::ApiError;

use crate::node::NodeError;
use crate::payments::PaymentError;
use crate::session::SessionError;

impl From<NodeError> for ApiError {
    fn from(error: NodeError) -> Self {
        match error {
            NodeError::Stopped => ApiError::Unavailable("the node is stopping".into()),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<SessionError> for ApiError {
    fn from(error: SessionError) -> Self {
        match error {
            SessionError::UnknownSession(s) => ApiError::NotFound(format!("session {s}")),
            SessionError::UnknownExec(e) => ApiError::NotFound(format!("execution {e}")),
            SessionError::UnknownOffer(_) | SessionError::NoSuchTool(_) => {
                ApiError::NotFound(error.to_string())
            }
            SessionError::Rejected(_)
            | SessionError::OwnOffer(_)
            | SessionError::ProviderNotAllowed(_)
            | SessionError::NotOpen { .. }
            | SessionError::Budget(_)
            | SessionError::TooManyCalls { .. } => ApiError::Conflict(error.to_string()),
            SessionError::Refused {
                code: RpcErrorCode::BadRequest,
                detail,
            } => ApiError::BadRequest {
                detail: format!("the provider refused the request: {detail}"),
                errors: Vec::new(),
            },
            SessionError::Refused {
                code: RpcErrorCode::RateLimited,
                ..
            }
            | SessionError::Busy(_) => ApiError::RateLimited,
            SessionError::Refused {
                code: RpcErrorCode::NotFound,
                detail,
            } => ApiError::NotFound(detail),
            SessionError::Refused { .. } | SessionError::Remote(_) => {
                ApiError::BadGateway(error.to_string())
            }
            SessionError::Net(crate::net::NetError::Stopped) => {
                ApiError::Unavailable("the node is stopping".into())
            }
            SessionError::Net(e) => ApiError::BadGateway(format!(
                "{e}; the provider may be offline — list offers again or retry"
            )),
            SessionError::Ledger(e) => ledger_error(e),
            SessionError::Payment(PaymentError::InsufficientDeposit { .. })
            | SessionError::NoChain => ApiError::Conflict(error.to_string()),
            SessionError::Payment(PaymentError::Ledger(e)) => ledger_error(e),
            SessionError::Payment(e) => ApiError::BadGateway(format!("the chain: {e}")),
            SessionError::Disabled => ApiError::Unavailable(error.to_string()),
        }
    }
}

pub(super) fn payment_error(error: PaymentError) -> ApiError {
    match error {
        PaymentError::Chain(e) => chain_error(e),
        PaymentError::Ledger(e) => ledger_error(e),
        other => ApiError::BadGateway(format!("the chain: {other}")),
    }
}

pub(super) fn chain_error(error: orien_ledger::chain::ChainError) -> ApiError {
    ApiError::BadGateway(format!("the chain: {error}"))
}

pub(super) fn ledger_error(error: StoreError) -> ApiError {
    match error {
        StoreError::UnknownSession(s) => ApiError::NotFound(format!("session {s}")),
        StoreError::DiskFull { .. } => ApiError::Unavailable(format!(
            "{error}; free disk space, nothing acknowledged was lost"
        )),
        other => ApiError::Internal(other.to_string()),
    }
}
