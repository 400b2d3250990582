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
use crate::migrate::{self, Migration};
use crate::service::KIT_MIGRATIONS;

/// Log lines written to memory, for tests that check what is (or is never)
/// logged: hand a clone to a subscriber's `with_writer`, read `text` after.
#[derive(Clone, Default)]
pub struct LogCapture(Arc<std::sync::Mutex<Vec<u8>>>);

impl LogCapture {
    /// Everything written so far.
    pub fn text(&self) -> String {
        let bytes = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl std::io::Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

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

/// `db` with kit's tables and those of `migrations` (under `scope`): a
/// service's database as the service finds it once started.
pub async fn migrated(db: Db, scope: &str, migrations: &[Migration]) -> Db {
    for (scope, list) in [("kit", KIT_MIGRATIONS), (scope, migrations)] {
        migrate::run(&db, scope, list)
            .await
            .expect("the migrations apply");
    }
    db
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

/// `bus.fetch_wait_ms` against a broker declared to have the `fetch-wait`
/// defect (it holds every fetch for part of the wait, records or not):
/// what an operator of such a broker would set, so each hop between
/// services costs milliseconds there too. The broker conformance test
/// measures the defect with the default wait.
pub const FETCH_WAIT_FOR_A_HOLDING_BROKER_MS: u32 = 10;

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
    if broker_has_known_defect("fetch-wait") {
        settings.fetch_wait_ms = FETCH_WAIT_FOR_A_HOLDING_BROKER_MS;
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

/// A real SMTP server (aiosmtpd, `testing/smtp_server.py`) in a child
/// process, storing every message it accepts in `dir`. Its Python comes
/// from `KART_TEST_PYTHON` (the test command's venv, which has aiosmtpd);
/// it stops when dropped.
pub struct SmtpServer {
    pub port: u16,
    pub dir: std::path::PathBuf,
    _process: tokio::process::Child,
}

impl SmtpServer {
    pub async fn start(dir: &Path) -> SmtpServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let python = std::env::var("KART_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("testing/smtp_server.py");
        let mut process = tokio::process::Command::new(&python)
            .arg(&script)
            .arg(dir)
            .arg(port.to_string())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
        let stdout = process.stdout.take().expect("the server's output");
        let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
        let ready =
            tokio::time::timeout(std::time::Duration::from_secs(20), lines.next_line()).await;
        assert!(
            matches!(ready, Ok(Ok(Some(ref line))) if line == "ready"),
            "the SMTP server did not start ({python} needs aiosmtpd: scripts/test.sh installs it): {ready:?}"
        );
        SmtpServer {
            port,
            dir: dir.to_owned(),
            _process: process,
        }
    }

    /// From now on every message is answered with `reply` (e.g. `451 4.3.0 Try later`).
    pub fn refuse(&self, reply: &str) {
        std::fs::write(self.dir.join("refuse"), reply).expect("the refuse file");
    }

    /// Accepts messages again.
    pub fn recover(&self) {
        std::fs::remove_file(self.dir.join("refuse")).expect("the refuse file");
    }

    /// Every message accepted so far, as received, oldest first.
    pub fn received(&self) -> Vec<String> {
        let mut names: Vec<std::path::PathBuf> = std::fs::read_dir(&self.dir)
            .expect("the mail folder")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "eml"))
            .collect();
        names.sort();
        names
            .iter()
            .filter_map(|p| std::fs::read_to_string(p).ok())
            .collect()
    }
}
