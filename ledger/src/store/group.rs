//! Group commit plumbing: the queue of receipts waiting for a synced write and its one
//! committer at a time, the feed that hands groups of an [`Store::ingest_many`] batch to
//! verifier threads, and the key-ordered writes of one group.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{Thread, ThreadId};

use super::Store;
use super::ingest::{MAX_GROUP, Pending, Slot, decided, fail_undecided};
use crate::receipts::AckedReceipt;

/// Receipts waiting for a group commit. One caller at a time leads: it takes what is
/// queued, group by group, and commits each as one synced write, until its own items are
/// decided. The others sleep until their own items are decided, not until the writer is
/// free: a caller whose receipt went out in someone else's group is woken as soon as that
/// write returns, and only the callers of that group are woken. (Queued behind the writer
/// lock, 64 sessions committing at once each wrote the little that queued while the lock
/// passed from one to the next: groups of about one receipt, 0.09 × raw RocksDB; woken
/// all at once after each group, they spent their CPU waking.) What queues during one
/// synced write goes out in the next; a leader whose items are decided hands the lead to
/// the caller of the oldest item still queued, as RocksDB's write group does.
#[derive(Default)]
pub(super) struct CommitQueue {
    state: Mutex<QueueState>,
}

#[derive(Default)]
struct QueueState {
    /// Each item with the thread waiting for it.
    pending: VecDeque<(Pending, Thread)>,
    leading: bool,
    /// The caller the last leader handed the lead to, while it has not taken it.
    heir: Option<ThreadId>,
}

impl CommitQueue {
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `pending` behind what is there, for the calling thread to wait on.
    pub(super) fn push(&self, pending: Vec<Pending>) {
        let me = std::thread::current();
        let mut state = self.lock();
        state
            .pending
            .extend(pending.into_iter().map(|p| (p, me.clone())));
    }

    /// Sleeps until `mine` is decided (`None`) or the lead is free or handed to this
    /// thread, and then leads.
    pub(super) fn wait_or_lead(&self, mine: &Slot) -> Option<Leader<'_>> {
        let me = std::thread::current().id();
        loop {
            {
                let mut state = self.lock();
                if decided(mine) {
                    return None;
                }
                if state.heir == Some(me) {
                    state.heir = None;
                    return Some(Leader { queue: self });
                }
                if !state.leading {
                    state.leading = true;
                    return Some(Leader { queue: self });
                }
            }
            // A leader fills the slots of its group before it unparks their threads, and
            // an unpark that comes before this park makes it return at once: no wake-up
            // is lost. A spurious one only goes round the loop again.
            std::thread::park();
        }
    }
}

/// The one caller committing the queue. Dropping it (also while unwinding from a
/// panicking commit) hands the lead to the caller of the oldest item still queued.
pub(super) struct Leader<'a> {
    queue: &'a CommitQueue,
}

impl Leader<'_> {
    /// The next group, up to [`MAX_GROUP`] of the oldest queued items, and its callers
    /// to wake once it is decided (drop the [`Deciding`] after the commit).
    pub(super) fn take_group(&self) -> (Vec<Pending>, Deciding) {
        let mut state = self.queue.lock();
        let n = state.pending.len().min(MAX_GROUP);
        let me = std::thread::current().id();
        let mut deciding = Deciding::default();
        let items = state
            .pending
            .drain(..n)
            .map(|(item, waiter)| {
                deciding.slots.push(Slot::clone(item.slot()));
                if waiter.id() != me && !deciding.waiters.iter().any(|w| w.id() == waiter.id()) {
                    deciding.waiters.push(waiter);
                }
                item
            })
            .collect();
        (items, deciding)
    }
}

/// The callers of one group taken from the queue. Dropped once the group is committed,
/// it wakes them; dropped while unwinding from a commit that panicked, it first fails
/// every slot still undecided, so no caller sleeps for ever on a receipt no one holds.
#[derive(Default)]
pub(super) struct Deciding {
    slots: Vec<Slot>,
    waiters: Vec<Thread>,
}

impl Drop for Deciding {
    fn drop(&mut self) {
        for slot in &self.slots {
            fail_undecided(slot);
        }
        for waiter in self.waiters.drain(..) {
            waiter.unpark();
        }
    }
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        let mut state = self.queue.lock();
        match state.pending.front().map(|(_, waiter)| waiter.clone()) {
            Some(heir) => {
                // `leading` stays set: no newcomer takes the lead the heir was given.
                state.heir = Some(heir.id());
                heir.unpark();
            }
            None => state.leading = false,
        }
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    /// A commit that panics after taking a group still wakes the group's callers, each
    /// with an error: before, they slept for ever (found reading the change; the old
    /// writer-lock queue had them find an empty queue instead).
    #[test]
    fn a_group_whose_commit_panicked_fails_its_callers_and_wakes_them() {
        let slot = Slot::default();
        let waiting = Slot::clone(&slot);
        let waiter = std::thread::spawn(move || {
            while !decided(&waiting) {
                std::thread::park();
            }
            waiting.lock().unwrap().take()
        });
        let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _deciding = Deciding {
                slots: vec![Slot::clone(&slot)],
                waiters: vec![waiter.thread().clone()],
            };
            panic!("a commit fails an invariant");
        }));
        assert!(unwound.is_err());
        let outcome = waiter.join().unwrap();
        assert!(
            matches!(outcome, Some(Err(crate::StoreError::Io { .. }))),
            "{outcome:?}"
        );
    }
}
