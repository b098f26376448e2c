//! [`BybitVenue`]: the domain client the gateway uses. It speaks herd's
//! types over the raw [`BybitHttpClient`], keeps the instrument directory,
//! remembers which (category, symbol) and userref each of its orders has
//! (Bybit's order queries need the category, and Bybit has no userref), and
//! resolves submits whose outcome is unknown by their orderLinkId.
//!
//! Order submits: the orderLinkId is the idempotency key (herd's client
//! order id). A duplicate-orderLinkId answer means the order was placed
//! before: it is looked up and reported as accepted. A timeout, 5xx,
//! broken connection or retCode 10016 is an unknown outcome: the order is
//! looked up once by orderLinkId and otherwise left to the poller.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use async_trait::async_trait;
use herd_venue::{
    AccountMargin, Balance, BudgetSnapshot, Candle, Clock, ClockReading, FundingPayment,
    FundingPaymentQuery, FundingRate, Instrument, InstrumentKind, KeyInfo, NewOrder, OrderRef,
    OrderState, OrderStatus, OrderType, PlaceOutcome, Position, SystemClock, Ticker, Venue,
    VenueError,
};
use rust_decimal::Decimal;

use crate::budget::{Endpoint, RateBudget};
use crate::common::consts::{ORDER_PAGE_LIMIT, SETTLE_COIN, TRANSACTION_LOG_SPAN_MS, VENUE_NAME};
use crate::common::credential::{CREDENTIAL_SPEC, Credential};
use crate::common::enums::{BybitOrderType, BybitSide, Category, TimeInForce};
use crate::common::symbol::{BybitSymbol, from_herd};
use crate::config::BybitConfig;
use crate::http::models::OrderRow;
use crate::http::query::{CancelOrder, CreateOrder, OrderQuery, check_order_link_id};
use crate::http::{ApiErrorKind, BybitError, BybitHttpClient};
use crate::parse::{self, Directory, Fees, InstrumentMeta};

/// Orders remembered at most (oldest final ones are dropped first).
const MAX_REMEMBERED: usize = 100_000;
/// Pages followed at most when listing (a cursor that never ends is a bug).
const MAX_PAGES: usize = 50;
/// How far back funding payments are read at most: 30 days.
pub const FUNDING_LOOKBACK_MS: i64 = 30 * 24 * 3_600_000;
/// How far past the estimated venue time an open-ended history read asks.
const CLOCK_ESTIMATE_SLACK_MS: i64 = 10_000;

#[derive(Debug, Clone)]
struct Remembered {
    bybit: BybitSymbol,
    userref: i32,
    order_id: Option<String>,
}

/// The Bybit V5 venue: spot and USDT linear perpetuals.
#[derive(Debug)]
pub struct BybitVenue {
    http: BybitHttpClient,
    clock: Arc<dyn Clock>,
    fees: Fees,
    instruments_ttl_ms: i64,
    directory: RwLock<Arc<Directory>>,
    directory_at_ms: AtomicI64,
    orders: Mutex<HashMap<String, Remembered>>,
}

impl BybitVenue {
    /// Builds the venue from its configuration with the system clock.
    pub fn new(config: &BybitConfig) -> Result<BybitVenue, VenueError> {
        let credential = config
            .credentials
            .load(&CREDENTIAL_SPEC)
            .map_err(|e| VenueError::Auth(e.to_string()))?;
        BybitVenue::with_parts(config, credential, Arc::new(SystemClock))
    }

    /// Builds the venue from explicit parts (tests inject the clock here).
    pub fn with_parts(
        config: &BybitConfig,
        credential: Option<Credential>,
        clock: Arc<dyn Clock>,
    ) -> Result<BybitVenue, VenueError> {
        let budget = Arc::new(RateBudget::new(config.budget(), clock.clone()));
        let http = BybitHttpClient::new(&config.http(), credential, budget, clock.clone())
            .map_err(|e| VenueError::Other(e.to_string()))?;
        Ok(BybitVenue {
            http,
            clock,
            fees: config.fee_rates(),
            instruments_ttl_ms: config.instruments_ttl_ms,
            directory: RwLock::new(Arc::new(Directory::default())),
            directory_at_ms: AtomicI64::new(i64::MIN),
            orders: Mutex::new(HashMap::new()),
        })
    }

    /// The raw endpoint client.
    pub fn http(&self) -> &BybitHttpClient {
        &self.http
    }

    fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    fn venue_error(
        &self,
        e: &BybitError,
        endpoint: Endpoint,
        category: Option<Category>,
    ) -> VenueError {
        e.to_venue_error(self.http.budget().retry_after_ms(endpoint, category))
    }

    fn memory(&self) -> std::sync::MutexGuard<'_, HashMap<String, Remembered>> {
        self.orders.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn remember(&self, link_id: &str, r: Remembered) {
        let mut m = self.memory();
        if m.len() >= MAX_REMEMBERED {
            // Rare: drop everything rather than track ages; userrefs of
            // older orders fall back to 0 and categories are searched.
            m.clear();
        }
        m.insert(link_id.to_string(), r);
    }

    fn remembered(&self, link_id: &str) -> Option<Remembered> {
        self.memory().get(link_id).cloned()
    }

    /// Reloads instruments-info for spot and linear.
    pub async fn refresh_instruments(&self) -> Result<Arc<Directory>, VenueError> {
        let mut metas: Vec<InstrumentMeta> = Vec::new();
        for category in [Category::Spot, Category::Linear] {
            let rows = self
                .http
                .instruments(category)
                .await
                .map_err(|e| self.venue_error(&e, Endpoint::Instruments, Some(category)))?;
            for row in &rows {
                if let Some(m) = parse::instrument_from(category, row, &self.fees)? {
                    metas.push(m);
                }
            }
        }
        let dir = Arc::new(Directory::new(metas));
        *self.directory.write().unwrap_or_else(|p| p.into_inner()) = dir.clone();
        self.directory_at_ms.store(self.now_ms(), Ordering::SeqCst);
        Ok(dir)
    }

    /// The directory, loaded on first use and refreshed after its TTL.
    pub async fn directory(&self) -> Result<Arc<Directory>, VenueError> {
        let dir = self
            .directory
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let age = self
            .now_ms()
            .saturating_sub(self.directory_at_ms.load(Ordering::SeqCst));
        if dir.is_empty() || age >= self.instruments_ttl_ms {
            self.refresh_instruments().await
        } else {
            Ok(dir)
        }
    }

    async fn meta(&self, symbol: &str) -> Result<InstrumentMeta, VenueError> {
        let dir = self.directory().await?;
        if let Some(m) = dir.get(symbol) {
            return Ok(m.clone());
        }
        Err(VenueError::InvalidArgument(format!(
            "symbol: {symbol:?} is not a trading Bybit spot pair or USDT perpetual \
             (perpetuals are named like \"BTCUSDT-PERP\")"
        )))
    }

    fn to_state(
        &self,
        dir: &Directory,
        category: Category,
        row: &OrderRow,
    ) -> Result<OrderState, VenueError> {
        let remembered = self.remembered(&row.order_link_id);
        let userref = remembered.as_ref().map_or(0, |r| r.userref);
        let state =
            parse::order_state_from(category, row, dir.by_bybit(category, &row.symbol), userref)?;
        if let Some(mut r) = remembered
            && r.order_id.is_none()
        {
            r.order_id = Some(state.venue_order_id.clone());
            self.remember(&row.order_link_id, r);
        }
        Ok(state)
    }

    /// Looks one order up by orderId or orderLinkId: the open list first,
    /// then the history. `Ok(None)` when Bybit does not know it.
    pub async fn find_order(
        &self,
        category: Category,
        symbol: Option<&str>,
        order_id: Option<&str>,
        link_id: &str,
    ) -> Result<Option<OrderState>, VenueError> {
        let dir = self.directory().await?;
        let q = OrderQuery {
            symbol: symbol.map(str::to_owned),
            settle_coin: (category == Category::Linear && symbol.is_none())
                .then(|| SETTLE_COIN.to_string()),
            order_id: order_id.map(str::to_owned).filter(|s| !s.is_empty()),
            order_link_id: Some(link_id.to_string()).filter(|_| order_id.is_none_or(str::is_empty)),
            ..OrderQuery::default()
        };
        let open = self
            .http
            .order_realtime(category, &q)
            .await
            .map_err(|e| self.venue_error(&e, Endpoint::OrderRealtime, Some(category)))?;
        if let Some(row) = open.list.first() {
            return self.to_state(&dir, category, row).map(Some);
        }
        let closed = self
            .http
            .order_history(category, &q)
            .await
            .map_err(|e| self.venue_error(&e, Endpoint::OrderHistory, Some(category)))?;
        match closed.list.first() {
            Some(row) => self.to_state(&dir, category, row).map(Some),
            None => Ok(None),
        }
    }

    /// Finds an order known only by its refs: the remembered category, else
    /// both.
    async fn locate(&self, r: &OrderRef) -> Result<Option<OrderState>, VenueError> {
        let remembered = self.remembered(&r.client_order_id);
        let order_id = r
            .venue_order_id
            .clone()
            .or_else(|| remembered.as_ref().and_then(|m| m.order_id.clone()));
        let tries: Vec<(Category, Option<String>)> = match &remembered {
            Some(m) => vec![(m.bybit.category, Some(m.bybit.symbol.clone()))],
            None => vec![(Category::Spot, None), (Category::Linear, None)],
        };
        for (category, symbol) in tries {
            if let Some(s) = self
                .find_order(
                    category,
                    symbol.as_deref(),
                    order_id.as_deref(),
                    &r.client_order_id,
                )
                .await?
            {
                return Ok(Some(s));
            }
        }
        Ok(None)
    }

    fn create_body(meta: &InstrumentMeta, order: &NewOrder) -> Result<CreateOrder, VenueError> {
        check_order_link_id(&order.client_order_id)
            .map_err(|m| VenueError::InvalidArgument(format!("client_order_id: {m}")))?;
        let category = meta.bybit.category;
        if meta.qty_step > Decimal::ZERO && !(order.volume % meta.qty_step).is_zero() {
            return Err(VenueError::InvalidArgument(format!(
                "volume: {} is not a multiple of {}'s quantity step {}",
                order.volume, meta.instrument.symbol, meta.qty_step
            )));
        }
        let time_in_force = match (order.order_type, order.post_only) {
            (_, true) => TimeInForce::PostOnly,
            (OrderType::Market, false) => TimeInForce::Ioc,
            (OrderType::Limit, false) => TimeInForce::Gtc,
        };
        Ok(CreateOrder {
            category,
            symbol: meta.bybit.symbol.clone(),
            side: BybitSide::from(order.side),
            order_type: BybitOrderType::from(order.order_type),
            qty: order.volume.normalize().to_string(),
            price: order.price.map(|p| p.normalize().to_string()),
            time_in_force,
            order_link_id: order.client_order_id.clone(),
            // Bybit takes reduceOnly for derivatives only; spot ignores the flag.
            reduce_only: (category == Category::Linear && order.reduce_only).then_some(true),
            // A spot market buy is sized in quote unless told otherwise;
            // herd's volumes are always base.
            market_unit: (category == Category::Spot
                && order.order_type == OrderType::Market
                && order.side == herd_venue::Side::Buy)
                .then(|| "baseCoin".to_string()),
        })
    }

    /// What an order looks like right after Bybit accepted it, when the
    /// follow-up query did not answer.
    fn accepted_state(
        &self,
        order: &NewOrder,
        meta: &InstrumentMeta,
        order_id: &str,
    ) -> OrderState {
        OrderState {
            venue_order_id: order_id.to_string(),
            status: OrderStatus::Open,
            fee_asset: match (meta.instrument.kind, order.side) {
                (InstrumentKind::Spot, herd_venue::Side::Buy) => meta.instrument.base.clone(),
                _ => meta.instrument.quote.clone(),
            },
            ..OrderState::pending(order, self.now_ms())
        }
    }

    async fn resolve_after_submit(
        &self,
        meta: &InstrumentMeta,
        order: &NewOrder,
        reason: String,
    ) -> PlaceOutcome {
        match self
            .find_order(
                meta.bybit.category,
                Some(&meta.bybit.symbol),
                None,
                &order.client_order_id,
            )
            .await
        {
            Ok(Some(state)) => PlaceOutcome::Accepted(state),
            Ok(None) => PlaceOutcome::Unknown { reason },
            Err(e) => PlaceOutcome::Unknown {
                reason: format!("{reason}; lookup by orderLinkId failed: {e}"),
            },
        }
    }

    /// Every open order of one category, following the cursor.
    async fn open_orders_of(
        &self,
        dir: &Directory,
        category: Category,
    ) -> Result<Vec<OrderState>, VenueError> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let q = OrderQuery {
                settle_coin: (category == Category::Linear).then(|| SETTLE_COIN.to_string()),
                open_only: Some(0),
                limit: Some(ORDER_PAGE_LIMIT),
                cursor: cursor.clone(),
                ..OrderQuery::default()
            };
            let page = self
                .http
                .order_realtime(category, &q)
                .await
                .map_err(|e| self.venue_error(&e, Endpoint::OrderRealtime, Some(category)))?;
            for row in &page.list {
                out.push(self.to_state(dir, category, row)?);
            }
            if page.next_page_cursor.is_empty() || page.list.is_empty() {
                break;
            }
            cursor = Some(page.next_page_cursor);
        }
        Ok(out)
    }

    async fn unified_account(&self) -> Result<crate::http::models::WalletAccount, VenueError> {
        let w = self
            .http
            .wallet_balance()
            .await
            .map_err(|e| self.venue_error(&e, Endpoint::WalletBalance, None))?;
        w.list.into_iter().next().ok_or_else(|| {
            VenueError::Parse("wallet-balance: no UNIFIED account in the list".into())
        })
    }
}

#[async_trait]
impl Venue for BybitVenue {
    fn name(&self) -> &'static str {
        VENUE_NAME
    }

    async fn instruments(&self) -> Result<Vec<Instrument>, VenueError> {
        Ok(self.directory().await?.instruments())
    }

    async fn ticker(&self, symbol: &str) -> Result<Ticker, VenueError> {
        let meta = self.meta(symbol).await?;
        let category = meta.bybit.category;
        let page = self
            .http
            .tickers(category, Some(&meta.bybit.symbol))
            .await
            .map_err(|e| self.venue_error(&e, Endpoint::Tickers, Some(category)))?;
        let row = page
            .list
            .iter()
            .find(|r| r.symbol == meta.bybit.symbol)
            .ok_or_else(|| VenueError::Parse(format!("tickers: no row for {symbol}")))?;
        parse::ticker_from(symbol, row, self.http.server_now_ms())
    }

    async fn candles(
        &self,
        symbol: &str,
        interval_minutes: u32,
        since_ms: i64,
    ) -> Result<Vec<Candle>, VenueError> {
        let meta = self.meta(symbol).await?;
        let interval = parse::kline_interval(interval_minutes)?;
        let k = self
            .http
            .kline(
                meta.bybit.category,
                &meta.bybit.symbol,
                interval,
                Some(since_ms),
            )
            .await
            .map_err(|e| self.venue_error(&e, Endpoint::Kline, Some(meta.bybit.category)))?;
        let mut candles = parse::candles_from(&k)?;
        candles.retain(|c| c.open_time_ms >= since_ms);
        Ok(candles)
    }

    async fn balances(&self) -> Result<Vec<Balance>, VenueError> {
        parse::balances_from(&self.unified_account().await?)
    }

    async fn place_order(&self, order: &NewOrder) -> Result<PlaceOutcome, VenueError> {
        let meta = self.meta(&order.symbol).await?;
        let body = BybitVenue::create_body(&meta, order)?;
        self.remember(
            &order.client_order_id,
            Remembered {
                bybit: meta.bybit.clone(),
                userref: order.userref,
                order_id: None,
            },
        );
        match self.http.create_order(&body).await {
            Ok(ids) => {
                if let Some(mut r) = self.remembered(&order.client_order_id) {
                    r.order_id = Some(ids.order_id.clone());
                    self.remember(&order.client_order_id, r);
                }
                // Bybit's create is asynchronous: ask what became of it.
                match self
                    .find_order(
                        meta.bybit.category,
                        Some(&meta.bybit.symbol),
                        Some(&ids.order_id),
                        &order.client_order_id,
                    )
                    .await
                {
                    Ok(Some(state)) => Ok(PlaceOutcome::Accepted(state)),
                    Ok(None) | Err(_) => Ok(PlaceOutcome::Accepted(self.accepted_state(
                        order,
                        &meta,
                        &ids.order_id,
                    ))),
                }
            }
            Err(e) if e.kind() == Some(ApiErrorKind::DuplicateOrderLinkId) => {
                tracing::info!(order_link_id = %order.client_order_id, "bybit: orderLinkId already placed; looking it up");
                Ok(self
                    .resolve_after_submit(&meta, order, format!("duplicate orderLinkId: {e}"))
                    .await)
            }
            Err(e) if e.is_outcome_unknown() => {
                tracing::warn!(order_link_id = %order.client_order_id, error = %e, "bybit: order outcome unknown; resolving by orderLinkId");
                Ok(self.resolve_after_submit(&meta, order, e.to_string()).await)
            }
            Err(e) => {
                self.memory().remove(&order.client_order_id);
                Err(self.venue_error(&e, Endpoint::OrderCreate, Some(meta.bybit.category)))
            }
        }
    }

    async fn cancel_order(&self, order: &OrderRef) -> Result<(), VenueError> {
        let (bybit, order_id) = match self.remembered(&order.client_order_id) {
            Some(r) => (r.bybit, order.venue_order_id.clone().or(r.order_id)),
            None => {
                let found = self
                    .locate(order)
                    .await?
                    .ok_or_else(|| VenueError::UnknownOrder(order.client_order_id.clone()))?;
                (from_herd(&found.symbol), Some(found.venue_order_id))
            }
        };
        let order_id = order_id.filter(|s| !s.is_empty());
        let cancel = CancelOrder {
            category: bybit.category,
            symbol: bybit.symbol.clone(),
            order_link_id: order_id.is_none().then(|| order.client_order_id.clone()),
            order_id,
        };
        self.http
            .cancel_order(&cancel)
            .await
            .map(|_| ())
            .map_err(|e| self.venue_error(&e, Endpoint::OrderCancel, Some(bybit.category)))
    }

    async fn open_orders(&self) -> Result<Vec<OrderState>, VenueError> {
        let dir = self.directory().await?;
        let mut out = self.open_orders_of(&dir, Category::Spot).await?;
        out.extend(self.open_orders_of(&dir, Category::Linear).await?);
        Ok(out)
    }

    async fn query_orders(&self, orders: &[OrderRef]) -> Result<Vec<OrderState>, VenueError> {
        let mut out = Vec::new();
        for r in orders {
            if let Some(s) = self.locate(r).await? {
                if s.status.is_final() {
                    // Keep the userref for this answer, then forget the order.
                    self.memory().remove(&r.client_order_id);
                }
                out.push(s);
            }
        }
        Ok(out)
    }

    fn max_query_batch(&self) -> usize {
        20
    }

    fn budget(&self) -> BudgetSnapshot {
        self.http.budget().snapshot()
    }

    async fn funding_rates(&self, symbols: &[String]) -> Result<Vec<FundingRate>, VenueError> {
        let dir = self.directory().await?;
        for s in symbols {
            match dir.get(s) {
                Some(m) if m.bybit.category == Category::Linear => {}
                _ => {
                    return Err(VenueError::InvalidArgument(format!(
                        "symbols: {s:?} is not a Bybit USDT perpetual (like \"BTCUSDT-PERP\")"
                    )));
                }
            }
        }
        let single = match symbols {
            [one] => dir.get(one).map(|m| m.bybit.symbol.clone()),
            _ => None,
        };
        let page = self
            .http
            .tickers(Category::Linear, single.as_deref())
            .await
            .map_err(|e| self.venue_error(&e, Endpoint::Tickers, Some(Category::Linear)))?;
        let now = self.http.server_now_ms();
        let mut out = Vec::new();
        for row in &page.list {
            let Some(meta) = dir.by_bybit(Category::Linear, &row.symbol) else {
                continue;
            };
            let herd = &meta.instrument.symbol;
            if !symbols.is_empty() && !symbols.contains(herd) {
                continue;
            }
            out.push(parse::funding_from(
                herd,
                row,
                meta.funding_interval_hours,
                now,
            )?);
        }
        Ok(out)
    }

    async fn positions(&self) -> Result<Vec<Position>, VenueError> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let page = self
                .http
                .positions(SETTLE_COIN, cursor.as_deref())
                .await
                .map_err(|e| {
                    self.venue_error(&e, Endpoint::PositionList, Some(Category::Linear))
                })?;
            for row in &page.list {
                out.extend(parse::position_from(row, SETTLE_COIN)?);
            }
            if page.next_page_cursor.is_empty() || page.list.is_empty() {
                break;
            }
            cursor = Some(page.next_page_cursor);
        }
        Ok(out)
    }

    async fn key_info(&self) -> Result<Option<KeyInfo>, VenueError> {
        let raw = self
            .http
            .query_api()
            .await
            .map_err(|e| self.venue_error(&e, Endpoint::QueryApi, None))?;
        parse::key_info(&raw).map(Some)
    }

    async fn clock_offset_ms(&self) -> Result<Option<ClockReading>, VenueError> {
        let before = self.clock.now_ms();
        let offset_ms = self
            .http
            .sync_time()
            .await
            .map_err(|e| self.venue_error(&e, Endpoint::Time, None))?;
        let after = self.clock.now_ms();
        // Bybit's time has nanoseconds: only the round trip blurs it.
        Ok(Some(ClockReading {
            offset_ms,
            uncertainty_ms: (after - before + 1) / 2,
        }))
    }

    fn clock_offset_limit_ms(&self) -> Option<i64> {
        Some(self.http.recv_window_ms())
    }

    async fn account_margin(&self) -> Result<AccountMargin, VenueError> {
        let account = self.unified_account().await?;
        parse::margin_from(&account, self.http.server_now_ms())
    }

    async fn funding_payments(
        &self,
        query: &FundingPaymentQuery,
    ) -> Result<Vec<FundingPayment>, VenueError> {
        let symbol = match &query.symbol {
            Some(s) => {
                let b = from_herd(s);
                if b.category != Category::Linear {
                    return Err(VenueError::InvalidArgument(format!(
                        "symbol: {s:?} is not a perpetual"
                    )));
                }
                Some(b.symbol)
            }
            None => None,
        };
        // "Until now" reaches a little past the venue's clock as estimated:
        // the estimate can trail by a round trip, and a settlement booked in
        // that gap would otherwise be missed until the next read.
        let end = query
            .until_ms
            .unwrap_or_else(|| self.http.server_now_ms() + CLOCK_ESTIMATE_SLACK_MS);
        // Bybit answers at most 7 days per query, so history is asked for span
        // by span; more than FUNDING_LOOKBACK_MS back is not asked for at all
        // (callers keep what they have already read).
        let mut start = query.since_ms.max(end - FUNDING_LOOKBACK_MS);
        let mut out = Vec::new();
        while start < end {
            let span_end = (start + TRANSACTION_LOG_SPAN_MS).min(end);
            let mut cursor: Option<String> = None;
            for _ in 0..MAX_PAGES {
                let page = self
                    .http
                    .transaction_log(
                        "SETTLEMENT",
                        symbol.as_deref(),
                        start,
                        span_end - 1,
                        cursor.as_deref(),
                    )
                    .await
                    .map_err(|e| self.venue_error(&e, Endpoint::TransactionLog, None))?;
                for row in page.list.iter().filter(|r| r.kind == "SETTLEMENT") {
                    out.push(parse::funding_payment_from(row)?);
                }
                if page.next_page_cursor.is_empty() || page.list.is_empty() {
                    break;
                }
                cursor = Some(page.next_page_cursor);
            }
            start = span_end;
            if query.limit > 0 && out.len() >= query.limit as usize {
                break;
            }
        }
        out.sort_by(|a, b| (a.time_ms, &a.id).cmp(&(b.time_ms, &b.id)));
        out.dedup_by(|a, b| a.id == b.id);
        out.retain(|p| p.time_ms >= query.since_ms && p.time_ms < end);
        if query.limit > 0 {
            out.truncate(query.limit as usize);
        }
        Ok(out)
    }
}
