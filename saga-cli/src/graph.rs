//! `saga graph TYPE|ID`: a saga type as a Mermaid flowchart, or one saga's path through it,
//! drawn from the shape its engines recorded in the store (not from the user's code).

use saga_runtime::store::SagaRecord;
use saga_runtime::{SagaId, SagaShape};

use crate::db::Db;

#[derive(clap::Args)]
pub struct Args {
    /// A saga type's name, or a saga's id (its path is highlighted).
    target: String,
    /// Wraps the chart in a ```mermaid fence, ready to paste into Markdown.
    #[arg(long)]
    markdown: bool,
}

pub async fn run(db: &Db, args: Args) -> Result<(), String> {
    let store = db.store();
    let types = store.saga_types().await.map_err(|e| e.to_string())?;
    let chart = match args.target.parse::<SagaId>() {
        Ok(id) => {
            let record = store
                .load(id)
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("no saga {id} in this store"))?;
            let shape = shape_of(&types, &record).ok_or_else(|| {
                format!(
                    "saga {id}'s type `{}` (steps {}) is not recorded in this store: {}",
                    record.saga_type,
                    record.steps.join(", "),
                    unrecorded_hint()
                )
            })?;
            let history = store
                .history(id, 0, usize::MAX)
                .await
                .map_err(|e| e.to_string())?
                .unwrap_or_default();
            shape.mermaid_run(&history)
        }
        Err(_) => newest(&types, &args.target)?.mermaid(),
    };
    match args.markdown {
        true => println!("```mermaid\n{chart}```"),
        false => print!("{chart}"),
    }
    Ok(())
}

/// The shape a saga was started under: its type's, with its step names.
pub fn shape_of<'a>(types: &'a [SagaShape], record: &SagaRecord) -> Option<&'a SagaShape> {
    types
        .iter()
        .find(|t| t.name == record.saga_type && t.step_names() == record.steps)
}

/// The shape of type `name` recorded last.
fn newest<'a>(types: &'a [SagaShape], name: &str) -> Result<&'a SagaShape, String> {
    types.iter().find(|t| t.name == name).ok_or_else(|| {
        let mut names: Vec<&str> = types.iter().map(|t| t.name.as_str()).collect();
        names.dedup();
        match names.is_empty() {
            true => format!(
                "no saga type `{name}` is recorded in this store: {}",
                unrecorded_hint()
            ),
            false => format!(
                "no saga type `{name}` is recorded in this store (it has {})",
                names.join(", ")
            ),
        }
    })
}

pub fn unrecorded_hint() -> &'static str {
    "an engine records a type's shape when it first starts one of its sagas"
}
