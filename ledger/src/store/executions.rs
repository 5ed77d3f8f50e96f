//! Execution records in the store: written synced, read by id, listed newest first.

use orien_protocol::{ExecId, Timestamp};
use rocksdb::{Direction, IteratorMode, WriteBatch};

use super::{Store, StoreError, keys};
use crate::executions::{ExecPage, ExecQuery, ExecRecord};
use crate::record;

/// Most records one page holds.
pub const MAX_EXEC_PAGE: usize = 500;

impl Store {
    /// Writes `record` durably (the call returns after the synced write). The first
    /// write of an execution creates it; later ones must be the same call, at least as
    /// far along ([`ExecRecord::may_replace`]); writing the stored record again is a
    /// no-op.
    pub fn record_execution(&self, record: &ExecRecord) -> Result<(), StoreError> {
        self.writable()?;
        let invalid = |detail: String| StoreError::InvalidExecution {
            exec: record.exec,
            detail,
        };
        record.check().map_err(invalid)?;
        // One writer at a time, so the check and the write see the same stored record.
        let _writer = self.lock_writer();
        if let Some(stored) = self.execution(&record.exec)? {
            if &stored == record {
                return Ok(());
            }
            if !record.may_replace(&stored) {
                return Err(invalid(format!(
                    "the stored record is {:?}; this one ({:?}) is not the same call moved forward",
                    stored.state, record.state
                )));
            }
        }
        let value = record::encode(record).map_err(StoreError::Encode)?;
        let mut batch = WriteBatch::default();
        let cf = self.cf(keys::EXECUTIONS);
        batch.put_cf(cf, keys::execution(&record.exec), value);
        batch.put_cf(
            cf,
            keys::execution_by_time(record.requested_at, &record.exec),
            [],
        );
        let unfinished = keys::unfinished_execution(&record.exec);
        if record.state.is_final() {
            batch.delete_cf(cf, unfinished);
        } else {
            batch.put_cf(cf, unfinished, []);
        }
        self.write(batch, "record execution")
    }

    /// The record of `exec`, if this node keeps one.
    pub fn execution(&self, exec: &ExecId) -> Result<Option<ExecRecord>, StoreError> {
        if !self.has_family(keys::EXECUTIONS) {
            return Ok(None);
        }
        self.get(keys::EXECUTIONS, &keys::execution(exec))
    }

    /// The records matching `query`, newest request first, one page at a time.
    pub fn executions(&self, query: &ExecQuery) -> Result<ExecPage, StoreError> {
        let limit = query.limit.clamp(1, MAX_EXEC_PAGE);
        let mut page = ExecPage {
            records: Vec::new(),
            next: None,
        };
        if !self.has_family(keys::EXECUTIONS) {
            return Ok(page);
        }
        // Start just below the cursor's own time-index key, or at the end of the index.
        let upper = match query.after {
            Some(after) => {
                let Some(cursor) = self.execution(&after)? else {
                    return Ok(page);
                };
                keys::execution_by_time(cursor.requested_at, &after).to_vec()
            }
            None => vec![2],
        };
        let mode = IteratorMode::From(&upper, Direction::Reverse);
        for item in self.db.iterator_cf(self.cf(keys::EXECUTIONS), mode) {
            let (key, _) = item.map_err(|e| StoreError::rocks("scan", &self.path, e))?;
            if key.as_ref() >= upper.as_slice() {
                continue;
            }
            let Some(exec) = keys::parse_execution_by_time(&key) else {
                break;
            };
            let record = self.execution(&exec)?.ok_or_else(|| StoreError::Corrupt {
                cf: keys::EXECUTIONS,
                key: hex::encode(&key),
                source: record::RecordError::Empty { kind: "execution" },
            })?;
            if !query.matches(&record) {
                continue;
            }
            if page.records.len() == limit {
                page.next = page.records.last().map(|r| r.exec);
                break;
            }
            page.records.push(record);
        }
        Ok(page)
    }

    /// Marks every record still pending or running as lost at `now`: called when the
    /// node starts, since no call of an earlier run can report its exit any more.
    /// Reads only the unfinished records' markers, never the whole history. Returns how
    /// many it marked.
    pub fn lose_unfinished_executions(&self, now: Timestamp) -> Result<usize, StoreError> {
        if !self.has_family(keys::EXECUTIONS) {
            return Ok(0);
        }
        let start = [3u8];
        let mode = IteratorMode::From(&start, Direction::Forward);
        let mut unfinished = Vec::new();
        for item in self.db.iterator_cf(self.cf(keys::EXECUTIONS), mode) {
            let (key, _) = item.map_err(|e| StoreError::rocks("scan", &self.path, e))?;
            match keys::parse_unfinished_execution(&key) {
                Some(exec) => unfinished.push(exec),
                None => break,
            }
        }
        let mut lost = 0;
        for exec in unfinished {
            let Some(record) = self.execution(&exec)? else {
                continue;
            };
            let record = record.lost(now).map_err(|e| StoreError::InvalidExecution {
                exec,
                detail: e.to_string(),
            })?;
            self.record_execution(&record)?;
            lost += 1;
        }
        Ok(lost)
    }

    fn has_family(&self, name: &str) -> bool {
        self.db.cf_handle(name).is_some()
    }
}
