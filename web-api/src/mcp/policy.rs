//! What an agent may spend through MCP, checked before anything is spent.
//!
//! A call's ceiling is what it can cost at most: its execution metered to the tool's
//! wall-time limit plus [`CALL_SLACK`], and, when the call opens its own session, as
//! much session time. A call whose ceiling is above the per-call limit is refused. A
//! session the server opens gets a budget no larger than the per-session limit, nor
//! than what is left of the day, so the renter's meter (which never lets usage pass a
//! session's budget) enforces the policy even when a call runs long.

use orien_protocol::pricing::CALL_SLACK;
use orien_protocol::{Millis, Pricing, Usage, Usdc};

use crate::sessions::{SessionRole, SessionState, SessionView};

/// Milliseconds in a UTC day.
const DAY_MS: u64 = 86_400_000;

/// Limits on what MCP clients spend through this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetPolicy {
    /// The most one tool call may cost (its ceiling; a call in a session the server
    /// opens for it also pays that session's time).
    pub per_call: Usdc,
    /// The largest budget of a session opened through MCP.
    pub per_session: Usdc,
    /// The most this node's rented sessions may cost in a UTC day: sessions still open
    /// count their whole budget, ended ones what they cost.
    pub per_day: Usdc,
}

impl Default for BudgetPolicy {
    /// 0.50 USDC a call, 2 USDC a session, 10 USDC a day.
    fn default() -> Self {
        Self {
            per_call: Usdc::from_micros(500_000),
            per_session: Usdc::from_micros(2_000_000),
            per_day: Usdc::from_micros(10_000_000),
        }
    }
}

/// Why the policy refuses a call or a session. The message says what would allow it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyRefusal {
    /// The call may cost more than one call may.
    #[error(
        "this call may cost up to {} USDC ({} ms of `{tool}` at its provider's prices), above the per-call limit of {} USDC; choose a cheaper provider (`max_price`) or raise `mcp_max_call` in the node's config",
        .ceiling.decimal(), .metered.get(), .limit.decimal()
    )]
    AbovePerCall {
        /// The tool.
        tool: String,
        /// The most it is metered.
        metered: Millis,
        /// What it may cost.
        ceiling: Usdc,
        /// The per-call limit.
        limit: Usdc,
    },
    /// The session's budget is above the per-session limit.
    #[error(
        "a session budget of {} USDC is above the per-session limit of {} USDC; ask for less or raise `mcp_max_session` in the node's config",
        .budget.decimal(), .limit.decimal()
    )]
    AbovePerSession {
        /// The budget asked for.
        budget: Usdc,
        /// The per-session limit.
        limit: Usdc,
    },
    /// What is left of the day does not cover it.
    #[error(
        "this needs up to {} USDC but only {} USDC of today's {} USDC is left (sessions still open count their whole budget); close idle sessions, wait for 00:00 UTC, or raise `mcp_max_day` in the node's config",
        .needed.decimal(), .left.decimal(), .limit.decimal()
    )]
    DayExhausted {
        /// What it needs.
        needed: Usdc,
        /// What is left today.
        left: Usdc,
        /// The daily limit.
        limit: Usdc,
    },
}

impl BudgetPolicy {
    /// What is left of today's limit at `now_ms` (ms since the Unix epoch), given the
    /// node's sessions.
    pub fn day_left(&self, sessions: &[SessionView], now_ms: u64) -> Usdc {
        self.per_day
            .saturating_sub(spent_today(sessions, now_ms - now_ms % DAY_MS))
    }

    /// The budget of a session opened for one call whose ceiling is `ceiling`, or why
    /// the policy refuses it: the per-call limit, capped by the per-session limit and
    /// what is left of the day; the ceiling must fit in it.
    pub fn budget_for_call(
        &self,
        tool: &str,
        metered: Millis,
        ceiling: Usdc,
        day_left: Usdc,
    ) -> Result<Usdc, PolicyRefusal> {
        self.check_call(tool, metered, ceiling)?;
        let budget = self.per_call.min(self.per_session);
        if ceiling > budget {
            return Err(PolicyRefusal::AbovePerSession {
                budget: ceiling,
                limit: self.per_session,
            });
        }
        if ceiling > day_left {
            return Err(PolicyRefusal::DayExhausted {
                needed: ceiling,
                left: day_left,
                limit: self.per_day,
            });
        }
        Ok(budget.min(day_left))
    }

    /// Whether a call with this ceiling may run (in a session already open).
    pub fn check_call(
        &self,
        tool: &str,
        metered: Millis,
        ceiling: Usdc,
    ) -> Result<(), PolicyRefusal> {
        if ceiling > self.per_call {
            return Err(PolicyRefusal::AbovePerCall {
                tool: tool.to_owned(),
                metered,
                ceiling,
                limit: self.per_call,
            });
        }
        Ok(())
    }

    /// Whether a session with `budget` may be opened (`None`: the per-session limit).
    pub fn session_budget(
        &self,
        budget: Option<Usdc>,
        day_left: Usdc,
    ) -> Result<Usdc, PolicyRefusal> {
        let budget = budget.unwrap_or(self.per_session.min(day_left));
        if budget > self.per_session {
            return Err(PolicyRefusal::AbovePerSession {
                budget,
                limit: self.per_session,
            });
        }
        if budget > day_left || budget.is_zero() {
            return Err(PolicyRefusal::DayExhausted {
                needed: budget.max(Usdc::from_micros(1)),
                left: day_left,
                limit: self.per_day,
            });
        }
        Ok(budget)
    }
}

/// The most a call of a tool with wall-time limit `max_exec` is metered.
pub fn metered_at_most(max_exec: Millis) -> Millis {
    Millis(max_exec.get().saturating_add(CALL_SLACK.get()))
}

/// The most a call metered at most `metered` costs at `pricing`: its execution, and
/// when it opens its own session on a workspace of `own_workspace` bytes, as much
/// session time and the artefacts that workspace can hold (the node's meter admits a
/// call only if the session's budget covers them).
pub fn call_ceiling(pricing: &Pricing, metered: Millis, own_workspace: Option<u64>) -> Usdc {
    let usage = pricing.amount_for(Usage {
        session: if own_workspace.is_some() {
            metered
        } else {
            Millis::ZERO
        },
        exec: metered,
    });
    let artefacts = own_workspace.map_or(Usdc::ZERO, |bytes| pricing.artefact_amount(bytes));
    usage.saturating_add(artefacts)
}

/// What this node's rented sessions opened since `day_start_ms` cost or may cost: an
/// open session its budget, an ended one its amount.
fn spent_today(sessions: &[SessionView], day_start_ms: u64) -> Usdc {
    sessions
        .iter()
        .filter(|s| s.role == SessionRole::Renter && s.opened_at >= day_start_ms)
        .map(|s| {
            let counted = if s.state == SessionState::Active {
                &s.budget
            } else {
                &s.amount
            };
            // The views are this node's own; an unreadable amount counts as the budget.
            counted
                .parse::<Usdc>()
                .or_else(|_| s.budget.parse::<Usdc>())
                .unwrap_or(Usdc::MAX)
        })
        .fold(Usdc::ZERO, Usdc::saturating_add)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usdc(micros: u64) -> Usdc {
        Usdc::from_micros(micros)
    }

    fn policy() -> BudgetPolicy {
        BudgetPolicy {
            per_call: usdc(50_000),
            per_session: usdc(200_000),
            per_day: usdc(300_000),
        }
    }

    #[test]
    fn a_ceiling_counts_the_call_cap_with_its_slack_and_its_own_session() {
        let pricing = Pricing {
            session_per_minute: usdc(60_000),
            exec_per_minute: usdc(120_000),
            artefact_per_gib: Usdc::ZERO,
        };
        let metered = metered_at_most(Millis(29_000));
        assert_eq!(metered, Millis(30_000));
        assert_eq!(call_ceiling(&pricing, metered, None), usdc(60_000));
        assert_eq!(call_ceiling(&pricing, metered, Some(1 << 30)), usdc(90_000));
        let keeping = Pricing {
            artefact_per_gib: usdc(40_000),
            ..pricing
        };
        assert_eq!(
            call_ceiling(&keeping, metered, Some(1 << 29)),
            usdc(110_000),
            "its own session's budget covers half a GiB of artefacts"
        );
        assert_eq!(call_ceiling(&keeping, metered, None), usdc(60_000));
    }

    #[test]
    fn a_call_above_the_per_call_limit_is_refused_and_says_what_to_change() {
        let refusal = policy()
            .budget_for_call("wc", Millis(30_000), usdc(50_001), usdc(300_000))
            .unwrap_err();
        assert!(matches!(refusal, PolicyRefusal::AbovePerCall { .. }));
        let message = refusal.to_string();
        assert!(message.contains("0.050001"), "{message}");
        assert!(message.contains("mcp_max_call"), "{message}");
    }

    #[test]
    fn a_call_gets_a_session_budget_of_the_per_call_limit_capped_by_the_day() {
        let p = policy();
        assert_eq!(
            p.budget_for_call("wc", Millis(1_000), usdc(10_000), usdc(300_000)),
            Ok(usdc(50_000))
        );
        assert_eq!(
            p.budget_for_call("wc", Millis(1_000), usdc(10_000), usdc(20_000)),
            Ok(usdc(20_000))
        );
        assert!(matches!(
            p.budget_for_call("wc", Millis(1_000), usdc(10_000), usdc(9_999)),
            Err(PolicyRefusal::DayExhausted { .. })
        ));
    }

    #[test]
    fn a_session_budget_is_bounded_by_the_session_limit_and_the_day() {
        let p = policy();
        assert_eq!(p.session_budget(None, usdc(300_000)), Ok(usdc(200_000)));
        assert_eq!(p.session_budget(None, usdc(150_000)), Ok(usdc(150_000)));
        assert_eq!(
            p.session_budget(Some(usdc(100_000)), usdc(150_000)),
            Ok(usdc(100_000))
        );
        assert!(matches!(
            p.session_budget(Some(usdc(200_001)), usdc(300_000)),
            Err(PolicyRefusal::AbovePerSession { .. })
        ));
        assert!(matches!(
            p.session_budget(None, Usdc::ZERO),
            Err(PolicyRefusal::DayExhausted { .. })
        ));
    }

    fn session(role: SessionRole, state: SessionState, opened_at: u64) -> SessionView {
        let json = serde_json::json!({
            "id": "00".repeat(16), "role": role, "provider": "p", "renter": "r",
            "offer": null, "tool": null, "state": state, "close_reason": null,
            "suspend_reason": null, "state_detail": null, "budget": "0.2",
            "pricing": {"session_per_minute": "0", "exec_per_minute": "0", "artefact_per_gib": "0"},
            "opened_at": opened_at,
            "usage": {"session_ms": 0, "exec_ms": 0, "cpu_ms": 0, "receipts": 0},
            "amount": "0.03",
            "split": {"provider": "0", "fee": "0", "reserve": "0"}
        });
        serde_json::from_value(json).expect("a session view")
    }

    #[test]
    fn today_counts_open_sessions_budgets_and_ended_sessions_amounts_of_the_renter() {
        let day = 20_000 * DAY_MS;
        let now = day + 5_000;
        let sessions = [
            session(SessionRole::Renter, SessionState::Active, day + 1),
            session(SessionRole::Renter, SessionState::Completed, day + 2),
            session(SessionRole::Renter, SessionState::Failed, day - 1),
            session(SessionRole::Provider, SessionState::Active, day + 3),
        ];
        assert_eq!(policy().day_left(&sessions, now), usdc(70_000));
    }
}
