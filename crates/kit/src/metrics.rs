//! Prometheus metrics, one registry per service.
//!
//! A registry per service (not a global one) because `kart up` runs all
//! services in one process and each must report only its own figures on its
//! own `/metrics`.

use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// A service's metric registry; clone it freely.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Mutex<Registry>>,
    pub http: HttpMetrics,
    pub events: EventMetrics,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: String,
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub method: String,
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabels {
    pub topic: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConsumerLabels {
    pub group: String,
    pub topic: String,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupLabels {
    pub group: String,
}

#[derive(Clone)]
pub struct HttpMetrics {
    pub requests: Family<HttpLabels, Counter>,
    pub duration: Family<RouteLabels, Histogram>,
}

#[derive(Clone)]
pub struct EventMetrics {
    /// Events the outbox relay handed to the bus.
    pub published: Family<TopicLabels, Counter>,
    /// Events consumed, by outcome: `processed`, `duplicate`, `retried`, `dead_lettered`.
    pub consumed: Family<ConsumerLabels, Counter>,
    /// Events applied per consumer transaction: near 1 when idle, larger
    /// under load, when a consumer applies what has piled up at once.
    pub batch_size: Family<GroupLabels, Histogram>,
    /// Times a member moved its group to a fresh broker group after holding
    /// no partitions while the group's events waited and nobody applied them.
    pub group_moves: Family<GroupLabels, Counter>,
}

fn batch_histogram() -> Histogram {
    Histogram::new([1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0])
}

fn latency_histogram() -> Histogram {
    Histogram::new([
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    ])
}

impl Metrics {
    /// A registry whose metrics all carry `service="<name>"`.
    pub fn new(service: &str) -> Metrics {
        let mut registry = Registry::with_prefix_and_labels(
            "kart",
            [("service".into(), service.to_owned().into())].into_iter(),
        );
        let http = HttpMetrics {
            requests: Family::default(),
            duration: Family::new_with_constructor(latency_histogram),
        };
        registry.register(
            "http_requests",
            "HTTP requests answered",
            http.requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request",
            http.duration.clone(),
        );
        let events = EventMetrics {
            published: Family::default(),
            consumed: Family::default(),
            batch_size: Family::new_with_constructor(batch_histogram),
            group_moves: Family::default(),
        };
        registry.register(
            "events_published",
            "Events relayed from the outbox to the bus",
            events.published.clone(),
        );
        registry.register(
            "events_consumed",
            "Events consumed, by outcome",
            events.consumed.clone(),
        );
        registry.register(
            "consumer_batch_size",
            "Events applied per consumer transaction",
            events.batch_size.clone(),
        );
        registry.register(
            "consumer_group_moves",
            "Times a stuck consumer group was moved to a fresh broker group",
            events.group_moves.clone(),
        );
        Metrics {
            registry: Arc::new(Mutex::new(registry)),
            http,
            events,
        }
    }

    /// Lets a service add metrics of its own.
    pub fn register<M>(&self, name: &str, help: &str, metric: M)
    where
        M: prometheus_client::registry::Metric,
    {
        if let Ok(mut registry) = self.registry.lock() {
            registry.register(name, help, metric);
        }
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Ok(registry) = self.registry.lock() {
            // Writing into a String cannot fail.
            let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        }
        out
    }
}
