//! The notifications database: what messages need to know, the mailbox,
//! delivery attempts. Portable SQL, the same on PostgreSQL and SQLite.
//!
//! A message moves `pending → sent`, or `pending → dead` after its last
//! try; a replay moves `dead → pending` with a fresh set of tries. A sender
//! takes a message by a conditional `UPDATE` of its lease, so two senders
//! (two replicas, or a replica and a slow predecessor) never send one
//! message at the same time.
//!
//! Reads outside a transaction go through [`Db::reader`]: on SQLite the
//! one writer connection is what the consumer's batches wait for, and the
//! sender's reads (what is due, the order, the names) need no lock. A stale
//! list of what is due costs nothing: the claim is decided on the writer.

use std::collections::HashMap;

use contracts::events::{OrderCreatedV1, OrderLineV1};
use kit::db::{Db, Tx, both_in_one_round_trip, now_millis};
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
    .fetch_all(&mut *db.read().await?)
    .await
}

/// The placeholders of an `IN` list of `len` values bound from `$first`
/// on, and how many to bind: the list is padded to a power of two, the
/// caller binding its last value again in the extra places (as kit's
/// inbox does), so a few statement texts cover every size and stay in
/// each connection's prepared-statement cache.
fn padded_list(len: usize, first: usize) -> (String, usize) {
    let slots = len.next_power_of_two();
    let list: Vec<String> = (first..first + slots).map(|i| format!("${i}")).collect();
    (list.join(", "), slots)
}

/// Takes those of `ids` that are still pending and held by nobody, for
/// one try each until `now + lease_ms`, in one statement; returns the
/// messages taken (an id another sender holds, or no longer pending, is
/// left out). What is returned is exactly the row each lease was taken on.
pub async fn claim(
    db: &Db,
    ids: &[String],
    now: i64,
    lease_ms: i64,
) -> Result<Vec<Message>, sqlx::Error> {
    let Some(last) = ids.last() else {
        return Ok(Vec::new());
    };
    let (list, slots) = padded_list(ids.len(), 3);
    let sql = format!(
        "UPDATE messages SET lease_until = $2
         WHERE id IN ({list}) AND status = 'pending' AND lease_until <= $1
         RETURNING {MESSAGE_COLUMNS}"
    );
    let mut query = sqlx::query(&sql).bind(now).bind(now + lease_ms);
    for i in 0..slots {
        query = query.bind(ids.get(i).unwrap_or(last));
    }
    let taken = query.fetch_all(&mut *db.write().await?).await?;
    taken.iter().map(message_from).collect()
}

pub async fn message(db: &Db, id: &str) -> Result<Option<Message>, sqlx::Error> {
    let row = sqlx::query(&format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(&mut *db.read().await?)
    .await?;
    row.as_ref().map(message_from).transpose()
}

/// Who a user is: (email, display name).
pub async fn recipient(db: &Db, user_id: &str) -> Result<Option<(String, String)>, sqlx::Error> {
    sqlx::query_as("SELECT email, display_name FROM recipients WHERE user_id = $1")
        .bind(user_id)
        .fetch_optional(&mut *db.read().await?)
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

/// The order a message is about, and who it goes to (email, display
/// name), in one statement: the user `user_id`, or the order's own when
/// `user_id` is empty. `None` if the order is not known yet.
pub async fn order_and_recipient(
    db: &Db,
    order_id: &str,
    user_id: &str,
) -> Result<Option<(OrderSummary, Option<(String, String)>)>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT o.user_id, o.lines, o.total_minor, o.currency, r.email, r.display_name
         FROM order_summaries o
         LEFT JOIN recipients r ON r.user_id = COALESCE(NULLIF($2, ''), o.user_id)
         WHERE o.order_id = $1",
    )
    .bind(order_id)
    .bind(user_id)
    .fetch_optional(&mut *db.read().await?)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let lines: String = row.try_get("lines")?;
    let order = OrderSummary {
        user_id: row.try_get("user_id")?,
        lines: serde_json::from_str(&lines).map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
        total_minor: row.try_get("total_minor")?,
        currency: row.try_get("currency")?,
    };
    let email: Option<String> = row.try_get("email")?;
    let display_name: Option<String> = row.try_get("display_name")?;
    Ok(Some((order, email.zip(display_name))))
}

/// The names of those of `skus` that are known, by SKU, in one statement.
pub async fn product_names(db: &Db, skus: &[&str]) -> Result<HashMap<String, String>, sqlx::Error> {
    let Some(last) = skus.last() else {
        return Ok(HashMap::new());
    };
    let (list, slots) = padded_list(skus.len(), 1);
    let sql = format!("SELECT sku, name FROM product_names WHERE sku IN ({list})");
    let mut query = sqlx::query_as::<_, (String, String)>(&sql);
    for i in 0..slots {
        query = query.bind(*skus.get(i).unwrap_or(last));
    }
    Ok(query
        .fetch_all(&mut *db.read().await?)
        .await?
        .into_iter()
        .collect())
}

/// What a message says, once written.
pub struct Rendered<'a> {
    pub user_id: &'a str,
    pub to: &'a str,
    pub subject: &'a str,
    pub text: &'a str,
    pub html: &'a str,
}

/// Where a try leaves its message.
struct AfterTry<'a> {
    status: Status,
    attempt: i64,
    error: &'a str,
    /// A new due time; `None` keeps the stored one.
    next_attempt_at: Option<i64>,
    /// When it was delivered; `None` keeps the stored one.
    sent_at: Option<i64>,
}

/// Records a try: its attempt row, and the message moved to where the try
/// left it with its lease dropped. The update also stores what the message
/// says when this try was the one that wrote it (`COALESCE` keeps the
/// stored copy otherwise): the copy kept is the one that try sent.
///
/// One round trip for both, as every try is two writes on the
/// notifications writer, and each statement is time it is held (on
/// PostgreSQL, a network round trip too): PostgreSQL inserts the attempt in a writing
/// `WITH` of the update, SQLite gets both as one text.
async fn record_try(
    tx: &mut Tx,
    id: &str,
    after: &AfterTry<'_>,
    rendered: Option<&Rendered<'_>>,
    at: i64,
) -> Result<(), sqlx::Error> {
    // A sent try's error is empty, as its message's last error is.
    let attempt = "INSERT INTO delivery_attempts (message_id, attempt, at, outcome, error)
         VALUES ($1, $3, $12, $13, $4) ON CONFLICT (message_id, attempt) DO NOTHING";
    let update = "UPDATE messages SET status = $2, attempts = $3, last_error = $4,
             next_attempt_at = COALESCE($5, next_attempt_at), sent_at = COALESCE($6, sent_at),
             lease_until = 0,
             user_id = COALESCE($7, user_id), to_address = COALESCE($8, to_address),
             subject = COALESCE($9, subject), text_body = COALESCE($10, text_body),
             html_body = COALESCE($11, html_body)
         WHERE id = $1";
    let sql = both_in_one_round_trip(tx.kind(), attempt, update);
    let outcome = if after.status == Status::Sent {
        "sent"
    } else {
        "failed"
    };
    sqlx::query(&sql)
        .bind(id)
        .bind(after.status.as_str())
        .bind(after.attempt)
        .bind(after.error)
        .bind(after.next_attempt_at)
        .bind(after.sent_at)
        .bind(rendered.map(|r| r.user_id))
        .bind(rendered.map(|r| r.to))
        .bind(rendered.map(|r| r.subject))
        .bind(rendered.map(|r| r.text))
        .bind(rendered.map(|r| r.html))
        .bind(at)
        .bind(outcome)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// What happens after a failed try.
pub enum AfterFailure {
    /// Try again at this time (Unix milliseconds).
    RetryAt(i64),
    /// That was the last try: a dead letter, published in the same
    /// transaction through the outbox.
    Dead(kit::cloudevents::CloudEvent),
}

/// How a try went.
pub enum TryOutcome {
    Sent,
    Failed { error: String, after: AfterFailure },
}

/// One try of one message, to record.
pub struct Try<'a> {
    pub message_id: &'a str,
    /// The try's number, counting every try the message has had.
    pub attempt: i64,
    /// What the message said, when this try was the one that wrote it.
    pub rendered: Option<Rendered<'a>>,
    pub outcome: TryOutcome,
}

/// Records a round of tries in one transaction: each try's attempt row and
/// where it leaves its message, and the dead letters of messages that ran
/// out of tries (through the outbox). One commit for the round, not one per
/// message; should it fail, every message of the round is tried again once
/// its lease runs out (delivery is at least once either way).
pub async fn record_tries(db: &Db, tries: &[Try<'_>]) -> Result<(), sqlx::Error> {
    if tries.is_empty() {
        return Ok(());
    }
    let now = now_millis();
    let mut tx = db.begin().await?;
    for done in tries {
        let id = done.message_id;
        let after = match &done.outcome {
            TryOutcome::Sent => AfterTry {
                status: Status::Sent,
                attempt: done.attempt,
                error: "",
                next_attempt_at: None,
                sent_at: Some(now),
            },
            TryOutcome::Failed { error, after } => {
                let (status, next) = match after {
                    AfterFailure::RetryAt(at) => (Status::Pending, *at),
                    AfterFailure::Dead(dead_letter) => {
                        kit::outbox::enqueue(
                            &mut tx,
                            contracts::topics::NOTIFICATION_DLQ,
                            dead_letter,
                        )?;
                        (Status::Dead, now)
                    }
                };
                AfterTry {
                    status,
                    attempt: done.attempt,
                    error,
                    next_attempt_at: Some(next),
                    sent_at: None,
                }
            }
        };
        record_try(&mut tx, id, &after, done.rendered.as_ref(), now).await?;
    }
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
    .fetch_all(&mut *db.write().await?)
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
    .fetch_all(&mut *db.write().await?)
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
    .execute(&mut *db.write().await?)
    .await?;
    if queued.rows_affected() == 1 {
        return Ok(ReplayOutcome::Queued);
    }
    let status: Option<String> = sqlx::query_scalar("SELECT status FROM messages WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *db.write().await?)
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
        .fetch_all(&mut *db.write().await?)
        .await
}

/// Messages by status, for the gauges.
pub async fn counts(db: &Db) -> Result<Vec<(String, i64)>, sqlx::Error> {
    sqlx::query_as("SELECT status, COUNT(*) FROM messages GROUP BY status")
        .fetch_all(&mut *db.write().await?)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A refused try and then a delivered one: each leaves its attempt row
    /// and its message where it should, and the copy written by the first
    /// try is the one kept.
    async fn each_try_leaves_its_attempt_and_its_message(db: Db) {
        let source = contracts::events::OrderPaidV1 {
            order_id: "ord_1".into(),
            user_id: "usr_1".into(),
            total: contracts::events::Money {
                amount_minor: 1_250,
                currency: "EUR".into(),
            },
            paid_at: chrono::Utc::now(),
            change: None,
        };
        let source = contracts::Event::to_cloud_event(&source, "/kart/test", None);
        let mut tx = db.begin().await.expect("a transaction");
        let queued = NewMessage {
            dedupe_key: "order_confirmed:ord_1".into(),
            kind: Kind::OrderConfirmed,
            user_id: "usr_1".into(),
            order_id: "ord_1".into(),
            facts: serde_json::json!({}),
            source: &source,
            max_attempts: 5,
        };
        assert!(queue_message(&mut tx, &queued).await.expect("queued"));
        tx.commit().await.expect("committed");
        let id: String = sqlx::query_scalar("SELECT id FROM messages")
            .fetch_one(&mut *db.write().await.expect("a connection"))
            .await
            .expect("the message");

        let rendered = Rendered {
            user_id: "usr_1",
            to: "ada@example.com",
            subject: "Your order",
            text: "Thanks",
            html: "<p>Thanks</p>",
        };
        let tries = [
            Try {
                message_id: &id,
                attempt: 1,
                rendered: Some(rendered),
                outcome: TryOutcome::Failed {
                    error: "451 busy".into(),
                    after: AfterFailure::RetryAt(0),
                },
            },
            Try {
                message_id: &id,
                attempt: 2,
                rendered: None,
                outcome: TryOutcome::Sent,
            },
        ];
        for (done, expected_status) in tries.iter().zip([Status::Pending, Status::Sent]) {
            assert_eq!(
                claim(&db, std::slice::from_ref(&id), now_millis(), 60_000)
                    .await
                    .expect("claimed")
                    .len(),
                1
            );
            record_tries(&db, std::slice::from_ref(done))
                .await
                .expect("recorded");
            let stored = message(&db, &id).await.expect("read").expect("the message");
            assert_eq!(
                (stored.status, stored.attempts),
                (expected_status, done.attempt)
            );
            assert_eq!(stored.subject, "Your order", "the first try's copy is kept");
        }
        let stored = message(&db, &id).await.expect("read").expect("the message");
        assert_eq!(stored.last_error, "");
        assert!(stored.sent_at > 0);
        let recorded: Vec<(i64, String, String)> = attempts(&db, &id)
            .await
            .expect("the attempts")
            .into_iter()
            .map(|a| (a.attempt, a.outcome, a.error))
            .collect();
        assert_eq!(
            recorded,
            [
                (1, "failed".to_owned(), "451 busy".to_owned()),
                (2, "sent".to_owned(), String::new())
            ]
        );
    }

    #[tokio::test]
    async fn each_try_leaves_its_attempt_and_its_message_on_sqlite() {
        let dir = tempfile::tempdir().expect("a directory");
        let db = kit::testing::sqlite_db(dir.path()).await;
        let db = kit::testing::migrated(db, "notifications", crate::MIGRATIONS).await;
        each_try_leaves_its_attempt_and_its_message(db).await;
    }

    #[tokio::test]
    async fn each_try_leaves_its_attempt_and_its_message_on_postgres() {
        let db = kit::testing::postgres_db().await;
        let db = kit::testing::migrated(db, "notifications", crate::MIGRATIONS).await;
        each_try_leaves_its_attempt_and_its_message(db).await;
    }

    #[test]
    fn in_lists_are_padded_to_a_power_of_two_from_their_first_place() {
        assert_eq!(padded_list(1, 1), ("$1".to_owned(), 1));
        assert_eq!(padded_list(3, 3), ("$3, $4, $5, $6".to_owned(), 4));
        assert_eq!(padded_list(8, 2).1, 8);
        assert_eq!(padded_list(9, 1).1, 16);
    }
}
