//! Where sagas are recorded: the [`SagaStore`] trait and its in-memory implementation.
//!
//! The executor describes each transition as a [`Write`]: the event (appended to the saga's
//! history), the new status, and, when a step committed, the new context. It hands the store the
//! writes of several transitions at once (everything since the last time user code was about to
//! run), and a store applies them atomically, in order. So a step's completion and the next
//! step's intent share one commit, and the intent is always durable before the step runs.
//!
//! The in-memory store keeps contexts as live values; the SQLite store serializes them.

mod context;
mod handoff;
mod memory;
mod sqlite;

use std::future::Future;
use std::pin::Pin;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

pub use context::StoredContext;
pub use memory::MemoryStore;
pub use sqlite::{Durability, SqliteOptions, SqliteStore, SCHEMA_VERSION};

use crate::event::SagaEvent;
use crate::outcome::RollbackCause;
use crate::{SagaId, SagaStatus};

/// The future a store method returns.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// A store failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct StoreError {
    message: String,
}

impl StoreError {
    /// A store error with a message.
    pub fn new(message: impl Into<String>) -> Self {
        StoreError {
            message: message.into(),
        }
    }
}

/// A step that completed, as the record keeps it for rollback and recovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CompletedStep {
    /// The step's position.
    pub step: usize,
    /// `true` when the step's fallback completed in its place (its compensation is then the
    /// fallback's).
    pub via_fallback: bool,
    /// `true` once its compensation succeeded.
    pub compensated: bool,
    /// `true` when the step did not complete but timed out for good and asked to be compensated
    /// anyway (`compensate_on_timeout`); such an entry is not progress.
    #[serde(default)]
    pub timed_out: bool,
}

/// Applies a progress change to a list of completed steps.
pub(crate) fn apply_progress(completed: &mut Vec<CompletedStep>, progress: Option<&Progress>) {
    match progress {
        Some(Progress::Completed(step)) => completed.push(*step),
        Some(Progress::Compensated(i)) => {
            if let Some(step) = completed.get_mut(*i) {
                step.compensated = true;
            }
        }
        _ => {}
    }
}

/// A stored saga whose fields do not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorruptRecord {
    /// Its id, as stored.
    pub id: String,
    /// Its saga type, as stored.
    pub saga_type: String,
    /// What does not decode.
    pub message: String,
}

/// A change to a saga's progress that comes with a write.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    /// A step completed (or a timed-out step is to be compensated: see `compensate_on_timeout`).
    Completed(CompletedStep),
    /// Rollback starts for this reason.
    RollbackStarted(RollbackCause<usize>),
    /// The compensation of the completed step at this position of `completed` succeeded.
    Compensated(usize),
}

/// One transition of one saga.
#[derive(Debug, Clone)]
pub struct Write {
    /// The event, appended to the history.
    pub event: SagaEvent,
    /// The new status, when it changes.
    pub status: Option<SagaStatus<usize>>,
    /// The new committed context, when a step or compensation committed.
    pub context: Option<StoredContext>,
    /// The progress change, if any.
    pub progress: Option<Progress>,
}

impl Write {
    /// Whether the saga made progress: a step or a compensation committed. Recovery counts the
    /// times it resumed a saga without progress in between.
    pub fn is_progress(&self) -> bool {
        matches!(
            self.progress,
            Some(Progress::Completed(CompletedStep {
                timed_out: false,
                ..
            })) | Some(Progress::Compensated(_))
        )
    }
}

/// A new saga to record.
#[derive(Debug, Clone)]
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
    /// Transitions recorded with the saga, in the same commit (the executor records the first
    /// step's intent this way: starting a saga then costs no commit of its own). Applied in
    /// order as [`SagaStore::write`] would, only when the saga is new.
    pub writes: Vec<Write>,
}

/// Whether [`SagaStore::create`] created the saga or found it already there.
#[derive(Debug, Clone)]
pub enum Created {
    /// Recorded now.
    New,
    /// A saga with the same id or idempotency key exists; here it is.
    Existing(Box<SagaRecord>),
}

/// Everything a store keeps about one saga, but its history.
#[derive(Debug, Clone)]
pub struct SagaRecord {
    /// Its id.
    pub id: SagaId,
    /// The saga type's name.
    pub saga_type: String,
    /// The step names it was started with.
    pub steps: Vec<String>,
    /// Its status, with step positions.
    pub status: SagaStatus<usize>,
    /// The last committed context.
    pub context: StoredContext,
    /// Completed steps, in completion order.
    pub completed: Vec<CompletedStep>,
    /// Why it is rolling back, once it is.
    pub rollback: Option<RollbackCause<usize>>,
    /// Its idempotency key.
    pub idempotency_key: Option<String>,
    /// Its deadline, if it has one.
    pub deadline: Option<SystemTime>,
    /// How many times recovery has resumed it since it last made progress.
    pub recovery_attempts: u32,
    /// When it was recorded.
    pub created_at: SystemTime,
    /// When it last changed.
    pub updated_at: SystemTime,
}

impl SagaRecord {
    pub(crate) fn new(saga: NewSaga) -> Self {
        let now = SystemTime::now();
        SagaRecord {
            id: saga.id,
            saga_type: saga.saga_type.to_owned(),
            steps: saga.steps.iter().map(|s| (*s).to_owned()).collect(),
            status: SagaStatus::Pending,
            context: saga.context,
            completed: Vec::new(),
            rollback: None,
            idempotency_key: saga.idempotency_key,
            deadline: saga.deadline,
            recovery_attempts: 0,
            created_at: now,
            updated_at: now,
        }
    }

    /// Applies one write's status, context and progress (not its event).
    pub fn apply(&mut self, write: &Write) {
        if let Some(status) = &write.status {
            self.status = status.clone();
        }
        if let Some(context) = &write.context {
            self.context = context.clone();
        }
        if let Some(Progress::RollbackStarted(cause)) = &write.progress {
            self.rollback = Some(cause.clone());
        }
        if write.is_progress() {
            self.recovery_attempts = 0;
        }
        apply_progress(&mut self.completed, write.progress.as_ref());
        self.updated_at = write.event.at;
    }
}

/// Where sagas are recorded.
///
/// Implementations apply each [`Write`] atomically and in order per saga.
pub trait SagaStore: Send + Sync + 'static {
    /// Records a new saga with its first transitions (`saga.writes`), atomically, or returns
    /// the existing one with the same id or idempotency key (and records nothing).
    fn create(&self, saga: NewSaga) -> StoreFuture<'_, Created>;

    /// Records the transitions in `writes`, in order and atomically, taking them out of the
    /// vector (which is left empty, for reuse).
    fn write<'a>(&'a self, id: SagaId, writes: &mut Vec<Write>) -> StoreFuture<'a, ()>;

    /// Reads a saga's record.
    fn load(&self, id: SagaId) -> StoreFuture<'_, Option<SagaRecord>>;

    /// Reads a saga's history, oldest first.
    fn history(&self, id: SagaId) -> StoreFuture<'_, Option<Vec<SagaEvent>>>;

    /// Reads up to `limit` sagas that are not terminal, with ids greater than `after`, in id
    /// order: recovery reads a backlog page by page. A record that does not decode comes back as
    /// [`CorruptRecord`], so that one bad record stops nothing else.
    fn unfinished(
        &self,
        after: Option<SagaId>,
        limit: usize,
    ) -> StoreFuture<'_, Vec<Result<SagaRecord, CorruptRecord>>>;

    /// Counts one more recovery of a saga (reset whenever it makes progress) and returns the
    /// count, durably, before the saga is resumed.
    fn begin_recovery(&self, id: SagaId) -> StoreFuture<'_, u32>;
}
