//! Stock: what shoppers may see (available units) and what admins manage.

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, State};
use contracts::grpc::inventory::v1 as pb;
use kit::http::RequestContext;
use kit::problem::Problem;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ProblemDoc, int_param, timestamp};
use crate::AppState;
use crate::auth::Admin;
use crate::extract::{ApiJson, ApiQuery};
use crate::upstream::{answer, request};

pub fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(availability))
        .routes(routes!(stock_level))
        .routes(routes!(list_adjustments, adjust_stock))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AvailabilityQuery {
    /// Comma-separated SKUs, at most 100.
    #[param(example = "MUG-STONEWARE,BEANS-ETHIOPIA")]
    pub skus: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AvailabilityBody {
    pub sku: String,
    /// Units that can be ordered now.
    pub available: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AvailabilityList {
    /// SKUs Kart holds no stock of are absent.
    pub stock: Vec<AvailabilityBody>,
}

/// How many units of each SKU can be ordered now.
#[utoipa::path(get, path = "/api/v1/stock", tag = "stock",
    params(AvailabilityQuery),
    responses(
        (status = 200, body = AvailabilityList),
        (status = 422, description = "`validation_failed`: `field` is `skus` or `sku`.", body = ProblemDoc, content_type = "application/problem+json"),
    ))]
pub async fn availability(
    State(state): State<Arc<AppState>>,
    Extension(context): Extension<RequestContext>,
    ApiQuery(query): ApiQuery<AvailabilityQuery>,
) -> Result<axum::Json<AvailabilityList>, Problem> {
    let skus: Vec<String> = query
        .skus
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if skus.is_empty() {
        return Err(Problem::validation(
            "skus",
            "Name at least one SKU: ?skus=A,B.",
        ));
    }
    let message = pb::GetStockRequest { skus };
    let levels = answer(
        "inventory",
        state
            .upstreams
            .inventory
            .clone()
            .get_stock(request(&context, message))
            .await,
    )?;
    Ok(axum::Json(AvailabilityList {
        stock: levels
            .levels
            .into_iter()
            .map(|l| AvailabilityBody {
                sku: l.sku,
                available: l.available,
            })
            .collect(),
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StockLevelBody {
    pub sku: String,
    pub on_hand: i64,
    /// Held for orders not yet paid, cancelled or expired.
    pub reserved: i64,
    pub available: i64,
}

fn level_body(level: pb::StockLevel) -> StockLevelBody {
    StockLevelBody {
        sku: level.sku,
        on_hand: level.on_hand,
        reserved: level.reserved,
        available: level.available,
    }
}

/// The stock of one SKU: on hand, reserved, available.
#[utoipa::path(get, path = "/api/v1/admin/stock/{sku}", tag = "stock admin",
    security(("bearer" = []), ("cookie" = [])),
    params(("sku" = String, Path)),
    responses(
        (status = 200, body = StockLevelBody),
        (status = 403, description = "`forbidden`: not an admin.", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`: no stock was ever recorded for this SKU.", body = ProblemDoc, content_type = "application/problem+json"),
    ))]
pub async fn stock_level(
    State(state): State<Arc<AppState>>,
    Extension(context): Extension<RequestContext>,
    _admin: Admin,
    Path(sku): Path<String>,
) -> Result<axum::Json<StockLevelBody>, Problem> {
    let message = pb::GetStockRequest { skus: vec![sku] };
    let mut levels = answer(
        "inventory",
        state
            .upstreams
            .inventory
            .clone()
            .get_stock(request(&context, message))
            .await,
    )?;
    let level = levels
        .levels
        .pop()
        .ok_or_else(|| Problem::not_found("No stock was ever recorded for this SKU."))?;
    Ok(axum::Json(level_body(level)))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct AdjustmentBody {
    /// Units to add (or, negative, to remove). Stock never drops below what is reserved.
    #[schema(example = 25)]
    pub delta: i64,
    /// Kept in the audit trail.
    #[schema(example = "delivery from supplier")]
    pub reason: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AdjustmentRecordBody {
    pub delta: i64,
    pub reason: String,
    /// The admin who made it.
    pub actor: String,
    pub on_hand_after: i64,
    pub at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AdjustmentList {
    pub adjustments: Vec<AdjustmentRecordBody>,
}

/// Add or remove stock, with a reason for the audit trail.
#[utoipa::path(post, path = "/api/v1/admin/stock/{sku}/adjustments", tag = "stock admin",
    security(("bearer" = []), ("cookie" = [])),
    params(("sku" = String, Path)),
    request_body = AdjustmentBody,
    responses(
        (status = 200, description = "The stock after the change.", body = StockLevelBody),
        (status = 403, description = "`forbidden`: not an admin.", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "`insufficient_stock`: it would leave less than is reserved.", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`: `field` is `sku`, `delta` or `reason`.", body = ProblemDoc, content_type = "application/problem+json"),
    ))]
pub async fn adjust_stock(
    State(state): State<Arc<AppState>>,
    Extension(context): Extension<RequestContext>,
    Admin(admin): Admin,
    Path(sku): Path<String>,
    ApiJson(body): ApiJson<AdjustmentBody>,
) -> Result<axum::Json<StockLevelBody>, Problem> {
    let message = pb::AdjustStockRequest {
        sku,
        delta: body.delta,
        reason: body.reason,
        actor: admin.user_id,
    };
    let level = answer(
        "inventory",
        state
            .upstreams
            .inventory
            .clone()
            .adjust_stock(request(&context, message))
            .await,
    )?;
    Ok(axum::Json(level_body(level)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AdjustmentsQuery {
    /// 1 to 500 (default 50).
    pub limit: Option<String>,
}

/// The audit trail of one SKU, newest first.
#[utoipa::path(get, path = "/api/v1/admin/stock/{sku}/adjustments", tag = "stock admin",
    security(("bearer" = []), ("cookie" = [])),
    params(("sku" = String, Path), AdjustmentsQuery),
    responses(
        (status = 200, body = AdjustmentList),
        (status = 403, description = "`forbidden`: not an admin.", body = ProblemDoc, content_type = "application/problem+json"),
    ))]
pub async fn list_adjustments(
    State(state): State<Arc<AppState>>,
    Extension(context): Extension<RequestContext>,
    _admin: Admin,
    Path(sku): Path<String>,
    ApiQuery(query): ApiQuery<AdjustmentsQuery>,
) -> Result<axum::Json<AdjustmentList>, Problem> {
    let limit = match int_param("limit", &query.limit)? {
        None => 0,
        Some(n @ 1..=500) => n as u32,
        Some(_) => return Err(Problem::validation("limit", "limit is 1 to 500.")),
    };
    let message = pb::ListAdjustmentsRequest { sku, limit };
    let list = answer(
        "inventory",
        state
            .upstreams
            .inventory
            .clone()
            .list_adjustments(request(&context, message))
            .await,
    )?;
    Ok(axum::Json(AdjustmentList {
        adjustments: list
            .adjustments
            .into_iter()
            .map(|a| AdjustmentRecordBody {
                delta: a.delta,
                reason: a.reason,
                actor: a.actor,
                on_hand_after: a.on_hand_after,
                at: timestamp(a.at),
            })
            .collect(),
    }))
}
