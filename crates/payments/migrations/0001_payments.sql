-- One payment per order: the order id is unique, so however often the
-- request to pay arrives, there is one row and at most one capture.
CREATE TABLE payments (
    id TEXT PRIMARY KEY,
    order_id TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL,
    amount_minor BIGINT NOT NULL CHECK (amount_minor >= 0),
    currency TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('captured', 'failed')),
    provider TEXT NOT NULL,
    -- The provider's id for the charge; never a card number.
    provider_ref TEXT NOT NULL,
    failure_code TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX payments_by_time ON payments (created_at DESC);

-- Refunds, one per request: the request id makes a repeated request a
-- no-op, and the sum per payment never exceeds what was captured (checked
-- in the same transaction that writes the row).
CREATE TABLE refunds (
    id TEXT PRIMARY KEY,
    refund_request_id TEXT NOT NULL UNIQUE,
    payment_id TEXT NOT NULL REFERENCES payments (id),
    order_id TEXT NOT NULL,
    amount_minor BIGINT NOT NULL CHECK (amount_minor > 0),
    provider_ref TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX refunds_by_payment ON refunds (payment_id);
