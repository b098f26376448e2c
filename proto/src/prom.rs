//! What both services' Prometheus metrics share, on top of the
//! `prometheus-client` crate: the latency buckets, the page encoder and its
//! content type, and [`Families`], a writer for the gauges and counters a
//! service computes at scrape time from state it keeps anyway (inside a
//! [`Collector`](prometheus_client::collector::Collector)).
//!
//! The page is the OpenMetrics text format 1.0: a counter family is declared
//! without `_total` and its sample carries it (`# TYPE x counter`,
//! `x_total 3`), so register counters by their name without the suffix.

use std::fmt::{self, Write as _};

use prometheus_client::encoding::{
    DescriptorEncoder, EncodeGaugeValue, EncodeLabelSet, GaugeValueEncoder, LabelSetEncoder,
    MetricEncoder, NoLabelSet,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Metric, Registry};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

/// Latency buckets in seconds (1 ms .. 10 s).
pub const LATENCY_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The content type of [`encode`]'s page.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A histogram over [`LATENCY_BUCKETS`].
pub fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// Registers `metric` with `help` as written: prometheus-client appends a
/// full stop to registered help, so one ending `help` is dropped first.
pub fn register(registry: &mut Registry, name: &str, help: &str, metric: impl Metric) {
    registry.register(name, help.strip_suffix('.').unwrap_or(help), metric);
}

/// The page: each registry's families in turn, then `# EOF`.
pub fn encode(registries: &[&Registry]) -> Result<String, fmt::Error> {
    let mut page = String::with_capacity(16 * 1024);
    for r in registries {
        prometheus_client::encoding::text::encode_registry(&mut page, r)?;
    }
    prometheus_client::encoding::text::encode_eof(&mut page)?;
    Ok(page)
}

/// A sample value: integers are written as integers, and money and
/// quantities (exact decimals) as the nearest f64, which is what the scraper
/// stores anyway.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Num {
    Int(i64),
    Float(f64),
}

impl From<i64> for Num {
    fn from(v: i64) -> Num {
        Num::Int(v)
    }
}

impl From<u32> for Num {
    fn from(v: u32) -> Num {
        Num::Int(i64::from(v))
    }
}

/// Saturates: no count Herd keeps comes near 2^63.
impl From<u64> for Num {
    fn from(v: u64) -> Num {
        Num::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}

impl From<usize> for Num {
    fn from(v: usize) -> Num {
        Num::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}

impl From<bool> for Num {
    fn from(v: bool) -> Num {
        Num::Int(i64::from(v))
    }
}

impl From<f64> for Num {
    fn from(v: f64) -> Num {
        Num::Float(v)
    }
}

impl From<Decimal> for Num {
    fn from(v: Decimal) -> Num {
        Num::Float(v.to_f64().unwrap_or(f64::NAN))
    }
}

impl EncodeGaugeValue for Num {
    fn encode(&self, encoder: &mut GaugeValueEncoder) -> fmt::Result {
        match self {
            Num::Int(v) => v.encode(encoder),
            Num::Float(v) => v.encode(encoder),
        }
    }
}

/// A sample's labels, in order. prometheus-client writes label values
/// verbatim, so these are escaped here as the text format requires
/// (backslash, double quote, line feed): some come from config and venues.
#[derive(Debug, Clone, Copy)]
pub struct Labels<'a>(pub &'a [(&'a str, &'a str)]);

impl EncodeLabelSet for Labels<'_> {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> fmt::Result {
        for (name, value) in self.0 {
            let mut label = encoder.encode_label();
            let mut key = label.encode_label_key()?;
            key.write_str(name)?;
            let mut v = key.encode_label_value()?;
            for c in value.chars() {
                match c {
                    '\\' => v.write_str("\\\\")?,
                    '"' => v.write_str("\\\"")?,
                    '\n' => v.write_str("\\n")?,
                    c => v.write_char(c)?,
                }
            }
            v.finish()?;
        }
        Ok(())
    }
}

/// Writes families whose samples are known only at scrape time, from inside
/// a collector's `encode`. A family is declared even when it has no sample
/// this scrape, so its name is always on the page.
#[derive(Debug)]
pub struct Families<'a>(DescriptorEncoder<'a>);

impl<'a> Families<'a> {
    pub fn new(encoder: DescriptorEncoder<'a>) -> Families<'a> {
        Families(encoder)
    }

    /// Starts a gauge family.
    pub fn gauge<'s>(&'s mut self, name: &'s str, help: &str) -> Result<Gauges<'s>, fmt::Error> {
        Ok(Gauges(self.0.encode_descriptor(
            name,
            help,
            None,
            MetricType::Gauge,
        )?))
    }

    /// A gauge family with one unlabelled sample.
    pub fn single_gauge(&mut self, name: &str, help: &str, v: impl Into<Num>) -> fmt::Result {
        self.gauge(name, help)?.sample(&[], v)
    }

    /// Starts a counter family; `name` without `_total`, which the samples get.
    pub fn counter<'s>(
        &'s mut self,
        name: &'s str,
        help: &str,
    ) -> Result<Counters<'s>, fmt::Error> {
        Ok(Counters(self.0.encode_descriptor(
            name,
            help,
            None,
            MetricType::Counter,
        )?))
    }
}

/// The samples of one gauge family.
#[derive(Debug)]
pub struct Gauges<'s>(MetricEncoder<'s>);

impl Gauges<'_> {
    pub fn sample(&mut self, labels: &[(&str, &str)], v: impl Into<Num>) -> fmt::Result {
        let v = v.into();
        if labels.is_empty() {
            // A family label set, even an empty one, is written as `{}`.
            return self.0.encode_gauge(&v);
        }
        self.0.encode_family(&Labels(labels))?.encode_gauge(&v)
    }
}

/// The samples of one counter family.
#[derive(Debug)]
pub struct Counters<'s>(MetricEncoder<'s>);

impl Counters<'_> {
    pub fn sample(&mut self, labels: &[(&str, &str)], v: u64) -> fmt::Result {
        if labels.is_empty() {
            return self.0.encode_counter::<NoLabelSet, u64, u64>(&v, None);
        }
        self.0
            .encode_family(&Labels(labels))?
            .encode_counter::<NoLabelSet, u64, u64>(&v, None)
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
    use prometheus_client::collector::Collector;
    use prometheus_client::metrics::counter::Counter;

    /// A collector that writes what a test gives it.
    #[derive(Debug)]
    struct Writes(fn(&mut Families<'_>) -> fmt::Result);

    impl Collector for Writes {
        fn encode(&self, encoder: DescriptorEncoder) -> fmt::Result {
            (self.0)(&mut Families::new(encoder))
        }
    }

    fn page(f: fn(&mut Families<'_>) -> fmt::Result) -> String {
        let mut r = Registry::default();
        r.register_collector(Box::new(Writes(f)));
        encode(&[&r]).unwrap()
    }

    #[test]
    fn label_values_are_escaped_in_order() {
        let got = page(|f| {
            f.counter("x", "a counter.")?
                .sample(&[("a", "q\"uo\\te\nnl"), ("b", "plain")], 3)
        });
        assert_eq!(
            got,
            "# HELP x a counter.\n# TYPE x counter\n\
             x_total{a=\"q\\\"uo\\\\te\\nnl\",b=\"plain\"} 3\n# EOF\n"
        );
    }

    #[test]
    fn values_keep_integers_and_write_decimals_as_floats() {
        let cases: [(Num, &str); 6] = [
            (true.into(), "1"),
            (7u64.into(), "7"),
            (u64::MAX.into(), "9223372036854775807"),
            (0.25f64.into(), "0.25"),
            (Decimal::new(123_4500, 4).into(), "123.45"),
            (Decimal::new(-5, 1).into(), "-0.5"),
        ];
        for (v, want) in cases {
            let mut r = Registry::default();
            #[derive(Debug)]
            struct One(Num);
            impl Collector for One {
                fn encode(&self, encoder: DescriptorEncoder) -> fmt::Result {
                    Families::new(encoder).single_gauge("g", "g.", self.0)
                }
            }
            r.register_collector(Box::new(One(v)));
            let got = encode(&[&r]).unwrap();
            assert_eq!(
                got,
                format!("# HELP g g.\n# TYPE g gauge\ng {want}\n# EOF\n")
            );
        }
    }

    #[test]
    fn an_empty_family_is_still_declared() {
        let got = page(|f| {
            f.gauge("e", "empty.")?;
            Ok(())
        });
        assert_eq!(got, "# HELP e empty.\n# TYPE e gauge\n# EOF\n");
    }

    #[test]
    fn registered_help_keeps_one_full_stop_and_histograms_use_the_latency_buckets() {
        let mut r = Registry::default();
        let c = Counter::<u64>::default();
        c.inc_by(2);
        register(&mut r, "c", "Counted things.", c);
        let h = latency_histogram();
        h.observe(0.003);
        h.observe(20.0);
        register(&mut r, "h_seconds", "Latency.", h);
        let got = encode(&[&r, &Registry::default()]).unwrap();
        assert!(got.starts_with("# HELP c Counted things.\n# TYPE c counter\nc_total 2\n"));
        for want in [
            "# HELP h_seconds Latency.\n# TYPE h_seconds histogram\n",
            "h_seconds_sum 20.003\nh_seconds_count 2\n",
            "h_seconds_bucket{le=\"0.0025\"} 0\n",
            "h_seconds_bucket{le=\"0.005\"} 1\n",
            "h_seconds_bucket{le=\"10.0\"} 1\n",
            "h_seconds_bucket{le=\"+Inf\"} 2\n# EOF\n",
        ] {
            assert!(got.contains(want), "missing {want:?} in\n{got}");
        }
    }
}
