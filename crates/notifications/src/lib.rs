//! Notifications: the mailbox of messages sent, delivery attempts, and dead letters that can be replayed.
//!
//! The service starts with its own database (kit's outbox and inbox tables
//! only, so far), its health, readiness and metrics endpoints, and graceful
//! shutdown; its domain arrives with the issues that build it.

use async_trait::async_trait;
use kit::migrate::Migration;
use kit::{Service, ServiceContext, ServiceParts};

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
        Some(&[])
    }

    fn topics(&self) -> Vec<String> {
        vec![contracts::topics::NOTIFICATION_DLQ.to_owned()]
    }

    async fn build(&self, _context: &ServiceContext) -> anyhow::Result<ServiceParts> {
        Ok(ServiceParts::default())
    }
}
