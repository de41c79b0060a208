//! Where sagas are recorded: the [`SagaStore`] trait (the store contract), its in-memory and
//! SQLite implementations.
//!
//! # The contract
//!
//! - **Writes.** The executor describes each transition as a [`Write`]: the event (appended to
//!   the saga's history), what changes in its [`SagaState`] (folded in with
//!   [`SagaState::apply`], the same function in every store), the new status and, when a step
//!   committed, the new context. It hands the store the writes of several transitions at once
//!   (everything since the last time user code was about to run), and a store applies them
//!   atomically, in order: a step's completion and the next step's intent share one commit, and
//!   the intent is always durable before the step runs.
//! - **Fencing.** Every write carries a [`Fence`]: the writer's lease token and the version it
//!   expects. A write whose token is not the saga's current one is refused with
//!   [`StoreErrorKind::Fenced`], one at another version with [`StoreErrorKind::Conflict`], and
//!   any write to a terminal saga with [`StoreErrorKind::Conflict`]: a terminal status never
//!   changes, in the store itself. A refused write changes nothing.
//! - **Leases.** A worker holds a saga through a [`Lease`]: taken when the saga is created
//!   ([`NewSaga::lease`]) or acquired ([`SagaStore::acquire`]: sagas no live lease holds),
//!   renewed while the worker works ([`SagaStore::renew`]), dropped when the saga ends or the
//!   worker lets it go ([`SagaStore::release`]). The token grows with every new owner.
//! - **Reads.** [`SagaStore::load`] and a paged [`SagaStore::history`] for the saga's own
//!   clients; [`SagaStore::list`] (filters and paging) and [`SagaStore::counts`] for operators
//!   and tools.
//!
//! The in-memory store keeps contexts as live values; the SQLite store serializes them.

pub mod conformance;
mod context;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod encoding;
mod future;
#[cfg(feature = "sqlite")]
mod handoff;
mod memory;
#[cfg(feature = "postgres")]
mod postgres;
mod query;
#[cfg(feature = "sqlite")]
mod sqlite;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub use crate::machine::{
    Activity, Admission, Change, CompensationFailed, CompletedStep, Failure, Requested,
    RetryScheduled, SagaState, StepFailed, Write,
};
pub use context::StoredContext;
pub use future::StoreFuture;
pub use memory::MemoryStore;
#[cfg(feature = "postgres")]
pub use postgres::{PostgresOptions, PostgresStore, POSTGRES_SCHEMA_VERSION};
pub use query::{SagaQuery, SagaSummary, StatusCount};
#[cfg(feature = "sqlite")]
pub use sqlite::{Durability, SqliteOptions, SqliteStore, SCHEMA_VERSION};

use crate::event::SagaEvent;
use crate::{SagaId, SagaShape};

/// What kind of failure a [`StoreError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StoreErrorKind {
    /// The write expected another version of the saga, or would change a terminal saga.
    Conflict,
    /// The writer's lease token is not the saga's current one: another worker took it over.
    Fenced,
    /// The store is locked by another writer for longer than it waits.
    Busy,
    /// No saga with this id.
    NotFound,
    /// Stored data does not decode, or the database is not one this library can use.
    Corrupt,
    /// The store cannot be reached or used (a closed writer, an I/O error, a read-only file).
    Unavailable,
    /// The request itself is invalid (a context that does not serialize, a full history).
    Invalid,
}

/// A store failed: its kind, a message naming what failed, and its source.
///
/// ```
/// use saga_runtime::store::{StoreError, StoreErrorKind};
///
/// let error = StoreError::new(StoreErrorKind::Busy, "database is locked");
/// assert_eq!(error.kind(), StoreErrorKind::Busy);
/// assert_eq!(error.to_string(), "database is locked");
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct StoreError {
    kind: StoreErrorKind,
    message: String,
    #[source]
    source: Option<Arc<dyn std::error::Error + Send + Sync + 'static>>,
}

impl StoreError {
    /// A store error of `kind` with a message.
    pub fn new(kind: StoreErrorKind, message: impl Into<String>) -> Self {
        StoreError {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// The same error, keeping `source` as its cause.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Arc::new(source));
        self
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> StoreErrorKind {
        self.kind
    }

    /// A write by a worker that no longer holds the saga.
    pub fn is_fenced(&self) -> bool {
        self.kind == StoreErrorKind::Fenced
    }

    pub(crate) fn not_found(id: SagaId) -> Self {
        StoreError::new(StoreErrorKind::NotFound, format!("no saga with id {id}"))
    }

    pub(crate) fn fenced(id: SagaId, token: u64, current: Option<u64>) -> Self {
        let holder = match current {
            Some(current) => format!("token {current}"),
            None => "no lease".to_owned(),
        };
        StoreError::new(
            StoreErrorKind::Fenced,
            format!(
                "saga {id}: the write's lease token {token} is stale (the saga now has {holder}): \
                 another worker took it over"
            ),
        )
    }

    pub(crate) fn terminal(id: SagaId, status: &str) -> Self {
        StoreError::new(
            StoreErrorKind::Conflict,
            format!("saga {id} is {status}: a terminal saga never changes"),
        )
    }

    pub(crate) fn version(id: SagaId, expected: u64, actual: u64) -> Self {
        StoreError::new(
            StoreErrorKind::Conflict,
            format!("saga {id} is at version {actual}, the write expected version {expected}"),
        )
    }
}

/// Checks a write's fence against a saga's lease token, status and version: the rule every store
/// applies before it changes anything.
pub(crate) fn check_fence(
    id: SagaId,
    fence: Fence,
    token: Option<u64>,
    status: &crate::SagaStatus<usize>,
    version: u64,
) -> Result<(), StoreError> {
    // A terminal saga first: whoever writes, it never changes (and holds no lease).
    if status.is_terminal() {
        return Err(StoreError::terminal(id, status.name()));
    }
    if token != Some(fence.token) {
        return Err(StoreError::fenced(id, fence.token, token));
    }
    if version != fence.version {
        return Err(StoreError::version(id, fence.version, version));
    }
    Ok(())
}

/// A stored saga whose fields do not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CorruptRecord {
    /// Its id, as stored.
    pub id: String,
    /// Its saga type, as stored.
    pub saga_type: String,
    /// What does not decode.
    pub message: String,
    /// The lease [`SagaStore::acquire`] took on it, so that it can be parked.
    pub fence: Option<Fence>,
}

/// A worker's hold on a saga: who, until when, and the fencing token, which grows with every new
/// owner.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Lease {
    /// The worker holding it.
    pub owner: Arc<str>,
    /// The fencing token: every write of the holder carries it, and a write with an older token
    /// is refused.
    pub token: u64,
    /// When it expires unless renewed; past it any worker may take the saga over.
    pub expires_at: SystemTime,
}

/// What a write is conditional on: the writer's fencing token and the version (the number of
/// history entries) it last saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Fence {
    /// The lease's token.
    pub token: u64,
    /// The saga's version the writer expects.
    pub version: u64,
}

/// A lease to take: who, and for how long.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LeaseRequest {
    /// The worker.
    pub owner: Arc<str>,
    /// How long the lease lasts unless renewed.
    pub duration: Duration,
}

impl LeaseRequest {
    /// A lease for `owner` lasting `duration`.
    pub fn new(owner: impl Into<Arc<str>>, duration: Duration) -> Self {
        LeaseRequest {
            owner: owner.into(),
            duration,
        }
    }
}

/// What [`SagaStore::acquire`] looks for: sagas that are not terminal and that no live lease
/// holds (never leased, released, or whose lease expired), of the given types, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Acquire {
    /// The lease to take on each.
    pub lease: LeaseRequest,
    /// At most this many.
    pub limit: usize,
    /// Only sagas of these types (`None`: any type).
    pub types: Option<Vec<String>>,
    /// Also sagas this owner holds, lease expired or not: a restarted worker taking back what its
    /// previous incarnation held (the owner name must then be unique among live workers).
    pub reclaim_own: bool,
    /// Only this saga, due or not (its wake time is waived): a worker that holds what the saga
    /// waits for (a participant's reply) takes it before its wake time.
    pub only: Option<SagaId>,
}

impl Acquire {
    /// Up to `limit` sagas of any type for `lease`.
    pub fn new(lease: LeaseRequest, limit: usize) -> Self {
        Acquire {
            lease,
            limit,
            types: None,
            reclaim_own: false,
            only: None,
        }
    }

    /// Only saga `id`, whether or not its wake time has come (still only if no live lease
    /// holds it).
    pub fn only(mut self, id: SagaId) -> Self {
        self.only = Some(id);
        self
    }

    /// Only sagas of these types.
    pub fn types(mut self, types: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.types = Some(types.into_iter().map(Into::into).collect());
        self
    }

    /// Also take back what this owner holds.
    pub fn reclaim_own(mut self, reclaim: bool) -> Self {
        self.reclaim_own = reclaim;
        self
    }
}

/// A new saga to record.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NewSaga {
    /// Its id.
    pub id: SagaId,
    /// The saga type's name.
    pub saga_type: &'static str,
    /// The step names of the definition it starts under.
    pub steps: Vec<&'static str>,
    /// The initial context.
    pub context: StoredContext,
    /// An idempotency key: a second saga with the same key is not created.
    pub idempotency_key: Option<String>,
    /// When the whole saga must be done by (wall-clock time, so that it holds across a
    /// restart).
    pub deadline: Option<SystemTime>,
    /// The "saga started" event, the first of its history.
    pub started: SagaEvent,
    /// The lease its creator takes on it, in the same commit (token 1).
    pub lease: Option<LeaseRequest>,
    /// The position of its definition's pivot step, kept in its state (see
    /// [`SagaState::pivot`]).
    pub pivot: Option<usize>,
    /// Its definition's parallel groups, kept in its state (see [`SagaState::groups`]).
    pub groups: Vec<std::ops::Range<usize>>,
}

impl NewSaga {
    /// A saga to record, with no first writes and no lease.
    pub fn new(
        id: SagaId,
        saga_type: &'static str,
        steps: Vec<&'static str>,
        context: StoredContext,
        started: SagaEvent,
    ) -> Self {
        NewSaga {
            id,
            saga_type,
            steps,
            context,
            idempotency_key: None,
            deadline: None,
            started,
            lease: None,
            pivot: None,
            groups: Vec::new(),
        }
    }

    /// The state it starts in.
    pub fn initial_state(&self) -> SagaState {
        SagaState::new(self.deadline)
            .with_pivot(self.pivot)
            .with_groups(self.groups.clone())
    }
}

/// Whether [`SagaStore::create`] created the saga or found it already there.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Created {
    /// Recorded now: its version, and the lease its creator holds.
    New {
        /// The number of history entries written.
        version: u64,
        /// The creator's lease, when one was asked for.
        lease: Option<Lease>,
    },
    /// A saga with the same id or idempotency key exists; here it is.
    Existing(Box<SagaRecord>),
}

/// Everything a store keeps about one saga, but its history.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SagaRecord {
    /// Its id.
    pub id: SagaId,
    /// The saga type's name.
    pub saga_type: String,
    /// The step names it was started with.
    pub steps: Vec<String>,
    /// Its state: status, completed steps, activities, rollback.
    pub state: SagaState,
    /// The last committed context.
    pub context: StoredContext,
    /// Its idempotency key.
    pub idempotency_key: Option<String>,
    /// Its version: the number of entries in its history.
    pub version: u64,
    /// The lease on it, if a worker holds (or held, and it expired) one.
    pub lease: Option<Lease>,
    /// An operator asked to cancel it (see [`SagaStore::request`]); the worker holding it acts on
    /// it at its next step boundary.
    pub cancel_requested: bool,
    /// When it was recorded.
    pub created_at: SystemTime,
    /// When it last changed.
    pub updated_at: SystemTime,
}

impl SagaRecord {
    /// The fence of its lease holder at its current version.
    pub fn fence(&self) -> Option<Fence> {
        self.lease.as_ref().map(|lease| Fence {
            token: lease.token,
            version: self.version,
        })
    }
}

/// A saga a worker still holds after renewing its leases (see [`SagaStore::renew`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Held {
    /// The saga.
    pub id: SagaId,
    /// The token of the worker's lease on it.
    pub token: u64,
    /// An operator asked to cancel it: the worker acts on it at its next step boundary.
    pub cancel_requested: bool,
}

impl Held {
    /// Saga `id`, held under `token`.
    pub fn new(id: SagaId, token: u64, cancel_requested: bool) -> Self {
        Held {
            id,
            token,
            cancel_requested,
        }
    }
}

/// One saga's line to its store, for its run's writes (see [`SagaStore::slot`]).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use std::borrow::Cow;
/// use std::time::{Duration, SystemTime};
///
/// use saga_runtime::store::{
///     Change, Created, Fence, LeaseRequest, MemoryStore, NewSaga, SagaStore, StoredContext,
///     Write,
/// };
/// use saga_runtime::{SagaEvent, SagaEventKind, SagaId, SagaStatus};
///
/// let store = MemoryStore::new();
/// let id = SagaId::new();
/// let event = |kind| SagaEvent {
///     saga_id: id,
///     saga_type: Cow::Borrowed("Order"),
///     at: SystemTime::now(),
///     kind,
/// };
/// let started = event(SagaEventKind::SagaStarted { steps: Vec::new() });
/// let context = StoredContext::json(&b"{}"[..]);
/// let mut saga = NewSaga::new(id, "Order", vec!["reserve"], context, started);
/// saga.lease = Some(LeaseRequest::new("worker#1", Duration::from_secs(60)));
/// let Created::New { version, lease } = store.create(saga, &mut Vec::new()).await.unwrap() else {
///     unreachable!("a new id")
/// };
///
/// let slot = store.slot(id).expect("the in-memory store hands out slots");
/// let ended = event(SagaEventKind::SagaCompleted { duration: Duration::ZERO });
/// let write = Write::new(ended, Change::None).with_status(Some(SagaStatus::Completed));
/// let fence = Fence { token: lease.unwrap().token, version };
/// assert_eq!(slot.write(fence, &mut vec![write]).await.unwrap(), 2);
/// let record = store.load(id).await.unwrap().unwrap();
/// assert_eq!(record.state.status, SagaStatus::Completed);
/// # }
/// ```
pub trait SagaSlot: Send + Sync {
    /// Records the transitions in `writes` for this saga exactly as [`SagaStore::write`] would:
    /// in order and atomically, if `fence` holds, taking them out of the vector; returns the
    /// saga's new version.
    fn write(&self, fence: Fence, writes: &mut Vec<Write>) -> StoreFuture<'_, u64>;
}

/// Where sagas are recorded: the store contract (see the module docs).
///
/// Implementations apply each request atomically; a request that is refused changes nothing.
pub trait SagaStore: Send + Sync + 'static {
    /// Records a new saga with its first transitions and its creator's lease, atomically, or
    /// returns the existing one with the same id or idempotency key (and records nothing).
    ///
    /// `writes` are recorded with the saga, in the same commit, applied in order as
    /// [`SagaStore::write`] would (the executor records the first step's intent this way:
    /// starting a saga then costs no commit of its own). They are taken out of the vector
    /// (which is left empty, for reuse) whether or not they were recorded.
    fn create<'a>(&'a self, saga: NewSaga, writes: &mut Vec<Write>) -> StoreFuture<'a, Created>;

    /// Records the transitions in `writes`, in order and atomically, if `fence` holds (see
    /// [`Fence`]); returns the saga's new version. Takes the writes out of the vector (which is
    /// left empty, for reuse) whether or not they were recorded. A write that makes the saga
    /// terminal also ends its lease.
    fn write<'a>(
        &'a self,
        id: SagaId,
        fence: Fence,
        writes: &mut Vec<Write>,
    ) -> StoreFuture<'a, u64>;

    /// A line to saga `id` for its run's writes, when this store reaches one saga more cheaply
    /// through a handle than by finding it among the others at each write: the in-memory store
    /// hands out the saga's own record, locked on its own, so that a transition takes neither
    /// the store's lock nor a lookup. The executor asks once, after the saga is created, and then
    /// writes through the slot instead of [`SagaStore::write`] (with the same fence and the same
    /// rules). The default, `None`, keeps every write on [`SagaStore::write`]; a store that wraps
    /// another (to count or fail its writes, say) keeps the default, or its writes would bypass it.
    ///
    /// ```
    /// use saga_runtime::store::{MemoryStore, SagaStore};
    /// use saga_runtime::SagaId;
    ///
    /// // Nothing to write to for a saga the store does not have.
    /// assert!(MemoryStore::new().slot(SagaId::new()).is_none());
    /// ```
    fn slot(&self, id: SagaId) -> Option<Arc<dyn SagaSlot>> {
        let _ = id;
        None
    }

    /// Leases up to `request.limit` sagas that are not terminal, that no live lease holds and
    /// that are due (no wake time, or one that has passed: see [`SagaStore::release`]; with
    /// [`Acquire::only`], that one saga, due or not), oldest
    /// first, each with a new token, and returns them (`reclaim_own` takes back this owner's
    /// sagas, due or not). A saga taken from another
    /// holder (its lease expired, or `reclaim_own`) counts one more recovery attempt in its
    /// state. A record that does not decode comes back as [`CorruptRecord`] (leased too, so that
    /// it can be parked), so that one bad record stops nothing else.
    fn acquire(&self, request: Acquire) -> StoreFuture<'_, Vec<Result<SagaRecord, CorruptRecord>>>;

    /// Extends to `duration` from now the leases `owner` holds on those of `ids` that are not
    /// terminal (the sagas it is working on: a lease whose run ended without a last write is left
    /// to expire); returns the sagas it still holds, with their tokens and whether an operator
    /// asked to cancel them.
    fn renew(&self, owner: &str, ids: &[SagaId], duration: Duration) -> StoreFuture<'_, Vec<Held>>;

    /// Gives up the lease `fence` names (refused as a write would be). With no `wake_at` any
    /// worker may acquire the saga at once; with one, not before then (a durable timer: the saga
    /// waits without a worker holding it, and any worker fires it).
    fn release(&self, id: SagaId, fence: Fence, wake_at: Option<SystemTime>)
        -> StoreFuture<'_, ()>;

    /// The earliest wake time after now among sagas of these types (`None`: any type) that no
    /// live lease holds: when a worker next has a durable timer to fire.
    fn next_wake(&self, types: Option<Vec<String>>) -> StoreFuture<'_, Option<SystemTime>>;

    /// An operator's request on saga `id` (see [`crate::OperatorRequest`]), checked and applied
    /// atomically through [`SagaState::admit`] (with the request's time taken by the store):
    ///
    /// - a cancellation marks the saga ([`SagaRecord::cancel_requested`]) without a history
    ///   entry (the worker records what it does about it); a saga no live lease holds becomes due
    ///   at once;
    /// - a reopening records its write without a fence, then leases the saga to `lease` with a
    ///   new token when one is given (the caller runs it), or leaves it unheld and due at once
    ///   (any worker acquires it).
    ///
    /// Returns the record as it is after the request, or the refusal ([`StoreErrorKind::NotFound`]
    /// for an unknown id).
    fn request(
        &self,
        id: SagaId,
        request: crate::OperatorRequest,
        lease: Option<LeaseRequest>,
    ) -> StoreFuture<'_, Result<SagaRecord, crate::Refusal>>;

    /// Reads a saga's record.
    fn load(&self, id: SagaId) -> StoreFuture<'_, Option<SagaRecord>>;

    /// Reads up to `limit` entries of a saga's history, oldest first, from entry `from` (0 is
    /// "saga started").
    fn history(
        &self,
        id: SagaId,
        from: u64,
        limit: usize,
    ) -> StoreFuture<'_, Option<Vec<SagaEvent>>>;

    /// Lists the sagas `query` selects: the query side for operators and tools.
    fn list(&self, query: SagaQuery) -> StoreFuture<'_, Vec<SagaSummary>>;

    /// Counts sagas by type and status, ordered by type then status.
    fn counts(&self) -> StoreFuture<'_, Vec<StatusCount>>;

    /// Records the shape of a saga type, what tools draw without the code that defines it
    /// (`saga graph`): once per distinct shape, a shape already recorded (same name and
    /// [`SagaShape::fingerprint`]) being left as it is. Engines on a shared store call it the
    /// first time they start or enqueue a saga of a type. The default records nothing.
    fn record_type(&self, shape: SagaShape) -> StoreFuture<'_, ()> {
        let _ = shape;
        StoreFuture::ready(Ok(()))
    }

    /// Every saga type shape recorded ([`SagaStore::record_type`]), ordered by name, the most
    /// recently recorded first within a name. The default: none.
    fn saga_types(&self) -> StoreFuture<'_, Vec<SagaShape>> {
        StoreFuture::ready(Ok(Vec::new()))
    }

    /// Whether other processes may share this store (so that leases must be renewed and can
    /// expire). The in-memory store is private to its process.
    fn shared(&self) -> bool {
        true
    }

    /// Whether this store writes what it keeps (a step's output, the context) in an encoding:
    /// the engine then writes each output's JSON when its step completes, so that one serde
    /// cannot write fails the step rather than the store's write. The in-memory store keeps
    /// values as they are.
    fn encodes(&self) -> bool {
        true
    }

    /// Hints that sagas may have become due through another process (created for a worker to
    /// run, let go, cancelled or reopened while no worker held them), so that a worker claims
    /// them at once rather than at its next look: each change of the value is one hint. `None`
    /// (the default): the store gives none, and workers look every renewal interval.
    fn wakes(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }
}
