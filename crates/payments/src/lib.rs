//! Payments: payment attempts and refunds behind one provider trait
//! (simulated or Stripe), and the provider webhook with its dedup of
//! provider events.
//!
//! - [`card`]: a card as typed, checked (Luhn, expiry, CVC) and never kept.
//! - [`provider`]: the provider trait and the simulated provider.
//! - [`api`]: the gRPC service the gateway calls to tokenise a card.

pub mod api;
pub mod card;
pub mod provider;

use std::sync::Arc;

use async_trait::async_trait;
use contracts::grpc::payments::v1::payments_server::PaymentsServer;
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
        let api = api::PaymentsApi {
            provider: Arc::new(provider::SimulatedProvider),
        };
        Ok(ServiceParts {
            grpc: tonic::service::Routes::new(PaymentsServer::new(api)),
            ..ServiceParts::default()
        })
    }
}
