//! Payment providers behind one trait. `simulated` (the default) needs no
//! account and no network; `stripe` talks to Stripe's API.

use async_trait::async_trait;
use kit::problem::Problem;

use crate::card::CardInput;

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
/// tokens do), so charging needs no stored card state.
#[derive(Debug, Default, Clone)]
pub struct SimulatedProvider;

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
        Ok(format!(
            "re_sim_{}",
            short_hash(&format!("{capture_reference}/{idempotency_key}"))
        ))
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
        let provider = SimulatedProvider;
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
