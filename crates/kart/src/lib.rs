//! The `kart` command: every way of running Kart.
//!
//! - `kart up`: all eight services in one process on embedded storage.
//! - `kart serve <service>`: one service on PostgreSQL and Kafka.
//! - `kart migrate`: apply database migrations without serving.
//! - `kart dlq`, `kart analytics`: operate a running Kart ([`ops`]).
//! - `kart bench`: load, figures and charts ([`bench`]).
//!
//! The business code is the same in both modes; only the storage URL and
//! the bus behind the `EventBus` trait differ.

mod bench;
mod bench_report;
mod bench_system;
mod demo;
mod ops;
mod services;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use kit::bus::SharedBus;
use kit::bus::embedded::EmbeddedBus;
use kit::bus::kafka::KafkaBus;
use kit::config::{BusKind, Mode, Settings};
use kit::local::LocalServices;
use kit::service::{RunningService, prepare_database, start};
use tokio_util::sync::CancellationToken;

pub use services::{SERVICE_NAMES, ready_as, service_by_name};

/// Kart: an event-driven commerce backend.
///
/// Orders flow as events from a cart to a paid, stock-reserved, confirmed
/// order, across eight services that each own their database.
#[derive(Debug, Parser)]
#[command(name = "kart", version, about, long_about = None, after_help = EXAMPLES)]
pub struct Cli {
    /// A TOML config file, layered over the defaults and under `KART__…`
    /// environment variables (e.g. KART__DATABASE__URL).
    #[arg(long, global = true, env = "KART_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

const EXAMPLES: &str = "Examples:
  kart up                          run everything locally; open http://127.0.0.1:8080
  kart admin create --embedded --email you@example.com   make the first admin
  kart serve orders                run the orders service on PostgreSQL + Kafka
  KART__BUS__BROKERS=kafka:9092 kart serve payments
  kart migrate                     create and migrate every service's PostgreSQL database
  kart healthcheck http://127.0.0.1:8084/readyz
  kart dlq list                    emails that could not be delivered
  kart dlq replay --all            send them again
  kart analytics rebuild           recompute the figures from the topics
  kart bench checkout --orders 5000 --concurrency 64    load Kart and report (BENCHMARKS.md)";

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run every service in this process, with embedded storage (SQLite) and
    /// an embedded event log under the data directory. Nothing to install.
    Up {
        /// Where the databases and the event log live.
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// Start with an empty shop instead of the demo catalog.
        #[arg(long)]
        no_demo: bool,
    },
    /// Run one service on PostgreSQL and a Kafka-protocol broker (distributed mode).
    Serve {
        /// gateway, users, catalog, inventory, orders, payments, notifications or analytics.
        service: String,
    },
    /// List the environment variables a distributed deployment of a service
    /// must set (where it finds its database, the broker, the services it calls).
    Env {
        /// gateway, users, catalog, inventory, orders, payments, notifications or analytics.
        service: String,
    },
    /// Exit 0 if a Kart endpoint answers 200: the container health check,
    /// which needs no curl in the image.
    Healthcheck {
        /// What to ask.
        #[arg(
            env = "KART_HEALTHCHECK_URL",
            default_value = "http://127.0.0.1:8080/healthz"
        )]
        url: String,
    },
    /// Manage accounts.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Emails that could not be delivered (the notifications service's dead
    /// letters): list them, send them again.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
        /// The notifications service (default: where the configuration
        /// says, http://127.0.0.1:8086 for `kart up`).
        #[arg(long, global = true, value_name = "URL")]
        url: Option<String>,
    },
    /// The analytics service's figures.
    Analytics {
        #[command(subcommand)]
        command: AnalyticsCommand,
        /// The analytics service (default: where the configuration says,
        /// http://127.0.0.1:8087 for `kart up`).
        #[arg(long, global = true, value_name = "URL")]
        url: Option<String>,
    },
    /// Measure Kart under load: a report folder with JSON, Markdown and SVG
    /// charts, and a check at the end that every promise held.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
    /// Create and migrate service databases, then exit.
    Migrate {
        /// Services to migrate (default: all that keep a database).
        services: Vec<String>,
        /// Migrate the embedded (SQLite) databases instead of PostgreSQL.
        #[arg(long)]
        embedded: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create an admin account, or make an existing account an admin. The
    /// password is read from KART_ADMIN_PASSWORD or, if unset, from the
    /// first line of standard input; it is never a command-line argument
    /// (those show up in `ps` and shell history).
    Create {
        #[arg(long)]
        email: String,
        /// In the embedded (SQLite) users database instead of PostgreSQL.
        #[arg(long)]
        embedded: bool,
        /// The embedded data directory (with --embedded).
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// The dead letters, newest first, with the last error of each.
    List {
        /// At most this many (1 to 500).
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=500))]
        limit: u32,
    },
    /// Send dead letters again, each with a fresh set of tries. A message
    /// that was delivered meanwhile is not sent twice.
    Replay {
        /// Message ids (`msg_…`), as `kart dlq list` shows them.
        ids: Vec<String>,
        /// Every dead letter.
        #[arg(long)]
        all: bool,
    },
}

/// Which Kart a bench loads.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchTarget {
    /// A running Kart's gateway (its admin in KART_BENCH_ADMIN_EMAIL and
    /// KART_BENCH_ADMIN_PASSWORD; rate limits off). Without it the bench
    /// starts a Kart of its own.
    #[arg(long, value_name = "URL")]
    target: Option<String>,
    /// The Kart to start: `embedded` (kart up) or `distributed` (each
    /// service its own process on PostgreSQL and the broker).
    #[arg(long, default_value = "embedded", value_parser = ["embedded", "distributed"])]
    mode: String,
    /// PostgreSQL for `--mode distributed` (a database per service is made).
    #[arg(
        long,
        env = "KART_BENCH_POSTGRES_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    postgres: String,
    /// The Kafka-protocol broker for `--mode distributed`.
    #[arg(long, env = "KART_BENCH_BROKERS", value_name = "HOST:PORT")]
    brokers: Option<String>,
    /// The report folder (default: bench-reports/<kind>-<time>).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Give up after this many seconds (whatever is done is reported).
    #[arg(long, default_value_t = 300)]
    max_secs: u64,
}

impl BenchTarget {
    fn mode(&self) -> anyhow::Result<bench_system::BenchMode> {
        Ok(match (self.mode.as_str(), &self.brokers) {
            ("distributed", Some(brokers)) => bench_system::BenchMode::Distributed {
                postgres: self.postgres.clone(),
                brokers: brokers.clone(),
            },
            ("distributed", None) => {
                bail!("--mode distributed needs --brokers (or KART_BENCH_BROKERS)")
            }
            _ => bench_system::BenchMode::Embedded,
        })
    }
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Shoppers place orders with a saved test card; each order is followed
    /// on its live status stream to PAID or FAILED.
    Checkout {
        #[command(flatten)]
        target: BenchTarget,
        /// Shoppers to sign up (each with a saved card).
        #[arg(long, default_value_t = 50)]
        shoppers: usize,
        /// Orders to place.
        #[arg(long, default_value_t = 2000)]
        orders: usize,
        /// Open loop: orders per second, whatever the latency. Without it,
        /// closed loop: each client places its next order once the last
        /// one settled.
        #[arg(long)]
        rate: Option<f64>,
        /// Clients (closed loop), or the cap on orders in flight (open loop).
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
    },
    /// Catalog lists, searches and product pages.
    Browse {
        #[command(flatten)]
        target: BenchTarget,
        /// Requests to send.
        #[arg(long, default_value_t = 100_000)]
        requests: usize,
        /// Clients, each sending its next request once answered.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
    },
}

#[derive(Debug, Subcommand)]
pub enum AnalyticsCommand {
    /// Forget every figure and read every topic again from the start;
    /// returns when the figures are current again.
    Rebuild {
        /// Give up waiting (the rebuild goes on) after this many seconds.
        #[arg(long, default_value_t = 900)]
        wait_secs: u64,
    },
}

/// What to run, with its settings loaded and validated.
pub struct Invocation {
    pub command: Command,
    pub settings: Settings,
}

impl Invocation {
    /// Reads and checks everything the command needs before anything starts:
    /// the service name, then the configuration.
    pub fn load(cli: Cli) -> anyhow::Result<Invocation> {
        let mode = match &cli.command {
            Command::Up { .. }
            | Command::Migrate { embedded: true, .. }
            | Command::Admin {
                command: AdminCommand::Create { embedded: true, .. },
            }
            | Command::Healthcheck { .. }
            | Command::Dlq { .. }
            | Command::Analytics { .. }
            | Command::Bench { .. } => Mode::Embedded,
            Command::Env { service } => {
                service_by_name(service, &Settings::defaults(Mode::Distributed))?;
                Mode::Distributed
            }
            Command::Serve { service } => {
                service_by_name(service, &Settings::defaults(Mode::Distributed))?;
                Mode::Distributed
            }
            Command::Migrate { .. } | Command::Admin { .. } => Mode::Distributed,
        };
        let mut settings = Settings::load(mode, cli.config.as_deref())?;
        if let Command::Up {
            data_dir: Some(dir),
            ..
        }
        | Command::Admin {
            command:
                AdminCommand::Create {
                    data_dir: Some(dir),
                    ..
                },
        } = &cli.command
        {
            settings.data_dir = dir.clone();
        }
        Ok(Invocation {
            command: cli.command,
            settings,
        })
    }

    /// The name this process reports to a trace collector.
    pub fn process_name(&self) -> String {
        match &self.command {
            Command::Serve { service } => format!("kart-{service}"),
            _ => "kart".to_owned(),
        }
    }

    /// Runs the command to completion.
    pub async fn run(self) -> anyhow::Result<()> {
        match self.command {
            Command::Up { no_demo, .. } => up(self.settings, !no_demo).await,
            Command::Admin {
                command: AdminCommand::Create { email, .. },
            } => create_admin(&email, &self.settings).await,
            Command::Serve { service } => serve(&service, self.settings).await,
            Command::Migrate { services, .. } => migrate(&services, &self.settings).await,
            Command::Healthcheck { url } => healthcheck(&url).await,
            Command::Dlq { command, url } => match command {
                DlqCommand::List { limit } => {
                    ops::dlq_list(url.as_deref(), limit, &self.settings).await
                }
                DlqCommand::Replay { ids, all } => {
                    ops::dlq_replay(url.as_deref(), ids, all, &self.settings).await
                }
            },
            Command::Bench { command } => match command {
                BenchCommand::Checkout {
                    target,
                    shoppers,
                    orders,
                    rate,
                    concurrency,
                } => {
                    let plan = bench::CheckoutPlan {
                        mode: target.mode()?,
                        shoppers: shoppers.max(1),
                        rate,
                        concurrency,
                        orders,
                        max_secs: target.max_secs,
                        out: target
                            .out
                            .clone()
                            .unwrap_or_else(|| bench::default_out("checkout")),
                    };
                    bench::checkout(plan, target.target).await
                }
                BenchCommand::Browse {
                    target,
                    requests,
                    concurrency,
                } => {
                    let plan = bench::BrowsePlan {
                        mode: target.mode()?,
                        concurrency,
                        requests,
                        max_secs: target.max_secs,
                        out: target
                            .out
                            .clone()
                            .unwrap_or_else(|| bench::default_out("browse")),
                    };
                    bench::browse(plan, target.target).await
                }
            },
            Command::Analytics { command, url } => match command {
                AnalyticsCommand::Rebuild { wait_secs } => {
                    ops::analytics_rebuild(
                        url.as_deref(),
                        Duration::from_secs(wait_secs),
                        &self.settings,
                    )
                    .await
                }
            },
            Command::Env { service } => {
                for key in services::deployment_env(&service, &self.settings)? {
                    println!("{key}");
                }
                Ok(())
            }
        }
    }
}

async fn connect_bus(settings: &Settings) -> anyhow::Result<SharedBus> {
    Ok(match settings.bus.kind {
        BusKind::Embedded => {
            let path = settings.embedded_bus_path();
            Arc::new(
                EmbeddedBus::open(&path, settings.bus.partitions)
                    .await
                    .with_context(|| format!("embedded event log {}", path.display()))?,
            )
        }
        BusKind::Kafka => Arc::new(KafkaBus::connect(&settings.bus).await?),
    })
}

/// All eight services running in this process: what `kart up` runs, and
/// what end-to-end tests start (with every port 0 and a temporary data
/// directory) to get a whole Kart to talk to.
pub struct System {
    pub services: Vec<RunningService>,
    /// The event bus the services share (for tools and tests that read or
    /// replay its topics).
    pub bus: kit::SharedBus,
    shutdown: CancellationToken,
    grace: Duration,
}

impl System {
    /// Starts the domain services first, then the gateway in front of them,
    /// on the bus `settings` name. If any fails, those started are stopped.
    pub async fn start(mut settings: Settings) -> anyhow::Result<System> {
        let bus = connect_bus(&settings).await?;
        // The services call each other in-process, not over loopback.
        let local = LocalServices::default();
        let mut system = System {
            services: Vec::new(),
            bus: Arc::clone(&bus),
            shutdown: CancellationToken::new(),
            grace: Duration::from_secs(settings.http.shutdown_grace_secs),
        };
        for name in SERVICE_NAMES.iter().filter(|n| **n != "gateway") {
            let service = service_by_name(name, &settings)?;
            let started = start(
                service.as_ref(),
                Arc::new(settings.clone()),
                Arc::clone(&bus),
                &local,
                &system.shutdown,
            )
            .await;
            match started {
                Ok(service) => {
                    // The gateway reaches each service where it really listens.
                    settings.services.entry((*name).to_owned()).or_default().url =
                        Some(service.url());
                    system.services.push(service);
                }
                Err(error) => {
                    system.stop().await;
                    return Err(error.into());
                }
            }
        }
        let gateway = service_by_name("gateway", &settings)?;
        let started = start(
            gateway.as_ref(),
            Arc::new(settings),
            bus,
            &local,
            &system.shutdown,
        )
        .await;
        match started {
            Ok(service) => system.services.insert(0, service),
            Err(error) => {
                system.stop().await;
                return Err(error.into());
            }
        }
        Ok(system)
    }

    /// The base URL of a running service.
    pub fn url(&self, name: &str) -> Option<String> {
        self.services
            .iter()
            .find(|s| s.name == name)
            .map(RunningService::url)
    }

    /// Stops every service and waits for them, up to the grace period.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let mut tasks = tokio::task::JoinSet::new();
        for service in self.services {
            tasks.spawn(service.stopped());
        }
        let all = async { while tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(self.grace, all).await.is_err() {
            tracing::warn!(
                grace_secs = self.grace.as_secs(),
                "services did not stop in time"
            );
        }
    }
}

/// `kart up`.
async fn up(settings: Settings, with_demo: bool) -> anyhow::Result<()> {
    let started = Instant::now();
    let data_dir = settings.data_dir.clone();
    let system = System::start(settings).await?;
    println!(
        "Kart is up (embedded mode, data in {}), ready in {} ms:",
        data_dir.display(),
        started.elapsed().as_millis()
    );
    if with_demo
        && let (Some(catalog), Some(inventory)) = (system.url("catalog"), system.url("inventory"))
    {
        match demo::seed(&catalog, &inventory).await {
            Ok(0) => {}
            Ok(added) => {
                println!("Added the demo catalog: {added} products, 100 of each in stock.")
            }
            Err(error) => {
                system.stop().await;
                return Err(error.context("adding the demo catalog"));
            }
        }
    }
    for service in &system.services {
        println!("  {:<14} {}", service.name, service.url());
    }
    println!("Press Ctrl-C to stop.");
    wait_for_stop_signal().await;
    println!("Stopping…");
    system.stop().await;
    Ok(())
}

/// `kart admin create`.
async fn create_admin(email: &str, settings: &Settings) -> anyhow::Result<()> {
    let password = match std::env::var("KART_ADMIN_PASSWORD") {
        Ok(password) => password,
        Err(_) => {
            eprintln!("Password for {email} (one line on standard input):");
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
            line.trim_end_matches(['\r', '\n']).to_owned()
        }
    };
    // Refuse a malformed address before touching any database, and say
    // the address as it is stored (normalised), which is what signs in.
    let email = users::domain::Email::parse(email)
        .map_err(|problem| anyhow::anyhow!("admin email: {}", problem.detail))?;
    let email = email.as_str();
    let db = prepare_database("users", settings, users::MIGRATIONS).await?;
    let outcome = users::ensure_admin(&db, email, &password).await;
    db.close().await;
    let message = match outcome? {
        users::AdminOutcome::Created => "created; sign in with it",
        users::AdminOutcome::Promoted => "existed and is now an admin (its password is unchanged)",
        users::AdminOutcome::AlreadyAdmin => "is already an admin; nothing changed",
    };
    println!("Admin {email} {message}.");
    Ok(())
}

/// `kart serve <service>`.
async fn serve(name: &str, settings: Settings) -> anyhow::Result<()> {
    let service = service_by_name(name, &settings)?;
    let bus = connect_bus(&settings).await?;
    let shutdown = CancellationToken::new();
    let running = start(
        service.as_ref(),
        Arc::new(settings.clone()),
        Arc::clone(&bus),
        &LocalServices::default(),
        &shutdown,
    )
    .await?;
    println!("{} is serving at {}", running.name, running.url());
    wait_for_stop_signal().await;
    let system = System {
        services: vec![running],
        bus,
        shutdown,
        grace: Duration::from_secs(settings.http.shutdown_grace_secs),
    };
    system.stop().await;
    Ok(())
}

/// `kart migrate`.
async fn migrate(names: &[String], settings: &Settings) -> anyhow::Result<()> {
    let names: Vec<String> = if names.is_empty() {
        SERVICE_NAMES.iter().map(|s| (*s).to_owned()).collect()
    } else {
        names.to_vec()
    };
    for name in &names {
        let service = service_by_name(name, settings)?;
        let Some(migrations) = service.migrations() else {
            continue;
        };
        let db = prepare_database(service.name(), settings, migrations).await?;
        println!("{name}: migrated {}", db.display_url());
        db.close().await;
    }
    Ok(())
}

/// `kart healthcheck`: one plain HTTP/1.0 GET, answered 200 or not.
async fn healthcheck(url: &str) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow::anyhow!("`{url}` is not an http:// URL"))?;
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let check = async {
        let mut stream = tokio::net::TcpStream::connect(authority).await?;
        stream
            .write_all(format!("GET /{path} HTTP/1.0\r\nHost: {authority}\r\n\r\n").as_bytes())
            .await?;
        let mut head = vec![0_u8; 64];
        let read = stream.read(&mut head).await?;
        Ok::<String, std::io::Error>(String::from_utf8_lossy(&head[..read]).into_owned())
    };
    let head = tokio::time::timeout(Duration::from_secs(3), check)
        .await
        .map_err(|_| anyhow::anyhow!("{url} did not answer within 3 s"))?
        .with_context(|| format!("{url} is unreachable"))?;
    let status = head.split_whitespace().nth(1).unwrap_or_default();
    if status == "200" {
        Ok(())
    } else {
        bail!(
            "{url} answered {}",
            head.lines().next().unwrap_or("nothing")
        )
    }
}

/// Ctrl-C, or SIGTERM (what container runtimes send).
async fn wait_for_stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Refuses names that are not services, listing the ones that are.
pub(crate) fn unknown_service(name: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "unknown service `{name}` (one of: {})",
        SERVICE_NAMES.join(", ")
    )
}
