//! A configuration secret (tokens, keys, database URLs) that never prints:
//! Debug shows REDACTED, and there is no Display.

use serde::Deserialize;

/// A secret string; read it with [`Secret::expose`] where it is used.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Serialized (for the configuration's diff and `config show` only) as
/// `REDACTED#<keyed hash>`, or "" when empty: a change is seen without the
/// value. The hash is keyed per process and [`crate::reload::redact`]
/// strips it before anything is printed or sent.
impl serde::Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0.is_empty() {
            return s.serialize_str("");
        }
        use std::hash::BuildHasher;
        static KEYS: std::sync::OnceLock<std::collections::hash_map::RandomState> =
            std::sync::OnceLock::new();
        let h = KEYS
            .get_or_init(std::collections::hash_map::RandomState::new)
            .hash_one(&self.0);
        s.serialize_str(&format!("{}{h:016x}", crate::reload::REDACTED_MARK))
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("REDACTED")
    }
}
