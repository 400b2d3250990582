//! Duplicate and reordered delivery: after a run of orders with known
//! outcomes, every event on the saga's topics is published again, twice,
//! in shuffled order. Every consumer must recognise each one as seen and
//! change nothing: no order, payment, refund or stock level moves, and no
//! service emits a single new event.

use std::collections::BTreeMap;
use std::time::Duration;

use contracts::topics;
use kit::bus::{Record, SharedBus};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Session, TestApp};
use crate::mail::a_known_run;

/// Which consumer groups read each topic the saga uses.
const READERS: &[(&str, usize)] = &[
    (topics::ORDER_EVENTS, 4), // inventory, payments, notifications, analytics
    (topics::INVENTORY_EVENTS, 2), // orders, analytics
    (topics::PAYMENT_EVENTS, 3), // orders, notifications, analytics
];

/// Every record of `topic`, read by a group of its own from the start
/// until nothing more comes for a second: each (partition, offset) once,
/// however often the broker redelivers.
async fn every_record(bus: &SharedBus, topic: &str) -> Vec<Record> {
    let mut subscription = bus
        .subscribe(&kit::testing::unique("replay-reader"), &[topic.to_owned()])
        .await
        .unwrap();
    let mut records = BTreeMap::new();
    // The first record may take a while (the group forms); then a quiet
    // second means the end.
    let mut wait = Duration::from_secs(30);
    while let Ok(delivery) = tokio::time::timeout(wait, subscription.next()).await {
        let delivery = delivery.unwrap();
        records.insert(
            (delivery.partition, delivery.offset),
            Record {
                topic: delivery.topic,
                key: delivery.key,
                headers: delivery.headers,
                payload: delivery.payload,
            },
        );
        wait = Duration::from_secs(1);
    }
    records.into_values().collect()
}

fn event_id(record: &Record) -> String {
    kit::bus::header(&record.headers, "ce_id")
        .unwrap_or_default()
        .to_owned()
}

/// What the services hold about the shopper's orders, the stock, the
/// shopper's mail and the figures.
async fn state(app: &TestApp, admin: &Session, shopper: &Session, sku: &str) -> Value {
    let orders = app
        .get("/api/v1/orders?limit=100", Some(&shopper.token))
        .await;
    let stock = app
        .get(&format!("/api/v1/admin/stock/{sku}"), Some(&admin.token))
        .await;
    let mut orders = orders.expect(StatusCode::OK).clone();
    // Read each order in full: the history shows any second effect.
    for order in orders["orders"].as_array_mut().unwrap() {
        let id = order["id"].as_str().unwrap().to_owned();
        *order = app
            .get(&format!("/api/v1/orders/{id}"), Some(&shopper.token))
            .await
            .expect(StatusCode::OK)
            .clone();
    }
    let mail = app
        .get(
            &format!(
                "/api/v1/admin/mailbox?user_id={}&limit=500",
                shopper.user_id
            ),
            Some(&admin.token),
        )
        .await
        .expect(StatusCode::OK)
        .clone();
    json!({
        "orders": orders,
        "stock": stock.expect(StatusCode::OK).clone(),
        "mail": mail,
        "figures": app.figures(admin).await,
    })
}

/// Duplicates the consumers have recognised, over every service.
async fn duplicates_seen(app: &TestApp) -> u64 {
    let mut total = 0;
    for service in &app.system().services {
        let metrics = app.metrics(&service.url()).await;
        total += metrics
            .lines()
            .filter(|l| l.starts_with("kart_events_consumed_total"))
            .filter(|l| l.contains("outcome=\"duplicate\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum::<u64>();
    }
    total
}

/// A shuffle without a random-number crate: sort by fresh random ids.
fn shuffled(records: Vec<Record>) -> Vec<Record> {
    let mut keyed: Vec<(String, Record)> = records
        .into_iter()
        .map(|r| (kit::testing::unique("k"), r))
        .collect();
    keyed.sort_by(|a, b| a.0.cmp(&b.0));
    keyed.into_iter().map(|(_, r)| r).collect()
}

pub async fn replaying_every_event_twice_in_shuffled_order_changes_nothing(app: &TestApp) {
    let admin = app.admin().await;
    app.stocked_product(&admin, "RPL-BEANS", 800, 6).await;
    let shopper = app.customer().await;
    a_known_run(app, &shopper, "RPL-BEANS").await;
    // Every mail of the run sent before the replay starts.
    app.mails_of(&admin, &shopper.user_id, 7).await;
    // Sold: 1 + 2 units; the cancelled order's unit is back on sale, the
    // rest released or never reserved.
    app.stock_until(&admin, "RPL-BEANS", 3, 0).await;

    // Analytics has read everything there is.
    app.get_until("/api/v1/admin/analytics/lag", &admin.token, |l| {
        l["records_behind"] == 0
    })
    .await;
    let bus = app.system().bus.clone();
    let before = state(app, &admin, &shopper, "RPL-BEANS").await;
    let duplicates_before = duplicates_seen(app).await;
    let mut replay = Vec::new();
    let mut originals = BTreeMap::new();
    let mut expected_duplicates = 0;
    for (topic, readers) in READERS {
        let records = every_record(&bus, topic).await;
        assert!(!records.is_empty(), "{topic} carried the run's events");
        expected_duplicates += 2 * records.len() * readers;
        originals.insert(*topic, records.iter().map(event_id).collect::<Vec<_>>());
        replay.extend(records.iter().cloned());
        replay.extend(records);
    }
    for record in shuffled(replay) {
        bus.publish(std::slice::from_ref(&record)).await.unwrap();
    }

    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let expected = duplicates_before + expected_duplicates as u64;
    loop {
        let seen = duplicates_seen(app).await;
        assert!(
            seen <= expected,
            "{seen} duplicates for {expected} replayed"
        );
        if seen == expected {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "consumers recognised {} of {expected_duplicates} replayed events",
            seen - duplicates_before
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after = state(app, &admin, &shopper, "RPL-BEANS").await;
    assert_eq!(after, before, "the replay changed something");
    // Each topic holds each original three times, and nothing else: no
    // service emitted anything because of the replay.
    for (topic, _) in READERS {
        let mut copies: BTreeMap<String, usize> = BTreeMap::new();
        for record in every_record(&bus, topic).await {
            *copies.entry(event_id(&record)).or_default() += 1;
        }
        let expected: BTreeMap<String, usize> =
            originals[*topic].iter().map(|id| (id.clone(), 3)).collect();
        assert_eq!(copies, expected, "{topic}");
    }
}
