//! Accounts and sessions: sign up, sign in, refresh, sign out, me.

use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use contracts::grpc::users::v1 as pb;
use kit::http::RequestContext;
use kit::problem::Problem;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ProblemDoc, timestamp};
use crate::AppState;
use crate::auth::{Caller, REFRESH_COOKIE, Role, cleared_cookies, cookie, session_cookies};
use crate::extract::{ApiJson, optional_json};
use crate::upstream::{answer, request};

pub fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(sign_up))
        .routes(routes!(sign_in))
        .routes(routes!(refresh))
        .routes(routes!(sign_out))
        .routes(routes!(me))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct SignUpBody {
    #[schema(example = "ada@example.com")]
    pub email: String,
    /// 10 to 128 characters; not a common password, not the email.
    #[schema(example = "correct horse battery staple")]
    pub password: String,
    /// Shown in the shop and in mails; defaults to the part of the email before the @.
    #[serde(default)]
    #[schema(example = "Ada")]
    pub display_name: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct SignInBody {
    pub email: String,
    pub password: String,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct RefreshBody {
    /// The refresh token from sign-in; web pages send it as a cookie instead.
    #[serde(default)]
    pub refresh_token: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserBody {
    #[schema(example = "usr_0193a4f0c2b87d3e9a1f5c6b7d8e9f01")]
    pub id: String,
    pub email: String,
    pub display_name: String,
    /// `customer` or `admin`.
    pub role: String,
    pub created_at: String,
}

/// A session: a short-lived access token and the refresh token that renews it.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionBody {
    pub user: UserBody,
    /// Send as `Authorization: Bearer <access_token>`.
    pub access_token: String,
    #[schema(example = "Bearer")]
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// Single use: each refresh returns a new one.
    pub refresh_token: String,
    pub refresh_expires_at: String,
}

pub fn user_body(user: pb::User) -> UserBody {
    UserBody {
        id: user.id,
        email: user.email,
        display_name: user.display_name,
        role: user.role,
        created_at: timestamp(user.created_at),
    }
}

/// Turns the users service's session into tokens, body and cookies.
fn session_response(
    state: &AppState,
    status: StatusCode,
    session: pb::Session,
) -> Result<Response, Problem> {
    let user = session
        .user
        .ok_or_else(|| Problem::internal(&"the users service returned a session without a user"))?;
    let access_token = state.keys.mint(&user.id, Role::parse(&user.role))?;
    let cookies = session_cookies(state, &access_token, &session.refresh_token);
    let body = SessionBody {
        user: user_body(user),
        access_token,
        token_type: "Bearer".to_owned(),
        expires_in: state.keys.access_ttl_secs,
        refresh_token: session.refresh_token,
        refresh_expires_at: timestamp(session.refresh_expires_at),
    };
    let mut response = (status, axum::Json(body)).into_response();
    for value in cookies {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// Create a customer account and sign in.
#[utoipa::path(post, path = "/api/v1/auth/signup", tag = "auth",
    request_body = SignUpBody,
    responses(
        (status = 201, description = "Account created and signed in; session cookies are set too.", body = SessionBody),
        (status = 409, description = "`email_taken`: an account has this email.", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`: `field` names the input at fault.", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 429, description = "`rate_limited`", body = ProblemDoc, content_type = "application/problem+json"),
    ))]
pub async fn sign_up(
    State(state): State<Arc<AppState>>,
    Extension(context): Extension<RequestContext>,
    ApiJson(body): ApiJson<SignUpBody>,
) -> Result<Response, Problem> {
    let message = pb::SignUpRequest {
        email: body.email,
        password: body.password,
        display_name: body.display_name,
    };
    let session = answer(
        "users",
        state
            .upstreams
            .accounts
            .clone()
            .sign_up(request(&context, message))
            .await,
    )?;
    session_response(&state, StatusCode::CREATED, session)
}

/// Sign in with email and password.
#[utoipa::path(post, path = "/api/v1/auth/signin", tag = "auth",
    request_body = SignInBody,
    responses(
        (status = 200, description = "Signed in; session cookies are set too.", body = SessionBody),
        (status = 401, description = "`unauthenticated`: the email and password do not match an account.", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 429, description = "`rate_limited`", body = ProblemDoc, content_type = "application/problem+json"),
    ))]
pub async fn sign_in(
    State(state): State<Arc<AppState>>,
    Extension(context): Extension<RequestContext>,
    ApiJson(body): ApiJson<SignInBody>,
) -> Result<Response, Problem> {
    let message = pb::SignInRequest {
        email: body.email,
        password: body.password,
    };
    let session = answer(
        "users",
        state
            .upstreams
            .accounts
            .clone()
            .sign_in(request(&context, message))
            .await,
    )?;
    session_response(&state, StatusCode::OK, session)
}

fn refresh_token_of(headers: &HeaderMap, body: Option<RefreshBody>) -> Option<String> {
    body.and_then(|b| b.refresh_token)
        .filter(|t| !t.is_empty())
        .or_else(|| cookie(headers, REFRESH_COOKIE))
}

/// Trade a refresh token for a new session (the old refresh token stops working).
#[utoipa::path(post, path = "/api/v1/auth/refresh", tag = "auth",
    request_body(content = RefreshBody, description = "Optional: web pages send the refresh cookie instead."),
    responses(
        (status = 200, description = "A new session.", body = SessionBody),
        (status = 401, description = "`session_expired`: sign in again.", body = ProblemDoc, content_type = "application/problem+json"),
    ))]
pub async fn refresh(
    State(state): State<Arc<AppState>>,
    Extension(context): Extension<RequestContext>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, Problem> {
    let body: Option<RefreshBody> = optional_json(&body)?;
    let Some(refresh_token) = refresh_token_of(&headers, body) else {
        return Err(Problem::unauthenticated(
            "Send the refresh token from sign-in (or its cookie).",
        ));
    };
    let message = pb::RefreshRequest { refresh_token };
    let session = answer(
        "users",
        state
            .upstreams
            .accounts
            .clone()
            .refresh(request(&context, message))
            .await,
    )?;
    session_response(&state, StatusCode::OK, session)
}

/// End the session: the refresh token stops working and the cookies are cleared.
#[utoipa::path(post, path = "/api/v1/auth/signout", tag = "auth",
    request_body(content = RefreshBody, description = "Optional: web pages send the refresh cookie instead."),
    responses((status = 204, description = "Signed out.")))]
pub async fn sign_out(
    State(state): State<Arc<AppState>>,
    Extension(context): Extension<RequestContext>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, Problem> {
    let body: Option<RefreshBody> = optional_json(&body)?;
    if let Some(refresh_token) = refresh_token_of(&headers, body) {
        let message = pb::SignOutRequest { refresh_token };
        answer(
            "users",
            state
                .upstreams
                .accounts
                .clone()
                .sign_out(request(&context, message))
                .await,
        )?;
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    for value in cleared_cookies() {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    Ok(response)
}

/// The signed-in user.
#[utoipa::path(get, path = "/api/v1/me", tag = "auth",
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, body = UserBody),
        (status = 401, description = "`unauthenticated`", body = ProblemDoc, content_type = "application/problem+json"),
    ))]
pub async fn me(
    State(state): State<Arc<AppState>>,
    Extension(context): Extension<RequestContext>,
    caller: Caller,
) -> Result<axum::Json<UserBody>, Problem> {
    let message = pb::GetUserRequest {
        user_id: caller.user_id,
    };
    let user = answer(
        "users",
        state
            .upstreams
            .accounts
            .clone()
            .get_user(request(&context, message))
            .await,
    )?;
    Ok(axum::Json(user_body(user)))
}
