//! A saga's definition as a Mermaid flowchart: the forward path, what each failure leads to (the
//! rollback through the compensations in reverse order, a fallback, or, past the pivot, a
//! failed saga), and the compensations chained back to the start; for one saga, the path its
//! history took.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::event::{SagaEvent, SagaEventKind};
use crate::shape::{SagaShape, UndoShape};
use crate::{Phase, SagaDescription};

impl SagaDescription {
    /// The saga as a Mermaid flowchart (`flowchart LR`), for documentation and tools: each step
    /// (a pivot as a hexagon), the compensations (on a second row, chained in reverse order),
    /// fallbacks, and where a failure at each step leads. Paste it into a Markdown file that
    /// renders Mermaid, or <https://mermaid.live>.
    ///
    /// ```
    /// # use saga_runtime::{saga, saga_step, Saga, StepError};
    /// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize)]
    /// # struct Ctx;
    /// #[saga_step(compensate = release)]
    /// async fn reserve(ctx: &mut Ctx) -> Result<(), StepError> { Ok(()) }
    /// async fn release(ctx: &mut Ctx) -> Result<(), StepError> { Ok(()) }
    /// #[saga_step]
    /// async fn ship(ctx: &mut Ctx) -> Result<(), StepError> { Ok(()) }
    /// saga! { Order(Ctx, ()) { reserve, ship } }
    ///
    /// let chart = Order::mermaid();
    /// assert!(chart.starts_with("flowchart LR\n"));
    /// assert!(chart.contains("s1 -. fails .-> c0"), "a failed `ship` undoes `reserve`");
    /// ```
    pub fn mermaid(&self) -> String {
        SagaShape::from(self).mermaid()
    }
}

/// How one node of a saga's chart is drawn for one saga.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mark {
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

impl Mark {
    const ALL: [Mark; 5] = [
        Mark::Done,
        Mark::Failed,
        Mark::Running,
        Mark::Ahead,
        Mark::Skipped,
    ];

    fn class(self) -> &'static str {
        match self {
            Mark::Done => "done",
            Mark::Failed => "failed",
            Mark::Running => "running",
            Mark::Ahead => "ahead",
            Mark::Skipped => "skipped",
        }
    }

    fn style(self) -> &'static str {
        match self {
            Mark::Done => "fill:#d3f9d8,stroke:#2b8a3e,color:#1b4332",
            Mark::Failed => "fill:#ffe3e3,stroke:#c92a2a,color:#7d1a1a",
            Mark::Running => "fill:#fff3bf,stroke:#e67700,color:#5c3c00",
            Mark::Ahead => "fill:#ffffff,stroke:#868e96,stroke-dasharray:4 3",
            Mark::Skipped => "fill:#f1f3f5,stroke:#ced4da,color:#868e96",
        }
    }
}

impl SagaShape {
    /// The saga type as a Mermaid flowchart (see [`SagaDescription::mermaid`]).
    pub fn mermaid(&self) -> String {
        self.chart(None)
    }

    /// The chart of one saga of this type, from its history: the steps, fallbacks and
    /// compensations that ran (green), failed (red) or are under way (yellow), the steps still
    /// ahead (dashed) and, once it ended, those it never ran (grey).
    ///
    /// ```
    /// # use saga_runtime::{saga, saga_step, Engine, Saga, SagaShape, StepError};
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
    /// let chart = SagaShape::from(&Order::description()).mermaid_run(&history);
    /// assert!(chart.contains("class s1 failed"), "{chart}");
    /// assert!(chart.contains("class s0,c0,compensated done"), "{chart}");
    /// # }
    /// ```
    pub fn mermaid_run(&self, history: &[SagaEvent]) -> String {
        self.chart(Some(&self.marks(history)))
    }

    /// Which node each event of `history` leaves in which state.
    fn marks(&self, history: &[SagaEvent]) -> BTreeMap<String, Mark> {
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
        let mut marks = BTreeMap::new();
        let mut ended = false;
        for event in history {
            let (node, mark) = match &event.kind {
                SagaEventKind::StepStarted { step, phase, .. }
                | SagaEventKind::RetryScheduled { step, phase, .. } => {
                    (node(step, *phase), Mark::Running)
                }
                SagaEventKind::StepCompleted { step, .. } => (action(step), Mark::Done),
                SagaEventKind::StepFailed { step, .. } => (action(step), Mark::Failed),
                SagaEventKind::FallbackStarted { step, .. } => (action(step), Mark::Failed),
                SagaEventKind::StepCompensated { step, .. } => (compensation(step), Mark::Done),
                SagaEventKind::CompensationFailed { step, .. } => {
                    (compensation(step), Mark::Failed)
                }
                SagaEventKind::SagaCompleted { .. } => (Some("completed".into()), Mark::Done),
                SagaEventKind::SagaCompensated { .. } => (Some("compensated".into()), Mark::Done),
                SagaEventKind::SagaFailed { .. } => (Some("failed".into()), Mark::Failed),
                _ => (None, Mark::Done),
            };
            match &event.kind {
                SagaEventKind::SagaCompleted { .. }
                | SagaEventKind::SagaCompensated { .. }
                | SagaEventKind::SagaFailed { .. } => ended = true,
                SagaEventKind::SagaReopened { .. } => ended = false,
                _ => {}
            }
            if let Some(node) = node {
                marks.insert(node, mark);
            }
        }
        // The steps it has not reached: ahead while it runs, skipped once it ended.
        let unreached = match ended {
            true => Mark::Skipped,
            false => Mark::Ahead,
        };
        for i in 0..self.steps.len() {
            marks.entry(format!("s{i}")).or_insert(unreached);
        }
        marks
    }

    fn chart(&self, marks: Option<&BTreeMap<String, Mark>>) -> String {
        let steps = &self.steps;
        let pivot = steps.iter().position(|s| s.undo == UndoShape::Pivot);
        // Steps whose compensation a rollback runs: those before the pivot that declare one.
        let compensable: Vec<usize> = (0..steps.len())
            .filter(|&i| pivot.is_none_or(|p| i < p))
            .filter(|&i| steps[i].undo == UndoShape::Compensate && steps[i].compensation.is_some())
            .collect();
        let mut out = String::from("flowchart LR\n");
        let line = |out: &mut String, text: String| {
            let _ = writeln!(out, "    {text}");
        };
        // Every node drawn but the ends, so that only those are given a class.
        let mut nodes = Vec::new();
        line(&mut out, "start((start)) --> s0".into());
        for (i, step) in steps.iter().enumerate() {
            nodes.push(format!("s{i}"));
            let next = match i + 1 < steps.len() {
                true => format!("s{}", i + 1),
                false => "completed((completed))".to_owned(),
            };
            let node = match pivot == Some(i) {
                true => format!("s{i}{{{{\"{} (pivot)\"}}}}", step.name),
                false => format!("s{i}[\"{}\"]", step.name),
            };
            line(&mut out, format!("{node} --> {next}"));
            if let Some(fallback) = &step.fallback {
                nodes.push(format!("f{i}"));
                line(&mut out, format!("s{i} -. fails .-> f{i}[\"{fallback}\"]"));
                line(&mut out, format!("f{i} --> {next}"));
                continue;
            }
            // Where a failure here leads: past the pivot nothing is undone; before it, the
            // rollback starts with the nearest compensable step before this one.
            let failure = match pivot {
                Some(p) if i > p => "failed((failed))".to_owned(),
                _ => match compensable.iter().rev().find(|&&j| j < i) {
                    Some(j) => format!("c{j}"),
                    None => "compensated((compensated))".to_owned(),
                },
            };
            line(&mut out, format!("s{i} -. fails .-> {failure}"));
        }
        for (k, &j) in compensable.iter().enumerate() {
            let name = steps[j].compensation.as_deref().unwrap_or_default();
            nodes.push(format!("c{j}"));
            let then = match k {
                0 => "compensated((compensated))".to_owned(),
                _ => format!("c{}", compensable[k - 1]),
            };
            line(&mut out, format!("c{j}[/\"{name}\"/] --> {then}"));
        }
        if let Some(marks) = marks {
            for end in ["completed", "compensated", "failed"] {
                if out.contains(&format!("{end}(({end}))")) {
                    nodes.push(end.to_owned());
                }
            }
            for mark in Mark::ALL {
                line(
                    &mut out,
                    format!("classDef {} {}", mark.class(), mark.style()),
                );
            }
            for mark in Mark::ALL {
                let marked: Vec<&str> = nodes
                    .iter()
                    .filter(|n| marks.get(n.as_str()) == Some(&mark))
                    .map(String::as_str)
                    .collect();
                if !marked.is_empty() {
                    line(
                        &mut out,
                        format!("class {} {}", marked.join(","), mark.class()),
                    );
                }
            }
        }
        out
    }
}
