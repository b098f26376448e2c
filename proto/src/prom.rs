//! Prometheus metrics, hand-rolled: the two hot-path types Herd records into
//! ([`Counter`], [`Histogram`], both lock-free atomics that never allocate)
//! and a writer for the text exposition format 0.0.4 ([`Exposition`]).
//!
//! Why not a crate: the `prometheus` crate pulls in protobuf and a global
//! registry, `metrics` + an exporter brings its own HTTP server and a
//! recorder indirection on every increment. Herd needs counters, a few
//! histograms and gauges it computes at scrape time from state it already
//! keeps (registry, status), so a small writer is less code to trust.
//!
//! A service renders its page on each scrape: it starts an [`Exposition`],
//! declares each family once ([`Exposition::family`]) and writes its samples.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rust_decimal::Decimal;

/// Latency buckets in seconds (1 ms .. 10 s).
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub const fn new() -> Counter {
        Counter(AtomicU64::new(0))
    }

    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A histogram with fixed upper bounds. `observe` is three relaxed atomic
/// updates; the cumulative `_bucket` counts are built when rendering.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// One count per bound, plus the last for values above every bound.
    counts: Box<[AtomicU64]>,
    /// The f64 sum, as bits.
    sum: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    /// `bounds` must be sorted ascending (`+Inf` is implied).
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0f64.to_bits()),
            count: AtomicU64::new(0),
        }
    }

    /// Latency buckets ([`LATENCY_BUCKETS`]).
    pub fn latency() -> Histogram {
        Histogram::new(LATENCY_BUCKETS)
    }

    pub fn observe(&self, v: f64) {
        let i = self
            .bounds
            .iter()
            .position(|b| v <= *b)
            .unwrap_or(self.bounds.len());
        if let Some(c) = self.counts.get(i) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        let _ = self
            .sum
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + v).to_bits())
            });
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn observe_duration(&self, d: Duration) {
        self.observe(d.as_secs_f64());
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    pub fn sum(&self) -> f64 {
        f64::from_bits(self.sum.load(Ordering::Relaxed))
    }
}

/// A metric family's type, as the `# TYPE` line names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// A sample value as the text format writes it.
pub trait Value {
    fn write_to(&self, out: &mut String);
}

impl Value for u64 {
    fn write_to(&self, out: &mut String) {
        let _ = write!(out, "{self}");
    }
}

impl Value for u32 {
    fn write_to(&self, out: &mut String) {
        let _ = write!(out, "{self}");
    }
}

impl Value for i64 {
    fn write_to(&self, out: &mut String) {
        let _ = write!(out, "{self}");
    }
}

impl Value for usize {
    fn write_to(&self, out: &mut String) {
        let _ = write!(out, "{self}");
    }
}

impl Value for bool {
    fn write_to(&self, out: &mut String) {
        out.push(if *self { '1' } else { '0' });
    }
}

impl Value for f64 {
    fn write_to(&self, out: &mut String) {
        if self.is_nan() {
            out.push_str("NaN");
        } else if self.is_infinite() {
            out.push_str(if *self > 0.0 { "+Inf" } else { "-Inf" });
        } else {
            let _ = write!(out, "{self}");
        }
    }
}

/// Money and quantities are written as their exact decimal text (a valid
/// float literal for the scraper), never rounded through f64 here.
impl Value for Decimal {
    fn write_to(&self, out: &mut String) {
        let _ = write!(out, "{}", self.normalize());
    }
}

/// Escapes a label value: backslash, double quote and line feed.
fn escape_label(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Escapes HELP text: backslash and line feed.
fn escape_help(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// One scrape's page in the text exposition format 0.0.4.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    pub fn new() -> Exposition {
        Exposition {
            out: String::with_capacity(8 * 1024),
        }
    }

    /// Starts a family: its `# HELP` and `# TYPE` lines. Every sample of the
    /// family must follow before the next family starts. Counter names end
    /// in `_total` by convention (the caller names them).
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) {
        self.out.push_str("# HELP ");
        self.out.push_str(name);
        self.out.push(' ');
        escape_help(help, &mut self.out);
        self.out.push_str("\n# TYPE ");
        self.out.push_str(name);
        self.out.push(' ');
        self.out.push_str(kind.as_str());
        self.out.push('\n');
    }

    /// One sample line: `name{labels} value`.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Value) {
        self.name_and_labels(name, labels, None);
        self.out.push(' ');
        value.write_to(&mut self.out);
        self.out.push('\n');
    }

    /// A family with one sample and no labels.
    pub fn single(&mut self, name: &str, kind: Kind, help: &str, value: impl Value) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    /// A histogram's samples: cumulative `_bucket{le}` lines ending in
    /// `le="+Inf"`, then `_sum` and `_count`.
    pub fn histogram(&mut self, name: &str, labels: &[(&str, &str)], h: &Histogram) {
        let bucket = format!("{name}_bucket");
        let mut cumulative = 0u64;
        let mut le = String::new();
        for (i, c) in h.counts.iter().enumerate() {
            cumulative += c.load(Ordering::Relaxed);
            le.clear();
            match h.bounds.get(i) {
                Some(b) => b.write_to(&mut le),
                None => le.push_str("+Inf"),
            }
            self.name_and_labels(&bucket, labels, Some(&le));
            self.out.push(' ');
            cumulative.write_to(&mut self.out);
            self.out.push('\n');
        }
        // The count is the +Inf bucket: reading both from the buckets keeps
        // them consistent while other threads observe.
        self.sample(&format!("{name}_sum"), labels, h.sum());
        self.sample(&format!("{name}_count"), labels, cumulative);
    }

    fn name_and_labels(&mut self, name: &str, labels: &[(&str, &str)], le: Option<&str>) {
        self.out.push_str(name);
        if labels.is_empty() && le.is_none() {
            return;
        }
        self.out.push('{');
        let mut first = true;
        for (k, v) in labels.iter().copied().chain(le.map(|l| ("le", l))) {
            if !first {
                self.out.push(',');
            }
            first = false;
            self.out.push_str(k);
            self.out.push_str("=\"");
            escape_label(v, &mut self.out);
            self.out.push('"');
        }
        self.out.push('}');
    }

    /// The page.
    pub fn finish(self) -> String {
        self.out
    }
}

/// Seconds since the Unix epoch now, for `process_start_time_seconds`.
pub fn unix_now_seconds() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_and_help_are_escaped() {
        let mut e = Exposition::new();
        e.family("x_total", Kind::Counter, "a \\ b\nc \"q\"");
        e.sample("x_total", &[("a", "q\"uo\\te\nnl"), ("b", "plain")], 3u64);
        let page = e.finish();
        assert_eq!(
            page,
            "# HELP x_total a \\\\ b\\nc \"q\"\n# TYPE x_total counter\n\
             x_total{a=\"q\\\"uo\\\\te\\nnl\",b=\"plain\"} 3\n"
        );
    }

    fn text(v: impl Value) -> String {
        let mut s = String::new();
        v.write_to(&mut s);
        s
    }

    #[test]
    fn values_cover_specials_and_decimals() {
        let cases = [
            (text(f64::NAN), "NaN"),
            (text(f64::INFINITY), "+Inf"),
            (text(f64::NEG_INFINITY), "-Inf"),
            (text(0.25f64), "0.25"),
            (text(1.0f64), "1"),
            (text(true), "1"),
            (text(-7i64), "-7"),
            (text(Decimal::new(123_4500, 4)), "123.45"),
        ];
        for (got, want) in cases {
            assert_eq!(got, want);
        }
    }

    #[test]
    fn histogram_buckets_are_cumulative_with_inf_sum_and_count() {
        static BOUNDS: &[f64] = &[0.1, 1.0];
        let h = Histogram::new(BOUNDS);
        for v in [0.0625, 0.09375, 0.5, 2.0, 3.0] {
            h.observe(v);
        }
        let mut e = Exposition::new();
        e.family("lat_seconds", Kind::Histogram, "latency");
        e.histogram("lat_seconds", &[("op", "place")], &h);
        let page = e.finish();
        let want = "# HELP lat_seconds latency\n# TYPE lat_seconds histogram\n\
             lat_seconds_bucket{op=\"place\",le=\"0.1\"} 2\n\
             lat_seconds_bucket{op=\"place\",le=\"1\"} 3\n\
             lat_seconds_bucket{op=\"place\",le=\"+Inf\"} 5\n\
             lat_seconds_sum{op=\"place\"} 5.65625\n\
             lat_seconds_count{op=\"place\"} 5\n";
        assert_eq!(page, want);
        assert_eq!(h.count(), 5);
    }

    #[test]
    fn histogram_without_labels_has_only_le() {
        let h = Histogram::new(&[1.0]);
        h.observe_duration(Duration::from_millis(1500));
        let mut e = Exposition::new();
        e.histogram("d", &[], &h);
        let page = e.finish();
        assert!(page.contains("d_bucket{le=\"1\"} 0\n"), "{page}");
        assert!(page.contains("d_bucket{le=\"+Inf\"} 1\n"), "{page}");
        assert!(page.contains("d_sum 1.5\n"), "{page}");
        assert!(page.contains("d_count 1\n"), "{page}");
    }
}
