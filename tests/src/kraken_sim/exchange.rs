//! The simulated exchange behind the wire: Kraken's endpoints implemented on
//! the paper matching core ([`herd_paper::Exchange`]), with Kraken's pair
//! and asset names, order records, trades, limits and dead man's switch.
//!
//! Every handler takes the decoded form and the time and returns the JSON
//! envelope Kraken would send. Nothing here does I/O; the server wraps it.

use std::collections::{BTreeMap, HashMap, HashSet};

use herd_paper::{Exchange, PaperConfig, PaperInstrument};
use herd_venue::{
    Instrument, InstrumentKind, NewOrder, OrderRef, OrderState, OrderStatus, OrderType, Side,
    VenueError,
};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::auth::KeyAuth;
use super::limits::{Limits, LockoutPolicy, Tier, cancel_penalty, rest_cost};
use super::wire::{Form, err, fixed, invalid, ok, parse_rfc3339, rfc1123, rfc3339, unix_secs};

mod batch;
mod more;
pub use more::{KeyInfo, PERMISSION_DENIED, WITHDRAW_FUNDS, permission_of};

pub const UNKNOWN_PAIR: &str = "EQuery:Unknown asset pair";
pub const UNKNOWN_ORDER: &str = "EOrder:Unknown order";
pub const UNKNOWN_METHOD: &str = "EGeneral:Unknown method";
/// A page of ClosedOrders or TradesHistory.
const PAGE: usize = 50;
/// OHLC returns at most this many rows.
const OHLC_ROWS: usize = 720;
/// QueryOrders takes at most this many txids.
const QUERY_MAX: usize = 50;
/// How far ahead AddOrder's `deadline` may be.
const DEADLINE_MAX_MS: i64 = 60_000;

/// One tradable pair and its Kraken names.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PairSpec {
    /// The AssetPairs key (`XXBTZUSD`).
    pub key: String,
    pub altname: String,
    pub wsname: String,
    /// Kraken's asset codes (`XXBT`, `ZUSD`).
    pub base_code: String,
    pub quote_code: String,
    pub cost_decimals: u32,
    /// The instrument of the matching core.
    pub instrument: Instrument,
    pub start_price: Decimal,
}

impl PairSpec {
    /// DOGE/USD: key and altname `XDGUSD`, as on Kraken.
    pub fn doge_usd() -> PairSpec {
        let p = PaperInstrument::doge_usd();
        PairSpec {
            key: "XDGUSD".into(),
            altname: "XDGUSD".into(),
            wsname: "XDG/USD".into(),
            base_code: "XXDG".into(),
            quote_code: "ZUSD".into(),
            cost_decimals: 5,
            instrument: p.instrument,
            start_price: p.start_price,
        }
    }

    /// BTC/USD: key `XXBTZUSD`, altname `XBTUSD`.
    pub fn btc_usd() -> PairSpec {
        PairSpec {
            key: "XXBTZUSD".into(),
            altname: "XBTUSD".into(),
            wsname: "XBT/USD".into(),
            base_code: "XXBT".into(),
            quote_code: "ZUSD".into(),
            cost_decimals: 5,
            instrument: Instrument {
                symbol: "BTCUSD".into(),
                base: "BTC".into(),
                quote: "USD".into(),
                kind: InstrumentKind::Spot,
                tick_size: Decimal::new(1, 1),
                price_decimals: 1,
                lot_decimals: 8,
                min_volume: Decimal::new(1, 4),
                min_cost: Decimal::new(5, 1),
                maker_fee: Decimal::new(25, 4),
                taker_fee: Decimal::new(40, 4),
                max_open_orders: 60,
            },
            start_price: Decimal::from(60_000),
        }
    }

    /// A made-up pair `P<n>/USD` priced like DOGE (benchmarks that need more
    /// open orders than one pair allows).
    pub fn synthetic(n: u32) -> PairSpec {
        let mut p = PairSpec::doge_usd();
        let base = format!("P{n}");
        p.key = format!("{base}USD");
        p.altname = p.key.clone();
        p.wsname = format!("{base}/USD");
        p.base_code = base.clone();
        p.instrument.symbol = p.key.clone();
        p.instrument.base = base;
        p
    }
}

/// Everything the simulator is started with.
#[derive(Clone)]
pub struct SimConfig {
    pub api_key: String,
    /// Base64, as Kraken shows it.
    pub secret_b64: String,
    pub tier: Tier,
    /// Refuse calls over the rate limits (off only for raw-speed benchmarks).
    pub enforce_limits: bool,
    pub lockout: LockoutPolicy,
    pub pairs: Vec<PairSpec>,
    /// Starting balances by common asset name (`USD`, `DOGE`).
    pub balances: BTreeMap<String, Decimal>,
    /// Step the price paths this often; none = prices move only when told.
    pub step_ms: Option<u64>,
    /// What the key may do and what GetApiKeyInfo says of it.
    pub key_info: KeyInfo,
    /// The simulator's clock minus the machine's, ms (`Time`, order times,
    /// nonce-window and expiry checks all use the skewed clock).
    pub clock_skew_ms: i64,
}

impl std::fmt::Debug for SimConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimConfig")
            .field("api_key", &"REDACTED")
            .field("secret_b64", &"REDACTED")
            .field("tier", &self.tier)
            .field("pairs", &self.pairs.len())
            .finish_non_exhaustive()
    }
}

impl SimConfig {
    /// DOGE/USD and BTC/USD with deep balances.
    pub fn new(api_key: &str, secret_b64: &str, tier: Tier) -> SimConfig {
        SimConfig {
            api_key: api_key.into(),
            secret_b64: secret_b64.into(),
            tier,
            enforce_limits: true,
            lockout: LockoutPolicy::default(),
            pairs: vec![PairSpec::doge_usd(), PairSpec::btc_usd()],
            balances: BTreeMap::from([
                ("USD".to_string(), Decimal::from(10_000_000)),
                ("DOGE".to_string(), Decimal::from(100_000_000)),
                ("BTC".to_string(), Decimal::from(100)),
            ]),
            step_ms: None,
            key_info: KeyInfo::default(),
            clock_skew_ms: 0,
        }
    }

    /// Adds `n` synthetic pairs and funds their base assets.
    pub fn with_synthetic_pairs(mut self, n: u32) -> SimConfig {
        for i in 1..=n {
            let p = PairSpec::synthetic(i);
            self.balances
                .insert(p.instrument.base.clone(), Decimal::from(100_000_000));
            self.pairs.push(p);
        }
        self
    }
}

/// The wall time (Unix ms) and the monotonic time (s) of one request.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    pub ms: i64,
    pub s: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct OrderMeta {
    /// The id the matching core knows the order by.
    internal_id: String,
    pair: usize,
    cl_ord_id: Option<String>,
    userref: Option<i32>,
    oflags: String,
    trades: Vec<String>,
    /// Executed volume and fee already turned into trades.
    seen_exec: Decimal,
    seen_fee: Decimal,
    seen_value: Decimal,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Trade {
    id: String,
    txid: String,
    pair: usize,
    time_ms: i64,
    side: Side,
    ordertype: OrderType,
    price: Decimal,
    vol: Decimal,
    /// Exactly what the trade moved in quote (the ledger's amount).
    cost: Decimal,
    fee: Decimal,
    maker: bool,
    /// Kraken's integer `trade_id` (the trade's sequence number on the pair).
    seq: u64,
}

/// What the simulator counts, for tests and benchmarks.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Stats {
    pub requests: BTreeMap<String, u64>,
    pub errors: BTreeMap<String, u64>,
    /// `EAPI:Rate limit exceeded` + `EOrder:Rate limit exceeded` answers.
    pub rate_limit_errors: u64,
    pub lockout_errors: u64,
    pub orders_placed: u64,
    pub dms_refreshes: u64,
    pub dms_triggers: u64,
    pub faults_applied: u64,
}

/// The simulated exchange.
pub struct Sim {
    pub cfg: SimConfig,
    ex: Exchange,
    auth: KeyAuth,
    pub limits: Limits,
    pub stats: Stats,
    meta: HashMap<String, OrderMeta>,
    /// Open txids, in placement order.
    live: Vec<String>,
    /// Closed txids, in closing order.
    closed: Vec<String>,
    trades: Vec<Trade>,
    next_internal: u64,
    next_trade: u64,
    next_amend: u64,
    dms_deadline_ms: Option<i64>,
    /// online | maintenance | cancel_only | post_only
    pub system_status: String,
}

/// Everything a client relies on, as the state file holds it (see
/// [`Sim::state_json`]): the matching core (balances, orders), the Kraken
/// order records (txids, cl_ord_id, userref, trades per order), the trades,
/// the id counters, the dead man's switch, the system status, the last
/// nonce and the counters. Not kept: rate-limit levels and lockouts (they
/// start empty, as after a venue's own restart), injected faults.
#[derive(Serialize)]
struct DurableRef<'a> {
    version: u32,
    ex: &'a Exchange,
    meta: &'a HashMap<String, OrderMeta>,
    live: &'a Vec<String>,
    closed: &'a Vec<String>,
    trades: &'a Vec<Trade>,
    next_internal: u64,
    next_trade: u64,
    next_amend: u64,
    dms_deadline_ms: Option<i64>,
    system_status: &'a str,
    last_nonce: Option<u64>,
    stats: &'a Stats,
}

#[derive(Deserialize)]
struct Durable {
    version: u32,
    ex: Exchange,
    meta: HashMap<String, OrderMeta>,
    live: Vec<String>,
    closed: Vec<String>,
    trades: Vec<Trade>,
    next_internal: u64,
    next_trade: u64,
    next_amend: u64,
    dms_deadline_ms: Option<i64>,
    system_status: String,
    last_nonce: Option<u64>,
    stats: Stats,
}

/// The state file's format version.
const STATE_VERSION: u32 = 1;

impl Sim {
    /// The durable state as JSON (what `--state FILE` holds).
    pub fn state_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(&DurableRef {
            version: STATE_VERSION,
            ex: &self.ex,
            meta: &self.meta,
            live: &self.live,
            closed: &self.closed,
            trades: &self.trades,
            next_internal: self.next_internal,
            next_trade: self.next_trade,
            next_amend: self.next_amend,
            dms_deadline_ms: self.dms_deadline_ms,
            system_status: &self.system_status,
            last_nonce: self.auth.last_nonce(),
            stats: &self.stats,
        })
    }

    /// Replaces this state with one written by [`Sim::state_json`]; the
    /// error says what is wrong with it. The configuration (key, tier,
    /// pairs) stays this process's.
    pub fn restore_state(&mut self, json: &[u8]) -> Result<(), String> {
        let d: Durable = serde_json::from_slice(json).map_err(|e| e.to_string())?;
        if d.version != STATE_VERSION {
            return Err(format!(
                "version {} (this simulator reads version {STATE_VERSION})",
                d.version
            ));
        }
        if let Some(missing) = d
            .live
            .iter()
            .chain(&d.closed)
            .find(|t| !d.meta.contains_key(*t))
        {
            return Err(format!("order {missing} is listed but has no record"));
        }
        self.ex = d.ex;
        self.meta = d.meta;
        self.live = d.live;
        self.closed = d.closed;
        self.trades = d.trades;
        self.next_internal = d.next_internal;
        self.next_trade = d.next_trade;
        self.next_amend = d.next_amend;
        self.dms_deadline_ms = d.dms_deadline_ms;
        self.system_status = d.system_status;
        self.auth.set_last_nonce(d.last_nonce);
        self.stats = d.stats;
        Ok(())
    }
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim")
            .field("cfg", &self.cfg)
            .field("live", &self.live.len())
            .finish_non_exhaustive()
    }
}

fn kraken_side(s: Side) -> &'static str {
    s.as_str()
}

fn ordertype_str(t: OrderType) -> &'static str {
    match t {
        OrderType::Limit => "limit",
        OrderType::Market => "market",
    }
}

/// Kraken accepts a cl_ord_id as a UUID (with or without dashes) or as free
/// printable ASCII text of at most 18 characters.
pub fn valid_cl_ord_id(id: &str) -> bool {
    let hex = |s: &str| s.bytes().all(|b| b.is_ascii_hexdigit());
    let dashed = id.len() == 36 && {
        let parts: Vec<&str> = id.split('-').collect();
        parts.iter().map(|p| p.len()).collect::<Vec<_>>() == [8, 4, 4, 4, 12]
            && parts.iter().all(|p| hex(p))
    };
    let plain = id.len() == 32 && hex(id);
    let text = !id.is_empty() && id.len() <= 18 && id.bytes().all(|b| b.is_ascii_graphic());
    dashed || plain || text
}

fn looks_like_txid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 3
        && parts.iter().map(|p| p.len()).collect::<Vec<_>>() == [6, 5, 6]
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

impl Sim {
    pub fn new(cfg: SimConfig, now: Now) -> Result<Sim, String> {
        let table = cfg.tier.table();
        let paper = PaperConfig {
            instruments: cfg
                .pairs
                .iter()
                .map(|p| PaperInstrument {
                    instrument: Instrument {
                        max_open_orders: u32::try_from(table.open_orders_per_pair)
                            .unwrap_or(u32::MAX),
                        ..p.instrument.clone()
                    },
                    start_price: p.start_price,
                    ..PaperInstrument::doge_usd()
                })
                .collect(),
            balances: cfg.balances.clone(),
            history_minutes: 60,
            ..PaperConfig::default()
        };
        let auth = KeyAuth::new(&cfg.api_key, &cfg.secret_b64)?;
        let mut ex = Exchange::new(&paper, now.ms);
        // The generated history wanders; start each market at its start price.
        for p in &cfg.pairs {
            ex.set_price(&p.instrument.symbol, p.start_price, now.ms)
                .map_err(|e| e.to_string())?;
        }
        Ok(Sim {
            ex,
            auth,
            limits: Limits::new(cfg.tier, cfg.enforce_limits, cfg.lockout),
            stats: Stats::default(),
            meta: HashMap::new(),
            live: Vec::new(),
            closed: Vec::new(),
            trades: Vec::new(),
            next_internal: 0,
            next_trade: 0,
            next_amend: 0,
            dms_deadline_ms: None,
            system_status: "online".into(),
            cfg,
        })
    }

    fn pair_index(&self, name: &str) -> Option<usize> {
        let n = name.to_ascii_uppercase();
        self.cfg.pairs.iter().position(|p| {
            p.key == n
                || p.altname == n
                || p.wsname == name
                || p.instrument.symbol == n
                || p.wsname.replace('/', "") == n
        })
    }

    fn pair(&self, i: usize) -> Result<&PairSpec, String> {
        self.cfg
            .pairs
            .get(i)
            .ok_or_else(|| "EGeneral:Internal error".to_string())
    }

    fn asset_code(&self, asset: &str) -> String {
        for p in &self.cfg.pairs {
            if p.instrument.base == asset {
                return p.base_code.clone();
            }
            if p.instrument.quote == asset {
                return p.quote_code.clone();
            }
        }
        asset.to_string()
    }

    fn asset_decimals(code: &str) -> u32 {
        if code.starts_with('Z') { 4 } else { 10 }
    }

    /// Counts an answer's errors.
    pub fn count_answer(&mut self, answer: &Value) {
        if let Some(errors) = answer.get("error").and_then(Value::as_array) {
            for e in errors.iter().filter_map(Value::as_str) {
                *self.stats.errors.entry(e.to_string()).or_default() += 1;
                if e.ends_with("Rate limit exceeded") {
                    self.stats.rate_limit_errors += 1;
                }
                if e == super::limits::TEMPORARY_LOCKOUT {
                    self.stats.lockout_errors += 1;
                }
            }
        }
    }

    /// Background work: the dead man's switch and the price paths. True
    /// when it changed the state (a trigger or a step).
    pub fn tick(&mut self, now: Now, step: bool) -> bool {
        let mut changed = false;
        if let Some(deadline) = self.dms_deadline_ms
            && now.ms >= deadline
        {
            self.dms_deadline_ms = None;
            self.stats.dms_triggers += 1;
            self.cancel_all(now);
            changed = true;
        }
        if step {
            self.ex.step(now.ms);
            self.sync(now);
            changed = true;
        }
        changed
    }

    /// Moves a pair's price (admin).
    pub fn set_price(&mut self, pair: &str, price: Decimal, now: Now) -> Result<Value, String> {
        let i = self.pair_index(pair).ok_or(UNKNOWN_PAIR)?;
        let symbol = self.pair(i)?.instrument.symbol.clone();
        self.ex
            .set_price(&symbol, price, now.ms)
            .map_err(|e| e.to_string())?;
        self.sync(now);
        let t = self.ex.ticker(&symbol).map_err(|e| e.to_string())?;
        Ok(
            json!({"pair": self.pair(i)?.altname, "last": t.last.to_string(),
                  "bid": t.bid.to_string(), "ask": t.ask.to_string()}),
        )
    }

    /// Every order the sim knows (admin): txid, cl_ord_id, userref, pair, status,
    /// volumes and limit price.
    pub fn orders_summary(&self) -> Value {
        let all: Vec<Value> = self
            .live
            .iter()
            .chain(self.closed.iter())
            .filter_map(|txid| {
                let m = self.meta.get(txid)?;
                let s = self.state(txid)?;
                Some(json!({
                    "txid": txid,
                    "cl_ord_id": m.cl_ord_id,
                    "userref": m.userref,
                    "pair": self.cfg.pairs.get(m.pair).map(|p| p.altname.clone()),
                    "status": Self::status_str(s.status),
                    "vol": s.volume.to_string(),
                    "vol_exec": s.volume_executed.to_string(),
                    "side": kraken_side(s.side),
                    "ordertype": ordertype_str(s.order_type),
                    "price": s.price.map(|p| p.normalize().to_string()),
                    "fee": s.fee.normalize().to_string(),
                    "oflags": m.oflags,
                    "opened_ms": s.opened_at_ms,
                }))
            })
            .collect();
        Value::Array(all)
    }

    pub fn dms_deadline_ms(&self) -> Option<i64> {
        self.dms_deadline_ms
    }

    pub fn open_count(&self) -> usize {
        self.live.len()
    }

    fn state(&self, txid: &str) -> Option<OrderState> {
        let m = self.meta.get(txid)?;
        self.ex
            .query(&[OrderRef {
                client_order_id: m.internal_id.clone(),
                venue_order_id: Some(txid.to_string()),
            }])
            .into_iter()
            .next()
    }

    /// Turns new executions into trades and moves finished orders to the
    /// closed list.
    fn sync(&mut self, now: Now) {
        let refs: Vec<OrderRef> = self
            .live
            .iter()
            .filter_map(|t| {
                self.meta.get(t).map(|m| OrderRef {
                    client_order_id: m.internal_id.clone(),
                    venue_order_id: Some(t.clone()),
                })
            })
            .collect();
        let states = self.ex.query(&refs);
        let mut finished: HashSet<String> = HashSet::new();
        for s in states {
            let Some(m) = self.meta.get_mut(&s.venue_order_id) else {
                continue;
            };
            let delta = s.volume_executed - m.seen_exec;
            if delta > Decimal::ZERO {
                let value = s.average_price.unwrap_or_default() * s.volume_executed;
                let price = ((value - m.seen_value) / delta).round_dp(12).normalize();
                self.next_trade += 1;
                let n = self.next_trade;
                let id = format!("T{:05}-SIMTR-{:06}", n / 1_000_000 % 100_000, n % 1_000_000);
                let maker = s.opened_at_ms < now.ms || s.post_only;
                self.trades.push(Trade {
                    id: id.clone(),
                    txid: s.venue_order_id.clone(),
                    pair: m.pair,
                    time_ms: now.ms,
                    side: s.side,
                    ordertype: s.order_type,
                    price,
                    vol: delta,
                    cost: value - m.seen_value,
                    fee: s.fee - m.seen_fee,
                    maker,
                    seq: n,
                });
                m.trades.push(id);
                m.seen_exec = s.volume_executed;
                m.seen_fee = s.fee;
                m.seen_value = value;
            }
            if s.status.is_final() {
                finished.insert(s.venue_order_id.clone());
            }
        }
        if !finished.is_empty() {
            self.live.retain(|t| !finished.contains(t));
            self.closed.extend(finished);
        }
    }

    fn status_str(s: OrderStatus) -> &'static str {
        match s {
            OrderStatus::Pending => "pending",
            OrderStatus::Open => "open",
            OrderStatus::Filled => "closed",
            OrderStatus::Canceled | OrderStatus::Rejected => "canceled",
            OrderStatus::Expired => "expired",
        }
    }

    fn descr_order(
        &self,
        p: &PairSpec,
        side: Side,
        t: OrderType,
        vol: Decimal,
        price: Option<Decimal>,
    ) -> String {
        let lot = p.instrument.lot_decimals;
        let dp = p.instrument.price_decimals;
        match (t, price) {
            (OrderType::Limit, Some(px)) => format!(
                "{} {} {} @ limit {}",
                kraken_side(side),
                fixed(vol, lot),
                p.altname,
                fixed(px, dp)
            ),
            _ => format!(
                "{} {} {} @ market",
                kraken_side(side),
                fixed(vol, lot),
                p.altname
            ),
        }
    }

    fn order_info(&self, txid: &str, with_trades: bool) -> Option<Value> {
        let m = self.meta.get(txid)?;
        let s = self.state(txid)?;
        let p = self.cfg.pairs.get(m.pair)?;
        let dp = p.instrument.price_decimals;
        let lot = p.instrument.lot_decimals;
        let avg = s.average_price.unwrap_or_default();
        let cost = avg * s.volume_executed;
        let mut o = Map::new();
        o.insert("refid".into(), Value::Null);
        o.insert("userref".into(), json!(m.userref.unwrap_or(0)));
        if let Some(c) = &m.cl_ord_id {
            o.insert("cl_ord_id".into(), json!(c));
        }
        o.insert("status".into(), json!(Self::status_str(s.status)));
        o.insert("opentm".into(), unix_secs(s.opened_at_ms));
        o.insert("starttm".into(), json!(0));
        o.insert("expiretm".into(), json!(0));
        o.insert(
            "descr".into(),
            json!({
                "pair": p.altname,
                "type": kraken_side(s.side),
                "ordertype": ordertype_str(s.order_type),
                "price": fixed(s.price.unwrap_or_default(), dp),
                "price2": "0",
                "leverage": "none",
                "order": self.descr_order(p, s.side, s.order_type, s.volume, s.price),
                "close": "",
            }),
        );
        o.insert("vol".into(), json!(fixed(s.volume, lot)));
        o.insert("vol_exec".into(), json!(fixed(s.volume_executed, lot)));
        o.insert("cost".into(), json!(fixed(cost, p.cost_decimals)));
        o.insert("fee".into(), json!(fixed(s.fee, p.cost_decimals)));
        o.insert("price".into(), json!(fixed(avg, dp)));
        o.insert("stopprice".into(), json!(fixed(Decimal::ZERO, dp)));
        o.insert("limitprice".into(), json!(fixed(Decimal::ZERO, dp)));
        o.insert("misc".into(), json!(""));
        o.insert("oflags".into(), json!(m.oflags));
        if s.status.is_final() {
            o.insert(
                "closetm".into(),
                unix_secs(s.closed_at_ms.unwrap_or(s.opened_at_ms)),
            );
            o.insert(
                "reason".into(),
                s.reason.clone().map_or(Value::Null, Value::String),
            );
        }
        if with_trades && !m.trades.is_empty() {
            o.insert("trades".into(), json!(m.trades));
        }
        Some(Value::Object(o))
    }

    // ---- public ----

    /// A public method.
    pub fn public(&mut self, method: &str, f: &Form, now: Now) -> Value {
        *self.stats.requests.entry(method.to_string()).or_default() += 1;
        let out = match method {
            "Time" => Ok(
                json!({"unixtime": now.ms.div_euclid(1000), "rfc1123": rfc1123(now.ms.div_euclid(1000))}),
            ),
            "SystemStatus" => Ok(
                json!({"status": self.system_status, "timestamp": rfc3339(now.ms.div_euclid(1000))}),
            ),
            "AssetPairs" => self.asset_pairs(f),
            "Ticker" => self.ticker(f),
            "OHLC" => self.ohlc(f),
            "Assets" => self.assets(f),
            "Depth" => self.depth(f, now),
            "Trades" => self.public_trades(f),
            "Spread" => self.spread(f, now),
            _ => Err(UNKNOWN_METHOD.to_string()),
        };
        let v = out.map_or_else(|e| err(&e), ok);
        self.count_answer(&v);
        v
    }

    fn selected_pairs(&self, f: &Form) -> Result<Vec<usize>, String> {
        match f.get("pair") {
            None => Ok((0..self.cfg.pairs.len()).collect()),
            Some(list) => list
                .split(',')
                .map(|n| {
                    self.pair_index(n.trim())
                        .ok_or_else(|| UNKNOWN_PAIR.to_string())
                })
                .collect(),
        }
    }

    fn asset_pairs(&self, f: &Form) -> Result<Value, String> {
        let mut out = Map::new();
        for i in self.selected_pairs(f)? {
            let p = self.pair(i)?;
            let inst = &p.instrument;
            let pct = |d: Decimal| -> Value {
                serde_json::from_str(&(d * Decimal::ONE_HUNDRED).normalize().to_string())
                    .unwrap_or(Value::Null)
            };
            out.insert(
                p.key.clone(),
                json!({
                    "altname": p.altname,
                    "wsname": p.wsname,
                    "aclass_base": "currency",
                    "base": p.base_code,
                    "aclass_quote": "currency",
                    "quote": p.quote_code,
                    "lot": "unit",
                    "cost_decimals": p.cost_decimals,
                    "pair_decimals": inst.price_decimals,
                    "lot_decimals": inst.lot_decimals,
                    "lot_multiplier": 1,
                    "leverage_buy": [],
                    "leverage_sell": [],
                    "fees": [[0, pct(inst.taker_fee)]],
                    "fees_maker": [[0, pct(inst.maker_fee)]],
                    "fee_volume_currency": "ZUSD",
                    "margin_call": 80,
                    "margin_stop": 40,
                    "ordermin": inst.min_volume.normalize().to_string(),
                    "costmin": inst.min_cost.normalize().to_string(),
                    "tick_size": inst.tick_size.normalize().to_string(),
                    "status": "online",
                }),
            );
        }
        Ok(Value::Object(out))
    }

    fn ticker(&self, f: &Form) -> Result<Value, String> {
        let mut out = Map::new();
        for i in self.selected_pairs(f)? {
            let p = self.pair(i)?;
            let t = self
                .ex
                .ticker(&p.instrument.symbol)
                .map_err(|e| e.to_string())?;
            let day = self
                .ex
                .candles(&p.instrument.symbol, 1440, 0)
                .map_err(|e| e.to_string())?;
            let today = day.last();
            let dp = p.instrument.price_decimals;
            let lot = p.instrument.lot_decimals;
            let px = |d: Decimal| fixed(d, dp);
            let open = today.map_or(t.last, |c| c.open);
            let low = today.map_or(t.last, |c| c.low);
            let high = today.map_or(t.last, |c| c.high);
            let vol_today = today.map_or(Decimal::ZERO, |c| c.volume);
            out.insert(
                p.key.clone(),
                json!({
                    "a": [px(t.ask), "1", fixed(Decimal::ONE, 3)],
                    "b": [px(t.bid), "1", fixed(Decimal::ONE, 3)],
                    "c": [px(t.last), fixed(Decimal::ZERO, lot)],
                    "v": [fixed(vol_today, lot), fixed(t.volume_24h, lot)],
                    "p": [px(t.last), px(t.last)],
                    "t": [0, 0],
                    "l": [px(low), px(low)],
                    "h": [px(high), px(high)],
                    "o": px(open),
                }),
            );
        }
        Ok(Value::Object(out))
    }

    fn ohlc(&self, f: &Form) -> Result<Value, String> {
        let name = f.get("pair").ok_or_else(|| invalid("pair"))?;
        let i = self.pair_index(name).ok_or(UNKNOWN_PAIR)?;
        let interval = f.int("interval")?.unwrap_or(1);
        if ![1, 5, 15, 30, 60, 240, 1440, 10080, 21600].contains(&interval) {
            return Err(invalid("interval"));
        }
        let since_s = f.int("since")?.unwrap_or(0);
        let p = self.pair(i)?;
        let candles = self
            .ex
            .candles(
                &p.instrument.symbol,
                u32::try_from(interval).unwrap_or(1),
                0,
            )
            .map_err(|e| e.to_string())?;
        let dp = p.instrument.price_decimals;
        let lot = p.instrument.lot_decimals;
        let rows: Vec<Value> = candles
            .iter()
            .filter(|c| c.open_time_ms.div_euclid(1000) > since_s)
            .map(|c| {
                json!([
                    c.open_time_ms.div_euclid(1000),
                    fixed(c.open, dp),
                    fixed(c.high, dp),
                    fixed(c.low, dp),
                    fixed(c.close, dp),
                    fixed(c.close, dp),
                    fixed(c.volume, lot),
                    i64::from(c.volume > Decimal::ZERO)
                ])
            })
            .collect();
        let skip = rows.len().saturating_sub(OHLC_ROWS);
        let rows: Vec<Value> = rows.into_iter().skip(skip).collect();
        let last = rows
            .last()
            .and_then(|r| r.get(0))
            .and_then(Value::as_i64)
            .unwrap_or(since_s);
        let mut out = Map::new();
        out.insert(p.key.clone(), Value::Array(rows));
        out.insert("last".into(), json!(last));
        Ok(Value::Object(out))
    }

    // ---- private ----

    /// A private method: authentication, lockout, REST counter, then the call.
    pub fn private(
        &mut self,
        method: &str,
        path: &str,
        key: Option<&str>,
        sign: Option<&str>,
        body: &[u8],
        now: Now,
    ) -> Value {
        *self.stats.requests.entry(method.to_string()).or_default() += 1;
        // Kraken's batch calls take JSON bodies; every other call a form.
        let out = match batch::json_body(body) {
            None => {
                let f = Form::parse(body);
                self.private_inner(method, path, key, sign, body, &f, None, now)
            }
            Some(Ok((json, f))) => {
                self.private_inner(method, path, key, sign, body, &f, Some(&json), now)
            }
            Some(Err(e)) => Err(e),
        };
        let v = out.map_or_else(|e| err(&e), ok);
        self.count_answer(&v);
        v
    }

    #[allow(clippy::too_many_arguments)]
    fn private_inner(
        &mut self,
        method: &str,
        path: &str,
        key: Option<&str>,
        sign: Option<&str>,
        body: &[u8],
        f: &Form,
        json: Option<&Value>,
        now: Now,
    ) -> Result<Value, String> {
        self.auth
            .verify(path, key, sign, f.get("nonce"), body)
            .map_err(str::to_string)?;
        self.limits.check_lockout(now.ms).map_err(str::to_string)?;
        if self.system_status == "maintenance" {
            return Err("EService:Unavailable".into());
        }
        let known = [
            "Balance",
            "BalanceEx",
            "OpenOrders",
            "ClosedOrders",
            "QueryOrders",
            "AddOrder",
            "CancelOrder",
            "CancelAll",
            "CancelAllOrdersAfter",
            "TradesHistory",
            "TradeBalance",
            "QueryTrades",
            "OpenPositions",
            "GetApiKeyInfo",
            "AddOrderBatch",
            "CancelOrderBatch",
            "AmendOrder",
            "EditOrder",
            "Ledgers",
            "QueryLedgers",
        ];
        if !known.contains(&method) {
            return Err(UNKNOWN_METHOD.into());
        }
        self.check_permission(method, now)?;
        self.limits
            .charge_rest(now.s, now.ms, rest_cost(method))
            .map_err(str::to_string)?;
        match method {
            "Balance" => Ok(self.balance(false)),
            "BalanceEx" => Ok(self.balance(true)),
            "OpenOrders" => self.open_orders(f),
            "ClosedOrders" => self.closed_orders(f),
            "QueryOrders" => self.query_orders(f),
            "AddOrder" => self.add_order(f, now),
            "CancelOrder" => self.cancel_order(f, now),
            "CancelAll" => Ok(json!({"count": self.cancel_all(now)})),
            "CancelAllOrdersAfter" => self.cancel_all_orders_after(f, now),
            "TradesHistory" => self.trades_history(f),
            "TradeBalance" => self.trade_balance(f),
            "QueryTrades" => self.query_trades(f),
            "OpenPositions" => Ok(json!({})),
            "GetApiKeyInfo" => Ok(self.api_key_info()),
            "AddOrderBatch" => self.add_order_batch(json, f, now),
            "CancelOrderBatch" => self.cancel_order_batch(json, now),
            "AmendOrder" => self.amend_order(f, now),
            "EditOrder" => self.edit_order(f, now),
            "Ledgers" => self.ledgers(f),
            "QueryLedgers" => self.query_ledgers(f),
            _ => Err(UNKNOWN_METHOD.into()),
        }
    }

    fn balance(&self, ex: bool) -> Value {
        let mut out = Map::new();
        for b in self.ex.balances() {
            let code = self.asset_code(&b.asset);
            let dp = Self::asset_decimals(&code);
            let v = if ex {
                json!({
                    "balance": fixed(b.total, dp),
                    "hold_trade": fixed(b.total - b.free, dp),
                })
            } else {
                json!(fixed(b.total, dp))
            };
            out.insert(code, v);
        }
        Value::Object(out)
    }

    fn id_filters(f: &Form) -> Result<(Option<i64>, Option<String>), String> {
        Ok((f.int("userref")?, f.get("cl_ord_id").map(str::to_string)))
    }

    fn matches(&self, txid: &str, userref: Option<i64>, cl: Option<&str>) -> bool {
        let Some(m) = self.meta.get(txid) else {
            return false;
        };
        userref.is_none_or(|u| m.userref.map(i64::from) == Some(u))
            && cl.is_none_or(|c| m.cl_ord_id.as_deref() == Some(c))
    }

    fn open_orders(&self, f: &Form) -> Result<Value, String> {
        let (userref, cl) = Self::id_filters(f)?;
        let trades = f.flag("trades");
        let mut open = Map::new();
        for txid in &self.live {
            if self.matches(txid, userref, cl.as_deref())
                && let Some(info) = self.order_info(txid, trades)
            {
                open.insert(txid.clone(), info);
            }
        }
        Ok(json!({ "open": open }))
    }

    /// Unix seconds of a `start`/`end` bound given as seconds or as a txid.
    fn bound_ms(&self, f: &Form, key: &str) -> Result<Option<i64>, String> {
        match f.get(key) {
            None => Ok(None),
            Some(v) if looks_like_txid(v) => Ok(self.state(v).map(|s| s.opened_at_ms)),
            Some(v) => v
                .parse::<Decimal>()
                .map(|d| i64::try_from((d * Decimal::ONE_THOUSAND).trunc()).ok())
                .map_err(|_| invalid(key)),
        }
    }

    fn closed_orders(&self, f: &Form) -> Result<Value, String> {
        let (userref, cl) = Self::id_filters(f)?;
        let trades = f.flag("trades");
        let start = self.bound_ms(f, "start")?;
        let end = self.bound_ms(f, "end")?;
        let ofs = usize::try_from(f.int("ofs")?.unwrap_or(0).max(0)).unwrap_or(0);
        let which = f.get("closetime").unwrap_or("both");
        let in_range = |t: i64| start.is_none_or(|s| t > s) && end.is_none_or(|e| t <= e);
        let mut hits: Vec<(i64, &String)> = Vec::new();
        for txid in self.closed.iter().rev() {
            if !self.matches(txid, userref, cl.as_deref()) {
                continue;
            }
            let Some(s) = self.state(txid) else { continue };
            let close = s.closed_at_ms.unwrap_or(s.opened_at_ms);
            let ok = match which {
                "open" => in_range(s.opened_at_ms),
                "close" => in_range(close),
                _ => in_range(s.opened_at_ms) || in_range(close),
            };
            if ok {
                hits.push((close, txid));
            }
        }
        hits.sort_by_key(|h| std::cmp::Reverse(h.0));
        let count = hits.len();
        let mut closed = Map::new();
        for (_, txid) in hits.into_iter().skip(ofs).take(PAGE) {
            if let Some(info) = self.order_info(txid, trades) {
                closed.insert(txid.clone(), info);
            }
        }
        Ok(json!({ "closed": closed, "count": count }))
    }

    fn query_orders(&self, f: &Form) -> Result<Value, String> {
        let list = f.get("txid").ok_or_else(|| invalid("txid"))?;
        let ids: Vec<&str> = list.split(',').map(str::trim).collect();
        if ids.len() > QUERY_MAX || ids.iter().any(|t| !looks_like_txid(t)) {
            return Err(invalid("txid"));
        }
        let userref = f.int("userref")?;
        let trades = f.flag("trades");
        let mut out = Map::new();
        for t in ids {
            if self.matches(t, userref, None)
                && let Some(info) = self.order_info(t, trades)
            {
                out.insert(t.to_string(), info);
            }
        }
        Ok(Value::Object(out))
    }

    fn add_order(&mut self, f: &Form, now: Now) -> Result<Value, String> {
        let pair_name = f.get("pair").ok_or_else(|| invalid("pair"))?;
        let pi = self.pair_index(pair_name).ok_or(UNKNOWN_PAIR)?;
        let p = self.pair(pi)?.clone();
        let inst = &p.instrument;
        let side = match f.get("type") {
            Some("buy") => Side::Buy,
            Some("sell") => Side::Sell,
            _ => return Err(invalid("type")),
        };
        let order_type = match f.get("ordertype") {
            Some("limit") => OrderType::Limit,
            Some("market") => OrderType::Market,
            _ => return Err(invalid("ordertype")),
        };
        let volume = f.decimal("volume")?.ok_or_else(|| invalid("volume"))?;
        if volume <= Decimal::ZERO || volume.normalize().scale() > inst.lot_decimals {
            return Err(invalid("volume"));
        }
        let price = match (order_type, f.decimal("price")?) {
            (OrderType::Limit, None) => return Err(invalid("price")),
            (OrderType::Limit, Some(px)) if px <= Decimal::ZERO => return Err(invalid("price")),
            (OrderType::Limit, Some(px)) => Some(px),
            (OrderType::Market, _) => None,
        };
        let mut post_only = false;
        let mut oflags = vec!["fciq"];
        if let Some(flags) = f.get("oflags") {
            for flag in flags.split(',') {
                match flag.trim() {
                    "post" => post_only = true,
                    "fciq" | "fcib" | "nompp" | "viqc" => {}
                    _ => return Err(invalid("oflags")),
                }
            }
        }
        if post_only {
            if order_type == OrderType::Market {
                return Err(invalid("oflags"));
            }
            oflags.push("post");
        }
        match f.get("timeinforce") {
            None | Some("GTC") => {}
            Some(_) => return Err(invalid("timeinforce")),
        }
        let userref = match f.int("userref")? {
            None => None,
            Some(u) => Some(i32::try_from(u).map_err(|_| invalid("userref"))?),
        };
        let cl_ord_id = f.get("cl_ord_id").map(str::to_string);
        if let Some(c) = &cl_ord_id {
            if userref.is_some() {
                return Err(invalid("cl_ord_id"));
            }
            if !valid_cl_ord_id(c) {
                return Err(invalid("cl_ord_id"));
            }
        }
        if let Some(d) = f.get("deadline") {
            let deadline = parse_rfc3339(d).ok_or_else(|| invalid("deadline"))?;
            if deadline > now.ms + DEADLINE_MAX_MS + 1000 {
                return Err(invalid("deadline"));
            }
            if deadline < now.ms {
                return Err("EService:Deadline elapsed".into());
            }
        }
        match self.system_status.as_str() {
            "cancel_only" => return Err("EService:Market in cancel_only mode".into()),
            "post_only" if !post_only => return Err("EService:Market in post_only mode".into()),
            _ => {}
        }
        if let Some(px) = price
            && (inst.tick_size > Decimal::ZERO && !(px / inst.tick_size).fract().is_zero())
        {
            return Err("EOrder:Tick size check failed".into());
        }
        if volume < inst.min_volume {
            return Err("EOrder:Order minimum not met".into());
        }
        let reference = match price {
            Some(px) => px,
            None => self
                .ex
                .ticker(&inst.symbol)
                .map(|t| t.last)
                .map_err(|e| e.to_string())?,
        };
        if reference * volume < inst.min_cost {
            return Err("EOrder:Cost minimum not met".into());
        }
        let descr = json!({"order": self.descr_order(&p, side, order_type, volume, price)});
        if f.flag("validate") {
            return Ok(json!({ "descr": descr }));
        }
        if let Some(c) = &cl_ord_id
            && self
                .live
                .iter()
                .any(|t| self.meta.get(t).and_then(|m| m.cl_ord_id.as_deref()) == Some(c))
        {
            return Err(invalid("cl_ord_id"));
        }
        self.limits
            .charge_trading(&p.altname, now.s, now.ms, 1.0)
            .map_err(str::to_string)?;
        self.next_internal += 1;
        let internal_id = format!("sim-{}", self.next_internal);
        let order = NewOrder {
            client_order_id: internal_id.clone(),
            symbol: inst.symbol.clone(),
            side,
            order_type,
            volume,
            price,
            post_only,
            userref: userref.unwrap_or(0),
            reduce_only: false,
        };
        let state = self.ex.place(&order, now.ms).map_err(|e| match e {
            VenueError::InsufficientFunds(_) => "EOrder:Insufficient funds".to_string(),
            VenueError::OrderLimit(_) => "EOrder:Orders limit exceeded".to_string(),
            VenueError::Rejected(_) => "EOrder:Post only order".to_string(),
            VenueError::InvalidArgument(_) => "EGeneral:Invalid arguments".to_string(),
            _ => "EGeneral:Internal error".to_string(),
        })?;
        let txid = state.venue_order_id.clone();
        self.meta.insert(
            txid.clone(),
            OrderMeta {
                internal_id,
                pair: pi,
                cl_ord_id,
                userref,
                oflags: oflags.join(","),
                trades: Vec::new(),
                seen_exec: Decimal::ZERO,
                seen_fee: Decimal::ZERO,
                seen_value: Decimal::ZERO,
            },
        );
        self.live.push(txid.clone());
        self.stats.orders_placed += 1;
        self.sync(now);
        Ok(json!({ "descr": descr, "txid": [txid] }))
    }

    fn cancel_order(&mut self, f: &Form, now: Now) -> Result<Value, String> {
        let targets: Vec<String> = match (f.get("txid"), f.get("cl_ord_id")) {
            (Some(t), None) if looks_like_txid(t) => {
                self.live.iter().filter(|x| *x == t).cloned().collect()
            }
            (Some(t), None) => {
                let u: i64 = t.parse().map_err(|_| invalid("txid"))?;
                self.live
                    .iter()
                    .filter(|x| self.matches(x, Some(u), None))
                    .cloned()
                    .collect()
            }
            (None, Some(c)) => self
                .live
                .iter()
                .filter(|x| self.matches(x, None, Some(c)))
                .cloned()
                .collect(),
            _ => return Err(invalid("txid")),
        };
        if targets.is_empty() {
            return Err(UNKNOWN_ORDER.into());
        }
        let mut count = 0;
        for txid in targets {
            let Some(s) = self.state(&txid) else { continue };
            let Some(m) = self.meta.get(&txid) else {
                continue;
            };
            let altname = self.pair(m.pair)?.altname.clone();
            let penalty = cancel_penalty(now.ms - s.opened_at_ms);
            self.limits
                .charge_trading(&altname, now.s, now.ms, penalty)
                .map_err(str::to_string)?;
            let r = OrderRef {
                client_order_id: m.internal_id.clone(),
                venue_order_id: Some(txid.clone()),
            };
            if self.ex.cancel(&r, now.ms).is_ok() {
                count += 1;
            }
        }
        self.sync(now);
        Ok(json!({ "count": count }))
    }

    /// Cancels every open order (CancelAll and the dead man's switch).
    fn cancel_all(&mut self, now: Now) -> usize {
        let refs: Vec<OrderRef> = self
            .live
            .iter()
            .filter_map(|t| {
                self.meta.get(t).map(|m| OrderRef {
                    client_order_id: m.internal_id.clone(),
                    venue_order_id: Some(t.clone()),
                })
            })
            .collect();
        let count = refs
            .iter()
            .filter(|r| self.ex.cancel(r, now.ms).is_ok())
            .count();
        self.sync(now);
        count
    }

    fn cancel_all_orders_after(&mut self, f: &Form, now: Now) -> Result<Value, String> {
        let timeout = f.int("timeout")?.ok_or_else(|| invalid("timeout"))?;
        if !(0..=86_400).contains(&timeout) {
            return Err(invalid("timeout"));
        }
        let current = rfc3339(now.ms.div_euclid(1000));
        if timeout == 0 {
            self.dms_deadline_ms = None;
            return Ok(json!({"currentTime": current, "triggerTime": "0"}));
        }
        let deadline = now.ms + timeout * 1000;
        self.dms_deadline_ms = Some(deadline);
        self.stats.dms_refreshes += 1;
        Ok(json!({"currentTime": current, "triggerTime": rfc3339(deadline.div_euclid(1000))}))
    }

    fn trades_history(&self, f: &Form) -> Result<Value, String> {
        let start = self.bound_ms(f, "start")?;
        let end = self.bound_ms(f, "end")?;
        let ofs = usize::try_from(f.int("ofs")?.unwrap_or(0).max(0)).unwrap_or(0);
        let hits: Vec<&Trade> = self
            .trades
            .iter()
            .rev()
            .filter(|t| start.is_none_or(|s| t.time_ms > s) && end.is_none_or(|e| t.time_ms <= e))
            .collect();
        let count = hits.len();
        let with_ledgers = f.flag("ledgers");
        let mut out = Map::new();
        for t in hits.into_iter().skip(ofs).take(PAGE) {
            if let Some(mut v) = self.trade_json(t) {
                if with_ledgers && let Some(o) = v.as_object_mut() {
                    o.insert("ledgers".into(), json!(self.ledger_ids_of(&t.id)));
                }
                out.insert(t.id.clone(), v);
            }
        }
        Ok(json!({ "trades": out, "count": count }))
    }
}
