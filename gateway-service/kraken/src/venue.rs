//! [`KrakenVenue`]: the domain client the gateway uses. It speaks herd's
//! types, spends the [`RateBudget`] before every call, learns from Kraken's
//! rate-limit and lockout answers, and keeps just enough order memory (pair
//! and open time of each open order, submits whose outcome is unknown) to
//! charge cancel penalties to the right pair and to resolve unknown submits.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use herd_venue::{
    Balance, Candle, Clock, ClockReading, Instrument, KeyInfo, NewOrder, OrderRef, OrderState,
    OrderStatus, OrderType, PlaceOutcome, Side, SystemClock, Ticker, Venue, VenueError,
};

use crate::budget::{Charge, CounterKey, MonotonicClock, Priority, RateBudget, TokioClock};
use crate::common::consts::{
    QUERY_ORDERS_MAX_TXIDS, REST_COST_DEFAULT, REST_COST_HISTORY, TRADING_COST_ADD_ORDER,
    VENUE_NAME, cancel_penalty,
};
use crate::common::credential::{CREDENTIAL_SPEC, Credential};
use crate::common::enums::{ClientIdMode, KrakenOrderType, KrakenSide};
use crate::config::KrakenConfig;
use crate::http::models::{
    CancelAllOrdersAfterResult, OrderInfo, SystemStatus, TradesHistoryResult,
};
use crate::http::query::{
    AddOrderParams, CancelTarget, ClosedOrdersParams, OpenOrdersParams, QueryOrdersParams,
    TradesHistoryParams, check_cl_ord_id,
};
use crate::http::{KrakenApiError, KrakenError, KrakenHttpClient};
use crate::nonce::NonceGenerator;
use crate::parse::{self, PairDirectory, PairInfo};

/// OHLC intervals Kraken serves, in minutes.
pub const OHLC_INTERVALS: &[u32] = &[1, 5, 15, 30, 60, 240, 1440, 10080, 21600];

/// How far before the submit a closed order may have opened and still be
/// ours (clock skew between us and Kraken).
const RESOLVE_SLACK_MS: i64 = 60_000;
/// After the AddOrder deadline, how long before "not found" is final.
const DEADLINE_GRACE_MS: i64 = 5_000;
/// A free-text cl_ord_id may be at most this long (UUIDs may be 36).
const CL_ORD_ID_MAX_TEXT: usize = 18;

/// What [`KrakenVenue::resolve_order`] found for a client order id.
#[derive(Debug, Clone, PartialEq)]
pub enum Resolution {
    /// The order exists (open or closed).
    Found(Box<OrderState>),
    /// Kraken knows no such order. `conclusive` is true once the submit's
    /// AddOrder deadline has passed: the matching engine can no longer accept
    /// it, so the order was never placed. Before that it may still appear.
    NotFound { conclusive: bool },
}

#[derive(Debug, Clone)]
struct OpenOrder {
    altname: String,
    opened_ms: i64,
    client_order_id: String,
}

#[derive(Debug, Clone)]
struct Unresolved {
    altname: String,
    userref: i32,
    sent_ms: i64,
    deadline_ms: Option<i64>,
}

#[derive(Debug, Default)]
struct Tracker {
    /// Open orders by txid.
    open: HashMap<String, OpenOrder>,
    /// Submits whose outcome is unknown, by client order id.
    unresolved: HashMap<String, Unresolved>,
    /// When the last complete OpenOrders was asked (Unix ms): orders opened
    /// since are counted on our word alone and may have filled already.
    confirmed_ms: Option<i64>,
}

impl Tracker {
    fn open_counts(&self) -> BTreeMap<String, u32> {
        let mut counts = BTreeMap::new();
        let pairs = self
            .open
            .values()
            .map(|o| &o.altname)
            .chain(self.unresolved.values().map(|u| &u.altname));
        for p in pairs {
            *counts.entry(p.clone()).or_insert(0) += 1;
        }
        counts
    }

    /// True when some order counted as open on `altname` was accepted
    /// after the last complete view, so the venue may have closed it since.
    fn has_unconfirmed(&self, altname: &str) -> bool {
        self.open.values().any(|o| {
            o.altname == altname && self.confirmed_ms.is_none_or(|since| o.opened_ms >= since)
        })
    }

    fn txid_of(&self, client_order_id: &str) -> Option<String> {
        self.open
            .iter()
            .find(|(_, o)| o.client_order_id == client_order_id)
            .map(|(t, _)| t.clone())
    }
}

/// How an order is looked up when only its client id is known.
#[derive(Debug, Clone)]
enum ClientFilter {
    ClOrdId(String),
    Userref(i32),
}

/// The Kraken spot venue.
#[derive(Debug)]
pub struct KrakenVenue {
    http: KrakenHttpClient,
    budget: RateBudget,
    wall: Arc<dyn Clock>,
    client_id_mode: ClientIdMode,
    deadline_s: Option<u32>,
    lockout_ms: i64,
    max_open_orders: u32,
    pairs: RwLock<Arc<PairDirectory>>,
    tracker: Mutex<Tracker>,
    /// The key's nonce window (s) from the last GetApiKeyInfo; 0 = none.
    nonce_window_s: AtomicU32,
}

impl KrakenVenue {
    /// Builds the venue from its configuration: loads the credential, opens
    /// the nonce file, uses the system clock and tokio's monotonic clock.
    pub fn new(config: &KrakenConfig) -> Result<KrakenVenue, VenueError> {
        let credential = config
            .credentials
            .load(&CREDENTIAL_SPEC)
            .map_err(|e| VenueError::Auth(e.to_string()))?;
        let nonce = NonceGenerator::new(config.nonce_file.clone())
            .map_err(|e| VenueError::Other(e.to_string()))?;
        KrakenVenue::with_parts(
            config,
            credential,
            nonce,
            Arc::new(SystemClock),
            Arc::new(TokioClock::new()),
        )
    }

    /// Builds the venue from explicit parts (tests inject clocks here).
    pub fn with_parts(
        config: &KrakenConfig,
        credential: Option<Credential>,
        nonce: NonceGenerator,
        wall: Arc<dyn Clock>,
        mono: Arc<dyn MonotonicClock>,
    ) -> Result<KrakenVenue, VenueError> {
        let http = KrakenHttpClient::new(&config.http(), credential, nonce)
            .map_err(|e| VenueError::Other(e.to_string()))?;
        Ok(KrakenVenue {
            http,
            budget: RateBudget::new(config.tier, mono, wall.clone())
                .with_headroom(config.rate_headroom),
            wall,
            client_id_mode: config.client_id_mode,
            deadline_s: config.deadline_s(),
            lockout_ms: config.lockout_ms,
            max_open_orders: config.tier.limits().max_open_orders,
            pairs: RwLock::new(Arc::new(PairDirectory::default())),
            tracker: Mutex::new(Tracker::default()),
            nonce_window_s: AtomicU32::new(0),
        })
    }

    /// The raw endpoint client (no budget).
    pub fn http(&self) -> &KrakenHttpClient {
        &self.http
    }

    /// The rate model itself.
    pub fn rate_budget(&self) -> &RateBudget {
        &self.budget
    }

    fn now_ms(&self) -> i64 {
        self.wall.now_ms()
    }

    fn tracker(&self) -> std::sync::MutexGuard<'_, Tracker> {
        self.tracker.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn venue_error(&self, e: &KrakenError) -> VenueError {
        let mut v = e.to_venue_error(self.now_ms(), self.lockout_ms);
        if let VenueError::RateLimited { retry_after_ms, .. } = &mut v
            && *retry_after_ms == 0
        {
            let l = self.budget.limits();
            let decay = match e.api() {
                Some(KrakenApiError::OrderRateLimit) => l.trading_decay_per_s,
                _ => l.rest_decay_per_s,
            };
            *retry_after_ms = (1000.0 / decay).ceil() as i64;
        }
        v
    }

    /// Lets Kraken's answer correct the model.
    fn observe(&self, e: &KrakenError, pair: Option<&str>) {
        let Some(api) = e.api() else { return };
        match api {
            KrakenApiError::TemporaryLockout => {
                let until = self.now_ms().saturating_add(self.lockout_ms);
                tracing::warn!(
                    until_ms = until,
                    "kraken temporary lockout: private calls stopped"
                );
                self.budget.lock_out_until(until);
            }
            KrakenApiError::ApiRateLimit => {
                tracing::warn!("kraken REST rate limit hit: model saturated");
                self.budget.saturate(&CounterKey::Rest);
            }
            KrakenApiError::OrderRateLimit => {
                tracing::warn!(pair, "kraken trading rate limit hit: model saturated");
                match pair {
                    Some(p) => self.budget.saturate(&CounterKey::Trading(p.to_owned())),
                    None => self.budget.saturate(&CounterKey::Rest),
                }
            }
            KrakenApiError::Throttled(until) => {
                let wait_ms = until
                    .map(|s| s.saturating_mul(1000).saturating_sub(self.now_ms()))
                    .unwrap_or(1000)
                    .clamp(0, 600_000);
                self.budget
                    .pause_private(Duration::from_millis(u64::try_from(wait_ms).unwrap_or(0)));
            }
            KrakenApiError::InvalidNonce => {
                tracing::error!("kraken rejected our nonce: is another client using this key?");
            }
            _ => {}
        }
    }

    /// Spends budget, then runs one request. The outer error means the call
    /// was never sent; the inner result is Kraken's answer.
    async fn call<T, F>(
        &self,
        priority: Priority,
        private: bool,
        charges: &[Charge],
        pair: Option<&str>,
        request: F,
    ) -> Result<Result<T, KrakenError>, VenueError>
    where
        F: std::future::Future<Output = Result<T, KrakenError>>,
    {
        self.budget.acquire(priority, private, charges).await?;
        let out = request.await;
        if let Err(e) = &out {
            self.observe(e, pair);
        }
        Ok(out)
    }

    async fn public_call<T, F>(&self, request: F) -> Result<T, VenueError>
    where
        F: std::future::Future<Output = Result<T, KrakenError>>,
    {
        let charge = [Charge::new(CounterKey::Public, 1.0)];
        self.call(Priority::Query, false, &charge, None, request)
            .await?
            .map_err(|e| self.venue_error(&e))
    }

    async fn private_call<T, F>(
        &self,
        priority: Priority,
        cost: f64,
        request: F,
    ) -> Result<T, VenueError>
    where
        F: std::future::Future<Output = Result<T, KrakenError>>,
    {
        let charge = [Charge::new(CounterKey::Rest, cost)];
        self.call(priority, true, &charge, None, request)
            .await?
            .map_err(|e| self.venue_error(&e))
    }

    /// Reloads AssetPairs.
    pub async fn refresh_pairs(&self) -> Result<Arc<PairDirectory>, VenueError> {
        let raw = self.public_call(self.http.asset_pairs(&[])).await?;
        let dir = Arc::new(PairDirectory::from_asset_pairs(&raw, self.max_open_orders));
        *self.pairs.write().unwrap_or_else(|p| p.into_inner()) = dir.clone();
        Ok(dir)
    }

    /// The pair directory, loaded on first use.
    pub async fn pairs(&self) -> Result<Arc<PairDirectory>, VenueError> {
        let dir = self.pairs.read().unwrap_or_else(|p| p.into_inner()).clone();
        if dir.is_empty() {
            self.refresh_pairs().await
        } else {
            Ok(dir)
        }
    }

    async fn pair(&self, symbol: &str) -> Result<PairInfo, VenueError> {
        self.pairs()
            .await?
            .get(symbol)
            .cloned()
            .ok_or_else(|| VenueError::InvalidArgument(format!("unknown Kraken pair {symbol}")))
    }

    /// SystemStatus (online, maintenance, cancel_only, post_only).
    pub async fn system_status(&self) -> Result<SystemStatus, VenueError> {
        self.public_call(self.http.system_status()).await
    }

    /// Kraken's clock, in Unix seconds.
    pub async fn server_time(&self) -> Result<i64, VenueError> {
        Ok(self.public_call(self.http.server_time()).await?.unixtime)
    }

    fn to_state(
        &self,
        dir: &PairDirectory,
        txid: &str,
        info: &OrderInfo,
    ) -> Result<OrderState, VenueError> {
        let known_client = self
            .tracker()
            .open
            .get(txid)
            .map(|o| o.client_order_id.clone());
        parse::order_state_from(
            txid,
            info,
            dir.get(&info.descr.pair),
            known_client.as_deref(),
        )
    }

    /// Records what a fresh view of orders says, and refreshes the open-order
    /// counts of the budget. `complete_since_ms` means `states` is every open
    /// order as of a request sent at that time: tracked orders placed after it
    /// are kept, the rest are replaced.
    fn learn(&self, dir: &PairDirectory, states: &[OrderState], complete_since_ms: Option<i64>) {
        let mut t = self.tracker();
        if let Some(since) = complete_since_ms {
            t.open.retain(|_, o| o.opened_ms >= since);
            t.confirmed_ms = Some(t.confirmed_ms.map_or(since, |c| c.max(since)));
        }
        for s in states {
            if !s.client_order_id.is_empty() {
                t.unresolved.remove(&s.client_order_id);
            }
            if s.status.is_final() {
                t.open.remove(&s.venue_order_id);
            } else {
                let altname = dir
                    .get(&s.symbol)
                    .map(|p| p.altname.clone())
                    .unwrap_or_else(|| s.symbol.clone());
                t.open.insert(
                    s.venue_order_id.clone(),
                    OpenOrder {
                        altname,
                        opened_ms: s.opened_at_ms,
                        client_order_id: s.client_order_id.clone(),
                    },
                );
            }
        }
        self.budget.set_open_orders(t.open_counts());
    }

    /// Every open order, with the priority of the caller's choosing.
    pub async fn open_orders_at(&self, priority: Priority) -> Result<Vec<OrderState>, VenueError> {
        let dir = self.pairs().await?;
        let asked_ms = self.now_ms();
        let raw = self
            .private_call(
                priority,
                REST_COST_DEFAULT,
                self.http.open_orders(&OpenOrdersParams::default()),
            )
            .await?;
        let states = raw
            .open
            .iter()
            .map(|(txid, info)| self.to_state(&dir, txid, info))
            .collect::<Result<Vec<_>, _>>()?;
        self.learn(&dir, &states, Some(asked_ms));
        Ok(states)
    }

    /// The named orders, with the priority of the caller's choosing. Orders
    /// with a txid go through QueryOrders, 50 a call; orders known only by
    /// client id are resolved with [`KrakenVenue::resolve_order`].
    pub async fn query_orders_at(
        &self,
        priority: Priority,
        orders: &[OrderRef],
    ) -> Result<Vec<OrderState>, VenueError> {
        let dir = self.pairs().await?;
        let mut out = Vec::new();
        let txids: Vec<String> = orders
            .iter()
            .filter_map(|o| o.venue_order_id.clone().filter(|t| !t.is_empty()))
            .collect();
        for chunk in txids.chunks(QUERY_ORDERS_MAX_TXIDS) {
            let params = QueryOrdersParams {
                txids: chunk.to_vec(),
                ..QueryOrdersParams::default()
            };
            let raw = self
                .private_call(priority, REST_COST_DEFAULT, self.http.query_orders(&params))
                .await?;
            let states = raw
                .iter()
                .map(|(txid, info)| self.to_state(&dir, txid, info))
                .collect::<Result<Vec<_>, _>>()?;
            self.learn(&dir, &states, None);
            out.extend(states);
        }
        for o in orders
            .iter()
            .filter(|o| o.venue_order_id.as_deref().is_none_or(str::is_empty))
        {
            if let Resolution::Found(state) =
                self.resolve_order_at(priority, &o.client_order_id).await?
            {
                out.push(*state);
            }
        }
        Ok(out)
    }

    fn client_filter(
        &self,
        client_order_id: &str,
        unresolved: Option<&Unresolved>,
    ) -> ClientFilter {
        match (self.client_id_mode, unresolved) {
            (ClientIdMode::Userref, Some(u)) => ClientFilter::Userref(u.userref),
            _ => ClientFilter::ClOrdId(client_order_id.to_owned()),
        }
    }

    /// Finds an order by its client order id: OpenOrders filtered by
    /// `cl_ord_id` (or `userref` when that is what was sent), then
    /// ClosedOrders with the same filter since the submit. QueryOrders needs
    /// txids and TradesHistory carries neither id, so neither can answer this.
    pub async fn resolve_order(&self, client_order_id: &str) -> Result<Resolution, VenueError> {
        self.resolve_order_at(Priority::Query, client_order_id)
            .await
    }

    async fn resolve_order_at(
        &self,
        priority: Priority,
        client_order_id: &str,
    ) -> Result<Resolution, VenueError> {
        let dir = self.pairs().await?;
        let unresolved = self.tracker().unresolved.get(client_order_id).cloned();
        let filter = self.client_filter(client_order_id, unresolved.as_ref());
        let matches = |info: &OrderInfo| match &filter {
            ClientFilter::ClOrdId(c) => info.cl_ord_id.as_deref() == Some(c.as_str()),
            ClientFilter::Userref(u) => info.userref == Some(i64::from(*u)),
        };
        let (cl_ord_id, userref) = match &filter {
            ClientFilter::ClOrdId(c) => (Some(c.clone()), None),
            ClientFilter::Userref(u) => (None, Some(*u)),
        };
        let open = self
            .private_call(
                priority,
                REST_COST_DEFAULT,
                self.http.open_orders(&OpenOrdersParams {
                    trades: false,
                    userref,
                    cl_ord_id: cl_ord_id.clone(),
                }),
            )
            .await?;
        let found = open.open.iter().find(|(_, i)| matches(i));
        let since_ms = unresolved.as_ref().map(|u| u.sent_ms - RESOLVE_SLACK_MS);
        let found = match found {
            Some((txid, info)) => Some(self.to_state(&dir, txid, info)?),
            None => {
                let closed = self
                    .private_call(
                        priority,
                        REST_COST_DEFAULT,
                        self.http.closed_orders(&ClosedOrdersParams {
                            userref,
                            cl_ord_id,
                            start: since_ms.map(|ms| ms.div_euclid(1000)),
                            ..ClosedOrdersParams::default()
                        }),
                    )
                    .await?;
                // cl_ord_id is unique among open orders only: take the newest.
                let newest = closed
                    .closed
                    .iter()
                    .filter(|(_, i)| matches(i))
                    .filter(|(_, i)| since_ms.is_none_or(|s| i.opentm.to_ms() >= s))
                    .max_by_key(|(_, i)| i.opentm);
                match newest {
                    Some((txid, info)) => Some(self.to_state(&dir, txid, info)?),
                    None => None,
                }
            }
        };
        match found {
            Some(mut state) => {
                if state.client_order_id.is_empty() {
                    state.client_order_id = client_order_id.to_owned();
                }
                self.learn(&dir, std::slice::from_ref(&state), None);
                Ok(Resolution::Found(Box::new(state)))
            }
            None => {
                let conclusive = unresolved
                    .as_ref()
                    .and_then(|u| u.deadline_ms)
                    .is_some_and(|d| self.now_ms() > d + DEADLINE_GRACE_MS);
                if conclusive {
                    let mut t = self.tracker();
                    t.unresolved.remove(client_order_id);
                    self.budget.set_open_orders(t.open_counts());
                }
                Ok(Resolution::NotFound { conclusive })
            }
        }
    }

    /// CancelAllOrdersAfter: arms (or with 0 disarms) the dead man's switch.
    /// The refresher loop belongs to the gateway.
    pub async fn cancel_all_orders_after(
        &self,
        timeout_s: u32,
    ) -> Result<CancelAllOrdersAfterResult, VenueError> {
        self.private_call(
            Priority::Cancel,
            REST_COST_DEFAULT,
            self.http.cancel_all_orders_after(timeout_s),
        )
        .await
    }

    /// CancelAll: every open order of the key. Returns how many.
    pub async fn cancel_all(&self) -> Result<u32, VenueError> {
        let r = self
            .private_call(Priority::Cancel, REST_COST_DEFAULT, self.http.cancel_all())
            .await?;
        let mut t = self.tracker();
        t.open.clear();
        self.budget.set_open_orders(t.open_counts());
        Ok(r.count)
    }

    /// TradesHistory (costs 2 on the REST counter).
    pub async fn trades_history(
        &self,
        priority: Priority,
        params: &TradesHistoryParams,
    ) -> Result<TradesHistoryResult, VenueError> {
        self.private_call(
            priority,
            REST_COST_HISTORY,
            self.http.trades_history(params),
        )
        .await
    }

    /// Balances, with the priority of the caller's choosing.
    pub async fn balances_at(&self, priority: Priority) -> Result<Vec<Balance>, VenueError> {
        let raw = self
            .private_call(priority, REST_COST_DEFAULT, self.http.balance_ex())
            .await?;
        Ok(parse::balances_from_ex(&raw))
    }

    fn add_order_params(
        &self,
        order: &NewOrder,
        pair: &PairInfo,
    ) -> Result<AddOrderParams, VenueError> {
        if order.reduce_only {
            return Err(VenueError::InvalidArgument(
                "Kraken spot has no reduce-only orders".into(),
            ));
        }
        if order.post_only && order.order_type == OrderType::Market {
            return Err(VenueError::InvalidArgument(
                "a market order cannot be post-only".into(),
            ));
        }
        let cl_ord_id = if self.client_id_mode.sends_cl_ord_id() {
            check_cl_ord_id(&order.client_order_id)
                .map_err(|e| VenueError::InvalidArgument(e.to_string()))?;
            Some(order.client_order_id.clone())
        } else {
            None
        };
        let deadline = self
            .deadline_s
            .map(|s| parse::rfc3339_utc(self.now_ms().div_euclid(1000) + i64::from(s)));
        Ok(AddOrderParams {
            pair: pair.altname.clone(),
            side: match order.side {
                Side::Buy => KrakenSide::Buy,
                Side::Sell => KrakenSide::Sell,
            },
            ordertype: match order.order_type {
                OrderType::Limit => KrakenOrderType::Limit,
                OrderType::Market => KrakenOrderType::Market,
            },
            volume: order.volume,
            price: order.price,
            post_only: order.post_only,
            userref: self.client_id_mode.sends_userref().then_some(order.userref),
            cl_ord_id,
            deadline,
            validate: false,
        })
    }
}

#[async_trait]
impl Venue for KrakenVenue {
    fn name(&self) -> &'static str {
        VENUE_NAME
    }

    async fn instruments(&self) -> Result<Vec<Instrument>, VenueError> {
        Ok(self.refresh_pairs().await?.instruments())
    }

    async fn ticker(&self, symbol: &str) -> Result<Ticker, VenueError> {
        let pair = self.pair(symbol).await?;
        let raw = self.public_call(self.http.ticker(&pair.altname)).await?;
        let info = match raw.get(&pair.key).or_else(|| raw.values().next()) {
            Some(i) => i,
            None => return Err(VenueError::Parse(format!("Ticker: no entry for {symbol}"))),
        };
        parse::ticker_from(&pair.instrument.symbol, info, self.now_ms())
    }

    async fn candles(
        &self,
        symbol: &str,
        interval_minutes: u32,
        since_ms: i64,
    ) -> Result<Vec<Candle>, VenueError> {
        if !OHLC_INTERVALS.contains(&interval_minutes) {
            return Err(VenueError::InvalidArgument(format!(
                "Kraken has no {interval_minutes}-minute candles (use one of {OHLC_INTERVALS:?})"
            )));
        }
        let pair = self.pair(symbol).await?;
        // `since` is exclusive on Kraken's side: ask from one second earlier.
        let since = (since_ms > 0).then(|| since_ms.div_euclid(1000) - 1);
        let raw = self
            .public_call(self.http.ohlc(&pair.altname, interval_minutes, since))
            .await?;
        parse::candles_from(&raw, since_ms)
    }

    async fn balances(&self) -> Result<Vec<Balance>, VenueError> {
        self.balances_at(Priority::Query).await
    }

    async fn place_order(&self, order: &NewOrder) -> Result<PlaceOutcome, VenueError> {
        let pair = self.pair(&order.symbol).await?;
        let mut params = self.add_order_params(order, &pair)?;
        self.budget.check_lockout()?;
        if let Err(limit) = self.budget.check_open_order_slot(&pair.altname) {
            // Orders accepted since the last complete view are counted open on
            // our word; one that filled at once still holds a place until the
            // next OpenOrders. Look before refusing (one call; after it every
            // counted order is confirmed, so a true limit refuses without one).
            if !self.tracker().has_unconfirmed(&pair.altname) {
                return Err(limit);
            }
            tracing::debug!(pair = %pair.altname, "at the open-order limit by our count; checking with Kraken");
            self.open_orders_at(Priority::Place).await?;
            self.budget.check_open_order_slot(&pair.altname)?;
        }
        let sent_ms = self.now_ms();
        {
            let mut t = self.tracker();
            if t.unresolved.contains_key(&order.client_order_id) {
                return Err(VenueError::InvalidArgument(format!(
                    "{} is already in flight with an unknown outcome; resolve it first",
                    order.client_order_id
                )));
            }
            t.unresolved.insert(
                order.client_order_id.clone(),
                Unresolved {
                    altname: pair.altname.clone(),
                    userref: order.userref,
                    sent_ms,
                    deadline_ms: self
                        .deadline_s
                        .map(|s| (sent_ms.div_euclid(1000) + i64::from(s)) * 1000),
                },
            );
            self.budget.set_open_orders(t.open_counts());
        }
        let forget = |this: &KrakenVenue| {
            let mut t = this.tracker();
            t.unresolved.remove(&order.client_order_id);
            this.budget.set_open_orders(t.open_counts());
        };
        let charge = [Charge::new(
            CounterKey::Trading(pair.altname.clone()),
            TRADING_COST_ADD_ORDER,
        )];
        if let Err(e) = self.budget.acquire(Priority::Place, true, &charge).await {
            forget(self);
            return Err(e);
        }
        // The deadline counts from now, not from before the wait for budget:
        // an order that queued behind the trading counter must not arrive
        // already expired.
        if let Some(s) = self.deadline_s {
            let now_s = self.now_ms().div_euclid(1000);
            params.deadline = Some(parse::rfc3339_utc(now_s + i64::from(s)));
            if let Some(u) = self.tracker().unresolved.get_mut(&order.client_order_id) {
                u.deadline_ms = Some((now_s + i64::from(s)) * 1000);
            }
        }
        let answer = self.http.add_order(&params).await;
        if let Err(e) = &answer {
            self.observe(e, Some(&pair.altname));
        }
        match answer {
            Ok(result) => match result.txid.first() {
                Some(txid) => {
                    // The answer's arrival time is an upper bound of Kraken's
                    // opentm: measuring age from it never underestimates a
                    // cancel penalty (the send time would, by the latency).
                    let acked_ms = self.now_ms();
                    {
                        let mut t = self.tracker();
                        t.unresolved.remove(&order.client_order_id);
                        t.open.insert(
                            txid.clone(),
                            OpenOrder {
                                altname: pair.altname.clone(),
                                opened_ms: acked_ms,
                                client_order_id: order.client_order_id.clone(),
                            },
                        );
                        self.budget.set_open_orders(t.open_counts());
                    }
                    let mut state = OrderState::pending(order, sent_ms);
                    state.venue_order_id = txid.clone();
                    state.symbol = pair.instrument.symbol.clone();
                    state.status = OrderStatus::Open;
                    Ok(PlaceOutcome::Accepted(state))
                }
                None => Ok(PlaceOutcome::Unknown {
                    reason: format!("AddOrder answered without a txid: {}", result.descr.order),
                }),
            },
            Err(e) if e.is_outcome_unknown() => {
                tracing::warn!(client_order_id = %order.client_order_id, error = %e, "AddOrder outcome unknown");
                Ok(PlaceOutcome::Unknown {
                    reason: e.to_string(),
                })
            }
            Err(e) => {
                forget(self);
                Err(self.venue_error(&e))
            }
        }
    }

    async fn cancel_order(&self, order: &OrderRef) -> Result<(), VenueError> {
        let (txid, known) = {
            let t = self.tracker();
            let txid = order
                .venue_order_id
                .clone()
                .filter(|v| !v.is_empty())
                .or_else(|| t.txid_of(&order.client_order_id));
            let known = txid
                .as_ref()
                .and_then(|id| t.open.get(id))
                .map(|o| (o.altname.clone(), o.opened_ms))
                .or_else(|| {
                    t.unresolved
                        .get(&order.client_order_id)
                        .map(|u| (u.altname.clone(), u.sent_ms))
                });
            (txid, known)
        };
        let target = match (&txid, self.client_id_mode.sends_cl_ord_id()) {
            (Some(t), _) => CancelTarget::Txid(t.clone()),
            (None, true) if !order.client_order_id.is_empty() => {
                CancelTarget::ClOrdId(order.client_order_id.clone())
            }
            _ => {
                return Err(VenueError::InvalidArgument(format!(
                    "cannot cancel {}: no txid and no cl_ord_id was sent",
                    order.client_order_id
                )));
            }
        };
        let charges: Vec<Charge> = match &known {
            Some((altname, opened_ms)) => {
                let penalty = cancel_penalty(self.now_ms() - opened_ms);
                if penalty > 0.0 {
                    vec![Charge::new(CounterKey::Trading(altname.clone()), penalty)]
                } else {
                    Vec::new()
                }
            }
            None => {
                tracing::debug!(?order, "cancel of an untracked order: penalty not modelled");
                Vec::new()
            }
        };
        let pair = known.as_ref().map(|(p, _)| p.clone());
        let answer = self
            .call(
                Priority::Cancel,
                true,
                &charges,
                pair.as_deref(),
                self.http.cancel_order(&target),
            )
            .await?;
        let gone = match &answer {
            Ok(_) => true,
            Err(e) => matches!(e.api(), Some(KrakenApiError::UnknownOrder)),
        };
        if gone {
            let mut t = self.tracker();
            match &txid {
                Some(id) => {
                    t.open.remove(id);
                }
                None => t
                    .open
                    .retain(|_, o| o.client_order_id != order.client_order_id),
            }
            self.budget.set_open_orders(t.open_counts());
        }
        answer.map(|_| ()).map_err(|e| self.venue_error(&e))
    }

    async fn open_orders(&self) -> Result<Vec<OrderState>, VenueError> {
        self.open_orders_at(Priority::Query).await
    }

    async fn query_orders(&self, orders: &[OrderRef]) -> Result<Vec<OrderState>, VenueError> {
        self.query_orders_at(Priority::Query, orders).await
    }

    fn max_query_batch(&self) -> usize {
        QUERY_ORDERS_MAX_TXIDS
    }

    fn budget(&self) -> herd_venue::BudgetSnapshot {
        self.budget.snapshot()
    }

    fn max_client_order_id_len(&self) -> usize {
        if self.client_id_mode.sends_cl_ord_id() {
            CL_ORD_ID_MAX_TEXT
        } else {
            36
        }
    }

    fn min_pending_timeout_ms(&self) -> i64 {
        // Until the AddOrder deadline (whole seconds, rounded up) and its
        // grace have passed, "not found" is not yet conclusive.
        self.deadline_s
            .map_or(0, |s| (i64::from(s) + 1) * 1000 + DEADLINE_GRACE_MS)
    }

    async fn arm_dead_mans_switch(&self, timeout_s: u32) -> Result<bool, VenueError> {
        self.cancel_all_orders_after(timeout_s).await.map(|_| true)
    }

    async fn key_info(&self) -> Result<Option<KeyInfo>, VenueError> {
        let raw = self
            .private_call(Priority::Query, REST_COST_DEFAULT, self.http.api_key_info())
            .await?;
        self.nonce_window_s
            .store(raw.nonce_window, Ordering::Relaxed);
        Ok(Some(parse::key_info(&raw)))
    }

    async fn clock_offset_ms(&self) -> Result<Option<ClockReading>, VenueError> {
        // Straight to the wire, not through the budget: a wait for budget
        // would count as round trip. One public call a minute.
        let before = self.wall.now_ms();
        let t = self
            .http
            .server_time()
            .await
            .map_err(|e| self.venue_error(&e))?;
        let after = self.wall.now_ms();
        // Kraken's Time has whole seconds: the middle of that second against
        // the middle of our round trip, off by up to half a second plus half
        // the round trip.
        Ok(Some(ClockReading {
            offset_ms: t.unixtime * 1000 + 500 - (before + after) / 2,
            uncertainty_ms: 500 + (after - before + 1) / 2,
        }))
    }

    fn clock_offset_limit_ms(&self) -> Option<i64> {
        match self.nonce_window_s.load(Ordering::Relaxed) {
            0 => None,
            w => Some(i64::from(w) * 1000),
        }
    }
}
