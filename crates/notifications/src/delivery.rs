//! The sender: takes due messages a round at a time (up to
//! [`CONCURRENCY`], in one claim), writes each on its first try, hands
//! them to the transport together, and records what happened to the whole
//! round (with what each message says, when this try wrote it) in one
//! transaction.
//!
//! A failed try is tried again after an exponential, jittered backoff
//! (`notifications.initial_backoff_ms` doubling up to `max_backoff_ms`);
//! after the last try (`notifications.max_attempts`) the message is dead:
//! its status says so and a `kart.notification.dead_lettered.v1` event
//! with the error, the attempt count and the original event goes to
//! `notification.dlq`, in one transaction. A replay gives it a fresh set
//! of tries.
//!
//! Delivery to an SMTP server is at least once: if the process dies
//! between the server's "250 OK" and recording it, the message is sent
//! again once its lease runs out. Each message keeps one `Message-ID`
//! (`<msg_…@kart>`) across tries, so mail systems can tell the copy.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use contracts::Event;
use contracts::events::NotificationDeadLetteredV1;
use kit::config::{DeliveryKind, NotificationSettings, SmtpTls};
use kit::db::{Db, now_millis};
use kit::outbox::{Backoff, OutboxSignal};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use secrecy::ExposeSecret;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::store::{self, AfterFailure, Message, Rendered, Try, TryOutcome};
use crate::templates::{self, Context, Line, Written};

/// How many messages a round takes and sends at once.
const CONCURRENCY: usize = 8;
/// How many due messages one look at the table takes.
const BATCH: i64 = 64;

/// Where messages go.
pub enum Transport {
    /// The built-in mailbox: recording the message is delivering it.
    Mailbox,
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
}

impl Transport {
    /// The transport `settings` ask for. Nothing connects yet: a mail
    /// server that is down costs retries, not the service's start.
    pub fn from_settings(settings: &NotificationSettings) -> anyhow::Result<Transport> {
        if settings.delivery == DeliveryKind::Mailbox {
            return Ok(Transport::Mailbox);
        }
        let smtp = &settings.smtp;
        let host = smtp.host.trim();
        let builder = match smtp.tls {
            SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host),
            SmtpTls::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host)
                .map_err(|e| anyhow::anyhow!("notifications.smtp.host `{host}`: {e}"))?,
            SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(host)
                .map_err(|e| anyhow::anyhow!("notifications.smtp.host `{host}`: {e}"))?,
        };
        let mut builder = builder
            .port(smtp.port)
            .timeout(Some(Duration::from_secs(smtp.timeout_secs)));
        if let (Some(user), Some(password)) = (&smtp.username, &smtp.password) {
            builder = builder.credentials(Credentials::new(
                user.clone(),
                password.expose_secret().to_owned(),
            ));
        }
        Ok(Transport::Smtp(builder.build()))
    }

    async fn send(&self, from: &Mailbox, message: &Message) -> Result<(), String> {
        let Transport::Smtp(smtp) = self else {
            return Ok(());
        };
        let to: Mailbox = message
            .to_address
            .parse()
            .map_err(|e| format!("recipient `{}`: {e}", message.to_address))?;
        let email = lettre::Message::builder()
            .from(from.clone())
            .to(to)
            .subject(message.subject.clone())
            .message_id(Some(format!("<{}@kart>", message.id)))
            .multipart(MultiPart::alternative_plain_html(
                message.text_body.clone(),
                message.html_body.clone(),
            ))
            .map_err(|e| format!("cannot build the message: {e}"))?;
        smtp.send(email)
            .await
            .map(|_| ())
            .map_err(|e| format!("SMTP: {e}"))
    }
}

/// A message after its try, before the try is recorded.
struct Tried {
    message: Message,
    /// This try wrote it (the copy to store with the outcome).
    written_now: bool,
    /// The transport's answer, or what was missing to write it.
    result: Result<(), String>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TryLabels {
    pub kind: &'static str,
    /// `sent`, `failed` (will be tried again) or `dead`.
    pub outcome: &'static str,
}

/// Sends due messages until shutdown.
pub struct Sender {
    pub db: Db,
    pub transport: Arc<Transport>,
    pub from: Mailbox,
    pub public_url: String,
    pub settings: NotificationSettings,
    pub outbox: OutboxSignal,
    /// Woken when a message is queued or replayed.
    pub wake: Arc<Notify>,
    pub tries: Family<TryLabels, Counter>,
}

impl Sender {
    pub async fn run(self, shutdown: CancellationToken) {
        let poll = Duration::from_millis(self.settings.poll_ms);
        loop {
            if shutdown.is_cancelled() {
                return;
            }
            let due = match store::due(&self.db, now_millis(), BATCH).await {
                Ok(due) => due,
                Err(error) => {
                    tracing::warn!(%error, "cannot read due messages; trying again");
                    Vec::new()
                }
            };
            if due.is_empty() {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = self.wake.notified() => {}
                    () = tokio::time::sleep(poll) => {}
                }
                continue;
            }
            for round in due.chunks(CONCURRENCY) {
                if let Err(error) = self.deliver(round).await {
                    tracing::warn!(%error, "cannot record a round of deliveries; it will be tried again");
                }
            }
        }
    }

    /// One try of each of `ids` that no other sender has: claimed in one
    /// statement, sent concurrently, recorded in one transaction.
    async fn deliver(&self, ids: &[String]) -> Result<(), sqlx::Error> {
        let lease_ms = i64::try_from(self.settings.smtp.timeout_secs.saturating_mul(1000))
            .unwrap_or(i64::MAX / 4)
            .saturating_add(30_000);
        let claimed = store::claim(&self.db, ids, now_millis(), lease_ms).await?;
        let sends = claimed.into_iter().map(|message| self.send_once(message));
        let mut tried = Vec::new();
        for result in futures_util::future::join_all(sends).await {
            match result {
                Ok(one) => tried.push(one),
                // Not recorded: tried again once its lease runs out.
                Err(error) => {
                    tracing::warn!(%error, "cannot write a message; it will be tried again")
                }
            }
        }
        let tries: Vec<Try<'_>> = tried.iter().map(|one| self.outcome(one)).collect();
        store::record_tries(&self.db, &tries).await?;
        let now = now_millis();
        for (one, done) in tried.iter().zip(&tries) {
            self.count_and_log(&one.message, done, now);
        }
        if tries.iter().any(|done| {
            matches!(
                done.outcome,
                TryOutcome::Failed {
                    after: AfterFailure::Dead(_),
                    ..
                }
            )
        }) {
            self.outbox.notify();
        }
        Ok(())
    }

    /// Writes `message` if no earlier try did and hands it to the transport.
    async fn send_once(&self, mut message: Message) -> Result<Tried, sqlx::Error> {
        let (result, written_now) = match self.written(&mut message).await? {
            Ok(written_now) => (self.transport.send(&self.from, &message).await, written_now),
            Err(not_yet) => (Err(not_yet), false),
        };
        Ok(Tried {
            message,
            written_now,
            result,
        })
    }

    /// What a try comes to: sent, tried again after a backoff, or dead
    /// after the last try (with its dead letter).
    fn outcome<'a>(&self, tried: &'a Tried) -> Try<'a> {
        let message = &tried.message;
        let attempt = message.attempts + 1;
        // Stored with this try's outcome, in its transaction.
        let rendered = tried.written_now.then(|| Rendered {
            user_id: &message.user_id,
            to: &message.to_address,
            subject: &message.subject,
            text: &message.text_body,
            html: &message.html_body,
        });
        let outcome = match &tried.result {
            Ok(()) => TryOutcome::Sent,
            Err(error) if attempt >= message.give_up_after => {
                let dead_letter = NotificationDeadLetteredV1 {
                    message_id: message.id.clone(),
                    kind: message.kind.as_str().to_owned(),
                    user_id: message.user_id.clone(),
                    order_id: message.order_id.clone(),
                    error: error.clone(),
                    attempts: u32::try_from(attempt).unwrap_or(u32::MAX),
                    dead_at: Utc::now(),
                    original_event: message.source_event.clone(),
                }
                .to_cloud_event("/kart/notifications", None);
                TryOutcome::Failed {
                    error: error.clone(),
                    after: AfterFailure::Dead(dead_letter),
                }
            }
            Err(error) => {
                let round_start =
                    message.give_up_after - i64::from(self.settings.max_attempts.max(1));
                let failures = u32::try_from((attempt - round_start - 1).max(0)).unwrap_or(0);
                let delay = Backoff::delay_after(
                    Duration::from_millis(self.settings.initial_backoff_ms),
                    Duration::from_millis(self.settings.max_backoff_ms),
                    failures,
                );
                let retry_at = now_millis()
                    .saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX / 4));
                TryOutcome::Failed {
                    error: error.clone(),
                    after: AfterFailure::RetryAt(retry_at),
                }
            }
        };
        Try {
            message_id: &message.id,
            attempt,
            rendered,
            outcome,
        }
    }

    /// Counts and logs a recorded try.
    fn count_and_log(&self, message: &Message, done: &Try<'_>, now: i64) {
        let kind = message.kind.as_str();
        let (id, attempt) = (done.message_id, done.attempt);
        let outcome = match &done.outcome {
            TryOutcome::Sent => {
                tracing::info!(message_id = id, kind, attempt, "message delivered");
                "sent"
            }
            TryOutcome::Failed {
                error,
                after: AfterFailure::Dead(_),
            } => {
                tracing::error!(message_id = id, kind, attempt, %error, "message undeliverable; dead-lettered");
                "dead"
            }
            TryOutcome::Failed {
                error,
                after: AfterFailure::RetryAt(at),
            } => {
                let retry_in_ms = at.saturating_sub(now).max(0);
                tracing::warn!(message_id = id, kind, attempt, %error, retry_in_ms, "message not delivered; will try again");
                "failed"
            }
        };
        self.tries.get_or_create(&TryLabels { kind, outcome }).inc();
    }

    /// Writes `message` unless an earlier try did: `true` when this call
    /// wrote it, which the try then stores with its outcome. The inner
    /// error says what is still missing: the events that carry the
    /// recipient or the order may not have been read yet.
    async fn written(&self, message: &mut Message) -> Result<Result<bool, String>, sqlx::Error> {
        if message.is_rendered() {
            return Ok(Ok(false));
        }
        // The order and its recipient come in one read; a message about
        // no order (or an order not known yet) reads the recipient alone.
        let (order, recipient) = if message.order_id.is_empty() {
            (None, None)
        } else {
            match store::order_and_recipient(&self.db, &message.order_id, &message.user_id).await? {
                Some((order, recipient)) => (Some(order), recipient),
                None => (None, None),
            }
        };
        let user_id = if message.user_id.is_empty() {
            match &order {
                Some(order) => order.user_id.clone(),
                None => {
                    return Ok(Err(format!(
                        "order {} is not known yet (its order.created event was not read)",
                        message.order_id
                    )));
                }
            }
        } else {
            message.user_id.clone()
        };
        let recipient = match (recipient, &order) {
            (Some(recipient), _) => Some(recipient),
            // Read with the order and not found: not known yet either.
            (None, Some(_)) => None,
            (None, None) => store::recipient(&self.db, &user_id).await?,
        };
        let Some((email, display_name)) = recipient else {
            return Ok(Err(format!(
                "the address of user {user_id} is not known yet (its user.registered event was not read)"
            )));
        };
        let mut lines = Vec::new();
        let mut total = None;
        if let Some(order) = &order {
            let skus: Vec<&str> = order.lines.iter().map(|line| line.sku.as_str()).collect();
            let names = store::product_names(&self.db, &skus).await?;
            for line in &order.lines {
                lines.push(Line::from_event(line, names.get(&line.sku).cloned()));
            }
            total = Some((order.total_minor, order.currency.clone()));
        }
        let written: Written = templates::write(&Context {
            kind: message.kind,
            display_name: display_name.clone(),
            public_url: self.public_url.clone(),
            order_id: message.order_id.clone(),
            lines,
            total,
            facts: message.facts.clone(),
        });
        let address = match email.parse::<lettre::Address>() {
            Ok(address) => address,
            Err(error) => {
                return Ok(Err(format!(
                    "the address of user {user_id} is not usable: {error}"
                )));
            }
        };
        let name = Some(display_name).filter(|n| !n.trim().is_empty());
        message.user_id = user_id;
        message.to_address = Mailbox::new(name, address).to_string();
        message.subject = written.subject;
        message.text_body = written.text;
        message.html_body = written.html;
        Ok(Ok(true))
    }
}
