-- Which consumer group on the broker a Kart consumer group uses. Kart keeps
-- its positions here, not on the broker, so the broker's group only shares
-- partitions out among members; when a broker leaves that group with nobody
-- consuming (tansu 0.6 can wedge a group for good), the members move to a
-- fresh one, named after this generation, and go on from these positions.
CREATE TABLE IF NOT EXISTS kart_consumer_broker_groups (
    consumer_group TEXT PRIMARY KEY,
    generation BIGINT NOT NULL
);
