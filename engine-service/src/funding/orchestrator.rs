//! The orchestrator: the cycle (scan -> rank -> close unprofitable -> open
//! profitable -> check margin -> publish status) every `cycle_interval_ms`,
//! never two at once, plus the emergency controller, operator commands and
//! the shutdown policy.
//!
//! All mutable state sits behind one async mutex. The timer *tries* it: a
//! cycle that is due while another still runs is skipped and counted, not
//! queued. Operator commands and the emergency wait for it. Every step of a
//! cycle reports its own error; one failing step does not stop the others.
//!
//! [`FundingHandle`] is the non-generic face the control server, signal
//! handlers and status use; [`Orchestrator`] is generic over the venue
//! ([`FundingApi`]) so tests run it on the paper exchange with a fake clock.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use herd_proto::engine as pb;
use rust_decimal::Decimal;
use tokio::sync::{Mutex as AsyncMutex, mpsc, oneshot};

use crate::funding::legs::{self, AppliedFill, CloseCtx, Timing};
use crate::store::{FundingFillRow, FundingPaymentRow, FundingPnlRow, FundingPositionRow, Store};
use herd_strategies::funding::api::{
    ApiError, BalanceInfo, FundingApi, InstrumentKind, InstrumentSpec, MarginInfo, RateSnapshot,
    VenuePosition,
};
use herd_strategies::funding::config::{FundingConfig, LimitError, RiskLimits, ShutdownPolicy};
use herd_strategies::funding::pnl::{self, estimate_settlements};
use herd_strategies::funding::position::{
    ClosePolicy, FundingPosition, PendingOrder, PositionState, close_decision, size_hedge,
};
use herd_strategies::funding::rank::{self, Opportunity, RankParams};
use herd_strategies::funding::reconcile::{Mismatch, reconcile};
use herd_strategies::funding::risk::{self, MarginBand, Rejection, RiskView};

/// Emergency closes: tries per position and the waits between them.
pub const EMERGENCY_TRIES: u32 = 3;
pub const EMERGENCY_BACKOFF: &[Duration] = &[Duration::from_secs(1), Duration::from_secs(2)];
/// Closed positions shown in status besides the active ones.
const CLOSED_IN_STATUS: usize = 5;
/// The store journal stream of the emergency latch: "fired" (reason,
/// at_ms), "done" (failures), "cleared" (reason). The last "fired" not
/// followed by "cleared" latches the controller across restarts.
pub const EMERGENCY_STREAM: &str = "funding-emergency";

/// The emergency controller's state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EmergencyState {
    pub triggered: bool,
    pub reason: String,
    pub at_ms: i64,
    pub done: bool,
    pub failures: Vec<String>,
}

enum Command {
    Emergency,
    Close {
        symbol: String,
        reply: oneshot::Sender<Result<String, String>>,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
    ClearEmergency {
        reason: String,
        reply: oneshot::Sender<Result<String, String>>,
    },
}

struct HandleState {
    limits: RiskLimits,
    paused: Option<String>,
    emergency: EmergencyState,
    status: pb::FundingStatus,
    running: bool,
}

/// The orchestrator as the rest of the engine sees it.
pub struct FundingHandle {
    cfg: FundingConfig,
    state: Mutex<HandleState>,
    fired: AtomicBool,
    skipped: AtomicU64,
    commands: mpsc::UnboundedSender<Command>,
}

impl std::fmt::Debug for FundingHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FundingHandle").finish_non_exhaustive()
    }
}

fn s(d: Decimal) -> String {
    d.normalize().to_string()
}

fn limits_pb(l: &RiskLimits) -> pb::FundingRiskLimits {
    pb::FundingRiskLimits {
        max_position_usd: s(l.max_position_usd),
        max_positions: l.max_positions,
        max_total_exposure_usd: s(l.max_total_exposure_usd),
        min_rate: s(l.min_rate),
        exit_rate: s(l.exit_rate),
        margin_alert: s(l.margin_alert),
        margin_critical: s(l.margin_critical),
    }
}

impl FundingHandle {
    fn lock(&self) -> MutexGuard<'_, HandleState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn config(&self) -> &FundingConfig {
        &self.cfg
    }

    /// The status block (the last cycle's picture plus live control state).
    pub fn status(&self) -> pb::FundingStatus {
        let st = self.lock();
        let mut out = st.status.clone();
        out.enabled = self.cfg.enabled;
        out.running = st.running;
        out.opening_paused = st.paused.is_some() || st.emergency.triggered;
        out.pause_reason = if st.emergency.triggered {
            format!("emergency stop: {}", st.emergency.reason)
        } else {
            st.paused.clone().unwrap_or_default()
        };
        out.limits = Some(limits_pb(&st.limits));
        out.emergency = Some(pb::FundingEmergency {
            triggered: st.emergency.triggered,
            reason: st.emergency.reason.clone(),
            at_ms: st.emergency.at_ms,
            done: st.emergency.done,
            failures: st.emergency.failures.clone(),
        });
        let mut cycles = out.cycles.unwrap_or_default();
        cycles.skipped = self.skipped.load(Ordering::SeqCst);
        cycles.interval_sec = u32::try_from(self.cfg.cycle_interval_ms / 1000).unwrap_or(u32::MAX);
        out.cycles = Some(cycles);
        out.shutdown_policy = self.cfg.shutdown_policy.as_str().into();
        out
    }

    pub fn limits(&self) -> RiskLimits {
        self.lock().limits.clone()
    }

    /// Replaces the risk limits after validating them as a whole.
    pub fn set_limits(&self, limits: RiskLimits) -> Result<(), LimitError> {
        limits.validate()?;
        tracing::warn!(?limits, "funding risk limits changed by operator");
        self.lock().limits = limits;
        Ok(())
    }

    /// Stops (Some(reason)) or resumes (None) opening new positions.
    pub fn set_opening_paused(&self, reason: Option<String>) {
        tracing::warn!(?reason, "funding opening switched by operator");
        self.lock().paused = reason;
    }

    pub fn emergency(&self) -> EmergencyState {
        self.lock().emergency.clone()
    }

    /// Fires the emergency stop: closes every position and stops opening.
    /// One-shot: false (and nothing happens) when it already fired.
    pub fn trigger_emergency(&self, reason: &str, now_ms: i64) -> bool {
        if !self.fire(reason, now_ms) {
            return false;
        }
        let _ = self.commands.send(Command::Emergency);
        true
    }

    fn fire(&self, reason: &str, now_ms: i64) -> bool {
        if self.fired.swap(true, Ordering::SeqCst) {
            tracing::warn!(reason, "emergency stop already fired; ignored");
            return false;
        }
        tracing::error!(reason, "FUNDING EMERGENCY STOP");
        let mut st = self.lock();
        st.emergency = EmergencyState {
            triggered: true,
            reason: reason.to_string(),
            at_ms: now_ms,
            done: false,
            failures: Vec::new(),
        };
        true
    }

    /// Closes the position on `symbol` (perp or spot name) now.
    pub async fn close_position(&self, symbol: &str) -> Result<String, String> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::Close {
                symbol: symbol.to_string(),
                reply,
            })
            .map_err(|_| "the funding orchestrator is not running".to_string())?;
        rx.await
            .map_err(|_| "the funding orchestrator stopped".to_string())?
    }

    /// Clears a finished emergency stop (also one latched from before a
    /// restart): the controller is armed again and opening may resume.
    /// Refused while the emergency is still closing positions or when none
    /// fired.
    pub async fn clear_emergency(&self, reason: &str) -> Result<String, String> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::ClearEmergency {
                reason: reason.to_string(),
                reply,
            })
            .map_err(|_| "the funding orchestrator is not running".to_string())?;
        rx.await
            .map_err(|_| "the funding orchestrator stopped".to_string())?
    }

    /// Applies the shutdown policy and stops the loop (waits for a running
    /// cycle first).
    pub async fn shutdown(&self) {
        let (reply, rx) = oneshot::channel();
        if self.commands.send(Command::Shutdown { reply }).is_ok() {
            let _ = rx.await;
        }
    }

    /// Counts a cycle that was due while another ran.
    fn skip(&self) {
        let n = self.skipped.fetch_add(1, Ordering::SeqCst) + 1;
        tracing::warn!(
            skipped = n,
            "funding cycle still running; this one is skipped"
        );
    }
}

/// Cycle counters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CycleStats {
    pub run: u64,
    pub failed: u64,
    pub last_started_ms: i64,
    pub last_duration_ms: i64,
    pub last_errors: Vec<String>,
}

/// What one cycle did (tests and logs).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CycleReport {
    pub errors: Vec<String>,
    pub opened: Vec<String>,
    pub closed: Vec<String>,
    pub rejected: Vec<(String, Rejection)>,
}

#[derive(Default)]
struct Core {
    positions: Vec<FundingPosition>,
    instruments: HashMap<String, InstrumentSpec>,
    rates: HashMap<String, RateSnapshot>,
    ranking: Vec<Opportunity>,
    balances: Option<Vec<BalanceInfo>>,
    venue_positions: Option<Vec<VenuePosition>>,
    margin: Option<MarginInfo>,
    mismatches: Vec<Mismatch>,
    payments_unsupported: bool,
    stats: CycleStats,
    venue: String,
    loaded: bool,
}

impl Core {
    fn marks(&self, symbol: &str) -> (Decimal, Decimal) {
        self.rates
            .get(symbol)
            .map_or((Decimal::ZERO, Decimal::ZERO), |r| (r.index, r.mark))
    }

    fn free(&self, asset: &str) -> Option<Decimal> {
        self.balances.as_ref().map(|b| {
            b.iter()
                .find(|x| x.asset == asset)
                .map_or(Decimal::ZERO, |x| x.free)
        })
    }

    fn blocked(&self) -> Vec<String> {
        self.mismatches.iter().map(|m| m.symbol.clone()).collect()
    }
}

/// The orchestrator over a venue `A`.
pub struct Orchestrator<A: FundingApi> {
    api: Arc<A>,
    store: Store,
    handle: Arc<FundingHandle>,
    core: Arc<AsyncMutex<Core>>,
    commands: Mutex<Option<mpsc::UnboundedReceiver<Command>>>,
}

impl<A: FundingApi> std::fmt::Debug for Orchestrator<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Orchestrator").finish_non_exhaustive()
    }
}

impl<A: FundingApi> Orchestrator<A> {
    pub fn new(api: Arc<A>, store: Store, cfg: FundingConfig) -> Arc<Orchestrator<A>> {
        let (tx, rx) = mpsc::unbounded_channel();
        let handle = Arc::new(FundingHandle {
            state: Mutex::new(HandleState {
                limits: cfg.limits(),
                paused: None,
                emergency: EmergencyState::default(),
                status: pb::FundingStatus::default(),
                running: false,
            }),
            cfg,
            fired: AtomicBool::new(false),
            skipped: AtomicU64::new(0),
            commands: tx,
        });
        Arc::new(Orchestrator {
            api,
            store,
            handle,
            core: Arc::new(AsyncMutex::new(Core::default())),
            commands: Mutex::new(Some(rx)),
        })
    }

    pub fn handle(&self) -> Arc<FundingHandle> {
        self.handle.clone()
    }

    fn cfg(&self) -> &FundingConfig {
        &self.handle.cfg
    }

    fn timing(&self) -> Timing {
        let c = self.cfg();
        Timing {
            leg_timeout: Duration::from_millis(c.leg_timeout_ms),
            resolve_timeout: Duration::from_millis(c.resolve_timeout_ms),
            poll: Duration::from_millis(c.poll_interval_ms),
        }
    }

    /// Runs the loop until a shutdown command: a cycle every interval
    /// (the first at once), skipped when the previous still runs.
    pub async fn run(self: Arc<Self>) {
        let Some(mut rx) = self
            .commands
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        else {
            tracing::error!("funding orchestrator started twice");
            return;
        };
        self.handle.lock().running = true;
        tracing::info!(
            interval_ms = self.cfg().cycle_interval_ms,
            "funding orchestrator running"
        );
        let mut interval =
            tokio::time::interval(Duration::from_millis(self.cfg().cycle_interval_ms));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut tasks = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                _ = interval.tick() => {
                    match self.core.clone().try_lock_owned() {
                        Ok(mut guard) => {
                            let me = self.clone();
                            tasks.spawn(async move {
                                me.cycle_locked(&mut guard).await;
                            });
                        }
                        Err(_) => self.handle.skip(),
                    }
                }
                cmd = rx.recv() => match cmd {
                    None => break,
                    Some(Command::Shutdown { reply }) => {
                        self.shutdown_now().await;
                        let _ = reply.send(());
                        break;
                    }
                    Some(other) => {
                        let me = self.clone();
                        tasks.spawn(async move { me.command(other).await });
                    }
                },
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        }
        tasks.abort_all();
        self.handle.lock().running = false;
        tracing::info!("funding orchestrator stopped");
    }

    async fn command(&self, cmd: Command) {
        match cmd {
            Command::Emergency => {
                let mut core = self.core.lock().await;
                self.emergency_locked(&mut core).await;
            }
            Command::Close { symbol, reply } => {
                let r = self.close_symbol(&symbol).await;
                let _ = reply.send(r);
            }
            Command::Shutdown { reply } => {
                self.shutdown_now().await;
                let _ = reply.send(());
            }
            Command::ClearEmergency { reason, reply } => {
                let r = self.clear_emergency_now(&reason).await;
                let _ = reply.send(r);
            }
        }
    }

    /// Restores the emergency latch from the store (call before [`run`]):
    /// an emergency that fired and was not cleared comes back triggered, so
    /// nothing opens after a restart; one that had not finished closing
    /// runs again. Returns the restored state.
    ///
    /// [`run`]: Orchestrator::run
    pub async fn restore_emergency(&self) -> Result<Option<EmergencyState>, String> {
        let entries = self
            .store
            .journal(EMERGENCY_STREAM)
            .await
            .map_err(|e| format!("emergency latch: {e}"))?;
        let mut latched: Option<EmergencyState> = None;
        for (kind, payload, time_ms) in entries {
            let v: serde_json::Value = serde_json::from_str(&payload).unwrap_or_default();
            match kind.as_str() {
                "fired" => {
                    latched = Some(EmergencyState {
                        triggered: true,
                        reason: v["reason"].as_str().unwrap_or_default().to_string(),
                        at_ms: v["at_ms"].as_i64().unwrap_or(time_ms),
                        done: false,
                        failures: Vec::new(),
                    });
                }
                "done" => {
                    if let Some(e) = latched.as_mut() {
                        e.done = true;
                        e.failures = v["failures"]
                            .as_array()
                            .map(|a| {
                                a.iter()
                                    .filter_map(|x| x.as_str().map(str::to_string))
                                    .collect()
                            })
                            .unwrap_or_default();
                    }
                }
                "cleared" => latched = None,
                _ => {}
            }
        }
        let Some(e) = latched else {
            return Ok(None);
        };
        self.handle.fired.store(true, Ordering::SeqCst);
        self.handle.lock().emergency = e.clone();
        tracing::error!(reason = %e.reason, at_ms = e.at_ms, done = e.done,
            "funding emergency stop latched from before the restart: not opening until cleared");
        if !e.done {
            let _ = self.handle.commands.send(Command::Emergency);
        }
        Ok(Some(e))
    }

    async fn clear_emergency_now(&self, reason: &str) -> Result<String, String> {
        let e = self.handle.emergency();
        if !e.triggered {
            return Err("no emergency stop to clear".into());
        }
        if !e.done {
            return Err("the emergency stop is still closing positions".into());
        }
        let payload = serde_json::json!({"reason": reason, "cleared": e.reason}).to_string();
        self.store
            .append_journal(EMERGENCY_STREAM, "cleared", &payload, self.api.now_ms())
            .await
            .map_err(|x| format!("cannot store the cleared latch: {x}"))?;
        self.handle.lock().emergency = EmergencyState::default();
        self.handle.fired.store(false, Ordering::SeqCst);
        tracing::warn!(%reason, was = %e.reason, "funding emergency stop cleared by operator");
        let core = self.core.lock().await;
        self.publish(&core).await;
        Ok(format!(
            "emergency stop ({}) cleared; opening may resume",
            e.reason
        ))
    }

    async fn journal_emergency(&self, kind: &str, payload: serde_json::Value) {
        if let Err(e) = self
            .store
            .append_journal(
                EMERGENCY_STREAM,
                kind,
                &payload.to_string(),
                self.api.now_ms(),
            )
            .await
        {
            tracing::error!(error = %e, kind, "cannot store the emergency latch");
        }
    }

    /// One cycle now, waiting for a running one to finish (tests, operators).
    pub async fn run_cycle(&self) -> CycleReport {
        let mut core = self.core.lock().await;
        self.cycle_locked(&mut core).await
    }

    /// One cycle unless one is running (then it is skipped and counted).
    pub async fn try_cycle(&self) -> Option<CycleReport> {
        match self.core.clone().try_lock_owned() {
            Ok(mut guard) => Some(self.cycle_locked(&mut guard).await),
            Err(_) => {
                self.handle.skip();
                None
            }
        }
    }

    /// Fires the emergency stop and runs it to the end (tests; production
    /// goes through [`FundingHandle::trigger_emergency`]).
    pub async fn emergency_now(&self, reason: &str) -> bool {
        if !self.handle.fire(reason, self.api.now_ms()) {
            return false;
        }
        let mut core = self.core.lock().await;
        self.emergency_locked(&mut core).await;
        true
    }

    /// The positions as they stand (tests, tooling).
    pub async fn positions(&self) -> Vec<FundingPosition> {
        self.core.lock().await.positions.clone()
    }

    async fn load(&self, core: &mut Core) -> Result<(), String> {
        if core.loaded {
            return Ok(());
        }
        let rows = self
            .store
            .funding_positions(false)
            .await
            .map_err(|e| format!("load: {e}"))?;
        let mut positions = Vec::new();
        for r in rows {
            let mut p: FundingPosition = serde_json::from_str(&r.payload)
                .map_err(|e| format!("load {}: bad stored state: {e}", r.id))?;
            // The payments ledger is the truth for funding (a crash between
            // booking a payment and saving the position loses nothing).
            let payments = self
                .store
                .funding_payments(&p.id)
                .await
                .map_err(|e| format!("load {}: {e}", r.id))?;
            p.funding = payments.iter().map(|x| x.amount).sum();
            p.funding_count = u32::try_from(payments.len()).unwrap_or(u32::MAX);
            positions.push(p);
        }
        let active = positions.iter().filter(|p| p.state.is_active()).count();
        tracing::info!(
            positions = positions.len(),
            active,
            "funding positions loaded from the store"
        );
        core.positions = positions;
        core.loaded = true;
        Ok(())
    }

    async fn persist(&self, pos: &FundingPosition, fills: &[AppliedFill]) -> Result<(), String> {
        // Fills first: if the process dies before the position is saved, its
        // pending list still names the orders and the restart re-applies them
        // (the ledger insert is then a no-op).
        for f in fills {
            let row = FundingFillRow {
                fill_id: format!("{}:{}", f.client_order_id, f.qty),
                position_id: f.position_id.clone(),
                leg: f.leg.as_str().into(),
                purpose: f.purpose.as_str().into(),
                client_order_id: f.client_order_id.clone(),
                symbol: f.symbol.clone(),
                side: f.side.as_str().into(),
                qty: f.qty,
                price: f.price,
                fee: f.fee,
                fee_asset: f.fee_asset.clone(),
                fee_usd: f.fee_usd,
                time_ms: f.time_ms,
            };
            self.store
                .insert_funding_fill(&row)
                .await
                .map_err(|e| format!("store fill: {e}"))?;
        }
        let payload = serde_json::to_string(pos).map_err(|e| format!("encode: {e}"))?;
        self.store
            .upsert_funding_position(&FundingPositionRow {
                id: pos.id.clone(),
                symbol: pos.symbol.clone(),
                state: pos.state.as_str().into(),
                payload,
                opened_at_ms: pos.opened_at_ms,
                updated_at_ms: self.api.now_ms(),
            })
            .await
            .map_err(|e| format!("store position: {e}"))
    }

    async fn save(&self, pos: &FundingPosition, fills: &[AppliedFill], errors: &mut Vec<String>) {
        if let Err(e) = self.persist(pos, fills).await {
            tracing::error!(position = %pos.id, error = %e, "cannot persist funding position");
            errors.push(format!("persist {}: {e}", pos.id));
        }
    }

    fn close_ctx(&self, core: &Core, pos: &FundingPosition) -> CloseCtx {
        CloseCtx {
            spot: core.instruments.get(&pos.spot_symbol).cloned(),
            spot_price: core
                .rates
                .get(&pos.symbol)
                .map_or(pos.spot_entry, |r| r.index),
            max_drift: self.cfg().max_drift,
        }
    }

    async fn cycle_locked(&self, core: &mut Core) -> CycleReport {
        let started = tokio::time::Instant::now();
        let now = self.api.now_ms();
        let mut report = CycleReport::default();
        if let Err(e) = self.load(core).await {
            report.errors.push(e);
        }
        let rates_ok = self.scan(core, &mut report.errors).await;
        if rates_ok {
            self.rank_step(core);
        }
        self.resolve_step(core, &mut report).await;
        self.funding_step(core, &mut report.errors).await;
        if let (Some(v), Some(b)) = (&core.venue_positions, &core.balances) {
            let found = reconcile(&core.positions, v, b);
            for m in found.iter().filter(|m| !core.mismatches.contains(m)) {
                tracing::error!(symbol = %m.symbol, mismatch = %m.message, "funding reconciliation mismatch");
            }
            core.mismatches = found;
        }
        self.close_step(core, rates_ok, &mut report).await;
        self.open_step(core, &mut report).await;
        self.margin_step(core, &mut report.errors).await;
        core.stats.run += 1;
        if !report.errors.is_empty() {
            core.stats.failed += 1;
            tracing::warn!(errors = ?report.errors, "funding cycle had failing steps");
        }
        core.stats.last_started_ms = now;
        core.stats.last_duration_ms =
            i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
        core.stats.last_errors = report.errors.clone();
        self.publish(core).await;
        report
    }

    /// The funding monitor and the account: rates, instruments, balances,
    /// positions, margin. Returns whether the rates are fresh.
    async fn scan(&self, core: &mut Core, errors: &mut Vec<String>) -> bool {
        let (inst, rates, balances, positions, margin) = tokio::join!(
            self.api.instruments(),
            self.api.funding_rates(),
            self.api.balances(),
            self.api.positions(),
            self.api.margin()
        );
        core.venue = self.api.venue_name();
        match margin {
            Ok(m) => core.margin = Some(m),
            Err(e) => {
                core.margin = None;
                errors.push(format!("scan margin: {e}"));
            }
        }
        match inst {
            Ok(list) => {
                core.instruments = list.into_iter().map(|i| (i.symbol.clone(), i)).collect();
            }
            Err(e) => errors.push(format!("scan instruments: {e}")),
        }
        match balances {
            Ok(b) => core.balances = Some(b),
            Err(e) => {
                core.balances = None;
                errors.push(format!("scan balances: {e}"));
            }
        }
        match positions {
            Ok(p) => core.venue_positions = Some(p),
            Err(e) => {
                core.venue_positions = None;
                errors.push(format!("scan positions: {e}"));
            }
        }
        match rates {
            Ok(r) => {
                core.rates = r.into_iter().map(|x| (x.symbol.clone(), x)).collect();
                true
            }
            Err(e) => {
                errors.push(format!("scan funding rates: {e}"));
                false
            }
        }
    }

    fn rank_step(&self, core: &mut Core) {
        let c = self.cfg();
        let limits = self.handle.limits();
        let params = RankParams {
            min_rate: limits.min_rate,
            min_turnover_usd: c.min_turnover_usd,
            min_holding_periods: c.min_holding_periods,
            default_spot_fee: c.spot_taker_fee,
            default_perp_fee: c.perp_taker_fee,
            symbols: c.symbols.clone(),
        };
        let rates: Vec<RateSnapshot> = core.rates.values().cloned().collect();
        core.ranking = rank::rank(&rates, &core.instruments, &params);
    }

    /// Polls orders whose outcome was unknown and finishes opens that were
    /// waiting on them.
    async fn resolve_step(&self, core: &mut Core, report: &mut CycleReport) {
        let t = self.timing();
        let ids: Vec<usize> = (0..core.positions.len())
            .filter(|i| {
                let p = &core.positions[*i];
                p.state.is_active() && (!p.pending.is_empty() || p.state == PositionState::Opening)
            })
            .collect();
        for i in ids {
            let ctx = self.close_ctx(core, &core.positions[i]);
            let mut pos = core.positions[i].clone();
            let mut fills = legs::resolve_pending(self.api.as_ref(), &mut pos, t).await;
            if pos.pending.is_empty() {
                if pos.state == PositionState::Opening {
                    fills.extend(legs::after_open(self.api.as_ref(), &mut pos, &ctx, t).await);
                } else {
                    legs::finish_close(&mut pos, &ctx, self.api.now_ms(), &fills);
                }
            }
            if !pos.pending.is_empty() {
                report
                    .errors
                    .push(format!("{}: order outcome still unknown", pos.symbol));
            }
            self.save(&pos, &fills, &mut report.errors).await;
            core.positions[i] = pos;
        }
    }

    /// Books funding: from the venue's payment history, or estimated at the
    /// venue's settlement times when it has none.
    async fn funding_step(&self, core: &mut Core, errors: &mut Vec<String>) {
        let now = self.api.now_ms();
        for i in 0..core.positions.len() {
            let p = &core.positions[i];
            let interval = i64::from(p.interval_hours.max(1)) * 3_600_000;
            let relevant = matches!(
                p.state,
                PositionState::Open | PositionState::Closing | PositionState::Unwinding
            ) || p.closed_at_ms.is_some_and(|c| now - c < 2 * interval);
            if !relevant {
                continue;
            }
            let rate = core.rates.get(&p.symbol).cloned();
            let mut pos = p.clone();
            let mut changed = false;
            if !core.payments_unsupported {
                match self
                    .api
                    .funding_payments(&pos.symbol, pos.opened_at_ms)
                    .await
                {
                    Ok(payments) => {
                        for pay in payments {
                            if pay.time_ms < pos.opened_at_ms
                                || pos.closed_at_ms.is_some_and(|c| pay.time_ms > c)
                            {
                                continue;
                            }
                            let row = FundingPaymentRow {
                                payment_id: pay.id.clone(),
                                position_id: pos.id.clone(),
                                symbol: pay.symbol.clone(),
                                amount: pay.amount,
                                rate: pay.rate,
                                mark: pay.mark,
                                size: pay.size,
                                source: "venue".into(),
                                time_ms: pay.time_ms,
                            };
                            match self.store.insert_funding_payment(&row).await {
                                Ok(true) => {
                                    pos.funding += pay.amount;
                                    pos.funding_count += 1;
                                    changed = true;
                                    tracing::info!(position = %pos.id, amount = %pay.amount, rate = %pay.rate, "funding received");
                                }
                                Ok(false) => {}
                                Err(e) => errors.push(format!("store payment: {e}")),
                            }
                        }
                    }
                    Err(ApiError::Unsupported(m)) => {
                        tracing::warn!(reason = %m, "the venue keeps no funding payment history; estimating settlements");
                        core.payments_unsupported = true;
                    }
                    Err(e) => errors.push(format!("funding payments {}: {e}", pos.symbol)),
                }
            }
            if core.payments_unsupported
                && pos.state.is_active()
                && let Some(r) = &rate
            {
                for est in estimate_settlements(&pos, r.next_funding_ms, r.mark, now) {
                    let row = FundingPaymentRow {
                        payment_id: format!("est-{}-{}", pos.id, est.time_ms),
                        position_id: pos.id.clone(),
                        symbol: pos.symbol.clone(),
                        amount: est.amount,
                        rate: est.rate,
                        mark: est.mark,
                        size: pos.perp_qty,
                        source: "estimate".into(),
                        time_ms: est.time_ms,
                    };
                    if let Ok(true) = self.store.insert_funding_payment(&row).await {
                        pos.funding += est.amount;
                        pos.funding_count += 1;
                        changed = true;
                    }
                }
            }
            if let Some(r) = &rate
                && pos.state.is_active()
                && (pos.next_funding_ms != r.next_funding_ms || pos.last_rate != r.rate)
            {
                pos.next_funding_ms = r.next_funding_ms;
                pos.last_rate = r.rate;
                pos.interval_hours = r.interval_hours;
                changed = true;
            }
            if changed {
                self.save(&pos, &[], errors).await;
            }
            core.positions[i] = pos;
        }
    }

    async fn close_step(&self, core: &mut Core, rates_ok: bool, report: &mut CycleReport) {
        let t = self.timing();
        let now = self.api.now_ms();
        let limits = self.handle.limits();
        let policy = ClosePolicy {
            exit_rate: limits.exit_rate,
            min_hold_periods: self.cfg().min_hold_periods,
            exit_confirmations: self.cfg().exit_confirmations,
        };
        let blocked = core.blocked();
        for i in 0..core.positions.len() {
            let p = &core.positions[i];
            if !p.state.is_active() || !p.pending.is_empty() || blocked.contains(&p.symbol) {
                continue;
            }
            let mut pos = p.clone();
            let ctx = self.close_ctx(core, &pos);
            let mut fills = Vec::new();
            match pos.state {
                PositionState::Closing | PositionState::Unwinding => {
                    fills = legs::close(self.api.as_ref(), &mut pos, &ctx, t).await;
                }
                PositionState::Open if rates_ok => {
                    let rate = core.rates.get(&pos.symbol).map(|r| r.rate);
                    let (decision, below) = close_decision(&pos, rate, now, &policy);
                    pos.below_exit = below;
                    if let Some(reason) = decision {
                        pos.state = PositionState::Closing;
                        pos.close_reason = reason.describe();
                        tracing::info!(position = %pos.id, reason = %pos.close_reason, "closing funding position");
                        fills = legs::close(self.api.as_ref(), &mut pos, &ctx, t).await;
                    }
                }
                _ => {}
            }
            if pos.state.is_active()
                && matches!(pos.state, PositionState::Closing | PositionState::Unwinding)
            {
                report.errors.push(format!(
                    "{}: close not finished ({}); retried next cycle",
                    pos.symbol, pos.last_error
                ));
            }
            if !pos.state.is_active() && core.positions[i].state.is_active() {
                report.closed.push(pos.symbol.clone());
            }
            if pos != core.positions[i] {
                self.save(&pos, &fills, &mut report.errors).await;
            }
            core.positions[i] = pos;
        }
    }

    fn risk_view(&self, core: &Core) -> RiskView {
        let limits = self.handle.limits();
        let active: Vec<&FundingPosition> = core
            .positions
            .iter()
            .filter(|p| p.state.is_active())
            .collect();
        let paused = self
            .handle
            .lock()
            .paused
            .clone()
            .or_else(|| self.api.opening_blocked());
        RiskView {
            open_symbols: active.iter().map(|p| p.symbol.clone()).collect(),
            exposure_usd: active.iter().map(|p| p.notional_usd).sum(),
            opening_paused: paused,
            emergency: self.handle.fired.load(Ordering::SeqCst),
            margin_band: Some(risk::margin_band(
                core.margin.as_ref().map(|m| m.maintenance_margin_ratio),
                &limits,
            )),
            blocked_symbols: core.blocked(),
        }
    }

    async fn open_step(&self, core: &mut Core, report: &mut CycleReport) {
        let t = self.timing();
        let limits = self.handle.limits();
        let ranking = core.ranking.clone();
        for opp in ranking {
            if core
                .positions
                .iter()
                .any(|p| p.state.is_active() && p.symbol == opp.symbol)
            {
                continue;
            }
            let (Some(spot), Some(perp)) = (
                core.instruments.get(&opp.spot_symbol).cloned(),
                core.instruments.get(&opp.symbol).cloned(),
            ) else {
                continue;
            };
            if perp.kind != InstrumentKind::Perpetual {
                continue;
            }
            let view = self.risk_view(core);
            let free = core.free(&spot.quote).unwrap_or_default();
            let budget = limits
                .max_position_usd
                .min(free / (Decimal::ONE + self.cfg().perp_margin_reserve));
            let price = if opp.index > Decimal::ZERO {
                opp.index
            } else {
                opp.mark
            };
            // The spot buy is grossed up for its fee: size the hedge so the
            // whole stays inside the budget.
            let sizing = match size_hedge(
                budget * (Decimal::ONE - spot.taker_fee),
                price,
                &spot,
                &perp,
                spot.taker_fee,
            ) {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(symbol = %opp.symbol, budget = %budget, error = %e, "no size fits");
                    continue;
                }
            };
            if let Err(r) = risk::check_can_open(&opp.symbol, sizing.notional_usd, &limits, &view) {
                tracing::debug!(symbol = %opp.symbol, rejection = %r, "not opening");
                let stop = !matches!(
                    r,
                    Rejection::AlreadyOpen { .. }
                        | Rejection::ReconcileMismatch { .. }
                        | Rejection::ExposureCap { .. }
                );
                report.rejected.push((opp.symbol.clone(), r));
                if stop {
                    break;
                }
                continue;
            }
            let now = self.api.now_ms();
            let mut pos = FundingPosition::new(
                format!("fp-{}-{now}", opp.symbol),
                &opp.symbol,
                &spot,
                opp.interval_hours,
                now,
            );
            pos.hedge_target = sizing.hedge_qty;
            pos.notional_usd = sizing.notional_usd;
            if let Some(r) = core.rates.get(&opp.symbol) {
                pos.next_funding_ms = r.next_funding_ms;
                pos.last_rate = r.rate;
            }
            let orders = legs::open_orders(
                self.api.as_ref(),
                &pos,
                sizing.spot_buy_qty,
                sizing.hedge_qty,
            );
            for (leg, purpose, o) in &orders {
                pos.pending.push(PendingOrder {
                    client_order_id: o.client_order_id.clone(),
                    leg: *leg,
                    purpose: *purpose,
                    side: o.side,
                    qty: o.qty,
                    not_found: 0,
                });
            }
            // Saved before anything is sent: a crash mid-open leaves the
            // orders' ids for the restart to resolve.
            if let Err(e) = self.persist(&pos, &[]).await {
                report.errors.push(format!("open {}: {e}", opp.symbol));
                break;
            }
            tracing::info!(symbol = %opp.symbol, rate = %opp.rate, annualized = %opp.annualized.round_dp(4),
                spot_qty = %sizing.spot_buy_qty, perp_qty = %sizing.hedge_qty, "opening funding position");
            let ctx = self.close_ctx(core, &pos);
            let fills = legs::open(self.api.as_ref(), &mut pos, orders, &ctx, t).await;
            match pos.state {
                PositionState::Open => report.opened.push(pos.symbol.clone()),
                PositionState::Opening => report.errors.push(format!(
                    "open {}: outcome unknown; polled next cycle",
                    pos.symbol
                )),
                _ => report
                    .errors
                    .push(format!("open {}: {}", pos.symbol, pos.close_reason)),
            }
            self.save(&pos, &fills, &mut report.errors).await;
            core.positions.push(pos);
            // Balances moved; the next open sizes from the venue's word.
            if let Ok(b) = self.api.balances().await {
                core.balances = Some(b);
            }
        }
    }

    async fn margin_step(&self, core: &mut Core, errors: &mut Vec<String>) {
        match self.api.margin().await {
            Ok(m) => core.margin = Some(m),
            Err(e) => {
                core.margin = None;
                errors.push(format!("margin: {e}"));
                return;
            }
        }
        let limits = self.handle.limits();
        let ratio = core.margin.as_ref().map(|m| m.maintenance_margin_ratio);
        match risk::margin_band(ratio, &limits) {
            MarginBand::Critical => {
                let reason = format!(
                    "maintenance margin ratio {} >= critical {}",
                    ratio.unwrap_or_default(),
                    limits.margin_critical
                );
                if self.handle.fire(&reason, self.api.now_ms()) {
                    self.emergency_locked(core).await;
                }
            }
            MarginBand::Alert => {
                tracing::warn!(ratio = %ratio.unwrap_or_default(), alert = %limits.margin_alert,
                    "funding margin alert: not opening");
            }
            _ => {}
        }
    }

    /// Closes every active position concurrently, each with `tries` and
    /// the emergency backoff; returns "symbol: why" for each that failed.
    async fn close_all(&self, core: &mut Core, tries: u32, why: &str) -> Vec<String> {
        let t = self.timing();
        let mut set = tokio::task::JoinSet::new();
        for (i, p) in core.positions.iter().enumerate() {
            if !p.state.is_active() {
                continue;
            }
            let mut pos = p.clone();
            if pos.close_reason.is_empty() || pos.state == PositionState::Open {
                pos.close_reason = why.to_string();
            }
            let ctx = self.close_ctx(core, &pos);
            let api = self.api.clone();
            set.spawn(async move {
                (
                    i,
                    legs::close_with_retries(api, pos, ctx, t, tries, EMERGENCY_BACKOFF).await,
                )
            });
        }
        let mut failures = Vec::new();
        let mut errors = Vec::new();
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok((i, (pos, fills, result))) => {
                    if let Err(e) = result {
                        failures.push(format!("{}: {e}", pos.symbol));
                    }
                    self.save(&pos, &fills, &mut errors).await;
                    if let Some(slot) = core.positions.get_mut(i) {
                        *slot = pos;
                    }
                }
                Err(e) => failures.push(format!("close task failed: {e}")),
            }
        }
        failures.extend(errors);
        failures
    }

    async fn emergency_locked(&self, core: &mut Core) {
        let latch = self.handle.emergency();
        self.journal_emergency(
            "fired",
            serde_json::json!({"reason": latch.reason, "at_ms": latch.at_ms}),
        )
        .await;
        if let Err(e) = self.load(core).await {
            tracing::error!(error = %e, "emergency: cannot load positions");
        }
        let reason = latch.reason;
        let failures = self
            .close_all(core, EMERGENCY_TRIES, &format!("emergency: {reason}"))
            .await;
        if failures.is_empty() {
            tracing::error!("funding emergency stop done: every position closed");
        } else {
            tracing::error!(
                ?failures,
                "CRITICAL: funding emergency stop could not close every position"
            );
        }
        self.journal_emergency("done", serde_json::json!({"failures": failures}))
            .await;
        {
            let mut st = self.handle.lock();
            st.emergency.done = true;
            st.emergency.failures = failures;
        }
        self.publish(core).await;
    }

    async fn close_symbol(&self, symbol: &str) -> Result<String, String> {
        let mut core = self.core.lock().await;
        self.load(&mut core).await?;
        let t = self.timing();
        let Some(i) = core
            .positions
            .iter()
            .position(|p| p.state.is_active() && (p.symbol == symbol || p.spot_symbol == symbol))
        else {
            return Err(format!("no open funding position on {symbol}"));
        };
        let mut pos = core.positions[i].clone();
        let ctx = self.close_ctx(&core, &pos);
        let mut fills = legs::resolve_pending(self.api.as_ref(), &mut pos, t).await;
        if pos.state == PositionState::Open || pos.state == PositionState::Opening {
            pos.state = PositionState::Closing;
            pos.close_reason = "closed by operator".into();
        }
        fills.extend(legs::close(self.api.as_ref(), &mut pos, &ctx, t).await);
        let mut errors = Vec::new();
        self.save(&pos, &fills, &mut errors).await;
        let done = !pos.state.is_active();
        let msg = if done {
            format!("{} closed", pos.symbol)
        } else {
            format!(
                "{} not fully closed ({}); retried next cycle",
                pos.symbol, pos.last_error
            )
        };
        core.positions[i] = pos;
        self.publish(&core).await;
        if done { Ok(msg) } else { Err(msg) }
    }

    async fn shutdown_now(&self) {
        self.handle.lock().paused = Some("shutting down".into());
        let mut core = self.core.lock().await;
        match self.cfg().shutdown_policy {
            ShutdownPolicy::Keep => {
                // Legs are market orders: nothing rests at the venue. Orders
                // still in flight are resolved on restart from the store.
                tracing::info!("funding shutdown: keeping hedged positions (policy keep)");
            }
            ShutdownPolicy::Flatten => {
                if let Err(e) = self.load(&mut core).await {
                    tracing::error!(error = %e, "shutdown: cannot load positions");
                }
                let failures = self
                    .close_all(&mut core, EMERGENCY_TRIES, "shutdown (policy flatten)")
                    .await;
                if !failures.is_empty() {
                    tracing::error!(
                        ?failures,
                        "funding shutdown could not flatten every position"
                    );
                }
            }
        }
        self.publish(&core).await;
    }

    async fn publish(&self, core: &Core) {
        let limits = self.handle.limits();
        let marks = |s: &str| core.marks(s);
        let portfolio = pnl::portfolio(core.positions.iter(), marks);
        let ratio = core.margin.as_ref().map(|m| m.maintenance_margin_ratio);
        let band = risk::margin_band(ratio, &limits);
        let now = self.api.now_ms();
        let mut shown: Vec<&FundingPosition> = core
            .positions
            .iter()
            .filter(|p| p.state.is_active())
            .collect();
        let mut closed: Vec<&FundingPosition> = core
            .positions
            .iter()
            .filter(|p| !p.state.is_active())
            .collect();
        closed.sort_by_key(|p| std::cmp::Reverse(p.closed_at_ms.unwrap_or(0)));
        shown.extend(closed.into_iter().take(CLOSED_IN_STATUS));
        let positions = shown
            .into_iter()
            .map(|p| {
                let (sm, pm) = core.marks(&p.symbol);
                pb::FundingPositionStatus {
                    id: p.id.clone(),
                    symbol: p.symbol.clone(),
                    spot_symbol: p.spot_symbol.clone(),
                    state: p.state.as_str().into(),
                    spot_qty: s(p.spot_qty),
                    perp_qty: s(p.perp_qty),
                    spot_entry: s(p.spot_entry.round_dp(8)),
                    perp_entry: s(p.perp_entry.round_dp(8)),
                    funding_collected: s(p.funding.round_dp(8)),
                    fees: s(p.fees.round_dp(8)),
                    unrealized: s(p.unrealized(sm, pm).round_dp(8)),
                    net: s(p.net(sm, pm).round_dp(8)),
                    opened_at_ms: p.opened_at_ms,
                    funding_payments: p.funding_count,
                    last_error: if p.state.is_active() {
                        p.last_error.clone()
                    } else {
                        p.close_reason.clone()
                    },
                }
            })
            .collect();
        let top = usize::try_from(self.cfg().ranking_top_n).unwrap_or(5);
        let status = pb::FundingStatus {
            enabled: self.cfg().enabled,
            mode: if core.venue == "paper" {
                "paper"
            } else {
                "live"
            }
            .into(),
            positions,
            portfolio: Some(pb::FundingPortfolio {
                total_funding: s(portfolio.total_funding.round_dp(8)),
                total_fees: s(portfolio.total_fees.round_dp(8)),
                unrealized: s(portfolio.unrealized.round_dp(8)),
                realized: s(portfolio.realized.round_dp(8)),
                net_pnl: s(portfolio.net_pnl.round_dp(8)),
                open_positions: portfolio.open_positions,
                closed_positions: portfolio.closed_positions,
                exposure_usd: s(portfolio.exposure_usd.round_dp(2)),
            }),
            ranking: core
                .ranking
                .iter()
                .take(top)
                .map(|o| pb::FundingOpportunity {
                    symbol: o.symbol.clone(),
                    rate: s(o.rate),
                    interval_hours: o.interval_hours,
                    net_per_period: s(o.net_per_period.round_dp(10)),
                    annualized: s(o.annualized.round_dp(6)),
                    turnover_24h_usd: s(o.turnover_24h_usd),
                })
                .collect(),
            margin_ratio: ratio.map(s).unwrap_or_default(),
            margin_band: band.as_str().into(),
            cycles: Some(pb::FundingCycleStats {
                run: core.stats.run,
                failed: core.stats.failed,
                last_started_ms: core.stats.last_started_ms,
                last_duration_ms: core.stats.last_duration_ms,
                last_errors: core.stats.last_errors.clone(),
                ..Default::default()
            }),
            reconcile_mismatches: core.mismatches.iter().map(ToString::to_string).collect(),
            ..Default::default()
        };
        self.handle.lock().status = status;
        if core.loaded && core.stats.run > 0 {
            let row = FundingPnlRow {
                time_ms: now,
                total_funding: portfolio.total_funding,
                total_fees: portfolio.total_fees,
                unrealized: portfolio.unrealized,
                net: portfolio.net_pnl,
                open_positions: i64::from(portfolio.open_positions),
            };
            if let Err(e) = self.store.append_funding_pnl(&row).await {
                tracing::warn!(error = %e, "cannot store the PnL snapshot");
            }
        }
    }
}
