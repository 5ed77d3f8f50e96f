#![doc = include_str!("../README.md")]

pub mod accounts;
pub mod chain;
pub mod dispute;
pub mod executions;
pub mod fuzzing;
pub mod meter;
pub mod posting;
pub mod receipts;
pub mod record;
pub mod session;
pub mod settlement;
mod signatures;
pub mod store;

pub use accounts::{Account, Balance, LaneKey};
pub use dispute::{DisputeReason, Evidence, ResultFault};
pub use executions::{
    ExecEnd, ExecFailure, ExecPage, ExecQuery, ExecRecord, ExecState, OutputRecorder, StateFilter,
    StoredOutput,
};
pub use meter::{Meter, MeterConfig, Reading};
pub use posting::{Cause, Leg, Posting, Side};
pub use receipts::{AckedReceipt, CheckedReceipt, Countersigner, Issuer, VoucherRule};
pub use session::{SessionHead, SessionRecord, SessionStatus, SuspendReason};
pub use settlement::{
    AheadVoucher, LaneSettlement, Settlement, SettlementStatus, SkipKind, SkippedVoucher, TxHash,
    UnsettledVoucher,
};
pub use signatures::verify_batch;
pub use store::{Durability, Durable, Ingested, Store, StoreError, StoreOptions};
