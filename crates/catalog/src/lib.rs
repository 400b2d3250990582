//! Catalog: products, prices, and full-text search.
//!
//! - [`domain`]: a product and the rules for its fields.
//! - [`store`]: the SQL, with cursor pagination.
//! - [`search`]: the in-memory tantivy index and how it ranks.
//! - [`api`]: the gRPC service the gateway and the orders service call.
//!
//! Every change commits with its `product.changed` event (outbox), then
//! updates the search index.

pub mod api;
pub mod domain;
pub mod search;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use contracts::grpc::catalog::v1::catalog_server::CatalogServer;
use kit::db::{Db, now_millis};
use kit::migrate::Migration;
use kit::{Service, ServiceContext, ServiceParts, Worker};
use tokio_util::sync::CancellationToken;

use crate::search::SearchIndex;

pub const MIGRATIONS: &[Migration] = &[Migration::portable(
    1,
    "products",
    include_str!("../migrations/0001_products.sql"),
)];

/// How often the index re-reads recent changes, and how far back: longer
/// than any transaction that stamps `updated_at` before it commits.
const CATCH_UP_EVERY: Duration = Duration::from_secs(2);
const CATCH_UP_OVERLAP_MS: i64 = 10_000;

/// The catalog service.
#[derive(Debug, Default, Clone, Copy)]
pub struct Catalog;

#[async_trait]
impl Service for Catalog {
    fn name(&self) -> &'static str {
        "catalog"
    }

    fn default_port(&self) -> u16 {
        8082
    }

    fn migrations(&self) -> Option<&'static [Migration]> {
        Some(MIGRATIONS)
    }

    fn topics(&self) -> Vec<String> {
        vec![contracts::topics::PRODUCT_EVENTS.to_owned()]
    }

    async fn build(&self, context: &ServiceContext) -> anyhow::Result<ServiceParts> {
        let db = context
            .db
            .clone()
            .ok_or_else(|| anyhow::anyhow!("the catalog service needs its database"))?;
        let index = Arc::new(SearchIndex::new()?);
        let started = std::time::Instant::now();
        let since = now_millis();
        let all = store::changed_since(&db, i64::MIN).await?;
        index.upsert(&all)?;
        tracing::info!(
            products = all.len(),
            on_sale = index.len(),
            ms = started.elapsed().as_millis(),
            "search index built"
        );
        let api = api::CatalogApi {
            db: db.clone(),
            outbox: context.outbox.clone(),
            index: Arc::clone(&index),
        };
        Ok(ServiceParts {
            grpc: tonic::service::Routes::new(CatalogServer::new(api)),
            workers: vec![Worker::new(
                "search-catch-up",
                catch_up(db, index, since, context.shutdown.clone()),
            )],
            ..ServiceParts::default()
        })
    }
}

/// Re-reads recently changed products into the index until shutdown: how
/// a change made by another replica reaches this one.
async fn catch_up(db: Db, index: Arc<SearchIndex>, mut since: i64, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(CATCH_UP_EVERY) => {}
        }
        let now = now_millis();
        match store::changed_since(&db, since - CATCH_UP_OVERLAP_MS).await {
            Ok(products) => match index.upsert(&products) {
                Ok(changed) => {
                    if changed > 0 {
                        tracing::info!(changed, "search index caught up");
                    }
                    since = now;
                }
                Err(error) => tracing::warn!(%error, "search index catch-up failed"),
            },
            Err(error) => tracing::warn!(%error, "search index catch-up could not read products"),
        }
    }
}
