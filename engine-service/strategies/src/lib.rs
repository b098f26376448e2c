//! Herd's strategies, as pure reducers.
//!
//! Everything here is synchronous and deterministic: a strategy reads its
//! own state and the inputs it is handed (market views, order updates, the
//! time) and answers with [`strategy::Action`]s. It never does I/O and never
//! reads a clock. The live engine (`herd-engine`) and the backtester run
//! these same reducers; only the clock and the venue differ.
//!
//! - [`strategy`]: the [`strategy::Strategy`] trait and its types,
//!   [`strategy::IdGen`] for client order ids.
//! - [`rangers`] and [`grid`] (slots, ledger, self-healing) with its
//!   [`churner`]s.
//! - Shared services for strategies: [`capacity`] (open-order headroom) and
//!   [`capital`] (funds promised to orders).
//! - [`funding`]: the pure decisions of the funding-rate arbitrage (the
//!   orchestrator that runs them is async and lives in the engine).
//! - [`envvar`]: the rules for the strategies' environment overrides.

pub mod capacity;
pub mod capital;
pub mod churner;
pub mod envvar;
pub mod funding;
pub mod grid;
pub mod rangers;
pub mod strategy;

/// `d.mantissa() as f64` (the nearest f64, ties to even), without the
/// generic 128-bit conversion: the f64 screens read Decimals millions of
/// times a backtest.
pub(crate) fn mantissa_f64(d: rust_decimal::Decimal) -> f64 {
    let m = d.mantissa();
    let a = u96_to_f64(m.unsigned_abs());
    if m < 0 { -a } else { a }
}

/// `m as f64` for a Decimal's mantissa (below 2^96): a mantissa that fits
/// 64 bits converts directly; a wider one keeps its top 64 bits with a
/// sticky bit for the rest (far below the rounding bit, so it rounds as
/// the whole would), and the scaling by a power of two is exact.
fn u96_to_f64(m: u128) -> f64 {
    match u64::try_from(m) {
        Ok(m) => m as f64,
        Err(_) => {
            // 1 ..= 64 bits dropped (the mantissa has 65 ..= 128).
            let shift = 64 - m.leading_zeros();
            let top = (m >> shift) as u64;
            let sticky = u64::from(m & ((1u128 << shift) - 1) != 0);
            // 2^shift, exactly: the biased exponent with no mantissa bits.
            let scale = f64::from_bits((1023 + u64::from(shift)) << 52);
            (top | sticky) as f64 * scale
        }
    }
}

/// What the crate's tests share.
#[cfg(test)]
pub(crate) mod testing {
    /// One step of the 64-bit linear congruential generator the
    /// randomized tests walk (Knuth's MMIX constants): a fixed sequence
    /// from a seed, no dependency.
    pub(crate) fn lcg(seed: u64) -> u64 {
        seed.wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407)
    }
}
