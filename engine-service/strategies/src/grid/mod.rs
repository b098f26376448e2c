//! The grid engine (grid-engine spec sections 1, 2, 3, 6, 7, 8): slots that
//! pair-trade around the market, the position ledger that remembers every
//! entry and its exit, self-healing reprices paid from a per-slot subsidy,
//! and operator-spawned churners that earn that subsidy.
//!
//! - [`slot`]: one slot as a pure reducer, `transition(state, event, ctx)`.
//! - [`ledger`]: position records and the subsidy, rebuilt from the journal.
//! - [`heal`]: age bands and the self-healing reprice rules (pure).
//! - [`crate::churner`]: churners (their own reducer; the grid hosts them).
//! - [`strategy`]: the [`crate::strategy::Strategy`] that wraps all of it.
//! - [`config`]: the `[grid]` and `[churner]` config sections.

pub mod config;
pub mod heal;
pub mod ledger;
pub mod slot;
pub mod strategy;

use rust_decimal::{Decimal, RoundingStrategy};

pub use config::GridConfig;
pub use strategy::Grid;

/// The strategy's name (status, journal owner, control lookups).
pub const STRATEGY_NAME: &str = "grid";
/// The journal stream of the position ledger (and slot cycles).
pub const JOURNAL_STREAM: &str = "grid";

/// 100, for percent arithmetic.
pub fn hundred() -> Decimal {
    Decimal::from(100)
}

/// `p` rounded up to the tick (sell prices: never below what was asked).
pub fn ceil_to_tick(p: Decimal, tick: Decimal) -> Decimal {
    if tick <= Decimal::ZERO {
        return p.normalize();
    }
    ((p / tick).ceil() * tick).normalize()
}

/// `p` rounded down to the tick (buy prices).
pub fn floor_to_tick(p: Decimal, tick: Decimal) -> Decimal {
    if tick <= Decimal::ZERO {
        return p.normalize();
    }
    ((p / tick).floor() * tick).normalize()
}

/// A volume rounded down to the pair's lot decimals (never upsized).
pub fn floor_lot(v: Decimal, lot_decimals: u32) -> Decimal {
    v.round_dp_with_strategy(lot_decimals, RoundingStrategy::ToZero)
        .normalize()
}

/// Seconds to milliseconds, saturating.
pub fn secs_ms(s: u64) -> i64 {
    i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX)
}

/// Money for status and the journal: the decimal's shortest exact form.
pub fn money(d: Decimal) -> String {
    d.normalize().to_string()
}
