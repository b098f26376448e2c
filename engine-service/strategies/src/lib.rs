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

/// `d > 0` read from the sign bit and the mantissa, without a full
/// comparison (a call into rust_decimal that lines both up first): a
/// negative zero is not positive, as `-0 > 0` is false. The hot paths'
/// tests against zero use it (`!is_positive(d)` is `d <= 0`).
#[inline]
pub(crate) fn is_positive(d: rust_decimal::Decimal) -> bool {
    d.is_sign_positive() && !d.is_zero()
}

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

/// The decimal digits of a Decimal's mantissa (below 2^96), at the end of
/// `buf` (which it fills with `0` first): their start (`buf.len()` for a
/// zero). The journal rows write their decimals from these; a 128-bit
/// division is a call, so a wide mantissa is split once into two u64
/// halves of up to 19 digits.
pub(crate) fn mantissa_digits(m: u128, buf: &mut [u8; 40]) -> usize {
    const E19: u128 = 10_000_000_000_000_000_000;
    buf.fill(b'0');
    match u64::try_from(m) {
        Ok(v) => u64_digits(buf, v, 40),
        Err(_) => {
            // The low 19 digits (the zeros in front already there), then
            // the rest in front of them.
            u64_digits(buf, (m % E19) as u64, 40);
            u64_digits(buf, (m / E19) as u64, 40 - 19)
        }
    }
}

/// Writes `v`'s digits to end just before `end` (none for zero); where
/// they start.
fn u64_digits(buf: &mut [u8; 40], mut v: u64, end: usize) -> usize {
    let mut i = end;
    while v != 0 && i > 0 {
        i -= 1;
        if let Some(b) = buf.get_mut(i) {
            *b = b'0' + (v % 10) as u8;
        }
        v /= 10;
    }
    i
}

/// What the crate's tests share.
#[cfg(test)]
pub(crate) mod testing {
    use rust_decimal::Decimal;

    use crate::strategy::{Instrument, InstrumentKind};

    /// Kraken's DOGE/USD spot instrument (tick 1e-7, lot 1e-8, at least
    /// 10 DOGE and $0.5, maker 0.25 %), with `max_open_orders`.
    pub(crate) fn doge_usd(max_open_orders: u32) -> Instrument {
        Instrument {
            kind: InstrumentKind::Spot,
            symbol: "DOGEUSD".into(),
            base: "DOGE".into(),
            quote: "USD".into(),
            tick_size: Decimal::new(1, 7),
            price_decimals: 7,
            lot_decimals: 8,
            min_volume: Decimal::TEN,
            min_cost: Decimal::new(5, 1),
            maker_fee: Decimal::new(25, 4),
            taker_fee: Decimal::new(4, 3),
            max_open_orders,
        }
    }

    /// One step of the 64-bit linear congruential generator the
    /// randomized tests walk (Knuth's MMIX constants): a fixed sequence
    /// from a seed, no dependency.
    pub(crate) fn lcg(seed: u64) -> u64 {
        seed.wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407)
    }
}

#[cfg(test)]
mod tests {
    use rust_decimal::Decimal;

    /// `mantissa_f64` is `mantissa() as f64` bit for bit: zeros of either
    /// sign, the 2^63 and 2^64 edges, the widest mantissas, random ones.
    #[test]
    fn mantissa_f64_is_the_mantissa_as_f64_bit_for_bit() {
        let mut cases = vec![
            Decimal::ZERO,
            -Decimal::ZERO,
            Decimal::from_parts(0, 0, 0, true, 9),
            Decimal::MAX,
            Decimal::MIN,
            Decimal::from_parts(u32::MAX, i32::MAX as u32, 0, false, 3),
            Decimal::from_parts(0, 1 << 31, 0, true, 0),
            Decimal::from_parts(u32::MAX, u32::MAX, 0, false, 28),
            Decimal::from_parts(0, 0, 1, true, 5),
            Decimal::from_parts(1, 0, 1, false, 5),
        ];
        let mut seed = 3;
        for k in 0..5_000_u32 {
            seed = crate::testing::lcg(seed);
            let (lo, mid) = ((seed >> 32) as u32, seed as u32);
            let hi = match k % 3 {
                0 => 0,
                1 => (seed >> 40) as u32 & 0xff,
                _ => (seed >> 13) as u32,
            };
            cases.push(Decimal::from_parts(lo, mid, hi, k % 2 == 0, k % 29));
        }
        for d in cases {
            let want = d.mantissa() as f64;
            assert_eq!(super::mantissa_f64(d).to_bits(), want.to_bits(), "{d:?}");
        }
    }

    /// `is_positive` is `d > 0` for zeros of either sign and any scale,
    /// the smallest and largest magnitudes, and random values.
    #[test]
    fn is_positive_is_greater_than_zero() {
        let mut cases = vec![
            Decimal::ZERO,
            -Decimal::ZERO,
            Decimal::new(0, 5),
            Decimal::from_parts(0, 0, 0, true, 7),
            Decimal::new(1, 28),
            Decimal::new(-1, 28),
            Decimal::MAX,
            Decimal::MIN,
            Decimal::ONE,
            Decimal::NEGATIVE_ONE,
        ];
        let mut seed = 11;
        for _ in 0..2_000 {
            seed = crate::testing::lcg(seed);
            let lo = (seed >> 32) as u32;
            let mid = if seed & 1 == 0 { 0 } else { seed as u32 };
            cases.push(Decimal::from_parts(
                lo % 7,
                mid & 3,
                0,
                seed & 2 == 0,
                (lo % 29).min(28),
            ));
        }
        for d in cases {
            assert_eq!(super::is_positive(d), d > Decimal::ZERO, "{d:?}");
        }
    }

    /// The digits are `format!`'s, for zero, every power of ten and its
    /// neighbours up to 2^96, and random wide and narrow mantissas.
    #[test]
    fn mantissa_digits_are_the_formatted_ones() {
        let mut cases: Vec<u128> = vec![0, 1, 9, 10, u128::from(u64::MAX), (1 << 96) - 1];
        let mut p: u128 = 1;
        while p < (1 << 96) {
            cases.extend([p - 1, p, p + 1]);
            p *= 10;
        }
        let mut seed = 5;
        for _ in 0..2_000 {
            seed = crate::testing::lcg(seed);
            let hi = crate::testing::lcg(seed ^ 0x9e37);
            cases.push((u128::from(hi) << 32 | u128::from(seed)) & ((1 << 96) - 1));
            cases.push(u128::from(seed >> 20));
        }
        for m in cases {
            let mut buf = [b'x'; 40];
            let at = super::mantissa_digits(m, &mut buf);
            let want = if m == 0 { String::new() } else { m.to_string() };
            assert_eq!(std::str::from_utf8(&buf[at..]).unwrap(), want, "{m}");
        }
    }
}
