//! The gateway's durable risk state: SQLite in `state_dir/risk.sqlite`
//! (ARCHITECTURE.md, "The gateway's durable store").
//!
//! Tables: `risk_state` (the trading state of each engine and of the
//! account), `risk_limits` (limits set at runtime, as JSON, replacing the
//! configured ones), `risk_audit` (append-only: every limit change, state
//! change, denial and kill action) and `risk_day` (each book's UTC day,
//! realized PnL, peak and positions, so the daily loss survives a restart).
//!
//! States and limits are written before the admin call answers. Audit lines
//! and day totals go through one writer task in order, batched into one
//! transaction per wake-up, so a flood of denials or fills never waits on
//! the disk in the order path. WAL with `synchronous = NORMAL`: a commit
//! survives a killed process (kill -9); only an OS crash may lose the last
//! ones.

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;

use rust_decimal::Decimal;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};
use tokio::sync::mpsc;

use crate::risk::{AuditEntry, Limits, Position, Risk, TradingState};

/// The account's key in the tables (engine ids are [A-Za-z0-9_-]).
const ACCOUNT: &str = "*account";

fn scope(engine: Option<&str>) -> &str {
    engine.unwrap_or(ACCOUNT)
}

/// What the writer task persists.
#[derive(Debug)]
pub enum Write {
    Audit(AuditEntry),
    Day {
        scope: String,
        day: i64,
        realized: Decimal,
        peak: Decimal,
        positions: Vec<(String, Position)>,
    },
    /// Answered once everything queued before it is written.
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// Handle to the store: direct writes for states and limits, a queue for
/// the rest.
#[derive(Debug, Clone)]
pub struct RiskStore {
    pool: SqlitePool,
    tx: WriteQueue<Write>,
}

impl RiskStore {
    /// Opens (creating) `dir/risk.sqlite` and starts its writer task.
    pub async fn open(dir: &Path) -> anyhow::Result<RiskStore> {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("state_dir {}: cannot create: {e}", dir.display()))?;
        let path = dir.join("risk.sqlite");
        let opts = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal);
        let pool = SqlitePoolOptions::new()
            .max_connections(2)
            // A local file: no ping (a round trip to SQLite's thread)
            // before every use.
            .test_before_acquire(false)
            .connect_with(opts)
            .await
            .map_err(|e| {
                anyhow::anyhow!("state_dir {}: cannot open risk.sqlite: {e}", dir.display())
            })?;
        for ddl in [
            "CREATE TABLE IF NOT EXISTS risk_state (scope TEXT PRIMARY KEY, state TEXT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS risk_limits (scope TEXT PRIMARY KEY, limits TEXT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS risk_audit (id INTEGER PRIMARY KEY AUTOINCREMENT, \
             at_ms INTEGER NOT NULL, actor TEXT NOT NULL, kind TEXT NOT NULL, \
             engine TEXT NOT NULL, before TEXT NOT NULL, after TEXT NOT NULL, reason TEXT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS risk_day (scope TEXT PRIMARY KEY, day INTEGER NOT NULL, \
             realized TEXT NOT NULL, peak TEXT NOT NULL, positions TEXT NOT NULL)",
        ] {
            sqlx::query(ddl).execute(&pool).await?;
        }
        let (tx, rx) = write_queue();
        tokio::spawn(writer(pool.clone(), rx));
        Ok(RiskStore { pool, tx })
    }

    /// Waits until everything queued so far is written.
    pub async fn flush(&self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.tx.send_urgent(Write::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// Writes what is queued and closes the database (at shutdown).
    pub async fn close(&self) {
        self.flush().await;
        self.pool.close().await;
    }

    /// Queues an audit line, committed at once (no group-commit wait:
    /// audit lines are few, off the order path, and must survive a crash
    /// that follows them closely, e.g. a kill -9 just after a kill action).
    pub fn append(&self, entry: &AuditEntry) {
        let _ = self.tx.send_urgent(Write::Audit(entry.clone()));
    }

    /// A sender for the risk books' day totals.
    pub fn sender(&self) -> WriteQueue<Write> {
        self.tx.clone()
    }

    pub async fn save_state(
        &self,
        engine: Option<&str>,
        state: TradingState,
    ) -> anyhow::Result<()> {
        sqlx::query("INSERT INTO risk_state (scope, state) VALUES (?, ?) ON CONFLICT(scope) DO UPDATE SET state = excluded.state")
            .bind(scope(engine))
            .bind(state.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn save_limits(&self, engine: Option<&str>, limits: &Limits) -> anyhow::Result<()> {
        let json = serde_json::to_string(limits)?;
        sqlx::query("INSERT INTO risk_limits (scope, limits) VALUES (?, ?) ON CONFLICT(scope) DO UPDATE SET limits = excluded.limits")
            .bind(scope(engine))
            .bind(json)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Forgets the runtime limits of a scope: the configured ones govern it
    /// again from the next start (a configuration reload that changed them).
    pub async fn clear_limits(&self, engine: Option<&str>) -> anyhow::Result<()> {
        sqlx::query("DELETE FROM risk_limits WHERE scope = ?")
            .bind(scope(engine))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Loads states, runtime limits and day totals into `risk` (scopes of
    /// engines no longer configured are skipped, with a warning).
    pub async fn restore(&self, risk: &Risk) -> anyhow::Result<()> {
        let known = |s: &str| s == ACCOUNT || risk.has_engine(s);
        let as_engine = |s: &str| (s != ACCOUNT).then(|| s.to_string());
        for row in sqlx::query("SELECT scope, limits FROM risk_limits")
            .fetch_all(&self.pool)
            .await?
        {
            let s: String = row.try_get("scope")?;
            let json: String = row.try_get("limits")?;
            if !known(&s) {
                tracing::warn!(scope = %s, "risk limits of an engine no longer configured: skipped");
                continue;
            }
            let limits: Limits = serde_json::from_str(&json)
                .map_err(|e| anyhow::anyhow!("risk.sqlite: limits of {s}: {e}"))?;
            risk.set_limits(as_engine(&s).as_deref(), limits);
        }
        for row in sqlx::query("SELECT scope, state FROM risk_state")
            .fetch_all(&self.pool)
            .await?
        {
            let s: String = row.try_get("scope")?;
            let st: String = row.try_get("state")?;
            let Some(state) = TradingState::parse(&st) else {
                anyhow::bail!("risk.sqlite: state of {s} is {st:?}");
            };
            if !known(&s) {
                continue;
            }
            if state != TradingState::Active {
                tracing::warn!(scope = %s, state = state.as_str(), "risk state restored");
            }
            risk.set_state(as_engine(&s).as_deref(), state);
        }
        for row in sqlx::query("SELECT scope, day, realized, peak, positions FROM risk_day")
            .fetch_all(&self.pool)
            .await?
        {
            let s: String = row.try_get("scope")?;
            if !known(&s) {
                continue;
            }
            let day: i64 = row.try_get("day")?;
            let dec = |col: &str| -> anyhow::Result<Decimal> {
                let t: String = row.try_get(col)?;
                Decimal::from_str(&t).map_err(|e| anyhow::anyhow!("risk.sqlite: {col} of {s}: {e}"))
            };
            let (realized, peak) = (dec("realized")?, dec("peak")?);
            let json: String = row.try_get("positions")?;
            let raw: Vec<(String, Decimal, Decimal)> = serde_json::from_str(&json)?;
            let positions = raw
                .into_iter()
                .map(|(sym, net, avg_cost)| (sym, Position { net, avg_cost }))
                .collect();
            risk.restore_book(as_engine(&s).as_deref(), day, realized, peak, positions);
        }
        Ok(())
    }

    /// The audit log, newest last: at most `limit` entries (0 = 1000), of
    /// one engine when `engine` is set ("*account" for the account).
    pub async fn audit(&self, engine: Option<&str>, limit: u32) -> anyhow::Result<Vec<AuditEntry>> {
        let limit = i64::from(if limit == 0 { 1_000 } else { limit });
        let rows = match engine {
            Some(e) => {
                let e = if e == ACCOUNT { "" } else { e };
                sqlx::query("SELECT * FROM (SELECT * FROM risk_audit WHERE engine = ? ORDER BY id DESC LIMIT ?) ORDER BY id")
                    .bind(e)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                sqlx::query(
                    "SELECT * FROM (SELECT * FROM risk_audit ORDER BY id DESC LIMIT ?) ORDER BY id",
                )
                .bind(limit)
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter()
            .map(|r| {
                Ok(AuditEntry {
                    at_ms: r.try_get("at_ms")?,
                    actor: r.try_get("actor")?,
                    kind: r.try_get("kind")?,
                    engine: r.try_get("engine")?,
                    before: r.try_get("before")?,
                    after: r.try_get("after")?,
                    reason: r.try_get("reason")?,
                })
            })
            .collect()
    }
}

/// How long a writer task waits after the first item of a batch before it
/// takes what queued behind it: a group commit. While it waits it has no
/// waker on its channel, so the producers' sends in that window (the orders
/// of every engine) wake no thread, and one transaction carries them all.
/// Measured in `gateway_bench` (docs/benchmarks.md): sequential PlaceOrder
/// CPU 278-291 -> 153-166 us per call, p50 0.33-0.45 -> 0.17-0.19 ms. The
/// price is that a row reaches SQLite up to this much later; an urgent item
/// ([`WriteQueue::send_urgent`]: a reader's flush, a durable append, an
/// audit line) ends the wait at once. Rows still commit in the order queued,
/// and a crash loses only what was queued and not yet committed, as before
/// (the venue still holds every fill, and recovery re-reads it).
pub(crate) const GROUP_COMMIT: std::time::Duration = std::time::Duration::from_millis(2);

/// A writer task's queue. Rows go in without waking the writer while it
/// waits out its [`GROUP_COMMIT`]; an urgent item (someone waits for its
/// commit: a flush, a durable append) cuts the wait short, so a reader or
/// an engine's event stream never waits for the window.
pub struct WriteQueue<T> {
    tx: mpsc::UnboundedSender<T>,
    urgent: std::sync::Arc<tokio::sync::Notify>,
}

impl<T> Clone for WriteQueue<T> {
    fn clone(&self) -> Self {
        WriteQueue {
            tx: self.tx.clone(),
            urgent: self.urgent.clone(),
        }
    }
}

impl<T> std::fmt::Debug for WriteQueue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteQueue").finish_non_exhaustive()
    }
}

/// The writer's end of a [`WriteQueue`].
pub(crate) struct WriteRx<T> {
    rx: mpsc::UnboundedReceiver<T>,
    urgent: std::sync::Arc<tokio::sync::Notify>,
    window: std::time::Duration,
}

/// A queue whose writer waits [`GROUP_COMMIT`] after a batch's first item.
pub(crate) fn write_queue<T>() -> (WriteQueue<T>, WriteRx<T>) {
    write_queue_with(GROUP_COMMIT)
}

/// A queue whose writer waits `window` after a batch's first item: longer
/// than [`GROUP_COMMIT`] for a log no one waits on item by item (each
/// transaction's pages are written once for more rows), never for one an
/// engine's event stream waits on.
pub(crate) fn write_queue_with<T>(window: std::time::Duration) -> (WriteQueue<T>, WriteRx<T>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let urgent = std::sync::Arc::new(tokio::sync::Notify::new());
    (
        WriteQueue {
            tx,
            urgent: urgent.clone(),
        },
        WriteRx { rx, urgent, window },
    )
}

impl<T> WriteQueue<T> {
    pub fn send(&self, item: T) -> Result<(), mpsc::error::SendError<T>> {
        self.tx.send(item)
    }

    /// Queues an item someone waits for: the writer commits at once.
    pub fn send_urgent(&self, item: T) -> Result<(), mpsc::error::SendError<T>> {
        let sent = self.tx.send(item);
        self.urgent.notify_one();
        sent
    }
}

impl<T> WriteRx<T> {
    /// The next batch: waits for one item, then for the queue's window
    /// ([`GROUP_COMMIT`] unless made with [`write_queue_with`]) or an urgent
    /// item, whichever comes first, then takes every item waiting (so a
    /// burst costs one transaction). `None` once every sender is gone.
    pub(crate) async fn next_batch(&mut self) -> Option<Vec<T>> {
        let mut batch = vec![self.rx.recv().await?];
        tokio::select! {
            () = tokio::time::sleep(self.window) => {}
            () = self.urgent.notified() => {}
        }
        while let Ok(w) = self.rx.try_recv() {
            batch.push(w);
        }
        Some(batch)
    }
}

/// The number of rows of each multi-row statement that writes `n` rows:
/// chunks of 64, then the binary digits of the rest (at most 7 distinct
/// statement texts per table for SQLite's statement cache, at most 6 + n/64
/// round trips to SQLite's thread per batch).
pub(crate) fn row_chunks(n: usize) -> impl Iterator<Item = usize> {
    const MAX: usize = 64;
    let full = n / MAX;
    let rest = n % MAX;
    std::iter::repeat_n(MAX, full).chain(
        (0..usize::BITS)
            .rev()
            .map(|b| 1usize << b)
            .filter(move |bit| (rest & bit) != 0),
    )
}

/// `head` followed by `rows` groups of `cols` placeholders, then `tail`:
/// "INSERT ... VALUES (?, ?), (?, ?) RETURNING ...".
pub(crate) fn rows_sql(head: &str, cols: usize, rows: usize, tail: &str) -> String {
    let group = format!("({})", vec!["?"; cols].join(", "));
    let mut s = String::with_capacity(head.len() + tail.len() + rows * (group.len() + 2));
    s.push_str(head);
    for i in 0..rows {
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str(&group);
    }
    s.push_str(tail);
    s
}

/// Runs `q`, a query of the form "BEGIN; <statements>; COMMIT" (arguments
/// bound in statement order), on one connection and answers the rows its
/// statements return. Sent as one query it costs one round trip to SQLite's
/// thread instead of one per statement plus two for BEGIN and COMMIT. On an
/// error the transaction is rolled back: nothing of it is written.
pub(crate) async fn in_one_transaction<'q>(
    pool: &SqlitePool,
    q: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>,
) -> Result<Vec<sqlx::sqlite::SqliteRow>, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    match q.fetch_all(&mut *conn).await {
        Ok(rows) => Ok(rows),
        Err(e) => {
            // Fails harmlessly when the error came before BEGIN took effect.
            let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
            Err(e)
        }
    }
}

/// Writes what is queued, in order, in batches: everything waiting goes
/// into one transaction, and of several day totals of one book only the
/// last is written (a burst of fills costs one commit, not one per fill).
async fn writer(pool: SqlitePool, mut rx: WriteRx<Write>) {
    while let Some(batch) = rx.next_batch().await {
        let mut audits = Vec::new();
        // Each book's last day total of the batch, turned into JSON only
        // once it is known to be the last.
        type Day = (i64, Decimal, Decimal, Vec<(String, Position)>);
        let mut last: BTreeMap<String, Day> = BTreeMap::new();
        let mut flushes = Vec::new();
        for w in batch {
            match w {
                Write::Flush(done) => flushes.push(done),
                Write::Audit(a) => audits.push(a),
                Write::Day {
                    scope,
                    day,
                    realized,
                    peak,
                    positions,
                } => {
                    last.insert(scope, (day, realized, peak, positions));
                }
            }
        }
        let days: BTreeMap<String, (i64, Decimal, Decimal, String)> = last
            .into_iter()
            .map(|(scope, (day, realized, peak, positions))| {
                let raw: Vec<(&str, Decimal, Decimal)> = positions
                    .iter()
                    .map(|(s, p)| (s.as_str(), p.net, p.avg_cost))
                    .collect();
                let json = serde_json::to_string(&raw).unwrap_or_else(|_| "[]".into());
                (scope, (day, realized, peak, json))
            })
            .collect();
        if let Err(e) = write_batch(&pool, audits, days).await {
            tracing::error!(error = %e, "risk store write failed");
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
}

async fn write_batch(
    pool: &SqlitePool,
    audits: Vec<AuditEntry>,
    days: BTreeMap<String, (i64, Decimal, Decimal, String)>,
) -> Result<(), sqlx::Error> {
    if audits.is_empty() && days.is_empty() {
        return Ok(());
    }
    // The whole batch is one query (BEGIN, the inserts, COMMIT): one round
    // trip to SQLite's thread, not one per row plus BEGIN and COMMIT.
    let mut sql = String::from("BEGIN; ");
    for n in row_chunks(audits.len()) {
        sql.push_str(&rows_sql(
            "INSERT INTO risk_audit (at_ms, actor, kind, engine, before, after, reason) VALUES ",
            7,
            n,
            "; ",
        ));
    }
    for n in row_chunks(days.len()) {
        // Scopes are distinct within the batch (a map's keys), so one
        // statement never upserts a row twice.
        sql.push_str(&rows_sql(
            "INSERT INTO risk_day (scope, day, realized, peak, positions) VALUES ",
            5,
            n,
            " ON CONFLICT(scope) DO UPDATE SET day = excluded.day, \
             realized = excluded.realized, peak = excluded.peak, \
             positions = excluded.positions; ",
        ));
    }
    sql.push_str("COMMIT");
    let mut q = sqlx::query(&sql);
    for a in audits {
        q = q
            .bind(a.at_ms)
            .bind(a.actor)
            .bind(a.kind)
            .bind(a.engine)
            .bind(a.before)
            .bind(a.after)
            .bind(a.reason);
    }
    for (scope, (day, realized, peak, json)) in days {
        q = q
            .bind(scope)
            .bind(day)
            .bind(realized.to_string())
            .bind(peak.to_string())
            .bind(json);
    }
    in_one_transaction(pool, q).await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One batch of audit lines and day totals (several per book) is one
    /// transaction: every audit line in order, each book's last total, and
    /// both survive a reopen.
    #[tokio::test]
    async fn a_batch_keeps_every_audit_line_and_each_books_last_day() {
        let dir = tempfile::tempdir().unwrap();
        let store = RiskStore::open(dir.path()).await.unwrap();
        let day = |scope: &str, realized: i64, net: i64| Write::Day {
            scope: scope.into(),
            day: 7,
            realized: Decimal::from(realized),
            peak: Decimal::from(realized.max(0)),
            positions: vec![(
                "XBTUSD".into(),
                Position {
                    net: Decimal::from(net),
                    avg_cost: Decimal::from(100),
                },
            )],
        };
        let audit = |n: i64| AuditEntry {
            at_ms: n,
            actor: "risk".into(),
            kind: "denial".into(),
            engine: "e1".into(),
            before: String::new(),
            after: "max_notional".into(),
            reason: format!("line {n}"),
        };
        let tx = store.sender();
        for n in 0..70 {
            tx.send(day("e1", n, n)).unwrap();
            tx.send(day(ACCOUNT, -n, 2 * n)).unwrap();
            store.append(&audit(n));
        }
        store.close().await;

        let store = RiskStore::open(dir.path()).await.unwrap();
        let lines = store.audit(None, 0).await.unwrap();
        let reasons: Vec<String> = lines.iter().map(|a| a.reason.clone()).collect();
        let want: Vec<String> = (0..70).map(|n| format!("line {n}")).collect();
        assert_eq!(reasons, want);
        let rows = sqlx::query("SELECT scope, realized, positions FROM risk_day ORDER BY scope")
            .fetch_all(&store.pool)
            .await
            .unwrap();
        let got: Vec<(String, String, String)> = rows
            .iter()
            .map(|r| {
                (
                    r.try_get("scope").unwrap(),
                    r.try_get("realized").unwrap(),
                    r.try_get("positions").unwrap(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (
                    ACCOUNT.to_string(),
                    "-69".to_string(),
                    r#"[["XBTUSD","138","100"]]"#.to_string()
                ),
                (
                    "e1".to_string(),
                    "69".to_string(),
                    r#"[["XBTUSD","69","100"]]"#.to_string()
                ),
            ]
        );
    }

    /// The group commit: what is sent within [`GROUP_COMMIT`] of a batch's
    /// first item joins that batch; what comes after starts the next one;
    /// an urgent item ends the wait at once; a closed queue still hands over
    /// what it holds, then ends.
    #[tokio::test(start_paused = true)]
    async fn a_batch_takes_what_arrives_within_the_group_commit() {
        let (tx, mut rx) = write_queue::<u32>();
        let started = tokio::time::Instant::now();
        let sender = tokio::spawn(async move {
            tx.send(1).unwrap();
            tokio::time::sleep(GROUP_COMMIT / 2).await;
            tx.send(2).unwrap();
            tx.send(3).unwrap();
            tokio::time::sleep(GROUP_COMMIT).await;
            tx.send(4).unwrap();
            tokio::time::sleep(GROUP_COMMIT * 2).await;
            tx.send(5).unwrap();
            tokio::time::sleep(GROUP_COMMIT / 2).await;
            tx.send_urgent(6).unwrap();
        });
        assert_eq!(rx.next_batch().await, Some(vec![1, 2, 3]));
        assert_eq!(started.elapsed(), GROUP_COMMIT);
        assert_eq!(rx.next_batch().await, Some(vec![4]));
        // 5 comes 3.5 windows from the start, the urgent 6 half a window
        // later (whole milliseconds: tokio's timers round up to them): the
        // batch ends then, not a whole window after 5.
        assert_eq!(rx.next_batch().await, Some(vec![5, 6]));
        assert_eq!(
            started.elapsed(),
            GROUP_COMMIT * 4,
            "the urgent item did not cut the wait"
        );
        sender.await.unwrap();
        assert_eq!(rx.next_batch().await, None);
    }

    /// A queue made with a longer window (the event log's) gathers what
    /// arrives within that window, not within [`GROUP_COMMIT`], and an
    /// urgent item still ends its wait at once.
    #[tokio::test(start_paused = true)]
    async fn a_longer_window_gathers_more_and_an_urgent_item_still_ends_it() {
        let window = GROUP_COMMIT * 5;
        let (tx, mut rx) = write_queue_with::<u32>(window);
        let started = tokio::time::Instant::now();
        let sender = tokio::spawn(async move {
            tx.send(1).unwrap();
            tokio::time::sleep(GROUP_COMMIT * 2).await;
            tx.send(2).unwrap();
            tokio::time::sleep(GROUP_COMMIT * 2).await;
            tx.send(3).unwrap();
            tokio::time::sleep(GROUP_COMMIT * 2).await;
            tx.send(4).unwrap();
            tokio::time::sleep(GROUP_COMMIT).await;
            tx.send_urgent(5).unwrap();
        });
        assert_eq!(rx.next_batch().await, Some(vec![1, 2, 3]));
        assert_eq!(started.elapsed(), window);
        assert_eq!(rx.next_batch().await, Some(vec![4, 5]));
        assert_eq!(
            started.elapsed(),
            GROUP_COMMIT * 7,
            "the urgent item did not cut the longer wait"
        );
        sender.await.unwrap();
        assert_eq!(rx.next_batch().await, None);
    }

    #[test]
    fn rows_are_written_in_few_statement_shapes() {
        for n in 0..300 {
            let chunks: Vec<usize> = row_chunks(n).collect();
            assert_eq!(chunks.iter().sum::<usize>(), n, "{n}: {chunks:?}");
            assert!(chunks.iter().all(|c| c.is_power_of_two() && *c <= 64));
            assert!(chunks.len() <= n / 64 + 6, "{n}: {chunks:?}");
        }
        assert_eq!(row_chunks(100).collect::<Vec<_>>(), [64, 32, 4]);
        assert_eq!(
            rows_sql("INSERT INTO t (a, b) VALUES ", 2, 3, ";"),
            "INSERT INTO t (a, b) VALUES (?, ?), (?, ?), (?, ?);"
        );
    }
}
