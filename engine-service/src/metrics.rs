//! The engine's Prometheus metrics (`GET /metrics` on the admin port), on
//! the prometheus-client crate.
//!
//! Counters and latency histograms of the order path are recorded as they
//! happen ([`EngineMetrics`], handles on series registered at start: no
//! label lookup, no allocation, an atomic add or a histogram's short lock);
//! every strategy number (rangers, grid, churner, funding, regime) is read
//! at scrape time from the same [`pb::EngineStatus`] that `GetStatus` serves
//! ([`read_status`]), so the page and the RPC can never disagree.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Instant;

use herd_proto::engine as pb;
use herd_proto::prom::{self, Families, Gauges, unix_now_seconds};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
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

/// The order results, as the `result` label names them: [ok, error].
const RESULTS: [&str; 2] = ["ok", "error"];

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OpLabel {
    op: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OrderLabels {
    op: &'static str,
    result: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CodeLabel {
    code: &'static str,
}

/// The engine's hot-path metrics and the registry they are encoded from.
/// Every series is created at start (so each is on the page from the first
/// scrape, at zero) and held here by handle.
#[derive(Debug)]
pub struct EngineMetrics {
    registry: Registry,
    started_at: f64,
    latency: [Histogram; 2],
    /// [op][0 = ok, 1 = error]
    results: [[Counter; 2]; 2],
    venue_errors: [Counter; VENUE_ERROR_CODES.len()],
    /// Order events received on the stream and journaled.
    pub events: Counter,
    /// Times the event stream (re)connected.
    pub stream_connects: Counter,
    /// Gateway calls that did not reach the gateway (not venue errors).
    pub gateway_unreachable: Counter,
}

impl Default for EngineMetrics {
    fn default() -> Self {
        EngineMetrics::new()
    }
}

impl EngineMetrics {
    pub fn new() -> EngineMetrics {
        let mut registry = Registry::default();
        let latency_family: Family<OpLabel, Histogram> =
            Family::new_with_constructor(prom::latency_histogram);
        let latency =
            Op::ALL.map(|op| latency_family.get_or_create_owned(&OpLabel { op: op.as_str() }));
        prom::register(
            &mut registry,
            "herd_engine_order_latency_seconds",
            "Round trip of an order call through the gateway to the venue and back, by operation.",
            latency_family,
        );
        let orders = Family::<OrderLabels, Counter>::default();
        let results = Op::ALL.map(|op| {
            RESULTS.map(|result| {
                orders.get_or_create_owned(&OrderLabels {
                    op: op.as_str(),
                    result,
                })
            })
        });
        prom::register(
            &mut registry,
            "herd_engine_orders",
            "Order calls sent to the gateway, by operation and result.",
            orders,
        );
        let codes = Family::<CodeLabel, Counter>::default();
        let venue_errors =
            VENUE_ERROR_CODES.map(|(_, code)| codes.get_or_create_owned(&CodeLabel { code }));
        prom::register(
            &mut registry,
            "herd_engine_venue_errors",
            "Gateway answers counted as venue or network errors (they pause the engine when consecutive), by gRPC code.",
            codes,
        );
        let events = Counter::default();
        prom::register(
            &mut registry,
            "herd_engine_order_events",
            "Order events received on the gateway stream and journaled.",
            events.clone(),
        );
        let stream_connects = Counter::default();
        prom::register(
            &mut registry,
            "herd_engine_gateway_stream_connects",
            "Times the order-event stream to the gateway was (re)established.",
            stream_connects.clone(),
        );
        let gateway_unreachable = Counter::default();
        prom::register(
            &mut registry,
            "herd_engine_gateway_unreachable",
            "Gateway calls that could not reach the gateway (connection refused or broken); they do not pause the engine.",
            gateway_unreachable.clone(),
        );
        EngineMetrics {
            registry,
            started_at: unix_now_seconds(),
            latency,
            results,
            venue_errors,
            events,
            stream_connects,
            gateway_unreachable,
        }
    }

    /// Records one gateway round trip of `op` that started at `started`.
    pub fn record_order<T>(&self, op: Op, started: Instant, r: &Result<T, Status>) {
        let i = op as usize;
        if let Some(h) = self.latency.get(i) {
            h.observe(started.elapsed().as_secs_f64());
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
        self.results
            .get(op as usize)
            .map_or(0, |row| row.iter().map(Counter::get).sum())
    }
}

fn dec(s: &str) -> Option<Decimal> {
    Decimal::from_str(s.trim()).ok()
}

/// Writes a sample whose value is a decimal string from the status; an
/// empty or unparsable field writes no sample (absent, not a made-up zero).
fn dec_sample(g: &mut Gauges<'_>, labels: &[(&str, &str)], v: &str) -> fmt::Result {
    match dec(v) {
        Some(d) => g.sample(labels, d),
        None => Ok(()),
    }
}

fn gauge_dec(e: &mut Families<'_>, name: &str, help: &str, v: &str) -> fmt::Result {
    dec_sample(&mut e.gauge(name, help)?, &[], v)
}

/// Regime labels in the order the gauge lists them.
const REGIMES: [&str; 4] = ["BEARISH", "RANGING", "BULLISH", "UNKNOWN"];

/// The `/metrics` page.
pub async fn render(shared: &Shared) -> Result<String, fmt::Error> {
    let gauges = ScrapeGauges {
        engine: shared.cfg.id.clone(),
        symbol: shared.cfg.symbol.clone(),
        started_at: shared.metrics.started_at,
        status: read_status(shared).await,
    };
    let mut scrape = Registry::default();
    scrape.register_collector(Box::new(gauges));
    prom::encode(&[&shared.metrics.registry, &scrape])
}

/// The status the strategy gauges are read from: the one `GetStatus`
/// serves. None when it could not be read for this scrape.
async fn read_status(shared: &Shared) -> Option<pb::EngineStatus> {
    match crate::view::engine_status(shared).await {
        Ok(st) => Some(st),
        Err(s) => {
            tracing::warn!(error = %s.message(), "metrics: engine status unavailable");
            None
        }
    }
}

const STATUS_UP_HELP: &str =
    "1 when the engine's status (store, strategies) could be read for this scrape.";

/// The gauges of one scrape: who this engine is, and its status.
#[derive(Debug)]
struct ScrapeGauges {
    engine: String,
    symbol: String,
    started_at: f64,
    status: Option<pb::EngineStatus>,
}

impl Collector for ScrapeGauges {
    fn encode(&self, encoder: DescriptorEncoder) -> fmt::Result {
        let mut e = Families::new(encoder);
        e.gauge(
            "herd_engine_info",
            "Always 1; the labels say which engine this is.",
        )?
        .sample(
            &[
                ("engine", &self.engine),
                ("symbol", &self.symbol),
                ("version", env!("CARGO_PKG_VERSION")),
            ],
            1u64,
        )?;
        e.single_gauge(
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch in seconds.",
            self.started_at,
        )?;
        match &self.status {
            Some(st) => status_gauges(&mut e, st),
            None => e.single_gauge("herd_engine_status_up", STATUS_UP_HELP, 0u64),
        }
    }
}

fn status_gauges(e: &mut Families<'_>, st: &pb::EngineStatus) -> fmt::Result {
    e.single_gauge("herd_engine_status_up", STATUS_UP_HELP, 1u64)?;
    let mut g = e.gauge(
        "herd_engine_mode",
        "1 on the engine's current mode (running, paused, halted).",
    )?;
    let mode = pb::Mode::try_from(st.mode).unwrap_or(pb::Mode::Unspecified);
    for (name, m) in [
        ("running", pb::Mode::Running),
        ("paused", pb::Mode::Paused),
        ("halted", pb::Mode::Halted),
    ] {
        g.sample(&[("mode", name)], mode == m)?;
    }
    e.single_gauge(
        "herd_engine_gateway_connected",
        "1 while the engine follows the gateway's order-event stream.",
        st.gateway_connected,
    )?;
    e.single_gauge(
        "herd_engine_event_sequence",
        "Sequence number of the last order event journaled.",
        st.last_event_sequence,
    )?;
    e.single_gauge(
        "herd_engine_consecutive_venue_errors",
        "Venue errors in a row (the engine pauses at max_consecutive_errors).",
        st.consecutive_venue_errors,
    )?;
    e.single_gauge(
        "herd_engine_fills_journaled",
        "Fills in the engine's journal.",
        st.fills_journaled,
    )?;
    let mut g = e.gauge(
        "herd_engine_open_orders",
        "Working orders in the journal, by owning strategy.",
    )?;
    let mut by_owner: BTreeMap<&str, u64> = BTreeMap::new();
    for o in &st.open_orders {
        *by_owner.entry(o.owner.as_str()).or_default() += 1;
    }
    for (owner, n) in &by_owner {
        g.sample(&[("owner", owner)], *n)?;
    }
    gauge_dec(
        e,
        "herd_engine_price",
        "Last traded price of the engine's symbol.",
        &st.price,
    )?;
    e.single_gauge(
        "herd_engine_price_age_seconds",
        "Age of the last price.",
        st.price_age_ms as f64 / 1000.0,
    )?;

    if let Some(r) = &st.regime {
        regime_gauges(e, r)?;
    }
    if let Some(r) = &st.rangers {
        rangers_gauges(e, r)?;
    }
    if let Some(g) = &st.grid {
        grid_gauges(e, g)?;
    }
    if let Some(c) = &st.capacity {
        e.single_gauge(
            "herd_engine_capacity_open_orders",
            "Open orders on the pair (whole key) as the capacity check sees them.",
            c.open_orders,
        )?;
        e.single_gauge(
            "herd_engine_capacity_limit",
            "The venue's open-order limit on the pair.",
            c.limit,
        )?;
        e.single_gauge(
            "herd_engine_capacity_headroom",
            "Orders that may still be opened before the safe cap.",
            c.headroom,
        )?;
    }
    if let Some(c) = st.self_healing.as_ref().and_then(|s| s.churner.as_ref()) {
        churner_gauges(e, c)?;
    }
    if let Some(f) = &st.funding {
        funding_gauges(e, f)?;
    }
    Ok(())
}

fn regime_gauges(e: &mut Families<'_>, r: &pb::RegimeStatus) -> fmt::Result {
    let mut g = e.gauge(
        "herd_engine_regime",
        "1 on the current consensus regime (UNKNOWN: detector not ready).",
    )?;
    let current = if REGIMES.contains(&r.regime.as_str()) {
        r.regime.as_str()
    } else {
        "UNKNOWN"
    };
    for name in REGIMES {
        g.sample(&[("regime", name)], name == current)?;
    }
    e.single_gauge(
        "herd_engine_regime_ready",
        "1 when the regime detector has a trained model.",
        r.ready,
    )?;
    e.single_gauge(
        "herd_engine_regime_confidence",
        "Top posterior minus the second.",
        r.confidence,
    )?;
    e.single_gauge(
        "herd_engine_regime_bias",
        "P(bullish) - P(bearish), 0 below the confidence floor.",
        r.bias,
    )?;
    // Per-timeframe posteriors, from the detector's detail (absent with a
    // fixed regime source or before the first reading).
    let mut g = e.gauge(
        "herd_engine_regime_probability",
        "Posterior probability of each regime, per timeframe and for the consensus.",
    )?;
    let Ok(detail) = serde_json::from_str::<serde_json::Value>(&r.detail_json) else {
        return Ok(());
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
                g.sample(&[("timeframe", timeframe), ("regime", label)], p)?;
            }
        }
    }
    Ok(())
}

fn rangers_gauges(e: &mut Families<'_>, r: &pb::RangersStatus) -> fmt::Result {
    e.single_gauge(
        "herd_engine_rangers_enabled",
        "1 when the rangers strategy is enabled.",
        r.enabled,
    )?;
    e.single_gauge(
        "herd_engine_rangers_active",
        "Rangers with an order or position working.",
        r.active,
    )?;
    e.single_gauge(
        "herd_engine_rangers_regime_ok",
        "1 when the regime allows rangers to enter.",
        r.regime_ok,
    )?;
    e.single_gauge(
        "herd_engine_rangers_cycles_today",
        "Ranger cycles (entry and exit filled) completed today (UTC).",
        r.cycles_today,
    )?;
    gauge_dec(
        e,
        "herd_engine_rangers_profit_today",
        "Net profit of today's ranger cycles, quote currency.",
        &r.profit_today,
    )?;
    e.single_gauge(
        "herd_engine_rangers_orphans_today",
        "Ranger exits orphaned today (exit timeout).",
        r.orphans_today,
    )?;
    gauge_dec(
        e,
        "herd_engine_rangers_orphan_exposure_usd",
        "Value of the positions left by orphaned ranger exits.",
        &r.orphan_exposure_usd,
    )?;
    let mut g = e.gauge("herd_engine_rangers_slots", "Ranger slots by stage.")?;
    let mut stages: BTreeMap<&str, u64> = BTreeMap::new();
    for s in &r.slots {
        *stages.entry(s.stage.as_str()).or_default() += 1;
    }
    for (stage, n) in &stages {
        g.sample(&[("stage", stage)], *n)?;
    }
    Ok(())
}

fn grid_gauges(e: &mut Families<'_>, g: &pb::GridStatus) -> fmt::Result {
    e.single_gauge(
        "herd_engine_grid_enabled",
        "1 when the grid strategy is enabled.",
        g.enabled,
    )?;
    e.single_gauge("herd_engine_grid_slots", "Grid slots.", g.slot_count)?;
    e.single_gauge(
        "herd_engine_grid_cycles",
        "Round trips completed by all grid slots (from the ledger).",
        g.slots.iter().map(|s| s.cycles).sum::<u64>(),
    )?;
    gauge_dec(
        e,
        "herd_engine_grid_profit",
        "Total profit of the grid's cycles, quote currency.",
        &g.total_profit,
    )?;
    gauge_dec(
        e,
        "herd_engine_grid_realized_pnl",
        "Realized PnL of closed grid positions.",
        &g.realized_pnl,
    )?;
    e.single_gauge(
        "herd_engine_grid_orphans",
        "Grid exits orphaned so far (from the ledger).",
        g.total_orphans,
    )?;
    let mut p = e.gauge(
        "herd_engine_grid_positions",
        "Grid ledger positions by state.",
    )?;
    p.sample(&[("state", "open")], g.open_positions)?;
    p.sample(&[("state", "closed")], g.closed_positions)?;
    e.single_gauge(
        "herd_engine_grid_daily_loss_lock",
        "1 while the daily loss limit stops new entries.",
        g.daily_loss_lock,
    )?;
    e.single_gauge(
        "herd_engine_grid_ledger_conflicts",
        "Ledger conflicts found on replay.",
        g.ledger_conflicts,
    )?;
    Ok(())
}

fn churner_gauges(e: &mut Families<'_>, c: &pb::ChurnerStatus) -> fmt::Result {
    e.single_gauge(
        "herd_engine_churner_enabled",
        "1 when churners are enabled.",
        c.enabled,
    )?;
    e.single_gauge("herd_engine_churner_active", "Churners running.", c.active)?;
    e.single_gauge("herd_engine_churner_max", "Most churners allowed.", c.max)?;
    e.single_gauge(
        "herd_engine_churner_cycles",
        "Churner cycles completed (all time, from the journal).",
        c.cycles_total,
    )?;
    e.single_gauge(
        "herd_engine_churner_cycles_today",
        "Churner cycles completed today (UTC).",
        c.cycles_today,
    )?;
    gauge_dec(
        e,
        "herd_engine_churner_profit",
        "Churner profit (all time), quote currency.",
        &c.profit_total,
    )?;
    gauge_dec(
        e,
        "herd_engine_churner_profit_today",
        "Churner profit today (UTC), quote currency.",
        &c.profit_today,
    )?;
    Ok(())
}

fn funding_gauges(e: &mut Families<'_>, f: &pb::FundingStatus) -> fmt::Result {
    e.single_gauge(
        "herd_engine_funding_enabled",
        "1 when the funding orchestrator runs.",
        f.enabled,
    )?;
    e.single_gauge(
        "herd_engine_funding_opening_paused",
        "1 while opening new funding positions is paused.",
        f.opening_paused,
    )?;
    let mut g = e.gauge(
        "herd_engine_funding_positions",
        "Funding positions by state.",
    )?;
    let mut states: BTreeMap<&str, u64> = BTreeMap::new();
    for p in &f.positions {
        *states.entry(p.state.as_str()).or_default() += 1;
    }
    for (state, n) in &states {
        g.sample(&[("state", state)], *n)?;
    }
    let mut g = e.gauge(
        "herd_engine_funding_position_net",
        "Net PnL of each funding position (funding - fees + unrealized), by perpetual.",
    )?;
    for p in &f.positions {
        dec_sample(
            &mut g,
            &[("symbol", &p.symbol), ("position", &p.id)],
            &p.net,
        )?;
    }
    if let Some(p) = &f.portfolio {
        let mut g = e.gauge(
            "herd_engine_funding_pnl",
            "Funding portfolio PnL parts (funding, fees, unrealized, realized, net).",
        )?;
        for (part, v) in [
            ("funding", &p.total_funding),
            ("fees", &p.total_fees),
            ("unrealized", &p.unrealized),
            ("realized", &p.realized),
            ("net", &p.net_pnl),
        ] {
            dec_sample(&mut g, &[("part", part)], v)?;
        }
        gauge_dec(
            e,
            "herd_engine_funding_exposure_usd",
            "Notional of the open funding positions.",
            &p.exposure_usd,
        )?;
    }
    gauge_dec(
        e,
        "herd_engine_funding_margin_ratio",
        "The account's margin ratio as the venue reports it.",
        &f.margin_ratio,
    )?;
    if let Some(em) = &f.emergency {
        let mut g = e.gauge(
            "herd_engine_funding_emergency",
            "The emergency controller: triggered, and done (every position closed).",
        )?;
        g.sample(&[("state", "triggered")], em.triggered)?;
        g.sample(&[("state", "done")], em.done)?;
    }
    if let Some(c) = &f.cycles {
        let mut k = e.counter(
            "herd_engine_funding_cycles",
            "Funding cycles since start, by result (run, skipped while one still ran, failed).",
        )?;
        for (result, n) in [("run", c.run), ("skipped", c.skipped), ("failed", c.failed)] {
            k.sample(&[("result", result)], n)?;
        }
    }
    Ok(())
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
        let mut scrape = Registry::default();
        scrape.register_collector(Box::new(ScrapeGauges {
            engine: "e0".into(),
            symbol: "DOGEUSD".into(),
            started_at: 1.0,
            status: Some(st),
        }));
        let page = prom::encode(&[&scrape]).unwrap();
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
        assert!(page.contains("herd_engine_status_up 1\n"), "{page}");
        assert!(page.ends_with("\n# EOF\n"), "{page}");
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
        let page = prom::encode(&[&m.registry]).unwrap();
        for want in [
            "herd_engine_orders_total{op=\"place\",result=\"ok\"} 1\n",
            "herd_engine_orders_total{op=\"place\",result=\"error\"} 1\n",
            "herd_engine_orders_total{op=\"cancel\",result=\"ok\"} 0\n",
            "herd_engine_order_latency_seconds_count{op=\"place\"} 2\n",
            "herd_engine_order_latency_seconds_count{op=\"cancel\"} 0\n",
            "herd_engine_venue_errors_total{code=\"unavailable\"} 1\n",
            "herd_engine_venue_errors_total{code=\"internal\"} 0\n",
            "herd_engine_order_events_total 0\n",
        ] {
            assert!(page.contains(want), "missing {want:?} in\n{page}");
        }
    }
}
