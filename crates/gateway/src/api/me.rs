//! The signed-in user's saved cards.
//!
//! Adding a card hands the number and CVC to the payment service, which
//! gets a token from the provider; only the token, brand, last four digits
//! and expiry go on to the users service. Nothing here logs or keeps the
//! number or CVC, and `CardBody`'s `Debug` hides them.

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use contracts::grpc::payments::v1 as payments_pb;
use contracts::grpc::users::v1 as pb;
use kit::http::RequestContext;
use kit::problem::Problem;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ProblemDoc, timestamp};
use crate::AppState;
use crate::auth::Caller;
use crate::extract::ApiJson;
use crate::upstream::{answer, request};

pub fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list_payment_methods, add_payment_method))
        .routes(routes!(remove_payment_method))
        .routes(routes!(set_default_payment_method))
}

/// A card as the shopper types it.
#[derive(Deserialize, ToSchema)]
pub struct CardBody {
    /// Spaces and hyphens are ignored. Test cards: 4242 4242 4242 4242
    /// succeeds, 4000 0000 0000 0002 is declined, 4000 0000 0000 9995 has
    /// insufficient funds.
    #[schema(example = "4242 4242 4242 4242")]
    pub card_number: String,
    #[schema(example = 12)]
    pub exp_month: u32,
    /// Four digits, or two (`30` is 2030).
    #[schema(example = 2030)]
    pub exp_year: u32,
    #[schema(example = "123")]
    pub cvc: String,
}

impl std::fmt::Debug for CardBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CardBody([REDACTED])")
    }
}

/// A saved card: what the shopper needs to recognise it, never its number.
#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentMethodBody {
    #[schema(example = "pm_0193a4f0c2b87d3e9a1f5c6b7d8e9f02")]
    pub id: String,
    #[schema(example = "visa")]
    pub brand: String,
    #[schema(example = "4242")]
    pub last4: String,
    pub exp_month: u32,
    pub exp_year: u32,
    /// Orders without an explicit card use the default one.
    pub is_default: bool,
    pub created_at: String,
}

fn payment_method_body(method: pb::PaymentMethod) -> PaymentMethodBody {
    PaymentMethodBody {
        id: method.id,
        brand: method.brand,
        last4: method.last4,
        exp_month: method.exp_month,
        exp_year: method.exp_year,
        is_default: method.is_default,
        created_at: timestamp(method.created_at),
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentMethodList {
    pub payment_methods: Vec<PaymentMethodBody>,
}

/// Your saved cards, default first.
#[utoipa::path(get, path = "/api/v1/me/payment-methods", tag = "payment methods",
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, body = PaymentMethodList),
        (status = 401, description = "`unauthenticated`", body = ProblemDoc, content_type = "application/problem+json"),
    ))]
pub async fn list_payment_methods(
    State(state): State<Arc<AppState>>,
    Extension(context): Extension<RequestContext>,
    caller: Caller,
) -> Result<axum::Json<PaymentMethodList>, Problem> {
    let message = pb::ListPaymentMethodsRequest {
        user_id: caller.user_id,
    };
    let list = answer(
        "users",
        state
            .upstreams
            .payment_methods
            .clone()
            .list_payment_methods(request(&context, message))
            .await,
    )?;
    Ok(axum::Json(PaymentMethodList {
        payment_methods: list
            .payment_methods
            .into_iter()
            .map(payment_method_body)
            .collect(),
    }))
}

/// Save a card. It is tokenised by the payment provider; Kart keeps the
/// token, brand, last four digits and expiry only. Your first card becomes
/// your default.
#[utoipa::path(post, path = "/api/v1/me/payment-methods", tag = "payment methods",
    security(("bearer" = []), ("cookie" = [])),
    request_body = CardBody,
    responses(
        (status = 201, body = PaymentMethodBody),
        (status = 401, description = "`unauthenticated`", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "`invalid_card` (`field` is `card_number`, `exp_month`, `exp_year` or `cvc`) or `validation_failed`.", body = ProblemDoc, content_type = "application/problem+json"),
    ))]
pub async fn add_payment_method(
    State(state): State<Arc<AppState>>,
    Extension(context): Extension<RequestContext>,
    caller: Caller,
    ApiJson(card): ApiJson<CardBody>,
) -> Result<Response, Problem> {
    let tokenize = payments_pb::TokenizeCardRequest {
        card_number: card.card_number,
        exp_month: card.exp_month,
        exp_year: card.exp_year,
        cvc: card.cvc,
        user_id: caller.user_id.clone(),
    };
    let token = answer(
        "payments",
        state
            .upstreams
            .payments
            .clone()
            .tokenize_card(request(&context, tokenize))
            .await,
    )?;
    let save = pb::AddPaymentMethodRequest {
        user_id: caller.user_id,
        provider: token.provider,
        provider_token: token.provider_token,
        brand: token.brand,
        last4: token.last4,
        exp_month: token.exp_month,
        exp_year: token.exp_year,
    };
    let method = answer(
        "users",
        state
            .upstreams
            .payment_methods
            .clone()
            .add_payment_method(request(&context, save))
            .await,
    )?;
    Ok((StatusCode::CREATED, axum::Json(payment_method_body(method))).into_response())
}

/// Remove one of your saved cards. If it was the default, your newest
/// remaining card becomes the default.
#[utoipa::path(delete, path = "/api/v1/me/payment-methods/{id}", tag = "payment methods",
    security(("bearer" = []), ("cookie" = [])),
    params(("id" = String, Path, description = "The card's id (`pm_…`).")),
    responses(
        (status = 204, description = "Removed."),
        (status = 401, description = "`unauthenticated`", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`: you have no card with this id.", body = ProblemDoc, content_type = "application/problem+json"),
    ))]
pub async fn remove_payment_method(
    State(state): State<Arc<AppState>>,
    Extension(context): Extension<RequestContext>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, Problem> {
    let message = pb::PaymentMethodRef {
        user_id: caller.user_id,
        payment_method_id: id,
    };
    answer(
        "users",
        state
            .upstreams
            .payment_methods
            .clone()
            .remove_payment_method(request(&context, message))
            .await,
    )?;
    Ok(StatusCode::NO_CONTENT)
}

/// Make one of your saved cards the default.
#[utoipa::path(post, path = "/api/v1/me/payment-methods/{id}/default", tag = "payment methods",
    security(("bearer" = []), ("cookie" = [])),
    params(("id" = String, Path, description = "The card's id (`pm_…`).")),
    responses(
        (status = 200, body = PaymentMethodBody),
        (status = 401, description = "`unauthenticated`", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`: you have no card with this id.", body = ProblemDoc, content_type = "application/problem+json"),
    ))]
pub async fn set_default_payment_method(
    State(state): State<Arc<AppState>>,
    Extension(context): Extension<RequestContext>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<PaymentMethodBody>, Problem> {
    let message = pb::PaymentMethodRef {
        user_id: caller.user_id,
        payment_method_id: id,
    };
    let method = answer(
        "users",
        state
            .upstreams
            .payment_methods
            .clone()
            .set_default_payment_method(request(&context, message))
            .await,
    )?;
    Ok(axum::Json(payment_method_body(method)))
}
