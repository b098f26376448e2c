//! The `[grid]` config section (env `GRID_*`) with its `[grid.churner]`
//! sub-section (env `CHURNER_*`). Every number in the grid-engine spec is a
//! knob here, with the spec's value as the default. Safe by default: the
//! grid is disabled until `enabled = true`.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::churner::ChurnerConfig;

/// Width of the grid slots' userref sub-range (slot `n` uses
/// `userref_offset + n`); also the most slots allowed.
pub const USERREF_SPAN: i32 = 300;

/// Which trades a slot may open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SlotMode {
    /// Both trades (A: sell first, B: buy first).
    #[default]
    Both,
    /// Only trade B (buy entries): from balance or regime.
    LongOnly,
    /// Only trade A (sell entries).
    ShortOnly,
}

impl SlotMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SlotMode::Both => "both",
            SlotMode::LongOnly => "long_only",
            SlotMode::ShortOnly => "short_only",
        }
    }
}

/// Knobs of one slot (spec section 1). Percentages are percent (0.2 = 0.2 %).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SlotParams {
    /// USD value of one entry.
    #[serde(deserialize_with = "herd_types::decimal::deserialize")]
    pub order_size_usd: Decimal,
    /// Entry distance from market, percent.
    #[serde(deserialize_with = "herd_types::decimal::deserialize")]
    pub entry_pct: Decimal,
    /// Exit profit over the entry fill, percent (a volatility-adjusted
    /// runtime value may raise it).
    #[serde(deserialize_with = "herd_types::decimal::deserialize")]
    pub profit_pct: Decimal,
    /// An entry further than this from market (percent) is refreshed.
    #[serde(deserialize_with = "herd_types::decimal::deserialize")]
    pub refresh_pct: Decimal,
    /// Same-direction refreshes in a row that start the refresh cooldown.
    pub refresh_chase_limit: u32,
    pub refresh_cooldown_sec: u64,
    /// Consecutive losses on a side that cool that side down.
    pub loss_cooldown_after: u32,
    pub loss_cooldown_sec: u64,
    /// Delay before a trade re-enters after a completed cycle.
    pub reentry_delay_sec: u64,
    /// Consecutive losses from which the entry distance backs off.
    pub backoff_after_losses: u32,
    /// Backoff growth per further loss (0.5) and its cap (5).
    #[serde(deserialize_with = "herd_types::decimal::deserialize")]
    pub backoff_step: Decimal,
    #[serde(deserialize_with = "herd_types::decimal::deserialize")]
    pub backoff_max: Decimal,
    /// S1: an exit older than this with the market moved away is orphaned.
    pub s1_orphan_sec: u64,
    /// S2: after this long in S2 the farther exit is orphaned.
    pub s2_orphan_sec: u64,
    /// Recovery orders kept per slot; more evicts one.
    pub max_recovery: u32,
    /// Maker fee used until the instrument's is known.
    #[serde(deserialize_with = "herd_types::decimal::deserialize")]
    pub maker_fee: Decimal,
}

impl Default for SlotParams {
    fn default() -> SlotParams {
        SlotParams {
            order_size_usd: Decimal::new(200, 2),
            entry_pct: Decimal::new(20, 2),
            profit_pct: Decimal::new(100, 2),
            refresh_pct: Decimal::new(100, 2),
            refresh_chase_limit: 3,
            refresh_cooldown_sec: 300,
            loss_cooldown_after: 5,
            loss_cooldown_sec: 900,
            reentry_delay_sec: 60,
            backoff_after_losses: 3,
            backoff_step: Decimal::new(5, 1),
            backoff_max: Decimal::from(5),
            s1_orphan_sec: 1350,
            s2_orphan_sec: 1800,
            max_recovery: 2,
            maker_fee: Decimal::new(25, 4),
        }
    }
}

/// Self-healing knobs (spec section 2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealParams {
    pub enabled: bool,
    /// Band edges in hours of effective age: fresh < aging < stale < stuck <
    /// write_off.
    /// Hours, decimal (a demo herd may age positions in minutes).
    #[serde(deserialize_with = "herd_types::decimal::deserialize")]
    pub aging_hours: Decimal,
    #[serde(deserialize_with = "herd_types::decimal::deserialize")]
    pub stale_hours: Decimal,
    #[serde(deserialize_with = "herd_types::decimal::deserialize")]
    pub stuck_hours: Decimal,
    #[serde(deserialize_with = "herd_types::decimal::deserialize")]
    pub write_off_hours: Decimal,
    /// Distance weight: effective age = age * (1 + distance_pct / this).
    #[serde(deserialize_with = "herd_types::decimal::deserialize")]
    pub distance_divisor: Decimal,
    /// The free stale-band tighten's profit over the entry, percent.
    #[serde(deserialize_with = "herd_types::decimal::deserialize")]
    pub tighten_profit_pct: Decimal,
    /// Least time between two subsidised reprices of one position.
    pub reprice_cooldown_sec: u64,
}

impl Default for HealParams {
    fn default() -> HealParams {
        HealParams {
            enabled: true,
            aging_hours: Decimal::from(6),
            stale_hours: Decimal::from(24),
            stuck_hours: Decimal::from(72),
            write_off_hours: Decimal::from(168),
            distance_divisor: Decimal::from(5),
            tighten_profit_pct: Decimal::new(50, 2),
            reprice_cooldown_sec: 3600,
        }
    }
}

/// The `[grid]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GridConfig {
    /// Master switch (GRID_ENABLED). Off: no slot places anything; the
    /// ledger and status stay.
    pub enabled: bool,
    /// How many slots (GRID_SLOTS), 1 to 300.
    pub slots: u32,
    /// Slot ids that never orphan.
    pub sticky: Vec<u32>,
    /// long_only / short_only / both (GRID_MODE).
    pub mode: SlotMode,
    /// Follow the regime: a ready BULLISH reading makes the slots
    /// long-only, BEARISH short-only, anything else `mode`.
    pub mode_from_regime: bool,
    /// Realized losses today (USD, evictions included) that lock new
    /// entries until the UTC day changes (GRID_DAILY_LOSS_LIMIT_USD).
    #[serde(deserialize_with = "herd_types::decimal::deserialize")]
    pub daily_loss_limit_usd: Decimal,
    /// Start of the slots' userref sub-range (GRID_USERREF_OFFSET); the
    /// rangers use 800-899.
    pub userref_offset: i32,
    /// Cycles kept per slot for status.
    pub recent_cycles: usize,
    /// Volatility-adjusted profit: the exit profit in force is
    /// max(slot.profit_pct, factor * the market's high-low range over the
    /// window, percent). 0 turns it off.
    #[serde(deserialize_with = "herd_types::decimal::deserialize")]
    pub volatility_profit_factor: Decimal,
    pub volatility_window_sec: u64,
    /// `[grid.slot]`: the knobs every slot shares.
    pub slot: SlotParams,
    pub heal: HealParams,
    pub churner: ChurnerConfig,
}

impl Default for GridConfig {
    fn default() -> GridConfig {
        GridConfig {
            enabled: false,
            slots: 3,
            sticky: Vec::new(),
            mode: SlotMode::Both,
            mode_from_regime: false,
            daily_loss_limit_usd: Decimal::from(5),
            userref_offset: 100,
            recent_cycles: 10,
            volatility_profit_factor: Decimal::ZERO,
            volatility_window_sec: 3600,
            slot: SlotParams::default(),
            heal: HealParams::default(),
            churner: ChurnerConfig::default(),
        }
    }
}

/// Environment variables of the grid (one place for their names).
pub mod env {
    pub const ENABLED: &str = "GRID_ENABLED";
    pub const SLOTS: &str = "GRID_SLOTS";
    pub const MODE: &str = "GRID_MODE";
    pub const ORDER_SIZE_USD: &str = "GRID_ORDER_SIZE_USD";
    pub const ENTRY_PCT: &str = "GRID_ENTRY_PCT";
    pub const PROFIT_PCT: &str = "GRID_PROFIT_PCT";
    pub const DAILY_LOSS_LIMIT_USD: &str = "GRID_DAILY_LOSS_LIMIT_USD";
    pub const USERREF_OFFSET: &str = "GRID_USERREF_OFFSET";
    pub const CHURNER_ENABLED: &str = "CHURNER_ENABLED";
    pub const CHURNER_MAX_ACTIVE: &str = "CHURNER_MAX_ACTIVE";
    pub const CHURNER_RESERVE_USD: &str = "CHURNER_RESERVE_USD";
}

pub use crate::envvar::EnvError;
use crate::envvar::{parse, parse_bool, parse_decimal};

impl GridConfig {
    /// Applies `GRID_*` / `CHURNER_*` overrides from `get`.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), EnvError> {
        if let Some(v) = get(env::ENABLED) {
            self.enabled = parse_bool(env::ENABLED, &v)?;
        }
        if let Some(v) = get(env::SLOTS) {
            self.slots = parse(env::SLOTS, &v)?;
        }
        if let Some(v) = get(env::MODE) {
            self.mode = match v.trim().to_ascii_lowercase().as_str() {
                "both" => SlotMode::Both,
                "long_only" => SlotMode::LongOnly,
                "short_only" => SlotMode::ShortOnly,
                other => {
                    return Err((
                        env::MODE,
                        format!("{other:?} is not both, long_only or short_only"),
                    ));
                }
            };
        }
        if let Some(v) = get(env::ORDER_SIZE_USD) {
            self.slot.order_size_usd = parse_decimal(env::ORDER_SIZE_USD, &v)?;
        }
        if let Some(v) = get(env::ENTRY_PCT) {
            self.slot.entry_pct = parse_decimal(env::ENTRY_PCT, &v)?;
        }
        if let Some(v) = get(env::PROFIT_PCT) {
            self.slot.profit_pct = parse_decimal(env::PROFIT_PCT, &v)?;
        }
        if let Some(v) = get(env::DAILY_LOSS_LIMIT_USD) {
            self.daily_loss_limit_usd = parse_decimal(env::DAILY_LOSS_LIMIT_USD, &v)?;
        }
        if let Some(v) = get(env::USERREF_OFFSET) {
            self.userref_offset = parse(env::USERREF_OFFSET, &v)?;
        }
        if let Some(v) = get(env::CHURNER_ENABLED) {
            self.churner.enabled = parse_bool(env::CHURNER_ENABLED, &v)?;
        }
        if let Some(v) = get(env::CHURNER_MAX_ACTIVE) {
            self.churner.max_active = parse(env::CHURNER_MAX_ACTIVE, &v)?;
        }
        if let Some(v) = get(env::CHURNER_RESERVE_USD) {
            self.churner.reserve_usd = parse_decimal(env::CHURNER_RESERVE_USD, &v)?;
        }
        Ok(())
    }

    /// Checks the knobs; the message names the knob.
    pub fn validate(&self) -> Result<(), String> {
        let span = u32::try_from(USERREF_SPAN).unwrap_or(300);
        if self.slots == 0 || self.slots > span {
            return Err(format!(
                "grid.slots ({}): {} must be 1..={span}",
                env::SLOTS,
                self.slots
            ));
        }
        let s = &self.slot;
        if s.order_size_usd <= Decimal::ZERO {
            return Err(format!(
                "grid.order_size_usd ({}): {} must be greater than zero",
                env::ORDER_SIZE_USD,
                s.order_size_usd
            ));
        }
        if s.entry_pct <= Decimal::ZERO || s.entry_pct >= Decimal::from(10) {
            return Err(format!(
                "grid.entry_pct ({}): {} must be in (0, 10) percent",
                env::ENTRY_PCT,
                s.entry_pct
            ));
        }
        if s.profit_pct <= Decimal::ZERO || s.profit_pct >= Decimal::from(50) {
            return Err(format!(
                "grid.profit_pct ({}): {} must be in (0, 50) percent",
                env::PROFIT_PCT,
                s.profit_pct
            ));
        }
        if s.refresh_pct <= Decimal::ZERO {
            return Err(format!(
                "grid.refresh_pct: {} must be greater than zero",
                s.refresh_pct
            ));
        }
        if s.max_recovery == 0 {
            return Err("grid.max_recovery must be >= 1".into());
        }
        if s.maker_fee < Decimal::ZERO || s.maker_fee >= Decimal::ONE {
            return Err(format!("grid.maker_fee: {} must be in [0, 1)", s.maker_fee));
        }
        if s.backoff_max < Decimal::ONE || s.backoff_step < Decimal::ZERO {
            return Err("grid.backoff_max must be >= 1 and backoff_step >= 0".into());
        }
        if self.volatility_profit_factor < Decimal::ZERO {
            return Err(format!(
                "grid.volatility_profit_factor: {} must not be negative",
                self.volatility_profit_factor
            ));
        }
        if self.daily_loss_limit_usd < Decimal::ZERO {
            return Err(format!(
                "grid.daily_loss_limit_usd ({}): {} must not be negative",
                env::DAILY_LOSS_LIMIT_USD,
                self.daily_loss_limit_usd
            ));
        }
        if self.userref_offset < 1 || self.userref_offset > i32::MAX - USERREF_SPAN {
            return Err(format!(
                "grid.userref_offset ({}): {} must be >= 1",
                env::USERREF_OFFSET,
                self.userref_offset
            ));
        }
        let (lo, hi) = (self.userref_offset, self.userref_offset + USERREF_SPAN);
        let (clo, chi) = (
            self.churner.userref_offset,
            self.churner.userref_offset + crate::churner::USERREF_SPAN,
        );
        if lo < chi && clo < hi {
            return Err(format!(
                "grid.userref_offset {lo}..{hi} overlaps grid.churner.userref_offset {clo}..{chi}"
            ));
        }
        for (name, r) in [("rangers", 800..900)] {
            if lo < r.end && r.start < hi || clo < r.end && r.start < chi {
                return Err(format!(
                    "grid userrefs {lo}..{hi} / churners {clo}..{chi} overlap the {name}' {r:?}"
                ));
            }
        }
        let h = &self.heal;
        if !(Decimal::ZERO < h.aging_hours
            && h.aging_hours < h.stale_hours
            && h.stale_hours < h.stuck_hours
            && h.stuck_hours < h.write_off_hours)
        {
            return Err(
                "grid.heal: band edges must increase (0 < aging < stale < stuck < write_off)"
                    .into(),
            );
        }
        if h.distance_divisor <= Decimal::ZERO {
            return Err("grid.heal.distance_divisor must be greater than zero".into());
        }
        self.churner.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_spec_and_validate() {
        let c = GridConfig::default();
        assert!(!c.enabled, "nothing trades by default");
        assert_eq!(c.slot.entry_pct.to_string(), "0.20");
        assert_eq!(c.slot.profit_pct.to_string(), "1.00");
        assert_eq!(c.slot.maker_fee.to_string(), "0.0025");
        assert_eq!((c.slot.s1_orphan_sec, c.slot.s2_orphan_sec), (1350, 1800));
        assert_eq!(c.churner.max_active, 5);
        c.validate().unwrap();
    }

    #[test]
    fn env_and_validation_name_the_knob() {
        let mut c = GridConfig::default();
        c.apply_env(|k| match k {
            env::ENABLED => Some("true".into()),
            env::SLOTS => Some("4".into()),
            env::MODE => Some("long_only".into()),
            _ => None,
        })
        .unwrap();
        assert!(c.enabled && c.slots == 4 && c.mode == SlotMode::LongOnly);
        let e = c
            .apply_env(|k| (k == env::MODE).then(|| "sideways".into()))
            .unwrap_err();
        assert_eq!(e.0, env::MODE);
        let bad = GridConfig {
            userref_offset: 850,
            ..GridConfig::default()
        };
        assert!(bad.validate().unwrap_err().contains("rangers"));
        let bad = GridConfig {
            slots: 0,
            ..GridConfig::default()
        };
        assert!(bad.validate().unwrap_err().contains("GRID_SLOTS"));
        let toml_text =
            "enabled = true\nslots = 2\n[slot]\nentry_pct = \"0.3\"\n[churner]\nmax_active = 2\n";
        let c: GridConfig = toml::from_str(toml_text).unwrap();
        assert_eq!(c.slot.entry_pct.to_string(), "0.3");
        assert_eq!(c.churner.max_active, 2);
    }
}
