//! Stock: availability for everyone, levels and adjustments for admins.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::TestApp;

pub async fn stock_is_adjusted_with_an_audit_trail(app: &TestApp) {
    let admin = app.admin().await;
    let added = app
        .post(
            "/api/v1/admin/stock/tea-green/adjustments",
            Some(&admin.token),
            json!({"delta": 25, "reason": "delivery from supplier"}),
        )
        .await;
    assert_eq!(
        added.expect(StatusCode::OK).clone(),
        json!({"sku": "TEA-GREEN", "on_hand": 25, "reserved": 0, "available": 25})
    );
    let removed = app
        .post(
            "/api/v1/admin/stock/TEA-GREEN/adjustments",
            Some(&admin.token),
            json!({"delta": -5, "reason": "damaged in storage"}),
        )
        .await;
    assert_eq!(removed.expect(StatusCode::OK)["on_hand"], 20);
    let level = app
        .get("/api/v1/admin/stock/TEA-GREEN", Some(&admin.token))
        .await;
    assert_eq!(level.expect(StatusCode::OK)["available"], 20);

    let trail = app
        .get(
            "/api/v1/admin/stock/TEA-GREEN/adjustments",
            Some(&admin.token),
        )
        .await;
    let entries = trail.expect(StatusCode::OK)["adjustments"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(entries.len(), 2);
    assert_eq!(
        (
            entries[0]["delta"].as_i64(),
            entries[0]["reason"].as_str(),
            entries[0]["on_hand_after"].as_i64()
        ),
        (Some(-5), Some("damaged in storage"), Some(20))
    );
    assert_eq!(
        entries[0]["actor"],
        admin.user_id.as_str(),
        "the trail names who did it"
    );
    assert_eq!(entries[1]["delta"], 25);

    let public = app
        .get("/api/v1/stock?skus=tea-green,NEVER-STOCKED", None)
        .await;
    assert_eq!(
        public.expect(StatusCode::OK).clone(),
        json!({"stock": [{"sku": "TEA-GREEN", "available": 20}]})
    );
}

pub async fn stock_errors_and_permissions(app: &TestApp) {
    let admin = app.admin().await;
    let customer = app.customer().await;
    let adjust = |token: String, sku: &'static str, body: serde_json::Value| {
        let path = format!("/api/v1/admin/stock/{sku}/adjustments");
        async move { app.post(&path, Some(&token), body).await }
    };
    adjust(
        admin.token.clone(),
        "CUP",
        json!({"delta": 3, "reason": "count"}),
    )
    .await
    .expect(StatusCode::OK);
    adjust(
        admin.token.clone(),
        "CUP",
        json!({"delta": -4, "reason": "loss"}),
    )
    .await
    .expect_problem(StatusCode::CONFLICT, "insufficient_stock", Some("delta"));
    adjust(
        admin.token.clone(),
        "NEVER-STOCKED",
        json!({"delta": -1, "reason": "loss"}),
    )
    .await
    .expect_problem(StatusCode::CONFLICT, "insufficient_stock", Some("delta"));
    adjust(
        admin.token.clone(),
        "CUP",
        json!({"delta": 0, "reason": "nothing"}),
    )
    .await
    .expect_problem(
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        Some("delta"),
    );
    adjust(
        admin.token.clone(),
        "CUP",
        json!({"delta": 2, "reason": "  "}),
    )
    .await
    .expect_problem(
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        Some("reason"),
    );
    adjust(admin.token.clone(), "CUP", json!({"delta": 2}))
        .await
        .expect_problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("reason"),
        );
    adjust(
        admin.token.clone(),
        "BAD%20SKU",
        json!({"delta": 2, "reason": "x"}),
    )
    .await
    .expect_problem(
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        Some("sku"),
    );
    adjust(
        customer.token.clone(),
        "CUP",
        json!({"delta": 100, "reason": "free stock"}),
    )
    .await
    .expect_problem(StatusCode::FORBIDDEN, "forbidden", None);
    app.get("/api/v1/admin/stock/CUP", Some(&customer.token))
        .await
        .expect_problem(StatusCode::FORBIDDEN, "forbidden", None);
    app.get("/api/v1/admin/stock/CUP/adjustments", Some(&customer.token))
        .await
        .expect_problem(StatusCode::FORBIDDEN, "forbidden", None);
    let level = app.get("/api/v1/admin/stock/CUP", Some(&admin.token)).await;
    assert_eq!(
        level.expect(StatusCode::OK)["on_hand"],
        3,
        "refused changes changed nothing"
    );
    let trail = app
        .get("/api/v1/admin/stock/CUP/adjustments", Some(&admin.token))
        .await;
    assert_eq!(trail.body["adjustments"].as_array().unwrap().len(), 1);
    app.get("/api/v1/admin/stock/NEVER-STOCKED", Some(&admin.token))
        .await
        .expect_problem(StatusCode::NOT_FOUND, "not_found", None);
    app.get("/api/v1/stock", None).await.expect_problem(
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        Some("skus"),
    );
    app.get(
        "/api/v1/admin/stock/CUP/adjustments?limit=0",
        Some(&admin.token),
    )
    .await
    .expect_problem(
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        Some("limit"),
    );
}
