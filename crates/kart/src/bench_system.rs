//! The Kart a bench runs against: one it starts (embedded: `kart up`;
//! distributed: every service its own `kart serve` process on PostgreSQL
//! and a broker), or one already running (`--target`). A started Kart runs
//! as child processes of this one, so what it costs (CPU seconds, peak
//! memory) is measured apart from the load generator's own.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::SERVICE_NAMES;

/// How the bench gets a Kart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BenchMode {
    /// `kart up` in a fresh data directory.
    Embedded,
    /// Every service as `kart serve`, on PostgreSQL (`postgres` is a server
    /// URL) and the Kafka-protocol broker at `brokers`.
    Distributed { postgres: String, brokers: String },
    /// A running Kart: nothing started, nothing measured but latency.
    Target,
}

/// CPU seconds and memory of Kart's processes at one moment.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Usage {
    pub cpu_seconds: f64,
    /// The largest resident set any one process reached (VmHWM), in bytes.
    pub peak_rss_bytes: u64,
    /// Resident now, summed over the processes.
    pub rss_bytes: u64,
}

pub struct Kart {
    pub url: String,
    pub admin_email: String,
    pub admin_password: String,
    pub mode: BenchMode,
    /// How long `kart up` took to say it was ready.
    pub ready_ms: Option<u64>,
    children: Vec<Child>,
    _dir: Option<tempfile::TempDir>,
}

/// An error naming the first of a distributed run's `children` (started
/// in the order of `SERVICE_NAMES` reversed) that has exited.
fn none_exited(children: &mut [Child]) -> anyhow::Result<()> {
    for (name, child) in SERVICE_NAMES.iter().rev().zip(children) {
        if let Some(status) = child.try_wait()? {
            bail!("kart serve {name} exited ({status}) before the run started; its error is above");
        }
    }
    Ok(())
}

fn kart_command() -> anyhow::Result<Command> {
    let exe = std::env::current_exe().context("finding the kart binary")?;
    let mut command = Command::new(exe);
    command
        .env_remove("KART_CONFIG")
        .env("KART__TELEMETRY__LOG_LEVEL", "warn")
        // The bench is one client IP doing a shop's worth of traffic.
        .env("KART__GATEWAY__IP_RATE_PER_SEC", "0")
        .env("KART__GATEWAY__USER_RATE_PER_SEC", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    Ok(command)
}

impl Kart {
    pub async fn start(mode: BenchMode, target: Option<String>) -> anyhow::Result<Kart> {
        let password = kit::new_id("pw");
        match (mode, target) {
            (_, Some(url)) => Ok(Kart {
                url: url.trim_end_matches('/').to_owned(),
                admin_email: std::env::var("KART_BENCH_ADMIN_EMAIL")
                    .context("--target needs KART_BENCH_ADMIN_EMAIL and KART_BENCH_ADMIN_PASSWORD (an admin of that Kart)")?,
                admin_password: std::env::var("KART_BENCH_ADMIN_PASSWORD")
                    .context("--target needs KART_BENCH_ADMIN_PASSWORD")?,
                mode: BenchMode::Target,
                ready_ms: None,
                children: Vec::new(),
                _dir: None,
            }),
            (BenchMode::Embedded, None) | (BenchMode::Target, None) => Kart::embedded(password).await,
            (BenchMode::Distributed { postgres, brokers }, None) => Kart::distributed(password, postgres, brokers).await,
        }
    }

    async fn embedded(password: String) -> anyhow::Result<Kart> {
        let dir = tempfile::tempdir()?;
        let mut command = kart_command()?;
        command
            .arg("up")
            .arg("--data-dir")
            .arg(dir.path())
            .env("KART__AUTH__ADMIN_EMAIL", "bench-admin@kart.localhost")
            .env("KART__AUTH__ADMIN_PASSWORD", &password);
        for service in SERVICE_NAMES {
            command.env(
                format!("KART__SERVICES__{}__PORT", service.to_uppercase()),
                "0",
            );
        }
        let mut child = command.spawn().context("starting kart up")?;
        let stdout = child.stdout.take().context("kart up's output")?;
        let mut lines = BufReader::new(stdout).lines();
        let mut url = None;
        let mut ready_ms = None;
        let read = async {
            while let Some(line) = lines.next_line().await? {
                if let Some(rest) = line.split(", ready in ").nth(1) {
                    ready_ms = rest.split_whitespace().next().and_then(|n| n.parse().ok());
                }
                let mut words = line.split_whitespace();
                if words.next() == Some("gateway") {
                    url = words.next().map(str::to_owned);
                }
                if line.starts_with("Press Ctrl-C") {
                    break;
                }
            }
            Ok::<(), std::io::Error>(())
        };
        tokio::time::timeout(Duration::from_secs(60), read)
            .await
            .context("kart up did not get ready in 60 s")??;
        // Keep draining its output so it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let url = url.context("kart up did not say where the gateway is")?;
        Ok(Kart {
            url,
            admin_email: "bench-admin@kart.localhost".into(),
            admin_password: password,
            mode: BenchMode::Embedded,
            ready_ms,
            children: vec![child],
            _dir: Some(dir),
        })
    }

    async fn distributed(
        password: String,
        postgres: String,
        brokers: String,
    ) -> anyhow::Result<Kart> {
        let run = kit::new_id("b").trim_start_matches("b_")[..10].to_owned();
        let server = postgres
            .rsplit_once('/')
            .map_or(postgres.as_str(), |(s, _)| s)
            .to_owned();
        let ports = kit::http::free_loopback_ports(SERVICE_NAMES.len())?;
        let secret = format!("{}{}", kit::new_id("jwt"), kit::new_id("k"));
        let mut children = Vec::new();
        // The domain services first, the gateway last.
        for service in SERVICE_NAMES.iter().rev() {
            let mut command = kart_command()?;
            command
                .arg("serve")
                .arg(service)
                .env(
                    "KART__DATABASE__URL",
                    format!("{server}/kart_bench_{run}_{{service}}"),
                )
                .env("KART__BUS__KIND", "kafka")
                .env("KART__BUS__BROKERS", &brokers)
                .env("KART__BUS__NAMESPACE", format!("bench-{run}."))
                .env("KART__AUTH__JWT_SECRET", &secret)
                .env("KART__AUTH__ADMIN_EMAIL", "bench-admin@kart.localhost")
                .env("KART__AUTH__ADMIN_PASSWORD", &password)
                .stdout(Stdio::null());
            for (other, port) in SERVICE_NAMES.iter().zip(&ports) {
                let key = other.to_uppercase();
                command.env(format!("KART__SERVICES__{key}__PORT"), port.to_string());
                command.env(
                    format!("KART__SERVICES__{key}__URL"),
                    format!("http://127.0.0.1:{port}"),
                );
            }
            children.push(
                command
                    .spawn()
                    .with_context(|| format!("starting kart serve {service}"))?,
            );
        }
        let client = reqwest::Client::new();
        let started = Instant::now();
        for (service, port) in SERVICE_NAMES.iter().zip(&ports) {
            let url = format!("http://127.0.0.1:{port}");
            loop {
                if crate::ready_as(&client, &url, service).await? {
                    break;
                }
                // A service that exited (its port taken, its database
                // unreachable) never gets ready: say so now, not after
                // the timeout.
                none_exited(&mut children)?;
                if started.elapsed() > Duration::from_secs(120) {
                    bail!("kart serve {service} was not ready within 120 s");
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        // And none answered ready in a dead one's place.
        none_exited(&mut children)?;
        Ok(Kart {
            url: format!("http://127.0.0.1:{}", ports[0]),
            admin_email: "bench-admin@kart.localhost".into(),
            admin_password: password,
            mode: BenchMode::Distributed { postgres, brokers },
            ready_ms: Some(u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)),
            children,
            _dir: None,
        })
    }

    pub fn describe(&self) -> String {
        match &self.mode {
            BenchMode::Embedded => "embedded: kart up, started by the bench".into(),
            BenchMode::Distributed { brokers, .. } => {
                format!(
                    "distributed: {} kart serve processes, PostgreSQL, broker {brokers}",
                    self.children.len()
                )
            }
            BenchMode::Target => "a running Kart; its CPU and memory are not measured".into(),
        }
    }

    pub fn mode_name(&self) -> &'static str {
        match self.mode {
            BenchMode::Embedded => "embedded",
            BenchMode::Distributed { .. } => "distributed",
            BenchMode::Target => "target",
        }
    }

    /// What Kart's processes used so far (Linux `/proc`); `None` for a
    /// Kart the bench did not start.
    pub fn usage(&self) -> Option<Usage> {
        if self.children.is_empty() {
            return None;
        }
        let mut usage = Usage::default();
        for child in &self.children {
            let pid = child.id()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // Fields after the command name, which is in parentheses.
            let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            let ticks: f64 =
                fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
            // Linux reports CPU time in USER_HZ, 100 per second on every
            // architecture Kart runs on.
            usage.cpu_seconds += ticks / 100.0;
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
            let kb = |key: &str| {
                status
                    .lines()
                    .find(|l| l.starts_with(key))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or(0)
                    * 1024
            };
            usage.peak_rss_bytes = usage.peak_rss_bytes.max(kb("VmHWM:"));
            usage.rss_bytes += kb("VmRSS:");
        }
        Some(usage)
    }

    /// Stops what the bench started (SIGTERM, then a kill after the grace).
    pub async fn stop(mut self) {
        for child in &self.children {
            if let Some(pid) = child.id() {
                let _ = std::process::Command::new("kill")
                    .arg(pid.to_string())
                    .status();
            }
        }
        for child in &mut self.children {
            if tokio::time::timeout(Duration::from_secs(10), child.wait())
                .await
                .is_err()
            {
                let _ = child.kill().await;
            }
        }
        if let BenchMode::Distributed { .. } = self.mode {
            eprintln!(
                "The run's databases (kart_bench_*) stay on the PostgreSQL server; drop them when done."
            );
        }
    }
}
