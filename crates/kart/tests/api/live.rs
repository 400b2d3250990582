//! Live order status: the stream sends the order when it opens and again
//! the moment it changes (paid, a refund asked for and given), exactly as a
//! read shows it, to its owner only.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use crate::checkout::{checkout_order, open_page, pay};
use crate::helpers::TestApp;

/// Reads server-sent events from `response` until the next `order` event.
async fn next_order(response: &mut reqwest::Response, buffer: &mut String) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            let mut name = "message";
            let mut data = String::new();
            for line in event.lines() {
                if let Some(value) = line.strip_prefix("event:") {
                    name = if value.trim() == "order" {
                        "order"
                    } else {
                        "other"
                    };
                } else if let Some(value) = line.strip_prefix("data:") {
                    data.push_str(value.trim_start());
                }
            }
            if name == "order" {
                return serde_json::from_str(&data).unwrap();
            }
            continue;
        }
        let chunk = tokio::time::timeout_at(deadline, response.chunk())
            .await
            .expect("an order event within 30 s")
            .unwrap()
            .expect("the stream stays open");
        buffer.push_str(&String::from_utf8_lossy(&chunk));
    }
}

pub async fn the_order_stream_shows_paid_the_moment_it_happens(app: &TestApp) {
    let admin = app.admin().await;
    app.stocked_product(&admin, "LIVE-TEA", 900, 3).await;
    let shopper = app.customer().await;
    let id = checkout_order(app, &shopper, "LIVE-TEA", 1).await;
    open_page(app, &shopper.token, &id).await;

    let mut stream = app
        .client
        .get(format!("{}/api/v1/orders/{id}/stream", app.url))
        .bearer_auth(&shopper.token)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    assert!(
        stream.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut buffer = String::new();
    let first = next_order(&mut stream, &mut buffer).await;
    assert_eq!(first["id"], id.as_str());
    assert_eq!(first["status"], "RESERVED", "{first:#}");

    // Paid on the hosted page: the open stream says so, unasked.
    let paid = pay(app, &shopper.token, &id, "4242 4242 4242 4242").await;
    assert_eq!(paid.status(), StatusCode::SEE_OTHER);
    let next = next_order(&mut stream, &mut buffer).await;
    assert_eq!(next["status"], "PAID", "{next:#}");
    assert_eq!(next["captured"]["amount_minor"], 900);
    // The stream brought its copy up to date from the events' steps; it is
    // the order as a read shows it, history and times included.
    let read = app
        .get(&format!("/api/v1/orders/{id}"), Some(&shopper.token))
        .await;
    assert_eq!(read.expect(StatusCode::OK), &next);

    // A refund: asked for, then confirmed by the payment service. The
    // stream shows both from their events' steps, ending where a read does.
    let refund = app
        .post(
            &format!("/api/v1/admin/orders/{id}/refund"),
            Some(&admin.token),
            serde_json::json!({"amount_minor": 400, "reason": "one cup chipped"}),
        )
        .await;
    assert_eq!(
        refund.expect(StatusCode::OK)["refund_pending"]["amount_minor"],
        400
    );
    let mut refunded = next_order(&mut stream, &mut buffer).await;
    while refunded["refunded"]["amount_minor"] != 400 {
        assert_eq!(
            refunded["refund_pending"]["amount_minor"], 400,
            "asked for, not yet given back: {refunded:#}"
        );
        refunded = next_order(&mut stream, &mut buffer).await;
    }
    assert_eq!(
        refunded["refund_pending"]["amount_minor"], 0,
        "{refunded:#}"
    );
    assert_eq!(refunded["status"], "PAID");
    let read = app
        .get(&format!("/api/v1/orders/{id}"), Some(&shopper.token))
        .await;
    assert_eq!(read.expect(StatusCode::OK), &refunded);

    // Nobody else can watch it; nobody at all without a session.
    let stranger = app.customer().await;
    app.get(
        &format!("/api/v1/orders/{id}/stream"),
        Some(&stranger.token),
    )
    .await
    .expect_problem(StatusCode::NOT_FOUND, "not_found", None);
    app.get(&format!("/api/v1/orders/{id}/stream"), None)
        .await
        .expect_problem(StatusCode::UNAUTHORIZED, "unauthenticated", None);
}
