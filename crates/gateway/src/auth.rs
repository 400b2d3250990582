//! Who is calling: access tokens, session cookies, roles.
//!
//! After the users service checks a password (or a refresh token), the
//! gateway signs a short-lived access token: an HS256 JWT naming the user
//! and their role. API clients send it as `Authorization: Bearer …`; the
//! web pages get it, and the refresh token, as httpOnly SameSite cookies,
//! which scripts cannot read. Only the gateway holds the signing key.
//!
//! A cookie-authenticated request that changes something must come from
//! this site (or an origin allowed by CORS): the `Origin` check closes the
//! cross-site request forgery that cookies otherwise allow.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use kit::config::{BusKind, Settings};
use kit::problem::Problem;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use crate::AppState;

pub const ACCESS_COOKIE: &str = "kart_access";
pub const REFRESH_COOKIE: &str = "kart_refresh";
/// The refresh cookie is only ever sent to the session endpoints.
const REFRESH_COOKIE_PATH: &str = "/api/v1/auth";
const ISSUER: &str = "kart";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Customer,
    Admin,
}

impl Role {
    pub fn parse(raw: &str) -> Role {
        if raw == "admin" {
            Role::Admin
        } else {
            Role::Customer
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    role: Role,
    iss: String,
    iat: u64,
    exp: u64,
}

/// Signs and checks access tokens.
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    pub access_ttl_secs: u64,
    pub refresh_ttl_secs: u64,
}

impl TokenKeys {
    /// The configured key; in embedded mode without one, the key kept in
    /// `{data_dir}/jwt-secret`, made on first start.
    pub fn load(settings: &Settings) -> anyhow::Result<TokenKeys> {
        let secret = match &settings.auth.jwt_secret {
            Some(secret) => secret.expose_secret().as_bytes().to_vec(),
            None if settings.bus.kind == BusKind::Embedded => local_secret(&settings.data_dir)?,
            None => anyhow::bail!(
                "configuration key `auth.jwt_secret`: the gateway needs a signing key of at least 32 bytes, \
                 shared by every replica (set KART__AUTH__JWT_SECRET)"
            ),
        };
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        validation.leeway = 5;
        Ok(TokenKeys {
            encoding: EncodingKey::from_secret(&secret),
            decoding: DecodingKey::from_secret(&secret),
            validation,
            access_ttl_secs: settings.auth.access_ttl_secs,
            refresh_ttl_secs: settings.auth.refresh_ttl_secs,
        })
    }

    pub fn mint(&self, user_id: &str, role: Role) -> Result<String, Problem> {
        let now = chrono::Utc::now().timestamp().max(0) as u64;
        let claims = Claims {
            sub: user_id.to_owned(),
            role,
            iss: ISSUER.to_owned(),
            iat: now,
            exp: now + self.access_ttl_secs,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| Problem::internal(&e))
    }

    fn verify(&self, token: &str) -> Option<Claims> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .ok()
            .map(|data| data.claims)
    }
}

fn local_secret(data_dir: &Path) -> anyhow::Result<Vec<u8>> {
    let path = data_dir.join("jwt-secret");
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let existing = existing.trim();
        if existing.len() >= 32 {
            return Ok(existing.as_bytes().to_vec());
        }
    }
    std::fs::create_dir_all(data_dir)?;
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| anyhow::anyhow!("no randomness for the signing key: {e}"))?;
    let secret = hex::encode(bytes);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(&path)
        .map_err(|e| anyhow::anyhow!("cannot write the signing key to {}: {e}", path.display()))?;
    file.write_all(secret.as_bytes())?;
    Ok(secret.into_bytes())
}

/// A signed-in caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user_id: String,
    pub role: Role,
}

/// A signed-in caller with the admin role.
#[derive(Debug, Clone)]
pub struct Admin(pub Caller);

/// 401, saying how to authenticate.
pub fn unauthenticated(detail: &str) -> Response {
    let mut response = Problem::unauthenticated(detail).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"kart\""),
    );
    response
}

pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// Whether a cookie-carrying request that changes state comes from a page
/// that may make it.
fn same_site_or_allowed(parts: &Parts, allowed: &[String]) -> bool {
    if matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return true;
    }
    let headers = &parts.headers;
    match headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        Some(origin) => {
            let host = headers
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
            origin_host == host || allowed.iter().any(|a| a == origin)
        }
        // No Origin: not a browser's cross-site request unless it says so.
        None => headers
            .get("sec-fetch-site")
            .and_then(|v| v.to_str().ok())
            .is_none_or(|site| site != "cross-site"),
    }
}

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Caller, Response> {
        let (token, from_cookie) = match bearer(&parts.headers) {
            Some(token) => (token.to_owned(), false),
            None => match cookie(&parts.headers, ACCESS_COOKIE) {
                Some(token) => (token, true),
                None => {
                    return Err(unauthenticated(
                        "Sign in first: send `Authorization: Bearer <access token>`.",
                    ));
                }
            },
        };
        let Some(claims) = state.keys.verify(&token) else {
            return Err(unauthenticated(
                "Your access token is invalid or has expired. Refresh it at /api/v1/auth/refresh or sign in again.",
            ));
        };
        if from_cookie && !same_site_or_allowed(parts, &state.gateway.cors_allowed_origins) {
            return Err(
                Problem::forbidden("This request came from another site and was refused.")
                    .into_response(),
            );
        }
        if let Some(limiter) = &state.user_limit
            && let Err(wait) = limiter.check(&claims.sub)
        {
            return Err(crate::limits::too_many_requests(wait));
        }
        Ok(Caller {
            user_id: claims.sub,
            role: claims.role,
        })
    }
}

impl FromRequestParts<Arc<AppState>> for Admin {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Admin, Response> {
        let caller = Caller::from_request_parts(parts, state).await?;
        if caller.role != Role::Admin {
            return Err(Problem::forbidden("This needs an admin account.").into_response());
        }
        Ok(Admin(caller))
    }
}

/// `Set-Cookie` values for a new session, and for ending one.
pub fn session_cookies(state: &AppState, access: &str, refresh: &str) -> [HeaderValue; 2] {
    let secure = if state.gateway.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    let access = format!(
        "{ACCESS_COOKIE}={access}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{secure}",
        state.keys.access_ttl_secs
    );
    let refresh = format!(
        "{REFRESH_COOKIE}={refresh}; Path={REFRESH_COOKIE_PATH}; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        state.keys.refresh_ttl_secs
    );
    [access, refresh]
        .map(|c| HeaderValue::from_str(&c).unwrap_or_else(|_| HeaderValue::from_static("")))
}

pub fn cleared_cookies() -> [HeaderValue; 2] {
    [
        HeaderValue::from_static("kart_access=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0"),
        HeaderValue::from_static(
            "kart_refresh=; Path=/api/v1/auth; HttpOnly; SameSite=Strict; Max-Age=0",
        ),
    ]
}
