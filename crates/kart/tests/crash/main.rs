//! Crash tests: Kart distributed, each service its own `kart serve`
//! process on PostgreSQL and the broker. While 200 orders are in flight the
//! payments, orders and inventory processes are killed (SIGKILL, no chance
//! to tidy up) at random moments and started again. Afterwards every
//! accepted order must be PAID or FAILED, no order charged twice, the stock
//! must add up, and the events on the broker must tell the same story as
//! the services.
//!
//! The moments are random; the seed is printed, and `KART_CRASH_SEED`
//! replays a run.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use kit::bus::EventBus;
use kit::bus::kafka::KafkaBus;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

const ORDERS: usize = 200;
const CLIENTS: usize = 10;
const SHOPPERS: usize = 20;
const SKUS: &[&str] = &["CRASH-A", "CRASH-B", "CRASH-C", "CRASH-D"];
const STOCK_EACH: i64 = 70;
const VICTIMS: &[&str] = &["payments", "orders", "inventory"];
const ADMIN_EMAIL: &str = "admin@crash.test";
const ADMIN_PASSWORD: &str = "admin password for crash tests";

struct Cluster {
    environment: Vec<(String, String)>,
    ports: BTreeMap<&'static str, u16>,
    children: HashMap<&'static str, Child>,
    logs: PathBuf,
    bus_namespace: String,
    _dir: tempfile::TempDir,
}

impl Cluster {
    async fn start() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        // `kart_test_…`, so the test command drops its databases after the run.
        let run = kit::testing::unique("kart_test_crash");
        let bus = kit::testing::kafka_settings();
        // Each service keeps its port across restarts, so the others find
        // it again.
        let ports: BTreeMap<&'static str, u16> = kart::SERVICE_NAMES
            .iter()
            .copied()
            .zip(kit::http::free_loopback_ports(kart::SERVICE_NAMES.len()).unwrap())
            .collect();
        let mut environment = vec![
            (
                "KART__DATABASE__URL".to_owned(),
                kit::testing::postgres_url(&format!("{run}_{{service}}")),
            ),
            ("KART__BUS__KIND".into(), "kafka".into()),
            ("KART__BUS__BROKERS".into(), bus.brokers.clone()),
            ("KART__BUS__NAMESPACE".into(), bus.namespace.clone()),
            (
                "KART__BUS__FETCH_WAIT_MS".into(),
                bus.fetch_wait_ms.to_string(),
            ),
            // Each service runs one process here, which comes back under
            // the same name: a static group member that takes its
            // partitions back at once (see `bus.instance_id`).
            ("KART__BUS__INSTANCE_ID".into(), "crash-1".into()),
            (
                "KART__AUTH__JWT_SECRET".into(),
                "a-crash-test-signing-key-of-32-bytes-or-more".into(),
            ),
            ("KART__AUTH__ADMIN_EMAIL".into(), ADMIN_EMAIL.into()),
            ("KART__AUTH__ADMIN_PASSWORD".into(), ADMIN_PASSWORD.into()),
            (
                "KART__PAYMENTS__WEBHOOK_SECRET".into(),
                "whsec_crash_test_secret".into(),
            ),
            ("KART__GATEWAY__IP_RATE_PER_SEC".into(), "0".into()),
            ("KART__GATEWAY__USER_RATE_PER_SEC".into(), "0".into()),
            ("KART__GATEWAY__SECURE_COOKIES".into(), "false".into()),
            ("KART__TELEMETRY__LOG_LEVEL".into(), "info".into()),
            ("KART__HTTP__HOST".into(), "127.0.0.1".into()),
        ];
        for (name, port) in &ports {
            let upper = name.to_uppercase();
            environment.push((format!("KART__SERVICES__{upper}__PORT"), port.to_string()));
            environment.push((
                format!("KART__SERVICES__{upper}__URL"),
                format!("http://127.0.0.1:{port}"),
            ));
        }
        let logs = dir.path().join("logs");
        std::fs::create_dir_all(&logs).unwrap();
        let mut cluster = Cluster {
            environment,
            ports,
            children: HashMap::new(),
            logs,
            bus_namespace: bus.namespace,
            _dir: dir,
        };
        // The gateway last, once what it fronts answers.
        for name in kart::SERVICE_NAMES.iter().rev() {
            cluster.launch(name).await;
        }
        cluster
    }

    fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}", self.ports[name])
    }

    fn log_of(&self, name: &str) -> PathBuf {
        self.logs.join(format!("{name}.log"))
    }

    /// Starts `kart serve <name>` and waits until it is ready: it, not
    /// another process that holds its port, and still running.
    async fn launch(&mut self, name: &'static str) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_of(name))
            .unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_kart"));
        command
            .args(["serve", name])
            .env_remove("KART_CONFIG")
            .envs(self.environment.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true);
        let child = command.spawn().unwrap();
        self.children.insert(name, child);
        let http = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.children.get_mut(name).unwrap().try_wait().unwrap() {
                panic!("{name} exited with {status}:\n{}", tail(&self.log_of(name)));
            }
            match kart::ready_as(&http, &self.url(name), name).await {
                Ok(true) => return,
                Ok(false) => {}
                Err(error) => panic!(
                    "{error} (the ports: {:?}); {name}'s log:\n{}",
                    self.ports,
                    tail(&self.log_of(name))
                ),
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name} not ready in 60 s:\n{}",
                tail(&self.log_of(name))
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGKILL: no shutdown hook runs, in-flight transactions are lost.
    async fn kill(&mut self, name: &'static str) {
        let mut child = self.children.remove(name).unwrap();
        child.start_kill().unwrap();
        child.wait().await.unwrap();
    }

    async fn stop(mut self) {
        for (_, mut child) in self.children.drain() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// What a service's log says of its consumer groups (assignments,
/// rejoins, restarts): the tail alone is mostly access log lines.
fn group_story(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter(|line| {
            [
                "partitions assigned",
                "rejoining",
                "service started",
                "rebalance",
            ]
            .iter()
            .any(|word| line.contains(word))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A client of the gateway that retries what a real client would retry:
/// no answer, a 5xx (a service is down), with the same Idempotency-Key.
#[derive(Clone)]
struct Client {
    http: reqwest::Client,
    gateway: String,
    /// The gateway's log, whose tail a request that never succeeds shows.
    gateway_log: PathBuf,
}

impl Client {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        key: Option<&str>,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        loop {
            let mut request = self
                .http
                .request(method.clone(), format!("{}{path}", self.gateway))
                .timeout(Duration::from_secs(15));
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            if let Some(key) = key {
                request = request.header("idempotency-key", key);
            }
            if let Some(body) = body {
                request = request.json(body);
            }
            let last = match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    let body = response.json().await.unwrap_or(Value::Null);
                    if !status.is_server_error() {
                        return (status, body);
                    }
                    format!("{status} {body}")
                }
                Err(error) => format!("no answer: {error}"),
            };
            assert!(
                tokio::time::Instant::now() < deadline,
                "{method} {path} kept failing for 2 minutes; the last try got {last}; \
                 the gateway's log ends:\n{}",
                tail(&self.gateway_log)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.send(reqwest::Method::POST, path, token, None, Some(&body))
            .await
    }

    async fn get(&self, path: &str, token: &str) -> Value {
        let (status, body) = self
            .send(reqwest::Method::GET, path, Some(token), None, None)
            .await;
        assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
        body
    }
}

struct Placed {
    id: String,
    token: String,
    sku: String,
    quantity: i64,
}

fn terminal(order: &Value) -> bool {
    matches!(order["status"].as_str(), Some("PAID" | "FAILED"))
}

/// Every event on `topic`, read by a group of its own from the start
/// until the topic is quiet: (event type, data), each record once.
async fn events(bus: &KafkaBus, topic: &str) -> Vec<(String, Value)> {
    let mut subscription = bus
        .subscribe(&kit::testing::unique("crash-reader"), &[topic.to_owned()])
        .await
        .unwrap();
    let mut records = BTreeMap::new();
    let mut wait = Duration::from_secs(30);
    while let Ok(delivery) = tokio::time::timeout(wait, subscription.next()).await {
        let delivery = delivery.unwrap();
        let kind = kit::bus::header(&delivery.headers, "ce_type")
            .unwrap_or_default()
            .to_owned();
        let id = kit::bus::header(&delivery.headers, "ce_id")
            .unwrap_or_default()
            .to_owned();
        let data: Value = serde_json::from_slice(&delivery.payload).unwrap_or(Value::Null);
        records.insert((delivery.partition, delivery.offset), (id, kind, data));
        wait = Duration::from_secs(2);
    }
    // At-least-once: a record relayed twice (a crash between send and
    // mark) carries the same event id; consumers apply it once.
    let mut seen = BTreeSet::new();
    records
        .into_values()
        .filter(|(id, _, _)| seen.insert(id.clone()))
        .map(|(_, kind, data)| (kind, data))
        .collect()
}

/// The order ids of events of `kind`, with how many distinct events each.
fn per_order(events: &[(String, Value)], kind: &str) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for (_, data) in events.iter().filter(|(k, _)| k == kind) {
        *counts
            .entry(data["order_id"].as_str().unwrap_or_default().to_owned())
            .or_insert(0) += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_payments_orders_and_inventory_mid_flight_breaks_no_promise() {
    let seed = std::env::var("KART_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    println!("crash test seed: {seed} (KART_CRASH_SEED={seed} replays it)");
    let mut rng = fastrand::Rng::with_seed(seed);

    let mut cluster = Cluster::start().await;
    let client = Client {
        http: reqwest::Client::new(),
        gateway: cluster.url("gateway"),
        gateway_log: cluster.log_of("gateway"),
    };

    // The shop: four products, a known stock, shoppers with cards (every
    // fifth card is declined).
    let (status, admin) = client
        .post(
            "/api/v1/auth/signin",
            None,
            json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{admin}");
    let admin = admin["access_token"].as_str().unwrap().to_owned();
    for sku in SKUS {
        let (status, body) = client
            .post(
                "/api/v1/admin/products",
                Some(&admin),
                json!({"sku": sku, "name": format!("{sku} crash stock"), "category": "crash",
                       "price": {"amount_minor": 990, "currency": "EUR"}, "description": "x"}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let (status, body) = client
            .post(
                &format!("/api/v1/admin/stock/{sku}/adjustments"),
                Some(&admin),
                json!({"delta": STOCK_EACH, "reason": "crash test stock"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let mut shoppers = Vec::new();
    for n in 0..SHOPPERS {
        let (status, session) = client
            .post(
                "/api/v1/auth/signup",
                None,
                json!({"email": format!("shopper{n}-{seed}@crash.test"), "password": "a long enough password", "display_name": "Shopper"}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{session}");
        let token = session["access_token"].as_str().unwrap().to_owned();
        let number = if n % 5 == 4 {
            "4000000000000002"
        } else {
            "4242424242424242"
        };
        let (status, card) = client
            .post(
                "/api/v1/me/payment-methods",
                Some(&token),
                json!({"card_number": number, "exp_month": 12, "exp_year": 2031, "cvc": "123"}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{card}");
        shoppers.push((token, card["id"].as_str().unwrap().to_owned()));
    }

    // The orders: CLIENTS at a time, paced so they span the chaos, each
    // retried with its key until the gateway answers.
    let plan: Vec<(usize, &str, i64, String, u64)> = (0..ORDERS)
        .map(|n| {
            (
                rng.usize(..SHOPPERS),
                SKUS[rng.usize(..SKUS.len())],
                rng.i64(1..=2),
                format!("crash-{seed}-{n}"),
                rng.u64(1000..5000),
            )
        })
        .collect();
    let queue = Arc::new(std::sync::Mutex::new(plan));
    let placing = Arc::new(AtomicUsize::new(CLIENTS));
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let client = client.clone();
        let queue = Arc::clone(&queue);
        let placing = Arc::clone(&placing);
        let shoppers = shoppers.clone();
        clients.push(tokio::spawn(async move {
            let mut placed = Vec::new();
            loop {
                let next = queue.lock().unwrap().pop();
                let Some((shopper, sku, quantity, key, pause_ms)) = next else {
                    placing.fetch_sub(1, Ordering::SeqCst);
                    return placed;
                };
                tokio::time::sleep(Duration::from_millis(pause_ms)).await;
                let (token, card) = &shoppers[shopper];
                let body = json!({"lines": [{"sku": sku, "quantity": quantity}], "payment_method_id": card});
                let (status, order) = client
                    .send(
                        reqwest::Method::POST,
                        "/api/v1/orders",
                        Some(token),
                        Some(&key),
                        Some(&body),
                    )
                    .await;
                assert!(
                    status == StatusCode::CREATED || status == StatusCode::OK,
                    "order {key}: {status} {order}"
                );
                placed.push(Placed {
                    id: order["id"].as_str().unwrap().to_owned(),
                    token: token.clone(),
                    sku: sku.to_owned(),
                    quantity,
                });
            }
        }));
    }
    // The chaos: each victim at least twice, in a random order, at random
    // moments, and on until the last order is placed. A killed process
    // comes back either at once (0.5–3 s, while its dead predecessor still
    // holds its place in the consumer group) or past the broker's session
    // timeout (10.5–12 s, as a crashed pod under its restart back-off).
    // Orders keep arriving while it is down. A quick return is where tansu
    // (the test broker) can leave the group with no working owner for good
    // (its declared `group-rejoin` defect); Kart's consumers notice and
    // move the group to a fresh broker group after 30 s (`kit::consumer`),
    // so the promises below must hold either way.
    let mut kills = Vec::new();
    let mut victims: Vec<&'static str> = Vec::new();
    while kills.len() < 2 * VICTIMS.len() || placing.load(Ordering::SeqCst) > 0 {
        if victims.is_empty() {
            victims = VICTIMS.to_vec();
            rng.shuffle(&mut victims);
        }
        let victim = victims.pop().unwrap();
        tokio::time::sleep(Duration::from_millis(rng.u64(100..1500))).await;
        cluster.kill(victim).await;
        kills.push(victim);
        let down = if rng.bool() {
            rng.u64(500..3_000)
        } else {
            rng.u64(10_500..12_000)
        };
        tokio::time::sleep(Duration::from_millis(down)).await;
        cluster.launch(victim).await;
    }
    let mut placed = Vec::new();
    for handle in clients {
        placed.extend(handle.await.unwrap());
    }
    assert_eq!(placed.len(), ORDERS);
    println!("killed, in order: {kills:?}");
    for name in VICTIMS {
        let log = std::fs::read_to_string(cluster.log_of(name)).unwrap_or_default();
        let moves = log
            .matches("moving the group to a fresh broker group")
            .count();
        println!("{name}: its consumer group moved to a fresh broker group {moves} times");
    }

    // 1. Every accepted order ends PAID or FAILED.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(240);
    let mut orders: BTreeMap<String, Value> = BTreeMap::new();
    for order in &placed {
        loop {
            let now = client
                .get(&format!("/api/v1/orders/{}", order.id), &order.token)
                .await;
            if terminal(&now) {
                orders.insert(order.id.clone(), now);
                break;
            }
            if tokio::time::Instant::now() > deadline {
                let mut logs = String::new();
                for name in VICTIMS {
                    let log = cluster.log_of(name);
                    logs.push_str(&format!(
                        "--- {name}, its groups:\n{}\n--- {name}, the end:\n{}\n",
                        group_story(&log),
                        tail(&log)
                    ));
                }
                panic!(
                    "order {} stuck at {} after the crashes {kills:?}:\n{now:#}\n{logs}",
                    order.id, now["status"]
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let paid: BTreeSet<&String> = orders
        .iter()
        .filter(|(_, o)| o["status"] == "PAID")
        .map(|(id, _)| id)
        .collect();
    let failed: BTreeSet<&String> = orders
        .iter()
        .filter(|(_, o)| o["status"] == "FAILED")
        .map(|(id, _)| id)
        .collect();
    println!("{} paid, {} failed", paid.len(), failed.len());
    assert!(
        !paid.is_empty() && !failed.is_empty(),
        "both outcomes occur"
    );

    // 2. Money: a paid order captured its total once; a failed one nothing.
    for (id, order) in &orders {
        let expected = if order["status"] == "PAID" {
            order["total"]["amount_minor"].as_i64().unwrap()
        } else {
            0
        };
        assert_eq!(
            order["captured"]["amount_minor"].as_i64().unwrap(),
            expected,
            "{id}: {order:#}"
        );
        assert_eq!(order["refunded"]["amount_minor"], 0, "{id}");
    }

    // 3. Stock adds up: what is gone is what paid orders took; nothing
    // stays reserved.
    for sku in SKUS {
        let sold: i64 = placed
            .iter()
            .filter(|o| o.sku == *sku && paid.contains(&o.id))
            .map(|o| o.quantity)
            .sum();
        // Inventory commits a paid order's stock when OrderPaid reaches it:
        // a moment after the order reads PAID.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        loop {
            let level = client
                .get(&format!("/api/v1/admin/stock/{sku}"), &admin)
                .await;
            if level["on_hand"] == STOCK_EACH - sold && level["reserved"] == 0 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{sku}: {level}, expected on_hand {} and nothing reserved:\n{}",
                STOCK_EACH - sold,
                tail(&cluster.log_of("inventory"))
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    // 4. The events tell the same story: one OrderPaid and one capture per
    // paid order, one OrderFailed per failed one, none for the other
    // outcome, and every accepted order created once.
    let mut settings = kit::testing::kafka_settings();
    settings.namespace = cluster.bus_namespace.clone();
    let bus = KafkaBus::connect(&settings).await.unwrap();
    let order_events = events(&bus, contracts::topics::ORDER_EVENTS).await;
    let payment_events = events(&bus, contracts::topics::PAYMENT_EVENTS).await;
    let created = per_order(&order_events, "kart.order.created.v1");
    let paid_events = per_order(&order_events, "kart.order.paid.v1");
    let failed_events = per_order(&order_events, "kart.order.failed.v1");
    let captures = per_order(&payment_events, "kart.payment.captured.v1");
    let expected_ids: BTreeSet<&String> = orders.keys().collect();
    assert_eq!(created.keys().collect::<BTreeSet<_>>(), expected_ids);
    assert!(created.values().all(|n| *n == 1), "{created:?}");
    assert_eq!(paid_events.keys().collect::<BTreeSet<_>>(), paid);
    assert!(paid_events.values().all(|n| *n == 1), "{paid_events:?}");
    assert_eq!(failed_events.keys().collect::<BTreeSet<_>>(), failed);
    assert!(failed_events.values().all(|n| *n == 1), "{failed_events:?}");
    assert_eq!(captures.keys().collect::<BTreeSet<_>>(), paid, "captures");
    assert!(
        captures.values().all(|n| *n == 1),
        "an order captured twice: {captures:?}"
    );

    cluster.stop().await;
}
