//! SQLite connections that Kart holds itself, instead of sqlx's pool.
//!
//! sqlx's pool was made for connections across a network. Used for SQLite
//! it costs a statement per use and a wait:
//!
//! - It pings every connection it takes back, in a task of its own: one
//!   more statement after every transaction and every read. Until that
//!   ping is answered the connection is nobody's, so on a database's one
//!   writer each transaction also waits for the last one's ping.
//! - Its transactions' `BEGIN` and `COMMIT` are rendezvous with the
//!   connection (with sqlx's SQLite driver, with its thread).
//!
//! Here a connection goes back to its set when its [`Lease`] drops, with no
//! statement, and a transaction is plain `BEGIN` and `COMMIT` statements
//! ([`crate::db::Tx`]). The ping is there to catch a connection left in a
//! bad state by a query abandoned half-way. A SQLite connection
//! ([`crate::sqlite_inline`]) runs each statement whole once it has
//! started, so an abandoned query leaves at most an open transaction
//! behind; the lease records that one is open, and whoever takes the
//! connection next rolls it back first.

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Opens one more connection of a set, ready for use (pragmas applied).
pub type Open<C> = Box<dyn Fn() -> BoxFuture<'static, Result<C, sqlx::Error>> + Send + Sync>;

/// An [`Open`] that connects with `options`, whose pragmas sqlx applies.
pub fn connect_with<O>(options: O) -> Open<O::Connection>
where
    O: sqlx::ConnectOptions,
    O::Connection: Sized,
{
    Box::new(move || {
        let options = options.clone();
        Box::pin(async move { options.connect().await })
    })
}

/// Up to `capacity` connections to one SQLite database, opened when first
/// needed and kept open. Capacity 1 is a database's writer: leases queue
/// for it in the order they asked.
pub struct Connections<C> {
    shared: Arc<Shared<C>>,
}

impl<C> Clone for Connections<C> {
    fn clone(&self) -> Self {
        Connections {
            shared: Arc::clone(&self.shared),
        }
    }
}

struct Shared<C> {
    idle: Mutex<Vec<Held<C>>>,
    /// One permit per connection the set may have; closed on shutdown.
    permits: Arc<Semaphore>,
    open: Open<C>,
    acquire_timeout: Duration,
}

struct Held<C> {
    conn: C,
    /// A `BEGIN` ran and no `COMMIT` or `ROLLBACK` has since.
    in_transaction: bool,
}

/// A connection type a [`Connections`] set can hold.
pub trait Connection: sqlx::Connection {
    /// Runs a statement that takes no arguments and returns no rows.
    fn run(&mut self, statement: &'static str) -> BoxFuture<'_, Result<(), sqlx::Error>>;
}

impl Connection for sqlx::AnyConnection {
    fn run(&mut self, statement: &'static str) -> BoxFuture<'_, Result<(), sqlx::Error>> {
        Box::pin(async move { sqlx::Executor::execute(self, statement).await.map(drop) })
    }
}

impl<C: Connection> Connections<C> {
    pub fn new(capacity: usize, acquire_timeout: Duration, open: Open<C>) -> Connections<C> {
        Connections {
            shared: Arc::new(Shared {
                idle: Mutex::new(Vec::with_capacity(capacity)),
                permits: Arc::new(Semaphore::new(capacity)),
                open,
                acquire_timeout,
            }),
        }
    }

    /// A connection of the set: an idle one, or a new one while the set
    /// has fewer than its capacity. Waits at most the acquire timeout
    /// (`PoolTimedOut`, as sqlx's pool says it); `PoolClosed` after
    /// [`Connections::close`].
    pub async fn acquire(&self) -> Result<Lease<C>, sqlx::Error> {
        let permit = tokio::time::timeout(
            self.shared.acquire_timeout,
            Arc::clone(&self.shared.permits).acquire_owned(),
        )
        .await
        .map_err(|_| sqlx::Error::PoolTimedOut)?
        .map_err(|_| sqlx::Error::PoolClosed)?;
        let idle = self
            .shared
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let mut held = match idle {
            Some(held) => held,
            None => Held {
                conn: (self.shared.open)().await?,
                in_transaction: false,
            },
        };
        if held.in_transaction {
            // Its last user dropped a transaction without ending it, or
            // was stopped while its BEGIN or COMMIT was on the way, so
            // there may be no transaction to roll back after all. Should the
            // rollback fail otherwise, the connection is dropped (SQLite
            // rolls back on close) and the next lease opens a new one.
            match held.conn.run("ROLLBACK").await {
                Ok(()) => {}
                Err(error) if no_transaction_was_open(&error) => {}
                Err(error) => return Err(error),
            }
            held.in_transaction = false;
        }
        Ok(Lease {
            held: Some(held),
            shared: Arc::clone(&self.shared),
            _permit: permit,
        })
    }

    /// Refuses new leases and closes the idle connections; a connection
    /// leased now closes when its lease drops.
    pub async fn close(&self) {
        self.shared.permits.close();
        let idle = std::mem::take(
            &mut *self
                .shared
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for held in idle {
            let _ = held.conn.close().await;
        }
    }
}

/// SQLite's answer to a `ROLLBACK` outside a transaction.
fn no_transaction_was_open(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(e) if e.message().contains("no transaction is active"))
}

/// One connection of a [`Connections`] set, back in the set when dropped.
pub struct Lease<C> {
    held: Option<Held<C>>,
    shared: Arc<Shared<C>>,
    // Dropped after `drop` has put the connection back, so the next lease
    // finds it idle.
    _permit: OwnedSemaphorePermit,
}

impl<C: Connection> Lease<C> {
    /// Opens a transaction on the connection: a plain `BEGIN`.
    /// Left open when the lease drops, it is rolled back by the
    /// connection's next user.
    pub async fn begin(&mut self) -> Result<(), sqlx::Error> {
        // Recorded before it is sent: a caller stopped while the BEGIN is
        // on its way leaves it to run, and the next user must roll it back.
        self.set_in_transaction(true);
        let begun = self.run("BEGIN").await;
        if begun.is_err() {
            self.set_in_transaction(false);
        }
        begun
    }

    /// Commits the open transaction.
    pub async fn commit(&mut self) -> Result<(), sqlx::Error> {
        self.run("COMMIT").await?;
        self.committed();
        Ok(())
    }

    /// Records that a transaction is open, before the caller sends its
    /// `BEGIN` in the text of another statement.
    pub fn begun(&mut self) {
        self.set_in_transaction(true);
    }

    /// Records that the open transaction was committed by a `COMMIT` the
    /// caller sent in the text of another statement.
    pub fn committed(&mut self) {
        self.set_in_transaction(false);
    }

    /// Rolls back the open transaction.
    pub async fn rollback(&mut self) -> Result<(), sqlx::Error> {
        self.run("ROLLBACK").await?;
        self.set_in_transaction(false);
        Ok(())
    }

    fn set_in_transaction(&mut self, open: bool) {
        if let Some(held) = self.held.as_mut() {
            held.in_transaction = open;
        }
    }
}

impl<C> Deref for Lease<C> {
    type Target = C;

    fn deref(&self) -> &C {
        match &self.held {
            Some(held) => &held.conn,
            // `held` is only taken in `drop`.
            None => unreachable!("a lease holds its connection until dropped"),
        }
    }
}

impl<C> DerefMut for Lease<C> {
    fn deref_mut(&mut self) -> &mut C {
        match &mut self.held {
            Some(held) => &mut held.conn,
            None => unreachable!("a lease holds its connection until dropped"),
        }
    }
}

impl<C> Drop for Lease<C> {
    fn drop(&mut self) {
        if self.shared.permits.is_closed() {
            // Shutting down: dropping the connection closes it.
            return;
        }
        if let Some(held) = self.held.take() {
            self.shared
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(held);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use sqlx::AnyConnection;
    use sqlx::any::AnyConnectOptions;

    use super::*;

    /// A set over an in-memory database: the tests below never hold two
    /// connections of it at once, and a connection kept in the set keeps
    /// its database.
    fn connections(capacity: usize) -> Connections<AnyConnection> {
        crate::db::install_drivers();
        let options = AnyConnectOptions::from_str("sqlite::memory:").expect("a valid URL");
        Connections::new(capacity, Duration::from_millis(200), connect_with(options))
    }

    /// A lease of a new set of one, with an empty table `t`.
    async fn one_with_a_table() -> (Connections<AnyConnection>, Lease<AnyConnection>) {
        let set = connections(1);
        let mut lease = set.acquire().await.expect("a connection");
        lease
            .run("CREATE TABLE t (n INTEGER)")
            .await
            .expect("creates");
        (set, lease)
    }

    async fn count(conn: &mut AnyConnection) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM t")
            .fetch_one(conn)
            .await
            .expect("counts")
    }

    #[tokio::test]
    async fn a_transaction_left_open_is_rolled_back_by_the_next_user() {
        let (set, mut first) = one_with_a_table().await;
        first.begin().await.expect("begins");
        first
            .run("INSERT INTO t VALUES (1)")
            .await
            .expect("inserts");
        // Dropped as an abandoned request would drop it: no COMMIT, no
        // ROLLBACK.
        drop(first);

        let mut next = set.acquire().await.expect("the same connection");
        assert_eq!(count(&mut next).await, 0, "the open write was thrown away");
        // No transaction is open any more, so BEGIN works again.
        next.begin().await.expect("begins");
        next.run("INSERT INTO t VALUES (2)").await.expect("inserts");
        next.commit().await.expect("commits");
        drop(next);
        let mut last = set.acquire().await.expect("the same connection");
        assert_eq!(count(&mut last).await, 1, "a committed write stays");
    }

    #[tokio::test]
    async fn a_transaction_recorded_but_never_begun_does_not_fail_the_next_user() {
        let (set, mut first) = one_with_a_table().await;
        // As when a caller is stopped after `begin` recorded the
        // transaction and before its BEGIN reached the connection.
        first.set_in_transaction(true);
        drop(first);

        let mut next = set.acquire().await.expect("the same connection, usable");
        assert_eq!(count(&mut next).await, 0, "the table is still there");
        next.begin().await.expect("begins");
        next.commit().await.expect("commits");
    }

    #[tokio::test]
    async fn a_set_of_one_lends_its_connection_to_one_user_at_a_time() {
        let set = connections(1);
        let held = set.acquire().await.expect("a connection");
        assert!(matches!(
            set.acquire().await,
            Err(sqlx::Error::PoolTimedOut)
        ));
        let waiting = tokio::spawn({
            let set = set.clone();
            async move { set.acquire().await.map(drop) }
        });
        drop(held);
        waiting
            .await
            .expect("the waiter runs")
            .expect("gets the connection once it is back");
    }

    #[tokio::test]
    async fn a_closed_set_lends_nothing() {
        let set = connections(2);
        drop(set.acquire().await.expect("a connection"));
        set.close().await;
        assert!(matches!(set.acquire().await, Err(sqlx::Error::PoolClosed)));
    }
}
