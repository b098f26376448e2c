//! The engine's own herd events (docs/events.md): strategy cycles, churner,
//! funding, emergency stop, regime, start and stop.
//!
//! Every event is written to the store's `event_outbox` first (journal
//! entries and funding bookings in the same transaction as the row they
//! describe), then [`run_publisher`] sends the outbox to the gateway's
//! `PublishHerdEvents` and deletes what the gateway acknowledged. A gateway
//! that cannot be reached only delays delivery: the outbox survives
//! restarts, and the gateway drops an id it already logged, so a resend
//! after a lost answer lands once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use herd_proto::events::{EventExt, event, kind};
use herd_proto::gateway::{HerdEvent, PublishHerdEventsRequest, Severity};
use rust_decimal::Decimal;
use tokio::sync::Notify;

use crate::execution::Gateway;
use crate::store::Store;

/// At most this many events a PublishHerdEvents call.
const BATCH: u32 = 200;

/// Ids and the wake-up of the publisher; shared by every clone of a store.
#[derive(Debug, Default)]
pub struct EventIds {
    engine: std::sync::OnceLock<(String, i64)>,
    counter: AtomicU64,
    /// Woken when an event was written.
    pub wake: Notify,
    /// The newest events made, newest last (GetStatus, the dashboard).
    recent: std::sync::Mutex<std::collections::VecDeque<HerdEvent>>,
}

/// How many of its newest events an engine keeps to show.
pub const RECENT_EVENTS: usize = 50;

impl EventIds {
    /// Names the engine; events are recorded only once it is named (the
    /// store of a tool or test that never names it records none).
    pub fn set_engine(&self, engine: &str, run_ms: i64) {
        let _ = self.engine.set((engine.to_string(), run_ms));
    }

    /// A new event (id unique across runs: engine, run start, counter).
    pub fn make(
        &self,
        time_ms: i64,
        kind: &str,
        severity: Severity,
        message: impl Into<String>,
    ) -> Option<HerdEvent> {
        let (engine, run) = self.engine.get()?;
        let n = self.counter.fetch_add(1, Ordering::Relaxed) + 1;
        let e = event(
            format!("{engine}-{run}-{n}"),
            time_ms,
            engine,
            kind,
            severity,
            message,
        )
        .with_engine(engine);
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        recent.push_back(e.clone());
        while recent.len() > RECENT_EVENTS {
            recent.pop_front();
        }
        Some(e)
    }

    /// The newest events made, newest first.
    pub fn recent(&self) -> Vec<HerdEvent> {
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        recent.iter().rev().cloned().collect()
    }
}

/// The event a journal entry stands for, if any: grid and ranger cycles,
/// orphans and the funding emergency latch.
pub fn from_journal(
    ids: &EventIds,
    stream: &str,
    journal_kind: &str,
    payload: &str,
    time_ms: i64,
) -> Option<HerdEvent> {
    let json: serde_json::Value = serde_json::from_str(payload).unwrap_or_default();
    let s = |k: &str| match &json[k] {
        serde_json::Value::String(t) => t.clone(),
        serde_json::Value::Number(n) => n.to_string(),
        _ => String::new(),
    };
    let (k, sev, msg) = match (stream, journal_kind) {
        ("grid", "cycle") => (
            kind::GRID_CYCLE_CLOSED,
            Severity::Notice,
            format!(
                "grid slot {} cycle closed: {} @ {} -> {}, net {}",
                s("slot_id"),
                s("volume"),
                s("entry_price"),
                s("exit_price"),
                s("net")
            ),
        ),
        ("rangers", "cycle") => (
            kind::RANGER_CYCLE_COMPLETED,
            Severity::Notice,
            format!(
                "ranger {} cycle completed: {} @ {} -> {}, net {} USD",
                s("ranger_id"),
                s("volume"),
                s("entry_price"),
                s("exit_price"),
                s("net_usd")
            ),
        ),
        ("rangers", "orphan") => (
            kind::RANGER_CYCLE_ORPHANED,
            Severity::Warning,
            format!(
                "ranger {} orphaned {} ({}): exposure {} USD",
                s("ranger_id"),
                s("orphan_volume"),
                s("reason"),
                s("exposure_usd")
            ),
        ),
        (crate::funding::orchestrator::EMERGENCY_STREAM, "cleared") => (
            kind::EMERGENCY_CLEARED,
            Severity::Notice,
            format!("funding emergency stop cleared: {}", s("reason")),
        ),
        (crate::funding::orchestrator::EMERGENCY_STREAM, k) if k != "done" => (
            kind::EMERGENCY_STOP,
            Severity::Critical,
            format!("funding emergency stop ({k}): {}", s("reason")),
        ),
        _ => return None,
    };
    let mut e = ids.make(time_ms, k, sev, msg)?;
    // The payload's scalars become typed fields: decimal strings stay
    // decimals, numbers integers, the rest text.
    if let serde_json::Value::Object(map) = &json {
        for (key, v) in map {
            e = match v {
                serde_json::Value::String(t) if t.parse::<Decimal>().is_ok() => e.decimal(key, t),
                serde_json::Value::String(t) => e.text(key, t.clone()),
                serde_json::Value::Number(n) => match n.as_i64() {
                    Some(i) => e.integer(key, i),
                    None => e.text(key, n.to_string()),
                },
                serde_json::Value::Bool(b) => e.flag(key, *b),
                _ => e,
            };
            if let serde_json::Value::String(t) = v
                && (key.ends_with("_order") || key == "exit_order_id")
            {
                e = e.with_order(t);
            }
        }
    }
    Some(e)
}

/// `funding_opened` when a position becomes open, `funding_closed` when it
/// closes or fails (the store calls this inside the upsert's transaction).
pub fn funding_position(
    ids: &EventIds,
    before: Option<&str>,
    p: &crate::store::FundingPositionRow,
) -> Option<HerdEvent> {
    if before == Some(p.state.as_str()) {
        return None;
    }
    let (k, sev, msg) = match p.state.as_str() {
        "open" => (
            kind::FUNDING_OPENED,
            Severity::Notice,
            format!("funding position {} on {} opened", p.id, p.symbol),
        ),
        "closed" => (
            kind::FUNDING_CLOSED,
            Severity::Notice,
            format!("funding position {} on {} closed", p.id, p.symbol),
        ),
        "failed" => (
            kind::FUNDING_CLOSED,
            Severity::Warning,
            format!("funding position {} on {} failed", p.id, p.symbol),
        ),
        _ => return None,
    };
    Some(
        ids.make(p.updated_at_ms, k, sev, msg)?
            .with_instrument(&p.symbol)
            .text("position_id", &p.id)
            .text("state", &p.state)
            .text("before", before.unwrap_or("")),
    )
}

/// `funding_settlement` for a newly booked funding payment.
pub fn funding_settlement(
    ids: &EventIds,
    p: &crate::store::FundingPaymentRow,
) -> Option<HerdEvent> {
    Some(
        ids.make(
            p.time_ms,
            kind::FUNDING_SETTLEMENT,
            Severity::Info,
            format!(
                "funding {} on {}: {} (rate {}, size {})",
                if p.amount.is_sign_negative() {
                    "paid"
                } else {
                    "received"
                },
                p.symbol,
                p.amount,
                p.rate,
                p.size
            ),
        )?
        .with_instrument(&p.symbol)
        .text("position_id", &p.position_id)
        .text("payment_id", &p.payment_id)
        .decimal("amount", p.amount)
        .decimal("rate", p.rate)
        .decimal("mark", p.mark)
        .decimal("size", p.size),
    )
}

/// Sends the outbox to the gateway for as long as the engine runs: what is
/// there at start (events of earlier runs the gateway never acknowledged),
/// then whatever is written. Retries with a growing pause (0.5 s to 10 s)
/// while the gateway cannot be reached.
pub async fn run_publisher(store: Store, gateway: Gateway) {
    let mut backoff = Duration::from_millis(500);
    loop {
        match publish_once(&store, gateway.clone()).await {
            Ok(0) => {
                backoff = Duration::from_millis(500);
                // A permit stored by a write since the last look returns at
                // once; the timeout is a safety net.
                let _ =
                    tokio::time::timeout(Duration::from_secs(5), store.event_ids().wake.notified())
                        .await;
            }
            Ok(_) => backoff = Duration::from_millis(500),
            Err(e) => {
                tracing::debug!(error = %e, "herd events not delivered yet; retrying");
                // A retry pause, not a wait for something to happen.
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}

/// One batch: how many events the gateway acknowledged.
pub async fn publish_once(store: &Store, mut gateway: Gateway) -> anyhow::Result<usize> {
    let batch = store.outbox(BATCH).await?;
    let Some(last) = batch.last().map(|(seq, _)| *seq) else {
        return Ok(0);
    };
    let events: Vec<HerdEvent> = batch.into_iter().map(|(_, e)| e).collect();
    let n = events.len();
    match gateway
        .publish_herd_events(PublishHerdEventsRequest { events })
        .await
    {
        Ok(r) => {
            let r = r.into_inner();
            tracing::debug!(
                accepted = r.accepted,
                duplicates = r.duplicates,
                "herd events delivered"
            );
        }
        // The gateway will never take these (a bug, not an outage): logged
        // and dropped, so one bad event cannot hold back the rest forever.
        Err(s) if s.code() == tonic::Code::InvalidArgument => {
            tracing::error!(error = %s.message(), "the gateway refused herd events; dropped");
        }
        Err(s) => anyhow::bail!("PublishHerdEvents: {}", s.message()),
    }
    store.delete_outbox(last).await?;
    Ok(n)
}

/// Records an event the control server or a task produced (emergency
/// stop, churner, regime, start and stop); logged when the store fails.
pub async fn record(store: &Store, time_ms: i64, kind: &str, severity: Severity, msg: String) {
    record_with(store, time_ms, kind, severity, msg, |e| e).await;
}

/// [`record`] with fields added by `f`.
pub async fn record_with(
    store: &Store,
    time_ms: i64,
    kind: &str,
    severity: Severity,
    msg: String,
    f: impl FnOnce(HerdEvent) -> HerdEvent,
) {
    let Some(e) = store.event_ids().make(time_ms, kind, severity, msg) else {
        return;
    };
    if let Err(err) = store.record_herd_event(&f(e)).await {
        tracing::error!(error = %err, kind, "cannot record a herd event");
    }
}

/// Hex of bytes (outbox bodies are TEXT so SQLite and Postgres store them
/// alike).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Bytes of [`hex`]'s text.
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Shared by [`Store`] clones.
pub type SharedIds = Arc<EventIds>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips() {
        let b = vec![0u8, 1, 0xab, 0xff];
        assert_eq!(unhex(&hex(&b)), Some(b));
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
    }

    #[test]
    fn journal_entries_become_typed_events() {
        let ids = EventIds::default();
        assert!(
            from_journal(&ids, "rangers", "cycle", "{}", 1).is_none(),
            "an unnamed engine records nothing"
        );
        ids.set_engine("e0", 77);
        let payload = r#"{"ranger_id":2,"entry_order":"e0r-1","volume":"0.01","net_usd":"1.25","reason":"x"}"#;
        let e = from_journal(&ids, "rangers", "cycle", payload, 5).unwrap();
        assert_eq!(e.kind, kind::RANGER_CYCLE_COMPLETED);
        assert_eq!(e.id, "e0-77-1");
        assert_eq!(e.engine, "e0");
        assert_eq!(e.order_ids, ["e0r-1"]);
        let j = herd_proto::events::to_json(&e);
        assert_eq!(j["fields"]["net_usd"], "1.25");
        assert_eq!(j["fields"]["ranger_id"], 2);
        assert!(from_journal(&ids, "rangers", "other", payload, 5).is_none());
        let o = from_journal(&ids, "rangers", "orphan", payload, 5).unwrap();
        assert_eq!(o.severity, Severity::Warning as i32);
    }
}
