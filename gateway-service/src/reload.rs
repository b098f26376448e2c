//! Configuration reload (docs/config.md): SIGHUP, the admin `ReloadConfig`
//! RPC (`herdctl config reload gateway`) and a change of the config file's
//! content all run [`Reloader::reload`].
//!
//! The new file is loaded and validated whole by the same
//! [`GatewayConfig::load`] as at start; an invalid file changes nothing and
//! the error names the file, field and problem. Then every difference with
//! the running configuration is classified by [`RULES`]: live fields apply
//! at once (risk limits through the same path as `SetRiskLimits`, saved and
//! audited; fair-queue weights, slots and queue limit; notification sinks,
//! the changed ones restarted; the log filter), restart-only ones are
//! reported and left as they run. The live changes of a reload apply even
//! when the same reload holds restart-only ones. Each reload that finds a
//! change is logged with its diff (secrets REDACTED) and raised as a
//! `config_reloaded` event.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use herd_proto::events::{EventExt, kind};
use herd_proto::gateway::{self as pb, Severity};
use herd_proto::reload::{self, Change, Class, Rule, Trigger};
use serde_json::Value;

use crate::config::GatewayConfig;
use crate::risk::AuditEntry;
use crate::service::Core;

/// Every field of the gateway's config, live or restart-only (see
/// [`reload::classify`]: `*` is one segment, a rule covers the paths below
/// it, the longest wins). `tests::every_field_is_classified` fails when a
/// field is added without a rule; [`merge`] must apply exactly the live
/// ones (`tests::merge_applies_exactly_the_live_fields`).
pub const RULES: &[Rule] = &[
    ("listen", Class::Restart),
    ("http_listen", Class::Restart),
    ("venue", Class::Restart),
    ("admin_token", Class::Restart),
    // Adding or removing an engine, its token, prefix, userrefs and dead
    // man's switch: the registry, auth and recovery are built at start.
    ("engines", Class::Restart),
    ("engines.*", Class::Restart),
    ("engines.*.id", Class::Restart),
    ("engines.*.token", Class::Restart),
    ("engines.*.token_file", Class::Restart),
    ("engines.*.userref_min", Class::Restart),
    ("engines.*.userref_max", Class::Restart),
    ("engines.*.order_prefix", Class::Restart),
    ("engines.*.cancel_on_disconnect_ms", Class::Restart),
    ("engines.*.weight", Class::Live),
    ("poll_interval_ms", Class::Restart),
    ("event_retention", Class::Restart),
    ("pending_timeout_ms", Class::Restart),
    ("paper", Class::Restart),
    ("venue_slots", Class::Live),
    ("engine_queue_limit", Class::Live),
    ("poller_weight", Class::Live),
    ("bybit", Class::Restart),
    ("kraken", Class::Restart),
    ("dead_mans_switch", Class::Restart),
    ("key_check", Class::Restart),
    ("drain_delay_ms", Class::Restart),
    ("shutdown_timeout_ms", Class::Restart),
    ("risk", Class::Live),
    ("state_dir", Class::Restart),
    ("events", Class::Restart),
    ("events.max_count", Class::Restart),
    ("events.max_age_hours", Class::Restart),
    ("events.engine_gone_after_ms", Class::Restart),
    ("events.sinks", Class::Live),
    ("dashboard", Class::Restart),
    ("log_level", Class::Live),
    ("config_poll_ms", Class::Restart),
    ("lease", Class::Restart),
    ("record", Class::Restart),
];

/// The running configuration after a reload that brought `new`: `old` with
/// every live field taken from `new` (and nothing else).
pub fn merge(old: &GatewayConfig, new: &GatewayConfig) -> GatewayConfig {
    let mut m = old.clone();
    for e in &mut m.engines {
        if let Some(n) = new.engines.iter().find(|n| n.id == e.id) {
            e.weight = n.weight;
        }
    }
    m.venue_slots = new.venue_slots;
    m.engine_queue_limit = new.engine_queue_limit;
    m.poller_weight = new.poller_weight;
    m.risk = new.risk.clone();
    m.events.sinks = new.events.sinks.clone();
    m.log_level = new.log_level.clone();
    m
}

/// The fair queue's participants and weights for `cfg` (engines and the
/// poller: its weight, or half the engines' total when 0).
pub fn fair_weights(cfg: &GatewayConfig) -> Vec<(String, u32)> {
    let mut weights: Vec<(String, u32)> = cfg
        .engines
        .iter()
        .map(|e| (e.id.clone(), e.weight))
        .collect();
    let engine_weight: u32 = weights.iter().map(|(_, w)| *w).sum();
    let poller_weight = if cfg.poller_weight == 0 {
        (engine_weight / 2).max(1)
    } else {
        cfg.poller_weight
    };
    weights.push((crate::poller::POLLER.to_string(), poller_weight));
    weights
}

/// The config serialized for diffs (secrets as keyed hashes).
fn json(cfg: &GatewayConfig) -> Value {
    serde_json::to_value(cfg).unwrap_or(Value::Null)
}

/// Where the config comes from and how the command line changed it.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    /// The config file (None: defaults and environment only).
    pub path: Option<PathBuf>,
    /// `--listen` on the command line (applied to every reload as at start).
    pub listen: Option<SocketAddr>,
}

struct Running {
    cfg: GatewayConfig,
    loaded_at_ms: i64,
}

/// The running configuration and how to reload it.
pub struct Reloader {
    origin: Origin,
    running: tokio::sync::Mutex<Running>,
    sinks: Arc<crate::sinks::Supervisor>,
}

/// A reload's answer.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub changes: Vec<Change>,
    pub message: String,
}

impl Reloader {
    pub fn new(
        origin: Origin,
        running: GatewayConfig,
        sinks: Arc<crate::sinks::Supervisor>,
        now_ms: i64,
    ) -> Reloader {
        Reloader {
            origin,
            running: tokio::sync::Mutex::new(Running {
                cfg: running,
                loaded_at_ms: now_ms,
            }),
            sinks,
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
    ) -> Result<GatewayConfig, herd_proto::config::ConfigError> {
        let mut cfg = GatewayConfig::load_with(self.origin.path.as_deref(), overrides)?;
        if let Some(l) = self.origin.listen {
            cfg.listen = l;
        }
        Ok(cfg)
    }

    /// Reloads the file. Err: the new configuration is invalid (the message
    /// names file, field and problem) and nothing changed.
    pub async fn reload(&self, core: &Core, trigger: Trigger) -> Result<Outcome, String> {
        let mut running = self.running.lock().await;
        let new = match self.load(|k| std::env::var(k).ok()) {
            Ok(c) => c,
            Err(e) => {
                let error = e.to_string();
                tracing::warn!(trigger = trigger.as_str(), %error,
                    "configuration reload refused; nothing changed");
                core.events.emit(
                    core.events
                        .make(
                            kind::CONFIG_RELOAD_FAILED,
                            Severity::Warning,
                            format!("configuration reload refused: {error}"),
                        )
                        .text("trigger", trigger.as_str())
                        .text("error", error.clone()),
                );
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
        let failed = self.apply(core, &old, &new).await;
        for c in &mut changes {
            c.applied = c.class == Class::Live
                && !failed
                    .iter()
                    .any(|f| c.path == *f || c.path.starts_with(&format!("{f}.")));
        }
        running.cfg = merge(&old, &new);
        running.loaded_at_ms = core.clock.now_ms();
        drop(running);
        report(core, trigger, &changes);
        Ok(Outcome {
            message: reload::summary(&changes),
            changes,
        })
    }

    /// Applies the live fields that differ; the paths that could not be
    /// applied come back.
    async fn apply(&self, core: &Core, old: &GatewayConfig, new: &GatewayConfig) -> Vec<String> {
        let mut failed = Vec::new();
        if old.risk != new.risk {
            failed.extend(apply_risk(core, &old.risk, &new.risk).await);
        }
        let weights = fair_weights(new);
        if fair_weights(old) != weights
            || old.venue_slots != new.venue_slots
            || old.engine_queue_limit != new.engine_queue_limit
        {
            // Engines added by the new file are not in the queue's weights
            // until a restart (they are restart-only).
            let known: Vec<(String, u32)> = weights
                .into_iter()
                .filter(|(id, _)| {
                    id == crate::poller::POLLER || old.engines.iter().any(|e| &e.id == id)
                })
                .collect();
            core.fair
                .reconfigure(new.venue_slots, new.engine_queue_limit, &known);
        }
        let (old_sinks, new_sinks) = (
            serde_json::to_value(&old.events.sinks).unwrap_or_default(),
            serde_json::to_value(&new.events.sinks).unwrap_or_default(),
        );
        if old_sinks != new_sinks {
            let (_, old_stats) = core.sinks_now();
            let stats = crate::sinks::stats_for(&new.events.sinks, Some(&old_stats));
            let done = self.sinks.apply(&new.events.sinks, &stats);
            tracing::info!(started = ?done.started, restarted = ?done.restarted,
                stopped = ?done.stopped, "event sinks reloaded");
            *core.sinks.write().unwrap_or_else(|p| p.into_inner()) =
                (new.events.sinks.clone(), stats);
        }
        if old.log_level != new.log_level
            && let Err(e) = herd_proto::serving::set_log_level(&new.log_level)
        {
            tracing::error!(error = %e, "log_level not applied");
            failed.push("log_level".into());
        }
        failed
    }

    /// `herdctl config show`: the running configuration, each field with
    /// its source and class, and what waits for a restart.
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

/// The risk limits of every scope whose configured limits changed, applied
/// as `SetRiskLimits` does: made durable first (a write that fails leaves
/// the scope as it was), set, and audited (actor `config-reload`). Durable
/// here means the file governs the scope again: a runtime override of that
/// scope stored by `SetRiskLimits` is removed, so the reloaded values hold
/// after a restart and a later edit of the file is not masked by a stale
/// override. Scopes whose configured limits did not change keep what they
/// run with, including limits an operator set at runtime. Returns the paths
/// not applied.
async fn apply_risk(
    core: &Core,
    old: &crate::risk::RiskConfig,
    new: &crate::risk::RiskConfig,
) -> Vec<String> {
    let mut scopes: Vec<(Option<String>, crate::risk::Limits, crate::risk::Limits)> = Vec::new();
    if old.account != new.account {
        scopes.push((None, old.account.clone(), new.account.clone()));
    }
    let ids: std::collections::BTreeSet<&String> =
        old.engines.keys().chain(new.engines.keys()).collect();
    for id in ids {
        let (a, b) = (old.engines.get(id), new.engines.get(id));
        if a != b {
            scopes.push((
                Some(id.clone()),
                a.cloned().unwrap_or_default(),
                b.cloned().unwrap_or_default(),
            ));
        }
    }
    let mut failed = Vec::new();
    for (scope, _, limits) in scopes {
        let path = match &scope {
            Some(id) => format!("risk.engines.{id}"),
            None => "risk.account".to_string(),
        };
        let Some(before) = core
            .risk
            .snapshot(scope.as_deref(), core.clock.now_ms())
            .map(|s| s.limits)
        else {
            // An engine this gateway does not run yet (added by the same
            // reload, which is restart-only).
            failed.push(path);
            continue;
        };
        if let Some(store) = &core.risk_store
            && let Err(e) = store.clear_limits(scope.as_deref()).await
        {
            tracing::error!(error = %e, scope = %path, "reloaded risk limits not made durable; not applied");
            failed.push(path);
            continue;
        }
        core.risk.set_limits(scope.as_deref(), limits.clone());
        let text = |l: &crate::risk::Limits| serde_json::to_string(l).unwrap_or_default();
        core.audit(AuditEntry {
            at_ms: core.clock.now_ms(),
            actor: "config-reload".into(),
            kind: "limits".into(),
            engine: scope.unwrap_or_default(),
            before: text(&before),
            after: text(&limits),
            reason: "configuration reload".into(),
        });
    }
    failed
}

/// The log line and the herd event of a reload that found changes.
fn report(core: &Core, trigger: Trigger, changes: &[Change]) {
    let diff = reload::describe(changes);
    let applied: Vec<&str> = changes
        .iter()
        .filter(|c| c.applied)
        .map(|c| c.path.as_str())
        .collect();
    let pending: Vec<&str> = changes
        .iter()
        .filter(|c| c.class == Class::Restart)
        .map(|c| c.path.as_str())
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
    core.events.emit(
        core.events
            .make(
                kind::CONFIG_RELOADED,
                severity,
                format!("configuration reloaded: {}", reload::summary(changes)),
            )
            .text("trigger", trigger.as_str())
            .text("applied", applied.join(","))
            .text("restart_pending", pending.join(",")),
    );
}

/// Reloads on every SIGHUP and change of the file until the process ends.
pub async fn run(core: Arc<Core>, reloader: Arc<Reloader>, path: Option<PathBuf>, poll_ms: u64) {
    let mut triggers = reload::spawn_triggers(path, poll_ms);
    while let Some(t) = triggers.recv().await {
        // The outcome is logged and raised as an event by `reload`.
        let _ = reloader.reload(&core, t).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A config with every optional table filled, so every leaf shows.
    fn rich() -> GatewayConfig {
        let text = r#"
            http_listen = "127.0.0.1:9100"
            admin_token = "admin-token-1"
            state_dir = "/tmp/x"
            log_level = "info"
            [[engines]]
            id = "e0"
            token = "engine-token-0"
            userref_min = 1
            userref_max = 99
            order_prefix = "e0-"
            [[engines]]
            id = "e1"
            token_file = "/dev/null"
            token = "engine-token-1"
            userref_min = 100
            userref_max = 199
            [risk.account]
            max_order_notional = "100"
            [risk.engines.e0]
            max_open_orders = 3
            [risk.engines.e0.actions]
            daily_loss = "halt"
            [dashboard.engine_urls]
            e0 = "http://e0:9000"
            [[events.sinks]]
            name = "hook"
            type = "webhook"
            url = "http://127.0.0.1:1/hook"
            [kraken]
            nonce_file = "/tmp/nonce"
            add_order_deadline_s = 10
        "#;
        toml::from_str(text).unwrap()
    }

    /// Fails when a config field is added without a rule in [`RULES`].
    #[test]
    fn every_field_is_classified() {
        for cfg in [GatewayConfig::default(), rich()] {
            let leaves = reload::flatten(&json(&cfg));
            assert!(leaves.len() > 40, "{}", leaves.len());
            for path in leaves.keys() {
                assert!(
                    reload::classify(path, RULES).is_some(),
                    "config field {path} has no live/restart-only rule in reload::RULES"
                );
            }
        }
        // Every rule names something that exists (no stale rules).
        let leaves: Vec<String> = reload::flatten(&json(&rich())).into_keys().collect();
        for (rule, _) in RULES {
            let pat: Vec<&str> = rule.split('.').collect();
            assert!(
                leaves.iter().any(|p| {
                    let segs: Vec<&str> = p.split('.').collect();
                    pat.len() <= segs.len()
                        && pat.iter().zip(&segs).all(|(a, b)| *a == "*" || a == b)
                }),
                "rule {rule} matches no field"
            );
        }
    }

    /// After a reload, what still differs from the file is exactly the
    /// restart-only changes: `merge` takes every live field and no other.
    #[test]
    fn merge_applies_exactly_the_live_fields() {
        let old = rich();
        let mut new = rich();
        new.listen = "127.0.0.1:7777".parse().unwrap();
        new.venue = crate::config::VenueKind::Kraken;
        new.engines[0].weight = 5;
        new.engines[0].token = herd_proto::Secret::new("engine-token-9");
        new.engines[1].cancel_on_disconnect_ms = 5;
        new.venue_slots = 4;
        new.engine_queue_limit = 9;
        new.poller_weight = 2;
        new.risk.account.max_order_notional = Some(rust_decimal::Decimal::from(7));
        new.events.sinks[0].max_attempts = 3;
        new.events.max_count = 5;
        new.log_level = "debug".into();
        new.paper.step_ms = 5;
        new.state_dir = None;
        let changes = reload::classify_all(&reload::diff(&json(&old), &json(&new)), RULES);
        let live: Vec<&str> = changes
            .iter()
            .filter(|c| c.class == Class::Live)
            .map(|c| c.path.as_str())
            .collect();
        assert_eq!(
            live,
            [
                "engine_queue_limit",
                "engines.e0.weight",
                "events.sinks.hook.max_attempts",
                "log_level",
                "poller_weight",
                "risk.account.max_order_notional",
                "venue_slots",
            ]
        );
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
        assert!(restart.contains(&"engines.e0.token".to_string()));
        // The token's change is seen, its value never shown.
        let token = changes
            .iter()
            .find(|c| c.path == "engines.e0.token")
            .unwrap();
        assert_eq!(token.after, "\"REDACTED\"");
        assert!(!reload::describe(&changes).contains("engine-token"));
    }

    #[test]
    fn an_added_engine_is_one_restart_only_change() {
        let old = rich();
        let mut new = rich();
        let mut e2 = new.engines[0].clone();
        e2.id = "e2".into();
        e2.order_prefix = Some("e2-".into());
        e2.weight = 9;
        new.engines.push(e2);
        let changes = reload::classify_all(&reload::diff(&json(&old), &json(&new)), RULES);
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert_eq!(changes[0].path, "engines.e2");
        assert_eq!(changes[0].class, Class::Restart);
    }
}
