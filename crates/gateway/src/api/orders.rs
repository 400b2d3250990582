//! Orders: place one (with an Idempotency-Key), follow it, cancel it; and
//! for admins, every order, fulfil and refund.

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use contracts::grpc::orders::v1 as pb;
use contracts::grpc::payments::v1 as payments_pb;
use kit::http::RequestContext;
use kit::problem::Problem;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{MoneyBody, ProblemDoc, limit_param, timestamp};
use crate::AppState;
use crate::auth::{Admin, Caller, Role};
use crate::extract::{ApiJson, ApiQuery};
use crate::upstream::{answer, request};

pub fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list_my_orders, create_order))
        .routes(routes!(get_order))
        .routes(routes!(cancel_order))
        .routes(routes!(verify_checkout))
        .routes(routes!(list_all_orders))
        .routes(routes!(fulfil_order))
        .routes(routes!(refund_order))
}

/// Who asks, as the orders service wants to know it.
pub fn grpc_caller(caller: &Caller) -> Option<pb::Caller> {
    Some(pb::Caller {
        user_id: caller.user_id.clone(),
        admin: caller.role == Role::Admin,
    })
}

/// One line: which product, how many. Prices come from the catalog.
#[derive(Debug, Deserialize, ToSchema)]
pub struct LineBody {
    #[schema(example = "BEANS-ETHIOPIA")]
    pub sku: String,
    /// 1 to 999.
    #[schema(example = 2)]
    pub quantity: i64,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct NewOrderBody {
    /// 1 to 50 lines; repeated SKUs are added up.
    pub lines: Vec<LineBody>,
    /// One of your saved cards (`pm_…`), charged once the stock is reserved.
    #[schema(example = "pm_0193…")]
    #[serde(default)]
    pub payment_method_id: String,
    /// Instead of a saved card: pay on the provider's hosted checkout page,
    /// at the order's `checkout_url`.
    #[serde(default)]
    pub checkout: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OrderLineBody {
    pub sku: String,
    pub name: String,
    pub quantity: i64,
    pub unit_price: MoneyBody,
    pub line_total: MoneyBody,
}

/// One step of the order's life.
#[derive(Debug, Serialize, ToSchema)]
pub struct TransitionBody {
    /// Empty for the first entry.
    pub from: String,
    pub to: String,
    /// Stable: `created`, `stock_reserved`, `out_of_stock`,
    /// `payment_captured`, `card_declined`, `cancelled_by_customer`,
    /// `refund_requested`, `refund_issued`, ...
    pub cause: String,
    pub detail: String,
    pub at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OrderBody {
    pub id: String,
    pub user_id: String,
    /// PENDING, RESERVED, PAID, FULFILLED, CANCELLED or FAILED.
    #[schema(example = "PAID")]
    pub status: String,
    pub lines: Vec<OrderLineBody>,
    pub total: MoneyBody,
    pub payment_method_id: String,
    /// `saved_method` or `checkout`.
    pub payment_kind: String,
    /// Where the shopper pays, for a checkout order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkout_url: Option<String>,
    /// Why a FAILED order failed: `out_of_stock`, `card_declined`,
    /// `insufficient_funds`, `payment_timeout`, `reservation_expired`, ...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_code: Option<String>,
    pub captured: MoneyBody,
    pub refunded: MoneyBody,
    /// Asked back and not yet confirmed by the payment service.
    pub refund_pending: MoneyBody,
    /// Every status change with its cause, oldest first (single orders only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<TransitionBody>,
    pub created_at: String,
    pub updated_at: String,
}

fn money_body(money: Option<pb::Money>) -> MoneyBody {
    let money = money.unwrap_or_default();
    MoneyBody {
        amount_minor: money.amount_minor,
        currency: money.currency,
    }
}

pub fn order_body(order: pb::Order) -> OrderBody {
    let checkout_url =
        (order.payment_kind == "checkout").then(|| format!("/checkout/{}", order.id));
    OrderBody {
        payment_kind: order.payment_kind,
        checkout_url,
        id: order.id,
        user_id: order.user_id,
        status: order.status,
        lines: order
            .lines
            .into_iter()
            .map(|l| OrderLineBody {
                sku: l.sku,
                name: l.name,
                quantity: l.quantity,
                unit_price: money_body(l.unit_price),
                line_total: money_body(l.line_total),
            })
            .collect(),
        total: money_body(order.total),
        payment_method_id: order.payment_method_id,
        failure_code: (!order.failure_code.is_empty()).then_some(order.failure_code),
        captured: money_body(order.captured),
        refunded: money_body(order.refunded),
        refund_pending: money_body(order.refund_pending),
        history: order
            .history
            .into_iter()
            .map(|t| TransitionBody {
                from: t.from_status,
                to: t.to_status,
                cause: t.cause,
                detail: t.detail,
                at: timestamp(t.at_millis),
            })
            .collect(),
        created_at: timestamp(order.created_at_millis),
        updated_at: timestamp(order.updated_at_millis),
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OrderPage {
    pub orders: Vec<OrderBody>,
    /// Pass as `cursor` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct OrderQuery {
    /// Only orders in this status.
    pub status: Option<String>,
    pub cursor: Option<String>,
    /// 1 to 100 (default 20).
    pub limit: Option<String>,
}

async fn list(
    state: &AppState,
    context: &RequestContext,
    caller: &Caller,
    query: OrderQuery,
    all_users: bool,
) -> Result<axum::Json<OrderPage>, Problem> {
    let message = pb::ListOrdersRequest {
        caller: grpc_caller(caller),
        all_users,
        status: query.status.unwrap_or_default(),
        cursor: query.cursor.unwrap_or_default(),
        limit: limit_param(&query.limit)?,
    };
    let page = answer(
        "orders",
        state
            .upstreams
            .orders
            .clone()
            .list_orders(request(context, message))
            .await,
    )?;
    Ok(axum::Json(OrderPage {
        orders: page.orders.into_iter().map(order_body).collect(),
        next_cursor: (!page.next_cursor.is_empty()).then_some(page.next_cursor),
    }))
}

/// Your orders, newest first.
#[utoipa::path(get, path = "/api/v1/orders", tag = "orders",
    security(("bearer" = []), ("cookie" = [])),
    params(OrderQuery),
    responses(
        (status = 200, body = OrderPage),
        (status = 401, description = "`unauthenticated`", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed` (`status`, `cursor` or `limit`)", body = ProblemDoc, content_type = "application/problem+json"),
    ))]
pub async fn list_my_orders(
    State(state): State<Arc<AppState>>,
    Extension(context): Extension<RequestContext>,
    caller: Caller,
    ApiQuery(query): ApiQuery<OrderQuery>,
) -> Result<axum::Json<OrderPage>, Problem> {
    list(&state, &context, &caller, query, false).await
}

/// Place an order. Send an `Idempotency-Key` header (a UUID): a retry with
/// the same key and body returns the same order (`Idempotent-Replayed:
/// true`), never a second one. The order starts PENDING; follow it with
/// `GET /api/v1/orders/{id}` until PAID or FAILED.
#[utoipa::path(post, path = "/api/v1/orders", tag = "orders",
    security(("bearer" = []), ("cookie" = [])),
    request_body = NewOrderBody,
    params(("Idempotency-Key" = String, Header, description = "1 to 255 visible characters, unique per order.")),
    responses(
        (status = 201, body = OrderBody, description = "Accepted (or the same order again, for a retry)."),
        (status = 401, description = "`unauthenticated`", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed` (`Idempotency-Key`, `lines…`, `payment_method_id`; a key reused with another body), `unknown_sku`, `mixed_currencies`.", body = ProblemDoc, content_type = "application/problem+json"),
    ))]
pub async fn create_order(
    State(state): State<Arc<AppState>>,
    Extension(context): Extension<RequestContext>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(body): ApiJson<NewOrderBody>,
) -> Result<Response, Problem> {
    let key = headers
        .get("idempotency-key")
        .map(|v| v.to_str().unwrap_or("\u{fffd}").to_owned())
        .unwrap_or_default();
    let message = pb::CreateOrderRequest {
        caller: grpc_caller(&caller),
        idempotency_key: key,
        lines: body
            .lines
            .into_iter()
            .map(|l| pb::LineRequest {
                sku: l.sku,
                quantity: l.quantity,
            })
            .collect(),
        payment_method_id: body.payment_method_id,
        checkout: body.checkout,
    };
    let created = answer(
        "orders",
        state
            .upstreams
            .orders
            .clone()
            .create_order(request(&context, message))
            .await,
    )?;
    let order = created
        .order
        .ok_or_else(|| Problem::internal(&"orders answered without an order"))?;
    let location = format!("/api/v1/orders/{}", order.id);
    let mut response = (StatusCode::CREATED, axum::Json(order_body(order))).into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert("location", value);
    }
    if created.replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// One of your orders, with its lines and history.
#[utoipa::path(get, path = "/api/v1/orders/{id}", tag = "orders",
    security(("bearer" = []), ("cookie" = [])),
    params(("id" = String, Path, description = "The order's id (`ord_…`).")),
    responses(
        (status = 200, body = OrderBody),
        (status = 401, description = "`unauthenticated`", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`: no such order of yours.", body = ProblemDoc, content_type = "application/problem+json"),
    ))]
pub async fn get_order(
    State(state): State<Arc<AppState>>,
    Extension(context): Extension<RequestContext>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<OrderBody>, Problem> {
    let message = pb::OrderRef {
        caller: grpc_caller(&caller),
        order_id: id,
    };
    let order = answer(
        "orders",
        state
            .upstreams
            .orders
            .clone()
            .get_order(request(&context, message))
            .await,
    )?;
    Ok(axum::Json(order_body(order)))
}

/// Cancel an order: before payment its stock is released; after payment
/// the capture is refunded. Not possible once fulfilled, failed or
/// cancelled.
#[utoipa::path(post, path = "/api/v1/orders/{id}/cancel", tag = "orders",
    security(("bearer" = []), ("cookie" = [])),
    params(("id" = String, Path, description = "The order's id (`ord_…`).")),
    responses(
        (status = 200, body = OrderBody),
        (status = 401, description = "`unauthenticated`", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "`order_state_conflict`: the order can no longer be cancelled; `order_changed`: retry.", body = ProblemDoc, content_type = "application/problem+json"),
    ))]
pub async fn cancel_order(
    State(state): State<Arc<AppState>>,
    Extension(context): Extension<RequestContext>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<OrderBody>, Problem> {
    let message = pb::OrderRef {
        caller: grpc_caller(&caller),
        order_id: id,
    };
    let order = answer(
        "orders",
        state
            .upstreams
            .orders
            .clone()
            .cancel_order(request(&context, message))
            .await,
    )?;
    Ok(axum::Json(order_body(order)))
}

/// How an order's checkout stands.
#[derive(Debug, Serialize, ToSchema)]
pub struct CheckoutBody {
    pub order_id: String,
    /// `open` (waiting for the shopper), `paid` or `failed`.
    #[schema(example = "paid")]
    pub status: String,
    pub amount: MoneyBody,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_code: Option<String>,
    /// Where the shopper pays: the provider's page, or Kart's own.
    pub pay_url: String,
}

/// The verify call: asks the payment provider how this order's checkout
/// stands and settles the order if it has ended, for when the provider's
/// webhook is late or lost. Safe to repeat.
#[utoipa::path(post, path = "/api/v1/orders/{id}/checkout/verify", tag = "orders",
    security(("bearer" = []), ("cookie" = [])),
    params(("id" = String, Path, description = "The order's id (`ord_…`).")),
    responses(
        (status = 200, body = CheckoutBody),
        (status = 401, description = "`unauthenticated`", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`: no such order of yours, or its checkout is not open yet (its stock is being reserved).", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "`not_a_checkout`: the order is paid with a saved card.", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "`unavailable`: the provider did not answer; try again.", body = ProblemDoc, content_type = "application/problem+json"),
    ))]
pub async fn verify_checkout(
    State(state): State<Arc<AppState>>,
    Extension(context): Extension<RequestContext>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<CheckoutBody>, Problem> {
    let message = pb::OrderRef {
        caller: grpc_caller(&caller),
        order_id: id.clone(),
    };
    let order = answer(
        "orders",
        state
            .upstreams
            .orders
            .clone()
            .get_order(request(&context, message))
            .await,
    )?;
    if order.payment_kind != "checkout" {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "not_a_checkout",
            "This order is paid with a saved card; it has no checkout.",
        ));
    }
    let lookup = payments_pb::CheckoutRef {
        order_id: id.clone(),
        user_id: order.user_id,
    };
    let checkout = answer(
        "payments",
        state
            .upstreams
            .payments
            .clone()
            .verify_checkout(request(&context, lookup))
            .await,
    )?;
    Ok(axum::Json(CheckoutBody {
        pay_url: if checkout.url.is_empty() {
            format!("/checkout/{id}")
        } else {
            checkout.url
        },
        order_id: checkout.order_id,
        status: checkout.status,
        amount: MoneyBody {
            amount_minor: checkout.amount_minor,
            currency: checkout.currency,
        },
        failure_code: Some(checkout.failure_code).filter(|c| !c.is_empty()),
    }))
}

/// Every shopper's orders, newest first (admin).
#[utoipa::path(get, path = "/api/v1/admin/orders", tag = "orders admin",
    security(("bearer" = []), ("cookie" = [])),
    params(OrderQuery),
    responses(
        (status = 200, body = OrderPage),
        (status = 401, description = "`unauthenticated`", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`", body = ProblemDoc, content_type = "application/problem+json"),
    ))]
pub async fn list_all_orders(
    State(state): State<Arc<AppState>>,
    Extension(context): Extension<RequestContext>,
    Admin(caller): Admin,
    ApiQuery(query): ApiQuery<OrderQuery>,
) -> Result<axum::Json<OrderPage>, Problem> {
    list(&state, &context, &caller, query, true).await
}

/// Mark a paid order as shipped (admin).
#[utoipa::path(post, path = "/api/v1/admin/orders/{id}/fulfil", tag = "orders admin",
    security(("bearer" = []), ("cookie" = [])),
    params(("id" = String, Path, description = "The order's id (`ord_…`).")),
    responses(
        (status = 200, body = OrderBody),
        (status = 401, description = "`unauthenticated`", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "`order_state_conflict`: only a PAID order can be fulfilled.", body = ProblemDoc, content_type = "application/problem+json"),
    ))]
pub async fn fulfil_order(
    State(state): State<Arc<AppState>>,
    Extension(context): Extension<RequestContext>,
    Admin(caller): Admin,
    Path(id): Path<String>,
) -> Result<axum::Json<OrderBody>, Problem> {
    let message = pb::OrderRef {
        caller: grpc_caller(&caller),
        order_id: id,
    };
    let order = answer(
        "orders",
        state
            .upstreams
            .orders
            .clone()
            .fulfil_order(request(&context, message))
            .await,
    )?;
    Ok(axum::Json(order_body(order)))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct RefundBody {
    /// Minor units; leave out for everything not yet refunded.
    #[serde(default)]
    pub amount_minor: Option<i64>,
    /// Why, for the order's history.
    #[schema(example = "damaged in transit")]
    pub reason: String,
}

/// Give money back for a paid or fulfilled order, in full or in part;
/// never more than was captured (admin). The refund is pending until the
/// payment service confirms it.
#[utoipa::path(post, path = "/api/v1/admin/orders/{id}/refund", tag = "orders admin",
    security(("bearer" = []), ("cookie" = [])),
    params(("id" = String, Path, description = "The order's id (`ord_…`).")),
    request_body = RefundBody,
    responses(
        (status = 200, body = OrderBody),
        (status = 401, description = "`unauthenticated`", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "`order_not_paid`", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "`refund_exceeds_capture` (`amount_minor`), `validation_failed` (`reason`)", body = ProblemDoc, content_type = "application/problem+json"),
    ))]
pub async fn refund_order(
    State(state): State<Arc<AppState>>,
    Extension(context): Extension<RequestContext>,
    Admin(caller): Admin,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<RefundBody>,
) -> Result<axum::Json<OrderBody>, Problem> {
    if body.amount_minor.is_some_and(|a| a <= 0) {
        return Err(Problem::validation(
            "amount_minor",
            "A refund is a positive amount in minor units; leave it out to refund everything left.",
        ));
    }
    let message = pb::RefundOrderRequest {
        caller: grpc_caller(&caller),
        order_id: id,
        amount_minor: body.amount_minor.unwrap_or(0),
        reason: body.reason,
    };
    let order = answer(
        "orders",
        state
            .upstreams
            .orders
            .clone()
            .refund_order(request(&context, message))
            .await,
    )?;
    Ok(axum::Json(order_body(order)))
}
