//! Human tables and JSON for what herdctl prints.

use std::fmt::Write as _;
use std::path::Path;

use herd_proto::engine as epb;
use herd_proto::gateway as gpb;
use serde_json::{Value, json};

/// A plain fixed-width table.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let parts: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths.get(i).copied().unwrap_or(0)))
            .collect();
        let _ = writeln!(out, "{}", parts.join("  ").trim_end());
    };
    line(headers.to_vec(), &mut out);
    line(
        widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str)
            .collect(),
        &mut out,
    );
    for r in rows {
        line(r.iter().map(String::as_str).collect(), &mut out);
    }
    out
}

fn mode_name(m: i32) -> String {
    epb::Mode::try_from(m)
        .map(|m| m.as_str_name().trim_start_matches("MODE_").to_string())
        .unwrap_or_else(|_| "UNKNOWN".into())
}

/// JSON for an engine status.
pub fn status_json(s: &epb::EngineStatus) -> Value {
    let strategies: Vec<Value> = s
        .strategies
        .iter()
        .map(|st| {
            json!({
                "name": st.name,
                "enabled": st.enabled,
                "state": st.state,
                "detail": serde_json::from_str::<Value>(&st.detail_json).unwrap_or(Value::Null),
            })
        })
        .collect();
    let regime = s.regime.as_ref().map(|r| {
        json!({
            "regime": r.regime,
            "ready": r.ready,
            "confidence": r.confidence,
            "bias": r.bias,
            "agreement": r.agreement,
            "detail": serde_json::from_str::<Value>(&r.detail_json).unwrap_or(Value::Null),
        })
    });
    let rangers = s.rangers.as_ref().map(|r| {
        json!({
            "enabled": r.enabled,
            "active": r.active,
            "regime_ok": r.regime_ok,
            "cycles_today": r.cycles_today,
            "profit_today": r.profit_today,
            "orphans_today": r.orphans_today,
            "orphan_exposure_usd": r.orphan_exposure_usd,
            "doge_reserve": r.doge_reserve,
            "slots": r.slots.iter().map(|x| json!({
                "ranger_id": x.ranger_id, "stage": x.stage, "entry_price": x.entry_price,
                "exit_price": x.exit_price, "entry_volume": x.entry_volume,
                "age_sec": x.age_sec, "last_error": x.last_error,
            })).collect::<Vec<_>>(),
        })
    });
    let funding = s.funding.as_ref().map(funding_json);
    let grid = s.grid.as_ref().map(|g| {
        json!({
            "enabled": g.enabled, "mode": g.mode, "slot_count": g.slot_count,
            "total_profit": g.total_profit, "total_settled_usd": g.total_settled_usd,
            "total_orphans": g.total_orphans, "daily_loss_lock": g.daily_loss_lock,
            "daily_loss_limit_usd": g.daily_loss_limit_usd, "realized_today": g.realized_today,
            "paused_by_venue_errors": g.paused_by_venue_errors,
            "open_positions": g.open_positions, "closed_positions": g.closed_positions,
            "realized_pnl": g.realized_pnl,
            "slots": g.slots.iter().map(|x| json!({
                "id": x.id, "alias": x.alias, "sticky": x.sticky, "phase": x.phase,
                "halted": x.halted, "long_only": x.long_only, "short_only": x.short_only,
                "cycles_a": x.cycles_a, "cycles_b": x.cycles_b, "profit": x.profit,
                "order_size_usd": x.order_size_usd,
                "open_orders": x.open_orders.iter().map(|o| json!({
                    "client_order_id": o.client_order_id, "trade": o.trade, "role": o.role,
                    "side": o.side, "price": o.price, "volume": o.volume, "age_sec": o.age_sec,
                })).collect::<Vec<_>>(),
                "recovery_orders": x.recovery_orders.iter().map(|o| json!({
                    "client_order_id": o.client_order_id, "position_id": o.position_id,
                    "price": o.price, "age_sec": o.age_sec, "distance_pct": o.distance_pct,
                    "reason": o.orphan_reason,
                })).collect::<Vec<_>>(),
                "recent_cycles": x.recent_cycles.iter().map(|c| json!({
                    "trade": c.trade, "kind": c.kind, "entry_price": c.entry_price,
                    "exit_price": c.exit_price, "volume": c.volume, "net": c.net,
                })).collect::<Vec<_>>(),
                "last_error": x.last_error,
            })).collect::<Vec<_>>(),
        })
    });
    let capacity = s.capacity.as_ref().map(|c| {
        json!({"limit": c.limit, "safe_cap": c.safe_cap, "open_orders": c.open_orders,
            "source": c.source, "headroom": c.headroom, "band": c.band, "reason": c.reason})
    });
    let healing = s.self_healing.as_ref().map(|h| {
        let bands = h.bands.unwrap_or_default();
        let c = h.churner.clone().unwrap_or_default();
        json!({
            "enabled": h.enabled,
            "subsidy": h.subsidy.iter().map(|x| json!({
                "slot_id": x.slot_id, "balance": x.balance, "earned": x.earned,
                "consumed": x.consumed, "needed": x.needed,
            })).collect::<Vec<_>>(),
            "bands": {"fresh": bands.fresh, "aging": bands.aging, "stale": bands.stale,
                "stuck": bands.stuck, "write_off": bands.write_off},
            "positions": h.positions.iter().map(|p| json!({
                "position_id": p.position_id, "slot_id": p.slot_id, "trade": p.trade,
                "mode": p.mode, "entry_price": p.entry_price, "exit_price": p.exit_price,
                "volume": p.volume, "age_hours": p.age_hours,
                "effective_age_hours": p.effective_age_hours, "band": p.band,
            })).collect::<Vec<_>>(),
            "churner": {
                "enabled": c.enabled, "active": c.active, "max": c.max,
                "reserve_available": c.reserve_available,
                "cycles_today": c.cycles_today, "profit_today": c.profit_today,
                "cycles_total": c.cycles_total, "profit_total": c.profit_total,
                "states": c.states.iter().map(|x| json!({
                    "id": x.id, "stage": x.stage, "parent_position_id": x.parent_position_id,
                    "parent_slot": x.parent_slot, "side": x.side, "entry_price": x.entry_price,
                    "exit_price": x.exit_price, "volume": x.volume, "age_sec": x.age_sec,
                    "compound_usd": x.compound_usd, "last_error": x.last_error,
                })).collect::<Vec<_>>(),
            },
        })
    });
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
        "open_orders": s.open_orders.iter().map(|o| json!({
            "client_order_id": o.client_order_id, "symbol": o.symbol, "side": o.side,
            "price": o.price, "volume": o.volume, "volume_executed": o.volume_executed,
            "status": o.status, "owner": o.owner,
        })).collect::<Vec<_>>(),
        "regime": regime,
        "strategies": strategies,
        "rangers": rangers,
        "grid": grid,
        "capacity": capacity,
        "self_healing": healing,
        "funding": funding,
        "time_ms": s.time_ms,
    })
}

/// The funding block as JSON (`herdctl funding status -o json` and the
/// `funding` key of `herdctl status -o json`).
pub fn funding_json(f: &epb::FundingStatus) -> Value {
    json!({
        "enabled": f.enabled,
        "running": f.running,
        "mode": f.mode,
        "opening_paused": f.opening_paused,
        "pause_reason": f.pause_reason,
        "margin_ratio": f.margin_ratio,
        "margin_band": f.margin_band,
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
        "limits": f.limits.as_ref().map(funding_limits_json),
        "cycles": f.cycles.as_ref().map(|c| json!({
            "run": c.run, "skipped": c.skipped, "failed": c.failed,
            "last_started_ms": c.last_started_ms, "last_duration_ms": c.last_duration_ms,
            "last_errors": c.last_errors,
        })),
    })
}

pub fn funding_limits_json(l: &epb::FundingRiskLimits) -> Value {
    json!({
        "max_position_usd": l.max_position_usd,
        "max_positions": l.max_positions,
        "max_total_exposure_usd": l.max_total_exposure_usd,
        "min_rate": l.min_rate,
        "exit_rate": l.exit_rate,
        "margin_alert": l.margin_alert,
        "margin_critical": l.margin_critical,
    })
}

pub fn funding_limits_table(l: &epb::FundingRiskLimits) -> String {
    table(
        &[
            "max position usd",
            "max positions",
            "max exposure usd",
            "min rate",
            "exit rate",
            "margin alert",
            "margin critical",
        ],
        &[vec![
            l.max_position_usd.clone(),
            l.max_positions.to_string(),
            l.max_total_exposure_usd.clone(),
            l.min_rate.clone(),
            l.exit_rate.clone(),
            l.margin_alert.clone(),
            l.margin_critical.clone(),
        ]],
    )
}

/// `herdctl funding status`: summary line, positions, portfolio, ranking,
/// emergency and limits.
pub fn funding_table(f: &epb::FundingStatus) -> String {
    if !f.enabled {
        return "funding: disabled on this engine ([funding] enabled = false)\n".into();
    }
    let p = f.portfolio.clone().unwrap_or_default();
    let c = f.cycles.clone().unwrap_or_default();
    let e = f.emergency.clone().unwrap_or_default();
    let mut out = format!(
        "funding ({}, {}): opening {}; margin {} ({}); shutdown policy {}\n",
        f.mode,
        if f.running { "running" } else { "stopped" },
        if f.opening_paused {
            format!("PAUSED ({})", f.pause_reason)
        } else {
            "on".to_string()
        },
        if f.margin_ratio.is_empty() {
            "-"
        } else {
            &f.margin_ratio
        },
        f.margin_band,
        f.shutdown_policy,
    );
    out.push_str(&format!(
        "cycles: {} run, {} skipped, {} failed, last {} ms every {} s{}\n",
        c.run,
        c.skipped,
        c.failed,
        c.last_duration_ms,
        c.interval_sec,
        if c.last_errors.is_empty() {
            String::new()
        } else {
            format!("; last errors: {}", c.last_errors.join("; "))
        },
    ));
    if e.triggered {
        out.push_str(&format!(
            "EMERGENCY STOP: {} ({}){}\n",
            e.reason,
            if e.done { "done" } else { "closing" },
            if e.failures.is_empty() {
                String::new()
            } else {
                format!("; NOT CLOSED: {}", e.failures.join("; "))
            },
        ));
    }
    if !f.reconcile_mismatches.is_empty() {
        out.push_str(&format!(
            "MISMATCH: {}\n",
            f.reconcile_mismatches.join("; ")
        ));
    }
    out.push_str(&table(
        &[
            "open",
            "closed",
            "exposure usd",
            "funding",
            "fees",
            "unrealized",
            "realized",
            "net",
        ],
        &[vec![
            p.open_positions.to_string(),
            p.closed_positions.to_string(),
            p.exposure_usd.clone(),
            p.total_funding.clone(),
            p.total_fees.clone(),
            p.unrealized.clone(),
            p.realized.clone(),
            p.net_pnl.clone(),
        ]],
    ));
    let rows: Vec<Vec<String>> = f
        .positions
        .iter()
        .map(|x| {
            vec![
                x.symbol.clone(),
                x.state.clone(),
                x.spot_qty.clone(),
                x.perp_qty.clone(),
                x.spot_entry.clone(),
                x.perp_entry.clone(),
                x.funding_payments.to_string(),
                x.funding_collected.clone(),
                x.fees.clone(),
                x.unrealized.clone(),
                x.net.clone(),
                x.last_error.clone(),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "perp",
            "state",
            "spot qty",
            "perp qty",
            "spot entry",
            "perp entry",
            "payments",
            "funding",
            "fees",
            "unrealized",
            "net",
            "note",
        ],
        &rows,
    ));
    let rows: Vec<Vec<String>> = f
        .ranking
        .iter()
        .map(|o| {
            vec![
                o.symbol.clone(),
                o.rate.clone(),
                format!("{} h", o.interval_hours),
                o.net_per_period.clone(),
                o.annualized.clone(),
                o.turnover_24h_usd.clone(),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "ranked",
            "rate",
            "interval",
            "net/period",
            "annualized",
            "turnover 24h usd",
        ],
        &rows,
    ));
    if let Some(l) = &f.limits {
        out.push_str(&funding_limits_table(l));
    }
    out
}

/// One engine's status as a readable screen.
pub fn status_table(s: &epb::EngineStatus) -> String {
    let mut out = String::new();
    let regime = s
        .regime
        .as_ref()
        .map(|r| {
            if r.ready {
                format!(
                    "{} ({}, confidence {:.2})",
                    r.regime, r.agreement, r.confidence
                )
            } else {
                "not ready".to_string()
            }
        })
        .unwrap_or_else(|| "-".into());
    let rows = vec![
        vec!["engine".into(), s.engine_id.clone()],
        vec![
            "mode".into(),
            if s.pause_reason.is_empty() {
                mode_name(s.mode)
            } else {
                format!("{} ({})", mode_name(s.mode), s.pause_reason)
            },
        ],
        vec![
            "gateway".into(),
            if s.gateway_connected {
                format!(
                    "connected (incarnation {}, seq {})",
                    s.gateway_incarnation, s.last_event_sequence
                )
            } else {
                "DISCONNECTED".into()
            },
        ],
        vec![
            "price".into(),
            if s.price.is_empty() {
                "-".into()
            } else {
                format!("{} ({} ms old)", s.price, s.price_age_ms)
            },
        ],
        vec!["regime".into(), regime],
        vec!["open orders".into(), s.open_orders.len().to_string()],
        vec!["fills journaled".into(), s.fills_journaled.to_string()],
        vec![
            "venue errors in a row".into(),
            s.consecutive_venue_errors.to_string(),
        ],
    ];
    out.push_str(&table(&["field", "value"], &rows));
    if !s.open_orders.is_empty() {
        out.push('\n');
        let rows: Vec<Vec<String>> = s
            .open_orders
            .iter()
            .map(|o| {
                vec![
                    o.client_order_id.clone(),
                    o.owner.clone(),
                    o.side.clone(),
                    o.price.clone(),
                    format!("{}/{}", o.volume_executed, o.volume),
                    o.status.clone(),
                ]
            })
            .collect();
        out.push_str(&table(
            &["order", "owner", "side", "price", "filled", "status"],
            &rows,
        ));
    }
    if !s.strategies.is_empty() {
        out.push('\n');
        let rows: Vec<Vec<String>> = s
            .strategies
            .iter()
            .map(|st| {
                vec![
                    st.name.clone(),
                    st.state.clone(),
                    summarize_detail(&st.detail_json),
                ]
            })
            .collect();
        out.push_str(&table(&["strategy", "state", "summary"], &rows));
    }
    if let Some(r) = s.rangers.as_ref().filter(|r| r.enabled || r.active > 0) {
        out.push('\n');
        out.push_str(&format!(
            "rangers: {} active, regime {}; today {} cycles, profit {}, {} orphans (exposure {})\n",
            r.active,
            if r.regime_ok { "ok" } else { "not RANGING" },
            r.cycles_today,
            r.profit_today,
            r.orphans_today,
            r.orphan_exposure_usd
        ));
        let rows: Vec<Vec<String>> = r
            .slots
            .iter()
            .map(|x| {
                vec![
                    x.ranger_id.to_string(),
                    x.stage.clone(),
                    x.entry_price.clone(),
                    x.exit_price.clone(),
                    x.entry_volume.clone(),
                    format!("{:.0}", x.age_sec),
                    x.last_error.clone(),
                ]
            })
            .collect();
        out.push_str(&table(
            &[
                "ranger",
                "stage",
                "entry",
                "exit",
                "volume",
                "age s",
                "last error",
            ],
            &rows,
        ));
    }
    if let Some(f) = s.funding.as_ref().filter(|f| f.enabled) {
        let p = f.portfolio.clone().unwrap_or_default();
        let c = f.cycles.clone().unwrap_or_default();
        out.push('\n');
        out.push_str(&format!(
            "funding ({}): {} open, funding {}, fees {}, net {}; margin {} ({}); cycles {} run, {} skipped, {} failed{}{}\n",
            f.mode,
            p.open_positions,
            p.total_funding,
            p.total_fees,
            p.net_pnl,
            f.margin_ratio,
            f.margin_band,
            c.run,
            c.skipped,
            c.failed,
            if f.opening_paused {
                format!("; opening paused: {}", f.pause_reason)
            } else {
                String::new()
            },
            if f.reconcile_mismatches.is_empty() {
                String::new()
            } else {
                format!("; MISMATCH: {}", f.reconcile_mismatches.join("; "))
            },
        ));
        let rows: Vec<Vec<String>> = f
            .positions
            .iter()
            .map(|x| {
                vec![
                    x.symbol.clone(),
                    x.state.clone(),
                    x.perp_qty.clone(),
                    x.spot_entry.clone(),
                    x.perp_entry.clone(),
                    x.funding_collected.clone(),
                    x.fees.clone(),
                    x.net.clone(),
                ]
            })
            .collect();
        out.push_str(&table(
            &[
                "perp",
                "state",
                "qty",
                "spot entry",
                "perp entry",
                "funding",
                "fees",
                "net",
            ],
            &rows,
        ));
        let rows: Vec<Vec<String>> = f
            .ranking
            .iter()
            .map(|o| {
                vec![
                    o.symbol.clone(),
                    o.rate.clone(),
                    format!("{} h", o.interval_hours),
                    o.annualized.clone(),
                ]
            })
            .collect();
        out.push_str(&table(&["ranked", "rate", "interval", "annualized"], &rows));
    }
    if let Some(g) = s
        .grid
        .as_ref()
        .filter(|g| g.enabled || g.open_positions > 0)
    {
        out.push('\n');
        out.push_str(&format!(
            "grid: {} slots ({}), profit {}, settled {}, {} orphans; today {}{}{}\n",
            g.slot_count,
            g.mode,
            g.total_profit,
            g.total_settled_usd,
            g.total_orphans,
            g.realized_today,
            if g.daily_loss_lock {
                "; DAILY LOSS LOCK"
            } else {
                ""
            },
            if g.paused_by_venue_errors {
                "; PAUSED: venue errors"
            } else {
                ""
            }
        ));
        let rows: Vec<Vec<String>> = g
            .slots
            .iter()
            .map(|x| {
                vec![
                    x.id.to_string(),
                    if x.halted.is_empty() {
                        x.phase.clone()
                    } else {
                        format!("HALTED: {}", x.halted)
                    },
                    format!("{}/{}", x.cycles_a, x.cycles_b),
                    x.profit.clone(),
                    x.open_orders.len().to_string(),
                    x.recovery_orders.len().to_string(),
                    x.last_error.clone(),
                ]
            })
            .collect();
        out.push_str(&table(
            &[
                "slot",
                "phase",
                "cycles a/b",
                "profit",
                "orders",
                "recovery",
                "last error",
            ],
            &rows,
        ));
    }
    if let Some(h) = s.self_healing.as_ref() {
        let b = h.bands.unwrap_or_default();
        let c = h.churner.clone().unwrap_or_default();
        if !h.positions.is_empty() || c.active > 0 {
            out.push_str(&format!(
                "ledger: {} open positions (fresh {}, aging {}, stale {}, stuck {}, write-off {}); churners {}/{} active, {} cycles, profit {}\n",
                h.positions.len(),
                b.fresh,
                b.aging,
                b.stale,
                b.stuck,
                b.write_off,
                c.active,
                c.max,
                c.cycles_total,
                c.profit_total
            ));
        }
    }
    out
}

/// The top-level scalar fields of a strategy's status block, `k=v` joined.
fn summarize_detail(detail: &str) -> String {
    let Ok(Value::Object(map)) = serde_json::from_str::<Value>(detail) else {
        return String::new();
    };
    map.iter()
        .filter(|(_, v)| !v.is_object() && !v.is_array())
        .map(|(k, v)| {
            format!(
                "{k}={}",
                v.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string())
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn budget_json(b: &gpb::GetBudgetResponse) -> Value {
    json!({
        "venue": b.venue,
        "counters": b.counters.iter().map(|c| json!({
            "name": c.name, "level": c.level, "limit": c.limit, "decay_per_second": c.decay_per_second,
        })).collect::<Vec<_>>(),
        "waiting": {"cancels": b.waiting_cancels, "places": b.waiting_places, "queries": b.waiting_queries},
        "spend": b.spend.iter().map(|s| json!({"engine_id": s.engine_id, "calls": s.calls})).collect::<Vec<_>>(),
        "locked_until_ms": b.locked_until_ms,
    })
}

pub fn budget_table(b: &gpb::GetBudgetResponse) -> String {
    let mut out = format!(
        "venue {}  waiting: cancels {} places {} queries {}{}\n\n",
        b.venue,
        b.waiting_cancels,
        b.waiting_places,
        b.waiting_queries,
        if b.locked_until_ms > 0 {
            format!("  LOCKED OUT until {}", b.locked_until_ms)
        } else {
            String::new()
        }
    );
    let rows: Vec<Vec<String>> = b
        .counters
        .iter()
        .map(|c| {
            vec![
                c.name.clone(),
                c.level.clone(),
                c.limit.clone(),
                c.decay_per_second.clone(),
            ]
        })
        .collect();
    out.push_str(&table(&["counter", "level", "limit", "decay/s"], &rows));
    out.push('\n');
    let rows: Vec<Vec<String>> = b
        .spend
        .iter()
        .map(|s| vec![s.engine_id.clone(), s.calls.to_string()])
        .collect();
    out.push_str(&table(&["engine", "calls"], &rows));
    out
}

pub fn engines_json(l: &gpb::ListEnginesResponse) -> Value {
    json!(
        l.engines
            .iter()
            .map(|e| json!({
                "engine_id": e.engine_id, "stream_connected": e.stream_connected,
                "last_sequence": e.last_sequence, "open_orders": e.open_orders, "calls": e.calls,
            }))
            .collect::<Vec<_>>()
    )
}

pub fn engines_table(l: &gpb::ListEnginesResponse) -> String {
    let rows: Vec<Vec<String>> = l
        .engines
        .iter()
        .map(|e| {
            vec![
                e.engine_id.clone(),
                if e.stream_connected { "connected" } else { "-" }.into(),
                e.last_sequence.to_string(),
                e.open_orders.to_string(),
                e.calls.to_string(),
            ]
        })
        .collect();
    table(
        &["engine", "stream", "last seq", "open orders", "calls"],
        &rows,
    )
}

/// `herdctl regime`: fit on a CSV and print one row per candle after warm-up.
pub fn regime(path: &Path, timeframe: &str, json_out: bool) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    let candles = herd_regime::parse_candles_csv(&text)?;
    let cfg = match timeframe {
        "1m" => herd_regime::TimeframeConfig::one_minute(),
        "15m" => herd_regime::TimeframeConfig::fifteen_minutes(),
        "1h" => herd_regime::TimeframeConfig::one_hour(),
        other => anyhow::bail!("--timeframe {other:?}: use 1m, 15m or 1h"),
    };
    let run = herd_regime::analyze_candles(&candles, &cfg)?;
    if json_out {
        println!("{}", serde_json::to_string_pretty(&run)?);
        return Ok(());
    }
    println!("time,p_bearish,p_ranging,p_bullish,regime,confidence,bias");
    for r in &run.rows {
        let s = &r.summary;
        println!(
            "{},{:.6},{:.6},{:.6},{},{:.6},{:.6}",
            r.open_time_ms,
            s.probs.bearish,
            s.probs.ranging,
            s.probs.bullish,
            s.regime.as_str(),
            s.confidence,
            s.bias
        );
    }
    Ok(())
}
