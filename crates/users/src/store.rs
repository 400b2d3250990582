//! The users database: accounts, sessions, payment methods. Rows stay in
//! here; callers get [`Account`] and [`PaymentMethod`].

use kit::db::{Db, Tx};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::domain::{Email, Role, SavedCard};

#[derive(Debug, Clone)]
pub struct Account {
    pub id: String,
    pub email: String,
    pub display_name: String,
    pub role: Role,
    pub created_at: i64,
}

#[derive(Debug, Clone)]
pub struct PaymentMethod {
    pub id: String,
    pub user_id: String,
    pub card: SavedCard,
    pub is_default: bool,
    pub created_at: i64,
}

#[derive(Debug, Clone)]
pub struct Session {
    pub id: String,
    pub user_id: String,
    pub expires_at: i64,
    pub revoked: bool,
    /// Set when the session was rotated: presenting its token again means
    /// the token was copied.
    pub replaced: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("that email already has an account")]
    EmailTaken,
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

fn account(row: &AnyRow) -> Result<Account, sqlx::Error> {
    Ok(Account {
        id: row.try_get("id")?,
        email: row.try_get("email")?,
        display_name: row.try_get("display_name")?,
        role: Role::parse(&row.try_get::<String, _>("role")?),
        created_at: row.try_get("created_at")?,
    })
}

const ACCOUNT_COLUMNS: &str = "id, email, display_name, role, created_at";

pub async fn insert_account(
    tx: &mut Tx,
    account: &Account,
    password_hash: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO users (id, email, display_name, password_hash, role, created_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&account.id)
    .bind(&account.email)
    .bind(&account.display_name)
    .bind(password_hash)
    .bind(account.role.as_str())
    .bind(account.created_at)
    .execute(&mut **tx)
    .await
    .map_err(|e| {
        if kit::db::is_unique_violation(&e) {
            StoreError::EmailTaken
        } else {
            StoreError::Db(e)
        }
    })?;
    Ok(())
}

/// The account with `email` and its password hash.
pub async fn account_by_email(
    db: &Db,
    email: &Email,
) -> Result<Option<(Account, String)>, sqlx::Error> {
    let row = sqlx::query(&format!(
        "SELECT {ACCOUNT_COLUMNS}, password_hash FROM users WHERE email = $1"
    ))
    .bind(email.as_str())
    .fetch_optional(&mut *db.read().await?)
    .await?;
    row.map(|row| Ok((account(&row)?, row.try_get("password_hash")?)))
        .transpose()
}

/// One account, read from the pool or inside a transaction (`&mut *tx`): on
/// SQLite the pool has one connection, so a transaction must not wait for a
/// second.
pub async fn account_by_id<'c, E>(executor: E, id: &str) -> Result<Option<Account>, sqlx::Error>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    let row = sqlx::query(&format!(
        "SELECT {ACCOUNT_COLUMNS} FROM users WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(executor)
    .await?;
    row.map(|row| account(&row)).transpose()
}

pub async fn set_role(db: &Db, id: &str, role: Role) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE users SET role = $1 WHERE id = $2")
        .bind(role.as_str())
        .bind(id)
        .execute(&mut *db.write().await?)
        .await?;
    Ok(())
}

pub async fn insert_session(
    tx: &mut Tx,
    id: &str,
    user_id: &str,
    token_hash: &str,
    now: i64,
    expires_at: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO sessions (id, user_id, token_hash, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id)
    .bind(user_id)
    .bind(token_hash)
    .bind(now)
    .bind(expires_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn session_by_token_hash(
    tx: &mut Tx,
    token_hash: &str,
) -> Result<Option<Session>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT id, user_id, expires_at, revoked_at, replaced_by FROM sessions WHERE token_hash = $1",
    )
    .bind(token_hash)
    .fetch_optional(&mut **tx)
    .await?;
    row.map(|row| {
        Ok(Session {
            id: row.try_get("id")?,
            user_id: row.try_get("user_id")?,
            expires_at: row.try_get("expires_at")?,
            revoked: row.try_get::<Option<i64>, _>("revoked_at")?.is_some(),
            replaced: row.try_get::<Option<String>, _>("replaced_by")?.is_some(),
        })
    })
    .transpose()
}

/// Revokes one session if it is still live; false if something else got
/// there first (a concurrent refresh with the same token).
pub async fn revoke_session(
    tx: &mut Tx,
    id: &str,
    replaced_by: Option<&str>,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE sessions SET revoked_at = $1, replaced_by = $2 WHERE id = $3 AND revoked_at IS NULL",
    )
    .bind(now)
    .bind(replaced_by)
    .bind(id)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn revoke_all_sessions(tx: &mut Tx, user_id: &str, now: i64) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE sessions SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL",
    )
    .bind(now)
    .bind(user_id)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected())
}

fn payment_method(row: &AnyRow) -> Result<PaymentMethod, sqlx::Error> {
    let month: i64 = row.try_get("exp_month")?;
    let year: i64 = row.try_get("exp_year")?;
    Ok(PaymentMethod {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        card: SavedCard {
            provider: row.try_get("provider")?,
            provider_token: row.try_get("provider_token")?,
            brand: row.try_get("brand")?,
            last4: row.try_get("last4")?,
            exp_month: u32::try_from(month).unwrap_or_default(),
            exp_year: u32::try_from(year).unwrap_or_default(),
        },
        is_default: row.try_get::<i64, _>("is_default")? != 0,
        created_at: row.try_get("created_at")?,
    })
}

const PAYMENT_METHOD_COLUMNS: &str = "id, user_id, provider, provider_token, brand, last4, exp_month, exp_year, is_default, created_at";

/// What a read selects. sqlx's `Any` driver cannot decode SQLite's BOOLEAN
/// columns, so the flag is read as an integer on both databases.
const SELECT_PAYMENT_METHOD: &str = "id, user_id, provider, provider_token, brand, last4, exp_month, exp_year, \
     CAST(CASE WHEN is_default THEN 1 ELSE 0 END AS BIGINT) AS is_default, created_at";

/// Saves a card; the user's first card becomes their default.
pub async fn insert_payment_method(
    db: &Db,
    id: &str,
    user_id: &str,
    card: &SavedCard,
    now: i64,
) -> Result<PaymentMethod, sqlx::Error> {
    let mut tx = db.begin().await?;
    let existing: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM payment_methods WHERE user_id = $1")
            .bind(user_id)
            .fetch_one(&mut *tx)
            .await?;
    let is_default = existing == 0;
    sqlx::query(&format!(
        "INSERT INTO payment_methods ({PAYMENT_METHOD_COLUMNS})
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
    ))
    .bind(id)
    .bind(user_id)
    .bind(&card.provider)
    .bind(&card.provider_token)
    .bind(&card.brand)
    .bind(&card.last4)
    .bind(i64::from(card.exp_month))
    .bind(i64::from(card.exp_year))
    .bind(is_default)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(PaymentMethod {
        id: id.to_owned(),
        user_id: user_id.to_owned(),
        card: card.clone(),
        is_default,
        created_at: now,
    })
}

/// The user's cards, default first, then newest first.
pub async fn payment_methods_of(db: &Db, user_id: &str) -> Result<Vec<PaymentMethod>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT {SELECT_PAYMENT_METHOD} FROM payment_methods WHERE user_id = $1
         ORDER BY is_default DESC, created_at DESC, id DESC"
    ))
    .bind(user_id)
    .fetch_all(&mut *db.read().await?)
    .await?;
    rows.iter().map(payment_method).collect()
}

/// One card, only if `user_id` owns it.
pub async fn payment_method_of(
    db: &Db,
    user_id: &str,
    id: &str,
) -> Result<Option<PaymentMethod>, sqlx::Error> {
    let row = sqlx::query(&format!(
        "SELECT {SELECT_PAYMENT_METHOD} FROM payment_methods WHERE id = $1 AND user_id = $2"
    ))
    .bind(id)
    .bind(user_id)
    .fetch_optional(&mut *db.read().await?)
    .await?;
    row.map(|row| payment_method(&row)).transpose()
}

/// Deletes a card the user owns; if it was the default, their newest
/// remaining card takes its place. False if there was no such card.
pub async fn remove_payment_method(db: &Db, user_id: &str, id: &str) -> Result<bool, sqlx::Error> {
    let mut tx = db.begin().await?;
    let was_default: Option<i64> = sqlx::query_scalar(
        "SELECT CAST(CASE WHEN is_default THEN 1 ELSE 0 END AS BIGINT) FROM payment_methods WHERE id = $1 AND user_id = $2",
    )
            .bind(id)
            .bind(user_id)
            .fetch_optional(&mut *tx)
            .await?;
    let Some(was_default) = was_default.map(|d| d != 0) else {
        return Ok(false);
    };
    sqlx::query("DELETE FROM payment_methods WHERE id = $1 AND user_id = $2")
        .bind(id)
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
    if was_default {
        sqlx::query(
            "UPDATE payment_methods SET is_default = TRUE WHERE id = (
                 SELECT id FROM payment_methods WHERE user_id = $1
                 ORDER BY created_at DESC, id DESC LIMIT 1)",
        )
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(true)
}

/// Makes one of the user's cards the default. False if there is no such card.
pub async fn set_default_payment_method(
    db: &Db,
    user_id: &str,
    id: &str,
) -> Result<bool, sqlx::Error> {
    let mut tx = db.begin().await?;
    let owned: Option<String> =
        sqlx::query_scalar("SELECT id FROM payment_methods WHERE id = $1 AND user_id = $2")
            .bind(id)
            .bind(user_id)
            .fetch_optional(&mut *tx)
            .await?;
    if owned.is_none() {
        return Ok(false);
    }
    sqlx::query("UPDATE payment_methods SET is_default = (id = $1) WHERE user_id = $2")
        .bind(id)
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(true)
}
