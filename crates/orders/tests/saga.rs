//! The saga's money paths against real databases, PostgreSQL and SQLite:
//! a capture pays a reserved order once, and a capture that arrives after
//! the order closed (the payment service was slow, the order timed out or
//! was cancelled meanwhile) is given back in full, never kept. And each
//! status and refund event carries its step as the order then stands.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use contracts::Event as _;
use contracts::events::{
    OrderCancelledV1, OrderPaidV1, OrderRefundedV1, RefundRequestedV1, carried_order_change,
};
use kit::Db;
use orders::saga;
use orders::state::{Cause, Status};
use orders::store::{self, Order};
use sqlx::Row;

mod common;

const TOTAL: i64 = 2_500;

/// A new PENDING order for `TOTAL` EUR, as the API writes one.
async fn placed(db: &Db) -> String {
    let order = common::pending_order(TOTAL, &kit::testing::unique("key"));
    common::stored(db, &order).await;
    order.id
}

async fn advance(db: &Db, id: &str, cause: Cause) {
    let mut tx = db.begin().await.unwrap();
    saga::advance(&mut tx, id, cause, "", None).await.unwrap();
    tx.commit().await.unwrap();
}

async fn captured(db: &Db, id: &str, amount_minor: i64) {
    let mut tx = db.begin().await.unwrap();
    saga::payment_captured(&mut tx, id, amount_minor, None)
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

async fn order(db: &Db, id: &str) -> Order {
    let mut conn = db.write().await.unwrap();
    store::by_id(&mut conn, id).await.unwrap().unwrap()
}

/// The outboxed events about order `id`, oldest first: type and data.
async fn events(db: &Db, id: &str) -> Vec<(String, serde_json::Value)> {
    let rows =
        sqlx::query("SELECT headers, payload FROM kart_outbox WHERE event_key = $1 ORDER BY id")
            .bind(id)
            .fetch_all(&mut *db.write().await.expect("a connection"))
            .await
            .unwrap();
    rows.iter()
        .map(|row| {
            let headers: Vec<(String, String)> =
                serde_json::from_str(&row.get::<String, _>("headers")).unwrap();
            let kind = kit::bus::header(&headers, "ce_type").unwrap().to_owned();
            let data = serde_json::from_str(&row.get::<String, _>("payload")).unwrap();
            (kind, data)
        })
        .collect()
}

fn refunds(events: &[(String, serde_json::Value)]) -> Vec<&serde_json::Value> {
    events
        .iter()
        .filter(|(kind, _)| kind == RefundRequestedV1::TYPE)
        .map(|(_, data)| data)
        .collect()
}

/// A capture on a reserved order pays it: one `order.paid`, no refund.
async fn a_capture_pays_a_reserved_order(db: Db) {
    let id = placed(&db).await;
    advance(&db, &id, Cause::StockReserved).await;
    captured(&db, &id, TOTAL).await;

    let paid = order(&db, &id).await;
    assert_eq!(paid.status, Status::Paid);
    assert_eq!((paid.captured_minor, paid.refund_pending_minor), (TOTAL, 0));
    let steps: Vec<(&str, &str, &str)> = paid
        .history
        .iter()
        .map(|t| (t.cause.as_str(), t.from.as_str(), t.to.as_str()))
        .collect();
    assert_eq!(
        steps,
        [
            ("created", "", "PENDING"),
            ("stock_reserved", "PENDING", "RESERVED"),
            ("payment_captured", "RESERVED", "PAID"),
        ]
    );
    let events = events(&db, &id).await;
    assert_eq!(
        events
            .iter()
            .filter(|(kind, _)| kind == OrderPaidV1::TYPE)
            .count(),
        1
    );
    assert!(refunds(&events).is_empty(), "{events:?}");
}

/// The order closed (`closing`) before its capture came: the status stays,
/// the whole capture is asked back, and once the refund is issued nothing
/// of the shopper's money is kept or still pending.
async fn a_capture_after_the_order_closed_is_refunded_in_full(
    db: Db,
    closing: Cause,
    closed: Status,
) {
    let id = placed(&db).await;
    advance(&db, &id, Cause::StockReserved).await;
    let closing_code = closing.code().to_owned();
    advance(&db, &id, closing).await;
    captured(&db, &id, TOTAL).await;

    let late = order(&db, &id).await;
    assert_eq!(late.status, closed);
    assert_eq!(
        (
            late.captured_minor,
            late.refund_pending_minor,
            late.refundable_minor()
        ),
        (TOTAL, TOTAL, 0)
    );
    // One entry per step that happened: a try that found the order
    // elsewhere wrote none.
    let causes: Vec<&str> = late.history.iter().map(|t| t.cause.as_str()).collect();
    assert_eq!(
        causes,
        [
            "created",
            "stock_reserved",
            closing_code.as_str(),
            "refund_requested"
        ]
    );
    let last = late.history.last().unwrap();
    assert_eq!(
        (last.cause.as_str(), last.from.as_str(), last.to.as_str()),
        ("refund_requested", closed.as_str(), closed.as_str())
    );
    assert!(last.detail.contains("captured_after_close"), "{last:?}");
    let events = events(&db, &id).await;
    let asked = refunds(&events);
    assert_eq!(asked.len(), 1, "{events:?}");
    assert_eq!(asked[0]["amount"]["amount_minor"], TOTAL);
    assert_eq!(asked[0]["amount"]["currency"], "EUR");
    assert_eq!(asked[0]["reason"], "captured_after_close");
    // The request carries its note as the step, as the status events do.
    assert_latest_step_is_the_orders(&db, &id).await;

    let mut tx = db.begin().await.unwrap();
    saga::refund_issued(&mut tx, &id, TOTAL, None)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_latest_step_is_the_orders(&db, &id).await;
    let settled = order(&db, &id).await;
    assert_eq!(settled.status, closed);
    assert_eq!(
        (
            settled.captured_minor,
            settled.refunded_minor,
            settled.refund_pending_minor
        ),
        (TOTAL, TOTAL, 0)
    );
}

/// Checks that the latest step an event about `id` carries is the order's
/// last history entry, with the order's money and failure code: what a copy
/// of the order brought up to date from the events (the live status
/// stream's) must show.
async fn assert_latest_step_is_the_orders(db: &Db, id: &str) {
    let order = order(db, id).await;
    let step = events(db, id)
        .await
        .iter()
        .rev()
        .find_map(|(_, data)| carried_order_change(&serde_json::to_vec(data).unwrap()))
        .expect("a status event that carries its step");
    let index = order.history.len() - 1;
    let entry = &order.history[index];
    assert_eq!(step.seq, u64::try_from(index + 1).unwrap(), "{step:?}");
    assert_eq!(
        (
            step.from_status.as_str(),
            step.to_status.as_str(),
            step.cause.as_str(),
            step.detail.as_str(),
            step.at.timestamp_millis()
        ),
        (
            entry.from.as_str(),
            entry.to.as_str(),
            entry.cause.as_str(),
            entry.detail.as_str(),
            entry.at
        )
    );
    assert_eq!(step.failure_code, order.failure_code);
    assert_eq!(
        (step.captured.amount_minor, step.refunded.amount_minor),
        (order.captured_minor, order.refunded_minor)
    );
    assert!(
        [&step.captured, &step.refunded, &step.refund_pending]
            .iter()
            .all(|money| money.currency == order.currency)
    );
    assert_eq!(step.refund_pending.amount_minor, order.refund_pending_minor);
    assert_eq!(step.at.timestamp_millis(), order.updated_at);
}

/// Reserved, paid and shipped (moves of one statement), out of stock (a
/// failure code), cancelled once paid (a read, then the move, then the
/// refund's note) and refunded (a note of its own): each event's step is
/// the order's.
async fn each_status_event_carries_its_step(db: Db) {
    let shipped = placed(&db).await;
    advance(&db, &shipped, Cause::StockReserved).await;
    assert_latest_step_is_the_orders(&db, &shipped).await;
    captured(&db, &shipped, TOTAL).await;
    assert_latest_step_is_the_orders(&db, &shipped).await;
    advance(&db, &shipped, Cause::Fulfil).await;
    assert_latest_step_is_the_orders(&db, &shipped).await;
    assert_eq!(order(&db, &shipped).await.status, Status::Fulfilled);

    let short = placed(&db).await;
    advance(&db, &short, Cause::StockRejected).await;
    assert_latest_step_is_the_orders(&db, &short).await;
    assert_eq!(order(&db, &short).await.failure_code, "out_of_stock");

    let cancelled = placed(&db).await;
    advance(&db, &cancelled, Cause::StockReserved).await;
    captured(&db, &cancelled, TOTAL).await;
    advance(&db, &cancelled, Cause::Cancel { by_admin: true }).await;
    // The cancel's step comes with the cancel's event, and the refund's
    // note, the entry after it, with the refund request's.
    assert_latest_step_is_the_orders(&db, &cancelled).await;
    let entries = u64::try_from(order(&db, &cancelled).await.history.len()).unwrap();
    let steps: Vec<(String, u64)> = events(&db, &cancelled)
        .await
        .into_iter()
        .filter_map(|(kind, data)| {
            carried_order_change(&serde_json::to_vec(&data).unwrap()).map(|step| (kind, step.seq))
        })
        .collect();
    assert_eq!(
        steps[steps.len() - 2..],
        [
            (OrderCancelledV1::TYPE.to_owned(), entries - 1),
            (RefundRequestedV1::TYPE.to_owned(), entries)
        ],
        "{steps:?}"
    );
    assert_eq!(order(&db, &cancelled).await.refund_pending_minor, TOTAL);
    // The refund confirmed: the order announces it, with its note.
    let mut tx = db.begin().await.unwrap();
    saga::refund_issued(&mut tx, &cancelled, TOTAL, None)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let refunded = events(&db, &cancelled).await;
    let (kind, data) = refunded.last().unwrap();
    assert_eq!(kind, OrderRefundedV1::TYPE, "{refunded:?}");
    assert_eq!(data["amount"]["amount_minor"], TOTAL);
    assert_latest_step_is_the_orders(&db, &cancelled).await;
    let cancelled = order(&db, &cancelled).await;
    assert_eq!(cancelled.status, Status::Cancelled);
    assert_eq!(
        (cancelled.refunded_minor, cancelled.refund_pending_minor),
        (TOTAL, 0)
    );
}

#[tokio::test]
async fn each_status_event_carries_its_step_on_postgres() {
    each_status_event_carries_its_step(common::postgres().await).await;
}

#[tokio::test]
async fn each_status_event_carries_its_step_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    each_status_event_carries_its_step(common::sqlite(&dir).await).await;
}

#[tokio::test]
async fn a_capture_pays_a_reserved_order_on_postgres() {
    a_capture_pays_a_reserved_order(common::postgres().await).await;
}

#[tokio::test]
async fn a_capture_pays_a_reserved_order_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    a_capture_pays_a_reserved_order(common::sqlite(&dir).await).await;
}

#[tokio::test]
async fn a_capture_after_a_payment_timeout_is_refunded_on_postgres() {
    a_capture_after_the_order_closed_is_refunded_in_full(
        common::postgres().await,
        Cause::PaymentTimedOut,
        Status::Failed,
    )
    .await;
}

#[tokio::test]
async fn a_capture_after_a_payment_timeout_is_refunded_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    a_capture_after_the_order_closed_is_refunded_in_full(
        common::sqlite(&dir).await,
        Cause::PaymentTimedOut,
        Status::Failed,
    )
    .await;
}

#[tokio::test]
async fn a_capture_after_a_cancel_is_refunded_on_postgres() {
    a_capture_after_the_order_closed_is_refunded_in_full(
        common::postgres().await,
        Cause::Cancel { by_admin: false },
        Status::Cancelled,
    )
    .await;
}

#[tokio::test]
async fn a_capture_after_a_cancel_is_refunded_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    a_capture_after_the_order_closed_is_refunded_in_full(
        common::sqlite(&dir).await,
        Cause::Cancel { by_admin: false },
        Status::Cancelled,
    )
    .await;
}
