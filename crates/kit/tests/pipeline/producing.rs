//! The Kafka producer's delivery reports are served by a thread of Kart's
//! own (`kit::bus::kafka`), not rdkafka's, whose 100 ms polls spin for
//! their last millisecond. That thread must not keep a dropped bus's
//! producer, and its connections to the broker, alive.

use std::time::{Duration, Instant};

use kit::bus::Record;

/// This process's threads that serve a producer's delivery reports.
fn producer_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("Linux /proc")
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim() == "kart-deliveries")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_bus_lets_its_producer_go() {
    let before = producer_threads();
    let bus = kit::testing::kafka_bus().await;
    assert_eq!(producer_threads(), before + 1, "one thread per producer");

    // Deliveries are reported through that thread: a publish completes.
    let topic = kit::testing::unique("producing");
    crate::support::create_topic(&*bus, &topic, 1).await;
    bus.publish(&[Record {
        topic,
        key: "k".into(),
        headers: Vec::new(),
        payload: b"v".to_vec(),
    }])
    .await
    .unwrap();

    drop(bus);
    // One poll window (1 s), then the producer is dropped on that thread,
    // which flushes for up to 500 ms.
    let deadline = Instant::now() + Duration::from_secs(5);
    while producer_threads() > before {
        assert!(
            Instant::now() < deadline,
            "the producer's thread outlived its bus by 5 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
