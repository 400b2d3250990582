//! The gateway: Kart's one public door.
//!
//! It keeps nothing durable and so scales by adding replicas. It serves the
//! public REST API under `/api/v1` and, for now, the system status: every
//! service behind it and whether it is ready. The API routes, the web pages
//! and live order status arrive with the issues that build them.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect};
use axum::routing::get;
use kit::migrate::Migration;
use kit::{Service, ServiceContext, ServiceParts};
use serde::Serialize;

/// A service the gateway forwards to, and where it lives.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub name: String,
    pub url: String,
}

/// The gateway service. `upstreams` are the services behind it.
#[derive(Debug, Default, Clone)]
pub struct Gateway {
    pub upstreams: Vec<Upstream>,
}

#[async_trait]
impl Service for Gateway {
    fn name(&self) -> &'static str {
        "gateway"
    }

    fn default_port(&self) -> u16 {
        8080
    }

    fn migrations(&self) -> Option<&'static [Migration]> {
        None
    }

    async fn build(&self, _context: &ServiceContext) -> anyhow::Result<ServiceParts> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        let state = Arc::new(StatusState {
            client,
            upstreams: self.upstreams.clone(),
        });
        let routes = Router::new()
            .route("/", get(|| async { Redirect::temporary("/api/v1/status") }))
            .route("/api/v1/status", get(status).with_state(state));
        Ok(ServiceParts {
            routes,
            ..ServiceParts::default()
        })
    }
}

struct StatusState {
    client: reqwest::Client,
    upstreams: Vec<Upstream>,
}

#[derive(Debug, Serialize)]
struct ServiceStatus {
    name: String,
    url: String,
    ready: bool,
}

#[derive(Debug, Serialize)]
struct SystemStatus {
    ready: bool,
    services: Vec<ServiceStatus>,
}

/// Every upstream's readiness, asked in parallel.
async fn status(State(state): State<Arc<StatusState>>) -> impl IntoResponse {
    let checks = state.upstreams.iter().map(|upstream| {
        let client = state.client.clone();
        async move {
            let ready = client
                .get(format!("{}/readyz", upstream.url))
                .send()
                .await
                .map(|r| r.status().is_success())
                .unwrap_or(false);
            ServiceStatus {
                name: upstream.name.clone(),
                url: upstream.url.clone(),
                ready,
            }
        }
    });
    let services = futures_util::future::join_all(checks).await;
    axum::Json(SystemStatus {
        ready: services.iter().all(|s| s.ready),
        services,
    })
}
