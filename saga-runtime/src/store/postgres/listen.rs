//! Wake-ups through `LISTEN`/`NOTIFY`: a transaction that makes sagas due for any worker (a saga
//! created for a worker to run, let go, cancelled or reopened while unheld) notifies channel
//! [`CHANNEL`] with its schema; each store listens on a connection of its own and turns the
//! notifications for its schema into hints (see [`crate::store::SagaStore::wakes`]).
//!
//! A notification is sent once per transaction, and the store groups many sagas' creates into
//! one transaction, so that `NOTIFY` (which serialises the commits that notify) costs little under
//! load. A hint lost (the listening connection dropped) costs time, not sagas: after every
//! reconnection the store hints once, and workers still look every renewal interval.

use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::watch;
use tokio_postgres::AsyncMessage;

use super::rows::{pg_error, prepared, Sql};
use crate::store::StoreError;

/// The channel every store notifies and listens on; the payload is the store's schema.
pub(super) const CHANNEL: &str = "saga_wake";

/// Notifies the workers of `sql`'s schema, when the transaction `client` runs commits.
pub(super) async fn notify(
    client: &impl deadpool_postgres::GenericClient,
    sql: &Sql,
) -> Result<(), StoreError> {
    let statement = prepared(client, "SELECT pg_notify($1, $2)").await?;
    client
        .execute(&statement, &[&CHANNEL, &sql.schema])
        .await
        .map_err(pg_error)?;
    Ok(())
}

/// Listens for as long as the returned task runs (the store aborts it when dropped): the hints
/// go to `hints`.
pub(super) fn start(
    url: String,
    schema: String,
    hints: watch::Sender<u64>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut delay = Duration::from_millis(50);
        loop {
            match listen(&url, &schema, &hints).await {
                // Listened, then the connection ended: reconnect soon.
                Ok(()) => {
                    delay = Duration::from_millis(50);
                    tokio::time::sleep(delay).await;
                }
                Err(error) => {
                    tracing::warn!(%error, ?delay, "cannot listen for saga wake-ups; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
            }
        }
    })
}

/// One connection's worth of listening: returns when the connection ends.
async fn listen(url: &str, schema: &str, hints: &watch::Sender<u64>) -> Result<(), StoreError> {
    let (client, mut connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .map_err(pg_error)?;
    let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx)).boxed();
    let statement = format!("LISTEN {CHANNEL}");
    let subscribe = client.batch_execute(&statement);
    tokio::pin!(subscribe);
    let mut subscribed = false;
    loop {
        tokio::select! {
            done = &mut subscribe, if !subscribed => {
                done.map_err(pg_error)?;
                subscribed = true;
                // Whatever was notified while nobody listened.
                hints.send_modify(|n| *n += 1);
            }
            message = messages.next() => match message {
                Some(Ok(AsyncMessage::Notification(note))) if note.payload() == schema => {
                    hints.send_modify(|n| *n += 1);
                }
                Some(Ok(_)) => {}
                Some(Err(error)) => return Err(pg_error(error)),
                None => return Ok(()),
            },
        }
    }
}
