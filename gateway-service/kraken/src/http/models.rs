//! Kraken's REST payloads as Kraken spells them. Prices and volumes arrive as
//! strings and become [`Decimal`]; fee percentages and timestamps arrive as
//! JSON numbers and are read through their decimal text, never as f64.
//! Unknown fields are ignored so Kraken can add fields without breaking us.
//! Integer fields Kraken documents as numbers (`userref`, `count`, OHLC
//! `last` and row times) are read from a number or a numeric string
//! ([`herd_venue::wire`]); anything else is an error naming the field.

use std::collections::BTreeMap;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize};

use crate::common::enums::{KrakenOrderStatus, KrakenOrderType, KrakenSide, KrakenSystemStatus};

/// `{"error": [...], "result": ...}`.
#[derive(Debug, Deserialize)]
pub struct Envelope<T> {
    #[serde(default)]
    pub error: Vec<String>,
    pub result: Option<T>,
}

/// A decimal read from a JSON string or number (Kraken mixes both).
fn decimal_from_value(v: &serde_json::Value) -> Result<Decimal, String> {
    let text = match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => n.to_string(),
        other => return Err(format!("expected a number, got {other}")),
    };
    Decimal::from_str(&text)
        .or_else(|_| Decimal::from_scientific(&text))
        .map_err(|e| format!("{text:?}: {e}"))
}

/// serde `deserialize_with` for a decimal that may be a string or a number.
pub fn de_decimal_any<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    decimal_from_value(&v).map_err(serde::de::Error::custom)
}

macro_rules! int_fields {
    ($($name:ident: $ty:ty = $field:literal;)*) => {$(
        fn $name<'de, D: Deserializer<'de>>(d: D) -> Result<$ty, D::Error> {
            herd_venue::wire::int_field(d, $field)
        }
    )*};
}

macro_rules! opt_int_fields {
    ($($name:ident: $ty:ty = $field:literal;)*) => {$(
        fn $name<'de, D: Deserializer<'de>>(d: D) -> Result<Option<$ty>, D::Error> {
            herd_venue::wire::opt_int_field(d, $field)
        }
    )*};
}

int_fields! {
    de_valid_until: i64 = "validUntil";
    de_nonce_window: u32 = "nonceWindow";
    de_unixtime: i64 = "unixtime";
    de_ohlc_last: i64 = "last";
    de_ohlc_time: i64 = "OHLC time";
    de_ohlc_count: i64 = "OHLC count";
    de_count_u64: u64 = "count";
    de_count_u32: u32 = "count";
}

opt_int_fields! {
    de_userref: i64 = "userref";
    de_trade_id: i64 = "trade_id";
}

/// `descr.price` or `descr.price2`: a price, or an offset from the market
/// (`+50.0000%` of a trailing stop, `-5.0`, `#2.5`) as Kraken wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DescrPrice {
    Price(Decimal),
    Offset(String),
}

impl DescrPrice {
    /// The absolute price, if this is one.
    pub fn price(&self) -> Option<Decimal> {
        match self {
            DescrPrice::Price(p) => Some(*p),
            DescrPrice::Offset(_) => None,
        }
    }

    /// The value as Kraken wrote it (a price normalized).
    pub fn text(&self) -> String {
        match self {
            DescrPrice::Price(p) => p.normalize().to_string(),
            DescrPrice::Offset(t) => t.clone(),
        }
    }
}

impl Default for DescrPrice {
    fn default() -> DescrPrice {
        DescrPrice::Price(Decimal::ZERO)
    }
}

impl<'de> Deserialize<'de> for DescrPrice {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<DescrPrice, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        if let serde_json::Value::String(s) = &v {
            let t = s.trim();
            if t.starts_with(['+', '-', '#']) || t.ends_with('%') {
                return Ok(DescrPrice::Offset(t.to_owned()));
            }
        }
        decimal_from_value(&v)
            .map(DescrPrice::Price)
            .map_err(|e| serde::de::Error::custom(format!("descr price: {e}")))
    }
}

/// A Kraken timestamp: seconds since the epoch, fractional (`1688666559.8974`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize)]
pub struct KrakenTime(pub Decimal);

impl KrakenTime {
    /// Milliseconds since the epoch, rounded to the nearest.
    pub fn to_ms(self) -> i64 {
        let ms = (self.0 * Decimal::ONE_THOUSAND).round();
        i64::try_from(ms).unwrap_or(0)
    }
}

impl<'de> Deserialize<'de> for KrakenTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<KrakenTime, D::Error> {
        de_decimal_any(d).map(KrakenTime)
    }
}

/// A fee schedule step `[volume, percent]`.
#[derive(Debug, Clone, PartialEq)]
pub struct FeeTier {
    pub volume: Decimal,
    /// Percent, e.g. 0.25 for 0.25 %.
    pub percent: Decimal,
}

impl<'de> Deserialize<'de> for FeeTier {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<FeeTier, D::Error> {
        let (v, p): (serde_json::Value, serde_json::Value) = Deserialize::deserialize(d)?;
        Ok(FeeTier {
            volume: decimal_from_value(&v).map_err(serde::de::Error::custom)?,
            percent: decimal_from_value(&p).map_err(serde::de::Error::custom)?,
        })
    }
}

/// Time.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ServerTime {
    #[serde(deserialize_with = "de_unixtime")]
    pub unixtime: i64,
    pub rfc1123: String,
}

/// GetApiKeyInfo: what the key may do (docs.kraken.com, account data).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ApiKeyInfo {
    #[serde(rename = "apiKeyName", default)]
    pub name: String,
    #[serde(default)]
    pub permissions: Vec<String>,
    #[serde(rename = "ipAllowlist", default)]
    pub ip_allowlist: Vec<String>,
    /// Unix seconds; 0 = never expires.
    #[serde(rename = "validUntil", default, deserialize_with = "de_valid_until")]
    pub valid_until: i64,
    /// Seconds; 0 = none.
    #[serde(rename = "nonceWindow", default, deserialize_with = "de_nonce_window")]
    pub nonce_window: u32,
}

/// SystemStatus.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SystemStatus {
    pub status: KrakenSystemStatus,
    pub timestamp: String,
}

/// One entry of AssetPairs, keyed by the pair name (`XXBTZUSD`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct AssetPair {
    pub altname: String,
    #[serde(default)]
    pub wsname: Option<String>,
    pub base: String,
    pub quote: String,
    pub pair_decimals: u32,
    pub lot_decimals: u32,
    #[serde(default)]
    pub cost_decimals: Option<u32>,
    #[serde(default)]
    pub ordermin: Option<Decimal>,
    #[serde(default)]
    pub costmin: Option<Decimal>,
    #[serde(default)]
    pub tick_size: Option<Decimal>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub fees: Vec<FeeTier>,
    #[serde(default)]
    pub fees_maker: Vec<FeeTier>,
}

/// One entry of Ticker. Arrays are `[price, whole lot volume, lot volume]`
/// for a/b, `[price, lot volume]` for c, `[today, last 24 hours]` for v.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TickerInfo {
    pub a: Vec<Decimal>,
    pub b: Vec<Decimal>,
    pub c: Vec<Decimal>,
    pub v: Vec<Decimal>,
    #[serde(default)]
    pub o: Option<Decimal>,
}

/// One OHLC row: `[time, open, high, low, close, vwap, volume, count]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct OhlcRow(
    #[serde(deserialize_with = "de_ohlc_time")] pub i64,
    pub Decimal,
    pub Decimal,
    pub Decimal,
    pub Decimal,
    pub Decimal,
    pub Decimal,
    #[serde(deserialize_with = "de_ohlc_count")] pub i64,
);

/// OHLC: one key named after the pair, and `last` (the id to poll from).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct OhlcResult {
    #[serde(deserialize_with = "de_ohlc_last")]
    pub last: i64,
    #[serde(flatten)]
    pub rows: BTreeMap<String, Vec<OhlcRow>>,
}

/// One asset of BalanceEx.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct BalanceExEntry {
    pub balance: Decimal,
    #[serde(default)]
    pub hold_trade: Option<Decimal>,
    #[serde(default)]
    pub credit: Option<Decimal>,
    #[serde(default)]
    pub credit_used: Option<Decimal>,
}

/// `descr` of an order.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct OrderDescr {
    /// The pair's altname (`XBTUSD`).
    pub pair: String,
    #[serde(rename = "type")]
    pub side: KrakenSide,
    pub ordertype: KrakenOrderType,
    /// Limit price, "0" for market orders; for conditional orders the
    /// trigger, which trailing stops give as an offset.
    pub price: DescrPrice,
    /// The limit price of `*-limit` conditional orders (also may be an offset).
    #[serde(default)]
    pub price2: Option<DescrPrice>,
    #[serde(default)]
    pub order: Option<String>,
}

/// An order as OpenOrders, ClosedOrders and QueryOrders report it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct OrderInfo {
    #[serde(default)]
    pub refid: Option<String>,
    #[serde(default, deserialize_with = "de_userref")]
    pub userref: Option<i64>,
    #[serde(default)]
    pub cl_ord_id: Option<String>,
    pub status: KrakenOrderStatus,
    pub opentm: KrakenTime,
    #[serde(default)]
    pub closetm: Option<KrakenTime>,
    pub descr: OrderDescr,
    pub vol: Decimal,
    pub vol_exec: Decimal,
    pub cost: Decimal,
    pub fee: Decimal,
    /// Average execution price.
    pub price: Decimal,
    #[serde(default)]
    pub misc: String,
    #[serde(default)]
    pub oflags: String,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub trades: Option<Vec<String>>,
}

/// OpenOrders.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct OpenOrdersResult {
    pub open: BTreeMap<String, OrderInfo>,
}

/// ClosedOrders (50 per page, newest first).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ClosedOrdersResult {
    pub closed: BTreeMap<String, OrderInfo>,
    #[serde(default, deserialize_with = "de_count_u64")]
    pub count: u64,
}

/// AddOrder's `descr`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct AddOrderDescr {
    pub order: String,
    #[serde(default)]
    pub close: Option<String>,
}

/// AddOrder. `txid` is empty when `validate` was set.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct AddOrderResult {
    pub descr: AddOrderDescr,
    #[serde(default)]
    pub txid: Vec<String>,
}

/// CancelOrder.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CancelOrderResult {
    #[serde(deserialize_with = "de_count_u32")]
    pub count: u32,
    #[serde(default)]
    pub pending: Option<bool>,
}

/// CancelAll.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CancelAllResult {
    #[serde(deserialize_with = "de_count_u32")]
    pub count: u32,
}

/// CancelAllOrdersAfter. `triggerTime` is "0" when the switch is disabled.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CancelAllOrdersAfterResult {
    #[serde(rename = "currentTime")]
    pub current_time: String,
    #[serde(rename = "triggerTime")]
    pub trigger_time: String,
}

/// One trade of TradesHistory.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TradeInfo {
    pub ordertxid: String,
    #[serde(default)]
    pub postxid: Option<String>,
    /// The pair's name (`XXBTZUSD`), not its altname.
    pub pair: String,
    pub time: KrakenTime,
    #[serde(rename = "type")]
    pub side: KrakenSide,
    pub ordertype: KrakenOrderType,
    pub price: Decimal,
    pub cost: Decimal,
    pub fee: Decimal,
    pub vol: Decimal,
    #[serde(default)]
    pub misc: String,
    #[serde(default)]
    pub maker: Option<bool>,
    #[serde(default, deserialize_with = "de_trade_id")]
    pub trade_id: Option<i64>,
}

/// TradesHistory (50 per page).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TradesHistoryResult {
    pub trades: BTreeMap<String, TradeInfo>,
    #[serde(default, deserialize_with = "de_count_u64")]
    pub count: u64,
}
