//! Bybit's credential spec and the one function that signs a request.
//!
//! The credential itself is [`herd_venue::credential::Credential`] (zeroized
//! on drop, REDACTED in `Debug`); what is Bybit's is here: the secret is used
//! as shown, as the HMAC key ([`CREDENTIAL_SPEC`]), and the `X-BAPI-SIGN`
//! recipe ([`sign`]).

pub use herd_venue::credential::{Credential, CredentialError};
use herd_venue::credential::{CredentialSpec, secret_as_is};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::consts::{ENV_API_KEY, ENV_API_SECRET};

/// How a Bybit credential is read: `BYBIT_API_KEY` and `BYBIT_API_SECRET`
/// (or the files the config names), the secret text being the HMAC key.
pub const CREDENTIAL_SPEC: CredentialSpec = CredentialSpec {
    key_env: ENV_API_KEY,
    secret_env: ENV_API_SECRET,
    decode_secret: secret_as_is,
};

/// `X-BAPI-SIGN`: lowercase hex HMAC-SHA256(secret, timestamp + api_key +
/// recv_window + payload), where `payload` is the exact query string of a
/// GET or the exact JSON body of a POST.
pub fn sign(
    credential: &Credential,
    timestamp_ms: i64,
    recv_window_ms: i64,
    payload: &str,
) -> String {
    sign_with(
        credential.secret(),
        credential.api_key(),
        timestamp_ms,
        recv_window_ms,
        payload,
    )
}

/// The signature with explicit parts.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_vectors() {
        let cred = CREDENTIAL_SPEC
            .parse("test_api_key", "test_secret")
            .unwrap();
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
                sign(&cred, 1_700_000_000_000, 5000, payload),
                want,
                "{payload}"
            );
        }
    }

    #[test]
    fn debug_is_redacted() {
        let cred = CREDENTIAL_SPEC
            .parse("my-public-key", "my-secret-value")
            .unwrap();
        let shown = format!("{cred:?}");
        assert!(shown.contains("REDACTED"));
        assert!(!shown.contains("my-public-key"));
        assert!(!shown.contains("my-secret-value"));
    }

    #[test]
    fn env_var_names_are_bybit_s() {
        assert_eq!(CREDENTIAL_SPEC.key_env, "BYBIT_API_KEY");
        assert_eq!(CREDENTIAL_SPEC.secret_env, "BYBIT_API_SECRET");
    }

    #[test]
    fn bad_inputs_and_files() {
        assert!(matches!(
            CREDENTIAL_SPEC.parse(" ", "s"),
            Err(CredentialError::EmptyKey)
        ));
        assert!(matches!(
            CREDENTIAL_SPEC.parse("k", ""),
            Err(CredentialError::EmptySecret)
        ));
        let dir = tempfile::tempdir().unwrap();
        let k = dir.path().join("api-key");
        let s = dir.path().join("api-secret");
        std::fs::write(&k, "test_api_key\n").unwrap();
        std::fs::write(&s, "test_secret\n").unwrap();
        let cred = CREDENTIAL_SPEC.from_files(&k, &s).unwrap();
        assert_eq!(
            sign(
                &cred,
                1_700_000_000_000,
                5000,
                "category=linear&symbol=BTCUSDT"
            ),
            "fd4f31228a46109dc6673062328693696df9a96c7ff04e6491a45e7f63a0fdd7"
        );
        let missing = CREDENTIAL_SPEC.from_files(&dir.path().join("nope"), &s);
        assert!(matches!(missing, Err(CredentialError::File { .. })));
        let err = CREDENTIAL_SPEC
            .from_files(&dir.path().join("nope"), &s)
            .unwrap_err()
            .to_string();
        assert!(!err.contains("test_secret"), "{err}");
    }
}
