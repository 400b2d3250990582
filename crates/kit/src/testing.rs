//! Test support: throwaway databases and buses, for kit's own tests and
//! every service's. Enabled by the `testing` feature (dev-dependencies only).
//!
//! PostgreSQL comes from `KART_TEST_POSTGRES_URL` (default: the local server
//! on 127.0.0.1:5432 as `postgres`), one fresh `kart_test_*` database per
//! call; the test command drops them all when it ends. The broker comes from
//! `KART_TEST_KAFKA_BROKERS`, set by the test command after it starts one.
//! A test that needs a broker fails, loudly, when none is configured: it
//! never passes by skipping.

#![allow(clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::sync::Arc;

use secrecy::SecretString;

use crate::bus::SharedBus;
use crate::bus::embedded::EmbeddedBus;
use crate::bus::kafka::KafkaBus;
use crate::config::{BusKind, DatabaseSettings, Mode, Settings};
use crate::db::Db;

/// A name no other test uses: `<prefix>_<random>`.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

fn database_settings() -> DatabaseSettings {
    Settings::defaults(Mode::Distributed).database
}

/// The server's URL with `database` as the database name.
pub fn postgres_url(database: &str) -> String {
    let base = std::env::var("KART_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    match base.rsplit_once('/') {
        Some((server, _)) => format!("{server}/{database}"),
        None => format!("{base}/{database}"),
    }
}

/// A fresh, empty PostgreSQL database.
pub async fn postgres_db() -> Db {
    let url = postgres_url(&unique("kart_test"));
    Db::connect(&SecretString::from(url), &database_settings())
        .await
        .expect("PostgreSQL for tests (set KART_TEST_POSTGRES_URL)")
}

/// A fresh SQLite database in `dir`.
pub async fn sqlite_db(dir: &Path) -> Db {
    let url = format!(
        "sqlite://{}",
        dir.join(format!("{}.db", unique("db"))).display()
    );
    Db::connect(&SecretString::from(url), &database_settings())
        .await
        .expect("SQLite database for tests")
}

/// The broker the test command started.
pub fn kafka_brokers() -> String {
    std::env::var("KART_TEST_KAFKA_BROKERS").unwrap_or_else(|_| {
        panic!(
            "KART_TEST_KAFKA_BROKERS is not set: run the suite with scripts/test.sh, \
             which starts a Kafka-protocol broker"
        )
    })
}

/// Bus settings for tests against the test broker.
pub fn kafka_settings() -> crate::config::BusSettings {
    let mut settings = Settings::defaults(Mode::Distributed).bus;
    settings.kind = BusKind::Kafka;
    settings.brokers = kafka_brokers();
    // Tests run side by side on one broker: each in its own topics and
    // consumer groups, so no test sees another's events or group members.
    settings.namespace = format!("{}.", unique("t"));
    if let Ok(value) = std::env::var("KART_TEST_KAFKA_IDEMPOTENT") {
        settings.idempotent_producer = value != "false";
    }
    settings
}

pub async fn kafka_bus() -> SharedBus {
    Arc::new(
        KafkaBus::connect(&kafka_settings())
            .await
            .expect("the test broker answers"),
    )
}

/// An embedded bus in `dir`, with 3 partitions per topic.
pub async fn embedded_bus(dir: &Path) -> SharedBus {
    Arc::new(
        EmbeddedBus::open(&dir.join("bus.db"), 3)
            .await
            .expect("embedded bus opens"),
    )
}

/// Whether the test broker is declared to have a measured defect (the test
/// command lists them in `KART_TEST_BROKER_KNOWN_DEFECTS`; the broker
/// conformance tests measure each one).
pub fn broker_has_known_defect(name: &str) -> bool {
    std::env::var("KART_TEST_BROKER_KNOWN_DEFECTS")
        .unwrap_or_default()
        .split(',')
        .any(|d| d.trim() == name)
}
