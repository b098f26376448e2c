//! Request parameters of Kraken's endpoints and their form encoding.
//!
//! Bodies are built here, in a fixed field order, as the exact bytes that are
//! signed and sent.

use rust_decimal::Decimal;

use crate::common::consts::QUERY_ORDERS_MAX_TXIDS;
use crate::common::enums::{KrakenOrderType, KrakenSide};

use super::error::KrakenError;

/// Form fields in the order they are sent.
pub type Form = Vec<(&'static str, String)>;

/// `application/x-www-form-urlencoded` of the fields, in order.
pub fn encode_form(fields: &[(&str, String)]) -> String {
    let mut out = String::new();
    for (i, (k, v)) in fields.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        encode_component(k, &mut out);
        out.push('=');
        encode_component(v, &mut out);
    }
    out
}

fn encode_component(s: &str, out: &mut String) {
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(char::from(b))
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
}

/// A decimal as Kraken expects it: plain digits, no exponent, no trailing zeros.
pub fn decimal_str(d: Decimal) -> String {
    d.normalize().to_string()
}

fn push_bool(form: &mut Form, key: &'static str, v: bool) {
    if v {
        form.push((key, "true".into()));
    }
}

/// AddOrder parameters (the subset Herd uses).
#[derive(Debug, Clone, PartialEq)]
pub struct AddOrderParams {
    /// Pair id or altname.
    pub pair: String,
    pub side: KrakenSide,
    pub ordertype: KrakenOrderType,
    pub volume: Decimal,
    pub price: Option<Decimal>,
    /// Sent as `oflags=post`.
    pub post_only: bool,
    pub userref: Option<i32>,
    pub cl_ord_id: Option<String>,
    /// RFC3339 time after which the matching engine rejects the order.
    pub deadline: Option<String>,
    /// Validate only; nothing is placed.
    pub validate: bool,
}

impl AddOrderParams {
    pub fn to_form(&self) -> Result<Form, KrakenError> {
        let mut f: Form = vec![
            ("ordertype", self.ordertype.as_str().to_owned()),
            ("type", self.side.as_str().to_owned()),
            ("volume", decimal_str(self.volume)),
            ("pair", self.pair.clone()),
        ];
        match (&self.ordertype, self.price) {
            (KrakenOrderType::Limit, None) => {
                return Err(KrakenError::Request("a limit order needs a price".into()));
            }
            (_, Some(p)) => f.push(("price", decimal_str(p))),
            (_, None) => {}
        }
        if self.post_only {
            f.push(("oflags", "post".into()));
        }
        if let Some(u) = self.userref {
            f.push(("userref", u.to_string()));
        }
        if let Some(c) = &self.cl_ord_id {
            check_cl_ord_id(c)?;
            f.push(("cl_ord_id", c.clone()));
        }
        if let Some(d) = &self.deadline {
            f.push(("deadline", d.clone()));
        }
        push_bool(&mut f, "validate", self.validate);
        Ok(f)
    }
}

/// Kraken accepts a cl_ord_id as a UUID (with or without dashes) or as free
/// ASCII text of at most 18 characters. Checked before sending so a bad id is
/// a clear local error, not an `EGeneral:Invalid arguments`.
pub fn check_cl_ord_id(id: &str) -> Result<(), KrakenError> {
    let is_hex = |s: &str| s.bytes().all(|b| b.is_ascii_hexdigit());
    let long_uuid = id.len() == 36 && {
        let parts: Vec<&str> = id.split('-').collect();
        parts.iter().map(|p| p.len()).collect::<Vec<_>>() == [8, 4, 4, 4, 12]
            && parts.iter().all(|p| is_hex(p))
    };
    let short_uuid = id.len() == 32 && is_hex(id);
    let free_text = !id.is_empty() && id.len() <= 18 && id.bytes().all(|b| b.is_ascii_graphic());
    if long_uuid || short_uuid || free_text {
        Ok(())
    } else {
        Err(KrakenError::Request(format!(
            "cl_ord_id {id:?} is neither a UUID nor ASCII text of at most 18 characters"
        )))
    }
}

/// OpenOrders filters. `userref` and `cl_ord_id` are mutually exclusive.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OpenOrdersParams {
    pub trades: bool,
    pub userref: Option<i32>,
    pub cl_ord_id: Option<String>,
}

impl OpenOrdersParams {
    pub fn to_form(&self) -> Form {
        let mut f = Form::new();
        push_bool(&mut f, "trades", self.trades);
        if let Some(u) = self.userref {
            f.push(("userref", u.to_string()));
        }
        if let Some(c) = &self.cl_ord_id {
            f.push(("cl_ord_id", c.clone()));
        }
        f
    }
}

/// ClosedOrders filters (newest first, 50 a page).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClosedOrdersParams {
    pub trades: bool,
    pub userref: Option<i32>,
    pub cl_ord_id: Option<String>,
    /// Unix seconds (or a txid) to start from, exclusive.
    pub start: Option<i64>,
    pub end: Option<i64>,
    pub ofs: Option<u32>,
}

impl ClosedOrdersParams {
    pub fn to_form(&self) -> Form {
        let mut f = Form::new();
        push_bool(&mut f, "trades", self.trades);
        if let Some(u) = self.userref {
            f.push(("userref", u.to_string()));
        }
        if let Some(c) = &self.cl_ord_id {
            f.push(("cl_ord_id", c.clone()));
        }
        if let Some(s) = self.start {
            f.push(("start", s.to_string()));
        }
        if let Some(e) = self.end {
            f.push(("end", e.to_string()));
        }
        if let Some(o) = self.ofs {
            f.push(("ofs", o.to_string()));
        }
        f
    }
}

/// QueryOrders: 1 to 50 txids.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueryOrdersParams {
    pub txids: Vec<String>,
    pub trades: bool,
    pub userref: Option<i32>,
}

impl QueryOrdersParams {
    pub fn to_form(&self) -> Result<Form, KrakenError> {
        if self.txids.is_empty() {
            return Err(KrakenError::Request(
                "QueryOrders needs at least one txid".into(),
            ));
        }
        if self.txids.len() > QUERY_ORDERS_MAX_TXIDS {
            return Err(KrakenError::Request(format!(
                "QueryOrders takes at most {QUERY_ORDERS_MAX_TXIDS} txids, got {}",
                self.txids.len()
            )));
        }
        if let Some(bad) = self.txids.iter().find(|t| t.is_empty() || t.contains(',')) {
            return Err(KrakenError::Request(format!("bad txid {bad:?}")));
        }
        let mut f: Form = vec![("txid", self.txids.join(","))];
        push_bool(&mut f, "trades", self.trades);
        if let Some(u) = self.userref {
            f.push(("userref", u.to_string()));
        }
        Ok(f)
    }
}

/// What CancelOrder names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelTarget {
    Txid(String),
    ClOrdId(String),
    /// Every open order carrying this userref.
    Userref(i32),
}

impl CancelTarget {
    pub fn to_form(&self) -> Form {
        match self {
            CancelTarget::Txid(t) => vec![("txid", t.clone())],
            CancelTarget::ClOrdId(c) => vec![("cl_ord_id", c.clone())],
            CancelTarget::Userref(u) => vec![("txid", u.to_string())],
        }
    }
}

/// TradesHistory (50 a page).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TradesHistoryParams {
    pub trades: bool,
    pub start: Option<i64>,
    pub end: Option<i64>,
    pub ofs: Option<u32>,
}

impl TradesHistoryParams {
    pub fn to_form(&self) -> Form {
        let mut f = Form::new();
        push_bool(&mut f, "trades", self.trades);
        if let Some(s) = self.start {
            f.push(("start", s.to_string()));
        }
        if let Some(e) = self.end {
            f.push(("end", e.to_string()));
        }
        if let Some(o) = self.ofs {
            f.push(("ofs", o.to_string()));
        }
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn limit() -> AddOrderParams {
        AddOrderParams {
            pair: "XDGUSD".into(),
            side: KrakenSide::Buy,
            ordertype: KrakenOrderType::Limit,
            volume: dec!(25.00000000),
            price: Some(dec!(0.123400)),
            post_only: true,
            userref: None,
            cl_ord_id: Some("g1-s3-e-00042".into()),
            deadline: None,
            validate: false,
        }
    }

    #[test]
    fn add_order_body() {
        let body = encode_form(&limit().to_form().unwrap());
        assert_eq!(
            body,
            "ordertype=limit&type=buy&volume=25&pair=XDGUSD&price=0.1234&oflags=post&cl_ord_id=g1-s3-e-00042"
        );
        let mut both = limit();
        both.userref = Some(-7);
        both.validate = true;
        both.post_only = false;
        both.deadline = Some("2024-01-01T00:00:30Z".into());
        assert_eq!(
            encode_form(&both.to_form().unwrap()),
            "ordertype=limit&type=buy&volume=25&pair=XDGUSD&price=0.1234&userref=-7&cl_ord_id=g1-s3-e-00042&deadline=2024-01-01T00%3A00%3A30Z&validate=true"
        );
        let mut no_price = limit();
        no_price.price = None;
        assert!(no_price.to_form().is_err());
    }

    #[test]
    fn cl_ord_id_formats() {
        let ok = [
            "6d1b345e-2821-40e2-ad83-4ecb18a06876",
            "da8e4ad59b78481c93e589746b0cf91f",
            "arb-20240509-00010",
            "x",
        ];
        for id in ok {
            assert!(check_cl_ord_id(id).is_ok(), "{id}");
        }
        let bad = [
            "",
            "this-is-nineteen-ch",
            "has space",
            "ünïcode",
            "6d1b345e-2821-40e2-ad83-4ecb18a0687z",
        ];
        for id in bad {
            assert!(check_cl_ord_id(id).is_err(), "{id}");
        }
    }

    #[test]
    fn query_orders_limits() {
        let ids = |n: usize| {
            (0..n)
                .map(|i| format!("O{i:05}-AAAAA-BBBBBB"))
                .collect::<Vec<_>>()
        };
        let ok = QueryOrdersParams {
            txids: ids(50),
            ..Default::default()
        };
        let f = ok.to_form().unwrap();
        assert_eq!(f[0].1.split(',').count(), 50);
        let too_many = QueryOrdersParams {
            txids: ids(51),
            ..Default::default()
        };
        assert!(matches!(too_many.to_form(), Err(KrakenError::Request(_))));
        assert!(QueryOrdersParams::default().to_form().is_err());
    }

    #[test]
    fn form_encoding_escapes() {
        let f = vec![("txid", "A,B".to_string()), ("x", "a b&c=d/é".to_string())];
        assert_eq!(encode_form(&f), "txid=A%2CB&x=a+b%26c%3Dd%2F%C3%A9");
    }
}
