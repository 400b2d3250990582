//! Schema migrations, run by every service at start-up and by `kart migrate`.
//!
//! sqlx's own migrator keeps one history per database and one SQL text per
//! migration; Kart needs a history per *scope* (kit's outbox and inbox
//! tables live beside each service's own) and, for the few statements where
//! PostgreSQL and SQLite disagree, one text per dialect. Migrations are
//! embedded in the binary with `include_str!`, applied in version order, each
//! in its own transaction, and recorded with a checksum so an edited,
//! already-applied migration is caught instead of silently skipped.

use crate::db::{Db, DbKind, now_millis};

/// One migration step.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub postgres: &'static str,
    pub sqlite: &'static str,
}

impl Migration {
    /// A migration whose SQL runs unchanged on both databases.
    pub const fn portable(version: i64, name: &'static str, sql: &'static str) -> Migration {
        Migration {
            version,
            name,
            postgres: sql,
            sqlite: sql,
        }
    }

    /// A migration with a text per dialect.
    pub const fn per_dialect(
        version: i64,
        name: &'static str,
        postgres: &'static str,
        sqlite: &'static str,
    ) -> Migration {
        Migration {
            version,
            name,
            postgres,
            sqlite,
        }
    }

    /// A migration only SQLite needs: a storage choice PostgreSQL does not
    /// offer (a table `WITHOUT ROWID`, say). On PostgreSQL it is recorded as
    /// applied and runs nothing, so both databases share one version list.
    pub const fn sqlite_only(version: i64, name: &'static str, sqlite: &'static str) -> Migration {
        Migration {
            version,
            name,
            postgres: "",
            sqlite,
        }
    }

    fn sql(&self, kind: DbKind) -> &'static str {
        match kind {
            DbKind::Postgres => self.postgres,
            DbKind::Sqlite => self.sqlite,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("migration {scope}/{version} ({name}) was changed after it was applied")]
    Changed {
        scope: String,
        version: i64,
        name: String,
    },
    #[error("migration {scope}/{version} ({name}) failed")]
    Failed {
        scope: String,
        version: i64,
        name: String,
        #[source]
        source: sqlx::Error,
    },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Applies the migrations of `scope` not applied yet. Concurrent callers on
/// PostgreSQL (several replicas starting at once) queue on an advisory lock.
pub async fn run(db: &Db, scope: &str, migrations: &[Migration]) -> Result<usize, MigrateError> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS kart_migrations (
            scope TEXT NOT NULL,
            version BIGINT NOT NULL,
            name TEXT NOT NULL,
            checksum TEXT NOT NULL,
            applied_at BIGINT NOT NULL,
            PRIMARY KEY (scope, version)
        )",
    )
    .execute(&mut *db.write().await?)
    .await?;

    let mut sorted: Vec<&Migration> = migrations.iter().collect();
    sorted.sort_by_key(|m| m.version);
    let mut applied_now = 0;
    for migration in sorted {
        let sql = migration.sql(db.kind());
        let checksum = checksum(sql);
        let mut tx = db.begin().await?;
        if db.kind() == DbKind::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock(7489301)")
                .execute(&mut *tx)
                .await?;
        }
        let recorded: Option<String> = sqlx::query_scalar(
            "SELECT checksum FROM kart_migrations WHERE scope = $1 AND version = $2",
        )
        .bind(scope)
        .bind(migration.version)
        .fetch_optional(&mut *tx)
        .await?;
        match recorded {
            Some(existing) if existing == checksum => continue,
            Some(_) => {
                return Err(MigrateError::Changed {
                    scope: scope.to_owned(),
                    version: migration.version,
                    name: migration.name.to_owned(),
                });
            }
            None => {}
        }
        if !sql.is_empty() {
            sqlx::raw_sql(sql)
                .execute(&mut *tx)
                .await
                .map_err(|source| MigrateError::Failed {
                    scope: scope.to_owned(),
                    version: migration.version,
                    name: migration.name.to_owned(),
                    source,
                })?;
        }
        sqlx::query(
            "INSERT INTO kart_migrations (scope, version, name, checksum, applied_at)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(scope)
        .bind(migration.version)
        .bind(migration.name)
        .bind(&checksum)
        .bind(now_millis())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        applied_now += 1;
        tracing::info!(
            scope,
            version = migration.version,
            name = migration.name,
            "migration applied"
        );
    }
    Ok(applied_now)
}

/// FNV-1a, 64 bits: enough to notice an edited migration, no extra crate.
fn checksum(sql: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in sql.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::KIT_MIGRATIONS;

    /// A database made before the inbox and positions were keyed tables
    /// keeps every row through the rebuild.
    #[tokio::test]
    async fn the_inbox_and_positions_keep_their_rows_when_rebuilt_without_rowid() {
        let db = crate::db::in_memory().await;
        let before_rebuild: Vec<Migration> = KIT_MIGRATIONS
            .iter()
            .copied()
            .filter(|m| m.version < 4)
            .collect();
        run(&db, "kit", &before_rebuild).await.expect("migrates");
        sqlx::raw_sql(
            "INSERT INTO kart_inbox VALUES ('saga', 'evt_1', 10), ('saga', 'evt_2', 11);
             INSERT INTO kart_consumer_offsets VALUES ('saga', 'order.events', 3, 42, 12);",
        )
        .execute(&mut *db.write().await.expect("the writer"))
        .await
        .expect("rows written");

        assert_eq!(run(&db, "kit", KIT_MIGRATIONS).await.expect("migrates"), 1);

        let mut conn = db.read().await.expect("a reader");
        let inbox: Vec<(String, String, i64)> =
            sqlx::query_as("SELECT * FROM kart_inbox ORDER BY event_id")
                .fetch_all(&mut *conn)
                .await
                .expect("reads");
        assert_eq!(
            inbox,
            vec![
                ("saga".to_owned(), "evt_1".to_owned(), 10),
                ("saga".to_owned(), "evt_2".to_owned(), 11)
            ]
        );
        let offsets: Vec<(String, String, i64, i64, i64)> =
            sqlx::query_as("SELECT * FROM kart_consumer_offsets")
                .fetch_all(&mut *conn)
                .await
                .expect("reads");
        assert_eq!(
            offsets,
            vec![("saga".to_owned(), "order.events".to_owned(), 3, 42, 12)]
        );
        let keyed: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE sql LIKE '%WITHOUT ROWID' ORDER BY name",
        )
        .fetch_all(&mut *conn)
        .await
        .expect("reads the schema");
        assert_eq!(keyed, vec!["kart_consumer_offsets", "kart_inbox"]);
        drop(conn);

        // The primary key still refuses a second copy of an event.
        let again = sqlx::query("INSERT INTO kart_inbox VALUES ('saga', 'evt_1', 13)")
            .execute(&mut *db.write().await.expect("the writer"))
            .await;
        assert!(again.is_err_and(|e| crate::db::is_unique_violation(&e)));
    }
}
