//! A saga looked up as a given type (checked against this program's definition of it), and an
//! operator's retry of one, run here.

use std::sync::Arc;

use super::{waiting, Claim, Outcome, Run, Table};
use crate::engine::Engine;
use crate::machine::StepTable;
use crate::store::SagaRecord;
use crate::{OperatorRequest, SagaError, SagaId, SagaKind};

/// Loads saga `id`, checking that it is a saga of definition `table` started under it.
pub(crate) async fn load<C, D>(
    engine: &Engine,
    table: &StepTable<C, D>,
    id: SagaId,
) -> Result<SagaRecord, SagaError> {
    let record = engine
        .inner
        .store
        .load(id)
        .await?
        .ok_or(SagaError::NotFound(id))?;
    check_definition(table, &record)?;
    Ok(record)
}

/// Refuses a record of another type, or started under other steps than definition `table`.
pub(crate) fn check_definition<C, D>(
    table: &StepTable<C, D>,
    record: &SagaRecord,
) -> Result<(), SagaError> {
    let id = record.id;
    if record.saga_type != table.name {
        return Err(SagaError::WrongType {
            id,
            expected: table.name,
            actual: record.saga_type.clone(),
        });
    }
    match incompatibility(record, table) {
        Some(message) => Err(SagaError::IncompatibleDefinition { id, message }),
        None => Ok(()),
    }
}

/// Why saga `record` cannot run under this program's definition of its type `name` (its steps
/// and parallel groups), if it cannot: the same steps run otherwise when they are grouped
/// otherwise, so both must be the ones it was started with.
pub(crate) fn incompatibility<C, D>(
    record: &SagaRecord,
    table: &StepTable<C, D>,
) -> Option<String> {
    let (name, groups) = (table.name, table.groups);
    if !record
        .steps
        .iter()
        .map(String::as_str)
        .eq(table.steps.iter().map(|def| def.name()))
    {
        let steps = table.step_names();
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
pub(crate) async fn retry<S: SagaKind>(
    table: Table<S>,
    engine: Engine,
    id: SagaId,
    deps: Arc<S::Deps>,
) -> Result<Outcome<S>, SagaError> {
    // Checked before anything changes: a saga of another type or definition is not reopened.
    let record = load(&engine, table, id).await?;
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
    let mut run = Run::<S>::new(table, claim, Arc::new(ctx), deps, record.state, fence);
    let reopened = engine.inner.store.history(id, fence.version - 1, 1).await?;
    run.announce(reopened.unwrap_or_default());
    let ended = run.drive().await;
    drop(run);
    match ended? {
        Some(outcome) => Ok(outcome),
        None => waiting::outcome::<S>(&engine, &table, id).await,
    }
}
