-- Orders, priced by the server when accepted. Money is integer minor units
-- of the order's one currency. `captured_minor` and `refunded_minor` follow
-- the payment service's events; `refund_pending_minor` is what was asked
-- back and not yet confirmed, so no one can ask for more than was taken.
CREATE TABLE orders (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('PENDING', 'RESERVED', 'PAID', 'FULFILLED', 'CANCELLED', 'FAILED')),
    currency TEXT NOT NULL,
    total_minor BIGINT NOT NULL CHECK (total_minor >= 0),
    payment_method_id TEXT NOT NULL,
    failure_code TEXT NOT NULL,
    captured_minor BIGINT NOT NULL,
    refunded_minor BIGINT NOT NULL,
    refund_pending_minor BIGINT NOT NULL,
    -- The client's Idempotency-Key and a hash of what it asked for: the same
    -- key again is the same order, or a refusal if the request differs.
    idempotency_key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    CHECK (refunded_minor + refund_pending_minor <= captured_minor),
    UNIQUE (user_id, idempotency_key)
);
CREATE INDEX orders_by_user ON orders (user_id, created_at DESC, id DESC);
CREATE INDEX orders_by_status ON orders (status, updated_at);
CREATE INDEX orders_by_time ON orders (created_at DESC, id DESC);

CREATE TABLE order_lines (
    order_id TEXT NOT NULL REFERENCES orders (id),
    line_no BIGINT NOT NULL,
    sku TEXT NOT NULL,
    name TEXT NOT NULL,
    quantity BIGINT NOT NULL CHECK (quantity > 0),
    unit_price_minor BIGINT NOT NULL CHECK (unit_price_minor >= 0),
    PRIMARY KEY (order_id, line_no)
);

-- Every status change, with its cause: the order's timeline.
CREATE TABLE order_history (
    order_id TEXT NOT NULL REFERENCES orders (id),
    seq BIGINT NOT NULL,
    from_status TEXT NOT NULL,
    to_status TEXT NOT NULL,
    cause TEXT NOT NULL,
    detail TEXT NOT NULL,
    at BIGINT NOT NULL,
    PRIMARY KEY (order_id, seq)
);
