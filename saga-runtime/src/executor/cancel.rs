//! Cancellation of a running saga, its deadline, and the loss of its lease.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::{SagaError, SagaId};

/// Shared between a running saga and whoever may cancel it.
#[derive(Debug)]
pub(crate) struct CancelState {
    /// [`REQUESTED`], [`PAST_PIVOT`], [`LOST`]: the run reads them at every decision, so they are
    /// one atomic rather than a lock.
    flags: AtomicU8,
    notify: Notify,
    /// Since when this engine's lease on the saga is known to be committed: a renewal asked
    /// before then may not list the saga, and says nothing about it.
    leased: Mutex<Option<std::time::Instant>>,
}

impl Default for CancelState {
    fn default() -> Self {
        CancelState {
            flags: AtomicU8::new(0),
            notify: Notify::new(),
            leased: Mutex::new(None),
        }
    }
}

/// Cancellation was requested.
const REQUESTED: u8 = 1;
/// The saga passed its pivot: cancellation is refused.
const PAST_PIVOT: u8 = 2;
/// Another worker took the saga over: this run must stop at once.
const LOST: u8 = 4;

impl CancelState {
    fn flags(&self) -> u8 {
        self.flags.load(Ordering::Acquire)
    }

    /// Requests cancellation: the decision acts on it at the next step boundary (or records it
    /// as ignored, past the pivot).
    pub(crate) fn request_cancel(&self) {
        self.flags.fetch_or(REQUESTED, Ordering::AcqRel);
        self.notify.notify_waiters();
    }

    /// From now on cancellation is refused.
    pub(crate) fn pass_pivot(&self) {
        self.flags.fetch_or(PAST_PIVOT, Ordering::AcqRel);
    }

    /// The saga's lease is committed, as of now.
    pub(crate) fn leased(&self) {
        *self.leased.lock().unwrap_or_else(|e| e.into_inner()) = Some(std::time::Instant::now());
    }

    /// Whether the saga's lease was committed before `instant`.
    pub(crate) fn leased_before(&self, instant: std::time::Instant) -> bool {
        self.leased
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|at| at < instant)
    }

    /// The lease was lost: the run stops at its next await.
    pub(crate) fn lose(&self) {
        self.flags.fetch_or(LOST, Ordering::AcqRel);
        self.notify.notify_waiters();
    }

    /// An error once the lease is lost.
    pub(crate) fn check_lease(&self, id: SagaId) -> Result<(), SagaError> {
        match self.flags() & LOST != 0 {
            true => Err(SagaError::Store(crate::store::StoreError::new(
                crate::store::StoreErrorKind::Fenced,
                format!("saga {id}: this worker's lease was lost; another worker may run it now"),
            ))),
            false => Ok(()),
        }
    }

    /// Resolves once the lease is lost.
    pub(crate) async fn lost(&self) {
        loop {
            let notified = self.notify.notified();
            if self.flags() & LOST != 0 {
                return;
            }
            notified.await;
        }
    }

    /// Whether cancellation was requested, whether or not the saga can still act on it.
    pub(crate) fn was_requested(&self) -> bool {
        self.flags() & REQUESTED != 0
    }

    pub(crate) fn is_requested(&self) -> bool {
        self.flags() & (REQUESTED | PAST_PIVOT) == REQUESTED
    }

    /// Sleeps until `until` (tokio's clock), waking early when the saga is cancelled or loses
    /// its lease: the decision then sees why.
    pub(crate) async fn sleep_until(&self, until: Instant) {
        let notified = self.notify.notified();
        if self.is_requested() || self.flags() & LOST != 0 {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(until) => {}
            _ = notified => {}
        }
    }
}
