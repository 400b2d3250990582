//! The notifications gRPC API: the mailbox, dead letters, and replay (for
//! the console, through the gateway, and for `kart dlq`).

use std::sync::Arc;

use contracts::grpc::notifications::v1 as pb;
use kit::db::Db;
use kit::problem::{Problem, internal_status};
use tokio::sync::Notify;
use tonic::{Request, Response, Status};

use crate::store::{self, Filter, Message, ReplayOutcome, Status as MessageStatus};
use crate::templates::Kind;

#[derive(Clone)]
pub struct NotificationsApi {
    pub db: Db,
    /// Tries a replayed message gets.
    pub max_attempts: u32,
    /// Wakes the sender after a replay.
    pub wake: Arc<Notify>,
}

fn limit(raw: u32) -> Result<i64, Status> {
    match raw {
        0 => Ok(50),
        1..=500 => Ok(i64::from(raw)),
        _ => Err(Problem::validation("limit", "limit is 1 to 500.").into()),
    }
}

fn summary(message: &Message) -> pb::MessageSummary {
    pb::MessageSummary {
        id: message.id.clone(),
        kind: message.kind.as_str().to_owned(),
        user_id: message.user_id.clone(),
        order_id: message.order_id.clone(),
        to: message.to_address.clone(),
        subject: message.subject.clone(),
        status: message.status.as_str().to_owned(),
        attempts: u32::try_from(message.attempts).unwrap_or(u32::MAX),
        last_error: message.last_error.clone(),
        created_at: message.created_at,
        sent_at: message.sent_at,
        next_attempt_at: message.next_attempt_at,
    }
}

#[tonic::async_trait]
impl pb::notifications_server::Notifications for NotificationsApi {
    async fn list_messages(
        &self,
        request: Request<pb::ListMessagesRequest>,
    ) -> Result<Response<pb::ListMessagesResponse>, Status> {
        let request = request.into_inner();
        if !request.kind.is_empty() && Kind::parse(&request.kind).is_none() {
            return Err(Problem::validation(
                "kind",
                "kind is one of welcome, order_confirmed, payment_failed, order_cancelled, refund_issued.",
            )
            .into());
        }
        let filter = Filter {
            user_id: Some(request.user_id).filter(|u| !u.is_empty()),
            kind: Some(request.kind).filter(|k| !k.is_empty()),
            status: None,
            limit: limit(request.limit)?,
        };
        let messages = store::list(&self.db, &filter)
            .await
            .map_err(internal_status)?;
        Ok(Response::new(pb::ListMessagesResponse {
            messages: messages.iter().map(summary).collect(),
        }))
    }

    async fn get_message(
        &self,
        request: Request<pb::MessageRef>,
    ) -> Result<Response<pb::MessageDetail>, Status> {
        let id = request.into_inner().id;
        let message = store::message(&self.db, &id)
            .await
            .map_err(internal_status)?
            .ok_or_else(|| Status::from(Problem::not_found("No message has this id.")))?;
        let attempts = store::attempts(&self.db, &id)
            .await
            .map_err(internal_status)?;
        Ok(Response::new(pb::MessageDetail {
            summary: Some(summary(&message)),
            text_body: message.text_body,
            html_body: message.html_body,
            attempts: attempts
                .into_iter()
                .map(|a| pb::Attempt {
                    attempt: u32::try_from(a.attempt).unwrap_or(u32::MAX),
                    at: a.at,
                    outcome: a.outcome,
                    error: a.error,
                })
                .collect(),
            source_event_type: message.source_event_type,
            source_event_id: message.source_event_id,
        }))
    }

    async fn list_dead_letters(
        &self,
        request: Request<pb::ListDeadLettersRequest>,
    ) -> Result<Response<pb::ListMessagesResponse>, Status> {
        let filter = Filter {
            status: Some(MessageStatus::Dead),
            limit: limit(request.into_inner().limit)?,
            ..Filter::default()
        };
        let messages = store::list(&self.db, &filter)
            .await
            .map_err(internal_status)?;
        Ok(Response::new(pb::ListMessagesResponse {
            messages: messages.iter().map(summary).collect(),
        }))
    }

    async fn replay(
        &self,
        request: Request<pb::ReplayRequest>,
    ) -> Result<Response<pb::ReplayResponse>, Status> {
        let request = request.into_inner();
        let ids = match (request.all, request.ids.is_empty()) {
            (true, true) => store::dead_ids(&self.db).await.map_err(internal_status)?,
            (false, false) => request.ids,
            (true, false) => {
                return Err(Problem::validation(
                    "ids",
                    "Name dead letters or ask for all of them, not both.",
                )
                .into());
            }
            (false, true) => {
                return Err(Problem::validation(
                    "ids",
                    "Name at least one dead letter, or ask for all of them.",
                )
                .into());
            }
        };
        if ids.len() > 10_000 {
            return Err(
                Problem::validation("ids", "Replay at most 10000 messages at once.").into(),
            );
        }
        let mut outcomes = Vec::with_capacity(ids.len());
        for id in ids {
            let outcome = store::replay(&self.db, &id, self.max_attempts)
                .await
                .map_err(internal_status)?;
            if outcome == ReplayOutcome::Queued {
                tracing::info!(message_id = %id, "dead letter replayed");
            }
            outcomes.push(pb::ReplayOutcome {
                id,
                outcome: outcome.as_str().to_owned(),
            });
        }
        self.wake.notify_one();
        Ok(Response::new(pb::ReplayResponse { outcomes }))
    }
}
