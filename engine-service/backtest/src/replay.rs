//! The strategies' calls of a run, recorded and replayed: the strategy step
//! measured on its own (the year bench), with nothing of the venue, the
//! driver or a clock between the calls.
//!
//! [`record`] wraps each strategy so that a run logs every call the driver
//! makes into it, in order, with a digest of what the call returned. [`replay`] makes
//! the same calls, in the same order, on fresh strategies built the same
//! way: the strategies are deterministic reducers over their calls, so they
//! pass through the same states and return the same answers, which
//! [`replay`] compares when asked to (`verify`). Timing a replay without
//! the comparison times the strategies alone.
//!
//! The log holds no allocation per call: the ticks' views are kept once
//! per distinct view, the texts of order updates and ownership questions
//! in one buffer, and the answers as digests. A first version kept every
//! view, update and answer whole: the replay then spent a fifth of its
//! time in the allocator, whose heap the log's millions of blocks had
//! fragmented, which no live or backtest run sees.

use std::hash::{Hash, Hasher};
use std::ops::Range;
use std::sync::{Arc, Mutex, PoisonError};

use rust_decimal::Decimal;

use herd_strategies::strategy::{
    Action, Command, CommandError, JournalRow, KnownOrder, MarketView, OpenOrderRef, OrderUpdate,
    Params, PositionOrderRef, StatusBlock, Strategy, UpdateKind, Wake,
};

/// One call into a strategy (the arguments that are data, owned).
#[derive(Debug, Clone)]
pub enum Call {
    /// Index into [`Calls::ticks`].
    Tick(u32),
    /// Index into [`Calls::ticks`].
    QuietTick(u32),
    /// Index into [`Calls::orders`].
    Order(u32),
    Wake,
    /// The client order id asked about: its start and end in the log's
    /// text.
    Owns(u32, u32),
    Status(i64),
    Restore(i64),
    JournalFilter(fn(&str) -> bool),
    Enabled,
    SetEnabled(bool, i64),
}

/// A tick's market view as the log keeps it: what changes from tick to
/// tick, and the rest (symbol, instrument, regime) as an index into the
/// log's distinct views. A year's views, each kept whole with its own
/// strings, filled gigabytes, and reading them back scattered over the heap
/// cost the replay more than the strategies' own work.
#[derive(Debug, Clone)]
pub struct TickCall {
    pub view: usize,
    pub last: Decimal,
    pub bid: Decimal,
    pub ask: Decimal,
    pub free_base: Option<Decimal>,
    pub free_quote: Option<Decimal>,
    pub open_orders_on_pair: Option<u32>,
    pub balances_as_of_ms: i64,
    pub last_partial_cancel_ms: Option<i64>,
    pub now_ms: i64,
}

impl TickCall {
    /// Writes this tick's changing fields into `v` (its view).
    fn fill(&self, v: &mut MarketView) {
        v.last = self.last;
        v.bid = self.bid;
        v.ask = self.ask;
        v.free_base = self.free_base;
        v.free_quote = self.free_quote;
        v.open_orders_on_pair = self.open_orders_on_pair;
        v.balances_as_of_ms = self.balances_as_of_ms;
        v.last_partial_cancel_ms = self.last_partial_cancel_ms;
    }
}

/// An order update as the log keeps it: its texts as ranges of the log's
/// text buffer.
#[derive(Debug, Clone)]
pub struct OrderCall {
    pub client_order_id: Range<usize>,
    pub kind: UpdateKind,
    pub volume_executed: Decimal,
    pub average_price: Option<Decimal>,
    pub fill_volume: Decimal,
    pub fill_price: Decimal,
    pub fill_fee: Decimal,
    pub fee_asset: Range<usize>,
    pub message: Range<usize>,
    pub now_ms: i64,
}

impl OrderCall {
    /// Writes this update into `u` (reusing its strings' buffers).
    fn fill(&self, text: &str, u: &mut OrderUpdate) {
        let t = |r: &Range<usize>| text.get(r.clone()).unwrap_or_default();
        u.client_order_id.clear();
        u.client_order_id.push_str(t(&self.client_order_id));
        u.kind = self.kind;
        u.volume_executed = self.volume_executed;
        u.average_price = self.average_price;
        u.fill_volume = self.fill_volume;
        u.fill_price = self.fill_price;
        u.fill_fee = self.fill_fee;
        u.fee_asset.clear();
        u.fee_asset.push_str(t(&self.fee_asset));
        u.message.clear();
        u.message.push_str(t(&self.message));
    }
}

/// What a call returned, where it returns something a replay can compare
/// (status blocks are rebuilt, not compared: they hold no decision).
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Actions(Vec<Action>),
    MaybeActions(Option<Vec<Action>>),
    Wake(Wake),
    Bool(bool),
    Nothing,
}

/// The calls of a run, in order: which strategy (its index in the run)
/// and the call; the answers' digests apart (a timed replay does not read
/// them); the distinct market views the ticks refer to; the texts.
#[derive(Debug, Clone, Default)]
pub struct Calls {
    /// The strategy's index and the call (a few bytes each: what a timed
    /// replay streams through; the ticks and updates apart, read in turn).
    pub calls: Vec<(u32, Call)>,
    pub ticks: Vec<TickCall>,
    pub orders: Vec<OrderCall>,
    pub digests: Vec<u64>,
    pub views: Vec<MarketView>,
    pub text: String,
}

impl Calls {
    pub fn len(&self) -> usize {
        self.calls.len()
    }

    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    /// The index of a view equal to `v` but for the fields a [`TickCall`]
    /// keeps, added when new.
    fn view_of(&mut self, v: &MarketView) -> usize {
        let same = |k: &MarketView| {
            k.symbol == v.symbol && k.instrument == v.instrument && k.regime == v.regime
        };
        // The last view first: it changes rarely.
        if let Some(i) = self.views.iter().rposition(same) {
            return i;
        }
        self.views.push(v.clone());
        self.views.len() - 1
    }

    fn keep_text(&mut self, t: &str) -> Range<usize> {
        let start = self.text.len();
        self.text.push_str(t);
        start..self.text.len()
    }

    fn push(&mut self, strategy: usize, call: Call, answer: &Answer) {
        self.calls
            .push((u32::try_from(strategy).unwrap_or(u32::MAX), call));
        self.digests.push(digest(answer));
    }
}

/// A digest of an answer: its debug text hashed (every field of every
/// action, in order).
fn digest(answer: &Answer) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    format!("{answer:?}").hash(&mut h);
    h.finish()
}

/// The log the recording strategies of one run share.
#[derive(Debug, Clone, Default)]
pub struct Log(Arc<Mutex<Calls>>);

impl Log {
    fn with<T>(&self, f: impl FnOnce(&mut Calls) -> T) -> T {
        f(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn push(&self, strategy: usize, call: Call, answer: &Answer) {
        self.with(|c| c.push(strategy, call, answer));
    }

    fn push_tick(
        &self,
        strategy: usize,
        v: &MarketView,
        now_ms: i64,
        quiet: bool,
        answer: &Answer,
    ) {
        self.with(|c| {
            let view = c.view_of(v);
            let tick = TickCall {
                view,
                last: v.last,
                bid: v.bid,
                ask: v.ask,
                free_base: v.free_base,
                free_quote: v.free_quote,
                open_orders_on_pair: v.open_orders_on_pair,
                balances_as_of_ms: v.balances_as_of_ms,
                last_partial_cancel_ms: v.last_partial_cancel_ms,
                now_ms,
            };
            let at = u32::try_from(c.ticks.len()).unwrap_or(u32::MAX);
            c.ticks.push(tick);
            let call = if quiet {
                Call::QuietTick(at)
            } else {
                Call::Tick(at)
            };
            c.push(strategy, call, answer);
        });
    }

    fn push_order(&self, strategy: usize, u: &OrderUpdate, now_ms: i64, answer: &Answer) {
        self.with(|c| {
            let order = OrderCall {
                client_order_id: c.keep_text(&u.client_order_id),
                kind: u.kind,
                volume_executed: u.volume_executed,
                average_price: u.average_price,
                fill_volume: u.fill_volume,
                fill_price: u.fill_price,
                fill_fee: u.fill_fee,
                fee_asset: c.keep_text(&u.fee_asset),
                message: c.keep_text(&u.message),
                now_ms,
            };
            let at = u32::try_from(c.orders.len()).unwrap_or(u32::MAX);
            c.orders.push(order);
            c.push(strategy, Call::Order(at), answer);
        });
    }

    fn push_owns(&self, strategy: usize, id: &str, answer: &Answer) {
        self.with(|c| {
            let id = c.keep_text(id);
            let (start, end) = (
                u32::try_from(id.start).unwrap_or(u32::MAX),
                u32::try_from(id.end).unwrap_or(u32::MAX),
            );
            c.push(strategy, Call::Owns(start, end), answer);
        });
    }

    /// The calls logged so far, in order.
    pub fn take(&self) -> Calls {
        self.with(std::mem::take)
    }
}

impl Answer {
    fn into_actions(self) -> Vec<Action> {
        match self {
            Answer::Actions(a) | Answer::MaybeActions(Some(a)) => a,
            _ => Vec::new(),
        }
    }
}

/// A strategy that logs the calls made into it (see [`record`]).
struct Recording {
    inner: Box<dyn Strategy>,
    index: usize,
    log: Log,
}

impl Strategy for Recording {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn owns(&self, client_order_id: &str) -> bool {
        let a = self.inner.owns(client_order_id);
        self.log
            .push_owns(self.index, client_order_id, &Answer::Bool(a));
        a
    }

    fn on_tick(&mut self, market: &MarketView, now_ms: i64) -> Vec<Action> {
        let a = Answer::Actions(self.inner.on_tick(market, now_ms));
        self.log.push_tick(self.index, market, now_ms, false, &a);
        a.into_actions()
    }

    fn on_quiet_tick(&mut self, market: &MarketView, now_ms: i64) -> Vec<Action> {
        let a = Answer::Actions(self.inner.on_quiet_tick(market, now_ms));
        self.log.push_tick(self.index, market, now_ms, true, &a);
        a.into_actions()
    }

    fn wake(&self) -> Wake {
        let w = self.inner.wake();
        self.log.push(self.index, Call::Wake, &Answer::Wake(w));
        w
    }

    fn set_journal_filter(&mut self, keep: fn(&str) -> bool) {
        self.inner.set_journal_filter(keep);
        self.log
            .push(self.index, Call::JournalFilter(keep), &Answer::Nothing);
    }

    fn on_order(&mut self, update: &OrderUpdate, now_ms: i64) -> Vec<Action> {
        let a = Answer::Actions(self.inner.on_order(update, now_ms));
        self.log.push_order(self.index, update, now_ms, &a);
        a.into_actions()
    }

    fn status(&self, now_ms: i64) -> StatusBlock {
        self.log
            .push(self.index, Call::Status(now_ms), &Answer::Nothing);
        self.inner.status(now_ms)
    }

    fn enabled(&self) -> bool {
        let e = self.inner.enabled();
        self.log.push(self.index, Call::Enabled, &Answer::Bool(e));
        e
    }

    fn set_enabled(&mut self, enabled: bool, now_ms: i64) -> Option<Vec<Action>> {
        let a = self.inner.set_enabled(enabled, now_ms);
        let answer = Answer::MaybeActions(a);
        self.log
            .push(self.index, Call::SetEnabled(enabled, now_ms), &answer);
        match answer {
            Answer::MaybeActions(a) => a,
            _ => None,
        }
    }

    fn stale_orders(&self, open: &[OpenOrderRef], userref_min: i32) -> Vec<String> {
        self.inner.stale_orders(open, userref_min)
    }

    fn userref_range_problem(&self, userref_min: i32, userref_max: i32) -> Option<String> {
        self.inner.userref_range_problem(userref_min, userref_max)
    }

    fn position_orders(&self) -> Vec<PositionOrderRef> {
        self.inner.position_orders()
    }

    fn journal_stream(&self) -> Option<&str> {
        self.inner.journal_stream()
    }

    fn restore(
        &mut self,
        journal: &[JournalRow],
        known: &[KnownOrder],
        now_ms: i64,
    ) -> Vec<Action> {
        // A backtest restores from nothing: the replay does the same.
        let a = self.inner.restore(journal, known, now_ms);
        let call = if journal.is_empty() && known.is_empty() {
            Call::Restore(now_ms)
        } else {
            // Not replayable from the log: a replay of it reports the
            // mismatch (the backtest never restores from rows).
            Call::Restore(i64::MIN)
        };
        let a = Answer::Actions(a);
        self.log.push(self.index, call, &a);
        a.into_actions()
    }

    fn reconfigure(&mut self, params: &Params<'_>, now_ms: i64) -> Vec<Action> {
        self.inner.reconfigure(params, now_ms)
    }

    fn command(
        &mut self,
        cmd: &Command,
        now_ms: i64,
    ) -> Option<Result<(String, Vec<Action>), CommandError>> {
        self.inner.command(cmd, now_ms)
    }
}

/// `strategies`, each wrapped to log its calls into the returned log.
pub fn record(strategies: Vec<Box<dyn Strategy>>) -> (Vec<Box<dyn Strategy>>, Log) {
    let log = Log::default();
    let wrapped = strategies
        .into_iter()
        .enumerate()
        .map(|(index, inner)| {
            Box::new(Recording {
                inner,
                index,
                log: log.clone(),
            }) as Box<dyn Strategy>
        })
        .collect();
    (wrapped, log)
}

/// Where a verified replay first answered otherwise than the recording.
#[derive(Debug, Clone, PartialEq)]
pub struct Mismatch {
    /// The call's position in the log.
    pub at: usize,
    pub strategy: usize,
    pub call: String,
    pub recorded: String,
    pub replayed: String,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "call {} (strategy {}, {}): recorded {}, replayed {}",
            self.at, self.strategy, self.call, self.recorded, self.replayed
        )
    }
}

/// Makes the logged calls on `strategies` (fresh ones, built as the
/// recorded run's were), in order. With `verify`, compares each answer
/// with the recorded one and stops at the first that differs; without, only
/// makes the calls (what a timed replay times). The number of calls made.
pub fn replay(
    strategies: &mut [Box<dyn Strategy>],
    log: &Calls,
    verify: bool,
) -> Result<usize, Mismatch> {
    // The ticks' views: one per distinct view, its changing fields written
    // before each tick (as the driver keeps one view and updates it).
    let mut views = log.views.clone();
    // The updates' scratch (the driver builds each update afresh; these
    // reuse their buffers, a copy of a few bytes each).
    let mut update = OrderUpdate {
        client_order_id: String::new(),
        kind: UpdateKind::Open,
        volume_executed: Decimal::ZERO,
        average_price: None,
        fill_volume: Decimal::ZERO,
        fill_price: Decimal::ZERO,
        fill_fee: Decimal::ZERO,
        fee_asset: String::new(),
        message: String::new(),
    };
    let text = log.text.as_str();
    for (at, (index, call)) in log.calls.iter().enumerate() {
        let Some(s) = strategies.get_mut(*index as usize) else {
            return Err(mismatch(at, log, "a strategy", "no such strategy".into()));
        };
        let answer = match call {
            Call::Tick(t) | Call::QuietTick(t) => {
                let Some(t) = log.ticks.get(*t as usize) else {
                    return Err(mismatch(at, log, "a tick", "no such tick".into()));
                };
                let Some(v) = views.get_mut(t.view) else {
                    return Err(mismatch(at, log, "a view", "no such view".into()));
                };
                t.fill(v);
                Answer::Actions(if matches!(call, Call::QuietTick(_)) {
                    s.on_quiet_tick(v, t.now_ms)
                } else {
                    s.on_tick(v, t.now_ms)
                })
            }
            Call::Order(o) => {
                let Some(o) = log.orders.get(*o as usize) else {
                    return Err(mismatch(at, log, "an update", "no such update".into()));
                };
                o.fill(text, &mut update);
                Answer::Actions(s.on_order(&update, o.now_ms))
            }
            Call::Wake => Answer::Wake(s.wake()),
            Call::Owns(start, end) => {
                Answer::Bool(s.owns(text.get(*start as usize..*end as usize).unwrap_or_default()))
            }
            Call::Status(now) => {
                std::hint::black_box(s.status(*now));
                Answer::Nothing
            }
            Call::Restore(now) if *now == i64::MIN => {
                return Err(mismatch(at, log, "a restore", "restore from rows".into()));
            }
            Call::Restore(now) => Answer::Actions(s.restore(&[], &[], *now)),
            Call::JournalFilter(keep) => {
                s.set_journal_filter(*keep);
                Answer::Nothing
            }
            Call::Enabled => Answer::Bool(s.enabled()),
            Call::SetEnabled(on, now) => Answer::MaybeActions(s.set_enabled(*on, *now)),
        };
        if verify && log.digests.get(at) != Some(&digest(&answer)) {
            let recorded = format!("digest {:?}", log.digests.get(at));
            return Err(mismatch(at, log, &recorded, format!("{answer:?}")));
        }
        std::hint::black_box(answer);
    }
    Ok(log.len())
}

fn mismatch(at: usize, log: &Calls, recorded: &str, replayed: String) -> Mismatch {
    let (strategy, call) = log
        .calls
        .get(at)
        .map_or((usize::MAX, String::new()), |(i, c)| {
            (*i as usize, format!("{c:?}"))
        });
    Mismatch {
        at,
        strategy,
        call: call.chars().take(200).collect(),
        recorded: recorded.chars().take(400).collect(),
        replayed: replayed.chars().take(400).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic;

    const START_MS: i64 = 1_704_067_200_000;

    fn strategies() -> Vec<Box<dyn Strategy>> {
        let (rangers, grid) = synthetic::all_on();
        crate::engine_strategies(rangers, grid, "DOGEUSD", START_MS).unwrap_or_default()
    }

    fn recorded(n: usize) -> (crate::Outcome, Calls) {
        let bars = synthetic::candles(n, START_MS, 60_000, 0.1, 7, 7);
        let setup = synthetic::doge_setup(crate::RegimeSetup::Fixed(
            herd_strategies::strategy::RegimeView {
                regime: "RANGING".into(),
                ready: true,
                confidence: 1.0,
                bias: 0.0,
            },
        ));
        let (wrapped, log) = record(strategies());
        let out = crate::run(&setup, wrapped, &bars, 60_000, &mut ());
        let Ok(out) = out else {
            panic!("the recorded run failed");
        };
        (out, log.take())
    }

    /// A replay on fresh strategies answers every call as the run did, and
    /// the run's outcome is the unwrapped run's (recording changes nothing).
    #[test]
    fn a_replay_answers_every_call_as_the_run_did() {
        let (out, log) = recorded(3_000);
        let bars = synthetic::candles(3_000, START_MS, 60_000, 0.1, 7, 7);
        let setup = synthetic::doge_setup(crate::RegimeSetup::Fixed(
            herd_strategies::strategy::RegimeView {
                regime: "RANGING".into(),
                ready: true,
                confidence: 1.0,
                bias: 0.0,
            },
        ));
        let plain = crate::run(&setup, strategies(), &bars, 60_000, &mut ());
        let Ok(plain) = plain else {
            panic!("the plain run failed");
        };
        assert_eq!(plain.fills.len(), out.fills.len());
        assert_eq!(plain.orders_placed, out.orders_placed);
        let ticks = log
            .calls
            .iter()
            .filter(|(_, c)| matches!(c, Call::Tick(..)))
            .count();
        let orders = log
            .calls
            .iter()
            .filter(|(_, c)| matches!(c, Call::Order(..)))
            .count();
        assert!(
            ticks > 1_000 && orders > 50,
            "{ticks} ticks, {orders} updates"
        );
        let mut fresh = strategies();
        assert_eq!(replay(&mut fresh, &log, true), Ok(log.len()));
    }

    /// A replay on strategies that differ from the recorded ones is caught:
    /// the comparison can fail.
    #[test]
    fn a_replay_on_other_strategies_reports_where_it_differs() {
        let (_, log) = recorded(3_000);
        let (rangers, mut grid) = synthetic::all_on();
        grid.slot.order_size_usd *= rust_decimal::Decimal::TWO;
        let mut other =
            crate::engine_strategies(rangers, grid, "DOGEUSD", START_MS).unwrap_or_default();
        let Err(m) = replay(&mut other, &log, true) else {
            panic!("a replay on other strategies matched");
        };
        assert!(m.at < log.len());
        assert!(!m.to_string().is_empty());
    }
}
