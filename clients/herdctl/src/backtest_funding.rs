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
use herd_backtest::sim::Fill;
use herd_engine::funding::Orchestrator;
use herd_engine::store::Store;
use herd_paper::{Exchange, PaperConfig};
use herd_strategies::funding::FundingConfig;
use herd_strategies::funding::api::{
    ApiError, BalanceInfo, FundingApi, InstrumentSpec, LegOrder, MarginInfo, OrderReport,
    PaymentInfo, PosSide, RateSnapshot, VenuePosition,
};
use herd_venue::{FundingPaymentQuery, NewOrder, OrderRef, OrderState, OrderType, PositionSide};
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

fn report(o: &OrderState) -> OrderReport {
    OrderReport {
        client_order_id: o.client_order_id.clone(),
        status: o.status,
        executed: o.volume_executed,
        avg_price: o.average_price.unwrap_or_default(),
        fee: o.fee,
        fee_asset: o.fee_asset.clone(),
        reason: o.reason.clone().unwrap_or_default(),
    }
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
        self.with(|ex| {
            ex.instruments()
                .into_iter()
                .map(|i| InstrumentSpec {
                    qty_step: Decimal::new(1, i.lot_decimals),
                    min_qty: i.min_volume,
                    min_notional: i.min_cost,
                    taker_fee: i.taker_fee,
                    kind: i.kind,
                    symbol: i.symbol,
                    base: i.base,
                    quote: i.quote,
                    active: true,
                })
                .collect()
        })
    }

    async fn funding_rates(&self) -> Result<Vec<RateSnapshot>, ApiError> {
        self.with(|ex| ex.funding_rates(&[]))?
            .map_err(|e| ApiError::Other(e.to_string()))
            .map(|rates| {
                rates
                    .into_iter()
                    .map(|r| RateSnapshot {
                        symbol: r.symbol,
                        rate: r.rate,
                        interval_hours: r.interval_hours,
                        next_funding_ms: r.next_funding_ms,
                        mark: r.mark,
                        index: r.index,
                        turnover_24h_usd: r.turnover_24h_usd,
                        time_ms: r.time_ms,
                    })
                    .collect()
            })
    }

    async fn balances(&self) -> Result<Vec<BalanceInfo>, ApiError> {
        self.with(|ex| {
            ex.balances()
                .into_iter()
                .map(|b| BalanceInfo {
                    asset: b.asset,
                    total: b.total,
                    free: b.free,
                })
                .collect()
        })
    }

    async fn positions(&self) -> Result<Vec<VenuePosition>, ApiError> {
        self.with(|ex| {
            ex.positions()
                .into_iter()
                .map(|p| VenuePosition {
                    symbol: p.symbol,
                    side: match p.side {
                        PositionSide::Long => PosSide::Long,
                        PositionSide::Short => PosSide::Short,
                    },
                    size: p.size,
                    entry_price: p.entry_price,
                    mark_price: p.mark_price,
                })
                .collect()
        })
    }

    async fn margin(&self) -> Result<MarginInfo, ApiError> {
        let now = self.now_ms();
        self.with(|ex| {
            let m = ex.account_margin(now);
            MarginInfo {
                equity: m.equity,
                available: m.available,
                maintenance_margin_ratio: m.maintenance_margin_ratio,
            }
        })
    }

    async fn funding_payments(
        &self,
        symbol: &str,
        since_ms: i64,
    ) -> Result<Vec<PaymentInfo>, ApiError> {
        let q = FundingPaymentQuery {
            symbol: Some(symbol.to_string()),
            since_ms,
            until_ms: None,
            limit: 0,
        };
        self.with(|ex| {
            ex.funding_payments(&q)
                .into_iter()
                .map(|p| PaymentInfo {
                    id: p.id,
                    symbol: p.symbol,
                    amount: p.amount,
                    rate: p.rate,
                    mark: p.mark_price,
                    size: p.size,
                    time_ms: p.time_ms,
                })
                .collect()
        })
    }

    async fn place(&self, order: &LegOrder) -> Result<OrderReport, ApiError> {
        let now = self.now_ms();
        let new = NewOrder {
            client_order_id: order.client_order_id.clone(),
            symbol: order.symbol.clone(),
            side: order.side,
            order_type: OrderType::Market,
            volume: order.qty,
            price: None,
            post_only: false,
            userref: 0,
            reduce_only: order.reduce_only,
        };
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
        Ok(report(&state))
    }

    async fn query(&self, client_order_id: &str) -> Result<Option<OrderReport>, ApiError> {
        let r = OrderRef {
            client_order_id: client_order_id.to_string(),
            venue_order_id: None,
        };
        self.with(|ex| ex.query(&[r]).first().map(report))
    }

    async fn cancel(&self, client_order_id: &str) -> Result<OrderReport, ApiError> {
        let now = self.now_ms();
        let r = OrderRef {
            client_order_id: client_order_id.to_string(),
            venue_order_id: None,
        };
        self.with(|ex| ex.cancel(&r, now))?
            .map(|o| report(&o))
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
