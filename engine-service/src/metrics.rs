//! The engine's Prometheus metrics (`GET /metrics` on the admin port).
//!
//! Counters and latency histograms of the order path are recorded as they
//! happen ([`EngineMetrics`], atomics only, no lock, no allocation); every
//! strategy number (rangers, grid, churner, funding, regime) is read at
//! scrape time from the same [`pb::EngineStatus`] that `GetStatus` serves,
//! so the page and the RPC can never disagree.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Instant;

use herd_proto::engine as pb;
use herd_proto::prom::{Counter, Exposition, Histogram, Kind, unix_now_seconds};
use rust_decimal::Decimal;
use tonic::{Code, Status};

use crate::execution::Shared;

/// An order operation the engine sends through the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Place = 0,
    Cancel = 1,
}

impl Op {
    const ALL: [Op; 2] = [Op::Place, Op::Cancel];

    fn as_str(self) -> &'static str {
        match self {
            Op::Place => "place",
            Op::Cancel => "cancel",
        }
    }
}

/// The gRPC codes the engine counts as venue (or network) errors.
const VENUE_ERROR_CODES: [(Code, &str); 5] = [
    (Code::Unavailable, "unavailable"),
    (Code::Internal, "internal"),
    (Code::ResourceExhausted, "resource_exhausted"),
    (Code::DeadlineExceeded, "deadline_exceeded"),
    (Code::Unknown, "unknown"),
];

/// The engine's hot-path metrics.
#[derive(Debug)]
pub struct EngineMetrics {
    started_at: f64,
    latency: [Histogram; 2],
    /// [op][0 = ok, 1 = error]
    results: [[Counter; 2]; 2],
    venue_errors: [Counter; VENUE_ERROR_CODES.len()],
    /// Order events received on the stream and journaled.
    pub events: Counter,
    /// Times the event stream (re)connected.
    pub stream_connects: Counter,
}

impl Default for EngineMetrics {
    fn default() -> Self {
        EngineMetrics::new()
    }
}

impl EngineMetrics {
    pub fn new() -> EngineMetrics {
        EngineMetrics {
            started_at: unix_now_seconds(),
            latency: std::array::from_fn(|_| Histogram::latency()),
            results: std::array::from_fn(|_| std::array::from_fn(|_| Counter::new())),
            venue_errors: std::array::from_fn(|_| Counter::new()),
            events: Counter::new(),
            stream_connects: Counter::new(),
        }
    }

    /// Records one gateway round trip of `op` that started at `started`.
    pub fn record_order<T>(&self, op: Op, started: Instant, r: &Result<T, Status>) {
        let i = op as usize;
        if let Some(h) = self.latency.get(i) {
            h.observe_duration(started.elapsed());
        }
        let result = usize::from(r.is_err());
        if let Some(c) = self.results.get(i).and_then(|row| row.get(result)) {
            c.inc();
        }
    }

    /// Counts a venue error by its gRPC code; other codes are ignored.
    pub fn record_venue_error(&self, code: Code) {
        if let Some(i) = VENUE_ERROR_CODES.iter().position(|(c, _)| *c == code)
            && let Some(c) = self.venue_errors.get(i)
        {
            c.inc();
        }
    }

    /// Round trips of `op` recorded so far.
    pub fn order_count(&self, op: Op) -> u64 {
        self.latency.get(op as usize).map_or(0, Histogram::count)
    }
}

fn dec(s: &str) -> Option<Decimal> {
    Decimal::from_str(s.trim()).ok()
}

/// Writes a gauge whose value is a decimal string from the status; an empty
/// or unparsable field writes no sample (absent, not a made-up zero).
fn dec_sample(e: &mut Exposition, name: &str, labels: &[(&str, &str)], v: &str) {
    if let Some(d) = dec(v) {
        e.sample(name, labels, d);
    }
}

fn gauge_dec(e: &mut Exposition, name: &str, help: &str, v: &str) {
    e.family(name, Kind::Gauge, help);
    dec_sample(e, name, &[], v);
}

/// Regime labels in the order the gauge lists them.
const REGIMES: [&str; 4] = ["BEARISH", "RANGING", "BULLISH", "UNKNOWN"];

/// The `/metrics` page.
pub async fn render(shared: &Shared) -> String {
    let m = &shared.metrics;
    let mut e = Exposition::new();
    let engine = shared.cfg.id.as_str();

    e.family(
        "herd_engine_info",
        Kind::Gauge,
        "Always 1; the labels say which engine this is.",
    );
    e.sample(
        "herd_engine_info",
        &[
            ("engine", engine),
            ("symbol", &shared.cfg.symbol),
            ("version", env!("CARGO_PKG_VERSION")),
        ],
        1u64,
    );
    e.single(
        "process_start_time_seconds",
        Kind::Gauge,
        "Start time of the process since the Unix epoch in seconds.",
        m.started_at,
    );

    e.family(
        "herd_engine_order_latency_seconds",
        Kind::Histogram,
        "Round trip of an order call through the gateway to the venue and back, by operation.",
    );
    for op in Op::ALL {
        if let Some(h) = m.latency.get(op as usize) {
            e.histogram(
                "herd_engine_order_latency_seconds",
                &[("op", op.as_str())],
                h,
            );
        }
    }
    e.family(
        "herd_engine_orders_total",
        Kind::Counter,
        "Order calls sent to the gateway, by operation and result.",
    );
    for op in Op::ALL {
        for (j, result) in ["ok", "error"].into_iter().enumerate() {
            let n = m
                .results
                .get(op as usize)
                .and_then(|row| row.get(j))
                .map_or(0, Counter::get);
            e.sample(
                "herd_engine_orders_total",
                &[("op", op.as_str()), ("result", result)],
                n,
            );
        }
    }
    e.family(
        "herd_engine_venue_errors_total",
        Kind::Counter,
        "Gateway answers counted as venue or network errors (they pause the engine when consecutive), by gRPC code.",
    );
    for (i, (_, name)) in VENUE_ERROR_CODES.iter().enumerate() {
        let n = m.venue_errors.get(i).map_or(0, Counter::get);
        e.sample("herd_engine_venue_errors_total", &[("code", name)], n);
    }
    e.single(
        "herd_engine_order_events_total",
        Kind::Counter,
        "Order events received on the gateway stream and journaled.",
        m.events.get(),
    );
    e.single(
        "herd_engine_gateway_stream_connects_total",
        Kind::Counter,
        "Times the order-event stream to the gateway was (re)established.",
        m.stream_connects.get(),
    );

    match crate::control::status(shared).await {
        Ok(st) => status_gauges(&mut e, &st),
        Err(s) => {
            tracing::warn!(error = %s.message(), "metrics: engine status unavailable");
            e.single(
                "herd_engine_status_up",
                Kind::Gauge,
                "1 when the engine's status (store, strategies) could be read for this scrape.",
                0u64,
            );
        }
    }
    e.finish()
}

fn status_gauges(e: &mut Exposition, st: &pb::EngineStatus) {
    e.single(
        "herd_engine_status_up",
        Kind::Gauge,
        "1 when the engine's status (store, strategies) could be read for this scrape.",
        1u64,
    );
    e.family(
        "herd_engine_mode",
        Kind::Gauge,
        "1 on the engine's current mode (running, paused, halted).",
    );
    let mode = pb::Mode::try_from(st.mode).unwrap_or(pb::Mode::Unspecified);
    for (name, m) in [
        ("running", pb::Mode::Running),
        ("paused", pb::Mode::Paused),
        ("halted", pb::Mode::Halted),
    ] {
        e.sample("herd_engine_mode", &[("mode", name)], mode == m);
    }
    e.single(
        "herd_engine_gateway_connected",
        Kind::Gauge,
        "1 while the engine follows the gateway's order-event stream.",
        st.gateway_connected,
    );
    e.single(
        "herd_engine_event_sequence",
        Kind::Gauge,
        "Sequence number of the last order event journaled.",
        st.last_event_sequence,
    );
    e.single(
        "herd_engine_consecutive_venue_errors",
        Kind::Gauge,
        "Venue errors in a row (the engine pauses at max_consecutive_errors).",
        st.consecutive_venue_errors,
    );
    e.single(
        "herd_engine_fills_journaled",
        Kind::Gauge,
        "Fills in the engine's journal.",
        st.fills_journaled,
    );
    e.family(
        "herd_engine_open_orders",
        Kind::Gauge,
        "Working orders in the journal, by owning strategy.",
    );
    let mut by_owner: BTreeMap<&str, u64> = BTreeMap::new();
    for o in &st.open_orders {
        *by_owner.entry(o.owner.as_str()).or_default() += 1;
    }
    for (owner, n) in &by_owner {
        e.sample("herd_engine_open_orders", &[("owner", owner)], *n);
    }
    gauge_dec(
        e,
        "herd_engine_price",
        "Last traded price of the engine's symbol.",
        &st.price,
    );
    e.single(
        "herd_engine_price_age_seconds",
        Kind::Gauge,
        "Age of the last price.",
        st.price_age_ms as f64 / 1000.0,
    );

    if let Some(r) = &st.regime {
        regime_gauges(e, r);
    }
    if let Some(r) = &st.rangers {
        rangers_gauges(e, r);
    }
    if let Some(g) = &st.grid {
        grid_gauges(e, g);
    }
    if let Some(c) = &st.capacity {
        e.single(
            "herd_engine_capacity_open_orders",
            Kind::Gauge,
            "Open orders on the pair (whole key) as the capacity check sees them.",
            c.open_orders,
        );
        e.single(
            "herd_engine_capacity_limit",
            Kind::Gauge,
            "The venue's open-order limit on the pair.",
            c.limit,
        );
        e.single(
            "herd_engine_capacity_headroom",
            Kind::Gauge,
            "Orders that may still be opened before the safe cap.",
            c.headroom,
        );
    }
    if let Some(c) = st.self_healing.as_ref().and_then(|s| s.churner.as_ref()) {
        churner_gauges(e, c);
    }
    if let Some(f) = &st.funding {
        funding_gauges(e, f);
    }
}

fn regime_gauges(e: &mut Exposition, r: &pb::RegimeStatus) {
    e.family(
        "herd_engine_regime",
        Kind::Gauge,
        "1 on the current consensus regime (UNKNOWN: detector not ready).",
    );
    let current = if REGIMES.contains(&r.regime.as_str()) {
        r.regime.as_str()
    } else {
        "UNKNOWN"
    };
    for name in REGIMES {
        e.sample("herd_engine_regime", &[("regime", name)], name == current);
    }
    e.single(
        "herd_engine_regime_ready",
        Kind::Gauge,
        "1 when the regime detector has a trained model.",
        r.ready,
    );
    e.single(
        "herd_engine_regime_confidence",
        Kind::Gauge,
        "Top posterior minus the second.",
        r.confidence,
    );
    e.single(
        "herd_engine_regime_bias",
        Kind::Gauge,
        "P(bullish) - P(bearish), 0 below the confidence floor.",
        r.bias,
    );
    // Per-timeframe posteriors, from the detector's detail (absent with a
    // fixed regime source or before the first reading).
    e.family(
        "herd_engine_regime_probability",
        Kind::Gauge,
        "Posterior probability of each regime, per timeframe and for the consensus.",
    );
    let Ok(detail) = serde_json::from_str::<serde_json::Value>(&r.detail_json) else {
        return;
    };
    let mut readings: Vec<(String, &serde_json::Value)> = Vec::new();
    if let Some(p) = detail.get("probs") {
        readings.push(("consensus".into(), p));
    }
    if let Some(tfs) = detail.get("per_timeframe").and_then(|v| v.as_array()) {
        for tf in tfs {
            if let (Some(name), Some(p)) = (
                tf.get("timeframe").and_then(|v| v.as_str()),
                tf.get("probs"),
            ) {
                readings.push((name.to_string(), p));
            }
        }
    }
    for (timeframe, probs) in &readings {
        for (key, label) in [
            ("bearish", "BEARISH"),
            ("ranging", "RANGING"),
            ("bullish", "BULLISH"),
        ] {
            if let Some(p) = probs.get(key).and_then(serde_json::Value::as_f64) {
                e.sample(
                    "herd_engine_regime_probability",
                    &[("timeframe", timeframe), ("regime", label)],
                    p,
                );
            }
        }
    }
}

fn rangers_gauges(e: &mut Exposition, r: &pb::RangersStatus) {
    e.single(
        "herd_engine_rangers_enabled",
        Kind::Gauge,
        "1 when the rangers strategy is enabled.",
        r.enabled,
    );
    e.single(
        "herd_engine_rangers_active",
        Kind::Gauge,
        "Rangers with an order or position working.",
        r.active,
    );
    e.single(
        "herd_engine_rangers_regime_ok",
        Kind::Gauge,
        "1 when the regime allows rangers to enter.",
        r.regime_ok,
    );
    e.single(
        "herd_engine_rangers_cycles_today",
        Kind::Gauge,
        "Ranger cycles (entry and exit filled) completed today (UTC).",
        r.cycles_today,
    );
    gauge_dec(
        e,
        "herd_engine_rangers_profit_today",
        "Net profit of today's ranger cycles, quote currency.",
        &r.profit_today,
    );
    e.single(
        "herd_engine_rangers_orphans_today",
        Kind::Gauge,
        "Ranger exits orphaned today (exit timeout).",
        r.orphans_today,
    );
    gauge_dec(
        e,
        "herd_engine_rangers_orphan_exposure_usd",
        "Value of the positions left by orphaned ranger exits.",
        &r.orphan_exposure_usd,
    );
    e.family(
        "herd_engine_rangers_slots",
        Kind::Gauge,
        "Ranger slots by stage.",
    );
    let mut stages: BTreeMap<&str, u64> = BTreeMap::new();
    for s in &r.slots {
        *stages.entry(s.stage.as_str()).or_default() += 1;
    }
    for (stage, n) in &stages {
        e.sample("herd_engine_rangers_slots", &[("stage", stage)], *n);
    }
}

fn grid_gauges(e: &mut Exposition, g: &pb::GridStatus) {
    e.single(
        "herd_engine_grid_enabled",
        Kind::Gauge,
        "1 when the grid strategy is enabled.",
        g.enabled,
    );
    e.single(
        "herd_engine_grid_slots",
        Kind::Gauge,
        "Grid slots.",
        g.slot_count,
    );
    e.single(
        "herd_engine_grid_cycles",
        Kind::Gauge,
        "Round trips completed by all grid slots (from the ledger).",
        g.slots.iter().map(|s| s.cycles).sum::<u64>(),
    );
    gauge_dec(
        e,
        "herd_engine_grid_profit",
        "Total profit of the grid's cycles, quote currency.",
        &g.total_profit,
    );
    gauge_dec(
        e,
        "herd_engine_grid_realized_pnl",
        "Realized PnL of closed grid positions.",
        &g.realized_pnl,
    );
    e.single(
        "herd_engine_grid_orphans",
        Kind::Gauge,
        "Grid exits orphaned so far (from the ledger).",
        g.total_orphans,
    );
    e.family(
        "herd_engine_grid_positions",
        Kind::Gauge,
        "Grid ledger positions by state.",
    );
    e.sample(
        "herd_engine_grid_positions",
        &[("state", "open")],
        g.open_positions,
    );
    e.sample(
        "herd_engine_grid_positions",
        &[("state", "closed")],
        g.closed_positions,
    );
    e.single(
        "herd_engine_grid_daily_loss_lock",
        Kind::Gauge,
        "1 while the daily loss limit stops new entries.",
        g.daily_loss_lock,
    );
    e.single(
        "herd_engine_grid_ledger_conflicts",
        Kind::Gauge,
        "Ledger conflicts found on replay.",
        g.ledger_conflicts,
    );
}

fn churner_gauges(e: &mut Exposition, c: &pb::ChurnerStatus) {
    e.single(
        "herd_engine_churner_enabled",
        Kind::Gauge,
        "1 when churners are enabled.",
        c.enabled,
    );
    e.single(
        "herd_engine_churner_active",
        Kind::Gauge,
        "Churners running.",
        c.active,
    );
    e.single(
        "herd_engine_churner_max",
        Kind::Gauge,
        "Most churners allowed.",
        c.max,
    );
    e.single(
        "herd_engine_churner_cycles",
        Kind::Gauge,
        "Churner cycles completed (all time, from the journal).",
        c.cycles_total,
    );
    e.single(
        "herd_engine_churner_cycles_today",
        Kind::Gauge,
        "Churner cycles completed today (UTC).",
        c.cycles_today,
    );
    gauge_dec(
        e,
        "herd_engine_churner_profit",
        "Churner profit (all time), quote currency.",
        &c.profit_total,
    );
    gauge_dec(
        e,
        "herd_engine_churner_profit_today",
        "Churner profit today (UTC), quote currency.",
        &c.profit_today,
    );
}

fn funding_gauges(e: &mut Exposition, f: &pb::FundingStatus) {
    e.single(
        "herd_engine_funding_enabled",
        Kind::Gauge,
        "1 when the funding orchestrator runs.",
        f.enabled,
    );
    e.single(
        "herd_engine_funding_opening_paused",
        Kind::Gauge,
        "1 while opening new funding positions is paused.",
        f.opening_paused,
    );
    e.family(
        "herd_engine_funding_positions",
        Kind::Gauge,
        "Funding positions by state.",
    );
    let mut states: BTreeMap<&str, u64> = BTreeMap::new();
    for p in &f.positions {
        *states.entry(p.state.as_str()).or_default() += 1;
    }
    for (state, n) in &states {
        e.sample("herd_engine_funding_positions", &[("state", state)], *n);
    }
    e.family(
        "herd_engine_funding_position_net",
        Kind::Gauge,
        "Net PnL of each funding position (funding - fees + unrealized), by perpetual.",
    );
    for p in &f.positions {
        dec_sample(
            e,
            "herd_engine_funding_position_net",
            &[("symbol", &p.symbol), ("position", &p.id)],
            &p.net,
        );
    }
    if let Some(p) = &f.portfolio {
        e.family(
            "herd_engine_funding_pnl",
            Kind::Gauge,
            "Funding portfolio PnL parts (funding, fees, unrealized, realized, net).",
        );
        for (part, v) in [
            ("funding", &p.total_funding),
            ("fees", &p.total_fees),
            ("unrealized", &p.unrealized),
            ("realized", &p.realized),
            ("net", &p.net_pnl),
        ] {
            dec_sample(e, "herd_engine_funding_pnl", &[("part", part)], v);
        }
        gauge_dec(
            e,
            "herd_engine_funding_exposure_usd",
            "Notional of the open funding positions.",
            &p.exposure_usd,
        );
    }
    gauge_dec(
        e,
        "herd_engine_funding_margin_ratio",
        "The account's margin ratio as the venue reports it.",
        &f.margin_ratio,
    );
    if let Some(em) = &f.emergency {
        e.family(
            "herd_engine_funding_emergency",
            Kind::Gauge,
            "The emergency controller: triggered, and done (every position closed).",
        );
        e.sample(
            "herd_engine_funding_emergency",
            &[("state", "triggered")],
            em.triggered,
        );
        e.sample(
            "herd_engine_funding_emergency",
            &[("state", "done")],
            em.done,
        );
    }
    if let Some(c) = &f.cycles {
        e.family(
            "herd_engine_funding_cycles_total",
            Kind::Counter,
            "Funding cycles since start, by result (run, skipped while one still ran, failed).",
        );
        for (result, n) in [("run", c.run), ("skipped", c.skipped), ("failed", c.failed)] {
            e.sample("herd_engine_funding_cycles_total", &[("result", result)], n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_gauges_mark_the_current_regime_and_skip_missing_numbers() {
        let st = pb::EngineStatus {
            engine_id: "e0".into(),
            mode: pb::Mode::Paused as i32,
            regime: Some(pb::RegimeStatus {
                regime: "RANGING".into(),
                ready: true,
                confidence: 0.5,
                detail_json: r#"{"probs":{"bearish":0.1,"ranging":0.7,"bullish":0.2},
                    "per_timeframe":[{"timeframe":"1m","probs":{"bearish":0.25,"ranging":0.5,"bullish":0.25}}]}"#
                    .into(),
                ..Default::default()
            }),
            rangers: Some(pb::RangersStatus {
                cycles_today: 3,
                profit_today: "1.2500".into(),
                orphan_exposure_usd: String::new(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut e = Exposition::new();
        status_gauges(&mut e, &st);
        let page = e.finish();
        for want in [
            "herd_engine_mode{mode=\"paused\"} 1\n",
            "herd_engine_mode{mode=\"running\"} 0\n",
            "herd_engine_regime{regime=\"RANGING\"} 1\n",
            "herd_engine_regime{regime=\"UNKNOWN\"} 0\n",
            "herd_engine_regime_probability{timeframe=\"1m\",regime=\"RANGING\"} 0.5\n",
            "herd_engine_regime_probability{timeframe=\"consensus\",regime=\"BULLISH\"} 0.2\n",
            "herd_engine_rangers_cycles_today 3\n",
            "herd_engine_rangers_profit_today 1.25\n",
        ] {
            assert!(page.contains(want), "missing {want:?} in\n{page}");
        }
        // An empty decimal is no sample, not a zero.
        assert!(
            !page.contains("\nherd_engine_rangers_orphan_exposure_usd "),
            "{page}"
        );
        assert!(!page.contains("\nherd_engine_price "), "{page}");
        assert!(page.contains("# TYPE herd_engine_price gauge\n"), "{page}");
    }

    #[test]
    fn order_results_and_venue_errors_are_counted() {
        let m = EngineMetrics::new();
        let t = Instant::now();
        m.record_order(Op::Place, t, &Ok::<(), Status>(()));
        m.record_order(Op::Place, t, &Err::<(), _>(Status::unavailable("x")));
        m.record_venue_error(Code::Unavailable);
        m.record_venue_error(Code::InvalidArgument);
        assert_eq!(m.order_count(Op::Place), 2);
        assert_eq!(m.order_count(Op::Cancel), 0);
        assert_eq!(m.venue_errors.iter().map(Counter::get).sum::<u64>(), 1);
    }
}
