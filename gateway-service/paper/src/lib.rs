//! The paper venue: an exchange simulated in-process, so a whole herd runs
//! with no keys and no network.
//!
//! [`Exchange`] is the matching core (also used by the wire-level simulators
//! in tests/); [`PaperVenue`] wraps it behind the gateway's [`Venue`] trait,
//! and [`PaperVenue::drive`] moves its price path in real time. USDT linear
//! perpetuals ("BTCUSDT-PERP") trade beside their spot pairs, with one-way
//! positions, funding settlements and account margin ([`perp`]).

mod exchange;
mod path;
pub mod perp;

pub use exchange::{Exchange, FeePolicy, PaperConfig, PaperInstrument};
pub use path::{PathConfig, PathRegime, PricePath, SplitMix64};
pub use perp::{FundingPathConfig, PerpConfig};

use std::path::Path;
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
}

impl PaperVenue {
    pub fn new(cfg: &PaperConfig, clock: Arc<dyn Clock>) -> PaperVenue {
        let exchange = Exchange::new(cfg, clock.now_ms());
        PaperVenue {
            exchange: Arc::new(Mutex::new(exchange)),
            clock,
            latency: Duration::ZERO,
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
    /// survives restarts), else a fresh one from `cfg`.
    pub fn load_or_new(
        cfg: &PaperConfig,
        clock: Arc<dyn Clock>,
        path: &Path,
    ) -> Result<PaperVenue, VenueError> {
        let exchange = match std::fs::read(path) {
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
        Ok(PaperVenue {
            exchange: Arc::new(Mutex::new(exchange)),
            clock,
            latency: Duration::ZERO,
        })
    }

    /// Writes the whole exchange to `path` atomically (temp file + rename).
    pub fn save(&self, path: &Path) -> Result<(), VenueError> {
        let bytes = {
            let ex = self.lock()?;
            serde_json::to_vec(&*ex).map_err(|e| VenueError::Other(format!("paper state: {e}")))?
        };
        let tmp = path.with_extension("tmp");
        let io = |e: std::io::Error| {
            VenueError::Other(format!("cannot write paper state {}: {e}", path.display()))
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        std::fs::write(&tmp, bytes).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)?;
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
        self.lock()?.place(order, now).map(PlaceOutcome::Accepted)
    }

    async fn cancel_order(&self, order: &OrderRef) -> Result<(), VenueError> {
        self.delay().await;
        let now = self.clock.now_ms();
        self.lock()?.cancel(order, now).map(|_| ())
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
