//! What both services' configs share: the error type and reading the TOML
//! file (each service then applies its environment overrides and validates).

use std::path::Path;

use serde::de::DeserializeOwned;

/// A configuration problem, with what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid: {message}")]
    Parse { path: String, message: String },
    #[error("environment variable {name}: {message}")]
    Env { name: &'static str, message: String },
    #[error("config: {0}")]
    Invalid(String),
}

/// The config in `path`, or the defaults when there is no file.
pub fn read_toml<T: DeserializeOwned + Default>(path: Option<&Path>) -> Result<T, ConfigError> {
    let Some(p) = path else {
        return Ok(T::default());
    };
    let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
        path: p.display().to_string(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: p.display().to_string(),
        message: e.to_string(),
    })
}

/// An address from the environment variable `name`; empty means "not served".
pub fn optional_addr_env(
    name: &'static str,
    v: &str,
) -> Result<Option<std::net::SocketAddr>, ConfigError> {
    crate::admin_http::parse_optional_addr(v).map_err(|message| ConfigError::Env { name, message })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, serde::Deserialize, PartialEq)]
    struct Small {
        #[serde(default)]
        port: u16,
    }

    #[test]
    fn missing_and_bad_files_say_which_file() {
        assert_eq!(read_toml::<Small>(None).unwrap(), Small::default());
        let dir = std::env::temp_dir().join(format!("herd-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_default();
        let missing = dir.join("missing.toml");
        let e = read_toml::<Small>(Some(&missing)).unwrap_err();
        assert!(matches!(e, ConfigError::Read { .. }) && e.to_string().contains("missing.toml"));
        let bad = dir.join("bad.toml");
        std::fs::write(&bad, "port = \"x\"\n").unwrap_or_default();
        let e = read_toml::<Small>(Some(&bad)).unwrap_err();
        assert!(
            matches!(e, ConfigError::Parse { .. }) && e.to_string().contains("bad.toml"),
            "{e}"
        );
        let good = dir.join("good.toml");
        std::fs::write(&good, "port = 7\n").unwrap_or_default();
        assert_eq!(read_toml::<Small>(Some(&good)).unwrap(), Small { port: 7 });
        let _ = std::fs::remove_dir_all(&dir);
    }
}
