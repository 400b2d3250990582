//! Public catalog answers, kept by the gateway as the JSON it sent.
//!
//! Browsing is most of a shop's traffic: the same first page, the same
//! popular searches and product pages are asked for again and again, while
//! products change a few times a day. Without a cache every one of those
//! requests crosses gRPC to the catalog and its database or search index;
//! with it, a repeated request is answered from memory by the gateway.
//!
//! What is kept: the body of a successful `GET /api/v1/products`,
//! `/api/v1/products/search` or `/api/v1/products/{id}`, keyed by the
//! request as the catalog would have received it (after the gateway checked
//! it), so `?limit=20` and `?limit=020` share an entry. Problems are never
//! kept. Admin routes never use the cache: they see archived products.
//!
//! How it stays fresh:
//! - an admin write through this gateway drops every entry as soon as the
//!   catalog has answered, so an admin sees their own change at once;
//! - every event on `product.events` drops every entry, so every replica
//!   follows a change made anywhere within the bus's delivery time (and
//!   again a second later: the search index may trail the event);
//! - no entry is served older than `gateway.catalog_cache_ttl_ms`, which
//!   bounds how stale an answer can be should the bus be unreachable or
//!   the catalog's search index lag its database.
//!
//! A fetch that started before a drop is not stored once it returns (each
//! drop starts a new generation), so a slow answer never undoes a drop.
//! The cache holds at most `gateway.catalog_cache_max_bytes` of keys and
//! bodies;
//! when full, expired entries go first and, if that is not enough, the new
//! answer is simply not kept.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use contracts::topics;
use kit::SharedBus;
use kit::metrics::Metrics;
use kit::problem::Problem;
use prometheus_client::metrics::counter::Counter;
use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How long after a product event the catalog's search index may still
/// lack the change: the catalog indexes a product just after the commit
/// that outboxed its event, and its relay may publish the event first. A
/// drop is repeated this long after each event, so a search answered in
/// between is not kept for the whole time to live.
const SEARCH_INDEX_LAG: Duration = Duration::from_secs(1);

/// The catalog answers one gateway keeps; share it behind an `Arc`.
pub struct CatalogCache {
    ttl: Duration,
    max_bytes: usize,
    entries: RwLock<Entries>,
    /// Fetches under way, by key. A request that misses while another one
    /// fetches the same answer waits for it instead of asking the catalog
    /// too: when a popular page expires, every client asking for it would
    /// otherwise miss at once (a browse run at 64 clients counted 4 %
    /// misses, nearly all of them such pile-ups, each a full catalog call).
    fetching: Mutex<HashMap<String, watch::Receiver<()>>>,
    hits: Counter,
    misses: Counter,
}

/// Whose turn it is to ask the catalog for an answer that is not kept.
enum Turn<'a> {
    /// This request's: the others wait until `Fetching` is dropped.
    Fetch(Fetching<'a>),
    /// Another request's, which ends when this receiver's sender is gone.
    Wait(watch::Receiver<()>),
}

/// A fetch under way; dropping it (done, failed or cancelled) wakes the
/// requests waiting for it.
struct Fetching<'a> {
    cache: &'a CatalogCache,
    key: String,
    receiver: watch::Receiver<()>,
    _done: watch::Sender<()>,
}

impl Drop for Fetching<'_> {
    fn drop(&mut self) {
        if let Ok(mut fetching) = self.cache.fetching.lock()
            && fetching
                .get(&self.key)
                .is_some_and(|r| r.same_channel(&self.receiver))
        {
            fetching.remove(&self.key);
        }
        // `_done` is dropped after this, which wakes the waiters.
    }
}

#[derive(Default)]
struct Entries {
    /// Moves on every drop; an answer fetched in an older one is not kept.
    generation: u64,
    by_key: HashMap<String, Entry>,
    bytes: usize,
}

struct Entry {
    body: Bytes,
    stored_at: Instant,
}

impl CatalogCache {
    /// A cache whose entries live `ttl` (zero turns caching off) and whose
    /// bodies take at most `max_bytes`, counting hits and misses in
    /// `metrics`.
    pub fn new(ttl: Duration, max_bytes: usize, metrics: &Metrics) -> CatalogCache {
        let cache = CatalogCache {
            ttl,
            max_bytes,
            entries: RwLock::new(Entries::default()),
            fetching: Mutex::new(HashMap::new()),
            hits: Counter::default(),
            misses: Counter::default(),
        };
        metrics.register(
            "gateway_catalog_cache_hits",
            "Public catalog requests answered from the gateway's cache",
            cache.hits.clone(),
        );
        metrics.register(
            "gateway_catalog_cache_misses",
            "Public catalog requests the gateway had to ask the catalog for",
            cache.misses.clone(),
        );
        cache
    }

    fn enabled(&self) -> bool {
        !self.ttl.is_zero()
    }

    /// The body kept for `key`, if it is younger than the time to live.
    fn get(&self, key: &str) -> Option<Bytes> {
        let entries = self.entries.read().ok()?;
        let entry = entries.by_key.get(key)?;
        (entry.stored_at.elapsed() < self.ttl).then(|| entry.body.clone())
    }

    /// Claims the fetch of `key`, or the fetch already under way.
    fn turn(&self, key: &str) -> Option<Turn<'_>> {
        let mut fetching = self.fetching.lock().ok()?;
        if let Some(receiver) = fetching.get(key) {
            return Some(Turn::Wait(receiver.clone()));
        }
        let (done, receiver) = watch::channel(());
        fetching.insert(key.to_owned(), receiver.clone());
        Some(Turn::Fetch(Fetching {
            cache: self,
            key: key.to_owned(),
            receiver,
            _done: done,
        }))
    }

    fn generation(&self) -> u64 {
        self.entries
            .read()
            .map(|e| e.generation)
            .unwrap_or(u64::MAX)
    }

    /// Keeps `body` for `key` unless a drop happened since `generation` was
    /// read, or it does not fit.
    fn put(&self, key: String, generation: u64, body: Bytes) {
        let Ok(mut entries) = self.entries.write() else {
            return;
        };
        let size = key.len() + body.len();
        if entries.generation != generation || size > self.max_bytes {
            return;
        }
        if let Some(old) = entries.by_key.remove(&key) {
            entries.bytes -= key.len() + old.body.len();
        }
        if entries.bytes + size > self.max_bytes {
            let ttl = self.ttl;
            let mut freed = 0;
            entries.by_key.retain(|kept_key, entry| {
                let fresh = entry.stored_at.elapsed() < ttl;
                if !fresh {
                    freed += kept_key.len() + entry.body.len();
                }
                fresh
            });
            entries.bytes -= freed;
            if entries.bytes + size > self.max_bytes {
                return;
            }
        }
        entries.bytes += size;
        entries.by_key.insert(
            key,
            Entry {
                body,
                stored_at: Instant::now(),
            },
        );
    }

    /// Drops every entry: a product changed.
    pub fn invalidate(&self) {
        if let Ok(mut entries) = self.entries.write() {
            entries.generation = entries.generation.wrapping_add(1);
            entries.by_key.clear();
            entries.bytes = 0;
        }
    }

    /// The JSON answer for `key`: kept, or fetched by `fetch` and kept.
    pub async fn answer<T, F>(&self, key: String, fetch: F) -> Result<Response, Problem>
    where
        T: Serialize,
        F: Future<Output = Result<T, Problem>>,
    {
        if !self.enabled() {
            return Ok(axum::Json(fetch.await?).into_response());
        }
        if let Some(body) = self.get(&key) {
            self.hits.inc();
            return Ok(json_response(body));
        }
        // Held until the answer is kept (or not), then dropped.
        let _fetching = match self.turn(&key) {
            Some(Turn::Wait(mut receiver)) => {
                // Wait once: should that fetch fail or be cancelled, ask
                // the catalog ourselves rather than queue again.
                let _ = receiver.changed().await;
                if let Some(body) = self.get(&key) {
                    self.hits.inc();
                    return Ok(json_response(body));
                }
                None
            }
            Some(Turn::Fetch(fetching)) => Some(fetching),
            None => None,
        };
        self.misses.inc();
        let generation = self.generation();
        let answer = fetch.await?;
        let body =
            Bytes::from(serde_json::to_vec(&answer).map_err(|error| Problem::internal(&error))?);
        self.put(key, generation, body.clone());
        Ok(json_response(body))
    }

    /// Drops every entry whenever a product event arrives, until shutdown.
    /// Each gateway reads in a consumer group of its own: every replica
    /// must hear of every change.
    pub async fn follow(self: Arc<Self>, bus: SharedBus, shutdown: CancellationToken) {
        if !self.enabled() {
            return;
        }
        let topics = [topics::PRODUCT_EVENTS.to_owned()];
        let Some(mut subscription) =
            crate::subscribe_in_own_group(&bus, "gateway-catalog-cache", &topics, &shutdown).await
        else {
            return;
        };
        let mut backoff =
            kit::outbox::Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let mut drop_again_at: Option<tokio::time::Instant> = None;
        loop {
            let drop_again = async {
                match drop_again_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = drop_again => {
                    drop_again_at = None;
                    self.invalidate();
                }
                next = subscription.next() => match next {
                    Ok(_) => {
                        self.invalidate();
                        drop_again_at = Some(tokio::time::Instant::now() + SEARCH_INDEX_LAG);
                    }
                    Err(error) => {
                        tracing::debug!(%error, "catalog cache cannot read product events; retrying");
                        kit::outbox::sleep_or_cancel(backoff.next_delay(), &shutdown).await;
                    }
                },
            }
        }
    }
}

fn json_response(body: Bytes) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_cache(ttl: Duration, max_bytes: usize) -> CatalogCache {
        CatalogCache::new(ttl, max_bytes, &Metrics::new("gateway"))
    }

    async fn body_of(response: Response) -> String {
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("a body");
        String::from_utf8(bytes.to_vec()).expect("utf-8")
    }

    #[tokio::test]
    async fn a_repeated_request_is_answered_without_asking_the_catalog() {
        let cache = new_cache(Duration::from_secs(60), 1 << 20);
        let first = cache.answer("k".into(), async { Ok(vec![1]) }).await;
        let second = cache
            .answer("k".into(), async {
                Err::<Vec<i32>, _>(Problem::internal(&"the catalog was asked again"))
            })
            .await;
        assert_eq!(body_of(first.expect("first")).await, "[1]");
        assert_eq!(body_of(second.expect("kept")).await, "[1]");
        assert_eq!((cache.hits.get(), cache.misses.get()), (1, 1));
    }

    #[tokio::test]
    async fn a_drop_or_the_time_to_live_makes_the_next_request_ask_again() {
        let cache = new_cache(Duration::from_secs(60), 1 << 20);
        let _ = cache.answer("k".into(), async { Ok(1) }).await;
        cache.invalidate();
        let after_drop = cache.answer("k".into(), async { Ok(2) }).await;
        assert_eq!(body_of(after_drop.expect("answer")).await, "2");

        let short = new_cache(Duration::from_millis(20), 1 << 20);
        let _ = short.answer("k".into(), async { Ok(1) }).await;
        tokio::time::sleep(Duration::from_millis(40)).await;
        let expired = short.answer("k".into(), async { Ok(2) }).await;
        assert_eq!(body_of(expired.expect("answer")).await, "2");
    }

    #[tokio::test]
    async fn an_answer_fetched_across_a_drop_is_not_kept() {
        let cache = new_cache(Duration::from_secs(60), 1 << 20);
        let stale = cache
            .answer("k".into(), async {
                cache.invalidate();
                Ok("before the change")
            })
            .await;
        assert_eq!(
            body_of(stale.expect("answer")).await,
            "\"before the change\""
        );
        let fresh = cache
            .answer("k".into(), async { Ok("after the change") })
            .await;
        assert_eq!(
            body_of(fresh.expect("answer")).await,
            "\"after the change\""
        );
    }

    #[tokio::test]
    async fn problems_are_not_kept_and_the_size_bound_holds() {
        let cache = new_cache(Duration::from_secs(60), 10);
        let problem = cache
            .answer("k".into(), async {
                Err::<i32, _>(Problem::not_found("No such product."))
            })
            .await;
        assert!(problem.is_err());
        let _ = cache.answer("k".into(), async { Ok(1) }).await;
        assert_eq!(cache.get("k").as_deref(), Some(&b"1"[..]));

        // Key and body take 17 bytes: over the bound, answered, not kept.
        let big = cache
            .answer("big".into(), async { Ok("twelve bytes") })
            .await;
        assert_eq!(body_of(big.expect("answer")).await, "\"twelve bytes\"");
        assert!(cache.get("big").is_none());
        let held = cache.entries.read().expect("lock").bytes;
        assert!(held <= 10, "{held} bytes held against a bound of 10");
    }

    #[tokio::test]
    async fn requests_that_miss_together_ask_the_catalog_once() {
        let cache = new_cache(Duration::from_secs(60), 1 << 20);
        let asked = std::sync::atomic::AtomicU32::new(0);
        let fetch = || async {
            asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok("page")
        };
        let answers =
            futures_util::future::join_all((0..8).map(|_| cache.answer("k".into(), fetch()))).await;
        for answer in answers {
            assert_eq!(body_of(answer.expect("answer")).await, "\"page\"");
        }
        assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!((cache.hits.get(), cache.misses.get()), (7, 1));
        assert!(cache.fetching.lock().expect("lock").is_empty());
    }

    #[tokio::test]
    async fn when_the_fetch_fails_the_waiting_requests_ask_themselves() {
        let cache = new_cache(Duration::from_secs(60), 1 << 20);
        let failing = cache.answer("k".into(), async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Err::<&str, _>(Problem::unavailable("The catalog is down."))
        });
        let waiting = async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            cache.answer("k".into(), async { Ok("page") }).await
        };
        let (failed, waited) = tokio::join!(failing, waiting);
        assert!(failed.is_err());
        assert_eq!(body_of(waited.expect("answer")).await, "\"page\"");
        assert_eq!(cache.misses.get(), 2);
    }

    #[tokio::test]
    async fn a_zero_time_to_live_turns_the_cache_off() {
        let cache = new_cache(Duration::ZERO, 1 << 20);
        let _ = cache.answer("k".into(), async { Ok(1) }).await;
        let second = cache.answer("k".into(), async { Ok(2) }).await;
        assert_eq!(body_of(second.expect("answer")).await, "2");
        assert_eq!((cache.hits.get(), cache.misses.get()), (0, 0));
    }
}
