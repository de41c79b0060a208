//! The PostgreSQL schema: created by the library in its own schema, with a version; a newer
//! version is refused before anything is written.

use super::rows::pg_error;
use crate::store::{StoreError, StoreErrorKind};

/// The schema version this library writes.
pub const POSTGRES_SCHEMA_VERSION: i32 = 2;

/// The tables, in schema `{s}`.
const TABLES: &str = "
    CREATE TABLE {s}.sagas (
        seq               BIGSERIAL NOT NULL UNIQUE,
        id                TEXT PRIMARY KEY,
        saga_type         TEXT NOT NULL,
        steps             TEXT NOT NULL,
        status            TEXT NOT NULL,
        status_name       TEXT NOT NULL,
        terminal          BOOLEAN NOT NULL DEFAULT FALSE,
        state             TEXT NOT NULL,
        context           BYTEA NOT NULL,
        idempotency_key   TEXT UNIQUE,
        events            BIGINT NOT NULL,
        token             BIGINT NOT NULL DEFAULT 0,
        owner             TEXT,
        lease_until       BIGINT,
        wake_at           BIGINT,
        cancel_requested  BOOLEAN NOT NULL DEFAULT FALSE,
        created_at        BIGINT NOT NULL,
        updated_at        BIGINT NOT NULL
    );
    CREATE INDEX sagas_unfinished ON {s}.sagas (seq) WHERE NOT terminal;
    CREATE INDEX sagas_waking ON {s}.sagas (wake_at) WHERE NOT terminal AND wake_at IS NOT NULL;
    CREATE TABLE {s}.saga_history (
        saga   TEXT NOT NULL,
        n      BIGINT NOT NULL,
        event  TEXT NOT NULL,
        PRIMARY KEY (saga, n)
    );
    CREATE TABLE {s}.saga_schema (version INTEGER NOT NULL);
";

/// The shapes of the saga types started on the store, for tools (since version 2).
const TYPES: &str = "
    CREATE TABLE {s}.saga_types (
        name         TEXT NOT NULL,
        fingerprint  TEXT NOT NULL,
        shape        TEXT NOT NULL,
        recorded_at  BIGINT NOT NULL,
        PRIMARY KEY (name, fingerprint)
    );
";

/// Creates the schema and its tables, or checks their version and brings an older one up to
/// this version, in one transaction that holds an advisory lock (two processes starting at once
/// do not both create them). A store that does not create (`create(false)`, the tools) changes
/// nothing: it reads a version 1 schema as it is. Returns the version it left.
pub(super) async fn migrate(
    client: &mut deadpool_postgres::Object,
    schema: &str,
    create: bool,
) -> Result<i32, StoreError> {
    let tx = client.transaction().await.map_err(pg_error)?;
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext($1))",
        &[&format!("saga-schema:{schema}")],
    )
    .await
    .map_err(pg_error)?;
    if !create && !table_exists(&tx, schema, "saga_schema").await? {
        return Err(StoreError::new(
            StoreErrorKind::NotFound,
            format!("schema `{schema}` holds no saga store"),
        ));
    }
    tx.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
        .await
        .map_err(pg_error)?;
    if table_exists(&tx, schema, "saga_schema").await? {
        let version: Option<i32> = tx
            .query_opt(&format!("SELECT version FROM {schema}.saga_schema"), &[])
            .await
            .map_err(pg_error)?
            .map(|row| row.get(0));
        return match version {
            Some(POSTGRES_SCHEMA_VERSION) => Ok(POSTGRES_SCHEMA_VERSION),
            Some(1) if !create => Ok(1),
            Some(1) => {
                tx.batch_execute(&TYPES.replace("{s}", schema))
                    .await
                    .map_err(pg_error)?;
                tx.execute(
                    &format!("UPDATE {schema}.saga_schema SET version = $1"),
                    &[&POSTGRES_SCHEMA_VERSION],
                )
                .await
                .map_err(pg_error)?;
                tx.commit().await.map_err(pg_error)?;
                Ok(POSTGRES_SCHEMA_VERSION)
            }
            Some(v) if v > POSTGRES_SCHEMA_VERSION => Err(StoreError::new(
                StoreErrorKind::Corrupt,
                format!(
                    "the saga schema `{schema}` is version {v}, newer than this library's \
                     version {POSTGRES_SCHEMA_VERSION}; upgrade the library (nothing was written)"
                ),
            )),
            other => Err(StoreError::new(
                StoreErrorKind::Corrupt,
                format!(
                    "the saga schema `{schema}` has version {other:?}, which this library never \
                     wrote (nothing was written)"
                ),
            )),
        };
    }
    if table_exists(&tx, schema, "sagas").await? {
        return Err(StoreError::new(
            StoreErrorKind::Corrupt,
            format!(
                "schema `{schema}` holds a `sagas` table that is not a saga store's (nothing was \
                 written)"
            ),
        ));
    }
    tx.batch_execute(&format!("{TABLES}{TYPES}").replace("{s}", schema))
        .await
        .map_err(pg_error)?;
    tx.execute(
        &format!("INSERT INTO {schema}.saga_schema (version) VALUES ($1)"),
        &[&POSTGRES_SCHEMA_VERSION],
    )
    .await
    .map_err(pg_error)?;
    tx.commit().await.map_err(pg_error)?;
    Ok(POSTGRES_SCHEMA_VERSION)
}

/// Whether table `schema.table` exists.
async fn table_exists(
    tx: &deadpool_postgres::Transaction<'_>,
    schema: &str,
    table: &str,
) -> Result<bool, StoreError> {
    let row = tx
        .query_one(
            "SELECT to_regclass($1) IS NOT NULL",
            &[&format!("{schema}.{table}")],
        )
        .await
        .map_err(pg_error)?;
    Ok(row.get(0))
}
