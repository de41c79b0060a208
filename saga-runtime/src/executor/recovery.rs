//! Resuming a saga this worker acquired (its previous worker died, or let it go), and parking one
//! that cannot be resumed.
//!
//! A saga resumes from its stored state: the decision takes it from there exactly as it would
//! have in the run that stopped. An attempt whose intent was recorded but whose result was not
//! runs again, with the same attempt number and idempotency key: steps are at-least-once,
//! effectively-once when they pass the key on. A saga that had started rolling back only ever
//! finishes rolling back.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::SystemTime;

use super::{Claim, Outcome, Run, Table};
use crate::event::{self, SagaEvent, SagaEventKind};
use crate::machine::{Change, StepTable, Write};
use crate::store::{Fence, SagaRecord};
use crate::{Engine, SagaError, SagaId, SagaKind, SagaStatus};

/// The context an acquired saga resumes with under definition `table`, or why it cannot resume
/// under this program and is to be parked: it was started with other steps or groups, it was
/// taken over too many times in a row without progress (it may be what crashes its workers), or
/// its stored context does not decode.
pub(crate) fn resumable<C: crate::SagaContext, D>(
    engine: &Engine,
    table: &StepTable<C, D>,
    record: &SagaRecord,
) -> Result<C, String> {
    if let Some(reason) = super::incompatibility(record, table) {
        return Err(reason);
    }
    stalled(engine, record)?;
    decode(table.name, record)
}

/// Refuses saga `record` when it was taken over too many times in a row without progress (it
/// may be what crashes its workers).
pub(crate) fn stalled(engine: &Engine, record: &SagaRecord) -> Result<(), String> {
    let attempts = record.state.recovery_attempts;
    if attempts > engine.inner.max_recovery_attempts {
        return Err(format!(
            "it was resumed {} times in a row without making progress; it may be crashing its worker",
            attempts - 1
        ));
    }
    Ok(())
}

/// The stored context of saga `record` of type `name`, or why it does not decode.
pub(crate) fn decode<C: crate::SagaContext>(name: &str, record: &SagaRecord) -> Result<C, String> {
    record
        .context
        .decode::<C>()
        .map_err(|message| format!("its stored context does not decode as `{name}`: {message}"))
}

/// Resumes an acquired, non-terminal saga of type `S` that `claim` holds, with the context
/// [`resumable`] gave.
pub(crate) async fn resume<S: SagaKind>(
    table: Table<S>,
    claim: Claim,
    record: SagaRecord,
    ctx: S::Context,
    deps: Arc<S::Deps>,
) -> Result<Option<Outcome<S>>, SagaError> {
    let id = record.id;
    let Some(fence) = record.fence() else {
        return Err(SagaError::InvalidState {
            id,
            operation: "resuming",
            needed: "leased by this worker",
            status: "not leased".into(),
        });
    };
    let attempts = record.state.recovery_attempts;
    if record.cancel_requested {
        claim.cancel.request_cancel();
    }
    let mut run = Run::<S>::new(table, claim, Arc::new(ctx), deps, record.state, fence);
    run.record(
        SagaEventKind::SagaResumed {
            recovery_attempt: attempts.max(1),
        },
        Change::None,
        None,
    );
    run.drive().await
}

/// Parks a saga this worker holds: it cannot go on under this program and needs attention, for
/// `reason`.
pub(crate) async fn park(
    engine: &Engine,
    id: SagaId,
    saga_type: &str,
    fence: Fence,
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
    let write = Write::new(event, Change::None).with_status(Some(SagaStatus::Parked { reason }));
    engine
        .inner
        .store
        .write(id, fence, &mut vec![write])
        .await?;
    crate::metrics::parked(saga_type);
    if let Some(event) = published {
        engine.inner.events.publish(event);
    }
    Ok(())
}
