-- The stuck-payment sweep is the one query that looks orders up by status,
-- and only RESERVED ones, so its index holds only those. An index that led
-- with `status` could serve any statement with `status = $n`, and
-- PostgreSQL took it for the saga's status move (`WHERE id = $n AND status
-- = $m`): on an empty table it cost the same as the primary key, and the
-- generic plan a prepared statement keeps was made then, so every later
-- move read every order in the status it moved from. A partial index
-- cannot serve a `status = $n` whose value the plan does not know.
DROP INDEX orders_by_status;
CREATE INDEX orders_reserved_since ON orders (updated_at) WHERE status = 'RESERVED';
