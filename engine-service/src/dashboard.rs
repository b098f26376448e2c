//! The engine's web dashboard, served on the admin HTTP port: `/` is one
//! self-contained page (inline CSS and vanilla JS, nothing loaded from
//! elsewhere) that polls `/api/status` every second.
//!
//! `/api/status` is the same [`pb::EngineStatus`] the `GetStatus` RPC
//! returns, converted by hand into JSON (decimals stay strings; a block the
//! engine does not have is `null`). The view adds what a page needs to draw
//! without knowing the engine's config: each ranger's badge (green active,
//! gray idle or disabled, amber near its exit timeout) and the timeout of the
//! stage it is in. The page is passive: nothing on it can trade, and the
//! admin port answers GET only.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use herd_proto::engine as pb;
use serde_json::{Value, json};

use crate::execution::Shared;
use herd_strategies::rangers::RangerConfig;

/// The page, as served.
pub const PAGE: &str = include_str!("../assets/dashboard.html");

/// A ranger in `exit_open` turns amber once this share of its exit timeout
/// has passed (1350 s default: amber for the last 270 s).
pub const NEAR_EXIT_TIMEOUT_SHARE: f64 = 0.8;

/// The rangers' stage timeouts, from the engine's config (they do not
/// change at runtime; the enabled switch does and comes from the status).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RangerTiming {
    pub entry_timeout_sec: u64,
    pub exit_timeout_sec: u64,
    pub cooldown_sec: u64,
}

impl RangerTiming {
    pub fn from_config(cfg: &RangerConfig) -> RangerTiming {
        RangerTiming {
            entry_timeout_sec: cfg.entry_timeout_sec,
            exit_timeout_sec: cfg.exit_timeout_sec,
            cooldown_sec: cfg.cooldown_sec,
        }
    }

    /// The timeout of a stage in seconds (0 = the stage has none).
    pub fn of_stage(&self, stage: &str) -> u64 {
        match stage {
            "entry_open" => self.entry_timeout_sec,
            "exit_open" => self.exit_timeout_sec,
            "cooldown" => self.cooldown_sec,
            _ => 0,
        }
    }
}

/// A ranger's badge: the CSS class suffix the page uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Badge {
    /// Green: working (an order out, or cooling down after a cycle).
    Active,
    /// Gray: idle, or the rangers are disabled.
    Idle,
    /// Amber: an exit close to its timeout (it will be orphaned).
    NearTimeout,
}

impl Badge {
    pub fn as_str(self) -> &'static str {
        match self {
            Badge::Active => "active",
            Badge::Idle => "idle",
            Badge::NearTimeout => "amber",
        }
    }
}

/// The badge of one ranger row.
pub fn ranger_badge(enabled: bool, stage: &str, age_sec: f64, timing: &RangerTiming) -> Badge {
    if !enabled || stage.is_empty() || stage == "idle" {
        return Badge::Idle;
    }
    let exit_timeout = timing.exit_timeout_sec as f64;
    if stage == "exit_open"
        && exit_timeout > 0.0
        && age_sec >= exit_timeout * NEAR_EXIT_TIMEOUT_SHARE
    {
        return Badge::NearTimeout;
    }
    Badge::Active
}

fn mode_name(m: i32) -> &'static str {
    match pb::Mode::try_from(m) {
        Ok(pb::Mode::Running) => "RUNNING",
        Ok(pb::Mode::Paused) => "PAUSED",
        Ok(pb::Mode::Halted) => "HALTED",
        _ => "UNKNOWN",
    }
}

/// A JSON string embedded in the status, parsed (`null` when empty or not JSON).
fn embedded(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or(Value::Null)
}

fn rangers_json(r: &pb::RangersStatus, timing: &RangerTiming, detail: &Value) -> Value {
    let slots: Vec<Value> = r
        .slots
        .iter()
        .map(|x| {
            let timeout = timing.of_stage(&x.stage);
            let remaining = if timeout > 0 {
                json!((timeout as f64 - x.age_sec).max(0.0))
            } else {
                Value::Null
            };
            json!({
                "ranger_id": x.ranger_id,
                "stage": x.stage,
                "badge": ranger_badge(r.enabled, &x.stage, x.age_sec, timing).as_str(),
                "entry_price": x.entry_price,
                "exit_price": x.exit_price,
                "entry_volume": x.entry_volume,
                "age_sec": x.age_sec,
                "timeout_sec": timeout,
                "remaining_sec": remaining,
                "last_error": x.last_error,
            })
        })
        .collect();
    json!({
        "enabled": r.enabled,
        "active": r.active,
        "regime_ok": r.regime_ok,
        "cycles_today": r.cycles_today,
        "profit_today": r.profit_today,
        "orphans_today": r.orphans_today,
        "orphan_exposure_usd": r.orphan_exposure_usd,
        "doge_reserve": r.doge_reserve,
        // From the strategy's own status block; null when it has none.
        "cycles_total": detail.get("cycles_total").cloned().unwrap_or(Value::Null),
        "profit_total": detail.get("profit_total").cloned().unwrap_or(Value::Null),
        "exit_margin_pct": detail.get("exit_margin_pct").cloned().unwrap_or(Value::Null),
        "timing": {
            "entry_timeout_sec": timing.entry_timeout_sec,
            "exit_timeout_sec": timing.exit_timeout_sec,
            "cooldown_sec": timing.cooldown_sec,
            "near_exit_timeout_share": NEAR_EXIT_TIMEOUT_SHARE,
        },
        "slots": slots,
    })
}

fn grid_order_json(o: &pb::GridOrderStatus) -> Value {
    json!({
        "client_order_id": o.client_order_id, "trade": o.trade, "role": o.role,
        "side": o.side, "price": o.price, "volume": o.volume, "age_sec": o.age_sec,
        "distance_pct": o.distance_pct, "position_id": o.position_id,
        "orphan_reason": o.orphan_reason,
    })
}

fn grid_json(g: &pb::GridStatus) -> Value {
    json!({
        "enabled": g.enabled, "mode": g.mode, "slot_count": g.slot_count,
        "total_profit": g.total_profit, "total_settled_usd": g.total_settled_usd,
        "total_orphans": g.total_orphans, "daily_loss_lock": g.daily_loss_lock,
        "daily_loss_limit_usd": g.daily_loss_limit_usd, "realized_today": g.realized_today,
        "paused_by_venue_errors": g.paused_by_venue_errors,
        "consecutive_venue_errors": g.consecutive_venue_errors,
        "open_positions": g.open_positions, "closed_positions": g.closed_positions,
        "realized_pnl": g.realized_pnl, "ledger_conflicts": g.ledger_conflicts,
        "profit_pct": g.profit_pct,
        "slots": g.slots.iter().map(|x| json!({
            "id": x.id, "alias": x.alias, "sticky": x.sticky, "phase": x.phase,
            "halted": x.halted, "long_only": x.long_only, "short_only": x.short_only,
            "cycles_a": x.cycles_a, "cycles_b": x.cycles_b, "cycles": x.cycles,
            "profit": x.profit, "order_size_usd": x.order_size_usd,
            "open_orders": x.open_orders.iter().map(grid_order_json).collect::<Vec<_>>(),
            "recovery_orders": x.recovery_orders.iter().map(grid_order_json).collect::<Vec<_>>(),
            "recent_cycles": x.recent_cycles.iter().map(|c| json!({
                "trade": c.trade, "kind": c.kind, "entry_price": c.entry_price,
                "exit_price": c.exit_price, "volume": c.volume, "net": c.net,
                "time_ms": c.time_ms,
            })).collect::<Vec<_>>(),
            "last_error": x.last_error,
        })).collect::<Vec<_>>(),
    })
}

fn capacity_json(c: &pb::CapacityStatus) -> Value {
    json!({
        "limit": c.limit, "safe_cap": c.safe_cap, "open_orders": c.open_orders,
        "source": c.source, "headroom": c.headroom, "band": c.band, "reason": c.reason,
        "entries_allowed": c.entries_allowed,
    })
}

fn self_healing_json(h: &pb::SelfHealingStatus) -> Value {
    json!({
        "enabled": h.enabled,
        "subsidy": h.subsidy.iter().map(|x| json!({
            "slot_id": x.slot_id, "balance": x.balance, "earned": x.earned,
            "consumed": x.consumed, "needed": x.needed,
        })).collect::<Vec<_>>(),
        "bands": h.bands.map(|b| json!({
            "fresh": b.fresh, "aging": b.aging, "stale": b.stale, "stuck": b.stuck,
            "write_off": b.write_off,
        })),
        "positions": h.positions.iter().map(|p| json!({
            "position_id": p.position_id, "slot_id": p.slot_id, "trade": p.trade,
            "mode": p.mode, "entry_price": p.entry_price, "exit_price": p.exit_price,
            "volume": p.volume, "age_hours": p.age_hours,
            "effective_age_hours": p.effective_age_hours, "distance_pct": p.distance_pct,
            "band": p.band, "exit_order_id": p.exit_order_id,
        })).collect::<Vec<_>>(),
        "churner": h.churner.as_ref().map(|c| json!({
            "enabled": c.enabled, "active": c.active, "max": c.max,
            "reserve_available": c.reserve_available,
            "cycles_today": c.cycles_today, "profit_today": c.profit_today,
            "cycles_total": c.cycles_total, "profit_total": c.profit_total,
            "states": c.states.iter().map(|x| json!({
                "id": x.id, "stage": x.stage, "parent_position_id": x.parent_position_id,
                "parent_slot": x.parent_slot, "side": x.side, "entry_price": x.entry_price,
                "exit_price": x.exit_price, "volume": x.volume, "age_sec": x.age_sec,
                "compound_usd": x.compound_usd, "cycles": x.cycles, "profit": x.profit,
                "last_error": x.last_error,
            })).collect::<Vec<_>>(),
        })),
    })
}

fn regime_json(r: &pb::RegimeStatus) -> Value {
    let detail = embedded(&r.detail_json);
    let per_timeframe = detail
        .get("per_timeframe")
        .filter(|v| v.is_array())
        .cloned()
        .unwrap_or_else(|| json!([]));
    json!({
        "regime": r.regime, "ready": r.ready, "confidence": r.confidence, "bias": r.bias,
        "agreement": r.agreement,
        "source": detail.get("source").cloned().unwrap_or(Value::Null),
        "per_timeframe": per_timeframe,
    })
}

/// The funding block as JSON (the dashboard's `funding`, and what
/// `herdctl funding status -o json` prints).
pub fn funding_json(f: &pb::FundingStatus) -> Value {
    json!({
        "enabled": f.enabled, "running": f.running, "mode": f.mode,
        "opening_paused": f.opening_paused, "pause_reason": f.pause_reason,
        "margin_ratio": f.margin_ratio, "margin_band": f.margin_band,
        "shutdown_policy": f.shutdown_policy,
        "reconcile_mismatches": f.reconcile_mismatches,
        "portfolio": f.portfolio.as_ref().map(|p| json!({
            "total_funding": p.total_funding, "total_fees": p.total_fees,
            "unrealized": p.unrealized, "realized": p.realized, "net_pnl": p.net_pnl,
            "open_positions": p.open_positions, "closed_positions": p.closed_positions,
            "exposure_usd": p.exposure_usd,
        })),
        "positions": f.positions.iter().map(|p| json!({
            "id": p.id, "symbol": p.symbol, "spot_symbol": p.spot_symbol, "state": p.state,
            "spot_qty": p.spot_qty, "perp_qty": p.perp_qty, "spot_entry": p.spot_entry,
            "perp_entry": p.perp_entry, "funding_collected": p.funding_collected,
            "fees": p.fees, "unrealized": p.unrealized, "net": p.net,
            "opened_at_ms": p.opened_at_ms, "funding_payments": p.funding_payments,
            "last_error": p.last_error,
        })).collect::<Vec<_>>(),
        "ranking": f.ranking.iter().map(|o| json!({
            "symbol": o.symbol, "rate": o.rate, "interval_hours": o.interval_hours,
            "net_per_period": o.net_per_period, "annualized": o.annualized,
            "turnover_24h_usd": o.turnover_24h_usd,
        })).collect::<Vec<_>>(),
        "emergency": f.emergency.as_ref().map(|e| json!({
            "triggered": e.triggered, "reason": e.reason, "at_ms": e.at_ms,
            "done": e.done, "failures": e.failures,
        })),
        "cycles": f.cycles.as_ref().map(|c| json!({
            "run": c.run, "skipped": c.skipped, "failed": c.failed,
            "last_started_ms": c.last_started_ms, "last_duration_ms": c.last_duration_ms,
            "last_errors": c.last_errors, "interval_sec": c.interval_sec,
        })),
        "limits": f.limits.as_ref().map(funding_limits_json),
    })
}

/// The funding risk limits as JSON.
pub fn funding_limits_json(l: &pb::FundingRiskLimits) -> Value {
    json!({
        "max_position_usd": l.max_position_usd, "max_positions": l.max_positions,
        "max_total_exposure_usd": l.max_total_exposure_usd, "min_rate": l.min_rate,
        "exit_rate": l.exit_rate, "margin_alert": l.margin_alert,
        "margin_critical": l.margin_critical,
    })
}

/// The JSON view of an engine status (what `/api/status` serves).
pub fn status_json(s: &pb::EngineStatus, timing: &RangerTiming) -> Value {
    let rangers_detail = s
        .strategies
        .iter()
        .find(|st| st.name == herd_strategies::rangers::STRATEGY_NAME)
        .map(|st| embedded(&st.detail_json))
        .unwrap_or(Value::Null);
    json!({
        "engine_id": s.engine_id,
        "mode": mode_name(s.mode),
        "pause_reason": s.pause_reason,
        "gateway_connected": s.gateway_connected,
        "gateway_incarnation": s.gateway_incarnation,
        "last_event_sequence": s.last_event_sequence,
        "price": s.price,
        "price_age_ms": s.price_age_ms,
        "fills_journaled": s.fills_journaled,
        "consecutive_venue_errors": s.consecutive_venue_errors,
        "time_ms": s.time_ms,
        "open_orders": s.open_orders.iter().map(|o| json!({
            "client_order_id": o.client_order_id, "symbol": o.symbol, "side": o.side,
            "price": o.price, "volume": o.volume, "volume_executed": o.volume_executed,
            "status": o.status, "owner": o.owner,
        })).collect::<Vec<_>>(),
        "strategies": s.strategies.iter().map(|st| json!({
            "name": st.name, "enabled": st.enabled, "state": st.state,
        })).collect::<Vec<_>>(),
        "regime": s.regime.as_ref().map(regime_json),
        "rangers": s.rangers.as_ref().map(|r| rangers_json(r, timing, &rangers_detail)),
        "grid": s.grid.as_ref().map(grid_json),
        "capacity": s.capacity.as_ref().map(capacity_json),
        "self_healing": s.self_healing.as_ref().map(self_healing_json),
        "funding": s.funding.as_ref().map(funding_json),
    })
}

/// `GET /`: the page.
pub async fn page() -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], PAGE).into_response()
}

/// `GET /api/status`: the engine's status as JSON (500 with a JSON error
/// when the status cannot be built, e.g. the store is unreachable).
pub async fn api_status(shared: &Shared) -> Response {
    let json_type = [(header::CONTENT_TYPE, "application/json")];
    match crate::control::status(shared).await {
        Ok(s) => {
            let timing = RangerTiming::from_config(&shared.cfg.rangers);
            (json_type, status_json(&s, &timing).to_string()).into_response()
        }
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            json_type,
            json!({ "error": e.message() }).to_string(),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMING: RangerTiming = RangerTiming {
        entry_timeout_sec: 300,
        exit_timeout_sec: 1350,
        cooldown_sec: 30,
    };

    fn slot(id: u32, stage: &str, age: f64) -> pb::RangerSlotStatus {
        pb::RangerSlotStatus {
            ranger_id: id,
            stage: stage.into(),
            age_sec: age,
            ..Default::default()
        }
    }

    #[test]
    fn badges_follow_stage_and_exit_age() {
        struct Case {
            enabled: bool,
            stage: &'static str,
            age: f64,
            want: Badge,
        }
        let cases = [
            Case {
                enabled: true,
                stage: "idle",
                age: 5.0,
                want: Badge::Idle,
            },
            Case {
                enabled: true,
                stage: "",
                age: 0.0,
                want: Badge::Idle,
            },
            Case {
                enabled: true,
                stage: "entry_open",
                age: 299.0,
                want: Badge::Active,
            },
            Case {
                enabled: true,
                stage: "cooldown",
                age: 1.0,
                want: Badge::Active,
            },
            Case {
                enabled: true,
                stage: "exit_open",
                age: 0.0,
                want: Badge::Active,
            },
            Case {
                enabled: true,
                stage: "exit_open",
                age: 1079.9,
                want: Badge::Active,
            },
            Case {
                enabled: true,
                stage: "exit_open",
                age: 1080.0,
                want: Badge::NearTimeout,
            },
            Case {
                enabled: true,
                stage: "exit_open",
                age: 5000.0,
                want: Badge::NearTimeout,
            },
            // Disabled rangers are gray whatever they are still winding down.
            Case {
                enabled: false,
                stage: "exit_open",
                age: 1300.0,
                want: Badge::Idle,
            },
            Case {
                enabled: false,
                stage: "entry_open",
                age: 1.0,
                want: Badge::Idle,
            },
        ];
        for c in cases {
            assert_eq!(
                ranger_badge(c.enabled, c.stage, c.age, &TIMING),
                c.want,
                "{} {} {}",
                c.enabled,
                c.stage,
                c.age
            );
        }
        // A zero exit timeout (unknown) never turns amber.
        assert_eq!(
            ranger_badge(true, "exit_open", 1e9, &RangerTiming::default()),
            Badge::Active
        );
    }

    #[test]
    fn missing_blocks_are_null_and_zero_status_renders() {
        let v = status_json(&pb::EngineStatus::default(), &RangerTiming::default());
        for block in [
            "regime",
            "rangers",
            "grid",
            "capacity",
            "self_healing",
            "funding",
        ] {
            assert!(v[block].is_null(), "{block}: {}", v[block]);
        }
        assert_eq!(v["engine_id"], "");
        assert_eq!(v["mode"], "UNKNOWN");
        assert_eq!(v["gateway_connected"], false);
        assert_eq!(v["price"], "");
        assert_eq!(v["open_orders"], json!([]));
        assert_eq!(v["strategies"], json!([]));
    }

    #[test]
    fn empty_nested_blocks_stay_empty_not_missing() {
        let s = pb::EngineStatus {
            mode: pb::Mode::Paused as i32,
            rangers: Some(pb::RangersStatus::default()),
            self_healing: Some(pb::SelfHealingStatus::default()),
            funding: Some(pb::FundingStatus::default()),
            regime: Some(pb::RegimeStatus::default()),
            ..Default::default()
        };
        let v = status_json(&s, &TIMING);
        assert_eq!(v["mode"], "PAUSED");
        let r = &v["rangers"];
        assert_eq!(r["enabled"], false);
        assert_eq!(r["cycles_today"], 0);
        assert_eq!(r["profit_today"], "");
        assert_eq!(r["slots"], json!([]));
        assert!(r["cycles_total"].is_null(), "no strategy detail: {r}");
        assert_eq!(r["timing"]["exit_timeout_sec"], 1350);
        let h = &v["self_healing"];
        assert!(h["bands"].is_null() && h["churner"].is_null(), "{h}");
        assert_eq!(h["positions"], json!([]));
        let f = &v["funding"];
        assert!(f["portfolio"].is_null() && f["emergency"].is_null(), "{f}");
        assert_eq!(f["positions"], json!([]));
        // Empty or broken embedded JSON gives no timeframes, not an error.
        assert_eq!(v["regime"]["per_timeframe"], json!([]));
        assert!(v["regime"]["source"].is_null());
    }

    #[test]
    fn rangers_rows_carry_badge_timeout_and_decimal_strings() {
        let s = pb::EngineStatus {
            engine_id: "e0".into(),
            mode: pb::Mode::Running as i32,
            price: "0.1202".into(),
            rangers: Some(pb::RangersStatus {
                enabled: true,
                active: 2,
                regime_ok: true,
                cycles_today: 3,
                profit_today: "0.042181997002326".into(),
                slots: vec![
                    pb::RangerSlotStatus {
                        entry_price: "0.12018".into(),
                        exit_price: "0.1187378".into(),
                        entry_volume: "16.64170411".into(),
                        ..slot(0, "exit_open", 1200.0)
                    },
                    slot(1, "entry_open", 10.0),
                    slot(2, "idle", 0.0),
                ],
                ..Default::default()
            }),
            strategies: vec![pb::StrategyStatus {
                name: herd_strategies::rangers::STRATEGY_NAME.into(),
                enabled: true,
                state: "enabled".into(),
                detail_json: r#"{"cycles_total": 7, "profit_total": "0.1", "exit_margin_pct": "1.2"}"#
                    .into(),
            }],
            regime: Some(pb::RegimeStatus {
                regime: "RANGING".into(),
                ready: true,
                detail_json: r#"{"per_timeframe":[{"timeframe":"1m","regime":"RANGING"},{"timeframe":"15m","regime":"BULLISH"}]}"#.into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let v = status_json(&s, &TIMING);
        let rows = v["rangers"]["slots"].as_array().unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0]["badge"], "amber");
        assert_eq!(rows[0]["timeout_sec"], 1350);
        assert_eq!(rows[0]["remaining_sec"], 150.0);
        assert_eq!(rows[0]["entry_price"], "0.12018", "decimals stay strings");
        assert_eq!(rows[0]["entry_volume"], "16.64170411");
        assert_eq!(rows[1]["badge"], "active");
        assert_eq!(rows[1]["remaining_sec"], 290.0);
        assert_eq!(rows[2]["badge"], "idle");
        assert!(rows[2]["remaining_sec"].is_null());
        assert_eq!(v["rangers"]["profit_today"], "0.042181997002326");
        assert_eq!(v["rangers"]["cycles_total"], 7);
        assert_eq!(v["rangers"]["exit_margin_pct"], "1.2");
        assert_eq!(v["regime"]["per_timeframe"][1]["timeframe"], "15m");
        assert_eq!(
            v["strategies"][0]["name"],
            herd_strategies::rangers::STRATEGY_NAME
        );
        assert!(v["strategies"][0].get("detail_json").is_none());
    }

    #[tokio::test]
    async fn page_is_self_contained_and_passive() {
        let lower = PAGE.to_ascii_lowercase();
        for banned in [
            "<button",
            "<form",
            "<input",
            "<select",
            "<textarea",
            "http://",
            "https://",
            "src=\"//",
            "<iframe",
        ] {
            assert!(
                !lower.contains(banned),
                "the page must not contain {banned}"
            );
        }
        assert!(lower.contains("content-security-policy"));
        assert!(lower.contains("/api/status"));
        assert!(lower.contains("id=\"rangers\""));
        let r = page().await;
        assert_eq!(r.status(), StatusCode::OK);
        assert!(
            r.headers()[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
    }
}
