//! One grid slot as a pure reducer: `transition(state, event, ctx) ->
//! (state', actions)` (grid-engine spec section 1).
//!
//! A slot runs two trades on one pair. Trade A sells first and buys back
//! lower; trade B buys first and sells higher. Each trade has at most one
//! order in the slot at a time (its entry, its exit, or a market close); the
//! phase is derived from which exits are open: S0 none, S1a A's buy exit,
//! S1b B's sell exit, S2 both. Any other shape (two orders of one trade, a
//! duplicate id, too many recovery orders) halts the slot, not the process,
//! with the reason in status; a halted slot still books what fills but
//! places nothing.
//!
//! Exits that wait too long are orphaned into the recovery list (the order
//! stays live on the venue, the trade starts afresh); more than
//! `max_recovery` recovery orders evicts one (farthest from market, then
//! oldest, then lowest id), which cancels it and books the position at
//! market with a maker fee. Replacing an order (stale-entry refresh,
//! self-healing reprice, market close) always waits for the venue to confirm
//! the cancel, so a cancel that races a fill books the fill.

use std::cell::OnceCell;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::config::{SlotMode, SlotParams};
use super::{ceil_to_tick, floor_lot, floor_to_tick, hundred, secs_ms};
use crate::capital::{Asset, CapitalError};
use crate::strategy::{IdGen, Side};

/// How long a refused exit waits before it is placed again.
pub const EXIT_RETRY_MS: i64 = 5_000;
/// Cycles kept in `recent`.
pub const RECENT_CYCLES: usize = 10;

/// Trade A (short: sell entry, buy exit) or B (long: buy entry, sell exit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord)]
pub enum Trade {
    A,
    B,
}

impl Trade {
    pub fn entry_side(self) -> Side {
        match self {
            Trade::A => Side::Sell,
            Trade::B => Side::Buy,
        }
    }

    pub fn exit_side(self) -> Side {
        match self {
            Trade::A => Side::Buy,
            Trade::B => Side::Sell,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Trade::A => "A",
            Trade::B => "B",
        }
    }

    fn tag(self) -> char {
        match self {
            Trade::A => 'a',
            Trade::B => 'b',
        }
    }

    /// Gross profit of `volume` entered at `entry` and exited at `exit`.
    pub fn gross(self, entry: Decimal, exit: Decimal, volume: Decimal) -> Decimal {
        match self {
            Trade::A => (entry - exit) * volume,
            Trade::B => (exit - entry) * volume,
        }
    }
}

/// What an order is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Entry,
    Exit,
    /// An operator's market close of a position.
    Close,
}

/// The slot's phase, derived from its open exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Phase {
    S0,
    S1a,
    S1b,
    S2,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::S0 => "S0",
            Phase::S1a => "S1a",
            Phase::S1b => "S1b",
            Phase::S2 => "S2",
        }
    }
}

/// The pair's filters and fee.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Filters {
    pub tick_size: Decimal,
    pub lot_decimals: u32,
    pub min_volume: Decimal,
    pub min_cost: Decimal,
    pub maker_fee: Decimal,
}

/// Everything a transition reads besides the state and the event.
#[derive(Debug, Clone)]
pub struct SlotCtx<'a> {
    pub params: &'a SlotParams,
    pub filters: Filters,
    /// The runtime profit percent (the config's, possibly raised by a
    /// volatility-adjusted value).
    pub profit_pct: Decimal,
    /// New entries this transition may place (the per-loop cap).
    pub entry_budget: u32,
    /// Why no new entries may be placed (daily loss lock, capacity stop,
    /// engine paused, grid disabled), if so.
    pub entries_blocked: Option<String>,
    /// The userref offset of this slot's orders.
    pub userref_offset: i32,
    /// Realized loss still allowed today before the daily loss lock
    /// (`None`: no limit). Losses this transition books (an eviction) count
    /// at once: no entry follows them in the same transition.
    pub loss_room: Option<Decimal>,
}

/// Why a cancel was asked for, and what follows the confirmation.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Pending {
    /// A stale entry: re-placed near market on a later tick.
    Refresh,
    /// The mode no longer allows this entry.
    Mode,
    /// Replace the exit at `price` (self-healing or operator).
    Reprice { price: Decimal, reason: String },
    /// Close the position with a market order.
    Close,
}

/// The orphan reason of an exit cancelled outside the slot (an emergency
/// stop, an operator at the venue): it waits in recovery, gone at the venue.
pub const CANCELED_OUTSIDE: &str = "canceled_outside";

/// Why an order left the slot's trades for the recovery list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Orphan {
    pub orphaned_at_ms: i64,
    pub reason: String,
}

/// One order the slot tracks.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SlotOrder {
    pub client_order_id: String,
    pub trade: Trade,
    pub role: Role,
    pub side: Side,
    /// Limit price (`None` for a market close).
    pub price: Option<Decimal>,
    /// Total volume of the position leg (a replacement carries what its
    /// predecessor executed).
    pub volume: Decimal,
    pub placed_at_ms: i64,
    /// The market when it was placed (S1 orphaning: "moved away").
    pub market_at_place: Decimal,
    pub executed: Decimal,
    pub avg_price: Decimal,
    pub fee: Decimal,
    /// Exits: the position this order closes (the entry's client id), the
    /// entry's fill and fee, and the exit price first aimed for.
    pub position_id: String,
    pub entry_price: Decimal,
    pub entry_fee: Decimal,
    pub entry_time_ms: i64,
    pub target_price: Decimal,
    pub pending: Option<Pending>,
    /// A refused exit: when to place it again.
    pub retry_at_ms: Option<i64>,
    /// Set while in the recovery list.
    pub orphan: Option<Orphan>,
}

impl SlotOrder {
    fn remaining(&self) -> Decimal {
        self.volume - self.executed
    }

    fn fold_fill(&mut self, volume: Decimal, price: Decimal, fee: Decimal) {
        if !crate::is_positive(volume) {
            return;
        }
        let executed = self.executed + volume;
        self.avg_price = (self.avg_price * self.executed + price * volume) / executed;
        self.executed = executed;
        self.fee += fee;
    }

    /// Distance from `market`, relative (for eviction and S2 orphaning).
    pub fn distance(&self, market: Decimal) -> Decimal {
        match self.price {
            Some(p) if market > Decimal::ZERO => (p - market).abs() / market,
            _ => Decimal::ZERO,
        }
    }
}

/// Per-trade counters and timers.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TradeState {
    /// Advances on every completed cycle and every orphan.
    pub cycles: u32,
    pub consecutive_losses: u32,
    /// The side's loss cooldown ends here.
    pub cooldown_until_ms: i64,
    /// The re-entry delay after a cycle ends here.
    pub reentry_at_ms: i64,
}

/// How a position's cycle was realized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CycleKind {
    /// The exit filled.
    Exit,
    /// A recovery order filled.
    Recovery,
    /// A recovery order was evicted: booked at market with a maker fee.
    Eviction,
    /// A recovery order was cancelled outside the slot: booked at market.
    RecoveryCancelled,
    /// An operator's market close filled.
    MarketClose,
    /// An exit too small for the venue's minimums: written off at the entry.
    Dust,
}

impl CycleKind {
    /// Every kind, in declaration order.
    pub const ALL: [CycleKind; 6] = [
        CycleKind::Exit,
        CycleKind::Recovery,
        CycleKind::Eviction,
        CycleKind::RecoveryCancelled,
        CycleKind::MarketClose,
        CycleKind::Dust,
    ];

    /// The serde name (snake case).
    pub fn as_str(self) -> &'static str {
        match self {
            CycleKind::Exit => "exit",
            CycleKind::Recovery => "recovery",
            CycleKind::Eviction => "eviction",
            CycleKind::RecoveryCancelled => "recovery_cancelled",
            CycleKind::MarketClose => "market_close",
            CycleKind::Dust => "dust",
        }
    }
}

/// A realized cycle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CycleRecord {
    pub slot_id: u32,
    pub trade: Trade,
    pub kind: CycleKind,
    pub position_id: String,
    pub exit_order_id: String,
    pub entry_price: Decimal,
    pub exit_price: Decimal,
    pub volume: Decimal,
    pub entry_fee: Decimal,
    pub exit_fee: Decimal,
    pub gross: Decimal,
    pub net: Decimal,
    /// The exit price the position aimed for when it was opened.
    pub target_price: Decimal,
    pub time_ms: i64,
}

/// An order to place.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlaceSpec {
    pub client_order_id: String,
    pub trade: Trade,
    pub role: Role,
    pub side: Side,
    /// `None`: a market order (operator close only); else post-only limit.
    pub price: Option<Decimal>,
    pub volume: Decimal,
    pub userref_offset: i32,
}

/// A position opened by an entry fill.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PositionOpened {
    pub slot_id: u32,
    pub position_id: String,
    pub trade: Trade,
    pub entry_side: Side,
    pub entry_price: Decimal,
    pub volume: Decimal,
    pub entry_fee: Decimal,
    pub entry_time_ms: i64,
    pub exit_price: Decimal,
    pub exit_order_id: String,
    /// Net profit if the exit fills at `exit_price` with a maker fee.
    pub target_profit: Decimal,
}

/// What the slot asks for.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum SlotAction {
    PlaceOrder(PlaceSpec),
    CancelOrder {
        client_order_id: String,
        reason: String,
    },
    /// An exit moved to the recovery list (it stays live on the venue).
    OrphanOrder {
        client_order_id: String,
        position_id: String,
        trade: Trade,
        reason: String,
    },
    BookCycle(CycleRecord),
    PositionOpened(PositionOpened),
    /// A position's exit order was replaced (reprice, restore, retry).
    ExitMoved {
        position_id: String,
        old_order_id: String,
        new_order_id: String,
        old_price: Option<Decimal>,
        new_price: Option<Decimal>,
        reason: String,
    },
    /// A reprice or close asked for could not happen (the order filled or
    /// went away first); the grid drops what it reserved for it.
    Abandoned {
        client_order_id: String,
        reason: String,
    },
}

/// What happens to a slot.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum SlotEvent {
    /// A new market price (also runs the timers).
    PriceTick { market: Decimal, now_ms: i64 },
    /// A price tick of a verified slot untouched since its last tick, at a
    /// price and time where the wake of all but its entries holds
    /// ([`wake_parts_verified`]): refused exits, orphan timers, stale
    /// entries and the mode have nothing due, so only the entries due are
    /// placed. The same state and actions as the price tick.
    EntryRetry { market: Decimal, now_ms: i64 },
    /// Time passed.
    TimerTick { now_ms: i64 },
    /// A fill of an entry, exit or close; `done` when the order is complete.
    Fill {
        client_order_id: String,
        volume: Decimal,
        price: Decimal,
        fee: Decimal,
        done: bool,
        now_ms: i64,
    },
    /// A fill of a recovery order.
    RecoveryFill {
        client_order_id: String,
        volume: Decimal,
        price: Decimal,
        fee: Decimal,
        done: bool,
        now_ms: i64,
    },
    /// A recovery order was cancelled or expired.
    RecoveryCancel {
        client_order_id: String,
        now_ms: i64,
    },
    /// An entry, exit or close was cancelled or expired (what it executed
    /// so far is in the state).
    Canceled {
        client_order_id: String,
        now_ms: i64,
    },
    /// The venue refused an order (place failed or rejected).
    /// The grid's capital ledger refused an entry before it went out
    /// (as `Refused` with the message `capital: {error}`).
    CapitalRefused {
        client_order_id: String,
        error: CapitalError,
        now_ms: i64,
    },
    Refused {
        client_order_id: String,
        message: String,
        now_ms: i64,
    },
    /// A cancel the slot asked for failed: the order is still live (or
    /// already gone, which its own final event will say).
    CancelFailed {
        client_order_id: String,
        message: String,
        now_ms: i64,
    },
    /// Move a live exit (slot or recovery) to `price`.
    Reprice {
        client_order_id: String,
        price: Decimal,
        reason: String,
        now_ms: i64,
    },
    /// Close a position at market: cancel its exit, then a market order.
    CloseAtMarket {
        client_order_id: String,
        now_ms: i64,
    },
    /// Long-only / short-only / both.
    SetMode { mode: SlotMode, now_ms: i64 },
}

/// One slot.
#[derive(Debug, Clone, Serialize)]
pub struct SlotState {
    pub id: u32,
    pub alias: String,
    pub sticky: bool,
    pub mode: SlotMode,
    /// The trades' live orders (at most one per trade).
    pub orders: Vec<SlotOrder>,
    /// Orphaned exits still live on the venue.
    pub recovery: Vec<SlotOrder>,
    pub a: TradeState,
    pub b: TradeState,
    pub market: Option<Decimal>,
    pub s2_since_ms: Option<i64>,
    /// Last refresh direction (+1 market up, -1 down) and the streak.
    pub refresh_dir: i8,
    pub refresh_streak: u32,
    pub refresh_cooldown_until_ms: i64,
    pub halted: Option<String>,
    pub last_error: LastError,
    pub cycles: u64,
    pub profit: Decimal,
    pub orphans: u64,
    pub recent: Vec<CycleRecord>,
    #[serde(skip)]
    ids: IdGen,
}

/// A slot's last error: a text, or an entry the capital ledger refused,
/// kept as its facts (the id and the amounts) and written out when first
/// read. Once the free balance no longer covers a slot's entries, every
/// re-entry is refused, and formatting the amounts each time was a
/// measurable share of a long backtest (the text is kept in a
/// `OnceCell`: a slot lives on one thread at a time). Reads as the text (`Deref<str>`,
/// `Display`, serialized as a string); the text read is the one the
/// refusal's message gave before: `entry {id} refused: capital: {error}`.
#[derive(Clone, Default)]
pub struct LastError {
    /// The last refusal kept (its box reused by the next one); it is the
    /// error only while `refused`.
    refusal: Option<Box<(RefusedId, Refusal)>>,
    refused: bool,
    text: OnceCell<String>,
}

impl LastError {
    /// Sets the text.
    pub fn set(&mut self, text: String) {
        self.refused = false;
        self.text = OnceCell::from(text);
    }

    /// No error.
    pub fn clear(&mut self) {
        if !self.refused && self.text.get().is_some_and(String::is_empty) {
            return;
        }
        self.refused = false;
        self.text = OnceCell::from(String::new());
    }

    /// Entry `id` refused by the capital ledger; the text waits for a read.
    pub fn set_capital(&mut self, id: String, error: CapitalError) {
        self.set_refusal(RefusedId::Text(id), Refusal::Known(error));
    }

    /// Entry `id` refused, the id written and the amount computed when
    /// read.
    fn set_lazy(&mut self, id: LazyId, refusal: LazyRefusal) {
        self.set_refusal(RefusedId::Lazy(id), Refusal::Lazy(refusal));
    }

    fn set_refusal(&mut self, id: RefusedId, refusal: Refusal) {
        match &mut self.refusal {
            Some(r) => **r = (id, refusal),
            None => self.refusal = Some(Box::new((id, refusal))),
        }
        self.refused = true;
        self.text = OnceCell::new();
    }

    /// Whether the error is an entry the capital ledger refused.
    pub fn is_capital_refusal(&self) -> bool {
        self.refused
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        self.text.get_or_init(|| match &self.refusal {
            Some(r) if self.refused => match &r.1 {
                Refusal::Known(e) => format!("entry {} refused: capital: {e}", r.0),
                Refusal::Lazy(l) => format!("entry {} refused: capital: {}", r.0, l.error()),
            },
            _ => String::new(),
        })
    }
}

/// A capital refusal [`LastError`] keeps.
#[derive(Clone)]
enum Refusal {
    Known(CapitalError),
    Lazy(LazyRefusal),
}

impl std::ops::Deref for LastError {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Debug for LastError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl std::fmt::Display for LastError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq for LastError {
    fn eq(&self, other: &LastError) -> bool {
        self.as_str() == other.as_str()
    }
}

impl PartialEq<&str> for LastError {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<str> for LastError {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl Serialize for LastError {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl SlotState {
    /// A fresh slot; `run_start_ms` seeds its client order ids.
    pub fn new(id: u32, sticky: bool, mode: SlotMode, run_start_ms: i64) -> SlotState {
        SlotState {
            id,
            alias: format!("slot-{id}"),
            sticky,
            mode,
            orders: Vec::new(),
            recovery: Vec::new(),
            a: TradeState::default(),
            b: TradeState::default(),
            market: None,
            s2_since_ms: None,
            refresh_dir: 0,
            refresh_streak: 0,
            refresh_cooldown_until_ms: 0,
            halted: None,
            last_error: LastError::default(),
            cycles: 0,
            profit: Decimal::ZERO,
            orphans: 0,
            recent: Vec::new(),
            ids: IdGen::new(run_start_ms),
        }
    }

    pub fn trade(&self, t: Trade) -> &TradeState {
        match t {
            Trade::A => &self.a,
            Trade::B => &self.b,
        }
    }

    fn trade_mut(&mut self, t: Trade) -> &mut TradeState {
        match t {
            Trade::A => &mut self.a,
            Trade::B => &mut self.b,
        }
    }

    /// The open order of trade `t` with role `role`.
    pub fn order_of(&self, t: Trade, role: Role) -> Option<&SlotOrder> {
        self.orders.iter().find(|o| o.trade == t && o.role == role)
    }

    /// The phase, or why the shape is invalid.
    pub fn phase(&self) -> Result<Phase, String> {
        self.check_invariants()?;
        Ok(self.phase_of_orders())
    }

    /// The phase of a state whose invariants hold.
    fn phase_of_orders(&self) -> Phase {
        let a_exit = self.order_of(Trade::A, Role::Exit).is_some();
        let b_exit = self.order_of(Trade::B, Role::Exit).is_some();
        match (a_exit, b_exit) {
            (false, false) => Phase::S0,
            (true, false) => Phase::S1a,
            (false, true) => Phase::S1b,
            (true, true) => Phase::S2,
        }
    }

    /// The invariants every state must keep.
    pub fn check_invariants(&self) -> Result<(), String> {
        // This runs twice per transition: a quick pass first, and the
        // checks that name what is wrong only when something is.
        if self.invariants_hold() {
            return Ok(());
        }
        self.invariant_broken()
    }

    /// Whether [`SlotState::check_invariants`] passes, in one walk and
    /// without building a message.
    fn invariants_hold(&self) -> bool {
        let (mut a, mut b) = (0_u32, 0_u32);
        for o in &self.orders {
            match o.trade {
                Trade::A => a += 1,
                Trade::B => b += 1,
            }
            if o.orphan.is_some() {
                return false;
            }
        }
        if a > 1 || b > 1 {
            return false;
        }
        for o in self.orders.iter().chain(&self.recovery) {
            let want = match o.role {
                Role::Entry => o.trade.entry_side(),
                Role::Exit | Role::Close => o.trade.exit_side(),
            };
            if o.side != want
                || o.volume.is_zero()
                || o.volume.is_sign_negative()
                || (o.role != Role::Entry && o.position_id.is_empty())
            {
                return false;
            }
        }
        if self.recovery.iter().any(|o| o.role == Role::Entry) {
            return false;
        }
        // Ids differ mostly in their last character (the counter): look
        // at it before comparing whole strings.
        // By index: skipping into a chained iterator walks it from the start.
        let n = self.orders.len() + self.recovery.len();
        let id = |i: usize| match self.orders.get(i) {
            Some(o) => o.client_order_id.as_bytes(),
            None => self
                .recovery
                .get(i - self.orders.len())
                .map_or(&[][..], |o| o.client_order_id.as_bytes()),
        };
        for i in 0..n {
            let x = id(i);
            for j in i + 1..n {
                let y = id(j);
                if y.len() == x.len() && y.last() == x.last() && y == x {
                    return false;
                }
            }
        }
        true
    }

    /// The first broken invariant, named (see [`SlotState::check_invariants`]).
    fn invariant_broken(&self) -> Result<(), String> {
        for t in [Trade::A, Trade::B] {
            let n = self.orders.iter().filter(|o| o.trade == t).count();
            if n > 1 {
                return Err(format!(
                    "trade {} has {n} open orders (at most 1)",
                    t.as_str()
                ));
            }
        }
        for o in self.orders.iter().chain(&self.recovery) {
            let want = match o.role {
                Role::Entry => o.trade.entry_side(),
                Role::Exit | Role::Close => o.trade.exit_side(),
            };
            if o.side != want {
                return Err(format!(
                    "order {} of trade {} {:?} is a {} (expected {})",
                    o.client_order_id,
                    o.trade.as_str(),
                    o.role,
                    o.side.as_str(),
                    want.as_str()
                ));
            }
            if !crate::is_positive(o.volume) {
                return Err(format!(
                    "order {} has volume {}",
                    o.client_order_id, o.volume
                ));
            }
            if o.role != Role::Entry && o.position_id.is_empty() {
                return Err(format!("exit {} belongs to no position", o.client_order_id));
            }
        }
        if self.orders.iter().any(|o| o.orphan.is_some()) {
            return Err("an orphaned order is still among the trades' orders".into());
        }
        if self.recovery.iter().any(|o| o.role == Role::Entry) {
            return Err("an entry is in the recovery list".into());
        }
        // A slot tracks a handful of orders: compare pairs rather than
        // collect and sort (this runs at every transition).
        let tracked = || self.orders.iter().chain(&self.recovery);
        for (k, a) in tracked().enumerate() {
            if tracked()
                .skip(k + 1)
                .any(|b| b.client_order_id == a.client_order_id)
            {
                return Err("the same client order id is tracked twice".into());
            }
        }
        Ok(())
    }

    /// Orders live on the venue (trades' plus recovery).
    pub fn open_orders(&self) -> usize {
        self.orders.len() + self.recovery.len()
    }

    /// Does this slot track `client_order_id`?
    pub fn tracks(&self, client_order_id: &str) -> bool {
        self.orders
            .iter()
            .chain(&self.recovery)
            .any(|o| same_id(&o.client_order_id, client_order_id))
    }

    /// Is `client_order_id` one of this slot's recovery orders?
    pub fn is_recovery(&self, client_order_id: &str) -> bool {
        self.recovery
            .iter()
            .any(|o| same_id(&o.client_order_id, client_order_id))
    }

    fn next_id(&mut self, trade: Trade, role: Role) -> String {
        self.take_id(trade, role).text()
    }

    /// The next id's place taken, the id not written yet.
    fn take_id(&mut self, trade: Trade, role: Role) -> LazyId {
        let r = match role {
            Role::Entry => 'e',
            Role::Exit => 'x',
            Role::Close => 'c',
        };
        // `format!("g{}{}{}-", self.id, trade.tag(), r)` without the
        // formatting machinery, on the stack.
        let mut buf = [0u8; 16];
        let n = write_tag(&mut buf, self.id, trade.tag(), r);
        let mut prefix = [0u8; 17];
        if let (Some(dst), Some(src)) = (prefix.get_mut(..n), buf.get(..n)) {
            dst.copy_from_slice(src);
        }
        if let Some(dash) = prefix.get_mut(n) {
            *dash = b'-';
        }
        LazyId {
            prefix,
            len: u8::try_from(n + 1).unwrap_or(0),
            ticket: self.ids.take(),
        }
    }

    fn push_cycle(&mut self, c: &CycleRecord) {
        self.cycles += 1;
        self.profit += c.net;
        self.recent.push(c.clone());
        if self.recent.len() > RECENT_CYCLES {
            self.recent.remove(0);
        }
    }
}

/// `a == b` for client order ids: the lengths and the last bytes (the
/// counter's last digit, where the ids of one tag differ) compared before
/// the whole.
#[inline]
pub(crate) fn same_id(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.as_bytes().last() == b.as_bytes().last() && a == b
}

/// Writes `g{slot}{trade}{role}` (ASCII tags) into `buf`; its length.
fn write_tag(buf: &mut [u8; 16], slot: u32, trade: char, role: char) -> usize {
    let mut digits = [0u8; 10];
    let mut len = 0;
    let mut n = slot;
    loop {
        if let Some(d) = digits.get_mut(len) {
            *d = b'0' + (n % 10) as u8;
        }
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let mut at = 0;
    let mut put = |b: u8| {
        if let Some(x) = buf.get_mut(at) {
            *x = b;
        }
        at += 1;
    };
    put(b'g');
    for d in digits.iter().take(len).rev() {
        put(*d);
    }
    put(u8::try_from(trade).unwrap_or(b'?'));
    put(u8::try_from(role).unwrap_or(b'?'));
    at
}

/// Is `client_order_id` a grid slot's ("g<slot><a|b><e|x|c>-...")?
pub fn is_slot_client_id(client_order_id: &str) -> bool {
    let Some(rest) = client_order_id.strip_prefix('g') else {
        return false;
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    digits > 0
        && matches!(
            rest.as_bytes().get(digits..),
            Some([b'a' | b'b', b'e' | b'x' | b'c', b'-', ..])
        )
}

/// Slot id, trade and role of a slot's client order id.
pub fn parse_slot_client_id(client_order_id: &str) -> Option<(u32, Trade, Role)> {
    if !is_slot_client_id(client_order_id) {
        return None;
    }
    let (tag, _) = client_order_id.split_once('-')?;
    let b = tag.as_bytes();
    let n = b.len();
    let slot = tag.get(1..n.checked_sub(2)?)?.parse().ok()?;
    let trade = if b.get(n - 2) == Some(&b'a') {
        Trade::A
    } else {
        Trade::B
    };
    let role = match b.get(n - 1) {
        Some(b'e') => Role::Entry,
        Some(b'x') => Role::Exit,
        _ => Role::Close,
    };
    Some((slot, trade, role))
}

/// The entry backoff: 1, or min(max, 1 + step * (losses - 2)) once losses
/// reach `backoff_after_losses`.
pub fn backoff(params: &SlotParams, losses: u32) -> Decimal {
    if losses < params.backoff_after_losses {
        return Decimal::ONE;
    }
    (Decimal::ONE + params.backoff_step * Decimal::from(losses.saturating_sub(2)))
        .min(params.backoff_max)
}

/// Entry price of trade `t`: market * (1 -/+ entry_pct * backoff), on the
/// tick, away from market.
pub fn entry_price(t: Trade, market: Decimal, ctx: &SlotCtx<'_>, losses: u32) -> Decimal {
    let backoff = backoff(ctx.params, losses);
    entry_price_of(
        t,
        market,
        ctx.params.entry_pct,
        backoff,
        ctx.filters.tick_size,
    )
}

/// [`entry_price`] from its parts.
fn entry_price_of(
    t: Trade,
    market: Decimal,
    entry_pct: Decimal,
    backoff: Decimal,
    tick: Decimal,
) -> Decimal {
    let d = entry_pct / hundred() * backoff;
    match t {
        Trade::A => ceil_to_tick(market * (Decimal::ONE + d), tick),
        Trade::B => floor_to_tick(market * (Decimal::ONE - d), tick),
    }
}

/// Lower bounds of the volume and the cost (volume times price) of an
/// entry of trade `t`, read in f64 with wide margins, when its volume
/// certainly passes the minimums (so [`entry_volume`] returns it); `None`
/// when unsure.
fn entry_floor(
    t: Trade,
    market: Decimal,
    entry_pct: Decimal,
    backoff: Decimal,
    usd: Decimal,
    f: &Filters,
) -> Option<(f64, f64)> {
    let a = super::heal::approx_f64;
    let d = a(entry_pct) / 100.0 * a(backoff);
    let m = a(market);
    let tick = a(f.tick_size).max(0.0);
    let p = match t {
        Trade::A => m * (1.0 + d),
        Trade::B => m * (1.0 - d),
    };
    // The price on the tick: within a tick of `p`.
    let (p_lo, p_hi) = (p * (1.0 - SCREEN_EPS) - tick, p * (1.0 + SCREEN_EPS) + tick);
    // A lot past i32 decimals is no instrument: unsure, as `powi` said.
    i32::try_from(f.lot_decimals).ok()?;
    let lot = super::heal::pow10_neg(f.lot_decimals);
    // The volume, rounded down to the lot: within a lot below usd / price.
    let v_lo = a(usd) / p_hi * (1.0 - SCREEN_EPS) - lot;
    let cost_lo = v_lo * p_lo * (1.0 - SCREEN_EPS);
    let (min_volume, min_cost) = (a(f.min_volume), a(f.min_cost));
    let fine = [d, m, tick, p_lo, p_hi, v_lo, cost_lo, min_volume, min_cost]
        .iter()
        .all(|x| x.is_finite());
    (fine
        && p_lo > 0.0
        && v_lo > min_volume.abs() * (1.0 + SCREEN_EPS) + SCREEN_EPS
        && cost_lo > min_cost.abs() * (1.0 + SCREEN_EPS) + SCREEN_EPS)
        .then_some((v_lo, cost_lo))
}

/// Whether `available` certainly covers the amount an entry of trade `t`
/// holds: for a buy at most `usd * (1 + fee)` (its volume times price is
/// at most `usd`), for a sell at most `usd / market` (it sells above the
/// market). Only saves the screen: the exact check follows either way.
fn certainly_covered(
    t: Trade,
    market: Decimal,
    usd: Decimal,
    buy_fee: Decimal,
    available: Decimal,
) -> bool {
    let a = super::heal::approx_f64;
    let amount = match t.entry_side() {
        Side::Buy => a(usd).abs() * (1.0 + a(buy_fee).max(0.0)),
        Side::Sell => a(usd).abs() / a(market),
    };
    let avail = a(available);
    amount.is_finite()
        && amount >= 0.0
        && avail.is_finite()
        && avail > amount * (1.0 + SCREEN_EPS) + SCREEN_EPS
}

/// The relative margin of the f64 screens of an entry (far wider than
/// their rounding errors).
const SCREEN_EPS: f64 = 1e-6;

/// Whether the amount an entry with the floors `(v_lo, cost_lo)` holds
/// (the volume for a sell, volume times price times `1 + buy_fee` for a
/// buy) is certainly above `available`.
fn certainly_above(
    t: Trade,
    (v_lo, cost_lo): (f64, f64),
    buy_fee: Decimal,
    available: Decimal,
) -> bool {
    let a = super::heal::approx_f64;
    let amount = match t.entry_side() {
        Side::Sell => v_lo,
        Side::Buy => cost_lo * (1.0 + a(buy_fee).min(0.0)),
    } * (1.0 - SCREEN_EPS);
    let avail = a(available);
    amount.is_finite()
        && avail.is_finite()
        && amount > avail + avail.abs() * SCREEN_EPS + SCREEN_EPS
}

/// A new entry order as [`place_entries`] places it.
fn new_entry(
    id: String,
    t: Trade,
    price: Decimal,
    volume: Decimal,
    now: i64,
    market: Decimal,
) -> SlotOrder {
    SlotOrder {
        client_order_id: id,
        trade: t,
        role: Role::Entry,
        side: t.entry_side(),
        price: Some(price),
        volume,
        placed_at_ms: now,
        market_at_place: market,
        executed: Decimal::ZERO,
        avg_price: Decimal::ZERO,
        fee: Decimal::ZERO,
        position_id: String::new(),
        entry_price: Decimal::ZERO,
        entry_fee: Decimal::ZERO,
        entry_time_ms: 0,
        target_price: Decimal::ZERO,
        pending: None,
        retry_at_ms: None,
        orphan: None,
    }
}

/// Exit price of trade `t` after an entry fill at `fill`: sell exit =
/// max(fill * (1 + profit), market * (1 + entry)); buy exit mirrored with min.
pub fn exit_price(t: Trade, fill: Decimal, market: Decimal, ctx: &SlotCtx<'_>) -> Decimal {
    let p = ctx.profit_pct / hundred();
    let e = ctx.params.entry_pct / hundred();
    let exit_side = match t {
        Trade::B => Side::Sell,
        Trade::A => Side::Buy,
    };
    super::exit_price(exit_side, fill, p, market, e, ctx.filters.tick_size)
}

/// Volume for `usd` at `price`, rounded down to the lot; `Err` when below
/// the venue's minimum volume or cost (never upsized).
pub fn entry_volume(usd: Decimal, price: Decimal, f: &Filters) -> Result<Decimal, String> {
    if !crate::is_positive(price) {
        return Err("no price".into());
    }
    let v = floor_lot(usd / price, f.lot_decimals);
    check_minimums(v, price, f)?;
    Ok(v)
}

fn check_minimums(v: Decimal, price: Decimal, f: &Filters) -> Result<(), String> {
    if !crate::is_positive(v) || v < f.min_volume {
        return Err(format!("volume {v} is below the minimum {}", f.min_volume));
    }
    if v * price < f.min_cost {
        return Err(format!(
            "cost {} is below the minimum {}",
            (v * price).normalize(),
            f.min_cost
        ));
    }
    Ok(())
}

/// The reducer.
pub fn transition(
    state: SlotState,
    event: &SlotEvent,
    ctx: &SlotCtx<'_>,
) -> (SlotState, Vec<SlotAction>) {
    transition_from(state, event, ctx, false)
}

/// [`transition`] of a state its caller knows to be one a transition
/// returned not halted and left as it was since: its invariants held when
/// that transition checked them last, so they are not checked again first
/// (the same outcome, one check fewer).
#[cfg(test)]
pub(crate) fn transition_verified(
    state: SlotState,
    event: &SlotEvent,
    ctx: &SlotCtx<'_>,
) -> (SlotState, Vec<SlotAction>) {
    transition_from(state, event, ctx, true)
}

fn transition_from(
    state: SlotState,
    event: &SlotEvent,
    ctx: &SlotCtx<'_>,
    verified: bool,
) -> (SlotState, Vec<SlotAction>) {
    let mut s = state;
    let out = transition_in_place(&mut s, event, ctx, verified);
    (s, out)
}

/// [`transition`] (or, `verified`, [`transition_verified`]) of the state in
/// `s`, left there: the same state and actions, without moving the state
/// in and out.
pub(crate) fn transition_in_place(
    s: &mut SlotState,
    event: &SlotEvent,
    ctx: &SlotCtx<'_>,
    verified: bool,
) -> Vec<SlotAction> {
    transition_with(s, event, ctx, verified, &mut Precheck::default())
}

/// What the grid's capital ledger would say of an entry before it goes
/// out: the refusal [`crate::capital::CapitalLedger::reserve`] of it would
/// give now, if any.
pub(crate) trait EntryCheck {
    fn refusal(
        &self,
        client_order_id: &str,
        side: Side,
        volume: Decimal,
        price: Option<Decimal>,
    ) -> Option<CapitalError>;

    /// The funds the balance check of an entry of `side` compares its
    /// amount with (asset, available) and the fee a limit buy's hold adds
    /// (`volume * price * (1 + fee)`); `None` when the balance is unknown.
    fn funds(&self, side: Side) -> Option<(Asset, Decimal, Decimal)>;

    /// Whether order `id` holds funds already (its reservation is refused
    /// as a duplicate before the balance check).
    fn is_held(&self, client_order_id: &str) -> bool;

    /// Whether an order whose id starts with `prefix` holds funds (a new
    /// id of a generator no held id starts as is not held either, without
    /// writing it out).
    fn holds_prefix(&self, prefix: &str) -> bool;
}

/// An entry id taken from a slot's generator but not written out yet: an
/// entry refused on the screen keeps its id only for the refusal's text,
/// read rarely (a year's backtest refuses most re-entries).
#[derive(Clone)]
pub(crate) struct LazyId {
    /// `g{slot}{trade}{role}-`: the tag and the separator.
    prefix: [u8; 17],
    len: u8,
    ticket: crate::strategy::IdTicket,
}

impl LazyId {
    /// What every id of its tag starts with.
    fn prefix(&self) -> &str {
        std::str::from_utf8(self.prefix.get(..usize::from(self.len)).unwrap_or_default())
            .unwrap_or_default()
    }

    /// The id, as [`SlotState::next_id`] would have written it.
    fn text(&self) -> String {
        let p = self.prefix();
        IdGen::write(p.strip_suffix('-').unwrap_or(p), self.ticket)
    }
}

/// A refused entry's id in a [`LastError`]: written, or not yet.
#[derive(Clone)]
enum RefusedId {
    Text(String),
    Lazy(LazyId),
}

impl std::fmt::Display for RefusedId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RefusedId::Text(t) => f.write_str(t),
            RefusedId::Lazy(l) => f.write_str(&l.text()),
        }
    }
}

/// An entry refused on an amount not computed: what computes it (the
/// entry's price, volume and hold, as the slot and the grid do) when the
/// refusal is read.
#[derive(Clone)]
struct LazyRefusal {
    trade: Trade,
    market: Decimal,
    entry_pct: Decimal,
    backoff: Decimal,
    order_size_usd: Decimal,
    filters: Filters,
    asset: Asset,
    available: Decimal,
    buy_fee: Decimal,
}

impl LazyRefusal {
    /// The entry's price and volume (the screen proved the volume valid).
    fn entry(&self) -> (Decimal, Decimal) {
        let price = entry_price_of(
            self.trade,
            self.market,
            self.entry_pct,
            self.backoff,
            self.filters.tick_size,
        );
        let volume = entry_volume(self.order_size_usd, price, &self.filters).unwrap_or_default();
        (price, volume)
    }

    fn error(&self) -> CapitalError {
        let (price, volume) = self.entry();
        let amount = match self.trade.entry_side() {
            Side::Sell => volume,
            Side::Buy => volume * price * (Decimal::ONE + self.buy_fee),
        };
        CapitalError::Insufficient {
            asset: self.asset,
            available: self.available,
            amount,
            keep: Decimal::ZERO,
        }
    }
}

/// An entry refused in the transition: with its error, or (the amount not
/// computed) how to compute it and where the entry would have been.
enum PreRefusal {
    Known(String, CapitalError),
    Lazy {
        id: LazyId,
        refusal: LazyRefusal,
        at: usize,
        now: i64,
    },
}

/// The refusals of one transition, in order: two kept in place (a
/// transition places entries once, one a trade), any more in a Vec (none
/// today), so that a refused entry allocates nothing.
#[derive(Default)]
struct Refusals {
    inline: [Option<PreRefusal>; 2],
    more: Vec<PreRefusal>,
}

impl Refusals {
    fn push(&mut self, r: PreRefusal) {
        match self.inline.iter_mut().find(|x| x.is_none()) {
            Some(free) if self.more.is_empty() => *free = Some(r),
            _ => self.more.push(r),
        }
    }

    /// Takes the refusals out in order, in place (moving the whole,
    /// mostly empty, would copy both kept places).
    fn drain(&mut self) -> impl Iterator<Item = PreRefusal> + '_ {
        self.inline
            .iter_mut()
            .take_while(|r| r.is_some())
            .filter_map(Option::take)
            .chain(self.more.drain(..))
    }
}

/// The entries of one transition its [`EntryCheck`] refused.
#[derive(Default)]
struct Precheck<'a> {
    check: Option<&'a dyn EntryCheck>,
    refused: Refusals,
    /// Lazy refusals so far (their entries are not in the slot).
    lazy: usize,
    /// An entry went out checked against the ledger (the transition's
    /// first order out).
    accepted: bool,
}

/// What [`transition_checked`] returned: the transition's actions, the
/// actions of the refusals it took after it, and how many it took.
pub(crate) struct Checked {
    pub actions: Vec<SlotAction>,
    pub after: Vec<SlotAction>,
    pub refused: usize,
    /// Of those, refused on the screen, the amount not computed.
    pub lazy: usize,
    /// The first order of `actions` is an entry checked against the
    /// ledger as the grid's reservation would check it (it passes).
    pub accepted: bool,
}

/// [`transition_in_place`] followed by the [`SlotEvent::CapitalRefused`]
/// transitions (at `now`, with `ctx`) of the entries the grid's capital
/// ledger would refuse, without the entries going out: an entry placed
/// while no order went out earlier in the transition (so the ledger is the
/// one its reservation would read) is asked of `check`; when it refuses,
/// the entry is placed in the slot as before (its id taken, the order
/// kept for the rest of the transition) but not returned, and, the slot
/// not halted at the transition's end, each refusal is taken as the grid
/// took it: [`on_capital_refused`] and the closing invariant check, as a
/// verified transition of that event would. The same state and, but for
/// the refused entries, the same actions as the transition, its
/// translation refused by the ledger and the refusals stepped in order.
pub(crate) fn transition_checked(
    s: &mut SlotState,
    event: &SlotEvent,
    ctx: &SlotCtx<'_>,
    verified: bool,
    check: &dyn EntryCheck,
    now: i64,
) -> Checked {
    let mut pre = Precheck {
        check: Some(check),
        refused: Refusals::default(),
        lazy: 0,
        accepted: false,
    };
    let actions = transition_with(s, event, ctx, verified, &mut pre);
    let lazy = if s.halted.is_none() { pre.lazy } else { 0 };
    let accepted = pre.accepted && s.halted.is_none();
    let mut after = Vec::new();
    let mut refused = 0;
    // Halted: the entries did not go out, so nothing refused them; the
    // entries not placed in the slot are, where they would have been, and
    // the halt reads them.
    if s.halted.is_some() {
        if pre.lazy > 0 {
            for r in pre.refused.drain() {
                if let PreRefusal::Lazy {
                    id,
                    refusal,
                    at,
                    now,
                } = r
                {
                    let (price, volume) = refusal.entry();
                    let o = new_entry(id.text(), refusal.trade, price, volume, now, refusal.market);
                    s.orders.insert(at.min(s.orders.len()), o);
                }
            }
            s.halted = s.check_invariants().err();
        }
    } else {
        for r in pre.refused.drain() {
            refused += 1;
            let (id, error) = match r {
                PreRefusal::Known(id, error) => (id, error),
                PreRefusal::Lazy { id, refusal, .. } => {
                    // As below, the entry never in the slot.
                    let t = refusal.trade;
                    s.last_error.set_lazy(id, refusal);
                    s.trade_mut(t).reentry_at_ms = now + secs_ms(ctx.params.reentry_delay_sec);
                    continue;
                }
            };
            // The entry as `on_capital_refused` finds it.
            let entry = if s.recovery.iter().any(|o| o.client_order_id == id) {
                None
            } else {
                s.orders
                    .iter()
                    .position(|o| o.client_order_id == id)
                    .filter(|&i| s.orders[i].role == Role::Entry)
            };
            match entry {
                // The invariants held with the entry (the slot is not
                // halted since they were checked at the transition's end)
                // and removing an entry breaks none of them (fewer orders
                // per trade, the others as they were, no id repeated): the
                // closing check would pass.
                Some(i) if s.halted.is_none() => {
                    let o = s.orders.remove(i);
                    s.last_error.set_capital(o.client_order_id, error);
                    s.trade_mut(o.trade).reentry_at_ms =
                        now + secs_ms(ctx.params.reentry_delay_sec);
                }
                _ => {
                    let mut out = Vec::new();
                    on_capital_refused(s, &id, &error, now, ctx, &mut out);
                    close_transition(s, &mut out);
                    after.append(&mut out);
                }
            }
        }
    }
    Checked {
        actions,
        after,
        refused,
        lazy,
        accepted,
    }
}

/// The end of every transition: the invariants checked (once the slot is
/// not halted yet); a halted slot places nothing.
fn close_transition(s: &mut SlotState, out: &mut Vec<SlotAction>) {
    if s.halted.is_none()
        && let Err(why) = s.check_invariants()
    {
        s.halted = Some(why);
    }
    if s.halted.is_some() {
        // A halted slot books what happened but places nothing.
        out.retain(|a| !matches!(a, SlotAction::PlaceOrder(_)));
    }
}

fn transition_with(
    s: &mut SlotState,
    event: &SlotEvent,
    ctx: &SlotCtx<'_>,
    verified: bool,
    pre: &mut Precheck<'_>,
) -> Vec<SlotAction> {
    let mut out = Vec::new();
    if !verified
        && s.halted.is_none()
        && let Err(why) = s.check_invariants()
    {
        s.halted = Some(why);
    }
    // Not halted here: the invariants hold (checked now, or known), and
    // the events that tick change nothing they read before the tick.
    let valid = s.halted.is_none();
    match event {
        SlotEvent::PriceTick { market, now_ms } => {
            if crate::is_positive(*market) {
                s.market = Some(*market);
            }
            tick(s, *now_ms, ctx, &mut out, valid, pre);
        }
        SlotEvent::TimerTick { now_ms } => tick(s, *now_ms, ctx, &mut out, valid, pre),
        SlotEvent::EntryRetry { market, now_ms } => {
            if crate::is_positive(*market) {
                s.market = Some(*market);
            }
            let placed = s.orders.len();
            if s.halted.is_none() {
                place_entries(s, *market, *now_ms, ctx, &mut out, pre);
            }
            // Nothing went out and nothing entered the slot's orders (the
            // entries refused on the screen never do): the orders are the
            // ones whose invariants held, the closing check would pass.
            if out.is_empty() && s.orders.len() == placed && s.halted.is_none() {
                return out;
            }
        }
        SlotEvent::Fill {
            client_order_id,
            volume,
            price,
            fee,
            done,
            now_ms,
        } => on_fill(
            s,
            client_order_id,
            *volume,
            *price,
            *fee,
            *done,
            *now_ms,
            ctx,
            &mut out,
        ),
        SlotEvent::RecoveryFill {
            client_order_id,
            volume,
            price,
            fee,
            done,
            now_ms,
        } => on_recovery_fill(
            s,
            client_order_id,
            *volume,
            *price,
            *fee,
            *done,
            *now_ms,
            ctx,
            &mut out,
        ),
        SlotEvent::RecoveryCancel {
            client_order_id,
            now_ms,
        } => on_recovery_cancel(s, client_order_id, *now_ms, ctx, &mut out),
        SlotEvent::Canceled {
            client_order_id,
            now_ms,
        } => on_canceled(s, client_order_id, *now_ms, ctx, &mut out),
        SlotEvent::Refused {
            client_order_id,
            message,
            now_ms,
        } => on_refused(s, client_order_id, message, *now_ms, ctx, &mut out),
        SlotEvent::CapitalRefused {
            client_order_id,
            error,
            now_ms,
        } => on_capital_refused(s, client_order_id, error, *now_ms, ctx, &mut out),
        SlotEvent::CancelFailed {
            client_order_id,
            message,
            ..
        } => {
            s.last_error
                .set(format!("cancel of {client_order_id} failed: {message}"));
            if let Some(o) = s
                .orders
                .iter_mut()
                .chain(s.recovery.iter_mut())
                .find(|o| o.client_order_id == *client_order_id)
                && let Some(p) = o.pending.take()
                && matches!(p, Pending::Reprice { .. } | Pending::Close)
            {
                out.push(SlotAction::Abandoned {
                    client_order_id: client_order_id.clone(),
                    reason: s.last_error.to_string(),
                });
            }
        }
        SlotEvent::Reprice {
            client_order_id,
            price,
            reason,
            now_ms,
        } => request_change(
            s,
            client_order_id,
            Pending::Reprice {
                price: *price,
                reason: reason.clone(),
            },
            *now_ms,
            ctx,
            &mut out,
        ),
        SlotEvent::CloseAtMarket {
            client_order_id,
            now_ms,
        } => request_change(s, client_order_id, Pending::Close, *now_ms, ctx, &mut out),
        SlotEvent::SetMode { mode, now_ms } => {
            s.mode = *mode;
            tick(s, *now_ms, ctx, &mut out, valid, pre);
        }
    }
    close_transition(s, &mut out);
    out
}

/// Whether a tick of `s` at `now` reaches the entry gates: a trade the mode
/// allows, without an order, out of its loss cooldown and re-entry delay
/// (what [`place_entries`] checks before the gates).
pub(crate) fn entry_due(s: &SlotState, now: i64) -> bool {
    [Trade::A, Trade::B].into_iter().any(|t| {
        let ts = s.trade(t);
        mode_allows(s.mode, t)
            && !s.orders.iter().any(|o| o.trade == t)
            && now >= ts.cooldown_until_ms
            && now >= ts.reentry_at_ms
    })
}

fn mode_allows(mode: SlotMode, t: Trade) -> bool {
    match mode {
        SlotMode::Both => true,
        SlotMode::LongOnly => t == Trade::B,
        SlotMode::ShortOnly => t == Trade::A,
    }
}

/// A tick's work. `valid`: the orders are those of a state whose
/// invariants held when the transition began (checked or known), so the
/// orphan checks need not check them again unless a retry changed them.
fn tick(
    s: &mut SlotState,
    now: i64,
    ctx: &SlotCtx<'_>,
    out: &mut Vec<SlotAction>,
    valid: bool,
    pre: &mut Precheck<'_>,
) {
    if s.halted.is_some() {
        return;
    }
    let Some(market) = s.market else {
        return;
    };
    let retried = retry_refused_exits(s, now, ctx, out);
    orphan_checks(s, market, now, ctx, out, valid && !retried);
    // Entries the mode no longer allows.
    let mode = s.mode;
    for o in &mut s.orders {
        if o.role == Role::Entry && o.pending.is_none() && !mode_allows(mode, o.trade) {
            o.pending = Some(Pending::Mode);
            out.push(SlotAction::CancelOrder {
                client_order_id: o.client_order_id.clone(),
                reason: format!("mode {}", mode.as_str()),
            });
        }
    }
    refresh_one_stale_entry(s, market, now, ctx, out);
    place_entries(s, market, now, ctx, out, pre);
}

/// A relative margin far wider than Decimal's rounding: price bands a
/// wake promises are shrunk by it, so a price inside them is certainly on
/// the quiet side of the exact test the tick makes.
const WAKE_MARGIN: Decimal = Decimal::from_parts(1, 0, 0, false, 9);

/// The factors of a stale-entry band: an entry at `p` is not refreshed
/// while the market is within `p * lo ..= p * hi`, with `lo = (1 +
/// WAKE_MARGIN) / (1 + limit)` and `hi = (1 - WAKE_MARGIN) / (1 - limit)`
/// (none for a limit of 100 % or more), `limit = refresh_pct / 100`. The
/// band `(p / (1 + limit)) * (1 + WAKE_MARGIN)` as before, within
/// Decimal's rounding (28 digits), far inside the margin; two
/// multiplications an entry instead of two divisions and two
/// multiplications. `factors` is `None` for a limit at or below zero
/// (every tick may refresh).
#[derive(Debug, Clone, Copy, PartialEq)]
struct RefreshFactors {
    refresh_pct: Decimal,
    factors: Option<(Decimal, Option<Decimal>)>,
}

impl RefreshFactors {
    /// The factors of `refresh_pct`, kept per thread for the last
    /// percentage asked (a pure function of it: one grid asks for one).
    fn of(refresh_pct: Decimal) -> RefreshFactors {
        thread_local! {
            static LAST: std::cell::Cell<Option<RefreshFactors>> =
                const { std::cell::Cell::new(None) };
        }
        LAST.with(|last| match last.get() {
            Some(f) if f.refresh_pct == refresh_pct => f,
            _ => {
                let f = RefreshFactors::compute(refresh_pct);
                last.set(Some(f));
                f
            }
        })
    }

    fn compute(refresh_pct: Decimal) -> RefreshFactors {
        let limit = refresh_pct / hundred();
        let factors = (limit > Decimal::ZERO).then(|| {
            (
                (Decimal::ONE + WAKE_MARGIN) / (Decimal::ONE + limit),
                (limit < Decimal::ONE)
                    .then(|| (Decimal::ONE - WAKE_MARGIN) / (Decimal::ONE - limit)),
            )
        });
        RefreshFactors {
            refresh_pct,
            factors,
        }
    }
}

/// When a price tick of `s` at a time after `now` (its last tick, which
/// returned no actions) can next do something ([`crate::strategy::Wake`]).
/// `entries_open`: whether the grid's gates (enabled, loss lock, capacity
/// stop, daily loss room, entry budget) would let an entry through. A quiet
/// tick stores only `market` (overwritten by the next) and `last_error`
/// (the same text again); `s2_since_ms` was already set by the last tick.
pub fn wake(
    s: &SlotState,
    now: i64,
    params: &SlotParams,
    entries_open: bool,
) -> crate::strategy::Wake {
    wake_from(s, now, params, entries_open, false).0
}

/// [`wake`] of a state known verified (see [`transition_verified`]): its
/// phase is read without checking the invariants again.
pub(crate) fn wake_verified(
    s: &SlotState,
    now: i64,
    params: &SlotParams,
    entries_open: bool,
) -> crate::strategy::Wake {
    wake_from(s, now, params, entries_open, true).0
}

/// [`wake_verified`], and the wake of everything but the entries (their
/// cooldown and re-entry times, their gates): where that one holds, a tick
/// does nothing but place the entries due ([`SlotEvent::EntryRetry`]).
pub(crate) fn wake_parts_verified(
    s: &SlotState,
    now: i64,
    params: &SlotParams,
    entries_open: bool,
) -> (crate::strategy::Wake, crate::strategy::Wake) {
    wake_from(s, now, params, entries_open, true)
}

/// The slot's wake and the wake of all but its entries.
fn wake_from(
    s: &SlotState,
    now: i64,
    params: &SlotParams,
    entries_open: bool,
    verified: bool,
) -> (crate::strategy::Wake, crate::strategy::Wake) {
    use crate::strategy::Wake;
    let mut w = Wake::IDLE;
    if s.halted.is_some() {
        return (w, w);
    }
    if s.market.is_none() {
        return (Wake::EveryTick, Wake::EveryTick);
    }
    // Refused exits are placed again at their retry time.
    for o in s.orders.iter().chain(&s.recovery) {
        if o.role == Role::Exit
            && let Some(t) = o.retry_at_ms
        {
            w = w.before(t);
        }
    }
    let phase = if verified {
        s.phase_of_orders()
    } else {
        let Ok(phase) = s.phase() else {
            return (w, w);
        };
        phase
    };
    let live_exit =
        |o: &SlotOrder| o.role == Role::Exit && o.pending.is_none() && o.retry_at_ms.is_none();
    match phase {
        Phase::S0 => {}
        Phase::S1a | Phase::S1b if !s.sticky => {
            if let Some(o) = s.orders.iter().find(|o| live_exit(o)) {
                let old_at = o.placed_at_ms.saturating_add(secs_ms(params.s1_orphan_sec));
                if now < old_at {
                    w = w.before(old_at);
                } else if let Some(p) = o.price {
                    // Orphaned once the market is farther from the exit
                    // than it was at placement.
                    let d = (p - o.market_at_place).abs();
                    if d.is_zero() {
                        return (Wake::EveryTick, Wake::EveryTick);
                    }
                    w = w.inside(Some(p - d), Some(p + d));
                }
            }
        }
        Phase::S1a | Phase::S1b => {}
        Phase::S2 => {
            let Some(since) = s.s2_since_ms else {
                return (Wake::EveryTick, Wake::EveryTick);
            };
            if !s.sticky {
                w = w.before(since.saturating_add(secs_ms(params.s2_orphan_sec)));
            }
        }
    }
    // Stale entries are refreshed once the market is more than
    // `refresh_pct` away (after the refresh cooldown).
    if now < s.refresh_cooldown_until_ms {
        w = w.before(s.refresh_cooldown_until_ms);
    } else {
        let mut factors = None;
        for o in &s.orders {
            if o.role != Role::Entry || o.pending.is_some() || !o.executed.is_zero() {
                continue;
            }
            let Some(p) = o.price else { continue };
            let f = *factors.get_or_insert_with(|| RefreshFactors::of(params.refresh_pct));
            let Some((lo_f, hi_f)) = f.factors else {
                return (Wake::EveryTick, Wake::EveryTick);
            };
            // |p - m| / m <= limit  <=>  p / (1 + limit) <= m <= p / (1 - limit).
            w = w.inside(Some(p * lo_f), hi_f.map(|h| p * h));
        }
    }
    // Entries the mode no longer allows are cancelled at once.
    if s.orders
        .iter()
        .any(|o| o.role == Role::Entry && o.pending.is_none() && !mode_allows(s.mode, o.trade))
    {
        return (Wake::EveryTick, Wake::EveryTick);
    }
    (entries_wake(s, now, entries_open, w), w)
}

/// The slot's wake from `other`, the wake of all but its entries: a trade
/// without an order re-enters after its cooldown and re-entry delay, if
/// the gates let it. (The end of [`wake_from`]; an entry retry refused in
/// full changes nothing `other` reads, so the grid reads the new wake from
/// the `other` it kept.)
pub(crate) fn entries_wake(
    s: &SlotState,
    now: i64,
    entries_open: bool,
    other: crate::strategy::Wake,
) -> crate::strategy::Wake {
    use crate::strategy::Wake;
    let mut w = other;
    for t in [Trade::A, Trade::B] {
        if !mode_allows(s.mode, t) {
            continue;
        }
        if s.orders.iter().any(|o| o.trade == t) {
            continue;
        }
        let ts = s.trade(t);
        let at = ts.cooldown_until_ms.max(ts.reentry_at_ms);
        if now < at {
            w = w.before(at);
        } else if entries_open {
            return Wake::EveryTick;
        }
    }
    w
}

/// Places refused exits again once their retry time came; whether any was.
fn retry_refused_exits(
    s: &mut SlotState,
    now: i64,
    ctx: &SlotCtx<'_>,
    out: &mut Vec<SlotAction>,
) -> bool {
    let mut retried = false;
    for i in 0..s.orders.len() {
        let o = &s.orders[i];
        if o.role == Role::Exit && o.retry_at_ms.is_some_and(|t| now >= t) {
            let price = o.price;
            replace_order(s, i, false, price, "retry", now, ctx, out);
            retried = true;
        }
    }
    for i in 0..s.recovery.len() {
        let o = &s.recovery[i];
        if o.role == Role::Exit && o.retry_at_ms.is_some_and(|t| now >= t) {
            let price = o.price;
            replace_order(s, i, true, price, "retry", now, ctx, out);
            retried = true;
        }
    }
    retried
}

/// Adopts a position's exit after a restart (into the recovery list, as
/// the slot's trades start afresh). `live`: the order is still open on the
/// venue; otherwise it is placed again on the next tick.
pub fn adopt_exit(s: &mut SlotState, mut o: SlotOrder, live: bool, now: i64) {
    o.orphan = Some(Orphan {
        orphaned_at_ms: now,
        reason: "restart".into(),
    });
    o.pending = None;
    o.retry_at_ms = if live { None } else { Some(now) };
    s.recovery.push(o);
}

fn orphan_checks(
    s: &mut SlotState,
    market: Decimal,
    now: i64,
    ctx: &SlotCtx<'_>,
    out: &mut Vec<SlotAction>,
    valid: bool,
) {
    let phase = if valid {
        s.phase_of_orders()
    } else {
        match s.phase() {
            Ok(p) => p,
            Err(_) => return,
        }
    };
    if phase == Phase::S2 {
        s.s2_since_ms.get_or_insert(now);
    } else {
        s.s2_since_ms = None;
    }
    if s.sticky {
        return;
    }
    let live_exit =
        |o: &SlotOrder| o.role == Role::Exit && o.pending.is_none() && o.retry_at_ms.is_none();
    match phase {
        Phase::S0 => {}
        Phase::S1a | Phase::S1b => {
            let Some(i) = s.orders.iter().position(live_exit) else {
                return;
            };
            let o = &s.orders[i];
            let old = now - o.placed_at_ms >= secs_ms(ctx.params.s1_orphan_sec);
            let away = match o.price {
                Some(p) => (p - market).abs() > (p - o.market_at_place).abs(),
                None => false,
            };
            if old && away {
                orphan(s, i, "s1_timeout", market, now, ctx, out);
            }
        }
        Phase::S2 => {
            let since = s.s2_since_ms.unwrap_or(now);
            if now - since < secs_ms(ctx.params.s2_orphan_sec) {
                return;
            }
            let farther = s
                .orders
                .iter()
                .enumerate()
                .filter(|(_, o)| live_exit(o))
                .max_by(|(_, x), (_, y)| {
                    x.distance(market)
                        .cmp(&y.distance(market))
                        .then_with(|| y.client_order_id.cmp(&x.client_order_id))
                })
                .map(|(i, _)| i);
            if let Some(i) = farther {
                orphan(s, i, "s2_timeout", market, now, ctx, out);
                s.s2_since_ms = None;
            }
        }
    }
}

/// Moves exit `i` into the recovery list; evicts past the cap.
fn orphan(
    s: &mut SlotState,
    i: usize,
    reason: &str,
    market: Decimal,
    now: i64,
    ctx: &SlotCtx<'_>,
    out: &mut Vec<SlotAction>,
) {
    let mut o = s.orders.remove(i);
    o.orphan = Some(Orphan {
        orphaned_at_ms: now,
        reason: reason.to_string(),
    });
    out.push(SlotAction::OrphanOrder {
        client_order_id: o.client_order_id.clone(),
        position_id: o.position_id.clone(),
        trade: o.trade,
        reason: reason.to_string(),
    });
    let t = o.trade;
    s.trade_mut(t).cycles += 1;
    s.orphans += 1;
    s.recovery.push(o);
    let cap = usize::try_from(ctx.params.max_recovery).unwrap_or(usize::MAX);
    while s.recovery.len() > cap {
        evict_one(s, market, now, ctx, out);
    }
}

/// Index of the recovery order to evict: farthest from market, then
/// oldest, then lowest id.
pub fn eviction_victim(recovery: &[SlotOrder], market: Decimal) -> Option<usize> {
    recovery
        .iter()
        .enumerate()
        .min_by(|(_, x), (_, y)| {
            y.distance(market)
                .cmp(&x.distance(market))
                .then_with(|| orphaned_at(x).cmp(&orphaned_at(y)))
                .then_with(|| x.client_order_id.cmp(&y.client_order_id))
        })
        .map(|(i, _)| i)
}

fn orphaned_at(o: &SlotOrder) -> i64 {
    o.orphan
        .as_ref()
        .map_or(o.placed_at_ms, |x| x.orphaned_at_ms)
}

fn evict_one(
    s: &mut SlotState,
    market: Decimal,
    now: i64,
    ctx: &SlotCtx<'_>,
    out: &mut Vec<SlotAction>,
) {
    let Some(i) = eviction_victim(&s.recovery, market) else {
        return;
    };
    let o = s.recovery.remove(i);
    out.push(SlotAction::CancelOrder {
        client_order_id: o.client_order_id.clone(),
        reason: "evicted".into(),
    });
    book_at_market(s, &o, CycleKind::Eviction, market, now, ctx, out);
}

/// Books what `o` has left at `market` with a maker fee (plus what it
/// already executed at its own prices).
fn book_at_market(
    s: &mut SlotState,
    o: &SlotOrder,
    kind: CycleKind,
    market: Decimal,
    now: i64,
    ctx: &SlotCtx<'_>,
    out: &mut Vec<SlotAction>,
) {
    let rest = o.remaining();
    let value = o.avg_price * o.executed + market * rest;
    let exit_fee = o.fee + market * rest * ctx.filters.maker_fee;
    let exit_price = if o.volume > Decimal::ZERO {
        value / o.volume
    } else {
        market
    };
    book(s, o, kind, exit_price, exit_fee, now, ctx, out);
}

#[allow(clippy::too_many_arguments)]
fn book(
    s: &mut SlotState,
    o: &SlotOrder,
    kind: CycleKind,
    exit_price: Decimal,
    exit_fee: Decimal,
    now: i64,
    ctx: &SlotCtx<'_>,
    out: &mut Vec<SlotAction>,
) {
    let gross = o.trade.gross(o.entry_price, exit_price, o.volume);
    let net = gross - o.entry_fee - exit_fee;
    let c = CycleRecord {
        slot_id: s.id,
        trade: o.trade,
        kind,
        position_id: o.position_id.clone(),
        exit_order_id: o.client_order_id.clone(),
        entry_price: o.entry_price,
        exit_price: exit_price.normalize(),
        volume: o.volume,
        entry_fee: o.entry_fee,
        exit_fee: exit_fee.normalize(),
        gross: gross.normalize(),
        net: net.normalize(),
        target_price: o.target_price,
        time_ms: now,
    };
    s.push_cycle(&c);
    let p = ctx.params;
    let ts = s.trade_mut(o.trade);
    if net < Decimal::ZERO {
        ts.consecutive_losses += 1;
        if ts.consecutive_losses >= p.loss_cooldown_after {
            ts.cooldown_until_ms = now + secs_ms(p.loss_cooldown_sec);
        }
    } else {
        ts.consecutive_losses = 0;
    }
    if matches!(
        kind,
        CycleKind::Exit | CycleKind::MarketClose | CycleKind::Dust
    ) {
        // The trade itself completed: it re-enters after the delay.
        ts.cycles += 1;
        ts.reentry_at_ms = now + secs_ms(p.reentry_delay_sec);
    }
    out.push(SlotAction::BookCycle(c));
}

fn refresh_one_stale_entry(
    s: &mut SlotState,
    market: Decimal,
    now: i64,
    ctx: &SlotCtx<'_>,
    out: &mut Vec<SlotAction>,
) {
    if now < s.refresh_cooldown_until_ms {
        return;
    }
    let screen = RefreshScreen::new(market, ctx.params.refresh_pct);
    let mut limit = None;
    let stale = s.orders.iter().position(|o| {
        o.role == Role::Entry
            && o.pending.is_none()
            && o.executed.is_zero()
            && o.price.is_some_and(|p| {
                if screen.is_some_and(|sc| sc.certainly_within(p)) {
                    return false;
                }
                let limit = *limit.get_or_insert_with(|| ctx.params.refresh_pct / hundred());
                (p - market).abs() / market > limit
            })
    });
    let Some(i) = stale else {
        return;
    };
    let dir: i8 = if o_price(&s.orders[i]) < market {
        1
    } else {
        -1
    };
    if dir == s.refresh_dir {
        s.refresh_streak += 1;
    } else {
        s.refresh_dir = dir;
        s.refresh_streak = 1;
    }
    if s.refresh_streak >= ctx.params.refresh_chase_limit {
        s.refresh_cooldown_until_ms = now + secs_ms(ctx.params.refresh_cooldown_sec);
        s.refresh_streak = 0;
        s.refresh_dir = 0;
    }
    let o = &mut s.orders[i];
    o.pending = Some(Pending::Refresh);
    out.push(SlotAction::CancelOrder {
        client_order_id: o.client_order_id.clone(),
        reason: "stale entry refresh".into(),
    });
}

/// An f64 screen before the stale-entry test `|p - market| / market >
/// refresh_pct / 100`: says "within" only with a relative margin of 1e-6
/// on the limit, far wider than the f64 readings' error (a few ulps, the
/// limit at least 1e-6) and Decimal's rounding (28 digits); anything else
/// goes to the exact test.
#[derive(Debug, Clone, Copy)]
struct RefreshScreen {
    market: f64,
    limit: f64,
}

impl RefreshScreen {
    fn new(market: Decimal, refresh_pct: Decimal) -> Option<RefreshScreen> {
        let f = super::heal::approx_f64;
        let (market, limit) = (f(market), f(refresh_pct) / 100.0);
        (market > 0.0 && market.is_finite() && limit >= 1e-6 && limit.is_finite())
            .then_some(RefreshScreen { market, limit })
    }

    /// True only when `p` is certainly within the limit of the market.
    fn certainly_within(self, p: Decimal) -> bool {
        let d = (super::heal::approx_f64(p) - self.market).abs() / self.market;
        d < self.limit * (1.0 - 1e-6)
    }
}

fn o_price(o: &SlotOrder) -> Decimal {
    o.price.unwrap_or_default()
}

fn place_entries(
    s: &mut SlotState,
    market: Decimal,
    now: i64,
    ctx: &SlotCtx<'_>,
    out: &mut Vec<SlotAction>,
    pre: &mut Precheck<'_>,
) {
    let mut budget = ctx.entry_budget;
    for t in [Trade::A, Trade::B] {
        if !mode_allows(s.mode, t) || s.orders.iter().any(|o| o.trade == t) {
            continue;
        }
        let ts = s.trade(t);
        if now < ts.cooldown_until_ms || now < ts.reentry_at_ms {
            continue;
        }
        if let Some(why) = &ctx.entries_blocked {
            s.last_error.set(format!("entries blocked: {why}"));
            return;
        }
        let booked: Decimal = out
            .iter()
            .filter_map(|a| match a {
                SlotAction::BookCycle(c) => Some(c.net),
                _ => None,
            })
            .sum();
        if let Some(room) = ctx.loss_room
            && -booked >= room
        {
            s.last_error
                .set("entries blocked: daily loss lock (this tick's losses)".into());
            return;
        }
        if budget == 0 {
            return;
        }
        let losses = ts.consecutive_losses;
        // No order went out before it in this transition: the ledger is
        // the one its reservation would read. The funds read once: an
        // entry the ledger certainly refuses (an f64 screen) takes its id
        // as it would and is refused, its amount not computed (the
        // refusal's text computes it when read); any other is checked
        // exactly below against the same funds.
        let mut taken = None;
        let mut funds = None;
        // Read once: the screen's and the price's.
        let backoff = backoff(ctx.params, losses);
        if let Some(check) = pre.check
            && !out.iter().any(|a| matches!(a, SlotAction::PlaceOrder(_)))
            && let Some((asset, available, buy_fee)) = check.funds(t.entry_side())
        {
            funds = Some((asset, available, buy_fee));
            let usd = ctx.params.order_size_usd;
            // Screened only after a refusal (the slot's last error): most
            // entries are refused in a row, and the screen costs about as
            // much as it saves when they are not.
            if s.last_error.is_capital_refusal()
                && !certainly_covered(t, market, usd, buy_fee, available)
                && let Some(floor) =
                    entry_floor(t, market, ctx.params.entry_pct, backoff, usd, &ctx.filters)
            {
                let id = s.take_id(t, Role::Entry);
                s.last_error.clear();
                let held = check.holds_prefix(id.prefix()) && check.is_held(&id.text());
                if !held && certainly_above(t, floor, buy_fee, available) {
                    let refusal = LazyRefusal {
                        trade: t,
                        market,
                        entry_pct: ctx.params.entry_pct,
                        backoff,
                        order_size_usd: usd,
                        filters: ctx.filters.clone(),
                        asset,
                        available,
                        buy_fee,
                    };
                    pre.refused.push(PreRefusal::Lazy {
                        id,
                        refusal,
                        at: s.orders.len() + pre.lazy,
                        now,
                    });
                    pre.lazy += 1;
                    budget -= 1;
                    continue;
                }
                taken = Some(id.text());
            }
        }
        let price = entry_price_of(
            t,
            market,
            ctx.params.entry_pct,
            backoff,
            ctx.filters.tick_size,
        );
        let volume = match entry_volume(ctx.params.order_size_usd, price, &ctx.filters) {
            Ok(v) => v,
            Err(e) => {
                s.last_error.set(format!(
                    "no entry for trade {}: {e} (order size ${})",
                    t.as_str(),
                    ctx.params.order_size_usd
                ));
                continue;
            }
        };
        let id = match taken {
            // Taken above (the screen proved the volume valid).
            Some(id) => id,
            None => {
                let id = s.next_id(t, Role::Entry);
                // An entry goes out: whatever kept entries from going out
                // is gone.
                s.last_error.clear();
                id
            }
        };
        s.orders
            .push(new_entry(id.clone(), t, price, volume, now, market));
        budget -= 1;
        // No order went out before it in this transition: the ledger's
        // answer now is the one its reservation would get.
        let refusal = match (pre.check, funds) {
            // The funds read above, nothing changed since: the checks
            // `reserve` makes (a duplicate id, then `available - amount <
            // 0`) with the amount its hold computes.
            (Some(check), Some(_)) if check.is_held(&id) => {
                Some(CapitalError::Duplicate(id.clone()))
            }
            (Some(_), Some((asset, available, buy_fee))) => {
                let amount = match t.entry_side() {
                    Side::Sell => volume,
                    Side::Buy => volume * price * (Decimal::ONE + buy_fee),
                };
                (available - amount < Decimal::ZERO).then_some(CapitalError::Insufficient {
                    asset,
                    available,
                    amount,
                    keep: Decimal::ZERO,
                })
            }
            (Some(check), None) if !out.iter().any(|a| matches!(a, SlotAction::PlaceOrder(_))) => {
                check.refusal(&id, t.entry_side(), volume, Some(price))
            }
            _ => None,
        };
        if let Some(e) = refusal {
            pre.refused.push(PreRefusal::Known(id, e));
            continue;
        }
        // Checked against the ledger: its reservation passes.
        pre.accepted |= funds.is_some();
        out.push(SlotAction::PlaceOrder(PlaceSpec {
            client_order_id: id,
            trade: t,
            role: Role::Entry,
            side: t.entry_side(),
            price: Some(price),
            volume,
            userref_offset: ctx.userref_offset,
        }));
    }
}

#[allow(clippy::too_many_arguments)]
fn on_fill(
    s: &mut SlotState,
    id: &str,
    volume: Decimal,
    price: Decimal,
    fee: Decimal,
    done: bool,
    now: i64,
    ctx: &SlotCtx<'_>,
    out: &mut Vec<SlotAction>,
) {
    let Some(i) = s
        .orders
        .iter()
        .position(|o| same_id(&o.client_order_id, id))
    else {
        return;
    };
    s.orders[i].fold_fill(volume, price, fee);
    if !done {
        return;
    }
    let o = s.orders.remove(i);
    if o.pending.is_some() && o.role != Role::Entry {
        out.push(SlotAction::Abandoned {
            client_order_id: o.client_order_id.clone(),
            reason: "the order filled first".into(),
        });
    }
    match o.role {
        Role::Entry => open_position(s, o, now, ctx, out),
        Role::Exit | Role::Close => {
            let kind = if o.role == Role::Close {
                CycleKind::MarketClose
            } else {
                CycleKind::Exit
            };
            let (avg, fee) = (o.avg_price, o.fee);
            book(s, &o, kind, avg, fee, now, ctx, out);
        }
    }
}

/// An entry is done (filled, or cancelled after a partial fill): the
/// position opens and its exit goes out.
fn open_position(
    s: &mut SlotState,
    entry: SlotOrder,
    now: i64,
    ctx: &SlotCtx<'_>,
    out: &mut Vec<SlotAction>,
) {
    let t = entry.trade;
    let fill = entry.avg_price;
    let market = s.market.unwrap_or(fill);
    let xprice = exit_price(t, fill, market, ctx);
    let volume = floor_lot(entry.executed, ctx.filters.lot_decimals);
    let exit_fee = xprice * volume * ctx.filters.maker_fee;
    let target_profit = t.gross(fill, xprice, volume) - entry.fee - exit_fee;
    let xid = s.next_id(t, Role::Exit);
    out.push(SlotAction::PositionOpened(PositionOpened {
        slot_id: s.id,
        position_id: entry.client_order_id.clone(),
        trade: t,
        entry_side: t.entry_side(),
        entry_price: fill,
        volume: entry.executed,
        entry_fee: entry.fee,
        entry_time_ms: now,
        exit_price: xprice,
        exit_order_id: xid.clone(),
        target_profit: target_profit.normalize(),
    }));
    let exit = SlotOrder {
        client_order_id: xid.clone(),
        trade: t,
        role: Role::Exit,
        side: t.exit_side(),
        price: Some(xprice),
        volume: entry.executed,
        placed_at_ms: now,
        market_at_place: market,
        executed: Decimal::ZERO,
        avg_price: Decimal::ZERO,
        fee: Decimal::ZERO,
        position_id: entry.client_order_id.clone(),
        entry_price: fill,
        entry_fee: entry.fee,
        entry_time_ms: now,
        target_price: xprice,
        pending: None,
        retry_at_ms: None,
        orphan: None,
    };
    if let Err(e) = check_minimums(volume, xprice, &ctx.filters) {
        s.last_error.set(format!(
            "exit of {} below the venue minimums: {e}",
            entry.client_order_id
        ));
        let (p, f) = (fill, Decimal::ZERO);
        // Nothing can be placed: written off at the entry price.
        book(s, &exit, CycleKind::Dust, p, f, now, ctx, out);
        return;
    }
    s.orders.push(exit);
    out.push(SlotAction::PlaceOrder(PlaceSpec {
        client_order_id: xid,
        trade: t,
        role: Role::Exit,
        side: t.exit_side(),
        price: Some(xprice),
        volume,
        userref_offset: ctx.userref_offset,
    }));
}

#[allow(clippy::too_many_arguments)]
fn on_recovery_fill(
    s: &mut SlotState,
    id: &str,
    volume: Decimal,
    price: Decimal,
    fee: Decimal,
    done: bool,
    now: i64,
    ctx: &SlotCtx<'_>,
    out: &mut Vec<SlotAction>,
) {
    let Some(i) = s
        .recovery
        .iter()
        .position(|o| same_id(&o.client_order_id, id))
    else {
        return;
    };
    s.recovery[i].fold_fill(volume, price, fee);
    if !done {
        return;
    }
    let o = s.recovery.remove(i);
    if o.pending.is_some() {
        out.push(SlotAction::Abandoned {
            client_order_id: o.client_order_id.clone(),
            reason: "the order filled first".into(),
        });
    }
    let kind = if o.role == Role::Close {
        CycleKind::MarketClose
    } else {
        CycleKind::Recovery
    };
    let (avg, f) = (o.avg_price, o.fee);
    book(s, &o, kind, avg, f, now, ctx, out);
}

fn on_recovery_cancel(
    s: &mut SlotState,
    id: &str,
    now: i64,
    ctx: &SlotCtx<'_>,
    out: &mut Vec<SlotAction>,
) {
    let Some(i) = s
        .recovery
        .iter()
        .position(|o| same_id(&o.client_order_id, id))
    else {
        return;
    };
    match s.recovery[i].pending.clone() {
        Some(Pending::Reprice { price, reason }) => {
            replace_order(s, i, true, Some(price), &reason, now, ctx, out);
        }
        Some(Pending::Close) => replace_order(s, i, true, None, "close", now, ctx, out),
        _ => {
            let o = s.recovery.remove(i);
            let market = s.market.unwrap_or(o.entry_price);
            book_at_market(s, &o, CycleKind::RecoveryCancelled, market, now, ctx, out);
        }
    }
}

fn on_canceled(
    s: &mut SlotState,
    id: &str,
    now: i64,
    ctx: &SlotCtx<'_>,
    out: &mut Vec<SlotAction>,
) {
    let Some(i) = s
        .orders
        .iter()
        .position(|o| same_id(&o.client_order_id, id))
    else {
        return;
    };
    let o = &s.orders[i];
    match (o.role, o.pending.clone()) {
        (Role::Entry, _) => {
            let o = s.orders.remove(i);
            if crate::is_positive(o.executed) {
                open_position(s, o, now, ctx, out);
            }
        }
        (_, Some(Pending::Reprice { price, reason })) => {
            replace_order(s, i, false, Some(price), &reason, now, ctx, out);
        }
        (_, Some(Pending::Close)) => replace_order(s, i, false, None, "close", now, ctx, out),
        (Role::Close, _) => {
            // A market close that was cancelled: put the exit back.
            let price = Some(s.orders[i].target_price);
            replace_order(s, i, false, price, "restore", now, ctx, out);
        }
        (Role::Exit, _) => {
            // Cancelled outside the slot: the position waits in recovery.
            let market = s.market.unwrap_or(o.entry_price);
            orphan(s, i, CANCELED_OUTSIDE, market, now, ctx, out);
        }
    }
}

/// Replaces order `i` (of the trades' orders, or of recovery) with a new
/// one: a limit at `price`, or a market close when `price` is `None`.
#[allow(clippy::too_many_arguments)]
fn replace_order(
    s: &mut SlotState,
    i: usize,
    in_recovery: bool,
    price: Option<Decimal>,
    reason: &str,
    now: i64,
    ctx: &SlotCtx<'_>,
    out: &mut Vec<SlotAction>,
) {
    let old = if in_recovery {
        s.recovery[i].clone()
    } else {
        s.orders[i].clone()
    };
    let role = if price.is_none() {
        Role::Close
    } else {
        Role::Exit
    };
    let id = s.next_id(old.trade, role);
    let volume = floor_lot(old.remaining(), ctx.filters.lot_decimals);
    let mut new = SlotOrder {
        client_order_id: id.clone(),
        role,
        price,
        placed_at_ms: if reason == "retry" {
            old.placed_at_ms
        } else {
            now
        },
        market_at_place: s.market.unwrap_or(old.market_at_place),
        pending: None,
        retry_at_ms: None,
        ..old.clone()
    };
    if role == Role::Close {
        // Remember the exit to restore if the market order fails.
        new.target_price = old.price.unwrap_or(old.target_price);
    }
    out.push(SlotAction::ExitMoved {
        position_id: old.position_id.clone(),
        old_order_id: old.client_order_id.clone(),
        new_order_id: id.clone(),
        old_price: old.price,
        new_price: price,
        reason: reason.to_string(),
    });
    if in_recovery {
        s.recovery[i] = new;
    } else {
        s.orders[i] = new;
    }
    out.push(SlotAction::PlaceOrder(PlaceSpec {
        client_order_id: id,
        trade: old.trade,
        role,
        side: old.trade.exit_side(),
        price,
        volume,
        userref_offset: ctx.userref_offset,
    }));
}

/// The grid's capital ledger refused entry `id` before it went out: what
/// [`on_refused`] does with the message `capital: {error}`, with the text
/// of `last_error` written only when it is read.
fn on_capital_refused(
    s: &mut SlotState,
    id: &str,
    error: &CapitalError,
    now: i64,
    ctx: &SlotCtx<'_>,
    out: &mut Vec<SlotAction>,
) {
    let entry = if s.recovery.iter().any(|o| o.client_order_id == id) {
        None
    } else {
        s.orders
            .iter()
            .position(|o| o.client_order_id == id)
            .filter(|&i| s.orders[i].role == Role::Entry)
    };
    match entry {
        Some(i) => {
            let o = s.orders.remove(i);
            s.last_error.set_capital(o.client_order_id, error.clone());
            s.trade_mut(o.trade).reentry_at_ms = now + secs_ms(ctx.params.reentry_delay_sec);
        }
        None => on_refused(s, id, &format!("capital: {error}"), now, ctx, out),
    }
}

fn on_refused(
    s: &mut SlotState,
    id: &str,
    message: &str,
    now: i64,
    ctx: &SlotCtx<'_>,
    out: &mut Vec<SlotAction>,
) {
    if let Some(i) = s.recovery.iter().position(|o| o.client_order_id == id) {
        s.last_error
            .set(format!("recovery order {id} refused: {message}"));
        if s.recovery[i].role == Role::Close {
            let price = Some(s.recovery[i].target_price);
            replace_order(s, i, true, price, "restore", now, ctx, out);
        } else {
            s.recovery[i].retry_at_ms = Some(now + EXIT_RETRY_MS);
        }
        return;
    }
    let Some(i) = s
        .orders
        .iter()
        .position(|o| same_id(&o.client_order_id, id))
    else {
        return;
    };
    match s.orders[i].role {
        Role::Entry => {
            let o = s.orders.remove(i);
            s.last_error.set(format!("entry {id} refused: {message}"));
            // Wait before trying again rather than hammering the venue.
            s.trade_mut(o.trade).reentry_at_ms = now + secs_ms(ctx.params.reentry_delay_sec);
        }
        Role::Exit => {
            s.last_error.set(format!("exit {id} refused: {message}"));
            s.orders[i].retry_at_ms = Some(now + EXIT_RETRY_MS);
        }
        Role::Close => {
            // Close at market failed: restore the old exit.
            s.last_error.set(format!(
                "market close {id} failed: {message}; exit restored"
            ));
            let price = Some(s.orders[i].target_price);
            replace_order(s, i, false, price, "restore", now, ctx, out);
        }
    }
}

/// Marks a live exit (trades' or recovery) for a reprice or a close and
/// asks for its cancel.
fn request_change(
    s: &mut SlotState,
    id: &str,
    change: Pending,
    now: i64,
    ctx: &SlotCtx<'_>,
    out: &mut Vec<SlotAction>,
) {
    // An exit already cancelled outside the slot (an emergency stop) has
    // nothing left to cancel, and no cancel event will come: its
    // replacement goes out at once.
    if let Some(i) = s.recovery.iter().position(|o| {
        o.client_order_id == id
            && o.role == Role::Exit
            && o.pending.is_none()
            && o.orphan
                .as_ref()
                .is_some_and(|x| x.reason == CANCELED_OUTSIDE)
    }) {
        match change {
            Pending::Reprice { price, reason } => {
                replace_order(s, i, true, Some(price), &reason, now, ctx, out);
            }
            Pending::Close => replace_order(s, i, true, None, "close", now, ctx, out),
            Pending::Refresh | Pending::Mode => out.push(SlotAction::Abandoned {
                client_order_id: id.to_string(),
                reason: "the exit was already canceled".into(),
            }),
        }
        return;
    }
    let o = s
        .orders
        .iter_mut()
        .chain(s.recovery.iter_mut())
        .find(|o| o.client_order_id == id && o.role == Role::Exit);
    match o {
        Some(o) if o.pending.is_none() && o.retry_at_ms.is_none() => {
            o.pending = Some(change);
            out.push(SlotAction::CancelOrder {
                client_order_id: id.to_string(),
                reason: "replace exit".into(),
            });
        }
        _ => out.push(SlotAction::Abandoned {
            client_order_id: id.to_string(),
            reason: "not a live exit of this slot (or a change is already under way)".into(),
        }),
    }
}

#[cfg(test)]
mod verified_tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// Refusals come out in the order they went in, the first two kept in
    /// place and any more after them.
    #[test]
    fn refusals_keep_their_order() {
        for n in 0..5 {
            let mut r = Refusals::default();
            for k in 0..n {
                let id = format!("r{k}");
                r.push(PreRefusal::Known(id.clone(), CapitalError::Duplicate(id)));
            }
            let ids: Vec<String> = r
                .drain()
                .map(|p| match p {
                    PreRefusal::Known(id, _) => id,
                    PreRefusal::Lazy { .. } => "lazy".into(),
                })
                .collect();
            let want: Vec<String> = (0..n).map(|k| format!("r{k}")).collect();
            assert_eq!(ids, want);
        }
    }

    /// The stale-entry band from kept factors is the band the divisions
    /// gave (within 1e-20 relative), still inside the exact test's limits
    /// at both edges, and the kept factors are the computed ones whichever
    /// percentage was asked before.
    #[test]
    fn the_refresh_band_from_factors_is_the_divided_band() {
        let pcts = [
            "1", "0.5", "2.75", "0.0001", "99.99", "100", "150", "0", "-1",
        ];
        let prices = [
            "0.1",
            "0.12345",
            "0.099871",
            "1",
            "27.5",
            "65432.1",
            "0.00000123",
        ];
        for (k, pct) in pcts.iter().cycle().take(40).enumerate() {
            let pct: Decimal = pct.parse().unwrap();
            let kept = RefreshFactors::of(pct);
            assert_eq!(kept, RefreshFactors::compute(pct), "{pct} after {k} asks");
            let limit = pct / hundred();
            let Some((lo_f, hi_f)) = kept.factors else {
                assert!(limit <= Decimal::ZERO, "{pct}");
                continue;
            };
            for p in prices {
                let p: Decimal = p.parse().unwrap();
                let old_lo = (p / (Decimal::ONE + limit)) * (Decimal::ONE + WAKE_MARGIN);
                let lo = p * lo_f;
                let close = |a: Decimal, b: Decimal| (a - b).abs() <= b.abs() * Decimal::new(1, 20);
                assert!(close(lo, old_lo), "{pct} {p}: {lo} vs {old_lo}");
                // At the band's edge the entry is within the limit.
                assert!((p - lo).abs() / lo <= limit, "{pct} {p} lo {lo}");
                match hi_f {
                    Some(h) => {
                        let old_hi = (p / (Decimal::ONE - limit)) * (Decimal::ONE - WAKE_MARGIN);
                        let hi = p * h;
                        assert!(close(hi, old_hi), "{pct} {p}: {hi} vs {old_hi}");
                        assert!((p - hi).abs() / hi <= limit, "{pct} {p} hi {hi}");
                    }
                    None => assert!(limit >= Decimal::ONE, "{pct}"),
                }
            }
        }
    }

    /// An id taken and written later is the id `next_id` writes at once,
    /// across the counter's rollover, and starts with its prefix.
    #[test]
    fn a_taken_id_writes_as_next_id_does() {
        let mut a = SlotState::new(12, false, SlotMode::Both, 1_767_225_600_000);
        let mut b = a.clone();
        for k in 0..50_000_u32 {
            let (t, role) = match k % 4 {
                0 => (Trade::A, Role::Entry),
                1 => (Trade::B, Role::Exit),
                2 => (Trade::B, Role::Close),
                _ => (Trade::B, Role::Entry),
            };
            let id = a.next_id(t, role);
            let lazy = b.take_id(t, role);
            assert!(id.starts_with(lazy.prefix()), "{id} {}", lazy.prefix());
            assert_eq!(lazy.text(), id);
        }
    }

    /// The stale-entry screen says "within" only where the exact test
    /// says "not stale", over prices around each edge and far from it.
    #[test]
    fn the_refresh_screen_never_hides_a_stale_entry() {
        let mut seed: u64 = 11;
        let mut within = 0;
        for pct in [
            Decimal::new(1, 4),
            Decimal::new(5, 1),
            Decimal::ONE,
            Decimal::new(25, 1),
            Decimal::from(50),
        ] {
            let limit = pct / hundred();
            for k in 0..4_000_i64 {
                seed = crate::testing::lcg(seed);
                let market = Decimal::new(i64::try_from(seed >> 44).unwrap() + 1, 7);
                let Some(screen) = RefreshScreen::new(market, pct) else {
                    panic!("no screen at {market}");
                };
                // Near an edge: market * (1 +- limit) moved by a few ticks
                // or ulps of the last digit; or anywhere within 2 limits.
                let edge = if k % 2 == 0 {
                    Decimal::ONE + limit
                } else {
                    Decimal::ONE - limit
                };
                let nudge = Decimal::new((k % 7) - 3, 7 + u32::try_from(k % 20).unwrap());
                let p = match k % 3 {
                    0 => market * edge + nudge,
                    1 => (market * edge).round_dp(7),
                    _ => {
                        market
                            * (Decimal::ONE
                                + limit
                                    * Decimal::new(i64::try_from(seed % 4001).unwrap() - 2000, 3))
                    }
                };
                let exact_stale = (p - market).abs() / market > limit;
                if screen.certainly_within(p) {
                    within += 1;
                    assert!(!exact_stale, "{p} at {market}, {pct} %");
                }
            }
        }
        assert!(within > 1_000, "the screen decided only {within} times");
    }

    #[test]
    fn slot_ids_are_written_as_display_writes_them() {
        for n in [0, 7, 10, 99, 100, 4_294_967_295] {
            for (t, r) in [('a', 'e'), ('b', 'x'), ('a', 'c')] {
                let mut buf = [0u8; 16];
                let len = write_tag(&mut buf, n, t, r);
                assert_eq!(&buf[..len], format!("g{n}{t}{r}").as_bytes());
            }
        }
    }

    /// Refuses the entries of the sides it is told to (the amount: the
    /// volume).
    struct RefuseSides {
        sell: bool,
        buy: bool,
    }

    /// The fee a buy's hold adds.
    const BUY_FEE: Decimal = Decimal::from_parts(25, 0, 0, false, 4);

    impl RefuseSides {
        /// Nothing free on a refused side, plenty on the other.
        fn available(&self, side: Side) -> (Asset, Decimal) {
            match side {
                Side::Sell => (
                    Asset::Base,
                    if self.sell {
                        Decimal::ZERO
                    } else {
                        Decimal::MAX
                    },
                ),
                Side::Buy => (
                    Asset::Quote,
                    if self.buy {
                        Decimal::ZERO
                    } else {
                        Decimal::MAX
                    },
                ),
            }
        }

        fn error(&self, side: Side, volume: Decimal, price: Decimal) -> Option<CapitalError> {
            let (asset, available) = self.available(side);
            let amount = match side {
                Side::Sell => volume,
                Side::Buy => volume * price * (Decimal::ONE + BUY_FEE),
            };
            (available - amount < Decimal::ZERO).then_some(CapitalError::Insufficient {
                asset,
                available,
                amount,
                keep: Decimal::ZERO,
            })
        }
    }

    impl EntryCheck for RefuseSides {
        fn refusal(
            &self,
            _: &str,
            side: Side,
            volume: Decimal,
            price: Option<Decimal>,
        ) -> Option<CapitalError> {
            self.error(side, volume, price.unwrap_or_default())
        }

        fn funds(&self, side: Side) -> Option<(Asset, Decimal, Decimal)> {
            let (asset, available) = self.available(side);
            Some((asset, available, BUY_FEE))
        }

        fn is_held(&self, _: &str) -> bool {
            false
        }

        fn holds_prefix(&self, _: &str) -> bool {
            false
        }
    }

    /// The entries of `actions` `check` refuses taken out, then `after`,
    /// then each refusal stepped as the grid steps them: what goes out.
    fn refuse_after(
        s: &mut SlotState,
        actions: Vec<SlotAction>,
        after: Vec<SlotAction>,
        check: &RefuseSides,
        ctx: &SlotCtx<'_>,
        now: i64,
    ) -> Vec<SlotAction> {
        let mut out = Vec::new();
        let mut refused = Vec::new();
        for a in actions {
            match a {
                SlotAction::PlaceOrder(p)
                    if p.role == Role::Entry
                        && check
                            .error(p.side, p.volume, p.price.unwrap_or_default())
                            .is_some() =>
                {
                    let e = check
                        .error(p.side, p.volume, p.price.unwrap_or_default())
                        .unwrap();
                    refused.push((p.client_order_id, e));
                }
                a => out.push(a),
            }
        }
        out.extend(after);
        for (id, error) in refused {
            let ev = SlotEvent::CapitalRefused {
                client_order_id: id,
                error,
                now_ms: now,
            };
            let verified = s.halted.is_none();
            out.extend(transition_in_place(s, &ev, ctx, verified));
        }
        out
    }

    /// A slot walked through ticks, fills and cancels twice: once placing
    /// every entry and stepping the refusals of those the ledger (here
    /// refusing whole sides, the sides and the loop's entry budget changing
    /// by step) refuses after, as the grid did; once refusing them in the
    /// transition ([`transition_checked`]). The same states (ids, last
    /// errors, re-entry times) and what goes out at every step.
    #[test]
    fn entries_refused_in_the_transition_equal_refusals_after() {
        let (mut refused_in, mut lazy) = (0, 0);
        for delay in [0, 60] {
            let params = SlotParams {
                reentry_delay_sec: delay,
                ..SlotParams::default()
            };
            let t0 = 1_700_000_000_000_i64;
            let mut old = SlotState::new(0, false, SlotMode::Both, t0);
            let mut new = old.clone();
            let mut open: Vec<(String, Decimal, Decimal)> = Vec::new();
            for step in 0..600_i64 {
                let ctx = SlotCtx {
                    params: &params,
                    filters: doge_filters(),
                    profit_pct: params.profit_pct,
                    entry_budget: u32::try_from(step % 3).unwrap(),
                    entries_blocked: None,
                    userref_offset: 100,
                    loss_room: None,
                };
                let check = RefuseSides {
                    sell: (step / 3) % 4 < 2,
                    buy: (step / 3) % 2 == 0,
                };
                let now = t0 + step * 15_000;
                let ev = walk_event(step, now, &open);
                let verified = old.halted.is_none();
                let a = transition_in_place(&mut old, &ev, &ctx, verified);
                let a1 = refuse_after(&mut old, a, Vec::new(), &check, &ctx, now);
                let c = transition_checked(&mut new, &ev, &ctx, verified, &check, now);
                refused_in += c.refused;
                lazy += c.lazy;
                let a2 = refuse_after(&mut new, c.actions, c.after, &check, &ctx, now);
                assert_eq!(a1, a2, "delay {delay}, step {step}");
                assert_eq!(format!("{old:?}"), format!("{new:?}"), "step {step}");
                for a in &a1 {
                    if let SlotAction::PlaceOrder(p) = a
                        && let Some(price) = p.price
                    {
                        open.push((p.client_order_id.clone(), price, p.volume));
                    }
                }
                if matches!(ev, SlotEvent::Fill { .. } | SlotEvent::Canceled { .. }) {
                    open.remove(0);
                }
            }
            assert!(old.cycles >= 5, "{} cycles", old.cycles);
        }
        assert!(
            refused_in > 50,
            "{refused_in} entries refused in the transition"
        );
        assert!(lazy > 50, "{lazy} of them on the screen");
    }

    /// A slot walked through ticks, fills and cancels twice: once with
    /// every check, once skipping the first check whenever the state is
    /// one a transition returned not halted. Same states, actions and
    /// wakes at every step.
    #[test]
    fn a_verified_transition_and_wake_equal_the_checked_ones() {
        let params = SlotParams::default();
        let ctx = SlotCtx {
            params: &params,
            filters: doge_filters(),
            profit_pct: params.profit_pct,
            entry_budget: 2,
            entries_blocked: None,
            userref_offset: 100,
            loss_room: None,
        };
        let t0 = 1_700_000_000_000_i64;
        let mut checked = SlotState::new(0, false, SlotMode::Both, t0);
        let mut fast = checked.clone();
        let mut verified = false;
        let mut open: Vec<(String, Decimal, Decimal)> = Vec::new();
        for step in 0..400_i64 {
            let now = t0 + step * 15_000;
            let ev = walk_event(step, now, &open);
            let (next_checked, a1) = transition(checked, &ev, &ctx);
            let (next_fast, a2) = if verified {
                transition_verified(fast, &ev, &ctx)
            } else {
                transition(fast, &ev, &ctx)
            };
            assert_eq!(a1, a2, "step {step}");
            assert_eq!(
                serde_json::to_string(&next_checked).unwrap(),
                serde_json::to_string(&next_fast).unwrap(),
                "step {step}"
            );
            verified = next_fast.halted.is_none();
            let w1 = wake(&next_checked, now, &params, true);
            let w2 = if verified {
                wake_verified(&next_fast, now, &params, true)
            } else {
                wake(&next_fast, now, &params, true)
            };
            assert_eq!(w1, w2, "step {step}");
            for a in &a1 {
                if let SlotAction::PlaceOrder(p) = a
                    && let Some(price) = p.price
                {
                    open.push((p.client_order_id.clone(), price, p.volume));
                }
            }
            if matches!(ev, SlotEvent::Fill { .. } | SlotEvent::Canceled { .. }) {
                open.remove(0);
            }
            checked = next_checked;
            fast = next_fast;
        }
        // The walk went through whole cycles (entries, exits, fills).
        assert!(checked.cycles >= 10, "{} cycles", checked.cycles);
    }
    /// DOGE/USD's filters on Kraken (`Instrument::kraken_doge_usd`'s).
    fn doge_filters() -> Filters {
        Filters {
            tick_size: Decimal::new(1, 7),
            lot_decimals: 8,
            min_volume: Decimal::TEN,
            min_cost: Decimal::new(5, 1),
            maker_fee: Decimal::new(25, 4),
        }
    }

    /// The walk tests' event at `step`: on steps 1 and 3 of every five, a
    /// fill or a cancel of the first open order; else a price wandering 2 %
    /// around 0.12.
    fn walk_event(step: i64, now: i64, open: &[(String, Decimal, Decimal)]) -> SlotEvent {
        let wiggle = Decimal::new((step * 37 % 41) - 20, 4);
        let market = Decimal::new(12, 2) * (Decimal::ONE + wiggle);
        match (step % 5, open.first()) {
            (1, Some((id, price, volume))) => SlotEvent::Fill {
                client_order_id: id.clone(),
                volume: *volume,
                price: *price,
                fee: Decimal::ZERO,
                done: true,
                now_ms: now,
            },
            (3, Some((id, _, _))) => SlotEvent::Canceled {
                client_order_id: id.clone(),
                now_ms: now,
            },
            _ => SlotEvent::PriceTick {
                market,
                now_ms: now,
            },
        }
    }
}
