//! The API key and secret, and the one function that signs a private request.
//!
//! The secret is decoded once and zeroized on drop; `Debug` never prints it.
//! Where credentials come from (env vars or files mounted from a Kubernetes
//! Secret) is decided here and nowhere else.

use std::fmt;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};
use zeroize::Zeroize;

use super::consts::{ENV_API_KEY, ENV_API_SECRET};

/// Why credentials could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error(transparent)]
    Source(#[from] herd_venue::credential::SourceError),
    #[error("the API key is empty")]
    EmptyKey,
    #[error("the API secret is not valid base64")]
    SecretNotBase64,
}

/// A Kraken API key and its decoded secret.
pub struct KrakenCredential {
    api_key: String,
    secret: Vec<u8>,
}

impl KrakenCredential {
    /// Builds a credential from the key and the base64 secret Kraken shows.
    pub fn new(api_key: &str, secret_base64: &str) -> Result<KrakenCredential, CredentialError> {
        let api_key = api_key.trim();
        if api_key.is_empty() {
            return Err(CredentialError::EmptyKey);
        }
        let secret = BASE64
            .decode(secret_base64.trim())
            .map_err(|_| CredentialError::SecretNotBase64)?;
        Ok(KrakenCredential {
            api_key: api_key.to_owned(),
            secret,
        })
    }

    /// Reads `KRAKEN_API_KEY` and `KRAKEN_API_SECRET`.
    pub fn from_env() -> Result<KrakenCredential, CredentialError> {
        herd_venue::credential::from_env(ENV_API_KEY, ENV_API_SECRET, KrakenCredential::new)
    }

    /// Reads the key and the secret from two files, as a Kubernetes Secret
    /// mounted as a volume provides them. Surrounding whitespace is ignored.
    pub fn from_files(
        key_path: &Path,
        secret_path: &Path,
    ) -> Result<KrakenCredential, CredentialError> {
        herd_venue::credential::from_files(key_path, secret_path, KrakenCredential::new)
    }

    /// The public API key, sent as the `API-Key` header.
    pub fn api_key(&self) -> &str {
        &self.api_key
    }

    /// `API-Sign`: base64(HMAC-SHA512(secret, uri_path + SHA256(nonce + body))).
    ///
    /// `body` must be the exact bytes sent, which contain `nonce=<nonce>` too.
    pub fn sign(&self, uri_path: &str, nonce: u64, body: &[u8]) -> String {
        let mut sha = Sha256::new();
        sha.update(nonce.to_string().as_bytes());
        sha.update(body);
        let digest = sha.finalize();
        // HMAC accepts keys of any length, so this cannot fail; map it anyway
        // rather than unwrap.
        match Hmac::<Sha512>::new_from_slice(&self.secret) {
            Ok(mut mac) => {
                mac.update(uri_path.as_bytes());
                mac.update(&digest);
                BASE64.encode(mac.finalize().into_bytes())
            }
            Err(_) => String::new(),
        }
    }
}

impl Drop for KrakenCredential {
    fn drop(&mut self) {
        self.api_key.zeroize();
        self.secret.zeroize();
    }
}

impl fmt::Debug for KrakenCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KrakenCredential")
            .field("api_key", &"REDACTED")
            .field("secret", &"REDACTED")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str =
        "kQH5HW/8p1uGOVjbgWA7FunAmGO8lsSUXNsu3eow76sz84Q18fWxnyRzBHCd3pd5nE9qa99HAZtuZuj6F1huXg==";

    #[test]
    fn published_signing_example() {
        let cred = KrakenCredential::new("key", SECRET).unwrap();
        let body =
            "nonce=1616492376594&ordertype=limit&pair=XBTUSD&price=37500&type=buy&volume=1.25";
        let sig = cred.sign("/0/private/AddOrder", 1616492376594, body.as_bytes());
        assert_eq!(
            sig,
            "4/dpxb3iT4tp/ZCVEwSnEsLxx0bqyhLpdfOpc6fn7OR8+UClSV5n9E6aSS8MPtnRfp32bAb0nmbRn6H8ndwLUQ=="
        );
    }

    #[test]
    fn debug_is_redacted() {
        let cred = KrakenCredential::new("my-public-key", SECRET).unwrap();
        let shown = format!("{cred:?}");
        assert!(shown.contains("REDACTED"));
        assert!(!shown.contains("my-public-key"));
        assert!(!shown.contains("kQH5"));
    }

    #[test]
    fn bad_inputs() {
        assert!(matches!(
            KrakenCredential::new("", SECRET),
            Err(CredentialError::EmptyKey)
        ));
        assert!(matches!(
            KrakenCredential::new("k", "not base64!!"),
            Err(CredentialError::SecretNotBase64)
        ));
    }

    #[test]
    fn from_files_trims_newlines() {
        let dir = tempfile::tempdir().unwrap();
        let k = dir.path().join("api-key");
        let s = dir.path().join("api-secret");
        std::fs::write(&k, "abc\n").unwrap();
        std::fs::write(&s, format!("{SECRET}\n")).unwrap();
        let cred = KrakenCredential::from_files(&k, &s).unwrap();
        assert_eq!(cred.api_key(), "abc");
        let missing = KrakenCredential::from_files(&dir.path().join("nope"), &s);
        assert!(matches!(
            missing,
            Err(CredentialError::Source(
                herd_venue::credential::SourceError::File { .. }
            ))
        ));
    }
}
