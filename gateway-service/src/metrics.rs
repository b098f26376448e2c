//! The gateway's Prometheus metrics (`GET /metrics` on the admin port).
//!
//! Two kinds of numbers: counters and histograms recorded on the hot path
//! ([`GatewayMetrics`], atomics only; venue calls are recorded by
//! [`MeteredVenue`], which wraps the adapter so no call site can forget),
//! and gauges read at scrape time from state the gateway keeps anyway
//! (registry, fair queue, the adapter's budget) by [`render`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use herd_proto::prom::{Counter, Exposition, Histogram, Kind, unix_now_seconds};
use herd_venue::{
    AccountMargin, Balance, BudgetSnapshot, Candle, FundingPayment, FundingPaymentQuery,
    FundingRate, Instrument, NewOrder, OrderRef, OrderState, PlaceOutcome, Position, Ticker, Venue,
    VenueError,
};

use crate::service::Core;

/// Orders per `query_orders` call.
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0];

/// The venue endpoints, as the `method` label names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

const METHODS: usize = Method::ALL.len();
const OUTCOMES: usize = Outcome::ALL.len();

/// Per-engine counters.
#[derive(Debug, Default)]
pub struct EngineCounters {
    pub events_streamed: Counter,
    pub dead_man_fired: Counter,
    pub dead_man_canceled: Counter,
}

/// The gateway's hot-path metrics. Every field is an atomic or a map fixed
/// at start, so recording takes no lock and allocates nothing.
#[derive(Debug)]
pub struct GatewayMetrics {
    started_at: f64,
    calls: [[Counter; OUTCOMES]; METHODS],
    call_seconds: [Histogram; METHODS],
    pub poll_seconds: Histogram,
    pub poll_batch_size: Histogram,
    pub polls_ok: Counter,
    pub polls_failed: Counter,
    engines: HashMap<String, Arc<EngineCounters>>,
}

impl GatewayMetrics {
    /// `engines`: the configured engine ids.
    pub fn new<'a>(engines: impl IntoIterator<Item = &'a str>) -> GatewayMetrics {
        GatewayMetrics {
            started_at: unix_now_seconds(),
            calls: std::array::from_fn(|_| std::array::from_fn(|_| Counter::new())),
            call_seconds: std::array::from_fn(|_| Histogram::latency()),
            poll_seconds: Histogram::latency(),
            poll_batch_size: Histogram::new(BATCH_BUCKETS),
            polls_ok: Counter::new(),
            polls_failed: Counter::new(),
            engines: engines
                .into_iter()
                .map(|e| (e.to_string(), Arc::new(EngineCounters::default())))
                .collect(),
        }
    }

    /// Records one venue call.
    pub fn record_call(&self, method: Method, outcome: Outcome, started: Instant) {
        let m = method as usize;
        if let Some(c) = self.calls.get(m).and_then(|row| row.get(outcome as usize)) {
            c.inc();
        }
        if let Some(h) = self.call_seconds.get(m) {
            h.observe_duration(started.elapsed());
        }
    }

    /// Calls of `method` that ended with `outcome` so far.
    pub fn calls(&self, method: Method, outcome: Outcome) -> u64 {
        self.calls
            .get(method as usize)
            .and_then(|row| row.get(outcome as usize))
            .map_or(0, Counter::get)
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
}

impl MeteredVenue {
    pub fn wrap(inner: Arc<dyn Venue>, metrics: Arc<GatewayMetrics>) -> Arc<dyn Venue> {
        Arc::new(MeteredVenue { inner, metrics })
    }

    fn done<T>(
        &self,
        method: Method,
        started: Instant,
        r: Result<T, VenueError>,
    ) -> Result<T, VenueError> {
        self.metrics.record_call(method, Outcome::of(&r), started);
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
}

/// The `/metrics` page.
pub fn render(core: &Core) -> String {
    let m = &core.metrics;
    let mut e = Exposition::new();

    e.family(
        "herd_gateway_info",
        Kind::Gauge,
        "Always 1; the labels say which gateway this is (incarnation changes on every start).",
    );
    e.sample(
        "herd_gateway_info",
        &[
            ("venue", core.venue.name()),
            ("incarnation", core.registry.incarnation()),
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
        "herd_gateway_venue_calls_total",
        Kind::Counter,
        "Venue calls by endpoint (method) and outcome (ok, unknown_outcome or the error class).",
    );
    for method in Method::ALL {
        for outcome in Outcome::ALL {
            let n = m.calls(method, outcome);
            // Every endpoint's ok series exists from the start; error series
            // appear once they happen (15 classes x 13 endpoints of zeros
            // would drown the page).
            if n > 0 || outcome == Outcome::Ok {
                e.sample(
                    "herd_gateway_venue_calls_total",
                    &[("method", method.as_str()), ("outcome", outcome.as_str())],
                    n,
                );
            }
        }
    }
    e.family(
        "herd_gateway_venue_call_duration_seconds",
        Kind::Histogram,
        "Venue call latency by endpoint, including the adapter's wait for its rate budget.",
    );
    for method in Method::ALL {
        if let Some(h) = m.call_seconds.get(method as usize)
            && h.count() > 0
        {
            e.histogram(
                "herd_gateway_venue_call_duration_seconds",
                &[("method", method.as_str())],
                h,
            );
        }
    }

    let budget = core.venue.budget();
    e.family(
        "herd_gateway_venue_budget_level",
        Kind::Gauge,
        "The adapter's rate counters as it models them (GetBudget), by counter.",
    );
    for c in &budget.counters {
        e.sample(
            "herd_gateway_venue_budget_level",
            &[("counter", &c.name)],
            c.level,
        );
    }
    e.family(
        "herd_gateway_venue_budget_limit",
        Kind::Gauge,
        "The limit of each rate counter.",
    );
    for c in &budget.counters {
        e.sample(
            "herd_gateway_venue_budget_limit",
            &[("counter", &c.name)],
            c.limit,
        );
    }
    e.family(
        "herd_gateway_venue_budget_decay_per_second",
        Kind::Gauge,
        "How fast each rate counter decays.",
    );
    for c in &budget.counters {
        e.sample(
            "herd_gateway_venue_budget_decay_per_second",
            &[("counter", &c.name)],
            c.decay_per_second,
        );
    }
    e.family(
        "herd_gateway_venue_budget_waiting",
        Kind::Gauge,
        "Calls waiting inside the adapter for rate budget, by kind.",
    );
    for (kind, n) in [
        ("cancel", budget.waiting_cancels),
        ("place", budget.waiting_places),
        ("query", budget.waiting_queries),
    ] {
        e.sample("herd_gateway_venue_budget_waiting", &[("kind", kind)], n);
    }
    e.single(
        "herd_gateway_venue_locked_until_seconds",
        Kind::Gauge,
        "Unix time until which the venue suspended private calls (0: not locked out).",
        budget.locked_until_ms.map_or(0.0, |ms| ms as f64 / 1000.0),
    );

    e.family(
        "herd_gateway_fair_queue_waiting",
        Kind::Gauge,
        "Calls waiting for a venue slot in the fair queue, per engine (and the poller).",
    );
    let participants = core.fair.participants();
    for (id, waiting, _) in &participants {
        e.sample(
            "herd_gateway_fair_queue_waiting",
            &[("engine", id)],
            *waiting,
        );
    }
    e.family(
        "herd_gateway_fair_queue_granted_total",
        Kind::Counter,
        "Venue slots granted by the fair queue, per engine (and the poller).",
    );
    for (id, _, granted) in &participants {
        e.sample(
            "herd_gateway_fair_queue_granted_total",
            &[("engine", id)],
            *granted,
        );
    }

    e.family(
        "herd_gateway_poll_duration_seconds",
        Kind::Histogram,
        "Duration of one poll cycle (open orders plus the batched queries).",
    );
    e.histogram("herd_gateway_poll_duration_seconds", &[], &m.poll_seconds);
    e.family(
        "herd_gateway_poll_batch_size",
        Kind::Histogram,
        "Orders named per query_orders call.",
    );
    e.histogram("herd_gateway_poll_batch_size", &[], &m.poll_batch_size);
    e.family(
        "herd_gateway_polls_total",
        Kind::Counter,
        "Poll cycles that did work, by result.",
    );
    e.sample(
        "herd_gateway_polls_total",
        &[("result", "ok")],
        m.polls_ok.get(),
    );
    e.sample(
        "herd_gateway_polls_total",
        &[("result", "error")],
        m.polls_failed.get(),
    );

    let summaries = core.registry.engine_summaries();
    e.family(
        "herd_gateway_engine_stream_connected",
        Kind::Gauge,
        "1 while the engine has its order-event stream open.",
    );
    for (id, streams, ..) in &summaries {
        e.sample(
            "herd_gateway_engine_stream_connected",
            &[("engine", id)],
            *streams > 0,
        );
    }
    e.family(
        "herd_gateway_engine_open_orders",
        Kind::Gauge,
        "Working (not final) orders the gateway tracks per engine.",
    );
    for (id, _, _, open, _) in &summaries {
        e.sample("herd_gateway_engine_open_orders", &[("engine", id)], *open);
    }
    e.family(
        "herd_gateway_engine_event_sequence",
        Kind::Gauge,
        "Sequence number of the engine's last order event.",
    );
    for (id, _, seq, _, _) in &summaries {
        e.sample(
            "herd_gateway_engine_event_sequence",
            &[("engine", id)],
            *seq,
        );
    }
    e.family(
        "herd_gateway_engine_calls_total",
        Kind::Counter,
        "Gateway calls made by each engine (its spend, as GetBudget reports it).",
    );
    for (id, _, _, _, calls) in &summaries {
        e.sample("herd_gateway_engine_calls_total", &[("engine", id)], *calls);
    }
    let counters: Vec<(&String, Arc<EngineCounters>)> = summaries
        .iter()
        .filter_map(|(id, ..)| m.engine(id).map(|c| (id, c)))
        .collect();
    e.family(
        "herd_gateway_events_streamed_total",
        Kind::Counter,
        "Order events sent to each engine over its stream.",
    );
    for (id, c) in &counters {
        e.sample(
            "herd_gateway_events_streamed_total",
            &[("engine", id)],
            c.events_streamed.get(),
        );
    }
    e.family(
        "herd_gateway_dead_man_fired_total",
        Kind::Counter,
        "Times the per-engine dead man's switch fired (stream gone past its grace).",
    );
    for (id, c) in &counters {
        e.sample(
            "herd_gateway_dead_man_fired_total",
            &[("engine", id)],
            c.dead_man_fired.get(),
        );
    }
    e.family(
        "herd_gateway_dead_man_cancels_total",
        Kind::Counter,
        "Orders canceled by the per-engine dead man's switch.",
    );
    for (id, c) in &counters {
        e.sample(
            "herd_gateway_dead_man_cancels_total",
            &[("engine", id)],
            c.dead_man_canceled.get(),
        );
    }
    e.finish()
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
        assert_eq!(metrics.poll_batch_size.count(), 1);
        assert!((metrics.poll_batch_size.sum() - 7.0).abs() < f64::EPSILON);
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
