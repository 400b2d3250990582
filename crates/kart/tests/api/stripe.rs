//! Kart with `payments.provider = "stripe"`, against a local fake of
//! Stripe's API started by the test: saved cards become Stripe payment
//! methods and orders PaymentIntents; checkout orders go to a Stripe
//! Checkout page and come back by its signed webhook or the verify call;
//! refunds reach Stripe; every order's money matches Stripe's record.

use fake_stripe::FakeStripe;
use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::helpers::{Session, Storage, TestApp, test_settings};
use crate::orders::{DECLINED_CARD, GOOD_CARD, key, settled};

const API_KEY: &str = "sk_test_kart_e2e_0123456789";
const ENDPOINT_SECRET: &str = "whsec_kart_e2e_0123456789";

async fn spawn(storage: Storage) -> (TestApp, FakeStripe) {
    let fake = FakeStripe::start(API_KEY, ENDPOINT_SECRET).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(storage, dir.path());
    settings.payments.provider = kit::config::ProviderKind::Stripe;
    settings.payments.stripe.api_key = Some(SecretString::from(API_KEY));
    settings.payments.stripe.base_url = fake.url().to_owned();
    settings.payments.webhook_secret = Some(SecretString::from(ENDPOINT_SECRET));
    let app = TestApp::spawn_with(dir, settings).await;
    fake.deliver_webhooks_to(Some(format!("{}/api/v1/payments/webhooks/stripe", app.url)));
    (app, fake)
}

async fn order(app: &TestApp, shopper: &Session, body: Value) -> String {
    let placed = app.place(shopper, &key(), &body).await;
    placed.expect(StatusCode::CREATED)["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The Checkout Session Kart opened for an order, once it has.
/// The Checkout Session Kart opened for `order_id`, once a shopper can
/// reach it: Kart's checkout page redirects to it. The fake shows a
/// session the moment Kart asks for it, before Kart has recorded it; paying
/// or expiring it then would race Kart's own commit, which real Stripe
/// cannot do (the shopper only learns the session from Kart).
async fn session_of(app: &TestApp, fake: &FakeStripe, shopper: &Session, order_id: &str) -> Value {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    loop {
        if let Some(session) = fake.session_for_order(order_id) {
            let page = no_redirects
                .get(format!("{}/checkout/{order_id}", app.url))
                .bearer_auth(&shopper.token)
                .send()
                .await
                .unwrap();
            if page.status() == StatusCode::SEE_OTHER
                && page.headers()["location"] == session["url"].as_str().unwrap()
            {
                return session;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no Checkout Session for {order_id} reachable through Kart"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

async fn verify(app: &TestApp, shopper: &Session, id: &str) -> Value {
    app.post(
        &format!("/api/v1/orders/{id}/checkout/verify"),
        Some(&shopper.token),
        json!({}),
    )
    .await
    .expect(StatusCode::OK)
    .clone()
}

async fn scenario(storage: Storage) {
    let (app, fake) = spawn(storage).await;
    let admin = app.admin().await;
    app.stocked_product(&admin, "STRIPE-1", 1250, 20).await;
    let shopper = app.customer().await;

    // A saved card: a PaymentMethod on the shopper's Stripe customer.
    let card = app.saved_card(&shopper, GOOD_CARD).await;
    let listed = app
        .get("/api/v1/me/payment-methods", Some(&shopper.token))
        .await;
    let listed = listed.expect(StatusCode::OK).to_string();
    assert!(listed.contains("\"last4\":\"4242\""), "{listed}");
    // Kart's own ids start `pm_` too; Stripe's token is `cus_…/pm_…`.
    assert!(
        !listed.contains("cus_"),
        "the provider's token stays inside: {listed}"
    );

    // Paid with it: one PaymentIntent for the order's total.
    let paid = order(
        &app,
        &shopper,
        json!({"lines": [{"sku": "STRIPE-1", "quantity": 2}], "payment_method_id": card}),
    )
    .await;
    let done = app.order_until(&shopper.token, &paid, settled).await;
    assert_eq!(done["status"], "PAID", "{done:#}");
    let intents: Vec<Value> = fake
        .payment_intents()
        .into_iter()
        .filter(|pi| pi["metadata"]["kart_order_id"] == paid.as_str())
        .collect();
    assert_eq!(intents.len(), 1, "{intents:?}");
    assert_eq!(intents[0]["amount"], 2500);
    assert_eq!(intents[0]["currency"], "eur");
    assert_eq!(intents[0]["status"], "succeeded");

    // Cancelled after payment: Stripe refunds the PaymentIntent in full.
    app.post(
        &format!("/api/v1/orders/{paid}/cancel"),
        Some(&shopper.token),
        json!({}),
    )
    .await
    .expect(StatusCode::OK);
    let refunded = app
        .order_until(&shopper.token, &paid, |o| {
            o["refunded"]["amount_minor"] == 2500
        })
        .await;
    assert_eq!(refunded["status"], "CANCELLED");
    let refunds = fake.refunds();
    assert_eq!(refunds.len(), 1, "{refunds:?}");
    assert_eq!(refunds[0]["payment_intent"], intents[0]["id"]);
    assert_eq!(refunds[0]["amount"], 2500);

    // A card Stripe declines: the order fails with Stripe's reason.
    let declined_card = app.saved_card(&shopper, DECLINED_CARD).await;
    let declined = order(
        &app,
        &shopper,
        json!({"lines": [{"sku": "STRIPE-1", "quantity": 1}], "payment_method_id": declined_card}),
    )
    .await;
    let failed = app.order_until(&shopper.token, &declined, settled).await;
    assert_eq!(failed["status"], "FAILED");
    assert_eq!(failed["failure_code"], "card_declined");

    // Checkout: Kart's page sends the shopper to Stripe Checkout, Stripe's
    // signed webhook settles the order.
    let checkout = order(
        &app,
        &shopper,
        json!({"lines": [{"sku": "STRIPE-1", "quantity": 1}], "checkout": true}),
    )
    .await;
    let session = session_of(&app, &fake, &shopper, &checkout).await;
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let page = no_redirects
        .get(format!("{}/checkout/{checkout}", app.url))
        .bearer_auth(&shopper.token)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::SEE_OTHER);
    assert_eq!(page.headers()["location"], session["url"].as_str().unwrap());
    let session_id = session["id"].as_str().unwrap();
    fake.pay_session(session_id, "4242424242424242")
        .await
        .unwrap();
    let delivery = fake.deliveries().pop().unwrap();
    assert_eq!(delivery.status, Some(200), "Kart took the webhook");
    let done = app.order_until(&shopper.token, &checkout, settled).await;
    assert_eq!(done["status"], "PAID", "{done:#}");
    assert_eq!(done["captured"]["amount_minor"], 1250);
    // Stripe retries deliveries: the same event again is recognised.
    assert_eq!(fake.redeliver(&delivery).await, Some(200));
    let again = app
        .get(&format!("/api/v1/orders/{checkout}"), Some(&shopper.token))
        .await;
    assert_eq!(
        again.expect(StatusCode::OK)["captured"]["amount_minor"],
        1250
    );
    // Someone else's verify call finds no such order.
    let stranger = app.customer().await;
    app.post(
        &format!("/api/v1/orders/{checkout}/checkout/verify"),
        Some(&stranger.token),
        json!({}),
    )
    .await
    .expect_problem(StatusCode::NOT_FOUND, "not_found", None);

    // The webhook lost on the way: the verify call settles the order.
    fake.deliver_webhooks_to(None);
    let lost = order(
        &app,
        &shopper,
        json!({"lines": [{"sku": "STRIPE-1", "quantity": 3}], "checkout": true}),
    )
    .await;
    let session = session_of(&app, &fake, &shopper, &lost).await;
    let open = verify(&app, &shopper, &lost).await;
    assert_eq!(open["status"], "open");
    assert_eq!(open["pay_url"], session["url"]);
    fake.pay_session(session["id"].as_str().unwrap(), "4242424242424242")
        .await
        .unwrap();
    assert_eq!(verify(&app, &shopper, &lost).await["status"], "paid");
    let done = app.order_until(&shopper.token, &lost, settled).await;
    assert_eq!(done["status"], "PAID", "{done:#}");
    assert_eq!(done["captured"]["amount_minor"], 3750);

    // A session left to expire fails the order and gives its stock back.
    fake.deliver_webhooks_to(Some(format!("{}/api/v1/payments/webhooks/stripe", app.url)));
    let abandoned = order(
        &app,
        &shopper,
        json!({"lines": [{"sku": "STRIPE-1", "quantity": 4}], "checkout": true}),
    )
    .await;
    let session = session_of(&app, &fake, &shopper, &abandoned).await;
    fake.expire_session(session["id"].as_str().unwrap())
        .await
        .unwrap();
    let failed = app.order_until(&shopper.token, &abandoned, settled).await;
    assert_eq!(failed["status"], "FAILED");
    assert_eq!(failed["failure_code"], "checkout_expired");
    // 20 stocked; paid-then-cancelled and declined gave theirs back; the
    // two paid checkouts hold 1 + 3.
    app.stock_until(&admin, "STRIPE-1", 16, 0).await;

    // Every write Kart sent Stripe carried the key and an Idempotency-Key.
    for request in fake.requests() {
        assert!(request.authorized, "{} {}", request.method, request.path);
        if request.method == "POST" {
            assert!(request.idempotency_key.is_some(), "{}", request.path);
        }
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_stripe_takes_saved_cards_checkouts_and_refunds() {
    scenario(Storage::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distributed_stripe_takes_saved_cards_checkouts_and_refunds() {
    scenario(Storage::Distributed).await;
}
