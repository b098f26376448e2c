//! The paper venue's market: a seeded price path that alternates between
//! ranging stretches (mean-reverting around an anchor) and trending ones
//! (steady drift up or down), so every strategy meets both kinds of market.
//!
//! The generator is deterministic for a seed: the same seed and the same
//! number of steps give the same prices on every machine.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// SplitMix64: small, fast and fully reproducible (no dependency whose
/// algorithm could change under us between versions).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64 { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box-Muller).
    pub fn next_normal(&mut self) -> f64 {
        let u1 = self.next_f64().max(f64::MIN_POSITIVE);
        let u2 = self.next_f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

/// The market regime the path is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PathRegime {
    Ranging,
    TrendingUp,
    TrendingDown,
}

/// Knobs of the generator, per step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PathConfig {
    pub seed: u64,
    /// Relative standard deviation of one step.
    pub volatility: f64,
    /// How strongly a ranging market is pulled back to its anchor, per step.
    pub mean_reversion: f64,
    /// Relative drift per step while trending.
    pub trend_drift: f64,
    /// Chance per step of leaving the current regime.
    pub switch_probability: f64,
    /// Share of switches that go to ranging (the rest trend up or down).
    pub ranging_share: f64,
}

impl Default for PathConfig {
    fn default() -> PathConfig {
        PathConfig {
            seed: 7,
            volatility: 0.0004,
            mean_reversion: 0.01,
            trend_drift: 0.00008,
            switch_probability: 0.0005,
            ranging_share: 0.6,
        }
    }
}

/// A seeded regime-switching random walk.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PricePath {
    cfg: PathConfig,
    rng: SplitMix64,
    regime: PathRegime,
    anchor: f64,
    price: f64,
}

impl PricePath {
    pub fn new(cfg: PathConfig, start: f64) -> PricePath {
        PricePath {
            rng: SplitMix64::new(cfg.seed),
            cfg,
            regime: PathRegime::Ranging,
            anchor: start,
            price: start,
        }
    }

    pub fn regime(&self) -> PathRegime {
        self.regime
    }

    /// Moves the path to `price` (an operator or a test set it); a ranging
    /// market then ranges around the new level.
    pub fn jump_to(&mut self, price: f64) {
        self.price = price;
        self.anchor = price;
    }

    /// One step; returns the new price.
    pub fn step(&mut self) -> f64 {
        if self.rng.next_f64() < self.cfg.switch_probability {
            let r = self.rng.next_f64();
            let trend_half = (1.0 - self.cfg.ranging_share) / 2.0;
            self.regime = if r < self.cfg.ranging_share {
                PathRegime::Ranging
            } else if r < self.cfg.ranging_share + trend_half {
                PathRegime::TrendingUp
            } else {
                PathRegime::TrendingDown
            };
            self.anchor = self.price;
        }
        let noise = self.cfg.volatility * self.rng.next_normal();
        let drift = match self.regime {
            PathRegime::Ranging => {
                self.cfg.mean_reversion * (self.anchor - self.price) / self.price
            }
            PathRegime::TrendingUp => self.cfg.trend_drift,
            PathRegime::TrendingDown => -self.cfg.trend_drift,
        };
        let next = self.price * (1.0 + drift + noise);
        // A path never reaches zero or explodes, whatever the knobs say.
        self.price = next.clamp(self.anchor * 0.05, self.anchor * 20.0).max(1e-9);
        self.price
    }

    /// Synthetic traded volume for one step, in base units.
    pub fn step_volume(&mut self, typical: f64) -> f64 {
        typical * (0.5 + self.rng.next_f64())
    }
}

/// Converts a path price to a decimal at `decimals` places.
pub fn to_decimal(price: f64, decimals: u32) -> Decimal {
    Decimal::from_f64_retain(price)
        .unwrap_or(Decimal::ONE)
        .round_dp(decimals)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_path() {
        let mut a = PricePath::new(PathConfig::default(), 0.1);
        let mut b = PricePath::new(PathConfig::default(), 0.1);
        for _ in 0..10_000 {
            assert_eq!(a.step().to_bits(), b.step().to_bits());
        }
    }

    #[test]
    fn path_visits_ranging_and_trending_and_stays_positive() {
        let cfg = PathConfig {
            switch_probability: 0.01,
            ..PathConfig::default()
        };
        let mut p = PricePath::new(cfg, 0.1);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..50_000 {
            let price = p.step();
            assert!(price > 0.0 && price.is_finite());
            seen.insert(format!("{:?}", p.regime()));
        }
        assert_eq!(seen.len(), 3, "{seen:?}");
    }
}
