//! Churners (grid-engine spec section 3): small fast cycles near market that
//! earn subsidy for one aging parent position of the grid.
//!
//! An operator spawns and kills them (control RPCs); nothing spawns one
//! automatically. The gates ([`gate`]) run at spawn and on every tick:
//! fewer than `max_active` churners, a ready detector saying RANGING (fail
//! closed), open-order headroom, and a parent (an open ledger position with
//! a live exit, band at least aging, the highest `(effective_age, age, id)`).
//! A churner cycles `idle -> entry_open -> exit_open -> idle`; a failed gate
//! while orders are out cancels them and closes the churner position as
//! cancelled. Profit goes to the parent slot's subsidy while it needs it,
//! else into the churner's own compounding size.
//!
//! [`Churner`] is a pure reducer like the slots; the grid strategy hosts it
//! (it owns the ledger the parent and the subsidy live in).

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// Width of the churners' userref sub-range; also the most churners.
pub const USERREF_SPAN: i32 = 50;

/// The `[grid.churner]` config section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChurnerConfig {
    /// Whether operators may spawn churners (CHURNER_ENABLED).
    pub enabled: bool,
    /// Most churners at once (CHURNER_MAX_ACTIVE).
    pub max_active: u32,
    /// Entry distance from market, percent.
    #[serde(deserialize_with = "herd_types::decimal::deserialize")]
    pub entry_pct: Decimal,
    /// Profit over the round-trip fee, percent: churner_profit =
    /// round_trip_fee + this (must be > 0).
    #[serde(deserialize_with = "herd_types::decimal::deserialize")]
    pub profit_over_fees_pct: Decimal,
    /// Base order size, USD (the slots' size by default).
    #[serde(deserialize_with = "herd_types::decimal::deserialize")]
    pub order_size_usd: Decimal,
    /// An unfilled entry is cancelled after this long (at least 60 s).
    pub entry_timeout_sec: u64,
    /// An unfilled exit is cancelled and the churner position booked at
    /// market after max(300, this).
    pub exit_timeout_sec: u64,
    /// Open-order headroom needed (spawn and every tick).
    pub min_headroom: u32,
    /// Shared reserve pool, USD, when neither side has free funds
    /// (CHURNER_RESERVE_USD); at most one base order size per slot.
    #[serde(deserialize_with = "herd_types::decimal::deserialize")]
    pub reserve_usd: Decimal,
    /// Start of the churners' userref sub-range.
    pub userref_offset: i32,
}

impl Default for ChurnerConfig {
    fn default() -> ChurnerConfig {
        ChurnerConfig {
            enabled: true,
            max_active: 5,
            entry_pct: Decimal::new(15, 2),
            profit_over_fees_pct: Decimal::new(10, 2),
            order_size_usd: Decimal::new(200, 2),
            entry_timeout_sec: 300,
            exit_timeout_sec: 600,
            min_headroom: 10,
            reserve_usd: Decimal::from(5),
            userref_offset: 600,
        }
    }
}

impl ChurnerConfig {
    pub fn validate(&self) -> Result<(), String> {
        let span = u32::try_from(USERREF_SPAN).unwrap_or(50);
        if self.max_active > span {
            return Err(format!(
                "grid.churner.max_active: {} must be <= {span}",
                self.max_active
            ));
        }
        if self.profit_over_fees_pct <= Decimal::ZERO {
            return Err(format!(
                "grid.churner.profit_over_fees_pct: {} must be > 0 (the churner's profit must exceed the round-trip fee)",
                self.profit_over_fees_pct
            ));
        }
        if self.entry_pct <= Decimal::ZERO || self.entry_pct >= Decimal::from(10) {
            return Err(format!(
                "grid.churner.entry_pct: {} must be in (0, 10) percent",
                self.entry_pct
            ));
        }
        if self.order_size_usd <= Decimal::ZERO || self.reserve_usd < Decimal::ZERO {
            return Err("grid.churner.order_size_usd must be > 0 and reserve_usd >= 0".into());
        }
        if self.entry_timeout_sec < 60 {
            return Err(format!(
                "grid.churner.entry_timeout_sec: {} must be >= 60",
                self.entry_timeout_sec
            ));
        }
        if self.userref_offset < 1 || self.userref_offset > i32::MAX - USERREF_SPAN {
            return Err(format!(
                "grid.churner.userref_offset: {} must be >= 1",
                self.userref_offset
            ));
        }
        Ok(())
    }

    /// The exit timeout in force: max(300, exit_timeout_sec).
    pub fn effective_exit_timeout_sec(&self) -> u64 {
        self.exit_timeout_sec.max(300)
    }
}

use crate::grid::heal::Band;
use crate::grid::ledger::{Entry, ExitIntent, LedgerEvent, Outcome, Position, PositionMode};
use crate::grid::slot::Filters;
use crate::grid::{ceil_to_tick, exit_price, floor_lot, floor_to_tick, hundred, secs_ms};
use crate::strategy::{IdGen, OrderIntent, RegimeView, Side};

/// How long an unconfirmed cancel waits before it is sent again.
pub const CANCEL_RETRY_MS: i64 = 10_000;

/// A churner's stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Idle,
    EntryOpen,
    ExitOpen,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Idle => "idle",
            Stage::EntryOpen => "entry_open",
            Stage::ExitOpen => "exit_open",
        }
    }
}

/// A parent candidate: an open grid position with a live exit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParentCandidate {
    pub position_id: String,
    pub slot_id: u32,
    /// "A" (sell entry) or "B" (buy entry).
    pub trade: String,
    pub effective_age_hours: Decimal,
    pub age_hours: Decimal,
    pub band: Band,
    /// Subsidy still missing to move its exit to the fillable price.
    pub subsidy_needed: Decimal,
}

/// The best parent: band at least aging, highest (effective_age, age, id).
pub fn choose_parent(candidates: &[ParentCandidate]) -> Option<ParentCandidate> {
    candidates
        .iter()
        .filter(|c| c.band >= Band::Aging)
        .max_by(|x, y| {
            (x.effective_age_hours, x.age_hours, &x.position_id).cmp(&(
                y.effective_age_hours,
                y.age_hours,
                &y.position_id,
            ))
        })
        .cloned()
}

/// Why a churner may not run (spawn refused, or a running one winds down).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("churners are disabled (grid.churner.enabled = false)")]
    Disabled,
    #[error("{active} churners active, the most allowed is {max}")]
    MaxActive { active: u32, max: u32 },
    #[error("the regime detector is not ready (fail closed: not RANGING)")]
    RegimeNotReady,
    #[error("regime is {0}, not RANGING")]
    NotRanging(String),
    #[error("open-order headroom is unknown (no capacity reading yet)")]
    HeadroomUnknown,
    #[error("open-order headroom {headroom} < {min}")]
    Headroom { headroom: i64, min: u32 },
    #[error("no parent: no open grid position with a live exit in the aging band or older")]
    NoParent,
}

impl Refusal {
    /// A short machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::Disabled => "disabled",
            Refusal::MaxActive { .. } => "max_active",
            Refusal::RegimeNotReady => "regime_not_ready",
            Refusal::NotRanging(_) => "not_ranging",
            Refusal::HeadroomUnknown => "headroom_unknown",
            Refusal::Headroom { .. } => "headroom",
            Refusal::NoParent => "no_parent",
        }
    }
}

/// What the gates read.
#[derive(Debug, Clone)]
pub struct GateInput<'a> {
    pub cfg: &'a ChurnerConfig,
    /// Churners counted against `max_active` (at spawn: all of them; on a
    /// tick: the others).
    pub active: u32,
    pub regime: &'a RegimeView,
    pub headroom: Option<i64>,
    pub candidates: &'a [ParentCandidate],
}

/// The gates, in order: enabled, max active, regime (ready and RANGING),
/// headroom, parent. `Ok` carries the parent.
pub fn gate(g: &GateInput<'_>) -> Result<ParentCandidate, Refusal> {
    if !g.cfg.enabled {
        return Err(Refusal::Disabled);
    }
    if g.active >= g.cfg.max_active {
        return Err(Refusal::MaxActive {
            active: g.active,
            max: g.cfg.max_active,
        });
    }
    if !g.regime.ready {
        return Err(Refusal::RegimeNotReady);
    }
    if !g.regime.is_ranging() {
        return Err(Refusal::NotRanging(g.regime.regime.clone()));
    }
    let headroom = g.headroom.ok_or(Refusal::HeadroomUnknown)?;
    if headroom < i64::from(g.cfg.min_headroom) {
        return Err(Refusal::Headroom {
            headroom,
            min: g.cfg.min_headroom,
        });
    }
    choose_parent(g.candidates).ok_or(Refusal::NoParent)
}

/// One order of a churner.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChurnOrder {
    pub client_order_id: String,
    pub side: Side,
    pub price: Decimal,
    pub volume: Decimal,
    pub placed_at_ms: i64,
    pub executed: Decimal,
    pub avg_price: Decimal,
    pub fee: Decimal,
    pub acked: bool,
    /// A cancel was asked for at this time.
    pub cancel_sent_ms: Option<i64>,
}

impl ChurnOrder {
    fn new(id: String, side: Side, price: Decimal, volume: Decimal, now: i64) -> ChurnOrder {
        ChurnOrder {
            client_order_id: id,
            side,
            price,
            volume,
            placed_at_ms: now,
            executed: Decimal::ZERO,
            avg_price: Decimal::ZERO,
            fee: Decimal::ZERO,
            acked: false,
            cancel_sent_ms: None,
        }
    }

    fn fold(&mut self, v: Decimal, p: Decimal, fee: Decimal) {
        self.acked = true;
        if v <= Decimal::ZERO {
            return;
        }
        let ex = self.executed + v;
        self.avg_price = (self.avg_price * self.executed + p * v) / ex;
        self.executed = ex;
        self.fee += fee;
    }
}

/// What a churner reads besides its own state.
#[derive(Debug, Clone)]
pub struct ChurnEnv<'a> {
    pub cfg: &'a ChurnerConfig,
    pub filters: Filters,
    pub market: Decimal,
    /// The gates' verdict this tick (the parent, or why not).
    pub gate: Result<ParentCandidate, Refusal>,
    /// Whether this churner's current parent is still an open position
    /// with a live exit.
    pub parent_alive: bool,
    /// Whether the parent's slot still needs subsidy (profit routing).
    pub parent_needs_subsidy: bool,
    /// Free funds now (after other reservations).
    pub free_quote: Option<Decimal>,
    pub free_base: Option<Decimal>,
    /// What the shared reserve pool can still lend this churner's slot.
    pub reserve_available: Decimal,
    pub regime: String,
    pub userref_offset: i32,
    pub symbol: String,
    pub entries_blocked: Option<String>,
}

/// What a churner asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum ChurnAction {
    Place(OrderIntent),
    Cancel(String),
    Ledger(LedgerEvent),
}

/// A completed churner cycle's result, for counters.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChurnCycle {
    pub net: Decimal,
    /// "subsidy" (to the parent's slot), "compound" or "none" (a loss).
    pub routed: String,
}

/// One churner.
#[derive(Debug, Clone, Serialize)]
pub struct Churner {
    pub id: u32,
    pub stage: Stage,
    pub since_ms: i64,
    pub parent_position_id: Option<String>,
    pub parent_slot: Option<u32>,
    pub entry: Option<ChurnOrder>,
    pub exit: Option<ChurnOrder>,
    /// Profit kept for a bigger size (when the parent needs no subsidy).
    pub compound_usd: Decimal,
    /// Reserve pool money this churner's current cycle uses.
    pub reserve_used_usd: Decimal,
    /// Why it is winding down (a failed gate), while orders are out.
    pub winding_down: Option<String>,
    pub last_error: String,
    pub cycles: u64,
    pub profit: Decimal,
    pub routed_to_subsidy: Decimal,
    pub spawned_at_ms: i64,
    /// Killed by an operator: places nothing more and leaves once idle.
    pub killed: bool,
    /// Cycles completed since the last call to [`Churner::take_cycles`].
    #[serde(skip)]
    done: Vec<ChurnCycle>,
    #[serde(skip)]
    ids: IdGen,
}

/// Is `client_order_id` a churner's ("c<n><e|x>-...")?
pub fn is_churner_client_id(client_order_id: &str) -> bool {
    let Some(rest) = client_order_id.strip_prefix('c') else {
        return false;
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    digits > 0 && matches!(rest.as_bytes().get(digits..), Some([b'e' | b'x', b'-', ..]))
}

impl Churner {
    pub fn new(id: u32, parent: &ParentCandidate, now_ms: i64, run_start_ms: i64) -> Churner {
        Churner {
            id,
            stage: Stage::Idle,
            since_ms: now_ms,
            parent_position_id: Some(parent.position_id.clone()),
            parent_slot: Some(parent.slot_id),
            entry: None,
            exit: None,
            compound_usd: Decimal::ZERO,
            reserve_used_usd: Decimal::ZERO,
            winding_down: None,
            last_error: String::new(),
            cycles: 0,
            profit: Decimal::ZERO,
            routed_to_subsidy: Decimal::ZERO,
            spawned_at_ms: now_ms,
            killed: false,
            done: Vec::new(),
            ids: IdGen::new(run_start_ms),
        }
    }

    /// Does this churner own `client_order_id` (live entry or exit)?
    pub fn tracks(&self, id: &str) -> bool {
        self.entry.as_ref().is_some_and(|o| o.client_order_id == id)
            || self.exit.as_ref().is_some_and(|o| o.client_order_id == id)
    }

    pub fn open_orders(&self) -> u32 {
        match self.stage {
            Stage::Idle => 0,
            Stage::EntryOpen => u32::from(self.entry.is_some()),
            Stage::ExitOpen => u32::from(self.exit.is_some()),
        }
    }

    /// Cycles completed since the last call.
    pub fn take_cycles(&mut self) -> Vec<ChurnCycle> {
        std::mem::take(&mut self.done)
    }

    fn go(&mut self, stage: Stage, now: i64) {
        self.stage = stage;
        self.since_ms = now;
    }

    fn cancel(&mut self, is_exit: bool, now: i64) -> Vec<ChurnAction> {
        let o = if is_exit {
            self.exit.as_mut()
        } else {
            self.entry.as_mut()
        };
        let Some(o) = o else {
            return Vec::new();
        };
        match o.cancel_sent_ms {
            Some(t) if now - t < CANCEL_RETRY_MS => Vec::new(),
            _ => {
                o.cancel_sent_ms = Some(now);
                vec![ChurnAction::Cancel(o.client_order_id.clone())]
            }
        }
    }

    /// Timers, gates and the next entry.
    pub fn tick(&mut self, env: &ChurnEnv<'_>, now: i64) -> Vec<ChurnAction> {
        if self.killed && self.stage != Stage::Idle {
            self.winding_down = Some("killed by operator".into());
        }
        match &env.gate {
            Ok(p) => {
                if self.stage == Stage::Idle && !env.parent_alive {
                    self.parent_position_id = Some(p.position_id.clone());
                    self.parent_slot = Some(p.slot_id);
                }
            }
            Err(why) => {
                if self.stage == Stage::Idle {
                    self.last_error = format!("waiting: {why}");
                    if matches!(why, Refusal::NoParent) {
                        self.parent_position_id = None;
                    }
                    return Vec::new();
                }
                self.winding_down = Some(why.to_string());
            }
        }
        if self.stage != Stage::Idle && !env.parent_alive {
            self.winding_down = Some("the parent position is gone".into());
        }
        match self.stage {
            Stage::Idle => self.try_entry(env, now),
            Stage::EntryOpen => {
                let timed_out = now - self.since_ms >= secs_ms(env.cfg.entry_timeout_sec);
                if self.winding_down.is_some() || timed_out {
                    self.cancel(false, now)
                } else {
                    Vec::new()
                }
            }
            Stage::ExitOpen => {
                if self.exit.is_none() {
                    return self.place_exit(env, now);
                }
                let timed_out =
                    now - self.since_ms >= secs_ms(env.cfg.effective_exit_timeout_sec());
                if self.winding_down.is_some() || timed_out {
                    self.cancel(true, now)
                } else {
                    Vec::new()
                }
            }
        }
    }

    fn try_entry(&mut self, env: &ChurnEnv<'_>, now: i64) -> Vec<ChurnAction> {
        if self.killed {
            return Vec::new();
        }
        self.winding_down = None;
        if let Some(why) = &env.entries_blocked {
            self.last_error = format!("entries blocked: {why}");
            return Vec::new();
        }
        let Ok(parent) = &env.gate else {
            return Vec::new();
        };
        if env.market <= Decimal::ZERO {
            return Vec::new();
        }
        let size = env.cfg.order_size_usd + self.compound_usd;
        let e = env.cfg.entry_pct / hundred();
        let tick = env.filters.tick_size;
        let preferred = if parent.trade == "A" {
            Side::Sell
        } else {
            Side::Buy
        };
        let priced = |side: Side| -> (Decimal, Decimal) {
            let price = match side {
                Side::Buy => floor_to_tick(env.market * (Decimal::ONE - e), tick),
                Side::Sell => ceil_to_tick(env.market * (Decimal::ONE + e), tick),
            };
            let volume = if price > Decimal::ZERO {
                floor_lot(size / price, env.filters.lot_decimals)
            } else {
                Decimal::ZERO
            };
            (price, volume)
        };
        let funded = |side: Side, price: Decimal, volume: Decimal| -> bool {
            match side {
                Side::Buy => env
                    .free_quote
                    .is_some_and(|q| q >= volume * price * (Decimal::ONE + env.filters.maker_fee)),
                Side::Sell => env.free_base.is_some_and(|b| b >= volume),
            }
        };
        let other = match preferred {
            Side::Buy => Side::Sell,
            Side::Sell => Side::Buy,
        };
        let mut choice = None;
        for side in [preferred, other] {
            let (p, v) = priced(side);
            if funded(side, p, v) {
                choice = Some((side, p, v, Decimal::ZERO));
                break;
            }
        }
        if choice.is_none() {
            // The shared reserve pool lends one base order size (buys).
            let (p, v) = priced(Side::Buy);
            let cost = env.cfg.order_size_usd.min(size);
            if env.reserve_available >= cost {
                choice = Some((
                    Side::Buy,
                    p,
                    floor_lot(cost / p, env.filters.lot_decimals),
                    cost,
                ));
            } else {
                self.last_error = format!(
                    "no funds for either side and the reserve pool has {} of {} (size {v} @ {p})",
                    env.reserve_available, cost
                );
                return Vec::new();
            }
        }
        let Some((side, price, volume, reserve)) = choice else {
            return Vec::new();
        };
        if volume < env.filters.min_volume
            || volume <= Decimal::ZERO
            || volume * price < env.filters.min_cost
        {
            self.last_error = format!(
                "churner entry {volume} @ {price} is below the venue minimums ({} volume, {} cost)",
                env.filters.min_volume, env.filters.min_cost
            );
            return Vec::new();
        }
        let id = self.ids.next(&format!("c{}e", self.id));
        self.reserve_used_usd = reserve;
        self.entry = Some(ChurnOrder::new(id.clone(), side, price, volume, now));
        self.exit = None;
        self.last_error.clear();
        self.go(Stage::EntryOpen, now);
        vec![ChurnAction::Place(OrderIntent {
            client_order_id: id,
            symbol: env.symbol.clone(),
            side,
            volume,
            price: Some(price),
            post_only: true,
            userref_offset: env.userref_offset,
        })]
    }

    /// churner_profit = round-trip fee + profit_over_fees_pct.
    pub fn profit_fraction(env: &ChurnEnv<'_>) -> Decimal {
        env.filters.maker_fee * Decimal::TWO + env.cfg.profit_over_fees_pct / hundred()
    }

    fn place_exit(&mut self, env: &ChurnEnv<'_>, now: i64) -> Vec<ChurnAction> {
        let Some(entry) = &self.entry else {
            self.go(Stage::Idle, now);
            return Vec::new();
        };
        let cp = Self::profit_fraction(env);
        let e = env.cfg.entry_pct / hundred();
        let tick = env.filters.tick_size;
        let market = if env.market > Decimal::ZERO {
            env.market
        } else {
            entry.avg_price
        };
        let side = entry.side.opposite();
        let price = exit_price(side, entry.avg_price, cp, market, e, tick);
        let volume = floor_lot(entry.executed, env.filters.lot_decimals);
        let id = self.ids.next(&format!("c{}x", self.id));
        self.exit = Some(ChurnOrder::new(id.clone(), side, price, volume, now));
        vec![
            ChurnAction::Ledger(LedgerEvent::ExitMoved {
                position_id: entry.client_order_id.clone(),
                price,
                order_id: id.clone(),
                reason: "retry".into(),
                cost: Decimal::ZERO,
                time_ms: now,
            }),
            ChurnAction::Place(OrderIntent {
                client_order_id: id,
                symbol: env.symbol.clone(),
                side,
                volume,
                price: Some(price),
                post_only: true,
                userref_offset: env.userref_offset,
            }),
        ]
    }

    /// An update of one of this churner's orders: `fill` is (volume, price,
    /// fee) of this event; `done` when the order is complete (filled,
    /// cancelled, expired); `refused` for a placement the venue refused;
    /// `cancel_failed` with the message when a cancel failed.
    #[allow(clippy::too_many_arguments)]
    pub fn on_order(
        &mut self,
        id: &str,
        fill: (Decimal, Decimal, Decimal),
        filled: bool,
        gone: bool,
        refused: Option<&str>,
        cancel_failed: Option<&str>,
        env: &ChurnEnv<'_>,
        now: i64,
    ) -> Vec<ChurnAction> {
        let is_entry = self.entry.as_ref().is_some_and(|o| o.client_order_id == id)
            && self.stage == Stage::EntryOpen;
        let is_exit = self.exit.as_ref().is_some_and(|o| o.client_order_id == id)
            && self.stage == Stage::ExitOpen;
        if !is_entry && !is_exit {
            return Vec::new();
        }
        if let Some(msg) = cancel_failed {
            // Keep the state; the next tick asks again.
            self.last_error = format!("cancel of {id} failed: {msg}");
            return Vec::new();
        }
        let o = if is_entry {
            self.entry.as_mut()
        } else {
            self.exit.as_mut()
        };
        let Some(o) = o else {
            return Vec::new();
        };
        o.fold(fill.0, fill.1, fill.2);
        if let Some(msg) = refused {
            self.last_error = format!("order {id} refused: {msg}");
            if is_entry {
                self.entry = None;
                self.reserve_used_usd = Decimal::ZERO;
                self.go(Stage::Idle, now);
                return Vec::new();
            }
            // The exit could not be placed: try again on a later tick.
            self.exit = None;
            return Vec::new();
        }
        if !(filled || gone) {
            return Vec::new();
        }
        if is_entry {
            let executed = o.executed;
            if executed <= Decimal::ZERO {
                self.entry = None;
                self.reserve_used_usd = Decimal::ZERO;
                self.winding_down = None;
                self.go(Stage::Idle, now);
                return Vec::new();
            }
            let entry = o.clone();
            let mut out = vec![ChurnAction::Ledger(LedgerEvent::Open {
                position: Box::new(Position {
                    id: entry.client_order_id.clone(),
                    slot_id: self.parent_slot.unwrap_or(0),
                    trade: if entry.side == Side::Buy { "B" } else { "A" }.into(),
                    mode: PositionMode::Churner,
                    entry: Entry {
                        side: entry.side.as_str().into(),
                        price: entry.avg_price.normalize(),
                        cost: (entry.avg_price * entry.executed).normalize(),
                        fee: entry.fee,
                        volume: entry.executed,
                        time_ms: now,
                        regime: env.regime.clone(),
                    },
                    exit: ExitIntent {
                        price: Decimal::ZERO,
                        original_price: Decimal::ZERO,
                        target_profit: Decimal::ZERO,
                        order_id: String::new(),
                        reprices: 0,
                        last_reprice_ms: None,
                        tightened: false,
                        hold_until_ms: None,
                        orphaned: false,
                    },
                    outcome: None,
                }),
            })];
            self.go(Stage::ExitOpen, now);
            if let Some(why) = self.winding_down.clone() {
                // Wound down with a filled entry: closed as cancelled at market.
                out.extend(self.close_at_market(env, "cancelled", &why, now));
                return out;
            }
            out.extend(self.place_exit(env, now));
            return out;
        }
        // The exit.
        if filled {
            return self.book_exit(env, now);
        }
        let why = self
            .winding_down
            .clone()
            .unwrap_or_else(|| "exit timeout".to_string());
        let kind = if self.winding_down.is_some() {
            "cancelled"
        } else {
            "exit_timeout"
        };
        self.close_at_market(env, kind, &why, now)
    }

    fn book_exit(&mut self, env: &ChurnEnv<'_>, now: i64) -> Vec<ChurnAction> {
        let (Some(entry), Some(exit)) = (self.entry.clone(), self.exit.clone()) else {
            return Vec::new();
        };
        let gross = match entry.side {
            Side::Buy => (exit.avg_price - entry.avg_price) * exit.executed,
            Side::Sell => (entry.avg_price - exit.avg_price) * exit.executed,
        };
        let entry_fee = if entry.executed > Decimal::ZERO {
            entry.fee * exit.executed / entry.executed
        } else {
            entry.fee
        };
        let net = (gross - entry_fee - exit.fee).normalize();
        let mut out = vec![ChurnAction::Ledger(LedgerEvent::Close {
            position_id: entry.client_order_id.clone(),
            outcome: Outcome {
                kind: "exit".into(),
                exit_price: exit.avg_price.normalize(),
                exit_fee: exit.fee,
                gross: gross.normalize(),
                net,
                time_ms: now,
            },
        })];
        let routed = if net <= Decimal::ZERO {
            "none"
        } else if env.parent_needs_subsidy && self.parent_slot.is_some() {
            self.routed_to_subsidy += net;
            out.push(ChurnAction::Ledger(LedgerEvent::Earned {
                slot_id: self.parent_slot.unwrap_or(0),
                amount: net,
                source: format!("churner {}", self.id),
                position_id: self.parent_position_id.clone().unwrap_or_default(),
                time_ms: now,
            }));
            "subsidy"
        } else {
            self.compound_usd += net;
            "compound"
        };
        self.cycles += 1;
        self.profit += net;
        self.done.push(ChurnCycle {
            net,
            routed: routed.into(),
        });
        self.finish(now);
        out
    }

    fn close_at_market(
        &mut self,
        env: &ChurnEnv<'_>,
        kind: &str,
        why: &str,
        now: i64,
    ) -> Vec<ChurnAction> {
        let Some(entry) = self.entry.clone() else {
            self.finish(now);
            return Vec::new();
        };
        let market = if env.market > Decimal::ZERO {
            env.market
        } else {
            entry.avg_price
        };
        let sold_back = self.exit.as_ref().map_or(Decimal::ZERO, |x| x.executed);
        let rest = entry.executed - sold_back;
        let (xv, xp, xf) = self
            .exit
            .as_ref()
            .map_or((Decimal::ZERO, Decimal::ZERO, Decimal::ZERO), |x| {
                (x.executed, x.avg_price, x.fee)
            });
        let value = xp * xv + market * rest;
        let exit_fee = xf + market * rest * env.filters.maker_fee;
        let exit_price = if entry.executed > Decimal::ZERO {
            value / entry.executed
        } else {
            market
        };
        let gross = match entry.side {
            Side::Buy => (exit_price - entry.avg_price) * entry.executed,
            Side::Sell => (entry.avg_price - exit_price) * entry.executed,
        };
        let net = (gross - entry.fee - exit_fee).normalize();
        self.profit += net;
        self.last_error = format!("{kind}: {why}");
        self.done.push(ChurnCycle {
            net,
            routed: "none".into(),
        });
        self.finish(now);
        vec![ChurnAction::Ledger(LedgerEvent::Close {
            position_id: entry.client_order_id,
            outcome: Outcome {
                kind: kind.into(),
                exit_price: exit_price.normalize(),
                exit_fee: exit_fee.normalize(),
                gross: gross.normalize(),
                net,
                time_ms: now,
            },
        })]
    }

    fn finish(&mut self, now: i64) {
        self.entry = None;
        self.exit = None;
        self.reserve_used_usd = Decimal::ZERO;
        self.winding_down = None;
        self.go(Stage::Idle, now);
    }

    /// Kill: cancel what is out (the orders' final events book them).
    pub fn kill(&mut self, now: i64) -> Vec<ChurnAction> {
        self.killed = true;
        self.winding_down = Some("killed by operator".into());
        match self.stage {
            Stage::Idle => Vec::new(),
            Stage::EntryOpen => self.cancel(false, now),
            Stage::ExitOpen => self.cancel(true, now),
        }
    }
}
