//! The storefront and the console in headless Chromium: starts a whole
//! Kart (embedded) with a real SMTP server (aiosmtpd) behind its mail, adds
//! a few products, and runs `web/tests` (playwright-core, driving Debian's
//! `chromium`) against it. `scripts/test.sh` installs the browser, the npm
//! package and aiosmtpd; set `KART_SCREENSHOTS=docs/screenshots` to refresh
//! the README's pictures.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::Duration;

use kit::config::{DeliveryKind, Mode, Settings, SmtpTls};
use secrecy::SecretString;
use serde_json::json;

const ADMIN_EMAIL: &str = "admin@kart.test";
const ADMIN_PASSWORD: &str = "admin password for the browser tests";

fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .and_then(Path::parent)
        .unwrap()
}

async fn add_products(gateway: &str) {
    let client = reqwest::Client::new();
    let session: serde_json::Value = client
        .post(format!("{gateway}/api/v1/auth/signin"))
        .json(&json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = session["access_token"].as_str().unwrap();
    for (sku, name, category, price) in [
        ("MUG-STONE", "Stoneware mug", "kitchen", 1250),
        ("TEA-GREEN", "Green tea, loose leaf", "tea", 899),
        ("BEANS-ETH", "Ethiopian coffee beans", "coffee", 1490),
    ] {
        let created = client
            .post(format!("{gateway}/api/v1/admin/products"))
            .bearer_auth(token)
            .json(&json!({"sku": sku, "name": name, "category": category,
                "description": format!("{name}, for the browser tests."),
                "price": {"amount_minor": price, "currency": "EUR"}}))
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), reqwest::StatusCode::CREATED);
        let stocked = client
            .post(format!("{gateway}/api/v1/admin/stock/{sku}/adjustments"))
            .bearer_auth(token)
            .json(&json!({"delta": 50, "reason": "browser tests"}))
            .send()
            .await
            .unwrap();
        assert_eq!(stocked.status(), reqwest::StatusCode::OK);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_storefront_and_console_work_in_a_real_browser() {
    let tests = workspace().join("web/tests");
    assert!(
        tests.join("node_modules/playwright-core").exists(),
        "web/tests needs `npm ci` (scripts/test.sh runs it)"
    );
    let dir = tempfile::tempdir().unwrap();
    let mail = dir.path().join("mail");
    std::fs::create_dir(&mail).unwrap();
    let smtp = kit::testing::SmtpServer::start(&mail).await;

    let mut settings = Settings::defaults(Mode::Embedded);
    settings.data_dir = dir.path().to_owned();
    for name in kart::SERVICE_NAMES {
        settings
            .services
            .entry((*name).to_owned())
            .or_default()
            .port = Some(0);
    }
    settings.auth.admin_email = Some(ADMIN_EMAIL.to_owned());
    settings.auth.admin_password = Some(SecretString::from(ADMIN_PASSWORD));
    settings.gateway.secure_cookies = false;
    settings.gateway.ip_rate_per_sec = 0;
    settings.gateway.user_rate_per_sec = 0;
    let notifications = &mut settings.notifications;
    notifications.delivery = DeliveryKind::Smtp;
    notifications.smtp.host = "127.0.0.1".into();
    notifications.smtp.port = smtp.port;
    notifications.smtp.tls = SmtpTls::None;
    notifications.max_attempts = 1;
    notifications.poll_ms = 50;
    let system = kart::System::start(settings).await.unwrap();
    let gateway = system.url("gateway").unwrap();
    add_products(&gateway).await;

    let mut node = tokio::process::Command::new("node");
    node.arg("--test")
        .arg("--test-concurrency=1")
        .arg("shop.test.mjs")
        .current_dir(&tests)
        .env("KART_URL", &gateway)
        .env("KART_ADMIN_EMAIL", ADMIN_EMAIL)
        .env("KART_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("KART_SMTP_DIR", &mail)
        .kill_on_drop(true);
    if let Ok(shots) = std::env::var("KART_SCREENSHOTS") {
        node.env("KART_SCREENSHOTS", workspace().join(shots));
    }
    let output = tokio::time::timeout(Duration::from_secs(300), node.output())
        .await
        .expect("the browser tests finish within 5 minutes")
        .expect("node runs (scripts/test.sh installs Node.js' packages)");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    println!("{report}");
    assert!(output.status.success(), "browser tests failed:\n{report}");
    assert!(
        report.contains("# pass 4"),
        "every browser test ran:\n{report}"
    );
    system.stop().await;
}
