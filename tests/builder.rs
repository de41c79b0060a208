//! Sagas assembled at run time: the builder makes the definition `saga!` makes (the same saga
//! built both ways records the same history, completing or compensating), numbered instances of
//! a step run at once with keys and outputs of their own, `build()` refuses what `saga!` refuses
//! at compile time, and a worker resumes a built saga by building its definition again.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use saga_runtime::{
    saga, saga_step, Backoff, BuildError, Engine, Jitter, Output, SagaDefinition, SagaEvent,
    SagaId, SagaOutcome, SagaStatus, StepCx, StepError,
};
use serde::{Deserialize, Serialize};

/// An order: which step fails, and what the steps wrote.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Order {
    /// `label` fails this many times (transiently) first.
    label_busy: u32,
    /// `ship` fails for good.
    no_courier: bool,
    shipped: Option<String>,
}

/// What ran, in order, by idempotency key.
#[derive(Default)]
struct Ledger(Mutex<Vec<String>>);

impl Ledger {
    fn note(&self, what: String) {
        self.0.lock().unwrap().push(what);
    }

    fn entries(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Payment {
    amount: u32,
}

#[saga_step(compensate = refund, retries = 1, backoff = "10ms")]
async fn charge(_order: &mut Order, cx: &StepCx<Ledger>) -> Result<Payment, StepError> {
    cx.deps().note(format!("charge {}", cx.attempt()));
    Ok(Payment { amount: 42 })
}

async fn refund(_order: &mut Order, cx: &StepCx<Ledger>, paid: Payment) -> Result<(), StepError> {
    cx.deps().note(format!("refund {}", paid.amount));
    Ok(())
}

#[saga_step(compensate = unpack)]
async fn pack(_order: &Order, cx: &StepCx<Ledger>) -> Result<u32, StepError> {
    tokio::time::sleep(Duration::from_millis(30)).await;
    cx.deps().note("pack".into());
    Ok(3)
}

async fn unpack(_order: &Order, cx: &StepCx<Ledger>, boxes: u32) -> Result<(), StepError> {
    cx.deps().note(format!("unpack {boxes}"));
    Ok(())
}

#[saga_step(compensate = void_label, retries = 2, backoff = "10ms")]
async fn label(order: &Order, cx: &StepCx<Ledger>) -> Result<String, StepError> {
    if cx.attempt() <= order.label_busy {
        cx.deps().note(format!("label busy {}", cx.attempt()));
        return Err(StepError::transient("printer busy"));
    }
    cx.deps().note("label".into());
    Ok("LBL-1".into())
}

async fn void_label(_order: &Order, cx: &StepCx<Ledger>, label: String) -> Result<(), StepError> {
    cx.deps().note(format!("void {label}"));
    Ok(())
}

#[saga_step]
async fn ship(
    order: &mut Order,
    cx: &StepCx<Ledger>,
    paid: Output<charge>,
    label: Output<label>,
) -> Result<(), StepError> {
    if order.no_courier {
        cx.deps().note("ship refused".into());
        return Err(StepError::permanent("no courier"));
    }
    order.shipped = Some(format!("{} paid {}", *label, paid.amount));
    cx.deps().note("ship".into());
    Ok(())
}

saga! {
    Shipping(Order, Ledger) { charge, parallel(pack, label), ship }
}

/// `Shipping`, assembled at run time.
fn built() -> SagaDefinition<Order, Ledger> {
    SagaDefinition::builder("Shipping")
        .step::<charge>()
        .parallel(|group| {
            group.step::<pack>().step::<label>();
        })
        .step::<ship>()
        .build()
        .expect("the definition builds")
}

/// A history with what differs between two runs taken out: the saga's id, the times, the
/// durations.
fn comparable(history: &[SagaEvent]) -> Vec<serde_json::Value> {
    history
        .iter()
        .map(|event| {
            let mut value = serde_json::to_value(event).unwrap();
            let object = value.as_object_mut().unwrap();
            object.remove("saga_id");
            object.remove("at");
            if let Some(kind) = object.get_mut("kind").and_then(|k| k.as_object_mut()) {
                kind.remove("duration");
            }
            value
        })
        .collect()
}

/// An in-memory engine whose retry delays are exact (no jitter), so that two runs' histories
/// can be compared.
fn exact_engine() -> Engine {
    Engine::builder()
        .backoff(Backoff {
            jitter: Jitter::None,
            ..Backoff::default()
        })
        .build()
}

/// Runs `order` through the macro's saga and the built one, each on a fresh engine; returns
/// both histories, ledgers and final contexts.
async fn both_ways(order: Order) -> [(Vec<serde_json::Value>, Vec<String>, String); 2] {
    let by_macro = {
        let engine = exact_engine();
        let ledger = Arc::new(Ledger::default());
        let outcome = Shipping::on(&engine)
            .run_with(order.clone(), ledger.clone())
            .await
            .unwrap();
        let history = engine.history(outcome.id()).await.unwrap();
        (comparable(&history), ledger.entries(), summary(&outcome))
    };
    let by_builder = {
        let engine = exact_engine();
        let ledger = Arc::new(Ledger::default());
        let outcome = built()
            .on(&engine)
            .run_with(order, ledger.clone())
            .await
            .unwrap();
        let history = engine.history(outcome.id()).await.unwrap();
        (comparable(&history), ledger.entries(), summary(&outcome))
    };
    [by_macro, by_builder]
}

/// What an outcome says, its steps by name, so that both kinds of outcome compare.
fn summary<St: std::fmt::Display + Clone>(outcome: &SagaOutcome<Order, St>) -> String {
    format!(
        "completed {}, cause {:?}, shipped {:?}, label {:?}",
        outcome.is_completed(),
        outcome.cause().map(|c| c.clone().map(|s| s.to_string())),
        outcome.ctx().shipped,
        outcome.outputs().json("label"),
    )
}

#[tokio::test(start_paused = true)]
async fn the_same_saga_built_at_run_time_records_the_same_history_as_the_macros() {
    for order in [
        Order::default(),
        Order {
            label_busy: 1,
            ..Order::default()
        },
        Order {
            no_courier: true,
            ..Order::default()
        },
    ] {
        let [(macro_history, macro_ledger, macro_outcome), (built_history, built_ledger, built_outcome)] =
            both_ways(order.clone()).await;
        assert_eq!(macro_history, built_history, "{order:?}");
        assert_eq!(macro_ledger, built_ledger, "{order:?}");
        assert_eq!(macro_outcome, built_outcome, "{order:?}");
        // Each case took the path it is for.
        let kinds: Vec<&str> = built_history
            .iter()
            .map(|e| e["kind"]["event"].as_str().unwrap())
            .collect();
        match (order.no_courier, order.label_busy) {
            (true, _) => {
                assert!(
                    built_outcome.contains(r#"StepFailed { step: "ship""#),
                    "{built_outcome} {kinds:?}"
                );
                let undone = &built_ledger[built_ledger.len() - 3..];
                assert!(
                    undone[..2].contains(&"unpack 3".to_string()),
                    "{built_ledger:?}"
                );
                assert!(
                    undone[..2].contains(&"void LBL-1".to_string()),
                    "{built_ledger:?}"
                );
                assert_eq!(undone[2], "refund 42");
            }
            (false, 1) => {
                assert!(built_ledger.contains(&"label busy 1".to_string()));
                assert!(
                    built_outcome.contains(r#"shipped Some("LBL-1 paid 42")"#),
                    "{built_outcome}"
                );
            }
            _ => assert_eq!(
                kinds,
                [
                    "saga_started",
                    "step_started",
                    "step_completed",
                    "step_started",
                    "step_started",
                    "step_completed",
                    "step_completed",
                    "step_started",
                    "step_completed",
                    "saga_completed"
                ]
            ),
        }
    }
    // The description is the same too.
    assert_eq!(Shipping::description(), built().description());
    assert_eq!(Shipping::description().mermaid(), built().mermaid());
}

/// One reservation per item of a cart, all at once; `checkout` fails when the cart says so.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Cart {
    items: Vec<String>,
    declined: bool,
}

#[saga_step(compensate = release)]
async fn reserve(cart: &Cart, cx: &StepCx<Ledger>) -> Result<String, StepError> {
    let item = cx
        .instance()
        .and_then(|i| cart.items.get(i))
        .ok_or_else(|| StepError::permanent("no item for this instance"))?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    cx.deps()
        .note(format!("reserve {item} as {}", cx.idempotency_key()));
    Ok(format!("hold-{item}"))
}

async fn release(_cart: &Cart, cx: &StepCx<Ledger>, hold: String) -> Result<(), StepError> {
    tokio::time::sleep(Duration::from_secs(1)).await;
    cx.deps()
        .note(format!("release {hold} as {}", cx.idempotency_key()));
    Ok(())
}

#[saga_step]
async fn checkout(cart: &mut Cart, cx: &StepCx<Ledger>) -> Result<(), StepError> {
    if cart.declined {
        return Err(StepError::permanent("card declined"));
    }
    cx.deps().note("checkout".into());
    Ok(())
}

fn cart_saga(cart: &Cart) -> Result<SagaDefinition<Cart, Ledger>, BuildError> {
    SagaDefinition::builder("CartSaga")
        .parallel(|group| {
            for i in 0..cart.items.len() {
                group.instance::<reserve>(i);
            }
        })
        .step::<checkout>()
        .build()
}

fn cart(items: &[&str], declined: bool) -> Cart {
    Cart {
        items: items.iter().map(|s| s.to_string()).collect(),
        declined,
    }
}

#[tokio::test(start_paused = true)]
async fn instances_of_a_step_run_at_once_with_keys_and_outputs_of_their_own() {
    let engine = Engine::in_memory();
    let ledger = Arc::new(Ledger::default());
    let cart = cart(&["book", "lamp", "mug"], false);
    let saga = cart_saga(&cart).unwrap();
    assert_eq!(
        saga.description().step_names(),
        ["reserve[0]", "reserve[1]", "reserve[2]", "checkout"]
    );
    let started = tokio::time::Instant::now();
    let outcome = saga
        .on(&engine)
        .run_with(cart, ledger.clone())
        .await
        .unwrap();
    assert!(outcome.is_completed());
    // Three 1 s reservations at once.
    assert_eq!(started.elapsed(), Duration::from_secs(1));
    let id = outcome.id();
    let mut reserved: Vec<String> = ledger.entries()[..3].to_vec();
    reserved.sort();
    assert_eq!(
        reserved,
        [
            format!("reserve book as {id}:reserve[0]"),
            format!("reserve lamp as {id}:reserve[1]"),
            format!("reserve mug as {id}:reserve[2]"),
        ]
    );
    assert_eq!(
        outcome.outputs().json("reserve[1]"),
        Some(&"hold-lamp".into())
    );
    assert_eq!(
        outcome.output::<reserve>().unwrap(),
        None,
        "an instance is named by its number"
    );
}

#[tokio::test(start_paused = true)]
async fn a_failure_after_the_instances_releases_each_with_its_own_output_at_once() {
    let engine = Engine::in_memory();
    let ledger = Arc::new(Ledger::default());
    let declined = cart(&["book", "lamp"], true);
    let started = tokio::time::Instant::now();
    let outcome = cart_saga(&declined)
        .unwrap()
        .on(&engine)
        .run_with(declined, ledger.clone())
        .await
        .unwrap();
    let SagaOutcome::Compensated { cause, id, .. } = &outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(cause.to_string(), "step `checkout` failed: card declined");
    // 1 s of reservations, then both releases at once.
    assert_eq!(started.elapsed(), Duration::from_secs(2));
    let mut released: Vec<String> = ledger.entries()[2..].to_vec();
    released.sort();
    assert_eq!(
        released,
        [
            format!("release hold-book as {id}:reserve[0]:compensate"),
            format!("release hold-lamp as {id}:reserve[1]:compensate"),
        ]
    );
    let status = cart_saga(&cart(&["book", "lamp"], true))
        .unwrap()
        .on(&engine)
        .status(*id)
        .await
        .unwrap();
    assert_eq!(status, SagaStatus::Compensated);
}

#[saga_step(compensate = release)]
async fn reserve_twice(_cart: &Cart, _cx: &StepCx<Ledger>) -> Result<String, StepError> {
    Ok(String::new())
}

#[saga_step]
async fn note_only(_cart: &Cart) -> Result<(), StepError> {
    Ok(())
}

#[saga_step(compensate = unread)]
async fn reads_a_hold(_cart: &Cart, _hold: Output<reserve>) -> Result<(), StepError> {
    Ok(())
}

async fn unread(_cart: &Cart) -> Result<(), StepError> {
    Ok(())
}

#[saga_step(nothing_to_undo)]
async fn wants_a_hold(_cart: &mut Cart, _hold: Output<reserve>) -> Result<(), StepError> {
    Ok(())
}

type Builder = saga_runtime::SagaBuilder<Cart, Ledger>;

fn builder() -> Builder {
    SagaDefinition::builder("CartSaga")
}

/// What `build()` refuses of `builder`, with its message.
fn refused(builder: Builder) -> (BuildError, String) {
    let error = builder.build().unwrap_err();
    let message = error.to_string();
    (error, message)
}

#[test]
fn build_refuses_a_definition_without_a_name() {
    let (error, message) = refused(SagaDefinition::builder("").step::<checkout>());
    assert_eq!(error, BuildError::NoName);
    assert!(message.contains("needs a name"), "{message}");
}

#[test]
fn build_refuses_a_definition_without_steps() {
    let (error, message) = refused(builder());
    assert_eq!(
        error,
        BuildError::NoSteps {
            saga: "CartSaga".into()
        }
    );
    assert_eq!(
        message,
        "saga `CartSaga` has no steps: add at least one with `.step::<...>()`"
    );
}

#[test]
fn build_refuses_an_empty_group() {
    let (error, message) = refused(
        builder()
            .step::<reserve_twice>()
            .parallel(|_| {})
            .step::<checkout>(),
    );
    assert_eq!(
        error,
        BuildError::EmptyGroup {
            saga: "CartSaga".into(),
            after: 1
        }
    );
    assert!(
        message.contains("empty parallel group after 1 step"),
        "{message}"
    );
}

#[test]
fn build_refuses_a_step_or_an_instance_listed_twice() {
    let (error, message) = refused(
        builder()
            .step::<reserve_twice>()
            .parallel(|g| {
                g.step::<reserve_twice>();
            })
            .step::<checkout>(),
    );
    assert_eq!(
        error,
        BuildError::DuplicateStep {
            saga: "CartSaga".into(),
            step: "reserve_twice".into()
        }
    );
    assert!(
        message.contains("lists step `reserve_twice` twice"),
        "{message}"
    );
    let (error, _) = refused(
        builder()
            .instance::<reserve>(1)
            .instance::<reserve>(1)
            .step::<checkout>(),
    );
    assert_eq!(
        error,
        BuildError::DuplicateStep {
            saga: "CartSaga".into(),
            step: "reserve[1]".into()
        }
    );
    // Different instances of one step are different steps.
    assert!(builder()
        .instance::<reserve>(0)
        .instance::<reserve>(1)
        .step::<checkout>()
        .build()
        .is_ok());
}

#[test]
fn build_refuses_a_step_without_a_rollback_rule_unless_it_is_last() {
    let unruled = BuildError::NoRollbackRule {
        saga: "CartSaga".into(),
        step: "note_only".into(),
    };
    let (error, message) = refused(builder().step::<note_only>().step::<checkout>());
    assert_eq!(error, unruled);
    assert!(
        message.contains("step `note_only` of saga `CartSaga` says nothing about compensation")
            && message.contains("add `compensate = <fn>`, `pivot` or `nothing_to_undo`"),
        "{message}"
    );
    // A member of a final group: its siblings' work may need undoing when it fails.
    let (error, _) = refused(builder().parallel(|g| {
        g.step::<reserve_twice>().step::<note_only>();
    }));
    assert_eq!(error, unruled);
    // Last, alone, it needs none.
    assert!(builder()
        .step::<reserve_twice>()
        .step::<note_only>()
        .build()
        .is_ok());
}

#[test]
fn build_refuses_a_step_taking_an_output_no_earlier_step_produces() {
    let not_before = BuildError::InputNotBefore {
        saga: "CartSaga".into(),
        step: "wants_a_hold".into(),
        input: "reserve".into(),
    };
    // Absent, later, of a sibling, of instances.
    let (error, message) = refused(builder().step::<wants_a_hold>());
    assert_eq!(error, not_before);
    assert!(
        message.contains("takes the output of `reserve`, which does not run before it"),
        "{message}"
    );
    let later = builder().step::<wants_a_hold>().step::<reserve>();
    assert_eq!(refused(later).0, not_before);
    let sibling = builder()
        .parallel(|g| {
            g.step::<reserve>().step::<reads_a_hold>();
        })
        .step::<checkout>();
    assert_eq!(
        refused(sibling).0,
        BuildError::InputNotBefore {
            saga: "CartSaga".into(),
            step: "reads_a_hold".into(),
            input: "reserve".into(),
        }
    );
    let instances = builder().instance::<reserve>(0).step::<wants_a_hold>();
    assert_eq!(refused(instances).0, not_before);
    // From an earlier step, or an earlier group, it builds.
    assert!(builder()
        .step::<reserve>()
        .step::<wants_a_hold>()
        .build()
        .is_ok());
    assert!(builder()
        .parallel(|g| {
            g.step::<reserve>();
        })
        .step::<wants_a_hold>()
        .build()
        .is_ok());
}

#[tokio::test]
async fn a_worker_resumes_a_built_saga_by_building_its_definition_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sagas.db");
    let ledger = Arc::new(Ledger::default());
    let id = SagaId::new();
    {
        // A client records the saga; no worker runs it yet.
        let client = Engine::builder()
            .sqlite(&path)
            .unwrap()
            .claims(false)
            .build();
        let saga = cart_saga(&cart(&["book", "lamp"], false)).unwrap();
        let enqueued = saga
            .on(&client)
            .request(cart(&["book", "lamp"], false))
            .id(id)
            .enqueue()
            .await
            .unwrap();
        assert_eq!(enqueued, id);
    }
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
    let id = SagaId::new();
    {
        let client = Engine::builder()
            .sqlite(&path)
            .unwrap()
            .claims(false)
            .build();
        cart_saga(&cart(&["book", "lamp"], false))
            .unwrap()
            .on(&client)
            .request(cart(&["book", "lamp"], false))
            .id(id)
            .enqueue()
            .await
            .unwrap();
    }
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

#[saga_step(compensate = release, fallback = reserve_elsewhere)]
async fn reserve_here(_cart: &Cart, cx: &StepCx<Ledger>) -> Result<String, StepError> {
    cx.deps().note(format!("{} out of stock", cx.step()));
    Err(StepError::permanent("out of stock"))
}

#[saga_step(compensate = release)]
async fn reserve_elsewhere(cart: &Cart, cx: &StepCx<Ledger>) -> Result<String, StepError> {
    let item = &cart.items[cx.instance().expect("an instance")];
    cx.deps().note(format!(
        "{} reserves {item} as {}",
        cx.step(),
        cx.idempotency_key()
    ));
    Ok(format!("elsewhere-{item}"))
}

#[tokio::test(start_paused = true)]
async fn an_instances_fallback_is_the_same_instance_of_the_fallback() {
    use futures_util::StreamExt;

    let engine = Engine::in_memory();
    let ledger = Arc::new(Ledger::default());
    let saga = SagaDefinition::<Cart, Ledger>::builder("Elsewhere")
        .parallel(|group| {
            group
                .instance::<reserve_here>(0)
                .instance::<reserve_here>(1);
        })
        .step::<checkout>()
        .build()
        .unwrap();
    let sagas = saga.on(&engine);
    let id = sagas
        .start_with(cart(&["book", "lamp"], false), ledger.clone())
        .await
        .unwrap();
    // The stream names each completion by the instance the fallback stood in for.
    let results: Vec<_> = sagas.step_results(id).collect().await;
    let mut completed: Vec<(String, String)> = results
        .into_iter()
        .map(|r| r.unwrap())
        .map(|r| {
            let output = r.json().map(|j| j.to_string()).unwrap_or_default();
            (r.step.name().to_string(), output)
        })
        .collect();
    completed.sort();
    assert_eq!(
        completed,
        [
            ("checkout".to_string(), String::new()),
            (
                "reserve_here[0]".to_string(),
                r#""elsewhere-book""#.to_string()
            ),
            (
                "reserve_here[1]".to_string(),
                r#""elsewhere-lamp""#.to_string()
            ),
        ]
    );
    let mut entries = ledger.entries();
    entries.sort();
    assert_eq!(
        entries,
        [
            "checkout".to_string(),
            format!("reserve_elsewhere[0] reserves book as {id}:reserve_elsewhere[0]"),
            format!("reserve_elsewhere[1] reserves lamp as {id}:reserve_elsewhere[1]"),
            "reserve_here[0] out of stock".to_string(),
            "reserve_here[1] out of stock".to_string(),
        ]
    );
    assert!(sagas.wait(id).await.unwrap().is_completed());
}

#[test]
fn build_refuses_a_zero_deadline_and_keeps_a_group_of_one_as_saga_does() {
    let (error, message) = refused(builder().step::<checkout>().deadline(Duration::ZERO));
    assert_eq!(
        error,
        BuildError::ZeroDeadline {
            saga: "CartSaga".into()
        }
    );
    assert!(message.contains("zero deadline"), "{message}");
    saga! { Alone(Cart, Ledger) { parallel(reserve), checkout } }
    let built = builder()
        .parallel(|g| {
            g.step::<reserve>();
        })
        .step::<checkout>()
        .build()
        .unwrap();
    assert_eq!(Alone::description().groups, built.description().groups);
    assert_eq!(
        built.description().groups,
        vec![std::ops::Range { start: 0, end: 1 }]
    );
}
