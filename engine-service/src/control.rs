//! `herd.engine.v1.Engine`: status and operator control of one engine.

use std::str::FromStr;
use std::sync::Arc;

use herd_proto::auth::token_matches;
use herd_proto::engine as pb;
use rust_decimal::Decimal;
use tonic::{Request, Response, Status};

use crate::config::Secret;
use crate::execution::{Mode, Shared, now_ms};
use crate::store::is_final_status;
use herd_strategies::capacity::CapacityHealth;
use herd_strategies::grid::strategy::{GridStatusBlock, OrderRow as GridOrderRow};
use herd_strategies::grid::{self, money};
use herd_strategies::rangers::{self, RangersStatusBlock};
use herd_strategies::strategy::{Action, Command, OrderIntent, Side};

/// Checks the operator's bearer token on every control call.
#[derive(Clone)]
pub struct ControlAuth {
    token: Vec<u8>,
}

impl std::fmt::Debug for ControlAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ControlAuth(REDACTED)")
    }
}

impl ControlAuth {
    pub fn new(token: &Secret) -> ControlAuth {
        ControlAuth {
            token: token.expose().as_bytes().to_vec(),
        }
    }

    pub fn check(&self, req: Request<()>) -> Result<Request<()>, Status> {
        let v = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                Status::unauthenticated("missing authorization metadata (\"Bearer <token>\")")
            })?;
        let presented = v
            .strip_prefix("Bearer ")
            .ok_or_else(|| Status::unauthenticated("authorization must be \"Bearer <token>\""))?
            .as_bytes();
        if token_matches(&self.token, presented) {
            Ok(req)
        } else {
            Err(Status::unauthenticated("unknown token"))
        }
    }
}

/// The control service.
#[derive(Debug, Clone)]
pub struct ControlService {
    shared: Arc<Shared>,
}

impl ControlService {
    pub fn new(shared: Arc<Shared>) -> ControlService {
        ControlService { shared }
    }
}

fn mode_pb(m: Mode) -> pb::Mode {
    match m {
        Mode::Running => pb::Mode::Running,
        Mode::Paused => pb::Mode::Paused,
        Mode::Halted => pb::Mode::Halted,
    }
}

fn ok(message: impl Into<String>) -> Response<pb::ControlResponse> {
    Response::new(pb::ControlResponse {
        ok: true,
        message: message.into(),
    })
}

fn opt_dec(d: Option<Decimal>) -> String {
    d.map(|d| d.normalize().to_string()).unwrap_or_default()
}

/// The typed rangers block from the strategy's status JSON.
pub fn rangers_status_pb(block: &RangersStatusBlock) -> pb::RangersStatus {
    pb::RangersStatus {
        enabled: block.enabled,
        active: block.active,
        regime_ok: block.regime_ok,
        cycles_today: block.cycles_today,
        profit_today: block.profit_today.normalize().to_string(),
        orphans_today: block.orphans_today,
        orphan_exposure_usd: block.orphan_exposure_usd.normalize().to_string(),
        doge_reserve: block.doge_reserve.normalize().to_string(),
        slots: block
            .slots
            .iter()
            .map(|s| pb::RangerSlotStatus {
                ranger_id: s.ranger_id,
                stage: s.stage.clone(),
                entry_price: opt_dec(s.entry_price),
                exit_price: opt_dec(s.exit_price),
                entry_volume: opt_dec(s.entry_volume),
                age_sec: s.age_sec,
                last_error: s.last_error.clone(),
            })
            .collect(),
    }
}

fn grid_order_pb(o: &GridOrderRow) -> pb::GridOrderStatus {
    pb::GridOrderStatus {
        client_order_id: o.client_order_id.clone(),
        trade: o.trade.clone(),
        role: o.role.clone(),
        side: o.side.clone(),
        price: opt_dec(o.price),
        volume: money(o.volume),
        age_sec: o.age_sec,
        distance_pct: money(o.distance_pct),
        position_id: o.position_id.clone(),
        orphan_reason: o.orphan_reason.clone(),
    }
}

/// The typed grid block from the strategy's status JSON; the engine-level
/// pause after consecutive venue errors is surfaced here too.
pub fn grid_status_pb(b: &GridStatusBlock, paused_by_errors: bool, errors: u32) -> pb::GridStatus {
    pb::GridStatus {
        enabled: b.enabled,
        mode: b.mode.clone(),
        slot_count: b.slot_count,
        total_profit: money(b.total_profit),
        total_settled_usd: money(b.total_settled_usd),
        total_orphans: b.total_orphans,
        daily_loss_lock: b.daily_loss_lock,
        daily_loss_limit_usd: money(b.daily_loss_limit_usd),
        realized_today: money(b.realized_today),
        paused_by_venue_errors: paused_by_errors,
        consecutive_venue_errors: errors,
        open_positions: b.open_positions,
        closed_positions: b.closed_positions,
        realized_pnl: money(b.realized_pnl),
        ledger_conflicts: b.ledger_conflicts,
        profit_pct: money(b.profit_pct),
        slots: b
            .slots
            .iter()
            .map(|s| pb::GridSlotStatus {
                id: s.id,
                alias: s.alias.clone(),
                sticky: s.sticky,
                phase: s.phase.clone(),
                halted: s.halted.clone(),
                long_only: s.long_only,
                short_only: s.short_only,
                cycles_a: s.cycles_a,
                cycles_b: s.cycles_b,
                cycles: s.cycles,
                profit: money(s.profit),
                order_size_usd: money(s.order_size_usd),
                open_orders: s.orders.iter().map(grid_order_pb).collect(),
                recovery_orders: s.recovery.iter().map(grid_order_pb).collect(),
                recent_cycles: s
                    .recent_cycles
                    .iter()
                    .map(|c| pb::GridCycle {
                        trade: c.trade.clone(),
                        kind: c.kind.clone(),
                        entry_price: money(c.entry_price),
                        exit_price: money(c.exit_price),
                        volume: money(c.volume),
                        net: money(c.net),
                        time_ms: c.time_ms,
                    })
                    .collect(),
                last_error: s.last_error.clone(),
            })
            .collect(),
    }
}

/// The typed capacity block.
pub fn capacity_pb(c: &CapacityHealth) -> pb::CapacityStatus {
    let name = |v: serde_json::Result<serde_json::Value>| {
        v.ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    };
    pb::CapacityStatus {
        limit: c.limit,
        safe_cap: c.safe_cap,
        open_orders: c.open_orders,
        source: name(serde_json::to_value(c.source)),
        headroom: c.headroom,
        band: name(serde_json::to_value(c.band)),
        reason: c.reason.clone(),
        entries_allowed: c.entries_allowed,
    }
}

/// The typed self-healing block.
pub fn self_healing_pb(b: &GridStatusBlock) -> pb::SelfHealingStatus {
    let h = &b.self_healing;
    let c = &h.churner;
    pb::SelfHealingStatus {
        enabled: h.enabled,
        subsidy: h
            .subsidy
            .iter()
            .map(|s| pb::SlotSubsidy {
                slot_id: s.slot_id,
                balance: money(s.balance),
                earned: money(s.earned),
                consumed: money(s.consumed),
                needed: money(s.needed),
            })
            .collect(),
        bands: Some(pb::AgeBands {
            fresh: h.bands.fresh,
            aging: h.bands.aging,
            stale: h.bands.stale,
            stuck: h.bands.stuck,
            write_off: h.bands.write_off,
        }),
        positions: h
            .positions
            .iter()
            .map(|p| pb::LedgerPosition {
                position_id: p.position_id.clone(),
                slot_id: p.slot_id,
                trade: p.trade.clone(),
                mode: p.mode.clone(),
                entry_price: money(p.entry_price),
                exit_price: money(p.exit_price),
                volume: money(p.volume),
                age_hours: money(p.age_hours),
                effective_age_hours: money(p.effective_age_hours),
                distance_pct: money(p.distance_pct),
                band: p.band.clone(),
                exit_order_id: p.exit_order_id.clone(),
            })
            .collect(),
        churner: Some(pb::ChurnerStatus {
            enabled: c.enabled,
            active: c.active,
            max: c.max,
            reserve_available: money(c.reserve_available),
            cycles_today: c.cycles_today,
            profit_today: money(c.profit_today),
            cycles_total: c.cycles_total,
            profit_total: money(c.profit_total),
            states: c
                .states
                .iter()
                .map(|x| pb::ChurnerState {
                    id: x.id,
                    stage: x.stage.clone(),
                    parent_position_id: x.parent_position_id.clone(),
                    parent_slot: x.parent_slot.unwrap_or_default(),
                    side: x.side.clone(),
                    entry_price: opt_dec(x.entry_price),
                    exit_price: opt_dec(x.exit_price),
                    volume: opt_dec(x.volume),
                    age_sec: x.age_sec,
                    compound_usd: money(x.compound_usd),
                    cycles: x.cycles,
                    profit: money(x.profit),
                    last_error: x.last_error.clone(),
                })
                .collect(),
        }),
    }
}

/// Builds the status payload (also used by herdctl's JSON output and the dashboard).
pub async fn status(shared: &Shared) -> Result<pb::EngineStatus, Status> {
    let now = now_ms();
    let st = shared.state().clone();
    let rangers_block = shared
        .strategies
        .lock()
        .await
        .iter()
        .find(|s| s.name() == rangers::STRATEGY_NAME)
        .and_then(|s| serde_json::from_value::<RangersStatusBlock>(s.status(now)).ok())
        .unwrap_or_else(|| RangersStatusBlock::disabled(&shared.cfg.rangers));
    let grid_block = shared
        .strategies
        .lock()
        .await
        .iter()
        .find(|s| s.name() == grid::STRATEGY_NAME)
        .and_then(|s| serde_json::from_value::<GridStatusBlock>(s.status(now)).ok());
    let paused_by_errors =
        st.mode == Mode::Paused && st.consecutive_errors >= shared.cfg.max_consecutive_errors;
    let working = shared
        .store
        .working_orders()
        .await
        .map_err(|e| Status::internal(format!("store: {e}")))?;
    let fills = shared
        .store
        .fill_count()
        .await
        .map_err(|e| Status::internal(format!("store: {e}")))?;
    let strategies = shared
        .strategies
        .lock()
        .await
        .iter()
        .map(|s| pb::StrategyStatus {
            name: s.name().to_string(),
            enabled: s.enabled(),
            state: if s.enabled() { "enabled" } else { "disabled" }.to_string(),
            detail_json: s.status(now).to_string(),
        })
        .collect();
    Ok(pb::EngineStatus {
        engine_id: shared.cfg.id.clone(),
        mode: mode_pb(st.mode) as i32,
        pause_reason: st.pause_reason,
        gateway_connected: st.gateway_connected,
        gateway_incarnation: st.incarnation,
        last_event_sequence: st.last_sequence,
        open_orders: working
            .into_iter()
            .filter(|o| !is_final_status(&o.status))
            .map(|o| pb::OpenOrder {
                client_order_id: o.client_order_id,
                symbol: o.symbol,
                side: o.side,
                price: o.price,
                volume: o.volume,
                volume_executed: o.volume_executed,
                status: o.status,
                owner: o.owner,
            })
            .collect(),
        fills_journaled: fills,
        price: st
            .market
            .as_ref()
            .map(|m| m.last.to_string())
            .unwrap_or_default(),
        price_age_ms: if st.market_time_ms > 0 {
            now - st.market_time_ms
        } else {
            0
        },
        strategies,
        time_ms: now,
        consecutive_venue_errors: st.consecutive_errors,
        regime: Some(pb::RegimeStatus {
            regime: st.regime.regime.clone(),
            ready: st.regime.ready,
            confidence: st.regime.confidence,
            bias: st.regime.bias,
            agreement: st
                .regime_detail
                .get("agreement")
                .and_then(|a| a.as_str())
                .unwrap_or("not_ready")
                .to_string(),
            detail_json: st.regime_detail.to_string(),
        }),
        rangers: Some(rangers_status_pb(&rangers_block)),
        grid: grid_block
            .as_ref()
            .map(|b| grid_status_pb(b, paused_by_errors, st.consecutive_errors)),
        capacity: grid_block
            .as_ref()
            .and_then(|b| b.capacity.as_ref())
            .map(capacity_pb),
        self_healing: grid_block.as_ref().map(self_healing_pb),
        funding: Some(funding_status(shared)),
    })
}

/// The emergency stop (RPC and SIGUSR1): halts the engine, cancels its open
/// orders and fires the funding orchestrator's emergency controller (one
/// shot: it closes every position and stops opening). Returns (ok, message).
pub async fn emergency_stop(shared: &Shared, reason: &str) -> (bool, String) {
    {
        let mut st = shared.state();
        st.mode = Mode::Halted;
        st.pause_reason = reason.to_string();
    }
    tracing::error!(%reason, "EMERGENCY STOP");
    let funding = match shared.funding.get() {
        Some(f) if f.trigger_emergency(reason, now_ms()) => {
            "; funding: closing every position".to_string()
        }
        Some(_) => "; funding: emergency already fired".to_string(),
        None => String::new(),
    };
    let open = match shared
        .gateway
        .clone()
        .list_open_orders(herd_proto::gateway::ListOpenOrdersRequest {
            symbol: String::new(),
        })
        .await
    {
        Ok(r) => r.into_inner().orders,
        Err(s) => {
            return (
                false,
                format!("halted; cannot list open orders: {}{funding}", s.message()),
            );
        }
    };
    let mut failed = Vec::new();
    for o in &open {
        if let Err(s) = shared.cancel(&o.client_order_id).await {
            failed.push(format!("{}: {}", o.client_order_id, s.message()));
        }
    }
    if failed.is_empty() {
        (
            true,
            format!("halted; canceled {} open orders{funding}", open.len()),
        )
    } else {
        (
            false,
            format!(
                "halted; canceled {} of {} open orders; FAILED: {}{funding}",
                open.len() - failed.len(),
                open.len(),
                failed.join("; ")
            ),
        )
    }
}

/// The funding block: the orchestrator's, or a disabled one.
pub fn funding_status(shared: &Shared) -> pb::FundingStatus {
    match shared.funding.get() {
        Some(f) => f.status(),
        None => {
            let cfg = &shared.cfg.funding;
            let l = cfg.limits();
            pb::FundingStatus {
                enabled: false,
                margin_band: "unknown".into(),
                shutdown_policy: cfg.shutdown_policy.as_str().into(),
                limits: Some(pb::FundingRiskLimits {
                    max_position_usd: l.max_position_usd.normalize().to_string(),
                    max_positions: l.max_positions,
                    max_total_exposure_usd: l.max_total_exposure_usd.normalize().to_string(),
                    min_rate: l.min_rate.normalize().to_string(),
                    exit_rate: l.exit_rate.normalize().to_string(),
                    margin_alert: l.margin_alert.normalize().to_string(),
                    margin_critical: l.margin_critical.normalize().to_string(),
                }),
                portfolio: Some(pb::FundingPortfolio::default()),
                emergency: Some(pb::FundingEmergency::default()),
                cycles: Some(pb::FundingCycleStats::default()),
                ..Default::default()
            }
        }
    }
}

fn funding_handle(shared: &Shared) -> Result<&crate::funding::FundingHandle, Status> {
    shared.funding.get().map(|f| f.as_ref()).ok_or_else(|| {
        Status::failed_precondition(
            "this engine runs no funding orchestrator ([funding] enabled = false)",
        )
    })
}

/// Parses an optional decimal field: empty keeps `current`.
fn limit_field(field: &str, v: &str, current: Decimal) -> Result<Decimal, Status> {
    if v.trim().is_empty() {
        return Ok(current);
    }
    Decimal::from_str(v.trim())
        .map_err(|_| Status::invalid_argument(format!("{field}: {v:?} is not a decimal number")))
}

fn parse_positive(field: &str, s: &str) -> Result<Decimal, Status> {
    let d = Decimal::from_str(s.trim())
        .map_err(|_| Status::invalid_argument(format!("{field}: {s:?} is not a decimal number")))?;
    if d <= Decimal::ZERO {
        return Err(Status::invalid_argument(format!(
            "{field}: must be greater than zero, got {d}"
        )));
    }
    Ok(d)
}

impl ControlService {
    /// Runs an operator command on the grid and its actions; a refusal is
    /// FAILED_PRECONDITION with the reason.
    async fn grid_command(&self, cmd: Command) -> Result<Response<pb::ControlResponse>, Status> {
        let (message, actions): (String, Vec<Action>) = {
            let mut strategies = self.shared.strategies.lock().await;
            let g = strategies
                .iter_mut()
                .find(|s| s.name() == grid::STRATEGY_NAME)
                .ok_or_else(|| Status::failed_precondition("this engine runs no grid strategy"))?;
            match g.command(&cmd, now_ms()) {
                Some(Ok(r)) => r,
                Some(Err(e)) => return Err(Status::failed_precondition(e)),
                None => return Err(Status::unimplemented("the grid does not take this command")),
            }
        };
        tracing::warn!(?cmd, %message, "operator command");
        self.shared.execute(grid::STRATEGY_NAME, actions).await;
        Ok(ok(message))
    }
}

fn position_id(id: String) -> Result<String, Status> {
    if id.trim().is_empty() {
        return Err(Status::invalid_argument("position_id: is required"));
    }
    Ok(id.trim().to_string())
}

#[tonic::async_trait]
impl pb::engine_server::Engine for ControlService {
    async fn spawn_churner(
        &self,
        _req: Request<pb::SpawnChurnerRequest>,
    ) -> Result<Response<pb::ControlResponse>, Status> {
        if self.shared.state().mode != Mode::Running {
            return Err(Status::failed_precondition(
                "engine is not running; resume it first",
            ));
        }
        self.grid_command(Command::SpawnChurner).await
    }

    async fn kill_churner(
        &self,
        req: Request<pb::KillChurnerRequest>,
    ) -> Result<Response<pb::ControlResponse>, Status> {
        let churner_id = req.into_inner().churner_id;
        self.grid_command(Command::KillChurner { churner_id }).await
    }

    async fn reprice_break_even(
        &self,
        req: Request<pb::PositionRequest>,
    ) -> Result<Response<pb::ControlResponse>, Status> {
        let position_id = position_id(req.into_inner().position_id)?;
        self.grid_command(Command::RepriceBreakEven { position_id })
            .await
    }

    async fn close_position_at_market(
        &self,
        req: Request<pb::PositionRequest>,
    ) -> Result<Response<pb::ControlResponse>, Status> {
        let position_id = position_id(req.into_inner().position_id)?;
        self.grid_command(Command::CloseAtMarket { position_id })
            .await
    }

    async fn keep_holding(
        &self,
        req: Request<pb::KeepHoldingRequest>,
    ) -> Result<Response<pb::ControlResponse>, Status> {
        let r = req.into_inner();
        let position_id = position_id(r.position_id)?;
        let hours = if r.hours == 0 { 24 } else { r.hours };
        self.grid_command(Command::KeepHolding { position_id, hours })
            .await
    }

    async fn get_status(
        &self,
        _req: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::EngineStatus>, Status> {
        Ok(Response::new(status(&self.shared).await?))
    }

    async fn pause(
        &self,
        req: Request<pb::PauseRequest>,
    ) -> Result<Response<pb::ControlResponse>, Status> {
        let reason = Some(req.into_inner().reason)
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| "paused by operator".into());
        let mut st = self.shared.state();
        if st.mode == Mode::Halted {
            return Err(Status::failed_precondition(
                "engine is halted; resume it first",
            ));
        }
        st.mode = Mode::Paused;
        st.pause_reason = reason.clone();
        tracing::warn!(%reason, "engine paused");
        Ok(ok(format!("paused: {reason}")))
    }

    async fn resume(
        &self,
        _req: Request<pb::ResumeRequest>,
    ) -> Result<Response<pb::ControlResponse>, Status> {
        let mut st = self.shared.state();
        st.mode = Mode::Running;
        st.pause_reason.clear();
        st.consecutive_errors = 0;
        tracing::info!("engine resumed");
        Ok(ok("running"))
    }

    async fn emergency_stop(
        &self,
        req: Request<pb::EmergencyStopRequest>,
    ) -> Result<Response<pb::ControlResponse>, Status> {
        let reason = Some(req.into_inner().reason)
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| "emergency stop by operator".into());
        let (ok, message) = emergency_stop(&self.shared, &reason).await;
        Ok(Response::new(pb::ControlResponse { ok, message }))
    }

    async fn submit_order(
        &self,
        req: Request<pb::SubmitOrderRequest>,
    ) -> Result<Response<pb::SubmitOrderResponse>, Status> {
        let r = req.into_inner();
        let side = match r.side.to_ascii_lowercase().as_str() {
            "buy" => Side::Buy,
            "sell" => Side::Sell,
            other => {
                return Err(Status::invalid_argument(format!(
                    "side: {other:?} is not buy or sell"
                )));
            }
        };
        let price = match r.order_type.to_ascii_lowercase().as_str() {
            "limit" | "" => Some(parse_positive("price", &r.price)?),
            "market" => None,
            other => {
                return Err(Status::invalid_argument(format!(
                    "order_type: {other:?} is not limit or market"
                )));
            }
        };
        let volume = parse_positive("volume", &r.volume)?;
        let symbol = if r.symbol.is_empty() {
            self.shared.cfg.symbol.clone()
        } else {
            r.symbol
        };
        // Shutting down: UNAVAILABLE, so a client retries after the restart.
        self.shared.drain.check_accepting()?;
        let mode = self.shared.state().mode;
        if mode != Mode::Running {
            return Err(Status::failed_precondition(format!(
                "engine is {mode:?}; resume it first"
            )));
        }
        let intent = OrderIntent {
            client_order_id: self.shared.next_id("m"),
            symbol,
            side,
            volume,
            price,
            post_only: r.post_only,
            userref_offset: 0,
        };
        let order = self.shared.place("manual", &intent).await?;
        let status = herd_proto::gateway::OrderStatus::try_from(order.status)
            .map(|s| {
                s.as_str_name()
                    .trim_start_matches("ORDER_STATUS_")
                    .to_ascii_lowercase()
            })
            .unwrap_or_default();
        Ok(Response::new(pb::SubmitOrderResponse {
            client_order_id: order.client_order_id,
            status,
        }))
    }

    async fn cancel_order(
        &self,
        req: Request<pb::CancelOrderRequest>,
    ) -> Result<Response<pb::ControlResponse>, Status> {
        let id = req.into_inner().client_order_id;
        if id.is_empty() {
            return Err(Status::invalid_argument("client_order_id: is required"));
        }
        let o = self.shared.cancel(&id).await?;
        Ok(ok(format!("order {} is {}", o.client_order_id, o.status)))
    }

    async fn set_rangers_enabled(
        &self,
        req: Request<pb::SetRangersEnabledRequest>,
    ) -> Result<Response<pb::ControlResponse>, Status> {
        let enabled = req.into_inner().enabled;
        let actions = {
            let mut strategies = self.shared.strategies.lock().await;
            let Some(r) = strategies
                .iter_mut()
                .find(|s| s.name() == rangers::STRATEGY_NAME)
            else {
                return Err(Status::failed_precondition(
                    "this engine runs no rangers strategy",
                ));
            };
            r.set_enabled(enabled, now_ms()).unwrap_or_default()
        };
        let cancels = actions
            .iter()
            .filter(|a| matches!(a, herd_strategies::strategy::Action::Cancel { .. }))
            .count();
        tracing::warn!(enabled, cancels, "rangers switched by operator");
        self.shared.execute(rangers::STRATEGY_NAME, actions).await;
        Ok(ok(if enabled {
            "rangers enabled".to_string()
        } else {
            format!("rangers disabled; {cancels} ranger orders asked to cancel")
        }))
    }

    async fn set_funding_opening(
        &self,
        req: Request<pb::SetFundingOpeningRequest>,
    ) -> Result<Response<pb::ControlResponse>, Status> {
        let f = funding_handle(&self.shared)?;
        let r = req.into_inner();
        if r.paused {
            let reason = Some(r.reason)
                .filter(|x| !x.is_empty())
                .unwrap_or_else(|| "paused by operator".into());
            f.set_opening_paused(Some(reason.clone()));
            Ok(ok(format!("funding opening paused: {reason}")))
        } else {
            f.set_opening_paused(None);
            let e = f.emergency();
            Ok(ok(if e.triggered {
                "funding opening resumed, but the emergency stop has fired: nothing opens until it is cleared (ClearFundingEmergency)".to_string()
            } else {
                "funding opening resumed".to_string()
            }))
        }
    }

    async fn close_funding_position(
        &self,
        req: Request<pb::CloseFundingPositionRequest>,
    ) -> Result<Response<pb::ControlResponse>, Status> {
        let f = funding_handle(&self.shared)?;
        let symbol = req.into_inner().symbol;
        if symbol.trim().is_empty() {
            return Err(Status::invalid_argument("symbol: is required"));
        }
        match f.close_position(symbol.trim()).await {
            Ok(m) => Ok(ok(m)),
            Err(m) if m.starts_with("no open funding position") => Err(Status::not_found(m)),
            Err(m) => Ok(Response::new(pb::ControlResponse {
                ok: false,
                message: m,
            })),
        }
    }

    async fn clear_funding_emergency(
        &self,
        req: Request<pb::ClearFundingEmergencyRequest>,
    ) -> Result<Response<pb::ControlResponse>, Status> {
        let f = funding_handle(&self.shared)?;
        let reason = Some(req.into_inner().reason)
            .filter(|r| !r.trim().is_empty())
            .unwrap_or_else(|| "cleared by operator".into());
        f.clear_emergency(&reason)
            .await
            .map(ok)
            .map_err(Status::failed_precondition)
    }

    async fn set_funding_risk_limits(
        &self,
        req: Request<pb::SetFundingRiskLimitsRequest>,
    ) -> Result<Response<pb::FundingRiskLimits>, Status> {
        let f = funding_handle(&self.shared)?;
        let r = req.into_inner();
        let cur = f.limits();
        let next = herd_strategies::funding::RiskLimits {
            max_position_usd: limit_field(
                "max_position_usd",
                &r.max_position_usd,
                cur.max_position_usd,
            )?,
            max_positions: if r.max_positions == 0 {
                cur.max_positions
            } else {
                r.max_positions
            },
            max_total_exposure_usd: limit_field(
                "max_total_exposure_usd",
                &r.max_total_exposure_usd,
                cur.max_total_exposure_usd,
            )?,
            min_rate: limit_field("min_rate", &r.min_rate, cur.min_rate)?,
            exit_rate: limit_field("exit_rate", &r.exit_rate, cur.exit_rate)?,
            margin_alert: limit_field("margin_alert", &r.margin_alert, cur.margin_alert)?,
            margin_critical: limit_field(
                "margin_critical",
                &r.margin_critical,
                cur.margin_critical,
            )?,
        };
        f.set_limits(next)
            .map_err(|(field, m)| Status::invalid_argument(format!("{field}: {m}")))?;
        Ok(Response::new(f.status().limits.unwrap_or_default()))
    }
}
