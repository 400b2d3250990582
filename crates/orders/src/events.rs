//! What the orders service does with inventory and payment events, and
//! the sweep that drives stuck orders on.

use std::time::Duration;

use async_trait::async_trait;
use contracts::Event;
use contracts::events::{
    PaymentCapturedV1, PaymentFailedV1, RefundIssuedV1, StockRejectedV1, StockReleasedV1,
    StockReservedV1,
};
use kit::cloudevents::CloudEvent;
use kit::consumer::{Handler, HandlerError};
use kit::db::{Db, now_millis};
use kit::outbox::OutboxSignal;
use tokio_util::sync::CancellationToken;

use crate::saga::{self, SagaError};
use crate::state::Cause;
use crate::store::{self, StoreError};

fn reject(error: impl std::fmt::Display) -> HandlerError {
    HandlerError::Reject(anyhow::anyhow!("{error}"))
}

/// A refusal means the order moved on (a late or repeated event): it is
/// logged and the event counts as handled. Losing a race to another writer
/// is retried; an event for an order this service never had is a dead
/// letter, for a person to look at.
fn settle(event: &CloudEvent, outcome: Result<(), SagaError>) -> Result<(), HandlerError> {
    match outcome {
        Ok(_) => Ok(()),
        Err(SagaError::Refused(refusal)) => {
            tracing::info!(event_type = %event.event_type, %refusal, "event changes nothing");
            Ok(())
        }
        Err(SagaError::Store(StoreError::Corrupt(reason))) => Err(reject(reason)),
        Err(error @ SagaError::NoSuchOrder(_)) => Err(reject(error)),
        Err(error) => Err(HandlerError::Retry(error.into())),
    }
}

/// Reacts to inventory and payment events for orders.
pub struct SagaEvents;

#[async_trait]
impl Handler for SagaEvents {
    async fn handle(&self, tx: &mut kit::Tx, event: &CloudEvent) -> Result<(), HandlerError> {
        let trace = event.traceparent;
        let outcome = match event.event_type.as_str() {
            StockReservedV1::TYPE => {
                let e = StockReservedV1::decode(event).map_err(reject)?;
                saga::advance(tx, &e.order_id, Cause::StockReserved, "", trace).await
            }
            StockRejectedV1::TYPE => {
                let e = StockRejectedV1::decode(event).map_err(reject)?;
                let detail = e
                    .short
                    .iter()
                    .map(|l| format!("{}: {} wanted, {} left", l.sku, l.requested, l.available))
                    .collect::<Vec<_>>()
                    .join("; ");
                saga::advance(tx, &e.order_id, Cause::StockRejected, &detail, trace).await
            }
            StockReleasedV1::TYPE => {
                let e = StockReleasedV1::decode(event).map_err(reject)?;
                if e.reason != "expired" {
                    // Released because the order was cancelled or failed:
                    // the order already knows.
                    return Ok(());
                }
                saga::advance(tx, &e.order_id, Cause::ReservationExpired, "", trace).await
            }
            PaymentCapturedV1::TYPE => {
                let e = PaymentCapturedV1::decode(event).map_err(reject)?;
                saga::payment_captured(tx, &e.order_id, e.amount.amount_minor, trace).await
            }
            PaymentFailedV1::TYPE => {
                let e = PaymentFailedV1::decode(event).map_err(reject)?;
                let cause = Cause::PaymentFailed { code: e.code };
                saga::advance(tx, &e.order_id, cause, &e.reason, trace).await
            }
            RefundIssuedV1::TYPE => {
                let e = RefundIssuedV1::decode(event).map_err(reject)?;
                saga::refund_issued(tx, &e.order_id, e.amount.amount_minor, trace).await
            }
            _ => return Ok(()),
        };
        settle(event, outcome)
    }
}

/// Every `every`, fails orders that waited longer than `payment_timeout`
/// for their payment, so no accepted order waits forever.
pub async fn drive_stuck_orders(
    db: Db,
    outbox: OutboxSignal,
    payment_timeout: Duration,
    every: Duration,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        match time_out_payments(&db, payment_timeout).await {
            Ok(0) => {}
            Ok(failed) => {
                outbox.notify();
                tracing::warn!(failed, "orders failed after waiting too long for payment");
            }
            Err(error) => tracing::warn!(%error, "stuck-order sweep failed; trying again"),
        }
    }
}

/// One pass: returns how many orders it failed.
pub async fn time_out_payments(db: &Db, payment_timeout: Duration) -> Result<usize, SagaError> {
    let timeout_ms = i64::try_from(payment_timeout.as_millis()).unwrap_or(i64::MAX);
    let before = now_millis().saturating_sub(timeout_ms);
    let mut conn = db.write().await?;
    let due = store::reserved_since(&mut conn, before, 100).await?;
    drop(conn);
    let mut failed = 0;
    for order_id in due {
        let mut tx = db.begin().await?;
        match saga::advance(
            &mut tx,
            &order_id,
            Cause::PaymentTimedOut,
            "no answer from the payment service in time",
            None,
        )
        .await
        {
            Ok(_) => {
                tx.commit().await?;
                failed += 1;
            }
            // Paid or cancelled meanwhile: nothing to do.
            Err(SagaError::Refused(_) | SagaError::Store(StoreError::Conflict)) => {}
            Err(error) => return Err(error),
        }
    }
    Ok(failed)
}
