//! `saga list`: sagas matching filters, oldest first, a page at a time.

use std::time::Duration;

use saga_runtime::SagaId;
use serde_json::json;

use crate::db::Db;
use crate::filter::{parse_age, parse_id, Filter};
use crate::text;

#[derive(clap::Args)]
pub struct Args {
    /// Only sagas with this status (running, compensating, completed, compensated,
    /// compensation_failed, failed, parked).
    #[arg(long)]
    status: Option<String>,
    /// Only sagas of this type.
    #[arg(long = "type", value_name = "TYPE")]
    saga_type: Option<String>,
    /// Only the saga with this idempotency key.
    #[arg(long)]
    key: Option<String>,
    /// Only sagas created within this long (e.g. 30s, 15m, 2h, 7d).
    #[arg(long, value_name = "AGE", value_parser = parse_age)]
    since: Option<Duration>,
    /// Only sagas created longer ago than this (e.g. 10m).
    #[arg(long, value_name = "AGE", value_parser = parse_age)]
    until: Option<Duration>,
    /// Only sagas waiting on a durable timer (a retry backoff, a resume time).
    #[arg(long)]
    waiting: bool,
    /// The page after this saga (the last id of the previous page).
    #[arg(long, value_name = "ID", value_parser = parse_id)]
    after: Option<SagaId>,
    /// At most this many.
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// As JSON (one array).
    #[arg(long)]
    json: bool,
}

pub async fn run(db: &Db, args: Args) -> Result<(), String> {
    let query = Filter {
        status: args.status,
        saga_type: args.saga_type,
        key: args.key,
        since: args.since,
        until: args.until,
        waiting: args.waiting,
        after: args.after,
        limit: args.limit,
    }
    .query()?;
    let limit = query.limit;
    let sagas = db.store().list(query).await.map_err(|e| e.to_string())?;
    if args.json {
        let list: Vec<_> = sagas
            .iter()
            .map(|s| {
                json!({
                    "id": s.id.to_string(),
                    "type": s.saga_type,
                    "status": s.status.name(),
                    "idempotency_key": s.idempotency_key,
                    "owner": s.owner,
                    "created_at_ms": text::millis(s.created_at),
                    "updated_at_ms": text::millis(s.updated_at),
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(list));
        return Ok(());
    }
    if sagas.is_empty() {
        println!("no sagas");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = sagas
        .iter()
        .map(|s| {
            vec![
                s.id.to_string(),
                s.saga_type.clone(),
                s.status.name().to_owned(),
                s.idempotency_key.clone().unwrap_or_default(),
                s.owner.clone().unwrap_or_default(),
                text::ago(s.created_at),
                text::ago(s.updated_at),
            ]
        })
        .collect();
    print!(
        "{}",
        text::table(
            &["ID", "TYPE", "STATUS", "KEY", "HELD BY", "CREATED", "UPDATED"],
            &rows
        )
    );
    if sagas.len() == limit {
        if let Some(last) = sagas.last() {
            println!("(more: --after {})", last.id);
        }
    }
    Ok(())
}
