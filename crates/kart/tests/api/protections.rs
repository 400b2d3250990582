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
        ("/api/v1/orders/{id}/checkout/verify", "post"),
        ("/api/v1/admin/orders", "get"),
        ("/api/v1/admin/orders/{id}/fulfil", "post"),
        ("/api/v1/admin/orders/{id}/refund", "post"),
        ("/api/v1/payments/webhooks/{provider}", "post"),
        ("/api/v1/admin/mailbox", "get"),
        ("/api/v1/admin/mailbox/{message_id}", "get"),
        ("/api/v1/admin/dead-letters", "get"),
        ("/api/v1/admin/dead-letters/replay", "post"),
        ("/api/v1/admin/stats", "get"),
        ("/api/v1/admin/analytics/rebuild", "post"),
        ("/api/v1/admin/analytics/lag", "get"),
        ("/api/v1/orders/{id}/stream", "get"),
        ("/api/v1/admin/topics", "get"),
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
        39,
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
    // The shop's front page, with a policy that allows only this site's
    // scripts, and the scripts it loads.
    let home = app
        .client
        .get(format!("{}/", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(home.status(), StatusCode::OK);
    let policy = home.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(policy.contains("script-src 'self'"), "{policy}");
    assert!(home.text().await.unwrap().contains("/static/store.js"));
    for file in ["store.js", "console.js", "common.js", "app.css"] {
        let asset = app
            .client
            .get(format!("{}/static/{file}", app.url))
            .send()
            .await
            .unwrap();
        assert_eq!(asset.status(), StatusCode::OK, "{file}");
    }
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
    // A body over the limit is refused from its Content-Length, before it
    // is read. Raw HTTP, so the client need not finish sending 2 MiB to a
    // server that has already answered (a broken pipe otherwise).
    let (status, content_type, body) = too_large_request(&app.url).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(content_type, "application/problem+json");
    let problem: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(problem["code"], "body_too_large");
}

/// POSTs headers announcing a 2 MiB JSON body and sends none of it;
/// returns the status, content type and body of the answer.
async fn too_large_request(base: &str) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let head = format!(
        "POST /api/v1/auth/signup HTTP/1.1\r\nHost: {address}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        2 << 20
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    let answer = loop {
        let read =
            tokio::time::timeout(std::time::Duration::from_secs(10), stream.read(&mut buffer))
                .await
                .expect("an answer within 10 s")
                .unwrap();
        received.extend_from_slice(&buffer[..read]);
        let text = String::from_utf8_lossy(&received).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap())
                })
                .unwrap_or(0);
            if body.len() >= length || read == 0 {
                break (head.to_owned(), body.to_owned());
            }
        }
        assert!(read > 0, "the connection closed without an answer: {text}");
    };
    let (head, body) = answer;
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let content_type = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type:")
                .map(|v| v.trim().to_owned())
        })
        .unwrap_or_default();
    (status, content_type, body)
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
    // Each try asks for a page the gateway has not kept: an answer its
    // catalog cache still holds is served without the catalog.
    let page = |limit: u32| format!("/api/v1/products?limit={limit}");
    let mut reply = app.get(&page(1), None).await;
    for limit in 2..=50 {
        if reply.status == StatusCode::SERVICE_UNAVAILABLE {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        reply = app.get(&page(limit), None).await;
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
