//! The herd at a glance on the gateway's admin port: the dashboard (`/`,
//! `/herd.js`, `/herd.css`: a self-contained page under a strict
//! Content-Security-Policy, nothing from elsewhere, read-only) and the data
//! it and operators read: `/api/herd` (engines, budget, equity series,
//! recent fills), `/api/fills.csv` and `/api/pnl`.
//!
//! The data routes carry fills and PnL, so when the gateway has an
//! `admin_token` they need it (`Authorization: Bearer <token>`; the page
//! takes it from its URL fragment, `/#token=...`, which never reaches the
//! server in a request line or a log). The page itself and its assets need
//! no token: they hold no data.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use herd_proto::gateway as pb;
use serde_json::{Value, json};

use crate::fills::FillFilter;
use crate::ledger_api;
use crate::service::Core;

/// The page and its assets, as served.
pub const PAGE: &str = include_str!("../assets/herd.html");
pub const SCRIPT: &str = include_str!("../assets/herd.js");
pub const STYLE: &str = include_str!("../assets/herd.css");

/// The page's policy: its own script, style and API, nothing else.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

/// What the herd routes need besides the core.
#[derive(Clone)]
pub struct HerdState {
    pub core: Arc<Core>,
    /// The admin token's bytes, when one is configured.
    admin_token: Option<Arc<Vec<u8>>>,
    /// Engine weights from the config, by id.
    weights: Arc<BTreeMap<String, u32>>,
    /// Engine dashboards' URLs from the config (links on the page), by id.
    links: Arc<BTreeMap<String, String>>,
}

impl std::fmt::Debug for HerdState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HerdState")
            .field(
                "admin_token",
                &self.admin_token.as_ref().map(|_| "REDACTED"),
            )
            .field("weights", &self.weights)
            .finish_non_exhaustive()
    }
}

impl HerdState {
    pub fn new(core: Arc<Core>, cfg: &crate::config::GatewayConfig) -> HerdState {
        HerdState {
            core,
            admin_token: cfg
                .admin_token
                .as_ref()
                .map(|t| t.expose())
                .filter(|t| !t.is_empty())
                .map(|t| Arc::new(t.as_bytes().to_vec())),
            weights: Arc::new(
                cfg.engines
                    .iter()
                    .map(|e| (e.id.clone(), e.weight))
                    .collect(),
            ),
            links: Arc::new(cfg.dashboard.engine_urls.clone()),
        }
    }

    /// None when the request may read data; else the answer to send.
    fn refuse(&self, headers: &HeaderMap) -> Option<Response> {
        let want = self.admin_token.as_ref()?;
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| {
                s.strip_prefix("Bearer ")
                    .or_else(|| s.strip_prefix("bearer "))
            });
        match given {
            Some(t) if herd_proto::auth::token_matches(want, t.as_bytes()) => None,
            Some(_) => Some(error(StatusCode::FORBIDDEN, "unknown token")),
            None => Some(error(
                StatusCode::UNAUTHORIZED,
                "this needs the admin token: Authorization: Bearer <admin_token>",
            )),
        }
    }
}

fn error(code: StatusCode, msg: &str) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        json!({ "error": msg }).to_string(),
    )
        .into_response()
}

fn status_error(s: &tonic::Status) -> Response {
    let code = match s.code() {
        tonic::Code::InvalidArgument => StatusCode::BAD_REQUEST,
        tonic::Code::FailedPrecondition => StatusCode::CONFLICT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(code, s.message())
}

/// The herd routes.
pub fn routes(state: HerdState) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/index.html", get(page))
        .route("/herd.js", get(script))
        .route("/herd.css", get(style))
        // Browsers ask for it; an empty answer keeps a 404 out of the console.
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .route("/api/herd", get(api_herd))
        .route("/api/fills.csv", get(api_fills_csv))
        .route("/api/fills.json", get(api_fills_json))
        .route("/api/pnl", get(api_pnl))
        .with_state(state)
}

fn asset(kind: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

async fn page() -> Response {
    asset("text/html; charset=utf-8", PAGE)
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

/// Query parameters of the fills exports. Times are Unix ms or UTC dates
/// (`2026-12-05`, `2026-12-05T12:00:00Z`).
#[derive(Debug, Default)]
pub struct FillsQuery {
    engine: Option<String>,
    strategy: Option<String>,
    symbol: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<u32>,
}

/// A query string as (key, value) pairs; a key not in `known` is an error
/// naming it.
fn query_pairs(raw: Option<&str>, known: &[&str]) -> Result<Vec<(String, String)>, String> {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(raw.unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if let Some((k, _)) = pairs.iter().find(|(k, _)| !known.contains(&k.as_str())) {
        return Err(format!(
            "{k}: unknown parameter; known are {}",
            known.join(", ")
        ));
    }
    Ok(pairs)
}

fn take(pairs: &[(String, String)], key: &str) -> Option<String> {
    pairs
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
        .filter(|v| !v.is_empty())
}

impl FillsQuery {
    fn parse(raw: Option<&str>) -> Result<FillsQuery, String> {
        let p = query_pairs(
            raw,
            &["engine", "strategy", "symbol", "from", "to", "limit"],
        )?;
        Ok(FillsQuery {
            engine: take(&p, "engine"),
            strategy: take(&p, "strategy"),
            symbol: take(&p, "symbol"),
            from: take(&p, "from"),
            to: take(&p, "to"),
            limit: take(&p, "limit")
                .map(|v| {
                    v.parse()
                        .map_err(|_| format!("limit: {v:?} is not a count"))
                })
                .transpose()?,
        })
    }
}

/// A time parameter: Unix ms or a UTC date/time.
pub fn parse_time(field: &str, s: &str) -> Result<i64, String> {
    let s = s.trim();
    if let Ok(ms) = s.parse::<i64>() {
        return if ms < 0 {
            Err(format!("{field}: {ms} is negative"))
        } else {
            Ok(ms)
        };
    }
    herd_venue::calendar::parse_utc(s).ok_or_else(|| {
        format!("{field}: {s:?} is neither Unix ms nor a UTC date like 2026-12-05 or 2026-12-05T12:00:00Z")
    })
}

fn fills_request(q: &FillsQuery) -> Result<pb::ListFillsRequest, String> {
    Ok(pb::ListFillsRequest {
        engine_id: q.engine.clone().unwrap_or_default(),
        strategy: q.strategy.clone().unwrap_or_default(),
        symbol: q.symbol.clone().unwrap_or_default(),
        from_ms: q
            .from
            .as_deref()
            .map(|s| parse_time("from", s))
            .transpose()?
            .unwrap_or(0),
        to_ms: q
            .to
            .as_deref()
            .map(|s| parse_time("to", s))
            .transpose()?
            .unwrap_or(0),
        limit: q.limit.unwrap_or(0),
    })
}

async fn fills_of(
    st: &HerdState,
    headers: &HeaderMap,
    raw: Option<String>,
) -> Result<Vec<pb::Fill>, Response> {
    if let Some(r) = st.refuse(headers) {
        return Err(r);
    }
    let q = FillsQuery::parse(raw.as_deref()).map_err(|e| error(StatusCode::BAD_REQUEST, &e))?;
    let req = fills_request(&q).map_err(|e| error(StatusCode::BAD_REQUEST, &e))?;
    ledger_api::list_fills(&st.core, &req)
        .await
        .map(|r| r.fills)
        .map_err(|s| status_error(&s))
}

async fn api_fills_csv(
    State(st): State<HerdState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    match fills_of(&st, &headers, raw).await {
        Ok(fills) => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"fills.csv\"",
                ),
            ],
            ledger_api::fills_csv(&fills),
        )
            .into_response(),
        Err(r) => r,
    }
}

async fn api_fills_json(
    State(st): State<HerdState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    match fills_of(&st, &headers, raw).await {
        Ok(fills) => json_response(&Value::Array(fills.iter().map(fill_json).collect())),
        Err(r) => r,
    }
}

fn json_response(v: &Value) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], v.to_string()).into_response()
}

/// A fill as JSON (proto field names, decimals as strings).
pub fn fill_json(f: &pb::Fill) -> Value {
    json!({
        "trade_id": f.trade_id,
        "trade_id_derived": f.trade_id_derived,
        "time_ms": f.time_ms,
        "engine_id": f.engine_id,
        "strategy": f.strategy,
        "symbol": f.symbol,
        "side": f.side,
        "price": f.price,
        "volume": f.volume,
        "fee": f.fee,
        "fee_asset": f.fee_asset,
        "client_order_id": f.client_order_id,
        "venue_order_id": f.venue_order_id,
    })
}

/// A PnL row as JSON.
pub fn pnl_row_json(r: &pb::PnlRow) -> Value {
    json!({
        "key": r.key,
        "realized": r.realized,
        "fees": r.fees,
        "funding": r.funding,
        "unrealized": r.unrealized,
        "total": r.total,
        "volume": r.volume,
        "fills": r.fills,
    })
}

async fn api_pnl(
    State(st): State<HerdState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    if let Some(r) = st.refuse(&headers) {
        return r;
    }
    let p = match query_pairs(raw.as_deref(), &["by", "engine", "strategy", "symbol"]) {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e),
    };
    let by = take(&p, "by").unwrap_or_else(|| "engine".into());
    let by = by.as_str();
    let Some(grouping) = ledger_api::grouping_from_str(by) else {
        return error(
            StatusCode::BAD_REQUEST,
            &format!("by: {by:?} is not one of day, engine, strategy, instrument"),
        );
    };
    let req = pb::GetPnlRequest {
        by: grouping as i32,
        engine_id: take(&p, "engine").unwrap_or_default(),
        strategy: take(&p, "strategy").unwrap_or_default(),
        symbol: take(&p, "symbol").unwrap_or_default(),
    };
    match ledger_api::get_pnl(&st.core, &req).await {
        Ok(r) => json_response(&json!({
            "by": by,
            "rows": r.rows.iter().map(pnl_row_json).collect::<Vec<_>>(),
            "total": r.total.as_ref().map(pnl_row_json),
            "as_of_ms": r.as_of_ms,
        })),
        Err(s) => status_error(&s),
    }
}

async fn api_herd(State(st): State<HerdState>, headers: HeaderMap) -> Response {
    if let Some(r) = st.refuse(&headers) {
        return r;
    }
    match herd_json(&st).await {
        Ok(v) => json_response(&v),
        Err(s) => status_error(&s),
    }
}

/// Everything the dashboard shows, in one read.
pub async fn herd_json(st: &HerdState) -> Result<Value, tonic::Status> {
    let core = &st.core;
    let now = core.clock.now_ms();
    let ledger = core
        .ledger
        .as_deref()
        .ok_or_else(|| tonic::Status::failed_precondition("this gateway keeps no fills ledger"))?;
    let read = |e: anyhow::Error| tonic::Status::internal(format!("reading the fills ledger: {e}"));
    let fills = ledger.fills(&FillFilter::default()).await.map_err(read)?;
    let funding = ledger.funding().await.map_err(read)?;
    let ctx = ledger_api::context(core, &fills).await;
    let (by_engine, total, _) =
        crate::pnl::compute(&fills, &funding, &ctx, crate::pnl::Grouping::Engine);
    let today = crate::pnl::day_of(now);
    let today_start = herd_venue::calendar::parse_utc(&today).unwrap_or(0);
    let todays: Vec<_> = fills
        .iter()
        .filter(|f| f.time_ms >= today_start)
        .cloned()
        .collect();
    // Today's PnL: what today's fills realized against the positions
    // carried in (so the whole history is replayed, then yesterday's part
    // taken off), plus the unrealized part now.
    let (before_today, _, _) = crate::pnl::compute(
        &fills
            .iter()
            .filter(|f| f.time_ms < today_start)
            .cloned()
            .collect::<Vec<_>>(),
        &funding
            .iter()
            .filter(|p| p.time_ms < today_start)
            .cloned()
            .collect::<Vec<_>>(),
        &crate::pnl::Context {
            marks: Default::default(),
            ..ctx.clone()
        },
        crate::pnl::Grouping::Engine,
    );
    let earlier: BTreeMap<String, crate::pnl::Totals> = before_today.into_iter().collect();
    let totals: BTreeMap<String, crate::pnl::Totals> = by_engine.into_iter().collect();
    let equity = crate::pnl::equity(&fills, &funding, &ctx);
    let risk_state = |e: &str| {
        core.risk
            .state(Some(e))
            .map_or("ACTIVE", crate::risk::TradingState::as_str)
    };
    let engines: Vec<Value> = core
        .registry
        .engine_summaries()
        .into_iter()
        .map(|(id, streams, last_sequence, open_orders, calls)| {
            let t = totals.get(&id).cloned().unwrap_or_default();
            let e = earlier.get(&id).cloned().unwrap_or_default();
            let fills_today = todays.iter().filter(|f| f.engine == id).count();
            json!({
                "id": id,
                "connected": streams > 0,
                "mode": risk_state(&id),
                "weight": st.weights.get(&id).copied().unwrap_or(0),
                "open_orders": open_orders,
                "last_sequence": last_sequence,
                "last_event_ms": core.registry.last_event_ms(&id),
                "calls": calls,
                "venue_grants": core.fair.granted_to(&id),
                "queue_depth": core.fair.depth(&id),
                "fills_today": fills_today,
                "fills_total": t.fills,
                "pnl_today": crate::pnl::money(t.total() - e.realized),
                "pnl_total": crate::pnl::money(t.total()),
                "realized": crate::pnl::money(t.realized),
                "unrealized": crate::pnl::money(t.unrealized),
                "dashboard": st.links.get(&id),
            })
        })
        .collect();
    let b = core.venue.budget();
    let (wc, wp, wq) = core.fair.waiting();
    let series = |points: &[(i64, rust_decimal::Decimal)]| -> Value {
        Value::Array(
            points
                .iter()
                .map(|(t, v)| json!([t, crate::pnl::money(*v)]))
                .collect(),
        )
    };
    let recent: Vec<Value> = fills
        .iter()
        .rev()
        .take(50)
        .map(|f| fill_json(&ledger_api::fill_to_pb(f)))
        .collect();
    let events = recent_events(core).await;
    Ok(json!({
        "now_ms": now,
        "venue": core.venue.name(),
        "incarnation": core.registry.incarnation(),
        "engines": engines,
        "budget": {
            "counters": b.counters.iter().map(|c| json!({
                "name": c.name,
                "level": c.level.to_string(),
                "limit": c.limit.to_string(),
            })).collect::<Vec<_>>(),
            "venue_waiting": { "cancels": b.waiting_cancels, "places": b.waiting_places, "queries": b.waiting_queries },
            "queue_waiting": { "cancels": wc, "places": wp, "queries": wq },
            "grants": core.fair.granted().into_iter().map(|(k, n)| json!({ "id": k, "grants": n })).collect::<Vec<_>>(),
            "locked_until_ms": b.locked_until_ms.unwrap_or(0),
        },
        "pnl": {
            "total": crate::pnl::money(total.total()),
            "realized": crate::pnl::money(total.realized),
            "unrealized": crate::pnl::money(total.unrealized),
            "fees": crate::pnl::money(total.fees),
            "funding": crate::pnl::money(total.funding),
        },
        "equity": {
            "herd": equity.get("").map_or(json!([]), |p| series(p)),
            "engines": equity.iter().filter(|(k, _)| !k.is_empty()).map(|(k, p)| (k.clone(), series(p))).collect::<serde_json::Map<_, _>>(),
        },
        "recent_fills": recent,
        "recent_events": events,
    }))
}

/// How many of the herd's newest events the page shows.
const RECENT_EVENTS: u64 = 30;

/// The herd's newest events (docs/events.md), newest first, in the feed's
/// one JSON shape; empty when the gateway keeps no event log.
async fn recent_events(core: &crate::service::Core) -> Vec<Value> {
    let Some(log) = core.events.log() else {
        return Vec::new();
    };
    log.flush().await;
    let last = *log.subscribe().borrow();
    let from = last.saturating_sub(RECENT_EVENTS);
    match log
        .read_after(from, u32::try_from(RECENT_EVENTS).unwrap_or(u32::MAX))
        .await
    {
        Ok(events) => events
            .iter()
            .rev()
            .map(herd_proto::events::to_json)
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the herd's events for the page");
            Vec::new()
        }
    }
}
