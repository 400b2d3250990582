//! Payments: payment attempts and refunds behind one provider trait (simulated or Stripe), and the provider webhook with its dedup of provider events.
//!
//! The service starts with its own database (kit's outbox and inbox tables
//! only, so far), its health, readiness and metrics endpoints, and graceful
//! shutdown; its domain arrives with the issues that build it.

use async_trait::async_trait;
use kit::migrate::Migration;
use kit::{Service, ServiceContext, ServiceParts};

/// The payments service.
#[derive(Debug, Default, Clone, Copy)]
pub struct Payments;

#[async_trait]
impl Service for Payments {
    fn name(&self) -> &'static str {
        "payments"
    }

    fn default_port(&self) -> u16 {
        8085
    }

    fn migrations(&self) -> Option<&'static [Migration]> {
        Some(&[])
    }

    fn topics(&self) -> Vec<String> {
        vec![contracts::topics::PAYMENT_EVENTS.to_owned()]
    }

    async fn build(&self, _context: &ServiceContext) -> anyhow::Result<ServiceParts> {
        Ok(ServiceParts::default())
    }
}
