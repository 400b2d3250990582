-- Checkouts a provider hosts (Stripe Checkout): its session id, asked
-- about by the verify call, and the page the shopper pays on. Empty for
-- the simulated provider, whose page Kart serves itself.
ALTER TABLE checkout_sessions ADD COLUMN provider TEXT NOT NULL DEFAULT 'simulated';
ALTER TABLE checkout_sessions ADD COLUMN provider_session_id TEXT NOT NULL DEFAULT '';
ALTER TABLE checkout_sessions ADD COLUMN url TEXT NOT NULL DEFAULT '';

-- One Stripe customer per Kart user: saved cards are attached to it, as
-- Stripe requires of a card charged again later.
CREATE TABLE stripe_customers (
    user_id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
