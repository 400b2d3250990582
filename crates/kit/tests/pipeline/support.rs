//! The harness behind the pipeline tests: a database and a bus of the chosen
//! kinds, a test handler that records its effects in the database, and bus
//! wrappers that crash or dawdle on purpose.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support: failing loudly is the point

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use kit::bus::{
    BusError, Delivery, EventBus, Record, SharedBus, Subscription, TopicInfo, TopicSpec,
};
use kit::cloudevents::{CloudEvent, new_event_id};
use kit::consumer::{ConsumerRunner, ConsumerSpec, Handler, HandlerError, RetryPolicy};
use kit::metrics::Metrics;
use kit::migrate::Migration;
use kit::outbox::Relay;
use kit::telemetry::TraceParent;
use kit::{Db, Tx};
use sqlx::Row;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Copy)]
pub enum DbChoice {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone, Copy)]
pub enum BusChoice {
    Embedded,
    Kafka,
}

const TEST_MIGRATIONS: &[Migration] = &[Migration::portable(
    1,
    "test_tables",
    "CREATE TABLE test_states (name TEXT PRIMARY KEY);
     CREATE TABLE test_effects (
         consumer_group TEXT NOT NULL,
         member TEXT NOT NULL,
         event_id TEXT NOT NULL,
         event_key TEXT NOT NULL,
         seq BIGINT NOT NULL,
         applied_seq BIGINT NOT NULL
     );
     CREATE TABLE test_tallies (consumer_group TEXT NOT NULL, events BIGINT NOT NULL);",
)];

#[derive(Default)]
struct Stats {
    handler_calls: AtomicU64,
    attempts_by_seq: Mutex<HashMap<u32, u32>>,
    applied: AtomicI64,
}

pub struct Harness {
    pub db: Db,
    pub bus: SharedBus,
    pub metrics: Metrics,
    stats: Arc<Stats>,
    _dir: tempfile::TempDir,
}

#[derive(Debug, Clone)]
pub struct Effect {
    pub member: String,
    pub key: String,
    pub seq: u32,
}

#[derive(Debug, Clone, Copy)]
pub enum Behaviour {
    Succeed,
    /// Fails (retryably) on the event with this seq, every time.
    FailSeq(u32),
}

pub struct RunningConsumer {
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl RunningConsumer {
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap();
    }
}

impl Harness {
    pub async fn new(db: DbChoice, bus: BusChoice) -> Harness {
        // Consumer and relay logs, shown by nextest when a test fails.
        let _telemetry = kit::telemetry::init(
            &kit::config::TelemetrySettings {
                log_level: "info".into(),
                log_format: kit::config::LogFormat::Pretty,
                otlp_endpoint: None,
            },
            "pipeline-test",
        );
        let dir = tempfile::tempdir().unwrap();
        let db = match db {
            DbChoice::Sqlite => kit::testing::sqlite_db(dir.path()).await,
            DbChoice::Postgres => kit::testing::postgres_db().await,
        };
        let db = kit::testing::migrated(db, "test", TEST_MIGRATIONS).await;
        let bus = match bus {
            BusChoice::Embedded => kit::testing::embedded_bus(dir.path()).await,
            BusChoice::Kafka => kit::testing::kafka_bus().await,
        };
        Harness {
            db,
            bus,
            metrics: Metrics::new("test"),
            stats: Arc::default(),
            _dir: dir,
        }
    }

    pub async fn insert_state(&self, tx: &mut Tx, name: &str) {
        sqlx::query("INSERT INTO test_states (name) VALUES ($1)")
            .bind(name)
            .execute(&mut **tx)
            .await
            .unwrap();
    }

    pub async fn states(&self) -> Vec<String> {
        sqlx::query_scalar("SELECT name FROM test_states ORDER BY name")
            .fetch_all(&mut *self.db.write().await.expect("a connection"))
            .await
            .unwrap()
    }

    pub fn relay(&self) -> Relay {
        Relay::new(
            self.db.clone(),
            Arc::clone(&self.bus),
            self.metrics.clone(),
            Default::default(),
        )
    }

    pub fn handler(&self, member: &str, behaviour: Behaviour) -> TestHandler {
        TestHandler {
            member: member.to_owned(),
            behaviour,
            stats: Arc::clone(&self.stats),
            group: "g".to_owned(),
        }
    }

    pub fn start_consumer(
        &self,
        group: &str,
        topic: &str,
        member: &str,
        behaviour: Behaviour,
    ) -> RunningConsumer {
        let mut handler = self.handler(member, behaviour);
        handler.group = group.to_owned();
        self.start_consumer_spec(ConsumerSpec {
            group: group.to_owned(),
            topics: vec![topic.to_owned()],
            dead_letter_topic: format!("{topic}.dlq"),
            handler: Arc::new(handler),
            retry: RetryPolicy {
                max_attempts: 3,
                initial_backoff: Duration::from_millis(5),
                max_backoff: Duration::from_millis(20),
            },
            max_batch: kit::consumer::DEFAULT_MAX_BATCH,
        })
    }

    pub fn start_consumer_spec(&self, spec: ConsumerSpec) -> RunningConsumer {
        let shutdown = CancellationToken::new();
        let runner = ConsumerRunner {
            spec,
            db: self.db.clone(),
            bus: Arc::clone(&self.bus),
            metrics: self.metrics.clone(),
            outbox: Default::default(),
        };
        let task = tokio::spawn(runner.run(shutdown.clone()));
        RunningConsumer { shutdown, task }
    }

    /// Effects in the order they were applied.
    pub async fn effects_for(&self, group: &str) -> Vec<Effect> {
        sqlx::query(
            "SELECT member, event_key, seq FROM test_effects
             WHERE consumer_group = $1 ORDER BY applied_seq",
        )
        .bind(group)
        .fetch_all(&mut *self.db.write().await.expect("a connection"))
        .await
        .unwrap()
        .into_iter()
        .map(|row| Effect {
            member: row.get(0),
            key: row.get(1),
            seq: u32::try_from(row.get::<i64, _>(2)).unwrap(),
        })
        .collect()
    }

    /// The events each committed transaction of the group handed to
    /// `Handler::handled_all`, one entry per transaction.
    pub async fn tallies_for(&self, group: &str) -> Vec<i64> {
        sqlx::query_scalar("SELECT events FROM test_tallies WHERE consumer_group = $1")
            .bind(group)
            .fetch_all(&mut *self.db.write().await.expect("a connection"))
            .await
            .unwrap()
    }

    /// Deliveries the inbox recognised as already applied, from /metrics.
    pub fn duplicates_seen(&self, group: &str) -> u64 {
        let wanted = format!("group=\"{group}\"");
        self.metrics
            .encode()
            .lines()
            .filter(|l| l.starts_with("kart_events_consumed_total"))
            .filter(|l| l.contains(&wanted) && l.contains("outcome=\"duplicate\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }

    /// Times `group` was found stuck and moved to a fresh broker group,
    /// from /metrics.
    pub fn group_moves_seen(&self, group: &str) -> u64 {
        let wanted = format!("group=\"{group}\"");
        self.metrics
            .encode()
            .lines()
            .filter(|l| l.starts_with("kart_consumer_group_moves_total") && l.contains(&wanted))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }

    /// Transactions the group committed and events they applied, from the
    /// batch-size histogram on /metrics.
    pub fn batches_seen(&self, group: &str) -> (u64, u64) {
        let wanted = format!("group=\"{group}\"");
        let read = |name: &str| -> u64 {
            self.metrics
                .encode()
                .lines()
                .filter(|l| l.starts_with(name) && l.contains(&wanted))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .map(|v| v as u64)
                .sum()
        };
        (
            read("kart_consumer_batch_size_count"),
            read("kart_consumer_batch_size_sum"),
        )
    }

    pub fn handler_calls(&self) -> u64 {
        self.stats.handler_calls.load(Ordering::SeqCst)
    }

    pub fn attempts_on_seq(&self, seq: u32) -> u32 {
        self.stats
            .attempts_by_seq
            .lock()
            .unwrap()
            .get(&seq)
            .copied()
            .unwrap_or(0)
    }

    /// Sets the group's stored positions back to the start, as if its
    /// database had never seen the records (the bus still has its commits).
    pub async fn rewind_positions(&self, group: &str) {
        sqlx::query("UPDATE kart_consumer_offsets SET next_offset = 0 WHERE consumer_group = $1")
            .bind(group)
            .execute(&mut *self.db.write().await.expect("a connection"))
            .await
            .unwrap();
    }
}

pub struct TestHandler {
    member: String,
    group: String,
    behaviour: Behaviour,
    stats: Arc<Stats>,
}

#[async_trait]
impl Handler for TestHandler {
    async fn handle(&self, tx: &mut Tx, event: &CloudEvent) -> Result<(), HandlerError> {
        self.stats.handler_calls.fetch_add(1, Ordering::SeqCst);
        let data: serde_json::Value =
            serde_json::from_slice(&event.data).map_err(|e| HandlerError::Reject(e.into()))?;
        let seq = data["seq"]
            .as_u64()
            .and_then(|s| u32::try_from(s).ok())
            .ok_or_else(|| HandlerError::Reject(anyhow::anyhow!("no seq")))?;
        if let Behaviour::FailSeq(bad) = self.behaviour
            && bad == seq
        {
            *self
                .stats
                .attempts_by_seq
                .lock()
                .unwrap()
                .entry(seq)
                .or_default() += 1;
            return Err(HandlerError::Retry(anyhow::anyhow!(
                "test handler refuses seq {seq}"
            )));
        }
        sqlx::query(
            "INSERT INTO test_effects (consumer_group, member, event_id, event_key, seq, applied_seq)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&self.group)
        .bind(&self.member)
        .bind(&event.id)
        .bind(&event.subject)
        .bind(i64::from(seq))
        .bind(self.stats.applied.fetch_add(1, Ordering::SeqCst))
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    async fn handled_all(&self, tx: &mut Tx, events: &[&CloudEvent]) -> Result<(), sqlx::Error> {
        sqlx::query("INSERT INTO test_tallies (consumer_group, events) VALUES ($1, $2)")
            .bind(&self.group)
            .bind(i64::try_from(events.len()).unwrap())
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
}

/// Creates `topic` with `partitions` partitions on `bus`.
pub async fn create_topic(bus: &(impl EventBus + ?Sized), topic: &str, partitions: i32) {
    bus.create_topics(&[TopicSpec {
        name: topic.to_owned(),
        partitions,
    }])
    .await
    .unwrap();
}

/// A test event about aggregate `key`, carrying `seq`.
pub fn event(key: &str, seq: u32) -> CloudEvent {
    CloudEvent {
        id: new_event_id(),
        event_type: "kart.test.happened.v1".into(),
        source: "/kart/test".into(),
        subject: key.to_owned(),
        time: chrono::Utc::now(),
        traceparent: Some(TraceParent::new_root()),
        data: serde_json::to_vec(&serde_json::json!({ "seq": seq })).unwrap(),
    }
}

/// Polls `condition` until it holds; fails the test after 60 s.
pub async fn eventually<F, Fut>(what: &str, condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    eventually_within(what, Duration::from_secs(60), condition).await;
}

/// Waits until `condition` holds; fails after `limit`.
pub async fn eventually_within<F, Fut>(what: &str, limit: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if condition().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Reads `expected` records of `topic` with a fresh group (fails after 60 s).
pub async fn read_all(bus: &SharedBus, topic: &str, expected: usize) -> Vec<Delivery> {
    let mut subscription = bus
        .subscribe(&kit::testing::unique("reader"), &[topic.to_owned()])
        .await
        .unwrap();
    let mut out = Vec::new();
    let deadline = Duration::from_secs(60);
    tokio::time::timeout(deadline, async {
        while out.len() < expected {
            out.push(subscription.next().await.unwrap());
        }
    })
    .await
    .unwrap_or_else(|_| panic!("read {} of {expected} records of {topic}", out.len()));
    out
}

/// Delegates to a real bus, with faults on purpose:
/// - `partial_crashes`: on every other publish, while they last, writes only
///   the first half of the batch and then fails (a relay that died halfway
///   through a batch);
/// - `delay_after_publish`: dawdles after each publish, widening the window
///   between "published" and "deleted from the outbox" where a killed relay
///   leaves rows to be published again.
pub struct FaultyBus {
    inner: SharedBus,
    partial_crashes_left: AtomicU32,
    delay_after_publish: Duration,
    calls: AtomicU32,
}

impl FaultyBus {
    pub fn crashing(inner: SharedBus, partial_crashes: u32) -> SharedBus {
        Self::wrap(inner, partial_crashes, Duration::ZERO)
    }

    pub fn slow(inner: SharedBus) -> SharedBus {
        Self::wrap(inner, 0, Duration::from_millis(4))
    }

    fn wrap(inner: SharedBus, partial_crashes: u32, delay_after_publish: Duration) -> SharedBus {
        Arc::new(FaultyBus {
            inner,
            partial_crashes_left: AtomicU32::new(partial_crashes),
            delay_after_publish,
            calls: AtomicU32::new(0),
        })
    }
}

#[async_trait]
impl EventBus for FaultyBus {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    async fn create_topics(&self, topics: &[TopicSpec]) -> Result<(), BusError> {
        self.inner.create_topics(topics).await
    }
    async fn publish(&self, records: &[Record]) -> Result<(), BusError> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        if call % 2 == 1
            && records.len() >= 2
            && self.partial_crashes_left.load(Ordering::SeqCst) > 0
        {
            self.partial_crashes_left.fetch_sub(1, Ordering::SeqCst);
            self.inner.publish(&records[..records.len() / 2]).await?;
            return Err(BusError::Other("simulated crash mid-batch".into()));
        }
        self.inner.publish(records).await?;
        tokio::time::sleep(self.delay_after_publish).await;
        Ok(())
    }
    async fn subscribe(
        &self,
        group: &str,
        topics: &[String],
    ) -> Result<Box<dyn Subscription>, BusError> {
        self.inner.subscribe(group, topics).await
    }
    async fn ping(&self) -> Result<(), BusError> {
        self.inner.ping().await
    }
    async fn describe_topics(&self) -> Result<Vec<TopicInfo>, BusError> {
        self.inner.describe_topics().await
    }
}
