//! What each transition sets off. A status change and the events it
//! causes are written in the caller's transaction (the outbox), so they
//! happen together or not at all; inventory and payments react to the
//! events.

use chrono::{TimeZone, Utc};
use contracts::Event;
use contracts::events::{
    Money, OrderCancelledV1, OrderChangeV1, OrderFailedV1, OrderFulfilledV1, OrderPaidV1,
    OrderPaymentRequestedV1, OrderRefundedV1, PaymentChoiceV1, RefundRequestedV1,
};
use kit::db::{Tx, now_millis};
use kit::outbox;
use kit::telemetry::TraceParent;

use crate::state::{Cause, Refusal, Status};
use crate::store::{self, MoneyMoved, Order, StoreError};

pub const SOURCE: &str = "/kart/orders";

#[derive(Debug, thiserror::Error)]
pub enum SagaError {
    #[error("no order {0}")]
    NoSuchOrder(String),
    #[error("{0}")]
    Refused(Refusal),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for SagaError {
    fn from(error: sqlx::Error) -> Self {
        SagaError::Store(StoreError::Db(error))
    }
}

fn at(millis: i64) -> chrono::DateTime<Utc> {
    Utc.timestamp_millis_opt(millis)
        .single()
        .unwrap_or_default()
}

fn money(amount_minor: i64, order: &Order) -> Money {
    Money {
        amount_minor,
        currency: order.currency.clone(),
    }
}

/// How the order is to be paid, as the events say it.
pub fn payment_choice(order: &Order) -> PaymentChoiceV1 {
    if order.payment_kind == CHECKOUT {
        PaymentChoiceV1::Checkout
    } else {
        PaymentChoiceV1::SavedMethod {
            payment_method_id: order.payment_method_id.clone(),
        }
    }
}

/// [`Order::payment_kind`] of an order paid on the hosted checkout.
pub const CHECKOUT: &str = "checkout";

/// The whole order: lines and history too.
pub async fn load(tx: &mut Tx, order_id: &str) -> Result<Order, SagaError> {
    store::by_id(tx, order_id)
        .await?
        .ok_or_else(|| SagaError::NoSuchOrder(order_id.to_owned()))
}

/// The order without lines and history: enough for every decision here.
pub async fn head(tx: &mut Tx, order_id: &str) -> Result<Order, SagaError> {
    store::head_by_id(tx, order_id)
        .await?
        .ok_or_else(|| SagaError::NoSuchOrder(order_id.to_owned()))
}

async fn emit<E: Event>(
    tx: &mut Tx,
    event: &E,
    trace: Option<TraceParent>,
) -> Result<(), SagaError> {
    outbox::enqueue(tx, E::TOPIC, &event.to_cloud_event(SOURCE, trace))?;
    Ok(())
}

/// Applies `cause` to the order and writes what follows from it.
///
/// Where the cause moves an order out of only one status (a capture, a
/// reservation), the move is tried from that status at once: the status
/// update returns the order, so the usual event costs one read fewer. An
/// order in another status is not changed by that try, and is then read
/// and decided on as any other.
pub async fn advance(
    tx: &mut Tx,
    order_id: &str,
    cause: Cause,
    detail: &str,
    trace: Option<TraceParent>,
) -> Result<(), SagaError> {
    let now = now_millis();
    if let Some(from) = cause.only_from()
        && let Some(moved) = try_advance_from(tx, order_id, from, &cause, detail, 0, now).await?
    {
        return announce(tx, &moved, &cause, detail, trace, now).await;
    }
    let order = head(tx, order_id).await?;
    advance_read(tx, order, cause, detail, trace, 0).await
}

/// Moves the order out of `from` for `cause`, adding `captured_minor` to
/// it, if it is in `from`; returns the order as the saga would have read it
/// (in `from`, with the money counted) and the move's history entry, or
/// `None` if it is elsewhere.
async fn try_advance_from(
    tx: &mut Tx,
    order_id: &str,
    from: Status,
    cause: &Cause,
    detail: &str,
    captured_minor: i64,
    now: i64,
) -> Result<Option<store::Moved>, SagaError> {
    let to = from.apply(cause).map_err(SagaError::Refused)?;
    let step = store::Move {
        from,
        to,
        cause: cause.code(),
        detail,
        failure_code: (to == Status::Failed).then(|| cause.code()),
        captured_minor,
    };
    match store::move_status(tx, order_id, step, now).await {
        Ok(mut moved) => {
            moved.order.status = from;
            Ok(Some(moved))
        }
        Err(StoreError::Conflict) => Ok(None),
        Err(error) => Err(error.into()),
    }
}

/// [`advance`] for an order this transaction has just read (its head, with
/// `captured_minor` already counted in it). The money the step captured is
/// added by the status update itself, one statement instead of two on the
/// same row.
async fn advance_read(
    tx: &mut Tx,
    order: Order,
    cause: Cause,
    detail: &str,
    trace: Option<TraceParent>,
    captured_minor: i64,
) -> Result<(), SagaError> {
    let now = now_millis();
    let from = order.status;
    // A cause this status refuses is refused before anything is written.
    match try_advance_from(tx, &order.id, from, &cause, detail, captured_minor, now).await? {
        Some(moved) => announce(tx, &moved, &cause, detail, trace, now).await,
        None => Err(StoreError::Conflict.into()),
    }
}

/// The step `moved` took, as its status event carries it: `moved.order`'s
/// money and failure code are the row's after the move.
fn change(
    moved: &store::Moved,
    next: Status,
    cause: &str,
    detail: &str,
    now: i64,
) -> OrderChangeV1 {
    let order = &moved.order;
    OrderChangeV1 {
        seq: u64::try_from(moved.history_seq).unwrap_or_default(),
        from_status: order.status.as_str().to_owned(),
        to_status: next.as_str().to_owned(),
        cause: cause.to_owned(),
        detail: detail.to_owned(),
        at: at(now),
        failure_code: order.failure_code.clone(),
        captured: money(order.captured_minor, order),
        refunded: money(order.refunded_minor, order),
        refund_pending: money(order.refund_pending_minor, order),
    }
}

/// Writes the events that follow from `moved.order` having moved for
/// `cause`; `moved.order` is the row as the move left it, with its status
/// put back to the one it moved from (as [`try_advance_from`] returns it).
async fn announce(
    tx: &mut Tx,
    moved: &store::Moved,
    cause: &Cause,
    detail: &str,
    trace: Option<TraceParent>,
    now: i64,
) -> Result<(), SagaError> {
    let order = &moved.order;
    let next = order.status.apply(cause).map_err(SagaError::Refused)?;
    let change = Some(change(moved, next, cause.code(), detail, now));
    match next {
        Status::Reserved => {
            emit(
                tx,
                &OrderPaymentRequestedV1 {
                    order_id: order.id.clone(),
                    user_id: order.user_id.clone(),
                    amount: money(order.total_minor, order),
                    payment: payment_choice(order),
                    change,
                },
                trace,
            )
            .await?;
        }
        Status::Paid => {
            emit(
                tx,
                &OrderPaidV1 {
                    order_id: order.id.clone(),
                    user_id: order.user_id.clone(),
                    total: money(order.total_minor, order),
                    paid_at: at(now),
                    change,
                },
                trace,
            )
            .await?;
        }
        Status::Failed => {
            emit(
                tx,
                &OrderFailedV1 {
                    order_id: order.id.clone(),
                    user_id: order.user_id.clone(),
                    code: cause.code().to_owned(),
                    reason: detail.to_owned(),
                    failed_at: at(now),
                    change,
                },
                trace,
            )
            .await?;
        }
        Status::Cancelled => {
            emit(
                tx,
                &OrderCancelledV1 {
                    order_id: order.id.clone(),
                    user_id: order.user_id.clone(),
                    reason: cause.code().to_owned(),
                    cancelled_at: at(now),
                    change,
                },
                trace,
            )
            .await?;
            // Cancelled after payment: the money goes back.
            if order.refundable_minor() > 0 {
                request_refund(tx, order, order.refundable_minor(), cause.code(), trace).await?;
            }
        }
        Status::Fulfilled => {
            emit(
                tx,
                &OrderFulfilledV1 {
                    order_id: order.id.clone(),
                    user_id: order.user_id.clone(),
                    fulfilled_at: at(now),
                    change,
                },
                trace,
            )
            .await?;
        }
        Status::Pending => {}
    }
    Ok(())
}

/// Asks the payment service to give back `amount_minor` of what the order
/// captured; the amount is held as pending until it confirms.
pub async fn request_refund(
    tx: &mut Tx,
    order: &Order,
    amount_minor: i64,
    reason: &str,
    trace: Option<TraceParent>,
) -> Result<(), SagaError> {
    let now = now_millis();
    let asked = MoneyMoved {
        refund_pending: amount_minor,
        ..MoneyMoved::default()
    };
    let detail = format!("{} {} ({reason})", amount_minor, order.currency);
    let noted = note(tx, &order.id, asked, "refund_requested", &detail, now).await?;
    emit(
        tx,
        &RefundRequestedV1 {
            order_id: order.id.clone(),
            refund_request_id: kit::new_id("rfq"),
            amount: money(amount_minor, order),
            reason: reason.to_owned(),
            change: Some(noted),
        },
        trace,
    )
    .await
}

/// Adds `money` to the order's with a history note for `cause`; returns the
/// step, as the event announcing it carries it.
async fn note(
    tx: &mut Tx,
    order_id: &str,
    money: MoneyMoved,
    cause: &str,
    detail: &str,
    now: i64,
) -> Result<OrderChangeV1, SagaError> {
    let noted = store::add_money_noted(tx, order_id, money, cause, detail, now)
        .await?
        .ok_or_else(|| SagaError::NoSuchOrder(order_id.to_owned()))?;
    Ok(change(&noted, noted.order.status, cause, detail, now))
}

/// The payment service captured the order's money. A reserved order is
/// paid; an order that was cancelled or failed meanwhile (a late capture)
/// gets the money back at once.
pub async fn payment_captured(
    tx: &mut Tx,
    order_id: &str,
    amount_minor: i64,
    trace: Option<TraceParent>,
) -> Result<(), SagaError> {
    let cause = Cause::PaymentCaptured;
    let now = now_millis();
    // The usual case, a reserved order, in one statement (as `advance`).
    if let Some(moved) = try_advance_from(
        tx,
        order_id,
        Status::Reserved,
        &cause,
        "",
        amount_minor,
        now,
    )
    .await?
    {
        return announce(tx, &moved, &cause, "", trace, now).await;
    }
    let mut order = head(tx, order_id).await?;
    // The row as it is about to stand: the same head with the money added.
    order.captured_minor += amount_minor;
    if order.status == Status::Reserved {
        return advance_read(tx, order, cause, "", trace, amount_minor).await;
    }
    let captured = MoneyMoved {
        captured: amount_minor,
        ..MoneyMoved::default()
    };
    if matches!(order.status, Status::Cancelled | Status::Failed) {
        store::add_money(tx, order_id, captured, now).await?;
        request_refund(
            tx,
            &order,
            order.refundable_minor(),
            "captured_after_close",
            trace,
        )
        .await?;
    } else {
        // No event: a reader of the order finds this note missing from the
        // steps it heard, and reads the order.
        note(tx, order_id, captured, "payment_captured", "", now).await?;
    }
    Ok(())
}

/// The payment service gave money back.
pub async fn refund_issued(
    tx: &mut Tx,
    order_id: &str,
    amount_minor: i64,
    trace: Option<TraceParent>,
) -> Result<(), SagaError> {
    let order = head(tx, order_id).await?;
    let now = now_millis();
    let given_back = MoneyMoved {
        refunded: amount_minor,
        refund_pending: -amount_minor,
        ..MoneyMoved::default()
    };
    let detail = format!("{} {}", amount_minor, order.currency);
    let noted = note(tx, order_id, given_back, "refund_issued", &detail, now).await?;
    emit(
        tx,
        &OrderRefundedV1 {
            order_id: order.id.clone(),
            user_id: order.user_id.clone(),
            amount: money(amount_minor, &order),
            refunded_at: at(now),
            change: Some(noted),
        },
        trace,
    )
    .await
}
