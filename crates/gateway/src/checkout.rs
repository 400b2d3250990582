//! The checkout page (`/checkout/{order_id}`): the simulated provider's
//! hosted page, or the way to (and back from) a provider's own, such as
//! Stripe Checkout; and the provider webhook endpoint.
//!
//! The page plays the part Stripe Checkout plays for a real shop: the
//! shopper types the card there, never into Kart's own API, and the
//! provider tells Kart the outcome in a signed webhook.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use contracts::grpc::orders::v1 as orders_pb;
use contracts::grpc::payments::v1 as pb;
use kit::http::RequestContext;
use kit::problem::Problem;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::api::ProblemDoc;
use crate::api::orders::grpc_caller;
use crate::auth::Caller;
use crate::docs::escape;
use crate::upstream::{answer, request};

fn page(title: &str, body: &str, refresh: bool) -> String {
    let mut out = String::with_capacity(4096);
    out.push_str("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">");
    if refresh {
        out.push_str("<meta http-equiv=\"refresh\" content=\"1\">");
    }
    let _ = write!(
        out,
        "<title>{} · Kart checkout</title><style>body{{font:16px/1.5 system-ui,sans-serif;max-width:28rem;margin:2rem auto;padding:0 1rem;color:#1a1a1a}}label{{display:block;margin:.75rem 0 .25rem;font-weight:600}}input{{font:inherit;padding:.5rem;width:100%;box-sizing:border-box;border:1px solid #767676;border-radius:4px}}.row{{display:flex;gap:.75rem}}button{{font:inherit;margin-top:1rem;padding:.6rem 1.2rem;background:#1b5e20;color:#fff;border:0;border-radius:4px;cursor:pointer}}.error{{color:#b71c1c;font-weight:600}}.note{{color:#555;font-size:.9em}}</style></head><body><p class=\"note\">Simulated payment provider — test cards only.</p><h1>{}</h1>{body}</body></html>",
        escape(title),
        escape(title)
    );
    out
}

fn amount(minor: i64, currency: &str) -> String {
    contracts::values::format_amount(minor, currency)
}

fn form(order_id: &str, checkout: &pb::Checkout, error: Option<&str>) -> String {
    let mut body = String::new();
    let _ = write!(
        body,
        "<p>Order <code>{}</code>: <strong>{}</strong></p>",
        escape(order_id),
        amount(checkout.amount_minor, &checkout.currency)
    );
    if let Some(error) = error {
        let _ = write!(
            body,
            "<p class=\"error\" role=\"alert\">{}</p>",
            escape(error)
        );
    }
    let _ = write!(
        body,
        "<form method=\"post\" action=\"/checkout/{}\">\
         <label for=\"card_number\">Card number</label>\
         <input id=\"card_number\" name=\"card_number\" inputmode=\"numeric\" autocomplete=\"cc-number\" required placeholder=\"4242 4242 4242 4242\">\
         <div class=\"row\"><div><label for=\"exp_month\">Month</label><input id=\"exp_month\" name=\"exp_month\" inputmode=\"numeric\" autocomplete=\"cc-exp-month\" required placeholder=\"12\"></div>\
         <div><label for=\"exp_year\">Year</label><input id=\"exp_year\" name=\"exp_year\" inputmode=\"numeric\" autocomplete=\"cc-exp-year\" required placeholder=\"2030\"></div>\
         <div><label for=\"cvc\">CVC</label><input id=\"cvc\" name=\"cvc\" inputmode=\"numeric\" autocomplete=\"cc-csc\" required placeholder=\"123\"></div></div>\
         <button type=\"submit\">Pay {}</button></form>\
         <p class=\"note\">4242 4242 4242 4242 succeeds; 4000 0000 0000 0002 is declined; 4000 0000 0000 9995 has insufficient funds.</p>",
        escape(order_id),
        amount(checkout.amount_minor, &checkout.currency)
    );
    body
}

fn html(status: StatusCode, text: String) -> Response {
    (status, Html(text)).into_response()
}

/// The page for an order as it stands: waiting for its stock, open for a
/// card, paid, or failed.
async fn render(
    state: &AppState,
    context: &RequestContext,
    caller: &Caller,
    order_id: &str,
    error: Option<&str>,
    cancelled: bool,
) -> Result<Response, Problem> {
    let order = answer(
        "orders",
        state
            .upstreams
            .orders
            .clone()
            .get_order(request(
                context,
                orders_pb::OrderRef {
                    caller: grpc_caller(caller),
                    order_id: order_id.to_owned(),
                },
            ))
            .await,
    )?;
    let link = format!(
        "<p><a href=\"/orders/{0}\">See order {0}</a></p>",
        escape(order_id)
    );
    if order.payment_kind != "checkout" {
        let body = format!(
            "<p>This order is paid with a saved card; there is nothing to pay here.</p>{link}"
        );
        return Ok(html(StatusCode::OK, page("Nothing to pay", &body, false)));
    }
    let lookup = pb::CheckoutRef {
        order_id: order_id.to_owned(),
        user_id: order.user_id.clone(),
    };
    // The verify call: a checkout paid at the provider settles here even
    // if its webhook is late or lost.
    let checkout = state
        .upstreams
        .payments
        .clone()
        .verify_checkout(request(context, lookup))
        .await;
    let checkout = match checkout {
        Ok(checkout) => checkout.into_inner(),
        Err(status) if status.code() == tonic::Code::NotFound => {
            if order.status == "FAILED" || order.status == "CANCELLED" {
                let body = format!(
                    "<p>This order is {} (<code>{}</code>); there is nothing to pay.</p>{link}",
                    escape(&order.status),
                    escape(&order.failure_code)
                );
                return Ok(html(StatusCode::OK, page("Order closed", &body, false)));
            }
            let body = "<p role=\"status\">Reserving your items… this page refreshes itself.</p>";
            return Ok(html(StatusCode::OK, page("One moment", body, true)));
        }
        Err(status) => return Err(Problem::from_status("payments", &status)),
    };
    Ok(match checkout.status.as_str() {
        "open" if !checkout.url.is_empty() => {
            if cancelled {
                let body = format!(
                    "<p>The payment was not completed. Nothing was charged.</p><p><a href=\"{}\">Return to payment</a></p>{link}",
                    escape(&checkout.url)
                );
                html(StatusCode::OK, page("Payment not completed", &body, false))
            } else {
                Redirect::to(&checkout.url).into_response()
            }
        }
        "open" => {
            let status = if error.is_some() {
                StatusCode::UNPROCESSABLE_ENTITY
            } else {
                StatusCode::OK
            };
            html(
                status,
                page(
                    "Pay for your order",
                    &form(order_id, &checkout, error),
                    false,
                ),
            )
        }
        "paid" => {
            let body = format!(
                "<p role=\"status\">Paid: {}. Thank you.</p>{link}",
                amount(checkout.amount_minor, &checkout.currency)
            );
            html(StatusCode::OK, page("Payment received", &body, false))
        }
        _ => {
            let body = format!(
                "<p class=\"error\" role=\"alert\">The payment failed (<code>{}</code>). The order is cancelled and nothing was charged.</p>{link}",
                escape(&checkout.failure_code)
            );
            html(StatusCode::OK, page("Payment failed", &body, false))
        }
    })
}

/// Where the shopper came from: the provider sends them back with
/// `?returned=1` after paying and `?cancelled=1` after giving up.
#[derive(Debug, Default, Deserialize)]
pub struct Return {
    #[serde(default)]
    cancelled: Option<String>,
}

pub async fn show(
    State(state): State<Arc<AppState>>,
    Extension(context): Extension<RequestContext>,
    caller: Caller,
    Path(order_id): Path<String>,
    Query(back): Query<Return>,
) -> Result<Response, Problem> {
    let cancelled = back.cancelled.is_some();
    render(&state, &context, &caller, &order_id, None, cancelled).await
}

/// The hosted form's fields. `Debug` hides them: they hold a card.
#[derive(Deserialize)]
pub struct CardForm {
    card_number: String,
    exp_month: String,
    exp_year: String,
    cvc: String,
}

impl std::fmt::Debug for CardForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CardForm([REDACTED])")
    }
}

pub async fn pay(
    State(state): State<Arc<AppState>>,
    Extension(context): Extension<RequestContext>,
    caller: Caller,
    Path(order_id): Path<String>,
    Form(card): Form<CardForm>,
) -> Result<Response, Problem> {
    let (Ok(exp_month), Ok(exp_year)) = (
        card.exp_month.trim().parse::<u32>(),
        card.exp_year.trim().parse::<u32>(),
    ) else {
        let error = "Expiry month and year are numbers, like 12 and 2030.";
        return render(&state, &context, &caller, &order_id, Some(error), false).await;
    };
    let message = pb::PayCheckoutRequest {
        order_id: order_id.clone(),
        user_id: caller.user_id.clone(),
        card_number: card.card_number,
        exp_month,
        exp_year,
        cvc: card.cvc,
    };
    match state
        .upstreams
        .payments
        .clone()
        .pay_checkout(request(&context, message))
        .await
    {
        Ok(_) => Ok(Redirect::to(&format!("/checkout/{order_id}")).into_response()),
        Err(status) => {
            let problem = Problem::from_status("payments", &status);
            if problem.status == 422 {
                render(
                    &state,
                    &context,
                    &caller,
                    &order_id,
                    Some(&problem.detail),
                    false,
                )
                .await
            } else {
                Err(problem)
            }
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookAnswer {
    /// False when this event was received before: nothing was done again.
    pub applied: bool,
}

/// A payment provider's webhook. The body is checked against the
/// provider's signature header (`Stripe-Signature` for `stripe`,
/// `Kart-Signature` for `simulated`; both `t=<unix secs>,v1=<HMAC-SHA256
/// hex of "t.body">`, within 5 minutes); each provider event id is applied
/// once, in whatever order they come.
#[utoipa::path(post, path = "/api/v1/payments/webhooks/{provider}", tag = "payments",
    params(("provider" = String, Path, description = "`simulated` or `stripe`: the provider this Kart is configured with")),
    request_body(content = String, content_type = "application/json"),
    responses(
        (status = 200, body = WebhookAnswer),
        (status = 400, description = "`invalid_signature`", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`: no such provider endpoint.", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`: not an event this endpoint takes.", body = ProblemDoc, content_type = "application/problem+json"),
    ))]
pub async fn webhook(
    State(state): State<Arc<AppState>>,
    Extension(context): Extension<RequestContext>,
    Path(provider): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<axum::Json<WebhookAnswer>, Problem> {
    let header = if provider == "stripe" {
        "stripe-signature"
    } else {
        "kart-signature"
    };
    let signature = headers
        .get(header)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let message = pb::WebhookRequest {
        provider,
        payload: body.to_vec(),
        signature,
    };
    let answer = answer(
        "payments",
        state
            .upstreams
            .payments
            .clone()
            .handle_webhook(request(&context, message))
            .await,
    )?;
    Ok(axum::Json(WebhookAnswer {
        applied: answer.applied,
    }))
}
