//! Analytics: per-minute aggregates (orders, revenue, payment success rate, funnel) built from every topic.
//!
//! The service starts with its own database (kit's outbox and inbox tables
//! only, so far), its health, readiness and metrics endpoints, and graceful
//! shutdown; its domain arrives with the issues that build it.

use async_trait::async_trait;
use kit::migrate::Migration;
use kit::{Service, ServiceContext, ServiceParts};

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
        Some(&[])
    }

    async fn build(&self, _context: &ServiceContext) -> anyhow::Result<ServiceParts> {
        Ok(ServiceParts::default())
    }
}
