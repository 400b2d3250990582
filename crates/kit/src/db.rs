//! Storage: one code path over PostgreSQL and SQLite.
//!
//! Services talk to an [`sqlx::AnyPool`], so the same queries run on both.
//! That asks for portable SQL: `$1` placeholders (SQLite accepts them too),
//! `BIGINT`/`TEXT`/`BOOLEAN` columns, timestamps as Unix milliseconds,
//! `ON CONFLICT`, `RETURNING`. Where the dialects really differ (identity
//! columns, locks) [`Db::kind`] says which one is behind the pool.
//!
//! SQLite runs in WAL mode with a single pooled connection: SQLite has one
//! writer anyway, and one connection means a transaction never fails with
//! `SQLITE_BUSY` while upgrading its lock. So on SQLite never hold a
//! transaction open while waiting on the network.
//!
//! sqlx pings a pooled connection before handing it out. A PostgreSQL
//! connection can die while idle (a server restart, a dropped socket), so
//! it keeps that check; a SQLite connection is a file handle on a thread of
//! this process and cannot, and the ping was one more hand-over to that
//! thread on every transaction and read, a cost `kart up` paid per order.
//!
//! Reads that need no transaction go to [`Db::reader`]: on SQLite a few
//! more connections that can only read, which WAL lets run beside the
//! writer, so a page view never queues behind a consumer's batch; on
//! PostgreSQL the same pool (it has many connections already).

use std::path::Path;
use std::str::FromStr;
use std::sync::Once;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};

use crate::config::DatabaseSettings;

pub use sqlx::Any;

/// Read-only SQLite connections per database: enough to keep both cores
/// busy with reads while the writer works.
const SQLITE_READERS: u32 = 4;

/// SQLite's page cache per connection, as its `cache_size` pragma (negative:
/// KiB). SQLite's default, 2 MiB, times a writer and up to four readers per
/// database, eight databases and the embedded event log, is ~90 MB once the
/// files outgrow it, and `kart up`'s memory grew by about that much over a
/// 100,000-order run. The operating system caches the files anyway, so a
/// page SQLite does not hold is a copy from memory, not a disk read.
pub const SQLITE_CACHE_SIZE: &str = "-512";

/// A transaction on either database, and the outbox rows it will write.
///
/// Use it as a connection (`&mut *tx`). Events enqueued in it
/// ([`crate::outbox::enqueue`]) are written when it commits, in as few
/// statements as possible: a consumer's batch enqueues an event or two per
/// event it applies, and on SQLite every statement is a round trip to the
/// connection's thread while the database's one writer is held. Dropped
/// without a commit, it rolls back (sqlx's transaction does that) and its
/// outbox rows are never written.
pub struct Tx {
    inner: sqlx::Transaction<'static, Any>,
    outbox: Vec<crate::outbox::OutboxRow>,
    kind: DbKind,
}

impl Tx {
    /// Writes the enqueued outbox rows, then commits.
    pub async fn commit(mut self) -> Result<(), sqlx::Error> {
        crate::outbox::write_rows(&mut self.inner, &self.outbox).await?;
        self.inner.commit().await
    }

    /// Rolls back: nothing it wrote or enqueued stays.
    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        self.inner.rollback().await
    }

    /// Which database the transaction is on, for the statements that are
    /// written differently on each ([`Db::kind`]).
    pub fn kind(&self) -> DbKind {
        self.kind
    }

    /// Whether committing writes outbox rows, that is whether the relay
    /// has anything to do once it has: most consumer batches of a service
    /// that only records (analytics, say) outbox nothing, and a relay woken
    /// for nothing reads the outbox for nothing.
    pub fn outboxes(&self) -> bool {
        !self.outbox.is_empty()
    }

    pub(crate) fn enqueue(&mut self, row: crate::outbox::OutboxRow) {
        self.outbox.push(row);
    }
}

impl std::ops::Deref for Tx {
    type Target = sqlx::AnyConnection;

    fn deref(&self) -> &sqlx::AnyConnection {
        &self.inner
    }
}

impl std::ops::DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut sqlx::AnyConnection {
        &mut self.inner
    }
}

/// Most rows one multi-row statement built on [`padded_values`] writes.
pub const MAX_ROWS_PER_STATEMENT: usize = 64;

/// The `VALUES` rows of a statement that writes `rows` rows of `columns`
/// parameters each, numbered from `$1` (`($1, $2), ($3, $4)`), and how many
/// rows that is: `rows` padded to the next power of two, so that a handful
/// of statement texts cover every batch size and stay in each connection's
/// prepared-statement cache. The caller binds its rows, then NULLs for the
/// padding, rows its statement skips (`WHERE column1 IS NOT NULL`, say: both
/// databases name a `VALUES` list's columns `column1`, `column2`, …).
///
/// A batch written this way is one round trip instead of one per row, and
/// on SQLite every round trip is a hand-over to the connection's thread
/// while the database's one writer is held.
pub fn padded_values(rows: usize, columns: usize) -> (String, usize) {
    let padded = rows.next_power_of_two();
    let values: Vec<String> = (0..padded)
        .map(|row| {
            let params: Vec<String> = (1..=columns)
                .map(|column| format!("${}", row * columns + column))
                .collect();
            format!("({})", params.join(", "))
        })
        .collect();
    (values.join(", "), padded)
}

/// `column{from}, …, column{to}`: the columns of a [`padded_values`] list
/// a statement selects.
pub fn values_columns(from: usize, to: usize) -> String {
    (from..=to)
        .map(|column| format!("column{column}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One text that runs `first`, then `then`, in one round trip: on
/// PostgreSQL `first` is a writing `WITH` of `then` (it runs to completion
/// whether or not `then` reads it), on SQLite the two are one text of two
/// statements, which sqlx runs in one hand-over to the connection's thread.
/// The rows are `then`'s. For two writes that go together unconditionally;
/// a write guarded by another's outcome is written out where it is used.
pub fn both_in_one_round_trip(kind: DbKind, first: &str, then: &str) -> String {
    match kind {
        DbKind::Postgres => format!("WITH first_write AS ({first}) {then}"),
        DbKind::Sqlite => format!("{first}; {then}"),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbKind {
    Postgres,
    Sqlite,
}

/// A service's database.
#[derive(Clone)]
pub struct Db {
    pool: AnyPool,
    /// Read-only connections (SQLite), or `pool` again (PostgreSQL).
    reader: AnyPool,
    kind: DbKind,
    /// The URL with any password masked, for messages.
    display_url: String,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("kind", &self.kind)
            .field("url", &self.display_url)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot reach database {url}")]
    Connect {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("database {url}")]
    Setup {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error(transparent)]
    Query(#[from] sqlx::Error),
}

impl Db {
    /// Connects, creating the database itself when it does not exist yet
    /// (a PostgreSQL database per service, or the SQLite file and its folder).
    pub async fn connect(url: &SecretString, settings: &DatabaseSettings) -> Result<Db, DbError> {
        static DRIVERS: Once = Once::new();
        DRIVERS.call_once(sqlx::any::install_default_drivers);

        let raw = url.expose_secret();
        let display_url = mask_password(raw);
        let kind = if raw.starts_with("sqlite:") {
            DbKind::Sqlite
        } else {
            DbKind::Postgres
        };
        let timeout = Duration::from_secs(settings.connect_timeout_secs);
        let setup_error = |source| DbError::Setup {
            url: display_url.clone(),
            source,
        };

        let connect_url = match kind {
            DbKind::Sqlite => {
                let path = sqlite_path(raw);
                if let Some(parent) = Path::new(&path).parent()
                    && !parent.as_os_str().is_empty()
                {
                    std::fs::create_dir_all(parent).map_err(|e| setup_error(sqlx::Error::Io(e)))?;
                }
                if raw.contains('?') {
                    raw.to_owned()
                } else {
                    format!("{raw}?mode=rwc")
                }
            }
            DbKind::Postgres => {
                create_postgres_database_if_missing(raw, timeout)
                    .await
                    .map_err(|source| DbError::Connect {
                        url: display_url.clone(),
                        source,
                    })?;
                raw.to_owned()
            }
        };

        let options = AnyConnectOptions::from_str(&connect_url).map_err(setup_error)?;
        let max = match kind {
            DbKind::Sqlite => 1,
            DbKind::Postgres => settings.max_connections,
        };
        let pool = AnyPoolOptions::new()
            .max_connections(max)
            .acquire_timeout(timeout)
            .test_before_acquire(kind == DbKind::Postgres)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if kind == DbKind::Sqlite {
                        conn.execute(
                            format!(
                                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                                 PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON; \
                                 PRAGMA cache_size = {SQLITE_CACHE_SIZE};"
                            )
                            .as_str(),
                        )
                        .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options.clone())
            .await
            .map_err(|source| DbError::Connect {
                url: display_url.clone(),
                source,
            })?;
        let in_memory = connect_url.contains(":memory:") || connect_url.contains("mode=memory");
        let reader = match kind {
            // Every connection to an in-memory SQLite database opens a new,
            // empty one: reads must share the writer's.
            DbKind::Sqlite if in_memory => pool.clone(),
            // Opened on first use, after the writer has created the file and
            // run the migrations.
            DbKind::Sqlite => AnyPoolOptions::new()
                .max_connections(SQLITE_READERS)
                .acquire_timeout(timeout)
                .test_before_acquire(false)
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        conn.execute(
                            format!(
                                "PRAGMA busy_timeout = 5000; PRAGMA query_only = ON; \
                                 PRAGMA cache_size = {SQLITE_CACHE_SIZE};"
                            )
                            .as_str(),
                        )
                        .await?;
                        Ok(())
                    })
                })
                .connect_lazy_with(options),
            DbKind::Postgres => pool.clone(),
        };
        Ok(Db {
            pool,
            reader,
            kind,
            display_url,
        })
    }

    /// The pool for transactions and writes.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The pool for reads outside a transaction: they see everything
    /// committed before they start, and on SQLite they do not wait for the
    /// writer. Never write through it (SQLite refuses: `query_only`).
    pub fn reader(&self) -> &AnyPool {
        &self.reader
    }

    pub fn kind(&self) -> DbKind {
        self.kind
    }

    /// The URL with its password masked.
    pub fn display_url(&self) -> &str {
        &self.display_url
    }

    pub async fn begin(&self) -> Result<Tx, sqlx::Error> {
        Ok(Tx {
            inner: self.pool.begin().await?,
            outbox: Vec::new(),
            kind: self.kind,
        })
    }

    /// Readiness: one round trip.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map(drop)
    }

    pub async fn close(&self) {
        self.reader.close().await;
        self.pool.close().await;
    }
}

/// Milliseconds since the Unix epoch: the portable timestamp column type.
/// Whether `error` is a unique-constraint violation, on either database.
pub fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(e) if e.is_unique_violation())
}

pub fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn sqlite_path(url: &str) -> String {
    let rest = url.trim_start_matches("sqlite:").trim_start_matches("//");
    rest.split('?').next().unwrap_or_default().to_owned()
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`.
pub fn mask_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((credentials, host)) = rest.split_once('@') else {
        return url.to_owned();
    };
    match credentials.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

/// Every service owns a PostgreSQL database; a fresh cluster does not have
/// them yet. Connects to the `postgres` maintenance database on the same
/// server and creates the missing one.
async fn create_postgres_database_if_missing(
    url: &str,
    timeout: Duration,
) -> Result<(), sqlx::Error> {
    use sqlx::ConnectOptions;
    use sqlx::postgres::PgConnectOptions;

    let options = PgConnectOptions::from_str(url)?;
    let Some(database) = options.get_database().map(str::to_owned) else {
        return Ok(());
    };
    let maintenance = options.clone().database("postgres");
    let mut conn = tokio::time::timeout(timeout, maintenance.connect())
        .await
        .map_err(|_| sqlx::Error::PoolTimedOut)??;
    let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(&database)
        .fetch_optional(&mut conn)
        .await?;
    if exists.is_none() {
        let quoted = format!("\"{}\"", database.replace('"', "\"\""));
        match conn
            .execute(format!("CREATE DATABASE {quoted}").as_str())
            .await
        {
            Ok(_) => {}
            // Another instance of the service created it first.
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P04") => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A throwaway in-memory SQLite database, for kit's own unit tests.
#[cfg(test)]
pub(crate) async fn in_memory() -> Db {
    let settings = DatabaseSettings {
        url: SecretString::from("sqlite::memory:"),
        max_connections: 1,
        connect_timeout_secs: 5,
    };
    Db::connect(&settings.url, &settings)
        .await
        .expect("an in-memory SQLite database opens")
}

/// [`in_memory`] with kit's own tables (outbox, inbox, positions).
#[cfg(test)]
pub(crate) async fn in_memory_with_kit_tables() -> Db {
    let db = in_memory().await;
    crate::migrate::run(&db, "kit", crate::service::KIT_MIGRATIONS)
        .await
        .expect("kit's migrations apply");
    db
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_masked() {
        assert_eq!(
            mask_password("postgres://kart:hunter2@db:5432/kart"),
            "postgres://kart:***@db:5432/kart"
        );
        assert_eq!(
            mask_password("postgres://kart@db/kart"),
            "postgres://kart@db/kart"
        );
        assert_eq!(mask_password("sqlite://data/x.db"), "sqlite://data/x.db");
    }

    #[test]
    fn sqlite_paths_are_read_from_urls() {
        assert_eq!(sqlite_path("sqlite://data/x.db"), "data/x.db");
        assert_eq!(sqlite_path("sqlite:///tmp/x.db?mode=rwc"), "/tmp/x.db");
        assert_eq!(sqlite_path("sqlite:x.db"), "x.db");
    }

    #[tokio::test]
    async fn an_in_memory_database_is_read_through_its_writer() {
        let db = in_memory().await;
        sqlx::raw_sql("CREATE TABLE t (n INTEGER); INSERT INTO t VALUES (7);")
            .execute(db.pool())
            .await
            .expect("writes");
        let n: i64 = sqlx::query_scalar("SELECT n FROM t")
            .fetch_one(db.reader())
            .await
            .expect("the reader sees the writer's table");
        assert_eq!(n, 7);
    }
}
