//! The herd's events (`herd.gateway.v1.HerdEvent`, docs/events.md): the
//! kinds, severities by name, a builder, the filter the feed and the sinks
//! share, and the one JSON shape (herdctl `--output json`, webhook bodies).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::gateway::{EventValue, HerdEvent, Severity, event_value};

/// Event kinds. Gateway-produced first, then what engines publish.
pub mod kind {
    pub const FILL: &str = "fill";
    pub const ORDER_REJECTED: &str = "order_rejected";
    pub const RISK_DENIAL: &str = "risk_denial";
    pub const RISK_STATE: &str = "risk_state";
    pub const RISK_LIMITS: &str = "risk_limits";
    pub const RISK_KILL: &str = "risk_kill";
    pub const RATE_LIMITED: &str = "rate_limited";
    pub const BUDGET_HIGH: &str = "budget_high";
    pub const LOCKOUT: &str = "lockout";
    pub const VENUE_AUTH_ERROR: &str = "venue_auth_error";
    pub const AUTH_ERROR: &str = "auth_error";
    pub const CLOCK_SKEW: &str = "clock_skew";
    pub const KEY_WARNING: &str = "key_warning";
    pub const ENGINE_CONNECTED: &str = "engine_connected";
    pub const ENGINE_GONE: &str = "engine_gone";
    pub const DEAD_MAN_FIRED: &str = "dead_man_fired";
    pub const DMS_REFRESH_FAILED: &str = "dms_refresh_failed";
    pub const GATEWAY_STARTED: &str = "gateway_started";
    pub const GATEWAY_STOPPED: &str = "gateway_stopped";
    /// A configuration reload (gateway or engine: SIGHUP, the ReloadConfig
    /// RPC or a change of the file) that found changes; `live_changed`,
    /// `restart_pending`, `paths`.
    pub const CONFIG_RELOADED: &str = "config_reloaded";
    /// A reload refused because the new file is invalid (nothing changed).
    pub const CONFIG_RELOAD_FAILED: &str = "config_reload_failed";

    pub const ENGINE_STARTED: &str = "engine_started";
    pub const ENGINE_STOPPED: &str = "engine_stopped";
    pub const GRID_CYCLE_CLOSED: &str = "grid_cycle_closed";
    pub const RANGER_CYCLE_COMPLETED: &str = "ranger_cycle_completed";
    pub const RANGER_CYCLE_ORPHANED: &str = "ranger_cycle_orphaned";
    pub const CHURNER_SPAWNED: &str = "churner_spawned";
    pub const CHURNER_KILLED: &str = "churner_killed";
    pub const FUNDING_OPENED: &str = "funding_opened";
    pub const FUNDING_CLOSED: &str = "funding_closed";
    pub const FUNDING_SETTLEMENT: &str = "funding_settlement";
    pub const EMERGENCY_STOP: &str = "emergency_stop";
    pub const EMERGENCY_CLEARED: &str = "emergency_cleared";
    pub const REGIME_CHANGE: &str = "regime_change";
    pub const UNKNOWN_OUTCOME_RESOLVED: &str = "unknown_outcome_resolved";
}

/// The source name of events the gateway produces.
pub const GATEWAY_SOURCE: &str = "gateway";

/// `info`, `notice`, `warning`, `critical` (`unspecified` otherwise).
pub fn severity_name(s: i32) -> &'static str {
    match Severity::try_from(s) {
        Ok(Severity::Info) => "info",
        Ok(Severity::Notice) => "notice",
        Ok(Severity::Warning) => "warning",
        Ok(Severity::Critical) => "critical",
        _ => "unspecified",
    }
}

/// The severity named `name` (as [`severity_name`] spells it).
pub fn parse_severity(name: &str) -> Option<Severity> {
    match name.to_ascii_lowercase().as_str() {
        "info" => Some(Severity::Info),
        "notice" => Some(Severity::Notice),
        "warning" | "warn" => Some(Severity::Warning),
        "critical" | "crit" => Some(Severity::Critical),
        _ => None,
    }
}

/// A new event: id, time, source, kind, severity and message; the rest
/// through the `with_*` methods.
pub fn event(
    id: impl Into<String>,
    time_ms: i64,
    source: &str,
    kind: &str,
    severity: Severity,
    message: impl Into<String>,
) -> HerdEvent {
    HerdEvent {
        id: id.into(),
        time_ms,
        source: source.to_string(),
        kind: kind.to_string(),
        severity: severity as i32,
        message: message.into(),
        ..HerdEvent::default()
    }
}

/// Builder methods on [`HerdEvent`].
pub trait EventExt: Sized {
    fn with_engine(self, engine: &str) -> Self;
    fn with_instrument(self, instrument: &str) -> Self;
    fn with_order(self, client_order_id: &str) -> Self;
    fn text(self, key: &str, v: impl Into<String>) -> Self;
    /// A decimal, kept as its exact string.
    fn decimal(self, key: &str, v: impl ToString) -> Self;
    fn integer(self, key: &str, v: i64) -> Self;
    fn flag(self, key: &str, v: bool) -> Self;
}

fn put(mut e: HerdEvent, key: &str, v: event_value::Value) -> HerdEvent {
    e.fields
        .insert(key.to_string(), EventValue { value: Some(v) });
    e
}

impl EventExt for HerdEvent {
    fn with_engine(mut self, engine: &str) -> Self {
        self.engine = engine.to_string();
        self
    }
    fn with_instrument(mut self, instrument: &str) -> Self {
        self.instrument = instrument.to_string();
        self
    }
    fn with_order(mut self, client_order_id: &str) -> Self {
        self.order_ids.push(client_order_id.to_string());
        self
    }
    fn text(self, key: &str, v: impl Into<String>) -> Self {
        put(self, key, event_value::Value::Text(v.into()))
    }
    fn decimal(self, key: &str, v: impl ToString) -> Self {
        put(self, key, event_value::Value::Decimal(v.to_string()))
    }
    fn integer(self, key: &str, v: i64) -> Self {
        put(self, key, event_value::Value::Integer(v))
    }
    fn flag(self, key: &str, v: bool) -> Self {
        put(self, key, event_value::Value::Flag(v))
    }
}

/// Which events a reader or a sink wants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// At least this severe (Unspecified = all).
    pub min_severity: i32,
    /// Concerning these engines (empty = all).
    pub engines: Vec<String>,
    /// These kinds (empty = all); a trailing `*` matches a prefix.
    pub kinds: Vec<String>,
}

impl Filter {
    pub fn matches(&self, e: &HerdEvent) -> bool {
        e.severity >= self.min_severity
            && (self.engines.is_empty() || self.engines.contains(&e.engine))
            && (self.kinds.is_empty() || self.kinds.iter().any(|k| kind_matches(k, &e.kind)))
    }
}

fn kind_matches(pattern: &str, kind: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => kind.starts_with(prefix),
        None => pattern == kind,
    }
}

/// The one JSON shape of an event: proto field names, severity by name,
/// fields as JSON values (decimals stay strings, so no precision is lost).
pub fn to_json(e: &HerdEvent) -> Value {
    let fields: BTreeMap<&str, Value> = e
        .fields
        .iter()
        .map(|(k, v)| {
            let v = match &v.value {
                Some(event_value::Value::Text(t) | event_value::Value::Decimal(t)) => {
                    Value::String(t.clone())
                }
                Some(event_value::Value::Integer(i)) => json!(i),
                Some(event_value::Value::Flag(b)) => json!(b),
                None => Value::Null,
            };
            (k.as_str(), v)
        })
        .collect();
    json!({
        "id": e.id,
        "sequence": e.sequence,
        "time_ms": e.time_ms,
        "time": herd_types::calendar::utc_string(e.time_ms),
        "source": e.source,
        "kind": e.kind,
        "severity": severity_name(e.severity),
        "engine": e.engine,
        "instrument": e.instrument,
        "order_ids": e.order_ids,
        "message": e.message,
        "fields": fields,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_table() {
        let e = event("x", 0, "gateway", "risk_denial", Severity::Warning, "m").with_engine("e0");
        let cases = [
            (Filter::default(), true),
            (
                Filter {
                    min_severity: Severity::Critical as i32,
                    ..Filter::default()
                },
                false,
            ),
            (
                Filter {
                    engines: vec!["e1".into()],
                    ..Filter::default()
                },
                false,
            ),
            (
                Filter {
                    kinds: vec!["risk_*".into()],
                    engines: vec!["e0".into()],
                    min_severity: Severity::Warning as i32,
                },
                true,
            ),
            (
                Filter {
                    kinds: vec!["fill".into()],
                    ..Filter::default()
                },
                false,
            ),
        ];
        for (f, want) in cases {
            assert_eq!(f.matches(&e), want, "{f:?}");
        }
    }

    #[test]
    fn json_keeps_decimals_exact_and_names_severity() {
        let e = event(
            "id1",
            1_700_000_000_123,
            "gateway",
            "fill",
            Severity::Notice,
            "m",
        )
        .decimal("price", "50000.10")
        .integer("n", 3)
        .flag("complete", true);
        let j = to_json(&e);
        assert_eq!(j["severity"], "notice");
        assert_eq!(j["fields"]["price"], "50000.10");
        assert_eq!(j["fields"]["n"], 3);
        assert_eq!(j["fields"]["complete"], true);
        assert_eq!(j["time"], "2023-11-14T22:13:20Z");
    }
}
