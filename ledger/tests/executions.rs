//! Execution records on a real RocksDB ledger: written forward only, listed newest first
//! a page at a time with filters, kept across a reopen, and readable from a ledger an
//! older build wrote.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use orien_ledger::{
    ExecEnd, ExecFailure, ExecQuery, ExecRecord, ExecState, StateFilter, Store, StoreError,
    StoreOptions, StoredOutput,
};
use orien_protocol::{
    ContentHash, ExecExit, ExecId, ExecOutcome, ExecResult, Millis, NodeKey, SessionId, Signed,
    Timestamp, ToolName, Usdc,
};

fn tool(name: &str) -> ToolName {
    ToolName::new(name).unwrap()
}

fn requested(session: SessionId, name: &str, at: u64) -> ExecRecord {
    ExecRecord::requested(
        ExecId::random(),
        session,
        tool(name),
        format!("{{\"n\":{at}}}"),
        Timestamp(at),
    )
}

fn end(state: ExecState, stdout: &[u8]) -> ExecEnd {
    ExecEnd {
        state,
        exit_code: (state == ExecState::Completed).then_some(0),
        wall: Millis(12),
        cpu: Millis(4),
        peak_memory_bytes: 1 << 20,
        cost: Usdc::from_micros(33),
        stdout: StoredOutput::of(stdout, 4),
        stderr: StoredOutput::of(b"", 4),
        detail: None,
        result: Some(signed_result(stdout)),
    }
}

/// A provider's signed result of a call that printed `stdout`.
fn signed_result(stdout: &[u8]) -> Signed<ExecResult> {
    let result = ExecResult {
        session: SessionId::from_bytes([1; 16]),
        seq: 1,
        tool: tool("wc"),
        args: ContentHash::of(b"{}"),
        exit: ExecExit {
            exec: ExecId::from_bytes([2; 16]),
            outcome: ExecOutcome::Exited,
            exit_code: Some(0),
            wall: Millis(12),
            cpu: Millis(4),
            peak_memory_bytes: 1 << 20,
            stdout_bytes: stdout.len() as u64,
            stderr_bytes: 0,
            stdout_truncated: false,
            stderr_truncated: false,
        },
        stdout: ContentHash::of(stdout),
        stderr: ContentHash::of(b""),
        artefacts: Vec::new(),
    };
    NodeKey::from_secret_bytes([3; 32]).sign(&result).unwrap()
}

#[test]
fn a_record_moves_forward_durably_and_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger");
    let session = SessionId::random();
    let pending = requested(session, "wc", 100);
    let exec = pending.exec;
    {
        let store = Store::open(&path).unwrap();
        store.record_execution(&pending).unwrap();
        assert_eq!(
            store.execution(&exec).unwrap().unwrap().state,
            ExecState::Pending
        );
        let running = pending.clone().started(Timestamp(101)).unwrap();
        store.record_execution(&running).unwrap();
        let done = running
            .clone()
            .ended(end(ExecState::Completed, b"hello world"), Timestamp(150))
            .unwrap();
        store.record_execution(&done).unwrap();
        store.record_execution(&done).unwrap(); // the same write again is a no-op

        // Backwards, or another call under the same id, is refused and changes nothing.
        let err = store.record_execution(&running).unwrap_err();
        assert!(matches!(err, StoreError::InvalidExecution { .. }), "{err}");
        let mut other = pending.clone();
        other.args_json = "{}".into();
        assert!(store.record_execution(&other).is_err());
    }
    let store = Store::open(&path).unwrap();
    let kept = store.execution(&exec).unwrap().unwrap();
    assert_eq!(kept.state, ExecState::Completed);
    assert_eq!(
        (kept.requested_at, kept.started_at, kept.ended_at),
        (Timestamp(100), Some(Timestamp(101)), Some(Timestamp(150)))
    );
    let out = &kept.end.as_ref().unwrap().stdout;
    assert_eq!((out.kept.as_slice(), out.len), (&b"hell"[..], 11));
    assert!(out.truncated());
    assert_eq!(kept.end.unwrap().cost, Usdc::from_micros(33));
}

#[test]
fn records_list_newest_first_a_page_at_a_time_with_filters() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("ledger")).unwrap();
    let (a, b) = (SessionId::random(), SessionId::random());
    let mut written = Vec::new();
    for at in 0..25u64 {
        let (session, name) = if at % 5 == 0 {
            (b, "sha256")
        } else {
            (a, "wc")
        };
        let mut record = requested(session, name, 1_000 + at)
            .started(Timestamp(1_000 + at))
            .unwrap();
        if at % 3 == 0 {
            record = record.lost(Timestamp(2_000)).unwrap();
        } else if at % 7 == 0 {
            let timed_out = end(ExecState::Failed(ExecFailure::TimedOut), b"");
            record = record.ended(timed_out, Timestamp(2_000)).unwrap();
        }
        store.record_execution(&record).unwrap();
        written.push(record);
    }
    written.reverse(); // newest first

    // Every record once, in pages of 10.
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .executions(&ExecQuery {
                after,
                limit: 10,
                ..ExecQuery::default()
            })
            .unwrap();
        assert!(page.records.len() <= 10);
        seen.extend(page.records.iter().map(|r| r.exec));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, written.iter().map(|r| r.exec).collect::<Vec<_>>());

    // Filters narrow; they combine.
    let only_b = store
        .executions(&ExecQuery {
            session: Some(b),
            limit: 100,
            ..ExecQuery::default()
        })
        .unwrap();
    assert_eq!(only_b.records.len(), 5);
    assert!(
        only_b
            .records
            .iter()
            .all(|r| r.session == b && r.tool == tool("sha256"))
    );
    assert!(only_b.next.is_none());
    let lost_wc = store
        .executions(&ExecQuery {
            tool: Some(tool("wc")),
            state: Some(StateFilter::Exactly(ExecState::Failed(ExecFailure::Lost))),
            limit: 100,
            ..ExecQuery::default()
        })
        .unwrap();
    let expected = written
        .iter()
        .filter(|r| r.tool == tool("wc") && r.state == ExecState::Failed(ExecFailure::Lost))
        .count();
    assert_eq!(lost_wc.records.len(), expected);
    assert!(expected > 0);
    // Failed for any reason, and running: together every record.
    let count = |state| {
        store
            .executions(&ExecQuery {
                state: Some(state),
                limit: 100,
                ..ExecQuery::default()
            })
            .unwrap()
            .records
            .len()
    };
    let failed = written
        .iter()
        .filter(|r| matches!(r.state, ExecState::Failed(_)))
        .count();
    assert!(failed > expected, "timed-out records count as failed too");
    assert_eq!(count(StateFilter::AnyFailure), failed);
    assert_eq!(
        count(StateFilter::Exactly(ExecState::Running)),
        written.len() - failed
    );
    // A cursor this ledger never saw gives an empty page, not an error.
    let none = store
        .executions(&ExecQuery {
            after: Some(ExecId::random()),
            limit: 10,
            ..ExecQuery::default()
        })
        .unwrap();
    assert!(none.records.is_empty() && none.next.is_none());
}

#[test]
fn a_ledger_written_before_execution_records_opens_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger");
    Store::open(&path).unwrap(); // creates every family, the new one included
    // Drop the new family, as a ledger of an older build would lack it.
    {
        let mut opts = rocksdb::Options::default();
        opts.create_if_missing(false);
        let families = rocksdb::DB::list_cf(&opts, &path).unwrap();
        let mut db = rocksdb::DB::open_cf(&opts, &path, &families).unwrap();
        db.drop_cf("executions").unwrap();
    }
    let options = StoreOptions {
        read_only: true,
        ..StoreOptions::default()
    };
    let store = Store::open_with(&path, options).unwrap();
    assert!(store.execution(&ExecId::random()).unwrap().is_none());
    let page = store
        .executions(&ExecQuery {
            limit: 10,
            ..ExecQuery::default()
        })
        .unwrap();
    assert!(page.records.is_empty());
    drop(store);
    // A writable open creates it again.
    let store = Store::open(&path).unwrap();
    store
        .record_execution(&requested(SessionId::random(), "wc", 1))
        .unwrap();
}

#[test]
fn calls_left_unfinished_by_an_earlier_run_are_marked_lost_and_finished_ones_stay() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("ledger")).unwrap();
    let session = SessionId::random();
    let pending = requested(session, "wc", 10);
    let running = requested(session, "wc", 11).started(Timestamp(12)).unwrap();
    let done = requested(session, "wc", 13)
        .started(Timestamp(14))
        .unwrap()
        .ended(end(ExecState::Completed, b"ok"), Timestamp(15))
        .unwrap();
    // More unfinished records than a page holds, so the sweep pages.
    let many: Vec<ExecRecord> = (0..orien_ledger::store::MAX_EXEC_PAGE as u64 + 3)
        .map(|i| requested(session, "sh", 100 + i))
        .collect();
    for record in [&pending, &running, &done].into_iter().chain(&many) {
        store.record_execution(record).unwrap();
    }
    let marked = store.lose_unfinished_executions(Timestamp(500)).unwrap();
    assert_eq!(marked, 2 + many.len());
    for record in [&pending, &running].into_iter().chain(&many) {
        let kept = store.execution(&record.exec).unwrap().unwrap();
        assert_eq!(kept.state, ExecState::Failed(ExecFailure::Lost));
        assert_eq!(kept.ended_at, Some(Timestamp(500)));
        assert_eq!(
            kept.started_at, record.started_at,
            "the start stays as it was"
        );
    }
    assert_eq!(store.execution(&done.exec).unwrap().unwrap(), done);
    assert_eq!(store.lose_unfinished_executions(Timestamp(600)).unwrap(), 0);
}
