//! Where herd events go besides the feed (docs/events.md, "Sinks"): a
//! generic webhook (JSON, `Idempotency-Key`, HMAC-SHA256 signature over the
//! exact body), Slack and Discord incoming webhooks and Telegram's
//! `sendMessage`, and a NATS JetStream subject.
//!
//! Each sink has its own durable outbox (`sink_outbox`, filled by the event
//! log's writer in the transaction that logs the event, so a kill -9 loses
//! nothing) and one delivery task: oldest first, at least once, with
//! exponential backoff and jitter; after `max_attempts` an event becomes a
//! dead letter (kept, counted, no longer blocking the ones behind it). The
//! outbox is bounded: past `queue_limit` the writer drops the least severe,
//! oldest events first and never a critical one, and counts the drops.
//! Delivery runs on its own tasks: a slow sink never slows trading.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use herd_proto::Secret;
use herd_proto::config::ConfigError;
use herd_proto::events::{Filter, parse_severity, severity_name, to_json};
use herd_proto::gateway::{self as pb, HerdEvent};
use hmac::{Hmac, Mac};
use prost::Message;
use serde::Deserialize;
use sha2::Sha256;
use sqlx::{Row, SqlitePool};
use tokio::sync::watch;

/// What a sink speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SinkKind {
    Webhook,
    Slack,
    Discord,
    Telegram,
    /// A JetStream subject: `<subject>.<kind>`, the event's JSON, the
    /// `Nats-Msg-Id` header = the event id (JetStream's dedup window drops
    /// a retry), each publish acknowledged by the stream.
    Nats,
}

impl SinkKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SinkKind::Webhook => "webhook",
            SinkKind::Slack => "slack",
            SinkKind::Discord => "discord",
            SinkKind::Telegram => "telegram",
            SinkKind::Nats => "nats",
        }
    }
}

/// One `[[events.sinks]]` table.
#[derive(Clone, serde::Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    /// Unique; names the sink in metrics, `herdctl events --sinks` and errors.
    pub name: String,
    #[serde(rename = "type")]
    pub kind: SinkKind,
    /// Webhook, Slack and Discord: where to POST (Slack's and Discord's URLs
    /// are secrets: prefer `url_file`).
    #[serde(default)]
    pub url: Secret,
    #[serde(default)]
    pub url_file: Option<PathBuf>,
    /// Webhook: the shared HMAC-SHA256 secret (file or environment variable).
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    #[serde(default)]
    pub secret_env: Option<String>,
    /// Telegram: the Bot API base URL (tests point it at a fake).
    #[serde(default = "default_telegram_base")]
    pub base_url: String,
    /// Telegram: the bot token (file or environment variable) and chat.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    #[serde(default)]
    pub token_env: Option<String>,
    #[serde(default)]
    pub chat_id: String,
    /// NATS: events go to `<subject>.<kind>`.
    #[serde(default = "default_subject")]
    pub subject: String,
    /// NATS: a JetStream stream over `<subject>.>` created when missing
    /// (empty: one must already capture the subject).
    #[serde(default)]
    pub stream: String,
    /// Filter: at least this severe (info, notice, warning, critical).
    #[serde(default = "default_min_severity")]
    pub min_severity: String,
    #[serde(default)]
    pub kinds: Vec<String>,
    #[serde(default)]
    pub engines: Vec<String>,
    /// Deliveries a minute at most (0 = unlimited).
    #[serde(default)]
    pub rate_per_minute: u32,
    /// Chat sinks: events joined into one message at most (webhooks send
    /// one event a request, so each keeps its own idempotency key).
    #[serde(default = "default_batch")]
    pub batch_max: u32,
    /// Attempts before an event is a dead letter.
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    /// Backoff: the first retry waits about this long, doubling up to
    /// `retry_max_ms` (each wait jittered to 50-100 %).
    #[serde(default = "default_retry_base")]
    pub retry_base_ms: u64,
    #[serde(default = "default_retry_max")]
    pub retry_max_ms: u64,
    /// Events waiting at most; beyond, the least severe oldest are dropped
    /// (never critical ones).
    #[serde(default = "default_queue_limit")]
    pub queue_limit: u64,
    /// Per request.
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// Resolved at load from url/url_file, secret_*, token_*.
    #[serde(skip_deserializing)]
    pub resolved: Resolved,
}

/// Secrets read at start (never printed).
#[derive(Clone, Default, serde::Serialize)]
pub struct Resolved {
    pub url: Secret,
    pub secret: Option<Secret>,
    pub token: Secret,
}

impl std::fmt::Debug for SinkConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SinkConfig")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("min_severity", &self.min_severity)
            .finish_non_exhaustive()
    }
}

impl PartialEq for SinkConfig {
    fn eq(&self, other: &SinkConfig) -> bool {
        self.name == other.name && self.kind == other.kind
    }
}

fn default_telegram_base() -> String {
    "https://api.telegram.org".into()
}
fn default_subject() -> String {
    "herd.events".into()
}
fn default_min_severity() -> String {
    "notice".into()
}
fn default_batch() -> u32 {
    10
}
fn default_attempts() -> u32 {
    12
}
fn default_retry_base() -> u64 {
    1_000
}
fn default_retry_max() -> u64 {
    300_000
}
fn default_queue_limit() -> u64 {
    10_000
}
fn default_timeout() -> u64 {
    10_000
}

fn read_secret(key: &str, path: &std::path::Path) -> Result<Secret, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|cause| {
        ConfigError::Invalid(format!("{key}: cannot read {}: {cause}", path.display()))
    })?;
    let t = text.trim();
    if t.is_empty() {
        return Err(ConfigError::Invalid(format!(
            "{key}: {} is empty",
            path.display()
        )));
    }
    Ok(Secret::new(t))
}

fn env_secret(
    key: &str,
    name: &str,
    get: &dyn Fn(&str) -> Option<String>,
) -> Result<Secret, ConfigError> {
    match get(name) {
        Some(v) if !v.trim().is_empty() => Ok(Secret::new(v.trim())),
        _ => Err(ConfigError::Invalid(format!(
            "{key}: environment variable {name} is not set"
        ))),
    }
}

impl SinkConfig {
    /// The filter the event log applies before queueing for this sink.
    pub fn filter(&self) -> Filter {
        Filter {
            min_severity: parse_severity(&self.min_severity).map_or(0, |s| s as i32),
            engines: self.engines.clone(),
            kinds: self.kinds.clone(),
        }
    }

    /// Reads the secrets and checks the table; errors name
    /// `events.sinks[i]` with the sink's name, the key and the problem.
    pub fn resolve(
        &mut self,
        i: usize,
        get: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        let at = format!("events.sinks[{i}] ({:?})", self.name);
        let key = |k: &str| format!("{at}.{k}");
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(ConfigError::Invalid(format!(
                "{}: must be non-empty [A-Za-z0-9_-]",
                key("name")
            )));
        }
        if parse_severity(&self.min_severity).is_none() {
            return Err(ConfigError::Invalid(format!(
                "{}: {:?} is not info, notice, warning or critical",
                key("min_severity"),
                self.min_severity
            )));
        }
        if self.max_attempts == 0 || self.batch_max == 0 || self.queue_limit == 0 {
            return Err(ConfigError::Invalid(format!(
                "{at}: max_attempts, batch_max and queue_limit must be >= 1"
            )));
        }
        let url = match (&self.url_file, self.url.expose().is_empty()) {
            (Some(p), _) => read_secret(&key("url_file"), p)?,
            (None, _) => self.url.clone(),
        };
        match self.kind {
            SinkKind::Webhook | SinkKind::Slack | SinkKind::Discord => {
                check_url(
                    &key(if self.url_file.is_some() {
                        "url_file"
                    } else {
                        "url"
                    }),
                    url.expose(),
                )?;
                self.resolved.url = url;
            }
            SinkKind::Nats => {
                let k = key(if self.url_file.is_some() {
                    "url_file"
                } else {
                    "url"
                });
                match reqwest::Url::parse(url.expose()) {
                    Ok(u) if matches!(u.scheme(), "nats" | "tls") && u.host().is_some() => {}
                    _ => {
                        return Err(ConfigError::Invalid(format!(
                            "{k}: must be nats://host:port (or tls://)"
                        )));
                    }
                }
                if self.subject.is_empty()
                    || self
                        .subject
                        .contains(|c: char| c.is_whitespace() || c == '*' || c == '>')
                {
                    return Err(ConfigError::Invalid(format!(
                        "{}: a subject without spaces or wildcards",
                        key("subject")
                    )));
                }
                self.resolved.url = url;
            }
            SinkKind::Telegram => {
                check_url(&key("base_url"), &self.base_url)?;
                if self.chat_id.trim().is_empty() {
                    return Err(ConfigError::Invalid(format!(
                        "{}: required",
                        key("chat_id")
                    )));
                }
                self.resolved.token = match (&self.token_file, &self.token_env) {
                    (Some(p), _) => read_secret(&key("token_file"), p)?,
                    (None, Some(n)) => env_secret(&key("token_env"), n, get)?,
                    (None, None) => {
                        return Err(ConfigError::Invalid(format!(
                            "{at}: a telegram sink needs token_file or token_env"
                        )));
                    }
                };
            }
        }
        self.resolved.secret = match (&self.secret_file, &self.secret_env) {
            (Some(p), _) => Some(read_secret(&key("secret_file"), p)?),
            (None, Some(n)) => Some(env_secret(&key("secret_env"), n, get)?),
            (None, None) => None,
        };
        Ok(())
    }
}

/// An http(s) URL with a host; the message never repeats the URL (a Slack
/// or Discord webhook URL is a credential).
fn check_url(key: &str, url: &str) -> Result<(), ConfigError> {
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(()),
        Ok(u) => Err(ConfigError::Invalid(format!(
            "{key}: must be an http(s) URL with a host (scheme is {:?})",
            u.scheme()
        ))),
        Err(e) if url.is_empty() => Err(ConfigError::Invalid(format!("{key}: required ({e})"))),
        Err(e) => Err(ConfigError::Invalid(format!("{key}: not a URL: {e}"))),
    }
}

/// Checks sinks as a list (names unique) and resolves each.
pub fn resolve_all(
    sinks: &mut [SinkConfig],
    get: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    let mut names = std::collections::HashSet::new();
    for (i, s) in sinks.iter_mut().enumerate() {
        s.resolve(i, get)?;
        if !names.insert(s.name.clone()) {
            return Err(ConfigError::Invalid(format!(
                "events.sinks[{i}].name: {:?} appears twice",
                s.name
            )));
        }
    }
    Ok(())
}

/// Counters of one sink (metrics, `ListEventSinks`).
#[derive(Debug, Default)]
pub struct SinkStats {
    pub delivered: AtomicU64,
    pub failures: AtomicU64,
    pub dead: AtomicU64,
    pub dropped: AtomicU64,
    pub last_error: std::sync::Mutex<String>,
}

/// Every sink's counters by name.
pub type Stats = Arc<BTreeMap<String, Arc<SinkStats>>>;

/// What the log's writer needs to queue for sinks.
#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    pub filter: Filter,
    pub queue_limit: i64,
    pub stats: Arc<SinkStats>,
}

/// Counters for `sinks`: a sink that was in `old` keeps its counters.
pub fn stats_for(sinks: &[SinkConfig], old: Option<&Stats>) -> Stats {
    Arc::new(
        sinks
            .iter()
            .map(|s| {
                let kept = old.and_then(|o| o.get(&s.name)).cloned();
                (s.name.clone(), kept.unwrap_or_default())
            })
            .collect(),
    )
}

/// What the log's writer queues for `sinks`.
pub fn routes_for(sinks: &[SinkConfig], stats: &Stats) -> Vec<Route> {
    sinks
        .iter()
        .filter_map(|s| {
            Some(Route {
                name: s.name.clone(),
                filter: s.filter(),
                queue_limit: i64::try_from(s.queue_limit).unwrap_or(i64::MAX),
                stats: stats.get(&s.name)?.clone(),
            })
        })
        .collect()
}

/// The delivery task of every configured sink. A configuration reload
/// ([`Supervisor::apply`]) restarts the sinks whose table changed (secrets
/// read from files and the environment included), starts new ones and
/// stops removed ones; the others go on untouched. A restarted sink resumes
/// from its durable outbox, so nothing queued is lost; a removed sink's
/// outbox stays in the file (it resumes if the sink comes back).
pub struct Supervisor {
    log: Arc<crate::events::EventLog>,
    http: reqwest::Client,
    running: std::sync::Mutex<BTreeMap<String, (serde_json::Value, tokio::task::AbortHandle)>>,
}

/// What [`Supervisor::apply`] did, by sink name.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Applied {
    pub started: Vec<String>,
    pub restarted: Vec<String>,
    pub stopped: Vec<String>,
}

impl Supervisor {
    pub fn new(log: Arc<crate::events::EventLog>, http: reqwest::Client) -> Supervisor {
        Supervisor {
            log,
            http,
            running: std::sync::Mutex::new(BTreeMap::new()),
        }
    }

    /// Makes the running workers those of `sinks` (with `stats`), and the
    /// log's routes theirs.
    pub fn apply(&self, sinks: &[SinkConfig], stats: &Stats) -> Applied {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let mut done = Applied::default();
        let wanted: std::collections::BTreeSet<&str> =
            sinks.iter().map(|s| s.name.as_str()).collect();
        let gone: Vec<String> = running
            .keys()
            .filter(|n| !wanted.contains(n.as_str()))
            .cloned()
            .collect();
        for name in gone {
            if let Some((_, task)) = running.remove(&name) {
                task.abort();
            }
            done.stopped.push(name);
        }
        for s in sinks {
            let shape = serde_json::to_value(s).unwrap_or_default();
            match running.get(&s.name) {
                Some((old, _)) if *old == shape => continue,
                Some((_, task)) => {
                    task.abort();
                    done.restarted.push(s.name.clone());
                }
                None => done.started.push(s.name.clone()),
            }
            let Some(st) = stats.get(&s.name) else {
                continue;
            };
            let task = tokio::spawn(
                Worker {
                    cfg: s.clone(),
                    pool: self.log.pool().clone(),
                    stats: st.clone(),
                    wake: self.log.subscribe(),
                    http: self.http.clone(),
                }
                .run(),
            );
            running.insert(s.name.clone(), (shape, task.abort_handle()));
        }
        self.log.set_routes(routes_for(sinks, stats));
        done
    }

    /// Stops every worker (shutdown, after the log's last flush).
    pub fn stop_all(&self) {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        for (_, (_, task)) in std::mem::take(&mut *running) {
            task.abort();
        }
    }
}

/// Workers never outlive their supervisor (a start that fails after the
/// sinks started does not leave them running).
impl Drop for Supervisor {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// The tables (created with the event log's).
pub const DDL: &str = "CREATE TABLE IF NOT EXISTS sink_outbox (sink TEXT NOT NULL, \
     seq INTEGER NOT NULL, severity INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, \
     next_at_ms INTEGER NOT NULL DEFAULT 0, dead INTEGER NOT NULL DEFAULT 0, body BLOB NOT NULL, \
     last_error TEXT NOT NULL DEFAULT '', PRIMARY KEY (sink, seq))";

/// Queues a newly logged event (sequence `seq`) for every sink that wants
/// it, then bounds each queue. Runs inside the log writer's transaction.
pub async fn enqueue(
    tx: &mut sqlx::SqliteConnection,
    routes: &[Route],
    seq: i64,
    e: &HerdEvent,
    body: &[u8],
) -> Result<(), sqlx::Error> {
    for r in routes.iter().filter(|r| r.filter.matches(e)) {
        sqlx::query(
            "INSERT OR IGNORE INTO sink_outbox (sink, seq, severity, body) VALUES (?, ?, ?, ?)",
        )
        .bind(&r.name)
        .bind(seq)
        .bind(e.severity)
        .bind(body)
        .execute(&mut *tx)
        .await?;
        let waiting: i64 =
            sqlx::query("SELECT COUNT(*) AS n FROM sink_outbox WHERE sink = ? AND dead = 0")
                .bind(&r.name)
                .fetch_one(&mut *tx)
                .await?
                .try_get("n")?;
        if waiting > r.queue_limit {
            let dropped = sqlx::query(
                "DELETE FROM sink_outbox WHERE rowid IN (SELECT rowid FROM sink_outbox \
                 WHERE sink = ? AND dead = 0 AND severity < ? ORDER BY severity, seq LIMIT ?)",
            )
            .bind(&r.name)
            .bind(pb::Severity::Critical as i32)
            .bind(waiting - r.queue_limit)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            r.stats.dropped.fetch_add(dropped, Ordering::Relaxed);
        }
    }
    Ok(())
}

/// The one line a chat sink shows for an event.
pub fn chat_line(e: &HerdEvent) -> String {
    let sev = severity_name(e.severity).to_ascii_uppercase();
    let who = if e.engine.is_empty() {
        e.source.clone()
    } else {
        e.engine.clone()
    };
    format!("[{sev}] {who} {}: {}", e.kind, e.message)
}

/// The webhook body of one event: its JSON, exactly as signed.
pub fn webhook_body(e: &HerdEvent) -> Vec<u8> {
    to_json(e).to_string().into_bytes()
}

/// `sha256=<hex>` of HMAC-SHA256(secret, body).
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    // HMAC takes a key of any length; the error branch cannot happen.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(body);
    let sig: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={sig}")
}

/// Slack's incoming-webhook body.
pub fn slack_body(events: &[HerdEvent]) -> serde_json::Value {
    let text: Vec<String> = events.iter().map(chat_line).collect();
    serde_json::json!({ "text": text.join("\n") })
}

/// Discord's webhook body (content is at most 2000 characters).
pub fn discord_body(events: &[HerdEvent]) -> serde_json::Value {
    let text: Vec<String> = events.iter().map(chat_line).collect();
    let content: String = text.join("\n").chars().take(2000).collect();
    serde_json::json!({ "content": content, "username": "Herd" })
}

/// Telegram's sendMessage body (text is at most 4096 characters).
pub fn telegram_body(chat_id: &str, events: &[HerdEvent]) -> serde_json::Value {
    let text: Vec<String> = events.iter().map(chat_line).collect();
    let text: String = text.join("\n").chars().take(4096).collect();
    serde_json::json!({ "chat_id": chat_id, "text": text, "disable_web_page_preview": true })
}

/// Header names of the webhook.
pub const IDEMPOTENCY_KEY: &str = "Idempotency-Key";
pub const SIGNATURE: &str = "X-Herd-Signature";

/// One sink's delivery task.
pub struct Worker {
    pub cfg: SinkConfig,
    pub pool: SqlitePool,
    pub stats: Arc<SinkStats>,
    pub wake: watch::Receiver<u64>,
    pub http: reqwest::Client,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A number in [0, 1) for the backoff's jitter.
fn jitter() -> f64 {
    use rand::{Rng, SeedableRng};
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    rand::rngs::SmallRng::seed_from_u64(seed).random::<f64>()
}

/// The wait before attempt `attempts + 1`: base * 2^attempts, capped,
/// jittered to 50-100 % so many gateways do not retry in step.
pub fn backoff_ms(cfg: &SinkConfig, attempts: u32, jitter: f64) -> u64 {
    let exp = cfg
        .retry_base_ms
        .saturating_mul(1u64 << attempts.min(30))
        .min(cfg.retry_max_ms);
    // jitter in [0, 1): the wait is between half and all of `exp`.
    let f = 0.5 + 0.5 * jitter.clamp(0.0, 1.0);
    (exp as f64 * f) as u64
}

impl Worker {
    /// Runs until aborted.
    pub async fn run(mut self) {
        let per = if self.cfg.rate_per_minute == 0 {
            Duration::ZERO
        } else {
            Duration::from_millis(60_000 / u64::from(self.cfg.rate_per_minute))
        };
        let mut last_send: Option<tokio::time::Instant> = None;
        let mut nats: Option<async_nats::jetstream::Context> = None;
        loop {
            self.wake.borrow_and_update();
            let batch = match self.next_batch().await {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(sink = self.cfg.name, error = %e, "sink outbox read failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let Some(head) = batch.first() else {
                if self.wake.changed().await.is_err() {
                    return;
                }
                continue;
            };
            let wait = head.next_at_ms - now_ms();
            if wait > 0 {
                // A retry pause (the head is due later); new events queue
                // behind it, so nothing else needs a wake-up.
                tokio::time::sleep(Duration::from_millis(u64::try_from(wait).unwrap_or(0))).await;
                continue;
            }
            if let Some(at) = last_send {
                tokio::time::sleep_until(at + per).await;
            }
            last_send = Some(tokio::time::Instant::now());
            let events: Vec<HerdEvent> = batch.iter().map(|r| r.event.clone()).collect();
            let seqs: Vec<i64> = batch.iter().map(|r| r.seq).collect();
            match self.deliver(&events, &mut nats).await {
                Ok(()) => {
                    if let Err(e) = self.done(&seqs).await {
                        tracing::error!(sink = self.cfg.name, error = %e, "sink outbox write failed");
                    }
                    self.stats
                        .delivered
                        .fetch_add(seqs.len() as u64, Ordering::Relaxed);
                }
                Err(why) => {
                    self.stats.failures.fetch_add(1, Ordering::Relaxed);
                    *self
                        .stats
                        .last_error
                        .lock()
                        .unwrap_or_else(|p| p.into_inner()) = why.clone();
                    let attempts = head.attempts + 1;
                    tracing::warn!(sink = self.cfg.name, attempts, error = %why, "sink delivery failed");
                    if let Err(e) = self.failed(&seqs, attempts, &why).await {
                        tracing::error!(sink = self.cfg.name, error = %e, "sink outbox write failed");
                    }
                }
            }
        }
    }

    async fn next_batch(&self) -> anyhow::Result<Vec<Row_>> {
        let n = match self.cfg.kind {
            SinkKind::Webhook | SinkKind::Nats => 1,
            _ => self.cfg.batch_max,
        };
        let rows = sqlx::query(
            "SELECT seq, attempts, next_at_ms, body FROM sink_outbox WHERE sink = ? AND dead = 0 \
             ORDER BY seq LIMIT ?",
        )
        .bind(&self.cfg.name)
        .bind(i64::from(n))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let body: Vec<u8> = r.try_get("body")?;
                let seq: i64 = r.try_get("seq")?;
                let mut event = HerdEvent::decode(body.as_slice())?;
                event.sequence = u64::try_from(seq).unwrap_or(0);
                Ok(Row_ {
                    seq,
                    attempts: u32::try_from(r.try_get::<i64, _>("attempts")?).unwrap_or(0),
                    next_at_ms: r.try_get("next_at_ms")?,
                    event,
                })
            })
            .collect()
    }

    async fn done(&self, seqs: &[i64]) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        for s in seqs {
            sqlx::query("DELETE FROM sink_outbox WHERE sink = ? AND seq = ?")
                .bind(&self.cfg.name)
                .bind(s)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await
    }

    async fn failed(&self, seqs: &[i64], attempts: u32, why: &str) -> Result<(), sqlx::Error> {
        let dead = attempts >= self.cfg.max_attempts;
        let next = now_ms()
            + i64::try_from(backoff_ms(&self.cfg, attempts - 1, jitter())).unwrap_or(i64::MAX / 2);
        let mut tx = self.pool.begin().await?;
        for s in seqs {
            sqlx::query(
                "UPDATE sink_outbox SET attempts = ?, next_at_ms = ?, dead = ?, last_error = ? \
                 WHERE sink = ? AND seq = ?",
            )
            .bind(i64::from(attempts))
            .bind(next)
            .bind(i64::from(dead))
            .bind(why)
            .bind(&self.cfg.name)
            .bind(s)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        if dead {
            self.stats
                .dead
                .fetch_add(seqs.len() as u64, Ordering::Relaxed);
            tracing::error!(
                sink = self.cfg.name,
                events = seqs.len(),
                "sink gave up: dead letter"
            );
        }
        Ok(())
    }

    /// One delivery; the error says why without the URL or any secret.
    async fn deliver(
        &self,
        events: &[HerdEvent],
        nats: &mut Option<async_nats::jetstream::Context>,
    ) -> Result<(), String> {
        let timeout = Duration::from_millis(self.cfg.timeout_ms);
        let r = &self.cfg.resolved;
        let req = match self.cfg.kind {
            SinkKind::Nats => {
                let Some(e) = events.first() else {
                    return Ok(());
                };
                let sent = tokio::time::timeout(timeout, self.publish_nats(e, nats)).await;
                let result = match sent {
                    Ok(r) => r,
                    Err(_) => Err(format!(
                        "no answer from NATS within {} ms",
                        self.cfg.timeout_ms
                    )),
                };
                if result.is_err() {
                    // Connect afresh next time.
                    *nats = None;
                }
                return result;
            }
            SinkKind::Webhook => {
                let Some(e) = events.first() else {
                    return Ok(());
                };
                let body = webhook_body(e);
                let mut req = self
                    .http
                    .post(r.url.expose())
                    .header("Content-Type", "application/json")
                    .header(IDEMPOTENCY_KEY, &e.id);
                if let Some(s) = &r.secret {
                    req = req.header(SIGNATURE, signature(s.expose().as_bytes(), &body));
                }
                req.body(body)
            }
            SinkKind::Slack => self.http.post(r.url.expose()).json(&slack_body(events)),
            SinkKind::Discord => self.http.post(r.url.expose()).json(&discord_body(events)),
            SinkKind::Telegram => {
                let url = format!(
                    "{}/bot{}/sendMessage",
                    self.cfg.base_url.trim_end_matches('/'),
                    r.token.expose()
                );
                self.http
                    .post(url)
                    .json(&telegram_body(&self.cfg.chat_id, events))
            }
        };
        let resp = req
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| e.without_url().to_string())?;
        let status = resp.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("answered HTTP {}", status.as_u16()))
        }
    }
}

impl Worker {
    async fn publish_nats(
        &self,
        e: &HerdEvent,
        nats: &mut Option<async_nats::jetstream::Context>,
    ) -> Result<(), String> {
        let js = match nats {
            Some(js) => js.clone(),
            None => {
                let client = async_nats::ConnectOptions::new()
                    .connection_timeout(Duration::from_millis(self.cfg.timeout_ms))
                    .connect(self.cfg.resolved.url.expose())
                    .await
                    // The kind only: the URL may carry credentials.
                    .map_err(|x| format!("cannot connect to NATS: {:?}", x.kind()))?;
                let js = async_nats::jetstream::new(client);
                if !self.cfg.stream.is_empty() {
                    js.get_or_create_stream(async_nats::jetstream::stream::Config {
                        name: self.cfg.stream.clone(),
                        subjects: vec![format!("{}.>", self.cfg.subject)],
                        ..Default::default()
                    })
                    .await
                    .map_err(|x| format!("JetStream stream {}: {x}", self.cfg.stream))?;
                }
                *nats = Some(js.clone());
                js
            }
        };
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, e.id.as_str());
        let ack = js
            .publish_with_headers(
                format!("{}.{}", self.cfg.subject, e.kind),
                headers,
                webhook_body(e).into(),
            )
            .await
            .map_err(|x| format!("NATS publish: {x}"))?;
        ack.await.map_err(|x| format!("JetStream ack: {x}"))?;
        Ok(())
    }
}

struct Row_ {
    seq: i64,
    attempts: u32,
    next_at_ms: i64,
    event: HerdEvent,
}

/// Puts `sink`'s dead letters back for delivery with their attempts reset;
/// returns how many. The sink's worker must be woken afterwards.
pub async fn redeliver_dead(pool: &SqlitePool, sink: &str) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE sink_outbox SET dead = 0, attempts = 0, next_at_ms = 0, last_error = '' \
         WHERE sink = ? AND dead = 1",
    )
    .bind(sink)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// Pending and dead events of a sink, for `ListEventSinks`.
pub async fn counts(pool: &SqlitePool, sink: &str) -> Result<(u64, u64), sqlx::Error> {
    let row = sqlx::query(
        "SELECT COALESCE(SUM(dead = 0), 0) AS pending, COALESCE(SUM(dead = 1), 0) AS dead \
         FROM sink_outbox WHERE sink = ?",
    )
    .bind(sink)
    .fetch_one(pool)
    .await?;
    let p: i64 = row.try_get("pending")?;
    let d: i64 = row.try_get("dead")?;
    Ok((u64::try_from(p).unwrap_or(0), u64::try_from(d).unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use herd_proto::events::{EventExt, event};

    fn sink(toml_text: &str) -> SinkConfig {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn config_errors_name_the_key_and_never_the_url() {
        let env = |_: &str| None;
        let cases = [
            (
                "name = \"w\"\ntype = \"webhook\"\nurl = \"ftp://hooks.example/secret-path\"",
                "events.sinks[0] (\"w\").url: must be an http(s) URL",
            ),
            (
                "name = \"w\"\ntype = \"slack\"\nurl = \"not a url\"",
                "events.sinks[0] (\"w\").url: not a URL",
            ),
            (
                "name = \"t\"\ntype = \"telegram\"\nchat_id = \"1\"\ntoken_file = \"/nonexistent/bot.token\"",
                "events.sinks[0] (\"t\").token_file: cannot read /nonexistent/bot.token",
            ),
            (
                "name = \"t\"\ntype = \"telegram\"\nchat_id = \"1\"\ntoken_env = \"HERD_TEST_NO_SUCH_VAR\"",
                "token_env: environment variable HERD_TEST_NO_SUCH_VAR is not set",
            ),
            (
                "name = \"w\"\ntype = \"webhook\"\nurl = \"http://x\"\nmin_severity = \"loud\"",
                "min_severity: \"loud\"",
            ),
            (
                "name = \"bus\"\ntype = \"nats\"\nurl = \"http://127.0.0.1:4222\"",
                "events.sinks[0] (\"bus\").url: must be nats://host:port",
            ),
            (
                "name = \"bus\"\ntype = \"nats\"\nurl = \"nats://127.0.0.1:4222\"\nsubject = \"a.*\"",
                "subject: a subject without spaces or wildcards",
            ),
        ];
        for (text, want) in cases {
            let err = resolve_all(&mut [sink(text)], &env)
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{text}\n-> {err}");
            assert!(!err.contains("secret-path"), "{err}");
        }
    }

    #[test]
    fn chat_payloads_have_their_documented_shapes() {
        let e = event(
            "i",
            1,
            "gateway",
            "lockout",
            pb::Severity::Critical,
            "locked out",
        )
        .with_engine("e0");
        assert_eq!(chat_line(&e), "[CRITICAL] e0 lockout: locked out");
        let s = slack_body(std::slice::from_ref(&e));
        assert_eq!(
            s,
            serde_json::json!({"text": "[CRITICAL] e0 lockout: locked out"})
        );
        let d = discord_body(&[e.clone(), e.clone()]);
        assert_eq!(
            d["content"],
            "[CRITICAL] e0 lockout: locked out\n[CRITICAL] e0 lockout: locked out"
        );
        let t = telegram_body("42", &[e]);
        assert_eq!(t["chat_id"], "42");
        assert!(t["text"].as_str().unwrap().starts_with("[CRITICAL]"));
    }

    #[test]
    fn backoff_doubles_caps_and_jitters_down_to_half() {
        let cfg =
            sink("name = \"w\"\ntype = \"webhook\"\nretry_base_ms = 100\nretry_max_ms = 1000");
        assert_eq!(backoff_ms(&cfg, 0, 1.0), 100);
        assert_eq!(backoff_ms(&cfg, 2, 1.0), 400);
        assert_eq!(backoff_ms(&cfg, 10, 1.0), 1000);
        assert_eq!(backoff_ms(&cfg, 2, 0.0), 200);
    }

    #[tokio::test]
    async fn a_full_queue_drops_the_least_severe_oldest_never_critical_and_dead_letters_stay() {
        use pb::Severity::{Critical, Info, Notice};
        let stats = Arc::new(SinkStats::default());
        let route = Route {
            name: "w".into(),
            filter: Filter::default(),
            queue_limit: 3,
            stats: stats.clone(),
        };
        let log = crate::events::EventLog::open(
            None,
            &crate::events::EventsConfig::default(),
            "t",
            vec![route],
        )
        .await
        .unwrap();
        let ev = |id: &str, sev| event(id, now_ms(), "gateway", "x", sev, "m");
        log.append_durable(vec![
            ev("c1", Critical),
            ev("i1", Info),
            ev("n1", Notice),
            ev("i2", Info),
            ev("c2", Critical),
            ev("c3", Critical),
            ev("c4", Critical),
        ])
        .await
        .unwrap();
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT e.id FROM sink_outbox s JOIN herd_events e ON e.seq = s.seq ORDER BY s.seq",
        )
        .fetch_all(log.pool())
        .await
        .unwrap();
        // i1, then i2 (info first), then n1 went; critical ones are never
        // dropped, even past the limit.
        assert_eq!(ids, ["c1", "c2", "c3", "c4"]);
        assert_eq!(stats.dropped.load(Ordering::Relaxed), 3);

        let (tx, rx) = watch::channel(0);
        let w = Worker {
            cfg: sink("name = \"w\"\ntype = \"webhook\"\nmax_attempts = 2"),
            pool: log.pool().clone(),
            stats: stats.clone(),
            wake: rx,
            http: reqwest::Client::new(),
        };
        let head: Vec<i64> = w
            .next_batch()
            .await
            .unwrap()
            .iter()
            .map(|r| r.seq)
            .collect();
        w.failed(&head, 1, "answered HTTP 503").await.unwrap();
        assert_eq!(counts(log.pool(), "w").await.unwrap(), (4, 0));
        w.failed(&head, 2, "answered HTTP 503").await.unwrap();
        assert_eq!(
            counts(log.pool(), "w").await.unwrap(),
            (3, 1),
            "a dead letter is kept"
        );
        assert_eq!(stats.dead.load(Ordering::Relaxed), 1);
        let next = w.next_batch().await.unwrap();
        assert_eq!(
            next[0].event.id, "c2",
            "the dead letter no longer blocks the rest"
        );
        drop(tx);
    }

    #[test]
    fn the_signature_is_hmac_sha256_of_the_body() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
