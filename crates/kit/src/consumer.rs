//! The consumer runner: exactly-once *effects* over an at-least-once bus.
//!
//! For each delivered record, in one database transaction:
//! 1. the event id goes into the inbox (`kart_inbox`); if it is already there
//!    the event was applied before and the handler is skipped;
//! 2. the handler applies its effect (and may outbox events of its own);
//! 3. the group's position in the partition (`kart_consumer_offsets`) moves
//!    past the record.
//!
//! Records that are already here when one arrives are applied together, up
//! to [`ConsumerSpec::max_batch`], in one such transaction: the batch's
//! inbox rows and its positions, one per partition, in one round trip
//! ([`record_batch`]; in a transaction the order of writes is not seen),
//! then step 2 for each fresh record in order and the handler's
//! [`Handler::handled_all`] once for them. That is the same effect as one
//! transaction per record committed back to back, at a fraction of the
//! commits and position writes: under load it is most of what a consumer
//! costs. A failing record is split out of its batch and handled alone.
//!
//! The position kept here, not the broker's committed offset, decides where
//! consumption resumes: when the broker delivers a record past it (a broker
//! that lost or misreported a commit, or answered a fetch from inside a
//! record batch with the next batch) the runner seeks back, further each
//! time ([`seek_target`]); when it delivers one before it, the record is
//! skipped. Broker commits are still
//! sent, about once a second, as a hint for tools and a fresh start.
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
use crate::db::{Db, Tx, both_in_one_round_trip, now_millis};
use crate::metrics::{ConsumerLabels, GroupLabels, Metrics};
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

    /// Runs once per transaction, after [`Handler::handle`] applied each
    /// fresh event in it (`events`, in delivery order; never a duplicate)
    /// and before it commits: for what is cheaper written once per batch
    /// than once per event, such as a counter many events add to. Only a
    /// database error can fail it, which fails the transaction as a
    /// failing effect would (retried, never dead-lettered for its own
    /// sake). Does nothing unless a handler has such work.
    async fn handled_all(&self, _tx: &mut Tx, _events: &[&CloudEvent]) -> Result<(), sqlx::Error> {
        Ok(())
    }
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
    /// At most this many events applied in one transaction. A batch holds
    /// its database connection for as long as its handlers take, so a
    /// handler that waits on the network wants a small one.
    pub max_batch: usize,
}

/// The batch size a consumer uses unless it has a reason not to.
pub const DEFAULT_MAX_BATCH: usize = 64;

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

/// A delivery on its way through [`ConsumerRunner::apply_all`].
struct Pending<'a> {
    delivery: &'a Delivery,
    event: Result<CloudEvent, crate::cloudevents::CloudEventError>,
    /// The event's id, or its position when it is not a CloudEvent.
    event_id: String,
    span: tracing::Span,
}

/// What to do with a delivery, given the group's position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// The record the group needs next (or the first after a gap).
    Apply,
    /// Applied already.
    Skip,
    /// Past the position: the partition was sought back, and the rest of
    /// this read from it is stale.
    Sought,
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

/// How often a member sends the bus its positions. They are only a hint
/// (for tools, and where a group starts that never stored a position), so
/// a busy consumer does not pay a broker round trip per batch for them.
const BUS_COMMIT_INTERVAL: Duration = Duration::from_secs(1);

/// How often a member asks whether its group was rewound.
const EPOCH_CHECK: Duration = Duration::from_secs(1);

/// How often a member holding no partitions looks at whether its group's
/// events are waiting (see [`Standstill`]).
const STANDSTILL_CHECK: Duration = Duration::from_secs(5);

/// How long a member may hold no partitions while its group's events wait
/// and nobody moves its positions before it moves the group to a fresh
/// broker group (see [`Standstill`]): three
/// session timeouts, so a normal rebalance, or a handler retrying an event
/// before dead-lettering it (~15 s), is never mistaken for one.
const STANDSTILL: Duration = Duration::from_secs(30);

/// Where to seek for `next` after `seeks` seeks that each had the bus
/// deliver past it; `None` once a seek to the log's start did too.
///
/// The first seek is to `next` itself: a sound broker delivers past it only
/// with records read before an earlier seek took effect. After that each
/// seek goes further back (`next − 1`, `− 3`, `− 7`, …, down to 0), because
/// a broker may answer a fetch from inside a record batch with the *next*
/// batch (tansu 0.6.0 does; `fetch-mid-batch` in the test broker's declared
/// defects), so `next` is only served by a seek to its batch's first
/// record or before it. Records before `next` are skipped as applied, so
/// seeking too far back costs a re-read, never a second effect, and the
/// doubling keeps that re-read within twice the batch. When even the start
/// delivers past `next`, the records in between are gone from the log
/// (retention): the runner moves on, logging the gap.
fn seek_target(next: i64, seeks: u32) -> Option<i64> {
    let back = |seeks: u32| 2_i64.saturating_pow(seeks).saturating_sub(1);
    if seeks > 0 && next.saturating_sub(back(seeks - 1)) <= 0 {
        return None;
    }
    Some(next.saturating_sub(back(seeks)).max(0))
}

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
        let Some((mut subscription, mut broker_generation)) = self.join(&shutdown).await else {
            return;
        };
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let mut cursors: HashMap<(String, i32), Cursor> = HashMap::new();
        // Assigned partitions not yet moved to the group's stored position.
        let mut unaligned: HashMap<(String, i32), i64> = HashMap::new();
        // Differs from any real generation: align on the first assignment.
        let mut generation = u64::MAX;
        let mut epoch = group_marks(&self.db, &self.spec.group)
            .await
            .map_or(0, |marks| marks.epoch);
        let mut epoch_checked = tokio::time::Instant::now();
        // Applied positions not yet sent to the bus, and when they last were.
        let mut bus_positions: HashMap<(String, i32), i64> = HashMap::new();
        let mut bus_committed = tokio::time::Instant::now();
        let mut standstill = Standstill::default();
        let mut standstill_checked = tokio::time::Instant::now();
        loop {
            // Reads wake up now and then even when idle, so a new assignment
            // is aligned with the stored positions before any record arrives.
            let next = tokio::select! {
                next = subscription.next() => Some(next),
                () = tokio::time::sleep(ASSIGNMENT_CHECK) => None,
                () = shutdown.cancelled() => break,
            };
            // Set when the group is to be consumed through another broker
            // group than this member's (see `Standstill`).
            let mut move_to = false;
            if epoch_checked.elapsed() >= EPOCH_CHECK {
                epoch_checked = tokio::time::Instant::now();
                match group_marks(&self.db, &self.spec.group).await {
                    Ok(marks) if marks.epoch != epoch => {
                        epoch = marks.epoch;
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
                    Ok(marks) if marks.broker_generation != broker_generation => {
                        tracing::info!(group = %self.spec.group, generation = marks.broker_generation, "the group moved to a fresh broker group; following it");
                        move_to = true;
                    }
                    Ok(_) => {}
                    Err(error) => {
                        tracing::debug!(%error, "cannot read the group's epoch and broker group")
                    }
                }
            }
            Self::commit_to_bus(&mut *subscription, &mut bus_positions, &mut bus_committed).await;
            if subscription.assignment_generation() != generation {
                generation = subscription.assignment_generation();
                cursors.clear();
                bus_positions.clear();
                let assignment = subscription.assignment();
                tracing::info!(group = %self.spec.group, partitions = ?assignment, "partitions assigned");
                unaligned = self.stored_positions(assignment).await;
            }
            if !unaligned.is_empty() {
                align(&mut *subscription, &mut unaligned).await;
            }
            if standstill_checked.elapsed() >= STANDSTILL_CHECK {
                standstill_checked = tokio::time::Instant::now();
                let waiting = if subscription.assignment().is_empty() {
                    self.waiting_positions().await
                } else {
                    None
                };
                if standstill.stuck(standstill_checked, waiting) {
                    tracing::warn!(
                        group = %self.spec.group,
                        seconds = STANDSTILL.as_secs(),
                        "this member has held no partitions while the group's events waited \
                         and no member applied any: moving the group to a fresh broker group"
                    );
                    match move_broker_group(&self.db, &self.spec.group, broker_generation).await {
                        Ok(()) => {
                            self.metrics
                                .events
                                .group_moves
                                .get_or_create(&GroupLabels {
                                    group: self.spec.group.clone(),
                                })
                                .inc();
                            move_to = true;
                        }
                        Err(error) => {
                            tracing::warn!(%error, "cannot move the group to a fresh broker group");
                        }
                    }
                }
            }
            if move_to {
                drop(subscription);
                let Some(joined) = self.join(&shutdown).await else {
                    break;
                };
                (subscription, broker_generation) = joined;
                generation = u64::MAX;
                cursors.clear();
                unaligned.clear();
                bus_positions.clear();
                standstill = Standstill::default();
                continue;
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
            // Whatever else is already here joins the batch: under load one
            // transaction applies many events (one commit, one position
            // write per partition); when idle a batch is a single event.
            let mut deliveries = vec![delivery];
            while deliveries.len() < self.spec.max_batch {
                match subscription.next_ready() {
                    Some(Ok(delivery)) => deliveries.push(delivery),
                    Some(Err(error)) => {
                        tracing::debug!(%error, "read ahead failed; applying what is here");
                        break;
                    }
                    None => break,
                }
            }
            let batch = self
                .wanted(&mut *subscription, &mut cursors, deliveries, &shutdown)
                .await;
            if batch.is_empty() {
                continue;
            }
            let Some(outcomes) = self.apply_all(&batch, &shutdown).await else {
                // Shut down mid-retry: what was not applied is delivered again.
                break;
            };
            for (delivery, outcome) in batch.iter().zip(outcomes) {
                self.count(&delivery.topic, outcome.label());
                let end = bus_positions
                    .entry((delivery.topic.clone(), delivery.partition))
                    .or_default();
                *end = (*end).max(delivery.offset + 1);
            }
        }
    }

    /// Joins the broker group the group uses now, retrying until the
    /// database and the bus answer; with that broker group's generation.
    /// `None` on shutdown.
    async fn join(&self, shutdown: &CancellationToken) -> Option<(Box<dyn Subscription>, i64)> {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        loop {
            let joined = match group_marks(&self.db, &self.spec.group).await {
                Ok(GroupMarks {
                    broker_generation: generation,
                    ..
                }) => self
                    .bus
                    .subscribe(
                        &broker_group_name(&self.spec.group, generation),
                        &self.spec.topics,
                    )
                    .await
                    .map(|subscription| (subscription, generation))
                    .map_err(|error| error.to_string()),
                Err(error) => Err(error.to_string()),
            };
            match joined {
                Ok(joined) => return Some(joined),
                Err(error) => {
                    tracing::warn!(%error, group = %self.spec.group, "cannot subscribe; retrying");
                    sleep_or_cancel(backoff.next_delay(), shutdown).await;
                    if shutdown.is_cancelled() {
                        return None;
                    }
                }
            }
        }
    }

    /// The group's stored positions if events wait past them in any of its
    /// partitions; `None` when none waits, or when that cannot be told (the
    /// bus or the database does not answer: nothing to act on then).
    async fn waiting_positions(&self) -> Option<Vec<GroupPosition>> {
        let topics = match self.bus.describe_topics().await {
            Ok(topics) => topics,
            Err(error) => {
                tracing::debug!(%error, "cannot read the topics' ends");
                return None;
            }
        };
        let stored = match positions(&self.db, Some(&self.spec.group)).await {
            Ok(stored) => stored,
            Err(error) => {
                tracing::debug!(%error, "cannot read the group's positions");
                return None;
            }
        };
        let waiting = topics
            .iter()
            .filter(|topic| self.spec.topics.contains(&topic.name))
            .any(|topic| {
                topic
                    .partition_ends
                    .iter()
                    .zip(0..)
                    .any(|(end, partition)| {
                        let next = stored
                            .iter()
                            .find(|p| p.topic == topic.name && p.partition == partition)
                            .map_or(0, |p| p.next_offset);
                        *end > next
                    })
            });
        waiting.then_some(stored)
    }

    /// Sends the bus the positions applied since the last time, if that was
    /// [`BUS_COMMIT_INTERVAL`] ago.
    async fn commit_to_bus(
        subscription: &mut dyn Subscription,
        positions: &mut HashMap<(String, i32), i64>,
        last: &mut tokio::time::Instant,
    ) {
        if positions.is_empty() || last.elapsed() < BUS_COMMIT_INTERVAL {
            return;
        }
        *last = tokio::time::Instant::now();
        for ((topic, partition), next_offset) in positions.drain() {
            if let Err(error) = subscription.commit(&topic, partition, next_offset).await {
                tracing::debug!(%error, "advisory broker commit failed");
            }
        }
    }

    /// The deliveries of a read that this group needs, in order; seeks where
    /// the bus delivered past the stored position. Each one kept moves its
    /// partition's cursor on: from here it is either applied or the runner
    /// stops.
    async fn wanted(
        &self,
        subscription: &mut dyn Subscription,
        cursors: &mut HashMap<(String, i32), Cursor>,
        deliveries: Vec<Delivery>,
        shutdown: &CancellationToken,
    ) -> Vec<Delivery> {
        let mut wanted = Vec::with_capacity(deliveries.len());
        // Partitions sought in this read: their later records are stale.
        let mut sought: Vec<(String, i32)> = Vec::new();
        for delivery in deliveries {
            let key = (delivery.topic.clone(), delivery.partition);
            if sought.contains(&key) {
                continue;
            }
            match self.position_check(subscription, cursors, &delivery).await {
                Ok(Check::Apply) => {
                    cursors.insert(
                        key,
                        Cursor {
                            next: Some(delivery.offset + 1),
                            seeks_without_progress: 0,
                        },
                    );
                    wanted.push(delivery);
                }
                Ok(Check::Skip) => {}
                Ok(Check::Sought) => sought.push(key),
                Err(error) => {
                    tracing::warn!(%error, "cannot read the consumer position; retrying");
                    sleep_or_cancel(Duration::from_millis(100), shutdown).await;
                    // Reposition so this record comes again.
                    let _ = subscription
                        .seek(&delivery.topic, delivery.partition, delivery.offset)
                        .await;
                    sought.push(key);
                }
            }
        }
        wanted
    }

    /// Applies `batch`, in one transaction when it can. When an event fails
    /// there, the events before it are applied as a batch again and the
    /// failing one goes on alone, with retries and finally a dead letter
    /// (its failed try in the batch counts as its first), so one bad event
    /// never holds back or sinks the others. `None` if shutdown
    /// interrupted it.
    async fn apply_all(
        &self,
        batch: &[Delivery],
        shutdown: &CancellationToken,
    ) -> Option<Vec<Outcome>> {
        let pending: Vec<Pending> = batch.iter().map(|d| self.pending(d)).collect();
        let mut outcomes = Vec::with_capacity(pending.len());
        // The window tried next is `pending[start..end]`.
        let (mut start, mut end) = (0, pending.len());
        let mut known_failure: Option<(usize, HandlerError)> = None;
        while start < pending.len() {
            if let Some((at, _)) = &known_failure
                && *at == start
                && let Some((_, failure)) = known_failure.take()
            {
                let one = &pending[start];
                let outcome = self
                    .process(one, shutdown, Some(failure))
                    .instrument(one.span.clone())
                    .await?;
                outcomes.push(outcome);
                start += 1;
                end = pending.len();
                continue;
            }
            match self.apply_batch(&pending[start..end]).await {
                Ok(applied) => {
                    outcomes.extend(applied);
                    start = end;
                    end = pending.len();
                }
                Err((failed_at, failure)) => {
                    tracing::debug!(
                        error = %failure,
                        events = end - start,
                        failed_at,
                        "batch not applied; applying around the failing event"
                    );
                    let at = start + failed_at;
                    known_failure = Some((at, failure));
                    end = if at > start { at } else { pending.len() };
                }
            }
        }
        Some(outcomes)
    }

    /// One transaction for the whole batch: each event's inbox entry and
    /// effect, the handler's once-per-transaction work, then each
    /// partition's position, then one commit. On failure, the index of the
    /// event that failed (0 when the transaction itself, or that
    /// once-per-transaction work, did).
    async fn apply_batch(
        &self,
        batch: &[Pending<'_>],
    ) -> Result<Vec<Outcome>, (usize, HandlerError)> {
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut events = Vec::with_capacity(batch.len());
        for (index, one) in batch.iter().enumerate() {
            let event = one
                .event
                .as_ref()
                .map_err(|error| (index, HandlerError::Reject(anyhow::anyhow!("{error}"))))?;
            events.push(event);
        }
        let ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
        // Where the batch leaves each partition: known before any event is
        // applied, and stored with the inbox rows in one round trip. A
        // handler that fails rolls both back.
        let mut ends: HashMap<(&str, i32), i64> = HashMap::new();
        for one in batch {
            let delivery = one.delivery;
            let end = ends
                .entry((delivery.topic.as_str(), delivery.partition))
                .or_default();
            *end = (*end).max(delivery.offset + 1);
        }
        let mut ends: Vec<((&str, i32), i64)> = ends.into_iter().collect();
        ends.sort_unstable();
        let (mut tx, fresh) = begin_and_record_batch(&self.db, &self.spec.group, &ids, &ends)
            .await
            .map_err(|e| (0, e.into()))?;
        let mut handled = Vec::with_capacity(batch.len());
        for (index, ((one, event), fresh)) in batch.iter().zip(events).zip(fresh).enumerate() {
            let outcome = if fresh {
                self.spec
                    .handler
                    .handle(&mut tx, event)
                    .instrument(one.span.clone())
                    .await
                    .map_err(|e| (index, e))?;
                handled.push(event);
                Outcome::Processed
            } else {
                Outcome::Duplicate
            };
            outcomes.push(outcome);
        }
        if !handled.is_empty() {
            self.spec
                .handler
                .handled_all(&mut tx, &handled)
                .await
                .map_err(|e| (0, e.into()))?;
        }
        let outboxed = tx.outboxes();
        tx.commit().await.map_err(|e| (0, e.into()))?;
        if outboxed {
            self.outbox.notify();
        }
        self.metrics
            .events
            .batch_size
            .get_or_create(&GroupLabels {
                group: self.spec.group.clone(),
            })
            .observe(batch.len() as f64);
        Ok(outcomes)
    }

    /// Counts one event of `topic` in `kart_events_consumed_total` by outcome.
    fn count(&self, topic: &str, outcome: &'static str) {
        self.metrics
            .events
            .consumed
            .get_or_create(&ConsumerLabels {
                group: self.spec.group.clone(),
                topic: topic.to_owned(),
                outcome,
            })
            .inc();
    }

    /// A delivery parsed once, with the `consume` span its work is logged in.
    fn pending<'a>(&self, delivery: &'a Delivery) -> Pending<'a> {
        let event = CloudEvent::from_delivery(delivery);
        let event_id = match &event {
            Ok(event) => event.id.clone(),
            // Not a CloudEvent: its position is its identity.
            Err(_) => format!(
                "{}/{}/{}",
                delivery.topic, delivery.partition, delivery.offset
            ),
        };
        let span = tracing::info_span!(
            "consume",
            group = %self.spec.group,
            topic = %delivery.topic,
            partition = delivery.partition,
            offset = delivery.offset,
            event_id = %event_id,
            trace_id = tracing::field::Empty,
        );
        if let Ok(Some(traceparent)) = event.as_ref().map(|e| e.traceparent) {
            span.record("trace_id", traceparent.trace_id().as_str());
            crate::telemetry::adopt_trace(&span, &traceparent);
        }
        Pending {
            delivery,
            event,
            event_id,
            span,
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
    /// partition, seeking back when the bus delivered past it.
    async fn position_check(
        &self,
        subscription: &mut dyn Subscription,
        cursors: &mut HashMap<(String, i32), Cursor>,
        delivery: &Delivery,
    ) -> Result<Check, sqlx::Error> {
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
            return Ok(Check::Apply);
        };
        if delivery.offset < next {
            // Applied already (a redelivery after a rebalance or restart).
            return Ok(Check::Skip);
        }
        if delivery.offset > next {
            if let Some(target) = seek_target(next, cursor.seeks_without_progress) {
                tracing::info!(
                    topic = %delivery.topic,
                    partition = delivery.partition,
                    delivered = delivery.offset,
                    wanted = next,
                    seek_to = target,
                    "bus delivered past this group's stored position; seeking back"
                );
                if let Some(cursor) = cursors.get_mut(&key) {
                    cursor.seeks_without_progress += 1;
                }
                if let Err(error) = subscription
                    .seek(&delivery.topic, delivery.partition, target)
                    .await
                {
                    tracing::warn!(%error, "seek failed");
                }
                return Ok(Check::Sought);
            }
            tracing::warn!(
                topic = %delivery.topic,
                partition = delivery.partition,
                from = next,
                to = delivery.offset,
                "records are missing from the log (retention?): a seek to its start \
                 delivered past them; continuing after the gap"
            );
        }
        Ok(Check::Apply)
    }

    /// Applies one event alone, with retries, starting from `failure` when
    /// it has failed once already; `None` if shutdown interrupted it.
    async fn process(
        &self,
        one: &Pending<'_>,
        shutdown: &CancellationToken,
        mut failure: Option<HandlerError>,
    ) -> Option<Outcome> {
        let delivery = one.delivery;
        let mut backoff =
            Backoff::new(self.spec.retry.initial_backoff, self.spec.retry.max_backoff);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let failure = match failure.take() {
                Some(failure) => failure,
                None => match self.apply_batch(std::slice::from_ref(one)).await {
                    Ok(mut outcomes) => return outcomes.pop(),
                    Err((_, failure)) => failure,
                },
            };
            let last = matches!(failure, HandlerError::Reject(_))
                || attempt >= self.spec.retry.max_attempts;
            if !last {
                tracing::warn!(error = %failure, attempt, "handler failed; will retry");
                self.count(&delivery.topic, "retried");
                sleep_or_cancel(backoff.next_delay(), shutdown).await;
                if shutdown.is_cancelled() {
                    return None;
                }
                continue;
            }
            tracing::error!(error = %failure, attempt, "handler gave up; dead-lettering the event");
            match self
                .dead_letter(delivery, &one.event_id, &failure, attempt)
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

    /// Stores the group's position past `delivery` and commits, then wakes
    /// the relay for whatever the transaction outboxed.
    async fn move_past(&self, mut tx: Tx, delivery: &Delivery) -> Result<(), sqlx::Error> {
        let end = (
            (delivery.topic.as_str(), delivery.partition),
            delivery.offset + 1,
        );
        record_batch(&mut tx, &self.spec.group, &[], &[end]).await?;
        let outboxed = tx.outboxes();
        tx.commit().await?;
        if outboxed {
            self.outbox.notify();
        }
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
        if record_batch(&mut tx, &self.spec.group, &[event_id], &[]).await? == [true] {
            enqueue_record(&mut tx, &record)?;
        }
        self.move_past(tx, delivery).await
    }
}

/// Tells a member that is stuck out of its group from one that is merely
/// spare. A member can hold no partitions because its group has more
/// members than partitions, which is fine as long as the others apply the
/// events. It is stuck when the group's events wait, and the stored
/// positions (shared by every member, kept in the service's database) have
/// not moved for [`STANDSTILL`]: the partitions are assigned to nobody, or
/// to a member that is gone. A broker should never leave a group so, but
/// tansu 0.6 does (its `group-rejoin` defect, README): a leader that
/// leaves while the group is forming stays its leader, so every member
/// that joins after it waits, with nothing, for an assignment that never
/// comes; joining again changes nothing. The positions live in Kart's
/// database, not in the broker's group, so the group moves to a fresh
/// broker group (`kart_consumer_broker_groups`), every member follows
/// within a second, and they go on from the stored positions. On a broker
/// that rebalances properly this never fires.
#[derive(Default)]
struct Standstill {
    /// Since when the positions have been these, with events waiting and
    /// this member holding nothing.
    since: Option<(tokio::time::Instant, Vec<GroupPosition>)>,
}

impl Standstill {
    /// Records one look at the group: `waiting` holds its positions when
    /// this member holds no partitions and events wait past them, `None`
    /// otherwise. True when the group is stuck.
    fn stuck(&mut self, now: tokio::time::Instant, waiting: Option<Vec<GroupPosition>>) -> bool {
        let Some(positions) = waiting else {
            self.since = None;
            return false;
        };
        match &self.since {
            Some((since, before)) if *before == positions => {
                if now.duration_since(*since) >= STANDSTILL {
                    self.since = None;
                    return true;
                }
                false
            }
            _ => {
                self.since = Some((now, positions));
                false
            }
        }
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

/// Records `event_ids` as applied by `group` and moves the group's stored
/// positions to `ends` (each only forward), in one round trip; for each
/// id, whether this call recorded it (`false`: applied before, or earlier
/// in the same list).
///
/// A consumer batch does both in its transaction, and each statement is
/// time the service's one writer is held on SQLite, a network round trip
/// on PostgreSQL: PostgreSQL upserts the positions in a writing `WITH`
/// of the inbox insert, SQLite gets both as one text. Within the
/// transaction the order does not matter; the positions are known from the
/// deliveries before any is applied.
pub async fn record_batch(
    tx: &mut Tx,
    group: &str,
    event_ids: &[&str],
    ends: &[((&str, i32), i64)],
) -> Result<Vec<bool>, sqlx::Error> {
    let Some((sql, slots)) = record_batch_text(tx.kind(), event_ids.len(), ends.len()) else {
        return Ok(Vec::new());
    };
    let rows = record_batch_query(&sql, slots, group, event_ids, ends)
        .fetch_all(&mut **tx)
        .await?;
    recorded(event_ids, &rows)
}

/// Begins a consumer batch's transaction with [`record_batch`] as its
/// first statement: on SQLite the `BEGIN` goes with it, one statement call
/// fewer per batch ([`Db::begin_with`]).
pub async fn begin_and_record_batch(
    db: &Db,
    group: &str,
    event_ids: &[&str],
    ends: &[((&str, i32), i64)],
) -> Result<(Tx, Vec<bool>), sqlx::Error> {
    let Some((sql, slots)) = record_batch_text(db.kind(), event_ids.len(), ends.len()) else {
        return Ok((db.begin().await?, Vec::new()));
    };
    let (tx, rows) = db
        .begin_with(record_batch_query(&sql, slots, group, event_ids, ends))
        .await?;
    Ok((tx, recorded(event_ids, &rows)?))
}

/// [`record_batch`]'s statement for `ids` event ids and `ends` positions,
/// and how many id slots it binds; `None` when there is nothing to record.
fn record_batch_text(kind: crate::db::DbKind, ids: usize, ends: usize) -> Option<(String, usize)> {
    // The ids are bound from `$3` on, the positions after them.
    let (inbox, slots) = match ids {
        0 => (None, 0),
        ids => {
            let (text, slots) = inbox_insert(3, ids);
            (Some(text), slots)
        }
    };
    let positions = (ends > 0).then(|| positions_upsert(3 + slots, ends));
    let sql = match (inbox, positions) {
        (None, None) => return None,
        (Some(inbox), None) => inbox,
        (None, Some(positions)) => positions,
        (Some(inbox), Some(positions)) => both_in_one_round_trip(kind, &positions, &inbox),
    };
    Some((sql, slots))
}

/// [`record_batch_text`]'s statement with its arguments bound.
fn record_batch_query<'q>(
    sql: &'q str,
    slots: usize,
    group: &'q str,
    event_ids: &[&'q str],
    ends: &[((&'q str, i32), i64)],
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    let mut query = sqlx::query(sql).bind(group).bind(now_millis());
    if let Some(last) = event_ids.last() {
        for i in 0..slots {
            query = query.bind(*event_ids.get(i).unwrap_or(last));
        }
    }
    for ((topic, partition), next_offset) in ends {
        query = query.bind(*topic).bind(*partition).bind(*next_offset);
    }
    query
}

/// For each of `event_ids`, whether the inbox insert returned it.
fn recorded(event_ids: &[&str], rows: &[sqlx::any::AnyRow]) -> Result<Vec<bool>, sqlx::Error> {
    let mut recorded = std::collections::HashSet::with_capacity(rows.len());
    for row in rows {
        recorded.insert(sqlx::Row::try_get::<String, _>(row, 0)?);
    }
    Ok(event_ids.iter().map(|id| recorded.remove(*id)).collect())
}

/// The inbox insert of `count` ids bound from `$first` on (`$1` the group,
/// `$2` the time), returning the ids it inserted, and how many ids to bind:
/// the list is padded to a power of two by repeating its last id (a repeat
/// inserts nothing), so a handful of statement texts cover every batch size
/// and stay in each connection's prepared-statement cache.
fn inbox_insert(first: usize, count: usize) -> (String, usize) {
    let slots = count.next_power_of_two();
    let rows: Vec<String> = (first..first + slots)
        .map(|i| format!("($1, ${i}, $2)"))
        .collect();
    let sql = format!(
        "INSERT INTO kart_inbox (consumer_group, event_id, processed_at) VALUES {}
         ON CONFLICT (consumer_group, event_id) DO NOTHING RETURNING event_id",
        rows.join(", ")
    );
    (sql, slots)
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
        .execute(&mut *db.write().await?)
        .await?;
    }
    Ok(())
}

/// What every member of `group` watches, read in one round trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct GroupMarks {
    /// How often the group was rewound (0: never).
    epoch: i64,
    /// The generation of the broker group it is consumed through (0: the
    /// first, named as the group).
    broker_generation: i64,
}

async fn group_marks(db: &Db, group: &str) -> Result<GroupMarks, sqlx::Error> {
    let (epoch, broker_generation): (i64, i64) = sqlx::query_as(
        "SELECT
             COALESCE((SELECT epoch FROM kart_consumer_epochs WHERE consumer_group = $1), 0),
             COALESCE((SELECT generation FROM kart_consumer_broker_groups
                       WHERE consumer_group = $1), 0)",
    )
    .bind(group)
    .fetch_one(&mut *db.write().await?)
    .await?;
    Ok(GroupMarks {
        epoch,
        broker_generation,
    })
}

/// The broker's name for generation `generation` of `group`'s broker group.
fn broker_group_name(group: &str, generation: i64) -> String {
    if generation == 0 {
        group.to_owned()
    } else {
        format!("{group}-{generation}")
    }
}

/// Moves `group` on from broker group generation `from` to the next. Members
/// that find the group stuck together move it once: only the first to come
/// from `from` changes it, the others follow that move.
async fn move_broker_group(db: &Db, group: &str, from: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO kart_consumer_broker_groups (consumer_group, generation) VALUES ($1, $2)
         ON CONFLICT (consumer_group) DO UPDATE SET generation = excluded.generation
         WHERE kart_consumer_broker_groups.generation = $3",
    )
    .bind(group)
    .bind(from + 1)
    .bind(from)
    .execute(&mut *db.write().await?)
    .await?;
    Ok(())
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
    .fetch_all(&mut *db.write().await?)
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
    .fetch_optional(&mut *db.write().await?)
    .await
}

/// The upsert that moves the group's position forward in `count`
/// partitions, each bound from `$first` on as topic, partition and next
/// offset (`$1` the group, `$2` the time), each partition once, never
/// back: a slow former owner of a partition must not rewind the group.
///
/// One statement for all of them: a batch of events usually spans several
/// partitions, and a statement per partition was the consumers' largest
/// per-order cost after the effects themselves. Callers pass `ends` sorted,
/// so two members briefly owning the same partitions lock their rows in
/// the same order. Not padded like [`inbox_insert`]: PostgreSQL refuses
/// one upsert touching a row twice, and there are only as many texts as a
/// group has partitions.
fn positions_upsert(first: usize, count: usize) -> String {
    let rows: Vec<String> = (0..count)
        .map(|i| {
            let at = first + 3 * i;
            format!("($1, ${at}, ${}, ${}, $2)", at + 1, at + 2)
        })
        .collect();
    format!(
        "INSERT INTO kart_consumer_offsets
             (consumer_group, topic, partition_id, next_offset, updated_at)
         VALUES {}
         ON CONFLICT (consumer_group, topic, partition_id) DO UPDATE SET
             next_offset = CASE
                 WHEN excluded.next_offset > kart_consumer_offsets.next_offset
                 THEN excluded.next_offset
                 ELSE kart_consumer_offsets.next_offset END,
             updated_at = excluded.updated_at",
        rows.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The seeks for a position go to it, then ever further back, to the
    /// log's start and no further; a start that is sought and still
    /// delivered past stops them.
    #[test]
    fn seeking_back_for_a_position_doubles_its_step_down_to_the_start() {
        let targets =
            |next: i64| -> Vec<i64> { (0..).map_while(|seeks| seek_target(next, seeks)).collect() };
        assert_eq!(targets(66), vec![66, 65, 63, 59, 51, 35, 3, 0]);
        assert_eq!(targets(8), vec![8, 7, 5, 1, 0]);
        assert_eq!(targets(1), vec![1, 0]);
        assert_eq!(targets(0), vec![0]);
        // A long log: a seek for each doubling, not one per record.
        let far = targets(1 << 40);
        assert_eq!(far.len(), 42);
        assert_eq!(far.last(), Some(&0));
        assert!(far.windows(2).all(|pair| pair[1] < pair[0]));
    }

    /// A batch's inbox rows and positions are written in one round trip:
    /// each id is fresh once, each position only moves forward (a former
    /// owner's lower offset leaves its partition where the group already
    /// was), and a batch rolled back leaves neither.
    async fn a_batch_records_its_events_and_moves_its_positions(db: Db) {
        let record = |ids: Vec<&'static str>, ends: Vec<((&'static str, i32), i64)>| {
            let db = db.clone();
            async move {
                let mut tx = db.begin().await.unwrap();
                let fresh = record_batch(&mut tx, "inventory", &ids, &ends)
                    .await
                    .unwrap();
                tx.commit().await.unwrap();
                fresh
            }
        };
        let stored = || async {
            positions(&db, Some("inventory"))
                .await
                .unwrap()
                .into_iter()
                .map(|p| (p.partition, p.next_offset))
                .collect::<Vec<_>>()
        };
        // As a consumer batch opens its transaction.
        let (tx, first) = begin_and_record_batch(
            &db,
            "inventory",
            &["evt_a", "evt_b", "evt_a"],
            &[(("order.events", 0), 7), (("order.events", 1), 3)],
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(first, [true, true, false]);
        let second = record(
            vec!["evt_b", "evt_c"],
            vec![
                (("order.events", 0), 5),
                (("order.events", 1), 4),
                (("order.events", 2), 9),
            ],
        );
        assert_eq!(second.await, [false, true]);
        assert_eq!(stored().await, [(0, 7), (1, 4), (2, 9)]);

        let mut tx = db.begin().await.unwrap();
        let ends = [(("order.events", 0), 20)];
        assert_eq!(
            record_batch(&mut tx, "inventory", &["evt_d"], &ends)
                .await
                .unwrap(),
            [true]
        );
        tx.rollback().await.unwrap();
        assert_eq!(stored().await, [(0, 7), (1, 4), (2, 9)], "rolled back");
        // A batch's transaction dropped without a commit: its inbox rows
        // and positions were written inside it, not before it began.
        let (tx, fresh) = begin_and_record_batch(&db, "inventory", &["evt_d"], &ends)
            .await
            .unwrap();
        assert_eq!(fresh, [true]);
        drop(tx);
        assert_eq!(stored().await, [(0, 7), (1, 4), (2, 9)], "dropped");

        // Either half alone, as a dead letter and a skipped event write them.
        assert_eq!(record(vec!["evt_d"], vec![]).await, [true]);
        assert!(
            record(vec![], vec![(("order.events", 0), 8)])
                .await
                .is_empty()
        );
        assert_eq!(stored().await, [(0, 8), (1, 4), (2, 9)]);
    }

    #[tokio::test]
    async fn a_batch_records_its_events_and_moves_its_positions_on_sqlite() {
        a_batch_records_its_events_and_moves_its_positions(
            crate::db::in_memory_with_kit_tables().await,
        )
        .await;
    }

    #[tokio::test]
    async fn a_batch_records_its_events_and_moves_its_positions_on_postgres() {
        let db = crate::testing::postgres_db().await;
        crate::migrate::run(&db, "kit", crate::service::KIT_MIGRATIONS)
            .await
            .expect("kit's migrations apply");
        a_batch_records_its_events_and_moves_its_positions(db).await;
    }

    fn at(partition: i32, next_offset: i64) -> GroupPosition {
        GroupPosition {
            group: "inventory".into(),
            topic: "order.events".into(),
            partition,
            next_offset,
        }
    }

    #[test]
    fn a_group_is_stuck_only_once_its_positions_stood_still_for_the_whole_standstill() {
        let start = tokio::time::Instant::now();
        let mut standstill = Standstill::default();
        let waiting = || Some(vec![at(0, 7), at(1, 3)]);
        assert!(!standstill.stuck(start, waiting()));
        assert!(!standstill.stuck(start + STANDSTILL / 2, waiting()));
        assert!(!standstill.stuck(start + STANDSTILL - Duration::from_millis(1), waiting()));
        assert!(standstill.stuck(start + STANDSTILL, waiting()));
        // Having moved the group, the member waits a whole standstill again.
        assert!(!standstill.stuck(start + STANDSTILL * 3 / 2, waiting()));
        assert!(standstill.stuck(start + STANDSTILL * 5 / 2, waiting()));
    }

    #[test]
    fn a_spare_member_stays_while_others_apply_the_events() {
        let start = tokio::time::Instant::now();
        let mut standstill = Standstill::default();
        // Another member moves the positions on: never stuck.
        for step in 0..10 {
            let now = start + STANDSTILL / 2 * step;
            let positions = vec![at(0, 7 + i64::from(step)), at(1, 3)];
            assert!(!standstill.stuck(now, Some(positions)), "step {step}");
        }
    }

    #[test]
    fn holding_partitions_or_nothing_waiting_starts_the_clock_again() {
        let start = tokio::time::Instant::now();
        let mut standstill = Standstill::default();
        let waiting = || Some(vec![at(0, 7)]);
        assert!(!standstill.stuck(start, waiting()));
        // The member got partitions (or caught up) for a moment.
        assert!(!standstill.stuck(start + STANDSTILL / 2, None));
        assert!(!standstill.stuck(start + STANDSTILL, waiting()));
        assert!(!standstill.stuck(start + STANDSTILL * 3 / 2, waiting()));
        assert!(standstill.stuck(start + STANDSTILL * 2, waiting()));
    }
}
