//! The simulated venue and clock: the engine's strategies driven over
//! candles on herd-paper's matching core.
//!
//! The call sequence is the live engine's (`herd_engine::execution`):
//! strategies are restored (from an empty journal), then every tick gets a
//! [`MarketView`] and answers actions; a place or cancel the venue refuses
//! goes back to its strategy at once as `PlaceFailed` / `CancelFailed`
//! (and its answer runs in the same loop, at most 200 actions), and what
//! the venue did to accepted orders comes back afterwards as order updates,
//! computed from the order's states as the gateway's registry does
//! (`registry::diff`). Only the clock and the venue are simulated.
//!
//! Each candle is walked as four trades (see [`FillModel`] and
//! docs/backtest.md): open, the extreme nearer the open, the other extreme,
//! close, at the candle's open time plus 0, 1/4, 2/4 and 3/4 of its
//! interval. After each trade the resting orders it crossed fill, their
//! updates are delivered, and every strategy ticks.

use std::collections::{BTreeMap, VecDeque};

use rustc_hash::FxHashMap;

use herd_paper::{
    Exchange, FeePolicy, FundingPathConfig, PaperConfig, PaperInstrument, PerpConfig,
};
use herd_regime::stream::StreamingInference;
use herd_regime::{Candle, TimeframeConfig, TimeframeDetector, TimeframeReading, consensus};
use herd_strategies::strategy::{
    Action, Instrument, MarketView, OrderUpdate, RegimeView, Side, Strategy, UpdateKind, Wake,
};
use herd_venue::{
    FundingPayment, InstrumentKind, NewOrder, OrderRef, OrderState, OrderStatus, OrderType,
};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde::{Deserialize, Serialize};

use crate::csv::{Bar, FundingRow};
use crate::tally::{EquityCurve, JournalTally};
use crate::timing::{self, Part};

/// The start of the userref range the simulated gateway gives the engine.
pub const USERREF_MIN: i32 = 1000;
/// Actions one strategy answer may chain, as in the live execution layer.
const ACTION_BUDGET: usize = 200;
/// Order updates delivered in one round before the driver stops chaining
/// (a strategy that answers every update with a crossing order).
const UPDATE_BUDGET: usize = 10_000;

/// How orders fill against candles; documented in docs/backtest.md.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FillModel {
    /// A resting limit order fills (at its limit price) only when a trade
    /// of the intra-candle path is at least this many ticks beyond it.
    /// 0 fills on touch.
    pub through_ticks: u32,
    /// Market orders fill this fraction beyond the touch (0.0005 = 5 bp),
    /// rounded to the tick against the taker.
    pub market_slippage: Decimal,
    /// Partial liquidity: at most this much base volume of one resting
    /// order fills per trade of the intra-candle path (four trades a
    /// candle), the rest stays open for the next trades. `None` (the
    /// default): a traded-through order fills completely.
    pub liquidity_per_trade: Option<Decimal>,
}

impl Default for FillModel {
    fn default() -> FillModel {
        FillModel {
            through_ticks: 1,
            market_slippage: Decimal::new(5, 4),
            liquidity_per_trade: None,
        }
    }
}

/// The four trades a candle is walked as: open, the extreme nearer the
/// open (the low on a tie), the other extreme, close.
pub fn intra_candle_path(bar: &Bar) -> [Decimal; 4] {
    let up = bar.high - bar.open;
    let down = bar.open - bar.low;
    if up < down {
        [bar.open, bar.high, bar.low, bar.close]
    } else {
        [bar.open, bar.low, bar.high, bar.close]
    }
}

/// Where the regime the strategies' gates read comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum RegimeSetup {
    /// A fixed reading (the engine's `regime_source = "fixed"`).
    Fixed(RegimeView),
    /// The HMM detector with the live engine's consensus of two timeframes:
    /// the input candles (trained with the 1 m preset) and 15 of them
    /// merged (the 15 m preset), refreshed every `refresh_ms` of simulated
    /// time and retrained on the live schedule (daily). Inference is
    /// incremental (`herd_regime::stream`), equal to the live batch
    /// reading within 1e-9.
    ///
    /// The readings are a function of the candles alone, so they are computed
    /// on a worker thread running ahead of the driver (trainings included),
    /// and handed over at the candle where the driver asks: the same readings,
    /// at the same candles, as [`RegimeSetup::HmmInline`].
    Hmm { refresh_ms: i64 },
    /// [`RegimeSetup::Hmm`] computed on the driver's own thread, in turn
    /// with the strategies (no worker thread): the same outcome, slower.
    HmmInline { refresh_ms: i64 },
    /// Readings in force from given times (in time order; not ready before
    /// the first): regime changes without the detector, for tests.
    Schedule(Vec<(i64, RegimeView)>),
}

/// Everything a run needs besides the strategies and the candles.
#[derive(Debug, Clone, PartialEq)]
pub struct Setup {
    /// The instrument traded: its symbol, filters, fees.
    pub instrument: Instrument,
    /// Starting balances per asset.
    pub balances: BTreeMap<String, Decimal>,
    pub fee_policy: FeePolicy,
    pub fill: FillModel,
    pub regime: RegimeSetup,
    /// Funding settlements (perpetual instruments only).
    pub funding: FundingSetup,
}

/// Funding of a perpetual: the venue's schedule and the rates to settle at.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FundingSetup {
    /// Hours between settlements, aligned on the Unix epoch as the paper
    /// venue does (8: 00:00, 08:00, 16:00 UTC); 0 counts as 8.
    pub interval_hours: u32,
    /// Rates in time order per symbol: a perpetual's settlement at `T` uses
    /// the last row at or before `T` naming the perp (`BTCUSDT-PERP`) or its
    /// pair (`BTCUSDT`); 0 before the first row. Between settlements the
    /// venue shows the last row at or before the time (no look-ahead).
    pub rates: Vec<FundingRow>,
    /// More instruments on the venue, all trading at the candles' prices
    /// (the funding orchestrator's spot pair and perpetual of the same
    /// base). Perpetuals among them settle funding as the main one does.
    /// Their price path, perp settings and history are replaced (they
    /// follow the candles; funding as above); instrument and fee policy stay.
    pub followers: Vec<PaperInstrument>,
}

/// One fill as the report lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fill {
    pub time_ms: i64,
    pub strategy: String,
    pub client_order_id: String,
    pub side: Side,
    pub price: Decimal,
    pub volume: Decimal,
    pub fee: Decimal,
    pub fee_asset: String,
    /// The fee valued in the quote coin at the fill's price.
    pub fee_quote: Decimal,
    /// True when the order was a taker (market or crossing) fill.
    pub taker: bool,
}

/// An order the venue accepted, as placed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlacedOrder {
    pub time_ms: i64,
    pub strategy: String,
    pub client_order_id: String,
    pub side: Side,
    /// `None`: a market order.
    pub price: Option<Decimal>,
    pub volume: Decimal,
    pub post_only: bool,
}

/// The journal kinds a run keeps (what the report reads: cycles and
/// orphans). A year of the grid writes millions of other rows, which held
/// most of a long run's memory.
pub const JOURNAL_KINDS_KEPT: &[&str] = &["cycle", "orphan", "position_orphaned"];

/// Whether the run keeps journal rows of `kind` ([`JOURNAL_KINDS_KEPT`]):
/// the strategies are told, and build no others.
fn journal_kept(kind: &str) -> bool {
    JOURNAL_KINDS_KEPT.contains(&kind)
}

/// The account at a candle's close.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EquityPoint {
    pub time_ms: i64,
    pub close: Decimal,
    pub base: Decimal,
    pub quote: Decimal,
    /// quote + base x close.
    pub equity: Decimal,
}

/// What a run produced; [`crate::report`] turns it into the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    pub symbol: String,
    pub base: String,
    pub quote: String,
    pub interval_ms: i64,
    pub candles: usize,
    pub start_ms: i64,
    pub end_ms: i64,
    pub initial_equity: Decimal,
    /// The first candle's open.
    pub first_open: Decimal,
    pub fills: Vec<Fill>,
    /// Every order the venue accepted, in placement order.
    pub orders: Vec<PlacedOrder>,
    /// The account at every candle's close (compact, with the report's
    /// drawdown and daily statistics kept as it grows).
    pub equity: EquityCurve,
    /// The journal rows of the kinds in [`JOURNAL_KINDS_KEPT`], tallied in
    /// order (cycles, orphans, per strategy and slot) instead of kept.
    pub journal: JournalTally,
    /// Simulated time spent in each regime reading (ms).
    pub regime_ms: BTreeMap<String, i64>,
    pub orders_placed: u64,
    pub place_failures: u64,
    pub cancel_failures: u64,
    /// Strategy ticks run: rounds in which every strategy ticked or was
    /// skipped because its [`Wake`] promised the tick would do nothing.
    pub ticks: u64,
    /// Strategy ticks skipped that way (one per strategy and round; not in
    /// the report, which stays the same with skipping on or off).
    #[serde(skip)]
    pub ticks_skipped: u64,
    /// Every strategy's status block at the end, as JSON.
    pub final_status: BTreeMap<String, serde_json::Value>,
    /// Funding settlements the venue booked (perpetuals), in time order.
    pub funding: Vec<FundingPayment>,
    /// Each strategy's share of the funding: its own signed position at
    /// each settlement times mark times rate (long pays a positive rate).
    pub funding_by_strategy: BTreeMap<String, Decimal>,
}

/// An order the simulated gateway follows for the engine.
#[derive(Debug)]
struct Tracked {
    owner: usize,
    last: OrderState,
}

/// The simulated engine + gateway + venue.
pub struct Sim {
    ex: Exchange,
    inst: Instrument,
    strategies: Vec<Box<dyn Strategy>>,
    through: Decimal,
    /// The open orders, by placement sequence (deterministic delivery
    /// order): an order leaves when the poll reads it closed (one the venue
    /// accepted already closed, a filled market order, never enters).
    tracked: BTreeMap<u64, Tracked>,
    /// The placement sequence of each tracked order, by venue id (the
    /// venue's change log names orders by venue id).
    seq_of: FxHashMap<String, u64>,
    /// Buffers of the poll, kept between polls: the venue ids the venue
    /// logged as changed, and their sequences.
    changed_ids: Vec<String>,
    changed_seqs: Vec<u64>,
    seq: u64,
    /// Updates the "stream" has yet to deliver, in order.
    stream: VecDeque<OrderUpdate>,
    regime: RegimeView,
    last_partial_cancel_ms: Option<i64>,
    out: Outcome,
    /// The venue's revision at the last poll: no order changed since
    /// while it stays the same, so polling can be skipped.
    polled_at: Option<u64>,
    /// (revision, total base, total quote, free base, free quote): the
    /// balances read at that revision of the venue.
    funds: Option<(u64, [Decimal; 4])>,
    /// Present with perpetuals: funding to settle and positions per strategy.
    funding: Option<FundingState>,
    /// Symbols besides the main one that trade at the candles' prices.
    followers: Vec<String>,
    /// Whether ticks a strategy's wake covers are skipped.
    skip: bool,
    /// Each strategy's wake: `None` until read, which happens at the first
    /// quiet round after its last tick (a round that ends with something
    /// changed never needs it; the strategy's state is the same until then).
    wakes: Vec<Option<Wake>>,
    /// Each strategy's last skipped tick (bid, ask, last, time), replayed
    /// before its next call of any kind.
    skipped: Vec<Option<(Decimal, Decimal, Decimal, i64)>>,
    /// The market view of the round the wakes were read at (skipped ticks
    /// see it with their own prices and time).
    base_view: Option<MarketView>,
    /// A view no longer needed, whose strings the next round's view reuses.
    spare_view: Option<MarketView>,
    /// What the wakes assume unchanged, as of the end of the last round in
    /// which nothing else happened; `None`: the next round ticks everyone.
    quiet_key: Option<QuietKey>,
    /// Order updates handed to strategies so far.
    delivered: u64,
    /// Counts changes of the regime view.
    regime_version: u64,
}

/// What a strategy's wake assumes unchanged besides prices and time: the
/// venue's orders and balances (its revision), no order update delivered,
/// the regime view, the last partial cancel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct QuietKey {
    revision: u64,
    delivered: u64,
    regime_version: u64,
    last_partial_cancel_ms: Option<i64>,
}

/// The funding side of a run with perpetuals.
#[derive(Debug)]
struct FundingState {
    perps: Vec<PerpFunding>,
    /// Signed position of each strategy (by index) on the main instrument,
    /// from its fills.
    held: Vec<Decimal>,
}

/// One perpetual's rates.
#[derive(Debug)]
struct PerpFunding {
    symbol: String,
    rates: Vec<FundingRow>,
    /// The next row of `rates` not yet in force.
    next_row: usize,
    rate: Decimal,
}

/// Another trader on the simulated venue besides the strategies (the
/// funding orchestrator, which herdctl drives with its async runtime): it
/// is called after every trade of the path, once the strategies ticked,
/// and may trade on the exchange. Fills of its own it reports itself.
pub trait Companion {
    fn at(&mut self, ex: &mut Exchange, now_ms: i64);
}

impl Companion for () {
    fn at(&mut self, _ex: &mut Exchange, _now_ms: i64) {}
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim")
            .field("symbol", &self.inst.symbol)
            .field("tracked", &self.tracked.len())
            .finish_non_exhaustive()
    }
}

/// Why a run could not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunError {
    #[error("no candles to run over")]
    NoCandles,
    #[error("{0}")]
    Setup(String),
}

fn decimal_f64(d: Decimal) -> f64 {
    d.to_f64().unwrap_or(0.0)
}

fn regime_candle(b: &Bar) -> Candle {
    Candle {
        open_time_ms: b.open_time_ms,
        open: decimal_f64(b.open),
        high: decimal_f64(b.high),
        low: decimal_f64(b.low),
        close: decimal_f64(b.close),
        volume: decimal_f64(b.volume),
    }
}

/// One timeframe of the HMM: its detector, the candles it would train on
/// (the last `train_candles`), and incremental inference.
struct Timeframe {
    detector: TimeframeDetector,
    recent: VecDeque<Candle>,
    stream: StreamingInference,
}

impl Timeframe {
    fn new(config: TimeframeConfig) -> Result<Timeframe, RunError> {
        let detector = TimeframeDetector::new(config)
            .map_err(|e| RunError::Setup(format!("regime detector: {e}")))?;
        let stream = StreamingInference::new(&detector);
        Ok(Timeframe {
            detector,
            recent: VecDeque::new(),
            stream,
        })
    }

    fn push(&mut self, c: Candle) {
        // A candle the detector cannot use (non-finite) leaves the stream
        // where it was; the CSV loader refuses such rows anyway.
        if self.stream.push(&c).is_ok() {
            self.recent.push_back(c);
            while self.recent.len() > self.detector.config().train_candles {
                self.recent.pop_front();
            }
        }
    }

    /// The live `TimeframeDetector::update`: retrain when due and enough
    /// candles are there, then read (incrementally); errors read as not ready.
    fn reading(&mut self, now_ms: i64) -> TimeframeReading {
        if self.detector.needs_retrain(now_ms)
            && self.recent.len() >= self.detector.config().min_train_candles
        {
            let candles = self.recent.make_contiguous();
            if self.detector.train(candles, now_ms).is_err() {
                return TimeframeReading::not_ready(&self.detector.config().name);
            }
        }
        self.stream
            .reading(&self.detector)
            .unwrap_or_else(|_| TimeframeReading::not_ready(&self.detector.config().name))
    }
}

/// The HMM consensus over the candles closed so far.
struct Consensus {
    refresh_ms: i64,
    last_refresh_ms: Option<i64>,
    primary: Timeframe,
    secondary: Timeframe,
    forming: Option<Candle>,
    merged_width_ms: i64,
}

impl Consensus {
    fn new(refresh_ms: i64, interval_ms: i64) -> Result<Consensus, RunError> {
        let mut p = TimeframeConfig::one_minute();
        let mut s = TimeframeConfig::fifteen_minutes();
        p.name = format!("{}m", interval_ms / 60_000);
        s.name = format!("{}m", interval_ms * 15 / 60_000);
        Ok(Consensus {
            refresh_ms: refresh_ms.max(1),
            last_refresh_ms: None,
            primary: Timeframe::new(p)?,
            secondary: Timeframe::new(s)?,
            forming: None,
            merged_width_ms: interval_ms * 15,
        })
    }

    /// A candle closed.
    fn push(&mut self, bar: &Bar) {
        let c = regime_candle(bar);
        let bucket = c.open_time_ms - c.open_time_ms.rem_euclid(self.merged_width_ms);
        match self.forming.as_mut() {
            Some(f) if f.open_time_ms == bucket => {
                f.high = f.high.max(c.high);
                f.low = f.low.min(c.low);
                f.close = c.close;
                f.volume += c.volume;
            }
            _ => {
                if let Some(done) = self.forming.take() {
                    self.secondary.push(done);
                }
                self.forming = Some(Candle {
                    open_time_ms: bucket,
                    ..c
                });
            }
        }
        self.primary.push(c);
    }

    fn reading(&mut self, now_ms: i64) -> Option<RegimeView> {
        if self
            .last_refresh_ms
            .is_some_and(|t| now_ms - t < self.refresh_ms)
        {
            return None;
        }
        self.last_refresh_ms = Some(now_ms);
        let r1 = self.primary.reading(now_ms);
        let r2 = self.secondary.reading(now_ms);
        let r = consensus(&r1, &r2);
        Some(RegimeView {
            regime: r.regime.as_str().to_string(),
            ready: r.ready,
            confidence: r.confidence,
            bias: r.bias,
        })
    }
}

#[cfg(test)]
#[path = "sim_feed_tests.rs"]
mod feed_tests;

/// Bars the driver hands the worker at a time.
const AHEAD_CHUNK: usize = 256;
/// How far the worker may run ahead of the driver, in bars: two days and
/// more of 1-minute candles, so the next daily retrain is computed while the
/// driver simulates the current day.
const AHEAD_BARS: usize = 16 * AHEAD_CHUNK;

/// The regime readings the driver asks for, one call of `reading(open
/// time)` and then `push(bar)` per bar, in order. Computed inline, or on a
/// worker thread that runs [`Consensus`] over the same bars in the same call
/// order ahead of the driver ([`RegimeSetup::Hmm`]): the readings depend on
/// the candles only, so they are identical. Should the driver ever call out
/// of that order, the feed replays the calls so far on its own thread and
/// continues inline: the answers stay those of the inline feed.
struct RegimeFeed<'a> {
    bars: &'a [Bar],
    refresh_ms: i64,
    interval_ms: i64,
    /// Bars pushed so far (the canonical order held for all of them).
    pushed: usize,
    /// Whether the reading of bar `pushed` was taken.
    read: bool,
    mode: FeedMode,
}

enum FeedMode {
    Inline(Box<Consensus>),
    Ahead(Ahead),
    /// Unreachable in practice (the configuration was valid a moment
    /// before): no readings, the regime stays not ready.
    Failed,
}

/// The driver's end of the worker.
struct Ahead {
    /// Bars sent to the worker so far.
    sent: usize,
    to_worker: Option<std::sync::mpsc::Sender<Vec<Bar>>>,
    from_worker: Option<std::sync::mpsc::Receiver<Vec<Option<RegimeView>>>>,
    /// Readings received and not yet asked for, from bar `pushed` on.
    pending: VecDeque<Option<RegimeView>>,
    worker: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Ahead {
    fn drop(&mut self) {
        // Closing both channels ends the worker at its next chunk.
        self.to_worker = None;
        self.from_worker = None;
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

impl<'a> RegimeFeed<'a> {
    fn new(
        refresh_ms: i64,
        interval_ms: i64,
        bars: &'a [Bar],
        ahead: bool,
    ) -> Result<RegimeFeed<'a>, RunError> {
        let consensus = Consensus::new(refresh_ms, interval_ms)?;
        let mode = if ahead {
            Self::spawn(consensus).unwrap_or_else(|()| {
                // No thread to be had: the same readings, inline (nothing
                // was computed yet).
                Consensus::new(refresh_ms, interval_ms)
                    .map_or(FeedMode::Failed, |c| FeedMode::Inline(Box::new(c)))
            })
        } else {
            FeedMode::Inline(Box::new(consensus))
        };
        Ok(RegimeFeed {
            bars,
            refresh_ms,
            interval_ms,
            pushed: 0,
            read: false,
            mode,
        })
    }

    /// The worker: for each bar it receives, the reading at its open time,
    /// then the bar pushed; the readings go back per chunk.
    fn spawn(mut consensus: Consensus) -> Result<FeedMode, ()> {
        let (to_worker, bars_rx) = std::sync::mpsc::channel::<Vec<Bar>>();
        let (views_tx, from_worker) = std::sync::mpsc::channel();
        let worker = std::thread::Builder::new()
            .name("regime-feed".into())
            .spawn(move || {
                while let Ok(chunk) = bars_rx.recv() {
                    let views: Vec<Option<RegimeView>> = chunk
                        .iter()
                        .map(|bar| {
                            let view = consensus.reading(bar.open_time_ms);
                            consensus.push(bar);
                            view
                        })
                        .collect();
                    if views_tx.send(views).is_err() {
                        break;
                    }
                }
            })
            .map_err(|_| ())?;
        Ok(FeedMode::Ahead(Ahead {
            sent: 0,
            to_worker: Some(to_worker),
            from_worker: Some(from_worker),
            pending: VecDeque::new(),
            worker: Some(worker),
        }))
    }

    /// The reading due at `now_ms` (the open time of the next bar), if a
    /// refresh is due.
    fn reading(&mut self, now_ms: i64) -> Option<RegimeView> {
        let canonical =
            !self.read && self.bars.get(self.pushed).map(|b| b.open_time_ms) == Some(now_ms);
        if let FeedMode::Ahead(a) = &mut self.mode
            && canonical
            && let Some(view) = a.next_view(self.bars, self.pushed)
        {
            self.read = true;
            return view;
        }
        self.go_inline();
        self.read = canonical;
        match &mut self.mode {
            FeedMode::Inline(c) => c.reading(now_ms),
            _ => None,
        }
    }

    /// A bar closed.
    fn push(&mut self, bar: &Bar) {
        let canonical = self.read
            && self
                .bars
                .get(self.pushed)
                .is_some_and(|b| std::ptr::eq(b, bar));
        if !canonical {
            self.go_inline();
        }
        if let FeedMode::Inline(c) = &mut self.mode {
            c.push(bar);
        }
        self.pushed += 1;
        self.read = false;
    }

    /// Leaves the worker: replays the calls so far (all in the canonical
    /// order) on this thread, and continues inline.
    fn go_inline(&mut self) {
        if !matches!(self.mode, FeedMode::Ahead(_)) {
            return;
        }
        self.mode = match Consensus::new(self.refresh_ms, self.interval_ms) {
            Ok(mut c) => {
                // While on the worker every push was canonical: `pushed`
                // never passes the bars.
                for bar in self.bars.get(..self.pushed).unwrap_or(self.bars) {
                    c.reading(bar.open_time_ms);
                    c.push(bar);
                }
                if self.read
                    && let Some(bar) = self.bars.get(self.pushed)
                {
                    c.reading(bar.open_time_ms);
                }
                FeedMode::Inline(Box::new(c))
            }
            Err(_) => FeedMode::Failed,
        };
    }
}

impl Ahead {
    /// The worker's reading for bar `index`, topping up the bars it has;
    /// `None` when the worker is gone.
    fn next_view(&mut self, bars: &[Bar], index: usize) -> Option<Option<RegimeView>> {
        let want = (index + AHEAD_BARS).min(bars.len());
        while self.sent < want {
            let end = (self.sent + AHEAD_CHUNK).min(bars.len());
            let chunk = bars.get(self.sent..end)?.to_vec();
            self.to_worker.as_ref()?.send(chunk).ok()?;
            self.sent = end;
        }
        if self.pending.is_empty() {
            let views = self.from_worker.as_ref()?.recv().ok()?;
            self.pending.extend(views);
        }
        self.pending.pop_front()
    }
}

/// Builds the strategies the engine builds (`herd_engine::strategies_from_config`):
/// rangers and the grid (with its churners), validated, their client ids
/// starting from the run's first candle so reruns are identical.
pub fn engine_strategies(
    rangers: herd_strategies::rangers::RangerConfig,
    grid: herd_strategies::grid::GridConfig,
    symbol: &str,
    start_ms: i64,
) -> Result<Vec<Box<dyn Strategy>>, RunError> {
    rangers
        .validate()
        .map_err(|e| RunError::Setup(format!("config: {e}")))?;
    grid.validate()
        .map_err(|e| RunError::Setup(format!("config: {e}")))?;
    Ok(vec![
        Box::new(herd_strategies::rangers::Rangers::new(
            rangers, symbol, start_ms,
        )),
        Box::new(herd_strategies::grid::Grid::new(grid, symbol, start_ms)),
    ])
}

/// The paper venue's perpetual for a run: no basis to a spot pair (the
/// candles are the perp's own trades) and a funding rate that stays where
/// the driver sets it before each settlement.
fn perp_config(inst: &Instrument, funding: &FundingSetup) -> Option<PerpConfig> {
    (inst.kind == InstrumentKind::Perpetual).then(|| PerpConfig {
        underlying: None,
        basis_volatility: 0.0,
        basis_reversion: 0.0,
        funding_interval_hours: if funding.interval_hours == 0 {
            8
        } else {
            funding.interval_hours
        },
        funding: FundingPathConfig {
            seed: 1,
            start_rate: Decimal::ZERO,
            mean_rate: Decimal::ZERO,
            persistence: 1.0,
            volatility: 0.0,
            cap: Decimal::ONE,
        },
        // The candles carry no perp turnover: large enough for any filter.
        turnover_24h_usd: Some(Decimal::from(1_000_000_000_000_i64)),
        ..PerpConfig::default()
    })
}

/// Progress of a run, for a progress line.
pub trait Progress {
    /// `done` of `total` candles so far.
    fn candles(&mut self, done: usize, total: usize);
}

impl Progress for () {
    fn candles(&mut self, _done: usize, _total: usize) {}
}

/// Runs `strategies` over `bars` (in time order, all of one interval).
pub fn run(
    setup: &Setup,
    strategies: Vec<Box<dyn Strategy>>,
    bars: &[Bar],
    interval_ms: i64,
    progress: &mut dyn Progress,
) -> Result<Outcome, RunError> {
    run_with(setup, strategies, bars, interval_ms, progress, &mut ())
}

/// [`run`] with a [`Companion`] trading on the same venue.
pub fn run_with(
    setup: &Setup,
    strategies: Vec<Box<dyn Strategy>>,
    bars: &[Bar],
    interval_ms: i64,
    progress: &mut dyn Progress,
    companion: &mut dyn Companion,
) -> Result<Outcome, RunError> {
    run_with_skipping(
        setup,
        strategies,
        bars,
        interval_ms,
        progress,
        companion,
        true,
    )
}

/// [`run_with`], with skipping of the ticks the strategies' wakes cover
/// switched on or off (`skip`). The outcome is the same either way (the
/// tests prove it on several scenarios) except [`Outcome::ticks_skipped`].
pub fn run_with_skipping(
    setup: &Setup,
    strategies: Vec<Box<dyn Strategy>>,
    bars: &[Bar],
    interval_ms: i64,
    progress: &mut dyn Progress,
    companion: &mut dyn Companion,
    skip: bool,
) -> Result<Outcome, RunError> {
    let first = bars.first().ok_or(RunError::NoCandles)?;
    let start_ms = first.open_time_ms;
    let inst = setup.instrument.clone();
    let cfg = PaperConfig {
        instruments: vec![PaperInstrument {
            instrument: inst.clone(),
            start_price: first.open,
            path: herd_paper::PathConfig::default(),
            liquidity_per_step: setup.fill.liquidity_per_trade,
            typical_step_volume: 0.0,
            fee_policy: Some(setup.fee_policy),
            perp: perp_config(&inst, &setup.funding),
        }]
        .into_iter()
        .chain(
            setup
                .funding
                .followers
                .iter()
                .filter(|f| f.instrument.symbol != inst.symbol)
                .map(|f| PaperInstrument {
                    instrument: f.instrument.clone(),
                    start_price: first.open,
                    path: herd_paper::PathConfig::default(),
                    liquidity_per_step: setup.fill.liquidity_per_trade,
                    typical_step_volume: 0.0,
                    fee_policy: f.fee_policy,
                    perp: perp_config(&f.instrument, &setup.funding),
                }),
        )
        .collect(),
        balances: setup.balances.clone(),
        fee_policy: setup.fee_policy,
        history_minutes: 0,
        history_steps_per_minute: 1,
        seed: 42,
        margin_asset: inst.quote.clone(),
    };
    let mut ex = Exchange::new(&cfg, start_ms);
    // The poll reads only the orders the venue changed.
    ex.keep_change_log();
    ex.set_market_slippage(setup.fill.market_slippage);
    let through = inst.tick_size * Decimal::from(setup.fill.through_ticks);
    let mut regime_feed = match &setup.regime {
        RegimeSetup::Fixed(_) | RegimeSetup::Schedule(_) => None,
        RegimeSetup::Hmm { refresh_ms } => {
            Some(RegimeFeed::new(*refresh_ms, interval_ms, bars, true)?)
        }
        RegimeSetup::HmmInline { refresh_ms } => {
            Some(RegimeFeed::new(*refresh_ms, interval_ms, bars, false)?)
        }
    };
    let regime = match &setup.regime {
        RegimeSetup::Fixed(v) => v.clone(),
        RegimeSetup::Hmm { .. } | RegimeSetup::HmmInline { .. } | RegimeSetup::Schedule(_) => {
            RegimeView::not_ready()
        }
    };
    let schedule: &[(i64, RegimeView)] = match &setup.regime {
        RegimeSetup::Schedule(s) => s,
        _ => &[],
    };
    let mut next_reading = 0;
    let count = strategies.len();
    let mut strategies = strategies;
    for s in &mut strategies {
        s.set_journal_filter(journal_kept);
    }
    let mut sim = Sim {
        skip,
        wakes: vec![Some(Wake::EveryTick); count],
        skipped: vec![None; count],
        base_view: None,
        spare_view: None,
        quiet_key: None,
        delivered: 0,
        regime_version: 0,
        ex,
        inst: inst.clone(),
        strategies,
        through,
        tracked: BTreeMap::new(),
        seq_of: FxHashMap::default(),
        changed_ids: Vec::new(),
        changed_seqs: Vec::new(),
        seq: 0,
        stream: VecDeque::new(),
        regime,
        last_partial_cancel_ms: None,
        polled_at: None,
        funds: None,
        out: Outcome {
            symbol: inst.symbol.clone(),
            base: inst.base.clone(),
            quote: inst.quote.clone(),
            interval_ms,
            candles: bars.len(),
            start_ms,
            end_ms: bars
                .last()
                .map_or(start_ms, |b| b.open_time_ms + interval_ms),
            initial_equity: Decimal::ZERO,
            first_open: first.open,
            fills: Vec::new(),
            orders: Vec::new(),
            equity: EquityCurve::default(),
            journal: JournalTally::default(),
            regime_ms: BTreeMap::new(),
            orders_placed: 0,
            place_failures: 0,
            cancel_failures: 0,
            ticks: 0,
            ticks_skipped: 0,
            final_status: BTreeMap::new(),
            funding: Vec::new(),
            funding_by_strategy: BTreeMap::new(),
        },
        funding: None,
        followers: setup
            .funding
            .followers
            .iter()
            .filter(|f| f.instrument.symbol != inst.symbol)
            .map(|f| f.instrument.symbol.clone())
            .collect(),
    };
    let perps: Vec<PerpFunding> = std::iter::once(&inst)
        .chain(setup.funding.followers.iter().map(|f| &f.instrument))
        .filter(|i| i.kind == InstrumentKind::Perpetual)
        .map(|i| {
            let pair = i.symbol.strip_suffix("-PERP").unwrap_or(&i.symbol);
            PerpFunding {
                symbol: i.symbol.clone(),
                rates: setup
                    .funding
                    .rates
                    .iter()
                    .filter(|r| r.symbol == i.symbol || r.symbol == pair)
                    .cloned()
                    .collect(),
                next_row: 0,
                rate: Decimal::ZERO,
            }
        })
        .collect();
    if !perps.is_empty() {
        sim.funding = Some(FundingState {
            perps,
            held: vec![Decimal::ZERO; sim.strategies.len()],
        });
    }
    sim.out.initial_equity = sim.equity_at(first.open, start_ms).equity;
    sim.out.equity = EquityCurve::new(sim.out.initial_equity, start_ms, bars.len());
    sim.restore(start_ms);
    let quarter = interval_ms / 4;
    for (i, bar) in bars.iter().enumerate() {
        if let Some(feed) = regime_feed.as_mut()
            && let Some(view) = feed.reading(bar.open_time_ms)
            && view != sim.regime
        {
            sim.regime = view;
            sim.regime_version += 1;
        }
        while let Some((at, view)) = schedule.get(next_reading)
            && *at <= bar.open_time_ms
        {
            next_reading += 1;
            if *view != sim.regime {
                sim.regime = view.clone();
                sim.regime_version += 1;
            }
        }
        match sim.out.regime_ms.get_mut(&sim.regime.regime) {
            Some(ms) => *ms += interval_ms,
            None => {
                sim.out
                    .regime_ms
                    .insert(sim.regime.regime.clone(), interval_ms);
            }
        }
        for (k, price) in intra_candle_path(bar).into_iter().enumerate() {
            let now = bar.open_time_ms + quarter * i64::try_from(k).unwrap_or(0);
            sim.step(price, now);
            companion.at(&mut sim.ex, now);
        }
        let close_ms = bar.open_time_ms + interval_ms;
        let point = sim.equity_at(bar.close, close_ms);
        sim.out.equity.push(point);
        if let Some(feed) = regime_feed.as_mut() {
            feed.push(bar);
        }
        {
            let _t = timing::enter(Part::PaperCore);
            sim.ex.forget_closed();
        }
        if i % 4096 == 0 {
            progress.candles(i, bars.len());
        }
    }
    progress.candles(bars.len(), bars.len());
    let end = sim.out.end_ms;
    for i in 0..sim.strategies.len() {
        sim.replay(i);
    }
    for s in &sim.strategies {
        let status = {
            let _t = timing::enter(Part::Strategies);
            s.status(end)
        };
        let status = serde_json::to_value(status).unwrap_or(serde_json::Value::Null);
        sim.out.final_status.insert(s.name().to_string(), status);
    }
    Ok(sim.out)
}

impl Sim {
    /// The name of the strategy at `owner` ("" for none).
    fn strategy_name(&self, owner: usize) -> String {
        self.strategies
            .get(owner)
            .map(|s| s.name().to_string())
            .unwrap_or_default()
    }

    /// Total base, total quote, free base, free quote, read from the venue
    /// only when its revision moved since the last read.
    fn funds(&mut self) -> [Decimal; 4] {
        let rev = self.ex.revision();
        if let Some((at, f)) = self.funds
            && at == rev
        {
            return f;
        }
        let f = {
            let _t = timing::enter(Part::PaperCore);
            self.ex.pair_funds(&self.inst.base, &self.inst.quote)
        };
        self.funds = Some((rev, f));
        f
    }

    fn equity_at(&mut self, price: Decimal, time_ms: i64) -> EquityPoint {
        // Totals only: no walk over the open orders for free balances.
        let [base, quote] = {
            let _t = timing::enter(Part::PaperCore);
            self.ex.pair_totals(&self.inst.base, &self.inst.quote)
        };
        EquityPoint {
            time_ms,
            close: price,
            base,
            quote,
            equity: quote + base * price + self.unrealized(),
        }
    }

    /// Unrealized PnL of the perpetual's position at the book's last price.
    fn unrealized(&self) -> Decimal {
        if self.funding.is_none() {
            return Decimal::ZERO;
        }
        self.ex.positions().iter().map(|p| p.unrealized_pnl).sum()
    }

    /// Settles every funding time up to `now` (the venue's schedule) at the
    /// rate the funding rows give for it, with the book's last price as the
    /// mark, and splits each payment over the strategies' own positions.
    fn settle_funding(&mut self, now: i64) {
        let Some(f) = self.funding.as_mut() else {
            return;
        };
        let _t = timing::enter(Part::PaperCore);
        for perp in &mut f.perps {
            let symbol = perp.symbol.as_str();
            while let Ok(next) = self.ex.funding_rate(symbol).map(|r| r.next_funding_ms) {
                if next > now {
                    break;
                }
                while let Some(row) = perp.rates.get(perp.next_row).filter(|r| r.time_ms <= next) {
                    perp.rate = row.rate;
                    perp.next_row += 1;
                }
                if self.ex.set_funding_rate(symbol, perp.rate).is_err() {
                    break;
                }
                for p in self.ex.settle_funding(next) {
                    let mine = p.symbol == self.inst.symbol;
                    for (owner, held) in f.held.iter().enumerate().filter(|_| mine) {
                        if held.is_zero() {
                            continue;
                        }
                        // A field borrow: `f` holds `self.funding` mutably.
                        let name = self
                            .strategies
                            .get(owner)
                            .map(|s| s.name().to_string())
                            .unwrap_or_default();
                        let share = (-*held * p.mark_price * p.rate).round_dp(8);
                        *self.out.funding_by_strategy.entry(name).or_default() += share;
                    }
                    self.out.funding.push(p);
                }
            }
            // Between settlements the venue shows the last rate given so far.
            let before = perp.next_row;
            while let Some(row) = perp.rates.get(perp.next_row).filter(|r| r.time_ms <= now) {
                perp.rate = row.rate;
                perp.next_row += 1;
            }
            if perp.next_row != before {
                let _ = self.ex.set_funding_rate(symbol, perp.rate);
            }
        }
    }

    fn restore(&mut self, now: i64) {
        let mut batches = Vec::new();
        for (i, s) in self.strategies.iter_mut().enumerate() {
            if s.journal_stream().is_some() {
                let _t = timing::enter(Part::Strategies);
                batches.push((i, s.restore(&[], &[], now)));
            }
        }
        for (i, actions) in batches {
            self.execute(i, actions, now);
        }
        self.deliver(now);
    }

    /// One trade of the intra-candle path, then the updates it caused and
    /// one tick of every strategy.
    fn step(&mut self, price: Decimal, now: i64) {
        self.settle_funding(now);
        {
            let _t = timing::enter(Part::PaperCore);
            if self
                .ex
                .trade_through(&self.inst.symbol, price, self.through, now)
                .is_err()
            {
                return;
            }
            for f in &self.followers {
                let _ = self.ex.trade_through(f, price, self.through, now);
            }
        }
        self.poll(now);
        self.deliver(now);
        self.tick(now);
    }

    /// The market view of a round, written into `kept` (a view of an
    /// earlier round, whose strings are reused) when there is one: the
    /// same view as a fresh one. The instrument is the run's, which never
    /// changes, so a kept view's copy stays.
    fn market(&mut self, kept: Option<MarketView>, now: i64) -> MarketView {
        let touch = {
            let _t = timing::enter(Part::PaperCore);
            self.ex.touch(&self.inst.symbol)
        };
        let (bid, ask, last) = touch.unwrap_or((Decimal::ZERO, Decimal::ZERO, Decimal::ZERO));
        let [_, _, free_base, free_quote] = self.funds();
        // Every tracked order is open.
        let open = self.tracked.len();
        if let Some(mut m) = kept {
            // Every field named: a new one must be written here too.
            let MarketView {
                symbol,
                last: m_last,
                bid: m_bid,
                ask: m_ask,
                instrument,
                free_base: m_free_base,
                free_quote: m_free_quote,
                open_orders_on_pair,
                regime,
                balances_as_of_ms,
                last_partial_cancel_ms,
            } = &mut m;
            symbol.clone_from(&self.inst.symbol);
            *m_last = last;
            *m_bid = bid;
            *m_ask = ask;
            if instrument.is_none() {
                *instrument = Some(self.inst.clone());
            }
            *m_free_base = Some(free_base);
            *m_free_quote = Some(free_quote);
            *open_orders_on_pair = Some(u32::try_from(open).unwrap_or(u32::MAX));
            regime.copy_from(&self.regime);
            *balances_as_of_ms = now;
            *last_partial_cancel_ms = self.last_partial_cancel_ms;
            return m;
        }
        MarketView {
            symbol: self.inst.symbol.clone(),
            last,
            bid,
            ask,
            instrument: Some(self.inst.clone()),
            free_base: Some(free_base),
            free_quote: Some(free_quote),
            open_orders_on_pair: Some(u32::try_from(open).unwrap_or(u32::MAX)),
            regime: self.regime.clone(),
            balances_as_of_ms: now,
            last_partial_cancel_ms: self.last_partial_cancel_ms,
        }
    }

    fn quiet_key(&self) -> QuietKey {
        QuietKey {
            revision: self.ex.revision(),
            delivered: self.delivered,
            regime_version: self.regime_version,
            last_partial_cancel_ms: self.last_partial_cancel_ms,
        }
    }

    /// Runs strategy `i`'s last skipped tick, if one is waiting, so its
    /// state is the one an unskipped run has (see [`Wake`]; as a quiet
    /// tick, [`Strategy::on_quiet_tick`]). By the wake's
    /// promise it answers nothing; were it to, the answer runs as a tick's.
    fn replay(&mut self, i: usize) {
        let Some((bid, ask, last, at)) = self.skipped.get_mut(i).and_then(Option::take) else {
            return;
        };
        // Patched in place (every replay sets these four), not cloned.
        let Some(view) = self.base_view.as_mut() else {
            return;
        };
        view.bid = bid;
        view.ask = ask;
        view.last = last;
        view.balances_as_of_ms = at;
        let actions = match (self.strategies.get_mut(i), self.base_view.as_ref()) {
            (Some(s), Some(view)) => {
                let _t = timing::enter(Part::Strategies);
                s.on_quiet_tick(view, at)
            }
            _ => Vec::new(),
        };
        if !actions.is_empty() {
            if let Some(w) = self.wakes.get_mut(i) {
                *w = Some(Wake::EveryTick);
            }
            self.execute(i, actions, at);
        }
    }

    fn tick(&mut self, now: i64) {
        self.out.ticks += 1;
        let key = self.quiet_key();
        let quiet = self.skip && self.quiet_key == Some(key);
        let (bid, ask, last) = if quiet {
            let _t = timing::enter(Part::PaperCore);
            self.ex.touch(&self.inst.symbol).unwrap_or((
                Decimal::ZERO,
                Decimal::ZERO,
                Decimal::ZERO,
            ))
        } else {
            (Decimal::ZERO, Decimal::ZERO, Decimal::ZERO)
        };
        if quiet {
            for (w, s) in self.wakes.iter_mut().zip(&self.strategies) {
                if w.is_none() {
                    let _t = timing::enter(Part::Strategies);
                    *w = Some(s.wake());
                }
            }
        }
        let skips = |w: &Option<Wake>| quiet && w.is_some_and(|w| w.holds(last, now));
        if quiet && self.wakes.iter().all(skips) {
            for s in &mut self.skipped {
                *s = Some((bid, ask, last, now));
            }
            self.out.ticks_skipped += self.skipped.len() as u64;
            return;
        }
        let kept = self.spare_view.take();
        let market = self.market(kept, now);
        let mut batches: Vec<(usize, Vec<Action>)> = Vec::with_capacity(self.strategies.len());
        for i in 0..self.strategies.len() {
            if self.wakes.get(i).is_some_and(skips) {
                if let Some(s) = self.skipped.get_mut(i) {
                    *s = Some((bid, ask, last, now));
                }
                self.out.ticks_skipped += 1;
                continue;
            }
            self.replay(i);
            let Some(s) = self.strategies.get_mut(i) else {
                continue;
            };
            let actions = {
                let _t = timing::enter(Part::Strategies);
                s.on_tick(&market, now)
            };
            if let Some(w) = self.wakes.get_mut(i) {
                *w = (!actions.is_empty()).then_some(Wake::EveryTick);
            }
            batches.push((i, actions));
        }
        for (i, actions) in batches {
            if !actions.is_empty() {
                self.execute(i, actions, now);
            }
        }
        self.deliver(now);
        // The wakes hold from this round on only if nothing else happened
        // in it (no order, balance or update since the view was read).
        if self.quiet_key() == key {
            if quiet {
                self.spare_view = Some(market);
            } else {
                self.spare_view = self.base_view.replace(market);
            }
            self.quiet_key = Some(key);
        } else {
            self.spare_view = Some(market);
            self.quiet_key = None;
        }
    }

    /// The live execution layer's `execute`: places and cancels at the
    /// venue, refusals back to the strategy at once, journal rows kept.
    fn execute(&mut self, owner: usize, actions: Vec<Action>, now: i64) {
        let mut queue: VecDeque<Action> = actions.into();
        let mut budget = ACTION_BUDGET;
        while let Some(action) = queue.pop_front() {
            budget -= 1;
            if budget == 0 {
                break;
            }
            let failure = match action {
                Action::Place(intent) => {
                    let order = NewOrder {
                        client_order_id: intent.client_order_id,
                        symbol: intent.symbol,
                        side: intent.side,
                        order_type: if intent.price.is_some() {
                            OrderType::Limit
                        } else {
                            OrderType::Market
                        },
                        volume: intent.volume,
                        price: intent.price,
                        post_only: intent.post_only,
                        userref: USERREF_MIN + intent.userref_offset,
                        reduce_only: false,
                    };
                    let placed = {
                        let _t = timing::enter(Part::PaperCore);
                        self.ex.place(&order, now)
                    };
                    match placed {
                        Ok(state) => {
                            self.out.orders_placed += 1;
                            self.out.orders.push(PlacedOrder {
                                time_ms: now,
                                strategy: self.strategy_name(owner),
                                client_order_id: order.client_order_id.clone(),
                                side: order.side,
                                price: order.price,
                                volume: order.volume,
                                post_only: order.post_only,
                            });
                            let pending = OrderState::pending(&order, now);
                            self.seq += 1;
                            self.follow(owner, &pending, &state, now);
                            if state.status == OrderStatus::Open {
                                self.seq_of.insert(state.venue_order_id.clone(), self.seq);
                                self.tracked
                                    .insert(self.seq, Tracked { owner, last: state });
                            }
                            None
                        }
                        Err(e) => {
                            self.out.place_failures += 1;
                            Some((
                                order.client_order_id,
                                UpdateKind::PlaceFailed,
                                e.to_string(),
                            ))
                        }
                    }
                }
                Action::Cancel { client_order_id } => {
                    let r = OrderRef {
                        client_order_id: client_order_id.clone(),
                        venue_order_id: None,
                    };
                    let canceled = {
                        let _t = timing::enter(Part::PaperCore);
                        self.ex.cancel(&r, now)
                    };
                    match canceled {
                        Ok(_) => {
                            self.poll(now);
                            None
                        }
                        Err(e) => {
                            self.out.cancel_failures += 1;
                            Some((client_order_id, UpdateKind::CancelFailed, e.to_string()))
                        }
                    }
                }
                Action::Journal {
                    kind, payload_json, ..
                } if JOURNAL_KINDS_KEPT.contains(&kind.as_str()) => {
                    let name = self.strategies.get(owner).map_or("", |s| s.name());
                    self.out.journal.add_json(name, &kind, &payload_json);
                    None
                }
                // The strategies' other journal rows (positions, moves, ...)
                // are for a live engine's restarts; nothing reads them here.
                Action::Journal { .. } => None,
            };
            if let Some((client_order_id, kind, message)) = failure {
                let update = OrderUpdate {
                    client_order_id,
                    kind,
                    volume_executed: Decimal::ZERO,
                    average_price: None,
                    fill_volume: Decimal::ZERO,
                    fill_price: Decimal::ZERO,
                    fill_fee: Decimal::ZERO,
                    fee_asset: String::new(),
                    message,
                };
                self.replay(owner);
                self.delivered += 1;
                if let Some(s) = self.strategies.get_mut(owner) {
                    let _t = timing::enter(Part::Strategies);
                    queue.extend(s.on_order(&update, now));
                }
            }
        }
    }

    /// Reads the state of every followed open order the venue changed since
    /// the last poll (its change log) and queues what changed, in placement
    /// order (nothing to read while the venue's revision has not moved).
    fn poll(&mut self, now: i64) {
        let rev = self.ex.revision();
        if self.polled_at == Some(rev) {
            return;
        }
        let _t = timing::enter(Part::Gateway);
        let mut ids = std::mem::take(&mut self.changed_ids);
        self.ex.take_changed(&mut ids);
        let mut seqs = std::mem::take(&mut self.changed_seqs);
        seqs.clear();
        seqs.extend(ids.iter().filter_map(|id| self.seq_of.get(id).copied()));
        seqs.sort_unstable();
        seqs.dedup();
        for &k in &seqs {
            // Borrowed: the updates are read off the two states, and the
            // state kept is updated in place (its strings reused).
            let Some(t) = self.tracked.get_mut(&k) else {
                continue;
            };
            let Some(now_state) = self.ex.order(&t.last.venue_order_id) else {
                continue;
            };
            if !changed(&t.last, now_state) {
                continue;
            }
            let updates = diff(&t.last, now_state);
            let (owner, side) = (t.owner, now_state.side);
            let taker = t.last.status == OrderStatus::Pending;
            if now_state.status == OrderStatus::Open {
                copy_state(&mut t.last, now_state);
            } else if let Some(t) = self.tracked.remove(&k) {
                self.seq_of.remove(&t.last.venue_order_id);
            }
            self.queue(owner, updates, side, taker, now);
        }
        self.changed_ids = ids;
        self.changed_seqs = seqs;
        self.polled_at = Some(self.ex.revision());
    }

    /// Queues the updates between two states of one order (the gateway
    /// registry's diff) and records fills.
    fn follow(&mut self, owner: usize, old: &OrderState, new: &OrderState, now: i64) {
        let updates = diff(old, new);
        self.queue(
            owner,
            updates,
            new.side,
            old.status == OrderStatus::Pending,
            now,
        );
    }

    /// Queues the updates of one order (of `side`; `taker`: it was pending,
    /// so its fills took liquidity) and records its fills.
    fn queue(
        &mut self,
        owner: usize,
        updates: Vec<OrderUpdate>,
        side: Side,
        taker: bool,
        now: i64,
    ) {
        let _t = timing::enter(Part::Gateway);
        for update in updates {
            if update.fill_volume > Decimal::ZERO {
                let fee_quote = if update.fee_asset == self.inst.base {
                    update.fill_fee * update.fill_price
                } else {
                    update.fill_fee
                };
                self.out.fills.push(Fill {
                    time_ms: now,
                    strategy: self.strategy_name(owner),
                    // The order's id, as every update of it carries.
                    client_order_id: update.client_order_id.clone(),
                    side,
                    price: update.fill_price,
                    volume: update.fill_volume,
                    fee: update.fill_fee,
                    fee_asset: update.fee_asset.clone(),
                    fee_quote,
                    taker,
                });
                if let Some(held) = self.funding.as_mut().and_then(|f| f.held.get_mut(owner)) {
                    match side {
                        Side::Buy => *held += update.fill_volume,
                        Side::Sell => *held -= update.fill_volume,
                    }
                }
            }
            if update.kind == UpdateKind::Canceled && update.volume_executed > Decimal::ZERO {
                self.last_partial_cancel_ms = Some(now);
            }
            self.stream.push_back(update);
        }
    }

    /// Hands queued updates to their strategies, running their answers,
    /// until nothing is left.
    fn deliver(&mut self, now: i64) {
        let mut budget = UPDATE_BUDGET;
        while let Some(update) = self.stream.pop_front() {
            budget -= 1;
            if budget == 0 {
                self.stream.clear();
                break;
            }
            let owner = {
                let _t = timing::enter(Part::Strategies);
                self.strategies
                    .iter()
                    .position(|s| s.owns(&update.client_order_id))
            };
            let Some(owner) = owner else {
                continue;
            };
            self.replay(owner);
            self.delivered += 1;
            let actions = self
                .strategies
                .get_mut(owner)
                .map(|s| {
                    let _t = timing::enter(Part::Strategies);
                    s.on_order(&update, now)
                })
                .unwrap_or_default();
            if !actions.is_empty() {
                self.execute(owner, actions, now);
            }
        }
    }
}

/// `*dst = src.clone()`, reusing `dst`'s strings. Every field is named, so
/// a new field of `OrderState` must be copied here.
fn copy_state(dst: &mut OrderState, src: &OrderState) {
    let OrderState {
        client_order_id,
        venue_order_id,
        symbol,
        side,
        order_type,
        price,
        volume,
        volume_executed,
        average_price,
        fee,
        fee_asset,
        status,
        userref,
        opened_at_ms,
        closed_at_ms,
        reason,
        post_only,
        foreign,
    } = src;
    dst.client_order_id.clone_from(client_order_id);
    dst.venue_order_id.clone_from(venue_order_id);
    dst.symbol.clone_from(symbol);
    dst.side = *side;
    dst.order_type = *order_type;
    dst.price = *price;
    dst.volume = *volume;
    dst.volume_executed = *volume_executed;
    dst.average_price = *average_price;
    dst.fee = *fee;
    dst.fee_asset.clone_from(fee_asset);
    dst.status = *status;
    dst.userref = *userref;
    dst.opened_at_ms = *opened_at_ms;
    dst.closed_at_ms = *closed_at_ms;
    dst.reason.clone_from(reason);
    dst.post_only = *post_only;
    dst.foreign.clone_from(foreign);
}

/// Whether an order's state differs from the one last read. The venue's
/// order keeps its identity (client and venue ids, symbol: the same order
/// is looked up by its venue id), so only the rest is compared, which
/// spares three string comparisons per open order and poll. Every other
/// field is named, so a new field of `OrderState` must be placed here.
fn changed(old: &OrderState, new: &OrderState) -> bool {
    let OrderState {
        client_order_id: _,
        venue_order_id: _,
        symbol: _,
        side,
        order_type,
        price,
        volume,
        volume_executed,
        average_price,
        fee,
        fee_asset,
        status,
        userref,
        opened_at_ms,
        closed_at_ms,
        reason,
        post_only,
        foreign,
    } = new;
    old.status != *status
        || old.volume_executed != *volume_executed
        || old.fee != *fee
        || old.average_price != *average_price
        || old.closed_at_ms != *closed_at_ms
        || old.volume != *volume
        || old.price != *price
        || old.side != *side
        || old.order_type != *order_type
        || old.userref != *userref
        || old.opened_at_ms != *opened_at_ms
        || old.post_only != *post_only
        || old.fee_asset != *fee_asset
        || old.reason != *reason
        || old.foreign != *foreign
}

/// The updates between two states of one order, as the gateway's registry
/// computes its events (`herd_gateway::registry::diff`) and the engine
/// reads them (`execution::update_from_event`).
pub fn diff(old: &OrderState, new: &OrderState) -> Vec<OrderUpdate> {
    let base = |kind: UpdateKind| OrderUpdate {
        client_order_id: new.client_order_id.clone(),
        kind,
        volume_executed: new.volume_executed,
        average_price: new.average_price.filter(|p| !p.is_zero()),
        fill_volume: Decimal::ZERO,
        fill_price: Decimal::ZERO,
        fill_fee: Decimal::ZERO,
        fee_asset: new.fee_asset.clone(),
        message: new.reason.clone().unwrap_or_default(),
    };
    let mut out = Vec::new();
    if old.status == OrderStatus::Pending
        && new.status != OrderStatus::Pending
        && new.status != OrderStatus::Rejected
    {
        out.push(base(UpdateKind::Open));
    }
    let delta = new.volume_executed - old.volume_executed;
    if delta > Decimal::ZERO {
        let new_value = new.average_price.or(new.price).unwrap_or_default() * new.volume_executed;
        let old_value = old.average_price.or(old.price).unwrap_or_default() * old.volume_executed;
        let kind = if new.status == OrderStatus::Filled {
            UpdateKind::Filled
        } else {
            UpdateKind::PartialFill
        };
        out.push(OrderUpdate {
            fill_volume: delta,
            fill_price: ((new_value - old_value) / delta).round_dp(12).normalize(),
            fill_fee: (new.fee - old.fee).max(Decimal::ZERO),
            ..base(kind)
        });
    } else if new.status == OrderStatus::Filled && old.status != OrderStatus::Filled {
        out.push(base(UpdateKind::Filled));
    }
    if new.status != old.status {
        match new.status {
            OrderStatus::Canceled => out.push(base(UpdateKind::Canceled)),
            OrderStatus::Expired => out.push(base(UpdateKind::Expired)),
            OrderStatus::Rejected => out.push(base(UpdateKind::Rejected)),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod copy_tests {
    use super::*;

    /// `copy_state` leaves what a clone leaves, whatever the state copied
    /// over held (strings longer or shorter, options set or not).
    #[test]
    fn copying_a_state_is_cloning_it() {
        let full = OrderState {
            client_order_id: "g0ae-abcdef12".into(),
            venue_order_id: "OABCDE-FGHIJ-KLMNOP".into(),
            symbol: "DOGEUSD".into(),
            side: Side::Sell,
            order_type: OrderType::Limit,
            price: Some(Decimal::new(12, 2)),
            volume: Decimal::new(1005, 1),
            volume_executed: Decimal::new(5, 1),
            average_price: Some(Decimal::new(121, 3)),
            fee: Decimal::new(3, 4),
            fee_asset: "USD".into(),
            status: OrderStatus::Canceled,
            userref: 1003,
            opened_at_ms: 5,
            closed_at_ms: Some(9),
            reason: Some("User requested".into()),
            post_only: true,
            foreign: Some(herd_venue::Foreign {
                venue_type: "take-profit".into(),
                trigger: Some("+5%".into()),
                quote_volume: Some(Decimal::TEN),
            }),
        };
        let bare = OrderState {
            client_order_id: "x".into(),
            venue_order_id: String::new(),
            symbol: "A-MUCH-LONGER-SYMBOL-THAN-BEFORE".into(),
            side: Side::Buy,
            order_type: OrderType::Market,
            price: None,
            volume: Decimal::ONE,
            volume_executed: Decimal::ZERO,
            average_price: None,
            fee: Decimal::ZERO,
            fee_asset: String::new(),
            status: OrderStatus::Pending,
            userref: 0,
            opened_at_ms: 0,
            closed_at_ms: None,
            reason: None,
            post_only: false,
            foreign: None,
        };
        for (from, onto) in [(&full, &bare), (&bare, &full), (&full, &full)] {
            let mut dst = onto.clone();
            copy_state(&mut dst, from);
            assert_eq!(&dst, from);
        }
    }
}
