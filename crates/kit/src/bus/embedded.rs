//! The embedded event log: Kafka's model in one SQLite file, for `kart up`.
//!
//! Records are rows keyed by `(topic, partition, offset)`; a record's offset
//! is the partition's end when it is written, so offsets are dense and
//! ordered. Publishing is one SQLite transaction per batch (WAL mode), so a
//! batch is on disk before `publish` returns. `synchronous=NORMAL`: a batch
//! survives a crash of the process; a crash of the machine itself may lose
//! the last batches written (the trade Kafka makes with its default
//! `flush.messages`, and what keeps the embedded mode fast). Consumer groups are coordinated
//! in memory (the embedded bus serves one process) and their committed
//! positions persist in the file: a restarted consumer resumes where its
//! group left off.
//!
//! Members of a group share the partitions of its topics round-robin, in the
//! order they joined; every join or leave reassigns, like a Kafka rebalance.
//!
//! The newest records of each partition are also kept in memory (its
//! tail), and a consumer reading inside it gets them from there. Every
//! service's consumers read each record soon after it is written, and from
//! SQLite each of those reads was a statement handed to a connection's
//! thread (about four per order) plus parsing the headers again; the file stays
//! the log, and a consumer further behind, or one starting after a restart,
//! reads it.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use sqlx::any::AnyConnectOptions;
use sqlx::{AnyConnection, Row};
use tokio::sync::watch;

use crate::held::Connections;

use super::{
    BusError, Delivery, EventBus, Headers, Record, Subscription, TopicInfo, TopicSpec,
    partition_for,
};

/// Most rows per INSERT when appending, a power of two (7 parameters each,
/// far below SQLite's limit of 32,766).
const MAX_ROWS_PER_INSERT: usize = 128;

/// How many records one read pulls from a partition.
const FETCH_BATCH: i64 = 256;

/// Newest records kept in memory per partition: one read's worth, so a
/// consumer that is less than a read behind never waits on SQLite. With
/// records of about a kilobyte, a few MB for a busy installation's
/// partitions.
const TAIL_RECORDS: usize = 256;

/// A durable, single-process event log on SQLite.
#[derive(Clone)]
pub struct EmbeddedBus {
    inner: Arc<Inner>,
}

struct Inner {
    /// The one connection that writes, and three that read, held by Kart
    /// rather than sqlx's pool for the reasons in [`crate::held`]. A write
    /// transaction left open holds SQLite's lock until its connection's
    /// next user rolls it back, so writes all go to the one writer, whose
    /// next user is the next write.
    writer: Connections<AnyConnection>,
    readers: Connections<AnyConnection>,
    /// Copies the log's WAL back while the log is open.
    _checkpointer: Option<Arc<crate::sqlite_inline::Checkpointer>>,
    default_partitions: i32,
    /// Held from choosing a batch's offsets until they are written, so
    /// records are written in the order their offsets were handed out.
    write: tokio::sync::Mutex<()>,
    /// Topic → end offset of each partition.
    topics: Mutex<HashMap<String, Vec<i64>>>,
    /// (topic, partition) → its newest records, oldest first, without gaps
    /// and ending at the partition's end; written before the end moves, so
    /// a reader that sees an end finds every record before it here or in
    /// the file.
    tails: Mutex<HashMap<(String, i32), VecDeque<Delivery>>>,
    /// Group → member ids, in join order.
    groups: Mutex<HashMap<String, BTreeSet<u64>>>,
    /// Bumped after every publish: waiting consumers wake and read.
    published: watch::Sender<u64>,
    /// Bumped after every join or leave: members reassign partitions.
    membership: watch::Sender<u64>,
    next_member: AtomicU64,
}

fn other(error: impl std::fmt::Display) -> BusError {
    BusError::Other(error.to_string())
}

impl EmbeddedBus {
    /// Opens (or creates) the log at `path`.
    pub async fn open(path: &Path, default_partitions: i32) -> Result<EmbeddedBus, BusError> {
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent)
                .map_err(|e| BusError::Unreachable(format!("{}: {e}", parent.display())))?;
        }
        let options = AnyConnectOptions::from_str(&format!("sqlite://{}?mode=rwc", path.display()))
            .map_err(other)?;
        let unreachable =
            |e: sqlx::Error| BusError::Unreachable(format!("{}: {e}", path.display()));
        let crate::db::SqliteConnections {
            writer,
            readers,
            checkpointer,
        } = crate::db::sqlite_connections(options, false, 3, std::time::Duration::from_secs(5))
            .await
            .map_err(unreachable)?;
        let mut conn = writer.acquire().await.map_err(unreachable)?;
        sqlx::raw_sql(
            "CREATE TABLE IF NOT EXISTS topics (
                name TEXT PRIMARY KEY,
                partitions INTEGER NOT NULL
            );
            CREATE TABLE IF NOT EXISTS records (
                topic TEXT NOT NULL,
                partition_id INTEGER NOT NULL,
                record_offset INTEGER NOT NULL,
                record_key TEXT NOT NULL,
                headers TEXT NOT NULL,
                payload BLOB NOT NULL,
                written_at INTEGER NOT NULL,
                PRIMARY KEY (topic, partition_id, record_offset)
            ) WITHOUT ROWID;
            CREATE TABLE IF NOT EXISTS group_offsets (
                group_id TEXT NOT NULL,
                topic TEXT NOT NULL,
                partition_id INTEGER NOT NULL,
                next_offset INTEGER NOT NULL,
                PRIMARY KEY (group_id, topic, partition_id)
            ) WITHOUT ROWID;",
        )
        .execute(&mut *conn)
        .await
        .map_err(other)?;

        let mut topics = HashMap::new();
        let rows = sqlx::query("SELECT name, partitions FROM topics")
            .fetch_all(&mut *conn)
            .await
            .map_err(other)?;
        for row in rows {
            let name: String = row.get(0);
            let partitions: i32 = row.get(1);
            let mut ends = vec![0_i64; usize::try_from(partitions).unwrap_or(0)];
            let highs = sqlx::query(
                "SELECT partition_id, MAX(record_offset) + 1 FROM records
                 WHERE topic = ? GROUP BY partition_id",
            )
            .bind(&name)
            .fetch_all(&mut *conn)
            .await
            .map_err(other)?;
            for high in highs {
                let partition: i64 = high.get(0);
                let end: i64 = high.get(1);
                if let Some(slot) = usize::try_from(partition)
                    .ok()
                    .and_then(|p| ends.get_mut(p))
                {
                    *slot = end;
                }
            }
            topics.insert(name, ends);
        }
        drop(conn);

        Ok(EmbeddedBus {
            inner: Arc::new(Inner {
                writer,
                readers,
                _checkpointer: checkpointer,
                default_partitions: default_partitions.max(1),
                write: tokio::sync::Mutex::new(()),
                topics: Mutex::new(topics),
                tails: Mutex::new(HashMap::new()),
                groups: Mutex::new(HashMap::new()),
                published: watch::Sender::new(0),
                membership: watch::Sender::new(0),
                next_member: AtomicU64::new(1),
            }),
        })
    }

    /// Closes the file once every handle is done with it.
    pub async fn close(&self) {
        self.inner.readers.close().await;
        self.inner.writer.close().await;
    }
}

impl Inner {
    fn partition_count(&self, topic: &str) -> Option<i32> {
        let topics = self.topics.lock().ok()?;
        topics
            .get(topic)
            .and_then(|ends| i32::try_from(ends.len()).ok())
    }

    /// Up to `limit` records of the partition from `position` on, if its
    /// in-memory tail still holds `position`.
    fn read_tail(
        &self,
        topic: &str,
        partition: i32,
        position: i64,
        limit: i64,
    ) -> Option<VecDeque<Delivery>> {
        let tails = self.tails.lock().ok()?;
        let tail = tails.get(&(topic.to_owned(), partition))?;
        let first = tail.front()?.offset;
        let last = tail.back()?.offset;
        if position < first || position > last {
            return None;
        }
        let skip = usize::try_from(position - first).ok()?;
        let take = usize::try_from(limit).unwrap_or(usize::MAX);
        let batch: VecDeque<Delivery> = tail.iter().skip(skip).take(take).cloned().collect();
        // The tail has no gaps, so this always holds; a batch that did not
        // start at `position` would be dropped as stale and read again.
        (batch.front()?.offset == position).then_some(batch)
    }

    fn end_offset(&self, topic: &str, partition: i32) -> i64 {
        self.topics
            .lock()
            .ok()
            .and_then(|topics| {
                topics
                    .get(topic)
                    .and_then(|ends| ends.get(usize::try_from(partition).ok()?).copied())
            })
            .unwrap_or(0)
    }

    async fn ensure_topics(&self, specs: &[TopicSpec]) -> Result<(), BusError> {
        let missing: Vec<&TopicSpec> = specs
            .iter()
            .filter(|spec| self.partition_count(&spec.name).is_none())
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let _writer = self.write.lock().await;
        for spec in missing {
            if self.partition_count(&spec.name).is_some() {
                continue;
            }
            let partitions = spec.partitions.max(1);
            sqlx::query("INSERT OR IGNORE INTO topics (name, partitions) VALUES (?, ?)")
                .bind(&spec.name)
                .bind(partitions)
                .execute(&mut *self.writer.acquire().await.map_err(other)?)
                .await
                .map_err(other)?;
            if let Ok(mut topics) = self.topics.lock() {
                topics
                    .entry(spec.name.clone())
                    .or_insert_with(|| vec![0; usize::try_from(partitions).unwrap_or(1)]);
            }
        }
        Ok(())
    }

    /// Appends a batch in one transaction; see [`EmbeddedBus::publish`].
    async fn append(&self, records: &[Record]) -> Result<(), BusError> {
        // Like Kafka with auto-creation on: an unknown topic is created.
        let specs: Vec<TopicSpec> = records
            .iter()
            .map(|r| TopicSpec {
                name: r.topic.clone(),
                partitions: self.default_partitions,
            })
            .collect();
        self.ensure_topics(&specs).await?;

        let _writer = self.write.lock().await;
        let mut ends: HashMap<String, Vec<i64>> = {
            let topics = self.topics.lock().map_err(other)?;
            records
                .iter()
                .filter_map(|r| topics.get(&r.topic).map(|e| (r.topic.clone(), e.clone())))
                .collect()
        };
        let now = crate::db::now_millis();
        // Each record's place in the log, decided before writing.
        let mut placed = Vec::with_capacity(records.len());
        for record in records {
            let Some(topic_ends) = ends.get_mut(&record.topic) else {
                return Err(BusError::Publish {
                    topic: record.topic.clone(),
                    reason: "topic vanished".into(),
                });
            };
            let partitions = i32::try_from(topic_ends.len()).unwrap_or(1);
            let partition = partition_for(&record.key, partitions);
            let slot = topic_ends
                .get_mut(usize::try_from(partition).unwrap_or(0))
                .ok_or_else(|| other("partition out of range"))?;
            let offset = *slot;
            *slot += 1;
            let headers = serde_json::to_string(&record.headers).map_err(other)?;
            placed.push((record, partition, offset, headers));
        }
        let mut conn = self.writer.acquire().await.map_err(other)?;
        conn.begin().await.map_err(other)?;
        // Many rows per statement: a relay batch can hold hundreds of
        // records, and the log's one writer is held meanwhile.
        // Chunks are powers of two, so a few statement texts cover every
        // batch and stay in the connection's prepared-statement cache.
        let mut rest = placed.as_slice();
        while !rest.is_empty() {
            let size = if rest.len() >= MAX_ROWS_PER_INSERT {
                MAX_ROWS_PER_INSERT
            } else {
                // The largest power of two that fits.
                1 << rest.len().ilog2()
            };
            let (chunk, after) = rest.split_at(size);
            rest = after;
            let values: Vec<&str> = chunk.iter().map(|_| "(?, ?, ?, ?, ?, ?, ?)").collect();
            let sql = format!(
                "INSERT INTO records
                 (topic, partition_id, record_offset, record_key, headers, payload, written_at)
                 VALUES {}",
                values.join(", ")
            );
            let mut query = sqlx::query(&sql);
            for (record, partition, offset, headers) in chunk {
                query = query
                    .bind(&record.topic)
                    .bind(*partition)
                    .bind(*offset)
                    .bind(&record.key)
                    .bind(headers)
                    .bind(&record.payload)
                    .bind(now);
            }
            query
                .execute(&mut *conn)
                .await
                .map_err(|e| BusError::Publish {
                    topic: chunk
                        .first()
                        .map(|(record, ..)| record.topic.clone())
                        .unwrap_or_default(),
                    reason: e.to_string(),
                })?;
        }
        conn.commit().await.map_err(other)?;
        drop(conn);
        if let Ok(mut tails) = self.tails.lock() {
            for (record, partition, offset, _) in &placed {
                let tail = tails.entry((record.topic.clone(), *partition)).or_default();
                // Only a suffix without gaps is a tail. The offsets were
                // decided under the writer lock, so this always holds; if
                // it ever did not, the tail restarts and readers use the
                // file meanwhile.
                if tail.back().is_some_and(|last| last.offset + 1 != *offset) {
                    tail.clear();
                }
                tail.push_back(Delivery {
                    topic: record.topic.clone(),
                    partition: *partition,
                    offset: *offset,
                    key: record.key.clone(),
                    headers: record.headers.clone(),
                    payload: record.payload.clone(),
                });
                if tail.len() > TAIL_RECORDS {
                    tail.pop_front();
                }
            }
        }
        if let Ok(mut topics) = self.topics.lock() {
            for (topic, topic_ends) in ends {
                topics.insert(topic, topic_ends);
            }
        }
        self.published.send_modify(|n| *n += 1);
        Ok(())
    }

    fn join(&self, group: &str) -> u64 {
        let member = self.next_member.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut groups) = self.groups.lock() {
            groups.entry(group.to_owned()).or_default().insert(member);
        }
        self.membership.send_modify(|generation| *generation += 1);
        member
    }

    fn leave(&self, group: &str, member: u64) {
        if let Ok(mut groups) = self.groups.lock()
            && let Some(members) = groups.get_mut(group)
        {
            members.remove(&member);
        }
        self.membership.send_modify(|generation| *generation += 1);
    }
}

#[async_trait]
impl EventBus for EmbeddedBus {
    fn kind(&self) -> &'static str {
        "embedded"
    }

    async fn create_topics(&self, topics: &[TopicSpec]) -> Result<(), BusError> {
        self.inner.ensure_topics(topics).await
    }

    async fn publish(&self, records: &[Record]) -> Result<(), BusError> {
        if records.is_empty() {
            return Ok(());
        }
        // The write runs in a task of its own: a caller cancelled mid-way
        // (a relay shut down or aborted) must not leave a committed batch
        // whose end offsets were never recorded in memory, or the next
        // batch would be given offsets that are already taken.
        let inner = Arc::clone(&self.inner);
        let records = records.to_vec();
        tokio::spawn(async move { inner.append(&records).await })
            .await
            .map_err(other)?
    }

    async fn subscribe(
        &self,
        group: &str,
        topics: &[String],
    ) -> Result<Box<dyn Subscription>, BusError> {
        let specs: Vec<TopicSpec> = topics
            .iter()
            .map(|t| TopicSpec {
                name: t.clone(),
                partitions: self.inner.default_partitions,
            })
            .collect();
        self.inner.ensure_topics(&specs).await?;
        let membership = self.inner.membership.subscribe();
        let published = self.inner.published.subscribe();
        let member = self.inner.join(group);
        let mut topics = topics.to_vec();
        topics.sort();
        topics.dedup();
        Ok(Box::new(EmbeddedSubscription {
            inner: Arc::clone(&self.inner),
            group: group.to_owned(),
            topics,
            member,
            membership,
            published,
            // Forces the first assignment on the first read.
            assigned_at_membership: u64::MAX,
            positions: HashMap::new(),
            assigned: Vec::new(),
            buffer: VecDeque::new(),
            generation: 0,
        }))
    }

    async fn ping(&self) -> Result<(), BusError> {
        let mut conn = self
            .inner
            .readers
            .acquire()
            .await
            .map_err(|e| BusError::Unreachable(e.to_string()))?;
        sqlx::query("SELECT 1")
            .execute(&mut *conn)
            .await
            .map(drop)
            .map_err(|e| BusError::Unreachable(e.to_string()))
    }

    async fn describe_topics(&self) -> Result<Vec<TopicInfo>, BusError> {
        let topics = self.inner.topics.lock().map_err(other)?;
        let mut infos: Vec<TopicInfo> = topics
            .iter()
            .map(|(name, ends)| TopicInfo {
                name: name.clone(),
                partition_ends: ends.clone(),
            })
            .collect();
        infos.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(infos)
    }
}

struct EmbeddedSubscription {
    inner: Arc<Inner>,
    group: String,
    topics: Vec<String>,
    member: u64,
    membership: watch::Receiver<u64>,
    published: watch::Receiver<u64>,
    /// The membership version the current assignment was computed for. Kept
    /// here, not in the watch receiver's "seen" mark, so a read cancelled in
    /// the middle of a rebalance redoes it.
    assigned_at_membership: u64,
    /// Next offset to deliver, per assigned partition.
    positions: HashMap<(String, i32), i64>,
    assigned: Vec<(String, i32)>,
    buffer: VecDeque<Delivery>,
    generation: u64,
}

impl EmbeddedSubscription {
    /// Recomputes this member's share of the group's partitions and loads the
    /// group's committed position for each partition it gains.
    async fn rebalance(&mut self) -> Result<(), BusError> {
        let members: Vec<u64> = {
            let groups = self.inner.groups.lock().map_err(other)?;
            groups
                .get(&self.group)
                .map(|m| m.iter().copied().collect())
                .unwrap_or_default()
        };
        let Some(me) = members.iter().position(|m| *m == self.member) else {
            return Err(other("subscription left its group"));
        };
        let mut all = Vec::new();
        for topic in &self.topics {
            for partition in 0..self.inner.partition_count(topic).unwrap_or(0) {
                all.push((topic.clone(), partition));
            }
        }
        let assigned: Vec<(String, i32)> = all
            .into_iter()
            .enumerate()
            .filter(|(i, _)| i % members.len() == me)
            .map(|(_, tp)| tp)
            .collect();

        // Positions are reloaded for every partition, kept or gained: another
        // member may have moved the group on while we did not own it.
        let mut positions = HashMap::new();
        for (topic, partition) in &assigned {
            let committed: Option<i64> = sqlx::query_scalar(
                "SELECT next_offset FROM group_offsets
                 WHERE group_id = ? AND topic = ? AND partition_id = ?",
            )
            .bind(&self.group)
            .bind(topic)
            .bind(partition)
            .fetch_optional(&mut *self.inner.readers.acquire().await.map_err(other)?)
            .await
            .map_err(other)?;
            positions.insert((topic.clone(), *partition), committed.unwrap_or(0));
        }
        self.assigned = assigned;
        self.positions = positions;
        self.buffer.clear();
        self.generation += 1;
        Ok(())
    }

    /// The next buffered record still wanted, moving its partition on.
    fn pop_buffered(&mut self) -> Option<Delivery> {
        while let Some(delivery) = self.buffer.pop_front() {
            let key = (delivery.topic.clone(), delivery.partition);
            if let Some(position) = self.positions.get_mut(&key)
                && *position == delivery.offset
            {
                *position += 1;
                return Some(delivery);
            }
            // Stale: the partition was sought elsewhere since the read.
        }
        None
    }

    /// Reads the next batch of every assigned partition that has records
    /// past its position, interleaving partitions.
    async fn fill(&mut self) -> Result<(), BusError> {
        let mut batches = Vec::new();
        for (topic, partition) in &self.assigned {
            let position = self
                .positions
                .get(&(topic.clone(), *partition))
                .copied()
                .unwrap_or(0);
            if position >= self.inner.end_offset(topic, *partition) {
                continue;
            }
            if let Some(batch) = self
                .inner
                .read_tail(topic, *partition, position, FETCH_BATCH)
            {
                batches.push(batch);
                continue;
            }
            let rows = sqlx::query(
                "SELECT record_offset, record_key, headers, payload FROM records
                 WHERE topic = ? AND partition_id = ? AND record_offset >= ?
                 ORDER BY record_offset LIMIT ?",
            )
            .bind(topic)
            .bind(partition)
            .bind(position)
            .bind(FETCH_BATCH)
            .fetch_all(&mut *self.inner.readers.acquire().await.map_err(other)?)
            .await
            .map_err(other)?;
            let mut batch = VecDeque::with_capacity(rows.len());
            for row in rows {
                let headers: String = row.get(2);
                let headers: Headers = serde_json::from_str(&headers).map_err(other)?;
                batch.push_back(Delivery {
                    topic: topic.clone(),
                    partition: *partition,
                    offset: row.get(0),
                    key: row.get(1),
                    headers,
                    payload: row.get(3),
                });
            }
            batches.push(batch);
        }
        loop {
            let mut any = false;
            for batch in &mut batches {
                if let Some(delivery) = batch.pop_front() {
                    self.buffer.push_back(delivery);
                    any = true;
                }
            }
            if !any {
                break;
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Subscription for EmbeddedSubscription {
    async fn next(&mut self) -> Result<Delivery, BusError> {
        loop {
            let membership = *self.membership.borrow_and_update();
            if membership != self.assigned_at_membership {
                self.rebalance().await?;
                self.assigned_at_membership = membership;
            }
            if let Some(delivery) = self.pop_buffered() {
                return Ok(delivery);
            }
            // Mark what we have seen before reading, so a publish that lands
            // after the read still wakes us.
            self.published.borrow_and_update();
            self.fill().await?;
            if !self.buffer.is_empty() {
                continue;
            }
            tokio::select! {
                changed = self.published.changed() => changed.map_err(other)?,
                changed = self.membership.changed() => changed.map_err(other)?,
            }
        }
    }

    /// Only what the last read brought: never reads the log here.
    fn next_ready(&mut self) -> Option<Result<Delivery, BusError>> {
        if *self.membership.borrow() != self.assigned_at_membership {
            return None;
        }
        self.pop_buffered().map(Ok)
    }

    async fn seek(&mut self, topic: &str, partition: i32, offset: i64) -> Result<(), BusError> {
        let key = (topic.to_owned(), partition);
        if let Some(position) = self.positions.get_mut(&key) {
            *position = offset.max(0);
            self.buffer
                .retain(|d| !(d.topic == topic && d.partition == partition));
        }
        Ok(())
    }

    async fn commit(
        &mut self,
        topic: &str,
        partition: i32,
        next_offset: i64,
    ) -> Result<(), BusError> {
        let _writer = self.inner.write.lock().await;
        sqlx::query(
            "INSERT INTO group_offsets (group_id, topic, partition_id, next_offset)
             VALUES (?, ?, ?, ?)
             ON CONFLICT (group_id, topic, partition_id)
             DO UPDATE SET next_offset = excluded.next_offset",
        )
        .bind(&self.group)
        .bind(topic)
        .bind(partition)
        .bind(next_offset)
        .execute(&mut *self.inner.writer.acquire().await.map_err(other)?)
        .await
        .map_err(other)?;
        Ok(())
    }

    fn assignment_generation(&self) -> u64 {
        self.generation
    }

    fn assignment(&self) -> Vec<(String, i32)> {
        self.assigned.clone()
    }
}

impl Drop for EmbeddedSubscription {
    fn drop(&mut self) {
        self.inner.leave(&self.group, self.member);
    }
}

#[cfg(test)]
mod tests {
    use std::ops::Range;
    use std::time::Duration;

    use super::*;

    const TOPIC: &str = "tail.test";

    fn record(n: usize) -> Record {
        Record {
            topic: TOPIC.to_owned(),
            key: "one-key".to_owned(),
            headers: vec![("n".to_owned(), n.to_string())],
            payload: format!("record {n}").into_bytes(),
        }
    }

    fn expected(range: Range<usize>) -> Vec<(i64, String, String)> {
        range
            .map(|n| {
                (
                    i64::try_from(n).unwrap(),
                    n.to_string(),
                    format!("record {n}"),
                )
            })
            .collect()
    }

    /// The next `count` records: offset, the `n` header, payload.
    async fn read(
        subscription: &mut Box<dyn Subscription>,
        count: usize,
    ) -> Vec<(i64, String, String)> {
        let mut read = Vec::new();
        while read.len() < count {
            let delivery = tokio::time::timeout(Duration::from_secs(5), subscription.next())
                .await
                .expect("a record within 5 s")
                .expect("the log reads");
            read.push((
                delivery.offset,
                delivery.header("n").unwrap_or_default().to_owned(),
                String::from_utf8(delivery.payload).unwrap(),
            ));
        }
        read
    }

    /// A consumer gets the same records, in the same order, whether they
    /// come from the in-memory tail or from the file: behind the tail,
    /// inside it, sought back before it, and after a restart.
    #[tokio::test]
    async fn the_tail_and_the_file_give_the_same_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bus.db");
        let bus = EmbeddedBus::open(&path, 1).await.unwrap();
        let backlog = TAIL_RECORDS + 44;
        bus.publish(&(0..backlog).map(record).collect::<Vec<_>>())
            .await
            .unwrap();
        assert!(
            bus.inner.read_tail(TOPIC, 0, 0, 10).is_none(),
            "the oldest records are only in the file"
        );
        let mut subscription = bus.subscribe("g", &[TOPIC.to_owned()]).await.unwrap();
        assert_eq!(read(&mut subscription, backlog).await, expected(0..backlog));

        let more = backlog..backlog + 10;
        bus.publish(&more.clone().map(record).collect::<Vec<_>>())
            .await
            .unwrap();
        let newest = bus
            .inner
            .read_tail(TOPIC, 0, i64::try_from(backlog).unwrap(), 64)
            .expect("the newest records are in the tail");
        assert_eq!(newest.len(), 10);
        assert_eq!(read(&mut subscription, 10).await, expected(more));

        subscription.seek(TOPIC, 0, 5).await.unwrap();
        assert_eq!(read(&mut subscription, 5).await, expected(5..10));
        drop(subscription);
        bus.close().await;

        let reopened = EmbeddedBus::open(&path, 1).await.unwrap();
        let mut subscription = reopened
            .subscribe("after-restart", &[TOPIC.to_owned()])
            .await
            .unwrap();
        assert_eq!(
            read(&mut subscription, backlog + 10).await,
            expected(0..backlog + 10)
        );
    }
}
