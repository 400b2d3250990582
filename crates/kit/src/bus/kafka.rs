//! The event bus on a Kafka-protocol broker, through librdkafka.
//!
//! The producer is idempotent by default (`enable.idempotence`, `acks=all`),
//! so its own retries neither duplicate nor reorder records. Where a broker
//! mishandles idempotence (see `bus.idempotent_producer`) it falls back to
//! one request in flight per connection, which keeps order at some cost.
//!
//! Consumers join groups with auto-commit off; positions are committed after
//! the handler's transaction, and only as a hint (see [`crate::consumer`]).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers as _, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::{BusError, Delivery, EventBus, Record, Subscription, TopicInfo, TopicSpec};
use crate::config::{BusSettings, parse_broker_list};

/// How long metadata and admin calls may take.
const METADATA_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one call of the producer's polling thread waits for delivery
/// reports. rdkafka's `BaseProducer::poll` (0.38) loops until its
/// deadline, handing librdkafka the time left in whole milliseconds; under
/// one millisecond that is zero, which returns at once, so every call
/// spins through its last millisecond. With the 100 ms calls of rdkafka's
/// own polling thread (`FutureProducer`'s) that was 4 to 9 ms of CPU a
/// second in every idle process (eight idle services: 130 ms/s in all,
/// 65 with this thread). A report is handed to its publisher the moment
/// it arrives, whatever the window, so the long window costs no latency;
/// it bounds only how long a dropped bus's producer outlives it.
const PRODUCER_POLL_WINDOW: Duration = Duration::from_secs(1);

/// A Kafka-protocol broker (Apache Kafka, or a compatible one).
#[derive(Clone)]
pub struct KafkaBus {
    brokers: String,
    producer: Arc<BaseProducer<Deliveries>>,
    replication_factor: i32,
    default_partitions: i32,
    /// Put before every topic and group name on the broker; see
    /// [`BusSettings::namespace`].
    namespace: Namespace,
    /// Topics known to exist, so each is created at most once per process.
    known_topics: Arc<Mutex<HashSet<String>>>,
    /// Makes consumers static group members; see [`BusSettings::instance_id`].
    instance_id: Option<String>,
    /// See [`BusSettings::fetch_wait_ms`].
    fetch_wait_ms: u32,
}

/// Kart's names (`order.events`, `inventory`) to the broker's and back.
#[derive(Clone, Default)]
struct Namespace(String);

impl Namespace {
    fn outside(&self, name: &str) -> String {
        format!("{}{name}", self.0)
    }

    /// Kart's name for a broker name, if it is in this namespace.
    fn inside<'a>(&self, name: &'a str) -> Option<&'a str> {
        name.strip_prefix(self.0.as_str())
    }
}

impl KafkaBus {
    /// Creates the producer and checks that a broker answers.
    pub async fn connect(settings: &BusSettings) -> Result<KafkaBus, BusError> {
        parse_broker_list(&settings.brokers)
            .map_err(|problem| BusError::Unreachable(format!("bus.brokers: {problem}")))?;
        let mut config = base_config(&settings.brokers);
        config
            .set("acks", "all")
            .set("linger.ms", "1")
            .set("message.timeout.ms", "30000")
            .set(
                "enable.idempotence",
                settings.idempotent_producer.to_string(),
            );
        if !settings.idempotent_producer {
            // Without idempotence, retries could reorder batches in flight.
            config.set("max.in.flight.requests.per.connection", "1");
        }
        let log = ClientLog::quiet();
        let producer: Arc<BaseProducer<Deliveries>> = Arc::new(
            config
                .create_with_context(Deliveries { log: log.clone() })
                .map_err(|e| BusError::Unreachable(e.to_string()))?,
        );
        poll_deliveries(&producer)?;
        let bus = KafkaBus {
            brokers: settings.brokers.clone(),
            producer,
            replication_factor: settings.replication_factor,
            default_partitions: settings.partitions,
            namespace: Namespace(settings.namespace.clone()),
            known_topics: Arc::default(),
            instance_id: settings.instance_id.clone(),
            fetch_wait_ms: settings.fetch_wait_ms,
        };
        bus.ping().await?;
        log.speak();
        Ok(bus)
    }

    /// Creates the topics among `names` not known to exist yet, with the
    /// default partition count: the same auto-creation the embedded bus
    /// does, without depending on the broker's `auto.create.topics.enable`.
    async fn ensure_topics<'a>(
        &self,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), BusError> {
        let unknown: Vec<TopicSpec> = {
            let known = self
                .known_topics
                .lock()
                .map_err(|e| BusError::Other(e.to_string()))?;
            let mut unknown: Vec<TopicSpec> = names
                .into_iter()
                .filter(|name| !known.contains(*name))
                .map(|name| TopicSpec {
                    name: name.to_owned(),
                    partitions: self.default_partitions,
                })
                .collect();
            unknown.sort_by(|a, b| a.name.cmp(&b.name));
            unknown.dedup();
            unknown
        };
        if unknown.is_empty() {
            Ok(())
        } else {
            self.create_topics(&unknown).await
        }
    }

    fn admin(&self) -> Result<AdminClient<ClientLog>, BusError> {
        base_config(&self.brokers)
            .create_with_context(ClientLog::speaking())
            .map_err(|e| BusError::Unreachable(e.to_string()))
    }
}

/// Every client's settings: errors only from librdkafka's log. The level
/// is said twice because librdkafka takes `log_level` while the client is
/// made, and rdkafka then sets the client's level again from its own
/// [`ClientConfig::set_log_level`], which it would otherwise derive from
/// the `log` crate's global level.
fn base_config(brokers: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("socket.timeout.ms", "10000")
        .set("log_level", "3")
        .set_log_level(RDKafkaLogLevel::Error);
    config
}

#[async_trait]
impl EventBus for KafkaBus {
    fn kind(&self) -> &'static str {
        "kafka"
    }

    async fn create_topics(&self, topics: &[TopicSpec]) -> Result<(), BusError> {
        if topics.is_empty() {
            return Ok(());
        }
        let admin = self.admin()?;
        let names: Vec<String> = topics
            .iter()
            .map(|t| self.namespace.outside(&t.name))
            .collect();
        let new_topics: Vec<NewTopic<'_>> = topics
            .iter()
            .zip(&names)
            .map(|(t, name)| {
                NewTopic::new(
                    name,
                    t.partitions,
                    TopicReplication::Fixed(self.replication_factor),
                )
            })
            .collect();
        let options = AdminOptions::new().operation_timeout(Some(METADATA_TIMEOUT));
        let results = admin
            .create_topics(&new_topics, &options)
            .await
            .map_err(|e| BusError::Other(format!("creating topics: {e}")))?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => {
                    return Err(BusError::Other(format!("creating topic {topic}: {code}")));
                }
            }
        }
        if let Ok(mut known) = self.known_topics.lock() {
            known.extend(topics.iter().map(|t| t.name.clone()));
        }
        Ok(())
    }

    async fn publish(&self, records: &[Record]) -> Result<(), BusError> {
        self.ensure_topics(records.iter().map(|r| r.topic.as_str()))
            .await?;
        let mut pending = Vec::with_capacity(records.len());
        for record in records {
            let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
            for (key, value) in &record.headers {
                headers = headers.insert(Header {
                    key,
                    value: Some(value.as_bytes()),
                });
            }
            let topic = self.namespace.outside(&record.topic);
            let (delivered, delivery) = tokio::sync::oneshot::channel();
            let mut message = BaseRecord::with_opaque_to(&topic, Box::new(delivered))
                .key(record.key.as_bytes())
                .payload(record.payload.as_slice())
                .headers(headers);
            // Enqueue everything first, then wait: one round trip per batch,
            // not per record. librdkafka keeps enqueue order per partition.
            loop {
                match self.producer.send(message) {
                    Ok(()) => {
                        pending.push((record.topic.as_str(), delivery));
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        message = back;
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                    Err((error, _)) => {
                        return Err(BusError::Publish {
                            topic: record.topic.clone(),
                            reason: error.to_string(),
                        });
                    }
                }
            }
        }
        for (topic, delivery) in pending {
            match delivery.await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    return Err(BusError::Publish {
                        topic: topic.to_owned(),
                        reason: error.to_string(),
                    });
                }
                Err(_) => {
                    return Err(BusError::Publish {
                        topic: topic.to_owned(),
                        reason: "producer shut down before delivery".into(),
                    });
                }
            }
        }
        Ok(())
    }

    async fn subscribe(
        &self,
        group: &str,
        topics: &[String],
    ) -> Result<Box<dyn Subscription>, BusError> {
        self.ensure_topics(topics.iter().map(String::as_str))
            .await?;
        let generation = Arc::new(AtomicU64::new(0));
        let context = GroupContext {
            generation: Arc::clone(&generation),
            log: ClientLog::speaking(),
        };
        let mut config = base_config(&self.brokers);
        config
            .set("group.id", self.namespace.outside(group))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "1000")
            .set("topic.metadata.refresh.interval.ms", "5000")
            .set("fetch.wait.max.ms", self.fetch_wait_ms.to_string());
        if let Some(instance) = &self.instance_id {
            // Unique per group and process: the group's name, then this
            // process's stable name.
            config.set(
                "group.instance.id",
                format!("{}.{instance}", self.namespace.outside(group)),
            );
        }
        let consumer: StreamConsumer<GroupContext> = config
            .create_with_context(context)
            .map_err(|e| BusError::Unreachable(e.to_string()))?;
        let names: Vec<String> = topics.iter().map(|t| self.namespace.outside(t)).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        consumer
            .subscribe(&names)
            .map_err(|e| BusError::Other(format!("subscribing to {names:?}: {e}")))?;
        Ok(Box::new(KafkaSubscription {
            consumer,
            generation,
            namespace: self.namespace.clone(),
        }))
    }

    async fn ping(&self) -> Result<(), BusError> {
        let producer = self.producer.clone();
        let brokers = self.brokers.clone();
        tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(None, METADATA_TIMEOUT)
                .map(drop)
                .map_err(|e| {
                    BusError::Unreachable(format!("no Kafka broker answered at {brokers}: {e}"))
                })
        })
        .await
        .map_err(|e| BusError::Other(e.to_string()))?
    }

    async fn describe_topics(&self) -> Result<Vec<TopicInfo>, BusError> {
        let producer = self.producer.clone();
        let namespace = self.namespace.clone();
        tokio::task::spawn_blocking(move || {
            let client = producer.client();
            let metadata = client
                .fetch_metadata(None, METADATA_TIMEOUT)
                .map_err(|e| BusError::Unreachable(e.to_string()))?;
            let mut infos = Vec::new();
            for topic in metadata.topics() {
                let Some(name) = namespace.inside(topic.name()) else {
                    continue;
                };
                if name.starts_with("__") {
                    continue;
                }
                let mut ends = Vec::new();
                for partition in topic.partitions() {
                    let (_, high) = client
                        .fetch_watermarks(topic.name(), partition.id(), METADATA_TIMEOUT)
                        .map_err(|e| BusError::Other(e.to_string()))?;
                    ends.push(high);
                }
                infos.push(TopicInfo {
                    name: name.to_owned(),
                    partition_ends: ends,
                });
            }
            infos.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(infos)
        })
        .await
        .map_err(|e| BusError::Other(e.to_string()))?
    }
}

/// Sends librdkafka's own log and errors (a broker refusing connections, a
/// lost group coordinator) to the service's log, as events with target
/// `librdkafka`. rdkafka's default context writes them through the `log`
/// crate, which nothing here listens to: a service that only produces said
/// nothing while its broker was down. `base_config` asks for errors only.
///
/// The producer's stays quiet until the broker has answered once:
/// [`KafkaBus::connect`] reports an unreachable broker as its own error,
/// and a service that cannot start says so in one line.
#[derive(Clone)]
struct ClientLog {
    speaking: Arc<AtomicBool>,
}

impl ClientLog {
    fn speaking() -> ClientLog {
        ClientLog {
            speaking: Arc::new(AtomicBool::new(true)),
        }
    }

    fn quiet() -> ClientLog {
        ClientLog {
            speaking: Arc::new(AtomicBool::new(false)),
        }
    }

    fn speak(&self) {
        self.speaking.store(true, Ordering::Relaxed);
    }
}

impl ClientContext for ClientLog {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        if !self.speaking.load(Ordering::Relaxed) {
            return;
        }
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", facility, "{message}");
            }
            RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", facility, "{message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", facility, "{message}");
            }
            RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", facility, "{message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if self.speaking.load(Ordering::Relaxed) {
            tracing::error!(target: "librdkafka", %error, "{reason}");
        }
    }
}

/// The producer's context: each record's delivery report goes to the
/// publisher waiting on it, and librdkafka's log to [`ClientLog`].
struct Deliveries {
    log: ClientLog,
}

impl ClientContext for Deliveries {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        self.log.log(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.log.error(error, reason);
    }
}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = Box<tokio::sync::oneshot::Sender<Result<(), KafkaError>>>;

    fn delivery(&self, result: &DeliveryResult<'_>, delivered: Self::DeliveryOpaque) {
        // The publisher may have gone (its task was cancelled): nobody to tell.
        let _ = delivered.send(
            result
                .as_ref()
                .map(|_| ())
                .map_err(|(error, _)| error.clone()),
        );
    }
}

/// Serves the producer's delivery reports on a thread of its own for as
/// long as the producer is in use; once the bus and its clones are gone,
/// the thread lets go of it within [`PRODUCER_POLL_WINDOW`], and dropping
/// it then answers any record still queued (as not delivered).
fn poll_deliveries(producer: &Arc<BaseProducer<Deliveries>>) -> Result<(), BusError> {
    let producer = Arc::downgrade(producer);
    std::thread::Builder::new()
        .name("kart-deliveries".into())
        .spawn(move || {
            while let Some(producer) = producer.upgrade() {
                producer.poll(PRODUCER_POLL_WINDOW);
            }
        })
        .map(drop)
        .map_err(|error| BusError::Other(format!("cannot start the producer's thread: {error}")))
}

/// Counts rebalances so the consumer runner knows to drop cached positions.
struct GroupContext {
    generation: Arc<AtomicU64>,
    log: ClientLog,
}

impl ClientContext for GroupContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        self.log.log(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.log.error(error, reason);
    }
}

impl ConsumerContext for GroupContext {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Error(error) = rebalance {
            tracing::warn!(%error, "consumer group rebalance failed");
        }
        self.generation.fetch_add(1, Ordering::SeqCst);
    }
}

struct KafkaSubscription {
    consumer: StreamConsumer<GroupContext>,
    generation: Arc<AtomicU64>,
    namespace: Namespace,
}

#[async_trait]
impl Subscription for KafkaSubscription {
    async fn next(&mut self) -> Result<Delivery, BusError> {
        let message = self
            .consumer
            .recv()
            .await
            .map_err(|e| BusError::Other(e.to_string()))?;
        let headers = message
            .headers()
            .map(|headers| {
                headers
                    .iter()
                    .map(|h| {
                        (
                            h.key.to_owned(),
                            String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let topic = self
            .namespace
            .inside(message.topic())
            .unwrap_or(message.topic());
        Ok(Delivery {
            topic: topic.to_owned(),
            partition: message.partition(),
            offset: message.offset(),
            key: String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned(),
            headers,
            payload: message.payload().unwrap_or_default().to_vec(),
        })
    }

    async fn seek(&mut self, topic: &str, partition: i32, offset: i64) -> Result<(), BusError> {
        self.consumer
            .seek(
                &self.namespace.outside(topic),
                partition,
                Offset::Offset(offset),
                METADATA_TIMEOUT,
            )
            .map_err(|e| BusError::Other(format!("seek {topic}/{partition}@{offset}: {e}")))
    }

    async fn commit(
        &mut self,
        topic: &str,
        partition: i32,
        next_offset: i64,
    ) -> Result<(), BusError> {
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(
            &self.namespace.outside(topic),
            partition,
            Offset::Offset(next_offset),
        )
        .map_err(|e| BusError::Other(e.to_string()))?;
        self.consumer
            .commit(&list, CommitMode::Async)
            .map_err(|e| BusError::Other(e.to_string()))
    }

    fn assignment_generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    fn assignment(&self) -> Vec<(String, i32)> {
        self.consumer
            .assignment()
            .map(|list| {
                list.elements()
                    .iter()
                    .map(|e| {
                        let topic = self.namespace.inside(e.topic()).unwrap_or(e.topic());
                        (topic.to_owned(), e.partition())
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use rdkafka::ClientContext;
    use rdkafka::config::RDKafkaLogLevel;
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::{Context, SubscriberExt};

    use super::ClientLog;

    /// The target and level of every event.
    #[derive(Clone, Default)]
    struct Seen(Arc<Mutex<Vec<(String, tracing::Level)>>>);

    impl<S: tracing::Subscriber> Layer<S> for Seen {
        fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
            let metadata = event.metadata();
            if let Ok(mut seen) = self.0.lock() {
                seen.push((metadata.target().to_owned(), *metadata.level()));
            }
        }
    }

    #[test]
    fn librdkafka_speaks_in_the_log_once_the_broker_has_answered() {
        let seen = Seen::default();
        let subscriber = tracing_subscriber::registry().with(seen.clone());
        tracing::subscriber::with_default(subscriber, || {
            let log = ClientLog::quiet();
            let refused = "127.0.0.1:1/bootstrap: Connect failed: Connection refused";
            log.log(RDKafkaLogLevel::Error, "FAIL", refused);
            log.error(rdkafka::error::KafkaError::Canceled, refused);
            assert!(
                seen.0.lock().unwrap().is_empty(),
                "quiet before the broker answers"
            );

            log.speak();
            log.log(RDKafkaLogLevel::Error, "FAIL", refused);
            log.log(RDKafkaLogLevel::Warning, "CONFWARN", "a warning");
            log.error(rdkafka::error::KafkaError::Canceled, refused);
            ClientLog::speaking().log(RDKafkaLogLevel::Error, "FAIL", refused);
        });
        let seen = seen.0.lock().unwrap();
        let librdkafka = |level| ("librdkafka".to_owned(), level);
        assert_eq!(
            *seen,
            vec![
                librdkafka(tracing::Level::ERROR),
                librdkafka(tracing::Level::WARN),
                librdkafka(tracing::Level::ERROR),
                librdkafka(tracing::Level::ERROR),
            ]
        );
    }
}
