//! Orders: the checkout saga's owner. An order is accepted (PENDING),
//! its stock reserved by inventory (RESERVED), its payment captured by the
//! payments service (PAID), shipped by an admin (FULFILLED); or it is
//! CANCELLED or FAILED, with stock released and money refunded.
//!
//! - [`state`]: the state machine, every allowed and refused transition.
//! - [`store`]: orders, lines and history; conditional status updates.
//! - [`saga`]: what each transition sets off, in the same transaction.
//! - [`events`]: reacting to inventory and payment events; stuck orders.
//! - [`api`]: the gRPC service the gateway calls.

pub mod api;
pub mod creations;
pub mod events;
pub mod saga;
pub mod state;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use contracts::grpc::catalog::v1::catalog_client::CatalogClient;
use contracts::grpc::orders::v1::orders_server::OrdersServer;
use contracts::grpc::users::v1::payment_methods_client::PaymentMethodsClient;
use contracts::topics;
use kit::consumer::{ConsumerSpec, DEFAULT_MAX_BATCH, RetryPolicy};
use kit::migrate::Migration;
use kit::{Service, ServiceContext, ServiceParts, Worker};

pub const MIGRATIONS: &[Migration] = &[
    Migration::portable(
        1,
        "orders_lines_history",
        include_str!("../migrations/0001_orders.sql"),
    ),
    Migration::portable(
        2,
        "checkout",
        include_str!("../migrations/0002_checkout.sql"),
    ),
    Migration::sqlite_only(
        3,
        "keyed_lines",
        include_str!("../migrations/0003_keyed_lines.sqlite.sql"),
    ),
    Migration::portable(
        4,
        "rare_status_index",
        include_str!("../migrations/0004_rare_status_index.sql"),
    ),
];

/// The orders service, and where it finds the services it asks: the
/// catalog for prices, users for the shopper's saved card.
#[derive(Debug, Clone)]
pub struct Orders {
    pub catalog_url: String,
    pub users_url: String,
}

#[async_trait]
impl Service for Orders {
    fn name(&self) -> &'static str {
        "orders"
    }

    fn default_port(&self) -> u16 {
        8084
    }

    fn migrations(&self) -> Option<&'static [Migration]> {
        Some(MIGRATIONS)
    }

    fn topics(&self) -> Vec<String> {
        vec![topics::ORDER_EVENTS.to_owned()]
    }

    async fn build(&self, context: &ServiceContext) -> anyhow::Result<ServiceParts> {
        let db = context
            .db
            .clone()
            .ok_or_else(|| anyhow::anyhow!("the orders service needs its database"))?;
        let timeout = Duration::from_secs(10);
        let catalog = contracts::grpc::lazy_channel(
            &self.catalog_url,
            timeout,
            "services.catalog.url",
            &context.local,
        )
        .map_err(anyhow::Error::msg)?;
        let users = contracts::grpc::lazy_channel(
            &self.users_url,
            timeout,
            "services.users.url",
            &context.local,
        )
        .map_err(anyhow::Error::msg)?;
        let (writer, storing) = creations::OrderWriter::start(db.clone(), context.outbox.clone());
        let api = api::OrdersApi {
            db: db.clone(),
            outbox: context.outbox.clone(),
            writer,
            catalog: CatalogClient::new(catalog),
            payment_methods: PaymentMethodsClient::new(users),
        };
        let settings = &context.settings.orders;
        Ok(ServiceParts {
            grpc: tonic::service::Routes::new(OrdersServer::new(api)),
            consumers: vec![ConsumerSpec {
                group: "orders".to_owned(),
                topics: vec![
                    topics::INVENTORY_EVENTS.to_owned(),
                    topics::PAYMENT_EVENTS.to_owned(),
                ],
                dead_letter_topic: topics::dead_letter_topic("orders"),
                handler: Arc::new(events::SagaEvents),
                retry: RetryPolicy::default(),
                max_batch: DEFAULT_MAX_BATCH,
            }],
            workers: vec![
                // Ends once the API, and so every queue to it, is gone.
                Worker::new("order-writer", storing),
                Worker::new(
                    "stuck-orders",
                    events::drive_stuck_orders(
                        db,
                        context.outbox.clone(),
                        Duration::from_secs(settings.payment_timeout_secs),
                        Duration::from_secs(settings.stuck_sweep_secs),
                        context.shutdown.clone(),
                    ),
                ),
            ],
            ..ServiceParts::default()
        })
    }
}
