//! Notifications and analytics through the gateway: a run of orders with
//! known outcomes gives exactly the expected mails (one confirmation per
//! paid order) and exactly the expected figures, and a rebuild from the
//! topics ends at the same figures. (Delivery over SMTP, retries and dead
//! letters are tested against a real SMTP server in the notifications
//! crate; replaying every event twice is in `replay`.)

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Session, TestApp};
use crate::orders::{DECLINED_CARD, GOOD_CARD, key, settled};

impl TestApp {
    /// GETs `path` until `done` holds for the body.
    pub async fn get_until(&self, path: &str, token: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let body = self
                .get(path, Some(token))
                .await
                .expect(StatusCode::OK)
                .clone();
            if done(&body) {
                return body;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{path} never got there: {body:#}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Every message to `user_id`, once all `count` of them are sent.
    pub async fn mails_of(&self, admin: &Session, user_id: &str, count: usize) -> Vec<Value> {
        let mailbox = self
            .get_until(
                &format!("/api/v1/admin/mailbox?user_id={user_id}&limit=500"),
                &admin.token,
                |b| {
                    let messages = b["messages"].as_array().unwrap();
                    messages.len() >= count && messages.iter().all(|m| m["status"] == "sent")
                },
            )
            .await;
        mailbox["messages"].as_array().unwrap().clone()
    }

    /// The admin's stats of the last hour, without the window's bounds
    /// (which move with the clock).
    pub async fn figures(&self, admin: &Session) -> Value {
        let mut stats = self
            .get("/api/v1/admin/stats?minutes=60", Some(&admin.token))
            .await
            .expect(StatusCode::OK)
            .clone();
        let fields = stats.as_object_mut().unwrap();
        fields.remove("from");
        fields.remove("to");
        stats
    }
}

/// Places the run both this test and the replay test use: paid (1 unit),
/// paid (2), declined, more than there is (10), paid (1) then cancelled.
/// Returns the order ids once every order settled and the refund went out.
pub async fn a_known_run(app: &TestApp, shopper: &Session, sku: &str) -> Vec<String> {
    let good = app.saved_card(shopper, GOOD_CARD).await;
    let declined = app.saved_card(shopper, DECLINED_CARD).await;
    let mut ids = Vec::new();
    for (quantity, card) in [
        (1, &good),
        (2, &good),
        (1, &declined),
        (10, &good),
        (1, &good),
    ] {
        let placed = app
            .place(
                shopper,
                &key(),
                &json!({"lines": [{"sku": sku, "quantity": quantity}], "payment_method_id": card}),
            )
            .await;
        ids.push(
            placed.expect(StatusCode::CREATED)["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    for id in &ids {
        app.order_until(&shopper.token, id, settled).await;
    }
    app.post(
        &format!("/api/v1/orders/{}/cancel", ids[4]),
        Some(&shopper.token),
        json!({}),
    )
    .await
    .expect(StatusCode::OK);
    app.order_until(&shopper.token, &ids[4], |o| {
        o["refunded"]["amount_minor"] == 800
    })
    .await;
    ids
}

pub async fn a_run_of_orders_mails_and_counts_exactly_what_happened(app: &TestApp) {
    let admin = app.admin().await;
    app.stocked_product(&admin, "MAIL-BEANS", 800, 6).await;
    let shopper = app.customer().await;
    let ids = a_known_run(app, &shopper, "MAIL-BEANS").await;

    // Mails: a welcome, a confirmation per paid order (3), the declined
    // payment, the cancellation and its refund. Nothing for the order that
    // was out of stock.
    let mails = app.mails_of(&admin, &shopper.user_id, 7).await;
    let mut kinds: BTreeMap<(String, String), usize> = BTreeMap::new();
    for mail in &mails {
        let about = mail["order_id"].as_str().unwrap_or("-").to_owned();
        *kinds
            .entry((mail["kind"].as_str().unwrap().to_owned(), about))
            .or_default() += 1;
        assert_eq!(mail["attempts"], 1, "{mail}");
        assert!(
            mail["to"].as_str().unwrap().contains("@example.com"),
            "{mail}"
        );
    }
    let expected: BTreeMap<(String, String), usize> = [
        ("welcome", "-"),
        ("order_confirmed", ids[0].as_str()),
        ("order_confirmed", ids[1].as_str()),
        ("order_confirmed", ids[4].as_str()),
        ("payment_failed", ids[2].as_str()),
        ("order_cancelled", ids[4].as_str()),
        ("refund_issued", ids[4].as_str()),
    ]
    .into_iter()
    .map(|(k, o)| ((k.to_owned(), o.to_owned()), 1))
    .collect();
    assert_eq!(kinds, expected);

    let confirmation = mails
        .iter()
        .find(|m| m["kind"] == "order_confirmed" && m["order_id"] == ids[1].as_str())
        .unwrap();
    let detail = app
        .get(
            &format!(
                "/api/v1/admin/mailbox/{}",
                confirmation["id"].as_str().unwrap()
            ),
            Some(&admin.token),
        )
        .await;
    let detail = detail.expect(StatusCode::OK);
    let text = detail["text_body"].as_str().unwrap();
    for said in [
        "2 x MAIL-BEANS for orders (MAIL-BEANS)  16.00 EUR",
        "Total  16.00 EUR",
        &format!("http://localhost:8080/orders/{}", ids[1]),
    ] {
        assert!(
            text.contains(said),
            "the confirmation lacks {said:?}: {text}"
        );
    }
    assert!(detail["html_body"].as_str().unwrap().contains("<table"));
    assert_eq!(detail["source_event_type"], "kart.order.paid.v1");
    assert_eq!(detail["delivery_attempts"][0]["outcome"], "sent");
    let declined = mails
        .iter()
        .find(|m| m["kind"] == "payment_failed")
        .unwrap();
    assert!(
        declined["subject"]
            .as_str()
            .unwrap()
            .contains("did not go through")
    );
    app.get("/api/v1/admin/dead-letters", Some(&admin.token))
        .await
        .expect(StatusCode::OK);

    // Figures: exactly the run, once analytics has read every event (the
    // refund, say, is on payment.events once the order shows it).
    app.get_until("/api/v1/admin/analytics/lag", &admin.token, |l| {
        l["records_behind"] == 0
    })
    .await;
    let stats = app
        .get("/api/v1/admin/stats?minutes=60", Some(&admin.token))
        .await
        .expect(StatusCode::OK)
        .clone();
    assert_eq!(stats["orders_paid"], 3, "{stats:#}");
    assert_eq!(stats["orders_cancelled"], 1, "{stats:#}");
    assert_eq!(stats["payments_failed"], 1, "{stats:#}");
    assert_eq!(stats["orders_created"], 5, "{stats:#}");
    assert_eq!(stats["orders_failed"], 2, "{stats:#}");
    assert_eq!(stats["payments_captured"], 3, "{stats:#}");
    assert_eq!(stats["payment_success_rate"], 0.75, "{stats:#}");
    assert_eq!(
        stats["currencies"],
        json!([{"currency": "EUR", "revenue_minor": 3200, "orders_paid": 3,
                "average_order_minor": 1066, "refunded_minor": 800}]),
        "{stats:#}"
    );
    assert_eq!(stats["order_to_paid"]["count"], 3, "{stats:#}");
    let p50 = stats["order_to_paid"]["p50_ms"].as_i64().unwrap();
    let p99 = stats["order_to_paid"]["p99_ms"].as_i64().unwrap();
    assert!(0 <= p50 && p50 <= p99, "{stats:#}");
    assert_eq!(
        stats["top_products"],
        json!([{"sku": "MAIL-BEANS", "units": 4,
                "revenue": {"amount_minor": 3200, "currency": "EUR"}}]),
        "{stats:#}"
    );
    assert_eq!(stats["events"]["kart.order.created.v1"], 5, "{stats:#}");
    assert_eq!(stats["events"]["kart.user.registered.v1"], 1, "{stats:#}");
    let minutes = stats["minutes"].as_array().unwrap();
    let created: u64 = minutes
        .iter()
        .map(|m| m["orders_created"].as_u64().unwrap())
        .sum();
    assert_eq!(created, 5, "the minutes add up to the total");

    // The same figures as Prometheus gauges on the analytics service.
    let analytics = app.system().url("analytics").unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let metrics = app.metrics(&analytics).await;
        let line = |name: &str, label: &str| {
            metrics
                .lines()
                .find(|l| l.starts_with(name) && l.contains(label))
                .and_then(|l| l.rsplit(' ').next())
                .map(str::to_owned)
        };
        if line("kart_analytics_orders", "outcome=\"paid\"").as_deref() == Some("3") {
            assert_eq!(
                line("kart_analytics_revenue_minor", "currency=\"EUR\"").as_deref(),
                Some("3200"),
                "{metrics}"
            );
            assert_eq!(
                line("kart_analytics_payment_success_ratio", "").as_deref(),
                Some("0.75"),
                "{metrics}"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the gauges never showed the run: {metrics}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Rebuilt from the topics, the figures are the same.
    let before = app.figures(&admin).await;
    let rebuild = app
        .post(
            "/api/v1/admin/analytics/rebuild",
            Some(&admin.token),
            json!({}),
        )
        .await;
    assert!(
        rebuild.expect(StatusCode::ACCEPTED)["records_to_replay"]
            .as_u64()
            .unwrap()
            > 0
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    app.get_until("/api/v1/admin/analytics/lag", &admin.token, |l| {
        l["records_behind"] == 0
    })
    .await;
    assert_eq!(app.figures(&admin).await, before);

    // Admins only.
    for path in [
        "/api/v1/admin/mailbox",
        "/api/v1/admin/dead-letters",
        "/api/v1/admin/stats",
        "/api/v1/admin/analytics/lag",
    ] {
        app.get(path, Some(&shopper.token)).await.expect_problem(
            StatusCode::FORBIDDEN,
            "forbidden",
            None,
        );
    }
    app.post(
        "/api/v1/admin/analytics/rebuild",
        Some(&shopper.token),
        json!({}),
    )
    .await
    .expect_problem(StatusCode::FORBIDDEN, "forbidden", None);
    app.get("/api/v1/admin/stats?minutes=0", Some(&admin.token))
        .await
        .expect_problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("minutes"),
        );
    app.get("/api/v1/admin/mailbox?kind=spam", Some(&admin.token))
        .await
        .expect_problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("kind"),
        );
    app.post(
        "/api/v1/admin/dead-letters/replay",
        Some(&admin.token),
        json!({}),
    )
    .await
    .expect_problem(
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        Some("ids"),
    );
}
