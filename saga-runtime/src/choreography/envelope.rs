//! The messages of a choreographed saga, their subjects and their message ids.

use serde::{Deserialize, Serialize};

use crate::{SagaId, StepError};

/// One message of a choreographed saga, as published.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct FlowEnvelope {
    /// The saga.
    pub saga_id: SagaId,
    /// Its flow's name.
    pub flow: String,
    /// What happened, or what is asked.
    pub message: FlowMessage,
    /// The work done so far that can be undone, in the order it was done.
    pub trail: Vec<Done>,
}

/// What a message of a choreographed saga says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum FlowMessage {
    /// An event: the one that starts the saga (`by` none), or the one a handler emitted.
    Event {
        /// The event's name.
        name: String,
        /// The event, as JSON.
        payload: serde_json::Value,
        /// The handler that emitted it.
        by: Option<String>,
    },
    /// A handler failed for good: the saga rolls back.
    Failed {
        /// The handler.
        handler: String,
        /// Its error.
        error: StepError,
    },
    /// The service of the trail's last work is asked to undo it.
    Undo {
        /// The handler whose work is undone.
        handler: String,
    },
    /// A handler's work was undone.
    Undone {
        /// The handler.
        handler: String,
    },
    /// A compensation failed for good: the rollback stops there.
    Stuck {
        /// The handler whose compensation failed.
        handler: String,
        /// Its error.
        error: StepError,
    },
    /// Every piece of work in the trail was undone.
    Compensated,
}

/// A piece of work a handler did that can be undone: what its compensation is given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Done {
    /// The service that did it.
    pub service: String,
    /// The handler.
    pub handler: String,
    /// The event it took, as JSON.
    pub on: serde_json::Value,
    /// The event it emitted, as JSON.
    pub emitted: serde_json::Value,
}

impl FlowEnvelope {
    /// The subject the message goes on, under `choreo.{flow}`: `event.{name}`, `failed`,
    /// `undo.{service}.{handler}`, `undone`, `stuck`, `compensated`.
    pub fn subject(&self) -> String {
        let flow = crate::bus::subject::token_of(&self.flow);
        match &self.message {
            FlowMessage::Event { name, .. } => event_subject(&flow, name),
            FlowMessage::Failed { .. } => format!("choreo.{flow}.failed"),
            FlowMessage::Undo { handler } => {
                let service = self
                    .trail
                    .last()
                    .map_or("none", |done| done.service.as_str());
                format!("choreo.{flow}.undo.{service}.{handler}")
            }
            FlowMessage::Undone { .. } => format!("choreo.{flow}.undone"),
            FlowMessage::Stuck { .. } => format!("choreo.{flow}.stuck"),
            FlowMessage::Compensated => format!("choreo.{flow}.compensated"),
        }
    }

    /// The message's id, the same whenever the same step of the saga publishes it again (after
    /// an instance died before acknowledging what it handled), so that the bus drops the copy:
    /// `{saga}:{handler or "start"}:event`, `{saga}:failed`, `{saga}:{handler}:undo`,
    /// `{saga}:{handler}:undone`, `{saga}:stuck`, `{saga}:compensated`.
    pub fn message_id(&self) -> String {
        let saga = self.saga_id;
        match &self.message {
            FlowMessage::Event { by, .. } => {
                format!("{saga}:{}:event", by.as_deref().unwrap_or("start"))
            }
            FlowMessage::Failed { .. } => format!("{saga}:failed"),
            FlowMessage::Undo { handler } => format!("{saga}:{handler}:undo"),
            FlowMessage::Undone { handler } => format!("{saga}:{handler}:undone"),
            FlowMessage::Stuck { .. } => format!("{saga}:stuck"),
            FlowMessage::Compensated => format!("{saga}:compensated"),
        }
    }
}

/// The subject of event `name` of flow `flow` (a subject token).
pub(crate) fn event_subject(flow: &str, name: &str) -> String {
    format!("choreo.{flow}.event.{name}")
}
