//! The saga types' shapes on PostgreSQL (schema version 2 on).

use std::time::SystemTime;

use tokio_postgres::GenericClient;

use super::rows::{pg_error, Sql};
use crate::store::encoding::millis;
use crate::store::{StoreError, StoreErrorKind};
use crate::SagaShape;

/// Records a shape unless one with the same name and fingerprint is there.
pub(super) async fn record(
    client: &impl GenericClient,
    sql: &Sql,
    name: &str,
    fingerprint: &str,
    shape: &str,
) -> Result<(), StoreError> {
    client
        .execute(
            &format!(
                "INSERT INTO {}.saga_types (name, fingerprint, shape, recorded_at)
                 VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                sql.schema
            ),
            &[&name, &fingerprint, &shape, &millis(SystemTime::now())],
        )
        .await
        .map_err(pg_error)?;
    Ok(())
}

/// Every shape recorded, by name, newest first within a name.
pub(super) async fn all(
    client: &impl GenericClient,
    sql: &Sql,
) -> Result<Vec<SagaShape>, StoreError> {
    let rows = client
        .query(
            &format!(
                "SELECT name, shape FROM {}.saga_types ORDER BY name, recorded_at DESC, fingerprint",
                sql.schema
            ),
            &[],
        )
        .await
        .map_err(pg_error)?;
    rows.iter()
        .map(|row| {
            let (name, shape): (String, String) = (row.get(0), row.get(1));
            serde_json::from_str(&shape).map_err(|e| {
                StoreError::new(
                    StoreErrorKind::Corrupt,
                    format!("the recorded shape of saga type `{name}`: {e}"),
                )
            })
        })
        .collect()
}
