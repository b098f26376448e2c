//! The funding API's answers read off a paper matching core
//! ([`herd_paper::Exchange`]): what a [`FundingApi`] over an in-process
//! exchange answers, for the backtester's funding orchestrator (herdctl's
//! `backtest_funding`) and the engine's own funding tests. Plain functions
//! (no runtime: this crate has none); locking and the clock are the
//! caller's.
//!
//! [`FundingApi`]: herd_strategies::funding::api::FundingApi

use herd_paper::Exchange;
use herd_strategies::funding::api::{
    ApiError, BalanceInfo, InstrumentSpec, LegOrder, MarginInfo, OrderReport, PaymentInfo, PosSide,
    RateSnapshot, VenuePosition,
};
use herd_venue::{FundingPaymentQuery, NewOrder, OrderState, OrderType, PositionSide};
use rust_decimal::Decimal;

/// Every instrument, as the orchestrator sizes legs with it.
pub fn instruments(ex: &Exchange) -> Vec<InstrumentSpec> {
    ex.instruments()
        .into_iter()
        .map(|i| InstrumentSpec {
            qty_step: Decimal::new(1, i.lot_decimals),
            min_qty: i.min_volume,
            min_notional: i.min_cost,
            taker_fee: i.taker_fee,
            kind: i.kind,
            symbol: i.symbol,
            base: i.base,
            quote: i.quote,
            active: true,
        })
        .collect()
}

/// Every perpetual's current funding rate.
pub fn funding_rates(ex: &Exchange) -> Result<Vec<RateSnapshot>, ApiError> {
    let rates = ex
        .funding_rates(&[])
        .map_err(|e| ApiError::Other(e.to_string()))?;
    Ok(rates
        .into_iter()
        .map(|r| RateSnapshot {
            symbol: r.symbol,
            rate: r.rate,
            interval_hours: r.interval_hours,
            next_funding_ms: r.next_funding_ms,
            mark: r.mark,
            index: r.index,
            turnover_24h_usd: r.turnover_24h_usd,
            time_ms: r.time_ms,
        })
        .collect())
}

pub fn balances(ex: &Exchange) -> Vec<BalanceInfo> {
    ex.balances()
        .into_iter()
        .map(|b| BalanceInfo {
            asset: b.asset,
            total: b.total,
            free: b.free,
        })
        .collect()
}

pub fn positions(ex: &Exchange) -> Vec<VenuePosition> {
    ex.positions()
        .into_iter()
        .map(|p| VenuePosition {
            symbol: p.symbol,
            side: match p.side {
                PositionSide::Long => PosSide::Long,
                PositionSide::Short => PosSide::Short,
            },
            size: p.size,
            entry_price: p.entry_price,
            mark_price: p.mark_price,
        })
        .collect()
}

pub fn margin(ex: &Exchange, now_ms: i64) -> MarginInfo {
    let m = ex.account_margin(now_ms);
    MarginInfo {
        equity: m.equity,
        available: m.available,
        maintenance_margin_ratio: m.maintenance_margin_ratio,
    }
}

/// The payments booked on `symbol` since `since_ms`.
pub fn funding_payments(ex: &Exchange, symbol: &str, since_ms: i64) -> Vec<PaymentInfo> {
    let q = FundingPaymentQuery {
        symbol: Some(symbol.to_string()),
        since_ms,
        until_ms: None,
        limit: 0,
    };
    ex.funding_payments(&q)
        .into_iter()
        .map(|p| PaymentInfo {
            id: p.id,
            symbol: p.symbol,
            amount: p.amount,
            rate: p.rate,
            mark: p.mark_price,
            size: p.size,
            time_ms: p.time_ms,
        })
        .collect()
}

/// A leg as the market order the venue gets.
pub fn market_order(order: &LegOrder) -> NewOrder {
    NewOrder {
        client_order_id: order.client_order_id.clone(),
        symbol: order.symbol.clone(),
        side: order.side,
        order_type: OrderType::Market,
        volume: order.qty,
        price: None,
        post_only: false,
        userref: 0,
        reduce_only: order.reduce_only,
    }
}

/// An order's state as the orchestrator reads it.
pub fn report(o: &OrderState) -> OrderReport {
    OrderReport {
        client_order_id: o.client_order_id.clone(),
        status: o.status,
        executed: o.volume_executed,
        avg_price: o.average_price.unwrap_or_default(),
        fee: o.fee,
        fee_asset: o.fee_asset.clone(),
        reason: o.reason.clone().unwrap_or_default(),
    }
}
