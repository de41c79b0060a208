//! How a run's transitions reach the store: recorded into the run's state at once, committed
//! at the next flush (with the saga itself, the first time), then traced and published; and
//! the durability boundaries between those steps.

use std::sync::Arc;

use tracing::level_filters::LevelFilter;

use super::{event, Run, Unrecorded};
use crate::engine::Engine;
use crate::event::{SagaEvent, SagaEventKind};
use crate::machine::{Change, StepTable, Write};
use crate::store::{Created, Fence, LeaseRequest, StoreErrorKind, StoredContext};
use crate::{SagaError, SagaKind, SagaStatus};

impl<S: SagaKind> Run<S> {
    /// Records a transition: applied to this run's state at once, handed to the store (then
    /// traced and published) at the next [`Run::flush`].
    pub(super) fn record(
        &mut self,
        kind: SagaEventKind,
        change: Change,
        status: Option<SagaStatus<usize>>,
    ) {
        // Built in place (a write is a few hundred bytes, and every transition makes one), at
        // the time of the last look at the clock.
        let write = Write {
            event: event(self.table.name, self.id, self.clock, kind),
            change,
            status,
            context: None,
        };
        self.push(write);
    }

    /// Records a write: applied to this run's state at once, handed to the store at the next
    /// flush.
    pub(super) fn push(&mut self, write: Write) {
        self.state.apply(&write);
        if self.pending.capacity() == 0 {
            self.pending = super::spare::take();
        }
        self.pending.push(write);
    }

    /// Sets the status of the last recorded write (computed from the state it left).
    pub(super) fn set_status(&mut self, status: Option<SagaStatus<usize>>) {
        if let (Some(status), Some(last)) = (status, self.pending.last_mut()) {
            self.state.status = status.clone();
            last.status = Some(status);
        }
    }

    /// The committed context, for a write.
    pub(super) fn context(&self) -> StoredContext {
        StoredContext::live(Arc::clone(&self.committed))
    }

    /// Hands the recorded transitions to the store (with the saga itself, the first time), then
    /// to tracing and subscribers: a subscriber only ever sees what the store has. Returns
    /// whether the store made it wait (a store that answers at once takes no time worth looking
    /// at the clock again for).
    pub(super) async fn flush(&mut self) -> Result<bool, SagaError> {
        if self.pending.is_empty() && self.unrecorded.is_none() {
            return Ok(false);
        }
        let subscribed = self.engine.inner.events.has_subscribers();
        // Events are traced and published once the store has them; copies are kept for that
        // only when someone listens.
        let traced = LevelFilter::current() != LevelFilter::OFF;
        let announced: Vec<SagaEvent> = match subscribed || traced {
            true => self
                .unrecorded
                .as_ref()
                .map(|u| u.saga.started.clone())
                .into_iter()
                .chain(self.pending.iter().map(|w| w.event.clone()))
                .collect(),
            false => Vec::new(),
        };
        #[cfg(any(feature = "testing", all(feature = "failpoints", debug_assertions)))]
        let checkpoints: Vec<(&'static str, String)> = self
            .pending
            .iter()
            .filter_map(|w| match &w.event.kind {
                SagaEventKind::StepCompleted { step, .. } => {
                    Some(("after_checkpoint", step.to_string()))
                }
                SagaEventKind::StepCompensated { step, .. } => {
                    Some(("after_compensation_checkpoint", step.to_string()))
                }
                _ => None,
            })
            .collect();
        let waited = match self.unrecorded.take() {
            Some(unrecorded) => self.create(unrecorded).await?,
            None => {
                let mut answer = match &self.slot {
                    Some(slot) => slot.write(self.fence, &mut self.pending),
                    None => (self.engine.inner.store).write(self.id, self.fence, &mut self.pending),
                };
                super::spare::give_back(std::mem::take(&mut self.pending));
                let waited = !answer.is_ready();
                // Awaited in place: moved into the await, the answer would be kept twice.
                let written = (&mut answer).await;
                match written {
                    Ok(version) => self.fence.version = version,
                    Err(error) => {
                        // Refused as stale: another worker holds the saga now, or finished it
                        // (a terminal saga refuses every write before looking at the token).
                        if matches!(
                            error.kind(),
                            StoreErrorKind::Fenced | StoreErrorKind::Conflict
                        ) {
                            self.engine.inner.count_fenced();
                            self.table.metrics().fenced();
                        }
                        return Err(error.into());
                    }
                }
                waited
            }
        };
        // The participants' replies it recorded are committed: they can go.
        if let Some(remote) = &self.engine.inner.remote {
            remote.settle(self.id);
        }
        #[cfg(any(feature = "testing", all(feature = "failpoints", debug_assertions)))]
        for (point, step) in checkpoints {
            self.boundary(point, &step)?;
        }
        self.announce_traced(announced, traced, subscribed);
        // Whoever follows this saga's steps reads its history again.
        self.engine.inner.watchers.wake(self.id);
        Ok(waited)
    }

    /// Traces and publishes events the store already has.
    pub(super) fn announce(&self, events: Vec<SagaEvent>) {
        let subscribed = self.engine.inner.events.has_subscribers();
        let traced = LevelFilter::current() != LevelFilter::OFF;
        self.announce_traced(events, traced, subscribed);
    }

    pub(super) fn announce_traced(&self, events: Vec<SagaEvent>, traced: bool, subscribed: bool) {
        for event in events {
            if traced {
                crate::event::trace(&event.kind);
            }
            if subscribed {
                self.engine.inner.events.publish(event);
            }
        }
    }

    /// Records the saga with the pending transitions; tells whoever waits which saga holds
    /// the id. Returns whether the store made it wait.
    pub(super) async fn create(&mut self, unrecorded: Box<Unrecorded>) -> Result<bool, SagaError> {
        // Recorded once per type and engine, on a shared store: boxed, so that the run's
        // future (which every poll moves around) does not carry that rare one's state.
        if self.engine.records_type(self.table) {
            if let Err(error) = Box::pin(self.engine.record_type(self.table)).await {
                return self.created(unrecorded.recorded, Err(error), true);
            }
        }
        // Taken apart only now: the new saga is not kept in the future while the type is
        // recorded.
        let Unrecorded { saga, recorded } = *unrecorded;
        let (created, waited) = {
            let store = &self.engine.inner.store;
            let mut answer = store.create(saga, &mut self.pending);
            super::spare::give_back(std::mem::take(&mut self.pending));
            let waited = !answer.is_ready();
            // Awaited in place: moved into the await, the answer would be kept twice.
            ((&mut answer).await, waited)
        };
        self.created(recorded, created, waited)
    }

    /// What a creation that waited (`waited`) for the store's answer `created` leaves: the
    /// fence and slot of a new saga, the answer to whoever waits for it (`recorded`), and the
    /// run's result.
    fn created(
        &mut self,
        recorded: Option<tokio::sync::oneshot::Sender<Result<crate::SagaId, SagaError>>>,
        created: Result<Created, crate::store::StoreError>,
        waited: bool,
    ) -> Result<bool, SagaError> {
        let (told, result) = match created {
            Ok(Created::New { version, lease }) => {
                self.table.metrics().started();
                if self.engine.inner.shared {
                    self.cancel.leased();
                }
                self.fence = Fence {
                    token: lease.map_or(0, |l| l.token),
                    version,
                };
                self.slot = self.engine.inner.store.slot(self.id);
                (Ok(self.id), Ok(waited))
            }
            Ok(Created::Existing(record)) => (
                Ok(record.id),
                Err(SagaError::AlreadyExists { id: record.id }),
            ),
            Err(error) => (
                Err(SagaError::Store(error.clone())),
                Err(SagaError::Store(error)),
            ),
        };
        if let Some(recorded) = recorded {
            // A caller that went away no longer needs the answer.
            let _ = recorded.send(told);
        }
        if result.is_ok() {
            self.boundary("after_start_commit", "saga")?;
        }
        result
    }

    /// A durability boundary: where the crash tests' failpoints abort the process, and where the
    /// test kit's crash explorer stops this engine (its store refuses everything from then on).
    #[inline]
    pub(super) fn boundary(&self, point: &'static str, step: &str) -> Result<(), SagaError> {
        crate::failpoint::hit(point, step);
        #[cfg(feature = "testing")]
        if let Some(kit) = &self.engine.inner.kit {
            if kit.boundary(point, step) {
                return Err(SagaError::Store(crate::store::StoreError::new(
                    StoreErrorKind::Unavailable,
                    format!("the process crashed at {point}@{step} (test kit)"),
                )));
            }
        }
        Ok(())
    }
}

impl Engine {
    /// Records the shape of definition `table` in a shared store, the first time this engine
    /// starts (or enqueues) one of its sagas: tools draw the type from there (`saga graph`).
    pub(crate) async fn record_type<C, D>(
        &self,
        table: &StepTable<C, D>,
    ) -> Result<(), crate::store::StoreError> {
        if !self.records_type(table) {
            return Ok(());
        }
        let shape = crate::SagaShape::from(&table.description());
        self.inner.store.record_type(shape).await?;
        self.types_recorded().insert(table.steps.as_ptr() as usize);
        Ok(())
    }

    /// Whether the shape of definition `table` is still to be recorded by this engine. A
    /// definition is known by its steps' address: `saga!`'s are one static per type, a built
    /// one's are shared by every equal definition. (A type whose built definitions differ keeps,
    /// in the store, the shape of whichever definition this engine started first of those it
    /// had not started before.)
    pub(crate) fn records_type<C, D>(&self, table: &StepTable<C, D>) -> bool {
        self.inner.shared
            && !self
                .types_recorded()
                .contains(&(table.steps.as_ptr() as usize))
    }

    fn types_recorded(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<usize>> {
        // A panic while it was held left it whole: every change is one insert.
        self.inner
            .types_recorded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// The lease this engine takes on a saga it starts or acquires.
    pub(crate) fn lease_request(&self) -> LeaseRequest {
        LeaseRequest::new(self.inner.worker.id.clone(), self.inner.lease_for_store())
    }
}
