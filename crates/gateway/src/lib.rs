//! The gateway: Kart's one public door.
//!
//! It keeps nothing durable and so scales by adding replicas. It serves the
//! public REST API under `/api/v1`, forwarding to the services over gRPC
//! ([`upstream`]), with its OpenAPI document at `/api/openapi.json` and a
//! reference page at `/api/docs` ([`docs`]).
//!
//! - [`auth`]: access tokens, session cookies, roles.
//! - [`limits`]: rate limits per client IP and per user.
//! - [`extract`]: JSON and query extractors whose rejections are problems.
//! - [`api`]: the resources, each with its routes and JSON shapes.
//!
//! Timeouts, the body size limit and request ids come from `kit::http`,
//! like every service's.

pub mod api;
pub mod auth;
pub mod catalog_cache;
pub mod checkout;
pub mod docs;
pub mod extract;
pub mod images;
pub mod limits;
pub mod live;
pub mod upstream;
pub mod web;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use kit::config::GatewaySettings;
use kit::migrate::Migration;
use kit::{Service, ServiceContext, ServiceParts};
use serde::Serialize;
use tower_http::cors::{AllowOrigin, CorsLayer};
use utoipa_axum::router::OpenApiRouter;

use crate::auth::TokenKeys;
use crate::limits::RateLimiter;
use crate::upstream::Upstreams;

/// What every API handler shares.
pub struct AppState {
    pub upstreams: Upstreams,
    pub keys: TokenKeys,
    pub ip_limit: Option<RateLimiter>,
    pub user_limit: Option<RateLimiter>,
    pub gateway: GatewaySettings,
    /// Orders that just moved, for live status streams.
    pub order_changes: live::OrderChanges,
    /// Public catalog answers already given.
    pub catalog_cache: Arc<catalog_cache::CatalogCache>,
    /// The event bus, for the console's topic view.
    pub bus: kit::SharedBus,
    /// The services behind the gateway and a plain HTTP client to reach
    /// their operational endpoints (readiness, consumer positions).
    pub services: Vec<Upstream>,
    pub http: reqwest::Client,
}

/// A service the gateway forwards to, and where it lives.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub name: String,
    pub url: String,
}

/// The gateway service. `upstreams` are the services behind it.
#[derive(Debug, Default, Clone)]
pub struct Gateway {
    pub upstreams: Vec<Upstream>,
}

#[async_trait]
impl Service for Gateway {
    fn name(&self) -> &'static str {
        "gateway"
    }

    fn default_port(&self) -> u16 {
        8080
    }

    fn migrations(&self) -> Option<&'static [Migration]> {
        None
    }

    async fn build(&self, context: &ServiceContext) -> anyhow::Result<ServiceParts> {
        let settings = &context.settings;
        let gateway = settings.gateway.clone();
        let order_changes = live::OrderChanges::default();
        let catalog_cache = Arc::new(catalog_cache::CatalogCache::new(
            Duration::from_millis(gateway.catalog_cache_ttl_ms),
            gateway.catalog_cache_max_bytes,
            &context.metrics,
        ));
        let state = Arc::new(AppState {
            upstreams: Upstreams::connect(
                &self.upstreams,
                Duration::from_secs(gateway.upstream_timeout_secs),
                &context.local,
            )?,
            keys: TokenKeys::load(settings)?,
            ip_limit: RateLimiter::new(gateway.ip_rate_per_sec, gateway.ip_burst),
            user_limit: RateLimiter::new(gateway.user_rate_per_sec, gateway.user_burst),
            gateway: gateway.clone(),
            order_changes: order_changes.clone(),
            catalog_cache: Arc::clone(&catalog_cache),
            bus: Arc::clone(&context.bus),
            services: self.upstreams.clone(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(2))
                .build()?,
        });
        let (api, openapi) = OpenApiRouter::with_openapi(docs::base())
            .merge(api::auth::router())
            .merge(api::me::router())
            .merge(api::orders::router())
            .merge(api::products::router())
            .merge(api::stock::router())
            .merge(api::mail::router())
            .merge(api::stats::router())
            .merge(api::bus::router())
            .routes(utoipa_axum::routes!(checkout::webhook))
            .routes(utoipa_axum::routes!(live::order_stream))
            .route(
                "/checkout/{order_id}",
                axum::routing::get(checkout::show).post(checkout::pay),
            )
            .split_for_parts();
        let api = api
            .layer(axum::middleware::from_fn_with_state(
                Arc::clone(&state),
                limits::limit_by_ip,
            ))
            .with_state(state);
        let openapi_json = Arc::new(serde_json::to_string_pretty(&openapi)?);
        let docs_html = Arc::new(docs::html(&openapi));

        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        let status_state = Arc::new(StatusState {
            client,
            upstreams: self.upstreams.clone(),
        });
        let routes = Router::new()
            .route(
                "/api/openapi.json",
                get(move || {
                    let body = Arc::clone(&openapi_json);
                    async move {
                        (
                            [(header::CONTENT_TYPE, "application/json")],
                            body.as_str().to_owned(),
                        )
                    }
                }),
            )
            .route(
                "/api/docs",
                get(move || {
                    let body = Arc::clone(&docs_html);
                    async move { Html(body.as_str().to_owned()) }
                }),
            )
            .route("/api/v1/status", get(status).with_state(status_state))
            .route("/images/products/{file}", get(images::product_image))
            .merge(web::routes())
            .merge(api);
        Ok(ServiceParts {
            routes,
            cors: cors(&gateway)?,
            workers: vec![
                kit::Worker::new(
                    "live-order-status",
                    order_changes.follow(Arc::clone(&context.bus), context.shutdown.clone()),
                ),
                kit::Worker::new(
                    "catalog-cache-invalidation",
                    catalog_cache.follow(Arc::clone(&context.bus), context.shutdown.clone()),
                ),
            ],
            ..ServiceParts::default()
        })
    }
}

/// Browsers on the configured origins may call the API, with cookies.
/// Without any, only pages served by the gateway itself can.
fn cors(gateway: &GatewaySettings) -> anyhow::Result<Option<CorsLayer>> {
    if gateway.cors_allowed_origins.is_empty() {
        return Ok(None);
    }
    let origins = gateway
        .cors_allowed_origins
        .iter()
        .map(|o| {
            HeaderValue::from_str(o).map_err(|_| {
                anyhow::anyhow!(
                    "configuration key `gateway.cors_allowed_origins`: `{o}` is not an origin"
                )
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_credentials(true)
            .allow_methods([Method::GET, Method::POST, Method::PATCH, Method::DELETE])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                HeaderName::from_static("x-request-id"),
                HeaderName::from_static("idempotency-key"),
            ])
            .expose_headers([HeaderName::from_static("x-request-id"), header::RETRY_AFTER])
            .max_age(Duration::from_secs(600)),
    ))
}

struct StatusState {
    client: reqwest::Client,
    upstreams: Vec<Upstream>,
}

#[derive(Debug, Serialize)]
struct ServiceStatus {
    name: String,
    url: String,
    ready: bool,
}

#[derive(Debug, Serialize)]
struct SystemStatus {
    ready: bool,
    services: Vec<ServiceStatus>,
}

/// Joins a consumer group of this process's own (a fresh id starting with
/// `prefix`) on `topics`, retrying until it can; `None` on shutdown. For
/// readers that every gateway replica must run on every event.
async fn subscribe_in_own_group(
    bus: &kit::SharedBus,
    prefix: &str,
    topics: &[String],
    shutdown: &tokio_util::sync::CancellationToken,
) -> Option<Box<dyn kit::bus::Subscription>> {
    let group = kit::new_id(prefix);
    let mut backoff = kit::outbox::Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        match bus.subscribe(&group, topics).await {
            Ok(subscription) => return Some(subscription),
            Err(error) => {
                tracing::warn!(%error, group, "cannot subscribe to the bus; retrying");
                kit::outbox::sleep_or_cancel(backoff.next_delay(), shutdown).await;
                if shutdown.is_cancelled() {
                    return None;
                }
            }
        }
    }
}

/// Every upstream's readiness, asked in parallel.
async fn status(State(state): State<Arc<StatusState>>) -> impl IntoResponse {
    let checks = state.upstreams.iter().map(|upstream| {
        let client = state.client.clone();
        async move {
            let ready = client
                .get(format!("{}/readyz", upstream.url))
                .send()
                .await
                .map(|r| r.status().is_success())
                .unwrap_or(false);
            ServiceStatus {
                name: upstream.name.clone(),
                url: upstream.url.clone(),
                ready,
            }
        }
    });
    let services = futures_util::future::join_all(checks).await;
    axum::Json(SystemStatus {
        ready: services.iter().all(|s| s.ready),
        services,
    })
}
