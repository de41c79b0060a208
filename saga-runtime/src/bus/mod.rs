//! The message bus that sagas spanning services travel on: commands to participant services and
//! their replies, and the events of choreographed sagas. One contract, two transports:
//! [`MemoryBus`] (in process: tests, a single binary) and, with the `nats` feature, `NatsBus`
//! (NATS JetStream: a stream and durable consumers the library creates).
//!
//! The contract is JetStream's, which is what a saga across services needs from a bus:
//!
//! - **Durable publish with de-duplication.** [`Bus::publish`] returns once the message is
//!   stored; a message whose id was published before (within the bus's duplicate window) is not
//!   stored again and is reported as [`Published::Duplicate`]. A saga publishes a command again
//!   after a crash with the same id, so a participant sees it once.
//! - **Durable consumers with explicit acknowledgement.** [`Bus::consume`] attaches to the
//!   consumer of that name (creating it, from the first stored message, the first time): each
//!   stored message whose subject matches the consumer's filter is delivered to one of the
//!   consumer's subscribers at a time until it is acknowledged ([`Delivery::ack`]). A delivery
//!   neither acknowledged nor refused within the ack wait, or refused ([`Delivery::nak`]), is
//!   delivered again, with its count of deliveries. Consumers of other names each get every
//!   message; subscribers of one consumer share its messages.
//! - **Subjects** are dot-separated tokens (`saga.command.payments.charge`); a filter may end in
//!   `>` (one or more tokens) or use `*` (exactly one token) in place of a token.
//!
//! Delivery is at least once: a handler that crashes before acknowledging sees the message
//! again, so handlers act through idempotency keys, as saga steps do.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), saga_runtime::bus::BusError> {
//! use futures_util::StreamExt;
//! use saga_runtime::bus::{Bus, MemoryBus, Outgoing, Published};
//!
//! let bus = MemoryBus::new();
//! let mut payments = bus.consume("payments", "orders.*").await?;
//! let first = Outgoing::new("orders.created", "order-1", b"{\"total\":42}".to_vec());
//! assert!(matches!(bus.publish(first.clone()).await?, Published::Stored { .. }));
//! // The same id again: a duplicate, not delivered twice.
//! assert_eq!(bus.publish(first).await?, Published::Duplicate);
//!
//! let delivery = payments.next().await.unwrap()?;
//! assert_eq!((delivery.subject(), delivery.id(), delivery.delivered()), ("orders.created", "order-1", 1));
//! delivery.ack().await?;
//! # Ok(()) }
//! ```

pub mod conformance;
mod memory;
#[cfg(feature = "nats")]
mod nats;
pub(crate) mod subject;

use std::fmt;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;

pub use memory::MemoryBus;
#[cfg(feature = "nats")]
pub use nats::{NatsBus, NatsBusOptions};

/// A message to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// Where it goes: dot-separated tokens, no wildcard.
    pub subject: String,
    /// Its de-duplication id: a message with an id published before, within the bus's
    /// duplicate window, is not stored again.
    pub id: String,
    /// What it says.
    pub payload: Vec<u8>,
}

impl Outgoing {
    /// A message to `subject`, de-duplicated by `id`.
    pub fn new(subject: impl Into<String>, id: impl Into<String>, payload: Vec<u8>) -> Self {
        Outgoing {
            subject: subject.into(),
            id: id.into(),
            payload,
        }
    }
}

/// What [`Bus::publish`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    /// Stored, at this position of the bus's stream.
    Stored {
        /// Its position in the stream, from 1.
        sequence: u64,
    },
    /// A message with its id was stored before: nothing stored.
    Duplicate,
}

/// The subscriptions of one consumer: its deliveries as they come. It never ends by itself; an
/// error item says the transport failed (the subscription may go on after it).
pub type Deliveries = BoxStream<'static, Result<Delivery, BusError>>;

/// A message bus with durable, de-duplicated publishing and durable consumers (see the module
/// docs for the contract).
pub trait Bus: Send + Sync + 'static {
    /// Stores `message`, unless its id was published before.
    fn publish(&self, message: Outgoing) -> BoxFuture<'_, Result<Published, BusError>>;

    /// Subscribes to the durable consumer `consumer` (letters, digits, `-` and `_`), creating it
    /// with filter `filter` the first time. A consumer keeps its filter: attaching with another
    /// is an error.
    fn consume<'a>(
        &'a self,
        consumer: &'a str,
        filter: &'a str,
    ) -> BoxFuture<'a, Result<Deliveries, BusError>>;

    /// Like [`Bus::consume`], for a consumer only this process uses (the replies to one
    /// process's own commands): the bus may forget the consumer, and where it stood, once
    /// nobody has been attached to it for `idle`, so that a process that is gone leaves nothing
    /// behind. Attaching again after that starts from the first message the bus still holds. By
    /// default the consumer is kept, as [`Bus::consume`] keeps it.
    fn consume_own<'a>(
        &'a self,
        consumer: &'a str,
        filter: &'a str,
        idle: Duration,
    ) -> BoxFuture<'a, Result<Deliveries, BusError>> {
        let _ = idle;
        self.consume(consumer, filter)
    }
}

/// One delivery of a stored message to a consumer: acknowledge it once handled, or refuse it to
/// have it delivered again. Dropping it does neither: it is delivered again after the ack wait.
pub struct Delivery {
    subject: String,
    id: String,
    payload: Vec<u8>,
    delivered: u32,
    answer: Box<dyn Answer>,
}

impl Delivery {
    pub(crate) fn new(
        subject: String,
        id: String,
        payload: Vec<u8>,
        delivered: u32,
        answer: Box<dyn Answer>,
    ) -> Self {
        Delivery {
            subject,
            id,
            payload,
            delivered,
            answer,
        }
    }

    /// The subject it was published to.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// Its de-duplication id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// What it says.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// How many times it was delivered to this consumer, this time included (1 the first time).
    pub fn delivered(&self) -> u32 {
        self.delivered
    }

    /// Handled: not delivered to this consumer again (delivery stays at least once: an
    /// acknowledgement lost on its way, NATS sending it without waiting, leaves the message to
    /// come again after the ack wait).
    pub async fn ack(self) -> Result<(), BusError> {
        self.answer.ack().await
    }

    /// Not handled: delivered again after `delay`.
    pub async fn nak(self, delay: Duration) -> Result<(), BusError> {
        self.answer.nak(delay).await
    }
}

impl fmt::Debug for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("subject", &self.subject)
            .field("id", &self.id)
            .field("payload", &String::from_utf8_lossy(&self.payload))
            .field("delivered", &self.delivered)
            .finish_non_exhaustive()
    }
}

/// How a transport hears what became of a delivery.
pub(crate) trait Answer: Send + Sync {
    fn ack(self: Box<Self>) -> BoxFuture<'static, Result<(), BusError>>;
    fn nak(self: Box<Self>, delay: Duration) -> BoxFuture<'static, Result<(), BusError>>;
}

/// Why the bus could not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct BusError {
    kind: BusErrorKind,
    message: String,
}

impl BusError {
    pub(crate) fn new(kind: BusErrorKind, message: impl Into<String>) -> Self {
        BusError {
            kind,
            message: message.into(),
        }
    }

    /// What kind of failure.
    pub fn kind(&self) -> BusErrorKind {
        self.kind
    }

    /// What happened.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// What kind of failure a [`BusError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BusErrorKind {
    /// The transport cannot be reached or failed; worth another try.
    Unavailable,
    /// What was asked is not valid (a subject, filter or consumer name): another try fails too.
    Invalid,
}

impl fmt::Display for BusErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BusErrorKind::Unavailable => "bus unavailable",
            BusErrorKind::Invalid => "invalid bus request",
        })
    }
}

/// Attaches to consumer `name` (`filter`) on `bus`, trying again every second while the bus is
/// unavailable (a NATS server restarting); fails only when the bus refuses the consumer as
/// invalid. What the library's long-running consumers (services, reply routing, trackers) use;
/// with an `idle` time, the consumer is this process's own ([`Bus::consume_own`]).
pub(crate) async fn subscribe(
    bus: &dyn Bus,
    name: &str,
    filter: &str,
    idle: Option<Duration>,
) -> Result<Deliveries, BusError> {
    loop {
        let attached = match idle {
            None => bus.consume(name, filter).await,
            Some(idle) => bus.consume_own(name, filter, idle).await,
        };
        match attached {
            Ok(deliveries) => return Ok(deliveries),
            Err(error) if error.kind() == BusErrorKind::Unavailable => {
                tracing::warn!(consumer = name, %error, "cannot subscribe; trying again");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
            Err(error) => return Err(error),
        }
    }
}
