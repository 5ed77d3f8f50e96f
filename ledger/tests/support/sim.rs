//! A whole session between a provider and a renter, each with its own meter, receipt
//! logic and on-disk store, driven by a manual clock. No network: messages are handed
//! over directly, which is exactly what the transport-free receipt logic is for.
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::time::Duration;

use orien_ledger::meter::{Meter, MeterConfig, Reading};
use orien_ledger::receipts::{Countersigner, Issuer, Refusal, Tolerance};
use orien_ledger::{SessionStatus, Store, StoreOptions};
use orien_protocol::{
    Artefact, ArtefactKept, Clock as _, ContentHash, ExecExit, ExecId, ExecOutcome, ManualClock,
    Millis, NodeKey, PaymentLane, Pricing, SessionId, Timestamp, ToolName, Usdc,
};

use super::chain::session_record;

pub struct Side {
    pub store: Store,
    pub dir: tempfile::TempDir,
}

impl Side {
    fn new(clock: &ManualClock) -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self {
            store: open(dir.path(), clock),
            dir,
        }
    }

    /// Closes and reopens the database, as after a process crash.
    pub fn crash(&mut self, clock: &ManualClock) {
        let placeholder = tempfile::tempdir().unwrap();
        let old = std::mem::replace(&mut self.store, open(placeholder.path(), clock));
        drop(old);
        self.store = open(self.dir.path(), clock);
    }
}

fn open(path: &std::path::Path, clock: &ManualClock) -> Store {
    Store::open_with(
        path,
        StoreOptions {
            clock: Arc::new(clock.clone()),
            ..StoreOptions::default()
        },
    )
    .unwrap()
}

pub struct Sim {
    pub clock: ManualClock,
    pub session: SessionId,
    pub provider_meter: Meter,
    pub renter_meter: Meter,
    pub issuer: Issuer,
    pub countersigner: Countersigner,
    pub provider: Side,
    pub renter: Side,
    pub refusals: Vec<Refusal>,
}

impl Sim {
    pub fn new(pricing: Pricing, budget: Usdc, tolerance: Tolerance) -> Self {
        let clock = ManualClock::new(Timestamp(1_763_856_000_000));
        let parties = super::chain::parties();
        let session = SessionId::random();
        let record = orien_ledger::SessionRecord {
            pricing,
            ..session_record(session, &parties, PaymentLane::Ledger, budget)
        };
        let (provider, renter) = (Side::new(&clock), Side::new(&clock));
        provider.store.open_session(record.clone()).unwrap();
        renter.store.open_session(record).unwrap();
        let config = MeterConfig::new(pricing, budget);
        let arc = || -> Arc<dyn orien_protocol::Clock> { Arc::new(clock.clone()) };
        Self {
            provider_meter: Meter::start(config, arc()),
            renter_meter: Meter::start(config, arc()),
            issuer: Issuer::new(
                clone_key(&parties.provider),
                session,
                parties.renter.node_id(),
                Millis(10_000),
                arc(),
            ),
            countersigner: Countersigner::new(
                clone_key(&parties.renter),
                session,
                parties.provider.node_id(),
                pricing,
                budget,
                tolerance,
            ),
            clock,
            session,
            provider,
            renter,
            refusals: Vec::new(),
        }
    }

    pub fn advance(&self, ms: u64) {
        self.clock.advance(Duration::from_millis(ms));
    }

    /// One call of `ms` with `cpu` ms of CPU, seen identically by both meters.
    pub fn exec(&mut self, ms: u64, cpu: u64) -> bool {
        let timer = self.provider_meter.start_exec();
        let renter_timer = self.renter_meter.start_exec();
        self.advance(ms);
        let reading = self.provider_meter.finish_exec(timer, Millis(cpu));
        let _ = self.renter_meter.finish_exec(renter_timer, Millis(0));
        self.exchange(reading, false)
    }

    /// The interval receipt, if due.
    pub fn poll(&mut self) -> bool {
        match self.provider_meter.poll() {
            Some(reading) => {
                let _ = self.renter_meter.poll();
                self.exchange(reading, false)
            }
            None => true,
        }
    }

    /// A call that kept `kept` bytes of artefacts: the provider signs its result, the
    /// renter takes it, and both meters charge for the artefacts from then on. The
    /// provider prices them at `provider_price` (honestly: the session's price).
    pub fn deliver_result(&mut self, kept: u64, provider_price: Usdc) {
        let exit = ExecExit {
            exec: ExecId::random(),
            outcome: ExecOutcome::Exited,
            exit_code: Some(0),
            wall: Millis(10),
            cpu: Millis(1),
            peak_memory_bytes: 0,
            stdout_bytes: 0,
            stderr_bytes: 0,
            stdout_truncated: false,
            stderr_truncated: false,
        };
        let artefacts = vec![Artefact {
            path: "out/render.exr".into(),
            kept: ArtefactKept::File {
                size: kept,
                sha256: ContentHash::of(b"render"),
            },
        }];
        let none = ContentHash::of(b"");
        let signed = self
            .issuer
            .sign_result(
                ToolName::new("render").unwrap(),
                ContentHash::of(b"{}"),
                exit,
                [none, none],
                artefacts,
            )
            .unwrap();
        let (signed, result) = signed.into_parts();
        assert_eq!(result.kept_bytes(), kept);
        let provider_cost = Pricing {
            artefact_per_gib: provider_price,
            ..Pricing::default()
        }
        .artefact_amount(kept);
        self.issuer
            .result_delivered(result.seq, signed.result_hash(), provider_cost)
            .unwrap();
        self.provider_meter
            .charge_artefacts(self.issuer.artefacts_delivered());
        self.countersigner
            .hold_result(result.seq, signed.result_hash(), kept)
            .unwrap();
        self.renter_meter
            .charge_artefacts(self.countersigner.artefacts_held());
    }

    pub fn close(&mut self) -> bool {
        let reading = self.provider_meter.close();
        let _ = self.renter_meter.close();
        self.exchange(reading, false)
    }

    /// Issue → check → renter commits → (renter crash?) → ack → provider commits.
    /// `false` if the renter refused.
    pub fn exchange(&mut self, reading: Reading, renter_crashes_before_ack: bool) -> bool {
        let receipt = self.issuer.issue(&reading).unwrap();
        let own = self.renter_meter.current();
        let pending = match self
            .countersigner
            .check(&receipt, &own, self.clock.wall(), Usdc::ZERO)
        {
            Ok(orien_ledger::receipts::Checked::New(p)) => p,
            Ok(orien_ledger::receipts::Checked::Again(_)) => unreachable!("receipts are new"),
            Err(refusal) => {
                self.renter
                    .store
                    .record_evidence(&refusal.evidence)
                    .unwrap();
                let reason = self.countersigner.suspension().cloned().unwrap();
                self.renter
                    .store
                    .set_status(&self.session, SessionStatus::Suspended(reason))
                    .unwrap();
                self.renter_meter.suspend();
                self.refusals.push(refusal);
                return false;
            }
        };
        let mut durable = self.renter.store.ingest(pending.acked().clone()).unwrap();
        if renter_crashes_before_ack {
            self.renter.crash(&self.clock);
            durable = self.renter.store.ingest(pending.acked().clone()).unwrap();
            assert!(!durable.newly_applied());
        }
        let ack = self.countersigner.release(pending, &durable);
        let acked = self.issuer.on_ack(&ack).unwrap();
        let durable = self.provider.store.ingest(acked.clone()).unwrap();
        self.issuer.committed(acked, &durable);
        if reading.budget_reached {
            self.provider
                .store
                .set_status(
                    &self.session,
                    SessionStatus::Suspended(orien_ledger::SuspendReason::BudgetReached),
                )
                .unwrap();
        }
        true
    }
}

fn clone_key(key: &NodeKey) -> NodeKey {
    NodeKey::from_secret_bytes(key.secret_bytes())
}
