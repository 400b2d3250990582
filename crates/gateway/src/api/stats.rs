//! Analytics for admins: per-minute figures of a recent window, and the
//! rebuild that recomputes them from the topics.

use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use contracts::grpc::analytics::v1 as pb;
use kit::http::RequestContext;
use kit::problem::Problem;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{MoneyBody, ProblemDoc, int_param, timestamp};
use crate::AppState;
use crate::auth::Admin;
use crate::extract::ApiQuery;
use crate::upstream::{answer, request};

pub fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(stats))
        .routes(routes!(rebuild))
        .routes(routes!(lag))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatsQuery {
    /// The window: this many minutes up to now, 1 to 1440 (default 60).
    pub minutes: Option<String>,
    /// How many products to rank, 1 to 100 (default 10).
    pub top: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LatencyBody {
    /// Paid orders measured.
    pub count: u64,
    pub p50_ms: i64,
    pub p95_ms: i64,
    pub p99_ms: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MinuteBody {
    /// The minute's start (RFC 3339).
    pub minute: String,
    pub orders_created: u64,
    pub orders_paid: u64,
    pub orders_failed: u64,
    pub orders_cancelled: u64,
    pub payments_captured: u64,
    pub payments_failed: u64,
    pub revenue: Vec<MoneyBody>,
    /// Order-to-paid percentiles of the orders paid in this minute.
    pub order_to_paid: LatencyBody,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CurrencyBody {
    pub currency: String,
    pub revenue_minor: i64,
    pub orders_paid: u64,
    pub average_order_minor: i64,
    pub refunded_minor: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProductSalesBody {
    pub sku: String,
    pub units: u64,
    pub revenue: MoneyBody,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StatsBody {
    pub from: String,
    pub to: String,
    /// Minutes with something in them, oldest first.
    pub minutes: Vec<MinuteBody>,
    pub orders_created: u64,
    pub orders_paid: u64,
    pub orders_failed: u64,
    pub orders_cancelled: u64,
    pub payments_captured: u64,
    pub payments_failed: u64,
    /// Captured over tried; absent when no payment was tried.
    pub payment_success_rate: Option<f64>,
    pub currencies: Vec<CurrencyBody>,
    pub order_to_paid: LatencyBody,
    /// By units sold, of the orders paid in the window.
    pub top_products: Vec<ProductSalesBody>,
    /// Events read in the window, by CloudEvents type.
    pub events: std::collections::BTreeMap<String, u64>,
}

fn money(currency: String, amount_minor: i64) -> MoneyBody {
    MoneyBody {
        amount_minor,
        currency,
    }
}

fn stats_body(stats: pb::Stats) -> StatsBody {
    StatsBody {
        from: timestamp(stats.from_minute * 60_000),
        to: timestamp(stats.to_minute * 60_000),
        minutes: stats
            .minutes
            .into_iter()
            .map(|m| MinuteBody {
                minute: timestamp(m.minute * 60_000),
                orders_created: m.orders_created,
                orders_paid: m.orders_paid,
                orders_failed: m.orders_failed,
                orders_cancelled: m.orders_cancelled,
                payments_captured: m.payments_captured,
                payments_failed: m.payments_failed,
                revenue: m
                    .revenue
                    .into_iter()
                    .map(|a| money(a.currency, a.amount_minor))
                    .collect(),
                order_to_paid: LatencyBody {
                    count: m.orders_paid,
                    p50_ms: m.order_to_paid_p50_ms,
                    p95_ms: m.order_to_paid_p95_ms,
                    p99_ms: m.order_to_paid_p99_ms,
                },
            })
            .collect(),
        orders_created: stats.orders_created,
        orders_paid: stats.orders_paid,
        orders_failed: stats.orders_failed,
        orders_cancelled: stats.orders_cancelled,
        payments_captured: stats.payments_captured,
        payments_failed: stats.payments_failed,
        payment_success_rate: stats.payment_success_rate,
        currencies: stats
            .currencies
            .into_iter()
            .map(|c| CurrencyBody {
                currency: c.currency,
                revenue_minor: c.revenue_minor,
                orders_paid: c.orders_paid,
                average_order_minor: c.average_order_minor,
                refunded_minor: c.refunded_minor,
            })
            .collect(),
        order_to_paid: LatencyBody {
            count: stats.order_to_paid_count,
            p50_ms: stats.order_to_paid_p50_ms,
            p95_ms: stats.order_to_paid_p95_ms,
            p99_ms: stats.order_to_paid_p99_ms,
        },
        top_products: stats
            .top_products
            .into_iter()
            .map(|p| ProductSalesBody {
                sku: p.sku,
                units: p.units,
                revenue: money(p.currency, p.revenue_minor),
            })
            .collect(),
        events: stats.events.into_iter().collect(),
    }
}

/// Orders, revenue, payment success, order-to-paid latency and top
/// products, per minute and in total, over the last `minutes`.
#[utoipa::path(get, path = "/api/v1/admin/stats", tag = "analytics admin",
    security(("bearer" = []), ("cookie" = [])),
    params(StatsQuery),
    responses(
        (status = 200, body = StatsBody),
        (status = 403, description = "`forbidden`: not an admin.", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`: `field` is `minutes` or `top`.", body = ProblemDoc, content_type = "application/problem+json"),
    ))]
pub async fn stats(
    State(state): State<Arc<AppState>>,
    Extension(context): Extension<RequestContext>,
    _admin: Admin,
    ApiQuery(query): ApiQuery<StatsQuery>,
) -> Result<axum::Json<StatsBody>, Problem> {
    let minutes = match int_param("minutes", &query.minutes)? {
        None => 60,
        Some(n @ 1..=1440) => n,
        Some(_) => return Err(Problem::validation("minutes", "minutes is 1 to 1440.")),
    };
    let top = match int_param("top", &query.top)? {
        None => 10,
        Some(n @ 1..=100) => n as u32,
        Some(_) => return Err(Problem::validation("top", "top is 1 to 100.")),
    };
    // The current minute is in the window, so what just happened shows.
    let to_minute = chrono::Utc::now().timestamp().div_euclid(60) + 1;
    let message = pb::StatsRequest {
        from_minute: to_minute - minutes,
        to_minute,
        top,
    };
    let stats = answer(
        "analytics",
        state
            .upstreams
            .analytics
            .clone()
            .get_stats(request(&context, message))
            .await,
    )?;
    Ok(axum::Json(stats_body(stats)))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RebuildBody {
    /// Records on the topics when the rebuild began, all read again.
    pub records_to_replay: u64,
}

/// Forget every figure and recompute them from the topics, from the start.
/// Answers at once; `GET /api/v1/admin/analytics/lag` reads 0 when done.
#[utoipa::path(post, path = "/api/v1/admin/analytics/rebuild", tag = "analytics admin",
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 202, description = "The replay has begun.", body = RebuildBody),
        (status = 403, description = "`forbidden`: not an admin.", body = ProblemDoc, content_type = "application/problem+json"),
    ))]
pub async fn rebuild(
    State(state): State<Arc<AppState>>,
    Extension(context): Extension<RequestContext>,
    _admin: Admin,
) -> Result<(axum::http::StatusCode, axum::Json<RebuildBody>), Problem> {
    let started = answer(
        "analytics",
        state
            .upstreams
            .analytics
            .clone()
            .rebuild(request(&context, pb::RebuildRequest {}))
            .await,
    )?;
    Ok((
        axum::http::StatusCode::ACCEPTED,
        axum::Json(RebuildBody {
            records_to_replay: started.records_to_replay,
        }),
    ))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LagBody {
    /// Records on the topics analytics has not read yet.
    pub records_behind: u64,
}

/// How far analytics is behind the topics (0: its figures are current).
#[utoipa::path(get, path = "/api/v1/admin/analytics/lag", tag = "analytics admin",
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, body = LagBody),
        (status = 403, description = "`forbidden`: not an admin.", body = ProblemDoc, content_type = "application/problem+json"),
    ))]
pub async fn lag(
    State(state): State<Arc<AppState>>,
    Extension(context): Extension<RequestContext>,
    _admin: Admin,
) -> Result<axum::Json<LagBody>, Problem> {
    let lag = answer(
        "analytics",
        state
            .upstreams
            .analytics
            .clone()
            .get_lag(request(&context, pb::LagRequest {}))
            .await,
    )?;
    Ok(axum::Json(LagBody {
        records_behind: lag.records_behind,
    }))
}
