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
///
/// When the service at `url` is one of `local`, the services in this
/// process (`kart up`), calls skip the network: see [`GrpcChannel`]. A
/// client of a Kart elsewhere passes an empty `LocalServices`.
pub fn lazy_channel(
    url: &str,
    timeout: std::time::Duration,
    setting: &str,
    local: &kit::local::LocalServices,
) -> Result<GrpcChannel, String> {
    let endpoint = tonic::transport::Endpoint::from_shared(url.to_owned())
        .map_err(|e| format!("{setting} `{url}`: {e}"))?
        .connect_timeout(std::time::Duration::from_secs(2))
        .timeout(timeout)
        .tcp_nodelay(true);
    let authority = endpoint
        .uri()
        .authority()
        .map(|a| a.as_str().to_owned())
        .unwrap_or_default();
    Ok(GrpcChannel {
        authority: authority.into(),
        network: endpoint.connect_lazy(),
        timeout,
        local: local.clone(),
        ready_in_process: None,
    })
}

/// What every gRPC client in Kart calls through: a lazily connecting
/// [`tonic::transport::Channel`], except while the service at its address
/// runs in this process, when each call goes straight to that service's
/// router ([`kit::local`]) with the same timeout. Which of the two a call
/// takes is decided per call, so a channel made before the service started
/// (or after it stopped) still finds the right path.
pub struct GrpcChannel {
    /// The `host:port` of the service, as it registers in this process.
    authority: std::sync::Arc<str>,
    network: tonic::transport::Channel,
    timeout: std::time::Duration,
    local: kit::local::LocalServices,
    /// Chosen by `poll_ready` for the `call` that follows it.
    ready_in_process: Option<kit::local::LocalService>,
}

impl Clone for GrpcChannel {
    /// A clone has not been made ready (tower's contract for `call`).
    fn clone(&self) -> Self {
        GrpcChannel {
            authority: std::sync::Arc::clone(&self.authority),
            network: self.network.clone(),
            timeout: self.timeout,
            local: self.local.clone(),
            ready_in_process: None,
        }
    }
}

impl std::fmt::Debug for GrpcChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcChannel")
            .field("authority", &self.authority)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl tonic::codegen::Service<tonic::codegen::http::Request<tonic::body::Body>> for GrpcChannel {
    type Response = tonic::codegen::http::Response<tonic::body::Body>;
    type Error = tonic::codegen::StdError;
    type Future = tonic::codegen::BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        if self.ready_in_process.is_none() {
            self.ready_in_process = self.local.find(&self.authority);
        }
        if self.ready_in_process.is_some() {
            return std::task::Poll::Ready(Ok(()));
        }
        self.network.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: tonic::codegen::http::Request<tonic::body::Body>) -> Self::Future {
        match self.ready_in_process.take() {
            Some(service) => {
                let timeout = self.timeout;
                Box::pin(async move {
                    match tokio::time::timeout(timeout, service.call(request)).await {
                        Ok(Ok(response)) => Ok(response.map(tonic::body::Body::new)),
                        Ok(Err(failed)) => Err(failed.into()),
                        // What the network channel's timeout answers.
                        Err(_) => Err(tonic::TimeoutExpired(()).into()),
                    }
                })
            }
            None => {
                let response = self.network.call(request);
                Box::pin(async move { response.await.map_err(Into::into) })
            }
        }
    }
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

    /// A loopback address nobody listens on: only the in-process path can
    /// answer a call to it.
    fn silent_address() -> std::net::SocketAddr {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binds");
        listener.local_addr().expect("address")
    }

    fn health_check() -> tonic_health::pb::HealthCheckRequest {
        tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        }
    }

    #[tokio::test]
    async fn a_service_in_this_process_is_called_without_the_network() {
        use tonic_health::pb::health_check_response::ServingStatus;
        use tonic_health::pb::health_client::HealthClient;

        let addr = silent_address();
        let (_reporter, health) = tonic_health::server::health_reporter();
        let router = tonic::service::Routes::new(health).into_axum_router();
        let local = kit::local::LocalServices::default();
        let registration = local.register(addr, router, tokio_util::task::TaskTracker::new());
        let channel = lazy_channel(
            &format!("http://{addr}"),
            std::time::Duration::from_secs(5),
            "test",
            &local,
        )
        .expect("channel");
        let mut client = HealthClient::new(channel);

        let answer = client
            .check(health_check())
            .await
            .expect("the service in this process answers");
        assert_eq!(answer.into_inner().status(), ServingStatus::Serving);

        drop(registration);
        let status = client
            .check(health_check())
            .await
            .expect_err("once it has left, the call takes the network and finds nobody");
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    }

    #[tokio::test]
    async fn a_call_in_this_process_times_out_like_one_over_the_network() {
        use tonic_health::pb::health_client::HealthClient;

        let addr = silent_address();
        let local = kit::local::LocalServices::default();
        let slow = local.register(
            addr,
            axum_router_that_never_answers(),
            tokio_util::task::TaskTracker::new(),
        );
        let channel = lazy_channel(
            &format!("http://{addr}"),
            std::time::Duration::from_millis(100),
            "test",
            &local,
        )
        .expect("channel");
        let status = HealthClient::new(channel)
            .check(health_check())
            .await
            .expect_err("the call times out");
        // What tonic's channel answers when its timeout fires.
        assert_eq!(status.code(), tonic::Code::Cancelled, "{status:?}");
        drop(slow);
    }

    /// A gRPC health service whose check never returns.
    fn axum_router_that_never_answers() -> axum::Router {
        struct Stalled;
        #[tonic::async_trait]
        impl tonic_health::pb::health_server::Health for Stalled {
            async fn check(
                &self,
                _: tonic::Request<tonic_health::pb::HealthCheckRequest>,
            ) -> Result<tonic::Response<tonic_health::pb::HealthCheckResponse>, tonic::Status>
            {
                std::future::pending().await
            }
            type WatchStream = futures_util::stream::Empty<
                Result<tonic_health::pb::HealthCheckResponse, tonic::Status>,
            >;
            async fn watch(
                &self,
                _: tonic::Request<tonic_health::pb::HealthCheckRequest>,
            ) -> Result<tonic::Response<Self::WatchStream>, tonic::Status> {
                Err(tonic::Status::unimplemented("not in this test"))
            }
        }
        tonic::service::Routes::new(tonic_health::pb::health_server::HealthServer::new(Stalled))
            .into_axum_router()
    }
}
