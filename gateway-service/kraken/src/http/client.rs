//! [`KrakenHttpClient`]: Kraken's endpoints over reqwest.
//!
//! Private calls on one key are serialised from nonce assignment until the
//! response headers arrive (an async mutex held across the send), so requests
//! can never reach Kraken out of nonce order. The body is encoded once, and
//! those exact bytes are both signed and sent.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::header::CONTENT_TYPE;
use rust_decimal::Decimal;
use serde::de::DeserializeOwned;

use crate::common::consts::DEFAULT_USER_AGENT;
use crate::common::credential::{Credential, sign};
use crate::common::urls::{self, DEFAULT_BASE_URL};
use crate::nonce::NonceGenerator;

use super::error::{KrakenApiError, KrakenError};
use super::models::{
    AddOrderResult, ApiKeyInfo, AssetPair, BalanceExEntry, CancelAllOrdersAfterResult,
    CancelAllResult, CancelOrderResult, ClosedOrdersResult, Envelope, OhlcResult, OpenOrdersResult,
    OrderInfo, ServerTime, SystemStatus, TickerInfo, TradesHistoryResult,
};
use super::query::{
    AddOrderParams, CancelTarget, ClosedOrdersParams, Form, OpenOrdersParams, QueryOrdersParams,
    TradesHistoryParams, encode_form,
};

/// Transport settings of the raw client.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub base_url: String,
    /// Whole-request timeout.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub user_agent: String,
}

impl Default for HttpConfig {
    fn default() -> HttpConfig {
        HttpConfig {
            base_url: DEFAULT_BASE_URL.into(),
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            user_agent: DEFAULT_USER_AGENT.into(),
        }
    }
}

/// Kraken's REST endpoints for one API key.
#[derive(Debug)]
pub struct KrakenHttpClient {
    http: reqwest::Client,
    base_url: String,
    credential: Option<Credential>,
    nonce: NonceGenerator,
    private_lock: tokio::sync::Mutex<()>,
}

fn send_error(e: reqwest::Error) -> KrakenError {
    if e.is_timeout() {
        KrakenError::Timeout(e.to_string())
    } else if e.is_connect() {
        KrakenError::Connect(e.to_string())
    } else {
        KrakenError::Transport(e.to_string())
    }
}

/// Turns an HTTP status and body into the result or a typed error. Warnings
/// (strings starting with `W`) are ignored; of several errors, a lockout or a
/// rate limit wins over the rest because they change what we do next.
pub fn decode_body<T: DeserializeOwned>(status: u16, body: &str) -> Result<T, KrakenError> {
    let envelope: Envelope<serde_json::Value> = match serde_json::from_str(body) {
        Ok(e) => e,
        // A proxy or load balancer in front of Kraken may answer HTML.
        Err(_) if status >= 300 => {
            return Err(KrakenError::Http {
                status,
                body: body.chars().take(200).collect(),
            });
        }
        Err(e) => return Err(KrakenError::Decode(format!("envelope: {e}"))),
    };
    let errors: Vec<String> = envelope
        .error
        .into_iter()
        .filter(|e| !e.starts_with('W'))
        .collect();
    if !errors.is_empty() {
        let parsed: Vec<KrakenApiError> = errors.iter().map(|e| KrakenApiError::parse(e)).collect();
        let pick = parsed
            .iter()
            .position(|e| *e == KrakenApiError::TemporaryLockout)
            .or_else(|| parsed.iter().position(KrakenApiError::is_rate_limit))
            .unwrap_or(0);
        let error = parsed
            .into_iter()
            .nth(pick)
            .unwrap_or_else(|| KrakenApiError::Other(String::new()));
        return Err(KrakenError::Api { error, all: errors });
    }
    if status >= 300 {
        return Err(KrakenError::Http {
            status,
            body: body.chars().take(200).collect(),
        });
    }
    match envelope.result {
        Some(v) => serde_json::from_value(v).map_err(|e| KrakenError::Decode(e.to_string())),
        None => Err(KrakenError::Decode("no result and no error".into())),
    }
}

impl KrakenHttpClient {
    /// A client. Without a credential only public endpoints work.
    pub fn new(
        config: &HttpConfig,
        credential: Option<Credential>,
        nonce: NonceGenerator,
    ) -> Result<KrakenHttpClient, KrakenError> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.connect_timeout)
            .user_agent(config.user_agent.clone())
            .build()
            .map_err(|e| KrakenError::Request(format!("http client: {e}")))?;
        Ok(KrakenHttpClient {
            http,
            base_url: config.base_url.clone(),
            credential,
            nonce,
            private_lock: tokio::sync::Mutex::new(()),
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn has_credential(&self) -> bool {
        self.credential.is_some()
    }

    /// The key's nonce generator.
    pub fn nonce(&self) -> &NonceGenerator {
        &self.nonce
    }

    async fn public<T: DeserializeOwned>(
        &self,
        method: &str,
        query: Form,
    ) -> Result<T, KrakenError> {
        let mut url = urls::join(&self.base_url, &urls::public_path(method));
        if !query.is_empty() {
            url.push('?');
            url.push_str(&encode_form(&query));
        }
        let resp = self.http.get(url).send().await.map_err(send_error)?;
        let status = resp.status().as_u16();
        let body = resp.text().await.map_err(send_error)?;
        decode_body(status, &body)
    }

    async fn private<T: DeserializeOwned>(
        &self,
        method: &str,
        fields: Form,
    ) -> Result<T, KrakenError> {
        let credential = self
            .credential
            .as_ref()
            .ok_or_else(|| KrakenError::Request("no API credential configured".into()))?;
        let path = urls::private_path(method);
        let url = urls::join(&self.base_url, &path);
        let resp = {
            let _serial = self.private_lock.lock().await;
            let nonce = self
                .nonce
                .next()
                .map_err(|e| KrakenError::Nonce(e.to_string()))?;
            let mut all: Vec<(&str, String)> = Vec::with_capacity(fields.len() + 1);
            all.push(("nonce", nonce.to_string()));
            all.extend(fields);
            let body = encode_form(&all);
            let signature = sign(credential, &path, nonce, body.as_bytes());
            // Held until the response head arrives: Kraken has then read the
            // request, so the next nonce cannot overtake this one.
            self.http
                .post(url)
                .header("API-Key", credential.api_key())
                .header("API-Sign", signature)
                .header(
                    CONTENT_TYPE,
                    "application/x-www-form-urlencoded; charset=utf-8",
                )
                .body(body)
                .send()
                .await
                .map_err(send_error)?
        };
        let status = resp.status().as_u16();
        let body = resp.text().await.map_err(send_error)?;
        decode_body(status, &body)
    }

    /// Time.
    pub async fn server_time(&self) -> Result<ServerTime, KrakenError> {
        self.public("Time", Form::new()).await
    }

    /// SystemStatus.
    pub async fn system_status(&self) -> Result<SystemStatus, KrakenError> {
        self.public("SystemStatus", Form::new()).await
    }

    /// AssetPairs, all pairs or the named ones.
    pub async fn asset_pairs(
        &self,
        pairs: &[&str],
    ) -> Result<BTreeMap<String, AssetPair>, KrakenError> {
        let mut q = Form::new();
        if !pairs.is_empty() {
            q.push(("pair", pairs.join(",")));
        }
        self.public("AssetPairs", q).await
    }

    /// Ticker of one pair; keyed by the pair's name.
    pub async fn ticker(&self, pair: &str) -> Result<BTreeMap<String, TickerInfo>, KrakenError> {
        self.public("Ticker", vec![("pair", pair.to_owned())]).await
    }

    /// OHLC rows of `interval` minutes since `since` (unix seconds).
    pub async fn ohlc(
        &self,
        pair: &str,
        interval: u32,
        since: Option<i64>,
    ) -> Result<OhlcResult, KrakenError> {
        let mut q: Form = vec![
            ("pair", pair.to_owned()),
            ("interval", interval.to_string()),
        ];
        if let Some(s) = since {
            q.push(("since", s.to_string()));
        }
        self.public("OHLC", q).await
    }

    /// GetApiKeyInfo: the key's name, permissions, allowlist and expiry.
    pub async fn api_key_info(&self) -> Result<ApiKeyInfo, KrakenError> {
        self.private("GetApiKeyInfo", Form::new()).await
    }

    /// Balance: total per asset.
    pub async fn balance(&self) -> Result<BTreeMap<String, Decimal>, KrakenError> {
        self.private("Balance", Form::new()).await
    }

    /// BalanceEx: balance and hold_trade per asset.
    pub async fn balance_ex(&self) -> Result<BTreeMap<String, BalanceExEntry>, KrakenError> {
        self.private("BalanceEx", Form::new()).await
    }

    /// OpenOrders.
    pub async fn open_orders(
        &self,
        params: &OpenOrdersParams,
    ) -> Result<OpenOrdersResult, KrakenError> {
        self.private("OpenOrders", params.to_form()).await
    }

    /// ClosedOrders.
    pub async fn closed_orders(
        &self,
        params: &ClosedOrdersParams,
    ) -> Result<ClosedOrdersResult, KrakenError> {
        self.private("ClosedOrders", params.to_form()).await
    }

    /// QueryOrders: at most 50 txids, refused locally beyond that.
    pub async fn query_orders(
        &self,
        params: &QueryOrdersParams,
    ) -> Result<BTreeMap<String, OrderInfo>, KrakenError> {
        let form = params.to_form()?;
        self.private("QueryOrders", form).await
    }

    /// AddOrder.
    pub async fn add_order(&self, params: &AddOrderParams) -> Result<AddOrderResult, KrakenError> {
        let form = params.to_form()?;
        self.private("AddOrder", form).await
    }

    /// CancelOrder by txid, cl_ord_id or userref.
    pub async fn cancel_order(
        &self,
        target: &CancelTarget,
    ) -> Result<CancelOrderResult, KrakenError> {
        self.private("CancelOrder", target.to_form()).await
    }

    /// CancelAll.
    pub async fn cancel_all(&self) -> Result<CancelAllResult, KrakenError> {
        self.private("CancelAll", Form::new()).await
    }

    /// CancelAllOrdersAfter: the dead man's switch; 0 disables it.
    pub async fn cancel_all_orders_after(
        &self,
        timeout_s: u32,
    ) -> Result<CancelAllOrdersAfterResult, KrakenError> {
        self.private(
            "CancelAllOrdersAfter",
            vec![("timeout", timeout_s.to_string())],
        )
        .await
    }

    /// TradesHistory.
    pub async fn trades_history(
        &self,
        params: &TradesHistoryParams,
    ) -> Result<TradesHistoryResult, KrakenError> {
        self.private("TradesHistory", params.to_form()).await
    }
}
