//! The notifications database: what messages need to know, the mailbox,
//! delivery attempts. Portable SQL, the same on PostgreSQL and SQLite.
//!
//! A message moves `pending → sent`, or `pending → dead` after its last
//! try; a replay moves `dead → pending` with a fresh set of tries. A sender
//! takes a message by a conditional `UPDATE` of its lease, so two senders
//! (two replicas, or a replica and a slow predecessor) never send one
//! message at the same time.

use contracts::events::{OrderCreatedV1, OrderLineV1};
use kit::db::{Db, Tx, now_millis};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::templates::Kind;

/// A message an event asks for.
pub struct NewMessage<'a> {
    /// Unique per thing a message is about: a repeat is not queued.
    pub dedupe_key: String,
    pub kind: Kind,
    /// Empty when the event does not name the user (found from the order).
    pub user_id: String,
    pub order_id: String,
    pub facts: serde_json::Value,
    pub source: &'a kit::cloudevents::CloudEvent,
    pub max_attempts: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Pending,
    Sent,
    Dead,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Sent => "sent",
            Status::Dead => "dead",
        }
    }

    fn parse(raw: &str) -> Result<Status, sqlx::Error> {
        match raw {
            "pending" => Ok(Status::Pending),
            "sent" => Ok(Status::Sent),
            "dead" => Ok(Status::Dead),
            other => Err(sqlx::Error::Decode(
                format!("unknown message status {other}").into(),
            )),
        }
    }
}

/// A message as stored.
#[derive(Debug, Clone)]
pub struct Message {
    pub id: String,
    pub kind: Kind,
    pub user_id: String,
    pub order_id: String,
    pub facts: serde_json::Value,
    pub source_event_type: String,
    pub source_event_id: String,
    pub source_event: serde_json::Value,
    pub to_address: String,
    pub subject: String,
    pub text_body: String,
    pub html_body: String,
    pub status: Status,
    pub attempts: i64,
    pub give_up_after: i64,
    pub last_error: String,
    pub next_attempt_at: i64,
    pub created_at: i64,
    pub sent_at: i64,
}

impl Message {
    /// Rendered already: what is sent (again) is what the mailbox shows.
    pub fn is_rendered(&self) -> bool {
        !self.to_address.is_empty()
    }
}

fn message_from(row: &AnyRow) -> Result<Message, sqlx::Error> {
    let json = |column: &str| -> Result<serde_json::Value, sqlx::Error> {
        let raw: String = row.try_get(column)?;
        serde_json::from_str(&raw).map_err(|e| sqlx::Error::Decode(Box::new(e)))
    };
    let kind: String = row.try_get("kind")?;
    Ok(Message {
        id: row.try_get("id")?,
        kind: Kind::parse(&kind)
            .ok_or_else(|| sqlx::Error::Decode(format!("unknown message kind {kind}").into()))?,
        user_id: row.try_get("user_id")?,
        order_id: row.try_get("order_id")?,
        facts: json("facts")?,
        source_event_type: row.try_get("source_event_type")?,
        source_event_id: row.try_get("source_event_id")?,
        source_event: json("source_event")?,
        to_address: row.try_get("to_address")?,
        subject: row.try_get("subject")?,
        text_body: row.try_get("text_body")?,
        html_body: row.try_get("html_body")?,
        status: Status::parse(&row.try_get::<String, _>("status")?)?,
        attempts: row.try_get("attempts")?,
        give_up_after: row.try_get("give_up_after")?,
        last_error: row.try_get("last_error")?,
        next_attempt_at: row.try_get("next_attempt_at")?,
        created_at: row.try_get("created_at")?,
        sent_at: row.try_get("sent_at")?,
    })
}

const MESSAGE_COLUMNS: &str = "id, kind, user_id, order_id, facts, source_event_type, \
    source_event_id, source_event, to_address, subject, text_body, html_body, status, \
    attempts, give_up_after, last_error, next_attempt_at, created_at, sent_at";

pub async fn remember_recipient(
    tx: &mut Tx,
    user_id: &str,
    email: &str,
    display_name: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO recipients (user_id, email, display_name) VALUES ($1, $2, $3)
         ON CONFLICT (user_id) DO UPDATE SET email = excluded.email,
             display_name = excluded.display_name",
    )
    .bind(user_id)
    .bind(email)
    .bind(display_name)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn remember_product(tx: &mut Tx, sku: &str, name: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO product_names (sku, name) VALUES ($1, $2)
         ON CONFLICT (sku) DO UPDATE SET name = excluded.name",
    )
    .bind(sku)
    .bind(name)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn remember_order(tx: &mut Tx, order: &OrderCreatedV1) -> Result<(), sqlx::Error> {
    let lines =
        serde_json::to_string(&order.lines).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    sqlx::query(
        "INSERT INTO order_summaries (order_id, user_id, lines, total_minor, currency, created_at)
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (order_id) DO NOTHING",
    )
    .bind(&order.order_id)
    .bind(&order.user_id)
    .bind(lines)
    .bind(order.total.amount_minor)
    .bind(&order.total.currency)
    .bind(order.created_at.timestamp_millis())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Queues `message` unless one with its dedupe key exists; `true` if queued.
pub async fn queue_message(tx: &mut Tx, message: &NewMessage<'_>) -> Result<bool, sqlx::Error> {
    let facts =
        serde_json::to_string(&message.facts).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    let source = message.source.to_structured_json().to_string();
    let now = now_millis();
    let inserted = sqlx::query(
        "INSERT INTO messages (id, dedupe_key, kind, user_id, order_id, facts,
             source_event_type, source_event_id, source_event, status, give_up_after,
             next_attempt_at, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'pending', $10, $11, $11)
         ON CONFLICT (dedupe_key) DO NOTHING",
    )
    .bind(kit::new_id("msg"))
    .bind(&message.dedupe_key)
    .bind(message.kind.as_str())
    .bind(&message.user_id)
    .bind(&message.order_id)
    .bind(facts)
    .bind(&message.source.event_type)
    .bind(&message.source.id)
    .bind(source)
    .bind(i64::from(message.max_attempts))
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// Ids of pending messages whose time has come and that nobody holds.
pub async fn due(db: &Db, now: i64, limit: i64) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT id FROM messages
         WHERE status = 'pending' AND next_attempt_at <= $1 AND lease_until <= $1
         ORDER BY next_attempt_at LIMIT $2",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(db.pool())
    .await
}

/// Takes `id` for one try until `now + lease_ms`, or `None` if another
/// sender has it or it is no longer pending.
pub async fn claim(
    db: &Db,
    id: &str,
    now: i64,
    lease_ms: i64,
) -> Result<Option<Message>, sqlx::Error> {
    // The message comes back with the claim: one statement, and what is
    // read is exactly the row the lease was taken on.
    let taken = sqlx::query(&format!(
        "UPDATE messages SET lease_until = $3
         WHERE id = $1 AND status = 'pending' AND lease_until <= $2
         RETURNING {MESSAGE_COLUMNS}"
    ))
    .bind(id)
    .bind(now)
    .bind(now + lease_ms)
    .fetch_optional(db.pool())
    .await?;
    taken.as_ref().map(message_from).transpose()
}

pub async fn message(db: &Db, id: &str) -> Result<Option<Message>, sqlx::Error> {
    let row = sqlx::query(&format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(db.pool())
    .await?;
    row.as_ref().map(message_from).transpose()
}

/// Who a user is: (email, display name).
pub async fn recipient(db: &Db, user_id: &str) -> Result<Option<(String, String)>, sqlx::Error> {
    sqlx::query_as("SELECT email, display_name FROM recipients WHERE user_id = $1")
        .bind(user_id)
        .fetch_optional(db.pool())
        .await
}

/// What an order held when it was placed.
#[derive(Debug, Clone)]
pub struct OrderSummary {
    pub user_id: String,
    pub lines: Vec<OrderLineV1>,
    pub total_minor: i64,
    pub currency: String,
}

pub async fn order_summary(db: &Db, order_id: &str) -> Result<Option<OrderSummary>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT user_id, lines, total_minor, currency FROM order_summaries WHERE order_id = $1",
    )
    .bind(order_id)
    .fetch_optional(db.pool())
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let lines: String = row.try_get("lines")?;
    Ok(Some(OrderSummary {
        user_id: row.try_get("user_id")?,
        lines: serde_json::from_str(&lines).map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
        total_minor: row.try_get("total_minor")?,
        currency: row.try_get("currency")?,
    }))
}

pub async fn product_name(db: &Db, sku: &str) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT name FROM product_names WHERE sku = $1")
        .bind(sku)
        .fetch_optional(db.pool())
        .await
}

/// What a message says, once written.
pub struct Rendered<'a> {
    pub user_id: &'a str,
    pub to: &'a str,
    pub subject: &'a str,
    pub text: &'a str,
    pub html: &'a str,
}

/// Stores what a message says, in the transaction that records the try
/// it was written for: one commit per try, and the copy kept is the one
/// that try sent.
async fn save_rendered(tx: &mut Tx, id: &str, rendered: &Rendered<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE messages SET user_id = $2, to_address = $3, subject = $4, text_body = $5,
             html_body = $6
         WHERE id = $1",
    )
    .bind(id)
    .bind(rendered.user_id)
    .bind(rendered.to)
    .bind(rendered.subject)
    .bind(rendered.text)
    .bind(rendered.html)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn record_attempt(
    tx: &mut Tx,
    id: &str,
    attempt: i64,
    at: i64,
    error: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO delivery_attempts (message_id, attempt, at, outcome, error)
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (message_id, attempt) DO NOTHING",
    )
    .bind(id)
    .bind(attempt)
    .bind(at)
    .bind(if error.is_some() { "failed" } else { "sent" })
    .bind(error.unwrap_or_default())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The try numbered `attempt` delivered the message; `rendered` is what
/// it said when this try was the one that wrote it.
pub async fn mark_sent(
    db: &Db,
    id: &str,
    attempt: i64,
    rendered: Option<&Rendered<'_>>,
) -> Result<(), sqlx::Error> {
    let now = now_millis();
    let mut tx = db.begin().await?;
    if let Some(rendered) = rendered {
        save_rendered(&mut tx, id, rendered).await?;
    }
    record_attempt(&mut tx, id, attempt, now, None).await?;
    sqlx::query(
        "UPDATE messages SET status = 'sent', attempts = $2, sent_at = $3, last_error = '',
             lease_until = 0
         WHERE id = $1",
    )
    .bind(id)
    .bind(attempt)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

/// What happens after a failed try.
pub enum AfterFailure {
    /// Try again at this time (Unix milliseconds).
    RetryAt(i64),
    /// That was the last try: a dead letter, published in the same
    /// transaction through the outbox.
    Dead(kit::cloudevents::CloudEvent),
}

/// The try numbered `attempt` failed with `error`; `rendered` as for
/// [`mark_sent`].
pub async fn mark_failed(
    db: &Db,
    id: &str,
    attempt: i64,
    error: &str,
    after: &AfterFailure,
    rendered: Option<&Rendered<'_>>,
) -> Result<(), sqlx::Error> {
    let now = now_millis();
    let mut tx = db.begin().await?;
    if let Some(rendered) = rendered {
        save_rendered(&mut tx, id, rendered).await?;
    }
    record_attempt(&mut tx, id, attempt, now, Some(error)).await?;
    let (status, next) = match after {
        AfterFailure::RetryAt(at) => ("pending", *at),
        AfterFailure::Dead(dead_letter) => {
            kit::outbox::enqueue(&mut tx, contracts::topics::NOTIFICATION_DLQ, dead_letter).await?;
            ("dead", now)
        }
    };
    sqlx::query(
        "UPDATE messages SET status = $2, attempts = $3, last_error = $4, next_attempt_at = $5,
             lease_until = 0
         WHERE id = $1",
    )
    .bind(id)
    .bind(status)
    .bind(attempt)
    .bind(error)
    .bind(next)
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

/// Which messages to list.
#[derive(Debug, Default)]
pub struct Filter {
    pub user_id: Option<String>,
    pub kind: Option<String>,
    pub status: Option<Status>,
    pub limit: i64,
}

/// Messages, newest first.
pub async fn list(db: &Db, filter: &Filter) -> Result<Vec<Message>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages
         WHERE ($1 = '' OR user_id = $1) AND ($2 = '' OR kind = $2) AND ($3 = '' OR status = $3)
         ORDER BY created_at DESC, id DESC LIMIT $4"
    ))
    .bind(filter.user_id.as_deref().unwrap_or_default())
    .bind(filter.kind.as_deref().unwrap_or_default())
    .bind(filter.status.map(Status::as_str).unwrap_or_default())
    .bind(filter.limit)
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(message_from).collect()
}

/// A try, as the mailbox shows it.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub attempt: i64,
    pub at: i64,
    pub outcome: String,
    pub error: String,
}

pub async fn attempts(db: &Db, id: &str) -> Result<Vec<AttemptRecord>, sqlx::Error> {
    let rows: Vec<(i64, i64, String, String)> = sqlx::query_as(
        "SELECT attempt, at, outcome, error FROM delivery_attempts
         WHERE message_id = $1 ORDER BY attempt",
    )
    .bind(id)
    .fetch_all(db.pool())
    .await?;
    Ok(rows
        .into_iter()
        .map(|(attempt, at, outcome, error)| AttemptRecord {
            attempt,
            at,
            outcome,
            error,
        })
        .collect())
}

/// What a replay did to one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayOutcome {
    /// Pending again, with a fresh set of tries, due now.
    Queued,
    /// It was delivered: nothing is sent again.
    AlreadySent,
    /// It is still being tried.
    NotDead,
    NotFound,
}

impl ReplayOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            ReplayOutcome::Queued => "queued",
            ReplayOutcome::AlreadySent => "already_sent",
            ReplayOutcome::NotDead => "not_dead",
            ReplayOutcome::NotFound => "not_found",
        }
    }
}

/// Sends a dead letter again. The state change is one conditional
/// `UPDATE`, so two replays at once queue it once, and a message that was
/// delivered (by an earlier replay, say) is never queued again.
pub async fn replay(db: &Db, id: &str, max_attempts: u32) -> Result<ReplayOutcome, sqlx::Error> {
    let queued = sqlx::query(
        "UPDATE messages SET status = 'pending', give_up_after = attempts + $2,
             next_attempt_at = $3, lease_until = 0
         WHERE id = $1 AND status = 'dead'",
    )
    .bind(id)
    .bind(i64::from(max_attempts))
    .bind(now_millis())
    .execute(db.pool())
    .await?;
    if queued.rows_affected() == 1 {
        return Ok(ReplayOutcome::Queued);
    }
    let status: Option<String> = sqlx::query_scalar("SELECT status FROM messages WHERE id = $1")
        .bind(id)
        .fetch_optional(db.pool())
        .await?;
    Ok(match status.as_deref() {
        None => ReplayOutcome::NotFound,
        Some("sent") => ReplayOutcome::AlreadySent,
        Some(_) => ReplayOutcome::NotDead,
    })
}

/// Ids of every dead letter, oldest first.
pub async fn dead_ids(db: &Db) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT id FROM messages WHERE status = 'dead' ORDER BY created_at, id")
        .fetch_all(db.pool())
        .await
}

/// Messages by status, for the gauges.
pub async fn counts(db: &Db) -> Result<Vec<(String, i64)>, sqlx::Error> {
    sqlx::query_as("SELECT status, COUNT(*) FROM messages GROUP BY status")
        .fetch_all(db.pool())
        .await
}
