//! Tracing: every transition is a `tracing` event inside a `saga` span carrying the saga's id
//! and type.
//!
//! Its own test binary: tracing caches per-callsite interest process-wide, so a subscriber set
//! for one test races with other tests running without one.

use std::sync::{Arc, Mutex};

use saga_runtime::{saga, saga_step};
use saga_tests::{engine, scripted, Script, Trail};

scripted!(
    #[saga_step(nothing_to_undo)]
    a
);
scripted!(
    #[saga_step(nothing_to_undo)]
    b
);
scripted!(
    #[saga_step]
    c
);

saga! { Evented(Trail, Script) { a, b, c } }

/// A span's or event's fields, as `(name, debug-formatted value)`.
type Fields = Vec<(String, String)>;

/// Records, for every tracing event, the fields of the `saga` span it happened in.
#[derive(Clone, Default)]
struct SpanRecorder {
    spans: Arc<Mutex<std::collections::HashMap<u64, Fields>>>,
    events: Arc<Mutex<Vec<(String, Fields)>>>,
}

struct FieldVisitor<'a>(&'a mut Vec<(String, String)>);

impl tracing::field::Visit for FieldVisitor<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push((field.name().to_owned(), format!("{value:?}")));
    }
}

impl<S> tracing_subscriber::Layer<S> for SpanRecorder
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if attrs.metadata().name() == "saga" {
            let mut fields = Vec::new();
            attrs.record(&mut FieldVisitor(&mut fields));
            self.spans.lock().unwrap().insert(id.into_u64(), fields);
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, cx: tracing_subscriber::layer::Context<'_, S>) {
        let mut fields = Vec::new();
        event.record(&mut FieldVisitor(&mut fields));
        let message = fields
            .iter()
            .find(|(k, _)| k == "message")
            .map(|(_, v)| v.clone());
        let span = cx
            .event_scope(event)
            .and_then(|mut scope| scope.find(|s| s.name() == "saga"))
            .and_then(|s| self.spans.lock().unwrap().get(&s.id().into_u64()).cloned())
            .unwrap_or_default();
        self.events
            .lock()
            .unwrap()
            .push((message.unwrap_or_default(), span));
    }
}

#[test]
fn every_transition_is_traced_inside_a_span_carrying_the_saga_id_and_type() {
    use tracing_subscriber::layer::SubscriberExt;
    let recorder = SpanRecorder::default();
    let subscriber = tracing_subscriber::registry().with(recorder.clone());
    let _guard = tracing::subscriber::set_default(subscriber);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let engine = engine();
    let outcome = runtime
        .block_on(Evented::on(&engine).run_with(Trail::default(), Arc::new(Script::new())))
        .unwrap();

    let events = recorder.events.lock().unwrap().clone();
    let messages: Vec<_> = events.iter().map(|(m, _)| m.as_str()).collect();
    assert_eq!(
        messages,
        [
            "saga started",
            "step started",
            "step completed",
            "step started",
            "step completed",
            "step started",
            "step completed",
            "saga completed"
        ]
    );
    for (message, span) in &events {
        assert!(
            span.contains(&("saga.id".into(), outcome.id().to_string())),
            "{message}: {span:?}"
        );
        assert!(
            span.contains(&("saga.type".into(), "\"Evented\"".into())),
            "{message}: {span:?}"
        );
    }
}
