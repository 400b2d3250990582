-- SQLite only. An order's lines and its history are keyed by (order id,
-- number): as rowid tables each row was written twice, to the table and
-- to its primary key's index, on every order accepted and every status
-- change. WITHOUT ROWID keeps each row once, in key order, which is also
-- the order an order's read wants them in.
CREATE TABLE order_lines_by_key (
    order_id TEXT NOT NULL REFERENCES orders (id),
    line_no BIGINT NOT NULL,
    sku TEXT NOT NULL,
    name TEXT NOT NULL,
    quantity BIGINT NOT NULL CHECK (quantity > 0),
    unit_price_minor BIGINT NOT NULL CHECK (unit_price_minor >= 0),
    PRIMARY KEY (order_id, line_no)
) WITHOUT ROWID;
INSERT INTO order_lines_by_key (order_id, line_no, sku, name, quantity, unit_price_minor)
    SELECT order_id, line_no, sku, name, quantity, unit_price_minor FROM order_lines;
DROP TABLE order_lines;
ALTER TABLE order_lines_by_key RENAME TO order_lines;

CREATE TABLE order_history_by_key (
    order_id TEXT NOT NULL REFERENCES orders (id),
    seq BIGINT NOT NULL,
    from_status TEXT NOT NULL,
    to_status TEXT NOT NULL,
    cause TEXT NOT NULL,
    detail TEXT NOT NULL,
    at BIGINT NOT NULL,
    PRIMARY KEY (order_id, seq)
) WITHOUT ROWID;
INSERT INTO order_history_by_key (order_id, seq, from_status, to_status, cause, detail, at)
    SELECT order_id, seq, from_status, to_status, cause, detail, at FROM order_history;
DROP TABLE order_history;
ALTER TABLE order_history_by_key RENAME TO order_history;
