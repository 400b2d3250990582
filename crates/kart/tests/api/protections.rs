//! The door itself: limits, documentation, error shapes, outages.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{Storage, TestApp, test_settings};

pub async fn the_api_documents_itself(app: &TestApp) {
    let doc = app.get("/api/openapi.json", None).await;
    let doc = doc.expect(StatusCode::OK);
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "OpenAPI 3.1"
    );
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/api/v1/auth/signup", "post"),
        ("/api/v1/auth/signin", "post"),
        ("/api/v1/auth/refresh", "post"),
        ("/api/v1/auth/signout", "post"),
        ("/api/v1/me", "get"),
        ("/api/v1/me/payment-methods", "get"),
        ("/api/v1/me/payment-methods", "post"),
        ("/api/v1/me/payment-methods/{id}", "delete"),
        ("/api/v1/me/payment-methods/{id}/default", "post"),
        ("/api/v1/products", "get"),
        ("/api/v1/products/search", "get"),
        ("/api/v1/products/{id}", "get"),
        ("/api/v1/admin/products", "get"),
        ("/api/v1/admin/products", "post"),
        ("/api/v1/admin/products/{id}", "get"),
        ("/api/v1/admin/products/{id}", "patch"),
        ("/api/v1/admin/products/{id}", "delete"),
        ("/api/v1/stock", "get"),
        ("/api/v1/admin/stock/{sku}", "get"),
        ("/api/v1/admin/stock/{sku}/adjustments", "get"),
        ("/api/v1/admin/stock/{sku}/adjustments", "post"),
        ("/api/v1/orders", "get"),
        ("/api/v1/orders", "post"),
        ("/api/v1/orders/{id}", "get"),
        ("/api/v1/orders/{id}/cancel", "post"),
        ("/api/v1/admin/orders", "get"),
        ("/api/v1/admin/orders/{id}/fulfil", "post"),
        ("/api/v1/admin/orders/{id}/refund", "post"),
        ("/api/v1/payments/webhooks/{provider}", "post"),
    ] {
        let operation = &paths[path][method];
        assert!(operation.is_object(), "{method} {path} is documented");
        assert!(
            operation["summary"].is_string(),
            "{method} {path} says what it does"
        );
    }
    assert_eq!(
        paths
            .values()
            .map(|p| p.as_object().unwrap().len())
            .sum::<usize>(),
        29,
        "and nothing undocumented"
    );
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    assert!(schemas.contains_key("Problem") && schemas.contains_key("ProductBody"));
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());

    let page = app
        .client
        .get(format!("{}/api/docs", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = page.text().await.unwrap();
    assert!(html.contains("Kart API reference") && html.contains("/api/v1/products/search"));
    let root = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let home = root.get(format!("{}/", app.url)).send().await.unwrap();
    assert_eq!(home.headers()["location"], "/api/docs");
}

pub async fn errors_are_problems_with_request_ids(app: &TestApp) {
    let echoed = app
        .client
        .get(format!("{}/api/v1/products", app.url))
        .header("x-request-id", "req-from-client-42")
        .send()
        .await
        .unwrap();
    assert_eq!(echoed.headers()["x-request-id"], "req-from-client-42");
    let made_up = app.get("/api/v1/products", None).await;
    assert_eq!(made_up.headers["x-request-id"].to_str().unwrap().len(), 36);

    app.get("/api/v1/nothing-here", None).await.expect_problem(
        StatusCode::NOT_FOUND,
        "not_found",
        None,
    );
    app.call(Method::PUT, "/api/v1/products", None, Some(json!({})))
        .await
        .expect_problem(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", None);
    let huge = "x".repeat(2 << 20);
    let too_big = app
        .client
        .post(format!("{}/api/v1/auth/signup", app.url))
        .header("content-type", "application/json")
        .body(format!("{{\"email\": \"{huge}\"}}"))
        .send()
        .await
        .unwrap();
    crate::helpers::Reply::read(too_big).await.expect_problem(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        None,
    );
}

pub async fn a_service_down_is_a_503_that_reveals_nothing(app: &TestApp) {
    let catalog = app
        .system()
        .services
        .iter()
        .find(|s| s.name == "catalog")
        .unwrap();
    let address = catalog.addr.to_string();
    catalog.stop();
    let mut reply = app.get("/api/v1/products", None).await;
    for _ in 0..50 {
        if reply.status == StatusCode::SERVICE_UNAVAILABLE {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        reply = app.get("/api/v1/products", None).await;
    }
    reply.expect_problem(StatusCode::SERVICE_UNAVAILABLE, "unavailable", None);
    let text = reply.body.to_string();
    assert!(
        !text.contains(&address) && !text.contains("127.0.0.1") && !text.contains("tcp"),
        "{text}"
    );
    // The other services still answer.
    app.customer().await;
}

async fn rate_limits_apply_per_ip_and_per_user(storage: Storage) {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(storage, dir.path());
    settings.gateway.ip_rate_per_sec = 1;
    settings.gateway.ip_burst = 20;
    settings.gateway.user_rate_per_sec = 1;
    settings.gateway.user_burst = 3;
    let app = TestApp::spawn_with(dir, settings).await;
    let shopper = app.customer().await;
    for _ in 0..3 {
        app.get("/api/v1/me", Some(&shopper.token))
            .await
            .expect(StatusCode::OK);
    }
    let limited = app.get("/api/v1/me", Some(&shopper.token)).await;
    limited.expect_problem(StatusCode::TOO_MANY_REQUESTS, "rate_limited", None);
    let wait: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&wait), "Retry-After: {wait}");
    // Anonymous requests from the same IP still have their own budget...
    app.get("/api/v1/products", None)
        .await
        .expect(StatusCode::OK);
    // ...until the per-IP burst is spent too.
    let mut statuses = Vec::new();
    for _ in 0..25 {
        statuses.push(app.get("/api/v1/products", None).await.status);
    }
    assert!(
        statuses.contains(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    // Health checks are never limited.
    let health = app
        .client
        .get(format!("{}/healthz", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_apply_per_ip_and_per_user_embedded() {
    rate_limits_apply_per_ip_and_per_user(Storage::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_apply_per_ip_and_per_user_distributed() {
    rate_limits_apply_per_ip_and_per_user(Storage::Distributed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browsers_on_configured_origins_may_call_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(Storage::Embedded, dir.path());
    settings.gateway.cors_allowed_origins = vec!["https://shop.example.com".to_owned()];
    let app = TestApp::spawn_with(dir, settings).await;
    let preflight = |origin: &'static str| {
        app.client
            .request(
                Method::OPTIONS,
                format!("{}/api/v1/me/payment-methods", app.url),
            )
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
    };
    let allowed = preflight("https://shop.example.com").await.unwrap();
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://shop.example.com"
    );
    assert_eq!(
        allowed.headers()["access-control-allow-credentials"],
        "true"
    );
    let refused = preflight("https://evil.example").await.unwrap();
    assert!(
        refused
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distributed_mode_refuses_to_start_without_a_signing_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(Storage::Distributed, dir.path());
    settings.auth.jwt_secret = None;
    let error = kart::System::start(settings)
        .await
        .err()
        .expect("no start without a key");
    let message = format!("{error:#}");
    assert!(message.contains("auth.jwt_secret"), "{message}");
}
