//! Calls between services that share a process skip the network.
//!
//! In `kart up` all eight services run in one process and still call each
//! other over gRPC (the gateway the services behind it, orders the catalog
//! and users, payments users): the same code as when each runs alone, which
//! is why they talk gRPC at all. Over loopback TCP every call pays for
//! HTTP/2 framing, four socket system calls and the wake-ups of two
//! connection tasks per side; an order makes about seven such calls.
//!
//! So [`crate::service::start`] registers each service's finished router
//! under the address it listens on, and a gRPC channel to that address
//! (`contracts::grpc::lazy_channel`, the one way channels are made) hands
//! its requests straight to the router instead. Everything a request meets
//! on the server stays the same: the middleware (request id, trace context,
//! metrics, timeout, body limit), the gRPC codec, the handler. What it
//! skips is the socket and HTTP/2.
//!
//! A service leaves the registry the moment it begins to stop; calls to its
//! address then take the network, and find nobody listening, as they
//! would across processes. Services in other processes are never
//! registered here, so distributed mode is unchanged.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, RwLock};

use axum::Router;
use axum::body::{Body, HttpBody};
use bytes::Bytes;
use tokio_util::task::TaskTracker;

/// Routers of the services in this process, by the `host:port` they
/// listen on.
static SERVICES: LazyLock<RwLock<HashMap<String, LocalService>>> = LazyLock::new(Default::default);

/// Tells registrations apart, so a late unregistration never removes a
/// newer service that took the same port.
static REGISTRATIONS: AtomicU64 = AtomicU64::new(0);

/// A service reachable in this process.
#[derive(Clone)]
pub struct LocalService {
    router: Router,
    /// The service's own tasks: a call runs as one of them, so the service
    /// counts as stopped only once the calls it took have finished, as
    /// with a connection it accepted.
    tasks: TaskTracker,
    registration: u64,
}

/// Keeps a service in the registry; dropping it takes the service out.
#[must_use = "the service leaves the registry when this is dropped"]
pub struct Registration {
    authority: String,
    registration: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut services = SERVICES.write().unwrap_or_else(|e| e.into_inner());
        if services
            .get(&self.authority)
            .is_some_and(|s| s.registration == self.registration)
        {
            services.remove(&self.authority);
        }
    }
}

/// Makes `router` reachable in this process at `addr`, the address it
/// listens on.
pub fn register(addr: SocketAddr, router: Router, tasks: TaskTracker) -> Registration {
    let authority = addr.to_string();
    let registration = REGISTRATIONS.fetch_add(1, Ordering::Relaxed);
    SERVICES.write().unwrap_or_else(|e| e.into_inner()).insert(
        authority.clone(),
        LocalService {
            router,
            tasks,
            registration,
        },
    );
    Registration {
        authority,
        registration,
    }
}

/// The service listening at `authority` (`host:port`), if it is in this
/// process.
pub fn find(authority: &str) -> Option<LocalService> {
    SERVICES
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .get(authority)
        .cloned()
}

/// Why a call in this process has no response: the handler panicked (over
/// a connection the client would see the connection drop).
#[derive(Debug, thiserror::Error)]
#[error("the service's handler ended without a response")]
pub struct LocalCallFailed;

impl LocalService {
    /// Serves `request` as the service would serve it from a connection.
    ///
    /// The request runs in a task of its own, as a request on a connection
    /// does: outside the caller's log span (the server names its own), and
    /// a handler that panics fails this call, not the caller.
    pub async fn call<B>(
        self,
        request: http::Request<B>,
    ) -> Result<http::Response<Body>, LocalCallFailed>
    where
        B: HttpBody<Data = Bytes> + Send + 'static,
        B::Error: Into<axum::BoxError>,
    {
        let LocalService { router, tasks, .. } = self;
        let request = request.map(Body::new);
        let served = tasks.spawn(async move {
            use tower::ServiceExt;
            match router.oneshot(request).await {
                Ok(response) => response,
                Err(never) => match never {},
            }
        });
        served.await.map_err(|_| LocalCallFailed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;

    fn router(answer: &'static str) -> Router {
        Router::new().route("/who", get(move || async move { answer }))
    }

    async fn ask(authority: &str) -> Option<String> {
        let service = find(authority)?;
        let request = http::Request::get("/who")
            .body(Body::empty())
            .expect("request");
        let response = service.call(request).await.expect("answered");
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .expect("body");
        Some(String::from_utf8(body.to_vec()).expect("text"))
    }

    #[tokio::test]
    async fn a_registered_router_answers_until_its_registration_is_dropped() {
        let addr: SocketAddr = "127.0.0.1:1".parse().expect("address");
        let registration = register(addr, router("first"), TaskTracker::new());
        assert_eq!(ask("127.0.0.1:1").await.as_deref(), Some("first"));
        assert_eq!(
            ask("127.0.0.1:2").await,
            None,
            "another port is not this service"
        );
        drop(registration);
        assert_eq!(ask("127.0.0.1:1").await, None);
    }

    #[tokio::test]
    async fn a_stale_registration_does_not_remove_the_service_that_took_its_port() {
        let addr: SocketAddr = "127.0.0.1:3".parse().expect("address");
        let old = register(addr, router("old"), TaskTracker::new());
        let new = register(addr, router("new"), TaskTracker::new());
        drop(old);
        assert_eq!(ask("127.0.0.1:3").await.as_deref(), Some("new"));
        drop(new);
        assert_eq!(ask("127.0.0.1:3").await, None);
    }

    #[tokio::test]
    async fn a_panicking_handler_fails_the_call_not_the_caller() {
        let addr: SocketAddr = "127.0.0.1:4".parse().expect("address");
        let panicking = Router::new().route(
            "/who",
            get(|| async {
                panic!("handler bug");
                #[allow(unreachable_code)]
                ""
            }),
        );
        let _registration = register(addr, panicking, TaskTracker::new());
        let service = find("127.0.0.1:4").expect("registered");
        let request = http::Request::get("/who")
            .body(Body::empty())
            .expect("request");
        assert!(service.call(request).await.is_err());
    }
}
