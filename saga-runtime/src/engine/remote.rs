//! The orchestrator's side of remote steps: an attempt publishes its command and waits for the
//! participant's reply, which one consumer per saga type routes to it. A reply is acknowledged
//! only once the run has committed what it recorded of it (a crash in between leaves it on the
//! bus, delivered again to whoever resumes the saga). A reply nobody waits for is checked against
//! the store: still awaited by the saga's in-flight attempt (being resumed, or run by another
//! worker), it is refused for now and comes again; otherwise it is stale (an attempt that timed
//! out, a saga that ended) and is dropped and counted.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::{Engine, EngineInner};
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

/// A saga type's name as one subject token and consumer name.
fn token(saga_type: &str) -> String {
    saga_type
        .chars()
        .map(
            |c| match c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                true => c,
                false => '_',
            },
        )
        .collect()
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

impl Engine {
    /// Sends the command of a remote step's attempt (`cx`) to `target` and waits for the reply:
    /// the step's output, or its error.
    pub(crate) async fn call_remote<D>(
        &self,
        cx: &StepCx<D>,
        target: RemoteTarget,
        command: serde_json::Value,
    ) -> Result<Option<OutputValue>, StepError> {
        let Some(remote) = &self.inner.remote else {
            return Err(StepError::permanent(format!(
                "step `{}` is carried out by service `{}`, but this engine has no bus \
                 (EngineBuilder::bus)",
                cx.step(),
                target.service
            )));
        };
        let saga_type = token(cx.saga_type());
        let envelope = CommandEnvelope {
            saga_id: cx.saga_id(),
            saga_type: cx.saga_type().to_owned(),
            step: cx.step().to_owned(),
            phase: cx.phase(),
            attempt: cx.attempt(),
            key: cx.idempotency_key(),
            token: cx.fencing_token(),
            reply_to: format!("reply.{saga_type}"),
            command,
        };
        let attempt = Attempt {
            saga: envelope.saga_id,
            step: envelope.step.clone(),
            phase: envelope.phase,
            attempt: envelope.attempt,
        };
        // Waiting before the command is out: its reply cannot come first.
        let (tx, rx) = oneshot::channel();
        lock(&remote.waiting).insert(attempt.clone(), tx);
        let waiter = Waiter {
            remote,
            attempt: Some(attempt),
        };
        self.consume_replies(&saga_type);
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
        let (reply, delivery) = rx
            .await
            .map_err(|_| StepError::transient("the engine stopped waiting for the reply"))?;
        drop(waiter);
        lock(&remote.recorded)
            .entry(envelope.saga_id)
            .or_default()
            .push(delivery);
        match reply.result {
            Ok(serde_json::Value::Null) => Ok(None),
            Ok(json) => Ok(Some(OutputValue::from_json(json))),
            Err(error) => Err(error),
        }
    }

    /// Starts the reply consumer of saga type `saga_type` (a subject token) unless it runs.
    fn consume_replies(&self, saga_type: &str) {
        let Some(remote) = &self.inner.remote else {
            return;
        };
        let mut consumers = lock(&remote.consumers);
        if consumers.contains_key(saga_type) {
            return;
        }
        let engine = Arc::downgrade(&self.inner);
        let bus = Arc::clone(&remote.bus);
        let saga_type = saga_type.to_owned();
        let task = tokio::spawn(replies(engine, bus, saga_type.clone()));
        consumers.insert(saga_type, task);
    }
}

/// Routes the replies of saga type `saga_type` to the attempts waiting for them, for as long as
/// the engine lives.
async fn replies(engine: Weak<EngineInner>, bus: Arc<dyn Bus>, saga_type: String) {
    let consumer = format!("reply-{saga_type}");
    let filter = format!("reply.{saga_type}");
    let mut deliveries = loop {
        match bus.consume(&consumer, &filter).await {
            Ok(deliveries) => break deliveries,
            Err(error) => {
                tracing::warn!(%error, consumer, "cannot consume replies; trying again");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
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
            // The attempt stopped waiting as the reply came (it timed out).
            Err(returned) => returned,
        },
        None => (reply, delivery),
    };
    match awaited(engine, &reply).await {
        true => {
            let _ = delivery.nak(NOT_YET).await;
        }
        false => {
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

/// Whether saga `reply.saga_id`'s in-flight attempt is the one `reply` answers (its run is
/// being resumed, here or elsewhere): the reply is then still wanted.
async fn awaited(engine: &Engine, reply: &ReplyEnvelope) -> bool {
    let record = match engine.inner.store.load(reply.saga_id).await {
        Ok(Some(record)) => record,
        Ok(None) => return false,
        // The store cannot say now: kept, it comes again.
        Err(_) => return true,
    };
    if record.state.status.is_terminal() {
        return false;
    }
    let position = record.steps.iter().position(|name| *name == reply.step);
    record.state.active.iter().any(|activity| {
        activity.in_flight
            && activity.phase == reply.phase
            && activity.attempt == reply.attempt
            && (Some(activity.step) == position || activity.fallback)
    })
}
