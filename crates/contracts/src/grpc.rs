//! Generated gRPC code, and trace context across gRPC calls.
//!
//! The caller puts its `traceparent` into the request metadata
//! ([`with_trace`]); the server reads it back ([`trace_of`]) and runs the
//! call in the same trace.

use kit::telemetry::TraceParent;
use tonic::metadata::MetadataValue;

pub mod users {
    pub mod v1 {
        tonic::include_proto!("kart.users.v1");
    }
}

pub mod catalog {
    pub mod v1 {
        tonic::include_proto!("kart.catalog.v1");
    }
}

pub mod inventory {
    pub mod v1 {
        tonic::include_proto!("kart.inventory.v1");
    }
}

pub mod payments {
    pub mod v1 {
        tonic::include_proto!("kart.payments.v1");
    }
}

pub mod orders {
    pub mod v1 {
        tonic::include_proto!("kart.orders.v1");
    }
}

pub mod notifications {
    pub mod v1 {
        tonic::include_proto!("kart.notifications.v1");
    }
}

pub mod analytics {
    pub mod v1 {
        tonic::include_proto!("kart.analytics.v1");
    }
}

/// Wraps `message` in a request that carries `trace` (as a child span).
pub fn with_trace<T>(message: T, trace: &TraceParent) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Ok(value) = MetadataValue::try_from(trace.child().to_string()) {
        request.metadata_mut().insert("traceparent", value);
    }
    request
}

/// A channel to another service at `url` that connects on first use and
/// reconnects on its own, so a service starts before (and survives
/// restarts of) the services it calls. `setting` names the configuration
/// key in the error for a malformed URL.
pub fn lazy_channel(
    url: &str,
    timeout: std::time::Duration,
    setting: &str,
) -> Result<tonic::transport::Channel, String> {
    let endpoint = tonic::transport::Endpoint::from_shared(url.to_owned())
        .map_err(|e| format!("{setting} `{url}`: {e}"))?
        .connect_timeout(std::time::Duration::from_secs(2))
        .timeout(timeout)
        .tcp_nodelay(true);
    Ok(endpoint.connect_lazy())
}

/// The trace a request arrived in, or a new one.
pub fn trace_of<T>(request: &tonic::Request<T>) -> TraceParent {
    request
        .metadata()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(TraceParent::parse)
        .map(|t| t.child())
        .unwrap_or_else(TraceParent::new_root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_context_crosses_grpc_metadata() {
        let trace = TraceParent::new_root();
        let request = with_trace(catalog::v1::GetProductsRequest { skus: vec![] }, &trace);
        let received = trace_of(&request);
        assert_eq!(received.trace_id(), trace.trace_id());
        assert_ne!(received.span_id(), trace.span_id());
    }

    #[test]
    fn a_request_without_trace_starts_one() {
        let request = tonic::Request::new(catalog::v1::GetProductsRequest { skus: vec![] });
        assert_eq!(trace_of(&request).trace_id().len(), 32);
    }
}
