//! What notifications does with the events it reads: it remembers what a
//! message will need (who a user is, what a product is called, what an
//! order held) and queues a message for each event a shopper should hear
//! about. Sending is the sender's job ([`crate::delivery`]); queueing here,
//! in the consumer's transaction, is what makes a message exactly once:
//! the inbox skips a redelivered event, and each message's dedupe key
//! (`order_confirmed:ord_…`) skips the same fact arriving as another event.

use async_trait::async_trait;
use contracts::Event;
use contracts::events::{
    OrderCancelledV1, OrderCreatedV1, OrderPaidV1, PaymentFailedV1, ProductChangedV1,
    RefundIssuedV1, UserRegisteredV1,
};
use kit::cloudevents::CloudEvent;
use kit::consumer::{Handler, HandlerError};
use kit::db::Tx;
use serde_json::json;

use crate::store::{self, NewMessage};
use crate::templates::Kind;

fn reject(error: impl std::fmt::Display) -> HandlerError {
    HandlerError::Reject(anyhow::anyhow!("{error}"))
}

/// The handler of the `notifications` consumer group.
pub struct MailEvents {
    /// Tries a new message gets before it becomes a dead letter.
    pub max_attempts: u32,
}

impl MailEvents {
    /// A message of `kind` about `about` (what makes it unique: an order,
    /// a payment, a refund, a user), made from `event`.
    fn message<'a>(&self, event: &'a CloudEvent, kind: Kind, about: &str) -> NewMessage<'a> {
        NewMessage {
            dedupe_key: format!("{}:{about}", kind.as_str()),
            kind,
            user_id: String::new(),
            order_id: String::new(),
            facts: json!({}),
            source: event,
            max_attempts: self.max_attempts,
        }
    }
}

async fn queue(tx: &mut Tx, message: NewMessage<'_>) -> Result<(), HandlerError> {
    if !store::queue_message(tx, &message).await? {
        tracing::debug!(key = %message.dedupe_key, "message already queued");
    }
    Ok(())
}

#[async_trait]
impl Handler for MailEvents {
    async fn handle(&self, tx: &mut Tx, event: &CloudEvent) -> Result<(), HandlerError> {
        match event.event_type.as_str() {
            UserRegisteredV1::TYPE => {
                let user = UserRegisteredV1::decode(event).map_err(reject)?;
                store::remember_recipient(tx, &user.user_id, &user.email, &user.display_name)
                    .await?;
                let message = NewMessage {
                    user_id: user.user_id.clone(),
                    ..self.message(event, Kind::Welcome, &user.user_id)
                };
                queue(tx, message).await?;
            }
            ProductChangedV1::TYPE => {
                let product = ProductChangedV1::decode(event).map_err(reject)?;
                store::remember_product(tx, &product.sku, &product.name).await?;
            }
            OrderCreatedV1::TYPE => {
                let order = OrderCreatedV1::decode(event).map_err(reject)?;
                store::remember_order(tx, &order).await?;
            }
            OrderPaidV1::TYPE => {
                let paid = OrderPaidV1::decode(event).map_err(reject)?;
                let message = NewMessage {
                    user_id: paid.user_id.clone(),
                    order_id: paid.order_id.clone(),
                    facts: json!({"total": paid.total, "paid_at": paid.paid_at}),
                    ..self.message(event, Kind::OrderConfirmed, &paid.order_id)
                };
                queue(tx, message).await?;
            }
            OrderCancelledV1::TYPE => {
                let cancelled = OrderCancelledV1::decode(event).map_err(reject)?;
                let message = NewMessage {
                    user_id: cancelled.user_id.clone(),
                    order_id: cancelled.order_id.clone(),
                    facts: json!({"reason": cancelled.reason}),
                    ..self.message(event, Kind::OrderCancelled, &cancelled.order_id)
                };
                queue(tx, message).await?;
            }
            PaymentFailedV1::TYPE => {
                let failed = PaymentFailedV1::decode(event).map_err(reject)?;
                // One mail per failed payment attempt; the user is found
                // from the order when the message is written.
                let message = NewMessage {
                    order_id: failed.order_id.clone(),
                    facts: json!({"code": failed.code, "reason": failed.reason}),
                    ..self.message(event, Kind::PaymentFailed, &failed.payment_id)
                };
                queue(tx, message).await?;
            }
            RefundIssuedV1::TYPE => {
                let refund = RefundIssuedV1::decode(event).map_err(reject)?;
                let message = NewMessage {
                    order_id: refund.order_id.clone(),
                    facts: json!({"amount": refund.amount}),
                    ..self.message(event, Kind::RefundIssued, &refund.refund_id)
                };
                queue(tx, message).await?;
            }
            // Reservations, payment requests, captures, fulfilment: no mail.
            _ => {}
        }
        Ok(())
    }
}
