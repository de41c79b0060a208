//! Group commit: the creates and writes of many sagas in one transaction.
//!
//! A store runs a few lanes. Each takes every request queued at that moment (up to
//! [`MAX_BATCH`]) and commits them together with a handful of statements whatever their number:
//! one insert of the new sagas, one lock of the written sagas' rows, one update of them, one
//! append of their history. A thousand sagas in flight then cost tens of transactions rather
//! than thousands, and a lone request still commits at once, in a lane of its own. Each request
//! is checked on its own (fence, version, idempotency key) and a refused one fails alone.

use std::collections::HashSet;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Mutex};

use super::columns::{NewRows, Updates};
use super::listen;
use super::rows::{self, lock, pg_error, Sql};
use super::Connections;
use crate::machine::Write;
use crate::store::encoding::{encode_event, EntryForm};
use crate::store::{Created, Fence, NewSaga, StoreError, StoreErrorKind};
use crate::SagaId;

/// The most requests one transaction takes; bounds the latency of the first in a large batch.
const MAX_BATCH: usize = 512;

/// A saga to create, with its first writes.
type Create = (NewSaga, Vec<Write>);
/// Writes to a saga, under a fence.
type Written = (SagaId, Fence, Vec<Write>);

enum Job {
    Create(Box<Create>, oneshot::Sender<Result<Created, StoreError>>),
    Write(Box<Written>, oneshot::Sender<Result<u64, StoreError>>),
}

/// The queue into the store's lanes; they stop when it is dropped.
pub(super) struct Batches {
    queue: mpsc::UnboundedSender<Job>,
}

fn stopped() -> StoreError {
    StoreError::new(
        StoreErrorKind::Unavailable,
        "the PostgreSQL store's writers have stopped: the tokio runtime it was connected on has \
         shut down",
    )
}

impl Batches {
    /// Starts `lanes` lanes on the current tokio runtime.
    pub(super) fn start(db: Connections, sql: Arc<Sql>, lanes: usize) -> Self {
        let (queue, jobs) = mpsc::unbounded_channel();
        let jobs = Arc::new(Mutex::new(jobs));
        for _ in 0..lanes.max(1) {
            tokio::spawn(lane(db.clone(), Arc::clone(&sql), Arc::clone(&jobs)));
        }
        Batches { queue }
    }

    /// Creates `saga` with its first `writes` (see [`crate::store::SagaStore::create`]).
    pub(super) async fn create(
        &self,
        saga: NewSaga,
        writes: Vec<Write>,
    ) -> Result<Created, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Job::Create(Box::new((saga, writes)), reply))
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Records `writes` if `fence` holds (see [`crate::store::SagaStore::write`]).
    pub(super) async fn write(
        &self,
        id: SagaId,
        fence: Fence,
        writes: Vec<Write>,
    ) -> Result<u64, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Job::Write(Box::new((id, fence, writes)), reply))
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// One lane: takes what is queued, commits it, answers, again.
async fn lane(db: Connections, sql: Arc<Sql>, jobs: Arc<Mutex<mpsc::UnboundedReceiver<Job>>>) {
    loop {
        let batch = {
            let mut jobs = jobs.lock().await;
            let Some(first) = jobs.recv().await else {
                return;
            };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match jobs.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            batch
        };
        let (mut creates, mut create_replies) = (Vec::new(), Vec::new());
        let (mut writes, mut write_replies) = (Vec::new(), Vec::new());
        for job in batch {
            match job {
                Job::Create(create, reply) => {
                    creates.push(*create);
                    create_replies.push(reply);
                }
                Job::Write(write, reply) => {
                    writes.push(*write);
                    write_replies.push(reply);
                }
            }
        }
        let (creates, writes) = (&creates, &writes);
        let answers = retrying!(db, |client, retried| commit(
            client, &sql, creates, writes, retried
        ));
        // A caller that went away does not need its answer.
        match answers {
            Ok((created, written)) => {
                for (reply, answer) in create_replies.into_iter().zip(created) {
                    let _ = reply.send(answer);
                }
                for (reply, answer) in write_replies.into_iter().zip(written) {
                    let _ = reply.send(answer);
                }
            }
            Err(error) => {
                for reply in create_replies {
                    let _ = reply.send(Err(error.clone()));
                }
                for reply in write_replies {
                    let _ = reply.send(Err(error.clone()));
                }
            }
        }
    }
}

type Answers = (
    Vec<Result<Created, StoreError>>,
    Vec<Result<u64, StoreError>>,
);

/// Commits a batch in one transaction: an answer for each create and each write.
///
/// `retried`: an earlier attempt's connection dropped, so it may have committed; a create or a
/// write found already done is answered as done.
async fn commit(
    client: &mut deadpool_postgres::Object,
    sql: &Sql,
    creates: &[Create],
    writes: &[Written],
    retried: bool,
) -> Result<Answers, StoreError> {
    let mut created: Vec<Option<Result<Created, StoreError>>> = Vec::new();
    let (mut new_rows, mut pushed) = (NewRows::default(), Vec::new());
    for (index, (saga, first)) in creates.iter().enumerate() {
        match new_rows.push(saga, first) {
            Ok(()) => {
                pushed.push(index);
                created.push(None);
            }
            Err(error) => created.push(Some(Err(error))),
        }
    }
    let mut written: Vec<Option<Result<u64, StoreError>>> = vec![None; writes.len()];
    let tx = client.transaction().await.map_err(pg_error)?;
    for (index, inserted) in pushed.into_iter().zip(new_rows.insert(&tx, sql).await?) {
        created[index] = inserted.map(Ok);
    }
    if creates.iter().any(|(saga, _)| saga.lease.is_none()) {
        // Sagas for any worker to run.
        listen::notify(&tx, sql).await?;
    }
    let mut pending: Vec<usize> = (0..writes.len()).collect();
    if retried {
        for &index in &pending {
            if let Some(version) = already_written(&tx, sql, &writes[index]).await? {
                written[index] = Some(Ok(version));
            }
        }
        pending.retain(|&index| written[index].is_none());
    }
    // Rounds of distinct sagas: a saga written twice in one batch (by two workers, one of them
    // stale) sees its first write before its second.
    while !pending.is_empty() {
        let mut seen = HashSet::new();
        let (round, later): (Vec<usize>, Vec<usize>) = pending
            .iter()
            .partition(|&&index| seen.insert(writes[index].0));
        write_round(&tx, sql, writes, &round, &mut written).await?;
        pending = later;
    }
    tx.commit().await.map_err(pg_error)?;
    // Creates whose id or key was taken: the saga that has it (or, after a retry, this one).
    for (index, (saga, first)) in creates.iter().enumerate() {
        if created[index].is_none() {
            created[index] = Some(rows::create(client, sql, saga, first, retried).await);
        }
    }
    let answered = "every request of a batch is answered";
    Ok((
        created
            .into_iter()
            .map(|c| c.unwrap_or_else(|| Err(StoreError::new(StoreErrorKind::Invalid, answered))))
            .collect(),
        written
            .into_iter()
            .map(|w| w.unwrap_or_else(|| Err(StoreError::new(StoreErrorKind::Invalid, answered))))
            .collect(),
    ))
}

/// Locks the sagas of `round` (distinct), checks each write's fence, and applies those that
/// hold.
async fn write_round(
    tx: &deadpool_postgres::Transaction<'_>,
    sql: &Sql,
    writes: &[Written],
    round: &[usize],
    written: &mut [Option<Result<u64, StoreError>>],
) -> Result<(), StoreError> {
    let ids: Vec<String> = round.iter().map(|&i| writes[i].0.to_string()).collect();
    let locked = lock(tx, sql, &ids).await?;
    let mut updates = Updates::default();
    for (&index, text_id) in round.iter().zip(&ids) {
        let (id, fence, changes) = &writes[index];
        written[index] = Some(match locked.get(text_id) {
            None => Err(StoreError::not_found(*id)),
            Some(row) => row
                .fenced(*id, *fence)
                .and_then(|state| updates.push(text_id, state, row.events, changes)),
        });
    }
    updates.apply(tx, sql).await
}

/// The saga's version if its history already ends with `writes`, written at `fence.version`.
async fn already_written(
    tx: &deadpool_postgres::Transaction<'_>,
    sql: &Sql,
    (id, fence, writes): &Written,
) -> Result<Option<u64>, StoreError> {
    let Some(last) = writes.last() else {
        return Ok(None);
    };
    let after = fence.version + writes.len() as u64;
    let query = format!(
        "SELECT s.events, h.event FROM {} s JOIN {} h ON h.saga = s.id AND h.n = $2 \
         WHERE s.id = $1",
        sql.sagas, sql.history
    );
    let last_position = i64::try_from(after).unwrap_or(i64::MAX) - 1;
    let row = tx
        .query_opt(&query, &[&id.to_string(), &last_position])
        .await
        .map_err(pg_error)?;
    let Some(row) = row else {
        return Ok(None);
    };
    let done = u64::try_from(row.get::<_, i64>(0)).ok() == Some(after)
        && row.get::<_, String>(1) == encode_event(&last.event, EntryForm::Time)?;
    Ok(done.then_some(after))
}
