//! The hosted-checkout flow: the order returns a checkout URL, the shopper
//! pays on the simulated provider's page, and the provider's signed
//! webhook settles the order; webhooks are verified and applied once.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{Session, TestApp, WEBHOOK_SECRET};
use crate::orders::{key, settled};

/// Places a checkout order for `quantity` units; returns its id.
pub async fn checkout_order(app: &TestApp, shopper: &Session, sku: &str, quantity: i64) -> String {
    let placed = app
        .place(
            shopper,
            &key(),
            &json!({"lines": [{"sku": sku, "quantity": quantity}], "checkout": true}),
        )
        .await;
    let order = placed.expect(StatusCode::CREATED).clone();
    let id = order["id"].as_str().unwrap().to_owned();
    assert_eq!(order["payment_kind"], "checkout");
    assert_eq!(order["checkout_url"], format!("/checkout/{id}"));
    id
}

async fn page(app: &TestApp, token: &str, id: &str) -> (StatusCode, String) {
    let response = app
        .client
        .get(format!("{}/checkout/{id}", app.url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    (response.status(), response.text().await.unwrap())
}

/// The checkout page once the stock is reserved and the form is there.
pub async fn open_page(app: &TestApp, token: &str, id: &str) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = page(app, token, id).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        if body.contains("<form") {
            return body;
        }
        assert!(
            body.contains("Reserving your items"),
            "a waiting page until then: {body}"
        );
        assert!(tokio::time::Instant::now() < deadline, "never opened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn pay(app: &TestApp, token: &str, id: &str, number: &str) -> reqwest::Response {
    // As a browser would, but showing the redirect instead of following it.
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    client
        .post(format!("{}/checkout/{id}", app.url))
        .bearer_auth(token)
        .header("content-type", "application/x-www-form-urlencoded")
        // What a browser sends for the form (digits and spaces only here).
        .body(format!(
            "card_number={}&exp_month=12&exp_year=2031&cvc=123",
            number.replace(' ', "+")
        ))
        .send()
        .await
        .unwrap()
}

pub async fn the_hosted_checkout_takes_the_card_and_the_webhook_settles_it(app: &TestApp) {
    let admin = app.admin().await;
    app.stocked_product(&admin, "CHK-PAID", 1500, 4).await;
    let shopper = app.customer().await;
    let id = checkout_order(app, &shopper, "CHK-PAID", 2).await;
    let form = open_page(app, &shopper.token, &id).await;
    assert!(form.contains("30.00 EUR"), "the amount to pay: {form}");
    assert!(
        form.contains("<label for=\"card_number\">"),
        "labelled fields"
    );

    // Someone else sees no such order.
    let stranger = app.customer().await;
    let (status, _) = page(app, &stranger.token, &id).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A mistyped card: the form again, with what to fix; nothing charged.
    let typo = pay(app, &shopper.token, &id, "4242 4242 4242 4241").await;
    assert_eq!(typo.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let again = typo.text().await.unwrap();
    assert!(
        again.contains("role=\"alert\"") && again.contains("<form"),
        "{again}"
    );

    let paid = pay(app, &shopper.token, &id, "4242 4242 4242 4242").await;
    assert_eq!(paid.status(), StatusCode::SEE_OTHER);
    assert_eq!(paid.headers()["location"], format!("/checkout/{id}"));
    let order = app.order_until(&shopper.token, &id, settled).await;
    assert_eq!(order["status"], "PAID", "{order:#}");
    assert_eq!(order["captured"]["amount_minor"], 3000);
    let (_, done) = page(app, &shopper.token, &id).await;
    assert!(done.contains("Payment received"), "{done}");
    // Paying again changes nothing.
    pay(app, &shopper.token, &id, "4242 4242 4242 4242").await;
    let order = app
        .get(&format!("/api/v1/orders/{id}"), Some(&shopper.token))
        .await;
    assert_eq!(
        order.expect(StatusCode::OK)["captured"]["amount_minor"],
        3000
    );
    app.stock_until(&admin, "CHK-PAID", 2, 0).await;

    // A declined card fails the order and gives the stock back.
    let declined = checkout_order(app, &shopper, "CHK-PAID", 1).await;
    open_page(app, &shopper.token, &declined).await;
    pay(app, &shopper.token, &declined, "4000 0000 0000 0002").await;
    let failed = app.order_until(&shopper.token, &declined, settled).await;
    assert_eq!(
        (failed["status"].as_str(), failed["failure_code"].as_str()),
        (Some("FAILED"), Some("card_declined"))
    );
    let (_, page_text) = page(app, &shopper.token, &declined).await;
    assert!(page_text.contains("card_declined"), "{page_text}");
    app.stock_until(&admin, "CHK-PAID", 2, 0).await;
}

async fn deliver(
    app: &TestApp,
    provider: &str,
    payload: &[u8],
    signature: &str,
) -> crate::helpers::Reply {
    let response = app
        .client
        .post(format!("{}/api/v1/payments/webhooks/{provider}", app.url))
        .header("kart-signature", signature)
        .header("content-type", "application/json")
        .body(payload.to_vec())
        .send()
        .await
        .unwrap();
    crate::helpers::Reply::read(response).await
}

pub async fn webhooks_are_verified_and_applied_once_in_any_order(app: &TestApp) {
    let admin = app.admin().await;
    app.stocked_product(&admin, "CHK-HOOK", 700, 5).await;
    let shopper = app.customer().await;
    let id = checkout_order(app, &shopper, "CHK-HOOK", 1).await;
    open_page(app, &shopper.token, &id).await;

    let now = chrono::Utc::now().timestamp();
    let event = |event_id: &str, kind: &str| {
        serde_json::to_vec(&json!({
            "id": event_id, "type": kind, "order_id": id, "amount_minor": 700,
            "currency": "EUR", "reference": "ch_from_the_test", "failure_code": "card_declined",
        }))
        .unwrap()
    };
    let completed = event("evt_test_completed", "checkout.completed");
    let secret = WEBHOOK_SECRET.as_bytes();

    // Forged, tampered or stale: refused, and nothing happens.
    let forged = payments::webhooks::sign(b"not the secret", now, &completed);
    deliver(app, "simulated", &completed, &forged)
        .await
        .expect_problem(
            StatusCode::BAD_REQUEST,
            "invalid_signature",
            Some("signature"),
        );
    let signed = payments::webhooks::sign(secret, now, &completed);
    let tampered = event("evt_test_completed", "checkout.completed")
        .iter()
        .map(|b| if *b == b'7' { b'1' } else { *b })
        .collect::<Vec<u8>>();
    deliver(app, "simulated", &tampered, &signed)
        .await
        .expect_problem(
            StatusCode::BAD_REQUEST,
            "invalid_signature",
            Some("signature"),
        );
    let stale = payments::webhooks::sign(secret, now - 3600, &completed);
    deliver(app, "simulated", &completed, &stale)
        .await
        .expect_problem(
            StatusCode::BAD_REQUEST,
            "invalid_signature",
            Some("signature"),
        );
    deliver(app, "simulated", &completed, "")
        .await
        .expect_problem(
            StatusCode::BAD_REQUEST,
            "invalid_signature",
            Some("signature"),
        );
    deliver(app, "paypal", &completed, &signed)
        .await
        .expect_problem(StatusCode::NOT_FOUND, "not_found", None);
    let (_, still_open) = page(app, &shopper.token, &id).await;
    assert!(
        still_open.contains("<form"),
        "refused webhooks changed nothing"
    );

    // The real one settles the order; again, it is recognised.
    let first = deliver(app, "simulated", &completed, &signed).await;
    assert_eq!(
        first.expect(StatusCode::OK).clone(),
        json!({"applied": true})
    );
    let again = deliver(app, "simulated", &completed, &signed).await;
    assert_eq!(
        again.expect(StatusCode::OK).clone(),
        json!({"applied": false})
    );
    // A contradicting event that arrives late does not undo the payment.
    let late_failure = event("evt_test_failed", "checkout.failed");
    let late_signature = payments::webhooks::sign(secret, now, &late_failure);
    deliver(app, "simulated", &late_failure, &late_signature)
        .await
        .expect(StatusCode::OK);
    let order = app.order_until(&shopper.token, &id, settled).await;
    assert_eq!(order["status"], "PAID", "{order:#}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let order = app
        .get(&format!("/api/v1/orders/{id}"), Some(&shopper.token))
        .await;
    let order = order.expect(StatusCode::OK);
    assert_eq!(order["status"], "PAID");
    assert_eq!(order["captured"]["amount_minor"], 700, "one capture");
}
