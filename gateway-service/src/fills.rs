//! The fills ledger: every fill of every engine, durable and counted once
//! (docs/pnl.md, ARCHITECTURE.md "A fill's path to the ledger").
//!
//! The registry feeds it every state it applies and every order it adopts
//! ([`Ledger::observe`], called after the registry's lock is released, as
//! risk is). The ledger keeps its own high-water mark per order (cumulative
//! executed volume, value and fee it has recorded), loaded from the database
//! at start, and records what a new state adds beyond it as one fill. So a
//! fill that happened while the gateway was down is recorded once when the
//! order is next seen (adopted open at start, or looked up when its engine
//! reconciles), and a state seen twice adds nothing.
//!
//! No venue Herd speaks carries trade ids in its order answers, so a fill's
//! id is derived: `<venue order id>:<cumulative executed volume after it>`
//! (`trade_id_derived`). It is stable (the same order at the same executed
//! volume always gives the same id) and the table's primary key, so a
//! repeated insert is a no-op.
//!
//! Storage: `state_dir/fills.sqlite` (an in-memory database without a
//! `state_dir`: nothing survives a restart then). Tables `fills`,
//! `fill_orders` (each order's engine and strategy tag, queued when the
//! order is registered; left out when the order's first fill, whose row
//! carries the tag, commits with it, and for an empty tag) and `funding` (payments booked to engines). Writes
//! go through one writer task in batches, like the risk store's.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::str::FromStr;
use std::sync::Mutex;

use herd_venue::{FundingPayment, OrderState, Side};
use rust_decimal::Decimal;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

/// One recorded fill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fill {
    pub trade_id: String,
    pub trade_id_derived: bool,
    pub time_ms: i64,
    pub engine: String,
    pub strategy: String,
    pub symbol: String,
    pub side: Side,
    pub price: Decimal,
    pub volume: Decimal,
    pub fee: Decimal,
    pub fee_asset: String,
    /// The engine's client order id (no gateway prefix).
    pub client_order_id: String,
    pub venue_order_id: String,
}

/// A funding payment booked to the engine that asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Funding {
    pub payment_id: String,
    pub time_ms: i64,
    pub engine: String,
    pub symbol: String,
    pub amount: Decimal,
    pub asset: String,
}

/// Which fills to list.
#[derive(Debug, Clone, Default)]
pub struct FillFilter {
    pub engine: Option<String>,
    pub strategy: Option<String>,
    pub symbol: Option<String>,
    /// Inclusive.
    pub from_ms: Option<i64>,
    /// Exclusive.
    pub to_ms: Option<i64>,
    /// The newest this many (None = all), answered oldest first.
    pub limit: Option<u32>,
}

impl FillFilter {
    fn matches(&self, f: &Fill) -> bool {
        self.engine.as_ref().is_none_or(|e| *e == f.engine)
            && self.strategy.as_ref().is_none_or(|s| *s == f.strategy)
            && self.symbol.as_ref().is_none_or(|s| *s == f.symbol)
            && self.from_ms.is_none_or(|t| f.time_ms >= t)
            && self.to_ms.is_none_or(|t| f.time_ms < t)
    }
}

/// What the ledger has recorded of one order so far.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Mark {
    volume: Decimal,
    value: Decimal,
    fee: Decimal,
}

#[derive(Debug)]
enum Write {
    Fill {
        fill: Box<Fill>,
        venue_client_id: String,
        mark: Mark,
    },
    Tag {
        venue_client_id: String,
        engine: String,
        strategy: String,
    },
    Funding(Funding),
    Flush(tokio::sync::oneshot::Sender<()>),
}

#[derive(Debug, Default)]
struct Inner {
    /// Venue-facing client id -> what is recorded.
    marks: HashMap<String, Mark>,
    /// Venue-facing client id -> strategy tag.
    tags: HashMap<String, String>,
    funding_seen: HashSet<String>,
}

/// Fills read from the database so far, in list order.
#[derive(Debug, Default)]
struct ReadCache {
    last_row: i64,
    fills: Vec<Fill>,
}

/// The ledger. Cheap reads of recent state are in memory; lists and PnL
/// read the database after a flush.
pub struct Ledger {
    clock: std::sync::Arc<dyn herd_venue::Clock>,
    pool: SqlitePool,
    tx: crate::risk_store::WriteQueue<Write>,
    inner: Mutex<Inner>,
    read_cache: tokio::sync::Mutex<ReadCache>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger").finish_non_exhaustive()
    }
}

/// Checks a strategy tag from a PlaceOrder: 0 to 32 of `[A-Za-z0-9_-]`.
pub fn check_strategy_tag(tag: &str) -> Result<(), String> {
    if tag.len() > 32 {
        return Err(format!("strategy: {tag:?} is longer than 32 characters"));
    }
    if let Some(c) = tag
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        return Err(format!(
            "strategy: {tag:?} holds {c:?}; use only letters, digits, '_' and '-'"
        ));
    }
    Ok(())
}

fn dec(row: &sqlx::sqlite::SqliteRow, col: &str) -> anyhow::Result<Decimal> {
    let t: String = row.try_get(col)?;
    Decimal::from_str(&t).map_err(|e| anyhow::anyhow!("fills.sqlite: {col} {t:?}: {e}"))
}

impl Ledger {
    /// Opens (creating) `dir/fills.sqlite`, or an in-memory ledger when
    /// `dir` is None, loads the orders' marks and starts the writer task.
    pub async fn open(
        dir: Option<&Path>,
        clock: std::sync::Arc<dyn herd_venue::Clock>,
    ) -> anyhow::Result<Ledger> {
        let (opts, max) = match dir {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(|e| {
                    anyhow::anyhow!("state_dir {}: cannot create: {e}", dir.display())
                })?;
                (
                    SqliteConnectOptions::new()
                        .filename(dir.join("fills.sqlite"))
                        .create_if_missing(true)
                        .journal_mode(SqliteJournalMode::Wal)
                        .synchronous(SqliteSynchronous::Normal)
                        .busy_timeout(std::time::Duration::from_secs(10)),
                    // One connection: the writer task and the reads take
                    // turns, and no second connection can race the first to
                    // switch a new file to WAL ("database is locked" at
                    // start, seen under load).
                    1,
                )
            }
            // One connection: every connection to ":memory:" is its own database.
            None => (SqliteConnectOptions::from_str("sqlite::memory:")?, 1),
        };
        let pool = SqlitePoolOptions::new()
            .max_connections(max)
            .min_connections(1)
            // A local database: no ping (a round trip to SQLite's thread)
            // before every use.
            .test_before_acquire(false)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(opts)
            .await
            .map_err(|e| anyhow::anyhow!("fills ledger: cannot open fills.sqlite: {e}"))?;
        for ddl in [
            "CREATE TABLE IF NOT EXISTS fills (trade_id TEXT PRIMARY KEY, derived INTEGER NOT NULL, \
             time_ms INTEGER NOT NULL, engine TEXT NOT NULL, strategy TEXT NOT NULL, \
             symbol TEXT NOT NULL, side TEXT NOT NULL, price TEXT NOT NULL, volume TEXT NOT NULL, \
             fee TEXT NOT NULL, fee_asset TEXT NOT NULL, client_order_id TEXT NOT NULL, \
             venue_client_id TEXT NOT NULL, venue_order_id TEXT NOT NULL, \
             cum_volume TEXT NOT NULL, cum_value TEXT NOT NULL, cum_fee TEXT NOT NULL)",
            "CREATE INDEX IF NOT EXISTS fills_time ON fills (time_ms)",
            "CREATE TABLE IF NOT EXISTS fill_orders (venue_client_id TEXT PRIMARY KEY, \
             engine TEXT NOT NULL, strategy TEXT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS funding (payment_id TEXT PRIMARY KEY, time_ms INTEGER NOT NULL, \
             engine TEXT NOT NULL, symbol TEXT NOT NULL, amount TEXT NOT NULL, asset TEXT NOT NULL)",
        ] {
            sqlx::query(ddl).execute(&pool).await?;
        }
        let mut inner = Inner::default();
        for row in sqlx::query(
            "SELECT venue_client_id, strategy, cum_volume, cum_value, cum_fee FROM fills \
             ORDER BY rowid",
        )
        .fetch_all(&pool)
        .await?
        {
            let id: String = row.try_get("venue_client_id")?;
            let m = Mark {
                volume: dec(&row, "cum_volume")?,
                value: dec(&row, "cum_value")?,
                fee: dec(&row, "cum_fee")?,
            };
            // A fill's row carries its order's tag: the `fill_orders` row
            // is left out when it would commit with the order's first fill.
            let strategy: String = row.try_get("strategy")?;
            if !strategy.is_empty() && !inner.tags.contains_key(&id) {
                inner.tags.insert(id.clone(), strategy);
            }
            let e = inner.marks.entry(id).or_default();
            if m.volume > e.volume {
                *e = m;
            }
        }
        for row in sqlx::query("SELECT venue_client_id, strategy FROM fill_orders")
            .fetch_all(&pool)
            .await?
        {
            inner
                .tags
                .insert(row.try_get("venue_client_id")?, row.try_get("strategy")?);
        }
        for row in sqlx::query("SELECT payment_id FROM funding")
            .fetch_all(&pool)
            .await?
        {
            inner.funding_seen.insert(row.try_get("payment_id")?);
        }
        let (tx, rx) = crate::risk_store::write_queue();
        tokio::spawn(writer(pool.clone(), rx));
        Ok(Ledger {
            clock,
            pool,
            tx,
            inner: Mutex::new(inner),
            read_cache: tokio::sync::Mutex::new(ReadCache::default()),
        })
    }

    /// The ledger's clock (for fills found on adoption).
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Remembers the strategy tag of an order being registered (before it
    /// is sent, so its fills always find it).
    ///
    /// An empty tag is neither kept nor written: an order without a row
    /// reads as untagged (`""`), so the row would say nothing. A tag is
    /// written in the transaction of the order's first fill when that fill
    /// comes within the same group commit (the fill's row carries the tag
    /// and [`Ledger::open`] reads tags from fills too), on its own otherwise.
    pub fn tag(&self, venue_client_id: &str, engine: &str, strategy: &str) {
        if strategy.is_empty() {
            return;
        }
        let mut inner = self.lock();
        if inner.tags.contains_key(venue_client_id) {
            return;
        }
        inner
            .tags
            .insert(venue_client_id.to_string(), strategy.to_string());
        let _ = self.tx.send(Write::Tag {
            venue_client_id: venue_client_id.to_string(),
            engine: engine.to_string(),
            strategy: strategy.to_string(),
        });
    }

    /// Records what `state` (an order of `engine`, whose own client id is
    /// `client_id`) executed beyond what is recorded, as one fill. Returns
    /// it, if any.
    pub fn observe(
        &self,
        engine: &str,
        client_id: &str,
        state: &OrderState,
        now_ms: i64,
    ) -> Option<Fill> {
        if state.is_foreign() || state.volume_executed <= Decimal::ZERO {
            return None;
        }
        let mut inner = self.lock();
        let old = inner
            .marks
            .get(&state.client_order_id)
            .copied()
            .unwrap_or_default();
        if state.volume_executed <= old.volume {
            return None;
        }
        let value = state.average_price.or(state.price).unwrap_or_default() * state.volume_executed;
        let volume = state.volume_executed - old.volume;
        let price = ((value - old.value) / volume).round_dp(12).normalize();
        let fee = (state.fee - old.fee).max(Decimal::ZERO);
        let mark = Mark {
            volume: state.volume_executed,
            value,
            fee: state.fee.max(old.fee),
        };
        inner.marks.insert(state.client_order_id.clone(), mark);
        let strategy = inner
            .tags
            .get(&state.client_order_id)
            .cloned()
            .unwrap_or_default();
        drop(inner);
        let order_key = if state.venue_order_id.is_empty() {
            &state.client_order_id
        } else {
            &state.venue_order_id
        };
        let fill = Fill {
            trade_id: format!("{order_key}:{}", state.volume_executed.normalize()),
            trade_id_derived: true,
            time_ms: now_ms,
            engine: engine.to_string(),
            strategy,
            symbol: state.symbol.clone(),
            side: state.side,
            price,
            volume,
            fee,
            fee_asset: state.fee_asset.clone(),
            client_order_id: client_id.to_string(),
            venue_order_id: state.venue_order_id.clone(),
        };
        let _ = self.tx.send(Write::Fill {
            fill: Box::new(fill.clone()),
            venue_client_id: state.client_order_id.clone(),
            mark,
        });
        Some(fill)
    }

    /// Books funding payments `engine` was handed (deduplicated by id).
    pub fn book_funding(&self, engine: &str, payments: &[FundingPayment]) {
        let mut inner = self.lock();
        for p in payments {
            if p.id.is_empty() || !inner.funding_seen.insert(p.id.clone()) {
                continue;
            }
            let _ = self.tx.send(Write::Funding(Funding {
                payment_id: p.id.clone(),
                time_ms: p.time_ms,
                engine: engine.to_string(),
                symbol: p.symbol.clone(),
                amount: p.amount,
                asset: p.asset.clone(),
            }));
        }
    }

    /// Waits until everything queued so far is written (at once: an urgent
    /// item cuts the group commit short).
    pub async fn flush(&self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.tx.send_urgent(Write::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// Waits until everything queued so far is written, at the writer's next
    /// group commit (`risk_store::GROUP_COMMIT`) rather than at once: for
    /// the engines' event streams, which wait for every fill they send and
    /// would otherwise cost a transaction per fill.
    pub async fn flush_grouped(&self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.tx.send(Write::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// Writes what is queued and closes the database (at shutdown).
    pub async fn close(&self) {
        self.flush().await;
        self.pool.close().await;
    }

    /// The fills matching `filter`, oldest first (by time, then the order
    /// they were recorded in). Rows already read are kept in memory (the
    /// dashboard reads every second): each call reads only the new ones.
    pub async fn fills(&self, filter: &FillFilter) -> anyhow::Result<Vec<Fill>> {
        self.flush().await;
        let mut cache = self.read_cache.lock().await;
        let rows =
            sqlx::query("SELECT rowid AS row_id, * FROM fills WHERE rowid > ? ORDER BY rowid")
                .bind(cache.last_row)
                .fetch_all(&self.pool)
                .await?;
        for r in &rows {
            let side: String = r.try_get("side")?;
            let derived: i64 = r.try_get("derived")?;
            let f = Fill {
                trade_id: r.try_get("trade_id")?,
                trade_id_derived: derived != 0,
                time_ms: r.try_get("time_ms")?,
                engine: r.try_get("engine")?,
                strategy: r.try_get("strategy")?,
                symbol: r.try_get("symbol")?,
                side: if side == "sell" {
                    Side::Sell
                } else {
                    Side::Buy
                },
                price: dec(r, "price")?,
                volume: dec(r, "volume")?,
                fee: dec(r, "fee")?,
                fee_asset: r.try_get("fee_asset")?,
                client_order_id: r.try_get("client_order_id")?,
                venue_order_id: r.try_get("venue_order_id")?,
            };
            cache.last_row = r.try_get("row_id")?;
            cache.fills.push(f);
        }
        if !rows.is_empty() {
            // Nearly sorted already (rows are written in the order fills are
            // seen); a stable sort keeps the write order among equal times.
            cache.fills.sort_by_key(|f| f.time_ms);
        }
        let mut out: Vec<Fill> = cache
            .fills
            .iter()
            .filter(|f| filter.matches(f))
            .cloned()
            .collect();
        if let Some(n) = filter.limit {
            let n = usize::try_from(n).unwrap_or(usize::MAX);
            if out.len() > n {
                out.drain(..out.len() - n);
            }
        }
        Ok(out)
    }

    /// Every funding payment booked, oldest first.
    pub async fn funding(&self) -> anyhow::Result<Vec<Funding>> {
        self.flush().await;
        let rows = sqlx::query("SELECT * FROM funding ORDER BY time_ms, rowid")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Funding {
                    payment_id: r.try_get("payment_id")?,
                    time_ms: r.try_get("time_ms")?,
                    engine: r.try_get("engine")?,
                    symbol: r.try_get("symbol")?,
                    amount: dec(r, "amount")?,
                    asset: r.try_get("asset")?,
                })
            })
            .collect()
    }
}

/// Writes what is queued, in order, one transaction per wake-up.
async fn writer(pool: SqlitePool, mut rx: crate::risk_store::WriteRx<Write>) {
    while let Some(batch) = rx.next_batch().await {
        let mut flushes = Vec::new();
        let mut writes = Vec::new();
        for w in batch {
            match w {
                Write::Flush(done) => flushes.push(done),
                w => writes.push(w),
            }
        }
        if let Err(e) = write_batch(&pool, writes).await {
            tracing::error!(error = %e, "fills ledger write failed");
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
}

async fn write_batch(pool: &SqlitePool, writes: Vec<Write>) -> Result<(), sqlx::Error> {
    if writes.is_empty() {
        return Ok(());
    }
    // Each table's rows in the order queued, many per INSERT.
    let mut fills = Vec::new();
    let mut tags = Vec::new();
    let mut funding = Vec::new();
    for w in writes {
        match w {
            Write::Fill {
                fill,
                venue_client_id,
                mark,
            } => fills.push((fill, venue_client_id, mark)),
            Write::Tag {
                venue_client_id,
                engine,
                strategy,
            } => tags.push((venue_client_id, engine, strategy)),
            Write::Funding(p) => funding.push(p),
            Write::Flush(_) => {}
        }
    }
    // A tag whose order's fill commits in this transaction with the same
    // tag needs no row of its own: the fill's row carries it.
    if !tags.is_empty() && !fills.is_empty() {
        let filled: HashSet<(&str, &str)> = fills
            .iter()
            .map(|(f, id, _)| (id.as_str(), f.strategy.as_str()))
            .collect();
        tags.retain(|(id, _, strategy)| !filled.contains(&(id.as_str(), strategy.as_str())));
    }
    use crate::risk_store::{in_one_transaction, row_chunks, rows_sql};
    // The whole batch is one query: BEGIN, the inserts, COMMIT.
    let mut sql = String::from("BEGIN; ");
    for n in row_chunks(tags.len()) {
        sql.push_str(&rows_sql(
            "INSERT OR IGNORE INTO fill_orders (venue_client_id, engine, strategy) VALUES ",
            3,
            n,
            "; ",
        ));
    }
    for n in row_chunks(fills.len()) {
        sql.push_str(&rows_sql(
            "INSERT OR IGNORE INTO fills (trade_id, derived, time_ms, engine, strategy, \
             symbol, side, price, volume, fee, fee_asset, client_order_id, \
             venue_client_id, venue_order_id, cum_volume, cum_value, cum_fee) VALUES ",
            17,
            n,
            "; ",
        ));
    }
    for n in row_chunks(funding.len()) {
        sql.push_str(&rows_sql(
            "INSERT OR IGNORE INTO funding (payment_id, time_ms, engine, symbol, amount, asset) \
             VALUES ",
            6,
            n,
            "; ",
        ));
    }
    sql.push_str("COMMIT");
    let mut q = sqlx::query(&sql);
    for (venue_client_id, engine, strategy) in &tags {
        q = q.bind(venue_client_id).bind(engine).bind(strategy);
    }
    for (f, venue_client_id, mark) in &fills {
        q = q
            .bind(&f.trade_id)
            .bind(i64::from(f.trade_id_derived))
            .bind(f.time_ms)
            .bind(&f.engine)
            .bind(&f.strategy)
            .bind(&f.symbol)
            .bind(f.side.as_str())
            .bind(f.price.to_string())
            .bind(f.volume.to_string())
            .bind(f.fee.to_string())
            .bind(&f.fee_asset)
            .bind(&f.client_order_id)
            .bind(venue_client_id)
            .bind(&f.venue_order_id)
            .bind(mark.volume.to_string())
            .bind(mark.value.to_string())
            .bind(mark.fee.to_string());
    }
    for p in &funding {
        q = q
            .bind(&p.payment_id)
            .bind(p.time_ms)
            .bind(&p.engine)
            .bind(&p.symbol)
            .bind(p.amount.to_string())
            .bind(&p.asset);
    }
    in_one_transaction(pool, q).await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use herd_venue::{NewOrder, OrderStatus, OrderType, SystemClock};
    use rust_decimal_macros::dec;

    fn state(exec: Decimal, avg: Decimal, fee: Decimal) -> OrderState {
        OrderState {
            status: if exec == dec!(100) {
                OrderStatus::Filled
            } else {
                OrderStatus::Open
            },
            venue_order_id: "OABC".into(),
            volume_executed: exec,
            average_price: Some(avg),
            fee,
            fee_asset: "USD".into(),
            ..OrderState::pending(
                &NewOrder {
                    client_order_id: "e0-a".into(),
                    symbol: "DOGEUSD".into(),
                    side: Side::Buy,
                    order_type: OrderType::Limit,
                    volume: dec!(100),
                    price: Some(dec!(0.1)),
                    post_only: true,
                    userref: 1,
                    reduce_only: false,
                },
                0,
            )
        }
    }

    /// Partial fills are separate fills with their own price and fee; a
    /// state seen again adds nothing, before or after a reopen; a fill that
    /// happened while the ledger was closed is recorded once on reopen.
    #[tokio::test]
    async fn once_per_fill_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let clock = std::sync::Arc::new(SystemClock);
        let l = Ledger::open(Some(dir.path()), clock.clone()).await.unwrap();
        l.tag("e0-a", "e0", "grid");
        let part = state(dec!(40), dec!(0.1), dec!(0.01));
        assert!(l.observe("e0", "a", &part, 1).is_some());
        assert!(l.observe("e0", "a", &part, 2).is_none(), "seen twice");
        l.close().await;

        let l = Ledger::open(Some(dir.path()), clock.clone()).await.unwrap();
        assert!(
            l.observe("e0", "a", &part, 3).is_none(),
            "seen after a reopen"
        );
        let full = state(dec!(100), dec!(0.09), dec!(0.0225));
        let f = l.observe("e0", "a", &full, 4).unwrap();
        // (100 * 0.09 - 40 * 0.1) / 60
        assert_eq!(
            (f.volume, f.price, f.fee),
            (dec!(60), dec!(0.083333333333), dec!(0.0125))
        );
        let fills = l.fills(&FillFilter::default()).await.unwrap();
        let ids: Vec<&str> = fills.iter().map(|f| f.trade_id.as_str()).collect();
        assert_eq!(ids, ["OABC:40", "OABC:100"]);
        assert!(
            fills
                .iter()
                .all(|f| f.strategy == "grid" && f.engine == "e0")
        );
        let only_late = FillFilter {
            from_ms: Some(4),
            ..FillFilter::default()
        };
        assert_eq!(l.fills(&only_late).await.unwrap().len(), 1);
        l.close().await;
        let l = Ledger::open(Some(dir.path()), clock).await.unwrap();
        assert!(l.observe("e0", "a", &full, 5).is_none());
        assert_eq!(l.fills(&FillFilter::default()).await.unwrap().len(), 2);
    }

    /// A tag written alone (its order not yet filled at the commit) and one
    /// left to its order's first fill both attribute the orders' later
    /// fills after a reopen; an untagged order's fills read as untagged.
    #[tokio::test]
    async fn tags_survive_a_reopen_alone_or_with_the_first_fill() {
        let dir = tempfile::tempdir().unwrap();
        let clock = std::sync::Arc::new(SystemClock);
        let order = |id: &str, venue: &str, exec: Decimal| {
            let mut s = state(exec, dec!(0.1), dec!(0));
            s.client_order_id = format!("e0-{id}");
            s.venue_order_id = venue.into();
            s
        };
        let l = Ledger::open(Some(dir.path()), clock.clone()).await.unwrap();
        l.tag("e0-a", "e0", "grid");
        l.flush().await;
        l.tag("e0-b", "e0", "ranger");
        l.tag("e0-c", "e0", "");
        assert!(
            l.observe("e0", "b", &order("b", "OB", dec!(10)), 1)
                .is_some()
        );
        assert!(
            l.observe("e0", "c", &order("c", "OC", dec!(10)), 1)
                .is_some()
        );
        l.flush().await;
        let rows: i64 = sqlx::query("SELECT COUNT(*) AS n FROM fill_orders")
            .fetch_one(&l.pool)
            .await
            .unwrap()
            .try_get("n")
            .unwrap();
        assert_eq!(rows, 1, "only a's tag has a row of its own");
        l.close().await;

        let l = Ledger::open(Some(dir.path()), clock).await.unwrap();
        for (id, venue) in [("a", "OA"), ("b", "OB"), ("c", "OC")] {
            assert!(
                l.observe("e0", id, &order(id, venue, dec!(20)), 2)
                    .is_some()
            );
        }
        let fills = l.fills(&FillFilter::default()).await.unwrap();
        let got: Vec<(&str, &str)> = fills
            .iter()
            .map(|f| (f.trade_id.as_str(), f.strategy.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("OB:10", "ranger"),
                ("OC:10", ""),
                ("OA:20", "grid"),
                ("OB:20", "ranger"),
                ("OC:20", ""),
            ]
        );
    }

    /// Funding payments an engine reads are booked once, across a reopen.
    #[tokio::test]
    async fn funding_is_booked_once() {
        let dir = tempfile::tempdir().unwrap();
        let clock = std::sync::Arc::new(SystemClock);
        let pay = |id: &str, amount: Decimal| FundingPayment {
            id: id.into(),
            symbol: "BTCUSDT-PERP".into(),
            amount,
            asset: "USDT".into(),
            time_ms: 1,
            side: herd_venue::PositionSide::Short,
            size: dec!(0.01),
            rate: dec!(0.0001),
            mark_price: dec!(50000),
        };
        let l = Ledger::open(Some(dir.path()), clock.clone()).await.unwrap();
        l.book_funding("e1", &[pay("p1", dec!(0.05)), pay("p1", dec!(0.05))]);
        l.close().await;
        let l = Ledger::open(Some(dir.path()), clock).await.unwrap();
        l.book_funding("e1", &[pay("p1", dec!(0.05)), pay("p2", dec!(-0.02))]);
        let booked = l.funding().await.unwrap();
        let ids: Vec<&str> = booked.iter().map(|f| f.payment_id.as_str()).collect();
        assert_eq!(ids, ["p1", "p2"]);
        assert!(booked.iter().all(|f| f.engine == "e1"));
    }

    /// Many orders filling in parts: every fill is recorded, in order, and
    /// the PnL over them adds up. Prints what writing, reading and
    /// computing cost (docs/pnl.md quotes it).
    #[tokio::test]
    async fn many_partial_fills() {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::open(Some(dir.path()), std::sync::Arc::new(SystemClock))
            .await
            .unwrap();
        let (orders, parts) = (1_000, 5);
        let started = std::time::Instant::now();
        for o in 0..orders {
            let mut s = state(dec!(0), dec!(0.1), dec!(0));
            s.client_order_id = format!("e0-o{o}");
            s.venue_order_id = format!("O{o}");
            l.tag(&s.client_order_id, "e0", "grid");
            for p in 1..=parts {
                s.volume_executed = Decimal::from(p * 20);
                s.fee = Decimal::from(p) * dec!(0.005);
                assert!(
                    l.observe("e0", &format!("o{o}"), &s, i64::from(o))
                        .is_some()
                );
            }
        }
        let observed = started.elapsed();
        l.flush().await;
        let written = started.elapsed();
        let fills = l.fills(&FillFilter::default()).await.unwrap();
        let read = started.elapsed();
        assert_eq!(fills.len(), usize::try_from(orders * parts).unwrap());
        let (_, total, _) = crate::pnl::compute(
            &fills,
            &[],
            &crate::pnl::Context::default(),
            crate::pnl::Grouping::Day,
        );
        let computed = started.elapsed();
        let again = l.fills(&FillFilter::default()).await.unwrap();
        let reread = started.elapsed();
        assert_eq!(again, fills, "the second read is the first");
        assert_eq!(total.fees, Decimal::from(orders) * dec!(0.025));
        assert_eq!(total.volume, Decimal::from(orders) * dec!(10));
        println!(
            "{} fills: observe {observed:?}, committed {written:?}, read {:?}, PnL {:?}, \
             read again {:?}",
            fills.len(),
            read - written,
            computed - read,
            reread - computed
        );
    }

    #[test]
    fn strategy_tags_are_checked() {
        for ok in ["", "grid", "risk-flatten", "r_0"] {
            assert!(check_strategy_tag(ok).is_ok(), "{ok}");
        }
        for bad in ["a b", "x;drop", &"g".repeat(33)] {
            let e = check_strategy_tag(bad).unwrap_err();
            assert!(e.starts_with("strategy: "), "{e}");
        }
    }
}
