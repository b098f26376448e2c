//! Conversions between the gRPC messages (decimal strings) and the venue
//! types, and request validation that names the offending field.

use herd_proto::gateway as pb;
use herd_venue::decimal::Sign;
use herd_venue::{
    AccountMargin, Balance, Candle, FundingPayment, FundingRate, Instrument, InstrumentKind,
    NewOrder, OrderState, OrderStatus, OrderType, Position, PositionSide, Side, Ticker,
};
use rust_decimal::Decimal;
use tonic::Status;

/// Longest client order id an engine may choose (the venue-facing id adds
/// the engine's prefix of at most 8 characters; Bybit allows 36 in all).
pub const MAX_CLIENT_ORDER_ID: usize = 28;

/// Parses a decimal field that is never negative (herd-types' strict
/// grammar: digits, at most one point), refusing junk, NaN, infinities and
/// numbers out of a decimal's range with a message that names the field.
pub fn parse_decimal(field: &str, s: &str) -> Result<Decimal, Status> {
    parse_with(field, s, Sign::Unsigned)
}

/// [`parse_decimal`] for a field that may be negative (a funding rate).
pub fn parse_signed_decimal(field: &str, s: &str) -> Result<Decimal, Status> {
    parse_with(field, s, Sign::Signed)
}

fn parse_with(field: &str, s: &str, sign: Sign) -> Result<Decimal, Status> {
    herd_venue::decimal::parse_decimal(s, sign)
        .map_err(|e| Status::invalid_argument(format!("{field}: {e}")))
}

pub fn validate_client_order_id(id: &str) -> Result<(), Status> {
    if id.is_empty() {
        return Err(Status::invalid_argument("client_order_id: is required"));
    }
    if id.len() > MAX_CLIENT_ORDER_ID {
        return Err(Status::invalid_argument(format!(
            "client_order_id: {} characters, at most {MAX_CLIENT_ORDER_ID}",
            id.len()
        )));
    }
    if !id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(Status::invalid_argument(format!(
            "client_order_id: {id:?} may only hold letters, digits, '-' and '_'"
        )));
    }
    Ok(())
}

/// Turns a PlaceOrder request into an unrounded venue order (engine-facing id).
pub fn new_order_from_pb(r: &pb::PlaceOrderRequest) -> Result<NewOrder, Status> {
    validate_client_order_id(&r.client_order_id)?;
    if r.symbol.trim().is_empty() {
        return Err(Status::invalid_argument("symbol: is required"));
    }
    let side = match pb::Side::try_from(r.side) {
        Ok(pb::Side::Buy) => Side::Buy,
        Ok(pb::Side::Sell) => Side::Sell,
        _ => {
            return Err(Status::invalid_argument(
                "side: must be SIDE_BUY or SIDE_SELL",
            ));
        }
    };
    let order_type = match pb::OrderType::try_from(r.order_type) {
        Ok(pb::OrderType::Limit) => OrderType::Limit,
        Ok(pb::OrderType::Market) => OrderType::Market,
        _ => {
            return Err(Status::invalid_argument(
                "order_type: must be ORDER_TYPE_LIMIT or ORDER_TYPE_MARKET",
            ));
        }
    };
    let volume = parse_decimal("volume", &r.volume)?;
    if volume <= Decimal::ZERO {
        return Err(Status::invalid_argument(format!(
            "volume: must be greater than zero, got {volume}"
        )));
    }
    let price = match order_type {
        OrderType::Limit => {
            let p = parse_decimal("price", &r.price)?;
            if p <= Decimal::ZERO {
                return Err(Status::invalid_argument(format!(
                    "price: must be greater than zero, got {p}"
                )));
            }
            Some(p)
        }
        OrderType::Market if !r.price.trim().is_empty() => {
            return Err(Status::invalid_argument(
                "price: a market order takes no price",
            ));
        }
        OrderType::Market => None,
    };
    Ok(NewOrder {
        client_order_id: r.client_order_id.clone(),
        symbol: r.symbol.clone(),
        side,
        order_type,
        volume,
        price,
        post_only: r.post_only,
        userref: r.userref,
        reduce_only: r.reduce_only,
    })
}

fn side_pb(s: Side) -> pb::Side {
    match s {
        Side::Buy => pb::Side::Buy,
        Side::Sell => pb::Side::Sell,
    }
}

pub fn status_pb(s: OrderStatus) -> pb::OrderStatus {
    match s {
        OrderStatus::Pending => pb::OrderStatus::Pending,
        OrderStatus::Open => pb::OrderStatus::Open,
        OrderStatus::Filled => pb::OrderStatus::Filled,
        OrderStatus::Canceled => pb::OrderStatus::Canceled,
        OrderStatus::Expired => pb::OrderStatus::Expired,
        OrderStatus::Rejected => pb::OrderStatus::Rejected,
    }
}

fn opt_decimal(d: Option<Decimal>) -> String {
    d.map(|d| d.normalize().to_string()).unwrap_or_default()
}

/// The engine-facing view of an order: the venue prefix is removed.
pub fn order_to_pb(o: &OrderState, prefix: &str) -> pb::Order {
    pb::Order {
        client_order_id: o
            .client_order_id
            .strip_prefix(prefix)
            .unwrap_or(&o.client_order_id)
            .to_string(),
        venue_order_id: o.venue_order_id.clone(),
        symbol: o.symbol.clone(),
        side: side_pb(o.side) as i32,
        order_type: match o.order_type {
            OrderType::Limit => pb::OrderType::Limit,
            OrderType::Market => pb::OrderType::Market,
        } as i32,
        price: opt_decimal(o.price),
        volume: o.volume.normalize().to_string(),
        volume_executed: o.volume_executed.normalize().to_string(),
        average_price: opt_decimal(o.average_price),
        fee: o.fee.normalize().to_string(),
        fee_asset: o.fee_asset.clone(),
        status: status_pb(o.status) as i32,
        userref: o.userref,
        opened_at_ms: o.opened_at_ms,
        closed_at_ms: o.closed_at_ms.unwrap_or(0),
        reason: o.reason.clone().unwrap_or_default(),
        post_only: o.post_only,
    }
}

pub fn instrument_to_pb(i: &Instrument) -> pb::Instrument {
    pb::Instrument {
        symbol: i.symbol.clone(),
        base: i.base.clone(),
        quote: i.quote.clone(),
        kind: match i.kind {
            InstrumentKind::Spot => pb::InstrumentKind::Spot,
            InstrumentKind::Perpetual => pb::InstrumentKind::Perpetual,
        } as i32,
        tick_size: i.tick_size.normalize().to_string(),
        price_decimals: i.price_decimals,
        lot_decimals: i.lot_decimals,
        min_volume: i.min_volume.normalize().to_string(),
        min_cost: i.min_cost.normalize().to_string(),
        maker_fee: i.maker_fee.normalize().to_string(),
        taker_fee: i.taker_fee.normalize().to_string(),
        max_open_orders: i.max_open_orders,
    }
}

pub fn ticker_to_pb(t: &Ticker) -> pb::Ticker {
    pb::Ticker {
        symbol: t.symbol.clone(),
        bid: t.bid.normalize().to_string(),
        ask: t.ask.normalize().to_string(),
        last: t.last.normalize().to_string(),
        volume_24h: t.volume_24h.normalize().to_string(),
        time_ms: t.time_ms,
    }
}

pub fn candle_to_pb(c: &Candle) -> pb::Candle {
    pb::Candle {
        open_time_ms: c.open_time_ms,
        open: c.open.normalize().to_string(),
        high: c.high.normalize().to_string(),
        low: c.low.normalize().to_string(),
        close: c.close.normalize().to_string(),
        volume: c.volume.normalize().to_string(),
    }
}

pub fn balance_to_pb(b: &Balance) -> pb::Balance {
    pb::Balance {
        asset: b.asset.clone(),
        total: b.total.normalize().to_string(),
        free: b.free.normalize().to_string(),
    }
}

fn dec(d: Decimal) -> String {
    d.normalize().to_string()
}

fn position_side_pb(s: PositionSide) -> pb::PositionSide {
    match s {
        PositionSide::Long => pb::PositionSide::Long,
        PositionSide::Short => pb::PositionSide::Short,
    }
}

pub fn funding_rate_to_pb(f: &FundingRate) -> pb::FundingRate {
    pb::FundingRate {
        symbol: f.symbol.clone(),
        rate: dec(f.rate),
        interval_hours: f.interval_hours,
        next_funding_ms: f.next_funding_ms,
        mark: dec(f.mark),
        index: dec(f.index),
        last: dec(f.last),
        turnover_24h_usd: dec(f.turnover_24h_usd),
        time_ms: f.time_ms,
    }
}

pub fn position_to_pb(p: &Position) -> pb::Position {
    pb::Position {
        symbol: p.symbol.clone(),
        side: position_side_pb(p.side) as i32,
        size: dec(p.size),
        entry_price: dec(p.entry_price),
        mark_price: dec(p.mark_price),
        unrealized_pnl: dec(p.unrealized_pnl),
        realized_pnl: dec(p.realized_pnl),
        notional: dec(p.notional),
        initial_margin: dec(p.initial_margin),
        maintenance_margin: dec(p.maintenance_margin),
        leverage: dec(p.leverage),
        liquidation_price: opt_decimal(p.liquidation_price),
        settle_asset: p.settle_asset.clone(),
        updated_ms: p.updated_ms,
    }
}

pub fn margin_to_pb(m: &AccountMargin) -> pb::GetAccountMarginResponse {
    pb::GetAccountMarginResponse {
        asset: m.asset.clone(),
        equity: dec(m.equity),
        available: dec(m.available),
        initial_margin: dec(m.initial_margin),
        maintenance_margin: dec(m.maintenance_margin),
        initial_margin_ratio: dec(m.initial_margin_ratio),
        maintenance_margin_ratio: dec(m.maintenance_margin_ratio),
        unrealized_pnl: dec(m.unrealized_pnl),
        time_ms: m.time_ms,
    }
}

pub fn funding_payment_to_pb(f: &FundingPayment) -> pb::FundingPayment {
    pb::FundingPayment {
        id: f.id.clone(),
        symbol: f.symbol.clone(),
        amount: dec(f.amount),
        asset: f.asset.clone(),
        time_ms: f.time_ms,
        side: position_side_pb(f.side) as i32,
        size: dec(f.size),
        rate: dec(f.rate),
        mark_price: dec(f.mark_price),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(volume: &str, price: &str) -> pb::PlaceOrderRequest {
        pb::PlaceOrderRequest {
            client_order_id: "abc-1".into(),
            symbol: "DOGEUSD".into(),
            side: pb::Side::Buy as i32,
            order_type: pb::OrderType::Limit as i32,
            volume: volume.into(),
            price: price.into(),
            post_only: true,
            userref: 0,
            reduce_only: false,
            strategy: String::new(),
        }
    }

    #[test]
    fn bad_input_names_the_field() {
        let cases = [
            (req("0", "0.1"), "volume"),
            (req("-1", "0.1"), "volume"),
            (req("abc", "0.1"), "volume"),
            (req("10", "NaN"), "price"),
            (req("10", "inf"), "price"),
            (req("10", ""), "price"),
            (req("10", "-0.1"), "price"),
            (
                pb::PlaceOrderRequest {
                    client_order_id: String::new(),
                    ..req("10", "0.1")
                },
                "client_order_id",
            ),
            (
                pb::PlaceOrderRequest {
                    client_order_id: "has space".into(),
                    ..req("10", "0.1")
                },
                "client_order_id",
            ),
            (
                pb::PlaceOrderRequest {
                    side: 0,
                    ..req("10", "0.1")
                },
                "side",
            ),
        ];
        for (r, field) in cases {
            let err = new_order_from_pb(&r).unwrap_err();
            assert_eq!(err.code(), tonic::Code::InvalidArgument);
            assert!(
                err.message().starts_with(field),
                "{field}: {}",
                err.message()
            );
        }
        assert!(new_order_from_pb(&req("10", "0.1")).is_ok());
    }

    /// The strict grammar (herd-types' `decimal`) at PlaceOrder: what
    /// rust_decimal's `from_str` would take is refused, naming the field, and
    /// a number too large for a decimal is "out of range".
    #[test]
    fn decimals_follow_the_strict_grammar() {
        let cases = [
            (
                req("1_000", "0.1"),
                "volume: \"1_000\" is not a decimal number",
            ),
            (
                req("10", "0.0_5"),
                "price: \"0.0_5\" is not a decimal number",
            ),
            (
                req("+100", "0.1"),
                "volume: \"+100\" is not a decimal number",
            ),
            (
                req(" 100 ", "0.1"),
                "volume: \" 100 \" is not a decimal number",
            ),
            (req("1e1", "0.1"), "volume: \"1e1\" is not a decimal number"),
            (req("10", "-0.1"), "price: \"-0.1\" must not be negative"),
            (req("10", ""), "price: is required"),
            (
                req("10", "123456789012345678901234567890"),
                "price: \"123456789012345678901234567890\" is out of range",
            ),
        ];
        for (r, want) in cases {
            let err = new_order_from_pb(&r).unwrap_err();
            assert_eq!(err.code(), tonic::Code::InvalidArgument);
            assert!(err.message().starts_with(want), "{want}: {}", err.message());
        }
    }
}
