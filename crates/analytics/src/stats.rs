//! From facts to figures: each minute's counts, revenue and order-to-paid
//! percentiles over a window, and the window's totals.

use std::collections::BTreeMap;

use kit::db::Db;

/// Sums are cast to BIGINT: PostgreSQL's SUM of a BIGINT is NUMERIC,
/// which the portable driver does not read.
const PER_MINUTE_ORDERS: &str = "SELECT {col} / 60000 AS minute, currency, COUNT(*) AS n,
        CAST(SUM(total_minor) AS BIGINT) AS amount
     FROM order_facts WHERE {col} >= $1 AND {col} < $2
     GROUP BY {col} / 60000, currency";

/// One minute's figures.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Minute {
    pub minute: i64,
    pub orders_created: u64,
    pub orders_paid: u64,
    pub orders_failed: u64,
    pub orders_cancelled: u64,
    pub payments_captured: u64,
    pub payments_failed: u64,
    /// Paid orders' totals, by currency.
    pub revenue: BTreeMap<String, i64>,
    pub order_to_paid: Percentiles,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Percentiles {
    pub count: u64,
    pub p50: i64,
    pub p95: i64,
    pub p99: i64,
}

impl Percentiles {
    /// Nearest-rank percentiles of `values` (sorted here).
    pub fn of(values: &mut [i64]) -> Percentiles {
        if values.is_empty() {
            return Percentiles::default();
        }
        values.sort_unstable();
        let rank = |p: f64| {
            let n = values.len();
            // Nearest rank: the smallest value with at least p of them at
            // or below it.
            let index = ((p * n as f64).ceil() as usize).clamp(1, n) - 1;
            values[index]
        };
        Percentiles {
            count: values.len() as u64,
            p50: rank(0.50),
            p95: rank(0.95),
            p99: rank(0.99),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct CurrencyTotals {
    pub revenue_minor: i64,
    pub orders_paid: u64,
    pub refunded_minor: i64,
}

impl CurrencyTotals {
    pub fn average_order_minor(&self) -> i64 {
        match i64::try_from(self.orders_paid) {
            Ok(n) if n > 0 => self.revenue_minor / n,
            _ => 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductSales {
    pub sku: String,
    pub currency: String,
    pub units: u64,
    pub revenue_minor: i64,
}

/// A window's figures.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    pub from_minute: i64,
    pub to_minute: i64,
    /// Only minutes with something in them, oldest first.
    pub minutes: Vec<Minute>,
    pub totals: Minute,
    pub currencies: BTreeMap<String, CurrencyTotals>,
    pub top_products: Vec<ProductSales>,
    pub events: BTreeMap<String, u64>,
}

impl Stats {
    /// captured / (captured + failed), or `None` with no payment at all.
    pub fn payment_success_rate(&self) -> Option<f64> {
        let tried = self.totals.payments_captured + self.totals.payments_failed;
        (tried > 0).then(|| self.totals.payments_captured as f64 / tried as f64)
    }
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// The figures for minutes `[from_minute, to_minute)`, with the `top`
/// best-selling products (by units) of the orders paid in it.
///
/// Read through [`Db::reader`]: the queries scan the whole window (a
/// 100,000-order bench run makes the latency query alone take a second on
/// SQLite) and on the writer they would hold up the consumer recording
/// the facts, every gauge refresh.
pub async fn window(
    db: &Db,
    from_minute: i64,
    to_minute: i64,
    top: i64,
) -> Result<Stats, sqlx::Error> {
    let from = from_minute.saturating_mul(60_000);
    let to = to_minute.saturating_mul(60_000);
    let mut minutes: BTreeMap<i64, Minute> = BTreeMap::new();
    let mut totals = Minute::default();
    let mut currencies: BTreeMap<String, CurrencyTotals> = BTreeMap::new();

    for column in ["created_at", "paid_at", "failed_at", "cancelled_at"] {
        let rows: Vec<(i64, String, i64, Option<i64>)> =
            sqlx::query_as(&PER_MINUTE_ORDERS.replace("{col}", column))
                .bind(from)
                .bind(to)
                .fetch_all(&mut *db.read().await?)
                .await?;
        for (minute, currency, n, amount) in rows {
            let entry = minutes.entry(minute).or_insert_with(|| Minute {
                minute,
                ..Minute::default()
            });
            let n = count(n);
            let (slot, total) = match column {
                "created_at" => (&mut entry.orders_created, &mut totals.orders_created),
                "paid_at" => (&mut entry.orders_paid, &mut totals.orders_paid),
                "failed_at" => (&mut entry.orders_failed, &mut totals.orders_failed),
                _ => (&mut entry.orders_cancelled, &mut totals.orders_cancelled),
            };
            *slot += n;
            *total += n;
            if column == "paid_at" && !currency.is_empty() {
                let amount = amount.unwrap_or(0);
                *entry.revenue.entry(currency.clone()).or_default() += amount;
                *totals.revenue.entry(currency.clone()).or_default() += amount;
                let totals = currencies.entry(currency).or_default();
                totals.revenue_minor += amount;
                totals.orders_paid += n;
            }
        }
    }

    let payments: Vec<(i64, String, i64)> = sqlx::query_as(
        "SELECT at / 60000 AS minute, outcome, COUNT(*) FROM payment_facts
         WHERE at >= $1 AND at < $2 GROUP BY at / 60000, outcome",
    )
    .bind(from)
    .bind(to)
    .fetch_all(&mut *db.read().await?)
    .await?;
    for (minute, outcome, n) in payments {
        let entry = minutes.entry(minute).or_insert_with(|| Minute {
            minute,
            ..Minute::default()
        });
        let n = count(n);
        if outcome == "captured" {
            entry.payments_captured += n;
            totals.payments_captured += n;
        } else {
            entry.payments_failed += n;
            totals.payments_failed += n;
        }
    }

    let latencies: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT paid_at / 60000 AS minute, paid_at - created_at FROM order_facts
         WHERE paid_at >= $1 AND paid_at < $2 AND created_at IS NOT NULL",
    )
    .bind(from)
    .bind(to)
    .fetch_all(&mut *db.read().await?)
    .await?;
    let mut by_minute: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    let mut all = Vec::with_capacity(latencies.len());
    for (minute, latency) in latencies {
        let latency = latency.max(0);
        by_minute.entry(minute).or_default().push(latency);
        all.push(latency);
    }
    for (minute, mut values) in by_minute {
        if let Some(entry) = minutes.get_mut(&minute) {
            entry.order_to_paid = Percentiles::of(&mut values);
        }
    }
    totals.order_to_paid = Percentiles::of(&mut all);

    let refunds: Vec<(String, Option<i64>)> = sqlx::query_as(
        "SELECT currency, CAST(SUM(amount_minor) AS BIGINT) FROM refund_facts
         WHERE at >= $1 AND at < $2 GROUP BY currency",
    )
    .bind(from)
    .bind(to)
    .fetch_all(&mut *db.read().await?)
    .await?;
    for (currency, amount) in refunds {
        currencies.entry(currency).or_default().refunded_minor += amount.unwrap_or(0);
    }

    let products: Vec<(String, String, Option<i64>, Option<i64>)> = sqlx::query_as(
        "SELECT l.sku, l.currency, CAST(SUM(l.quantity) AS BIGINT) AS units,
             CAST(SUM(l.quantity * l.unit_minor) AS BIGINT)
         FROM order_line_facts l JOIN order_facts o ON o.order_id = l.order_id
         WHERE o.paid_at >= $1 AND o.paid_at < $2
         GROUP BY l.sku, l.currency ORDER BY units DESC, l.sku LIMIT $3",
    )
    .bind(from)
    .bind(to)
    .bind(top)
    .fetch_all(&mut *db.read().await?)
    .await?;
    let top_products = products
        .into_iter()
        .map(|(sku, currency, units, revenue)| ProductSales {
            sku,
            currency,
            units: count(units.unwrap_or(0)),
            revenue_minor: revenue.unwrap_or(0),
        })
        .collect();

    let events: Vec<(String, Option<i64>)> = sqlx::query_as(
        "SELECT event_type, CAST(SUM(count) AS BIGINT) FROM event_counts
         WHERE minute >= $1 AND minute < $2 GROUP BY event_type",
    )
    .bind(from_minute)
    .bind(to_minute)
    .fetch_all(&mut *db.read().await?)
    .await?;

    Ok(Stats {
        from_minute,
        to_minute,
        minutes: minutes.into_values().collect(),
        totals,
        currencies,
        top_products,
        events: events
            .into_iter()
            .map(|(t, n)| (t, count(n.unwrap_or(0))))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut values: Vec<i64> = (1..=100).rev().collect();
        let p = Percentiles::of(&mut values);
        assert_eq!((p.count, p.p50, p.p95, p.p99), (100, 50, 95, 99));
        let mut one = vec![7];
        let p = Percentiles::of(&mut one);
        assert_eq!((p.p50, p.p95, p.p99), (7, 7, 7));
        assert_eq!(Percentiles::of(&mut []), Percentiles::default());
    }

    #[test]
    fn the_average_order_is_revenue_over_orders_paid() {
        let totals = CurrencyTotals {
            revenue_minor: 1001,
            orders_paid: 2,
            refunded_minor: 0,
        };
        assert_eq!(totals.average_order_minor(), 500);
        assert_eq!(CurrencyTotals::default().average_order_minor(), 0);
    }

    #[test]
    fn no_payment_has_no_success_rate() {
        let mut stats = Stats::default();
        assert_eq!(stats.payment_success_rate(), None);
        stats.totals.payments_captured = 3;
        stats.totals.payments_failed = 1;
        assert_eq!(stats.payment_success_rate(), Some(0.75));
    }
}
