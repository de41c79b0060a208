//! `saga stats`: counts per type and status, the oldest running saga, the next durable timer.

use saga_runtime::store::SagaQuery;
use serde_json::json;

use crate::db::Db;
use crate::text;

pub async fn run(db: &Db, as_json: bool) -> Result<(), String> {
    let store = db.store();
    let counts = store.counts().await.map_err(|e| e.to_string())?;
    let oldest = store
        .list(SagaQuery::new().status("running").limit(1))
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .next();
    let next_timer = store.next_wake(None).await.map_err(|e| e.to_string())?;
    if as_json {
        let out = json!({
            "counts": counts.iter().map(|c| json!({
                "type": c.saga_type, "status": c.status, "count": c.count,
            })).collect::<Vec<_>>(),
            "oldest_running": oldest.as_ref().map(|s| json!({
                "id": s.id.to_string(), "type": s.saga_type,
                "created_at_ms": text::millis(s.created_at),
            })),
            "next_timer_ms": next_timer.map(text::millis),
        });
        println!("{out:#}");
        return Ok(());
    }
    if counts.is_empty() {
        println!("no sagas");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = counts
        .iter()
        .map(|c| vec![c.saga_type.clone(), c.status.clone(), c.count.to_string()])
        .collect();
    print!("{}", text::table(&["TYPE", "STATUS", "COUNT"], &rows));
    match oldest {
        Some(s) => println!(
            "oldest running: {} ({}), started {}",
            s.id,
            s.saga_type,
            text::ago(s.created_at)
        ),
        None => println!("no saga running"),
    }
    match next_timer {
        Some(at) => println!("next durable timer: {}", text::ago(at)),
        None => println!("no saga waits on a durable timer"),
    }
    Ok(())
}
