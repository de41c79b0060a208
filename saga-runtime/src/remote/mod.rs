//! Steps carried out by other services (orchestration over the [bus](crate::bus)): the
//! protocol, and the participant side.
//!
//! A **command** is a serializable type shared by the orchestrator and the participant service
//! that carries it out; [`Command`] names its service, its action and its reply type. The
//! orchestrator publishes it on subject `command.{service}.{action}`, wrapped in a
//! [`CommandEnvelope`] that carries the saga's id, the step, the attempt, the idempotency key and
//! the fencing token, with the attempt's key as the message id (`{key}#{attempt}`): a command
//! published again for the same attempt (after a crash) is a duplicate the bus drops. The
//! participant answers on the envelope's `reply_to` subject with a [`ReplyEnvelope`] that echoes
//! the attempt and carries the typed reply or the step error (transient or permanent, as a local
//! step's).
//!
//! A participant service is a [`Participant`]: ordinary `async fn`s marked `#[saga_handler]`,
//! one per command type, each run with the command and a [`ParticipantCx`] (the key to act
//! through, the token to fence with, the service's dependencies); its return type is checked
//! against the command's reply at compile time.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use saga_runtime::bus::MemoryBus;
//! use saga_runtime::remote::{Command, Participant, ParticipantCx};
//! use saga_runtime::{saga_handler, StepError};
//!
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct Charge { order: String, amount: u64 }
//!
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct Payment { id: String }
//!
//! impl Command for Charge {
//!     const SERVICE: &'static str = "payments";
//!     const ACTION: &'static str = "charge";
//!     type Reply = Payment;
//! }
//!
//! /// The payments service's handler: charges once per idempotency key.
//! #[saga_handler]
//! async fn charge(command: Charge, cx: ParticipantCx<()>) -> Result<Payment, StepError> {
//!     Ok(Payment { id: format!("pay-{}", cx.idempotency_key()) })
//! }
//!
//! let bus = Arc::new(MemoryBus::new());
//! let payments = Participant::new(bus, "payments", ()).handler::<charge>();
//! let service = tokio::spawn(payments.run());
//! # service.abort();
//! # Ok(()) }
//! ```

mod participant;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub use participant::{CommandHandler, Participant, ParticipantCx};

use crate::step::Phase;
use crate::{SagaId, StepError};

/// A command a participant service carries out for a saga's step (or its compensation).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a command a participant service carries out",
    label = "a `remote` step returns a command: implement `saga_runtime::remote::Command` for it",
    note = "`Command` names the service, the action and the reply type"
)]
pub trait Command: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The service that carries it out (letters, digits, `-` and `_`).
    const SERVICE: &'static str;
    /// Which of its actions (letters, digits, `-` and `_`).
    const ACTION: &'static str;
    /// What the service answers on success: the step's output.
    type Reply: Serialize + DeserializeOwned + Send + 'static;

    /// The subject the command is published on: `command.{service}.{action}`.
    fn subject() -> String {
        command_subject(Self::SERVICE, Self::ACTION)
    }
}

/// The subject of `service`'s `action`.
pub(crate) fn command_subject(service: &str, action: &str) -> String {
    format!("command.{service}.{action}")
}

/// The filter of every command of `service`: one token for the action.
pub(crate) fn service_filter(service: &str) -> String {
    format!("command.{service}.*")
}

/// A command as published: the command itself and the attempt it is for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CommandEnvelope {
    /// The saga.
    pub saga_id: SagaId,
    /// Its type's name.
    pub saga_type: String,
    /// The step (its name).
    pub step: String,
    /// Its action or its compensation.
    pub phase: Phase,
    /// The attempt, from 1.
    pub attempt: u32,
    /// The step's idempotency key (`{saga_id}:{step}`, `…:compensate` for the compensation):
    /// the same on every attempt; the participant acts through it.
    pub key: String,
    /// The orchestrator's fencing token for the saga: a handler that keeps the highest token
    /// seen per saga can refuse a command from a stale orchestrator (see
    /// [`StepCx::fencing_token`](crate::StepCx::fencing_token)).
    pub token: u64,
    /// Where the reply goes.
    pub reply_to: String,
    /// The command, as JSON.
    pub command: serde_json::Value,
}

impl CommandEnvelope {
    /// The bus message id of this attempt's command: `{key}#{attempt}`.
    pub fn message_id(&self) -> String {
        format!("{}#{}", self.key, self.attempt)
    }
}

/// A participant's answer to one command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ReplyEnvelope {
    /// The saga.
    pub saga_id: SagaId,
    /// The step.
    pub step: String,
    /// Its action or its compensation.
    pub phase: Phase,
    /// The attempt answered.
    pub attempt: u32,
    /// The token the command carried.
    pub token: u64,
    /// The reply as JSON, or why the command failed.
    pub result: Result<serde_json::Value, StepError>,
}

impl ReplyEnvelope {
    /// The reply to `command` with `result`.
    pub fn to(command: &CommandEnvelope, result: Result<serde_json::Value, StepError>) -> Self {
        ReplyEnvelope {
            saga_id: command.saga_id,
            step: command.step.clone(),
            phase: command.phase,
            attempt: command.attempt,
            token: command.token,
            result,
        }
    }

    /// The bus message id of the reply to attempt `command`: `{key}#{attempt}:reply`, so that a
    /// reply published again (after the participant crashed before acknowledging) is dropped.
    pub fn message_id(command: &CommandEnvelope) -> String {
        format!("{}:reply", command.message_id())
    }
}
