//! Serving HTTP: binding, the middleware every service shares, and the
//! health and metrics endpoints.
//!
//! Middleware, outermost first: the request id (taken from `x-request-id` or
//! made up, echoed back), the W3C trace context (taken from `traceparent` or
//! started), a span carrying both, request metrics, a timeout and a body
//! size limit.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tracing::Instrument;

use crate::bus::SharedBus;
use crate::db::Db;
use crate::metrics::{HttpLabels, Metrics, RouteLabels};
use crate::telemetry::{TraceParent, adopt_trace};

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// The request's identity, for handlers that pass it on (to events, to gRPC).
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub request_id: String,
    /// This hop's span in the caller's trace.
    pub trace: TraceParent,
}

/// What `/readyz` checks.
#[derive(Clone)]
pub struct Readiness {
    pub db: Option<Db>,
    pub bus: Option<SharedBus>,
}

/// Text made safe to put into HTML, in an element or a quoted attribute.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Wraps a service's routes with the shared middleware, health and metrics.
pub fn finish_router(
    service: &'static str,
    routes: Router,
    metrics: Metrics,
    readiness: Readiness,
    request_timeout: Duration,
    body_limit: usize,
    cors: Option<tower_http::cors::CorsLayer>,
) -> Router {
    let health = Router::new()
        .route("/healthz", get(move || healthz(service)))
        .route("/readyz", get(readyz).with_state(readiness.clone()))
        .route(
            "/consumer-positions",
            get(consumer_positions).with_state(readiness),
        )
        .route("/metrics", get(serve_metrics).with_state(metrics.clone()));
    let mut routes = routes
        .merge(health)
        .fallback(crate::problem::route_not_found)
        .method_not_allowed_fallback(method_not_allowed);
    // Over the fallbacks too: a preflight `OPTIONS` matches no route.
    if let Some(cors) = cors {
        routes = routes.layer(cors);
    }
    routes
        .layer(RequestBodyLimitLayer::new(body_limit))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::GATEWAY_TIMEOUT,
            request_timeout,
        ))
        .layer(middleware::map_response(problem_for_bare_errors))
        .layer(middleware::from_fn_with_state(
            Observed { service, metrics },
            observe,
        ))
}

/// What the observing middleware needs: whose requests these are, and
/// where to count them. Each connection runs in a task of its own, outside
/// the service's span, so the request span names the service itself.
#[derive(Clone)]
struct Observed {
    service: &'static str,
    metrics: Metrics,
}

async fn method_not_allowed() -> crate::problem::Problem {
    crate::problem::Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "This address does not take that method. Check the API reference.",
    )
}

/// The layers below the router (body limit, timeout) answer with bare
/// status codes; clients get the same problem+json as everywhere else.
async fn problem_for_bare_errors(response: Response) -> Response {
    use crate::problem::Problem;
    let bare = !response
        .headers()
        .contains_key(axum::http::header::CONTENT_TYPE)
        || response
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/plain"));
    if !bare {
        return response;
    }
    match response.status() {
        StatusCode::PAYLOAD_TOO_LARGE => Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            "The request body is larger than this API accepts.",
        )
        .into_response(),
        StatusCode::GATEWAY_TIMEOUT | StatusCode::REQUEST_TIMEOUT => Problem::new(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout",
            "The request took too long and was stopped. Try again.",
        )
        .into_response(),
        _ => response,
    }
}

/// Alive, and which service: whoever started the process on a port can
/// tell it is the one answering there, not another that holds the port.
async fn healthz(service: &'static str) -> impl IntoResponse {
    axum::Json(json!({ "status": "ok", "service": service }))
}

/// Where each of this service's consumer groups stands in each partition
/// (the positions kept beside its effects), for the console's lag view.
/// Served on the service's own port, which is inside the cluster.
async fn consumer_positions(State(readiness): State<Readiness>) -> Response {
    let Some(db) = &readiness.db else {
        return axum::Json(json!({ "positions": [] })).into_response();
    };
    match crate::consumer::positions(db, None).await {
        Ok(positions) => axum::Json(json!({ "positions": positions })).into_response(),
        Err(error) => crate::problem::Problem::internal(&error).into_response(),
    }
}

async fn readyz(State(readiness): State<Readiness>) -> Response {
    const CHECK_TIMEOUT: Duration = Duration::from_secs(2);
    let mut ready = true;
    let mut checks = serde_json::Map::new();
    if let Some(db) = &readiness.db {
        let result = tokio::time::timeout(CHECK_TIMEOUT, db.ping()).await;
        let ok = matches!(result, Ok(Ok(())));
        ready &= ok;
        checks.insert(
            "database".into(),
            json!(if ok { "ok" } else { "unreachable" }),
        );
    }
    if let Some(bus) = &readiness.bus {
        let result = tokio::time::timeout(CHECK_TIMEOUT, bus.ping()).await;
        let ok = matches!(result, Ok(Ok(())));
        ready &= ok;
        checks.insert("bus".into(), json!(if ok { "ok" } else { "unreachable" }));
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({ "status": if ready { "ready" } else { "not_ready" }, "checks": checks });
    (status, axum::Json(body)).into_response()
}

async fn serve_metrics(State(metrics): State<Metrics>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.encode(),
    )
        .into_response()
}

/// Request id, trace context, span, metrics and a closing log line.
async fn observe(State(observed): State<Observed>, mut request: Request, next: Next) -> Response {
    let Observed { service, metrics } = observed;
    let started = Instant::now();
    let request_id = request
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.is_ascii())
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let incoming = request
        .headers()
        .get(&TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .and_then(TraceParent::parse);
    let trace = incoming.map_or_else(TraceParent::new_root, |parent| parent.child());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().to_string();
    request.extensions_mut().insert(RequestContext {
        request_id: request_id.clone(),
        trace,
    });

    let span = tracing::info_span!(
        "http",
        service,
        request_id = %request_id,
        trace_id = %trace.trace_id(),
        method = %method,
        route = %route,
    );
    adopt_trace(&span, &incoming.unwrap_or(trace));
    let mut response = next.run(request).instrument(span.clone()).await;
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    span.in_scope(|| {
        tracing::info!(
            status,
            latency_ms = elapsed.as_secs_f64() * 1000.0,
            "request finished"
        );
    });
    metrics
        .http
        .requests
        .get_or_create(&HttpLabels {
            method: method.clone(),
            route: route.clone(),
            status,
        })
        .inc();
    metrics
        .http
        .duration
        .get_or_create(&RouteLabels { method, route })
        .observe(elapsed.as_secs_f64());
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    response
}

/// `count` different free loopback ports, for processes that must be told
/// each other's ports before they start. Every listener is held until all
/// are chosen: a port let go at once can be handed out again by the next
/// bind, and two services given one port left one of them dead while the
/// other answered its readiness checks in its place.
pub fn free_loopback_ports(count: usize) -> std::io::Result<Vec<u16>> {
    let listeners = (0..count)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()?;
    listeners
        .iter()
        .map(|listener| Ok(listener.local_addr()?.port()))
        .collect()
}

/// Binds a listener; port 0 asks the OS, and the address returned is the
/// one really bound, so tests can run many services side by side.
pub async fn bind(addr: SocketAddr) -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    Ok((listener, bound))
}

/// Serves until `shutdown`, then stops accepting and lets in-flight
/// requests finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    // No Nagle: a reply written in more than one segment otherwise waits
    // for the peer's delayed ACK, 40 ms on Linux, on every call.
    let listener = listener.tap_io(|stream| {
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "could not turn off Nagle's algorithm");
        }
    });
    // Handlers can see the peer address (the gateway rate-limits by it).
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown.cancelled_owned())
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    #[test]
    fn the_ports_handed_out_together_are_all_different() {
        // Enough that ports let go one by one repeat almost surely (the
        // OS picks from some 14,000), so the check fails if they were.
        let ports = free_loopback_ports(500).expect("free ports");
        let distinct: std::collections::BTreeSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), 500, "{ports:?}");
        assert!(ports.iter().all(|&port| port != 0));
    }

    #[tokio::test]
    async fn healthz_names_the_service_that_answers() {
        let router = finish_router(
            "catalog",
            Router::new(),
            Metrics::new("catalog"),
            Readiness {
                db: None,
                bus: None,
            },
            Duration::from_secs(5),
            1024,
            None,
        );
        let request = axum::http::Request::get("/healthz")
            .body(axum::body::Body::empty())
            .expect("request");
        let response = router.oneshot(request).await.expect("answered");
        assert_eq!(response.status(), StatusCode::OK);
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .expect("body");
        let body: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(body, json!({"status": "ok", "service": "catalog"}));
    }
}
