//! The event bus: one trait, two implementations.
//!
//! - [`kafka::KafkaBus`]: any Kafka-protocol broker through librdkafka
//!   (idempotent producer, consumer groups, manual commits).
//! - [`embedded::EmbeddedBus`]: a durable log in a local SQLite file with
//!   consumer groups of its own, for `kart up`: nothing to install.
//!
//! Both keep Kafka's model: topics split into partitions, a record's key picks
//! its partition so one aggregate's events stay in order, offsets count
//! records within a partition, and a consumer group shares a topic's
//! partitions among its members.
//!
//! The trait is deliberately small. Exactly-once *effects* are not the bus's
//! job: the consumer runner ([`crate::consumer`]) keeps each group's offsets
//! and processed event ids in the service's own database, in the same
//! transaction as the effect, and repositions the subscription from there.
//! So a broker that loses or misreports committed offsets can cost a
//! redelivery, never a lost or doubled effect.

pub mod embedded;
pub mod kafka;

use std::sync::Arc;

use async_trait::async_trait;

/// Record headers. CloudEvents attributes and `traceparent` are all text.
pub type Headers = Vec<(String, String)>;

/// A record to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub topic: String,
    pub key: String,
    pub headers: Headers,
    pub payload: Vec<u8>,
}

/// A record read from a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: String,
    pub headers: Headers,
    pub payload: Vec<u8>,
}

impl Delivery {
    /// The first header of that name.
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

/// The first header of that name in a list.
pub fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// A topic to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
}

/// What the console shows of a topic.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TopicInfo {
    pub name: String,
    /// The high watermark (next offset to be written) of each partition.
    pub partition_ends: Vec<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("event bus unreachable: {0}")]
    Unreachable(String),
    #[error("publishing to {topic} failed: {reason}")]
    Publish { topic: String, reason: String },
    #[error("event bus: {0}")]
    Other(String),
}

/// A shared handle to whichever bus the process runs on.
pub type SharedBus = Arc<dyn EventBus>;

#[async_trait]
pub trait EventBus: Send + Sync + 'static {
    /// `"kafka"` or `"embedded"`, for logs and the console.
    fn kind(&self) -> &'static str;

    /// Creates topics that do not exist yet; existing ones are left alone.
    async fn create_topics(&self, topics: &[TopicSpec]) -> Result<(), BusError>;

    /// Publishes records and returns once the bus has durably accepted all of
    /// them. Records with the same key land in the same partition in the
    /// order given. On error some may have been written: callers retry the
    /// whole batch, and consumers deduplicate by event id.
    async fn publish(&self, records: &[Record]) -> Result<(), BusError>;

    /// Joins consumer group `group` on `topics`.
    async fn subscribe(
        &self,
        group: &str,
        topics: &[String],
    ) -> Result<Box<dyn Subscription>, BusError>;

    /// Readiness: can the bus be reached right now?
    async fn ping(&self) -> Result<(), BusError>;

    /// Topics and the end offset of each partition.
    async fn describe_topics(&self) -> Result<Vec<TopicInfo>, BusError>;
}

/// One member of a consumer group.
#[async_trait]
pub trait Subscription: Send {
    /// The next record from a partition assigned to this member; waits for
    /// one. Cancel-safe: dropping the future loses no record.
    async fn next(&mut self) -> Result<Delivery, BusError>;

    /// A record that is already here, without waiting: what a consumer adds
    /// to a batch after [`Subscription::next`] returned. `None` when the
    /// next record would need a wait (or a rebalance is due).
    fn next_ready(&mut self) -> Option<Result<Delivery, BusError>> {
        use futures_util::FutureExt;
        // `next` is cancel-safe, so a read that is not ready at once is
        // dropped without losing a record.
        self.next().now_or_never()
    }

    /// Repositions a partition: its next delivery is the record at `offset`.
    async fn seek(&mut self, topic: &str, partition: i32, offset: i64) -> Result<(), BusError>;

    /// Stores the group's position on the bus. Advisory: Kart's consumers
    /// keep the authoritative position in their own database.
    async fn commit(
        &mut self,
        topic: &str,
        partition: i32,
        next_offset: i64,
    ) -> Result<(), BusError>;

    /// Counts assignment changes; a consumer drops what it cached about its
    /// partitions whenever this moves.
    fn assignment_generation(&self) -> u64;

    /// The partitions assigned to this member right now.
    fn assignment(&self) -> Vec<(String, i32)>;
}

/// The partition a key maps to. FNV-1a, so it is stable across processes and
/// releases (the embedded log's partitioning must never change under data
/// already written).
pub fn partition_for(key: &str, partitions: i32) -> i32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in key.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    let partitions = u32::try_from(partitions.max(1)).unwrap_or(1);
    i32::try_from(hash % partitions).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitioning_is_stable_and_in_range() {
        assert_eq!(partition_for("ord_1", 3), partition_for("ord_1", 3));
        for i in 0..1000 {
            let p = partition_for(&format!("key-{i}"), 3);
            assert!((0..3).contains(&p));
        }
        assert_eq!(partition_for("anything", 1), 0);
    }

    #[test]
    fn partitioning_spreads_keys() {
        let mut counts = [0; 3];
        for i in 0..3000 {
            counts[usize::try_from(partition_for(&format!("ord_{i}"), 3)).unwrap()] += 1;
        }
        assert!(counts.iter().all(|&c| c > 800), "{counts:?}");
    }
}
