//! Payments: payment attempts and refunds behind one provider trait
//! (simulated or Stripe), and the provider webhook with its dedup of
//! provider events.
//!
//! - [`card`]: a card as typed, checked (Luhn, expiry, CVC) and never kept.
//! - [`provider`]: the provider trait and the simulated provider.
//! - [`stripe`]: the Stripe provider, over Stripe's HTTP API.
//! - [`charges`]: paying for orders and refunding them, on order events.
//! - [`webhooks`]: signed provider webhooks, applied once each.
//! - [`api`]: the gRPC service the gateway calls to tokenise a card.

pub mod api;
pub mod card;
pub mod charges;
pub mod provider;
pub mod stripe;
pub mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use contracts::grpc::payments::v1::payments_server::PaymentsServer;
use contracts::grpc::users::v1::payment_methods_client::PaymentMethodsClient;
use contracts::topics;
use kit::config::ProviderKind;
use kit::consumer::{ConsumerSpec, DEFAULT_MAX_BATCH, RetryPolicy};
use kit::migrate::Migration;
use kit::{Service, ServiceContext, ServiceParts};

pub const MIGRATIONS: &[Migration] = &[
    Migration::portable(
        1,
        "payments_refunds",
        include_str!("../migrations/0001_payments.sql"),
    ),
    Migration::portable(
        2,
        "checkout",
        include_str!("../migrations/0002_checkout.sql"),
    ),
    Migration::portable(
        3,
        "providers",
        include_str!("../migrations/0003_providers.sql"),
    ),
];

/// The payments service, and where it asks for a shopper's saved card.
#[derive(Debug, Clone)]
pub struct Payments {
    pub users_url: String,
}

#[async_trait]
impl Service for Payments {
    fn name(&self) -> &'static str {
        "payments"
    }

    fn default_port(&self) -> u16 {
        8085
    }

    fn migrations(&self) -> Option<&'static [Migration]> {
        Some(MIGRATIONS)
    }

    fn topics(&self) -> Vec<String> {
        vec![contracts::topics::PAYMENT_EVENTS.to_owned()]
    }

    async fn build(&self, context: &ServiceContext) -> anyhow::Result<ServiceParts> {
        let db = context
            .db
            .clone()
            .ok_or_else(|| anyhow::anyhow!("the payments service needs its database"))?;
        let webhook_secret = match &context.settings.payments.webhook_secret {
            Some(secret) => secret.clone(),
            None => {
                let mut bytes = [0u8; 32];
                getrandom::fill(&mut bytes)?;
                secrecy::SecretString::from(hex::encode(bytes))
            }
        };
        let payments = &context.settings.payments;
        let provider: Arc<dyn provider::PaymentProvider> = match payments.provider {
            ProviderKind::Simulated => Arc::new(provider::SimulatedProvider {
                webhook_secret: webhook_secret.clone(),
                settings: payments.simulated.clone(),
            }),
            ProviderKind::Stripe => Arc::new(stripe::StripeProvider::new(
                &payments.stripe.base_url,
                payments.stripe.api_key.clone().ok_or_else(|| {
                    anyhow::anyhow!("payments.stripe.api_key is required for stripe")
                })?,
                webhook_secret.clone(),
                Duration::from_secs(payments.stripe.timeout_secs),
                db.clone(),
            )?),
        };
        // Charging waits on the provider inside the consumer's transaction
        // (see `charges`); batching calls that wait on a network would hold
        // the database for all of them, so only an instant provider batches.
        let max_batch = match payments.provider {
            ProviderKind::Simulated if payments.simulated.latency_ms == 0 => DEFAULT_MAX_BATCH,
            _ => 1,
        };
        let users = contracts::grpc::lazy_channel(
            &self.users_url,
            Duration::from_secs(10),
            "services.users.url",
            &context.local,
        )
        .map_err(anyhow::Error::msg)?;
        let api = api::PaymentsApi {
            provider: Arc::clone(&provider),
            db,
            outbox: context.outbox.clone(),
            webhook_secret,
        };
        Ok(ServiceParts {
            grpc: tonic::service::Routes::new(PaymentsServer::new(api)),
            consumers: vec![ConsumerSpec {
                group: "payments".to_owned(),
                topics: vec![topics::ORDER_EVENTS.to_owned()],
                dead_letter_topic: topics::dead_letter_topic("payments"),
                handler: Arc::new(charges::OrderPayments {
                    provider,
                    payment_methods: PaymentMethodsClient::new(users),
                    public_url: context.settings.public_url.clone(),
                }),
                retry: RetryPolicy::default(),
                max_batch,
            }],
            ..ServiceParts::default()
        })
    }
}
