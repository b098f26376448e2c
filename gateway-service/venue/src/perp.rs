//! Venue-neutral types for linear perpetuals and funding: funding rates,
//! positions, account margin and funding payments.
//!
//! Naming: a spot pair keeps the venue's name ("BTCUSDT"); a USDT linear
//! perpetual on the same underlying is the spot name plus [`PERP_SUFFIX`]
//! ("BTCUSDT-PERP"), because Bybit names both "BTCUSDT" and the gateway's
//! symbols must be unique across kinds. [`perp_symbol`] and [`spot_of_perp`]
//! convert between them.
//!
//! Signs: a funding `rate` > 0 means longs pay shorts. A [`FundingPayment`]'s
//! `amount` is from the account's point of view: positive = received.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// Suffix that marks a linear perpetual's venue-neutral symbol.
pub const PERP_SUFFIX: &str = "-PERP";

/// The venue-neutral symbol of the perpetual on `base_quote` ("BTCUSDT" ->
/// "BTCUSDT-PERP").
pub fn perp_symbol(base_quote: &str) -> String {
    format!("{base_quote}{PERP_SUFFIX}")
}

/// The spot symbol a perpetual's symbol names ("BTCUSDT-PERP" -> "BTCUSDT"),
/// or `None` when `symbol` is not a perpetual's.
pub fn spot_of_perp(symbol: &str) -> Option<&str> {
    symbol.strip_suffix(PERP_SUFFIX).filter(|s| !s.is_empty())
}

/// Long or short.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PositionSide {
    Long,
    Short,
}

impl PositionSide {
    /// +1 for long, -1 for short.
    pub fn sign(self) -> Decimal {
        match self {
            PositionSide::Long => Decimal::ONE,
            PositionSide::Short => Decimal::NEGATIVE_ONE,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PositionSide::Long => "long",
            PositionSide::Short => "short",
        }
    }
}

/// The current funding of one perpetual.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FundingRate {
    /// Venue-neutral perpetual symbol ("BTCUSDT-PERP").
    pub symbol: String,
    /// Rate for the current interval; > 0 means longs pay shorts.
    pub rate: Decimal,
    /// Hours between settlements (8 by default; 4 and 1 exist).
    pub interval_hours: u32,
    /// Unix ms of the next settlement.
    pub next_funding_ms: i64,
    pub mark: Decimal,
    pub index: Decimal,
    pub last: Decimal,
    /// 24 h traded value in USD (quote), not base volume.
    pub turnover_24h_usd: Decimal,
    /// When the venue reported it, Unix ms.
    pub time_ms: i64,
}

/// One open position (one-way mode: at most one per symbol).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Position {
    /// Venue-neutral perpetual symbol.
    pub symbol: String,
    pub side: PositionSide,
    /// Base quantity, always > 0 (flat positions are not reported).
    pub size: Decimal,
    /// Average entry price.
    pub entry_price: Decimal,
    pub mark_price: Decimal,
    /// (mark - entry) * size * side sign.
    pub unrealized_pnl: Decimal,
    /// Realized PnL since the position opened (fees and funding included
    /// where the venue books them there).
    pub realized_pnl: Decimal,
    /// size * mark.
    pub notional: Decimal,
    pub initial_margin: Decimal,
    pub maintenance_margin: Decimal,
    pub leverage: Decimal,
    /// `None` when the venue reports none (e.g. fully collateralised).
    pub liquidation_price: Option<Decimal>,
    /// Settlement asset ("USDT").
    pub settle_asset: String,
    pub updated_ms: i64,
}

/// The margin state of the whole account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccountMargin {
    /// Asset the amounts are in ("USD" on Bybit's unified account, "USDT" on paper).
    pub asset: String,
    /// Total equity (balances at market plus unrealized PnL).
    pub equity: Decimal,
    /// What new positions and orders may still use.
    pub available: Decimal,
    pub initial_margin: Decimal,
    pub maintenance_margin: Decimal,
    /// initial_margin / equity (Bybit accountIMRate).
    pub initial_margin_ratio: Decimal,
    /// maintenance_margin / equity (Bybit accountMMRate); 1 means liquidation.
    pub maintenance_margin_ratio: Decimal,
    pub unrealized_pnl: Decimal,
    pub time_ms: i64,
}

/// One funding settlement booked to the account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FundingPayment {
    /// The venue's id of the booking, unique per account (for de-duplication).
    pub id: String,
    /// Venue-neutral perpetual symbol.
    pub symbol: String,
    /// Positive = received, negative = paid.
    pub amount: Decimal,
    pub asset: String,
    /// Settlement time, Unix ms.
    pub time_ms: i64,
    pub side: PositionSide,
    /// Position size at settlement (base, > 0).
    pub size: Decimal,
    /// The funding rate applied.
    pub rate: Decimal,
    /// Mark price used for the settlement.
    pub mark_price: Decimal,
}

impl FundingPayment {
    /// What a settlement pays a position: longs pay `size * mark * rate` when
    /// the rate is positive, shorts receive it.
    pub fn settle_amount(
        side: PositionSide,
        size: Decimal,
        mark: Decimal,
        rate: Decimal,
    ) -> Decimal {
        -side.sign() * size * mark * rate
    }
}

/// Which funding payments to list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FundingPaymentQuery {
    /// Only this perpetual; `None` = every symbol.
    pub symbol: Option<String>,
    /// Settlements at or after this Unix ms.
    pub since_ms: i64,
    /// Settlements before this Unix ms; `None` = up to now.
    pub until_ms: Option<i64>,
    /// At most this many (the newest are dropped first); 0 = venue default.
    pub limit: u32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn naming_round_trips() {
        assert_eq!(perp_symbol("BTCUSDT"), "BTCUSDT-PERP");
        assert_eq!(spot_of_perp("BTCUSDT-PERP"), Some("BTCUSDT"));
        assert_eq!(spot_of_perp("BTCUSDT"), None);
        assert_eq!(spot_of_perp("-PERP"), None);
    }

    #[test]
    fn funding_sign_table() {
        let cases = [
            (PositionSide::Short, dec!(0.0001), dec!(0.5)),
            (PositionSide::Long, dec!(0.0001), dec!(-0.5)),
            (PositionSide::Short, dec!(-0.0001), dec!(-0.5)),
            (PositionSide::Long, dec!(-0.0001), dec!(0.5)),
        ];
        for (side, rate, want) in cases {
            let got = FundingPayment::settle_amount(side, dec!(0.1), dec!(50000), rate);
            assert_eq!(got, want, "{side:?} at {rate}");
        }
    }
}
