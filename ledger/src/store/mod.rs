//! The ledger's RocksDB store.
//!
//! One database per node, with a column family per kind of record (see `keys`). An
//! acknowledged receipt, its posting and the balances it changes are written in **one**
//! `WriteBatch` with `sync = true`; only when that write returns may the ack be sent (by
//! the renter) or accepted (by the provider). Many concurrent [`Store::ingest`] calls
//! share one synced write (group commit), and each still returns only after its own
//! receipt is durable.

mod executions;
mod group;
mod ingest;
mod keys;
mod query;
mod resync;
mod settle;
mod verify;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use orien_protocol::{Clock, LaneId, SessionId, SystemClock};
use rocksdb::{ColumnFamily, ColumnFamilyDescriptor, DB, Options, WriteBatch, WriteOptions};
use tracing::{debug, info};

use crate::accounts::{Account, Balance};
use crate::dispute::{DisputeReason, Evidence};
use crate::record::{self, Record, RecordError};
use crate::session::{SessionHead, SessionRecord, SessionStatus};
use crate::settlement::{LaneSettlement, TxHash};

pub use executions::MAX_EXEC_PAGE;
pub use ingest::{Durable, Ingested, MAX_GROUP};
pub use query::{DayEarnings, SessionTotals};
pub use verify::{VerifyError, VerifyReport};

/// The schema version this build writes and reads. Version 2: receipts commit to the
/// session's signed results, and execution records keep them. Version 3: receipts carry
/// the execution amount, each call priced at its own tool's price. Version 4: execution
/// records keep `orien/exec-result/v2` results, which name the call's artefacts. Version
/// 5: receipts (`orien/receipt/v4`) carry the artefact amount, and sessions' prices the
/// artefact price.
pub const SCHEMA_VERSION: u32 = 5;

/// A store operation failed. Every variant says what to do next where there is a choice.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened.
    #[error("cannot open the ledger at {path}: {reason}")]
    Open {
        /// The data directory.
        path: PathBuf,
        /// RocksDB's explanation.
        reason: String,
    },
    /// The database was written by a newer orien-node.
    #[error(
        "the ledger at {path} has schema version {found}, but this orien-node reads only up to \
         version {supported}; upgrade orien-node (the data is untouched)"
    )]
    NewerSchema {
        /// The data directory.
        path: PathBuf,
        /// Version found on disk.
        found: u32,
        /// Newest version this build reads.
        supported: u32,
    },
    /// The database was written by an older orien-node whose receipts or results this
    /// build cannot read (they are signed in an older format, so they cannot be
    /// rewritten).
    #[error(
        "the ledger at {path} has schema version {found}, older than the version {supported} \
         this orien-node reads; its receipts or results are signed in an older format that \
         cannot be converted: settle its lanes with the orien-node that wrote it, then move \
         the directory aside (the data is untouched)"
    )]
    OlderSchema {
        /// The data directory.
        path: PathBuf,
        /// Version found on disk.
        found: u32,
        /// The version this build reads.
        supported: u32,
    },
    /// The disk holding the data directory is full. Nothing acknowledged was lost;
    /// free space and reopen the store.
    #[error("the disk holding the ledger at {path} is full ({detail}); free space and restart")]
    DiskFull {
        /// The data directory.
        path: PathBuf,
        /// RocksDB's message.
        detail: String,
    },
    /// Another I/O error from RocksDB.
    #[error("ledger I/O error during {op}: {detail}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// RocksDB's message.
        detail: String,
    },
    /// A stored record does not decode: the database is damaged or from another build.
    #[error("corrupt {cf} record at key {key}: {source}")]
    Corrupt {
        /// Column family.
        cf: &'static str,
        /// The key, hex.
        key: String,
        /// What is wrong.
        source: RecordError,
    },
    /// The store was opened read-only.
    #[error("the ledger was opened read-only")]
    ReadOnly,
    /// An execution record that cannot be written: it breaks its limits, or it would
    /// move the stored record backwards or change what it records.
    #[error("execution {exec} cannot be recorded: {detail}")]
    InvalidExecution {
        /// The execution.
        exec: orien_protocol::ExecId,
        /// What is wrong.
        detail: String,
    },
    /// The receipt's payload does not decode.
    #[error("malformed receipt: {0}")]
    Malformed(String),
    /// No session with this id was recorded.
    #[error("unknown session {0}")]
    UnknownSession(SessionId),
    /// The session's terms break a rule (see the detail).
    #[error("session {session} cannot be recorded: {detail}")]
    InvalidSession {
        /// The session.
        session: SessionId,
        /// What is wrong.
        detail: &'static str,
    },
    /// The session was already recorded with different terms.
    #[error("session {0} is already recorded with different terms")]
    SessionExists(SessionId),
    /// The session is closed; it takes no more receipts.
    #[error("session {0} is closed")]
    SessionClosed(SessionId),
    /// The receipt was refused; nothing was applied. For `Conflicting`, the refused
    /// receipt was durably kept as evidence.
    #[error("receipt #{seq} of session {session} refused: {reason}")]
    Refused {
        /// The session.
        session: SessionId,
        /// The receipt's sequence number.
        seq: u64,
        /// Why.
        reason: DisputeReason,
    },
    /// The ack does not acknowledge this receipt, or is not the renter's.
    #[error("ack of receipt #{seq} of session {session} is invalid: {detail}")]
    BadAck {
        /// The session.
        session: SessionId,
        /// The receipt's sequence number.
        seq: u64,
        /// What is wrong.
        detail: String,
    },
    /// No escrow lane with this id is known (no acked receipt used it).
    #[error("unknown escrow lane {0}")]
    UnknownLane(LaneId),
    /// A settlement contradicts the ledger (see the detail).
    #[error("settlement {tx} of lane {lane}: {detail}")]
    Settlement {
        /// The lane.
        lane: LaneId,
        /// The transaction.
        tx: TxHash,
        /// What is inconsistent.
        detail: String,
    },
    /// A record could not be encoded (a bug: stored types are bounded).
    #[error("cannot encode a record: {0}")]
    Encode(RecordError),
    /// Exporting failed while writing the output.
    #[error("export failed: {0}")]
    Export(String),
}

impl StoreError {
    fn rocks(op: &'static str, path: &Path, e: rocksdb::Error) -> Self {
        let detail = e.into_string();
        // RocksDB reports ENOSPC as an IOError whose message carries strerror's text.
        if detail.contains("No space left on device") || detail.contains("NoSpace") {
            Self::DiskFull {
                path: path.to_owned(),
                detail,
            }
        } else {
            Self::Io { op, detail }
        }
    }
}

/// How to open a store.
#[derive(Clone)]
pub struct StoreOptions {
    /// Source of the wall-clock timestamps written on records.
    pub clock: Arc<dyn Clock>,
    /// Open without writing anything (inspection, exports, recovery on a full disk).
    pub read_only: bool,
    /// What a returned commit survives.
    pub durability: Durability,
}

/// What a commit has survived once it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// The write-ahead log is synced to the disk before a commit returns: the commit
    /// survives a power loss. Every node runs with this.
    #[default]
    PowerLoss,
    /// The write-ahead log reaches the operating system, not the disk, before a commit
    /// returns: the commit survives the process being killed but not the machine losing
    /// power. Only for simulations whose crashes are process crashes.
    ProcessCrash,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            clock: Arc::new(SystemClock::new()),
            read_only: false,
            durability: Durability::default(),
        }
    }
}

impl std::fmt::Debug for StoreOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreOptions")
            .field("read_only", &self.read_only)
            .field("durability", &self.durability)
            .finish_non_exhaustive()
    }
}

/// State only the committing thread touches: caches of what is on disk, updated after
/// each successful write.
#[derive(Default)]
struct Writer {
    balances: FastMap<Account, Balance>,
    heads: FastMap<SessionId, SessionHead>,
    lanes: FastMap<LaneId, LaneSettlement>,
    /// Each lane's voucher above its total, once read (`None`: it has none).
    aheads: FastMap<LaneId, Option<orien_protocol::Voucher>>,
}

/// The maps on the commit path: hashed with foldhash (randomly seeded per map, so keys a
/// peer chooses cannot be aimed at one bucket) rather than SipHash, which dominated
/// the staging of a receipt.
type FastMap<K, V> = foldhash::HashMap<K, V>;

/// The ledger store. Cheap to share behind an `Arc`; every method takes `&self`.
pub struct Store {
    db: DB,
    path: PathBuf,
    clock: Arc<dyn Clock>,
    read_only: bool,
    durability: Durability,
    sessions: RwLock<HashMap<SessionId, Arc<SessionRecord>>>,
    queue: group::CommitQueue,
    writer: Mutex<Writer>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .field("read_only", &self.read_only)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating if needed) the ledger in directory `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(path, StoreOptions::default())
    }

    /// Opens the ledger with explicit options.
    pub fn open_with(path: impl AsRef<Path>, options: StoreOptions) -> Result<Self, StoreError> {
        let path = path.as_ref().to_owned();
        let open_err = |e: rocksdb::Error| StoreError::Open {
            path: path.clone(),
            reason: e.into_string(),
        };
        let mut db_opts = Options::default();
        db_opts.create_if_missing(!options.read_only);
        db_opts.create_missing_column_families(!options.read_only);
        db_opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
        // Small memtables: ledger records are small and a node holds few sessions at once.
        db_opts.set_write_buffer_size(8 << 20);
        db_opts.set_max_total_wal_size(64 << 20);
        db_opts.set_keep_log_file_num(4);
        // Opening reads each column family's table files on the calling thread. RocksDB's
        // default starts 15 more threads per column family for it (120 per open), which
        // cost more than a ledger's handful of table files take to read.
        db_opts.set_max_file_opening_threads(1);
        // Preallocating the write-ahead log keeps its size fixed so that each sync writes
        // no metadata; a store that never syncs gains nothing from it, and on a RAM
        // filesystem it costs a whole allocation each time a log starts.
        let db_opts = match options.durability {
            Durability::PowerLoss => db_opts,
            Durability::ProcessCrash => db_opts
                .get_options_from_string("allow_fallocate=false")
                .map_err(open_err)?,
        };
        let db = if options.read_only {
            // A ledger written by an older build may lack the newer families.
            let present = DB::list_cf(&db_opts, &path).map_err(open_err)?;
            let families = keys::ALL
                .into_iter()
                .filter(|name| present.iter().any(|p| p == name));
            DB::open_cf_for_read_only(&db_opts, &path, families, false).map_err(open_err)?
        } else {
            let cfs = keys::ALL.map(|name| ColumnFamilyDescriptor::new(name, cf_options()));
            DB::open_cf_descriptors(&db_opts, &path, cfs).map_err(open_err)?
        };
        let store = Self {
            db,
            path,
            clock: options.clock,
            read_only: options.read_only,
            durability: options.durability,
            sessions: RwLock::default(),
            queue: group::CommitQueue::default(),
            writer: Mutex::default(),
        };
        store.check_schema()?;
        info!(path = %store.path.display(), read_only = store.read_only, durability = ?store.durability, "ledger opened");
        Ok(store)
    }

    /// The data directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn check_schema(&self) -> Result<(), StoreError> {
        let found = self
            .db
            .get_cf(self.cf(keys::META), keys::SCHEMA_VERSION)
            .map_err(|e| StoreError::rocks("read schema version", &self.path, e))?;
        match found {
            Some(bytes) => {
                let bytes: [u8; 4] =
                    bytes
                        .as_slice()
                        .try_into()
                        .map_err(|_| StoreError::Corrupt {
                            cf: keys::META,
                            key: hex::encode(keys::SCHEMA_VERSION),
                            source: RecordError::Malformed {
                                kind: "schema version",
                                reason: format!("{} bytes, expected 4", bytes.len()),
                            },
                        })?;
                let found = u32::from_be_bytes(bytes);
                if found > SCHEMA_VERSION {
                    return Err(StoreError::NewerSchema {
                        path: self.path.clone(),
                        found,
                        supported: SCHEMA_VERSION,
                    });
                }
                if found < SCHEMA_VERSION {
                    return Err(StoreError::OlderSchema {
                        path: self.path.clone(),
                        found,
                        supported: SCHEMA_VERSION,
                    });
                }
                Ok(())
            }
            None if self.read_only => Ok(()),
            None => {
                let mut batch = WriteBatch::default();
                batch.put_cf(
                    self.cf(keys::META),
                    keys::SCHEMA_VERSION,
                    SCHEMA_VERSION.to_be_bytes(),
                );
                self.write(batch, "write schema version")
            }
        }
    }

    /// Records the terms of a new session. Idempotent for identical terms.
    pub fn open_session(&self, record: SessionRecord) -> Result<(), StoreError> {
        self.writable()?;
        let invalid = |detail| StoreError::InvalidSession {
            session: record.session,
            detail,
        };
        if record.budget.is_zero() {
            return Err(invalid("the budget is zero"));
        }
        if record.provider == record.renter {
            return Err(invalid("provider and renter are the same node"));
        }
        let writer = self.lock_writer();
        if let Some(existing) = self.session(&record.session)? {
            return if *existing == record {
                Ok(())
            } else {
                Err(StoreError::SessionExists(record.session))
            };
        }
        let mut batch = WriteBatch::default();
        batch.put_cf(
            self.cf(keys::SESSIONS),
            keys::session_terms(&record.session),
            record::encode(&record).map_err(StoreError::Encode)?,
        );
        batch.put_cf(
            self.cf(keys::SESSIONS),
            keys::session_head(&record.session),
            record::encode(&SessionHead::new()).map_err(StoreError::Encode)?,
        );
        self.write(batch, "record session")?;
        debug!(session = %record.session, "session recorded");
        drop(writer);
        self.sessions
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(record.session, Arc::new(record));
        Ok(())
    }

    /// The terms of a session, if recorded.
    pub fn session(&self, session: &SessionId) -> Result<Option<Arc<SessionRecord>>, StoreError> {
        if let Some(found) = self
            .sessions
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(session)
        {
            return Ok(Some(Arc::clone(found)));
        }
        let Some(record) =
            self.get::<SessionRecord>(keys::SESSIONS, &keys::session_terms(session))?
        else {
            return Ok(None);
        };
        let record = Arc::new(record);
        self.sessions
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(*session, Arc::clone(&record));
        Ok(Some(record))
    }

    /// The head of a session: its last acked receipt and status.
    pub fn head(&self, session: &SessionId) -> Result<Option<SessionHead>, StoreError> {
        self.get(keys::SESSIONS, &keys::session_head(session))
    }

    /// Changes a session's status (suspended, resumed, closed). A closed session stays
    /// closed.
    pub fn set_status(&self, session: &SessionId, status: SessionStatus) -> Result<(), StoreError> {
        self.writable()?;
        let mut writer = self.lock_writer();
        let mut head = self.cached_head(&mut writer, session)?;
        if let SessionStatus::Closed(_) = head.status {
            return if head.status == status {
                Ok(())
            } else {
                Err(StoreError::SessionClosed(*session))
            };
        }
        head.status = status;
        let mut batch = WriteBatch::default();
        batch.put_cf(
            self.cf(keys::SESSIONS),
            keys::session_head(session),
            record::encode(&head).map_err(StoreError::Encode)?,
        );
        self.write(batch, "update session status")?;
        writer.heads.insert(*session, head);
        Ok(())
    }

    /// Durably keeps a refused receipt as dispute evidence.
    pub fn record_evidence(&self, evidence: &Evidence) -> Result<(), StoreError> {
        self.writable()?;
        let seq = evidence.receipt.verify().map(|r| r.seq).unwrap_or(0);
        let mut batch = WriteBatch::default();
        batch.put_cf(
            self.cf(keys::EVIDENCE),
            keys::evidence(&evidence.session, seq, &evidence.receipt.content_hash()),
            record::encode(evidence).map_err(StoreError::Encode)?,
        );
        self.write(batch, "record evidence")
    }

    /// All evidence kept for a session.
    pub fn evidence(&self, session: &SessionId) -> Result<Vec<Evidence>, StoreError> {
        self.scan_prefix(keys::EVIDENCE, session.as_bytes())
            .map(|rows| rows.into_iter().map(|(_, v)| v).collect())
    }

    // ---- plumbing shared by the submodules ----

    fn cf(&self, name: &'static str) -> &ColumnFamily {
        // Every family in `keys::ALL` is created (or required) by `open_with`; only a
        // read-only open of an older ledger may lack one, and its readers ask
        // `has_family` first.
        #[allow(clippy::expect_used)]
        self.db
            .cf_handle(name)
            .expect("column family created at open")
    }

    fn writable(&self) -> Result<(), StoreError> {
        if self.read_only {
            Err(StoreError::ReadOnly)
        } else {
            Ok(())
        }
    }

    fn lock_writer(&self) -> MutexGuard<'_, Writer> {
        // A panic while committing is an invariant violation; the caches it may have
        // left half-updated are dropped so the next writer reloads them from disk.
        self.writer.lock().unwrap_or_else(|poisoned| {
            let mut guard = poisoned.into_inner();
            *guard = Writer::default();
            guard
        })
    }

    fn write(&self, batch: WriteBatch, op: &'static str) -> Result<(), StoreError> {
        let mut options = WriteOptions::default();
        options.set_sync(self.durability == Durability::PowerLoss);
        self.db
            .write_opt(batch, &options)
            .map_err(|e| StoreError::rocks(op, &self.path, e))
    }

    fn get<T: Record>(&self, cf: &'static str, key: &[u8]) -> Result<Option<T>, StoreError> {
        let bytes = self
            .db
            .get_pinned_cf(self.cf(cf), key)
            .map_err(|e| StoreError::rocks("read", &self.path, e))?;
        bytes
            .map(|b| {
                record::decode(&b).map_err(|source| StoreError::Corrupt {
                    cf,
                    key: hex::encode(key),
                    source,
                })
            })
            .transpose()
    }

    fn scan_prefix<T: Record>(
        &self,
        cf: &'static str,
        prefix: &[u8],
    ) -> Result<Vec<(Vec<u8>, T)>, StoreError> {
        let mut out = Vec::new();
        let mode = rocksdb::IteratorMode::From(prefix, rocksdb::Direction::Forward);
        for item in self.db.iterator_cf(self.cf(cf), mode) {
            let (key, value) = item.map_err(|e| StoreError::rocks("scan", &self.path, e))?;
            if !key.starts_with(prefix) {
                break;
            }
            let value = record::decode(&value).map_err(|source| StoreError::Corrupt {
                cf,
                key: hex::encode(&key),
                source,
            })?;
            out.push((key.into_vec(), value));
        }
        Ok(out)
    }

    fn cached_head(
        &self,
        writer: &mut Writer,
        session: &SessionId,
    ) -> Result<SessionHead, StoreError> {
        if let Some(head) = writer.heads.get(session) {
            return Ok(head.clone());
        }
        let head = self
            .head(session)?
            .ok_or(StoreError::UnknownSession(*session))?;
        writer.heads.insert(*session, head.clone());
        Ok(head)
    }

    fn cached_balance(
        &self,
        writer: &mut Writer,
        account: &Account,
    ) -> Result<Balance, StoreError> {
        if let Some(b) = writer.balances.get(account) {
            return Ok(*b);
        }
        let b = self
            .get::<Balance>(keys::BALANCES, &account.key())?
            .unwrap_or_default();
        writer.balances.insert(*account, b);
        Ok(b)
    }

    /// Stages a balanced posting outside the receipt path (settlements, lane gaps): its
    /// legs' new balances and the posting itself go into `batch`, every touched account
    /// re-asserted at or above its floor. Returns the balances, to cache once `batch` is
    /// written.
    fn stage_posting(
        &self,
        writer: &mut Writer,
        batch: &mut WriteBatch,
        posting: &crate::posting::Posting,
        overflow: impl Fn() -> StoreError,
    ) -> Result<Vec<(Account, Balance)>, StoreError> {
        posting.assert_balanced();
        let mut touched = Vec::with_capacity(posting.legs.len());
        for leg in &posting.legs {
            let mut b = self.cached_balance(writer, &leg.account)?;
            let total = match leg.side {
                crate::posting::Side::Debit => &mut b.debited,
                crate::posting::Side::Credit => &mut b.credited,
            };
            *total = total.checked_add(leg.amount).ok_or_else(&overflow)?;
            assert!(
                b.net(&leg.account) >= leg.account.floor_micros(),
                "{:?} would make {} negative: {b:?}",
                posting.cause,
                leg.account
            );
            batch.put_cf(
                self.cf(keys::BALANCES),
                leg.account.key(),
                record::encode(&b).map_err(StoreError::Encode)?,
            );
            touched.push((leg.account, b));
        }
        batch.put_cf(
            self.cf(keys::POSTINGS),
            keys::posting(&posting.cause),
            record::encode(posting).map_err(StoreError::Encode)?,
        );
        Ok(touched)
    }

    fn cached_lane(
        &self,
        writer: &mut Writer,
        lane: &LaneId,
    ) -> Result<Option<LaneSettlement>, StoreError> {
        if let Some(l) = writer.lanes.get(lane) {
            return Ok(Some(*l));
        }
        let found = self.get::<LaneSettlement>(keys::SETTLEMENT, &keys::lane(lane))?;
        if let Some(l) = found {
            writer.lanes.insert(*lane, l);
        }
        Ok(found)
    }

    fn cached_ahead(
        &self,
        writer: &mut Writer,
        lane: &LaneId,
    ) -> Result<Option<orien_protocol::Voucher>, StoreError> {
        if let Some(ahead) = writer.aheads.get(lane) {
            return Ok(*ahead);
        }
        let found = self
            .get::<crate::settlement::AheadVoucher>(keys::SETTLEMENT, &keys::ahead(lane))?
            .map(|a| a.voucher);
        writer.aheads.insert(*lane, found);
        Ok(found)
    }

    /// Provider: the largest voucher of `lane` above what this ledger acknowledged on it
    /// (see [`AheadVoucher`](crate::AheadVoucher)), if any.
    pub fn ahead_voucher(
        &self,
        lane: &LaneId,
    ) -> Result<Option<orien_protocol::Voucher>, StoreError> {
        let mut writer = self.lock_writer();
        self.cached_ahead(&mut writer, lane)
    }
}

fn cf_options() -> Options {
    let mut o = Options::default();
    o.set_compression_type(rocksdb::DBCompressionType::Lz4);
    o
}
