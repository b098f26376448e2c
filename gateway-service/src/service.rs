//! The `herd.gateway.v1` services: what engines and operators call.
//!
//! Handlers validate the request, check the order against the instrument's
//! filters, record it in the registry *before* it is sent (so an unknown
//! outcome can be resolved by polling), call the venue and feed whatever the
//! venue answered back through the registry, which emits the events.

use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::Arc;

use herd_paper::PaperVenue;
use herd_proto::gateway as pb;
use herd_venue::{
    Clock, FundingPaymentQuery, Instrument, InstrumentKind, NewOrder, OrderRef, OrderState,
    PlaceOutcome, Venue, VenueError,
};
use tokio::sync::{Notify, RwLock, mpsc};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::auth::engine_of;
use crate::convert;
use crate::fair::{FairQueue, Permit, Priority};
use crate::metrics::GatewayMetrics;
use crate::registry::{LogError, Registration, Registry};
use crate::risk::{AuditEntry, BreachAction, Candidate, Denial, Risk, TradingState};

/// Maps a venue error to the gRPC status engines see. The one place this
/// mapping lives.
pub fn venue_status(e: &VenueError) -> Status {
    let msg = e.to_string();
    match e {
        VenueError::InvalidArgument(_) => Status::invalid_argument(msg),
        VenueError::Rejected(_) | VenueError::InsufficientFunds(_) | VenueError::OrderLimit(_) => {
            Status::failed_precondition(msg)
        }
        VenueError::UnknownOrder(_) => Status::not_found(msg),
        VenueError::RateLimited { retry_after_ms, .. } => {
            with_retry_hint(Status::resource_exhausted(msg), *retry_after_ms)
        }
        VenueError::Lockout { until_ms, .. } => {
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
            with_retry_hint(Status::resource_exhausted(msg), until_ms - now_ms)
        }
        VenueError::Auth(_) => {
            Status::internal(format!("gateway cannot authenticate with the venue: {msg}"))
        }
        VenueError::Unavailable(_) | VenueError::Transport(_) => Status::unavailable(msg),
        VenueError::Unsupported(_) => Status::unimplemented(msg),
        VenueError::Parse(_) | VenueError::Other(_) => Status::internal(msg),
    }
}

/// Adds the `retry-after-ms` hint (at least 1) that every
/// RESOURCE_EXHAUSTED answer carries.
pub fn with_retry_hint(mut st: Status, retry_after_ms: i64) -> Status {
    if let Ok(v) = retry_after_ms.max(1).to_string().parse() {
        st.metadata_mut().insert(RETRY_AFTER_MS, v);
    }
    st
}

/// The metadata key of the retry hint.
pub const RETRY_AFTER_MS: &str = "retry-after-ms";

/// How many times a call the venue refused for rate reasons is made again.
const RATE_LIMIT_RETRIES: u32 = 3;

/// Runs a venue call, making it again (up to [`RATE_LIMIT_RETRIES`] times)
/// when the venue answered that we exceeded its rate limits. Such an answer
/// means the call was refused before it took effect, so repeating it is safe
/// even for orders; the adapter's budget has meanwhile learnt from the
/// answer and makes the repeat wait. Engines never see a rate-limit error
/// that one patient retry would have avoided.
pub async fn retry_rate_limited<T, F, Fut>(what: &str, mut call: F) -> Result<T, VenueError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, VenueError>>,
{
    let mut attempt = 0;
    loop {
        match call().await {
            Err(VenueError::RateLimited {
                message,
                retry_after_ms,
            }) if attempt < RATE_LIMIT_RETRIES => {
                attempt += 1;
                tracing::warn!(what, attempt, %message, "venue rate limit; retrying once the budget allows");
                let pause = u64::try_from(retry_after_ms.clamp(0, 1_000)).unwrap_or(0);
                tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
            }
            other => return other,
        }
    }
}

/// Most client order ids one QueryOrders call may name (duplicates count:
/// the cap bounds the request, not just the answer).
pub const MAX_QUERY_IDS: usize = 1_000;

/// How long a ticker or candle answer is served from the cache.
const MARKET_DATA_TTL_MS: i64 = 250;

/// Shared state of the gateway's handlers and background tasks.
pub struct Core {
    pub venue: Arc<dyn Venue>,
    pub paper: Option<PaperVenue>,
    pub registry: Arc<Registry>,
    pub clock: Arc<dyn Clock>,
    /// engine -> inclusive userref range
    pub userrefs: HashMap<String, (i32, i32)>,
    /// Wakes the poller at once (after a submit or a cancel).
    pub poll_now: Arc<Notify>,
    /// Weighted fair sharing of private venue calls between engines and the poller.
    pub fair: FairQueue,
    /// Ticker and candle fan-out: one venue call serves every engine.
    pub market: crate::market::MarketData,
    /// Open orders per symbol for the whole key at the poller's last look.
    pub open_counts: std::sync::Mutex<(HashMap<String, u32>, i64)>,
    /// Venue-facing client ids whose submit has not returned yet (waiting
    /// for budget or for the answer). The poller leaves them alone: there is
    /// nothing to resolve until the submit itself has given up.
    pub in_flight: std::sync::Mutex<HashSet<String>>,
    /// Shutdown state: once draining, new orders are refused; once closed,
    /// event streams end.
    pub drain: herd_proto::serving::Drain,
    /// Prometheus counters and histograms (`/metrics`).
    pub metrics: Arc<GatewayMetrics>,
    /// What the API key may do and the venue clock's offset, as last seen.
    pub key: Arc<crate::keycheck::KeyState>,
    /// Pre-trade risk: limits, usage and trading states (`crate::risk`).
    pub risk: Arc<Risk>,
    /// The durable store of risk states, runtime limits and the audit log
    /// (None: nothing survives a restart).
    pub risk_store: Option<crate::risk_store::RiskStore>,
    /// The fills ledger (`crate::fills`; None: fills are not recorded).
    pub ledger: Option<Arc<crate::fills::Ledger>>,
    /// The herd's event feed (`crate::events`).
    pub events: crate::events::Emitter,
    /// The configured sinks and their counters (`crate::sinks`); a
    /// configuration reload replaces them.
    pub sinks: std::sync::RwLock<(Vec<crate::sinks::SinkConfig>, crate::sinks::Stats)>,
    /// The configuration reload (`crate::reload`); None for a gateway run
    /// from code without a config to reload.
    pub reloader: Option<Arc<crate::reload::Reloader>>,
    /// Kill actions (cancel all, flatten) a breach asked for, carried out
    /// by [`Core::run_kills`].
    kills: mpsc::UnboundedSender<Kill>,
    kill_rx: std::sync::Mutex<Option<mpsc::UnboundedReceiver<Kill>>>,
    instruments: RwLock<HashMap<String, Instrument>>,
}

/// A kill action to carry out: cancel every working order of the engines
/// (and flatten what they built).
#[derive(Debug, Clone, PartialEq)]
pub struct Kill {
    pub engines: Vec<String>,
    pub flatten: bool,
    pub reason: String,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("venue", &self.venue.name())
            .field("registry", &self.registry)
            .finish_non_exhaustive()
    }
}

impl Core {
    pub fn new(
        venue: Arc<dyn Venue>,
        paper: Option<PaperVenue>,
        registry: Arc<Registry>,
        clock: Arc<dyn Clock>,
        userrefs: HashMap<String, (i32, i32)>,
    ) -> Core {
        let risk = Arc::new(Risk::new(
            userrefs.keys().map(String::as_str),
            &crate::risk::RiskConfig::default(),
        ));
        registry.set_risk(risk.clone());
        let (kills, kill_rx) = mpsc::unbounded_channel();
        Core {
            risk,
            risk_store: None,
            ledger: None,
            events: crate::events::Emitter::default(),
            sinks: Default::default(),
            reloader: None,
            kills,
            kill_rx: std::sync::Mutex::new(Some(kill_rx)),
            venue,
            paper,
            registry,
            clock,
            poll_now: Arc::new(Notify::new()),
            open_counts: std::sync::Mutex::new((HashMap::new(), 0)),
            in_flight: std::sync::Mutex::new(HashSet::new()),
            drain: herd_proto::serving::Drain::new(),
            market: crate::market::MarketData::new(MARKET_DATA_TTL_MS),
            fair: FairQueue::new(2, 64, &[]),
            metrics: Arc::new(GatewayMetrics::new(userrefs.keys().map(String::as_str))),
            key: Arc::default(),
            userrefs,
            instruments: RwLock::new(HashMap::new()),
        }
    }

    /// Shares the key checker's state (admin RPC, metrics).
    pub fn with_key_state(mut self, key: Arc<crate::keycheck::KeyState>) -> Core {
        self.key = key;
        self
    }

    /// Uses the configured risk limits. Call before the registry sees any
    /// order (the registry follows the risk it was first given).
    pub fn with_risk(self, cfg: &crate::risk::RiskConfig) -> Core {
        self.risk.configure(cfg);
        self
    }

    /// Keeps risk states, runtime limits and the audit log in `store`.
    pub fn with_risk_store(mut self, store: crate::risk_store::RiskStore) -> Core {
        self.risk_store = Some(store);
        self
    }

    /// Records every engine's fills in `ledger` (the registry feeds it).
    pub fn with_ledger(mut self, ledger: Arc<crate::fills::Ledger>) -> Core {
        self.registry.set_ledger(ledger.clone());
        self.ledger = Some(ledger);
        self
    }

    /// Reports to the herd's event feed (the registry's fills too).
    pub fn with_events(mut self, events: crate::events::Emitter) -> Core {
        self.registry.set_events(events.clone());
        self.events = events;
        self
    }

    /// The configured sinks, for ListEventSinks and the metrics.
    pub fn with_sinks(
        mut self,
        sinks: Vec<crate::sinks::SinkConfig>,
        stats: crate::sinks::Stats,
    ) -> Core {
        self.sinks = std::sync::RwLock::new((sinks, stats));
        self
    }

    /// The sinks and counters in force now.
    pub fn sinks_now(&self) -> (Vec<crate::sinks::SinkConfig>, crate::sinks::Stats) {
        self.sinks.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Reloads of the configuration go through `reloader`.
    pub fn with_reloader(mut self, reloader: Arc<crate::reload::Reloader>) -> Core {
        self.reloader = Some(reloader);
        self
    }

    /// Replaces the default fair queue (equal weights) with a configured one.
    pub fn with_fair_queue(mut self, fair: FairQueue) -> Core {
        self.fair = fair;
        self
    }

    /// Uses `metrics` (shared with the [`crate::metrics::MeteredVenue`]
    /// around the venue) instead of a private set.
    pub fn with_metrics(mut self, metrics: Arc<GatewayMetrics>) -> Core {
        self.metrics = metrics;
        self
    }

    /// A slot for `engine`'s venue call; a full queue is RESOURCE_EXHAUSTED
    /// with a retry hint.
    async fn slot(&self, engine: &str, priority: Priority) -> Result<Permit, Status> {
        self.fair.acquire(engine, priority).await.map_err(|e| {
            crate::events::queue_full(&self.events, engine, &e.to_string());
            let hint = i64::try_from(e.retry_after_ms).unwrap_or(i64::MAX);
            with_retry_hint(Status::resource_exhausted(e.to_string()), hint)
        })
    }

    pub(crate) async fn instrument(&self, symbol: &str) -> Result<Instrument, Status> {
        if let Some(i) = self.instruments.read().await.get(symbol) {
            return Ok(i.clone());
        }
        let fresh = retry_rate_limited("instruments", || self.venue.instruments())
            .await
            .map_err(|e| venue_status(&e))?;
        let mut map = self.instruments.write().await;
        map.clear();
        map.extend(fresh.into_iter().map(|i| (i.symbol.clone(), i)));
        map.get(symbol).cloned().ok_or_else(|| {
            Status::invalid_argument(format!("symbol: unknown instrument {symbol:?}"))
        })
    }

    /// A symbol filter of a list call: empty means every symbol; anything
    /// else must be an instrument the venue lists (INVALID_ARGUMENT naming
    /// `symbol`, as GetTicker and GetCapacity answer), and a perpetual where
    /// `perpetual` is set (positions and funding payments).
    async fn symbol_filter(&self, symbol: &str, perpetual: bool) -> Result<(), Status> {
        if symbol.is_empty() {
            return Ok(());
        }
        let i = self.instrument(symbol).await?;
        if perpetual && i.kind != InstrumentKind::Perpetual {
            return Err(Status::invalid_argument(format!(
                "symbol: {symbol:?} is not a perpetual"
            )));
        }
        Ok(())
    }

    /// True while the submit of this venue-facing client id is in progress.
    pub fn is_in_flight(&self, venue_client_id: &str) -> bool {
        self.in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(venue_client_id)
    }

    fn prefix(&self, engine: &str) -> Result<String, Status> {
        self.registry.prefix(engine).ok_or_else(|| {
            Status::permission_denied(format!("engine {engine:?} is not configured"))
        })
    }

    fn order_pb(&self, engine: &str, o: &OrderState) -> Result<pb::Order, Status> {
        Ok(convert::order_to_pb(o, &self.prefix(engine)?))
    }

    /// The order from the registry, or found at the venue (after a restart).
    /// `Ok(None)`: neither the registry nor the venue has it; `Err`: the
    /// venue could not be asked.
    pub async fn get_or_lookup(
        &self,
        engine: &str,
        client_order_id: &str,
    ) -> Result<Option<OrderState>, Status> {
        match self.registry.get(engine, client_order_id) {
            Some(s) => Ok(Some(s)),
            None => crate::recovery::lookup(self, engine, client_order_id).await,
        }
    }

    /// Refreshes the given orders from the venue and applies what changed.
    pub async fn refresh(&self, refs: &[OrderRef]) -> Result<(), VenueError> {
        for chunk in refs.chunks(self.venue.max_query_batch().max(1)) {
            let states =
                retry_rate_limited("query_orders", || self.venue.query_orders(chunk)).await?;
            let now = self.clock.now_ms();
            for s in &states {
                self.registry.apply(s, now);
            }
        }
        Ok(())
    }

    /// Logs one line per order (no span: the lines inside name the engine
    /// and the client order id themselves).
    async fn place(&self, engine: &str, req: &pb::PlaceOrderRequest) -> Result<pb::Order, Status> {
        self.place_with(engine, req, false).await
    }

    /// [`Core::place`]; `risk_exempt` skips the risk checks (the gateway's
    /// own flatten orders, which only reduce).
    async fn place_with(
        &self,
        engine: &str,
        req: &pb::PlaceOrderRequest,
        risk_exempt: bool,
    ) -> Result<pb::Order, Status> {
        let order = convert::new_order_from_pb(req)?;
        crate::fills::check_strategy_tag(&req.strategy).map_err(Status::invalid_argument)?;
        let (lo, hi) = self.userrefs.get(engine).copied().ok_or_else(|| {
            Status::permission_denied(format!("engine {engine:?} is not configured"))
        })?;
        let userref = if order.userref == 0 {
            lo
        } else {
            order.userref
        };
        if !(lo..=hi).contains(&userref) {
            return Err(Status::invalid_argument(format!(
                "userref: {userref} is outside this engine's range {lo}..={hi}"
            )));
        }
        let prefix = self.prefix(engine)?;
        let venue_client_id = format!("{prefix}{}", order.client_order_id);
        let max = self.venue.max_client_order_id_len();
        if venue_client_id.len() > max {
            return Err(Status::invalid_argument(format!(
                "client_order_id: {:?} is too long for {}: with this engine's prefix {prefix:?} \
                 it is {} characters at the venue, which allows {max} (use at most {})",
                order.client_order_id,
                self.venue.name(),
                venue_client_id.len(),
                max.saturating_sub(prefix.len()),
            )));
        }
        let instrument = self.instrument(&order.symbol).await?;
        let checked = instrument
            .check_order(&order, None)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let venue_order = NewOrder {
            client_order_id: venue_client_id,
            userref,
            ..checked
        };
        // The same id again answers the first order, limits or not.
        if let Some(existing) = self.registry.get(engine, &order.client_order_id) {
            return self.order_pb(engine, &existing);
        }
        self.risk.learn_quote(&instrument.symbol, &instrument.quote);
        if risk_exempt {
            let c = Candidate {
                symbol: &venue_order.symbol,
                side: venue_order.side,
                volume: venue_order.volume,
                price: venue_order.price,
                reduce_only: venue_order.reduce_only,
                ticker: None,
            };
            self.risk
                .reserve(engine, &order.client_order_id, &c, self.clock.now_ms());
        } else {
            self.check_risk(engine, &order.client_order_id, &venue_order)
                .await?;
        }
        // Take the slot before registering: a full queue must leave no trace.
        let _slot = match self.slot(engine, Priority::Place).await {
            Ok(s) => s,
            Err(e) => {
                self.risk.release(engine, &order.client_order_id);
                return Err(e);
            }
        };
        let now = self.clock.now_ms();
        match self.registry.register(
            engine,
            &order.client_order_id,
            OrderState::pending(&venue_order, now),
        ) {
            Registration::Existing(existing) => {
                if existing.status.is_final() {
                    self.risk.release(engine, &order.client_order_id);
                }
                return self.order_pb(engine, &existing);
            }
            Registration::Taken => {
                self.risk.release(engine, &order.client_order_id);
                return Err(Status::invalid_argument(format!(
                    "client_order_id: {:?} cannot be used: with this engine's prefix {prefix:?} \
                     it names an order id that is not this engine's",
                    order.client_order_id
                )));
            }
            Registration::New => {
                if let Some(ledger) = &self.ledger {
                    ledger.tag(&venue_order.client_order_id, engine, &req.strategy);
                }
            }
        }
        let submitted = {
            let _in_flight = InFlight::new(self, &venue_order.client_order_id);
            retry_rate_limited("place_order", || self.venue.place_order(&venue_order)).await
        };
        match submitted {
            Ok(PlaceOutcome::Accepted(state)) => {
                // At info: operators follow an order through both services'
                // logs by its ids (tests/tests/metrics.rs holds it). About
                // 4 % of the gateway's CPU under 32 callers (docs/benchmarks.md).
                tracing::info!(engine, client_order_id = %order.client_order_id,
                    venue_order_id = %state.venue_order_id, status = ?state.status,
                    "order placed");
                // The answer is the order as just applied: its last event
                // carries it converted already (no second look-up and
                // conversion). Without a change, the registry's state below.
                let events = self.registry.apply(&state, self.clock.now_ms());
                if let Some(order) = events.into_iter().next_back().and_then(|e| e.order) {
                    return Ok(order);
                }
            }
            Ok(PlaceOutcome::Unknown { reason }) => {
                tracing::warn!(engine, client_order_id = %order.client_order_id, %reason,
                    "order outcome unknown; resolving by polling");
                self.poll_now.notify_one();
            }
            Err(e) if e.is_outcome_unknown() => {
                tracing::warn!(engine, client_order_id = %order.client_order_id, error = %e,
                    "order outcome unknown; resolving by polling");
                self.poll_now.notify_one();
            }
            Err(e) => {
                tracing::warn!(engine, client_order_id = %order.client_order_id, error = %e,
                    "order refused by the venue");
                self.registry.forget(engine, &order.client_order_id);
                self.risk.release(engine, &order.client_order_id);
                return Err(venue_status(&e));
            }
        }
        let state = self
            .registry
            .get(engine, &order.client_order_id)
            .ok_or_else(|| Status::internal("order vanished from the registry"))?;
        Ok(convert::order_to_pb(&state, &prefix))
    }

    /// The pre-trade risk check of an order about to be registered: on a
    /// denial, its action is carried out and the engine gets the denial's
    /// status; on success the order is reserved in the risk books.
    async fn check_risk(&self, engine: &str, client_id: &str, o: &NewOrder) -> Result<(), Status> {
        let ticker = if self.risk.needs_ticker(engine, o.price.is_none()) {
            match self
                .market
                .ticker(self.venue.as_ref(), self.clock.as_ref(), &o.symbol)
                .await
            {
                Ok(t) => {
                    self.risk.mark(&t.symbol, t.last);
                    Some(t)
                }
                Err(e) => {
                    // A band or a market order's notional cannot be judged
                    // without a price: refuse rather than guess.
                    return Err(Status::unavailable(format!(
                        "risk: no ticker for {} to check the order against: {e}",
                        o.symbol
                    )));
                }
            }
        } else {
            None
        };
        let c = Candidate {
            symbol: &o.symbol,
            side: o.side,
            volume: o.volume,
            price: o.price,
            reduce_only: o.reduce_only,
            ticker: ticker.as_ref(),
        };
        let now = self.clock.now_ms();
        match self.risk.check(engine, client_id, &c, now) {
            Ok(()) => Ok(()),
            Err(d) => {
                self.on_denial(engine, client_id, &d, now).await;
                Err(d.status())
            }
        }
    }

    /// Counts, audits and carries out the action of a denial.
    async fn on_denial(&self, engine: &str, client_id: &str, d: &Denial, now_ms: i64) {
        tracing::warn!(engine, client_order_id = client_id, code = d.code.as_str(), action = d.action.as_str(),
            account = d.account, message = %d.message, "order denied by risk");
        self.metrics.risk_denied(engine, d.code.as_str());
        self.audit(AuditEntry {
            at_ms: now_ms,
            actor: engine.to_string(),
            kind: "denial".into(),
            engine: if d.account {
                String::new()
            } else {
                engine.to_string()
            },
            before: String::new(),
            after: d.code.as_str().into(),
            reason: d.message.clone(),
        });
        let Some(to) = d.action.state() else {
            return;
        };
        let scope = (!d.account).then_some(engine);
        if let Some(change) = self.risk.escalate(scope, to) {
            self.persist_state(scope, change.after).await;
            self.audit(AuditEntry {
                at_ms: now_ms,
                actor: "risk".into(),
                kind: "state".into(),
                engine: scope.unwrap_or_default().to_string(),
                before: change.before.as_str().into(),
                after: change.after.as_str().into(),
                reason: format!("{} breached: {}", d.code.as_str(), d.message),
            });
        }
        if matches!(
            d.action,
            BreachAction::HaltCancel | BreachAction::HaltFlatten
        ) {
            let engines = match scope {
                Some(e) => vec![e.to_string()],
                None => self.risk.engine_ids(),
            };
            let _ = self.kills.send(Kill {
                engines,
                flatten: d.action == BreachAction::HaltFlatten,
                reason: format!("{} breached", d.code.as_str()),
            });
        }
    }

    /// Appends to the audit log (memory, and the store when there is one).
    pub fn audit(&self, entry: AuditEntry) {
        if let Some(e) = crate::events::from_audit(&self.events, &entry) {
            self.events.emit(e);
        }
        if let Some(store) = &self.risk_store {
            store.append(&entry);
        }
        self.risk.record(entry);
    }

    /// Saves a trading state durably (logged if it cannot be).
    pub async fn persist_state(&self, engine: Option<&str>, state: TradingState) {
        if let Some(store) = &self.risk_store
            && let Err(e) = store.save_state(engine, state).await
        {
            tracing::error!(error = %e, engine = engine.unwrap_or("(account)"),
                "risk state not saved; it will not survive a restart");
        }
    }

    /// Sets a trading state by an operator: saved, audited, and for
    /// `cancel_all` / `flatten` carried out before the answer.
    pub async fn set_trading_state(
        &self,
        engine: Option<&str>,
        to: TradingState,
        cancel_all: bool,
        flatten: bool,
        reason: &str,
    ) -> Result<TradingState, Status> {
        let change = self.risk.set_state(engine, to).ok_or_else(|| {
            Status::invalid_argument(format!(
                "engine_id: {:?} is not a configured engine",
                engine.unwrap_or_default()
            ))
        })?;
        self.persist_state(engine, to).await;
        self.audit(AuditEntry {
            at_ms: self.clock.now_ms(),
            actor: "operator".into(),
            kind: "state".into(),
            engine: engine.unwrap_or_default().to_string(),
            before: change.before.as_str().into(),
            after: change.after.as_str().into(),
            reason: reason.to_string(),
        });
        if cancel_all || flatten {
            let engines = match engine {
                Some(e) => vec![e.to_string()],
                None => self.risk.engine_ids(),
            };
            self.kill(&Kill {
                engines,
                flatten,
                reason: if reason.is_empty() {
                    "operator".into()
                } else {
                    reason.to_string()
                },
            })
            .await;
        }
        Ok(change.before)
    }

    /// Carries out kill actions breaches ask for, until the gateway stops.
    pub async fn run_kills(self: Arc<Self>) {
        let rx = self
            .kill_rx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let Some(mut rx) = rx else {
            return;
        };
        while let Some(k) = rx.recv().await {
            self.kill(&k).await;
        }
    }

    /// Cancels every working order of the engines (only theirs) and, with
    /// `flatten`, closes what they built: a reduce-only market order per
    /// perpetual position, a market sell of the base a spot engine holds.
    pub async fn kill(&self, k: &Kill) {
        for engine in &k.engines {
            let prefix = self.registry.prefix(engine).unwrap_or_default();
            let mut canceled = 0u32;
            for o in self.registry.working_orders(engine) {
                let Some(id) = o.client_order_id.strip_prefix(&prefix) else {
                    continue;
                };
                match self.cancel(engine, id).await {
                    Ok(_) => canceled += 1,
                    Err(e) => tracing::warn!(engine, client_order_id = id, error = %e,
                        "risk cancel-all: cancel failed"),
                }
            }
            self.audit(AuditEntry {
                at_ms: self.clock.now_ms(),
                actor: "risk".into(),
                kind: "cancel_all".into(),
                engine: engine.clone(),
                before: String::new(),
                after: format!("{canceled} canceled"),
                reason: k.reason.clone(),
            });
            if !k.flatten {
                continue;
            }
            for (n, (symbol, net)) in self.risk.positions(engine).into_iter().enumerate() {
                let perp = self
                    .instrument(&symbol)
                    .await
                    .is_ok_and(|i| i.kind == InstrumentKind::Perpetual);
                let req = pb::PlaceOrderRequest {
                    client_order_id: format!("rkflat{}x{n}", self.clock.now_ms()),
                    symbol: symbol.clone(),
                    side: if net > rust_decimal::Decimal::ZERO {
                        pb::Side::Sell
                    } else {
                        pb::Side::Buy
                    } as i32,
                    order_type: pb::OrderType::Market as i32,
                    volume: net.abs().normalize().to_string(),
                    reduce_only: perp,
                    strategy: "risk-flatten".into(),
                    ..Default::default()
                };
                let outcome = match self.place_with(engine, &req, true).await {
                    Ok(_) => format!("{} {} {} placed", req.client_order_id, symbol, req.volume),
                    Err(e) => format!("{symbol} {}: {}", req.volume, e.message()),
                };
                tracing::warn!(engine, %outcome, "risk flatten");
                self.audit(AuditEntry {
                    at_ms: self.clock.now_ms(),
                    actor: "risk".into(),
                    kind: "flatten".into(),
                    engine: engine.clone(),
                    before: net.to_string(),
                    after: outcome,
                    reason: k.reason.clone(),
                });
            }
        }
    }

    /// Risk of one engine (or every engine) and of the account.
    pub fn risk_state(&self, engine: Option<&str>) -> Result<pb::GetRiskStateResponse, Status> {
        let now = self.clock.now_ms();
        let ids = match engine {
            Some(e) if self.risk.has_engine(e) => vec![e.to_string()],
            Some(e) => {
                return Err(Status::invalid_argument(format!(
                    "engine_id: {e:?} is not a configured engine"
                )));
            }
            None => self.risk.engine_ids(),
        };
        let engines = ids
            .iter()
            .filter_map(|id| {
                self.risk
                    .snapshot(Some(id), now)
                    .map(|s| crate::risk::wire::book_to_pb(id, &s))
            })
            .collect();
        let account = self
            .risk
            .snapshot(None, now)
            .map(|s| crate::risk::wire::book_to_pb("", &s));
        Ok(pb::GetRiskStateResponse { account, engines })
    }

    /// Cancels one of `engine`'s orders and reports its state after.
    #[tracing::instrument(name = "cancel_order", skip_all,
        fields(engine = %engine, client_order_id = %client_order_id))]
    pub async fn cancel(&self, engine: &str, client_order_id: &str) -> Result<pb::Order, Status> {
        convert::validate_client_order_id(client_order_id)?;
        let state = self
            .get_or_lookup(engine, client_order_id)
            .await?
            .ok_or_else(|| Status::not_found(format!("order {client_order_id:?} not found")))?;
        if state.status.is_final() {
            return Err(Status::failed_precondition(format!(
                "order {client_order_id:?} is already {:?}",
                state.status
            )));
        }
        let r = OrderRef {
            client_order_id: state.client_order_id.clone(),
            venue_order_id: Some(state.venue_order_id.clone()).filter(|s| !s.is_empty()),
        };
        let cancel = {
            let _slot = self.slot(engine, Priority::Cancel).await?;
            retry_rate_limited("cancel_order", || self.venue.cancel_order(&r)).await
        };
        match &cancel {
            Ok(()) => {
                tracing::info!("order cancel accepted by the venue");
                self.registry.mark_cancel_requested(engine, client_order_id);
            }
            Err(e) => tracing::warn!(error = %e, "order cancel refused by the venue"),
        }
        // Either way the order's true state comes from the venue: a cancel that
        // raced a fill must report the fill, not lose it. That look is an
        // ordinary query: it gives the cancel's slot back and queues like one,
        // so with a single venue slot it never holds up other engines' cancels
        // while the venue's budget refills. A full queue leaves it to the poller.
        let looked = match self.fair.acquire(engine, Priority::Query).await {
            Ok(_slot) => self
                .refresh(std::slice::from_ref(&r))
                .await
                .map_err(|e| e.to_string()),
            Err(full) => Err(full.to_string()),
        };
        if let Err(e) = looked {
            tracing::warn!(engine, client_order_id, error = %e, "refresh after cancel failed");
            self.poll_now.notify_one();
        }
        let now_state = self
            .registry
            .get(engine, client_order_id)
            .ok_or_else(|| Status::internal("order vanished from the registry"))?;
        match cancel {
            Ok(()) => self.order_pb(engine, &now_state),
            Err(VenueError::UnknownOrder(_)) if now_state.status.is_final() => {
                self.order_pb(engine, &now_state)
            }
            Err(e) => Err(venue_status(&e)),
        }
    }
}

/// Marks a submit as in flight for as long as it lives.
struct InFlight<'a> {
    core: &'a Core,
    id: String,
}

impl<'a> InFlight<'a> {
    fn new(core: &'a Core, id: &str) -> InFlight<'a> {
        core.in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_string());
        InFlight {
            core,
            id: id.to_string(),
        }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.core
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
    }
}

/// `herd.gateway.v1.Gateway`.
#[derive(Debug, Clone)]
pub struct GatewayService {
    core: Arc<Core>,
}

impl GatewayService {
    pub fn new(core: Arc<Core>) -> GatewayService {
        GatewayService { core }
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::OrderEvent, Status>> + Send>>;
type HerdEventStream = Pin<Box<dyn Stream<Item = Result<pb::HerdEvent, Status>> + Send>>;

fn log_status(e: &LogError) -> Status {
    match e {
        LogError::UnknownEngine(_) => Status::permission_denied(e.to_string()),
        LogError::Gap { .. } => Status::out_of_range(e.to_string()),
        LogError::Ahead { .. } => Status::invalid_argument(format!("after_sequence: {e}")),
    }
}

#[tonic::async_trait]
impl pb::gateway_server::Gateway for GatewayService {
    async fn get_risk_state(
        &self,
        req: Request<pb::GetRiskStateRequest>,
    ) -> Result<Response<pb::GetRiskStateResponse>, Status> {
        let engine = engine_of(&req)?;
        self.core.registry.count_call(&engine);
        Ok(Response::new(self.core.risk_state(Some(&engine))?))
    }

    async fn get_session(
        &self,
        req: Request<pb::GetSessionRequest>,
    ) -> Result<Response<pb::GetSessionResponse>, Status> {
        let engine = engine_of(&req)?;
        let (lo, hi) = self.core.userrefs.get(&engine).copied().unwrap_or_default();
        Ok(Response::new(pb::GetSessionResponse {
            engine_id: engine.clone(),
            venue: self.core.venue.name().to_string(),
            incarnation: self.core.registry.incarnation().to_string(),
            userref_min: lo,
            userref_max: hi,
            last_sequence: self.core.registry.last_sequence(&engine),
        }))
    }

    async fn list_instruments(
        &self,
        req: Request<pb::ListInstrumentsRequest>,
    ) -> Result<Response<pb::ListInstrumentsResponse>, Status> {
        self.core.registry.count_call(&engine_of(&req)?);
        let list = retry_rate_limited("instruments", || self.core.venue.instruments())
            .await
            .map_err(|e| venue_status(&e))?;
        Ok(Response::new(pb::ListInstrumentsResponse {
            instruments: list.iter().map(convert::instrument_to_pb).collect(),
        }))
    }

    async fn get_ticker(
        &self,
        req: Request<pb::GetTickerRequest>,
    ) -> Result<Response<pb::Ticker>, Status> {
        self.core.registry.count_call(&engine_of(&req)?);
        let symbol = &req.get_ref().symbol;
        self.core.instrument(symbol).await?;
        let t = retry_rate_limited("ticker", || self.core.venue.ticker(symbol))
            .await
            .map_err(|e| venue_status(&e))?;
        Ok(Response::new(convert::ticker_to_pb(&t)))
    }

    async fn get_candles(
        &self,
        req: Request<pb::GetCandlesRequest>,
    ) -> Result<Response<pb::GetCandlesResponse>, Status> {
        self.core.registry.count_call(&engine_of(&req)?);
        let r = req.get_ref();
        if ![1, 5, 15, 30, 60, 240, 1440, 10080, 21600].contains(&r.interval_minutes) {
            return Err(Status::invalid_argument(format!(
                "interval_minutes: {} is not one of 1, 5, 15, 30, 60, 240, 1440, 10080, 21600",
                r.interval_minutes
            )));
        }
        self.core.instrument(&r.symbol).await?;
        let candles = self
            .core
            .market
            .candles(
                self.core.venue.as_ref(),
                self.core.clock.as_ref(),
                &r.symbol,
                r.interval_minutes,
                r.since_ms,
            )
            .await
            .map_err(|e| venue_status(&e))?;
        Ok(Response::new(pb::GetCandlesResponse {
            candles: candles.iter().map(convert::candle_to_pb).collect(),
        }))
    }

    async fn get_balances(
        &self,
        req: Request<pb::GetBalancesRequest>,
    ) -> Result<Response<pb::GetBalancesResponse>, Status> {
        self.core.registry.count_call(&engine_of(&req)?);
        let b = retry_rate_limited("balances", || self.core.venue.balances())
            .await
            .map_err(|e| venue_status(&e))?;
        Ok(Response::new(pb::GetBalancesResponse {
            balances: b.iter().map(convert::balance_to_pb).collect(),
        }))
    }

    async fn place_order(
        &self,
        req: Request<pb::PlaceOrderRequest>,
    ) -> Result<Response<pb::PlaceOrderResponse>, Status> {
        let engine = engine_of(&req)?;
        self.core.registry.count_call(&engine);
        // Draining: no new orders (cancels and reads are still answered).
        self.core.drain.check_accepting()?;
        // Every error of `place` is definite (an unknown outcome answers Ok
        // with the order pending): say so, so engines never read a refusal
        // as "maybe placed" nor a broken connection as a refusal.
        let order = self
            .core
            .place(&engine, req.get_ref())
            .await
            .map_err(herd_proto::answer::refused)?;
        Ok(Response::new(pb::PlaceOrderResponse { order: Some(order) }))
    }

    async fn cancel_order(
        &self,
        req: Request<pb::CancelOrderRequest>,
    ) -> Result<Response<pb::CancelOrderResponse>, Status> {
        let engine = engine_of(&req)?;
        self.core.registry.count_call(&engine);
        let order = self
            .core
            .cancel(&engine, &req.get_ref().client_order_id)
            .await?;
        Ok(Response::new(pb::CancelOrderResponse {
            order: Some(order),
        }))
    }

    async fn query_orders(
        &self,
        req: Request<pb::QueryOrdersRequest>,
    ) -> Result<Response<pb::QueryOrdersResponse>, Status> {
        let engine = engine_of(&req)?;
        self.core.registry.count_call(&engine);
        let asked = &req.get_ref().client_order_ids;
        if asked.len() > MAX_QUERY_IDS {
            return Err(Status::invalid_argument(format!(
                "client_order_ids: {} ids, at most {MAX_QUERY_IDS} per call",
                asked.len()
            )));
        }
        let mut seen = HashSet::new();
        let mut orders = Vec::new();
        // Each order once, in the order first asked for.
        for id in asked.iter().filter(|id| seen.insert(id.as_str())) {
            convert::validate_client_order_id(id)?;
            let o = self
                .core
                .get_or_lookup(&engine, id)
                .await?
                .ok_or_else(|| Status::not_found(format!("order {id:?} not found")))?;
            orders.push(self.core.order_pb(&engine, &o)?);
        }
        Ok(Response::new(pb::QueryOrdersResponse { orders }))
    }

    async fn list_open_orders(
        &self,
        req: Request<pb::ListOpenOrdersRequest>,
    ) -> Result<Response<pb::ListOpenOrdersResponse>, Status> {
        let engine = engine_of(&req)?;
        self.core.registry.count_call(&engine);
        let symbol = &req.get_ref().symbol;
        self.core.symbol_filter(symbol, false).await?;
        let orders = self
            .core
            .registry
            .working_orders(&engine)
            .iter()
            .filter(|o| symbol.is_empty() || &o.symbol == symbol)
            .map(|o| self.core.order_pb(&engine, o))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Response::new(pb::ListOpenOrdersResponse { orders }))
    }

    async fn get_capacity(
        &self,
        req: Request<pb::GetCapacityRequest>,
    ) -> Result<Response<pb::GetCapacityResponse>, Status> {
        let engine = engine_of(&req)?;
        self.core.registry.count_call(&engine);
        let symbol = req.get_ref().symbol.clone();
        let instrument = self.core.instrument(&symbol).await?;
        let own = self
            .core
            .registry
            .working_orders(&engine)
            .iter()
            .filter(|o| o.symbol == symbol)
            .count();
        let all_engines = self.core.registry.working_count(&symbol);
        let (polled, as_of_ms) = {
            let g = self
                .core
                .open_counts
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            (g.0.get(&symbol).copied().unwrap_or(0), g.1)
        };
        Ok(Response::new(pb::GetCapacityResponse {
            symbol,
            // The venue's count can lag a fresh submit; never report fewer
            // than the gateway itself is tracking.
            open_orders: polled.max(u32::try_from(all_engines).unwrap_or(u32::MAX)),
            max_open_orders: instrument.max_open_orders,
            own_open_orders: u32::try_from(own).unwrap_or(u32::MAX),
            as_of_ms,
        }))
    }

    type StreamOrderEventsStream = EventStream;

    async fn stream_order_events(
        &self,
        req: Request<pb::StreamOrderEventsRequest>,
    ) -> Result<Response<Self::StreamOrderEventsStream>, Status> {
        let engine = engine_of(&req)?;
        let after = req.get_ref().after_sequence;
        let registry = self.core.registry.clone();
        let clock = self.core.clock.clone();
        let drain = self.core.drain.clone();
        let ledger = self.core.ledger.clone();
        // Refuse at once when the stream cannot start where asked.
        registry
            .events_after(&engine, after, 0)
            .map_err(|e| log_status(&e))?;
        let mut changes = registry.subscribe(&engine).ok_or_else(|| {
            Status::permission_denied(format!("engine {engine:?} is not configured"))
        })?;
        let (tx, rx) = mpsc::channel(256);
        let streamed = self.core.metrics.engine(&engine);
        registry.stream_opened(&engine);
        crate::events::engine_connected(&self.core.events, &engine);
        tracing::info!(engine, after, "order event stream opened");
        tokio::spawn(async move {
            let mut cursor = after;
            'outer: loop {
                changes.borrow_and_update();
                match registry.events_after(&engine, cursor, 256) {
                    Ok(batch) if !batch.is_empty() => {
                        // A fill reaches the engine only once the ledger holds it:
                        // at the ledger's next group commit (at most 2 ms), not
                        // a commit of its own per fill.
                        if let Some(l) = &ledger
                            && batch.iter().any(|e| !e.fill_volume.is_empty())
                        {
                            l.flush_grouped().await;
                        }
                        for ev in batch {
                            cursor = ev.sequence;
                            if tx.send(Ok(ev)).await.is_err() {
                                break 'outer;
                            }
                            if let Some(c) = &streamed {
                                c.events_streamed.inc();
                            }
                        }
                        continue;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        let _ = tx.send(Err(log_status(&e))).await;
                        break;
                    }
                }
                tokio::select! {
                    changed = changes.changed() => if changed.is_err() { break; },
                    _ = tx.closed() => break,
                    // Shutting down: end the stream cleanly (status OK); the
                    // engine reconnects to the next gateway and resumes.
                    _ = drain.closed() => {
                        tracing::info!(engine, cursor, "ending order event stream: gateway shutting down");
                        break;
                    }
                }
            }
            registry.stream_closed(&engine, clock.now_ms());
            tracing::info!(engine, cursor, "order event stream closed");
        });
        Ok(Response::new(
            Box::pin(ReceiverStream::new(rx)) as EventStream
        ))
    }

    async fn publish_herd_events(
        &self,
        req: Request<pb::PublishHerdEventsRequest>,
    ) -> Result<Response<pb::PublishHerdEventsResponse>, Status> {
        let engine = engine_of(&req)?;
        let mut events = req.into_inner().events;
        crate::events::accept_published(&engine, &mut events)?;
        let log = self
            .core
            .events
            .log()
            .ok_or_else(|| Status::unavailable("this gateway keeps no event log"))?;
        let (accepted, duplicates) = log
            .append_durable(events)
            .await
            .map_err(Status::unavailable)?;
        Ok(Response::new(pb::PublishHerdEventsResponse {
            accepted,
            duplicates,
        }))
    }

    async fn get_budget(
        &self,
        req: Request<pb::GetBudgetRequest>,
    ) -> Result<Response<pb::GetBudgetResponse>, Status> {
        engine_of(&req)?;
        Ok(Response::new(budget_pb(&self.core)))
    }

    async fn list_funding_rates(
        &self,
        req: Request<pb::ListFundingRatesRequest>,
    ) -> Result<Response<pb::ListFundingRatesResponse>, Status> {
        self.core.registry.count_call(&engine_of(&req)?);
        let symbols = &req.get_ref().symbols;
        for s in symbols {
            if s.trim().is_empty() {
                return Err(Status::invalid_argument("symbols: an entry is empty"));
            }
        }
        let rates = self
            .core
            .venue
            .funding_rates(symbols)
            .await
            .map_err(|e| venue_status(&e))?;
        if let Some(rec) = self.core.market.recorder() {
            let now = self.core.clock.now_ms();
            for r in &rates {
                rec.funding(now, r);
            }
        }
        Ok(Response::new(pb::ListFundingRatesResponse {
            rates: rates.iter().map(convert::funding_rate_to_pb).collect(),
        }))
    }

    async fn get_positions(
        &self,
        req: Request<pb::GetPositionsRequest>,
    ) -> Result<Response<pb::GetPositionsResponse>, Status> {
        self.core.registry.count_call(&engine_of(&req)?);
        let symbol = &req.get_ref().symbol;
        self.core.symbol_filter(symbol, true).await?;
        let positions = self
            .core
            .venue
            .positions()
            .await
            .map_err(|e| venue_status(&e))?;
        Ok(Response::new(pb::GetPositionsResponse {
            positions: positions
                .iter()
                .filter(|p| symbol.is_empty() || &p.symbol == symbol)
                .map(convert::position_to_pb)
                .collect(),
        }))
    }

    async fn get_account_margin(
        &self,
        req: Request<pb::GetAccountMarginRequest>,
    ) -> Result<Response<pb::GetAccountMarginResponse>, Status> {
        self.core.registry.count_call(&engine_of(&req)?);
        let m = self
            .core
            .venue
            .account_margin()
            .await
            .map_err(|e| venue_status(&e))?;
        Ok(Response::new(convert::margin_to_pb(&m)))
    }

    async fn list_funding_payments(
        &self,
        req: Request<pb::ListFundingPaymentsRequest>,
    ) -> Result<Response<pb::ListFundingPaymentsResponse>, Status> {
        self.core.registry.count_call(&engine_of(&req)?);
        let r = req.get_ref();
        if r.since_ms < 0 || r.until_ms < 0 {
            return Err(Status::invalid_argument(
                "since_ms: since_ms and until_ms must not be negative",
            ));
        }
        if r.until_ms > 0 && r.until_ms <= r.since_ms {
            return Err(Status::invalid_argument(format!(
                "until_ms: {} is not after since_ms {}",
                r.until_ms, r.since_ms
            )));
        }
        self.core.symbol_filter(&r.symbol, true).await?;
        let query = FundingPaymentQuery {
            symbol: Some(r.symbol.clone()).filter(|s| !s.is_empty()),
            since_ms: r.since_ms,
            until_ms: Some(r.until_ms).filter(|u| *u > 0),
            limit: r.limit,
        };
        let payments = self
            .core
            .venue
            .funding_payments(&query)
            .await
            .map_err(|e| venue_status(&e))?;
        if let Some(ledger) = &self.core.ledger {
            ledger.book_funding(&engine_of(&req)?, &payments);
        }
        Ok(Response::new(pb::ListFundingPaymentsResponse {
            payments: payments
                .iter()
                .map(convert::funding_payment_to_pb)
                .collect(),
        }))
    }
}

fn budget_pb(core: &Core) -> pb::GetBudgetResponse {
    let b = core.venue.budget();
    pb::GetBudgetResponse {
        venue: core.venue.name().to_string(),
        counters: b
            .counters
            .iter()
            .map(|c| pb::BudgetCounter {
                name: c.name.clone(),
                level: c.level.to_string(),
                limit: c.limit.to_string(),
                decay_per_second: c.decay_per_second.to_string(),
            })
            .collect(),
        waiting_cancels: b.waiting_cancels,
        waiting_places: b.waiting_places,
        waiting_queries: b.waiting_queries,
        spend: core
            .registry
            .engine_summaries()
            .into_iter()
            .map(|(engine_id, _, _, _, calls)| pb::EngineSpend { engine_id, calls })
            .collect(),
        locked_until_ms: b.locked_until_ms.unwrap_or(0),
    }
}

/// The scope a risk admin call names: an engine (INVALID_ARGUMENT naming
/// `engine_id` when unknown) or, with `account`, the account.
fn risk_scope<'a>(
    core: &Core,
    engine_id: &'a str,
    account: bool,
) -> Result<Option<&'a str>, Status> {
    let id = engine_id.trim();
    match (account, id.is_empty()) {
        (true, true) => Ok(None),
        (true, false) => Err(Status::invalid_argument(
            "engine_id: name an engine or set account, not both",
        )),
        (false, true) => Err(Status::invalid_argument(
            "engine_id: missing (or set account for the account's)",
        )),
        (false, false) if core.risk.has_engine(id) => Ok(Some(id)),
        (false, false) => Err(Status::invalid_argument(format!(
            "engine_id: {id:?} is not a configured engine"
        ))),
    }
}

/// `herd.gateway.v1.GatewayAdmin`.
#[derive(Debug, Clone)]
pub struct AdminService {
    core: Arc<Core>,
}

impl AdminService {
    pub fn new(core: Arc<Core>) -> AdminService {
        AdminService { core }
    }
}

#[tonic::async_trait]
impl pb::gateway_admin_server::GatewayAdmin for AdminService {
    type StreamHerdEventsStream = HerdEventStream;

    async fn stream_herd_events(
        &self,
        req: Request<pb::StreamHerdEventsRequest>,
    ) -> Result<Response<Self::StreamHerdEventsStream>, Status> {
        let req = req.into_inner();
        let filter = crate::events::filter_of(&req, |e| self.core.userrefs.contains_key(e))?;
        let log = self
            .core
            .events
            .log()
            .ok_or_else(|| Status::unavailable("this gateway keeps no event log"))?
            .clone();
        let s = crate::events::stream(log, req, filter, self.core.drain.clone()).await?;
        Ok(Response::new(Box::pin(s) as HerdEventStream))
    }

    async fn reload_config(
        &self,
        _req: Request<pb::ReloadConfigRequest>,
    ) -> Result<Response<pb::ReloadConfigResponse>, Status> {
        let Some(r) = &self.core.reloader else {
            return Err(Status::failed_precondition(
                "this gateway was started from code with no configuration to reload",
            ));
        };
        let out = r
            .reload(&self.core, herd_proto::reload::Trigger::Rpc)
            .await
            .map_err(|e| Status::invalid_argument(format!("nothing changed: {e}")))?;
        Ok(Response::new(pb::ReloadConfigResponse {
            file: r.file(),
            changes: out.changes.iter().map(crate::reload::change_pb).collect(),
            message: out.message,
        }))
    }

    async fn get_config(
        &self,
        _req: Request<pb::GetConfigRequest>,
    ) -> Result<Response<pb::GetConfigResponse>, Status> {
        let Some(r) = &self.core.reloader else {
            return Err(Status::failed_precondition(
                "this gateway was started from code; its configuration is not kept",
            ));
        };
        Ok(Response::new(r.show().await))
    }

    async fn list_event_sinks(
        &self,
        _req: Request<pb::ListEventSinksRequest>,
    ) -> Result<Response<pb::ListEventSinksResponse>, Status> {
        let Some(log) = self.core.events.log() else {
            return Ok(Response::new(pb::ListEventSinksResponse::default()));
        };
        let (cfgs, stats) = self.core.sinks_now();
        let mut sinks = Vec::new();
        for c in &cfgs {
            let (pending, dead) = crate::sinks::counts(log.pool(), &c.name)
                .await
                .map_err(|e| Status::internal(format!("sink outbox: {e}")))?;
            let st = stats.get(&c.name);
            let n = |f: fn(&crate::sinks::SinkStats) -> &std::sync::atomic::AtomicU64| {
                st.map_or(0, |s| f(s).load(std::sync::atomic::Ordering::Relaxed))
            };
            sinks.push(pb::EventSink {
                name: c.name.clone(),
                kind: c.kind.as_str().into(),
                pending,
                dead_letters: dead,
                delivered: n(|s| &s.delivered),
                failures: n(|s| &s.failures),
                dropped: n(|s| &s.dropped),
                last_error: st
                    .map(|s| {
                        s.last_error
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .clone()
                    })
                    .unwrap_or_default(),
            });
        }
        Ok(Response::new(pb::ListEventSinksResponse { sinks }))
    }

    async fn redeliver_dead_letters(
        &self,
        req: Request<pb::RedeliverDeadLettersRequest>,
    ) -> Result<Response<pb::RedeliverDeadLettersResponse>, Status> {
        let sink = req.into_inner().sink;
        let (cfgs, _) = self.core.sinks_now();
        if sink.is_empty() {
            return Err(Status::invalid_argument("sink: required (a sink's name)"));
        }
        if !cfgs.iter().any(|c| c.name == sink) {
            let names: Vec<&str> = cfgs.iter().map(|c| c.name.as_str()).collect();
            return Err(Status::invalid_argument(format!(
                "sink: no sink named {sink:?} is configured (configured: {names:?})"
            )));
        }
        let Some(log) = self.core.events.log() else {
            return Err(Status::failed_precondition("the event log is not open"));
        };
        let requeued = crate::sinks::redeliver_dead(log.pool(), &sink)
            .await
            .map_err(|e| Status::internal(format!("sink outbox: {e}")))?;
        log.wake_readers();
        tracing::info!(
            sink,
            requeued,
            "dead letters put back for delivery by an operator"
        );
        Ok(Response::new(pb::RedeliverDeadLettersResponse { requeued }))
    }

    async fn get_risk_state(
        &self,
        req: Request<pb::GetRiskStateRequest>,
    ) -> Result<Response<pb::GetRiskStateResponse>, Status> {
        let id = req.get_ref().engine_id.trim();
        Ok(Response::new(
            self.core.risk_state((!id.is_empty()).then_some(id))?,
        ))
    }

    async fn set_risk_limits(
        &self,
        req: Request<pb::SetRiskLimitsRequest>,
    ) -> Result<Response<pb::SetRiskLimitsResponse>, Status> {
        let r = req.get_ref();
        let scope = risk_scope(&self.core, &r.engine_id, r.account)?;
        let asked = r
            .limits
            .as_ref()
            .ok_or_else(|| Status::invalid_argument("limits: missing"))?;
        let cur = self
            .core
            .risk
            .snapshot(scope, self.core.clock.now_ms())
            .ok_or_else(|| Status::invalid_argument("engine_id: not a configured engine"))?
            .limits;
        let new = crate::risk::wire::apply_limits(&cur, asked)?;
        if let Some(store) = &self.core.risk_store {
            store.save_limits(scope, &new).await.map_err(|e| {
                Status::internal(format!(
                    "the limits could not be saved, nothing changed: {e}"
                ))
            })?;
        }
        self.core.risk.set_limits(scope, new.clone());
        let json = |l: &crate::risk::Limits| serde_json::to_string(l).unwrap_or_default();
        self.core.audit(AuditEntry {
            at_ms: self.core.clock.now_ms(),
            actor: "operator".into(),
            kind: "limits".into(),
            engine: scope.unwrap_or_default().to_string(),
            before: json(&cur),
            after: json(&new),
            reason: r.reason.clone(),
        });
        Ok(Response::new(pb::SetRiskLimitsResponse {
            before: Some(crate::risk::wire::limits_to_pb(&cur)),
            after: Some(crate::risk::wire::limits_to_pb(&new)),
        }))
    }

    async fn set_trading_state(
        &self,
        req: Request<pb::SetTradingStateRequest>,
    ) -> Result<Response<pb::SetTradingStateResponse>, Status> {
        let r = req.get_ref();
        let scope = risk_scope(&self.core, &r.engine_id, r.account)?;
        let to = crate::risk::wire::state_from_pb(r.state)?;
        let before = self
            .core
            .set_trading_state(scope, to, r.cancel_all, r.flatten, &r.reason)
            .await?;
        Ok(Response::new(pb::SetTradingStateResponse {
            before: crate::risk::wire::state_to_pb(before) as i32,
            after: crate::risk::wire::state_to_pb(to) as i32,
        }))
    }

    async fn list_risk_audit(
        &self,
        req: Request<pb::ListRiskAuditRequest>,
    ) -> Result<Response<pb::ListRiskAuditResponse>, Status> {
        let r = req.get_ref();
        let filter = if r.account {
            Some("*account".to_string())
        } else if r.engine_id.trim().is_empty() {
            None
        } else {
            risk_scope(&self.core, &r.engine_id, false)?;
            Some(r.engine_id.trim().to_string())
        };
        let entries = match &self.core.risk_store {
            Some(store) => {
                store.flush().await;
                store
                    .audit(filter.as_deref(), r.limit)
                    .await
                    .map_err(|e| Status::internal(format!("reading the audit log: {e}")))?
            }
            None => {
                let limit = if r.limit == 0 {
                    1_000
                } else {
                    r.limit as usize
                };
                let mut v: Vec<AuditEntry> = self
                    .core
                    .risk
                    .audit()
                    .into_iter()
                    .filter(|a| match filter.as_deref() {
                        None => true,
                        Some("*account") => a.engine.is_empty(),
                        Some(e) => a.engine == e,
                    })
                    .collect();
                let skip = v.len().saturating_sub(limit);
                v.drain(..skip);
                v
            }
        };
        Ok(Response::new(pb::ListRiskAuditResponse {
            entries: entries.iter().map(crate::risk::wire::audit_to_pb).collect(),
        }))
    }

    async fn list_fills(
        &self,
        req: Request<pb::ListFillsRequest>,
    ) -> Result<Response<pb::ListFillsResponse>, Status> {
        crate::ledger_api::list_fills(&self.core, req.get_ref())
            .await
            .map(Response::new)
    }

    async fn get_pnl(
        &self,
        req: Request<pb::GetPnlRequest>,
    ) -> Result<Response<pb::GetPnlResponse>, Status> {
        crate::ledger_api::get_pnl(&self.core, req.get_ref())
            .await
            .map(Response::new)
    }

    async fn set_paper_price(
        &self,
        req: Request<pb::SetPaperPriceRequest>,
    ) -> Result<Response<pb::SetPaperPriceResponse>, Status> {
        let paper =
            self.core.paper.as_ref().ok_or_else(|| {
                Status::failed_precondition("the gateway is not on the paper venue")
            })?;
        let r = req.get_ref();
        let price = convert::parse_decimal("price", &r.price)?;
        let ticker = paper
            .set_price(&r.symbol, price)
            .map_err(|e| venue_status(&e))?;
        self.core.poll_now.notify_one();
        self.core
            .market
            .put_ticker(self.core.clock.as_ref(), ticker.clone())
            .await;
        self.core.risk.mark(&ticker.symbol, ticker.last);
        Ok(Response::new(pb::SetPaperPriceResponse {
            ticker: Some(convert::ticker_to_pb(&ticker)),
        }))
    }

    async fn set_paper_funding(
        &self,
        req: Request<pb::SetPaperFundingRequest>,
    ) -> Result<Response<pb::SetPaperFundingResponse>, Status> {
        let paper =
            self.core.paper.as_ref().ok_or_else(|| {
                Status::failed_precondition("the gateway is not on the paper venue")
            })?;
        let r = req.get_ref();
        if !r.rate.trim().is_empty() {
            let rate = convert::parse_signed_decimal("rate", &r.rate)?;
            paper
                .set_funding_rate(&r.symbol, rate)
                .map_err(|e| venue_status(&e))?;
        }
        let payments = if r.settle_now {
            paper
                .settle_funding_now(&r.symbol)
                .map_err(|e| venue_status(&e))?
                .into_iter()
                .collect()
        } else {
            Vec::new()
        };
        let rate = self
            .core
            .venue
            .funding_rates(std::slice::from_ref(&r.symbol))
            .await
            .map_err(|e| venue_status(&e))?
            .into_iter()
            .next()
            .ok_or_else(|| Status::not_found(format!("symbol: {:?} has no funding", r.symbol)))?;
        Ok(Response::new(pb::SetPaperFundingResponse {
            rate: Some(convert::funding_rate_to_pb(&rate)),
            payments: payments
                .iter()
                .map(convert::funding_payment_to_pb)
                .collect(),
        }))
    }

    async fn get_key_info(
        &self,
        _req: Request<pb::GetKeyInfoRequest>,
    ) -> Result<Response<pb::GetKeyInfoResponse>, Status> {
        let k = self.core.key.snapshot();
        let mut out = pb::GetKeyInfoResponse {
            warnings: k.warnings,
            checked_at_ms: k.checked_at_ms.unwrap_or(0),
            clock_offset_ms: k.clock_offset_ms.unwrap_or(0),
            clock_limit_ms: k.clock_limit_ms.unwrap_or(0),
            clock_uncertainty_ms: k.clock_uncertainty_ms.unwrap_or(0),
            clock_checked_at_ms: k.clock_checked_at_ms.unwrap_or(0),
            ..pb::GetKeyInfoResponse::default()
        };
        if let Some(i) = k.info {
            out.known = true;
            out.name = i.name;
            out.permissions = i.permissions;
            out.withdraw_permission = i.withdraw_permission.unwrap_or_default();
            out.read_only = i.read_only;
            out.lacking = i.lacking;
            out.ip_allowlist = i.ip_allowlist;
            out.expires_at_ms = i.expires_at_ms.unwrap_or(0);
        }
        Ok(Response::new(out))
    }

    async fn list_engines(
        &self,
        _req: Request<pb::ListEnginesRequest>,
    ) -> Result<Response<pb::ListEnginesResponse>, Status> {
        let engines = self
            .core
            .registry
            .engine_summaries()
            .into_iter()
            .map(|(engine_id, streams, last_sequence, open_orders, calls)| {
                let dead_man = self.core.registry.dead_man_last(&engine_id);
                pb::EngineInfo {
                    stream_connected: streams > 0,
                    last_sequence,
                    open_orders,
                    calls,
                    queue_depth: u32::try_from(self.core.fair.depth(&engine_id))
                        .unwrap_or(u32::MAX),
                    venue_grants: self.core.fair.granted_to(&engine_id),
                    dead_man_fired_at_ms: dead_man.map_or(0, |d| d.0),
                    dead_man_canceled: dead_man.map_or(0, |d| d.1),
                    engine_id,
                }
            })
            .collect();
        Ok(Response::new(pb::ListEnginesResponse { engines }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn venue_status_table() {
        let cases = [
            (
                VenueError::InvalidArgument("x".into()),
                Code::InvalidArgument,
            ),
            (VenueError::Rejected("x".into()), Code::FailedPrecondition),
            (
                VenueError::InsufficientFunds("x".into()),
                Code::FailedPrecondition,
            ),
            (VenueError::UnknownOrder("x".into()), Code::NotFound),
            (
                VenueError::RateLimited {
                    message: "x".into(),
                    retry_after_ms: 5,
                },
                Code::ResourceExhausted,
            ),
            (
                VenueError::Lockout {
                    message: "x".into(),
                    until_ms: 5,
                },
                Code::ResourceExhausted,
            ),
            (VenueError::Unavailable("x".into()), Code::Unavailable),
            (
                VenueError::unsupported("kraken", "positions"),
                Code::Unimplemented,
            ),
            (VenueError::Parse("x".into()), Code::Internal),
        ];
        for (e, code) in cases {
            let st = venue_status(&e);
            assert_eq!(st.code(), code, "{e}");
            if code == Code::ResourceExhausted {
                let hint = st.metadata().get(RETRY_AFTER_MS).map(|v| v.to_str());
                assert!(matches!(hint, Some(Ok(_))), "{e}: no retry hint");
            }
        }
    }

    /// The paper venue, with a log of private calls and a gate that holds
    /// the cancel of one order until the test opens it.
    struct GatedVenue {
        inner: herd_paper::PaperVenue,
        calls: std::sync::Mutex<Vec<String>>,
        hold: String,
        entered: Notify,
        gate: tokio::sync::Semaphore,
    }

    impl GatedVenue {
        fn log(&self, what: String) {
            self.calls
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(what);
        }
    }

    #[async_trait::async_trait]
    impl Venue for GatedVenue {
        fn name(&self) -> &'static str {
            "gated-paper"
        }
        async fn instruments(&self) -> Result<Vec<Instrument>, VenueError> {
            self.inner.instruments().await
        }
        async fn ticker(&self, symbol: &str) -> Result<herd_venue::Ticker, VenueError> {
            self.inner.ticker(symbol).await
        }
        async fn candles(
            &self,
            symbol: &str,
            interval_minutes: u32,
            since_ms: i64,
        ) -> Result<Vec<herd_venue::Candle>, VenueError> {
            self.inner.candles(symbol, interval_minutes, since_ms).await
        }
        async fn balances(&self) -> Result<Vec<herd_venue::Balance>, VenueError> {
            self.inner.balances().await
        }
        async fn place_order(&self, order: &NewOrder) -> Result<PlaceOutcome, VenueError> {
            self.inner.place_order(order).await
        }
        async fn cancel_order(&self, order: &OrderRef) -> Result<(), VenueError> {
            self.log(format!("cancel {}", order.client_order_id));
            if order.client_order_id == self.hold {
                self.entered.notify_one();
                let _open = self.gate.acquire().await;
            }
            self.inner.cancel_order(order).await
        }
        async fn open_orders(&self) -> Result<Vec<OrderState>, VenueError> {
            self.inner.open_orders().await
        }
        async fn query_orders(&self, orders: &[OrderRef]) -> Result<Vec<OrderState>, VenueError> {
            for o in orders {
                self.log(format!("query {}", o.client_order_id));
            }
            self.inner.query_orders(orders).await
        }
    }

    fn resting_buy(id: &str) -> pb::PlaceOrderRequest {
        pb::PlaceOrderRequest {
            client_order_id: id.into(),
            symbol: "DOGEUSD".into(),
            side: pb::Side::Buy as i32,
            order_type: pb::OrderType::Limit as i32,
            volume: "100".into(),
            price: "0.05".into(),
            post_only: true,
            ..Default::default()
        }
    }

    /// Issue 23, bug 1, below config validation: with prefixes that overlap
    /// (`a-` and `a-b-`; `p0-` and `p0`), an engine naming another's order
    /// through prefix arithmetic gets NOT_FOUND, with the registry warm and
    /// after a restart (the order known only to the venue), and the order
    /// stays open and its owner's.
    #[tokio::test]
    async fn prefix_arithmetic_never_reaches_another_engines_order() {
        let cases = [
            (("a-b", "a-b-"), ("a", "a-"), "xyz", "b-xyz"),
            (("p0", "p0-"), ("p1", "p0"), "abc", "-abc"),
        ];
        for ((owner, owner_prefix), (other, other_prefix), id, attack) in cases {
            let clock = herd_venue::ManualClock::new(1_700_000_000_000);
            let paper = herd_paper::PaperVenue::new(
                &herd_paper::PaperConfig::default(),
                Arc::new(clock.clone()),
            );
            let engines = [
                (owner.to_string(), owner_prefix.to_string()),
                (other.to_string(), other_prefix.to_string()),
            ];
            let userrefs = HashMap::from([
                (owner.to_string(), (1, 99)),
                (other.to_string(), (100, 199)),
            ]);
            let core = |registry| {
                Core::new(
                    Arc::new(paper.clone()),
                    None,
                    registry,
                    Arc::new(clock.clone()),
                    userrefs.clone(),
                )
            };
            let warm = core(Arc::new(Registry::new(&engines, "one".into(), 100)));
            warm.place(owner, &resting_buy(id)).await.unwrap();
            // The same venue, a new registry: the gateway restarted.
            let cold = core(Arc::new(Registry::new(&engines, "two".into(), 100)));
            for (when, c) in [("warm", &warm), ("after a restart", &cold)] {
                let got = c.cancel(other, attack).await.unwrap_err();
                assert_eq!(
                    got.code(),
                    tonic::Code::NotFound,
                    "{owner}/{other} {when}: {got:?}"
                );
                assert!(
                    c.get_or_lookup(other, attack).await.unwrap().is_none(),
                    "{when}"
                );
                let placed = c.place(other, &resting_buy(attack)).await;
                assert!(
                    placed
                        .as_ref()
                        .is_err_and(|e| e.code() == tonic::Code::InvalidArgument),
                    "{owner}/{other} {when}: {placed:?}"
                );
                assert!(c.registry.working_orders(other).is_empty(), "{when}");
                assert_eq!(c.registry.last_sequence(other), 0, "{when}");
                let mine = c.get_or_lookup(owner, id).await.unwrap().unwrap();
                assert_eq!(mine.status, herd_venue::OrderStatus::Open, "{when}");
                assert_eq!(
                    c.registry.owner(&format!("{owner_prefix}{id}")),
                    Some((owner.to_string(), id.to_string())),
                    "{when}"
                );
            }
        }
    }

    /// Issue 16 at the Core: a breach whose action is HALT refuses the
    /// order with its code, halts the engine (the other trades on), and the
    /// metrics page shows the denial, the state and the usage ratio.
    #[tokio::test]
    async fn a_halting_breach_shows_in_state_and_metrics() {
        let clock = herd_venue::ManualClock::new(1_700_000_000_000);
        let paper = herd_paper::PaperVenue::new(
            &herd_paper::PaperConfig::default(),
            Arc::new(clock.clone()),
        );
        let engines = [
            ("a".to_string(), "a-".to_string()),
            ("b".to_string(), "b-".to_string()),
        ];
        let mut limits = crate::risk::Limits {
            max_open_orders: Some(2),
            ..crate::risk::Limits::default()
        };
        limits.actions.max_open_orders = BreachAction::Halt;
        let cfg = crate::risk::RiskConfig {
            engines: [("a".to_string(), limits)].into(),
            ..crate::risk::RiskConfig::default()
        };
        let core = Core::new(
            Arc::new(paper),
            None,
            Arc::new(Registry::new(&engines, "one".into(), 100)),
            Arc::new(clock),
            HashMap::from([("a".to_string(), (1, 99)), ("b".to_string(), (100, 199))]),
        )
        .with_risk(&cfg);
        for id in ["x1", "x2"] {
            core.place("a", &resting_buy(id)).await.unwrap();
        }
        let denied = core.place("a", &resting_buy("x3")).await.unwrap_err();
        assert_eq!(denied.code(), tonic::Code::FailedPrecondition);
        assert_eq!(
            herd_proto::answer::risk_code(&denied),
            Some("max_open_orders")
        );
        assert!(core.registry.get("a", "x3").is_none());
        assert_eq!(core.risk.state(Some("a")), Some(TradingState::Halted));
        core.place("b", &resting_buy("x3")).await.unwrap();
        let page = crate::metrics::render(&core).unwrap();
        for line in [
            "herd_gateway_risk_denials_total{engine=\"a\",code=\"max_open_orders\"} 1",
            "herd_gateway_risk_state{book=\"a\"} 2",
            "herd_gateway_risk_state{book=\"b\"} 0",
            "herd_gateway_risk_usage_ratio{book=\"a\",limit=\"max_open_orders\"} 1",
        ] {
            assert!(page.contains(line), "{line} not in\n{page}");
        }
    }

    /// Issue 23: QueryOrders takes at most MAX_QUERY_IDS ids, refused by
    /// field name beyond, and answers each order once.
    #[tokio::test]
    async fn query_orders_is_capped_and_deduplicated() {
        use pb::gateway_server::Gateway;
        let clock = herd_venue::ManualClock::new(1_700_000_000_000);
        let paper = herd_paper::PaperVenue::new(
            &herd_paper::PaperConfig::default(),
            Arc::new(clock.clone()),
        );
        let engines = [("a".to_string(), "a-".to_string())];
        let core = Arc::new(Core::new(
            Arc::new(paper),
            None,
            Arc::new(Registry::new(&engines, "one".into(), 100)),
            Arc::new(clock),
            HashMap::from([("a".to_string(), (1, 99))]),
        ));
        for id in ["x1", "x2"] {
            core.place("a", &resting_buy(id)).await.unwrap();
        }
        let svc = GatewayService::new(core);
        let ask = |ids: Vec<String>| {
            let mut r = Request::new(pb::QueryOrdersRequest {
                client_order_ids: ids,
            });
            r.extensions_mut()
                .insert(crate::auth::Caller::Engine("a".into()));
            r
        };
        let ids = |n: usize| -> Vec<String> {
            (0..n)
                .map(|i| if i % 2 == 0 { "x1" } else { "x2" }.to_string())
                .collect()
        };
        let at_cap = svc.query_orders(ask(ids(MAX_QUERY_IDS))).await.unwrap();
        let got: Vec<String> = at_cap
            .into_inner()
            .orders
            .into_iter()
            .map(|o| o.client_order_id)
            .collect();
        assert_eq!(got, ["x1", "x2"], "each order once, in the order asked");
        let over = svc
            .query_orders(ask(ids(MAX_QUERY_IDS + 1)))
            .await
            .unwrap_err();
        assert_eq!(over.code(), tonic::Code::InvalidArgument);
        assert!(
            over.message().starts_with("client_order_ids:") && over.message().contains("1000"),
            "{over:?}"
        );
        let huge = svc.query_orders(ask(ids(200_000))).await.unwrap_err();
        assert_eq!(huge.code(), tonic::Code::InvalidArgument);
    }

    /// With one venue slot, a cancel's follow-up look at the order queues as
    /// a query of its own: another engine's cancel that waited for the slot
    /// goes first instead of waiting for the look too.
    #[tokio::test]
    async fn a_cancels_follow_up_look_gives_the_slot_back() {
        let clock = herd_venue::ManualClock::new(1_700_000_000_000);
        let paper = herd_paper::PaperVenue::new(
            &herd_paper::PaperConfig::default(),
            Arc::new(clock.clone()),
        );
        let venue = Arc::new(GatedVenue {
            inner: paper,
            calls: std::sync::Mutex::new(Vec::new()),
            hold: "a-a1".into(),
            entered: Notify::new(),
            gate: tokio::sync::Semaphore::new(0),
        });
        let engines = [
            ("a".to_string(), "a-".to_string()),
            ("b".to_string(), "b-".to_string()),
        ];
        let registry = Arc::new(Registry::new(&engines, "test".into(), 100));
        let userrefs = HashMap::from([("a".to_string(), (1, 99)), ("b".to_string(), (100, 199))]);
        let weights = [("a".to_string(), 1), ("b".to_string(), 1)];
        let core = Arc::new(
            Core::new(venue.clone(), None, registry, Arc::new(clock), userrefs)
                .with_fair_queue(FairQueue::new(1, 64, &weights)),
        );
        for (engine, id) in [("a", "a1"), ("b", "b1")] {
            let req = pb::PlaceOrderRequest {
                client_order_id: id.into(),
                symbol: "DOGEUSD".into(),
                side: pb::Side::Buy as i32,
                order_type: pb::OrderType::Limit as i32,
                volume: "100".into(),
                price: "0.05".into(),
                post_only: true,
                ..Default::default()
            };
            core.place(engine, &req).await.unwrap();
        }
        venue.calls.lock().unwrap().clear();

        let c = core.clone();
        let a = tokio::spawn(async move { c.cancel("a", "a1").await });
        venue.entered.notified().await;
        let c = core.clone();
        let b = tokio::spawn(async move { c.cancel("b", "b1").await });
        while core.fair.depth("b") == 0 {
            tokio::task::yield_now().await;
        }
        venue.gate.add_permits(1);
        let (a, b) = (a.await.unwrap().unwrap(), b.await.unwrap().unwrap());
        assert_eq!(
            (a.status, b.status),
            (
                pb::OrderStatus::Canceled as i32,
                pb::OrderStatus::Canceled as i32
            )
        );
        assert_eq!(
            *venue.calls.lock().unwrap(),
            ["cancel a-a1", "cancel b-b1", "query a-a1", "query b-b1"],
            "b's cancel waited only for a's cancel"
        );
    }
}
