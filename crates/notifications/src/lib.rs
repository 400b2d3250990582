//! Notifications: the emails Kart sends (welcome, order confirmed, payment
//! failed, order cancelled, refund issued), the mailbox that records each
//! of them, and the dead letters of those that could not be delivered.
//!
//! - [`events`]: the consumer that queues a message per event, once.
//! - [`templates`]: what each message says, in plain text and HTML.
//! - [`delivery`]: the sender (retries with backoff, dead letters) and the
//!   transports (the built-in mailbox, SMTP through `lettre`).
//! - [`store`]: the SQL.
//! - [`api`]: the gRPC service (mailbox, dead letters, replay).

pub mod api;
pub mod delivery;
pub mod events;
pub mod store;
pub mod templates;

use std::sync::Arc;

use async_trait::async_trait;
use contracts::grpc::notifications::v1::notifications_server::NotificationsServer;
use contracts::topics;
use kit::consumer::{ConsumerSpec, DEFAULT_MAX_BATCH, RetryPolicy};
use kit::migrate::Migration;
use kit::{Service, ServiceContext, ServiceParts, Worker};
use prometheus_client::metrics::family::Family;
use tokio::sync::Notify;

pub const MIGRATIONS: &[Migration] = &[Migration::portable(
    1,
    "mailbox",
    include_str!("../migrations/0001_mailbox.sql"),
)];

/// The consumer group; `kart dlq` and the console name it too.
pub const GROUP: &str = "notifications";

/// The notifications service.
#[derive(Debug, Default, Clone, Copy)]
pub struct Notifications;

#[async_trait]
impl Service for Notifications {
    fn name(&self) -> &'static str {
        "notifications"
    }

    fn default_port(&self) -> u16 {
        8086
    }

    fn migrations(&self) -> Option<&'static [Migration]> {
        Some(MIGRATIONS)
    }

    fn topics(&self) -> Vec<String> {
        vec![topics::NOTIFICATION_DLQ.to_owned()]
    }

    async fn build(&self, context: &ServiceContext) -> anyhow::Result<ServiceParts> {
        let db = context
            .db
            .clone()
            .ok_or_else(|| anyhow::anyhow!("the notifications service needs its database"))?;
        let settings = context.settings.notifications.clone();
        let from = settings
            .from
            .parse()
            .map_err(|e| anyhow::anyhow!("configuration key `notifications.from`: {e}"))?;
        let transport = Arc::new(delivery::Transport::from_settings(&settings)?);
        let wake = Arc::new(Notify::new());
        let tries = Family::default();
        context.metrics.register(
            "notification_tries",
            "Message delivery tries, by kind and outcome (sent, failed, dead)",
            tries.clone(),
        );
        let sender = delivery::Sender {
            db: db.clone(),
            transport,
            from,
            public_url: context.settings.public_url.clone(),
            settings: settings.clone(),
            outbox: context.outbox.clone(),
            wake: Arc::clone(&wake),
            tries,
        };
        let api = api::NotificationsApi {
            db,
            max_attempts: settings.max_attempts,
            wake,
        };
        Ok(ServiceParts {
            grpc: tonic::service::Routes::new(NotificationsServer::new(api)),
            consumers: vec![ConsumerSpec {
                group: GROUP.to_owned(),
                topics: vec![
                    topics::USER_EVENTS.to_owned(),
                    topics::PRODUCT_EVENTS.to_owned(),
                    topics::ORDER_EVENTS.to_owned(),
                    topics::PAYMENT_EVENTS.to_owned(),
                ],
                dead_letter_topic: topics::dead_letter_topic("notifications"),
                handler: Arc::new(events::MailEvents {
                    max_attempts: settings.max_attempts,
                }),
                retry: RetryPolicy::default(),
                max_batch: DEFAULT_MAX_BATCH,
            }],
            workers: vec![Worker::new("sender", sender.run(context.shutdown.clone()))],
            ..ServiceParts::default()
        })
    }
}
