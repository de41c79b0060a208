//! A saga's definition as a Mermaid flowchart: the forward path, what each failure leads to (the
//! rollback through the compensations in reverse order, a fallback, or, past the pivot, a
//! failed saga), and the compensations chained back to the start.

use std::fmt::Write as _;

use crate::{SagaDescription, Undo};

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
        let steps = &self.steps;
        let pivot = steps.iter().position(|s| s.policy.undo == Undo::Pivot);
        // Steps whose compensation a rollback runs: those before the pivot that declare one.
        let compensable: Vec<usize> = (0..steps.len())
            .filter(|&i| pivot.is_none_or(|p| i < p))
            .filter(|&i| {
                steps[i].policy.undo == Undo::Compensate && steps[i].compensation.is_some()
            })
            .collect();
        let mut out = String::from("flowchart LR\n");
        let line = |out: &mut String, text: String| {
            let _ = writeln!(out, "    {text}");
        };
        line(&mut out, "start((start)) --> s0".into());
        for (i, step) in steps.iter().enumerate() {
            let next = match i + 1 < steps.len() {
                true => format!("s{}", i + 1),
                false => "completed((completed))".to_owned(),
            };
            let node = match pivot == Some(i) {
                true => format!("s{i}{{{{\"{} (pivot)\"}}}}", step.name),
                false => format!("s{i}[\"{}\"]", step.name),
            };
            line(&mut out, format!("{node} --> {next}"));
            if let Some(fallback) = step.fallback {
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
            let name = steps[j].compensation.unwrap_or_default();
            let then = match k {
                0 => "compensated((compensated))".to_owned(),
                _ => format!("c{}", compensable[k - 1]),
            };
            line(&mut out, format!("c{j}[/\"{name}\"/] --> {then}"));
        }
        out
    }
}
