//! The catalog: public browsing and search, admin editing.

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use contracts::grpc::catalog::v1 as pb;
use kit::http::RequestContext;
use kit::problem::Problem;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{MoneyBody, ProblemDoc, bool_param, int_param, limit_param, timestamp};
use crate::AppState;
use crate::auth::Admin;
use crate::extract::{ApiJson, ApiQuery};
use crate::upstream::{answer, request};

pub fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list_products))
        .routes(routes!(search_products))
        .routes(routes!(get_product))
        .routes(routes!(admin_list_products, create_product))
        .routes(routes!(admin_get_product, update_product, archive_product))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProductBody {
    #[schema(example = "prd_0193a4f0c2b87d3e9a1f5c6b7d8e9f03")]
    pub id: String,
    #[schema(example = "MUG-STONEWARE")]
    pub sku: String,
    pub name: String,
    pub description: String,
    pub price: MoneyBody,
    pub image_url: String,
    #[schema(example = "kitchen")]
    pub category: String,
    /// On sale. Archived products are shown to admins only.
    pub active: bool,
    pub created_at: String,
    pub updated_at: String,
}

pub fn product_body(p: pb::Product) -> ProductBody {
    let price = p.price.unwrap_or_default();
    ProductBody {
        id: p.id,
        sku: p.sku,
        name: p.name,
        description: p.description,
        price: MoneyBody {
            amount_minor: price.amount_minor,
            currency: price.currency,
        },
        image_url: p.image_url,
        category: p.category,
        active: p.active,
        created_at: timestamp(p.created_at),
        updated_at: timestamp(p.updated_at),
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProductPage {
    pub products: Vec<ProductBody>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only this category (a slug, e.g. `coffee`).
    pub category: Option<String>,
    /// Minimum price in minor units.
    pub min_price: Option<String>,
    /// Maximum price in minor units.
    pub max_price: Option<String>,
    /// From the previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// 1 to 100 (default 20).
    pub limit: Option<String>,
    /// Admin list only: include archived products.
    pub include_archived: Option<String>,
}

/// The catalog's list request for `query`, checked.
fn list_request(
    query: ListQuery,
    include_archived: bool,
) -> Result<pb::ListProductsRequest, Problem> {
    Ok(pb::ListProductsRequest {
        category: query.category.unwrap_or_default(),
        min_price_minor: int_param("min_price", &query.min_price)?,
        max_price_minor: int_param("max_price", &query.max_price)?,
        include_archived,
        cursor: query.cursor.unwrap_or_default(),
        limit: limit_param(&query.limit)?,
    })
}

async fn list(
    state: &AppState,
    context: &RequestContext,
    message: pb::ListProductsRequest,
) -> Result<ProductPage, Problem> {
    let page = answer(
        "catalog",
        state
            .upstreams
            .catalog
            .clone()
            .list_products(request(context, message))
            .await,
    )?;
    Ok(ProductPage {
        products: page.products.into_iter().map(product_body).collect(),
        next_cursor: Some(page.next_cursor).filter(|c| !c.is_empty()),
    })
}

/// Products on sale, newest first, a page at a time.
#[utoipa::path(get, path = "/api/v1/products", tag = "catalog",
    params(ListQuery),
    responses(
        (status = 200, body = ProductPage),
        (status = 422, description = "`validation_failed`: `field` is `limit`, `cursor`, `category`, `min_price` or `max_price`.", body = ProblemDoc, content_type = "application/problem+json"),
    ))]
pub async fn list_products(
    State(state): State<Arc<AppState>>,
    Extension(context): Extension<RequestContext>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Response, Problem> {
    if bool_param("include_archived", &query.include_archived)? {
        return Err(Problem::forbidden(
            "Archived products are listed at /api/v1/admin/products, for admins.",
        ));
    }
    let message = list_request(query, false)?;
    state
        .catalog_cache
        .answer(format!("list {message:?}"), list(&state, &context, message))
        .await
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    /// What to look for: words in the name, SKU, category or description.
    /// Tolerates typos; the last word also matches as a prefix.
    pub q: Option<String>,
    /// Narrow the hits to one category (facets still count all).
    pub category: Option<String>,
    /// 1 to 100 (default 20).
    pub limit: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SearchHitBody {
    pub product: ProductBody,
    /// Relevance; higher is better.
    pub score: f32,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FacetBody {
    pub category: String,
    pub count: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SearchBody {
    pub hits: Vec<SearchHitBody>,
    /// Matching products per category.
    pub facets: Vec<FacetBody>,
    /// Matching products (in the chosen category, if any).
    pub total: u64,
}

/// Full-text search over the products on sale, best match first, with
/// category facets.
#[utoipa::path(get, path = "/api/v1/products/search", tag = "catalog",
    params(SearchQuery),
    responses(
        (status = 200, body = SearchBody),
        (status = 422, description = "`validation_failed`: `field` is `q`, `category` or `limit`.", body = ProblemDoc, content_type = "application/problem+json"),
    ))]
pub async fn search_products(
    State(state): State<Arc<AppState>>,
    Extension(context): Extension<RequestContext>,
    ApiQuery(query): ApiQuery<SearchQuery>,
) -> Result<Response, Problem> {
    let message = pb::SearchProductsRequest {
        query: query.q.unwrap_or_default(),
        category: query.category.unwrap_or_default(),
        limit: limit_param(&query.limit)?,
    };
    let key = format!("search {message:?}");
    state
        .catalog_cache
        .answer(key, search(&state, &context, message))
        .await
}

async fn search(
    state: &AppState,
    context: &RequestContext,
    message: pb::SearchProductsRequest,
) -> Result<SearchBody, Problem> {
    let result = answer(
        "catalog",
        state
            .upstreams
            .catalog
            .clone()
            .search_products(request(context, message))
            .await,
    )?;
    Ok(SearchBody {
        hits: result
            .hits
            .into_iter()
            .filter_map(|hit| {
                Some(SearchHitBody {
                    product: product_body(hit.product?),
                    score: hit.score,
                })
            })
            .collect(),
        facets: result
            .facets
            .into_iter()
            .map(|f| FacetBody {
                category: f.category,
                count: f.count,
            })
            .collect(),
        total: result.total,
    })
}

async fn get(
    state: &AppState,
    context: &RequestContext,
    id: String,
    include_archived: bool,
) -> Result<ProductBody, Problem> {
    let message = pb::GetProductRequest {
        id,
        include_archived,
    };
    let product = answer(
        "catalog",
        state
            .upstreams
            .catalog
            .clone()
            .get_product(request(context, message))
            .await,
    )?;
    Ok(product_body(product))
}

/// One product on sale.
#[utoipa::path(get, path = "/api/v1/products/{id}", tag = "catalog",
    params(("id" = String, Path, description = "The product's id (`prd_…`).")),
    responses(
        (status = 200, body = ProductBody),
        (status = 404, description = "`not_found`: no such product on sale.", body = ProblemDoc, content_type = "application/problem+json"),
    ))]
pub async fn get_product(
    State(state): State<Arc<AppState>>,
    Extension(context): Extension<RequestContext>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    state
        .catalog_cache
        .answer(format!("product {id}"), get(&state, &context, id, false))
        .await
}

/// The catalog's answer to an admin write, once the gateway has dropped
/// its kept catalog answers: every write goes through here, so an admin
/// never reads their change's old version. Dropped whatever the answer,
/// since even a failed call (a timeout) may have changed the product.
fn written(
    state: &AppState,
    result: Result<tonic::Response<pb::Product>, tonic::Status>,
) -> Result<pb::Product, Problem> {
    state.catalog_cache.invalidate();
    answer("catalog", result)
}

/// Every product, archived ones included (`include_archived=true`).
#[utoipa::path(get, path = "/api/v1/admin/products", tag = "catalog admin",
    security(("bearer" = []), ("cookie" = [])),
    params(ListQuery),
    responses(
        (status = 200, body = ProductPage),
        (status = 401, description = "`unauthenticated`", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`: not an admin.", body = ProblemDoc, content_type = "application/problem+json"),
    ))]
pub async fn admin_list_products(
    State(state): State<Arc<AppState>>,
    Extension(context): Extension<RequestContext>,
    _admin: Admin,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<axum::Json<ProductPage>, Problem> {
    let include_archived = bool_param("include_archived", &query.include_archived)?;
    let message = list_request(query, include_archived)?;
    Ok(axum::Json(list(&state, &context, message).await?))
}

/// One product, archived or not.
#[utoipa::path(get, path = "/api/v1/admin/products/{id}", tag = "catalog admin",
    security(("bearer" = []), ("cookie" = [])),
    params(("id" = String, Path, description = "The product's id (`prd_…`).")),
    responses(
        (status = 200, body = ProductBody),
        (status = 403, description = "`forbidden`: not an admin.", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`", body = ProblemDoc, content_type = "application/problem+json"),
    ))]
pub async fn admin_get_product(
    State(state): State<Arc<AppState>>,
    Extension(context): Extension<RequestContext>,
    _admin: Admin,
    Path(id): Path<String>,
) -> Result<axum::Json<ProductBody>, Problem> {
    Ok(axum::Json(get(&state, &context, id, true).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct NewProductBody {
    /// Letters, digits and hyphens; stored upper case; unique.
    #[schema(example = "MUG-STONEWARE")]
    pub sku: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub price: MoneyBody,
    /// An https:// URL or a path on this site.
    #[serde(default)]
    pub image_url: String,
    pub category: String,
}

/// Create a product (on sale at once).
#[utoipa::path(post, path = "/api/v1/admin/products", tag = "catalog admin",
    security(("bearer" = []), ("cookie" = [])),
    request_body = NewProductBody,
    responses(
        (status = 201, body = ProductBody),
        (status = 403, description = "`forbidden`: not an admin.", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "`sku_taken`", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`, with `field`.", body = ProblemDoc, content_type = "application/problem+json"),
    ))]
pub async fn create_product(
    State(state): State<Arc<AppState>>,
    Extension(context): Extension<RequestContext>,
    Admin(admin): Admin,
    ApiJson(body): ApiJson<NewProductBody>,
) -> Result<Response, Problem> {
    let message = pb::CreateProductRequest {
        sku: body.sku,
        name: body.name,
        description: body.description,
        price: Some(pb::Money {
            amount_minor: body.price.amount_minor,
            currency: body.price.currency,
        }),
        image_url: body.image_url,
        category: body.category,
    };
    let product = written(
        &state,
        state
            .upstreams
            .catalog
            .clone()
            .create_product(request(&context, message))
            .await,
    )?;
    tracing::info!(admin = %admin.user_id, product_id = %product.id, "product created");
    Ok((StatusCode::CREATED, axum::Json(product_body(product))).into_response())
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductChangesBody {
    pub name: Option<String>,
    pub description: Option<String>,
    pub price: Option<MoneyBody>,
    pub image_url: Option<String>,
    pub category: Option<String>,
    /// `true` puts an archived product back on sale.
    pub active: Option<bool>,
}

/// Change some of a product's fields (the SKU never changes).
#[utoipa::path(patch, path = "/api/v1/admin/products/{id}", tag = "catalog admin",
    security(("bearer" = []), ("cookie" = [])),
    params(("id" = String, Path, description = "The product's id (`prd_…`).")),
    request_body = ProductChangesBody,
    responses(
        (status = 200, body = ProductBody),
        (status = 403, description = "`forbidden`: not an admin.", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`, with `field`.", body = ProblemDoc, content_type = "application/problem+json"),
    ))]
pub async fn update_product(
    State(state): State<Arc<AppState>>,
    Extension(context): Extension<RequestContext>,
    _admin: Admin,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ProductChangesBody>,
) -> Result<axum::Json<ProductBody>, Problem> {
    let message = pb::UpdateProductRequest {
        id,
        name: body.name,
        description: body.description,
        price: body.price.map(|p| pb::Money {
            amount_minor: p.amount_minor,
            currency: p.currency,
        }),
        image_url: body.image_url,
        category: body.category,
        active: body.active,
    };
    let product = written(
        &state,
        state
            .upstreams
            .catalog
            .clone()
            .update_product(request(&context, message))
            .await,
    )?;
    Ok(axum::Json(product_body(product)))
}

/// Take a product off sale. It is kept (past orders name it) and can be
/// put back with `PATCH {"active": true}`.
#[utoipa::path(delete, path = "/api/v1/admin/products/{id}", tag = "catalog admin",
    security(("bearer" = []), ("cookie" = [])),
    params(("id" = String, Path, description = "The product's id (`prd_…`).")),
    responses(
        (status = 200, description = "The archived product.", body = ProductBody),
        (status = 403, description = "`forbidden`: not an admin.", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`", body = ProblemDoc, content_type = "application/problem+json"),
    ))]
pub async fn archive_product(
    State(state): State<Arc<AppState>>,
    Extension(context): Extension<RequestContext>,
    _admin: Admin,
    Path(id): Path<String>,
) -> Result<axum::Json<ProductBody>, Problem> {
    let message = pb::ArchiveProductRequest { id };
    let product = written(
        &state,
        state
            .upstreams
            .catalog
            .clone()
            .archive_product(request(&context, message))
            .await,
    )?;
    Ok(axum::Json(product_body(product)))
}
