//! Span export over OTLP/HTTP, against a collector stand-in on loopback
//! that records what it is sent. Its own test binary: the subscriber it
//! installs is process-wide.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use bytes::Bytes;
use kit::config::{LogFormat, TelemetrySettings};
use kit::telemetry::{TraceParent, adopt_trace};

type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

async fn collect(State(received): State<Received>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    received.lock().unwrap().push((content_type, body.to_vec()));
    StatusCode::OK
}

#[test]
fn spans_are_exported_to_the_configured_otlp_collector_in_the_callers_trace() {
    let received: Received = Arc::default();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new()
        .route("/v1/traces", post(collect))
        .with_state(Arc::clone(&received));
    runtime.spawn(async move { axum::serve(listener, app).await });

    let settings = TelemetrySettings {
        log_level: "info".into(),
        log_format: LogFormat::Json,
        otlp_endpoint: Some(format!("http://{addr}/")),
    };
    let guard = kit::telemetry::init(&settings, "kart-otlp-test").unwrap();
    let parent =
        TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
    {
        let span = tracing::info_span!("checkout_step", order_id = "ord_otlp");
        adopt_trace(&span, &parent);
        span.in_scope(|| tracing::info!("inside the span"));
    }
    // Dropping the guard flushes the batch.
    drop(guard);

    let bodies = received.lock().unwrap();
    assert!(!bodies.is_empty(), "the collector was sent nothing");
    let trace_id: Vec<u8> = (0..16)
        .map(|i| {
            u8::from_str_radix(&"4bf92f3577b34da6a3ce929d0e0e4736"[i * 2..i * 2 + 2], 16).unwrap()
        })
        .collect();
    let contains = |needle: &[u8]| {
        bodies
            .iter()
            .any(|(_, body)| body.windows(needle.len()).any(|w| w == needle))
    };
    assert!(
        bodies.iter().all(|(ct, _)| ct == "application/x-protobuf"),
        "OTLP/HTTP protobuf"
    );
    assert!(contains(&trace_id), "the span kept the caller's trace id");
    assert!(contains(b"checkout_step"), "the span's name");
    assert!(contains(b"kart-otlp-test"), "the service name");
    drop(bodies);
    drop(runtime);
}
