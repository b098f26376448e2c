//! What the orchestrator needs from a venue, in its own types: the
//! [`FundingApi`] trait. Production goes through the gateway (the engine's
//! `funding::gateway::GatewayApi`); tests plug in the paper
//! exchange directly with a manual clock, or a venue that fails on purpose.
//!
//! The trait's clock is the venue's: settlement times, minimum holds and
//! PnL timestamps all read [`FundingApi::now_ms`], so an accelerated clock
//! runs days of funding in milliseconds. Deadlines and backoff use tokio's
//! clock (paused in tests).

use std::future::Future;

pub use herd_types::{InstrumentKind, OrderStatus, Side};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// One tradable instrument's filters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstrumentSpec {
    pub symbol: String,
    pub base: String,
    pub quote: String,
    pub kind: InstrumentKind,
    /// Quantity step (10^-lot_decimals).
    pub qty_step: Decimal,
    pub min_qty: Decimal,
    /// Minimum order value in the quote coin.
    pub min_notional: Decimal,
    pub taker_fee: Decimal,
    /// Listed and trading.
    pub active: bool,
}

/// The current funding of one perpetual (the funding monitor's reading).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RateSnapshot {
    /// "BTCUSDT-PERP".
    pub symbol: String,
    /// Per funding period; > 0 means longs pay shorts.
    pub rate: Decimal,
    pub interval_hours: u32,
    pub next_funding_ms: i64,
    pub mark: Decimal,
    /// The underlying's index (the spot leg's mark).
    pub index: Decimal,
    pub turnover_24h_usd: Decimal,
    pub time_ms: i64,
}

/// Long or short (perpetual positions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PosSide {
    Long,
    Short,
}

/// An open perpetual position as the venue reports it (account-wide).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VenuePosition {
    pub symbol: String,
    pub side: PosSide,
    /// > 0.
    pub size: Decimal,
    pub entry_price: Decimal,
    pub mark_price: Decimal,
}

/// One asset's balance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BalanceInfo {
    pub asset: String,
    pub total: Decimal,
    pub free: Decimal,
}

/// The account's margin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MarginInfo {
    pub equity: Decimal,
    pub available: Decimal,
    /// Maintenance margin / equity (Bybit accountMMRate).
    pub maintenance_margin_ratio: Decimal,
}

/// A funding settlement booked to the account (positive = received).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaymentInfo {
    pub id: String,
    pub symbol: String,
    pub amount: Decimal,
    pub rate: Decimal,
    pub mark: Decimal,
    pub size: Decimal,
    pub time_ms: i64,
}

/// A market order for one leg.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LegOrder {
    pub client_order_id: String,
    pub symbol: String,
    pub side: Side,
    pub qty: Decimal,
    pub reduce_only: bool,
}

/// An order as the venue last reported it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderReport {
    pub client_order_id: String,
    pub status: OrderStatus,
    pub executed: Decimal,
    /// Average fill price (zero when nothing executed).
    pub avg_price: Decimal,
    pub fee: Decimal,
    pub fee_asset: String,
    pub reason: String,
}

/// Why a venue call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// A definite refusal: nothing happened (bad request, no funds).
    #[error("refused: {0}")]
    Refused(String),
    /// The call may or may not have taken effect (timeout, 5xx,
    /// unavailable): resolve by polling, never by resending.
    #[error("outcome unknown: {0}")]
    Unknown(String),
    /// The venue does not offer this (e.g. no funding payment history).
    #[error("unsupported: {0}")]
    Unsupported(String),
    #[error("{0}")]
    Other(String),
}

/// The venue as the orchestrator sees it. Implementations must be cheap to
/// call concurrently (two legs at once).
pub trait FundingApi: Send + Sync + 'static {
    /// The venue's wall clock, Unix ms.
    fn now_ms(&self) -> i64;
    /// A new client order id, unique across restarts.
    fn new_client_id(&self) -> String;
    /// "paper" or the live venue's name.
    fn venue_name(&self) -> String;
    /// Engine-level gate on new positions (paused or halted engine): the
    /// reason when opening is not allowed.
    fn opening_blocked(&self) -> Option<String>;

    fn instruments(&self) -> impl Future<Output = Result<Vec<InstrumentSpec>, ApiError>> + Send;
    /// Every perpetual's funding.
    fn funding_rates(&self) -> impl Future<Output = Result<Vec<RateSnapshot>, ApiError>> + Send;
    fn balances(&self) -> impl Future<Output = Result<Vec<BalanceInfo>, ApiError>> + Send;
    fn positions(&self) -> impl Future<Output = Result<Vec<VenuePosition>, ApiError>> + Send;
    fn margin(&self) -> impl Future<Output = Result<MarginInfo, ApiError>> + Send;
    /// Funding settlements of `symbol` at or after `since_ms`, oldest first.
    fn funding_payments(
        &self,
        symbol: &str,
        since_ms: i64,
    ) -> impl Future<Output = Result<Vec<PaymentInfo>, ApiError>> + Send;
    /// Places a market order; the answer may already be final.
    fn place(&self, order: &LegOrder)
    -> impl Future<Output = Result<OrderReport, ApiError>> + Send;
    /// The order's current state; `None` when the venue has never seen it.
    fn query(
        &self,
        client_order_id: &str,
    ) -> impl Future<Output = Result<Option<OrderReport>, ApiError>> + Send;
    fn cancel(
        &self,
        client_order_id: &str,
    ) -> impl Future<Output = Result<OrderReport, ApiError>> + Send;
}
