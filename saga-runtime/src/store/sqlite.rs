//! The SQLite store: durable, embedded, one file, shared by any number of processes.
//!
//! Writes go to one writer thread per store, which takes every write queued at that moment and
//! commits them in one transaction (group commit): many concurrent sagas share each fsync, so
//! durable throughput grows with concurrency instead of being capped at one fsync per
//! transition. Reads use a second connection (WAL mode lets it read while the writer writes).
//! Other processes on the same file take SQLite's write lock in turn; every write is fenced by
//! the writer's lease (see the store module), so they never overwrite each other's sagas.
//!
//! - `schema`: the schema, its version and migrations; `options`: how a file is opened;
//! - `writer`: the writer thread and every request that writes; `rows` and `history`: what a
//!   write does to a saga's row and history;
//! - `checkpoint`: the thread that copies the log into the database file;
//! - `codec`: rows to records and back, SQLite errors to store errors;
//! - `reads`: records and history.

mod checkpoint;
mod codec;
mod history;
mod options;
mod reads;
mod rows;
mod schema;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use rusqlite::Connection;
use tokio::sync::oneshot;

use self::codec::{encode, Creating};
use self::writer::{Answer, Request};
use super::handoff::{Queue, Waiting};
use super::{
    Acquire, CorruptRecord, Created, Fence, Held, LeaseRequest, NewSaga, SagaQuery, SagaRecord,
    SagaStore, SagaSummary, StatusCount, StoreError, StoreErrorKind, StoreFuture, Write,
};
use crate::event::SagaEvent;
use crate::id::IdMap;
use crate::machine::SagaState;
use crate::{OperatorRequest, Refusal, SagaId, SagaShape};

use self::options::connect;
pub use self::options::SqliteOptions;
pub use self::schema::SCHEMA_VERSION;

/// How much a commit survives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Durability {
    /// Every acknowledged transition survives a crash of the process and of the machine
    /// (`synchronous = FULL`). The default.
    #[default]
    Full,
    /// Survives a crash of the process; the last transitions may be lost on power loss, never
    /// corrupting the file (`synchronous = NORMAL`).
    Normal,
    /// No fsync at all (`synchronous = OFF`): for tests and throwaway data.
    Off,
}

impl Durability {
    fn pragma(self) -> &'static str {
        match self {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
            Durability::Off => "OFF",
        }
    }
}

/// A durable store in one SQLite file.
pub struct SqliteStore {
    path: PathBuf,
    requests: Arc<Queue<Request>>,
    waiting: Waiting,
    reader: Arc<Mutex<Connection>>,
    read_only: bool,
    /// The state this store last wrote for each saga this process runs, at its version: a write
    /// that starts from that version is folded on the caller's thread, and the writer thread,
    /// which every process's writes queue for, only writes. A write from any other version is
    /// folded by the writer from the stored state.
    states: Mutex<IdMap<(u64, SagaState)>>,
    /// The writer thread, joined when the store is dropped so that the file is closed then.
    writer: Option<std::thread::JoinHandle<()>>,
    /// Stopped once the writer is (fields drop after `drop`).
    _checkpointer: Option<checkpoint::Checkpointer>,
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        // Closing the queue ends the writer's loop once it has answered what it holds.
        self.requests.close();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` with full durability.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(path, Durability::Full)
    }

    /// Opens (creating if needed) the database at `path`.
    pub fn open_with(path: impl AsRef<Path>, durability: Durability) -> Result<Self, StoreError> {
        Self::options(path).durability(durability).open()
    }

    /// Options for opening the database at `path`, starting from the defaults: full
    /// durability, and a 30 s wait for another process's write lock.
    pub fn options(path: impl AsRef<Path>) -> SqliteOptions {
        SqliteOptions {
            path: path.as_ref().to_owned(),
            durability: Durability::Full,
            busy_timeout: Duration::from_secs(30),
            read_only: false,
        }
    }

    fn open_options(options: SqliteOptions) -> Result<Self, StoreError> {
        let path = options.path.clone();
        if options.read_only {
            if !path.exists() {
                return Err(StoreError::new(
                    StoreErrorKind::NotFound,
                    format!("{}: no such file", path.display()),
                ));
            }
            let reader = connect(&options)?;
            // No writer thread: every write request finds the queue closed.
            return Ok(SqliteStore {
                path,
                requests: Arc::new(Queue::closed()),
                waiting: Waiting::default(),
                reader: Arc::new(Mutex::new(reader)),
                read_only: true,
                states: Mutex::default(),
                writer: None,
                _checkpointer: None,
            });
        }
        let mut writer = connect(&options)?;
        schema::migrate(&mut writer).map_err(|error| {
            StoreError::new(error.kind(), format!("{}: {error}", path.display()))
        })?;
        // The page cache stays SQLite's default (2 MB): a commit whose inserts rebalanced a
        // b-tree (most, with many sagas at once) scans the whole cache's hash table at its end
        // (SQLite's balance moves a page through a temporary number past the file's end, and
        // the cache then drops every page past the end by a full scan), which with 64 MB cost
        // more than re-reading pages saves.
        let checkpointer = checkpoint::install(&mut writer, connect(&options)?)?;
        let reader = connect(&options)?;
        let requests = Arc::new(Queue::new());
        let queue = Arc::clone(&requests);
        let writer = std::thread::Builder::new()
            .name("saga-sqlite-writer".into())
            .spawn(move || writer::write_loop(writer, queue))
            .map_err(|e| StoreError::new(StoreErrorKind::Unavailable, e.to_string()))?;
        Ok(SqliteStore {
            path,
            requests,
            waiting: Waiting::default(),
            reader: Arc::new(Mutex::new(reader)),
            read_only: false,
            states: Mutex::default(),
            writer: Some(writer),
            _checkpointer: Some(checkpointer),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn send<T: Send + 'static>(
        &self,
        request: Request,
        reply: oneshot::Receiver<Answer<T>>,
    ) -> StoreFuture<'_, T> {
        // Counted from before the request is sent until the future is done or dropped.
        let waiter = self.waiting.enter();
        // A request the queue refuses is dropped here.
        let sent = self.requests.push(request).map_err(drop);
        let read_only = self.read_only;
        let stopped = move || match read_only {
            true => StoreError::new(StoreErrorKind::Unavailable, "the store is open read-only"),
            false => StoreError::new(
                StoreErrorKind::Unavailable,
                "the SQLite writer thread has stopped",
            ),
        };
        StoreFuture::new(async move {
            sent.map_err(|()| stopped())?;
            let Answer { result, spent } = waiter.answer(reply).await.ok_or_else(stopped)?;
            // Freed here, by the thread that allocated it (see `Answer`).
            drop(spent);
            result
        })
    }

    /// Keeps the state a write left, for the next write. A saga whose run stopped without a
    /// last write (its lease was lost) leaves its entry behind: past a bound, all are forgotten,
    /// which only costs the next writes a fold on the writer thread.
    fn remember(&self, id: SagaId, version: u64, state: SagaState) {
        const KEPT: usize = 65_536;
        let mut states = self.states();
        if states.len() >= KEPT {
            states.clear();
        }
        states.insert(id, (version, state));
    }

    fn states(&self) -> std::sync::MutexGuard<'_, IdMap<(u64, SagaState)>> {
        // A panic while it was held left it whole: every change is one map operation.
        self.states.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> StoreFuture<'_, T> {
        let reader = self.reader.clone();
        StoreFuture::new(async move {
            tokio::task::spawn_blocking(move || {
                f(&reader.lock().unwrap_or_else(|e| e.into_inner()))
            })
            .await
            .map_err(|e| StoreError::new(StoreErrorKind::Unavailable, e.to_string()))?
        })
    }
}

/// A request's answer channel, and the future awaiting it.
fn channel<T>() -> (oneshot::Sender<T>, oneshot::Receiver<T>) {
    oneshot::channel()
}

fn failed<'a, T: Send + 'a>(error: StoreError) -> StoreFuture<'a, T> {
    StoreFuture::ready(Err(error))
}

impl SagaStore for SqliteStore {
    fn create<'a>(&'a self, saga: NewSaga, writes: &mut Vec<Write>) -> StoreFuture<'a, Created> {
        // Encoded first: the writes leave the vector whatever happens next.
        let (id, mut state) = (saga.id, saga.initial_state());
        let creating = match Creating::new(saga, writes, &mut state) {
            Ok(creating) => Box::new(creating),
            Err(error) => return failed(error),
        };
        let (reply, receiver) = channel();
        let created = self.send(Request::Create(creating, reply), receiver);
        StoreFuture::new(async move {
            let created = created.await?;
            if let Created::New { version, .. } = &created {
                if !state.status.is_terminal() {
                    self.remember(id, *version, state);
                }
            }
            Ok(created)
        })
    }

    fn write<'a>(
        &'a self,
        id: SagaId,
        fence: Fence,
        writes: &mut Vec<Write>,
    ) -> StoreFuture<'a, u64> {
        let encoded = match encode(None, writes) {
            Ok(encoded) => encoded,
            Err(error) => return failed(error),
        };
        // Taken out while the write is under way; put back only once it is recorded.
        let known = self
            .states()
            .remove(&id)
            .filter(|(v, _)| *v == fence.version);
        let (folded, state) = match known {
            Some((_, mut state)) => match codec::fold(&mut state, &encoded.writes) {
                Ok(folded) => (Some(Box::new(folded)), Some(state)),
                Err(error) => return failed(error),
            },
            None => (None, None),
        };
        let (reply, receiver) = channel();
        let written = self.send(Request::Write(id, fence, encoded, folded, reply), receiver);
        StoreFuture::new(async move {
            let version = written.await?;
            if let Some(state) = state.filter(|s| !s.status.is_terminal()) {
                self.remember(id, version, state);
            }
            Ok(version)
        })
    }

    fn acquire(&self, request: Acquire) -> StoreFuture<'_, Vec<Result<SagaRecord, CorruptRecord>>> {
        let (reply, receiver) = channel();
        let acquired = self.send(Request::Acquire(Box::new(request), reply), receiver);
        StoreFuture::new(async move {
            let records = acquired.await?;
            // Taking a saga over changes its state (its count of takeovers) but not its version:
            // a state kept from before, at the same version, would undo that.
            let mut states = self.states();
            for record in records.iter().flatten() {
                states.remove(&record.id);
            }
            Ok(records)
        })
    }

    fn renew(&self, owner: &str, ids: &[SagaId], duration: Duration) -> StoreFuture<'_, Vec<Held>> {
        let (reply, receiver) = channel();
        let request = Request::Renew(owner.to_owned(), ids.to_vec(), duration, reply);
        self.send(request, receiver)
    }

    fn release(
        &self,
        id: SagaId,
        fence: Fence,
        wake_at: Option<SystemTime>,
    ) -> StoreFuture<'_, ()> {
        // A saga let go is not this process's to write until it acquires it again (which reads
        // its state anew): a waiting saga keeps no state here.
        self.states().remove(&id);
        let (reply, receiver) = channel();
        self.send(Request::Release(id, fence, wake_at, reply), receiver)
    }

    fn next_wake(&self, types: Option<Vec<String>>) -> StoreFuture<'_, Option<SystemTime>> {
        self.read(move |conn| reads::next_wake(conn, types.as_deref()))
    }

    fn request(
        &self,
        id: SagaId,
        request: OperatorRequest,
        lease: Option<LeaseRequest>,
    ) -> StoreFuture<'_, Result<SagaRecord, Refusal>> {
        let (reply, receiver) = channel();
        let requested = self.send(Request::Operator(id, request, lease, reply), receiver);
        StoreFuture::new(async move {
            let answer = requested.await?;
            // A reopened saga's state changed under a version a kept state may still have.
            self.states().remove(&id);
            Ok(answer)
        })
    }

    fn load(&self, id: SagaId) -> StoreFuture<'_, Option<SagaRecord>> {
        self.read(move |conn| {
            reads::load_record(conn, &id.to_string())?
                .transpose()
                .map_err(|corrupt| {
                    codec::unreadable(format!("saga {}: {}", corrupt.id, corrupt.message))
                })
        })
    }

    fn history(
        &self,
        id: SagaId,
        from: u64,
        limit: usize,
    ) -> StoreFuture<'_, Option<Vec<SagaEvent>>> {
        self.read(move |conn| reads::history(conn, id, from, limit))
    }

    fn list(&self, query: SagaQuery) -> StoreFuture<'_, Vec<SagaSummary>> {
        self.read(move |conn| reads::list(conn, &query))
    }

    fn counts(&self) -> StoreFuture<'_, Vec<StatusCount>> {
        self.read(reads::counts)
    }

    fn record_type(&self, shape: SagaShape) -> StoreFuture<'_, ()> {
        let json = match serde_json::to_string(&shape) {
            Ok(json) => json,
            Err(error) => {
                let message = format!("cannot encode the shape of `{}`: {error}", shape.name);
                return failed(StoreError::new(StoreErrorKind::Corrupt, message));
            }
        };
        let (reply, receiver) = channel();
        let request = Request::RecordType(shape.name.clone(), shape.fingerprint(), json, reply);
        self.send(request, receiver)
    }

    fn saga_types(&self) -> StoreFuture<'_, Vec<SagaShape>> {
        self.read(reads::saga_types)
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::sync::Arc;
    use std::time::SystemTime;

    use rusqlite::params;

    use super::schema::HISTORY_POSITION_BITS;
    use super::*;
    use crate::event::SagaEventKind;
    use crate::machine::Change;
    use crate::store::StoredContext;
    use crate::SagaStatus;

    pub(super) fn event(id: SagaId, kind: SagaEventKind) -> SagaEvent {
        SagaEvent {
            saga_id: id,
            saga_type: Cow::Borrowed("OrderSaga"),
            at: SystemTime::now(),
            kind,
        }
    }

    fn intent(id: SagaId) -> Write {
        attempt(id, 1)
    }

    /// The start of attempt `attempt` of the first step.
    pub(super) fn attempt(id: SagaId, attempt: u32) -> Write {
        let kind = SagaEventKind::StepStarted {
            step: "reserve".into(),
            phase: crate::step::Phase::Action,
            attempt,
        };
        let change = Change::AttemptStarted {
            step: 0,
            phase: crate::step::Phase::Action,
            attempt,
        };
        Write::new(event(id, kind), change).with_status(Some(SagaStatus::Running { step: 0 }))
    }

    pub(super) fn new_saga(id: SagaId) -> NewSaga {
        let started = event(id, SagaEventKind::SagaStarted { steps: Vec::new() });
        let mut saga = NewSaga::new(
            id,
            "OrderSaga",
            vec!["reserve", "charge"],
            StoredContext::live(Arc::new(7u32)),
            started,
        );
        saga.lease = Some(LeaseRequest::new("w#1", Duration::from_secs(60)));
        saga
    }

    pub(super) async fn create(store: &SqliteStore, id: SagaId) -> Fence {
        match store.create(new_saga(id), &mut Vec::new()).await.unwrap() {
            Created::New { version, lease } => Fence {
                token: lease.unwrap().token,
                version,
            },
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_bad_request_fails_alone_and_the_others_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("s.db")).unwrap();
        let (a, b, missing) = (SagaId::new(), SagaId::new(), SagaId::new());
        let (fa, fb) = (create(&store, a).await, create(&store, b).await);
        // Queued before any is awaited, so that the writer usually takes them as one batch.
        let writes = [(a, fa), (missing, fa), (b, fb)]
            .map(|(id, fence)| store.write(id, fence, &mut vec![intent(id)]));
        let [first, bad, last]: [_; 3] = futures_util::future::join_all(writes)
            .await
            .try_into()
            .unwrap();
        assert!(first.is_ok() && last.is_ok(), "{first:?} {last:?}");
        let bad = bad.unwrap_err();
        assert_eq!(bad.kind(), StoreErrorKind::NotFound);
        assert_eq!(bad.to_string(), format!("no saga with id {missing}"));
        for id in [a, b] {
            let history = store.history(id, 0, 100).await.unwrap().unwrap();
            assert_eq!(history.len(), 2);
        }
    }

    #[tokio::test]
    async fn a_database_locked_too_long_is_a_busy_error_and_the_store_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let store = SqliteStore::options(&path)
            .busy_timeout(Duration::from_millis(50))
            .open()
            .unwrap();
        let id = SagaId::new();
        let fence = create(&store, id).await;
        let other = Connection::open(&path).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        let error = store
            .write(id, fence, &mut vec![intent(id)])
            .await
            .unwrap_err();
        assert_eq!(error.kind(), StoreErrorKind::Busy);
        assert_eq!(
            error.to_string(),
            "could not begin a transaction: database is locked"
        );
        other.execute_batch("ROLLBACK").unwrap();
        store.write(id, fence, &mut vec![intent(id)]).await.unwrap();
        let history = store.history(id, 0, 100).await.unwrap().unwrap();
        assert_eq!(history.len(), 2, "the refused write left nothing");
    }

    #[tokio::test]
    async fn a_full_history_is_a_clear_error_and_the_write_is_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let store = SqliteStore::open(&path).unwrap();
        let id = SagaId::new();
        let mut fence = create(&store, id).await;
        fence.version = 1 << HISTORY_POSITION_BITS;
        Connection::open(&path)
            .unwrap()
            .execute(
                "UPDATE sagas SET events = ?1 WHERE id = ?2",
                params![fence.version as i64, id.to_string()],
            )
            .unwrap();
        let error = store
            .write(id, fence, &mut vec![intent(id)])
            .await
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("saga {id} has 16777216 history entries, the most one saga can keep")
        );
        let record = store.load(id).await.unwrap().unwrap();
        assert_eq!(
            record.state.status,
            SagaStatus::Pending,
            "the write was undone"
        );
    }

    #[tokio::test]
    async fn a_takeover_counted_by_acquire_is_not_undone_by_a_state_kept_from_before() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("s.db")).unwrap();
        let id = SagaId::new();
        let mut saga = new_saga(id);
        saga.lease = Some(LeaseRequest::new("w#1", Duration::from_millis(1)));
        // The creator keeps the state its first writes left (at version 2).
        store.create(saga, &mut vec![intent(id)]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let request = Acquire::new(LeaseRequest::new("w#2", Duration::from_secs(60)), 10);
        let record = store.acquire(request).await.unwrap().remove(0).unwrap();
        assert_eq!(record.state.recovery_attempts, 1, "a takeover");
        let fence = record.fence().unwrap();
        assert_eq!(fence.version, 2, "the version did not move");
        let resumed = event(
            id,
            SagaEventKind::SagaResumed {
                recovery_attempt: 1,
            },
        );
        let mut writes = vec![Write::new(resumed, Change::None)];
        store.write(id, fence, &mut writes).await.unwrap();
        let record = store.load(id).await.unwrap().unwrap();
        assert_eq!(record.state.recovery_attempts, 1, "still counted");
    }
}
