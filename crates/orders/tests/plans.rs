//! The orders database's statements go through the index made for them.
//! PostgreSQL gives a prepared statement a generic plan after its fifth
//! run and keeps it until the table is next analyzed, so a plan made while
//! the tables were empty lasted into a full one: on an empty table, an
//! index that serves one of a statement's two conditions cost the same as
//! the one that serves both.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kit::db::Tx;
use orders::saga;
use orders::state::{Cause, Status};
use orders::store::{self, Filter};
use sqlx::Row;

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
        common::stored(&db, &order).await;
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

/// Three FAILED orders among PENDING ones, stored a millisecond apart:
/// their ids, newest first.
async fn some_failed_orders(db: &kit::Db) -> Vec<String> {
    let mut failed = Vec::new();
    for n in 0..6 {
        let mut order = common::pending_order(2_500, &kit::testing::unique("key"));
        order.created_at += n;
        if n % 2 == 0 {
            order.status = Status::Failed;
            failed.push(order.id.clone());
        }
        common::stored(db, &order).await;
    }
    failed.reverse();
    failed
}

fn failed_orders() -> Filter {
    Filter {
        status: Some(Status::Failed),
        limit: 50,
        ..Filter::default()
    }
}

/// An admin's list of the orders in a rare status is read from the index
/// of those statuses, newest first, not by walking every order.
#[tokio::test]
async fn a_list_of_a_rare_status_reads_its_index_on_postgres() {
    let db = common::postgres().await;
    let failed = some_failed_orders(&db).await;
    let mut tx = db.begin().await.unwrap();
    for _ in 0..6 {
        let listed = store::list(&mut tx, &failed_orders()).await.unwrap();
        let ids: Vec<String> = listed.into_iter().map(|order| order.id).collect();
        assert_eq!(ids, failed);
    }
    let (name, parameters) = generic(&mut tx, &store::list_statement(&failed_orders()))
        .await
        .expect("the list runs its generic plan by now");
    assert_eq!(parameters, 1, "the limit is its one parameter");
    let plan: Vec<String> = sqlx::query_scalar(&format!("EXPLAIN EXECUTE {name}(50)"))
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    let plan = plan.join("\n");
    assert!(
        plan.contains("using orders_by_rare_status"),
        "the list does not read the rare statuses' index:\n{plan}"
    );
    tx.rollback().await.unwrap();
}

#[tokio::test]
async fn a_list_of_a_rare_status_reads_its_index_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let db = common::sqlite(&dir).await;
    let failed = some_failed_orders(&db).await;
    let mut conn = db.read().await.unwrap();
    let listed = store::list(&mut conn, &failed_orders()).await.unwrap();
    let ids: Vec<String> = listed.into_iter().map(|order| order.id).collect();
    assert_eq!(ids, failed);
    let plan: Vec<String> = sqlx::query(&format!(
        "EXPLAIN QUERY PLAN {}",
        store::list_statement(&failed_orders())
    ))
    .bind(50_i64)
    .fetch_all(&mut *conn)
    .await
    .unwrap()
    .iter()
    .map(|row| row.get::<String, _>("detail"))
    .collect();
    assert!(
        plan.iter()
            .any(|step| step.contains("USING INDEX orders_by_rare_status")),
        "the list does not read the rare statuses' index: {plan:?}"
    );
}
