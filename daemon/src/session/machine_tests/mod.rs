//! The session machines' rules, one test each, on a manual clock and real ledgers (a
//! receipt only counts as durable once RocksDB says so).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use orien_ledger::receipts::Tolerance;
use orien_ledger::{
    Countersigner, Issuer, Meter, MeterConfig, SessionRecord, SessionStatus, Store, StoreOptions,
};
use orien_protocol::{
    Artefact, Clock, CloseReason, ContentHash, Exec, ExecEvent, ExecEvents, ExecExit, ExecId,
    ExecOutcome, ManualClock, Millis, NodeKey, OutputChunk, OutputStream, PaymentLane, Pricing,
    RpcErrorCode, SessionId, SessionResponse, Signed, Timestamp, ToolName, UsageReceipt, Usdc,
};

use super::call_terms::CallTerms;
use super::provider_machine::{
    Delivery, ProviderAction, ProviderInput, ProviderMachine, ProviderTerms, RETRY,
};
use super::renter_machine::{
    Refused, RenterAction, RenterInput, RenterMachine, RenterTerms, StartRefused,
};
use crate::peer_guard::Abuse;
use orien_ledger::meter::CallRate;

const INTERVAL: Millis = Millis(1_000);
const ACK_TIMEOUT: Millis = Millis(3_000);
const MAX_EXEC: Millis = Millis(2_000);
const PRICING: Pricing = Pricing {
    session_per_minute: Usdc::from_micros(60_000),
    exec_per_minute: Usdc::from_micros(600_000),
    artefact_per_gib: Usdc::ZERO,
};
const GRACE: Duration = Duration::from_secs(5);

type P = ProviderMachine<u32>;
type R = RenterMachine<u32>;

struct Rig {
    clock: Arc<ManualClock>,
    session: SessionId,
    provider_store: Store,
    renter_store: Store,
    _dir: tempfile::TempDir,
}

fn rig(budget: u64) -> (Rig, P, R) {
    rig_priced(budget, PRICING, 0)
}

/// A rig whose session runs at `pricing` on a workspace of `workspace_bytes`.
fn rig_priced(budget: u64, pricing: Pricing, workspace_bytes: u64) -> (Rig, P, R) {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(Timestamp(1_800_000_000_000)));
    let store = |name: &str| {
        let options = StoreOptions {
            clock: clock.clone(),
            ..StoreOptions::default()
        };
        Store::open_with(dir.path().join(name), options).unwrap()
    };
    let (provider_store, renter_store) = (store("provider"), store("renter"));
    let (provider, renter) = (NodeKey::generate(), NodeKey::generate());
    let session = SessionId::random();
    let budget = Usdc::from_micros(budget);
    let record = SessionRecord {
        session,
        provider: provider.node_id(),
        renter: renter.node_id(),
        payment: PaymentLane::Ledger,
        pricing,
        budget,
        opened_at: clock.wall(),
    };
    provider_store.open_session(record.clone()).unwrap();
    renter_store.open_session(record).unwrap();
    let config = MeterConfig {
        pricing,
        budget,
        receipt_interval: INTERVAL,
        call_cap: MeterConfig::call_cap_for(MAX_EXEC),
        artefact_cap: pricing.artefact_amount(workspace_bytes),
    };
    let c: Arc<dyn Clock> = clock.clone();
    let p = ProviderMachine::new(
        ProviderTerms {
            session,
            tool: tool(),
            max_calls: 2,
            max_duration: Duration::from_secs(60),
        },
        Meter::start(config, c.clone()),
        Issuer::new(
            provider.clone(),
            session,
            renter.node_id(),
            ACK_TIMEOUT,
            c.clone(),
        ),
        None,
        c.clone(),
    );
    let r = RenterMachine::new(
        RenterTerms {
            session,
            provider: provider.node_id(),
            max_calls: 2,
            grace: GRACE,
            slack: Tolerance::default().slack,
        },
        Meter::start(config, c.clone()),
        Countersigner::new(
            renter,
            session,
            provider.node_id(),
            pricing,
            budget,
            Tolerance::default(),
        ),
        c,
    );
    let rig = Rig {
        clock,
        session,
        provider_store,
        renter_store,
        _dir: dir,
    };
    (rig, p, r)
}

impl Rig {
    fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    /// Passes one receipt through the renter and its ack back, committing on both sides
    /// as the drivers do; the provider's actions after the commit.
    fn deliver(
        &self,
        p: &mut P,
        r: &mut R,
        receipt: Signed<UsageReceipt>,
    ) -> Vec<ProviderAction<u32>> {
        let ack = self.renter_acks(r, receipt);
        let actions = p.handle(ProviderInput::Delivered(Delivery::Answered(ack)));
        let Some(ProviderAction::Commit(acked)) = actions.into_iter().next() else {
            panic!("an ack is committed first");
        };
        let durable = self.provider_store.ingest_checked(*acked).unwrap();
        p.handle(ProviderInput::Committed(Ok(durable)))
    }

    fn renter_acks(&self, r: &mut R, receipt: Signed<UsageReceipt>) -> SessionResponse {
        let actions = r.handle(RenterInput::Receipt {
            receipt,
            reply: 7,
            lane_acked: Usdc::ZERO,
        });
        match actions.as_slice() {
            [RenterAction::Commit(acked)] => {
                let durable = self.renter_store.ingest_checked(*acked.clone()).unwrap();
                let mut out = r.handle(RenterInput::Committed(Ok(durable)));
                match out.pop() {
                    Some(RenterAction::Reply(7, response)) => response,
                    other => panic!("no reply after the commit: {other:?}"),
                }
            }
            [RenterAction::Reply(7, response)] => response.clone(),
            other => panic!("unexpected: {other:?}"),
        }
    }
}

fn sent(actions: &[ProviderAction<u32>]) -> Option<Signed<UsageReceipt>> {
    actions.iter().find_map(|a| match a {
        ProviderAction::Send(receipt) => Some(receipt.clone()),
        _ => None,
    })
}

fn ended<T: std::fmt::Debug>(actions: &[ProviderAction<T>]) -> Option<CloseReason> {
    actions.iter().find_map(|a| match a {
        ProviderAction::Ended { reason, .. } => Some(*reason),
        _ => None,
    })
}

fn exec(session: SessionId, args: &str) -> Exec {
    Exec {
        session,
        exec: ExecId::random(),
        args_json: args.into(),
        offer: None,
        outputs: Vec::new(),
    }
}

fn tool() -> ToolName {
    ToolName::new("wc").unwrap()
}

/// A call of the session's own tool: its price, cap and an output cap of 64 bytes.
fn terms() -> CallTerms {
    CallTerms {
        tool: tool(),
        rate: CallRate {
            exec_per_minute: PRICING.exec_per_minute,
            cap: MeterConfig::call_cap_for(MAX_EXEC),
        },
        output_cap: 64,
    }
}

/// A call that ran for `wall` and printed `stdout`, as the sandbox reports it.
fn exit_of(exec: ExecId, wall: Millis, stdout: &[u8]) -> ExecExit {
    ExecExit {
        exec,
        outcome: ExecOutcome::Exited,
        exit_code: Some(0),
        wall,
        cpu: Millis(10),
        peak_memory_bytes: 0,
        stdout_bytes: stdout.len() as u64,
        stderr_bytes: 0,
        stdout_truncated: false,
        stderr_truncated: false,
    }
}

/// Runs one call through both machines up to its exit: the renter asks, the provider
/// starts it, the sandbox reports `exit` with `stdout` sent, and the provider signs the
/// result. Returns the batch the provider sends (output and exit, with the result), and
/// the receipt it sends at the exit, if it is not waiting for an ack already.
fn run_call(
    rig: &Rig,
    p: &mut P,
    r: &mut R,
    exit: impl FnOnce(ExecId) -> ExecExit,
    stdout: &[u8],
) -> (ExecEvents, Option<Signed<UsageReceipt>>) {
    run_call_keeping(rig, p, r, exit, stdout, Vec::new())
}

/// [`run_call`] of a call that named the paths of `artefacts` as its outputs, of which
/// the provider kept `artefacts`.
fn run_call_keeping(
    rig: &Rig,
    p: &mut P,
    r: &mut R,
    exit: impl FnOnce(ExecId) -> ExecExit,
    stdout: &[u8],
    artefacts: Vec<Artefact>,
) -> (ExecEvents, Option<Signed<UsageReceipt>>) {
    let call = Exec {
        outputs: artefacts.iter().map(|a| a.path.clone()).collect(),
        ..exec(rig.session, "{}")
    };
    r.start_exec(call.exec, terms(), &call.args_json, &call.outputs)
        .unwrap();
    let started = p.handle(ProviderInput::Exec {
        exec: call.clone(),
        terms: terms(),
        reply: 1,
    });
    assert!(code(&started).is_none(), "{started:?}");
    let exit = exit(call.exec);
    let output = [ContentHash::of(stdout), ContentHash::of(b"")];
    let ended = p.handle(ProviderInput::Exited {
        exit: exit.clone(),
        output,
        artefacts,
    });
    let receipt = sent(&ended);
    let result = ended.into_iter().find_map(|a| match a {
        ProviderAction::CallEnded { result, .. } => result,
        _ => None,
    });
    assert!(result.is_some(), "the provider signs every exit");
    let mut events = Vec::new();
    if !stdout.is_empty() {
        events.push(ExecEvent::Output(OutputChunk {
            exec: call.exec,
            stream: OutputStream::Stdout,
            offset: 0,
            data: stdout.to_vec(),
        }));
    }
    events.push(ExecEvent::Exit(exit));
    let batch = ExecEvents {
        session: rig.session,
        exec: call.exec,
        seq: 0,
        events,
        result,
    };
    (batch, receipt)
}

fn code(actions: &[ProviderAction<u32>]) -> Option<RpcErrorCode> {
    actions.iter().find_map(|a| match a {
        ProviderAction::Reply(_, SessionResponse::Error { code, .. }) => Some(*code),
        _ => None,
    })
}

mod closing;
mod receipts_and_calls;
mod renter_checks;
