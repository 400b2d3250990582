//! Provider webhooks: signed, deduplicated by the provider's event id, and
//! safe in any order. Each provider reads its own webhooks into a
//! [`CheckoutEvent`]; applying one is the same for all.
//!
//! The signature is Stripe's scheme: the header `t=<unix secs>,v1=<hex>`
//! where the hex is HMAC-SHA256 of `"<t>.<payload>"` under the endpoint's
//! secret, and `t` must be within [`TOLERANCE_SECS`] of now (an old,
//! captured webhook cannot be replayed later). The simulated provider signs
//! its own webhooks the same way.

use chrono::Utc;
use contracts::Event;
use contracts::events::{Money, PaymentCapturedV1, PaymentFailedV1};
use hmac::{Hmac, Mac};
use kit::db::{Db, Tx, now_millis};
use kit::outbox::{self, OutboxSignal};
use kit::problem::{Problem, StatusCode};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// How far a signature's timestamp may be from now.
pub const TOLERANCE_SECS: i64 = 300;
const SOURCE: &str = "/kart/payments";

/// How a hosted checkout ended, whichever provider reports it (the
/// simulated provider's webhooks are exactly this JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckoutEvent {
    /// The provider's event id: the same event delivered twice has one id.
    pub id: String,
    /// `checkout.completed` or `checkout.failed`.
    #[serde(rename = "type")]
    pub kind: String,
    pub order_id: String,
    pub amount_minor: i64,
    pub currency: String,
    /// The charge, for a completed checkout.
    #[serde(default)]
    pub reference: String,
    /// Why, for a failed one.
    #[serde(default)]
    pub failure_code: String,
    #[serde(default)]
    pub reason: String,
}

pub const COMPLETED: &str = "checkout.completed";
pub const FAILED: &str = "checkout.failed";

/// The MAC of `"<timestamp>.<payload>"`; `None` only for a key HMAC
/// refuses, which (HMAC taking keys of any length) does not happen.
fn mac(secret: &[u8], timestamp: i64, payload: &[u8]) -> Option<Hmac<Sha256>> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).ok()?;
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(payload);
    Some(mac)
}

/// The signature header for `payload` at `timestamp` (unix seconds).
pub fn sign(secret: &[u8], timestamp: i64, payload: &[u8]) -> String {
    let digest = mac(secret, timestamp, payload)
        .map(|m| hex::encode(m.finalize().into_bytes()))
        .unwrap_or_default();
    format!("t={timestamp},v1={digest}")
}

fn invalid(detail: &str) -> Problem {
    Problem::new(StatusCode::BAD_REQUEST, "invalid_signature", detail).with_field("signature")
}

/// Checks a signature header against `payload`; constant-time comparison.
pub fn verify(secret: &[u8], header: &str, payload: &[u8], now_secs: i64) -> Result<(), Problem> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
            Some(("v1", v)) => signatures.push(v),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or_else(|| invalid("The signature has no timestamp."))?;
    if (now_secs - timestamp).abs() > TOLERANCE_SECS {
        return Err(invalid("The signature is too old (or from the future)."));
    }
    let ok = signatures.iter().any(|candidate| {
        hex::decode(candidate)
            .ok()
            .zip(mac(secret, timestamp, payload))
            .is_some_and(|(bytes, mac)| mac.verify_slice(&bytes).is_ok())
    });
    if ok {
        Ok(())
    } else {
        Err(invalid("The signature does not match the payload."))
    }
}

/// Applies a checkout outcome (from a verified webhook or the verify
/// call). Returns false when its event id was seen before. A second,
/// different outcome for an order whose payment is already settled changes
/// nothing: the first one wins.
pub async fn apply_checkout_event(
    db: &Db,
    outbox: &OutboxSignal,
    provider: &str,
    event: &CheckoutEvent,
) -> Result<bool, Problem> {
    let internal = |e: sqlx::Error| Problem::internal(&e);
    let mut tx = db.begin().await.map_err(internal)?;
    let first = sqlx::query(
        "INSERT INTO provider_events (provider, event_id, received_at) VALUES ($1, $2, $3)
         ON CONFLICT (provider, event_id) DO NOTHING",
    )
    .bind(provider)
    .bind(&event.id)
    .bind(now_millis())
    .execute(&mut *tx)
    .await
    .map_err(internal)?
    .rows_affected()
        == 1;
    if !first {
        return Ok(false);
    }
    let session: Option<String> =
        sqlx::query_scalar("SELECT user_id FROM checkout_sessions WHERE order_id = $1")
            .bind(&event.order_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(internal)?;
    let Some(user_id) = session else {
        return Err(Problem::validation(
            "order_id",
            "No checkout is open for this order.",
        ));
    };
    let settled: Option<String> =
        sqlx::query_scalar("SELECT status FROM payments WHERE order_id = $1")
            .bind(&event.order_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(internal)?;
    if settled.is_none() {
        settle(&mut tx, provider, event, &user_id)
            .await
            .map_err(internal)?;
    }
    tx.commit().await.map_err(internal)?;
    outbox.notify();
    Ok(true)
}

async fn settle(
    tx: &mut Tx,
    provider: &str,
    event: &CheckoutEvent,
    user_id: &str,
) -> Result<(), sqlx::Error> {
    let payment_id = kit::new_id("pay");
    let captured = event.kind == COMPLETED;
    sqlx::query(
        "INSERT INTO payments (id, order_id, user_id, amount_minor, currency, status,
                               provider, provider_ref, failure_code, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(&payment_id)
    .bind(&event.order_id)
    .bind(user_id)
    .bind(event.amount_minor)
    .bind(&event.currency)
    .bind(if captured { "captured" } else { "failed" })
    .bind(provider)
    .bind(&event.reference)
    .bind(&event.failure_code)
    .bind(now_millis())
    .execute(&mut **tx)
    .await?;
    let record = if captured {
        PaymentCapturedV1 {
            order_id: event.order_id.clone(),
            payment_id,
            amount: Money {
                amount_minor: event.amount_minor,
                currency: event.currency.clone(),
            },
            provider: provider.to_owned(),
            captured_at: Utc::now(),
        }
        .to_cloud_event(SOURCE, None)
        .to_record(PaymentCapturedV1::TOPIC)
    } else {
        PaymentFailedV1 {
            order_id: event.order_id.clone(),
            payment_id,
            code: event.failure_code.clone(),
            reason: event.reason.clone(),
        }
        .to_cloud_event(SOURCE, None)
        .to_record(PaymentFailedV1::TOPIC)
    };
    outbox::enqueue_record(tx, &record)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_only_for_their_payload_secret_and_time() {
        let payload = br#"{"id":"evt_1"}"#;
        let header = sign(b"secret", 1_000, payload);
        assert!(verify(b"secret", &header, payload, 1_000).is_ok());
        assert!(verify(b"secret", &header, payload, 1_000 + TOLERANCE_SECS).is_ok());
        for (secret, body, now) in [
            (&b"other"[..], &payload[..], 1_000),
            (&b"secret"[..], &br#"{"id":"evt_2"}"#[..], 1_000),
            (&b"secret"[..], &payload[..], 1_000 + TOLERANCE_SECS + 1),
        ] {
            let refused = verify(secret, &header, body, now).unwrap_err();
            assert_eq!(refused.code, "invalid_signature");
        }
        assert!(verify(b"secret", "v1=abc", payload, 1_000).is_err());
        assert!(verify(b"secret", "t=1000,v1=zz", payload, 1_000).is_err());
    }
}
