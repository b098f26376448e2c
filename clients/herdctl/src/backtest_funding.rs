//! The funding orchestrator in a backtest: the engine's own
//! `herd_engine::funding::Orchestrator` (the same code as live), run every
//! `cycle_interval_ms` of simulated time against the backtest's paper
//! exchange, with the funding rates of `--funding`.
//!
//! herd-backtest has no async runtime (tests/tests/architecture.rs); the
//! orchestrator is async and keeps its positions in the engine's store. So
//! it runs here, as a [`Companion`] of the simulation: a current-thread
//! tokio runtime, an SQLite store in a temporary directory, and a
//! [`FundingApi`] over the simulation's exchange, which is lent to it for
//! the length of one cycle. Every call answers at once (the exchange is in
//! process and market orders fill on placement), so no deadline or poll of
//! the orchestrator ever waits.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::Context;
use herd_backtest::Companion;
use herd_backtest::paper_funding as paper;
use herd_backtest::sim::Fill;
use herd_engine::funding::Orchestrator;
use herd_engine::store::Store;
use herd_paper::{Exchange, PaperConfig};
use herd_strategies::funding::FundingConfig;
use herd_strategies::funding::api::{
    ApiError, BalanceInfo, FundingApi, InstrumentSpec, LegOrder, MarginInfo, OrderReport,
    PaymentInfo, RateSnapshot, VenuePosition,
};
use herd_venue::OrderRef;
use rust_decimal::Decimal;

/// The name the orchestrator's fills and funding carry in the report.
pub const NAME: &str = "funding";

/// The simulation's exchange as the orchestrator's venue.
pub struct BacktestApi {
    /// Lent by the simulation for one cycle; `None` between cycles.
    exchange: Mutex<Option<Exchange>>,
    now_ms: AtomicI64,
    ids: AtomicU64,
    /// What the orchestrator's orders filled, for the report.
    fills: Mutex<Vec<Fill>>,
}

fn lost() -> ApiError {
    ApiError::Other("the backtest's exchange is not lent to the orchestrator".into())
}

impl BacktestApi {
    fn ex(&self) -> MutexGuard<'_, Option<Exchange>> {
        self.exchange.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn with<T>(&self, f: impl FnOnce(&mut Exchange) -> T) -> Result<T, ApiError> {
        let mut guard = self.ex();
        let ex = guard.as_mut().ok_or_else(lost)?;
        Ok(f(ex))
    }
}

impl FundingApi for BacktestApi {
    fn now_ms(&self) -> i64 {
        self.now_ms.load(Ordering::SeqCst)
    }

    fn new_client_id(&self) -> String {
        format!("f-{}", self.ids.fetch_add(1, Ordering::SeqCst) + 1)
    }

    fn venue_name(&self) -> String {
        "backtest".into()
    }

    fn opening_blocked(&self) -> Option<String> {
        None
    }

    async fn instruments(&self) -> Result<Vec<InstrumentSpec>, ApiError> {
        self.with(|ex| paper::instruments(ex))
    }

    async fn funding_rates(&self) -> Result<Vec<RateSnapshot>, ApiError> {
        self.with(|ex| paper::funding_rates(ex))?
    }

    async fn balances(&self) -> Result<Vec<BalanceInfo>, ApiError> {
        self.with(|ex| paper::balances(ex))
    }

    async fn positions(&self) -> Result<Vec<VenuePosition>, ApiError> {
        self.with(|ex| paper::positions(ex))
    }

    async fn margin(&self) -> Result<MarginInfo, ApiError> {
        let now = self.now_ms();
        self.with(|ex| paper::margin(ex, now))
    }

    async fn funding_payments(
        &self,
        symbol: &str,
        since_ms: i64,
    ) -> Result<Vec<PaymentInfo>, ApiError> {
        self.with(|ex| paper::funding_payments(ex, symbol, since_ms))
    }

    async fn place(&self, order: &LegOrder) -> Result<OrderReport, ApiError> {
        let now = self.now_ms();
        let new = paper::market_order(order);
        let (placed, base) = self.with(|ex| {
            let base = ex
                .instrument(&order.symbol)
                .map(|i| i.base.clone())
                .unwrap_or_default();
            (ex.place(&new, now), base)
        })?;
        let state = placed.map_err(|e| ApiError::Refused(e.to_string()))?;
        if state.volume_executed > Decimal::ZERO {
            let price = state.average_price.unwrap_or_default();
            self.fills
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(Fill {
                    time_ms: now,
                    strategy: NAME.into(),
                    client_order_id: state.client_order_id.clone(),
                    side: state.side,
                    price,
                    volume: state.volume_executed,
                    fee: state.fee,
                    fee_asset: state.fee_asset.clone(),
                    fee_quote: if state.fee_asset == base {
                        state.fee * price
                    } else {
                        state.fee
                    },
                    taker: true,
                });
        }
        Ok(paper::report(&state))
    }

    async fn query(&self, client_order_id: &str) -> Result<Option<OrderReport>, ApiError> {
        let r = OrderRef {
            client_order_id: client_order_id.to_string(),
            venue_order_id: None,
        };
        self.with(|ex| ex.query(&[r]).first().map(paper::report))
    }

    async fn cancel(&self, client_order_id: &str) -> Result<OrderReport, ApiError> {
        let now = self.now_ms();
        let r = OrderRef {
            client_order_id: client_order_id.to_string(),
            venue_order_id: None,
        };
        self.with(|ex| ex.cancel(&r, now))?
            .map(|o| paper::report(&o))
            .map_err(|e| ApiError::Refused(e.to_string()))
    }
}

/// What the orchestrator did over a run.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Summary {
    pub cycles: u64,
    pub opened: Vec<(i64, String)>,
    pub closed: Vec<(i64, String)>,
    /// Step errors, with the cycle's time.
    pub errors: Vec<(i64, String)>,
}

/// The orchestrator as the simulation's companion.
pub struct FundingCompanion {
    rt: tokio::runtime::Runtime,
    api: Arc<BacktestApi>,
    orch: Arc<Orchestrator<BacktestApi>>,
    interval_ms: i64,
    next_cycle_ms: Option<i64>,
    summary: Summary,
    _store_dir: tempfile::TempDir,
}

impl std::fmt::Debug for FundingCompanion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FundingCompanion")
            .field("summary", &self.summary)
            .finish_non_exhaustive()
    }
}

impl FundingCompanion {
    /// The orchestrator with the engine's `[funding]` config and a fresh
    /// store (a backtest starts with no positions, as a fresh engine).
    pub fn new(cfg: FundingConfig) -> anyhow::Result<FundingCompanion> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("funding orchestrator: cannot start its runtime")?;
        let dir = tempfile::tempdir().context("funding orchestrator: no temporary directory")?;
        let store = rt
            .block_on(Store::open_sqlite_dir(dir.path(), "backtest-funding"))
            .context("funding orchestrator: cannot open its store")?;
        let api = Arc::new(BacktestApi {
            exchange: Mutex::new(None),
            now_ms: AtomicI64::new(0),
            ids: AtomicU64::new(0),
            fills: Mutex::new(Vec::new()),
        });
        let interval_ms = i64::try_from(cfg.cycle_interval_ms.max(1)).unwrap_or(i64::MAX);
        let orch = Orchestrator::new(api.clone(), store, cfg);
        Ok(FundingCompanion {
            rt,
            api,
            orch,
            interval_ms,
            next_cycle_ms: None,
            summary: Summary::default(),
            _store_dir: dir,
        })
    }

    /// The orchestrator's fills and what it did.
    pub fn finish(self) -> (Vec<Fill>, Summary) {
        let fills = std::mem::take(&mut *self.api.fills.lock().unwrap_or_else(|p| p.into_inner()));
        (fills, self.summary)
    }
}

impl Companion for FundingCompanion {
    /// A cycle at the first trade of the run, then at the first trade at or
    /// after each further `cycle_interval_ms` (the live timer's schedule in
    /// simulated time).
    fn at(&mut self, ex: &mut Exchange, now_ms: i64) {
        if self.next_cycle_ms.is_some_and(|t| now_ms < t) {
            return;
        }
        let start = self.next_cycle_ms.unwrap_or(now_ms);
        let behind = (now_ms - start).div_euclid(self.interval_ms) + 1;
        self.next_cycle_ms = Some(start + behind * self.interval_ms);
        self.api.now_ms.store(now_ms, Ordering::SeqCst);
        let empty = PaperConfig {
            instruments: Vec::new(),
            balances: Default::default(),
            ..PaperConfig::default()
        };
        let lent = std::mem::replace(ex, Exchange::new(&empty, now_ms));
        *self.api.ex() = Some(lent);
        let report = self.rt.block_on(self.orch.run_cycle());
        if let Some(back) = self.api.ex().take() {
            *ex = back;
        }
        self.summary.cycles += 1;
        self.summary
            .opened
            .extend(report.opened.into_iter().map(|s| (now_ms, s)));
        self.summary
            .closed
            .extend(report.closed.into_iter().map(|s| (now_ms, s)));
        self.summary
            .errors
            .extend(report.errors.into_iter().map(|e| (now_ms, e)));
    }
}
