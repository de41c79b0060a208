//! The orchestrator's side of remote steps: an attempt publishes its command and waits for the
//! participant's reply, which one consumer per saga type routes to it. A reply is acknowledged
//! only once the run has committed what it recorded of it (a crash in between leaves it on the
//! bus, delivered again to whoever resumes the saga).
//!
//! A wait longer than the engine's durable-timer threshold, on a store other processes share,
//! holds no task: the run lets the saga go with its attempt's timeout as its wake time, and the
//! reply, on whichever engine it comes to, wakes it: that engine takes the saga (before its wake
//! time) and resumes it with the reply in hand, so the attempt does not send its command again.
//!
//! A reply nobody waits for is checked against the store: still awaited by the saga's in-flight
//! attempt while a live worker holds the saga (being resumed, or waiting in a task elsewhere),
//! it is refused for now and comes again; otherwise it is stale (an attempt that timed out, a
//! saga that ended) and is dropped and counted.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::{Engine, EngineInner};
use crate::bus::subject::token_of;
use crate::bus::{Bus, Delivery, Outgoing};
use crate::remote::{command_subject, CommandEnvelope, ReplyEnvelope};
use crate::step::{Phase, RemoteTarget};
use crate::{OutputValue, SagaId, StepCx, StepError};

/// How long a reply awaited elsewhere is held back before it comes again.
const NOT_YET: Duration = Duration::from_millis(200);

/// The attempt a reply answers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Attempt {
    saga: SagaId,
    step: String,
    phase: Phase,
    attempt: u32,
}

impl Attempt {
    fn of(reply: &ReplyEnvelope) -> Self {
        Attempt {
            saga: reply.saga_id,
            step: reply.step.clone(),
            phase: reply.phase,
            attempt: reply.attempt,
        }
    }
}

/// What an engine with a bus keeps for remote steps.
pub(crate) struct Remote {
    bus: Arc<dyn Bus>,
    /// The attempts waiting for their reply here.
    waiting: Mutex<HashMap<Attempt, oneshot::Sender<(ReplyEnvelope, Delivery)>>>,
    /// The reply consumer of each saga type that sent a command from here.
    consumers: Mutex<HashMap<String, JoinHandle<()>>>,
    /// Replies a run recorded, acknowledged after its next commit.
    recorded: Mutex<HashMap<SagaId, Vec<Delivery>>>,
    /// Replies to sagas that waited for them let go, which this engine took to resume: the
    /// resumed attempt finds its reply here rather than sending its command again.
    arrived: Mutex<HashMap<Attempt, (ReplyEnvelope, Delivery)>>,
    /// Replies dropped as stale.
    stale: AtomicU64,
}

impl Remote {
    pub(crate) fn new(bus: Arc<dyn Bus>) -> Self {
        Remote {
            bus,
            waiting: Mutex::default(),
            consumers: Mutex::default(),
            recorded: Mutex::default(),
            arrived: Mutex::default(),
            stale: AtomicU64::new(0),
        }
    }

    pub(crate) fn stale(&self) -> u64 {
        self.stale.load(Ordering::Relaxed)
    }

    /// Acknowledges the replies saga `id`'s run recorded: its last commit holds them.
    pub(crate) fn settle(&self, id: SagaId) {
        let Some(replies) = lock(&self.recorded).remove(&id) else {
            return;
        };
        tokio::spawn(async move {
            for reply in replies {
                if let Err(error) = reply.ack().await {
                    // Delivered again; the saga has moved on, so it is then stale.
                    tracing::warn!(%error, "a recorded reply could not be acknowledged");
                }
            }
        });
    }

    /// Forgets the replies saga `id`'s run recorded but did not commit (it stopped): left
    /// unacknowledged, they come again to whoever resumes it.
    pub(crate) fn forget(&self, id: SagaId) {
        lock(&self.recorded).remove(&id);
        // A reply taken for a run that ended before it looked: delivered again later.
        lock(&self.arrived).retain(|attempt, _| attempt.saga != id);
    }
}

impl Remote {
    /// The result a reply carries; its delivery is acknowledged once the run has committed it.
    fn take(
        &self,
        (reply, delivery): (ReplyEnvelope, Delivery),
    ) -> Result<Option<OutputValue>, StepError> {
        lock(&self.recorded)
            .entry(reply.saga_id)
            .or_default()
            .push(delivery);
        match reply.result {
            Ok(serde_json::Value::Null) => Ok(None),
            Ok(json) => Ok(Some(OutputValue::from_json(json))),
            Err(error) => Err(error),
        }
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        for (_, consumer) in lock(&self.consumers).drain() {
            consumer.abort();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every change is one insert or remove: a panic while it was held left it whole.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Removes an attempt's waiter when the attempt ends without its reply (a timeout).
struct Waiter<'a> {
    remote: &'a Remote,
    attempt: Option<Attempt>,
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        if let Some(attempt) = self.attempt.take() {
            lock(&self.remote.waiting).remove(&attempt);
        }
    }
}

/// What became of a command sent to a participant service.
pub(crate) enum Exchanged {
    /// Its reply: the step's output (its error is the exchange's).
    Reply(Option<OutputValue>),
    /// No reply within the patience given: the command is out, and its reply wakes the saga
    /// (see [`Engine::call_remote`]).
    Pending,
}

impl Engine {
    /// Sends the command of a remote attempt (`cx`) to `target` and waits for the reply: the
    /// step's output, or its error. With a `patience`, it waits that long at most: the saga can
    /// then be let go, and the reply, when it comes to any engine that runs the saga's type,
    /// wakes it there. A reply that came for this attempt while no run of the saga waited is
    /// taken at once, and the command is not sent again.
    pub(crate) async fn call_remote<D>(
        &self,
        cx: &StepCx<D>,
        target: RemoteTarget,
        command: serde_json::Value,
        patience: Option<Duration>,
    ) -> Result<Exchanged, StepError> {
        let Some(remote) = &self.inner.remote else {
            let what = match cx.phase() {
                Phase::Action => "step",
                Phase::Compensation => "the compensation of step",
            };
            return Err(StepError::permanent(format!(
                "{what} `{}` is carried out by service `{}`, but this engine has no bus \
                 (EngineBuilder::bus)",
                cx.step(),
                target.service
            )));
        };
        let route = self.reply_route(cx.saga_type());
        let envelope = CommandEnvelope {
            saga_id: cx.saga_id(),
            saga_type: cx.saga_type().to_owned(),
            step: cx.step().to_owned(),
            phase: cx.phase(),
            attempt: cx.attempt(),
            key: cx.idempotency_key(),
            token: cx.fencing_token(),
            reply_to: format!("reply.{route}"),
            command,
        };
        let attempt = Attempt {
            saga: envelope.saga_id,
            step: envelope.step.clone(),
            phase: envelope.phase,
            attempt: envelope.attempt,
        };
        if let Some(arrived) = lock(&remote.arrived).remove(&attempt) {
            return remote.take(arrived).map(Exchanged::Reply);
        }
        // Waiting before the command is out: its reply cannot come first.
        let (tx, rx) = oneshot::channel();
        lock(&remote.waiting).insert(attempt.clone(), tx);
        let waiter = Waiter {
            remote,
            attempt: Some(attempt),
        };
        self.consume_replies(&route);
        let payload = serde_json::to_vec(&envelope)
            .map_err(|e| StepError::permanent(format!("the command cannot be sent: {e}")))?;
        let message = Outgoing::new(
            command_subject(target.service, target.action),
            envelope.message_id(),
            payload,
        );
        remote.bus.publish(message).await.map_err(|error| {
            StepError::transient(format!("the command could not be published: {error}"))
        })?;
        let replied = match patience {
            None => rx.await,
            Some(patience) => match tokio::time::timeout(patience, rx).await {
                Ok(replied) => replied,
                Err(_) => return Ok(Exchanged::Pending),
            },
        };
        let arrived = replied
            .map_err(|_| StepError::transient("the engine stopped waiting for the reply"))?;
        drop(waiter);
        remote.take(arrived).map(Exchanged::Reply)
    }

    /// Starts the reply consumer of the saga type named `name` unless it runs (and this engine
    /// has a bus).
    pub(crate) fn consume_replies_of(&self, name: &str) {
        if self.inner.remote.is_some() {
            self.consume_replies(&self.reply_route(name));
        }
    }

    /// Where the replies to this engine's commands for sagas of type `name` go (a subject
    /// token): the type's, shared by every engine on a store they share (any of them may resume
    /// a saga whose reply it gets); this engine's own on a store it does not share, whose sagas
    /// no other engine knows.
    fn reply_route(&self, name: &str) -> String {
        match self.inner.shared {
            true => token_of(name),
            false => format!("{}-{}", token_of(name), token_of(&self.inner.worker.id)),
        }
    }

    /// Starts the reply consumer of route `route` (a subject token) unless it runs.
    fn consume_replies(&self, route: &str) {
        let Some(remote) = &self.inner.remote else {
            return;
        };
        let mut consumers = lock(&remote.consumers);
        if consumers.contains_key(route) {
            return;
        }
        let engine = Arc::downgrade(&self.inner);
        let bus = Arc::clone(&remote.bus);
        let route = route.to_owned();
        // A route of this engine's own (on a store it does not share) is nobody else's: the bus
        // may forget its consumer once this process is gone.
        let idle = (!self.inner.shared).then_some(OWN_REPLIES_IDLE);
        let task = tokio::spawn(replies(engine, bus, route.clone(), idle));
        consumers.insert(route, task);
    }
}

/// How long the bus keeps the consumer of an engine's own reply route with nobody attached: a
/// process gone that long is not coming back for its replies (its sagas were on a store it did
/// not share), and one consumer per process would otherwise pile up on the server.
const OWN_REPLIES_IDLE: Duration = Duration::from_secs(600);

/// Routes the replies on route `path` to the attempts waiting for them, for as long as the
/// engine lives; `idle` for a route of the engine's own (see [`Bus::consume_own`]).
async fn replies(
    engine: Weak<EngineInner>,
    bus: Arc<dyn Bus>,
    path: String,
    idle: Option<Duration>,
) {
    let consumer = format!("reply-{path}");
    let filter = format!("reply.{path}");
    // Subscribed again whenever the subscription ends (the bus restarted).
    loop {
        let mut deliveries = match crate::bus::subscribe(&*bus, &consumer, &filter, idle).await {
            Ok(deliveries) => deliveries,
            Err(error) => {
                // A saga type whose name makes no consumer name: nothing to wait for.
                tracing::error!(%error, consumer, "replies cannot be consumed");
                return;
            }
        };
        while let Some(delivery) = deliveries.next().await {
            let Some(inner) = engine.upgrade() else {
                return;
            };
            let engine = Engine { inner };
            match delivery {
                Ok(delivery) => route(&engine, delivery).await,
                Err(error) => {
                    tracing::warn!(%error, consumer, "the bus failed a reply");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        if engine.strong_count() == 0 {
            return;
        }
        tracing::warn!(consumer, "the reply subscription ended; subscribing again");
    }
}

/// Where the saga a reply is for stands.
enum Standing {
    /// Its in-flight attempt is the one the reply answers, and a live worker holds it (it is
    /// being resumed, or waits in a task elsewhere), or the store cannot say now.
    Held,
    /// Its in-flight attempt is the one the reply answers, and no live worker holds it: it was
    /// let go to wait for this reply (or its worker died).
    LetGo,
    /// The reply answers nothing still waiting: an attempt that timed out, a saga that ended.
    Stale,
}

/// Hands one reply to the attempt waiting for it, or decides what else becomes of it.
async fn route(engine: &Engine, delivery: Delivery) {
    let Some(remote) = &engine.inner.remote else {
        return;
    };
    let reply: ReplyEnvelope = match serde_json::from_slice(delivery.payload()) {
        Ok(reply) => reply,
        Err(error) => {
            tracing::warn!(%error, "a message that is not a reply was dropped");
            remote.stale.fetch_add(1, Ordering::Relaxed);
            let _ = delivery.ack().await;
            return;
        }
    };
    let attempt = Attempt::of(&reply);
    let waiter = lock(&remote.waiting).remove(&attempt);
    let (reply, delivery) = match waiter {
        Some(waiter) => match waiter.send((reply, delivery)) {
            Ok(()) => return,
            // The attempt stopped waiting as the reply came (it timed out, or let the saga go).
            Err(returned) => returned,
        },
        None => (reply, delivery),
    };
    match standing(engine, &reply).await {
        Standing::Held => {
            let _ = delivery.nak(NOT_YET).await;
        }
        Standing::LetGo => {
            let id = reply.saga_id;
            lock(&remote.arrived).insert(attempt.clone(), (reply, delivery));
            if !engine.resume_for_reply(id).await {
                // Not resumed here (another worker took it, or this engine cannot run it): the
                // reply comes again.
                let taken = lock(&remote.arrived).remove(&attempt);
                if let Some((_, delivery)) = taken {
                    let _ = delivery.nak(NOT_YET).await;
                }
            }
        }
        Standing::Stale => {
            remote.stale.fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                saga.id = %reply.saga_id,
                step = reply.step,
                attempt = reply.attempt,
                "a stale reply was dropped"
            );
            let _ = delivery.ack().await;
        }
    }
}

/// Whether saga `reply.saga_id`'s in-flight attempt is the one `reply` answers, and whether a
/// live worker holds the saga.
async fn standing(engine: &Engine, reply: &ReplyEnvelope) -> Standing {
    let record = match engine.inner.store.load(reply.saga_id).await {
        Ok(Some(record)) => record,
        Ok(None) => return Standing::Stale,
        // The store cannot say now: kept, it comes again.
        Err(_) => return Standing::Held,
    };
    if record.state.status.is_terminal() {
        return Standing::Stale;
    }
    let position = record.steps.iter().position(|name| *name == reply.step);
    let answered = record.state.active.iter().any(|activity| {
        activity.in_flight
            && activity.phase == reply.phase
            && activity.attempt == reply.attempt
            && (Some(activity.step) == position || activity.fallback)
    });
    // A store this process does not share has no leases to go by: its sagas run here.
    let held = !engine.inner.shared
        || record
            .lease
            .as_ref()
            .is_some_and(|lease| lease.expires_at > std::time::SystemTime::now());
    match (answered, held) {
        (false, _) => Standing::Stale,
        (true, true) => Standing::Held,
        (true, false) => Standing::LetGo,
    }
}
