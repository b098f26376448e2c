//! Synthetic candles for benchmarks and tests: a seeded walk with ranging
//! and trending spells (the trend changes every 720 candles), so runs are
//! reproducible without data files.

use rust_decimal::Decimal;
use rust_decimal::prelude::FromPrimitive;

use std::collections::BTreeMap;

use herd_paper::{FeePolicy, PaperInstrument};

use herd_strategies::grid::GridConfig;
use herd_strategies::rangers::RangerConfig;

use crate::csv::Bar;
use crate::sim::{FillModel, FundingSetup, RegimeSetup, Setup};

/// A small seeded generator (SplitMix64).
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

fn dec(x: f64, dp: u32) -> Decimal {
    let step = Decimal::new(1, dp);
    Decimal::from_f64(x)
        .unwrap_or(Decimal::ONE)
        .round_dp(dp)
        .max(step)
}

/// `n` candles of `interval_ms` from `start_ms`: a walk around `base`
/// (prices rounded to `dp` decimals) with seed `seed`. The backtest bench's
/// DOGE-like year is `candles(n, start, 60_000, 0.1, 7, 7)`.
pub fn candles(
    n: usize,
    start_ms: i64,
    interval_ms: i64,
    base: f64,
    dp: u32,
    seed: u64,
) -> Vec<Bar> {
    let mut rng = SplitMix64(seed);
    let mut p = base;
    let mut trend = 0.0f64;
    let scale = 0.1 / base;
    (0..n)
        .map(|i| {
            if i % 720 == 0 {
                trend = (rng.next_f64() - 0.5) * 0.0004;
            }
            let shock = (rng.next_f64() - 0.5) * 0.004;
            let close = (p * (1.0 + trend + shock + (base - p) * 0.001 * scale)).max(base / 10.0);
            let hi = p.max(close) * (1.0 + rng.next_f64() * 0.0015);
            let lo = p.min(close) * (1.0 - rng.next_f64() * 0.0015);
            let bar = Bar {
                open_time_ms: start_ms + interval_ms * i as i64,
                open: dec(p, dp),
                high: dec(hi, dp),
                low: dec(lo, dp),
                close: dec(close, dp),
                volume: Decimal::from(1000),
            };
            p = close;
            bar
        })
        .map(|mut b| {
            b.high = b.high.max(b.open).max(b.close);
            b.low = b.low.min(b.open).min(b.close);
            b
        })
        .collect()
}

/// The account the bench and the tests run these candles on: DOGE/USD with
/// the paper venue's filters and fees, 5,000 USD and 50,000 DOGE, fees in
/// the quote coin, the default fill model, no funding.
pub fn doge_setup(regime: RegimeSetup) -> Setup {
    Setup {
        instrument: PaperInstrument::doge_usd().instrument,
        balances: BTreeMap::from([
            ("USD".into(), Decimal::from(5000)),
            ("DOGE".into(), Decimal::from(50_000)),
        ]),
        fee_policy: FeePolicy::Quote,
        fill: FillModel::default(),
        funding: FundingSetup::default(),
        regime,
    }
}

/// The strategies the bench and the tests run on that account: the rangers
/// and the grid with its churner, each with its default settings.
pub fn all_on() -> (RangerConfig, GridConfig) {
    let rangers = RangerConfig {
        enabled: true,
        ..RangerConfig::default()
    };
    let mut grid = GridConfig {
        enabled: true,
        ..GridConfig::default()
    };
    grid.churner.enabled = true;
    (rangers, grid)
}
