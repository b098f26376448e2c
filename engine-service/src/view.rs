//! The engine's status, built in one place: [`engine_status`] takes the
//! strategies' lock once, asks each strategy for its typed
//! [`StatusBlock`] once, and turns the blocks into the `GetStatus` message
//! (this module's `*_pb` functions are the one conversion from a strategy's
//! block to its message). Everything that shows an engine reads that one
//! message: the `GetStatus` RPC, `/api/status` and the dashboard (serde on
//! the generated types, [`crate::dashboard::status_json`]), herdctl's tables
//! and JSON, and the Prometheus gauges ([`crate::metrics`]).

use herd_proto::engine as pb;
use rust_decimal::Decimal;
use tonic::Status;

use crate::execution::{Mode, Shared, now_ms};
use crate::store::is_final_status;
use herd_strategies::capacity::CapacityHealth;
use herd_strategies::grid::money;
use herd_strategies::grid::strategy::{GridStatusBlock, OrderRow as GridOrderRow};
use herd_strategies::rangers::RangersStatusBlock;
use herd_strategies::strategy::StatusBlock;

fn mode_pb(m: Mode) -> pb::Mode {
    match m {
        Mode::Running => pb::Mode::Running,
        Mode::Paused => pb::Mode::Paused,
        Mode::Halted => pb::Mode::Halted,
    }
}

fn opt_dec(d: Option<Decimal>) -> String {
    d.map(|d| d.normalize().to_string()).unwrap_or_default()
}

/// The rangers' message from their status block.
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
        cycles_total: block.cycles_total,
        profit_total: money(block.profit_total),
        exit_margin_pct: opt_dec(block.exit_margin_pct),
        timing: Some(pb::RangerTiming {
            entry_timeout_sec: block.timing.entry_timeout_sec,
            exit_timeout_sec: block.timing.exit_timeout_sec,
            cooldown_sec: block.timing.cooldown_sec,
            near_exit_timeout_share: block.timing.near_exit_timeout_share,
        }),
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
                badge: s.badge.clone(),
                timeout_sec: s.timeout_sec,
                remaining_sec: s.remaining_sec,
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

/// The grid's message from its status block; the engine-level
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

/// The engine's status: one lock on the strategies, one `status()` call per
/// strategy.
pub async fn engine_status(shared: &Shared) -> Result<pb::EngineStatus, Status> {
    let now = now_ms();
    let st = shared.state().clone();
    let mut rangers = None;
    let mut grid = None;
    let strategies = {
        let guard = shared.strategies.lock().await;
        guard
            .iter()
            .map(|s| {
                let block = s.status(now);
                let detail_json = block.detail_json();
                match block {
                    StatusBlock::Rangers(b) => rangers = Some(*b),
                    StatusBlock::Grid(b) => grid = Some(*b),
                    StatusBlock::Detail(_) => {}
                }
                pb::StrategyStatus {
                    name: s.name().to_string(),
                    enabled: s.enabled(),
                    state: if s.enabled() { "enabled" } else { "disabled" }.to_string(),
                    detail_json,
                }
            })
            .collect()
    };
    let rangers = rangers.unwrap_or_else(|| RangersStatusBlock::disabled(&shared.cfg.rangers));
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
        rangers: Some(rangers_status_pb(&rangers)),
        grid: grid
            .as_ref()
            .map(|b| grid_status_pb(b, paused_by_errors, st.consecutive_errors)),
        capacity: grid
            .as_ref()
            .and_then(|b| b.capacity.as_ref())
            .map(capacity_pb),
        self_healing: grid.as_ref().map(self_healing_pb),
        funding: Some(funding_status(shared)),
        last_reconcile: st.last_reconcile.as_ref().map(reconcile_summary_pb),
        risk: st.risk.as_ref().map(crate::risk::status_pb),
        recent_events: shared
            .store
            .event_ids()
            .recent()
            .into_iter()
            .map(|e| pb::EngineEventRow {
                severity: herd_proto::events::severity_name(e.severity).to_string(),
                id: e.id,
                time_ms: e.time_ms,
                kind: e.kind,
                message: e.message,
            })
            .collect(),
        herd_dashboard_url: shared.cfg.herd_dashboard_url.clone(),
    })
}

/// A reconcile report's summary (GetStatus and the Reconcile RPC).
pub fn reconcile_summary_pb(r: &crate::reconcile::Report) -> pb::ReconcileSummary {
    pb::ReconcileSummary {
        time_ms: r.time_ms,
        trigger: r.trigger.as_str().to_string(),
        dry_run: r.dry_run,
        counts: r
            .counts()
            .into_iter()
            .map(|(kind, count)| pb::ReconcileCount {
                kind: kind.as_str().to_string(),
                count,
            })
            .collect(),
        applied: r.applied,
        failed: r.failed,
    }
}

/// The Reconcile RPC's answer: the summary and every difference.
pub fn reconcile_response_pb(r: &crate::reconcile::Report) -> pb::ReconcileResponse {
    pb::ReconcileResponse {
        summary: Some(reconcile_summary_pb(r)),
        differences: r
            .differences
            .iter()
            .map(|d| pb::ReconcileDifference {
                kind: d.kind.as_str().to_string(),
                client_order_id: d.client_order_id.clone(),
                owner: d.owner.clone(),
                detail: d.detail.clone(),
                action: d.action.as_str().to_string(),
                outcome: d.outcome.clone(),
            })
            .collect(),
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
