//! The gateway's typed configuration: a TOML file, then environment
//! overrides, then validation. Defaults are a paper venue on loopback.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;

use herd_bybit::BybitConfig;
use herd_paper::PaperConfig;
use serde::Deserialize;

/// Environment variables that override the file (one place for their names).
pub mod env {
    pub const LISTEN: &str = "HERD_GATEWAY_LISTEN";
    pub const HTTP_LISTEN: &str = "HERD_GATEWAY_HTTP_LISTEN";
    pub const ADMIN_TOKEN: &str = "HERD_GATEWAY_ADMIN_TOKEN";
    pub const VENUE: &str = "HERD_GATEWAY_VENUE";
    pub const POLL_INTERVAL_MS: &str = "HERD_GATEWAY_POLL_INTERVAL_MS";
    /// Bybit's REST base URL (point it at the simulator).
    pub const BYBIT_BASE_URL: &str = "HERD_GATEWAY_BYBIT_BASE_URL";
}

pub use herd_proto::Secret;

/// Which venue the gateway trades on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum VenueKind {
    #[default]
    Paper,
    Kraken,
    /// Bybit V5: spot and USDT linear perpetuals (key and secret from
    /// BYBIT_API_KEY / BYBIT_API_SECRET or files, see [`BybitConfig`]).
    Bybit,
}

/// One engine allowed to use the gateway.
#[derive(Debug, Clone, Deserialize)]
pub struct EngineEntry {
    pub id: String,
    /// The bearer token the engine presents.
    #[serde(default)]
    pub token: Secret,
    /// Read the token from this file instead (a Kubernetes Secret mount).
    #[serde(default)]
    pub token_file: Option<String>,
    /// The engine's userref range, inclusive; ranges must not overlap.
    pub userref_min: i32,
    pub userref_max: i32,
    /// Prefix of the engine's orders' client ids at the venue; defaults to "<id>-".
    #[serde(default)]
    pub order_prefix: Option<String>,
    /// Share of a scarce budget relative to other engines.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Dead man's switch: when the engine's event stream has been gone this
    /// long, the gateway cancels the engine's working orders (0 = never).
    #[serde(default = "default_cancel_on_disconnect_ms")]
    pub cancel_on_disconnect_ms: i64,
}

fn default_cancel_on_disconnect_ms() -> i64 {
    120_000
}

fn default_weight() -> u32 {
    1
}

impl EngineEntry {
    pub fn prefix(&self) -> String {
        self.order_prefix
            .clone()
            .unwrap_or_else(|| format!("{}-", self.id))
    }
}

/// The paper venue's knobs.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct PaperSection {
    #[serde(flatten)]
    pub exchange: PaperConfig,
    /// Milliseconds between price-path steps.
    pub step_ms: u64,
    /// Keep the paper account (balances, orders, prices) in this file so it
    /// survives a gateway restart, a kill -9 included: the whole exchange is
    /// saved every few seconds and at shutdown, and every accepted place and
    /// cancel is written to `STATE_FILE.account` before it is answered.
    pub state_file: Option<std::path::PathBuf>,
    /// Test knob: milliseconds every place and cancel waits before it
    /// reaches the paper book (a slow venue). 0 (the default) = none.
    pub latency_ms: u64,
}

impl Default for PaperSection {
    fn default() -> PaperSection {
        PaperSection {
            exchange: PaperConfig {
                history_minutes: 4_400,
                ..PaperConfig::default()
            },
            step_ms: 1_000,
            state_file: None,
            latency_ms: 0,
        }
    }
}

/// The venue's dead man's switch (Kraken's CancelAllOrdersAfter): while any
/// engine has its event stream connected the gateway re-arms it every
/// `refresh_s` with `timeout_s`; when every engine is gone it lapses and the
/// venue cancels all open orders of the key.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeadMansSwitch {
    /// None = on for venues that have one (Kraken), off for paper.
    pub enabled: Option<bool>,
    pub timeout_s: u32,
    pub refresh_s: u32,
}

impl Default for DeadMansSwitch {
    fn default() -> DeadMansSwitch {
        DeadMansSwitch {
            enabled: None,
            timeout_s: 60,
            refresh_s: 20,
        }
    }
}

impl DeadMansSwitch {
    /// Whether the switch runs on `venue`.
    pub fn active_on(&self, venue: VenueKind) -> bool {
        match venue {
            VenueKind::Paper => false,
            VenueKind::Kraken => self.enabled.unwrap_or(true),
            // The Bybit adapter has no venue-side switch; the gateway's
            // per-engine switch still applies.
            VenueKind::Bybit => self.enabled.unwrap_or(false),
        }
    }
}

/// The whole gateway configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct GatewayConfig {
    pub listen: SocketAddr,
    /// Admin HTTP port: `/metrics` and `/healthz`. Read-only, no token.
    /// Unset = not served.
    pub http_listen: Option<SocketAddr>,
    pub venue: VenueKind,
    pub admin_token: Secret,
    pub engines: Vec<EngineEntry>,
    /// Milliseconds between order polls.
    pub poll_interval_ms: u64,
    /// Order events kept per engine for resuming streams.
    pub event_retention: usize,
    /// A pending order the venue still does not know after this long is
    /// reported rejected.
    pub pending_timeout_ms: i64,
    pub paper: PaperSection,
    /// Private venue calls in flight at once; beyond that, calls queue and
    /// are granted by weighted fair sharing.
    pub venue_slots: usize,
    /// Calls one engine may have waiting before it gets RESOURCE_EXHAUSTED.
    pub engine_queue_limit: usize,
    /// The poller's weight in the fair queue (its reserved share); 0 means
    /// half the engines' total weight.
    pub poller_weight: u32,
    pub bybit: BybitConfig,
    /// Used when `venue = "kraken"`.
    pub kraken: herd_kraken::KrakenConfig,
    pub dead_mans_switch: DeadMansSwitch,
    /// On SIGTERM: milliseconds the gateway keeps serving after its health
    /// turned NOT_SERVING (so Kubernetes endpoints and load balancers stop
    /// sending it work) while refusing new orders with UNAVAILABLE.
    pub drain_delay_ms: u64,
    /// On SIGTERM: the hard limit, counted from the signal, for the whole
    /// shutdown (drain delay, in-flight calls, saving state). Past it the
    /// gateway logs what was still in flight and exits non-zero. Keep it
    /// below the pod's terminationGracePeriodSeconds.
    pub shutdown_timeout_ms: u64,
}

impl Default for GatewayConfig {
    fn default() -> GatewayConfig {
        GatewayConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            http_listen: None,
            venue: VenueKind::Paper,
            admin_token: Secret::default(),
            engines: Vec::new(),
            poll_interval_ms: 500,
            event_retention: 100_000,
            pending_timeout_ms: 30_000,
            paper: PaperSection::default(),
            venue_slots: 1,
            engine_queue_limit: 64,
            poller_weight: 0,
            bybit: BybitConfig::default(),
            kraken: herd_kraken::KrakenConfig::default(),
            dead_mans_switch: DeadMansSwitch::default(),
            drain_delay_ms: 2_000,
            shutdown_timeout_ms: 30_000,
        }
    }
}

pub use herd_proto::config::ConfigError;

impl GatewayConfig {
    /// Loads the file (if any), applies environment overrides and validates.
    pub fn load(path: Option<&Path>) -> Result<GatewayConfig, ConfigError> {
        let mut cfg: GatewayConfig = herd_proto::config::read_toml(path)?;
        cfg.apply_env(|k| std::env::var(k).ok())?;
        cfg.resolve_token_files()?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Applies overrides from `get` (the environment in production).
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        if let Some(v) = get(env::LISTEN) {
            self.listen = v.parse().map_err(|e| ConfigError::Env {
                name: env::LISTEN,
                message: format!("{v:?} is not host:port ({e})"),
            })?;
        }
        if let Some(v) = get(env::HTTP_LISTEN) {
            self.http_listen = herd_proto::config::optional_addr_env(env::HTTP_LISTEN, &v)?;
        }
        if let Some(v) = get(env::ADMIN_TOKEN) {
            self.admin_token = Secret::new(v);
        }
        if let Some(v) = get(env::VENUE) {
            self.venue = match v.as_str() {
                "paper" => VenueKind::Paper,
                "kraken" => VenueKind::Kraken,
                "bybit" => VenueKind::Bybit,
                other => {
                    return Err(ConfigError::Env {
                        name: env::VENUE,
                        message: format!("{other:?} is not a venue (paper, kraken, bybit)"),
                    });
                }
            };
        }
        if let Some(v) = get(env::BYBIT_BASE_URL) {
            self.bybit.base_url = v;
        }
        if let Some(v) = get(env::POLL_INTERVAL_MS) {
            self.poll_interval_ms = v.parse().map_err(|e| ConfigError::Env {
                name: env::POLL_INTERVAL_MS,
                message: format!("{v:?}: {e}"),
            })?;
        }
        Ok(())
    }

    fn resolve_token_files(&mut self) -> Result<(), ConfigError> {
        for e in &mut self.engines {
            if let Some(path) = &e.token_file {
                let token = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
                e.token = Secret::new(token.trim());
            }
        }
        Ok(())
    }

    /// Checks what the types cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut ids = HashSet::new();
        let mut tokens = HashSet::new();
        let mut prefixes = HashSet::new();
        for e in &self.engines {
            if e.id.is_empty()
                || !e
                    .id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(ConfigError::Invalid(format!(
                    "engine id {:?} must be non-empty [A-Za-z0-9_-]",
                    e.id
                )));
            }
            if !ids.insert(e.id.clone()) {
                return Err(ConfigError::Invalid(format!(
                    "engine id {:?} appears twice",
                    e.id
                )));
            }
            if e.token.expose().len() < 8 {
                return Err(ConfigError::Invalid(format!(
                    "engine {:?}: token must be at least 8 characters",
                    e.id
                )));
            }
            if !tokens.insert(e.token.expose().to_string()) {
                return Err(ConfigError::Invalid(format!(
                    "engine {:?} shares its token with another engine",
                    e.id
                )));
            }
            if e.userref_min <= 0 || e.userref_min > e.userref_max {
                return Err(ConfigError::Invalid(format!(
                    "engine {:?}: userref range {}..={} must be positive and ordered",
                    e.id, e.userref_min, e.userref_max
                )));
            }
            let prefix = e.prefix();
            if prefix.len() > 8 {
                return Err(ConfigError::Invalid(format!(
                    "engine {:?}: order prefix {prefix:?} is longer than 8 characters",
                    e.id
                )));
            }
            if !prefixes.insert(prefix.clone()) {
                return Err(ConfigError::Invalid(format!(
                    "engine {:?}: order prefix {prefix:?} is used twice",
                    e.id
                )));
            }
            if e.weight == 0 {
                return Err(ConfigError::Invalid(format!(
                    "engine {:?}: weight must be >= 1",
                    e.id
                )));
            }
        }
        for (i, a) in self.engines.iter().enumerate() {
            for b in &self.engines[i + 1..] {
                if a.userref_min <= b.userref_max && b.userref_min <= a.userref_max {
                    return Err(ConfigError::Invalid(format!(
                        "engines {:?} and {:?} have overlapping userref ranges",
                        a.id, b.id
                    )));
                }
            }
        }
        if !self.admin_token.expose().is_empty() && self.admin_token.expose().len() < 8 {
            return Err(ConfigError::Invalid(
                "admin_token must be at least 8 characters".into(),
            ));
        }
        let dms = &self.dead_mans_switch;
        if dms.timeout_s == 0 || dms.refresh_s == 0 || dms.refresh_s >= dms.timeout_s {
            return Err(ConfigError::Invalid(format!(
                "dead_mans_switch: refresh_s ({}) must be at least 1 and below timeout_s ({})",
                dms.refresh_s, dms.timeout_s
            )));
        }
        if self.poll_interval_ms == 0 {
            return Err(ConfigError::Invalid("poll_interval_ms must be >= 1".into()));
        }
        herd_proto::serving::ShutdownTimes::validate(self.drain_delay_ms, self.shutdown_timeout_ms)
            .map_err(ConfigError::Invalid)?;
        if self.venue == VenueKind::Bybit {
            let url = &self.bybit.base_url;
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(ConfigError::Invalid(format!(
                    "bybit.base_url {url:?} must start with http:// or https://"
                )));
            }
            if !(1..=60_000).contains(&self.bybit.recv_window_ms) {
                return Err(ConfigError::Invalid(
                    "bybit.recv_window_ms must be between 1 and 60000".into(),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine(id: &str, token: &str, min: i32, max: i32) -> EngineEntry {
        EngineEntry {
            id: id.into(),
            token: Secret::new(token),
            token_file: None,
            userref_min: min,
            userref_max: max,
            order_prefix: None,
            weight: 1,
            cancel_on_disconnect_ms: 0,
        }
    }

    #[test]
    fn secrets_do_not_print() {
        let cfg = GatewayConfig {
            admin_token: Secret::new("super-secret-admin"),
            engines: vec![engine("e0", "super-secret-engine", 1, 10)],
            ..GatewayConfig::default()
        };
        let dbg = format!("{cfg:?}");
        assert!(!dbg.contains("super-secret"), "{dbg}");
        assert!(dbg.contains("REDACTED"));
    }

    #[test]
    fn validation_table() {
        let cases: Vec<(Vec<EngineEntry>, Option<&str>)> = vec![
            (
                vec![
                    engine("e0", "token-000", 1, 10),
                    engine("e1", "token-111", 11, 20),
                ],
                None,
            ),
            (
                vec![
                    engine("e0", "token-000", 1, 10),
                    engine("e0", "token-111", 11, 20),
                ],
                Some("twice"),
            ),
            (
                vec![
                    engine("e0", "token-000", 1, 10),
                    engine("e1", "token-000", 11, 20),
                ],
                Some("shares its token"),
            ),
            (
                vec![
                    engine("e0", "token-000", 1, 10),
                    engine("e1", "token-111", 10, 20),
                ],
                Some("overlapping"),
            ),
            (vec![engine("e0", "short", 1, 10)], Some("at least 8")),
            (
                vec![engine("e 0", "token-000", 1, 10)],
                Some("must be non-empty"),
            ),
            (vec![engine("e0", "token-000", 5, 1)], Some("ordered")),
        ];
        for (engines, want) in cases {
            let cfg = GatewayConfig {
                engines,
                ..GatewayConfig::default()
            };
            match (cfg.validate(), want) {
                (Ok(()), None) => {}
                (Err(e), Some(w)) => assert!(e.to_string().contains(w), "{e} should mention {w}"),
                (got, want) => panic!("got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn env_overrides_and_bad_values() {
        let mut cfg = GatewayConfig::default();
        cfg.apply_env(|k| (k == env::LISTEN).then(|| "127.0.0.1:6000".to_string()))
            .unwrap();
        assert_eq!(cfg.listen.port(), 6000);
        let err = cfg
            .apply_env(|k| (k == env::VENUE).then(|| "binance".to_string()))
            .unwrap_err();
        assert!(err.to_string().contains("HERD_GATEWAY_VENUE"), "{err}");
    }

    #[test]
    fn bybit_section_parses() {
        let text = r#"
            venue = "bybit"
            [bybit]
            base_url = "http://127.0.0.1:9000"
            recv_window_ms = 10000
            credentials = { source = "files", key_path = "/s/k", secret_path = "/s/s" }
        "#;
        let mut cfg: GatewayConfig = toml::from_str(text).unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.venue, VenueKind::Bybit);
        assert_eq!(cfg.bybit.recv_window_ms, 10_000);
        cfg.apply_env(|k| (k == env::BYBIT_BASE_URL).then(|| "ftp://x".to_string()))
            .unwrap();
        assert!(cfg.validate().unwrap_err().to_string().contains("base_url"));
        let mut cfg = GatewayConfig::default();
        cfg.apply_env(|k| (k == env::VENUE).then(|| "bybit".to_string()))
            .unwrap();
        assert_eq!(cfg.venue, VenueKind::Bybit);
        assert_eq!(cfg.bybit.base_url, "https://api.bybit.com");
    }

    #[test]
    fn file_parses() {
        let text = r#"
            listen = "127.0.0.1:7000"
            admin_token = "admin-token-1"
            poll_interval_ms = 250
            [[engines]]
            id = "e0"
            token = "engine-token-0"
            userref_min = 1000
            userref_max = 1999
            [paper]
            step_ms = 200
            history_minutes = 10
        "#;
        let cfg: GatewayConfig = toml::from_str(text).unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.engines[0].prefix(), "e0-");
        assert_eq!(cfg.paper.step_ms, 200);
        assert_eq!(cfg.paper.exchange.history_minutes, 10);
        assert!(!cfg.dead_mans_switch.active_on(VenueKind::Paper));
        assert!(cfg.dead_mans_switch.active_on(VenueKind::Kraken));
        let off: GatewayConfig = toml::from_str(
            "venue = \"kraken\"\n[dead_mans_switch]\nenabled = false\nrefresh_s = 15",
        )
        .unwrap();
        assert!(!off.dead_mans_switch.active_on(VenueKind::Kraken));
        assert_eq!(off.dead_mans_switch.refresh_s, 15);
        let bad: GatewayConfig =
            toml::from_str("[dead_mans_switch]\nrefresh_s = 60\ntimeout_s = 60").unwrap();
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("refresh_s")
        );
        assert_eq!(
            cfg.paper.exchange.instruments[0].instrument.symbol,
            "DOGEUSD"
        );
    }
}
