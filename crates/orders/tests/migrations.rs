//! The orders database's migrations on a database made before the last of
//! them: an order stored under the old tables reads back whole after its
//! lines and history are rebuilt as keyed tables (SQLite only).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kit::migrate::{self, Migration};

#[tokio::test]
async fn an_order_stored_before_the_keyed_tables_reads_back_whole() {
    let dir = tempfile::tempdir().unwrap();
    let db = kit::testing::sqlite_db(dir.path()).await;
    let earlier: Vec<Migration> = orders::MIGRATIONS
        .iter()
        .copied()
        .filter(|m| m.version < 3)
        .collect();
    let db = kit::testing::migrated(db, "orders", &earlier).await;
    sqlx::raw_sql(
        "INSERT INTO orders (id, user_id, status, currency, total_minor, payment_method_id,
             failure_code, captured_minor, refunded_minor, refund_pending_minor,
             idempotency_key, request_hash, created_at, updated_at)
         VALUES ('ord_1', 'usr_1', 'PAID', 'EUR', 2500, 'pm_1', '', 2500, 0, 0, 'k1', 'h1', 1, 3);
         INSERT INTO order_lines VALUES ('ord_1', 1, 'SKU-A', 'Mug', 2, 1000),
                                        ('ord_1', 2, 'SKU-B', 'Tea', 1, 500);
         INSERT INTO order_history VALUES ('ord_1', 1, '', 'PENDING', 'placed', '', 1),
                                          ('ord_1', 2, 'PENDING', 'PAID', 'payment', '', 3);",
    )
    .execute(&mut *db.write().await.unwrap())
    .await
    .unwrap();

    let later = orders::MIGRATIONS.iter().filter(|m| m.version >= 3).count();
    assert_eq!(
        migrate::run(&db, "orders", orders::MIGRATIONS)
            .await
            .unwrap(),
        later
    );

    let mut conn = db.read().await.unwrap();
    let order = orders::store::by_id(&mut conn, "ord_1")
        .await
        .unwrap()
        .expect("the order is still there");
    let lines: Vec<(&str, i64, i64)> = order
        .lines
        .iter()
        .map(|l| (l.sku.as_str(), l.quantity, l.unit_price_minor))
        .collect();
    assert_eq!(lines, vec![("SKU-A", 2, 1000), ("SKU-B", 1, 500)]);
    let history: Vec<String> = order.history.iter().map(|t| t.to.clone()).collect();
    assert_eq!(history, vec!["PENDING", "PAID"]);
    let keyed: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master
         WHERE name LIKE 'order_%' AND sql LIKE '%WITHOUT ROWID' ORDER BY name",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    assert_eq!(keyed, vec!["order_history", "order_lines"]);
    drop(conn);

    // The lines still belong to an order that exists.
    let orphan =
        sqlx::query("INSERT INTO order_lines VALUES ('ord_none', 1, 'SKU-A', 'Mug', 1, 1000)")
            .execute(&mut *db.write().await.unwrap())
            .await;
    assert!(orphan.is_err(), "a line of no order was stored");
}
