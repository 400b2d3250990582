//! Payment providers behind one trait. `simulated` (the default) needs no
//! account and no network; `stripe` talks to Stripe's API.

use std::time::Duration;

use async_trait::async_trait;
use kit::config::SimulatedProviderSettings;
use kit::problem::Problem;
use secrecy::{ExposeSecret, SecretString};

use crate::card::CardInput;
use crate::webhooks::{self, CheckoutEvent};

/// A card as the provider keeps it: its token, and what Kart may show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenizedCard {
    pub provider: &'static str,
    pub token: String,
    pub brand: String,
    pub last4: String,
    pub exp_month: u32,
    pub exp_year: u32,
}

/// A charge to make: `idempotency_key` is derived from the order, so a
/// repeated request (a redelivered event, a restart mid-call) is the same
/// charge at the provider, never a second one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeRequest {
    pub order_id: String,
    pub token: String,
    pub amount_minor: i64,
    pub currency: String,
    pub idempotency_key: String,
}

/// How a charge ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChargeOutcome {
    /// The money is taken; `reference` is the provider's id for it.
    Captured { reference: String },
    /// The card was refused; `code` is stable (`card_declined`,
    /// `insufficient_funds`), `reason` is for a person.
    Declined { code: String, reason: String },
}

/// A provider failure that may pass (a timeout, a 5xx): try again later,
/// with the same idempotency key.
#[derive(Debug, thiserror::Error)]
#[error("payment provider unavailable: {0}")]
pub struct ProviderUnavailable(pub String);

/// A checkout to open at the provider for one order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckoutRequest {
    pub order_id: String,
    pub amount_minor: i64,
    pub currency: String,
    /// Where the provider sends the shopper after paying, and after giving up.
    pub success_url: String,
    pub cancel_url: String,
    pub idempotency_key: String,
}

/// A checkout page the provider hosts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostedCheckout {
    /// The provider's id for it (`cs_…`), asked about by the verify call.
    pub session_id: String,
    /// Where the shopper pays.
    pub url: String,
}

/// Where the shopper pays for a checkout order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenedCheckout {
    /// On Kart's own page, `/checkout/{order}` (the simulated provider).
    OnKart,
    /// On the provider's page.
    Hosted(HostedCheckout),
    /// The provider will not take this payment at all (an amount below its
    /// minimum, say): the order fails with this reason.
    Refused { code: String, reason: String },
}

#[async_trait]
pub trait PaymentProvider: Send + Sync {
    fn name(&self) -> &'static str;

    /// Hands the card to the provider and gets its token back. Refusals
    /// are problems the shopper can act on (`card_declined`, ...).
    async fn tokenize_card(&self, card: CardInput, user_id: &str)
    -> Result<TokenizedCard, Problem>;

    /// Charges a saved card.
    async fn charge(&self, request: &ChargeRequest) -> Result<ChargeOutcome, ProviderUnavailable>;

    /// Gives back `amount_minor` of a capture; returns the provider's id
    /// for the refund. The same key is the same refund.
    async fn refund(
        &self,
        capture_reference: &str,
        amount_minor: i64,
        idempotency_key: &str,
    ) -> Result<String, ProviderUnavailable>;

    /// Opens the order's checkout.
    async fn open_checkout(
        &self,
        request: &CheckoutRequest,
    ) -> Result<OpenedCheckout, ProviderUnavailable>;

    /// Checks a webhook's signature and reads it as a checkout outcome;
    /// `Ok(None)` for an authentic event Kart has no use for.
    fn read_webhook(
        &self,
        payload: &[u8],
        signature: &str,
        now_secs: i64,
    ) -> Result<Option<CheckoutEvent>, Problem>;

    /// The verify call: asks the provider how a hosted checkout stands;
    /// `None` while the shopper has not finished.
    async fn checkout_outcome(
        &self,
        session_id: &str,
    ) -> Result<Option<CheckoutEvent>, ProviderUnavailable>;
}

/// How the simulated provider treats a card, by Stripe's own test numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimulatedOutcome {
    Succeeds,
    Declined,
    InsufficientFunds,
}

impl SimulatedOutcome {
    pub fn of_card_number(number: &str) -> SimulatedOutcome {
        match number {
            "4000000000000002" => SimulatedOutcome::Declined,
            "4000000000009995" => SimulatedOutcome::InsufficientFunds,
            _ => SimulatedOutcome::Succeeds,
        }
    }

    fn tag(self) -> &'static str {
        match self {
            SimulatedOutcome::Succeeds => "ok",
            SimulatedOutcome::Declined => "declined",
            SimulatedOutcome::InsufficientFunds => "insufficient_funds",
        }
    }

    /// The outcome a simulated token was issued for.
    pub fn of_token(token: &str) -> Option<SimulatedOutcome> {
        let rest = token.strip_prefix("pm_sim_")?;
        let (tag, _) = rest.rsplit_once('_')?;
        [
            SimulatedOutcome::Succeeds,
            SimulatedOutcome::Declined,
            SimulatedOutcome::InsufficientFunds,
        ]
        .into_iter()
        .find(|o| o.tag() == tag)
    }
}

/// The built-in provider: deterministic by test card, like Stripe's test
/// mode. Its tokens name the card's behaviour (as Stripe's `pm_card_…` test
/// tokens do), so charging needs no stored card state. Its checkout page is
/// Kart's own, and it signs its webhooks as Stripe does.
#[derive(Clone)]
pub struct SimulatedProvider {
    pub webhook_secret: SecretString,
    pub settings: SimulatedProviderSettings,
}

impl std::fmt::Debug for SimulatedProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimulatedProvider")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl SimulatedProvider {
    /// Plays the configured latency and outages before a call.
    async fn behave(&self) -> Result<(), ProviderUnavailable> {
        if self.settings.latency_ms > 0 {
            tokio::time::sleep(Duration::from_millis(self.settings.latency_ms)).await;
        }
        if self.settings.failure_rate > 0.0 && fastrand::f64() < self.settings.failure_rate {
            return Err(ProviderUnavailable(
                "the simulated provider failed this call (payments.simulated.failure_rate)".into(),
            ));
        }
        Ok(())
    }
}

#[async_trait]
impl PaymentProvider for SimulatedProvider {
    fn name(&self) -> &'static str {
        "simulated"
    }

    async fn tokenize_card(
        &self,
        card: CardInput,
        _user_id: &str,
    ) -> Result<TokenizedCard, Problem> {
        self.behave()
            .await
            .map_err(|e| Problem::unavailable(e.to_string()))?;
        let outcome = SimulatedOutcome::of_card_number(card.number());
        let mut nonce = [0u8; 12];
        getrandom::fill(&mut nonce).map_err(|e| Problem::internal(&e))?;
        Ok(TokenizedCard {
            provider: self.name(),
            token: format!("pm_sim_{}_{}", outcome.tag(), hex::encode(nonce)),
            brand: card.brand().to_owned(),
            last4: card.last4().to_owned(),
            exp_month: card.exp_month,
            exp_year: card.exp_year,
        })
    }

    async fn charge(&self, request: &ChargeRequest) -> Result<ChargeOutcome, ProviderUnavailable> {
        self.behave().await?;
        Ok(match SimulatedOutcome::of_token(&request.token) {
            Some(SimulatedOutcome::Succeeds) => ChargeOutcome::Captured {
                // Derived from the key: the same request is the same charge.
                reference: format!("ch_sim_{}", short_hash(&request.idempotency_key)),
            },
            Some(SimulatedOutcome::Declined) => ChargeOutcome::Declined {
                code: "card_declined".into(),
                reason: "The card was declined.".into(),
            },
            Some(SimulatedOutcome::InsufficientFunds) => ChargeOutcome::Declined {
                code: "insufficient_funds".into(),
                reason: "The card has insufficient funds.".into(),
            },
            None => ChargeOutcome::Declined {
                code: "invalid_payment_method".into(),
                reason: "This saved card was not issued by the simulated provider.".into(),
            },
        })
    }

    async fn refund(
        &self,
        capture_reference: &str,
        _amount_minor: i64,
        idempotency_key: &str,
    ) -> Result<String, ProviderUnavailable> {
        self.behave().await?;
        Ok(format!(
            "re_sim_{}",
            short_hash(&format!("{capture_reference}/{idempotency_key}"))
        ))
    }

    async fn open_checkout(
        &self,
        _request: &CheckoutRequest,
    ) -> Result<OpenedCheckout, ProviderUnavailable> {
        Ok(OpenedCheckout::OnKart)
    }

    fn read_webhook(
        &self,
        payload: &[u8],
        signature: &str,
        now_secs: i64,
    ) -> Result<Option<CheckoutEvent>, Problem> {
        webhooks::verify(
            self.webhook_secret.expose_secret().as_bytes(),
            signature,
            payload,
            now_secs,
        )?;
        let event: CheckoutEvent = serde_json::from_slice(payload)
            .map_err(|e| Problem::validation("payload", format!("Not a checkout event: {e}")))?;
        if event.kind != webhooks::COMPLETED && event.kind != webhooks::FAILED {
            return Err(Problem::validation(
                "type",
                format!(
                    "`{}` is not a checkout event this endpoint takes.",
                    event.kind
                ),
            ));
        }
        Ok(Some(event))
    }

    /// The simulated page settles its checkouts as they are paid: there
    /// is never anything more to learn.
    async fn checkout_outcome(
        &self,
        _session_id: &str,
    ) -> Result<Option<CheckoutEvent>, ProviderUnavailable> {
        Ok(None)
    }
}

/// A stable 24-hex-digit digest, for ids derived from keys.
fn short_hash(input: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(&Sha256::digest(input.as_bytes())[..12])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn simulated_tokens_remember_the_test_cards_behaviour() {
        let provider = SimulatedProvider {
            webhook_secret: SecretString::from("whsec_test"),
            settings: SimulatedProviderSettings::default(),
        };
        for (number, outcome) in [
            ("4242424242424242", SimulatedOutcome::Succeeds),
            ("4000000000000002", SimulatedOutcome::Declined),
            ("4000000000009995", SimulatedOutcome::InsufficientFunds),
        ] {
            let card = CardInput::parse(number, 12, 2030, "123", (2026, 11)).unwrap();
            let tokenized = provider.tokenize_card(card, "usr_1").await.unwrap();
            assert!(!tokenized.token.contains(&number[6..12]));
            assert_eq!(SimulatedOutcome::of_token(&tokenized.token), Some(outcome));
            assert_eq!(tokenized.brand, "visa");
        }
    }
}
