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
mod row;
pub mod slot;
pub mod strategy;

use rust_decimal::{Decimal, RoundingStrategy};

use crate::strategy::Side;

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

/// The exit formula every exit of the grid, its self-healing and its
/// churners uses: a sell exit is `max(entry * (1 + entry_margin), market *
/// (1 + market_margin))` rounded up to the tick, a buy exit `min(entry * (1
/// - entry_margin), market * (1 - market_margin))` rounded down; margins are
/// fractions (0.01 = 1 %). So an exit is never closer to market than
/// `market_margin`, and never earns less than `entry_margin` on the entry.
pub fn exit_price(
    exit_side: Side,
    entry: Decimal,
    entry_margin: Decimal,
    market: Decimal,
    market_margin: Decimal,
    tick: Decimal,
) -> Decimal {
    match exit_side {
        Side::Sell => ceil_to_tick(
            (entry * (Decimal::ONE + entry_margin)).max(market * (Decimal::ONE + market_margin)),
            tick,
        ),
        Side::Buy => floor_to_tick(
            (entry * (Decimal::ONE - entry_margin)).min(market * (Decimal::ONE - market_margin)),
            tick,
        ),
    }
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
