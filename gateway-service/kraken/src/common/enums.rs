//! Kraken's enumerations, spelled as Kraken spells them on the wire, and the
//! account tier with its rate-limit table.

use serde::{Deserialize, Serialize};

/// Kraken verification tier: decides every rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// The safe default: the smallest limits.
    #[default]
    Starter,
    Intermediate,
    Pro,
}

/// The numbers of one tier.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TierLimits {
    /// REST counter maximum per key.
    pub rest_max: f64,
    /// REST counter decay per second.
    pub rest_decay_per_s: f64,
    /// Trading counter threshold per pair.
    pub trading_threshold: f64,
    /// Trading counter decay per second.
    pub trading_decay_per_s: f64,
    /// Open orders allowed per pair.
    pub max_open_orders: u32,
}

impl Tier {
    /// The limits Kraken publishes for this tier.
    pub fn limits(self) -> TierLimits {
        match self {
            Tier::Starter => TierLimits {
                rest_max: 15.0,
                rest_decay_per_s: 0.33,
                trading_threshold: 60.0,
                trading_decay_per_s: 1.0,
                max_open_orders: 60,
            },
            Tier::Intermediate => TierLimits {
                rest_max: 20.0,
                rest_decay_per_s: 0.5,
                trading_threshold: 125.0,
                trading_decay_per_s: 2.34,
                max_open_orders: 80,
            },
            Tier::Pro => TierLimits {
                rest_max: 20.0,
                rest_decay_per_s: 1.0,
                trading_threshold: 180.0,
                trading_decay_per_s: 3.75,
                max_open_orders: 225,
            },
        }
    }
}

/// Which client identifiers AddOrder carries.
///
/// Kraken's AddOrder documentation says `userref` and `cl_ord_id` are mutually
/// exclusive, so the default sends only `cl_ord_id` (unique among open orders,
/// usable to cancel and to resolve an unknown submit). `Both` exists for a
/// simulator or account that accepts both; `Userref` for keys where the engine
/// relies on userref groups instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientIdMode {
    #[default]
    ClOrdId,
    Userref,
    Both,
}

impl ClientIdMode {
    pub fn sends_cl_ord_id(self) -> bool {
        matches!(self, ClientIdMode::ClOrdId | ClientIdMode::Both)
    }

    pub fn sends_userref(self) -> bool {
        matches!(self, ClientIdMode::Userref | ClientIdMode::Both)
    }
}

/// An order's status in Kraken's order info.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KrakenOrderStatus {
    Pending,
    Open,
    Closed,
    Canceled,
    Expired,
}

/// `type` of an order: buy or sell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KrakenSide {
    Buy,
    Sell,
}

impl KrakenSide {
    pub fn as_str(self) -> &'static str {
        match self {
            KrakenSide::Buy => "buy",
            KrakenSide::Sell => "sell",
        }
    }
}

/// `ordertype` values Herd sends. Kraken has more (stop-loss, iceberg, ...);
/// anything else is kept as text when parsed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KrakenOrderType {
    Market,
    Limit,
    #[serde(untagged)]
    Other(String),
}

impl KrakenOrderType {
    pub fn as_str(&self) -> &str {
        match self {
            KrakenOrderType::Market => "market",
            KrakenOrderType::Limit => "limit",
            KrakenOrderType::Other(s) => s,
        }
    }
}

/// Exchange-wide trading status from SystemStatus.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KrakenSystemStatus {
    Online,
    Maintenance,
    CancelOnly,
    PostOnly,
    #[serde(untagged)]
    Other(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tier_table() {
        let s = Tier::Starter.limits();
        assert_eq!((s.rest_max, s.rest_decay_per_s), (15.0, 0.33));
        assert_eq!((s.trading_threshold, s.trading_decay_per_s), (60.0, 1.0));
        assert_eq!(s.max_open_orders, 60);
        let i = Tier::Intermediate.limits();
        assert_eq!((i.rest_max, i.rest_decay_per_s), (20.0, 0.5));
        assert_eq!((i.trading_threshold, i.trading_decay_per_s), (125.0, 2.34));
        assert_eq!(i.max_open_orders, 80);
        let p = Tier::Pro.limits();
        assert_eq!((p.rest_max, p.rest_decay_per_s), (20.0, 1.0));
        assert_eq!((p.trading_threshold, p.trading_decay_per_s), (180.0, 3.75));
        assert_eq!(p.max_open_orders, 225);
    }

    #[test]
    fn wire_spellings() {
        let st: KrakenSystemStatus = serde_json::from_str("\"cancel_only\"").unwrap();
        assert_eq!(st, KrakenSystemStatus::CancelOnly);
        let st: KrakenSystemStatus = serde_json::from_str("\"limit_only\"").unwrap();
        assert_eq!(st, KrakenSystemStatus::Other("limit_only".into()));
        let ot: KrakenOrderType = serde_json::from_str("\"stop-loss\"").unwrap();
        assert_eq!(ot, KrakenOrderType::Other("stop-loss".into()));
        let ot: KrakenOrderType = serde_json::from_str("\"limit\"").unwrap();
        assert_eq!(ot, KrakenOrderType::Limit);
        let t: Tier = serde_json::from_str("\"intermediate\"").unwrap();
        assert_eq!(t, Tier::Intermediate);
        let m: ClientIdMode = serde_json::from_str("\"cl_ord_id\"").unwrap();
        assert_eq!(m, ClientIdMode::ClOrdId);
    }
}
