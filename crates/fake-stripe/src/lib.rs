//! A local fake of the parts of Stripe's API Kart uses, for tests: it
//! speaks the documented shapes (form-encoded requests, Bearer secret key,
//! `Idempotency-Key` replay and mismatch errors, error objects with `type`,
//! `code`, `decline_code` and `param`, Checkout Sessions with a hosted
//! page, Refunds bounded by the payment, webhooks signed in the
//! `Stripe-Signature` header) and records every request so tests can check
//! what Kart sent. Cards behave as Stripe's test cards do.
//!
//! It is written apart from Kart's Stripe client on purpose: a mistake in
//! the client (a missing key, a wrong field name, a bad signature) shows up
//! as a refusal here instead of agreeing with itself.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub idempotency_key: Option<String>,
    pub content_type: Option<String>,
    pub authorized: bool,
    pub form: Vec<(String, String)>,
}

impl Recorded {
    pub fn field(&self, key: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// A webhook the fake sent, and how the endpoint answered.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub event: Value,
    pub payload: Vec<u8>,
    pub signature: String,
    pub status: Option<u16>,
}

#[derive(Default)]
struct Store {
    requests: Vec<Recorded>,
    /// Idempotency key → (the request it was first used with, the answer).
    idempotent: HashMap<String, (String, u16, Value)>,
    customers: HashMap<String, Value>,
    payment_methods: HashMap<String, Value>,
    /// Payment method id → its full card number (the fake is the "bank").
    card_numbers: HashMap<String, String>,
    payment_intents: Vec<Value>,
    refunds: Vec<Value>,
    sessions: HashMap<String, Value>,
    deliveries: Vec<Delivery>,
    webhook_url: Option<String>,
    /// The next N API calls fail with a 500 before doing anything.
    fail_before: usize,
    /// The next N writes are done, and then answered with a 500 (as when
    /// the answer is lost on the way back).
    fail_after: usize,
    counter: u64,
}

struct Inner {
    api_key: String,
    webhook_secret: String,
    base_url: String,
    store: Mutex<Store>,
    http: reqwest::Client,
}

impl Inner {
    fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The running fake. Dropping it stops it.
pub struct FakeStripe {
    inner: Arc<Inner>,
    server: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for FakeStripe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeStripe")
            .field("url", &self.inner.base_url)
            .finish()
    }
}

impl Drop for FakeStripe {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// The `Stripe-Signature` header Stripe would send for `payload`.
pub fn signature_header(secret: &str, timestamp: i64, payload: &[u8]) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(payload);
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

fn error(status: StatusCode, kind: &str, code: Option<&str>, message: &str) -> (u16, Value) {
    let mut error = json!({ "type": kind, "message": message });
    if let Some(code) = code {
        error["code"] = json!(code);
    }
    (status.as_u16(), json!({ "error": error }))
}

fn missing(param: &str) -> (u16, Value) {
    let (status, mut body) = error(
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
        Some("parameter_missing"),
        &format!("Missing required param: {param}."),
    );
    body["error"]["param"] = json!(param);
    (status, body)
}

fn reply((status, body): (u16, Value), replayed: bool) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, axum::Json(body)).into_response();
    if replayed && let Ok(value) = "true".parse() {
        response.headers_mut().insert("idempotent-replayed", value);
    }
    response
}

impl FakeStripe {
    /// Starts the fake on a free loopback port. `api_key` is the secret key
    /// Kart must present; `webhook_secret` signs the webhooks it sends.
    pub async fn start(api_key: &str, webhook_secret: &str) -> std::io::Result<FakeStripe> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base_url = format!("http://{}", listener.local_addr()?);
        let inner = Arc::new(Inner {
            api_key: api_key.to_owned(),
            webhook_secret: webhook_secret.to_owned(),
            base_url,
            store: Mutex::new(Store::default()),
            http: reqwest::Client::new(),
        });
        let app = Router::new()
            .route("/v1/checkout/sessions/{id}", get(api))
            .route("/v1/payment_intents/{id}", get(api))
            .route("/v1/{*rest}", post(api))
            .route("/pay/{session}", get(page).post(pay_on_page))
            .with_state(Arc::clone(&inner));
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(FakeStripe { inner, server })
    }

    pub fn url(&self) -> &str {
        &self.inner.base_url
    }

    /// Where webhooks go (Kart's `/api/v1/payments/webhooks/stripe`);
    /// `None` keeps them undelivered (recorded with no status).
    pub fn deliver_webhooks_to(&self, url: Option<String>) {
        self.inner.store().webhook_url = url;
    }

    /// The next `n` API calls fail with a 500 before doing anything.
    pub fn fail_next(&self, n: usize) {
        self.inner.store().fail_before = n;
    }

    /// The next `n` writes take effect, but their answers are lost (a 500).
    pub fn lose_next_answers(&self, n: usize) {
        self.inner.store().fail_after = n;
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.inner.store().requests.clone()
    }

    pub fn payment_intents(&self) -> Vec<Value> {
        self.inner.store().payment_intents.clone()
    }

    pub fn refunds(&self) -> Vec<Value> {
        self.inner.store().refunds.clone()
    }

    pub fn customers(&self) -> Vec<Value> {
        self.inner.store().customers.values().cloned().collect()
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        self.inner.store().deliveries.clone()
    }

    /// The Checkout Session for a Kart order, if one was opened.
    pub fn session_for_order(&self, order_id: &str) -> Option<Value> {
        self.inner
            .store()
            .sessions
            .values()
            .find(|s| s["client_reference_id"] == order_id)
            .cloned()
    }

    /// Pays a Checkout Session with a card, as the shopper would on its
    /// page. Returns whether the card was taken; a completed session sends
    /// `checkout.session.completed`.
    pub async fn pay_session(&self, session_id: &str, card_number: &str) -> Result<(), String> {
        pay_session(&self.inner, session_id, card_number).await
    }

    /// Lets a session run out: `checkout.session.expired` is sent.
    pub async fn expire_session(&self, session_id: &str) -> Result<(), String> {
        let session = {
            let mut store = self.inner.store();
            let session = store
                .sessions
                .get_mut(session_id)
                .ok_or("no such session")?;
            if session["status"] != "open" {
                return Err("the session is not open".into());
            }
            session["status"] = json!("expired");
            session.clone()
        };
        send_event(&self.inner, "checkout.session.expired", session).await;
        Ok(())
    }

    /// Sends a delivered webhook again, byte for byte, with a fresh
    /// signature (Stripe re-signs each attempt). Returns the status.
    pub async fn redeliver(&self, delivery: &Delivery) -> Option<u16> {
        let signature = signature_header(&self.inner.webhook_secret, now(), &delivery.payload);
        let url = self.inner.store().webhook_url.clone()?;
        post_webhook(&self.inner, &url, delivery.payload.clone(), &signature).await
    }
}

fn next_id(store: &mut Store, prefix: &str) -> String {
    store.counter += 1;
    let mut nonce = [0u8; 6];
    let _ = getrandom::fill(&mut nonce);
    format!("{prefix}_{}{:04}", hex::encode(nonce), store.counter)
}

/// Cards as Stripe's test mode treats them.
fn card_outcome(number: &str) -> Result<(), (&'static str, Option<&'static str>, &'static str)> {
    match number {
        "4000000000000002" => Err((
            "card_declined",
            Some("generic_decline"),
            "Your card was declined.",
        )),
        "4000000000009995" => Err((
            "card_declined",
            Some("insufficient_funds"),
            "Your card has insufficient funds.",
        )),
        "4000000000000069" => Err(("expired_card", None, "Your card has expired.")),
        "4000000000000127" => Err((
            "incorrect_cvc",
            None,
            "Your card's security code is incorrect.",
        )),
        "4000002760003184" => Err((
            "authentication_required",
            Some("authentication_required"),
            "Your card was declined. This transaction requires authentication.",
        )),
        _ => Ok(()),
    }
}

fn brand(number: &str) -> &'static str {
    match number.as_bytes().first() {
        Some(b'4') => "visa",
        Some(b'5') | Some(b'2') => "mastercard",
        Some(b'3') => "amex",
        _ => "unknown",
    }
}

async fn api(
    State(inner): State<Arc<Inner>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let authorized =
        header("authorization").as_deref() == Some(format!("Bearer {}", inner.api_key).as_str());
    let form: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
    let path = uri.path().to_owned();
    let idempotency_key = header("idempotency-key");
    let mut store = inner.store();
    store.requests.push(Recorded {
        method: method.to_string(),
        path: path.clone(),
        idempotency_key: idempotency_key.clone(),
        content_type: header("content-type"),
        authorized,
        form: form.clone(),
    });
    if !authorized {
        return reply(
            error(
                StatusCode::UNAUTHORIZED,
                "invalid_request_error",
                None,
                "Invalid API Key provided.",
            ),
            false,
        );
    }
    if store.fail_before > 0 {
        store.fail_before -= 1;
        return reply(
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "api_error",
                None,
                "An unexpected error occurred (the fake was told to fail).",
            ),
            false,
        );
    }
    if method == Method::GET {
        return reply(read(&store, &path), false);
    }
    let fingerprint = format!("{path}?{}", String::from_utf8_lossy(&body));
    if let Some(key) = &idempotency_key
        && let Some((first, status, answer)) = store.idempotent.get(key)
    {
        if *first != fingerprint {
            return reply(
                error(
                    StatusCode::BAD_REQUEST,
                    "idempotency_error",
                    None,
                    "Keys for idempotent requests can only be used with the same parameters they were first used with.",
                ),
                false,
            );
        }
        return reply((*status, answer.clone()), true);
    }
    let answer = write(&inner, &mut store, &path, &form);
    if let Some(key) = idempotency_key {
        store
            .idempotent
            .insert(key, (fingerprint, answer.0, answer.1.clone()));
    }
    if store.fail_after > 0 {
        store.fail_after -= 1;
        return reply(
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "api_error",
                None,
                "An unexpected error occurred (the answer was lost).",
            ),
            false,
        );
    }
    reply(answer, false)
}

fn not_found(what: &str, id: &str) -> (u16, Value) {
    let (status, mut body) = error(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        Some("resource_missing"),
        &format!("No such {what}: '{id}'"),
    );
    body["error"]["param"] = json!("id");
    (status, body)
}

fn read(store: &Store, path: &str) -> (u16, Value) {
    if let Some(id) = path.strip_prefix("/v1/checkout/sessions/") {
        return match store.sessions.get(id) {
            Some(session) => (200, session.clone()),
            None => not_found("checkout.session", id),
        };
    }
    if let Some(id) = path.strip_prefix("/v1/payment_intents/") {
        return match store.payment_intents.iter().find(|pi| pi["id"] == id) {
            Some(intent) => (200, intent.clone()),
            None => not_found("payment_intent", id),
        };
    }
    not_found("path", path)
}

fn write(inner: &Inner, store: &mut Store, path: &str, form: &[(String, String)]) -> (u16, Value) {
    let field = |key: &str| form.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    let segments: Vec<&str> = path.trim_start_matches("/v1/").split('/').collect();
    match segments.as_slice() {
        ["customers"] => {
            let id = next_id(store, "cus");
            let customer = json!({
                "id": id, "object": "customer",
                "metadata": { "kart_user_id": field("metadata[kart_user_id]") },
            });
            store.customers.insert(id, customer.clone());
            (200, customer)
        }
        ["payment_methods"] => {
            if field("type").as_deref() != Some("card") {
                return missing("type");
            }
            let Some(number) = field("card[number]") else {
                return missing("card[number]");
            };
            let (Some(month), Some(year)) = (
                field("card[exp_month]").and_then(|m| m.parse::<u32>().ok()),
                field("card[exp_year]").and_then(|y| y.parse::<u32>().ok()),
            ) else {
                return missing("card[exp_month]");
            };
            if number.len() < 12 || !number.bytes().all(|b| b.is_ascii_digit()) {
                let (status, mut body) = error(
                    StatusCode::PAYMENT_REQUIRED,
                    "card_error",
                    Some("incorrect_number"),
                    "Your card number is incorrect.",
                );
                body["error"]["param"] = json!("card[number]");
                return (status, body);
            }
            let id = next_id(store, "pm");
            let method = json!({
                "id": id, "object": "payment_method", "type": "card", "customer": null,
                "card": {
                    "brand": brand(&number), "last4": &number[number.len() - 4..],
                    "exp_month": month, "exp_year": year,
                },
            });
            store.card_numbers.insert(id.clone(), number);
            store.payment_methods.insert(id, method.clone());
            (200, method)
        }
        ["payment_methods", id, "attach"] => {
            let Some(customer) = field("customer") else {
                return missing("customer");
            };
            if !store.customers.contains_key(&customer) {
                return not_found("customer", &customer);
            }
            match store.payment_methods.get_mut(*id) {
                Some(method) => {
                    method["customer"] = json!(customer);
                    (200, method.clone())
                }
                None => not_found("payment_method", id),
            }
        }
        ["payment_intents"] => create_intent(store, form),
        ["refunds"] => {
            let Some(intent_id) = field("payment_intent") else {
                return missing("payment_intent");
            };
            let Some(intent) = store
                .payment_intents
                .iter()
                .find(|pi| pi["id"] == intent_id.as_str() && pi["status"] == "succeeded")
                .cloned()
            else {
                return not_found("payment_intent", &intent_id);
            };
            let captured = intent["amount"].as_i64().unwrap_or_default();
            let refunded: i64 = store
                .refunds
                .iter()
                .filter(|r| r["payment_intent"] == intent_id.as_str())
                .filter_map(|r| r["amount"].as_i64())
                .sum();
            let amount = match field("amount").map(|a| a.parse::<i64>()) {
                None => captured - refunded,
                Some(Ok(amount)) if amount > 0 => amount,
                Some(_) => return missing("amount"),
            };
            if refunded >= captured {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    Some("charge_already_refunded"),
                    "This charge has already been refunded.",
                );
            }
            if amount > captured - refunded {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    Some("amount_too_large"),
                    &format!(
                        "Refund amount ({amount}) is greater than unrefunded amount on charge ({}).",
                        captured - refunded
                    ),
                );
            }
            let refund = json!({
                "id": next_id(store, "re"), "object": "refund", "amount": amount,
                "currency": intent["currency"], "payment_intent": intent_id, "status": "succeeded",
            });
            store.refunds.push(refund.clone());
            (200, refund)
        }
        ["checkout", "sessions"] => {
            for required in [
                "mode",
                "success_url",
                "line_items[0][price_data][currency]",
                "line_items[0][price_data][unit_amount]",
                "line_items[0][quantity]",
            ] {
                if field(required).is_none() {
                    return missing(required);
                }
            }
            let unit: i64 = field("line_items[0][price_data][unit_amount]")
                .and_then(|a| a.parse().ok())
                .unwrap_or_default();
            let quantity: i64 = field("line_items[0][quantity]")
                .and_then(|q| q.parse().ok())
                .unwrap_or_default();
            if unit * quantity < 50 {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    Some("amount_too_small"),
                    "The Checkout Session's total amount must be at least 50 cents.",
                );
            }
            let id = next_id(store, "cs_test");
            let session = json!({
                "id": id, "object": "checkout.session", "mode": field("mode"),
                "status": "open", "payment_status": "unpaid",
                "amount_total": unit * quantity,
                "currency": field("line_items[0][price_data][currency]"),
                "client_reference_id": field("client_reference_id"),
                "metadata": { "kart_order_id": field("metadata[kart_order_id]") },
                "success_url": field("success_url"), "cancel_url": field("cancel_url"),
                "payment_intent": null,
                "url": format!("{}/pay/{id}", inner.base_url),
            });
            store.sessions.insert(id, session.clone());
            (200, session)
        }
        _ => not_found("path", path),
    }
}

fn create_intent(store: &mut Store, form: &[(String, String)]) -> (u16, Value) {
    let field = |key: &str| form.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    let Some(amount) = field("amount").and_then(|a| a.parse::<i64>().ok()) else {
        return missing("amount");
    };
    let Some(currency) = field("currency") else {
        return missing("currency");
    };
    if currency.len() != 3 || currency.to_ascii_lowercase() != currency {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Some("parameter_invalid_string"),
            "Invalid currency: a three-letter ISO code in lowercase.",
        );
    }
    if amount < 50 {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Some("amount_too_small"),
            "Amount must be at least 50 cents.",
        );
    }
    let Some(method_id) = field("payment_method") else {
        return missing("payment_method");
    };
    let Some(method) = store.payment_methods.get(&method_id).cloned() else {
        return not_found("payment_method", &method_id);
    };
    let customer = field("customer");
    if method["customer"].as_str() != customer.as_deref() {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Some("payment_method_not_attached"),
            "The PaymentMethod is not attached to this Customer.",
        );
    }
    let number = store
        .card_numbers
        .get(&method_id)
        .cloned()
        .unwrap_or_default();
    let id = next_id(store, "pi");
    let mut intent = json!({
        "id": id, "object": "payment_intent", "amount": amount, "currency": currency,
        "customer": customer, "payment_method": method_id,
        "description": field("description"),
        "metadata": { "kart_order_id": field("metadata[kart_order_id]") },
        "status": "succeeded",
    });
    match card_outcome(&number) {
        Ok(()) => {
            intent["latest_charge"] = json!(next_id(store, "ch"));
            store.payment_intents.push(intent.clone());
            (200, intent)
        }
        Err((code, decline_code, message)) => {
            intent["status"] = json!("requires_payment_method");
            store.payment_intents.push(intent.clone());
            let (status, mut body) = error(
                StatusCode::PAYMENT_REQUIRED,
                "card_error",
                Some(code),
                message,
            );
            if let Some(decline_code) = decline_code {
                body["error"]["decline_code"] = json!(decline_code);
            }
            body["error"]["payment_intent"] = intent;
            (status, body)
        }
    }
}

async fn pay_session(
    inner: &Arc<Inner>,
    session_id: &str,
    card_number: &str,
) -> Result<(), String> {
    let number: String = card_number.chars().filter(char::is_ascii_digit).collect();
    let session = {
        let mut store = inner.store();
        let session = store
            .sessions
            .get(session_id)
            .cloned()
            .ok_or("No such checkout session.")?;
        if session["status"] != "open" {
            return Err("This checkout session is no longer open.".into());
        }
        if let Err((_, _, message)) = card_outcome(&number) {
            return Err(message.to_owned());
        }
        let intent_id = next_id(&mut store, "pi");
        let intent = json!({
            "id": intent_id, "object": "payment_intent",
            "amount": session["amount_total"], "currency": session["currency"],
            "metadata": session["metadata"], "status": "succeeded",
        });
        store.payment_intents.push(intent);
        let session = store
            .sessions
            .get_mut(session_id)
            .ok_or("No such checkout session.")?;
        session["status"] = json!("complete");
        session["payment_status"] = json!("paid");
        session["payment_intent"] = json!(intent_id);
        session.clone()
    };
    send_event(inner, "checkout.session.completed", session).await;
    Ok(())
}

async fn send_event(inner: &Arc<Inner>, kind: &str, object: Value) {
    let (event, url) = {
        let mut store = inner.store();
        let event = json!({
            "id": next_id(&mut store, "evt"), "object": "event", "type": kind,
            "created": now(), "livemode": false,
            "data": { "object": object },
        });
        (event, store.webhook_url.clone())
    };
    let payload = serde_json::to_vec(&event).unwrap_or_default();
    let signature = signature_header(&inner.webhook_secret, now(), &payload);
    let status = match url {
        Some(url) => post_webhook(inner, &url, payload.clone(), &signature).await,
        None => None,
    };
    inner.store().deliveries.push(Delivery {
        event,
        payload,
        signature,
        status,
    });
}

async fn post_webhook(inner: &Inner, url: &str, payload: Vec<u8>, signature: &str) -> Option<u16> {
    inner
        .http
        .post(url)
        .header("stripe-signature", signature)
        .header("content-type", "application/json")
        .body(payload)
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn page_html(session: &Value, error: Option<&str>) -> String {
    let id = session["id"].as_str().unwrap_or_default();
    let amount = session["amount_total"].as_i64().unwrap_or_default();
    let currency = session["currency"]
        .as_str()
        .unwrap_or_default()
        .to_ascii_uppercase();
    let error = error
        .map(|e| format!("<p role=\"alert\">{}</p>", escape(e)))
        .unwrap_or_default();
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Fake Stripe Checkout</title></head>\
         <body><h1>Fake Stripe Checkout</h1><p>Pay {}.{:02} {currency}</p>{error}\
         <form method=\"post\" action=\"/pay/{id}\"><label for=\"card\">Card number</label>\
         <input id=\"card\" name=\"card_number\"><button type=\"submit\">Pay</button>\
         <a href=\"{}\">Cancel</a></form></body></html>",
        amount / 100,
        amount % 100,
        escape(session["cancel_url"].as_str().unwrap_or("/")),
    )
}

async fn page(State(inner): State<Arc<Inner>>, Path(session_id): Path<String>) -> Response {
    match inner.store().sessions.get(&session_id) {
        Some(session) if session["status"] == "open" => {
            Html(page_html(session, None)).into_response()
        }
        Some(_) => (StatusCode::GONE, "This checkout session is no longer open.").into_response(),
        None => (StatusCode::NOT_FOUND, "No such checkout session.").into_response(),
    }
}

async fn pay_on_page(
    State(inner): State<Arc<Inner>>,
    Path(session_id): Path<String>,
    body: Bytes,
) -> Response {
    let card = form_urlencoded::parse(&body)
        .find(|(k, _)| k == "card_number")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    match pay_session(&inner, &session_id, &card).await {
        Ok(()) => {
            let success = inner
                .store()
                .sessions
                .get(&session_id)
                .and_then(|s| s["success_url"].as_str().map(str::to_owned))
                .unwrap_or_else(|| "/".into());
            Redirect::to(&success).into_response()
        }
        Err(message) => {
            let session = inner.store().sessions.get(&session_id).cloned();
            match session {
                Some(session) => (
                    StatusCode::PAYMENT_REQUIRED,
                    Html(page_html(&session, Some(&message))),
                )
                    .into_response(),
                None => (StatusCode::NOT_FOUND, message).into_response(),
            }
        }
    }
}
