//! Where one saga stands on its type's chart, as data: which steps, fallbacks and compensations
//! ran, failed or are under way, which are still ahead, and what a failure would roll back.
//! The Mermaid chart of a run (`mermaid_run`) and the dashboard's saga page both read it.

use std::collections::BTreeMap;

use crate::event::{SagaEvent, SagaEventKind};
use crate::shape::{SagaShape, UndoShape};
use crate::Phase;

/// What one node of a saga's chart (a step, its fallback, its compensation, an end) has become
/// in one saga's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NodeState {
    /// It ran and completed.
    Done,
    /// It failed (for good, or the attempt the saga stopped at).
    Failed,
    /// It is under way (or was, when the saga was parked).
    Running,
    /// The saga has not reached it yet.
    Ahead,
    /// The saga ended without running it.
    Skipped,
}

impl NodeState {
    /// Every state, in the order charts list them.
    pub const ALL: [NodeState; 5] = [
        NodeState::Done,
        NodeState::Failed,
        NodeState::Running,
        NodeState::Ahead,
        NodeState::Skipped,
    ];

    /// Its lowercase name (`"done"`, `"running"`, ...), used as a CSS or Mermaid class.
    pub fn name(self) -> &'static str {
        match self {
            NodeState::Done => "done",
            NodeState::Failed => "failed",
            NodeState::Running => "running",
            NodeState::Ahead => "ahead",
            NodeState::Skipped => "skipped",
        }
    }
}

/// One saga's way through its type's chart, read from its history by [`SagaShape::progress`].
///
/// Nodes are named as in the chart: `s{i}` for step `i`, `f{i}` for its fallback, `c{i}` for its
/// compensation, and `completed`, `compensated`, `failed` for the ends.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Progress {
    nodes: BTreeMap<String, NodeState>,
}

impl Progress {
    /// What became of step `i`'s action: every step has a state (ahead or skipped when the
    /// saga never reached it).
    pub fn step(&self, i: usize) -> NodeState {
        self.node(&format!("s{i}")).unwrap_or(NodeState::Ahead)
    }

    /// What became of step `i`'s fallback, if it ran.
    pub fn fallback(&self, i: usize) -> Option<NodeState> {
        self.node(&format!("f{i}"))
    }

    /// What became of step `i`'s compensation, if it ran.
    pub fn compensation(&self, i: usize) -> Option<NodeState> {
        self.node(&format!("c{i}"))
    }

    /// The state of a chart node by its name (`s0`, `c2`, `compensated`, ...), if the history
    /// reached it.
    pub fn node(&self, name: &str) -> Option<NodeState> {
        self.nodes.get(name).copied()
    }
}

/// What a failure of one step leads to, from [`SagaShape::rollback_from`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rollback {
    /// The compensations of these steps run, in this order (latest step first); empty when no
    /// earlier step has one.
    Compensate(Vec<usize>),
    /// The step is past the pivot: nothing is undone and the saga ends failed, needing
    /// attention.
    Fail,
}

impl SagaShape {
    /// One saga's way through this shape, from its history (see [`Progress`]).
    ///
    /// ```
    /// # use saga_runtime::{saga, saga_step, Engine, NodeState, Saga, SagaShape, StepError};
    /// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize)]
    /// # struct Ctx;
    /// # #[saga_step(compensate = release)]
    /// # async fn reserve(ctx: &mut Ctx) -> Result<(), StepError> { Ok(()) }
    /// # async fn release(ctx: &mut Ctx) -> Result<(), StepError> { Ok(()) }
    /// # #[saga_step]
    /// # async fn ship(ctx: &mut Ctx) -> Result<(), StepError> { Err(StepError::permanent("no truck")) }
    /// # saga! { Order(Ctx, ()) { reserve, ship } }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let engine = Engine::in_memory();
    /// let outcome = Order::on(&engine).run(Ctx).await.unwrap();
    /// let history = engine.history(outcome.id()).await.unwrap();
    /// let progress = SagaShape::from(&Order::description()).progress(&history);
    /// assert_eq!(progress.step(1), NodeState::Failed);
    /// assert_eq!(progress.compensation(0), Some(NodeState::Done));
    /// # }
    /// ```
    pub fn progress(&self, history: &[SagaEvent]) -> Progress {
        // The index of the step a name (a step's or its fallback's) stands for, and whether it
        // is the fallback.
        let find = |name: &str| {
            self.steps.iter().enumerate().find_map(|(i, s)| {
                if s.name == name {
                    Some((i, false))
                } else if s.fallback.as_deref() == Some(name) {
                    Some((i, true))
                } else {
                    None
                }
            })
        };
        let action =
            |name: &str| find(name).map(|(i, fb)| format!("{}{i}", ["s", "f"][fb as usize]));
        let compensation = |name: &str| find(name).map(|(i, _)| format!("c{i}"));
        let node = |name: &str, phase: Phase| match phase {
            Phase::Action => action(name),
            Phase::Compensation => compensation(name),
        };
        let mut nodes = BTreeMap::new();
        let mut ended = false;
        for event in history {
            let (node, state) = match &event.kind {
                SagaEventKind::StepStarted { step, phase, .. }
                | SagaEventKind::RetryScheduled { step, phase, .. } => {
                    (node(step, *phase), NodeState::Running)
                }
                SagaEventKind::StepCompleted { step, .. } => (action(step), NodeState::Done),
                SagaEventKind::StepFailed { step, .. } => (action(step), NodeState::Failed),
                SagaEventKind::FallbackStarted { step, .. } => (action(step), NodeState::Failed),
                SagaEventKind::StepCompensated { step, .. } => {
                    (compensation(step), NodeState::Done)
                }
                SagaEventKind::CompensationFailed { step, .. } => {
                    (compensation(step), NodeState::Failed)
                }
                SagaEventKind::SagaCompleted { .. } => (Some("completed".into()), NodeState::Done),
                SagaEventKind::SagaCompensated { .. } => {
                    (Some("compensated".into()), NodeState::Done)
                }
                SagaEventKind::SagaFailed { .. } => (Some("failed".into()), NodeState::Failed),
                _ => (None, NodeState::Done),
            };
            match &event.kind {
                SagaEventKind::SagaCompleted { .. }
                | SagaEventKind::SagaCompensated { .. }
                | SagaEventKind::SagaFailed { .. } => ended = true,
                SagaEventKind::SagaReopened { .. } => ended = false,
                _ => {}
            }
            if let Some(node) = node {
                nodes.insert(node, state);
            }
        }
        // The steps it has not reached: ahead while it runs, skipped once it ended.
        let unreached = match ended {
            true => NodeState::Skipped,
            false => NodeState::Ahead,
        };
        for i in 0..self.steps.len() {
            nodes.entry(format!("s{i}")).or_insert(unreached);
        }
        Progress { nodes }
    }

    /// The pivot step's index, if the saga has one.
    pub fn pivot(&self) -> Option<usize> {
        self.steps.iter().position(|s| s.undo == UndoShape::Pivot)
    }

    /// The steps whose compensation a rollback runs, in step order: those before the pivot that
    /// declare one.
    pub fn compensable(&self) -> Vec<usize> {
        let pivot = self.pivot();
        (0..self.steps.len())
            .filter(|&i| pivot.is_none_or(|p| i < p))
            .filter(|&i| {
                self.steps[i].undo == UndoShape::Compensate && self.steps[i].compensation.is_some()
            })
            .collect()
    }

    /// What a failure for good of step `step` (after its fallback, if it has one) leads to.
    ///
    /// ```
    /// # use saga_runtime::{saga, saga_step, Rollback, Saga, SagaShape, StepError};
    /// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize)]
    /// # struct Ctx;
    /// # #[saga_step(compensate = release)]
    /// # async fn reserve(ctx: &mut Ctx) -> Result<(), StepError> { Ok(()) }
    /// # async fn release(ctx: &mut Ctx) -> Result<(), StepError> { Ok(()) }
    /// # #[saga_step(pivot)]
    /// # async fn charge(ctx: &mut Ctx) -> Result<(), StepError> { Ok(()) }
    /// # #[saga_step]
    /// # async fn ship(ctx: &mut Ctx) -> Result<(), StepError> { Ok(()) }
    /// # saga! { Order(Ctx, ()) { reserve, charge, ship } }
    /// let shape = SagaShape::from(&Order::description());
    /// assert_eq!(shape.rollback_from(1), Rollback::Compensate(vec![0]));
    /// assert_eq!(shape.rollback_from(2), Rollback::Fail, "past the pivot");
    /// ```
    ///
    /// A member of a parallel group that fails rolls back its siblings (those that completed)
    /// with the steps before the group.
    pub fn rollback_from(&self, step: usize) -> Rollback {
        let stage = self.stage(step);
        match self.pivot() {
            Some(p) if step > p => Rollback::Fail,
            _ => Rollback::Compensate(
                self.compensable()
                    .into_iter()
                    .rev()
                    .filter(|&j| j < stage.start || (stage.contains(&j) && j != step))
                    .collect(),
            ),
        }
    }
}
