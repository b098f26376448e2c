//! Weighted fair sharing of venue calls between engines.
//!
//! A key's rate budget is one scarce resource. Every venue call an engine
//! causes first takes a slot here; at most `slots` calls are in flight at
//! once, so when the venue is the bottleneck the queue here decides who goes
//! next. The choice is weighted fair queueing on virtual time: each engine's
//! clock advances by `1 / weight` per call it is granted, and the waiting
//! engine with the smallest clock goes next, so under contention engine `i`
//! gets `weight_i / sum(weights of busy engines)` of the calls. It is
//! work-conserving: an engine that was idle does not bank credit (its clock
//! is brought up to the busy engines' minimum when it starts waiting again),
//! and a lone engine gets every slot. Inside one engine, cancels go before
//! new orders, which go before queries. The poller is a participant like any
//! engine, so its weight is its reserved share. Each engine's queue is
//! bounded: a flood gets RESOURCE_EXHAUSTED instead of starving the others.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::oneshot;

/// What kind of call waits, most urgent first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    Cancel = 0,
    Place = 1,
    Query = 2,
}

/// The engine's queue is full.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{engine} has {depth} calls waiting for the venue (limit {limit}); retry after about {retry_after_ms} ms"
)]
pub struct QueueFull {
    pub engine: String,
    pub depth: usize,
    pub limit: usize,
    pub retry_after_ms: u64,
}

#[derive(Debug, Default)]
struct Participant {
    weight: f64,
    vtime: f64,
    queues: BTreeMap<Priority, VecDeque<(u64, oneshot::Sender<()>)>>,
    granted: u64,
}

impl Participant {
    fn waiting(&self) -> usize {
        self.queues.values().map(VecDeque::len).sum()
    }
}

#[derive(Debug)]
struct State {
    slots: usize,
    in_flight: usize,
    queue_limit: usize,
    participants: HashMap<String, Participant>,
    next_ticket: u64,
    /// The virtual time of the last grant: where a newly busy engine starts.
    virtual_now: f64,
}

/// The fair queue. Cheap to clone.
#[derive(Debug, Clone)]
pub struct FairQueue {
    state: Arc<Mutex<State>>,
}

/// A granted slot; dropping it frees the slot for the next caller.
#[derive(Debug)]
pub struct Permit {
    queue: FairQueue,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut st = self.queue.lock();
        st.in_flight = st.in_flight.saturating_sub(1);
        grant(&mut st);
    }
}

/// Hands free slots to the next waiters, smallest virtual time first.
fn grant(st: &mut State) {
    while st.in_flight < st.slots {
        let next = st
            .participants
            .iter()
            .filter(|(_, p)| p.waiting() > 0)
            .min_by(|(a_id, a), (b_id, b)| a.vtime.total_cmp(&b.vtime).then_with(|| a_id.cmp(b_id)))
            .map(|(id, _)| id.clone());
        let Some(id) = next else { return };
        let virtual_now = &mut st.virtual_now;
        let Some(p) = st.participants.get_mut(&id) else {
            return;
        };
        let Some(tx) = p
            .queues
            .values_mut()
            .find(|q| !q.is_empty())
            .and_then(VecDeque::pop_front)
            .map(|(_, tx)| tx)
        else {
            return;
        };
        *virtual_now = p.vtime;
        p.vtime += 1.0 / p.weight;
        // A waiter that gave up (its future was dropped) frees nothing.
        if tx.send(()).is_ok() {
            p.granted += 1;
            st.in_flight += 1;
        }
    }
}

impl FairQueue {
    /// `weights`: engine id -> weight (>= 1). Unknown callers get weight 1.
    pub fn new(slots: usize, queue_limit: usize, weights: &[(String, u32)]) -> FairQueue {
        let participants = weights
            .iter()
            .map(|(id, w)| {
                (
                    id.clone(),
                    Participant {
                        weight: f64::from((*w).max(1)),
                        ..Participant::default()
                    },
                )
            })
            .collect();
        FairQueue {
            state: Arc::new(Mutex::new(State {
                slots: slots.max(1),
                in_flight: 0,
                queue_limit: queue_limit.max(1),
                participants,
                next_ticket: 0,
                virtual_now: 0.0,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for a slot for `engine`'s call of `priority`.
    pub async fn acquire(&self, engine: &str, priority: Priority) -> Result<Permit, QueueFull> {
        let rx = {
            let mut guard = self.lock();
            let st = &mut *guard;
            let limit = st.queue_limit;
            let virtual_now = st.virtual_now;
            let ticket = st.next_ticket;
            st.next_ticket += 1;
            let p = st
                .participants
                .entry(engine.to_string())
                .or_insert_with(|| Participant {
                    weight: 1.0,
                    ..Participant::default()
                });
            if st.in_flight < st.slots {
                // A free slot means nobody waits (`grant` hands free slots
                // out before the lock is released): take it at once, as
                // `grant` would, without a hand-off through a channel.
                p.vtime = p.vtime.max(virtual_now);
                st.virtual_now = p.vtime;
                p.vtime += 1.0 / p.weight;
                p.granted += 1;
                st.in_flight += 1;
                return Ok(Permit {
                    queue: self.clone(),
                });
            }
            let depth = p.waiting();
            if depth >= limit {
                return Err(QueueFull {
                    engine: engine.to_string(),
                    depth,
                    limit,
                    retry_after_ms: 1000,
                });
            }
            if depth == 0 {
                // No banking of credit while idle.
                p.vtime = p.vtime.max(virtual_now);
            }
            let (tx, rx) = oneshot::channel();
            p.queues
                .entry(priority)
                .or_default()
                .push_back((ticket, tx));
            grant(st);
            rx
        };
        // The sender is only dropped after a grant or with the queue itself.
        let _ = rx.await;
        Ok(Permit {
            queue: self.clone(),
        })
    }

    /// A configuration reload: new slots, per-engine queue limit and
    /// weights, applied to the next grant. Queued calls keep their place;
    /// virtual clocks stay (a new weight changes how fast they advance from
    /// now on). A lower queue limit refuses new calls only: none waiting is
    /// dropped.
    pub fn reconfigure(&self, slots: usize, queue_limit: usize, weights: &[(String, u32)]) {
        let mut st = self.lock();
        st.slots = slots.max(1);
        st.queue_limit = queue_limit.max(1);
        for (id, w) in weights {
            st.participants.entry(id.clone()).or_default().weight = f64::from((*w).max(1));
        }
        grant(&mut st);
    }

    /// (slots, queue limit, weight per participant sorted by id): what the
    /// queue runs with now.
    pub fn settings(&self) -> (usize, usize, Vec<(String, f64)>) {
        let st = self.lock();
        let mut w: Vec<(String, f64)> = st
            .participants
            .iter()
            .map(|(k, p)| (k.clone(), p.weight))
            .collect();
        w.sort_by(|a, b| a.0.cmp(&b.0));
        (st.slots, st.queue_limit, w)
    }

    /// Calls granted per participant so far.
    pub fn granted(&self) -> Vec<(String, u64)> {
        let st = self.lock();
        let mut v: Vec<_> = st
            .participants
            .iter()
            .map(|(k, p)| (k.clone(), p.granted))
            .collect();
        v.sort();
        v
    }

    /// Calls granted to one participant so far.
    pub fn granted_to(&self, engine: &str) -> u64 {
        self.lock()
            .participants
            .get(engine)
            .map_or(0, |p| p.granted)
    }

    /// Calls waiting per participant and priority.
    pub fn waiting(&self) -> (usize, usize, usize) {
        let st = self.lock();
        let mut w = (0, 0, 0);
        for p in st.participants.values() {
            for (prio, q) in &p.queues {
                match prio {
                    Priority::Cancel => w.0 += q.len(),
                    Priority::Place => w.1 += q.len(),
                    Priority::Query => w.2 += q.len(),
                }
            }
        }
        w
    }

    /// Per participant (sorted by id): calls waiting and slots granted so far.
    pub fn participants(&self) -> Vec<(String, usize, u64)> {
        let st = self.lock();
        let mut v: Vec<_> = st
            .participants
            .iter()
            .map(|(k, p)| (k.clone(), p.waiting(), p.granted))
            .collect();
        v.sort();
        v
    }

    /// Calls waiting for one engine.
    pub fn depth(&self, engine: &str) -> usize {
        self.lock()
            .participants
            .get(engine)
            .map_or(0, Participant::waiting)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Runs `per_engine` callers for each engine against one slot whose call
    /// takes 1 ms of paused time, until `total` calls were granted.
    async fn contend(weights: &[(&str, u32)], total: u64) -> Vec<(String, u64)> {
        let q = FairQueue::new(
            1,
            10_000,
            &weights
                .iter()
                .map(|(id, w)| (id.to_string(), *w))
                .collect::<Vec<_>>(),
        );
        let mut tasks = Vec::new();
        for (id, _) in weights {
            for _ in 0..20 {
                let q = q.clone();
                let id = id.to_string();
                tasks.push(tokio::spawn(async move {
                    loop {
                        let _permit = q.acquire(&id, Priority::Query).await.unwrap();
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }));
            }
        }
        loop {
            let sum: u64 = q.granted().iter().map(|(_, n)| n).sum();
            if sum >= total {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        for t in tasks {
            t.abort();
        }
        q.granted()
    }

    #[tokio::test(start_paused = true)]
    async fn shares_follow_weights_under_contention() {
        let got = contend(&[("a", 1), ("b", 2), ("c", 1)], 4000).await;
        let total: u64 = got.iter().map(|(_, n)| n).sum();
        for (id, n) in &got {
            let want = match id.as_str() {
                "b" => 0.5,
                _ => 0.25,
            };
            let share = *n as f64 / total as f64;
            assert!(
                (share - want).abs() < 0.01,
                "{id}: {share} vs {want} ({got:?})"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_lone_engine_gets_every_slot_and_an_idle_one_banks_nothing() {
        let q = FairQueue::new(1, 100, &[("a".into(), 1), ("b".into(), 1)]);
        // a runs alone for 100 calls...
        for _ in 0..100 {
            let _p = q.acquire("a", Priority::Query).await.unwrap();
        }
        // ...then b wakes up: it does not get 100 calls in a row.
        let first = q.acquire("b", Priority::Query).await.unwrap();
        let q2 = q.clone();
        let a = tokio::spawn(async move { q2.acquire("a", Priority::Query).await.map(|_| ()) });
        let q3 = q.clone();
        let b = tokio::spawn(async move { q3.acquire("b", Priority::Query).await.map(|_| ()) });
        tokio::task::yield_now().await;
        drop(first);
        a.await.unwrap().unwrap();
        b.await.unwrap().unwrap();
        let granted = q.granted();
        assert_eq!(granted, vec![("a".into(), 101), ("b".into(), 2)]);
    }

    #[tokio::test(start_paused = true)]
    async fn cancels_before_places_before_queries_within_an_engine() {
        let q = FairQueue::new(1, 100, &[("a".into(), 1)]);
        let hold = q.acquire("a", Priority::Query).await.unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for prio in [Priority::Query, Priority::Place, Priority::Cancel] {
            let q = q.clone();
            let order = order.clone();
            tasks.push(tokio::spawn(async move {
                let _p = q.acquire("a", prio).await.unwrap();
                order.lock().unwrap().push(prio);
            }));
            tokio::task::yield_now().await;
        }
        assert_eq!(q.waiting(), (1, 1, 1));
        drop(hold);
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(
            *order.lock().unwrap(),
            vec![Priority::Cancel, Priority::Place, Priority::Query]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_flooding_engine_gets_resource_exhausted_and_others_still_pass() {
        let q = FairQueue::new(1, 3, &[("flood".into(), 1), ("calm".into(), 1)]);
        let hold = q.acquire("other", Priority::Query).await.unwrap();
        let mut waiting = Vec::new();
        for _ in 0..3 {
            let q = q.clone();
            waiting.push(tokio::spawn(async move {
                q.acquire("flood", Priority::Place).await.map(|_| ())
            }));
        }
        tokio::task::yield_now().await;
        let err = q.acquire("flood", Priority::Place).await.unwrap_err();
        assert_eq!((err.depth, err.limit), (3, 3));
        let q2 = q.clone();
        let calm =
            tokio::spawn(async move { q2.acquire("calm", Priority::Place).await.map(|_| ()) });
        tokio::task::yield_now().await;
        drop(hold);
        calm.await.unwrap().unwrap();
        for w in waiting {
            w.await.unwrap().unwrap();
        }
    }

    /// A reload's new weights change the shares of the calls granted from
    /// then on, with callers waiting all along (nothing dropped).
    #[tokio::test(start_paused = true)]
    async fn reconfigure_changes_shares_of_later_grants() {
        let q = FairQueue::new(1, 10_000, &[("a".into(), 1), ("b".into(), 1)]);
        let mut tasks = Vec::new();
        for id in ["a", "b"] {
            for _ in 0..20 {
                let q = q.clone();
                tasks.push(tokio::spawn(async move {
                    loop {
                        let _permit = q.acquire(id, Priority::Query).await.unwrap();
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }));
            }
        }
        let wait_for = |n: u64| {
            let q = q.clone();
            async move {
                while q.granted().iter().map(|(_, g)| g).sum::<u64>() < n {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                (q.granted_to("a"), q.granted_to("b"))
            }
        };
        let (a0, b0) = wait_for(1000).await;
        q.reconfigure(1, 64, &[("a".into(), 3), ("b".into(), 1)]);
        let (slots, limit, weights) = q.settings();
        assert_eq!((slots, limit), (1, 64));
        assert_eq!(
            weights,
            vec![("a".to_string(), 3.0), ("b".to_string(), 1.0)]
        );
        let (a1, b1) = wait_for(a0 + b0 + 4000).await;
        for t in tasks {
            t.abort();
        }
        let share = (a1 - a0) as f64 / ((a1 - a0) + (b1 - b0)) as f64;
        assert!(
            (share - 0.75).abs() < 0.03,
            "a's share after the reload: {share}"
        );
    }
}
