//! The participant side: a service's handlers, run for the commands the bus delivers to it, each
//! answered on the command's reply subject before the delivery is acknowledged (a service that
//! crashes in between runs the command again, with the same idempotency key).

use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{FutureExt, StreamExt};

use super::{service_filter, Command, CommandEnvelope, ReplyEnvelope};
use crate::bus::subject::check_consumer;
use crate::bus::{Bus, BusError, BusErrorKind, Delivery, Outgoing};
use crate::step::Phase;
use crate::{ErrorKind, SagaId, StepError};

/// What a handler returns, its reply as JSON.
type Handled = Pin<Box<dyn Future<Output = Result<serde_json::Value, StepError>> + Send>>;

/// A handler, type-erased: decodes the command, runs the `async fn`, encodes the reply.
type Handler<D> = Arc<dyn Fn(serde_json::Value, ParticipantCx<D>) -> Handled + Send + Sync>;

/// A participant service: the handlers of its commands, run for every command the bus delivers
/// to it (see the [module](super) docs). Several processes of one service share its commands:
/// each command goes to one of them.
pub struct Participant<D> {
    bus: Arc<dyn Bus>,
    service: String,
    deps: Arc<D>,
    handlers: HashMap<&'static str, Handler<D>>,
    /// Handlers that cannot be registered, said by `run`.
    misdeclared: Vec<String>,
    /// How many commands are handled at once.
    concurrency: usize,
    /// The ids of the commands being handled here.
    at_work: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl<D> std::fmt::Debug for Participant<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut actions: Vec<&&str> = self.handlers.keys().collect();
        actions.sort();
        f.debug_struct("Participant")
            .field("service", &self.service)
            .field("actions", &actions)
            .finish_non_exhaustive()
    }
}

impl<D: Send + Sync + 'static> Participant<D> {
    /// Service `service` on `bus`, its handlers given `deps`.
    pub fn new(bus: Arc<dyn Bus>, service: impl Into<String>, deps: impl Into<Arc<D>>) -> Self {
        Participant {
            bus,
            service: service.into(),
            deps: deps.into(),
            handlers: HashMap::new(),
            misdeclared: Vec::new(),
            concurrency: 256,
            at_work: Default::default(),
        }
    }

    /// Handles command `C` with `handler`, an `async fn(C, ParticipantCx<D>) -> Result<C::Reply,
    /// StepError>`. A command of another service, or a second handler for one action, is an
    /// error [`Participant::run`] returns.
    pub fn handle<C, F, Fut>(mut self, handler: F) -> Self
    where
        C: Command,
        F: Fn(C, ParticipantCx<D>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<C::Reply, StepError>> + Send + 'static,
    {
        if check_consumer(C::ACTION).is_err() {
            self.misdeclared.push(format!(
                "command `{}` has action `{}`: an action is letters, digits, `-` and `_`",
                std::any::type_name::<C>(),
                C::ACTION,
            ));
            return self;
        }
        if C::SERVICE != self.service {
            self.misdeclared.push(format!(
                "command `{}` belongs to service `{}`, not `{}`",
                std::any::type_name::<C>(),
                C::SERVICE,
                self.service
            ));
            return self;
        }
        let handler = Arc::new(handler);
        let erased: Handler<D> = Arc::new(move |command, cx| {
            let handler = Arc::clone(&handler);
            Box::pin(async move {
                let command: C = serde_json::from_value(command).map_err(|e| {
                    StepError::permanent(format!(
                        "the command does not decode as `{}`: {e}",
                        std::any::type_name::<C>()
                    ))
                })?;
                let reply = handler(command, cx).await?;
                serde_json::to_value(reply).map_err(|e| {
                    StepError::permanent(format!("the reply cannot be written as JSON: {e}"))
                })
            })
        });
        if self.handlers.insert(C::ACTION, erased).is_some() {
            self.misdeclared.push(format!(
                "service `{}` has two handlers for action `{}`",
                self.service,
                C::ACTION
            ));
        }
        self
    }

    /// Handles the command of `H`, a `#[saga_handler]` on an `async fn(C, ParticipantCx<D>) ->
    /// Result<C::Reply, StepError>` (the same as [`Participant::handle`] with the function).
    pub fn handler<H: CommandHandler<Deps = D>>(self) -> Self {
        self.handle::<H::Command, _, _>(H::handle)
    }

    /// How many commands this instance handles at once (default 256): past it, the next
    /// commands wait on the bus.
    pub fn concurrency(mut self, commands: usize) -> Self {
        self.concurrency = commands.max(1);
        self
    }

    /// Runs the service: handles the commands the bus delivers to it, for as long as it is not
    /// dropped. While the bus is unavailable (a NATS server restarting), it subscribes again
    /// every second, the handlers at work going on; it returns only on an error that waiting
    /// cannot mend: the handlers were misdeclared (the error says how), or the bus refuses the
    /// subscription as invalid. A delivery whose reply cannot be published for now is left
    /// unacknowledged, so it comes again.
    pub async fn run(self) -> Result<(), BusError> {
        if let Some(problem) = self.misdeclared.first() {
            return Err(BusError::new(BusErrorKind::Invalid, problem.clone()));
        }
        let filter = service_filter(&self.service);
        let room = Arc::new(tokio::sync::Semaphore::new(self.concurrency));
        let this = Arc::new(self);
        // Commands are handled at once, each in a task of its own, owned here: when the service
        // stops (this future is dropped), so do the handlers at work, leaving their commands
        // unacknowledged for another instance.
        let mut handling = tokio::task::JoinSet::new();
        loop {
            let mut deliveries =
                crate::bus::subscribe(&*this.bus, &this.service, &filter, None).await?;
            loop {
                let permit = tokio::select! {
                    permit = Arc::clone(&room).acquire_owned() => permit.expect("never closed"),
                    Some(ended) = handling.join_next() => {
                        this.ended(ended);
                        continue;
                    }
                };
                tokio::select! {
                    delivery = deliveries.next() => match delivery {
                        Some(Ok(delivery)) => {
                            let this = Arc::clone(&this);
                            handling.spawn(async move {
                                this.answer(delivery).await;
                                drop(permit);
                            });
                        }
                        Some(Err(error)) => {
                            tracing::warn!(service = %this.service, %error, "the bus failed a delivery");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        None => {
                            tracing::warn!(service = %this.service, "the subscription ended; subscribing again");
                            break;
                        }
                    },
                    Some(ended) = handling.join_next() => this.ended(ended),
                }
            }
        }
    }

    /// Says what went wrong with a command's task, if anything did.
    fn ended(&self, ended: Result<(), tokio::task::JoinError>) {
        if let Err(error) = ended {
            tracing::error!(service = %self.service, %error, "a command's task failed");
        }
    }

    /// Handles one delivered command and publishes the reply, then acknowledges it.
    async fn answer(&self, delivery: Delivery) {
        let envelope: CommandEnvelope = match serde_json::from_slice(delivery.payload()) {
            Ok(envelope) => envelope,
            Err(error) => {
                // Nobody to answer: dropped, said, never delivered again.
                tracing::warn!(
                    service = %self.service,
                    subject = delivery.subject(),
                    %error,
                    "a message that is not a command envelope was dropped"
                );
                let _ = delivery.ack().await;
                return;
            }
        };
        // A command delivered again while its first delivery is still being handled here (a
        // handler slower than the ack wait) is left to that one, which answers for both.
        if !lock(&self.at_work).insert(delivery.id().to_owned()) {
            return;
        }
        let id = delivery.id().to_owned();
        self.handle_one(envelope, delivery).await;
        lock(&self.at_work).remove(&id);
    }

    async fn handle_one(&self, envelope: CommandEnvelope, delivery: Delivery) {
        // `command.{service}.{action}`: the filter lets through exactly three tokens.
        let action = delivery.subject().split('.').nth(2).unwrap_or_default();
        let result = match self.handlers.get(action) {
            None => Err(StepError::permanent(format!(
                "service `{}` has no action `{action}`",
                self.service
            ))),
            Some(handler) => {
                let cx = ParticipantCx {
                    saga_id: envelope.saga_id,
                    saga_type: envelope.saga_type.clone(),
                    step: envelope.step.clone(),
                    phase: envelope.phase,
                    attempt: envelope.attempt,
                    key: envelope.key.clone(),
                    token: envelope.token,
                    delivered: delivery.delivered(),
                    deps: Arc::clone(&self.deps),
                };
                let handled = AssertUnwindSafe(handler(envelope.command.clone(), cx))
                    .catch_unwind()
                    .await;
                handled.unwrap_or_else(|payload| {
                    Err(StepError::with_kind(
                        ErrorKind::Panic,
                        format!("the handler {}", crate::error::panicked(&*payload)),
                    ))
                })
            }
        };
        let reply = ReplyEnvelope::to(&envelope, result);
        let payload = serde_json::to_vec(&reply).unwrap_or_else(|error| {
            // A step error always encodes; the reply's JSON was made by serde: not expected.
            let failed = ReplyEnvelope::to(
                &envelope,
                Err(StepError::permanent(format!(
                    "the reply cannot be sent: {error}"
                ))),
            );
            serde_json::to_vec(&failed).unwrap_or_default()
        });
        let message = Outgoing::new(
            envelope.reply_to.clone(),
            ReplyEnvelope::message_id(&envelope),
            payload,
        );
        match self.bus.publish(message).await {
            Ok(_) => {}
            // Delivered again after the ack wait, and handled again under the same key.
            Err(error) if error.kind() == BusErrorKind::Unavailable => {
                tracing::warn!(%error, "a reply could not be published; the command comes again");
                return;
            }
            // No retry would publish it (a reply subject that is not one): said, dropped.
            Err(error) => tracing::error!(%error, "a reply cannot be published; dropped"),
        }
        if let Err(error) = delivery.ack().await {
            tracing::warn!(%error, "a handled command could not be acknowledged");
        }
    }
}

fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every change is one insert or remove: a panic while it was held left it whole.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a participant's handler is told of the command it runs: which saga, step and attempt,
/// the key to act through and the token to fence with, and the service's dependencies.
#[derive(Debug)]
pub struct ParticipantCx<D> {
    saga_id: SagaId,
    saga_type: String,
    step: String,
    phase: Phase,
    attempt: u32,
    key: String,
    token: u64,
    delivered: u32,
    deps: Arc<D>,
}

impl<D> ParticipantCx<D> {
    /// The saga.
    pub fn saga_id(&self) -> SagaId {
        self.saga_id
    }

    /// The saga's type name.
    pub fn saga_type(&self) -> &str {
        &self.saga_type
    }

    /// The step the command carries out.
    pub fn step(&self) -> &str {
        &self.step
    }

    /// Whether the command is the step's action or its compensation.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The orchestrator's attempt, from 1.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The step's idempotency key, the same on every attempt and every delivery: act through it
    /// so that the command takes effect once.
    pub fn idempotency_key(&self) -> &str {
        &self.key
    }

    /// The orchestrator's fencing token (see [`StepCx::fencing_token`](crate::StepCx::fencing_token)).
    pub fn fencing_token(&self) -> u64 {
        self.token
    }

    /// How many times the bus delivered this command, this time included.
    pub fn delivered(&self) -> u32 {
        self.delivered
    }

    /// The service's dependencies.
    pub fn deps(&self) -> &D {
        &self.deps
    }
}

/// A handler of a participant service, as `#[saga_handler]` declares it on the type that shares
/// the handler function's name (when its second parameter is a [`ParticipantCx`]). Not meant to
/// be implemented by hand.
pub trait CommandHandler: Send + Sync + 'static {
    /// The command it carries out.
    type Command: Command;
    /// The service's dependencies it takes.
    type Deps: Send + Sync + 'static;

    /// Carries out the command once.
    fn handle(
        command: Self::Command,
        cx: ParticipantCx<Self::Deps>,
    ) -> crate::choreography::HandlerFuture<'static, <Self::Command as Command>::Reply>;
}
