//! `saga cancel|resume|retry ID`: operator requests through the store, so that the worker holding
//! the saga (or the next to take it) acts on them. A request the saga's state does not allow is
//! refused with the reason.

use saga_runtime::SagaId;

use crate::db::Db;

pub async fn cancel(db: Db, id: SagaId) -> Result<(), String> {
    db.engine().cancel(id).await.map_err(|e| e.to_string())?;
    println!(
        "cancel requested for saga {id}: its worker stops at the next step boundary and \
         compensates"
    );
    Ok(())
}

pub async fn resume(db: Db, id: SagaId) -> Result<(), String> {
    db.engine().resume(id).await.map_err(|e| e.to_string())?;
    println!("saga {id} resumed: a worker with its type goes on from where it stopped");
    Ok(())
}

pub async fn retry(db: Db, id: SagaId) -> Result<(), String> {
    db.engine().retry(id).await.map_err(|e| e.to_string())?;
    println!("saga {id} reopened for a retry: a worker with its type runs it again");
    Ok(())
}
