//! Inventory: stock per SKU, an audit trail of adjustments, and
//! reservations that hold stock for an order until it is paid, cancelled,
//! failed or expired.
//!
//! - [`domain`]: reservation states, order lines, adjustments.
//! - [`store`]: the SQL, and why it cannot oversell.
//! - [`reservations`]: every reservation change with its event.
//! - [`events`]: reacting to order events; the expiry sweep.
//! - [`api`]: the gRPC service.

pub mod api;
pub mod domain;
pub mod events;
pub mod reservations;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use contracts::grpc::inventory::v1::inventory_server::InventoryServer;
use contracts::topics;
use kit::consumer::{ConsumerSpec, DEFAULT_MAX_BATCH, RetryPolicy};
use kit::migrate::Migration;
use kit::{Service, ServiceContext, ServiceParts, Worker};

pub const MIGRATIONS: &[Migration] = &[Migration::portable(
    1,
    "stock_adjustments_reservations",
    include_str!("../migrations/0001_stock.sql"),
)];

/// The inventory service.
#[derive(Debug, Default, Clone, Copy)]
pub struct Inventory;

#[async_trait]
impl Service for Inventory {
    fn name(&self) -> &'static str {
        "inventory"
    }

    fn default_port(&self) -> u16 {
        8083
    }

    fn migrations(&self) -> Option<&'static [Migration]> {
        Some(MIGRATIONS)
    }

    fn topics(&self) -> Vec<String> {
        vec![topics::INVENTORY_EVENTS.to_owned()]
    }

    async fn build(&self, context: &ServiceContext) -> anyhow::Result<ServiceParts> {
        let db = context
            .db
            .clone()
            .ok_or_else(|| anyhow::anyhow!("the inventory service needs its database"))?;
        let settings = &context.settings.inventory;
        let reservation_ttl_ms =
            i64::try_from(settings.reservation_ttl_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        let api = api::InventoryApi {
            db: db.clone(),
            outbox: context.outbox.clone(),
            reservation_ttl_ms,
        };
        Ok(ServiceParts {
            grpc: tonic::service::Routes::new(InventoryServer::new(api)),
            consumers: vec![ConsumerSpec {
                group: "inventory".to_owned(),
                topics: vec![topics::ORDER_EVENTS.to_owned()],
                dead_letter_topic: topics::dead_letter_topic("inventory"),
                handler: Arc::new(events::OrderEvents { reservation_ttl_ms }),
                retry: RetryPolicy::default(),
                max_batch: DEFAULT_MAX_BATCH,
            }],
            workers: vec![Worker::new(
                "reservation-expiry",
                events::sweep_expired(
                    db,
                    context.outbox.clone(),
                    Duration::from_secs(settings.expiry_sweep_secs),
                    context.shutdown.clone(),
                ),
            )],
            ..ServiceParts::default()
        })
    }
}
