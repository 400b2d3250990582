-- SQLite only. A rowid table keyed by text keeps each row twice: in the
-- table, in rowid order, and in its primary key's index. Every consumer
-- batch of every service inserts inbox rows and upserts its positions, so
-- each was two B-trees to change, and pages to write to the WAL, per row.
-- WITHOUT ROWID keeps the row once, in its key's order. The rows are small
-- (two short ids and a number), which is what such a table suits.
CREATE TABLE kart_inbox_by_key (
    consumer_group TEXT NOT NULL,
    event_id TEXT NOT NULL,
    processed_at BIGINT NOT NULL,
    PRIMARY KEY (consumer_group, event_id)
) WITHOUT ROWID;
INSERT INTO kart_inbox_by_key (consumer_group, event_id, processed_at)
    SELECT consumer_group, event_id, processed_at FROM kart_inbox;
DROP TABLE kart_inbox;
ALTER TABLE kart_inbox_by_key RENAME TO kart_inbox;

CREATE TABLE kart_consumer_offsets_by_key (
    consumer_group TEXT NOT NULL,
    topic TEXT NOT NULL,
    partition_id INTEGER NOT NULL,
    next_offset BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (consumer_group, topic, partition_id)
) WITHOUT ROWID;
INSERT INTO kart_consumer_offsets_by_key
    (consumer_group, topic, partition_id, next_offset, updated_at)
    SELECT consumer_group, topic, partition_id, next_offset, updated_at
    FROM kart_consumer_offsets;
DROP TABLE kart_consumer_offsets;
ALTER TABLE kart_consumer_offsets_by_key RENAME TO kart_consumer_offsets;
