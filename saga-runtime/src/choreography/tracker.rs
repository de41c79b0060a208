//! The tracker: follows the messages of choreographed sagas into an engine's store, so that each
//! has a status and a history like an orchestrated saga (and the CLI and the dashboard show it).

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;

use super::envelope::{After, FlowEnvelope, FlowMessage};
use super::{Choreography, HandlerInfo};
use crate::bus::subject::{check_consumer, token_of};
use crate::bus::{Bus, BusError};
use crate::event::{SagaEvent, SagaEventKind};
use crate::machine::{Change, CompensationFailed, CompletedStep, StepFailed, Write};
use crate::store::{Acquire, LeaseRequest, NewSaga, SagaRecord, StoredContext};
use crate::{Engine, OutputValue, RollbackCause, SagaError, SagaId, SagaStatus};

/// Who holds a tracked saga: the tracker, for good, so that no worker ever takes one to run.
const TRACKER: &str = "choreography-tracker";
/// The tracker's lease on a tracked saga: it never runs out in practice.
const FOREVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
/// How long a message the store could not take for now waits before it comes again.
const AGAIN: Duration = Duration::from_millis(200);

/// A flow the tracker follows.
#[derive(Clone, Copy)]
struct Flow {
    name: &'static str,
    handlers: &'static [HandlerInfo],
    start: &'static str,
    end: &'static str,
}

impl Flow {
    fn step(&self, handler: &str) -> Option<usize> {
        self.handlers.iter().position(|h| h.handler == handler)
    }

    fn steps(&self) -> Vec<&'static str> {
        self.handlers.iter().map(|h| h.handler).collect()
    }
}

/// Follows the messages of choreographed sagas into `engine`'s store: each saga is recorded
/// under its flow's name with the flow's handlers as its steps, its history written as its
/// events come (a handler's event is its step completed, with the event as the step's output),
/// its status kept (running the handler an event goes to, compensating, completed, compensated,
/// compensation failed). Any process may run one; trackers share the work. A tracked saga is
/// held by the tracker for good, so no worker ever takes it to run.
///
/// ```no_run
/// # async fn run(bus: std::sync::Arc<dyn saga_runtime::bus::Bus>, engine: saga_runtime::Engine) {
/// # use saga_runtime::choreography::{Choreography, HandlerInfo, Event};
/// # #[derive(serde::Serialize, serde::Deserialize)] struct Placed;
/// # impl Event for Placed { const NAME: &'static str = "order.placed"; }
/// # struct OrderFlow;
/// # impl Choreography for OrderFlow {
/// #     const NAME: &'static str = "OrderFlow";
/// #     type Start = Placed;
/// #     type End = Placed;
/// #     const HANDLERS: &'static [HandlerInfo] = &[];
/// # }
/// use saga_runtime::choreography::Tracker;
///
/// Tracker::new(bus, &engine).flow::<OrderFlow>().run().await.unwrap();
/// # }
/// ```
pub struct Tracker {
    bus: Arc<dyn Bus>,
    engine: Engine,
    flows: Vec<Flow>,
}

impl Tracker {
    /// A tracker writing to `engine`'s store, following no flow yet.
    pub fn new(bus: Arc<dyn Bus>, engine: &Engine) -> Self {
        Tracker {
            bus,
            engine: engine.clone(),
            flows: Vec::new(),
        }
    }

    /// Follows flow `F` too.
    pub fn flow<F: Choreography>(mut self) -> Self {
        self.flows.push(Flow {
            name: F::NAME,
            handlers: F::HANDLERS,
            start: <F::Start as super::Event>::NAME,
            end: <F::End as super::Event>::NAME,
        });
        self
    }

    /// Follows the flows for as long as it is not dropped (subscribing again while the bus is
    /// unavailable); returns only if a flow's name cannot make a consumer name.
    pub async fn run(self) -> Result<(), BusError> {
        let mut following = tokio::task::JoinSet::new();
        for flow in self.flows.iter().copied() {
            let token = token_of(flow.name);
            let name = format!("tracker-{token}");
            check_consumer(&name)?;
            let filter = format!("choreo.{token}.>");
            let (bus, engine) = (Arc::clone(&self.bus), self.engine.clone());
            following.spawn(follow(bus, engine, flow, name, filter));
        }
        while let Some(followed) = following.join_next().await {
            if let Ok(Err(error)) = followed {
                return Err(error);
            }
        }
        Ok(())
    }
}

/// Follows one flow's messages, one at a time, in the order the bus has them.
async fn follow(
    bus: Arc<dyn Bus>,
    engine: Engine,
    flow: Flow,
    name: String,
    filter: String,
) -> Result<(), BusError> {
    loop {
        let mut deliveries = crate::bus::subscribe(&*bus, &name, &filter, None).await?;
        while let Some(delivery) = deliveries.next().await {
            let delivery = match delivery {
                Ok(delivery) => delivery,
                Err(error) => {
                    tracing::warn!(consumer = name, %error, "the bus failed a delivery");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let envelope: FlowEnvelope = match serde_json::from_slice(delivery.payload()) {
                Ok(envelope) => envelope,
                Err(error) => {
                    tracing::warn!(consumer = name, %error, "a message that is not a flow envelope was dropped");
                    let _ = delivery.ack().await;
                    continue;
                }
            };
            match record(&engine, flow, &envelope).await {
                Ok(()) => {
                    let _ = delivery.ack().await;
                }
                Err(error) => {
                    tracing::debug!(saga.id = %envelope.saga_id, %error, "not recorded yet");
                    let _ = delivery.nak(AGAIN).await;
                }
            }
        }
    }
}

/// Records what `envelope` says of its saga, unless it is recorded already.
async fn record(engine: &Engine, flow: Flow, envelope: &FlowEnvelope) -> Result<(), SagaError> {
    let store = &engine.inner.store;
    let id = envelope.saga_id;
    let Some(record) = store.load(id).await? else {
        return match &envelope.message {
            FlowMessage::Event {
                by: None, payload, ..
            } => create(engine, flow, id, payload).await,
            // Its start is not recorded yet: this comes again.
            _ => Err(SagaError::NotFound(id)),
        };
    };
    if record.state.status.is_terminal() {
        return Ok(());
    }
    let writes = writes(flow, &record, envelope);
    if writes.is_empty() {
        return Ok(());
    }
    // The tracker writes under its own lease; one that is not there any more (an operator
    // reopened the saga, say) is taken again, as the tracker's.
    let held = record
        .lease
        .as_ref()
        .filter(|lease| &*lease.owner == TRACKER);
    let fence = match (held, record.fence()) {
        (Some(_), Some(fence)) => fence,
        _ => {
            let request = Acquire::new(LeaseRequest::new(TRACKER, FOREVER), 1).only(id);
            let taken = store.acquire(request).await?.into_iter().next();
            match taken.and_then(|taken| taken.ok()).and_then(|r| r.fence()) {
                Some(fence) => fence,
                // Held by a live worker: this comes again.
                None => return Err(SagaError::NotFound(id)),
            }
        }
    };
    store.write(id, fence, &mut { writes }).await?;
    Ok(())
}

/// Records saga `id` of `flow`, started by `payload`, waiting for the handlers that take it.
async fn create(
    engine: &Engine,
    flow: Flow,
    id: SagaId,
    payload: &serde_json::Value,
) -> Result<(), SagaError> {
    let now = SystemTime::now();
    let steps = flow.steps();
    let started = event(
        flow,
        id,
        now,
        SagaEventKind::SagaStarted {
            steps: steps.iter().map(|s| Cow::Borrowed(*s)).collect(),
        },
    );
    // A JSON value always writes as JSON.
    let context = serde_json::to_vec(payload).unwrap_or_default();
    let mut saga = NewSaga::new(id, flow.name, steps, StoredContext::json(context), started);
    saga.lease = Some(LeaseRequest::new(TRACKER, FOREVER));
    let mut writes = taken_by(flow, None, id, now, flow.start);
    engine.inner.store.create(saga, &mut writes).await?;
    Ok(())
}

/// The writes that start the handler that takes event `name` (none for the flow's end, nor for
/// a handler recorded as started or done already: a message that came late).
fn taken_by(
    flow: Flow,
    state: Option<&crate::machine::SagaState>,
    id: SagaId,
    at: SystemTime,
    name: &str,
) -> Vec<Write> {
    let mut writes = Vec::new();
    for (step, handler) in flow.handlers.iter().enumerate() {
        if handler.on != name {
            continue;
        }
        let seen = state.is_some_and(|state| {
            state.acting(step, crate::Phase::Action)
                || state.completed.iter().any(|done| done.step == step)
        });
        if seen {
            continue;
        }
        let started = SagaEventKind::StepStarted {
            step: Cow::Borrowed(handler.handler),
            phase: crate::Phase::Action,
            attempt: 1,
        };
        let change = Change::AttemptStarted {
            step,
            phase: crate::Phase::Action,
            attempt: 1,
        };
        writes.push(
            Write::new(event(flow, id, at, started), change)
                .with_status(Some(SagaStatus::Running { step })),
        );
    }
    writes
}

/// What `envelope` adds to the history of saga `record` (nothing when it is recorded already).
fn writes(flow: Flow, record: &SagaRecord, envelope: &FlowEnvelope) -> Vec<Write> {
    let (id, state, now) = (record.id, &record.state, SystemTime::now());
    let elapsed = now.duration_since(record.created_at).unwrap_or_default();
    let at = |kind| event(flow, id, now, kind);
    let name = |handler: &str| -> Cow<'static, str> {
        match flow.handlers.iter().find(|h| h.handler == handler) {
            Some(h) => Cow::Borrowed(h.handler),
            None => Cow::Owned(handler.to_owned()),
        }
    };
    match &envelope.message {
        FlowMessage::Event { by: None, .. } => Vec::new(),
        FlowMessage::Event {
            by: Some(handler),
            name: emitted,
            payload,
        } => {
            let Some(step) = flow.step(handler) else {
                return Vec::new();
            };
            if state.completed.iter().any(|done| done.step == step) {
                return Vec::new();
            }
            let output = OutputValue::from_json(payload.clone());
            let completed = SagaEventKind::StepCompleted {
                step: name(handler),
                attempt: 1,
                duration: Duration::ZERO,
                output: Some(output.clone()),
            };
            let change =
                Change::CompletedWithOutput(Box::new((CompletedStep::new(step, false), output)));
            let mut writes = vec![Write::new(at(completed), change)];
            match *emitted == flow.end {
                true => writes.push(
                    Write::new(
                        at(SagaEventKind::SagaCompleted { duration: elapsed }),
                        Change::None,
                    )
                    .with_status(Some(SagaStatus::Completed)),
                ),
                // A message that came after the rollback started starts nothing.
                false if state.rollback.is_some() => {}
                false => writes.extend(taken_by(flow, Some(state), id, now, emitted)),
            }
            writes
        }
        FlowMessage::Undo { handler, after } => {
            let mut writes = rolled(flow, record, after, now);
            if let Some(step) = flow.step(handler) {
                let started = state.acting(step, crate::Phase::Compensation);
                if !started && !undone(record, step) {
                    let kind = SagaEventKind::StepStarted {
                        step: name(handler),
                        phase: crate::Phase::Compensation,
                        attempt: 1,
                    };
                    let change = Change::AttemptStarted {
                        step,
                        phase: crate::Phase::Compensation,
                        attempt: 1,
                    };
                    writes.push(
                        Write::new(at(kind), change)
                            .with_status(Some(SagaStatus::Compensating { step })),
                    );
                }
            }
            writes
        }
        FlowMessage::Compensated { after } => {
            let mut writes = rolled(flow, record, after, now);
            writes.push(
                Write::new(
                    at(SagaEventKind::SagaCompensated { duration: elapsed }),
                    Change::None,
                )
                .with_status(Some(SagaStatus::Compensated)),
            );
            writes
        }
        FlowMessage::Stuck { handler, error } => {
            let step = flow.step(handler).unwrap_or_default();
            vec![
                Write::new(
                    at(SagaEventKind::CompensationFailed {
                        step: name(handler),
                        attempt: 1,
                        error: error.clone(),
                    }),
                    Change::CompensationFailed(Box::new(CompensationFailed::new(
                        step,
                        error.clone(),
                    ))),
                ),
                Write::new(
                    at(SagaEventKind::SagaFailed {
                        step: name(handler),
                        error: error.clone(),
                        compensation: true,
                    }),
                    Change::None,
                )
                .with_status(Some(SagaStatus::CompensationFailed { step })),
            ]
        }
    }
}

/// What a rollback message says happened before it, unless recorded already: the failure that
/// started the rollback, or the compensation that completed.
fn rolled(flow: Flow, record: &SagaRecord, after: &After, now: SystemTime) -> Vec<Write> {
    let (id, state) = (record.id, &record.state);
    let at = |kind| event(flow, id, now, kind);
    let mut writes = Vec::new();
    if let Some((handler, error)) = &after.failed {
        if let (Some(step), None) = (flow.step(handler), &state.rollback) {
            let name = Cow::Borrowed(flow.handlers[step].handler);
            let failed = SagaEventKind::StepFailed {
                step: name.clone(),
                attempt: 1,
                error: error.clone(),
            };
            let cause = RollbackCause::StepFailed {
                step,
                error: error.clone(),
            };
            let reason = RollbackCause::StepFailed {
                step: name,
                error: error.clone(),
            };
            writes.push(Write::new(
                at(failed),
                Change::StepFailed(Box::new(StepFailed::new(step, error.clone()))),
            ));
            writes.push(Write::new(
                at(SagaEventKind::CompensationStarted { reason }),
                Change::RollbackStarted(Box::new(cause)),
            ));
        }
    }
    if let Some(handler) = &after.undone {
        if let Some(step) = flow.step(handler).filter(|step| !undone(record, *step)) {
            let compensated = SagaEventKind::StepCompensated {
                step: Cow::Borrowed(flow.handlers[step].handler),
                attempt: 1,
            };
            writes.push(Write::new(at(compensated), Change::Compensated { step }));
        }
    }
    writes
}

/// Whether step `step`'s work was undone.
fn undone(record: &SagaRecord, step: usize) -> bool {
    record
        .state
        .completed
        .iter()
        .any(|done| done.step == step && done.compensated)
}

fn event(flow: Flow, id: SagaId, at: SystemTime, kind: SagaEventKind) -> SagaEvent {
    SagaEvent {
        saga_id: id,
        saga_type: Cow::Borrowed(flow.name),
        at,
        kind,
    }
}

/// The status of choreographed saga `id` of flow `F`, as the tracker recorded it, with its
/// handlers' names; `None` if no tracker recorded it (yet).
pub async fn status<F: Choreography>(
    engine: &Engine,
    id: SagaId,
) -> Result<Option<SagaStatus<&'static str>>, SagaError> {
    let Some(record) = engine.inner.store.load(id).await? else {
        return Ok(None);
    };
    Ok(Some(record.state.status.map(|step| {
        F::HANDLERS.get(step).map_or("", |h| h.handler)
    })))
}
