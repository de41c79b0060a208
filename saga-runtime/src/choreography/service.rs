//! One service's part of a choreographed saga: its handlers, each on the events it takes, and
//! the compensations asked of it.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::StreamExt;

use super::envelope::{event_subject, After, Done, FlowEnvelope, FlowMessage};
use super::{publish, Choreography, Event, Handler, HandlerCx, HandlerInfo, HandlerPolicy};
use crate::bus::subject::{check_consumer, check_filter, token_of};
use crate::bus::{Bus, BusError, BusErrorKind, Delivery};
use crate::StepError;

/// How long a delivery that could not be finished for now (its next message not published)
/// waits before it comes again.
const AGAIN: Duration = Duration::from_millis(200);

/// A handler run on its event as JSON, the event it emits as JSON.
type HandleFn<D> =
    fn(serde_json::Value, HandlerCx<D>) -> BoxFuture<'static, Result<serde_json::Value, StepError>>;

/// A compensation run on the events as JSON.
type CompensateFn<D> = fn(
    serde_json::Value,
    serde_json::Value,
    HandlerCx<D>,
) -> BoxFuture<'static, Result<(), StepError>>;

/// One handler, its events and results as JSON.
struct Erased<D> {
    info: HandlerInfo,
    policy: HandlerPolicy,
    handle: HandleFn<D>,
    compensate: CompensateFn<D>,
}

/// One service of a choreographed saga's flow: runs its handlers on the events they take, and
/// their compensations when asked. Made by the flow (`OrderFlow::inventory(bus, deps)`, one
/// function per service `choreography!` lists); several instances of a service share its work.
pub struct FlowService<D> {
    bus: Arc<dyn Bus>,
    flow: &'static str,
    service: &'static str,
    deps: Arc<D>,
    handlers: Vec<Erased<D>>,
    concurrency: usize,
    /// The messages being handled here: one delivered again meanwhile is left to the first.
    at_work: Mutex<HashSet<String>>,
}

/// What a consumer of the service feeds.
#[derive(Clone, Copy)]
enum Role {
    /// The events handler `i` takes.
    Events(usize),
    /// The compensations asked of the service.
    Undo,
}

impl<D: Send + Sync + 'static> FlowService<D> {
    /// Service `service` of flow `F`, with no handlers yet.
    #[doc(hidden)]
    pub fn new<F: Choreography>(bus: Arc<dyn Bus>, service: &'static str, deps: D) -> Self {
        FlowService {
            bus,
            flow: F::NAME,
            service,
            deps: Arc::new(deps),
            handlers: Vec::new(),
            concurrency: 256,
            at_work: Mutex::default(),
        }
    }

    /// Adds handler `H`.
    #[doc(hidden)]
    pub fn with<H: Handler<Deps = D>>(mut self) -> Self {
        self.handlers.push(Erased {
            info: HandlerInfo::of::<H>(self.service),
            policy: H::POLICY,
            handle: handle::<H>,
            compensate: compensate::<H>,
        });
        self
    }

    /// How many messages this instance handles at once (default 256).
    pub fn concurrency(mut self, messages: usize) -> Self {
        self.concurrency = messages.max(1);
        self
    }

    /// Runs the service for as long as it is not dropped: its handlers on the events they take,
    /// its compensations when asked. While the bus is unavailable it subscribes again every
    /// second; it returns only when a name of the flow cannot be a subject or consumer name.
    pub async fn run(self) -> Result<(), BusError> {
        let flow = token_of(self.flow);
        let mut consumers = Vec::new();
        for (i, handler) in self.handlers.iter().enumerate() {
            let name = format!("{flow}-{}-on-{}", self.service, handler.info.handler);
            let filter = event_subject(&flow, handler.info.on);
            consumers.push((name, filter, Role::Events(i)));
        }
        consumers.push((
            format!("{flow}-{}-undo", self.service),
            format!("choreo.{flow}.undo.{}.*", self.service),
            Role::Undo,
        ));
        for (name, filter, _) in &consumers {
            check_consumer(name)?;
            check_filter(filter)?;
        }
        let room = Arc::new(tokio::sync::Semaphore::new(self.concurrency));
        let this = Arc::new(self);
        let mut serving = tokio::task::JoinSet::new();
        for (name, filter, role) in consumers {
            serving.spawn(Arc::clone(&this).serve(name, filter, role, Arc::clone(&room)));
        }
        while let Some(served) = serving.join_next().await {
            match served {
                Ok(Err(error)) => return Err(error),
                Ok(Ok(())) => {}
                Err(error) => {
                    return Err(BusError::new(
                        BusErrorKind::Unavailable,
                        format!("a consumer of service `{}` failed: {error}", this.service),
                    ))
                }
            }
        }
        Ok(())
    }

    /// Feeds one consumer's deliveries to `role`, each in a task of its own (at most `room` at
    /// once across the service), subscribing again whenever the subscription ends.
    async fn serve(
        self: Arc<Self>,
        name: String,
        filter: String,
        role: Role,
        room: Arc<tokio::sync::Semaphore>,
    ) -> Result<(), BusError> {
        let mut handling = tokio::task::JoinSet::new();
        loop {
            let mut deliveries = crate::bus::subscribe(&*self.bus, &name, &filter, None).await?;
            loop {
                let permit = tokio::select! {
                    permit = Arc::clone(&room).acquire_owned() => permit.expect("never closed"),
                    Some(_) = handling.join_next() => continue,
                };
                let delivery = tokio::select! {
                    delivery = deliveries.next() => delivery,
                    Some(_) = handling.join_next() => continue,
                };
                match delivery {
                    Some(Ok(delivery)) => {
                        let this = Arc::clone(&self);
                        handling.spawn(async move {
                            this.answer(role, delivery).await;
                            drop(permit);
                        });
                    }
                    Some(Err(error)) => {
                        tracing::warn!(consumer = name, %error, "the bus failed a delivery");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    None => break,
                }
            }
        }
    }

    /// Handles one delivery, unless it is being handled here already.
    async fn answer(&self, role: Role, delivery: Delivery) {
        let envelope: FlowEnvelope = match serde_json::from_slice(delivery.payload()) {
            Ok(envelope) => envelope,
            Err(error) => {
                tracing::warn!(
                    service = self.service,
                    subject = delivery.subject(),
                    %error,
                    "a message that is not a flow envelope was dropped"
                );
                let _ = delivery.ack().await;
                return;
            }
        };
        // Two handlers of this service may take the same message: each its own.
        let id = match role {
            Role::Events(i) => format!("{}:{}", self.handlers[i].info.handler, delivery.id()),
            Role::Undo => format!("undo:{}", delivery.id()),
        };
        if !lock(&self.at_work).insert(id.clone()) {
            return;
        }
        match role {
            Role::Events(i) => self.on_event(&self.handlers[i], envelope, delivery).await,
            Role::Undo => self.on_undo(envelope, delivery).await,
        }
        lock(&self.at_work).remove(&id);
    }

    /// Runs `handler` on an event; emits its event, or fails the saga.
    async fn on_event(&self, handler: &Erased<D>, envelope: FlowEnvelope, delivery: Delivery) {
        let FlowMessage::Event { payload, .. } = &envelope.message else {
            let _ = delivery.ack().await;
            return;
        };
        let cx = self.cx(&envelope, handler.info.handler, false, &delivery);
        let run = (handler.handle)(payload.clone(), cx);
        let result = guarded(run, handler.policy.timeout).await;
        let next = match result {
            Ok(emitted) => {
                let mut trail = envelope.trail.clone();
                if handler.info.undo {
                    trail.push(Done {
                        service: self.service.to_owned(),
                        handler: handler.info.handler.to_owned(),
                        on: payload.clone(),
                        emitted: emitted.clone(),
                    });
                }
                envelope.next(
                    FlowMessage::Event {
                        name: handler.info.emits.to_owned(),
                        payload: emitted,
                        by: Some(handler.info.handler.to_owned()),
                    },
                    trail,
                )
            }
            Err(error)
                if error.is_retryable() && delivery.delivered() <= handler.policy.retries =>
            {
                let _ = delivery.nak(handler.policy.backoff).await;
                return;
            }
            Err(error) => {
                let after = After {
                    failed: Some((handler.info.handler.to_owned(), error)),
                    undone: None,
                };
                rollback(&envelope, envelope.trail.clone(), after)
            }
        };
        self.send(next, delivery).await;
    }

    /// Runs the compensation of the trail's last work; asks for the one before, or says the
    /// saga is compensated.
    async fn on_undo(&self, envelope: FlowEnvelope, delivery: Delivery) {
        let (FlowMessage::Undo { handler: name, .. }, Some(done)) =
            (&envelope.message, envelope.trail.last())
        else {
            let _ = delivery.ack().await;
            return;
        };
        let Some(handler) = self.handlers.iter().find(|h| h.info.handler == name) else {
            let error = StepError::permanent(format!(
                "service `{}` has no handler `{name}` to undo",
                self.service
            ));
            let stuck = FlowMessage::Stuck {
                handler: name.clone(),
                error,
            };
            let next = envelope.next(stuck, envelope.trail.clone());
            self.send(next, delivery).await;
            return;
        };
        let cx = self.cx(&envelope, handler.info.handler, true, &delivery);
        let run = (handler.compensate)(done.on.clone(), done.emitted.clone(), cx);
        let next = match guarded(run, handler.policy.timeout).await {
            Ok(()) => {
                let mut trail = envelope.trail.clone();
                trail.pop();
                let after = After {
                    failed: None,
                    undone: Some(name.clone()),
                };
                rollback(&envelope, trail, after)
            }
            Err(error)
                if error.is_retryable() && delivery.delivered() <= handler.policy.retries =>
            {
                let _ = delivery.nak(handler.policy.backoff).await;
                return;
            }
            Err(error) => {
                let stuck = FlowMessage::Stuck {
                    handler: name.clone(),
                    error,
                };
                envelope.next(stuck, envelope.trail.clone())
            }
        };
        self.send(next, delivery).await;
    }

    /// Publishes `message` (the one decision its handling came to), then acknowledges
    /// `delivery`. If it cannot be published for now, the delivery comes again (and the handler
    /// runs again under the same key; whatever it decides then, the bus keeps the first decision
    /// published, under the one id they share). One the bus refuses as invalid (an event name
    /// that cannot be a subject) never will be: said, and dropped.
    async fn send(&self, message: FlowEnvelope, delivery: Delivery) {
        match publish(&*self.bus, &message).await {
            Ok(()) => {
                let _ = delivery.ack().await;
            }
            Err(error) if error.kind() == BusErrorKind::Invalid => {
                tracing::error!(service = self.service, %error, "a flow message cannot be published; dropped");
                let _ = delivery.ack().await;
            }
            Err(error) => {
                tracing::warn!(service = self.service, %error, "a flow message was not published");
                let _ = delivery.nak(AGAIN).await;
            }
        }
    }

    fn cx(
        &self,
        envelope: &FlowEnvelope,
        handler: &'static str,
        compensation: bool,
        delivery: &Delivery,
    ) -> HandlerCx<D> {
        HandlerCx {
            saga_id: envelope.saga_id,
            flow: envelope.flow.clone(),
            handler,
            compensation,
            attempt: delivery.delivered(),
            deps: Arc::clone(&self.deps),
        }
    }
}

impl FlowEnvelope {
    /// The message that follows this one in its saga.
    fn next(&self, message: FlowMessage, trail: Vec<Done>) -> FlowEnvelope {
        FlowEnvelope {
            saga_id: self.saga_id,
            flow: self.flow.clone(),
            message,
            trail,
        }
    }
}

/// What rolls back the work in `trail`, `after` what just happened: the last piece undone
/// first, or, with none left, the saga compensated.
fn rollback(envelope: &FlowEnvelope, trail: Vec<Done>, after: After) -> FlowEnvelope {
    let message = match trail.last() {
        Some(done) => FlowMessage::Undo {
            handler: done.handler.clone(),
            after,
        },
        None => FlowMessage::Compensated { after },
    };
    envelope.next(message, trail)
}

/// Runs a handler's future within its timeout, a panic becoming a permanent error (as a step's
/// attempt is).
fn guarded<T>(
    run: BoxFuture<'static, Result<T, StepError>>,
    timeout: Option<Duration>,
) -> impl std::future::Future<Output = Result<T, StepError>> {
    crate::executor::guarded_within(run, timeout.map(|limit| (limit, limit)), "the handler")
}

/// Handler `H` on an event as JSON.
fn handle<H: Handler>(
    event: serde_json::Value,
    cx: HandlerCx<H::Deps>,
) -> BoxFuture<'static, Result<serde_json::Value, StepError>> {
    Box::pin(async move {
        let event = decode::<H::On>(event)?;
        let emitted = H::handle(event, &cx).await?;
        serde_json::to_value(emitted).map_err(|e| {
            StepError::permanent(format!(
                "event `{}` cannot be written as JSON: {e}",
                <H::Emits as Event>::NAME
            ))
        })
    })
}

/// Handler `H`'s compensation on the events as JSON.
fn compensate<H: Handler>(
    event: serde_json::Value,
    emitted: serde_json::Value,
    cx: HandlerCx<H::Deps>,
) -> BoxFuture<'static, Result<(), StepError>> {
    Box::pin(async move {
        let event = decode::<H::On>(event)?;
        let emitted = decode::<H::Emits>(emitted)?;
        H::compensate(event, emitted, &cx).await
    })
}

fn decode<E: Event>(json: serde_json::Value) -> Result<E, StepError> {
    serde_json::from_value(json)
        .map_err(|e| StepError::permanent(format!("event `{}` does not decode: {e}", E::NAME)))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // One insert or remove at a time: a panic while it was held left it whole.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
