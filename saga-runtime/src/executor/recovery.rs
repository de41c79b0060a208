//! Resuming a saga from its record after a crash, and parking one that cannot be resumed.
//!
//! A saga resumes from its last committed state: the completed steps and the context the record
//! holds. A step whose intent was recorded but whose completion was not runs again, from its
//! first attempt, with the same idempotency key: steps are at-least-once, effectively-once when
//! they pass the key on. A saga that had started rolling back only ever finishes rolling back.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::SystemTime;

use super::rollback::def_of;
use super::{Claim, Run};
use crate::event::{self, SagaEvent, SagaEventKind};
use crate::store::{SagaRecord, Write};
use crate::{Engine, Saga, SagaError, SagaId, SagaOutcome, SagaStatus, Undo};

/// Resumes a recorded, non-terminal saga of type `S` that `claim` holds. A context that does not
/// decode parks the saga, and so does one resumed too many times in a row without progress.
///
/// The resumption is counted here, as the saga is about to run, and not when recovery finds it:
/// a saga still waiting its turn when the worker dies was not what crashed it.
pub(crate) async fn resume<S: Saga>(
    claim: Claim,
    record: SagaRecord,
    deps: Arc<S::Deps>,
) -> Result<Option<SagaOutcome<S::Context, S::Step>>, SagaError> {
    let id = record.id;
    let engine = claim.engine.clone();
    let attempts = engine.inner.store.begin_recovery(id).await?;
    if attempts > engine.inner.max_recovery_attempts {
        let reason = format!(
            "it was resumed {} times in a row without making progress; it may be crashing its worker",
            attempts - 1
        );
        park(&engine, id, S::NAME, reason).await?;
        return Ok(None);
    }
    let ctx = match record.context.decode::<S::Context>() {
        Ok(ctx) => ctx,
        Err(message) => {
            let reason = format!(
                "its stored context does not decode as `{}`: {message}",
                S::NAME
            );
            park(&claim.engine, id, S::NAME, reason).await?;
            return Err(SagaError::CorruptContext { id, message });
        }
    };
    // What is left of the deadline by the wall clock: none at all if it passed while no worker
    // ran the saga.
    let deadline = record
        .deadline
        .map(|at| at.duration_since(SystemTime::now()).unwrap_or_default());
    let mut run = Run::<S>::new(claim, Arc::new(ctx), deps, deadline);
    run.completed = record.completed;
    run.past_pivot = run
        .completed
        .iter()
        .any(|done| !done.timed_out && def_of::<S>(done).policy().undo == Undo::Pivot);
    if run.past_pivot {
        run.cancel.pass_pivot();
    }
    run.record(
        SagaEventKind::SagaResumed {
            recovery_attempt: attempts,
        },
        None,
    );
    let outcome = match record.rollback {
        Some(cause) => run.compensate(cause).await,
        None => {
            let next = run
                .completed
                .iter()
                .filter(|d| !d.timed_out)
                .map(|d| d.step + 1)
                .max()
                .unwrap_or(0);
            // A step whose intent was recorded may have had effects: it runs again before a
            // passed deadline (or a cancellation) is looked at, so that its outcome is known and
            // a rollback undoes it if it completed.
            if record.status == (SagaStatus::Running { step: next }) {
                run.rerun = Some(next);
            }
            run.forward(next).await
        }
    };
    outcome.map(Some)
}

/// Parks a saga: it cannot go on under this program and needs attention, for `reason`.
pub(crate) async fn park(
    engine: &Engine,
    id: SagaId,
    saga_type: &str,
    reason: String,
) -> Result<(), SagaError> {
    let kind = SagaEventKind::SagaParked {
        reason: reason.clone(),
    };
    event::trace(&kind);
    let event = SagaEvent {
        saga_id: id,
        saga_type: Cow::Owned(saga_type.to_owned()),
        at: SystemTime::now(),
        kind,
    };
    let published = engine.inner.events.has_subscribers().then(|| event.clone());
    let write = Write {
        event,
        status: Some(SagaStatus::Parked { reason }),
        context: None,
        progress: None,
    };
    engine.inner.store.write(id, &mut vec![write]).await?;
    if let Some(event) = published {
        engine.inner.events.publish(event);
    }
    Ok(())
}
