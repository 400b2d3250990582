-- Orders in the statuses few orders are in, newest first: an admin's list
-- of one such status, and the stuck-payment sweep (RESERVED). PAID and
-- FULFILLED orders, most of the table, are listed by `orders_by_time`.
--
-- It replaces `orders_by_status`, which PostgreSQL took for the saga's
-- status move (`WHERE id = $n AND status = $m`): on an empty table it
-- cost the same as the primary key, so the generic plan a prepared
-- statement keeps read every order in the status it moved from until the
-- table was first analyzed. A partial index cannot serve a `status = $n`
-- whose value the plan does not know, so the queries that use this one
-- write the status into their text. The predicate is ORed equalities
-- because that is what SQLite can match a query's `status = '…'` against.
DROP INDEX orders_by_status;
CREATE INDEX orders_by_rare_status ON orders (status, created_at DESC, id DESC)
    WHERE status = 'PENDING' OR status = 'RESERVED' OR status = 'FAILED' OR status = 'CANCELLED';
