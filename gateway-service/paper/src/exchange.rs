//! The paper matching core: balances, resting orders and fills against each
//! instrument's price path.
//!
//! It is synchronous and takes the time as an argument, so the paper venue,
//! the wire-level simulators and tests can all drive it deterministically.
//! Resting limit orders are makers and fill at their limit price once the
//! market trades through them, at most `liquidity_per_step` per step (which
//! is how partial fills happen); market orders and crossing limit orders are
//! takers and fill at once at the touch.
//!
//! Linear perpetuals (instruments of kind `perpetual` with a [`PerpConfig`])
//! trade on margin in their quote coin: fills move a one-way position instead
//! of balances, fees and realized PnL are booked to the quote coin, reduce-only
//! orders never grow a position, and funding settles at the perp's funding
//! times (see [`crate::perp`]).

use std::collections::{BTreeMap, HashMap, VecDeque};

/// The core's maps keyed by order ids: FxHash instead of SipHash (the keys
/// are the core's own venue ids and its engines' client ids, not hostile
/// input, and a lookup per open order sits in every place, match and
/// balance read). Nothing iterates them in an order that matters (std's
/// maps were randomly ordered already).
type IdMap<V> = HashMap<String, V, rustc_hash::FxBuildHasher>;

use herd_venue::{
    AccountMargin, Balance, Candle, FundingPayment, FundingPaymentQuery, FundingRate, Instrument,
    InstrumentKind, NewOrder, OrderRef, OrderState, OrderStatus, Position, Side, Ticker,
    VenueError, perp_symbol,
};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde::{Deserialize, Serialize};

use crate::path::{PathConfig, PricePath, SplitMix64, to_decimal};
use crate::perp::{FundingPathConfig, PerpConfig, PerpState, PositionState};

const MINUTE_MS: i64 = 60_000;
/// One week of one-minute candles.
const MAX_CANDLES: usize = 10_080;
/// Closed orders kept for queries before the oldest are forgotten.
const MAX_CLOSED_ORDERS: usize = 100_000;
/// Fees are booked to this many decimal places.
const FEE_DECIMALS: u32 = 8;
/// Funding payments kept for queries.
const MAX_FUNDING_PAYMENTS: usize = 100_000;
/// Missed settlements caught up in one go at most (a long-suspended process).
const MAX_CATCH_UP_SETTLEMENTS: usize = 64;

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
///
/// Read through [`PaperInstrumentFile`]: `#[serde(flatten)]` would let
/// unknown keys pass silently, and cannot be combined with
/// `deny_unknown_fields`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "PaperInstrumentFile")]
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
    /// In which coin this instrument's fees are charged; `None` = the
    /// venue-wide policy.
    #[serde(default)]
    pub fee_policy: Option<FeePolicy>,
    /// Present for linear perpetuals.
    #[serde(default)]
    pub perp: Option<PerpConfig>,
}

fn default_step_volume() -> f64 {
    1000.0
}

/// [`PaperInstrument`] as a config file spells it: the instrument's fields
/// inline, every key known.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PaperInstrumentFile {
    symbol: String,
    base: String,
    quote: String,
    kind: InstrumentKind,
    #[serde(deserialize_with = "herd_venue::decimal::deserialize")]
    tick_size: Decimal,
    price_decimals: u32,
    lot_decimals: u32,
    #[serde(deserialize_with = "herd_venue::decimal::deserialize")]
    min_volume: Decimal,
    #[serde(deserialize_with = "herd_venue::decimal::deserialize")]
    min_cost: Decimal,
    #[serde(deserialize_with = "herd_venue::decimal::deserialize")]
    maker_fee: Decimal,
    #[serde(deserialize_with = "herd_venue::decimal::deserialize")]
    taker_fee: Decimal,
    max_open_orders: u32,
    #[serde(deserialize_with = "herd_venue::decimal::deserialize")]
    start_price: Decimal,
    #[serde(default)]
    path: PathConfig,
    #[serde(default)]
    #[serde(deserialize_with = "herd_venue::decimal::deserialize_opt")]
    liquidity_per_step: Option<Decimal>,
    #[serde(default = "default_step_volume")]
    typical_step_volume: f64,
    #[serde(default)]
    fee_policy: Option<FeePolicy>,
    #[serde(default)]
    perp: Option<PerpConfig>,
}

impl From<PaperInstrumentFile> for PaperInstrument {
    fn from(f: PaperInstrumentFile) -> PaperInstrument {
        PaperInstrument {
            instrument: Instrument {
                symbol: f.symbol,
                base: f.base,
                quote: f.quote,
                kind: f.kind,
                tick_size: f.tick_size,
                price_decimals: f.price_decimals,
                lot_decimals: f.lot_decimals,
                min_volume: f.min_volume,
                min_cost: f.min_cost,
                maker_fee: f.maker_fee,
                taker_fee: f.taker_fee,
                max_open_orders: f.max_open_orders,
            },
            start_price: f.start_price,
            path: f.path,
            liquidity_per_step: f.liquidity_per_step,
            typical_step_volume: f.typical_step_volume,
            fee_policy: f.fee_policy,
            perp: f.perp,
        }
    }
}

/// The paper venue's configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
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
    /// The coin margin, equity and perp PnL are counted in.
    pub margin_asset: String,
}

impl Default for PaperConfig {
    fn default() -> PaperConfig {
        let mut instruments = vec![PaperInstrument::doge_usd()];
        instruments.extend(PaperInstrument::usdt_pairs());
        PaperConfig {
            instruments,
            balances: BTreeMap::from([
                ("USD".to_string(), Decimal::from(1000)),
                ("DOGE".to_string(), Decimal::from(5000)),
                ("USDT".to_string(), Decimal::from(10_000)),
            ]),
            fee_policy: FeePolicy::Quote,
            history_minutes: 0,
            history_steps_per_minute: 6,
            seed: 42,
            margin_asset: "USDT".into(),
        }
    }
}

impl PaperInstrument {
    /// DOGE/USD with Kraken-like filters: the default instrument.
    pub fn doge_usd() -> PaperInstrument {
        PaperInstrument {
            instrument: Instrument::kraken_doge_usd(),
            start_price: Decimal::new(12, 2),
            path: PathConfig::default(),
            liquidity_per_step: None,
            typical_step_volume: default_step_volume(),
            fee_policy: None,
            perp: None,
        }
    }

    /// A Bybit-like spot pair quoted in USDT: 0.1 % fees, charged in the base
    /// coin on buys.
    pub fn usdt_spot(
        base: &str,
        start_price: Decimal,
        price_decimals: u32,
        lot_decimals: u32,
        seed: u64,
    ) -> PaperInstrument {
        PaperInstrument {
            instrument: Instrument {
                symbol: format!("{base}USDT"),
                base: base.into(),
                quote: "USDT".into(),
                kind: InstrumentKind::Spot,
                tick_size: Decimal::new(1, price_decimals),
                price_decimals,
                lot_decimals,
                min_volume: Decimal::new(1, lot_decimals),
                min_cost: Decimal::from(1),
                maker_fee: Decimal::new(1, 3),
                taker_fee: Decimal::new(1, 3),
                max_open_orders: 500,
            },
            start_price,
            path: PathConfig {
                seed,
                ..PathConfig::default()
            },
            liquidity_per_step: None,
            typical_step_volume: 10.0,
            fee_policy: Some(FeePolicy::BaseOnBuy),
            perp: None,
        }
    }

    /// The USDT linear perpetual on `base`, following the spot pair's price:
    /// 0.055 % taker, 0.02 % maker, funding on `funding`.
    pub fn usdt_perp(
        base: &str,
        start_price: Decimal,
        price_decimals: u32,
        lot_decimals: u32,
        funding_interval_hours: u32,
        funding: FundingPathConfig,
        turnover_24h_usd: Decimal,
    ) -> PaperInstrument {
        let spot = format!("{base}USDT");
        PaperInstrument {
            instrument: Instrument {
                symbol: perp_symbol(&spot),
                base: base.into(),
                quote: "USDT".into(),
                kind: InstrumentKind::Perpetual,
                tick_size: Decimal::new(1, price_decimals),
                price_decimals,
                lot_decimals,
                min_volume: Decimal::new(1, lot_decimals),
                min_cost: Decimal::from(5),
                maker_fee: Decimal::new(2, 4),
                taker_fee: Decimal::new(55, 5),
                max_open_orders: 500,
            },
            start_price,
            path: PathConfig {
                seed: funding.seed ^ 0x5EED,
                ..PathConfig::default()
            },
            liquidity_per_step: None,
            typical_step_volume: 10.0,
            fee_policy: Some(FeePolicy::Quote),
            perp: Some(PerpConfig {
                underlying: Some(spot),
                funding_interval_hours,
                funding,
                turnover_24h_usd: Some(turnover_24h_usd),
                ..PerpConfig::default()
            }),
        }
    }

    /// BTC, ETH and SOL spot against USDT plus their perpetuals. ETH's
    /// funding stays rich, SOL's starts high and decays (4 h interval), BTC's
    /// sits near Bybit's 0.01 % baseline.
    pub fn usdt_pairs() -> Vec<PaperInstrument> {
        let funding =
            |seed, start: Decimal, mean: Decimal, persistence, volatility| FundingPathConfig {
                seed,
                start_rate: start,
                mean_rate: mean,
                persistence,
                volatility,
                ..FundingPathConfig::default()
            };
        vec![
            PaperInstrument::usdt_spot("BTC", Decimal::from(60_000), 2, 6, 101),
            PaperInstrument::usdt_perp(
                "BTC",
                Decimal::from(60_000),
                1,
                3,
                8,
                funding(201, Decimal::new(1, 4), Decimal::new(1, 4), 0.9, 0.00003),
                Decimal::from(5_000_000_000u64),
            ),
            PaperInstrument::usdt_spot("ETH", Decimal::from(3_000), 2, 5, 102),
            PaperInstrument::usdt_perp(
                "ETH",
                Decimal::from(3_000),
                2,
                2,
                8,
                funding(202, Decimal::new(6, 4), Decimal::new(5, 4), 0.95, 0.00005),
                Decimal::from(2_000_000_000u64),
            ),
            PaperInstrument::usdt_spot("SOL", Decimal::from(150), 2, 3, 103),
            PaperInstrument::usdt_perp(
                "SOL",
                Decimal::from(150),
                3,
                1,
                4,
                funding(203, Decimal::new(12, 4), Decimal::new(2, 5), 0.6, 0.00002),
                Decimal::from(800_000_000u64),
            ),
        ]
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
    fee_policy: FeePolicy,
    perp: Option<PerpState>,
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

    /// One step of the book's market. A perpetual that follows a spot pair
    /// takes `underlying` times its basis instead of its own path.
    fn step(&mut self, now_ms: i64, underlying: Option<Decimal>) {
        let raw = match (underlying, self.perp.as_mut()) {
            (Some(spot), Some(perp)) => spot.to_f64().unwrap_or(1.0) * perp.step_basis(),
            _ => self.path.step(),
        };
        let price = to_decimal(raw, self.inst.price_decimals).max(self.inst.tick_size);
        let volume = to_decimal(
            self.path.step_volume(self.typical_step_volume),
            self.inst.lot_decimals,
        );
        self.record(price, volume, now_ms);
    }

    fn is_perp(&self) -> bool {
        self.inst.kind == InstrumentKind::Perpetual && self.perp.is_some()
    }

    fn underlying(&self) -> Option<&str> {
        self.perp.as_ref().and_then(|p| p.cfg.underlying.as_deref())
    }

    fn im_rate(&self) -> Decimal {
        self.perp
            .as_ref()
            .map_or(Decimal::ONE, |p| p.cfg.initial_margin_rate)
    }

    fn mm_rate(&self) -> Decimal {
        self.perp
            .as_ref()
            .map_or(Decimal::ZERO, |p| p.cfg.maintenance_margin_rate)
    }
}

/// Every order the core remembers by venue id, and an index of the open
/// ones: placing, matching and balances look only at open orders, which
/// are few beside up to [`MAX_CLOSED_ORDERS`] closed ones. The orders sit
/// in a slab (`slots`, reused once forgotten) that both the id map and the
/// open index point into, so a walk over the open orders hashes no id.
/// Serialized as the map alone; the index is rebuilt when it is read back.
#[derive(Debug, Clone, Default)]
struct Orders {
    /// The slab: `None` for a slot whose order was forgotten (listed in
    /// `vacant` for reuse).
    slots: Vec<Option<OrderState>>,
    vacant: Vec<usize>,
    /// Venue id to slot, for every order remembered (inserted and removed
    /// exactly as an id-keyed map of the orders would be, so it iterates
    /// in the same order).
    index: IdMap<usize>,
    /// The open orders' slots, in venue id order.
    open: BTreeMap<String, usize>,
    /// Counts every mutable access (see [`Exchange::revision`]).
    changes: u64,
    /// The venue ids of the orders changed since the caller last took them
    /// ([`Exchange::keep_change_log`]); `None`, the default: not kept.
    log: Option<Vec<String>>,
    /// Per symbol, bounds of the resting limits ([`RestingEdges`]): a
    /// trade that crosses neither bound crosses no open order, and needs no
    /// scan of them. A symbol without bounds yet is scanned.
    edges: BTreeMap<String, RestingEdges>,
}

impl Orders {
    /// Inserts or replaces an order, keeping the index.
    fn put(&mut self, o: OrderState) -> Option<OrderState> {
        self.changes += 1;
        if let Some(log) = self.log.as_mut() {
            log.push(o.venue_order_id.clone());
        }
        let slot = match self.index.get(&o.venue_order_id) {
            Some(&i) => i,
            None => {
                let i = match self.vacant.pop() {
                    Some(i) => i,
                    None => {
                        self.slots.push(None);
                        self.slots.len() - 1
                    }
                };
                self.index.insert(o.venue_order_id.clone(), i);
                i
            }
        };
        if o.status == OrderStatus::Open {
            self.open.insert(o.venue_order_id.clone(), slot);
            if let (Some(p), Some(e)) = (o.price, self.edges.get_mut(&o.symbol)) {
                match o.side {
                    Side::Buy => e.best_buy = Some(e.best_buy.map_or(p, |b| b.max(p))),
                    Side::Sell => e.best_sell = Some(e.best_sell.map_or(p, |b| b.min(p))),
                }
            }
        } else {
            self.open.remove(&o.venue_order_id);
        }
        self.slots.get_mut(slot).and_then(|s| s.replace(o))
    }

    /// The order with this venue id.
    fn get(&self, id: &str) -> Option<&OrderState> {
        let i = *self.index.get(id)?;
        self.slots.get(i)?.as_ref()
    }

    fn contains_key(&self, id: &str) -> bool {
        self.index.contains_key(id)
    }

    /// Every order remembered, in the id map's order.
    fn values(&self) -> impl Iterator<Item = &OrderState> {
        self.index
            .values()
            .filter_map(|&i| self.slots.get(i).and_then(Option::as_ref))
    }

    /// For changes that keep an order open (fills short of its volume);
    /// a close goes through [`Exchange::remember_closed`], an open through
    /// [`Orders::put`], so nothing here can put the index out of step.
    fn get_mut(&mut self, id: &str) -> Option<&mut OrderState> {
        self.changes += 1;
        if let Some(log) = self.log.as_mut() {
            log.push(id.to_string());
        }
        let i = *self.index.get(id)?;
        self.slots.get_mut(i)?.as_mut()
    }

    /// Forgets a closed order (history only: no open order or balance
    /// changes, so the revision stays).
    fn forget(&mut self, id: &str) -> Option<OrderState> {
        self.open.remove(id);
        let i = self.index.remove(id)?;
        let o = self.slots.get_mut(i)?.take();
        self.vacant.push(i);
        o
    }

    /// Drops a closed order from the index of open ones.
    fn unindex(&mut self, id: &str) {
        self.changes += 1;
        if let Some(log) = self.log.as_mut() {
            log.push(id.to_string());
        }
        self.open.remove(id);
    }

    /// The open orders, in venue id order.
    fn open(&self) -> impl Iterator<Item = &OrderState> {
        self.open
            .values()
            .filter_map(|&i| self.slots.get(i).and_then(Option::as_ref))
    }
}

impl Serialize for Orders {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(
            self.index
                .iter()
                .filter_map(|(id, &i)| Some((id, self.slots.get(i)?.as_ref()?))),
        )
    }
}

impl<'de> Deserialize<'de> for Orders {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Orders, D::Error> {
        /// Reads the map's entries in the order written, as the id map
        /// read back would insert them.
        struct InOrder;
        impl<'de> serde::de::Visitor<'de> for InOrder {
            type Value = Orders;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a map of orders by venue id")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<Orders, A::Error> {
                let mut orders = Orders::default();
                while let Some((id, o)) = m.next_entry::<String, OrderState>()? {
                    // A repeated id replaces the order, as a map's insert.
                    let i = match orders.index.get(&id) {
                        Some(&i) => i,
                        None => {
                            orders.slots.push(None);
                            let i = orders.slots.len() - 1;
                            orders.index.insert(id.clone(), i);
                            i
                        }
                    };
                    if o.status == OrderStatus::Open {
                        orders.open.insert(id, i);
                    } else {
                        orders.open.remove(&id);
                    }
                    if let Some(slot) = orders.slots.get_mut(i) {
                        *slot = Some(o);
                    }
                }
                Ok(orders)
            }
        }
        d.deserialize_map(InOrder)
    }
}

/// The matching core.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Exchange {
    books: BTreeMap<String, Book>,
    totals: BTreeMap<String, Decimal>,
    orders: Orders,
    by_client_id: IdMap<String>,
    /// Reduce-only flags of open orders (OrderState does not carry it).
    reduce_only: IdMap<bool>,
    closed: VecDeque<String>,
    ids: SplitMix64,
    margin_asset: String,
    /// One-way positions by perp symbol; flat ones are removed.
    positions: BTreeMap<String, PositionState>,
    funding_payments: VecDeque<FundingPayment>,
    funding_seq: u64,
    /// Counts serializations of the state (snapshots and account records
    /// alike), so a restore can tell which of the two files is newer.
    #[serde(default)]
    save_seq: u64,
    /// When the last snapshot was serialized (clock ms).
    #[serde(default)]
    snapshot_ms: i64,
    /// Market orders fill this fraction beyond the touch (buys higher,
    /// sells lower, rounded to the tick against the taker). Zero (the paper
    /// venue's default) fills at the touch; the backtester sets it.
    #[serde(default)]
    market_slippage: Decimal,
    /// Counts changes of the balances (see [`Exchange::revision`]).
    #[serde(skip)]
    funds_changes: u64,
}

/// What open orders hold ([`Exchange::hold_of`]) over a walk of them: the
/// book of the last symbol seen is kept, with its factors (`1 + fee` for a
/// spot buy, initial margin rate + maker fee for a perp), for the next
/// order of the same symbol. The arithmetic is `hold_of`'s, operation for
/// operation: the factors are the same values computed once.
struct HoldReader<'a> {
    ex: &'a Exchange,
    last: Option<(&'a Book, Decimal, Decimal)>,
}

impl<'a> HoldReader<'a> {
    fn new(ex: &'a Exchange) -> HoldReader<'a> {
        HoldReader { ex, last: None }
    }

    /// What an open order holds: spot buys hold quote (cost plus a quote
    /// fee), spot sells the base they will deliver; a perp order holds its
    /// initial margin and fee in the quote coin (reduce-only ones nothing).
    fn hold(&mut self, o: &OrderState) -> Option<(&'a str, Decimal)> {
        let (b, buy, perp) = match self.last {
            Some(kept) if kept.0.inst.symbol == o.symbol => kept,
            _ => {
                let b = self.ex.books.get(&o.symbol)?;
                let fee = match b.fee_policy {
                    FeePolicy::Quote => b.inst.maker_fee,
                    FeePolicy::BaseOnBuy => Decimal::ZERO,
                };
                let kept = (b, Decimal::ONE + fee, b.im_rate() + b.inst.maker_fee);
                self.last = Some(kept);
                kept
            }
        };
        let remaining = o.volume - o.volume_executed;
        if b.is_perp() {
            if self.ex.is_reduce_only(&o.venue_order_id) {
                return None;
            }
            let price = o.price?;
            return Some((b.inst.quote.as_str(), remaining * price * perp));
        }
        match o.side {
            Side::Buy => {
                let price = o.price?;
                Some((b.inst.quote.as_str(), remaining * price * buy))
            }
            Side::Sell => Some((b.inst.base.as_str(), remaining)),
        }
    }
}

/// Bounds of the resting limits of one symbol (see [`Orders::edges`]): no
/// open buy above `best_buy` (none at all while `None`), no open sell below
/// `best_sell`. A scan that finds nothing crossed sets them exactly; an
/// order put open widens them; an order leaving leaves them as they are
/// (still bounds, only looser until the next scan).
#[derive(Debug, Clone, Copy, Default)]
struct RestingEdges {
    best_buy: Option<Decimal>,
    best_sell: Option<Decimal>,
}

/// How far before a snapshot an order's close may lie and still go into the
/// account records written after it (a margin for the clock; the snapshot
/// holds every earlier close).
const CLOSED_SINCE_MARGIN_MS: i64 = 60_000;

/// The account half of the state as written after each accepted place or
/// cancel (see [`Exchange::account_json`]): everything but the market's
/// history, and of the closed orders only those closed since the snapshot.
#[derive(Serialize)]
struct AccountRecordRef<'a> {
    save_seq: u64,
    totals: &'a BTreeMap<String, Decimal>,
    orders: Vec<&'a OrderState>,
    reduce_only: &'a IdMap<bool>,
    ids: &'a SplitMix64,
    positions: &'a BTreeMap<String, PositionState>,
    funding_payments: &'a VecDeque<FundingPayment>,
    funding_seq: u64,
    perps: BTreeMap<&'a str, &'a PerpState>,
}

#[derive(Deserialize)]
struct AccountRecord {
    save_seq: u64,
    totals: BTreeMap<String, Decimal>,
    orders: Vec<OrderState>,
    reduce_only: IdMap<bool>,
    ids: SplitMix64,
    positions: BTreeMap<String, PositionState>,
    funding_payments: VecDeque<FundingPayment>,
    funding_seq: u64,
    perps: BTreeMap<String, PerpState>,
}

impl Exchange {
    /// The whole state as JSON (a snapshot), stamped with the next save
    /// sequence number and `now_ms`.
    pub fn snapshot_json(&mut self, now_ms: i64) -> Result<Vec<u8>, serde_json::Error> {
        self.save_seq += 1;
        self.snapshot_ms = now_ms;
        serde_json::to_vec(self)
    }

    /// The account as JSON (small: no candles, and of the closed orders
    /// only those closed since `durable_snapshot_ms`, the time of the
    /// snapshot already on disk), stamped with the next save sequence
    /// number. Applied over that snapshot by [`Exchange::restore_account`].
    pub fn account_json(&mut self, durable_snapshot_ms: i64) -> Result<Vec<u8>, serde_json::Error> {
        self.save_seq += 1;
        let since = durable_snapshot_ms.saturating_sub(CLOSED_SINCE_MARGIN_MS);
        let record = AccountRecordRef {
            save_seq: self.save_seq,
            totals: &self.totals,
            orders: self
                .orders
                .values()
                .filter(|o| {
                    o.status == OrderStatus::Open || o.closed_at_ms.is_none_or(|t| t >= since)
                })
                .collect(),
            reduce_only: &self.reduce_only,
            ids: &self.ids,
            positions: &self.positions,
            funding_payments: &self.funding_payments,
            funding_seq: self.funding_seq,
            perps: self
                .books
                .iter()
                .filter_map(|(s, b)| b.perp.as_ref().map(|p| (s.as_str(), p)))
                .collect(),
        };
        serde_json::to_vec(&record)
    }

    /// When the last snapshot in this state was serialized (clock ms).
    pub fn snapshot_ms(&self) -> i64 {
        self.snapshot_ms
    }

    /// Applies an account record written after this state's snapshot: its
    /// balances, positions, funding and id generator replace these, and its
    /// orders replace or join these. A record older than the snapshot is
    /// ignored (false).
    pub fn restore_account(&mut self, json: &[u8]) -> Result<bool, serde_json::Error> {
        let record: AccountRecord = serde_json::from_slice(json)?;
        if record.save_seq <= self.save_seq {
            return Ok(false);
        }
        self.save_seq = record.save_seq;
        self.totals = record.totals;
        self.funds_changes += 1;
        self.reduce_only = record.reduce_only;
        self.ids = record.ids;
        self.positions = record.positions;
        self.funding_payments = record.funding_payments;
        self.funding_seq = record.funding_seq;
        for (symbol, perp) in record.perps {
            if let Some(b) = self.books.get_mut(&symbol) {
                b.perp = Some(perp);
            }
        }
        for o in record.orders {
            let id = o.venue_order_id.clone();
            let closed = o.status != OrderStatus::Open;
            self.by_client_id
                .insert(o.client_order_id.clone(), id.clone());
            let was_closed = self
                .orders
                .put(o)
                .is_some_and(|before| before.status != OrderStatus::Open);
            if closed && !was_closed {
                self.remember_closed(id);
            }
        }
        Ok(true)
    }

    /// A fresh exchange at `now_ms`, with `history_minutes` of candles behind it.
    pub fn new(cfg: &PaperConfig, now_ms: i64) -> Exchange {
        let mut books = BTreeMap::new();
        for pi in &cfg.instruments {
            let start = pi.start_price.to_f64().unwrap_or(1.0);
            let perp = match (pi.instrument.kind, &pi.perp) {
                (InstrumentKind::Perpetual, Some(p)) => Some(PerpState::new(p, now_ms)),
                (InstrumentKind::Perpetual, None) => {
                    Some(PerpState::new(&PerpConfig::default(), now_ms))
                }
                (InstrumentKind::Spot, _) => None,
            };
            let book = Book {
                inst: pi.instrument.clone(),
                path: PricePath::new(pi.path.clone(), start),
                last: pi.start_price,
                updated_ms: now_ms,
                liquidity_per_step: pi.liquidity_per_step,
                typical_step_volume: pi.typical_step_volume,
                candles: VecDeque::new(),
                fee_policy: pi.fee_policy.unwrap_or(cfg.fee_policy),
                perp,
            };
            books.insert(pi.instrument.symbol.clone(), book);
        }
        let mut ex = Exchange {
            books,
            totals: cfg.balances.clone(),
            orders: Orders::default(),
            by_client_id: IdMap::default(),
            reduce_only: IdMap::default(),
            closed: VecDeque::new(),
            ids: SplitMix64::new(cfg.seed),
            margin_asset: cfg.margin_asset.clone(),
            positions: BTreeMap::new(),
            funding_payments: VecDeque::new(),
            funding_seq: 0,
            save_seq: 0,
            snapshot_ms: 0,
            market_slippage: Decimal::ZERO,
            funds_changes: 0,
        };
        let minutes = i64::from(cfg.history_minutes);
        let steps = i64::from(cfg.history_steps_per_minute.max(1));
        for m in (1..=minutes).rev() {
            for s in 0..steps {
                ex.step_books(now_ms - m * MINUTE_MS + s * MINUTE_MS / steps);
            }
        }
        for b in ex.books.values_mut() {
            b.record(b.last, Decimal::ZERO, now_ms);
        }
        ex
    }

    /// Steps every book's market: leaders (own path) first, then the perps
    /// that follow them.
    fn step_books(&mut self, now_ms: i64) {
        let symbols: Vec<(String, Option<String>)> = self
            .books
            .iter()
            .map(|(s, b)| (s.clone(), b.underlying().map(str::to_owned)))
            .collect();
        for (s, _) in symbols.iter().filter(|(_, u)| u.is_none()) {
            if let Some(b) = self.books.get_mut(s) {
                b.step(now_ms, None);
            }
        }
        for (s, u) in symbols.iter().filter(|(_, u)| u.is_some()) {
            let spot = u.as_ref().and_then(|u| self.books.get(u)).map(|b| b.last);
            if let Some(b) = self.books.get_mut(s) {
                b.step(now_ms, spot);
            }
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

    /// The book's bid, ask and last price: [`Exchange::ticker`] without the
    /// 24 h volume (which walks a day of candles), for callers that read the
    /// book at every step (the backtester).
    pub fn touch(&self, symbol: &str) -> Result<(Decimal, Decimal, Decimal), VenueError> {
        let b = self.book(symbol)?;
        Ok((b.bid(), b.ask(), b.last))
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

    /// A number that changes whenever an order or a balance does (places,
    /// fills, cancels, amends, funding, restores) and only then: a caller
    /// that read the orders or balances at one revision may keep what it
    /// read until the revision moves (the backtester polls and reads free
    /// balances only then). Not persisted; it only ever grows in a process.
    pub fn revision(&self) -> u64 {
        self.orders.changes + self.funds_changes
    }

    /// From now on, keeps the venue id of every order that changes (each
    /// change that moves [`Exchange::revision`] for an order), for
    /// [`Exchange::take_changed`]: a caller that follows many open orders
    /// reads only the changed ones (the backtester's poll). Off by default
    /// (the paper venue never takes them).
    pub fn keep_change_log(&mut self) {
        if self.orders.log.is_none() {
            self.orders.log = Some(Vec::new());
        }
    }

    /// The venue ids of the orders changed since the last call (or since
    /// [`Exchange::keep_change_log`]), in the order of their changes, with
    /// repeats, swapped into `into` (cleared first); empty when the log is
    /// not kept.
    pub fn take_changed(&mut self, into: &mut Vec<String>) {
        into.clear();
        if let Some(log) = self.orders.log.as_mut() {
            std::mem::swap(log, into);
        }
    }

    /// Every asset's total and free balance.
    pub fn balances(&self) -> Vec<Balance> {
        let mut held: BTreeMap<String, Decimal> = BTreeMap::new();
        let mut holds = HoldReader::new(self);
        for o in self.orders.open() {
            if let Some((asset, amount)) = holds.hold(o) {
                match held.get_mut(asset) {
                    Some(sum) => *sum += amount,
                    None => {
                        held.insert(asset.to_string(), Decimal::ZERO + amount);
                    }
                }
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

    /// Total and free balance of two assets (a pair's base and quote), as
    /// [`Exchange::balances`] gives them, in one walk over the open orders
    /// and without building every balance: `[total_a, total_b, free_a,
    /// free_b]` (zero for an asset the account does not hold).
    pub fn pair_funds(&self, a: &str, b: &str) -> [Decimal; 4] {
        let total_a = self.totals.get(a).copied();
        let total_b = self.totals.get(b).copied();
        let (mut held_a, mut held_b) = (Decimal::ZERO, Decimal::ZERO);
        let mut holds = HoldReader::new(self);
        for (asset, amount) in self.orders.open().filter_map(|o| holds.hold(o)) {
            if asset == a {
                held_a += amount;
            } else if asset == b {
                held_b += amount;
            }
        }
        [
            total_a.unwrap_or_default(),
            total_b.unwrap_or_default(),
            total_a.map_or(Decimal::ZERO, |t| t - held_a),
            total_b.map_or(Decimal::ZERO, |t| t - held_b),
        ]
    }

    /// Total balance of two assets, as [`Exchange::pair_funds`] gives
    /// them (zero for an asset the account does not hold), without the
    /// walk over the open orders that free balances need.
    pub fn pair_totals(&self, a: &str, b: &str) -> [Decimal; 2] {
        [
            self.totals.get(a).copied().unwrap_or_default(),
            self.totals.get(b).copied().unwrap_or_default(),
        ]
    }

    fn free(&self, asset: &str) -> Decimal {
        // `balances()` for one asset, without building the others.
        let Some(total) = self.totals.get(asset) else {
            return Decimal::ZERO;
        };
        let mut holds = HoldReader::new(self);
        let held: Decimal = self
            .orders
            .open()
            .filter_map(|o| holds.hold(o))
            .filter(|(a, _)| *a == asset)
            .fold(Decimal::ZERO, |sum, (_, amount)| sum + amount);
        *total - held
    }

    /// The open orders on `symbol`, and `asset`'s free balance (as
    /// [`Exchange::free`] gives it), in one walk over the open orders.
    fn pair_count_and_free(&self, symbol: &str, asset: &str) -> (usize, Decimal) {
        let total = self.totals.get(asset);
        let mut count = 0;
        let mut held = Decimal::ZERO;
        let mut holds = HoldReader::new(self);
        for o in self.orders.open() {
            if o.symbol == symbol {
                count += 1;
            }
            if total.is_some()
                && let Some((a, amount)) = holds.hold(o)
                && a == asset
            {
                held += amount;
            }
        }
        (count, total.map_or(Decimal::ZERO, |t| *t - held))
    }

    /// What an open order holds: spot buys hold quote (cost plus a quote
    /// fee), spot sells the base they will deliver; a perp order holds its
    /// initial margin and fee in the quote coin (reduce-only ones nothing).
    fn hold_of(&self, o: &OrderState) -> Option<(&str, Decimal)> {
        HoldReader::new(self).hold(o)
    }

    fn is_reduce_only(&self, venue_order_id: &str) -> bool {
        self.reduce_only
            .get(venue_order_id)
            .copied()
            .unwrap_or(false)
    }

    /// `O` and three groups of 5, 5 and 6 characters drawn in turn from
    /// the id generator, joined by dashes (`OABCDE-FGHIJ-KLMNOP`), written
    /// into one buffer.
    fn new_order_id(&mut self) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
        let mut id = String::with_capacity(19);
        id.push('O');
        for (k, n) in [5, 5, 6].into_iter().enumerate() {
            if k > 0 {
                id.push('-');
            }
            for _ in 0..n {
                id.push(char::from(ALPHABET[(self.ids.next_u64() % 32) as usize]));
            }
        }
        id
    }

    /// Signed size of the position on `symbol` (long > 0), zero when flat.
    fn position_size(&self, symbol: &str) -> Decimal {
        self.positions
            .get(symbol)
            .map(|p| p.size)
            .unwrap_or_default()
    }

    /// Margin a new perp order settled in `asset` may still use: free
    /// balance plus unrealized PnL minus the positions' initial margin.
    fn available_margin(&self, asset: &str) -> Decimal {
        self.margin_from_free(self.free(asset), asset)
    }

    /// [`Exchange::available_margin`] from `asset`'s free balance.
    fn margin_from_free(&self, free: Decimal, asset: &str) -> Decimal {
        let mut available = free;
        for (symbol, pos) in &self.positions {
            if let Some(b) = self.books.get(symbol).filter(|b| b.inst.quote == asset) {
                available += pos.unrealized(b.last) - pos.size.abs() * b.last * b.im_rate();
            }
        }
        available
    }

    /// Places an order. A client order id seen before returns that order.
    pub fn place(&mut self, order: &NewOrder, now_ms: i64) -> Result<OrderState, VenueError> {
        // A settlement that is due belongs to the positions held before this
        // order, not to the one it may open.
        self.settle_funding(now_ms);
        if let Some(existing) = self
            .by_client_id
            .get(&order.client_order_id)
            .and_then(|id| self.orders.get(id))
        {
            return Ok(existing.clone());
        }
        // Everything up to the new id reads the book in place (no copy of
        // the instrument).
        let book = self.book(&order.symbol)?;
        let inst = &book.inst;
        let is_perp = book.is_perp();
        let (fee_policy, im_rate) = (book.fee_policy, book.im_rate());
        let mut checked = inst
            .check_order(order, Some(book.last))
            .map_err(|e| VenueError::InvalidArgument(e.to_string()))?;
        let (bid, ask) = (book.bid(), book.ask());
        // The asset the order's funds check reads (a perp's margin is in
        // its quote coin), and one walk over the open orders for both the
        // pair's count and that asset's holds.
        let funds_asset = match (is_perp, checked.side) {
            (true, _) | (false, Side::Buy) => inst.quote.as_str(),
            (false, Side::Sell) => inst.base.as_str(),
        };
        let (open_on_pair, funds_free) = self.pair_count_and_free(&order.symbol, funds_asset);
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
        let touch = if checked.price.is_none() && self.market_slippage > Decimal::ZERO {
            let slipped = match checked.side {
                Side::Buy => touch * (Decimal::ONE + self.market_slippage),
                Side::Sell => touch * (Decimal::ONE - self.market_slippage),
            };
            // Against the taker: a buy's price rounds up, a sell's down.
            inst.round_price(checked.side.opposite(), slipped)
                .max(inst.tick_size)
        } else {
            touch
        };
        let fill_price = if crosses {
            touch
        } else {
            checked.price.unwrap_or(touch)
        };
        // Reduce-only applies to perpetuals; spot venues ignore the flag.
        let reduce_only = is_perp && checked.reduce_only;
        if is_perp {
            let pos = self.position_size(&inst.symbol);
            let buying = checked.side == Side::Buy;
            let opposite = !pos.is_zero() && (pos > Decimal::ZERO) != buying;
            if reduce_only {
                if !opposite {
                    return Err(VenueError::Rejected(format!(
                        "reduce-only {} on {} would not reduce the position ({pos})",
                        checked.side.as_str(),
                        inst.symbol
                    )));
                }
                // As Bybit does: a reduce-only order larger than the position
                // is cut to the position's size.
                checked.volume = checked.volume.min(pos.abs());
            } else {
                let increase = if opposite {
                    (checked.volume - pos.abs()).max(Decimal::ZERO)
                } else {
                    checked.volume
                };
                let fee = if crosses {
                    inst.taker_fee
                } else {
                    inst.maker_fee
                };
                let need = increase * fill_price * im_rate + checked.volume * fill_price * fee;
                let available = self.margin_from_free(funds_free, &inst.quote);
                if available < need {
                    return Err(VenueError::InsufficientFunds(format!(
                        "need {} {} of margin, {} available",
                        need.round_dp(8),
                        inst.quote,
                        available.round_dp(8)
                    )));
                }
            }
        } else {
            // Funds: a taker needs the whole fill now, a maker's hold is checked
            // against what other open orders do not already hold.
            let need = match checked.side {
                Side::Buy => {
                    let fee = if fee_policy == FeePolicy::Quote {
                        if crosses {
                            inst.taker_fee
                        } else {
                            inst.maker_fee
                        }
                    } else {
                        Decimal::ZERO
                    };
                    checked.volume * fill_price * (Decimal::ONE + fee)
                }
                Side::Sell => checked.volume,
            };
            let (need_asset, free) = (funds_asset, funds_free);
            if free < need {
                return Err(VenueError::InsufficientFunds(format!(
                    "need {need} {need_asset}, {free} free"
                )));
            }
        }
        let (fee_asset, taker_fee) = (inst.quote.clone(), inst.taker_fee);
        let venue_order_id = self.new_order_id();
        let state = OrderState {
            venue_order_id: venue_order_id.clone(),
            status: OrderStatus::Open,
            fee_asset,
            ..OrderState::pending(&checked, now_ms)
        };
        self.by_client_id
            .insert(checked.client_order_id.clone(), venue_order_id.clone());
        self.orders.put(state);
        if reduce_only {
            self.reduce_only.insert(venue_order_id.clone(), true);
        }
        if crosses {
            self.fill(&venue_order_id, checked.volume, touch, taker_fee, now_ms);
        }
        self.orders
            .get(&venue_order_id)
            .cloned()
            .ok_or_else(|| VenueError::Other("order vanished".into()))
    }

    /// Whether an order was placed reduce-only.
    pub fn order_is_reduce_only(&self, r: &OrderRef) -> bool {
        self.resolve(r).is_some_and(|id| self.is_reduce_only(&id))
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
        self.close_open(&id, "User requested", now_ms)
    }

    /// Amends an open limit order in place: a new total volume (which must
    /// exceed what already executed) and/or a new limit price, keeping its
    /// ids. The amended order is checked as a new one would be (instrument
    /// rules, post-only, funds for what its hold grows by); a refused amend
    /// leaves the order as it was. A non-post-only order amended across the
    /// touch takes liquidity for what remains, as a new order would.
    pub fn amend(
        &mut self,
        r: &OrderRef,
        volume: Option<Decimal>,
        price: Option<Decimal>,
        now_ms: i64,
    ) -> Result<OrderState, VenueError> {
        let id = self
            .resolve(r)
            .ok_or_else(|| VenueError::UnknownOrder(r.client_order_id.clone()))?;
        let old = self
            .orders
            .get(&id)
            .cloned()
            .ok_or_else(|| VenueError::UnknownOrder(id.clone()))?;
        if old.status != OrderStatus::Open {
            return Err(VenueError::UnknownOrder(format!(
                "{} is {:?}, not open",
                old.client_order_id, old.status
            )));
        }
        let book = self.book(&old.symbol)?;
        let inst = book.inst.clone();
        let (bid, ask, is_perp) = (book.bid(), book.ask(), book.is_perp());
        let new_volume = volume.unwrap_or(old.volume);
        let new_price = price.or(old.price);
        if new_volume <= old.volume_executed {
            return Err(VenueError::InvalidArgument(format!(
                "volume {new_volume} is not above the {} already executed",
                old.volume_executed
            )));
        }
        let probe = NewOrder {
            client_order_id: old.client_order_id.clone(),
            symbol: old.symbol.clone(),
            side: old.side,
            order_type: old.order_type,
            volume: new_volume,
            price: new_price,
            post_only: old.post_only,
            userref: old.userref,
            reduce_only: self.is_reduce_only(&id),
        };
        let checked = inst
            .check_order(&probe, Some(book.last))
            .map_err(|e| VenueError::InvalidArgument(e.to_string()))?;
        if checked.volume != new_volume || checked.price != new_price {
            return Err(VenueError::InvalidArgument(format!(
                "volume {new_volume} and price {} must already be on the lot and tick",
                new_price.unwrap_or_default()
            )));
        }
        let crosses = match (old.side, new_price) {
            (_, None) => false,
            (Side::Buy, Some(p)) => p >= ask,
            (Side::Sell, Some(p)) => p <= bid,
        };
        if old.post_only && crosses {
            return Err(VenueError::Rejected(format!(
                "post-only {} amended to {} would take liquidity (bid {bid}, ask {ask})",
                old.side.as_str(),
                new_price.unwrap_or_default()
            )));
        }
        let mut amended = old.clone();
        amended.volume = new_volume;
        amended.price = new_price;
        if let (Some((asset, before)), Some((_, after))) = (
            self.hold_of(&old).map(|(a, x)| (a.to_string(), x)),
            self.hold_of(&amended),
        ) {
            let grows = after - before;
            let free = if is_perp {
                self.available_margin(&asset)
            } else {
                self.free(&asset)
            };
            if grows > free {
                return Err(VenueError::InsufficientFunds(format!(
                    "the amend holds {grows} {asset} more, {free} free"
                )));
            }
        }
        self.orders.put(amended);
        if crosses {
            let touch = match old.side {
                Side::Buy => ask,
                Side::Sell => bid,
            };
            self.fill(
                &id,
                new_volume - old.volume_executed,
                touch,
                inst.taker_fee,
                now_ms,
            );
        }
        self.orders
            .get(&id)
            .cloned()
            .ok_or_else(|| VenueError::Other("order vanished".into()))
    }

    fn close_open(
        &mut self,
        id: &str,
        reason: &str,
        now_ms: i64,
    ) -> Result<OrderState, VenueError> {
        let o = self
            .orders
            .get(id)
            .ok_or_else(|| VenueError::UnknownOrder(id.to_string()))?;
        if o.status != OrderStatus::Open {
            return Err(VenueError::UnknownOrder(format!(
                "{} is {:?}, not open",
                o.client_order_id, o.status
            )));
        }
        let Some(o) = self.orders.get_mut(id) else {
            return Err(VenueError::UnknownOrder(id.to_string()));
        };
        o.status = OrderStatus::Canceled;
        o.closed_at_ms = Some(now_ms);
        o.reason = Some(reason.into());
        let out = o.clone();
        self.remember_closed(id.to_string());
        Ok(out)
    }

    pub fn open_orders(&self) -> Vec<OrderState> {
        let mut v: Vec<OrderState> = self.orders.open().cloned().collect();
        v.sort_by(|a, b| {
            (a.opened_at_ms, &a.venue_order_id).cmp(&(b.opened_at_ms, &b.venue_order_id))
        });
        v
    }

    /// The order with this venue id, borrowed (no copy): the backtester's
    /// poll compares it with what it saw last.
    pub fn order(&self, venue_order_id: &str) -> Option<&OrderState> {
        self.orders.get(venue_order_id)
    }

    pub fn query(&self, refs: &[OrderRef]) -> Vec<OrderState> {
        refs.iter()
            .filter_map(|r| self.resolve(r))
            .filter_map(|id| self.orders.get(&id).cloned())
            .collect()
    }

    /// Every order the core still remembers (open and recently closed).
    pub fn all_orders(&self) -> Vec<OrderState> {
        let mut v: Vec<OrderState> = self.orders.values().cloned().collect();
        v.sort_by(|a, b| {
            (a.opened_at_ms, &a.venue_order_id).cmp(&(b.opened_at_ms, &b.venue_order_id))
        });
        v
    }

    /// Moves `symbol` to `price` (one market trade) and fills what it
    /// crosses. Perps that follow a moved spot pair move with it; a moved
    /// perp keeps its new basis to its spot.
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
        let underlying = self
            .book(symbol)?
            .underlying()
            .and_then(|u| self.books.get(u))
            .map(|b| b.last);
        let book = self
            .books
            .get_mut(symbol)
            .ok_or_else(|| VenueError::InvalidArgument(format!("unknown symbol {symbol:?}")))?;
        book.path.jump_to(price.to_f64().unwrap_or(1.0));
        if let (Some(spot), Some(perp)) = (underlying, book.perp.as_mut())
            && spot > Decimal::ZERO
        {
            perp.basis = ((price / spot).to_f64().unwrap_or(1.0) - 1.0).clamp(-0.05, 0.05);
        }
        book.record(price, Decimal::ZERO, now_ms);
        self.match_resting(symbol, now_ms);
        let followers: Vec<String> = self
            .books
            .iter()
            .filter(|(_, b)| b.underlying() == Some(symbol))
            .map(|(s, _)| s.clone())
            .collect();
        for f in followers {
            if let Some(b) = self.books.get_mut(&f) {
                let basis = b.perp.as_ref().map_or(0.0, |p| p.basis);
                let raw = price.to_f64().unwrap_or(1.0) * (1.0 + basis);
                let p = to_decimal(raw, b.inst.price_decimals).max(b.inst.tick_size);
                b.path.jump_to(raw);
                b.record(p, Decimal::ZERO, now_ms);
            }
            self.match_resting(&f, now_ms);
        }
        Ok(())
    }

    /// Advances every instrument's price path by one step, fills what the
    /// new prices cross and settles the funding that is due.
    pub fn step(&mut self, now_ms: i64) {
        self.step_books(now_ms);
        let symbols: Vec<String> = self.books.keys().cloned().collect();
        for s in symbols {
            self.match_resting(&s, now_ms);
        }
        self.settle_funding(now_ms);
    }

    fn match_resting(&mut self, symbol: &str, now_ms: i64) {
        self.match_resting_through(symbol, Decimal::ZERO, now_ms);
    }

    /// Sets the slippage market orders pay beyond the touch (a fraction,
    /// 0.001 = 0.1 %; see the field). Negative values count as zero.
    pub fn set_market_slippage(&mut self, fraction: Decimal) {
        self.market_slippage = fraction.max(Decimal::ZERO);
    }

    /// One trade of `symbol` at `price` from an external price source (the
    /// backtester's candles): the book's last price moves there, and resting
    /// limit orders fill at their limit price when `price` is at least
    /// `through` beyond it (buys at `limit - through` or lower, sells at
    /// `limit + through` or higher), at most `liquidity_per_step` each.
    /// Unlike [`Exchange::set_price`] no follower perpetual moves with it,
    /// and no funding settles (call [`Exchange::settle_funding`]).
    pub fn trade_through(
        &mut self,
        symbol: &str,
        price: Decimal,
        through: Decimal,
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
        book.record(price, Decimal::ZERO, now_ms);
        self.match_resting_through(symbol, through, now_ms);
        Ok(())
    }

    /// Forgets every order that is no longer open (a long backtest has read
    /// their final states already and needs no history of them; queries for
    /// them answer unknown afterwards).
    pub fn forget_closed(&mut self) {
        for id in self.closed.drain(..) {
            if let Some(o) = self.orders.forget(&id) {
                self.by_client_id.remove(&o.client_order_id);
            }
        }
    }

    fn match_resting_through(&mut self, symbol: &str, through: Decimal, now_ms: i64) {
        let Some(book) = self.books.get(symbol) else {
            return;
        };
        let (last, liquidity, maker_fee) =
            (book.last, book.liquidity_per_step, book.inst.maker_fee);
        if let Some(e) = self.orders.edges.get(symbol)
            && e.best_buy.is_none_or(|p| last > p - through)
            && e.best_sell.is_none_or(|p| last < p + through)
        {
            return;
        }
        // One walk: the orders the trade crosses, and the resting edges in
        // case it crosses none.
        let mut crossed: Vec<(i64, String, Decimal, Decimal)> = Vec::new();
        let mut edges = RestingEdges::default();
        for o in self.orders.open().filter(|o| o.symbol == symbol) {
            let Some(p) = o.price else { continue };
            let hit = match o.side {
                Side::Buy => last <= p - through,
                Side::Sell => last >= p + through,
            };
            if hit {
                crossed.push((
                    o.opened_at_ms,
                    o.venue_order_id.clone(),
                    p,
                    o.volume - o.volume_executed,
                ));
            } else if crossed.is_empty() {
                match o.side {
                    Side::Buy => edges.best_buy = Some(edges.best_buy.map_or(p, |b| b.max(p))),
                    Side::Sell => {
                        edges.best_sell = Some(edges.best_sell.map_or(p, |b| b.min(p)));
                    }
                }
            }
        }
        if crossed.is_empty() {
            // Nothing crossed, so nothing changes: remember the edges.
            match self.orders.edges.get_mut(symbol) {
                Some(e) => *e = edges,
                None => {
                    self.orders.edges.insert(symbol.to_string(), edges);
                }
            }
            return;
        }
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
        let Some((inst, fee_policy, is_perp)) = self
            .books
            .get(&o.symbol)
            .map(|b| (b.inst.clone(), b.fee_policy, b.is_perp()))
        else {
            return;
        };
        let side = o.side;
        let mut qty = qty;
        let mut cut_short = false;
        if is_perp && self.is_reduce_only(id) {
            let pos = self.position_size(&inst.symbol);
            let opposite = !pos.is_zero() && (pos > Decimal::ZERO) != (side == Side::Buy);
            let room = if opposite { pos.abs() } else { Decimal::ZERO };
            if room < qty {
                qty = room;
                cut_short = true;
            }
            if qty.is_zero() {
                let _ = self.close_open(id, "reduce-only: no position left to reduce", now_ms);
                return;
            }
        }
        let cost = qty * price;
        self.funds_changes += 1;
        let (fee, fee_asset) = if is_perp {
            ((cost * rate).round_dp(FEE_DECIMALS), inst.quote.clone())
        } else {
            match (side, fee_policy) {
                (Side::Buy, FeePolicy::BaseOnBuy) => {
                    ((qty * rate).round_dp(FEE_DECIMALS), inst.base.clone())
                }
                _ => ((cost * rate).round_dp(FEE_DECIMALS), inst.quote.clone()),
            }
        };
        if is_perp {
            let signed = match side {
                Side::Buy => qty,
                Side::Sell => -qty,
            };
            let pos = self.positions.entry(inst.symbol.clone()).or_default();
            let pnl = pos.apply_fill(signed, price, now_ms);
            pos.realized -= fee;
            if pos.size.is_zero() {
                self.positions.remove(&inst.symbol);
            }
            *self.totals.entry(inst.quote.clone()).or_default() += pnl - fee;
        } else {
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
        } else if cut_short {
            let _ = self.close_open(id, "reduce-only: position closed", now_ms);
        }
    }

    fn remember_closed(&mut self, id: String) {
        self.reduce_only.remove(&id);
        self.orders.unindex(&id);
        self.closed.push_back(id);
        while self.closed.len() > MAX_CLOSED_ORDERS {
            if let Some(old) = self.closed.pop_front()
                && let Some(o) = self.orders.forget(&old)
            {
                self.by_client_id.remove(&o.client_order_id);
            }
        }
    }

    fn perp_book(&self, symbol: &str) -> Result<(&Book, &PerpState), VenueError> {
        let b = self.book(symbol)?;
        match (&b.perp, b.inst.kind) {
            (Some(p), InstrumentKind::Perpetual) => Ok((b, p)),
            _ => Err(VenueError::InvalidArgument(format!(
                "{symbol:?} is not a perpetual"
            ))),
        }
    }

    /// Settles every perp whose funding time has come (catching up missed
    /// ones), books the payments and moves each rate along its path.
    pub fn settle_funding(&mut self, now_ms: i64) -> Vec<FundingPayment> {
        let perps: Vec<String> = self
            .books
            .iter()
            .filter(|(_, b)| b.is_perp())
            .map(|(s, _)| s.clone())
            .collect();
        let mut out = Vec::new();
        for symbol in perps {
            for _ in 0..MAX_CATCH_UP_SETTLEMENTS {
                let due = self
                    .books
                    .get(&symbol)
                    .and_then(|b| b.perp.as_ref())
                    .map(|p| p.next_funding_ms)
                    .filter(|t| *t <= now_ms);
                let Some(at_ms) = due else { break };
                out.extend(self.settle_one(&symbol, at_ms));
                if let Some(p) = self.books.get_mut(&symbol).and_then(|b| b.perp.as_mut()) {
                    p.next_funding_ms += p.interval_ms();
                    p.step_rate();
                }
            }
            if let Some(p) = self.books.get_mut(&symbol).and_then(|b| b.perp.as_mut())
                && p.next_funding_ms <= now_ms
            {
                p.next_funding_ms =
                    crate::perp::next_funding_after(now_ms, p.cfg.funding_interval_hours);
            }
        }
        out
    }

    /// Settles `symbol`'s position now at the current rate, outside the
    /// schedule (operators and tests); the schedule and the rate stay.
    pub fn settle_funding_now(
        &mut self,
        symbol: &str,
        now_ms: i64,
    ) -> Result<Option<FundingPayment>, VenueError> {
        self.perp_book(symbol)?;
        Ok(self.settle_one(symbol, now_ms))
    }

    fn settle_one(&mut self, symbol: &str, at_ms: i64) -> Option<FundingPayment> {
        let (rate, mark, asset) = {
            let b = self.books.get(symbol)?;
            (b.perp.as_ref()?.rate, b.last, b.inst.quote.clone())
        };
        let pos = self.positions.get_mut(symbol)?;
        let side = pos.side()?;
        let size = pos.size.abs();
        let amount = FundingPayment::settle_amount(side, size, mark, rate).round_dp(FEE_DECIMALS);
        pos.realized += amount;
        *self.totals.entry(asset.clone()).or_default() += amount;
        self.funds_changes += 1;
        self.funding_seq += 1;
        let payment = FundingPayment {
            id: format!("F{:012}", self.funding_seq),
            symbol: symbol.to_string(),
            amount,
            asset,
            time_ms: at_ms,
            side,
            size,
            rate,
            mark_price: mark,
        };
        self.funding_payments.push_back(payment.clone());
        while self.funding_payments.len() > MAX_FUNDING_PAYMENTS {
            self.funding_payments.pop_front();
        }
        Some(payment)
    }

    /// Sets the rate of the current interval (operators and tests).
    pub fn set_funding_rate(
        &mut self,
        symbol: &str,
        rate: Decimal,
    ) -> Result<FundingRate, VenueError> {
        self.perp_book(symbol)?;
        if let Some(p) = self.books.get_mut(symbol).and_then(|b| b.perp.as_mut()) {
            p.rate = rate;
        }
        self.funding_rate(symbol)
    }

    /// The current funding of one perpetual.
    pub fn funding_rate(&self, symbol: &str) -> Result<FundingRate, VenueError> {
        let (b, p) = self.perp_book(symbol)?;
        let index = p
            .cfg
            .underlying
            .as_deref()
            .and_then(|u| self.books.get(u))
            .map_or(b.last, |u| u.last);
        let turnover = match p.cfg.turnover_24h_usd {
            Some(t) => t,
            None => {
                let day_ago = b.updated_ms - 1440 * MINUTE_MS;
                b.candles
                    .iter()
                    .filter(|c| c.open_time_ms >= day_ago)
                    .map(|c| c.volume * c.close)
                    .sum::<Decimal>()
                    .round_dp(2)
            }
        };
        Ok(FundingRate {
            symbol: symbol.to_string(),
            rate: p.rate,
            interval_hours: p.cfg.funding_interval_hours.max(1),
            next_funding_ms: p.next_funding_ms,
            mark: b.last,
            index,
            last: b.last,
            turnover_24h_usd: turnover,
            time_ms: b.updated_ms,
        })
    }

    /// The named perpetuals' funding, or every perpetual's when empty.
    pub fn funding_rates(&self, symbols: &[String]) -> Result<Vec<FundingRate>, VenueError> {
        if symbols.is_empty() {
            return self
                .books
                .iter()
                .filter(|(_, b)| b.is_perp())
                .map(|(s, _)| self.funding_rate(s))
                .collect();
        }
        symbols.iter().map(|s| self.funding_rate(s)).collect()
    }

    /// Open positions, with marks at the books' last prices.
    pub fn positions(&self) -> Vec<Position> {
        self.positions
            .iter()
            .filter_map(|(symbol, p)| {
                let b = self.books.get(symbol)?;
                let side = p.side()?;
                let mark = b.last;
                let size = p.size.abs();
                let notional = size * mark;
                let im_rate = b.im_rate();
                Some(Position {
                    symbol: symbol.clone(),
                    side,
                    size,
                    entry_price: p.entry.round_dp(b.inst.price_decimals + 4).normalize(),
                    mark_price: mark,
                    unrealized_pnl: p.unrealized(mark).round_dp(FEE_DECIMALS),
                    realized_pnl: p.realized.round_dp(FEE_DECIMALS),
                    notional,
                    initial_margin: (notional * im_rate).round_dp(FEE_DECIMALS),
                    maintenance_margin: (notional * b.mm_rate()).round_dp(FEE_DECIMALS),
                    leverage: if im_rate > Decimal::ZERO {
                        (Decimal::ONE / im_rate).round_dp(2)
                    } else {
                        Decimal::ONE
                    },
                    liquidation_price: None,
                    settle_asset: b.inst.quote.clone(),
                    updated_ms: p.updated_ms,
                })
            })
            .collect()
    }

    /// Value of one unit of `asset` in the margin asset: 1 for the margin
    /// asset itself, the last price of `<asset><margin asset>` spot, else
    /// nothing (not counted as collateral).
    fn value_in_margin(&self, asset: &str) -> Option<Decimal> {
        if asset == self.margin_asset {
            return Some(Decimal::ONE);
        }
        self.books
            .get(&format!("{asset}{}", self.margin_asset))
            .filter(|b| b.inst.kind == InstrumentKind::Spot)
            .map(|b| b.last)
    }

    /// Equity and margin of the whole account, in the margin asset. Coins
    /// count at their spot price; liquidation itself is not simulated.
    pub fn account_margin(&self, now_ms: i64) -> AccountMargin {
        let mut equity: Decimal = self
            .totals
            .iter()
            .filter_map(|(a, amount)| self.value_in_margin(a).map(|v| v * amount))
            .sum();
        let (mut im, mut mm, mut upnl) = (Decimal::ZERO, Decimal::ZERO, Decimal::ZERO);
        for p in self
            .positions()
            .iter()
            .filter(|p| p.settle_asset == self.margin_asset)
        {
            im += p.initial_margin;
            mm += p.maintenance_margin;
            upnl += p.unrealized_pnl;
        }
        equity += upnl;
        let ratio = |part: Decimal| {
            if equity > Decimal::ZERO {
                (part / equity).round_dp(6)
            } else if part > Decimal::ZERO {
                Decimal::ONE
            } else {
                Decimal::ZERO
            }
        };
        AccountMargin {
            asset: self.margin_asset.clone(),
            equity: equity.round_dp(FEE_DECIMALS),
            available: self
                .available_margin(&self.margin_asset)
                .round_dp(FEE_DECIMALS),
            initial_margin: im,
            maintenance_margin: mm,
            initial_margin_ratio: ratio(im),
            maintenance_margin_ratio: ratio(mm),
            unrealized_pnl: upnl,
            time_ms: now_ms,
        }
    }

    /// Funding payments matching `q`, oldest first.
    pub fn funding_payments(&self, q: &FundingPaymentQuery) -> Vec<FundingPayment> {
        let mut v: Vec<FundingPayment> = self
            .funding_payments
            .iter()
            .filter(|p| q.symbol.as_deref().is_none_or(|s| s == p.symbol))
            .filter(|p| p.time_ms >= q.since_ms)
            .filter(|p| q.until_ms.is_none_or(|u| p.time_ms < u))
            .cloned()
            .collect();
        if q.limit > 0 {
            v.truncate(q.limit as usize);
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Venue ids are the ones the `format!` of three collected groups
    /// gave before they were written into one buffer.
    #[test]
    fn venue_ids_are_the_three_groups_joined() {
        let mut ex = Exchange::new(&PaperConfig::default(), 0);
        for _ in 0..50 {
            let mut ids = ex.ids.clone();
            const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
            let mut part = |n: usize| -> String {
                (0..n)
                    .map(|_| char::from(ALPHABET[(ids.next_u64() % 32) as usize]))
                    .collect()
            };
            let want = format!("O{}-{}-{}", part(5), part(5), part(6));
            assert_eq!(ex.new_order_id(), want);
        }
    }
}
