//! The query side of a store, for operators and tools: which sagas a listing selects, what it
//! shows of each, and counts by type and status.

use std::time::SystemTime;

use crate::SagaId;

/// Which sagas [`SagaStore::list`](crate::store::SagaStore::list) returns, and which page of them: sagas matching every filter
/// given, in id order (time order, for ids the engine makes), after the cursor.
///
/// ```
/// use saga_runtime::store::SagaQuery;
///
/// let query = SagaQuery::new().status("compensation_failed").saga_type("OrderSaga").limit(50);
/// assert_eq!(query.limit, 50);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SagaQuery {
    /// Only sagas with this status name (`"running"`, `"compensation_failed"`, ...).
    pub status: Option<String>,
    /// Only sagas of this type.
    pub saga_type: Option<String>,
    /// Only sagas created at or after this time.
    pub created_after: Option<SystemTime>,
    /// Only sagas created before this time.
    pub created_before: Option<SystemTime>,
    /// Only the saga with this idempotency key.
    pub idempotency_key: Option<String>,
    /// Only sagas waiting on a durable timer: not ended, with a wake time still ahead.
    pub waiting: bool,
    /// The page after this saga (the last of the previous page).
    pub after: Option<SagaId>,
    /// At most this many (default 100).
    pub limit: usize,
}

impl Default for SagaQuery {
    fn default() -> Self {
        SagaQuery {
            status: None,
            saga_type: None,
            created_after: None,
            created_before: None,
            idempotency_key: None,
            waiting: false,
            after: None,
            limit: 100,
        }
    }
}

impl SagaQuery {
    /// Every saga, first page of 100.
    pub fn new() -> Self {
        Self::default()
    }

    /// Only sagas with this status name.
    pub fn status(mut self, status: impl Into<String>) -> Self {
        self.status = Some(status.into());
        self
    }

    /// Only sagas of this type.
    pub fn saga_type(mut self, saga_type: impl Into<String>) -> Self {
        self.saga_type = Some(saga_type.into());
        self
    }

    /// Only sagas created in `[from, to)`.
    pub fn created(mut self, from: Option<SystemTime>, to: Option<SystemTime>) -> Self {
        self.created_after = from;
        self.created_before = to;
        self
    }

    /// Only the saga with this idempotency key.
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    /// Only sagas waiting on a durable timer (a retry backoff, a resume time).
    pub fn waiting(mut self) -> Self {
        self.waiting = true;
        self
    }

    /// The page after this saga.
    pub fn after(mut self, id: SagaId) -> Self {
        self.after = Some(id);
        self
    }

    /// At most this many.
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    /// Whether a saga matches the filters (not the page).
    pub(crate) fn matches(&self, summary: &SagaSummary) -> bool {
        self.status
            .as_deref()
            .is_none_or(|s| s == summary.status.name())
            && self
                .saga_type
                .as_deref()
                .is_none_or(|t| t == summary.saga_type)
            && self.created_after.is_none_or(|t| summary.created_at >= t)
            && self.created_before.is_none_or(|t| summary.created_at < t)
            && self
                .idempotency_key
                .as_ref()
                .is_none_or(|k| summary.idempotency_key.as_ref() == Some(k))
            && (!self.waiting
                || (!summary.status.is_terminal()
                    && summary.wake_at.is_some_and(|w| w > SystemTime::now())))
            && self.after.is_none_or(|a| summary.id > a)
    }
}

/// One saga in a listing.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SagaSummary {
    /// Its id.
    pub id: SagaId,
    /// Its type.
    pub saga_type: String,
    /// Its status.
    pub status: crate::SagaStatus<usize>,
    /// Its idempotency key.
    pub idempotency_key: Option<String>,
    /// The worker holding it, if a lease is on it (possibly expired).
    pub owner: Option<String>,
    /// When it wakes, if it waits (or waited) on a durable timer.
    pub wake_at: Option<SystemTime>,
    /// When it was recorded.
    pub created_at: SystemTime,
    /// When it last changed.
    pub updated_at: SystemTime,
}

/// How many sagas of one type have one status.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct StatusCount {
    /// The saga type.
    pub saga_type: String,
    /// The status name.
    pub status: String,
    /// How many.
    pub count: u64,
}
