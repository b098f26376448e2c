//! Bybit's enums as V5 spells them, and their mapping to herd's.

use std::fmt;

use herd_venue::{OrderStatus, OrderType, PositionSide, Side};
use serde::{Deserialize, Serialize};

/// Product category. Herd trades `spot` and USDT `linear` perpetuals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    Spot,
    Linear,
}

impl Category {
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Spot => "spot",
            Category::Linear => "linear",
        }
    }

    pub fn parse(s: &str) -> Option<Category> {
        match s {
            "spot" => Some(Category::Spot),
            "linear" => Some(Category::Linear),
            _ => None,
        }
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// "Buy" / "Sell".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BybitSide {
    Buy,
    Sell,
}

impl From<Side> for BybitSide {
    fn from(s: Side) -> BybitSide {
        match s {
            Side::Buy => BybitSide::Buy,
            Side::Sell => BybitSide::Sell,
        }
    }
}

impl From<BybitSide> for Side {
    fn from(s: BybitSide) -> Side {
        match s {
            BybitSide::Buy => Side::Buy,
            BybitSide::Sell => Side::Sell,
        }
    }
}

impl BybitSide {
    /// A position's side: "Buy" is long, "Sell" is short.
    pub fn position_side(self) -> PositionSide {
        match self {
            BybitSide::Buy => PositionSide::Long,
            BybitSide::Sell => PositionSide::Short,
        }
    }
}

/// "Market" / "Limit".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BybitOrderType {
    Market,
    Limit,
}

impl From<OrderType> for BybitOrderType {
    fn from(t: OrderType) -> BybitOrderType {
        match t {
            OrderType::Market => BybitOrderType::Market,
            OrderType::Limit => BybitOrderType::Limit,
        }
    }
}

impl From<BybitOrderType> for OrderType {
    fn from(t: BybitOrderType) -> OrderType {
        match t {
            BybitOrderType::Market => OrderType::Market,
            BybitOrderType::Limit => OrderType::Limit,
        }
    }
}

/// timeInForce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TimeInForce {
    #[serde(rename = "GTC")]
    Gtc,
    #[serde(rename = "IOC")]
    Ioc,
    #[serde(rename = "FOK")]
    Fok,
    PostOnly,
}

/// orderStatus.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BybitOrderStatus {
    New,
    PartiallyFilled,
    Untriggered,
    Filled,
    Cancelled,
    Rejected,
    PartiallyFilledCanceled,
    Deactivated,
    Triggered,
    Active,
    /// Anything Bybit adds later, verbatim.
    #[serde(untagged)]
    Other(String),
}

impl BybitOrderStatus {
    /// Herd's status: New, PartiallyFilled, Untriggered (and the conditional
    /// Triggered / Active) are open; the rest are final.
    pub fn to_herd(&self) -> Option<OrderStatus> {
        Some(match self {
            BybitOrderStatus::New
            | BybitOrderStatus::PartiallyFilled
            | BybitOrderStatus::Untriggered
            | BybitOrderStatus::Triggered
            | BybitOrderStatus::Active => OrderStatus::Open,
            BybitOrderStatus::Filled => OrderStatus::Filled,
            BybitOrderStatus::Cancelled
            | BybitOrderStatus::PartiallyFilledCanceled
            | BybitOrderStatus::Deactivated => OrderStatus::Canceled,
            BybitOrderStatus::Rejected => OrderStatus::Rejected,
            BybitOrderStatus::Other(_) => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_table() {
        let cases = [
            ("New", Some(OrderStatus::Open)),
            ("PartiallyFilled", Some(OrderStatus::Open)),
            ("Untriggered", Some(OrderStatus::Open)),
            ("Filled", Some(OrderStatus::Filled)),
            ("Cancelled", Some(OrderStatus::Canceled)),
            ("PartiallyFilledCanceled", Some(OrderStatus::Canceled)),
            ("Deactivated", Some(OrderStatus::Canceled)),
            ("Rejected", Some(OrderStatus::Rejected)),
            ("Exploded", None),
        ];
        for (raw, want) in cases {
            let s: BybitOrderStatus = serde_json::from_str(&format!("\"{raw}\"")).unwrap();
            assert_eq!(s.to_herd(), want, "{raw}");
        }
    }

    #[test]
    fn wire_names() {
        assert_eq!(serde_json::to_string(&TimeInForce::Gtc).unwrap(), "\"GTC\"");
        assert_eq!(
            serde_json::to_string(&TimeInForce::PostOnly).unwrap(),
            "\"PostOnly\""
        );
        assert_eq!(
            serde_json::to_string(&Category::Linear).unwrap(),
            "\"linear\""
        );
        assert_eq!(serde_json::to_string(&BybitSide::Sell).unwrap(), "\"Sell\"");
    }
}
