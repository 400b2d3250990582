//! The orders database's statements on PostgreSQL keep their plans fit for
//! a table that grows. PostgreSQL gives a prepared statement a generic plan
//! after its fifth run, and sqlx keeps statements prepared for the
//! connection's life, so a plan made while the tables were empty lasted
//! into a full table: on an empty table, an index that serves one of a
//! statement's two conditions cost the same as the one that serves both.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kit::db::Tx;
use orders::saga;
use orders::state::Cause;
use orders::store;

mod common;

/// The prepared statement whose text starts with `start`, once it runs a
/// generic plan: its name and how many parameters it takes.
async fn generic(tx: &mut Tx, start: &str) -> Option<(String, i32)> {
    sqlx::query_as(
        "SELECT name, COALESCE(array_length(parameter_types, 1), 0) FROM pg_prepared_statements
         WHERE starts_with(statement, $1) AND generic_plans > 0",
    )
    .bind(start)
    .fetch_optional(&mut **tx)
    .await
    .unwrap()
}

/// The saga's status move (`WHERE id = $n AND status = $m`) finds the
/// order by its id. It went through an index leading with `status`, and
/// every move read every order in the status it moved from.
#[tokio::test]
async fn a_status_move_planned_on_empty_tables_finds_the_order_by_its_id() {
    let db = common::postgres().await;
    let mut ids = Vec::new();
    for _ in 0..8 {
        let order = common::pending_order(2_500, &kit::testing::unique("key"));
        let mut tx = db.begin().await.unwrap();
        store::insert(&mut tx, &order).await.unwrap();
        tx.commit().await.unwrap();
        ids.push(order.id);
    }
    // One transaction: one connection runs the move eight times.
    let mut tx = db.begin().await.unwrap();
    for id in &ids {
        saga::advance(&mut tx, id, Cause::StockReserved, "", None)
            .await
            .unwrap();
    }
    let (name, parameters) = generic(&mut tx, "WITH moved AS (UPDATE orders")
        .await
        .expect("the status move runs its generic plan by now");
    let nulls = vec!["NULL"; usize::try_from(parameters).unwrap()].join(", ");
    let plan: Vec<String> = sqlx::query_scalar(&format!("EXPLAIN EXECUTE {name}({nulls})"))
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    let plan = plan.join("\n");
    let update = plan
        .lines()
        .skip_while(|line| !line.contains("Update on orders"))
        .nth(1)
        .unwrap_or_default();
    assert!(
        update.contains("using orders_pkey"),
        "the move's generic plan does not find the order by its id:\n{plan}"
    );
    tx.rollback().await.unwrap();
}

/// The idempotency-key lookup before every new order never runs a plan
/// made for another size of table. Prepared, it kept one that went through
/// `orders_by_user` and read every earlier order of the user.
#[tokio::test]
async fn the_idempotency_lookup_never_keeps_a_plan_from_an_empty_table() {
    let db = common::postgres().await;
    let mut tx = db.begin().await.unwrap();
    for _ in 0..8 {
        let found = store::by_key(&mut tx, "usr_orders_test", &kit::testing::unique("key"))
            .await
            .unwrap();
        assert!(found.is_none());
    }
    let order = common::pending_order(2_500, "the-key");
    store::insert(&mut tx, &order).await.unwrap();
    let found = store::by_key(&mut tx, &order.user_id, "the-key")
        .await
        .unwrap()
        .expect("the order made with the key");
    assert_eq!(found.id, order.id);
    assert_eq!(
        generic(&mut tx, "SELECT id FROM orders WHERE user_id").await,
        None,
        "the lookup runs a plan made before the table held its orders"
    );
    tx.rollback().await.unwrap();
}
