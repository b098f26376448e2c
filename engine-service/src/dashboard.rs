//! The engine's web dashboard, served on the admin HTTP port: `/` is one
//! self-contained page (inline CSS and vanilla JS, nothing loaded from
//! elsewhere) that polls `/api/status` every second.
//!
//! `/api/status` is the [`pb::EngineStatus`] the `GetStatus` RPC returns
//! ([`crate::view::engine_status`]), serialized by serde on the generated
//! types: proto field names, decimals as strings, a block the engine does
//! not have as `null`, the mode by name. The one change this view makes is
//! that the JSON documents GetStatus embeds as strings (each strategy's
//! `detail_json`, the regime's `detail_json`) are parsed, so the page and
//! herdctl read them as objects: a strategy's becomes `detail`, the
//! regime's `source` and `per_timeframe`. The page is passive: nothing on
//! it can trade, and the admin port answers GET only.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use herd_proto::engine as pb;
use serde_json::{Value, json};

use crate::execution::Shared;

/// The page, as served.
pub const PAGE: &str = include_str!("../assets/dashboard.html");

/// A JSON string embedded in the status, parsed (`null` when empty or not JSON).
fn embedded(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or(Value::Null)
}

/// Takes `obj[key]` (an embedded JSON string) out of `obj`, parsed.
fn unembed(obj: &mut Value, key: &str) -> Value {
    obj.as_object_mut()
        .and_then(|o| o.remove(key))
        .and_then(|v| v.as_str().map(embedded))
        .unwrap_or(Value::Null)
}

/// Any generated message as JSON (`null` if it cannot be serialized, which
/// the generated types never fail to).
pub fn to_json<T: serde::Serialize>(m: &T) -> Value {
    serde_json::to_value(m).unwrap_or(Value::Null)
}

/// The JSON view of an engine status (what `/api/status` serves and
/// `herdctl status -o json` prints).
pub fn status_json(s: &pb::EngineStatus) -> Value {
    let mut v = to_json(s);
    if let Some(strategies) = v.get_mut("strategies").and_then(Value::as_array_mut) {
        for st in strategies {
            let detail = unembed(st, "detail_json");
            st["detail"] = detail;
        }
    }
    if let Some(regime) = v.get_mut("regime").filter(|r| r.is_object()) {
        let detail = unembed(regime, "detail_json");
        regime["source"] = detail.get("source").cloned().unwrap_or(Value::Null);
        regime["per_timeframe"] = detail
            .get("per_timeframe")
            .filter(|p| p.is_array())
            .cloned()
            .unwrap_or_else(|| json!([]));
    }
    v
}

/// `GET /`: the page.
pub async fn page() -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], PAGE).into_response()
}

/// `GET /api/status`: the engine's status as JSON (500 with a JSON error
/// when the status cannot be built, e.g. the store is unreachable).
pub async fn api_status(shared: &Shared) -> Response {
    let json_type = [(header::CONTENT_TYPE, "application/json")];
    match crate::view::engine_status(shared).await {
        Ok(s) => (json_type, status_json(&s).to_string()).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            json_type,
            json!({ "error": e.message() }).to_string(),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(id: u32, stage: &str, age: f64) -> pb::RangerSlotStatus {
        pb::RangerSlotStatus {
            ranger_id: id,
            stage: stage.into(),
            age_sec: age,
            ..Default::default()
        }
    }

    #[test]
    fn missing_blocks_are_null_and_zero_status_renders() {
        let v = status_json(&pb::EngineStatus::default());
        for block in [
            "regime",
            "rangers",
            "grid",
            "capacity",
            "self_healing",
            "funding",
        ] {
            assert!(v[block].is_null(), "{block}: {}", v[block]);
        }
        assert_eq!(v["engine_id"], "");
        assert_eq!(v["mode"], "UNKNOWN");
        assert_eq!(v["gateway_connected"], false);
        assert_eq!(v["price"], "");
        assert_eq!(v["open_orders"], json!([]));
        assert_eq!(v["strategies"], json!([]));
    }

    #[test]
    fn empty_nested_blocks_stay_empty_not_missing() {
        let s = pb::EngineStatus {
            mode: pb::Mode::Paused as i32,
            rangers: Some(pb::RangersStatus::default()),
            self_healing: Some(pb::SelfHealingStatus::default()),
            funding: Some(pb::FundingStatus::default()),
            regime: Some(pb::RegimeStatus::default()),
            ..Default::default()
        };
        let v = status_json(&s);
        assert_eq!(v["mode"], "PAUSED");
        let r = &v["rangers"];
        assert_eq!(r["enabled"], false);
        assert_eq!(r["cycles_today"], 0);
        assert_eq!(r["profit_today"], "");
        assert_eq!(r["slots"], json!([]));
        assert!(r["timing"].is_null(), "{r}");
        let h = &v["self_healing"];
        assert!(h["bands"].is_null() && h["churner"].is_null(), "{h}");
        assert_eq!(h["positions"], json!([]));
        let f = &v["funding"];
        assert!(f["portfolio"].is_null() && f["emergency"].is_null(), "{f}");
        assert_eq!(f["positions"], json!([]));
        // Empty or broken embedded JSON gives no timeframes, not an error.
        assert_eq!(v["regime"]["per_timeframe"], json!([]));
        assert!(v["regime"]["source"].is_null());
        assert!(v["regime"].get("detail_json").is_none());
    }

    #[test]
    fn rangers_rows_carry_badge_timeout_and_decimal_strings() {
        let s = pb::EngineStatus {
            engine_id: "e0".into(),
            mode: pb::Mode::Running as i32,
            price: "0.1202".into(),
            rangers: Some(pb::RangersStatus {
                enabled: true,
                active: 2,
                regime_ok: true,
                cycles_today: 3,
                profit_today: "0.042181997002326".into(),
                cycles_total: 7,
                exit_margin_pct: "1.2".into(),
                timing: Some(pb::RangerTiming {
                    exit_timeout_sec: 1350,
                    ..Default::default()
                }),
                slots: vec![
                    pb::RangerSlotStatus {
                        entry_price: "0.12018".into(),
                        exit_price: "0.1187378".into(),
                        entry_volume: "16.64170411".into(),
                        badge: "amber".into(),
                        timeout_sec: 1350,
                        remaining_sec: Some(150.0),
                        ..slot(0, "exit_open", 1200.0)
                    },
                    slot(2, "idle", 0.0),
                ],
                ..Default::default()
            }),
            strategies: vec![pb::StrategyStatus {
                name: herd_strategies::rangers::STRATEGY_NAME.into(),
                enabled: true,
                state: "enabled".into(),
                detail_json: r#"{"cycles_total": 7}"#.into(),
            }],
            regime: Some(pb::RegimeStatus {
                regime: "RANGING".into(),
                ready: true,
                detail_json: r#"{"source":"hmm","per_timeframe":[{"timeframe":"1m","regime":"RANGING"},{"timeframe":"15m","regime":"BULLISH"}]}"#.into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let v = status_json(&s);
        let rows = v["rangers"]["slots"].as_array().unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0]["badge"], "amber");
        assert_eq!(rows[0]["timeout_sec"], 1350);
        assert_eq!(rows[0]["remaining_sec"], 150.0);
        assert_eq!(rows[0]["entry_price"], "0.12018", "decimals stay strings");
        assert_eq!(rows[0]["entry_volume"], "16.64170411");
        assert!(rows[1]["remaining_sec"].is_null());
        assert_eq!(v["rangers"]["profit_today"], "0.042181997002326");
        assert_eq!(v["rangers"]["cycles_total"], 7);
        assert_eq!(v["rangers"]["exit_margin_pct"], "1.2");
        assert_eq!(v["rangers"]["timing"]["exit_timeout_sec"], 1350);
        assert_eq!(v["regime"]["per_timeframe"][1]["timeframe"], "15m");
        assert_eq!(v["regime"]["source"], "hmm");
        let st = &v["strategies"][0];
        assert_eq!(st["name"], herd_strategies::rangers::STRATEGY_NAME);
        assert!(st.get("detail_json").is_none());
        assert_eq!(st["detail"]["cycles_total"], 7);
    }

    #[tokio::test]
    async fn page_is_self_contained_and_passive() {
        let lower = PAGE.to_ascii_lowercase();
        for banned in [
            "<button",
            "<form",
            "<input",
            "<select",
            "<textarea",
            "http://",
            "https://",
            "src=\"//",
            "<iframe",
        ] {
            assert!(
                !lower.contains(banned),
                "the page must not contain {banned}"
            );
        }
        assert!(lower.contains("content-security-policy"));
        assert!(lower.contains("/api/status"));
        assert!(lower.contains("id=\"rangers\""));
        let r = page().await;
        assert_eq!(r.status(), StatusCode::OK);
        assert!(
            r.headers()[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
    }
}
