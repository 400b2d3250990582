//! Prometheus gauges of the last `analytics.gauge_window_minutes`,
//! recomputed from the facts every `analytics.gauge_refresh_secs` (so every
//! replica reports the same figures, and a restart loses none).

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use kit::db::{Db, now_millis};
use kit::metrics::Metrics;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use tokio_util::sync::CancellationToken;

use crate::facts::minute_of;
use crate::stats;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// created, paid, failed, cancelled.
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CurrencyLabels {
    pub currency: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QuantileLabels {
    pub quantile: &'static str,
}

type FloatGauge = Gauge<f64, AtomicU64>;

#[derive(Clone)]
pub struct Gauges {
    orders: Family<OutcomeLabels, Gauge>,
    revenue: Family<CurrencyLabels, Gauge>,
    average_order: Family<CurrencyLabels, Gauge>,
    success_rate: FloatGauge,
    order_to_paid: Family<QuantileLabels, FloatGauge>,
}

impl Gauges {
    pub fn register(metrics: &Metrics) -> Gauges {
        let gauges = Gauges {
            orders: Family::default(),
            revenue: Family::default(),
            average_order: Family::default(),
            success_rate: FloatGauge::default(),
            order_to_paid: Family::default(),
        };
        metrics.register(
            "analytics_orders",
            "Orders in the gauge window, by outcome",
            gauges.orders.clone(),
        );
        metrics.register(
            "analytics_revenue_minor",
            "Paid orders' totals in the gauge window, in minor units",
            gauges.revenue.clone(),
        );
        metrics.register(
            "analytics_average_order_minor",
            "Average paid order in the gauge window, in minor units",
            gauges.average_order.clone(),
        );
        metrics.register(
            "analytics_payment_success_ratio",
            "Payments captured over payments tried in the gauge window",
            gauges.success_rate.clone(),
        );
        metrics.register(
            "analytics_order_to_paid_seconds",
            "Time from order to paid in the gauge window",
            gauges.order_to_paid.clone(),
        );
        gauges
    }

    pub async fn refresh(&self, db: &Db, window_minutes: u32) -> Result<(), sqlx::Error> {
        let to = minute_of(now_millis()) + 1;
        let stats = stats::window(db, to - i64::from(window_minutes), to, 1).await?;
        let totals = &stats.totals;
        for (outcome, n) in [
            ("created", totals.orders_created),
            ("paid", totals.orders_paid),
            ("failed", totals.orders_failed),
            ("cancelled", totals.orders_cancelled),
        ] {
            self.orders
                .get_or_create(&OutcomeLabels { outcome })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        // Currencies that left the window read 0, not their last value.
        self.revenue.clear();
        self.average_order.clear();
        for (currency, c) in &stats.currencies {
            let labels = CurrencyLabels {
                currency: currency.clone(),
            };
            self.revenue.get_or_create(&labels).set(c.revenue_minor);
            self.average_order
                .get_or_create(&labels)
                .set(c.average_order_minor());
        }
        self.success_rate
            .set(stats.payment_success_rate().unwrap_or(0.0));
        let p = totals.order_to_paid;
        for (quantile, millis) in [("0.5", p.p50), ("0.95", p.p95), ("0.99", p.p99)] {
            self.order_to_paid
                .get_or_create(&QuantileLabels { quantile })
                .set(millis as f64 / 1000.0);
        }
        Ok(())
    }

    /// Refreshes every `every` until shutdown.
    pub async fn run(
        self,
        db: Db,
        every: Duration,
        window_minutes: u32,
        shutdown: CancellationToken,
    ) {
        loop {
            if let Err(error) = self.refresh(&db, window_minutes).await {
                tracing::warn!(%error, "cannot refresh the analytics gauges");
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
        }
    }
}
