//! The public REST API, `/api/v1`: each resource module owns its routes
//! and the JSON shapes it speaks. Handlers check input only as far as the
//! HTTP shape goes; the services behind them own the domain rules and say
//! what is wrong in problems the gateway passes on unchanged.

pub mod auth;
pub mod bus;
pub mod mail;
pub mod me;
pub mod orders;
pub mod products;
pub mod stats;
pub mod stock;

use chrono::{DateTime, SecondsFormat};
use kit::problem::Problem;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// An RFC 9457 problem: every error this API returns.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Problem)]
pub struct ProblemDoc {
    /// `/problems/<code>`.
    #[serde(rename = "type")]
    pub type_uri: String,
    pub title: String,
    pub status: u16,
    /// What happened and what to do about it, for a person.
    pub detail: String,
    /// Stable and documented: clients branch on this.
    #[schema(example = "validation_failed")]
    pub code: String,
    /// The input at fault, for validation errors (`email`, `lines[0].sku`).
    pub field: Option<String>,
}

/// An exact amount: integer minor units (cents) and an ISO 4217 currency.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MoneyBody {
    #[schema(example = 1299)]
    pub amount_minor: i64,
    #[schema(example = "EUR")]
    pub currency: String,
}

/// Unix milliseconds as RFC 3339 (UTC).
pub fn timestamp(millis: i64) -> String {
    DateTime::from_timestamp_millis(millis)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// Parses an optional integer query parameter, naming it when it is not one.
pub fn int_param(field: &str, raw: &Option<String>) -> Result<Option<i64>, Problem> {
    match raw.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(value) => value
            .parse::<i64>()
            .map(Some)
            .map_err(|_| Problem::validation(field, format!("{field} is a whole number."))),
    }
}

/// Parses an optional boolean query parameter (`true` or `false`).
pub fn bool_param(field: &str, raw: &Option<String>) -> Result<bool, Problem> {
    match raw.as_deref().map(str::trim) {
        None | Some("") | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(_) => Err(Problem::validation(
            field,
            format!("{field} is true or false."),
        )),
    }
}

/// The page size from `limit`, 1 to 100.
pub fn limit_param(raw: &Option<String>) -> Result<u32, Problem> {
    match int_param("limit", raw)? {
        None => Ok(0),
        Some(n @ 1..=100) => Ok(n as u32),
        Some(_) => Err(Problem::validation("limit", "limit is 1 to 100.")),
    }
}
