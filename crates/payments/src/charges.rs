//! Paying for orders and refunding them, on order events.
//!
//! No double charge: a payment row per order (unique), written in the
//! same transaction as the event that reports it, and the provider called
//! with an idempotency key derived from the order. A crash between the
//! provider's answer and the commit replays the same call, which the
//! provider answers with the same charge.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use contracts::Event;
use contracts::events::{
    Money, OrderPaymentRequestedV1, PaymentCapturedV1, PaymentChoiceV1, PaymentFailedV1,
    RefundIssuedV1, RefundRequestedV1,
};
use contracts::grpc::GrpcChannel;
use contracts::grpc::users::v1 as users_pb;
use contracts::grpc::users::v1::payment_methods_client::PaymentMethodsClient;
use contracts::grpc::with_trace;
use kit::cloudevents::CloudEvent;
use kit::consumer::{Handler, HandlerError};
use kit::db::{Tx, now_millis};
use kit::outbox;
use kit::telemetry::TraceParent;
use sqlx::Row;

use crate::provider::{
    ChargeOutcome, ChargeRequest, CheckoutRequest, OpenedCheckout, PaymentProvider,
};

const SOURCE: &str = "/kart/payments";

fn reject(error: impl std::fmt::Display) -> HandlerError {
    HandlerError::Reject(anyhow::anyhow!("{error}"))
}

fn retry(error: impl Into<anyhow::Error>) -> HandlerError {
    HandlerError::Retry(error.into())
}

async fn emit<E: Event>(
    tx: &mut Tx,
    event: &E,
    trace: Option<TraceParent>,
) -> Result<(), HandlerError> {
    outbox::enqueue(tx, E::TOPIC, &event.to_cloud_event(SOURCE, trace)).map_err(retry)
}

/// Charges orders when asked, refunds when asked.
pub struct OrderPayments {
    pub provider: Arc<dyn PaymentProvider>,
    pub payment_methods: PaymentMethodsClient<GrpcChannel>,
    /// Where shoppers reach Kart: a provider sends them back there.
    pub public_url: String,
}

impl OrderPayments {
    async fn pay(
        &self,
        tx: &mut Tx,
        request: OrderPaymentRequestedV1,
        trace: Option<TraceParent>,
    ) -> Result<(), HandlerError> {
        let done: Option<String> =
            sqlx::query_scalar("SELECT status FROM payments WHERE order_id = $1")
                .bind(&request.order_id)
                .fetch_optional(&mut **tx)
                .await
                .map_err(retry)?;
        if let Some(status) = done {
            tracing::info!(order_id = %request.order_id, %status, "order already paid for; nothing to do");
            return Ok(());
        }
        let payment_method_id = match &request.payment {
            PaymentChoiceV1::SavedMethod { payment_method_id } => payment_method_id,
            PaymentChoiceV1::Checkout => return self.open_checkout(tx, &request, trace).await,
        };
        let payment_id = kit::new_id("pay");
        let fail = |code: &str, reason: &str| PaymentFailedV1 {
            order_id: request.order_id.clone(),
            payment_id: payment_id.clone(),
            code: code.to_owned(),
            reason: reason.to_owned(),
        };
        // The card, asked of users for this user's order only.
        let lookup = users_pb::GetPaymentMethodRequest {
            user_id: request.user_id.clone(),
            payment_method_id: payment_method_id.clone(),
            order_id: request.order_id.clone(),
        };
        let trace_for_call = trace.unwrap_or_else(TraceParent::new_root);
        let method = match self
            .payment_methods
            .clone()
            .get_payment_method(with_trace(lookup, &trace_for_call))
            .await
        {
            Ok(method) => method.into_inner(),
            Err(status) if status.code() == tonic::Code::NotFound => {
                let failed = fail(
                    "payment_method_missing",
                    "The saved card was removed before the order was paid.",
                );
                self.record(tx, &request, &payment_id, "failed", "", &failed.code)
                    .await?;
                return emit(tx, &failed, trace).await;
            }
            Err(status) => return Err(retry(anyhow::anyhow!("users: {status}"))),
        };
        let charge = ChargeRequest {
            order_id: request.order_id.clone(),
            token: method.provider_token,
            amount_minor: request.amount.amount_minor,
            currency: request.amount.currency.clone(),
            idempotency_key: format!("kart-order-{}-charge", request.order_id),
        };
        match self.provider.charge(&charge).await.map_err(retry)? {
            ChargeOutcome::Captured { reference } => {
                self.record(tx, &request, &payment_id, "captured", &reference, "")
                    .await?;
                tracing::info!(order_id = %request.order_id, %payment_id, "payment captured");
                emit(
                    tx,
                    &PaymentCapturedV1 {
                        order_id: request.order_id.clone(),
                        payment_id: payment_id.clone(),
                        amount: request.amount.clone(),
                        provider: self.provider.name().to_owned(),
                        captured_at: Utc::now(),
                    },
                    trace,
                )
                .await
            }
            ChargeOutcome::Declined { code, reason } => {
                self.record(tx, &request, &payment_id, "failed", "", &code)
                    .await?;
                tracing::info!(order_id = %request.order_id, %code, "payment declined");
                emit(tx, &fail(&code, &reason), trace).await
            }
        }
    }

    /// Opens the order's checkout: the shopper pays there, and the
    /// provider's webhook (or the verify call) settles the order.
    async fn open_checkout(
        &self,
        tx: &mut Tx,
        request: &OrderPaymentRequestedV1,
        trace: Option<TraceParent>,
    ) -> Result<(), HandlerError> {
        let open: Option<String> =
            sqlx::query_scalar("SELECT order_id FROM checkout_sessions WHERE order_id = $1")
                .bind(&request.order_id)
                .fetch_optional(&mut **tx)
                .await
                .map_err(retry)?;
        if open.is_some() {
            return Ok(());
        }
        let page = format!(
            "{}/checkout/{}",
            self.public_url.trim_end_matches('/'),
            request.order_id
        );
        let opened = self
            .provider
            .open_checkout(&CheckoutRequest {
                order_id: request.order_id.clone(),
                amount_minor: request.amount.amount_minor,
                currency: request.amount.currency.clone(),
                success_url: format!("{page}?returned=1"),
                cancel_url: format!("{page}?cancelled=1"),
                idempotency_key: format!("kart-order-{}-checkout", request.order_id),
            })
            .await
            .map_err(retry)?;
        let (session_id, url) = match opened {
            OpenedCheckout::OnKart => (String::new(), String::new()),
            OpenedCheckout::Hosted(hosted) => (hosted.session_id, hosted.url),
            OpenedCheckout::Refused { code, reason } => {
                let payment_id = kit::new_id("pay");
                self.record(tx, request, &payment_id, "failed", "", &code)
                    .await?;
                tracing::info!(order_id = %request.order_id, %code, "the provider refused the checkout");
                let failed = PaymentFailedV1 {
                    order_id: request.order_id.clone(),
                    payment_id,
                    code,
                    reason,
                };
                return emit(tx, &failed, trace).await;
            }
        };
        sqlx::query(
            "INSERT INTO checkout_sessions (order_id, user_id, amount_minor, currency, created_at,
                                            provider, provider_session_id, url)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (order_id) DO NOTHING",
        )
        .bind(&request.order_id)
        .bind(&request.user_id)
        .bind(request.amount.amount_minor)
        .bind(&request.amount.currency)
        .bind(now_millis())
        .bind(self.provider.name())
        .bind(&session_id)
        .bind(&url)
        .execute(&mut **tx)
        .await
        .map_err(retry)?;
        tracing::info!(order_id = %request.order_id, provider = self.provider.name(), "checkout opened");
        Ok(())
    }

    async fn record(
        &self,
        tx: &mut Tx,
        request: &OrderPaymentRequestedV1,
        payment_id: &str,
        status: &str,
        reference: &str,
        failure_code: &str,
    ) -> Result<(), HandlerError> {
        sqlx::query(
            "INSERT INTO payments (id, order_id, user_id, amount_minor, currency, status,
                                   provider, provider_ref, failure_code, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(payment_id)
        .bind(&request.order_id)
        .bind(&request.user_id)
        .bind(request.amount.amount_minor)
        .bind(&request.amount.currency)
        .bind(status)
        .bind(self.provider.name())
        .bind(reference)
        .bind(failure_code)
        .bind(now_millis())
        .execute(&mut **tx)
        .await
        .map_err(retry)?;
        Ok(())
    }

    async fn refund(
        &self,
        tx: &mut Tx,
        request: RefundRequestedV1,
        trace: Option<TraceParent>,
    ) -> Result<(), HandlerError> {
        let seen: Option<String> =
            sqlx::query_scalar("SELECT id FROM refunds WHERE refund_request_id = $1")
                .bind(&request.refund_request_id)
                .fetch_optional(&mut **tx)
                .await
                .map_err(retry)?;
        if seen.is_some() {
            return Ok(());
        }
        let payment = sqlx::query(
            "SELECT id, amount_minor, currency, provider_ref FROM payments
             WHERE order_id = $1 AND status = 'captured'",
        )
        .bind(&request.order_id)
        .fetch_optional(&mut **tx)
        .await
        .map_err(retry)?
        .ok_or_else(|| reject(format!("no capture to refund for {}", request.order_id)))?;
        let payment_id: String = payment.try_get("id").map_err(retry)?;
        let captured: i64 = payment.try_get("amount_minor").map_err(retry)?;
        let currency: String = payment.try_get("currency").map_err(retry)?;
        let reference: String = payment.try_get("provider_ref").map_err(retry)?;
        let refunded: i64 = sqlx::query_scalar(
            "SELECT CAST(COALESCE(SUM(amount_minor), 0) AS BIGINT) FROM refunds WHERE payment_id = $1",
        )
        .bind(&payment_id)
        .fetch_one(&mut **tx)
        .await
        .map_err(retry)?;
        let amount = request.amount.amount_minor;
        if amount <= 0 || amount > captured - refunded || request.amount.currency != currency {
            return Err(reject(format!(
                "refund of {amount} {} asked for {}, which has {} {currency} left to refund",
                request.amount.currency,
                request.order_id,
                captured - refunded
            )));
        }
        let refund_reference = self
            .provider
            .refund(
                &reference,
                amount,
                &format!("kart-refund-{}", request.refund_request_id),
            )
            .await
            .map_err(retry)?;
        let refund_id = kit::new_id("re");
        sqlx::query(
            "INSERT INTO refunds (id, refund_request_id, payment_id, order_id, amount_minor,
                                  provider_ref, reason, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&refund_id)
        .bind(&request.refund_request_id)
        .bind(&payment_id)
        .bind(&request.order_id)
        .bind(amount)
        .bind(&refund_reference)
        .bind(&request.reason)
        .bind(now_millis())
        .execute(&mut **tx)
        .await
        .map_err(retry)?;
        tracing::info!(order_id = %request.order_id, %refund_id, amount, "refund issued");
        emit(
            tx,
            &RefundIssuedV1 {
                order_id: request.order_id.clone(),
                payment_id,
                refund_id,
                amount: Money {
                    amount_minor: amount,
                    currency,
                },
                issued_at: Utc::now(),
            },
            trace,
        )
        .await
    }
}

#[async_trait]
impl Handler for OrderPayments {
    async fn handle(&self, tx: &mut Tx, event: &CloudEvent) -> Result<(), HandlerError> {
        let trace = event.traceparent;
        match event.event_type.as_str() {
            OrderPaymentRequestedV1::TYPE => {
                let request = OrderPaymentRequestedV1::decode(event).map_err(reject)?;
                self.pay(tx, request, trace).await
            }
            RefundRequestedV1::TYPE => {
                let request = RefundRequestedV1::decode(event).map_err(reject)?;
                self.refund(tx, request, trace).await
            }
            _ => Ok(()),
        }
    }
}
