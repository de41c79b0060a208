//! Participant services over both transports (in memory, and NATS JetStream when
//! `SAGA_NATS_URL` is set): a command published by an orchestrator reaches the service's
//! handler with its key and token and is answered with the typed reply or the step error; a
//! command published again for the same attempt runs once; a service instance that dies before
//! answering leaves the command to another, which runs it under the same key.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use saga_runtime::bus::{Bus, BusErrorKind, Deliveries, MemoryBus, Outgoing};
use saga_runtime::remote::{Command, CommandEnvelope, Participant, ParticipantCx, ReplyEnvelope};
use saga_runtime::{ErrorKind, Phase, SagaId, StepError};
use saga_tests::payments::{buses, Charge, Payment};
use serde::{Deserialize, Serialize};

const ACK_WAIT: Duration = Duration::from_millis(600);

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Refund {
    amount: u64,
}

impl Command for Refund {
    const SERVICE: &'static str = "billing";
    const ACTION: &'static str = "refund";
    type Reply = ();
}

/// What the payments service did: (key, token, delivery) per handled command, in order; and
/// a signal that a handler hangs.
#[derive(Default)]
struct Ledger(Mutex<Vec<(String, u64, u32)>>, tokio::sync::Notify);

impl Ledger {
    fn entries(&self) -> Vec<(String, u64, u32)> {
        self.0.lock().unwrap().clone()
    }
}

async fn charge(command: Charge, cx: ParticipantCx<Ledger>) -> Result<Payment, StepError> {
    match command.behaviour.as_str() {
        "transient" => return Err(StepError::transient("gateway busy")),
        "permanent" => return Err(StepError::permanent("card declined")),
        "panic" => panic!("gateway answered nonsense"),
        // The first delivery never ends (its process dies); later ones go through.
        "hang-first" if cx.delivered() == 1 => {
            cx.deps().1.notify_one();
            std::future::pending::<()>().await
        }
        _ => {}
    }
    cx.deps().0.lock().unwrap().push((
        cx.idempotency_key().to_owned(),
        cx.fencing_token(),
        cx.delivered(),
    ));
    Ok(Payment {
        id: format!("pay-{}", cx.idempotency_key()),
        amount: command.amount,
    })
}

/// Starts the payments service on `bus`, recording into `ledger`.
fn payments(bus: &Arc<dyn Bus>, ledger: &Arc<Ledger>) -> tokio::task::JoinHandle<()> {
    let service =
        Participant::new(bus.clone(), "payments", ledger.clone()).handle::<Charge, _, _>(charge);
    tokio::spawn(async move { service.run().await.expect("the service runs") })
}

/// A command of attempt `attempt` of step `charge` of saga `saga`, under fencing token 7.
fn command(saga: SagaId, attempt: u32, action: &str, command: serde_json::Value) -> Outgoing {
    let envelope: CommandEnvelope = serde_json::from_value(serde_json::json!({
        "saga_id": saga,
        "saga_type": "Order",
        "step": "charge",
        "phase": "action",
        "attempt": attempt,
        "key": format!("{saga}:charge"),
        "token": 7,
        "reply_to": "reply.Order",
        "command": command,
    }))
    .unwrap();
    Outgoing::new(
        format!("command.payments.{action}"),
        envelope.message_id(),
        serde_json::to_vec(&envelope).unwrap(),
    )
}

fn charge_of(amount: u64, behaviour: &str) -> serde_json::Value {
    serde_json::to_value(Charge {
        amount,
        behaviour: behaviour.into(),
    })
    .unwrap()
}

/// The next reply, which must come within 10 s.
async fn reply(replies: &mut Deliveries) -> ReplyEnvelope {
    let delivery = tokio::time::timeout(Duration::from_secs(10), replies.next())
        .await
        .expect("a reply came in time")
        .unwrap()
        .unwrap();
    let reply = serde_json::from_slice(delivery.payload()).unwrap();
    delivery.ack().await.unwrap();
    reply
}

/// No reply within `wait`.
async fn no_reply_within(replies: &mut Deliveries, wait: Duration) {
    if let Ok(Some(delivery)) = tokio::time::timeout(wait, replies.next()).await {
        panic!("no reply was due, got {delivery:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_is_answered_with_its_typed_reply_and_ran_under_its_key() {
    for (name, bus) in buses("the participant tests on NATS", ACK_WAIT).await {
        let ledger = Arc::new(Ledger::default());
        let service = payments(&bus, &ledger);
        let mut replies = bus.consume("orders", "reply.Order").await.unwrap();
        let saga = SagaId::new();
        bus.publish(command(saga, 1, "charge", charge_of(42, "ok")))
            .await
            .unwrap();
        let answer = reply(&mut replies).await;
        assert_eq!(
            (
                answer.saga_id,
                answer.step.as_str(),
                answer.phase,
                answer.attempt,
                answer.token
            ),
            (saga, "charge", Phase::Action, 1, 7),
            "{name}"
        );
        let payment: Payment = serde_json::from_value(answer.result.unwrap()).unwrap();
        assert_eq!(
            payment,
            Payment {
                id: format!("pay-{saga}:charge"),
                amount: 42
            },
            "{name}"
        );
        assert_eq!(
            ledger.entries(),
            [(format!("{saga}:charge"), 7, 1)],
            "{name}"
        );
        service.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_answered_as_step_errors_of_their_kind() {
    for (name, bus) in buses("the participant tests on NATS", ACK_WAIT).await {
        let ledger = Arc::new(Ledger::default());
        let service = payments(&bus, &ledger);
        let mut replies = bus.consume("orders", "reply.Order").await.unwrap();
        let cases = [
            (
                "charge",
                charge_of(1, "transient"),
                ErrorKind::Transient,
                "gateway busy",
            ),
            (
                "charge",
                charge_of(1, "permanent"),
                ErrorKind::Permanent,
                "card declined",
            ),
            (
                "charge",
                charge_of(1, "panic"),
                ErrorKind::Panic,
                "the handler panicked: gateway answered nonsense",
            ),
            (
                "charge",
                serde_json::json!({"amount": "lots"}),
                ErrorKind::Permanent,
                "the command does not decode as",
            ),
            (
                "capture",
                charge_of(1, "ok"),
                ErrorKind::Permanent,
                "service `payments` has no action `capture`",
            ),
        ];
        for (action, body, kind, message) in cases {
            bus.publish(command(SagaId::new(), 1, action, body))
                .await
                .unwrap();
            let error = reply(&mut replies).await.result.unwrap_err();
            assert_eq!(error.kind(), kind, "{name}: {error}");
            assert!(error.message().contains(message), "{name}: {error}");
        }
        assert!(ledger.entries().is_empty(), "{name}");
        service.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_published_again_for_the_same_attempt_runs_once() {
    for (name, bus) in buses("the participant tests on NATS", ACK_WAIT).await {
        let ledger = Arc::new(Ledger::default());
        let service = payments(&bus, &ledger);
        let mut replies = bus.consume("orders", "reply.Order").await.unwrap();
        let saga = SagaId::new();
        // The orchestrator crashed after publishing and published again on recovery.
        for _ in 0..2 {
            bus.publish(command(saga, 1, "charge", charge_of(5, "ok")))
                .await
                .unwrap();
        }
        assert_eq!(reply(&mut replies).await.attempt, 1, "{name}");
        no_reply_within(&mut replies, ACK_WAIT * 2).await;
        // A retry is a new attempt: run again, under the same key.
        bus.publish(command(saga, 2, "charge", charge_of(5, "ok")))
            .await
            .unwrap();
        assert_eq!(reply(&mut replies).await.attempt, 2, "{name}");
        let key = format!("{saga}:charge");
        assert_eq!(
            ledger.entries(),
            [(key.clone(), 7, 1), (key, 7, 1)],
            "{name}"
        );
        service.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_left_by_a_dead_instance_is_run_by_another_under_the_same_key() {
    for (name, bus) in buses("the participant tests on NATS", ACK_WAIT).await {
        let ledger = Arc::new(Ledger::default());
        let first = payments(&bus, &ledger);
        let mut replies = bus.consume("orders", "reply.Order").await.unwrap();
        let saga = SagaId::new();
        bus.publish(command(saga, 1, "charge", charge_of(9, "hang-first")))
            .await
            .unwrap();
        // The first instance took it and hangs; it dies without answering.
        tokio::time::timeout(Duration::from_secs(10), ledger.1.notified())
            .await
            .expect("the first instance took the command");
        first.abort();
        let second = payments(&bus, &ledger);
        let answer = reply(&mut replies).await;
        assert!(answer.result.is_ok(), "{name}: {answer:?}");
        assert_eq!(
            ledger.entries(),
            [(format!("{saga}:charge"), 7, 2)],
            "{name}: run once, on its second delivery"
        );
        second.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_of_a_service_share_its_commands() {
    for (name, bus) in buses("the participant tests on NATS", ACK_WAIT).await {
        let ledger = Arc::new(Ledger::default());
        let instances = [payments(&bus, &ledger), payments(&bus, &ledger)];
        let mut replies = bus.consume("orders", "reply.Order").await.unwrap();
        let sagas: Vec<SagaId> = (0..10).map(|_| SagaId::new()).collect();
        for saga in &sagas {
            bus.publish(command(*saga, 1, "charge", charge_of(1, "ok")))
                .await
                .unwrap();
        }
        let mut answered: Vec<SagaId> = Vec::new();
        for _ in 0..10 {
            answered.push(reply(&mut replies).await.saga_id);
        }
        answered.sort();
        let mut expected = sagas.clone();
        expected.sort();
        assert_eq!(answered, expected, "{name}");
        assert_eq!(ledger.entries().len(), 10, "{name}: each once");
        for instance in instances {
            instance.abort();
        }
    }
}

#[tokio::test]
async fn a_misdeclared_service_says_what_is_wrong_when_it_runs() {
    async fn refund(_: Refund, _: ParticipantCx<Ledger>) -> Result<(), StepError> {
        Ok(())
    }
    let bus: Arc<dyn Bus> = Arc::new(MemoryBus::new());
    let wrong_service = Participant::new(bus.clone(), "payments", Ledger::default())
        .handle::<Refund, _, _>(refund)
        .run()
        .await
        .unwrap_err();
    assert_eq!(wrong_service.kind(), BusErrorKind::Invalid);
    assert!(
        wrong_service
            .message()
            .ends_with("belongs to service `billing`, not `payments`"),
        "{wrong_service}"
    );
    let twice = Participant::new(bus.clone(), "payments", Ledger::default())
        .handle::<Charge, _, _>(charge)
        .handle::<Charge, _, _>(charge)
        .run()
        .await
        .unwrap_err();
    assert_eq!(
        twice.message(),
        "service `payments` has two handlers for action `charge`"
    );
    let bad_name = Participant::<Ledger>::new(bus, "pay.ments", Ledger::default())
        .run()
        .await
        .unwrap_err();
    assert_eq!(bad_name.kind(), BusErrorKind::Invalid);
}
