//! The storefront and the console: static pages and scripts from `web/`,
//! compiled into the binary (nothing to build or install to run them).
//!
//! Each page address answers with its area's shell; the script draws the
//! page from the public API, so a link (an email's order link, a
//! bookmark) opens the right page directly.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

const STORE: &str = include_str!("../../../web/store.html");
const CONSOLE: &str = include_str!("../../../web/console.html");

/// (file name, content type, content).
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("../../../web/app.css"),
    ),
    (
        "common.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../web/common.js"),
    ),
    (
        "store.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../web/store.js"),
    ),
    (
        "console.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../web/console.js"),
    ),
];

/// Scripts and styles only from this site; no plugins; no framing by others.
/// Inline `style` attributes are allowed (the pages set a few), inline
/// scripts are not. Mail previews are sandboxed `srcdoc` frames.
const POLICY: &str = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; \
    script-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

fn page(html: &'static str) -> Response {
    let mut response = ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

async fn store() -> Response {
    page(STORE)
}

async fn console() -> Response {
    page(CONSOLE)
}

async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, content_type, body)) => (
            [
                (header::CONTENT_TYPE, *content_type),
                (header::CACHE_CONTROL, "no-cache"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            *body,
        )
            .into_response(),
        None => {
            kit::problem::Problem::new(StatusCode::NOT_FOUND, "not_found", "There is no such file.")
                .into_response()
        }
    }
}

/// The pages' routes.
pub fn routes() -> Router {
    Router::new()
        .route("/", get(store))
        .route("/products/{id}", get(store))
        .route("/cart", get(store))
        .route("/signin", get(store))
        .route("/signup", get(store))
        .route("/account", get(store))
        .route("/orders", get(store))
        .route("/orders/{id}", get(store))
        .route("/console", get(console))
        .route("/console/{*page}", get(console))
        .route("/static/{file}", get(asset))
}
