//! How the node's errors answer over HTTP.

use crate::transfer::TransferError;
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
            SessionError::Transfer(e) => transfer_error(e),
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

/// What a failed file transfer tells the API's caller.
pub(super) fn transfer_error(error: TransferError) -> ApiError {
    use orien_protocol::transfer::TransferRefusal as R;
    match &error {
        TransferError::Refused(refusal) => match refusal.code {
            R::NotFound => ApiError::NotFound(refusal.detail.clone()),
            R::BadPath | R::Protocol => ApiError::BadRequest {
                detail: format!("the provider refused the transfer: {}", refusal.detail),
                errors: Vec::new(),
            },
            R::TooLarge => ApiError::TooLarge(refusal.detail.clone()),
            R::DiskFull => ApiError::InsufficientStorage(refusal.detail.clone()),
            R::Changed | R::NotAuthorised => ApiError::Conflict(refusal.detail.clone()),
            R::Busy => ApiError::RateLimited,
            R::Corrupt | R::Internal => ApiError::BadGateway(error.to_string()),
            R::OutOfRange => ApiError::RangeNotSatisfiable { size: None },
        },
        TransferError::Offset { held, .. } => ApiError::UploadOffset {
            held: *held,
            detail: error.to_string(),
        },
        TransferError::Source(_) => ApiError::BadRequest {
            detail: error.to_string(),
            errors: Vec::new(),
        },
        TransferError::Unreachable { .. } | TransferError::Protocol(_) => {
            ApiError::BadGateway(error.to_string())
        }
    }
}
