//! The venue abstraction of the gateway.
//!
//! Every exchange adapter (paper, Kraken, Bybit) implements [`Venue`] and
//! speaks the venue-neutral types defined here. All money and quantities are
//! [`Decimal`]; the gateway converts them to and from the gRPC decimal strings
//! at its edge. Errors are [`VenueError`], which knows whether a call may be
//! retried and whether an order's outcome is unknown.
//!
//! Spot venues implement the core methods only; venues with linear
//! perpetuals (paper, Bybit) also implement the funding and position methods,
//! whose defaults answer [`VenueError::Unsupported`]. Symbols: see [`perp`]
//! for how a perpetual is named ("BTCUSDT-PERP") next to its spot pair.

mod clock;
pub mod credential;
mod error;
pub mod keyinfo;
pub mod perp;
pub mod wire;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::VenueError;
pub use herd_types::{
    Instrument, InstrumentKind, NewOrder, OrderCheckError, OrderStatus, OrderType, Side,
};
pub use herd_types::{calendar, decimal};
pub use keyinfo::{ClockReading, KeyInfo, KeyPolicy, KeyVerdict};
pub use perp::{
    AccountMargin, FundingPayment, FundingPaymentQuery, FundingRate, PERP_SUFFIX, Position,
    PositionSide, perp_symbol, spot_of_perp,
};

use async_trait::async_trait;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// Best bid, best ask and last trade.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ticker {
    pub symbol: String,
    pub bid: Decimal,
    pub ask: Decimal,
    pub last: Decimal,
    pub volume_24h: Decimal,
    pub time_ms: i64,
}

/// One OHLCV candle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candle {
    pub open_time_ms: i64,
    pub open: Decimal,
    pub high: Decimal,
    pub low: Decimal,
    pub close: Decimal,
    pub volume: Decimal,
}

/// One asset's balance. `free` is what open orders do not hold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Balance {
    pub asset: String,
    pub total: Decimal,
    pub free: Decimal,
}

/// How to find an order at the venue: by the venue's id when it is known,
/// otherwise by the engine's client order id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OrderRef {
    pub client_order_id: String,
    pub venue_order_id: Option<String>,
}

/// An order as the venue last reported it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderState {
    pub client_order_id: String,
    pub venue_order_id: String,
    pub symbol: String,
    pub side: Side,
    pub order_type: OrderType,
    pub price: Option<Decimal>,
    pub volume: Decimal,
    pub volume_executed: Decimal,
    /// Average execution price, when anything executed.
    pub average_price: Option<Decimal>,
    pub fee: Decimal,
    pub fee_asset: String,
    pub status: OrderStatus,
    pub userref: i32,
    pub opened_at_ms: i64,
    pub closed_at_ms: Option<i64>,
    pub reason: Option<String>,
    pub post_only: bool,
    /// Set when the venue reported an order Herd cannot model (a type Herd
    /// never places, a conditional order, a price offset, a quote-sized
    /// order): nobody's order. The gateway tracks it as owned by no engine
    /// and never shows it to, or lets it be cancelled by, an engine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub foreign: Option<Foreign>,
}

/// What an order Herd cannot model really is, as the venue said it.
///
/// In a foreign [`OrderState`], id, symbol, side, status, times, fee and
/// `volume_executed` are the venue's; `volume` is in base units (for a
/// quote-sized order: what executed so far, the size being
/// [`Foreign::quote_volume`]); `price` is a limit price only where the
/// venue gives an absolute one, and `order_type` is Limit when it does,
/// Market otherwise. Nothing may trade on these: they are for counting
/// (a foreign open order still takes one of the pair's open-order slots)
/// and for operators.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Foreign {
    /// The venue's own words for the order's kind: Kraken's `ordertype`
    /// (`take-profit`, `trailing-stop`, `settle-position`, ...; `limit` or
    /// `market` for a quote-sized one), Bybit's `orderType` with its
    /// `orderFilter` / `stopOrderType` (`Limit StopOrder`, `Market tpslOrder`).
    pub venue_type: String,
    /// The trigger as the venue wrote it: a price (`"27000.0"`) or an offset
    /// (`"+50.0000%"`).
    pub trigger: Option<String>,
    /// The size in quote units, when the order was sized so (Kraken `viqc`,
    /// Bybit `marketUnit = quoteCoin`).
    pub quote_volume: Option<Decimal>,
}

impl OrderState {
    /// True for an order Herd cannot model (see [`OrderState::foreign`]).
    pub fn is_foreign(&self) -> bool {
        self.foreign.is_some()
    }

    /// A pending record for an order whose submit has not been answered.
    pub fn pending(order: &NewOrder, now_ms: i64) -> OrderState {
        OrderState {
            client_order_id: order.client_order_id.clone(),
            venue_order_id: String::new(),
            symbol: order.symbol.clone(),
            side: order.side,
            order_type: order.order_type,
            price: order.price,
            volume: order.volume,
            volume_executed: Decimal::ZERO,
            average_price: None,
            fee: Decimal::ZERO,
            fee_asset: String::new(),
            status: OrderStatus::Pending,
            userref: order.userref,
            opened_at_ms: now_ms,
            closed_at_ms: None,
            reason: None,
            post_only: order.post_only,
            foreign: None,
        }
    }
}

/// What a venue said to a submitted order.
// One value per order submit; boxing the common variant buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum PlaceOutcome {
    /// The venue accepted the order (it may already be filled).
    Accepted(OrderState),
    /// No answer we can trust (timeout, 5xx, "service unavailable"): the order
    /// may or may not exist. The caller keeps it in flight and resolves it by
    /// polling with the client order id; it must never be resent blindly.
    Unknown { reason: String },
}

/// One metered counter of a venue's rate limits.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BudgetCounter {
    pub name: String,
    pub level: Decimal,
    pub limit: Decimal,
    pub decay_per_second: Decimal,
}

/// The venue's rate budget as the adapter models it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BudgetSnapshot {
    pub counters: Vec<BudgetCounter>,
    pub waiting_cancels: u32,
    pub waiting_places: u32,
    pub waiting_queries: u32,
    /// Unix ms until which private calls are suspended (lockout), if any.
    pub locked_until_ms: Option<i64>,
}

/// An exchange as the gateway sees it.
///
/// Implementations own signing, nonces and their venue's rate limits; the
/// gateway owns order ownership, polling and event fan-out.
#[async_trait]
pub trait Venue: Send + Sync + 'static {
    /// Short lowercase name: "paper", "kraken", "bybit".
    fn name(&self) -> &'static str;

    async fn instruments(&self) -> Result<Vec<Instrument>, VenueError>;

    async fn ticker(&self, symbol: &str) -> Result<Ticker, VenueError>;

    /// Candles of `interval_minutes`, oldest first, opening at or after `since_ms`.
    async fn candles(
        &self,
        symbol: &str,
        interval_minutes: u32,
        since_ms: i64,
    ) -> Result<Vec<Candle>, VenueError>;

    async fn balances(&self) -> Result<Vec<Balance>, VenueError>;

    /// Submits an order. A transport-level failure whose outcome cannot be known
    /// is [`PlaceOutcome::Unknown`], not an error.
    async fn place_order(&self, order: &NewOrder) -> Result<PlaceOutcome, VenueError>;

    async fn cancel_order(&self, order: &OrderRef) -> Result<(), VenueError>;

    /// Every open order of the key, on every pair.
    async fn open_orders(&self) -> Result<Vec<OrderState>, VenueError>;

    /// The given orders, at most [`Venue::max_query_batch`] per call. Orders the
    /// venue does not know are left out of the answer.
    async fn query_orders(&self, orders: &[OrderRef]) -> Result<Vec<OrderState>, VenueError>;

    /// How many orders one `query_orders` call may name.
    fn max_query_batch(&self) -> usize {
        50
    }

    /// The adapter's model of its rate budget.
    fn budget(&self) -> BudgetSnapshot {
        BudgetSnapshot::default()
    }

    /// Longest client order id the venue accepts (Kraken's free-text
    /// `cl_ord_id`: 18; Bybit's `orderLinkId`: 36).
    fn max_client_order_id_len(&self) -> usize {
        36
    }

    /// How long after a submit a "not found" answer is final: before that an
    /// order whose submit outcome is unknown may still appear. 0 = at once.
    fn min_pending_timeout_ms(&self) -> i64 {
        0
    }

    /// Arms (or refreshes) the venue's dead man's switch: every open order of
    /// the key is cancelled unless it is refreshed within `timeout_s`
    /// seconds; 0 disarms it. `Ok(false)` when the venue has none.
    async fn arm_dead_mans_switch(&self, timeout_s: u32) -> Result<bool, VenueError> {
        let _ = timeout_s;
        Ok(false)
    }

    /// Current funding of the given perpetuals (venue-neutral symbols), or
    /// of every perpetual when `symbols` is empty.
    async fn funding_rates(&self, symbols: &[String]) -> Result<Vec<FundingRate>, VenueError> {
        let _ = symbols;
        Err(VenueError::unsupported(self.name(), "funding rates"))
    }

    /// Every open perpetual position of the account (flat ones left out).
    async fn positions(&self) -> Result<Vec<Position>, VenueError> {
        Err(VenueError::unsupported(self.name(), "positions"))
    }

    /// The account's equity and margin ratios.
    async fn account_margin(&self) -> Result<AccountMargin, VenueError> {
        Err(VenueError::unsupported(self.name(), "account margin"))
    }

    /// Funding settlements booked to the account, oldest first.
    async fn funding_payments(
        &self,
        query: &FundingPaymentQuery,
    ) -> Result<Vec<FundingPayment>, VenueError> {
        let _ = query;
        Err(VenueError::unsupported(self.name(), "funding payments"))
    }

    /// What the configured API key may do, read from the venue; `None` for
    /// a venue without keys (paper).
    async fn key_info(&self) -> Result<Option<KeyInfo>, VenueError> {
        Ok(None)
    }

    /// The venue's clock against ours, measured now; `None` when the venue
    /// has no clock to compare (paper).
    async fn clock_offset_ms(&self) -> Result<Option<ClockReading>, VenueError> {
        Ok(None)
    }

    /// The clock offset past which signed calls start to fail (Bybit's
    /// receive window; Kraken's nonce window when the key has one), ms.
    fn clock_offset_limit_ms(&self) -> Option<i64> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A spot-only venue that implements nothing beyond the core methods.
    struct SpotOnly;

    #[async_trait]
    impl Venue for SpotOnly {
        fn name(&self) -> &'static str {
            "spot-only"
        }
        async fn instruments(&self) -> Result<Vec<Instrument>, VenueError> {
            Ok(Vec::new())
        }
        async fn ticker(&self, symbol: &str) -> Result<Ticker, VenueError> {
            Err(VenueError::InvalidArgument(symbol.into()))
        }
        async fn candles(&self, _: &str, _: u32, _: i64) -> Result<Vec<Candle>, VenueError> {
            Ok(Vec::new())
        }
        async fn balances(&self) -> Result<Vec<Balance>, VenueError> {
            Ok(Vec::new())
        }
        async fn place_order(&self, o: &NewOrder) -> Result<PlaceOutcome, VenueError> {
            Err(VenueError::Rejected(o.client_order_id.clone()))
        }
        async fn cancel_order(&self, o: &OrderRef) -> Result<(), VenueError> {
            Err(VenueError::UnknownOrder(o.client_order_id.clone()))
        }
        async fn open_orders(&self) -> Result<Vec<OrderState>, VenueError> {
            Ok(Vec::new())
        }
        async fn query_orders(&self, _: &[OrderRef]) -> Result<Vec<OrderState>, VenueError> {
            Ok(Vec::new())
        }
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        // The default methods never await anything, so one poll finishes them.
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        let mut f = std::pin::pin!(f);
        loop {
            if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                return v;
            }
        }
    }

    #[test]
    fn perp_methods_default_to_unsupported() {
        let v = SpotOnly;
        let errs = [
            block_on(v.funding_rates(&[])).err(),
            block_on(v.positions()).err(),
            block_on(v.account_margin()).err(),
            block_on(v.funding_payments(&FundingPaymentQuery::default())).err(),
        ];
        for e in errs {
            let e = e.unwrap();
            assert!(matches!(e, VenueError::Unsupported(_)), "{e:?}");
            assert!(!e.is_retryable());
            assert!(e.to_string().contains("spot-only"), "{e}");
        }
    }
}
