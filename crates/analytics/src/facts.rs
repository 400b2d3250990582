//! From events to facts: what the `analytics` consumer group writes for
//! each event it reads. Every write is keyed by what it is about and keeps
//! the first value it saw, so applying an event twice changes nothing.

use async_trait::async_trait;
use contracts::Event;
use contracts::events::{
    OrderCancelledV1, OrderCreatedV1, OrderFailedV1, OrderPaidV1, PaymentCapturedV1,
    PaymentFailedV1, RefundIssuedV1,
};
use kit::cloudevents::CloudEvent;
use kit::consumer::{Handler, HandlerError};
use kit::db::{MAX_ROWS_PER_STATEMENT, Tx, both_in_one_round_trip, padded_values, values_columns};

fn reject(error: impl std::fmt::Display) -> HandlerError {
    HandlerError::Reject(anyhow::anyhow!("{error}"))
}

/// The Unix minute of a Unix millisecond.
pub fn minute_of(millis: i64) -> i64 {
    millis.div_euclid(60_000)
}

/// The handler of the `analytics` consumer group (every domain topic).
pub struct Facts;

#[async_trait]
impl Handler for Facts {
    async fn handle(&self, tx: &mut Tx, event: &CloudEvent) -> Result<(), HandlerError> {
        match event.event_type.as_str() {
            OrderCreatedV1::TYPE => {
                let order = OrderCreatedV1::decode(event).map_err(reject)?;
                order_created(tx, &order).await?;
            }
            OrderPaidV1::TYPE => {
                let paid = OrderPaidV1::decode(event).map_err(reject)?;
                sqlx::query(
                    "INSERT INTO order_facts (order_id, currency, total_minor, paid_at)
                     VALUES ($1, $2, $3, $4)
                     ON CONFLICT (order_id) DO UPDATE SET
                         paid_at = COALESCE(order_facts.paid_at, excluded.paid_at),
                         currency = excluded.currency,
                         total_minor = excluded.total_minor",
                )
                .bind(&paid.order_id)
                .bind(&paid.total.currency)
                .bind(paid.total.amount_minor)
                .bind(paid.paid_at.timestamp_millis())
                .execute(&mut **tx)
                .await?;
            }
            OrderFailedV1::TYPE => {
                let failed = OrderFailedV1::decode(event).map_err(reject)?;
                sqlx::query(
                    "INSERT INTO order_facts (order_id, failed_at, failure_code)
                     VALUES ($1, $2, $3)
                     ON CONFLICT (order_id) DO UPDATE SET
                         failed_at = COALESCE(order_facts.failed_at, excluded.failed_at),
                         failure_code = CASE WHEN order_facts.failed_at IS NULL
                             THEN excluded.failure_code ELSE order_facts.failure_code END",
                )
                .bind(&failed.order_id)
                .bind(failed.failed_at.timestamp_millis())
                .bind(&failed.code)
                .execute(&mut **tx)
                .await?;
            }
            OrderCancelledV1::TYPE => {
                let cancelled = OrderCancelledV1::decode(event).map_err(reject)?;
                sqlx::query(
                    "INSERT INTO order_facts (order_id, cancelled_at) VALUES ($1, $2)
                     ON CONFLICT (order_id) DO UPDATE SET
                         cancelled_at = COALESCE(order_facts.cancelled_at, excluded.cancelled_at)",
                )
                .bind(&cancelled.order_id)
                .bind(cancelled.cancelled_at.timestamp_millis())
                .execute(&mut **tx)
                .await?;
            }
            PaymentCapturedV1::TYPE => {
                let captured = PaymentCapturedV1::decode(event).map_err(reject)?;
                payment(
                    tx,
                    &captured.payment_id,
                    "captured",
                    &captured.order_id,
                    captured.captured_at.timestamp_millis(),
                )
                .await?;
            }
            PaymentFailedV1::TYPE => {
                let failed = PaymentFailedV1::decode(event).map_err(reject)?;
                // The payload has no time of its own; the event's is when
                // the failure was recorded.
                payment(
                    tx,
                    &failed.payment_id,
                    "failed",
                    &failed.order_id,
                    event.time.timestamp_millis(),
                )
                .await?;
            }
            RefundIssuedV1::TYPE => {
                let refund = RefundIssuedV1::decode(event).map_err(reject)?;
                sqlx::query(
                    "INSERT INTO refund_facts (refund_id, order_id, amount_minor, currency, at)
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (refund_id) DO NOTHING",
                )
                .bind(&refund.refund_id)
                .bind(&refund.order_id)
                .bind(refund.amount.amount_minor)
                .bind(&refund.amount.currency)
                .bind(refund.issued_at.timestamp_millis())
                .execute(&mut **tx)
                .await?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Counts the transaction's events per minute and type, in one
    /// statement per [`MAX_ROWS_PER_STATEMENT`] pairs: a batch is mostly a
    /// few types within one minute, and a statement per pair was more than
    /// one statement per order on the analytics writer.
    async fn handled_all(&self, tx: &mut Tx, events: &[&CloudEvent]) -> Result<(), sqlx::Error> {
        let counts: Vec<((i64, &str), i64)> =
            counts_by_minute_and_type(events).into_iter().collect();
        for chunk in counts.chunks(MAX_ROWS_PER_STATEMENT) {
            // Each pair once (the counts are a map), so no row is updated
            // twice by one statement, which PostgreSQL refuses.
            let (values, padded) = padded_values(chunk.len(), 3);
            let sql = format!(
                "INSERT INTO event_counts (minute, event_type, count)
                 SELECT {} FROM (VALUES {values}) AS counted WHERE column1 IS NOT NULL
                 ON CONFLICT (minute, event_type) DO UPDATE
                     SET count = event_counts.count + excluded.count",
                values_columns(1, 3)
            );
            let mut query = sqlx::query(&sql);
            let rows = chunk.iter().map(Some).chain(std::iter::repeat(None));
            for row in rows.take(padded) {
                query = query
                    .bind(row.map(|((minute, _), _)| *minute))
                    .bind(row.map(|((_, event_type), _)| *event_type))
                    .bind(row.map(|(_, count)| *count));
            }
            query.execute(&mut **tx).await?;
        }
        Ok(())
    }
}

/// How many of `events` fall in each (Unix minute, event type).
fn counts_by_minute_and_type<'a>(
    events: &[&'a CloudEvent],
) -> std::collections::BTreeMap<(i64, &'a str), i64> {
    let mut counts = std::collections::BTreeMap::new();
    for event in events {
        *counts
            .entry((
                minute_of(event.time.timestamp_millis()),
                event.event_type.as_str(),
            ))
            .or_insert(0) += 1;
    }
    counts
}

/// The order's facts and its lines', in one round trip for an order of up
/// to [`MAX_ROWS_PER_STATEMENT`] lines (every order the storefront makes):
/// a statement per line was the analytics writer's most frequent one.
/// PostgreSQL writes the order's row in a writing `WITH` of the lines'
/// insert; SQLite gets both as one text, run in one call.
async fn order_created(tx: &mut Tx, order: &OrderCreatedV1) -> Result<(), sqlx::Error> {
    let lines: Vec<(i64, &contracts::events::OrderLineV1)> = order
        .lines
        .iter()
        .enumerate()
        .map(|(line_no, line)| (i64::try_from(line_no).unwrap_or(i64::MAX), line))
        .collect();
    let mut chunks: Vec<&[(i64, &contracts::events::OrderLineV1)]> =
        lines.chunks(MAX_ROWS_PER_STATEMENT).collect();
    if chunks.is_empty() {
        chunks.push(&[]);
    }
    for (place, chunk) in chunks.into_iter().enumerate() {
        let with_order = place == 0;
        let (values, padded) = padded_values(chunk.len(), 5);
        // The lines are `$1 …`, five to a line; the order's values follow.
        let first = 5 * padded;
        let (id, currency, total, created) = (first + 1, first + 2, first + 3, first + 4);
        let keep_lines = format!(
            "INSERT INTO order_line_facts (order_id, line_no, sku, quantity, unit_minor, currency)
             SELECT ${id}, {} FROM (VALUES {values}) AS line WHERE column1 IS NOT NULL
             ON CONFLICT (order_id, line_no) DO NOTHING",
            values_columns(1, 5)
        );
        let keep_order = format!(
            "INSERT INTO order_facts (order_id, currency, total_minor, created_at)
             VALUES (${id}, ${currency}, ${total}, ${created})
             ON CONFLICT (order_id) DO UPDATE SET
                 created_at = COALESCE(order_facts.created_at, excluded.created_at),
                 currency = excluded.currency,
                 total_minor = excluded.total_minor"
        );
        let sql = if with_order {
            both_in_one_round_trip(tx.kind(), &keep_order, &keep_lines)
        } else {
            keep_lines
        };
        let mut query = sqlx::query(&sql);
        let rows = chunk.iter().map(Some).chain(std::iter::repeat(None));
        for row in rows.take(padded) {
            query = query
                .bind(row.map(|(line_no, _)| *line_no))
                .bind(row.map(|(_, line)| line.sku.as_str()))
                .bind(row.map(|(_, line)| i64::from(line.quantity)))
                .bind(row.map(|(_, line)| line.unit_price.amount_minor))
                .bind(row.map(|(_, line)| line.unit_price.currency.as_str()));
        }
        query = query.bind(&order.order_id);
        if with_order {
            query = query
                .bind(&order.total.currency)
                .bind(order.total.amount_minor)
                .bind(order.created_at.timestamp_millis());
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

async fn payment(
    tx: &mut Tx,
    payment_id: &str,
    outcome: &str,
    order_id: &str,
    at: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO payment_facts (payment_id, outcome, order_id, at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (payment_id, outcome) DO NOTHING",
    )
    .bind(payment_id)
    .bind(outcome)
    .bind(order_id)
    .bind(at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Forgets every fact, in `tx` (a rebuild, with the group's rewind).
pub async fn forget_all(tx: &mut Tx) -> Result<(), sqlx::Error> {
    for table in [
        "order_facts",
        "order_line_facts",
        "payment_facts",
        "refund_facts",
        "event_counts",
    ] {
        sqlx::query(&format!("DELETE FROM {table}"))
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(event_type: &str, at: &str) -> CloudEvent {
        CloudEvent {
            id: kit::new_id("evt"),
            event_type: event_type.to_owned(),
            source: "/kart/test".into(),
            subject: "ord_1".into(),
            time: at.parse().expect("a time"),
            traceparent: None,
            data: b"{}".to_vec(),
        }
    }

    async fn counted(db: &kit::Db) -> Vec<(i64, String, i64)> {
        sqlx::query_as(
            "SELECT minute, event_type, count FROM event_counts ORDER BY minute, event_type",
        )
        .fetch_all(&mut *db.write().await.expect("a connection"))
        .await
        .expect("the counts")
    }

    /// Two batches' counts add up, per minute and type, whichever pairs
    /// each batch had and however many (more than one statement takes).
    async fn batches_add_to_the_stored_counts(db: kit::Db) {
        let first = [
            event("kart.order.created.v1", "2026-12-01T10:00:01Z"),
            event("kart.order.paid.v1", "2026-12-01T10:00:02Z"),
            event("kart.order.created.v1", "2026-12-01T10:00:59Z"),
        ];
        // 70 minutes of one type each, then a pair the first batch had.
        let mut second: Vec<CloudEvent> = (0..70)
            .map(|m| {
                let at = chrono::DateTime::parse_from_rfc3339("2026-12-01T11:00:00Z")
                    .expect("a time")
                    + chrono::Duration::minutes(m);
                event("kart.stock.reserved.v1", &at.to_rfc3339())
            })
            .collect();
        second.push(event("kart.order.created.v1", "2026-12-01T10:00:30Z"));
        for batch in [&first[..], &second[..]] {
            let refs: Vec<&CloudEvent> = batch.iter().collect();
            let mut tx = db.begin().await.expect("a transaction");
            Facts.handled_all(&mut tx, &refs).await.expect("counted");
            tx.commit().await.expect("committed");
        }
        let ten = minute_of(
            "2026-12-01T10:00:00Z"
                .parse::<chrono::DateTime<chrono::Utc>>()
                .expect("a time")
                .timestamp_millis(),
        );
        let counts = counted(&db).await;
        assert_eq!(counts.len(), 72, "{counts:?}");
        assert_eq!(counts[0], (ten, "kart.order.created.v1".to_owned(), 3));
        assert_eq!(counts[1], (ten, "kart.order.paid.v1".to_owned(), 1));
        assert!(
            counts[2..]
                .iter()
                .enumerate()
                .all(
                    |(m, (minute, event_type, count))| *minute == ten + 60 + m as i64
                        && event_type == "kart.stock.reserved.v1"
                        && *count == 1
                ),
            "{counts:?}"
        );
    }

    #[tokio::test]
    async fn batches_add_to_the_stored_counts_on_sqlite() {
        let dir = tempfile::tempdir().expect("a directory");
        let db = kit::testing::sqlite_db(dir.path()).await;
        let db = kit::testing::migrated(db, "analytics", crate::MIGRATIONS).await;
        batches_add_to_the_stored_counts(db).await;
    }

    #[tokio::test]
    async fn batches_add_to_the_stored_counts_on_postgres() {
        let db = kit::testing::postgres_db().await;
        let db = kit::testing::migrated(db, "analytics", crate::MIGRATIONS).await;
        batches_add_to_the_stored_counts(db).await;
    }

    fn money(amount_minor: i64) -> contracts::events::Money {
        contracts::events::Money {
            amount_minor,
            currency: "EUR".into(),
        }
    }

    /// An order's facts and every one of its lines, however many (more
    /// than one statement takes), once however often the event comes, and
    /// beside what an event that overtook it recorded.
    async fn an_order_is_recorded_with_its_lines(db: kit::Db) {
        let at: chrono::DateTime<chrono::Utc> = "2026-12-01T10:00:00Z".parse().expect("a time");
        let lines: Vec<contracts::events::OrderLineV1> = (0..70)
            .map(|n| contracts::events::OrderLineV1 {
                sku: format!("SKU-{n:02}"),
                quantity: 1 + n % 3,
                unit_price: money(100 + i64::from(n)),
            })
            .collect();
        let created = OrderCreatedV1 {
            order_id: "ord_many".into(),
            user_id: "usr_1".into(),
            lines,
            total: money(9_999),
            payment: contracts::events::PaymentChoiceV1::Checkout,
            created_at: at,
        };
        let paid = OrderPaidV1 {
            order_id: "ord_many".into(),
            user_id: "usr_1".into(),
            total: money(9_999),
            paid_at: at + chrono::Duration::seconds(1),
            change: None,
        };
        let events = [
            paid.to_cloud_event("/kart/test", None),
            created.to_cloud_event("/kart/test", None),
            created.to_cloud_event("/kart/test", None),
        ];
        for event in &events {
            let mut tx = db.begin().await.expect("a transaction");
            Facts.handle(&mut tx, event).await.expect("recorded");
            tx.commit().await.expect("committed");
        }
        let order: (String, i64, Option<i64>, Option<i64>) = sqlx::query_as(
            "SELECT currency, total_minor, created_at, paid_at FROM order_facts WHERE order_id = 'ord_many'",
        )
        .fetch_one(&mut *db.write().await.expect("a connection"))
        .await
        .expect("the order's facts");
        assert_eq!(
            order,
            (
                "EUR".to_owned(),
                9_999,
                Some(at.timestamp_millis()),
                Some(at.timestamp_millis() + 1_000)
            )
        );
        let stored: Vec<(i64, String, i64, i64, String)> = sqlx::query_as(
            "SELECT line_no, sku, quantity, unit_minor, currency FROM order_line_facts
             WHERE order_id = 'ord_many' ORDER BY line_no",
        )
        .fetch_all(&mut *db.write().await.expect("a connection"))
        .await
        .expect("the lines");
        let expected: Vec<(i64, String, i64, i64, String)> = created
            .lines
            .iter()
            .enumerate()
            .map(|(n, line)| {
                (
                    n as i64,
                    line.sku.clone(),
                    i64::from(line.quantity),
                    line.unit_price.amount_minor,
                    "EUR".to_owned(),
                )
            })
            .collect();
        assert_eq!(stored, expected);
    }

    #[tokio::test]
    async fn an_order_is_recorded_with_its_lines_on_sqlite() {
        let dir = tempfile::tempdir().expect("a directory");
        let db = kit::testing::sqlite_db(dir.path()).await;
        let db = kit::testing::migrated(db, "analytics", crate::MIGRATIONS).await;
        an_order_is_recorded_with_its_lines(db).await;
    }

    #[tokio::test]
    async fn an_order_is_recorded_with_its_lines_on_postgres() {
        let db = kit::testing::postgres_db().await;
        let db = kit::testing::migrated(db, "analytics", crate::MIGRATIONS).await;
        an_order_is_recorded_with_its_lines(db).await;
    }

    #[test]
    fn a_batch_is_counted_per_minute_and_type() {
        let events = [
            event("kart.order.created.v1", "2026-12-01T10:00:01Z"),
            event("kart.order.paid.v1", "2026-12-01T10:00:02Z"),
            event("kart.order.created.v1", "2026-12-01T10:00:59Z"),
            event("kart.order.created.v1", "2026-12-01T10:01:00Z"),
        ];
        let refs: Vec<&CloudEvent> = events.iter().collect();
        let minute = minute_of(
            "2026-12-01T10:00:00Z"
                .parse::<chrono::DateTime<chrono::Utc>>()
                .expect("a time")
                .timestamp_millis(),
        );
        let counts: Vec<((i64, &str), i64)> =
            counts_by_minute_and_type(&refs).into_iter().collect();
        assert_eq!(
            counts,
            [
                ((minute, "kart.order.created.v1"), 2),
                ((minute, "kart.order.paid.v1"), 1),
                ((minute + 1, "kart.order.created.v1"), 1),
            ]
        );
    }
}
