//! The shape of a JSON answer, to hold a venue simulator's answers and the
//! adapters' recorded fixtures to the same fields and types
//! (`tests/tests/fixture_drift.rs`).
//!
//! A shape is every path in the document with the JSON types seen there.
//! Array elements share one path (`list[]`), and objects keyed by ids
//! (Kraken's txids, pair keys and asset codes) are read as lists of records
//! (`open.*`), so two answers about different orders compare field by field.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

/// Path -> the JSON types seen at it.
pub type Shape = BTreeMap<String, BTreeSet<&'static str>>;

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The shape of `v`. `id_maps` names the object paths whose keys are ids
/// (`result.open`); a `*` in a name matches any one key there.
pub fn shape(v: &Value, id_maps: &[&str]) -> Shape {
    let mut out = Shape::new();
    walk(v, "", id_maps, &mut out);
    out
}

fn matches(pattern: &str, path: &str) -> bool {
    let p: Vec<&str> = pattern.split('.').collect();
    let q: Vec<&str> = path.split('.').collect();
    p.len() == q.len() && p.iter().zip(&q).all(|(a, b)| *a == "*" || a == b)
}

fn walk(v: &Value, path: &str, id_maps: &[&str], out: &mut Shape) {
    out.entry(path.to_string()).or_default().insert(kind(v));
    let join = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    match v {
        Value::Array(items) => {
            let p = format!("{path}[]");
            for item in items {
                walk(item, &p, id_maps, out);
            }
        }
        Value::Object(map) => {
            let by_id = id_maps.iter().any(|m| matches(m, path));
            for (k, x) in map {
                let p = if by_id { join("*") } else { join(k) };
                walk(x, &p, id_maps, out);
            }
        }
        _ => {}
    }
}

/// How a simulator's shape differs from a fixture's: paths only one side
/// has, and paths whose types never agree. A path under one that is
/// already missing is not repeated. `allowed` holds path prefixes whose
/// differences are known and explained by the caller.
pub fn drift(fixture: &Shape, sim: &Shape, allowed: &[&str]) -> Vec<String> {
    let covered = |p: &str| {
        allowed
            .iter()
            .any(|a| p == *a || p.starts_with(&format!("{a}.")) || p.starts_with(&format!("{a}[]")))
    };
    let mut out = Vec::new();
    let mut reported: Vec<String> = Vec::new();
    let under = |p: &str, reported: &[String]| {
        reported
            .iter()
            .any(|r| p.starts_with(&format!("{r}.")) || p.starts_with(&format!("{r}[]")))
    };
    for (p, types) in fixture {
        if covered(p) || under(p, &reported) {
            continue;
        }
        match sim.get(p) {
            None => {
                out.push(format!(
                    "{p}: in the fixture, not in the simulator's answer"
                ));
                reported.push(p.clone());
            }
            Some(t) if t.is_disjoint(types) => {
                out.push(format!("{p}: fixture has {types:?}, simulator {t:?}"));
            }
            Some(_) => {}
        }
    }
    for p in sim.keys() {
        if !fixture.contains_key(p) && !covered(p) && !under(p, &reported) {
            out.push(format!(
                "{p}: in the simulator's answer, not in the fixture"
            ));
            reported.push(p.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn id_keyed_records_compare_field_by_field() {
        let a = json!({"result": {"open": {"OAAAAA-AAAAA-AAAAAA": {"vol": "1", "refid": null}}}});
        let b = json!({"result": {"open": {
            "OBBBBB-BBBBB-BBBBBB": {"vol": "2", "refid": null},
            "OCCCCC-CCCCC-CCCCCC": {"vol": "3", "refid": null}
        }}});
        let ids = ["result.open"];
        assert!(drift(&shape(&a, &ids), &shape(&b, &ids), &[]).is_empty());
    }

    #[test]
    fn missing_extra_and_retyped_fields_are_reported_once() {
        let fixture = json!({"list": [{"qty": "1", "fee": {"cost": "0.1"}, "time": 5}]});
        let sim = json!({"list": [{"qty": 1, "time": 6, "extra": true}]});
        let d = drift(&shape(&fixture, &[]), &shape(&sim, &[]), &[]);
        assert_eq!(d.len(), 3, "{d:#?}");
        assert!(d[0].starts_with("list[].fee: in the fixture"), "{d:#?}");
        assert!(d[1].starts_with("list[].qty: fixture has"), "{d:#?}");
        assert!(d[2].starts_with("list[].extra: in the simulator"), "{d:#?}");
        // Allowed prefixes are skipped.
        let d = drift(
            &shape(&fixture, &[]),
            &shape(&sim, &[]),
            &["list[].fee", "list[].qty", "list[].extra"],
        );
        assert!(d.is_empty(), "{d:#?}");
    }
}
