//! Kraken's rate limits as the exchange enforces them, written from the
//! published tables and independent of the adapter's own model: a per-key
//! REST counter, one trading counter per pair (both continuously decaying
//! float levels), the per-pair open-order limit, and the temporary lockout
//! that repeated violations earn.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

/// Floating-point slack when comparing a level with its limit.
const EPSILON: f64 = 1e-6;

pub const API_RATE_LIMIT: &str = "EAPI:Rate limit exceeded";
pub const ORDER_RATE_LIMIT: &str = "EOrder:Rate limit exceeded";
pub const TEMPORARY_LOCKOUT: &str = "EGeneral:Temporary lockout";

/// Verification tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    #[default]
    Starter,
    Intermediate,
    Pro,
}

impl std::str::FromStr for Tier {
    type Err = String;
    fn from_str(s: &str) -> Result<Tier, String> {
        match s.to_ascii_lowercase().as_str() {
            "starter" => Ok(Tier::Starter),
            "intermediate" => Ok(Tier::Intermediate),
            "pro" => Ok(Tier::Pro),
            other => Err(format!(
                "{other:?} is not a tier (starter, intermediate, pro)"
            )),
        }
    }
}

/// The numbers of one tier (spec/kraken.md, "Rate limits").
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TierTable {
    pub rest_max: f64,
    pub rest_decay: f64,
    pub trading_max: f64,
    pub trading_decay: f64,
    pub open_orders_per_pair: usize,
}

impl Tier {
    pub fn table(self) -> TierTable {
        match self {
            Tier::Starter => TierTable {
                rest_max: 15.0,
                rest_decay: 0.33,
                trading_max: 60.0,
                trading_decay: 1.0,
                open_orders_per_pair: 60,
            },
            Tier::Intermediate => TierTable {
                rest_max: 20.0,
                rest_decay: 0.5,
                trading_max: 125.0,
                trading_decay: 2.34,
                open_orders_per_pair: 80,
            },
            Tier::Pro => TierTable {
                rest_max: 20.0,
                rest_decay: 1.0,
                trading_max: 180.0,
                trading_decay: 3.75,
                open_orders_per_pair: 225,
            },
        }
    }
}

/// REST counter cost of a private method: AddOrder and CancelOrder count on
/// the trading counter only; ledger and trade-history queries cost 2.
pub fn rest_cost(method: &str) -> f64 {
    match method {
        "AddOrder" | "CancelOrder" | "AddOrderBatch" | "CancelOrderBatch" | "AmendOrder"
        | "EditOrder" => 0.0,
        "TradesHistory" | "QueryTrades" | "Ledgers" | "QueryLedgers" => 2.0,
        _ => 1.0,
    }
}

/// Trading counter penalty of cancelling an order `age_ms` old.
pub fn cancel_penalty(age_ms: i64) -> f64 {
    match age_ms {
        a if a < 5_000 => 8.0,
        a if a < 10_000 => 6.0,
        a if a < 15_000 => 5.0,
        a if a < 45_000 => 4.0,
        a if a < 90_000 => 2.0,
        a if a < 300_000 => 1.0,
        _ => 0.0,
    }
}

/// A level that decays linearly to zero.
#[derive(Debug, Clone, PartialEq)]
pub struct Decaying {
    pub max: f64,
    pub decay: f64,
    level: f64,
    at_s: f64,
}

impl Decaying {
    pub fn new(max: f64, decay: f64) -> Decaying {
        Decaying {
            max,
            decay,
            level: 0.0,
            at_s: 0.0,
        }
    }

    pub fn level(&self, now_s: f64) -> f64 {
        (self.level - self.decay * (now_s - self.at_s).max(0.0)).max(0.0)
    }

    /// Adds `cost` unless that takes the level above the maximum.
    pub fn try_add(&mut self, now_s: f64, cost: f64) -> bool {
        let level = self.level(now_s);
        if level + cost > self.max + EPSILON {
            return false;
        }
        self.level = level + cost;
        self.at_s = now_s;
        true
    }
}

/// How often violations turn into a lockout.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LockoutPolicy {
    /// This many rate-limit violations within `window_ms` lock the key.
    pub violations: usize,
    pub window_ms: i64,
    /// How long an earned lockout lasts.
    pub duration_ms: i64,
}

impl Default for LockoutPolicy {
    fn default() -> LockoutPolicy {
        LockoutPolicy {
            violations: 20,
            window_ms: 60_000,
            duration_ms: 15 * 60_000,
        }
    }
}

/// Every limit of one key.
#[derive(Debug, Clone)]
pub struct Limits {
    pub table: TierTable,
    pub enforce: bool,
    pub policy: LockoutPolicy,
    rest: Decaying,
    trading: BTreeMap<String, Decaying>,
    violations: VecDeque<i64>,
    locked_until_ms: Option<i64>,
}

impl Limits {
    pub fn new(tier: Tier, enforce: bool, policy: LockoutPolicy) -> Limits {
        let table = tier.table();
        Limits {
            table,
            enforce,
            policy,
            rest: Decaying::new(table.rest_max, table.rest_decay),
            trading: BTreeMap::new(),
            violations: VecDeque::new(),
            locked_until_ms: None,
        }
    }

    /// Fails with the lockout error while the key is locked.
    pub fn check_lockout(&self, now_ms: i64) -> Result<(), &'static str> {
        match self.locked_until_ms {
            Some(until) if until > now_ms => Err(TEMPORARY_LOCKOUT),
            _ => Ok(()),
        }
    }

    pub fn lock_for(&mut self, now_ms: i64, ms: i64) {
        self.locked_until_ms = Some(now_ms + ms);
    }

    pub fn locked_until_ms(&self, now_ms: i64) -> Option<i64> {
        self.locked_until_ms.filter(|u| *u > now_ms)
    }

    fn violation(&mut self, now_ms: i64) {
        self.violations.push_back(now_ms);
        while self
            .violations
            .front()
            .is_some_and(|t| *t < now_ms - self.policy.window_ms)
        {
            self.violations.pop_front();
        }
        if self.violations.len() >= self.policy.violations {
            self.violations.clear();
            self.lock_for(now_ms, self.policy.duration_ms);
        }
    }

    /// Charges the REST counter.
    pub fn charge_rest(&mut self, now_s: f64, now_ms: i64, cost: f64) -> Result<(), &'static str> {
        if cost <= 0.0 || !self.enforce {
            return Ok(());
        }
        if self.rest.try_add(now_s, cost) {
            Ok(())
        } else {
            self.violation(now_ms);
            Err(API_RATE_LIMIT)
        }
    }

    /// Charges a pair's trading counter.
    pub fn charge_trading(
        &mut self,
        pair: &str,
        now_s: f64,
        now_ms: i64,
        cost: f64,
    ) -> Result<(), &'static str> {
        if cost <= 0.0 || !self.enforce {
            return Ok(());
        }
        let t = self.table;
        let counter = self
            .trading
            .entry(pair.to_string())
            .or_insert_with(|| Decaying::new(t.trading_max, t.trading_decay));
        if counter.try_add(now_s, cost) {
            Ok(())
        } else {
            self.violation(now_ms);
            Err(ORDER_RATE_LIMIT)
        }
    }

    /// (name, level, max) of every counter.
    pub fn levels(&self, now_s: f64) -> Vec<(String, f64, f64)> {
        let mut v = vec![("rest".to_string(), self.rest.level(now_s), self.rest.max)];
        v.extend(
            self.trading
                .iter()
                .map(|(p, c)| (format!("trading:{p}"), c.level(now_s), c.max)),
        );
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rest_counter_decays_continuously() {
        let mut l = Limits::new(Tier::Starter, true, LockoutPolicy::default());
        for _ in 0..15 {
            assert!(l.charge_rest(0.0, 0, 1.0).is_ok());
        }
        assert_eq!(l.charge_rest(0.0, 0, 1.0), Err(API_RATE_LIMIT));
        // One unit decays in 1 / 0.33 s.
        assert_eq!(l.charge_rest(3.0, 3000, 1.0), Err(API_RATE_LIMIT));
        assert!(l.charge_rest(3.04, 3040, 1.0).is_ok());
        assert_eq!(l.charge_rest(3.05, 3050, 2.0), Err(API_RATE_LIMIT));
    }

    #[test]
    fn trading_counter_per_pair_and_lockout() {
        let policy = LockoutPolicy {
            violations: 3,
            window_ms: 1000,
            duration_ms: 5000,
        };
        let mut l = Limits::new(Tier::Starter, true, policy);
        for _ in 0..60 {
            assert!(l.charge_trading("XDGUSD", 0.0, 0, 1.0).is_ok());
        }
        assert!(l.charge_trading("XBTUSD", 0.0, 0, 8.0).is_ok());
        for _ in 0..3 {
            assert_eq!(
                l.charge_trading("XDGUSD", 0.0, 0, 1.0),
                Err(ORDER_RATE_LIMIT)
            );
        }
        assert_eq!(l.check_lockout(10), Err(TEMPORARY_LOCKOUT));
        assert!(l.check_lockout(5000).is_ok());
        assert_eq!(cancel_penalty(4_999), 8.0);
        assert_eq!(cancel_penalty(300_000), 0.0);
    }
}
