//! Running a service: the same start-up and shutdown for all eight.
//!
//! A service describes itself through [`Service`]: its name, its default
//! port, its migrations (none for the stateless gateway), the topics it uses,
//! and [`Service::build`], which returns its routes and its consumers.
//! [`start`] then does the rest, identically in both modes: connect and
//! migrate the service's own database, create its topics, bind its port,
//! and spawn the HTTP server, the outbox relay and the consumers, all
//! watching one shutdown token.
//!
//! Shutdown: cancelling the token stops the listener from accepting, lets
//! in-flight requests and the event being handled finish, then closes the
//! database. [`RunningService::stopped`] resolves when all of that is done.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic_health::ServingStatus;
use tracing::Instrument;

use crate::bus::{SharedBus, TopicSpec};
use crate::config::Settings;
use crate::consumer::{ConsumerRunner, ConsumerSpec};
use crate::db::Db;
use crate::http::{Readiness, bind, finish_router, serve};
use crate::local::LocalServices;
use crate::metrics::Metrics;
use crate::migrate::{self, Migration};
use crate::outbox::{OutboxSignal, Relay};

/// kit's own tables (outbox, inbox, consumer positions), in every service
/// database.
pub const KIT_MIGRATIONS: &[Migration] = &[
    Migration::per_dialect(
        1,
        "outbox_inbox",
        include_str!("../migrations/0001_outbox_inbox.postgres.sql"),
        include_str!("../migrations/0001_outbox_inbox.sqlite.sql"),
    ),
    Migration::portable(
        2,
        "consumer_epochs",
        include_str!("../migrations/0002_consumer_epochs.sql"),
    ),
    Migration::portable(
        3,
        "consumer_broker_groups",
        include_str!("../migrations/0003_consumer_broker_groups.sql"),
    ),
    Migration::sqlite_only(
        4,
        "keyed_tables",
        include_str!("../migrations/0004_keyed_tables.sqlite.sql"),
    ),
];

/// What a service gets to build itself with.
#[derive(Clone)]
pub struct ServiceContext {
    pub name: &'static str,
    pub settings: Arc<Settings>,
    /// The service's own database; `None` for a stateless service.
    pub db: Option<Db>,
    pub bus: SharedBus,
    pub metrics: Metrics,
    /// Wakes the outbox relay after a commit that outboxed events.
    pub outbox: OutboxSignal,
    /// The services in this process, for the gRPC channels the service
    /// makes to others (`contracts::grpc::lazy_channel`).
    pub local: LocalServices,
    pub shutdown: CancellationToken,
}

/// What a service is made of once built.
#[derive(Default)]
pub struct ServiceParts {
    /// REST routes.
    pub routes: Router,
    /// gRPC services, served on the same port (HTTP/2 without TLS, as
    /// inside a cluster). Every service also answers the standard
    /// `grpc.health.v1.Health` check.
    pub grpc: tonic::service::Routes,
    pub consumers: Vec<ConsumerSpec>,
    /// Background work of the service's own (sweepers, index refreshers).
    /// Each must return once the context's shutdown token is cancelled; the
    /// service counts as stopped only when they all have.
    pub workers: Vec<Worker>,
    /// Cross-origin rules for browsers, where a service takes calls from
    /// other sites' pages (the gateway, when configured).
    pub cors: Option<tower_http::cors::CorsLayer>,
}

/// A named background task; see [`ServiceParts::workers`].
pub struct Worker {
    pub name: &'static str,
    pub task: futures_util::future::BoxFuture<'static, ()>,
}

impl Worker {
    pub fn new(
        name: &'static str,
        task: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Worker {
        Worker {
            name,
            task: Box::pin(task),
        }
    }
}

#[async_trait]
pub trait Service: Send + Sync {
    fn name(&self) -> &'static str;

    /// The port `kart up` gives it unless configured otherwise.
    fn default_port(&self) -> u16;

    /// The service's schema; `None` if it keeps nothing durable.
    fn migrations(&self) -> Option<&'static [Migration]>;

    /// Topics it publishes to, created at start so consumers can join them
    /// before the first event.
    fn topics(&self) -> Vec<String> {
        Vec::new()
    }

    async fn build(&self, context: &ServiceContext) -> anyhow::Result<ServiceParts>;
}

/// Why a service did not start, phrased for the operator.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{service}")]
    Database {
        service: &'static str,
        #[source]
        source: crate::db::DbError,
    },
    #[error("{service}")]
    Migration {
        service: &'static str,
        #[source]
        source: migrate::MigrateError,
    },
    #[error("{service}")]
    Bus {
        service: &'static str,
        #[source]
        source: crate::bus::BusError,
    },
    #[error("{service}: cannot listen on {addr}")]
    Bind {
        service: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("{service}")]
    Build {
        service: &'static str,
        #[source]
        source: anyhow::Error,
    },
}

/// A started service.
pub struct RunningService {
    pub name: &'static str,
    /// Where it really listens (port 0 resolved).
    pub addr: SocketAddr,
    pub db: Option<Db>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl RunningService {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Asks the service to stop (it also stops when its parent token does).
    pub fn stop(&self) {
        self.shutdown.cancel();
    }

    /// Waits until the server, relay and consumers have all finished, then
    /// closes the database.
    pub async fn stopped(self) {
        let began = std::time::Instant::now();
        self.tasks.close();
        self.tasks.wait().await;
        let drained = began.elapsed();
        if let Some(db) = &self.db {
            db.close().await;
        }
        tracing::info!(
            service = self.name,
            drained_ms = drained.as_millis(),
            total_ms = began.elapsed().as_millis(),
            "service stopped"
        );
    }
}

/// Connects the database of `name` and applies kit's and the service's
/// migrations: what `kart migrate` does, and the first step of [`start`].
pub async fn prepare_database(
    name: &'static str,
    settings: &Settings,
    migrations: &'static [Migration],
) -> Result<Db, StartError> {
    let db = Db::connect(&settings.database_url(name), &settings.database)
        .await
        .map_err(|source| StartError::Database {
            service: name,
            source,
        })?;
    for (scope, list) in [("kit", KIT_MIGRATIONS), (name, migrations)] {
        migrate::run(&db, scope, list)
            .await
            .map_err(|source| StartError::Migration {
                service: name,
                source,
            })?;
    }
    Ok(db)
}

/// Starts `service` on `bus`, reachable by the other services in `local`
/// without the network; it stops when `shutdown` is cancelled.
pub async fn start(
    service: &dyn Service,
    settings: Arc<Settings>,
    bus: SharedBus,
    local: &LocalServices,
    shutdown: &CancellationToken,
) -> Result<RunningService, StartError> {
    let name = service.name();
    let span = tracing::info_span!("service", service = name);
    async {
        let db = match service.migrations() {
            Some(migrations) => Some(prepare_database(name, &settings, migrations).await?),
            None => None,
        };
        let shutdown = shutdown.child_token();
        let context = ServiceContext {
            name,
            settings: Arc::clone(&settings),
            db: db.clone(),
            bus: Arc::clone(&bus),
            metrics: Metrics::new(name),
            outbox: OutboxSignal::default(),
            local: local.clone(),
            shutdown: shutdown.clone(),
        };
        let parts = service
            .build(&context)
            .await
            .map_err(|source| StartError::Build {
                service: name,
                source,
            })?;

        let mut topics = service.topics();
        for consumer in &parts.consumers {
            topics.extend(consumer.topics.iter().cloned());
            topics.push(consumer.dead_letter_topic.clone());
        }
        topics.sort();
        topics.dedup();
        let specs: Vec<TopicSpec> = topics
            .into_iter()
            .map(|name| TopicSpec {
                name,
                partitions: settings.bus.partitions,
            })
            .collect();
        bus.create_topics(&specs)
            .await
            .map_err(|source| StartError::Bus {
                service: name,
                source,
            })?;

        let addr = SocketAddr::new(
            settings.http.host,
            settings.port_of(name, service.default_port()),
        );
        let (listener, addr) = bind(addr).await.map_err(|source| StartError::Bind {
            service: name,
            addr,
            source,
        })?;
        // gRPC health: SERVING once started, NOT_SERVING from the moment the
        // service begins to stop, so a balancer drains it first.
        let (health, health_service) = tonic_health::server::health_reporter();
        health.set_service_status("", ServingStatus::Serving).await;
        let grpc = parts.grpc.add_service(health_service).into_axum_router();
        let router = finish_router(
            name,
            parts.routes.merge(grpc),
            context.metrics.clone(),
            Readiness {
                db: db.clone(),
                bus: Some(Arc::clone(&bus)),
            },
            Duration::from_secs(settings.http.request_timeout_secs),
            settings.http.body_limit_bytes,
            parts.cors,
        );

        let tasks = TaskTracker::new();
        // Services in this process call it without the network (see
        // `local`); it leaves the registry as it begins to stop, below.
        let in_process = local.register(addr, router.clone(), tasks.clone());
        let span = tracing::Span::current();
        tasks.spawn(
            {
                let shutdown = shutdown.clone();
                async move {
                    if let Err(error) = serve(listener, router, shutdown).await {
                        tracing::error!(%error, "HTTP server failed");
                    }
                }
            }
            .instrument(span.clone()),
        );
        if let Some(db) = &db {
            let relay = Relay::new(
                db.clone(),
                Arc::clone(&bus),
                context.metrics.clone(),
                context.outbox.clone(),
            );
            tasks.spawn(relay.run(shutdown.clone()).instrument(span.clone()));
            for spec in parts.consumers {
                let runner = ConsumerRunner {
                    spec,
                    db: db.clone(),
                    bus: Arc::clone(&bus),
                    metrics: context.metrics.clone(),
                    outbox: context.outbox.clone(),
                };
                tasks.spawn(runner.run(shutdown.clone()).instrument(span.clone()));
            }
        } else if !parts.consumers.is_empty() {
            tracing::warn!("consumers need a database for their inbox; not started");
        }
        for worker in parts.workers {
            let worker_span = tracing::info_span!(parent: &span, "worker", worker = worker.name);
            tasks.spawn(worker.task.instrument(worker_span));
        }
        tasks.spawn({
            let shutdown = shutdown.clone();
            async move {
                shutdown.cancelled().await;
                drop(in_process);
                health
                    .set_service_status("", ServingStatus::NotServing)
                    .await;
            }
        });
        tracing::info!(%addr, "service started");
        Ok(RunningService {
            name,
            addr,
            db,
            shutdown,
            tasks,
        })
    }
    .instrument(span)
    .await
}
