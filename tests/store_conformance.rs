//! The store conformance suite (`saga_runtime::store::conformance`) on every store of this
//! workspace: each case on a fresh in-memory store and on a fresh SQLite file.

use saga_runtime::store::{conformance, MemoryStore, SqliteStore};

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
