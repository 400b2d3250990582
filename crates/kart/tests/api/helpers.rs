//! Starting a whole Kart for a test, and speaking to its gateway.

use kit::config::{Mode, Settings};
use kit::testing::LogCapture;
use reqwest::{Method, StatusCode};
use secrecy::SecretString;
use serde_json::{Value, json};

pub const ADMIN_EMAIL: &str = "admin@kart.test";
pub const ADMIN_PASSWORD: &str = "admin password for tests";
/// What the simulated provider signs its webhooks with, in tests.
pub const WEBHOOK_SECRET: &str = "whsec_a_secret_for_tests";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    Embedded,
    Distributed,
}

pub struct TestApp {
    pub url: String,
    pub system: Option<kart::System>,
    pub client: reqwest::Client,
    _dir: tempfile::TempDir,
}

/// Captures this test process's logs, at debug level (more than production).
pub fn capture_logs() -> LogCapture {
    let capture = LogCapture::default();
    let writer = capture.clone();
    let _ = tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(move || writer.clone())
        .try_init();
    capture
}

pub fn test_settings(storage: Storage, dir: &std::path::Path) -> Settings {
    let mut settings = Settings::defaults(match storage {
        Storage::Embedded => Mode::Embedded,
        Storage::Distributed => Mode::Distributed,
    });
    settings.data_dir = dir.to_owned();
    for name in kart::SERVICE_NAMES {
        settings
            .services
            .entry((*name).to_owned())
            .or_default()
            .port = Some(0);
    }
    settings.auth.admin_email = Some(ADMIN_EMAIL.to_owned());
    settings.auth.admin_password = Some(SecretString::from(ADMIN_PASSWORD));
    settings.payments.webhook_secret = Some(SecretString::from(WEBHOOK_SECRET));
    // Limits are exercised by their own test with their own settings.
    settings.gateway.ip_rate_per_sec = 0;
    settings.gateway.user_rate_per_sec = 0;
    settings.gateway.secure_cookies = false;
    // Mail and figures show up within a test's patience.
    settings.notifications.poll_ms = 50;
    settings.notifications.initial_backoff_ms = 100;
    settings.notifications.max_backoff_ms = 1_000;
    settings.analytics.gauge_refresh_secs = 1;
    if storage == Storage::Distributed {
        let database = format!("{}_{{service}}", kit::testing::unique("kart_test"));
        settings.database.url = SecretString::from(kit::testing::postgres_url(&database));
        settings.bus = kit::testing::kafka_settings();
        settings.auth.jwt_secret = Some(SecretString::from(
            "a-test-signing-key-of-at-least-32-bytes",
        ));
    }
    settings
}

impl TestApp {
    pub async fn spawn(storage: Storage) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let settings = test_settings(storage, dir.path());
        TestApp::spawn_with(dir, settings).await
    }

    pub async fn spawn_with(dir: tempfile::TempDir, settings: Settings) -> TestApp {
        if std::env::var_os("KART_TEST_LOG").is_some() {
            // For a person chasing a failure: every service's log on stderr.
            let _ = tracing_subscriber::fmt()
                .with_max_level(tracing::Level::DEBUG)
                .with_writer(std::io::stderr)
                .try_init();
        }
        let system = kart::System::start(settings).await.unwrap();
        TestApp {
            url: system.url("gateway").unwrap(),
            system: Some(system),
            client: reqwest::Client::new(),
            _dir: dir,
        }
    }

    pub async fn stop(mut self) {
        if let Some(system) = self.system.take() {
            system.stop().await;
        }
    }

    pub fn system(&self) -> &kart::System {
        self.system.as_ref().unwrap()
    }

    /// Sends `body` (if any) as JSON with `token` (if any) as the bearer.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut request = self.client.request(method, format!("{}{path}", self.url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        Reply::read(request.send().await.unwrap()).await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        self.call(Method::GET, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Reply {
        self.call(Method::POST, path, token, Some(body)).await
    }

    /// The Prometheus text a service at `service_url` shows on `/metrics`.
    pub async fn metrics(&self, service_url: &str) -> String {
        self.client
            .get(format!("{service_url}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// A new customer, signed in.
    pub async fn customer(&self) -> Session {
        let email = format!("{}@example.com", kit::testing::unique("shopper"));
        let reply = self
            .post("/api/v1/auth/signup", None, json!({"email": email, "password": "correct horse battery", "display_name": "Shopper"}))
            .await;
        reply.expect(StatusCode::CREATED);
        Session::from(&reply)
    }

    /// The admin created from configuration, signed in.
    pub async fn admin(&self) -> Session {
        let reply = self
            .post(
                "/api/v1/auth/signin",
                None,
                json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}),
            )
            .await;
        reply.expect(StatusCode::OK);
        assert_eq!(reply.body["user"]["role"], "admin");
        Session::from(&reply)
    }

    /// A product created by the admin.
    pub async fn product(
        &self,
        admin: &Session,
        sku: &str,
        name: &str,
        category: &str,
        price: i64,
    ) -> Value {
        let reply = self
            .post(
                "/api/v1/admin/products",
                Some(&admin.token),
                json!({"sku": sku, "name": name, "description": format!("{name}, for tests."), "price": {"amount_minor": price, "currency": "EUR"}, "category": category}),
            )
            .await;
        reply.expect(StatusCode::CREATED);
        reply.body
    }
}

pub struct Session {
    pub user_id: String,
    pub token: String,
    pub refresh_token: String,
    /// The `Set-Cookie` values, as a browser would send them back.
    pub cookies: String,
}

impl Session {
    pub fn from(reply: &Reply) -> Session {
        Session {
            user_id: reply.body["user"]["id"].as_str().unwrap().to_owned(),
            token: reply.body["access_token"].as_str().unwrap().to_owned(),
            refresh_token: reply.body["refresh_token"].as_str().unwrap().to_owned(),
            cookies: reply
                .set_cookies
                .iter()
                .filter_map(|c| c.split(';').next())
                .collect::<Vec<_>>()
                .join("; "),
        }
    }
}

#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub set_cookies: Vec<String>,
    pub body: Value,
}

impl Reply {
    pub async fn read(response: reqwest::Response) -> Reply {
        let status = response.status();
        let headers = response.headers().clone();
        let set_cookies = headers
            .get_all(reqwest::header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        let text = response.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Reply {
            status,
            headers,
            set_cookies,
            body,
        }
    }

    #[track_caller]
    pub fn expect(&self, status: StatusCode) -> &Value {
        assert_eq!(self.status, status, "body: {}", self.body);
        &self.body
    }

    /// Asserts an RFC 9457 problem with this status, code and (if given) field.
    #[track_caller]
    pub fn expect_problem(&self, status: StatusCode, code: &str, field: Option<&str>) {
        assert_eq!(self.status, status, "body: {}", self.body);
        assert_eq!(
            self.headers
                .get("content-type")
                .map(|v| v.to_str().unwrap()),
            Some("application/problem+json"),
            "{self:?}"
        );
        assert_eq!(self.body["code"], code, "body: {}", self.body);
        assert_eq!(self.body["status"], status.as_u16());
        assert!(
            !self.body["detail"].as_str().unwrap_or("").is_empty(),
            "a detail a person can act on"
        );
        if let Some(field) = field {
            assert_eq!(self.body["field"], field, "body: {}", self.body);
        }
    }
}
