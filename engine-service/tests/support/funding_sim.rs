//! The funding orchestrator's venue for tests: the paper exchange driven
//! directly (no gateway) on a manual clock, with faults on demand: refused
//! or hanging legs, orders that never reach the venue, a margin ratio, a
//! failing or blocking funding scan.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use herd_backtest::paper_funding as paper;
use herd_paper::{
    Exchange, FeePolicy, FundingPathConfig, PaperConfig, PaperInstrument, PathConfig, PerpConfig,
};
use herd_strategies::funding::api::{
    ApiError, BalanceInfo, FundingApi, InstrumentKind, InstrumentSpec, LegOrder, MarginInfo,
    OrderReport, PaymentInfo, RateSnapshot, Side, VenuePosition,
};
use herd_venue::{Clock, FundingPaymentQuery, Instrument, ManualClock, OrderRef, PositionSide};
use rust_decimal::Decimal;
use tokio::sync::Notify;

pub const HOUR_MS: i64 = 3_600_000;
/// 2024-01-01 00:00 UTC: a settlement time for every interval.
pub const START_MS: i64 = 1_704_067_200_000;

/// What goes wrong, per call.
#[derive(Debug, Default)]
pub struct Faults {
    /// Orders on these symbols are refused outright.
    pub refuse: HashSet<String>,
    /// Orders on these symbols reach the venue, but the answer never comes.
    pub hang_after_place: HashSet<String>,
    /// Orders on these symbols never reach the venue, and the answer never
    /// comes.
    pub lost: HashSet<String>,
    /// Closing orders (spot sells, reduce-only buys) refused on these
    /// symbols, this many more times each call (u32::MAX = always).
    pub refuse_close: std::collections::HashMap<String, u32>,
    /// Reported instead of the exchange's ratio.
    pub margin_ratio: Option<Decimal>,
    pub fail_rates: bool,
    /// Order queries fail (the venue cannot say what happened).
    pub blind_queries: bool,
}

/// The paper exchange as a [`FundingApi`].
pub struct SimApi {
    pub exchange: Mutex<Exchange>,
    pub clock: ManualClock,
    pub faults: Mutex<Faults>,
    /// When set, funding scans wait for a notification.
    pub rates_gate: Mutex<Option<Arc<Notify>>>,
    /// A funding scan is waiting at the gate.
    pub rates_waiting: std::sync::atomic::AtomicBool,
    ids: AtomicU64,
    /// Every order sent: (client id, symbol, side, qty, reduce_only).
    pub sent: Mutex<Vec<LegOrder>>,
}

/// A spot pair and its perpetual at `price` with a flat path (prices move
/// only when a test says so), a tiny tick (the spread costs < 0.0001 USD a
/// trade) and the funding rate pinned where the test puts it.
pub fn pair(
    base: &str,
    price: Decimal,
    interval_hours: u32,
    rate: Decimal,
) -> Vec<PaperInstrument> {
    let flat = PathConfig {
        volatility: 0.0,
        mean_reversion: 0.0,
        trend_drift: 0.0,
        switch_probability: 0.0,
        ..PathConfig::default()
    };
    let spot = format!("{base}USDT");
    let inst = |symbol: String, kind, lot: u32, min_cost: i64, taker: Decimal| Instrument {
        symbol,
        base: base.into(),
        quote: "USDT".into(),
        kind,
        tick_size: Decimal::new(1, 6),
        price_decimals: 6,
        lot_decimals: lot,
        min_volume: Decimal::new(1, lot),
        min_cost: Decimal::from(min_cost),
        maker_fee: taker,
        taker_fee: taker,
        max_open_orders: 500,
    };
    vec![
        PaperInstrument {
            instrument: inst(spot.clone(), InstrumentKind::Spot, 4, 1, Decimal::new(1, 3)),
            start_price: price,
            path: flat.clone(),
            liquidity_per_step: None,
            typical_step_volume: 10.0,
            fee_policy: Some(FeePolicy::BaseOnBuy),
            perp: None,
        },
        PaperInstrument {
            instrument: inst(
                format!("{spot}-PERP"),
                InstrumentKind::Perpetual,
                2,
                5,
                Decimal::new(55, 5),
            ),
            start_price: price,
            path: flat,
            liquidity_per_step: None,
            typical_step_volume: 10.0,
            fee_policy: Some(FeePolicy::Quote),
            perp: Some(PerpConfig {
                underlying: Some(spot),
                basis_volatility: 0.0,
                basis_reversion: 0.0,
                funding_interval_hours: interval_hours,
                funding: FundingPathConfig {
                    seed: 5,
                    start_rate: rate,
                    mean_rate: rate,
                    persistence: 1.0,
                    volatility: 0.0,
                    cap: Decimal::new(75, 4),
                },
                turnover_24h_usd: Some(Decimal::from(50_000_000)),
                ..PerpConfig::default()
            }),
        },
    ]
}

impl SimApi {
    /// An exchange with `instruments` and 10,000 USDT at [`START_MS`].
    pub fn new(instruments: Vec<PaperInstrument>) -> Arc<SimApi> {
        let clock = ManualClock::new(START_MS);
        let cfg = PaperConfig {
            instruments,
            balances: [("USDT".to_string(), Decimal::from(10_000))].into(),
            history_minutes: 0,
            ..PaperConfig::default()
        };
        Arc::new(SimApi {
            exchange: Mutex::new(Exchange::new(&cfg, START_MS)),
            clock,
            faults: Mutex::new(Faults::default()),
            rates_gate: Mutex::new(None),
            rates_waiting: std::sync::atomic::AtomicBool::new(false),
            ids: AtomicU64::new(0),
            sent: Mutex::new(Vec::new()),
        })
    }

    /// The exchange after settling the funding due by the clock.
    pub fn ex(&self) -> std::sync::MutexGuard<'_, Exchange> {
        let mut ex = self.exchange.lock().unwrap();
        ex.settle_funding(self.clock.now_ms());
        ex
    }

    pub fn set_rate(&self, perp: &str, rate: Decimal) {
        self.ex().set_funding_rate(perp, rate).unwrap();
    }

    pub fn set_price(&self, symbol: &str, price: Decimal) {
        let now = self.clock.now_ms();
        self.ex().set_price(symbol, price, now).unwrap();
    }

    /// The account's equity in USDT (coins at their spot price).
    pub fn equity(&self) -> Decimal {
        let now = self.clock.now_ms();
        self.ex().account_margin(now).equity
    }

    pub fn balance(&self, asset: &str) -> Decimal {
        self.ex()
            .balances()
            .into_iter()
            .find(|b| b.asset == asset)
            .map_or(Decimal::ZERO, |b| b.total)
    }

    /// Signed perp position (short < 0).
    pub fn perp_position(&self, perp: &str) -> Decimal {
        self.ex()
            .positions()
            .into_iter()
            .find(|p| p.symbol == perp)
            .map_or(Decimal::ZERO, |p| match p.side {
                PositionSide::Long => p.size,
                PositionSide::Short => -p.size,
            })
    }

    /// Sum of the funding the venue booked.
    pub fn funding_booked(&self) -> Decimal {
        self.ex()
            .funding_payments(&FundingPaymentQuery::default())
            .iter()
            .map(|p| p.amount)
            .sum()
    }

    pub fn faults(&self) -> std::sync::MutexGuard<'_, Faults> {
        self.faults.lock().unwrap()
    }
}

impl FundingApi for SimApi {
    fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    fn new_client_id(&self) -> String {
        format!("f-{}", self.ids.fetch_add(1, Ordering::SeqCst) + 1)
    }

    fn venue_name(&self) -> String {
        "paper".into()
    }

    fn opening_blocked(&self) -> Option<String> {
        None
    }

    async fn instruments(&self) -> Result<Vec<InstrumentSpec>, ApiError> {
        Ok(paper::instruments(&self.ex()))
    }

    async fn funding_rates(&self) -> Result<Vec<RateSnapshot>, ApiError> {
        let gate = self.rates_gate.lock().unwrap().clone();
        if let Some(g) = gate {
            let wait = g.notified();
            self.rates_waiting.store(true, Ordering::SeqCst);
            wait.await;
        }
        if self.faults().fail_rates {
            return Err(ApiError::Other(
                "funding rates unavailable (injected)".into(),
            ));
        }
        paper::funding_rates(&self.ex())
    }

    async fn balances(&self) -> Result<Vec<BalanceInfo>, ApiError> {
        Ok(paper::balances(&self.ex()))
    }

    async fn positions(&self) -> Result<Vec<VenuePosition>, ApiError> {
        Ok(paper::positions(&self.ex()))
    }

    async fn margin(&self) -> Result<MarginInfo, ApiError> {
        let now = self.clock.now_ms();
        let m = paper::margin(&self.ex(), now);
        Ok(MarginInfo {
            maintenance_margin_ratio: self
                .faults()
                .margin_ratio
                .unwrap_or(m.maintenance_margin_ratio),
            ..m
        })
    }

    async fn funding_payments(
        &self,
        symbol: &str,
        since_ms: i64,
    ) -> Result<Vec<PaymentInfo>, ApiError> {
        Ok(paper::funding_payments(&self.ex(), symbol, since_ms))
    }

    async fn place(&self, order: &LegOrder) -> Result<OrderReport, ApiError> {
        self.sent.lock().unwrap().push(order.clone());
        let closing =
            order.reduce_only || (order.side == Side::Sell && !order.symbol.ends_with("-PERP"));
        let (refuse, hang, lost) = {
            let mut f = self.faults();
            let mut refuse = f.refuse.contains(&order.symbol);
            if closing
                && let Some(n) = f.refuse_close.get_mut(&order.symbol)
                && *n > 0
            {
                if *n != u32::MAX {
                    *n -= 1;
                }
                refuse = true;
            }
            (
                refuse,
                f.hang_after_place.contains(&order.symbol),
                f.lost.contains(&order.symbol),
            )
        };
        if refuse {
            return Err(ApiError::Refused(format!(
                "{} refused (injected)",
                order.symbol
            )));
        }
        if lost {
            std::future::pending::<()>().await;
        }
        let now = self.clock.now_ms();
        let new = paper::market_order(order);
        let placed = self.ex().place(&new, now);
        if hang {
            std::future::pending::<()>().await;
        }
        placed
            .map(|o| paper::report(&o))
            .map_err(|e| ApiError::Refused(e.to_string()))
    }

    async fn query(&self, client_order_id: &str) -> Result<Option<OrderReport>, ApiError> {
        if self.faults().blind_queries {
            return Err(ApiError::Other("order query unavailable (injected)".into()));
        }
        let found = self.ex().query(&[OrderRef {
            client_order_id: client_order_id.to_string(),
            venue_order_id: None,
        }]);
        Ok(found.first().map(paper::report))
    }

    async fn cancel(&self, client_order_id: &str) -> Result<OrderReport, ApiError> {
        let now = self.clock.now_ms();
        self.ex()
            .cancel(
                &OrderRef {
                    client_order_id: client_order_id.to_string(),
                    venue_order_id: None,
                },
                now,
            )
            .map(|o| paper::report(&o))
            .map_err(|e| ApiError::Refused(e.to_string()))
    }
}
