//! Orders through the gateway: the saga end to end (reserve, charge,
//! pay or fail, release), idempotent creation, cancel and refund, and who
//! may see and do what.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Reply, Session, Storage, TestApp, test_settings};

pub const GOOD_CARD: &str = "4242 4242 4242 4242";
pub const DECLINED_CARD: &str = "4000 0000 0000 0002";

impl TestApp {
    /// A product with `stock` units on hand.
    pub async fn stocked_product(&self, admin: &Session, sku: &str, price: i64, stock: i64) {
        self.product(admin, sku, &format!("{sku} for orders"), "orders", price)
            .await;
        self.post(
            &format!("/api/v1/admin/stock/{sku}/adjustments"),
            Some(&admin.token),
            json!({"delta": stock, "reason": "stock for the test"}),
        )
        .await
        .expect(StatusCode::OK);
    }

    /// Saves `number` as the shopper's card; returns its id.
    pub async fn saved_card(&self, shopper: &Session, number: &str) -> String {
        let card = self
            .post(
                "/api/v1/me/payment-methods",
                Some(&shopper.token),
                json!({"card_number": number, "exp_month": 12, "exp_year": 2031, "cvc": "123"}),
            )
            .await;
        card.expect(StatusCode::CREATED)["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub async fn place(&self, shopper: &Session, key: &str, body: &Value) -> Reply {
        let response = self
            .client
            .post(format!("{}/api/v1/orders", self.url))
            .bearer_auth(&shopper.token)
            .header("idempotency-key", key)
            .json(body)
            .send()
            .await
            .unwrap();
        Reply::read(response).await
    }

    /// Reads the order until `done` holds of it (30 s at most).
    pub async fn order_until(&self, token: &str, id: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let reply = self.get(&format!("/api/v1/orders/{id}"), Some(token)).await;
            let order = reply.expect(StatusCode::OK).clone();
            if done(&order) {
                return order;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "order never got there: {order:#}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Reads the stock level until `on_hand` and `reserved` are as given.
    pub async fn stock_until(&self, admin: &Session, sku: &str, on_hand: i64, reserved: i64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let level = self
                .get(&format!("/api/v1/admin/stock/{sku}"), Some(&admin.token))
                .await;
            let level = level.expect(StatusCode::OK).clone();
            if level["on_hand"] == on_hand && level["reserved"] == reserved {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "stock of {sku} stayed at {level}, expected on_hand {on_hand}, reserved {reserved}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

pub fn settled(order: &Value) -> bool {
    matches!(
        order["status"].as_str(),
        Some("PAID" | "FAILED" | "CANCELLED" | "FULFILLED")
    )
}

fn causes(order: &Value) -> Vec<String> {
    order["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["cause"].as_str().unwrap().to_owned())
        .collect()
}

pub fn key() -> String {
    kit::testing::unique("key")
}

pub async fn a_saved_card_pays_for_an_order_and_a_cancel_refunds_it(app: &TestApp) {
    let admin = app.admin().await;
    app.stocked_product(&admin, "ORD-PAID", 1250, 5).await;
    let shopper = app.customer().await;
    let card = app.saved_card(&shopper, GOOD_CARD).await;

    let placed = app
        .place(
            &shopper,
            &key(),
            &json!({"lines": [{"sku": "ord-paid", "quantity": 2}], "payment_method_id": card, "total": 1}),
        )
        .await;
    let order = placed.expect(StatusCode::CREATED).clone();
    let id = order["id"].as_str().unwrap().to_owned();
    assert_eq!(
        placed.headers["location"].to_str().unwrap(),
        format!("/api/v1/orders/{id}")
    );
    assert_eq!(order["status"], "PENDING");
    assert_eq!(
        order["total"],
        json!({"amount_minor": 2500, "currency": "EUR"}),
        "priced from the catalog, whatever the client sends"
    );
    assert_eq!(order["lines"][0]["sku"], "ORD-PAID");
    assert_eq!(order["lines"][0]["name"], "ORD-PAID for orders");

    let paid = app.order_until(&shopper.token, &id, settled).await;
    assert_eq!(paid["status"], "PAID", "{paid:#}");
    assert_eq!(paid["captured"]["amount_minor"], 2500);
    assert_eq!(
        causes(&paid),
        ["created", "stock_reserved", "payment_captured"]
    );
    // Paid stock leaves the books.
    app.stock_until(&admin, "ORD-PAID", 3, 0).await;

    let mine = app.get("/api/v1/orders", Some(&shopper.token)).await;
    assert_eq!(mine.expect(StatusCode::OK)["orders"][0]["id"], id.as_str());

    // Cancelled after payment: the money goes back.
    let cancelled = app
        .post(
            &format!("/api/v1/orders/{id}/cancel"),
            Some(&shopper.token),
            json!({}),
        )
        .await;
    assert_eq!(cancelled.expect(StatusCode::OK)["status"], "CANCELLED");
    let refunded = app
        .order_until(&shopper.token, &id, |o| {
            o["refunded"]["amount_minor"] == 2500
        })
        .await;
    assert_eq!(refunded["refund_pending"]["amount_minor"], 0);
    assert!(causes(&refunded).contains(&"refund_issued".to_owned()));
    // Not shipped, so the goods go back on sale.
    app.stock_until(&admin, "ORD-PAID", 5, 0).await;
    app.post(
        &format!("/api/v1/orders/{id}/cancel"),
        Some(&shopper.token),
        json!({}),
    )
    .await
    .expect_problem(StatusCode::CONFLICT, "order_state_conflict", None);
}

pub async fn a_declined_card_fails_the_order_and_releases_the_stock(app: &TestApp) {
    let admin = app.admin().await;
    app.stocked_product(&admin, "ORD-DECLINED", 990, 4).await;
    let shopper = app.customer().await;
    let card = app.saved_card(&shopper, DECLINED_CARD).await;
    let placed = app
        .place(
            &shopper,
            &key(),
            &json!({"lines": [{"sku": "ORD-DECLINED", "quantity": 3}], "payment_method_id": card}),
        )
        .await;
    let id = placed.expect(StatusCode::CREATED)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let failed = app.order_until(&shopper.token, &id, settled).await;
    assert_eq!(failed["status"], "FAILED", "{failed:#}");
    assert_eq!(failed["failure_code"], "card_declined");
    assert_eq!(failed["captured"]["amount_minor"], 0);
    app.stock_until(&admin, "ORD-DECLINED", 4, 0).await;

    // More than there is: nothing is reserved, the order fails.
    let good = app.saved_card(&shopper, GOOD_CARD).await;
    let placed = app
        .place(
            &shopper,
            &key(),
            &json!({"lines": [{"sku": "ORD-DECLINED", "quantity": 5}], "payment_method_id": good}),
        )
        .await;
    let id = placed.expect(StatusCode::CREATED)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let short = app.order_until(&shopper.token, &id, settled).await;
    assert_eq!(
        (short["status"].as_str(), short["failure_code"].as_str()),
        (Some("FAILED"), Some("out_of_stock"))
    );
    assert!(
        short["history"][1]["detail"]
            .as_str()
            .unwrap()
            .contains("ORD-DECLINED: 5 wanted, 4 left"),
        "{short:#}"
    );
    app.stock_until(&admin, "ORD-DECLINED", 4, 0).await;
}

pub async fn one_idempotency_key_makes_one_order(app: &TestApp) {
    let admin = app.admin().await;
    app.stocked_product(&admin, "ORD-ONCE", 500, 100).await;
    let shopper = app.customer().await;
    let card = app.saved_card(&shopper, GOOD_CARD).await;
    let body = json!({"lines": [{"sku": "ORD-ONCE", "quantity": 1}], "payment_method_id": card});

    let key_one = key();
    let first = app.place(&shopper, &key_one, &body).await;
    let id = first.expect(StatusCode::CREATED)["id"].clone();
    assert!(first.headers.get("idempotent-replayed").is_none());
    let again = app.place(&shopper, &key_one, &body).await;
    assert_eq!(again.expect(StatusCode::CREATED)["id"], id);
    assert_eq!(again.headers["idempotent-replayed"], "true");
    let other_body =
        json!({"lines": [{"sku": "ORD-ONCE", "quantity": 2}], "payment_method_id": card});
    app.place(&shopper, &key_one, &other_body)
        .await
        .expect_problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("Idempotency-Key"),
        );

    // A client retrying in a hurry: 20 at once, one order.
    let key_two = key();
    let racers = (0..20).map(|_| app.place(&shopper, &key_two, &body));
    let replies = futures_util::future::join_all(racers).await;
    let ids: std::collections::HashSet<String> = replies
        .iter()
        .map(|r| {
            r.expect(StatusCode::CREATED)["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 1, "{ids:?}");

    let mine = app.get("/api/v1/orders", Some(&shopper.token)).await;
    assert_eq!(
        mine.expect(StatusCode::OK)["orders"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // Both get paid, once each: 2 units leave the books.
    for id in [id.as_str().unwrap(), ids.iter().next().unwrap()] {
        let order = app.order_until(&shopper.token, id, settled).await;
        assert_eq!(order["status"], "PAID");
    }
    app.stock_until(&admin, "ORD-ONCE", 98, 0).await;
}

pub async fn order_input_errors_name_the_field(app: &TestApp) {
    let admin = app.admin().await;
    app.stocked_product(&admin, "ORD-INPUT", 700, 10).await;
    let shopper = app.customer().await;
    let card = app.saved_card(&shopper, GOOD_CARD).await;
    let line = |sku: &str, quantity: i64| json!({"lines": [{"sku": sku, "quantity": quantity}], "payment_method_id": card});

    let no_key = app
        .post("/api/v1/orders", Some(&shopper.token), line("ORD-INPUT", 1))
        .await;
    no_key.expect_problem(
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        Some("Idempotency-Key"),
    );
    for (body, code, field) in [
        (
            json!({"lines": [], "payment_method_id": card}),
            "validation_failed",
            "lines",
        ),
        (line("not a sku!", 1), "validation_failed", "lines[0].sku"),
        (
            line("ORD-INPUT", 0),
            "validation_failed",
            "lines[0].quantity",
        ),
        (
            line("ORD-INPUT", 1000),
            "validation_failed",
            "lines[0].quantity",
        ),
        (line("NO-SUCH-SKU", 1), "unknown_sku", "lines"),
        (
            json!({"lines": [{"sku": "ORD-INPUT", "quantity": 1}], "payment_method_id": ""}),
            "validation_failed",
            "payment_method_id",
        ),
        (json!({"lines": "ORD-INPUT"}), "validation_failed", "lines"),
    ] {
        app.place(&shopper, &key(), &body).await.expect_problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            code,
            Some(field),
        );
    }
    // Someone else's card is not a card of yours.
    let stranger = app.customer().await;
    let strangers_card = app.saved_card(&stranger, GOOD_CARD).await;
    app.place(
        &shopper,
        &key(),
        &json!({"lines": [{"sku": "ORD-INPUT", "quantity": 1}], "payment_method_id": strangers_card}),
    )
    .await
    .expect_problem(
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        Some("payment_method_id"),
    );
    let mine = app.get("/api/v1/orders", Some(&shopper.token)).await;
    assert_eq!(
        mine.expect(StatusCode::OK)["orders"],
        json!([]),
        "bad input changed nothing"
    );
    app.stock_until(&admin, "ORD-INPUT", 10, 0).await;
    app.get("/api/v1/orders?status=SHIPPED", Some(&shopper.token))
        .await
        .expect_problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("status"),
        );
}

pub async fn nobody_reaches_another_users_orders(app: &TestApp) {
    let admin = app.admin().await;
    app.stocked_product(&admin, "ORD-MINE", 300, 10).await;
    let shopper = app.customer().await;
    let card = app.saved_card(&shopper, GOOD_CARD).await;
    let placed = app
        .place(
            &shopper,
            &key(),
            &json!({"lines": [{"sku": "ORD-MINE", "quantity": 1}], "payment_method_id": card}),
        )
        .await;
    let id = placed.expect(StatusCode::CREATED)["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let stranger = app.customer().await;
    let path = format!("/api/v1/orders/{id}");
    app.get(&path, Some(&stranger.token)).await.expect_problem(
        StatusCode::NOT_FOUND,
        "not_found",
        None,
    );
    app.post(&format!("{path}/cancel"), Some(&stranger.token), json!({}))
        .await
        .expect_problem(StatusCode::NOT_FOUND, "not_found", None);
    let theirs = app.get("/api/v1/orders", Some(&stranger.token)).await;
    assert_eq!(theirs.expect(StatusCode::OK)["orders"], json!([]));

    // Without a session: 401 everywhere.
    for (method, route) in [
        (Method::GET, "/api/v1/orders".to_owned()),
        (Method::POST, "/api/v1/orders".to_owned()),
        (Method::GET, path.clone()),
        (Method::POST, format!("{path}/cancel")),
    ] {
        app.call(method, &route, None, Some(json!({})))
            .await
            .expect_problem(StatusCode::UNAUTHORIZED, "unauthenticated", None);
    }
    // A customer on the admin routes: 403.
    for (method, route, body) in [
        (Method::GET, "/api/v1/admin/orders".to_owned(), None),
        (
            Method::POST,
            format!("/api/v1/admin/orders/{id}/fulfil"),
            Some(json!({})),
        ),
        (
            Method::POST,
            format!("/api/v1/admin/orders/{id}/refund"),
            Some(json!({"reason": "no"})),
        ),
    ] {
        app.call(method, &route, Some(&shopper.token), body)
            .await
            .expect_problem(StatusCode::FORBIDDEN, "forbidden", None);
    }
    // The admin sees it.
    let all = app
        .get("/api/v1/admin/orders?limit=100", Some(&admin.token))
        .await;
    assert!(
        all.expect(StatusCode::OK)["orders"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["id"] == id.as_str())
    );
    app.get(&path, Some(&admin.token))
        .await
        .expect(StatusCode::OK);
}

pub async fn admins_fulfil_and_refund_no_more_than_was_captured(app: &TestApp) {
    let admin = app.admin().await;
    app.stocked_product(&admin, "ORD-REFUND", 1000, 10).await;
    let shopper = app.customer().await;
    let card = app.saved_card(&shopper, GOOD_CARD).await;
    let placed = app
        .place(
            &shopper,
            &key(),
            &json!({"lines": [{"sku": "ORD-REFUND", "quantity": 2}], "payment_method_id": card}),
        )
        .await;
    let id = placed.expect(StatusCode::CREATED)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let paid = app.order_until(&shopper.token, &id, settled).await;
    assert_eq!(paid["status"], "PAID");

    let refund_path = format!("/api/v1/admin/orders/{id}/refund");
    let refund = |body: Value| app.post(&refund_path, Some(&admin.token), body);
    refund(json!({"amount_minor": 2001, "reason": "too much"}))
        .await
        .expect_problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "refund_exceeds_capture",
            Some("amount_minor"),
        );
    refund(json!({"amount_minor": -5, "reason": "negative"}))
        .await
        .expect_problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("amount_minor"),
        );
    refund(json!({"amount_minor": 500})).await.expect_problem(
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        Some("reason"),
    );
    let partial = refund(json!({"amount_minor": 500, "reason": "one mug chipped"})).await;
    assert_eq!(
        partial.expect(StatusCode::OK)["refund_pending"]["amount_minor"],
        500
    );
    // What is pending counts: 1,500 left, not 2,000.
    refund(json!({"amount_minor": 1600, "reason": "too much"}))
        .await
        .expect_problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "refund_exceeds_capture",
            Some("amount_minor"),
        );
    app.order_until(&admin.token, &id, |o| o["refunded"]["amount_minor"] == 500)
        .await;

    let fulfilled = app
        .post(
            &format!("/api/v1/admin/orders/{id}/fulfil"),
            Some(&admin.token),
            json!({}),
        )
        .await;
    assert_eq!(fulfilled.expect(StatusCode::OK)["status"], "FULFILLED");
    app.post(
        &format!("/api/v1/admin/orders/{id}/fulfil"),
        Some(&admin.token),
        json!({}),
    )
    .await
    .expect_problem(StatusCode::CONFLICT, "order_state_conflict", None);
    app.post(
        &format!("/api/v1/orders/{id}/cancel"),
        Some(&shopper.token),
        json!({}),
    )
    .await
    .expect_problem(StatusCode::CONFLICT, "order_state_conflict", None);
    // The rest, in one go.
    refund(json!({"reason": "returned"}))
        .await
        .expect(StatusCode::OK);
    let done = app
        .order_until(&admin.token, &id, |o| o["refunded"]["amount_minor"] == 2000)
        .await;
    assert_eq!(done["status"], "FULFILLED");
    refund(json!({"reason": "again"})).await.expect_problem(
        StatusCode::UNPROCESSABLE_ENTITY,
        "refund_exceeds_capture",
        Some("amount_minor"),
    );
}

/// The payment service is down: a reserved order is not left waiting. It
/// fails after `orders.payment_timeout_secs` and its stock is released.
async fn an_order_whose_payment_never_comes_fails_in_time(storage: Storage) {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(storage, dir.path());
    settings.orders.payment_timeout_secs = 1;
    settings.orders.stuck_sweep_secs = 1;
    let app = TestApp::spawn_with(dir, settings).await;
    let admin = app.admin().await;
    app.stocked_product(&admin, "ORD-STUCK", 400, 3).await;
    let shopper = app.customer().await;
    let card = app.saved_card(&shopper, GOOD_CARD).await;
    app.system()
        .services
        .iter()
        .find(|s| s.name == "payments")
        .unwrap()
        .stop();

    let placed = app
        .place(
            &shopper,
            &key(),
            &json!({"lines": [{"sku": "ORD-STUCK", "quantity": 2}], "payment_method_id": card}),
        )
        .await;
    let id = placed.expect(StatusCode::CREATED)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let failed = app.order_until(&shopper.token, &id, settled).await;
    assert_eq!(
        (failed["status"].as_str(), failed["failure_code"].as_str()),
        (Some("FAILED"), Some("payment_timeout")),
        "{failed:#}"
    );
    assert_eq!(
        causes(&failed),
        ["created", "stock_reserved", "payment_timeout"]
    );
    app.stock_until(&admin, "ORD-STUCK", 3, 0).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_whose_payment_never_comes_fails_in_time_embedded() {
    an_order_whose_payment_never_comes_fails_in_time(Storage::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_whose_payment_never_comes_fails_in_time_distributed() {
    an_order_whose_payment_never_comes_fails_in_time(Storage::Distributed).await;
}
