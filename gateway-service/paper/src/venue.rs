//! [`PaperVenue`]: the matching core behind the gateway's `Venue` trait, on
//! tokio (behind the default `venue` feature, so the backtester can use the
//! core without an async runtime).

use crate::exchange::{Exchange, PaperConfig};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use herd_venue::{
    AccountMargin, Balance, Candle, Clock, FundingPayment, FundingPaymentQuery, FundingRate,
    Instrument, NewOrder, OrderRef, OrderState, PlaceOutcome, Position, Ticker, Venue, VenueError,
};
use rust_decimal::Decimal;

/// The paper exchange behind the [`Venue`] trait.
#[derive(Debug, Clone)]
pub struct PaperVenue {
    exchange: Arc<Mutex<Exchange>>,
    clock: Arc<dyn Clock>,
    /// Added before every place and cancel (tests: a slow venue). Zero by
    /// default.
    latency: Duration,
    /// With a state file: where accepted places and cancels go before they
    /// are answered.
    durable: Option<Arc<Durable>>,
}

/// The account records of a paper venue with a state file.
#[derive(Debug)]
struct Durable {
    /// `STATE_FILE.account`.
    path: PathBuf,
    /// Places and cancels so far (counted under the exchange lock).
    changes: AtomicU64,
    /// How many of them the record on disk holds; locked while one is
    /// written, so places that arrive meanwhile share the next write.
    written: tokio::sync::Mutex<u64>,
    /// When the snapshot on disk was taken: closes before it need not go
    /// into the account record.
    snapshot_ms: AtomicI64,
}

/// Where the account records of state file `path` go.
fn account_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(".account");
    PathBuf::from(name)
}

/// Writes `bytes` to `path` so that a crash leaves the old or the new
/// content, never a mix: a temp file beside it, fsync, rename, fsync of
/// the directory.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_os_string();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir)?;
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(&dir)?.sync_all()
}

impl PaperVenue {
    pub fn new(cfg: &PaperConfig, clock: Arc<dyn Clock>) -> PaperVenue {
        let exchange = Exchange::new(cfg, clock.now_ms());
        PaperVenue {
            exchange: Arc::new(Mutex::new(exchange)),
            clock,
            latency: Duration::ZERO,
            durable: None,
        }
    }

    /// Makes every place and cancel take `latency` before it reaches the
    /// book (a slow venue, for tests of in-flight calls).
    pub fn with_latency(mut self, latency: Duration) -> PaperVenue {
        self.latency = latency;
        self
    }

    async fn delay(&self) {
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
    }

    /// The exchange saved in `path` if there is one (a paper account that
    /// survives restarts), else a fresh one from `cfg`; with the account
    /// record beside it applied when that is newer. From then on every
    /// accepted place and cancel is written before it is answered.
    pub fn load_or_new(
        cfg: &PaperConfig,
        clock: Arc<dyn Clock>,
        path: &Path,
    ) -> Result<PaperVenue, VenueError> {
        let mut exchange = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice::<Exchange>(&bytes).map_err(|e| {
                VenueError::Other(format!(
                    "paper state {} is not readable: {e}",
                    path.display()
                ))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Exchange::new(cfg, clock.now_ms())
            }
            Err(e) => {
                return Err(VenueError::Other(format!(
                    "cannot read paper state {}: {e}",
                    path.display()
                )));
            }
        };
        let account = account_path(path);
        match std::fs::read(&account) {
            Ok(bytes) => {
                let applied = exchange.restore_account(&bytes).map_err(|e| {
                    VenueError::Other(format!(
                        "paper account record {} is not readable: {e}",
                        account.display()
                    ))
                })?;
                if applied {
                    tracing::info!(file = %account.display(), "paper account restored from the record newer than the snapshot");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(VenueError::Other(format!(
                    "cannot read paper account record {}: {e}",
                    account.display()
                )));
            }
        }
        let snapshot_ms = exchange.snapshot_ms();
        Ok(PaperVenue {
            exchange: Arc::new(Mutex::new(exchange)),
            clock,
            latency: Duration::ZERO,
            durable: Some(Arc::new(Durable {
                path: account,
                changes: AtomicU64::new(0),
                written: tokio::sync::Mutex::new(0),
                snapshot_ms: AtomicI64::new(snapshot_ms),
            })),
        })
    }

    /// Writes the whole exchange to `path` atomically (temp file, fsync,
    /// rename).
    pub fn save(&self, path: &Path) -> Result<(), VenueError> {
        let now = self.clock.now_ms();
        let bytes = self
            .lock()?
            .snapshot_json(now)
            .map_err(|e| VenueError::Other(format!("paper state: {e}")))?;
        write_atomically(path, &bytes).map_err(|e| {
            VenueError::Other(format!("cannot write paper state {}: {e}", path.display()))
        })?;
        if let Some(d) = &self.durable {
            d.snapshot_ms.store(now, Ordering::SeqCst);
        }
        Ok(())
    }

    /// Counts a place or cancel; called with the exchange locked, so the
    /// next record written holds it. Returns its number.
    fn changed(&self) -> u64 {
        self.durable
            .as_ref()
            .map_or(0, |d| d.changes.fetch_add(1, Ordering::SeqCst) + 1)
    }

    /// Returns once change `n` is on disk (at once without a state file).
    /// A failed write is an unknown outcome (UNAVAILABLE): the order is in
    /// the book but may not survive a crash, so the caller looks it up.
    async fn persist(&self, n: u64, what: &str) -> Result<(), VenueError> {
        let Some(d) = &self.durable else {
            return Ok(());
        };
        let mut written = d.written.lock().await;
        if *written >= n {
            return Ok(());
        }
        let unknown = |e: String| {
            VenueError::Unavailable(format!(
                "{what} done but not saved to {}: {e}",
                d.path.display()
            ))
        };
        let (bytes, covers) = {
            let mut ex = self.lock()?;
            let bytes = ex
                .account_json(d.snapshot_ms.load(Ordering::SeqCst))
                .map_err(|e| unknown(e.to_string()))?;
            (bytes, d.changes.load(Ordering::SeqCst))
        };
        let path = d.path.clone();
        tokio::task::spawn_blocking(move || write_atomically(&path, &bytes))
            .await
            .map_err(|e| unknown(e.to_string()))?
            .map_err(|e| unknown(e.to_string()))?;
        *written = covers;
        Ok(())
    }

    fn lock(&self) -> Result<MutexGuard<'_, Exchange>, VenueError> {
        self.exchange
            .lock()
            .map_err(|_| VenueError::Other("paper exchange state is poisoned".into()))
    }

    /// Moves a symbol's market to `price` and fills what that crosses.
    pub fn set_price(&self, symbol: &str, price: Decimal) -> Result<Ticker, VenueError> {
        let now = self.clock.now_ms();
        let mut ex = self.lock()?;
        ex.set_price(symbol, price, now)?;
        ex.ticker(symbol)
    }

    /// Sets a perpetual's current funding rate.
    pub fn set_funding_rate(&self, symbol: &str, rate: Decimal) -> Result<FundingRate, VenueError> {
        self.lock()?.set_funding_rate(symbol, rate)
    }

    /// Settles a perpetual's funding now, outside its schedule.
    pub fn settle_funding_now(&self, symbol: &str) -> Result<Option<FundingPayment>, VenueError> {
        let now = self.clock.now_ms();
        self.lock()?.settle_funding_now(symbol, now)
    }

    /// Settles whatever funding is due by the clock's time.
    pub fn settle_due_funding(&self) -> Result<Vec<FundingPayment>, VenueError> {
        let now = self.clock.now_ms();
        Ok(self.lock()?.settle_funding(now))
    }

    /// One step of every price path.
    pub fn step(&self) -> Result<(), VenueError> {
        let now = self.clock.now_ms();
        self.lock()?.step(now);
        Ok(())
    }

    /// Steps the price paths every `interval` until the task is dropped.
    pub async fn drive(self, interval: Duration) {
        let mut tick = tokio_interval(interval);
        loop {
            tick.tick().await;
            if let Err(e) = self.step() {
                tracing::error!(error = %e, "paper venue step failed");
                return;
            }
        }
    }
}

fn tokio_interval(period: Duration) -> tokio::time::Interval {
    let mut i = tokio::time::interval(period.max(Duration::from_millis(1)));
    i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    i
}

#[async_trait]
impl Venue for PaperVenue {
    fn name(&self) -> &'static str {
        "paper"
    }

    async fn instruments(&self) -> Result<Vec<Instrument>, VenueError> {
        Ok(self.lock()?.instruments())
    }

    async fn ticker(&self, symbol: &str) -> Result<Ticker, VenueError> {
        self.lock()?.ticker(symbol)
    }

    async fn candles(
        &self,
        symbol: &str,
        interval_minutes: u32,
        since_ms: i64,
    ) -> Result<Vec<Candle>, VenueError> {
        self.lock()?.candles(symbol, interval_minutes, since_ms)
    }

    async fn balances(&self) -> Result<Vec<Balance>, VenueError> {
        Ok(self.lock()?.balances())
    }

    async fn place_order(&self, order: &NewOrder) -> Result<PlaceOutcome, VenueError> {
        self.delay().await;
        let now = self.clock.now_ms();
        let (state, change) = {
            let mut ex = self.lock()?;
            let state = ex.place(order, now)?;
            (state, self.changed())
        };
        self.persist(change, &format!("place of {}", order.client_order_id))
            .await?;
        Ok(PlaceOutcome::Accepted(state))
    }

    async fn cancel_order(&self, order: &OrderRef) -> Result<(), VenueError> {
        self.delay().await;
        let now = self.clock.now_ms();
        let change = {
            let mut ex = self.lock()?;
            ex.cancel(order, now)?;
            self.changed()
        };
        self.persist(change, &format!("cancel of {}", order.client_order_id))
            .await
    }

    async fn open_orders(&self) -> Result<Vec<OrderState>, VenueError> {
        Ok(self.lock()?.open_orders())
    }

    async fn query_orders(&self, orders: &[OrderRef]) -> Result<Vec<OrderState>, VenueError> {
        Ok(self.lock()?.query(orders))
    }

    async fn funding_rates(&self, symbols: &[String]) -> Result<Vec<FundingRate>, VenueError> {
        let now = self.clock.now_ms();
        let mut ex = self.lock()?;
        ex.settle_funding(now);
        ex.funding_rates(symbols)
    }

    async fn positions(&self) -> Result<Vec<Position>, VenueError> {
        let now = self.clock.now_ms();
        let mut ex = self.lock()?;
        ex.settle_funding(now);
        Ok(ex.positions())
    }

    async fn account_margin(&self) -> Result<AccountMargin, VenueError> {
        let now = self.clock.now_ms();
        let mut ex = self.lock()?;
        ex.settle_funding(now);
        Ok(ex.account_margin(now))
    }

    async fn funding_payments(
        &self,
        query: &FundingPaymentQuery,
    ) -> Result<Vec<FundingPayment>, VenueError> {
        let now = self.clock.now_ms();
        let mut ex = self.lock()?;
        ex.settle_funding(now);
        Ok(ex.funding_payments(query))
    }
}
