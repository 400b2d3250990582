//! What the orders tests share. Each test file uses some of it.
#![allow(dead_code)]

use kit::Db;
use kit::db::now_millis;
use orders::state::Status;
use orders::store::{Line, Order, Transition};

/// A new PENDING order of one line for `total_minor` EUR, as the API
/// builds one, under the idempotency key `key`.
pub fn pending_order(total_minor: i64, key: &str) -> Order {
    let now = now_millis();
    Order {
        id: kit::new_id("ord"),
        user_id: "usr_orders_test".to_owned(),
        status: Status::Pending,
        currency: "EUR".to_owned(),
        total_minor,
        payment_method_id: "pm_orders_test".to_owned(),
        payment_kind: "saved_method".to_owned(),
        failure_code: String::new(),
        captured_minor: 0,
        refunded_minor: 0,
        refund_pending_minor: 0,
        idempotency_key: key.to_owned(),
        request_hash: "hash".to_owned(),
        created_at: now,
        updated_at: now,
        lines: vec![Line {
            sku: "TEST-1".to_owned(),
            name: "Test".to_owned(),
            quantity: 1,
            unit_price_minor: total_minor,
        }],
        history: vec![Transition {
            from: String::new(),
            to: Status::Pending.as_str().to_owned(),
            cause: "created".to_owned(),
            detail: String::new(),
            at: now,
        }],
    }
}

/// A fresh PostgreSQL database with the orders service's tables.
pub async fn postgres() -> Db {
    kit::testing::migrated(
        kit::testing::postgres_db().await,
        "orders",
        orders::MIGRATIONS,
    )
    .await
}

/// A fresh SQLite database in `dir` with the orders service's tables.
pub async fn sqlite(dir: &tempfile::TempDir) -> Db {
    let db = kit::testing::sqlite_db(dir.path()).await;
    kit::testing::migrated(db, "orders", orders::MIGRATIONS).await
}

/// Stores `order` as the API does, in a transaction of its own.
pub async fn stored(db: &Db, order: &Order) {
    let mut tx = db.begin().await.expect("a transaction");
    orders::store::insert(&mut tx, order)
        .await
        .expect("the order is stored");
    tx.commit().await.expect("committed");
}
