//! Private-call authentication as Kraken checks it: the `API-Key` header
//! names a known key, `API-Sign` is base64(HMAC-SHA512(secret, path +
//! SHA256(nonce + body))) over the exact bytes received, and the nonce is
//! strictly greater than any the key used before.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use herd_proto::auth::token_matches;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};

/// Kraken's answers to a bad key, signature or nonce.
pub const INVALID_KEY: &str = "EAPI:Invalid key";
pub const INVALID_SIGNATURE: &str = "EAPI:Invalid signature";
pub const INVALID_NONCE: &str = "EAPI:Invalid nonce";

/// One API key and what the sim remembers of it.
pub struct KeyAuth {
    api_key: String,
    secret: Vec<u8>,
    last_nonce: Option<u64>,
}

impl std::fmt::Debug for KeyAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyAuth")
            .field("api_key", &"REDACTED")
            .field("secret", &"REDACTED")
            .field("last_nonce", &self.last_nonce)
            .finish()
    }
}

impl KeyAuth {
    /// `secret_b64` is the secret as Kraken shows it (base64).
    pub fn new(api_key: &str, secret_b64: &str) -> Result<KeyAuth, String> {
        let secret = BASE64
            .decode(secret_b64.trim())
            .map_err(|_| "the API secret is not valid base64".to_string())?;
        Ok(KeyAuth {
            api_key: api_key.to_string(),
            secret,
            last_nonce: None,
        })
    }

    /// The highest nonce accepted so far (what a state file keeps).
    pub fn last_nonce(&self) -> Option<u64> {
        self.last_nonce
    }

    /// Restores the highest nonce accepted before a restart.
    pub fn set_last_nonce(&mut self, n: Option<u64>) {
        self.last_nonce = n;
    }

    /// The signature of `body` (which contains `nonce=`) sent to `path`.
    pub fn sign(&self, path: &str, nonce: &str, body: &[u8]) -> String {
        let mut sha = Sha256::new();
        sha.update(nonce.as_bytes());
        sha.update(body);
        let digest = sha.finalize();
        match Hmac::<Sha512>::new_from_slice(&self.secret) {
            Ok(mut mac) => {
                mac.update(path.as_bytes());
                mac.update(&digest);
                BASE64.encode(mac.finalize().into_bytes())
            }
            Err(_) => String::new(),
        }
    }

    /// Checks key, signature and nonce in Kraken's order; records the nonce
    /// when all three pass.
    pub fn verify(
        &mut self,
        path: &str,
        key: Option<&str>,
        sign: Option<&str>,
        nonce: Option<&str>,
        body: &[u8],
    ) -> Result<(), &'static str> {
        if key != Some(self.api_key.as_str()) {
            return Err(INVALID_KEY);
        }
        let nonce_text = nonce.ok_or(INVALID_NONCE)?;
        let expected = self.sign(path, nonce_text, body);
        let given = sign.ok_or(INVALID_SIGNATURE)?;
        if !token_matches(expected.as_bytes(), given.as_bytes()) {
            return Err(INVALID_SIGNATURE);
        }
        let n: u64 = nonce_text.parse().map_err(|_| INVALID_NONCE)?;
        if self.last_nonce.is_some_and(|last| n <= last) {
            return Err(INVALID_NONCE);
        }
        self.last_nonce = Some(n);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str =
        "kQH5HW/8p1uGOVjbgWA7FunAmGO8lsSUXNsu3eow76sz84Q18fWxnyRzBHCd3pd5nE9qa99HAZtuZuj6F1huXg==";

    #[test]
    fn published_example_and_nonce_order() {
        let mut a = KeyAuth::new("k", SECRET).unwrap();
        let body =
            b"nonce=1616492376594&ordertype=limit&pair=XBTUSD&price=37500&type=buy&volume=1.25";
        let sig = "4/dpxb3iT4tp/ZCVEwSnEsLxx0bqyhLpdfOpc6fn7OR8+UClSV5n9E6aSS8MPtnRfp32bAb0nmbRn6H8ndwLUQ==";
        let path = "/0/private/AddOrder";
        let n = Some("1616492376594");
        assert_eq!(a.sign(path, "1616492376594", body), sig);
        assert_eq!(
            a.verify(path, Some("x"), Some(sig), n, body),
            Err(INVALID_KEY)
        );
        assert_eq!(
            a.verify(path, Some("k"), Some("AAAA"), n, body),
            Err(INVALID_SIGNATURE)
        );
        assert_eq!(a.verify(path, Some("k"), Some(sig), n, body), Ok(()));
        // The same nonce again (a replay) is refused.
        assert_eq!(
            a.verify(path, Some("k"), Some(sig), n, body),
            Err(INVALID_NONCE)
        );
    }
}
