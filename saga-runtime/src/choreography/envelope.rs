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

/// What a message of a choreographed saga says. Every decision is one message: a handler's
/// outcome (its event, or the rollback its failure starts) and a compensation's outcome (the
/// next undo, the end of the rollback, or its failure) each have one message id, so that a
/// handler run again after its instance died can never publish both a success and a failure.
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
    /// The service of the trail's last work is asked to undo it.
    Undo {
        /// The handler whose work is undone.
        handler: String,
        /// What the message also says happened before.
        #[serde(flatten)]
        after: After,
    },
    /// Every piece of work in the trail was undone: the saga is compensated.
    Compensated {
        /// What the message also says happened before.
        #[serde(flatten)]
        after: After,
    },
    /// A compensation failed for good: the rollback stops there.
    Stuck {
        /// The handler whose compensation failed.
        handler: String,
        /// Its error.
        error: StepError,
    },
}

/// What happened just before a rollback message: the failure that started the rollback (on its
/// first message), or the compensation that just completed (on the next ones).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct After {
    /// The handler that failed for good, and its error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<(String, StepError)>,
    /// The handler whose work was just undone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undone: Option<String>,
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
    /// The subject the message goes on, under `choreo.{flow}`: `event.{name}`,
    /// `undo.{service}.{handler}`, `compensated`, `stuck`.
    pub fn subject(&self) -> String {
        let flow = crate::bus::subject::token_of(&self.flow);
        match &self.message {
            FlowMessage::Event { name, .. } => event_subject(&flow, name),
            FlowMessage::Undo { handler, .. } => {
                let service = self
                    .trail
                    .last()
                    .map_or("none", |done| done.service.as_str());
                format!("choreo.{flow}.undo.{service}.{handler}")
            }
            FlowMessage::Compensated { .. } => format!("choreo.{flow}.compensated"),
            FlowMessage::Stuck { .. } => format!("choreo.{flow}.stuck"),
        }
    }

    /// The message's id: one per decision, the same whichever way the decision went and
    /// whenever it is published again, so that the bus keeps the first and drops the rest:
    /// `{saga}:start` for the first event, `{saga}:{handler}:outcome` for what a handler's run
    /// decided (its event, or the rollback its failure starts), `{saga}:{handler}:undo` for what
    /// its compensation decided (the next undo, the end, or `stuck`).
    pub fn message_id(&self) -> String {
        let saga = self.saga_id;
        match &self.message {
            FlowMessage::Event { by: None, .. } => format!("{saga}:start"),
            FlowMessage::Event { by: Some(by), .. } => format!("{saga}:{by}:outcome"),
            FlowMessage::Undo { after, .. } | FlowMessage::Compensated { after } => {
                match (&after.failed, &after.undone) {
                    (_, Some(undone)) => format!("{saga}:{undone}:undo"),
                    (Some((failed, _)), None) => format!("{saga}:{failed}:outcome"),
                    (None, None) => format!("{saga}:rollback"),
                }
            }
            FlowMessage::Stuck { handler, .. } => format!("{saga}:{handler}:undo"),
        }
    }
}

/// The subject of event `name` of flow `flow` (a subject token).
pub(crate) fn event_subject(flow: &str, name: &str) -> String {
    format!("choreo.{flow}.event.{name}")
}
