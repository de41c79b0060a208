//! The store conformance suite (`saga_runtime::store::conformance`) on every store of this
//! workspace: each case on a fresh in-memory store, on a fresh SQLite file, and on a fresh schema
//! of the PostgreSQL database `SAGA_POSTGRES_URL` names (skipped, saying so, without it).

use saga_runtime::store::{conformance, MemoryStore, PostgresStore, SqliteStore};
use saga_tests::{fresh_schema, postgres_sql, postgres_url};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgres_store_keeps_the_contract() {
    let Some(url) = postgres_url("the PostgreSQL store's conformance test") else {
        return;
    };
    for (name, case) in conformance::CASES {
        eprintln!("postgres: {name}");
        // A schema of its own per case: cases (and test runs) never see each other's sagas.
        let schema = fresh_schema("conformance");
        let store = PostgresStore::options(&url)
            .schema(&schema)
            .connect()
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        case(Box::new(store)).await;
        postgres_sql(&url, &format!("DROP SCHEMA {schema} CASCADE")).await;
    }
}
