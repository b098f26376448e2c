//! The engine's typed configuration: a TOML file, then environment
//! overrides, then validation. Defaults are safe: nothing trades until a
//! strategy is enabled.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use herd_strategies::funding::FundingConfig;
use herd_strategies::grid::GridConfig;
use herd_strategies::rangers::RangerConfig;

/// Environment variables that override the file (one place for their names).
pub mod env {
    pub const ID: &str = "HERD_ENGINE_ID";
    pub const LISTEN: &str = "HERD_ENGINE_LISTEN";
    pub const HTTP_LISTEN: &str = "HERD_ENGINE_HTTP_LISTEN";
    pub const GATEWAY_URL: &str = "HERD_GATEWAY_URL";
    pub const GATEWAY_TOKEN: &str = "HERD_GATEWAY_TOKEN";
    pub const CONTROL_TOKEN: &str = "HERD_CONTROL_TOKEN";
    pub const DATA_DIR: &str = "HERD_DATA_DIR";
    pub const DATABASE_URL: &str = "DATABASE_URL";
    pub const REGIME_SOURCE: &str = "HERD_REGIME_SOURCE";
    pub const FIXED_REGIME: &str = "HERD_FIXED_REGIME";
    pub const RECONCILE_UNKNOWN_OPEN_ORDERS: &str = "HERD_RECONCILE_UNKNOWN_OPEN_ORDERS";
    /// The `[funding]` section's variables (`FUNDING_*`).
    pub use herd_strategies::funding::config::env as funding;
    /// The `[grid]` section's variables (`GRID_*`, `CHURNER_*`).
    pub use herd_strategies::grid::config::env as grid;
    /// The `[rangers]` section's variables (`RANGER_*`).
    pub use herd_strategies::rangers::env as rangers;
}

/// Where the engine's regime reading comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RegimeSource {
    /// The HMM detector over the gateway's candles (the default).
    #[default]
    Hmm,
    /// `fixed_regime`, always: demos and tests on the paper venue.
    Fixed,
}

/// Regimes `fixed_regime` may name; "UNKNOWN" is a detector that is not ready.
pub const REGIMES: &[&str] = &["RANGING", "BULLISH", "BEARISH", "UNKNOWN"];

pub use herd_proto::Secret;

/// The whole engine configuration. Every table refuses unknown keys
/// (`herd_proto::config` says which and suggests the closest).
#[derive(Debug, Clone, serde::Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineConfig {
    /// The engine's id; must match the gateway's entry for its token.
    pub id: String,
    /// Control server (gRPC) address.
    pub listen: SocketAddr,
    /// Admin HTTP port: `/metrics`, `/healthz` and the dashboard (`/`).
    /// Read-only, no token. Unset = not served.
    pub http_listen: Option<SocketAddr>,
    pub gateway_url: String,
    pub gateway_token: Secret,
    /// Token operators present to the control server.
    pub control_token: Secret,
    /// Where the SQLite store lives (ignored with `database_url`).
    pub data_dir: PathBuf,
    /// Postgres URL; empty means SQLite under `data_dir`.
    pub database_url: Secret,
    /// The instrument the engine trades.
    pub symbol: String,
    /// Milliseconds between strategy ticks (price refresh and timers).
    pub tick_ms: u64,
    /// Venue errors in a row that pause the engine.
    pub max_consecutive_errors: u32,
    /// Milliseconds between balance refreshes (each costs the key's budget).
    pub balance_refresh_ms: u64,
    /// Milliseconds between regime detector updates (candles are fetched,
    /// the detector retrains daily off the event loop).
    pub regime_refresh_ms: u64,
    /// "hmm" (default) or "fixed".
    pub regime_source: RegimeSource,
    /// The regime a "fixed" source reports: RANGING, BULLISH, BEARISH or
    /// UNKNOWN (not ready, which gates read as not RANGING).
    pub fixed_regime: String,
    /// The rangers (seed 000): disabled unless `enabled = true`.
    pub rangers: RangerConfig,
    /// Grid slots, position ledger, self-healing and churners: disabled
    /// unless `enabled = true`.
    pub grid: GridConfig,
    /// The funding-rate orchestrator (seed 003): disabled unless
    /// `enabled = true`.
    pub funding: FundingConfig,
    /// On SIGTERM: milliseconds the engine keeps serving after its health
    /// turned NOT_SERVING while its strategies place nothing new and
    /// SubmitOrder answers UNAVAILABLE.
    pub drain_delay_ms: u64,
    /// On SIGTERM: the hard limit, counted from the signal, for the whole
    /// shutdown (drain delay, in-flight calls, the funding shutdown policy,
    /// closing the store). Past it the engine logs what was still in flight
    /// and exits non-zero. Keep it below the pod's
    /// terminationGracePeriodSeconds.
    pub shutdown_timeout_ms: u64,
    /// The reconcile step's policies (docs/reconcile.md).
    pub reconcile: ReconcileConfig,
    /// The herd page on the gateway's admin port (`http://gateway:9100/`);
    /// the dashboard links it. Empty = no link.
    pub herd_dashboard_url: String,
    /// The log filter ("info", "warn,herd_engine=debug"; tracing's
    /// EnvFilter directives). Empty (the default) = `RUST_LOG`, else
    /// "info". Live: a reload changes it at once.
    pub log_level: String,
    /// How often the config file is read for a change, which reloads it
    /// (docs/config.md); 0 = never (SIGHUP and the ReloadConfig RPC still
    /// reload). Restart-only.
    pub config_poll_ms: u64,
}

/// What the reconcile step does with an open order at the venue that
/// carries this engine's prefix but that its journal does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum UnknownOrderPolicy {
    /// Cancel it (the default): no strategy placed it from this journal, so
    /// no strategy would manage it; an order nobody manages is risk.
    #[default]
    Cancel,
    /// Journal it (owner `adopted`) and leave it open: it shows in status
    /// and its fills are journaled, but no strategy acts on it.
    Adopt,
}

impl UnknownOrderPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            UnknownOrderPolicy::Cancel => "cancel",
            UnknownOrderPolicy::Adopt => "adopt",
        }
    }
}

/// `[reconcile]`: see docs/reconcile.md.
#[derive(Debug, Clone, Default, serde::Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReconcileConfig {
    /// "cancel" (default) or "adopt" (env `HERD_RECONCILE_UNKNOWN_OPEN_ORDERS`).
    pub unknown_open_orders: UnknownOrderPolicy,
}

impl Default for EngineConfig {
    fn default() -> EngineConfig {
        EngineConfig {
            id: "e0".into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 50061)),
            http_listen: None,
            gateway_url: "http://127.0.0.1:50051".into(),
            gateway_token: Secret::default(),
            control_token: Secret::default(),
            data_dir: PathBuf::from(".herd/data"),
            database_url: Secret::default(),
            symbol: "DOGEUSD".into(),
            tick_ms: 1_000,
            max_consecutive_errors: 25,
            balance_refresh_ms: 15_000,
            regime_refresh_ms: 60_000,
            regime_source: RegimeSource::Hmm,
            fixed_regime: "UNKNOWN".into(),
            rangers: RangerConfig::default(),
            grid: GridConfig::default(),
            funding: FundingConfig::default(),
            drain_delay_ms: 2_000,
            shutdown_timeout_ms: 30_000,
            reconcile: ReconcileConfig::default(),
            herd_dashboard_url: String::new(),
            log_level: String::new(),
            config_poll_ms: herd_proto::reload::POLL_MS,
        }
    }
}

pub use herd_proto::config::ConfigError;

impl EngineConfig {
    /// Loads the file (if any), applies environment overrides and validates.
    pub fn load(path: Option<&Path>) -> Result<EngineConfig, ConfigError> {
        EngineConfig::load_with(path, |k| std::env::var(k).ok())
    }

    /// [`EngineConfig::load`] with the environment overrides read from
    /// `overrides` (`config show` loads once without them to tell which
    /// values came from the environment).
    pub fn load_with(
        path: Option<&Path>,
        overrides: impl Fn(&str) -> Option<String>,
    ) -> Result<EngineConfig, ConfigError> {
        let mut cfg: EngineConfig = herd_proto::config::read_toml(path)?;
        cfg.apply_env(overrides)?;
        cfg.validate().map_err(|e| e.in_file(path))?;
        Ok(cfg)
    }

    /// Applies environment overrides from `get` (the environment in production).
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        if let Some(v) = get(env::ID) {
            self.id = v;
        }
        if let Some(v) = get(env::LISTEN) {
            self.listen = v.parse().map_err(|e| ConfigError::Env {
                name: env::LISTEN,
                message: format!("{v:?} is not host:port ({e})"),
            })?;
        }
        if let Some(v) = get(env::HTTP_LISTEN) {
            self.http_listen = herd_proto::config::optional_addr_env(env::HTTP_LISTEN, &v)?;
        }
        if let Some(v) = get(env::GATEWAY_URL) {
            self.gateway_url = v;
        }
        if let Some(v) = get(env::GATEWAY_TOKEN) {
            self.gateway_token = Secret::new(v);
        }
        if let Some(v) = get(env::CONTROL_TOKEN) {
            self.control_token = Secret::new(v);
        }
        if let Some(v) = get(env::DATA_DIR) {
            self.data_dir = PathBuf::from(v);
        }
        if let Some(v) = get(env::DATABASE_URL) {
            self.database_url = Secret::new(v);
        }
        if let Some(v) = get(env::REGIME_SOURCE) {
            self.regime_source = match v.trim().to_ascii_lowercase().as_str() {
                "hmm" => RegimeSource::Hmm,
                "fixed" => RegimeSource::Fixed,
                other => {
                    return Err(ConfigError::Env {
                        name: env::REGIME_SOURCE,
                        message: format!("{other:?} is not a regime source (hmm, fixed)"),
                    });
                }
            };
        }
        if let Some(v) = get(env::FIXED_REGIME) {
            self.fixed_regime = v.trim().to_ascii_uppercase();
        }
        if let Some(v) = get(env::RECONCILE_UNKNOWN_OPEN_ORDERS) {
            self.reconcile.unknown_open_orders = match v.trim().to_ascii_lowercase().as_str() {
                "cancel" => UnknownOrderPolicy::Cancel,
                "adopt" => UnknownOrderPolicy::Adopt,
                other => {
                    return Err(ConfigError::Env {
                        name: env::RECONCILE_UNKNOWN_OPEN_ORDERS,
                        message: format!("{other:?} is not a policy (cancel, adopt)"),
                    });
                }
            };
        }
        self.rangers
            .apply_env(&get)
            .map_err(|(name, message)| ConfigError::Env { name, message })?;
        self.grid
            .apply_env(&get)
            .map_err(|(name, message)| ConfigError::Env { name, message })?;
        self.funding
            .apply_env(&get)
            .map_err(|(name, message)| ConfigError::Env { name, message })?;
        Ok(())
    }

    /// Checks what the types cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        herd_proto::serving::check_log_level(&self.log_level)
            .map_err(|e| ConfigError::Invalid(format!("log_level: {e}")))?;
        herd_proto::reload::check_poll_ms(self.config_poll_ms).map_err(ConfigError::Invalid)?;
        let herd = &self.herd_dashboard_url;
        if !(herd.is_empty() || herd.starts_with("http://") || herd.starts_with("https://")) {
            return Err(ConfigError::Invalid(format!(
                "herd_dashboard_url: {herd:?} is not an http:// or https:// URL"
            )));
        }
        if self.id.is_empty()
            || !self
                .id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(ConfigError::Invalid(format!(
                "id {:?} must be non-empty [A-Za-z0-9_-]",
                self.id
            )));
        }
        if self.gateway_token.expose().is_empty() {
            return Err(ConfigError::Invalid(format!(
                "gateway_token is required (or {})",
                env::GATEWAY_TOKEN
            )));
        }
        if self.control_token.expose().len() < 8 {
            return Err(ConfigError::Invalid(format!(
                "control_token must be at least 8 characters (or set {})",
                env::CONTROL_TOKEN
            )));
        }
        herd_proto::serving::ShutdownTimes::validate(self.drain_delay_ms, self.shutdown_timeout_ms)
            .map_err(ConfigError::Invalid)?;
        if !(self.gateway_url.starts_with("http://") || self.gateway_url.starts_with("https://")) {
            return Err(ConfigError::Invalid(format!(
                "gateway_url {:?} must start with http:// or https://",
                self.gateway_url
            )));
        }
        if self.balance_refresh_ms == 0 || self.regime_refresh_ms == 0 {
            return Err(ConfigError::Invalid(
                "balance_refresh_ms and regime_refresh_ms must be >= 1".into(),
            ));
        }
        if self.tick_ms == 0 {
            return Err(ConfigError::Invalid("tick_ms must be >= 1".into()));
        }
        if !REGIMES.contains(&self.fixed_regime.as_str()) {
            return Err(ConfigError::Invalid(format!(
                "fixed_regime {:?} must be one of {} (or set {})",
                self.fixed_regime,
                REGIMES.join(", "),
                env::FIXED_REGIME
            )));
        }
        self.rangers.validate().map_err(ConfigError::Invalid)?;
        self.grid.validate().map_err(ConfigError::Invalid)?;
        let (rlo, rhi) = (
            self.rangers.userref_offset,
            self.rangers.userref_offset + herd_strategies::rangers::USERREF_SPAN,
        );
        let (glo, ghi) = (
            self.grid.userref_offset,
            self.grid.userref_offset + herd_strategies::grid::config::USERREF_SPAN,
        );
        let (clo, chi) = (
            self.grid.churner.userref_offset,
            self.grid.churner.userref_offset + herd_strategies::churner::USERREF_SPAN,
        );
        if (glo < rhi && rlo < ghi) || (clo < rhi && rlo < chi) {
            return Err(ConfigError::Invalid(format!(
                "userref sub-ranges overlap: rangers {rlo}..{rhi}, grid {glo}..{ghi}, churners {clo}..{chi}"
            )));
        }
        self.funding.validate().map_err(ConfigError::Invalid)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 23, bug 6: a typo at any level of the engine's config (an
    /// unknown section like `[rangerz]` too) is refused, naming the file,
    /// the key, where it is and the closest known key.
    #[test]
    fn unknown_keys_are_refused_at_every_level() {
        let cases: &[herd_proto::config::UnknownKeyCase<'_>] = &[
            (
                "tick_mss = 5\n",
                "tick_mss",
                "at the top level",
                Some("tick_ms"),
            ),
            (
                "[rangerz]\nenabled = true\n",
                "rangerz",
                "at the top level",
                Some("rangers"),
            ),
            (
                "[rangers]\nmax_slot = 2\n",
                "max_slot",
                "in [rangers]",
                Some("max_slots"),
            ),
            ("[grid]\nslotz = 2\n", "slotz", "in [grid]", Some("slots")),
            (
                "[grid.slot]\nentry_pctt = \"1\"\n",
                "entry_pctt",
                "in [grid.slot]",
                Some("entry_pct"),
            ),
            (
                "[grid.heal]\nenabeld = true\n",
                "enabeld",
                "in [grid.heal]",
                Some("enabled"),
            ),
            (
                "[grid.churner]\nmax_activ = 1\n",
                "max_activ",
                "in [grid.churner]",
                Some("max_active"),
            ),
            (
                "[grid.churnr]\nmax_active = 1\n",
                "churnr",
                "in [grid]",
                Some("churner"),
            ),
            (
                "[funding]\nsymbolz = []\n",
                "symbolz",
                "in [funding]",
                Some("symbols"),
            ),
            (
                "[funding]\nnothing_like_it = 1\n",
                "nothing_like_it",
                "in [funding]",
                None,
            ),
            (
                "regime_source = \"hm\"\n",
                "hm",
                "at the top level",
                Some("hmm"),
            ),
        ];
        let dir = tempfile::tempdir().unwrap();
        let failures = herd_proto::config::unknown_key_failures(dir.path(), cases, |p| {
            EngineConfig::load(Some(p))
        });
        assert!(failures.is_empty(), "{failures:#?}");
    }

    #[test]
    fn secrets_do_not_print_and_validation_names_the_problem() {
        let cfg = EngineConfig {
            gateway_token: Secret::new("gw-secret-123"),
            control_token: Secret::new("ctl-secret-123"),
            database_url: Secret::new("postgres://user:pw-secret@host/db"),
            ..EngineConfig::default()
        };
        cfg.validate().unwrap();
        let dbg = format!("{cfg:?}");
        assert!(!dbg.contains("secret"), "{dbg}");
        let bad = EngineConfig {
            gateway_url: "127.0.0.1:50051".into(),
            ..cfg.clone()
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("gateway_url")
        );
        let bad = EngineConfig {
            control_token: Secret::new("x"),
            ..cfg
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("control_token")
        );
    }

    /// Decimals in the config file follow herd-types' strict grammar.
    #[test]
    fn config_decimals_are_strict() {
        for (value, want) in [
            ("\"1_000\"", "not a decimal number"),
            ("\" 2.5\"", "not a decimal number"),
            ("\"+2.5\"", "not a decimal number"),
            ("\"123456789012345678901234567890\"", "out of range"),
        ] {
            let text = format!("[rangers]\norder_size_usd = {value}\n");
            let e = toml::from_str::<EngineConfig>(&text)
                .unwrap_err()
                .to_string();
            assert!(
                e.contains(want) && e.contains("order_size_usd"),
                "{value}: {e}"
            );
        }
    }

    #[test]
    fn rangers_section_env_and_regime_source() {
        let text = r#"
            gateway_token = "gw-token-1"
            control_token = "ctl-token-1"
            regime_source = "fixed"
            fixed_regime = "RANGING"
            [rangers]
            enabled = true
            max_slots = 2
            order_size_usd = "2.50"
            entry_pct = 0.15
            doge_reserve = 100
        "#;
        let mut cfg: EngineConfig = toml::from_str(text).unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.regime_source, RegimeSource::Fixed);
        assert!(cfg.rangers.enabled);
        assert_eq!(cfg.rangers.max_slots, 2);
        assert_eq!(cfg.rangers.order_size_usd.to_string(), "2.50");
        assert_eq!(cfg.rangers.entry_pct.to_string(), "0.15");
        assert_eq!(cfg.rangers.exit_timeout_sec, 1350);
        cfg.apply_env(|k| match k {
            env::rangers::ENABLED => Some("false".into()),
            env::rangers::MAX_SLOTS => Some("3".into()),
            _ => None,
        })
        .unwrap();
        assert!(!cfg.rangers.enabled);
        assert_eq!(cfg.rangers.max_slots, 3);
        let e = cfg
            .apply_env(|k| (k == env::rangers::MAX_SLOTS).then(|| "many".to_string()))
            .unwrap_err();
        assert!(e.to_string().contains("RANGER_MAX_SLOTS"), "{e}");
        let bad = EngineConfig {
            fixed_regime: "SIDEWAYS".into(),
            ..cfg.clone()
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("fixed_regime")
        );
        let mut bad = cfg.clone();
        bad.rangers.max_slots = 0;
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("rangers.max_slots")
        );
        let typo = "[rangers]\nenabeld = true\n";
        assert!(toml::from_str::<EngineConfig>(typo).is_err());
        let defaults = EngineConfig::default();
        assert!(!defaults.rangers.enabled, "nothing trades by default");
        assert_eq!(defaults.regime_source, RegimeSource::Hmm);
    }

    /// Every config file the repository ships reads under the
    /// unknown-key rule (placeholders of `herdctl up` filled in).
    #[test]
    fn shipped_configs_have_no_unknown_keys() {
        let fill = |t: &str| {
            let mut t = t.to_string();
            for (k, v) in [
                ("{engine_0_port}", "50061"),
                ("{engine_1_port}", "50062"),
                ("{engine_0_http_port}", "9091"),
                ("{engine_1_http_port}", "9092"),
                ("{gateway_port}", "50051"),
                ("{gateway_http_port}", "9090"),
                ("{data_dir}", "/tmp/herd-data"),
            ] {
                t = t.replace(k, v);
            }
            t
        };
        let engines = [
            include_str!("../../deploy/local/engine-0.toml"),
            include_str!("../../deploy/local/engine-1.toml"),
            include_str!("../../deploy/k8s/base/config/engine.toml"),
            include_str!("../../docs/rangers-demo/engine.toml"),
        ];
        for text in engines {
            if let Err(e) = toml::from_str::<EngineConfig>(&fill(text)) {
                panic!("{e}\n{text}");
            }
        }
        let gateways = [
            include_str!("../../deploy/local/gateway.toml"),
            include_str!("../../deploy/k8s/overlays/paper/gateway.toml"),
            include_str!("../../deploy/k8s/overlays/live/gateway.toml"),
            include_str!("../../docs/rangers-demo/gateway.toml"),
        ];
        for text in gateways {
            if let Err(e) = toml::from_str::<herd_gateway::config::GatewayConfig>(&fill(text)) {
                panic!("{e}\n{text}");
            }
        }
    }

    #[test]
    fn the_local_herd_runs_rangers_and_grid_slots() {
        let text = include_str!("../../deploy/local/engine-0.toml")
            .replace("{engine_0_port}", "50061")
            .replace("{engine_0_http_port}", "9091")
            .replace("{gateway_port}", "50051")
            .replace("{data_dir}", "/tmp/herd-data");
        let cfg: EngineConfig = toml::from_str(&text).unwrap();
        cfg.validate().unwrap();
        assert!(cfg.rangers.enabled);
        assert!(cfg.grid.enabled);
        assert_eq!(cfg.grid.slots, 3);
        assert_eq!(cfg.grid.sticky, vec![2]);
        assert!(cfg.grid.churner.enabled, "herdctl churner spawn works");
        let bad = EngineConfig {
            grid: herd_strategies::grid::GridConfig {
                userref_offset: 750,
                ..cfg.grid.clone()
            },
            ..cfg
        };
        assert!(bad.validate().unwrap_err().to_string().contains("overlap"));
    }
}
