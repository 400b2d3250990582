//! The event pipeline's promises, written once and run against both bus
//! implementations and both databases:
//!
//! - a state change and its event commit together or not at all;
//! - the relay delivers every outboxed event exactly once, in key order,
//!   even when it crashes mid-batch and restarts;
//! - a consumer that keeps failing dead-letters the event, with the error;
//! - a redelivered event has no second effect;
//! - a backlog is applied many events per transaction, still in key order;
//! - consumers in one group share partitions and resume from their stored
//!   positions after a restart, even from inside a record batch.
//!
//! `sqlite_embedded::*`, `sqlite_kafka::*`, `postgres_embedded::*` and
//! `postgres_kafka::*` are the same tests on each combination.

// The test bodies are shared functions, not #[test]s, so say it here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod broker;
mod joining;
mod producing;
mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use kit::bus::{Record, header};
use kit::consumer::{ConsumerSpec, RetryPolicy, dead_letter_headers};
use kit::outbox::{self, Relay};
use support::{BusChoice, DbChoice, Harness, event, eventually};

async fn a_state_change_and_its_event_commit_together_or_not_at_all(db: DbChoice, bus: BusChoice) {
    let h = Harness::new(db, bus).await;
    let topic = kit::testing::unique("atomic");

    // Rolled back: neither the row nor the event exists.
    let mut tx = h.db.begin().await.unwrap();
    h.insert_state(&mut tx, "rolled-back").await;
    outbox::enqueue(&mut tx, &topic, &event("rolled-back", 1)).unwrap();
    tx.rollback().await.unwrap();

    // Committed: both do.
    let mut tx = h.db.begin().await.unwrap();
    h.insert_state(&mut tx, "committed").await;
    outbox::enqueue(&mut tx, &topic, &event("committed", 1)).unwrap();
    tx.commit().await.unwrap();

    assert_eq!(h.states().await, vec!["committed".to_owned()]);
    assert_eq!(outbox::pending(&h.db).await.unwrap(), 1);

    let relay = h.relay();
    assert_eq!(relay.relay_batch().await.unwrap(), 1);
    assert_eq!(outbox::pending(&h.db).await.unwrap(), 0);

    let consumer = h.start_consumer("g", &topic, "member-1", support::Behaviour::Succeed);
    eventually("the committed event to be consumed", || async {
        h.effects_for("g").await.len() == 1
    })
    .await;
    // Give a stray rolled-back event every chance to show up.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let effects = h.effects_for("g").await;
    assert_eq!(effects.len(), 1);
    assert_eq!(effects[0].key, "committed");
    consumer.stop().await;
}

async fn the_relay_delivers_every_event_once_in_key_order_across_crashes(
    db: DbChoice,
    bus: BusChoice,
) {
    let h = Harness::new(db, bus).await;
    let topic = kit::testing::unique("relay");
    const KEYS: u32 = 12;
    // 492 rows: seven full outbox INSERTs and one padded, 44 rows of 64.
    const PER_KEY: u32 = 41;
    let mut tx = h.db.begin().await.unwrap();
    for seq in 0..PER_KEY {
        for key in 0..KEYS {
            outbox::enqueue(&mut tx, &topic, &event(&format!("k{key}"), seq)).unwrap();
        }
    }
    tx.commit().await.unwrap();
    let total = usize::try_from(KEYS * PER_KEY).unwrap();

    // A bus that, now and then, writes part of a batch and then "crashes".
    let flaky = support::FaultyBus::crashing(Arc::clone(&h.bus), 3);
    let mut relay = Relay::new(h.db.clone(), flaky, h.metrics.clone(), Default::default());
    relay.batch_size = 25;
    let mut partial_failures = 0;
    // Run batches by hand until three crashes have happened mid-batch.
    while partial_failures < 3 {
        if relay.relay_batch().await.is_err() {
            partial_failures += 1;
        }
    }
    // Then kill a running relay at an arbitrary point, twice, and let a
    // fresh one finish.
    for pause_ms in [7, 23] {
        let shutdown = tokio_util::sync::CancellationToken::new();
        let mut relay = Relay::new(
            h.db.clone(),
            support::FaultyBus::slow(Arc::clone(&h.bus)),
            h.metrics.clone(),
            Default::default(),
        );
        relay.batch_size = 10;
        let task = tokio::spawn(relay.run(shutdown.clone()));
        tokio::time::sleep(Duration::from_millis(pause_ms)).await;
        task.abort();
        let _ = task.await;
    }
    let shutdown = tokio_util::sync::CancellationToken::new();
    let relay_task = tokio::spawn(h.relay().run(shutdown.clone()));

    let consumer = h.start_consumer("g", &topic, "member-1", support::Behaviour::Succeed);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while h.effects_for("g").await.len() < total {
        if tokio::time::Instant::now() > deadline {
            let effects = h.effects_for("g").await;
            let mut per_key: HashMap<String, usize> = HashMap::new();
            for e in &effects {
                *per_key.entry(e.key.clone()).or_default() += 1;
            }
            panic!(
                "applied {} of {total}; {} still in the outbox; per key: {per_key:?}; \
                 topic ends: {:?}",
                effects.len(),
                outbox::pending(&h.db).await.unwrap(),
                h.bus
                    .describe_topics()
                    .await
                    .unwrap()
                    .iter()
                    .find(|t| t.name == topic),
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(outbox::pending(&h.db).await.unwrap(), 0);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let effects = h.effects_for("g").await;
    assert_eq!(effects.len(), total, "each event applied exactly once");
    let mut by_key: HashMap<String, Vec<u32>> = HashMap::new();
    for effect in &effects {
        by_key
            .entry(effect.key.clone())
            .or_default()
            .push(effect.seq);
    }
    for (key, seqs) in by_key {
        let expected: Vec<u32> = (0..PER_KEY).collect();
        assert_eq!(seqs, expected, "events of {key} applied in order");
    }
    assert!(
        h.duplicates_seen("g") > 0,
        "the crashes made the relay publish some events twice, and the inbox dropped them"
    );
    consumer.stop().await;
    shutdown.cancel();
    relay_task.await.unwrap();
}

async fn a_consumer_that_keeps_failing_dead_letters_the_event_with_the_error(
    db: DbChoice,
    bus: BusChoice,
) {
    let h = Harness::new(db, bus).await;
    let topic = kit::testing::unique("dlq-src");
    let dead_letters = kit::testing::unique("dlq");
    let poison = event("k1", 1);
    let records = vec![
        event("k1", 0).to_record(&topic),
        poison.to_record(&topic),
        event("k1", 2).to_record(&topic),
        // Not a CloudEvent at all: rejected at once, no retries.
        Record {
            topic: topic.clone(),
            key: "k1".into(),
            headers: vec![],
            payload: b"garbage".to_vec(),
        },
        event("k1", 3).to_record(&topic),
    ];
    h.bus.publish(&records).await.unwrap();

    let spec = ConsumerSpec {
        group: "g".into(),
        topics: vec![topic.clone()],
        dead_letter_topic: dead_letters.clone(),
        handler: Arc::new(h.handler("member-1", support::Behaviour::FailSeq(1))),
        retry: RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(20),
        },
        max_batch: kit::consumer::DEFAULT_MAX_BATCH,
    };
    let consumer = h.start_consumer_spec(spec);
    let shutdown = tokio_util::sync::CancellationToken::new();
    let relay_task = tokio::spawn(h.relay().run(shutdown.clone()));

    eventually("the events after the poison one to be applied", || async {
        h.effects_for("g").await.len() == 3
    })
    .await;
    let seqs: Vec<u32> = h.effects_for("g").await.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, vec![0, 2, 3]);
    assert_eq!(h.attempts_on_seq(1), 3, "retried up to max_attempts");

    let letters = support::read_all(&h.bus, &dead_letters, 2).await;
    assert_eq!(letters.len(), 2, "{letters:?}");
    let first = &letters
        .iter()
        .find(|d| d.header("ce_id") == Some(poison.id.as_str()))
        .unwrap();
    assert_eq!(first.header(dead_letter_headers::ATTEMPTS), Some("3"));
    assert!(
        first
            .header(dead_letter_headers::ERROR)
            .unwrap()
            .contains("refuses seq 1")
    );
    assert_eq!(
        first.header(dead_letter_headers::TOPIC),
        Some(topic.as_str())
    );
    assert_eq!(
        first.header("ce_type"),
        Some("kart.test.happened.v1"),
        "original headers kept"
    );
    assert_eq!(first.payload, poison.data);
    let garbage = letters.iter().find(|d| d.payload == b"garbage").unwrap();
    assert_eq!(garbage.header(dead_letter_headers::ATTEMPTS), Some("1"));
    assert!(
        header(&garbage.headers, dead_letter_headers::ERROR)
            .unwrap()
            .contains("ce_specversion")
    );

    consumer.stop().await;
    shutdown.cancel();
    relay_task.await.unwrap();
}

async fn a_redelivered_event_has_no_second_effect(db: DbChoice, bus: BusChoice) {
    let h = Harness::new(db, bus).await;
    let topic = kit::testing::unique("redeliver");
    let once = event("k1", 0);
    let other = event("k2", 0);
    // The same event id, published three times (a relay retry, a replay).
    let records: Vec<Record> = [&once, &other, &once, &once]
        .iter()
        .map(|e| e.to_record(&topic))
        .collect();
    h.bus.publish(&records).await.unwrap();

    let consumer = h.start_consumer("g", &topic, "member-1", support::Behaviour::Succeed);
    eventually("both events to be applied", || async {
        h.effects_for("g").await.len() == 2
    })
    .await;
    eventually("the duplicates to be seen", || async {
        h.duplicates_seen("g") == 2
    })
    .await;
    consumer.stop().await;

    // A new member of the same group, its stored positions rewound: every
    // record comes again, and still nothing happens twice.
    h.rewind_positions("g").await;
    let consumer = h.start_consumer("g", &topic, "member-2", support::Behaviour::Succeed);
    eventually("all four deliveries to be seen again", || async {
        h.duplicates_seen("g") == 6
    })
    .await;
    assert_eq!(h.effects_for("g").await.len(), 2);
    consumer.stop().await;
    let tallies = h.tallies_for("g").await;
    assert_eq!(
        tallies.iter().sum::<i64>(),
        2,
        "the once-per-transaction hook sees each fresh event once and no duplicate: {tallies:?}"
    );
}

async fn a_backlog_is_applied_in_batches_in_key_order(db: DbChoice, bus: BusChoice) {
    let h = Harness::new(db, bus).await;
    let topic = kit::testing::unique("backlog");
    let keys = ["a", "b", "c"];
    let records: Vec<Record> = (0..100)
        .flat_map(|seq| keys.map(|key| event(key, seq).to_record(&topic)))
        .collect();
    h.bus.publish(&records).await.unwrap();

    let consumer = h.start_consumer("g", &topic, "member-1", support::Behaviour::Succeed);
    eventually("the backlog to be applied", || async {
        h.effects_for("g").await.len() == 300
    })
    .await;
    consumer.stop().await;

    let effects = h.effects_for("g").await;
    for key in keys {
        let seqs: Vec<u32> = effects
            .iter()
            .filter(|e| e.key == key)
            .map(|e| e.seq)
            .collect();
        assert_eq!(seqs, (0..100).collect::<Vec<_>>(), "key {key} in order");
    }
    let (transactions, applied) = h.batches_seen("g");
    assert_eq!(applied, 300, "every event counted in a batch once");
    assert!(
        transactions < 300 / 4,
        "a backlog is applied many events per transaction: {transactions} transactions"
    );
    let tallies = h.tallies_for("g").await;
    assert_eq!(
        (tallies.len() as u64, tallies.iter().sum::<i64>()),
        (transactions, 300),
        "the once-per-transaction hook runs once in each transaction, with its events"
    );
}

async fn consumers_in_one_group_share_partitions_and_resume_after_a_restart(
    db: DbChoice,
    bus: BusChoice,
) {
    let h = Harness::new(db, bus).await;
    let topic = kit::testing::unique("group");
    support::create_topic(&*h.bus, &topic, 3).await;
    let a = h.start_consumer("g", &topic, "member-a", support::Behaviour::Succeed);
    let b = h.start_consumer("g", &topic, "member-b", support::Behaviour::Succeed);
    // Publish over a few seconds, so the group settles while events flow.
    for batch in 0..30_u32 {
        let records: Vec<Record> = (0..10)
            .map(|i| event(&format!("key-{}", batch * 10 + i), batch).to_record(&topic))
            .collect();
        h.bus.publish(&records).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eventually("all 300 to be applied", || async {
        h.effects_for("g").await.len() == 300
    })
    .await;
    let effects = h.effects_for("g").await;
    let by_a = effects.iter().filter(|e| e.member == "member-a").count();
    let by_b = effects.iter().filter(|e| e.member == "member-b").count();
    assert!(
        by_a > 0 && by_b > 0,
        "both members worked: a={by_a} b={by_b}"
    );
    a.stop().await;
    b.stop().await;

    // While the group is down, 100 more arrive; a restarted member applies
    // exactly those, never the 300 again.
    let records: Vec<Record> = (300..400)
        .map(|i| event(&format!("key-{i}"), 99).to_record(&topic))
        .collect();
    h.bus.publish(&records).await.unwrap();
    let calls_before = h.handler_calls();
    let c = h.start_consumer("g", &topic, "member-c", support::Behaviour::Succeed);
    // A broker that rebalances when members leave gives the new member the
    // partitions at once. tansu (declared `group-rejoin`) may give it none,
    // for minutes; then its group's events wait and nobody moves its
    // positions, so after 30 s the member moves the group to a fresh broker
    // group and is served there (`kit::consumer::Standstill`): later, but
    // the same 100 events, applied once.
    support::eventually_within(
        "the 100 new events to be applied",
        Duration::from_secs(150),
        || async { h.effects_for("g").await.len() == 400 },
    )
    .await;
    let moves = h.group_moves_seen("g");
    if matches!(bus, BusChoice::Kafka) && kit::testing::broker_has_known_defect("group-rejoin") {
        eprintln!(
            "the group moved to a fresh broker group {moves} times (broker defect group-rejoin)"
        );
    } else {
        assert_eq!(moves, 0, "a group whose member is served never moves");
    }

    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        h.handler_calls() - calls_before,
        100,
        "resumed where the group stopped"
    );
    let effects = h.effects_for("g").await;
    assert_eq!(
        effects.iter().filter(|e| e.member == "member-c").count(),
        100
    );
    c.stop().await;
}

/// A member that stopped part way through what one fetch brought (it
/// crashed after applying some of a record batch) leaves the group's
/// position inside that batch; the next member applies the rest of the
/// batch and what follows, and nothing twice. On a broker that answers a
/// fetch from inside a batch with the next batch (tansu 0.6.0, declared
/// `fetch-mid-batch`), the consumer has to seek back to the batch's start
/// for that, or the rest of the batch is lost.
async fn a_group_resumes_inside_a_record_batch(db: DbChoice, bus: BusChoice) {
    const APPLIED: u32 = 25;
    const PUBLISHED: u32 = 45;
    let h = Harness::new(db, bus).await;
    let topic = kit::testing::unique("mid-batch");
    support::create_topic(&*h.bus, &topic, 1).await;
    // One publish goes out as one record batch: offsets 0–39, then 40–44.
    let batch: Vec<_> = (0..40).map(|seq| event("k", seq)).collect();
    let records: Vec<Record> = batch.iter().map(|e| e.to_record(&topic)).collect();
    h.bus.publish(&records).await.unwrap();
    let after: Vec<Record> = (40..PUBLISHED)
        .map(|seq| event("k", seq).to_record(&topic))
        .collect();
    h.bus.publish(&after).await.unwrap();
    // What the crashed member's last transaction left: the first 25 events
    // in the inbox, the position at 25.
    let applied: Vec<&str> = batch[..APPLIED as usize]
        .iter()
        .map(|e| e.id.as_str())
        .collect();
    let mut tx = h.db.begin().await.unwrap();
    kit::consumer::record_batch(
        &mut tx,
        "g",
        &applied,
        &[((topic.as_str(), 0), i64::from(APPLIED))],
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();

    let consumer = h.start_consumer("g", &topic, "member-1", support::Behaviour::Succeed);
    eventually(
        "the rest of the batch and the next batch to be applied",
        || async { h.effects_for("g").await.len() == (PUBLISHED - APPLIED) as usize },
    )
    .await;
    // Give a second application every chance to show up.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seqs: Vec<u32> = h.effects_for("g").await.iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs,
        (APPLIED..PUBLISHED).collect::<Vec<_>>(),
        "from the position on, in order"
    );
    assert_eq!(
        h.handler_calls(),
        u64::from(PUBLISHED - APPLIED),
        "the applied records are skipped, not handled again"
    );
    consumer.stop().await;
}

/// Generates the four combinations of each test.
macro_rules! on_every_backend {
    ($($test:ident),* $(,)?) => {
        on_every_backend!(@module sqlite_embedded, DbChoice::Sqlite, BusChoice::Embedded, $($test),*);
        on_every_backend!(@module sqlite_kafka, DbChoice::Sqlite, BusChoice::Kafka, $($test),*);
        on_every_backend!(@module postgres_embedded, DbChoice::Postgres, BusChoice::Embedded, $($test),*);
        on_every_backend!(@module postgres_kafka, DbChoice::Postgres, BusChoice::Kafka, $($test),*);
    };
    (@module $module:ident, $db:expr, $bus:expr, $($test:ident),*) => {
        mod $module {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test($db, $bus).await;
                }
            )*
        }
    };
}

on_every_backend!(
    a_state_change_and_its_event_commit_together_or_not_at_all,
    the_relay_delivers_every_event_once_in_key_order_across_crashes,
    a_consumer_that_keeps_failing_dead_letters_the_event_with_the_error,
    a_redelivered_event_has_no_second_effect,
    a_backlog_is_applied_in_batches_in_key_order,
    consumers_in_one_group_share_partitions_and_resume_after_a_restart,
    a_group_resumes_inside_a_record_batch,
);
