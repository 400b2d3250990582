//! Reservations against real databases, PostgreSQL and SQLite: no
//! oversell under concurrency, all-or-nothing, idempotent, expiring.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use inventory::domain::{Adjustment, Lines, ReservationState};
use inventory::store::{self, ReserveOutcome, StockLevel};
use inventory::{events, reservations};
use kit::Db;
use kit::db::now_millis;

async fn postgres() -> Db {
    let db = kit::testing::postgres_db().await;
    kit::testing::migrated(db, "inventory", inventory::MIGRATIONS).await
}

async fn sqlite(dir: &tempfile::TempDir) -> Db {
    let db = kit::testing::sqlite_db(dir.path()).await;
    kit::testing::migrated(db, "inventory", inventory::MIGRATIONS).await
}

async fn stock(db: &Db, sku: &str, units: i64) {
    let mut tx = db.begin().await.unwrap();
    let adjustment = Adjustment::parse(sku, units, "delivery").unwrap();
    store::adjust(
        &mut tx,
        &adjustment,
        "usr_test",
        &kit::testing::unique("adj"),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
}

async fn level(db: &Db, sku: &str) -> StockLevel {
    let mut tx = db.begin().await.unwrap();
    let level = store::levels(&mut tx, &[sku.to_owned()])
        .await
        .unwrap()
        .pop()
        .unwrap();
    tx.commit().await.unwrap();
    level
}

async fn reserve(db: &Db, order: &str, lines: &[(&str, i64)], ttl_ms: i64) -> ReserveOutcome {
    let lines = Lines::parse(lines.iter().copied()).unwrap();
    let mut tx = db.begin().await.unwrap();
    let outcome = reservations::reserve(&mut tx, order, &lines, now_millis(), ttl_ms, None)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    outcome
}

/// The lines a reservation keeps, by SKU.
async fn kept_lines(db: &Db, order: &str) -> Vec<(String, i64)> {
    sqlx::query_as("SELECT sku, quantity FROM reservation_lines WHERE order_id = $1 ORDER BY sku")
        .bind(order)
        .fetch_all(&mut *db.write().await.expect("a connection"))
        .await
        .unwrap()
}

async fn outboxed(db: &Db) -> i64 {
    kit::outbox::pending(db).await.unwrap()
}

/// 50 orders race for the last 10 units: exactly 10 win.
async fn fifty_orders_for_ten_units(db: Db) {
    stock(&db, "LAST-ONES", 10).await;
    let db = Arc::new(db);
    let racers = (0..50).map(|i| {
        let db = Arc::clone(&db);
        tokio::spawn(async move {
            reserve(&db, &format!("ord_race_{i}"), &[("LAST-ONES", 1)], 60_000).await
        })
    });
    let outcomes = futures_util::future::join_all(racers).await;
    let won = outcomes
        .iter()
        .filter(|o| matches!(o.as_ref().unwrap(), ReserveOutcome::Reserved { .. }))
        .count();
    let lost = outcomes
        .iter()
        .filter(|o| matches!(o.as_ref().unwrap(), ReserveOutcome::Rejected { .. }))
        .count();
    assert_eq!((won, lost), (10, 40));
    let after = level(&db, "LAST-ONES").await;
    assert_eq!(
        (after.on_hand, after.reserved, after.available()),
        (10, 10, 0)
    );
    // Every outcome is an event: 10 reserved, 40 rejected.
    assert_eq!(outboxed(&db).await, 50);
    // The winners pay: the units leave the books and stock ends at 0.
    for i in 0..50 {
        let mut tx = db.begin().await.unwrap();
        reservations::commit(&mut tx, &format!("ord_race_{i}"), None)
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
    let sold = level(&db, "LAST-ONES").await;
    assert_eq!((sold.on_hand, sold.reserved), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_parallel_orders_for_the_last_ten_units_on_postgres() {
    fifty_orders_for_ten_units(postgres().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_parallel_orders_for_the_last_ten_units_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    fifty_orders_for_ten_units(sqlite(&dir).await).await;
}

/// One short line means nothing is reserved; a repeat changes nothing;
/// release gives back, twice is once; expiry releases on its own.
async fn reservation_rules(db: Db) {
    stock(&db, "MUG", 5).await;
    stock(&db, "KETTLE", 1).await;
    let outcome = reserve(&db, "ord_a", &[("MUG", 2), ("KETTLE", 2)], 60_000).await;
    let ReserveOutcome::Rejected { short } = outcome else {
        panic!("expected a rejection, got {outcome:?}");
    };
    assert_eq!(short.len(), 1);
    assert_eq!(
        (
            short[0].sku.as_str(),
            short[0].requested,
            short[0].available
        ),
        ("KETTLE", 2, 1)
    );
    assert_eq!(
        level(&db, "MUG").await.reserved,
        0,
        "nothing reserved when one line is short"
    );
    let kept: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM reservation_lines WHERE order_id = 'ord_a'")
            .fetch_one(&mut *db.write().await.expect("a connection"))
            .await
            .unwrap();
    assert_eq!(kept, 0, "a rejected order keeps no lines");

    // Every line of an order, or a SKU nobody stocks: short, nothing taken.
    let unknown = reserve(&db, "ord_u", &[("MUG", 1), ("NOBODY-SELLS", 1)], 60_000).await;
    let ReserveOutcome::Rejected { short } = unknown else {
        panic!("expected a rejection, got {unknown:?}");
    };
    assert_eq!(
        short
            .iter()
            .map(|s| (s.sku.as_str(), s.requested, s.available))
            .collect::<Vec<_>>(),
        [("NOBODY-SELLS", 1, 0)]
    );
    assert_eq!(level(&db, "MUG").await.reserved, 0);
    assert!(kept_lines(&db, "ord_u").await.is_empty());

    assert!(matches!(
        reserve(&db, "ord_b", &[("MUG", 2), ("mug", 1)], 60_000).await,
        ReserveOutcome::Reserved { .. }
    ));
    assert_eq!(level(&db, "MUG").await.reserved, 3, "repeated SKUs add up");
    assert_eq!(
        kept_lines(&db, "ord_b").await,
        [("MUG".to_owned(), 3)],
        "the reservation keeps its merged line"
    );
    let events = outboxed(&db).await;
    let repeat = reserve(&db, "ord_b", &[("MUG", 2), ("MUG", 1)], 60_000).await;
    assert!(
        matches!(repeat, ReserveOutcome::Existing(ref r) if r.state == ReservationState::Reserved)
    );
    assert_eq!(
        level(&db, "MUG").await.reserved,
        3,
        "a repeated reservation holds nothing more"
    );
    assert_eq!(outboxed(&db).await, events, "and says nothing more");

    for _ in 0..2 {
        let mut tx = db.begin().await.unwrap();
        let state = reservations::release(
            &mut tx,
            "ord_b",
            ReservationState::Released,
            "cancelled",
            None,
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(state, ReservationState::Released);
    }
    assert_eq!(level(&db, "MUG").await.reserved, 0);
    assert_eq!(
        outboxed(&db).await,
        events + 1,
        "one release event for two releases"
    );

    // A cancellation that overtakes its order: the late reservation is refused.
    let mut tx = db.begin().await.unwrap();
    reservations::release(
        &mut tx,
        "ord_c",
        ReservationState::Released,
        "cancelled",
        None,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let late = reserve(&db, "ord_c", &[("MUG", 1)], 60_000).await;
    assert!(
        matches!(late, ReserveOutcome::Existing(ref r) if r.state == ReservationState::Released)
    );
    assert_eq!(level(&db, "MUG").await.reserved, 0);

    // Expiry: a reservation nobody commits gives its units back.
    assert!(matches!(
        reserve(&db, "ord_d", &[("MUG", 4)], 0).await,
        ReserveOutcome::Reserved { .. }
    ));
    assert_eq!(level(&db, "MUG").await.available(), 1);
    assert_eq!(events::sweep_once(&db).await.unwrap(), 1);
    assert_eq!(level(&db, "MUG").await.available(), 5);
    let mut tx = db.begin().await.unwrap();
    assert_eq!(
        reservations::commit(&mut tx, "ord_d", None).await.unwrap(),
        ReservationState::Expired
    );
    tx.commit().await.unwrap();
    assert_eq!(
        level(&db, "MUG").await.on_hand,
        5,
        "an expired reservation cannot be sold"
    );

    // Adjustments cannot take stock below what is reserved.
    assert!(matches!(
        reserve(&db, "ord_e", &[("MUG", 4)], 60_000).await,
        ReserveOutcome::Reserved { .. }
    ));
    let mut tx = db.begin().await.unwrap();
    let refused = store::adjust(
        &mut tx,
        &Adjustment::parse("MUG", -2, "damaged").unwrap(),
        "usr_admin",
        "adj_x",
    )
    .await;
    assert!(matches!(
        refused,
        Err(store::StoreError::NotEnoughStock {
            on_hand: 5,
            reserved: 4
        })
    ));
    drop(tx);
    let mut tx = db.begin().await.unwrap();
    let trail = store::adjustments(&mut tx, "MUG", 10).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(trail.len(), 1, "a refused adjustment leaves no trace");
    assert_eq!(
        (
            trail[0].delta,
            trail[0].reason.as_str(),
            trail[0].on_hand_after
        ),
        (5, "delivery", 5)
    );

    // An order of two lines keeps both, and its sale takes both off the books.
    assert!(matches!(
        reserve(&db, "ord_f", &[("KETTLE", 1), ("MUG", 1)], 60_000).await,
        ReserveOutcome::Reserved { .. }
    ));
    assert_eq!(
        kept_lines(&db, "ord_f").await,
        [("KETTLE".to_owned(), 1), ("MUG".to_owned(), 1)]
    );
    let mut tx = db.begin().await.unwrap();
    assert_eq!(
        reservations::commit(&mut tx, "ord_f", None).await.unwrap(),
        ReservationState::Committed
    );
    tx.commit().await.unwrap();
    let (kettle, mug) = (level(&db, "KETTLE").await, level(&db, "MUG").await);
    assert_eq!(
        (
            (kettle.on_hand, kettle.reserved),
            (mug.on_hand, mug.reserved)
        ),
        ((0, 0), (4, 4))
    );

    // A sale moves the units off the books once, however often the payment
    // arrives; a cancellation after it puts them back once.
    for _ in 0..2 {
        let mut tx = db.begin().await.unwrap();
        assert_eq!(
            reservations::commit(&mut tx, "ord_e", None).await.unwrap(),
            ReservationState::Committed
        );
        tx.commit().await.unwrap();
        let sold = level(&db, "MUG").await;
        assert_eq!((sold.on_hand, sold.reserved), (0, 0));
    }
    for _ in 0..2 {
        let mut tx = db.begin().await.unwrap();
        assert_eq!(
            reservations::release(
                &mut tx,
                "ord_e",
                ReservationState::Released,
                "cancelled",
                None
            )
            .await
            .unwrap(),
            ReservationState::Released
        );
        tx.commit().await.unwrap();
        let back = level(&db, "MUG").await;
        assert_eq!((back.on_hand, back.reserved), (4, 0));
    }
}

#[tokio::test]
async fn reservation_rules_hold_on_postgres() {
    reservation_rules(postgres().await).await;
}

#[tokio::test]
async fn reservation_rules_hold_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    reservation_rules(sqlite(&dir).await).await;
}
