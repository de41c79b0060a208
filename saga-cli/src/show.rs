//! `saga show ID`: a saga's status, context and lease, and its history as a timeline: each
//! attempt with its duration, error and retry delay, the rollback apart from the forward path,
//! and the wake time it waits for.

use std::time::SystemTime;

use saga_runtime::store::SagaRecord;
use saga_runtime::{SagaEvent, SagaId};
use serde_json::json;

use crate::db::Db;
use crate::text::{self, Paint};
use crate::timeline::{self, Tone};

pub async fn run(db: &Db, id: SagaId, as_json: bool) -> Result<(), String> {
    let store = db.store();
    let record = store
        .load(id)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no saga with id {id}"))?;
    let history = store
        .history(id, 0, usize::MAX)
        .await
        .map_err(|e| e.to_string())?
        .unwrap_or_default();
    let context: serde_json::Value = record
        .context
        .to_json()
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or(serde_json::Value::Null);
    if as_json {
        let out = json!({
            "id": id.to_string(),
            "type": record.saga_type,
            "steps": record.steps,
            "status": record.state.status.name(),
            "state": record.state,
            "context": context,
            "idempotency_key": record.idempotency_key,
            "lease": record.lease.as_ref().map(|l| json!({
                "owner": &*l.owner,
                "token": l.token,
                "expires_at_ms": text::millis(l.expires_at),
            })),
            "wake_at_ms": record.state.wake_at().map(text::millis),
            "cancel_requested": record.cancel_requested,
            "created_at_ms": text::millis(record.created_at),
            "updated_at_ms": text::millis(record.updated_at),
            "history": history,
        });
        println!("{out:#}");
        return Ok(());
    }
    print!("{}", render(&record, &context, &history, Paint::detect()));
    Ok(())
}

/// The whole page, as text.
fn render(
    record: &SagaRecord,
    context: &serde_json::Value,
    history: &[SagaEvent],
    paint: Paint,
) -> String {
    let status = &record.state.status;
    let mut out = format!(
        "saga {} ({})\nstatus: {}\nsteps: {}\n",
        record.id,
        record.saga_type,
        text::status(paint, &status.to_string()),
        record.steps.join(" -> ")
    );
    if let Some(key) = &record.idempotency_key {
        out += &format!("idempotency key: {key}\n");
    }
    out += &format!(
        "created {}, updated {}\n",
        text::ago(record.created_at),
        text::ago(record.updated_at)
    );
    match &record.lease {
        Some(lease) => {
            out += &format!(
                "held by {} (fencing token {}), lease expires {}\n",
                lease.owner,
                lease.token,
                text::ago(lease.expires_at)
            )
        }
        None if !status.is_terminal() => out += "held by no worker\n",
        None => {}
    }
    if let Some(wake) = record.state.wake_at() {
        if wake > SystemTime::now() {
            out += &paint.warn(&format!("waiting until {}\n", text::ago(wake)));
        }
    }
    if record.cancel_requested && !status.is_terminal() {
        out += &paint.warn("cancellation requested\n");
    }
    let pretty = serde_json::to_string_pretty(context).unwrap_or_default();
    out += &format!("context:\n{}\n", indent(&pretty, "  "));
    out += "timeline:\n";
    out += &timeline(history, paint);
    out
}

fn indent(text: &str, by: &str) -> String {
    text.lines()
        .map(|line| format!("{by}{line}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// One line per event, times from the start; the rollback indented apart from the forward path.
fn timeline(history: &[SagaEvent], paint: Paint) -> String {
    let mut out = String::new();
    for entry in timeline::entries(history) {
        let line = match entry.tone {
            Tone::Plain => entry.text,
            Tone::Good => paint.good(&entry.text),
            Tone::Bad => paint.bad(&entry.text),
            Tone::Warn => paint.warn(&entry.text),
            Tone::Undo => paint.undo(&entry.text),
            Tone::Dim => paint.dim(&entry.text),
        };
        let margin = if entry.rollback { "    " } else { "  " };
        out += &format!("{margin}{:>8}  {line}\n", entry.offset);
    }
    out
}
