//! The paper matching core: balances, resting orders and fills against each
//! instrument's price path.
//!
//! It is synchronous and takes the time as an argument, so the paper venue,
//! the wire-level simulators and tests can all drive it deterministically.
//! Resting limit orders are makers and fill at their limit price once the
//! market trades through them, at most `liquidity_per_step` per step (which
//! is how partial fills happen); market orders and crossing limit orders are
//! takers and fill at once at the touch.

use std::collections::{BTreeMap, HashMap, VecDeque};

use herd_venue::{
    Balance, Candle, Instrument, InstrumentKind, NewOrder, OrderRef, OrderState, OrderStatus, Side,
    Ticker, VenueError,
};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde::{Deserialize, Serialize};

use crate::path::{PathConfig, PricePath, SplitMix64, to_decimal};

const MINUTE_MS: i64 = 60_000;
/// One week of one-minute candles.
const MAX_CANDLES: usize = 10_080;
/// Closed orders kept for queries before the oldest are forgotten.
const MAX_CLOSED_ORDERS: usize = 100_000;
/// Fees are booked to this many decimal places.
const FEE_DECIMALS: u32 = 8;

/// In which coin fees are charged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeePolicy {
    /// Always in the quote currency (Kraken spot's default).
    #[default]
    Quote,
    /// Buys pay in the base coin they receive, sells in the quote (Bybit spot).
    BaseOnBuy,
}

/// One instrument of the paper venue and the market it trades in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaperInstrument {
    #[serde(flatten)]
    pub instrument: Instrument,
    pub start_price: Decimal,
    #[serde(default)]
    pub path: PathConfig,
    /// Most base volume one resting order can fill per step; none = no limit.
    #[serde(default)]
    pub liquidity_per_step: Option<Decimal>,
    /// Typical synthetic market volume per step, for candles.
    #[serde(default = "default_step_volume")]
    pub typical_step_volume: f64,
}

fn default_step_volume() -> f64 {
    1000.0
}

/// The paper venue's configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PaperConfig {
    pub instruments: Vec<PaperInstrument>,
    /// Starting balances per asset.
    pub balances: BTreeMap<String, Decimal>,
    pub fee_policy: FeePolicy,
    /// Minutes of candle history generated before the start time.
    pub history_minutes: u32,
    /// Path steps per generated history minute.
    pub history_steps_per_minute: u32,
    /// Seed for order ids.
    pub seed: u64,
}

impl Default for PaperConfig {
    fn default() -> PaperConfig {
        PaperConfig {
            instruments: vec![PaperInstrument::doge_usd()],
            balances: BTreeMap::from([
                ("USD".to_string(), Decimal::from(1000)),
                ("DOGE".to_string(), Decimal::from(5000)),
            ]),
            fee_policy: FeePolicy::Quote,
            history_minutes: 0,
            history_steps_per_minute: 6,
            seed: 42,
        }
    }
}

impl PaperInstrument {
    /// DOGE/USD with Kraken-like filters: the default instrument.
    pub fn doge_usd() -> PaperInstrument {
        PaperInstrument {
            instrument: Instrument {
                symbol: "DOGEUSD".into(),
                base: "DOGE".into(),
                quote: "USD".into(),
                kind: InstrumentKind::Spot,
                tick_size: Decimal::new(1, 7),
                price_decimals: 7,
                lot_decimals: 8,
                min_volume: Decimal::from(10),
                min_cost: Decimal::new(5, 1),
                maker_fee: Decimal::new(25, 4),
                taker_fee: Decimal::new(40, 4),
                max_open_orders: 225,
            },
            start_price: Decimal::new(12, 2),
            path: PathConfig::default(),
            liquidity_per_step: None,
            typical_step_volume: default_step_volume(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Book {
    inst: Instrument,
    path: PricePath,
    last: Decimal,
    updated_ms: i64,
    liquidity_per_step: Option<Decimal>,
    typical_step_volume: f64,
    candles: VecDeque<Candle>,
}

impl Book {
    fn bid(&self) -> Decimal {
        (self.last - self.inst.tick_size).max(self.inst.tick_size)
    }

    fn ask(&self) -> Decimal {
        self.last + self.inst.tick_size
    }

    fn record(&mut self, price: Decimal, volume: Decimal, now_ms: i64) {
        self.last = price;
        self.updated_ms = now_ms;
        let open_time_ms = now_ms - now_ms.rem_euclid(MINUTE_MS);
        match self.candles.back_mut() {
            Some(c) if c.open_time_ms == open_time_ms => {
                c.high = c.high.max(price);
                c.low = c.low.min(price);
                c.close = price;
                c.volume += volume;
            }
            _ => {
                self.candles.push_back(Candle {
                    open_time_ms,
                    open: price,
                    high: price,
                    low: price,
                    close: price,
                    volume,
                });
                while self.candles.len() > MAX_CANDLES {
                    self.candles.pop_front();
                }
            }
        }
    }

    fn step(&mut self, now_ms: i64) {
        let price = to_decimal(self.path.step(), self.inst.price_decimals).max(self.inst.tick_size);
        let volume = to_decimal(
            self.path.step_volume(self.typical_step_volume),
            self.inst.lot_decimals,
        );
        self.record(price, volume, now_ms);
    }
}

/// The matching core.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Exchange {
    fee_policy: FeePolicy,
    books: BTreeMap<String, Book>,
    totals: BTreeMap<String, Decimal>,
    orders: HashMap<String, OrderState>,
    by_client_id: HashMap<String, String>,
    closed: VecDeque<String>,
    ids: SplitMix64,
}

impl Exchange {
    /// A fresh exchange at `now_ms`, with `history_minutes` of candles behind it.
    pub fn new(cfg: &PaperConfig, now_ms: i64) -> Exchange {
        let mut books = BTreeMap::new();
        for pi in &cfg.instruments {
            let start = pi.start_price.to_f64().unwrap_or(1.0);
            let mut book = Book {
                inst: pi.instrument.clone(),
                path: PricePath::new(pi.path.clone(), start),
                last: pi.start_price,
                updated_ms: now_ms,
                liquidity_per_step: pi.liquidity_per_step,
                typical_step_volume: pi.typical_step_volume,
                candles: VecDeque::new(),
            };
            let minutes = i64::from(cfg.history_minutes);
            let steps = i64::from(cfg.history_steps_per_minute.max(1));
            for m in (1..=minutes).rev() {
                for s in 0..steps {
                    book.step(now_ms - m * MINUTE_MS + s * MINUTE_MS / steps);
                }
            }
            book.record(book.last, Decimal::ZERO, now_ms);
            books.insert(pi.instrument.symbol.clone(), book);
        }
        Exchange {
            fee_policy: cfg.fee_policy,
            books,
            totals: cfg.balances.clone(),
            orders: HashMap::new(),
            by_client_id: HashMap::new(),
            closed: VecDeque::new(),
            ids: SplitMix64::new(cfg.seed),
        }
    }

    pub fn instruments(&self) -> Vec<Instrument> {
        self.books.values().map(|b| b.inst.clone()).collect()
    }

    pub fn instrument(&self, symbol: &str) -> Result<&Instrument, VenueError> {
        self.book(symbol).map(|b| &b.inst)
    }

    fn book(&self, symbol: &str) -> Result<&Book, VenueError> {
        self.books
            .get(symbol)
            .ok_or_else(|| VenueError::InvalidArgument(format!("unknown symbol {symbol:?}")))
    }

    pub fn ticker(&self, symbol: &str) -> Result<Ticker, VenueError> {
        let b = self.book(symbol)?;
        let day_ago = b.updated_ms - 1440 * MINUTE_MS;
        let volume_24h = b
            .candles
            .iter()
            .filter(|c| c.open_time_ms >= day_ago)
            .map(|c| c.volume)
            .sum();
        Ok(Ticker {
            symbol: symbol.to_string(),
            bid: b.bid(),
            ask: b.ask(),
            last: b.last,
            volume_24h,
            time_ms: b.updated_ms,
        })
    }

    /// Candles of `interval_minutes` (a multiple of one minute), oldest first.
    pub fn candles(
        &self,
        symbol: &str,
        interval_minutes: u32,
        since_ms: i64,
    ) -> Result<Vec<Candle>, VenueError> {
        if interval_minutes == 0 {
            return Err(VenueError::InvalidArgument(
                "interval_minutes must be at least 1".into(),
            ));
        }
        let b = self.book(symbol)?;
        let width = i64::from(interval_minutes) * MINUTE_MS;
        let mut out: Vec<Candle> = Vec::new();
        for c in &b.candles {
            let open_time_ms = c.open_time_ms - c.open_time_ms.rem_euclid(width);
            match out.last_mut() {
                Some(agg) if agg.open_time_ms == open_time_ms => {
                    agg.high = agg.high.max(c.high);
                    agg.low = agg.low.min(c.low);
                    agg.close = c.close;
                    agg.volume += c.volume;
                }
                _ => out.push(Candle {
                    open_time_ms,
                    ..c.clone()
                }),
            }
        }
        out.retain(|c| c.open_time_ms >= since_ms);
        Ok(out)
    }

    /// Every asset's total and free balance.
    pub fn balances(&self) -> Vec<Balance> {
        let mut held: BTreeMap<String, Decimal> = BTreeMap::new();
        for o in self
            .orders
            .values()
            .filter(|o| o.status == OrderStatus::Open)
        {
            if let Some((asset, amount)) = self.hold_of(o) {
                *held.entry(asset).or_default() += amount;
            }
        }
        self.totals
            .iter()
            .map(|(asset, total)| Balance {
                asset: asset.clone(),
                total: *total,
                free: *total - held.get(asset).copied().unwrap_or_default(),
            })
            .collect()
    }

    fn free(&self, asset: &str) -> Decimal {
        self.balances()
            .into_iter()
            .find(|b| b.asset == asset)
            .map(|b| b.free)
            .unwrap_or_default()
    }

    /// What an open order holds: buys hold quote (cost plus a quote fee),
    /// sells hold the base they will deliver.
    fn hold_of(&self, o: &OrderState) -> Option<(String, Decimal)> {
        let b = self.books.get(&o.symbol)?;
        let remaining = o.volume - o.volume_executed;
        match o.side {
            Side::Buy => {
                let price = o.price?;
                let fee = match self.fee_policy {
                    FeePolicy::Quote => b.inst.maker_fee,
                    FeePolicy::BaseOnBuy => Decimal::ZERO,
                };
                Some((
                    b.inst.quote.clone(),
                    remaining * price * (Decimal::ONE + fee),
                ))
            }
            Side::Sell => Some((b.inst.base.clone(), remaining)),
        }
    }

    fn new_order_id(&mut self) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
        let mut part = |n: usize| -> String {
            (0..n)
                .map(|_| char::from(ALPHABET[(self.ids.next_u64() % 32) as usize]))
                .collect()
        };
        format!("O{}-{}-{}", part(5), part(5), part(6))
    }

    /// Places an order. A client order id seen before returns that order.
    pub fn place(&mut self, order: &NewOrder, now_ms: i64) -> Result<OrderState, VenueError> {
        if let Some(existing) = self
            .by_client_id
            .get(&order.client_order_id)
            .and_then(|id| self.orders.get(id))
        {
            return Ok(existing.clone());
        }
        let book = self.book(&order.symbol)?;
        let inst = book.inst.clone();
        let checked = inst
            .check_order(order, Some(book.last))
            .map_err(|e| VenueError::InvalidArgument(e.to_string()))?;
        let (bid, ask) = (book.bid(), book.ask());
        let open_on_pair = self
            .orders
            .values()
            .filter(|o| o.symbol == order.symbol && o.status == OrderStatus::Open)
            .count();
        let crosses = match (checked.side, checked.price) {
            (_, None) => true,
            (Side::Buy, Some(p)) => p >= ask,
            (Side::Sell, Some(p)) => p <= bid,
        };
        if checked.post_only && crosses {
            return Err(VenueError::Rejected(format!(
                "post-only {} at {} would take liquidity (bid {bid}, ask {ask})",
                checked.side.as_str(),
                checked.price.unwrap_or_default()
            )));
        }
        if !crosses && open_on_pair >= inst.max_open_orders as usize {
            return Err(VenueError::OrderLimit(format!(
                "{} open orders on {} (limit {})",
                open_on_pair, inst.symbol, inst.max_open_orders
            )));
        }
        let touch = match checked.side {
            Side::Buy => ask,
            Side::Sell => bid,
        };
        // Funds: a taker needs the whole fill now, a maker's hold is checked
        // against what other open orders do not already hold.
        let (need_asset, need) = match checked.side {
            Side::Buy => {
                let price = if crosses {
                    touch
                } else {
                    checked.price.unwrap_or(touch)
                };
                let fee = if self.fee_policy == FeePolicy::Quote {
                    if crosses {
                        inst.taker_fee
                    } else {
                        inst.maker_fee
                    }
                } else {
                    Decimal::ZERO
                };
                (
                    inst.quote.clone(),
                    checked.volume * price * (Decimal::ONE + fee),
                )
            }
            Side::Sell => (inst.base.clone(), checked.volume),
        };
        let free = self.free(&need_asset);
        if free < need {
            return Err(VenueError::InsufficientFunds(format!(
                "need {need} {need_asset}, {free} free"
            )));
        }
        let venue_order_id = self.new_order_id();
        let state = OrderState {
            venue_order_id: venue_order_id.clone(),
            status: OrderStatus::Open,
            fee_asset: inst.quote.clone(),
            ..OrderState::pending(&checked, now_ms)
        };
        self.by_client_id
            .insert(checked.client_order_id.clone(), venue_order_id.clone());
        self.orders.insert(venue_order_id.clone(), state);
        if crosses {
            self.fill(
                &venue_order_id,
                checked.volume,
                touch,
                inst.taker_fee,
                now_ms,
            );
        }
        self.orders
            .get(&venue_order_id)
            .cloned()
            .ok_or_else(|| VenueError::Other("order vanished".into()))
    }

    fn resolve(&self, r: &OrderRef) -> Option<String> {
        r.venue_order_id
            .clone()
            .filter(|id| self.orders.contains_key(id))
            .or_else(|| self.by_client_id.get(&r.client_order_id).cloned())
    }

    /// Cancels an open order.
    pub fn cancel(&mut self, r: &OrderRef, now_ms: i64) -> Result<OrderState, VenueError> {
        let id = self
            .resolve(r)
            .ok_or_else(|| VenueError::UnknownOrder(r.client_order_id.clone()))?;
        let o = self
            .orders
            .get_mut(&id)
            .ok_or_else(|| VenueError::UnknownOrder(id.clone()))?;
        if o.status != OrderStatus::Open {
            return Err(VenueError::UnknownOrder(format!(
                "{} is {:?}, not open",
                o.client_order_id, o.status
            )));
        }
        o.status = OrderStatus::Canceled;
        o.closed_at_ms = Some(now_ms);
        o.reason = Some("User requested".into());
        let out = o.clone();
        self.remember_closed(id);
        Ok(out)
    }

    pub fn open_orders(&self) -> Vec<OrderState> {
        let mut v: Vec<OrderState> = self
            .orders
            .values()
            .filter(|o| o.status == OrderStatus::Open)
            .cloned()
            .collect();
        v.sort_by(|a, b| {
            (a.opened_at_ms, &a.venue_order_id).cmp(&(b.opened_at_ms, &b.venue_order_id))
        });
        v
    }

    pub fn query(&self, refs: &[OrderRef]) -> Vec<OrderState> {
        refs.iter()
            .filter_map(|r| self.resolve(r))
            .filter_map(|id| self.orders.get(&id).cloned())
            .collect()
    }

    /// Moves `symbol` to `price` (one market trade) and fills what it crosses.
    pub fn set_price(
        &mut self,
        symbol: &str,
        price: Decimal,
        now_ms: i64,
    ) -> Result<(), VenueError> {
        if price <= Decimal::ZERO {
            return Err(VenueError::InvalidArgument(
                "price must be greater than zero".into(),
            ));
        }
        let book = self
            .books
            .get_mut(symbol)
            .ok_or_else(|| VenueError::InvalidArgument(format!("unknown symbol {symbol:?}")))?;
        book.path.jump_to(price.to_f64().unwrap_or(1.0));
        book.record(price, Decimal::ZERO, now_ms);
        self.match_resting(symbol, now_ms);
        Ok(())
    }

    /// Advances every instrument's price path by one step and fills what the
    /// new prices cross.
    pub fn step(&mut self, now_ms: i64) {
        let symbols: Vec<String> = self.books.keys().cloned().collect();
        for s in symbols {
            if let Some(b) = self.books.get_mut(&s) {
                b.step(now_ms);
            }
            self.match_resting(&s, now_ms);
        }
    }

    fn match_resting(&mut self, symbol: &str, now_ms: i64) {
        let Some(book) = self.books.get(symbol) else {
            return;
        };
        let (last, liquidity, maker_fee) =
            (book.last, book.liquidity_per_step, book.inst.maker_fee);
        let mut crossed: Vec<(i64, String, Decimal, Decimal)> = self
            .orders
            .values()
            .filter(|o| o.symbol == symbol && o.status == OrderStatus::Open)
            .filter_map(|o| {
                let p = o.price?;
                let hit = match o.side {
                    Side::Buy => last <= p,
                    Side::Sell => last >= p,
                };
                hit.then(|| {
                    (
                        o.opened_at_ms,
                        o.venue_order_id.clone(),
                        p,
                        o.volume - o.volume_executed,
                    )
                })
            })
            .collect();
        crossed.sort();
        for (_, id, price, remaining) in crossed {
            let qty = liquidity.map_or(remaining, |l| remaining.min(l));
            self.fill(&id, qty, price, maker_fee, now_ms);
        }
    }

    /// Books a fill of `qty` at `price` paying `rate` in fees.
    fn fill(&mut self, id: &str, qty: Decimal, price: Decimal, rate: Decimal, now_ms: i64) {
        let Some(o) = self.orders.get(id) else {
            return;
        };
        let Some(inst) = self.books.get(&o.symbol).map(|b| b.inst.clone()) else {
            return;
        };
        let side = o.side;
        let cost = qty * price;
        let (fee, fee_asset) = match (side, self.fee_policy) {
            (Side::Buy, FeePolicy::BaseOnBuy) => {
                ((qty * rate).round_dp(FEE_DECIMALS), inst.base.clone())
            }
            _ => ((cost * rate).round_dp(FEE_DECIMALS), inst.quote.clone()),
        };
        {
            let mut credit = |asset: &str, delta: Decimal| {
                *self.totals.entry(asset.to_string()).or_default() += delta;
            };
            match side {
                Side::Buy => {
                    credit(&inst.quote, -cost);
                    credit(&inst.base, qty);
                }
                Side::Sell => {
                    credit(&inst.base, -qty);
                    credit(&inst.quote, cost);
                }
            }
            credit(&fee_asset, -fee);
        }
        let Some(o) = self.orders.get_mut(id) else {
            return;
        };
        let before = o.volume_executed;
        let after = before + qty;
        let avg = o.average_price.unwrap_or_default();
        o.average_price = Some(
            ((avg * before + price * qty) / after)
                .round_dp(inst.price_decimals + 4)
                .normalize(),
        );
        o.volume_executed = after;
        o.fee += fee;
        o.fee_asset = fee_asset;
        if after >= o.volume {
            o.status = OrderStatus::Filled;
            o.closed_at_ms = Some(now_ms);
            let id = id.to_string();
            self.remember_closed(id);
        }
    }

    fn remember_closed(&mut self, id: String) {
        self.closed.push_back(id);
        while self.closed.len() > MAX_CLOSED_ORDERS {
            if let Some(old) = self.closed.pop_front()
                && let Some(o) = self.orders.remove(&old)
            {
                self.by_client_id.remove(&o.client_order_id);
            }
        }
    }
}
