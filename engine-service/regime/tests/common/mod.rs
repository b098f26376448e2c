//! Test data shared by the regime crate's integration tests.

use herd_regime::Candle;

/// A random walk with trending and ranging spells (SplitMix64, deterministic).
pub fn walk(n: usize) -> Vec<Candle> {
    let mut state = 99u64;
    let mut next = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut p = 0.1;
    let mut drift = 0.0;
    (0..n)
        .map(|i| {
            if i % 400 == 0 {
                drift = (next() - 0.5) * 0.002;
            }
            let close = p * (1.0 + drift + (next() - 0.5) * 0.004);
            let c = Candle {
                open_time_ms: i as i64 * 60_000,
                open: p,
                high: p.max(close) * (1.0 + next() * 0.001),
                low: p.min(close) * (1.0 - next() * 0.001),
                close,
                volume: 500.0 + next() * 1000.0,
            };
            p = close;
            c
        })
        .collect()
}
