//! Saved cards: tokenised by the provider, never stored or logged in full.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Session, TestApp, capture_logs};

fn card(number: &str, cvc: &str) -> Value {
    json!({"card_number": number, "exp_month": 12, "exp_year": 2031, "cvc": cvc})
}

async fn add(app: &TestApp, who: &Session, number: &str) -> Value {
    let reply = app
        .post(
            "/api/v1/me/payment-methods",
            Some(&who.token),
            card(number, "123"),
        )
        .await;
    reply.expect(StatusCode::CREATED).clone()
}

pub async fn cards_are_saved_listed_defaulted_and_removed(app: &TestApp) {
    let shopper = app.customer().await;
    let visa = add(app, &shopper, "4242 4242 4242 4242").await;
    assert_eq!(
        (visa["brand"].as_str(), visa["last4"].as_str()),
        (Some("visa"), Some("4242"))
    );
    assert_eq!(
        (visa["exp_month"].as_u64(), visa["exp_year"].as_u64()),
        (Some(12), Some(2031))
    );
    assert_eq!(visa["is_default"], true, "the first card is the default");
    assert!(visa["id"].as_str().unwrap().starts_with("pm_"));
    let text = visa.to_string();
    assert!(
        !text.contains("424242424242") && !text.contains("provider_token") && !text.contains("cvc")
    );

    let master = add(app, &shopper, "5555-5555-5555-4444").await;
    assert_eq!(
        (master["brand"].as_str(), master["is_default"].as_bool()),
        (Some("mastercard"), Some(false))
    );

    let list = app
        .get("/api/v1/me/payment-methods", Some(&shopper.token))
        .await;
    let ids: Vec<&str> = list.expect(StatusCode::OK)["payment_methods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [visa["id"].as_str().unwrap(), master["id"].as_str().unwrap()],
        "default first"
    );

    let master_id = master["id"].as_str().unwrap();
    let defaulted = app
        .post(
            &format!("/api/v1/me/payment-methods/{master_id}/default"),
            Some(&shopper.token),
            json!({}),
        )
        .await;
    assert_eq!(defaulted.expect(StatusCode::OK)["is_default"], true);
    let list = app
        .get("/api/v1/me/payment-methods", Some(&shopper.token))
        .await;
    let methods = list.body["payment_methods"].as_array().unwrap().clone();
    assert_eq!(methods[0]["id"], master["id"]);
    assert_eq!(
        methods.iter().filter(|m| m["is_default"] == true).count(),
        1
    );

    // Removing the default makes the remaining card the default.
    app.call(
        Method::DELETE,
        &format!("/api/v1/me/payment-methods/{master_id}"),
        Some(&shopper.token),
        None,
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    let list = app
        .get("/api/v1/me/payment-methods", Some(&shopper.token))
        .await;
    let methods = list.body["payment_methods"].as_array().unwrap();
    assert_eq!(methods.len(), 1);
    assert_eq!(
        (methods[0]["id"].clone(), methods[0]["is_default"].clone()),
        (visa["id"].clone(), json!(true))
    );
    app.call(
        Method::DELETE,
        &format!("/api/v1/me/payment-methods/{master_id}"),
        Some(&shopper.token),
        None,
    )
    .await
    .expect_problem(StatusCode::NOT_FOUND, "not_found", None);

    // Each mistake names its field, and saves nothing.
    for (body, field) in [
        (card("4242424242424241", "123"), "card_number"),
        (card("4242 4242 abcd 4242", "123"), "card_number"),
        (card("4242424242424242", "12"), "cvc"),
        (
            json!({"card_number": "4242424242424242", "exp_month": 13, "exp_year": 2031, "cvc": "123"}),
            "exp_month",
        ),
        (
            json!({"card_number": "4242424242424242", "exp_month": 1, "exp_year": 2020, "cvc": "123"}),
            "exp_year",
        ),
    ] {
        app.post("/api/v1/me/payment-methods", Some(&shopper.token), body)
            .await
            .expect_problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_card",
                Some(field),
            );
    }
    app.post(
        "/api/v1/me/payment-methods",
        Some(&shopper.token),
        json!({"card_number": "4242424242424242"}),
    )
    .await
    .expect_problem(
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        Some("exp_month"),
    );
    let list = app
        .get("/api/v1/me/payment-methods", Some(&shopper.token))
        .await;
    assert_eq!(list.body["payment_methods"].as_array().unwrap().len(), 1);
}

pub async fn nobody_reaches_another_users_cards(app: &TestApp) {
    let owner = app.customer().await;
    let other = app.customer().await;
    let card = add(app, &owner, "4242424242424242").await;
    let id = card["id"].as_str().unwrap();
    // Someone else's card does not exist, as far as they can tell.
    app.call(
        Method::DELETE,
        &format!("/api/v1/me/payment-methods/{id}"),
        Some(&other.token),
        None,
    )
    .await
    .expect_problem(StatusCode::NOT_FOUND, "not_found", None);
    app.post(
        &format!("/api/v1/me/payment-methods/{id}/default"),
        Some(&other.token),
        json!({}),
    )
    .await
    .expect_problem(StatusCode::NOT_FOUND, "not_found", None);
    let theirs = app
        .get("/api/v1/me/payment-methods", Some(&other.token))
        .await;
    assert!(
        theirs.body["payment_methods"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    // The owner's card is untouched.
    let mine = app
        .get("/api/v1/me/payment-methods", Some(&owner.token))
        .await;
    assert_eq!(mine.body["payment_methods"][0]["id"], card["id"]);
    assert_eq!(mine.body["payment_methods"][0]["is_default"], true);
}

/// Every value in every table of every service database, as text.
async fn every_stored_text(app: &TestApp) -> Vec<String> {
    let mut texts = Vec::new();
    for service in &app.system().services {
        let Some(db) = &service.db else { continue };
        let (tables_sql, columns_sql) = match db.kind() {
            kit::db::DbKind::Sqlite => (
                "SELECT name FROM sqlite_master WHERE type = 'table'",
                "SELECT name FROM pragma_table_info(?)",
            ),
            kit::db::DbKind::Postgres => (
                "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public'",
                "SELECT column_name::text FROM information_schema.columns \
                 WHERE table_schema = 'public' AND table_name = $1",
            ),
        };
        let tables: Vec<String> = sqlx::query_scalar(tables_sql)
            .fetch_all(&mut *db.write().await.expect("a connection"))
            .await
            .unwrap();
        for table in tables {
            let columns: Vec<String> = sqlx::query_scalar(columns_sql)
                .bind(&table)
                .fetch_all(&mut *db.write().await.expect("a connection"))
                .await
                .unwrap();
            // Cast in SQL: the Any driver decodes text on every database.
            for column in columns {
                let values: Vec<Option<String>> = sqlx::query_scalar(&format!(
                    "SELECT CAST(\"{column}\" AS TEXT) FROM \"{table}\""
                ))
                .fetch_all(&mut *db.write().await.expect("a connection"))
                .await
                .unwrap();
                texts.extend(values.into_iter().flatten());
            }
        }
    }
    texts
}

pub async fn a_card_number_or_cvc_reaches_no_table_and_no_log(app: &TestApp) {
    let logs = capture_logs();
    let shopper = app.customer().await;
    let number = "4000000000009995";
    let cvc = "739";
    let saved = app
        .post(
            "/api/v1/me/payment-methods",
            Some(&shopper.token),
            card("4000 0000 0000 9995", cvc),
        )
        .await;
    saved.expect(StatusCode::CREATED);
    // A refused card goes through the same code.
    app.post(
        "/api/v1/me/payment-methods",
        Some(&shopper.token),
        card("4000000000009996", cvc),
    )
    .await
    .expect_problem(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_card",
        Some("card_number"),
    );

    let stored = every_stored_text(app).await;
    assert!(
        stored.iter().any(|t| t == "9995"),
        "the last four digits are kept"
    );
    for text in &stored {
        assert!(
            !text.contains(number) && !text.contains("0000 0000 9995"),
            "a card number is stored: {text}"
        );
        assert!(
            !text.contains(&format!("\"cvc\":\"{cvc}\"")) && text != cvc,
            "a CVC is stored: {text}"
        );
    }
    let logged = logs.text();
    assert!(logged.contains("card tokenised"), "the logs were captured");
    assert!(
        !logged.contains(number)
            && !logged.contains("4000 0000 0000 9995")
            && !logged.contains("4000000000009996")
    );
    // Digits like the CVC's turn up inside ids and timings; what must not
    // appear is the CVC as a value, or anything about a CVC at all.
    assert!(!logged.contains(&format!("\"{cvc}\"")), "the CVC is logged");
    assert!(
        !logged.to_lowercase().contains("cvc"),
        "something about the CVC is logged"
    );
}
