//! A saga's definition as a Mermaid flowchart: the forward path, what each failure leads to (the
//! rollback through the compensations in reverse order, a fallback, or, past the pivot, a
//! failed saga), and the compensations chained back to the start; for one saga, the path its
//! history took.

use std::fmt::Write as _;
use std::ops::Range;

use crate::event::SagaEvent;
use crate::progress::{NodeState, Progress, Rollback};
use crate::shape::{SagaShape, StepShape};
use crate::SagaDescription;

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

/// The Mermaid style of a node in each state.
fn style(state: NodeState) -> &'static str {
    match state {
        NodeState::Done => "fill:#d3f9d8,stroke:#2b8a3e,color:#1b4332",
        NodeState::Failed => "fill:#ffe3e3,stroke:#c92a2a,color:#7d1a1a",
        NodeState::Running => "fill:#fff3bf,stroke:#e67700,color:#5c3c00",
        NodeState::Ahead => "fill:#ffffff,stroke:#868e96,stroke-dasharray:4 3",
        NodeState::Skipped => "fill:#f1f3f5,stroke:#ced4da,color:#868e96",
    }
}

/// A step's label: its name, the outputs it takes (`← charge_payment`) and the output it returns
/// (`→ PaymentProcessed`), each on a line of its own.
fn label(step: &StepShape) -> String {
    let mut label = step.name.clone();
    for input in &step.inputs {
        label += &format!("<br/>← {input}");
    }
    if let Some(output) = &step.output {
        // Mermaid reads `<` and `>` in a label as markup.
        let output = output.replace('<', "#lt;").replace('>', "#gt;");
        label += &format!("<br/>→ {output}");
    }
    label
}

/// A parallel group's box around `nodes`, numbered `k`.
fn group(out: &mut String, k: usize, nodes: impl Iterator<Item = String>) {
    let _ = writeln!(out, "    subgraph g{k}[\"parallel\"]");
    for node in nodes {
        let _ = writeln!(out, "        {node}");
    }
    let _ = writeln!(out, "    end");
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
        self.chart(Some(&self.progress(history)))
    }

    fn chart(&self, progress: Option<&Progress>) -> String {
        let steps = &self.steps;
        let pivot = self.pivot();
        let stages = self.stages();
        let mut out = String::from("flowchart LR\n");
        let line = |out: &mut String, text: String| {
            let _ = writeln!(out, "    {text}");
        };
        // Every node drawn but the ends, so that only those are given a class.
        let mut nodes = Vec::new();
        let members = |stage: Option<&Range<usize>>| -> Vec<String> {
            match stage {
                Some(stage) => stage.clone().map(|j| format!("s{j}")).collect(),
                None => vec!["completed((completed))".to_owned()],
            }
        };
        for first in members(stages.first()) {
            line(&mut out, format!("start((start)) --> {first}"));
        }
        for (k, stage) in stages.iter().enumerate() {
            // A group's members each lead to every member of the next stage.
            let next = members(stages.get(k + 1));
            for i in stage.clone() {
                let step = &steps[i];
                nodes.push(format!("s{i}"));
                let label = label(step);
                let node = match pivot == Some(i) {
                    true => format!("s{i}{{{{\"{label} (pivot)\"}}}}"),
                    false => format!("s{i}[\"{label}\"]"),
                };
                line(&mut out, format!("{node} --> {}", next[0]));
                for then in &next[1..] {
                    line(&mut out, format!("s{i} --> {then}"));
                }
                if let Some(fallback) = &step.fallback {
                    nodes.push(format!("f{i}"));
                    line(&mut out, format!("s{i} -. fails .-> f{i}[\"{fallback}\"]"));
                    for then in &next {
                        line(&mut out, format!("f{i} --> {then}"));
                    }
                    continue;
                }
                // Where a failure here leads: past the pivot nothing is undone; before it, the
                // rollback starts with the nearest compensable steps (a group's at once).
                let failures = match self.rollback_from(i) {
                    Rollback::Fail => vec!["failed((failed))".to_owned()],
                    Rollback::Compensate(undo) => match undo.first() {
                        Some(&j) => {
                            let first = self.stage(j);
                            undo.iter()
                                .filter(|u| first.contains(u))
                                .map(|u| format!("c{u}"))
                                .collect()
                        }
                        None => vec!["compensated((compensated))".to_owned()],
                    },
                };
                for failure in failures {
                    line(&mut out, format!("s{i} -. fails .-> {failure}"));
                }
            }
            if stage.len() > 1 {
                group(&mut out, k, stage.clone().map(|i| format!("s{i}")));
            }
        }
        // The compensations, chained in reverse order; a group's run at once, each leading to
        // every compensation of the stage before.
        let mut undo_stages: Vec<Vec<usize>> = Vec::new();
        for j in self.compensable() {
            match undo_stages.last_mut() {
                Some(last) if self.stage(last[0]) == self.stage(j) => last.push(j),
                _ => undo_stages.push(vec![j]),
            }
        }
        for (k, undo_stage) in undo_stages.iter().enumerate() {
            let then: Vec<String> = match k {
                0 => vec!["compensated((compensated))".to_owned()],
                _ => undo_stages[k - 1].iter().map(|j| format!("c{j}")).collect(),
            };
            for &j in undo_stage {
                let name = steps[j].compensation.as_deref().unwrap_or_default();
                nodes.push(format!("c{j}"));
                line(&mut out, format!("c{j}[/\"{name}\"/] --> {}", then[0]));
                for then in &then[1..] {
                    line(&mut out, format!("c{j} --> {then}"));
                }
            }
            if undo_stage.len() > 1 {
                let first = undo_stage[0];
                group(
                    &mut out,
                    first + steps.len(),
                    undo_stage.iter().map(|j| format!("c{j}")),
                );
            }
        }
        if let Some(progress) = progress {
            for end in ["completed", "compensated", "failed"] {
                if out.contains(&format!("{end}(({end}))")) {
                    nodes.push(end.to_owned());
                }
            }
            for state in NodeState::ALL {
                line(
                    &mut out,
                    format!("classDef {} {}", state.name(), style(state)),
                );
            }
            for state in NodeState::ALL {
                let marked: Vec<&str> = nodes
                    .iter()
                    .filter(|n| progress.node(n) == Some(state))
                    .map(String::as_str)
                    .collect();
                if !marked.is_empty() {
                    line(
                        &mut out,
                        format!("class {} {}", marked.join(","), state.name()),
                    );
                }
            }
        }
        out
    }
}
