//! Sign up, sign in, refresh, sign out, me.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{Session, TestApp};

pub async fn accounts_sign_up_sign_in_refresh_and_sign_out(app: &TestApp) {
    let signup = app
        .post(
            "/api/v1/auth/signup",
            None,
            json!({"email": "  Ada.Lovelace@Example.COM ", "password": "analytical engine 1843"}),
        )
        .await;
    let body = signup.expect(StatusCode::CREATED);
    assert_eq!(
        body["user"]["email"], "ada.lovelace@example.com",
        "emails are normalised"
    );
    assert_eq!(body["user"]["display_name"], "ada.lovelace");
    assert_eq!(body["user"]["role"], "customer");
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["user"]["id"].as_str().unwrap().starts_with("usr_"));
    assert!(
        signup
            .set_cookies
            .iter()
            .any(|c| c.starts_with("kart_access=")
                && c.contains("HttpOnly")
                && c.contains("SameSite=Lax"))
    );
    assert!(
        signup
            .set_cookies
            .iter()
            .any(|c| c.starts_with("kart_refresh=")
                && c.contains("HttpOnly")
                && c.contains("Path=/api/v1/auth"))
    );
    let first = Session::from(&signup);

    let me = app.get("/api/v1/me", Some(&first.token)).await;
    assert_eq!(
        me.expect(StatusCode::OK)["email"],
        "ada.lovelace@example.com"
    );

    // The same address, however it is typed, is one account.
    app.post(
        "/api/v1/auth/signup",
        None,
        json!({"email": "ADA.LOVELACE@example.com", "password": "another long password"}),
    )
    .await
    .expect_problem(StatusCode::CONFLICT, "email_taken", Some("email"));

    // Sign in: a wrong password and an unknown email look the same.
    let wrong = app
        .post(
            "/api/v1/auth/signin",
            None,
            json!({"email": "ada.lovelace@example.com", "password": "analytical engine 1844"}),
        )
        .await;
    wrong.expect_problem(StatusCode::UNAUTHORIZED, "unauthenticated", None);
    let unknown = app
        .post(
            "/api/v1/auth/signin",
            None,
            json!({"email": "nobody@example.com", "password": "analytical engine 1843"}),
        )
        .await;
    unknown.expect_problem(StatusCode::UNAUTHORIZED, "unauthenticated", None);
    assert_eq!(wrong.body["detail"], unknown.body["detail"]);
    let signin = app
        .post(
            "/api/v1/auth/signin",
            None,
            json!({"email": "Ada.Lovelace@example.com", "password": "analytical engine 1843"}),
        )
        .await;
    signin.expect(StatusCode::OK);
    let second = Session::from(&signin);

    // Refresh rotates: the new token works, the old one is spent.
    let refreshed = app
        .post(
            "/api/v1/auth/refresh",
            None,
            json!({"refresh_token": second.refresh_token}),
        )
        .await;
    refreshed.expect(StatusCode::OK);
    let third = Session::from(&refreshed);
    assert_ne!(third.refresh_token, second.refresh_token);
    app.get("/api/v1/me", Some(&third.token))
        .await
        .expect(StatusCode::OK);

    // Presenting the spent token again looks like theft: every session ends.
    app.post(
        "/api/v1/auth/refresh",
        None,
        json!({"refresh_token": second.refresh_token}),
    )
    .await
    .expect_problem(StatusCode::UNAUTHORIZED, "session_expired", None);
    app.post(
        "/api/v1/auth/refresh",
        None,
        json!({"refresh_token": third.refresh_token}),
    )
    .await
    .expect_problem(StatusCode::UNAUTHORIZED, "session_expired", None);
    app.post(
        "/api/v1/auth/refresh",
        None,
        json!({"refresh_token": first.refresh_token}),
    )
    .await
    .expect_problem(StatusCode::UNAUTHORIZED, "session_expired", None);

    // The browser flow: the refresh cookie alone refreshes; sign-out clears it.
    let browser = Session::from(
        &app.post(
            "/api/v1/auth/signin",
            None,
            json!({"email": "ada.lovelace@example.com", "password": "analytical engine 1843"}),
        )
        .await,
    );
    let by_cookie = app
        .client
        .post(format!("{}/api/v1/auth/refresh", app.url))
        .header("cookie", &browser.cookies)
        .send()
        .await
        .unwrap();
    assert_eq!(by_cookie.status(), StatusCode::OK);
    let renewed = crate::helpers::Reply::read(by_cookie).await;
    let renewed = Session::from(&renewed);
    let signout = app
        .client
        .post(format!("{}/api/v1/auth/signout", app.url))
        .header("cookie", &renewed.cookies)
        .send()
        .await
        .unwrap();
    assert_eq!(signout.status(), StatusCode::NO_CONTENT);
    let cleared: Vec<_> = signout
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert!(
        cleared.iter().all(|c| c.contains("Max-Age=0")) && cleared.len() == 2,
        "{cleared:?}"
    );
    app.post(
        "/api/v1/auth/refresh",
        None,
        json!({"refresh_token": renewed.refresh_token}),
    )
    .await
    .expect_problem(StatusCode::UNAUTHORIZED, "session_expired", None);
    // Signing out with nothing to end is fine.
    app.call(Method::POST, "/api/v1/auth/signout", None, None)
        .await
        .expect(StatusCode::NO_CONTENT);
}

pub async fn account_input_errors_name_the_field(app: &TestApp) {
    let signup = |body| app.post("/api/v1/auth/signup", None, body);
    signup(json!({"email": "not-an-email", "password": "correct horse battery"}))
        .await
        .expect_problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("email"),
        );
    signup(json!({"email": "grace@example.com", "password": "short"}))
        .await
        .expect_problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("password"),
        );
    signup(json!({"email": "grace@example.com", "password": "password123"}))
        .await
        .expect_problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("password"),
        );
    signup(json!({"email": "grace@example.com", "password": "correct horse battery", "display_name": "x".repeat(101)}))
        .await
        .expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", Some("display_name"));
    signup(json!({"email": "grace@example.com"}))
        .await
        .expect_problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("password"),
        );
    signup(json!({"email": 42, "password": "correct horse battery"}))
        .await
        .expect_problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("email"),
        );
    let malformed = app
        .client
        .post(format!("{}/api/v1/auth/signup", app.url))
        .header("content-type", "application/json")
        .body("{\"email\": ")
        .send()
        .await
        .unwrap();
    crate::helpers::Reply::read(malformed).await.expect_problem(
        StatusCode::BAD_REQUEST,
        "malformed_json",
        Some("body"),
    );
    let not_json = app
        .client
        .post(format!("{}/api/v1/auth/signup", app.url))
        .body("email=grace@example.com")
        .send()
        .await
        .unwrap();
    crate::helpers::Reply::read(not_json).await.expect_problem(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        None,
    );
    // None of that created an account.
    let ok =
        signup(json!({"email": "grace@example.com", "password": "correct horse battery"})).await;
    ok.expect(StatusCode::CREATED);
}

pub async fn sessions_are_checked_on_every_route(app: &TestApp) {
    let signed_in_routes = [
        (Method::GET, "/api/v1/me"),
        (Method::GET, "/api/v1/me/payment-methods"),
        (Method::POST, "/api/v1/me/payment-methods"),
        (Method::DELETE, "/api/v1/me/payment-methods/pm_x"),
        (Method::POST, "/api/v1/me/payment-methods/pm_x/default"),
        (Method::GET, "/api/v1/admin/products"),
        (Method::POST, "/api/v1/admin/products"),
        (Method::GET, "/api/v1/admin/products/prd_x"),
        (Method::PATCH, "/api/v1/admin/products/prd_x"),
        (Method::DELETE, "/api/v1/admin/products/prd_x"),
        (Method::GET, "/api/v1/admin/stock/MUG"),
        (Method::GET, "/api/v1/admin/stock/MUG/adjustments"),
        (Method::POST, "/api/v1/admin/stock/MUG/adjustments"),
    ];
    let customer = app.customer().await;
    let forged = format!("{}x", &customer.token[..customer.token.len() - 1]);
    for (method, path) in signed_in_routes {
        for token in [None, Some("not-a-jwt"), Some(forged.as_str())] {
            let reply = app.call(method.clone(), path, token, Some(json!({}))).await;
            reply.expect_problem(StatusCode::UNAUTHORIZED, "unauthenticated", None);
            assert_eq!(
                reply.headers["www-authenticate"], "Bearer realm=\"kart\"",
                "{method} {path}"
            );
        }
    }

    // The access cookie authenticates like the bearer token...
    let by_cookie = app
        .client
        .get(format!("{}/api/v1/me", app.url))
        .header("cookie", &customer.cookies)
        .send()
        .await
        .unwrap();
    assert_eq!(by_cookie.status(), StatusCode::OK);
    // ...but a page on another site cannot use it to change anything.
    let cross_site = app
        .client
        .post(format!("{}/api/v1/me/payment-methods", app.url))
        .header("cookie", &customer.cookies)
        .header("origin", "https://evil.example")
        .json(&json!({"card_number": "4242424242424242", "exp_month": 12, "exp_year": 2030, "cvc": "123"}))
        .send()
        .await
        .unwrap();
    crate::helpers::Reply::read(cross_site)
        .await
        .expect_problem(StatusCode::FORBIDDEN, "forbidden", None);
    let listed = app
        .get("/api/v1/me/payment-methods", Some(&customer.token))
        .await;
    assert_eq!(
        listed.expect(StatusCode::OK)["payment_methods"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
}
