//! What inventory does with order events, and the expiry sweep.

use std::time::Duration;

use async_trait::async_trait;
use contracts::Event;
use contracts::events::{OrderCancelledV1, OrderCreatedV1, OrderFailedV1, OrderPaidV1};
use kit::cloudevents::CloudEvent;
use kit::consumer::{Handler, HandlerError};
use kit::db::{Db, Tx, now_millis};
use kit::outbox::OutboxSignal;
use tokio_util::sync::CancellationToken;

use crate::domain::{Lines, ReservationState};
use crate::reservations;
use crate::store::{self, StoreError};

fn retry(error: StoreError) -> HandlerError {
    match error {
        StoreError::Corrupt(reason) => HandlerError::Reject(anyhow::anyhow!(reason)),
        other => HandlerError::Retry(other.into()),
    }
}

fn reject(error: impl std::fmt::Display) -> HandlerError {
    HandlerError::Reject(anyhow::anyhow!("{error}"))
}

/// Reserves on `order.created`, releases on `order.cancelled` and
/// `order.failed`, commits on `order.paid`. Other order events are not
/// inventory's business.
pub struct OrderEvents {
    pub reservation_ttl_ms: i64,
}

#[async_trait]
impl Handler for OrderEvents {
    async fn handle(&self, tx: &mut Tx, event: &CloudEvent) -> Result<(), HandlerError> {
        let trace = event.traceparent;
        match event.event_type.as_str() {
            OrderCreatedV1::TYPE => {
                let order = OrderCreatedV1::decode(event).map_err(reject)?;
                let lines = Lines::parse(
                    order
                        .lines
                        .iter()
                        .map(|l| (l.sku.as_str(), i64::from(l.quantity))),
                )
                .map_err(|p| reject(p.detail))?;
                reservations::reserve(
                    tx,
                    &order.order_id,
                    &lines,
                    now_millis(),
                    self.reservation_ttl_ms,
                    trace,
                )
                .await
                .map_err(retry)?;
            }
            OrderCancelledV1::TYPE => {
                let order = OrderCancelledV1::decode(event).map_err(reject)?;
                reservations::release(
                    tx,
                    &order.order_id,
                    ReservationState::Released,
                    "cancelled",
                    trace,
                )
                .await
                .map_err(retry)?;
            }
            OrderFailedV1::TYPE => {
                let order = OrderFailedV1::decode(event).map_err(reject)?;
                reservations::release(
                    tx,
                    &order.order_id,
                    ReservationState::Released,
                    &order.code,
                    trace,
                )
                .await
                .map_err(retry)?;
            }
            OrderPaidV1::TYPE => {
                let order = OrderPaidV1::decode(event).map_err(reject)?;
                reservations::commit(tx, &order.order_id, trace)
                    .await
                    .map_err(retry)?;
            }
            _ => {}
        }
        Ok(())
    }
}

/// Releases reservations whose time ran out, every `every`, until shutdown.
pub async fn sweep_expired(
    db: Db,
    outbox: OutboxSignal,
    every: Duration,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        match sweep_once(&db).await {
            Ok(0) => {}
            Ok(released) => {
                outbox.notify();
                tracing::info!(released, "expired reservations released");
            }
            Err(error) => tracing::warn!(%error, "expiry sweep failed; trying again"),
        }
    }
}

/// One pass of the sweep; returns how many reservations it released.
pub async fn sweep_once(db: &Db) -> Result<usize, StoreError> {
    let mut released = 0;
    loop {
        let mut tx = db.begin().await?;
        let due = store::expired(&mut tx, now_millis(), 100).await?;
        if due.is_empty() {
            return Ok(released);
        }
        for order_id in &due {
            reservations::release(
                &mut tx,
                order_id,
                ReservationState::Expired,
                "expired",
                None,
            )
            .await?;
        }
        tx.commit().await?;
        released += due.len();
    }
}
