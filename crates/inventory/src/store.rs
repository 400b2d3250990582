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

use kit::db::{Tx, now_millis};
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
    // Claim the order id first: a concurrent call for the same order waits
    // here, then sees the winner's row.
    let claimed = sqlx::query(
        "INSERT INTO reservations (order_id, state, expires_at, short_lines, reason, created_at, updated_at)
         VALUES ($1, 'reserved', $2, '[]', '', $3, $3)
         ON CONFLICT (order_id) DO NOTHING",
    )
    .bind(order_id)
    .bind(expires_at)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    if claimed.rows_affected() == 0 {
        let existing = reservation(tx, order_id)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("reservation {order_id} vanished")))?;
        return Ok(ReserveOutcome::Existing(existing));
    }

    let mut taken = Vec::new();
    let mut short = Vec::new();
    for (sku, quantity) in lines.iter() {
        let quantity = i64::from(quantity.get());
        let took = sqlx::query(
            "UPDATE stock SET reserved = reserved + $1, updated_at = $2
             WHERE sku = $3 AND on_hand - reserved >= $1",
        )
        .bind(quantity)
        .bind(now)
        .bind(sku.as_str())
        .execute(&mut **tx)
        .await?;
        if took.rows_affected() == 1 {
            taken.push((sku.as_str(), quantity));
        } else {
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
    }
    if short.is_empty() {
        for (sku, quantity) in taken {
            sqlx::query(
                "INSERT INTO reservation_lines (order_id, sku, quantity) VALUES ($1, $2, $3)",
            )
            .bind(order_id)
            .bind(sku)
            .bind(quantity)
            .execute(&mut **tx)
            .await?;
        }
        return Ok(ReserveOutcome::Reserved { expires_at });
    }
    for (sku, quantity) in taken {
        sqlx::query("UPDATE stock SET reserved = reserved - $1, updated_at = $2 WHERE sku = $3")
            .bind(quantity)
            .bind(now)
            .bind(sku)
            .execute(&mut **tx)
            .await?;
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
    let moved = sqlx::query(
        "UPDATE reservations SET state = $1, reason = $2, updated_at = $3 WHERE order_id = $4 AND state = 'reserved'",
    )
    .bind(to.as_str())
    .bind(reason)
    .bind(now)
    .bind(order_id)
    .execute(&mut **tx)
    .await?;
    if moved.rows_affected() == 1 {
        let change = if to == ReservationState::Committed {
            StockChange::Sell
        } else {
            StockChange::Unreserve
        };
        move_reserved_stock(tx, order_id, change, now).await?;
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
    let now = now_millis();
    let moved = sqlx::query(
        "UPDATE reservations SET state = 'released', reason = $1, updated_at = $2
         WHERE order_id = $3 AND state = 'committed'",
    )
    .bind(reason)
    .bind(now)
    .bind(order_id)
    .execute(&mut **tx)
    .await?;
    if moved.rows_affected() == 0 {
        return Ok(false);
    }
    move_reserved_stock(tx, order_id, StockChange::Restock, now).await?;
    Ok(true)
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

/// Applies `change` to the stock of every line `order_id` reserved, in one
/// statement (the lines' SKUs are unique per order, so each stock row
/// joins one line). The caller has just moved the reservation's state
/// conditionally, so this runs once per change however often it is asked.
async fn move_reserved_stock(
    tx: &mut Tx,
    order_id: &str,
    change: StockChange,
    now: i64,
) -> Result<(), sqlx::Error> {
    let statement = match change {
        StockChange::Sell => {
            "UPDATE stock SET on_hand = on_hand - l.quantity, reserved = reserved - l.quantity, updated_at = $2
             FROM reservation_lines AS l WHERE l.order_id = $1 AND l.sku = stock.sku"
        }
        StockChange::Unreserve => {
            "UPDATE stock SET reserved = reserved - l.quantity, updated_at = $2
             FROM reservation_lines AS l WHERE l.order_id = $1 AND l.sku = stock.sku"
        }
        StockChange::Restock => {
            "UPDATE stock SET on_hand = on_hand + l.quantity, updated_at = $2
             FROM reservation_lines AS l WHERE l.order_id = $1 AND l.sku = stock.sku"
        }
    };
    sqlx::query(statement)
        .bind(order_id)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(())
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
