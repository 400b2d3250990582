-- Transactional outbox: events written in the same transaction as the state
-- change that causes them; the relay publishes them in id order and deletes them.
CREATE TABLE IF NOT EXISTS kart_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    event_key TEXT NOT NULL,
    headers TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- Inbox: event ids a consumer group has already applied, written in the same
-- transaction as the effect, so a redelivered event does nothing.
CREATE TABLE IF NOT EXISTS kart_inbox (
    consumer_group TEXT NOT NULL,
    event_id TEXT NOT NULL,
    processed_at BIGINT NOT NULL,
    PRIMARY KEY (consumer_group, event_id)
);

-- Where each consumer group is in each partition, kept beside the effect. The
-- broker's own committed offsets are advisory; these are the authority.
CREATE TABLE IF NOT EXISTS kart_consumer_offsets (
    consumer_group TEXT NOT NULL,
    topic TEXT NOT NULL,
    partition_id INTEGER NOT NULL,
    next_offset BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (consumer_group, topic, partition_id)
);
