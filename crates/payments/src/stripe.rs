//! The `stripe` provider: Stripe's Payment Intents, Checkout Sessions and
//! Refunds APIs over HTTPS, as Stripe documents them: form-encoded bodies,
//! `Authorization: Bearer <secret key>`, an `Idempotency-Key` on every
//! write, errors as `{"error": {"type", "code", "decline_code", "message",
//! "param"}}`, and webhooks signed in the `Stripe-Signature` header.
//!
//! A saved card is a PaymentMethod attached to the user's Customer (Stripe
//! charges a card again later only if it is attached); its Kart token is
//! `<customer id>/<payment method id>`, so a charge needs nothing stored.

use std::time::Duration;

use async_trait::async_trait;
use kit::db::{Db, now_millis};
use kit::problem::{Problem, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::Value;

use crate::card::CardInput;
use crate::provider::{
    ChargeOutcome, ChargeRequest, CheckoutRequest, HostedCheckout, OpenedCheckout, PaymentProvider,
    ProviderUnavailable, TokenizedCard,
};
use crate::webhooks::{self, CheckoutEvent};

/// Stripe's error object.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct StripeError {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub decline_code: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub param: Option<String>,
}

impl StripeError {
    /// The code Kart reports: a card refusal's reason where Stripe gives a
    /// specific one (`insufficient_funds`), else its error code.
    fn kart_code(&self) -> String {
        match (self.code.as_deref(), self.decline_code.as_deref()) {
            (Some("card_declined"), Some(decline)) if decline != "generic_decline" => {
                decline.to_owned()
            }
            (Some(code), _) => code.to_owned(),
            (None, _) => self.kind.clone(),
        }
    }

    fn reason(&self) -> String {
        self.message
            .clone()
            .unwrap_or_else(|| "The payment provider refused the request.".into())
    }
}

/// How a call to Stripe went wrong.
#[derive(Debug)]
enum Failure {
    /// Stripe answered and said no (a 4xx with its error object): asking
    /// again will not change the answer.
    Refused(StripeError),
    /// No answer, a timeout, 429, 409 (the same idempotent request still
    /// running) or 5xx: ask again with the same key.
    Unavailable(String),
}

impl From<Failure> for ProviderUnavailable {
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::Unavailable(why) => ProviderUnavailable(why),
            Failure::Refused(error) => ProviderUnavailable(format!(
                "Stripe refused the request ({}): {}",
                error.kart_code(),
                error.reason()
            )),
        }
    }
}

pub struct StripeProvider {
    http: reqwest::Client,
    base_url: String,
    api_key: SecretString,
    webhook_secret: SecretString,
    /// The user → Stripe customer map.
    db: Db,
}

impl std::fmt::Debug for StripeProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeProvider")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

/// A form body, in the order given: Stripe reads nested fields from keys
/// like `card[number]`.
fn form(fields: &[(&str, &str)]) -> String {
    let mut body = form_urlencoded::Serializer::new(String::new());
    for (key, value) in fields {
        body.append_pair(key, value);
    }
    body.finish()
}

fn text(value: &Value, key: &str) -> String {
    value
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

impl StripeProvider {
    pub fn new(
        base_url: &str,
        api_key: SecretString,
        webhook_secret: SecretString,
        timeout: Duration,
        db: Db,
    ) -> anyhow::Result<StripeProvider> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("kart/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(StripeProvider {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
            api_key,
            webhook_secret,
            db,
        })
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Value, Failure> {
        let response = request
            .bearer_auth(self.api_key.expose_secret())
            .send()
            .await
            .map_err(|e| Failure::Unavailable(format!("Stripe did not answer: {e}")))?;
        let status = response.status();
        let body: Value = response.json().await.map_err(|e| {
            Failure::Unavailable(format!("Stripe's answer ({status}) was not JSON: {e}"))
        })?;
        if status.is_success() {
            return Ok(body);
        }
        let error: StripeError = body
            .get("error")
            .cloned()
            .and_then(|e| serde_json::from_value(e).ok())
            .unwrap_or_default();
        let code = status.as_u16();
        if code == 409 || code == 429 || status.is_server_error() {
            return Err(Failure::Unavailable(format!(
                "Stripe answered {status}: {}",
                error.reason()
            )));
        }
        if code == 401 || code == 403 {
            // The key is wrong or lacks a permission: an operator's fix,
            // after which the same request should go through.
            return Err(Failure::Unavailable(format!(
                "Stripe refused the API key ({status}): {}",
                error.reason()
            )));
        }
        Err(Failure::Refused(error))
    }

    async fn post(
        &self,
        path: &str,
        fields: &[(&str, &str)],
        idempotency_key: &str,
    ) -> Result<Value, Failure> {
        self.send(
            self.http
                .post(format!("{}{path}", self.base_url))
                .header("idempotency-key", idempotency_key)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(form(fields)),
        )
        .await
    }

    async fn get(&self, path: &str) -> Result<Value, Failure> {
        self.send(self.http.get(format!("{}{path}", self.base_url)))
            .await
    }

    /// The user's Stripe customer, made on their first card. Two first
    /// cards at once send the same idempotency key, so Stripe makes one.
    async fn customer(&self, user_id: &str) -> Result<String, Problem> {
        let internal = |e: sqlx::Error| Problem::internal(&e);
        let known: Option<String> =
            sqlx::query_scalar("SELECT customer_id FROM stripe_customers WHERE user_id = $1")
                .bind(user_id)
                .fetch_optional(&mut *self.db.write().await.map_err(internal)?)
                .await
                .map_err(internal)?;
        if let Some(customer) = known {
            return Ok(customer);
        }
        let created = self
            .post(
                "/v1/customers",
                &[("metadata[kart_user_id]", user_id)],
                &format!("kart-user-{user_id}-customer"),
            )
            .await
            .map_err(refusal_problem)?;
        let customer = text(&created, "id");
        sqlx::query(
            "INSERT INTO stripe_customers (user_id, customer_id, created_at) VALUES ($1, $2, $3)
             ON CONFLICT (user_id) DO NOTHING",
        )
        .bind(user_id)
        .bind(&customer)
        .bind(now_millis())
        .execute(&mut *self.db.write().await.map_err(internal)?)
        .await
        .map_err(internal)?;
        sqlx::query_scalar("SELECT customer_id FROM stripe_customers WHERE user_id = $1")
            .bind(user_id)
            .fetch_one(&mut *self.db.write().await.map_err(internal)?)
            .await
            .map_err(internal)
    }

    /// What a PaymentIntent's state means for the order.
    async fn intent_outcome(&self, intent: Value) -> Result<ChargeOutcome, ProviderUnavailable> {
        let mut intent = intent;
        if text(&intent, "status") == "processing" {
            // Card payments settle in moments; ask once more how it went.
            intent = self
                .get(&format!("/v1/payment_intents/{}", text(&intent, "id")))
                .await?;
        }
        let id = text(&intent, "id");
        match text(&intent, "status").as_str() {
            "succeeded" => Ok(ChargeOutcome::Captured { reference: id }),
            "processing" => Err(ProviderUnavailable(format!(
                "payment {id} is still processing at Stripe"
            ))),
            "requires_action" => Ok(ChargeOutcome::Declined {
                code: "authentication_required".into(),
                reason: "The card needs the shopper to authenticate the payment.".into(),
            }),
            other => {
                let error: StripeError = intent
                    .get("last_payment_error")
                    .cloned()
                    .and_then(|e| serde_json::from_value(e).ok())
                    .unwrap_or_else(|| StripeError {
                        code: Some("card_declined".into()),
                        message: Some(format!("Stripe left the payment in `{other}`.")),
                        ..StripeError::default()
                    });
                Ok(ChargeOutcome::Declined {
                    code: error.kart_code(),
                    reason: error.reason(),
                })
            }
        }
    }
}

/// A refusal the shopper can act on (a card Stripe would not take), or an
/// outage.
fn refusal_problem(failure: Failure) -> Problem {
    match failure {
        Failure::Unavailable(why) => {
            tracing::warn!(%why, "Stripe unavailable");
            Problem::unavailable("The payment provider is not answering; try again shortly.")
        }
        Failure::Refused(error) => {
            let field = match error.param.as_deref() {
                Some(p) if p.contains("exp_month") => "exp_month",
                Some(p) if p.contains("exp_year") => "exp_year",
                Some(p) if p.contains("cvc") => "cvc",
                _ => "card_number",
            };
            Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                &error.kart_code(),
                error.reason(),
            )
            .with_field(field)
        }
    }
}

/// A Checkout Session's order and amount, as a checkout event of `kind`;
/// `None` for a session Kart did not open.
fn session_event(
    session: &Value,
    event_id: &str,
    kind: &str,
    failure_code: &str,
    reason: &str,
) -> Option<CheckoutEvent> {
    let order_id = Some(text(session, "client_reference_id"))
        .filter(|id| !id.is_empty())
        .or_else(|| {
            session
                .pointer("/metadata/kart_order_id")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })?;
    Some(CheckoutEvent {
        id: event_id.to_owned(),
        kind: kind.to_owned(),
        order_id,
        amount_minor: session
            .get("amount_total")
            .and_then(Value::as_i64)
            .unwrap_or_default(),
        currency: text(session, "currency").to_ascii_uppercase(),
        reference: text(session, "payment_intent"),
        failure_code: failure_code.to_owned(),
        reason: reason.to_owned(),
    })
}

/// A Checkout Session as a checkout outcome, once it has one: paid, or
/// expired unpaid. `None` while the shopper is still at it.
pub fn session_outcome(session: &Value, event_id: &str) -> Option<CheckoutEvent> {
    match (
        text(session, "status").as_str(),
        text(session, "payment_status").as_str(),
    ) {
        ("complete", "paid") => session_event(session, event_id, webhooks::COMPLETED, "", ""),
        ("expired", _) => session_event(
            session,
            event_id,
            webhooks::FAILED,
            "checkout_expired",
            "The checkout expired before it was paid.",
        ),
        _ => None,
    }
}

#[async_trait]
impl PaymentProvider for StripeProvider {
    fn name(&self) -> &'static str {
        "stripe"
    }

    async fn tokenize_card(
        &self,
        card: CardInput,
        user_id: &str,
    ) -> Result<TokenizedCard, Problem> {
        let customer = self.customer(user_id).await?;
        let exp_month = card.exp_month.to_string();
        let exp_year = card.exp_year.to_string();
        let method = self
            .post(
                "/v1/payment_methods",
                &[
                    ("type", "card"),
                    ("card[number]", card.number()),
                    ("card[exp_month]", &exp_month),
                    ("card[exp_year]", &exp_year),
                    ("card[cvc]", card.cvc()),
                ],
                &kit::new_id("kart-pm"),
            )
            .await
            .map_err(refusal_problem)?;
        let method_id = text(&method, "id");
        self.post(
            &format!("/v1/payment_methods/{method_id}/attach"),
            &[("customer", &customer)],
            &format!("kart-{method_id}-attach"),
        )
        .await
        .map_err(refusal_problem)?;
        let details = method.get("card").cloned().unwrap_or_default();
        let number = |key: &str, fallback: u32| {
            details
                .get(key)
                .and_then(Value::as_u64)
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(fallback)
        };
        Ok(TokenizedCard {
            provider: self.name(),
            token: format!("{customer}/{method_id}"),
            brand: Some(text(&details, "brand"))
                .filter(|b| !b.is_empty())
                .unwrap_or_else(|| card.brand().to_owned()),
            last4: Some(text(&details, "last4"))
                .filter(|l| !l.is_empty())
                .unwrap_or_else(|| card.last4().to_owned()),
            exp_month: number("exp_month", card.exp_month),
            exp_year: number("exp_year", card.exp_year),
        })
    }

    async fn charge(&self, request: &ChargeRequest) -> Result<ChargeOutcome, ProviderUnavailable> {
        let Some((customer, method)) = request.token.split_once('/') else {
            return Ok(ChargeOutcome::Declined {
                code: "invalid_payment_method".into(),
                reason: "This saved card was not saved with Stripe.".into(),
            });
        };
        let amount = request.amount_minor.to_string();
        let currency = request.currency.to_ascii_lowercase();
        let description = format!("Kart order {}", request.order_id);
        let answer = self
            .post(
                "/v1/payment_intents",
                &[
                    ("amount", &amount),
                    ("currency", &currency),
                    ("customer", customer),
                    ("payment_method", method),
                    ("confirm", "true"),
                    ("off_session", "true"),
                    ("description", &description),
                    ("metadata[kart_order_id]", &request.order_id),
                ],
                &request.idempotency_key,
            )
            .await;
        match answer {
            Ok(intent) => self.intent_outcome(intent).await,
            Err(Failure::Refused(error)) if error.kind == "card_error" => {
                Ok(ChargeOutcome::Declined {
                    code: error.kart_code(),
                    reason: error.reason(),
                })
            }
            // Stripe will not take this request however often it is sent
            // (an unsupported currency, an amount below its minimum, a
            // card no longer attached): the order fails with its reason.
            Err(Failure::Refused(error)) => {
                tracing::warn!(code = %error.kart_code(), reason = %error.reason(), "Stripe refused a charge");
                Ok(ChargeOutcome::Declined {
                    code: "provider_refused".into(),
                    reason: error.reason(),
                })
            }
            Err(unavailable) => Err(unavailable.into()),
        }
    }

    async fn refund(
        &self,
        capture_reference: &str,
        amount_minor: i64,
        idempotency_key: &str,
    ) -> Result<String, ProviderUnavailable> {
        let amount = amount_minor.to_string();
        let refund = self
            .post(
                "/v1/refunds",
                &[("payment_intent", capture_reference), ("amount", &amount)],
                idempotency_key,
            )
            .await?;
        Ok(text(&refund, "id"))
    }

    async fn open_checkout(
        &self,
        request: &CheckoutRequest,
    ) -> Result<OpenedCheckout, ProviderUnavailable> {
        let amount = request.amount_minor.to_string();
        let currency = request.currency.to_ascii_lowercase();
        let name = format!("Kart order {}", request.order_id);
        let answer = self
            .post(
                "/v1/checkout/sessions",
                &[
                    ("mode", "payment"),
                    ("client_reference_id", &request.order_id),
                    ("metadata[kart_order_id]", &request.order_id),
                    (
                        "payment_intent_data[metadata][kart_order_id]",
                        &request.order_id,
                    ),
                    ("line_items[0][quantity]", "1"),
                    ("line_items[0][price_data][currency]", &currency),
                    ("line_items[0][price_data][unit_amount]", &amount),
                    ("line_items[0][price_data][product_data][name]", &name),
                    ("success_url", &request.success_url),
                    ("cancel_url", &request.cancel_url),
                ],
                &request.idempotency_key,
            )
            .await;
        match answer {
            Ok(session) => Ok(OpenedCheckout::Hosted(HostedCheckout {
                session_id: text(&session, "id"),
                url: text(&session, "url"),
            })),
            Err(Failure::Refused(error)) => Ok(OpenedCheckout::Refused {
                code: "provider_refused".into(),
                reason: error.reason(),
            }),
            Err(unavailable) => Err(unavailable.into()),
        }
    }

    fn read_webhook(
        &self,
        payload: &[u8],
        signature: &str,
        now_secs: i64,
    ) -> Result<Option<CheckoutEvent>, Problem> {
        webhooks::verify(
            self.webhook_secret.expose_secret().as_bytes(),
            signature,
            payload,
            now_secs,
        )?;
        let event: Value = serde_json::from_slice(payload)
            .map_err(|e| Problem::validation("payload", format!("Not a Stripe event: {e}")))?;
        let id = text(&event, "id");
        if id.is_empty() {
            return Err(Problem::validation("id", "A Stripe event has an `id`."));
        }
        let Some(session) = event.pointer("/data/object") else {
            return Err(Problem::validation(
                "data",
                "A Stripe event has `data.object`.",
            ));
        };
        Ok(match text(&event, "type").as_str() {
            "checkout.session.completed"
            | "checkout.session.async_payment_succeeded"
            | "checkout.session.expired" => session_outcome(session, &id),
            "checkout.session.async_payment_failed" => session_event(
                session,
                &id,
                webhooks::FAILED,
                "payment_failed",
                "The payment did not go through.",
            ),
            // Authentic, but nothing Kart acts on (Stripe sends many kinds).
            _ => None,
        })
    }

    async fn checkout_outcome(
        &self,
        session_id: &str,
    ) -> Result<Option<CheckoutEvent>, ProviderUnavailable> {
        let session = self
            .get(&format!("/v1/checkout/sessions/{session_id}"))
            .await?;
        Ok(session_outcome(&session, &format!("verify_{session_id}")))
    }
}
