//! Layered configuration: built-in defaults for the chosen [`Mode`], then an
//! optional TOML file, then `KART__SECTION__KEY` environment variables.
//!
//! Everything is validated once at start-up ([`Settings::load`]); a bad value
//! is reported as one line that names the key, so an operator can fix it
//! without reading a stack trace. Secrets (the database URL carries a
//! password) are [`SecretString`]s: they never reach `Debug` output or logs.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

/// How Kart runs: everything in one process on local storage, or one service
/// per process on PostgreSQL and Kafka. Only the defaults differ; every key
/// can still be overridden.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `kart up`: SQLite files and the embedded event log under `data_dir`.
    Embedded,
    /// `kart serve`: PostgreSQL (database per service) and a Kafka-protocol broker.
    Distributed,
}

/// The whole configuration of a Kart process.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Settings {
    /// Where embedded mode keeps its SQLite files and event log.
    pub data_dir: PathBuf,
    /// Where shoppers reach Kart (the gateway, as their browser sees it):
    /// links in emails and the pages a payment provider sends them back to.
    #[serde(default = "default_public_url")]
    pub public_url: String,
    pub telemetry: TelemetrySettings,
    pub database: DatabaseSettings,
    pub bus: BusSettings,
    pub http: HttpSettings,
    #[serde(default)]
    pub auth: AuthSettings,
    #[serde(default)]
    pub gateway: GatewaySettings,
    #[serde(default)]
    pub inventory: InventorySettings,
    #[serde(default)]
    pub orders: OrderSettings,
    #[serde(default)]
    pub payments: PaymentSettings,
    #[serde(default)]
    pub notifications: NotificationSettings,
    #[serde(default)]
    pub analytics: AnalyticsSettings,
    /// Per-service settings, keyed by service name (`orders`, `gateway`, ...).
    #[serde(default)]
    pub services: BTreeMap<String, ServiceSettings>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TelemetrySettings {
    /// A `tracing` filter, e.g. `info` or `info,kit=debug`.
    pub log_level: String,
    pub log_format: LogFormat,
    /// An OTLP/HTTP collector, e.g. `http://otel-collector:4318`: spans are
    /// exported there when set. Off by default.
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line: what log shippers want.
    Json,
    /// Human-readable lines for a terminal.
    Pretty,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DatabaseSettings {
    /// Connection URL template; `{service}` is replaced by the service name so
    /// that each service gets a database of its own. `{data_dir}` is replaced
    /// by [`Settings::data_dir`]. It usually carries a password, hence secret.
    #[serde(serialize_with = "serialize_redacted")]
    pub url: SecretString,
    pub max_connections: u32,
    /// How long start-up waits for the database before giving up.
    pub connect_timeout_secs: u64,
}

/// The longest `bus.fetch_wait_ms` accepted: a minute, far past any use.
pub const MAX_FETCH_WAIT_MS: u32 = 60_000;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BusSettings {
    pub kind: BusKind,
    /// Kafka bootstrap servers, comma separated `host:port`.
    pub brokers: String,
    /// Partitions for topics Kart creates.
    pub partitions: i32,
    pub replication_factor: i32,
    /// Kafka's idempotent producer: no duplicates or reordering from the
    /// producer's own retries. Turn off only for a broker that mishandles it.
    pub idempotent_producer: bool,
    /// Embedded event log file; `{data_dir}` is replaced.
    pub embedded_path: String,
    /// Put before every topic and consumer group name on a Kafka broker
    /// (`staging.` gives `staging.order.events`), so several Kart
    /// installations, or test runs, share one broker without seeing each
    /// other's events. Empty by default.
    pub namespace: String,
    /// A stable name for this process among its service's replicas (a
    /// StatefulSet pod's name, say). Set, its consumers are static members
    /// of their groups (Kafka's `group.instance.id`): a process that
    /// crashes and comes back takes its partitions back at once, with no
    /// rebalance and no wait for its old session to expire. Two live
    /// processes must never share one. Unset by default.
    #[serde(default)]
    pub instance_id: Option<String>,
    /// How long the broker may hold a consumer's fetch while it has no
    /// record to give (librdkafka's `fetch.wait.max.ms`). A sound broker
    /// answers as soon as a record arrives, so this only paces an idle
    /// consumer's polling; Kafka's own default suits it. A broker that holds
    /// every fetch for a share of this wait even when records are ready
    /// (tansu 0.6.0 holds it for half: its `fetch-wait` defect, README)
    /// adds that much to every hop between services, and wants it small.
    pub fetch_wait_ms: u32,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BusKind {
    Embedded,
    Kafka,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HttpSettings {
    /// Address every service listens on.
    pub host: IpAddr,
    pub request_timeout_secs: u64,
    pub body_limit_bytes: usize,
    /// How long a stopping service waits for in-flight work before it exits.
    pub shutdown_grace_secs: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ServiceSettings {
    /// The HTTP port; 0 asks the OS for a free one (tests do this).
    pub port: Option<u16>,
    /// Where other services reach this one (the gateway's upstream), e.g.
    /// `http://orders:8084`. Defaults to this host and port.
    pub url: Option<String>,
}

/// Who may do what: access tokens, sessions, the first admin.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct AuthSettings {
    /// The key access tokens are signed with (HS256), at least 32 bytes.
    /// Distributed mode requires it, and every gateway replica must share
    /// it; embedded mode makes one on first start and keeps it in
    /// `{data_dir}/jwt-secret`, so sessions outlive a restart.
    #[serde(serialize_with = "serialize_redacted_option")]
    pub jwt_secret: Option<SecretString>,
    /// Access tokens are short-lived: a stolen one is useful for minutes.
    pub access_ttl_secs: u64,
    /// Refresh tokens are single use and rotate on every refresh.
    pub refresh_ttl_secs: u64,
    /// The first admin, created at start when both are set and no account
    /// has that email yet (an existing account is made admin, its password
    /// untouched). There is no default: without these, create one with
    /// `kart admin create`.
    pub admin_email: Option<String>,
    #[serde(serialize_with = "serialize_redacted_option")]
    pub admin_password: Option<SecretString>,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            jwt_secret: None,
            access_ttl_secs: 15 * 60,
            refresh_ttl_secs: 30 * 24 * 3600,
            admin_email: None,
            admin_password: None,
        }
    }
}

/// The public door's protections.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct GatewaySettings {
    /// Sustained requests per second allowed from one client IP, and the
    /// burst above it. 0 turns the limit off.
    pub ip_rate_per_sec: u32,
    pub ip_burst: u32,
    /// The same per signed-in user, whichever IP they come from.
    pub user_rate_per_sec: u32,
    pub user_burst: u32,
    /// Use the first `X-Forwarded-For` address as the client IP: set only
    /// behind a proxy that overwrites that header.
    pub trust_forwarded_for: bool,
    /// Origins allowed to call the API from a browser (CORS), e.g.
    /// `https://shop.example.com`. Empty: same origin only.
    pub cors_allowed_origins: Vec<String>,
    /// Mark session cookies `Secure` (sent over HTTPS only). On by default;
    /// embedded mode, served over plain HTTP on localhost, turns it off.
    pub secure_cookies: bool,
    /// How long the gateway waits for a service behind it.
    pub upstream_timeout_secs: u64,
    /// The longest the gateway serves a kept public catalog answer (lists,
    /// searches, product pages) without asking the catalog again; product
    /// changes drop kept answers sooner. 0 turns the cache off.
    pub catalog_cache_ttl_ms: u64,
    /// The most memory the kept catalog answers may take.
    pub catalog_cache_max_bytes: usize,
}

impl Default for GatewaySettings {
    fn default() -> Self {
        GatewaySettings {
            ip_rate_per_sec: 100,
            ip_burst: 200,
            user_rate_per_sec: 50,
            user_burst: 100,
            trust_forwarded_for: false,
            cors_allowed_origins: Vec::new(),
            secure_cookies: true,
            upstream_timeout_secs: 10,
            catalog_cache_ttl_ms: 5_000,
            catalog_cache_max_bytes: 16 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct InventorySettings {
    /// How long a reservation holds stock unless the order commits it.
    pub reservation_ttl_secs: u64,
    /// How often expired reservations are looked for.
    pub expiry_sweep_secs: u64,
}

impl Default for InventorySettings {
    fn default() -> Self {
        InventorySettings {
            reservation_ttl_secs: 15 * 60,
            expiry_sweep_secs: 5,
        }
    }
}

/// Which payment provider takes the money.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// Built in: Stripe's test cards, no account, no network.
    #[default]
    Simulated,
    /// Stripe's API (or anything that speaks it, at `payments.stripe.base_url`).
    Stripe,
}

/// The payment provider's side of things.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct PaymentSettings {
    pub provider: ProviderKind,
    /// The secret provider webhooks are signed with: for `stripe`, the
    /// endpoint's `whsec_…` secret (required); for `simulated`, unset means
    /// a random one per process, so only webhooks the process itself sent
    /// verify.
    #[serde(serialize_with = "serialize_redacted_option")]
    pub webhook_secret: Option<SecretString>,
    pub simulated: SimulatedProviderSettings,
    pub stripe: StripeSettings,
}

/// How the simulated provider behaves, to rehearse a slow or flaky one.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SimulatedProviderSettings {
    /// Added to every provider call.
    pub latency_ms: u64,
    /// The share of calls (0 to 1) that fail as a provider outage would:
    /// they are retried with the same idempotency key.
    pub failure_rate: f64,
}

/// Where and how Kart talks to Stripe.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct StripeSettings {
    /// The secret API key (`sk_live_…`, `sk_test_…`). Required for `stripe`.
    #[serde(serialize_with = "serialize_redacted_option")]
    pub api_key: Option<SecretString>,
    /// Stripe's API; the tests point it at a local fake.
    pub base_url: String,
    /// How long one call to Stripe may take before it counts as an outage
    /// (and is retried with the same idempotency key).
    pub timeout_secs: u64,
}

impl Default for StripeSettings {
    fn default() -> Self {
        StripeSettings {
            api_key: None,
            base_url: "https://api.stripe.com".into(),
            timeout_secs: 30,
        }
    }
}

/// Where the emails go.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryKind {
    /// Kept in the built-in mailbox only (the console shows it): try Kart
    /// with no mail server. The default.
    #[default]
    Mailbox,
    /// Sent over SMTP (and kept in the mailbox as a record of what was sent).
    Smtp,
}

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain text: a relay on the same host or a test server only.
    None,
    /// Upgrade with STARTTLS, refusing a server that does not offer it
    /// (port 587). The default.
    #[default]
    Starttls,
    /// TLS from the first byte (SMTPS, port 465).
    Tls,
}

/// The notifications service: where mail goes and how hard it tries.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct NotificationSettings {
    pub delivery: DeliveryKind,
    /// The `From:` of every message.
    pub from: String,
    pub smtp: SmtpSettings,
    /// Tries per message (the first send included) before it becomes a
    /// dead letter.
    pub max_attempts: u32,
    /// The wait after the first failure; it doubles (with jitter) after
    /// each further one, up to `max_backoff_ms`.
    pub initial_backoff_ms: u64,
    pub max_backoff_ms: u64,
    /// How often the sender looks for messages that are due.
    pub poll_ms: u64,
}

impl Default for NotificationSettings {
    fn default() -> Self {
        NotificationSettings {
            delivery: DeliveryKind::Mailbox,
            from: "Kart <shop@kart.localhost>".into(),
            smtp: SmtpSettings::default(),
            max_attempts: 6,
            initial_backoff_ms: 2_000,
            max_backoff_ms: 5 * 60 * 1000,
            poll_ms: 250,
        }
    }
}

/// An SMTP submission server.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    /// Set both to log in; neither for a server that needs no login.
    pub username: Option<String>,
    #[serde(serialize_with = "serialize_redacted_option")]
    pub password: Option<SecretString>,
    /// How long one send may take before it counts as failed (and is tried
    /// again later).
    pub timeout_secs: u64,
}

impl Default for SmtpSettings {
    fn default() -> Self {
        SmtpSettings {
            host: "localhost".into(),
            port: 587,
            tls: SmtpTls::Starttls,
            username: None,
            password: None,
            timeout_secs: 10,
        }
    }
}

/// The analytics service.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct AnalyticsSettings {
    /// How often the Prometheus gauges are recomputed from the aggregates.
    pub gauge_refresh_secs: u64,
    /// The window (minutes up to now) the gauges describe.
    pub gauge_window_minutes: u32,
}

impl Default for AnalyticsSettings {
    fn default() -> Self {
        AnalyticsSettings {
            gauge_refresh_secs: 10,
            gauge_window_minutes: 60,
        }
    }
}

/// How long an order may wait for its payment.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct OrderSettings {
    /// A reserved order whose payment has not settled by then fails (and a
    /// capture that arrives later is refunded). Shorter than the stock
    /// reservation, so the order fails before its stock is given back.
    pub payment_timeout_secs: u64,
    /// How often stuck orders are looked for.
    pub stuck_sweep_secs: u64,
}

impl Default for OrderSettings {
    fn default() -> Self {
        OrderSettings {
            payment_timeout_secs: 10 * 60,
            stuck_sweep_secs: 5,
        }
    }
}

fn serialize_redacted_option<S: serde::Serializer>(
    value: &Option<SecretString>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some(_) => s.serialize_str("[REDACTED]"),
        None => s.serialize_none(),
    }
}

fn serialize_redacted<S: serde::Serializer>(_: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str("[REDACTED]")
}

/// A configuration problem, phrased for the operator who has to fix it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Invalid(String),
    #[error("configuration key `{key}`: {problem}")]
    Key { key: String, problem: String },
}

impl Settings {
    /// Built-in defaults for a mode, before any file or environment layer.
    pub fn defaults(mode: Mode) -> Settings {
        // Embedded mode is someone at a terminal; distributed mode feeds a
        // log shipper.
        let (url, bus_kind, log_format) = match mode {
            Mode::Embedded => (
                "sqlite://{data_dir}/{service}.db",
                BusKind::Embedded,
                LogFormat::Pretty,
            ),
            Mode::Distributed => (
                "postgres://postgres@127.0.0.1:5432/kart_{service}",
                BusKind::Kafka,
                LogFormat::Json,
            ),
        };
        Settings {
            data_dir: PathBuf::from("data"),
            public_url: default_public_url(),
            telemetry: TelemetrySettings {
                log_level: "info".into(),
                log_format,
                otlp_endpoint: None,
            },
            database: DatabaseSettings {
                url: SecretString::from(url),
                max_connections: 10,
                connect_timeout_secs: 5,
            },
            bus: BusSettings {
                kind: bus_kind,
                brokers: "127.0.0.1:9092".into(),
                partitions: 3,
                replication_factor: 1,
                idempotent_producer: true,
                embedded_path: "{data_dir}/bus.db".into(),
                namespace: String::new(),
                instance_id: None,
                fetch_wait_ms: 500,
            },
            http: HttpSettings {
                host: IpAddr::from([127, 0, 0, 1]),
                request_timeout_secs: 30,
                body_limit_bytes: 1 << 20,
                shutdown_grace_secs: 5,
            },
            auth: AuthSettings::default(),
            gateway: GatewaySettings {
                secure_cookies: mode == Mode::Distributed,
                ..GatewaySettings::default()
            },
            inventory: InventorySettings::default(),
            orders: OrderSettings::default(),
            payments: PaymentSettings::default(),
            notifications: NotificationSettings::default(),
            analytics: AnalyticsSettings::default(),
            services: BTreeMap::new(),
        }
    }

    /// Loads defaults → `file` (if given, it must exist) → `KART__…` env vars,
    /// then validates.
    pub fn load(mode: Mode, file: Option<&Path>) -> Result<Settings, ConfigError> {
        Self::load_from(mode, file, Env::prefixed("KART__").split("__"))
    }

    /// [`Settings::load`] with an explicit environment layer.
    pub fn load_from(mode: Mode, file: Option<&Path>, env: Env) -> Result<Settings, ConfigError> {
        let defaults = Self::defaults(mode);
        // Settings serialise with the URL redacted; the real default (which
        // holds no password) is layered back in by its key.
        let default_url = defaults.database.url.expose_secret().to_owned();
        let mut figment = Figment::from(Serialized::defaults(defaults))
            .merge(Serialized::default("database.url", default_url));
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError::Invalid(format!(
                    "config file {} does not exist",
                    path.display()
                )));
            }
            figment = figment.merge(Toml::file(path));
        }
        let mut settings: Settings = figment.merge(env).extract().map_err(from_figment)?;
        // An empty secret (a Compose `${VAR:-}` left unset) is no secret.
        let blank = |s: &SecretString| s.expose_secret().is_empty();
        settings.payments.webhook_secret = settings.payments.webhook_secret.filter(|s| !blank(s));
        settings.payments.stripe.api_key = settings.payments.stripe.api_key.filter(|s| !blank(s));
        let smtp = &mut settings.notifications.smtp;
        smtp.password = smtp.password.take().filter(|s| !blank(s));
        smtp.username = smtp.username.take().filter(|u| !u.is_empty());
        settings.validate()?;
        Ok(settings)
    }

    /// Checks what types alone cannot: URLs, broker lists, ranges.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let url = self.database.url.expose_secret();
        if !(url.starts_with("postgres://")
            || url.starts_with("postgresql://")
            || url.starts_with("sqlite:"))
        {
            return Err(key_error(
                "database.url",
                "must start with postgres:// or sqlite: (the value is secret and not shown)",
            ));
        }
        if self.database.max_connections == 0 {
            return Err(key_error("database.max_connections", "must be at least 1"));
        }
        if self.bus.kind == BusKind::Kafka {
            parse_broker_list(&self.bus.brokers).map_err(|p| key_error("bus.brokers", &p))?;
        }
        if !self
            .bus
            .namespace
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err(key_error(
                "bus.namespace",
                "may hold only letters, digits, '.', '_' and '-' (Kafka's topic characters)",
            ));
        }
        if let Some(instance) = &self.bus.instance_id
            && (instance.is_empty()
                || !instance
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(key_error(
                "bus.instance_id",
                "may hold only letters, digits, '.', '_' and '-', and not be empty",
            ));
        }
        if !(1..=MAX_FETCH_WAIT_MS).contains(&self.bus.fetch_wait_ms) {
            return Err(key_error(
                "bus.fetch_wait_ms",
                &format!("must be between 1 and {MAX_FETCH_WAIT_MS} (milliseconds)"),
            ));
        }
        if self.bus.partitions < 1 {
            return Err(key_error("bus.partitions", "must be at least 1"));
        }
        if self.bus.replication_factor < 1 {
            return Err(key_error("bus.replication_factor", "must be at least 1"));
        }
        if self.http.body_limit_bytes == 0 {
            return Err(key_error("http.body_limit_bytes", "must be more than 0"));
        }
        if let Some(secret) = &self.auth.jwt_secret
            && secret.expose_secret().len() < 32
        {
            return Err(key_error(
                "auth.jwt_secret",
                "must be at least 32 bytes (the value is secret and not shown)",
            ));
        }
        if self.auth.access_ttl_secs == 0 || self.auth.refresh_ttl_secs <= self.auth.access_ttl_secs
        {
            return Err(key_error(
                "auth.refresh_ttl_secs",
                "must be longer than auth.access_ttl_secs, which must be at least 1",
            ));
        }
        if self.auth.admin_email.is_some() != self.auth.admin_password.is_some() {
            return Err(key_error(
                "auth.admin_password",
                "auth.admin_email and auth.admin_password are set together or not at all",
            ));
        }
        if self.inventory.reservation_ttl_secs == 0 {
            return Err(key_error(
                "inventory.reservation_ttl_secs",
                "must be at least 1",
            ));
        }
        if self.inventory.expiry_sweep_secs == 0 {
            return Err(key_error(
                "inventory.expiry_sweep_secs",
                "must be at least 1",
            ));
        }
        if self.orders.payment_timeout_secs == 0 {
            return Err(key_error(
                "orders.payment_timeout_secs",
                "must be at least 1",
            ));
        }
        if self.orders.stuck_sweep_secs == 0 {
            return Err(key_error("orders.stuck_sweep_secs", "must be at least 1"));
        }
        if let Some(secret) = &self.payments.webhook_secret
            && secret.expose_secret().len() < 16
        {
            return Err(key_error(
                "payments.webhook_secret",
                "must be at least 16 bytes (the value is secret and not shown)",
            ));
        }
        let rate = self.payments.simulated.failure_rate;
        if !(0.0..=1.0).contains(&rate) {
            return Err(key_error(
                "payments.simulated.failure_rate",
                "must be between 0 and 1",
            ));
        }
        if self.payments.provider == ProviderKind::Stripe {
            if self.payments.stripe.api_key.is_none() {
                return Err(key_error(
                    "payments.stripe.api_key",
                    "is required when payments.provider is stripe",
                ));
            }
            if self.payments.webhook_secret.is_none() {
                return Err(key_error(
                    "payments.webhook_secret",
                    "is required when payments.provider is stripe (the endpoint's whsec_… secret)",
                ));
            }
            let base = &self.payments.stripe.base_url;
            if !(base.starts_with("https://") || base.starts_with("http://")) {
                return Err(key_error(
                    "payments.stripe.base_url",
                    "must be an http:// or https:// URL",
                ));
            }
            if self.payments.stripe.timeout_secs == 0 {
                return Err(key_error(
                    "payments.stripe.timeout_secs",
                    "must be at least 1",
                ));
            }
        }
        if !(self.public_url.starts_with("https://") || self.public_url.starts_with("http://")) {
            return Err(key_error(
                "public_url",
                "must be an http:// or https:// URL",
            ));
        }
        self.validate_notifications()?;
        if self.analytics.gauge_refresh_secs == 0 {
            return Err(key_error(
                "analytics.gauge_refresh_secs",
                "must be at least 1",
            ));
        }
        if !(1..=24 * 60).contains(&self.analytics.gauge_window_minutes) {
            return Err(key_error(
                "analytics.gauge_window_minutes",
                "must be 1 to 1440",
            ));
        }
        if self.gateway.upstream_timeout_secs == 0 {
            return Err(key_error(
                "gateway.upstream_timeout_secs",
                "must be at least 1",
            ));
        }
        Ok(())
    }

    fn validate_notifications(&self) -> Result<(), ConfigError> {
        let notifications = &self.notifications;
        if !looks_like_mailbox(&notifications.from) {
            return Err(key_error(
                "notifications.from",
                "must be an address such as `Kart <shop@example.com>`",
            ));
        }
        if notifications.max_attempts == 0 {
            return Err(key_error(
                "notifications.max_attempts",
                "must be at least 1",
            ));
        }
        if notifications.initial_backoff_ms == 0
            || notifications.max_backoff_ms < notifications.initial_backoff_ms
        {
            return Err(key_error(
                "notifications.max_backoff_ms",
                "must be at least notifications.initial_backoff_ms, which must be at least 1",
            ));
        }
        if notifications.poll_ms == 0 {
            return Err(key_error("notifications.poll_ms", "must be at least 1"));
        }
        if notifications.delivery == DeliveryKind::Smtp {
            let smtp = &notifications.smtp;
            if smtp.host.trim().is_empty() {
                return Err(key_error(
                    "notifications.smtp.host",
                    "is required when notifications.delivery is smtp",
                ));
            }
            if smtp.port == 0 {
                return Err(key_error("notifications.smtp.port", "must not be 0"));
            }
            if smtp.username.is_some() != smtp.password.is_some() {
                return Err(key_error(
                    "notifications.smtp.password",
                    "notifications.smtp.username and password are set together or not at all",
                ));
            }
            if smtp.timeout_secs == 0 {
                return Err(key_error(
                    "notifications.smtp.timeout_secs",
                    "must be at least 1",
                ));
            }
        }
        Ok(())
    }

    /// The database URL for one service, with placeholders filled in.
    pub fn database_url(&self, service: &str) -> SecretString {
        let url = self
            .database
            .url
            .expose_secret()
            .replace("{service}", service)
            .replace("{data_dir}", &self.data_dir.to_string_lossy());
        SecretString::from(url)
    }

    /// Where the embedded event log lives.
    pub fn embedded_bus_path(&self) -> PathBuf {
        PathBuf::from(
            self.bus
                .embedded_path
                .replace("{data_dir}", &self.data_dir.to_string_lossy()),
        )
    }

    /// Where other services reach `service`: its configured URL, or
    /// `http://<http.host>:<port>`.
    pub fn service_url(&self, service: &str, default_port: u16) -> String {
        self.services
            .get(service)
            .and_then(|s| s.url.clone())
            .unwrap_or_else(|| {
                format!(
                    "http://{}:{}",
                    self.http.host,
                    self.port_of(service, default_port)
                )
            })
    }

    /// The configured port of a service, or its default.
    pub fn port_of(&self, service: &str, default: u16) -> u16 {
        self.services
            .get(service)
            .and_then(|s| s.port)
            .unwrap_or(default)
    }
}

/// Parses `host:port[,host:port…]`; the error says which entry is wrong.
pub fn parse_broker_list(list: &str) -> Result<Vec<(String, u16)>, String> {
    let mut brokers = Vec::new();
    for entry in list.split(',').map(str::trim) {
        let Some((host, port)) = entry.rsplit_once(':') else {
            return Err(format!("`{entry}` is not host:port"));
        };
        if host.is_empty() || host.contains(char::is_whitespace) {
            return Err(format!("`{entry}` has no valid host"));
        }
        let port: u16 = port
            .parse()
            .map_err(|_| format!("`{entry}` has no valid port"))?;
        if port == 0 {
            return Err(format!("`{entry}` has port 0"));
        }
        brokers.push((host.to_owned(), port));
    }
    Ok(brokers)
}

/// `name@domain` or `Display Name <name@domain>`: enough to catch a typo
/// at start-up (the mailer parses it fully when it builds a message).
fn looks_like_mailbox(value: &str) -> bool {
    let address = match (value.find('<'), value.rfind('>')) {
        (Some(open), Some(close)) if open < close && close == value.len() - 1 => {
            &value[open + 1..close]
        }
        (None, None) => value.trim(),
        _ => return false,
    };
    match address.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && !address.contains(char::is_whitespace)
        }
        None => false,
    }
}

fn default_public_url() -> String {
    "http://localhost:8080".into()
}

fn key_error(key: &str, problem: &str) -> ConfigError {
    ConfigError::Key {
        key: key.to_owned(),
        problem: problem.to_owned(),
    }
}

fn from_figment(error: figment::Error) -> ConfigError {
    let key = error.path.join(".");
    let problem = error.kind.to_string();
    if key.is_empty() {
        ConfigError::Invalid(problem)
    } else {
        ConfigError::Key { key, problem }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An environment layer that reads nothing.
    fn no_env() -> Env {
        Env::prefixed("KART_TEST_UNSET_PREFIX__")
    }

    #[test]
    fn defaults_are_valid_in_both_modes() {
        for mode in [Mode::Embedded, Mode::Distributed] {
            let settings = Settings::load_from(mode, None, no_env()).unwrap();
            settings.validate().unwrap();
        }
    }

    #[test]
    fn database_url_is_templated_per_service() {
        let settings = Settings::defaults(Mode::Distributed);
        assert_eq!(
            settings.database_url("orders").expose_secret(),
            "postgres://postgres@127.0.0.1:5432/kart_orders"
        );
        let settings = Settings::defaults(Mode::Embedded);
        assert_eq!(
            settings.database_url("users").expose_secret(),
            "sqlite://data/users.db"
        );
    }

    #[test]
    fn a_malformed_broker_list_is_refused_naming_the_key() {
        let mut settings = Settings::defaults(Mode::Distributed);
        settings.bus.brokers = "localhost:9092,nonsense".into();
        let error = settings.validate().unwrap_err().to_string();
        assert!(error.contains("bus.brokers"), "{error}");
        assert!(error.contains("nonsense"), "{error}");
    }

    #[test]
    fn a_fetch_wait_out_of_range_is_refused_naming_the_key() {
        for wait in [0, MAX_FETCH_WAIT_MS + 1] {
            let mut settings = Settings::defaults(Mode::Distributed);
            settings.bus.fetch_wait_ms = wait;
            let error = settings.validate().unwrap_err().to_string();
            assert!(error.contains("bus.fetch_wait_ms"), "{wait}: {error}");
        }
        let mut settings = Settings::defaults(Mode::Distributed);
        settings.bus.fetch_wait_ms = 10;
        settings.validate().unwrap();
    }

    #[test]
    fn broker_lists_parse() {
        assert_eq!(
            parse_broker_list("a:1, b:2").unwrap(),
            vec![("a".to_owned(), 1), ("b".to_owned(), 2)]
        );
        assert!(parse_broker_list("a:x").is_err());
        assert!(parse_broker_list(":9092").is_err());
        assert!(parse_broker_list("a:0").is_err());
    }

    #[test]
    fn a_bad_database_scheme_is_refused_without_showing_the_url() {
        let mut settings = Settings::defaults(Mode::Distributed);
        settings.database.url = SecretString::from("mysql://root:hunter2@db/kart");
        let error = settings.validate().unwrap_err().to_string();
        assert!(error.contains("database.url"), "{error}");
        assert!(!error.contains("hunter2"), "{error}");
    }

    #[test]
    fn secrets_never_print() {
        let mut settings = Settings::defaults(Mode::Distributed);
        settings.database.url = SecretString::from("postgres://u:hunter2@db/kart");
        assert!(!format!("{settings:?}").contains("hunter2"));
        assert!(
            !serde_json::to_string(&settings)
                .unwrap()
                .contains("hunter2")
        );
    }

    #[test]
    fn a_file_layer_overrides_defaults_and_type_errors_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kart.toml");
        std::fs::write(&path, "[services.orders]\nport = 9999\n").unwrap();
        let settings = Settings::load_from(Mode::Embedded, Some(&path), no_env()).unwrap();
        assert_eq!(settings.port_of("orders", 1), 9999);
        assert_eq!(settings.port_of("users", 1), 1);

        std::fs::write(&path, "[services.orders]\nport = \"high\"\n").unwrap();
        let error = Settings::load_from(Mode::Embedded, Some(&path), no_env())
            .unwrap_err()
            .to_string();
        assert!(error.contains("services.orders.port"), "{error}");
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API, not ours
    fn environment_variables_override_the_file() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("kart.toml", "[bus]\nbrokers = \"file:1\"\n")?;
            jail.set_env("KART__BUS__BROKERS", "env:2");
            jail.set_env("KART__SERVICES__GATEWAY__PORT", "0");
            let settings = Settings::load(Mode::Distributed, Some(Path::new("kart.toml"))).unwrap();
            assert_eq!(settings.bus.brokers, "env:2");
            assert_eq!(settings.port_of("gateway", 8080), 0);
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API, not ours
    fn the_stripe_provider_needs_its_key_and_webhook_secret_and_blank_ones_are_unset() {
        figment::Jail::expect_with(|jail| {
            // What Compose passes for `${KART_STRIPE_API_KEY:-}` left unset.
            jail.set_env("KART__PAYMENTS__STRIPE__API_KEY", "");
            jail.set_env("KART__PAYMENTS__WEBHOOK_SECRET", "");
            let simulated = Settings::load(Mode::Distributed, None).unwrap();
            assert!(simulated.payments.webhook_secret.is_none());
            assert!(simulated.payments.stripe.api_key.is_none());

            jail.set_env("KART__PAYMENTS__PROVIDER", "stripe");
            let error = Settings::load(Mode::Distributed, None)
                .unwrap_err()
                .to_string();
            assert!(error.contains("payments.stripe.api_key"), "{error}");
            jail.set_env("KART__PAYMENTS__STRIPE__API_KEY", "sk_test_123");
            let error = Settings::load(Mode::Distributed, None)
                .unwrap_err()
                .to_string();
            assert!(error.contains("payments.webhook_secret"), "{error}");
            jail.set_env("KART__PAYMENTS__WEBHOOK_SECRET", "short");
            let error = Settings::load(Mode::Distributed, None)
                .unwrap_err()
                .to_string();
            assert!(
                error.contains("16 bytes") && !error.contains("short"),
                "{error}"
            );
            jail.set_env("KART__PAYMENTS__WEBHOOK_SECRET", "whsec_0123456789abcdef");
            let stripe = Settings::load(Mode::Distributed, None).unwrap();
            assert_eq!(stripe.payments.provider, ProviderKind::Stripe);
            let shown = serde_json::to_string(&stripe).unwrap();
            assert!(
                !shown.contains("sk_test_123") && !shown.contains("whsec_0123"),
                "{shown}"
            );

            jail.set_env("KART__PAYMENTS__SIMULATED__FAILURE_RATE", "1.5");
            let error = Settings::load(Mode::Distributed, None)
                .unwrap_err()
                .to_string();
            assert!(error.contains("failure_rate"), "{error}");
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API, not ours
    fn smtp_delivery_is_checked_and_its_password_never_shown() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("KART__NOTIFICATIONS__DELIVERY", "smtp");
            jail.set_env("KART__NOTIFICATIONS__SMTP__HOST", "mail.example.com");
            jail.set_env("KART__NOTIFICATIONS__SMTP__USERNAME", "kart");
            let error = Settings::load(Mode::Embedded, None)
                .unwrap_err()
                .to_string();
            assert!(error.contains("notifications.smtp.password"), "{error}");
            jail.set_env("KART__NOTIFICATIONS__SMTP__PASSWORD", "hunter2-smtp");
            jail.set_env("KART__NOTIFICATIONS__SMTP__TLS", "tls");
            let settings = Settings::load(Mode::Embedded, None).unwrap();
            assert_eq!(settings.notifications.delivery, DeliveryKind::Smtp);
            assert_eq!(settings.notifications.smtp.tls, SmtpTls::Tls);
            let shown = format!("{settings:?} {}", serde_json::to_string(&settings).unwrap());
            assert!(!shown.contains("hunter2-smtp"), "{shown}");

            jail.set_env("KART__NOTIFICATIONS__FROM", "not an address");
            let error = Settings::load(Mode::Embedded, None)
                .unwrap_err()
                .to_string();
            assert!(error.contains("notifications.from"), "{error}");
            jail.set_env("KART__NOTIFICATIONS__FROM", "Shop <shop@example.com>");
            jail.set_env("KART__NOTIFICATIONS__MAX_BACKOFF_MS", "1");
            let error = Settings::load(Mode::Embedded, None)
                .unwrap_err()
                .to_string();
            assert!(error.contains("notifications.max_backoff_ms"), "{error}");
            Ok(())
        });
    }

    #[test]
    fn mailbox_addresses_are_told_from_typos() {
        for good in ["a@b.c", "Kart <shop@kart.localhost>", " x@y "] {
            assert!(looks_like_mailbox(good), "{good}");
        }
        for bad in ["", "shop", "a@", "@b", "Kart <shop@x", "a b@c", "a@b@c"] {
            assert!(!looks_like_mailbox(bad), "{bad}");
        }
    }

    #[test]
    fn a_missing_config_file_is_an_error() {
        let error = Settings::load_from(Mode::Embedded, Some(Path::new("/nope.toml")), no_env())
            .unwrap_err()
            .to_string();
        assert!(error.contains("/nope.toml"), "{error}");
    }
}
