//! Bybit's base URL and endpoint paths.

/// Production REST base URL.
pub const DEFAULT_BASE_URL: &str = "https://api.bybit.com";

pub const MARKET_TIME: &str = "/v5/market/time";
pub const MARKET_TICKERS: &str = "/v5/market/tickers";
pub const MARKET_FUNDING_HISTORY: &str = "/v5/market/funding/history";
pub const MARKET_INSTRUMENTS: &str = "/v5/market/instruments-info";
pub const MARKET_KLINE: &str = "/v5/market/kline";
pub const ORDER_CREATE: &str = "/v5/order/create";
pub const ORDER_CANCEL: &str = "/v5/order/cancel";
pub const ORDER_CANCEL_ALL: &str = "/v5/order/cancel-all";
pub const ORDER_REALTIME: &str = "/v5/order/realtime";
pub const ORDER_HISTORY: &str = "/v5/order/history";
pub const EXECUTION_LIST: &str = "/v5/execution/list";
pub const POSITION_LIST: &str = "/v5/position/list";
pub const WALLET_BALANCE: &str = "/v5/account/wallet-balance";
pub const USER_QUERY_API: &str = "/v5/user/query-api";
pub const TRANSACTION_LOG: &str = "/v5/account/transaction-log";

/// Joins a base URL (with or without a trailing slash) and a path.
pub fn join(base_url: &str, path: &str) -> String {
    format!("{}{}", base_url.trim_end_matches('/'), path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_paths() {
        assert_eq!(
            join("http://127.0.0.1:9/", MARKET_TIME),
            "http://127.0.0.1:9/v5/market/time"
        );
        assert_eq!(
            join(DEFAULT_BASE_URL, ORDER_CREATE),
            "https://api.bybit.com/v5/order/create"
        );
    }
}
