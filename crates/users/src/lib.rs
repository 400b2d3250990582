//! Users: accounts, argon2id password hashes, roles, sessions, and saved
//! payment methods (provider token, brand, last4, expiry: never a card
//! number or CVC).
//!
//! - [`domain`]: emails, the password policy, display names, saved cards.
//! - [`store`]: the SQL.
//! - [`api`]: the gRPC services the gateway and the payment service call.
//!
//! Access tokens are not minted here: the gateway signs them after a
//! successful sign-in, so only the gateway holds the signing key. This
//! service keeps the long-lived part, the refresh sessions, hashed.

pub mod api;
pub mod domain;
pub mod store;

use async_trait::async_trait;
use contracts::grpc::users::v1::{
    accounts_server::AccountsServer, payment_methods_server::PaymentMethodsServer,
};
use kit::db::{Db, now_millis};
use kit::migrate::Migration;
use kit::{Service, ServiceContext, ServiceParts};
use secrecy::ExposeSecret;

use crate::domain::{DisplayName, Email, Password, Role, new_id};
use crate::store::{Account, StoreError};

pub const MIGRATIONS: &[Migration] = &[Migration::portable(
    1,
    "users_sessions_payment_methods",
    include_str!("../migrations/0001_users.sql"),
)];

/// The users service.
#[derive(Debug, Default, Clone, Copy)]
pub struct Users;

#[async_trait]
impl Service for Users {
    fn name(&self) -> &'static str {
        "users"
    }

    fn default_port(&self) -> u16 {
        8081
    }

    fn migrations(&self) -> Option<&'static [Migration]> {
        Some(MIGRATIONS)
    }

    fn topics(&self) -> Vec<String> {
        vec![contracts::topics::USER_EVENTS.to_owned()]
    }

    async fn build(&self, context: &ServiceContext) -> anyhow::Result<ServiceParts> {
        let db = context
            .db
            .clone()
            .ok_or_else(|| anyhow::anyhow!("the users service needs its database"))?;
        let auth = &context.settings.auth;
        if let (Some(email), Some(password)) = (&auth.admin_email, &auth.admin_password) {
            let outcome = ensure_admin(&db, email, password.expose_secret()).await?;
            tracing::info!(%email, ?outcome, "first admin from configuration");
        }
        let api = api::UsersApi {
            db,
            outbox: context.outbox.clone(),
            refresh_ttl_ms: i64::try_from(auth.refresh_ttl_secs.saturating_mul(1000))
                .unwrap_or(i64::MAX),
        };
        let grpc = tonic::service::Routes::new(AccountsServer::new(api.clone()))
            .add_service(PaymentMethodsServer::new(api));
        Ok(ServiceParts {
            grpc,
            ..ServiceParts::default()
        })
    }
}

/// What [`ensure_admin`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminOutcome {
    Created,
    /// The account existed; it is now an admin. Its password is unchanged.
    Promoted,
    AlreadyAdmin,
}

/// Makes `email` an admin: creates the account with `password` (which must
/// meet the policy) or promotes the existing one. What the
/// `auth.admin_email` setting and `kart admin create` do.
pub async fn ensure_admin(db: &Db, email: &str, password: &str) -> anyhow::Result<AdminOutcome> {
    let email = Email::parse(email).map_err(|p| anyhow::anyhow!("admin email: {}", p.detail))?;
    if let Some((account, _)) = store::account_by_email(db, &email).await? {
        if account.role == Role::Admin {
            return Ok(AdminOutcome::AlreadyAdmin);
        }
        store::set_role(db, &account.id, Role::Admin).await?;
        return Ok(AdminOutcome::Promoted);
    }
    let password = Password::new(password, &email)
        .map_err(|p| anyhow::anyhow!("admin password: {}", p.detail))?;
    let hash = tokio::task::spawn_blocking(move || password.hash())
        .await?
        .map_err(|e| anyhow::anyhow!("hashing the admin password: {e}"))?;
    let account = Account {
        id: new_id("usr"),
        email: email.as_str().to_owned(),
        display_name: DisplayName::parse("", &email)
            .map_err(|p| anyhow::anyhow!("{}", p.detail))?
            .as_str()
            .to_owned(),
        role: Role::Admin,
        created_at: now_millis(),
    };
    let mut tx = db.begin().await?;
    match store::insert_account(&mut tx, &account, &hash).await {
        Ok(()) => {}
        // Another replica created it a moment ago.
        Err(StoreError::EmailTaken) => return Ok(AdminOutcome::AlreadyAdmin),
        Err(StoreError::Db(e)) => return Err(e.into()),
    }
    tx.commit().await?;
    Ok(AdminOutcome::Created)
}
