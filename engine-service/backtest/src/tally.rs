//! What a run keeps for its report while it goes, in memory that does not
//! grow with the journal: the equity curve as (time, f64) pairs with its
//! Decimal statistics (last point, largest drawdown with its dates, the
//! daily equity for Sharpe and Sortino) computed point by point, and the
//! journal's cycle and orphan rows tallied per strategy and slot instead of
//! kept (a year of the grid writes hundreds of thousands of them; kept as
//! parsed JSON they were half of a year's memory).
//!
//! Every statistic here is the batch formula the report used over the kept
//! rows, computed in the same order with the same arithmetic, so reports
//! stay byte-identical (the unit tests below compare them with the batch
//! formulas; `tests/report_golden.rs` compares a whole report).

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde::{Deserialize, Serialize};

use crate::report::{SlotReport, StrategyReport};
use crate::sim::EquityPoint;

const DAY_MS: i64 = 86_400_000;

/// The largest fall of equity from a previous peak, exact (Decimal):
/// (amount, peak, peak time, trough time), and when equity was back at
/// that peak after the trough.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DrawdownMark {
    pub amount: Decimal,
    pub peak: Decimal,
    pub peak_ms: i64,
    pub trough_ms: i64,
    pub recovered_ms: Option<i64>,
}

/// The account at every candle's close, compactly: each point as its time
/// and equity in f64 (what the charts draw), the last point in full, and
/// the report's statistics updated as points come.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct EquityCurve {
    initial: Decimal,
    /// (close time, equity as f64; 0 when not representable).
    points: Vec<(i64, f64)>,
    last: Option<EquityPoint>,
    peak: Decimal,
    peak_ms: i64,
    drawdown: Option<DrawdownMark>,
    /// Equity (f64) at the start and at each finished UTC day's last close.
    days: Vec<f64>,
    day: Option<i64>,
    last_f64: Option<f64>,
}

impl EquityCurve {
    /// An empty curve of a run starting at `start_ms` with `initial` equity;
    /// `capacity`: the points expected (one per candle).
    pub fn new(initial: Decimal, start_ms: i64, capacity: usize) -> EquityCurve {
        EquityCurve {
            initial,
            points: Vec::with_capacity(capacity),
            last: None,
            peak: initial,
            peak_ms: start_ms,
            drawdown: None,
            days: vec![initial.to_f64().unwrap_or(0.0)],
            day: None,
            last_f64: None,
        }
    }

    /// The next point (times increasing).
    pub fn push(&mut self, p: EquityPoint) {
        // Drawdown: the running peak (from the initial equity), the largest
        // fall below it, and the first later point back at that fall's peak.
        if p.equity > self.peak {
            self.peak = p.equity;
            self.peak_ms = p.time_ms;
        }
        let dd = self.peak - p.equity;
        if dd > Decimal::ZERO && self.drawdown.is_none_or(|d| dd > d.amount) {
            self.drawdown = Some(DrawdownMark {
                amount: dd,
                peak: self.peak,
                peak_ms: self.peak_ms,
                trough_ms: p.time_ms,
                recovered_ms: None,
            });
        } else if let Some(d) = self.drawdown.as_mut()
            && d.recovered_ms.is_none()
            && p.time_ms > d.trough_ms
            && p.equity >= d.peak
        {
            d.recovered_ms = Some(p.time_ms);
        }
        // Daily equity: a day's value is its last close's.
        let d = (p.time_ms - 1).div_euclid(DAY_MS);
        if self.points.is_empty() {
            self.day = Some(d);
        }
        if Some(d) != self.day {
            if let Some(e) = self.last_f64 {
                self.days.push(e);
            }
            self.day = Some(d);
        }
        self.last_f64 = p.equity.to_f64();
        self.points
            .push((p.time_ms, p.equity.to_f64().unwrap_or(0.0)));
        self.last = Some(p);
    }

    /// The starting equity the curve was made with.
    pub fn initial(&self) -> Decimal {
        self.initial
    }

    /// The last point.
    pub fn last(&self) -> Option<&EquityPoint> {
        self.last.as_ref()
    }

    pub fn len(&self) -> usize {
        self.points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// Every point as (time, equity in f64).
    pub fn points(&self) -> &[(i64, f64)] {
        &self.points
    }

    /// The largest drawdown so far; `None` while equity never fell.
    pub fn max_drawdown(&self) -> Option<DrawdownMark> {
        self.drawdown
    }

    /// Equity at the start and at each UTC day's last close (the last day
    /// counted even when unfinished).
    pub fn daily(&self) -> Vec<f64> {
        let mut days = self.days.clone();
        if let Some(e) = self.last_f64 {
            days.push(e);
        }
        days
    }
}

/// A row's field by name, as `serde_json::Value::get` reads an object
/// (`None` for anything else).
trait Fields {
    fn field(&self, key: &str) -> Option<&serde_json::Value>;
}

impl Fields for serde_json::Value {
    fn field(&self, key: &str) -> Option<&serde_json::Value> {
        self.get(key)
    }
}

/// The only fields the tally reads, parsed from a row's JSON object
/// without building the rest (the other fields are skipped). A row that
/// does not parse this way (not an object, a repeated key) is read as a
/// whole `Value` instead, so the tally is the same either way.
#[derive(Debug, Default, Deserialize)]
struct TallyFields {
    #[serde(default)]
    net: Option<serde_json::Value>,
    #[serde(default)]
    net_usd: Option<serde_json::Value>,
    #[serde(default)]
    exposure_usd: Option<serde_json::Value>,
    #[serde(default)]
    ranger_id: Option<serde_json::Value>,
    #[serde(default)]
    slot_id: Option<serde_json::Value>,
}

impl Fields for TallyFields {
    // A JSON null reads as `None` here and as `Some(Null)` from a `Value`;
    // every reader below treats both as missing.
    fn field(&self, key: &str) -> Option<&serde_json::Value> {
        match key {
            "net" => self.net.as_ref(),
            "net_usd" => self.net_usd.as_ref(),
            "exposure_usd" => self.exposure_usd.as_ref(),
            "ranger_id" => self.ranger_id.as_ref(),
            "slot_id" => self.slot_id.as_ref(),
            _ => None,
        }
    }
}

fn payload_decimal(p: &dyn Fields, keys: &[&str]) -> Option<Decimal> {
    keys.iter().find_map(|k| match p.field(k)? {
        serde_json::Value::String(s) => s.parse().ok(),
        serde_json::Value::Number(n) => n.to_string().parse().ok(),
        _ => None,
    })
}

fn slot_key(payload: &dyn Fields) -> Option<String> {
    if let Some(id) = payload
        .field("ranger_id")
        .and_then(serde_json::Value::as_u64)
    {
        return Some(format!("ranger {id}"));
    }
    if let Some(id) = payload.field("slot_id").and_then(serde_json::Value::as_u64) {
        return Some(format!("slot {id}"));
    }
    None
}

/// The journal's cycle and orphan rows, counted and summed as they come
/// (the report's cycles, win rate, orphans and per-strategy and per-slot
/// tables).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct JournalTally {
    /// Rows tallied (every kind in [`crate::sim::JOURNAL_KINDS_KEPT`]).
    pub rows: u64,
    pub cycles: u64,
    pub wins: u64,
    pub orphans: u64,
    pub orphan_exposure: Decimal,
    /// Per strategy: only the journal's fields (cycles, winning cycles,
    /// cycle net, orphans, orphan exposure, slots) are filled here.
    pub strategies: BTreeMap<String, StrategyReport>,
}

impl JournalTally {
    /// One journal row of `strategy`; kinds other than "cycle", "orphan"
    /// and "position_orphaned" only make the strategy's entry.
    pub fn add(&mut self, strategy: &str, kind: &str, payload: &serde_json::Value) {
        self.add_fields(strategy, kind, payload);
    }

    /// [`JournalTally::add`] of a row as its journal text: parsed as JSON,
    /// a string when it is not JSON (as the engine's journal reads it).
    pub fn add_json(&mut self, strategy: &str, kind: &str, payload_json: &str) {
        if payload_json.trim_start().starts_with('{')
            && let Ok(fields) = serde_json::from_str::<TallyFields>(payload_json)
        {
            self.add_fields(strategy, kind, &fields);
            return;
        }
        let payload = serde_json::from_str(payload_json)
            .unwrap_or_else(|_| serde_json::Value::String(payload_json.to_string()));
        self.add_fields(strategy, kind, &payload);
    }

    fn add_fields(&mut self, strategy: &str, kind: &str, payload: &dyn Fields) {
        self.rows += 1;
        let s = match self.strategies.get_mut(strategy) {
            Some(s) => s,
            None => self.strategies.entry(strategy.to_string()).or_default(),
        };
        match kind {
            "cycle" => {
                let net = payload_decimal(payload, &["net", "net_usd"]).unwrap_or_default();
                self.cycles += 1;
                s.cycles += 1;
                s.cycle_net += net;
                let won = net > Decimal::ZERO;
                if won {
                    self.wins += 1;
                    s.winning_cycles += 1;
                }
                if let Some(k) = slot_key(payload) {
                    let slot: &mut SlotReport = s.slots.entry(k).or_default();
                    slot.cycles += 1;
                    slot.net += net;
                    slot.wins += u64::from(won);
                }
            }
            "orphan" | "position_orphaned" => {
                self.orphans += 1;
                s.orphans += 1;
                let exposure = payload_decimal(payload, &["exposure_usd"]).unwrap_or_default();
                s.orphan_exposure += exposure;
                self.orphan_exposure += exposure;
                if let Some(k) = slot_key(payload) {
                    s.slots.entry(k).or_default().orphans += 1;
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::csv::fmt_time;

    fn point(time_ms: i64, equity: Decimal) -> EquityPoint {
        EquityPoint {
            time_ms,
            close: Decimal::ONE,
            base: Decimal::ZERO,
            quote: equity,
            equity,
        }
    }

    /// The report's batch formulas before the curve was streamed.
    fn batch_drawdown(
        initial: Decimal,
        start_ms: i64,
        curve: &[EquityPoint],
    ) -> Option<(Decimal, Decimal, i64, i64, Option<String>)> {
        let (mut peak, mut peak_ms) = (initial, start_ms);
        let mut best: Option<(Decimal, Decimal, i64, i64)> = None;
        for p in curve {
            if p.equity > peak {
                peak = p.equity;
                peak_ms = p.time_ms;
            }
            let dd = peak - p.equity;
            if dd > Decimal::ZERO && best.is_none_or(|(b, ..)| dd > b) {
                best = Some((dd, peak, peak_ms, p.time_ms));
            }
        }
        let (amount, peak, peak_ms, trough_ms) = best?;
        let recovered = curve
            .iter()
            .find(|p| p.time_ms > trough_ms && p.equity >= peak)
            .map(|p| fmt_time(p.time_ms));
        Some((amount, peak, peak_ms, trough_ms, recovered))
    }

    fn batch_days(initial: Decimal, curve: &[EquityPoint]) -> Vec<f64> {
        let mut days: Vec<f64> = vec![initial.to_f64().unwrap_or(0.0)];
        let mut day = curve.first().map(|p| (p.time_ms - 1).div_euclid(DAY_MS));
        let mut last = None;
        for p in curve {
            let d = (p.time_ms - 1).div_euclid(DAY_MS);
            if Some(d) != day {
                if let Some(e) = last {
                    days.push(e);
                }
                day = Some(d);
            }
            last = p.equity.to_f64();
        }
        if let Some(e) = last {
            days.push(e);
        }
        days
    }

    /// A deterministic wandering curve: rises, falls, recoveries and
    /// deeper falls, over several days of 1-hour points.
    fn wander(seed: u64, n: usize) -> Vec<EquityPoint> {
        let mut s = seed;
        let mut e = Decimal::from(1000);
        (0..n)
            .map(|i| {
                s = s
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                let step = i64::try_from(s >> 54).unwrap_or(0) - 512;
                e += Decimal::new(step, 2);
                point(
                    1_700_000_000_000 + 3_600_000 * i64::try_from(i).unwrap_or(0),
                    e,
                )
            })
            .collect()
    }

    #[test]
    fn streamed_drawdown_and_days_equal_the_batch_formulas() {
        let mut recovered_seen = false;
        for seed in 0..200u64 {
            for n in [0usize, 1, 2, 5, 30, 200] {
                let pts = wander(seed, n);
                let initial = Decimal::from(1000);
                let start = 1_700_000_000_000 - 3_600_000;
                let mut c = EquityCurve::new(initial, start, n);
                for p in &pts {
                    c.push(p.clone());
                }
                let streamed = c.max_drawdown().map(|d| {
                    (
                        d.amount,
                        d.peak,
                        d.peak_ms,
                        d.trough_ms,
                        d.recovered_ms.map(fmt_time),
                    )
                });
                let batch = batch_drawdown(initial, start, &pts);
                recovered_seen |= batch.as_ref().is_some_and(|b| b.4.is_some());
                assert_eq!(streamed, batch, "seed {seed}, {n} points");
                assert_eq!(c.daily(), batch_days(initial, &pts), "seed {seed}");
                assert_eq!(c.len(), n);
                assert_eq!(c.last(), pts.last());
            }
        }
        assert!(recovered_seen, "no curve recovered: not a useful check");
    }

    #[test]
    fn a_new_deeper_fall_after_a_recovery_forgets_the_recovery() {
        let t = |h: i64| 1_700_000_000_000 + 3_600_000 * h;
        let mut c = EquityCurve::new(Decimal::from(100), t(0), 0);
        for (h, e) in [(1, 90), (2, 101), (3, 130), (4, 105), (5, 120)] {
            c.push(point(t(h), Decimal::from(e)));
        }
        let d = c.max_drawdown().unwrap();
        assert_eq!(
            (d.amount, d.peak, d.peak_ms, d.trough_ms, d.recovered_ms),
            (Decimal::from(25), Decimal::from(130), t(3), t(4), None)
        );
        c.push(point(t(6), Decimal::from(130)));
        assert_eq!(c.max_drawdown().unwrap().recovered_ms, Some(t(6)));
    }

    /// Rows read from their text tally as the parsed `Value` does, odd
    /// ones included (repeated keys, nulls, arrays, numbers, not JSON).
    #[test]
    fn a_row_read_from_its_text_tallies_as_its_value() {
        let rows = [
            ("grid", "cycle", r#"{"net":"2","net":"3","slot_id":1}"#),
            (
                "grid",
                "cycle",
                r#"{"net":null,"net_usd":"0.5","slot_id":null}"#,
            ),
            ("grid", "cycle", r#"["1.5", 2]"#),
            (
                "rangers",
                "cycle",
                r#" {"net_usd":1e-3,"ranger_id":-1,"x":{"net":"9"}}"#,
            ),
            (
                "rangers",
                "orphan",
                r#"{"exposure_usd":7,"ranger_id":3,"slot_id":4}"#,
            ),
            (
                "grid",
                "position_orphaned",
                r#"{"exposure_usd":"x","slot_id":2.0}"#,
            ),
            ("grid", "cycle", "not json"),
            ("grid", "cycle", r#"{"net":"1""#),
        ];
        let (mut by_value, mut by_text) = (JournalTally::default(), JournalTally::default());
        for (s, k, p) in rows {
            let v = serde_json::from_str(p)
                .unwrap_or_else(|_| serde_json::Value::String(p.to_string()));
            by_value.add(s, k, &v);
            by_text.add_json(s, k, p);
        }
        assert_eq!(by_text, by_value);
        assert_eq!(by_value.cycles, 6);
        assert_eq!(
            by_value.strategies["grid"].slots["slot 1"].net,
            Decimal::from(3)
        );
    }

    #[test]
    fn the_tally_counts_cycles_orphans_and_slots_in_order() {
        let mut t = JournalTally::default();
        let rows = [
            ("grid", "cycle", r#"{"net":"1.5","slot_id":0}"#),
            ("grid", "cycle", r#"{"net":"-0.5","slot_id":1}"#),
            ("rangers", "cycle", r#"{"net_usd":0.25,"ranger_id":2}"#),
            (
                "rangers",
                "orphan",
                r#"{"exposure_usd":"10","ranger_id":2}"#,
            ),
            ("grid", "position_orphaned", r#"{"position_id":"x"}"#),
            ("grid", "cycle", r#""not json""#),
        ];
        let mut from_text = JournalTally::default();
        for (s, k, p) in rows {
            t.add(s, k, &serde_json::from_str(p).unwrap());
            from_text.add_json(s, k, p);
        }
        assert_eq!(from_text, t);
        assert_eq!((t.rows, t.cycles, t.wins, t.orphans), (6, 4, 2, 2));
        assert_eq!(t.orphan_exposure, Decimal::from(10));
        let g = &t.strategies["grid"];
        assert_eq!((g.cycles, g.winning_cycles, g.orphans), (3, 1, 1));
        assert_eq!(g.cycle_net, Decimal::ONE);
        assert_eq!(g.slots["slot 0"].net, Decimal::new(15, 1));
        assert_eq!(g.slots["slot 1"].wins, 0);
        let r = &t.strategies["rangers"];
        assert_eq!(r.slots["ranger 2"].cycles, 1);
        assert_eq!(r.slots["ranger 2"].orphans, 1);
        assert_eq!(r.orphan_exposure, Decimal::from(10));
        assert_eq!(r.fills, 0);
    }
}
