//! A wire-level Bybit V5 simulator on the paper matching core.
//!
//! It serves the V5 paths herd uses with Bybit's envelope, string numbers,
//! retCodes and messages; checks the API key, the HMAC-SHA256 signature over
//! timestamp + key + recv_window + payload and the timestamp window
//! (server_time - recv_window <= timestamp < server_time + 1000); meters the
//! per-IP (600 / 5 s, then HTTP 403 and a ban) and per-account, per-endpoint
//! 1 s limits with the `X-Bapi-Limit*` headers and retCode 10006; settles
//! funding at the perpetuals' funding times; and keeps positions, the
//! unified wallet and the transaction log.
//!
//! Symbols are Bybit's: (spot, "BTCUSDT") is the paper core's "BTCUSDT",
//! (linear, "BTCUSDT") its "BTCUSDT-PERP".
//!
//! Tests steer it through [`BybitSim`] directly (in-process) or through the
//! admin endpoints under `/admin/` (a separate process): move prices, set
//! and settle funding, skew the clock, and inject faults (latency, HTTP 5xx,
//! connection reset, accepted-but-response-lost, 10006, 403, 10016).

mod more;
mod routes;

pub use more::KeyInfo;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use herd_paper::{Exchange, PaperConfig};
use herd_venue::{Clock, SystemClock, perp_symbol, spot_of_perp};
use hmac::{Hmac, Mac};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::http1::{self, Outcome, Request, Response};

/// Per-IP limit: requests per window.
pub const IP_LIMIT: u32 = 600;
pub const IP_WINDOW_MS: i64 = 5_000;
pub const ACCOUNT_WINDOW_MS: i64 = 1_000;
/// Bybit's upper bound on a timestamp: less than server time + 1 s.
const FUTURE_TOLERANCE_MS: i64 = 1_000;
/// realtime answers closed orders by id for this long after they closed.
const REALTIME_CLOSED_MS: i64 = 10 * 60 * 1000;

/// How the simulator starts.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub api_key: String,
    pub api_secret: String,
    pub paper: PaperConfig,
    /// The simulator's clock minus the machine's.
    pub clock_skew_ms: i64,
    /// Milliseconds between price-path steps (and funding checks); 0 = only
    /// when told.
    pub step_ms: u64,
    pub ip_limit: u32,
    /// How long an IP stays banned after passing the IP limit.
    pub ban_ms: i64,
    /// What `/v5/user/query-api` says of the key and what it may do.
    pub key_info: KeyInfo,
    /// Where the durable state goes (`--state FILE`; see
    /// [`BybitSim::persist`]); `None` keeps it in memory only.
    pub state_file: Option<PathBuf>,
}

impl SimConfig {
    /// The paper default (DOGEUSD and BTC/ETH/SOL against USDT with perps),
    /// stepping once a second.
    pub fn new(api_key: &str, api_secret: &str) -> SimConfig {
        SimConfig {
            api_key: api_key.into(),
            api_secret: api_secret.into(),
            paper: PaperConfig::default(),
            clock_skew_ms: 0,
            step_ms: 1_000,
            ip_limit: IP_LIMIT,
            ban_ms: 10 * 60 * 1000,
            key_info: KeyInfo::default(),
            state_file: None,
        }
    }
}

/// A fault to inject into matching requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// Answer normally after `latency_ms`.
    Latency,
    /// HTTP `status` (default 502) with an HTML body; the request is not acted on.
    Http5xx,
    /// Reset the connection; the request is not acted on.
    Reset,
    /// Act on the request, then close the connection without answering.
    ResponseLost,
    /// retCode 10006 with the limit headers; not acted on.
    RateLimit,
    /// HTTP 403 (the IP limit); not acted on.
    Forbidden,
    /// retCode 10016; not acted on.
    ServerError,
    /// A definite refusal of an order (retCode 110007 linear / 170131 spot,
    /// insufficient balance); not acted on.
    Reject,
}

/// One injected fault: applies to the next `count` requests on `path`
/// (every non-admin path when `None`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    pub kind: FaultKind,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default = "one")]
    pub count: u32,
    #[serde(default)]
    pub latency_ms: u64,
    #[serde(default)]
    pub status: Option<u16>,
    /// Only requests of this category ("spot" / "linear"); any when `None`.
    #[serde(default)]
    pub category: Option<String>,
}

fn one() -> u32 {
    1
}

impl Fault {
    pub fn once(kind: FaultKind, path: &str) -> Fault {
        Fault {
            kind,
            path: Some(path.into()),
            count: 1,
            latency_ms: 0,
            status: None,
            category: None,
        }
    }
}

/// What the simulator saw.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub requests: u64,
    pub by_path: BTreeMap<String, u64>,
    /// 10006 answers produced by the limits (not injected).
    pub rate_limited: u64,
    /// 403 answers produced by the IP limit (not injected).
    pub forbidden: u64,
    pub bad_signatures: u64,
    pub timestamp_rejections: u64,
    pub faults_fired: u64,
    pub orders_created: u64,
}

/// A post-only order that would have taken liquidity: Bybit accepts it and
/// rejects it at once.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Synthetic {
    row: Value,
    link_id: String,
    order_id: String,
    category: String,
    time_ms: i64,
}

#[derive(Debug)]
struct State {
    exchange: Exchange,
    skew_ms: i64,
    faults: Vec<Fault>,
    ip: VecDeque<i64>,
    windows: HashMap<(String, String), VecDeque<i64>>,
    banned_until: Option<i64>,
    stats: Stats,
    synthetic: Vec<Synthetic>,
    /// (bybit symbol, rate, settlement time), oldest first.
    funding_history: Vec<(String, Decimal, i64)>,
}

/// What the state file holds: everything a client relies on (the matching
/// core with balances, orders by orderLinkId, fills, positions and funding;
/// the synthetic post-only rejections; the funding history; the counters).
/// Not kept: rate-limit windows, bans and injected faults.
#[derive(Serialize)]
struct DurableRef<'a> {
    version: u32,
    exchange: &'a Exchange,
    synthetic: &'a Vec<Synthetic>,
    funding_history: &'a Vec<(String, Decimal, i64)>,
    stats: &'a Stats,
}

#[derive(Deserialize)]
struct Durable {
    version: u32,
    exchange: Exchange,
    synthetic: Vec<Synthetic>,
    funding_history: Vec<(String, Decimal, i64)>,
    stats: Stats,
}

const STATE_VERSION: u32 = 1;

/// The simulator.
#[derive(Debug)]
pub struct BybitSim {
    cfg: SimConfig,
    clock: SystemClock,
    state: Mutex<State>,
}

/// A running simulator; dropping it stops the server and the price driver.
#[derive(Debug)]
pub struct SimHandle {
    pub addr: SocketAddr,
    pub sim: Arc<BybitSim>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl SimHandle {
    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Starts the simulator on `listen` (port 0 = any). With a state file, a
/// state already there is loaded (a bad one is an error naming the file)
/// and the state is written before the server answers anything.
pub async fn start(cfg: SimConfig, listen: SocketAddr) -> std::io::Result<SimHandle> {
    let sim = Arc::new(BybitSim::new(cfg));
    sim.load()?;
    sim.persist()?;
    let handler_sim = sim.clone();
    let (addr, server) = http1::serve(listen, move |req| {
        let sim = handler_sim.clone();
        async move { sim.handle(req).await }
    })
    .await?;
    let mut tasks = vec![server];
    if sim.cfg.step_ms > 0 {
        let driver = sim.clone();
        let period = Duration::from_millis(sim.cfg.step_ms);
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                driver.step();
                if let Err(e) = driver.persist() {
                    eprintln!("bybit-sim: cannot write the state file: {e}");
                }
            }
        }));
    }
    Ok(SimHandle { addr, sim, tasks })
}

/// Herd's (paper core's) symbol for Bybit's category and symbol.
fn core_symbol(category: &str, symbol: &str) -> Option<String> {
    match category {
        "spot" => Some(symbol.to_string()),
        "linear" => Some(perp_symbol(symbol)),
        _ => None,
    }
}

/// Bybit's (category, symbol) for the paper core's symbol.
fn bybit_symbol(core: &str) -> (&'static str, String) {
    match spot_of_perp(core) {
        Some(s) => ("linear", s.to_string()),
        None => ("spot", core.to_string()),
    }
}

/// Bybit's envelope.
fn envelope(code: i64, msg: &str, result: Value, time_ms: i64) -> String {
    json!({
        "retCode": code,
        "retMsg": msg,
        "result": result,
        "retExtInfo": {},
        "time": time_ms,
    })
    .to_string()
}

fn hmac_hex(secret: &str, message: &str) -> String {
    match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mut mac) => {
            mac.update(message.as_bytes());
            hex::encode(mac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    }
}

/// The per-account limit of a path and category, per rolling second.
fn account_limit(path: &str, category: &str) -> Option<u32> {
    match path {
        "/v5/order/create" | "/v5/order/cancel" | "/v5/order/cancel-all" => {
            Some(if category == "spot" { 20 } else { 10 })
        }
        "/v5/order/amend" => Some(10),
        "/v5/order/realtime"
        | "/v5/order/history"
        | "/v5/execution/list"
        | "/v5/position/list"
        | "/v5/account/wallet-balance" => Some(50),
        "/v5/account/transaction-log" => Some(25),
        _ => None,
    }
}

fn is_private(path: &str) -> bool {
    path.starts_with("/v5/order/")
        || path.starts_with("/v5/user/")
        || path.starts_with("/v5/asset/")
        || path.starts_with("/v5/execution/")
        || path.starts_with("/v5/position/")
        || path.starts_with("/v5/account/")
}

/// A handler's answer: retCode (0 = OK), message, result.
pub(crate) type Answer = (i64, String, Value);

pub(crate) fn ok(result: Value) -> Answer {
    (0, "OK".into(), result)
}

pub(crate) fn fail(code: i64, msg: impl Into<String>) -> Answer {
    (code, msg.into(), json!({}))
}

impl BybitSim {
    pub fn new(cfg: SimConfig) -> BybitSim {
        let clock = SystemClock;
        let now = clock.now_ms() + cfg.clock_skew_ms;
        let state = State {
            exchange: Exchange::new(&cfg.paper, now),
            skew_ms: cfg.clock_skew_ms,
            faults: Vec::new(),
            ip: VecDeque::new(),
            windows: HashMap::new(),
            banned_until: None,
            stats: Stats::default(),
            synthetic: Vec::new(),
            funding_history: Vec::new(),
        };
        BybitSim {
            cfg,
            clock,
            state: Mutex::new(state),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Loads the state file, if one is configured and exists.
    fn load(&self) -> std::io::Result<()> {
        let Some(path) = &self.cfg.state_file else {
            return Ok(());
        };
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                return Err(std::io::Error::other(format!(
                    "state file {}: {e}",
                    path.display()
                )));
            }
        };
        let bad = |e: String| std::io::Error::other(format!("state file {}: {e}", path.display()));
        let d: Durable = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
        if d.version != STATE_VERSION {
            return Err(bad(format!(
                "version {} (this simulator reads version {STATE_VERSION})",
                d.version
            )));
        }
        let mut st = self.lock();
        st.exchange = d.exchange;
        st.synthetic = d.synthetic;
        st.funding_history = d.funding_history;
        st.stats = d.stats;
        Ok(())
    }

    /// Writes the state to the state file (if any) durably: a temp file
    /// beside it, fsync, rename, fsync of the directory, all under the
    /// state's lock (so a later state never loses to an earlier one). Called
    /// after every request and price step, before the answer leaves.
    pub fn persist(&self) -> std::io::Result<()> {
        let Some(path) = &self.cfg.state_file else {
            return Ok(());
        };
        let st = self.lock();
        let bytes = serde_json::to_vec(&DurableRef {
            version: STATE_VERSION,
            exchange: &st.exchange,
            synthetic: &st.synthetic,
            funding_history: &st.funding_history,
            stats: &st.stats,
        })
        .map_err(std::io::Error::other)?;
        crate::state_file::write_atomic(path, &bytes)
    }

    /// [`BybitSim::persist`] for the handler: a failed write is a 500 (a
    /// client must not take as done what a restart would forget).
    fn persisted(&self, r: Response) -> Response {
        match self.persist() {
            Ok(()) => r,
            Err(e) => {
                eprintln!("bybit-sim: cannot write the state file: {e}");
                Response::text(500, "<html><body>500 Internal Server Error</body></html>")
            }
        }
    }

    fn now_of(&self, st: &State) -> i64 {
        self.clock.now_ms() + st.skew_ms
    }

    /// The simulator's clock, Unix ms.
    pub fn now_ms(&self) -> i64 {
        let st = self.lock();
        self.now_of(&st)
    }

    /// Moves the simulator's clock relative to the machine's.
    pub fn set_skew_ms(&self, skew_ms: i64) {
        self.lock().skew_ms = skew_ms;
    }

    /// Moves a market ("spot" / "linear", Bybit symbol) to `price`.
    pub fn set_price(&self, category: &str, symbol: &str, price: Decimal) -> Result<(), String> {
        let mut st = self.lock();
        let now = self.now_of(&st);
        let core = core_symbol(category, symbol).ok_or("category must be spot or linear")?;
        st.exchange
            .set_price(&core, price, now)
            .map_err(|e| e.to_string())
    }

    /// Sets a perpetual's funding rate (when given) and settles it now
    /// (when asked). Returns the amount booked, if any position existed.
    pub fn set_funding(
        &self,
        symbol: &str,
        rate: Option<Decimal>,
        settle_now: bool,
    ) -> Result<Option<Decimal>, String> {
        let mut st = self.lock();
        let now = self.now_of(&st);
        let core = perp_symbol(symbol);
        if let Some(r) = rate {
            st.exchange
                .set_funding_rate(&core, r)
                .map_err(|e| e.to_string())?;
        }
        if !settle_now {
            return Ok(None);
        }
        let current = st
            .exchange
            .funding_rate(&core)
            .map_err(|e| e.to_string())?
            .rate;
        st.funding_history.push((symbol.to_string(), current, now));
        let paid = st
            .exchange
            .settle_funding_now(&core, now)
            .map_err(|e| e.to_string())?;
        Ok(paid.map(|p| p.amount))
    }

    /// The account's own records, for tests that check a client's books
    /// against the venue's: every fill (orders with executed volume: Bybit
    /// symbol, category, side, qty, average price, fee and fee coin, time),
    /// every funding credit (positive = received), the balances and the
    /// open perpetual positions, and every order (id, link id, status,
    /// price, quantities). Amounts are decimal strings.
    pub fn ledger(&self) -> Value {
        let st = self.lock();
        let fills: Vec<Value> = st
            .exchange
            .all_orders()
            .iter()
            .filter(|o| o.volume_executed > Decimal::ZERO)
            .map(|o| {
                let (category, symbol) = bybit_symbol(&o.symbol);
                json!({
                    "orderId": o.venue_order_id,
                    "orderLinkId": o.client_order_id,
                    "category": category,
                    "symbol": symbol,
                    "side": if o.side == herd_venue::Side::Buy { "Buy" } else { "Sell" },
                    "qty": o.volume_executed.normalize().to_string(),
                    "price": o.average_price.unwrap_or_default().normalize().to_string(),
                    "fee": o.fee.normalize().to_string(),
                    "feeCurrency": o.fee_asset,
                    "time": o.closed_at_ms.unwrap_or(o.opened_at_ms),
                })
            })
            .collect();
        let funding: Vec<Value> = st
            .exchange
            .funding_payments(&herd_venue::FundingPaymentQuery {
                symbol: None,
                since_ms: 0,
                until_ms: None,
                limit: 0,
            })
            .iter()
            .map(|p| {
                json!({
                    "id": p.id,
                    "symbol": bybit_symbol(&p.symbol).1,
                    "amount": p.amount.normalize().to_string(),
                    "currency": p.asset,
                    "rate": p.rate.normalize().to_string(),
                    "size": p.size.normalize().to_string(),
                    "time": p.time_ms,
                })
            })
            .collect();
        let balances: serde_json::Map<String, Value> = st
            .exchange
            .balances()
            .iter()
            .map(|b| (b.asset.clone(), json!(b.total.normalize().to_string())))
            .collect();
        let positions: Vec<Value> = st
            .exchange
            .positions()
            .iter()
            .filter(|p| !p.size.is_zero())
            .map(|p| {
                json!({
                    "symbol": bybit_symbol(&p.symbol).1,
                    "side": if p.side == herd_venue::PositionSide::Long { "Buy" } else { "Sell" },
                    "size": p.size.normalize().to_string(),
                })
            })
            .collect();
        let orders: Vec<Value> = st
            .exchange
            .all_orders()
            .iter()
            .map(|o| {
                let (category, symbol) = bybit_symbol(&o.symbol);
                json!({
                    "orderId": o.venue_order_id,
                    "orderLinkId": o.client_order_id,
                    "category": category,
                    "symbol": symbol,
                    "side": if o.side == herd_venue::Side::Buy { "Buy" } else { "Sell" },
                    "type": if o.order_type == herd_venue::OrderType::Market { "Market" } else { "Limit" },
                    "price": o.price.map(|p| p.normalize().to_string()),
                    "qty": o.volume.normalize().to_string(),
                    "executed": o.volume_executed.normalize().to_string(),
                    "status": format!("{:?}", o.status),
                    "time": o.opened_at_ms,
                })
            })
            .collect();
        json!({"fills": fills, "funding": funding, "balances": balances, "positions": positions, "orders": orders})
    }

    /// Queues a fault.
    pub fn inject(&self, fault: Fault) {
        self.lock().faults.push(fault);
    }

    pub fn clear_faults(&self) {
        self.lock().faults.clear();
    }

    pub fn stats(&self) -> Stats {
        self.lock().stats.clone()
    }

    /// One step of every price path, settling funding that is due.
    pub fn step(&self) {
        let mut st = self.lock();
        let now = self.now_of(&st);
        let before: Vec<(String, Decimal, i64)> = st
            .exchange
            .funding_rates(&[])
            .unwrap_or_default()
            .into_iter()
            .map(|f| (f.symbol, f.rate, f.next_funding_ms))
            .collect();
        st.exchange.step(now);
        for (core, rate, next) in before {
            if next <= now {
                let (_, symbol) = bybit_symbol(&core);
                st.funding_history.push((symbol, rate, next));
            }
        }
    }

    fn take_fault(&self, path: &str, category: &str) -> Option<Fault> {
        let mut st = self.lock();
        let idx = st.faults.iter().position(|f| {
            f.count > 0
                && f.path.as_deref().is_none_or(|p| p == path)
                && f.category.as_deref().is_none_or(|c| c == category)
        })?;
        let fault = st.faults[idx].clone();
        st.faults[idx].count -= 1;
        if st.faults[idx].count == 0 {
            st.faults.remove(idx);
        }
        st.stats.faults_fired += 1;
        Some(fault)
    }

    /// Handles one request (the HTTP server's entry point).
    pub async fn handle(self: &Arc<Self>, req: Request) -> Outcome {
        if req.path.starts_with("/admin/") {
            let r = self.admin(&req);
            return Outcome::Respond(self.persisted(r));
        }
        let category = self.category_of(&req);
        if let Some(f) = self.take_fault(&req.path, &category) {
            match f.kind {
                FaultKind::Latency => {
                    tokio::time::sleep(Duration::from_millis(f.latency_ms)).await;
                }
                FaultKind::Http5xx => {
                    return Outcome::Respond(Response::text(
                        f.status.unwrap_or(502),
                        "<html><body>502 Bad Gateway</body></html>",
                    ));
                }
                FaultKind::Reset => return Outcome::Reset,
                FaultKind::ResponseLost => {
                    let _ = self.process(&req);
                    if let Err(e) = self.persist() {
                        eprintln!("bybit-sim: cannot write the state file: {e}");
                    }
                    return Outcome::Drop;
                }
                FaultKind::RateLimit => {
                    let now = self.now_ms();
                    let mut r =
                        Response::json(200, envelope(10006, "Too many visits!", json!({}), now));
                    let limit = account_limit(&req.path, &category).unwrap_or(50);
                    r.headers.push(("X-Bapi-Limit".into(), limit.to_string()));
                    r.headers.push(("X-Bapi-Limit-Status".into(), "0".into()));
                    r.headers.push((
                        "X-Bapi-Limit-Reset-Timestamp".into(),
                        (now + 200).to_string(),
                    ));
                    return Outcome::Respond(r);
                }
                FaultKind::Forbidden => {
                    return Outcome::Respond(Response::text(
                        403,
                        "<html><body>403 Forbidden</body></html>",
                    ));
                }
                FaultKind::ServerError => {
                    let now = self.now_ms();
                    return Outcome::Respond(Response::json(
                        200,
                        envelope(10016, "Server error.", json!({}), now),
                    ));
                }
                FaultKind::Reject => {
                    let now = self.now_ms();
                    let (code, msg) = if category == "spot" {
                        (170131, "Insufficient balance.")
                    } else {
                        (110007, "ab not enough for new order")
                    };
                    return Outcome::Respond(Response::json(
                        200,
                        envelope(code, msg, json!({}), now),
                    ));
                }
            }
        }
        let r = self.process(&req);
        Outcome::Respond(self.persisted(r))
    }

    fn category_of(&self, req: &Request) -> String {
        if req.method == "POST" {
            serde_json::from_str::<Value>(&req.body)
                .ok()
                .and_then(|v| v.get("category").and_then(Value::as_str).map(str::to_owned))
                .unwrap_or_default()
        } else {
            req.query_params().remove("category").unwrap_or_default()
        }
    }

    /// Checks limits and auth, then routes. Synchronous: one lock for the
    /// whole request keeps every answer consistent.
    fn process(&self, req: &Request) -> Response {
        let category = self.category_of(req);
        let mut st = self.lock();
        let now = self.now_of(&st);
        st.stats.requests += 1;
        *st.stats.by_path.entry(req.path.clone()).or_insert(0) += 1;

        if let Some(until) = st.banned_until {
            if now < until {
                return Response::text(403, "<html><body>403 Forbidden</body></html>");
            }
            st.banned_until = None;
        }
        while st.ip.front().is_some_and(|t| *t + IP_WINDOW_MS <= now) {
            st.ip.pop_front();
        }
        st.ip.push_back(now);
        if st.ip.len() > self.cfg.ip_limit as usize {
            st.banned_until = Some(now + self.cfg.ban_ms);
            st.stats.forbidden += 1;
            return Response::text(403, "<html><body>403 Forbidden</body></html>");
        }

        let mut headers: Vec<(String, String)> = Vec::new();
        if is_private(&req.path) {
            if let Err((code, msg)) = self.authenticate(req, now) {
                match code {
                    10002 => st.stats.timestamp_rejections += 1,
                    10004 => st.stats.bad_signatures += 1,
                    _ => {}
                }
                return Response::json(200, envelope(code, &msg, json!({}), now));
            }
            if let Err((code, msg)) = self.permitted(&req.path, now) {
                return Response::json(200, envelope(code, &msg, json!({}), now));
            }
            if let Some(limit) = account_limit(&req.path, &category) {
                // Order create / cancel / cancel-all count per category.
                let key_cat = match req.path.as_str() {
                    "/v5/order/create" | "/v5/order/cancel" | "/v5/order/cancel-all" => {
                        category.clone()
                    }
                    _ => String::new(),
                };
                let w = st.windows.entry((req.path.clone(), key_cat)).or_default();
                while w.front().is_some_and(|t| *t + ACCOUNT_WINDOW_MS <= now) {
                    w.pop_front();
                }
                let used = u32::try_from(w.len()).unwrap_or(u32::MAX);
                let reset = w
                    .front()
                    .map_or(now + ACCOUNT_WINDOW_MS, |t| t + ACCOUNT_WINDOW_MS);
                headers.push(("X-Bapi-Limit".into(), limit.to_string()));
                headers.push(("X-Bapi-Limit-Reset-Timestamp".into(), reset.to_string()));
                if used >= limit {
                    headers.push(("X-Bapi-Limit-Status".into(), "0".into()));
                    st.stats.rate_limited += 1;
                    let mut r =
                        Response::json(200, envelope(10006, "Too many visits!", json!({}), now));
                    r.headers.extend(headers);
                    return r;
                }
                w.push_back(now);
                headers.push(("X-Bapi-Limit-Status".into(), (limit - used - 1).to_string()));
            }
        }
        let answer = self.route(&mut st, req, now);
        let (code, msg, result) = answer;
        if code == 0 && req.path == "/v5/order/create" {
            st.stats.orders_created += 1;
        }
        let mut r = Response::json(200, envelope(code, &msg, result, now));
        r.headers.extend(headers);
        r
    }

    /// The key's expiry and read-only flag, after authentication.
    fn permitted(&self, path: &str, now: i64) -> Result<(), (i64, String)> {
        let key = &self.cfg.key_info;
        if key.expires_at_ms.is_some_and(|e| now >= e) {
            return Err((33004, "Your api key has expired.".into()));
        }
        let writes = matches!(
            path,
            "/v5/order/create" | "/v5/order/cancel" | "/v5/order/cancel-all" | "/v5/order/amend"
        );
        if writes && key.read_only {
            return Err((
                10005,
                "Permission denied, please check your API key permissions.".into(),
            ));
        }
        Ok(())
    }

    fn authenticate(&self, req: &Request, now: i64) -> Result<(), (i64, String)> {
        let key = req.header("x-bapi-api-key").unwrap_or_default();
        if key != self.cfg.api_key {
            return Err((10003, "API key is invalid.".into()));
        }
        let ts: i64 = req
            .header("x-bapi-timestamp")
            .and_then(|t| t.parse().ok())
            .ok_or((
                10001,
                "params error: X-BAPI-TIMESTAMP is missing".to_string(),
            ))?;
        let recv: i64 = match req.header("x-bapi-recv-window") {
            Some(r) => r
                .parse()
                .map_err(|_| (10001, "params error: X-BAPI-RECV-WINDOW".to_string()))?,
            None => 5_000,
        };
        if !(now - recv <= ts && ts < now + FUTURE_TOLERANCE_MS) {
            return Err((
                10002,
                format!(
                    "invalid request, please check your server timestamp or recv_window param. \
                     req_timestamp[{ts}],server_timestamp[{now}],recv_window[{recv}]"
                ),
            ));
        }
        let payload = if req.method == "POST" {
            req.body.as_str()
        } else {
            req.query.as_str()
        };
        let want = hmac_hex(
            &self.cfg.api_secret,
            &format!(
                "{ts}{key}{}{payload}",
                req.header("x-bapi-recv-window").unwrap_or("5000")
            ),
        );
        let got = req.header("x-bapi-sign").unwrap_or_default();
        if !got.eq_ignore_ascii_case(&want) {
            return Err((10004, "error sign! please check your signature".into()));
        }
        Ok(())
    }

    fn admin(&self, req: &Request) -> Response {
        let body: Value = serde_json::from_str(&req.body).unwrap_or(Value::Null);
        let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        let dec = |v: &Value, k: &str| -> Result<Option<Decimal>, String> {
            text(v, k)
                .map(|s| s.parse::<Decimal>().map_err(|e| format!("{k}: {e}")))
                .transpose()
        };
        let result: Result<Value, String> = match (req.method.as_str(), req.path.as_str()) {
            ("GET", "/admin/stats") => {
                serde_json::to_value(self.stats()).map_err(|e| e.to_string())
            }
            ("GET", "/admin/ledger") => Ok(self.ledger()),
            ("POST", "/admin/price") => (|| {
                let category = text(&body, "category").unwrap_or_else(|| "spot".into());
                let symbol = text(&body, "symbol").ok_or("symbol is required")?;
                let price = dec(&body, "price")?.ok_or("price is required")?;
                self.set_price(&category, &symbol, price)?;
                Ok(json!({}))
            })(),
            ("POST", "/admin/funding") => (|| {
                let symbol = text(&body, "symbol").ok_or("symbol is required")?;
                let rate = dec(&body, "rate")?;
                let settle = body
                    .get("settle_now")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                let paid = self.set_funding(&symbol, rate, settle)?;
                Ok(json!({"paid": paid.map(|p| p.to_string())}))
            })(),
            ("POST", "/admin/fault") => serde_json::from_value::<Fault>(body.clone())
                .map(|f| {
                    self.inject(f);
                    json!({})
                })
                .map_err(|e| e.to_string()),
            ("POST", "/admin/clear-faults") => {
                self.clear_faults();
                Ok(json!({}))
            }
            ("POST", "/admin/skew") => body
                .get("ms")
                .and_then(Value::as_i64)
                .map(|ms| {
                    self.set_skew_ms(ms);
                    json!({})
                })
                .ok_or_else(|| "ms is required".to_string()),
            ("POST", "/admin/step") => {
                self.step();
                Ok(json!({}))
            }
            _ => Err(format!("no admin route {} {}", req.method, req.path)),
        };
        match result {
            Ok(v) => Response::json(200, v.to_string()),
            Err(e) => Response::json(400, json!({"error": e}).to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_the_spec_vector() {
        assert_eq!(
            hmac_hex(
                "test_secret",
                "1700000000000test_api_key5000category=linear&symbol=BTCUSDT"
            ),
            "fd4f31228a46109dc6673062328693696df9a96c7ff04e6491a45e7f63a0fdd7"
        );
    }

    #[test]
    fn symbols_map_both_ways() {
        assert_eq!(
            core_symbol("linear", "BTCUSDT").as_deref(),
            Some("BTCUSDT-PERP")
        );
        assert_eq!(core_symbol("spot", "BTCUSDT").as_deref(), Some("BTCUSDT"));
        assert_eq!(core_symbol("inverse", "BTCUSD"), None);
        assert_eq!(
            bybit_symbol("ETHUSDT-PERP"),
            ("linear", "ETHUSDT".to_string())
        );
    }
}
