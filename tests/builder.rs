//! Sagas assembled at run time: the builder makes the definition `saga!` makes (the same saga
//! built both ways records the same history, completing, retrying or compensating), and
//! numbered instances of a step run at once with keys, outputs and fallbacks of their own.

use std::sync::Arc;
use std::time::Duration;

use saga_runtime::{
    saga, saga_step, Backoff, Engine, Jitter, Output, SagaDefinition, SagaEvent, SagaOutcome,
    SagaStatus, StepCx, StepError,
};
use saga_tests::cart::{cart, cart_saga, checkout, release, reserve, Cart, Notes as Ledger};
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
