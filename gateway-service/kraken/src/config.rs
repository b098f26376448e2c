//! The adapter's typed configuration, as the gateway's config file spells it.
//!
//! ```toml
//! [kraken]
//! tier = "starter"
//! base_url = "https://api.kraken.com"
//! nonce_file = "/var/lib/herd/kraken.nonce"
//! credentials = { source = "files", key_path = "/etc/herd/kraken/api-key", secret_path = "/etc/herd/kraken/api-secret" }
//! ```

use std::path::PathBuf;
use std::time::Duration;

use herd_venue::credential::CredentialSource;
use serde::Deserialize;

use crate::common::consts::{DEFAULT_LOCKOUT_MS, DEFAULT_USER_AGENT};
use crate::common::enums::{ClientIdMode, Tier};
use crate::common::urls::DEFAULT_BASE_URL;
use crate::http::HttpConfig;

/// Configuration of the Kraken venue.
#[derive(Debug, Clone, PartialEq, serde::Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KrakenConfig {
    /// Verification tier; decides every rate limit. Default: the smallest.
    pub tier: Tier,
    /// REST base URL; point it at a simulator in tests.
    pub base_url: String,
    /// Where the key and secret come from; by default `KRAKEN_API_KEY` and
    /// `KRAKEN_API_SECRET` ([`crate::CREDENTIAL_SPEC`]).
    pub credentials: CredentialSource,
    /// Where the nonce high-water mark is kept across restarts. Without it a
    /// restart relies on the wall clock alone.
    pub nonce_file: Option<PathBuf>,
    /// Whole-request timeout.
    pub request_timeout_ms: u64,
    pub connect_timeout_ms: u64,
    /// How long private calls stop after `EGeneral:Temporary lockout`.
    pub lockout_ms: i64,
    /// Which client identifiers AddOrder carries (Kraken documents
    /// `userref` and `cl_ord_id` as mutually exclusive).
    pub client_id_mode: ClientIdMode,
    /// Sends AddOrder's `deadline` this many seconds ahead (Kraken accepts
    /// 2 to 60), so an unanswered order is certainly dead once it passes.
    pub add_order_deadline_s: Option<u32>,
    /// Units of every REST and trading counter left unused, so jitter between
    /// our clock and Kraken's arrival times never crosses a limit.
    pub rate_headroom: f64,
    pub user_agent: String,
}

impl Default for KrakenConfig {
    fn default() -> KrakenConfig {
        KrakenConfig {
            tier: Tier::Starter,
            base_url: DEFAULT_BASE_URL.into(),
            credentials: CredentialSource::Env,
            nonce_file: None,
            request_timeout_ms: 10_000,
            connect_timeout_ms: 5_000,
            lockout_ms: DEFAULT_LOCKOUT_MS,
            client_id_mode: ClientIdMode::ClOrdId,
            add_order_deadline_s: Some(30),
            rate_headroom: 1.0,
            user_agent: DEFAULT_USER_AGENT.into(),
        }
    }
}

impl KrakenConfig {
    /// The raw client's transport settings.
    pub fn http(&self) -> HttpConfig {
        HttpConfig {
            base_url: self.base_url.clone(),
            timeout: Duration::from_millis(self.request_timeout_ms),
            connect_timeout: Duration::from_millis(self.connect_timeout_ms),
            user_agent: self.user_agent.clone(),
        }
    }

    /// The deadline clamped to what Kraken accepts.
    pub fn deadline_s(&self) -> Option<u32> {
        self.add_order_deadline_s.map(|s| s.clamp(2, 60))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_safe() {
        let c: KrakenConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(c, KrakenConfig::default());
        assert_eq!(c.tier, Tier::Starter);
        assert_eq!(c.base_url, "https://api.kraken.com");
        assert_eq!(c.credentials, CredentialSource::Env);
    }

    #[test]
    fn reads_a_full_config() {
        let c: KrakenConfig = serde_json::from_str(
            r#"{
                "tier": "pro",
                "base_url": "http://127.0.0.1:7000",
                "credentials": {"source": "files", "key_path": "/s/key", "secret_path": "/s/secret"},
                "nonce_file": "/data/kraken.nonce",
                "request_timeout_ms": 3000,
                "client_id_mode": "both",
                "add_order_deadline_s": 90
            }"#,
        )
        .unwrap();
        assert_eq!(c.tier, Tier::Pro);
        assert_eq!(
            c.credentials,
            CredentialSource::Files {
                key_path: "/s/key".into(),
                secret_path: "/s/secret".into()
            }
        );
        assert_eq!(c.http().timeout, Duration::from_secs(3));
        assert_eq!(c.deadline_s(), Some(60));
        assert_eq!(c.client_id_mode, ClientIdMode::Both);
        let none: KrakenConfig =
            serde_json::from_str(r#"{"credentials": {"source": "none"}}"#).unwrap();
        assert!(
            none.credentials
                .load(&crate::CREDENTIAL_SPEC)
                .unwrap()
                .is_none()
        );
        assert!(serde_json::from_str::<KrakenConfig>(r#"{"tier": "whale"}"#).is_err());
        assert!(serde_json::from_str::<KrakenConfig>(r#"{"bogus": 1}"#).is_err());
    }
}
