//! The store conformance suite (`saga_runtime::store::conformance`) on every store of this
//! workspace: each case on a fresh in-memory store, on a fresh SQLite file, and on a fresh schema
//! of the PostgreSQL database `SAGA_POSTGRES_URL` names (skipped, saying so, without it).

use saga_runtime::store::{conformance, MemoryStore, PostgresStore, SqliteStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_store_keeps_the_contract() {
    for (name, case) in conformance::CASES {
        eprintln!("memory: {name}");
        case(Box::new(MemoryStore::new())).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sqlite_store_keeps_the_contract() {
    for (name, case) in conformance::CASES {
        eprintln!("sqlite: {name}");
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("conformance.db")).unwrap();
        case(Box::new(store)).await;
    }
}

/// The PostgreSQL server the tests use: `SAGA_POSTGRES_URL` (`.ci/run` sets it).
fn postgres_url() -> Option<String> {
    match std::env::var("SAGA_POSTGRES_URL") {
        Ok(url) => Some(url),
        Err(_) => {
            // Straight to the process's stderr: the test harness does not capture it, so the
            // skip is seen even though the test passes.
            use std::io::Write as _;
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED: the PostgreSQL store was not tested: set SAGA_POSTGRES_URL \
                 (e.g. postgres://postgres@127.0.0.1:5432/test)"
            );
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgres_store_keeps_the_contract() {
    let Some(url) = postgres_url() else {
        return;
    };
    for (name, case) in conformance::CASES {
        eprintln!("postgres: {name}");
        // A schema of its own per case: cases (and test runs) never see each other's sagas.
        let schema = format!("conformance_{}", uuid::Uuid::new_v4().simple());
        let store = PostgresStore::options(&url)
            .schema(&schema)
            .connect()
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        case(Box::new(store)).await;
        drop_schema(&url, &schema).await;
    }
}

/// Drops a case's schema once it passed.
async fn drop_schema(url: &str, schema: &str) {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
}
