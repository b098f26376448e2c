//! [`BybitHttpClient`]: Bybit's V5 endpoints over reqwest.
//!
//! Every request first takes room in the [`RateBudget`] and feeds the
//! answer's rate-limit headers back to it. Private requests are signed with
//! a timestamp on Bybit's clock: the offset to it comes from
//! `/v5/market/time`, refreshed every `time_sync_interval`, and at once when
//! Bybit answers 10002 (then the request is signed again and sent once
//! more). A 10006 waits for the endpoint's reset and is tried once more; an
//! HTTP 403 stops every call for the ban. The query string or JSON body is
//! encoded once, and those exact bytes are both signed and sent.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use herd_venue::Clock;
use reqwest::header::{CONTENT_TYPE, HeaderMap};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::budget::{Endpoint, LimitStatus, RateBudget};
use crate::common::consts::{
    ACCOUNT_TYPE, DEFAULT_RECV_WINDOW_MS, DEFAULT_USER_AGENT, INSTRUMENTS_PAGE_LIMIT, KLINE_LIMIT,
};
use crate::common::credential::{Credential, sign};
use crate::common::enums::Category;
use crate::common::urls::{self, DEFAULT_BASE_URL};

use super::error::{ApiErrorKind, BybitApiError, BybitError};
use super::models::{
    CancelAllResult, Envelope, ExecutionRow, FundingHistoryRow, InstrumentRow, KlineResult,
    ListResult, OrderIds, OrderRow, PositionRow, QueryApiResult, ServerTime, TickerRow,
    TransactionRow, WalletBalanceResult,
};
use super::query::{CancelAll, CancelOrder, CreateOrder, OrderQuery, Query, encode_query};

/// A 10006 whose reset is further away than this is returned, not waited for.
const MAX_RATE_LIMIT_WAIT_MS: i64 = 3_000;

/// Transport and signing settings of the raw client.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub base_url: String,
    /// Whole-request timeout.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub user_agent: String,
    /// X-BAPI-RECV-WINDOW.
    pub recv_window_ms: i64,
    /// How often the offset to Bybit's clock is measured again.
    pub time_sync_interval_ms: i64,
}

impl Default for HttpConfig {
    fn default() -> HttpConfig {
        HttpConfig {
            base_url: DEFAULT_BASE_URL.into(),
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            user_agent: DEFAULT_USER_AGENT.into(),
            recv_window_ms: DEFAULT_RECV_WINDOW_MS,
            time_sync_interval_ms: 5 * 60 * 1000,
        }
    }
}

/// Reads `X-Bapi-Limit`, `X-Bapi-Limit-Status` and
/// `X-Bapi-Limit-Reset-Timestamp`.
pub fn limit_status(headers: &HeaderMap) -> Option<LimitStatus> {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let status = LimitStatus {
        limit: get("x-bapi-limit").and_then(|v| v.parse().ok()),
        remaining: get("x-bapi-limit-status").and_then(|v| v.parse().ok()),
        reset_ms: get("x-bapi-limit-reset-timestamp").and_then(|v| v.parse().ok()),
    };
    (status.limit.is_some() || status.remaining.is_some() || status.reset_ms.is_some())
        .then_some(status)
}

/// Turns an HTTP status and body into the result (and Bybit's `time`) or a
/// typed error. Bybit reports errors with HTTP 200 and retCode != 0.
pub fn decode_body<T: DeserializeOwned>(status: u16, body: &str) -> Result<(T, i64), BybitError> {
    let envelope: Envelope<serde_json::Value> = match serde_json::from_str(body) {
        Ok(e) => e,
        Err(_) if status >= 300 => {
            return Err(BybitError::Http {
                status,
                body: body.chars().take(200).collect(),
            });
        }
        Err(e) => return Err(BybitError::Decode(format!("envelope: {e}"))),
    };
    if envelope.ret_code != 0 {
        return Err(BybitError::Api(BybitApiError {
            code: envelope.ret_code,
            msg: redact_message(&envelope.ret_msg),
        }));
    }
    if status >= 300 {
        return Err(BybitError::Http {
            status,
            body: body.chars().take(200).collect(),
        });
    }
    let result = envelope.result.unwrap_or(serde_json::Value::Null);
    let value = serde_json::from_value(result).map_err(|e| BybitError::Decode(e.to_string()))?;
    Ok((value, envelope.time))
}

/// Bybit's 10004 message echoes the signed string (timestamp, API key,
/// recv window, payload) as `origin_string[...]`; errors end up in logs, so
/// that part is cut.
fn redact_message(msg: &str) -> String {
    match msg.find("origin_string[") {
        Some(i) => format!("{}origin_string[REDACTED]", &msg[..i]),
        None => msg.to_string(),
    }
}

fn send_error(e: &reqwest::Error) -> BybitError {
    if e.is_timeout() {
        BybitError::Timeout(e.to_string())
    } else if e.is_connect() {
        BybitError::Connect(e.to_string())
    } else {
        BybitError::Transport(e.to_string())
    }
}

enum Payload {
    Get(Query),
    Post(String),
}

/// Bybit's V5 REST endpoints for one API key.
#[derive(Debug)]
pub struct BybitHttpClient {
    http: reqwest::Client,
    base_url: String,
    credential: Option<Credential>,
    budget: Arc<RateBudget>,
    clock: Arc<dyn Clock>,
    recv_window_ms: i64,
    sync_interval_ms: i64,
    /// Bybit's clock minus ours, ms.
    offset_ms: AtomicI64,
    /// Our time of the last offset measurement; i64::MIN = never.
    synced_at_ms: AtomicI64,
    sync_lock: tokio::sync::Mutex<()>,
}

impl BybitHttpClient {
    /// A client. Without a credential only public endpoints work.
    pub fn new(
        config: &HttpConfig,
        credential: Option<Credential>,
        budget: Arc<RateBudget>,
        clock: Arc<dyn Clock>,
    ) -> Result<BybitHttpClient, BybitError> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.connect_timeout)
            .user_agent(config.user_agent.clone())
            .build()
            .map_err(|e| BybitError::Request(format!("http client: {e}")))?;
        Ok(BybitHttpClient {
            http,
            base_url: config.base_url.clone(),
            credential,
            budget,
            clock,
            recv_window_ms: config.recv_window_ms,
            sync_interval_ms: config.time_sync_interval_ms,
            offset_ms: AtomicI64::new(0),
            synced_at_ms: AtomicI64::new(i64::MIN),
            sync_lock: tokio::sync::Mutex::new(()),
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn has_credential(&self) -> bool {
        self.credential.is_some()
    }

    pub fn budget(&self) -> &Arc<RateBudget> {
        &self.budget
    }

    /// The receive window every signed call carries, ms.
    pub fn recv_window_ms(&self) -> i64 {
        self.recv_window_ms
    }

    /// Bybit's clock minus ours, as last measured.
    pub fn server_offset_ms(&self) -> i64 {
        self.offset_ms.load(Ordering::SeqCst)
    }

    /// Our clock moved to Bybit's.
    pub fn server_now_ms(&self) -> i64 {
        self.clock.now_ms() + self.server_offset_ms()
    }

    /// Measures the offset to Bybit's clock (GET /v5/market/time): Bybit's
    /// time minus the midpoint of our send and receive times.
    pub async fn sync_time(&self) -> Result<i64, BybitError> {
        let _one_at_a_time = self.sync_lock.lock().await;
        let sent = self.clock.now_ms();
        let (t, _) = self
            .exchange::<ServerTime>(Endpoint::Time, None, Payload::Get(Vec::new()), false)
            .await?;
        let received = self.clock.now_ms();
        let nanos: i128 = t
            .time_nano
            .trim()
            .parse()
            .map_err(|_| BybitError::Decode(format!("timeNano {:?}", t.time_nano)))?;
        let server_ms = i64::try_from(nanos / 1_000_000)
            .map_err(|_| BybitError::Decode(format!("timeNano {:?}", t.time_nano)))?;
        let offset = server_ms - (sent + received) / 2;
        self.offset_ms.store(offset, Ordering::SeqCst);
        self.synced_at_ms.store(received, Ordering::SeqCst);
        tracing::debug!(
            offset_ms = offset,
            rtt_ms = received - sent,
            "bybit clock offset"
        );
        Ok(offset)
    }

    async fn ensure_synced(&self) -> Result<(), BybitError> {
        let at = self.synced_at_ms.load(Ordering::SeqCst);
        if at == i64::MIN || self.clock.now_ms().saturating_sub(at) >= self.sync_interval_ms {
            self.sync_time().await?;
        }
        Ok(())
    }

    /// One request/answer with budget and header feedback, no retries.
    async fn exchange<T: DeserializeOwned>(
        &self,
        endpoint: Endpoint,
        category: Option<Category>,
        payload: Payload,
        signed: bool,
    ) -> Result<(T, i64), BybitError> {
        self.budget.acquire(endpoint, category).await?;
        let url = urls::join(&self.base_url, endpoint.path());
        let (mut req, signed_payload) = match &payload {
            Payload::Get(q) => {
                let qs = encode_query(q);
                let full = if qs.is_empty() {
                    url
                } else {
                    format!("{url}?{qs}")
                };
                (self.http.get(full), qs)
            }
            Payload::Post(body) => (
                self.http
                    .post(url)
                    .header(CONTENT_TYPE, "application/json")
                    .body(body.clone()),
                body.clone(),
            ),
        };
        if signed {
            let cred = self.credential.as_ref().ok_or(BybitError::NoCredential)?;
            let ts = self.server_now_ms();
            let signature = sign(cred, ts, self.recv_window_ms, &signed_payload);
            req = req
                .header("X-BAPI-API-KEY", cred.api_key())
                .header("X-BAPI-TIMESTAMP", ts.to_string())
                .header("X-BAPI-RECV-WINDOW", self.recv_window_ms.to_string())
                .header("X-BAPI-SIGN", signature);
        }
        let resp = req.send().await.map_err(|e| send_error(&e))?;
        let status = resp.status().as_u16();
        let limit = limit_status(resp.headers());
        if let Some(l) = &limit {
            self.budget
                .observe(endpoint, category, l, self.server_offset_ms());
        }
        if status == 403 {
            let until_ms = self.budget.on_forbidden();
            tracing::error!(
                until_ms,
                "bybit answered HTTP 403 (IP limit): every call stops"
            );
            return Err(BybitError::IpBanned { until_ms });
        }
        let body = resp.text().await.map_err(|e| send_error(&e))?;
        match decode_body(status, &body) {
            Err(BybitError::Api(e)) if e.kind() == ApiErrorKind::RateLimited => {
                let reset = limit
                    .and_then(|l| l.reset_ms)
                    .map(|r| r - self.server_offset_ms());
                let until = self.budget.on_rate_limited(endpoint, category, reset);
                tracing::warn!(endpoint = ?endpoint, ?category, until_ms = until, "bybit 10006: endpoint backs off until its reset");
                Err(BybitError::Api(e))
            }
            other => other,
        }
    }

    /// A request with the retries Bybit's answers call for: a 10002 is
    /// signed again after a clock resync, a 10006 waits for its reset; each
    /// once.
    async fn call<T: DeserializeOwned>(
        &self,
        endpoint: Endpoint,
        category: Option<Category>,
        payload: impl Fn() -> Payload,
        signed: bool,
    ) -> Result<T, BybitError> {
        if signed {
            if self.credential.is_none() {
                return Err(BybitError::NoCredential);
            }
            self.ensure_synced().await?;
        }
        let mut retried = false;
        loop {
            match self.exchange(endpoint, category, payload(), signed).await {
                Ok((v, _)) => return Ok(v),
                Err(BybitError::Api(e)) if !retried => match e.kind() {
                    ApiErrorKind::TimestampWindow if signed => {
                        tracing::warn!(msg = %e.msg, "bybit 10002: resyncing the clock and signing again");
                        self.sync_time().await?;
                    }
                    ApiErrorKind::RateLimited
                        if self.budget.retry_after_ms(endpoint, category)
                            <= MAX_RATE_LIMIT_WAIT_MS => {}
                    _ => return Err(BybitError::Api(e)),
                },
                Err(e) => return Err(e),
            }
            retried = true;
        }
    }

    async fn get_public<T: DeserializeOwned>(
        &self,
        endpoint: Endpoint,
        category: Option<Category>,
        q: Query,
    ) -> Result<T, BybitError> {
        self.call(endpoint, category, || Payload::Get(q.clone()), false)
            .await
    }

    async fn get_private<T: DeserializeOwned>(
        &self,
        endpoint: Endpoint,
        category: Option<Category>,
        q: Query,
    ) -> Result<T, BybitError> {
        self.call(endpoint, category, || Payload::Get(q.clone()), true)
            .await
    }

    async fn post_private<T: DeserializeOwned, B: Serialize>(
        &self,
        endpoint: Endpoint,
        category: Category,
        body: &B,
    ) -> Result<T, BybitError> {
        let json =
            serde_json::to_string(body).map_err(|e| BybitError::Request(format!("body: {e}")))?;
        self.call(
            endpoint,
            Some(category),
            || Payload::Post(json.clone()),
            true,
        )
        .await
    }

    /// GET /v5/market/time.
    pub async fn server_time(&self) -> Result<ServerTime, BybitError> {
        self.get_public(Endpoint::Time, None, Vec::new()).await
    }

    /// GET /v5/market/tickers, every symbol of `category` or one.
    pub async fn tickers(
        &self,
        category: Category,
        symbol: Option<&str>,
    ) -> Result<ListResult<TickerRow>, BybitError> {
        let mut q: Query = vec![("category", category.as_str().into())];
        if let Some(s) = symbol {
            q.push(("symbol", s.into()));
        }
        self.get_public(Endpoint::Tickers, Some(category), q).await
    }

    /// GET /v5/market/funding/history, newest first.
    pub async fn funding_history(
        &self,
        symbol: &str,
        start_ms: Option<i64>,
        end_ms: Option<i64>,
        limit: u32,
    ) -> Result<ListResult<FundingHistoryRow>, BybitError> {
        let mut q: Query = vec![
            ("category", Category::Linear.as_str().into()),
            ("symbol", symbol.into()),
        ];
        if let Some(s) = start_ms {
            q.push(("startTime", s.to_string()));
        }
        if let Some(e) = end_ms {
            q.push(("endTime", e.to_string()));
        }
        q.push(("limit", limit.clamp(1, 200).to_string()));
        self.get_public(Endpoint::FundingHistory, Some(Category::Linear), q)
            .await
    }

    /// GET /v5/market/instruments-info, one page.
    pub async fn instruments_page(
        &self,
        category: Category,
        cursor: Option<&str>,
    ) -> Result<ListResult<InstrumentRow>, BybitError> {
        let mut q: Query = vec![
            ("category", category.as_str().into()),
            ("limit", INSTRUMENTS_PAGE_LIMIT.to_string()),
        ];
        if let Some(c) = cursor.filter(|c| !c.is_empty()) {
            q.push(("cursor", c.into()));
        }
        self.get_public(Endpoint::Instruments, Some(category), q)
            .await
    }

    /// Every instrument of `category`, following the cursor.
    pub async fn instruments(&self, category: Category) -> Result<Vec<InstrumentRow>, BybitError> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        // Bounded: a cursor that never ends is a venue bug, not a reason to loop forever.
        for _ in 0..100 {
            let page = self.instruments_page(category, cursor.as_deref()).await?;
            out.extend(page.list);
            if page.next_page_cursor.is_empty() {
                return Ok(out);
            }
            cursor = Some(page.next_page_cursor);
        }
        Ok(out)
    }

    /// GET /v5/market/kline; `interval` is Bybit's ("1", "60", "D", ...).
    pub async fn kline(
        &self,
        category: Category,
        symbol: &str,
        interval: &str,
        start_ms: Option<i64>,
    ) -> Result<KlineResult, BybitError> {
        let mut q: Query = vec![
            ("category", category.as_str().into()),
            ("symbol", symbol.into()),
            ("interval", interval.into()),
        ];
        if let Some(s) = start_ms.filter(|s| *s > 0) {
            q.push(("start", s.to_string()));
        }
        q.push(("limit", KLINE_LIMIT.to_string()));
        self.get_public(Endpoint::Kline, Some(category), q).await
    }

    /// POST /v5/order/create.
    pub async fn create_order(&self, order: &CreateOrder) -> Result<OrderIds, BybitError> {
        self.post_private(Endpoint::OrderCreate, order.category, order)
            .await
    }

    /// POST /v5/order/cancel.
    pub async fn cancel_order(&self, cancel: &CancelOrder) -> Result<OrderIds, BybitError> {
        self.post_private(Endpoint::OrderCancel, cancel.category, cancel)
            .await
    }

    /// POST /v5/order/cancel-all.
    pub async fn cancel_all(&self, cancel: &CancelAll) -> Result<CancelAllResult, BybitError> {
        self.post_private(Endpoint::OrderCancelAll, cancel.category, cancel)
            .await
    }

    /// GET /v5/order/realtime.
    pub async fn order_realtime(
        &self,
        category: Category,
        q: &OrderQuery,
    ) -> Result<ListResult<OrderRow>, BybitError> {
        self.get_private(
            Endpoint::OrderRealtime,
            Some(category),
            q.to_query(category),
        )
        .await
    }

    /// GET /v5/order/history.
    pub async fn order_history(
        &self,
        category: Category,
        q: &OrderQuery,
    ) -> Result<ListResult<OrderRow>, BybitError> {
        self.get_private(Endpoint::OrderHistory, Some(category), q.to_query(category))
            .await
    }

    /// GET /v5/execution/list.
    pub async fn executions(
        &self,
        category: Category,
        q: &OrderQuery,
    ) -> Result<ListResult<ExecutionRow>, BybitError> {
        self.get_private(
            Endpoint::ExecutionList,
            Some(category),
            q.to_query(category),
        )
        .await
    }

    /// GET /v5/position/list for linear positions settled in `settle_coin`.
    pub async fn positions(
        &self,
        settle_coin: &str,
        cursor: Option<&str>,
    ) -> Result<ListResult<PositionRow>, BybitError> {
        let mut q: Query = vec![
            ("category", Category::Linear.as_str().into()),
            ("settleCoin", settle_coin.into()),
            (
                "limit",
                crate::common::consts::POSITION_PAGE_LIMIT.to_string(),
            ),
        ];
        if let Some(c) = cursor.filter(|c| !c.is_empty()) {
            q.push(("cursor", c.into()));
        }
        self.get_private(Endpoint::PositionList, Some(Category::Linear), q)
            .await
    }

    /// GET /v5/user/query-api: the key's permissions, allowlist and expiry.
    pub async fn query_api(&self) -> Result<QueryApiResult, BybitError> {
        self.get_private(Endpoint::QueryApi, None, Vec::new()).await
    }

    /// GET /v5/account/wallet-balance?accountType=UNIFIED.
    pub async fn wallet_balance(&self) -> Result<WalletBalanceResult, BybitError> {
        self.get_private(
            Endpoint::WalletBalance,
            None,
            vec![("accountType", ACCOUNT_TYPE.into())],
        )
        .await
    }

    /// GET /v5/account/transaction-log (one page).
    pub async fn transaction_log(
        &self,
        kind: &str,
        symbol: Option<&str>,
        start_ms: i64,
        end_ms: i64,
        cursor: Option<&str>,
    ) -> Result<ListResult<TransactionRow>, BybitError> {
        let mut q: Query = vec![
            ("accountType", ACCOUNT_TYPE.into()),
            ("category", Category::Linear.as_str().into()),
        ];
        if let Some(s) = symbol {
            q.push(("symbol", s.into()));
        }
        q.push(("type", kind.into()));
        q.push(("startTime", start_ms.to_string()));
        q.push(("endTime", end_ms.to_string()));
        q.push((
            "limit",
            crate::common::consts::TRANSACTION_PAGE_LIMIT.to_string(),
        ));
        if let Some(c) = cursor.filter(|c| !c.is_empty()) {
            q.push(("cursor", c.into()));
        }
        self.get_private(Endpoint::TransactionLog, None, q).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_table() {
        let ok = r#"{"retCode":0,"retMsg":"OK","result":{"timeSecond":"1","timeNano":"1000000000"},"retExtInfo":{},"time":1000}"#;
        let (t, time): (ServerTime, i64) = decode_body(200, ok).unwrap();
        assert_eq!((t.time_second.as_str(), time), ("1", 1000));
        let err =
            r#"{"retCode":10006,"retMsg":"Too many visits!","result":{},"retExtInfo":{},"time":1}"#;
        match decode_body::<ServerTime>(200, err) {
            Err(BybitError::Api(e)) => {
                assert_eq!(e.code, 10006);
                assert_eq!(e.kind(), ApiErrorKind::RateLimited);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            decode_body::<ServerTime>(502, "<html>bad gateway</html>"),
            Err(BybitError::Http { status: 502, .. })
        ));
        assert!(matches!(
            decode_body::<ServerTime>(200, "not json"),
            Err(BybitError::Decode(_))
        ));
        let wrong_shape = r#"{"retCode":0,"retMsg":"OK","result":{"x":1},"time":1}"#;
        assert!(matches!(
            decode_body::<ServerTime>(200, wrong_shape),
            Err(BybitError::Decode(_))
        ));
    }

    #[test]
    fn signature_errors_do_not_echo_the_key() {
        let body = r#"{"retCode":10004,"retMsg":"error sign! origin_string[1700000000000my-api-key5000category=linear]","result":{},"time":1}"#;
        let err = decode_body::<ServerTime>(200, body)
            .unwrap_err()
            .to_string();
        assert!(!err.contains("my-api-key"), "{err}");
        assert!(err.contains("error sign!"), "{err}");
    }

    #[test]
    fn limit_headers() {
        let mut h = HeaderMap::new();
        assert_eq!(limit_status(&h), None);
        h.insert("X-Bapi-Limit", "10".parse().unwrap());
        h.insert("X-Bapi-Limit-Status", "9".parse().unwrap());
        h.insert(
            "X-Bapi-Limit-Reset-Timestamp",
            "1700000000123".parse().unwrap(),
        );
        assert_eq!(
            limit_status(&h),
            Some(LimitStatus {
                limit: Some(10),
                remaining: Some(9),
                reset_ms: Some(1_700_000_000_123)
            })
        );
    }
}
