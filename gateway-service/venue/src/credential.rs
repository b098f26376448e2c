//! Where a venue adapter's API key and secret come from: two environment
//! variables, or two files as a Kubernetes Secret mounted as a volume
//! provides them. The raw strings are zeroized as soon as the adapter has
//! built its credential from them; nothing here prints them.

use std::path::Path;

use zeroize::Zeroize;

/// Why the key or the secret could not be read (it never holds either).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    #[error("environment variable {0} is not set")]
    MissingEnv(&'static str),
    #[error("cannot read {path}: {message}")]
    File { path: String, message: String },
}

/// Reads `key_var` and `secret_var` and hands both to `build`.
pub fn from_env<T, E: From<SourceError>>(
    key_var: &'static str,
    secret_var: &'static str,
    build: impl FnOnce(&str, &str) -> Result<T, E>,
) -> Result<T, E> {
    let mut key = std::env::var(key_var).map_err(|_| SourceError::MissingEnv(key_var))?;
    let mut secret = match std::env::var(secret_var) {
        Ok(s) => s,
        Err(_) => {
            key.zeroize();
            return Err(SourceError::MissingEnv(secret_var).into());
        }
    };
    let out = build(&key, &secret);
    key.zeroize();
    secret.zeroize();
    out
}

/// Reads the key and the secret from two files and hands both to `build`.
pub fn from_files<T, E: From<SourceError>>(
    key_path: &Path,
    secret_path: &Path,
    build: impl FnOnce(&str, &str) -> Result<T, E>,
) -> Result<T, E> {
    let read = |p: &Path| {
        std::fs::read_to_string(p).map_err(|e| SourceError::File {
            path: p.display().to_string(),
            message: e.to_string(),
        })
    };
    let mut key = read(key_path)?;
    let mut secret = match read(secret_path) {
        Ok(s) => s,
        Err(e) => {
            key.zeroize();
            return Err(e.into());
        }
    };
    let out = build(&key, &secret);
    key.zeroize();
    secret.zeroize();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_read_and_missing_ones_named() {
        let dir = std::env::temp_dir().join(format!("herd-cred-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let (k, s) = (dir.join("key"), dir.join("secret"));
        let _ = std::fs::write(&k, "the-key\n");
        let _ = std::fs::write(&s, " the-secret ");
        let got: Result<(String, String), SourceError> = from_files(&k, &s, |a, b| {
            Ok((a.trim().to_string(), b.trim().to_string()))
        });
        assert_eq!(got, Ok(("the-key".into(), "the-secret".into())));
        let missing = dir.join("nope");
        let err: Result<(), SourceError> = from_files(&k, &missing, |_, _| Ok(()));
        match err {
            Err(SourceError::File { path, .. }) => assert!(path.ends_with("nope")),
            other => unreachable!("{other:?}"),
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_missing_variable_is_named() {
        let err: Result<(), SourceError> = from_env(
            "HERD_TEST_SURELY_UNSET_KEY",
            "HERD_TEST_SURELY_UNSET_SECRET",
            |_, _| Ok(()),
        );
        assert_eq!(
            err,
            Err(SourceError::MissingEnv("HERD_TEST_SURELY_UNSET_KEY"))
        );
    }
}
