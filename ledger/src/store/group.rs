//! Group commit plumbing for [`Store::ingest_many`]: the feed that hands groups of a
//! batch to verifier threads, and the key-ordered writes of one group.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use super::Store;
use super::ingest::MAX_GROUP;
use crate::receipts::AckedReceipt;

/// The groups of an [`Store::ingest_many`] batch, handed to verifier threads in order.
/// A verifier may run at most `window` groups ahead of the commits, which bounds the
/// verified groups waiting in memory however the threads are scheduled.
pub(super) struct Feed {
    state: Mutex<FeedState>,
    turn: Condvar,
    window: usize,
}

struct FeedState {
    rest: std::vec::IntoIter<AckedReceipt>,
    next: usize,
    committed: usize,
    closed: bool,
}

impl Feed {
    pub(super) fn new(batch: Vec<AckedReceipt>, verifiers: usize) -> Self {
        Self {
            state: Mutex::new(FeedState {
                rest: batch.into_iter(),
                next: 0,
                committed: 0,
                closed: false,
            }),
            turn: Condvar::new(),
            window: 2 * verifiers,
        }
    }

    fn lock(&self) -> MutexGuard<'_, FeedState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The next group and its index; `None` when the batch is exhausted or closed.
    pub(super) fn take(&self) -> Option<(usize, Vec<AckedReceipt>)> {
        let mut state = self.lock();
        while !state.closed && state.next >= state.committed + self.window {
            state = self
                .turn
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        if state.closed {
            return None;
        }
        let group: Vec<AckedReceipt> = state.rest.by_ref().take(MAX_GROUP).collect();
        if group.is_empty() {
            return None;
        }
        let index = state.next;
        state.next += 1;
        Some((index, group))
    }

    /// One more group committed: a waiting verifier may take another.
    pub(super) fn committed(&self) {
        self.lock().committed += 1;
        self.turn.notify_all();
    }

    pub(super) fn close_on_drop(&self) -> impl Drop + '_ {
        struct Close<'a>(&'a Feed);
        impl Drop for Close<'_> {
            fn drop(&mut self) {
                self.0.lock().closed = true;
                self.0.turn.notify_all();
            }
        }
        Close(self)
    }
}

/// The writes of one group, staged so they reach RocksDB in key order: the memtable's
/// skip list then inserts each key next to the previous one instead of searching from
/// its top (receipts of many sessions arrive interleaved).
#[derive(Default)]
pub(super) struct GroupWrites {
    puts: Vec<(&'static str, Vec<u8>, Vec<u8>)>,
    deletes: Vec<(&'static str, Vec<u8>)>,
}

impl GroupWrites {
    pub(super) fn put(&mut self, cf: &'static str, key: impl AsRef<[u8]>, value: Vec<u8>) {
        self.puts.push((cf, key.as_ref().to_vec(), value));
    }

    /// Deletes `key`; a key is either put or deleted in one group, never both.
    pub(super) fn delete(&mut self, cf: &'static str, key: impl AsRef<[u8]>) {
        self.deletes.push((cf, key.as_ref().to_vec()));
    }

    pub(super) fn is_empty(&self) -> bool {
        self.puts.is_empty() && self.deletes.is_empty()
    }

    /// The batch, sorted by column family and key. The sort is stable: were a key
    /// staged twice, the later value would still win.
    pub(super) fn into_batch(mut self, store: &Store) -> rocksdb::WriteBatch {
        self.puts
            .sort_by(|(cf_a, key_a, _), (cf_b, key_b, _)| (cf_a, key_a).cmp(&(cf_b, key_b)));
        let mut batch = rocksdb::WriteBatch::default();
        for (cf, key, value) in self.puts {
            batch.put_cf(store.cf(cf), key, value);
        }
        for (cf, key) in self.deletes {
            batch.delete_cf(store.cf(cf), key);
        }
        batch
    }
}
