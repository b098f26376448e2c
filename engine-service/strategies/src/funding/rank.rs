//! The opportunity ranker: which perpetuals pay enough funding to be worth
//! a hedge (spot long + perp short), best first. Pure.
//!
//! ```text
//! round_trip     = (spot_taker + perp_taker) * 2
//! amortized      = round_trip / min_holding_periods
//! net_per_period = rate - amortized
//! annualized     = net_per_period * (8760 / interval_hours)
//! ```
//! Filters: rate >= min_rate, 24 h turnover (USD, not base volume) >=
//! min_turnover_usd, an active spot market on the same pair exists, and
//! net_per_period > 0.

use std::collections::HashMap;

use rust_decimal::Decimal;
use serde::Serialize;

use crate::funding::api::{InstrumentKind, InstrumentSpec, RateSnapshot};

/// Hours in a (non-leap) year.
pub const HOURS_PER_YEAR: u32 = 8760;

/// What the ranker reads besides the rates.
#[derive(Debug, Clone, PartialEq)]
pub struct RankParams {
    pub min_rate: Decimal,
    pub min_turnover_usd: Decimal,
    pub min_holding_periods: u32,
    /// Taker fees used when an instrument does not report its own.
    pub default_spot_fee: Decimal,
    pub default_perp_fee: Decimal,
    /// Only these perpetuals; empty = all.
    pub symbols: Vec<String>,
}

/// One ranked perpetual.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Opportunity {
    pub symbol: String,
    pub spot_symbol: String,
    pub rate: Decimal,
    pub interval_hours: u32,
    pub round_trip_fee: Decimal,
    pub amortized_fee: Decimal,
    pub net_per_period: Decimal,
    pub annualized: Decimal,
    pub turnover_24h_usd: Decimal,
    pub mark: Decimal,
    pub index: Decimal,
}

/// The spot pair of a perpetual's symbol ("BTCUSDT-PERP" -> "BTCUSDT").
pub fn spot_of(perp: &str) -> Option<&str> {
    perp.strip_suffix("-PERP").filter(|s| !s.is_empty())
}

/// Yield per period after fees, annualised by the symbol's interval.
pub fn net_and_annualized(
    rate: Decimal,
    spot_fee: Decimal,
    perp_fee: Decimal,
    min_holding_periods: u32,
    interval_hours: u32,
) -> (Decimal, Decimal, Decimal, Decimal) {
    let round_trip = (spot_fee + perp_fee) * Decimal::TWO;
    let amortized = round_trip / Decimal::from(min_holding_periods.max(1));
    let net = rate - amortized;
    let periods_per_year = Decimal::from(HOURS_PER_YEAR) / Decimal::from(interval_hours.max(1));
    (round_trip, amortized, net, net * periods_per_year)
}

/// Ranks `rates` (the funding monitor's last scan) against the listed
/// `instruments`; best annualised yield first, ties by symbol.
pub fn rank(
    rates: &[RateSnapshot],
    instruments: &HashMap<String, InstrumentSpec>,
    p: &RankParams,
) -> Vec<Opportunity> {
    let mut out: Vec<Opportunity> = rates
        .iter()
        .filter(|r| p.symbols.is_empty() || p.symbols.contains(&r.symbol))
        .filter(|r| r.rate >= p.min_rate)
        .filter(|r| r.turnover_24h_usd >= p.min_turnover_usd)
        .filter_map(|r| {
            let spot_symbol = spot_of(&r.symbol)?;
            let spot = instruments
                .get(spot_symbol)
                .filter(|s| s.kind == InstrumentKind::Spot && s.active)?;
            let perp_fee = instruments
                .get(&r.symbol)
                .map_or(p.default_perp_fee, |i| i.taker_fee);
            let (round_trip, amortized, net, annualized) = net_and_annualized(
                r.rate,
                spot.taker_fee,
                perp_fee,
                p.min_holding_periods,
                r.interval_hours,
            );
            (net > Decimal::ZERO).then(|| Opportunity {
                symbol: r.symbol.clone(),
                spot_symbol: spot_symbol.to_string(),
                rate: r.rate,
                interval_hours: r.interval_hours,
                round_trip_fee: round_trip,
                amortized_fee: amortized,
                net_per_period: net,
                annualized,
                turnover_24h_usd: r.turnover_24h_usd,
                mark: r.mark,
                index: r.index,
            })
        })
        .collect();
    out.sort_by(|a, b| {
        b.annualized
            .cmp(&a.annualized)
            .then_with(|| a.symbol.cmp(&b.symbol))
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn spot(symbol: &str, fee: Decimal, active: bool) -> InstrumentSpec {
        InstrumentSpec {
            symbol: symbol.into(),
            base: symbol.trim_end_matches("USDT").into(),
            quote: "USDT".into(),
            kind: InstrumentKind::Spot,
            qty_step: dec!(0.001),
            min_qty: dec!(0.001),
            min_notional: dec!(1),
            taker_fee: fee,
            active,
        }
    }

    fn perp(symbol: &str, fee: Decimal) -> InstrumentSpec {
        InstrumentSpec {
            kind: InstrumentKind::Perpetual,
            ..spot(symbol, fee, true)
        }
    }

    fn rate(symbol: &str, rate: Decimal, hours: u32, turnover: Decimal) -> RateSnapshot {
        RateSnapshot {
            symbol: symbol.into(),
            rate,
            interval_hours: hours,
            next_funding_ms: 0,
            mark: dec!(100),
            index: dec!(100),
            turnover_24h_usd: turnover,
            time_ms: 0,
        }
    }

    /// Hand-computed yields for 8 h, 4 h and 1 h intervals.
    #[test]
    fn annualized_yield_table() {
        struct Case {
            name: &'static str,
            rate: Decimal,
            spot_fee: Decimal,
            perp_fee: Decimal,
            periods: u32,
            hours: u32,
            net: Decimal,
            annualized: Decimal,
        }
        let cases = [
            // Spec defaults: (0.001 + 0.00055) * 2 = 0.0031, / 3 = 0.00103333...;
            // 0.0015 - 0.00103333 = 0.00046667 per 8 h; * 1095 = 0.511.
            Case {
                name: "8 h, the seed's fees",
                rate: dec!(0.0015),
                spot_fee: dec!(0.001),
                perp_fee: dec!(0.00055),
                periods: 3,
                hours: 8,
                net: dec!(0.0004666667),
                annualized: dec!(0.511),
            },
            // 0.003 / 3 = 0.001; 0.0012 - 0.001 = 0.0002 per 4 h; * 2190 = 0.438.
            Case {
                name: "4 h",
                rate: dec!(0.0012),
                spot_fee: dec!(0.001),
                perp_fee: dec!(0.0005),
                periods: 3,
                hours: 4,
                net: dec!(0.0002),
                annualized: dec!(0.438),
            },
            // 0.003 / 30 = 0.0001; 0.0004 - 0.0001 = 0.0003 per 1 h; * 8760 = 2.628.
            Case {
                name: "1 h",
                rate: dec!(0.0004),
                spot_fee: dec!(0.001),
                perp_fee: dec!(0.0005),
                periods: 30,
                hours: 1,
                net: dec!(0.0003),
                annualized: dec!(2.628),
            },
            // 0.0031 / 21 = 0.00014762; 0.0005 - 0.00014762 = 0.00035238; * 1095 = 0.38585714.
            Case {
                name: "8 h held a week",
                rate: dec!(0.0005),
                spot_fee: dec!(0.001),
                perp_fee: dec!(0.00055),
                periods: 21,
                hours: 8,
                net: dec!(0.0003523810),
                annualized: dec!(0.3858571),
            },
        ];
        for c in cases {
            let (_, _, net, annualized) =
                net_and_annualized(c.rate, c.spot_fee, c.perp_fee, c.periods, c.hours);
            assert_eq!(net.round_dp(10), c.net, "{}: net", c.name);
            assert_eq!(
                annualized.round_dp(7),
                c.annualized.round_dp(7),
                "{}: annualized",
                c.name
            );
        }
    }

    #[test]
    fn filters_and_order() {
        let fee = dec!(0.001);
        let pfee = dec!(0.0005);
        let instruments: HashMap<String, InstrumentSpec> = [
            spot("AAAUSDT", fee, true),
            perp("AAAUSDT-PERP", pfee),
            spot("BBBUSDT", fee, true),
            perp("BBBUSDT-PERP", pfee),
            spot("CCCUSDT", fee, true),
            spot("DDDUSDT", fee, false),
            spot("EEEUSDT", fee, true),
            spot("FFFUSDT", fee, true),
        ]
        .into_iter()
        .map(|i| (i.symbol.clone(), i))
        .collect();
        let big = dec!(5000000);
        let rates = [
            // 8 h: 0.0005 net * 1095 = 0.5475.
            rate("AAAUSDT-PERP", dec!(0.0015), 8, big),
            // 4 h: 0.0002 * 2190 = 0.438.
            rate("BBBUSDT-PERP", dec!(0.0012), 4, big),
            // Turnover 999,999.99 USD: out.
            rate("CCCUSDT-PERP", dec!(0.003), 8, dec!(999999.99)),
            // Spot market not active: out.
            rate("DDDUSDT-PERP", dec!(0.003), 8, big),
            // No spot market at all: out.
            rate("ZZZUSDT-PERP", dec!(0.003), 8, big),
            // Below min_rate: out.
            rate("EEEUSDT-PERP", dec!(0.00029), 8, big),
            // Above min_rate but net <= 0 after fees: out.
            rate("FFFUSDT-PERP", dec!(0.001), 8, big),
        ];
        let p = RankParams {
            min_rate: dec!(0.0003),
            min_turnover_usd: dec!(1000000),
            min_holding_periods: 3,
            default_spot_fee: fee,
            default_perp_fee: pfee,
            symbols: vec![],
        };
        let ranked = rank(&rates, &instruments, &p);
        let names: Vec<&str> = ranked.iter().map(|o| o.symbol.as_str()).collect();
        assert_eq!(names, vec!["AAAUSDT-PERP", "BBBUSDT-PERP"]);
        assert_eq!(ranked[0].annualized, dec!(0.5475));
        assert_eq!(ranked[0].spot_symbol, "AAAUSDT");
        assert_eq!(ranked[1].annualized, dec!(0.438));
        let only_b = RankParams {
            symbols: vec!["BBBUSDT-PERP".into()],
            ..p
        };
        assert_eq!(rank(&rates, &instruments, &only_b).len(), 1);
    }
}
