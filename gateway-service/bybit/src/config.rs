//! The adapter's typed configuration, as the gateway's config file spells it.
//!
//! ```toml
//! venue = "bybit"
//! [bybit]
//! base_url = "https://api.bybit.com"
//! recv_window_ms = 5000
//! credentials = { source = "files", key_path = "/etc/herd/bybit/api-key", secret_path = "/etc/herd/bybit/api-secret" }
//! ```
//!
//! Without `credentials` the key and secret come from `BYBIT_API_KEY` and
//! `BYBIT_API_SECRET`.

use std::time::Duration;

use herd_venue::credential::CredentialSource;
use rust_decimal::Decimal;
use serde::Deserialize;

use crate::budget::BudgetConfig;
use crate::common::consts::{
    DEFAULT_RECV_WINDOW_MS, DEFAULT_USER_AGENT, IP_BAN_MS, LINEAR_MAKER_FEE, LINEAR_TAKER_FEE,
    SPOT_FEE,
};
use crate::common::urls::DEFAULT_BASE_URL;
use crate::http::HttpConfig;
use crate::parse::Fees;

/// Fee rates herd assumes (Bybit VIP 0 by default).
#[derive(Debug, Clone, PartialEq, serde::Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FeeConfig {
    #[serde(deserialize_with = "herd_venue::decimal::deserialize")]
    pub spot_maker: Decimal,
    #[serde(deserialize_with = "herd_venue::decimal::deserialize")]
    pub spot_taker: Decimal,
    #[serde(deserialize_with = "herd_venue::decimal::deserialize")]
    pub linear_maker: Decimal,
    #[serde(deserialize_with = "herd_venue::decimal::deserialize")]
    pub linear_taker: Decimal,
}

impl Default for FeeConfig {
    fn default() -> FeeConfig {
        FeeConfig {
            spot_maker: Decimal::new(SPOT_FEE.0, SPOT_FEE.1),
            spot_taker: Decimal::new(SPOT_FEE.0, SPOT_FEE.1),
            linear_maker: Decimal::new(LINEAR_MAKER_FEE.0, LINEAR_MAKER_FEE.1),
            linear_taker: Decimal::new(LINEAR_TAKER_FEE.0, LINEAR_TAKER_FEE.1),
        }
    }
}

/// Configuration of the Bybit venue.
#[derive(Debug, Clone, PartialEq, serde::Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BybitConfig {
    /// REST base URL; point it at the simulator in tests.
    pub base_url: String,
    /// Where the key and secret come from; by default `BYBIT_API_KEY` and
    /// `BYBIT_API_SECRET` ([`crate::CREDENTIAL_SPEC`]).
    pub credentials: CredentialSource,
    /// X-BAPI-RECV-WINDOW.
    pub recv_window_ms: i64,
    /// How often the offset to Bybit's clock is measured again.
    pub time_sync_interval_ms: i64,
    /// Whole-request timeout.
    pub request_timeout_ms: u64,
    pub connect_timeout_ms: u64,
    /// How long every call stops after HTTP 403.
    pub ip_ban_ms: i64,
    /// Added to each rate window for network jitter.
    pub window_slack_ms: i64,
    /// How long instruments are cached.
    pub instruments_ttl_ms: i64,
    pub fees: FeeConfig,
    pub user_agent: String,
}

impl Default for BybitConfig {
    fn default() -> BybitConfig {
        BybitConfig {
            base_url: DEFAULT_BASE_URL.into(),
            credentials: CredentialSource::Env,
            recv_window_ms: DEFAULT_RECV_WINDOW_MS,
            time_sync_interval_ms: 5 * 60 * 1000,
            request_timeout_ms: 10_000,
            connect_timeout_ms: 5_000,
            ip_ban_ms: IP_BAN_MS,
            window_slack_ms: 100,
            instruments_ttl_ms: 60 * 60 * 1000,
            fees: FeeConfig::default(),
            user_agent: DEFAULT_USER_AGENT.into(),
        }
    }
}

impl BybitConfig {
    /// The raw client's transport settings.
    pub fn http(&self) -> HttpConfig {
        HttpConfig {
            base_url: self.base_url.clone(),
            timeout: Duration::from_millis(self.request_timeout_ms),
            connect_timeout: Duration::from_millis(self.connect_timeout_ms),
            user_agent: self.user_agent.clone(),
            recv_window_ms: self.recv_window_ms,
            time_sync_interval_ms: self.time_sync_interval_ms,
        }
    }

    /// The rate model's knobs.
    pub fn budget(&self) -> BudgetConfig {
        BudgetConfig {
            slack_ms: self.window_slack_ms,
            ban_ms: self.ip_ban_ms,
            ..BudgetConfig::default()
        }
    }

    pub fn fee_rates(&self) -> Fees {
        Fees {
            spot_maker: self.fees.spot_maker,
            spot_taker: self.fees.spot_taker,
            linear_maker: self.fees.linear_maker,
            linear_taker: self.fees.linear_taker,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_safe() {
        let c: BybitConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(c, BybitConfig::default());
        assert_eq!(c.base_url, "https://api.bybit.com");
        assert_eq!(c.credentials, CredentialSource::Env);
        assert_eq!(c.fees.linear_taker, Decimal::new(55, 5));
        assert_eq!(c.budget().ban_ms, 600_000);
    }

    #[test]
    fn reads_a_full_config() {
        let c: BybitConfig = serde_json::from_str(
            r#"{
                "base_url": "http://127.0.0.1:7000",
                "credentials": {"source": "files", "key_path": "/s/key", "secret_path": "/s/secret"},
                "recv_window_ms": 10000,
                "request_timeout_ms": 3000,
                "fees": {"spot_taker": "0.0008"}
            }"#,
        )
        .unwrap();
        assert_eq!(c.http().timeout, Duration::from_secs(3));
        assert_eq!(c.http().recv_window_ms, 10_000);
        assert_eq!(c.fees.spot_taker, Decimal::new(8, 4));
        assert_eq!(c.fees.spot_maker, Decimal::new(1, 3));
        assert_eq!(
            c.credentials,
            CredentialSource::Files {
                key_path: "/s/key".into(),
                secret_path: "/s/secret".into()
            }
        );
        let none: BybitConfig =
            serde_json::from_str(r#"{"credentials": {"source": "none"}}"#).unwrap();
        assert!(
            none.credentials
                .load(&crate::CREDENTIAL_SPEC)
                .unwrap()
                .is_none()
        );
        assert!(serde_json::from_str::<BybitConfig>(r#"{"bogus": 1}"#).is_err());
    }
}
