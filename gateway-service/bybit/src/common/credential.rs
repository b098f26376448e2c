//! The API key and secret, and the one function that signs a request.
//!
//! Both are zeroized on drop and `Debug` prints neither. Where they come from
//! (env vars or files mounted from a Kubernetes Secret) is decided here and
//! nowhere else.

use std::fmt;
use std::path::Path;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroize;

use super::consts::{ENV_API_KEY, ENV_API_SECRET};

/// Why credentials could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error(transparent)]
    Source(#[from] herd_venue::credential::SourceError),
    #[error("the API key is empty")]
    EmptyKey,
    #[error("the API secret is empty")]
    EmptySecret,
}

/// A Bybit API key and its HMAC secret.
pub struct BybitCredential {
    api_key: String,
    secret: Vec<u8>,
}

impl BybitCredential {
    pub fn new(api_key: &str, secret: &str) -> Result<BybitCredential, CredentialError> {
        let api_key = api_key.trim();
        let secret = secret.trim();
        if api_key.is_empty() {
            return Err(CredentialError::EmptyKey);
        }
        if secret.is_empty() {
            return Err(CredentialError::EmptySecret);
        }
        Ok(BybitCredential {
            api_key: api_key.to_owned(),
            secret: secret.as_bytes().to_vec(),
        })
    }

    /// Reads `BYBIT_API_KEY` and `BYBIT_API_SECRET`.
    pub fn from_env() -> Result<BybitCredential, CredentialError> {
        herd_venue::credential::from_env(ENV_API_KEY, ENV_API_SECRET, BybitCredential::new)
    }

    /// Reads the key and the secret from two files, as a Kubernetes Secret
    /// mounted as a volume provides them. Surrounding whitespace is ignored.
    pub fn from_files(
        key_path: &Path,
        secret_path: &Path,
    ) -> Result<BybitCredential, CredentialError> {
        herd_venue::credential::from_files(key_path, secret_path, BybitCredential::new)
    }

    /// The public API key, sent as `X-BAPI-API-KEY`.
    pub fn api_key(&self) -> &str {
        &self.api_key
    }

    /// `X-BAPI-SIGN`: lowercase hex HMAC-SHA256(secret, timestamp + api_key +
    /// recv_window + payload), where `payload` is the exact query string of
    /// a GET or the exact JSON body of a POST.
    pub fn sign(&self, timestamp_ms: i64, recv_window_ms: i64, payload: &str) -> String {
        sign_with(
            &self.secret,
            &self.api_key,
            timestamp_ms,
            recv_window_ms,
            payload,
        )
    }
}

/// The signature with explicit parts (the simulator checks with this too).
pub fn sign_with(
    secret: &[u8],
    api_key: &str,
    timestamp_ms: i64,
    recv_window_ms: i64,
    payload: &str,
) -> String {
    // HMAC takes keys of any length, so this cannot fail; map it anyway
    // rather than unwrap.
    match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(mut mac) => {
            mac.update(timestamp_ms.to_string().as_bytes());
            mac.update(api_key.as_bytes());
            mac.update(recv_window_ms.to_string().as_bytes());
            mac.update(payload.as_bytes());
            hex::encode(mac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    }
}

impl Drop for BybitCredential {
    fn drop(&mut self) {
        self.api_key.zeroize();
        self.secret.zeroize();
    }
}

impl fmt::Debug for BybitCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BybitCredential")
            .field("api_key", &"REDACTED")
            .field("secret", &"REDACTED")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_vectors() {
        let cred = BybitCredential::new("test_api_key", "test_secret").unwrap();
        let cases = [
            (
                "category=linear&symbol=BTCUSDT",
                "fd4f31228a46109dc6673062328693696df9a96c7ff04e6491a45e7f63a0fdd7",
            ),
            (
                r#"{"category": "linear", "symbol": "BTCUSDT", "orderLinkId": "test-order-1"}"#,
                "2df4a0603d69c08d5dea29ba85b46eb7db64ce9e9ebd34a7802a3d69700cb2a1",
            ),
        ];
        for (payload, want) in cases {
            assert_eq!(
                cred.sign(1_700_000_000_000, 5000, payload),
                want,
                "{payload}"
            );
        }
    }

    #[test]
    fn debug_is_redacted() {
        let cred = BybitCredential::new("my-public-key", "my-secret-value").unwrap();
        let shown = format!("{cred:?}");
        assert!(shown.contains("REDACTED"));
        assert!(!shown.contains("my-public-key"));
        assert!(!shown.contains("my-secret-value"));
    }

    #[test]
    fn bad_inputs_and_files() {
        assert!(matches!(
            BybitCredential::new(" ", "s"),
            Err(CredentialError::EmptyKey)
        ));
        assert!(matches!(
            BybitCredential::new("k", ""),
            Err(CredentialError::EmptySecret)
        ));
        let dir = tempfile::tempdir().unwrap();
        let k = dir.path().join("api-key");
        let s = dir.path().join("api-secret");
        std::fs::write(&k, "test_api_key\n").unwrap();
        std::fs::write(&s, "test_secret\n").unwrap();
        let cred = BybitCredential::from_files(&k, &s).unwrap();
        assert_eq!(
            cred.sign(1_700_000_000_000, 5000, "category=linear&symbol=BTCUSDT"),
            "fd4f31228a46109dc6673062328693696df9a96c7ff04e6491a45e7f63a0fdd7"
        );
        let missing = BybitCredential::from_files(&dir.path().join("nope"), &s);
        assert!(matches!(
            missing,
            Err(CredentialError::Source(
                herd_venue::credential::SourceError::File { .. }
            ))
        ));
        let err = BybitCredential::from_files(&dir.path().join("nope"), &s)
            .unwrap_err()
            .to_string();
        assert!(!err.contains("test_secret"), "{err}");
    }
}
