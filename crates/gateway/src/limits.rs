//! Rate limits per client IP and per signed-in user: token buckets that
//! refill at a steady rate and allow a burst. Over the limit, a 429 says
//! when to come back (`Retry-After`).
//!
//! Buckets live in this gateway's memory, so with N replicas a client gets
//! up to N times the limit: enough to stop a runaway client, which is the
//! point; a shared store would make every request pay a network hop.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use kit::problem::Problem;

use crate::AppState;

struct Bucket {
    tokens: f64,
    refilled: Instant,
}

pub struct RateLimiter {
    per_sec: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

/// Above this many tracked clients, idle (full) buckets are dropped.
const MAX_TRACKED: usize = 50_000;

impl RateLimiter {
    /// `None` when `per_sec` is 0: no limit.
    pub fn new(per_sec: u32, burst: u32) -> Option<RateLimiter> {
        (per_sec > 0).then(|| RateLimiter {
            per_sec: f64::from(per_sec),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        })
    }

    /// Takes one token for `key`, or says how long until one is there.
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_TRACKED {
            let full_after = self.burst / self.per_sec;
            buckets.retain(|_, b| now.duration_since(b.refilled).as_secs_f64() < full_after);
        }
        let bucket = buckets.entry(key.to_owned()).or_insert(Bucket {
            tokens: self.burst,
            refilled: now,
        });
        let elapsed = now.duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.per_sec).min(self.burst);
        bucket.refilled = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - bucket.tokens) / self.per_sec,
            ))
        }
    }
}

/// 429 with `Retry-After` in whole seconds (at least 1).
pub fn too_many_requests(wait: Duration) -> Response {
    let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
    let mut response = Problem::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        format!("Too many requests. Try again in {seconds} s."),
    )
    .into_response();
    if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

/// The client's address: the peer, or with `trust_forwarded_for` the first
/// `X-Forwarded-For` entry a trusted proxy put there.
pub fn client_ip(headers: &HeaderMap, peer: IpAddr, trust_forwarded_for: bool) -> IpAddr {
    if trust_forwarded_for
        && let Some(ip) = headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.trim().parse().ok())
    {
        return ip;
    }
    peer
}

/// The per-IP limit, in front of every API route.
pub async fn limit_by_ip(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(limiter) = &state.ip_limit {
        let ip = client_ip(
            request.headers(),
            peer.ip(),
            state.gateway.trust_forwarded_for,
        );
        if let Err(wait) = limiter.check(&ip.to_string()) {
            return too_many_requests(wait);
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_allowed_then_the_steady_rate() {
        let limiter = RateLimiter::new(1, 3).unwrap();
        for _ in 0..3 {
            assert!(limiter.check("a").is_ok());
        }
        let wait = limiter.check("a").unwrap_err();
        assert!(wait > Duration::from_millis(900) && wait <= Duration::from_secs(1));
        assert!(limiter.check("b").is_ok(), "buckets are per key");
    }

    #[test]
    fn zero_means_no_limit() {
        assert!(RateLimiter::new(0, 10).is_none());
    }

    #[test]
    fn forwarded_for_is_used_only_when_trusted() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            HeaderValue::from_static("203.0.113.7, 10.0.0.1"),
        );
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(client_ip(&headers, peer, false), peer);
        assert_eq!(
            client_ip(&headers, peer, true),
            "203.0.113.7".parse::<IpAddr>().unwrap()
        );
    }
}
