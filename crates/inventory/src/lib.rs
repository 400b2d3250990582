//! Inventory: stock per SKU and reservations that expire unless committed. Stock never goes below zero.
//!
//! The service starts with its own database (kit's outbox and inbox tables
//! only, so far), its health, readiness and metrics endpoints, and graceful
//! shutdown; its domain arrives with the issues that build it.

use async_trait::async_trait;
use kit::migrate::Migration;
use kit::{Service, ServiceContext, ServiceParts};

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
        Some(&[])
    }

    fn topics(&self) -> Vec<String> {
        vec![contracts::topics::INVENTORY_EVENTS.to_owned()]
    }

    async fn build(&self, _context: &ServiceContext) -> anyhow::Result<ServiceParts> {
        Ok(ServiceParts::default())
    }
}
