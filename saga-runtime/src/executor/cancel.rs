//! Cancellation of a running saga, its deadline, and the loss of its lease.

use std::sync::Mutex;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::{SagaError, SagaId};

/// Shared between a running saga and whoever may cancel it.
#[derive(Debug)]
pub(crate) struct CancelState {
    flags: Mutex<Flags>,
    notify: Notify,
    /// Since when this engine's lease on the saga is known to be committed: a renewal asked
    /// before then may not list the saga, and says nothing about it.
    leased: Mutex<Option<std::time::Instant>>,
}

impl Default for CancelState {
    fn default() -> Self {
        CancelState {
            flags: Mutex::default(),
            notify: Notify::new(),
            leased: Mutex::new(None),
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Flags {
    requested: bool,
    past_pivot: bool,
    /// Another worker took the saga over: this run must stop at once.
    lost: bool,
}

impl CancelState {
    fn flags(&self) -> std::sync::MutexGuard<'_, Flags> {
        self.flags.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Requests cancellation, unless the saga has passed its pivot.
    pub(crate) fn cancel(&self, id: SagaId) -> Result<(), SagaError> {
        let mut flags = self.flags();
        if flags.past_pivot {
            return Err(SagaError::NotCancellable {
                id,
                reason: "it has passed its pivot step and can no longer be rolled back",
            });
        }
        flags.requested = true;
        drop(flags);
        self.notify.notify_waiters();
        Ok(())
    }

    /// From now on cancellation is refused.
    pub(crate) fn pass_pivot(&self) {
        self.flags().past_pivot = true;
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
        self.flags().lost = true;
        self.notify.notify_waiters();
    }

    /// An error once the lease is lost.
    pub(crate) fn check_lease(&self, id: SagaId) -> Result<(), SagaError> {
        match self.flags().lost {
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
            if self.flags().lost {
                return;
            }
            notified.await;
        }
    }

    pub(crate) fn is_requested(&self) -> bool {
        let flags = self.flags();
        flags.requested && !flags.past_pivot
    }

    /// Sleeps until `until` (tokio's clock), waking early when the saga is cancelled or loses
    /// its lease: the decision then sees why.
    pub(crate) async fn sleep_until(&self, until: Instant) {
        let notified = self.notify.notified();
        {
            let flags = self.flags();
            if (flags.requested && !flags.past_pivot) || flags.lost {
                return;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep_until(until) => {}
            _ = notified => {}
        }
    }
}
