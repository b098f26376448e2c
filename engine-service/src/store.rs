//! The engine's store: the journal of orders and fills, the event cursor and
//! the strategies' append-only journal. SQLite (a file under the data dir) by
//! default, Postgres when `DATABASE_URL` says so; the same SQL runs on both.
//!
//! Exactly-once fills: an event is recorded in one transaction that upserts
//! the order, inserts the fill under a key derived from the order and its
//! cumulative executed volume (a replayed event inserts nothing) and moves
//! the cursor. After a crash the engine resumes after the cursor, so an event
//! is either wholly recorded or replayed.

use std::path::Path;
use std::str::FromStr;

use herd_proto::gateway as pb;
use rust_decimal::Decimal;
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Row};

/// A store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("stored value {0:?} is not a decimal")]
    Decimal(String),
    #[error("cannot create data dir {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

/// Schema migrations, in order; each is (version, sqlite, postgres).
const MIGRATIONS: &[(i64, &str, &str)] = &[(
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
        id BIGSERIAL PRIMARY KEY,
        stream TEXT NOT NULL,
        kind TEXT NOT NULL,
        payload TEXT NOT NULL,
        time_ms BIGINT NOT NULL
    );
    "#,
)];

/// An order as the engine journals it.
#[derive(Debug, Clone, PartialEq)]
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
#[derive(Debug, Clone, PartialEq)]
pub struct FillRow {
    pub fill_id: String,
    pub client_order_id: String,
    pub volume: Decimal,
    pub price: Decimal,
    pub fee: Decimal,
    pub fee_asset: String,
    pub sequence: u64,
    pub incarnation: String,
}

/// Where the event stream was left: the gateway incarnation and the last
/// sequence fully recorded.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Cursor {
    pub incarnation: String,
    pub last_sequence: u64,
}

/// The engine's database.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

fn dec(s: &str) -> Result<Decimal, StoreError> {
    if s.is_empty() {
        return Ok(Decimal::ZERO);
    }
    Decimal::from_str(s).map_err(|_| StoreError::Decimal(s.to_string()))
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

/// True for statuses an order never leaves.
pub fn is_final_status(s: &str) -> bool {
    matches!(s, "filled" | "canceled" | "expired" | "rejected")
}

impl Store {
    /// Opens (creating if needed) the database at `url` and migrates it.
    /// `sqlite://path?mode=rwc` or `postgres://...`.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        install_default_drivers();
        let backend = if url.starts_with("postgres") {
            Backend::Postgres
        } else {
            Backend::Sqlite
        };
        let pool = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 1 } else { 5 })
            .connect(url)
            .await?;
        let store = Store { pool, backend };
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
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::DataDir {
            path: data_dir.display().to_string(),
            source,
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
        for (version, sqlite, postgres) in MIGRATIONS {
            let done: Option<i64> =
                sqlx::query("SELECT version FROM schema_migrations WHERE version = $1")
                    .bind(*version)
                    .fetch_optional(&mut *tx)
                    .await?
                    .map(|r| r.try_get(0))
                    .transpose()?;
            if done.is_some() {
                continue;
            }
            let sql = if self.backend == Backend::Sqlite {
                sqlite
            } else {
                postgres
            };
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
        self.record(ev, true).await
    }

    /// Records what a reconcile learned (an order's state and the fill that
    /// explains its new executed volume) without moving the stream cursor.
    pub async fn record_reconciled(&self, ev: &pb::OrderEvent) -> Result<bool, StoreError> {
        self.record(ev, false).await
    }

    async fn record(&self, ev: &pb::OrderEvent, move_cursor: bool) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut new_fill = false;
        if let Some(o) = &ev.order {
            update_order_in(&mut tx, o, ev.time_ms).await?;
            if !ev.fill_volume.is_empty() {
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
                .execute(&mut *tx)
                .await?;
                new_fill = done.rows_affected() > 0;
            }
        }
        if move_cursor {
            set_cursor_in(&mut tx, &ev.incarnation, ev.sequence).await?;
        }
        tx.commit().await?;
        Ok(new_fill)
    }

    pub async fn cursor(&self) -> Result<Cursor, StoreError> {
        let row = sqlx::query("SELECT incarnation, last_sequence FROM cursor WHERE id = 1")
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(r) => Cursor {
                incarnation: r.try_get(0)?,
                last_sequence: u64::try_from(r.try_get::<i64, _>(1)?).unwrap_or(0),
            },
            None => Cursor::default(),
        })
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
        let rows = sqlx::query(
            "SELECT fill_id, client_order_id, volume, price, fee, fee_asset, sequence, incarnation \
             FROM fills ORDER BY time_ms, fill_id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(FillRow {
                    fill_id: r.try_get(0)?,
                    client_order_id: r.try_get(1)?,
                    volume: dec(&r.try_get::<String, _>(2)?)?,
                    price: dec(&r.try_get::<String, _>(3)?)?,
                    fee: dec(&r.try_get::<String, _>(4)?)?,
                    fee_asset: r.try_get(5)?,
                    sequence: u64::try_from(r.try_get::<i64, _>(6)?).unwrap_or(0),
                    incarnation: r.try_get(7)?,
                })
            })
            .collect()
    }

    pub async fn fill_count(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query("SELECT COUNT(*) FROM fills")
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Orders not yet in a final state.
    pub async fn working_orders(&self) -> Result<Vec<OrderRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT client_order_id, owner, symbol, side, order_type, price, volume, volume_executed, \
             average_price, fee, fee_asset, status, venue_order_id, created_at_ms, updated_at_ms \
             FROM orders WHERE status NOT IN ('filled', 'canceled', 'expired', 'rejected') \
             ORDER BY created_at_ms, client_order_id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(OrderRow {
                    client_order_id: r.try_get(0)?,
                    owner: r.try_get(1)?,
                    symbol: r.try_get(2)?,
                    side: r.try_get(3)?,
                    order_type: r.try_get(4)?,
                    price: r.try_get(5)?,
                    volume: r.try_get(6)?,
                    volume_executed: r.try_get(7)?,
                    average_price: r.try_get(8)?,
                    fee: r.try_get(9)?,
                    fee_asset: r.try_get(10)?,
                    status: r.try_get(11)?,
                    venue_order_id: r.try_get(12)?,
                    created_at_ms: r.try_get(13)?,
                    updated_at_ms: r.try_get(14)?,
                })
            })
            .collect()
    }

    /// Every order journaled for `owner`, oldest first (startup reconcile).
    pub async fn orders_of(&self, owner: &str) -> Result<Vec<OrderRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT client_order_id, owner, symbol, side, order_type, price, volume, volume_executed, \
             average_price, fee, fee_asset, status, venue_order_id, created_at_ms, updated_at_ms \
             FROM orders WHERE owner = $1 ORDER BY created_at_ms, client_order_id",
        )
        .bind(owner)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(OrderRow {
                    client_order_id: r.try_get(0)?,
                    owner: r.try_get(1)?,
                    symbol: r.try_get(2)?,
                    side: r.try_get(3)?,
                    order_type: r.try_get(4)?,
                    price: r.try_get(5)?,
                    volume: r.try_get(6)?,
                    volume_executed: r.try_get(7)?,
                    average_price: r.try_get(8)?,
                    fee: r.try_get(9)?,
                    fee_asset: r.try_get(10)?,
                    status: r.try_get(11)?,
                    venue_order_id: r.try_get(12)?,
                    created_at_ms: r.try_get(13)?,
                    updated_at_ms: r.try_get(14)?,
                })
            })
            .collect()
    }

    /// Appends to a strategy's journal.
    pub async fn append_journal(
        &self,
        stream: &str,
        kind: &str,
        payload: &str,
        time_ms: i64,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO journal (stream, kind, payload, time_ms) VALUES ($1, $2, $3, $4)")
            .bind(stream)
            .bind(kind)
            .bind(payload)
            .bind(time_ms)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// A strategy's journal, oldest first: (kind, payload, time_ms).
    pub async fn journal(&self, stream: &str) -> Result<Vec<(String, String, i64)>, StoreError> {
        let rows =
            sqlx::query("SELECT kind, payload, time_ms FROM journal WHERE stream = $1 ORDER BY id")
                .bind(stream)
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .collect()
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
         WHERE orders.status NOT IN ('filled', 'canceled', 'expired', 'rejected')",
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
