//! The analytics gRPC API: figures for the console, and the rebuild.

use contracts::grpc::analytics::v1 as pb;
use kit::SharedBus;
use kit::consumer::GroupPosition;
use kit::db::Db;
use kit::problem::{Problem, internal_status};
use tonic::{Request, Response, Status};

use crate::stats::{self, Percentiles, Stats};
use crate::{GROUP, facts};

#[derive(Clone)]
pub struct AnalyticsApi {
    pub db: Db,
    pub bus: SharedBus,
    /// The topics the group reads.
    pub topics: Vec<String>,
}

fn latency(minute: &mut pb::Minute, p: &Percentiles) {
    minute.order_to_paid_p50_ms = p.p50;
    minute.order_to_paid_p95_ms = p.p95;
    minute.order_to_paid_p99_ms = p.p99;
}

pub fn to_message(stats: &Stats) -> pb::Stats {
    let minutes = stats
        .minutes
        .iter()
        .map(|m| {
            let mut minute = pb::Minute {
                minute: m.minute,
                orders_created: m.orders_created,
                orders_paid: m.orders_paid,
                orders_failed: m.orders_failed,
                orders_cancelled: m.orders_cancelled,
                payments_captured: m.payments_captured,
                payments_failed: m.payments_failed,
                revenue: m
                    .revenue
                    .iter()
                    .map(|(currency, amount)| pb::Amount {
                        currency: currency.clone(),
                        amount_minor: *amount,
                    })
                    .collect(),
                ..pb::Minute::default()
            };
            latency(&mut minute, &m.order_to_paid);
            minute
        })
        .collect();
    let totals = &stats.totals;
    pb::Stats {
        from_minute: stats.from_minute,
        to_minute: stats.to_minute,
        minutes,
        orders_created: totals.orders_created,
        orders_paid: totals.orders_paid,
        orders_failed: totals.orders_failed,
        orders_cancelled: totals.orders_cancelled,
        payments_captured: totals.payments_captured,
        payments_failed: totals.payments_failed,
        payment_success_rate: stats.payment_success_rate(),
        currencies: stats
            .currencies
            .iter()
            .map(|(currency, c)| pb::CurrencyTotals {
                currency: currency.clone(),
                revenue_minor: c.revenue_minor,
                orders_paid: c.orders_paid,
                average_order_minor: c.average_order_minor(),
                refunded_minor: c.refunded_minor,
            })
            .collect(),
        order_to_paid_count: totals.order_to_paid.count,
        order_to_paid_p50_ms: totals.order_to_paid.p50,
        order_to_paid_p95_ms: totals.order_to_paid.p95,
        order_to_paid_p99_ms: totals.order_to_paid.p99,
        top_products: stats
            .top_products
            .iter()
            .map(|p| pb::ProductSales {
                sku: p.sku.clone(),
                units: p.units,
                currency: p.currency.clone(),
                revenue_minor: p.revenue_minor,
            })
            .collect(),
        events: stats.events.clone().into_iter().collect(),
    }
}

impl AnalyticsApi {
    /// Forgets every fact and rewinds the group, in one transaction: the
    /// running consumers notice within a second and read every topic again
    /// from the start. Returns the records there are to read again.
    pub async fn start_rebuild(&self) -> anyhow::Result<u64> {
        let records = self.lag_after(&[]).await?;
        let mut tx = self.db.begin().await?;
        facts::forget_all(&mut tx).await?;
        kit::consumer::rewind(&mut tx, GROUP).await?;
        tx.commit().await?;
        tracing::info!(
            records,
            "analytics rebuild: facts forgotten, replaying the topics"
        );
        Ok(records)
    }

    /// Records on the group's topics beyond the group's stored positions.
    pub async fn records_behind(&self) -> anyhow::Result<u64> {
        let positions = kit::consumer::positions(&self.db, Some(GROUP)).await?;
        self.lag_after(&positions).await
    }

    async fn lag_after(&self, positions: &[GroupPosition]) -> anyhow::Result<u64> {
        let described = self.bus.describe_topics().await?;
        let mut behind = 0_i64;
        for topic in described.iter().filter(|t| self.topics.contains(&t.name)) {
            for (partition, end) in topic.partition_ends.iter().enumerate() {
                let partition = i32::try_from(partition).unwrap_or(0);
                let read = positions
                    .iter()
                    .find(|p| p.topic == topic.name && p.partition == partition)
                    .map_or(0, |p| p.next_offset);
                behind += (end - read).max(0);
            }
        }
        Ok(u64::try_from(behind).unwrap_or(0))
    }
}

#[tonic::async_trait]
impl pb::analytics_server::Analytics for AnalyticsApi {
    async fn get_stats(
        &self,
        request: Request<pb::StatsRequest>,
    ) -> Result<Response<pb::Stats>, Status> {
        let request = request.into_inner();
        if request.to_minute <= request.from_minute {
            return Err(Problem::validation("to", "The window must end after it starts.").into());
        }
        if request.to_minute - request.from_minute > 31 * 24 * 60 {
            return Err(Problem::validation("from", "A window is at most 31 days long.").into());
        }
        let top = match request.top {
            0 => 10,
            1..=100 => i64::from(request.top),
            _ => return Err(Problem::validation("top", "top is 1 to 100.").into()),
        };
        let stats = stats::window(&self.db, request.from_minute, request.to_minute, top)
            .await
            .map_err(internal_status)?;
        Ok(Response::new(to_message(&stats)))
    }

    async fn rebuild(
        &self,
        _request: Request<pb::RebuildRequest>,
    ) -> Result<Response<pb::RebuildResponse>, Status> {
        let records_to_replay = self.start_rebuild().await.map_err(internal_status)?;
        Ok(Response::new(pb::RebuildResponse { records_to_replay }))
    }

    async fn get_lag(
        &self,
        _request: Request<pb::LagRequest>,
    ) -> Result<Response<pb::LagResponse>, Status> {
        let records_behind = self.records_behind().await.map_err(internal_status)?;
        Ok(Response::new(pb::LagResponse { records_behind }))
    }
}
