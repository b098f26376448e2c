//! Key safety and the venue clock.
//!
//! At start the gateway reads what its API key may do (Kraken
//! `GetApiKeyInfo`, Bybit `/v5/user/query-api`) and refuses to run with a key
//! that can withdraw (unless `key_check.allow_withdrawal_permission`), that is
//! read-only or that has expired ([`herd_venue::KeyInfo::assess`] holds the
//! rules). It reads it again every `key_check.interval_s` and warns on what
//! changed for the worse. It also measures the offset to the venue's clock
//! every `key_check.clock_interval_s`: a warning past `clock_warn_ms`, an
//! error near what breaks signing (Bybit's receive window; Kraken's nonce
//! window when the key has one).
//!
//! What was last seen is kept in [`KeyState`] for the admin RPC
//! (`GetKeyInfo`), `herdctl gateway key` and the metrics. The key itself is
//! never read or shown here: only its name and what it may do.

use std::sync::Mutex;
use std::time::Duration;

use anyhow::bail;
use herd_venue::{ClockReading, KeyInfo, KeyPolicy, Venue, VenueError};
use serde::Deserialize;

/// `[key_check]` in the gateway's configuration.
#[derive(Debug, Clone, PartialEq, serde::Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KeyCheckConfig {
    /// Run with a key that can withdraw funds (a warning at every check).
    pub allow_withdrawal_permission: bool,
    /// Seconds between reads of the key's permissions after the start.
    pub interval_s: u64,
    /// Warn when the key expires within this many days.
    pub expiry_warning_days: u32,
    /// Seconds between measurements of the venue clock's offset.
    pub clock_interval_s: u64,
    /// Warn when the venue's clock is further than this from ours, ms.
    pub clock_warn_ms: i64,
}

impl Default for KeyCheckConfig {
    fn default() -> KeyCheckConfig {
        KeyCheckConfig {
            allow_withdrawal_permission: false,
            interval_s: 4 * 3600,
            expiry_warning_days: 7,
            clock_interval_s: 60,
            clock_warn_ms: 1000,
        }
    }
}

impl KeyCheckConfig {
    pub fn policy(&self) -> KeyPolicy {
        KeyPolicy {
            allow_withdrawal_permission: self.allow_withdrawal_permission,
            expiry_warning_ms: i64::from(self.expiry_warning_days) * 24 * 3_600_000,
        }
    }
}

/// How far the venue's clock is from ours, and how that reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClockLevel {
    Ok,
    /// Past `clock_warn_ms`.
    Warning,
    /// Within a fifth of what breaks signing (or past it).
    Critical,
}

/// The clock offset's level for `warn_ms` and the venue's signing limit,
/// judged on the least the offset can be (`|offset| - uncertainty`): a
/// coarse venue clock never raises a false alarm.
pub fn clock_level(reading: ClockReading, warn_ms: i64, limit_ms: Option<i64>) -> ClockLevel {
    let off = (reading.offset_ms.abs() - reading.uncertainty_ms).max(0);
    if limit_ms.is_some_and(|l| off * 5 >= l * 4) {
        ClockLevel::Critical
    } else if off > warn_ms {
        ClockLevel::Warning
    } else {
        ClockLevel::Ok
    }
}

/// What the last checks saw.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeySnapshot {
    /// `None`: the venue has no key (paper) or it was never read.
    pub info: Option<KeyInfo>,
    pub warnings: Vec<String>,
    pub checked_at_ms: Option<i64>,
    pub clock_offset_ms: Option<i64>,
    pub clock_uncertainty_ms: Option<i64>,
    pub clock_limit_ms: Option<i64>,
    pub clock_checked_at_ms: Option<i64>,
}

/// Shared by the checker, the admin service and the metrics.
#[derive(Debug, Default)]
pub struct KeyState(
    Mutex<KeySnapshot>,
    std::sync::OnceLock<crate::events::Emitter>,
);

impl KeyState {
    pub fn snapshot(&self) -> KeySnapshot {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Key warnings and clock skew become herd events (set once at start).
    pub fn set_events(&self, events: crate::events::Emitter) {
        let _ = self.1.set(events);
    }

    fn events(&self) -> crate::events::Emitter {
        self.1.get().cloned().unwrap_or_default()
    }

    fn update(&self, f: impl FnOnce(&mut KeySnapshot)) {
        f(&mut self.0.lock().unwrap_or_else(|p| p.into_inner()));
    }
}

/// Reads the key once and applies the rules: an error (naming the
/// permission) when the gateway must not run. Transient venue errors are
/// retried a few times before they fail the start.
pub async fn check_at_start(
    venue: &dyn Venue,
    cfg: &KeyCheckConfig,
    state: &KeyState,
    now_ms: impl Fn() -> i64,
) -> anyhow::Result<()> {
    let mut last: Option<VenueError> = None;
    let mut info = None;
    for attempt in 0..4u32 {
        match venue.key_info().await {
            Ok(i) => {
                info = Some(i);
                break;
            }
            Err(e) if e.is_retryable() && attempt < 3 => {
                tracing::warn!(error = %e, attempt, "cannot read the API key's permissions yet; retrying");
                tokio::time::sleep(Duration::from_millis(500 << attempt)).await;
                last = Some(e);
            }
            Err(e) => {
                bail!("cannot read the API key's permissions from the venue: {e}")
            }
        }
    }
    let Some(info) = info else {
        bail!(
            "cannot read the API key's permissions from the venue: {}",
            last.map_or_else(|| "no answer".to_string(), |e| e.to_string())
        )
    };
    if let Some(refusal) = record(info, cfg, state, now_ms()) {
        bail!("{refusal}");
    }
    Ok(())
}

/// Applies the rules to `info`, logs the warnings and keeps what was seen;
/// returns the refusal, if any.
fn record(
    info: Option<KeyInfo>,
    cfg: &KeyCheckConfig,
    state: &KeyState,
    now_ms: i64,
) -> Option<String> {
    let verdict = info
        .as_ref()
        .map(|i| i.assess(now_ms, cfg.policy()))
        .unwrap_or_default();
    if let Some(i) = &info {
        tracing::info!(
            key = %i.name,
            permissions = ?i.permissions,
            ip_allowlist = ?i.ip_allowlist,
            expires_at_ms = ?i.expires_at_ms,
            "API key permissions read"
        );
    }
    for w in &verdict.warnings {
        tracing::warn!("{w}");
        crate::events::key_warning(&state.events(), w, verdict.refusal.as_deref());
    }
    if let Some(r) = &verdict.refusal {
        crate::events::key_warning(&state.events(), r, Some(r));
    }
    state.update(|s| {
        s.info = info;
        s.warnings = verdict.warnings.clone();
        if let Some(r) = &verdict.refusal {
            s.warnings.push(r.clone());
        }
        s.checked_at_ms = Some(now_ms);
    });
    verdict.refusal
}

/// Measures the clock offset once, logs it by level and keeps it.
pub async fn check_clock(venue: &dyn Venue, cfg: &KeyCheckConfig, state: &KeyState, now_ms: i64) {
    match venue.clock_offset_ms().await {
        Ok(None) => {}
        Ok(Some(reading)) => {
            let offset = reading.offset_ms;
            let limit = venue.clock_offset_limit_ms();
            let level = clock_level(reading, cfg.clock_warn_ms, limit);
            crate::events::clock_skew(&state.events(), level, reading, cfg.clock_warn_ms, limit);
            match level {
                ClockLevel::Ok => tracing::debug!(offset_ms = offset, "venue clock offset"),
                ClockLevel::Warning => tracing::warn!(
                    offset_ms = offset,
                    uncertainty_ms = reading.uncertainty_ms,
                    warn_ms = cfg.clock_warn_ms,
                    "the venue's clock is off from ours by more than key_check.clock_warn_ms: \
                     check this machine's time sync"
                ),
                ClockLevel::Critical => tracing::error!(
                    offset_ms = offset,
                    limit_ms = ?limit,
                    "the venue's clock is off from ours by nearly what breaks signed calls: \
                     fix this machine's time sync now"
                ),
            }
            state.update(|s| {
                s.clock_offset_ms = Some(offset);
                s.clock_uncertainty_ms = Some(reading.uncertainty_ms);
                s.clock_limit_ms = limit;
                s.clock_checked_at_ms = Some(now_ms);
            });
        }
        Err(e) => tracing::warn!(error = %e, "cannot measure the venue clock's offset"),
    }
}

/// The periodic checks after the start (runs until aborted).
pub async fn run(
    venue: std::sync::Arc<dyn Venue>,
    cfg: KeyCheckConfig,
    state: std::sync::Arc<KeyState>,
    clock: std::sync::Arc<dyn herd_venue::Clock>,
) {
    let mut key_tick = tokio::time::interval(Duration::from_secs(cfg.interval_s.max(60)));
    let mut clock_tick = tokio::time::interval(Duration::from_secs(cfg.clock_interval_s.max(1)));
    key_tick.tick().await; // the start already read it
    loop {
        tokio::select! {
            _ = key_tick.tick() => match venue.key_info().await {
                Ok(info) => {
                    if let Some(refusal) = record(info, &cfg, &state, clock.now_ms()) {
                        tracing::error!("{refusal}");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot read the API key's permissions"),
            },
            _ = clock_tick.tick() => check_clock(venue.as_ref(), &cfg, &state, clock.now_ms()).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(offset_ms: i64, uncertainty_ms: i64) -> ClockReading {
        ClockReading {
            offset_ms,
            uncertainty_ms,
        }
    }

    #[test]
    fn clock_levels() {
        assert_eq!(clock_level(at(200, 0), 1000, Some(5000)), ClockLevel::Ok);
        assert_eq!(
            clock_level(at(-2000, 0), 1000, Some(5000)),
            ClockLevel::Warning
        );
        assert_eq!(
            clock_level(at(4000, 0), 1000, Some(5000)),
            ClockLevel::Critical
        );
        assert_eq!(
            clock_level(at(-4500, 0), 1000, Some(5000)),
            ClockLevel::Critical
        );
        assert_eq!(clock_level(at(4000, 0), 1000, None), ClockLevel::Warning);
        // Kraken's whole seconds: 1.2 s measured, maybe 0.6 s: no alarm.
        assert_eq!(clock_level(at(1224, 600), 1000, None), ClockLevel::Ok);
        assert_eq!(clock_level(at(3100, 600), 1000, None), ClockLevel::Warning);
    }
}
