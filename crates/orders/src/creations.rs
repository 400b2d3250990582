//! New orders, stored together.
//!
//! Every new order is a transaction on the orders database, and on SQLite
//! that database has one writer connection, which the saga's batches need
//! too. With sqlx's SQLite driver each statement was a round trip to the
//! connection's thread, and under load most of a transaction's time was
//! the wait between them, with the writer held: at 700 orders a second in
//! `kart up` the orders writer was held 94 % of the time, one creation per
//! take. Statements now run in place ([`kit::sqlite_inline`]), and a batch
//! still holds the writer once for many orders. So creations queue
//! here, and one task stores whatever has queued in one transaction: one
//! `BEGIN` and `COMMIT`, one statement each for the orders, their lines and
//! their history, and one outbox statement for up to [`MAX_BATCH`]
//! orders. A caller hears back only after the commit, so a 201 still means
//! the order is stored.
//!
//! A batch that fails is tried again one order at a time, so an order that
//! cannot be stored fails alone.

use contracts::Event as _;
use contracts::events::OrderCreatedV1;
use kit::cloudevents::CloudEvent;
use kit::db::Db;
use kit::outbox::{self, OutboxSignal};
use tokio::sync::{mpsc, oneshot};

use crate::store::{self, Order, StoreError};

/// Most orders stored in one transaction.
pub const MAX_BATCH: usize = 64;

/// Creations waiting beyond this make their callers wait to queue.
const QUEUE: usize = 1024;

/// An order to store and the event announcing it.
pub struct Creation {
    pub order: Order,
    pub event: CloudEvent,
}

/// What became of a creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// Stored, and its event is in the outbox.
    New,
    /// Nothing stored: the caller's idempotency key names an order already.
    KeyTaken,
}

type Reply = oneshot::Sender<Result<Stored, String>>;

/// The queue to the task that stores new orders.
#[derive(Clone)]
pub struct OrderWriter {
    queue: mpsc::Sender<(Creation, Reply)>,
}

impl OrderWriter {
    /// The writer, and the task that does the storing: it runs until every
    /// clone of the writer is gone (the service's API, once its server has
    /// stopped), so requests still in flight at shutdown are stored.
    pub fn start(
        db: Db,
        outbox: OutboxSignal,
    ) -> (
        OrderWriter,
        impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        let (queue, waiting) = mpsc::channel(QUEUE);
        (OrderWriter { queue }, store_queued(db, outbox, waiting))
    }

    /// Stores `creation`; returns once its transaction has committed. An
    /// error is the database's, as text.
    pub async fn store(&self, creation: Creation) -> Result<Stored, String> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send((creation, reply))
            .await
            .map_err(|_| "the order writer has stopped".to_owned())?;
        answer
            .await
            .map_err(|_| "the order writer stopped before answering".to_owned())?
    }
}

async fn store_queued(
    db: Db,
    outbox: OutboxSignal,
    mut waiting: mpsc::Receiver<(Creation, Reply)>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while waiting.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let creations: Vec<&Creation> = batch.iter().map(|(creation, _)| creation).collect();
        let outcomes = match store_batch(&db, &creations).await {
            Ok(stored) => stored.into_iter().map(Ok).collect(),
            Err(error) if creations.len() == 1 => vec![Err(error.to_string())],
            Err(error) => {
                tracing::warn!(%error, orders = creations.len(), "a batch of new orders failed; storing them one by one");
                let mut outcomes = Vec::with_capacity(creations.len());
                for creation in &creations {
                    outcomes.push(match store_batch(&db, &[creation]).await {
                        Ok(stored) => stored
                            .first()
                            .copied()
                            .ok_or_else(|| "a stored order went missing".to_owned()),
                        Err(error) => Err(error.to_string()),
                    });
                }
                outcomes
            }
        };
        if outcomes.iter().any(|outcome| outcome == &Ok(Stored::New)) {
            outbox.notify();
        }
        for ((_, reply), outcome) in batch.drain(..).zip(outcomes) {
            // A caller that has gone (its request was dropped) finds its
            // order by its idempotency key when it asks again.
            let _ = reply.send(outcome);
        }
    }
}

/// Stores `creations` in one transaction, their events with them.
async fn store_batch(db: &Db, creations: &[&Creation]) -> Result<Vec<Stored>, StoreError> {
    let mut tx = db.begin().await?;
    let orders: Vec<&Order> = creations.iter().map(|creation| &creation.order).collect();
    let inserted = store::insert_all(&mut tx, &orders).await?;
    let mut stored = Vec::with_capacity(creations.len());
    for (creation, inserted) in creations.iter().zip(inserted) {
        if inserted {
            outbox::enqueue(&mut tx, OrderCreatedV1::TOPIC, &creation.event)?;
            stored.push(Stored::New);
        } else {
            stored.push(Stored::KeyTaken);
        }
    }
    tx.commit().await?;
    Ok(stored)
}
