//! Recovery of sagas assembled at run time: a worker that registered the definition's name
//! builds it again from the saga's stored context and resumes it; a saga whose definition cannot
//! be built again, or no longer matches, is parked with the reason.

use std::sync::Arc;

use saga_runtime::{BuildError, Engine, SagaDefinition, SagaId, SagaStatus};
use saga_tests::cart::{cart, cart_saga, checkout, Cart, Notes as Ledger};

/// Records a two-item cart saga on the SQLite file `path` for a worker to run (none runs it
/// here); returns its id.
async fn enqueued(path: &std::path::Path) -> SagaId {
    let client = Engine::builder()
        .sqlite(path)
        .unwrap()
        .claims(false)
        .build();
    cart_saga(&cart(&["book", "lamp"], false))
        .unwrap()
        .on(&client)
        .request(cart(&["book", "lamp"], false))
        .enqueue()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_worker_resumes_a_built_saga_by_building_its_definition_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sagas.db");
    let ledger = Arc::new(Ledger::default());
    let id = enqueued(&path).await;
    // A worker that knows the definition by name builds it from the stored cart.
    let worker = Engine::builder()
        .sqlite(&path)
        .unwrap()
        .register_definition("CartSaga", ledger.clone(), cart_saga)
        .build();
    let report = worker.recover().await.unwrap();
    assert_eq!(report.resumed, [id], "{report:?}");
    let outcome = cart_saga(&cart(&["book", "lamp"], false))
        .unwrap()
        .on(&worker)
        .wait(id)
        .await
        .unwrap();
    assert!(outcome.is_completed());
    let mut entries = ledger.entries();
    entries.sort();
    assert_eq!(
        entries,
        [
            "checkout".to_string(),
            format!("reserve book as {id}:reserve[0]"),
            format!("reserve lamp as {id}:reserve[1]"),
        ]
    );
}

/// Enqueues a two-item cart saga on a SQLite file, then recovers it with a worker whose
/// registered definition is `definition`; returns why it was parked.
async fn parked_by<F>(definition: F) -> String
where
    F: Fn(&Cart) -> Result<SagaDefinition<Cart, Ledger>, BuildError> + Send + Sync + 'static,
{
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sagas.db");
    let id = enqueued(&path).await;
    let worker = Engine::builder()
        .sqlite(&path)
        .unwrap()
        .register_definition("CartSaga", Ledger::default(), definition)
        .build();
    let report = worker.recover().await.unwrap();
    assert!(report.resumed.is_empty(), "{report:?}");
    assert_eq!(report.parked.len(), 1, "{report:?}");
    assert_eq!(report.parked[0].0, id);
    let status = cart_saga(&cart(&["book", "lamp"], false))
        .unwrap()
        .on(&worker)
        .status(id)
        .await
        .unwrap();
    let SagaStatus::Parked { reason } = status else {
        panic!("{status:?}")
    };
    assert_eq!(reason, report.parked[0].1);
    reason
}

#[tokio::test]
async fn a_built_saga_whose_definition_no_longer_matches_is_parked_with_the_difference() {
    // This program's definition reserves one item fewer than the saga was started with.
    let reason = parked_by(|cart: &Cart| {
        let fewer = Cart {
            items: cart.items[1..].to_vec(),
            declined: false,
        };
        cart_saga(&fewer)
    })
    .await;
    assert!(
        reason.contains(r#"it was started with steps ["reserve[0]", "reserve[1]", "checkout"]"#)
            && reason.contains(r#"has steps ["reserve[0]", "checkout"]"#),
        "{reason}"
    );
}

#[tokio::test]
async fn a_built_saga_whose_definition_cannot_be_built_again_is_parked_with_the_reason() {
    let reason = parked_by(|_: &Cart| SagaDefinition::builder("CartSaga").build()).await;
    assert_eq!(
        reason,
        "its definition cannot be built again from its context: saga `CartSaga` has no steps: \
         add at least one with `.step::<...>()`"
    );
    // A panic in the user's function parks the saga; the worker goes on.
    let reason = parked_by(|cart: &Cart| {
        let _ = &cart.items[7];
        cart_saga(cart)
    })
    .await;
    assert!(
        reason.starts_with(
            "building its definition again from its context panicked: index out of bounds"
        ),
        "{reason}"
    );
    // A definition under another name is not this saga's.
    let reason = parked_by(|_: &Cart| {
        SagaDefinition::builder("CartSaga.v2")
            .step::<checkout>()
            .build()
    })
    .await;
    assert_eq!(
        reason,
        "the definition registered as `CartSaga` built one named `CartSaga.v2`"
    );
}
