//! The engine's store: the journal of orders and fills, the event cursor and
//! the strategies' append-only journal. SQLite (a file under the data dir) by
//! default, Postgres when `DATABASE_URL` says so; the same SQL runs on both.
//!
//! Exactly-once fills: an event is recorded in one transaction that upserts
//! the order, inserts the fill under a key derived from the order and its
//! cumulative executed volume (a replayed event inserts nothing) and moves
//! the cursor. After a crash the engine resumes after the cursor, so an event
//! is either wholly recorded or replayed.
//!
//! Rows are read by column name into `#[derive(sqlx::FromRow)]` structs;
//! decimals are TEXT columns (`DecimalText`).

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use herd_proto::gateway as pb;
use rust_decimal::Decimal;
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, FromRow};

/// A store failure. Causes are written into the message and are not the
/// error's source, so a printed chain says each once.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(sqlx::Error),
    #[error("stored value {0:?} is not a decimal")]
    Decimal(String),
    /// The database did not take a connection: where (host:port, never the
    /// URL, which may hold a password) and why.
    #[error("cannot connect to the database at {target}: {cause}")]
    Connect { target: String, cause: String },
    #[error("cannot create data dir {path}: {cause}")]
    DataDir { path: String, cause: std::io::Error },
    /// The SQLite file could not be opened or created (a missing or
    /// unwritable directory).
    #[error("cannot open the SQLite database {path}: {cause}")]
    SqliteOpen { path: String, cause: sqlx::Error },
    /// A stored row that cannot be read back.
    #[error("corrupt row: {0}")]
    Corrupt(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> StoreError {
        StoreError::Db(e)
    }
}

/// The file a `sqlite:` URL names ("sqlite:///tmp/x.db?mode=rwc" ->
/// "/tmp/x.db").
fn sqlite_path(url: &str) -> &str {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    rest.split('?').next().unwrap_or(rest)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

/// Schema migrations, in order: (version, SQL). The SQL is written for
/// SQLite; the only difference Postgres needs is the auto-increment key
/// ([`for_backend`]).
const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        r#"
    CREATE TABLE orders (
        client_order_id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        symbol TEXT NOT NULL,
        side TEXT NOT NULL,
        order_type TEXT NOT NULL,
        price TEXT NOT NULL,
        volume TEXT NOT NULL,
        volume_executed TEXT NOT NULL,
        average_price TEXT NOT NULL,
        fee TEXT NOT NULL,
        fee_asset TEXT NOT NULL,
        status TEXT NOT NULL,
        venue_order_id TEXT NOT NULL,
        created_at_ms BIGINT NOT NULL,
        updated_at_ms BIGINT NOT NULL
    );
    CREATE TABLE fills (
        fill_id TEXT PRIMARY KEY,
        client_order_id TEXT NOT NULL,
        volume TEXT NOT NULL,
        price TEXT NOT NULL,
        fee TEXT NOT NULL,
        fee_asset TEXT NOT NULL,
        sequence BIGINT NOT NULL,
        incarnation TEXT NOT NULL,
        time_ms BIGINT NOT NULL
    );
    CREATE TABLE cursor (
        id INTEGER PRIMARY KEY,
        incarnation TEXT NOT NULL,
        last_sequence BIGINT NOT NULL
    );
    CREATE TABLE journal (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        stream TEXT NOT NULL,
        kind TEXT NOT NULL,
        payload TEXT NOT NULL,
        time_ms BIGINT NOT NULL
    );
    "#,
    ),
    // The funding-rate orchestrator: hedged positions (state as JSON, the
    // queryable parts as columns), their leg fills, funding payments keyed by
    // the venue's booking id (so a re-read adds nothing) and PnL snapshots.
    (2, FUNDING_SCHEMA),
    // Herd events not yet acknowledged by the gateway (crate::events): the
    // encoded HerdEvent as hex, in order.
    (
        3,
        r#"
    CREATE TABLE event_outbox (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        body TEXT NOT NULL
    )
    "#,
    ),
];

const FUNDING_SCHEMA: &str = r#"
    CREATE TABLE funding_positions (
        id TEXT PRIMARY KEY,
        symbol TEXT NOT NULL,
        state TEXT NOT NULL,
        payload TEXT NOT NULL,
        opened_at_ms BIGINT NOT NULL,
        updated_at_ms BIGINT NOT NULL
    );
    CREATE TABLE funding_fills (
        fill_id TEXT PRIMARY KEY,
        position_id TEXT NOT NULL,
        leg TEXT NOT NULL,
        purpose TEXT NOT NULL,
        client_order_id TEXT NOT NULL,
        symbol TEXT NOT NULL,
        side TEXT NOT NULL,
        qty TEXT NOT NULL,
        price TEXT NOT NULL,
        fee TEXT NOT NULL,
        fee_asset TEXT NOT NULL,
        fee_usd TEXT NOT NULL,
        time_ms BIGINT NOT NULL
    );
    CREATE TABLE funding_payments (
        payment_id TEXT PRIMARY KEY,
        position_id TEXT NOT NULL,
        symbol TEXT NOT NULL,
        amount TEXT NOT NULL,
        rate TEXT NOT NULL,
        mark TEXT NOT NULL,
        size TEXT NOT NULL,
        source TEXT NOT NULL,
        time_ms BIGINT NOT NULL
    );
    CREATE TABLE funding_pnl (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        time_ms BIGINT NOT NULL,
        total_funding TEXT NOT NULL,
        total_fees TEXT NOT NULL,
        unrealized TEXT NOT NULL,
        net TEXT NOT NULL,
        open_positions BIGINT NOT NULL
    );
    CREATE INDEX funding_fills_position ON funding_fills (position_id);
    CREATE INDEX funding_payments_position ON funding_payments (position_id)
"#;

/// A migration's SQL for `backend`: SQLite's auto-increment key becomes
/// Postgres' BIGSERIAL; everything else is the same SQL.
fn for_backend(sqlite_sql: &str, backend: Backend) -> String {
    match backend {
        Backend::Sqlite => sqlite_sql.to_string(),
        Backend::Postgres => {
            sqlite_sql.replace("INTEGER PRIMARY KEY AUTOINCREMENT", "BIGSERIAL PRIMARY KEY")
        }
    }
}

/// An order as the engine journals it.
#[derive(Debug, Clone, PartialEq, FromRow)]
pub struct OrderRow {
    pub client_order_id: String,
    pub owner: String,
    pub symbol: String,
    pub side: String,
    pub order_type: String,
    pub price: String,
    pub volume: String,
    pub volume_executed: String,
    pub average_price: String,
    pub fee: String,
    pub fee_asset: String,
    pub status: String,
    pub venue_order_id: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// One journaled fill.
#[derive(Debug, Clone, PartialEq, FromRow)]
pub struct FillRow {
    pub fill_id: String,
    pub client_order_id: String,
    #[sqlx(try_from = "DecimalText")]
    pub volume: Decimal,
    #[sqlx(try_from = "DecimalText")]
    pub price: Decimal,
    #[sqlx(try_from = "DecimalText")]
    pub fee: Decimal,
    pub fee_asset: String,
    #[sqlx(try_from = "Sequence")]
    pub sequence: u64,
    pub incarnation: String,
}

/// One stored funding position: its state as JSON plus the columns
/// operators query.
#[derive(Debug, Clone, PartialEq, FromRow)]
pub struct FundingPositionRow {
    pub id: String,
    pub symbol: String,
    pub state: String,
    pub payload: String,
    pub opened_at_ms: i64,
    pub updated_at_ms: i64,
}

/// One fill of a funding position's leg (`purpose`: open, close, rollback).
#[derive(Debug, Clone, PartialEq, FromRow)]
pub struct FundingFillRow {
    pub fill_id: String,
    pub position_id: String,
    pub leg: String,
    pub purpose: String,
    pub client_order_id: String,
    pub symbol: String,
    pub side: String,
    #[sqlx(try_from = "DecimalText")]
    pub qty: Decimal,
    #[sqlx(try_from = "DecimalText")]
    pub price: Decimal,
    #[sqlx(try_from = "DecimalText")]
    pub fee: Decimal,
    pub fee_asset: String,
    #[sqlx(try_from = "DecimalText")]
    pub fee_usd: Decimal,
    pub time_ms: i64,
}

/// One funding settlement booked to a position (`source`: venue or
/// estimate).
#[derive(Debug, Clone, PartialEq, FromRow)]
pub struct FundingPaymentRow {
    pub payment_id: String,
    pub position_id: String,
    pub symbol: String,
    #[sqlx(try_from = "DecimalText")]
    pub amount: Decimal,
    #[sqlx(try_from = "DecimalText")]
    pub rate: Decimal,
    #[sqlx(try_from = "DecimalText")]
    pub mark: Decimal,
    #[sqlx(try_from = "DecimalText")]
    pub size: Decimal,
    pub source: String,
    pub time_ms: i64,
}

/// A snapshot of the orchestrator's PnL.
#[derive(Debug, Clone, PartialEq, FromRow)]
pub struct FundingPnlRow {
    pub time_ms: i64,
    #[sqlx(try_from = "DecimalText")]
    pub total_funding: Decimal,
    #[sqlx(try_from = "DecimalText")]
    pub total_fees: Decimal,
    #[sqlx(try_from = "DecimalText")]
    pub unrealized: Decimal,
    #[sqlx(try_from = "DecimalText")]
    pub net: Decimal,
    pub open_positions: i64,
}

/// Where the event stream was left: the gateway incarnation and the last
/// sequence fully recorded.
#[derive(Debug, Clone, PartialEq, Eq, Default, FromRow)]
pub struct Cursor {
    pub incarnation: String,
    #[sqlx(try_from = "Sequence")]
    pub last_sequence: u64,
}

/// The engine's database.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// Herd event ids and the publisher's wake-up (`crate::events`).
    events: crate::events::SharedIds,
}

/// A decimal column as stored: TEXT, the empty string reading as zero. Rows
/// name it in `#[sqlx(try_from = "DecimalText")]`. The text is parsed while
/// the column is decoded, so a bad value is an error naming the column and
/// the value. (Not in a `TryFrom`: sqlx 0.8's derive prints such errors as
/// "unprintable".)
struct DecimalText(Decimal);

impl From<DecimalText> for Decimal {
    fn from(t: DecimalText) -> Decimal {
        t.0
    }
}

impl<DB: sqlx::Database> sqlx::Type<DB> for DecimalText
where
    String: sqlx::Type<DB>,
{
    fn type_info() -> DB::TypeInfo {
        <String as sqlx::Type<DB>>::type_info()
    }

    fn compatible(ty: &DB::TypeInfo) -> bool {
        <String as sqlx::Type<DB>>::compatible(ty)
    }
}

impl<'r, DB: sqlx::Database> sqlx::Decode<'r, DB> for DecimalText
where
    String: sqlx::Decode<'r, DB>,
{
    fn decode(value: DB::ValueRef<'r>) -> Result<DecimalText, sqlx::error::BoxDynError> {
        let text = <String as sqlx::Decode<'r, DB>>::decode(value)?;
        if text.is_empty() {
            return Ok(DecimalText(Decimal::ZERO));
        }
        match Decimal::from_str(&text) {
            Ok(d) => Ok(DecimalText(d)),
            Err(_) => Err(Box::new(StoreError::Decimal(text))),
        }
    }
}

/// An event sequence number, stored as BIGINT (it is written clamped to
/// `i64::MAX`; a negative value reads as 0). Rows name it in
/// `#[sqlx(try_from = "Sequence")]`.
struct Sequence(u64);

impl From<Sequence> for u64 {
    fn from(s: Sequence) -> u64 {
        s.0
    }
}

impl<DB: sqlx::Database> sqlx::Type<DB> for Sequence
where
    i64: sqlx::Type<DB>,
{
    fn type_info() -> DB::TypeInfo {
        <i64 as sqlx::Type<DB>>::type_info()
    }

    fn compatible(ty: &DB::TypeInfo) -> bool {
        <i64 as sqlx::Type<DB>>::compatible(ty)
    }
}

impl<'r, DB: sqlx::Database> sqlx::Decode<'r, DB> for Sequence
where
    i64: sqlx::Decode<'r, DB>,
{
    fn decode(value: DB::ValueRef<'r>) -> Result<Sequence, sqlx::error::BoxDynError> {
        let n = <i64 as sqlx::Decode<'r, DB>>::decode(value)?;
        Ok(Sequence(u64::try_from(n).unwrap_or(0)))
    }
}

fn status_name(s: i32) -> &'static str {
    match pb::OrderStatus::try_from(s) {
        Ok(pb::OrderStatus::Pending) => "pending",
        Ok(pb::OrderStatus::Open) => "open",
        Ok(pb::OrderStatus::Filled) => "filled",
        Ok(pb::OrderStatus::Canceled) => "canceled",
        Ok(pb::OrderStatus::Expired) => "expired",
        Ok(pb::OrderStatus::Rejected) => "rejected",
        _ => "unknown",
    }
}

/// True for statuses an order never leaves. `lost`: the reconcile step
/// closed it because neither the gateway nor the venue knows it
/// (docs/reconcile.md).
pub fn is_final_status(s: &str) -> bool {
    matches!(s, "filled" | "canceled" | "expired" | "rejected" | "lost")
}

/// The status the reconcile step gives an order nobody knows any more.
pub const LOST: &str = "lost";

/// sqlx's default: how long the pool waits for a connection.
pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);
/// Tries of the first Postgres connection before the store gives up.
pub const CONNECT_ATTEMPTS: u32 = 3;
/// Longest one try of the first connection may take.
const CONNECT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// One connection to Postgres before the pool is built, so that a server
/// that refuses (or a host that does not resolve) is reported with its
/// cause. The pool would retry it silently until its acquire timeout.
/// I/O failures are tried again [`CONNECT_ATTEMPTS`] times with a short
/// pause, logged; anything else (authentication, a missing database) fails
/// at once.
async fn probe_postgres(url: &str, acquire_timeout: Duration) -> Result<(), StoreError> {
    use sqlx::Connection;
    let target = host_port(url);
    let per_try = acquire_timeout.min(CONNECT_ATTEMPT_TIMEOUT);
    let mut attempt = 1;
    loop {
        let cause = match tokio::time::timeout(per_try, sqlx::AnyConnection::connect(url)).await {
            Ok(Ok(conn)) => {
                // Closing is courtesy; the probe has answered.
                let _ = conn.close().await;
                return Ok(());
            }
            Ok(Err(sqlx::Error::Io(e))) => e.to_string(),
            Ok(Err(e)) => {
                return Err(StoreError::Connect {
                    target,
                    cause: e.to_string(),
                });
            }
            Err(_) => format!("no answer within {} ms", per_try.as_millis()),
        };
        if attempt >= CONNECT_ATTEMPTS {
            return Err(StoreError::Connect {
                target,
                cause: format!("{cause} ({attempt} attempts)"),
            });
        }
        let pause = Duration::from_millis(250 * u64::from(attempt));
        tracing::warn!(
            database = %target,
            %cause,
            attempt,
            of = CONNECT_ATTEMPTS,
            retry_in_ms = pause.as_millis() as u64,
            "cannot connect to the database; retrying"
        );
        tokio::time::sleep(pause).await;
        attempt += 1;
    }
}

/// `host:port` of a `postgres://user:password@host:port/db?...` URL, with
/// Postgres' default port when none is given; never the credentials.
fn host_port(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let has_port = match host.rsplit_once(':') {
        Some((_, p)) => {
            !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && !host.ends_with(']')
        }
        None => false,
    };
    match (host.is_empty(), has_port) {
        (true, _) => "localhost:5432".to_string(),
        (false, true) => host.to_string(),
        (false, false) => format!("{host}:5432"),
    }
}

/// Inserts a herd event into the outbox (an id already there is kept).
async fn insert_event(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    e: &herd_proto::gateway::HerdEvent,
) -> Result<(), StoreError> {
    let body = crate::events::hex(&prost::Message::encode_to_vec(e));
    sqlx::query("INSERT INTO event_outbox (id, body) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING")
        .bind(&e.id)
        .bind(body)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

impl Store {
    /// Opens (creating if needed) the database at `url` and migrates it.
    /// `sqlite://path?mode=rwc` or `postgres://...`.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        Store::connect_with_timeout(url, DEFAULT_ACQUIRE_TIMEOUT).await
    }

    /// [`Store::connect`] with the pool's acquire timeout. A Postgres server
    /// that refuses or cannot be reached is an error at once (after
    /// [`CONNECT_ATTEMPTS`] quick tries, each logged), naming host, port and
    /// cause, not a silent wait for the acquire timeout ending in "pool
    /// timed out".
    pub async fn connect_with_timeout(
        url: &str,
        acquire_timeout: Duration,
    ) -> Result<Store, StoreError> {
        install_default_drivers();
        let backend = if url.starts_with("postgres") {
            Backend::Postgres
        } else {
            Backend::Sqlite
        };
        if backend == Backend::Postgres {
            probe_postgres(url, acquire_timeout).await?;
        }
        let pool = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 1 } else { 5 })
            .acquire_timeout(acquire_timeout)
            .connect(url)
            .await
            .map_err(|cause| match backend {
                Backend::Sqlite => StoreError::SqliteOpen {
                    path: sqlite_path(url).to_string(),
                    cause,
                },
                Backend::Postgres => StoreError::Db(cause),
            })?;
        let store = Store {
            pool,
            backend,
            events: crate::events::SharedIds::default(),
        };
        if backend == Backend::Sqlite {
            sqlx::query("PRAGMA journal_mode=WAL")
                .execute(&store.pool)
                .await?;
            sqlx::query("PRAGMA synchronous=FULL")
                .execute(&store.pool)
                .await?;
        }
        store.migrate().await?;
        Ok(store)
    }

    /// The SQLite store under `data_dir` (created if missing).
    pub async fn open_sqlite_dir(data_dir: &Path, engine_id: &str) -> Result<Store, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|cause| StoreError::DataDir {
            path: data_dir.display().to_string(),
            cause,
        })?;
        let file = data_dir.join(format!("{engine_id}.db"));
        Store::connect(&format!("sqlite://{}?mode=rwc", file.display())).await
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        // One transaction; on Postgres an advisory lock keeps two engines
        // starting on one database from migrating at the same time.
        let mut tx = self.pool.begin().await?;
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock(7224913)")
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY)")
            .execute(&mut *tx)
            .await?;
        for (version, sql) in MIGRATIONS {
            let done: Option<i64> =
                sqlx::query_scalar("SELECT version FROM schema_migrations WHERE version = $1")
                    .bind(*version)
                    .fetch_optional(&mut *tx)
                    .await?;
            if done.is_some() {
                continue;
            }
            let sql = for_backend(sql, self.backend);
            for stmt in sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
                sqlx::query(stmt).execute(&mut *tx).await?;
            }
            sqlx::query("INSERT INTO schema_migrations (version) VALUES ($1)")
                .bind(*version)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Records a new order before it is sent to the gateway.
    pub async fn insert_order(&self, o: &OrderRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO orders (client_order_id, owner, symbol, side, order_type, price, volume, \
             volume_executed, average_price, fee, fee_asset, status, venue_order_id, created_at_ms, updated_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) \
             ON CONFLICT (client_order_id) DO NOTHING",
        )
        .bind(&o.client_order_id)
        .bind(&o.owner)
        .bind(&o.symbol)
        .bind(&o.side)
        .bind(&o.order_type)
        .bind(&o.price)
        .bind(&o.volume)
        .bind(&o.volume_executed)
        .bind(&o.average_price)
        .bind(&o.fee)
        .bind(&o.fee_asset)
        .bind(&o.status)
        .bind(&o.venue_order_id)
        .bind(o.created_at_ms)
        .bind(o.updated_at_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Updates an order from the gateway's view of it (outside the stream,
    /// e.g. the answer to PlaceOrder or a reconcile).
    pub async fn update_order(&self, o: &pb::Order, now_ms: i64) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        update_order_in(&mut tx, o, now_ms).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records one stream event exactly once: order state, fill (if any) and
    /// cursor in one transaction. Returns true when the event carried a fill
    /// that was not recorded before.
    pub async fn record_event(&self, ev: &pb::OrderEvent) -> Result<bool, StoreError> {
        let new_fill = self.record_events(std::slice::from_ref(ev)).await?;
        Ok(new_fill.first().copied().unwrap_or(false))
    }

    /// Records stream events in stream order, each exactly once, in one
    /// transaction: every event's order state and fill, and the cursor at
    /// the last. One commit (and one fsync) for what arrived together, not
    /// one per event; all or nothing, so a crash leaves the cursor before
    /// the batch and the stream replays it. Returns, per event, whether it
    /// carried a fill not recorded before (a fill repeated within the batch
    /// counts once).
    pub async fn record_events(&self, events: &[pb::OrderEvent]) -> Result<Vec<bool>, StoreError> {
        let Some(last) = events.last() else {
            return Ok(Vec::new());
        };
        let mut tx = self.pool.begin().await?;
        let mut new_fills = Vec::with_capacity(events.len());
        for ev in events {
            new_fills.push(record_in(&mut tx, ev).await?);
        }
        set_cursor_in(&mut tx, &last.incarnation, last.sequence).await?;
        tx.commit().await?;
        Ok(new_fills)
    }

    /// Records what a reconcile learned (an order's state and the fill that
    /// explains its new executed volume) without moving the stream cursor.
    pub async fn record_reconciled(&self, ev: &pb::OrderEvent) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let new_fill = record_in(&mut tx, ev).await?;
        tx.commit().await?;
        Ok(new_fill)
    }

    pub async fn cursor(&self) -> Result<Cursor, StoreError> {
        let cursor = sqlx::query_as("SELECT incarnation, last_sequence FROM cursor WHERE id = 1")
            .fetch_optional(&self.pool)
            .await?;
        Ok(cursor.unwrap_or_default())
    }

    /// Moves the cursor (a new gateway incarnation starts again at 0).
    pub async fn set_cursor(
        &self,
        incarnation: &str,
        last_sequence: u64,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        set_cursor_in(&mut tx, incarnation, last_sequence).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn fills(&self) -> Result<Vec<FillRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT fill_id, client_order_id, volume, price, fee, fee_asset, sequence, incarnation \
             FROM fills ORDER BY time_ms, fill_id",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn fill_count(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM fills")
            .fetch_one(&self.pool)
            .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Orders not yet in a final state.
    pub async fn working_orders(&self) -> Result<Vec<OrderRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT client_order_id, owner, symbol, side, order_type, price, volume, volume_executed, \
             average_price, fee, fee_asset, status, venue_order_id, created_at_ms, updated_at_ms \
             FROM orders WHERE status NOT IN ('filled', 'canceled', 'expired', 'rejected', 'lost') \
             ORDER BY created_at_ms, client_order_id",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// One journaled order, if the journal has it.
    pub async fn order(&self, client_order_id: &str) -> Result<Option<OrderRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT client_order_id, owner, symbol, side, order_type, price, volume, volume_executed, \
             average_price, fee, fee_asset, status, venue_order_id, created_at_ms, updated_at_ms \
             FROM orders WHERE client_order_id = $1",
        )
        .bind(client_order_id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Closes a working order as [`LOST`] (the reconcile step's rule for an
    /// order neither the gateway nor the venue knows). A final order is left
    /// as it is. Returns whether the row changed.
    pub async fn mark_lost(&self, client_order_id: &str, now_ms: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE orders SET status = 'lost', updated_at_ms = $2 WHERE client_order_id = $1 \
             AND status NOT IN ('filled', 'canceled', 'expired', 'rejected', 'lost')",
        )
        .bind(client_order_id)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Every order journaled for `owner`, oldest first (startup reconcile).
    pub async fn orders_of(&self, owner: &str) -> Result<Vec<OrderRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT client_order_id, owner, symbol, side, order_type, price, volume, volume_executed, \
             average_price, fee, fee_asset, status, venue_order_id, created_at_ms, updated_at_ms \
             FROM orders WHERE owner = $1 ORDER BY created_at_ms, client_order_id",
        )
        .bind(owner)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Every order journaled, whatever its owner, oldest first (tests'
    /// cross-checks against a venue).
    pub async fn all_orders(&self) -> Result<Vec<OrderRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT client_order_id, owner, symbol, side, order_type, price, volume, volume_executed, \
             average_price, fee, fee_asset, status, venue_order_id, created_at_ms, updated_at_ms \
             FROM orders ORDER BY created_at_ms, client_order_id",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Appends to a strategy's journal (and, in the same transaction, the
    /// herd event the entry stands for, `crate::events::from_journal`).
    pub async fn append_journal(
        &self,
        stream: &str,
        kind: &str,
        payload: &str,
        time_ms: i64,
    ) -> Result<(), StoreError> {
        let event = crate::events::from_journal(&self.events, stream, kind, payload, time_ms);
        let mut tx = self.pool.begin().await?;
        sqlx::query("INSERT INTO journal (stream, kind, payload, time_ms) VALUES ($1, $2, $3, $4)")
            .bind(stream)
            .bind(kind)
            .bind(payload)
            .bind(time_ms)
            .execute(&mut *tx)
            .await?;
        if let Some(e) = &event {
            insert_event(&mut tx, e).await?;
        }
        tx.commit().await?;
        if event.is_some() {
            self.events.wake.notify_one();
        }
        Ok(())
    }

    /// Herd event ids and the publisher's wake-up.
    pub fn event_ids(&self) -> &crate::events::EventIds {
        &self.events
    }

    /// Puts a herd event in the outbox for the gateway.
    pub async fn record_herd_event(
        &self,
        e: &herd_proto::gateway::HerdEvent,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        insert_event(&mut tx, e).await?;
        tx.commit().await?;
        self.events.wake.notify_one();
        Ok(())
    }

    /// The oldest `limit` events of the outbox: (seq, event).
    pub async fn outbox(
        &self,
        limit: u32,
    ) -> Result<Vec<(i64, herd_proto::gateway::HerdEvent)>, StoreError> {
        let rows: Vec<(i64, String)> =
            sqlx::query_as("SELECT seq, body FROM event_outbox ORDER BY seq LIMIT $1")
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
        rows.into_iter()
            .map(|(seq, body)| {
                let bytes = crate::events::unhex(&body).ok_or_else(|| {
                    StoreError::Corrupt(format!("event_outbox row {seq}: body is not hex"))
                })?;
                let e =
                    <herd_proto::gateway::HerdEvent as prost::Message>::decode(bytes.as_slice())
                        .map_err(|x| StoreError::Corrupt(format!("event_outbox row {seq}: {x}")))?;
                Ok((seq, e))
            })
            .collect()
    }

    /// Forgets the outbox up to and including `seq` (the gateway has them).
    pub async fn delete_outbox(&self, seq: i64) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM event_outbox WHERE seq <= $1")
            .bind(seq)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// How many events wait for the gateway.
    pub async fn outbox_len(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM event_outbox")
            .fetch_one(&self.pool)
            .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// A strategy's journal, oldest first: (kind, payload, time_ms).
    pub async fn journal(&self, stream: &str) -> Result<Vec<(String, String, i64)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT kind, payload, time_ms FROM journal WHERE stream = $1 ORDER BY id",
        )
        .bind(stream)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Inserts or replaces a funding position's stored state.
    pub async fn upsert_funding_position(&self, p: &FundingPositionRow) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let before: Option<String> =
            sqlx::query_scalar("SELECT state FROM funding_positions WHERE id = $1")
                .bind(&p.id)
                .fetch_optional(&mut *tx)
                .await?;
        sqlx::query(
            "INSERT INTO funding_positions (id, symbol, state, payload, opened_at_ms, updated_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO UPDATE SET state = excluded.state, \
             payload = excluded.payload, updated_at_ms = excluded.updated_at_ms",
        )
        .bind(&p.id)
        .bind(&p.symbol)
        .bind(&p.state)
        .bind(&p.payload)
        .bind(p.opened_at_ms)
        .bind(p.updated_at_ms)
        .execute(&mut *tx)
        .await?;
        let event = crate::events::funding_position(&self.events, before.as_deref(), p);
        if let Some(e) = &event {
            insert_event(&mut tx, e).await?;
        }
        tx.commit().await?;
        if event.is_some() {
            self.events.wake.notify_one();
        }
        Ok(())
    }

    /// Funding positions, oldest first; `active_only` leaves out closed and
    /// failed ones.
    pub async fn funding_positions(
        &self,
        active_only: bool,
    ) -> Result<Vec<FundingPositionRow>, StoreError> {
        let sql = if active_only {
            "SELECT id, symbol, state, payload, opened_at_ms, updated_at_ms FROM funding_positions \
             WHERE state NOT IN ('closed', 'failed') ORDER BY opened_at_ms, id"
        } else {
            "SELECT id, symbol, state, payload, opened_at_ms, updated_at_ms FROM funding_positions \
             ORDER BY opened_at_ms, id"
        };
        Ok(sqlx::query_as(sql).fetch_all(&self.pool).await?)
    }

    /// Records a leg fill once (a repeated fill id inserts nothing).
    pub async fn insert_funding_fill(&self, f: &FundingFillRow) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO funding_fills (fill_id, position_id, leg, purpose, client_order_id, symbol, side, \
             qty, price, fee, fee_asset, fee_usd, time_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) ON CONFLICT (fill_id) DO NOTHING",
        )
        .bind(&f.fill_id)
        .bind(&f.position_id)
        .bind(&f.leg)
        .bind(&f.purpose)
        .bind(&f.client_order_id)
        .bind(&f.symbol)
        .bind(&f.side)
        .bind(f.qty.to_string())
        .bind(f.price.to_string())
        .bind(f.fee.to_string())
        .bind(&f.fee_asset)
        .bind(f.fee_usd.to_string())
        .bind(f.time_ms)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// A position's leg fills, oldest first.
    pub async fn funding_fills(
        &self,
        position_id: &str,
    ) -> Result<Vec<FundingFillRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT fill_id, position_id, leg, purpose, client_order_id, symbol, side, qty, price, fee, \
             fee_asset, fee_usd, time_ms FROM funding_fills WHERE position_id = $1 ORDER BY time_ms, fill_id",
        )
        .bind(position_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Books a funding payment once; false when its id was booked before.
    /// A new booking is a `funding_settlement` herd event, in the same
    /// transaction.
    pub async fn insert_funding_payment(&self, p: &FundingPaymentRow) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "INSERT INTO funding_payments (payment_id, position_id, symbol, amount, rate, mark, size, source, time_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (payment_id) DO NOTHING",
        )
        .bind(&p.payment_id)
        .bind(&p.position_id)
        .bind(&p.symbol)
        .bind(p.amount.to_string())
        .bind(p.rate.to_string())
        .bind(p.mark.to_string())
        .bind(p.size.to_string())
        .bind(&p.source)
        .bind(p.time_ms)
        .execute(&mut *tx)
        .await?;
        let new = done.rows_affected() > 0;
        let event = new
            .then(|| crate::events::funding_settlement(&self.events, p))
            .flatten();
        if let Some(e) = &event {
            insert_event(&mut tx, e).await?;
        }
        tx.commit().await?;
        if event.is_some() {
            self.events.wake.notify_one();
        }
        Ok(new)
    }

    /// A position's funding payments, oldest first.
    pub async fn funding_payments(
        &self,
        position_id: &str,
    ) -> Result<Vec<FundingPaymentRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT payment_id, position_id, symbol, amount, rate, mark, size, source, time_ms \
             FROM funding_payments WHERE position_id = $1 ORDER BY time_ms, payment_id",
        )
        .bind(position_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Appends a PnL snapshot.
    pub async fn append_funding_pnl(&self, p: &FundingPnlRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO funding_pnl (time_ms, total_funding, total_fees, unrealized, net, open_positions) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(p.time_ms)
        .bind(p.total_funding.to_string())
        .bind(p.total_fees.to_string())
        .bind(p.unrealized.to_string())
        .bind(p.net.to_string())
        .bind(p.open_positions)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// PnL snapshots, oldest first.
    pub async fn funding_pnl_history(&self) -> Result<Vec<FundingPnlRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT time_ms, total_funding, total_fees, unrealized, net, open_positions FROM funding_pnl ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Runs one statement as is (tests and operator tooling).
    pub async fn execute_raw(&self, sql: &str) -> Result<(), StoreError> {
        sqlx::query(sql).execute(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

async fn update_order_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    o: &pb::Order,
    now_ms: i64,
) -> Result<(), StoreError> {
    let side = match pb::Side::try_from(o.side) {
        Ok(pb::Side::Buy) => "buy",
        Ok(pb::Side::Sell) => "sell",
        _ => "unknown",
    };
    let order_type = match pb::OrderType::try_from(o.order_type) {
        Ok(pb::OrderType::Market) => "market",
        _ => "limit",
    };
    // Upsert; a final status is never overwritten by a late, older view.
    sqlx::query(
        "INSERT INTO orders (client_order_id, owner, symbol, side, order_type, price, volume, \
         volume_executed, average_price, fee, fee_asset, status, venue_order_id, created_at_ms, updated_at_ms) \
         VALUES ($1, 'external', $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13) \
         ON CONFLICT (client_order_id) DO UPDATE SET volume_executed = excluded.volume_executed, \
         average_price = excluded.average_price, fee = excluded.fee, fee_asset = excluded.fee_asset, \
         status = excluded.status, venue_order_id = excluded.venue_order_id, updated_at_ms = excluded.updated_at_ms \
         WHERE orders.status NOT IN ('filled', 'canceled', 'expired', 'rejected', 'lost')",
    )
    .bind(&o.client_order_id)
    .bind(&o.symbol)
    .bind(side)
    .bind(order_type)
    .bind(&o.price)
    .bind(&o.volume)
    .bind(&o.volume_executed)
    .bind(&o.average_price)
    .bind(&o.fee)
    .bind(&o.fee_asset)
    .bind(status_name(o.status))
    .bind(&o.venue_order_id)
    .bind(now_ms)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// An event's order state and its fill (if any) in `tx`; true when the
/// fill was not recorded before.
async fn record_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    ev: &pb::OrderEvent,
) -> Result<bool, StoreError> {
    let Some(o) = &ev.order else {
        return Ok(false);
    };
    update_order_in(tx, o, ev.time_ms).await?;
    if ev.fill_volume.is_empty() {
        return Ok(false);
    }
    let fill_id = format!("{}:{}", o.client_order_id, o.volume_executed);
    let done = sqlx::query(
        "INSERT INTO fills (fill_id, client_order_id, volume, price, fee, fee_asset, sequence, incarnation, time_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (fill_id) DO NOTHING",
    )
    .bind(&fill_id)
    .bind(&o.client_order_id)
    .bind(&ev.fill_volume)
    .bind(&ev.fill_price)
    .bind(&ev.fill_fee)
    .bind(&o.fee_asset)
    .bind(i64::try_from(ev.sequence).unwrap_or(i64::MAX))
    .bind(&ev.incarnation)
    .bind(ev.time_ms)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() > 0)
}

async fn set_cursor_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    incarnation: &str,
    last_sequence: u64,
) -> Result<(), StoreError> {
    let seq = i64::try_from(last_sequence).unwrap_or(i64::MAX);
    sqlx::query(
        "INSERT INTO cursor (id, incarnation, last_sequence) VALUES (1, $1, $2) \
         ON CONFLICT (id) DO UPDATE SET incarnation = excluded.incarnation, last_sequence = excluded.last_sequence",
    )
    .bind(incarnation)
    .bind(seq)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::host_port;

    #[test]
    fn host_port_never_shows_credentials() {
        for (url, want) in [
            (
                "postgres://u:secret@db.example:6543/herd",
                "db.example:6543",
            ),
            (
                "postgres://u:secret@db.example/herd?sslmode=require",
                "db.example:5432",
            ),
            ("postgresql://127.0.0.1:5432", "127.0.0.1:5432"),
            ("postgres://[::1]:5433/x", "[::1]:5433"),
            ("postgres:///herd", "localhost:5432"),
        ] {
            assert_eq!(host_port(url), want, "{url}");
        }
    }
}
