//! The users service's gRPC API: what the gateway and the payment service
//! call. The gateway has already authenticated the caller; `user_id` in a
//! request is who the gateway says is asking.

use chrono::{Datelike, Utc};
use contracts::Event;
use contracts::events::UserRegisteredV1;
use contracts::grpc::trace_of;
use contracts::grpc::users::v1 as pb;
use kit::db::{Db, now_millis};
use kit::outbox::{self, OutboxSignal};
use kit::problem::{Problem, internal_status};
use sha2::{Digest, Sha256};
use tonic::{Request, Response, Status};

use crate::domain::{
    DisplayName, Email, Password, Role, SavedCard, decoy_hash, new_id, verify_password,
};
use crate::store::{self, Account, StoreError};

/// What both gRPC services share.
#[derive(Clone)]
pub struct UsersApi {
    pub db: Db,
    pub outbox: OutboxSignal,
    /// How long a refresh token lives, in milliseconds.
    pub refresh_ttl_ms: i64,
}

fn wrong_credentials() -> Status {
    Problem::unauthenticated("That email and password do not match an account.").into()
}

fn session_over() -> Status {
    Problem::new(
        kit::problem::StatusCode::UNAUTHORIZED,
        "session_expired",
        "Your session has ended. Sign in again.",
    )
    .into()
}

fn user_message(account: &Account) -> pb::User {
    pb::User {
        id: account.id.clone(),
        email: account.email.clone(),
        display_name: account.display_name.clone(),
        role: account.role.as_str().to_owned(),
        created_at: account.created_at,
    }
}

fn payment_method_message(method: &store::PaymentMethod) -> pb::PaymentMethod {
    pb::PaymentMethod {
        id: method.id.clone(),
        user_id: method.user_id.clone(),
        provider_token: method.card.provider_token.clone(),
        brand: method.card.brand.clone(),
        last4: method.card.last4.clone(),
        exp_month: method.card.exp_month,
        exp_year: method.card.exp_year,
        provider: method.card.provider.clone(),
        is_default: method.is_default,
        created_at: method.created_at,
    }
}

/// A new refresh token and the hash that is stored in its place.
fn new_refresh_token() -> Result<(String, String), Status> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(internal_status)?;
    let token = format!("rt_{}", hex::encode(bytes));
    let hash = token_hash(&token);
    Ok((token, hash))
}

fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Runs password hashing off the async threads, at most one hash per core
/// at a time. An Argon2 hash takes 19 MiB and a core's worth of work, so
/// more at once than there are cores only adds memory (a burst of sign-ups
/// peaked at ~170 MB of hashes): the rest wait their turn here, holding no
/// thread.
async fn argon2_off_thread<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Status> {
    static PERMITS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    let permits = PERMITS.get_or_init(|| {
        tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get()))
    });
    let _permit = permits.acquire().await.map_err(internal_status)?;
    tokio::task::spawn_blocking(work)
        .await
        .map_err(internal_status)
}

async fn hash_password(password: Password) -> Result<String, Status> {
    argon2_off_thread(move || password.hash())
        .await?
        .map_err(internal_status)
}

async fn check_password(password: String, hash: String) -> Result<bool, Status> {
    argon2_off_thread(move || verify_password(&password, &hash)).await
}

impl UsersApi {
    /// Opens a session for `account` inside `tx`.
    async fn open_session(
        &self,
        tx: &mut kit::Tx,
        account: &Account,
    ) -> Result<(String, String, i64), Status> {
        let (token, hash) = new_refresh_token()?;
        let now = now_millis();
        let expires_at = now + self.refresh_ttl_ms;
        let id = new_id("ses");
        store::insert_session(tx, &id, &account.id, &hash, now, expires_at)
            .await
            .map_err(internal_status)?;
        Ok((id, token, expires_at))
    }

    async fn session_for(&self, account: &Account) -> Result<pb::Session, Status> {
        let mut tx = self.db.begin().await.map_err(internal_status)?;
        let (_, refresh_token, refresh_expires_at) = self.open_session(&mut tx, account).await?;
        tx.commit().await.map_err(internal_status)?;
        Ok(pb::Session {
            user: Some(user_message(account)),
            refresh_token,
            refresh_expires_at,
        })
    }
}

#[tonic::async_trait]
impl pb::accounts_server::Accounts for UsersApi {
    async fn sign_up(
        &self,
        request: Request<pb::SignUpRequest>,
    ) -> Result<Response<pb::Session>, Status> {
        let trace = trace_of(&request);
        let input = request.into_inner();
        let email = Email::parse(&input.email)?;
        let display_name = DisplayName::parse(&input.display_name, &email)?;
        let password = Password::new(&input.password, &email)?;
        let password_hash = hash_password(password).await?;
        let account = Account {
            id: new_id("usr"),
            email: email.as_str().to_owned(),
            display_name: display_name.as_str().to_owned(),
            role: Role::Customer,
            created_at: now_millis(),
        };
        let mut tx = self.db.begin().await.map_err(internal_status)?;
        store::insert_account(&mut tx, &account, &password_hash)
            .await
            .map_err(|e| match e {
                StoreError::EmailTaken => Status::from(Problem::conflict(
                    "email_taken",
                    "email",
                    "An account with this email already exists. Sign in instead.",
                )),
                StoreError::Db(e) => internal_status(e),
            })?;
        let event = UserRegisteredV1 {
            user_id: account.id.clone(),
            email: account.email.clone(),
            display_name: account.display_name.clone(),
            registered_at: Utc::now(),
        };
        outbox::enqueue(
            &mut tx,
            UserRegisteredV1::TOPIC,
            &event.to_cloud_event("/kart/users", Some(trace)),
        )
        .map_err(internal_status)?;
        let (_, refresh_token, refresh_expires_at) = self.open_session(&mut tx, &account).await?;
        tx.commit().await.map_err(internal_status)?;
        self.outbox.notify();
        tracing::info!(user_id = %account.id, "account created");
        Ok(Response::new(pb::Session {
            user: Some(user_message(&account)),
            refresh_token,
            refresh_expires_at,
        }))
    }

    async fn sign_in(
        &self,
        request: Request<pb::SignInRequest>,
    ) -> Result<Response<pb::Session>, Status> {
        let input = request.into_inner();
        let Ok(email) = Email::parse(&input.email) else {
            return Err(wrong_credentials());
        };
        let found = store::account_by_email(&self.db, &email)
            .await
            .map_err(internal_status)?;
        // Unknown emails pay for a hash too, so timing does not tell them apart.
        let hash = found
            .as_ref()
            .map_or_else(|| decoy_hash().to_owned(), |(_, hash)| hash.clone());
        let matches = check_password(input.password, hash).await?;
        match found {
            Some((account, _)) if matches => Ok(Response::new(self.session_for(&account).await?)),
            _ => Err(wrong_credentials()),
        }
    }

    async fn refresh(
        &self,
        request: Request<pb::RefreshRequest>,
    ) -> Result<Response<pb::Session>, Status> {
        let token = request.into_inner().refresh_token;
        let now = now_millis();
        let mut tx = self.db.begin().await.map_err(internal_status)?;
        let Some(session) = store::session_by_token_hash(&mut tx, &token_hash(&token))
            .await
            .map_err(internal_status)?
        else {
            return Err(session_over());
        };
        if session.replaced {
            // A rotated token came back: someone kept a copy. End every
            // session of this user so the copy is worthless too.
            let ended = store::revoke_all_sessions(&mut tx, &session.user_id, now)
                .await
                .map_err(internal_status)?;
            tx.commit().await.map_err(internal_status)?;
            tracing::warn!(user_id = %session.user_id, sessions_ended = ended, "refresh token reused; all sessions ended");
            return Err(session_over());
        }
        if session.revoked || session.expires_at <= now {
            return Err(session_over());
        }
        let account = store::account_by_id(&mut *tx, &session.user_id)
            .await
            .map_err(internal_status)?
            .ok_or_else(session_over)?;
        let (new_id, refresh_token, refresh_expires_at) =
            self.open_session(&mut tx, &account).await?;
        if !store::revoke_session(&mut tx, &session.id, Some(&new_id), now)
            .await
            .map_err(internal_status)?
        {
            return Err(session_over());
        }
        tx.commit().await.map_err(internal_status)?;
        Ok(Response::new(pb::Session {
            user: Some(user_message(&account)),
            refresh_token,
            refresh_expires_at,
        }))
    }

    async fn sign_out(
        &self,
        request: Request<pb::SignOutRequest>,
    ) -> Result<Response<pb::SignOutResponse>, Status> {
        let token = request.into_inner().refresh_token;
        let mut tx = self.db.begin().await.map_err(internal_status)?;
        if let Some(session) = store::session_by_token_hash(&mut tx, &token_hash(&token))
            .await
            .map_err(internal_status)?
        {
            store::revoke_session(&mut tx, &session.id, None, now_millis())
                .await
                .map_err(internal_status)?;
        }
        tx.commit().await.map_err(internal_status)?;
        Ok(Response::new(pb::SignOutResponse {}))
    }

    async fn get_user(
        &self,
        request: Request<pb::GetUserRequest>,
    ) -> Result<Response<pb::User>, Status> {
        let id = request.into_inner().user_id;
        let account =
            store::account_by_id(&mut *self.db.read().await.map_err(internal_status)?, &id)
                .await
                .map_err(internal_status)?
                .ok_or_else(|| Status::from(Problem::not_found("There is no such user.")))?;
        Ok(Response::new(user_message(&account)))
    }
}

fn no_such_card() -> Status {
    Problem::not_found("You have no saved card with that id.").into()
}

#[tonic::async_trait]
impl pb::payment_methods_server::PaymentMethods for UsersApi {
    async fn add_payment_method(
        &self,
        request: Request<pb::AddPaymentMethodRequest>,
    ) -> Result<Response<pb::PaymentMethod>, Status> {
        let input = request.into_inner();
        let today = Utc::now();
        let card = SavedCard::parse(
            &input.provider,
            &input.provider_token,
            &input.brand,
            &input.last4,
            input.exp_month,
            input.exp_year,
            (today.year() as u32, today.month()),
        )?;
        if store::account_by_id(
            &mut *self.db.read().await.map_err(internal_status)?,
            &input.user_id,
        )
        .await
        .map_err(internal_status)?
        .is_none()
        {
            return Err(Problem::not_found("There is no such user.").into());
        }
        let method = store::insert_payment_method(
            &self.db,
            &new_id("pm"),
            &input.user_id,
            &card,
            now_millis(),
        )
        .await
        .map_err(internal_status)?;
        tracing::info!(user_id = %method.user_id, payment_method_id = %method.id, brand = %card.brand, "card saved");
        Ok(Response::new(payment_method_message(&method)))
    }

    async fn list_payment_methods(
        &self,
        request: Request<pb::ListPaymentMethodsRequest>,
    ) -> Result<Response<pb::ListPaymentMethodsResponse>, Status> {
        let user_id = request.into_inner().user_id;
        let methods = store::payment_methods_of(&self.db, &user_id)
            .await
            .map_err(internal_status)?;
        Ok(Response::new(pb::ListPaymentMethodsResponse {
            payment_methods: methods.iter().map(payment_method_message).collect(),
        }))
    }

    async fn remove_payment_method(
        &self,
        request: Request<pb::PaymentMethodRef>,
    ) -> Result<Response<pb::RemovePaymentMethodResponse>, Status> {
        let input = request.into_inner();
        if !store::remove_payment_method(&self.db, &input.user_id, &input.payment_method_id)
            .await
            .map_err(internal_status)?
        {
            return Err(no_such_card());
        }
        Ok(Response::new(pb::RemovePaymentMethodResponse {}))
    }

    async fn set_default_payment_method(
        &self,
        request: Request<pb::PaymentMethodRef>,
    ) -> Result<Response<pb::PaymentMethod>, Status> {
        let input = request.into_inner();
        if !store::set_default_payment_method(&self.db, &input.user_id, &input.payment_method_id)
            .await
            .map_err(internal_status)?
        {
            return Err(no_such_card());
        }
        let method = store::payment_method_of(&self.db, &input.user_id, &input.payment_method_id)
            .await
            .map_err(internal_status)?
            .ok_or_else(no_such_card)?;
        Ok(Response::new(payment_method_message(&method)))
    }

    async fn get_payment_method(
        &self,
        request: Request<pb::GetPaymentMethodRequest>,
    ) -> Result<Response<pb::PaymentMethod>, Status> {
        let input = request.into_inner();
        let method = store::payment_method_of(&self.db, &input.user_id, &input.payment_method_id)
            .await
            .map_err(internal_status)?;
        // Audit: which order asked for which card, and whether it got it.
        tracing::info!(
            user_id = %input.user_id,
            payment_method_id = %input.payment_method_id,
            order_id = %input.order_id,
            found = method.is_some(),
            "payment method fetched for an order"
        );
        Ok(Response::new(payment_method_message(
            &method.ok_or_else(no_such_card)?,
        )))
    }
}
