//! Turning a run into a human table and one JSON line.
//!
//! The headline figure is **messages per broker CPU-second**: deliveries
//! received by the subscribers divided by the CPU time the broker process
//! spent (user + system) during the run. On a shared, noisy 2-core machine
//! wall-clock rates move with whatever else runs; CPU cost per message does
//! not, much. The bench's own CPU time is reported too: a run where the bench
//! is near 100 % of its core measured the bench, not the broker.

use std::fmt::Write as _;
use std::time::Duration;

use crate::args::{Options, Scenario, Target};
use crate::procstat::Sample;
use crate::verify::Counts;

/// CPU and memory readings around a run.
#[derive(Clone, Copy, Debug)]
pub struct Measures {
    pub broker_cpu: Option<Duration>,
    pub broker_rss_before_kb: Option<u64>,
    pub broker_rss_after_kb: Option<u64>,
    /// How often the broker blocked in its poll over the measured stage.
    pub broker_sleeps: Option<u64>,
    pub bench_cpu: Duration,
}

impl Measures {
    pub fn new(
        broker_before: Option<Sample>,
        broker_after: Option<Sample>,
        bench_before: Sample,
        bench_after: Sample,
    ) -> Measures {
        Measures {
            broker_cpu: broker_before
                .zip(broker_after)
                .map(|(a, b)| b.cpu.saturating_sub(a.cpu)),
            broker_rss_before_kb: broker_before.map(|s| s.rss_kb),
            broker_rss_after_kb: broker_after.map(|s| s.rss_kb),
            broker_sleeps: broker_before
                .zip(broker_after)
                .and_then(|(a, b)| Some(b.sleeps?.saturating_sub(a.sleeps?))),
            bench_cpu: bench_after.cpu.saturating_sub(bench_before.cpu),
        }
    }
}

pub struct LoadResult {
    pub opts: Options,
    pub setup: Duration,
    /// From the first PUBLISH to the last delivery.
    pub elapsed: Duration,
    pub counts: Counts,
    pub stalls: u64,
    pub protocol_errors: u64,
    /// Sorted.
    pub latencies_ns: Vec<u64>,
    pub measures: Measures,
}

pub struct ConnsResult {
    pub opts: Options,
    pub conns: usize,
    /// From the first connect to the last CONNACK.
    pub elapsed: Duration,
    /// `broker_cpu` and the RSS pair cover the connect stage.
    pub measures: Measures,
    /// RSS after holding the clients idle for `--hold`.
    pub rss_held_kb: Option<u64>,
}

/// The `q`th quantile (0..=1) of sorted values, nearest rank.
pub fn quantile(sorted: &[u64], q: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted.get(rank - 1).copied()
}

fn per_second(count: u64, d: Duration) -> Option<f64> {
    let s = d.as_secs_f64();
    (s > 0.0).then(|| count as f64 / s)
}

/// A small JSON object writer: the crate has no serde.
struct Json(String);

impl Json {
    fn new() -> Json {
        Json(String::from("{"))
    }
    fn key(&mut self, k: &str) {
        if self.0.len() > 1 {
            self.0.push(',');
        }
        let _ = write!(self.0, "\"{k}\":");
    }
    fn str(&mut self, k: &str, v: &str) {
        self.key(k);
        self.0.push('"');
        for ch in v.chars() {
            match ch {
                '"' => self.0.push_str("\\\""),
                '\\' => self.0.push_str("\\\\"),
                c if (c as u32) < 0x20 => {
                    let _ = write!(self.0, "\\u{:04x}", c as u32);
                }
                c => self.0.push(c),
            }
        }
        self.0.push('"');
    }
    fn int(&mut self, k: &str, v: impl Into<u64>) {
        self.key(k);
        let _ = write!(self.0, "{}", v.into());
    }
    fn num(&mut self, k: &str, v: Option<f64>) {
        self.key(k);
        match v {
            Some(v) if v.is_finite() => {
                let _ = write!(self.0, "{v:.3}");
            }
            _ => self.0.push_str("null"),
        }
    }
    fn bool(&mut self, k: &str, v: bool) {
        self.key(k);
        self.0.push_str(if v { "true" } else { "false" });
    }
    fn finish(mut self) -> String {
        self.0.push('}');
        self.0
    }
}

fn target(o: &Options) -> String {
    match &o.target {
        Target::Tcp(a) => format!("tcp {a}"),
        Target::Unix(p) => format!("unix {}", p.display()),
    }
}

fn common(j: &mut Json, o: &Options, m: &Measures) {
    j.str("bench", "sol-bench");
    j.str("scenario", o.scenario.name());
    j.str("broker", &o.label);
    j.str("target", &target(o));
    j.num("broker_cpu_s", m.broker_cpu.map(|d| d.as_secs_f64()));
    j.num("bench_cpu_s", Some(m.bench_cpu.as_secs_f64()));
    j.num(
        "broker_rss_before_kb",
        m.broker_rss_before_kb.map(|v| v as f64),
    );
    j.num(
        "broker_rss_after_kb",
        m.broker_rss_after_kb.map(|v| v as f64),
    );
    j.num("broker_sleeps", m.broker_sleeps.map(|v| v as f64));
}

fn fmt_rate(v: Option<f64>) -> String {
    match v {
        None => "-".to_string(),
        Some(v) if v >= 1e6 => format!("{:.2} M", v / 1e6),
        Some(v) if v >= 1e3 => format!("{:.1} k", v / 1e3),
        Some(v) => format!("{v:.0}"),
    }
}

fn fmt_us(ns: Option<u64>) -> String {
    ns.map_or("-".to_string(), |ns| format!("{:.1} us", ns as f64 / 1e3))
}

impl LoadResult {
    pub fn per_broker_cpu_second(&self) -> Option<f64> {
        per_second(self.counts.received, self.measures.broker_cpu?)
    }

    pub fn json(&self) -> String {
        let o = &self.opts;
        let c = &self.counts;
        let (pubs, subs) = o.shape();
        let mut j = Json::new();
        common(&mut j, o, &self.measures);
        j.int("qos", o.qos as u8);
        j.int("size", o.size as u64);
        j.int("pubs", pubs as u64);
        j.int("subs", subs as u64);
        j.num("rate", o.rate);
        j.num("elapsed_s", Some(self.elapsed.as_secs_f64()));
        j.num("setup_s", Some(self.setup.as_secs_f64()));
        j.int("sent", c.sent);
        j.int("expected", c.expected);
        j.int("received", c.received);
        j.int("lost", c.lost);
        j.int("duplicated", c.duplicated);
        j.int("out_of_order", c.out_of_order);
        j.int("foreign", c.foreign);
        j.int("stalls", self.stalls);
        j.int("protocol_errors", self.protocol_errors);
        j.bool("verified", c.verified() && self.protocol_errors == 0);
        j.num("msgs_per_s", per_second(c.received, self.elapsed));
        j.num("msgs_per_broker_cpu_s", self.per_broker_cpu_second());
        j.num(
            "bench_cpu_pct",
            Some(
                100.0 * self.measures.bench_cpu.as_secs_f64()
                    / self.elapsed.as_secs_f64().max(1e-9),
            ),
        );
        let l = &self.latencies_ns;
        let us = |q: f64| quantile(l, q).map(|ns| ns as f64 / 1e3);
        j.num("latency_p50_us", us(0.5));
        j.num("latency_p99_us", us(0.99));
        j.num("latency_max_us", l.last().map(|&ns| ns as f64 / 1e3));
        j.int("latency_samples", l.len() as u64);
        j.finish()
    }

    pub fn table(&self) -> String {
        let o = &self.opts;
        let c = &self.counts;
        let (pubs, subs) = o.shape();
        let mut t = String::new();
        let verdict = if c.verified() && self.protocol_errors == 0 {
            "verified"
        } else {
            "NOT VERIFIED"
        };
        let _ = writeln!(
            t,
            "{} {} against {} ({}): {pubs} pub, {subs} sub, QoS {}, {} B",
            o.scenario.name(),
            verdict,
            o.label,
            target(o),
            o.qos as u8,
            o.size
        );
        let rows: Vec<(&str, String)> = vec![
            ("sent", c.sent.to_string()),
            ("expected deliveries", c.expected.to_string()),
            ("received", c.received.to_string()),
            (
                "lost / duplicated / out of order",
                format!("{} / {} / {}", c.lost, c.duplicated, c.out_of_order),
            ),
            ("elapsed", format!("{:.3} s", self.elapsed.as_secs_f64())),
            (
                "messages per second",
                fmt_rate(per_second(c.received, self.elapsed)),
            ),
            (
                "broker CPU",
                self.measures
                    .broker_cpu
                    .map_or("- (no --pid)".to_string(), |d| {
                        format!("{:.2} s", d.as_secs_f64())
                    }),
            ),
            (
                "messages per broker CPU-second",
                fmt_rate(self.per_broker_cpu_second()),
            ),
            (
                "bench CPU",
                format!(
                    "{:.2} s ({:.0} % of elapsed)",
                    self.measures.bench_cpu.as_secs_f64(),
                    100.0 * self.measures.bench_cpu.as_secs_f64()
                        / self.elapsed.as_secs_f64().max(1e-9)
                ),
            ),
            (
                "latency p50 / p99 / max",
                format!(
                    "{} / {} / {}",
                    fmt_us(quantile(&self.latencies_ns, 0.5)),
                    fmt_us(quantile(&self.latencies_ns, 0.99)),
                    fmt_us(self.latencies_ns.last().copied())
                ),
            ),
        ];
        for (k, v) in rows {
            let _ = writeln!(t, "  {k:<34} {v}");
        }
        if self.stalls > 0 || self.protocol_errors > 0 || c.foreign > 0 {
            let _ = writeln!(
                t,
                "  {:<34} {} stalls, {} protocol errors, {} foreign payloads",
                "anomalies", self.stalls, self.protocol_errors, c.foreign
            );
        }
        t
    }
}

impl ConnsResult {
    fn rss_per_conn(&self) -> Option<f64> {
        let before = self.measures.broker_rss_before_kb?;
        let after = self.rss_held_kb?;
        Some((after as f64 - before as f64) * 1024.0 / self.conns.max(1) as f64)
    }

    pub fn json(&self) -> String {
        let mut j = Json::new();
        common(&mut j, &self.opts, &self.measures);
        j.int("conns", self.conns as u64);
        j.int("sources", self.opts.sources);
        j.int("concurrency", self.opts.concurrency as u64);
        j.num("connect_s", Some(self.elapsed.as_secs_f64()));
        j.num(
            "connects_per_s",
            per_second(self.conns as u64, self.elapsed),
        );
        j.num(
            "broker_cpu_us_per_connect",
            self.measures
                .broker_cpu
                .map(|d| d.as_secs_f64() * 1e6 / self.conns.max(1) as f64),
        );
        j.num(
            "bench_cpu_us_per_connect",
            Some(self.measures.bench_cpu.as_secs_f64() * 1e6 / self.conns.max(1) as f64),
        );
        j.num(
            "broker_sleeps_per_connect",
            self.measures
                .broker_sleeps
                .map(|v| v as f64 / self.conns.max(1) as f64),
        );
        j.num("broker_rss_held_kb", self.rss_held_kb.map(|v| v as f64));
        j.num("rss_per_conn_bytes", self.rss_per_conn());
        j.bool("verified", true);
        j.finish()
    }

    pub fn table(&self) -> String {
        let mut t = String::new();
        let _ = writeln!(
            t,
            "conns against {} ({}): {} idle clients from {} source address(es)",
            self.opts.label,
            target(&self.opts),
            self.conns,
            self.opts.sources
        );
        let kb = |v: Option<u64>| v.map_or("-".to_string(), |v| format!("{v} kB"));
        let rows = [
            (
                "connect time",
                format!("{:.3} s", self.elapsed.as_secs_f64()),
            ),
            (
                "connects per second",
                fmt_rate(per_second(self.conns as u64, self.elapsed)),
            ),
            (
                "broker CPU while connecting",
                self.measures
                    .broker_cpu
                    .map_or("- (no --pid)".to_string(), |d| {
                        format!("{:.2} s", d.as_secs_f64())
                    }),
            ),
            (
                "broker sleeps while connecting",
                self.measures
                    .broker_sleeps
                    .map_or("-".to_string(), |n| n.to_string()),
            ),
            ("broker RSS before", kb(self.measures.broker_rss_before_kb)),
            (
                "broker RSS, all connected",
                kb(self.measures.broker_rss_after_kb),
            ),
            ("broker RSS after holding", kb(self.rss_held_kb)),
            (
                "RSS per idle connection",
                self.rss_per_conn()
                    .map_or("-".to_string(), |b| format!("{b:.0} B")),
            ),
            (
                "bench CPU",
                format!("{:.2} s", self.measures.bench_cpu.as_secs_f64()),
            ),
        ];
        for (k, v) in rows {
            let _ = writeln!(t, "  {k:<34} {v}");
        }
        t
    }
}

/// Whether the scenario's report is a load report.
pub fn is_load(s: Scenario) -> bool {
    s != Scenario::Conns
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_quantiles() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(quantile(&v, 0.5), Some(50));
        assert_eq!(quantile(&v, 0.99), Some(99));
        assert_eq!(quantile(&v, 1.0), Some(100));
        assert_eq!(quantile(&[7], 0.99), Some(7));
        assert_eq!(quantile(&[], 0.5), None);
    }

    #[test]
    fn json_escapes_and_nulls() {
        let mut j = Json::new();
        j.str("a", "x\"y\\z\n");
        j.num("b", None);
        j.num("c", Some(1.5));
        j.int("d", 3u8);
        assert_eq!(
            j.finish(),
            r#"{"a":"x\"y\\z\u000a","b":null,"c":1.500,"d":3}"#
        );
    }
}
