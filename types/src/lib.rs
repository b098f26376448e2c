//! The small vocabulary the gateway's venues and the engine's strategies
//! share: order sides, types and statuses, an order to place, and an
//! instrument with its filters and the pre-trade check.
//!
//! Its own crate so the pure strategies (`herd-strategies`) can speak the
//! venues' types without depending on the `Venue` trait, an async runtime or
//! anything that does I/O. `herd-venue` re-exports every item.

pub mod calendar;
pub mod decimal;
mod instrument;

pub use instrument::{Instrument, InstrumentKind, OrderCheckError};

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// Buy or sell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Buy,
    Sell,
}

impl Side {
    /// The other side.
    pub fn opposite(self) -> Side {
        match self {
            Side::Buy => Side::Sell,
            Side::Sell => Side::Buy,
        }
    }

    /// "buy" / "sell", as Kraken and the engine's control API spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Buy => "buy",
            Side::Sell => "sell",
        }
    }
}

/// The order types Herd uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OrderType {
    Limit,
    Market,
}

/// An order's life-cycle state as the venue reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OrderStatus {
    /// Sent, outcome unknown (timeout, 5xx): resolved by polling, never resent.
    Pending,
    Open,
    Filled,
    Canceled,
    Expired,
    Rejected,
}

impl OrderStatus {
    /// True once the order can no longer change.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            OrderStatus::Filled
                | OrderStatus::Canceled
                | OrderStatus::Expired
                | OrderStatus::Rejected
        )
    }
}

/// An order to place, already validated and rounded against its instrument.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewOrder {
    pub client_order_id: String,
    pub symbol: String,
    pub side: Side,
    pub order_type: OrderType,
    pub volume: Decimal,
    /// Limit price; `None` for market orders.
    pub price: Option<Decimal>,
    pub post_only: bool,
    pub userref: i32,
    pub reduce_only: bool,
}
