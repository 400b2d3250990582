-- Hosted checkouts: one per order, opened once its stock is reserved.
CREATE TABLE checkout_sessions (
    order_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    amount_minor BIGINT NOT NULL CHECK (amount_minor >= 0),
    currency TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- Provider events already applied: a webhook delivered again (providers
-- retry) or replayed is recognised by its id and changes nothing.
CREATE TABLE provider_events (
    provider TEXT NOT NULL,
    event_id TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    PRIMARY KEY (provider, event_id)
);
