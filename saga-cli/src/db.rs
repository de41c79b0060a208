//! Opening the store `--db` names: a SQLite file (read-only unless the command changes
//! something) or a PostgreSQL URL (never creating a schema).

use std::path::Path;
use std::time::Duration;

use saga_runtime::store::{PostgresStore, SagaStore, SqliteStore};
use saga_runtime::Engine;

/// An open store.
pub enum Db {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

impl Db {
    pub fn store(&self) -> &dyn SagaStore {
        match self {
            Db::Sqlite(store) => store,
            Db::Postgres(store) => store,
        }
    }

    /// An engine on this store that runs no saga: for operator requests.
    pub fn engine(self) -> Engine {
        let builder = Engine::builder().claims(false);
        match self {
            Db::Sqlite(store) => builder.store(store).build(),
            Db::Postgres(store) => builder.store(store).build(),
        }
    }
}

fn is_url(db: &str) -> bool {
    db.starts_with("postgres://") || db.starts_with("postgresql://")
}

async fn open_as(db: Option<&str>, schema: &str, writes: bool) -> Result<Db, String> {
    let Some(db) = db else {
        return Err("no store: pass --db PATH|URL or set SAGA_DB".into());
    };
    if is_url(db) {
        let store = PostgresStore::options(db)
            .schema(schema)
            .create(false)
            .listen(false)
            .pool_size(2)
            .outage_timeout(Duration::from_secs(5))
            .connect()
            .await
            .map_err(|e| format!("{}: {e}", redact(db)))?;
        return Ok(Db::Postgres(store));
    }
    if !Path::new(db).exists() {
        return Err(format!("{db}: no such file"));
    }
    SqliteStore::options(db)
        .read_only(!writes)
        .open()
        .map(Db::Sqlite)
        .map_err(|e| e.to_string())
}

/// Opens the store to look at it: nothing is written.
pub async fn open(db: Option<&str>, schema: &str) -> Result<Db, String> {
    open_as(db, schema, false).await
}

/// Opens the store to act on it.
pub async fn open_for_writes(db: Option<&str>, schema: &str) -> Result<Db, String> {
    open_as(db, schema, true).await
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if url[scheme + 3..at].contains(':') => {
            let user_end = scheme + 3 + url[scheme + 3..at].find(':').unwrap_or(0);
            format!("{}:***{}", &url[..user_end], &url[at..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_not_printed() {
        assert_eq!(
            super::redact("postgres://me:secret@db/x"),
            "postgres://me:***@db/x"
        );
        assert_eq!(super::redact("postgres://me@db/x"), "postgres://me@db/x");
    }
}
