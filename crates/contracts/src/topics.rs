//! Topic names: `<domain>.events`, keyed by aggregate id so one aggregate's
//! events stay in order, plus `notification.dlq`.
//!
//! The seeds' topic names map here: `order.create` is [`ORDER_EVENTS`]
//! (`kart.order.created.v1`), `payment.event` is [`PAYMENT_EVENTS`].

pub const USER_EVENTS: &str = "user.events";
pub const PRODUCT_EVENTS: &str = "product.events";
pub const INVENTORY_EVENTS: &str = "inventory.events";
pub const ORDER_EVENTS: &str = "order.events";
pub const PAYMENT_EVENTS: &str = "payment.events";
/// Notifications that could not be delivered, with the error and attempts.
pub const NOTIFICATION_DLQ: &str = "notification.dlq";

/// Every domain topic, for services (analytics) that read them all.
pub const DOMAIN_TOPICS: &[&str] = &[
    USER_EVENTS,
    PRODUCT_EVENTS,
    INVENTORY_EVENTS,
    ORDER_EVENTS,
    PAYMENT_EVENTS,
];

/// The dead-letter topic of a service that is not notifications.
pub fn dead_letter_topic(service: &str) -> String {
    if service == "notifications" {
        NOTIFICATION_DLQ.to_owned()
    } else {
        format!("{service}.dlq")
    }
}
