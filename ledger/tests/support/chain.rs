//! Deterministic dual-signed receipt chains for tests, the crash writer and the benchmark.
//! Shared by path (`#[path]`), not a public API of the crate.
#![allow(dead_code, unreachable_pub)]

use orien_ledger::{AckedReceipt, SessionHead, SessionRecord};
use orien_protocol::{
    EvmAddress, EvmSignature, LaneId, Millis, NodeKey, PaymentLane, Pricing, ReceiptAck,
    ReceiptHash, SessionId, Timestamp, UsageReceipt, Usdc, Voucher,
};

/// The two keys of every generated session.
pub struct Parties {
    pub provider: NodeKey,
    pub renter: NodeKey,
}

pub fn parties() -> Parties {
    Parties {
        provider: NodeKey::from_secret_bytes([0x50; 32]),
        renter: NodeKey::from_secret_bytes([0x52; 32]),
    }
}

/// 1 µUSDC per millisecond of session time.
pub const PRICING: Pricing = Pricing {
    session_per_minute: Usdc::from_micros(60_000),
    exec_per_minute: Usdc::from_micros(0),
    artefact_per_gib: Usdc::ZERO,
};

pub fn escrow(lane: LaneId) -> PaymentLane {
    PaymentLane::Escrow {
        chain_id: 31_337,
        contract: EvmAddress::from_bytes([0xec; 20]),
        lane,
        renter_wallet: EvmAddress::from_bytes([0xaa; 20]),
    }
}

pub fn session_record(
    session: SessionId,
    parties: &Parties,
    payment: PaymentLane,
    budget: Usdc,
) -> SessionRecord {
    SessionRecord {
        session,
        provider: parties.provider.node_id(),
        renter: parties.renter.node_id(),
        payment,
        pricing: PRICING,
        budget,
        opened_at: Timestamp(1_700_000_000_000),
    }
}

/// Builds the next receipts of one session. Vouchers name `lane_base` (what the lane
/// acknowledged before this session, 0 by default) plus the session's amount.
pub struct ChainBuilder {
    pub session: SessionId,
    pub escrow: Option<LaneId>,
    pub seq: u64,
    pub prev: ReceiptHash,
    pub amount: u64,
    pub lane_base: u64,
}

impl ChainBuilder {
    pub fn new(session: SessionId, escrow: Option<LaneId>) -> Self {
        Self {
            session,
            escrow,
            seq: 0,
            prev: ReceiptHash::GENESIS,
            amount: 0,
            lane_base: 0,
        }
    }

    /// Continues after the last committed receipt.
    pub fn resume(session: SessionId, escrow: Option<LaneId>, head: &SessionHead) -> Self {
        Self {
            session,
            escrow,
            seq: head.seq,
            prev: head.hash,
            amount: head.amount.micros(),
            lane_base: 0,
        }
    }

    /// The next receipt, `step` µUSDC (= ms) after the previous one, signed by both.
    pub fn next(&mut self, parties: &Parties, step: u64) -> AckedReceipt {
        self.seq += 1;
        self.amount += step;
        let receipt = UsageReceipt {
            session: self.session,
            seq: self.seq,
            session_time: Millis(self.amount),
            exec_time: Millis(self.amount / 2),
            cpu_time: Millis(self.amount / 4),
            exec_amount: Usdc::from_micros(self.amount / 2),
            amount: Usdc::from_micros(self.amount),
            prev: self.prev,
            issued_at: Timestamp(1_700_000_000_000 + self.amount),
            results: orien_protocol::ResultsCommitment::NONE,
            artefact_amount: Usdc::ZERO,
        };
        let receipt = parties.provider.sign(&receipt).expect("receipt encodes");
        let hash = receipt.receipt_hash();
        self.prev = hash;
        let voucher = self.escrow.map(|lane| Voucher {
            lane,
            cumulative: Usdc::from_micros(self.lane_base + self.amount),
            signature: EvmSignature([0x1b; 65]),
        });
        let ack = ReceiptAck {
            session: self.session,
            seq: self.seq,
            receipt: hash,
            voucher,
        };
        let ack = parties.renter.sign(&ack).expect("ack encodes");
        AckedReceipt { receipt, ack }
    }
}

/// xorshift64*: deterministic randomness from a seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// A receipt step that often lands on the interesting 1 µUSDC-onto-a-multiple-of-100 case.
    pub fn step(&mut self, amount: u64) -> u64 {
        match self.below(4) {
            0 => 100 - amount % 100,
            1 if amount % 100 == 99 => 1,
            1 => 99 - amount % 100 + 100,
            _ => 1 + self.below(5_000),
        }
    }
}
