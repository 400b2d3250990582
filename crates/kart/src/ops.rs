//! Operator commands that talk to a running Kart: `kart dlq` (dead letters
//! of the notifications service) and `kart analytics rebuild`. They speak
//! gRPC to the service itself, so they work the same against `kart up` and
//! a distributed deployment (where the service's port is inside the
//! cluster: run them in a pod, or port-forward).

use std::time::{Duration, Instant};

use anyhow::Context;
use contracts::grpc::GrpcChannel;
use contracts::grpc::analytics::v1 as analytics_pb;
use contracts::grpc::analytics::v1::analytics_client::AnalyticsClient;
use contracts::grpc::notifications::v1 as notifications_pb;
use contracts::grpc::notifications::v1::notifications_client::NotificationsClient;
use kit::config::Settings;

use crate::services::url_of;

const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A channel to `service` at `url`, or where the settings say it is.
fn channel(service: &str, url: Option<&str>, settings: &Settings) -> anyhow::Result<GrpcChannel> {
    let url = url.map_or_else(|| url_of(service, settings), str::to_owned);
    // A Kart elsewhere: no service of it runs in this process.
    let elsewhere = kit::local::LocalServices::default();
    contracts::grpc::lazy_channel(&url, CALL_TIMEOUT, "--url", &elsewhere)
        .map_err(anyhow::Error::msg)
}

fn unreachable(service: &str, status: &tonic::Status) -> anyhow::Error {
    if status.code() == tonic::Code::Unavailable {
        anyhow::anyhow!(
            "the {service} service does not answer (is Kart running? `--url` names where): {}",
            status.message()
        )
    } else {
        anyhow::anyhow!("the {service} service refused: {}", status.message())
    }
}

fn time(millis: i64) -> String {
    chrono::DateTime::from_timestamp_millis(millis)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| "-".to_owned())
}

/// `kart dlq list`.
pub async fn dlq_list(url: Option<&str>, limit: u32, settings: &Settings) -> anyhow::Result<()> {
    let mut client = NotificationsClient::new(channel("notifications", url, settings)?);
    let list = client
        .list_dead_letters(notifications_pb::ListDeadLettersRequest { limit })
        .await
        .map_err(|s| unreachable("notifications", &s))?
        .into_inner();
    if list.messages.is_empty() {
        println!("No dead letters.");
        return Ok(());
    }
    println!(
        "{:<36} {:<16} {:<19} {:>8}  LAST ERROR",
        "ID", "KIND", "CREATED", "ATTEMPTS"
    );
    for message in &list.messages {
        println!(
            "{:<36} {:<16} {:<19} {:>8}  {}",
            message.id,
            message.kind,
            time(message.created_at),
            message.attempts,
            message.last_error.replace('\n', " ")
        );
    }
    println!(
        "{} dead letter(s). Send them again with `kart dlq replay <ID>…` or `kart dlq replay --all`.",
        list.messages.len()
    );
    Ok(())
}

/// `kart dlq replay`.
pub async fn dlq_replay(
    url: Option<&str>,
    ids: Vec<String>,
    all: bool,
    settings: &Settings,
) -> anyhow::Result<()> {
    if ids.is_empty() && !all {
        anyhow::bail!("name the dead letters to replay, or pass --all");
    }
    if !ids.is_empty() && all {
        anyhow::bail!("name dead letters or pass --all, not both");
    }
    let mut client = NotificationsClient::new(channel("notifications", url, settings)?);
    let replayed = client
        .replay(notifications_pb::ReplayRequest { ids, all })
        .await
        .map_err(|s| unreachable("notifications", &s))?
        .into_inner();
    if replayed.outcomes.is_empty() {
        println!("No dead letters to replay.");
    }
    let mut refused = 0;
    for outcome in &replayed.outcomes {
        let said = match outcome.outcome.as_str() {
            "queued" => "queued: it is sent again now",
            "already_sent" => "already delivered: not sent again",
            "not_dead" => "still being tried: left alone",
            "not_found" => {
                refused += 1;
                "no such message"
            }
            other => other,
        };
        println!("{}  {said}", outcome.id);
    }
    if refused > 0 {
        anyhow::bail!("{refused} of the named messages do not exist");
    }
    Ok(())
}

/// `kart analytics rebuild`: starts the rebuild and follows it to the end.
pub async fn analytics_rebuild(
    url: Option<&str>,
    wait: Duration,
    settings: &Settings,
) -> anyhow::Result<()> {
    let mut client = AnalyticsClient::new(channel("analytics", url, settings)?);
    let started = Instant::now();
    let rebuild = client
        .rebuild(analytics_pb::RebuildRequest {})
        .await
        .map_err(|s| unreachable("analytics", &s))?
        .into_inner();
    println!(
        "Analytics forgot its figures and is reading {} records again from the start of every topic.",
        rebuild.records_to_replay
    );
    // Give the consumers a moment to notice the rewind before measuring.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    loop {
        let lag = client
            .get_lag(analytics_pb::LagRequest {})
            .await
            .map_err(|s| unreachable("analytics", &s))?
            .into_inner();
        if lag.records_behind == 0 {
            break;
        }
        if started.elapsed() > wait {
            return Err(anyhow::anyhow!(
                "{} records still to read after {} s; the rebuild goes on in the service",
                lag.records_behind,
                wait.as_secs()
            ))
            .context("analytics rebuild");
        }
        eprintln!("  {} records to go", lag.records_behind);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let now_minute = chrono::Utc::now().timestamp().div_euclid(60) + 1;
    let stats = client
        .get_stats(analytics_pb::StatsRequest {
            from_minute: now_minute - 31 * 24 * 60,
            to_minute: now_minute,
            top: 1,
        })
        .await
        .map_err(|s| unreachable("analytics", &s))?
        .into_inner();
    println!(
        "Rebuilt in {:.1} s. Last 31 days: {} orders created, {} paid, {} failed, {} cancelled.",
        started.elapsed().as_secs_f64(),
        stats.orders_created,
        stats.orders_paid,
        stats.orders_failed,
        stats.orders_cancelled
    );
    for currency in &stats.currencies {
        println!(
            "  revenue {}",
            contracts::values::format_amount(currency.revenue_minor, &currency.currency)
        );
    }
    Ok(())
}
