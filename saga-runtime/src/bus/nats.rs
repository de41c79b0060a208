//! The NATS JetStream bus: one stream holding the subjects of a namespace (`{namespace}.>`),
//! de-duplicated by the `Nats-Msg-Id` header, and one durable pull consumer with explicit
//! acknowledgement per consumer name. The library creates both on first use. Subjects and
//! filters are given without the namespace, which the bus adds and strips, so that several
//! applications (or test runs) share a server without seeing each other's messages.

use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream, AckKind};
use futures_util::future::BoxFuture;
use futures_util::StreamExt;

use super::subject::{check_consumer, check_filter, check_subject};
use super::{Answer, Bus, BusError, BusErrorKind, Deliveries, Delivery, Outgoing, Published};

/// How to reach and set up the JetStream stream of a [`NatsBus`].
///
/// ```no_run
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), saga_runtime::bus::BusError> {
/// use std::time::Duration;
/// use saga_runtime::bus::NatsBusOptions;
///
/// let bus = NatsBusOptions::new("nats://127.0.0.1:4222")
///     .namespace("shop")
///     .ack_wait(Duration::from_secs(30))
///     .connect()
///     .await?;
/// # let _ = bus;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct NatsBusOptions {
    url: String,
    namespace: String,
    ack_wait: Duration,
    duplicate_window: Duration,
    max_age: Duration,
}

impl NatsBusOptions {
    /// The server at `url`, namespace `saga`, ack wait 30 s, duplicate window 2 minutes,
    /// messages kept 7 days.
    pub fn new(url: impl Into<String>) -> Self {
        NatsBusOptions {
            url: url.into(),
            namespace: "saga".into(),
            ack_wait: Duration::from_secs(30),
            duplicate_window: Duration::from_secs(120),
            max_age: Duration::from_secs(7 * 24 * 3600),
        }
    }

    /// The namespace (letters, digits, `-` and `_`): the stream is named after it and holds the
    /// subjects `{namespace}.>`.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// How long a delivery may go unanswered before it is delivered again.
    pub fn ack_wait(mut self, wait: Duration) -> Self {
        self.ack_wait = wait;
        self
    }

    /// How long a message's id is remembered to refuse a duplicate.
    pub fn duplicate_window(mut self, window: Duration) -> Self {
        self.duplicate_window = window;
        self
    }

    /// How long the stream keeps a message.
    pub fn max_age(mut self, age: Duration) -> Self {
        self.max_age = age;
        self
    }

    /// Connects, and creates the namespace's stream unless it exists.
    pub async fn connect(self) -> Result<NatsBus, BusError> {
        check_consumer(&self.namespace).map_err(|_| {
            BusError::new(
                BusErrorKind::Invalid,
                format!(
                    "namespace `{}` must be letters, digits, `-` and `_`",
                    self.namespace
                ),
            )
        })?;
        let client = async_nats::connect(&self.url)
            .await
            .map_err(|e| unavailable(format!("cannot connect to {}", self.url), e))?;
        let context = jetstream::new(client);
        let stream = context
            .get_or_create_stream(stream::Config {
                name: self.namespace.clone(),
                subjects: vec![format!("{}.>", self.namespace)],
                duplicate_window: self.duplicate_window,
                max_age: self.max_age,
                storage: stream::StorageType::File,
                ..Default::default()
            })
            .await
            .map_err(|e| unavailable(format!("cannot create stream `{}`", self.namespace), e))?;
        Ok(NatsBus {
            context,
            stream,
            options: self,
        })
    }
}

/// The NATS JetStream bus (see [`NatsBusOptions`]). Cheap to clone.
#[derive(Clone)]
pub struct NatsBus {
    context: jetstream::Context,
    stream: stream::Stream,
    options: NatsBusOptions,
}

impl std::fmt::Debug for NatsBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsBus")
            .field("url", &self.options.url)
            .field("namespace", &self.options.namespace)
            .finish_non_exhaustive()
    }
}

impl NatsBus {
    /// Deletes the namespace's stream and its consumers, with every message (for tests that
    /// made a namespace of their own).
    pub async fn delete(self) -> Result<(), BusError> {
        self.context
            .delete_stream(&self.options.namespace)
            .await
            .map(drop)
            .map_err(|e| unavailable("cannot delete the stream", e))
    }

    fn full(&self, subject: &str) -> String {
        format!("{}.{subject}", self.options.namespace)
    }
}

fn unavailable(what: impl std::fmt::Display, error: impl std::fmt::Display) -> BusError {
    BusError::new(BusErrorKind::Unavailable, format!("{what}: {error}"))
}

impl Bus for NatsBus {
    fn publish(&self, message: Outgoing) -> BoxFuture<'_, Result<Published, BusError>> {
        Box::pin(async move {
            check_subject(&message.subject)?;
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(async_nats::header::NATS_MESSAGE_ID, message.id.as_str());
            let ack = self
                .context
                .publish_with_headers(self.full(&message.subject), headers, message.payload.into())
                .await
                .map_err(|e| unavailable("cannot publish", e))?
                .await
                .map_err(|e| unavailable("the stream did not store the message", e))?;
            Ok(match ack.duplicate {
                true => Published::Duplicate,
                false => Published::Stored {
                    sequence: ack.sequence,
                },
            })
        })
    }

    fn consume<'a>(
        &'a self,
        name: &'a str,
        filter: &'a str,
    ) -> BoxFuture<'a, Result<Deliveries, BusError>> {
        Box::pin(self.attach(name, filter, None))
    }

    /// A consumer the server deletes once no pull request has come for `idle` (its
    /// `inactive_threshold`); the client's pull requests expire within `idle` (at most 30 s) so
    /// that the server sees a process that is gone as such soon after.
    fn consume_own<'a>(
        &'a self,
        name: &'a str,
        filter: &'a str,
        idle: Duration,
    ) -> BoxFuture<'a, Result<Deliveries, BusError>> {
        Box::pin(self.attach(name, filter, Some(idle)))
    }
}

impl NatsBus {
    /// Attaches to consumer `name`, creating it (durable, or deleted after `idle` without
    /// pulls) with `filter` the first time.
    async fn attach(
        &self,
        name: &str,
        filter: &str,
        idle: Option<Duration>,
    ) -> Result<Deliveries, BusError> {
        check_consumer(name)?;
        check_filter(filter)?;
        let full_filter = self.full(filter);
        let mut consumer: consumer::PullConsumer = self
            .stream
            .get_or_create_consumer(
                name,
                consumer::pull::Config {
                    durable_name: Some(name.to_owned()),
                    filter_subject: full_filter.clone(),
                    ack_policy: consumer::AckPolicy::Explicit,
                    ack_wait: self.options.ack_wait,
                    deliver_policy: consumer::DeliverPolicy::All,
                    inactive_threshold: idle.unwrap_or_default(),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| unavailable(format!("cannot create consumer `{name}`"), e))?;
        let existing = consumer
            .info()
            .await
            .map_err(|e| unavailable(format!("cannot read consumer `{name}`"), e))?
            .config
            .filter_subject
            .clone();
        if existing != full_filter {
            let prefix = format!("{}.", self.options.namespace);
            return Err(BusError::new(
                BusErrorKind::Invalid,
                format!(
                    "consumer `{name}` exists with filter `{}`, not `{filter}`",
                    existing.strip_prefix(&prefix).unwrap_or(&existing)
                ),
            ));
        }
        let mut messages = consumer
            .stream()
            // Few at a time: the ack wait of a message the client holds runs already.
            .max_messages_per_batch(8);
        if let Some(idle) = idle {
            messages = messages.expires(idle.clamp(MIN_PULL_EXPIRY, MAX_PULL_EXPIRY));
        }
        let messages = messages
            .messages()
            .await
            .map_err(|e| unavailable(format!("cannot subscribe to consumer `{name}`"), e))?;
        let prefix = format!("{}.", self.options.namespace);
        let deliveries: Deliveries = Box::pin(messages.map(move |message| {
            let message = message.map_err(|e| unavailable("cannot receive", e))?;
            delivery(&prefix, message)
        }));
        Ok(deliveries)
    }
}

/// The shortest and longest time a pull request of a consumer of one process's own waits.
const MIN_PULL_EXPIRY: Duration = Duration::from_secs(1);
const MAX_PULL_EXPIRY: Duration = Duration::from_secs(30);

/// A JetStream message as a delivery: its subject without the namespace, its id, its count.
fn delivery(prefix: &str, message: jetstream::Message) -> Result<Delivery, BusError> {
    let delivered = message
        .info()
        .map(|info| u32::try_from(info.delivered).unwrap_or(u32::MAX))
        .map_err(|e| unavailable("a message without its delivery info", e))?;
    let subject = message.subject.as_str();
    let subject = subject.strip_prefix(prefix).unwrap_or(subject).to_owned();
    let id = message
        .headers
        .as_ref()
        .and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID))
        .map(|id| id.as_str().to_owned())
        .unwrap_or_default();
    let payload = message.payload.to_vec();
    Ok(Delivery::new(
        subject,
        id,
        payload,
        delivered,
        Box::new(Answered(message)),
    ))
}

/// A delivery's answer, sent to the server.
struct Answered(jetstream::Message);

impl Answer for Answered {
    fn ack(self: Box<Self>) -> BoxFuture<'static, Result<(), BusError>> {
        Box::pin(async move {
            self.0
                .ack()
                .await
                .map_err(|e| unavailable("cannot acknowledge", e))
        })
    }

    fn nak(self: Box<Self>, delay: Duration) -> BoxFuture<'static, Result<(), BusError>> {
        Box::pin(async move {
            self.0
                .ack_with(AckKind::Nak(Some(delay)))
                .await
                .map_err(|e| unavailable("cannot refuse", e))
        })
    }
}
