//! Which engine owns which order, the last state the gateway saw of each, and
//! every engine's numbered event log.
//!
//! Orders are keyed by the engine's own client order id; at the venue they
//! carry the engine's prefix ("e0-" + id) so ownership is unambiguous for the
//! whole key. Every state change the gateway learns of (a submit answer, a
//! poll, a cancel) goes through [`Registry::apply`], which compares it with
//! the last known state and appends the resulting events to the owner's log
//! with the next sequence number. Streams read the log; a reconnecting engine
//! resumes after the last sequence it processed.
//!
//! Ownership is the `owners` map, filled when an order is registered or
//! adopted and never reassigned: a venue-facing id that has an owner belongs
//! to it. Only an order the gateway has not seen since it started (found at
//! the venue after a restart) is given an owner by its prefix, the longest
//! engine prefix it carries (config validation makes that the only one: no
//! engine's prefix begins another's).
//!
//! An order the venue reports that Herd cannot model ([`OrderState::foreign`]:
//! placed by hand or by another tool on the same key) is nobody's: it is never
//! adopted, its states produce no events, and it is kept apart in the
//! foreign set ([`Registry::set_foreign`]), for counting and for operators.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use herd_proto::gateway as pb;
use herd_venue::{OrderRef, OrderState, OrderStatus};
use rust_decimal::Decimal;
use tokio::sync::watch;

use crate::convert;

/// Why events cannot be served from the requested sequence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    #[error("unknown engine {0:?}")]
    UnknownEngine(String),
    #[error(
        "events after sequence {requested} are no longer kept (oldest kept is {oldest}); reconcile with QueryOrders"
    )]
    Gap { requested: u64, oldest: u64 },
    #[error("sequence {requested} is ahead of the last event {last}")]
    Ahead { requested: u64, last: u64 },
}

/// Final orders remembered per engine (see `EngineBook::finals`). Far
/// beyond any engine's retries of a place (seconds) and its working orders
/// (the most an engine can have close while it is away).
pub const FINAL_ORDERS_KEPT: usize = 10_000;

impl EngineBook {
    /// Notes that `client_id` became final (or was adopted final); returns
    /// the venue-facing ids of the final orders forgotten to make room.
    fn finalized(&mut self, client_id: &str) -> Vec<String> {
        self.working.remove(client_id);
        self.finals.push_back(client_id.to_string());
        let mut forgotten = Vec::new();
        while self.finals.len() > FINAL_ORDERS_KEPT {
            let Some(old) = self.finals.pop_front() else {
                break;
            };
            if self
                .orders
                .get(&old)
                .is_some_and(|t| t.state.status.is_final())
                && let Some(t) = self.orders.remove(&old)
            {
                forgotten.push(t.state.client_order_id);
            }
        }
        forgotten
    }

    fn working_states(&self) -> impl Iterator<Item = &OrderState> {
        self.working
            .iter()
            .filter_map(|id| self.orders.get(id))
            .map(|t| &t.state)
    }
}

#[derive(Debug)]
struct Tracked {
    state: OrderState,
    cancel_requested: bool,
}

#[derive(Debug)]
struct EngineBook {
    orders: HashMap<String, Tracked>,
    /// The engine's client ids of its orders that are not final: what the
    /// poller, capacity counts and open-order lists look at, without going
    /// through the final ones.
    working: BTreeSet<String>,
    /// Its final orders' client ids, oldest first: the newest
    /// [`FINAL_ORDERS_KEPT`] are remembered (a repeated place answers the
    /// first order; a late state of a final order is ignored), older ones
    /// forgotten so a gateway that runs for months does not grow with every
    /// order it ever saw.
    finals: VecDeque<String>,
    log: VecDeque<pb::OrderEvent>,
    next_seq: u64,
    seq_tx: watch::Sender<u64>,
    streams: u32,
    /// Since when no stream has been open (None while one is).
    gone_since_ms: Option<i64>,
    /// The dead man's switch already fired for this disconnection.
    dead_man_fired: bool,
    /// When it last fired and how many orders it canceled.
    dead_man_last: Option<(i64, u32)>,
}

#[derive(Debug, Default)]
struct Inner {
    engines: HashMap<String, EngineBook>,
    /// venue-facing client id -> (engine, engine's client id)
    owners: HashMap<String, (String, String)>,
    /// Open foreign orders by venue order id, as of the last complete view.
    foreign: BTreeMap<String, OrderState>,
}

/// An engine's prefix and its call count.
#[derive(Debug)]
struct Fixed {
    prefix: String,
    calls: AtomicU64,
}

/// What a new submit found.
// Built once per submit and consumed at once; boxing buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Registration {
    /// First time: go ahead and send it.
    New,
    /// The engine used this client id before: here is that order.
    Existing(Box<OrderState>),
    /// The venue-facing id belongs to another engine (by the registry's
    /// owner, or by the longest prefix it carries); nothing was recorded.
    Taken,
}

/// The gateway's order book of record.
#[derive(Debug)]
pub struct Registry {
    inner: Mutex<Inner>,
    /// What never changes after [`Registry::new`] (the engines, their
    /// prefixes: the one place a prefix is kept) and the call counts: read
    /// and counted on every call without the lock of `inner`, which every
    /// engine's orders share.
    fixed: HashMap<String, Fixed>,
    /// Risk follows every order state change (set once at start).
    risk: std::sync::OnceLock<std::sync::Arc<crate::risk::Risk>>,
    /// The fills ledger follows every state change and adoption (set once at start).
    ledger: std::sync::OnceLock<std::sync::Arc<crate::fills::Ledger>>,
    /// Fills and rejections become herd events (set once at start).
    events: std::sync::OnceLock<crate::events::Emitter>,
    /// `[record]`: the fills the ledger books are appended there.
    recorder: std::sync::OnceLock<std::sync::Arc<crate::recorder::Recorder>>,
    incarnation: String,
    retention: usize,
}

impl Registry {
    /// `engines` is (engine id, venue prefix).
    pub fn new(engines: &[(String, String)], incarnation: String, retention: usize) -> Registry {
        let mut inner = Inner::default();
        let mut fixed = HashMap::new();
        for (id, prefix) in engines {
            fixed.insert(
                id.clone(),
                Fixed {
                    prefix: prefix.clone(),
                    calls: AtomicU64::new(0),
                },
            );
            let (seq_tx, _) = watch::channel(0);
            inner.engines.insert(
                id.clone(),
                EngineBook {
                    orders: HashMap::new(),
                    working: BTreeSet::new(),
                    finals: VecDeque::new(),
                    log: VecDeque::new(),
                    next_seq: 1,
                    seq_tx,
                    streams: 0,
                    gone_since_ms: None,
                    dead_man_fired: false,
                    dead_man_last: None,
                },
            );
        }
        Registry {
            inner: Mutex::new(inner),
            fixed,
            risk: std::sync::OnceLock::new(),
            ledger: std::sync::OnceLock::new(),
            recorder: std::sync::OnceLock::new(),
            events: std::sync::OnceLock::new(),
            incarnation,
            retention: retention.max(1),
        }
    }

    /// Lets `risk` follow every state change and adoption.
    pub fn set_risk(&self, risk: std::sync::Arc<crate::risk::Risk>) {
        let _ = self.risk.set(risk);
    }

    /// Appends the fills the ledger books to a recording.
    pub fn set_recorder(&self, recorder: std::sync::Arc<crate::recorder::Recorder>) {
        let _ = self.recorder.set(recorder);
    }

    /// Lets the fills ledger see every state change and adoption.
    pub fn set_ledger(&self, ledger: std::sync::Arc<crate::fills::Ledger>) {
        let _ = self.ledger.set(ledger);
    }

    /// Reports fills and rejections as herd events.
    pub fn set_events(&self, events: crate::events::Emitter) {
        let _ = self.events.set(events);
    }

    /// Since when `engine` has had no event stream (None: connected).
    pub fn gone_since(&self, engine: &str) -> Option<i64> {
        self.lock()
            .engines
            .get(engine)
            .and_then(|b| b.gone_since_ms)
    }

    pub fn incarnation(&self) -> &str {
        &self.incarnation
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps half-updated
        // in a way later calls would trip over, so recover the guard.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The venue-facing client id of an engine's order.
    pub fn venue_client_id(&self, engine: &str, client_order_id: &str) -> Option<String> {
        self.fixed
            .get(engine)
            .map(|f| format!("{}{client_order_id}", f.prefix))
    }

    /// Counts one call against the engine's spend.
    pub fn count_call(&self, engine: &str) {
        if let Some(f) = self.fixed.get(engine) {
            f.calls.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records a submit before it is sent, so an unknown outcome can be
    /// resolved by polling. `order` carries the venue-facing client id.
    pub fn register(&self, engine: &str, client_order_id: &str, order: OrderState) -> Registration {
        let mut inner = self.lock();
        let Some(book) = inner.engines.get(engine) else {
            return Registration::New;
        };
        if let Some(t) = book.orders.get(client_order_id) {
            return Registration::Existing(Box::new(t.state.clone()));
        }
        let venue_id = order.client_order_id.clone();
        let mine = (engine.to_string(), client_order_id.to_string());
        if owner_of(&inner, &self.fixed, &venue_id).is_some_and(|o| o != mine) {
            return Registration::Taken;
        }
        let Some(book) = inner.engines.get_mut(engine) else {
            return Registration::New;
        };
        book.orders.insert(
            client_order_id.to_string(),
            Tracked {
                state: order,
                cancel_requested: false,
            },
        );
        book.working.insert(client_order_id.to_string());
        inner.owners.insert(venue_id, mine);
        Registration::New
    }

    /// Drops an order the venue definitely refused, so the engine may reuse its id.
    pub fn forget(&self, engine: &str, client_order_id: &str) {
        let mut inner = self.lock();
        let venue_id = inner.engines.get_mut(engine).and_then(|b| {
            b.working.remove(client_order_id);
            b.orders
                .remove(client_order_id)
                .map(|t| t.state.client_order_id)
        });
        if let Some(v) = venue_id {
            inner.owners.remove(&v);
        }
    }

    /// (engine, engine's client id) of a venue-facing client id the
    /// registry tracks.
    pub fn owner(&self, venue_client_id: &str) -> Option<(String, String)> {
        self.lock().owners.get(venue_client_id).cloned()
    }

    /// Who owns a venue-facing client id: the registry's owner when it
    /// tracks the order, else the engine with the longest prefix the id
    /// carries (an order not seen since the gateway started). The one rule
    /// every lookup and adoption goes by.
    pub fn owner_of(&self, venue_client_id: &str) -> Option<(String, String)> {
        owner_of(&self.lock(), &self.fixed, venue_client_id)
    }

    /// The order as last seen (venue-facing client id).
    pub fn get(&self, engine: &str, client_order_id: &str) -> Option<OrderState> {
        self.lock()
            .engines
            .get(engine)?
            .orders
            .get(client_order_id)
            .map(|t| t.state.clone())
    }

    /// Open and pending orders of one engine.
    pub fn working_orders(&self, engine: &str) -> Vec<OrderState> {
        let inner = self.lock();
        let mut v: Vec<OrderState> = inner
            .engines
            .get(engine)
            .map(|b| b.working_states().cloned().collect())
            .unwrap_or_default();
        v.sort_by(|a, b| {
            (a.opened_at_ms, &a.client_order_id).cmp(&(b.opened_at_ms, &b.client_order_id))
        });
        v
    }

    /// Working orders of every engine on `symbol`.
    pub fn working_count(&self, symbol: &str) -> usize {
        self.lock()
            .engines
            .values()
            .flat_map(EngineBook::working_states)
            .filter(|o| o.symbol == symbol)
            .count()
    }

    /// Every order of every engine that can still change, as venue refs.
    pub fn tracked(&self) -> Vec<(OrderRef, OrderStatus, i64)> {
        let inner = self.lock();
        inner
            .engines
            .values()
            .flat_map(EngineBook::working_states)
            .map(|o| {
                (
                    OrderRef {
                        client_order_id: o.client_order_id.clone(),
                        venue_order_id: Some(o.venue_order_id.clone()).filter(|s| !s.is_empty()),
                    },
                    o.status,
                    o.opened_at_ms,
                )
            })
            .collect()
    }

    pub fn mark_cancel_requested(&self, engine: &str, client_order_id: &str) {
        if let Some(t) = self
            .lock()
            .engines
            .get_mut(engine)
            .and_then(|b| b.orders.get_mut(client_order_id))
        {
            t.cancel_requested = true;
        }
    }

    /// Feeds a venue state in; returns the events it produced. States of
    /// orders no engine owns are ignored.
    pub fn apply(&self, new: &OrderState, now_ms: i64) -> Vec<pb::OrderEvent> {
        // The ledger sees a fill before its event is in any log (its own
        // marks, not this registry's last state, say what is new), so a
        // stream that flushes the ledger before sending a fill never lets an
        // engine see a fill the ledger could lose.
        if let Some(ledger) = self.ledger.get()
            && !new.is_foreign()
            && let Some((engine, client_id)) = self.owner(&new.client_order_id)
        {
            let fill = ledger.observe(&engine, &client_id, new, now_ms);
            if let (Some(f), Some(rec)) = (fill, self.recorder.get()) {
                rec.fill(&f);
            }
        }
        let (out, owner) = self.apply_locked(new, now_ms);
        // Risk after the registry's lock is gone (lock order: registry, then
        // risk; never both).
        if let (Some(risk), Some((engine, client_id))) = (self.risk.get(), &owner) {
            risk.on_state(engine, client_id, new, now_ms);
        }
        if let (Some(em), Some((engine, _))) = (self.events.get(), &owner)
            && !out.is_empty()
        {
            for e in out
                .iter()
                .filter_map(|oe| crate::events::from_order_event(engine, oe))
            {
                em.emit(e);
            }
        }
        out
    }

    fn apply_locked(
        &self,
        new: &OrderState,
        now_ms: i64,
    ) -> (Vec<pb::OrderEvent>, Option<(String, String)>) {
        if new.is_foreign() {
            return (Vec::new(), None);
        }
        let mut inner = self.lock();
        let Some((engine, client_id)) = inner.owners.get(&new.client_order_id).cloned() else {
            return (Vec::new(), None);
        };
        let Some(book) = inner.engines.get_mut(&engine) else {
            return (Vec::new(), None);
        };
        let Some(tracked) = book.orders.get_mut(&client_id) else {
            return (Vec::new(), None);
        };
        if tracked.state.status.is_final() {
            return (Vec::new(), None);
        }
        let kinds = diff(&tracked.state, new);
        tracked.state = new.clone();
        let forgotten = if new.status.is_final() {
            book.finalized(&client_id)
        } else {
            Vec::new()
        };
        // One conversion for all of this change's events (an order that
        // fills at once is accepted and filled in one step).
        let prefix = self.fixed.get(&engine).map_or("", |f| f.prefix.as_str());
        let order = convert::order_to_pb(new, prefix);
        let mut out = Vec::with_capacity(kinds.len());
        for (kind, fill) in kinds {
            let seq = book.next_seq;
            book.next_seq += 1;
            let event = pb::OrderEvent {
                sequence: seq,
                incarnation: self.incarnation.clone(),
                kind: kind as i32,
                order: Some(order.clone()),
                fill_volume: fill
                    .as_ref()
                    .map(|f| f.volume.to_string())
                    .unwrap_or_default(),
                fill_price: fill
                    .as_ref()
                    .map(|f| f.price.to_string())
                    .unwrap_or_default(),
                fill_fee: fill.as_ref().map(|f| f.fee.to_string()).unwrap_or_default(),
                time_ms: now_ms,
            };
            book.log.push_back(event.clone());
            while book.log.len() > self.retention {
                book.log.pop_front();
            }
            out.push(event);
        }
        if let Some(last) = out.last() {
            book.seq_tx.send_replace(last.sequence);
        }
        for venue_id in forgotten {
            inner.owners.remove(&venue_id);
        }
        (out, Some((engine, client_id)))
    }

    /// Events of `engine` after `after`, at most `max`.
    pub fn events_after(
        &self,
        engine: &str,
        after: u64,
        max: usize,
    ) -> Result<Vec<pb::OrderEvent>, LogError> {
        let inner = self.lock();
        let book = inner
            .engines
            .get(engine)
            .ok_or_else(|| LogError::UnknownEngine(engine.to_string()))?;
        let last = book.next_seq - 1;
        if after > last {
            return Err(LogError::Ahead {
                requested: after,
                last,
            });
        }
        let oldest = book.log.front().map_or(book.next_seq, |e| e.sequence);
        if after + 1 < oldest {
            return Err(LogError::Gap {
                requested: after,
                oldest,
            });
        }
        // Sequences rise along the log: find the first one after `after` by
        // bisection, not by a walk from the oldest (the log keeps up to
        // `retention` events, and this runs under the registry's lock for
        // every batch a stream sends).
        let start = book.log.partition_point(|e| e.sequence <= after);
        Ok(book.log.range(start..).take(max).cloned().collect())
    }

    /// A receiver that changes whenever the engine gets a new event.
    pub fn subscribe(&self, engine: &str) -> Option<watch::Receiver<u64>> {
        self.lock()
            .engines
            .get(engine)
            .map(|b| b.seq_tx.subscribe())
    }

    pub fn last_sequence(&self, engine: &str) -> u64 {
        self.lock()
            .engines
            .get(engine)
            .map_or(0, |b| b.next_seq - 1)
    }

    pub fn stream_opened(&self, engine: &str) {
        if let Some(b) = self.lock().engines.get_mut(engine) {
            b.streams += 1;
            b.gone_since_ms = None;
            b.dead_man_fired = false;
        }
    }

    /// True while at least one engine has an event stream open.
    pub fn any_stream_connected(&self) -> bool {
        self.lock().engines.values().any(|b| b.streams > 0)
    }

    pub fn stream_closed(&self, engine: &str, now_ms: i64) {
        if let Some(b) = self.lock().engines.get_mut(engine) {
            b.streams = b.streams.saturating_sub(1);
            if b.streams == 0 {
                b.gone_since_ms = Some(now_ms);
            }
        }
    }

    /// Marks every engine without a stream as gone since `now_ms` (at start:
    /// an engine that never comes back is as gone as one that left).
    pub fn mark_all_gone_since(&self, now_ms: i64) {
        for b in self.lock().engines.values_mut() {
            if b.streams == 0 && b.gone_since_ms.is_none() {
                b.gone_since_ms = Some(now_ms);
            }
        }
    }

    /// Engines whose stream has been gone longer than their grace, that
    /// still have working orders and whose switch has not fired yet.
    pub fn dead_man_due(&self, now_ms: i64, grace_ms: impl Fn(&str) -> i64) -> Vec<String> {
        let inner = self.lock();
        let mut due: Vec<String> = inner
            .engines
            .iter()
            .filter(|(id, b)| {
                let grace = grace_ms(id);
                grace > 0
                    && !b.dead_man_fired
                    && b.gone_since_ms.is_some_and(|t| now_ms - t > grace)
                    && !b.working.is_empty()
            })
            .map(|(id, _)| id.clone())
            .collect();
        due.sort();
        due
    }

    pub fn set_dead_man_fired(&self, engine: &str, now_ms: i64, canceled: u32) {
        if let Some(b) = self.lock().engines.get_mut(engine) {
            b.dead_man_fired = true;
            b.dead_man_last = Some((now_ms, canceled));
        }
    }

    /// When the engine's dead man's switch last fired, and how many orders it canceled.
    pub fn dead_man_last(&self, engine: &str) -> Option<(i64, u32)> {
        self.lock()
            .engines
            .get(engine)
            .and_then(|b| b.dead_man_last)
    }

    /// The engine whose order prefix `venue_client_id` carries (the
    /// longest, should several), and the engine's own id for the order.
    pub fn owner_by_prefix(&self, venue_client_id: &str) -> Option<(String, String)> {
        owner_by_prefix(&self.fixed, venue_client_id)
    }

    /// Takes over an order found at the venue (after a gateway restart, or
    /// asked for by its engine) without emitting events: the engine
    /// reconciles it with QueryOrders. Returns false if it was known already
    /// (an order with an owner is never reassigned), carries no prefix, or is
    /// foreign (no engine placed it, whatever its client id says).
    pub fn adopt(&self, state: &OrderState) -> bool {
        if state.is_foreign() {
            return false;
        }
        let mut inner = self.lock();
        if inner.owners.contains_key(&state.client_order_id) {
            return false;
        }
        let Some((engine, client_id)) = owner_by_prefix(&self.fixed, &state.client_order_id) else {
            return false;
        };
        let Some(book) = inner.engines.get_mut(&engine) else {
            return false;
        };
        if book.orders.contains_key(&client_id) {
            return false;
        }
        book.orders.insert(
            client_id.clone(),
            Tracked {
                state: state.clone(),
                cancel_requested: false,
            },
        );
        let forgotten = if state.status.is_final() {
            book.finalized(&client_id)
        } else {
            book.working.insert(client_id.clone());
            Vec::new()
        };
        for venue_id in forgotten {
            inner.owners.remove(&venue_id);
        }
        inner.owners.insert(
            state.client_order_id.clone(),
            (engine.clone(), client_id.clone()),
        );
        drop(inner);
        // What executed while the gateway was not looking is one fill.
        if let Some(ledger) = self.ledger.get() {
            ledger.observe(&engine, &client_id, state, ledger.now_ms());
        }
        if let Some(risk) = self.risk.get() {
            risk.adopt(&engine, &client_id, state);
        }
        true
    }

    /// Records the foreign orders among `open`, a complete list of the
    /// key's open orders: the foreign set becomes exactly those. A foreign
    /// order seen for the first time is logged as a warning, once. Returns
    /// how many there are.
    pub fn set_foreign(&self, open: &[OrderState]) -> usize {
        let now: BTreeMap<String, OrderState> = open
            .iter()
            .filter(|s| s.is_foreign())
            .map(|s| (s.venue_order_id.clone(), s.clone()))
            .collect();
        let mut inner = self.lock();
        for (id, s) in &now {
            if !inner.foreign.contains_key(id) {
                tracing::warn!(
                    venue_order_id = %id,
                    symbol = %s.symbol,
                    side = ?s.side,
                    venue_type = s.foreign.as_ref().map_or("", |f| f.venue_type.as_str()),
                    "an order no engine placed is open on the key; it is tracked as foreign, \
                     owned by no engine"
                );
            }
        }
        for id in inner.foreign.keys() {
            if !now.contains_key(id) {
                tracing::info!(venue_order_id = %id, "foreign order no longer open");
            }
        }
        let n = now.len();
        inner.foreign = now;
        n
    }

    /// The open foreign orders as of the last complete view, by venue id.
    pub fn foreign_orders(&self) -> Vec<OrderState> {
        self.lock().foreign.values().cloned().collect()
    }

    /// Per engine: (id, streams open, last sequence, working orders, calls).
    pub fn engine_summaries(&self) -> Vec<(String, u32, u64, u32, u64)> {
        let inner = self.lock();
        let mut v: Vec<_> = inner
            .engines
            .iter()
            .map(|(id, b)| {
                let working = b.working.len();
                (
                    id.clone(),
                    b.streams,
                    b.next_seq - 1,
                    u32::try_from(working).unwrap_or(u32::MAX),
                    self.fixed
                        .get(id)
                        .map_or(0, |f| f.calls.load(Ordering::Relaxed)),
                )
            })
            .collect();
        v.sort();
        v
    }

    /// When the engine's last event happened (None before its first, or
    /// once the log no longer holds it).
    pub fn last_event_ms(&self, engine: &str) -> Option<i64> {
        self.lock()
            .engines
            .get(engine)
            .and_then(|b| b.log.back())
            .map(|e| e.time_ms)
    }

    /// The engine's prefix, for converting orders at the edge.
    pub fn prefix(&self, engine: &str) -> Option<String> {
        self.fixed.get(engine).map(|f| f.prefix.clone())
    }
}

fn owner_of(
    inner: &Inner,
    fixed: &HashMap<String, Fixed>,
    venue_client_id: &str,
) -> Option<(String, String)> {
    match inner.owners.get(venue_client_id) {
        Some(o) => Some(o.clone()),
        None => owner_by_prefix(fixed, venue_client_id),
    }
}

fn owner_by_prefix(
    fixed: &HashMap<String, Fixed>,
    venue_client_id: &str,
) -> Option<(String, String)> {
    fixed
        .iter()
        .filter_map(|(id, f)| {
            venue_client_id
                .strip_prefix(&f.prefix)
                .filter(|rest| !rest.is_empty())
                .map(|rest| (f.prefix.len(), id, rest))
        })
        .max_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(b.1)))
        .map(|(_, id, rest)| (id.clone(), rest.to_string()))
}

/// What one event adds to the fills.
#[derive(Debug, Clone, PartialEq)]
pub struct FillDelta {
    pub volume: Decimal,
    pub price: Decimal,
    pub fee: Decimal,
}

/// The events that take an order from `old` to `new`, in order.
pub fn diff(old: &OrderState, new: &OrderState) -> Vec<(pb::OrderEventKind, Option<FillDelta>)> {
    use pb::OrderEventKind as K;
    let mut out = Vec::new();
    if old.status == OrderStatus::Pending
        && new.status != OrderStatus::Pending
        && new.status != OrderStatus::Rejected
    {
        out.push((K::Open, None));
    }
    let delta = new.volume_executed - old.volume_executed;
    if delta > Decimal::ZERO {
        let new_value = new.average_price.or(new.price).unwrap_or_default() * new.volume_executed;
        let old_value = old.average_price.or(old.price).unwrap_or_default() * old.volume_executed;
        let price = ((new_value - old_value) / delta).round_dp(12).normalize();
        let fill = FillDelta {
            volume: delta,
            price,
            fee: (new.fee - old.fee).max(Decimal::ZERO),
        };
        let kind = if new.status == OrderStatus::Filled {
            K::Filled
        } else {
            K::PartialFill
        };
        out.push((kind, Some(fill)));
    } else if new.status == OrderStatus::Filled && old.status != OrderStatus::Filled {
        out.push((K::Filled, None));
    }
    if new.status != old.status {
        match new.status {
            OrderStatus::Canceled => out.push((K::Canceled, None)),
            OrderStatus::Expired => out.push((K::Expired, None)),
            OrderStatus::Rejected => out.push((K::Rejected, None)),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use herd_venue::{NewOrder, OrderType, Side};
    use pb::OrderEventKind as K;
    use rust_decimal_macros::dec;

    fn pending(id: &str) -> OrderState {
        OrderState::pending(
            &NewOrder {
                client_order_id: id.into(),
                symbol: "DOGEUSD".into(),
                side: Side::Buy,
                order_type: OrderType::Limit,
                volume: dec!(100),
                price: Some(dec!(0.1)),
                post_only: true,
                userref: 1,
                reduce_only: false,
            },
            0,
        )
    }

    fn with(
        s: &OrderState,
        status: OrderStatus,
        exec: Decimal,
        avg: Option<Decimal>,
        fee: Decimal,
    ) -> OrderState {
        OrderState {
            status,
            volume_executed: exec,
            average_price: avg,
            fee,
            venue_order_id: "OABC".into(),
            ..s.clone()
        }
    }

    #[test]
    fn diff_table() {
        let p = pending("e0-a");
        let open = with(&p, OrderStatus::Open, dec!(0), None, dec!(0));
        let part = with(&p, OrderStatus::Open, dec!(40), Some(dec!(0.1)), dec!(0.01));
        let full = with(
            &p,
            OrderStatus::Filled,
            dec!(100),
            Some(dec!(0.09)),
            dec!(0.0225),
        );
        let cancel_part = with(
            &p,
            OrderStatus::Canceled,
            dec!(40),
            Some(dec!(0.1)),
            dec!(0.01),
        );
        let kinds = |a: &OrderState, b: &OrderState| {
            diff(a, b).into_iter().map(|(k, _)| k).collect::<Vec<_>>()
        };
        assert_eq!(kinds(&p, &open), vec![K::Open]);
        assert_eq!(kinds(&p, &full), vec![K::Open, K::Filled]);
        assert_eq!(kinds(&open, &part), vec![K::PartialFill]);
        assert_eq!(kinds(&part, &full), vec![K::Filled]);
        assert_eq!(kinds(&part, &cancel_part), vec![K::Canceled]);
        assert_eq!(kinds(&open, &open), Vec::<K>::new());
        // The second fill's own price: (100 * 0.09 - 40 * 0.1) / 60
        let (_, fill) = &diff(&part, &full)[0];
        let fill = fill.clone().unwrap();
        assert_eq!(fill.volume, dec!(60));
        assert_eq!(fill.price, dec!(0.083333333333));
        assert_eq!(fill.fee, dec!(0.0125));
    }

    /// The index of working orders follows every change (register, fill,
    /// cancel, forget, adopt), and only the newest FINAL_ORDERS_KEPT final
    /// orders are remembered: an older one is forgotten (owner and all),
    /// while working orders, however old, never are.
    #[test]
    fn working_index_and_final_retention() {
        let reg = Registry::new(&[("e0".into(), "e0-".into())], "inc".into(), 10);
        let state = |id: &str, status: OrderStatus| OrderState {
            venue_order_id: format!("V-{id}"),
            ..with(
                &pending(&format!("e0-{id}")),
                status,
                dec!(0),
                None,
                dec!(0),
            )
        };
        let working = |reg: &Registry| -> Vec<String> {
            let mut v: Vec<String> = reg
                .tracked()
                .into_iter()
                .map(|(r, _, _)| r.client_order_id)
                .collect();
            v.sort();
            v
        };
        // A long-lived working order, then many that open and fill.
        assert_eq!(
            reg.register("e0", "old", pending("e0-old")),
            Registration::New
        );
        reg.apply(&state("old", OrderStatus::Open), 1);
        let n = FINAL_ORDERS_KEPT + 5;
        for i in 0..n {
            let id = format!("f{i}");
            assert_eq!(
                reg.register("e0", &id, pending(&format!("e0-{id}"))),
                Registration::New
            );
            assert_eq!(
                working(&reg),
                vec![format!("e0-{id}"), "e0-old".to_string()]
            );
            reg.apply(&state(&id, OrderStatus::Open), 2);
            reg.apply(&state(&id, OrderStatus::Filled), 3);
        }
        assert_eq!(working(&reg), vec!["e0-old".to_string()]);
        assert_eq!(reg.working_orders("e0").len(), 1);
        assert_eq!(reg.working_count("DOGEUSD"), 1);
        assert_eq!(reg.engine_summaries()[0].3, 1);
        // The five oldest final orders are forgotten, owner and all; the
        // newest are still answered; the old working order stays.
        for i in 0..5 {
            let id = format!("f{i}");
            assert_eq!(reg.get("e0", &id), None, "{id}");
            assert_eq!(reg.owner(&format!("e0-{id}")), None, "{id}");
            // A late state of a forgotten order makes nothing.
            assert!(reg.apply(&state(&id, OrderStatus::Filled), 4).is_empty());
        }
        let newest = format!("f{}", n - 1);
        assert_eq!(
            reg.get("e0", &newest).map(|o| o.status),
            Some(OrderStatus::Filled)
        );
        assert!(matches!(
            reg.register("e0", &newest, pending(&format!("e0-{newest}"))),
            Registration::Existing(_)
        ));
        assert_eq!(
            reg.get("e0", "old").map(|o| o.status),
            Some(OrderStatus::Open)
        );
        // A cancel leaves the index; a forgotten (refused) place too.
        reg.apply(&state("old", OrderStatus::Canceled), 5);
        assert!(working(&reg).is_empty());
        assert_eq!(
            reg.register("e0", "refused", pending("e0-refused")),
            Registration::New
        );
        assert_eq!(working(&reg), vec!["e0-refused".to_string()]);
        reg.forget("e0", "refused");
        assert!(working(&reg).is_empty());
        // An adopted open order joins it.
        assert!(reg.adopt(&state("adopted", OrderStatus::Open)));
        assert_eq!(working(&reg), vec!["e0-adopted".to_string()]);
    }

    /// Issue 23, bug 1: even with prefixes that overlap (which config
    /// validation refuses), an order's owner is the registry's, never what
    /// the prefix arithmetic of another engine's id makes of it.
    /// An order no engine placed (foreign), even one whose client id
    /// carries an engine's prefix, is never adopted, produces no events, and
    /// is kept in the foreign set; the engines' own orders are unaffected.
    #[test]
    fn foreign_orders_belong_to_no_engine() {
        let reg = Registry::new(&[("e0".into(), "e0-".into())], "inc".into(), 10);
        assert_eq!(reg.register("e0", "a", pending("e0-a")), Registration::New);
        let own_open = with(&pending("e0-a"), OrderStatus::Open, dec!(0), None, dec!(0));
        let foreign = |venue_id: &str, client: &str| OrderState {
            venue_order_id: venue_id.into(),
            foreign: Some(herd_venue::Foreign {
                venue_type: "take-profit".into(),
                trigger: Some("+50.0000%".into()),
                quote_volume: None,
            }),
            ..with(&pending(client), OrderStatus::Open, dec!(0), None, dec!(0))
        };
        let by_hand = foreign("OTP4NE", "");
        let posing = foreign("OTS5XH", "e0-b");
        assert!(!reg.adopt(&posing), "a foreign order is nobody's");
        assert_eq!(reg.owner("e0-b"), None);
        assert!(reg.apply(&posing, 1).is_empty());
        assert!(reg.get("e0", "b").is_none());
        // Even under the id of an engine's order it changes nothing.
        assert!(reg.apply(&foreign("OX", "e0-a"), 1).is_empty());
        assert_eq!(reg.get("e0", "a").unwrap().status, OrderStatus::Pending);

        let open = [own_open.clone(), by_hand.clone(), posing.clone()];
        assert_eq!(reg.set_foreign(&open), 2);
        let ids: Vec<String> = reg
            .foreign_orders()
            .into_iter()
            .map(|o| o.venue_order_id)
            .collect();
        assert_eq!(ids, ["OTP4NE", "OTS5XH"]);
        assert_eq!(
            reg.apply(&own_open, 2).len(),
            1,
            "the engine's order still moves"
        );
        assert_eq!(reg.working_orders("e0").len(), 1);
        assert_eq!(reg.set_foreign(&[own_open]), 0, "gone when no longer open");
        assert!(reg.foreign_orders().is_empty());
    }

    #[test]
    fn ownership_is_the_registrys_and_never_moves() {
        let reg = Registry::new(
            &[("a".into(), "a-".into()), ("a-b".into(), "a-b-".into())],
            "inc".into(),
            10,
        );
        assert_eq!(
            reg.register("a-b", "xyz", pending("a-b-xyz")),
            Registration::New
        );
        // "a" + "b-xyz" is the same venue id: refused, owner unchanged.
        assert_eq!(
            reg.register("a", "b-xyz", pending("a-b-xyz")),
            Registration::Taken
        );
        assert_eq!(reg.owner("a-b-xyz"), Some(("a-b".into(), "xyz".into())));
        assert!(reg.get("a", "b-xyz").is_none());
        // An id a-b's longer prefix claims cannot be registered by a either,
        // even before a-b uses it (after a restart it would be a-b's).
        assert_eq!(
            reg.register("a", "b-new", pending("a-b-new")),
            Registration::Taken
        );
        // Adopting a venue state never reassigns a known order.
        let open = with(
            &pending("a-b-xyz"),
            OrderStatus::Open,
            dec!(0),
            None,
            dec!(0),
        );
        assert!(!reg.adopt(&open));
        assert_eq!(reg.owner("a-b-xyz"), Some(("a-b".into(), "xyz".into())));
        assert_eq!(reg.apply(&open, 1).len(), 1);
        assert_eq!(reg.last_sequence("a"), 0, "a sees none of a-b's events");
        assert!(reg.working_orders("a").is_empty());
        // An order unseen since start goes to the longest prefix it carries.
        assert_eq!(
            reg.owner_of("a-b-q"),
            Some(("a-b".to_string(), "q".to_string()))
        );
        assert_eq!(
            reg.owner_of("a-q"),
            Some(("a".to_string(), "q".to_string()))
        );
        let unseen = with(&pending("a-b-q"), OrderStatus::Open, dec!(0), None, dec!(0));
        assert!(reg.adopt(&unseen));
        assert_eq!(reg.owner("a-b-q"), Some(("a-b".into(), "q".into())));
        assert!(reg.get("a", "b-q").is_none());
    }

    #[test]
    fn sequences_resume_and_belong_to_their_engine() {
        let reg = Registry::new(
            &[("e0".into(), "e0-".into()), ("e1".into(), "e1-".into())],
            "inc".into(),
            3,
        );
        assert_eq!(reg.register("e0", "a", pending("e0-a")), Registration::New);
        assert!(matches!(
            reg.register("e0", "a", pending("e0-a")),
            Registration::Existing(_)
        ));
        let p = pending("e0-a");
        reg.apply(&with(&p, OrderStatus::Open, dec!(0), None, dec!(0)), 1);
        reg.apply(
            &with(&p, OrderStatus::Open, dec!(10), Some(dec!(0.1)), dec!(0)),
            2,
        );
        reg.apply(
            &with(&p, OrderStatus::Open, dec!(20), Some(dec!(0.1)), dec!(0)),
            3,
        );
        reg.apply(
            &with(&p, OrderStatus::Filled, dec!(100), Some(dec!(0.1)), dec!(0)),
            4,
        );
        assert_eq!(reg.last_sequence("e0"), 4);
        assert_eq!(reg.last_sequence("e1"), 0, "e1 sees none of e0's events");
        let after2: Vec<u64> = reg
            .events_after("e0", 2, 10)
            .unwrap()
            .iter()
            .map(|e| e.sequence)
            .collect();
        assert_eq!(after2, vec![3, 4]);
        // Retention 3: event 1 is gone, so resuming after 0 is a gap.
        assert!(matches!(
            reg.events_after("e0", 0, 10),
            Err(LogError::Gap { .. })
        ));
        assert!(matches!(
            reg.events_after("e0", 9, 10),
            Err(LogError::Ahead { .. })
        ));
        // The engine-facing order id has no prefix.
        let ev = &reg.events_after("e0", 3, 10).unwrap()[0];
        assert_eq!(ev.order.as_ref().unwrap().client_order_id, "a");
        // Final orders do not change any more.
        assert!(
            reg.apply(
                &with(&p, OrderStatus::Canceled, dec!(100), None, dec!(0)),
                5
            )
            .is_empty()
        );
    }

    /// Calls are counted without the registry's lock: callers on many
    /// threads at once lose no count, each engine's count is its own, an
    /// unknown engine counts nothing, and the prefixes read the same way.
    #[test]
    fn calls_counted_from_many_threads_at_once_are_each_counted_once() {
        let reg = std::sync::Arc::new(Registry::new(
            &[
                ("e0".to_string(), "e0-".to_string()),
                ("e1".to_string(), "x1/".to_string()),
            ],
            "inc".into(),
            10,
        ));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let reg = reg.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        reg.count_call(if t % 2 == 0 { "e0" } else { "e1" });
                        reg.count_call("e0");
                        reg.count_call("nobody");
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let calls: Vec<(String, u64)> = reg
            .engine_summaries()
            .into_iter()
            .map(|s| (s.0, s.4))
            .collect();
        assert_eq!(calls, [("e0".to_string(), 6000), ("e1".to_string(), 2000)]);
        assert_eq!(reg.prefix("e1").as_deref(), Some("x1/"));
        assert_eq!(reg.prefix("nobody"), None);
        assert_eq!(reg.venue_client_id("e1", "abc").as_deref(), Some("x1/abc"));
        assert_eq!(reg.venue_client_id("nobody", "abc"), None);
    }
}
