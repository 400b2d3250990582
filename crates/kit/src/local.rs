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
//! in the [`LocalServices`] of the process's services, under the address
//! it listens on, and a gRPC channel to that address
//! (`contracts::grpc::lazy_channel`, the one way channels are made, given
//! the same registry) hands its requests straight to the router instead.
//! Everything a request meets on the server stays the same: the middleware
//! (request id, trace context, metrics, timeout, body limit), the gRPC
//! codec, the handler. What it skips is the socket and HTTP/2.
//!
//! A service leaves the registry the moment it begins to stop; calls to its
//! address then take the network, and find nobody listening, as they
//! would across processes. A process that runs one service (`kart serve`)
//! has only that one in its registry, so distributed mode is unchanged.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::body::{Body, HttpBody};
use bytes::Bytes;
use tokio_util::task::TaskTracker;

/// The services running in one process, by the `host:port` each listens
/// on. Whoever starts services makes one and hands it to each
/// ([`crate::service::start`]); `kart up` and every test system have their
/// own, so two systems in one process never reach each other's services.
#[derive(Clone, Default)]
pub struct LocalServices {
    inner: Arc<Registry>,
}

#[derive(Default)]
struct Registry {
    services: RwLock<HashMap<String, LocalService>>,
    /// Tells registrations apart, so a late unregistration never removes a
    /// newer service that took the same port.
    next_registration: AtomicU64,
}

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

/// Keeps a service in its registry; dropping it takes the service out.
#[must_use = "the service leaves the registry when this is dropped"]
pub struct Registration {
    registry: Arc<Registry>,
    authority: String,
    registration: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut services = self
            .registry
            .services
            .write()
            .unwrap_or_else(|e| e.into_inner());
        if services
            .get(&self.authority)
            .is_some_and(|s| s.registration == self.registration)
        {
            services.remove(&self.authority);
        }
    }
}

impl LocalServices {
    /// Makes `router` reachable at `addr`, the address it listens on.
    pub fn register(&self, addr: SocketAddr, router: Router, tasks: TaskTracker) -> Registration {
        let authority = addr.to_string();
        let registration = self.inner.next_registration.fetch_add(1, Ordering::Relaxed);
        self.inner
            .services
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                authority.clone(),
                LocalService {
                    router,
                    tasks,
                    registration,
                },
            );
        Registration {
            registry: Arc::clone(&self.inner),
            authority,
            registration,
        }
    }

    /// The service listening at `authority` (`host:port`), if it is one of
    /// these.
    pub fn find(&self, authority: &str) -> Option<LocalService> {
        self.inner
            .services
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(authority)
            .cloned()
    }
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

    async fn ask(local: &LocalServices, authority: &str) -> Option<String> {
        let service = local.find(authority)?;
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
        let local = LocalServices::default();
        let addr: SocketAddr = "127.0.0.1:1".parse().expect("address");
        let registration = local.register(addr, router("first"), TaskTracker::new());
        assert_eq!(ask(&local, "127.0.0.1:1").await.as_deref(), Some("first"));
        assert_eq!(
            ask(&local, "127.0.0.1:2").await,
            None,
            "another port is not this service"
        );
        assert_eq!(
            ask(&LocalServices::default(), "127.0.0.1:1").await,
            None,
            "another system's registry does not see it"
        );
        drop(registration);
        assert_eq!(ask(&local, "127.0.0.1:1").await, None);
    }

    #[tokio::test]
    async fn a_stale_registration_does_not_remove_the_service_that_took_its_port() {
        let local = LocalServices::default();
        let addr: SocketAddr = "127.0.0.1:3".parse().expect("address");
        let old = local.register(addr, router("old"), TaskTracker::new());
        let new = local.register(addr, router("new"), TaskTracker::new());
        drop(old);
        assert_eq!(ask(&local, "127.0.0.1:3").await.as_deref(), Some("new"));
        drop(new);
        assert_eq!(ask(&local, "127.0.0.1:3").await, None);
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
        let local = LocalServices::default();
        let _registration = local.register(addr, panicking, TaskTracker::new());
        let service = local.find("127.0.0.1:4").expect("registered");
        let request = http::Request::get("/who")
            .body(Body::empty())
            .expect("request");
        assert!(service.call(request).await.is_err());
    }
}
