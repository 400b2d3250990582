-- Analytics keeps facts, one row per thing that happened, keyed by what it
-- is about, and computes each minute's figures from them when asked. Why
-- not counters per minute: a fact written twice is the same row (so a
-- repeated event changes nothing even where the inbox would not catch it),
-- exact percentiles need the durations themselves, and a rebuild is
-- "delete the facts, read the topics again".

-- One row per order. Times are Unix milliseconds from the events' own
-- fields, so a rebuild puts everything in the same minutes.
CREATE TABLE order_facts (
    order_id TEXT PRIMARY KEY,
    currency TEXT NOT NULL DEFAULT '',
    total_minor BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT,
    paid_at BIGINT,
    failed_at BIGINT,
    failure_code TEXT NOT NULL DEFAULT '',
    cancelled_at BIGINT
);
CREATE INDEX order_facts_created ON order_facts (created_at);
CREATE INDEX order_facts_paid ON order_facts (paid_at);
CREATE INDEX order_facts_failed ON order_facts (failed_at);
CREATE INDEX order_facts_cancelled ON order_facts (cancelled_at);

CREATE TABLE order_line_facts (
    order_id TEXT NOT NULL,
    line_no BIGINT NOT NULL,
    sku TEXT NOT NULL,
    quantity BIGINT NOT NULL,
    unit_minor BIGINT NOT NULL,
    currency TEXT NOT NULL,
    PRIMARY KEY (order_id, line_no)
);

CREATE TABLE payment_facts (
    payment_id TEXT NOT NULL,
    outcome TEXT NOT NULL CHECK (outcome IN ('captured', 'failed')),
    order_id TEXT NOT NULL,
    at BIGINT NOT NULL,
    PRIMARY KEY (payment_id, outcome)
);
CREATE INDEX payment_facts_at ON payment_facts (at);

CREATE TABLE refund_facts (
    refund_id TEXT PRIMARY KEY,
    order_id TEXT NOT NULL,
    amount_minor BIGINT NOT NULL,
    currency TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX refund_facts_at ON refund_facts (at);

-- Events read per minute (of the event's time) and type: the funnel from
-- sign-ups to stock commits. Counted once per event id (the inbox).
CREATE TABLE event_counts (
    minute BIGINT NOT NULL,
    event_type TEXT NOT NULL,
    count BIGINT NOT NULL,
    PRIMARY KEY (minute, event_type)
);
