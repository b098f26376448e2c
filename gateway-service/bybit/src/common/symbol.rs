//! Herd's symbols and Bybit's (category, symbol) pairs.
//!
//! Bybit names the spot pair and the USDT perpetual on the same coin alike
//! ("BTCUSDT"). Herd keeps spot names as they are and marks perpetuals with
//! [`herd_venue::PERP_SUFFIX`]: spot "BTCUSDT" is (spot, "BTCUSDT"),
//! "BTCUSDT-PERP" is (linear, "BTCUSDT").

use herd_venue::{perp_symbol, spot_of_perp};

use super::enums::Category;

/// A Bybit instrument: its category and Bybit's symbol.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BybitSymbol {
    pub category: Category,
    pub symbol: String,
}

/// Bybit's (category, symbol) for a herd symbol.
pub fn from_herd(herd: &str) -> BybitSymbol {
    match spot_of_perp(herd) {
        Some(s) => BybitSymbol {
            category: Category::Linear,
            symbol: s.to_string(),
        },
        None => BybitSymbol {
            category: Category::Spot,
            symbol: herd.to_string(),
        },
    }
}

/// Herd's symbol for Bybit's (category, symbol).
pub fn to_herd(category: Category, symbol: &str) -> String {
    match category {
        Category::Spot => symbol.to_string(),
        Category::Linear => perp_symbol(symbol),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_table() {
        let cases = [
            ("BTCUSDT", Category::Spot, "BTCUSDT"),
            ("BTCUSDT-PERP", Category::Linear, "BTCUSDT"),
            ("1000PEPEUSDT-PERP", Category::Linear, "1000PEPEUSDT"),
        ];
        for (herd, cat, sym) in cases {
            let b = from_herd(herd);
            assert_eq!((b.category, b.symbol.as_str()), (cat, sym), "{herd}");
            assert_eq!(to_herd(cat, sym), herd);
        }
    }
}
