//! The consumer runner: exactly-once *effects* over an at-least-once bus.
//!
//! For each delivered record, in one database transaction:
//! 1. the event id goes into the inbox (`kart_inbox`); if it is already there
//!    the event was applied before and the handler is skipped;
//! 2. the handler applies its effect (and may outbox events of its own);
//! 3. the group's position in the partition (`kart_consumer_offsets`) moves
//!    past the record.
//!
//! The position kept here, not the broker's committed offset, decides where
//! consumption resumes: when the broker delivers a record past it (a broker
//! that lost or misreported a commit) the runner seeks back; when it
//! delivers one before it, the record is skipped. Broker commits are still
//! sent, as a hint for tools and a fresh start.
//!
//! A handler that fails is retried with backoff, holding the partition (so
//! order is kept); after the last attempt, or at once for an event it
//! rejects as malformed, the record goes to the dead-letter topic with the
//! error, the attempt count and the original headers, written through the
//! outbox in the same transaction that moves the position on.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::bus::{Delivery, Record, SharedBus, Subscription};
use crate::cloudevents::CloudEvent;
use crate::db::{Db, Tx, now_millis};
use crate::metrics::{ConsumerLabels, Metrics};
use crate::outbox::{Backoff, OutboxSignal, enqueue_record, sleep_or_cancel};

/// Why a handler did not apply an event.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Worth another try (a database hiccup, a service not reachable yet).
    #[error("{0}")]
    Retry(#[source] anyhow::Error),
    /// Will never succeed (a malformed payload): dead-letter it now.
    #[error("{0}")]
    Reject(#[source] anyhow::Error),
}

impl From<sqlx::Error> for HandlerError {
    fn from(error: sqlx::Error) -> Self {
        HandlerError::Retry(error.into())
    }
}

/// What a service does with an event.
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    /// Applies `event` inside `tx`. Everything the effect writes, including
    /// outboxed events, must go through `tx`.
    async fn handle(&self, tx: &mut Tx, event: &CloudEvent) -> Result<(), HandlerError>;
}

/// How hard to try before dead-lettering.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// One consumer group of a service.
#[derive(Clone)]
pub struct ConsumerSpec {
    pub group: String,
    pub topics: Vec<String>,
    pub dead_letter_topic: String,
    pub handler: Arc<dyn Handler>,
    pub retry: RetryPolicy,
}

/// Headers a dead letter carries beside the original ones.
pub mod dead_letter_headers {
    pub const ERROR: &str = "kart_dlq_error";
    pub const ATTEMPTS: &str = "kart_dlq_attempts";
    pub const GROUP: &str = "kart_dlq_group";
    pub const TOPIC: &str = "kart_dlq_topic";
    pub const PARTITION: &str = "kart_dlq_partition";
    pub const OFFSET: &str = "kart_dlq_offset";
}

/// What happened to one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Processed,
    Duplicate,
    DeadLettered,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Processed => "processed",
            Outcome::Duplicate => "duplicate",
            Outcome::DeadLettered => "dead_lettered",
        }
    }
}

/// Where this member stands in one partition.
#[derive(Debug, Clone, Copy)]
struct Cursor {
    /// The next offset to apply, from the database; `None` for a partition
    /// this group never consumed (start wherever the bus starts).
    next: Option<i64>,
    /// Seeks made without progress: a real gap in the log stops the seeking.
    seeks_without_progress: u32,
}

/// How often an idle consumer checks whether its assignment changed.
const ASSIGNMENT_CHECK: Duration = Duration::from_millis(250);

/// How often a member asks whether its group was rewound.
const EPOCH_CHECK: Duration = Duration::from_secs(1);

/// After this many seeks that land past the wanted offset, the records in
/// between are taken to be gone from the log (retention), and the runner
/// moves on, logging the gap.
const MAX_SEEKS_WITHOUT_PROGRESS: u32 = 3;

/// Runs a consumer group member until `shutdown`.
pub struct ConsumerRunner {
    pub spec: ConsumerSpec,
    pub db: Db,
    pub bus: SharedBus,
    pub metrics: Metrics,
    pub outbox: OutboxSignal,
}

impl ConsumerRunner {
    pub async fn run(self, shutdown: CancellationToken) {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let mut subscription = loop {
            match self
                .bus
                .subscribe(&self.spec.group, &self.spec.topics)
                .await
            {
                Ok(subscription) => break subscription,
                Err(error) => {
                    tracing::warn!(%error, group = %self.spec.group, "cannot subscribe; retrying");
                    sleep_or_cancel(backoff.next_delay(), &shutdown).await;
                    if shutdown.is_cancelled() {
                        return;
                    }
                }
            }
        };
        backoff.reset();
        let mut cursors: HashMap<(String, i32), Cursor> = HashMap::new();
        // Assigned partitions not yet moved to the group's stored position.
        let mut unaligned: HashMap<(String, i32), i64> = HashMap::new();
        // Differs from any real generation: align on the first assignment.
        let mut generation = u64::MAX;
        let mut epoch = group_epoch(&self.db, &self.spec.group).await.unwrap_or(0);
        let mut epoch_checked = tokio::time::Instant::now();
        loop {
            // Reads wake up now and then even when idle, so a new assignment
            // is aligned with the stored positions before any record arrives.
            let next = tokio::select! {
                next = subscription.next() => Some(next),
                () = tokio::time::sleep(ASSIGNMENT_CHECK) => None,
                () = shutdown.cancelled() => break,
            };
            if epoch_checked.elapsed() >= EPOCH_CHECK {
                epoch_checked = tokio::time::Instant::now();
                match group_epoch(&self.db, &self.spec.group).await {
                    Ok(now) if now != epoch => {
                        epoch = now;
                        tracing::info!(group = %self.spec.group, epoch, "group rewound; reading again from the start");
                        // An event this member applied while the rewind
                        // committed moved a position past 0 again; nothing
                        // of the new epoch is applied here yet, so every
                        // assigned partition starts over (the inbox keeps
                        // that event from counting twice).
                        let assignment = subscription.assignment();
                        if let Err(error) =
                            restart_positions(&self.db, &self.spec.group, &assignment).await
                        {
                            tracing::warn!(%error, "cannot reset positions after a rewind");
                        }
                        cursors.clear();
                        unaligned = self.stored_positions(assignment).await;
                        align(&mut *subscription, &mut unaligned).await;
                        // A record read before the rewind comes again from
                        // the stored position.
                        continue;
                    }
                    Ok(_) => {}
                    Err(error) => tracing::debug!(%error, "cannot read the group's epoch"),
                }
            }
            if subscription.assignment_generation() != generation {
                generation = subscription.assignment_generation();
                cursors.clear();
                let assignment = subscription.assignment();
                tracing::info!(group = %self.spec.group, partitions = ?assignment, "partitions assigned");
                unaligned = self.stored_positions(assignment).await;
            }
            if !unaligned.is_empty() {
                align(&mut *subscription, &mut unaligned).await;
            }
            let delivery = match next {
                None => continue,
                Some(Ok(delivery)) => delivery,
                Some(Err(error)) => {
                    tracing::warn!(%error, group = %self.spec.group, "consumer read failed; retrying");
                    sleep_or_cancel(backoff.next_delay(), &shutdown).await;
                    continue;
                }
            };
            backoff.reset();
            match self
                .position_check(&mut *subscription, &mut cursors, &delivery)
                .await
            {
                Ok(true) => {}
                Ok(false) => continue,
                Err(error) => {
                    tracing::warn!(%error, "cannot read the consumer position; retrying");
                    sleep_or_cancel(backoff.next_delay(), &shutdown).await;
                    // Reposition so this record comes again.
                    let _ = subscription
                        .seek(&delivery.topic, delivery.partition, delivery.offset)
                        .await;
                    continue;
                }
            }

            let span = tracing::info_span!(
                "consume",
                group = %self.spec.group,
                topic = %delivery.topic,
                partition = delivery.partition,
                offset = delivery.offset,
                event_id = tracing::field::Empty,
                trace_id = tracing::field::Empty,
            );
            let Some(outcome) = self.process(&delivery, &shutdown).instrument(span).await else {
                // Shut down mid-retry: the record was not applied and will be
                // delivered again.
                break;
            };
            self.metrics
                .events
                .consumed
                .get_or_create(&ConsumerLabels {
                    group: self.spec.group.clone(),
                    topic: delivery.topic.clone(),
                    outcome: outcome.label(),
                })
                .inc();
            cursors.insert(
                (delivery.topic.clone(), delivery.partition),
                Cursor {
                    next: Some(delivery.offset + 1),
                    seeks_without_progress: 0,
                },
            );
            if let Err(error) = subscription
                .commit(&delivery.topic, delivery.partition, delivery.offset + 1)
                .await
            {
                tracing::debug!(%error, "advisory broker commit failed");
            }
        }
    }

    /// The group's stored position in each of `partitions` it ever consumed.
    async fn stored_positions(
        &self,
        partitions: Vec<(String, i32)>,
    ) -> HashMap<(String, i32), i64> {
        let mut positions = HashMap::new();
        for (topic, partition) in partitions {
            match stored_position(&self.db, &self.spec.group, &topic, partition).await {
                Ok(Some(next)) => {
                    positions.insert((topic, partition), next);
                }
                Ok(None) => {}
                // Left to the per-record check in `position_check`.
                Err(error) => tracing::warn!(%error, "cannot read stored consumer positions"),
            }
        }
        positions
    }

    /// Decides whether `delivery` is the record this group needs next in its
    /// partition. Returns `false` (after seeking, where needed) when not.
    async fn position_check(
        &self,
        subscription: &mut dyn Subscription,
        cursors: &mut HashMap<(String, i32), Cursor>,
        delivery: &Delivery,
    ) -> Result<bool, sqlx::Error> {
        let key = (delivery.topic.clone(), delivery.partition);
        let cursor = match cursors.get(&key) {
            Some(cursor) => *cursor,
            None => {
                let next = stored_position(
                    &self.db,
                    &self.spec.group,
                    &delivery.topic,
                    delivery.partition,
                )
                .await?;
                let cursor = Cursor {
                    next,
                    seeks_without_progress: 0,
                };
                cursors.insert(key.clone(), cursor);
                cursor
            }
        };
        let Some(next) = cursor.next else {
            return Ok(true);
        };
        if delivery.offset < next {
            // Applied already (a redelivery after a rebalance or restart).
            return Ok(false);
        }
        if delivery.offset > next {
            if cursor.seeks_without_progress < MAX_SEEKS_WITHOUT_PROGRESS {
                tracing::info!(
                    topic = %delivery.topic,
                    partition = delivery.partition,
                    delivered = delivery.offset,
                    wanted = next,
                    "bus delivered past this group's stored position; seeking back"
                );
                if let Some(cursor) = cursors.get_mut(&key) {
                    cursor.seeks_without_progress += 1;
                }
                if let Err(error) = subscription
                    .seek(&delivery.topic, delivery.partition, next)
                    .await
                {
                    tracing::warn!(%error, "seek failed");
                }
                return Ok(false);
            }
            tracing::warn!(
                topic = %delivery.topic,
                partition = delivery.partition,
                from = next,
                to = delivery.offset,
                "records are missing from the log (retention?); continuing after the gap"
            );
        }
        Ok(true)
    }

    /// Applies one delivery with retries; `None` if shutdown interrupted it.
    async fn process(&self, delivery: &Delivery, shutdown: &CancellationToken) -> Option<Outcome> {
        let parsed = CloudEvent::from_delivery(delivery);
        let event_id = match &parsed {
            Ok(event) => event.id.clone(),
            // Not a CloudEvent: its position is its identity.
            Err(_) => format!(
                "{}/{}/{}",
                delivery.topic, delivery.partition, delivery.offset
            ),
        };
        let span = tracing::Span::current();
        span.record("event_id", event_id.as_str());
        if let Ok(Some(traceparent)) = parsed.as_ref().map(|e| e.traceparent) {
            span.record("trace_id", traceparent.trace_id().as_str());
            crate::telemetry::adopt_trace(&span, &traceparent);
        }

        let mut backoff =
            Backoff::new(self.spec.retry.initial_backoff, self.spec.retry.max_backoff);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let failure = match &parsed {
                Ok(event) => match self.apply(delivery, event).await {
                    Ok(outcome) => return Some(outcome),
                    Err(error) => error,
                },
                Err(error) => HandlerError::Reject(anyhow::anyhow!("{error}")),
            };
            let last = matches!(failure, HandlerError::Reject(_))
                || attempt >= self.spec.retry.max_attempts;
            if !last {
                tracing::warn!(error = %failure, attempt, "handler failed; will retry");
                self.metrics
                    .events
                    .consumed
                    .get_or_create(&ConsumerLabels {
                        group: self.spec.group.clone(),
                        topic: delivery.topic.clone(),
                        outcome: "retried",
                    })
                    .inc();
                sleep_or_cancel(backoff.next_delay(), shutdown).await;
                if shutdown.is_cancelled() {
                    return None;
                }
                continue;
            }
            tracing::error!(error = %failure, attempt, "handler gave up; dead-lettering the event");
            match self
                .dead_letter(delivery, &event_id, &failure, attempt)
                .await
            {
                Ok(()) => return Some(Outcome::DeadLettered),
                Err(error) => {
                    // Cannot even record the dead letter: keep the partition
                    // where it is and try again, never skip silently.
                    tracing::error!(%error, "cannot write the dead letter; retrying");
                    sleep_or_cancel(backoff.next_delay(), shutdown).await;
                    if shutdown.is_cancelled() {
                        return None;
                    }
                    attempt = 0;
                }
            }
        }
    }

    /// One attempt: inbox, effect, position, in one transaction.
    async fn apply(
        &self,
        delivery: &Delivery,
        event: &CloudEvent,
    ) -> Result<Outcome, HandlerError> {
        let mut tx = self.db.begin().await?;
        let outcome = if record_in_inbox(&mut tx, &self.spec.group, &event.id).await? {
            self.spec.handler.handle(&mut tx, event).await?;
            Outcome::Processed
        } else {
            Outcome::Duplicate
        };
        self.move_past(tx, delivery).await?;
        Ok(outcome)
    }

    /// Stores the group's position past `delivery` and commits, then wakes
    /// the relay for whatever the transaction outboxed.
    async fn move_past(&self, mut tx: Tx, delivery: &Delivery) -> Result<(), sqlx::Error> {
        store_position(
            &mut tx,
            &self.spec.group,
            &delivery.topic,
            delivery.partition,
            delivery.offset + 1,
        )
        .await?;
        tx.commit().await?;
        self.outbox.notify();
        Ok(())
    }

    async fn dead_letter(
        &self,
        delivery: &Delivery,
        event_id: &str,
        failure: &HandlerError,
        attempts: u32,
    ) -> Result<(), sqlx::Error> {
        use dead_letter_headers as h;
        let mut headers = delivery.headers.clone();
        headers.extend([
            (h::ERROR.to_owned(), failure.to_string()),
            (h::ATTEMPTS.to_owned(), attempts.to_string()),
            (h::GROUP.to_owned(), self.spec.group.clone()),
            (h::TOPIC.to_owned(), delivery.topic.clone()),
            (h::PARTITION.to_owned(), delivery.partition.to_string()),
            (h::OFFSET.to_owned(), delivery.offset.to_string()),
        ]);
        let record = Record {
            topic: self.spec.dead_letter_topic.clone(),
            key: delivery.key.clone(),
            headers,
            // The outbox stores text; a non-UTF-8 payload is kept readable.
            payload: String::from_utf8_lossy(&delivery.payload)
                .into_owned()
                .into_bytes(),
        };
        let mut tx = self.db.begin().await?;
        // A dead-lettered event counts as handled: a redelivery must not
        // dead-letter it twice.
        if record_in_inbox(&mut tx, &self.spec.group, event_id).await? {
            enqueue_record(&mut tx, &record).await?;
        }
        self.move_past(tx, delivery).await
    }
}

/// Moves newly assigned partitions to the group's stored positions, so that
/// what the bus believes (a lost or wrong commit) does not decide where
/// consumption starts, even in a partition where nothing new arrives. A
/// partition the bus cannot seek yet (Kafka: assigned, not fetching) stays
/// in `unaligned` and is tried again on the next turn of the loop.
async fn align(subscription: &mut dyn Subscription, unaligned: &mut HashMap<(String, i32), i64>) {
    let mut aligned = Vec::new();
    for ((topic, partition), next) in unaligned.iter() {
        match subscription.seek(topic, *partition, *next).await {
            Ok(()) => aligned.push((topic.clone(), *partition)),
            Err(error) => tracing::debug!(%error, %topic, partition, "partition not seekable yet"),
        }
    }
    for key in aligned {
        unaligned.remove(&key);
    }
}

/// Records `event_id` as applied by `group`; `false` if it already was.
pub async fn record_in_inbox(
    tx: &mut Tx,
    group: &str,
    event_id: &str,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO kart_inbox (consumer_group, event_id, processed_at) VALUES ($1, $2, $3)
         ON CONFLICT (consumer_group, event_id) DO NOTHING",
    )
    .bind(group)
    .bind(event_id)
    .bind(now_millis())
    .execute(&mut **tx)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// Makes `group` apply its topics again from the start, in `tx` (beside
/// whatever the service clears of its own effects): forgets the events it
/// applied, moves its stored positions to the start of every partition,
/// and moves its epoch, so every running member notices within a second
/// and reads again from there. Positions are reset rather than deleted so
/// that no member resumes from the broker's (later) committed offset.
pub async fn rewind(tx: &mut Tx, group: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM kart_inbox WHERE consumer_group = $1")
        .bind(group)
        .execute(&mut **tx)
        .await?;
    sqlx::query(
        "UPDATE kart_consumer_offsets SET next_offset = 0, updated_at = $2
         WHERE consumer_group = $1",
    )
    .bind(group)
    .bind(now_millis())
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO kart_consumer_epochs (consumer_group, epoch) VALUES ($1, 1)
         ON CONFLICT (consumer_group) DO UPDATE SET epoch = kart_consumer_epochs.epoch + 1",
    )
    .bind(group)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Moves `group`'s positions in `partitions` back to the start.
async fn restart_positions(
    db: &Db,
    group: &str,
    partitions: &[(String, i32)],
) -> Result<(), sqlx::Error> {
    for (topic, partition) in partitions {
        sqlx::query(
            "UPDATE kart_consumer_offsets SET next_offset = 0, updated_at = $4
             WHERE consumer_group = $1 AND topic = $2 AND partition_id = $3",
        )
        .bind(group)
        .bind(topic)
        .bind(partition)
        .bind(now_millis())
        .execute(db.pool())
        .await?;
    }
    Ok(())
}

/// How often `group` was rewound (0: never).
async fn group_epoch(db: &Db, group: &str) -> Result<i64, sqlx::Error> {
    let epoch: Option<i64> =
        sqlx::query_scalar("SELECT epoch FROM kart_consumer_epochs WHERE consumer_group = $1")
            .bind(group)
            .fetch_optional(db.pool())
            .await?;
    Ok(epoch.unwrap_or(0))
}

/// Where a consumer group stands in one partition, as stored beside its effects.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GroupPosition {
    pub group: String,
    pub topic: String,
    pub partition: i32,
    pub next_offset: i64,
}

/// Every stored position in this database, of every group (or only of
/// `group`), ordered by group, topic and partition.
pub async fn positions(db: &Db, group: Option<&str>) -> Result<Vec<GroupPosition>, sqlx::Error> {
    let rows: Vec<(String, String, i64, i64)> = sqlx::query_as(
        "SELECT consumer_group, topic, partition_id, next_offset FROM kart_consumer_offsets
         WHERE $1 = '' OR consumer_group = $1
         ORDER BY consumer_group, topic, partition_id",
    )
    .bind(group.unwrap_or_default())
    .fetch_all(db.pool())
    .await?;
    Ok(rows
        .into_iter()
        .map(|(group, topic, partition, next_offset)| GroupPosition {
            group,
            topic,
            partition: i32::try_from(partition).unwrap_or(0),
            next_offset,
        })
        .collect())
}

/// The group's stored position in a partition, if it ever consumed it.
pub async fn stored_position(
    db: &Db,
    group: &str,
    topic: &str,
    partition: i32,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT next_offset FROM kart_consumer_offsets
         WHERE consumer_group = $1 AND topic = $2 AND partition_id = $3",
    )
    .bind(group)
    .bind(topic)
    .bind(partition)
    .fetch_optional(db.pool())
    .await
}

/// Moves the group's position forward (never back: a slow former owner of
/// the partition must not rewind the group).
async fn store_position(
    tx: &mut Tx,
    group: &str,
    topic: &str,
    partition: i32,
    next_offset: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO kart_consumer_offsets
             (consumer_group, topic, partition_id, next_offset, updated_at)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (consumer_group, topic, partition_id) DO UPDATE SET
             next_offset = CASE
                 WHEN excluded.next_offset > kart_consumer_offsets.next_offset
                 THEN excluded.next_offset
                 ELSE kart_consumer_offsets.next_offset END,
             updated_at = excluded.updated_at",
    )
    .bind(group)
    .bind(topic)
    .bind(partition)
    .bind(next_offset)
    .bind(now_millis())
    .execute(&mut **tx)
    .await?;
    Ok(())
}
