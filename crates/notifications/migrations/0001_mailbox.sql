-- What the messages need to know, kept from the events as they pass
-- (services share no database): who a user is, what a product is called,
-- what an order held.
CREATE TABLE recipients (
    user_id TEXT PRIMARY KEY,
    email TEXT NOT NULL,
    display_name TEXT NOT NULL
);

CREATE TABLE product_names (
    sku TEXT PRIMARY KEY,
    name TEXT NOT NULL
);

CREATE TABLE order_summaries (
    order_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    -- JSON: [{"sku", "quantity", "unit_price": {"amount_minor", "currency"}}]
    lines TEXT NOT NULL,
    total_minor BIGINT NOT NULL,
    currency TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- The mailbox: every message, from the moment an event asks for it. The
-- dedupe key (kind and what it is about: `order_confirmed:ord_…`) is what
-- makes one confirmation per paid order, however often the event comes.
CREATE TABLE messages (
    id TEXT PRIMARY KEY,
    dedupe_key TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    -- Empty while not known yet (a payment event names only the order).
    user_id TEXT NOT NULL,
    order_id TEXT NOT NULL,
    -- JSON: what the event said that the message repeats (amount, reason).
    facts TEXT NOT NULL,
    -- The event it was made from, whole (CloudEvents JSON), for the dead-letter topic.
    source_event_type TEXT NOT NULL,
    source_event_id TEXT NOT NULL,
    source_event TEXT NOT NULL,
    -- Filled when first rendered; what was sent is what the mailbox shows.
    to_address TEXT NOT NULL DEFAULT '',
    subject TEXT NOT NULL DEFAULT '',
    text_body TEXT NOT NULL DEFAULT '',
    html_body TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'dead')),
    -- Tries so far, over the message's whole life (replays included).
    attempts BIGINT NOT NULL DEFAULT 0,
    -- The try after which it becomes a dead letter (moved on by a replay).
    give_up_after BIGINT NOT NULL,
    last_error TEXT NOT NULL DEFAULT '',
    next_attempt_at BIGINT NOT NULL,
    -- A sender holds the message until then: two senders never send one message at once.
    lease_until BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    sent_at BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX messages_due ON messages (status, next_attempt_at);
CREATE INDEX messages_by_time ON messages (created_at);
CREATE INDEX messages_by_user ON messages (user_id, created_at);

CREATE TABLE delivery_attempts (
    message_id TEXT NOT NULL,
    attempt BIGINT NOT NULL,
    at BIGINT NOT NULL,
    outcome TEXT NOT NULL CHECK (outcome IN ('sent', 'failed')),
    error TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (message_id, attempt)
);
