//! Kraken's fixed numbers and names, defined once.

/// Environment variable holding the API key.
pub const ENV_API_KEY: &str = "KRAKEN_API_KEY";
/// Environment variable holding the base64 API secret.
pub const ENV_API_SECRET: &str = "KRAKEN_API_SECRET";

/// Venue name reported by [`herd_venue::Venue::name`].
pub const VENUE_NAME: &str = "kraken";

/// QueryOrders accepts at most this many txids per call.
pub const QUERY_ORDERS_MAX_TXIDS: usize = 50;

/// How long Kraken's temporary lockout lasts when it does not say (about 15 min).
pub const DEFAULT_LOCKOUT_MS: i64 = 15 * 60 * 1000;

/// Default User-Agent: Kraken refuses requests without one.
pub const DEFAULT_USER_AGENT: &str = concat!("herd-kraken/", env!("CARGO_PKG_VERSION"));

/// REST counter cost of an ordinary private call.
pub const REST_COST_DEFAULT: f64 = 1.0;
/// REST counter cost of ledger and trade-history calls.
pub const REST_COST_HISTORY: f64 = 2.0;
/// Trading counter cost of AddOrder.
pub const TRADING_COST_ADD_ORDER: f64 = 1.0;

/// Public endpoints: about one call per second per IP, no burst.
pub const PUBLIC_LIMIT: f64 = 1.0;
pub const PUBLIC_DECAY_PER_S: f64 = 1.0;

/// Trading counter penalty of cancelling an order of the given age, in ms.
///
/// From Kraken's spot rate-limit table: < 5 s +8, < 10 s +6, < 15 s +5,
/// < 45 s +4, < 90 s +2, < 300 s +1, older 0.
pub fn cancel_penalty(age_ms: i64) -> f64 {
    match age_ms {
        a if a < 5_000 => 8.0,
        a if a < 10_000 => 6.0,
        a if a < 15_000 => 5.0,
        a if a < 45_000 => 4.0,
        a if a < 90_000 => 2.0,
        a if a < 300_000 => 1.0,
        _ => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancel_penalty_table() {
        let cases = [
            (0, 8.0),
            (4_999, 8.0),
            (5_000, 6.0),
            (9_999, 6.0),
            (10_000, 5.0),
            (14_999, 5.0),
            (15_000, 4.0),
            (44_999, 4.0),
            (45_000, 2.0),
            (89_999, 2.0),
            (90_000, 1.0),
            (299_999, 1.0),
            (300_000, 0.0),
            (10_000_000, 0.0),
            (-5, 8.0),
        ];
        for (age, want) in cases {
            assert_eq!(cancel_penalty(age), want, "age {age} ms");
        }
    }
}
