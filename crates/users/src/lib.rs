//! Users: accounts, argon2id password hashes, roles, and saved payment methods (provider token, brand, last4, expiry: never a card number or CVC).
//!
//! The service starts with its own database (kit's outbox and inbox tables
//! only, so far), its health, readiness and metrics endpoints, and graceful
//! shutdown; its domain arrives with the issues that build it.

use async_trait::async_trait;
use kit::migrate::Migration;
use kit::{Service, ServiceContext, ServiceParts};

/// The users service.
#[derive(Debug, Default, Clone, Copy)]
pub struct Users;

#[async_trait]
impl Service for Users {
    fn name(&self) -> &'static str {
        "users"
    }

    fn default_port(&self) -> u16 {
        8081
    }

    fn migrations(&self) -> Option<&'static [Migration]> {
        Some(&[])
    }

    fn topics(&self) -> Vec<String> {
        vec![contracts::topics::USER_EVENTS.to_owned()]
    }

    async fn build(&self, _context: &ServiceContext) -> anyhow::Result<ServiceParts> {
        Ok(ServiceParts::default())
    }
}
