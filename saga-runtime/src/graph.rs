//! A saga's definition as a Mermaid flowchart: the forward path, what each failure leads to (the
//! rollback through the compensations in reverse order, a fallback, or, past the pivot, a
//! failed saga), and the compensations chained back to the start; for one saga, the path its
//! history took.

use std::fmt::Write as _;

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
        let compensable = self.compensable();
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
            let label = label(step);
            let node = match pivot == Some(i) {
                true => format!("s{i}{{{{\"{label} (pivot)\"}}}}"),
                false => format!("s{i}[\"{label}\"]"),
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
            let failure = match self.rollback_from(i) {
                Rollback::Fail => "failed((failed))".to_owned(),
                Rollback::Compensate(undo) => match undo.first() {
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
