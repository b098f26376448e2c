//! Bybit's fixed numbers and names, defined once.

/// Environment variable holding the API key.
pub const ENV_API_KEY: &str = "BYBIT_API_KEY";
/// Environment variable holding the API secret.
pub const ENV_API_SECRET: &str = "BYBIT_API_SECRET";

/// Venue name reported by [`herd_venue::Venue::name`].
pub const VENUE_NAME: &str = "bybit";

/// Default User-Agent.
pub const DEFAULT_USER_AGENT: &str = concat!("herd-bybit/", env!("CARGO_PKG_VERSION"));

/// X-BAPI-RECV-WINDOW default, ms.
pub const DEFAULT_RECV_WINDOW_MS: i64 = 5_000;

/// The unified trading account, the only account type herd uses.
pub const ACCOUNT_TYPE: &str = "UNIFIED";
/// Linear perpetuals herd trades settle in this coin.
pub const SETTLE_COIN: &str = "USDT";

/// Longest orderLinkId Bybit accepts.
pub const MAX_ORDER_LINK_ID: usize = 36;

/// The per-IP limit: 600 requests per 5 s window, then HTTP 403.
pub const IP_LIMIT: u32 = 600;
pub const IP_WINDOW_MS: i64 = 5_000;
/// How long all calls stop after an HTTP 403 (the IP ban).
pub const IP_BAN_MS: i64 = 10 * 60 * 1000;

/// Per-account limits are rolling one-second windows.
pub const ACCOUNT_WINDOW_MS: i64 = 1_000;

/// Page sizes Bybit allows at most.
pub const ORDER_PAGE_LIMIT: u32 = 50;
pub const POSITION_PAGE_LIMIT: u32 = 200;
pub const TRANSACTION_PAGE_LIMIT: u32 = 50;
pub const INSTRUMENTS_PAGE_LIMIT: u32 = 1000;
pub const KLINE_LIMIT: u32 = 1000;
/// transaction-log answers at most 7 days per query.
pub const TRANSACTION_LOG_SPAN_MS: i64 = 7 * 24 * 3_600_000;

/// Bybit VIP 0 fees, used for instruments (the account's real rates are at
/// /v5/account/fee-rate).
pub const SPOT_FEE: (i64, u32) = (1, 3);
pub const LINEAR_TAKER_FEE: (i64, u32) = (55, 5);
pub const LINEAR_MAKER_FEE: (i64, u32) = (2, 4);

/// Open orders per symbol (linear) and per account (spot).
pub const MAX_OPEN_ORDERS: u32 = 500;
