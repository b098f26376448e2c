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
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, Deserialize, Default)]
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
#[derive(Debug, Clone, serde::Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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

/// The paper venue's knobs. Read through [`PaperSectionFile`]:
/// `#[serde(flatten)]` of the exchange's config would let unknown keys pass
/// silently and cannot be combined with `deny_unknown_fields`.
#[derive(Debug, Clone, serde::Serialize, Deserialize)]
#[serde(from = "PaperSectionFile")]
pub struct PaperSection {
    /// The matching core's config; its keys sit in `[paper]` itself.
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

/// `[paper]` as the file spells it: the gateway's keys and the exchange's
/// side by side, every key known.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct PaperSectionFile {
    step_ms: u64,
    state_file: Option<std::path::PathBuf>,
    latency_ms: u64,
    instruments: Vec<herd_paper::PaperInstrument>,
    balances: std::collections::BTreeMap<String, rust_decimal::Decimal>,
    fee_policy: herd_paper::FeePolicy,
    history_minutes: u32,
    history_steps_per_minute: u32,
    seed: u64,
    margin_asset: String,
}

impl Default for PaperSectionFile {
    fn default() -> PaperSectionFile {
        let d = PaperSection::default();
        let e = d.exchange;
        PaperSectionFile {
            step_ms: d.step_ms,
            state_file: d.state_file,
            latency_ms: d.latency_ms,
            instruments: e.instruments,
            balances: e.balances,
            fee_policy: e.fee_policy,
            history_minutes: e.history_minutes,
            history_steps_per_minute: e.history_steps_per_minute,
            seed: e.seed,
            margin_asset: e.margin_asset,
        }
    }
}

impl From<PaperSectionFile> for PaperSection {
    fn from(f: PaperSectionFile) -> PaperSection {
        PaperSection {
            exchange: PaperConfig {
                instruments: f.instruments,
                balances: f.balances,
                fee_policy: f.fee_policy,
                history_minutes: f.history_minutes,
                history_steps_per_minute: f.history_steps_per_minute,
                seed: f.seed,
                margin_asset: f.margin_asset,
            },
            step_ms: f.step_ms,
            state_file: f.state_file,
            latency_ms: f.latency_ms,
        }
    }
}

/// The venue's dead man's switch (Kraken's CancelAllOrdersAfter): while any
/// engine has its event stream connected the gateway re-arms it every
/// `refresh_s` with `timeout_s`; when every engine is gone it lapses and the
/// venue cancels all open orders of the key.
#[derive(Debug, Clone, PartialEq, serde::Serialize, Deserialize)]
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

/// The whole gateway configuration. Every table refuses unknown keys
/// (`herd_proto::config` says which and suggests the closest).
#[derive(Debug, Clone, serde::Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    pub listen: SocketAddr,
    /// Admin HTTP port: `/metrics` and `/healthz` (no token), the herd page
    /// and its data (`crate::herd_http`: the admin token when one is set).
    /// Read-only. Unset = not served.
    pub http_listen: Option<SocketAddr>,
    pub venue: VenueKind,
    /// The GatewayAdmin token. Absent (no key, no env var) = the admin
    /// service refuses every call; an empty string is refused at start.
    pub admin_token: Option<Secret>,
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
    /// What the API key may do, read at start and every few hours, and the
    /// venue clock's offset (`keycheck`).
    pub key_check: crate::keycheck::KeyCheckConfig,
    /// On SIGTERM: milliseconds the gateway keeps serving after its health
    /// turned NOT_SERVING (so Kubernetes endpoints and load balancers stop
    /// sending it work) while refusing new orders with UNAVAILABLE.
    pub drain_delay_ms: u64,
    /// On SIGTERM: the hard limit, counted from the signal, for the whole
    /// shutdown (drain delay, in-flight calls, saving state). Past it the
    /// gateway logs what was still in flight and exits non-zero. Keep it
    /// below the pod's terminationGracePeriodSeconds.
    pub shutdown_timeout_ms: u64,
    /// Pre-trade risk limits (docs/risk.md): `[risk.account]` and
    /// `[risk.engines.<id>]`. Unset = unlimited.
    pub risk: crate::risk::RiskConfig,
    /// Where the gateway keeps its durable state (`risk.sqlite`: trading
    /// states, limits set at runtime, the audit log, the day's PnL;
    /// `fills.sqlite`: the fills ledger, docs/pnl.md).
    /// Unset = nothing survives a restart.
    pub state_dir: Option<std::path::PathBuf>,
    /// The herd's event feed (docs/events.md): `[events]` retention.
    pub events: crate::events::EventsConfig,
    /// The herd dashboard on the admin port (`crate::herd_http`).
    pub dashboard: DashboardConfig,
    /// `[lease]`: one active gateway per key on Kubernetes
    /// (`crate::lease::LeaseConfig`; deploy/README.md, "One active gateway
    /// per key"). Unset = no Lease: `state_dir` is locked instead.
    pub lease: Option<crate::lease::LeaseConfig>,
    /// `[record] path = ...`: append what the gateway saw (tickers,
    /// candles, its fills) to a JSON-lines file for `herdctl backtest
    /// --recording` (`crate::recorder`). Unset = no recording. Restart-only.
    pub record: Option<crate::recorder::RecordConfig>,
    /// The log filter ("info", "warn,herd_gateway=debug"; tracing's
    /// EnvFilter directives). Empty (the default) = `RUST_LOG`, else
    /// "info". Live: a reload changes it at once.
    pub log_level: String,
    /// How often the config file is read for a change, which reloads it
    /// (docs/config.md); 0 = never (SIGHUP and the ReloadConfig RPC still
    /// reload). Restart-only.
    pub config_poll_ms: u64,
}

/// `[dashboard]`: links from the herd page to each engine's own page.
#[derive(Debug, Clone, Default, serde::Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DashboardConfig {
    /// Engine id -> the URL of its dashboard (`http://...` or `https://...`).
    pub engine_urls: std::collections::BTreeMap<String, String>,
}

impl Default for GatewayConfig {
    fn default() -> GatewayConfig {
        GatewayConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            http_listen: None,
            venue: VenueKind::Paper,
            admin_token: None,
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
            key_check: crate::keycheck::KeyCheckConfig::default(),
            drain_delay_ms: 2_000,
            shutdown_timeout_ms: 30_000,
            risk: crate::risk::RiskConfig::default(),
            state_dir: None,
            dashboard: DashboardConfig::default(),
            events: crate::events::EventsConfig::default(),
            lease: None,
            record: None,
            log_level: String::new(),
            config_poll_ms: herd_proto::reload::POLL_MS,
        }
    }
}

pub use herd_proto::config::ConfigError;

impl GatewayConfig {
    /// Loads the file (if any), applies environment overrides and validates.
    pub fn load(path: Option<&Path>) -> Result<GatewayConfig, ConfigError> {
        GatewayConfig::load_with(path, |k| std::env::var(k).ok())
    }

    /// [`GatewayConfig::load`] with the `HERD_GATEWAY_*` overrides read
    /// from `overrides` (`config show` loads once without them to tell
    /// which values came from the environment). Sinks still read their
    /// secrets' variables from the environment.
    pub fn load_with(
        path: Option<&Path>,
        overrides: impl Fn(&str) -> Option<String>,
    ) -> Result<GatewayConfig, ConfigError> {
        let mut cfg: GatewayConfig = herd_proto::config::read_toml(path)?;
        cfg.apply_env(overrides)?;
        cfg.resolve_token_files()?;
        if let Some(lease) = &mut cfg.lease {
            lease
                .resolve_identity(|k| std::env::var(k).ok())
                .map_err(|e| ConfigError::Invalid(e).in_file(path))?;
        }
        crate::sinks::resolve_all(&mut cfg.events.sinks, &|k| std::env::var(k).ok())
            .map_err(|e| e.in_file(path))?;
        cfg.validate().map_err(|e| e.in_file(path))?;
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
            self.admin_token = Some(Secret::new(v));
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
                let token = std::fs::read_to_string(path).map_err(|cause| ConfigError::Read {
                    path: path.clone(),
                    cause,
                })?;
                e.token = Secret::new(token.trim());
            }
        }
        Ok(())
    }

    /// Checks what the types cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        herd_proto::serving::check_log_level(&self.log_level)
            .map_err(|e| ConfigError::Invalid(format!("log_level: {e}")))?;
        herd_proto::reload::check_poll_ms(self.config_poll_ms).map_err(ConfigError::Invalid)?;
        for (id, url) in &self.dashboard.engine_urls {
            if !self.engines.iter().any(|e| &e.id == id) {
                return Err(ConfigError::Invalid(format!(
                    "dashboard.engine_urls: {id:?} is not a configured engine"
                )));
            }
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(ConfigError::Invalid(format!(
                    "dashboard.engine_urls.{id}: {url:?} is not an http:// or https:// URL"
                )));
            }
        }
        let mut ids = HashSet::new();
        let mut tokens = HashSet::new();
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
            if self
                .admin_token
                .as_ref()
                .is_some_and(|a| a.expose() == e.token.expose())
            {
                return Err(ConfigError::Invalid(format!(
                    "engine {:?}: token is the admin_token; an engine needs a token of its own \
                     (the admin token cannot trade)",
                    e.id
                )));
            }
            let prefix = e.prefix();
            if prefix.is_empty()
                || !prefix
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(ConfigError::Invalid(format!(
                    "engine {:?}: order_prefix {prefix:?} must be non-empty [A-Za-z0-9_-]",
                    e.id
                )));
            }
            if prefix.len() > 8 {
                return Err(ConfigError::Invalid(format!(
                    "engine {:?}: order prefix {prefix:?} is longer than 8 characters",
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
                check_prefixes(a, b)?;
                if a.userref_min <= b.userref_max && b.userref_min <= a.userref_max {
                    return Err(ConfigError::Invalid(format!(
                        "engines {:?} and {:?} have overlapping userref ranges",
                        a.id, b.id
                    )));
                }
            }
        }
        if let Some(admin) = &self.admin_token {
            if admin.expose().is_empty() {
                return Err(ConfigError::Invalid(format!(
                    "admin_token is empty, which would turn the admin service off unnoticed: \
                     set a token of at least 8 characters, or remove the key (and leave {} \
                     unset) to run without one",
                    env::ADMIN_TOKEN
                )));
            }
            if admin.expose().len() < 8 {
                return Err(ConfigError::Invalid(
                    "admin_token must be at least 8 characters".into(),
                ));
            }
        }
        let dms = &self.dead_mans_switch;
        if dms.timeout_s == 0 || dms.refresh_s == 0 || dms.refresh_s >= dms.timeout_s {
            return Err(ConfigError::Invalid(format!(
                "dead_mans_switch: refresh_s ({}) must be at least 1 and below timeout_s ({})",
                dms.refresh_s, dms.timeout_s
            )));
        }
        self.risk
            .account
            .validate("risk.account.")
            .map_err(ConfigError::Invalid)?;
        for (id, limits) in &self.risk.engines {
            if !ids.contains(id) {
                return Err(ConfigError::Invalid(format!(
                    "risk.engines.{id}: no engine {id:?} is configured (engines: {})",
                    self.engines
                        .iter()
                        .map(|e| e.id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            limits
                .validate(&format!("risk.engines.{id}."))
                .map_err(ConfigError::Invalid)?;
        }
        if let Some(lease) = &self.lease {
            lease.validate().map_err(ConfigError::Invalid)?;
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

/// Two engines' order prefixes must not overlap: if one began the other,
/// an id of the shorter one's engine would name an order of the longer one's
/// at the venue (`a-` + `b-xyz` is `a-b-` + `xyz`), and after a restart the
/// venue's order could not be told apart by prefix.
fn check_prefixes(a: &EngineEntry, b: &EngineEntry) -> Result<(), ConfigError> {
    let (pa, pb) = (a.prefix(), b.prefix());
    if pa == pb {
        return Err(ConfigError::Invalid(format!(
            "engines {:?} and {:?} have the same order prefix {pa:?}; give each its own \
             order_prefix",
            a.id, b.id
        )));
    }
    let (short, long) = if pa.len() < pb.len() {
        ((a, &pa), (b, &pb))
    } else {
        ((b, &pb), (a, &pa))
    };
    if long.1.starts_with(short.1.as_str()) {
        return Err(ConfigError::Invalid(format!(
            "engines {:?} and {:?} have overlapping order prefixes: {:?} (of {:?}) begins {:?} \
             (of {:?}), so one engine's ids could name the other's orders; no order prefix \
             may begin another (set order_prefix)",
            a.id, b.id, short.1, short.0.id, long.1, long.0.id
        )));
    }
    Ok(())
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
            admin_token: Some(Secret::new("super-secret-admin")),
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

    /// Issue 23, bug 1: an order prefix that begins another engine's lets
    /// one engine name the other's orders; refused at start, naming both.
    #[test]
    fn overlapping_order_prefixes_are_refused_naming_both_engines() {
        let with_prefix = |mut e: EngineEntry, p: &str| {
            e.order_prefix = Some(p.into());
            e
        };
        let cases: Vec<(Vec<EngineEntry>, Option<&[&str]>)> = vec![
            // Default prefixes "a-" and "a-b-".
            (
                vec![
                    engine("a", "token-aaa", 1, 10),
                    engine("a-b", "token-bbb", 11, 20),
                ],
                Some(&["\"a\"", "\"a-b\"", "\"a-\"", "\"a-b-\"", "overlapping"]),
            ),
            // p1's "p0" begins p0's default "p0-" (either order in the file).
            (
                vec![
                    engine("p0", "token-000", 1, 10),
                    with_prefix(engine("p1", "token-111", 11, 20), "p0"),
                ],
                Some(&["\"p0\"", "\"p1\"", "overlapping"]),
            ),
            (
                vec![
                    with_prefix(engine("p1", "token-111", 11, 20), "p0"),
                    engine("p0", "token-000", 1, 10),
                ],
                Some(&["\"p0\"", "\"p1\"", "overlapping"]),
            ),
            (
                vec![
                    with_prefix(engine("x", "token-000", 1, 10), "same-"),
                    with_prefix(engine("y", "token-111", 11, 20), "same-"),
                ],
                Some(&["\"x\"", "\"y\"", "same order prefix"]),
            ),
            (
                vec![with_prefix(engine("x", "token-000", 1, 10), "")],
                Some(&["\"x\"", "order_prefix"]),
            ),
            (
                vec![with_prefix(engine("x", "token-000", 1, 10), "a.b")],
                Some(&["\"x\"", "order_prefix"]),
            ),
            // Neither begins the other: fine.
            (
                vec![
                    engine("a", "token-aaa", 1, 10),
                    engine("b-a", "token-bbb", 11, 20),
                    with_prefix(engine("c", "token-ccc", 21, 30), "ab"),
                ],
                None,
            ),
        ];
        for (engines, want) in cases {
            let ids: Vec<String> = engines.iter().map(|e| e.id.clone()).collect();
            let cfg = GatewayConfig {
                engines,
                ..GatewayConfig::default()
            };
            match (cfg.validate(), want) {
                (Ok(()), None) => {}
                (Err(e), Some(words)) => {
                    for w in words {
                        assert!(e.to_string().contains(w), "{ids:?}: {e} should mention {w}");
                    }
                }
                (got, want) => panic!("{ids:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    /// Issue 23, bug 3: an engine token equal to the admin token, and an
    /// empty admin token, are refused at start; an absent one means no admin.
    #[test]
    fn admin_token_rules() {
        let cfg = |admin: Option<&str>| GatewayConfig {
            admin_token: admin.map(Secret::new),
            engines: vec![
                engine("e0", "token-000", 1, 10),
                engine("e1", "token-111", 11, 20),
            ],
            ..GatewayConfig::default()
        };
        let e = cfg(Some("token-111")).validate().unwrap_err().to_string();
        assert!(e.contains("\"e1\"") && e.contains("admin_token"), "{e}");
        let e = cfg(Some("")).validate().unwrap_err().to_string();
        assert!(e.contains("admin_token is empty"), "{e}");
        cfg(None).validate().unwrap();
        cfg(Some("admin-token")).validate().unwrap();
        // From the file and from the environment alike.
        let from_file: GatewayConfig = toml::from_str("admin_token = \"\"").unwrap();
        assert!(from_file.validate().is_err());
        let absent: GatewayConfig = toml::from_str("").unwrap();
        assert!(absent.admin_token.is_none());
        let mut from_env = cfg(None);
        from_env
            .apply_env(|k| (k == env::ADMIN_TOKEN).then(String::new))
            .unwrap();
        assert!(from_env.validate().is_err());
        from_env
            .apply_env(|k| (k == env::ADMIN_TOKEN).then(|| "token-000".to_string()))
            .unwrap();
        let e = from_env.validate().unwrap_err().to_string();
        assert!(e.contains("\"e0\"") && e.contains("admin_token"), "{e}");
    }

    /// Issue 23, bug 6: a typo at any level of the gateway's config is
    /// `[risk]`: limits of an engine that is not configured, and a limit
    /// that is not positive, are refused naming the key.
    #[test]
    fn risk_limits_are_validated() {
        let base = "[[engines]]\nid = \"e0\"\ntoken = \"engine-token\"\nuserref_min = 1\nuserref_max = 9\n";
        let ok: GatewayConfig = toml::from_str(&format!(
            "{base}[risk.engines.e0]\nmax_order_notional = \"500\"\nmax_open_orders = 3\n[risk.engines.e0.actions]\ndaily_loss = \"halt_flatten\"\n"
        ))
        .unwrap();
        ok.validate().unwrap();
        assert_eq!(
            ok.risk.engines["e0"].actions.daily_loss,
            crate::risk::BreachAction::HaltFlatten
        );
        let unknown: GatewayConfig = toml::from_str(&format!(
            "{base}[risk.engines.e9]\nmax_order_volume = \"1\"\n"
        ))
        .unwrap();
        let e = unknown.validate().unwrap_err().to_string();
        assert!(e.contains("risk.engines.e9"), "{e}");
        let negative: GatewayConfig =
            toml::from_str(&format!("{base}[risk.account]\nmax_daily_loss = \"-5\"\n")).unwrap();
        let e = negative.validate().unwrap_err().to_string();
        assert!(e.contains("risk.account.max_daily_loss"), "{e}");
        assert!(
            toml::from_str::<GatewayConfig>("[risk.account]\nmax_drawdown = \"NaN\"\n").is_err()
        );
    }

    /// refused, naming the file, the key, where it is and the closest known
    /// key. (file text, unknown key, where, suggestion)
    #[test]
    fn unknown_keys_are_refused_at_every_level() {
        let cases: &[herd_proto::config::UnknownKeyCase<'_>] = &[
            (
                "admin_tokn = \"admin-token\"\n",
                "admin_tokn",
                "at the top level",
                Some("admin_token"),
            ),
            (
                "poll_interval = 5\n",
                "poll_interval",
                "at the top level",
                Some("poll_interval_ms"),
            ),
            (
                "[krakn]\ntier = \"pro\"\n",
                "krakn",
                "at the top level",
                Some("kraken"),
            ),
            (
                "admin_token = \"admin-token\"\n[[engines]]\nid = \"e0\"\ntokn = \"engine-token\"\n",
                "tokn",
                "in [engines]",
                Some("token"),
            ),
            (
                "[[engines]]\nid = \"e0\"\norder_prefx = \"x-\"\n",
                "order_prefx",
                "in [engines]",
                Some("order_prefix"),
            ),
            (
                "[paper]\nstep_mss = 5\n",
                "step_mss",
                "in [paper]",
                Some("step_ms"),
            ),
            (
                "[risk.account]\nmax_order_notionl = \"5\"\n",
                "max_order_notionl",
                "in [risk.account]",
                Some("max_order_notional"),
            ),
            (
                "[risk.engines.e0.actions]\ndaily_los = \"halt\"\n",
                "daily_los",
                "in [risk.engines.e0.actions]",
                Some("daily_loss"),
            ),
            (
                "[paper]\nhistroy_minutes = 5\n",
                "histroy_minutes",
                "in [paper]",
                Some("history_minutes"),
            ),
            ("[paper]\nwhatever = 5\n", "whatever", "in [paper]", None),
            (
                "[[paper.instruments]]\nsymbol = \"X\"\ntick_sze = \"0.1\"\n",
                "tick_sze",
                "in [paper.instruments]",
                Some("tick_size"),
            ),
            (
                "[[paper.instruments]]\nsymbol = \"X\"\n[paper.instruments.path]\nvolatilty = 0.1\n",
                "volatilty",
                "in [paper.instruments.path]",
                Some("volatility"),
            ),
            (
                "[[paper.instruments]]\nsymbol = \"X\"\n[paper.instruments.perp]\nfunding_interval_hour = 1\n",
                "funding_interval_hour",
                "in [paper.instruments.perp]",
                Some("funding_interval_hours"),
            ),
            (
                "[[paper.instruments]]\nsymbol = \"X\"\n[paper.instruments.perp.funding]\nstart_rat = \"0.1\"\n",
                "start_rat",
                "in [paper.instruments.perp.funding]",
                Some("start_rate"),
            ),
            (
                "[dead_mans_switch]\ntimeout = 5\n",
                "timeout",
                "in [dead_mans_switch]",
                Some("timeout_s"),
            ),
            (
                "[kraken]\nteir = \"pro\"\n",
                "teir",
                "in [kraken]",
                Some("tier"),
            ),
            (
                "[bybit]\nrecv_window = 5\n",
                "recv_window",
                "in [bybit]",
                Some("recv_window_ms"),
            ),
            (
                "[bybit.fees]\nspot_makr = \"0.1\"\n",
                "spot_makr",
                "in [bybit.fees]",
                Some("spot_maker"),
            ),
            (
                "venue = \"krakn\"\n",
                "krakn",
                "at the top level",
                Some("kraken"),
            ),
        ];
        let dir = tempfile::tempdir().unwrap();
        let failures = herd_proto::config::unknown_key_failures(dir.path(), cases, |p| {
            GatewayConfig::load(Some(p))
        });
        assert!(failures.is_empty(), "{failures:#?}");
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
