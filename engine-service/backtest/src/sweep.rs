//! Parameter sweeps: a grid of config overrides, run in parallel on local
//! cores (std threads), ranked by one report metric.
//!
//! A sweep file names engine config overrides by their environment
//! variable (`RANGER_ENTRY_PCT`, `GRID_PROFIT_PCT`, ...: the engine's own
//! override parser applies and checks them) and the values to try; every
//! combination is one run. A slice (`index` of `count`) takes the
//! combinations whose number modulo `count` is `index`, so a Kubernetes
//! Indexed Job can split one sweep over pods.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use rust_decimal::prelude::ToPrimitive;
use serde::Deserialize;

use crate::report::Report;

/// A sweep file (TOML).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SweepConfig {
    /// Override (engine env-var name) -> the values to try.
    pub params: BTreeMap<String, Vec<String>>,
    /// The metric to rank by (see [`RANK_METRICS`]).
    pub rank_by: String,
    /// Worker threads; 0 = one per core.
    pub threads: usize,
}

impl Default for SweepConfig {
    fn default() -> SweepConfig {
        SweepConfig {
            params: BTreeMap::new(),
            rank_by: "net_pnl".into(),
            threads: 0,
        }
    }
}

/// Metrics a sweep can rank by; all rank highest first except
/// `max_drawdown_pct` (lowest first).
pub const RANK_METRICS: &[&str] = &[
    "net_pnl",
    "return_pct",
    "sharpe_daily",
    "sortino_daily",
    "win_rate_pct",
    "cycles",
    "max_drawdown_pct",
];

impl SweepConfig {
    /// What is wrong with the file's values, if anything.
    pub fn check(&self) -> Result<(), String> {
        if self.params.is_empty() {
            return Err("params: at least one override with values is needed".into());
        }
        if let Some((k, _)) = self.params.iter().find(|(_, v)| v.is_empty()) {
            return Err(format!("params.{k}: no values to try"));
        }
        if !RANK_METRICS.contains(&self.rank_by.as_str()) {
            return Err(format!(
                "rank_by: {:?} is not one of {}",
                self.rank_by,
                RANK_METRICS.join(", ")
            ));
        }
        Ok(())
    }

    /// Every combination of the values, the last parameter (in name order)
    /// varying fastest.
    pub fn combinations(&self) -> Vec<BTreeMap<String, String>> {
        let mut out = vec![BTreeMap::new()];
        for (k, values) in &self.params {
            out = out
                .into_iter()
                .flat_map(|base| {
                    values.iter().map(move |v| {
                        let mut m = base.clone();
                        m.insert(k.clone(), v.clone());
                        m
                    })
                })
                .collect();
        }
        out
    }
}

/// The combinations slice `index` of `count` runs.
pub fn slice(total: usize, index: usize, count: usize) -> Vec<usize> {
    let count = count.max(1);
    (0..total).filter(|k| k % count == index).collect()
}

/// Runs `f` on every item on `threads` threads (0 = one per core); results
/// in the items' order, whatever order they finished in.
pub fn run_parallel<T: Send>(
    items: &[usize],
    threads: usize,
    f: impl Fn(usize) -> T + Sync,
) -> Vec<(usize, T)> {
    let threads = if threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        threads
    }
    .min(items.len())
    .max(1);
    let next = AtomicUsize::new(0);
    let done: Mutex<Vec<(usize, T)>> = Mutex::new(Vec::with_capacity(items.len()));
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&item) = items.get(i) else { break };
                    let r = f(item);
                    done.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((item, r));
                }
            });
        }
    });
    let mut v = done.into_inner().unwrap_or_else(|p| p.into_inner());
    v.sort_by_key(|(k, _)| *k);
    v
}

/// The value of `metric` in `report` (higher is better after this: the
/// drawdown comes back negated); `None` when the report has none.
pub fn score(report: &Report, metric: &str) -> Option<f64> {
    match metric {
        "net_pnl" => report.net_pnl.to_f64(),
        "return_pct" => report.return_pct.to_f64(),
        "sharpe_daily" => report.sharpe_daily,
        "sortino_daily" => report.sortino_daily,
        "win_rate_pct" => report.win_rate_pct.and_then(|w| w.to_f64()),
        "cycles" => Some(report.cycles as f64),
        "max_drawdown_pct" => Some(
            -report
                .max_drawdown
                .as_ref()
                .and_then(|d| d.pct.to_f64())
                .unwrap_or(0.0),
        ),
        _ => None,
    }
}

/// Orders `(combination number, score)` best first; runs without a score
/// last, ties by combination number.
pub fn rank(scores: &mut [(usize, Option<f64>)]) {
    scores.sort_by(|a, b| match (a.1, b.1) {
        (Some(x), Some(y)) => y.total_cmp(&x).then(a.0.cmp(&b.0)),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.0.cmp(&b.0),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combinations_slices_and_order() {
        let cfg = SweepConfig {
            params: BTreeMap::from([
                ("A".to_string(), vec!["1".to_string(), "2".to_string()]),
                ("B".to_string(), vec!["x".into(), "y".into(), "z".into()]),
            ]),
            ..SweepConfig::default()
        };
        let c = cfg.combinations();
        assert_eq!(c.len(), 6);
        assert_eq!(c[1]["A"], "1");
        assert_eq!(c[1]["B"], "y");
        assert_eq!(slice(6, 1, 4), vec![1, 5]);
        assert_eq!(slice(6, 0, 1), (0..6).collect::<Vec<_>>());
        let r = run_parallel(&[4, 1, 3], 2, |k| k * 10);
        assert_eq!(r, vec![(1, 10), (3, 30), (4, 40)]);
        let mut s = vec![(0, Some(1.0)), (1, None), (2, Some(3.0)), (3, Some(1.0))];
        rank(&mut s);
        assert_eq!(s.iter().map(|x| x.0).collect::<Vec<_>>(), vec![2, 0, 3, 1]);
    }
}
