//! Bybit V5 response types, as Bybit spells them. Numbers arrive as strings
//! (sometimes empty); they stay strings here and [`crate::parse`] turns them
//! into decimals with errors that name the field. The envelope's integers
//! (`retCode`, `time`), documented as numbers, are read from a number or a
//! numeric string ([`herd_venue::wire`]).

use serde::{Deserialize, Deserializer, Serialize};

fn de_ret_code<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    herd_venue::wire::int_field(d, "retCode")
}

fn de_time<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    herd_venue::wire::int_field(d, "time")
}

/// `{"retCode":0,"retMsg":"OK","result":{...},"retExtInfo":{},"time":...}`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope<T> {
    #[serde(deserialize_with = "de_ret_code")]
    pub ret_code: i64,
    #[serde(default)]
    pub ret_msg: String,
    pub result: Option<T>,
    #[serde(default)]
    pub ret_ext_info: serde_json::Value,
    #[serde(default, deserialize_with = "de_time")]
    pub time: i64,
}

/// GET /v5/market/time.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerTime {
    pub time_second: String,
    pub time_nano: String,
}

/// The paginated `{category, list, nextPageCursor}` shape.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListResult<T> {
    #[serde(default)]
    pub category: String,
    #[serde(default = "Vec::new")]
    pub list: Vec<T>,
    #[serde(default)]
    pub next_page_cursor: String,
}

/// One row of GET /v5/market/tickers (spot and linear share it; funding
/// fields are empty for spot).
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TickerRow {
    pub symbol: String,
    pub last_price: String,
    pub bid1_price: String,
    pub ask1_price: String,
    pub mark_price: String,
    pub index_price: String,
    pub funding_rate: String,
    pub next_funding_time: String,
    /// Hours; Bybit sends it as a string.
    pub funding_interval_hour: String,
    /// 24 h traded value in the quote coin (USD for USDT pairs).
    pub turnover24h: String,
    /// 24 h traded quantity in the base coin.
    pub volume24h: String,
}

/// One row of GET /v5/market/funding/history.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FundingHistoryRow {
    pub symbol: String,
    pub funding_rate: String,
    pub funding_rate_timestamp: String,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PriceFilter {
    pub tick_size: String,
    pub min_price: String,
    pub max_price: String,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LotSizeFilter {
    /// Spot: quantity precision.
    pub base_precision: String,
    pub quote_precision: String,
    pub min_order_qty: String,
    pub max_order_qty: String,
    /// Spot: minimum order value in quote.
    pub min_order_amt: String,
    pub max_order_amt: String,
    /// Linear: quantity step.
    pub qty_step: String,
    /// Linear: minimum order value in quote.
    pub min_notional_value: String,
}

/// One row of GET /v5/market/instruments-info.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct InstrumentRow {
    pub symbol: String,
    /// Linear: "LinearPerpetual", "LinearFutures", ...
    pub contract_type: String,
    pub status: String,
    pub base_coin: String,
    pub quote_coin: String,
    pub settle_coin: String,
    pub price_filter: PriceFilter,
    pub lot_size_filter: LotSizeFilter,
    /// Linear: minutes between funding settlements (a JSON number).
    pub funding_interval: Option<i64>,
}

/// GET /v5/market/kline: rows of [start, open, high, low, close, volume,
/// turnover], newest first.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct KlineResult {
    pub symbol: String,
    pub category: String,
    pub list: Vec<Vec<String>>,
}

/// POST /v5/order/create and /v5/order/cancel.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderIds {
    pub order_id: String,
    #[serde(default)]
    pub order_link_id: String,
}

/// POST /v5/order/cancel-all.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CancelAllResult {
    pub list: Vec<OrderIds>,
    pub success: String,
}

/// One order of GET /v5/order/realtime and /v5/order/history.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct OrderRow {
    pub order_id: String,
    pub order_link_id: String,
    pub symbol: String,
    pub side: String,
    pub order_type: String,
    pub price: String,
    pub qty: String,
    pub cum_exec_qty: String,
    pub cum_exec_value: String,
    pub cum_exec_fee: String,
    pub avg_price: String,
    pub leaves_qty: String,
    pub order_status: String,
    pub time_in_force: String,
    pub reduce_only: bool,
    pub reject_reason: String,
    pub cancel_type: String,
    pub created_time: String,
    pub updated_time: String,
    /// Spot: `Order` (plain), `tpslOrder`, `StopOrder`, `OcoOrder`,
    /// `BidirectionalTpslOrder`; empty when not sent.
    pub order_filter: String,
    /// Conditional orders: `Stop`, `TakeProfit`, `StopLoss`, `TrailingStop`,
    /// `tpslOrder`, ...; empty (or `UNKNOWN`) for plain ones.
    pub stop_order_type: String,
    /// The trigger of a conditional order; empty or zero otherwise.
    pub trigger_price: String,
    /// Spot market orders: `baseCoin` or `quoteCoin` (then `qty` is quote).
    pub market_unit: String,
}

/// One fill of GET /v5/execution/list.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ExecutionRow {
    pub symbol: String,
    pub order_id: String,
    pub order_link_id: String,
    pub side: String,
    pub exec_id: String,
    pub exec_price: String,
    pub exec_qty: String,
    pub exec_fee: String,
    pub fee_currency: String,
    pub exec_type: String,
    pub is_maker: bool,
    pub exec_time: String,
}

/// One position of GET /v5/position/list.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PositionRow {
    pub symbol: String,
    /// "Buy", "Sell" or "" when flat.
    pub side: String,
    pub size: String,
    pub avg_price: String,
    pub mark_price: String,
    pub position_value: String,
    pub unrealised_pnl: String,
    pub cum_realised_pnl: String,
    #[serde(rename = "positionIM")]
    pub position_im: String,
    #[serde(rename = "positionMM")]
    pub position_mm: String,
    pub leverage: String,
    pub liq_price: String,
    pub updated_time: String,
}

/// One coin of the unified wallet.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct WalletCoin {
    pub coin: String,
    pub equity: String,
    pub wallet_balance: String,
    pub locked: String,
    pub usd_value: String,
    pub unrealised_pnl: String,
    pub cum_realised_pnl: String,
}

/// The unified account of GET /v5/account/wallet-balance.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct WalletAccount {
    pub account_type: String,
    pub total_equity: String,
    pub total_wallet_balance: String,
    pub total_margin_balance: String,
    pub total_available_balance: String,
    #[serde(rename = "totalPerpUPL")]
    pub total_perp_upl: String,
    pub total_initial_margin: String,
    pub total_maintenance_margin: String,
    #[serde(rename = "accountIMRate")]
    pub account_im_rate: String,
    #[serde(rename = "accountMMRate")]
    pub account_mm_rate: String,
    pub coin: Vec<WalletCoin>,
}

/// GET /v5/user/query-api: the key's own description.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct QueryApiResult {
    pub note: String,
    /// 0 read and write, 1 read only.
    #[serde(deserialize_with = "de_read_only")]
    pub read_only: i64,
    /// Permission groups: `{"Spot": ["SpotTrade"], "Wallet": ["Withdraw"], ...}`.
    pub permissions: std::collections::BTreeMap<String, Vec<String>>,
    pub ips: Vec<String>,
    /// ISO 8601; empty = never expires.
    pub expired_at: String,
}

fn de_read_only<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    herd_venue::wire::int_field(d, "readOnly")
}

/// GET /v5/account/wallet-balance.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct WalletBalanceResult {
    pub list: Vec<WalletAccount>,
}

/// One row of GET /v5/account/transaction-log.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TransactionRow {
    pub id: String,
    pub symbol: String,
    pub category: String,
    pub side: String,
    pub transaction_time: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub qty: String,
    /// Position size after the entry, negative for shorts.
    pub size: String,
    pub currency: String,
    /// For SETTLEMENT: the mark price used.
    pub trade_price: String,
    /// Positive = received, negative = paid.
    pub funding: String,
    pub fee: String,
    pub cash_flow: String,
    pub change: String,
    pub cash_balance: String,
    /// For SETTLEMENT: the funding rate.
    pub fee_rate: String,
}
