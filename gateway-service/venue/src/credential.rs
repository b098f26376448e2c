//! The exchange API credential every adapter uses, and where it comes from.
//!
//! [`Credential`] holds the public API key and the bytes the venue's HMAC is
//! keyed with; both are zeroized on drop, `Debug` prints REDACTED, and it
//! has no `Display`, `Serialize` or `Clone`. Each adapter describes its venue
//! once in a [`CredentialSpec`] (the two environment variables and how the
//! secret the venue shows is decoded) and keeps its own signing, reading the
//! key with [`Credential::secret`]. [`CredentialSource`] is the `credentials`
//! key of an adapter's config: the environment, two files (a Kubernetes
//! Secret mounted as a volume) or none. The raw strings read from either are
//! zeroized as soon as the credential is built from them.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use zeroize::{ZeroizeOnDrop, Zeroizing};

/// Why a credential could not be loaded. Names the variable or file, never
/// holds the key or the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    #[error("environment variable {0} is not set")]
    MissingEnv(&'static str),
    #[error("cannot read {path}: {message}")]
    File { path: String, message: String },
    #[error("the API key is empty")]
    EmptyKey,
    #[error("the API secret is empty")]
    EmptySecret,
    /// The venue's decoding refused the secret; the text says why
    /// ("not valid base64").
    #[error("the API secret is {0}")]
    InvalidSecret(&'static str),
}

/// An API key and its secret, ready to sign with.
#[derive(ZeroizeOnDrop)]
pub struct Credential {
    api_key: String,
    secret: Vec<u8>,
}

impl Credential {
    /// The public API key, sent in a header with every private call.
    pub fn api_key(&self) -> &str {
        &self.api_key
    }

    /// The decoded secret. Only signing code reads it.
    pub fn secret(&self) -> &[u8] {
        &self.secret
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("api_key", &"REDACTED")
            .field("secret", &"REDACTED")
            .finish()
    }
}

/// How one venue's credential is read: the names of its environment
/// variables and how the secret it shows is turned into HMAC key bytes.
/// Each adapter defines one constant of this, the only place its variable
/// names are spelled.
#[derive(Debug, Clone, Copy)]
pub struct CredentialSpec {
    /// Environment variable holding the API key.
    pub key_env: &'static str,
    /// Environment variable holding the API secret.
    pub secret_env: &'static str,
    /// The secret as the venue shows it (trimmed, never empty) to the bytes
    /// the venue's HMAC is keyed with.
    pub decode_secret: fn(&str) -> Result<Vec<u8>, CredentialError>,
}

/// [`CredentialSpec::decode_secret`] for venues whose HMAC key is the secret
/// text itself.
pub fn secret_as_is(secret: &str) -> Result<Vec<u8>, CredentialError> {
    Ok(secret.as_bytes().to_vec())
}

impl CredentialSpec {
    /// Builds a credential from the key and the secret as the venue shows
    /// them. Surrounding whitespace (a file's trailing newline) is ignored.
    pub fn parse(&self, api_key: &str, secret: &str) -> Result<Credential, CredentialError> {
        let api_key = api_key.trim();
        let secret = secret.trim();
        if api_key.is_empty() {
            return Err(CredentialError::EmptyKey);
        }
        if secret.is_empty() {
            return Err(CredentialError::EmptySecret);
        }
        let secret = (self.decode_secret)(secret)?;
        Ok(Credential {
            api_key: api_key.to_owned(),
            secret,
        })
    }

    /// Reads [`CredentialSpec::key_env`] and [`CredentialSpec::secret_env`].
    pub fn from_env(&self) -> Result<Credential, CredentialError> {
        let read = |var: &'static str| {
            std::env::var(var)
                .map(Zeroizing::new)
                .map_err(|_| CredentialError::MissingEnv(var))
        };
        let key = read(self.key_env)?;
        let secret = read(self.secret_env)?;
        self.parse(&key, &secret)
    }

    /// Reads the key and the secret from two files, as a Kubernetes Secret
    /// mounted as a volume provides them.
    pub fn from_files(
        &self,
        key_path: &Path,
        secret_path: &Path,
    ) -> Result<Credential, CredentialError> {
        let read = |p: &Path| {
            std::fs::read_to_string(p)
                .map(Zeroizing::new)
                .map_err(|e| CredentialError::File {
                    path: p.display().to_string(),
                    message: e.to_string(),
                })
        };
        let key = read(key_path)?;
        let secret = read(secret_path)?;
        self.parse(&key, &secret)
    }
}

/// Where the API key and secret come from: the `credentials` key of an
/// adapter's config (`{ source = "env" }`, the default;
/// `{ source = "files", key_path = "...", secret_path = "..." }`;
/// `{ source = "none" }`).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "lowercase", deny_unknown_fields)]
pub enum CredentialSource {
    /// The venue's two environment variables ([`CredentialSpec`]).
    #[default]
    Env,
    /// Two files, e.g. a Kubernetes Secret mounted as a volume.
    Files {
        key_path: PathBuf,
        secret_path: PathBuf,
    },
    /// Public endpoints only.
    None,
}

impl CredentialSource {
    /// Loads the credential as `spec` reads it; `Ok(None)` for
    /// [`CredentialSource::None`].
    pub fn load(&self, spec: &CredentialSpec) -> Result<Option<Credential>, CredentialError> {
        match self {
            CredentialSource::Env => spec.from_env().map(Some),
            CredentialSource::Files {
                key_path,
                secret_path,
            } => spec.from_files(key_path, secret_path).map(Some),
            CredentialSource::None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A toy venue encoding: the secret is decimal digits, one byte each.
    fn digits(s: &str) -> Result<Vec<u8>, CredentialError> {
        s.chars()
            .map(|c| c.to_digit(10).and_then(|d| u8::try_from(d).ok()))
            .collect::<Option<_>>()
            .ok_or(CredentialError::InvalidSecret("not digits"))
    }

    const RAW: CredentialSpec = CredentialSpec {
        key_env: "HERD_TEST_SURELY_UNSET_KEY",
        secret_env: "HERD_TEST_SURELY_UNSET_SECRET",
        decode_secret: secret_as_is,
    };

    const DIGITS: CredentialSpec = CredentialSpec {
        key_env: "HERD_TEST_SURELY_UNSET_KEY",
        secret_env: "HERD_TEST_SURELY_UNSET_SECRET",
        decode_secret: digits,
    };

    #[test]
    fn debug_is_redacted() {
        let cred = RAW.parse("my-public-key", "my-secret-value").unwrap();
        let shown = format!("{cred:?}");
        assert_eq!(
            shown,
            "Credential { api_key: \"REDACTED\", secret: \"REDACTED\" }"
        );
        let shown = format!("{:?}", Some(&cred));
        assert!(!shown.contains("my-public-key"), "{shown}");
        assert!(!shown.contains("my-secret-value"), "{shown}");
    }

    #[test]
    fn parse_trims_checks_and_decodes() {
        let cred = RAW.parse(" key\n", "\tsecret \n").unwrap();
        assert_eq!(cred.api_key(), "key");
        assert_eq!(cred.secret(), b"secret");
        let cred = DIGITS.parse("key", "019\n").unwrap();
        assert_eq!(cred.secret(), [0, 1, 9]);
        let cases: [(&str, &str, CredentialError); 4] = [
            ("", "s", CredentialError::EmptyKey),
            (" \n", "s", CredentialError::EmptyKey),
            ("k", " ", CredentialError::EmptySecret),
            ("k", "12a", CredentialError::InvalidSecret("not digits")),
        ];
        for (key, secret, want) in cases {
            assert_eq!(
                DIGITS.parse(key, secret).unwrap_err(),
                want,
                "{key:?} {secret:?}"
            );
        }
        assert_eq!(
            CredentialError::InvalidSecret("not valid base64").to_string(),
            "the API secret is not valid base64"
        );
    }

    #[test]
    fn files_are_read_and_a_missing_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let (k, s) = (dir.path().join("api-key"), dir.path().join("api-secret"));
        std::fs::write(&k, "the-key\n").unwrap();
        std::fs::write(&s, " the-secret \n").unwrap();
        let cred = RAW.from_files(&k, &s).unwrap();
        assert_eq!(cred.api_key(), "the-key");
        assert_eq!(cred.secret(), b"the-secret");

        let missing = dir.path().join("nope");
        for (key, secret) in [(&missing, &s), (&k, &missing)] {
            let err = RAW.from_files(key, secret).unwrap_err();
            match &err {
                CredentialError::File { path, .. } => assert!(path.ends_with("nope"), "{path}"),
                other => unreachable!("{other:?}"),
            }
            let text = err.to_string();
            assert!(
                text.starts_with("cannot read ") && text.contains("nope"),
                "{text}"
            );
            assert!(
                !text.contains("the-secret") && !text.contains("the-key"),
                "{text}"
            );
        }
    }

    #[test]
    fn a_missing_variable_is_named() {
        let err = RAW.from_env().unwrap_err();
        assert_eq!(
            err,
            CredentialError::MissingEnv("HERD_TEST_SURELY_UNSET_KEY")
        );
        assert_eq!(
            err.to_string(),
            "environment variable HERD_TEST_SURELY_UNSET_KEY is not set"
        );
    }

    #[test]
    fn source_loads_from_files_and_none() {
        let dir = tempfile::tempdir().unwrap();
        let (k, s) = (dir.path().join("k"), dir.path().join("s"));
        std::fs::write(&k, "key").unwrap();
        std::fs::write(&s, "secret").unwrap();
        let files = CredentialSource::Files {
            key_path: k,
            secret_path: s,
        };
        assert_eq!(files.load(&RAW).unwrap().unwrap().api_key(), "key");
        assert!(CredentialSource::None.load(&RAW).unwrap().is_none());
        assert_eq!(
            CredentialSource::Env.load(&RAW).unwrap_err(),
            CredentialError::MissingEnv("HERD_TEST_SURELY_UNSET_KEY")
        );
    }

    #[test]
    fn source_reads_the_config_spelling() {
        let cases = [
            (r#"{"source": "env"}"#, Some(CredentialSource::Env)),
            (r#"{"source": "none"}"#, Some(CredentialSource::None)),
            (
                r#"{"source": "files", "key_path": "/s/k", "secret_path": "/s/s"}"#,
                Some(CredentialSource::Files {
                    key_path: "/s/k".into(),
                    secret_path: "/s/s".into(),
                }),
            ),
            (r#"{"source": "files", "key_path": "/s/k"}"#, None),
            (r#"{"source": "vault"}"#, None),
            (
                r#"{"source": "files", "key_path": "/k", "secret_path": "/s", "key": "x"}"#,
                None,
            ),
        ];
        for (json, want) in cases {
            let got = serde_json::from_str::<CredentialSource>(json).ok();
            assert_eq!(got, want, "{json}");
        }
    }
}
