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
        sqlx::raw_sql(sql)
            .execute(&mut *tx)
            .await
            .map_err(|source| MigrateError::Failed {
                scope: scope.to_owned(),
                version: migration.version,
                name: migration.name.to_owned(),
                source,
            })?;
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
