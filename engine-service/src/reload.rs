//! Configuration reload of an engine (docs/config.md): SIGHUP, the
//! `ReloadConfig` RPC (`herdctl config reload engine`) and a change of the
//! config file's content all run [`Reloader::reload`].
//!
//! The new file is loaded and validated whole by the same
//! [`EngineConfig::load`] as at start; an invalid file changes nothing and
//! the error names the file, field and problem. Every difference with the
//! running configuration is classified by [`RULES`]: strategy parameters go
//! to each strategy's [`Strategy::reconfigure`](herd_strategies::strategy::Strategy::reconfigure)
//! under the strategies' lock, between two decisions (orders, positions and
//! ledgers stay; the next decision uses the new values), funding risk
//! limits through the same path as `SetFundingRiskLimits`, the log filter at
//! once; restart-only changes are reported and left as they run. Each
//! reload that finds a change is logged with its diff (secrets REDACTED)
//! and recorded as a `config_reloaded` herd event.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use herd_proto::engine as pb;
use herd_proto::events::{EventExt, kind};
use herd_proto::gateway::Severity;
use herd_proto::reload::{self, Change, Class, Rule, Trigger};
use herd_strategies::strategy::Params;
use serde_json::Value;

use crate::config::EngineConfig;
use crate::execution::Shared;

/// Every field of the engine's config, live or restart-only (see
/// [`reload::classify`]). The strategies' fields are listed one by one (a
/// new one fails `tests::every_field_is_classified` until it is
/// classified); `grid.slot` and `grid.heal` are knobs read at each decision
/// and live as a whole.
pub const RULES: &[Rule] = &[
    ("id", Class::Restart),
    ("listen", Class::Restart),
    ("http_listen", Class::Restart),
    ("gateway_url", Class::Restart),
    ("gateway_token", Class::Restart),
    ("control_token", Class::Restart),
    ("data_dir", Class::Restart),
    ("database_url", Class::Restart),
    ("symbol", Class::Restart),
    ("tick_ms", Class::Restart),
    ("max_consecutive_errors", Class::Restart),
    ("balance_refresh_ms", Class::Restart),
    ("regime_refresh_ms", Class::Restart),
    ("regime_source", Class::Restart),
    ("fixed_regime", Class::Restart),
    ("rangers.enabled", Class::Live),
    ("rangers.max_slots", Class::Restart),
    ("rangers.order_size_usd", Class::Live),
    ("rangers.entry_pct", Class::Live),
    ("rangers.profit_pct", Class::Live),
    ("rangers.entry_timeout_sec", Class::Live),
    ("rangers.exit_timeout_sec", Class::Live),
    ("rangers.cooldown_sec", Class::Live),
    ("rangers.min_headroom", Class::Live),
    ("rangers.doge_reserve", Class::Live),
    ("rangers.userref_offset", Class::Restart),
    ("grid.enabled", Class::Live),
    ("grid.slots", Class::Restart),
    ("grid.sticky", Class::Restart),
    ("grid.mode", Class::Live),
    ("grid.mode_from_regime", Class::Live),
    ("grid.daily_loss_limit_usd", Class::Live),
    ("grid.userref_offset", Class::Restart),
    ("grid.recent_cycles", Class::Live),
    ("grid.volatility_profit_factor", Class::Live),
    ("grid.volatility_window_sec", Class::Live),
    ("grid.slot", Class::Live),
    ("grid.heal", Class::Live),
    ("grid.churner.enabled", Class::Live),
    ("grid.churner.max_active", Class::Live),
    ("grid.churner.entry_pct", Class::Live),
    ("grid.churner.profit_over_fees_pct", Class::Live),
    ("grid.churner.order_size_usd", Class::Live),
    ("grid.churner.entry_timeout_sec", Class::Live),
    ("grid.churner.exit_timeout_sec", Class::Live),
    ("grid.churner.min_headroom", Class::Live),
    ("grid.churner.reserve_usd", Class::Live),
    ("grid.churner.userref_offset", Class::Restart),
    // The orchestrator is built at start from `[funding]`; its risk limits
    // change at runtime (as SetFundingRiskLimits does).
    ("funding", Class::Restart),
    ("funding.max_position_usd", Class::Live),
    ("funding.max_positions", Class::Live),
    ("funding.max_total_exposure_usd", Class::Live),
    ("funding.min_rate", Class::Live),
    ("funding.exit_rate", Class::Live),
    ("funding.margin_alert", Class::Live),
    ("funding.margin_critical", Class::Live),
    ("drain_delay_ms", Class::Restart),
    ("shutdown_timeout_ms", Class::Restart),
    ("reconcile", Class::Restart),
    ("herd_dashboard_url", Class::Restart),
    ("log_level", Class::Live),
    ("config_poll_ms", Class::Restart),
];

/// The running configuration after a reload that brought `new`: `old` with
/// every live field taken from `new` (and nothing else).
pub fn merge(old: &EngineConfig, new: &EngineConfig) -> EngineConfig {
    let mut m = old.clone();
    m.rangers = new.rangers.clone();
    m.rangers.max_slots = old.rangers.max_slots;
    m.rangers.userref_offset = old.rangers.userref_offset;
    m.grid = new.grid.clone();
    m.grid.slots = old.grid.slots;
    m.grid.sticky = old.grid.sticky.clone();
    m.grid.userref_offset = old.grid.userref_offset;
    m.grid.churner.userref_offset = old.grid.churner.userref_offset;
    let (f, n) = (&mut m.funding, &new.funding);
    f.max_position_usd = n.max_position_usd;
    f.max_positions = n.max_positions;
    f.max_total_exposure_usd = n.max_total_exposure_usd;
    f.min_rate = n.min_rate;
    f.exit_rate = n.exit_rate;
    f.margin_alert = n.margin_alert;
    f.margin_critical = n.margin_critical;
    m.log_level = new.log_level.clone();
    m
}

fn json(cfg: &EngineConfig) -> Value {
    serde_json::to_value(cfg).unwrap_or(Value::Null)
}

/// Where the config comes from and how the command line changed it.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub path: Option<PathBuf>,
    /// `--listen` on the command line (applied to every reload as at start).
    pub listen: Option<SocketAddr>,
}

struct Running {
    cfg: EngineConfig,
    loaded_at_ms: i64,
}

/// The running configuration and how to reload it.
pub struct Reloader {
    origin: Origin,
    running: tokio::sync::Mutex<Running>,
}

/// A reload's answer.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub changes: Vec<Change>,
    pub message: String,
}

impl Reloader {
    pub fn new(origin: Origin, running: EngineConfig, now_ms: i64) -> Reloader {
        Reloader {
            origin,
            running: tokio::sync::Mutex::new(Running {
                cfg: running,
                loaded_at_ms: now_ms,
            }),
        }
    }

    pub fn file(&self) -> String {
        self.origin
            .path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    }

    fn load(
        &self,
        overrides: impl Fn(&str) -> Option<String>,
    ) -> Result<EngineConfig, herd_proto::config::ConfigError> {
        let mut cfg = EngineConfig::load_with(self.origin.path.as_deref(), overrides)?;
        if let Some(l) = self.origin.listen {
            cfg.listen = l;
        }
        Ok(cfg)
    }

    /// Reloads the file. Err: the new configuration is invalid (the message
    /// names file, field and problem) and nothing changed.
    pub async fn reload(&self, shared: &Shared, trigger: Trigger) -> Result<Outcome, String> {
        let mut running = self.running.lock().await;
        let new = match self.load(|k| std::env::var(k).ok()) {
            Ok(c) => c,
            Err(e) => {
                let error = e.to_string();
                tracing::warn!(trigger = trigger.as_str(), %error,
                    "configuration reload refused; nothing changed");
                let t = trigger.as_str();
                crate::events::record_with(
                    &shared.store,
                    crate::clock::now_ms(),
                    kind::CONFIG_RELOAD_FAILED,
                    Severity::Warning,
                    format!("configuration reload refused: {error}"),
                    |ev| ev.text("trigger", t).text("error", error.clone()),
                )
                .await;
                return Err(error);
            }
        };
        let old = running.cfg.clone();
        let mut changes = reload::classify_all(&reload::diff(&json(&old), &json(&new)), RULES);
        if changes.is_empty() {
            tracing::info!(
                trigger = trigger.as_str(),
                "configuration reloaded: no changes"
            );
            return Ok(Outcome {
                changes,
                message: reload::summary(&[]),
            });
        }
        let merged = merge(&old, &new);
        let failed = apply(shared, &old, &merged).await;
        for c in &mut changes {
            c.applied = c.class == Class::Live
                && !failed
                    .iter()
                    .any(|f| c.path == *f || c.path.starts_with(&format!("{f}.")));
        }
        running.cfg = merged;
        running.loaded_at_ms = crate::clock::now_ms();
        drop(running);
        report(shared, trigger, &changes).await;
        Ok(Outcome {
            message: reload::summary(&changes),
            changes,
        })
    }

    /// `herdctl config show engine`: the running configuration, each field
    /// with its source and class, and what waits for a restart.
    pub async fn show(&self) -> pb::GetConfigResponse {
        let running = self.running.lock().await;
        let (fields, pending_restart) =
            reload::show(&running.cfg, self.origin.path.as_deref(), RULES, |env| {
                self.load(env)
            });
        pb::GetConfigResponse {
            file: self.file(),
            fields: fields
                .into_iter()
                .map(|f| pb::ConfigField {
                    path: f.path,
                    value: f.value,
                    source: f.source.as_str().into(),
                    live: f.live,
                })
                .collect(),
            pending_restart: pending_restart.iter().map(change_pb).collect(),
            loaded_at_ms: running.loaded_at_ms,
        }
    }
}

pub fn change_pb(c: &Change) -> pb::ConfigChange {
    pb::ConfigChange {
        path: c.path.clone(),
        before: c.before.clone(),
        after: c.after.clone(),
        live: c.class == Class::Live,
        applied: c.applied,
    }
}

/// Applies the live fields that differ between `old` and `merged`; the
/// paths that could not be applied come back.
async fn apply(shared: &Shared, old: &EngineConfig, merged: &EngineConfig) -> Vec<String> {
    let mut failed = Vec::new();
    if old.rangers != merged.rangers || old.grid != merged.grid {
        let now = crate::clock::now_ms();
        let params = Params {
            rangers: &merged.rangers,
            grid: &merged.grid,
        };
        // Under the strategies' lock: between two decisions, never in one.
        let batches: Vec<(String, Vec<herd_strategies::strategy::Action>)> = {
            let mut strategies = shared.strategies.lock().await;
            strategies
                .iter_mut()
                .map(|s| (s.name().to_string(), s.reconfigure(&params, now)))
                .collect()
        };
        for (owner, actions) in batches {
            if !actions.is_empty() {
                shared.execute(&owner, actions).await;
            }
        }
    }
    if old.funding.limits() != merged.funding.limits()
        && let Some(f) = shared.funding.get()
        && let Err((field, e)) = f.set_limits(merged.funding.limits())
    {
        tracing::error!(field, error = %e, "reloaded funding limits not applied");
        failed.push("funding".into());
    }
    if old.log_level != merged.log_level
        && let Err(e) = herd_proto::serving::set_log_level(&merged.log_level)
    {
        tracing::error!(error = %e, "log_level not applied");
        failed.push("log_level".into());
    }
    failed
}

/// The log line and the herd event of a reload that found changes.
async fn report(shared: &Shared, trigger: Trigger, changes: &[Change]) {
    let diff = reload::describe(changes);
    let applied: Vec<String> = changes
        .iter()
        .filter(|c| c.applied)
        .map(|c| c.path.clone())
        .collect();
    let pending: Vec<String> = changes
        .iter()
        .filter(|c| c.class == Class::Restart)
        .map(|c| c.path.clone())
        .collect();
    if pending.is_empty() {
        tracing::info!(trigger = trigger.as_str(), changes = %diff, "configuration reloaded");
    } else {
        tracing::warn!(trigger = trigger.as_str(), changes = %diff,
            restart_pending = ?pending,
            "configuration reloaded; restart-only changes are not applied until a restart");
    }
    let severity = if pending.is_empty() {
        Severity::Notice
    } else {
        Severity::Warning
    };
    let t = trigger.as_str();
    crate::events::record_with(
        &shared.store,
        crate::clock::now_ms(),
        kind::CONFIG_RELOADED,
        severity,
        format!("configuration reloaded: {}", reload::summary(changes)),
        |ev| {
            ev.text("trigger", t)
                .text("applied", applied.join(","))
                .text("restart_pending", pending.join(","))
        },
    )
    .await;
}

/// Reloads on every SIGHUP and change of the file until the process ends.
pub async fn run(
    shared: Arc<Shared>,
    reloader: Arc<Reloader>,
    path: Option<PathBuf>,
    poll_ms: u64,
) {
    let mut triggers = reload::spawn_triggers(path, poll_ms);
    while let Some(t) = triggers.recv().await {
        // The outcome is logged and recorded as an event by `reload`.
        let _ = reloader.reload(&shared, t).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rich() -> EngineConfig {
        let text = r#"
            http_listen = "127.0.0.1:9200"
            gateway_token = "gateway-token"
            control_token = "control-token"
            database_url = "postgres://u:p@h/db"
            log_level = "info"
            [grid]
            sticky = [1]
            [funding]
            symbols = ["BTCUSDT-PERP"]
        "#;
        toml::from_str(text).unwrap()
    }

    /// Fails when a config field is added without a rule in [`RULES`]; the
    /// strategies' sections must be classified field by field.
    #[test]
    fn every_field_is_classified() {
        for cfg in [EngineConfig::default(), rich()] {
            let leaves = reload::flatten(&json(&cfg));
            assert!(leaves.len() > 60, "{}", leaves.len());
            for path in leaves.keys() {
                let rule = reload::covering_rule(path, RULES);
                assert!(
                    rule.is_some(),
                    "config field {path} has no live/restart-only rule in reload::RULES"
                );
                if (path.starts_with("rangers.") || path.starts_with("grid."))
                    && !path.starts_with("grid.slot.")
                    && !path.starts_with("grid.heal.")
                {
                    assert_eq!(rule, Some(path.as_str()), "{path} needs a rule of its own");
                }
            }
        }
    }

    /// After a reload, what still differs from the file is exactly the
    /// restart-only changes: `merge` takes every live field and no other.
    #[test]
    fn merge_applies_exactly_the_live_fields() {
        use rust_decimal::Decimal;
        let old = rich();
        let mut new = rich();
        new.listen = "127.0.0.1:7777".parse().unwrap();
        new.database_url = herd_proto::Secret::new("postgres://other");
        new.rangers.order_size_usd = Decimal::from(7);
        new.rangers.max_slots = 9;
        new.grid.slot.order_size_usd = Decimal::from(9);
        new.grid.daily_loss_limit_usd = Decimal::from(11);
        new.grid.slots = 7;
        new.grid.churner.max_active = 2;
        new.grid.churner.userref_offset = 400;
        new.funding.max_positions = 1;
        new.funding.cycle_interval_ms = 5;
        new.log_level = "debug".into();
        let changes = reload::classify_all(&reload::diff(&json(&old), &json(&new)), RULES);
        let class = |p: &str| changes.iter().find(|c| c.path == p).map(|c| c.class);
        assert_eq!(class("grid.slot.order_size_usd"), Some(Class::Live));
        assert_eq!(class("grid.slots"), Some(Class::Restart));
        assert_eq!(class("funding.max_positions"), Some(Class::Live));
        assert_eq!(class("funding.cycle_interval_ms"), Some(Class::Restart));
        assert_eq!(class("database_url"), Some(Class::Restart));
        let restart: Vec<String> = changes
            .iter()
            .filter(|c| c.class == Class::Restart)
            .map(|c| c.path.clone())
            .collect();
        let left: Vec<String> = reload::diff(&json(&merge(&old, &new)), &json(&new))
            .into_iter()
            .map(|d| d.path)
            .collect();
        assert_eq!(left, restart);
        let db = changes.iter().find(|c| c.path == "database_url").unwrap();
        assert_eq!(db.after, "\"REDACTED\"");
        assert!(!reload::describe(&changes).contains("postgres"));
    }
}
