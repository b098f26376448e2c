//! The herd's event feed (docs/events.md): a bounded durable log of
//! [`HerdEvent`]s in the gateway's SQLite store, what the gateway itself
//! produces, what engines publish (deduplicated by id), and the
//! `StreamHerdEvents` reader.
//!
//! Producers never wait: [`Emitter::emit`] queues the event for one writer
//! task that commits what is waiting in one transaction (`INSERT OR IGNORE`
//! on the id, so an id logged once is never logged again), prunes by count
//! and age, and then wakes the readers. Engines' `PublishHerdEvents` waits
//! for its commit, so an engine deletes its outbox only after the gateway
//! has the events durably.

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use herd_proto::events::{EventExt, Filter, GATEWAY_SOURCE, event, kind};
use herd_proto::gateway::{self as pb, HerdEvent, Severity};
use prost::Message;
use serde::Deserialize;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

/// The gateway's one SQLite file in `state_dir` (named when risk was its
/// only user); the event tables sit beside the risk tables.
pub const DB_FILE: &str = "risk.sqlite";

/// How long the event log's writer gathers events after a batch's first
/// (the fills ledger, which engines' streams wait on, keeps the 2 ms
/// `risk_store::GROUP_COMMIT`). Nothing waits on a gateway event one by one
/// (a durable append and a flush still commit at once), and each commit
/// writes its pages once whatever it carries: under 32 callers SQLite's work
/// behind the gateway's two writers was about a quarter of its CPU at 2 ms,
/// much of it per commit (docs/benchmarks.md, issue 16). A reader or sink
/// sees an event up to this much later; a crash loses at most this window of
/// queued gateway events, as it lost the 2 ms one before.
pub const EVENT_WINDOW: Duration = Duration::from_millis(10);

/// `[events]` in the gateway config.
#[derive(Debug, Clone, PartialEq, serde::Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventsConfig {
    /// The log keeps at most this many events (oldest go first).
    pub max_count: u64,
    /// ... and none older than this many hours.
    pub max_age_hours: u64,
    /// An engine whose order stream has been gone this long is an
    /// `engine_gone` event (warning).
    pub engine_gone_after_ms: i64,
    /// Where events go besides the feed (`[[events.sinks]]`, `crate::sinks`).
    pub sinks: Vec<crate::sinks::SinkConfig>,
}

impl Default for EventsConfig {
    fn default() -> EventsConfig {
        EventsConfig {
            max_count: 100_000,
            max_age_hours: 24 * 30,
            engine_gone_after_ms: 10_000,
            sinks: Vec::new(),
        }
    }
}

/// At most this many events in one PublishHerdEvents call.
pub const MAX_PUBLISH: usize = 500;

enum Cmd {
    Append(
        Vec<HerdEvent>,
        Option<oneshot::Sender<Result<(u32, u32), String>>>,
    ),
}

/// The durable log.
#[derive(Debug)]
pub struct EventLog {
    pool: SqlitePool,
    tx: crate::risk_store::WriteQueue<Cmd>,
    last: watch::Sender<u64>,
    incarnation: String,
    counter: AtomicU64,
    throttle: std::sync::Mutex<HashMap<String, i64>>,
    /// The sinks the writer queues for; a configuration reload replaces
    /// them ([`EventLog::set_routes`]).
    routes: Arc<std::sync::RwLock<Vec<crate::sinks::Route>>>,
}

impl std::fmt::Debug for Cmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cmd::Append(v, _) => write!(f, "Append({})", v.len()),
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl EventLog {
    /// Opens the log in `dir/risk.sqlite` (creating it), or in memory when
    /// there is no state dir (nothing survives a restart then).
    pub async fn open(
        dir: Option<&Path>,
        cfg: &EventsConfig,
        incarnation: &str,
        routes: Vec<crate::sinks::Route>,
    ) -> anyhow::Result<Arc<EventLog>> {
        let pool = match dir {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(|e| {
                    anyhow::anyhow!("state_dir {}: cannot create: {e}", dir.display())
                })?;
                let opts = SqliteConnectOptions::new()
                    .filename(dir.join(DB_FILE))
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .busy_timeout(Duration::from_secs(10));
                SqlitePoolOptions::new()
                    .max_connections(2)
                    // A local file: no ping (one more round trip to
                    // SQLite's thread) before every use.
                    .test_before_acquire(false)
                    .connect_with(opts)
                    .await
                    .map_err(|e| {
                        anyhow::anyhow!(
                            "state_dir {}: cannot open {DB_FILE} for the event log: {e}",
                            dir.display()
                        )
                    })?
            }
            // One connection that never closes: an in-memory database lives
            // only as long as its connection.
            None => {
                SqlitePoolOptions::new()
                    .max_connections(1)
                    .min_connections(1)
                    .test_before_acquire(false)
                    .idle_timeout(None)
                    .max_lifetime(None)
                    .connect_with(SqliteConnectOptions::from_str("sqlite::memory:")?)
                    .await?
            }
        };
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS herd_events (seq INTEGER PRIMARY KEY AUTOINCREMENT, \
             id TEXT NOT NULL UNIQUE, time_ms INTEGER NOT NULL, body BLOB NOT NULL)",
        )
        .execute(&pool)
        .await?;
        sqlx::query("CREATE INDEX IF NOT EXISTS herd_events_time ON herd_events (time_ms)")
            .execute(&pool)
            .await?;
        sqlx::query(crate::sinks::DDL).execute(&pool).await?;
        let last: i64 = sqlx::query("SELECT COALESCE(MAX(seq), 0) AS m FROM herd_events")
            .fetch_one(&pool)
            .await?
            .try_get("m")?;
        let (last_tx, _) = watch::channel(u64::try_from(last).unwrap_or(0));
        let (tx, rx) = crate::risk_store::write_queue_with(EVENT_WINDOW);
        let log = Arc::new(EventLog {
            pool: pool.clone(),
            tx,
            last: last_tx,
            incarnation: incarnation.to_string(),
            counter: AtomicU64::new(0),
            throttle: std::sync::Mutex::new(HashMap::new()),
            routes: Arc::new(std::sync::RwLock::new(routes)),
        });
        let retention = Retention {
            max_count: i64::try_from(cfg.max_count.max(1)).unwrap_or(i64::MAX),
            max_age_ms: i64::try_from(cfg.max_age_hours.saturating_mul(3_600_000))
                .unwrap_or(i64::MAX),
        };
        tokio::spawn(writer(
            pool,
            rx,
            log.last.clone(),
            retention,
            log.routes.clone(),
        ));
        Ok(log)
    }

    /// The sinks events are queued for from the next write on (a reload).
    pub fn set_routes(&self, routes: Vec<crate::sinks::Route>) {
        *self.routes.write().unwrap_or_else(|p| p.into_inner()) = routes;
    }

    /// The database (sink workers share it).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// A new id for a gateway event: unique across restarts (the
    /// incarnation changes every start).
    pub fn next_id(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed) + 1;
        format!("gw-{}-{n}", self.incarnation)
    }

    /// Queues events; they are durable a moment later.
    pub fn append(&self, events: Vec<HerdEvent>) {
        let _ = self.tx.send(Cmd::Append(events, None));
    }

    /// Logs events and answers (new, duplicates) once they are durable.
    pub async fn append_durable(&self, events: Vec<HerdEvent>) -> Result<(u32, u32), String> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send_urgent(Cmd::Append(events, Some(done)))
            .map_err(|_| "the event log is closed".to_string())?;
        wait.await
            .map_err(|_| "the event log is closed".to_string())?
    }

    /// Waits until everything queued so far is written.
    pub async fn flush(&self) {
        let _ = self.append_durable(Vec::new()).await;
    }

    /// The highest sequence written, changing with every commit.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.last.subscribe()
    }

    /// Wakes every reader without a new event (a sink's outbox changed
    /// under it: dead letters put back).
    pub fn wake_readers(&self) {
        self.last.send_modify(|_| {});
    }

    /// Events after `seq`, oldest first, at most `max`.
    pub async fn read_after(&self, seq: u64, max: u32) -> anyhow::Result<Vec<HerdEvent>> {
        let rows =
            sqlx::query("SELECT seq, body FROM herd_events WHERE seq > ? ORDER BY seq LIMIT ?")
                .bind(i64::try_from(seq).unwrap_or(i64::MAX))
                .bind(i64::from(max))
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| {
                let seq: i64 = r.try_get("seq")?;
                let body: Vec<u8> = r.try_get("body")?;
                let mut e = HerdEvent::decode(body.as_slice())?;
                e.sequence = u64::try_from(seq).unwrap_or(0);
                Ok(e)
            })
            .collect()
    }

    /// The sequence of the event with `id`, if the log still has it.
    pub async fn seq_of(&self, id: &str) -> anyhow::Result<Option<u64>> {
        let row = sqlx::query("SELECT seq FROM herd_events WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(r) => Some(u64::try_from(r.try_get::<i64, _>("seq")?).unwrap_or(0)),
            None => None,
        })
    }

    /// Writes what is queued and closes the database (at shutdown).
    pub async fn close(&self) {
        self.flush().await;
        self.pool.close().await;
    }
}

#[derive(Debug, Clone, Copy)]
struct Retention {
    max_count: i64,
    max_age_ms: i64,
}

async fn writer(
    pool: SqlitePool,
    mut rx: crate::risk_store::WriteRx<Cmd>,
    last: watch::Sender<u64>,
    retention: Retention,
    routes: Arc<std::sync::RwLock<Vec<crate::sinks::Route>>>,
) {
    let mut writes = 0u64;
    while let Some(mut batch) = rx.next_batch().await {
        let routes = routes.read().unwrap_or_else(|p| p.into_inner()).clone();
        // Prune about every hundred commits, and on the first.
        let prune = writes.is_multiple_of(100);
        writes += 1;
        match write_batch(&pool, &mut batch, retention, prune, &routes).await {
            Ok((counts, max_seq)) => {
                if max_seq > *last.borrow() {
                    last.send_replace(max_seq);
                }
                for (Cmd::Append(_, done), c) in batch.into_iter().zip(counts) {
                    if let Some(done) = done {
                        let _ = done.send(Ok(c));
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "event log write failed");
                for Cmd::Append(_, done) in batch {
                    if let Some(done) = done {
                        let _ = done.send(Err(format!("event log write failed: {e}")));
                    }
                }
            }
        }
    }
}

async fn write_batch(
    pool: &SqlitePool,
    batch: &mut [Cmd],
    retention: Retention,
    prune: bool,
    routes: &[crate::sinks::Route],
) -> Result<(Vec<(u32, u32)>, u64), sqlx::Error> {
    // Every event of the batch, in order, with its encoded body.
    let mut rows: Vec<(&HerdEvent, Vec<u8>)> = Vec::new();
    for Cmd::Append(events, _) in batch.iter() {
        for e in events {
            let body = if e.sequence == 0 {
                e.encode_to_vec()
            } else {
                let mut e = e.clone();
                e.sequence = 0;
                e.encode_to_vec()
            };
            rows.push((e, body));
        }
    }
    if rows.is_empty() && !prune {
        // A flush: nothing to write.
        return Ok((vec![(0, 0); batch.len()], 0));
    }
    use crate::risk_store::{in_one_transaction, row_chunks, rows_sql};
    // Many rows per INSERT; RETURNING names the rows that were new, by id.
    const INSERT: &str = "INSERT OR IGNORE INTO herd_events (id, time_ms, body) VALUES ";
    let mut inserted: HashMap<String, i64> = HashMap::new();
    let mut max_seq = 0i64;
    let mut note = |r: &sqlx::sqlite::SqliteRow| -> Result<(), sqlx::Error> {
        let seq: i64 = r.try_get(0)?;
        let id: String = r.try_get(1)?;
        max_seq = max_seq.max(seq);
        inserted.insert(id, seq);
        Ok(())
    };
    if routes.is_empty() && !prune {
        // Nothing else to write in the transaction: the batch is one query
        // (BEGIN, the inserts, COMMIT), one round trip to SQLite's thread.
        let mut sql = String::from("BEGIN; ");
        for n in row_chunks(rows.len()) {
            sql.push_str(&rows_sql(INSERT, 3, n, " RETURNING seq, id; "));
        }
        sql.push_str("COMMIT");
        let mut q = sqlx::query(&sql);
        for (e, body) in &rows {
            q = q.bind(e.id.as_str()).bind(e.time_ms).bind(body.as_slice());
        }
        for r in &in_one_transaction(pool, q).await? {
            note(r)?;
        }
        let (counts, _) = tally(batch, &rows, &mut inserted);
        return Ok((counts, u64::try_from(max_seq).unwrap_or(0)));
    }
    let mut tx = pool.begin().await?;
    let mut at = 0;
    for n in row_chunks(rows.len()) {
        let chunk = &rows[at..at + n];
        at += n;
        let sql = rows_sql(INSERT, 3, n, " RETURNING seq, id");
        let mut q = sqlx::query(&sql);
        for (e, body) in chunk {
            q = q.bind(e.id.as_str()).bind(e.time_ms).bind(body.as_slice());
        }
        for r in &q.fetch_all(&mut *tx).await? {
            note(r)?;
        }
    }
    let (counts, new) = tally(batch, &rows, &mut inserted);
    for (seq, i) in new {
        let (e, body) = &rows[i];
        crate::sinks::enqueue(&mut tx, routes, seq, e, body).await?;
    }
    if prune {
        sqlx::query(
            "DELETE FROM herd_events WHERE seq <= (SELECT seq FROM herd_events ORDER BY seq DESC \
             LIMIT 1 OFFSET ?)",
        )
        .bind(retention.max_count)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM herd_events WHERE time_ms < ?")
            .bind(now_ms().saturating_sub(retention.max_age_ms))
            .execute(&mut *tx)
            .await?;
        max_seq = sqlx::query("SELECT COALESCE(MAX(seq), 0) AS m FROM herd_events")
            .fetch_one(&mut *tx)
            .await?
            .try_get("m")?;
    }
    tx.commit().await?;
    // Without pruning nothing was deleted: the newest row is the newest
    // written now, or one the readers were already woken for.
    Ok((counts, u64::try_from(max_seq).unwrap_or(0)))
}

/// What [`tally`] answers.
type Tally = (Vec<(u32, u32)>, Vec<(i64, usize)>);

/// (new, duplicate) per command of the batch, and (sequence, index in
/// `rows`) of each new event in order: of equal ids in the batch the first
/// is the one written, the others are duplicates.
fn tally(
    batch: &[Cmd],
    rows: &[(&HerdEvent, Vec<u8>)],
    inserted: &mut HashMap<String, i64>,
) -> Tally {
    let mut counts = Vec::with_capacity(batch.len());
    let mut new_rows = Vec::new();
    let mut i = 0;
    for Cmd::Append(events, _) in batch {
        let (mut new, mut dup) = (0u32, 0u32);
        for _ in events {
            let Some((e, _)) = rows.get(i) else { break };
            match inserted.remove(e.id.as_str()) {
                Some(seq) => {
                    new += 1;
                    new_rows.push((seq, i));
                }
                None => dup += 1,
            }
            i += 1;
        }
        counts.push((new, dup));
    }
    (counts, new_rows)
}

/// A cheap handle producers hold; does nothing when the gateway runs
/// without a log (unit tests of other parts).
#[derive(Debug, Clone, Default)]
pub struct Emitter(Option<Arc<EventLog>>);

impl Emitter {
    pub fn new(log: Arc<EventLog>) -> Emitter {
        Emitter(Some(log))
    }

    /// A gateway event with a fresh id, now.
    pub fn make(&self, kind: &str, severity: Severity, message: impl Into<String>) -> HerdEvent {
        let id = self.0.as_ref().map(|l| l.next_id()).unwrap_or_default();
        event(id, now_ms(), GATEWAY_SOURCE, kind, severity, message)
    }

    pub fn emit(&self, e: HerdEvent) {
        if let Some(log) = &self.0 {
            tracing::debug!(kind = e.kind, id = e.id, "herd event");
            log.append(vec![e]);
        }
    }

    /// Emits unless an event with the same `key` was emitted in the last
    /// `window_ms` (a flood of refused tokens or rate-limit answers is one
    /// event a window, not one per call).
    pub fn emit_throttled(&self, key: &str, window_ms: i64, e: HerdEvent) {
        let Some(log) = &self.0 else { return };
        let now = now_ms();
        {
            let mut t = log.throttle.lock().unwrap_or_else(|p| p.into_inner());
            if t.get(key).is_some_and(|at| now - at < window_ms) {
                return;
            }
            t.insert(key.to_string(), now);
        }
        self.emit(e);
    }

    pub fn log(&self) -> Option<&Arc<EventLog>> {
        self.0.as_ref()
    }
}

/// The herd event for an order event the registry produced (fills and
/// rejections; the rest are the engine's business). Fill ids are the
/// order's id and its executed volume, so the same fill seen again after a
/// restart is one event.
pub fn from_order_event(engine: &str, oe: &pb::OrderEvent) -> Option<HerdEvent> {
    let o = oe.order.as_ref()?;
    let kind_of = pb::OrderEventKind::try_from(oe.kind).ok()?;
    let side = match pb::Side::try_from(o.side) {
        Ok(pb::Side::Buy) => "buy",
        Ok(pb::Side::Sell) => "sell",
        _ => "?",
    };
    let e = match kind_of {
        pb::OrderEventKind::PartialFill | pb::OrderEventKind::Filled => {
            let complete = kind_of == pb::OrderEventKind::Filled;
            let sev = if complete {
                Severity::Notice
            } else {
                Severity::Info
            };
            event(
                format!("fill-{engine}-{}-{}", o.client_order_id, o.volume_executed),
                oe.time_ms,
                GATEWAY_SOURCE,
                kind::FILL,
                sev,
                format!(
                    "{engine} {side} {} {} @ {} ({}){}",
                    oe.fill_volume,
                    o.symbol,
                    oe.fill_price,
                    o.client_order_id,
                    if complete { ", filled" } else { ", partial" }
                ),
            )
            .flag("complete", complete)
            .text("side", side)
            .decimal("price", &oe.fill_price)
            .decimal("volume", &oe.fill_volume)
            .decimal("fee", &oe.fill_fee)
            .text("fee_asset", &o.fee_asset)
            .decimal("volume_executed", &o.volume_executed)
            .decimal("order_volume", &o.volume)
        }
        pb::OrderEventKind::Rejected => event(
            format!("rejected-{engine}-{}", o.client_order_id),
            oe.time_ms,
            GATEWAY_SOURCE,
            kind::ORDER_REJECTED,
            Severity::Warning,
            format!(
                "{engine} {side} {} {} rejected: {}",
                o.volume, o.symbol, o.reason
            ),
        )
        .text("side", side)
        .text("reason", &o.reason)
        .decimal("volume", &o.volume)
        .decimal("price", &o.price),
        _ => return None,
    };
    Some(
        e.with_engine(engine)
            .with_instrument(&o.symbol)
            .with_order(&o.client_order_id),
    )
}

/// The herd event for a risk audit line (`Core::audit`): denials, state
/// changes, limit changes and kill actions.
pub fn from_audit(em: &Emitter, a: &crate::risk::AuditEntry) -> Option<HerdEvent> {
    let scope = if a.engine.is_empty() {
        "the account".to_string()
    } else {
        a.engine.clone()
    };
    let (k, sev, msg) = match a.kind.as_str() {
        "denial" => (
            kind::RISK_DENIAL,
            Severity::Warning,
            format!(
                "order of {} denied by risk ({}): {}",
                a.actor, a.after, a.reason
            ),
        ),
        "state" => {
            let sev = match a.after.as_str() {
                "HALTED" => Severity::Critical,
                "REDUCING" => Severity::Warning,
                _ => Severity::Notice,
            };
            (
                kind::RISK_STATE,
                sev,
                format!(
                    "{scope}: trading state {} -> {} ({}; by {})",
                    a.before, a.after, a.reason, a.actor
                ),
            )
        }
        "cancel_all" | "flatten" => (
            kind::RISK_KILL,
            Severity::Critical,
            format!("{scope}: {} ({}; by {})", a.kind, a.reason, a.actor),
        ),
        "limits" => (
            kind::RISK_LIMITS,
            Severity::Notice,
            format!("{scope}: risk limits changed by {} ({})", a.actor, a.reason),
        ),
        _ => return None,
    };
    let mut e = em
        .make(k, sev, msg)
        .text("actor", &a.actor)
        .text("action", &a.kind)
        .text("before", &a.before)
        .text("after", &a.after)
        .text("reason", &a.reason);
    e.time_ms = a.at_ms;
    if a.kind == "denial" {
        e.engine = a.actor.clone();
        e = e.flag("account", a.engine.is_empty());
    } else {
        e.engine = a.engine.clone();
    }
    Some(e)
}

/// How often one kind of repeated trouble (per key) becomes an event.
const TROUBLE_WINDOW_MS: i64 = 60_000;

/// `gateway_started`, first in every incarnation's feed.
pub fn gateway_started(em: &Emitter, venue: &str, incarnation: &str, engines: usize) {
    em.emit(
        em.make(
            kind::GATEWAY_STARTED,
            Severity::Notice,
            format!("gateway started on {venue} with {engines} engine(s)"),
        )
        .text("venue", venue)
        .text("incarnation", incarnation)
        .integer("engines", i64::try_from(engines).unwrap_or(i64::MAX)),
    );
}

/// The gateway refused to start (the key check): critical.
pub fn gateway_refused(em: &Emitter, e: &anyhow::Error) {
    em.emit(
        em.make(
            kind::GATEWAY_STOPPED,
            Severity::Critical,
            format!("gateway refused to start: {e}"),
        )
        .integer("exit_code", 1),
    );
}

/// Lockouts, rate-limit answers and refused credentials from the venue.
pub fn venue_trouble(em: &Emitter, method: &str, e: &herd_venue::VenueError) {
    use herd_venue::VenueError as V;
    let (k, sev) = match e {
        V::Lockout { .. } => (kind::LOCKOUT, Severity::Critical),
        V::RateLimited { .. } => (kind::RATE_LIMITED, Severity::Warning),
        V::Auth(_) => (kind::VENUE_AUTH_ERROR, Severity::Critical),
        _ => return,
    };
    let mut ev = em
        .make(k, sev, format!("venue answered {method}: {e}"))
        .text("method", method);
    if let V::Lockout { until_ms, .. } = e {
        ev = ev.integer("until_ms", *until_ms);
    }
    em.emit_throttled(k, TROUBLE_WINDOW_MS, ev);
}

/// A call refused for an unknown token (the token is never part of it).
pub fn auth_refused(em: &Emitter, service: &str, why: &str) {
    em.emit_throttled(
        &format!("auth:{service}"),
        TROUBLE_WINDOW_MS,
        em.make(
            kind::AUTH_ERROR,
            Severity::Warning,
            format!("a {service} call was refused: {why}"),
        )
        .text("service", service),
    );
}

/// An engine's venue queue was full (RESOURCE_EXHAUSTED): the gateway's own
/// rate-limit answer.
pub fn queue_full(em: &Emitter, engine: &str, why: &str) {
    em.emit_throttled(
        &format!("queue:{engine}"),
        TROUBLE_WINDOW_MS,
        em.make(
            kind::RATE_LIMITED,
            Severity::Warning,
            format!("{engine}: call refused, queue full: {why}"),
        )
        .with_engine(engine),
    );
}

/// A key warning (or the refusal) from the key check.
pub fn key_warning(em: &Emitter, text: &str, refusal: Option<&str>) {
    let sev = if refusal == Some(text) {
        Severity::Critical
    } else {
        Severity::Warning
    };
    // The key is read every few hours; one event per warning per six hours.
    em.emit_throttled(
        &format!("key:{text}"),
        6 * 3_600_000,
        em.make(kind::KEY_WARNING, sev, text.to_string()),
    );
}

/// The venue clock's offset past the warning level.
pub fn clock_skew(
    em: &Emitter,
    level: crate::keycheck::ClockLevel,
    reading: herd_venue::ClockReading,
    warn_ms: i64,
    limit_ms: Option<i64>,
) {
    use crate::keycheck::ClockLevel;
    let sev = match level {
        ClockLevel::Ok => return,
        ClockLevel::Warning => Severity::Warning,
        ClockLevel::Critical => Severity::Critical,
    };
    let mut ev = em
        .make(
            kind::CLOCK_SKEW,
            sev,
            format!(
                "the venue's clock is {} ms off ours (warning past {warn_ms} ms): check time sync",
                reading.offset_ms
            ),
        )
        .integer("offset_ms", reading.offset_ms)
        .integer("uncertainty_ms", reading.uncertainty_ms)
        .integer("warn_ms", warn_ms);
    if let Some(l) = limit_ms {
        ev = ev.integer("limit_ms", l);
    }
    em.emit_throttled(&format!("clock:{}", sev as i32), 10 * 60_000, ev);
}

/// An engine connected its order stream (its absence is
/// [`watch_engines`]'s).
pub fn engine_connected(em: &Emitter, engine: &str) {
    em.emit(
        em.make(
            kind::ENGINE_CONNECTED,
            Severity::Info,
            format!("{engine} connected its order stream"),
        )
        .with_engine(engine),
    );
}

/// The per-engine dead man's switch canceled an engine's orders.
pub fn dead_man_fired(em: &Emitter, engine: &str, canceled: u32, failed: u32) {
    em.emit(
        em.make(
            kind::DEAD_MAN_FIRED,
            Severity::Critical,
            format!(
                "{engine}: stream gone past its grace, dead man's switch canceled {canceled} \
                 order(s) ({failed} failed)"
            ),
        )
        .with_engine(engine)
        .integer("canceled", i64::from(canceled))
        .integer("failed", i64::from(failed)),
    );
}

/// The venue's dead man's switch could not be re-armed (when it lapses the
/// venue cancels every order of the key); at most one a minute.
pub fn dms_refresh_failed(em: &Emitter, why: &str) {
    em.emit_throttled(
        "dms",
        TROUBLE_WINDOW_MS,
        em.make(
            kind::DMS_REFRESH_FAILED,
            Severity::Critical,
            format!("the venue's dead man's switch refresh failed: {why}"),
        ),
    );
}

/// A budget counter's usage crosses into "high" above 80 % of its limit
/// and back out only below 60 %: one event per crossing, not one per
/// reading that wobbles around 80 %.
pub fn budget_crossed(
    high: bool,
    level: rust_decimal::Decimal,
    limit: rust_decimal::Decimal,
) -> bool {
    use rust_decimal::Decimal;
    if limit <= Decimal::ZERO {
        return false;
    }
    let r = level / limit;
    if high {
        r >= Decimal::new(6, 1)
    } else {
        r > Decimal::new(8, 1)
    }
}

/// Watches the venue's rate counters every second: `budget_high`
/// (warning) each time one crosses above 80 % (runs until aborted).
pub async fn watch_budget(core: Arc<crate::service::Core>) {
    let mut high: HashMap<String, bool> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        for c in core.venue.budget().counters {
            let was = high.get(&c.name).copied().unwrap_or(false);
            let now = budget_crossed(was, c.level, c.limit);
            if now && !was {
                core.events.emit(
                    core.events
                        .make(
                            kind::BUDGET_HIGH,
                            Severity::Warning,
                            format!(
                                "rate budget {} at {} of {} (above 80 %)",
                                c.name,
                                c.level.round_dp(2),
                                c.limit
                            ),
                        )
                        .text("counter", &c.name)
                        .decimal("level", c.level.round_dp(4))
                        .decimal("limit", c.limit),
                );
            }
            high.insert(c.name, now);
        }
    }
}

/// Reports, once per absence, an engine whose stream has been gone longer
/// than `after_ms` (runs until aborted).
pub async fn watch_engines(core: Arc<crate::service::Core>, after_ms: i64) {
    let mut reported: HashMap<String, i64> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let engines: Vec<String> = core.userrefs.keys().cloned().collect();
    loop {
        tick.tick().await;
        let now = core.clock.now_ms();
        for engine in &engines {
            match core.registry.gone_since(engine) {
                None => {
                    reported.remove(engine);
                }
                Some(since) if now - since >= after_ms && reported.get(engine) != Some(&since) => {
                    reported.insert(engine.clone(), since);
                    core.events.emit(
                        core.events
                            .make(
                                kind::ENGINE_GONE,
                                Severity::Warning,
                                format!("{engine}: no order stream for {} s", (now - since) / 1000),
                            )
                            .with_engine(engine)
                            .integer("gone_since_ms", since),
                    );
                }
                Some(_) => {}
            }
        }
    }
}

/// Checks an engine's published events and stamps them as its own
/// (source and engine are the caller's, whatever was sent).
pub fn accept_published(engine: &str, events: &mut [HerdEvent]) -> Result<(), Status> {
    if events.len() > MAX_PUBLISH {
        return Err(Status::invalid_argument(format!(
            "events: at most {MAX_PUBLISH} a call, got {}",
            events.len()
        )));
    }
    let prefix = format!("{engine}-");
    for (i, e) in events.iter_mut().enumerate() {
        let bad = |field: &str, why: String| {
            Status::invalid_argument(format!("events[{i}].{field}: {why}"))
        };
        if !e.id.starts_with(&prefix)
            || e.id.len() > 128
            || !e
                .id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
        {
            return Err(bad(
                "id",
                format!("must start with {prefix:?}, be at most 128 characters of [A-Za-z0-9-_.:]"),
            ));
        }
        if e.kind.is_empty()
            || e.kind.len() > 64
            || !e
                .kind
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return Err(bad("kind", "must be 1 to 64 of [a-z0-9_]".into()));
        }
        if !matches!(
            Severity::try_from(e.severity),
            Ok(Severity::Info | Severity::Notice | Severity::Warning | Severity::Critical)
        ) {
            return Err(bad("severity", format!("{} is not a severity", e.severity)));
        }
        if e.message.len() > 1_000 || e.message.contains('\n') {
            return Err(bad(
                "message",
                "must be one line of at most 1000 bytes".into(),
            ));
        }
        if e.time_ms <= 0 {
            return Err(bad("time_ms", "must be set (unix ms)".into()));
        }
        e.source = engine.to_string();
        e.engine = engine.to_string();
        e.sequence = 0;
    }
    Ok(())
}

/// Checks a StreamHerdEvents request against the configured engines.
pub fn filter_of(
    req: &pb::StreamHerdEventsRequest,
    known_engine: impl Fn(&str) -> bool,
) -> Result<Filter, Status> {
    if Severity::try_from(req.min_severity).is_err() {
        return Err(Status::invalid_argument(format!(
            "min_severity: {} is not a severity",
            req.min_severity
        )));
    }
    if let Some(e) = req.engines.iter().find(|e| !known_engine(e)) {
        return Err(Status::invalid_argument(format!(
            "engines: {e:?} is not a configured engine"
        )));
    }
    if let Some(k) = req.kinds.iter().find(|k| k.trim().is_empty()) {
        return Err(Status::invalid_argument(format!("kinds: {k:?} is empty")));
    }
    Ok(Filter {
        min_severity: req.min_severity,
        engines: req.engines.clone(),
        kinds: req.kinds.clone(),
    })
}

/// The stream behind StreamHerdEvents: what the log has after the start,
/// filtered, then (with `follow`) every new event as it is committed,
/// until the client leaves or the gateway drains.
pub async fn stream(
    log: Arc<EventLog>,
    req: pb::StreamHerdEventsRequest,
    filter: Filter,
    drain: herd_proto::serving::Drain,
) -> Result<ReceiverStream<Result<HerdEvent, Status>>, Status> {
    let internal = |e: anyhow::Error| Status::internal(format!("event log: {e}"));
    let mut changes = log.subscribe();
    let mut cursor = if req.after_id.is_empty() {
        0
    } else {
        log.seq_of(&req.after_id)
            .await
            .map_err(internal)?
            .ok_or_else(|| {
                Status::invalid_argument(format!(
                    "after_id: no event {:?} in the log (never logged, or pruned by retention)",
                    req.after_id
                ))
            })?
    };
    let mut first: Vec<HerdEvent> = Vec::new();
    if req.after_id.is_empty() && req.last > 0 {
        // The newest `last` matching: read everything kept once, keep a window.
        let mut window = std::collections::VecDeque::new();
        loop {
            let batch = log.read_after(cursor, 1_000).await.map_err(internal)?;
            let Some(end) = batch.last().map(|e| e.sequence) else {
                break;
            };
            cursor = end;
            for e in batch.into_iter().filter(|e| filter.matches(e)) {
                window.push_back(e);
                if window.len() > req.last as usize {
                    window.pop_front();
                }
            }
        }
        first.extend(window);
    }
    let (tx, rx) = mpsc::channel(256);
    tokio::spawn(async move {
        for e in first {
            if tx.send(Ok(e)).await.is_err() {
                return;
            }
        }
        loop {
            changes.borrow_and_update();
            match log.read_after(cursor, 256).await {
                Ok(batch) if !batch.is_empty() => {
                    for e in batch {
                        cursor = e.sequence;
                        if filter.matches(&e) && tx.send(Ok(e)).await.is_err() {
                            return;
                        }
                    }
                    continue;
                }
                Ok(_) => {}
                Err(e) => {
                    let _ = tx.send(Err(internal(e))).await;
                    return;
                }
            }
            if !req.follow {
                return;
            }
            tokio::select! {
                changed = changes.changed() => if changed.is_err() { return },
                _ = tx.closed() => return,
                _ = drain.closed() => return,
            }
        }
    });
    Ok(ReceiverStream::new(rx))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(id: &str, sev: Severity, engine: &str) -> HerdEvent {
        event(id, now_ms(), "gateway", kind::FILL, sev, "m").with_engine(engine)
    }

    #[tokio::test]
    async fn the_log_dedups_by_id_prunes_by_count_and_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = EventsConfig {
            max_count: 3,
            ..EventsConfig::default()
        };
        let log = EventLog::open(Some(dir.path()), &cfg, "inc1", Vec::new())
            .await
            .unwrap();
        let got = log
            .append_durable(vec![
                ev("a", Severity::Info, "e0"),
                ev("b", Severity::Critical, "e1"),
            ])
            .await
            .unwrap();
        assert_eq!(got, (2, 0));
        let again = log
            .append_durable(vec![
                ev("a", Severity::Info, "e0"),
                ev("c", Severity::Info, "e0"),
            ])
            .await
            .unwrap();
        assert_eq!(again, (1, 1), "a is a duplicate, c is new");
        let all = log.read_after(0, 100).await.unwrap();
        let ids: Vec<&str> = all.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c"]);
        assert_eq!(log.seq_of("b").await.unwrap(), Some(all[1].sequence));
        log.close().await;

        let log = EventLog::open(Some(dir.path()), &cfg, "inc2", Vec::new())
            .await
            .unwrap();
        assert_eq!(
            *log.subscribe().borrow(),
            all[2].sequence,
            "the last sequence is read back"
        );
        // Fourth and fifth event: the first prune after a reopen keeps 3.
        log.append_durable(vec![
            ev("d", Severity::Info, "e0"),
            ev("e", Severity::Info, "e0"),
        ])
        .await
        .unwrap();
        let ids: Vec<String> = log
            .read_after(0, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(ids, ["c", "d", "e"]);
    }

    #[tokio::test]
    async fn a_batch_writes_each_id_once_in_order_across_chunks() {
        let log = EventLog::open(None, &EventsConfig::default(), "inc1", Vec::new())
            .await
            .unwrap();
        // The first write prunes (a transaction of its own); the rest go as
        // one query each.
        assert_eq!(
            log.append_durable(vec![ev("first", Severity::Info, "e0")])
                .await
                .unwrap(),
            (1, 0)
        );
        // Duplicates inside one call, and one already logged.
        let got = log
            .append_durable(vec![
                ev("x", Severity::Info, "e0"),
                ev("x", Severity::Info, "e0"),
                ev("first", Severity::Info, "e0"),
                ev("y", Severity::Info, "e0"),
            ])
            .await
            .unwrap();
        assert_eq!(got, (2, 2));
        // 100 events: more than one multi-row chunk (64 + 32 + 4).
        let many: Vec<HerdEvent> = (0..100)
            .map(|i| ev(&format!("m{i:03}"), Severity::Info, "e1"))
            .collect();
        assert_eq!(log.append_durable(many).await.unwrap(), (100, 0));
        let all = log.read_after(0, 1000).await.unwrap();
        let ids: Vec<&str> = all.iter().map(|e| e.id.as_str()).collect();
        let mut want = vec!["first".to_string(), "x".into(), "y".into()];
        want.extend((0..100).map(|i| format!("m{i:03}")));
        assert_eq!(ids, want, "every id once, in the order appended");
        assert!(
            all.windows(2).all(|w| w[0].sequence < w[1].sequence),
            "sequences rise in the order appended"
        );
        assert_eq!(*log.subscribe().borrow(), all[all.len() - 1].sequence);
    }

    #[tokio::test]
    async fn a_follow_stream_resumes_after_an_id_and_filters() {
        let log = EventLog::open(None, &EventsConfig::default(), "i", Vec::new())
            .await
            .unwrap();
        log.append_durable(vec![
            ev("a", Severity::Info, "e0"),
            ev("b", Severity::Warning, "e0"),
            ev("c", Severity::Warning, "e1"),
        ])
        .await
        .unwrap();
        let req = pb::StreamHerdEventsRequest {
            after_id: "a".into(),
            min_severity: Severity::Warning as i32,
            engines: vec!["e0".into()],
            follow: true,
            ..Default::default()
        };
        let filter = filter_of(&req, |e| e == "e0" || e == "e1").unwrap();
        let drain = herd_proto::serving::Drain::new();
        let mut s = stream(log.clone(), req, filter, drain)
            .await
            .unwrap()
            .into_inner();
        assert_eq!(s.recv().await.unwrap().unwrap().id, "b");
        log.append(vec![
            ev("d", Severity::Info, "e0"),
            ev("e", Severity::Critical, "e0"),
        ]);
        assert_eq!(
            s.recv().await.unwrap().unwrap().id,
            "e",
            "d is below warning"
        );

        let bad = pb::StreamHerdEventsRequest {
            engines: vec!["e9".into()],
            ..Default::default()
        };
        let err = filter_of(&bad, |e| e == "e0").unwrap_err();
        assert!(err.message().starts_with("engines:"), "{err:?}");
        let unknown = pb::StreamHerdEventsRequest {
            after_id: "zz".into(),
            ..Default::default()
        };
        let err = stream(
            log,
            unknown,
            Filter::default(),
            herd_proto::serving::Drain::new(),
        )
        .await
        .unwrap_err();
        assert!(err.message().starts_with("after_id:"), "{err:?}");
    }

    #[test]
    fn budget_crossings_have_hysteresis() {
        use rust_decimal::Decimal;
        let l = Decimal::from(100);
        // (was high, level, is high)
        let cases = [
            (false, 79, false),
            (false, 81, true),
            (true, 70, true),
            (true, 59, false),
            (false, 70, false),
        ];
        for (was, level, want) in cases {
            assert_eq!(
                budget_crossed(was, Decimal::from(level), l),
                want,
                "{was} {level}"
            );
        }
        assert!(
            !budget_crossed(false, Decimal::ONE, Decimal::ZERO),
            "no limit: never"
        );
    }

    #[test]
    fn published_events_are_checked_and_stamped() {
        let good = event(
            "e0-r1-1",
            5,
            "x",
            "grid_cycle_closed",
            Severity::Notice,
            "m",
        );
        let mut v = vec![good.clone()];
        accept_published("e0", &mut v).unwrap();
        assert_eq!(v[0].source, "e0");
        assert_eq!(v[0].engine, "e0");
        let cases: Vec<(HerdEvent, &str)> = vec![
            (
                HerdEvent {
                    id: "e1-x".into(),
                    ..good.clone()
                },
                "events[0].id",
            ),
            (
                HerdEvent {
                    kind: "Bad Kind".into(),
                    ..good.clone()
                },
                "events[0].kind",
            ),
            (
                HerdEvent {
                    severity: 0,
                    ..good.clone()
                },
                "events[0].severity",
            ),
            (
                HerdEvent {
                    message: "a\nb".into(),
                    ..good.clone()
                },
                "events[0].message",
            ),
            (
                HerdEvent {
                    time_ms: 0,
                    ..good.clone()
                },
                "events[0].time_ms",
            ),
        ];
        for (e, field) in cases {
            let err = accept_published("e0", &mut [e]).unwrap_err();
            assert!(err.message().starts_with(field), "{field}: {err:?}");
        }
    }
}
