//! The orders database. A status changes only through [`move_status`], a
//! conditional update that fails if someone else moved the order first, so
//! two writers (an event and a cancel, say) can never both win.

use kit::db::{DbKind, MAX_ROWS_PER_STATEMENT, Tx, padded_values, values_columns};
use sqlx::AnyConnection;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::state::Status;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub sku: String,
    pub name: String,
    pub quantity: i64,
    pub unit_price_minor: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub from: String,
    pub to: String,
    pub cause: String,
    pub detail: String,
    pub at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub id: String,
    pub user_id: String,
    pub status: Status,
    pub currency: String,
    pub total_minor: i64,
    pub payment_method_id: String,
    /// `saved_method` or `checkout`.
    pub payment_kind: String,
    pub failure_code: String,
    pub captured_minor: i64,
    pub refunded_minor: i64,
    pub refund_pending_minor: i64,
    pub idempotency_key: String,
    pub request_hash: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub lines: Vec<Line>,
    pub history: Vec<Transition>,
}

impl Order {
    /// What may still be refunded: captured, less refunded and asked for.
    pub fn refundable_minor(&self) -> i64 {
        self.captured_minor - self.refunded_minor - self.refund_pending_minor
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("this idempotency key was used for another order")]
    KeyTaken,
    #[error("the order changed meanwhile")]
    Conflict,
    #[error("the orders database holds something it should not: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

const ORDER_COLUMNS: &str = "id, user_id, status, currency, total_minor, payment_method_id, \
     payment_kind, failure_code, captured_minor, refunded_minor, refund_pending_minor, idempotency_key, \
     request_hash, created_at, updated_at";

fn order_row(row: &AnyRow) -> Result<Order, StoreError> {
    let status: String = row.try_get("status")?;
    Ok(Order {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        status: Status::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("status `{status}`")))?,
        currency: row.try_get("currency")?,
        total_minor: row.try_get("total_minor")?,
        payment_method_id: row.try_get("payment_method_id")?,
        payment_kind: row.try_get("payment_kind")?,
        failure_code: row.try_get("failure_code")?,
        captured_minor: row.try_get("captured_minor")?,
        refunded_minor: row.try_get("refunded_minor")?,
        refund_pending_minor: row.try_get("refund_pending_minor")?,
        idempotency_key: row.try_get("idempotency_key")?,
        request_hash: row.try_get("request_hash")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        lines: Vec::new(),
        history: Vec::new(),
    })
}

/// Writes a new order with its lines and first history entry. A second
/// order with the same user and key is [`StoreError::KeyTaken`], and the
/// transaction is left usable (see [`insert_all`]).
pub async fn insert(tx: &mut Tx, order: &Order) -> Result<(), StoreError> {
    match insert_all(tx, &[order]).await?.first() {
        Some(true) => Ok(()),
        _ => Err(StoreError::KeyTaken),
    }
}

/// Writes new orders with their lines and history, in three statements
/// per [`MAX_ROWS_PER_STATEMENT`] orders (lines and history: rows) rather
/// than two or more per order: new orders are stored in batches
/// ([`crate::creations`]), and on SQLite each statement is a round trip
/// made while the database's one writer is held. Returns, for each order,
/// whether it was stored: `false` when its user's idempotency key names an
/// order already, stored before or earlier in `orders`.
///
/// A taken key inserts nothing (`ON CONFLICT DO NOTHING`) instead of
/// failing, so the transaction is left usable: a failed statement would
/// abort a PostgreSQL transaction, and a savepoint around each order costs
/// two more statements. Any other refusal (an id that is taken) fails the
/// statement, and with it every order in it.
pub async fn insert_all(tx: &mut Tx, orders: &[&Order]) -> Result<Vec<bool>, StoreError> {
    let mut stored_ids = std::collections::HashSet::new();
    for chunk in orders.chunks(MAX_ROWS_PER_STATEMENT) {
        // Column 1 is each order's place, so that of two with one key the
        // first is the one stored.
        let (values, padded) = padded_values(chunk.len(), 16);
        let sql = format!(
            "INSERT INTO orders ({ORDER_COLUMNS})
             SELECT {} FROM (VALUES {values}) AS new_order
             WHERE column1 IS NOT NULL ORDER BY column1
             ON CONFLICT (user_id, idempotency_key) DO NOTHING
             RETURNING id",
            values_columns(2, 16)
        );
        let mut query = sqlx::query_scalar::<_, String>(&sql);
        // The padding is rows of NULLs, each of its column's type.
        let rows = chunk.iter().map(Some).chain(std::iter::repeat(None));
        for (place, order) in rows.take(padded).enumerate() {
            let place = i64::try_from(place).unwrap_or(i64::MAX);
            query = query
                .bind(order.map(|_| place))
                .bind(order.map(|o| o.id.as_str()))
                .bind(order.map(|o| o.user_id.as_str()))
                .bind(order.map(|o| o.status.as_str()))
                .bind(order.map(|o| o.currency.as_str()))
                .bind(order.map(|o| o.total_minor))
                .bind(order.map(|o| o.payment_method_id.as_str()))
                .bind(order.map(|o| o.payment_kind.as_str()))
                .bind(order.map(|o| o.failure_code.as_str()))
                .bind(order.map(|o| o.captured_minor))
                .bind(order.map(|o| o.refunded_minor))
                .bind(order.map(|o| o.refund_pending_minor))
                .bind(order.map(|o| o.idempotency_key.as_str()))
                .bind(order.map(|o| o.request_hash.as_str()))
                .bind(order.map(|o| o.created_at))
                .bind(order.map(|o| o.updated_at));
        }
        stored_ids.extend(query.fetch_all(&mut **tx).await?);
    }
    let stored: Vec<&Order> = orders
        .iter()
        .copied()
        .filter(|order| stored_ids.contains(&order.id))
        .collect();
    insert_lines(tx, &stored).await?;
    insert_first_history(tx, &stored).await?;
    Ok(orders
        .iter()
        .map(|order| stored_ids.contains(&order.id))
        .collect())
}

/// The lines of orders just stored.
async fn insert_lines(tx: &mut Tx, orders: &[&Order]) -> Result<(), StoreError> {
    let lines: Vec<(&str, i64, &Line)> = orders
        .iter()
        .flat_map(|order| {
            order.lines.iter().enumerate().map(|(line_no, line)| {
                let line_no = i64::try_from(line_no).unwrap_or(i64::MAX);
                (order.id.as_str(), line_no, line)
            })
        })
        .collect();
    for chunk in lines.chunks(MAX_ROWS_PER_STATEMENT) {
        let (values, padded) = padded_values(chunk.len(), 6);
        let sql = format!(
            "INSERT INTO order_lines (order_id, line_no, sku, name, quantity, unit_price_minor)
             SELECT {} FROM (VALUES {values}) AS new_line WHERE column1 IS NOT NULL",
            values_columns(1, 6)
        );
        let mut query = sqlx::query(&sql);
        let rows = chunk.iter().map(Some).chain(std::iter::repeat(None));
        for row in rows.take(padded) {
            query = query
                .bind(row.map(|(order_id, _, _)| *order_id))
                .bind(row.map(|(_, line_no, _)| *line_no))
                .bind(row.map(|(_, _, line)| line.sku.as_str()))
                .bind(row.map(|(_, _, line)| line.name.as_str()))
                .bind(row.map(|(_, _, line)| line.quantity))
                .bind(row.map(|(_, _, line)| line.unit_price_minor));
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

/// The history orders were created with, numbered from 1: an order just
/// stored has no entries yet.
async fn insert_first_history(tx: &mut Tx, orders: &[&Order]) -> Result<(), StoreError> {
    let entries: Vec<(&str, i64, &Transition)> = orders
        .iter()
        .flat_map(|order| {
            order.history.iter().enumerate().map(|(place, transition)| {
                let seq = i64::try_from(place + 1).unwrap_or(i64::MAX);
                (order.id.as_str(), seq, transition)
            })
        })
        .collect();
    for chunk in entries.chunks(MAX_ROWS_PER_STATEMENT) {
        let (values, padded) = padded_values(chunk.len(), 7);
        let sql = format!(
            "INSERT INTO order_history (order_id, seq, from_status, to_status, cause, detail, at)
             SELECT {} FROM (VALUES {values}) AS new_entry WHERE column1 IS NOT NULL",
            values_columns(1, 7)
        );
        let mut query = sqlx::query(&sql);
        let rows = chunk.iter().map(Some).chain(std::iter::repeat(None));
        for row in rows.take(padded) {
            query = query
                .bind(row.map(|(order_id, _, _)| *order_id))
                .bind(row.map(|(_, seq, _)| *seq))
                .bind(row.map(|(_, _, entry)| entry.from.as_str()))
                .bind(row.map(|(_, _, entry)| entry.to.as_str()))
                .bind(row.map(|(_, _, entry)| entry.cause.as_str()))
                .bind(row.map(|(_, _, entry)| entry.detail.as_str()))
                .bind(row.map(|(_, _, entry)| entry.at));
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

async fn append_history(
    conn: &mut AnyConnection,
    order_id: &str,
    transition: &Transition,
) -> Result<i64, StoreError> {
    let seq = sqlx::query_scalar(
        "INSERT INTO order_history (order_id, seq, from_status, to_status, cause, detail, at)
         SELECT $1, COALESCE(MAX(seq), 0) + 1, $2, $3, $4, $5, $6
         FROM order_history WHERE order_id = $7
         RETURNING seq",
    )
    .bind(order_id)
    .bind(&transition.from)
    .bind(&transition.to)
    .bind(&transition.cause)
    .bind(&transition.detail)
    .bind(transition.at)
    .bind(order_id)
    .fetch_one(conn)
    .await?;
    Ok(seq)
}

/// One order with its lines and history, in one statement: one round trip
/// instead of three, and one snapshot. Readers run outside a transaction,
/// so three statements could see a status whose history entry committed
/// after they read it, or the other way round.
///
/// The statement is three branches of a `UNION ALL`: the order's own row
/// (its `kind` NULL), then one row per line (`kind` 0) and per history
/// entry (`kind` 1), with the part's fields in generic columns and the
/// order's columns NULL. No join and no `ORDER BY`, so SQLite streams the
/// three index searches instead of building temporary tables (it did, for
/// a join on a subquery, and that was most of this read's time); the parts
/// are put in order here, by kind and number.
pub async fn by_id(conn: &mut AnyConnection, id: &str) -> Result<Option<Order>, StoreError> {
    // Built once: the text is the same for every order.
    static BY_ID: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let no_order_columns = ORDER_COLUMNS
            .split(',')
            .map(|_| "NULL")
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "SELECT {ORDER_COLUMNS}, NULL AS kind, NULL AS seq_no, NULL AS text1,
                    NULL AS text2, NULL AS text3, NULL AS text4,
                    NULL AS number1, NULL AS number2
             FROM orders WHERE id = $1
             UNION ALL
             SELECT {no_order_columns}, CAST(0 AS BIGINT), line_no, sku, name, '', '',
                    quantity, unit_price_minor
             FROM order_lines WHERE order_id = $1
             UNION ALL
             SELECT {no_order_columns}, CAST(1 AS BIGINT), seq, from_status, to_status,
                    cause, detail, at, CAST(0 AS BIGINT)
             FROM order_history WHERE order_id = $1"
        )
    });
    let rows = sqlx::query(BY_ID.as_str())
        .bind(id)
        .fetch_all(&mut *conn)
        .await?;
    let mut order = None;
    let mut parts = Vec::with_capacity(rows.len());
    for row in &rows {
        match row.try_get::<Option<i64>, _>("kind")? {
            None => order = Some(order_row(row)?),
            Some(kind) => parts.push((kind, row.try_get::<i64, _>("seq_no")?, row)),
        }
    }
    let Some(mut order) = order else {
        return Ok(None);
    };
    parts.sort_by_key(|&(kind, seq_no, _)| (kind, seq_no));
    for (kind, _, row) in parts {
        if kind == 0 {
            order.lines.push(Line {
                sku: row.try_get("text1")?,
                name: row.try_get("text2")?,
                quantity: row.try_get("number1")?,
                unit_price_minor: row.try_get("number2")?,
            });
        } else {
            order.history.push(Transition {
                from: row.try_get("text1")?,
                to: row.try_get("text2")?,
                cause: row.try_get("text3")?,
                detail: row.try_get("text4")?,
                at: row.try_get("number1")?,
            });
        }
    }
    Ok(Some(order))
}

/// The order's own row, without its lines and history (left empty): what
/// the saga decides on, in one statement instead of three.
pub async fn head_by_id(conn: &mut AnyConnection, id: &str) -> Result<Option<Order>, StoreError> {
    let row = sqlx::query(&format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1"))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    row.as_ref().map(order_row).transpose()
}

/// The order a user made with an idempotency key.
///
/// Prepared, like every statement. On PostgreSQL the plan made while the
/// table is empty goes through `orders_by_user` (it ties with the unique
/// index, and wins), reading every earlier order of the user, until the
/// table's first `ANALYZE` (autovacuum's, within about a minute of the
/// first orders) replans it. Planning at each use instead would cost about
/// 0.05 ms a lookup for good (pgbench, BENCHMARKS.md stop 34), to save
/// that first minute.
pub async fn by_key(
    conn: &mut AnyConnection,
    user_id: &str,
    key: &str,
) -> Result<Option<Order>, StoreError> {
    let id: Option<String> =
        sqlx::query_scalar("SELECT id FROM orders WHERE user_id = $1 AND idempotency_key = $2")
            .bind(user_id)
            .bind(key)
            .fetch_optional(&mut *conn)
            .await?;
    match id {
        Some(id) => by_id(conn, &id).await,
        None => Ok(None),
    }
}

/// Loads the order's lines (order lists show lines, not history).
async fn fill_lines(conn: &mut AnyConnection, order: &mut Order) -> Result<(), StoreError> {
    let lines = sqlx::query(
        "SELECT sku, name, quantity, unit_price_minor FROM order_lines
         WHERE order_id = $1 ORDER BY line_no",
    )
    .bind(&order.id)
    .fetch_all(&mut *conn)
    .await?;
    order.lines = lines
        .iter()
        .map(|row| {
            Ok(Line {
                sku: row.try_get("sku")?,
                name: row.try_get("name")?,
                quantity: row.try_get("quantity")?,
                unit_price_minor: row.try_get("unit_price_minor")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()?;
    Ok(())
}

/// A status change to write.
#[derive(Debug, Clone, Copy)]
pub struct Move<'a> {
    pub from: Status,
    pub to: Status,
    pub cause: &'a str,
    pub detail: &'a str,
    /// Set on the order when it fails.
    pub failure_code: Option<&'a str>,
    /// Money the payment service captured with this step (a capture that
    /// pays the order), added to the order's in the same update.
    pub captured_minor: i64,
}

/// An order [`move_status`] moved.
#[derive(Debug, Clone)]
pub struct Moved {
    /// Its row as it now stands, without lines and history (as
    /// [`head_by_id`]).
    pub order: Order,
    /// The number of the history entry the move wrote.
    pub history_seq: i64,
}

/// Moves the order from `step.from` to `step.to`, with the cause in its
/// history and the money the step captured, if it is still in
/// `step.from`; [`StoreError::Conflict`] if it is not there, which changes
/// nothing.
pub async fn move_status(
    tx: &mut Tx,
    order_id: &str,
    step: Move<'_>,
    now: i64,
) -> Result<Moved, StoreError> {
    let Move {
        from,
        to,
        cause,
        detail,
        failure_code,
        captured_minor,
    } = step;
    // One round trip for the update and its history entry, and the entry
    // is written only if the update matched. PostgreSQL: the entry is
    // inserted from the updated row, in one statement. SQLite has no
    // writing `WITH`, but the driver runs a text of several statements in
    // one call, and `changes()` is the
    // number of rows the update changed. The guard is a `HAVING`: the
    // `MAX` makes one row even where the `WHERE` leaves none. The entry's
    // number comes back with the row (PostgreSQL) or as a row of its own
    // (SQLite).
    let update = format!(
        "UPDATE orders SET status = $1, updated_at = $2,
                failure_code = COALESCE($3, failure_code),
                captured_minor = captured_minor + $4
         WHERE id = $5 AND status = $6
         RETURNING {ORDER_COLUMNS}"
    );
    let history = "SELECT $5, COALESCE(MAX(seq), 0) + 1, $6, $1, $7, $8, $2
         FROM order_history WHERE order_id = $5";
    let history_seq = "RETURNING seq AS history_seq";
    let history_columns =
        "order_history (order_id, seq, from_status, to_status, cause, detail, at)";
    let sql = match tx.kind() {
        DbKind::Postgres => format!(
            "WITH moved AS ({update}),
                  entry AS (INSERT INTO {history_columns} {history}
                                 HAVING EXISTS (SELECT 1 FROM moved) {history_seq})
             SELECT moved.*, entry.history_seq FROM moved, entry"
        ),
        DbKind::Sqlite => format!(
            "{update}; INSERT INTO {history_columns} {history} HAVING changes() = 1 {history_seq}"
        ),
    };
    // `fetch_all`: on SQLite the second statement runs only if the rows of
    // the first are all taken.
    let moved = sqlx::query(&sql)
        .bind(to.as_str())
        .bind(now)
        .bind(failure_code)
        .bind(captured_minor)
        .bind(order_id)
        .bind(from.as_str())
        .bind(cause)
        .bind(detail)
        .fetch_all(&mut **tx)
        .await?;
    let order = moved
        .first()
        .map(order_row)
        .transpose()?
        .ok_or(StoreError::Conflict)?;
    let history_seq = moved
        .iter()
        .find_map(|row| row.try_get::<i64, _>("history_seq").ok())
        .ok_or_else(|| StoreError::Corrupt(format!("no history entry for moving {order_id}")))?;
    Ok(Moved { order, history_seq })
}

/// Money the payment service moved, to add to an order's.
#[derive(Debug, Clone, Copy, Default)]
pub struct MoneyMoved {
    pub captured: i64,
    pub refunded: i64,
    /// Added to what is asked back; what is asked back never goes below 0.
    pub refund_pending: i64,
}

/// Adds `money` to the order's and writes `cause` in its history as a note,
/// an entry that changes no status (a capture on a closed order, a
/// refund); returns the row as it now stands and the note's number, for
/// the event that announces the step (`None`: no such order).
pub async fn add_money_noted(
    tx: &mut Tx,
    order_id: &str,
    money: MoneyMoved,
    cause: &str,
    detail: &str,
    now: i64,
) -> Result<Option<Moved>, StoreError> {
    let Some(order) = add_money(tx, order_id, money, now).await? else {
        return Ok(None);
    };
    let status = order.status.as_str().to_owned();
    let history_seq = append_history(
        tx,
        order_id,
        &Transition {
            from: status.clone(),
            to: status,
            cause: cause.to_owned(),
            detail: detail.to_owned(),
            at: now,
        },
    )
    .await?;
    Ok(Some(Moved { order, history_seq }))
}

/// Adds to the money the payment service reported, and to what is asked
/// back; returns the row as it now stands (`None`: no such order). The
/// table's check refuses ever refunding more than was captured.
pub async fn add_money(
    tx: &mut Tx,
    order_id: &str,
    money: MoneyMoved,
    now: i64,
) -> Result<Option<Order>, StoreError> {
    let row = sqlx::query(&format!(
        "UPDATE orders SET captured_minor = captured_minor + $1,
                refunded_minor = refunded_minor + $2,
                refund_pending_minor = CASE WHEN refund_pending_minor + $3 < 0 THEN 0
                                            ELSE refund_pending_minor + $4 END,
                updated_at = $5
         WHERE id = $6
         RETURNING {ORDER_COLUMNS}"
    ))
    .bind(money.captured)
    .bind(money.refunded)
    .bind(money.refund_pending)
    .bind(money.refund_pending)
    .bind(now)
    .bind(order_id)
    .fetch_optional(&mut **tx)
    .await?;
    row.as_ref().map(order_row).transpose()
}

/// What a list asks for.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub user_id: Option<String>,
    pub status: Option<Status>,
    /// `created_at.id` of the last order of the previous page.
    pub after: Option<(i64, String)>,
    pub limit: u32,
}

/// The statement [`list`] runs for `filter`; its parameters, in order:
/// the user, the page's `after` (created at, twice, and id), the limit.
pub fn list_statement(filter: &Filter) -> String {
    let mut sql = format!("SELECT {ORDER_COLUMNS} FROM orders WHERE 1 = 1");
    let mut n = 0;
    let mut next = || {
        n += 1;
        format!("${n}")
    };
    if filter.user_id.is_some() {
        sql.push_str(&format!(" AND user_id = {}", next()));
    }
    // The status is written into the text (it is one of `Status`'s own
    // names) so that a rare one is read from the partial index
    // `orders_by_rare_status`, which a parameter could not use.
    if let Some(status) = filter.status {
        sql.push_str(&format!(" AND status = '{}'", status.as_str()));
    }
    if filter.after.is_some() {
        let (a, b, c) = (next(), next(), next());
        sql.push_str(&format!(
            " AND (created_at < {a} OR (created_at = {b} AND id < {c}))"
        ));
    }
    sql.push_str(&format!(
        " ORDER BY created_at DESC, id DESC LIMIT {}",
        next()
    ));
    sql
}

/// A page of orders, newest first, with lines but without history.
pub async fn list(conn: &mut AnyConnection, filter: &Filter) -> Result<Vec<Order>, StoreError> {
    let sql = list_statement(filter);
    let mut query = sqlx::query(&sql);
    if let Some(user_id) = &filter.user_id {
        query = query.bind(user_id);
    }
    if let Some((created_at, id)) = &filter.after {
        query = query.bind(*created_at).bind(*created_at).bind(id);
    }
    let rows = query
        .bind(i64::from(filter.limit))
        .fetch_all(&mut *conn)
        .await?;
    let mut orders = rows.iter().map(order_row).collect::<Result<Vec<_>, _>>()?;
    for order in &mut orders {
        fill_lines(conn, order).await?;
    }
    Ok(orders)
}

/// Orders that have sat RESERVED since before `before`, oldest first.
/// The status is in the text, not a parameter, so that the partial index
/// `orders_by_rare_status` serves it (migration 4 says why).
pub async fn reserved_since(
    conn: &mut AnyConnection,
    before: i64,
    limit: u32,
) -> Result<Vec<String>, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT id FROM orders WHERE status = 'RESERVED' AND updated_at < $1
         ORDER BY updated_at LIMIT $2",
    )
    .bind(before)
    .bind(i64::from(limit))
    .fetch_all(conn)
    .await?)
}
