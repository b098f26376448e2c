//! The `[funding]` config section (env: `FUNDING_*`) and the risk limits an
//! operator may change at runtime. Defaults are the seed's numbers and safe:
//! the orchestrator is disabled until `enabled = true`.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// Environment variables that override the section (one place for names).
pub mod env {
    pub const ENABLED: &str = "FUNDING_ENABLED";
    pub const CYCLE_INTERVAL_MS: &str = "FUNDING_CYCLE_INTERVAL_MS";
    pub const SYMBOLS: &str = "FUNDING_SYMBOLS";
    pub const MAX_POSITION_USD: &str = "FUNDING_MAX_POSITION_USD";
    pub const MAX_POSITIONS: &str = "FUNDING_MAX_POSITIONS";
    pub const MAX_TOTAL_EXPOSURE_USD: &str = "FUNDING_MAX_TOTAL_EXPOSURE_USD";
    pub const MIN_RATE: &str = "FUNDING_MIN_RATE";
    pub const EXIT_RATE: &str = "FUNDING_EXIT_RATE";
    pub const MIN_TURNOVER_USD: &str = "FUNDING_MIN_TURNOVER_USD";
    pub const MIN_HOLDING_PERIODS: &str = "FUNDING_MIN_HOLDING_PERIODS";
    pub const MIN_HOLD_PERIODS: &str = "FUNDING_MIN_HOLD_PERIODS";
    pub const EXIT_CONFIRMATIONS: &str = "FUNDING_EXIT_CONFIRMATIONS";
    pub const MARGIN_ALERT: &str = "FUNDING_MARGIN_ALERT";
    pub const MARGIN_CRITICAL: &str = "FUNDING_MARGIN_CRITICAL";
    pub const LEG_TIMEOUT_MS: &str = "FUNDING_LEG_TIMEOUT_MS";
    pub const SHUTDOWN_POLICY: &str = "FUNDING_SHUTDOWN_POLICY";
}

/// What SIGTERM / SIGINT does to open hedges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ShutdownPolicy {
    /// Stop opening, leave hedged positions, reconcile on restart (every
    /// Kubernetes rollout sends SIGTERM).
    #[default]
    Keep,
    /// Close every position first (the original bot's behaviour).
    Flatten,
}

impl ShutdownPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            ShutdownPolicy::Keep => "keep",
            ShutdownPolicy::Flatten => "flatten",
        }
    }
}

/// The limits the risk manager enforces; changeable at runtime
/// (SetFundingRiskLimits), validated as a whole.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RiskLimits {
    /// Largest position, spot notional in USD.
    #[serde(deserialize_with = "herd_types::decimal::deserialize")]
    pub max_position_usd: Decimal,
    /// Most positions open at once.
    pub max_positions: u32,
    /// Cap on the sum of open positions' notional, USD.
    #[serde(deserialize_with = "herd_types::decimal::deserialize")]
    pub max_total_exposure_usd: Decimal,
    /// Lowest funding rate (per period) worth opening on.
    #[serde(deserialize_with = "herd_types::decimal::deserialize")]
    pub min_rate: Decimal,
    /// Below this rate (per period) a position is closed (after the minimum
    /// hold and the confirmations).
    #[serde(deserialize_with = "herd_types::decimal::deserialize")]
    pub exit_rate: Decimal,
    /// Maintenance-margin ratio that stops opening and alerts.
    #[serde(deserialize_with = "herd_types::decimal::deserialize")]
    pub margin_alert: Decimal,
    /// Maintenance-margin ratio that triggers the emergency stop.
    #[serde(deserialize_with = "herd_types::decimal::deserialize")]
    pub margin_critical: Decimal,
}

impl Default for RiskLimits {
    fn default() -> RiskLimits {
        RiskLimits {
            max_position_usd: Decimal::from(1000),
            max_positions: 5,
            max_total_exposure_usd: Decimal::from(5000),
            min_rate: Decimal::new(3, 4),
            exit_rate: Decimal::new(1, 4),
            margin_alert: Decimal::new(8, 1),
            margin_critical: Decimal::new(9, 1),
        }
    }
}

/// A limit that is out of range: (field, message).
pub type LimitError = (&'static str, String);

impl RiskLimits {
    /// Checks every limit; the error names the field.
    pub fn validate(&self) -> Result<(), LimitError> {
        if self.max_position_usd <= Decimal::ZERO {
            return Err((
                "max_position_usd",
                format!("{} must be greater than zero", self.max_position_usd),
            ));
        }
        if self.max_positions == 0 || self.max_positions > 100 {
            return Err((
                "max_positions",
                format!("{} must be 1..=100", self.max_positions),
            ));
        }
        if self.max_total_exposure_usd < self.max_position_usd {
            return Err((
                "max_total_exposure_usd",
                format!(
                    "{} must be at least max_position_usd ({})",
                    self.max_total_exposure_usd, self.max_position_usd
                ),
            ));
        }
        if self.min_rate <= Decimal::ZERO || self.min_rate >= Decimal::new(1, 1) {
            return Err((
                "min_rate",
                format!("{} must be in (0, 0.1) per period", self.min_rate),
            ));
        }
        if self.exit_rate < Decimal::ZERO || self.exit_rate > self.min_rate {
            return Err((
                "exit_rate",
                format!(
                    "{} must be in [0, min_rate = {}] (the gap is the hysteresis)",
                    self.exit_rate, self.min_rate
                ),
            ));
        }
        if self.margin_alert <= Decimal::ZERO || self.margin_alert >= Decimal::ONE {
            return Err((
                "margin_alert",
                format!("{} must be in (0, 1)", self.margin_alert),
            ));
        }
        if self.margin_critical <= self.margin_alert || self.margin_critical > Decimal::ONE {
            return Err((
                "margin_critical",
                format!(
                    "{} must be in (margin_alert = {}, 1]",
                    self.margin_critical, self.margin_alert
                ),
            ));
        }
        Ok(())
    }
}

/// The `[funding]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FundingConfig {
    /// Master switch (FUNDING_ENABLED).
    pub enabled: bool,
    /// Milliseconds between cycles (FUNDING_CYCLE_INTERVAL_MS); a cycle
    /// still running when the next is due makes that one skip.
    pub cycle_interval_ms: u64,
    /// Only these perpetuals ("BTCUSDT-PERP"); empty = every perpetual.
    pub symbols: Vec<String>,
    /// Quote coin of the spot legs and of PnL.
    pub quote_asset: String,
    /// Taker fees used when the venue does not report an instrument's.
    #[serde(deserialize_with = "herd_types::decimal::deserialize")]
    pub spot_taker_fee: Decimal,
    #[serde(deserialize_with = "herd_types::decimal::deserialize")]
    pub perp_taker_fee: Decimal,
    /// Funding periods a position is expected to last: the round-trip fee
    /// is spread over them when ranking.
    pub min_holding_periods: u32,
    /// 24 h turnover (USD) a perpetual needs to be considered.
    #[serde(deserialize_with = "herd_types::decimal::deserialize")]
    pub min_turnover_usd: Decimal,
    /// Minimum hold before a decaying rate may close a position, in funding
    /// periods of that perpetual.
    pub min_hold_periods: u32,
    /// Consecutive cycles the rate must stay below `exit_rate` before a
    /// close (hysteresis against a flickering rate).
    pub exit_confirmations: u32,
    /// Share of the notional kept free for the perp's margin and fees when
    /// sizing (0.2 = notional <= free / 1.2).
    #[serde(deserialize_with = "herd_types::decimal::deserialize")]
    pub perp_margin_reserve: Decimal,
    /// Largest relative difference of the two legs' fill prices.
    #[serde(deserialize_with = "herd_types::decimal::deserialize")]
    pub max_drift: Decimal,
    /// Deadline for both legs of an open or close, milliseconds.
    pub leg_timeout_ms: u64,
    /// How long an unknown outcome is polled before the cycle moves on
    /// (it is polled again next cycle), milliseconds.
    pub resolve_timeout_ms: u64,
    /// Pause between order polls, milliseconds.
    pub poll_interval_ms: u64,
    /// Ranking entries shown in status.
    pub ranking_top_n: u32,
    /// SIGTERM / SIGINT: keep (default) or flatten.
    pub shutdown_policy: ShutdownPolicy,
    /// Risk limits (see [`RiskLimits`]); operators may change them at
    /// runtime.
    #[serde(deserialize_with = "herd_types::decimal::deserialize")]
    pub max_position_usd: Decimal,
    pub max_positions: u32,
    #[serde(deserialize_with = "herd_types::decimal::deserialize")]
    pub max_total_exposure_usd: Decimal,
    #[serde(deserialize_with = "herd_types::decimal::deserialize")]
    pub min_rate: Decimal,
    #[serde(deserialize_with = "herd_types::decimal::deserialize")]
    pub exit_rate: Decimal,
    #[serde(deserialize_with = "herd_types::decimal::deserialize")]
    pub margin_alert: Decimal,
    #[serde(deserialize_with = "herd_types::decimal::deserialize")]
    pub margin_critical: Decimal,
}

impl Default for FundingConfig {
    fn default() -> FundingConfig {
        FundingConfig {
            enabled: false,
            cycle_interval_ms: 60_000,
            symbols: Vec::new(),
            quote_asset: "USDT".into(),
            spot_taker_fee: Decimal::new(1, 3),
            perp_taker_fee: Decimal::new(55, 5),
            min_holding_periods: 3,
            min_turnover_usd: Decimal::from(1_000_000),
            min_hold_periods: 1,
            exit_confirmations: 2,
            perp_margin_reserve: Decimal::new(2, 1),
            max_drift: Decimal::new(2, 2),
            leg_timeout_ms: 5_000,
            resolve_timeout_ms: 30_000,
            poll_interval_ms: 250,
            ranking_top_n: 5,
            shutdown_policy: ShutdownPolicy::Keep,
            max_position_usd: RiskLimits::default().max_position_usd,
            max_positions: RiskLimits::default().max_positions,
            max_total_exposure_usd: RiskLimits::default().max_total_exposure_usd,
            min_rate: RiskLimits::default().min_rate,
            exit_rate: RiskLimits::default().exit_rate,
            margin_alert: RiskLimits::default().margin_alert,
            margin_critical: RiskLimits::default().margin_critical,
        }
    }
}

pub use crate::envvar::EnvError;
use crate::envvar::{parse, parse_bool, parse_decimal};

impl FundingConfig {
    /// The configured risk limits (the runtime ones start here).
    pub fn limits(&self) -> RiskLimits {
        RiskLimits {
            max_position_usd: self.max_position_usd,
            max_positions: self.max_positions,
            max_total_exposure_usd: self.max_total_exposure_usd,
            min_rate: self.min_rate,
            exit_rate: self.exit_rate,
            margin_alert: self.margin_alert,
            margin_critical: self.margin_critical,
        }
    }

    /// Applies `FUNDING_*` overrides from `get`.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), EnvError> {
        if let Some(v) = get(env::ENABLED) {
            self.enabled = parse_bool(env::ENABLED, &v)?;
        }
        if let Some(v) = get(env::CYCLE_INTERVAL_MS) {
            self.cycle_interval_ms = parse(env::CYCLE_INTERVAL_MS, &v)?;
        }
        if let Some(v) = get(env::SYMBOLS) {
            self.symbols = v
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
        }
        if let Some(v) = get(env::MAX_POSITION_USD) {
            self.max_position_usd = parse_decimal(env::MAX_POSITION_USD, &v)?;
        }
        if let Some(v) = get(env::MAX_POSITIONS) {
            self.max_positions = parse(env::MAX_POSITIONS, &v)?;
        }
        if let Some(v) = get(env::MAX_TOTAL_EXPOSURE_USD) {
            self.max_total_exposure_usd = parse_decimal(env::MAX_TOTAL_EXPOSURE_USD, &v)?;
        }
        if let Some(v) = get(env::MIN_RATE) {
            self.min_rate = parse_decimal(env::MIN_RATE, &v)?;
        }
        if let Some(v) = get(env::EXIT_RATE) {
            self.exit_rate = parse_decimal(env::EXIT_RATE, &v)?;
        }
        if let Some(v) = get(env::MIN_TURNOVER_USD) {
            self.min_turnover_usd = parse_decimal(env::MIN_TURNOVER_USD, &v)?;
        }
        if let Some(v) = get(env::MIN_HOLDING_PERIODS) {
            self.min_holding_periods = parse(env::MIN_HOLDING_PERIODS, &v)?;
        }
        if let Some(v) = get(env::MIN_HOLD_PERIODS) {
            self.min_hold_periods = parse(env::MIN_HOLD_PERIODS, &v)?;
        }
        if let Some(v) = get(env::EXIT_CONFIRMATIONS) {
            self.exit_confirmations = parse(env::EXIT_CONFIRMATIONS, &v)?;
        }
        if let Some(v) = get(env::MARGIN_ALERT) {
            self.margin_alert = parse_decimal(env::MARGIN_ALERT, &v)?;
        }
        if let Some(v) = get(env::MARGIN_CRITICAL) {
            self.margin_critical = parse_decimal(env::MARGIN_CRITICAL, &v)?;
        }
        if let Some(v) = get(env::LEG_TIMEOUT_MS) {
            self.leg_timeout_ms = parse(env::LEG_TIMEOUT_MS, &v)?;
        }
        if let Some(v) = get(env::SHUTDOWN_POLICY) {
            self.shutdown_policy = match v.trim().to_ascii_lowercase().as_str() {
                "keep" => ShutdownPolicy::Keep,
                "flatten" => ShutdownPolicy::Flatten,
                other => {
                    return Err((
                        env::SHUTDOWN_POLICY,
                        format!("{other:?} is not keep or flatten"),
                    ));
                }
            };
        }
        Ok(())
    }

    /// Checks the knobs; the message names the knob.
    pub fn validate(&self) -> Result<(), String> {
        self.limits()
            .validate()
            .map_err(|(field, m)| format!("funding.{field}: {m}"))?;
        let bad = |field: &str, m: String| Err(format!("funding.{field}: {m}"));
        if self.cycle_interval_ms < 10 {
            return bad("cycle_interval_ms", "must be >= 10".into());
        }
        if self.min_holding_periods == 0 {
            return bad("min_holding_periods", "must be >= 1".into());
        }
        if self.leg_timeout_ms == 0 || self.poll_interval_ms == 0 {
            return bad(
                "leg_timeout_ms",
                "leg_timeout_ms and poll_interval_ms must be >= 1".into(),
            );
        }
        for (field, fee) in [
            ("spot_taker_fee", self.spot_taker_fee),
            ("perp_taker_fee", self.perp_taker_fee),
        ] {
            if fee < Decimal::ZERO || fee >= Decimal::new(1, 1) {
                return bad(field, format!("{fee} must be in [0, 0.1)"));
            }
        }
        if self.max_drift <= Decimal::ZERO || self.max_drift >= Decimal::ONE {
            return bad("max_drift", format!("{} must be in (0, 1)", self.max_drift));
        }
        if self.perp_margin_reserve < Decimal::ZERO || self.perp_margin_reserve > Decimal::ONE {
            return bad(
                "perp_margin_reserve",
                format!("{} must be in [0, 1]", self.perp_margin_reserve),
            );
        }
        if let Some(s) = self.symbols.iter().find(|s| !s.ends_with("-PERP")) {
            return bad(
                "symbols",
                format!("{s:?} is not a perpetual's symbol (\"BTCUSDT-PERP\")"),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_safe_and_valid() {
        let c = FundingConfig::default();
        assert!(!c.enabled);
        c.validate().unwrap();
        assert_eq!(c.shutdown_policy, ShutdownPolicy::Keep);
        assert_eq!(c.cycle_interval_ms, 60_000);
    }

    #[test]
    fn env_overrides_and_errors_name_the_variable() {
        let mut c = FundingConfig::default();
        c.apply_env(|k| match k {
            env::ENABLED => Some("true".into()),
            env::SYMBOLS => Some("ETHUSDT-PERP, SOLUSDT-PERP".into()),
            env::MIN_RATE => Some("0.0004".into()),
            env::SHUTDOWN_POLICY => Some("flatten".into()),
            _ => None,
        })
        .unwrap();
        assert!(c.enabled);
        assert_eq!(c.symbols, vec!["ETHUSDT-PERP", "SOLUSDT-PERP"]);
        assert_eq!(c.min_rate, Decimal::new(4, 4));
        assert_eq!(c.shutdown_policy, ShutdownPolicy::Flatten);
        let e = c
            .apply_env(|k| (k == env::MAX_POSITIONS).then(|| "lots".to_string()))
            .unwrap_err();
        assert_eq!(e.0, env::MAX_POSITIONS);
        let e = c
            .apply_env(|k| (k == env::SHUTDOWN_POLICY).then(|| "panic".to_string()))
            .unwrap_err();
        assert_eq!(e.0, env::SHUTDOWN_POLICY);
    }

    #[test]
    fn limit_validation_names_the_field() {
        type Mutate = Box<dyn Fn(&mut RiskLimits)>;
        let cases: Vec<(&str, Mutate)> = vec![
            (
                "max_position_usd",
                Box::new(|l| l.max_position_usd = Decimal::ZERO),
            ),
            ("max_positions", Box::new(|l| l.max_positions = 0)),
            (
                "max_total_exposure_usd",
                Box::new(|l| l.max_total_exposure_usd = Decimal::from(10)),
            ),
            ("min_rate", Box::new(|l| l.min_rate = Decimal::ZERO)),
            ("exit_rate", Box::new(|l| l.exit_rate = Decimal::new(5, 4))),
            ("margin_alert", Box::new(|l| l.margin_alert = Decimal::ONE)),
            (
                "margin_critical",
                Box::new(|l| l.margin_critical = Decimal::new(7, 1)),
            ),
        ];
        for (field, mutate) in cases {
            let mut l = RiskLimits::default();
            mutate(&mut l);
            assert_eq!(l.validate().unwrap_err().0, field);
        }
        let toml_text = "enabled = true\nmax_positions = 2\nmin_rate = \"0.0005\"\n";
        let c: FundingConfig = toml::from_str(toml_text).unwrap();
        assert_eq!(c.max_positions, 2);
        c.validate().unwrap();
    }
}
