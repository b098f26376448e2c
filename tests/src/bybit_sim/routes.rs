//! The simulator's V5 endpoints: request parameters in, Bybit-shaped JSON
//! out, over the paper core's state.

use std::collections::HashMap;

use herd_venue::{
    InstrumentKind, NewOrder, OrderRef, OrderState, OrderStatus, OrderType, PositionSide, Side,
    VenueError,
};
use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::{Value, json};

use super::{
    Answer, BybitSim, REALTIME_CLOSED_MS, State, Synthetic, bybit_symbol, core_symbol, fail, ok,
};
use crate::http1::Request;

const MAX_TRANSACTION_SPAN_MS: i64 = 7 * 24 * 3_600_000;

/// The prefix of the ids the simulator makes for orders sent without an
/// orderLinkId (shown to clients as "", as Bybit shows them).
const AUTO_LINK: &str = "bybitsim-auto-";

/// An order's orderLinkId as Bybit shows it.
fn link_of(client_order_id: &str) -> &str {
    if client_order_id.starts_with(AUTO_LINK) {
        ""
    } else {
        client_order_id
    }
}

fn s(d: Decimal) -> String {
    d.normalize().to_string()
}

fn step_of(decimals: u32) -> String {
    s(Decimal::new(1, decimals))
}

/// Paginates with a numeric offset cursor.
fn page<T: Clone>(items: &[T], limit: usize, cursor: Option<&String>) -> (Vec<T>, String) {
    let start: usize = cursor.and_then(|c| c.parse().ok()).unwrap_or(0);
    let end = (start + limit).min(items.len());
    let slice = items.get(start..end).map(<[T]>::to_vec).unwrap_or_default();
    let next = if end < items.len() {
        end.to_string()
    } else {
        String::new()
    };
    (slice, next)
}

fn limit_param(q: &HashMap<String, String>, default: usize, max: usize) -> usize {
    q.get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(default)
        .clamp(1, max)
}

/// The funding rate's cap either way on every simulated perpetual.
const FUNDING_CAP: &str = "0.005";

fn order_status(o: &OrderState) -> &'static str {
    match o.status {
        OrderStatus::Open | OrderStatus::Pending if o.volume_executed > Decimal::ZERO => {
            "PartiallyFilled"
        }
        OrderStatus::Open | OrderStatus::Pending => "New",
        OrderStatus::Filled => "Filled",
        OrderStatus::Canceled | OrderStatus::Expired if o.volume_executed > Decimal::ZERO => {
            "PartiallyFilledCanceled"
        }
        OrderStatus::Canceled | OrderStatus::Expired => "Cancelled",
        OrderStatus::Rejected => "Rejected",
    }
}

fn order_row(o: &OrderState, reduce_only: bool) -> Value {
    let (_, symbol) = bybit_symbol(&o.symbol);
    let avg = o.average_price.unwrap_or_default();
    json!({
        "orderId": o.venue_order_id,
        "orderLinkId": link_of(&o.client_order_id),
        "blockTradeId": "",
        "symbol": symbol,
        "price": o.price.map_or("0".to_string(), s),
        "qty": s(o.volume),
        "side": if o.side == Side::Buy { "Buy" } else { "Sell" },
        "isLeverage": "",
        "positionIdx": 0,
        "orderStatus": order_status(o),
        "cancelType": if o.status == OrderStatus::Canceled { "CancelByUser" } else { "UNKNOWN" },
        "rejectReason": "EC_NoError",
        "avgPrice": if o.average_price.is_some() { s(avg) } else { String::new() },
        "leavesQty": s(if o.status.is_final() { Decimal::ZERO } else { o.volume - o.volume_executed }),
        "leavesValue": "0",
        "cumExecQty": s(o.volume_executed),
        "cumExecValue": s(avg * o.volume_executed),
        "cumExecFee": s(o.fee),
        "timeInForce": if o.post_only { "PostOnly" } else if o.order_type == OrderType::Market { "IOC" } else { "GTC" },
        "orderType": if o.order_type == OrderType::Market { "Market" } else { "Limit" },
        "reduceOnly": reduce_only,
        "createdTime": o.opened_at_ms.to_string(),
        "updatedTime": o.closed_at_ms.unwrap_or(o.opened_at_ms).to_string(),
        // Conditional, TP/SL, options and self-match fields: Herd's orders
        // never use them; Bybit sends them empty, and so does the simulator.
        "lastPriceOnCreated": "",
        "closeOnTrigger": false,
        "orderIv": "",
        "placeType": "",
        "triggerPrice": "",
        "triggerBy": "",
        "triggerDirection": 0,
        "stopOrderType": "",
        "takeProfit": "",
        "stopLoss": "",
        "tpTriggerBy": "",
        "slTriggerBy": "",
        "tpLimitPrice": "",
        "slLimitPrice": "",
        "tpslMode": "",
        "smpType": "None",
        "smpGroup": 0,
        "smpOrderId": "",
    })
}

fn body_json(req: &Request) -> Result<Value, Answer> {
    serde_json::from_str(&req.body)
        .map_err(|e| fail(10001, format!("params error: body is not JSON: {e}")))
}

fn text(v: &Value, k: &str) -> Option<String> {
    v.get(k).and_then(Value::as_str).map(str::to_owned)
}

fn decimal(field: &str, s: &str) -> Result<Decimal, Answer> {
    s.parse::<Decimal>()
        .map_err(|_| fail(10001, format!("params error: {field} invalid")))
}

/// The retCode pair of one kind of failure: (linear, spot).
fn code(category: &str, linear: i64, spot: i64) -> i64 {
    if category == "spot" { spot } else { linear }
}

impl BybitSim {
    pub(super) fn route(&self, st: &mut State, req: &Request, now: i64) -> Answer {
        let q = req.query_params();
        let r = match (req.method.as_str(), req.path.as_str()) {
            ("GET", "/v5/market/time") => Ok(ok(json!({
                "timeSecond": (now / 1000).to_string(),
                "timeNano": (i128::from(now) * 1_000_000).to_string(),
            }))),
            ("GET", "/v5/market/tickers") => tickers(st, &q),
            ("GET", "/v5/market/instruments-info") => instruments(st, &q),
            ("GET", "/v5/market/kline") => kline(st, &q),
            ("GET", "/v5/market/funding/history") => funding_history(st, &q),
            ("POST", "/v5/order/create") => body_json(req).and_then(|b| create(st, &b, now)),
            ("POST", "/v5/order/cancel") => body_json(req).and_then(|b| cancel(st, &b, now)),
            ("POST", "/v5/order/amend") => body_json(req).and_then(|b| amend(st, &b, now)),
            ("POST", "/v5/order/cancel-all") => {
                body_json(req).and_then(|b| cancel_all(st, &b, now))
            }
            ("GET", "/v5/order/realtime") => orders(st, &q, now, true),
            ("GET", "/v5/order/history") => orders(st, &q, now, false),
            ("GET", "/v5/execution/list") => executions(st, &q),
            ("GET", "/v5/position/list") => positions(st, &q),
            ("GET", "/v5/account/wallet-balance") => wallet(st, &q, now),
            ("GET", "/v5/account/transaction-log") => transactions(st, &q, now),
            ("GET", "/v5/user/query-api") => Ok(super::more::query_api(
                &self.cfg.key_info,
                &self.cfg.api_key,
                now,
            )),
            ("GET", "/v5/account/info") => Ok(super::more::account_info(now)),
            ("GET", "/v5/account/fee-rate") => super::more::fee_rate(st, &q),
            ("GET", "/v5/asset/coin/query-info") => Ok(super::more::coin_info(st, &q)),
            ("GET", "/v5/market/orderbook") => super::more::orderbook(st, &q, now),
            ("GET", "/v5/market/recent-trade") => super::more::recent_trades(st, &q),
            _ => Err(fail(
                10001,
                format!("unknown route {} {}", req.method, req.path),
            )),
        };
        r.unwrap_or_else(|e| e)
    }
}

fn category_param(q: &HashMap<String, String>) -> Result<String, Answer> {
    match q.get("category").map(String::as_str) {
        Some("spot") => Ok("spot".into()),
        Some("linear") => Ok("linear".into()),
        Some(other) => Err(fail(
            10001,
            format!("params error: category {other} is not supported"),
        )),
        None => Err(fail(10001, "params error: category is required")),
    }
}

fn kind_of(category: &str) -> InstrumentKind {
    if category == "spot" {
        InstrumentKind::Spot
    } else {
        InstrumentKind::Perpetual
    }
}

fn tickers(st: &State, q: &HashMap<String, String>) -> Result<Answer, Answer> {
    if let Some(empty) = empty_category(q) {
        return Ok(empty);
    }
    let category = category_param(q)?;
    let mut list = Vec::new();
    for inst in st.exchange.instruments() {
        if inst.kind != kind_of(&category) {
            continue;
        }
        let (_, symbol) = bybit_symbol(&inst.symbol);
        if q.get("symbol").is_some_and(|s| *s != symbol) {
            continue;
        }
        let t = st
            .exchange
            .ticker(&inst.symbol)
            .map_err(|e| fail(10001, e.to_string()))?;
        let mut row = json!({
            "symbol": symbol,
            "lastPrice": s(t.last),
            "bid1Price": s(t.bid),
            "bid1Size": "1",
            "ask1Price": s(t.ask),
            "ask1Size": "1",
            "volume24h": s(t.volume_24h),
            "turnover24h": s((t.volume_24h * t.last).round_dp(4)),
            "prevPrice24h": s(t.last),
            "price24hPcnt": "0",
            "highPrice24h": s(t.last),
            "lowPrice24h": s(t.last),
        });
        if inst.kind != InstrumentKind::Perpetual
            && let Some(obj) = row.as_object_mut()
        {
            // Every simulated quote coin is a dollar stablecoin.
            obj.insert("usdIndexPrice".into(), json!(s(t.last)));
        }
        if inst.kind == InstrumentKind::Perpetual
            && let Ok(f) = st.exchange.funding_rate(&inst.symbol)
            && let Some(obj) = row.as_object_mut()
        {
            obj.insert("markPrice".into(), json!(s(f.mark)));
            obj.insert("indexPrice".into(), json!(s(f.index)));
            obj.insert("fundingRate".into(), json!(s(f.rate)));
            obj.insert(
                "nextFundingTime".into(),
                json!(f.next_funding_ms.to_string()),
            );
            obj.insert(
                "fundingIntervalHour".into(),
                json!(f.interval_hours.to_string()),
            );
            obj.insert("turnover24h".into(), json!(s(f.turnover_24h_usd)));
            // Open interest is the simulator's own account: nobody else trades.
            let oi: Decimal = st
                .exchange
                .positions()
                .iter()
                .filter(|p| p.symbol == inst.symbol)
                .map(|p| p.size)
                .sum();
            obj.insert("openInterest".into(), json!(s(oi)));
            obj.insert("openInterestValue".into(), json!(s(oi * f.mark)));
            obj.insert("fundingCap".into(), json!(FUNDING_CAP));
            // Perpetuals: no delivery, no basis.
            for k in [
                "basis",
                "basisRate",
                "deliveryFeeRate",
                "predictedDeliveryPrice",
            ] {
                obj.insert(k.into(), json!(""));
            }
            obj.insert("deliveryTime".into(), json!("0"));
            obj.insert("prevPrice1h".into(), json!(s(t.last)));
        }
        list.push(row);
    }
    if list.is_empty() && q.contains_key("symbol") {
        return Err(fail(10001, "params error: symbol invalid"));
    }
    Ok(ok(json!({"category": category, "list": list})))
}

/// `inverse` and `option` exist on Bybit; the simulator lists nothing in them.
fn empty_category(q: &HashMap<String, String>) -> Option<Answer> {
    let c = q.get("category").map(String::as_str)?;
    matches!(c, "inverse" | "option")
        .then(|| ok(json!({"category": c, "list": [], "nextPageCursor": ""})))
}

fn instruments(st: &State, q: &HashMap<String, String>) -> Result<Answer, Answer> {
    if let Some(empty) = empty_category(q) {
        return Ok(empty);
    }
    let category = category_param(q)?;
    let mut rows = Vec::new();
    for inst in st.exchange.instruments() {
        if inst.kind != kind_of(&category) {
            continue;
        }
        let (_, symbol) = bybit_symbol(&inst.symbol);
        if q.get("symbol").is_some_and(|s| *s != symbol) {
            continue;
        }
        let row = if category == "spot" {
            json!({
                "symbol": symbol,
                "baseCoin": inst.base,
                "quoteCoin": inst.quote,
                "innovation": "0",
                "status": "Trading",
                "marginTrading": "both",
                "lotSizeFilter": {
                    "basePrecision": step_of(inst.lot_decimals),
                    "quotePrecision": "0.00000001",
                    "minOrderQty": s(inst.min_volume),
                    "maxOrderQty": "1000000",
                    "minOrderAmt": s(inst.min_cost),
                    "maxOrderAmt": "10000000",
                },
                "priceFilter": {"tickSize": s(inst.tick_size)},
                "riskParameters": {"limitParameter": "0.05", "marketParameter": "0.05"},
            })
        } else {
            let interval = st
                .exchange
                .funding_rate(&inst.symbol)
                .map(|f| f.interval_hours)
                .unwrap_or(8);
            json!({
                "symbol": symbol,
                "contractType": "LinearPerpetual",
                "status": "Trading",
                "baseCoin": inst.base,
                "quoteCoin": inst.quote,
                "settleCoin": inst.quote,
                "priceScale": inst.price_decimals.to_string(),
                "priceFilter": {"minPrice": s(inst.tick_size), "maxPrice": "1999999", "tickSize": s(inst.tick_size)},
                "lotSizeFilter": {
                    "maxOrderQty": "1000000",
                    "minOrderQty": s(inst.min_volume),
                    "qtyStep": step_of(inst.lot_decimals),
                    "maxMktOrderQty": "100000",
                    "minNotionalValue": s(inst.min_cost),
                    "postOnlyMaxOrderQty": "1000000",
                },
                "fundingInterval": i64::from(interval) * 60,
                "unifiedMarginTrade": true,
                "launchTime": "0",
                "deliveryTime": "0",
                "deliveryFeeRate": "",
                "copyTrading": "none",
                "upperFundingRate": FUNDING_CAP,
                "lowerFundingRate": format!("-{FUNDING_CAP}"),
                "leverageFilter": {"minLeverage": "1", "maxLeverage": "10.00", "leverageStep": "0.01"},
            })
        };
        rows.push(row);
    }
    let limit = limit_param(q, 500, 1000);
    let (list, next) = page(&rows, limit, q.get("cursor"));
    Ok(ok(
        json!({"category": category, "list": list, "nextPageCursor": next}),
    ))
}

fn kline(st: &State, q: &HashMap<String, String>) -> Result<Answer, Answer> {
    let category = category_param(q)?;
    let symbol = q
        .get("symbol")
        .ok_or_else(|| fail(10001, "params error: symbol is required"))?;
    let minutes: u32 = match q.get("interval").map(String::as_str) {
        Some("D") => 1440,
        Some("W") => 10080,
        Some(m) => m
            .parse()
            .map_err(|_| fail(10001, "params error: interval invalid"))?,
        None => return Err(fail(10001, "params error: interval is required")),
    };
    let core = core_symbol(&category, symbol).ok_or_else(|| fail(10001, "category"))?;
    let since: i64 = q.get("start").and_then(|v| v.parse().ok()).unwrap_or(0);
    let mut candles = st
        .exchange
        .candles(&core, minutes, since)
        .map_err(|e| fail(10001, e.to_string()))?;
    candles.reverse();
    candles.truncate(limit_param(q, 200, 1000));
    let list: Vec<Value> = candles
        .iter()
        .map(|c| {
            json!([
                c.open_time_ms.to_string(),
                s(c.open),
                s(c.high),
                s(c.low),
                s(c.close),
                s(c.volume),
                s(c.volume * c.close),
            ])
        })
        .collect();
    Ok(ok(
        json!({"symbol": symbol, "category": category, "list": list}),
    ))
}

fn funding_history(st: &State, q: &HashMap<String, String>) -> Result<Answer, Answer> {
    let symbol = q
        .get("symbol")
        .ok_or_else(|| fail(10001, "params error: symbol is required"))?;
    let limit = limit_param(q, 200, 200);
    let list: Vec<Value> = st
        .funding_history
        .iter()
        .rev()
        .filter(|(sym, _, _)| sym == symbol)
        .take(limit)
        .map(|(sym, rate, t)| json!({"symbol": sym, "fundingRate": s(*rate), "fundingRateTimestamp": t.to_string()}))
        .collect();
    Ok(ok(json!({"category": "linear", "list": list})))
}

fn create(st: &mut State, b: &Value, now: i64) -> Result<Answer, Answer> {
    let category =
        text(b, "category").ok_or_else(|| fail(10001, "params error: category is required"))?;
    if category != "spot" && category != "linear" {
        return Err(fail(10001, "params error: category invalid"));
    }
    let symbol =
        text(b, "symbol").ok_or_else(|| fail(10001, "params error: symbol is required"))?;
    let core = core_symbol(&category, &symbol).ok_or_else(|| fail(10001, "category"))?;
    let inst = st
        .exchange
        .instrument(&core)
        .map_err(|_| fail(10001, "params error: symbol invalid"))?
        .clone();
    let side = match text(b, "side").as_deref() {
        Some("Buy") => Side::Buy,
        Some("Sell") => Side::Sell,
        _ => return Err(fail(10001, "params error: side invalid")),
    };
    let order_type = match text(b, "orderType").as_deref() {
        Some("Market") => OrderType::Market,
        Some("Limit") => OrderType::Limit,
        _ => return Err(fail(10001, "params error: orderType invalid")),
    };
    let given = text(b, "orderLinkId").unwrap_or_default();
    // Bybit makes orderLinkId optional and then reports it as "": the core
    // needs a unique id, so the simulator makes one it never shows.
    let link = if given.is_empty() {
        format!("{AUTO_LINK}{}-{now}", st.stats.requests)
    } else {
        given
    };
    if link.len() > 36
        || !link
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(fail(10001, "params error: orderLinkId invalid"));
    }
    let seen = !st
        .exchange
        .query(&[OrderRef {
            client_order_id: link.clone(),
            venue_order_id: None,
        }])
        .is_empty()
        || st.synthetic.iter().any(|x| x.link_id == link);
    if seen {
        return Err(fail(
            code(&category, 110072, 170141),
            if category == "spot" {
                "Duplicate clientOrderId."
            } else {
                "OrderLinkedID is duplicate"
            },
        ));
    }
    let mut qty = decimal("qty", &text(b, "qty").unwrap_or_default())?;
    let price = match order_type {
        OrderType::Limit => Some(decimal("price", &text(b, "price").unwrap_or_default())?),
        OrderType::Market => None,
    };
    let reduce_only = b
        .get("reduceOnly")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if reduce_only && category == "spot" {
        return Err(fail(10001, "params error: reduceOnly is for derivatives"));
    }
    let ticker = st
        .exchange
        .ticker(&core)
        .map_err(|e| fail(10016, e.to_string()))?;
    if category == "spot"
        && order_type == OrderType::Market
        && side == Side::Buy
        && text(b, "marketUnit").as_deref() != Some("baseCoin")
    {
        // A spot market buy is sized in quote unless marketUnit=baseCoin.
        qty =
            (qty / ticker.ask).round_dp_with_strategy(inst.lot_decimals, RoundingStrategy::ToZero);
    }
    let post_only = text(b, "timeInForce").as_deref() == Some("PostOnly");
    if post_only
        && let Some(p) = price
        && ((side == Side::Buy && p >= ticker.ask) || (side == Side::Sell && p <= ticker.bid))
    {
        let order_id = format!("R{now}-{}", st.synthetic.len());
        let state = OrderState {
            client_order_id: link.clone(),
            venue_order_id: order_id.clone(),
            symbol: core.clone(),
            side,
            order_type,
            price,
            volume: qty,
            volume_executed: Decimal::ZERO,
            average_price: None,
            fee: Decimal::ZERO,
            fee_asset: String::new(),
            status: OrderStatus::Rejected,
            userref: 0,
            opened_at_ms: now,
            closed_at_ms: Some(now),
            reason: None,
            post_only: true,
            foreign: None,
        };
        let mut row = order_row(&state, false);
        if let Some(o) = row.as_object_mut() {
            o.insert("rejectReason".into(), json!("EC_PostOnlyWillTakeLiquidity"));
        }
        st.synthetic.push(Synthetic {
            row,
            link_id: link.clone(),
            order_id: order_id.clone(),
            category: category.clone(),
            time_ms: now,
        });
        return Ok(ok(
            json!({"orderId": order_id, "orderLinkId": link_of(&link)}),
        ));
    }
    let order = NewOrder {
        client_order_id: link.clone(),
        symbol: core,
        side,
        order_type,
        volume: qty,
        price,
        post_only,
        userref: 0,
        reduce_only,
    };
    match st.exchange.place(&order, now) {
        Ok(state) => Ok(ok(
            json!({"orderId": state.venue_order_id, "orderLinkId": link_of(&link)}),
        )),
        Err(VenueError::InsufficientFunds(_)) => Err(fail(
            code(&category, 110007, 170131),
            if category == "spot" {
                "Insufficient balance."
            } else {
                "ab not enough for new order"
            },
        )),
        Err(VenueError::InvalidArgument(m)) if m.contains("minimum order cost") => Err(fail(
            code(&category, 110094, 170140),
            "Order does not meet minimum order value",
        )),
        Err(VenueError::InvalidArgument(m))
            if m.contains("minimum order volume") || m.contains("rounds to zero") =>
        {
            Err(fail(
                code(&category, 10001, 170136),
                "Order quantity exceeded lower limit.",
            ))
        }
        Err(VenueError::Rejected(m)) if m.contains("reduce-only") => {
            Err(fail(110017, "Reduce-only rule not satisfied"))
        }
        Err(VenueError::OrderLimit(_)) => Err(fail(
            110009,
            "The number of pending orders exceeds the limit",
        )),
        Err(e) => Err(fail(10001, format!("params error: {e}"))),
    }
}

fn find(st: &State, b: &Value) -> Option<OrderState> {
    let r = OrderRef {
        client_order_id: text(b, "orderLinkId").unwrap_or_default(),
        venue_order_id: text(b, "orderId"),
    };
    st.exchange.query(&[r]).into_iter().next()
}

/// The open order a cancel or an amend names (`orderId` or `orderLinkId`,
/// on `category` + `symbol`), with its category, or Bybit's "does not
/// exist" answer.
fn open_order_named(st: &State, b: &Value) -> Result<(String, OrderState, OrderRef), Answer> {
    let category = text(b, "category").unwrap_or_default();
    let symbol =
        text(b, "symbol").ok_or_else(|| fail(10001, "params error: symbol is required"))?;
    if text(b, "orderId").is_none() && text(b, "orderLinkId").is_none() {
        return Err(fail(
            10001,
            "params error: orderId or orderLinkId is required",
        ));
    }
    let not_found = || fail(code(&category, 110001, 170213), "Order does not exist.");
    let o = find(st, b).ok_or_else(not_found)?;
    if core_symbol(&category, &symbol).as_deref() != Some(o.symbol.as_str())
        || o.status != OrderStatus::Open
    {
        return Err(not_found());
    }
    let r = OrderRef {
        client_order_id: o.client_order_id.clone(),
        venue_order_id: Some(o.venue_order_id.clone()),
    };
    Ok((category, o, r))
}

fn cancel(st: &mut State, b: &Value, now: i64) -> Result<Answer, Answer> {
    let (category, o, r) = open_order_named(st, b)?;
    st.exchange
        .cancel(&r, now)
        .map_err(|_| fail(code(&category, 110001, 170213), "Order does not exist."))?;
    Ok(ok(
        json!({"orderId": o.venue_order_id, "orderLinkId": link_of(&o.client_order_id)}),
    ))
}

/// `/v5/order/amend`: a new total `qty` and/or `price` for an open order,
/// in place (same orderId), through the matching core's amend: a refused
/// amend leaves the order as it was.
fn amend(st: &mut State, b: &Value, now: i64) -> Result<Answer, Answer> {
    let (category, _, r) = open_order_named(st, b)?;
    let qty = text(b, "qty").map(|s| decimal("qty", &s)).transpose()?;
    let price = text(b, "price").map(|s| decimal("price", &s)).transpose()?;
    if qty.is_none() && price.is_none() {
        return Err(fail(10001, "params error: qty or price is required"));
    }
    match st.exchange.amend(&r, qty, price, now) {
        Ok(s) => Ok(ok(
            json!({"orderId": s.venue_order_id, "orderLinkId": link_of(&s.client_order_id)}),
        )),
        Err(VenueError::InsufficientFunds(_)) => Err(fail(
            code(&category, 110007, 170131),
            if category == "spot" {
                "Insufficient balance."
            } else {
                "ab not enough for new order"
            },
        )),
        Err(VenueError::UnknownOrder(_)) => Err(fail(
            code(&category, 110001, 170213),
            "Order does not exist.",
        )),
        Err(e) => Err(fail(10001, format!("params error: {e}"))),
    }
}

fn cancel_all(st: &mut State, b: &Value, now: i64) -> Result<Answer, Answer> {
    let category =
        text(b, "category").ok_or_else(|| fail(10001, "params error: category is required"))?;
    let symbol = text(b, "symbol");
    let targets: Vec<OrderState> = st
        .exchange
        .open_orders()
        .into_iter()
        .filter(|o| bybit_symbol(&o.symbol).0 == category)
        .filter(|o| {
            symbol
                .as_ref()
                .is_none_or(|s| bybit_symbol(&o.symbol).1 == *s)
        })
        .collect();
    let mut list = Vec::new();
    for o in targets {
        let r = OrderRef {
            client_order_id: o.client_order_id.clone(),
            venue_order_id: Some(o.venue_order_id.clone()),
        };
        if st.exchange.cancel(&r, now).is_ok() {
            list.push(
                json!({"orderId": o.venue_order_id, "orderLinkId": link_of(&o.client_order_id)}),
            );
        }
    }
    Ok(ok(json!({"list": list, "success": "1"})))
}

/// realtime (`open` = true) and history.
fn orders(st: &State, q: &HashMap<String, String>, now: i64, open: bool) -> Result<Answer, Answer> {
    let category = category_param(q)?;
    if open
        && category == "linear"
        && !q.contains_key("symbol")
        && !q.contains_key("settleCoin")
        && !q.contains_key("baseCoin")
    {
        return Err(fail(
            10001,
            "Missing some parameters that must be filled in, symbol or settleCoin or baseCoin",
        ));
    }
    let by_id = q.get("orderId").or(q.get("orderLinkId")).is_some();
    let mut rows: Vec<(i64, Value)> = Vec::new();
    for o in st.exchange.all_orders() {
        let (cat, symbol) = bybit_symbol(&o.symbol);
        if cat != category || q.get("symbol").is_some_and(|s| *s != symbol) {
            continue;
        }
        if q.get("orderId").is_some_and(|id| *id != o.venue_order_id)
            || q.get("orderLinkId")
                .is_some_and(|id| *id != o.client_order_id)
        {
            continue;
        }
        let is_open = !o.status.is_final();
        let keep = if open {
            is_open
                || (by_id
                    && o.closed_at_ms
                        .is_some_and(|t| now - t <= REALTIME_CLOSED_MS))
        } else {
            !is_open
        };
        if keep {
            let reduce = st.exchange.order_is_reduce_only(&OrderRef {
                client_order_id: o.client_order_id.clone(),
                venue_order_id: Some(o.venue_order_id.clone()),
            });
            rows.push((
                o.closed_at_ms.unwrap_or(o.opened_at_ms),
                order_row(&o, reduce),
            ));
        }
    }
    for x in &st.synthetic {
        if x.category != category {
            continue;
        }
        let id_match = q.get("orderId").is_some_and(|id| *id == x.order_id)
            || q.get("orderLinkId").is_some_and(|id| *id == x.link_id);
        let keep = if open {
            id_match && now - x.time_ms <= REALTIME_CLOSED_MS
        } else {
            !by_id || id_match
        };
        if keep {
            rows.push((x.time_ms, x.row.clone()));
        }
    }
    rows.sort_by_key(|r| std::cmp::Reverse(r.0));
    let rows: Vec<Value> = rows.into_iter().map(|(_, r)| r).collect();
    let (list, next) = page(&rows, limit_param(q, 20, 50), q.get("cursor"));
    Ok(ok(
        json!({"category": category, "list": list, "nextPageCursor": next}),
    ))
}

fn executions(st: &State, q: &HashMap<String, String>) -> Result<Answer, Answer> {
    let category = category_param(q)?;
    match q.get("execType").map(String::as_str) {
        None | Some("Trade") => {}
        Some("Funding") => return Ok(funding_executions(st, q, &category)),
        Some(_) => {
            return Ok(ok(
                json!({"category": category, "list": [], "nextPageCursor": ""}),
            ));
        }
    }
    let mut rows = Vec::new();
    for o in st.exchange.all_orders() {
        let (cat, symbol) = bybit_symbol(&o.symbol);
        if cat != category || o.volume_executed.is_zero() {
            continue;
        }
        if q.get("orderId").is_some_and(|id| *id != o.venue_order_id)
            || q.get("orderLinkId")
                .is_some_and(|id| *id != o.client_order_id)
        {
            continue;
        }
        let price = o.average_price.unwrap_or_default();
        let mark = st
            .exchange
            .funding_rate(&o.symbol)
            .map_or(String::new(), |f| s(f.mark));
        rows.push(json!({
            "symbol": symbol,
            "orderId": o.venue_order_id,
            "orderLinkId": link_of(&o.client_order_id),
            "side": if o.side == Side::Buy { "Buy" } else { "Sell" },
            "execId": format!("{}-1", o.venue_order_id),
            "execPrice": s(price),
            "execQty": s(o.volume_executed),
            "execValue": s(price * o.volume_executed),
            "execFee": s(o.fee),
            "feeCurrency": o.fee_asset,
            "execType": "Trade",
            "isMaker": o.order_type == OrderType::Limit,
            "execTime": o.closed_at_ms.unwrap_or(o.opened_at_ms).to_string(),
            "orderType": if o.order_type == OrderType::Market { "Market" } else { "Limit" },
            "orderPrice": o.price.map_or("0".to_string(), s),
            "orderQty": s(o.volume),
            "leavesQty": s(if o.status.is_final() { Decimal::ZERO } else { o.volume - o.volume_executed }),
            "feeRate": s(if (price * o.volume_executed).is_zero() { Decimal::ZERO } else { (o.fee / (price * o.volume_executed)).round_dp(8) }),
            "markPrice": mark,
            "closedSize": "0",
            "seq": rows.len() + 1,
            "stopOrderType": "UNKNOWN",
            "blockTradeId": "",
            "indexPrice": "",
            "underlyingPrice": "",
            "markIv": "",
            "tradeIv": "",
        }));
    }
    let (list, next) = page(&rows, limit_param(q, 50, 100), q.get("cursor"));
    Ok(ok(
        json!({"category": category, "list": list, "nextPageCursor": next}),
    ))
}

/// Funding settlements as Bybit lists them among executions
/// (`execType=Funding`): `execFee` is what the account paid (negative =
/// received), newest first.
fn funding_executions(st: &State, q: &HashMap<String, String>, category: &str) -> Answer {
    let payments = if category == "linear" {
        st.exchange
            .funding_payments(&herd_venue::FundingPaymentQuery {
                symbol: q.get("symbol").map(|s| herd_venue::perp_symbol(s)),
                since_ms: q.get("startTime").and_then(|v| v.parse().ok()).unwrap_or(0),
                until_ms: q
                    .get("endTime")
                    .and_then(|v| v.parse::<i64>().ok())
                    .map(|e| e + 1),
                limit: 0,
            })
    } else {
        Vec::new()
    };
    let rows: Vec<Value> = payments
        .iter()
        .rev()
        .map(|p| {
            let (_, symbol) = bybit_symbol(&p.symbol);
            json!({
                "symbol": symbol,
                "orderId": "",
                "orderLinkId": "",
                "side": if p.side == PositionSide::Long { "Buy" } else { "Sell" },
                "execId": p.id,
                "execPrice": s(p.mark_price),
                "markPrice": s(p.mark_price),
                "execQty": s(p.size),
                "execValue": s(p.mark_price * p.size),
                "execFee": s(-p.amount),
                "feeRate": s(p.rate),
                "feeCurrency": p.asset,
                "execType": "Funding",
                "isMaker": false,
                "orderType": "UNKNOWN",
                "execTime": p.time_ms.to_string(),
            })
        })
        .collect();
    let (list, next) = page(&rows, limit_param(q, 50, 100), q.get("cursor"));
    ok(json!({"category": category, "list": list, "nextPageCursor": next}))
}

fn positions(st: &State, q: &HashMap<String, String>) -> Result<Answer, Answer> {
    let category = category_param(q)?;
    if category != "linear" {
        return Err(fail(10001, "params error: category only support linear"));
    }
    if !q.contains_key("symbol") && !q.contains_key("settleCoin") && !q.contains_key("baseCoin") {
        return Err(fail(
            10001,
            "Missing some parameters that must be filled in, symbol or settleCoin or baseCoin",
        ));
    }
    let mut rows = Vec::new();
    for p in st.exchange.positions() {
        let (_, symbol) = bybit_symbol(&p.symbol);
        if q.get("symbol").is_some_and(|s| *s != symbol)
            || q.get("settleCoin").is_some_and(|c| *c != p.settle_asset)
        {
            continue;
        }
        rows.push(json!({
            "positionIdx": 0,
            "symbol": symbol,
            "side": if p.side == PositionSide::Long { "Buy" } else { "Sell" },
            "size": s(p.size),
            "avgPrice": s(p.entry_price),
            "positionValue": s(p.notional),
            "leverage": s(p.leverage),
            "markPrice": s(p.mark_price),
            "liqPrice": "",
            "bustPrice": "",
            "positionIM": s(p.initial_margin),
            "positionMM": s(p.maintenance_margin),
            "unrealisedPnl": s(p.unrealized_pnl),
            "cumRealisedPnl": s(p.realized_pnl),
            "positionStatus": "Normal",
            "createdTime": p.updated_ms.to_string(),
            "updatedTime": p.updated_ms.to_string(),
            "curRealisedPnl": s(p.realized_pnl),
            "positionBalance": s(p.initial_margin),
            "seq": rows.len() + 1,
        }));
    }
    if rows.is_empty()
        && let Some(symbol) = q.get("symbol")
    {
        rows.push(json!({
            "positionIdx": 0, "symbol": symbol, "side": "", "size": "0", "avgPrice": "0",
            "positionValue": "0", "leverage": "10", "markPrice": "0", "liqPrice": "",
            "positionIM": "0", "positionMM": "0", "unrealisedPnl": "0", "cumRealisedPnl": "0",
            "createdTime": "0", "updatedTime": "0", "curRealisedPnl": "0",
            "positionBalance": "0", "seq": -1,
        }));
    }
    for row in &mut rows {
        if let Some(obj) = row.as_object_mut() {
            // Cross margin, one-way mode, no TP/SL: what Herd runs with.
            for (k, v) in [
                ("tradeMode", json!(0)),
                ("autoAddMargin", json!(0)),
                ("riskId", json!(1)),
                ("riskLimitValue", json!("2000000")),
                ("isReduceOnly", json!(false)),
                ("adlRankIndicator", json!(0)),
                ("tpslMode", json!("Full")),
                ("takeProfit", json!("")),
                ("stopLoss", json!("")),
                ("trailingStop", json!("0")),
            ] {
                obj.insert(k.into(), v);
            }
        }
    }
    let (list, next) = page(&rows, limit_param(q, 20, 200), q.get("cursor"));
    Ok(ok(
        json!({"category": "linear", "list": list, "nextPageCursor": next}),
    ))
}

fn wallet(st: &State, q: &HashMap<String, String>, now: i64) -> Result<Answer, Answer> {
    if q.get("accountType").map(String::as_str) != Some("UNIFIED") {
        return Err(fail(
            10001,
            "params error: accountType only support UNIFIED",
        ));
    }
    let m = st.exchange.account_margin(now);
    let mut coins = Vec::new();
    for b in st.exchange.balances() {
        let price = if b.asset == m.asset {
            Some(Decimal::ONE)
        } else {
            st.exchange
                .ticker(&format!("{}{}", b.asset, m.asset))
                .ok()
                .map(|t| t.last)
        };
        coins.push(json!({
            "coin": b.asset,
            "equity": s(b.total),
            "walletBalance": s(b.total),
            "locked": s(b.total - b.free),
            "usdValue": price.map_or(String::new(), |p| s((p * b.total).round_dp(8))),
            "unrealisedPnl": if b.asset == m.asset { s(m.unrealized_pnl) } else { "0".to_string() },
            "cumRealisedPnl": "0",
            "borrowAmount": "0",
            "availableToWithdraw": "",
            "totalOrderIM": "0",
            "totalPositionIM": if b.asset == m.asset { s(m.initial_margin) } else { "0".to_string() },
            "totalPositionMM": if b.asset == m.asset { s(m.maintenance_margin) } else { "0".to_string() },
            "marginCollateral": true,
            "collateralSwitch": true,
            "accruedInterest": "0",
            "bonus": "0",
            "spotHedgingQty": "0",
            // Bybit leaves `free` empty on unified accounts.
            "free": "",
        }));
    }
    Ok(ok(json!({"list": [{
        "accountType": "UNIFIED",
        "totalEquity": s(m.equity),
        "totalWalletBalance": s(m.equity - m.unrealized_pnl),
        "totalMarginBalance": s(m.equity),
        "totalAvailableBalance": s(m.available),
        "totalPerpUPL": s(m.unrealized_pnl),
        "totalInitialMargin": s(m.initial_margin),
        "totalMaintenanceMargin": s(m.maintenance_margin),
        "accountIMRate": s(m.initial_margin_ratio),
        "accountMMRate": s(m.maintenance_margin_ratio),
        "accountLTV": "0",
        "coin": coins,
    }]})))
}

fn transactions(st: &State, q: &HashMap<String, String>, now: i64) -> Result<Answer, Answer> {
    if q.get("accountType").map(String::as_str) != Some("UNIFIED") {
        return Err(fail(
            10001,
            "params error: accountType only support UNIFIED",
        ));
    }
    let end: i64 = q.get("endTime").and_then(|v| v.parse().ok()).unwrap_or(now);
    let start: i64 = q
        .get("startTime")
        .and_then(|v| v.parse().ok())
        .unwrap_or(end - 24 * 3_600_000);
    if end - start > MAX_TRANSACTION_SPAN_MS {
        return Err(fail(
            10001,
            "params error: the time range must be within 7 days",
        ));
    }
    if q.get("type").is_some_and(|t| t != "SETTLEMENT") {
        return Ok(ok(json!({"list": [], "nextPageCursor": ""})));
    }
    let payments = st
        .exchange
        .funding_payments(&herd_venue::FundingPaymentQuery {
            symbol: q.get("symbol").map(|s| herd_venue::perp_symbol(s)),
            since_ms: start,
            until_ms: Some(end + 1),
            limit: 0,
        });
    let mut rows: Vec<Value> = payments
        .iter()
        .rev()
        .map(|p| {
            let (_, symbol) = bybit_symbol(&p.symbol);
            let signed = if p.side == PositionSide::Short {
                -p.size
            } else {
                p.size
            };
            json!({
                "id": p.id,
                "symbol": symbol,
                "category": "linear",
                "side": if p.side == PositionSide::Long { "Buy" } else { "Sell" },
                "transactionTime": p.time_ms.to_string(),
                "type": "SETTLEMENT",
                "qty": s(p.size),
                "size": s(signed),
                "currency": p.asset,
                "tradePrice": s(p.mark_price),
                "funding": s(p.amount),
                "fee": "",
                "cashFlow": "0",
                "change": s(p.amount),
                "cashBalance": "0",
                "feeRate": s(p.rate),
                "bonusChange": "",
                "tradeId": "",
                "orderId": "",
                "orderLinkId": "",
            })
        })
        .collect();
    if let Some(c) = q.get("currency") {
        rows.retain(|r| r.get("currency").and_then(Value::as_str) == Some(c.as_str()));
    }
    let (list, next) = page(&rows, limit_param(q, 20, 50), q.get("cursor"));
    Ok(ok(json!({"list": list, "nextPageCursor": next})))
}
