//! The shape every strategy has: a pure reducer over its own state.
//!
//! A strategy never does I/O and never reads a clock. The engine hands it
//! market ticks and order updates with the current time, and it answers with
//! [`Action`]s, which the execution layer turns into gateway calls; what the
//! gateway says comes back as further [`OrderUpdate`]s. Tests drive a
//! strategy with any sequence of inputs and any time they like.

pub use herd_types::{Instrument, InstrumentKind, Side};
use rust_decimal::Decimal;
use serde::Serialize;

/// An order a strategy wants placed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OrderIntent {
    /// Chosen by the strategy, unique for the engine's whole life (strategies
    /// build it from [`IdGen`]).
    pub client_order_id: String,
    pub symbol: String,
    pub side: Side,
    pub volume: Decimal,
    /// Limit price; `None` for a market order.
    pub price: Option<Decimal>,
    pub post_only: bool,
    /// Offset inside the engine's userref range (0 = the range's start).
    pub userref_offset: i32,
}

/// What a strategy asks the execution layer to do.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Action {
    Place(OrderIntent),
    Cancel {
        client_order_id: String,
    },
    /// Append a record to the strategy's journal in the store (completed
    /// cycles, orphans): the reducer stays pure, the execution layer writes.
    Journal {
        stream: String,
        kind: String,
        payload_json: String,
    },
}

/// What happened to an order, as the gateway reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UpdateKind {
    Open,
    PartialFill,
    Filled,
    Canceled,
    Expired,
    Rejected,
    /// The gateway refused the order outright (bad request, no funds).
    PlaceFailed,
    /// A cancel the strategy asked for failed (the order may still be open).
    CancelFailed,
}

/// One order update.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OrderUpdate {
    pub client_order_id: String,
    pub kind: UpdateKind,
    pub volume_executed: Decimal,
    pub average_price: Option<Decimal>,
    /// For fills: this event's volume, price and fee.
    pub fill_volume: Decimal,
    pub fill_price: Decimal,
    pub fill_fee: Decimal,
    pub fee_asset: String,
    /// For failures: why.
    pub message: String,
}

/// The market regime as gates read it. Not ready means "not RANGING".
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RegimeView {
    /// "BEARISH", "RANGING", "BULLISH" or "UNKNOWN".
    pub regime: String,
    pub ready: bool,
    pub confidence: f64,
    pub bias: f64,
}

impl RegimeView {
    /// `*self = src.clone()`, reusing this view's string. Every field is
    /// named, so a new field must be copied here.
    pub fn copy_from(&mut self, src: &RegimeView) {
        let RegimeView {
            regime,
            ready,
            confidence,
            bias,
        } = src;
        self.regime.clone_from(regime);
        self.ready = *ready;
        self.confidence = *confidence;
        self.bias = *bias;
    }

    pub fn not_ready() -> RegimeView {
        RegimeView {
            regime: "UNKNOWN".into(),
            ready: false,
            confidence: 0.0,
            bias: 0.0,
        }
    }

    /// True only for a ready detector that says RANGING (gates fail closed).
    pub fn is_ranging(&self) -> bool {
        self.ready && self.regime == "RANGING"
    }
}

/// What the engine knows about the market at a tick. Anything it could not
/// learn is `None`; strategies treat a missing value as a failed gate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MarketView {
    pub symbol: String,
    pub last: Decimal,
    pub bid: Decimal,
    pub ask: Decimal,
    pub instrument: Option<Instrument>,
    /// Free balances of the instrument's base and quote.
    pub free_base: Option<Decimal>,
    pub free_quote: Option<Decimal>,
    /// Open orders on the pair across the whole key.
    pub open_orders_on_pair: Option<u32>,
    pub regime: RegimeView,
    /// When the free balances were requested (unix ms, 0 = never): orders
    /// acknowledged before this are already excluded from them.
    pub balances_as_of_ms: i64,
    /// The last time one of the engine's orders was cancelled after a
    /// partial fill (the capacity band's canary).
    pub last_partial_cancel_ms: Option<i64>,
}

impl MarketView {
    /// A view with only prices (tests and simple strategies).
    pub fn prices(symbol: &str, last: Decimal, bid: Decimal, ask: Decimal) -> MarketView {
        MarketView {
            symbol: symbol.to_string(),
            last,
            bid,
            ask,
            instrument: None,
            free_base: None,
            free_quote: None,
            open_orders_on_pair: None,
            regime: RegimeView::not_ready(),
            balances_as_of_ms: 0,
            last_partial_cancel_ms: None,
        }
    }
}

/// `out.extend(more)`, without the iterator an empty `more` would still
/// build and drop (most of a tick's parts return nothing), and moving
/// `more` in whole when `out` is empty. The same actions in the same order.
pub fn append_actions(out: &mut Vec<Action>, more: Vec<Action>) {
    if more.is_empty() {
        return;
    }
    if out.is_empty() {
        *out = more;
    } else {
        out.extend(more);
    }
}

/// Keeps a copy of `src` in `dst` as `*dst = Some(src.clone())` would,
/// reusing what `dst` already holds: strings are copied into their
/// buffers and an unchanged instrument is left as it is (a strategy keeps
/// the view of every tick; cloning allocated five strings each time).
/// True when the instrument kept was already the one held (to the
/// Decimals' scales; never for a first view).
pub fn keep_view(dst: &mut Option<MarketView>, src: &MarketView) -> bool {
    let Some(d) = dst else {
        *dst = Some(src.clone());
        return false;
    };
    let MarketView {
        symbol,
        last,
        bid,
        ask,
        instrument,
        free_base,
        free_quote,
        open_orders_on_pair,
        regime,
        balances_as_of_ms,
        last_partial_cancel_ms,
    } = src;
    d.symbol.clone_from(symbol);
    d.last = *last;
    d.bid = *bid;
    d.ask = *ask;
    let same = keep_instrument(&mut d.instrument, instrument);
    d.free_base = *free_base;
    d.free_quote = *free_quote;
    d.open_orders_on_pair = *open_orders_on_pair;
    d.regime.copy_from(regime);
    d.balances_as_of_ms = *balances_as_of_ms;
    d.last_partial_cancel_ms = *last_partial_cancel_ms;
    same
}

/// Copies into `dst` the fields of `src` that a quiet tick's view may
/// change (prices, balances and counts, their times): its symbol,
/// instrument and regime stay (see [`Strategy::on_quiet_tick`]). Every
/// field is named, so a new one must be placed here.
pub fn keep_view_scalars(dst: &mut MarketView, src: &MarketView) {
    let MarketView {
        symbol: _,
        last,
        bid,
        ask,
        instrument: _,
        free_base,
        free_quote,
        open_orders_on_pair,
        regime: _,
        balances_as_of_ms,
        last_partial_cancel_ms,
    } = src;
    dst.last = *last;
    dst.bid = *bid;
    dst.ask = *ask;
    dst.free_base = *free_base;
    dst.free_quote = *free_quote;
    dst.open_orders_on_pair = *open_orders_on_pair;
    dst.balances_as_of_ms = *balances_as_of_ms;
    dst.last_partial_cancel_ms = *last_partial_cancel_ms;
}

/// `*dst = src.clone()`, without cloning when they are already the same
/// (to the Decimals' scales: a kept `0.0025` is not replaced by `0.00250`);
/// whether they were.
pub fn keep_instrument(dst: &mut Option<Instrument>, src: &Option<Instrument>) -> bool {
    let same = match (dst.as_ref(), src.as_ref()) {
        (None, None) => true,
        (Some(d), Some(s)) => identical_instrument(d, s),
        _ => false,
    };
    if !same {
        dst.clone_from(src);
    }
    same
}

fn identical_instrument(a: &Instrument, b: &Instrument) -> bool {
    let exact = |x: &Decimal, y: &Decimal| x.serialize() == y.serialize();
    let Instrument {
        symbol,
        base,
        quote,
        kind,
        tick_size,
        price_decimals,
        lot_decimals,
        min_volume,
        min_cost,
        maker_fee,
        taker_fee,
        max_open_orders,
    } = b;
    a.symbol == *symbol
        && a.base == *base
        && a.quote == *quote
        && a.kind == *kind
        && exact(&a.tick_size, tick_size)
        && a.price_decimals == *price_decimals
        && a.lot_decimals == *lot_decimals
        && exact(&a.min_volume, min_volume)
        && exact(&a.min_cost, min_cost)
        && exact(&a.maker_fee, maker_fee)
        && exact(&a.taker_fee, taker_fee)
        && a.max_open_orders == *max_open_orders
}

/// When a strategy next needs a tick ([`Strategy::wake`]).
///
/// `Quiet` promises: while nothing but the last price, bid, ask,
/// `balances_as_of_ms` and the time differs from the market view of the
/// strategy's last tick, and no other call (order update, command,
/// reconfigure, enable) reached it since, every tick at a time before
/// `before_ms` with a last price strictly inside `(above, below)` (each
/// bound optional) returns no actions, and a run of such ticks leaves the
/// strategy in the state the last of them alone would leave it in (each
/// such tick overwrites what it stores: the market view, capacity reading,
/// status texts). A driver that skips such ticks must therefore replay the
/// last skipped one before the strategy's next call of any kind, so that
/// its state is exactly the one an unskipped run would have; it replays it
/// with [`Strategy::on_quiet_tick`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// Tick me every time (the default: no promise).
    EveryTick,
    /// Nothing to do before `before_ms` while the last price stays strictly
    /// inside `(above, below)`.
    Quiet {
        before_ms: Option<i64>,
        above: Option<Decimal>,
        below: Option<Decimal>,
    },
}

impl Wake {
    /// A promise bound by nothing (until something else changes).
    pub const IDLE: Wake = Wake::Quiet {
        before_ms: None,
        above: None,
        below: None,
    };

    /// Whether a tick at `now_ms` with last price `last` is inside the
    /// promise (and may be skipped).
    pub fn holds(&self, last: Decimal, now_ms: i64) -> bool {
        match *self {
            Wake::EveryTick => false,
            Wake::Quiet {
                before_ms,
                above,
                below,
            } => {
                before_ms.is_none_or(|t| now_ms < t)
                    && above.is_none_or(|lo| last > lo)
                    && below.is_none_or(|hi| last < hi)
            }
        }
    }

    /// Both promises at once: the earlier time, the narrower band.
    pub fn and(self, other: Wake) -> Wake {
        match (self, other) {
            (
                Wake::Quiet {
                    before_ms: t1,
                    above: a1,
                    below: b1,
                },
                Wake::Quiet {
                    before_ms: t2,
                    above: a2,
                    below: b2,
                },
            ) => Wake::Quiet {
                before_ms: min_opt(t1, t2),
                above: match (a1, a2) {
                    (Some(x), Some(y)) => Some(x.max(y)),
                    (x, y) => x.or(y),
                },
                below: match (b1, b2) {
                    (Some(x), Some(y)) => Some(x.min(y)),
                    (x, y) => x.or(y),
                },
            },
            _ => Wake::EveryTick,
        }
    }

    /// `self` with a time bound `t` added.
    pub fn before(self, t: i64) -> Wake {
        self.and(Wake::Quiet {
            before_ms: Some(t),
            above: None,
            below: None,
        })
    }

    /// `self` with a price band `(lo, hi)` added.
    pub fn inside(self, lo: Option<Decimal>, hi: Option<Decimal>) -> Wake {
        self.and(Wake::Quiet {
            before_ms: None,
            above: lo,
            below: hi,
        })
    }
}

fn min_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    }
}

/// Run ids count seconds from 2025-01-01T00:00:00Z (six base-36 digits last
/// until 2094).
const RUN_EPOCH_S: i64 = 1_735_689_600;
/// Run ids are always this many base-36 digits, so `run + counter` parses
/// one way only.
const RUN_DIGITS: usize = 6;
/// The counter stays within three base-36 digits: at 36^3 the run id moves
/// on by one second and the counter starts again.
const COUNTER_LIMIT: u64 = 36 * 36 * 36;
/// 36^6: run ids wrap around after 69 years (and times before the epoch,
/// as in tests, wrap into range instead of colliding at zero).
const RUN_SPACE: i64 = 2_176_782_336;

/// Builds client order ids unique across engine restarts: `tag-RRRRRRc..`,
/// a per-run id (the run's start second, six base-36 digits) and a counter
/// of at most three digits. A grid id with the gateway's engine prefix
/// (`e0-g3ae-` + 9) is 17 characters, inside Kraken's 18-character
/// `cl_ord_id`.
///
/// Uniqueness across runs: the engine starts each run in a fresh wall-clock
/// second (the engine's `clock::fresh_run_start_ms`), and a counter rollover moves the run id
/// on by one second per 46,656 orders, far slower than the clock moves at
/// any venue's rate limits, so a later run never reuses an earlier run's id.
/// An id's place in its generator's sequence (see [`IdGen::take`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdTicket {
    run: u64,
    next: u64,
}

#[derive(Debug, Clone)]
pub struct IdGen {
    run: u64,
    next: u64,
}

impl IdGen {
    pub fn new(run_start_ms: i64) -> IdGen {
        let secs = (run_start_ms.div_euclid(1000) - RUN_EPOCH_S).rem_euclid(RUN_SPACE);
        IdGen {
            run: u64::try_from(secs).unwrap_or(0),
            next: 0,
        }
    }

    /// `tag` names the owner ("m" manual, "r0e" ranger 0's entry, ...).
    pub fn next(&mut self, tag: &str) -> String {
        let ticket = self.take();
        IdGen::write(tag, ticket)
    }

    /// The next id's counter, taken (the id written later, or never, by
    /// [`IdGen::write`]): what [`IdGen::next`] takes.
    pub fn take(&mut self) -> IdTicket {
        self.next += 1;
        if self.next >= COUNTER_LIMIT {
            self.run = (self.run + 1) % RUN_SPACE.unsigned_abs();
            self.next = 1;
        }
        IdTicket {
            run: self.run,
            next: self.next,
        }
    }

    /// The id of `ticket` for `tag`: `{tag}-{run}{next}`, the run in six
    /// base-36 digits.
    pub fn write(tag: &str, ticket: IdTicket) -> String {
        // `format!("{tag}-{:0>6}{}", base36(run), base36(next))`, written
        // into one buffer.
        let (run, run_len) = base36_digits(ticket.run);
        let (next, next_len) = base36_digits(ticket.next);
        let run = run.get(run.len() - run_len..).unwrap_or_default();
        let next = next.get(next.len() - next_len..).unwrap_or_default();
        let mut id = String::with_capacity(tag.len() + 1 + RUN_DIGITS.max(run_len) + next_len);
        id.push_str(tag);
        id.push('-');
        for _ in run_len..RUN_DIGITS {
            id.push('0');
        }
        id.extend(run.iter().map(|&b| char::from(b)));
        id.extend(next.iter().map(|&b| char::from(b)));
        id
    }
}

/// The base-36 digits of `n` at the end of a buffer, and how many there
/// are (at least one; 13 hold any u64).
fn base36_digits(mut n: u64) -> ([u8; 13], usize) {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut buf = [b'0'; 13];
    let mut len = 0;
    loop {
        len += 1;
        if let Some(d) = buf.get_mut(13 - len) {
            *d = DIGITS[(n % 36) as usize];
        }
        n /= 36;
        if n == 0 {
            break;
        }
    }
    (buf, len)
}

/// `n` in base 36 (the tests' reference for [`base36_digits`]).
#[cfg(test)]
fn base36(mut n: u64) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

/// Why a strategy refused an operator command: the control server answers
/// NOT_FOUND for the first, FAILED_PRECONDITION for the second.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// The command names something the strategy does not have (a churner
    /// or position id).
    #[error("{0}")]
    NotFound(String),
    /// The strategy cannot do it now; the message says why.
    #[error("{0}")]
    Refused(String),
}

impl From<String> for CommandError {
    fn from(message: String) -> CommandError {
        CommandError::Refused(message)
    }
}

impl From<&str> for CommandError {
    fn from(message: &str) -> CommandError {
        CommandError::Refused(message.to_string())
    }
}

/// An operator command for a strategy (the control RPCs beyond on/off).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    SpawnChurner,
    KillChurner {
        churner_id: u32,
    },
    /// Reprice a position's exit to break-even, paid from its slot's subsidy.
    RepriceBreakEven {
        position_id: String,
    },
    /// Cancel a position's exit and close it with a market order (the old
    /// exit comes back if the market order fails).
    CloseAtMarket {
        position_id: String,
    },
    /// Leave a position alone (no self-healing) for `hours`.
    KeepHolding {
        position_id: String,
        hours: u32,
    },
}

/// One row of a strategy's journal, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalRow {
    pub kind: String,
    pub payload: String,
    pub time_ms: i64,
}

/// An order as the engine's store last recorded it (startup reconcile).
#[derive(Debug, Clone, PartialEq)]
pub struct KnownOrder {
    pub client_order_id: String,
    /// "pending", "open", "filled", "canceled", "expired", "rejected".
    pub status: String,
    pub volume_executed: Decimal,
    pub average_price: Decimal,
    pub fee: Decimal,
    pub fee_asset: String,
    /// True when the venue lists it open right now.
    pub open_at_venue: bool,
}

/// One of the engine's open orders at the venue, as start-up work sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenOrderRef {
    pub client_order_id: String,
    pub symbol: String,
    pub userref: i32,
}

/// An open position a strategy holds and the order it relies on (its exit),
/// for the engine's reconcile step: a position whose order the venue does
/// not have is surfaced (docs/reconcile.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PositionOrderRef {
    pub position_id: String,
    pub client_order_id: String,
}

/// A strategy's status, typed: the engine's status view turns each block
/// into its GetStatus message, and the detail JSON is this block serialized.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum StatusBlock {
    Rangers(Box<crate::rangers::RangersStatusBlock>),
    Grid(Box<crate::grid::strategy::GridStatusBlock>),
    /// A strategy with no message of its own in GetStatus (its detail only).
    Detail(serde_json::Value),
}

impl StatusBlock {
    /// The block as JSON (GetStatus's `detail_json`).
    pub fn detail_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "null".to_string())
    }
}

/// The engine configuration's strategy sections, as a reload hands them to
/// [`Strategy::reconfigure`]: each strategy takes its own.
#[derive(Debug, Clone, Copy)]
pub struct Params<'a> {
    pub rangers: &'a crate::rangers::RangerConfig,
    pub grid: &'a crate::grid::GridConfig,
}

/// A strategy: a reducer over its own state.
pub trait Strategy: Send {
    /// Short name, also the owner recorded with its orders.
    fn name(&self) -> &str;

    /// True when `client_order_id` belongs to this strategy.
    fn owns(&self, client_order_id: &str) -> bool;

    /// A new market view and the current time (timers live here).
    fn on_tick(&mut self, market: &MarketView, now_ms: i64) -> Vec<Action>;

    /// When the strategy next needs a tick, read after its last tick (see
    /// [`Wake`] for the promise). The default never promises anything. The
    /// live engine ticks every time and ignores it; the backtest skips the
    /// ticks a promise covers.
    fn wake(&self) -> Wake {
        Wake::EveryTick
    }

    /// A tick that the promise of the last [`Strategy::wake`] covers (read
    /// after the strategy's last tick, no other call since, the view
    /// differing from that tick's only where the promise allows): it must
    /// leave the state [`Strategy::on_tick`] would and return what it would
    /// (nothing, by the promise). A driver that skipped ticks replays the
    /// last with it. The default is `on_tick`; a strategy may store only
    /// what such a tick stores, without deciding anything again.
    fn on_quiet_tick(&mut self, market: &MarketView, now_ms: i64) -> Vec<Action> {
        self.on_tick(market, now_ms)
    }

    /// Tells the strategy which journal kinds its caller keeps: rows of
    /// other kinds may be left out of its answers instead of built (the
    /// backtest keeps a few kinds of a year's millions of rows). Only the
    /// rows change: the strategy's state and every other action stay the
    /// same. The default, and the live engine, which never calls it: every
    /// row, as before.
    fn set_journal_filter(&mut self, _keep: fn(&str) -> bool) {}

    /// An update to one of the strategy's orders.
    fn on_order(&mut self, update: &OrderUpdate, now_ms: i64) -> Vec<Action>;

    /// The strategy's typed status block, always present even when disabled.
    fn status(&self, now_ms: i64) -> StatusBlock;

    fn enabled(&self) -> bool;

    /// Turns the strategy on or off at runtime; the actions wind down what
    /// it has open. `None`: this strategy cannot be toggled.
    fn set_enabled(&mut self, _enabled: bool, _now_ms: i64) -> Option<Vec<Action>> {
        None
    }

    /// Start-up cleanup, before restore and the first tick: the client ids
    /// of open orders (`open`: the engine's open orders at the venue) that a
    /// previous run of this strategy left and that should be cancelled.
    /// `userref_min` is the start of the engine's userref range.
    fn stale_orders(&self, _open: &[OpenOrderRef], _userref_min: i32) -> Vec<String> {
        Vec::new()
    }

    /// Why the engine's userref range cannot hold this strategy's orders,
    /// if it cannot (logged as an error at start).
    fn userref_range_problem(&self, _userref_min: i32, _userref_max: i32) -> Option<String> {
        None
    }

    /// The open positions this strategy holds and the order each relies on
    /// (the reconcile step reports those whose order is gone).
    fn position_orders(&self) -> Vec<PositionOrderRef> {
        Vec::new()
    }

    /// The journal stream whose rows [`Strategy::restore`] receives.
    fn journal_stream(&self) -> Option<&str> {
        None
    }

    /// Called once at startup, before the first tick, with the strategy's
    /// journal and what the store and the venue know about its orders
    /// (`known`: every order the store has for this strategy). Rebuilds
    /// state that must survive a restart and reconciles it.
    fn restore(
        &mut self,
        _journal: &[JournalRow],
        _known: &[KnownOrder],
        _now_ms: i64,
    ) -> Vec<Action> {
        Vec::new()
    }

    /// New parameters from a configuration reload (docs/config.md),
    /// validated, with the fields that shape the strategy's state (slot
    /// counts, userref offsets, sticky slots) as they were: those are
    /// restart-only. The strategy keeps every order, position and ledger
    /// entry and applies the new values from its next decision on. The
    /// actions run as any other (a switch turned off winds down, as
    /// [`Strategy::set_enabled`] does).
    fn reconfigure(&mut self, _params: &Params<'_>, _now_ms: i64) -> Vec<Action> {
        Vec::new()
    }

    /// An operator command. `None`: not this strategy's; `Some(Err)`: refused
    /// (the error says why); `Some(Ok)`: the reply and the actions to run.
    fn command(
        &mut self,
        _cmd: &Command,
        _now_ms: i64,
    ) -> Option<Result<(String, Vec<Action>), CommandError>> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `keep_view` leaves what a clone leaves, whatever was kept before; an
    /// instrument equal in value but not in scale is replaced.
    #[test]
    fn keep_view_is_a_clone() {
        let inst = |fee: Decimal| Instrument {
            maker_fee: fee,
            taker_fee: Decimal::new(4, 3),
            ..Instrument::kraken_doge_usd()
        };
        let mut a = MarketView::prices("DOGEUSD", Decimal::ONE, Decimal::ONE, Decimal::TWO);
        a.instrument = Some(inst(Decimal::new(25, 4)));
        a.free_base = Some(Decimal::TEN);
        a.regime = RegimeView {
            regime: "RANGING".into(),
            ready: true,
            confidence: 0.5,
            bias: -0.1,
        };
        a.balances_as_of_ms = 7;
        a.last_partial_cancel_ms = Some(3);
        let mut b = MarketView::prices("XBTUSD", Decimal::TWO, Decimal::ONE, Decimal::TEN);
        b.instrument = Some(inst(Decimal::new(250, 5)));
        // (kept before, whether its instrument is a's to the scale)
        for (start, same) in [
            (None, false),
            (Some(b.clone()), false),
            (Some(a.clone()), true),
        ] {
            let mut kept = start;
            assert_eq!(keep_view(&mut kept, &a), same);
            assert_eq!(kept, Some(a.clone()));
            let fee = kept
                .and_then(|k| k.instrument)
                .map(|i| i.maker_fee.to_string());
            assert_eq!(fee.as_deref(), Some("0.0025"));
        }
        let mut kept = Some(a.clone());
        assert!(!keep_view(&mut kept, &b));
        assert_eq!(kept, Some(b.clone()));
        let fee = kept
            .and_then(|k| k.instrument)
            .map(|i| i.maker_fee.to_string());
        assert_eq!(fee.as_deref(), Some("0.00250"));
    }

    /// Ids are the `format!` of the base-36 run (zero-padded to six
    /// digits) and counter they were before being written into one buffer.
    #[test]
    fn ids_are_the_padded_run_and_the_counter() {
        for start in [
            0,
            1_735_689_600_000,
            1_800_000_000_000,
            i64::MAX / 2,
            -5_000,
        ] {
            let mut g = IdGen::new(start);
            for _ in 0..(COUNTER_LIMIT + 3) {
                let (run, next) = (g.run, g.next + 1);
                let id = g.next("g12ax");
                let (run, next) = if next >= COUNTER_LIMIT {
                    ((run + 1) % RUN_SPACE.unsigned_abs(), 1)
                } else {
                    (run, next)
                };
                let want = format!(
                    "g12ax-{:0>width$}{}",
                    base36(run),
                    base36(next),
                    width = RUN_DIGITS
                );
                assert_eq!(id, want);
            }
        }
        for n in [0, 1, 35, 36, u64::MAX] {
            let (buf, len) = base36_digits(n);
            assert_eq!(&buf[13 - len..], base36(n).as_bytes());
        }
    }

    #[test]
    fn ids_are_unique_across_runs_and_fit_kraken_with_the_prefix() {
        // Runs one second apart, as fresh_run_start_ms guarantees.
        let mut a = IdGen::new(1_800_000_000_000);
        let mut b = IdGen::new(1_800_000_001_000);
        let ids: std::collections::HashSet<String> = (0..1000)
            .flat_map(|_| [a.next("g9ae"), b.next("g9ae")])
            .collect();
        assert_eq!(ids.len(), 2000);
        for id in &ids {
            let venue_id = format!("e0-{id}");
            assert!(venue_id.len() <= 18, "{venue_id} exceeds Kraken's 18");
        }
        assert_eq!(base36(35), "z");
        assert_eq!(base36(36), "10");
    }

    #[test]
    fn counter_rollover_moves_the_run_on_and_stays_unique() {
        let mut a = IdGen::new(1_800_000_000_000);
        let mut seen = std::collections::HashSet::new();
        let mut longest = 0;
        for _ in 0..(2 * COUNTER_LIMIT + 10) {
            let id = a.next("r0e");
            longest = longest.max(id.len());
            assert!(seen.insert(id.clone()), "duplicate {id}");
        }
        // "r0e-" + 6 + at most 3 digits.
        assert_eq!(longest, 4 + 6 + 3);
        // The run after the rollover is the next second's: a run started two
        // seconds later does not collide with the first 2 * 36^3 orders.
        let mut later = IdGen::new(1_800_000_003_000);
        for _ in 0..1000 {
            assert!(!seen.contains(&later.next("r0e")));
        }
    }
}
