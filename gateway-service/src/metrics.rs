//! The gateway's Prometheus metrics (`GET /metrics` on the admin port), on
//! the prometheus-client crate.
//!
//! Two kinds of numbers: counters and histograms recorded on the hot path
//! ([`GatewayMetrics`], registered once; venue calls are recorded by
//! [`MeteredVenue`], which wraps the adapter so no call site can forget),
//! and gauges read at scrape time from state the gateway keeps anyway
//! (registry, fair queue, the adapter's budget) by [`StateGauges`], a
//! collector built for each scrape by [`render`].

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use herd_proto::prom::{self, Families, Labels, unix_now_seconds};
use herd_venue::{
    AccountMargin, Balance, BudgetSnapshot, Candle, FundingPayment, FundingPaymentQuery,
    FundingRate, Instrument, KeyInfo, NewOrder, OrderRef, OrderState, PlaceOutcome, Position,
    Ticker, Venue, VenueError,
};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeLabelValue, LabelSetEncoder, LabelValueEncoder,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::service::Core;

/// Orders per `query_orders` call.
const BATCH_BUCKETS: [f64; 7] = [1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0];

/// The venue endpoints, as the `method` label names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    Instruments,
    Ticker,
    Candles,
    Balances,
    PlaceOrder,
    CancelOrder,
    OpenOrders,
    QueryOrders,
    ArmDeadMansSwitch,
    FundingRates,
    Positions,
    AccountMargin,
    FundingPayments,
}

impl Method {
    pub const ALL: [Method; 13] = [
        Method::Instruments,
        Method::Ticker,
        Method::Candles,
        Method::Balances,
        Method::PlaceOrder,
        Method::CancelOrder,
        Method::OpenOrders,
        Method::QueryOrders,
        Method::ArmDeadMansSwitch,
        Method::FundingRates,
        Method::Positions,
        Method::AccountMargin,
        Method::FundingPayments,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Method::Instruments => "instruments",
            Method::Ticker => "ticker",
            Method::Candles => "candles",
            Method::Balances => "balances",
            Method::PlaceOrder => "place_order",
            Method::CancelOrder => "cancel_order",
            Method::OpenOrders => "open_orders",
            Method::QueryOrders => "query_orders",
            Method::ArmDeadMansSwitch => "arm_dead_mans_switch",
            Method::FundingRates => "funding_rates",
            Method::Positions => "positions",
            Method::AccountMargin => "account_margin",
            Method::FundingPayments => "funding_payments",
        }
    }
}

/// How a venue call ended, as the `outcome` label names it: `ok`, one of the
/// [`VenueError`] classes, or `unknown_outcome` for a submit the venue did
/// not answer in a way we can trust.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    Ok,
    UnknownOutcome,
    InvalidArgument,
    Rejected,
    InsufficientFunds,
    UnknownOrder,
    OrderLimit,
    RateLimited,
    Lockout,
    Auth,
    Unavailable,
    Transport,
    Parse,
    Unsupported,
    Other,
}

impl Outcome {
    pub const ALL: [Outcome; 15] = [
        Outcome::Ok,
        Outcome::UnknownOutcome,
        Outcome::InvalidArgument,
        Outcome::Rejected,
        Outcome::InsufficientFunds,
        Outcome::UnknownOrder,
        Outcome::OrderLimit,
        Outcome::RateLimited,
        Outcome::Lockout,
        Outcome::Auth,
        Outcome::Unavailable,
        Outcome::Transport,
        Outcome::Parse,
        Outcome::Unsupported,
        Outcome::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::UnknownOutcome => "unknown_outcome",
            Outcome::InvalidArgument => "invalid_argument",
            Outcome::Rejected => "rejected",
            Outcome::InsufficientFunds => "insufficient_funds",
            Outcome::UnknownOrder => "unknown_order",
            Outcome::OrderLimit => "order_limit",
            Outcome::RateLimited => "rate_limited",
            Outcome::Lockout => "lockout",
            Outcome::Auth => "auth",
            Outcome::Unavailable => "unavailable",
            Outcome::Transport => "transport",
            Outcome::Parse => "parse",
            Outcome::Unsupported => "unsupported",
            Outcome::Other => "other",
        }
    }

    pub fn of_error(e: &VenueError) -> Outcome {
        match e {
            VenueError::InvalidArgument(_) => Outcome::InvalidArgument,
            VenueError::Rejected(_) => Outcome::Rejected,
            VenueError::InsufficientFunds(_) => Outcome::InsufficientFunds,
            VenueError::UnknownOrder(_) => Outcome::UnknownOrder,
            VenueError::OrderLimit(_) => Outcome::OrderLimit,
            VenueError::RateLimited { .. } => Outcome::RateLimited,
            VenueError::Lockout { .. } => Outcome::Lockout,
            VenueError::Auth(_) => Outcome::Auth,
            VenueError::Unavailable(_) => Outcome::Unavailable,
            VenueError::Transport(_) => Outcome::Transport,
            VenueError::Parse(_) => Outcome::Parse,
            VenueError::Unsupported(_) => Outcome::Unsupported,
            VenueError::Other(_) => Outcome::Other,
        }
    }

    fn of<T>(r: &Result<T, VenueError>) -> Outcome {
        match r {
            Ok(_) => Outcome::Ok,
            Err(e) => Outcome::of_error(e),
        }
    }
}

impl EncodeLabelValue for Method {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> fmt::Result {
        fmt::Write::write_str(encoder, self.as_str())
    }
}

impl EncodeLabelValue for Outcome {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> fmt::Result {
        fmt::Write::write_str(encoder, self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CallLabels {
    method: Method,
    outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct MethodLabel {
    method: Method,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

/// `engine`, escaped: engine ids come from the config file.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct EngineLabel(String);

impl EncodeLabelSet for EngineLabel {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> fmt::Result {
        Labels(&[("engine", &self.0)]).encode(encoder)
    }
}

/// `engine` and `code` of a risk denial, escaped.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct DenialLabels(String, &'static str);

impl EncodeLabelSet for DenialLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> fmt::Result {
        Labels(&[("engine", &self.0), ("code", self.1)]).encode(encoder)
    }
}

/// Per-engine counters: handles on the engine's series of the registered
/// families, so recording takes no lock.
#[derive(Debug, Default)]
pub struct EngineCounters {
    pub events_streamed: Counter,
    pub dead_man_fired: Counter,
    pub dead_man_canceled: Counter,
}

/// The gateway's hot-path metrics and the registry they are encoded from.
/// Recording is an atomic add (a histogram takes its own short lock); a
/// venue call's series is looked up under its family's read lock.
#[derive(Debug)]
pub struct GatewayMetrics {
    registry: Registry,
    started_at: f64,
    calls: Family<CallLabels, Counter>,
    call_seconds: Family<MethodLabel, Histogram>,
    poll_seconds: Histogram,
    poll_batch_size: Histogram,
    polls_ok: Counter,
    polls_failed: Counter,
    engines: HashMap<String, Arc<EngineCounters>>,
    risk_denials: Family<DenialLabels, Counter>,
}

impl GatewayMetrics {
    /// `engines`: the configured engine ids.
    pub fn new<'a>(engines: impl IntoIterator<Item = &'a str>) -> GatewayMetrics {
        let mut registry = Registry::default();

        let calls = Family::<CallLabels, Counter>::default();
        // Every endpoint's ok series exists from the start; error series
        // appear once they happen (15 classes x 13 endpoints of zeros would
        // drown the page).
        for method in Method::ALL {
            calls.get_or_create_owned(&CallLabels {
                method,
                outcome: Outcome::Ok,
            });
        }
        prom::register(
            &mut registry,
            "herd_gateway_venue_calls",
            "Venue calls by endpoint (method) and outcome (ok, unknown_outcome or the error class).",
            calls.clone(),
        );
        let call_seconds: Family<MethodLabel, Histogram> =
            Family::new_with_constructor(prom::latency_histogram);
        prom::register(
            &mut registry,
            "herd_gateway_venue_call_duration_seconds",
            "Venue call latency by endpoint, including the adapter's wait for its rate budget.",
            call_seconds.clone(),
        );

        let poll_seconds = prom::latency_histogram();
        prom::register(
            &mut registry,
            "herd_gateway_poll_duration_seconds",
            "Duration of one poll cycle (open orders plus the batched queries).",
            poll_seconds.clone(),
        );
        let poll_batch_size = Histogram::new(BATCH_BUCKETS);
        prom::register(
            &mut registry,
            "herd_gateway_poll_batch_size",
            "Orders named per query_orders call.",
            poll_batch_size.clone(),
        );
        let polls = Family::<ResultLabel, Counter>::default();
        let polls_ok = polls.get_or_create_owned(&ResultLabel { result: "ok" });
        let polls_failed = polls.get_or_create_owned(&ResultLabel { result: "error" });
        prom::register(
            &mut registry,
            "herd_gateway_polls",
            "Poll cycles that did work, by result.",
            polls,
        );

        let streamed = Family::<EngineLabel, Counter>::default();
        let fired = Family::<EngineLabel, Counter>::default();
        let canceled = Family::<EngineLabel, Counter>::default();
        let engines = engines
            .into_iter()
            .map(|e| {
                let l = EngineLabel(e.to_string());
                let counters = EngineCounters {
                    events_streamed: streamed.get_or_create_owned(&l),
                    dead_man_fired: fired.get_or_create_owned(&l),
                    dead_man_canceled: canceled.get_or_create_owned(&l),
                };
                (e.to_string(), Arc::new(counters))
            })
            .collect();
        prom::register(
            &mut registry,
            "herd_gateway_events_streamed",
            "Order events sent to each engine over its stream.",
            streamed,
        );
        prom::register(
            &mut registry,
            "herd_gateway_dead_man_fired",
            "Times the per-engine dead man's switch fired (stream gone past its grace).",
            fired,
        );
        prom::register(
            &mut registry,
            "herd_gateway_dead_man_cancels",
            "Orders canceled by the per-engine dead man's switch.",
            canceled,
        );

        let risk_denials = Family::<DenialLabels, Counter>::default();
        prom::register(
            &mut registry,
            "herd_gateway_risk_denials",
            "Orders the risk checks refused, by engine and code (docs/risk.md).",
            risk_denials.clone(),
        );

        GatewayMetrics {
            risk_denials,
            registry,
            started_at: unix_now_seconds(),
            calls,
            call_seconds,
            poll_seconds,
            poll_batch_size,
            polls_ok,
            polls_failed,
            engines,
        }
    }

    /// Records one venue call.
    pub fn record_call(&self, method: Method, outcome: Outcome, started: Instant) {
        self.calls
            .get_or_create(&CallLabels { method, outcome })
            .inc();
        self.call_seconds
            .get_or_create(&MethodLabel { method })
            .observe(started.elapsed().as_secs_f64());
    }

    /// Records one poll cycle that called the venue.
    pub fn record_poll(&self, started: Instant, ok: bool) {
        self.poll_seconds.observe(started.elapsed().as_secs_f64());
        if ok {
            self.polls_ok.inc();
        } else {
            self.polls_failed.inc();
        }
    }

    /// Calls of `method` that ended with `outcome` so far.
    pub fn calls(&self, method: Method, outcome: Outcome) -> u64 {
        self.calls
            .get(&CallLabels { method, outcome })
            .map_or(0, |c| c.get())
    }

    /// Counts one risk denial.
    pub fn risk_denied(&self, engine: &str, code: &'static str) {
        self.risk_denials
            .get_or_create(&DenialLabels(engine.to_string(), code))
            .inc();
    }

    /// The counters of a configured engine.
    pub fn engine(&self, engine: &str) -> Option<Arc<EngineCounters>> {
        self.engines.get(engine).cloned()
    }
}

/// A [`Venue`] that records every call's method, outcome and latency, then
/// answers exactly what the adapter answered.
pub struct MeteredVenue {
    inner: Arc<dyn Venue>,
    metrics: Arc<GatewayMetrics>,
    /// Lockouts, rate-limit and auth answers become herd events.
    events: crate::events::Emitter,
}

impl MeteredVenue {
    pub fn wrap(inner: Arc<dyn Venue>, metrics: Arc<GatewayMetrics>) -> Arc<dyn Venue> {
        MeteredVenue::wrap_with_events(inner, metrics, crate::events::Emitter::default())
    }

    /// As [`MeteredVenue::wrap`], and venue trouble becomes herd events.
    pub fn wrap_with_events(
        inner: Arc<dyn Venue>,
        metrics: Arc<GatewayMetrics>,
        events: crate::events::Emitter,
    ) -> Arc<dyn Venue> {
        Arc::new(MeteredVenue {
            inner,
            metrics,
            events,
        })
    }

    fn done<T>(
        &self,
        method: Method,
        started: Instant,
        r: Result<T, VenueError>,
    ) -> Result<T, VenueError> {
        self.metrics.record_call(method, Outcome::of(&r), started);
        if let Err(e) = &r {
            crate::events::venue_trouble(&self.events, method.as_str(), e);
        }
        r
    }
}

#[async_trait]
impl Venue for MeteredVenue {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    async fn instruments(&self) -> Result<Vec<Instrument>, VenueError> {
        let t = Instant::now();
        let r = self.inner.instruments().await;
        self.done(Method::Instruments, t, r)
    }

    async fn ticker(&self, symbol: &str) -> Result<Ticker, VenueError> {
        let t = Instant::now();
        let r = self.inner.ticker(symbol).await;
        self.done(Method::Ticker, t, r)
    }

    async fn candles(
        &self,
        symbol: &str,
        interval_minutes: u32,
        since_ms: i64,
    ) -> Result<Vec<Candle>, VenueError> {
        let t = Instant::now();
        let r = self.inner.candles(symbol, interval_minutes, since_ms).await;
        self.done(Method::Candles, t, r)
    }

    async fn balances(&self) -> Result<Vec<Balance>, VenueError> {
        let t = Instant::now();
        let r = self.inner.balances().await;
        self.done(Method::Balances, t, r)
    }

    async fn place_order(&self, order: &NewOrder) -> Result<PlaceOutcome, VenueError> {
        let t = Instant::now();
        let r = self.inner.place_order(order).await;
        let outcome = match &r {
            Ok(PlaceOutcome::Accepted(_)) => Outcome::Ok,
            Ok(PlaceOutcome::Unknown { .. }) => Outcome::UnknownOutcome,
            Err(e) if e.is_outcome_unknown() => Outcome::UnknownOutcome,
            Err(e) => Outcome::of_error(e),
        };
        self.metrics.record_call(Method::PlaceOrder, outcome, t);
        r
    }

    async fn cancel_order(&self, order: &OrderRef) -> Result<(), VenueError> {
        let t = Instant::now();
        let r = self.inner.cancel_order(order).await;
        self.done(Method::CancelOrder, t, r)
    }

    async fn open_orders(&self) -> Result<Vec<OrderState>, VenueError> {
        let t = Instant::now();
        let r = self.inner.open_orders().await;
        self.done(Method::OpenOrders, t, r)
    }

    async fn query_orders(&self, orders: &[OrderRef]) -> Result<Vec<OrderState>, VenueError> {
        self.metrics.poll_batch_size.observe(orders.len() as f64);
        let t = Instant::now();
        let r = self.inner.query_orders(orders).await;
        self.done(Method::QueryOrders, t, r)
    }

    fn max_query_batch(&self) -> usize {
        self.inner.max_query_batch()
    }

    fn budget(&self) -> BudgetSnapshot {
        self.inner.budget()
    }

    fn max_client_order_id_len(&self) -> usize {
        self.inner.max_client_order_id_len()
    }

    fn min_pending_timeout_ms(&self) -> i64 {
        self.inner.min_pending_timeout_ms()
    }

    async fn arm_dead_mans_switch(&self, timeout_s: u32) -> Result<bool, VenueError> {
        let t = Instant::now();
        let r = self.inner.arm_dead_mans_switch(timeout_s).await;
        self.done(Method::ArmDeadMansSwitch, t, r)
    }

    async fn funding_rates(&self, symbols: &[String]) -> Result<Vec<FundingRate>, VenueError> {
        let t = Instant::now();
        let r = self.inner.funding_rates(symbols).await;
        self.done(Method::FundingRates, t, r)
    }

    async fn positions(&self) -> Result<Vec<Position>, VenueError> {
        let t = Instant::now();
        let r = self.inner.positions().await;
        self.done(Method::Positions, t, r)
    }

    async fn account_margin(&self) -> Result<AccountMargin, VenueError> {
        let t = Instant::now();
        let r = self.inner.account_margin().await;
        self.done(Method::AccountMargin, t, r)
    }

    async fn funding_payments(
        &self,
        query: &FundingPaymentQuery,
    ) -> Result<Vec<FundingPayment>, VenueError> {
        let t = Instant::now();
        let r = self.inner.funding_payments(query).await;
        self.done(Method::FundingPayments, t, r)
    }

    async fn key_info(&self) -> Result<Option<KeyInfo>, VenueError> {
        self.inner.key_info().await
    }

    async fn clock_offset_ms(&self) -> Result<Option<herd_venue::ClockReading>, VenueError> {
        self.inner.clock_offset_ms().await
    }

    fn clock_offset_limit_ms(&self) -> Option<i64> {
        self.inner.clock_offset_limit_ms()
    }
}

/// The `/metrics` page.
pub fn render(core: &Core) -> Result<String, fmt::Error> {
    let mut scrape = Registry::default();
    scrape.register_collector(Box::new(StateGauges::read(core)));
    prom::encode(&[&core.metrics.registry, &scrape])
}

/// What one scrape reads from the gateway's state: the budget, the fair
/// queue and the registry, written as gauges (and the counters those keep).
#[derive(Debug)]
struct StateGauges {
    venue: &'static str,
    incarnation: String,
    started_at: f64,
    budget: BudgetSnapshot,
    /// (engine, waiting, granted)
    participants: Vec<(String, usize, u64)>,
    /// (engine, streams, last sequence, working orders, calls)
    summaries: Vec<(String, u32, u64, u32, u64)>,
    /// Open foreign orders (no engine's) per symbol.
    foreign: BTreeMap<String, u64>,
    key: crate::keycheck::KeySnapshot,
    /// (book: engine id or "account", state 0/1/2, [(limit, usage / limit)])
    risk: Vec<RiskGauges>,
    /// (sink, [delivered, failures, dead letters, dropped]) since start.
    sinks: Vec<(String, [u64; 4])>,
}

/// One risk book's gauges: (book, state, [(limit, usage ratio)]).
type RiskGauges = (String, u64, Vec<(&'static str, f64)>);

/// A book's trading state as a number (0 ACTIVE, 1 REDUCING, 2 HALTED) and
/// its usage of each set limit as a ratio (1 = at the limit).
fn risk_gauges(s: &crate::risk::Snapshot) -> (u64, Vec<(&'static str, f64)>) {
    use rust_decimal::prelude::ToPrimitive;
    let state = match s.state {
        crate::risk::TradingState::Active => 0,
        crate::risk::TradingState::Reducing => 1,
        crate::risk::TradingState::Halted => 2,
    };
    let l = &s.limits;
    let ratio = |used: rust_decimal::Decimal, max: rust_decimal::Decimal| {
        (used / max).to_f64().unwrap_or(0.0)
    };
    let mut v = Vec::new();
    if let Some(m) = l.max_open_orders {
        v.push(("max_open_orders", s.open_orders as f64 / f64::from(m)));
    }
    if let Some(m) = l.max_gross_exposure {
        v.push(("max_gross_exposure", ratio(s.gross_exposure, m)));
    }
    if let Some(m) = l.max_orders_per_window {
        v.push((
            "max_orders_per_window",
            s.orders_in_window as f64 / f64::from(m),
        ));
    }
    if let Some(m) = l.max_daily_loss {
        v.push((
            "max_daily_loss",
            ratio((-s.realized_today).max(rust_decimal::Decimal::ZERO), m),
        ));
    }
    if let Some(m) = l.max_drawdown {
        v.push((
            "max_drawdown",
            ratio(
                (s.peak_today - s.pnl_today).max(rust_decimal::Decimal::ZERO),
                m,
            ),
        ));
    }
    (state, v)
}

impl StateGauges {
    fn read(core: &Core) -> StateGauges {
        StateGauges {
            venue: core.venue.name(),
            incarnation: core.registry.incarnation().to_string(),
            started_at: core.metrics.started_at,
            budget: core.venue.budget(),
            participants: core.fair.participants(),
            summaries: core.registry.engine_summaries(),
            key: core.key.snapshot(),
            foreign: core.registry.foreign_orders().into_iter().fold(
                BTreeMap::new(),
                |mut m, o| {
                    *m.entry(o.symbol).or_insert(0) += 1;
                    m
                },
            ),
            risk: {
                let now = core.clock.now_ms();
                let mut books: Vec<(String, Option<String>)> = core
                    .risk
                    .engine_ids()
                    .into_iter()
                    .map(|e| (e.clone(), Some(e)))
                    .collect();
                books.push(("account".to_string(), None));
                books
                    .into_iter()
                    .filter_map(|(label, id)| {
                        let snap = core.risk.snapshot(id.as_deref(), now)?;
                        let (state, ratios) = risk_gauges(&snap);
                        Some((label, state, ratios))
                    })
                    .collect()
            },
            sinks: core
                .sinks_now()
                .1
                .iter()
                .map(|(name, s)| {
                    let n = |a: &std::sync::atomic::AtomicU64| {
                        a.load(std::sync::atomic::Ordering::Relaxed)
                    };
                    (
                        name.clone(),
                        [n(&s.delivered), n(&s.failures), n(&s.dead), n(&s.dropped)],
                    )
                })
                .collect(),
        }
    }
}

impl Collector for StateGauges {
    fn encode(&self, encoder: DescriptorEncoder) -> fmt::Result {
        let mut f = Families::new(encoder);
        f.gauge(
            "herd_gateway_info",
            "Always 1; the labels say which gateway this is (incarnation changes on every start).",
        )?
        .sample(
            &[
                ("venue", self.venue),
                ("incarnation", &self.incarnation),
                ("version", env!("CARGO_PKG_VERSION")),
            ],
            1u64,
        )?;
        f.single_gauge(
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch in seconds.",
            self.started_at,
        )?;

        if let Some(offset) = self.key.clock_offset_ms {
            f.single_gauge(
                "herd_gateway_venue_clock_offset_ms",
                "The venue's clock minus ours, ms, as last measured (key_check.clock_interval_s).",
                offset,
            )?;
            f.single_gauge(
                "herd_gateway_venue_clock_offset_uncertainty_ms",
                "How far that measurement may be off, ms (half the round trip plus the venue's resolution).",
                self.key.clock_uncertainty_ms.unwrap_or(0),
            )?;
        }
        if let Some(k) = &self.key.info {
            f.gauge(
                "herd_gateway_api_key_info",
                "Always 1; the labels describe the API key (never the key itself).",
            )?
            .sample(
                &[
                    ("name", &k.name),
                    (
                        "ip_allowlist",
                        if k.ip_allowlist.is_empty() {
                            "none"
                        } else {
                            "set"
                        },
                    ),
                ],
                1u64,
            )?;
            f.single_gauge(
                "herd_gateway_api_key_can_withdraw",
                "1 when the API key has the withdrawal permission.",
                u64::from(k.withdraw_permission.is_some()),
            )?;
            f.single_gauge(
                "herd_gateway_api_key_read_only",
                "1 when the API key can neither place nor cancel orders.",
                u64::from(k.read_only),
            )?;
            f.single_gauge(
                "herd_gateway_api_key_expires_at_seconds",
                "When the API key expires (Unix s); 0 = never.",
                k.expires_at_ms.map_or(0, |e| e / 1000),
            )?;
            f.single_gauge(
                "herd_gateway_api_key_warnings",
                "How many problems the last key check found (see the logs or herdctl key).",
                u64::try_from(self.key.warnings.len()).unwrap_or(u64::MAX),
            )?;
        }

        let budget = &self.budget;
        let mut g = f.gauge(
            "herd_gateway_venue_budget_level",
            "The adapter's rate counters as it models them (GetBudget), by counter.",
        )?;
        for c in &budget.counters {
            g.sample(&[("counter", &c.name)], c.level)?;
        }
        let mut g = f.gauge(
            "herd_gateway_venue_budget_limit",
            "The limit of each rate counter.",
        )?;
        for c in &budget.counters {
            g.sample(&[("counter", &c.name)], c.limit)?;
        }
        let mut g = f.gauge(
            "herd_gateway_venue_budget_decay_per_second",
            "How fast each rate counter decays.",
        )?;
        for c in &budget.counters {
            g.sample(&[("counter", &c.name)], c.decay_per_second)?;
        }
        let mut g = f.gauge(
            "herd_gateway_venue_budget_waiting",
            "Calls waiting inside the adapter for rate budget, by kind.",
        )?;
        for (kind, n) in [
            ("cancel", budget.waiting_cancels),
            ("place", budget.waiting_places),
            ("query", budget.waiting_queries),
        ] {
            g.sample(&[("kind", kind)], n)?;
        }
        f.single_gauge(
            "herd_gateway_venue_locked_until_seconds",
            "Unix time until which the venue suspended private calls (0: not locked out).",
            budget.locked_until_ms.map_or(0.0, |ms| ms as f64 / 1000.0),
        )?;

        let mut g = f.gauge(
            "herd_gateway_fair_queue_waiting",
            "Calls waiting for a venue slot in the fair queue, per engine (and the poller).",
        )?;
        for (id, waiting, _) in &self.participants {
            g.sample(&[("engine", id)], *waiting)?;
        }
        let mut c = f.counter(
            "herd_gateway_fair_queue_granted",
            "Venue slots granted by the fair queue, per engine (and the poller).",
        )?;
        for (id, _, granted) in &self.participants {
            c.sample(&[("engine", id)], *granted)?;
        }

        let mut g = f.gauge(
            "herd_gateway_engine_stream_connected",
            "1 while the engine has its order-event stream open.",
        )?;
        for (id, streams, ..) in &self.summaries {
            g.sample(&[("engine", id)], *streams > 0)?;
        }
        let mut g = f.gauge(
            "herd_gateway_engine_open_orders",
            "Working (not final) orders the gateway tracks per engine.",
        )?;
        for (id, _, _, open, _) in &self.summaries {
            g.sample(&[("engine", id)], *open)?;
        }
        let mut g = f.gauge(
            "herd_gateway_engine_event_sequence",
            "Sequence number of the engine's last order event.",
        )?;
        for (id, _, seq, _, _) in &self.summaries {
            g.sample(&[("engine", id)], *seq)?;
        }
        let mut c = f.counter(
            "herd_gateway_engine_calls",
            "Gateway calls made by each engine (its spend, as GetBudget reports it).",
        )?;
        for (id, _, _, _, calls) in &self.summaries {
            c.sample(&[("engine", id)], *calls)?;
        }
        let mut g = f.gauge(
            "herd_gateway_foreign_open_orders",
            "Open orders on the key that no engine placed and Herd cannot model (foreign), by symbol.",
        )?;
        for (symbol, n) in &self.foreign {
            g.sample(&[("symbol", symbol)], *n)?;
        }
        let mut g = f.gauge(
            "herd_gateway_risk_state",
            "Trading state of each engine and of the account (book): 0 ACTIVE, 1 REDUCING, 2 HALTED.",
        )?;
        for (book, state, _) in &self.risk {
            g.sample(&[("book", book)], *state)?;
        }
        let mut g = f.gauge(
            "herd_gateway_risk_usage_ratio",
            "Usage of each set risk limit per book (engine or account): 1 = at the limit.",
        )?;
        for (book, _, ratios) in &self.risk {
            for (limit, r) in ratios {
                g.sample(&[("book", book), ("limit", limit)], *r)?;
            }
        }
        for (i, (name, help)) in [
            (
                "herd_gateway_event_sink_delivered",
                "Herd events a sink delivered (since start).",
            ),
            (
                "herd_gateway_event_sink_failures",
                "Failed deliveries of a sink (each is retried).",
            ),
            (
                "herd_gateway_event_sink_dead_letters",
                "Events a sink gave up on after max_attempts.",
            ),
            (
                "herd_gateway_event_sink_dropped",
                "Events dropped from a sink's full queue (never critical).",
            ),
        ]
        .into_iter()
        .enumerate()
        {
            if self.sinks.is_empty() {
                break;
            }
            let mut c = f.counter(name, help)?;
            for (sink, v) in &self.sinks {
                c.sample(&[("sink", sink)], v[i])?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A venue whose order calls fail the way it is told to.
    struct Failing;

    #[async_trait]
    impl Venue for Failing {
        fn name(&self) -> &'static str {
            "failing"
        }
        async fn instruments(&self) -> Result<Vec<Instrument>, VenueError> {
            Ok(Vec::new())
        }
        async fn ticker(&self, _: &str) -> Result<Ticker, VenueError> {
            Err(VenueError::Unavailable("down".into()))
        }
        async fn candles(&self, _: &str, _: u32, _: i64) -> Result<Vec<Candle>, VenueError> {
            Ok(Vec::new())
        }
        async fn balances(&self) -> Result<Vec<Balance>, VenueError> {
            Ok(Vec::new())
        }
        async fn place_order(&self, o: &NewOrder) -> Result<PlaceOutcome, VenueError> {
            match o.client_order_id.as_str() {
                "timeout" => Err(VenueError::Transport("timed out".into())),
                "silent" => Ok(PlaceOutcome::Unknown {
                    reason: "no answer".into(),
                }),
                _ => Err(VenueError::RateLimited {
                    message: "slow down".into(),
                    retry_after_ms: 5,
                }),
            }
        }
        async fn cancel_order(&self, _: &OrderRef) -> Result<(), VenueError> {
            Err(VenueError::UnknownOrder("gone".into()))
        }
        async fn open_orders(&self) -> Result<Vec<OrderState>, VenueError> {
            Ok(Vec::new())
        }
        async fn query_orders(&self, _: &[OrderRef]) -> Result<Vec<OrderState>, VenueError> {
            Ok(Vec::new())
        }
    }

    fn order(id: &str) -> NewOrder {
        NewOrder {
            client_order_id: id.into(),
            symbol: "XBTUSD".into(),
            side: herd_venue::Side::Buy,
            order_type: herd_venue::OrderType::Limit,
            volume: rust_decimal::Decimal::ONE,
            price: Some(rust_decimal::Decimal::ONE),
            post_only: false,
            userref: 0,
            reduce_only: false,
        }
    }

    #[tokio::test]
    async fn metered_venue_counts_each_call_by_method_and_outcome() {
        let metrics = Arc::new(GatewayMetrics::new(["e0"]));
        let v = MeteredVenue::wrap(Arc::new(Failing), metrics.clone());
        let _ = v.place_order(&order("timeout")).await;
        let _ = v.place_order(&order("silent")).await;
        let _ = v.place_order(&order("busy")).await;
        let r = OrderRef {
            client_order_id: "x".into(),
            venue_order_id: None,
        };
        let _ = v.cancel_order(&r).await;
        let _ = v.ticker("XBTUSD").await;
        let _ = v.open_orders().await;
        let refs = vec![r; 7];
        let _ = v.query_orders(&refs).await;
        let cases = [
            (Method::PlaceOrder, Outcome::UnknownOutcome, 2),
            (Method::PlaceOrder, Outcome::RateLimited, 1),
            (Method::PlaceOrder, Outcome::Ok, 0),
            (Method::CancelOrder, Outcome::UnknownOrder, 1),
            (Method::Ticker, Outcome::Unavailable, 1),
            (Method::OpenOrders, Outcome::Ok, 1),
            (Method::QueryOrders, Outcome::Ok, 1),
        ];
        for (m, o, n) in cases {
            assert_eq!(metrics.calls(m, o), n, "{} {}", m.as_str(), o.as_str());
        }
        let page = prom::encode(&[&metrics.registry]).unwrap();
        for want in [
            "herd_gateway_poll_batch_size_count 1\n",
            "herd_gateway_poll_batch_size_sum 7.0\n",
            "herd_gateway_poll_batch_size_bucket{le=\"5.0\"} 0\n",
            "herd_gateway_poll_batch_size_bucket{le=\"10.0\"} 1\n",
            "herd_gateway_venue_calls_total{method=\"place_order\",outcome=\"unknown_outcome\"} 2\n",
            "herd_gateway_venue_calls_total{method=\"instruments\",outcome=\"ok\"} 0\n",
            "herd_gateway_venue_call_duration_seconds_count{method=\"place_order\"} 3\n",
            "herd_gateway_events_streamed_total{engine=\"e0\"} 0\n",
        ] {
            assert!(page.contains(want), "missing {want:?} in\n{page}");
        }
        // No call, no latency series; no error, no error series.
        assert!(
            !page.contains("herd_gateway_venue_call_duration_seconds_count{method=\"balances\"}"),
            "{page}"
        );
        assert!(!page.contains("outcome=\"lockout\""), "{page}");
        assert_eq!(v.name(), "failing");
    }

    #[test]
    fn every_venue_error_has_its_outcome_label() {
        let cases = [
            (VenueError::InvalidArgument("x".into()), "invalid_argument"),
            (VenueError::Rejected("x".into()), "rejected"),
            (
                VenueError::InsufficientFunds("x".into()),
                "insufficient_funds",
            ),
            (VenueError::UnknownOrder("x".into()), "unknown_order"),
            (VenueError::OrderLimit("x".into()), "order_limit"),
            (
                VenueError::RateLimited {
                    message: "x".into(),
                    retry_after_ms: 1,
                },
                "rate_limited",
            ),
            (
                VenueError::Lockout {
                    message: "x".into(),
                    until_ms: 1,
                },
                "lockout",
            ),
            (VenueError::Auth("x".into()), "auth"),
            (VenueError::Unavailable("x".into()), "unavailable"),
            (VenueError::Transport("x".into()), "transport"),
            (VenueError::Parse("x".into()), "parse"),
            (VenueError::Unsupported("x".into()), "unsupported"),
            (VenueError::Other("x".into()), "other"),
        ];
        for (e, label) in cases {
            assert_eq!(Outcome::of_error(&e).as_str(), label, "{e}");
        }
        // The tables index by discriminant: ALL must be in declaration order.
        for (i, m) in Method::ALL.iter().enumerate() {
            assert_eq!(*m as usize, i, "{}", m.as_str());
        }
        for (i, o) in Outcome::ALL.iter().enumerate() {
            assert_eq!(*o as usize, i, "{}", o.as_str());
        }
    }
}
