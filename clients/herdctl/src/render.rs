//! Human tables and JSON for what herdctl prints.

use std::path::Path;

use comfy_table::{CellAlignment, Table, TableComponent, presets};
use herd_proto::engine as epb;
use herd_proto::gateway as gpb;
use serde_json::{Value, json};

/// A table in the style of psql: a `-` rule under the header, ` | ` between
/// columns, no outer border, no colours. A column whose every cell is a
/// number (or `-`, or empty) is right-aligned, header included. Rows may be
/// shorter than the header.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut t = Table::new();
    t.load_preset(presets::NOTHING)
        .set_style(TableComponent::VerticalLines, '|')
        .set_style(TableComponent::HeaderLines, '-')
        .set_style(TableComponent::MiddleHeaderIntersections, '+')
        .set_header(headers.iter().copied())
        .add_rows(rows.iter().map(|r| r.iter().map(String::as_str)));
    let last = t.column_count().saturating_sub(1);
    for (i, column) in t.column_iter_mut().enumerate() {
        // No indent before the first column, nothing after the last.
        column.set_padding((u16::from(i > 0), u16::from(i < last)));
        let cells = || rows.iter().filter_map(|r| r.get(i));
        if cells().any(|c| is_number(c))
            && cells().all(|c| c.is_empty() || c == "-" || is_number(c))
        {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
    let mut out = t.trim_fmt();
    out.push('\n');
    out
}

/// A plain number as herd prints them: integers and decimals, signed.
fn is_number(s: &str) -> bool {
    let digits = s.strip_prefix('-').unwrap_or(s);
    let mut parts = digits.splitn(2, '.');
    let int = parts.next().unwrap_or_default();
    let frac = parts.next();
    !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.is_none_or(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()))
}

fn mode_name(m: i32) -> &'static str {
    herd_proto::json::mode_name(m)
}

/// JSON for an engine status: exactly the dashboard's `/api/status` view
/// (serde on GetStatus's message, embedded detail JSON parsed).
pub use herd_engine::dashboard::status_json;

/// JSON for the funding block or its limits: serde on the message.
pub use herd_engine::dashboard::to_json;

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
/// A reconcile's differences (kind, order, owner, what each side says, the
/// action and, once applied, its outcome) and its summary line.
pub fn reconcile_table(r: &epb::ReconcileResponse) -> String {
    let mut out = String::new();
    let dry_run = r.summary.as_ref().is_some_and(|s| s.dry_run);
    if r.differences.is_empty() {
        out.push_str("no differences: the journal and the gateway agree\n");
        return out;
    }
    let mut headers = vec!["kind", "order", "owner", "detail", "action"];
    if !dry_run {
        headers.push("outcome");
    }
    let rows: Vec<Vec<String>> = r
        .differences
        .iter()
        .map(|d| {
            let mut row = vec![
                d.kind.clone(),
                d.client_order_id.clone(),
                if d.owner.is_empty() {
                    "-".into()
                } else {
                    d.owner.clone()
                },
                d.detail.clone(),
                d.action.clone(),
            ];
            if !dry_run {
                row.push(d.outcome.clone());
            }
            row
        })
        .collect();
    out.push_str(&table(&headers, &rows));
    if let Some(s) = &r.summary {
        out.push_str(&format!(
            "{} difference(s){}\n",
            r.differences.len(),
            if dry_run {
                " (dry run: nothing changed)".to_string()
            } else {
                format!("; {} applied, {} failed", s.applied, s.failed)
            }
        ));
    }
    out
}

/// "start 12:00:01Z: lost 3, missing_fill 1" (or "none yet").
fn reconcile_summary(s: Option<&epb::ReconcileSummary>) -> String {
    let Some(s) = s else {
        return "none yet".into();
    };
    let counts = if s.counts.is_empty() {
        "no differences".to_string()
    } else {
        s.counts
            .iter()
            .map(|c| format!("{} {}", c.kind, c.count))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "{} at {} ms: {counts}; {} applied, {} failed",
        s.trigger, s.time_ms, s.applied, s.failed
    )
}

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
                mode_name(s.mode).to_string()
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
            "last reconcile".into(),
            reconcile_summary(s.last_reconcile.as_ref()),
        ],
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

pub fn key_json(k: &gpb::GetKeyInfoResponse) -> Value {
    json!({
        "known": k.known, "name": k.name, "permissions": k.permissions,
        "withdraw_permission": k.withdraw_permission, "read_only": k.read_only,
        "lacking": k.lacking, "ip_allowlist": k.ip_allowlist,
        "expires_at_ms": k.expires_at_ms, "checked_at_ms": k.checked_at_ms,
        "warnings": k.warnings, "clock_offset_ms": k.clock_offset_ms,
        "clock_limit_ms": k.clock_limit_ms, "clock_checked_at_ms": k.clock_checked_at_ms,
    })
}

/// `herdctl key`: one row per fact, then the warnings.
pub fn key_table(k: &gpb::GetKeyInfoResponse) -> String {
    if !k.known {
        return "the gateway's venue has no API key (paper)\n".into();
    }
    let or_none = |v: &[String]| {
        if v.is_empty() {
            "-".to_string()
        } else {
            v.join(", ")
        }
    };
    let rows = vec![
        vec!["name".to_string(), k.name.clone()],
        vec!["permissions".into(), or_none(&k.permissions)],
        vec![
            "can withdraw".into(),
            if k.withdraw_permission.is_empty() {
                "no".into()
            } else {
                format!("YES ({})", k.withdraw_permission)
            },
        ],
        vec![
            "read-only".into(),
            if k.read_only { "YES" } else { "no" }.into(),
        ],
        vec!["lacking".into(), or_none(&k.lacking)],
        vec!["IP allowlist".into(), or_none(&k.ip_allowlist)],
        vec![
            "expires".into(),
            if k.expires_at_ms == 0 {
                "never".into()
            } else {
                format!("{} (unix ms)", k.expires_at_ms)
            },
        ],
        vec![
            "venue clock offset".into(),
            if k.clock_checked_at_ms == 0 {
                "-".into()
            } else {
                format!("{} ms", k.clock_offset_ms)
            },
        ],
    ];
    let mut out = table(&["key", "value"], &rows);
    for w in &k.warnings {
        out.push_str(&format!("warning: {w}\n"));
    }
    out
}

/// A trading state in words.
pub fn trading_state(v: i32) -> &'static str {
    match gpb::TradingState::try_from(v) {
        Ok(gpb::TradingState::Active) => "ACTIVE",
        Ok(gpb::TradingState::Reducing) => "REDUCING",
        Ok(gpb::TradingState::Halted) => "HALTED",
        _ => "?",
    }
}

fn or_dash(s: &str) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s.to_string()
    }
}

fn opt(v: Option<impl ToString>) -> String {
    v.map_or_else(|| "-".into(), |n| n.to_string())
}

/// `herdctl risk status`: one row per engine, the account first.
pub fn risk_table(r: &gpb::GetRiskStateResponse) -> String {
    let rows: Vec<Vec<String>> = r
        .account
        .iter()
        .chain(&r.engines)
        .map(|b| {
            let l = b.limits.clone().unwrap_or_default();
            let denials: u64 = b.denials.values().sum();
            vec![
                if b.engine_id.is_empty() {
                    "(account)".into()
                } else {
                    b.engine_id.clone()
                },
                trading_state(b.state).into(),
                format!("{}/{}", b.open_orders, opt(l.max_open_orders)),
                format!("{}/{}", b.gross_exposure, or_dash(&l.max_gross_exposure)),
                format!("{}/-{}", b.realized_pnl_today, or_dash(&l.max_daily_loss)),
                b.pnl_today.clone(),
                format!("{}/{}", b.orders_in_window, opt(l.max_orders_per_window)),
                denials.to_string(),
                or_dash(&b.last_breach_code),
            ]
        })
        .collect();
    table(
        &[
            "book",
            "state",
            "open/max",
            "gross/max",
            "realized/max loss",
            "pnl today",
            "rate/max",
            "denials",
            "last breach",
        ],
        &rows,
    )
}

/// `herdctl risk status -o json`.
pub fn risk_json(r: &gpb::GetRiskStateResponse) -> Value {
    let book = |b: &gpb::RiskBook| {
        let l = b.limits.clone().unwrap_or_default();
        json!({
            "engine_id": b.engine_id,
            "state": trading_state(b.state),
            "limits": limits_json(&l),
            "open_orders": b.open_orders,
            "gross_exposure": b.gross_exposure,
            "realized_pnl_today": b.realized_pnl_today,
            "pnl_today": b.pnl_today,
            "peak_pnl_today": b.peak_pnl_today,
            "orders_in_window": b.orders_in_window,
            "positions": b.positions.iter().map(|p| json!({
                "symbol": p.symbol, "net": p.net, "average_cost": p.average_cost,
            })).collect::<Vec<_>>(),
            "last_breach": {
                "code": b.last_breach_code,
                "message": b.last_breach_message,
                "at_ms": b.last_breach_ms,
            },
            "denials": b.denials,
        })
    };
    json!({
        "account": r.account.as_ref().map(book),
        "engines": r.engines.iter().map(book).collect::<Vec<_>>(),
    })
}

fn limits_json(l: &gpb::RiskLimits) -> Value {
    json!({
        "max_order_notional": l.max_order_notional,
        "max_order_volume": l.max_order_volume,
        "price_band_pct": l.price_band_pct,
        "max_open_orders": l.max_open_orders,
        "max_open_orders_per_instrument": l.max_open_orders_per_instrument,
        "max_exposure_per_instrument": l.max_exposure_per_instrument,
        "max_gross_exposure": l.max_gross_exposure,
        "max_orders_per_window": l.max_orders_per_window,
        "order_window_ms": l.order_window_ms,
        "max_daily_loss": l.max_daily_loss,
        "max_drawdown": l.max_drawdown,
        "actions": l.actions,
    })
}

/// `herdctl risk set`: the limits after the change.
pub fn limits_table(l: &gpb::RiskLimits) -> String {
    let mut actions: Vec<(&String, &String)> = l.actions.iter().collect();
    actions.sort();
    let mut rows = vec![
        vec!["max_order_notional".into(), or_dash(&l.max_order_notional)],
        vec!["max_order_volume".into(), or_dash(&l.max_order_volume)],
        vec!["price_band_pct".into(), or_dash(&l.price_band_pct)],
        vec!["max_open_orders".into(), opt(l.max_open_orders)],
        vec![
            "max_open_orders_per_instrument".into(),
            opt(l.max_open_orders_per_instrument),
        ],
        vec![
            "max_exposure_per_instrument".into(),
            or_dash(&l.max_exposure_per_instrument),
        ],
        vec!["max_gross_exposure".into(), or_dash(&l.max_gross_exposure)],
        vec!["max_orders_per_window".into(), opt(l.max_orders_per_window)],
        vec!["order_window_ms".into(), opt(l.order_window_ms)],
        vec!["max_daily_loss".into(), or_dash(&l.max_daily_loss)],
        vec!["max_drawdown".into(), or_dash(&l.max_drawdown)],
    ];
    rows.extend(
        actions
            .into_iter()
            .map(|(c, a)| vec![format!("action {c}"), a.clone()]),
    );
    table(&["limit", "value"], &rows)
}

/// `herdctl risk audit`.
pub fn audit_table(r: &gpb::ListRiskAuditResponse) -> String {
    let rows: Vec<Vec<String>> = r
        .entries
        .iter()
        .map(|a| {
            vec![
                a.at_ms.to_string(),
                a.actor.clone(),
                a.kind.clone(),
                if a.engine_id.is_empty() {
                    "(account)".into()
                } else {
                    a.engine_id.clone()
                },
                or_dash(&a.before),
                or_dash(&a.after),
                or_dash(&a.reason),
            ]
        })
        .collect();
    table(
        &[
            "at_ms", "actor", "kind", "book", "before", "after", "reason",
        ],
        &rows,
    )
}

/// `herdctl risk audit -o json`.
pub fn audit_json(r: &gpb::ListRiskAuditResponse) -> Value {
    Value::Array(
        r.entries
            .iter()
            .map(|a| {
                json!({
                    "at_ms": a.at_ms, "actor": a.actor, "kind": a.kind,
                    "engine_id": a.engine_id, "before": a.before, "after": a.after,
                    "reason": a.reason,
                })
            })
            .collect(),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(cells: &[&[&str]]) -> Vec<Vec<String>> {
        cells
            .iter()
            .map(|r| r.iter().map(|c| c.to_string()).collect())
            .collect()
    }

    #[test]
    fn columns_align_and_numbers_go_right() {
        let got = table(
            &["engine", "stream", "calls"],
            &rows(&[&["e0", "connected", "7"], &["engine-10", "-", "1234"]]),
        );
        let want = "\
engine    | stream    | calls
----------+-----------+------
e0        | connected |     7
engine-10 | -         |  1234
";
        assert_eq!(got, want);
    }

    #[test]
    fn short_rows_and_empty_tables_render() {
        let got = table(
            &["engine", "control", "mode"],
            &rows(&[&["e0", "unreachable: connection refused"]]),
        );
        let want = "\
engine | control                         | mode
-------+---------------------------------+-----
e0     | unreachable: connection refused |
";
        assert_eq!(got, want);
        assert_eq!(table(&["a", "b"], &[]), "a | b\n--+--\n");
    }

    #[test]
    fn numbers_are_plain_integers_and_decimals() {
        let cases = [
            ("0", true),
            ("-12.50", true),
            ("1234", true),
            ("0.099", true),
            ("", false),
            ("-", false),
            ("1.", false),
            (".5", false),
            ("1e5", false),
            ("3/100", false),
            ("8 h", false),
            ("NaN", false),
        ];
        for (s, want) in cases {
            assert_eq!(is_number(s), want, "{s:?}");
        }
    }

    #[test]
    fn a_status_carrying_a_70000_char_string_renders() {
        let long = "r".repeat(70_000);
        let s = epb::EngineStatus {
            engine_id: "e0".into(),
            mode: epb::Mode::Paused as i32,
            pause_reason: long,
            ..Default::default()
        };
        let got = status_table(&s);
        assert!(got.contains("e0"), "{}", &got[..got.len().min(200)]);
        assert!(got.matches('r').count() >= 70_000, "the reason is shown");
    }

    #[test]
    fn a_70000_char_cell_renders_without_panicking() {
        let long = "x".repeat(70_000);
        let got = table(&["order", "last error"], &rows(&[&["o1", &long]]));
        assert!(got.starts_with("order | last error"), "{}", &got[..40]);
        assert!(got.lines().all(|l| !l.ends_with(' ')));
        assert_eq!(got.matches('x').count(), 70_000, "every char is kept");
        // comfy-table's widths are u16: past 65,535 columns the cell goes on
        // on a continuation line.
        assert_eq!(got.lines().count(), 4, "{}", got.len());
    }
}
