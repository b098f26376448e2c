//! Pre-trade risk checks every engine's orders pass in the gateway, below
//! every strategy (issue 16): limits per order, per engine and for the
//! account, trading states (ACTIVE / REDUCING / HALTED), breach actions and
//! the denial an engine sees.
//!
//! State: one [`Book`] per engine behind its own mutex, and one for the
//! whole account behind another. A check locks its engine's book, then the
//! account's (always in that order), decides, reserves the order in both
//! and lets go: no lock is held across an await or a venue call, and
//! engines meet only on the account book's short critical section.
//!
//! Usage follows the registry: an admitted order is reserved before it is
//! registered, then [`Risk::on_state`] (called by [`crate::registry`] after
//! each state change) tracks what is left open and turns fills into
//! positions and realized PnL (average cost per engine per instrument, fees
//! in the quote coin included, per UTC day).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use herd_venue::{OrderState, Side, Ticker};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use tonic::Status;

/// The trailer a risk denial carries its machine-readable code in.
pub use herd_proto::answer::RISK_CODE_KEY;

const DAY_MS: i64 = 86_400_000;

/// What an engine (or the account) may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TradingState {
    #[default]
    Active,
    /// Only exposure-reducing orders.
    Reducing,
    /// No new orders. Cancels always pass.
    Halted,
}

impl TradingState {
    pub fn as_str(self) -> &'static str {
        match self {
            TradingState::Active => "active",
            TradingState::Reducing => "reducing",
            TradingState::Halted => "halted",
        }
    }

    pub fn parse(s: &str) -> Option<TradingState> {
        match s {
            "active" => Some(TradingState::Active),
            "reducing" => Some(TradingState::Reducing),
            "halted" => Some(TradingState::Halted),
            _ => None,
        }
    }
}

/// What a breach of a limit does beyond refusing the order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum BreachAction {
    /// Refuse this order only.
    #[default]
    Reject,
    /// Refuse it and go REDUCING.
    Reduce,
    /// Refuse it and HALT.
    Halt,
    /// HALT and cancel every open order of the engine (account: of every engine).
    HaltCancel,
    /// HALT, cancel, and close the positions the engine built (reduce-only
    /// market orders).
    HaltFlatten,
}

impl BreachAction {
    pub fn as_str(self) -> &'static str {
        match self {
            BreachAction::Reject => "reject",
            BreachAction::Reduce => "reduce",
            BreachAction::Halt => "halt",
            BreachAction::HaltCancel => "halt_cancel",
            BreachAction::HaltFlatten => "halt_flatten",
        }
    }

    pub fn parse(s: &str) -> Option<BreachAction> {
        [
            BreachAction::Reject,
            BreachAction::Reduce,
            BreachAction::Halt,
            BreachAction::HaltCancel,
            BreachAction::HaltFlatten,
        ]
        .into_iter()
        .find(|a| a.as_str() == s)
    }

    /// The state the action moves to, if any.
    pub fn state(self) -> Option<TradingState> {
        match self {
            BreachAction::Reject => None,
            BreachAction::Reduce => Some(TradingState::Reducing),
            _ => Some(TradingState::Halted),
        }
    }
}

/// The machine-readable reasons of a denial (the `herd-risk-code` trailer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Code {
    MaxNotional,
    MaxVolume,
    PriceBand,
    MaxOpenOrders,
    MaxExposure,
    OrderRate,
    DailyLoss,
    Drawdown,
    Halted,
    Reducing,
}

impl Code {
    pub const ALL: [Code; 10] = [
        Code::MaxNotional,
        Code::MaxVolume,
        Code::PriceBand,
        Code::MaxOpenOrders,
        Code::MaxExposure,
        Code::OrderRate,
        Code::DailyLoss,
        Code::Drawdown,
        Code::Halted,
        Code::Reducing,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Code::MaxNotional => "max_notional",
            Code::MaxVolume => "max_volume",
            Code::PriceBand => "price_band",
            Code::MaxOpenOrders => "max_open_orders",
            Code::MaxExposure => "max_exposure",
            Code::OrderRate => "order_rate",
            Code::DailyLoss => "daily_loss",
            Code::Drawdown => "drawdown",
            Code::Halted => "halted",
            Code::Reducing => "reducing",
        }
    }
}

/// The action of each limit on breach. Unset: `reject`, except daily loss
/// and drawdown, which go REDUCING (the loss is already there; only closing
/// it helps).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Actions {
    pub max_notional: BreachAction,
    pub max_volume: BreachAction,
    pub price_band: BreachAction,
    pub max_open_orders: BreachAction,
    pub max_exposure: BreachAction,
    pub order_rate: BreachAction,
    pub daily_loss: BreachAction,
    pub drawdown: BreachAction,
}

impl Default for Actions {
    fn default() -> Actions {
        Actions {
            max_notional: BreachAction::Reject,
            max_volume: BreachAction::Reject,
            price_band: BreachAction::Reject,
            max_open_orders: BreachAction::Reject,
            max_exposure: BreachAction::Reject,
            order_rate: BreachAction::Reject,
            daily_loss: BreachAction::Reduce,
            drawdown: BreachAction::Reduce,
        }
    }
}

impl Actions {
    pub fn of(&self, code: Code) -> BreachAction {
        match code {
            Code::MaxNotional => self.max_notional,
            Code::MaxVolume => self.max_volume,
            Code::PriceBand => self.price_band,
            Code::MaxOpenOrders => self.max_open_orders,
            Code::MaxExposure => self.max_exposure,
            Code::OrderRate => self.order_rate,
            Code::DailyLoss => self.daily_loss,
            Code::Drawdown => self.drawdown,
            Code::Halted | Code::Reducing => BreachAction::Reject,
        }
    }

    /// Sets the action of the limit named `code` (its trailer name).
    pub fn set(&mut self, code: &str, a: BreachAction) -> bool {
        let slot = match code {
            "max_notional" => &mut self.max_notional,
            "max_volume" => &mut self.max_volume,
            "price_band" => &mut self.price_band,
            "max_open_orders" => &mut self.max_open_orders,
            "max_exposure" => &mut self.max_exposure,
            "order_rate" => &mut self.order_rate,
            "daily_loss" => &mut self.daily_loss,
            "drawdown" => &mut self.drawdown,
            _ => return false,
        };
        *slot = a;
        true
    }
}

/// One set of limits (an engine's or the account's). Unset = unlimited.
/// Amounts are in the quote coin of the instrument traded (the account's
/// quote on a single-quote venue: USD on Kraken, USDT on Bybit).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Most notional (volume x price; market orders at the last ticker) of one order.
    #[serde(deserialize_with = "herd_venue::decimal::deserialize_opt")]
    pub max_order_notional: Option<Decimal>,
    /// Most base volume of one order.
    #[serde(deserialize_with = "herd_venue::decimal::deserialize_opt")]
    pub max_order_volume: Option<Decimal>,
    /// Fat-finger guard: a limit buy at most this many percent above the
    /// ask, a limit sell at most this many percent below the bid.
    #[serde(deserialize_with = "herd_venue::decimal::deserialize_opt")]
    pub price_band_pct: Option<Decimal>,
    /// Most open orders in total.
    pub max_open_orders: Option<u32>,
    /// Most open orders on one instrument.
    pub max_open_orders_per_instrument: Option<u32>,
    /// Most exposure on one instrument, in quote: the larger of |position +
    /// open buys| and |position - open sells|, at the order's price.
    #[serde(deserialize_with = "herd_venue::decimal::deserialize_opt")]
    pub max_exposure_per_instrument: Option<Decimal>,
    /// Most exposure summed over instruments, in quote.
    #[serde(deserialize_with = "herd_venue::decimal::deserialize_opt")]
    pub max_gross_exposure: Option<Decimal>,
    /// Most order submits in any `order_window_ms` (a sliding window).
    pub max_orders_per_window: Option<u32>,
    /// The rate window; unset = 1000 ms.
    pub order_window_ms: Option<u64>,
    /// Most realized loss in a UTC day, fees included, in quote (positive).
    #[serde(deserialize_with = "herd_venue::decimal::deserialize_opt")]
    pub max_daily_loss: Option<Decimal>,
    /// Most fall of the day's PnL (realized + unrealized at the last price)
    /// from the day's peak, in quote (positive).
    #[serde(deserialize_with = "herd_venue::decimal::deserialize_opt")]
    pub max_drawdown: Option<Decimal>,
    pub actions: Actions,
}

impl Limits {
    /// The window of the rate limit.
    pub fn window_ms(&self) -> i64 {
        i64::try_from(self.order_window_ms.unwrap_or(1_000)).unwrap_or(i64::MAX)
    }

    /// Checks every field: the error names it (`<prefix>.<field>`).
    pub fn validate(&self, prefix: &str) -> Result<(), String> {
        let decimals = [
            ("max_order_notional", self.max_order_notional),
            ("max_order_volume", self.max_order_volume),
            ("price_band_pct", self.price_band_pct),
            (
                "max_exposure_per_instrument",
                self.max_exposure_per_instrument,
            ),
            ("max_gross_exposure", self.max_gross_exposure),
            ("max_daily_loss", self.max_daily_loss),
            ("max_drawdown", self.max_drawdown),
        ];
        for (name, v) in decimals {
            if let Some(v) = v
                && v <= Decimal::ZERO
            {
                return Err(format!("{prefix}{name}: {v} must be positive"));
            }
        }
        if self.order_window_ms == Some(0) {
            return Err(format!("{prefix}order_window_ms: must be at least 1"));
        }
        Ok(())
    }
}

/// `[risk]` of the gateway config.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RiskConfig {
    /// Limits on the sum of every engine's orders and fills.
    pub account: Limits,
    /// Limits per engine id.
    pub engines: BTreeMap<String, Limits>,
}

/// A working order as risk sees it.
#[derive(Debug, Clone)]
struct Working {
    symbol: String,
    side: Side,
    /// Volume not executed yet.
    remaining: Decimal,
    /// The order's limit price, or the reference price of a market order.
    price: Decimal,
    executed: Decimal,
    /// Average price of what executed so far.
    avg: Decimal,
    fee: Decimal,
}

/// Net base of one instrument and its average cost.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Position {
    pub net: Decimal,
    pub avg_cost: Decimal,
}

/// Why and when a limit was last breached.
#[derive(Debug, Clone, PartialEq)]
pub struct Breach {
    pub code: Code,
    pub message: String,
    pub at_ms: i64,
}

/// Names a book in a denial's message ("engine e1", "the account"),
/// formatted only when a message is written.
#[derive(Debug, Clone, Copy)]
struct Who<'a>(Option<&'a str>);

impl std::fmt::Display for Who<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(engine) => write!(f, "engine {engine}"),
            None => f.write_str("the account"),
        }
    }
}

/// Usage and state of one engine or of the account.
#[derive(Debug, Default)]
pub struct Book {
    pub state: TradingState,
    pub limits: Limits,
    orders: HashMap<String, Working>,
    pub positions: HashMap<String, Position>,
    pub last_price: HashMap<String, Decimal>,
    submits: VecDeque<i64>,
    /// The UTC day (ms since epoch / 86_400_000) the PnL below is for.
    pub day: i64,
    pub realized: Decimal,
    pub peak: Decimal,
    pub last_breach: Option<Breach>,
    pub denials: BTreeMap<Code, u64>,
}

/// An order about to be checked.
#[derive(Debug, Clone)]
pub struct Candidate<'a> {
    pub symbol: &'a str,
    pub side: Side,
    pub volume: Decimal,
    /// The limit price; None for a market order.
    pub price: Option<Decimal>,
    pub reduce_only: bool,
    /// The last ticker, when a limit needs one.
    pub ticker: Option<&'a Ticker>,
}

impl Candidate<'_> {
    /// The price the order is valued at.
    fn ref_price(&self) -> Decimal {
        self.price
            .or(self.ticker.map(|t| {
                if t.last > Decimal::ZERO {
                    t.last
                } else {
                    (t.bid + t.ask) / Decimal::TWO
                }
            }))
            .unwrap_or_default()
    }
}

/// A refused order: which limit, what it says, what happens next.
#[derive(Debug, Clone, PartialEq)]
pub struct Denial {
    pub code: Code,
    pub message: String,
    pub action: BreachAction,
    /// The account's limit (acts on every engine), else the engine's.
    pub account: bool,
    pub retry_after_ms: Option<i64>,
}

impl Denial {
    /// The gRPC status an engine sees: FAILED_PRECONDITION (the rate limit:
    /// RESOURCE_EXHAUSTED with `retry-after-ms`), code in `herd-risk-code`.
    pub fn status(&self) -> Status {
        let mut st = match self.retry_after_ms {
            Some(ms) => crate::service::with_retry_hint(
                Status::resource_exhausted(self.message.clone()),
                ms,
            ),
            None => Status::failed_precondition(self.message.clone()),
        };
        if let Ok(v) = self.code.as_str().parse() {
            st.metadata_mut().insert(RISK_CODE_KEY, v);
        }
        st
    }
}

fn utc_day(now_ms: i64) -> i64 {
    now_ms.div_euclid(DAY_MS)
}

impl Book {
    fn new(limits: Limits) -> Book {
        Book {
            limits,
            ..Book::default()
        }
    }

    /// Starts a new UTC day: realized PnL and peak go back to zero;
    /// positions and their cost stay.
    fn roll(&mut self, now_ms: i64) {
        let day = utc_day(now_ms);
        if day != self.day {
            self.day = day;
            self.realized = Decimal::ZERO;
            // The new day's peak starts at what its PnL is now (the
            // positions carried over), as the next mark would set it: a
            // mark at an unchanged price does not recompute it.
            self.peak = Decimal::ZERO;
            self.peak = self.peak.max(self.pnl());
        }
    }

    /// Unrealized PnL of the positions at the last price seen.
    pub fn unrealized(&self) -> Decimal {
        self.positions
            .iter()
            .map(|(s, p)| {
                let last = self.last_price.get(s).copied().unwrap_or(p.avg_cost);
                p.net * (last - p.avg_cost)
            })
            .sum()
    }

    /// The day's PnL: realized plus unrealized.
    pub fn pnl(&self) -> Decimal {
        self.realized + self.unrealized()
    }

    /// Open orders: in total, and on `symbol`.
    pub fn open_orders(&self, symbol: Option<&str>) -> usize {
        self.orders
            .values()
            .filter(|w| symbol.is_none_or(|s| w.symbol == s))
            .count()
    }

    fn open_volume(&self, symbol: &str, side: Side) -> Decimal {
        self.orders
            .values()
            .filter(|w| w.symbol == symbol && w.side == side)
            .map(|w| w.remaining)
            .sum()
    }

    /// Exposure on `symbol` in base: the larger of |net + open buys| and
    /// |net - open sells|, with `extra` (side, volume) added.
    fn exposure_base(&self, symbol: &str, extra: Option<(Side, Decimal)>) -> Decimal {
        let net = self.positions.get(symbol).map_or(Decimal::ZERO, |p| p.net);
        let mut buys = self.open_volume(symbol, Side::Buy);
        let mut sells = self.open_volume(symbol, Side::Sell);
        match extra {
            Some((Side::Buy, v)) => buys += v,
            Some((Side::Sell, v)) => sells += v,
            None => {}
        }
        (net + buys).abs().max((net - sells).abs())
    }

    /// Exposure on every instrument in quote (at the last price seen, or
    /// `price` for `symbol`).
    fn exposures(&self, symbol: &str, price: Decimal, extra: (Side, Decimal)) -> Decimal {
        let mut symbols: Vec<&str> = self
            .positions
            .keys()
            .map(String::as_str)
            .chain(self.orders.values().map(|w| w.symbol.as_str()))
            .collect();
        symbols.push(symbol);
        symbols.sort_unstable();
        symbols.dedup();
        symbols
            .into_iter()
            .map(|s| {
                if s == symbol {
                    self.exposure_base(s, Some(extra)) * price
                } else {
                    let p = self.price_of(s);
                    self.exposure_base(s, None) * p
                }
            })
            .sum()
    }

    /// What one unit of `symbol` is worth: the last price seen, else the
    /// position's cost, else the average price of its working orders.
    fn price_of(&self, symbol: &str) -> Decimal {
        if let Some(p) = self.last_price.get(symbol) {
            return *p;
        }
        if let Some(p) = self.positions.get(symbol).filter(|p| !p.net.is_zero()) {
            return p.avg_cost;
        }
        let (vol, value) = self
            .orders
            .values()
            .filter(|w| w.symbol == symbol)
            .fold((Decimal::ZERO, Decimal::ZERO), |(v, x), w| {
                (v + w.remaining, x + w.remaining * w.price)
            });
        if vol.is_zero() {
            Decimal::ZERO
        } else {
            value / vol
        }
    }

    /// True when the order can only make exposure smaller: reduce-only, or
    /// against the position and, with the orders already working that way,
    /// no larger than it.
    pub fn reduces(&self, c: &Candidate) -> bool {
        if c.reduce_only {
            return true;
        }
        let net = self
            .positions
            .get(c.symbol)
            .map_or(Decimal::ZERO, |p| p.net);
        let same_way = self.open_volume(c.symbol, c.side);
        match c.side {
            Side::Sell => net > Decimal::ZERO && same_way + c.volume <= net,
            Side::Buy => net < Decimal::ZERO && same_way + c.volume <= -net,
        }
    }

    /// The check of `c` against this book's limits and state; `who` names
    /// the book in messages ("engine e1", "the account").
    fn check(&self, c: &Candidate, who: Who<'_>, now_ms: i64) -> Result<(), (Code, String)> {
        let l = &self.limits;
        let reduces = self.reduces(c);
        match self.state {
            TradingState::Halted => {
                return Err((
                    Code::Halted,
                    format!("risk: {who} is HALTED: no new orders"),
                ));
            }
            TradingState::Reducing if !reduces => {
                return Err((
                    Code::Reducing,
                    format!("risk: {who} is REDUCING: only orders that reduce exposure"),
                ));
            }
            _ => {}
        }
        if let Some(max) = l.max_order_volume
            && c.volume > max
        {
            return Err((
                Code::MaxVolume,
                format!(
                    "risk: max_order_volume of {who} is {max}; the order's volume is {}",
                    c.volume
                ),
            ));
        }
        let price = c.ref_price();
        if let Some(max) = l.max_order_notional {
            let notional = c.volume * price;
            if notional > max {
                return Err((
                    Code::MaxNotional,
                    format!(
                        "risk: max_order_notional of {who} is {max}; the order's notional is {notional}"
                    ),
                ));
            }
        }
        if let (Some(pct), Some(p), Some(t)) = (l.price_band_pct, c.price, c.ticker) {
            let band = pct / Decimal::ONE_HUNDRED;
            match c.side {
                Side::Buy if t.ask > Decimal::ZERO && p > t.ask * (Decimal::ONE + band) => {
                    return Err((
                        Code::PriceBand,
                        format!(
                            "risk: price_band_pct of {who} is {pct}; the buy at {p} is more than that above the ask {}",
                            t.ask
                        ),
                    ));
                }
                Side::Sell if t.bid > Decimal::ZERO && p < t.bid * (Decimal::ONE - band) => {
                    return Err((
                        Code::PriceBand,
                        format!(
                            "risk: price_band_pct of {who} is {pct}; the sell at {p} is more than that below the bid {}",
                            t.bid
                        ),
                    ));
                }
                _ => {}
            }
        }
        if let Some(max) = l.max_open_orders {
            let n = self.open_orders(None) + 1;
            if n > max as usize {
                return Err((
                    Code::MaxOpenOrders,
                    format!(
                        "risk: max_open_orders of {who} is {max}; this order would be open order {n}"
                    ),
                ));
            }
        }
        if let Some(max) = l.max_open_orders_per_instrument {
            let n = self.open_orders(Some(c.symbol)) + 1;
            if n > max as usize {
                return Err((
                    Code::MaxOpenOrders,
                    format!(
                        "risk: max_open_orders_per_instrument of {who} is {max}; this order would be open order {n} on {}",
                        c.symbol
                    ),
                ));
            }
        }
        if !reduces {
            if let Some(max) = l.max_exposure_per_instrument {
                let e = self.exposure_base(c.symbol, Some((c.side, c.volume))) * price;
                if e > max {
                    return Err((
                        Code::MaxExposure,
                        format!(
                            "risk: max_exposure_per_instrument of {who} is {max}; with this order the exposure on {} would be {e}",
                            c.symbol
                        ),
                    ));
                }
            }
            if let Some(max) = l.max_gross_exposure {
                let e = self.exposures(c.symbol, price, (c.side, c.volume));
                if e > max {
                    return Err((
                        Code::MaxExposure,
                        format!(
                            "risk: max_gross_exposure of {who} is {max}; with this order the gross exposure would be {e}"
                        ),
                    ));
                }
            }
            let today = utc_day(now_ms) == self.day;
            if let Some(max) = l.max_daily_loss {
                let loss = if today { -self.realized } else { Decimal::ZERO };
                if loss >= max {
                    return Err((
                        Code::DailyLoss,
                        format!(
                            "risk: max_daily_loss of {who} is {max}; today's realized loss is {loss}"
                        ),
                    ));
                }
            }
            if let Some(max) = l.max_drawdown {
                let dd = if today {
                    self.peak - self.pnl()
                } else {
                    Decimal::ZERO
                };
                if dd >= max {
                    return Err((
                        Code::Drawdown,
                        format!(
                            "risk: max_drawdown of {who} is {max}; the day's PnL is {dd} below its peak"
                        ),
                    ));
                }
            }
        }
        if let Some(max) = l.max_orders_per_window {
            let window = l.window_ms();
            let recent = self.in_window(now_ms, window);
            if recent >= max as usize {
                return Err((
                    Code::OrderRate,
                    format!(
                        "risk: max_orders_per_window of {who} is {max} per {window} ms; {recent} orders were sent in the last {window} ms"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Submits in the `window` ms before `now_ms`. They are appended in
    /// clock order (newest at the back), so those inside the window are a
    /// suffix: found by bisection, not by a walk over every submit of the
    /// window (thousands a second on a busy account).
    fn in_window(&self, now_ms: i64, window: i64) -> usize {
        self.submits.len() - self.submits.partition_point(|t| now_ms - t >= window)
    }

    fn admit(&mut self, key: &str, c: &Candidate, now_ms: i64) {
        let window = self.limits.window_ms();
        while self.submits.front().is_some_and(|t| now_ms - t >= window) {
            self.submits.pop_front();
        }
        self.submits.push_back(now_ms);
        self.orders.insert(
            key.to_string(),
            Working {
                symbol: c.symbol.to_string(),
                side: c.side,
                remaining: c.volume,
                price: c.ref_price(),
                executed: Decimal::ZERO,
                avg: Decimal::ZERO,
                fee: Decimal::ZERO,
            },
        );
    }

    /// Retry hint of an order-rate denial.
    fn retry_after(&self, now_ms: i64) -> i64 {
        let window = self.limits.window_ms();
        self.submits
            .iter()
            .find(|t| now_ms - **t < window)
            .map_or(1, |t| (t + window - now_ms).max(1))
    }

    /// A fill of `volume` at `price` with `fee` in quote.
    pub fn fill(
        &mut self,
        symbol: &str,
        side: Side,
        volume: Decimal,
        price: Decimal,
        fee: Decimal,
        now_ms: i64,
    ) {
        self.roll(now_ms);
        let signed = match side {
            Side::Buy => volume,
            Side::Sell => -volume,
        };
        let pos = self.positions.entry(symbol.to_string()).or_default();
        let mut realized = Decimal::ZERO;
        if pos.net.is_zero() || pos.net.is_sign_positive() == signed.is_sign_positive() {
            let size = pos.net.abs() + volume;
            pos.avg_cost = (pos.net.abs() * pos.avg_cost + volume * price) / size;
            pos.net += signed;
        } else {
            let closed = volume.min(pos.net.abs());
            let dir = if pos.net.is_sign_positive() {
                Decimal::ONE
            } else {
                -Decimal::ONE
            };
            realized = (price - pos.avg_cost) * closed * dir;
            pos.net += signed;
            if pos.net.is_zero() {
                pos.avg_cost = Decimal::ZERO;
            } else if pos.net.is_sign_positive() != dir.is_sign_positive() {
                // Flipped: the rest opens at the fill's price.
                pos.avg_cost = price;
            }
        }
        self.realized += realized - fee;
        self.last_price.insert(symbol.to_string(), price);
        self.peak = self.peak.max(self.pnl());
    }

    /// Follows an order's new state; true if it filled.
    fn on_state(&mut self, key: &str, s: &OrderState, quote: Option<&str>, now_ms: i64) -> bool {
        let Some(w) = self.orders.get_mut(key) else {
            return false;
        };
        let delta = s.volume_executed - w.executed;
        let mut fill = None;
        if delta > Decimal::ZERO {
            let new_avg = s.average_price.or(s.price).unwrap_or(w.price);
            let price = (new_avg * s.volume_executed - w.avg * w.executed) / delta;
            let fee_delta = (s.fee - w.fee).max(Decimal::ZERO);
            // A fee in the base coin is worth the fill's price in quote.
            let fee = if quote.is_none_or(|q| s.fee_asset.is_empty() || s.fee_asset == q) {
                fee_delta
            } else {
                fee_delta * price
            };
            fill = Some((w.symbol.clone(), w.side, delta, price, fee));
            w.executed = s.volume_executed;
            w.avg = new_avg;
            w.fee = s.fee;
            w.remaining = (s.volume - s.volume_executed).max(Decimal::ZERO);
        }
        if s.status.is_final() {
            self.orders.remove(key);
        }
        match fill {
            Some((symbol, side, v, p, f)) => {
                self.fill(&symbol, side, v, p, f, now_ms);
                true
            }
            None => false,
        }
    }

    fn day_write(&self, scope: &str) -> crate::risk_store::Write {
        crate::risk_store::Write::Day {
            scope: scope.to_string(),
            day: self.day,
            realized: self.realized,
            peak: self.peak,
            positions: self
                .positions
                .iter()
                .map(|(s, p)| (s.clone(), p.clone()))
                .collect(),
        }
    }
}

/// What one engine's or the account's risk looks like now.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub state: TradingState,
    pub limits: Limits,
    pub open_orders: usize,
    pub gross_exposure: Decimal,
    pub realized_today: Decimal,
    pub pnl_today: Decimal,
    pub peak_today: Decimal,
    pub orders_in_window: usize,
    pub positions: Vec<(String, Position)>,
    pub last_breach: Option<Breach>,
    pub denials: BTreeMap<Code, u64>,
}

impl Book {
    fn snapshot(&self, now_ms: i64) -> Snapshot {
        let window = self.limits.window_ms();
        let mut positions: Vec<(String, Position)> = self
            .positions
            .iter()
            .filter(|(_, p)| !p.net.is_zero())
            .map(|(s, p)| (s.clone(), p.clone()))
            .collect();
        positions.sort_by(|a, b| a.0.cmp(&b.0));
        let today = utc_day(now_ms) == self.day;
        Snapshot {
            state: self.state,
            limits: self.limits.clone(),
            open_orders: self.open_orders(None),
            gross_exposure: self.exposures("", Decimal::ZERO, (Side::Buy, Decimal::ZERO)),
            realized_today: if today { self.realized } else { Decimal::ZERO },
            pnl_today: if today { self.pnl() } else { self.unrealized() },
            peak_today: if today { self.peak } else { Decimal::ZERO },
            orders_in_window: self.in_window(now_ms, window),
            positions,
            last_breach: self.last_breach.clone(),
            denials: self.denials.clone(),
        }
    }
}

/// One line of the audit log: a limit change, a state change, a denial or
/// a kill action.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEntry {
    pub at_ms: i64,
    /// "operator", "risk" (a breach), or the engine that was denied.
    pub actor: String,
    /// "limits", "state", "denial", "cancel_all", "flatten".
    pub kind: String,
    /// The engine concerned; empty = the account.
    pub engine: String,
    pub before: String,
    pub after: String,
    pub reason: String,
}

/// Most audit entries kept in memory (the durable log keeps them all).
const AUDIT_IN_MEMORY: usize = 10_000;

/// The risk state of the gateway: a book per engine and one for the account.
#[derive(Debug)]
pub struct Risk {
    engines: HashMap<String, Mutex<Book>>,
    account: Mutex<Book>,
    audit: Mutex<VecDeque<AuditEntry>>,
    /// Where the day's totals go after each fill (the durable store).
    sink: std::sync::OnceLock<crate::risk_store::WriteQueue<crate::risk_store::Write>>,
    /// Quote coin per symbol, for reading fees (filled by the gateway as it
    /// learns instruments).
    quotes: Mutex<HashMap<String, String>>,
}

fn lock(m: &Mutex<Book>) -> MutexGuard<'_, Book> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A state change an operator or a breach made.
#[derive(Debug, Clone, PartialEq)]
pub struct StateChange {
    /// None = the account.
    pub engine: Option<String>,
    pub before: TradingState,
    pub after: TradingState,
}

impl Risk {
    /// Books for `engines` with their configured limits.
    pub fn new<'a>(engines: impl IntoIterator<Item = &'a str>, cfg: &RiskConfig) -> Risk {
        Risk {
            engines: engines
                .into_iter()
                .map(|e| {
                    let limits = cfg.engines.get(e).cloned().unwrap_or_default();
                    (e.to_string(), Mutex::new(Book::new(limits)))
                })
                .collect(),
            account: Mutex::new(Book::new(cfg.account.clone())),
            audit: Mutex::new(VecDeque::new()),
            sink: std::sync::OnceLock::new(),
            quotes: Mutex::new(HashMap::new()),
        }
    }

    /// Uses the configured limits (replacing every book's).
    pub fn configure(&self, cfg: &RiskConfig) {
        for (id, b) in &self.engines {
            lock(b).limits = cfg.engines.get(id).cloned().unwrap_or_default();
        }
        lock(&self.account).limits = cfg.account.clone();
    }

    /// Sends the day's totals of a book to `tx` after each fill.
    pub fn persist_days_to(&self, tx: crate::risk_store::WriteQueue<crate::risk_store::Write>) {
        let _ = self.sink.set(tx);
    }

    /// Appends to the in-memory audit log (the caller persists it too).
    pub fn record(&self, entry: AuditEntry) {
        let mut a = self.audit.lock().unwrap_or_else(|p| p.into_inner());
        a.push_back(entry);
        while a.len() > AUDIT_IN_MEMORY {
            a.pop_front();
        }
    }

    /// The audit entries in memory, oldest first.
    pub fn audit(&self) -> Vec<AuditEntry> {
        self.audit
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    /// Remembers the quote coin of a symbol (fees in it count as they are).
    pub fn learn_quote(&self, symbol: &str, quote: &str) {
        let mut q = self.quotes.lock().unwrap_or_else(|p| p.into_inner());
        if !q.contains_key(symbol) {
            q.insert(symbol.to_string(), quote.to_string());
        }
    }

    pub fn engine_ids(&self) -> Vec<String> {
        let mut v: Vec<String> = self.engines.keys().cloned().collect();
        v.sort();
        v
    }

    pub fn has_engine(&self, engine: &str) -> bool {
        self.engines.contains_key(engine)
    }

    /// True when some limit of `engine` or the account needs the ticker.
    pub fn needs_ticker(&self, engine: &str, market_order: bool) -> bool {
        let wants = |l: &Limits| {
            l.price_band_pct.is_some()
                || l.max_drawdown.is_some()
                || (market_order
                    && (l.max_order_notional.is_some()
                        || l.max_exposure_per_instrument.is_some()
                        || l.max_gross_exposure.is_some()))
        };
        self.engines
            .get(engine)
            .is_some_and(|b| wants(&lock(b).limits))
            || wants(&lock(&self.account).limits)
    }

    /// Checks an order of `engine` against its limits and the account's;
    /// on success reserves it under `key` (the engine's client order id).
    /// A denial is counted and recorded as the last breach; the caller
    /// carries out its action ([`Risk::set_state`] and any kill).
    pub fn check(&self, engine: &str, key: &str, c: &Candidate, now_ms: i64) -> Result<(), Denial> {
        let Some(eb) = self.engines.get(engine) else {
            return Ok(());
        };
        let mut e = lock(eb);
        let mut a = lock(&self.account);
        e.roll(now_ms);
        a.roll(now_ms);
        let found = match e.check(c, Who(Some(engine)), now_ms) {
            Err(x) => Some((x, false)),
            Ok(()) => a.check(c, Who(None), now_ms).err().map(|x| (x, true)),
        };
        if let Some(((code, message), account)) = found {
            let book = if account { &mut *a } else { &mut *e };
            let action = book.limits.actions.of(code);
            let retry_after_ms = (code == Code::OrderRate).then(|| book.retry_after(now_ms));
            book.last_breach = Some(Breach {
                code,
                message: message.clone(),
                at_ms: now_ms,
            });
            *e.denials.entry(code).or_default() += 1;
            if account {
                *a.denials.entry(code).or_default() += 1;
            }
            return Err(Denial {
                code,
                message,
                action,
                account,
                retry_after_ms,
            });
        }
        if e.orders.contains_key(key) {
            // The same client id again: the registry answers with the first
            // order; nothing new to reserve.
            return Ok(());
        }
        e.admit(key, c, now_ms);
        a.admit(&format!("{engine}\u{0}{key}"), c, now_ms);
        Ok(())
    }

    /// Reserves an order without checking it (the gateway's own flatten
    /// orders): its fills still move the books.
    pub fn reserve(&self, engine: &str, key: &str, c: &Candidate, now_ms: i64) {
        let Some(eb) = self.engines.get(engine) else {
            return;
        };
        let mut e = lock(eb);
        if e.orders.contains_key(key) {
            return;
        }
        e.admit(key, c, now_ms);
        lock(&self.account).admit(&format!("{engine}\u{0}{key}"), c, now_ms);
    }

    /// Drops a reservation (the venue refused the order definitely).
    pub fn release(&self, engine: &str, key: &str) {
        if let Some(eb) = self.engines.get(engine) {
            lock(eb).orders.remove(key);
            lock(&self.account)
                .orders
                .remove(&format!("{engine}\u{0}{key}"));
        }
    }

    /// Tracks an order found at the venue (after a restart): it counts as open.
    pub fn adopt(&self, engine: &str, key: &str, s: &OrderState) {
        if s.status.is_final() {
            return;
        }
        let Some(eb) = self.engines.get(engine) else {
            return;
        };
        let w = Working {
            symbol: s.symbol.clone(),
            side: s.side,
            remaining: (s.volume - s.volume_executed).max(Decimal::ZERO),
            price: s.price.unwrap_or_default(),
            executed: s.volume_executed,
            avg: s.average_price.or(s.price).unwrap_or_default(),
            fee: s.fee,
        };
        let mut e = lock(eb);
        if e.orders.contains_key(key) {
            return;
        }
        e.orders.insert(key.to_string(), w.clone());
        lock(&self.account)
            .orders
            .insert(format!("{engine}\u{0}{key}"), w);
    }

    /// Follows a new state of an engine's order: fills become positions and
    /// realized PnL, a final order stops counting.
    pub fn on_state(&self, engine: &str, key: &str, s: &OrderState, now_ms: i64) {
        let Some(eb) = self.engines.get(engine) else {
            return;
        };
        let quote = self
            .quotes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&s.symbol)
            .cloned();
        let mut e = lock(eb);
        let filled = e.on_state(key, s, quote.as_deref(), now_ms);
        let mut a = lock(&self.account);
        a.on_state(&format!("{engine}\u{0}{key}"), s, quote.as_deref(), now_ms);
        if filled && let Some(tx) = self.sink.get() {
            let _ = tx.send(e.day_write(engine));
            let _ = tx.send(a.day_write("*account"));
        }
    }

    /// A price seen at the venue (a ticker): unrealized PnL follows it.
    pub fn mark(&self, symbol: &str, price: Decimal) {
        if price <= Decimal::ZERO {
            return;
        }
        for b in self.engines.values().chain(std::iter::once(&self.account)) {
            let mut b = lock(b);
            if !b.positions.contains_key(symbol) {
                continue;
            }
            // The same price again changes no PnL (a fill moves the peak
            // itself): most orders see the ticker they saw before.
            match b.last_price.get_mut(symbol) {
                Some(p) if *p == price => continue,
                Some(p) => *p = price,
                None => {
                    b.last_price.insert(symbol.to_string(), price);
                }
            }
            let pnl = b.pnl();
            b.peak = b.peak.max(pnl);
        }
    }

    /// Sets the state of an engine (None: the account). Unknown engine: None.
    pub fn set_state(&self, engine: Option<&str>, to: TradingState) -> Option<StateChange> {
        let m = match engine {
            Some(e) => self.engines.get(e)?,
            None => &self.account,
        };
        let mut b = lock(m);
        let before = b.state;
        b.state = to;
        Some(StateChange {
            engine: engine.map(str::to_string),
            before,
            after: to,
        })
    }

    /// Moves to `to` only if that is stricter than now (a breach never
    /// loosens a state an operator set).
    pub fn escalate(&self, engine: Option<&str>, to: TradingState) -> Option<StateChange> {
        let m = match engine {
            Some(e) => self.engines.get(e)?,
            None => &self.account,
        };
        let mut b = lock(m);
        let before = b.state;
        if to <= before {
            return None;
        }
        b.state = to;
        Some(StateChange {
            engine: engine.map(str::to_string),
            before,
            after: to,
        })
    }

    pub fn state(&self, engine: Option<&str>) -> Option<TradingState> {
        match engine {
            Some(e) => self.engines.get(e).map(|b| lock(b).state),
            None => Some(lock(&self.account).state),
        }
    }

    /// Replaces the limits of an engine (None: the account); the old ones back.
    pub fn set_limits(&self, engine: Option<&str>, limits: Limits) -> Option<Limits> {
        let m = match engine {
            Some(e) => self.engines.get(e)?,
            None => &self.account,
        };
        Some(std::mem::replace(&mut lock(m).limits, limits))
    }

    pub fn snapshot(&self, engine: Option<&str>, now_ms: i64) -> Option<Snapshot> {
        match engine {
            Some(e) => self.engines.get(e).map(|b| lock(b).snapshot(now_ms)),
            None => Some(lock(&self.account).snapshot(now_ms)),
        }
    }

    /// The positions `engine` built (net base per symbol), for flattening.
    pub fn positions(&self, engine: &str) -> Vec<(String, Decimal)> {
        let Some(b) = self.engines.get(engine) else {
            return Vec::new();
        };
        let b = lock(b);
        let mut v: Vec<(String, Decimal)> = b
            .positions
            .iter()
            .filter(|(_, p)| !p.net.is_zero())
            .map(|(s, p)| (s.clone(), p.net))
            .collect();
        v.sort();
        v
    }

    /// Restores a persisted day (realized PnL and peak) and positions.
    pub fn restore_book(
        &self,
        engine: Option<&str>,
        day: i64,
        realized: Decimal,
        peak: Decimal,
        positions: Vec<(String, Position)>,
    ) {
        let m = match engine {
            Some(e) => match self.engines.get(e) {
                Some(m) => m,
                None => return,
            },
            None => &self.account,
        };
        let mut b = lock(m);
        b.day = day;
        b.realized = realized;
        b.peak = peak;
        b.positions = positions.into_iter().collect();
    }
}

/// Wire forms of the risk types.
pub mod wire {
    use super::*;
    use herd_proto::gateway as pb;

    fn dec(v: Option<Decimal>) -> String {
        v.map(|d| d.normalize().to_string()).unwrap_or_default()
    }

    pub fn state_to_pb(s: TradingState) -> pb::TradingState {
        match s {
            TradingState::Active => pb::TradingState::Active,
            TradingState::Reducing => pb::TradingState::Reducing,
            TradingState::Halted => pb::TradingState::Halted,
        }
    }

    /// The state a request names; UNSPECIFIED or junk is INVALID_ARGUMENT naming `state`.
    pub fn state_from_pb(v: i32) -> Result<TradingState, Status> {
        match pb::TradingState::try_from(v) {
            Ok(pb::TradingState::Active) => Ok(TradingState::Active),
            Ok(pb::TradingState::Reducing) => Ok(TradingState::Reducing),
            Ok(pb::TradingState::Halted) => Ok(TradingState::Halted),
            _ => Err(Status::invalid_argument(
                "state: must be ACTIVE, REDUCING or HALTED",
            )),
        }
    }

    pub fn limits_to_pb(l: &Limits) -> pb::RiskLimits {
        let a = &l.actions;
        let actions = Code::ALL
            .into_iter()
            .filter(|c| !matches!(c, Code::Halted | Code::Reducing))
            .map(|c| (c.as_str().to_string(), a.of(c).as_str().to_string()))
            .collect();
        pb::RiskLimits {
            max_order_notional: dec(l.max_order_notional),
            max_order_volume: dec(l.max_order_volume),
            price_band_pct: dec(l.price_band_pct),
            max_open_orders: l.max_open_orders,
            max_open_orders_per_instrument: l.max_open_orders_per_instrument,
            max_exposure_per_instrument: dec(l.max_exposure_per_instrument),
            max_gross_exposure: dec(l.max_gross_exposure),
            max_orders_per_window: l.max_orders_per_window,
            order_window_ms: l.order_window_ms,
            max_daily_loss: dec(l.max_daily_loss),
            max_drawdown: dec(l.max_drawdown),
            actions,
        }
    }

    /// `cur` with the changes of `req` applied; every field checked, the
    /// error names it (`limits.<field>`, `limits.actions[<code>]`).
    pub fn apply_limits(cur: &Limits, req: &pb::RiskLimits) -> Result<Limits, Status> {
        let mut l = cur.clone();
        let decimal = |field: &str, text: &str, slot: &mut Option<Decimal>| -> Result<(), Status> {
            let t = text.trim();
            if t.is_empty() {
                return Ok(());
            }
            if t == "none" {
                *slot = None;
                return Ok(());
            }
            let v = crate::convert::parse_signed_decimal(&format!("limits.{field}"), t)?;
            if v <= Decimal::ZERO {
                return Err(Status::invalid_argument(format!(
                    "limits.{field}: {t} must be positive (\"none\" removes the limit)"
                )));
            }
            *slot = Some(v);
            Ok(())
        };
        decimal(
            "max_order_notional",
            &req.max_order_notional,
            &mut l.max_order_notional,
        )?;
        decimal(
            "max_order_volume",
            &req.max_order_volume,
            &mut l.max_order_volume,
        )?;
        decimal("price_band_pct", &req.price_band_pct, &mut l.price_band_pct)?;
        decimal(
            "max_exposure_per_instrument",
            &req.max_exposure_per_instrument,
            &mut l.max_exposure_per_instrument,
        )?;
        decimal(
            "max_gross_exposure",
            &req.max_gross_exposure,
            &mut l.max_gross_exposure,
        )?;
        decimal("max_daily_loss", &req.max_daily_loss, &mut l.max_daily_loss)?;
        decimal("max_drawdown", &req.max_drawdown, &mut l.max_drawdown)?;
        let count = |v: Option<u32>, slot: &mut Option<u32>| {
            if let Some(n) = v {
                *slot = (n > 0).then_some(n);
            }
        };
        count(req.max_open_orders, &mut l.max_open_orders);
        count(
            req.max_open_orders_per_instrument,
            &mut l.max_open_orders_per_instrument,
        );
        count(req.max_orders_per_window, &mut l.max_orders_per_window);
        if let Some(ms) = req.order_window_ms {
            l.order_window_ms = (ms > 0).then_some(ms);
        }
        let mut codes: Vec<(&String, &String)> = req.actions.iter().collect();
        codes.sort();
        for (code, action) in codes {
            let a = BreachAction::parse(action).ok_or_else(|| {
                Status::invalid_argument(format!(
                    "limits.actions[{code}]: {action:?} is not one of reject, reduce, halt, \
                     halt_cancel, halt_flatten"
                ))
            })?;
            if !l.actions.set(code, a) {
                return Err(Status::invalid_argument(format!(
                    "limits.actions: {code:?} is not a limit (max_notional, max_volume, \
                     price_band, max_open_orders, max_exposure, order_rate, daily_loss, drawdown)"
                )));
            }
        }
        l.validate("limits.").map_err(Status::invalid_argument)?;
        Ok(l)
    }

    pub fn book_to_pb(engine: &str, s: &Snapshot) -> pb::RiskBook {
        pb::RiskBook {
            engine_id: engine.to_string(),
            state: state_to_pb(s.state) as i32,
            limits: Some(limits_to_pb(&s.limits)),
            open_orders: u32::try_from(s.open_orders).unwrap_or(u32::MAX),
            gross_exposure: s.gross_exposure.normalize().to_string(),
            realized_pnl_today: s.realized_today.normalize().to_string(),
            pnl_today: s.pnl_today.normalize().to_string(),
            peak_pnl_today: s.peak_today.normalize().to_string(),
            orders_in_window: u32::try_from(s.orders_in_window).unwrap_or(u32::MAX),
            positions: s
                .positions
                .iter()
                .map(|(sym, p)| pb::RiskPosition {
                    symbol: sym.clone(),
                    net: p.net.normalize().to_string(),
                    average_cost: p.avg_cost.normalize().to_string(),
                })
                .collect(),
            last_breach_code: s
                .last_breach
                .as_ref()
                .map(|b| b.code.as_str().to_string())
                .unwrap_or_default(),
            last_breach_message: s
                .last_breach
                .as_ref()
                .map(|b| b.message.clone())
                .unwrap_or_default(),
            last_breach_ms: s.last_breach.as_ref().map_or(0, |b| b.at_ms),
            denials: s
                .denials
                .iter()
                .map(|(c, n)| (c.as_str().to_string(), *n))
                .collect(),
        }
    }

    pub fn audit_to_pb(a: &AuditEntry) -> pb::RiskAuditEntry {
        pb::RiskAuditEntry {
            at_ms: a.at_ms,
            actor: a.actor.clone(),
            kind: a.kind.clone(),
            engine_id: a.engine.clone(),
            before: a.before.clone(),
            after: a.after.clone(),
            reason: a.reason.clone(),
        }
    }
}

/// A shared handle.
pub type SharedRisk = Arc<Risk>;

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn average_cost_realized_pnl_with_fees_to_the_cent() {
        let mut b = Book::default();
        let t = 1_700_000_000_000;
        b.fill("BTCUSD", Side::Buy, dec!(1), dec!(100), dec!(0.26), t);
        b.fill("BTCUSD", Side::Buy, dec!(1), dec!(110), dec!(0.29), t);
        assert_eq!(b.positions["BTCUSD"].avg_cost, dec!(105));
        b.fill("BTCUSD", Side::Sell, dec!(1.5), dec!(100), dec!(0.39), t);
        // (100 - 105) * 1.5 = -7.5, fees 0.94
        assert_eq!(b.realized, dec!(-8.44));
        assert_eq!(b.positions["BTCUSD"].net, dec!(0.5));
        // Flip to short: 0.5 closes at 120 (+7.5), 1 opens short at 120.
        b.fill("BTCUSD", Side::Sell, dec!(1.5), dec!(120), dec!(0), t);
        assert_eq!(b.realized, dec!(-0.94));
        assert_eq!(b.positions["BTCUSD"].net, dec!(-1));
        assert_eq!(b.positions["BTCUSD"].avg_cost, dec!(120));
        // The next UTC day starts at zero; the position stays.
        b.fill(
            "BTCUSD",
            Side::Buy,
            dec!(0.5),
            dec!(110),
            dec!(0),
            t + DAY_MS,
        );
        assert_eq!(b.realized, dec!(5));
        assert_eq!(b.positions["BTCUSD"].net, dec!(-0.5));
    }

    /// Yesterday's loss blocks nothing today: at 00:00 UTC realized PnL and
    /// the peak start again from zero.
    #[test]
    fn daily_loss_rolls_over_at_utc_midnight() {
        let cfg = RiskConfig {
            engines: [(
                "e".to_string(),
                Limits {
                    max_daily_loss: Some(dec!(5)),
                    ..Limits::default()
                },
            )]
            .into(),
            ..RiskConfig::default()
        };
        let risk = Risk::new(["e"], &cfg);
        let day = 20_000 * DAY_MS;
        let last_ms_of_day = day + DAY_MS - 1;
        {
            let mut b = lock(&risk.engines["e"]);
            b.fill("X", Side::Buy, dec!(10), dec!(10), dec!(0), day);
            b.fill("X", Side::Sell, dec!(10), dec!(9.4), dec!(0.01), day);
            assert_eq!(b.realized, dec!(-6.01));
        }
        let c = Candidate {
            symbol: "X",
            side: Side::Buy,
            volume: dec!(1),
            price: Some(dec!(9)),
            reduce_only: false,
            ticker: None,
        };
        let d = risk.check("e", "o1", &c, last_ms_of_day).unwrap_err();
        assert_eq!(d.code, Code::DailyLoss);
        assert!(d.message.contains("6.01"), "{}", d.message);
        assert_eq!(d.action, BreachAction::Reduce);
        risk.check("e", "o2", &c, day + DAY_MS).unwrap();
        assert_eq!(
            risk.snapshot(Some("e"), day + DAY_MS)
                .unwrap()
                .realized_today,
            Decimal::ZERO
        );
    }
    /// The order-rate count by bisection equals the walk from the newest
    /// submit it replaced, for every probe time around a bursty history.
    #[test]
    fn orders_in_window_by_bisection_equal_the_walk() {
        let mut b = Book::default();
        let times = [
            0_i64, 5, 5, 5, 40, 41, 41, 100, 250, 250, 999, 1_000, 1_000, 1_001,
        ];
        b.submits.extend(times);
        let walk = |b: &Book, now: i64, window: i64| {
            b.submits
                .iter()
                .rev()
                .take_while(|t| now - **t < window)
                .count()
        };
        let mut nonzero = 0;
        for window in [1, 2, 40, 100, 1_000, 5_000] {
            for now in 0..2_200 {
                let want = walk(&b, now, window);
                assert_eq!(b.in_window(now, window), want, "now {now} window {window}");
                nonzero += usize::from(want > 0);
            }
        }
        assert!(nonzero > 1_000, "the probes must see submits in the window");
    }

    /// A mark at the price already seen is skipped, and skipping it changes
    /// nothing: PnL and peak equal those of a book that recomputed, also
    /// across a UTC day's rollover (the new day's peak starts at its PnL).
    #[test]
    fn a_mark_at_an_unchanged_price_changes_nothing() {
        let cfg = RiskConfig {
            engines: [("e".to_string(), Limits::default())].into(),
            ..RiskConfig::default()
        };
        let risk = Risk::new(["e"], &cfg);
        let day = 20_000 * DAY_MS;
        lock(&risk.engines["e"]).fill("X", Side::Buy, dec!(2), dec!(10), dec!(0), day);
        lock(&risk.account).fill("X", Side::Buy, dec!(2), dec!(10), dec!(0), day);
        risk.mark("X", dec!(12));
        risk.mark("X", dec!(12));
        assert_eq!(lock(&risk.engines["e"]).pnl(), dec!(4));
        assert_eq!(lock(&risk.engines["e"]).peak, dec!(4));
        risk.mark("X", dec!(11));
        assert_eq!(lock(&risk.engines["e"]).peak, dec!(4));
        assert_eq!(lock(&risk.engines["e"]).pnl(), dec!(2));
        // The next day: realized restarts at zero, the peak at today's PnL
        // (the carried position's 2), which the old code set at the next
        // mark at any price.
        let next = day + DAY_MS;
        let mut e = lock(&risk.engines["e"]);
        e.roll(next);
        assert_eq!(e.realized, Decimal::ZERO);
        assert_eq!(e.peak, dec!(2));
        drop(e);
        risk.mark("X", dec!(11));
        assert_eq!(lock(&risk.engines["e"]).peak, dec!(2));
        risk.mark("X", dec!(13));
        assert_eq!(lock(&risk.engines["e"]).peak, dec!(6));
    }
}
