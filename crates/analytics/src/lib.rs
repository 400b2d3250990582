//! Analytics: per-minute figures (orders created, paid, failed, cancelled;
//! revenue by currency; payment success rate; average order value; time
//! from order to paid; top products) built from every domain topic.
//!
//! - [`facts`]: the consumer that turns events into facts, idempotently.
//! - [`stats`]: the figures of a window, computed from the facts.
//! - [`gauges`]: the same figures as Prometheus gauges.
//! - [`api`]: the gRPC service (stats for the console, the rebuild).

pub mod api;
pub mod facts;
pub mod gauges;
pub mod stats;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use contracts::grpc::analytics::v1::analytics_server::AnalyticsServer;
use contracts::topics;
use kit::consumer::{ConsumerSpec, DEFAULT_MAX_BATCH, RetryPolicy};
use kit::migrate::Migration;
use kit::{Service, ServiceContext, ServiceParts, Worker};

pub const MIGRATIONS: &[Migration] = &[Migration::portable(
    1,
    "facts",
    include_str!("../migrations/0001_facts.sql"),
)];

/// The consumer group (its own: it reads every topic from the start).
pub const GROUP: &str = "analytics";

/// The analytics service.
#[derive(Debug, Default, Clone, Copy)]
pub struct Analytics;

#[async_trait]
impl Service for Analytics {
    fn name(&self) -> &'static str {
        "analytics"
    }

    fn default_port(&self) -> u16 {
        8087
    }

    fn migrations(&self) -> Option<&'static [Migration]> {
        Some(MIGRATIONS)
    }

    async fn build(&self, context: &ServiceContext) -> anyhow::Result<ServiceParts> {
        let db = context
            .db
            .clone()
            .ok_or_else(|| anyhow::anyhow!("the analytics service needs its database"))?;
        let settings = &context.settings.analytics;
        let topics: Vec<String> = topics::DOMAIN_TOPICS
            .iter()
            .map(|t| (*t).to_owned())
            .collect();
        let api = api::AnalyticsApi {
            db: db.clone(),
            bus: Arc::clone(&context.bus),
            topics: topics.clone(),
        };
        let gauges = gauges::Gauges::register(&context.metrics);
        Ok(ServiceParts {
            grpc: tonic::service::Routes::new(AnalyticsServer::new(api)),
            consumers: vec![ConsumerSpec {
                group: GROUP.to_owned(),
                topics,
                dead_letter_topic: topics::dead_letter_topic("analytics"),
                handler: Arc::new(facts::Facts),
                retry: RetryPolicy::default(),
                max_batch: DEFAULT_MAX_BATCH,
            }],
            workers: vec![Worker::new(
                "gauges",
                gauges.run(
                    db,
                    Duration::from_secs(settings.gauge_refresh_secs),
                    settings.gauge_window_minutes,
                    context.shutdown.clone(),
                ),
            )],
            ..ServiceParts::default()
        })
    }
}
