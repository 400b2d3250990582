//! The inventory database: stock, adjustments, reservations.
//!
//! No oversell, on both databases: a line is reserved by one conditional
//! `UPDATE … WHERE on_hand - reserved >= quantity`, which PostgreSQL
//! re-checks under the row lock and SQLite runs under its single writer;
//! the table's CHECK constraints back it up. All lines of an order or none:
//! if any line is short, the lines already taken are given back in the same
//! transaction, so no other transaction ever sees them taken. (A savepoint
//! would do the same at two more statements per order, on the one writer
//! every reservation waits for.)

use kit::db::{DbKind, Tx, now_millis, padded_values};
use sqlx::Row;

use crate::domain::{Adjustment, Lines, ReservationState, Short};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockLevel {
    pub sku: String,
    pub on_hand: i64,
    pub reserved: i64,
}

impl StockLevel {
    pub fn available(&self) -> i64 {
        self.on_hand - self.reserved
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdjustmentRecord {
    pub sku: String,
    pub delta: i64,
    pub reason: String,
    pub actor: String,
    pub on_hand_after: i64,
    pub at: i64,
}

/// A reservation as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub order_id: String,
    pub state: ReservationState,
    pub expires_at: i64,
    pub short: Vec<Short>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("that would leave less stock than is reserved or on hand")]
    NotEnoughStock { on_hand: i64, reserved: i64 },
    #[error("stored reservation is malformed: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

pub async fn levels(tx: &mut Tx, skus: &[String]) -> Result<Vec<StockLevel>, sqlx::Error> {
    let mut levels = Vec::with_capacity(skus.len());
    for sku in skus {
        let row = sqlx::query("SELECT sku, on_hand, reserved FROM stock WHERE sku = $1")
            .bind(sku)
            .fetch_optional(&mut **tx)
            .await?;
        if let Some(row) = row {
            levels.push(StockLevel {
                sku: row.try_get("sku")?,
                on_hand: row.try_get("on_hand")?,
                reserved: row.try_get("reserved")?,
            });
        }
    }
    Ok(levels)
}

/// Applies an adjustment and records it; refused if stock would fall below
/// what is reserved (or below zero).
pub async fn adjust(
    tx: &mut Tx,
    adjustment: &Adjustment,
    actor: &str,
    id: &str,
) -> Result<StockLevel, StoreError> {
    let now = now_millis();
    let sku = adjustment.sku.as_str();
    sqlx::query(
        "INSERT INTO stock (sku, on_hand, reserved, updated_at) VALUES ($1, 0, 0, $2)
         ON CONFLICT (sku) DO NOTHING",
    )
    .bind(sku)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    let changed = sqlx::query(
        "UPDATE stock SET on_hand = on_hand + $1, updated_at = $2
         WHERE sku = $3 AND on_hand + $1 >= reserved",
    )
    .bind(adjustment.delta)
    .bind(now)
    .bind(sku)
    .execute(&mut **tx)
    .await?;
    let level = levels(tx, &[sku.to_owned()])
        .await?
        .pop()
        .ok_or_else(|| StoreError::Corrupt(format!("stock row of {sku} vanished")))?;
    if changed.rows_affected() == 0 {
        return Err(StoreError::NotEnoughStock {
            on_hand: level.on_hand,
            reserved: level.reserved,
        });
    }
    sqlx::query(
        "INSERT INTO adjustments (id, sku, delta, reason, actor, on_hand_after, at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(id)
    .bind(sku)
    .bind(adjustment.delta)
    .bind(&adjustment.reason)
    .bind(actor)
    .bind(level.on_hand)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(level)
}

pub async fn adjustments(
    tx: &mut Tx,
    sku: &str,
    limit: i64,
) -> Result<Vec<AdjustmentRecord>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT sku, delta, reason, actor, on_hand_after, at FROM adjustments
         WHERE sku = $1 ORDER BY at DESC, id DESC LIMIT $2",
    )
    .bind(sku)
    .bind(limit)
    .fetch_all(&mut **tx)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(AdjustmentRecord {
                sku: row.try_get("sku")?,
                delta: row.try_get("delta")?,
                reason: row.try_get("reason")?,
                actor: row.try_get("actor")?,
                on_hand_after: row.try_get("on_hand_after")?,
                at: row.try_get("at")?,
            })
        })
        .collect()
}

pub async fn reservation(tx: &mut Tx, order_id: &str) -> Result<Option<Reservation>, StoreError> {
    let row = sqlx::query(
        "SELECT order_id, state, expires_at, short_lines FROM reservations WHERE order_id = $1",
    )
    .bind(order_id)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let state: String = row.try_get("state")?;
    let short: String = row.try_get("short_lines")?;
    Ok(Some(Reservation {
        order_id: row.try_get("order_id")?,
        state: ReservationState::parse(&state).ok_or_else(|| StoreError::Corrupt(state.clone()))?,
        expires_at: row.try_get("expires_at")?,
        short: serde_json::from_str(&short).map_err(|e| StoreError::Corrupt(e.to_string()))?,
    }))
}

/// What [`reserve`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReserveOutcome {
    /// This call reserved every line.
    Reserved { expires_at: i64 },
    /// This call found a line short and reserved nothing.
    Rejected { short: Vec<Short> },
    /// The order had a reservation already (this is a repeat, or it was
    /// released before it arrived): nothing changed.
    Existing(Reservation),
}

/// Reserves every line of `order_id` or none, until `expires_at`.
/// Idempotent: a second call for the same order changes nothing.
pub async fn reserve(
    tx: &mut Tx,
    order_id: &str,
    lines: &Lines,
    expires_at: i64,
) -> Result<ReserveOutcome, StoreError> {
    let now = now_millis();
    let Some(taken) = claim_and_take(tx, order_id, lines, expires_at, now).await? else {
        let existing = reservation(tx, order_id)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("reservation {order_id} vanished")))?;
        return Ok(ReserveOutcome::Existing(existing));
    };
    if taken.len() == lines.iter().count() {
        return Ok(ReserveOutcome::Reserved { expires_at });
    }

    // A line is short: the lines taken go back, in this same transaction,
    // and the reservation records what was missing.
    let mut short = Vec::new();
    for (sku, quantity) in lines.iter() {
        let quantity = i64::from(quantity.get());
        if taken.iter().any(|t| t == sku.as_str()) {
            sqlx::query(
                "UPDATE stock SET reserved = reserved - $1, updated_at = $2 WHERE sku = $3",
            )
            .bind(quantity)
            .bind(now)
            .bind(sku.as_str())
            .execute(&mut **tx)
            .await?;
            continue;
        }
        let available: Option<i64> =
            sqlx::query_scalar("SELECT on_hand - reserved FROM stock WHERE sku = $1")
                .bind(sku.as_str())
                .fetch_optional(&mut **tx)
                .await?;
        short.push(Short {
            sku: sku.to_string(),
            requested: quantity as u32,
            available: available.unwrap_or(0),
        });
    }
    let short_json =
        serde_json::to_string(&short).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    sqlx::query("UPDATE reservations SET state = 'rejected', short_lines = $1, reason = 'out_of_stock' WHERE order_id = $2")
        .bind(short_json)
        .bind(order_id)
        .execute(&mut **tx)
        .await?;
    Ok(ReserveOutcome::Rejected { short })
}

/// The usual reservation in one round trip: claims the order id (a
/// concurrent claim of the same order waits for this one, then finds its
/// row), takes every line that has the units, and, if that is all of them,
/// stores the lines. Returns the SKUs taken, or `None` if the order was
/// claimed before (nothing is taken then).
///
/// One round trip because every reservation waits for the inventory
/// database's one writer, and each statement is time it is held (on
/// PostgreSQL, a network round trip too). PostgreSQL: writing `WITH`s,
/// each fed by the one before. SQLite: one text of three statements, each
/// guarded by `changes()`, the rows the one before it changed.
///
/// All of an order's lines go in the one statement, past
/// [`kit::db::MAX_ROWS_PER_STATEMENT`]: taking them together is what makes
/// it one round trip, and an order has at most 100 SKUs ([`Lines`]), so at
/// most 128 padded rows. On PostgreSQL the stock rows of a many-line order
/// are locked in the plan's order, as a sale's are ([`move_reservation`]),
/// not SKU by SKU: two such orders can deadlock, and PostgreSQL then rolls
/// one back, which its consumer batch retries.
async fn claim_and_take(
    tx: &mut Tx,
    order_id: &str,
    lines: &Lines,
    expires_at: i64,
    now: i64,
) -> Result<Option<Vec<String>>, StoreError> {
    let count = lines.iter().count();
    let (values, padded) = padded_values(count, 2);
    // The lines are `$1 …`, two to a line; the rest follow them.
    let first = 2 * padded;
    let (order, expires, at, lines_count) = (first + 1, first + 2, first + 3, first + 4);
    let claim = format!(
        "INSERT INTO reservations (order_id, state, expires_at, short_lines, reason, created_at, updated_at)
         VALUES (${order}, 'reserved', ${expires}, '[]', '', ${at}, ${at})
         ON CONFLICT (order_id) DO NOTHING"
    );
    // Each stock row joins one line: the lines' SKUs are unique.
    let take = format!(
        "UPDATE stock SET reserved = stock.reserved + line.column2, updated_at = ${at}
         FROM (VALUES {values}) AS line
         WHERE stock.sku = line.column1 AND stock.on_hand - stock.reserved >= line.column2"
    );
    let keep = "INSERT INTO reservation_lines (order_id, sku, quantity)";
    let sql = match tx.kind() {
        DbKind::Postgres => format!(
            "WITH claim AS ({claim} RETURNING order_id),
                  taken AS ({take} AND EXISTS (SELECT 1 FROM claim)
                            RETURNING stock.sku, line.column2 AS quantity),
                  kept AS ({keep} SELECT ${order}, sku, quantity FROM taken
                           WHERE (SELECT COUNT(*) FROM taken) = ${lines_count})
             SELECT 'claimed' AS what, order_id AS sku FROM claim
             UNION ALL SELECT 'taken', sku FROM taken"
        ),
        DbKind::Sqlite => format!(
            "{claim} RETURNING 'claimed' AS what, order_id AS sku;
             {take} AND changes() = 1 RETURNING 'taken' AS what, stock.sku AS sku;
             {keep} SELECT ${order}, column1, column2 FROM (VALUES {values})
                 WHERE column1 IS NOT NULL AND changes() = ${lines_count}"
        ),
    };
    let mut query = sqlx::query(&sql);
    let rows = lines.iter().map(Some).chain(std::iter::repeat(None));
    for line in rows.take(padded) {
        query = query
            .bind(line.map(|(sku, _)| sku.as_str()))
            .bind(line.map(|(_, quantity)| i64::from(quantity.get())));
    }
    // `fetch_all`: on SQLite each statement runs only once the rows of the
    // one before are all taken.
    let rows = query
        .bind(order_id)
        .bind(expires_at)
        .bind(now)
        .bind(i64::try_from(count).unwrap_or(i64::MAX))
        .fetch_all(&mut **tx)
        .await?;
    let mut claimed = false;
    let mut taken = Vec::new();
    for row in rows {
        let what: String = row.try_get("what")?;
        let sku: String = row.try_get("sku")?;
        match what.as_str() {
            "claimed" => claimed = true,
            _ => taken.push(sku),
        }
    }
    Ok(claimed.then_some(taken))
}

/// Ends a reservation that still holds stock: `Released` or `Expired` gives
/// the units back, `Committed` takes them off the books. Returns the state
/// before and after; only a change from `Reserved` moves stock. A release
/// for an order never reserved records it as released, so a late
/// reservation is refused.
pub async fn finish(
    tx: &mut Tx,
    order_id: &str,
    to: ReservationState,
    reason: &str,
) -> Result<(Option<ReservationState>, ReservationState), StoreError> {
    let now = now_millis();
    // The state moves first, conditionally: of two concurrent finishes, one
    // moves the stock. The common case (a reservation still held) needs no
    // read; the reservation is read only to say why nothing moved.
    let change = if to == ReservationState::Committed {
        StockChange::Sell
    } else {
        StockChange::Unreserve
    };
    let held = Transition {
        from: ReservationState::Reserved,
        to,
        reason,
        change,
    };
    if move_reservation(tx, order_id, held, now).await? {
        return Ok((Some(ReservationState::Reserved), to));
    }
    if let Some(current) = reservation(tx, order_id).await? {
        return Ok((Some(current.state), current.state));
    }
    if to == ReservationState::Committed {
        return Err(StoreError::Corrupt(format!(
            "commit of {order_id}, which was never reserved"
        )));
    }
    sqlx::query(
        "INSERT INTO reservations (order_id, state, expires_at, short_lines, reason, created_at, updated_at)
         VALUES ($1, 'released', 0, '[]', $2, $3, $3)
         ON CONFLICT (order_id) DO NOTHING",
    )
    .bind(order_id)
    .bind(reason)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok((None, ReservationState::Released))
}

/// Puts a sale's units back on hand: the order was cancelled after it was
/// paid, before it shipped. True if units moved (once, however often the
/// cancellation arrives).
pub async fn restock(tx: &mut Tx, order_id: &str, reason: &str) -> Result<bool, StoreError> {
    let sold = Transition {
        from: ReservationState::Committed,
        to: ReservationState::Released,
        reason,
        change: StockChange::Restock,
    };
    Ok(move_reservation(tx, order_id, sold, now_millis()).await?)
}

/// What happens to the stock rows of an order's reserved lines.
#[derive(Debug, Clone, Copy)]
enum StockChange {
    /// Paid: the units leave both on-hand and reserved.
    Sell,
    /// Released or expired: the units are available again.
    Unreserve,
    /// A sale undone before shipping: the units are back on hand.
    Restock,
}

/// A reservation's move between states, and what it does to the stock.
#[derive(Debug, Clone, Copy)]
struct Transition<'a> {
    from: ReservationState,
    to: ReservationState,
    reason: &'a str,
    change: StockChange,
}

/// Moves the reservation of `order_id` from `step.from` to `step.to` and,
/// if it was in `step.from`, applies `step.change` to the stock of every
/// line it reserved; true if it was. The state moves conditionally, so the
/// stock changes once however often this is asked.
///
/// One round trip, as a reservation's is ([`claim_and_take`]):
/// PostgreSQL updates the stock from the moved row in a writing `WITH`;
/// SQLite runs the stock update after the move in one text, guarded by
/// `changes()`. The lines' SKUs are unique per order, so each stock row
/// joins one line.
async fn move_reservation(
    tx: &mut Tx,
    order_id: &str,
    step: Transition<'_>,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let set = match step.change {
        StockChange::Sell => "on_hand = on_hand - l.quantity, reserved = reserved - l.quantity",
        StockChange::Unreserve => "reserved = reserved - l.quantity",
        StockChange::Restock => "on_hand = on_hand + l.quantity",
    };
    let moved = "UPDATE reservations SET state = $1, reason = $2, updated_at = $3
                 WHERE order_id = $4 AND state = $5 RETURNING order_id";
    let sql = match tx.kind() {
        DbKind::Postgres => format!(
            "WITH moved AS ({moved}),
                  stocked AS (UPDATE stock SET {set}, updated_at = $3
                              FROM reservation_lines AS l, moved
                              WHERE l.order_id = moved.order_id AND l.sku = stock.sku)
             SELECT order_id FROM moved"
        ),
        DbKind::Sqlite => format!(
            "{moved}; UPDATE stock SET {set}, updated_at = $3 FROM reservation_lines AS l
                      WHERE changes() = 1 AND l.order_id = $4 AND l.sku = stock.sku"
        ),
    };
    // `fetch_all`: on SQLite the stock update runs only once the moved
    // row is taken.
    let moved = sqlx::query(&sql)
        .bind(step.to.as_str())
        .bind(step.reason)
        .bind(now)
        .bind(order_id)
        .bind(step.from.as_str())
        .fetch_all(&mut **tx)
        .await?;
    Ok(!moved.is_empty())
}

/// Orders whose reservation has run out, oldest first.
pub async fn expired(tx: &mut Tx, now: i64, limit: i64) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT order_id FROM reservations WHERE state = 'reserved' AND expires_at <= $1
         ORDER BY expires_at LIMIT $2",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(&mut **tx)
    .await
}
