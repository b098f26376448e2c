//! Request parameters: the query strings of GETs and the JSON bodies of
//! POSTs. Both are encoded once; those exact bytes are signed and sent.

use serde::Serialize;

use crate::common::consts::MAX_ORDER_LINK_ID;
use crate::common::enums::{BybitOrderType, BybitSide, Category, TimeInForce};

/// Query parameters in the order given.
pub type Query = Vec<(&'static str, String)>;

/// Percent-encodes a query value (RFC 3986 unreserved characters stay).
pub fn encode_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(b))
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// `k=v&k=v`, values percent-encoded.
pub fn encode_query(q: &Query) -> String {
    q.iter()
        .map(|(k, v)| format!("{k}={}", encode_value(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Checks an orderLinkId against Bybit's rule: 1 to 36 of letters, digits,
/// '-' and '_'.
pub fn check_order_link_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > MAX_ORDER_LINK_ID {
        return Err(format!(
            "orderLinkId {id:?} must be 1 to {MAX_ORDER_LINK_ID} characters"
        ));
    }
    if !id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(format!(
            "orderLinkId {id:?} may only hold letters, digits, '-' and '_'"
        ));
    }
    Ok(())
}

/// POST /v5/order/create.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateOrder {
    pub category: Category,
    pub symbol: String,
    pub side: BybitSide,
    pub order_type: BybitOrderType,
    pub qty: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub price: Option<String>,
    pub time_in_force: TimeInForce,
    pub order_link_id: String,
    /// Derivatives only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reduce_only: Option<bool>,
    /// Spot market orders: "baseCoin" sizes a market buy in the base coin
    /// (otherwise its qty is quote).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub market_unit: Option<String>,
}

/// POST /v5/order/cancel: by orderId or orderLinkId.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CancelOrder {
    pub category: Category,
    pub symbol: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_link_id: Option<String>,
}

/// POST /v5/order/cancel-all.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CancelAll {
    pub category: Category,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub symbol: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub settle_coin: Option<String>,
}

/// GET /v5/order/realtime and /v5/order/history.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OrderQuery {
    pub symbol: Option<String>,
    pub settle_coin: Option<String>,
    pub order_id: Option<String>,
    pub order_link_id: Option<String>,
    /// realtime: 0 = open orders only.
    pub open_only: Option<u8>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

impl OrderQuery {
    pub fn to_query(&self, category: Category) -> Query {
        let mut q: Query = vec![("category", category.as_str().to_string())];
        let mut push = |k: &'static str, v: &Option<String>| {
            if let Some(v) = v.as_ref().filter(|v| !v.is_empty()) {
                q.push((k, v.clone()));
            }
        };
        push("symbol", &self.symbol);
        push("settleCoin", &self.settle_coin);
        push("orderId", &self.order_id);
        push("orderLinkId", &self.order_link_id);
        push("openOnly", &self.open_only.map(|o| o.to_string()));
        push("limit", &self.limit.map(|l| l.to_string()));
        push("cursor", &self.cursor);
        q
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_body_is_compact_and_skips_absent_fields() {
        let body = CreateOrder {
            category: Category::Spot,
            symbol: "BTCUSDT".into(),
            side: BybitSide::Buy,
            order_type: BybitOrderType::Market,
            qty: "0.01".into(),
            price: None,
            time_in_force: TimeInForce::Ioc,
            order_link_id: "e0-abc".into(),
            reduce_only: None,
            market_unit: Some("baseCoin".into()),
        };
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"category":"spot","symbol":"BTCUSDT","side":"Buy","orderType":"Market","qty":"0.01","timeInForce":"IOC","orderLinkId":"e0-abc","marketUnit":"baseCoin"}"#
        );
    }

    #[test]
    fn query_encoding() {
        let q = OrderQuery {
            settle_coin: Some("USDT".into()),
            cursor: Some("page=2&x=a b".into()),
            open_only: Some(0),
            ..OrderQuery::default()
        };
        assert_eq!(
            encode_query(&q.to_query(Category::Linear)),
            "category=linear&settleCoin=USDT&openOnly=0&cursor=page%3D2%26x%3Da%20b"
        );
    }

    #[test]
    fn order_link_id_rules() {
        assert!(check_order_link_id("e0-abc_1").is_ok());
        assert!(check_order_link_id("").is_err());
        assert!(check_order_link_id(&"x".repeat(37)).is_err());
        assert!(check_order_link_id("has space").is_err());
    }
}
