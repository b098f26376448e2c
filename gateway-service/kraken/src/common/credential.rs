//! Kraken's credential spec and the one function that signs a private
//! request.
//!
//! The credential itself is [`herd_venue::credential::Credential`] (zeroized
//! on drop, REDACTED in `Debug`); what is Kraken's is here: the secret Kraken
//! shows is base64 and is decoded once when the credential is built
//! ([`CREDENTIAL_SPEC`]), and the `API-Sign` recipe ([`sign`]).

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use herd_venue::credential::CredentialSpec;
pub use herd_venue::credential::{Credential, CredentialError};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};

use super::consts::{ENV_API_KEY, ENV_API_SECRET};

/// How a Kraken credential is read: `KRAKEN_API_KEY` and
/// `KRAKEN_API_SECRET` (or the files the config names), the secret base64.
pub const CREDENTIAL_SPEC: CredentialSpec = CredentialSpec {
    key_env: ENV_API_KEY,
    secret_env: ENV_API_SECRET,
    decode_secret,
};

fn decode_secret(secret_base64: &str) -> Result<Vec<u8>, CredentialError> {
    BASE64
        .decode(secret_base64)
        .map_err(|_| CredentialError::InvalidSecret("not valid base64"))
}

/// `API-Sign`: base64(HMAC-SHA512(secret, uri_path + SHA256(nonce + body))).
///
/// `body` must be the exact bytes sent, which contain `nonce=<nonce>` too.
pub fn sign(credential: &Credential, uri_path: &str, nonce: u64, body: &[u8]) -> String {
    let mut sha = Sha256::new();
    sha.update(nonce.to_string().as_bytes());
    sha.update(body);
    let digest = sha.finalize();
    // HMAC accepts keys of any length, so this cannot fail; map it anyway
    // rather than unwrap.
    match Hmac::<Sha512>::new_from_slice(credential.secret()) {
        Ok(mut mac) => {
            mac.update(uri_path.as_bytes());
            mac.update(&digest);
            BASE64.encode(mac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str =
        "kQH5HW/8p1uGOVjbgWA7FunAmGO8lsSUXNsu3eow76sz84Q18fWxnyRzBHCd3pd5nE9qa99HAZtuZuj6F1huXg==";

    #[test]
    fn published_signing_example() {
        let cred = CREDENTIAL_SPEC.parse("key", SECRET).unwrap();
        let body =
            "nonce=1616492376594&ordertype=limit&pair=XBTUSD&price=37500&type=buy&volume=1.25";
        let sig = sign(&cred, "/0/private/AddOrder", 1616492376594, body.as_bytes());
        assert_eq!(
            sig,
            "4/dpxb3iT4tp/ZCVEwSnEsLxx0bqyhLpdfOpc6fn7OR8+UClSV5n9E6aSS8MPtnRfp32bAb0nmbRn6H8ndwLUQ=="
        );
    }

    #[test]
    fn debug_is_redacted() {
        let cred = CREDENTIAL_SPEC.parse("my-public-key", SECRET).unwrap();
        let shown = format!("{cred:?}");
        assert!(shown.contains("REDACTED"));
        assert!(!shown.contains("my-public-key"));
        assert!(!shown.contains("kQH5"));
    }

    #[test]
    fn bad_inputs() {
        assert!(matches!(
            CREDENTIAL_SPEC.parse("", SECRET),
            Err(CredentialError::EmptyKey)
        ));
        let err = CREDENTIAL_SPEC.parse("k", "not base64!!").unwrap_err();
        assert_eq!(err, CredentialError::InvalidSecret("not valid base64"));
        assert_eq!(err.to_string(), "the API secret is not valid base64");
    }

    #[test]
    fn env_var_names_are_kraken_s() {
        assert_eq!(CREDENTIAL_SPEC.key_env, "KRAKEN_API_KEY");
        assert_eq!(CREDENTIAL_SPEC.secret_env, "KRAKEN_API_SECRET");
    }

    #[test]
    fn from_files_trims_newlines() {
        let dir = tempfile::tempdir().unwrap();
        let k = dir.path().join("api-key");
        let s = dir.path().join("api-secret");
        std::fs::write(&k, "abc\n").unwrap();
        std::fs::write(&s, format!("{SECRET}\n")).unwrap();
        let cred = CREDENTIAL_SPEC.from_files(&k, &s).unwrap();
        assert_eq!(cred.api_key(), "abc");
        let missing = CREDENTIAL_SPEC.from_files(&dir.path().join("nope"), &s);
        assert!(matches!(missing, Err(CredentialError::File { .. })));
    }
}
