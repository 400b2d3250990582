-- A consumer group's epoch moves when the group is rewound (its inbox and
-- positions reset so it applies its topics again from the start, as
-- `kart analytics rebuild` does). Every running member watches it and
-- re-reads from the stored positions when it moves.
CREATE TABLE IF NOT EXISTS kart_consumer_epochs (
    consumer_group TEXT PRIMARY KEY,
    epoch BIGINT NOT NULL
);
