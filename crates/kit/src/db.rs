//! Storage: one code path over PostgreSQL and SQLite.
//!
//! Services talk to an [`sqlx::AnyPool`], so the same queries run on both.
//! That asks for portable SQL: `$1` placeholders (SQLite accepts them too),
//! `BIGINT`/`TEXT`/`BOOLEAN` columns, timestamps as Unix milliseconds,
//! `ON CONFLICT`, `RETURNING`. Where the dialects really differ (identity
//! columns, locks) [`Db::kind`] says which one is behind the pool.
//!
//! SQLite runs in WAL mode with a single writer connection: SQLite has one
//! writer anyway, and one connection means a transaction never fails with
//! `SQLITE_BUSY` while upgrading its lock. So on SQLite never hold a
//! transaction open while waiting on the network.
//!
//! PostgreSQL connections live in sqlx's pool, which pings a connection
//! before handing it out and after taking it back: one can die while idle
//! (a server restart, a dropped socket). A SQLite connection is a file
//! handle in this process and cannot, and each ping was one more statement,
//! a cost `kart up` paid several times per order; SQLite's connections are
//! held by Kart ([`crate::held`]) and run their statements on the calling
//! task ([`crate::sqlite_inline`]).
//!
//! [`Db::write`] is a connection for writes outside a transaction,
//! [`Db::begin`] a transaction. Reads that need none go to [`Db::read`]: on
//! SQLite a few more connections that can only read, which WAL lets run
//! beside the writer, so a page view never queues behind a consumer's
//! batch; on PostgreSQL the same pool (it has many connections already).

use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, LazyLock, Once};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::pool::PoolConnection;
use sqlx::{AnyConnection, AnyPool, ConnectOptions, Executor};

use crate::config::DatabaseSettings;
use crate::held::{Connections, Lease};
use crate::sqlite_inline::{BACKSTOP_WAL_PAGES, Checkpointer};

pub use sqlx::Any;

/// Read-only SQLite connections per database: enough to keep both cores
/// busy with reads while the writer works.
const SQLITE_READERS: usize = 4;

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
/// event it applies, and every statement is time the database's one writer
/// is held on SQLite, a network round trip on PostgreSQL. Dropped
/// without a commit, it rolls back and its outbox rows are never written:
/// on PostgreSQL sqlx's transaction does that; on SQLite the writer's next
/// user does, before anything else ([`crate::held`]).
pub struct Tx {
    inner: TxConnection,
    outbox: Vec<crate::outbox::OutboxRow>,
    kind: DbKind,
}

enum TxConnection {
    Postgres(sqlx::Transaction<'static, Any>),
    /// The writer, after a plain `BEGIN`.
    Sqlite(Lease<AnyConnection>),
}

impl Tx {
    /// Writes the enqueued outbox rows, then commits.
    pub async fn commit(mut self) -> Result<(), sqlx::Error> {
        let outbox = std::mem::take(&mut self.outbox);
        match self.inner {
            TxConnection::Postgres(mut transaction) => {
                crate::outbox::write_rows(&mut transaction, &outbox, None).await?;
                transaction.commit().await
            }
            TxConnection::Sqlite(mut writer) if outbox.is_empty() => writer.commit().await,
            TxConnection::Sqlite(mut writer) => {
                // The last outbox INSERT and the COMMIT in one text: one
                // statement call fewer per transaction that outboxes.
                // Should the INSERT fail, the COMMIT does not run, and the
                // transaction is rolled back as a dropped one is.
                crate::outbox::write_rows(&mut writer, &outbox, Some("COMMIT")).await?;
                writer.committed();
                Ok(())
            }
        }
    }

    /// Rolls back: nothing it wrote or enqueued stays.
    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        match self.inner {
            TxConnection::Postgres(transaction) => transaction.rollback().await,
            TxConnection::Sqlite(mut writer) => writer.rollback().await,
        }
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
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        match &self.inner {
            TxConnection::Postgres(transaction) => transaction,
            TxConnection::Sqlite(writer) => writer,
        }
    }
}

impl std::ops::DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        match &mut self.inner {
            TxConnection::Postgres(transaction) => transaction,
            TxConnection::Sqlite(writer) => writer,
        }
    }
}

/// A connection of a [`Db`], outside any transaction ([`Db::write`],
/// [`Db::read`]); use it as one (`&mut *conn`). Dropped, it goes back.
pub struct Conn(ConnInner);

enum ConnInner {
    Pooled(PoolConnection<Any>),
    Held(Lease<AnyConnection>),
}

impl std::ops::Deref for Conn {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        match &self.0 {
            ConnInner::Pooled(conn) => conn,
            ConnInner::Held(conn) => conn,
        }
    }
}

impl std::ops::DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        match &mut self.0 {
            ConnInner::Pooled(conn) => conn,
            ConnInner::Held(conn) => conn,
        }
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
/// A batch written this way is one round trip instead of one per row: on
/// PostgreSQL one network round trip, on SQLite one statement while the
/// database's one writer is held.
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
/// statements, run in one call.
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
    connections: Store,
    kind: DbKind,
    /// The URL with any password masked, for messages.
    display_url: String,
}

#[derive(Clone)]
enum Store {
    Postgres(AnyPool),
    Sqlite {
        /// The one connection that writes.
        writer: Connections<AnyConnection>,
        /// Read-only connections, or `writer` again for an in-memory
        /// database.
        readers: Connections<AnyConnection>,
        _checkpointer: Option<Arc<Checkpointer>>,
    },
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
        install_drivers();

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
        let connect_error = |source| DbError::Connect {
            url: display_url.clone(),
            source,
        };
        let connections = match kind {
            DbKind::Postgres => Store::Postgres(
                AnyPoolOptions::new()
                    .max_connections(settings.max_connections)
                    .acquire_timeout(timeout)
                    .connect_with(options)
                    .await
                    .map_err(connect_error)?,
            ),
            DbKind::Sqlite => {
                let in_memory =
                    connect_url.contains(":memory:") || connect_url.contains("mode=memory");
                let SqliteConnections {
                    writer,
                    readers,
                    checkpointer,
                } = sqlite_connections(options, in_memory, SQLITE_READERS, timeout)
                    .await
                    .map_err(connect_error)?;
                Store::Sqlite {
                    writer,
                    readers,
                    _checkpointer: checkpointer,
                }
            }
        };
        Ok(Db {
            connections,
            kind,
            display_url,
        })
    }

    /// A connection for writes outside a transaction: on SQLite the
    /// database's one writer, so hold it for no longer than the statement.
    pub async fn write(&self) -> Result<Conn, sqlx::Error> {
        Ok(Conn(match &self.connections {
            Store::Postgres(pool) => ConnInner::Pooled(pool.acquire().await?),
            Store::Sqlite { writer, .. } => ConnInner::Held(writer.acquire().await?),
        }))
    }

    /// A connection for reads outside a transaction: they see everything
    /// committed before they start, and on SQLite they do not wait for the
    /// writer. Never write through it (SQLite refuses: `query_only`).
    pub async fn read(&self) -> Result<Conn, sqlx::Error> {
        Ok(Conn(match &self.connections {
            Store::Postgres(pool) => ConnInner::Pooled(pool.acquire().await?),
            Store::Sqlite { readers, .. } => ConnInner::Held(readers.acquire().await?),
        }))
    }

    /// A PostgreSQL connection of its own, out of the pool, for a session
    /// lock that must end with the connection; `None` on SQLite.
    pub async fn own_postgres_connection(&self) -> Result<Option<AnyConnection>, sqlx::Error> {
        match &self.connections {
            Store::Postgres(pool) => Ok(Some(pool.acquire().await?.detach())),
            Store::Sqlite { .. } => Ok(None),
        }
    }

    pub fn kind(&self) -> DbKind {
        self.kind
    }

    /// The URL with its password masked.
    pub fn display_url(&self) -> &str {
        &self.display_url
    }

    pub async fn begin(&self) -> Result<Tx, sqlx::Error> {
        let inner = match &self.connections {
            Store::Postgres(pool) => TxConnection::Postgres(pool.begin().await?),
            Store::Sqlite { writer, .. } => {
                let mut writer = writer.acquire().await?;
                writer.begin().await?;
                TxConnection::Sqlite(writer)
            }
        };
        Ok(self.transaction(inner))
    }

    fn transaction(&self, inner: TxConnection) -> Tx {
        Tx {
            inner,
            outbox: Vec::new(),
            kind: self.kind,
        }
    }

    /// Begins a transaction whose first statement is `first`, and returns
    /// `first`'s rows. On SQLite the `BEGIN` goes in the same text as
    /// `first`, so the two are one statement call: for
    /// a transaction that always opens with the same kind of statement (a
    /// consumer batch's inbox rows, [`crate::consumer`]). Should `first`
    /// fail, the transaction is rolled back like a dropped one.
    pub async fn begin_with<'q>(
        &self,
        mut first: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>>,
    ) -> Result<(Tx, Vec<sqlx::any::AnyRow>), sqlx::Error> {
        let (inner, rows) = match &self.connections {
            Store::Postgres(pool) => {
                let mut transaction = pool.begin().await?;
                let rows = first.fetch_all(&mut *transaction).await?;
                (TxConnection::Postgres(transaction), rows)
            }
            Store::Sqlite { writer, .. } => {
                use sqlx::Execute;
                let text = format!("BEGIN; {}", first.sql());
                let arguments = first
                    .take_arguments()
                    .map_err(sqlx::Error::Encode)?
                    .unwrap_or_default();
                let mut writer = writer.acquire().await?;
                writer.begun();
                let rows = sqlx::query_with(&text, arguments)
                    .fetch_all(&mut *writer)
                    .await?;
                (TxConnection::Sqlite(writer), rows)
            }
        };
        Ok((self.transaction(inner), rows))
    }

    /// Readiness: one round trip.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT 1")
            .execute(&mut *self.write().await?)
            .await
            .map(drop)
    }

    pub async fn close(&self) {
        match &self.connections {
            Store::Postgres(pool) => pool.close().await,
            Store::Sqlite {
                writer, readers, ..
            } => {
                readers.close().await;
                writer.close().await;
            }
        }
    }
}

/// Installs sqlx's PostgreSQL driver and Kart's own SQLite one (see
/// [`crate::sqlite_inline`]) for `Any` connections; once per process.
pub(crate) fn install_drivers() {
    static DRIVERS: Once = Once::new();
    DRIVERS.call_once(|| {
        // Installing fails only if something installed drivers first;
        // then connecting reports the missing driver.
        if sqlx::any::install_drivers(&[sqlx::postgres::any::DRIVER, crate::sqlite_inline::DRIVER])
            .is_err()
        {
            tracing::error!("sqlx drivers were installed before Kart's");
        }
    });
}

/// A SQLite database's one writer, its query-only readers, and the thread
/// that checkpoints its WAL.
pub(crate) struct SqliteConnections {
    pub(crate) writer: Connections<AnyConnection>,
    /// Read-only connections, or `writer` again for an in-memory database.
    pub(crate) readers: Connections<AnyConnection>,
    /// Kept while any handle to the database is: `None` in memory.
    pub(crate) checkpointer: Option<Arc<Checkpointer>>,
}

/// A SQLite database's one writer and up to `readers` query-only
/// connections, for a service's database and the embedded event log alike.
/// The writer is opened now, so a bad path or a locked file is a start-up
/// error, not the first request's; the readers on first use, after the
/// writer has created the file and run the migrations. An in-memory
/// database has no readers of its own: every connection to one opens a new,
/// empty database, so reads share the writer.
pub(crate) async fn sqlite_connections(
    options: AnyConnectOptions,
    in_memory: bool,
    readers: usize,
    acquire_timeout: Duration,
) -> Result<SqliteConnections, sqlx::Error> {
    install_drivers();
    let writer = Connections::new(
        1,
        acquire_timeout,
        open_sqlite(options.clone(), WRITER_SETUP.as_str()),
    );
    drop(writer.acquire().await?);
    let checkpointer = Checkpointer::start(&options)?.map(Arc::new);
    let readers = if in_memory {
        writer.clone()
    } else {
        Connections::new(
            readers,
            acquire_timeout,
            open_sqlite(
                options,
                "PRAGMA busy_timeout = 5000; PRAGMA query_only = ON;",
            ),
        )
    };
    Ok(SqliteConnections {
        writer,
        readers,
        checkpointer,
    })
}

/// The writer's pragmas. Its automatic checkpoint is only a backstop: the
/// [`Checkpointer`] copies the WAL back off the tokio workers.
static WRITER_SETUP: LazyLock<String> = LazyLock::new(|| {
    format!(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
         PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON; \
         PRAGMA wal_autocheckpoint = {BACKSTOP_WAL_PAGES};"
    )
});

/// How a set of SQLite connections opens one more: `setup` is the pragmas
/// it runs first; the page cache's size is added to them.
fn open_sqlite(
    options: AnyConnectOptions,
    setup: &'static str,
) -> crate::held::Open<AnyConnection> {
    Box::new(move || {
        let options = options.clone();
        Box::pin(async move {
            let mut conn = options.connect().await?;
            conn.execute(format!("{setup} PRAGMA cache_size = {SQLITE_CACHE_SIZE};").as_str())
                .await?;
            Ok(conn)
        })
    })
}

/// Whether `error` is a unique-constraint violation, on either database.
pub fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(e) if e.is_unique_violation())
}

/// Milliseconds since the Unix epoch: the portable timestamp column type.
pub fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn sqlite_path(url: &str) -> String {
    split_sqlite_url(url).0.to_owned()
}

/// A `sqlite:` URL's path (as written, percent-encoding and all) and its
/// query: `sqlite://data/x.db?mode=rwc` → (`data/x.db`, `mode=rwc`).
pub(crate) fn split_sqlite_url(url: &str) -> (&str, &str) {
    let rest = url.trim_start_matches("sqlite:").trim_start_matches("//");
    rest.split_once('?').unwrap_or((rest, ""))
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
    async fn a_transaction_dropped_without_a_commit_leaves_nothing() {
        let db = in_memory().await;
        sqlx::query("CREATE TABLE t (n INTEGER)")
            .execute(&mut *db.write().await.expect("the writer"))
            .await
            .expect("creates");
        let mut abandoned = db.begin().await.expect("begins");
        sqlx::query("INSERT INTO t VALUES (1)")
            .execute(&mut *abandoned)
            .await
            .expect("inserts");
        drop(abandoned);
        let mut kept = db.begin().await.expect("begins after the abandoned one");
        sqlx::query("INSERT INTO t VALUES (2)")
            .execute(&mut *kept)
            .await
            .expect("inserts");
        kept.commit().await.expect("commits");
        let mut rolled_back = db.begin().await.expect("begins");
        sqlx::query("INSERT INTO t VALUES (3)")
            .execute(&mut *rolled_back)
            .await
            .expect("inserts");
        rolled_back.rollback().await.expect("rolls back");
        let stored: Vec<i64> = sqlx::query_scalar("SELECT n FROM t")
            .fetch_all(&mut *db.read().await.expect("a reader"))
            .await
            .expect("reads");
        assert_eq!(stored, vec![2]);
    }

    /// The writer's own checkpoint waits for a WAL of
    /// [`BACKSTOP_WAL_PAGES`]; far fewer pages reach the database's file
    /// only if the checkpointer copies them there.
    #[tokio::test]
    async fn a_file_database_is_checkpointed_by_its_own_thread() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let db = crate::testing::sqlite_db(dir.path()).await;
        let file = std::fs::read_dir(dir.path())
            .expect("lists the directory")
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .find(|path| path.extension().is_some_and(|e| e == "db"))
            .expect("the database's file");
        sqlx::query("CREATE TABLE t (n INTEGER PRIMARY KEY, body TEXT NOT NULL)")
            .execute(&mut *db.write().await.expect("the writer"))
            .await
            .expect("creates");
        // About 300 pages of rows, in commits of their own.
        for n in 0..300 {
            sqlx::query("INSERT INTO t VALUES ($1, $2)")
                .bind(n)
                .bind("x".repeat(3000))
                .execute(&mut *db.write().await.expect("the writer"))
                .await
                .expect("inserts");
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let size = std::fs::metadata(&file).expect("the file's size").len();
            if size >= 300 * 3000 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the database's file is still {size} bytes: nothing checkpointed the WAL"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    #[tokio::test]
    async fn an_in_memory_database_is_read_through_its_writer() {
        let db = in_memory().await;
        sqlx::raw_sql("CREATE TABLE t (n INTEGER); INSERT INTO t VALUES (7);")
            .execute(&mut *db.write().await.expect("the writer"))
            .await
            .expect("writes");
        let n: i64 = sqlx::query_scalar("SELECT n FROM t")
            .fetch_one(&mut *db.read().await.expect("a reader"))
            .await
            .expect("the reader sees the writer's table");
        assert_eq!(n, 7);
    }
}
