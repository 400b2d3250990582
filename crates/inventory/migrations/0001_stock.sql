-- Stock per SKU. `reserved` units are held for orders; what can still be
-- reserved is on_hand - reserved. The checks make overselling impossible
-- even for a bug in the code above them.
CREATE TABLE stock (
    sku TEXT PRIMARY KEY,
    on_hand BIGINT NOT NULL,
    reserved BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    CHECK (reserved >= 0),
    CHECK (on_hand >= reserved)
);

-- The audit trail: every manual change of stock, who made it and why.
CREATE TABLE adjustments (
    id TEXT PRIMARY KEY,
    sku TEXT NOT NULL,
    delta BIGINT NOT NULL,
    reason TEXT NOT NULL,
    actor TEXT NOT NULL,
    on_hand_after BIGINT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX adjustments_by_sku ON adjustments (sku, at DESC);

-- One reservation per order: the order id is the idempotency key. A
-- release that arrives before its reservation leaves a 'released' row, so
-- the late reservation is refused instead of holding stock forever.
CREATE TABLE reservations (
    order_id TEXT PRIMARY KEY,
    state TEXT NOT NULL CHECK (state IN ('reserved', 'rejected', 'released', 'expired', 'committed')),
    expires_at BIGINT NOT NULL,
    -- JSON list of the lines that were short, for a rejected reservation.
    short_lines TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX reservations_expiring ON reservations (state, expires_at);

CREATE TABLE reservation_lines (
    order_id TEXT NOT NULL REFERENCES reservations (order_id),
    sku TEXT NOT NULL,
    quantity BIGINT NOT NULL,
    PRIMARY KEY (order_id, sku)
);
