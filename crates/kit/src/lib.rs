//! Kart's plumbing, shared by every service and free of business rules.
//!
//! - [`config`]: layered settings, validated at start-up.
//! - [`telemetry`] and [`metrics`]: JSON logs with request and trace ids,
//!   W3C trace context, Prometheus metrics.
//! - [`db`] and [`migrate`]: one code path over PostgreSQL and SQLite;
//!   [`held`]: the SQLite connections behind it; [`sqlite_inline`]: the
//!   SQLite driver they use, which runs statements on the calling task.
//! - [`bus`]: the event bus trait, on Kafka or the embedded log;
//!   [`cloudevents`]: the envelope events travel in.
//! - [`outbox`] and [`consumer`]: atomic state-and-events on the way out,
//!   exactly-once effects on the way in, dead letters when all else fails.
//! - [`http`] and [`problem`]: serving, health, RFC 9457 errors;
//!   [`local`]: calls between services in one process, without the network.
//! - [`service`]: start-up and graceful shutdown, the same for every service.
//! - `testing` (feature): throwaway databases and buses for tests.

pub mod bus;
pub mod cloudevents;
pub mod config;
pub mod consumer;
pub mod db;
pub mod held;
pub mod http;
pub mod local;
pub mod metrics;
pub mod migrate;
pub mod outbox;
pub mod problem;
pub mod service;
pub mod sqlite_inline;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;

pub use bus::SharedBus;
pub use db::{Db, Tx};
pub use service::{Service, ServiceContext, ServiceParts, Worker};

/// A new id with its type prefix (`usr_`, `ord_`, `evt_`): time-ordered
/// (UUIDv7), so indexes stay compact, and unambiguous in logs.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}
