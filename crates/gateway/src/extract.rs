//! JSON bodies and query strings whose rejections are problems: a client
//! that sends a malformed body learns which field is wrong, in the same
//! problem+json shape as every other error.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use kit::problem::Problem;
use serde::de::DeserializeOwned;

/// `axum::Json`, with problem+json rejections.
pub struct ApiJson<T>(pub T);

/// `axum::extract::Query`, with problem+json rejections.
pub struct ApiQuery<T>(pub T);

/// The field a serde message is about: `missing field `x``, or the path
/// axum puts before the message (`lines[0].sku: invalid type …`).
fn field_of(message: &str) -> Option<String> {
    if let Some(rest) = message.split("missing field `").nth(1) {
        return rest.split('`').next().map(str::to_owned);
    }
    if let Some(rest) = message.split("unknown field `").nth(1) {
        return rest.split('`').next().map(str::to_owned);
    }
    let (path, _) = message.split_once(": ")?;
    let plausible = !path.is_empty()
        && path
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.[]".contains(c));
    plausible.then(|| path.to_owned())
}

fn readable(message: &str) -> String {
    // Drop axum's preamble and serde's position suffix.
    let message = message
        .split_once("target type: ")
        .map_or(message, |(_, rest)| rest);
    let message = message.split(" at line ").next().unwrap_or(message);
    message.to_owned()
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = Problem;

    async fn from_request(request: Request, state: &S) -> Result<Self, Problem> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(json_problem(&rejection)),
        }
    }
}

/// A body that may be absent: empty means `None`.
pub fn optional_json<T: DeserializeOwned>(body: &[u8]) -> Result<Option<T>, Problem> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(body).map(Some).map_err(|e| {
        let detail = readable(&e.to_string());
        let field = field_of(&detail).unwrap_or_else(|| "body".to_owned());
        Problem::validation(&field, format!("The request body does not fit: {detail}."))
    })
}

fn json_problem(rejection: &JsonRejection) -> Problem {
    let text = rejection.body_text();
    match rejection {
        JsonRejection::JsonDataError(_) => {
            let detail = readable(&text);
            let field = field_of(&detail).unwrap_or_else(|| "body".to_owned());
            Problem::validation(&field, format!("The request body does not fit: {detail}."))
        }
        JsonRejection::JsonSyntaxError(_) => Problem::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            "The request body is not valid JSON.",
        )
        .with_field("body"),
        JsonRejection::MissingJsonContentType(_) => Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Send the body as JSON, with `Content-Type: application/json`.",
        ),
        _ if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            "The request body is larger than this API accepts.",
        ),
        _ => Problem::new(
            StatusCode::BAD_REQUEST,
            "malformed_body",
            "The request body could not be read.",
        )
        .with_field("body"),
    }
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(ApiQuery(value)),
            Err(rejection) => Err(query_problem(&rejection)),
        }
    }
}

fn query_problem(rejection: &QueryRejection) -> Problem {
    let text = rejection.body_text();
    let detail = text
        .split_once("Failed to deserialize query string: ")
        .map_or(text.as_str(), |(_, rest)| rest)
        .to_owned();
    let field = field_of(&detail).unwrap_or_else(|| "query".to_owned());
    Problem::validation(&field, format!("The query string does not fit: {detail}."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_found_in_serde_messages() {
        assert_eq!(field_of("missing field `email`").as_deref(), Some("email"));
        assert_eq!(
            field_of("price.amount_minor: invalid type: string \"x\", expected i64").as_deref(),
            Some("price.amount_minor")
        );
        assert_eq!(
            field_of("invalid type: integer `5`, expected a string"),
            None
        );
    }
}
