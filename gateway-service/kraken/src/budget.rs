//! The rate budget: Kraken's limits modelled exactly, and a scheduler that
//! makes calls wait for budget instead of being refused.
//!
//! Counters are continuously decaying levels (a float level and the time it
//! was last updated): the per-key REST counter, one trading counter per pair,
//! and the public-endpoint allowance. A call names its charges and its
//! [`Priority`]; it proceeds when every charge fits under its counter's limit
//! and no waiter ahead of it (higher priority, or same priority and earlier)
//! wants one of the same counters. Cancels go before new orders, which go
//! before queries. Calls that share no counter never block each other.
//!
//! Time comes from a [`MonotonicClock`]; waits sleep on tokio's clock, so tests
//! run with `start_paused` and never really sleep. Lockouts are wall-clock
//! (Unix ms) because they are reported as such.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use herd_venue::{BudgetCounter, BudgetSnapshot, Clock, VenueError};
use rust_decimal::Decimal;
use rust_decimal::prelude::FromPrimitive;
use tokio::sync::Notify;

use crate::common::consts::{PUBLIC_DECAY_PER_S, PUBLIC_LIMIT};
use crate::common::enums::{Tier, TierLimits};

/// Slack for float comparisons of levels.
const EPSILON: f64 = 1e-9;

/// Who goes first when budget is short. Lower value = served first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    Cancel = 0,
    Place = 1,
    Query = 2,
}

/// Seconds since an arbitrary origin, never going backwards.
pub trait MonotonicClock: Send + Sync + fmt::Debug {
    fn now(&self) -> Duration;
}

/// tokio's clock: follows `tokio::time::pause` / `advance` in tests.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    origin: tokio::time::Instant,
}

impl TokioClock {
    pub fn new() -> TokioClock {
        TokioClock {
            origin: tokio::time::Instant::now(),
        }
    }
}

impl Default for TokioClock {
    fn default() -> TokioClock {
        TokioClock::new()
    }
}

impl MonotonicClock for TokioClock {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
}

/// A metered scope.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CounterKey {
    /// The per-key REST counter of private calls.
    Rest,
    /// The per-IP allowance of public calls.
    Public,
    /// The per-pair trading counter (altname).
    Trading(String),
}

impl fmt::Display for CounterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CounterKey::Rest => f.write_str("rest"),
            CounterKey::Public => f.write_str("public"),
            CounterKey::Trading(p) => write!(f, "trading:{p}"),
        }
    }
}

/// One cost on one counter.
#[derive(Debug, Clone, PartialEq)]
pub struct Charge {
    pub key: CounterKey,
    pub cost: f64,
}

impl Charge {
    pub fn new(key: CounterKey, cost: f64) -> Charge {
        Charge { key, cost }
    }
}

/// A level that decays linearly to zero and refuses to go above its limit.
#[derive(Debug, Clone, PartialEq)]
pub struct DecayCounter {
    pub limit: f64,
    pub decay_per_s: f64,
    /// Units kept free below the limit. The venue measures the level when a
    /// request arrives, we when it leaves: requests that arrive closer
    /// together than they left (network jitter) would otherwise cross the
    /// limit by a fraction of a unit.
    pub headroom: f64,
    level: f64,
    at_s: f64,
}

impl DecayCounter {
    pub fn new(limit: f64, decay_per_s: f64) -> DecayCounter {
        DecayCounter {
            limit,
            decay_per_s,
            headroom: 0.0,
            level: 0.0,
            at_s: 0.0,
        }
    }

    /// The same counter keeping `headroom` units free (at most the limit).
    pub fn with_headroom(mut self, headroom: f64) -> DecayCounter {
        self.headroom = headroom.clamp(0.0, self.limit);
        self
    }

    /// The level at `now_s`.
    pub fn level(&self, now_s: f64) -> f64 {
        let elapsed = (now_s - self.at_s).max(0.0);
        (self.level - self.decay_per_s * elapsed).max(0.0)
    }

    /// Seconds until `cost` fits (0 when it fits now). A cost above the limit
    /// is waited for until the counter is empty, then allowed.
    pub fn wait_for(&self, now_s: f64, cost: f64) -> f64 {
        let level = self.level(now_s);
        let usable = self.limit - self.headroom;
        let excess = if cost > usable {
            level
        } else {
            level + cost - usable
        };
        if excess <= EPSILON {
            0.0
        } else if self.decay_per_s <= 0.0 {
            f64::INFINITY
        } else {
            excess / self.decay_per_s
        }
    }

    /// Adds `cost` at `now_s`.
    pub fn add(&mut self, now_s: f64, cost: f64) {
        self.level = self.level(now_s) + cost;
        self.at_s = now_s;
    }

    /// Sets the level to the limit: what a venue rate-limit answer tells us.
    pub fn saturate(&mut self, now_s: f64) {
        self.level = self.level(now_s).max(self.limit);
        self.at_s = now_s;
    }
}

#[derive(Debug)]
struct Waiter {
    id: u64,
    priority: Priority,
    keys: Vec<CounterKey>,
}

#[derive(Debug)]
struct State {
    limits: TierLimits,
    counters: BTreeMap<CounterKey, DecayCounter>,
    waiters: Vec<Waiter>,
    next_id: u64,
    locked_until_ms: Option<i64>,
    paused_until_s: Option<f64>,
    open_orders: BTreeMap<String, u32>,
    headroom: f64,
}

impl State {
    fn counter(&mut self, key: &CounterKey) -> &mut DecayCounter {
        let limits = self.limits;
        let headroom = self.headroom;
        self.counters
            .entry(key.clone())
            .or_insert_with(|| match key {
                CounterKey::Rest => DecayCounter::new(limits.rest_max, limits.rest_decay_per_s)
                    .with_headroom(headroom),
                CounterKey::Public => DecayCounter::new(PUBLIC_LIMIT, PUBLIC_DECAY_PER_S),
                CounterKey::Trading(_) => {
                    DecayCounter::new(limits.trading_threshold, limits.trading_decay_per_s)
                        .with_headroom(headroom)
                }
            })
    }

    fn blocked_by_earlier(&self, me: &Waiter) -> bool {
        self.waiters.iter().any(|w| {
            (w.priority, w.id) < (me.priority, me.id) && w.keys.iter().any(|k| me.keys.contains(k))
        })
    }

    fn remove(&mut self, id: u64) {
        self.waiters.retain(|w| w.id != id);
    }
}

/// Kraken's limits for one API key, shared by every caller of the venue.
pub struct RateBudget {
    state: Mutex<State>,
    notify: Notify,
    mono: Arc<dyn MonotonicClock>,
    wall: Arc<dyn Clock>,
}

impl fmt::Debug for RateBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateBudget").finish_non_exhaustive()
    }
}

/// Removes a waiter when its call leaves, served or dropped.
struct WaiterGuard<'a> {
    budget: &'a RateBudget,
    id: u64,
}

impl Drop for WaiterGuard<'_> {
    fn drop(&mut self) {
        self.budget.lock().remove(self.id);
        self.budget.notify.notify_waiters();
    }
}

impl RateBudget {
    /// A budget for `tier`, measuring decay with `mono` and lockouts with `wall`.
    pub fn new(tier: Tier, mono: Arc<dyn MonotonicClock>, wall: Arc<dyn Clock>) -> RateBudget {
        RateBudget {
            state: Mutex::new(State {
                limits: tier.limits(),
                counters: BTreeMap::new(),
                waiters: Vec::new(),
                next_id: 0,
                locked_until_ms: None,
                paused_until_s: None,
                open_orders: BTreeMap::new(),
                headroom: 0.0,
            }),
            notify: Notify::new(),
            mono,
            wall,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn now_s(&self) -> f64 {
        self.mono.now().as_secs_f64()
    }

    /// Keeps `units` free below the REST and trading limits (see
    /// [`DecayCounter::headroom`]). Applies to counters created afterwards.
    pub fn with_headroom(self, units: f64) -> RateBudget {
        self.lock().headroom = units.max(0.0);
        self
    }

    /// The tier's limits.
    pub fn limits(&self) -> TierLimits {
        self.lock().limits
    }

    /// Fails with [`VenueError::Lockout`] while private calls are suspended.
    pub fn check_lockout(&self) -> Result<(), VenueError> {
        let now = self.wall.now_ms();
        match self.lock().locked_until_ms {
            Some(until) if until > now => Err(VenueError::Lockout {
                message: "EGeneral:Temporary lockout: private calls suspended".into(),
                until_ms: until,
            }),
            _ => Ok(()),
        }
    }

    /// Waits until every charge fits and no earlier waiter wants the same
    /// counters, then books the charges. Private calls fail fast during a
    /// lockout and wait out an `EService:Throttled` pause.
    pub async fn acquire(
        &self,
        priority: Priority,
        private: bool,
        charges: &[Charge],
    ) -> Result<(), VenueError> {
        if private {
            self.check_lockout()?;
        }
        let me = {
            let mut st = self.lock();
            st.next_id += 1;
            let id = st.next_id;
            let keys: Vec<CounterKey> = charges.iter().map(|c| c.key.clone()).collect();
            st.waiters.push(Waiter {
                id,
                priority,
                keys: keys.clone(),
            });
            Waiter { id, priority, keys }
        };
        let _guard = WaiterGuard {
            budget: self,
            id: me.id,
        };
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let wait_s = {
                if private {
                    self.check_lockout()?;
                }
                let now = self.now_s();
                let mut st = self.lock();
                match st.paused_until_s {
                    Some(until) if private && until > now => Some(until - now),
                    _ if st.blocked_by_earlier(&me) => None,
                    _ => {
                        let wait = charges
                            .iter()
                            .map(|c| st.counter(&c.key).wait_for(now, c.cost))
                            .fold(0.0_f64, f64::max);
                        if wait <= 0.0 {
                            for c in charges {
                                st.counter(&c.key).add(now, c.cost);
                            }
                            st.remove(me.id);
                            drop(st);
                            self.notify.notify_waiters();
                            return Ok(());
                        }
                        Some(wait)
                    }
                }
            };
            match wait_s {
                None => notified.await,
                Some(s) => {
                    // Rounded up so a wake-up never lands just short of the level.
                    let d = Duration::from_secs_f64(s.min(86_400.0)) + Duration::from_micros(1);
                    tokio::select! {
                        _ = &mut notified => {}
                        _ = tokio::time::sleep(d) => {}
                    }
                }
            }
        }
    }

    /// Sets a counter to its limit: Kraken just said we were over it.
    pub fn saturate(&self, key: &CounterKey) {
        let now = self.now_s();
        self.lock().counter(key).saturate(now);
        self.notify.notify_waiters();
    }

    /// Suspends private calls until `until_ms` (Unix ms).
    pub fn lock_out_until(&self, until_ms: i64) {
        let mut st = self.lock();
        st.locked_until_ms = Some(st.locked_until_ms.map_or(until_ms, |u| u.max(until_ms)));
        drop(st);
        self.notify.notify_waiters();
    }

    /// Makes private calls wait for `d` (`EService:Throttled`).
    pub fn pause_private(&self, d: Duration) {
        let until = self.now_s() + d.as_secs_f64();
        let mut st = self.lock();
        st.paused_until_s = Some(st.paused_until_s.map_or(until, |u| u.max(until)));
    }

    /// The current level of a counter (0 when never used).
    pub fn level(&self, key: &CounterKey) -> f64 {
        let now = self.now_s();
        self.lock().counter(key).level(now)
    }

    /// Replaces the modelled open-order count of every pair.
    pub fn set_open_orders(&self, counts: BTreeMap<String, u32>) {
        self.lock().open_orders = counts;
    }

    /// Open orders the model holds for `pair`.
    pub fn open_orders(&self, pair: &str) -> u32 {
        self.lock().open_orders.get(pair).copied().unwrap_or(0)
    }

    /// Counts one more (or one fewer) open order on `pair`.
    pub fn adjust_open_orders(&self, pair: &str, delta: i64) {
        let mut st = self.lock();
        let n = st.open_orders.entry(pair.to_owned()).or_insert(0);
        *n = u32::try_from((i64::from(*n) + delta).max(0)).unwrap_or(0);
    }

    /// Refuses a new order when `pair` is at its tier's open-order limit.
    /// (Waiting would not help: only a fill or a cancel frees a slot.)
    pub fn check_open_order_slot(&self, pair: &str) -> Result<(), VenueError> {
        let st = self.lock();
        let open = st.open_orders.get(pair).copied().unwrap_or(0);
        if open >= st.limits.max_open_orders {
            return Err(VenueError::OrderLimit(format!(
                "{pair}: {open} open orders, the tier allows {}",
                st.limits.max_open_orders
            )));
        }
        Ok(())
    }

    /// The model as the gateway reports it.
    pub fn snapshot(&self) -> BudgetSnapshot {
        let now = self.now_s();
        let wall_now = self.wall.now_ms();
        let mut st = self.lock();
        for key in [CounterKey::Rest, CounterKey::Public] {
            st.counter(&key);
        }
        let dec = |x: f64| {
            Decimal::from_f64(x)
                .map(|d| d.round_dp(6).normalize())
                .unwrap_or_default()
        };
        let mut counters: Vec<BudgetCounter> = st
            .counters
            .iter()
            .map(|(k, c)| BudgetCounter {
                name: k.to_string(),
                level: dec(c.level(now)),
                limit: dec(c.limit),
                decay_per_second: dec(c.decay_per_s),
            })
            .collect();
        let max_open = Decimal::from(st.limits.max_open_orders);
        counters.extend(st.open_orders.iter().map(|(pair, n)| BudgetCounter {
            name: format!("open_orders:{pair}"),
            level: Decimal::from(*n),
            limit: max_open,
            decay_per_second: Decimal::ZERO,
        }));
        let count = |p: Priority| {
            u32::try_from(st.waiters.iter().filter(|w| w.priority == p).count()).unwrap_or(u32::MAX)
        };
        BudgetSnapshot {
            counters,
            waiting_cancels: count(Priority::Cancel),
            waiting_places: count(Priority::Place),
            waiting_queries: count(Priority::Query),
            locked_until_ms: st.locked_until_ms.filter(|u| *u > wall_now),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herd_venue::ManualClock;
    use rust_decimal_macros::dec;

    fn budget(tier: Tier) -> (Arc<RateBudget>, ManualClock) {
        let wall = ManualClock::new(1_700_000_000_000);
        let b = RateBudget::new(tier, Arc::new(TokioClock::new()), Arc::new(wall.clone()));
        (Arc::new(b), wall)
    }

    #[test]
    fn decay_counter_is_exact() {
        let mut c = DecayCounter::new(15.0, 0.33);
        for _ in 0..15 {
            assert_eq!(c.wait_for(0.0, 1.0), 0.0);
            c.add(0.0, 1.0);
        }
        assert_eq!(c.level(0.0), 15.0);
        let w = c.wait_for(0.0, 1.0);
        assert!((w - 1.0 / 0.33).abs() < 1e-9, "{w}");
        assert!((c.level(10.0) - (15.0 - 3.3)).abs() < 1e-9);
        assert_eq!(c.level(1000.0), 0.0);
        assert_eq!(c.wait_for(w, 1.0), 0.0);
        // Costs of 2 (trade history) need two units of room.
        let mut h = DecayCounter::new(20.0, 1.0);
        h.add(0.0, 19.0);
        assert!((h.wait_for(0.0, 2.0) - 1.0).abs() < 1e-9);
        h.saturate(0.5);
        assert_eq!(h.level(0.5), 20.0);
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_never_exceed_the_rest_counter() {
        let (b, _) = budget(Tier::Starter);
        let max_seen = Arc::new(Mutex::new(0.0_f64));
        let start = tokio::time::Instant::now();
        let mut tasks = Vec::new();
        for i in 0..60 {
            let b = b.clone();
            let max_seen = max_seen.clone();
            tasks.push(tokio::spawn(async move {
                let cost = if i % 5 == 0 { 2.0 } else { 1.0 };
                b.acquire(
                    Priority::Query,
                    true,
                    &[Charge::new(CounterKey::Rest, cost)],
                )
                .await
                .unwrap();
                let level = b.level(&CounterKey::Rest);
                let mut m = max_seen.lock().unwrap();
                *m = m.max(level);
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let m = *max_seen.lock().unwrap();
        assert!(m <= 15.0 + 1e-6, "level reached {m}");
        // 72 units through a 15-deep bucket draining 0.33/s: at least
        // (72 - 15) / 0.33 s, and not much more.
        let took = start.elapsed().as_secs_f64();
        let floor = (72.0 - 15.0) / 0.33;
        assert!(
            took >= floor - 0.01 && took < floor + 3.5,
            "took {took}, floor {floor}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_orders_never_exceed_the_trading_counter() {
        let (b, _) = budget(Tier::Starter);
        let key = CounterKey::Trading("XDGUSD".into());
        let mut tasks = Vec::new();
        for i in 0..100 {
            let b = b.clone();
            let key = key.clone();
            tasks.push(tokio::spawn(async move {
                let (p, cost) = if i % 4 == 0 {
                    (Priority::Cancel, 8.0)
                } else {
                    (Priority::Place, 1.0)
                };
                b.acquire(p, true, &[Charge::new(key.clone(), cost)])
                    .await
                    .unwrap();
                let l = b.level(&key);
                assert!(l <= 60.0 + 1e-6, "trading level {l}");
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    }

    #[tokio::test(start_paused = true)]
    async fn priority_order_is_respected() {
        let (b, _) = budget(Tier::Starter);
        let key = CounterKey::Trading("XBTUSD".into());
        b.saturate(&key);
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        // Queued worst-first: queries, then places, then cancels.
        for (i, p) in [
            Priority::Query,
            Priority::Query,
            Priority::Place,
            Priority::Place,
            Priority::Cancel,
            Priority::Cancel,
        ]
        .into_iter()
        .enumerate()
        {
            let b = b.clone();
            let key = key.clone();
            let order = order.clone();
            tasks.push(tokio::spawn(async move {
                b.acquire(p, true, &[Charge::new(key, 1.0)]).await.unwrap();
                order.lock().unwrap().push((p, i));
            }));
            tokio::task::yield_now().await;
        }
        tokio::task::yield_now().await;
        let snap = b.snapshot();
        assert_eq!(
            (
                snap.waiting_cancels,
                snap.waiting_places,
                snap.waiting_queries
            ),
            (2, 2, 2)
        );
        for t in tasks {
            t.await.unwrap();
        }
        let got: Vec<usize> = order.lock().unwrap().iter().map(|(_, i)| *i).collect();
        assert_eq!(got, vec![4, 5, 2, 3, 0, 1]);
    }

    #[tokio::test(start_paused = true)]
    async fn independent_counters_do_not_block_each_other() {
        let (b, _) = budget(Tier::Starter);
        let a = CounterKey::Trading("XBTUSD".into());
        b.saturate(&a);
        let blocked = {
            let b = b.clone();
            tokio::spawn(async move {
                b.acquire(Priority::Cancel, true, &[Charge::new(a, 8.0)])
                    .await
            })
        };
        tokio::task::yield_now().await;
        let t0 = tokio::time::Instant::now();
        b.acquire(Priority::Query, true, &[Charge::new(CounterKey::Rest, 1.0)])
            .await
            .unwrap();
        assert_eq!(
            t0.elapsed(),
            Duration::ZERO,
            "query on REST is not behind a cancel on XBTUSD"
        );
        blocked.await.unwrap().unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn rate_limit_answer_saturates_and_delays() {
        let (b, _) = budget(Tier::Pro);
        b.acquire(Priority::Query, true, &[Charge::new(CounterKey::Rest, 1.0)])
            .await
            .unwrap();
        assert!((b.level(&CounterKey::Rest) - 1.0).abs() < 1e-9);
        b.saturate(&CounterKey::Rest);
        assert_eq!(b.level(&CounterKey::Rest), 20.0);
        let t0 = tokio::time::Instant::now();
        b.acquire(Priority::Query, true, &[Charge::new(CounterKey::Rest, 1.0)])
            .await
            .unwrap();
        let waited = t0.elapsed().as_secs_f64();
        assert!(
            (waited - 1.0).abs() < 0.01,
            "Pro decays 1/s: waited {waited}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn lockout_stops_private_calls_only() {
        let (b, wall) = budget(Tier::Starter);
        let until = wall.now_ms() + 900_000;
        b.lock_out_until(until);
        assert_eq!(b.snapshot().locked_until_ms, Some(until));
        let err = b
            .acquire(
                Priority::Cancel,
                true,
                &[Charge::new(CounterKey::Rest, 1.0)],
            )
            .await
            .unwrap_err();
        assert!(matches!(err, VenueError::Lockout { until_ms, .. } if until_ms == until));
        b.acquire(
            Priority::Query,
            false,
            &[Charge::new(CounterKey::Public, 1.0)],
        )
        .await
        .unwrap();
        wall.advance_ms(900_001);
        assert_eq!(b.snapshot().locked_until_ms, None);
        b.acquire(
            Priority::Cancel,
            true,
            &[Charge::new(CounterKey::Rest, 1.0)],
        )
        .await
        .unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn public_calls_are_one_per_second() {
        let (b, _) = budget(Tier::Pro);
        let t0 = tokio::time::Instant::now();
        for _ in 0..5 {
            b.acquire(
                Priority::Query,
                false,
                &[Charge::new(CounterKey::Public, 1.0)],
            )
            .await
            .unwrap();
        }
        let took = t0.elapsed().as_secs_f64();
        assert!((took - 4.0).abs() < 0.01, "{took}");
    }

    #[tokio::test(start_paused = true)]
    async fn dropped_waiter_leaves_the_queue() {
        let (b, _) = budget(Tier::Starter);
        b.saturate(&CounterKey::Rest);
        let waiting = {
            let b = b.clone();
            tokio::spawn(async move {
                b.acquire(
                    Priority::Cancel,
                    true,
                    &[Charge::new(CounterKey::Rest, 1.0)],
                )
                .await
            })
        };
        tokio::task::yield_now().await;
        assert_eq!(b.snapshot().waiting_cancels, 1);
        waiting.abort();
        let _ = waiting.await;
        assert_eq!(b.snapshot().waiting_cancels, 0);
    }

    #[test]
    fn open_order_slots_and_snapshot() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            let (b, _) = budget(Tier::Starter);
            b.set_open_orders(BTreeMap::from([("XDGUSD".to_string(), 59)]));
            b.check_open_order_slot("XDGUSD").unwrap();
            b.adjust_open_orders("XDGUSD", 1);
            assert!(matches!(
                b.check_open_order_slot("XDGUSD"),
                Err(VenueError::OrderLimit(_))
            ));
            b.check_open_order_slot("XBTUSD").unwrap();
            let snap = b.snapshot();
            let rest = snap.counters.iter().find(|c| c.name == "rest").unwrap();
            assert_eq!((rest.limit, rest.decay_per_second), (dec!(15), dec!(0.33)));
            let oo = snap
                .counters
                .iter()
                .find(|c| c.name == "open_orders:XDGUSD")
                .unwrap();
            assert_eq!((oo.level, oo.limit), (dec!(60), dec!(60)));
        });
    }
}
