//! The grid as a [`Strategy`]: slots, the position ledger, self-healing and
//! the churners behind one reducer the engine drives.
//!
//! On each tick the grid reads capacity ([`crate::capacity`], shared with
//! the rangers), decides whether new entries are allowed (grid enabled, no
//! daily loss lock, capacity band not "stop", at most `entries_allowed` new
//! entries per loop across all slots), runs every slot's transition, then
//! self-healing, then the churners. Every ledger change becomes a journal
//! record (stream `grid`) as it is applied, so the ledger rebuilt by
//! [`Strategy::restore`] after a restart is the one the engine had.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::config::{GridConfig, SlotMode};
use super::heal::{self, Band};
use super::ledger::{Entry, ExitIntent, Ledger, LedgerEvent, Outcome, Position, PositionMode};
use super::slot::{
    self, CycleKind, CycleRecord, Filters, Role, SlotAction, SlotCtx, SlotEvent, SlotOrder,
    SlotState, Trade,
};
use super::{JOURNAL_STREAM, STRATEGY_NAME, hundred, money};
use crate::capacity::{self, Band as CapBand, CapacityHealth};
use crate::capital::{Asset, CapitalError, CapitalLedger, FreeBalance};
use crate::churner::{self, ChurnAction, ChurnEnv, Churner, GateInput, ParentCandidate, Refusal};
use crate::strategy::{
    Action, Command, CommandError, Instrument, JournalRow, KnownOrder, MarketView, OrderIntent,
    OrderUpdate, Side, StatusBlock, Strategy, UpdateKind, Wake,
};

const DAY_MS: i64 = 86_400_000;
/// How long after a refused restore cancel the grid asks again.
const RESTART_CANCEL_RETRY_MS: i64 = 5_000;
/// Self-healing moves per tick, at most (bounded venue traffic).
const HEAL_MOVES_PER_TICK: usize = 2;

/// The grid strategy.
#[derive(Debug, Clone)]
pub struct Grid {
    cfg: GridConfig,
    symbol: String,
    enabled: bool,
    run_start_ms: i64,
    slots: Vec<SlotState>,
    ledger: Ledger,
    churners: Vec<Churner>,
    next_churner_id: u32,
    /// Subsidy promised to reprices the venue has not confirmed yet, by the
    /// exit order being replaced: (slot, cost).
    pending_costs: BTreeMap<String, (u32, Decimal)>,
    /// Funds promised to the grid's and churners' orders (shared rules:
    /// reserve entries before placing, hold exits, commit on the venue's
    /// acknowledgement, release when the order is done or refused).
    capital: CapitalLedger,
    market: Option<MarketView>,
    instrument: Option<Instrument>,
    capacity: Option<CapacityHealth>,
    day: i64,
    realized_today: Decimal,
    churn_cycles_today: u32,
    churn_profit_today: Decimal,
    churn_cycles_total: u64,
    churn_profit_total: Decimal,
    settled_usd: Decimal,
    restored: bool,
    /// Entries that filled while the engine was down, found at restore.
    filled_while_down: Vec<KnownOrder>,
    /// Orders a previous run left open that restore cancels, with when to
    /// ask again after a refused cancel (`None`: a cancel is in flight).
    /// Kept until the order's final event, so a cancel refused by a lockout
    /// or a dropped connection is retried instead of leaving an order no
    /// slot owns (found by the chaos soak).
    restart_cancels: BTreeMap<String, Option<i64>>,
    /// Recent prices for the volatility-adjusted profit.
    prices: VecDeque<(i64, Decimal)>,
    /// The time of the last tick (what [`Strategy::wake`] reads from).
    ticked_ms: i64,
    /// The journal kinds the caller keeps ([`Strategy::set_journal_filter`];
    /// `None`: every row).
    journal_keep: Option<fn(&str) -> bool>,
    /// Per slot: whether its state is one a transition returned not halted
    /// and nothing changed since (only `step_slot` and `adopt_exit` change a
    /// slot), so its invariants need no check before the next transition
    /// or wake read.
    verified: Vec<bool>,
    /// Per slot: the wake its last price tick left when that tick's
    /// transition returned no actions, kept while nothing else touched the
    /// slot (any other transition or adoption drops it). A later price tick
    /// it holds for, with the same entry gates and no entry due, is the same
    /// quiet tick again: it only stores the price ([`Grid::skip_quiet_slot`]).
    quiet_slots: Vec<Option<QuietSlot>>,
    /// Whether price ticks may skip quiet slots (on; the tests compare a
    /// grid with it off).
    skip_quiet: bool,
    /// Whether a slot's price tick may only place its entries when nothing
    /// else of it is due ([`Grid::entry_retry_of`]; on: the tests compare
    /// a grid with it off), and how often it did (tests).
    entry_retry: bool,
    /// Refused entry retries whose slot wake was read from the kept wake
    /// of its other parts (tests).
    kept_others: u64,
    entry_retries: u64,
    /// Whether self-healing may find nothing to move from the inputs kept
    /// for its wake ([`Grid::nothing_to_heal`]; on: the tests compare a
    /// grid with it off).
    heal_from_kept: bool,
    /// Slot price ticks skipped that way (tests).
    quiet_skips: u64,
    /// Wakes kept by ticks whose entries were all refused (tests read it).
    refused_wakes: u64,
    /// Whether a slot transition asks the capital ledger before an entry
    /// goes out (`slot::transition_checked`; on: the tests compare a grid
    /// with it off, which places the entries and takes the refusals after).
    precheck: bool,
    /// Entries refused that way (tests), and of those, refused on the f64
    /// screen (their amounts not computed).
    prechecked: u64,
    prechecked_lazy: u64,
    /// The order `translate` is handed is an entry the slot checked
    /// against the ledger (`slot::Checked::accepted`).
    entry_checked: bool,
    /// The daily loss gates last read, with the limit and realized loss
    /// they were read from ([`Grid::loss`]).
    loss_read: LossRead,
    /// Bumped by everything that may change what self-healing's wake reads
    /// from the positions, the slots' exits, the subsidies and the config
    /// ([`Grid::touch_heal`]).
    heal_gen: u64,
    /// Self-healing's wake inputs as read at `heal_gen` ([`HealInputs`]).
    heal_inputs: RefCell<HealInputs>,
}

/// What self-healing's wake reads from the grid apart from the price and
/// the time: per open non-churner position, its exit and timers; the
/// heal knobs as f64. Kept while [`Grid::heal_gen`] stays (the wake is
/// read at every tick and after every order update, the positions change
/// far less often).
#[derive(Debug, Clone, Default)]
struct HealInputs {
    /// `heal_gen` it was read at (`None`: never read).
    read_at: Option<u64>,
    items: Vec<HealItem>,
    /// `distance_divisor`, `stale_hours`, `stuck_hours` as `approx_f64`.
    div: f64,
    stale: f64,
    stuck: f64,
    /// Times it was read afresh (tests).
    reads: u64,
    /// The price band the wake's healing bounds are read over (see
    /// [`HealBand`]).
    band: Option<HealBand>,
    /// Wakes that took the band's kept bound (tests).
    bound_kept: u64,
}

/// The price band self-healing's wake reads its positions over: 1 %
/// either side of the last price it was taken at, kept while the last
/// price stays within 0.5 % of that one (a bounded distance either way,
/// the same band for a run of wakes), with the time bound the positions
/// gave over it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct HealBand {
    /// The last price it was taken at (`approx_f64`).
    at: f64,
    lo: Decimal,
    hi: Decimal,
    lo_f: f64,
    hi_f: f64,
    kept: Option<KeptBound>,
}

/// The positions' time bound over a [`HealBand`], read at `from_ms` with
/// inputs of `heal_gen` `generation`: the same at any time from then until
/// the bound (every branch the reading takes is decided by a time it
/// bounds by, or by the inputs), `None` being no bound.
#[derive(Debug, Clone, Copy, PartialEq)]
struct KeptBound {
    generation: u64,
    from_ms: i64,
    before: Option<i64>,
}

impl HealBand {
    /// The band for `last`: `kept` while `last` is within 0.5 % of the
    /// price it was taken at, else a new one around `last`. `None` for a
    /// price that is not positive.
    fn for_last(kept: Option<HealBand>, last: Decimal) -> Option<HealBand> {
        let lf = heal::approx_f64(last);
        if !(lf > 0.0 && lf.is_finite()) {
            return None;
        }
        if let Some(b) = kept
            && (lf - b.at).abs() <= b.at * 0.005
        {
            return Some(b);
        }
        // 1 - 0.01 and 1 + 0.01 (scale 2).
        let (lo, hi) = (times_hundredths(last, 99), times_hundredths(last, 101));
        Some(HealBand {
            at: lf,
            lo,
            hi,
            lo_f: heal::approx_f64(lo),
            hi_f: heal::approx_f64(hi),
            kept: None,
        })
    }
}

/// One open non-churner position as [`Grid::heal_wake`] reads it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct HealItem {
    hold_until_ms: Option<i64>,
    /// Its exit is in a slot with no change pending and no retry due.
    live: bool,
    /// The exit price, `approx_f64`.
    exit: f64,
    entry_ms: i64,
    /// Its slot has subsidy to spend (`spendable > 0`).
    has_subsidy: bool,
    /// The end of the reprice cooldown after its last reprice.
    cooldown_end_ms: Option<i64>,
    tightened: bool,
}

/// The daily loss gates of one (limit, realized today) pair.
#[derive(Debug, Clone, Copy, PartialEq)]
struct LossRead {
    /// The limit and realized loss, exactly ([`exact`]): the same key,
    /// the same reading.
    key: (Exact, Exact),
    /// Realized today at or below minus a positive limit.
    locked: bool,
    /// No limit, or limit + realized above zero.
    room_left: bool,
    /// limit + realized under a positive limit (what a slot may still lose).
    room: Option<Decimal>,
}

impl LossRead {
    fn of(limit: Decimal, realized: Decimal) -> LossRead {
        LossRead {
            key: (exact(limit), exact(realized)),
            locked: realized <= -limit && limit > Decimal::ZERO,
            room_left: limit <= Decimal::ZERO || limit + realized > Decimal::ZERO,
            room: (limit > Decimal::ZERO).then(|| limit + realized),
        }
    }
}

/// A Decimal to the bit: its sixteen bytes (flags with scale and sign,
/// then the mantissa) as one number, so the loss gates' key compares in two
/// machine words (two keys a read, several reads a tick).
type Exact = u128;

fn exact(d: Decimal) -> Exact {
    u128::from_le_bytes(d.serialize())
}

/// A slot's kept wake (see `Grid::quiet_slots`).
#[derive(Debug, Clone, Copy, PartialEq)]
struct QuietSlot {
    /// The tick that left it.
    at_ms: i64,
    /// The entry gates it was read with ([`Grid::entries_open`]).
    entries_open: bool,
    wake: Wake,
    /// The wake of all but the slot's entries (every tick when the slot
    /// was not verified): where it holds, the slot's tick only places the
    /// entries due ([`SlotEvent::EntryRetry`]).
    other: Wake,
    /// The two wakes' price bands in f64 ([`holds_screened`]).
    wake_band: BandF,
    other_band: BandF,
}

/// A wake's price band read as `approx_f64` (unbounded: infinite; every
/// tick: empty).
#[derive(Debug, Clone, Copy, PartialEq)]
struct BandF {
    lo: f64,
    hi: f64,
}

impl BandF {
    fn of(w: Wake) -> BandF {
        match w {
            Wake::Quiet { above, below, .. } => BandF {
                lo: above.map_or(f64::NEG_INFINITY, heal::approx_f64),
                hi: below.map_or(f64::INFINITY, heal::approx_f64),
            },
            Wake::EveryTick => BandF {
                lo: f64::INFINITY,
                hi: f64::NEG_INFINITY,
            },
        }
    }
}

/// `w.holds(last, now)`, its price band (`band`, `BandF::of(w)`) screened
/// in f64 first with `lf` (`approx_f64(last)`): a relative margin of 1e-9,
/// far wider than the readings' few ulps, makes "certainly inside" and
/// "certainly outside" exact; only a price at an edge compares Decimals
/// (which rescale: the bands' scales are not the prices').
fn holds_screened(w: Wake, band: BandF, last: Decimal, lf: f64, now: i64) -> bool {
    let Wake::Quiet { before_ms, .. } = w else {
        return false;
    };
    if before_ms.is_some_and(|t| now >= t) {
        return false;
    }
    const M: f64 = 1e-9;
    let (lo, hi) = (band.lo, band.hi);
    let above_lo = lo == f64::NEG_INFINITY || lf > lo + lo.abs() * M;
    let below_hi = hi == f64::INFINITY || lf < hi - hi.abs() * M;
    if above_lo && below_hi && lf.is_finite() {
        return true;
    }
    let under_lo = lo.is_finite() && lf < lo - lo.abs() * M;
    let over_hi = hi.is_finite() && lf > hi + hi.abs() * M;
    if under_lo || over_hi {
        return false;
    }
    w.holds(last, now)
}

/// Counts of open positions per band.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BandCounts {
    pub fresh: u32,
    pub aging: u32,
    pub stale: u32,
    pub stuck: u32,
    pub write_off: u32,
}

/// One open order in status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderRow {
    pub client_order_id: String,
    pub trade: String,
    pub role: String,
    pub side: String,
    pub price: Option<Decimal>,
    pub volume: Decimal,
    pub age_sec: f64,
    pub distance_pct: Decimal,
    pub position_id: String,
    pub orphan_reason: String,
    pub pending: String,
}

/// One cycle in status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CycleRow {
    pub trade: String,
    pub kind: String,
    pub entry_price: Decimal,
    pub exit_price: Decimal,
    pub volume: Decimal,
    pub net: Decimal,
    pub time_ms: i64,
}

/// One slot in status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlotRow {
    pub id: u32,
    pub alias: String,
    pub sticky: bool,
    pub phase: String,
    pub halted: String,
    pub long_only: bool,
    pub short_only: bool,
    pub cycles_a: u32,
    pub cycles_b: u32,
    pub cycles: u64,
    pub profit: Decimal,
    pub order_size_usd: Decimal,
    pub orders: Vec<OrderRow>,
    pub recovery: Vec<OrderRow>,
    pub recent_cycles: Vec<CycleRow>,
    pub losses_a: u32,
    pub losses_b: u32,
    pub last_error: String,
}

/// A position in the self-healing block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PositionRow {
    pub position_id: String,
    pub slot_id: u32,
    pub trade: String,
    pub mode: String,
    pub entry_price: Decimal,
    pub exit_price: Decimal,
    pub volume: Decimal,
    pub age_hours: Decimal,
    pub effective_age_hours: Decimal,
    pub distance_pct: Decimal,
    pub band: String,
    pub exit_order_id: String,
    pub hold_until_ms: Option<i64>,
}

/// Subsidy of one slot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubsidyRow {
    pub slot_id: u32,
    pub balance: Decimal,
    pub earned: Decimal,
    pub consumed: Decimal,
    pub needed: Decimal,
}

/// One churner in status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChurnerRow {
    pub id: u32,
    pub stage: String,
    pub parent_position_id: String,
    pub parent_slot: Option<u32>,
    pub side: String,
    pub entry_price: Option<Decimal>,
    pub exit_price: Option<Decimal>,
    pub volume: Option<Decimal>,
    pub age_sec: f64,
    pub compound_usd: Decimal,
    pub cycles: u64,
    pub profit: Decimal,
    pub last_error: String,
}

/// The churner block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChurnerBlock {
    pub enabled: bool,
    pub active: u32,
    pub max: u32,
    pub reserve_available: Decimal,
    pub cycles_today: u32,
    pub profit_today: Decimal,
    pub cycles_total: u64,
    pub profit_total: Decimal,
    pub states: Vec<ChurnerRow>,
}

/// Self-healing status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealBlock {
    pub enabled: bool,
    pub subsidy: Vec<SubsidyRow>,
    pub bands: BandCounts,
    pub positions: Vec<PositionRow>,
    pub churner: ChurnerBlock,
}

/// The grid's status block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GridStatusBlock {
    pub enabled: bool,
    pub mode: String,
    /// The exit profit in force, percent (volatility may raise it).
    pub profit_pct: Decimal,
    pub slot_count: u32,
    pub total_profit: Decimal,
    pub total_settled_usd: Decimal,
    pub total_orphans: u64,
    pub daily_loss_lock: bool,
    pub daily_loss_limit_usd: Decimal,
    pub realized_today: Decimal,
    pub open_positions: u32,
    pub closed_positions: u32,
    pub realized_pnl: Decimal,
    pub ledger_conflicts: u64,
    pub slots: Vec<SlotRow>,
    pub capacity: Option<CapacityHealth>,
    pub self_healing: HealBlock,
    /// The capital ledger: funds promised to each working order (checked
    /// against the orders by the chaos soak).
    #[serde(default)]
    pub capital: CapitalLedger,
}

fn pct_dist(price: Option<Decimal>, market: Decimal) -> Decimal {
    match price {
        Some(p) if market > Decimal::ZERO => ((p - market).abs() / market * hundred()).round_dp(4),
        _ => Decimal::ZERO,
    }
}

fn age_sec(since: i64, now: i64) -> f64 {
    // Display only.
    (now - since).max(0) as f64 / 1000.0
}

impl Grid {
    pub fn new(cfg: GridConfig, symbol: &str, run_start_ms: i64) -> Grid {
        let slots = (0..cfg.slots)
            .map(|i| SlotState::new(i, cfg.sticky.contains(&i), cfg.mode, run_start_ms))
            .collect();
        Grid {
            enabled: cfg.enabled,
            symbol: symbol.to_string(),
            run_start_ms,
            slots,
            ledger: Ledger::new(),
            churners: Vec::new(),
            next_churner_id: 0,
            pending_costs: BTreeMap::new(),
            capital: CapitalLedger::new(),
            market: None,
            instrument: None,
            capacity: None,
            day: run_start_ms.div_euclid(DAY_MS),
            realized_today: Decimal::ZERO,
            churn_cycles_today: 0,
            churn_profit_today: Decimal::ZERO,
            churn_cycles_total: 0,
            churn_profit_total: Decimal::ZERO,
            settled_usd: Decimal::ZERO,
            restored: false,
            filled_while_down: Vec::new(),
            restart_cancels: BTreeMap::new(),
            prices: VecDeque::new(),
            ticked_ms: 0,
            journal_keep: None,
            verified: vec![false; usize::try_from(cfg.slots).unwrap_or(0)],
            quiet_slots: vec![None; usize::try_from(cfg.slots).unwrap_or(0)],
            skip_quiet: true,
            heal_from_kept: true,
            entry_retry: true,
            kept_others: 0,
            entry_retries: 0,
            quiet_skips: 0,
            refused_wakes: 0,
            precheck: true,
            prechecked: 0,
            prechecked_lazy: 0,
            entry_checked: false,
            loss_read: LossRead::of(cfg.daily_loss_limit_usd, Decimal::ZERO),
            heal_gen: 0,
            heal_inputs: RefCell::new(HealInputs::default()),
            cfg,
        }
    }

    /// The ledger (tests, status).
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    pub fn slots(&self) -> &[SlotState] {
        &self.slots
    }

    pub fn churners(&self) -> &[Churner] {
        &self.churners
    }

    fn filters(&self) -> Option<Filters> {
        let i = self.instrument.as_ref()?;
        Some(Filters {
            tick_size: i.tick_size,
            lot_decimals: i.lot_decimals,
            min_volume: i.min_volume,
            min_cost: i.min_cost,
            maker_fee: i.maker_fee,
        })
    }

    fn roll_day(&mut self, now: i64) {
        let day = now.div_euclid(DAY_MS);
        if day != self.day {
            self.day = day;
            self.realized_today = Decimal::ZERO;
            self.churn_cycles_today = 0;
            self.churn_profit_today = Decimal::ZERO;
        }
    }

    fn loss_locked(&self) -> bool {
        self.loss().locked
    }

    /// The daily loss gates now: the kept reading when the limit and the
    /// realized loss are the ones it was read from, else read afresh.
    fn loss(&self) -> LossRead {
        let (limit, realized) = (self.cfg.daily_loss_limit_usd, self.realized_today);
        if self.loss_read.key == (exact(limit), exact(realized)) {
            self.loss_read
        } else {
            LossRead::of(limit, realized)
        }
    }

    /// Keeps the gates' reading for the limit and realized loss now.
    fn keep_loss(&mut self) {
        self.loss_read = self.loss();
    }

    fn internal_open(&self) -> u32 {
        let slots: usize = self.slots.iter().map(SlotState::open_orders).sum();
        let churn: u32 = self.churners.iter().map(Churner::open_orders).sum();
        u32::try_from(slots).unwrap_or(u32::MAX) + churn
    }

    fn entries_blocked(&self) -> Option<String> {
        self.entries_blocked_by(self.loss_locked())
    }

    /// [`Grid::entries_blocked`] with the loss lock already read.
    fn entries_blocked_by(&self, loss_locked: bool) -> Option<String> {
        if self.enabled && !loss_locked && self.capacity_open() {
            return None;
        }
        if !self.enabled {
            return Some("grid disabled".into());
        }
        if loss_locked {
            return Some(format!(
                "daily loss lock: realized today {} <= -{}",
                money(self.realized_today),
                money(self.cfg.daily_loss_limit_usd)
            ));
        }
        match &self.capacity {
            None => Some("capacity unknown".into()),
            Some(c) if c.band == CapBand::Stop => Some(format!("capacity stop: {}", c.reason)),
            Some(_) => None,
        }
    }

    /// Whether [`Grid::entries_blocked`] names a reason (without writing
    /// it): the tests hold the two together.
    #[cfg(test)]
    fn entries_closed(&self) -> bool {
        !self.enabled || self.loss_locked() || !self.capacity_open()
    }

    /// Whether the grid's gates let an entry through with `budget` entries
    /// left this loop: what a slot's wake is read with.
    fn entries_open(&self, budget: u32) -> bool {
        budget > 0 && self.entry_gates_open()
    }

    /// [`Grid::entries_open`] without the budget: the grid's gates and the
    /// day's loss room (these change only with the grid's state, not from
    /// slot to slot unless a transition books something).
    fn entry_gates_open(&self) -> bool {
        let loss = self.loss();
        loss.room_left && !loss.locked && self.enabled && self.capacity_open()
    }

    fn capacity_open(&self) -> bool {
        self.capacity
            .as_ref()
            .is_some_and(|c| c.band != CapBand::Stop)
    }

    /// A slot's wake as [`Grid::quiet`] reads it.
    fn slot_wake(&self, i: usize, now: i64, entries_open: bool) -> Wake {
        let s = &self.slots[i];
        if self.verified.get(i).copied().unwrap_or(false) {
            slot::wake_verified(s, now, &self.cfg.slot, entries_open)
        } else {
            slot::wake(s, now, &self.cfg.slot, entries_open)
        }
    }

    /// Whether slot `i`'s price tick at `market`, `now` is the quiet tick its
    /// last one was: the wake that tick left holds and no trade is due an
    /// entry. Then the tick would only store the price, so this does that
    /// and returns true.
    ///
    /// The entry gates need not read as they did: [`slot::wake`] reads them
    /// only for a trade due an entry at the wake's time, and a trade not due
    /// now was not due then (the slot's orders and timers are the ones that
    /// tick left); a tick reads them only for a due trade too (where a
    /// blocked entry rewrites `last_error`).
    fn skip_quiet_slot(&mut self, i: usize, market: Decimal, lf: f64, now: i64) -> bool {
        if !self.skip_quiet {
            return false;
        }
        let Some(q) = self.quiet_slots.get(i).copied().flatten() else {
            return false;
        };
        if now < q.at_ms
            || !holds_screened(q.wake, q.wake_band, market, lf, now)
            || slot::entry_due(&self.slots[i], now)
        {
            return false;
        }
        if market > Decimal::ZERO {
            self.slots[i].market = Some(market);
        }
        self.quiet_skips += 1;
        true
    }

    /// Slot `i`'s kept wake when its price tick at `market`, `now` only
    /// places the entries due: the slot verified and untouched since its
    /// last tick (its wake kept), the wake of all but its entries holding
    /// (read then, every bound it took from a time holds now, so reading it
    /// now would take the same branches), an entry due.
    fn entry_retry_of(&self, i: usize, market: Decimal, lf: f64, now: i64) -> Option<QuietSlot> {
        if !self.entry_retry || !self.verified.get(i).copied().unwrap_or(false) {
            return None;
        }
        let q = self.quiet_slots.get(i).copied().flatten()?;
        (q.at_ms <= now
            && holds_screened(q.other, q.other_band, market, lf, now)
            && self.slots.get(i).is_some_and(|s| slot::entry_due(s, now)))
        .then_some(q)
    }

    /// Slot `i`'s kept wake when it is the one [`Grid::slot_wake`] reads at
    /// `now` with `entries_open` (the slot untouched since its quiet tick):
    /// - kept at `now`, or holding at (`last`, `now`): every bound the wake
    ///   took from a time (`now < t` gives "before t") then holds now, so
    ///   reading it now takes the same branches;
    /// - read with the same gates, or no trade due an entry (the gates are
    ///   read only for one).
    fn kept_wake(
        &self,
        i: usize,
        last: Decimal,
        lf: f64,
        now: i64,
        entries_open: bool,
    ) -> Option<Wake> {
        let q = self.quiet_slots.get(i).copied().flatten()?;
        let same_time =
            q.at_ms == now || (q.at_ms < now && holds_screened(q.wake, q.wake_band, last, lf, now));
        let same_gates = q.entries_open == entries_open || !slot::entry_due(&self.slots[i], now);
        (same_time && same_gates).then_some(q.wake)
    }

    /// Keeps the tick's view, and its instrument (the last one a view
    /// had) when the view's changed: `self.instrument` is the view's
    /// instrument whenever the view has one, set here only.
    fn keep_market(&mut self, market: &MarketView) {
        let same = crate::strategy::keep_view(&mut self.market, market);
        if market.instrument.is_some() && !same {
            crate::strategy::keep_instrument(&mut self.instrument, &market.instrument);
        }
    }

    /// Drops every slot's kept wake (and self-healing's kept inputs:
    /// `restore`, commands and `reconfigure` call this).
    fn forget_quiet_slots(&mut self) {
        self.quiet_slots.iter_mut().for_each(|q| *q = None);
        self.touch_heal();
    }

    /// Self-healing's wake inputs may have changed: read them afresh.
    fn touch_heal(&mut self) {
        self.heal_gen = self.heal_gen.wrapping_add(1);
    }

    fn userref(&self, slot_id: u32) -> i32 {
        self.cfg.userref_offset + i32::try_from(slot_id).unwrap_or(0)
    }

    fn journal(kind: &str, payload: String) -> Action {
        Action::Journal {
            stream: JOURNAL_STREAM.to_string(),
            kind: kind.to_string(),
            payload_json: payload,
        }
    }

    /// Whether rows of `kind` are wanted (see [`Strategy::set_journal_filter`]).
    fn journals(&self, kind: &str) -> bool {
        self.journal_keep.is_none_or(|keep| keep(kind))
    }

    /// Applies a ledger event and journals it (unless the caller drops
    /// rows of its kind).
    fn record(&mut self, ev: LedgerEvent, out: &mut Vec<Action>) {
        self.touch_heal();
        if self.journals(ev.kind()) {
            self.ledger.apply(&ev);
            let payload = serde_json::to_string(&ev).unwrap_or_default();
            out.push(Self::journal(ev.kind(), payload));
        } else {
            // No row: the event moves into the ledger.
            self.ledger.apply_owned(ev);
        }
    }

    /// Runs one slot transition and turns its actions into the engine's.
    fn step_slot(&mut self, i: usize, ev: &SlotEvent, budget: u32, now: i64) -> (Vec<Action>, u32) {
        let (out, entries, ..) = self.step_slot_quiet(i, ev, budget, now);
        (out, entries)
    }

    /// [`Grid::step_slot`], whether the transition returned no actions,
    /// and whether all it returned was entries the capital ledger refused
    /// (nothing for the venue, no entry counted, the refusals returned
    /// nothing, a re-entry delay, the slot not halted).
    fn step_slot_quiet(
        &mut self,
        i: usize,
        ev: &SlotEvent,
        budget: u32,
        now: i64,
    ) -> (Vec<Action>, u32, bool, bool) {
        if let Some(q) = self.quiet_slots.get_mut(i) {
            *q = None;
        }
        let Some(filters) = self.filters() else {
            return (Vec::new(), 0, false, false);
        };
        // The loss gates read once for both.
        let loss = self.loss();
        let ctx = SlotCtx {
            params: &self.cfg.slot,
            filters,
            profit_pct: self.profit_pct(),
            entry_budget: budget,
            entries_blocked: self.entries_blocked_by(loss.locked),
            userref_offset: self.userref(self.slots[i].id),
            loss_room: loss.room,
        };
        let verified = self.verified.get(i).copied().unwrap_or(false);
        // In place: `transition` (or `transition_verified`) without moving
        // the slot out and back. Entries the capital ledger would refuse
        // are refused in it (`slot::transition_checked`): the same state
        // and actions as placing them, translating them (refused) and
        // stepping the refusals, as the loop below still does for entries
        // placed after another order.
        let check = LedgerCheck {
            capital: &self.capital,
            instrument: self.instrument.as_ref(),
            market: self.market.as_ref(),
            maker_fee: self.cfg.slot.maker_fee,
        };
        let checked = if self.precheck {
            slot::transition_checked(&mut self.slots[i], ev, &ctx, verified, &check, now)
        } else {
            slot::Checked {
                actions: slot::transition_in_place(&mut self.slots[i], ev, &ctx, verified),
                after: Vec::new(),
                refused: 0,
                lazy: 0,
                accepted: false,
            }
        };
        self.prechecked += checked.refused as u64;
        self.prechecked_lazy += checked.lazy as u64;
        if let Some(v) = self.verified.get_mut(i) {
            *v = self.slots[i].halted.is_none();
        }
        let (actions, after, prechecked) = (checked.actions, checked.after, checked.refused);
        let checked = checked.accepted;
        let quiet = actions.is_empty() && prechecked == 0;
        // A tick's transition that returned nothing but entries changed no
        // exit: placing, replacing, cancelling or retrying one returns an
        // action of its own; the entries refused in it (`prechecked`) are
        // entries. (A refused exit or failed cancel is an order update's or
        // a refusal's transition, which may return nothing: not a tick.)
        let tick = matches!(
            ev,
            SlotEvent::PriceTick { .. }
                | SlotEvent::TimerTick { .. }
                | SlotEvent::EntryRetry { .. }
        );
        let entries_only = actions
            .iter()
            .all(|a| matches!(a, SlotAction::PlaceOrder(p) if p.role == Role::Entry));
        if !(entries_only && tick && after.is_empty()) {
            self.touch_heal();
        }
        // Only entries, each to be refused below (checked once translated).
        let only_entries = !quiet
            && actions
                .iter()
                .all(|a| matches!(a, SlotAction::PlaceOrder(p) if p.role == Role::Entry));
        let placed = actions.len() + prechecked;
        let mut out = Vec::new();
        let mut entries = 0;
        let mut refused = Vec::new();
        // The first order out, an entry the slot checked against the
        // ledger, is held without checking it again.
        let mut accepted = checked;
        // (Most steps return nothing: no iterator built and dropped.)
        if !actions.is_empty() {
            for a in actions {
                if accepted && matches!(a, SlotAction::PlaceOrder(_)) {
                    accepted = false;
                    self.entry_checked = true;
                }
                self.translate(i, a, now, &mut out, &mut entries, &mut refused);
            }
        }
        // Every entry the tick placed was refused, and nothing else came of
        // it: see `Grid::on_tick` on the wake such a tick keeps.
        let refused_only = only_entries
            && refused.len() + prechecked == placed
            && entries == 0
            && out.is_empty()
            && super::secs_ms(self.cfg.slot.reentry_delay_sec) > 0;
        // What the refusals taken in the transition returned (nothing, but
        // for a refused id that is no live entry), as their steps did.
        if !after.is_empty() {
            let (mut no_entries, mut nested) = (0, Vec::new());
            for a in after {
                self.translate(i, a, now, &mut out, &mut no_entries, &mut nested);
            }
            self.step_refusals(i, nested, now, &mut out);
        }
        if !refused.is_empty() {
            self.step_refusals(i, refused, now, &mut out);
        }
        let refused_only = refused_only && out.is_empty() && self.slots[i].halted.is_none();
        (out, entries, quiet, refused_only)
    }

    /// Steps slot `i` through the ledger's refusals of its orders, in
    /// order, adding what they return to `out`.
    fn step_refusals(
        &mut self,
        i: usize,
        refusals: Vec<(String, CapitalError)>,
        now: i64,
        out: &mut Vec<Action>,
    ) {
        for (id, error) in refusals {
            let ev = SlotEvent::CapitalRefused {
                client_order_id: id,
                error,
                now_ms: now,
            };
            out.extend(self.step_slot(i, &ev, 0, now).0);
        }
    }

    /// What an order holds: (asset, amount).
    fn hold_of(&self, side: Side, volume: Decimal, price: Option<Decimal>) -> (Asset, Decimal) {
        hold_of(
            self.instrument.as_ref(),
            self.market.as_ref(),
            self.cfg.slot.maker_fee,
            side,
            volume,
            price,
        )
    }

    fn snapshot(&self, asset: Asset) -> Option<FreeBalance> {
        snapshot(self.market.as_ref(), asset)
    }

    /// Free funds after what the grid has promised.
    fn available(&self, asset: Asset) -> Option<Decimal> {
        self.capital.available(asset, self.snapshot(asset))
    }

    fn translate(
        &mut self,
        i: usize,
        a: SlotAction,
        now: i64,
        out: &mut Vec<Action>,
        entries: &mut u32,
        refused: &mut Vec<(String, CapitalError)>,
    ) {
        match a {
            SlotAction::PlaceOrder(p) => {
                let (asset, amount) = self.hold_of(p.side, p.volume, p.price);
                let checked = std::mem::take(&mut self.entry_checked);
                if p.role == Role::Entry && checked {
                    // `reserve` passes: no hold with its id, the funds cover it.
                    self.capital.hold(&p.client_order_id, asset, amount, now);
                    *entries += 1;
                } else if p.role == Role::Entry {
                    let snap = self.snapshot(asset);
                    if let Err(e) = self.capital.reserve(
                        &p.client_order_id,
                        asset,
                        amount,
                        Decimal::ZERO,
                        snap,
                        now,
                    ) {
                        refused.push((p.client_order_id, e));
                        return;
                    }
                    *entries += 1;
                } else {
                    self.capital.hold(&p.client_order_id, asset, amount, now);
                }
                out.push(Action::Place(OrderIntent {
                    client_order_id: p.client_order_id,
                    symbol: self.symbol.clone(),
                    side: p.side,
                    volume: p.volume,
                    price: p.price,
                    post_only: p.price.is_some(),
                    userref_offset: p.userref_offset,
                }));
            }
            SlotAction::CancelOrder {
                client_order_id, ..
            } => out.push(Action::Cancel { client_order_id }),
            SlotAction::OrphanOrder {
                position_id,
                reason,
                ..
            } => self.record(
                LedgerEvent::Orphaned {
                    position_id,
                    reason,
                    time_ms: now,
                },
                out,
            ),
            SlotAction::PositionOpened(p) => {
                let mode = if self.slots[i].sticky {
                    PositionMode::Sticky
                } else {
                    PositionMode::Grid
                };
                let regime = self
                    .market
                    .as_ref()
                    .map(|m| m.regime.regime.clone())
                    .unwrap_or_default();
                self.record(
                    LedgerEvent::Open {
                        position: Box::new(Position {
                            id: p.position_id,
                            slot_id: p.slot_id,
                            trade: p.trade.as_str().into(),
                            mode,
                            entry: Entry {
                                side: p.entry_side.as_str().into(),
                                price: p.entry_price.normalize(),
                                cost: (p.entry_price * p.volume).normalize(),
                                fee: p.entry_fee,
                                volume: p.volume,
                                time_ms: p.entry_time_ms,
                                regime,
                            },
                            exit: ExitIntent {
                                price: p.exit_price,
                                original_price: p.exit_price,
                                target_profit: p.target_profit,
                                order_id: p.exit_order_id,
                                reprices: 0,
                                last_reprice_ms: None,
                                tightened: false,
                                hold_until_ms: None,
                                orphaned: false,
                            },
                            outcome: None,
                        }),
                    },
                    out,
                );
            }
            SlotAction::ExitMoved {
                position_id,
                old_order_id,
                new_order_id,
                new_price,
                reason,
                ..
            } => {
                let cost = self
                    .pending_costs
                    .remove(&old_order_id)
                    .map_or(Decimal::ZERO, |(_, c)| c);
                let price = new_price.unwrap_or_else(|| {
                    self.ledger
                        .position(&position_id)
                        .map_or(Decimal::ZERO, |p| p.exit.price)
                });
                self.record(
                    LedgerEvent::ExitMoved {
                        position_id,
                        price,
                        order_id: new_order_id,
                        reason,
                        cost,
                        time_ms: now,
                    },
                    out,
                );
            }
            SlotAction::Abandoned {
                client_order_id, ..
            } => {
                self.pending_costs.remove(&client_order_id);
            }
            SlotAction::BookCycle(c) => self.book_cycle(&c, out),
        }
    }

    fn book_cycle(&mut self, c: &CycleRecord, out: &mut Vec<Action>) {
        if self.journals("cycle") {
            out.push(Self::journal("cycle", super::row::cycle_json(c)));
        }
        self.realized_today += c.net;
        self.keep_loss();
        self.settled_usd += c.exit_price * c.volume;
        let kind = c.kind.as_str().to_string();
        // Over-performance: an exit that filled better than the price it
        // was resting at earns its slot subsidy.
        let limit = self.ledger.position(&c.position_id).map(|p| p.exit.price);
        self.record(
            LedgerEvent::Close {
                position_id: c.position_id.clone(),
                outcome: Outcome {
                    kind,
                    exit_price: c.exit_price,
                    exit_fee: c.exit_fee,
                    gross: c.gross,
                    net: c.net,
                    time_ms: c.time_ms,
                },
            },
            out,
        );
        if let Some(limit) = limit
            && matches!(c.kind, CycleKind::Exit | CycleKind::Recovery)
            && limit > Decimal::ZERO
        {
            let better = match c.trade {
                Trade::B => c.exit_price - limit,
                Trade::A => limit - c.exit_price,
            };
            if better > Decimal::ZERO {
                self.record(
                    LedgerEvent::Earned {
                        slot_id: c.slot_id,
                        amount: (better * c.volume).normalize(),
                        source: "over_performance".into(),
                        position_id: c.position_id.clone(),
                        time_ms: c.time_ms,
                    },
                    out,
                );
            }
        }
    }

    /// Where a position's live exit is: (slot index, order).
    fn exit_of(&self, p: &Position) -> Option<(usize, &SlotOrder)> {
        let i = self.slots.iter().position(|s| s.id == p.slot_id)?;
        let o = self.slots[i]
            .orders
            .iter()
            .chain(&self.slots[i].recovery)
            // The role first: most of a slot's orders are not exits.
            .find(|o| {
                o.role == Role::Exit && slot::same_id(&o.client_order_id, &p.exit.order_id)
            })?;
        Some((i, o))
    }

    fn round_trip_fee(&self) -> Decimal {
        self.filters()
            .map_or(self.cfg.slot.maker_fee, |f| f.maker_fee)
            * Decimal::TWO
    }

    /// The subsidy a position still needs to move its exit to fillable.
    fn needed_for(&self, p: &Position, market: Decimal) -> Decimal {
        let tick = self.filters().map_or(Decimal::ZERO, |f| f.tick_size);
        let target = heal::fillable_price(
            p,
            market,
            self.cfg.slot.entry_pct,
            self.round_trip_fee(),
            tick,
        );
        heal::full_cost(p, target)
    }

    fn pending_for_slot(&self, slot_id: u32) -> Decimal {
        self.pending_costs
            .values()
            .filter(|(s, _)| *s == slot_id)
            .map(|(_, c)| *c)
            .sum()
    }

    /// Spendable subsidy of a slot: balance minus reprices in flight.
    pub fn spendable(&self, slot_id: u32) -> Decimal {
        self.ledger.subsidy_of(slot_id).balance() - self.pending_for_slot(slot_id)
    }

    /// What each slot's stuck positions still need, beyond its balance.
    fn slot_needs(&self, slot_id: u32, market: Decimal, now: i64) -> Decimal {
        self.ledger
            .open_positions()
            .filter(|p| p.slot_id == slot_id && p.mode != PositionMode::Churner)
            .filter(|p| heal::reading(p, market, now, &self.cfg.heal).band >= Band::Aging)
            .filter(|p| self.exit_of(p).is_some())
            .map(|p| self.needed_for(p, market))
            .sum()
    }

    fn heal(&mut self, market: Decimal, now: i64, out: &mut Vec<Action>) {
        if !self.cfg.heal.enabled || !self.enabled {
            return;
        }
        let Some(f) = self.filters() else {
            return;
        };
        if self.nothing_to_heal(market, now) {
            return;
        }
        let h = self.cfg.heal.clone();
        let screen = heal::StaleScreen::new(market, &h);
        let mut moves: Vec<(usize, String, Decimal, String, Decimal)> = Vec::new();
        for p in self.ledger.open_positions() {
            if moves.len() >= HEAL_MOVES_PER_TICK {
                break;
            }
            if p.mode == PositionMode::Churner || p.exit.hold_until_ms.is_some_and(|t| now < t) {
                continue;
            }
            // The f64 screen before the exit's lookup: every test here only
            // skips the position, so their order does not matter.
            if screen.is_some_and(|s| !s.may_be_stale(p, now)) {
                continue;
            }
            let Some((i, o)) = self.exit_of(p) else {
                continue;
            };
            if o.pending.is_some() || o.retry_at_ms.is_some() {
                continue;
            }
            let r = heal::reading(p, market, now, &h);
            match r.band {
                Band::Fresh | Band::Aging => {}
                Band::Stale => {
                    if !p.exit.tightened
                        && let Some(t) =
                            heal::tighten_price(p, market, self.cfg.slot.entry_pct, &h, f.tick_size)
                    {
                        moves.push((
                            i,
                            o.client_order_id.clone(),
                            t,
                            "tighten".into(),
                            Decimal::ZERO,
                        ));
                    }
                }
                Band::Stuck | Band::WriteOff => {
                    if p.exit
                        .last_reprice_ms
                        .is_some_and(|t| now - t < super::secs_ms(h.reprice_cooldown_sec))
                    {
                        continue;
                    }
                    let target = heal::fillable_price(
                        p,
                        market,
                        self.cfg.slot.entry_pct,
                        self.round_trip_fee(),
                        f.tick_size,
                    );
                    let balance = self.spendable(p.slot_id)
                        - moves
                            .iter()
                            .filter(|m| self.slots[m.0].id == p.slot_id)
                            .map(|m| m.4)
                            .sum::<Decimal>();
                    if let Some((price, cost)) =
                        heal::subsidised_move(p, target, balance, f.tick_size)
                    {
                        moves.push((i, o.client_order_id.clone(), price, "subsidy".into(), cost));
                    }
                }
            }
        }
        for (i, id, price, reason, cost) in moves {
            if !cost.is_zero() {
                self.pending_costs
                    .insert(id.clone(), (self.slots[i].id, cost));
                self.touch_heal();
            }
            let ev = SlotEvent::Reprice {
                client_order_id: id,
                price,
                reason,
                now_ms: now,
            };
            out.extend(self.step_slot(i, &ev, 0, now).0);
        }
    }

    /// Whether [`Grid::heal`] would skip every position at `market` and
    /// `now`, read from the inputs kept for its wake when they are current
    /// (`heal_gen` has not moved since): each is held, or its exit not live,
    /// or the stale screen finds it certainly fresh or aging (the screen
    /// `heal` builds, on the same f64 readings). `false` when they are not
    /// current or the screen cannot judge.
    fn nothing_to_heal(&self, market: Decimal, now: i64) -> bool {
        let kept = self.heal_inputs.borrow();
        if !self.heal_from_kept || kept.read_at != Some(self.heal_gen) {
            return false;
        }
        let Some(screen) = heal::StaleScreen::with_knobs(market, kept.div, kept.stale) else {
            return false;
        };
        kept.items.iter().all(|p| {
            p.hold_until_ms.is_some_and(|t| now < t)
                || !p.live
                || !screen.may_be_stale_at(p.exit, p.entry_ms, now)
        })
    }

    /// [`Strategy::wake`], read after a tick at `ticked_ms` that returned no
    /// actions. What a quiet tick stores: the market view, instrument and
    /// capacity reading (overwritten by the next tick), each slot's market
    /// and `last_error` (the same), the day roll (repeated by a later tick),
    /// and one more entry of the recent prices, which only the
    /// volatility-adjusted profit reads (so with `volatility_profit_factor`
    /// set, every tick). Bounds:
    /// - the next UTC day (the day's realized loss resets: the loss lock
    ///   and loss room), the end of the partial-cancel window (the capacity
    ///   band), restart-cancel retries;
    /// - every tick while a churner runs, an adopted fill waits, or a
    ///   slot's mode is about to change;
    /// - each slot's timers and price bands ([`slot::wake`]);
    /// - self-healing: when an exit's effective age can reach a band where
    ///   the tick may move it (stale and not yet tightened; stuck or
    ///   written off with subsidy to spend after the reprice cooldown),
    ///   for any price inside the band (narrowed to 1 % around the last
    ///   price so the distance stays bounded).
    fn quiet(&self) -> Wake {
        self.quiet_with(Self::heal_wake)
    }

    /// [`Grid::quiet`] with `heal_wake` for its self-healing part (the
    /// tests pass `heal_wake_fresh`).
    fn quiet_with(&self, heal_wake: fn(&Grid, Wake, Decimal, i64) -> Wake) -> Wake {
        let Some(market) = self.market.as_ref() else {
            return Wake::EveryTick;
        };
        if !self.churners.is_empty()
            || !self.filled_while_down.is_empty()
            || crate::is_positive(self.cfg.volatility_profit_factor)
        {
            return Wake::EveryTick;
        }
        let now = self.ticked_ms;
        let mut w = Wake::IDLE.before((now.div_euclid(DAY_MS) + 1).saturating_mul(DAY_MS));
        if let Some(t) = market.last_partial_cancel_ms {
            let end = t.saturating_add(capacity::PARTIAL_CANCEL_WINDOW_MS);
            if end > now {
                w = w.before(end);
            }
        }
        for t in self.restart_cancels.values().flatten() {
            w = w.before(*t);
        }
        if self.filters().is_none() {
            return w;
        }
        if !crate::is_positive(market.last) {
            return Wake::EveryTick;
        }
        let mode = self.mode_for(market);
        if self.slots.iter().any(|s| s.mode != mode) {
            return Wake::EveryTick;
        }
        let budget = self.capacity.as_ref().map_or(0, |c| c.entries_allowed);
        let entries_open = self.entries_open(budget);
        let lf = heal::approx_f64(market.last);
        for i in 0..self.slots.len() {
            let w_slot = match self.kept_wake(i, market.last, lf, now, entries_open) {
                Some(w) => w,
                None => self.slot_wake(i, now, entries_open),
            };
            w = w.and(w_slot);
            if w == Wake::EveryTick {
                return w;
            }
        }
        if self.cfg.heal.enabled && self.enabled {
            w = heal_wake(self, w, market.last, now);
        }
        w
    }

    /// Self-healing's wake inputs, read afresh when `heal_gen` moved.
    fn read_heal_inputs(&self, into: &mut HealInputs) {
        let h = &self.cfg.heal;
        let f = heal::approx_f64;
        into.read_at = Some(self.heal_gen);
        into.reads += 1;
        into.div = f(h.distance_divisor);
        into.stale = f(h.stale_hours);
        into.stuck = f(h.stuck_hours);
        into.items.clear();
        let cooldown = super::secs_ms(h.reprice_cooldown_sec);
        // Whether each slot has subsidy to spend, read once per slot.
        let mut subsidy: Vec<(u32, bool)> = Vec::new();
        for p in self
            .ledger
            .open_positions()
            .filter(|p| p.mode != PositionMode::Churner)
        {
            let live = self
                .exit_of(p)
                .is_some_and(|(_, o)| o.pending.is_none() && o.retry_at_ms.is_none());
            let has_subsidy = match subsidy.iter().find(|(id, _)| *id == p.slot_id) {
                Some((_, has)) => *has,
                None => {
                    let has = self.spendable(p.slot_id) > Decimal::ZERO;
                    subsidy.push((p.slot_id, has));
                    has
                }
            };
            into.items.push(HealItem {
                hold_until_ms: p.exit.hold_until_ms,
                live,
                exit: f(p.exit.price),
                entry_ms: p.entry.time_ms,
                has_subsidy,
                cooldown_end_ms: p.exit.last_reprice_ms.map(|t| t.saturating_add(cooldown)),
                tightened: p.exit.tightened,
            });
        }
    }

    /// The self-healing part of [`Grid::quiet`]: what `heal_wake_fresh`
    /// (the tests' copy of the code before) gives, from the inputs kept in
    /// `heal_inputs` (read again whenever `heal_gen` moved), over the band
    /// kept there ([`HealBand`]), with the positions' time bound kept while
    /// it holds.
    fn heal_wake(&self, w: Wake, last: Decimal, now: i64) -> Wake {
        let mut kept = self.heal_inputs.borrow_mut();
        if kept.read_at != Some(self.heal_gen) {
            self.read_heal_inputs(&mut kept);
        }
        if kept.items.is_empty() {
            return w;
        }
        let Some(mut band) = HealBand::for_last(kept.band, last) else {
            return Wake::EveryTick;
        };
        let w = inside_screened(w, &band);
        let before = match band.kept {
            Some(k)
                if k.generation == self.heal_gen
                    && k.from_ms <= now
                    && k.before.is_none_or(|t| now < t) =>
            {
                kept.bound_kept += 1;
                k.before
            }
            _ => {
                let Some(before) = heal_bound(&kept, band.lo_f, band.hi_f, now) else {
                    kept.band = Some(band);
                    return Wake::EveryTick;
                };
                band.kept = Some(KeptBound {
                    generation: self.heal_gen,
                    from_ms: now,
                    before,
                });
                before
            }
        };
        kept.band = Some(band);
        match before {
            Some(t) => w.before(t),
            None => w,
        }
    }

    /// [`Grid::heal_wake`] as it was before its inputs were kept: every
    /// position, exit and subsidy read at every call (the tests compare).
    #[cfg(test)]
    fn heal_wake_fresh(&self, w: Wake, last: Decimal, now: i64) -> Wake {
        const HOUR_MS: f64 = 3_600_000.0;
        const MARGIN: f64 = 1e-9;
        let h = &self.cfg.heal;
        let positions = || {
            self.ledger
                .open_positions()
                .filter(|p| p.mode != PositionMode::Churner)
        };
        if positions().next().is_none() {
            return w;
        }
        // The band `heal_wake` read (1 % either side of a last price near
        // this one), or 1 % either side of this one.
        let one_pct = Decimal::new(1, 2);
        let (lo, hi) = match self.heal_inputs.borrow().band {
            Some(b) => (b.lo, b.hi),
            None => (
                last * (Decimal::ONE - one_pct),
                last * (Decimal::ONE + one_pct),
            ),
        };
        let mut w = w.inside(Some(lo), Some(hi));
        let Wake::Quiet { .. } = w else {
            return Wake::EveryTick;
        };
        let f = heal::approx_f64;
        let (lo, hi, div) = (f(lo), f(hi), f(h.distance_divisor));
        let (stale, stuck) = (f(h.stale_hours), f(h.stuck_hours));
        if !(lo > 0.0 && hi >= lo && div > 0.0 && stale.is_finite() && stuck.is_finite()) {
            return Wake::EveryTick;
        }
        let cooldown = super::secs_ms(h.reprice_cooldown_sec);
        // Whether each slot has subsidy to spend, read once per slot.
        let mut subsidy: Vec<(u32, bool)> = Vec::new();
        for p in positions() {
            if let Some(t) = p.exit.hold_until_ms
                && now < t
            {
                w = w.before(t);
                continue;
            }
            let Some((_, o)) = self.exit_of(p) else {
                continue;
            };
            if o.pending.is_some() || o.retry_at_ms.is_some() {
                continue;
            }
            let e = f(p.exit.price);
            let dist = |m: f64| (e - m).abs() / m * 100.0;
            let dmax = dist(lo).max(dist(hi));
            let dmin = if (lo..=hi).contains(&e) {
                0.0
            } else {
                dist(lo).min(dist(hi))
            };
            if !(e.is_finite() && dmax.is_finite()) {
                return Wake::EveryTick;
            }
            let age_now = (now - p.entry.time_ms).max(0) as f64 / HOUR_MS;
            let eff_lo = age_now * (1.0 + dmin / div) * (1.0 - MARGIN);
            let eff_hi = age_now * (1.0 + dmax / div) * (1.0 + MARGIN);
            let has_subsidy = match subsidy.iter().find(|(id, _)| *id == p.slot_id) {
                Some((_, has)) => *has,
                None => {
                    let has = self.spendable(p.slot_id) > Decimal::ZERO;
                    subsidy.push((p.slot_id, has));
                    has
                }
            };
            let cooling = p
                .exit
                .last_reprice_ms
                .map(|t| t.saturating_add(cooldown))
                .filter(|end| now < *end);
            if has_subsidy && let Some(end) = cooling {
                w = w.before(end);
            }
            // Where a tick may act: stale before the free tighten; stuck
            // and later with subsidy to spend, out of the cooldown.
            let stale_acts = !p.exit.tightened;
            let stuck_acts = has_subsidy && cooling.is_none();
            if stale_acts && eff_lo < stuck && eff_hi >= stale {
                return Wake::EveryTick;
            }
            if stuck_acts && eff_hi >= stuck {
                return Wake::EveryTick;
            }
            let edge = if stale_acts && eff_hi < stale {
                Some(stale)
            } else if stuck_acts {
                Some(stuck)
            } else {
                None
            };
            if let Some(edge) = edge {
                let age_h = edge * (1.0 - MARGIN) / (1.0 + dmax * (1.0 + MARGIN) / div);
                let at = p.entry.time_ms as f64 + (age_h * HOUR_MS).floor() - 1.0;
                if !at.is_finite() || at <= now as f64 {
                    return Wake::EveryTick;
                }
                // Saturating: far beyond any run.
                w = w.before(at.min(i64::MAX as f64 / 2.0) as i64);
            }
        }
        w
    }

    /// The exit profit in force: the config's, raised by the market's recent
    /// range when `volatility_profit_factor` is set.
    pub fn profit_pct(&self) -> Decimal {
        let base = self.cfg.slot.profit_pct;
        let factor = self.cfg.volatility_profit_factor;
        if !crate::is_positive(factor) {
            return base;
        }
        let lo = self.prices.iter().map(|p| p.1).min();
        let hi = self.prices.iter().map(|p| p.1).max();
        match (lo, hi) {
            (Some(lo), Some(hi)) if lo > Decimal::ZERO => {
                base.max(((hi - lo) / lo * hundred() * factor).round_dp(4))
            }
            _ => base,
        }
    }

    fn remember_price(&mut self, now: i64, price: Decimal) {
        self.prices.push_back((now, price));
        let horizon = now - super::secs_ms(self.cfg.volatility_window_sec);
        while self.prices.front().is_some_and(|p| p.0 < horizon) {
            self.prices.pop_front();
        }
    }

    /// The slots' mode: the config's, or the regime's when asked to follow it.
    fn mode_for(&self, market: &MarketView) -> SlotMode {
        if !self.cfg.mode_from_regime || !market.regime.ready {
            return self.cfg.mode;
        }
        match market.regime.regime.as_str() {
            "BULLISH" => SlotMode::LongOnly,
            "BEARISH" => SlotMode::ShortOnly,
            _ => self.cfg.mode,
        }
    }

    /// Opens positions for entries that filled while the engine was down
    /// (found by [`Strategy::restore`]) and queues their exits.
    fn adopt_filled_entries(&mut self, now: i64, out: &mut Vec<Action>) {
        let pending = std::mem::take(&mut self.filled_while_down);
        for k in &pending {
            let Some((slot_id, trade, Role::Entry)) =
                slot::parse_slot_client_id(&k.client_order_id)
            else {
                continue;
            };
            let Some(i) = self.slots.iter().position(|s| s.id == slot_id) else {
                continue;
            };
            if self.ledger.contains(&k.client_order_id) {
                continue;
            }
            let Some(f) = self.filters() else {
                return;
            };
            let ctx = SlotCtx {
                params: &self.cfg.slot,
                filters: f.clone(),
                profit_pct: self.profit_pct(),
                entry_budget: 0,
                entries_blocked: None,
                userref_offset: 0,
                loss_room: None,
            };
            let exit = slot::exit_price(trade, k.average_price, k.average_price, &ctx);
            let fee = if self
                .instrument
                .as_ref()
                .is_some_and(|i| i.base == k.fee_asset)
            {
                k.fee * k.average_price
            } else {
                k.fee
            };
            let exit_fee = exit * k.volume_executed * f.maker_fee;
            let target = trade.gross(k.average_price, exit, k.volume_executed) - fee - exit_fee;
            let position = Position {
                id: k.client_order_id.clone(),
                slot_id,
                trade: trade.as_str().into(),
                mode: if self.cfg.sticky.contains(&slot_id) {
                    PositionMode::Sticky
                } else {
                    PositionMode::Grid
                },
                entry: Entry {
                    side: trade.entry_side().as_str().into(),
                    price: k.average_price,
                    cost: (k.average_price * k.volume_executed).normalize(),
                    fee,
                    volume: k.volume_executed,
                    time_ms: now,
                    regime: String::new(),
                },
                exit: ExitIntent {
                    price: exit,
                    original_price: exit,
                    target_profit: target.normalize(),
                    order_id: String::new(),
                    reprices: 0,
                    last_reprice_ms: None,
                    tightened: false,
                    hold_until_ms: None,
                    orphaned: false,
                },
                outcome: None,
            };
            self.record(
                LedgerEvent::Open {
                    position: Box::new(position),
                },
                out,
            );
            let o = SlotOrder {
                client_order_id: format!("{}-restart", k.client_order_id),
                trade,
                role: Role::Exit,
                side: trade.exit_side(),
                price: Some(exit),
                volume: k.volume_executed,
                placed_at_ms: now,
                market_at_place: k.average_price,
                executed: Decimal::ZERO,
                avg_price: Decimal::ZERO,
                fee: Decimal::ZERO,
                position_id: k.client_order_id.clone(),
                entry_price: k.average_price,
                entry_fee: fee,
                entry_time_ms: now,
                target_price: exit,
                pending: None,
                retry_at_ms: None,
                orphan: None,
            };
            tracing::warn!(position = %k.client_order_id, %exit, "entry filled while the engine was down: position opened, exit goes out");
            slot::adopt_exit(&mut self.slots[i], o, false, now);
            self.touch_heal();
            if let Some(v) = self.verified.get_mut(i) {
                *v = false;
            }
            if let Some(q) = self.quiet_slots.get_mut(i) {
                *q = None;
            }
        }
    }

    /// Parent candidates: open grid positions with a live exit.
    fn candidates(&self, market: Decimal, now: i64) -> Vec<ParentCandidate> {
        self.ledger
            .open_positions()
            .filter(|p| p.mode != PositionMode::Churner)
            .filter(|p| self.exit_of(p).is_some())
            .map(|p| {
                let r = heal::reading(p, market, now, &self.cfg.heal);
                let balance = self.ledger.subsidy_of(p.slot_id).balance();
                ParentCandidate {
                    position_id: p.id.clone(),
                    slot_id: p.slot_id,
                    trade: p.trade.clone(),
                    effective_age_hours: r.effective_age_hours,
                    age_hours: r.age_hours,
                    band: r.band,
                    subsidy_needed: (self.needed_for(p, market) - balance).max(Decimal::ZERO),
                }
            })
            .collect()
    }

    fn reserve_in_use(&self) -> Decimal {
        self.churners.iter().map(|c| c.reserve_used_usd).sum()
    }

    fn churn_env(
        &self,
        c: Option<&Churner>,
        market: &MarketView,
        gate: Result<ParentCandidate, Refusal>,
        now: i64,
    ) -> Option<ChurnEnv<'_>> {
        let filters = self.filters()?;
        let parent_id = c.and_then(|c| c.parent_position_id.clone());
        let parent = parent_id
            .as_ref()
            .and_then(|id| self.ledger.position(id))
            .filter(|p| p.is_open() && self.exit_of(p).is_some());
        let parent_slot = c.and_then(|c| c.parent_slot);
        let needs = parent_slot.is_some_and(|s| {
            self.slot_needs(s, market.last, now) > self.ledger.subsidy_of(s).balance()
        });
        let slot_uses_reserve = c.and_then(|c| c.parent_slot).is_some_and(|s| {
            self.churners
                .iter()
                .any(|o| o.parent_slot == Some(s) && o.reserve_used_usd > Decimal::ZERO)
        });
        let reserve = if slot_uses_reserve {
            Decimal::ZERO
        } else {
            (self.cfg.churner.reserve_usd - self.reserve_in_use()).max(Decimal::ZERO)
        };
        Some(ChurnEnv {
            cfg: &self.cfg.churner,
            filters,
            market: market.last,
            gate,
            parent_alive: parent.is_some(),
            parent_needs_subsidy: needs,
            free_quote: self.available(Asset::Quote),
            free_base: self.available(Asset::Base),
            reserve_available: reserve,
            regime: market.regime.regime.clone(),
            userref_offset: self.cfg.churner.userref_offset
                + c.map_or(0, |c| i32::try_from(c.id).unwrap_or(0)),
            symbol: self.symbol.clone(),
            entries_blocked: self.entries_blocked(),
        })
    }

    fn gate_for(
        &self,
        market: &MarketView,
        others: u32,
        now: i64,
    ) -> Result<ParentCandidate, Refusal> {
        let candidates = self.candidates(market.last, now);
        churner::gate(&GateInput {
            cfg: &self.cfg.churner,
            active: others,
            regime: &market.regime,
            headroom: self.capacity.as_ref().map(|c| c.headroom),
            candidates: &candidates,
        })
    }

    fn churn_translate(&mut self, actions: Vec<ChurnAction>, now: i64, out: &mut Vec<Action>) {
        for a in actions {
            match a {
                ChurnAction::Place(i) => {
                    // The churner checked its side against `available`.
                    let (asset, amount) = self.hold_of(i.side, i.volume, i.price);
                    self.capital.hold(&i.client_order_id, asset, amount, now);
                    out.push(Action::Place(i));
                }
                ChurnAction::Cancel(id) => out.push(Action::Cancel {
                    client_order_id: id,
                }),
                ChurnAction::Ledger(ev) => self.record(ev, out),
            }
        }
        for k in 0..self.churners.len() {
            for c in self.churners[k].take_cycles() {
                self.churn_cycles_today += 1;
                self.churn_cycles_total += 1;
                self.churn_profit_today += c.net;
                self.churn_profit_total += c.net;
                self.realized_today += c.net;
            }
        }
    }

    fn tick_churners(&mut self, market: &MarketView, now: i64, out: &mut Vec<Action>) {
        let n = u32::try_from(self.churners.len()).unwrap_or(u32::MAX);
        for k in 0..self.churners.len() {
            let gate = self.gate_for(market, n.saturating_sub(1), now);
            let actions = {
                let c = self.churners[k].clone();
                let Some(env) = self.churn_env(Some(&c), market, gate, now) else {
                    return;
                };
                let mut c = c;
                let a = c.tick(&env, now);
                drop(env);
                self.churners[k] = c;
                a
            };
            self.churn_translate(actions, now, out);
        }
        // Killed churners leave once they have nothing out.
        self.churners
            .retain(|c| !(c.killed && c.stage == churner::Stage::Idle));
    }

    fn fee_in_quote(&self, u: &OrderUpdate) -> Decimal {
        let base = self
            .instrument
            .as_ref()
            .map(|i| i.base.as_str())
            .unwrap_or_default();
        if !base.is_empty() && u.fee_asset == base {
            u.fill_fee * u.fill_price
        } else {
            u.fill_fee
        }
    }

    /// The typed status block.
    pub fn status_block(&self, now: i64) -> GridStatusBlock {
        let market = self.market.as_ref().map_or(Decimal::ZERO, |m| m.last);
        let row = |o: &SlotOrder| OrderRow {
            client_order_id: o.client_order_id.clone(),
            trade: o.trade.as_str().into(),
            role: format!("{:?}", o.role).to_ascii_lowercase(),
            side: o.side.as_str().into(),
            price: o.price,
            volume: o.volume,
            age_sec: age_sec(o.placed_at_ms, now),
            distance_pct: pct_dist(o.price, market),
            position_id: o.position_id.clone(),
            orphan_reason: o
                .orphan
                .as_ref()
                .map(|x| x.reason.clone())
                .unwrap_or_default(),
            pending: o
                .pending
                .as_ref()
                .map(|p| format!("{p:?}"))
                .unwrap_or_default(),
        };
        let slots = self
            .slots
            .iter()
            .map(|s| SlotRow {
                id: s.id,
                alias: s.alias.clone(),
                sticky: s.sticky,
                phase: s
                    .phase()
                    .map(|p| p.as_str().to_string())
                    .unwrap_or_else(|_| "invalid".into()),
                halted: s.halted.clone().unwrap_or_default(),
                long_only: s.mode == SlotMode::LongOnly,
                short_only: s.mode == SlotMode::ShortOnly,
                cycles_a: s.a.cycles,
                cycles_b: s.b.cycles,
                cycles: s.cycles,
                profit: s.profit,
                order_size_usd: self.cfg.slot.order_size_usd,
                orders: s.orders.iter().map(row).collect(),
                recovery: s.recovery.iter().map(row).collect(),
                recent_cycles: s
                    .recent
                    .iter()
                    .map(|c| CycleRow {
                        trade: c.trade.as_str().into(),
                        kind: serde_json::to_value(c.kind)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_string))
                            .unwrap_or_default(),
                        entry_price: c.entry_price,
                        exit_price: c.exit_price,
                        volume: c.volume,
                        net: c.net,
                        time_ms: c.time_ms,
                    })
                    .collect(),
                losses_a: s.a.consecutive_losses,
                losses_b: s.b.consecutive_losses,
                last_error: s.last_error.to_string(),
            })
            .collect();
        let mut bands = BandCounts::default();
        let mut positions = Vec::new();
        for p in self.ledger.open_positions() {
            let r = heal::reading(p, market, now, &self.cfg.heal);
            match r.band {
                Band::Fresh => bands.fresh += 1,
                Band::Aging => bands.aging += 1,
                Band::Stale => bands.stale += 1,
                Band::Stuck => bands.stuck += 1,
                Band::WriteOff => bands.write_off += 1,
            }
            positions.push(PositionRow {
                position_id: p.id.clone(),
                slot_id: p.slot_id,
                trade: p.trade.clone(),
                mode: format!("{:?}", p.mode).to_ascii_lowercase(),
                entry_price: p.entry.price,
                exit_price: p.exit.price,
                volume: p.entry.volume,
                age_hours: r.age_hours.round_dp(3),
                effective_age_hours: r.effective_age_hours.round_dp(3),
                distance_pct: r.distance_pct.round_dp(4),
                band: r.band.as_str().into(),
                exit_order_id: p.exit.order_id.clone(),
                hold_until_ms: p.exit.hold_until_ms,
            });
        }
        let subsidy = self
            .slots
            .iter()
            .map(|s| {
                let acct = self.ledger.subsidy_of(s.id);
                SubsidyRow {
                    slot_id: s.id,
                    balance: acct.balance(),
                    earned: acct.earned,
                    consumed: acct.consumed,
                    needed: self.slot_needs(s.id, market, now),
                }
            })
            .collect();
        let states = self
            .churners
            .iter()
            .map(|c| {
                let live = c.exit.as_ref().or(c.entry.as_ref());
                ChurnerRow {
                    id: c.id,
                    stage: c.stage.as_str().into(),
                    parent_position_id: c.parent_position_id.clone().unwrap_or_default(),
                    parent_slot: c.parent_slot,
                    side: c
                        .entry
                        .as_ref()
                        .map(|e| e.side.as_str().to_string())
                        .unwrap_or_default(),
                    entry_price: c.entry.as_ref().map(|e| e.price),
                    exit_price: c.exit.as_ref().map(|e| e.price),
                    volume: live.map(|o| o.volume),
                    age_sec: age_sec(c.since_ms, now),
                    compound_usd: c.compound_usd,
                    cycles: c.cycles,
                    profit: c.profit,
                    last_error: c.last_error.clone(),
                }
            })
            .collect();
        let closed = self.ledger.closed_positions().count();
        GridStatusBlock {
            enabled: self.enabled,
            mode: self.cfg.mode.as_str().into(),
            profit_pct: self.profit_pct(),
            slot_count: u32::try_from(self.slots.len()).unwrap_or(u32::MAX),
            total_profit: self.slots.iter().map(|s| s.profit).sum(),
            total_settled_usd: self.settled_usd.normalize(),
            total_orphans: self.slots.iter().map(|s| s.orphans).sum(),
            daily_loss_lock: self.loss_locked(),
            daily_loss_limit_usd: self.cfg.daily_loss_limit_usd,
            realized_today: self.realized_today.normalize(),
            open_positions: u32::try_from(self.ledger.open_positions().count()).unwrap_or(0),
            closed_positions: u32::try_from(closed).unwrap_or(0),
            realized_pnl: self.ledger.realized(None).normalize(),
            ledger_conflicts: self.ledger.conflicts,
            slots,
            capacity: self.capacity.clone(),
            capital: self.capital.clone(),
            self_healing: HealBlock {
                enabled: self.cfg.heal.enabled,
                subsidy,
                bands,
                positions,
                churner: ChurnerBlock {
                    enabled: self.cfg.churner.enabled,
                    active: u32::try_from(self.churners.len()).unwrap_or(0),
                    max: self.cfg.churner.max_active,
                    reserve_available: (self.cfg.churner.reserve_usd - self.reserve_in_use())
                        .max(Decimal::ZERO),
                    cycles_today: self.churn_cycles_today,
                    profit_today: self.churn_profit_today.normalize(),
                    cycles_total: self.churn_cycles_total,
                    profit_total: self.churn_profit_total.normalize(),
                    states,
                },
            },
        }
    }

    fn spawn(&mut self, now: i64) -> Result<(String, Vec<Action>), String> {
        let Some(market) = self.market.clone() else {
            return Err("no market reading yet".into());
        };
        let n = u32::try_from(self.churners.len()).unwrap_or(u32::MAX);
        let parent = self
            .gate_for(&market, n, now)
            .map_err(|r| format!("{}: {r}", r.code()))?;
        let id = (0..churner::USERREF_SPAN.unsigned_abs())
            .find(|i| !self.churners.iter().any(|c| c.id == *i))
            .ok_or("no free churner id")?;
        self.next_churner_id = self.next_churner_id.max(id + 1);
        let c = Churner::new(id, &parent, now, self.run_start_ms);
        self.churners.push(c);
        let mut out = Vec::new();
        let k = self.churners.len() - 1;
        let gate = Ok(parent.clone());
        let actions = {
            let c = self.churners[k].clone();
            let env = self
                .churn_env(Some(&c), &market, gate, now)
                .ok_or("instrument filters unknown")?;
            let mut c = c;
            let a = c.tick(&env, now);
            drop(env);
            self.churners[k] = c;
            a
        };
        self.churn_translate(actions, now, &mut out);
        Ok((
            format!(
                "churner {id} spawned for position {} (slot {}, band {}, effective age {} h)",
                parent.position_id,
                parent.slot_id,
                parent.band.as_str(),
                parent.effective_age_hours.round_dp(2)
            ),
            out,
        ))
    }

    fn position_exit(
        &self,
        position_id: &str,
    ) -> Result<(usize, Position, SlotOrder), CommandError> {
        let p = self
            .ledger
            .position(position_id)
            .ok_or_else(|| CommandError::NotFound(format!("no position {position_id:?}")))?;
        if !p.is_open() {
            return Err(format!("position {position_id} is already closed").into());
        }
        let (i, o) = self
            .exit_of(p)
            .ok_or_else(|| format!("position {position_id} has no live exit in a slot"))?;
        if o.pending.is_some() {
            return Err(format!(
                "position {position_id}: a change of its exit is already under way"
            )
            .into());
        }
        Ok((i, p.clone(), o.clone()))
    }

    fn operator(&mut self, cmd: &Command, now: i64) -> Result<(String, Vec<Action>), CommandError> {
        match cmd {
            Command::SpawnChurner => Ok(self.spawn(now)?),
            Command::KillChurner { churner_id } => {
                let k = self
                    .churners
                    .iter()
                    .position(|c| c.id == *churner_id)
                    .ok_or_else(|| CommandError::NotFound(format!("no churner {churner_id}")))?;
                let a = self.churners[k].kill(now);
                let mut out = Vec::new();
                self.churn_translate(a, now, &mut out);
                let cancels = out.len();
                if self.churners[k].stage == churner::Stage::Idle {
                    self.churners.remove(k);
                }
                Ok((
                    format!("churner {churner_id} killed ({cancels} orders asked to cancel)"),
                    out,
                ))
            }
            Command::RepriceBreakEven { position_id } => {
                let (i, p, o) = self.position_exit(position_id)?;
                let f = self.filters().ok_or("instrument filters unknown")?;
                let market = self.market.as_ref().map_or(p.entry.price, |m| m.last);
                let target = heal::fillable_price(
                    &p,
                    market,
                    self.cfg.slot.entry_pct,
                    self.round_trip_fee(),
                    f.tick_size,
                );
                let cost = heal::full_cost(&p, target);
                if cost.is_zero() {
                    return Err(CommandError::Refused(format!(
                        "position {position_id}: exit {} is already at or inside break-even {target}",
                        p.exit.price
                    )));
                }
                let balance = self.spendable(p.slot_id);
                if balance < cost {
                    return Err(CommandError::Refused(format!(
                        "slot {} subsidy {} cannot pay {} to move the exit from {} to {target}",
                        p.slot_id,
                        money(balance),
                        money(cost),
                        p.exit.price
                    )));
                }
                self.pending_costs
                    .insert(o.client_order_id.clone(), (p.slot_id, cost));
                let ev = SlotEvent::Reprice {
                    client_order_id: o.client_order_id,
                    price: target,
                    reason: "break_even".into(),
                    now_ms: now,
                };
                let (out, _) = self.step_slot(i, &ev, 0, now);
                Ok((
                    format!(
                        "position {position_id}: exit {} -> {target} for {} of subsidy",
                        p.exit.price,
                        money(cost)
                    ),
                    out,
                ))
            }
            Command::CloseAtMarket { position_id } => {
                let (i, p, o) = self.position_exit(position_id)?;
                let gone = o
                    .orphan
                    .as_ref()
                    .is_some_and(|x| x.reason == slot::CANCELED_OUTSIDE);
                let ev = SlotEvent::CloseAtMarket {
                    client_order_id: o.client_order_id,
                    now_ms: now,
                };
                let (out, _) = self.step_slot(i, &ev, 0, now);
                let sends = out
                    .iter()
                    .any(|a| matches!(a, Action::Place(_) | Action::Cancel { .. }));
                if !sends {
                    let why = self
                        .slots
                        .get(i)
                        .and_then(|s| s.halted.clone())
                        .unwrap_or_else(|| "the slot sends nothing".into());
                    return Err(CommandError::Refused(format!(
                        "position {position_id}: cannot close at market: {why}"
                    )));
                }
                let message = if gone {
                    format!(
                        "position {position_id}: exit {} was already canceled; market order sent",
                        p.exit.price
                    )
                } else {
                    format!(
                        "position {position_id}: exit {} cancelling, then a market order (the exit comes back if it fails)",
                        p.exit.price
                    )
                };
                Ok((message, out))
            }
            Command::KeepHolding { position_id, hours } => {
                let p = self
                    .ledger
                    .position(position_id)
                    .filter(|p| p.is_open())
                    .ok_or_else(|| format!("no open position {position_id:?}"))?;
                let until = now + i64::from(*hours) * 3_600_000;
                let id = p.id.clone();
                let mut out = Vec::new();
                self.record(
                    LedgerEvent::Hold {
                        position_id: id,
                        until_ms: until,
                    },
                    &mut out,
                );
                Ok((
                    format!("position {position_id}: held, no self-healing for {hours} h"),
                    out,
                ))
            }
        }
    }
}

impl Strategy for Grid {
    fn name(&self) -> &str {
        STRATEGY_NAME
    }

    fn owns(&self, client_order_id: &str) -> bool {
        slot::is_slot_client_id(client_order_id) || churner::is_churner_client_id(client_order_id)
    }

    fn on_tick(&mut self, market: &MarketView, now: i64) -> Vec<Action> {
        self.roll_day(now);
        self.keep_loss();
        self.ticked_ms = now;
        self.keep_market(market);
        let open = self.internal_open();
        capacity::refresh(&mut self.capacity, market, open, now);
        let mut out = Vec::new();
        for (id, retry_at) in &mut self.restart_cancels {
            if retry_at.is_some_and(|t| t <= now) {
                *retry_at = None;
                out.push(Action::Cancel {
                    client_order_id: id.clone(),
                });
            }
        }
        if self.filters().is_none() || !crate::is_positive(market.last) {
            return out;
        }
        self.remember_price(now, market.last);
        if !self.filled_while_down.is_empty() {
            self.adopt_filled_entries(now, &mut out);
        }
        let mode = self.mode_for(market);
        for i in 0..self.slots.len() {
            if self.slots[i].mode != mode {
                let ev = SlotEvent::SetMode { mode, now_ms: now };
                out.extend(self.step_slot(i, &ev, 0, now).0);
            }
        }
        let mut budget = self.capacity.as_ref().map_or(0, |c| c.entries_allowed);
        // The gates, read again only after a transition that acted (a
        // quiet one changes nothing they read).
        let mut gates = self.entry_gates_open();
        let lf = heal::approx_f64(market.last);
        for i in 0..self.slots.len() {
            if self.skip_quiet_slot(i, market.last, lf, now) {
                continue;
            }
            // An entry retry's kept wake of the slot's other parts (the
            // step clears what it kept).
            let retry_of = self.entry_retry_of(i, market.last, lf, now);
            let ev = if retry_of.is_some() {
                self.entry_retries += 1;
                SlotEvent::EntryRetry {
                    market: market.last,
                    now_ms: now,
                }
            } else {
                SlotEvent::PriceTick {
                    market: market.last,
                    now_ms: now,
                }
            };
            let (a, used, quiet, refused_only) = self.step_slot_quiet(i, &ev, budget, now);
            budget = budget.saturating_sub(used);
            crate::strategy::append_actions(&mut out, a);
            // (A step whose entries were all refused booked nothing, moved
            // no capacity and changed no switch: the gates read the same.)
            if !quiet && !refused_only {
                gates = self.entry_gates_open();
            }
            #[cfg(test)]
            assert_eq!(gates, self.entry_gates_open(), "gates kept at slot {i}");
            // A tick whose entries the capital ledger all refused keeps its
            // wake too. It left the slot as a quiet tick at this price and
            // time would (the same orders: each refused entry is gone again;
            // the parts of the tick before the entries returned nothing),
            // but for the id counter, `last_error` and the refused trades'
            // re-entry times, now in the future. A later tick is skipped
            // only when its wake holds and no trade is due an entry
            // (`skip_quiet_slot`): then it places nothing, writes no
            // `last_error`, takes no id, the same as the tick it skips.
            if (quiet || refused_only) && self.skip_quiet {
                if !quiet {
                    self.refused_wakes += 1;
                }
                let entries_open = gates && budget > 0;
                let verified = self.verified.get(i).copied().unwrap_or(false);
                let kept = match retry_of {
                    // A retry whose entries were all refused: the slot's
                    // orders, exits, timers and bands are as the kept wake
                    // of its other parts read them (the refusals changed
                    // only re-entry times, the last error and the id
                    // counter), and that wake held at this tick, so it
                    // reads the same now; only the entries' part is new.
                    Some(prev) if verified && !quiet => {
                        self.kept_others += 1;
                        let wake =
                            slot::entries_wake(&self.slots[i], now, entries_open, prev.other);
                        // The entries' part bounds only the time: the
                        // price band is the other parts' (none when every
                        // tick).
                        let wake_band = match wake {
                            Wake::EveryTick => BandF::of(wake),
                            Wake::Quiet { .. } => prev.other_band,
                        };
                        #[cfg(test)]
                        assert_eq!(wake_band, BandF::of(wake), "kept band at slot {i}");
                        Some((wake, prev.other, wake_band, prev.other_band))
                    }
                    _ => None,
                };
                let (wake, other, wake_band, other_band) = match kept {
                    Some(k) => k,
                    None => {
                        let (wake, other) = if verified {
                            slot::wake_parts_verified(
                                &self.slots[i],
                                now,
                                &self.cfg.slot,
                                entries_open,
                            )
                        } else {
                            (self.slot_wake(i, now, entries_open), Wake::EveryTick)
                        };
                        (wake, other, BandF::of(wake), BandF::of(other))
                    }
                };
                if let Some(q) = self.quiet_slots.get_mut(i) {
                    *q = Some(QuietSlot {
                        at_ms: now,
                        entries_open,
                        wake,
                        other,
                        wake_band,
                        other_band,
                    });
                }
            }
        }
        self.heal(market.last, now, &mut out);
        self.tick_churners(market, now, &mut out);
        out
    }

    fn wake(&self) -> Wake {
        self.quiet()
    }

    /// What [`Grid::on_tick`] stores at a tick the wake covers, without
    /// its decisions (see [`Grid::quiet`] for what such a tick stores): the
    /// day roll, the tick's time, the view (its prices, balances and
    /// counts: the rest is the last tick's) and instrument, the capacity
    /// reading, the recent price and each slot's market. Due restart
    /// cancels, a day's end and every slot's timers and price bands bound
    /// the wake, so none is due; self-healing moves nothing where its wake
    /// holds. An adopted fill waiting, a churner or a mode to change make
    /// the wake every tick: a tick then runs whole.
    fn on_quiet_tick(&mut self, market: &MarketView, now: i64) -> Vec<Action> {
        if !self.filled_while_down.is_empty() || !self.churners.is_empty() {
            return self.on_tick(market, now);
        }
        let mode = self.mode_for(market);
        if self.slots.iter().any(|s| s.mode != mode) {
            return self.on_tick(market, now);
        }
        self.roll_day(now);
        self.ticked_ms = now;
        // The promise covers a view that differs from the last tick's only
        // in prices and the balances' time: the symbol, instrument and
        // regime stay (its scalars copied, the balances and counts too; a
        // view with another symbol, regime or no instrument is kept whole).
        match self.market.as_mut() {
            Some(kept)
                if kept.instrument.is_some()
                    && market.instrument.is_some()
                    && kept.symbol == market.symbol
                    && kept.regime == market.regime =>
            {
                crate::strategy::keep_view_scalars(kept, market);
            }
            _ => self.keep_market(market),
        }
        let open = self.internal_open();
        capacity::refresh(&mut self.capacity, market, open, now);
        if self.filters().is_none() || !crate::is_positive(market.last) {
            return Vec::new();
        }
        self.remember_price(now, market.last);
        for s in &mut self.slots {
            s.market = Some(market.last);
        }
        Vec::new()
    }

    fn set_journal_filter(&mut self, keep: fn(&str) -> bool) {
        self.journal_keep = Some(keep);
    }

    fn on_order(&mut self, u: &OrderUpdate, now: i64) -> Vec<Action> {
        self.roll_day(now);
        let id = u.client_order_id.as_str();
        if let Some(retry_at) = self.restart_cancels.get_mut(id) {
            match u.kind {
                UpdateKind::Open | UpdateKind::PartialFill => {}
                // Refused (a lockout, a lost connection): ask again later,
                // unless the venue no longer has it.
                UpdateKind::CancelFailed
                    if !u.message.to_ascii_lowercase().contains("not found") =>
                {
                    *retry_at = Some(now + RESTART_CANCEL_RETRY_MS);
                }
                _ => {
                    self.restart_cancels.remove(id);
                }
            }
        }
        match u.kind {
            UpdateKind::Open | UpdateKind::PartialFill => {
                self.capital.commit(id, now);
            }
            UpdateKind::CancelFailed => {}
            _ => {
                self.capital.release(id);
            }
        }
        if let Some(i) = self.slots.iter().position(|s| s.tracks(id)) {
            let recovery = self.slots[i].is_recovery(id);
            let fee = self.fee_in_quote(u);
            let ev = match u.kind {
                UpdateKind::Open => return Vec::new(),
                UpdateKind::PartialFill | UpdateKind::Filled => {
                    let done = u.kind == UpdateKind::Filled;
                    if recovery {
                        SlotEvent::RecoveryFill {
                            client_order_id: id.into(),
                            volume: u.fill_volume,
                            price: u.fill_price,
                            fee,
                            done,
                            now_ms: now,
                        }
                    } else {
                        SlotEvent::Fill {
                            client_order_id: id.into(),
                            volume: u.fill_volume,
                            price: u.fill_price,
                            fee,
                            done,
                            now_ms: now,
                        }
                    }
                }
                UpdateKind::Canceled | UpdateKind::Expired => {
                    if recovery {
                        SlotEvent::RecoveryCancel {
                            client_order_id: id.into(),
                            now_ms: now,
                        }
                    } else {
                        SlotEvent::Canceled {
                            client_order_id: id.into(),
                            now_ms: now,
                        }
                    }
                }
                UpdateKind::Rejected | UpdateKind::PlaceFailed => SlotEvent::Refused {
                    client_order_id: id.into(),
                    message: u.message.clone(),
                    now_ms: now,
                },
                UpdateKind::CancelFailed => SlotEvent::CancelFailed {
                    client_order_id: id.into(),
                    message: u.message.clone(),
                    now_ms: now,
                },
            };
            return self.step_slot(i, &ev, 0, now).0;
        }
        if let Some(k) = self.churners.iter().position(|c| c.tracks(id)) {
            let Some(market) = self.market.clone() else {
                return Vec::new();
            };
            let fee = self.fee_in_quote(u);
            let n = u32::try_from(self.churners.len()).unwrap_or(u32::MAX);
            let gate = self.gate_for(&market, n.saturating_sub(1), now);
            let actions = {
                let c = self.churners[k].clone();
                let Some(env) = self.churn_env(Some(&c), &market, gate, now) else {
                    return Vec::new();
                };
                let mut c = c;
                let a = c.on_order(
                    id,
                    (u.fill_volume, u.fill_price, fee),
                    u.kind == UpdateKind::Filled,
                    matches!(u.kind, UpdateKind::Canceled | UpdateKind::Expired),
                    matches!(u.kind, UpdateKind::Rejected | UpdateKind::PlaceFailed)
                        .then_some(u.message.as_str()),
                    (u.kind == UpdateKind::CancelFailed).then_some(u.message.as_str()),
                    &env,
                    now,
                );
                drop(env);
                self.churners[k] = c;
                a
            };
            let mut out = Vec::new();
            self.churn_translate(actions, now, &mut out);
            self.churners
                .retain(|c| !(c.killed && c.stage == churner::Stage::Idle));
            return out;
        }
        Vec::new()
    }

    fn status(&self, now: i64) -> StatusBlock {
        StatusBlock::Grid(Box::new(self.status_block(now)))
    }

    fn enabled(&self) -> bool {
        self.enabled
    }

    fn set_enabled(&mut self, enabled: bool, _now: i64) -> Option<Vec<Action>> {
        // Off stops new entries; positions keep their exits.
        self.enabled = enabled;
        Some(Vec::new())
    }

    /// Slot knobs, mode, daily loss limit, volatility profit, healing and
    /// churner knobs apply from the next decision; slots, positions, the
    /// ledger and churners stay. The slot count, sticky slots and userref
    /// offsets are restart-only. A change of `enabled` in the file switches
    /// the grid as the RPC does.
    fn reconfigure(&mut self, params: &crate::strategy::Params<'_>, now: i64) -> Vec<Action> {
        let mut cfg = params.grid.clone();
        cfg.slots = self.cfg.slots;
        cfg.sticky = self.cfg.sticky.clone();
        cfg.userref_offset = self.cfg.userref_offset;
        cfg.churner.userref_offset = self.cfg.churner.userref_offset;
        let switched = cfg.enabled != self.cfg.enabled;
        self.cfg = cfg;
        self.forget_quiet_slots();
        if switched {
            return self.set_enabled(self.cfg.enabled, now).unwrap_or_default();
        }
        Vec::new()
    }

    fn journal_stream(&self) -> Option<&str> {
        Some(JOURNAL_STREAM)
    }

    fn position_orders(&self) -> Vec<crate::strategy::PositionOrderRef> {
        self.ledger
            .open_positions()
            .filter(|p| !p.exit.order_id.is_empty())
            .map(|p| crate::strategy::PositionOrderRef {
                position_id: p.id.clone(),
                client_order_id: p.exit.order_id.clone(),
            })
            .collect()
    }

    fn restore(&mut self, journal: &[JournalRow], known: &[KnownOrder], now: i64) -> Vec<Action> {
        let mut out = Vec::new();
        if self.restored {
            return out;
        }
        self.restored = true;
        self.forget_quiet_slots();
        match Ledger::replay(
            journal
                .iter()
                .map(|r| (r.kind.as_str(), r.payload.as_str())),
        ) {
            Ok(l) => self.ledger = l,
            Err(e) => {
                tracing::error!(error = %e, "grid ledger replay failed; starting with what parsed");
            }
        }
        let by_id: BTreeMap<&str, &KnownOrder> = known
            .iter()
            .map(|k| (k.client_order_id.as_str(), k))
            .collect();
        // Entries and churner orders a previous run left open: cancel them
        // (cheap to place again); churner positions are closed as cancelled.
        for k in known {
            if !k.open_at_venue {
                continue;
            }
            let id = k.client_order_id.as_str();
            let is_entry = slot::parse_slot_client_id(id).is_some_and(|(_, _, r)| r == Role::Entry);
            if is_entry || churner::is_churner_client_id(id) {
                out.push(Action::Cancel {
                    client_order_id: id.to_string(),
                });
                self.restart_cancels.insert(id.to_string(), None);
            }
        }
        // Entries that filled while no one was watching: their positions
        // open on the first tick (the instrument's filters are needed to
        // price their exits).
        self.filled_while_down = known
            .iter()
            .filter(|k| {
                slot::parse_slot_client_id(&k.client_order_id)
                    .is_some_and(|(_, _, r)| r == Role::Entry)
                    && !k.open_at_venue
                    && k.volume_executed > Decimal::ZERO
                    && k.average_price > Decimal::ZERO
                    && !self.ledger.contains(&k.client_order_id)
            })
            .cloned()
            .collect();
        let open: Vec<Position> = self.ledger.open_positions().cloned().collect();
        for p in open {
            if p.mode == PositionMode::Churner {
                let ev = LedgerEvent::Close {
                    position_id: p.id.clone(),
                    outcome: Outcome {
                        kind: "abandoned_at_restart".into(),
                        exit_price: p.entry.price,
                        exit_fee: Decimal::ZERO,
                        gross: Decimal::ZERO,
                        net: -p.entry.fee,
                        time_ms: now,
                    },
                };
                self.record(ev, &mut out);
                continue;
            }
            let order = by_id.get(p.exit.order_id.as_str());
            let trade = if p.trade == "A" { Trade::A } else { Trade::B };
            let Some(i) = self.slots.iter().position(|s| s.id == p.slot_id) else {
                continue;
            };
            match order {
                Some(k) if k.status == "filled" => {
                    let exit_price = if k.average_price > Decimal::ZERO {
                        k.average_price
                    } else {
                        p.exit.price
                    };
                    let gross = trade.gross(p.entry.price, exit_price, p.entry.volume);
                    let c = CycleRecord {
                        slot_id: p.slot_id,
                        trade,
                        kind: CycleKind::Exit,
                        position_id: p.id.clone(),
                        exit_order_id: k.client_order_id.clone(),
                        entry_price: p.entry.price,
                        exit_price,
                        volume: p.entry.volume,
                        entry_fee: p.entry.fee,
                        exit_fee: k.fee,
                        gross: gross.normalize(),
                        net: (gross - p.entry.fee - k.fee).normalize(),
                        target_price: p.exit.original_price,
                        time_ms: now,
                    };
                    self.book_cycle(&c, &mut out);
                }
                other => {
                    let live = other.is_some_and(|k| k.open_at_venue);
                    let o = SlotOrder {
                        client_order_id: p.exit.order_id.clone(),
                        trade,
                        role: Role::Exit,
                        side: trade.exit_side(),
                        price: Some(p.exit.price),
                        volume: p.entry.volume,
                        placed_at_ms: p.entry.time_ms,
                        market_at_place: p.entry.price,
                        executed: Decimal::ZERO,
                        avg_price: Decimal::ZERO,
                        fee: Decimal::ZERO,
                        position_id: p.id.clone(),
                        entry_price: p.entry.price,
                        entry_fee: p.entry.fee,
                        entry_time_ms: p.entry.time_ms,
                        target_price: p.exit.original_price,
                        pending: None,
                        retry_at_ms: None,
                        orphan: None,
                    };
                    if live {
                        // An exit at the venue holds its funds as it did
                        // before the restart (acknowledged: committed).
                        let (asset, amount) = self.hold_of(o.side, o.volume, o.price);
                        self.capital.hold(&o.client_order_id, asset, amount, now);
                        self.capital.commit(&o.client_order_id, now);
                    }
                    slot::adopt_exit(&mut self.slots[i], o, live, now);
                    self.touch_heal();
                    if let Some(v) = self.verified.get_mut(i) {
                        *v = false;
                    }
                    if let Some(q) = self.quiet_slots.get_mut(i) {
                        *q = None;
                    }
                }
            }
        }
        out
    }

    fn command(
        &mut self,
        cmd: &Command,
        now: i64,
    ) -> Option<Result<(String, Vec<Action>), CommandError>> {
        self.forget_quiet_slots();
        Some(self.operator(cmd, now))
    }
}

/// The time before which no position of `kept` can reach a band where a
/// tick would move it, for any price in `(lo, hi)` (f64, `lo` > 0): `Some`
/// of that bound (`None`: none), or `None` when one may move now (the wake
/// is every tick).
fn heal_bound(kept: &HealInputs, lo: f64, hi: f64, now: i64) -> Option<Option<i64>> {
    const HOUR_MS: f64 = 3_600_000.0;
    const MARGIN: f64 = 1e-9;
    let (div, stale, stuck) = (kept.div, kept.stale, kept.stuck);
    if !(lo > 0.0 && hi >= lo && div > 0.0 && stale.is_finite() && stuck.is_finite()) {
        return None;
    }
    // The time bounds, taken together at the end (`before` of each in turn
    // gives the earliest).
    let mut before: Option<i64> = None;
    let mut take = |t: i64| before = Some(before.map_or(t, |b| b.min(t)));
    for p in &kept.items {
        if let Some(t) = p.hold_until_ms
            && now < t
        {
            take(t);
            continue;
        }
        if !p.live {
            continue;
        }
        let e = p.exit;
        let dist = |m: f64| (e - m).abs() / m * 100.0;
        let dmax = dist(lo).max(dist(hi));
        let dmin = if (lo..=hi).contains(&e) {
            0.0
        } else {
            dist(lo).min(dist(hi))
        };
        if !(e.is_finite() && dmax.is_finite()) {
            return None;
        }
        let age_now = (now - p.entry_ms).max(0) as f64 / HOUR_MS;
        let eff_lo = age_now * (1.0 + dmin / div) * (1.0 - MARGIN);
        let eff_hi = age_now * (1.0 + dmax / div) * (1.0 + MARGIN);
        let has_subsidy = p.has_subsidy;
        let cooling = p.cooldown_end_ms.filter(|end| now < *end);
        if has_subsidy && let Some(end) = cooling {
            take(end);
        }
        // Where a tick may act: stale before the free tighten; stuck
        // and later with subsidy to spend, out of the cooldown.
        let stale_acts = !p.tightened;
        let stuck_acts = has_subsidy && cooling.is_none();
        if stale_acts && eff_lo < stuck && eff_hi >= stale {
            return None;
        }
        if stuck_acts && eff_hi >= stuck {
            return None;
        }
        let edge = if stale_acts && eff_hi < stale {
            Some(stale)
        } else if stuck_acts {
            Some(stuck)
        } else {
            None
        };
        if let Some(edge) = edge {
            let age_h = edge * (1.0 - MARGIN) / (1.0 + dmax * (1.0 + MARGIN) / div);
            let at = p.entry_ms as f64 + (age_h * HOUR_MS).floor() - 1.0;
            if !at.is_finite() || at <= now as f64 {
                return None;
            }
            // Saturating: far beyond any run.
            take(at.min(i64::MAX as f64 / 2.0) as i64);
        }
    }
    Some(before)
}

/// `w.inside(Some(band.lo), Some(band.hi))`: each side's bound chosen in
/// f64 where the two readings are certainly apart (a 1e-9 relative
/// margin), by the Decimal comparison only where they are not.
fn inside_screened(w: Wake, band: &HealBand) -> Wake {
    let Wake::Quiet {
        before_ms,
        above,
        below,
    } = w
    else {
        return w;
    };
    const M: f64 = 1e-9;
    let f = heal::approx_f64;
    // The greater of `above` and the band's low edge.
    let above = Some(match above {
        None => band.lo,
        Some(a) => {
            let af = f(a);
            if af > band.lo_f * (1.0 + M) {
                a
            } else if af < band.lo_f * (1.0 - M) {
                band.lo
            } else {
                a.max(band.lo)
            }
        }
    });
    // The lesser of `below` and the band's high edge.
    let below = Some(match below {
        None => band.hi,
        Some(b) => {
            let bf = f(b);
            if bf < band.hi_f * (1.0 - M) {
                b
            } else if bf > band.hi_f * (1.0 + M) {
                band.hi
            } else {
                b.min(band.hi)
            }
        }
    });
    Wake::Quiet {
        before_ms,
        above,
        below,
    }
}

/// `d * (k / 100)`, the bytes `d * Decimal::new(k, 2)` gives, without the
/// general multiplication when the product's mantissa is plainly in range
/// (then that product is the mantissas' product at the scales' sum, exact).
fn times_hundredths(d: Decimal, k: i64) -> Decimal {
    let m = d.mantissa();
    let scale = d.scale() + 2;
    // (A zero product is plain zero, scale 0: the general path.)
    let plain =
        scale <= 28 && m != 0 && k != 0 && m.unsigned_abs() < 1 << 88 && k.unsigned_abs() < 1 << 7;
    if plain && let Ok(p) = Decimal::try_from_i128_with_scale(m * i128::from(k), scale) {
        return p;
    }
    d * Decimal::new(k, 2)
}

/// What an order holds: (asset, amount) (see [`Grid::hold_of`]).
fn hold_of(
    instrument: Option<&Instrument>,
    market: Option<&MarketView>,
    maker_fee: Decimal,
    side: Side,
    volume: Decimal,
    price: Option<Decimal>,
) -> (Asset, Decimal) {
    match side {
        Side::Sell => (Asset::Base, volume),
        Side::Buy => {
            let (p, fee) = match (price, instrument) {
                (Some(p), Some(i)) => (p, i.maker_fee),
                (None, Some(i)) => (
                    market.map_or(Decimal::ZERO, |m| m.ask.max(m.last)),
                    i.taker_fee,
                ),
                (p, None) => (p.unwrap_or_default(), maker_fee),
            };
            (Asset::Quote, volume * p * (Decimal::ONE + fee))
        }
    }
}

/// The venue's free balance of `asset` in the market view, if known.
fn snapshot(market: Option<&MarketView>, asset: Asset) -> Option<FreeBalance> {
    let m = market?;
    let free = match asset {
        Asset::Base => m.free_base,
        Asset::Quote => m.free_quote,
    }?;
    Some(FreeBalance {
        free,
        as_of_ms: m.balances_as_of_ms,
    })
}

/// The grid's capital ledger as a slot transition sees it before any order
/// of that transition went out: what `Grid::translate`'s reservation of an
/// entry would say (the hold it computes, the duplicate check, then the
/// balance check against the same snapshot).
struct LedgerCheck<'a> {
    capital: &'a CapitalLedger,
    instrument: Option<&'a Instrument>,
    market: Option<&'a MarketView>,
    maker_fee: Decimal,
}

impl slot::EntryCheck for LedgerCheck<'_> {
    fn refusal(
        &self,
        client_order_id: &str,
        side: Side,
        volume: Decimal,
        price: Option<Decimal>,
    ) -> Option<CapitalError> {
        let (asset, amount) = hold_of(
            self.instrument,
            self.market,
            self.maker_fee,
            side,
            volume,
            price,
        );
        if self.capital.is_held(client_order_id) {
            return Some(CapitalError::Duplicate(client_order_id.to_string()));
        }
        self.capital
            .check(asset, amount, Decimal::ZERO, snapshot(self.market, asset))
            .err()
    }

    fn funds(&self, side: Side) -> Option<(Asset, Decimal, Decimal)> {
        let asset = match side {
            Side::Sell => Asset::Base,
            Side::Buy => Asset::Quote,
        };
        // The fee `hold_of` adds to a limit buy.
        let buy_fee = self.instrument.map_or(self.maker_fee, |i| i.maker_fee);
        let available = self
            .capital
            .available(asset, snapshot(self.market, asset))?;
        Some((asset, available, buy_fee))
    }

    fn is_held(&self, client_order_id: &str) -> bool {
        self.capital.is_held(client_order_id)
    }

    fn holds_prefix(&self, prefix: &str) -> bool {
        self.capital.holds_prefix(prefix)
    }
}

#[cfg(test)]
mod quiet_slot_tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;
    use crate::strategy::RegimeView;

    const T0: i64 = 1_700_000_000_000;

    fn market(last: Decimal, now: i64, free_quote: Decimal) -> MarketView {
        MarketView {
            instrument: Some(crate::testing::doge_usd(225)),
            free_base: Some(Decimal::from(50_000)),
            free_quote: Some(free_quote),
            open_orders_on_pair: Some(0),
            regime: RegimeView {
                regime: "RANGING".into(),
                ready: true,
                confidence: 0.9,
                bias: 0.0,
            },
            balances_as_of_ms: now,
            ..MarketView::prices("DOGEUSD", last, last, last)
        }
    }

    fn update(id: &str, kind: UpdateKind, volume: Decimal, price: Decimal) -> OrderUpdate {
        OrderUpdate {
            client_order_id: id.into(),
            kind,
            volume_executed: volume,
            average_price: (!volume.is_zero()).then_some(price),
            fill_volume: volume,
            fill_price: price,
            fill_fee: volume * price * Decimal::new(25, 4),
            fee_asset: "USD".into(),
            message: String::new(),
        }
    }

    /// The same grid twice, one skipping quiet slots' price ticks, walked
    /// through a wandering price with every order acknowledged, filled when
    /// the price crosses it and cancelled when asked: the same actions,
    /// wakes and status at every step, and skips did happen.
    #[test]
    fn skipping_quiet_slots_changes_nothing() {
        // Balances that cover the entries, then ones too low for most buys
        // (the capital ledger refuses them: the refused ticks keep wakes).
        for low in [false, true] {
            walk_skipping_and_not(low, false, true);
        }
    }

    /// The same grid twice, one asking the capital ledger before an entry
    /// goes out (`slot::transition_checked`), one placing the entries and
    /// taking the ledger's refusals after, walked with quote balances of
    /// $0-3 (most buy entries refused, sells placed): the same actions,
    /// wakes, status and slot states (id counters, last errors, re-entry
    /// times) at every step, and entries were refused before going out.
    #[test]
    fn refusing_entries_in_the_transition_changes_nothing() {
        // Both skipping quiet slots, then the old path without the skips.
        walk_skipping_and_not(true, true, false);
        walk_skipping_and_not(true, false, false);
        // Balances that cover the entries: few refusals, the same.
        walk_skipping_and_not(false, true, false);
        // Base and quote balances each low at times: both trades refused,
        // or one refused and the other placed, with the loop's entry budget
        // running out (a refused entry uses a slot's budget as a placed one
        // did).
        walk(Walk::Mixed, true, false);
        walk(Walk::Mixed, false, false);
    }

    /// The balances a walk gives the grid.
    #[derive(Clone, Copy, PartialEq)]
    enum Walk {
        /// Quote $2,000-5,000.
        Covered,
        /// Quote $0-3, a 300 s re-entry delay.
        Low,
        /// Quote $0-3 or $2,000, base 0 or 50,000, a 300 s re-entry delay.
        Mixed,
    }

    fn walk_skipping_and_not(low: bool, slow_skips: bool, slow_prechecks: bool) {
        let kind = if low { Walk::Low } else { Walk::Covered };
        walk(kind, slow_skips, slow_prechecks);
    }

    /// Walks `fast` (skipping quiet slots, refusing entries in the
    /// transition) against `slow` (each as told), comparing at every step.
    fn walk(kind: Walk, slow_skips: bool, slow_prechecks: bool) {
        let low = kind != Walk::Covered;
        let mut cfg = GridConfig {
            enabled: true,
            slots: 3,
            ..GridConfig::default()
        };
        cfg.heal.enabled = true;
        // Bands a 50-hour walk reaches: stale exits tightened, stuck ones
        // moved with subsidy (and its cooldown).
        cfg.heal.aging_hours = Decimal::from(2);
        cfg.heal.stale_hours = Decimal::from(5);
        cfg.heal.stuck_hours = Decimal::from(10);
        cfg.heal.write_off_hours = Decimal::from(40);
        if low {
            // A re-entry delay longer than a step: the ticks after a
            // refusal can be skipped.
            cfg.slot.reentry_delay_sec = 300;
        }
        let mut fast = Grid::new(cfg.clone(), "DOGEUSD", T0);
        let mut slow = Grid::new(cfg, "DOGEUSD", T0);
        slow.skip_quiet = slow_skips;
        slow.precheck = slow_prechecks;
        slow.heal_from_kept = false;
        slow.entry_retry = false;
        // Open orders: (id, side, price, volume).
        let mut open: Vec<(String, Side, Decimal, Decimal)> = Vec::new();
        let mut seed: u64 = 7;
        let mut price = Decimal::new(12, 2);
        let handle = |fast: &mut Grid,
                      slow: &mut Grid,
                      open: &mut Vec<(String, Side, Decimal, Decimal)>,
                      first: Vec<Action>,
                      now: i64| {
            let mut queue = vec![first];
            while let Some(actions) = queue.pop() {
                for a in actions {
                    let u = match a {
                        // Now and then the venue rejects an exit (the slot
                        // retries it later, returning nothing now).
                        Action::Place(i) if rejects_exit(&i.client_order_id) => update(
                            &i.client_order_id,
                            UpdateKind::Rejected,
                            Decimal::ZERO,
                            Decimal::ZERO,
                        ),
                        Action::Place(i) => {
                            let u = update(
                                &i.client_order_id,
                                UpdateKind::Open,
                                Decimal::ZERO,
                                Decimal::ZERO,
                            );
                            open.push((
                                i.client_order_id,
                                i.side,
                                i.price.unwrap_or_default(),
                                i.volume,
                            ));
                            u
                        }
                        Action::Cancel { client_order_id } => {
                            let Some(k) = open.iter().position(|o| o.0 == client_order_id) else {
                                continue;
                            };
                            open.remove(k);
                            update(
                                &client_order_id,
                                UpdateKind::Canceled,
                                Decimal::ZERO,
                                Decimal::ZERO,
                            )
                        }
                        _ => continue,
                    };
                    let a1 = fast.on_order(&u, now);
                    let a2 = slow.on_order(&u, now);
                    assert_eq!(a1, a2, "on_order at {now}");
                    heal_wake_as_fresh(fast, "on_order");
                    heal_wake_as_fresh(slow, "on_order");
                    queue.push(a1);
                }
            }
        };
        let mut skips_seen = 0;
        // The last tick's view and the wake read after it, while no other
        // call reached the grid since: a tick it holds for (at the same
        // balances) is replayed on `fast` as the backtest replays a skipped
        // one (`on_quiet_tick`) and run whole on `slow`.
        let mut promise: Option<(Wake, MarketView)> = None;
        let mut quiet_ticks = 0;
        let mut refusals = 0;
        let mut heal_bounded = 0;
        let mut heal_reads = 0;
        let (mut subsidised, mut tightened) = (0, 0);
        for step in 0..3_000_i64 {
            let now = T0 + step * 60_000;
            seed = crate::testing::lcg(seed);
            let r = i64::try_from((seed >> 33) % 2001).unwrap() - 1000;
            // Mostly small moves, now and then a jump of up to 3 %.
            let scale = if seed.is_multiple_of(17) { 30 } else { 3 };
            price = (price * (Decimal::ONE + Decimal::new(r * scale, 7))).round_dp(7);
            let free_quote = match kind {
                Walk::Mixed if step % 4 == 3 => Decimal::from(2_000),
                Walk::Low | Walk::Mixed => Decimal::from(step % 4),
                Walk::Covered => Decimal::from(2_000 + (step % 7) * 500),
            };
            // Fills first: what the price crossed.
            let crossed: Vec<_> = open
                .iter()
                .filter(|o| match o.1 {
                    Side::Buy => price <= o.2,
                    Side::Sell => price >= o.2,
                })
                .cloned()
                .collect();
            for (id, _, p, v) in crossed {
                promise = None;
                open.retain(|o| o.0 != id);
                // One fill in three at the price that crossed the order (a
                // gap: better than its limit; exits filled better than
                // their target pay the slot's subsidy).
                let p = if seed.is_multiple_of(3) { price } else { p };
                let u = update(&id, UpdateKind::Filled, v, p);
                let a1 = fast.on_order(&u, now);
                let a2 = slow.on_order(&u, now);
                assert_eq!(a1, a2, "fill at step {step}");
                heal_wake_as_fresh(&fast, "fill");
                handle(&mut fast, &mut slow, &mut open, a1, now);
            }
            let mut m = market(price, now, free_quote);
            if kind == Walk::Mixed && step % 3 == 0 {
                m.free_base = Some(Decimal::ZERO);
            }
            let quiet = match promise.take() {
                Some((w, kept)) if w.holds(price, now) => {
                    m = MarketView {
                        last: price,
                        bid: price,
                        ask: price,
                        balances_as_of_ms: now,
                        ..kept
                    };
                    true
                }
                _ => false,
            };
            let before = fast.quiet_skips;
            let a1 = if quiet {
                quiet_ticks += 1;
                fast.on_quiet_tick(&m, now)
            } else {
                fast.on_tick(&m, now)
            };
            let a2 = slow.on_tick(&m, now);
            assert_eq!(a1, a2, "tick at step {step} (quiet: {quiet})");
            skips_seen += fast.quiet_skips - before;
            assert_eq!(fast.wake(), slow.wake(), "wake at step {step}");
            heal_bounded += usize::from(heal_wake_as_fresh(&fast, "tick"));
            for item in &fast.heal_inputs.borrow().items {
                subsidised += usize::from(item.has_subsidy);
                tightened += usize::from(item.tightened && item.cooldown_end_ms.is_some());
            }
            assert_eq!(
                fast.status_block(now),
                slow.status_block(now),
                "status at step {step}"
            );
            // The whole slots: id counters, re-entry times, last errors.
            assert_eq!(
                format!("{:?}", fast.slots()),
                format!("{:?}", slow.slots()),
                "slots at step {step}"
            );
            refusals += slow
                .slots()
                .iter()
                .filter(|s| s.last_error.contains("refused: capital"))
                .count();
            if a1.is_empty() {
                promise = Some((fast.wake(), m));
            }
            handle(&mut fast, &mut slow, &mut open, a1, now);
            heal_reads += 1;
        }
        assert!(skips_seen > 100, "only {skips_seen} slot ticks skipped");
        assert!(quiet_ticks > 100, "only {quiet_ticks} quiet ticks replayed");
        // Self-healing bounded the wake at many ticks, and its inputs were
        // kept across most wake reads (at least one a step, more after
        // order updates).
        assert!(heal_bounded > 100, "healing bounded {heal_bounded} wakes");
        assert!(
            subsidised > 100 && tightened > 100,
            "positions seen with subsidy {subsidised}, tightened {tightened}"
        );
        if low {
            assert!(
                fast.entry_retries > 100 && slow.entry_retries == 0,
                "{} ticks only placed entries",
                fast.entry_retries
            );
        }
        let kept_bounds = fast.heal_inputs.borrow().bound_kept;
        assert!(
            kept_bounds > 100,
            "the kept healing bound served {kept_bounds} wakes"
        );
        let reads = fast.heal_inputs.borrow().reads;
        assert!(
            reads > 10 && reads * 3 < heal_reads,
            "{reads} fresh reads of the healing inputs in {heal_reads} steps"
        );
        if low && !slow_prechecks {
            assert!(
                fast.prechecked > 100 && slow.prechecked == 0,
                "{} / {} entries refused in the transition",
                fast.prechecked,
                slow.prechecked
            );
            // Both ways: on the screen, and with the amount computed.
            assert!(
                fast.prechecked_lazy > 20 && fast.prechecked_lazy < fast.prechecked,
                "{} entries refused on the screen",
                fast.prechecked_lazy
            );
        }
        if low {
            assert!(refusals > 100, "only {refusals} refusals seen");
            assert!(
                fast.refused_wakes > 20,
                "only {} refused ticks kept a wake",
                fast.refused_wakes
            );
            // Refused retries read the slot's wake from the kept wake of
            // its other parts, and the wakes compared equal above.
            assert!(
                fast.kept_others > 20 && slow.kept_others == 0,
                "only {} refused retries read the kept wake",
                fast.kept_others
            );
        }
        assert!(
            fast.ledger().position_count() > 5,
            "few positions: the walk traded too little"
        );
    }

    /// Whether the walk's venue rejects this order: one exit in five, by
    /// its id.
    fn rejects_exit(client_order_id: &str) -> bool {
        let exit = client_order_id
            .strip_prefix('g')
            .and_then(|r| r.trim_start_matches(|c: char| c.is_ascii_digit()).get(1..2))
            == Some("x");
        let sum: u32 = client_order_id.bytes().map(u32::from).sum();
        exit && sum.is_multiple_of(5)
    }

    /// `g`'s wake (self-healing from its kept inputs) equals the one read
    /// with every position, exit and subsidy read afresh, and the kept
    /// inputs equal those read afresh; returns whether self-healing bounded
    /// the wake (it differs from the wake without).
    fn heal_wake_as_fresh(g: &Grid, at: &str) -> bool {
        let kept = g.wake();
        if g.heal_inputs.borrow().read_at == Some(g.heal_gen) {
            let mut fresh = HealInputs::default();
            g.read_heal_inputs(&mut fresh);
            assert_eq!(
                g.heal_inputs.borrow().items,
                fresh.items,
                "healing inputs after {at} at {}",
                g.ticked_ms
            );
        }
        assert_eq!(
            kept,
            g.quiet_with(Grid::heal_wake_fresh),
            "healing wake after {at} at {}",
            g.ticked_ms
        );
        kept != g.quiet_with(|_, w, _, _| w)
    }

    /// Wherever the 1 % screen says a wake's band is within, the exact
    /// `inside` leaves the wake as it is (to the byte), over bounds swept in
    /// steps of about 1e-10 across both edges, at several prices and scales.
    /// `times_hundredths` gives the bytes of the Decimal product, over
    /// mantissas of every size (up to the largest), scales 0-28 and both
    /// signs.
    #[test]
    fn times_hundredths_is_the_decimal_product_to_the_byte() {
        let mut seed: u64 = 11;
        let mut fast = 0;
        for scale in 0..=28_u32 {
            for k in 0..300 {
                seed = crate::testing::lcg(seed);
                let m: i128 = match k % 5 {
                    0 => i128::from(seed % 10_000_000),
                    1 => i128::from(seed >> 1),
                    2 => (i128::from(seed) << 24) | i128::from(seed >> 40),
                    3 => (i128::from(seed) << 32) | i128::from(seed >> 32),
                    _ => -i128::from(seed >> 3),
                };
                let Ok(d) = Decimal::try_from_i128_with_scale(m, scale) else {
                    continue;
                };
                for f in [99, 101, 100, 1, 0] {
                    // (Past the largest Decimal the product overflows, in
                    // both: not compared.)
                    let Some(want) = d.checked_mul(Decimal::new(f, 2)) else {
                        continue;
                    };
                    assert_eq!(
                        times_hundredths(d, f).serialize(),
                        want.serialize(),
                        "{d} * {f}/100"
                    );
                    fast += usize::from(scale <= 26 && m.unsigned_abs() < 1 << 88);
                }
            }
        }
        assert!(fast > 1000, "{fast}");
        for d in [
            Decimal::MAX,
            Decimal::MIN,
            Decimal::ZERO,
            Decimal::new(12, 2),
        ] {
            assert_eq!(
                times_hundredths(d, 99).serialize(),
                (d * Decimal::new(99, 2)).serialize()
            );
        }
    }

    /// The constant factors of the 1 % band are those it computed before.
    #[test]
    fn the_one_pct_factors_are_the_ones_computed_before() {
        let one_pct = Decimal::new(1, 2);
        assert_eq!(
            (Decimal::ONE - one_pct).serialize(),
            Decimal::new(99, 2).serialize()
        );
        assert_eq!(
            (Decimal::ONE + one_pct).serialize(),
            Decimal::new(101, 2).serialize()
        );
    }

    /// `inside_screened` is `Wake::inside` of the healing band to the
    /// byte, over bounds swept in steps of about 1e-10 across both edges
    /// (where the f64 screen must leave the choice to the Decimals), at
    /// several prices and scales, and for one-sided and unbounded wakes.
    #[test]
    fn the_screened_band_is_the_exact_one() {
        let mut within = 0;
        let mut checked = 0;
        for last in [
            Decimal::new(12, 2),
            Decimal::new(1234567, 7),
            Decimal::new(98765, 5),
            Decimal::new(3, 0),
        ] {
            let lo = last * Decimal::new(99, 2);
            let hi = last * Decimal::new(101, 2);
            for k in -2000_i64..=2000 {
                // About k * 1e-10 relative around each edge; other side wide.
                let d = Decimal::new(k, 10);
                for (a, b) in [
                    (lo * (Decimal::ONE + d), last),
                    (last, hi * (Decimal::ONE + d)),
                ] {
                    let w = Wake::IDLE.before(T0).inside(Some(a), Some(b));
                    let exact = w.inside(Some(lo), Some(hi));
                    let band = HealBand {
                        at: heal::approx_f64(last),
                        lo,
                        hi,
                        lo_f: heal::approx_f64(lo),
                        hi_f: heal::approx_f64(hi),
                        kept: None,
                    };
                    checked += 1;
                    let screened = inside_screened(w, &band);
                    // To the byte (the scales of the bounds kept).
                    assert_eq!(
                        format!("{screened:?}"),
                        format!("{exact:?}"),
                        "last {last}, band ({a}, {b})"
                    );
                    if screened == w {
                        within += 1;
                    }
                    for one_side in [
                        Wake::IDLE.before(T0).inside(Some(a), None),
                        Wake::IDLE.before(T0).inside(None, Some(b)),
                        Wake::IDLE,
                        Wake::EveryTick,
                    ] {
                        assert_eq!(
                            format!("{:?}", inside_screened(one_side, &band)),
                            format!("{:?}", one_side.inside(Some(lo), Some(hi))),
                        );
                    }
                }
            }
        }
        // Within for most of the sweep, not at or past either edge.
        assert!(
            within > checked / 3 && within < checked,
            "{within} / {checked}"
        );
    }

    /// The f64 screen answers as `Wake::holds` does, at prices swept in
    /// steps of about 1e-10 across both edges of bands of several scales,
    /// unbounded sides and every-tick wakes, before and after the time.
    #[test]
    fn the_screened_hold_is_the_exact_one() {
        let mut decided_by_screen = 0;
        let mut checked = 0;
        for (lo, hi) in [
            (
                Some(Decimal::new(11_999_999, 8)),
                Some(Decimal::new(121_234_567_891, 12)),
            ),
            (Some(Decimal::new(3, 0)), None),
            (None, Some(Decimal::new(98_765, 5))),
            (None, None),
        ] {
            let w = Wake::IDLE.before(T0 + 1_000).inside(lo, hi);
            let band = BandF::of(w);
            for edge in [lo, hi].into_iter().flatten() {
                for k in -3000_i64..=3000 {
                    let last = (edge * (Decimal::ONE + Decimal::new(k, 10))).round_dp(12);
                    let lf = heal::approx_f64(last);
                    for now in [T0, T0 + 999, T0 + 1_000] {
                        checked += 1;
                        let screened = holds_screened(w, band, last, lf, now);
                        assert_eq!(screened, w.holds(last, now), "{last} in ({lo:?}, {hi:?})");
                        if now < T0 + 1_000 && k.abs() > 100 {
                            decided_by_screen += 1;
                        }
                    }
                }
            }
            let last = Decimal::new(5, 0);
            assert_eq!(
                holds_screened(w, band, last, heal::approx_f64(last), T0),
                w.holds(last, T0)
            );
        }
        let every = BandF::of(Wake::EveryTick);
        assert!(!holds_screened(
            Wake::EveryTick,
            every,
            Decimal::ONE,
            1.0,
            T0
        ));
        assert!(checked > 30_000 && decided_by_screen > 10_000);
    }

    #[test]
    fn cycle_kinds_are_named_as_serde_names_them() {
        for k in CycleKind::ALL {
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        }
    }

    #[test]
    fn the_entry_gates_read_as_the_blocking_reason_does() {
        let cfg = GridConfig {
            enabled: true,
            slots: 1,
            daily_loss_limit_usd: Decimal::TEN,
            ..GridConfig::default()
        };
        let mut g = Grid::new(cfg, "DOGEUSD", T0);
        assert_eq!(g.entries_closed(), g.entries_blocked().is_some());
        let _ = g.on_tick(&market(Decimal::new(12, 2), T0, Decimal::from(5_000)), T0);
        for limit in [Decimal::ZERO, Decimal::TEN, Decimal::new(-5, 0)] {
            g.cfg.daily_loss_limit_usd = limit;
            for (enabled, realized) in [
                (true, Decimal::ZERO),
                (true, Decimal::new(-10, 0)),
                (true, Decimal::new(-10000, 3)),
                (true, Decimal::new(-11, 0)),
                (false, Decimal::ZERO),
                (true, Decimal::new(5, 1)),
            ] {
                g.enabled = enabled;
                g.realized_today = realized;
                // Read afresh, then from the kept reading: the same.
                for _ in 0..2 {
                    assert_eq!(g.entries_closed(), g.entries_blocked().is_some());
                    let room_left = limit <= Decimal::ZERO || limit + realized > Decimal::ZERO;
                    assert_eq!(
                        g.entry_gates_open(),
                        g.entries_blocked().is_none() && room_left
                    );
                    assert_eq!(
                        g.loss().room,
                        (limit > Decimal::ZERO).then(|| limit + realized)
                    );
                    assert_eq!(
                        g.loss_locked(),
                        realized <= -limit && limit > Decimal::ZERO,
                        "{limit} {realized}"
                    );
                    g.keep_loss();
                }
            }
        }
    }
}
