//! The `stripe` provider against a local fake of Stripe's API: the
//! requests it sends are the documented ones, refusals and outages are told
//! apart, a lost answer retried is one charge, webhooks verify.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use fake_stripe::FakeStripe;
use kit::Db;
use payments::card::CardInput;
use payments::provider::{
    ChargeOutcome, ChargeRequest, CheckoutRequest, OpenedCheckout, PaymentProvider,
};
use payments::stripe::StripeProvider;
use payments::webhooks;
use secrecy::SecretString;

const API_KEY: &str = "sk_test_kart_fake_0123456789";
const WEBHOOK_SECRET: &str = "whsec_kart_fake_0123456789";

struct Setup {
    fake: FakeStripe,
    provider: StripeProvider,
    _dir: tempfile::TempDir,
}

async fn setup_with_key(api_key: &str) -> Setup {
    let fake = FakeStripe::start(API_KEY, WEBHOOK_SECRET).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = kit::testing::sqlite_db(dir.path()).await;
    let db: Db = kit::testing::migrated(db, "payments", payments::MIGRATIONS).await;
    let provider = StripeProvider::new(
        fake.url(),
        SecretString::from(api_key),
        SecretString::from(WEBHOOK_SECRET),
        Duration::from_secs(5),
        db,
    )
    .unwrap();
    Setup {
        fake,
        provider,
        _dir: dir,
    }
}

async fn setup() -> Setup {
    setup_with_key(API_KEY).await
}

fn card(number: &str) -> CardInput {
    CardInput::parse(number, 12, 2030, "123", (2026, 11)).unwrap()
}

fn charge_for(order_id: &str, token: &str, amount_minor: i64) -> ChargeRequest {
    ChargeRequest {
        order_id: order_id.to_owned(),
        token: token.to_owned(),
        amount_minor,
        currency: "USD".into(),
        idempotency_key: format!("kart-order-{order_id}-charge"),
    }
}

async fn saved(setup: &Setup, user: &str, number: &str) -> String {
    setup
        .provider
        .tokenize_card(card(number), user)
        .await
        .unwrap()
        .token
}

#[tokio::test]
async fn saved_cards_are_payment_methods_attached_to_one_customer_per_user() {
    let s = setup().await;
    let first = s
        .provider
        .tokenize_card(card("4242424242424242"), "usr_1")
        .await
        .unwrap();
    let second = s
        .provider
        .tokenize_card(card("5555555555554444"), "usr_1")
        .await
        .unwrap();
    assert_eq!(
        (first.brand.as_str(), first.last4.as_str()),
        ("visa", "4242")
    );
    assert_eq!(
        (second.brand.as_str(), second.last4.as_str()),
        ("mastercard", "4444")
    );
    let (customer, _) = first.token.split_once('/').unwrap();
    assert!(customer.starts_with("cus_") && second.token.starts_with(customer));
    assert_eq!(s.fake.customers().len(), 1, "one customer per user");

    let requests = s.fake.requests();
    let posts: Vec<_> = requests.iter().filter(|r| r.method == "POST").collect();
    assert_eq!(posts.len(), 5, "customer, then method + attach twice");
    for request in &posts {
        assert!(
            request.authorized,
            "{} without the secret key",
            request.path
        );
        assert!(
            request.idempotency_key.is_some(),
            "{} without an Idempotency-Key",
            request.path
        );
        assert_eq!(
            request.content_type.as_deref(),
            Some("application/x-www-form-urlencoded")
        );
        let carries_card = request.form.iter().any(|(_, v)| v == "4242424242424242");
        assert_eq!(
            carries_card,
            request.field("card[number]") == Some("4242424242424242")
        );
    }
    let attach = posts.iter().find(|r| r.path.ends_with("/attach")).unwrap();
    assert_eq!(attach.field("customer"), Some(customer));
}

#[tokio::test]
async fn charges_follow_stripes_test_cards() {
    let s = setup().await;
    let good = saved(&s, "usr_1", "4242424242424242").await;
    let declined = saved(&s, "usr_1", "4000000000000002").await;
    let poor = saved(&s, "usr_1", "4000000000009995").await;

    let outcome = s
        .provider
        .charge(&charge_for("ord_1", &good, 2599))
        .await
        .unwrap();
    let ChargeOutcome::Captured { reference } = outcome else {
        panic!("a good card was not charged: {outcome:?}");
    };
    assert!(reference.starts_with("pi_"));
    let request = s
        .fake
        .requests()
        .into_iter()
        .find(|r| r.path == "/v1/payment_intents")
        .unwrap();
    assert_eq!(request.field("amount"), Some("2599"));
    assert_eq!(request.field("currency"), Some("usd"));
    assert_eq!(request.field("confirm"), Some("true"));
    assert_eq!(request.field("off_session"), Some("true"));
    assert_eq!(request.field("metadata[kart_order_id]"), Some("ord_1"));
    assert_eq!(
        request.idempotency_key.as_deref(),
        Some("kart-order-ord_1-charge")
    );

    for (order, token, code) in [
        ("ord_2", &declined, "card_declined"),
        ("ord_3", &poor, "insufficient_funds"),
    ] {
        match s
            .provider
            .charge(&charge_for(order, token, 2599))
            .await
            .unwrap()
        {
            ChargeOutcome::Declined { code: got, reason } => {
                assert_eq!(got, code);
                assert!(!reason.is_empty());
            }
            other => panic!("{order} was {other:?}"),
        }
    }
    // Below Stripe's minimum: refused for good, not retried for ever.
    match s
        .provider
        .charge(&charge_for("ord_4", &good, 10))
        .await
        .unwrap()
    {
        ChargeOutcome::Declined { code, .. } => assert_eq!(code, "provider_refused"),
        other => panic!("a 10-cent charge was {other:?}"),
    }
}

#[tokio::test]
async fn a_charge_retried_after_an_outage_or_a_lost_answer_is_one_charge() {
    let s = setup().await;
    let token = saved(&s, "usr_1", "4242424242424242").await;
    let request = charge_for("ord_lost", &token, 1000);

    s.fake.fail_next(1);
    s.provider
        .charge(&request)
        .await
        .expect_err("a 500 is an outage to retry");
    s.fake.lose_next_answers(1);
    s.provider
        .charge(&request)
        .await
        .expect_err("a lost answer is an outage to retry");
    let first = s.provider.charge(&request).await.unwrap();
    let again = s.provider.charge(&request).await.unwrap();
    assert_eq!(first, again, "the same key is the same charge");
    let intents: Vec<_> = s
        .fake
        .payment_intents()
        .into_iter()
        .filter(|pi| pi["metadata"]["kart_order_id"] == "ord_lost")
        .collect();
    assert_eq!(intents.len(), 1, "one PaymentIntent: {intents:?}");
    assert_eq!(intents[0]["status"], "succeeded");
}

#[tokio::test]
async fn refunds_are_idempotent_and_never_more_than_captured() {
    let s = setup().await;
    let token = saved(&s, "usr_1", "4242424242424242").await;
    let ChargeOutcome::Captured { reference } = s
        .provider
        .charge(&charge_for("ord_r", &token, 1000))
        .await
        .unwrap()
    else {
        panic!("not captured");
    };
    let first = s
        .provider
        .refund(&reference, 400, "kart-refund-a")
        .await
        .unwrap();
    let repeated = s
        .provider
        .refund(&reference, 400, "kart-refund-a")
        .await
        .unwrap();
    assert_eq!(first, repeated);
    assert!(first.starts_with("re_"));
    let too_much = s.provider.refund(&reference, 700, "kart-refund-b").await;
    let refusal = too_much.expect_err("600 left, 700 asked").to_string();
    assert!(refusal.contains("amount_too_large"), "{refusal}");
    s.provider
        .refund(&reference, 600, "kart-refund-c")
        .await
        .unwrap();
    let refunded: i64 = s
        .fake
        .refunds()
        .iter()
        .filter_map(|r| r["amount"].as_i64())
        .sum();
    assert_eq!(refunded, 1000);
}

fn checkout(order_id: &str, amount_minor: i64) -> CheckoutRequest {
    CheckoutRequest {
        order_id: order_id.to_owned(),
        amount_minor,
        currency: "EUR".into(),
        success_url: format!("http://localhost:8080/checkout/{order_id}?returned=1"),
        cancel_url: format!("http://localhost:8080/checkout/{order_id}?cancelled=1"),
        idempotency_key: format!("kart-order-{order_id}-checkout"),
    }
}

#[tokio::test]
async fn checkout_sessions_open_and_the_verify_call_reads_their_outcome() {
    let s = setup().await;
    let OpenedCheckout::Hosted(hosted) = s
        .provider
        .open_checkout(&checkout("ord_c", 4500))
        .await
        .unwrap()
    else {
        panic!("Stripe hosts its checkout");
    };
    assert!(hosted.session_id.starts_with("cs_test_"));
    assert!(hosted.url.starts_with(s.fake.url()));
    let request = s
        .fake
        .requests()
        .into_iter()
        .find(|r| r.path == "/v1/checkout/sessions")
        .unwrap();
    assert_eq!(request.field("mode"), Some("payment"));
    assert_eq!(request.field("client_reference_id"), Some("ord_c"));
    assert_eq!(
        request.field("line_items[0][price_data][unit_amount]"),
        Some("4500")
    );
    assert_eq!(
        request.field("line_items[0][price_data][currency]"),
        Some("eur")
    );

    assert_eq!(
        s.provider
            .checkout_outcome(&hosted.session_id)
            .await
            .unwrap(),
        None
    );
    s.fake
        .pay_session(&hosted.session_id, "4000000000000002")
        .await
        .expect_err("declined on the page");
    assert_eq!(
        s.provider
            .checkout_outcome(&hosted.session_id)
            .await
            .unwrap(),
        None
    );
    s.fake
        .pay_session(&hosted.session_id, "4242424242424242")
        .await
        .unwrap();
    let paid = s
        .provider
        .checkout_outcome(&hosted.session_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(paid.kind, webhooks::COMPLETED);
    assert_eq!(
        (
            paid.order_id.as_str(),
            paid.amount_minor,
            paid.currency.as_str()
        ),
        ("ord_c", 4500, "EUR")
    );
    assert!(paid.reference.starts_with("pi_"));

    let OpenedCheckout::Hosted(other) = s
        .provider
        .open_checkout(&checkout("ord_e", 4500))
        .await
        .unwrap()
    else {
        panic!("Stripe hosts its checkout");
    };
    s.fake.expire_session(&other.session_id).await.unwrap();
    let expired = s
        .provider
        .checkout_outcome(&other.session_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (expired.kind.as_str(), expired.failure_code.as_str()),
        (webhooks::FAILED, "checkout_expired")
    );

    // Below Stripe's minimum charge: refused for good, so the order fails.
    match s
        .provider
        .open_checkout(&checkout("ord_tiny", 5))
        .await
        .unwrap()
    {
        OpenedCheckout::Refused { code, reason } => {
            assert_eq!(code, "provider_refused");
            assert!(reason.contains("50"), "{reason}");
        }
        other => panic!("a 5-cent checkout was {other:?}"),
    }
}

#[tokio::test]
async fn webhooks_verify_with_the_endpoint_secret_and_read_as_outcomes() {
    let s = setup().await;
    let OpenedCheckout::Hosted(hosted) = s
        .provider
        .open_checkout(&checkout("ord_w", 4500))
        .await
        .unwrap()
    else {
        panic!("Stripe hosts its checkout");
    };
    s.fake
        .pay_session(&hosted.session_id, "4242424242424242")
        .await
        .unwrap();
    let delivery = s.fake.deliveries().pop().unwrap();
    let now = chrono::Utc::now().timestamp();
    let event = s
        .provider
        .read_webhook(&delivery.payload, &delivery.signature, now)
        .unwrap()
        .expect("a completed session is an outcome");
    assert_eq!(event.id, delivery.event["id"].as_str().unwrap());
    assert_eq!(
        (event.kind.as_str(), event.order_id.as_str()),
        (webhooks::COMPLETED, "ord_w")
    );

    let mut tampered = delivery.payload.clone();
    let at = tampered.iter().position(|b| *b == b'4').unwrap();
    tampered[at] = b'9';
    let refused = s
        .provider
        .read_webhook(&tampered, &delivery.signature, now)
        .unwrap_err();
    assert_eq!(refused.code, "invalid_signature");
    let forged = fake_stripe::signature_header("whsec_someone_else", now, &delivery.payload);
    assert!(
        s.provider
            .read_webhook(&delivery.payload, &forged, now)
            .is_err()
    );
    let stale = s
        .provider
        .read_webhook(&delivery.payload, &delivery.signature, now + 3600);
    assert!(stale.is_err(), "a signature an hour old is refused");

    let unrelated = br#"{"id":"evt_x","type":"customer.created","data":{"object":{"id":"cus_1"}}}"#;
    let signature = fake_stripe::signature_header(WEBHOOK_SECRET, now, unrelated);
    assert_eq!(
        s.provider.read_webhook(unrelated, &signature, now).unwrap(),
        None
    );
}

#[tokio::test]
async fn a_wrong_api_key_is_an_outage_to_fix_not_a_refusal_to_show() {
    let s = setup_with_key("sk_test_wrong").await;
    let refused = s
        .provider
        .tokenize_card(card("4242424242424242"), "usr_1")
        .await
        .unwrap_err();
    assert_eq!(refused.status, 503);
    assert!(!refused.detail.contains("sk_test"), "{}", refused.detail);
    let outage = s
        .provider
        .charge(&charge_for("ord_k", "cus_1/pm_1", 1000))
        .await
        .unwrap_err();
    assert!(outage.to_string().contains("API key"), "{outage}");
}
