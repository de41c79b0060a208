//! Waiting for a saga's outcome, wherever it runs: a run of this engine that ends wakes the
//! waiters of its saga (and of no other); a saga that another process runs is looked up in the
//! store, less and less often while it goes on.

use std::time::Duration;

use super::{finish, load, Outcome, Table};
use crate::engine::Engine;
use crate::{SagaError, SagaId, SagaKind, SagaStatus};

/// How often the store is read first for a saga this engine does not run; the interval doubles
/// up to [`MAX_POLL`].
pub(crate) const FIRST_POLL: Duration = Duration::from_millis(50);
pub(crate) const MAX_POLL: Duration = Duration::from_secs(1);

/// Waits until saga `id` has ended and returns its outcome, with its final context. A parked
/// saga has no outcome (it waits for an operator): that is [`SagaError::Parked`].
pub(crate) async fn outcome<S: SagaKind>(
    engine: &Engine,
    table: &Table<S>,
    id: SagaId,
) -> Result<Outcome<S>, SagaError> {
    let waiting = engine.inner.waiters.wait(id);
    let mut poll = FIRST_POLL;
    loop {
        // Registered before the store is read: an end after the read still wakes this wait.
        let ended = waiting.notify.notified();
        tokio::pin!(ended);
        ended.as_mut().enable();
        let record = load(engine, table, id).await?;
        match &record.state.status {
            SagaStatus::Parked { reason } => {
                return Err(SagaError::Parked {
                    id,
                    reason: reason.clone(),
                })
            }
            status if status.is_terminal() => {
                let ctx = record
                    .context
                    .decode::<S::Context>()
                    .map_err(|message| SagaError::CorruptContext { id, message })?;
                return finish::outcome::<S>(
                    table,
                    id,
                    &record.state,
                    ctx,
                    record.state.outputs.clone(),
                );
            }
            _ => {}
        }
        if engine.is_running(id) {
            // Its run here wakes this wait when it ends or lets the saga go.
            ended.await;
        } else {
            tokio::select! {
                () = &mut ended => {}
                () = tokio::time::sleep(poll) => poll = (poll * 2).min(MAX_POLL),
            }
        }
    }
}
