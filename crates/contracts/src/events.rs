//! Versioned event payloads.
//!
//! Each type names its CloudEvents `type` (`kart.<domain>.<what>.v<N>`), its
//! topic, and the aggregate it is about (the CloudEvents `subject`, which is
//! also the record key). Payloads are plain JSON; ids are strings with a
//! type prefix (`usr_`, `ord_`, `pay_`, ...); money is integer minor units
//! plus an ISO 4217 currency; times are RFC 3339 UTC.

use chrono::{DateTime, Utc};
use kit::cloudevents::{CloudEvent, new_event_id};
use kit::telemetry::TraceParent;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::topics;

/// An amount of money on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Money {
    pub amount_minor: i64,
    /// ISO 4217, upper case.
    pub currency: String,
}

/// A contract type that travels as a CloudEvent.
pub trait Event: Serialize + DeserializeOwned {
    /// The CloudEvents `type`.
    const TYPE: &'static str;
    /// The topic it is published to.
    const TOPIC: &'static str;

    /// The aggregate id: CloudEvents `subject` and record key.
    fn subject(&self) -> String;

    /// Wraps the payload in a new CloudEvent from `source` (e.g.
    /// `/kart/orders`), in the trace of the work that caused it.
    fn to_cloud_event(&self, source: &str, trace: Option<TraceParent>) -> CloudEvent {
        CloudEvent {
            id: new_event_id(),
            event_type: Self::TYPE.to_owned(),
            source: source.to_owned(),
            subject: self.subject(),
            time: Utc::now(),
            traceparent: trace.map(|t| t.child()),
            // Serialising these plain structs to JSON cannot fail.
            data: serde_json::to_vec(self).unwrap_or_default(),
        }
    }

    /// Reads the payload of a CloudEvent of this type.
    fn decode(event: &CloudEvent) -> Result<Self, DecodeError> {
        if event.event_type != Self::TYPE {
            return Err(DecodeError::WrongType {
                expected: Self::TYPE,
                found: event.event_type.clone(),
            });
        }
        serde_json::from_slice(&event.data).map_err(|e| DecodeError::Payload {
            event_type: Self::TYPE,
            reason: e.to_string(),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("expected a {expected} event, got {found}")]
    WrongType {
        expected: &'static str,
        found: String,
    },
    #[error("malformed {event_type} payload: {reason}")]
    Payload {
        event_type: &'static str,
        reason: String,
    },
}

macro_rules! event {
    ($name:ident, $type:literal, $topic:expr, |$this:ident| $subject:expr) => {
        impl Event for $name {
            const TYPE: &'static str = $type;
            const TOPIC: &'static str = $topic;
            fn subject(&self) -> String {
                let $this = self;
                $subject.clone()
            }
        }
    };
}

// ---- users -----------------------------------------------------------------

/// A new account exists (the welcome mail is sent from this).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRegisteredV1 {
    pub user_id: String,
    pub email: String,
    pub display_name: String,
    pub registered_at: DateTime<Utc>,
}
event!(
    UserRegisteredV1,
    "kart.user.registered.v1",
    topics::USER_EVENTS,
    |e| e.user_id
);

// ---- catalog ---------------------------------------------------------------

/// A product was created or changed (name, price, status).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductChangedV1 {
    pub product_id: String,
    pub sku: String,
    pub name: String,
    pub price: Money,
    pub category: String,
    pub active: bool,
}
event!(
    ProductChangedV1,
    "kart.product.changed.v1",
    topics::PRODUCT_EVENTS,
    |e| e.product_id
);

// ---- orders ----------------------------------------------------------------

/// One line of an order, priced by the server from the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLineV1 {
    pub sku: String,
    pub quantity: u32,
    pub unit_price: Money,
}

/// How the shopper pays.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PaymentChoiceV1 {
    /// Charge a saved payment method once stock is reserved.
    SavedMethod { payment_method_id: String },
    /// The shopper pays through the provider's hosted checkout.
    Checkout,
}

/// An order was accepted (`PENDING`); inventory reserves its stock next.
/// The seeds' `order.create`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderCreatedV1 {
    pub order_id: String,
    pub user_id: String,
    pub lines: Vec<OrderLineV1>,
    pub total: Money,
    pub payment: PaymentChoiceV1,
    pub created_at: DateTime<Utc>,
}
event!(
    OrderCreatedV1,
    "kart.order.created.v1",
    topics::ORDER_EVENTS,
    |e| e.order_id
);

/// What one step did to an order, as the order's history and its money
/// stand after it. An order's status events carry it so that a reader
/// holding the order as it was (the gateway's live status stream) can bring
/// its copy up to date without asking the orders service again: the step
/// is the history entry `seq`, and a copy whose history ends at `seq - 1`
/// is current once it appends the entry and takes the money and failure
/// code given here. A copy that ends anywhere else missed a step (history
/// notes, a refund confirmed, carry no event) and must read the order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderChangeV1 {
    /// The history entry's number: 1 is the order's creation, and every
    /// entry after it, status change or note, is the next number.
    pub seq: u64,
    pub from_status: String,
    pub to_status: String,
    /// Stable, as in the order's history (`stock_reserved`, ...).
    pub cause: String,
    pub detail: String,
    /// When the step happened; the order's `updated_at` after it.
    pub at: DateTime<Utc>,
    /// Why the order failed; empty unless it has.
    pub failure_code: String,
    pub captured: Money,
    pub refunded: Money,
    pub refund_pending: Money,
}

/// The [`OrderChangeV1`] an order event's payload carries under `change`,
/// whatever the event's type; `None` for one without it (a refund request,
/// or an event from before the field existed).
pub fn carried_order_change(payload: &[u8]) -> Option<OrderChangeV1> {
    #[derive(Deserialize)]
    struct Carrier {
        #[serde(default)]
        change: Option<OrderChangeV1>,
    }
    serde_json::from_slice::<Carrier>(payload).ok()?.change
}

/// Stock is reserved (`RESERVED`); the order asks for payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderPaymentRequestedV1 {
    pub order_id: String,
    pub user_id: String,
    pub amount: Money,
    pub payment: PaymentChoiceV1,
    /// The step, for readers that keep a copy of the order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<OrderChangeV1>,
}
event!(
    OrderPaymentRequestedV1,
    "kart.order.payment_requested.v1",
    topics::ORDER_EVENTS,
    |e| e.order_id
);

/// The order is paid (`PAID`): stock is committed, the confirmation mailed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderPaidV1 {
    pub order_id: String,
    pub user_id: String,
    pub total: Money,
    pub paid_at: DateTime<Utc>,
    /// The step, for readers that keep a copy of the order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<OrderChangeV1>,
}
event!(
    OrderPaidV1,
    "kart.order.paid.v1",
    topics::ORDER_EVENTS,
    |e| e.order_id
);

/// The order was cancelled (`CANCELLED`); stock is released, a capture refunded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderCancelledV1 {
    pub order_id: String,
    pub user_id: String,
    pub reason: String,
    pub cancelled_at: DateTime<Utc>,
    /// The step, for readers that keep a copy of the order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<OrderChangeV1>,
}
event!(
    OrderCancelledV1,
    "kart.order.cancelled.v1",
    topics::ORDER_EVENTS,
    |e| e.order_id
);

/// The order failed (`FAILED`): out of stock, payment declined, timed out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderFailedV1 {
    pub order_id: String,
    pub user_id: String,
    /// Stable: `out_of_stock`, `payment_declined`, `payment_timeout`, ...
    pub code: String,
    pub reason: String,
    pub failed_at: DateTime<Utc>,
    /// The step, for readers that keep a copy of the order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<OrderChangeV1>,
}
event!(
    OrderFailedV1,
    "kart.order.failed.v1",
    topics::ORDER_EVENTS,
    |e| e.order_id
);

/// An admin shipped the order (`FULFILLED`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderFulfilledV1 {
    pub order_id: String,
    pub user_id: String,
    pub fulfilled_at: DateTime<Utc>,
    /// The step, for readers that keep a copy of the order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<OrderChangeV1>,
}
event!(
    OrderFulfilledV1,
    "kart.order.fulfilled.v1",
    topics::ORDER_EVENTS,
    |e| e.order_id
);

/// A refund of (part of) a captured payment is wanted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundRequestedV1 {
    pub order_id: String,
    pub refund_request_id: String,
    pub amount: Money,
    pub reason: String,
    /// The step (the history note that asks the money back), for readers
    /// that keep a copy of the order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<OrderChangeV1>,
}
event!(
    RefundRequestedV1,
    "kart.order.refund_requested.v1",
    topics::ORDER_EVENTS,
    |e| e.order_id
);

/// The order recorded money given back: its copy of a payment's
/// [`RefundIssuedV1`], on the order's own topic, so a reader of orders (the
/// live status stream) hears of the refund with the step it wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRefundedV1 {
    pub order_id: String,
    pub user_id: String,
    pub amount: Money,
    pub refunded_at: DateTime<Utc>,
    /// The step (the history note of the refund), for readers that keep a
    /// copy of the order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<OrderChangeV1>,
}
event!(
    OrderRefundedV1,
    "kart.order.refunded.v1",
    topics::ORDER_EVENTS,
    |e| e.order_id
);

// ---- inventory -------------------------------------------------------------

/// Every line of the order is held until `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockReservedV1 {
    pub order_id: String,
    pub expires_at: DateTime<Utc>,
}
event!(
    StockReservedV1,
    "kart.inventory.reserved.v1",
    topics::INVENTORY_EVENTS,
    |e| e.order_id
);

/// A line that could not be reserved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShortLineV1 {
    pub sku: String,
    pub requested: u32,
    pub available: u32,
}

/// Nothing was reserved: some line was short (or its SKU unknown).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockRejectedV1 {
    pub order_id: String,
    pub short: Vec<ShortLineV1>,
}
event!(
    StockRejectedV1,
    "kart.inventory.rejected.v1",
    topics::INVENTORY_EVENTS,
    |e| e.order_id
);

/// The reservation was given back (cancelled, failed, expired).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockReleasedV1 {
    pub order_id: String,
    pub reason: String,
}
event!(
    StockReleasedV1,
    "kart.inventory.released.v1",
    topics::INVENTORY_EVENTS,
    |e| e.order_id
);

/// The reservation became a sale: stock left the warehouse's books.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockCommittedV1 {
    pub order_id: String,
}
event!(
    StockCommittedV1,
    "kart.inventory.committed.v1",
    topics::INVENTORY_EVENTS,
    |e| e.order_id
);

// ---- payments --------------------------------------------------------------

/// The payment was captured. At most one per order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentCapturedV1 {
    pub order_id: String,
    pub payment_id: String,
    pub amount: Money,
    pub provider: String,
    pub captured_at: DateTime<Utc>,
}
event!(
    PaymentCapturedV1,
    "kart.payment.captured.v1",
    topics::PAYMENT_EVENTS,
    |e| e.order_id
);

/// The payment failed; `code` is stable (`card_declined`, `insufficient_funds`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentFailedV1 {
    pub order_id: String,
    pub payment_id: String,
    pub code: String,
    pub reason: String,
}
event!(
    PaymentFailedV1,
    "kart.payment.failed.v1",
    topics::PAYMENT_EVENTS,
    |e| e.order_id
);

/// Money went back to the shopper.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundIssuedV1 {
    pub order_id: String,
    pub payment_id: String,
    pub refund_id: String,
    pub amount: Money,
    pub issued_at: DateTime<Utc>,
}
event!(
    RefundIssuedV1,
    "kart.payment.refund_issued.v1",
    topics::PAYMENT_EVENTS,
    |e| e.order_id
);

// ---- notifications ---------------------------------------------------------

/// A message could not be delivered after its last try. The
/// `notification.dlq` topic; `kart dlq replay` sends it again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotificationDeadLetteredV1 {
    pub message_id: String,
    /// `welcome`, `order_confirmed`, `payment_failed`, `order_cancelled`, `refund_issued`.
    pub kind: String,
    pub user_id: String,
    /// Empty for a message not about an order.
    pub order_id: String,
    /// The last failure.
    pub error: String,
    pub attempts: u32,
    pub dead_at: DateTime<Utc>,
    /// The event the message was made from, in CloudEvents JSON format.
    pub original_event: serde_json::Value,
}
impl Event for NotificationDeadLetteredV1 {
    const TYPE: &'static str = "kart.notification.dead_lettered.v1";
    const TOPIC: &'static str = topics::NOTIFICATION_DLQ;
    fn subject(&self) -> String {
        self.message_id.clone()
    }
}

/// Every event type with its topic, for documentation and checks.
pub const ALL: &[(&str, &str)] = &[
    (UserRegisteredV1::TYPE, UserRegisteredV1::TOPIC),
    (ProductChangedV1::TYPE, ProductChangedV1::TOPIC),
    (OrderCreatedV1::TYPE, OrderCreatedV1::TOPIC),
    (
        OrderPaymentRequestedV1::TYPE,
        OrderPaymentRequestedV1::TOPIC,
    ),
    (OrderPaidV1::TYPE, OrderPaidV1::TOPIC),
    (OrderCancelledV1::TYPE, OrderCancelledV1::TOPIC),
    (OrderFailedV1::TYPE, OrderFailedV1::TOPIC),
    (OrderFulfilledV1::TYPE, OrderFulfilledV1::TOPIC),
    (RefundRequestedV1::TYPE, RefundRequestedV1::TOPIC),
    (OrderRefundedV1::TYPE, OrderRefundedV1::TOPIC),
    (StockReservedV1::TYPE, StockReservedV1::TOPIC),
    (StockRejectedV1::TYPE, StockRejectedV1::TOPIC),
    (StockReleasedV1::TYPE, StockReleasedV1::TOPIC),
    (StockCommittedV1::TYPE, StockCommittedV1::TOPIC),
    (PaymentCapturedV1::TYPE, PaymentCapturedV1::TOPIC),
    (PaymentFailedV1::TYPE, PaymentFailedV1::TOPIC),
    (RefundIssuedV1::TYPE, RefundIssuedV1::TOPIC),
];

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn eur(amount_minor: i64) -> Money {
        Money {
            amount_minor,
            currency: "EUR".into(),
        }
    }

    #[test]
    fn an_event_round_trips_through_a_cloudevent() {
        let created = OrderCreatedV1 {
            order_id: "ord_1".into(),
            user_id: "usr_1".into(),
            lines: vec![OrderLineV1 {
                sku: "TEA-001".into(),
                quantity: 2,
                unit_price: eur(450),
            }],
            total: eur(900),
            payment: PaymentChoiceV1::SavedMethod {
                payment_method_id: "pm_1".into(),
            },
            created_at: Utc::now(),
        };
        let trace = TraceParent::new_root();
        let event = created.to_cloud_event("/kart/orders", Some(trace));
        assert_eq!(event.event_type, "kart.order.created.v1");
        assert_eq!(event.subject, "ord_1");
        assert_eq!(
            event.traceparent.map(|t| t.trace_id()),
            Some(trace.trace_id())
        );
        assert_eq!(OrderCreatedV1::decode(&event).unwrap(), created);
    }

    #[test]
    fn the_step_an_order_event_carries_is_read_whatever_its_type() {
        let step = OrderChangeV1 {
            seq: 3,
            from_status: "RESERVED".into(),
            to_status: "PAID".into(),
            cause: "payment_captured".into(),
            detail: String::new(),
            at: Utc::now(),
            failure_code: String::new(),
            captured: eur(900),
            refunded: eur(0),
            refund_pending: eur(0),
        };
        let paid = OrderPaidV1 {
            order_id: "ord_1".into(),
            user_id: "usr_1".into(),
            total: eur(900),
            paid_at: step.at,
            change: Some(step.clone()),
        };
        let event = paid.to_cloud_event("/kart/orders", None);
        assert_eq!(carried_order_change(&event.data), Some(step));
        assert_eq!(OrderPaidV1::decode(&event).unwrap(), paid);

        // Without a step (an older event, a refund request): none, and the
        // field is left out of the payload rather than written as null.
        let without = OrderPaidV1 {
            change: None,
            ..paid
        }
        .to_cloud_event("/kart/orders", None);
        assert!(!String::from_utf8_lossy(&without.data).contains("change"));
        assert_eq!(carried_order_change(&without.data), None);
        assert_eq!(carried_order_change(b"not json"), None);
    }

    #[test]
    fn decoding_the_wrong_type_is_refused() {
        let event = StockCommittedV1 {
            order_id: "ord_1".into(),
        }
        .to_cloud_event("/kart/inventory", None);
        let error = OrderPaidV1::decode(&event).unwrap_err();
        assert!(error.to_string().contains("kart.order.paid.v1"));
    }

    #[test]
    fn a_malformed_payload_is_refused_with_the_reason() {
        let mut event = StockCommittedV1 {
            order_id: "ord_1".into(),
        }
        .to_cloud_event("/kart/inventory", None);
        event.data = b"{}".to_vec();
        let error = StockCommittedV1::decode(&event).unwrap_err();
        assert!(error.to_string().contains("order_id"), "{error}");
    }

    #[test]
    fn event_types_are_unique_versioned_and_on_a_domain_topic() {
        let mut seen = HashSet::new();
        for (event_type, topic) in ALL {
            assert!(seen.insert(*event_type), "{event_type} twice");
            assert!(event_type.starts_with("kart."), "{event_type}");
            assert!(
                event_type.rsplit('.').next().unwrap().starts_with('v'),
                "{event_type}"
            );
            assert!(topics::DOMAIN_TOPICS.contains(topic), "{topic}");
        }
    }

    #[test]
    fn the_asyncapi_document_lists_every_topic_and_event() {
        let document = include_str!("../asyncapi.yaml");
        for (event_type, topic) in ALL {
            assert!(
                document.contains(event_type),
                "asyncapi.yaml lacks {event_type}"
            );
            assert!(document.contains(topic), "asyncapi.yaml lacks {topic}");
        }
        assert!(document.contains(topics::NOTIFICATION_DLQ));
        assert!(document.contains(NotificationDeadLetteredV1::TYPE));
    }
}
