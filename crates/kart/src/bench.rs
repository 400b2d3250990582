//! `kart bench`: Kart measures itself, through its public API, the way a
//! shop's traffic would hit it.
//!
//! - `checkout`: sets up shoppers (sign-up, a saved test card), places
//!   orders closed-loop (C clients, each placing its next order once the
//!   last settled) or open-loop (a fixed rate, whatever the latency), and
//!   follows every order to PAID or FAILED on its live status stream (SSE),
//!   never by polling. Then it checks Kart's promises held: every accepted
//!   order is terminal, no order captured more than its total, stock adds up.
//! - `browse`: catalog lists, searches and product pages, closed-loop.
//!
//! Against a running Kart (`--target`) or one it starts itself: `kart up`
//! (embedded) or every service as its own `kart serve` process on
//! PostgreSQL and a broker (distributed). Loopback only; every run is
//! bounded in count and time. The report folder gets `report.json`,
//! `report.md` and SVG charts.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::bench_report::{self, Report};
use crate::bench_system::{BenchMode, Kart};

/// The card every bench shopper saves: the simulated provider pays it.
const TEST_CARD: &str = "4242 4242 4242 4242";

/// What `kart bench checkout` was asked for.
#[derive(Debug, Clone)]
pub struct CheckoutPlan {
    pub mode: BenchMode,
    pub shoppers: usize,
    /// Orders per second (open loop); `None` for closed loop.
    pub rate: Option<f64>,
    /// Clients in closed loop; the cap on orders in flight in open loop.
    pub concurrency: usize,
    pub orders: usize,
    pub max_secs: u64,
    pub out: PathBuf,
}

/// What `kart bench browse` was asked for.
#[derive(Debug, Clone)]
pub struct BrowsePlan {
    pub mode: BenchMode,
    pub concurrency: usize,
    pub requests: usize,
    pub max_secs: u64,
    pub out: PathBuf,
}

/// A signed-in shopper with a saved card.
#[derive(Debug, Clone)]
struct Shopper {
    token: String,
    card: String,
}

/// One order's fate, as the bench saw it.
#[derive(Debug, Clone)]
struct Placed {
    id: String,
    /// Since the run began, when the order was sent.
    sent_at: Duration,
    accept: Duration,
    /// 201 → the terminal status on the stream.
    settle: Option<Duration>,
    status: Option<String>,
}

/// Progress on the terminal (stderr), when it is one.
struct Progress {
    total: usize,
    done: AtomicUsize,
    errors: AtomicUsize,
    started: Instant,
    live: bool,
}

impl Progress {
    fn new(total: usize) -> Arc<Progress> {
        Arc::new(Progress {
            total,
            done: AtomicUsize::new(0),
            errors: AtomicUsize::new(0),
            started: Instant::now(),
            live: std::io::stderr().is_terminal(),
        })
    }

    fn draw(&self, what: &str) {
        let done = self.done.load(Ordering::Relaxed);
        let width = 30;
        let filled = (done * width / self.total.max(1)).min(width);
        let rate = done as f64 / self.started.elapsed().as_secs_f64().max(0.001);
        let line = format!(
            "[{}{}] {done}/{} {what}  {rate:.0}/s  errors {}",
            "#".repeat(filled),
            ".".repeat(width - filled),
            self.total,
            self.errors.load(Ordering::Relaxed)
        );
        if self.live {
            eprint!("\r{line}  ");
            let _ = std::io::stderr().flush();
        }
    }

    /// Redraws every half second until `stop`.
    fn spawn(self: &Arc<Self>, what: &'static str) -> tokio::task::JoinHandle<()> {
        let progress = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                progress.draw(what);
                if progress.done.load(Ordering::Relaxed) >= progress.total {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    }

    fn finish(&self, what: &str) {
        self.draw(what);
        if self.live {
            eprintln!();
        }
    }
}

/// The shoppers' HTTP client. It speaks HTTP/2, so every order's live
/// stream is a stream on a connection already open. Over HTTP/1.1 a live
/// stream ends its connection when the client closes it, so each order
/// cost a TCP connection's set-up and teardown on both sides: about a
/// tenth of all the CPU of a run. A plain `http://` Kart is asked in
/// HTTP/2 straight away (as Kart's own servers answer); if it does not
/// answer so (a proxy in front that speaks only HTTP/1.1), the bench says
/// so and uses HTTP/1.1. Over `https://` the TLS handshake chooses.
async fn client(base: &str) -> anyhow::Result<reqwest::Client> {
    let builder = || {
        reqwest::Client::builder()
            .pool_max_idle_per_host(1024)
            .tcp_nodelay(true)
            .timeout(Duration::from_secs(30))
    };
    if !base.starts_with("http://") {
        return builder().build().context("HTTP client");
    }
    let http2 = builder()
        .http2_prior_knowledge()
        .build()
        .context("HTTP client")?;
    match http2.get(format!("{base}/healthz")).send().await {
        Ok(_) => Ok(http2),
        Err(error) => {
            eprintln!("{base} does not answer HTTP/2 without TLS ({error}); using HTTP/1.1");
            builder().build().context("HTTP client")
        }
    }
}

async fn json_call(request: reqwest::RequestBuilder) -> anyhow::Result<(u16, Value)> {
    let response = request.send().await?;
    let status = response.status().as_u16();
    let text = response.text().await?;
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

async fn sign_in(
    client: &reqwest::Client,
    base: &str,
    email: &str,
    password: &str,
) -> anyhow::Result<String> {
    let (status, body) = json_call(
        client
            .post(format!("{base}/api/v1/auth/signin"))
            .json(&json!({"email": email, "password": password})),
    )
    .await?;
    if status != 200 {
        bail!("signing in as {email} answered {status}: {body}");
    }
    Ok(body["access_token"].as_str().unwrap_or_default().to_owned())
}

/// N shoppers, each signed up with a saved card, made 8 at a time.
async fn make_shoppers(
    client: &reqwest::Client,
    base: &str,
    count: usize,
    run: &str,
) -> anyhow::Result<Vec<Shopper>> {
    let made = Arc::new(Mutex::new(Vec::with_capacity(count)));
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..8.min(count) {
        let (client, base, made, next, run) = (
            client.clone(),
            base.to_owned(),
            Arc::clone(&made),
            Arc::clone(&next),
            run.to_owned(),
        );
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return Ok::<(), anyhow::Error>(());
                }
                let email = format!("bench-{run}-{i}@example.com");
                let (status, body) = json_call(client.post(format!("{base}/api/v1/auth/signup")).json(&json!({
                        "email": email, "password": "a bench shopper's passphrase", "display_name": format!("Shopper {i}")
                    })),
                )
                .await?;
                if status != 201 {
                    bail!("sign-up answered {status}: {body}");
                }
                let token = body["access_token"].as_str().unwrap_or_default().to_owned();
                let (status, card) = json_call(client
                        .post(format!("{base}/api/v1/me/payment-methods"))
                        .bearer_auth(&token)
                        .json(&json!({"card_number": TEST_CARD, "exp_month": 12, "exp_year": 2031, "cvc": "123"})),
                )
                .await?;
                if status != 201 {
                    bail!("saving a card answered {status}: {card}");
                }
                let card = card["id"].as_str().unwrap_or_default().to_owned();
                made.lock().await.push(Shopper { token, card });
            }
        }));
    }
    for worker in workers {
        worker.await??;
    }
    let shoppers = std::mem::take(&mut *made.lock().await);
    Ok(shoppers)
}

/// A product only this run orders, with `units` in stock.
async fn bench_product(
    client: &reqwest::Client,
    base: &str,
    admin: &str,
    run: &str,
    units: i64,
) -> anyhow::Result<String> {
    let sku = format!("BENCH-{}", run.to_uppercase());
    let (status, body) = json_call(client.post(format!("{base}/api/v1/admin/products")).bearer_auth(admin).json(&json!({
            "sku": sku, "name": format!("Bench item {run}"), "description": "Made by kart bench.",
            "category": "bench", "price": {"amount_minor": 1000, "currency": "EUR"}
        })),
    )
    .await?;
    if status != 201 {
        bail!("creating the bench product answered {status}: {body}");
    }
    let (status, body) = json_call(
        client
            .post(format!("{base}/api/v1/admin/stock/{sku}/adjustments"))
            .bearer_auth(admin)
            .json(&json!({"delta": units, "reason": "kart bench"})),
    )
    .await?;
    if status != 200 {
        bail!("stocking the bench product answered {status}: {body}");
    }
    Ok(sku)
}

/// Follows `order_id` on its live stream until PAID or FAILED.
async fn follow(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    order_id: &str,
    limit: Duration,
) -> Option<String> {
    let response = client
        .get(format!("{base}/api/v1/orders/{order_id}/stream"))
        .bearer_auth(token)
        .timeout(limit)
        .send()
        .await
        .ok()?;
    if !response.status().is_success() {
        return None;
    }
    let mut response = response;
    let mut buffer = String::new();
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        while let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            for line in event.lines() {
                if let Some(data) = line.strip_prefix("data:")
                    && let Ok(order) = serde_json::from_str::<Value>(data.trim_start())
                {
                    let status = order["status"].as_str().unwrap_or_default();
                    if matches!(status, "PAID" | "FAILED" | "CANCELLED") {
                        return Some(status.to_owned());
                    }
                }
            }
        }
        let chunk = tokio::time::timeout_at(deadline, response.chunk())
            .await
            .ok()?
            .ok()??;
        buffer.push_str(&String::from_utf8_lossy(&chunk));
    }
}

struct Shared {
    client: reqwest::Client,
    base: String,
    sku: String,
    shoppers: Vec<Shopper>,
    started: Instant,
    results: Mutex<Vec<Placed>>,
    errors: Mutex<BTreeMap<String, u64>>,
    progress: Arc<Progress>,
    next_shopper: AtomicUsize,
}

impl Shared {
    /// Places one order and follows it; records what happened.
    async fn one_order(&self) {
        let shopper =
            &self.shoppers[self.next_shopper.fetch_add(1, Ordering::Relaxed) % self.shoppers.len()];
        let sent_at = self.started.elapsed();
        let sent = Instant::now();
        let placed = self
            .client
            .post(format!("{}/api/v1/orders", self.base))
            .bearer_auth(&shopper.token)
            .header("idempotency-key", kit::new_id("bench"))
            .json(&json!({"lines": [{"sku": self.sku, "quantity": 1}], "payment_method_id": shopper.card}))
            .send()
            .await;
        let accept = sent.elapsed();
        let (status, body) = match placed {
            Ok(response) => {
                let status = response.status().as_u16();
                (
                    status,
                    response.json::<Value>().await.unwrap_or(Value::Null),
                )
            }
            Err(error) => {
                let code = if error.is_timeout() {
                    "client_timeout"
                } else {
                    "connection_error"
                };
                *self.errors.lock().await.entry(code.to_owned()).or_default() += 1;
                self.progress.errors.fetch_add(1, Ordering::Relaxed);
                self.progress.done.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        if status != 201 {
            let code = body["code"]
                .as_str()
                .map_or_else(|| format!("http_{status}"), str::to_owned);
            *self.errors.lock().await.entry(code).or_default() += 1;
            self.progress.errors.fetch_add(1, Ordering::Relaxed);
            self.progress.done.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let id = body["id"].as_str().unwrap_or_default().to_owned();
        let accepted = Instant::now();
        let terminal = follow(
            &self.client,
            &self.base,
            &shopper.token,
            &id,
            Duration::from_secs(30),
        )
        .await;
        let settle = terminal.as_ref().map(|_| accepted.elapsed());
        self.results.lock().await.push(Placed {
            id,
            sent_at,
            accept,
            settle,
            status: terminal,
        });
        self.progress.done.fetch_add(1, Ordering::Relaxed);
    }
}

/// `kart bench checkout`.
pub async fn checkout(plan: CheckoutPlan, target: Option<String>) -> anyhow::Result<()> {
    let run = kit::new_id("r").trim_start_matches("r_")[..10].to_owned();
    let kart = Kart::start(plan.mode.clone(), target).await?;
    let base = kart.url.clone();
    let client = client(&base).await?;
    eprintln!(
        "Kart at {base} ({}){}",
        kart.describe(),
        kart.ready_ms
            .map(|ms| format!(", ready in {ms} ms"))
            .unwrap_or_default()
    );
    let admin = sign_in(&client, &base, &kart.admin_email, &kart.admin_password).await?;
    eprintln!("Setting up {} shoppers with a saved card…", plan.shoppers);
    let shoppers = make_shoppers(&client, &base, plan.shoppers, &run).await?;
    let stock_start = i64::try_from(plan.orders).unwrap_or(i64::MAX / 2) + 10;
    let sku = bench_product(&client, &base, &admin, &run, stock_start).await?;
    let before = kart.usage();

    let progress = Progress::new(plan.orders);
    let shared = Arc::new(Shared {
        client: client.clone(),
        base: base.clone(),
        sku: sku.clone(),
        shoppers,
        started: Instant::now(),
        results: Mutex::new(Vec::with_capacity(plan.orders)),
        errors: Mutex::new(BTreeMap::new()),
        progress: Arc::clone(&progress),
        next_shopper: AtomicUsize::new(0),
    });
    let drawing = progress.spawn("orders");
    let deadline = Instant::now() + Duration::from_secs(plan.max_secs);
    let issued = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    match plan.rate {
        None => {
            for _ in 0..plan.concurrency.max(1) {
                let (shared, issued) = (Arc::clone(&shared), Arc::clone(&issued));
                tasks.spawn(async move {
                    while issued.fetch_add(1, Ordering::Relaxed) < plan.orders
                        && Instant::now() < deadline
                    {
                        shared.one_order().await;
                    }
                });
            }
        }
        Some(rate) => {
            let interval = Duration::from_secs_f64(1.0 / rate.max(0.001));
            let in_flight = Arc::new(tokio::sync::Semaphore::new(plan.concurrency.max(1)));
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            while issued.fetch_add(1, Ordering::Relaxed) < plan.orders && Instant::now() < deadline
            {
                ticker.tick().await;
                let Ok(permit) = Arc::clone(&in_flight).acquire_owned().await else {
                    break;
                };
                let shared = Arc::clone(&shared);
                tasks.spawn(async move {
                    shared.one_order().await;
                    drop(permit);
                });
            }
        }
    }
    while tasks.join_next().await.is_some() {}
    let elapsed = shared.started.elapsed();
    progress.done.store(plan.orders, Ordering::Relaxed);
    let _ = drawing.await;
    progress.finish("orders");
    let after = kart.usage();

    let placed = std::mem::take(&mut *shared.results.lock().await);
    let errors = std::mem::take(&mut *shared.errors.lock().await);
    eprintln!("Checking every accepted order, every capture and the stock…");
    let promises = check_promises(&client, &base, &admin, &sku, stock_start, &placed).await?;
    let report = bench_report::checkout_report(
        &plan,
        &kart,
        &placed_rows(&placed),
        errors,
        elapsed,
        before,
        after,
        promises,
    );
    kart.stop().await;
    report.write(&plan.out)?;
    println!("{}", report.summary());
    println!("Report: {}", plan.out.display());
    if !report.promises_kept() {
        bail!("a promise was broken during the run (see the report)");
    }
    Ok(())
}

fn placed_rows(placed: &[Placed]) -> Vec<bench_report::OrderRow> {
    placed
        .iter()
        .map(|p| bench_report::OrderRow {
            sent_at: p.sent_at,
            accept: p.accept,
            settle: p.settle,
            status: p.status.clone(),
        })
        .collect()
}

/// What the end-of-run check found.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Promises {
    pub accepted: usize,
    pub terminal: usize,
    pub paid: usize,
    pub failed: usize,
    /// Orders whose capture was not exactly their total (paid) or zero (failed).
    pub wrong_captures: Vec<String>,
    /// Orders still not PAID or FAILED at the end.
    pub not_terminal: Vec<String>,
    pub stock_start: i64,
    pub stock_end_on_hand: i64,
    pub stock_end_reserved: i64,
    pub stock_adds_up: bool,
}

async fn check_promises(
    client: &reqwest::Client,
    base: &str,
    admin: &str,
    sku: &str,
    stock_start: i64,
    placed: &[Placed],
) -> anyhow::Result<Promises> {
    let mut promises = Promises {
        accepted: placed.len(),
        stock_start,
        ..Promises::default()
    };
    // Each order as the admin sees it, 16 at a time; a straggler gets 30 s.
    let deadline = Instant::now() + Duration::from_secs(30);
    let ids: Vec<String> = placed.iter().map(|p| p.id.clone()).collect();
    let checked = Arc::new(Mutex::new(Vec::new()));
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    let ids = Arc::new(ids);
    for _ in 0..16 {
        let (client, base, admin, ids, next, checked) = (
            client.clone(),
            base.to_owned(),
            admin.to_owned(),
            Arc::clone(&ids),
            Arc::clone(&next),
            Arc::clone(&checked),
        );
        workers.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(id) = ids.get(i) else { return };
                loop {
                    let order = client
                        .get(format!("{base}/api/v1/orders/{id}"))
                        .bearer_auth(&admin)
                        .send()
                        .await
                        .ok();
                    let order = match order {
                        Some(r) => r.json::<Value>().await.unwrap_or(Value::Null),
                        None => Value::Null,
                    };
                    let status = order["status"].as_str().unwrap_or_default().to_owned();
                    if matches!(status.as_str(), "PAID" | "FAILED" | "CANCELLED")
                        || Instant::now() > deadline
                    {
                        checked.lock().await.push((id.clone(), order));
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        });
    }
    while workers.join_next().await.is_some() {}
    let mut paid_units = 0_i64;
    for (id, order) in checked.lock().await.iter() {
        let status = order["status"].as_str().unwrap_or_default();
        let captured = order["captured"]["amount_minor"].as_i64().unwrap_or(-1);
        let total = order["total"]["amount_minor"].as_i64().unwrap_or(-2);
        match status {
            "PAID" => {
                promises.terminal += 1;
                promises.paid += 1;
                paid_units += 1;
                if captured != total {
                    promises.wrong_captures.push(id.clone());
                }
            }
            "FAILED" | "CANCELLED" => {
                promises.terminal += 1;
                promises.failed += 1;
                if captured != 0 && order["refunded"]["amount_minor"].as_i64() != Some(captured) {
                    promises.wrong_captures.push(id.clone());
                }
            }
            _ => promises.not_terminal.push(id.clone()),
        }
    }
    // Stock: committed a moment after PAID; give it a few seconds.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let level: Value = client
            .get(format!("{base}/api/v1/admin/stock/{sku}"))
            .bearer_auth(admin)
            .send()
            .await?
            .json()
            .await?;
        promises.stock_end_on_hand = level["on_hand"].as_i64().unwrap_or(-1);
        promises.stock_end_reserved = level["reserved"].as_i64().unwrap_or(-1);
        promises.stock_adds_up = promises.stock_end_on_hand == stock_start - paid_units
            && promises.stock_end_reserved == 0;
        if promises.stock_adds_up || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(promises)
}

/// `kart bench browse`.
pub async fn browse(plan: BrowsePlan, target: Option<String>) -> anyhow::Result<()> {
    let kart = Kart::start(plan.mode.clone(), target).await?;
    let base = kart.url.clone();
    let client = client(&base).await?;
    eprintln!("Kart at {base} ({})", kart.describe());
    let page: Value = client
        .get(format!("{base}/api/v1/products?limit=100"))
        .send()
        .await?
        .json()
        .await?;
    let products: Vec<(String, String)> = page["products"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|p| {
                    (
                        p["id"].as_str().unwrap_or_default().to_owned(),
                        p["name"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    if products.is_empty() {
        bail!("the catalog is empty: browse needs products (kart up adds the demo catalog)");
    }
    let words: Vec<String> = products
        .iter()
        .flat_map(|(_, name)| {
            name.split_whitespace()
                .map(|w| w.to_lowercase())
                .collect::<Vec<_>>()
        })
        .filter(|w| w.len() > 3)
        .collect();
    let before = kart.usage();
    let progress = Progress::new(plan.requests);
    let drawing = progress.spawn("requests");
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(plan.requests)));
    let errors = Arc::new(Mutex::new(BTreeMap::<String, u64>::new()));
    let issued = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(plan.max_secs);
    let products = Arc::new(products);
    let words = Arc::new(words);
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..plan.concurrency.max(1) {
        let (client, base, latencies, errors, issued, progress, products, words) = (
            client.clone(),
            base.clone(),
            Arc::clone(&latencies),
            Arc::clone(&errors),
            Arc::clone(&issued),
            Arc::clone(&progress),
            Arc::clone(&products),
            Arc::clone(&words),
        );
        let total = plan.requests as u64;
        tasks.spawn(async move {
            let mut mine = Vec::new();
            let mut n = worker;
            while issued.fetch_add(1, Ordering::Relaxed) < total && Instant::now() < deadline {
                n += 1;
                // The mix: half lists, three in ten searches, the rest product pages.
                let path = match n % 10 {
                    0..=4 => "/api/v1/products?limit=20".to_owned(),
                    5..=7 => format!(
                        "/api/v1/products/search?q={}",
                        words[n % words.len().max(1)]
                    ),
                    _ => format!("/api/v1/products/{}", products[n % products.len()].0),
                };
                let sent = Instant::now();
                match client.get(format!("{base}{path}")).send().await {
                    Ok(response) if response.status().is_success() => {
                        let _ = response.bytes().await;
                        mine.push((started.elapsed(), sent.elapsed()));
                    }
                    Ok(response) => {
                        *errors
                            .lock()
                            .await
                            .entry(format!("http_{}", response.status().as_u16()))
                            .or_default() += 1;
                        progress.errors.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        *errors
                            .lock()
                            .await
                            .entry("connection_error".to_owned())
                            .or_default() += 1;
                        progress.errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                progress.done.fetch_add(1, Ordering::Relaxed);
            }
            latencies.lock().await.extend(mine);
        });
    }
    while tasks.join_next().await.is_some() {}
    let elapsed = started.elapsed();
    progress.done.store(plan.requests, Ordering::Relaxed);
    let _ = drawing.await;
    progress.finish("requests");
    let after = kart.usage();
    let latencies = std::mem::take(&mut *latencies.lock().await);
    let errors = std::mem::take(&mut *errors.lock().await);
    let report: Report =
        bench_report::browse_report(&plan, &kart, latencies, errors, elapsed, before, after);
    kart.stop().await;
    report.write(&plan.out)?;
    println!("{}", report.summary());
    println!("Report: {}", plan.out.display());
    Ok(())
}

/// Where reports go by default: `bench-reports/<kind>-<time>`.
pub fn default_out(kind: &str) -> PathBuf {
    Path::new("bench-reports").join(format!(
        "{kind}-{}",
        chrono::Utc::now().format("%Y%m%d-%H%M%S")
    ))
}
