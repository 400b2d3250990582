//! New orders stored together (`orders::creations`, `store::insert_all`),
//! against real databases, PostgreSQL and SQLite: every caller hears what
//! became of its own order, a taken idempotency key and an order that
//! cannot be stored fail alone, exactly the stored orders have their event
//! outboxed, and every order reads back whole, however many statements
//! it took.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use contracts::Event as _;
use contracts::events::{Money, OrderCreatedV1, PaymentChoiceV1};
use kit::Db;
use kit::outbox::OutboxSignal;
use orders::creations::{Creation, OrderWriter, Stored};
use orders::store::{self, Line, Order};

mod common;

fn creation(order: Order) -> Creation {
    let event = OrderCreatedV1 {
        order_id: order.id.clone(),
        user_id: order.user_id.clone(),
        lines: Vec::new(),
        total: Money {
            amount_minor: order.total_minor,
            currency: order.currency.clone(),
        },
        payment: PaymentChoiceV1::SavedMethod {
            payment_method_id: order.payment_method_id.clone(),
        },
        created_at: chrono::Utc::now(),
    };
    Creation {
        event: event.to_cloud_event("/kart/orders", None),
        order,
    }
}

async fn outboxed_order_ids(db: &Db) -> Vec<String> {
    sqlx::query_scalar("SELECT event_key FROM kart_outbox ORDER BY id")
        .fetch_all(&mut *db.write().await.expect("a connection"))
        .await
        .unwrap()
}

async fn stored(db: &Db, id: &str) -> Option<Order> {
    let mut conn = db.write().await.unwrap();
    store::by_id(&mut conn, id).await.unwrap()
}

/// `count` lines, each a copy of `line` under its own SKU.
fn with_lines(count: usize, line: &Line) -> Vec<Line> {
    (0..count)
        .map(|n| Line {
            sku: format!("{}-{n}", line.sku),
            quantity: i64::try_from(n).unwrap() + 1,
            ..line.clone()
        })
        .collect()
}

async fn one_batch_answers_each_caller_for_its_own_order(db: Db) {
    // Already stored: a later creation reusing its id cannot be stored.
    let existing = common::pending_order(100, &kit::testing::unique("key"));
    let mut tx = db.begin().await.unwrap();
    store::insert(&mut tx, &existing).await.unwrap();
    tx.commit().await.unwrap();

    let mut orders: Vec<Order> = (0..12)
        .map(|n| common::pending_order(1_000 + n, &kit::testing::unique("key")))
        .collect();
    // Some orders have several lines, so one statement writes lines of
    // several orders.
    for (n, order) in orders.iter_mut().enumerate() {
        order.lines = with_lines(n % 3 + 1, &order.lines[0]);
    }
    // Order 5 repeats order 4's key, as a retried request does.
    orders[5].idempotency_key = orders[4].idempotency_key.clone();
    // Order 8 reuses a stored order's id.
    orders[8].id = existing.id.clone();

    let (writer, storing) = OrderWriter::start(db.clone(), OutboxSignal::default());
    // Every creation is queued before the writer runs, so they are read
    // as one batch: the failing one makes the batch go again one by one.
    let callers: Vec<_> = orders
        .iter()
        .cloned()
        .map(|order| {
            let writer = writer.clone();
            tokio::spawn(async move { writer.store(creation(order)).await })
        })
        .collect();
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    let storing = tokio::spawn(storing);
    let mut answers = Vec::new();
    for caller in callers {
        answers.push(caller.await.unwrap());
    }
    drop(writer);
    storing
        .await
        .expect("the writer ends once its queue is gone");

    for (n, answer) in answers.iter().enumerate() {
        match n {
            5 => assert_eq!(answer, &Ok(Stored::KeyTaken), "order {n}"),
            8 => assert!(answer.is_err(), "order {n}: {answer:?}"),
            _ => assert_eq!(answer, &Ok(Stored::New), "order {n}"),
        }
    }
    let mut expected = Vec::new();
    for (n, order) in orders.iter().enumerate() {
        if n == 5 || n == 8 {
            continue;
        }
        let found = stored(&db, &order.id).await.expect("a stored order");
        assert_eq!(&found, order, "order {n} reads back as it was stored");
        expected.push(order.id.clone());
    }
    assert!(stored(&db, &orders[5].id).await.is_none());
    assert_eq!(
        stored(&db, &existing.id).await.unwrap().total_minor,
        100,
        "the stored order is untouched"
    );
    let mut outboxed = outboxed_order_ids(&db).await;
    outboxed.sort();
    expected.sort();
    assert_eq!(outboxed, expected, "one event per stored order, no other");
}

/// More orders, lines and history entries than one statement writes: each
/// goes in several statements, and a key repeated across two of them is
/// still stored once, for the first order that had it.
async fn many_orders_are_stored_whole_across_statements(db: Db) {
    let mut orders: Vec<Order> = (0..70)
        .map(|n| common::pending_order(2_000 + n, &kit::testing::unique("key")))
        .collect();
    for order in &mut orders {
        order.lines = with_lines(2, &order.lines[0]);
    }
    // Order 66 (in the second statement) repeats order 3's key.
    orders[66].idempotency_key = orders[3].idempotency_key.clone();
    let refs: Vec<&Order> = orders.iter().collect();
    let mut tx = db.begin().await.unwrap();
    let inserted = store::insert_all(&mut tx, &refs).await.unwrap();
    tx.commit().await.unwrap();

    for (n, order) in orders.iter().enumerate() {
        let found = stored(&db, &order.id).await;
        if n == 66 {
            assert!(!inserted[n], "a repeated key is not stored again");
            assert_eq!(found, None);
        } else {
            assert!(inserted[n], "order {n}");
            assert_eq!(found.as_ref(), Some(order), "order {n} reads back whole");
        }
    }
}

#[tokio::test]
async fn many_orders_are_stored_whole_across_statements_on_postgres() {
    let db = common::postgres().await;
    many_orders_are_stored_whole_across_statements(db).await;
}

#[tokio::test]
async fn many_orders_are_stored_whole_across_statements_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let db = common::sqlite(&dir).await;
    many_orders_are_stored_whole_across_statements(db).await;
}

#[tokio::test]
async fn one_batch_answers_each_caller_for_its_own_order_on_postgres() {
    let db = common::postgres().await;
    one_batch_answers_each_caller_for_its_own_order(db).await;
}

#[tokio::test]
async fn one_batch_answers_each_caller_for_its_own_order_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let db = common::sqlite(&dir).await;
    one_batch_answers_each_caller_for_its_own_order(db).await;
}
