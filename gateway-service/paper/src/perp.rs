//! Linear perpetuals on the paper venue: their configuration, the mark
//! price's basis to the underlying spot, the seeded funding-rate path and
//! one-way position arithmetic.
//!
//! A perpetual's mark follows its underlying spot pair times (1 + basis),
//! where the basis is a small mean-reverting walk. Its funding rate moves
//! once per settlement: it keeps `persistence` of its distance to
//! `mean_rate` and adds noise, so a pair configured with a high start and a
//! low mean decays, one with a high mean stays rich. Settlements happen at
//! multiples of the interval since the Unix epoch (00:00, 08:00, 16:00 UTC
//! for 8 h), and a positive rate moves `size * mark * rate` from longs to
//! shorts.

use herd_venue::PositionSide;
use rust_decimal::Decimal;
use rust_decimal::prelude::{FromPrimitive, ToPrimitive};
use serde::{Deserialize, Serialize};

use crate::path::SplitMix64;

const HOUR_MS: i64 = 3_600_000;
/// Funding rates are kept to this many decimal places (Bybit shows 8).
const RATE_DECIMALS: u32 = 8;

/// The funding-rate path of one perpetual, per settlement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FundingPathConfig {
    pub seed: u64,
    /// Rate of the first interval.
    #[serde(deserialize_with = "herd_venue::decimal::deserialize")]
    pub start_rate: Decimal,
    /// Where the rate drifts to.
    #[serde(deserialize_with = "herd_venue::decimal::deserialize")]
    pub mean_rate: Decimal,
    /// Share of the distance to the mean kept per settlement (0 = jumps to
    /// the mean at once, 1 = never moves towards it).
    pub persistence: f64,
    /// Standard deviation of the noise added per settlement (absolute rate).
    pub volatility: f64,
    /// The venue's cap on the rate, either sign.
    #[serde(deserialize_with = "herd_venue::decimal::deserialize")]
    pub cap: Decimal,
}

impl Default for FundingPathConfig {
    fn default() -> FundingPathConfig {
        FundingPathConfig {
            seed: 11,
            start_rate: Decimal::new(1, 4),
            mean_rate: Decimal::new(1, 4),
            persistence: 0.9,
            volatility: 0.00003,
            cap: Decimal::new(75, 4),
        }
    }
}

/// What makes a paper instrument a linear perpetual.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PerpConfig {
    /// The spot symbol whose price the mark follows; `None` = the
    /// instrument's own price path.
    pub underlying: Option<String>,
    /// Standard deviation of the basis per step (relative).
    pub basis_volatility: f64,
    /// Share of the basis removed per step.
    pub basis_reversion: f64,
    /// Hours between funding settlements.
    pub funding_interval_hours: u32,
    pub funding: FundingPathConfig,
    /// Initial margin per unit of notional (0.1 = 10x).
    #[serde(deserialize_with = "herd_venue::decimal::deserialize")]
    pub initial_margin_rate: Decimal,
    /// Maintenance margin per unit of notional.
    #[serde(deserialize_with = "herd_venue::decimal::deserialize")]
    pub maintenance_margin_rate: Decimal,
    /// Reported 24 h turnover in USD; `None` = computed from the candles.
    #[serde(deserialize_with = "herd_venue::decimal::deserialize_opt")]
    pub turnover_24h_usd: Option<Decimal>,
}

impl Default for PerpConfig {
    fn default() -> PerpConfig {
        PerpConfig {
            underlying: None,
            basis_volatility: 0.00005,
            basis_reversion: 0.05,
            funding_interval_hours: 8,
            funding: FundingPathConfig::default(),
            initial_margin_rate: Decimal::new(1, 1),
            maintenance_margin_rate: Decimal::new(5, 3),
            turnover_24h_usd: None,
        }
    }
}

/// The first settlement strictly after `now_ms` for an interval of `hours`.
pub fn next_funding_after(now_ms: i64, hours: u32) -> i64 {
    let interval = HOUR_MS * i64::from(hours.max(1));
    (now_ms.div_euclid(interval) + 1) * interval
}

/// A perpetual's live state beside its order book.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PerpState {
    pub cfg: PerpConfig,
    pub basis: f64,
    basis_rng: SplitMix64,
    funding_rng: SplitMix64,
    pub rate: Decimal,
    pub next_funding_ms: i64,
}

impl PerpState {
    pub fn new(cfg: &PerpConfig, now_ms: i64) -> PerpState {
        PerpState {
            basis: 0.0,
            basis_rng: SplitMix64::new(cfg.funding.seed ^ 0xB1A5),
            funding_rng: SplitMix64::new(cfg.funding.seed),
            rate: clamp_rate(cfg.funding.start_rate, cfg.funding.cap),
            next_funding_ms: next_funding_after(now_ms, cfg.funding_interval_hours),
            cfg: cfg.clone(),
        }
    }

    pub fn interval_ms(&self) -> i64 {
        HOUR_MS * i64::from(self.cfg.funding_interval_hours.max(1))
    }

    /// One step of the basis; returns 1 + basis.
    pub fn step_basis(&mut self) -> f64 {
        let noise = self.cfg.basis_volatility * self.basis_rng.next_normal();
        self.basis = (self.basis * (1.0 - self.cfg.basis_reversion) + noise).clamp(-0.05, 0.05);
        1.0 + self.basis
    }

    /// The rate after one more settlement.
    pub fn step_rate(&mut self) {
        let f = &self.cfg.funding;
        let rate = self.rate.to_f64().unwrap_or(0.0);
        let mean = f.mean_rate.to_f64().unwrap_or(0.0);
        let next =
            mean + (rate - mean) * f.persistence + f.volatility * self.funding_rng.next_normal();
        let next = Decimal::from_f64(next).unwrap_or(f.mean_rate);
        self.rate = clamp_rate(next.round_dp(RATE_DECIMALS), f.cap);
    }
}

fn clamp_rate(rate: Decimal, cap: Decimal) -> Decimal {
    let cap = cap.abs();
    rate.max(-cap).min(cap)
}

/// A one-way position: signed size (long > 0) and average entry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PositionState {
    pub size: Decimal,
    pub entry: Decimal,
    /// Realized PnL since the position opened: closes, fees and funding.
    pub realized: Decimal,
    pub updated_ms: i64,
}

impl PositionState {
    pub fn side(&self) -> Option<PositionSide> {
        if self.size > Decimal::ZERO {
            Some(PositionSide::Long)
        } else if self.size < Decimal::ZERO {
            Some(PositionSide::Short)
        } else {
            None
        }
    }

    pub fn unrealized(&self, mark: Decimal) -> Decimal {
        (mark - self.entry) * self.size
    }

    /// Applies a fill of signed `qty` (buy > 0) at `price`; returns the PnL
    /// it realizes (closing part only).
    pub fn apply_fill(&mut self, qty: Decimal, price: Decimal, now_ms: i64) -> Decimal {
        self.updated_ms = now_ms;
        let same_way = self.size.is_zero() || (self.size > Decimal::ZERO) == (qty > Decimal::ZERO);
        if same_way {
            let total = self.size.abs() + qty.abs();
            if !total.is_zero() {
                self.entry = (self.entry * self.size.abs() + price * qty.abs()) / total;
            }
            self.size += qty;
            return Decimal::ZERO;
        }
        let closing = qty.abs().min(self.size.abs());
        let sign = if self.size > Decimal::ZERO {
            Decimal::ONE
        } else {
            Decimal::NEGATIVE_ONE
        };
        let pnl = closing * (price - self.entry) * sign;
        let remaining = self.size + qty;
        if remaining.is_zero() {
            self.size = Decimal::ZERO;
            self.entry = Decimal::ZERO;
        } else if (remaining > Decimal::ZERO) != (self.size > Decimal::ZERO) {
            // Flipped through zero: the rest opens at the fill price.
            self.size = remaining;
            self.entry = price;
        } else {
            self.size = remaining;
        }
        self.realized += pnl;
        pnl
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn funding_times_are_utc_aligned() {
        let t0 = 1_700_000_000_000; // 2023-11-14 22:13:20 UTC
        let next = next_funding_after(t0, 8);
        assert_eq!(next % (8 * HOUR_MS), 0);
        assert_eq!(next, 1_700_006_400_000); // 2023-11-15 00:00 UTC
        assert_eq!(next_funding_after(next, 8), next + 8 * HOUR_MS);
        assert_eq!(next_funding_after(t0, 4) % (4 * HOUR_MS), 0);
        assert_eq!(next_funding_after(next - 1, 1), next);
    }

    #[test]
    fn position_fill_table() {
        struct Case {
            name: &'static str,
            fills: Vec<(Decimal, Decimal)>,
            size: Decimal,
            entry: Decimal,
            realized: Decimal,
        }
        let cases = [
            Case {
                name: "open short",
                fills: vec![(dec!(-2), dec!(100))],
                size: dec!(-2),
                entry: dec!(100),
                realized: dec!(0),
            },
            Case {
                name: "add to a long averages the entry",
                fills: vec![(dec!(1), dec!(100)), (dec!(1), dec!(110))],
                size: dec!(2),
                entry: dec!(105),
                realized: dec!(0),
            },
            Case {
                name: "short closed lower realizes a gain",
                fills: vec![(dec!(-2), dec!(100)), (dec!(2), dec!(90))],
                size: dec!(0),
                entry: dec!(0),
                realized: dec!(20),
            },
            Case {
                name: "partial close keeps the entry",
                fills: vec![(dec!(3), dec!(100)), (dec!(-1), dec!(110))],
                size: dec!(2),
                entry: dec!(100),
                realized: dec!(10),
            },
            Case {
                name: "flip opens the rest at the fill price",
                fills: vec![(dec!(1), dec!(100)), (dec!(-3), dec!(95))],
                size: dec!(-2),
                entry: dec!(95),
                realized: dec!(-5),
            },
        ];
        for c in cases {
            let mut p = PositionState::default();
            for (q, px) in &c.fills {
                p.apply_fill(*q, *px, 1);
            }
            assert_eq!(
                (p.size, p.entry, p.realized),
                (c.size, c.entry, c.realized),
                "{}",
                c.name
            );
        }
    }

    #[test]
    fn funding_paths_decay_or_stay_rich() {
        let decaying = PerpConfig {
            funding: FundingPathConfig {
                start_rate: dec!(0.0012),
                mean_rate: dec!(0.00002),
                persistence: 0.5,
                volatility: 0.00001,
                ..FundingPathConfig::default()
            },
            ..PerpConfig::default()
        };
        let rich = PerpConfig {
            funding: FundingPathConfig {
                start_rate: dec!(0.0006),
                mean_rate: dec!(0.0005),
                persistence: 0.95,
                volatility: 0.00002,
                ..FundingPathConfig::default()
            },
            ..PerpConfig::default()
        };
        let mut d = PerpState::new(&decaying, 0);
        let mut r = PerpState::new(&rich, 0);
        for _ in 0..20 {
            d.step_rate();
            r.step_rate();
        }
        assert!(d.rate < dec!(0.0002), "decaying pair at {}", d.rate);
        assert!(r.rate > dec!(0.0003), "rich pair at {}", r.rate);
        // Same seed, same path.
        let mut again = PerpState::new(&rich, 0);
        for _ in 0..20 {
            again.step_rate();
        }
        assert_eq!(again.rate, r.rate);
    }
}
