//! The payments service's gRPC API: tokenise a card; the hosted checkout
//! (read it, pay on it); provider webhooks.

use std::sync::Arc;

use chrono::{Datelike, Utc};
use contracts::grpc::payments::v1 as pb;
use kit::db::Db;
use kit::outbox::OutboxSignal;
use kit::problem::{Problem, StatusCode, internal_status};
use secrecy::{ExposeSecret, SecretString};
use sqlx::Row;
use tonic::{Request, Response, Status};

use crate::card::CardInput;
use crate::provider::{ChargeOutcome, ChargeRequest, PaymentProvider};
use crate::webhooks::{self, CheckoutEvent};

#[derive(Clone)]
pub struct PaymentsApi {
    pub provider: Arc<dyn PaymentProvider>,
    pub db: Db,
    pub outbox: OutboxSignal,
    /// Signs the simulated provider's webhooks (its page's outcomes).
    pub webhook_secret: SecretString,
}

fn card(number: &str, exp_month: u32, exp_year: u32, cvc: &str) -> Result<CardInput, Problem> {
    let today = Utc::now();
    CardInput::parse(
        number,
        exp_month,
        exp_year,
        cvc,
        (today.year() as u32, today.month()),
    )
}

impl PaymentsApi {
    /// The checkout of the caller's order, with how it stands.
    async fn checkout(&self, order_id: &str, user_id: &str) -> Result<pb::Checkout, Status> {
        let session = sqlx::query(
            "SELECT user_id, amount_minor, currency, url FROM checkout_sessions WHERE order_id = $1",
        )
        .bind(order_id)
        .fetch_optional(&mut *self.db.write().await.map_err(internal_status)?)
        .await
        .map_err(internal_status)?
        .filter(|row| row.try_get::<String, _>("user_id").ok().as_deref() == Some(user_id))
        .ok_or_else(|| {
            Status::from(Problem::not_found(
                "No checkout is open for this order yet.",
            ))
        })?;
        let payment = sqlx::query("SELECT status, failure_code FROM payments WHERE order_id = $1")
            .bind(order_id)
            .fetch_optional(&mut *self.db.write().await.map_err(internal_status)?)
            .await
            .map_err(internal_status)?;
        let (status, failure_code) = match payment {
            None => ("open".to_owned(), String::new()),
            Some(row) => {
                let status: String = row.try_get("status").map_err(internal_status)?;
                let code: String = row.try_get("failure_code").map_err(internal_status)?;
                let status = if status == "captured" {
                    "paid"
                } else {
                    "failed"
                };
                (status.to_owned(), code)
            }
        };
        Ok(pb::Checkout {
            order_id: order_id.to_owned(),
            status,
            amount_minor: session.try_get("amount_minor").map_err(internal_status)?,
            currency: session.try_get("currency").map_err(internal_status)?,
            failure_code,
            url: session.try_get("url").map_err(internal_status)?,
        })
    }

    /// Applies a webhook's payload, read and verified by the provider.
    async fn apply_webhook(&self, payload: &[u8], signature: &str) -> Result<bool, Problem> {
        match self
            .provider
            .read_webhook(payload, signature, Utc::now().timestamp())?
        {
            Some(event) => {
                webhooks::apply_checkout_event(&self.db, &self.outbox, self.provider.name(), &event)
                    .await
            }
            None => Ok(false),
        }
    }
}

#[tonic::async_trait]
impl pb::payments_server::Payments for PaymentsApi {
    async fn tokenize_card(
        &self,
        request: Request<pb::TokenizeCardRequest>,
    ) -> Result<Response<pb::TokenizedCard>, Status> {
        let input = request.into_inner();
        let card = card(
            &input.card_number,
            input.exp_month,
            input.exp_year,
            &input.cvc,
        )?;
        let tokenized = self.provider.tokenize_card(card, &input.user_id).await?;
        tracing::info!(
            user_id = %input.user_id,
            provider = tokenized.provider,
            brand = %tokenized.brand,
            last4 = %tokenized.last4,
            "card tokenised"
        );
        Ok(Response::new(pb::TokenizedCard {
            provider: tokenized.provider.to_owned(),
            provider_token: tokenized.token,
            brand: tokenized.brand,
            last4: tokenized.last4,
            exp_month: tokenized.exp_month,
            exp_year: tokenized.exp_year,
        }))
    }

    async fn get_checkout(
        &self,
        request: Request<pb::CheckoutRef>,
    ) -> Result<Response<pb::Checkout>, Status> {
        let input = request.into_inner();
        Ok(Response::new(
            self.checkout(&input.order_id, &input.user_id).await?,
        ))
    }

    /// The simulated provider's hosted page: the card is charged here, and
    /// the outcome goes to Kart as the provider's signed webhook, through
    /// the same verification as one arriving over HTTP.
    async fn pay_checkout(
        &self,
        request: Request<pb::PayCheckoutRequest>,
    ) -> Result<Response<pb::Checkout>, Status> {
        let input = request.into_inner();
        let current = self.checkout(&input.order_id, &input.user_id).await?;
        if current.status != "open" {
            return Ok(Response::new(current));
        }
        if !current.url.is_empty() {
            return Err(Problem::new(
                StatusCode::CONFLICT,
                "checkout_elsewhere",
                "This checkout is paid on the payment provider's page.",
            )
            .into());
        }
        let card = card(
            &input.card_number,
            input.exp_month,
            input.exp_year,
            &input.cvc,
        )?;
        let tokenized = self.provider.tokenize_card(card, &input.user_id).await?;
        let charge = ChargeRequest {
            order_id: input.order_id.clone(),
            token: tokenized.token,
            amount_minor: current.amount_minor,
            currency: current.currency.clone(),
            idempotency_key: format!("kart-order-{}-charge", input.order_id),
        };
        let outcome = self
            .provider
            .charge(&charge)
            .await
            .map_err(|e| Status::from(Problem::unavailable(e.to_string())))?;
        let event = match outcome {
            ChargeOutcome::Captured { reference } => CheckoutEvent {
                id: format!("evt_sim_{reference}"),
                kind: webhooks::COMPLETED.to_owned(),
                order_id: input.order_id.clone(),
                amount_minor: current.amount_minor,
                currency: current.currency.clone(),
                reference,
                failure_code: String::new(),
                reason: String::new(),
            },
            ChargeOutcome::Declined { code, reason } => CheckoutEvent {
                id: kit::new_id("evt_sim"),
                kind: webhooks::FAILED.to_owned(),
                order_id: input.order_id.clone(),
                amount_minor: current.amount_minor,
                currency: current.currency.clone(),
                reference: String::new(),
                failure_code: code,
                reason,
            },
        };
        let payload = serde_json::to_vec(&event).map_err(internal_status)?;
        let secret = self.webhook_secret.expose_secret().as_bytes();
        let signature = webhooks::sign(secret, Utc::now().timestamp(), &payload);
        self.apply_webhook(&payload, &signature).await?;
        Ok(Response::new(
            self.checkout(&input.order_id, &input.user_id).await?,
        ))
    }

    async fn handle_webhook(
        &self,
        request: Request<pb::WebhookRequest>,
    ) -> Result<Response<pb::WebhookResponse>, Status> {
        let input = request.into_inner();
        if input.provider != self.provider.name() {
            return Err(Problem::not_found(format!(
                "No webhook endpoint for the `{}` provider here: this Kart takes payments with `{}`.",
                input.provider,
                self.provider.name()
            ))
            .into());
        }
        let applied = self.apply_webhook(&input.payload, &input.signature).await?;
        Ok(Response::new(pb::WebhookResponse { applied }))
    }

    async fn verify_checkout(
        &self,
        request: Request<pb::CheckoutRef>,
    ) -> Result<Response<pb::Checkout>, Status> {
        let input = request.into_inner();
        let current = self.checkout(&input.order_id, &input.user_id).await?;
        if current.status != "open" {
            return Ok(Response::new(current));
        }
        let session_id: String = sqlx::query_scalar(
            "SELECT provider_session_id FROM checkout_sessions WHERE order_id = $1",
        )
        .bind(&input.order_id)
        .fetch_one(&mut *self.db.write().await.map_err(internal_status)?)
        .await
        .map_err(internal_status)?;
        if session_id.is_empty() {
            return Ok(Response::new(current));
        }
        let outcome = self
            .provider
            .checkout_outcome(&session_id)
            .await
            .map_err(|e| Status::from(Problem::unavailable(e.to_string())))?;
        if let Some(event) = outcome {
            webhooks::apply_checkout_event(&self.db, &self.outbox, self.provider.name(), &event)
                .await?;
        }
        Ok(Response::new(
            self.checkout(&input.order_id, &input.user_id).await?,
        ))
    }
}
