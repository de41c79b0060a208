//! `OrderSaga::mermaid()`: the definition as a Mermaid flowchart, checked whole for a saga with
//! compensations, a step with nothing to undo, a pivot, a fallback and a last step; and one
//! run's path coloured on it.

use saga_runtime::{saga, saga_step, Saga, StepError};
use saga_tests::Trail;

#[saga_step(compensate = release)]
async fn reserve(_ctx: &mut Trail) -> Result<(), StepError> {
    Ok(())
}

async fn release(_ctx: &mut Trail) -> Result<(), StepError> {
    Ok(())
}

#[saga_step(nothing_to_undo)]
async fn check(_ctx: &mut Trail) -> Result<(), StepError> {
    Ok(())
}

#[saga_step(compensate = refund)]
async fn charge(_ctx: &mut Trail) -> Result<(), StepError> {
    Ok(())
}

async fn refund(_ctx: &mut Trail) -> Result<(), StepError> {
    Ok(())
}

#[saga_step(pivot)]
async fn ship(_ctx: &mut Trail) -> Result<(), StepError> {
    Ok(())
}

#[saga_step(nothing_to_undo)]
async fn email_by_post(_ctx: &mut Trail) -> Result<(), StepError> {
    Ok(())
}

#[saga_step(fallback = email_by_post, nothing_to_undo)]
async fn email(_ctx: &mut Trail) -> Result<(), StepError> {
    Ok(())
}

#[saga_step]
async fn close(_ctx: &mut Trail) -> Result<(), StepError> {
    Ok(())
}

saga! { Shipping(Trail, ()) { reserve, check, charge, ship, email, close } }

#[test]
fn the_chart_shows_every_path() {
    assert_eq!(
        Shipping::mermaid(),
        r#"flowchart LR
    start((start)) --> s0
    s0["reserve"] --> s1
    s0 -. fails .-> compensated((compensated))
    s1["check"] --> s2
    s1 -. fails .-> c0
    s2["charge"] --> s3
    s2 -. fails .-> c0
    s3{{"ship (pivot)"}} --> s4
    s3 -. fails .-> c2
    s4["email"] --> s5
    s4 -. fails .-> f4["email_by_post"]
    f4 --> s5
    s5["close"] --> completed((completed))
    s5 -. fails .-> failed((failed))
    c0[/"release"/] --> compensated((compensated))
    c2[/"refund"/] --> c0
"#
    );
}

/// One saga's path, coloured from its history: a fallback standing in for `email`, then `close`
/// failing past the pivot (the test kit's faults make both happen).
#[tokio::test]
async fn a_run_past_its_pivot_through_a_fallback_is_coloured_on_the_chart() {
    use saga_runtime::testing::{Fault, TestKit};
    use saga_runtime::{Engine, SagaOutcome, SagaShape};

    let kit = TestKit::new();
    kit.fail("email", 0, Fault::permanent("mail server down"));
    kit.fail("close", 0, Fault::permanent("ledger closed"));
    let engine = Engine::builder().test_kit(&kit).build();
    let outcome = Shipping::on(&engine).run(Trail::default()).await.unwrap();
    assert!(matches!(outcome, SagaOutcome::Failed { .. }), "{outcome:?}");
    let history = engine.history(outcome.id()).await.unwrap();
    let chart = SagaShape::from(&Shipping::description()).mermaid_run(&history);
    assert!(chart.starts_with(&Shipping::mermaid()), "{chart}");
    assert!(
        chart.ends_with("    class s0,s1,s2,s3,f4 done\n    class s4,s5,failed failed\n"),
        "{chart}"
    );
}
