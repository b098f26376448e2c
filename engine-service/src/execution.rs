//! The execution layer: the only part of the engine that talks to the
//! gateway. It places and cancels what strategies ask for, follows the
//! engine's order-event stream (resuming after the last sequence the store
//! recorded), journals every event exactly once and hands updates back to
//! the strategy that owns the order.

use std::collections::VecDeque;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use herd_proto::answer;
use herd_proto::gateway as pb;
use herd_proto::gateway::gateway_client::GatewayClient;
use rust_decimal::Decimal;
use tokio::sync::Mutex as AsyncMutex;
use tonic::codegen::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};

pub use crate::clock::now_ms;
use crate::config::{EngineConfig, Secret};
use crate::store::{OrderRow, Store};
use herd_strategies::strategy::{
    Action, IdGen, Instrument, InstrumentKind, JournalRow, KnownOrder, MarketView, OpenOrderRef,
    OrderIntent, OrderUpdate, RegimeView, Side, Strategy, UpdateKind,
};

/// The instrument kind a gateway answer names (spot when it names none).
pub fn kind_from_pb(kind: i32) -> InstrumentKind {
    match pb::InstrumentKind::try_from(kind) {
        Ok(pb::InstrumentKind::Perpetual) => InstrumentKind::Perpetual,
        _ => InstrumentKind::Spot,
    }
}

/// An instrument as the gateway lists it, in the strategies' type.
pub fn instrument_from_pb(i: pb::Instrument) -> Instrument {
    Instrument {
        kind: kind_from_pb(i.kind),
        symbol: i.symbol,
        base: i.base,
        quote: i.quote,
        tick_size: dec(&i.tick_size),
        price_decimals: i.price_decimals,
        lot_decimals: i.lot_decimals,
        min_volume: dec(&i.min_volume),
        min_cost: dec(&i.min_cost),
        maker_fee: dec(&i.maker_fee),
        taker_fee: dec(&i.taker_fee),
        max_open_orders: i.max_open_orders,
    }
}

/// Adds the engine's bearer token to every gateway call.
#[derive(Clone)]
pub struct TokenInterceptor {
    header: tonic::metadata::MetadataValue<tonic::metadata::Ascii>,
}

impl std::fmt::Debug for TokenInterceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenInterceptor(REDACTED)")
    }
}

impl TokenInterceptor {
    pub fn new(token: &Secret) -> Result<TokenInterceptor, Status> {
        let header = format!("Bearer {}", token.expose())
            .parse()
            .map_err(|_| Status::invalid_argument("token is not valid ASCII metadata"))?;
        Ok(TokenInterceptor { header })
    }
}

impl Interceptor for TokenInterceptor {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        req.metadata_mut()
            .insert("authorization", self.header.clone());
        Ok(req)
    }
}

pub type Gateway = GatewayClient<InterceptedService<Channel, TokenInterceptor>>;

/// Connects (lazily) to the gateway at `url` with `token`.
pub fn gateway_client(url: &str, token: &Secret) -> anyhow::Result<Gateway> {
    let channel = Endpoint::from_shared(url.to_string())?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .connect_lazy();
    Ok(GatewayClient::with_interceptor(
        channel,
        TokenInterceptor::new(token)?,
    ))
}

/// Engine mode as operators see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Running,
    Paused,
    Halted,
}

/// What the engine knows about itself, for status and gating.
#[derive(Debug, Clone)]
pub struct EngineState {
    pub mode: Mode,
    pub pause_reason: String,
    pub gateway_connected: bool,
    pub incarnation: String,
    pub last_sequence: u64,
    pub userref_min: i32,
    pub market: Option<MarketView>,
    pub market_time_ms: i64,
    pub instrument: Option<Instrument>,
    pub free_base: Option<Decimal>,
    pub free_quote: Option<Decimal>,
    pub balances_time_ms: i64,
    pub open_orders_on_pair: Option<u32>,
    pub regime: RegimeView,
    /// The detector's full reading (per timeframe), for status.
    pub regime_detail: serde_json::Value,
    pub consecutive_errors: u32,
    pub last_error: String,
    /// Last time one of this engine's orders was cancelled after a partial
    /// fill (the capacity band's canary).
    pub last_partial_cancel_ms: Option<i64>,
    /// What startup cleanup did (None until it ran).
    pub startup_cleanup: Option<CleanupReport>,
    /// The last reconcile that ran, not a dry run (None until one did).
    pub last_reconcile: Option<crate::reconcile::Report>,
    /// The engine's risk book at the gateway (None until the first read).
    pub risk: Option<crate::risk::RiskRead>,
}

/// What startup cleanup found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CleanupReport {
    /// Stale orders the strategies named.
    pub found: usize,
    pub canceled: usize,
    /// "client_order_id: why" for each cancel that failed.
    pub failed: Vec<String>,
}

/// An order action of a strategy that failed (see [`Shared::execute`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionFailure {
    pub client_order_id: String,
    /// `PlaceFailed` or `CancelFailed`.
    pub kind: UpdateKind,
    pub message: String,
}

/// How long after an unknown outcome (and between asks) the engine asks the
/// gateway about the order: long enough for a place still in flight at the
/// gateway to be registered there.
pub const UNKNOWN_OUTCOME_ASK_MS: i64 = 2_000;

/// Attempts at listing open orders before startup cleanup gives up.
const CLEANUP_ATTEMPTS: u32 = 10;

/// At most this many order events share one journal transaction.
const MAX_EVENT_BATCH: usize = 256;

/// The stream's next message if it has already arrived (`None` when it has
/// not): polled once without registering for a wake-up, so the caller must
/// await [`tonic::Streaming::message`] to wait for more. `Streaming` keeps
/// its state in itself, so a poll that finds nothing loses nothing.
fn ready_message<T>(stream: &mut tonic::Streaming<T>) -> Option<Result<Option<T>, Status>> {
    use tokio_stream::Stream;
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match std::pin::Pin::new(stream).poll_next(&mut cx) {
        std::task::Poll::Pending => None,
        std::task::Poll::Ready(Some(Ok(m))) => Some(Ok(Some(m))),
        std::task::Poll::Ready(Some(Err(e))) => Some(Err(e)),
        std::task::Poll::Ready(None) => Some(Ok(None)),
    }
}

/// Everything the engine's tasks share.
pub struct Shared {
    pub cfg: EngineConfig,
    pub store: Store,
    pub gateway: Gateway,
    state: Mutex<EngineState>,
    pub strategies: AsyncMutex<Vec<Box<dyn Strategy>>>,
    ids: Mutex<IdGen>,
    /// The funding-rate orchestrator, when the engine runs one.
    pub funding: std::sync::OnceLock<Arc<crate::funding::FundingHandle>>,
    /// The configuration reload (`crate::reload`), when the engine was
    /// started with a config to reload.
    pub reloader: std::sync::OnceLock<Arc<crate::reload::Reloader>>,
    /// Shutdown state: once draining, strategies place nothing new (their
    /// places fail back to them as on a paused engine) and ticks stop.
    pub drain: herd_proto::serving::Drain,
    /// Prometheus counters and histograms (`/metrics`).
    pub metrics: crate::metrics::EngineMetrics,
    /// Order updates that arrived before the strategies were live, in
    /// arrival order; `None` once they are (see [`Shared::dispatch`]).
    early_updates: Mutex<Option<Vec<OrderUpdate>>>,
    /// Strategy orders whose place had an unknown outcome, with when the
    /// gateway was last asked (see [`Shared::resolve_unknown_outcomes`]).
    unknown_outcomes: Mutex<std::collections::HashMap<String, i64>>,
    /// Client ids whose PlaceOrder call is on its way in this process
    /// (journaled pending, not answered yet): reconcile leaves them to it.
    placing: Mutex<std::collections::HashSet<String>>,
    /// Whether the event stream is connected (after reconcile), for those
    /// that follow it (the gRPC health of the engine's service).
    connected: tokio::sync::watch::Sender<bool>,
    /// What the admin port's `/readyz` reports: not ready until the event
    /// stream is connected, and again while the gateway is unreachable.
    pub readiness: herd_proto::admin_http::Readiness,
    /// One reconcile at a time (see [`crate::reconcile::run`]).
    pub(crate) reconcile_lock: AsyncMutex<()>,
    /// Woken when the gateway's risk layer refused an order, so the risk
    /// book is read again at once (see [`crate::risk::run`]).
    pub risk_changed: tokio::sync::Notify,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("engine", &self.cfg.id)
            .finish_non_exhaustive()
    }
}

fn dec(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap_or_default()
}

/// Is this failure the venue's or the network's (it counts toward the pause
/// after too many in a row), rather than a problem with the request?
/// An order status as logs print it ("ORDER_STATUS_OPEN").
fn status_name(status: i32) -> &'static str {
    pb::OrderStatus::try_from(status).map_or("ORDER_STATUS_UNKNOWN", |s| s.as_str_name())
}

/// The strategy-facing view of a stream event.
pub fn update_from_event(ev: &pb::OrderEvent) -> Option<OrderUpdate> {
    let o = ev.order.as_ref()?;
    let kind = match pb::OrderEventKind::try_from(ev.kind).ok()? {
        pb::OrderEventKind::Open => UpdateKind::Open,
        pb::OrderEventKind::PartialFill => UpdateKind::PartialFill,
        pb::OrderEventKind::Filled => UpdateKind::Filled,
        pb::OrderEventKind::Canceled => UpdateKind::Canceled,
        pb::OrderEventKind::Expired => UpdateKind::Expired,
        pb::OrderEventKind::Rejected => UpdateKind::Rejected,
        pb::OrderEventKind::Unspecified => return None,
    };
    Some(OrderUpdate {
        client_order_id: o.client_order_id.clone(),
        kind,
        volume_executed: dec(&o.volume_executed),
        average_price: Some(dec(&o.average_price)).filter(|p| !p.is_zero()),
        fill_volume: dec(&ev.fill_volume),
        fill_price: dec(&ev.fill_price),
        fill_fee: dec(&ev.fill_fee),
        fee_asset: o.fee_asset.clone(),
        message: o.reason.clone(),
    })
}

/// Why the engine is not ready while its gateway's event stream is down.
pub const GATEWAY_UNREACHABLE: &str = "gateway unreachable (waiting to reconnect)";

fn not_connected_yet() -> herd_proto::admin_http::Readiness {
    let r = herd_proto::admin_http::Readiness::default();
    r.set_not_ready("not connected to the gateway yet");
    r
}

impl Shared {
    pub fn new(
        cfg: EngineConfig,
        store: Store,
        gateway: Gateway,
        strategies: Vec<Box<dyn Strategy>>,
    ) -> Shared {
        Shared {
            cfg,
            store,
            gateway,
            state: Mutex::new(EngineState {
                mode: Mode::Running,
                pause_reason: String::new(),
                gateway_connected: false,
                incarnation: String::new(),
                last_sequence: 0,
                userref_min: 0,
                market: None,
                market_time_ms: 0,
                instrument: None,
                free_base: None,
                free_quote: None,
                balances_time_ms: 0,
                open_orders_on_pair: None,
                regime: RegimeView::not_ready(),
                regime_detail: serde_json::Value::Null,
                consecutive_errors: 0,
                last_error: String::new(),
                last_partial_cancel_ms: None,
                startup_cleanup: None,
                last_reconcile: None,
                risk: None,
            }),
            strategies: AsyncMutex::new(strategies),
            ids: Mutex::new(IdGen::new(now_ms())),
            funding: std::sync::OnceLock::new(),
            reloader: std::sync::OnceLock::new(),
            drain: herd_proto::serving::Drain::new(),
            metrics: crate::metrics::EngineMetrics::new(),
            early_updates: Mutex::new(Some(Vec::new())),
            unknown_outcomes: Mutex::new(std::collections::HashMap::new()),
            placing: Mutex::new(std::collections::HashSet::new()),
            connected: tokio::sync::watch::Sender::new(false),
            readiness: not_connected_yet(),
            reconcile_lock: AsyncMutex::new(()),
            risk_changed: tokio::sync::Notify::new(),
        }
    }

    pub fn state(&self) -> MutexGuard<'_, EngineState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records whether the gateway's event stream is up (after reconcile).
    /// `/readyz` changes first, so a reader who saw the engine connected in
    /// its status finds it ready.
    fn set_gateway_connected(&self, connected: bool) {
        if connected {
            self.readiness.set_ready();
        } else {
            self.readiness.set_not_ready(GATEWAY_UNREACHABLE);
        }
        self.state().gateway_connected = connected;
        self.connected
            .send_if_modified(|c| std::mem::replace(c, connected) != connected);
    }

    /// Follows whether the gateway's event stream is up (see
    /// [`EngineState::gateway_connected`]).
    pub fn gateway_reachability(&self) -> tokio::sync::watch::Receiver<bool> {
        self.connected.subscribe()
    }

    pub fn next_id(&self, tag: &str) -> String {
        self.ids.lock().unwrap_or_else(|p| p.into_inner()).next(tag)
    }

    fn note_result<T>(&self, r: &Result<T, Status>) {
        let mut st = self.state();
        match r {
            Ok(_) => st.consecutive_errors = 0,
            // The gateway is down or the connection broke: the engine waits
            // for it (not ready meanwhile; see `gateway_reachability`) and
            // resumes on reconnect. Neither a venue error nor a success.
            Err(s) if answer::is_gateway_unreachable(s) => {
                self.metrics.gateway_unreachable.inc();
            }
            Err(s) if answer::is_venue_trouble(s) => {
                self.metrics.record_venue_error(s.code());
                st.consecutive_errors += 1;
                st.last_error = s.message().to_string();
                if st.consecutive_errors >= self.cfg.max_consecutive_errors
                    && st.mode == Mode::Running
                {
                    st.mode = Mode::Paused;
                    st.pause_reason = format!(
                        "{} consecutive venue errors; last: {}",
                        st.consecutive_errors,
                        s.message()
                    );
                    tracing::error!(reason = %st.pause_reason, "engine paused");
                }
            }
            Err(_) => {}
        }
    }

    /// Places one order for `owner`: journaled as pending first, then sent.
    pub async fn place(&self, owner: &str, intent: &OrderIntent) -> Result<pb::Order, Status> {
        self.place_with(owner, intent, false).await
    }

    /// [`Shared::place`] with the reduce-only flag (perpetuals).
    #[tracing::instrument(name = "place_order", skip_all,
        fields(engine = %self.cfg.id, owner = %owner, client_order_id = %intent.client_order_id))]
    pub async fn place_with(
        &self,
        owner: &str,
        intent: &OrderIntent,
        reduce_only: bool,
    ) -> Result<pb::Order, Status> {
        if intent.userref_offset != 0 && self.state().userref_min <= 0 {
            // Without the session the offset cannot be put in this engine's
            // range; the gateway would file the order under the range's
            // start, where startup cleanup could not tell whose it is.
            return Err(Status::failed_precondition(
                "no gateway session yet (userref range unknown)",
            ));
        }
        let _placing = Placing::start(&self.placing, &intent.client_order_id);
        let now = now_ms();
        self.store
            .insert_order(&OrderRow {
                client_order_id: intent.client_order_id.clone(),
                owner: owner.to_string(),
                symbol: intent.symbol.clone(),
                side: intent.side.as_str().to_string(),
                order_type: if intent.price.is_some() {
                    "limit"
                } else {
                    "market"
                }
                .to_string(),
                price: intent.price.map(|p| p.to_string()).unwrap_or_default(),
                volume: intent.volume.to_string(),
                volume_executed: "0".into(),
                average_price: String::new(),
                fee: "0".into(),
                fee_asset: String::new(),
                status: "pending".into(),
                venue_order_id: String::new(),
                created_at_ms: now,
                updated_at_ms: now,
            })
            .await
            .map_err(|e| Status::internal(format!("journal: {e}")))?;
        let userref_min = self.state().userref_min;
        let req = pb::PlaceOrderRequest {
            client_order_id: intent.client_order_id.clone(),
            symbol: intent.symbol.clone(),
            side: match intent.side {
                Side::Buy => pb::Side::Buy,
                Side::Sell => pb::Side::Sell,
            } as i32,
            order_type: if intent.price.is_some() {
                pb::OrderType::Limit
            } else {
                pb::OrderType::Market
            } as i32,
            volume: intent.volume.to_string(),
            price: intent.price.map(|p| p.to_string()).unwrap_or_default(),
            post_only: intent.post_only,
            userref: if userref_min > 0 {
                userref_min + intent.userref_offset
            } else {
                0
            },
            reduce_only,
            // The owner is the strategy's name (grid, rangers, churner,
            // funding, manual): the gateway's ledger splits PnL by it.
            strategy: owner.to_string(),
        };
        let started = std::time::Instant::now();
        let r = self.gateway.clone().place_order(req).await;
        self.metrics
            .record_order(crate::metrics::Op::Place, started, &r);
        self.note_result(&r);
        match r {
            Ok(resp) => {
                let order = resp
                    .into_inner()
                    .order
                    .ok_or_else(|| Status::internal("gateway answered without an order"))?;
                tracing::info!(
                    venue_order_id = %order.venue_order_id,
                    status = status_name(order.status),
                    latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                    "order placed"
                );
                if let Err(e) = self.store.update_order(&order, now_ms()).await {
                    tracing::error!(error = %e, "journal update failed");
                }
                Ok(order)
            }
            Err(s) => {
                tracing::warn!(code = ?s.code(), risk_code = answer::risk_code(&s).unwrap_or(""),
                    error = %s.message(), "order not placed");
                if answer::risk_code(&s).is_some() {
                    self.risk_changed.notify_one();
                }
                if answer::classify(&s).is_definite() {
                    // A definite refusal: the order does not exist anywhere.
                    let rejected = pb::Order {
                        client_order_id: intent.client_order_id.clone(),
                        symbol: intent.symbol.clone(),
                        status: pb::OrderStatus::Rejected as i32,
                        volume_executed: "0".into(),
                        reason: s.message().to_string(),
                        ..Default::default()
                    };
                    if let Err(e) = self.store.update_order(&rejected, now_ms()).await {
                        tracing::error!(error = %e, "journal update failed");
                    }
                }
                Err(s)
            }
        }
    }

    /// The herd event of an unknown outcome settled: the gateway has the
    /// order (`found`), or it never reached the gateway.
    async fn unknown_outcome_event(&self, client_order_id: &str, found: bool) {
        let (severity, message) = if found {
            (
                herd_proto::gateway::Severity::Notice,
                format!(
                    "{client_order_id}: the place's outcome was unknown; the gateway has the order"
                ),
            )
        } else {
            (
                herd_proto::gateway::Severity::Warning,
                format!(
                    "{client_order_id}: the place's outcome was unknown; it never reached the gateway, the strategy is told it failed"
                ),
            )
        };
        let id = client_order_id.to_string();
        crate::events::record_with(
            &self.store,
            now_ms(),
            herd_proto::events::kind::UNKNOWN_OUTCOME_RESOLVED,
            severity,
            message,
            move |mut e| {
                e.order_ids.push(id);
                e
            },
        )
        .await;
    }

    #[tracing::instrument(name = "cancel_order", skip_all,
        fields(engine = %self.cfg.id, client_order_id = %client_order_id))]
    pub async fn cancel(&self, client_order_id: &str) -> Result<pb::Order, Status> {
        let started = std::time::Instant::now();
        let r = self
            .gateway
            .clone()
            .cancel_order(pb::CancelOrderRequest {
                client_order_id: client_order_id.to_string(),
            })
            .await;
        self.metrics
            .record_order(crate::metrics::Op::Cancel, started, &r);
        self.note_result(&r);
        if let Err(s) = &r {
            tracing::warn!(code = ?s.code(), error = %s.message(), "cancel failed");
        }
        let order = r?
            .into_inner()
            .order
            .ok_or_else(|| Status::internal("gateway answered without an order"))?;
        tracing::info!(status = status_name(order.status), "order cancel sent");
        if let Err(e) = self.store.update_order(&order, now_ms()).await {
            tracing::error!(error = %e, "journal update failed");
        }
        Ok(order)
    }

    /// Runs strategy actions; failures are fed back to the owning strategy,
    /// whose answers run in turn (bounded, so a confused strategy cannot spin).
    /// Returns the failures, in order (an operator command reports them).
    pub async fn execute(&self, owner: &str, actions: Vec<Action>) -> Vec<ActionFailure> {
        let mut failures = Vec::new();
        let mut queue: VecDeque<Action> = actions.into();
        let mut budget = 200;
        while let Some(action) = queue.pop_front() {
            budget -= 1;
            if budget == 0 {
                tracing::error!(owner, "strategy action loop cut off after 200 actions");
                break;
            }
            let failure = match &action {
                Action::Place(intent) => {
                    let mode = self.state().mode;
                    if mode != Mode::Running {
                        Some((
                            intent.client_order_id.clone(),
                            UpdateKind::PlaceFailed,
                            format!("engine is {mode:?}"),
                        ))
                    } else if self.drain.is_draining() {
                        Some((
                            intent.client_order_id.clone(),
                            UpdateKind::PlaceFailed,
                            "engine is shutting down".to_string(),
                        ))
                    } else {
                        match self.place(owner, intent).await {
                            Ok(_) => None,
                            Err(s) if !answer::classify(&s).is_definite() => {
                                // Outcome unknown: the order may exist, so
                                // the strategy is not told it failed (it
                                // would place again). The stream tells if
                                // the gateway has it; otherwise
                                // `resolve_unknown_outcomes` asks.
                                tracing::warn!(owner, client_order_id = %intent.client_order_id, error = %s.message(), "place outcome unknown; resolving by asking the gateway");
                                self.unknown_outcomes
                                    .lock()
                                    .unwrap_or_else(|p| p.into_inner())
                                    .insert(intent.client_order_id.clone(), now_ms());
                                None
                            }
                            Err(s) => Some((
                                intent.client_order_id.clone(),
                                UpdateKind::PlaceFailed,
                                s.message().to_string(),
                            )),
                        }
                    }
                }
                Action::Cancel { client_order_id } => match self.cancel(client_order_id).await {
                    Ok(_) => None,
                    Err(s) => Some((
                        client_order_id.clone(),
                        UpdateKind::CancelFailed,
                        s.message().to_string(),
                    )),
                },
                Action::Journal {
                    stream,
                    kind,
                    payload_json,
                } => {
                    if let Err(e) = self
                        .store
                        .append_journal(stream, kind, payload_json, now_ms())
                        .await
                    {
                        tracing::error!(owner, stream, kind, error = %e, "strategy journal write failed");
                    }
                    None
                }
            };
            if let Some((client_order_id, kind, message)) = failure {
                tracing::warn!(owner, %client_order_id, ?kind, %message, "order action failed");
                failures.push(ActionFailure {
                    client_order_id: client_order_id.clone(),
                    kind,
                    message: message.clone(),
                });
                let update = OrderUpdate {
                    client_order_id,
                    kind,
                    volume_executed: Decimal::ZERO,
                    average_price: None,
                    fill_volume: Decimal::ZERO,
                    fill_price: Decimal::ZERO,
                    fill_fee: Decimal::ZERO,
                    fee_asset: String::new(),
                    message,
                };
                let more = {
                    let mut strategies = self.strategies.lock().await;
                    strategies
                        .iter_mut()
                        .find(|s| s.name() == owner)
                        .map(|s| s.on_order(&update, now_ms()))
                        .unwrap_or_default()
                };
                queue.extend(more);
            }
        }
        failures
    }

    /// Journals `events` (in stream order, one transaction) and then hands
    /// each to its strategy: nothing reaches a strategy before it is in the
    /// journal.
    async fn handle_events(&self, events: Vec<pb::OrderEvent>) -> anyhow::Result<()> {
        let new_fills = self.store.record_events(&events).await?;
        self.metrics.events.inc_by(events.len() as u64);
        for (ev, new_fill) in events.into_iter().zip(new_fills) {
            self.handle_journaled(ev, new_fill).await;
        }
        Ok(())
    }

    /// Hands one journaled stream event to the owning strategy.
    #[tracing::instrument(name = "order_event", skip_all, fields(
        engine = %self.cfg.id,
        sequence = ev.sequence,
        client_order_id = %ev.order.as_ref().map_or("", |o| o.client_order_id.as_str()),
    ))]
    async fn handle_journaled(&self, ev: pb::OrderEvent, new_fill: bool) {
        tracing::debug!(
            kind = pb::OrderEventKind::try_from(ev.kind).map_or("?", |k| k.as_str_name()),
            "order event journaled"
        );
        self.state().last_sequence = ev.sequence;
        if !ev.fill_volume.is_empty() && !new_fill {
            // The journal had this fill already: a reconcile learned it from
            // the venue and handed it to its strategy then (fills are keyed
            // by order and cumulative volume). Telling the strategy again
            // would count it twice in a strategy that does not check.
            tracing::debug!(client_order_id = ?ev.order.as_ref().map(|o| &o.client_order_id),
                "replayed fill already journaled; not handed over again");
            return;
        }
        let Some(update) = update_from_event(&ev) else {
            return;
        };
        if update.kind == UpdateKind::Canceled && update.volume_executed > Decimal::ZERO {
            tracing::warn!(client_order_id = %update.client_order_id, executed = %update.volume_executed,
                "a partially filled order was cancelled (capacity canary)");
            self.state().last_partial_cancel_ms = Some(now_ms());
        }
        self.dispatch(update).await;
    }

    /// Settles strategy orders whose place had an unknown outcome, once
    /// [`UNKNOWN_OUTCOME_ASK_MS`] has passed: the gateway registers an order
    /// before it sends it, so if it knows the order its stream tells the
    /// strategy what became of it; if it does not (NOT_FOUND), the order
    /// never reached it and the strategy gets `PlaceFailed`, and only then
    /// may it place again. Any other answer asks again later.
    pub async fn resolve_unknown_outcomes(&self, now: i64) {
        let due: Vec<String> = self
            .unknown_outcomes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(_, asked)| now - **asked >= UNKNOWN_OUTCOME_ASK_MS)
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            let r = self
                .gateway
                .clone()
                .query_orders(pb::QueryOrdersRequest {
                    client_order_ids: vec![id.clone()],
                })
                .await;
            let settled = match r {
                Ok(resp) => {
                    for o in resp.into_inner().orders {
                        if let Err(e) = self.store.update_order(&o, now_ms()).await {
                            tracing::error!(client_order_id = %id, error = %e, "journal update failed");
                        }
                    }
                    tracing::info!(client_order_id = %id, "unknown outcome resolved: the gateway has the order");
                    self.unknown_outcome_event(&id, true).await;
                    true
                }
                Err(s) if answer::classify(&s) == answer::Answer::NotFound => {
                    let message = "never reached the gateway".to_string();
                    let rejected = pb::Order {
                        client_order_id: id.clone(),
                        status: pb::OrderStatus::Rejected as i32,
                        volume_executed: "0".into(),
                        reason: message.clone(),
                        ..Default::default()
                    };
                    if let Err(e) = self.store.update_order(&rejected, now_ms()).await {
                        tracing::error!(client_order_id = %id, error = %e, "journal update failed");
                    }
                    tracing::warn!(client_order_id = %id, "unknown outcome resolved: the order never reached the gateway");
                    self.unknown_outcome_event(&id, false).await;
                    self.dispatch(OrderUpdate {
                        client_order_id: id.clone(),
                        kind: UpdateKind::PlaceFailed,
                        volume_executed: Decimal::ZERO,
                        average_price: None,
                        fill_volume: Decimal::ZERO,
                        fill_price: Decimal::ZERO,
                        fill_fee: Decimal::ZERO,
                        fee_asset: String::new(),
                        message,
                    })
                    .await;
                    true
                }
                Err(s) => {
                    tracing::debug!(client_order_id = %id, error = %s.message(), "cannot resolve an unknown outcome yet");
                    false
                }
            };
            let mut pending = self
                .unknown_outcomes
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if settled {
                pending.remove(&id);
            } else {
                pending.insert(id, now);
            }
        }
    }

    /// Whether the strategies are live (restored and past their first tick
    /// that knew the instrument): updates go to them at once.
    pub(crate) fn strategies_live(&self) -> bool {
        self.early_updates
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_none()
    }

    /// Orders whose place is still settling: its PlaceOrder call is on its
    /// way in this process, or its outcome was unknown and is being
    /// resolved by asking the gateway. Reconcile waits for them.
    pub(crate) fn resolving_unknown_outcomes(&self) -> std::collections::HashSet<String> {
        let mut ids: std::collections::HashSet<String> = self
            .unknown_outcomes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect();
        ids.extend(
            self.placing
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .cloned(),
        );
        ids
    }

    /// Hands an update to the strategy owning its order and runs its answer.
    ///
    /// Strategies are live once they are restored from their journal and
    /// have had a tick that knew the instrument (the grid prices exits with
    /// its filters). An update that arrives before (a stream replaying what
    /// happened while the engine was down comes first) is held, already
    /// journaled, and handed over in arrival order by that tick; dropping it
    /// would lose the fill from the strategy's books.
    pub(crate) async fn dispatch(&self, update: OrderUpdate) {
        let (owner, actions) = {
            let mut strategies = self.strategies.lock().await;
            let Some(s) = strategies
                .iter_mut()
                .find(|s| s.owns(&update.client_order_id))
            else {
                return;
            };
            {
                let mut early = self.early_updates.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(held) = early.as_mut() {
                    tracing::debug!(client_order_id = %update.client_order_id,
                        "order update held until the strategies are live");
                    held.push(update);
                    return;
                }
            }
            (s.name().to_string(), s.on_order(&update, now_ms()))
        };
        self.execute(&owner, actions).await;
    }

    /// Makes the strategies live (called with their lock held, after a tick
    /// that knew the instrument): the held updates go to their owners in
    /// arrival order. Updates are held and handed over under the strategies'
    /// lock, so none overtakes a held one; only updates a strategy owns are
    /// held.
    fn go_live(
        &self,
        strategies: &mut [Box<dyn Strategy>],
        now: i64,
        batches: &mut Vec<(String, Vec<Action>)>,
    ) {
        let held = self
            .early_updates
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let Some(held) = held else { return };
        if !held.is_empty() {
            tracing::info!(
                updates = held.len(),
                "strategies live: handing over the order updates held until now"
            );
        }
        for u in held {
            if let Some(s) = strategies.iter_mut().find(|s| s.owns(&u.client_order_id)) {
                batches.push((s.name().to_string(), s.on_order(&u, now)));
            }
        }
    }

    /// One connection's life: session, reconcile, stream until it breaks.
    async fn stream_once(&self) -> anyhow::Result<()> {
        let session = self
            .gateway
            .clone()
            .get_session(pb::GetSessionRequest {})
            .await?
            .into_inner();
        if session.engine_id != self.cfg.id {
            anyhow::bail!(
                "the gateway knows this token as engine {:?}, but this engine is {:?}",
                session.engine_id,
                self.cfg.id
            );
        }
        let cursor = self.store.cursor().await?;
        let new_incarnation = cursor.incarnation != session.incarnation;
        if new_incarnation && !cursor.incarnation.is_empty() {
            tracing::warn!(old = %cursor.incarnation, new = %session.incarnation,
                "gateway restarted; reconciling orders before trusting its stream");
        }
        // Reconcile before moving the cursor: a crash in between reconciles
        // again (fills are keyed, so nothing is counted twice). The stream
        // replays what happened since the cursor unless the gateway
        // restarted (its old event log is gone).
        let gateway_restarted = new_incarnation && !cursor.incarnation.is_empty();
        let report = crate::reconcile::run(
            self,
            if gateway_restarted {
                crate::reconcile::Trigger::GatewayRestart
            } else {
                crate::reconcile::Trigger::Reconnect
            },
            !gateway_restarted,
            Some(&session.incarnation),
            false,
        )
        .await?;
        if gateway_restarted
            && report
                .differences
                .iter()
                .any(|d| d.kind == crate::reconcile::Kind::Unresolved)
        {
            // The cursor must not move to the new incarnation before every
            // working order is settled: what the old log had is learned
            // only here.
            anyhow::bail!("reconcile after a gateway restart left orders unresolved; retrying");
        }
        let after = if new_incarnation {
            self.store.set_cursor(&session.incarnation, 0).await?;
            0
        } else {
            cursor.last_sequence
        };
        let mut stream = self
            .gateway
            .clone()
            .stream_order_events(pb::StreamOrderEventsRequest {
                after_sequence: after,
            })
            .await?
            .into_inner();
        {
            let mut st = self.state();
            st.incarnation = session.incarnation.clone();
            st.userref_min = session.userref_min;
            st.last_sequence = after;
        }
        self.set_gateway_connected(true);
        self.metrics.stream_connects.inc();
        tracing::info!(incarnation = %session.incarnation, after, "following order events");
        // What arrived together is journaled together (one commit, not one
        // per event): after each awaited event, the ones already received
        // behind it join its batch.
        while let Some(first) = stream.message().await? {
            let mut batch = vec![first];
            // Ok(true): the stream ended behind the batch; Err: it failed.
            let mut ended = Ok(false);
            while batch.len() < MAX_EVENT_BATCH
                && let Some(next) = ready_message(&mut stream)
            {
                match next {
                    Ok(Some(ev)) => batch.push(ev),
                    end => {
                        ended = end.map(|_| true);
                        break;
                    }
                }
            }
            // The events before an end or a failure are handled before it
            // is reported.
            self.handle_events(batch).await?;
            if ended? {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Follows the event stream forever, reconnecting with backoff.
    pub async fn run_event_stream(self: Arc<Self>) {
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.stream_once().await {
                Ok(()) => tracing::warn!("order event stream ended"),
                Err(e) => tracing::warn!(error = %e, "order event stream failed"),
            }
            // A stream that was up starts the backoff afresh.
            if self.state().gateway_connected {
                backoff = Duration::from_millis(100);
            }
            self.set_gateway_connected(false);
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    /// The instrument's filters (fetched once, retried until it works).
    async fn refresh_instrument(&self) {
        if self.state().instrument.is_some() {
            return;
        }
        let r = self
            .gateway
            .clone()
            .list_instruments(pb::ListInstrumentsRequest {})
            .await;
        self.note_result(&r);
        let Ok(list) = r else { return };
        let found = list
            .into_inner()
            .instruments
            .into_iter()
            .find(|i| i.symbol == self.cfg.symbol)
            .map(instrument_from_pb);
        if found.is_none() {
            tracing::error!(symbol = %self.cfg.symbol, "the gateway does not list the configured symbol");
        }
        self.state().instrument = found;
    }

    /// Free balances of base and quote, at most every `balance_refresh_ms`.
    async fn refresh_balances(&self, now: i64) {
        let (due, base, quote) = {
            let st = self.state();
            let Some(i) = &st.instrument else { return };
            (
                now - st.balances_time_ms
                    >= i64::try_from(self.cfg.balance_refresh_ms).unwrap_or(i64::MAX),
                i.base.clone(),
                i.quote.clone(),
            )
        };
        if !due {
            return;
        }
        let r = self
            .gateway
            .clone()
            .get_balances(pb::GetBalancesRequest {})
            .await;
        self.note_result(&r);
        if let Ok(b) = r {
            let b = b.into_inner().balances;
            let free = |asset: &str| b.iter().find(|x| x.asset == asset).map(|x| dec(&x.free));
            let mut st = self.state();
            st.free_base = Some(free(&base).unwrap_or_default());
            st.free_quote = Some(free(&quote).unwrap_or_default());
            st.balances_time_ms = now;
        }
    }

    async fn refresh_capacity(&self) {
        let r = self
            .gateway
            .clone()
            .get_capacity(pb::GetCapacityRequest {
                symbol: self.cfg.symbol.clone(),
            })
            .await;
        self.note_result(&r);
        self.state().open_orders_on_pair = r.ok().map(|c| c.into_inner().open_orders);
    }

    /// Startup cleanup: cancels the open orders a previous run of this
    /// engine's strategies left (each strategy names its own through
    /// [`Strategy::stale_orders`]; the gateway lists only this engine's
    /// orders). Runs whether or not the strategies are enabled. Listing and
    /// each refused cancel are retried a few times with a backoff, then
    /// given up (logged, and in the report).
    pub async fn startup_cleanup(&self) -> CleanupReport {
        let mut backoff = Duration::from_millis(100);
        let mut attempt = 0;
        let (userref_min, open) = loop {
            attempt += 1;
            let listed = async {
                let session = self
                    .gateway
                    .clone()
                    .get_session(pb::GetSessionRequest {})
                    .await?
                    .into_inner();
                let open = self
                    .gateway
                    .clone()
                    .list_open_orders(pb::ListOpenOrdersRequest {
                        symbol: self.cfg.symbol.clone(),
                    })
                    .await?
                    .into_inner()
                    .orders;
                Ok::<_, Status>((session, open))
            }
            .await;
            match listed {
                Ok((session, open)) => {
                    for s in self.strategies.lock().await.iter() {
                        if let Some(problem) =
                            s.userref_range_problem(session.userref_min, session.userref_max)
                        {
                            tracing::error!(strategy = s.name(), "{problem}");
                        }
                    }
                    let mut st = self.state();
                    if st.userref_min <= 0 {
                        st.userref_min = session.userref_min;
                    }
                    break (session.userref_min, open);
                }
                Err(s) if attempt < CLEANUP_ATTEMPTS => {
                    tracing::debug!(attempt, error = %s.message(), "startup cleanup: gateway not ready");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                Err(s) => {
                    tracing::warn!(attempts = attempt, error = %s.message(),
                        "startup cleanup skipped: cannot list open orders; stale strategy orders may remain");
                    let report = CleanupReport {
                        failed: vec![format!("list open orders: {}", s.message())],
                        ..CleanupReport::default()
                    };
                    self.state().startup_cleanup = Some(report.clone());
                    return report;
                }
            }
        };
        let refs: Vec<OpenOrderRef> = open
            .iter()
            .map(|o| OpenOrderRef {
                client_order_id: o.client_order_id.clone(),
                symbol: o.symbol.clone(),
                userref: o.userref,
            })
            .collect();
        let stale: Vec<String> = self
            .strategies
            .lock()
            .await
            .iter()
            .flat_map(|s| s.stale_orders(&refs, userref_min))
            .collect();
        let mut report = CleanupReport {
            found: stale.len(),
            ..CleanupReport::default()
        };
        // A refused cancel (a lockout, a gateway or venue restarting) is
        // asked again with a backoff, a few times, before the strategies
        // start: given up at once, it left an order open that no strategy
        // owns (found by the chaos soak). An order the gateway no longer
        // has is gone already.
        let mut pending = stale;
        let mut backoff = Duration::from_millis(200);
        for attempt in 1..=CLEANUP_ATTEMPTS {
            let mut refused = Vec::new();
            for id in pending {
                match self.cancel(&id).await {
                    Ok(_) => report.canceled += 1,
                    Err(s) if s.code() == tonic::Code::NotFound => {}
                    Err(s) => {
                        tracing::warn!(client_order_id = %id, attempt, error = %s.message(),
                            "startup cleanup: cancel failed");
                        refused.push((id, s.message().to_string()));
                    }
                }
            }
            if refused.is_empty() {
                break;
            }
            if attempt == CLEANUP_ATTEMPTS {
                tracing::warn!(
                    orders = refused.len(),
                    "startup cleanup: cancels still refused; proceeding"
                );
                report.failed = refused
                    .into_iter()
                    .map(|(id, why)| format!("{id}: {why}"))
                    .collect();
                break;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
            pending = refused.into_iter().map(|(id, _)| id).collect();
        }
        tracing::info!(
            found = report.found,
            canceled = report.canceled,
            failed = report.failed.len(),
            "startup cleanup of stale strategy orders done"
        );
        self.state().startup_cleanup = Some(report.clone());
        report
    }

    /// The reconcile step at start, before the strategies restore (so they
    /// restore from a journal the venue does not contradict). The stream
    /// replays what happened while the engine was down unless the gateway
    /// restarted meanwhile. If the gateway cannot be asked, the strategies
    /// restore from the journal as it is and the stream's reconcile settles
    /// it on connect.
    async fn start_reconcile(&self) {
        let session = self
            .gateway
            .clone()
            .get_session(pb::GetSessionRequest {})
            .await;
        let cursor = self.store.cursor().await;
        let (Ok(session), Ok(_)) = (session, cursor) else {
            tracing::warn!(
                "start reconcile skipped: cannot read the gateway session or the cursor; the stream's reconcile runs on connect"
            );
            return;
        };
        let session = session.into_inner();
        // Even when the stream will replay what happened while the engine
        // was down, a fill the journal lacks is journaled here, before the
        // strategies restore: the replay may arrive after the restore, and a
        // strategy restored from a journal that says "open" for an order the
        // venue has filled would treat it as lost and place it again (seen
        // in CI under load). Fills are keyed, so the replay adds nothing.
        if let Err(s) = crate::reconcile::run(
            self,
            crate::reconcile::Trigger::Start,
            false,
            Some(&session.incarnation),
            false,
        )
        .await
        {
            tracing::warn!(error = %s.message(), "start reconcile failed; the stream's reconcile runs on connect");
        }
    }

    /// Hands each strategy that keeps a journal its journal and its orders
    /// (as the store has them, marked with whether the venue lists them open
    /// now, working orders closed while down settled first), once, before
    /// the first tick. The strategies' lock is held while the store is read,
    /// so an order event is either in what a strategy reads here or held for
    /// it until it is live (see [`Shared::dispatch`]), never lost in between.
    pub async fn restore_strategies(&self) {
        let open_ids: Option<std::collections::HashSet<String>> = self
            .gateway
            .clone()
            .list_open_orders(pb::ListOpenOrdersRequest {
                symbol: String::new(),
            })
            .await
            .ok()
            .map(|r| {
                r.into_inner()
                    .orders
                    .into_iter()
                    .map(|o| o.client_order_id)
                    .collect()
            });
        let now = now_ms();
        let mut batches = Vec::new();
        {
            let mut strategies = self.strategies.lock().await;
            for s in strategies.iter_mut() {
                let Some(stream) = s.journal_stream().map(str::to_string) else {
                    continue;
                };
                let journal = match self.store.journal(&stream).await {
                    Ok(j) => j,
                    Err(e) => {
                        tracing::error!(stream, error = %e, "cannot read the journal; strategy starts empty");
                        continue;
                    }
                };
                let orders = self.store.orders_of(s.name()).await.unwrap_or_else(|e| {
                    tracing::error!(error = %e, "cannot read the strategy's orders");
                    Vec::new()
                });
                let rows: Vec<JournalRow> = journal
                    .into_iter()
                    .map(|(kind, payload, time_ms)| JournalRow {
                        kind,
                        payload,
                        time_ms,
                    })
                    .collect();
                let known: Vec<KnownOrder> = orders
                    .into_iter()
                    .map(|o| KnownOrder {
                        open_at_venue: match &open_ids {
                            Some(ids) => ids.contains(&o.client_order_id),
                            None => matches!(o.status.as_str(), "open" | "pending"),
                        },
                        client_order_id: o.client_order_id,
                        status: o.status,
                        volume_executed: dec(&o.volume_executed),
                        average_price: dec(&o.average_price),
                        fee: dec(&o.fee),
                        fee_asset: o.fee_asset,
                    })
                    .collect();
                let actions = s.restore(&rows, &known, now);
                tracing::info!(
                    strategy = s.name(),
                    journal_rows = rows.len(),
                    orders = known.len(),
                    actions = actions.len(),
                    "strategy restored from its journal"
                );
                batches.push((s.name().to_string(), actions));
            }
        }
        for (owner, actions) in batches {
            self.execute(&owner, actions).await;
        }
    }

    /// Refreshes the market and runs every strategy's tick, every `tick_ms`
    /// (after startup cleanup, so no strategy's new order is mistaken for a
    /// stale one). Returns once the engine drains: a tick in progress
    /// finishes, no new one starts.
    pub async fn run_ticks(self: Arc<Self>) {
        let drain = self.drain.clone();
        tokio::select! {
            () = drain.started() => return,
            () = async {
                self.startup_cleanup().await;
                self.start_reconcile().await;
                self.restore_strategies().await;
            } => {}
        }
        let mut interval = tokio::time::interval(Duration::from_millis(self.cfg.tick_ms));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                () = drain.started() => {
                    tracing::info!("strategy ticks stopped: engine shutting down");
                    return;
                }
                _ = interval.tick() => {}
            }
            self.resolve_unknown_outcomes(now_ms()).await;
            self.refresh_instrument().await;
            self.refresh_balances(now_ms()).await;
            self.refresh_capacity().await;
            let r = self
                .gateway
                .clone()
                .get_ticker(pb::GetTickerRequest {
                    symbol: self.cfg.symbol.clone(),
                })
                .await;
            self.note_result(&r);
            let market = match r {
                Ok(t) => {
                    let t = t.into_inner();
                    let mut st = self.state();
                    let m = MarketView {
                        symbol: t.symbol,
                        last: dec(&t.last),
                        bid: dec(&t.bid),
                        ask: dec(&t.ask),
                        instrument: st.instrument.clone(),
                        free_base: st.free_base,
                        free_quote: st.free_quote,
                        open_orders_on_pair: st.open_orders_on_pair,
                        regime: st.regime.clone(),
                        balances_as_of_ms: st.balances_time_ms,
                        last_partial_cancel_ms: st.last_partial_cancel_ms,
                    };
                    st.market = Some(m.clone());
                    st.market_time_ms = t.time_ms;
                    m
                }
                Err(s) => {
                    tracing::debug!(error = %s.message(), "ticker refresh failed");
                    continue;
                }
            };
            let now = now_ms();
            let batches: Vec<(String, Vec<Action>)> = {
                let mut strategies = self.strategies.lock().await;
                let mut batches: Vec<(String, Vec<Action>)> = strategies
                    .iter_mut()
                    .map(|s| (s.name().to_string(), s.on_tick(&market, now)))
                    .collect();
                if market.instrument.is_some() {
                    self.go_live(&mut strategies, now, &mut batches);
                }
                batches
            };
            for (owner, actions) in batches {
                if !actions.is_empty() {
                    self.execute(&owner, actions).await;
                }
            }
        }
    }
}

/// Marks a client id as being placed for as long as the guard lives (every
/// return path of [`Shared::place_with`] drops it).
struct Placing<'a> {
    set: &'a Mutex<std::collections::HashSet<String>>,
    id: String,
}

impl<'a> Placing<'a> {
    fn start(set: &'a Mutex<std::collections::HashSet<String>>, id: &str) -> Placing<'a> {
        set.lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_string());
        Placing {
            set,
            id: id.to_string(),
        }
    }
}

impl Drop for Placing<'_> {
    fn drop(&mut self) {
        self.set
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
    }
}
