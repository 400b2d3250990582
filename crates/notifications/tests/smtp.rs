//! The notifications service against a real SMTP server (aiosmtpd, started
//! here; `scripts/test.sh` installs it and names its Python in
//! `KART_TEST_PYTHON`): delivery, a server that refuses and recovers, and
//! one that refuses until the message is a dead letter, then a replay.
//!
//! The service runs on its own, on SQLite and the embedded bus; the tests
//! publish the events the other services would.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use contracts::Event;
use contracts::events::{
    Money, NotificationDeadLetteredV1, OrderCreatedV1, OrderLineV1, OrderPaidV1, PaymentChoiceV1,
    ProductChangedV1, UserRegisteredV1,
};
use contracts::grpc::notifications::v1 as pb;
use contracts::grpc::notifications::v1::notifications_client::NotificationsClient;
use kit::SharedBus;
use kit::config::{DeliveryKind, Mode, Settings, SmtpTls};
use kit::service::RunningService;
use kit::testing::SmtpServer;
use tokio_util::sync::CancellationToken;

/// Every message the server accepted, searchable (see [`unfold`]).
fn arrived(smtp: &SmtpServer) -> Vec<String> {
    smtp.received().iter().map(|m| unfold(m)).collect()
}

async fn received_until(smtp: &SmtpServer, count: usize) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let received = arrived(smtp);
        if received.len() >= count {
            return received;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {count} messages arrived",
            received.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Undoes quoted-printable soft line breaks and `=3D`, enough to search
/// the bodies for what they say.
fn unfold(raw: &str) -> String {
    raw.replace("=\r\n", "")
        .replace("=\n", "")
        .replace("=3D", "=")
}

struct Harness {
    service: Option<RunningService>,
    bus: SharedBus,
    shutdown: CancellationToken,
    smtp: SmtpServer,
    _dir: tempfile::TempDir,
}

impl Harness {
    async fn start(max_attempts: u32) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let mail_dir = dir.path().join("mail");
        std::fs::create_dir(&mail_dir).unwrap();
        let smtp = SmtpServer::start(&mail_dir).await;
        let mut settings = Settings::defaults(Mode::Embedded);
        settings.data_dir = dir.path().to_owned();
        settings.public_url = "https://shop.example.com".into();
        settings
            .services
            .entry("notifications".into())
            .or_default()
            .port = Some(0);
        let notifications = &mut settings.notifications;
        notifications.delivery = DeliveryKind::Smtp;
        notifications.smtp.host = "127.0.0.1".into();
        notifications.smtp.port = smtp.port;
        notifications.smtp.tls = SmtpTls::None;
        notifications.smtp.timeout_secs = 5;
        notifications.max_attempts = max_attempts;
        notifications.initial_backoff_ms = 100;
        notifications.max_backoff_ms = 400;
        notifications.poll_ms = 50;
        settings.validate().unwrap();
        let bus = kit::testing::embedded_bus(dir.path()).await;
        let shutdown = CancellationToken::new();
        let service = kit::service::start(
            &notifications::Notifications,
            Arc::new(settings),
            Arc::clone(&bus),
            &kit::local::LocalServices::default(),
            &shutdown,
        )
        .await
        .unwrap();
        Harness {
            service: Some(service),
            bus,
            shutdown,
            smtp,
            _dir: dir,
        }
    }

    fn service(&self) -> &RunningService {
        self.service.as_ref().unwrap()
    }

    async fn publish<E: Event>(&self, event: &E) {
        let record = event
            .to_cloud_event("/kart/tests", None)
            .to_record(E::TOPIC);
        self.bus.publish(&[record]).await.unwrap();
    }

    /// A shopper with an order of two lines, paid.
    async fn paid_order(&self) -> (String, String) {
        let user_id = kit::new_id("usr");
        let order_id = kit::new_id("ord");
        self.publish(&UserRegisteredV1 {
            user_id: user_id.clone(),
            email: format!("{user_id}@example.com"),
            display_name: "Ada".into(),
            registered_at: Utc::now(),
        })
        .await;
        self.publish(&ProductChangedV1 {
            product_id: "prd_1".into(),
            sku: "MUG-1".into(),
            name: "Stoneware mug".into(),
            price: eur(1250),
            category: "kitchen".into(),
            active: true,
        })
        .await;
        self.publish(&OrderCreatedV1 {
            order_id: order_id.clone(),
            user_id: user_id.clone(),
            lines: vec![
                OrderLineV1 {
                    sku: "MUG-1".into(),
                    quantity: 2,
                    unit_price: eur(1250),
                },
                OrderLineV1 {
                    sku: "TEA-9".into(),
                    quantity: 1,
                    unit_price: eur(499),
                },
            ],
            total: eur(2999),
            payment: PaymentChoiceV1::Checkout,
            created_at: Utc::now(),
        })
        .await;
        let paid = OrderPaidV1 {
            order_id: order_id.clone(),
            user_id: user_id.clone(),
            total: eur(2999),
            paid_at: Utc::now(),
            change: None,
        };
        // The same fact twice, as two events: still one confirmation.
        self.publish(&paid).await;
        self.publish(&paid).await;
        (user_id, order_id)
    }

    async fn client(&self) -> NotificationsClient<tonic::transport::Channel> {
        NotificationsClient::connect(self.service().url())
            .await
            .unwrap()
    }

    /// The confirmation of `order_id`, once it reads as `status`.
    async fn confirmation_until(&self, order_id: &str, status: &str) -> pb::MessageSummary {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let mut client = self.client().await;
        loop {
            let list = client
                .list_messages(pb::ListMessagesRequest {
                    limit: 500,
                    user_id: String::new(),
                    kind: "order_confirmed".into(),
                })
                .await
                .unwrap()
                .into_inner();
            let found: Vec<_> = list
                .messages
                .into_iter()
                .filter(|m| m.order_id == order_id)
                .collect();
            assert!(found.len() <= 1, "one confirmation per order: {found:?}");
            if let Some(message) = found.into_iter().next()
                && message.status == status
            {
                return message;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the confirmation of {order_id} never became {status}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(service) = self.service.take() {
            service.stopped().await;
        }
    }
}

fn eur(amount_minor: i64) -> Money {
    Money {
        amount_minor,
        currency: "EUR".into(),
    }
}

fn confirmations_of<'a>(received: &'a [String], order_id: &str) -> Vec<&'a String> {
    received
        .iter()
        .filter(|m| m.contains(&format!("Subject: Order {order_id} confirmed")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paid_order_is_confirmed_by_mail_once() {
    let harness = Harness::start(4).await;
    let (user_id, order_id) = harness.paid_order().await;
    // The welcome mail and the confirmation.
    let received = received_until(&harness.smtp, 2).await;
    let confirmation = harness.confirmation_until(&order_id, "sent").await;
    assert_eq!(confirmation.attempts, 1);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let received_later = arrived(&harness.smtp);
    assert_eq!(received_later.len(), received.len(), "nothing more arrives");
    let confirmations = confirmations_of(&received_later, &order_id);
    assert_eq!(confirmations.len(), 1, "{received_later:#?}");
    let mail = confirmations[0];
    assert!(
        mail.contains(&format!("To: \"Ada\" <{user_id}@example.com>"))
            || mail.contains(&format!("To: Ada <{user_id}@example.com>")),
        "{mail}"
    );
    assert!(mail.contains("From: Kart <shop@kart.localhost>"), "{mail}");
    assert!(
        mail.contains(&format!("Message-ID: <{}@kart>", confirmation.id)),
        "{mail}"
    );
    assert!(mail.contains("multipart/alternative"), "{mail}");
    for said in [
        "2 x Stoneware mug (MUG-1)  25.00 EUR",
        "1 x TEA-9  4.99 EUR",
        "Total  29.99 EUR",
        &format!("https://shop.example.com/orders/{order_id}"),
        "<table",
    ] {
        assert!(mail.contains(said), "the mail lacks {said:?}: {mail}");
    }
    assert!(
        received_later
            .iter()
            .any(|m| m.contains("Subject: Welcome to Kart")),
        "{received_later:#?}"
    );
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_refuses_then_recovers_gets_the_mail_by_retrying() {
    let harness = Harness::start(50).await;
    harness
        .smtp
        .refuse("451 4.3.0 Mailbox busy, try again later");
    let (_, order_id) = harness.paid_order().await;
    let db = harness.service().db.clone().unwrap();
    // Wait for at least three refused tries of the confirmation.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let pending = loop {
        let message = harness.confirmation_until(&order_id, "pending").await;
        if message.attempts >= 3 {
            break message;
        }
        assert!(tokio::time::Instant::now() < deadline, "{message:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(pending.last_error.contains("451"), "{pending:?}");
    assert!(
        !pending.to.is_empty() && !pending.subject.is_empty(),
        "what the refused tries said is stored with their outcome: {pending:?}"
    );
    assert!(arrived(&harness.smtp).is_empty());
    let attempts = notifications::store::attempts(&db, &pending.id)
        .await
        .unwrap();
    assert!(attempts.iter().all(|a| a.outcome == "failed"));

    harness.smtp.recover();
    let sent = harness.confirmation_until(&order_id, "sent").await;
    assert!(sent.attempts > pending.attempts);
    assert_eq!(
        (&sent.subject, &sent.to),
        (&pending.subject, &pending.to),
        "the message written on the first try is the one sent"
    );
    let received = received_until(&harness.smtp, 2).await;
    assert_eq!(confirmations_of(&received, &order_id).len(), 1);
    let attempts = notifications::store::attempts(&db, &sent.id).await.unwrap();
    assert_eq!(attempts.last().unwrap().outcome, "sent");
    assert_eq!(
        attempts.iter().filter(|a| a.outcome == "sent").count(),
        1,
        "{attempts:?}"
    );
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_always_refuses_makes_a_dead_letter_that_replays_once() {
    let harness = Harness::start(3).await;
    harness
        .smtp
        .refuse("550 5.7.1 Relaying denied for this recipient");
    let mut dead_letters = harness
        .bus
        .subscribe(
            "test-dlq-reader",
            &[contracts::topics::NOTIFICATION_DLQ.to_owned()],
        )
        .await
        .unwrap();
    let (user_id, order_id) = harness.paid_order().await;
    let dead = harness.confirmation_until(&order_id, "dead").await;
    assert_eq!(dead.attempts, 3);
    assert!(dead.last_error.contains("550"), "{dead:?}");

    // The dead letter on the topic: the error, the tries, the event.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let letter = loop {
        let delivery = tokio::time::timeout_at(deadline, dead_letters.next())
            .await
            .expect("a dead letter on notification.dlq")
            .unwrap();
        let event = kit::cloudevents::CloudEvent::from_delivery(&delivery).unwrap();
        let letter = NotificationDeadLetteredV1::decode(&event).unwrap();
        if letter.message_id == dead.id {
            break letter;
        }
    };
    assert_eq!(letter.kind, "order_confirmed");
    assert_eq!(letter.attempts, 3);
    assert_eq!(letter.user_id, user_id);
    assert!(letter.error.contains("550"), "{letter:?}");
    assert_eq!(letter.original_event["type"], OrderPaidV1::TYPE);
    assert_eq!(letter.original_event["data"]["order_id"], order_id.as_str());

    let mut client = harness.client().await;
    let listed = client
        .list_dead_letters(pb::ListDeadLettersRequest { limit: 0 })
        .await
        .unwrap()
        .into_inner();
    assert!(listed.messages.iter().any(|m| m.id == dead.id));

    // Recovered: the replay sends it, once, however often it is asked.
    harness.smtp.recover();
    let replayed = client
        .replay(pb::ReplayRequest {
            ids: vec![],
            all: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        replayed
            .outcomes
            .iter()
            .any(|o| o.id == dead.id && o.outcome == "queued"),
        "{replayed:?}"
    );
    let sent = harness.confirmation_until(&order_id, "sent").await;
    assert_eq!(sent.attempts, 4);
    let again = client
        .replay(pb::ReplayRequest {
            ids: vec![dead.id.clone()],
            all: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.outcomes[0].outcome, "already_sent");
    let unknown = client
        .replay(pb::ReplayRequest {
            ids: vec!["msg_nope".into()],
            all: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(unknown.outcomes[0].outcome, "not_found");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let received = arrived(&harness.smtp);
    assert_eq!(
        confirmations_of(&received, &order_id).len(),
        1,
        "{received:#?}"
    );
    harness.stop().await;
}
