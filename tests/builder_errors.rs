//! What `SagaBuilder::build` refuses, one test per error, each naming the saga and the step at
//! fault as `saga!` does at compile time; and what it keeps as `saga!` does.

use std::time::Duration;

use saga_runtime::{saga, saga_step, BuildError, Output, SagaDefinition, StepCx, StepError};
use saga_tests::cart::{checkout, release, reserve, Cart, Notes as Ledger};

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
