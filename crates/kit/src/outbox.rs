//! The transactional outbox.
//!
//! A service never publishes from a request handler. It writes the events a
//! state change causes into `kart_outbox` *in the same transaction* as the
//! change ([`enqueue`]), so both commit or neither does. A transaction's
//! events are written as it commits, all in one statement (or one per 64),
//! rather than one statement each while it runs. The [`Relay`] then
//! publishes outboxed rows in id order and deletes them once the bus has
//! acknowledged them.
//!
//! If the relay dies between publishing and deleting, the rows are published
//! again on restart: delivery is at-least-once, and consumers deduplicate by
//! event id (the inbox, [`crate::consumer`]). Order per key holds because
//! rows are read in id order, a batch is published in that order, and a
//! failed batch is retried whole before anything after it.
//!
//! With several replicas of a service on PostgreSQL, only one relays at a
//! time: the one holding a session-level advisory lock. Two relays would
//! interleave batches and break per-key order.

use std::sync::Arc;
use std::time::Duration;

use sqlx::Row;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::bus::{Headers, Record, SharedBus};
use crate::cloudevents::CloudEvent;
use crate::db::{
    Db, DbKind, MAX_ROWS_PER_STATEMENT, Tx, now_millis, padded_values, values_columns,
};
use crate::metrics::{Metrics, TopicLabels};

/// Writes an event into the outbox inside the caller's transaction: it is
/// written when `tx` commits, and only if it does.
pub fn enqueue(tx: &mut Tx, topic: &str, event: &CloudEvent) -> Result<(), sqlx::Error> {
    enqueue_record(tx, &event.to_record(topic))
}

/// Writes a raw record (a dead letter, say) into the outbox, as [`enqueue`].
pub fn enqueue_record(tx: &mut Tx, record: &Record) -> Result<(), sqlx::Error> {
    let headers =
        serde_json::to_string(&record.headers).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    let payload =
        String::from_utf8(record.payload.clone()).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    tx.enqueue(OutboxRow {
        topic: record.topic.clone(),
        key: record.key.clone(),
        headers,
        payload,
        created_at: now_millis(),
    });
    Ok(())
}

/// A `kart_outbox` row waiting for its transaction to commit.
#[derive(Debug)]
pub struct OutboxRow {
    topic: String,
    key: String,
    headers: String,
    payload: String,
    created_at: i64,
}

/// Writes `rows`, in their order, in one INSERT per
/// [`MAX_ROWS_PER_STATEMENT`], its rows padded as [`padded_values`] says.
///
/// Each INSERT's rows go in sorted by their place in its chunk, and the
/// chunks go in order, so the rows' ids, which the relay publishes in,
/// keep the order of `rows`.
///
/// `then`, a statement without arguments, goes in the same text as the
/// last INSERT, which only SQLite runs (in one call,
/// [`crate::db::both_in_one_round_trip`]): there it is
/// the transaction's `COMMIT`. It runs only if the INSERT succeeds.
pub(crate) async fn write_rows(
    conn: &mut sqlx::AnyConnection,
    rows: &[OutboxRow],
    then: Option<&str>,
) -> Result<(), sqlx::Error> {
    let chunks = rows.len().div_ceil(MAX_ROWS_PER_STATEMENT);
    for (number, chunk) in rows.chunks(MAX_ROWS_PER_STATEMENT).enumerate() {
        let (values, padded) = padded_values(chunk.len(), 6);
        let columns = values_columns(2, 6);
        let then = match then {
            Some(then) if number + 1 == chunks => format!("; {then}"),
            _ => String::new(),
        };
        let sql = format!(
            "INSERT INTO kart_outbox (topic, event_key, headers, payload, created_at)
             SELECT {columns}
             FROM (VALUES {values}) AS pending
             WHERE column2 IS NOT NULL
             ORDER BY column1{then}"
        );
        let mut query = sqlx::query(&sql);
        for (place, row) in chunk.iter().enumerate() {
            query = query
                .bind(i64::try_from(place).unwrap_or(i64::MAX))
                .bind(&row.topic)
                .bind(&row.key)
                .bind(&row.headers)
                .bind(&row.payload)
                .bind(row.created_at);
        }
        for _ in chunk.len()..padded {
            query = query
                .bind(None::<i64>)
                .bind(None::<String>)
                .bind(None::<String>)
                .bind(None::<String>)
                .bind(None::<String>)
                .bind(None::<i64>);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// How many outboxed events are waiting: for metrics and tests.
pub async fn pending(db: &Db) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COUNT(*) FROM kart_outbox")
        .fetch_one(&mut *db.write().await?)
        .await
}

/// Wakes the relay right after a commit, instead of at its next poll.
#[derive(Clone, Default)]
pub struct OutboxSignal(Arc<Notify>);

impl OutboxSignal {
    pub fn notify(&self) {
        self.0.notify_one();
    }
}

/// Publishes outboxed events to the bus.
pub struct Relay {
    pub db: Db,
    pub bus: SharedBus,
    pub metrics: Metrics,
    pub signal: OutboxSignal,
    pub batch_size: i64,
    /// Poll interval: catches rows written by other processes.
    pub poll_interval: Duration,
}

/// The advisory lock key that makes one relay per database the leader.
const RELAY_LOCK_KEY: i64 = 0x6b61_7274_6f75_7462; // "kartoutb"

impl Relay {
    pub fn new(db: Db, bus: SharedBus, metrics: Metrics, signal: OutboxSignal) -> Relay {
        Relay {
            db,
            bus,
            metrics,
            signal,
            batch_size: 500,
            poll_interval: Duration::from_millis(100),
        }
    }

    /// Relays until `shutdown`. Never skips a row: a failed batch is retried
    /// with backoff until it goes through.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(5));
        // On PostgreSQL, the connection holding the leader lock.
        let mut leader_conn = None;
        while !shutdown.is_cancelled() {
            if self.db.kind() == DbKind::Postgres && leader_conn.is_none() {
                match self.try_lead().await {
                    Ok(Some(conn)) => {
                        tracing::info!("outbox relay is the leader for this database");
                        leader_conn = Some(conn);
                    }
                    Ok(None) => {
                        sleep_or_cancel(Duration::from_secs(1), &shutdown).await;
                        continue;
                    }
                    Err(error) => {
                        tracing::warn!(%error, "outbox relay cannot take the leader lock");
                        sleep_or_cancel(backoff.next_delay(), &shutdown).await;
                        continue;
                    }
                }
            }
            match self.relay_batch().await {
                Ok(sent) => {
                    backoff.reset();
                    if sent < self.batch_size {
                        tokio::select! {
                            () = self.signal.0.notified() => {}
                            () = tokio::time::sleep(self.poll_interval) => {}
                            () = shutdown.cancelled() => {}
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "outbox relay batch failed; retrying");
                    // The lock's connection may be the broken part.
                    leader_conn = None;
                    sleep_or_cancel(backoff.next_delay(), &shutdown).await;
                }
            }
        }
        if let Some(conn) = leader_conn {
            // Hand over at once rather than when the server notices.
            let _ = sqlx::Connection::close(conn).await;
        }
    }

    /// Takes the leader lock on a connection of its own. The lock belongs to
    /// the database session, so the connection is detached from the pool:
    /// dropped (the relay stopped, crashed, or its task was aborted), it
    /// closes, and the lock goes with it. Were it returned to the pool
    /// instead, an idle pooled session would keep the lock and no relay
    /// would ever lead again.
    async fn try_lead(&self) -> Result<Option<sqlx::AnyConnection>, sqlx::Error> {
        let Some(mut conn) = self.db.own_postgres_connection().await? else {
            return Ok(None);
        };
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(RELAY_LOCK_KEY)
            .fetch_one(&mut conn)
            .await?;
        Ok(locked.then_some(conn))
    }

    /// Publishes one batch; returns how many rows it relayed.
    pub async fn relay_batch(&self) -> Result<i64, RelayError> {
        // Through the readers: on SQLite the writer is what every
        // transaction of the service waits for. A reader sees every
        // transaction committed before it starts, and on SQLite's one
        // writer connection ids are handed out in commit order, so what it
        // sees is a prefix by id, as the relay needs.
        let rows = sqlx::query(
            "SELECT id, topic, event_key, headers, payload FROM kart_outbox
             ORDER BY id LIMIT $1",
        )
        .bind(self.batch_size)
        .fetch_all(&mut *self.db.read().await?)
        .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let mut ids = Vec::with_capacity(rows.len());
        let mut records = Vec::with_capacity(rows.len());
        for row in rows {
            ids.push(row.try_get::<i64, _>(0)?);
            let headers: String = row.try_get(3)?;
            let headers: Headers = serde_json::from_str(&headers)?;
            let payload: String = row.try_get(4)?;
            records.push(Record {
                topic: row.try_get(1)?,
                key: row.try_get(2)?,
                headers,
                payload: payload.into_bytes(),
            });
        }
        self.bus.publish(&records).await?;
        for record in &records {
            self.metrics
                .events
                .published
                .get_or_create(&TopicLabels {
                    topic: record.topic.clone(),
                })
                .inc();
        }
        delete_published(&self.db, &ids).await?;
        Ok(i64::try_from(ids.len()).unwrap_or(i64::MAX))
    }
}

/// Deletes exactly the outbox rows `ids` (sorted), in one statement: runs of
/// consecutive ids go by range, since every id inside a run was published;
/// a row between two runs (committed after the batch was read, with an id
/// taken before) stays for the next batch. One statement needs no
/// transaction around it, where a statement per run did (and `BEGIN` and
/// `COMMIT` were two more round trips on every relay pass). The runs are
/// padded to a power of two by repeating the last, so a few statement
/// texts cover every batch.
async fn delete_published(db: &Db, ids: &[i64]) -> Result<(), sqlx::Error> {
    let runs = consecutive_runs(ids);
    let Some(last_run) = runs.last() else {
        return Ok(());
    };
    let padded = runs.len().next_power_of_two();
    let ranges: Vec<String> = (0..padded)
        .map(|i| format!("(id >= ${} AND id <= ${})", 2 * i + 1, 2 * i + 2))
        .collect();
    let sql = format!("DELETE FROM kart_outbox WHERE {}", ranges.join(" OR "));
    let mut query = sqlx::query(&sql);
    for i in 0..padded {
        let (first, last) = runs.get(i).unwrap_or(last_run);
        query = query.bind(*first).bind(*last);
    }
    query.execute(&mut *db.write().await?).await?;
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("outbox database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("outbox row has malformed headers: {0}")]
    Headers(#[from] serde_json::Error),
    #[error(transparent)]
    Bus(#[from] crate::bus::BusError),
}

/// Sorted ids → inclusive ranges of consecutive ids.
fn consecutive_runs(ids: &[i64]) -> Vec<(i64, i64)> {
    let mut runs: Vec<(i64, i64)> = Vec::new();
    for &id in ids {
        match runs.last_mut() {
            Some((_, last)) if *last + 1 == id => *last = id,
            _ => runs.push((id, id)),
        }
    }
    runs
}

/// Exponential backoff with full jitter, capped.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            initial,
            max,
            attempt: 0,
        }
    }

    /// The delay before the next try: random in `[d/2, d]` where `d` doubles
    /// each call up to `max`, so retrying peers do not move in lockstep.
    pub fn next_delay(&mut self) -> Duration {
        let delay = Backoff::delay_after(self.initial, self.max, self.attempt);
        self.attempt = self.attempt.saturating_add(1);
        delay
    }

    /// The delay after `failures` earlier failures (0: after the first),
    /// for work that keeps its failure count elsewhere (a stored message).
    pub fn delay_after(initial: Duration, max: Duration, failures: u32) -> Duration {
        let factor = 2_u32.saturating_pow(failures.min(20));
        let ceiling = initial.saturating_mul(factor).min(max);
        let millis = u64::try_from(ceiling.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        Duration::from_millis(fastrand::u64(millis / 2..=millis))
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// Sleeps, or returns early when `shutdown` fires.
pub async fn sleep_or_cancel(duration: Duration, shutdown: &CancellationToken) {
    tokio::select! {
        () = tokio::time::sleep(duration) => {}
        () = shutdown.cancelled() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: usize) -> Record {
        Record {
            topic: format!("topic-{}", n % 3),
            key: format!("key-{n}"),
            headers: vec![("n".to_owned(), n.to_string())],
            payload: format!("{{\"n\":{n}}}").into_bytes(),
        }
    }

    /// Enqueued rows are written at commit, in enqueue order and whole, in
    /// full and padded INSERTs alike; a rolled-back transaction writes none.
    #[tokio::test]
    async fn enqueued_rows_are_written_in_order_when_the_transaction_commits() {
        let db = crate::db::in_memory_with_kit_tables().await;
        let mut tx = db.begin().await.unwrap();
        assert!(!tx.outboxes(), "nothing to wake the relay for yet");
        enqueue_record(&mut tx, &record(999)).unwrap();
        assert!(tx.outboxes());
        tx.rollback().await.unwrap();
        assert_eq!(pending(&db).await.unwrap(), 0);

        // 64 + 7: one full INSERT, then one padded to 8.
        let count = MAX_ROWS_PER_STATEMENT + 7;
        let mut tx = db.begin().await.unwrap();
        for n in 0..count {
            enqueue_record(&mut tx, &record(n)).unwrap();
        }
        assert_eq!(
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM kart_outbox")
                .fetch_one(&mut *tx)
                .await
                .unwrap(),
            0,
            "nothing is written before the commit"
        );
        tx.commit().await.unwrap();
        // On SQLite the COMMIT went in the last INSERT's text: no
        // transaction is left open, and what it wrote outlives the next.
        db.begin()
            .await
            .expect("a transaction begins after the commit")
            .rollback()
            .await
            .unwrap();
        let rows: Vec<(String, String, String, String)> =
            sqlx::query("SELECT topic, event_key, headers, payload FROM kart_outbox ORDER BY id")
                .fetch_all(&mut *db.write().await.expect("a connection"))
                .await
                .unwrap()
                .iter()
                .map(|row| (row.get(0), row.get(1), row.get(2), row.get(3)))
                .collect();
        let expected: Vec<(String, String, String, String)> = (0..count)
            .map(|n| {
                let r = record(n);
                (
                    r.topic,
                    r.key,
                    serde_json::to_string(&r.headers).unwrap(),
                    String::from_utf8(r.payload).unwrap(),
                )
            })
            .collect();
        assert_eq!(rows, expected);
    }

    /// Only the published rows go: the ones between and around the
    /// batch's runs stay, for any number of runs.
    #[tokio::test]
    async fn deleting_a_batch_leaves_every_row_it_did_not_publish() {
        let db = crate::db::in_memory_with_kit_tables().await;
        for _ in 0..12 {
            sqlx::query(
                "INSERT INTO kart_outbox (topic, event_key, headers, payload, created_at)
                 VALUES ('t', 'k', '[]', '{}', 0)",
            )
            .execute(&mut *db.write().await.expect("a connection"))
            .await
            .unwrap();
        }
        let left = || async {
            sqlx::query_scalar::<_, i64>("SELECT id FROM kart_outbox ORDER BY id")
                .fetch_all(&mut *db.write().await.expect("a connection"))
                .await
                .unwrap()
        };
        // Three runs, padded to four.
        delete_published(&db, &[1, 2, 3, 7, 8, 10]).await.unwrap();
        assert_eq!(left().await, [4, 5, 6, 9, 11, 12]);
        delete_published(&db, &[5]).await.unwrap();
        assert_eq!(left().await, [4, 6, 9, 11, 12]);
        delete_published(&db, &[]).await.unwrap();
        assert_eq!(left().await, [4, 6, 9, 11, 12]);
    }

    #[test]
    fn consecutive_ids_collapse_into_runs() {
        assert_eq!(
            consecutive_runs(&[1, 2, 3, 7, 8, 10]),
            vec![(1, 3), (7, 8), (10, 10)]
        );
        assert_eq!(consecutive_runs(&[]), vec![]);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let first = backoff.next_delay();
        assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
        for _ in 0..30 {
            assert!(backoff.next_delay() <= Duration::from_secs(1));
        }
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_millis(100));
    }
}
