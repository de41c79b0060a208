//! Operator requests by saga id, from any process (see [`crate::OperatorRequest`]).

use super::Engine;
use crate::store::{LeaseRequest, SagaRecord, StoreErrorKind};
use crate::{OperatorRequest, SagaError, SagaId};

impl Engine {
    /// Asks saga `id` to stop at its next step boundary and compensate, wherever it runs: the
    /// request is recorded in the store, and the worker holding the saga acts on it (at once when
    /// that is this engine, else at its next lease renewal; a saga waiting on a durable timer is
    /// woken).
    ///
    /// Refused with [`SagaError::Refused`] when it cannot be honoured: the saga has ended, is
    /// parked, already rolls back, has passed its pivot, or is running its pivot or its last
    /// step (see [`crate::Refusal`]). A cancellation accepted while a step runs can still come
    /// too late (the step was the pivot's fallback, or the last one); the history then records
    /// it as ignored.
    ///
    /// ```
    /// # async fn demo(engine: saga_runtime::Engine, id: saga_runtime::SagaId) {
    /// use saga_runtime::{Refusal, SagaError};
    ///
    /// match engine.cancel(id).await {
    ///     Ok(()) => println!("the saga will roll back"),
    ///     Err(SagaError::Refused { refusal: Refusal::PastPivot, .. }) => {
    ///         println!("too late: the saga has passed its point of no return")
    ///     }
    ///     Err(other) => eprintln!("{other}"),
    /// }
    /// # }
    /// ```
    pub async fn cancel(&self, id: SagaId) -> Result<(), SagaError> {
        self.request(id, OperatorRequest::Cancel, None).await?;
        Ok(())
    }

    /// Resumes a parked saga from where it stopped, once the cause of its parking is fixed: any
    /// worker with its type registered goes on with it (this engine at once, if it has the type
    /// registered). Refused unless the saga is parked.
    pub async fn resume(&self, id: SagaId) -> Result<(), SagaError> {
        self.request(id, OperatorRequest::Resume, None).await?;
        Ok(())
    }

    /// Retries a saga that needs attention: a compensation-failed saga continues its
    /// compensation with the step whose compensation failed; a saga that failed after its pivot
    /// runs its failed step again. Any worker with its type registered goes on with it (this
    /// engine at once, if it has the type registered); to run it here and get its outcome, use
    /// [`SagaClient::retry`](crate::SagaClient::retry).
    pub async fn retry(&self, id: SagaId) -> Result<(), SagaError> {
        self.request(id, OperatorRequest::Retry, None).await?;
        Ok(())
    }

    /// Makes `request` through the store, leasing a reopened saga to `lease` when given; tells
    /// this engine's own run of the saga, or its background task, at once.
    pub(crate) async fn request(
        &self,
        id: SagaId,
        request: OperatorRequest,
        lease: Option<LeaseRequest>,
    ) -> Result<SagaRecord, SagaError> {
        let leased = lease.is_some();
        // A reopened saga is claimed (and a leased one renewed) by the background task.
        self.ensure_background();
        let answer = match self.inner.store.request(id, request, lease).await {
            Ok(answer) => answer,
            Err(error) if error.kind() == StoreErrorKind::NotFound => {
                return Err(SagaError::NotFound(id))
            }
            Err(error) => return Err(error.into()),
        };
        let record = answer.map_err(|refusal| SagaError::Refused {
            id,
            request,
            refusal,
        })?;
        match request {
            OperatorRequest::Cancel => {
                let running = self.inner.running.lock().unwrap_or_else(|e| e.into_inner());
                match running.get(&id) {
                    Some(run) => run.request_cancel(),
                    // Waiting on a timer, or held by nobody: it is due now.
                    None => self.wake_timers(),
                }
            }
            _ if !leased => self.wake_timers(),
            _ => {}
        }
        Ok(record)
    }
}
