//! A bench run's figures: the terminal summary, and the report folder
//! (`report.json`, `report.md`, SVG charts of the latency distribution and
//! of throughput and latency over time).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;

use crate::bench::{BrowsePlan, CheckoutPlan, Promises};
use crate::bench_system::{Kart, Usage};

/// Percentiles of a set of durations, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Distribution {
    pub count: u64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl Distribution {
    pub fn of(values: &[Duration]) -> Distribution {
        if values.is_empty() {
            return Distribution::default();
        }
        let mut ms: Vec<f64> = values.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
        ms.sort_by(f64::total_cmp);
        let rank = |p: f64| ms[((p * ms.len() as f64).ceil() as usize).clamp(1, ms.len()) - 1];
        Distribution {
            count: ms.len() as u64,
            p50_ms: rank(0.50),
            p95_ms: rank(0.95),
            p99_ms: rank(0.99),
            max_ms: ms[ms.len() - 1],
            mean_ms: ms.iter().sum::<f64>() / ms.len() as f64,
        }
    }
}

/// One order as the report needs it.
#[derive(Debug, Clone)]
pub struct OrderRow {
    pub sent_at: Duration,
    pub accept: Duration,
    pub settle: Option<Duration>,
    pub status: Option<String>,
}

/// One second of the run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Second {
    pub second: u64,
    pub done: u64,
    pub p99_ms: f64,
    /// Checkout: the p99 accept latency (POST → 201) of the orders whose
    /// 201 came back in this second, so a slow accept p99 shows whether it
    /// is spread over the run or a few seconds' stall.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accept_p99_ms: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub kind: &'static str,
    pub mode: &'static str,
    pub kart: String,
    pub plan: serde_json::Value,
    pub elapsed_secs: f64,
    /// Settled orders (checkout) or answered requests (browse) per second.
    pub throughput_per_sec: f64,
    pub accept: Distribution,
    /// Checkout: 201 → PAID or FAILED on the live stream.
    pub settle: Option<Distribution>,
    pub settled: u64,
    pub paid: u64,
    pub failed: u64,
    pub not_settled: u64,
    pub errors: BTreeMap<String, u64>,
    pub cpu_seconds: Option<f64>,
    pub cpu_seconds_per_1000: Option<f64>,
    pub peak_rss_mb: Option<f64>,
    pub rss_end_mb: Option<f64>,
    pub ready_ms: Option<u64>,
    pub promises: Option<Promises>,
    pub timeline: Vec<Second>,
    #[serde(skip)]
    latencies_ms: Vec<f64>,
}

fn usage_delta(
    before: Option<Usage>,
    after: Option<Usage>,
) -> (Option<f64>, Option<f64>, Option<f64>) {
    match (before, after) {
        (Some(b), Some(a)) => (
            Some(a.cpu_seconds - b.cpu_seconds),
            Some(a.peak_rss_bytes as f64 / 1_048_576.0),
            Some(a.rss_bytes as f64 / 1_048_576.0),
        ),
        _ => (None, None, None),
    }
}

/// Latencies by the second of the run they ended in.
fn by_second(points: &[(Duration, Duration)]) -> BTreeMap<u64, Vec<Duration>> {
    let mut seconds: BTreeMap<u64, Vec<Duration>> = BTreeMap::new();
    for (at, latency) in points {
        seconds.entry(at.as_secs()).or_default().push(*latency);
    }
    seconds
}

/// Per second: how many `done` points ended in it and their p99, and, for
/// checkout, the p99 of the `accepts` that ended in it.
fn timeline(
    done: &[(Duration, Duration)],
    accepts: Option<&[(Duration, Duration)]>,
) -> Vec<Second> {
    let done = by_second(done);
    let accepts = accepts.map(by_second).unwrap_or_default();
    let seconds: std::collections::BTreeSet<u64> =
        done.keys().chain(accepts.keys()).copied().collect();
    seconds
        .into_iter()
        .map(|second| {
            let values = done.get(&second).map_or(&[][..], Vec::as_slice);
            Second {
                second,
                done: values.len() as u64,
                p99_ms: Distribution::of(values).p99_ms,
                accept_p99_ms: accepts
                    .get(&second)
                    .map(|accepted| Distribution::of(accepted).p99_ms),
            }
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
pub fn checkout_report(
    plan: &CheckoutPlan,
    kart: &Kart,
    orders: &[OrderRow],
    errors: BTreeMap<String, u64>,
    elapsed: Duration,
    before: Option<Usage>,
    after: Option<Usage>,
    promises: Promises,
) -> Report {
    let accept = Distribution::of(&orders.iter().map(|o| o.accept).collect::<Vec<_>>());
    let settles: Vec<Duration> = orders.iter().filter_map(|o| o.settle).collect();
    let settled = settles.len() as u64;
    let paid = orders
        .iter()
        .filter(|o| o.status.as_deref() == Some("PAID"))
        .count() as u64;
    let (cpu, peak, rss) = usage_delta(before, after);
    let points: Vec<(Duration, Duration)> = orders
        .iter()
        .filter_map(|o| Some((o.sent_at + o.accept + o.settle?, o.settle?)))
        .collect();
    let accepts: Vec<(Duration, Duration)> = orders
        .iter()
        .map(|o| (o.sent_at + o.accept, o.accept))
        .collect();
    Report {
        kind: "checkout",
        mode: kart.mode_name(),
        kart: kart.describe(),
        plan: serde_json::json!({
            "shoppers": plan.shoppers, "rate_per_sec": plan.rate, "concurrency": plan.concurrency,
            "orders": plan.orders, "max_secs": plan.max_secs,
        }),
        elapsed_secs: elapsed.as_secs_f64(),
        throughput_per_sec: settled as f64 / elapsed.as_secs_f64().max(0.001),
        accept,
        settle: Some(Distribution::of(&settles)),
        settled,
        paid,
        failed: settled - paid,
        not_settled: orders.len() as u64 - settled,
        errors,
        cpu_seconds: cpu,
        cpu_seconds_per_1000: cpu.map(|c| c * 1000.0 / (orders.len().max(1) as f64)),
        peak_rss_mb: peak,
        rss_end_mb: rss,
        ready_ms: kart.ready_ms,
        promises: Some(promises),
        timeline: timeline(&points, Some(&accepts)),
        latencies_ms: settles.iter().map(|d| d.as_secs_f64() * 1000.0).collect(),
    }
}

pub fn browse_report(
    plan: &BrowsePlan,
    kart: &Kart,
    answered: Vec<(Duration, Duration)>,
    errors: BTreeMap<String, u64>,
    elapsed: Duration,
    before: Option<Usage>,
    after: Option<Usage>,
) -> Report {
    let latencies: Vec<Duration> = answered.iter().map(|(_, l)| *l).collect();
    let (cpu, peak, rss) = usage_delta(before, after);
    Report {
        kind: "browse",
        mode: kart.mode_name(),
        kart: kart.describe(),
        plan: serde_json::json!({"concurrency": plan.concurrency, "requests": plan.requests, "max_secs": plan.max_secs}),
        elapsed_secs: elapsed.as_secs_f64(),
        throughput_per_sec: latencies.len() as f64 / elapsed.as_secs_f64().max(0.001),
        accept: Distribution::of(&latencies),
        settle: None,
        settled: latencies.len() as u64,
        paid: 0,
        failed: 0,
        not_settled: 0,
        errors,
        cpu_seconds: cpu,
        cpu_seconds_per_1000: cpu.map(|c| c * 1000.0 / (latencies.len().max(1) as f64)),
        peak_rss_mb: peak,
        rss_end_mb: rss,
        ready_ms: kart.ready_ms,
        promises: None,
        timeline: timeline(
            &answered
                .iter()
                .map(|(at, l)| (*at + *l, *l))
                .collect::<Vec<_>>(),
            None,
        ),
        latencies_ms: latencies.iter().map(|d| d.as_secs_f64() * 1000.0).collect(),
    }
}

fn opt(value: Option<f64>, unit: &str) -> String {
    value.map_or_else(|| "not measured".to_owned(), |v| format!("{v:.1}{unit}"))
}

/// CPU time per 1,000 requests or orders: seconds for checkout, but a
/// thousand catalog reads take tens of milliseconds, which one decimal of
/// a second would show as 0.0.
fn cpu_per_1000(seconds: Option<f64>) -> String {
    match seconds {
        Some(s) if s < 1.0 => format!("{:.1} ms", s * 1000.0),
        other => opt(other, " s"),
    }
}

impl Report {
    /// Whether the end-of-run check found every promise kept.
    pub fn promises_kept(&self) -> bool {
        self.promises.as_ref().is_none_or(|p| {
            p.not_terminal.is_empty() && p.wrong_captures.is_empty() && p.stock_adds_up
        })
    }

    pub fn summary(&self) -> String {
        let mut out = String::new();
        let what = if self.kind == "checkout" {
            "settled orders/s"
        } else {
            "requests/s"
        };
        let _ = writeln!(
            out,
            "{} bench, {} ({:.1} s)",
            self.kind, self.kart, self.elapsed_secs
        );
        let _ = writeln!(
            out,
            "  throughput      {:.0} {what}",
            self.throughput_per_sec
        );
        let label = if self.kind == "checkout" {
            "accept (→201)"
        } else {
            "latency"
        };
        let a = self.accept;
        let _ = writeln!(
            out,
            "  {label:<15} p50 {:.1} ms  p95 {:.1} ms  p99 {:.1} ms  max {:.1} ms",
            a.p50_ms, a.p95_ms, a.p99_ms, a.max_ms
        );
        if let Some(s) = self.settle {
            let _ = writeln!(
                out,
                "  settle (→PAID)  p50 {:.1} ms  p95 {:.1} ms  p99 {:.1} ms  max {:.1} ms",
                s.p50_ms, s.p95_ms, s.p99_ms, s.max_ms
            );
            let _ = writeln!(
                out,
                "  orders          {} paid, {} failed, {} not settled",
                self.paid, self.failed, self.not_settled
            );
        }
        if !self.errors.is_empty() {
            let _ = writeln!(out, "  errors          {:?}", self.errors);
        }
        let _ = writeln!(
            out,
            "  Kart's cost     {} CPU per 1,000, peak RSS {}",
            cpu_per_1000(self.cpu_seconds_per_1000),
            opt(self.peak_rss_mb, " MB")
        );
        if let Some(p) = &self.promises {
            let _ = writeln!(
                out,
                "  promises        {} of {} accepted orders terminal; {} wrong captures; stock {} (on hand {} of {} at start, {} reserved)",
                p.terminal,
                p.accepted,
                p.wrong_captures.len(),
                if p.stock_adds_up {
                    "adds up"
                } else {
                    "DOES NOT ADD UP"
                },
                p.stock_end_on_hand,
                p.stock_start,
                p.stock_end_reserved
            );
        }
        out
    }

    fn markdown(&self) -> String {
        let mut md = format!(
            "# kart bench {}: {}\n\n{}\n\n",
            self.kind, self.mode, self.kart
        );
        md.push_str("| figure | value |\n|---|---|\n");
        let mut row = |k: &str, v: String| {
            let _ = writeln!(md, "| {k} | {v} |");
        };
        row("plan", self.plan.to_string());
        row("duration", format!("{:.1} s", self.elapsed_secs));
        row(
            if self.kind == "checkout" {
                "settled orders/s"
            } else {
                "requests/s"
            },
            format!("{:.0}", self.throughput_per_sec),
        );
        let a = self.accept;
        row(
            if self.kind == "checkout" {
                "accept latency p50 / p95 / p99 / max"
            } else {
                "latency p50 / p95 / p99 / max"
            },
            format!(
                "{:.1} / {:.1} / {:.1} / {:.1} ms",
                a.p50_ms, a.p95_ms, a.p99_ms, a.max_ms
            ),
        );
        let slowest_accepts = self
            .timeline
            .iter()
            .filter_map(|s| Some((s.second, s.accept_p99_ms?)))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        if let Some((second, p99)) = slowest_accepts {
            row(
                "slowest second's accept p99",
                format!("{p99:.1} ms (second {second})"),
            );
        }
        if let Some(s) = self.settle {
            row(
                "order → PAID p50 / p95 / p99 / max",
                format!(
                    "{:.1} / {:.1} / {:.1} / {:.1} ms",
                    s.p50_ms, s.p95_ms, s.p99_ms, s.max_ms
                ),
            );
            row(
                "paid / failed / not settled",
                format!("{} / {} / {}", self.paid, self.failed, self.not_settled),
            );
        }
        row(
            "errors",
            if self.errors.is_empty() {
                "none".into()
            } else {
                format!("{:?}", self.errors)
            },
        );
        row(
            "CPU time per 1,000",
            cpu_per_1000(self.cpu_seconds_per_1000),
        );
        row("peak RSS (largest process)", opt(self.peak_rss_mb, " MB"));
        if let Some(ms) = self.ready_ms {
            row("ready in", format!("{ms} ms"));
        }
        if let Some(p) = &self.promises {
            row(
                "promises",
                format!(
                    "{}/{} terminal, {} wrong captures, stock {}",
                    p.terminal,
                    p.accepted,
                    p.wrong_captures.len(),
                    if p.stock_adds_up {
                        "adds up"
                    } else {
                        "does not add up"
                    }
                ),
            );
        }
        md.push_str("\n![latency histogram](latency.svg)\n\n![throughput and p99 over time](timeline.svg)\n");
        md
    }

    /// Writes `report.json`, `report.md`, `latency.svg` and `timeline.svg`.
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::write(dir.join("report.json"), serde_json::to_string_pretty(self)?)?;
        std::fs::write(dir.join("report.md"), self.markdown())?;
        let title = if self.kind == "checkout" {
            "order → PAID latency (ms)"
        } else {
            "request latency (ms)"
        };
        std::fs::write(
            dir.join("latency.svg"),
            histogram_svg(title, &self.latencies_ms),
        )?;
        std::fs::write(dir.join("timeline.svg"), timeline_svg(&self.timeline))?;
        Ok(())
    }
}

const W: f64 = 640.0;
const H: f64 = 260.0;
const PAD: f64 = 40.0;

fn svg_open(title: &str) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {W} {H}\" font-family=\"sans-serif\" font-size=\"11\">\
         <rect width=\"{W}\" height=\"{H}\" fill=\"#fff\"/><text x=\"{PAD}\" y=\"18\" font-size=\"13\" font-weight=\"bold\">{}</text>\
         <line x1=\"{PAD}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#888\"/><line x1=\"{PAD}\" y1=\"{PAD}\" x2=\"{PAD}\" y2=\"{}\" stroke=\"#888\"/>",
        kit::http::escape_html(title),
        H - PAD,
        W - PAD,
        H - PAD,
        H - PAD
    )
}

/// Latencies in 40 buckets from 0 to the 99.9th percentile (the rest in the last).
fn histogram_svg(title: &str, values: &[f64]) -> String {
    let mut svg = svg_open(title);
    if values.is_empty() {
        svg.push_str("<text x=\"300\" y=\"130\">no data</text></svg>");
        return svg;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let top = sorted[((sorted.len() as f64 * 0.999) as usize).min(sorted.len() - 1)].max(0.001);
    let buckets = 40;
    let mut counts = vec![0_u64; buckets];
    for v in values {
        let i = ((v / top) * buckets as f64) as usize;
        counts[i.min(buckets - 1)] += 1;
    }
    let max = *counts.iter().max().unwrap_or(&1) as f64;
    let width = (W - 2.0 * PAD) / buckets as f64;
    for (i, count) in counts.iter().enumerate() {
        let height = (*count as f64 / max) * (H - 2.0 * PAD - 10.0);
        let _ = write!(
            svg,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{height:.1}\" fill=\"#0b5cad\"/>",
            PAD + i as f64 * width,
            H - PAD - height,
            width - 1.0
        );
    }
    let _ = write!(
        svg,
        "<text x=\"{PAD}\" y=\"{}\">0</text><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{top:.1} ms</text><text x=\"4\" y=\"{}\">{max:.0}</text></svg>",
        H - PAD + 14.0,
        W - PAD,
        H - PAD + 14.0,
        PAD + 4.0
    );
    svg
}

/// Done per second (bars), the second's p99 latency (red line) and, for
/// checkout, its p99 accept latency (orange line), both on one scale.
fn timeline_svg(seconds: &[Second]) -> String {
    let with_accepts = seconds.iter().any(|s| s.accept_p99_ms.is_some());
    let mut svg = svg_open(if with_accepts {
        "per second: done (bars), p99 latency (red), p99 accept (orange)"
    } else {
        "per second: done (bars), p99 latency (line)"
    });
    if seconds.is_empty() {
        svg.push_str("<text x=\"300\" y=\"130\">no data</text></svg>");
        return svg;
    }
    let last = seconds.iter().map(|s| s.second).max().unwrap_or(0) + 1;
    let max_done = seconds.iter().map(|s| s.done).max().unwrap_or(1).max(1) as f64;
    let max_p99 = seconds
        .iter()
        .flat_map(|s| [Some(s.p99_ms), s.accept_p99_ms])
        .flatten()
        .fold(0.001, f64::max);
    let width = (W - 2.0 * PAD) / last as f64;
    let y = |v: f64, max: f64| H - PAD - (v / max) * (H - 2.0 * PAD - 10.0);
    let mut line = String::new();
    let mut accept_line = String::new();
    for s in seconds {
        let x = PAD + s.second as f64 * width;
        let _ = write!(
            svg,
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"#9cc3e8\"/>",
            y(s.done as f64, max_done),
            (width - 1.0).max(0.5),
            H - PAD - y(s.done as f64, max_done)
        );
        // A second in which nothing was done has no latency to draw.
        if s.done > 0 {
            let _ = write!(line, "{:.1},{:.1} ", x + width / 2.0, y(s.p99_ms, max_p99));
        }
        if let Some(accept) = s.accept_p99_ms {
            let _ = write!(
                accept_line,
                "{:.1},{:.1} ",
                x + width / 2.0,
                y(accept, max_p99)
            );
        }
    }
    let _ = write!(
        svg,
        "<polyline points=\"{line}\" fill=\"none\" stroke=\"#a4211b\" stroke-width=\"2\"/>"
    );
    if with_accepts {
        let _ = write!(
            svg,
            "<polyline points=\"{accept_line}\" fill=\"none\" stroke=\"#d9822b\" stroke-width=\"1.5\"/>"
        );
    }
    let _ = write!(
        svg,
        "<text x=\"4\" y=\"{}\">{max_done:.0}/s</text><text x=\"{}\" y=\"{}\" text-anchor=\"end\" fill=\"#a4211b\">p99 {max_p99:.1} ms</text>\
         <text x=\"{}\" y=\"{}\" text-anchor=\"end\">{last} s</text></svg>",
        PAD + 4.0,
        W - PAD,
        PAD + 4.0,
        W - PAD,
        H - PAD + 14.0
    );
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let values: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let d = Distribution::of(&values);
        assert_eq!(
            (d.count, d.p50_ms, d.p95_ms, d.p99_ms, d.max_ms),
            (100, 50.0, 95.0, 99.0, 100.0)
        );
        assert_eq!(Distribution::of(&[]).count, 0);
    }

    #[test]
    fn cpu_cost_keeps_its_digits_below_a_second() {
        assert_eq!(cpu_per_1000(Some(4.34)), "4.3 s");
        assert_eq!(cpu_per_1000(Some(0.0263)), "26.3 ms");
        assert_eq!(cpu_per_1000(None), "not measured");
    }

    #[test]
    fn charts_are_svg_even_without_data() {
        assert!(histogram_svg("x", &[]).ends_with("</svg>"));
        let svg = histogram_svg("x", &[1.0, 2.0, 3.0]);
        assert_eq!(svg.matches("<rect").count(), 41);
        assert!(timeline_svg(&[]).ends_with("</svg>"));
    }

    #[test]
    fn the_timeline_gives_each_second_its_own_accept_p99() {
        let ms = Duration::from_millis;
        // Accepted in seconds 0 and 1; settled in seconds 1 and 2 only.
        let accepts = [(ms(100), ms(4)), (ms(900), ms(30)), (ms(1_500), ms(6))];
        let settles = [(ms(1_200), ms(50)), (ms(2_100), ms(70))];
        let seconds = timeline(&settles, Some(&accepts));
        let rows: Vec<(u64, u64, f64, Option<f64>)> = seconds
            .iter()
            .map(|s| (s.second, s.done, s.p99_ms, s.accept_p99_ms))
            .collect();
        assert_eq!(
            rows,
            vec![
                (0, 0, 0.0, Some(30.0)),
                (1, 1, 50.0, Some(6.0)),
                (2, 1, 70.0, None),
            ]
        );
        let svg = timeline_svg(&seconds);
        assert_eq!(svg.matches("<polyline").count(), 2);
        // Second 0 settled nothing: the settle line starts at second 1.
        let settle_line = svg.split("<polyline points=\"").nth(1).unwrap_or("");
        assert_eq!(
            settle_line
                .split(' ')
                .take_while(|p| p.contains(','))
                .count(),
            2
        );

        let browse = timeline(&settles, None);
        assert!(browse.iter().all(|s| s.accept_p99_ms.is_none()));
        assert_eq!(timeline_svg(&browse).matches("<polyline").count(), 1);
    }
}
