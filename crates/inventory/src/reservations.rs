//! Reservation changes and the events they cause, committed together.
//!
//! The one place a reservation changes, whoever asks: the order events the
//! service consumes, the gRPC API, or the expiry sweep. Each change that
//! moves stock outboxes its event in the caller's transaction.

use chrono::{TimeZone, Utc};
use contracts::Event;
use contracts::events::{
    ShortLineV1, StockCommittedV1, StockRejectedV1, StockReleasedV1, StockReservedV1,
};
use kit::db::Tx;
use kit::outbox;
use kit::telemetry::TraceParent;

use crate::domain::{Lines, ReservationState};
use crate::store::{self, ReserveOutcome, StoreError};

const SOURCE: &str = "/kart/inventory";

async fn emit<E: Event>(
    tx: &mut Tx,
    event: &E,
    trace: Option<TraceParent>,
) -> Result<(), StoreError> {
    outbox::enqueue(tx, E::TOPIC, &event.to_cloud_event(SOURCE, trace))?;
    Ok(())
}

/// Reserves the order's lines for `ttl_ms`; emits `reserved` or `rejected`
/// the first time only.
pub async fn reserve(
    tx: &mut Tx,
    order_id: &str,
    lines: &Lines,
    now_ms: i64,
    ttl_ms: i64,
    trace: Option<TraceParent>,
) -> Result<ReserveOutcome, StoreError> {
    let outcome = store::reserve(tx, order_id, lines, now_ms + ttl_ms).await?;
    match &outcome {
        ReserveOutcome::Reserved { expires_at } => {
            let event = StockReservedV1 {
                order_id: order_id.to_owned(),
                expires_at: Utc
                    .timestamp_millis_opt(*expires_at)
                    .single()
                    .unwrap_or_else(Utc::now),
            };
            emit(tx, &event, trace).await?;
        }
        ReserveOutcome::Rejected { short } => {
            let event = StockRejectedV1 {
                order_id: order_id.to_owned(),
                short: short
                    .iter()
                    .map(|s| ShortLineV1 {
                        sku: s.sku.clone(),
                        requested: s.requested,
                        available: u32::try_from(s.available.max(0)).unwrap_or(u32::MAX),
                    })
                    .collect(),
            };
            emit(tx, &event, trace).await?;
        }
        ReserveOutcome::Existing(_) => {}
    }
    Ok(outcome)
}

/// Gives the order's units back (`Released`, or `Expired` from the sweep);
/// emits `released` if units moved.
pub async fn release(
    tx: &mut Tx,
    order_id: &str,
    to: ReservationState,
    reason: &str,
    trace: Option<TraceParent>,
) -> Result<ReservationState, StoreError> {
    let (before, after) = store::finish(tx, order_id, to, reason).await?;
    if before == Some(ReservationState::Reserved) {
        let event = StockReleasedV1 {
            order_id: order_id.to_owned(),
            reason: reason.to_owned(),
        };
        emit(tx, &event, trace).await?;
    } else if after == ReservationState::Committed
        && to == ReservationState::Released
        && store::restock(tx, order_id, reason).await?
    {
        // Cancelled after payment, before shipping: the goods are still
        // here, so they go back on sale.
        let event = StockReleasedV1 {
            order_id: order_id.to_owned(),
            reason: "restocked".to_owned(),
        };
        emit(tx, &event, trace).await?;
        return Ok(ReservationState::Released);
    }
    Ok(after)
}

/// Turns the reservation into a sale; emits `committed` if units moved.
pub async fn commit(
    tx: &mut Tx,
    order_id: &str,
    trace: Option<TraceParent>,
) -> Result<ReservationState, StoreError> {
    let (before, after) = store::finish(tx, order_id, ReservationState::Committed, "paid").await?;
    if before == Some(ReservationState::Reserved) {
        emit(
            tx,
            &StockCommittedV1 {
                order_id: order_id.to_owned(),
            },
            trace,
        )
        .await?;
    } else if after != ReservationState::Committed {
        tracing::warn!(
            order_id,
            state = after.as_str(),
            "a paid order's reservation had already ended"
        );
    }
    Ok(after)
}
