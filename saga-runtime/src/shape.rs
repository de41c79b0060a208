//! A saga type's shape as data: what a tool needs to draw it (`saga graph`) without linking the
//! code that defines it. Engines record it in the store the first time they start a saga of the
//! type ([`crate::store::SagaStore::record_type`]).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{SagaDescription, Undo};

/// The shape of a saga type: its steps in order, what rollback does with each, their
/// compensations and fallbacks. Owned and serializable, unlike [`SagaDescription`].
///
/// ```
/// # use saga_runtime::{saga, saga_step, Saga, SagaShape, StepError};
/// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize)]
/// # struct Ctx;
/// #[saga_step(compensate = release, retries = 2)]
/// async fn reserve(ctx: &mut Ctx) -> Result<(), StepError> { Ok(()) }
/// async fn release(ctx: &mut Ctx) -> Result<(), StepError> { Ok(()) }
/// #[saga_step]
/// async fn ship(ctx: &mut Ctx) -> Result<(), StepError> { Ok(()) }
/// saga! { Order(Ctx, ()) { reserve, ship } }
///
/// let shape = SagaShape::from(&Order::description());
/// assert_eq!(shape.steps[0].compensation.as_deref(), Some("release"));
/// let json = serde_json::to_string(&shape).unwrap();
/// assert_eq!(serde_json::from_str::<SagaShape>(&json).unwrap(), shape);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SagaShape {
    /// The saga type's name.
    pub name: String,
    /// Its steps, in order.
    pub steps: Vec<StepShape>,
    /// `#[saga(deadline = ...)]`, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
    /// `#[saga(best_effort_rollback)]`.
    #[serde(default)]
    pub best_effort_rollback: bool,
    /// The parallel groups, as ranges of positions in `steps`, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<std::ops::Range<usize>>,
}

/// One step of a [`SagaShape`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StepShape {
    /// The step's name.
    pub name: String,
    /// What rollback does with it.
    pub undo: UndoShape,
    /// Its compensation's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compensation: Option<String>,
    /// Its fallback's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
    /// Its attempts' time limit, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Its retries.
    #[serde(default)]
    pub retries: u32,
    /// Its output type as written, unless it returns `()`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// The steps whose outputs it takes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<String>,
}

/// [`Undo`] as data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UndoShape {
    /// `compensate = path`.
    Compensate,
    /// `pivot`.
    Pivot,
    /// `nothing_to_undo`.
    NothingToUndo,
    /// Nothing declared (the last step).
    Unspecified,
}

impl From<Undo> for UndoShape {
    fn from(undo: Undo) -> Self {
        match undo {
            Undo::Compensate => UndoShape::Compensate,
            Undo::Pivot => UndoShape::Pivot,
            Undo::NothingToUndo => UndoShape::NothingToUndo,
            Undo::Unspecified => UndoShape::Unspecified,
        }
    }
}

impl From<&SagaDescription> for SagaShape {
    fn from(description: &SagaDescription) -> Self {
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        SagaShape {
            name: description.name.to_owned(),
            steps: description
                .steps
                .iter()
                .map(|step| StepShape {
                    name: step.name.to_owned(),
                    undo: step.policy.undo.into(),
                    compensation: step.compensation.map(str::to_owned),
                    fallback: step.fallback.map(str::to_owned),
                    timeout_ms: step.policy.timeout.map(millis),
                    retries: step.policy.retries,
                    output: step.output.map(str::to_owned),
                    inputs: step.inputs.iter().map(|&name| name.to_owned()).collect(),
                })
                .collect(),
            deadline_ms: description.options.deadline.map(millis),
            best_effort_rollback: description.options.best_effort_rollback,
            groups: description.groups.clone(),
        }
    }
}

impl SagaShape {
    /// The step names, in order.
    pub fn step_names(&self) -> Vec<&str> {
        self.steps.iter().map(|s| s.name.as_str()).collect()
    }

    /// The steps that run together with step `step`: its parallel group, or the step alone.
    pub fn stage(&self, step: usize) -> std::ops::Range<usize> {
        crate::machine::stage_of(&self.groups, step)
    }

    /// The stages in order: each a parallel group, or a step alone.
    pub fn stages(&self) -> Vec<std::ops::Range<usize>> {
        let mut stages = Vec::new();
        let mut step = 0;
        while step < self.steps.len() {
            let stage = self.stage(step);
            step = stage.end;
            stages.push(stage);
        }
        stages
    }

    /// A digest of the shape (64-bit FNV-1a of its JSON, in hex) that tells two versions of a
    /// type apart: stores keep one record per name and fingerprint.
    pub fn fingerprint(&self) -> String {
        let json = serde_json::to_string(self).unwrap_or_default();
        let hash = json.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        });
        format!("{hash:016x}")
    }
}
