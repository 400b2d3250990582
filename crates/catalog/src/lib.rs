//! Catalog: products, prices in minor units, and the full-text search index.
//!
//! The service starts with its own database (kit's outbox and inbox tables
//! only, so far), its health, readiness and metrics endpoints, and graceful
//! shutdown; its domain arrives with the issues that build it.

use async_trait::async_trait;
use kit::migrate::Migration;
use kit::{Service, ServiceContext, ServiceParts};

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
        Some(&[])
    }

    fn topics(&self) -> Vec<String> {
        vec![contracts::topics::PRODUCT_EVENTS.to_owned()]
    }

    async fn build(&self, _context: &ServiceContext) -> anyhow::Result<ServiceParts> {
        Ok(ServiceParts::default())
    }
}
