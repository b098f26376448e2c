//! How the engine's generated messages serialize as JSON (`serde` on the
//! prost types, see build.rs): proto field names, decimals as the strings
//! they already are, a block the engine does not have as `null`, and enum
//! fields by name.

use serde::Serializer;

use crate::engine::Mode;

/// The engine mode by name: `RUNNING`, `PAUSED`, `HALTED` (else `UNKNOWN`).
pub fn mode_name(m: i32) -> &'static str {
    match Mode::try_from(m) {
        Ok(Mode::Running) => "RUNNING",
        Ok(Mode::Paused) => "PAUSED",
        Ok(Mode::Halted) => "HALTED",
        _ => "UNKNOWN",
    }
}

/// `serialize_with` for `EngineStatus.mode`.
pub fn mode<S: Serializer>(m: &i32, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(mode_name(*m))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine as pb;

    #[test]
    fn status_serializes_with_field_names_mode_by_name_and_null_blocks() {
        let s = pb::EngineStatus {
            engine_id: "e0".into(),
            mode: Mode::Paused as i32,
            price: "0.1234".into(),
            ..Default::default()
        };
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["engine_id"], "e0");
        assert_eq!(v["mode"], "PAUSED");
        assert_eq!(v["price"], "0.1234");
        assert!(v["grid"].is_null());
        assert_eq!(v["open_orders"], serde_json::json!([]));
        assert_eq!(mode_name(99), "UNKNOWN");
    }
}
