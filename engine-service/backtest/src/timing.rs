//! Where the driver's time goes, for the year bench: the run's wall time
//! split between the strategies' own code, the paper core, the simulated
//! gateway around it and the driver's bookkeeping.
//!
//! Only with the `timing` feature (`cargo bench -p herd-backtest --bench
//! backtest_year --features timing`); without it [`enter`] is an empty
//! function on a zero-sized guard and the driver reads no clock. With it,
//! the driver marks each region it enters (a strategy call, a paper core
//! call, the poll and the update routing) and every switch of region charges
//! the time since the last switch to the region being left: the parts add
//! up to the time between [`start`] and [`stop`], one `Instant::now` per
//! switch. Regions nest (a poll reads the paper core), the inner one counts.

/// The parts of a run's time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The driver's own bookkeeping: equity points, the outcome's records
    /// (orders, fills, journal tally), skipping, market views, the loop.
    Driver = 0,
    /// Calls into the strategies (ticks, order updates, wakes, ownership,
    /// restore, status).
    Strategies = 1,
    /// Calls into the paper matching core (place, cancel, trade-through,
    /// order and balance reads, funding).
    PaperCore = 2,
    /// The simulated gateway around the core: the poll's diff of order
    /// states into updates, the routing of updates to their owner.
    Gateway = 3,
}

/// Time per part, in nanoseconds, and the switches counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Split {
    pub nanos: [u64; 4],
    pub switches: u64,
}

impl Split {
    pub fn of(&self, part: Part) -> u64 {
        self.nanos.get(part as usize).copied().unwrap_or(0)
    }

    pub fn total(&self) -> u64 {
        self.nanos.iter().sum()
    }
}

#[cfg(feature = "timing")]
mod imp {
    use super::{Part, Split};
    use std::cell::RefCell;
    use std::time::Instant;

    struct State {
        active: bool,
        current: Part,
        since: Instant,
        split: Split,
    }

    thread_local! {
        static STATE: RefCell<State> = RefCell::new(State {
            active: false,
            current: Part::Driver,
            since: Instant::now(),
            split: Split::default(),
        });
    }

    /// Charges the time since the last switch to the current part and
    /// makes `to` current; the part left.
    fn switch(to: Part) -> Option<Part> {
        STATE.with(|s| {
            let mut s = s.borrow_mut();
            if !s.active {
                return None;
            }
            let now = Instant::now();
            let ns = u64::try_from(now.duration_since(s.since).as_nanos()).unwrap_or(u64::MAX);
            let i = s.current as usize;
            if let Some(n) = s.split.nanos.get_mut(i) {
                *n += ns;
            }
            s.split.switches += 1;
            s.since = now;
            let left = s.current;
            s.current = to;
            Some(left)
        })
    }

    /// Back to the part that was current when the region was entered.
    pub struct Guard(Option<Part>);

    impl Drop for Guard {
        fn drop(&mut self) {
            if let Some(p) = self.0 {
                switch(p);
            }
        }
    }

    pub fn enter(part: Part) -> Guard {
        Guard(switch(part))
    }

    pub fn start() {
        STATE.with(|s| {
            let mut s = s.borrow_mut();
            s.active = true;
            s.current = Part::Driver;
            s.since = Instant::now();
            s.split = Split::default();
        });
    }

    pub fn stop() -> Split {
        switch(Part::Driver);
        STATE.with(|s| {
            let mut s = s.borrow_mut();
            s.active = false;
            s.split
        })
    }
}

#[cfg(not(feature = "timing"))]
mod imp {
    use super::{Part, Split};

    /// Nothing to do without the feature.
    pub struct Guard;

    #[inline(always)]
    pub fn enter(_part: Part) -> Guard {
        Guard
    }

    pub fn start() {}

    pub fn stop() -> Split {
        Split::default()
    }
}

pub use imp::Guard;

/// Marks a region of `part` until the guard drops.
#[inline(always)]
pub fn enter(part: Part) -> Guard {
    imp::enter(part)
}

/// Starts counting on this thread (from zero).
pub fn start() {
    imp::start();
}

/// Stops counting and returns the split since [`start`] (all zero without
/// the feature).
pub fn stop() -> Split {
    imp::stop()
}

/// Whether the crate was built with the `timing` feature.
pub const ENABLED: bool = cfg!(feature = "timing");
