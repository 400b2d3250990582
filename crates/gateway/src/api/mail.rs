//! The mailbox and the dead letters, for admins: every message Kart sent
//! or is sending, and replay of those that could not be delivered.

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, State};
use contracts::grpc::notifications::v1 as pb;
use kit::http::RequestContext;
use kit::problem::Problem;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ProblemDoc, int_param, timestamp};
use crate::AppState;
use crate::auth::Admin;
use crate::extract::{ApiJson, ApiQuery};
use crate::upstream::{answer, request};

pub fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list_messages))
        .routes(routes!(get_message))
        .routes(routes!(list_dead_letters))
        .routes(routes!(replay_dead_letters))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MailboxQuery {
    /// 1 to 500 (default 50).
    pub limit: Option<String>,
    /// Only messages to this user.
    pub user_id: Option<String>,
    /// Only this kind: welcome, order_confirmed, payment_failed, order_cancelled, refund_issued.
    pub kind: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MessageBody {
    #[schema(example = "msg_0192f3c1a7c77d8e9b5a1c2d3e4f5a6b")]
    pub id: String,
    #[schema(example = "order_confirmed")]
    pub kind: String,
    pub user_id: String,
    /// Absent for a message not about an order.
    pub order_id: Option<String>,
    /// Absent until the recipient is known.
    pub to: Option<String>,
    pub subject: String,
    /// `pending` (being tried), `sent` or `dead` (a dead letter).
    pub status: String,
    pub attempts: u32,
    /// The last failure, for a pending or dead message.
    pub last_error: Option<String>,
    pub created_at: String,
    pub sent_at: Option<String>,
    /// When a pending message is tried next.
    pub next_attempt_at: Option<String>,
}

fn message_body(message: pb::MessageSummary) -> MessageBody {
    let some = |s: String| Some(s).filter(|s| !s.is_empty());
    let pending = message.status == "pending";
    MessageBody {
        id: message.id,
        kind: message.kind,
        user_id: message.user_id,
        order_id: some(message.order_id),
        to: some(message.to),
        subject: message.subject,
        status: message.status,
        attempts: message.attempts,
        last_error: some(message.last_error),
        created_at: timestamp(message.created_at),
        sent_at: (message.sent_at > 0).then(|| timestamp(message.sent_at)),
        next_attempt_at: pending.then(|| timestamp(message.next_attempt_at)),
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MessageList {
    pub messages: Vec<MessageBody>,
}

fn message_list(list: pb::ListMessagesResponse) -> MessageList {
    MessageList {
        messages: list.messages.into_iter().map(message_body).collect(),
    }
}

fn limit(raw: &Option<String>) -> Result<u32, Problem> {
    match int_param("limit", raw)? {
        None => Ok(0),
        Some(n @ 1..=500) => Ok(n as u32),
        Some(_) => Err(Problem::validation("limit", "limit is 1 to 500.")),
    }
}

/// The mailbox: every message, newest first.
#[utoipa::path(get, path = "/api/v1/admin/mailbox", tag = "notifications admin",
    security(("bearer" = []), ("cookie" = [])),
    params(MailboxQuery),
    responses(
        (status = 200, body = MessageList),
        (status = 403, description = "`forbidden`: not an admin.", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`: `field` is `limit` or `kind`.", body = ProblemDoc, content_type = "application/problem+json"),
    ))]
pub async fn list_messages(
    State(state): State<Arc<AppState>>,
    Extension(context): Extension<RequestContext>,
    _admin: Admin,
    ApiQuery(query): ApiQuery<MailboxQuery>,
) -> Result<axum::Json<MessageList>, Problem> {
    let message = pb::ListMessagesRequest {
        limit: limit(&query.limit)?,
        user_id: query.user_id.unwrap_or_default(),
        kind: query.kind.unwrap_or_default(),
    };
    let list = answer(
        "notifications",
        state
            .upstreams
            .notifications
            .clone()
            .list_messages(request(&context, message))
            .await,
    )?;
    Ok(axum::Json(message_list(list)))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptBody {
    pub attempt: u32,
    pub at: String,
    /// `sent` or `failed`.
    pub outcome: String,
    pub error: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MessageDetailBody {
    #[serde(flatten)]
    pub message: MessageBody,
    pub text_body: String,
    pub html_body: String,
    pub delivery_attempts: Vec<AttemptBody>,
    /// The event the message was made from.
    pub source_event_type: String,
    pub source_event_id: String,
}

/// One message with its bodies and delivery attempts.
#[utoipa::path(get, path = "/api/v1/admin/mailbox/{message_id}", tag = "notifications admin",
    security(("bearer" = []), ("cookie" = [])),
    params(("message_id" = String, Path)),
    responses(
        (status = 200, body = MessageDetailBody),
        (status = 403, description = "`forbidden`: not an admin.", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`: no message has this id.", body = ProblemDoc, content_type = "application/problem+json"),
    ))]
pub async fn get_message(
    State(state): State<Arc<AppState>>,
    Extension(context): Extension<RequestContext>,
    _admin: Admin,
    Path(message_id): Path<String>,
) -> Result<axum::Json<MessageDetailBody>, Problem> {
    let detail = answer(
        "notifications",
        state
            .upstreams
            .notifications
            .clone()
            .get_message(request(&context, pb::MessageRef { id: message_id }))
            .await,
    )?;
    let summary = detail
        .summary
        .ok_or_else(|| Problem::internal(&"the notifications service sent no summary"))?;
    Ok(axum::Json(MessageDetailBody {
        message: message_body(summary),
        text_body: detail.text_body,
        html_body: detail.html_body,
        delivery_attempts: detail
            .attempts
            .into_iter()
            .map(|a| AttemptBody {
                attempt: a.attempt,
                at: timestamp(a.at),
                outcome: a.outcome,
                error: Some(a.error).filter(|e| !e.is_empty()),
            })
            .collect(),
        source_event_type: detail.source_event_type,
        source_event_id: detail.source_event_id,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeadLetterQuery {
    /// 1 to 500 (default 50).
    pub limit: Option<String>,
}

/// Messages that could not be delivered after their last try, newest first.
#[utoipa::path(get, path = "/api/v1/admin/dead-letters", tag = "notifications admin",
    security(("bearer" = []), ("cookie" = [])),
    params(DeadLetterQuery),
    responses(
        (status = 200, body = MessageList),
        (status = 403, description = "`forbidden`: not an admin.", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`: `field` is `limit`.", body = ProblemDoc, content_type = "application/problem+json"),
    ))]
pub async fn list_dead_letters(
    State(state): State<Arc<AppState>>,
    Extension(context): Extension<RequestContext>,
    _admin: Admin,
    ApiQuery(query): ApiQuery<DeadLetterQuery>,
) -> Result<axum::Json<MessageList>, Problem> {
    let message = pb::ListDeadLettersRequest {
        limit: limit(&query.limit)?,
    };
    let list = answer(
        "notifications",
        state
            .upstreams
            .notifications
            .clone()
            .list_dead_letters(request(&context, message))
            .await,
    )?;
    Ok(axum::Json(message_list(list)))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ReplayBody {
    /// The dead letters to send again.
    #[serde(default)]
    pub ids: Vec<String>,
    /// Every dead letter (then `ids` stays empty).
    #[serde(default)]
    pub all: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReplayOutcomeBody {
    pub id: String,
    /// `queued` (sent again now), `already_sent` (it was delivered: nothing
    /// is sent), `not_dead` (it is still being tried) or `not_found`.
    pub outcome: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReplayList {
    pub outcomes: Vec<ReplayOutcomeBody>,
}

/// Send dead letters again: the named ones, or all of them.
#[utoipa::path(post, path = "/api/v1/admin/dead-letters/replay", tag = "notifications admin",
    security(("bearer" = []), ("cookie" = [])),
    request_body = ReplayBody,
    responses(
        (status = 200, body = ReplayList),
        (status = 403, description = "`forbidden`: not an admin.", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`: `field` is `ids`.", body = ProblemDoc, content_type = "application/problem+json"),
    ))]
pub async fn replay_dead_letters(
    State(state): State<Arc<AppState>>,
    Extension(context): Extension<RequestContext>,
    _admin: Admin,
    ApiJson(body): ApiJson<ReplayBody>,
) -> Result<axum::Json<ReplayList>, Problem> {
    let message = pb::ReplayRequest {
        ids: body.ids,
        all: body.all,
    };
    let replayed = answer(
        "notifications",
        state
            .upstreams
            .notifications
            .clone()
            .replay(request(&context, message))
            .await,
    )?;
    Ok(axum::Json(ReplayList {
        outcomes: replayed
            .outcomes
            .into_iter()
            .map(|o| ReplayOutcomeBody {
                id: o.id,
                outcome: o.outcome,
            })
            .collect(),
    }))
}
