//! RFC 9457 problem details: the one error shape every Kart API returns.
//!
//! `code` is stable and documented (clients branch on it), `detail` is a
//! sentence a person can act on, `field` names the offending input for
//! validation errors. Server errors say nothing about their cause: that goes
//! to the log, inside the request's span, next to the request id.

use axum::Json;
pub use axum::http::StatusCode;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

pub const CONTENT_TYPE: &str = "application/problem+json";

/// A problem. Its RFC 9457 `type` and `title` follow from `code` and
/// `status`, so they are written out on the wire, not kept (which also keeps
/// `Result<_, Problem>` small).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Problem {
    pub status: u16,
    pub detail: String,
    /// Stable, machine-readable: `validation_failed`, `not_found`, ...
    pub code: String,
    #[serde(default)]
    pub field: Option<String>,
}

/// The body as RFC 9457 spells it.
#[derive(Serialize)]
struct ProblemBody<'a> {
    #[serde(rename = "type")]
    type_uri: String,
    title: &'a str,
    status: u16,
    detail: &'a str,
    code: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

impl Serialize for Problem {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        ProblemBody {
            type_uri: self.type_uri(),
            title: self.title(),
            status: self.status,
            detail: &self.detail,
            code: &self.code,
            field: self.field.as_deref(),
        }
        .serialize(serializer)
    }
}

impl Problem {
    pub fn new(status: StatusCode, code: &str, detail: impl Into<String>) -> Problem {
        Problem {
            status: status.as_u16(),
            detail: detail.into(),
            code: code.to_owned(),
            field: None,
        }
    }

    /// A URI reference naming the problem type: `/problems/<code>`.
    pub fn type_uri(&self) -> String {
        format!("/problems/{}", self.code)
    }

    /// The status's standard phrase.
    pub fn title(&self) -> &'static str {
        StatusCode::from_u16(self.status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("Error")
    }

    /// Names the input at fault.
    pub fn with_field(mut self, field: impl Into<String>) -> Problem {
        self.field = Some(field.into());
        self
    }

    pub fn not_found(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::NOT_FOUND, "not_found", detail)
    }

    pub fn validation(field: &str, detail: impl Into<String>) -> Problem {
        Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            detail,
        )
        .with_field(field)
    }

    /// A server-side failure: logs `cause`, tells the client nothing of it.
    pub fn internal(cause: &dyn std::fmt::Display) -> Problem {
        tracing::error!(%cause, "request failed");
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "Something went wrong on our side. Try again; if it persists, quote the request id.",
        )
    }

    pub fn unavailable(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", detail)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, Json(self)).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        response
    }
}

/// The fallback for routes that do not exist.
pub async fn route_not_found() -> Problem {
    Problem::not_found("There is nothing at this address. Check the path and method.")
}

/// A server-side failure in a gRPC handler: logs `cause`, answers an
/// opaque 500 problem (see [`Problem::internal`]).
pub fn internal_status(cause: impl std::fmt::Display) -> tonic::Status {
    Problem::internal(&cause).into()
}

/// Problems cross gRPC as a status whose code fits the HTTP status and
/// whose details hold the problem itself as JSON, so the gateway can hand
/// the client exactly what the service meant.
impl From<Problem> for tonic::Status {
    fn from(problem: Problem) -> tonic::Status {
        use tonic::Code;
        let code = match problem.status {
            400 | 413 | 422 => Code::InvalidArgument,
            401 => Code::Unauthenticated,
            403 => Code::PermissionDenied,
            404 => Code::NotFound,
            409 => Code::AlreadyExists,
            412 => Code::FailedPrecondition,
            429 => Code::ResourceExhausted,
            503 => Code::Unavailable,
            504 => Code::DeadlineExceeded,
            _ => Code::Internal,
        };
        let details = serde_json::to_vec(&problem).unwrap_or_default();
        tonic::Status::with_details(code, problem.detail, details.into())
    }
}

impl Problem {
    /// What a failed gRPC call means for the client: the service's own
    /// problem when it sent one, otherwise a 502/503/504 that reveals
    /// nothing of the cause (which is logged).
    pub fn from_status(service: &str, status: &tonic::Status) -> Problem {
        use tonic::Code;
        if let Ok(problem) = serde_json::from_slice::<Problem>(status.details())
            && !problem.code.is_empty()
        {
            return problem;
        }
        tracing::warn!(upstream = service, code = ?status.code(), message = status.message(), "upstream call failed");
        match status.code() {
            Code::Unavailable => Problem::unavailable(format!(
                "The {service} service is unavailable right now. Try again in a moment."
            )),
            Code::DeadlineExceeded | Code::Cancelled => Problem::new(
                StatusCode::GATEWAY_TIMEOUT,
                "upstream_timeout",
                format!("The {service} service did not answer in time. Try again."),
            ),
            _ => Problem::new(
                StatusCode::BAD_GATEWAY,
                "upstream_error",
                "A service behind the gateway failed. Try again; if it persists, quote the request id.",
            ),
        }
    }

    /// 409: the thing exists already (a unique key was taken).
    pub fn conflict(code: &str, field: &str, detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::CONFLICT, code, detail).with_field(field)
    }

    pub fn unauthenticated(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::UNAUTHORIZED, "unauthenticated", detail)
    }

    pub fn forbidden(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_problem_survives_a_grpc_hop() {
        let sent = Problem::validation("email", "That is not an email address.");
        let status: tonic::Status = sent.clone().into();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert_eq!(Problem::from_status("users", &status), sent);
    }

    #[test]
    fn a_bare_transport_failure_reveals_nothing() {
        let status = tonic::Status::unavailable("tcp connect error: 10.0.0.7:8081 refused");
        let problem = Problem::from_status("users", &status);
        assert_eq!(problem.status, 503);
        assert!(!problem.detail.contains("10.0.0.7"));
        let status = tonic::Status::internal("panic at store.rs:12");
        let problem = Problem::from_status("users", &status);
        assert_eq!(problem.status, 502);
        assert!(!problem.detail.contains("store.rs"));
    }
}
