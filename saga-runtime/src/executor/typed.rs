//! A saga looked up as a given type (checked against this program's definition of it), and an
//! operator's retry of one, run here.

use std::sync::Arc;

use super::{waiting, Claim, Outcome, Run};
use crate::engine::Engine;
use crate::store::SagaRecord;
use crate::{OperatorRequest, Saga, SagaError, SagaId};

/// Loads saga `id`, checking that it is an `S` started under this program's definition of `S`.
pub(crate) async fn load<S: Saga>(engine: &Engine, id: SagaId) -> Result<SagaRecord, SagaError> {
    let record = engine
        .inner
        .store
        .load(id)
        .await?
        .ok_or(SagaError::NotFound(id))?;
    check_definition::<S>(&record)?;
    Ok(record)
}

/// Refuses a record of another type, or started under other steps than this program's `S`.
pub(crate) fn check_definition<S: Saga>(record: &SagaRecord) -> Result<(), SagaError> {
    let id = record.id;
    if record.saga_type != S::NAME {
        return Err(SagaError::WrongType {
            id,
            expected: S::NAME,
            actual: record.saga_type.clone(),
        });
    }
    let steps: Vec<&str> = S::steps().iter().map(|s| s.name()).collect();
    match incompatibility(record, S::NAME, &steps, S::GROUPS) {
        Some(message) => Err(SagaError::IncompatibleDefinition { id, message }),
        None => Ok(()),
    }
}

/// Why saga `record` cannot run under this program's definition of its type `name` (its steps
/// and parallel groups), if it cannot: the same steps run otherwise when they are grouped
/// otherwise, so both must be the ones it was started with.
pub(crate) fn incompatibility(
    record: &SagaRecord,
    name: &str,
    steps: &[&str],
    groups: &[std::ops::Range<usize>],
) -> Option<String> {
    if !record
        .steps
        .iter()
        .map(String::as_str)
        .eq(steps.iter().copied())
    {
        return Some(format!(
            "it was started with steps {:?}, but this program's `{name}` has steps {steps:?}",
            record.steps
        ));
    }
    (record.state.groups != groups).then(|| {
        format!(
            "it was started with parallel groups {:?}, but this program's `{name}` has {groups:?}",
            record.state.groups
        )
    })
}

/// An operator's retry of saga `id`, run here with `deps`: reopened and leased to this engine in
/// one request, then driven to its end (see [`crate::OperatorRequest::Retry`]).
pub(crate) async fn retry<S: Saga>(
    engine: Engine,
    id: SagaId,
    deps: Arc<S::Deps>,
) -> Result<Outcome<S>, SagaError> {
    // Checked before anything changes: a saga of another type or definition is not reopened.
    let record = load::<S>(&engine, id).await?;
    let ctx = record
        .context
        .decode::<S::Context>()
        .map_err(|message| SagaError::CorruptContext { id, message })?;
    let claim = Claim::take(&engine, id).ok_or(SagaError::InvalidState {
        id,
        operation: "retrying",
        needed: "not running",
        status: "running on this engine".into(),
    })?;
    let record = engine
        .request(id, OperatorRequest::Retry, Some(engine.lease_request()))
        .await?;
    let fence = record.fence().ok_or(SagaError::InvalidState {
        id,
        operation: "retrying",
        needed: "leased by this worker",
        status: "not leased".into(),
    })?;
    let mut run = Run::<S>::new(claim, Arc::new(ctx), deps, record.state, fence);
    let reopened = engine.inner.store.history(id, fence.version - 1, 1).await?;
    run.announce(reopened.unwrap_or_default());
    let ended = run.drive().await;
    drop(run);
    match ended? {
        Some(outcome) => Ok(outcome),
        None => waiting::outcome::<S>(&engine, id).await,
    }
}
