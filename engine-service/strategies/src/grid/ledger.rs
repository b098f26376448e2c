//! The position ledger (grid-engine spec section 2): one record per entry
//! fill with an immutable entry, a mutable exit intent and a write-once
//! outcome, plus each slot's subsidy account.
//!
//! The ledger is only ever changed by applying a [`LedgerEvent`]; the grid
//! journals every event (append-only, stream [`super::JOURNAL_STREAM`]) before
//! or as it applies it, so [`Ledger::replay`] over the journal rebuilds the
//! same positions and subsidy after a restart. Applying is idempotent where
//! a replay could repeat itself: a second `open` of a position or a second
//! outcome is ignored (and counted in `conflicts`).

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// How a position came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PositionMode {
    Grid,
    Sticky,
    Churner,
}

/// The immutable entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// "buy" or "sell".
    pub side: String,
    pub price: Decimal,
    pub cost: Decimal,
    pub fee: Decimal,
    pub volume: Decimal,
    pub time_ms: i64,
    pub regime: String,
}

/// The mutable exit intent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExitIntent {
    pub price: Decimal,
    pub original_price: Decimal,
    /// Net profit at `original_price`.
    pub target_profit: Decimal,
    pub order_id: String,
    /// Reprices so far and when the last one was.
    pub reprices: u32,
    pub last_reprice_ms: Option<i64>,
    /// The free stale-band tighten was used.
    pub tightened: bool,
    /// Operator: keep holding (no self-healing) until then.
    pub hold_until_ms: Option<i64>,
    /// Orphaned into the slot's recovery list.
    pub orphaned: bool,
}

/// The write-once outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// "exit", "recovery", "eviction", "market_close", "cancelled", ...
    pub kind: String,
    pub exit_price: Decimal,
    pub exit_fee: Decimal,
    pub gross: Decimal,
    pub net: Decimal,
    pub time_ms: i64,
}

/// One position.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Position {
    pub id: String,
    pub slot_id: u32,
    /// "A" or "B" (churners: the side they follow).
    pub trade: String,
    pub mode: PositionMode,
    pub entry: Entry,
    pub exit: ExitIntent,
    pub outcome: Option<Outcome>,
}

impl Position {
    pub fn is_open(&self) -> bool {
        self.outcome.is_none()
    }

    /// Does the exit sell (a long position)?
    pub fn exit_sells(&self) -> bool {
        self.entry.side == "buy"
    }
}

/// A subsidy account.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Subsidy {
    pub earned: Decimal,
    pub consumed: Decimal,
}

impl Subsidy {
    pub fn balance(&self) -> Decimal {
        self.earned - self.consumed
    }
}

/// Everything that changes the ledger; the journal's payloads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum LedgerEvent {
    Open {
        position: Box<Position>,
    },
    /// The exit intent moved (reprice, tighten, restore, retry); `cost` is
    /// the subsidy it consumed.
    ExitMoved {
        position_id: String,
        price: Decimal,
        order_id: String,
        reason: String,
        cost: Decimal,
        time_ms: i64,
    },
    Orphaned {
        position_id: String,
        reason: String,
        time_ms: i64,
    },
    Hold {
        position_id: String,
        until_ms: i64,
    },
    Close {
        position_id: String,
        outcome: Outcome,
    },
    /// Subsidy earned by a slot: churner profit or an exit's over-performance.
    Earned {
        slot_id: u32,
        amount: Decimal,
        source: String,
        position_id: String,
        time_ms: i64,
    },
}

impl LedgerEvent {
    /// The journal's `kind` column.
    pub fn kind(&self) -> &'static str {
        match self {
            LedgerEvent::Open { .. } => "position_open",
            LedgerEvent::ExitMoved { .. } => "position_exit",
            LedgerEvent::Orphaned { .. } => "position_orphaned",
            LedgerEvent::Hold { .. } => "position_hold",
            LedgerEvent::Close { .. } => "position_close",
            LedgerEvent::Earned { .. } => "subsidy_earned",
        }
    }

    /// Is `kind` one of the ledger's journal kinds?
    pub fn is_ledger_kind(kind: &str) -> bool {
        kind.starts_with("position_") || kind == "subsidy_earned"
    }
}

/// The ledger. Built only by [`Ledger::apply`] (and [`Ledger::replay`]);
/// readers see the positions but cannot change them.
///
/// Every position is in exactly one of two maps by id: the open ones
/// (the strategy walks them at every tick) and the closed ones (a long run
/// closes hundreds of thousands). A position moves from one to the other,
/// its id key with it, when it closes: opening one inserts into the small
/// map only, and no position is ever copied (both a copy of every open
/// position and one map of all were kept before).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ledger {
    /// Boxed: a long run's closed map is deep, and a node's insert and
    /// split move its values (a position is about 300 bytes; a box, 8).
    closed: BTreeMap<String, Box<Position>>,
    pub subsidy: BTreeMap<u32, Subsidy>,
    /// Events ignored because they would rewrite history (a second open,
    /// a second outcome) or name an unknown position.
    pub conflicts: u64,
    open: BTreeMap<String, Position>,
}

/// Serialized as it always was: every position (open and closed) in one
/// map by id, the subsidy accounts and the conflicts.
impl Serialize for Ledger {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeStruct};
        struct All<'a>(&'a Ledger);
        impl Serialize for All<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut m = s.serialize_map(Some(self.0.position_count()))?;
                for p in self.0.positions() {
                    m.serialize_entry(&p.id, p)?;
                }
                m.end()
            }
        }
        let mut st = s.serialize_struct("Ledger", 3)?;
        st.serialize_field("positions", &All(self))?;
        st.serialize_field("subsidy", &self.subsidy)?;
        st.serialize_field("conflicts", &self.conflicts)?;
        st.end()
    }
}

impl Ledger {
    pub fn new() -> Ledger {
        Ledger::default()
    }

    /// Rebuilds a ledger from journal rows `(kind, payload)`, oldest first;
    /// rows of other kinds are skipped. Fails on a ledger row that does not
    /// parse (the journal is the data that must never be lost: a bad row is
    /// an error to look at, not something to skip silently).
    pub fn replay<'a>(
        rows: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Ledger, String> {
        let mut l = Ledger::new();
        for (n, (kind, payload)) in rows.into_iter().enumerate() {
            if !LedgerEvent::is_ledger_kind(kind) {
                continue;
            }
            let ev: LedgerEvent = serde_json::from_str(payload)
                .map_err(|e| format!("journal row {n} ({kind}): {e}"))?;
            l.apply(&ev);
        }
        Ok(l)
    }

    /// Applies one event.
    pub fn apply(&mut self, ev: &LedgerEvent) {
        match ev {
            LedgerEvent::Open { position } => {
                if self.contains(&position.id) {
                    self.conflicts += 1;
                } else {
                    self.insert_position(position.as_ref().clone());
                }
            }
            LedgerEvent::ExitMoved {
                position_id,
                price,
                order_id,
                reason,
                cost,
                time_ms,
            } => {
                let Some(slot) = self.update_open(position_id, |p| {
                    p.exit.price = *price;
                    p.exit.order_id.clone_from(order_id);
                    if reason == "tighten" {
                        p.exit.tightened = true;
                    }
                    if !matches!(reason.as_str(), "retry" | "restore" | "close") {
                        p.exit.reprices += 1;
                        p.exit.last_reprice_ms = Some(*time_ms);
                    }
                }) else {
                    return;
                };
                if !cost.is_zero() {
                    self.subsidy.entry(slot).or_default().consumed += *cost;
                }
            }
            LedgerEvent::Orphaned { position_id, .. } => {
                self.update_open(position_id, |p| p.exit.orphaned = true);
            }
            LedgerEvent::Hold {
                position_id,
                until_ms,
            } => {
                self.update_open(position_id, |p| {
                    p.exit.hold_until_ms = Some(*until_ms);
                });
            }
            LedgerEvent::Close {
                position_id,
                outcome,
            } => self.close(position_id, || outcome.clone()),
            LedgerEvent::Earned {
                slot_id, amount, ..
            } => {
                self.subsidy.entry(*slot_id).or_default().earned += *amount;
            }
        }
    }

    /// [`Ledger::apply`] of an event the caller no longer needs: an opened
    /// position moves in (one copy fewer) and a close's outcome moves into
    /// its position; the same ledger as `apply(&ev)`.
    pub fn apply_owned(&mut self, ev: LedgerEvent) {
        match ev {
            LedgerEvent::Open { position } => {
                if self.contains(&position.id) {
                    self.conflicts += 1;
                } else {
                    self.insert_position(*position);
                }
            }
            LedgerEvent::Close {
                position_id,
                outcome,
            } => self.close(&position_id, || outcome),
            ev => self.apply(&ev),
        }
    }

    /// A new position (its id not in the ledger): among the open ones
    /// while it is open.
    fn insert_position(&mut self, position: Position) {
        if position.is_open() {
            self.open.insert(position.id.clone(), position);
        } else {
            self.closed.insert(position.id.clone(), Box::new(position));
        }
    }

    /// Closes position `id` with the outcome `outcome` gives (called only
    /// when it closes); a conflict when it is unknown or already closed.
    fn close(&mut self, id: &str, outcome: impl FnOnce() -> Outcome) {
        match self.open.remove_entry(id) {
            Some((id, mut p)) => {
                p.outcome = Some(outcome());
                self.closed.insert(id, Box::new(p));
            }
            None => self.conflicts += 1,
        }
    }

    /// Changes open position `id` with `f` and gives its slot; counts a
    /// conflict when there is no such open position.
    fn update_open(&mut self, id: &str, f: impl Fn(&mut Position)) -> Option<u32> {
        match self.open.get_mut(id) {
            Some(p) => {
                f(p);
                Some(p.slot_id)
            }
            None => {
                self.conflicts += 1;
                None
            }
        }
    }

    /// The slot's subsidy account (zero when it never earned).
    pub fn subsidy_of(&self, slot_id: u32) -> Subsidy {
        self.subsidy.get(&slot_id).cloned().unwrap_or_default()
    }

    /// Every position, open and closed, in the order of their ids.
    pub fn positions(&self) -> impl Iterator<Item = &Position> {
        let (mut open, mut closed) = (
            self.open.values().peekable(),
            self.closed.values().map(|p| &**p).peekable(),
        );
        std::iter::from_fn(move || match (open.peek(), closed.peek()) {
            (Some(o), Some(c)) if o.id < c.id => open.next(),
            (Some(_), Some(_)) | (None, _) => closed.next(),
            (Some(_), None) => open.next(),
        })
    }

    /// How many positions there are, open and closed.
    pub fn position_count(&self) -> usize {
        self.open.len() + self.closed.len()
    }

    /// Whether a position with this id exists, open or closed.
    pub fn contains(&self, id: &str) -> bool {
        self.open.contains_key(id) || self.closed.contains_key(id)
    }

    /// One position, open or closed.
    pub fn position(&self, id: &str) -> Option<&Position> {
        self.open
            .get(id)
            .or_else(|| self.closed.get(id).map(|p| &**p))
    }

    /// Open positions, oldest first (by id).
    pub fn open_positions(&self) -> impl Iterator<Item = &Position> {
        self.open.values()
    }

    /// Closed positions, by id.
    pub fn closed_positions(&self) -> impl Iterator<Item = &Position> {
        self.closed.values().map(|p| &**p)
    }

    /// The position whose exit is order `order_id`.
    pub fn by_exit_order(&self, order_id: &str) -> Option<&Position> {
        self.open_positions().find(|p| p.exit.order_id == order_id)
    }

    /// Sum of the realized outcomes' net, optionally of one mode.
    pub fn realized(&self, mode: Option<PositionMode>) -> Decimal {
        self.closed
            .values()
            .filter(|p| mode.is_none_or(|m| p.mode == m))
            .filter_map(|p| p.outcome.as_ref().map(|o| o.net))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn position(id: &str, slot_id: u32, closed: bool) -> Position {
        Position {
            id: id.to_string(),
            slot_id,
            trade: "B".to_string(),
            mode: PositionMode::Grid,
            entry: Entry {
                side: "buy".to_string(),
                price: Decimal::new(1234, 4),
                cost: Decimal::new(5, 0),
                fee: Decimal::new(2, 3),
                volume: Decimal::new(40, 0),
                time_ms: 7,
                regime: "RANGING".to_string(),
            },
            exit: ExitIntent {
                price: Decimal::new(1260, 4),
                original_price: Decimal::new(1260, 4),
                target_profit: Decimal::new(1, 2),
                order_id: format!("x-{id}"),
                reprices: 0,
                last_reprice_ms: None,
                tightened: false,
                hold_until_ms: None,
                orphaned: false,
            },
            outcome: closed.then(|| outcome("dust", -1)),
        }
    }

    fn outcome(kind: &str, net: i64) -> Outcome {
        Outcome {
            kind: kind.to_string(),
            exit_price: Decimal::new(1250, 4),
            exit_fee: Decimal::new(1, 3),
            gross: Decimal::new(net * 3, 2),
            net: Decimal::new(net, 2),
            time_ms: 99,
        }
    }

    fn open(p: Position) -> LedgerEvent {
        LedgerEvent::Open {
            position: Box::new(p),
        }
    }

    fn close(id: &str, kind: &str, net: i64) -> LedgerEvent {
        LedgerEvent::Close {
            position_id: id.to_string(),
            outcome: outcome(kind, net),
        }
    }

    /// Every kind of event, with the conflicts apply counts (a second open,
    /// a second close, an unknown id): the ledger after each step is the
    /// same applied by reference or by value.
    #[test]
    fn apply_owned_equals_apply() {
        let events = vec![
            open(position("p1", 0, false)),
            open(position("p2", 1, false)),
            open(position("p3", 1, true)),
            open(position("p1", 5, false)),
            LedgerEvent::ExitMoved {
                position_id: "p2".to_string(),
                price: Decimal::new(1270, 4),
                order_id: "x-p2-b".to_string(),
                reason: "tighten".to_string(),
                cost: Decimal::new(3, 3),
                time_ms: 20,
            },
            LedgerEvent::Hold {
                position_id: "p1".to_string(),
                until_ms: 50,
            },
            LedgerEvent::Orphaned {
                position_id: "p2".to_string(),
                reason: "timeout".to_string(),
                time_ms: 30,
            },
            close("p1", "exit", 4),
            close("p1", "exit", 9),
            close("p3", "recovery", 2),
            close("nope", "exit", 1),
            LedgerEvent::Earned {
                slot_id: 1,
                amount: Decimal::new(7, 3),
                source: "exit".to_string(),
                position_id: "p2".to_string(),
                time_ms: 40,
            },
            close("p2", "eviction", -3),
            open(position("p4", 2, false)),
            open(position("p4", 2, true)),
        ];
        let (mut by_ref, mut by_value) = (Ledger::new(), Ledger::new());
        for ev in events {
            by_ref.apply(&ev);
            by_value.apply_owned(ev);
            assert_eq!(by_ref, by_value);
        }
        assert_eq!(by_value.conflicts, 5);
        assert_eq!(by_value.open_positions().count(), 1);
        assert_eq!(by_value.position_count(), 4);
        assert_eq!(by_value.positions().count(), 4);
    }

    /// Open and closed positions interleaved by id: `positions` walks all
    /// of them in id order, each found by `position` and `contains`, and
    /// the ledger serializes as one map of every position by id (as when
    /// it kept one), with the same realized sum as a walk of all.
    #[test]
    fn positions_merge_the_open_and_the_closed_in_id_order() {
        let mut l = Ledger::new();
        let ids = [
            "p05", "p01", "p09", "p03", "p07", "p02", "p08", "p04", "p06",
        ];
        for (k, id) in ids.iter().enumerate() {
            l.apply_owned(open(position(id, k as u32 % 3, k == 4)));
        }
        for (k, id) in ["p01", "p09", "p04", "p02"].iter().enumerate() {
            l.apply_owned(close(id, "exit", k as i64 + 1));
        }
        let walked: Vec<&str> = l.positions().map(|p| p.id.as_str()).collect();
        let mut sorted = ids.to_vec();
        sorted.sort_unstable();
        assert_eq!(walked, sorted);
        assert_eq!(l.position_count(), 9);
        assert_eq!(l.open_positions().count(), 4);
        assert_eq!(l.closed_positions().count(), 5);
        assert!(l.open_positions().all(Position::is_open));
        assert!(l.closed_positions().all(|p| !p.is_open()));
        for id in ids {
            assert!(l.contains(id));
            assert_eq!(l.position(id).map(|p| p.id.as_str()), Some(id));
        }
        assert!(!l.contains("p10") && l.position("p10").is_none());
        let json = serde_json::to_value(&l).unwrap_or_default();
        let keys: Vec<&str> = json["positions"]
            .as_object()
            .map(|m| m.keys().map(String::as_str).collect())
            .unwrap_or_default();
        assert_eq!(keys, sorted);
        assert_eq!(json["positions"]["p07"]["outcome"]["kind"], "dust");
        assert!(json["positions"]["p08"]["outcome"].is_null());
        assert_eq!(json["conflicts"], 0);
        let all: Decimal = l
            .positions()
            .filter_map(|p| p.outcome.as_ref().map(|o| o.net))
            .sum();
        assert_eq!(l.realized(None), all);
    }
}
