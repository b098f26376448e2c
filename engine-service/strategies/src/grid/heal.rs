//! Self-healing rules (grid-engine spec section 2), pure: age bands by
//! effective age, the free stale-band tighten, and subsidised moves of a
//! stuck exit toward the price that can fill, paid from the slot's subsidy.
//!
//! Effective age = age * (1 + distance_pct / 5): an exit far from market
//! ages faster. Bands: fresh < 6 h <= aging < 24 h <= stale < 72 h <= stuck
//! < 168 h <= write_off (all knobs). A sell exit moves down, a buy exit up;
//! prices round to the tick in the direction that never overspends.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::config::HealParams;
use super::ledger::Position;
use super::{exit_price, floor_to_tick, hundred};
use crate::strategy::Side;

const HOUR_MS: i64 = 3_600_000;

/// An age band.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Band {
    Fresh,
    Aging,
    Stale,
    Stuck,
    WriteOff,
}

impl Band {
    pub fn as_str(self) -> &'static str {
        match self {
            Band::Fresh => "fresh",
            Band::Aging => "aging",
            Band::Stale => "stale",
            Band::Stuck => "stuck",
            Band::WriteOff => "write_off",
        }
    }
}

/// Distance of `exit` from `market`, percent.
pub fn distance_pct(exit: Decimal, market: Decimal) -> Decimal {
    if market <= Decimal::ZERO {
        return Decimal::ZERO;
    }
    (exit - market).abs() / market * hundred()
}

/// Age in hours (decimal) since `since_ms`.
pub fn age_hours(since_ms: i64, now_ms: i64) -> Decimal {
    Decimal::from((now_ms - since_ms).max(0)) / Decimal::from(HOUR_MS)
}

/// Effective age in hours: age * (1 + distance_pct / divisor).
pub fn effective_age_hours(
    age_h: Decimal,
    exit: Decimal,
    market: Decimal,
    h: &HealParams,
) -> Decimal {
    age_h * (Decimal::ONE + distance_pct(exit, market) / h.distance_divisor)
}

/// The band of an effective age.
pub fn band(effective_h: Decimal, h: &HealParams) -> Band {
    if effective_h < h.aging_hours {
        Band::Fresh
    } else if effective_h < h.stale_hours {
        Band::Aging
    } else if effective_h < h.stuck_hours {
        Band::Stale
    } else if effective_h < h.write_off_hours {
        Band::Stuck
    } else {
        Band::WriteOff
    }
}

/// A position's age reading.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgeReading {
    pub age_hours: Decimal,
    pub distance_pct: Decimal,
    pub effective_age_hours: Decimal,
    pub band: Band,
}

/// A cheap screen for [`reading`]: whether a position may be in the stale
/// band or a later one. The effective age is estimated in f64 with a margin
/// (1e-9 relative) far wider than f64's rounding, so "no" is certain and
/// only positions near or past the stale edge pay for the exact Decimal
/// reading. Fresh and aging positions, the common case at every tick,
/// trigger nothing. Built once per tick for one market price.
#[derive(Debug, Clone, Copy)]
pub struct StaleScreen {
    market: f64,
    divisor: f64,
    stale_hours: f64,
}

impl StaleScreen {
    /// `None` when the screen cannot judge (a price or knob that is not
    /// positive): read every position exactly then.
    pub fn new(market: Decimal, h: &HealParams) -> Option<StaleScreen> {
        StaleScreen::with_knobs(
            market,
            approx_f64(h.distance_divisor),
            approx_f64(h.stale_hours),
        )
    }

    /// The screen from the knobs already read as [`approx_f64`]
    /// (`divisor`: `distance_divisor`, `stale_hours`): the one
    /// [`StaleScreen::new`] builds.
    pub(super) fn with_knobs(
        market: Decimal,
        divisor: f64,
        stale_hours: f64,
    ) -> Option<StaleScreen> {
        let screen = StaleScreen {
            market: approx_f64(market),
            divisor,
            stale_hours,
        };
        (screen.market > 0.0 && screen.divisor > 0.0).then_some(screen)
    }

    /// False only when `p` is certainly fresh or aging at `now_ms`.
    pub fn may_be_stale(&self, p: &Position, now_ms: i64) -> bool {
        self.may_be_stale_at(approx_f64(p.exit.price), p.entry.time_ms, now_ms)
    }

    /// [`StaleScreen::may_be_stale`] of a position entered at `entry_ms`
    /// whose exit price reads `exit` as [`approx_f64`].
    pub(super) fn may_be_stale_at(&self, exit: f64, entry_ms: i64, now_ms: i64) -> bool {
        let age_h = (now_ms - entry_ms).max(0) as f64 / HOUR_MS as f64;
        let distance = (exit - self.market).abs() / self.market * 100.0;
        let eff = age_h * (1.0 + distance / self.divisor);
        // NaN (or anything not certainly below the edge) reads as "maybe".
        let certainly_below = eff < self.stale_hours * (1.0 - 1e-9);
        !certainly_below
    }
}

/// `d` as f64 within a few ulps (mantissa over a power of ten), without
/// `Decimal::to_f64`'s exact but slow path.
pub(super) fn approx_f64(d: Decimal) -> f64 {
    // Bit for bit `mantissa as f64 / 10f64.powi(scale)`: a mantissa that
    // fits an i64 converts to the same nearest f64 either way, and the
    // powers of ten up to 1e22 are exact in f64, as are the products
    // `powi` builds them from (so the table holds what it returns).
    let m = crate::mantissa_f64(d);
    match POW10.get(d.scale() as usize) {
        Some(p) => m / p,
        None => m / pow10_beyond_table(d.scale()),
    }
}

/// `10f64.powi(scale)` for a scale past [`POW10`], out of line: inlined,
/// the compiler computed `powi` (a call) for every conversion, table hit or
/// not, since it may run it ahead of the branch.
#[cold]
#[inline(never)]
fn pow10_beyond_table(scale: u32) -> f64 {
    10f64.powi(scale as i32)
}

/// `10f64.powi(-k)` bit for bit (`powi` of a negative power is one over
/// the positive power, exact in f64 up to 10^22), from [`POW10`].
pub(super) fn pow10_neg(k: u32) -> f64 {
    match POW10.get(k as usize) {
        Some(p) => 1.0 / p,
        None => 1.0 / pow10_beyond_table(k),
    }
}

/// 10^0 ..= 10^22, each exact in f64.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// Reads a position's age at `market`.
pub fn reading(p: &Position, market: Decimal, now_ms: i64, h: &HealParams) -> AgeReading {
    let age = age_hours(p.entry.time_ms, now_ms);
    let eff = effective_age_hours(age, p.exit.price, market, h);
    AgeReading {
        age_hours: age,
        distance_pct: distance_pct(p.exit.price, market),
        effective_age_hours: eff,
        band: band(eff, h),
    }
}

/// The side `p`'s exit trades on.
fn exit_side(p: &Position) -> Side {
    if p.exit_sells() {
        Side::Sell
    } else {
        Side::Buy
    }
}

/// The free stale-band tighten: sell exit max(entry * (1 + p), market *
/// (1 + entry_pct)), buy exit mirrored with min; `None` unless it is
/// closer to market than the exit now.
pub fn tighten_price(
    p: &Position,
    market: Decimal,
    entry_pct: Decimal,
    h: &HealParams,
    tick: Decimal,
) -> Option<Decimal> {
    let pr = h.tighten_profit_pct / hundred();
    let e = entry_pct / hundred();
    let entry = p.entry.price;
    let t = exit_price(exit_side(p), entry, pr, market, e, tick);
    let closer = if p.exit_sells() {
        t < p.exit.price
    } else {
        t > p.exit.price
    };
    closer.then_some(t)
}

/// The fillable price: sell max(market * (1 + entry_pct), entry * (1 +
/// round_trip_fee)), buy mirrored with min.
pub fn fillable_price(
    p: &Position,
    market: Decimal,
    entry_pct: Decimal,
    round_trip_fee: Decimal,
    tick: Decimal,
) -> Decimal {
    let e = entry_pct / hundred();
    let entry = p.entry.price;
    exit_price(exit_side(p), entry, round_trip_fee, market, e, tick)
}

/// What moving the exit all the way to `target` costs: |delta| * volume;
/// zero when the exit is already at or inside it.
pub fn full_cost(p: &Position, target: Decimal) -> Decimal {
    let delta = if p.exit_sells() {
        p.exit.price - target
    } else {
        target - p.exit.price
    };
    (delta.max(Decimal::ZERO) * p.entry.volume).normalize()
}

/// A subsidised move toward `target` with `balance` to spend: all the way
/// when affordable, else as many whole ticks as the balance pays for.
/// Returns (new price, cost); `None` when not even one tick is affordable
/// or nothing needs moving.
pub fn subsidised_move(
    p: &Position,
    target: Decimal,
    balance: Decimal,
    tick: Decimal,
) -> Option<(Decimal, Decimal)> {
    let volume = p.entry.volume;
    let full = full_cost(p, target);
    if full <= Decimal::ZERO || volume <= Decimal::ZERO || balance <= Decimal::ZERO {
        return None;
    }
    if balance >= full {
        return Some((target, full));
    }
    let delta = floor_to_tick(balance / volume, tick);
    if delta < tick || delta <= Decimal::ZERO {
        return None;
    }
    let price = if p.exit_sells() {
        p.exit.price - delta
    } else {
        p.exit.price + delta
    };
    Some((price.normalize(), (delta * volume).normalize()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grid::ledger::{Entry, ExitIntent, PositionMode};
    use rust_decimal_macros::dec;

    const T0: i64 = 1_700_000_000_000;
    const TICK: Decimal = dec!(0.0000001);

    /// The f64 screen never hides a stale (or later) position: across ages
    /// around the stale edge (down to the millisecond) and exits near and far
    /// from the market, "not stale" from the screen means the exact reading
    /// is fresh or aging, and it says "maybe" right at the edge.
    #[test]
    fn stale_screen_never_hides_a_stale_position() {
        let h = HealParams::default();
        let market = dec!(0.1);
        let screen = StaleScreen::new(market, &h).unwrap();
        let mut maybes = 0;
        for exit in [
            dec!(0.1),
            dec!(0.1000001),
            dec!(0.102),
            dec!(0.13),
            dec!(0.5),
        ] {
            let p = position("buy", dec!(0.099), exit, dec!(100));
            // Where the effective age reaches the stale edge exactly.
            let factor = Decimal::ONE + distance_pct(exit, market) / h.distance_divisor;
            let edge_ms = (h.stale_hours * Decimal::from(HOUR_MS) / factor)
                .round()
                .mantissa() as i64;
            for age_ms in [
                0,
                edge_ms / 2,
                edge_ms - 1_000,
                edge_ms - 1,
                edge_ms,
                edge_ms + 1,
            ]
            .into_iter()
            .chain((0..200).map(|k| k * HOUR_MS))
            {
                let now = T0 + age_ms;
                let exact = reading(&p, market, now, &h).band;
                if !screen.may_be_stale(&p, now) {
                    assert!(
                        exact < Band::Stale,
                        "exit {exit}, age {age_ms} ms: {exact:?}"
                    );
                } else {
                    maybes += 1;
                }
            }
            assert!(screen.may_be_stale(&p, T0 + edge_ms + 1), "exit {exit}");
        }
        assert!(maybes > 0);
        // A market the screen cannot judge reads every position exactly.
        assert!(StaleScreen::new(Decimal::ZERO, &h).is_none());
    }

    fn position(side: &str, entry: Decimal, exit: Decimal, volume: Decimal) -> Position {
        Position {
            id: "p".into(),
            slot_id: 0,
            trade: if side == "buy" { "B" } else { "A" }.into(),
            mode: PositionMode::Grid,
            entry: Entry {
                side: side.into(),
                price: entry,
                cost: entry * volume,
                fee: dec!(0.005),
                volume,
                time_ms: T0,
                regime: "RANGING".into(),
            },
            exit: ExitIntent {
                price: exit,
                original_price: exit,
                target_profit: Decimal::ZERO,
                order_id: "x".into(),
                reprices: 0,
                last_reprice_ms: None,
                tightened: false,
                hold_until_ms: None,
                orphaned: false,
            },
            outcome: None,
        }
    }

    #[test]
    fn bands_by_effective_age() {
        let h = HealParams::default();
        for (eff, want) in [
            (dec!(5.99), Band::Fresh),
            (dec!(6), Band::Aging),
            (dec!(23.9), Band::Aging),
            (dec!(24), Band::Stale),
            (dec!(71.99), Band::Stale),
            (dec!(72), Band::Stuck),
            (dec!(168), Band::WriteOff),
        ] {
            assert_eq!(band(eff, &h), want, "{eff}");
        }
        // 40 h at 5.1805 % from market: 40 * (1 + 5.1805 / 5) = 81.44 h, stuck.
        let p = position("buy", dec!(0.11976), dec!(0.1209576), dec!(16.7000668));
        let r = reading(&p, dec!(0.115), T0 + 40 * 3_600_000, &h);
        assert_eq!(r.age_hours, dec!(40));
        assert_eq!(r.effective_age_hours.round_dp(4), dec!(81.4442));
        assert_eq!(r.band, Band::Stuck);
    }

    #[test]
    fn tighten_fillable_and_subsidised_moves() {
        let h = HealParams::default();
        let long = position("buy", dec!(0.11976), dec!(0.1209576), dec!(16.7000668));
        // max(0.11976 * 1.005, 0.12 * 1.002) = 0.1203588 (closer: taken).
        assert_eq!(
            tighten_price(&long, dec!(0.12), dec!(0.2), &h, TICK),
            Some(dec!(0.1203588))
        );
        // max(0.1203588, 0.1208 * 1.002 = 0.1210416) is not closer: none.
        assert_eq!(
            tighten_price(&long, dec!(0.1208), dec!(0.2), &h, TICK),
            None
        );
        // fillable at 0.115: max(0.11523, 0.11976 * 1.005) = 0.1203588.
        let f = fillable_price(&long, dec!(0.115), dec!(0.2), dec!(0.005), TICK);
        assert_eq!(f, dec!(0.1203588));
        assert_eq!(full_cost(&long, f), dec!(0.00999999999984));
        // (balance, new price, cost)
        for (balance, want) in [
            (dec!(1), Some((dec!(0.1203588), dec!(0.00999999999984)))),
            (dec!(0.005), Some((dec!(0.1206582), dec!(0.00499999999992)))),
            (
                dec!(0.00001),
                Some((dec!(0.1209571), dec!(0.0000083500334))),
            ),
            (dec!(0.000001), None),
            (Decimal::ZERO, None),
        ] {
            assert_eq!(subsidised_move(&long, f, balance, TICK), want, "{balance}");
        }
        // A short position's buy exit moves up: min(0.125 * 0.998, 0.12024 * 0.995).
        let short = position("sell", dec!(0.12024), dec!(0.1190376), dec!(16.63339986));
        let f = fillable_price(&short, dec!(0.125), dec!(0.2), dec!(0.005), TICK);
        assert_eq!(f, dec!(0.1196388));
        assert_eq!(full_cost(&short, f), dec!(0.009999999995832));
        assert_eq!(
            tighten_price(&short, dec!(0.12), dec!(0.2), &h, TICK),
            Some(dec!(0.1196388))
        );
        // Already inside the fillable price: nothing to pay.
        assert_eq!(subsidised_move(&short, dec!(0.118), dec!(1), TICK), None);
    }

    #[test]
    fn pow10_neg_is_powi_bit_for_bit() {
        for k in 0..=40_u32 {
            let powi = 10f64.powi(-i32::try_from(k).unwrap());
            assert_eq!(pow10_neg(k).to_bits(), powi.to_bits(), "10^-{k}");
        }
    }

    #[test]
    fn approx_f64_is_the_mantissa_over_powi_bit_for_bit() {
        let old = |d: Decimal| d.mantissa() as f64 / 10f64.powi(d.scale() as i32);
        let mut seed: u64 = 3;
        for scale in 0..=28_u32 {
            for k in 0..400 {
                seed = crate::testing::lcg(seed);
                // Small, i64-sized and wider-than-i64 mantissas, both signs.
                let m: i128 = match k % 5 {
                    0 => i128::from(seed % 1_000_000),
                    4 => i128::from(seed | 1 << 63),
                    1 => i128::from(seed >> 1),
                    2 => (i128::from(seed) << 30) | i128::from(seed >> 40),
                    _ => -(i128::from(seed >> 3)),
                };
                let d = Decimal::from_i128_with_scale(m, scale);
                assert_eq!(approx_f64(d).to_bits(), old(d).to_bits(), "{d}");
            }
        }
        // Mantissas on both sides of every power of two from 2^52 up, and
        // halfway cases (ties to even) at the widths that drop bits.
        for bits in 52..96_u32 {
            for delta in [-2_i128, -1, 0, 1, 2] {
                let base = 1_i128 << bits;
                for m in [
                    base + delta,
                    base + (base >> 53) + delta,
                    base * 3 / 2 + delta,
                ] {
                    if m > 0 && m < (1_i128 << 96) {
                        for scale in [0_u32, 9, 28] {
                            let d = Decimal::from_i128_with_scale(m, scale);
                            assert_eq!(approx_f64(d).to_bits(), old(d).to_bits(), "{d}");
                            assert_eq!(approx_f64(-d).to_bits(), old(-d).to_bits(), "{d}");
                        }
                    }
                }
            }
        }
        let negative_zero = Decimal::from_parts(0, 0, 0, true, 3);
        assert_eq!(
            approx_f64(negative_zero).to_bits(),
            old(negative_zero).to_bits()
        );
        assert_eq!(
            approx_f64(Decimal::MAX).to_bits(),
            old(Decimal::MAX).to_bits()
        );
        assert_eq!(
            approx_f64(Decimal::MIN).to_bits(),
            old(Decimal::MIN).to_bits()
        );
    }
}
