//! Orders: the order state machine (PENDING → RESERVED → PAID → FULFILLED, or CANCELLED / FAILED), its history, idempotency keys and saga state.
//!
//! The service starts with its own database (kit's outbox and inbox tables
//! only, so far), its health, readiness and metrics endpoints, and graceful
//! shutdown; its domain arrives with the issues that build it.

use async_trait::async_trait;
use kit::migrate::Migration;
use kit::{Service, ServiceContext, ServiceParts};

/// The orders service.
#[derive(Debug, Default, Clone, Copy)]
pub struct Orders;

#[async_trait]
impl Service for Orders {
    fn name(&self) -> &'static str {
        "orders"
    }

    fn default_port(&self) -> u16 {
        8084
    }

    fn migrations(&self) -> Option<&'static [Migration]> {
        Some(&[])
    }

    fn topics(&self) -> Vec<String> {
        vec![contracts::topics::ORDER_EVENTS.to_owned()]
    }

    async fn build(&self, _context: &ServiceContext) -> anyhow::Result<ServiceParts> {
        Ok(ServiceParts::default())
    }
}
