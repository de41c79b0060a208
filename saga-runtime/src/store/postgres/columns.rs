//! Rows to insert or update, gathered column by column, so that any number of sagas is written
//! with one statement (`unnest` of one array per column) rather than one statement each.

use std::collections::HashSet;
use std::time::SystemTime;

use deadpool_postgres::GenericClient;

use super::rows::{expiry, pg_error, prepared, Sql};
use crate::event::SagaEvent;
use crate::machine::{SagaState, Write};
use crate::store::encoding::{encode_event, json, millis, time, EntryForm};
use crate::store::{Created, Lease, NewSaga, StoreError, StoreErrorKind};

pub(super) fn json_error(what: &str, error: serde_json::Error) -> StoreError {
    StoreError::new(StoreErrorKind::Invalid, format!("{what}: {error}"))
}

/// The row's columns after `writes` fold into `state`: the state and status as JSON, the status's
/// name, whether it is terminal, the wake time, the last committed context (if a write committed
/// one).
struct Folded {
    state: String,
    status: String,
    status_name: &'static str,
    terminal: bool,
    wake: Option<i64>,
    context: Option<Vec<u8>>,
}

fn fold(state: &mut SagaState, writes: &[Write]) -> Result<Folded, StoreError> {
    let mut context = None;
    for write in writes {
        state.apply(write);
        if let Some(committed) = &write.context {
            context = Some(committed);
        }
    }
    let context = context
        .map(|c| c.to_json().map(|j| j.to_vec()))
        .transpose()
        .map_err(|e| json_error("the context does not serialize", e))?;
    Ok(Folded {
        state: json::state_string(state).map_err(|e| json_error("state", e))?,
        status: json::status_string(&state.status).map_err(|e| json_error("status", e))?,
        status_name: state.status.name(),
        terminal: state.status.is_terminal(),
        wake: state.wake_at().map(millis),
        context,
    })
}

/// History entries to append.
#[derive(Default)]
struct History {
    saga: Vec<String>,
    n: Vec<i64>,
    event: Vec<String>,
}

impl History {
    /// Encodes `events`, before anything is added.
    fn encode<'e>(events: impl Iterator<Item = &'e SagaEvent>) -> Result<Vec<String>, StoreError> {
        events.map(|e| encode_event(e, EntryForm::Time)).collect()
    }

    /// Adds entries [`History::encode`] encoded (infallible, so that a row and its history are
    /// added together or not at all).
    fn push(&mut self, id: &str, from: i64, encoded: Vec<String>) {
        for (n, event) in (from..).zip(encoded) {
            self.saga.push(id.to_owned());
            self.n.push(n);
            self.event.push(event);
        }
    }

    /// Only the entries of the sagas in `keep`.
    fn retain(&mut self, keep: &HashSet<String>) {
        let mut kept = History::default();
        for ((saga, n), event) in self.saga.drain(..).zip(&self.n).zip(&self.event) {
            if keep.contains(&saga) {
                kept.saga.push(saga);
                kept.n.push(*n);
                kept.event.push(event.clone());
            }
        }
        *self = kept;
    }

    async fn append(&self, client: &impl GenericClient, sql: &Sql) -> Result<(), StoreError> {
        if self.saga.is_empty() {
            return Ok(());
        }
        let statement = prepared(client, &sql.append_history).await?;
        client
            .execute(&statement, &[&self.saga, &self.n, &self.event])
            .await
            .map_err(pg_error)?;
        Ok(())
    }
}

/// New sagas' rows and first history entries.
#[derive(Default)]
pub(super) struct NewRows {
    id: Vec<String>,
    saga_type: Vec<&'static str>,
    steps: Vec<String>,
    status: Vec<String>,
    status_name: Vec<&'static str>,
    terminal: Vec<bool>,
    state: Vec<String>,
    context: Vec<Vec<u8>>,
    key: Vec<Option<String>>,
    events: Vec<i64>,
    token: Vec<i64>,
    owner: Vec<Option<String>>,
    lease_until: Vec<Option<i64>>,
    wake: Vec<Option<i64>>,
    created_at: Vec<i64>,
    updated_at: Vec<i64>,
    /// Each row's lease, as its creator learns it.
    leases: Vec<Option<Lease>>,
    history: History,
}

impl NewRows {
    /// Adds `saga` with its first `writes` folded in; the lease its creator asked for (token 1)
    /// unless they end it.
    pub(super) fn push(&mut self, saga: &NewSaga, writes: &[Write]) -> Result<(), StoreError> {
        let id = saga.id.to_string();
        let mut state = saga.initial_state();
        let folded = fold(&mut state, writes)?;
        let context = match folded.context {
            Some(context) => context,
            None => saga
                .context
                .to_json()
                .map_err(|e| json_error("the context does not serialize", e))?
                .to_vec(),
        };
        let created_at = millis(saga.started.at);
        let lease = match &saga.lease {
            Some(lease) if !folded.terminal => Some(Lease {
                owner: lease.owner.clone(),
                token: 1,
                expires_at: time(expiry(lease.duration)),
            }),
            _ => None,
        };
        let history =
            History::encode(std::iter::once(&saga.started).chain(writes.iter().map(|w| &w.event)))?;
        let steps = json::steps_string(&saga.steps).map_err(|e| json_error("steps", e))?;
        // Nothing fails past this point: every column gets its value.
        self.history.push(&id, 0, history);
        self.steps.push(steps);
        self.id.push(id);
        self.saga_type.push(saga.saga_type);
        self.status.push(folded.status);
        self.status_name.push(folded.status_name);
        self.terminal.push(folded.terminal);
        self.state.push(folded.state);
        self.context.push(context);
        self.key.push(saga.idempotency_key.clone());
        self.events.push(1 + writes.len() as i64);
        self.token.push(i64::from(saga.lease.is_some()));
        self.owner
            .push(lease.as_ref().map(|lease| lease.owner.to_string()));
        self.lease_until
            .push(lease.as_ref().map(|lease| millis(lease.expires_at)));
        self.wake.push(folded.wake);
        self.created_at.push(created_at);
        self.updated_at
            .push(writes.last().map_or(created_at, |w| millis(w.event.at)));
        self.leases.push(lease);
        Ok(())
    }

    /// The version and owner the row `index` was pushed with (to recognise it after a retry).
    pub(super) fn pushed(&self, index: usize) -> (u64, Option<&str>) {
        (
            u64::try_from(self.events[index]).unwrap_or(0),
            self.owner[index].as_deref(),
        )
    }

    /// Inserts the rows whose id and idempotency key are free, with their history; for each row
    /// pushed, whether it was inserted (`None`: its id or key is taken).
    pub(super) async fn insert(
        mut self,
        client: &impl GenericClient,
        sql: &Sql,
    ) -> Result<Vec<Option<Created>>, StoreError> {
        if self.id.is_empty() {
            return Ok(Vec::new());
        }
        let statement = prepared(client, &sql.insert_sagas).await?;
        let rows = client
            .query(
                &statement,
                &[
                    &self.id,
                    &self.saga_type,
                    &self.steps,
                    &self.status,
                    &self.status_name,
                    &self.terminal,
                    &self.state,
                    &self.context,
                    &self.key,
                    &self.events,
                    &self.token,
                    &self.owner,
                    &self.lease_until,
                    &self.wake,
                    &self.created_at,
                    &self.updated_at,
                ],
            )
            .await
            .map_err(pg_error)?;
        let inserted: HashSet<String> = rows.iter().map(|row| row.get(0)).collect();
        if inserted.len() < self.id.len() {
            self.history.retain(&inserted);
        }
        self.history.append(client, sql).await?;
        Ok(self
            .id
            .iter()
            .zip(&self.events)
            .zip(self.leases)
            .map(|((id, events), lease)| {
                inserted.contains(id).then(|| Created::New {
                    version: u64::try_from(*events).unwrap_or(0),
                    lease,
                })
            })
            .collect())
    }
}

/// New states of existing sagas, and their new history entries.
#[derive(Default)]
pub(super) struct Updates {
    id: Vec<String>,
    state: Vec<String>,
    status: Vec<String>,
    status_name: Vec<&'static str>,
    terminal: Vec<bool>,
    context: Vec<Option<Vec<u8>>>,
    events: Vec<i64>,
    wake: Vec<Option<i64>>,
    updated_at: Vec<i64>,
    history: History,
}

impl Updates {
    /// Adds saga `id`, whose state is `state` at version `events`, with `writes`; its new
    /// version.
    pub(super) fn push(
        &mut self,
        id: &str,
        mut state: SagaState,
        events: i64,
        writes: &[Write],
    ) -> Result<u64, StoreError> {
        let folded = fold(&mut state, writes)?;
        let history = History::encode(writes.iter().map(|w| &w.event))?;
        let version = events + writes.len() as i64;
        // Nothing fails past this point: every column gets its value.
        self.history.push(id, events, history);
        self.id.push(id.to_owned());
        self.state.push(folded.state);
        self.status.push(folded.status);
        self.status_name.push(folded.status_name);
        self.terminal.push(folded.terminal);
        self.context.push(folded.context);
        self.events.push(version);
        self.wake.push(folded.wake);
        self.updated_at.push(
            writes
                .last()
                .map_or_else(|| millis(SystemTime::now()), |w| millis(w.event.at)),
        );
        Ok(u64::try_from(version).unwrap_or(0))
    }

    /// Updates the rows (which the caller locked) and appends their history. A saga that ends
    /// no longer has a lease.
    pub(super) async fn apply(
        &self,
        client: &impl GenericClient,
        sql: &Sql,
    ) -> Result<(), StoreError> {
        if self.id.is_empty() {
            return Ok(());
        }
        let statement = prepared(client, &sql.update_sagas).await?;
        client
            .execute(
                &statement,
                &[
                    &self.id,
                    &self.state,
                    &self.status,
                    &self.status_name,
                    &self.terminal,
                    &self.context,
                    &self.events,
                    &self.wake,
                    &self.updated_at,
                ],
            )
            .await
            .map_err(pg_error)?;
        self.history.append(client, sql).await
    }
}
