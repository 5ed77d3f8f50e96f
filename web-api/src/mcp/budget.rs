//! The budget one request spends from: the node's policy, and for a client with its own
//! token, that client's limits within it and only the sessions it opened.

use orien_protocol::{SessionId, Usdc};

use crate::mcp::clients::{Caller, Clients};
use crate::mcp::policy::BudgetPolicy;
use crate::sessions::SessionView;

/// What one request may spend, and whose sessions it may use.
pub(crate) struct Budget<'a> {
    node: &'a BudgetPolicy,
    caller: Caller,
    clients: Option<&'a Clients>,
}

impl<'a> Budget<'a> {
    /// The budget of `caller` under the node's `policy`.
    pub(crate) fn new(
        node: &'a BudgetPolicy,
        caller: Caller,
        clients: Option<&'a Clients>,
    ) -> Self {
        Self {
            node,
            caller,
            clients,
        }
    }

    /// The limits in force: the node's, each lowered to the client's.
    pub(crate) fn policy(&self) -> BudgetPolicy {
        match &self.caller {
            Caller::Owner => *self.node,
            Caller::Client { policy, .. } => BudgetPolicy {
                per_call: policy.per_call.min(self.node.per_call),
                per_session: policy.per_session.min(self.node.per_session),
                per_day: policy.per_day.min(self.node.per_day),
            },
        }
    }

    /// What is left today: of the node's day over all its rented sessions, and of the
    /// client's over the sessions it opened.
    pub(crate) fn day_left(&self, sessions: &[SessionView], now_ms: u64) -> Usdc {
        let node = self.node.day_left(sessions, now_ms);
        match (&self.caller, self.clients) {
            (Caller::Client { name, policy }, Some(clients)) => {
                let own: Vec<SessionView> = sessions
                    .iter()
                    .filter(|s| {
                        s.id.parse::<SessionId>()
                            .is_ok_and(|id| clients.opened_by(&id, name, now_ms))
                    })
                    .cloned()
                    .collect();
                node.min(policy.day_left(&own, now_ms))
            }
            _ => node,
        }
    }

    /// Records a session this request opened.
    pub(crate) fn opened(&self, session: &SessionView, now_ms: u64) {
        if let (Caller::Client { name, .. }, Some(clients)) = (&self.caller, self.clients)
            && let Ok(id) = session.id.parse()
        {
            clients.opened(name, id, now_ms);
        }
    }

    /// Whether this request may use `session`: the owner any, a client its own.
    pub(crate) fn may_use(&self, session: &SessionId, now_ms: u64) -> bool {
        match (&self.caller, self.clients) {
            (Caller::Owner, _) => true,
            (Caller::Client { name, .. }, Some(clients)) => {
                clients.opened_by(session, name, now_ms)
            }
            (Caller::Client { .. }, None) => false,
        }
    }

    /// Why a client may not use `session`.
    pub(crate) fn not_yours(session: &SessionId) -> String {
        format!(
            "session {session} was not opened with this client's token; a client uses only its own sessions"
        )
    }
}
