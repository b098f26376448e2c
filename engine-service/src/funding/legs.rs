//! Sending legs: one market order under a deadline, polling for what the
//! venue did when the answer is late, and the open / close / rollback of a
//! position's two legs at once. The venue is reached only through
//! [`FundingApi`]; the store is the caller's business (every function here
//! returns the fills it applied).
//!
//! An order whose outcome is unknown (deadline passed, transport error) is
//! never resent: it is polled by client order id until the venue says what
//! happened, and the position sends nothing else while it is pending.

use std::sync::Arc;
use std::time::Duration;

use rust_decimal::Decimal;

use herd_strategies::funding::api::{
    ApiError, FundingApi, InstrumentSpec, LegOrder, OrderReport, OrderStatus, Side,
};
use herd_strategies::funding::pnl::fee_in_quote;
use herd_strategies::funding::position::{
    FundingPosition, Leg, PendingOrder, PositionState, Purpose, drift, round_down,
};

/// Polls that find no trace of an order before it counts as never placed.
pub const NOT_FOUND_LIMIT: u32 = 3;

/// Timing of leg execution.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timing {
    /// Both legs' deadline.
    pub leg_timeout: Duration,
    /// How long unknown outcomes are polled before giving the cycle back.
    pub resolve_timeout: Duration,
    pub poll: Duration,
}

/// What the caller knows about the market for a close.
#[derive(Debug, Clone, PartialEq)]
pub struct CloseCtx {
    pub spot: Option<InstrumentSpec>,
    /// Spot price to book unsellable dust at.
    pub spot_price: Decimal,
    pub max_drift: Decimal,
}

/// What happened to one leg.
#[derive(Debug, Clone, PartialEq)]
pub enum LegOutcome {
    /// Final at the venue (filled, or canceled/rejected with what executed).
    Done(OrderReport),
    /// Definitely not executed.
    Failed(String),
    /// Not known yet.
    Unknown(String),
}

/// One fill applied to a position (for the store's ledger).
#[derive(Debug, Clone, PartialEq)]
pub struct AppliedFill {
    pub position_id: String,
    pub leg: Leg,
    pub purpose: Purpose,
    pub client_order_id: String,
    pub symbol: String,
    pub side: Side,
    pub qty: Decimal,
    pub price: Decimal,
    pub fee: Decimal,
    pub fee_asset: String,
    pub fee_usd: Decimal,
    pub time_ms: i64,
}

async fn poll_until_final<A: FundingApi>(api: &A, id: &str, poll: Duration) -> OrderReport {
    loop {
        tokio::time::sleep(poll).await;
        if let Ok(Some(r)) = api.query(id).await
            && r.status.is_final()
        {
            return r;
        }
    }
}

/// Places `order` and waits for a final state, all within `deadline`.
pub async fn run_leg<A: FundingApi>(api: &A, order: &LegOrder, t: Timing) -> LegOutcome {
    let attempt = async {
        match api.place(order).await {
            Err(ApiError::Refused(m)) => LegOutcome::Failed(m),
            Err(ApiError::Unsupported(m)) => LegOutcome::Failed(m),
            Ok(r) if r.status.is_final() => LegOutcome::Done(r),
            Ok(_) | Err(ApiError::Unknown(_)) | Err(ApiError::Other(_)) => {
                LegOutcome::Done(poll_until_final(api, &order.client_order_id, t.poll).await)
            }
        }
    };
    match tokio::time::timeout(t.leg_timeout, attempt).await {
        Ok(o) => o,
        Err(_) => LegOutcome::Unknown(format!(
            "no final answer within {} ms",
            t.leg_timeout.as_millis()
        )),
    }
}

/// Polls a pending order until the venue says what happened or `budget`
/// runs out. An order the venue keeps not knowing was never placed; one
/// still open (a market order should not be) is asked to cancel.
pub async fn resolve<A: FundingApi>(api: &A, p: &mut PendingOrder, t: Timing) -> LegOutcome {
    let attempt = async {
        let mut cancel_sent = false;
        loop {
            match api.query(&p.client_order_id).await {
                Ok(Some(r)) if r.status.is_final() => return LegOutcome::Done(r),
                Ok(Some(r)) => {
                    p.not_found = 0;
                    if r.status == OrderStatus::Open && !cancel_sent {
                        cancel_sent = api.cancel(&p.client_order_id).await.is_ok();
                    }
                }
                Ok(None) => {
                    p.not_found += 1;
                    if p.not_found >= NOT_FOUND_LIMIT {
                        return LegOutcome::Failed("the venue never saw the order".into());
                    }
                }
                Err(_) => {}
            }
            tokio::time::sleep(t.poll).await;
        }
    };
    match tokio::time::timeout(t.resolve_timeout, attempt).await {
        Ok(o) => o,
        Err(_) => LegOutcome::Unknown("still unknown; polled again next cycle".into()),
    }
}

/// Applies a final report of `pending` to `pos`; returns the fill, if any.
pub fn apply_report(
    pos: &mut FundingPosition,
    pending: &PendingOrder,
    r: &OrderReport,
    now_ms: i64,
) -> Option<AppliedFill> {
    if r.executed <= Decimal::ZERO {
        return None;
    }
    let fee_usd = fee_in_quote(r.fee, &r.fee_asset, &pos.base, r.avg_price);
    let fee_in_base = if r.fee_asset == pos.base {
        r.fee
    } else {
        Decimal::ZERO
    };
    pos.apply_fill(
        pending.leg,
        pending.side,
        r.executed,
        r.avg_price,
        fee_usd,
        fee_in_base,
    );
    Some(AppliedFill {
        position_id: pos.id.clone(),
        leg: pending.leg,
        purpose: pending.purpose,
        client_order_id: pending.client_order_id.clone(),
        symbol: match pending.leg {
            Leg::Spot => pos.spot_symbol.clone(),
            Leg::Perp => pos.symbol.clone(),
        },
        side: pending.side,
        qty: r.executed,
        price: r.avg_price,
        fee: r.fee,
        fee_asset: r.fee_asset.clone(),
        fee_usd,
        time_ms: now_ms,
    })
}

/// Settles `pos.pending` against outcomes (by client order id): applied
/// fills come back, resolved orders leave the list, unknown ones stay.
fn settle(
    pos: &mut FundingPosition,
    outcomes: Vec<(String, LegOutcome)>,
    now_ms: i64,
    fills: &mut Vec<AppliedFill>,
) {
    for (id, outcome) in outcomes {
        let Some(i) = pos.pending.iter().position(|p| p.client_order_id == id) else {
            continue;
        };
        match outcome {
            LegOutcome::Done(r) => {
                let p = pos.pending.remove(i);
                fills.extend(apply_report(pos, &p, &r, now_ms));
                if r.executed < p.qty && !r.reason.is_empty() {
                    pos.last_error = format!("{} leg: {}", p.leg.as_str(), r.reason);
                }
            }
            LegOutcome::Failed(m) => {
                let p = pos.pending.remove(i);
                pos.last_error = format!("{} leg: {m}", p.leg.as_str());
            }
            LegOutcome::Unknown(m) => {
                pos.last_error =
                    format!("{} leg outcome unknown: {m}", pos.pending[i].leg.as_str());
            }
        }
    }
}

/// Polls every pending order of `pos` (concurrently) within the resolve
/// budget and applies what is known.
pub async fn resolve_pending<A: FundingApi>(
    api: &A,
    pos: &mut FundingPosition,
    t: Timing,
) -> Vec<AppliedFill> {
    let mut fills = Vec::new();
    if pos.pending.is_empty() {
        return fills;
    }
    let mut pending = pos.pending.clone();
    let outcomes = match pending.as_mut_slice() {
        [a] => vec![(a.client_order_id.clone(), resolve(api, a, t).await)],
        [a, b, ..] => {
            let (ra, rb) = tokio::join!(resolve(api, a, t), resolve(api, b, t));
            vec![
                (a.client_order_id.clone(), ra),
                (b.client_order_id.clone(), rb),
            ]
        }
        [] => Vec::new(),
    };
    // Keep the not-found counts across cycles.
    for p in &pending {
        if let Some(q) = pos
            .pending
            .iter_mut()
            .find(|q| q.client_order_id == p.client_order_id)
        {
            q.not_found = p.not_found;
        }
    }
    settle(pos, outcomes, api.now_ms(), &mut fills);
    fills
}

/// Sends `orders` (one or two legs) at once under the leg deadline, then
/// polls what is still unknown within the resolve budget.
async fn send_legs<A: FundingApi>(
    api: &A,
    pos: &mut FundingPosition,
    orders: Vec<(Leg, Purpose, LegOrder)>,
    t: Timing,
) -> Vec<AppliedFill> {
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
    let outcomes = match orders.as_slice() {
        [(_, _, a)] => vec![(a.client_order_id.clone(), run_leg(api, a, t).await)],
        [(_, _, a), (_, _, b), ..] => {
            let (ra, rb) = tokio::join!(run_leg(api, a, t), run_leg(api, b, t));
            vec![
                (a.client_order_id.clone(), ra),
                (b.client_order_id.clone(), rb),
            ]
        }
        [] => Vec::new(),
    };
    let mut fills = Vec::new();
    settle(pos, outcomes, api.now_ms(), &mut fills);
    fills.extend(resolve_pending(api, pos, t).await);
    fills
}

/// The two opening legs of `pos`: spot market BUY of `spot_qty` and perp
/// market SELL of `hedge_qty`, sent at once.
pub fn open_orders<A: FundingApi>(
    api: &A,
    pos: &FundingPosition,
    spot_qty: Decimal,
    hedge_qty: Decimal,
) -> Vec<(Leg, Purpose, LegOrder)> {
    vec![
        (
            Leg::Spot,
            Purpose::Open,
            LegOrder {
                client_order_id: api.new_client_id(),
                symbol: pos.spot_symbol.clone(),
                side: Side::Buy,
                qty: spot_qty,
                reduce_only: false,
            },
        ),
        (
            Leg::Perp,
            Purpose::Open,
            LegOrder {
                client_order_id: api.new_client_id(),
                symbol: pos.symbol.clone(),
                side: Side::Sell,
                qty: hedge_qty,
                reduce_only: false,
            },
        ),
    ]
}

/// Sends the opening legs that `open_orders` built and were already
/// recorded as pending by the caller (so a crash leaves a trace), then
/// decides: hedged -> open (or closed again on drift); one leg missing ->
/// the filled one is unwound.
pub async fn open<A: FundingApi>(
    api: &A,
    pos: &mut FundingPosition,
    orders: Vec<(Leg, Purpose, LegOrder)>,
    ctx: &CloseCtx,
    t: Timing,
) -> Vec<AppliedFill> {
    pos.pending.retain(|p| {
        !orders
            .iter()
            .any(|(_, _, o)| o.client_order_id == p.client_order_id)
    });
    let mut fills = send_legs(api, pos, orders, t).await;
    fills.extend(after_open(api, pos, ctx, t).await);
    fills
}

/// The decision once no opening leg is pending any more.
pub async fn after_open<A: FundingApi>(
    api: &A,
    pos: &mut FundingPosition,
    ctx: &CloseCtx,
    t: Timing,
) -> Vec<AppliedFill> {
    if pos.state != PositionState::Opening || !pos.pending.is_empty() {
        return Vec::new();
    }
    let hedged = pos.hedge_target > Decimal::ZERO
        && pos.perp_qty == pos.hedge_target
        && pos.spot_qty >= pos.hedge_target;
    if hedged {
        let d = drift(pos.spot_entry, pos.perp_entry);
        if d > ctx.max_drift {
            pos.state = PositionState::Closing;
            pos.close_reason = format!(
                "fill drift {}% > {}% (spot {}, perp {})",
                (d * Decimal::ONE_HUNDRED).round_dp(3),
                (ctx.max_drift * Decimal::ONE_HUNDRED).normalize(),
                pos.spot_entry.round_dp(8),
                pos.perp_entry.round_dp(8)
            );
            tracing::error!(position = %pos.id, reason = %pos.close_reason, "closing both legs");
            return close(api, pos, ctx, t).await;
        }
        pos.state = PositionState::Open;
        pos.last_error.clear();
        return Vec::new();
    }
    if pos.spot_qty.is_zero() && pos.perp_qty.is_zero() {
        pos.state = PositionState::Failed;
        pos.closed_at_ms = Some(api.now_ms());
        if pos.close_reason.is_empty() {
            pos.close_reason = format!("open failed: {}", pos.last_error);
        }
        return Vec::new();
    }
    pos.state = PositionState::Unwinding;
    pos.close_reason = format!("rollback: {}", pos.last_error);
    tracing::error!(position = %pos.id, reason = %pos.close_reason, spot = %pos.spot_qty, perp = %pos.perp_qty,
        "one leg did not fill; unwinding the other");
    close(api, pos, ctx, t).await
}

/// Closes what `pos` still holds: spot SELL and perp BUY (reduce-only) at
/// once. Spot below the venue's minimum is booked as dust. A leg that fails
/// or times out stays; the caller retries next cycle.
pub async fn close<A: FundingApi>(
    api: &A,
    pos: &mut FundingPosition,
    ctx: &CloseCtx,
    t: Timing,
) -> Vec<AppliedFill> {
    if !pos.pending.is_empty() {
        return Vec::new();
    }
    let purpose = if pos.state == PositionState::Unwinding {
        Purpose::Rollback
    } else {
        Purpose::Close
    };
    let mut orders = Vec::new();
    // What the position holds; if the coins went elsewhere the venue
    // refuses the sell, the close is retried and reconciliation reports it.
    let mut sell = pos.spot_qty;
    if let Some(spec) = &ctx.spot {
        sell = round_down(sell, spec);
        let price = ctx.spot_price;
        if sell < spec.min_qty || (price > Decimal::ZERO && sell * price < spec.min_notional) {
            sell = Decimal::ZERO;
        }
    }
    if sell > Decimal::ZERO {
        orders.push((
            Leg::Spot,
            purpose,
            LegOrder {
                client_order_id: api.new_client_id(),
                symbol: pos.spot_symbol.clone(),
                side: Side::Sell,
                qty: sell,
                reduce_only: false,
            },
        ));
    }
    if pos.perp_qty > Decimal::ZERO {
        orders.push((
            Leg::Perp,
            purpose,
            LegOrder {
                client_order_id: api.new_client_id(),
                symbol: pos.symbol.clone(),
                side: Side::Buy,
                qty: pos.perp_qty,
                reduce_only: true,
            },
        ));
    }
    let mut fills = Vec::new();
    if !orders.is_empty() {
        fills = send_legs(api, pos, orders, t).await;
    }
    finish_close(pos, ctx, api.now_ms(), &fills);
    fills
}

/// Marks a close finished when nothing but dust is left.
pub fn finish_close(pos: &mut FundingPosition, ctx: &CloseCtx, now_ms: i64, fills: &[AppliedFill]) {
    if !pos.pending.is_empty() || !pos.perp_qty.is_zero() {
        return;
    }
    let sellable = match &ctx.spot {
        Some(spec) => round_down(pos.spot_qty, spec) >= spec.min_qty && !pos.spot_qty.is_zero(),
        None => !pos.spot_qty.is_zero(),
    };
    if sellable {
        return;
    }
    let dust_price = fills
        .iter()
        .rev()
        .find(|f| f.leg == Leg::Spot)
        .map_or(ctx.spot_price, |f| f.price);
    pos.book_dust(dust_price);
    pos.state = if pos.state == PositionState::Unwinding {
        PositionState::Failed
    } else {
        PositionState::Closed
    };
    pos.closed_at_ms = Some(now_ms);
}

/// Closes `pos` with up to `tries` attempts, waiting `backoff[i]` between
/// them (the emergency controller: 3 tries, 1 s then 2 s). Ok when nothing
/// is left.
pub async fn close_with_retries<A: FundingApi>(
    api: Arc<A>,
    mut pos: FundingPosition,
    ctx: CloseCtx,
    t: Timing,
    tries: u32,
    backoff: &'static [Duration],
) -> (FundingPosition, Vec<AppliedFill>, Result<(), String>) {
    let mut fills = Vec::new();
    if matches!(pos.state, PositionState::Open | PositionState::Opening) {
        pos.state = PositionState::Closing;
    }
    for attempt in 0..tries.max(1) {
        if attempt > 0 {
            let wait = backoff
                .get(usize::try_from(attempt - 1).unwrap_or(0))
                .or(backoff.last())
                .copied()
                .unwrap_or(Duration::from_secs(1));
            tokio::time::sleep(wait).await;
        }
        fills.extend(resolve_pending(api.as_ref(), &mut pos, t).await);
        fills.extend(close(api.as_ref(), &mut pos, &ctx, t).await);
        if !pos.state.is_active() {
            return (pos, fills, Ok(()));
        }
    }
    let why = if pos.last_error.is_empty() {
        "still open".to_string()
    } else {
        pos.last_error.clone()
    };
    (pos, fills, Err(why))
}
