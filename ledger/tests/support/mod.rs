//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub)]

pub mod chain;
pub mod sim;

use std::sync::Arc;

use orien_ledger::{Store, StoreOptions};
use orien_protocol::{ManualClock, Timestamp};

/// A store in a fresh temporary directory (removed on drop) with a manual clock.
pub struct TempStore {
    pub store: Store,
    pub clock: ManualClock,
    pub dir: tempfile::TempDir,
}

pub fn temp_store() -> TempStore {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp(1_763_856_000_000)); // 2025-11-23T00:00Z
    let store = open(dir.path(), &clock);
    TempStore { store, clock, dir }
}

pub fn open(path: &std::path::Path, clock: &ManualClock) -> Store {
    Store::open_with(
        path,
        StoreOptions {
            clock: Arc::new(clock.clone()),
            ..StoreOptions::default()
        },
    )
    .unwrap()
}

/// The same store closed and opened again (its caches rebuilt from disk).
pub fn reopen(t: TempStore) -> TempStore {
    let TempStore { store, clock, dir } = t;
    drop(store);
    let store = open(dir.path(), &clock);
    TempStore { store, clock, dir }
}
