//! The order poller: keeps every tracked order of every engine current as
//! cheaply as the venue allows, and turns what changed into events.
//!
//! One `open_orders` call sees every open order of the key; only orders that
//! left the open list (or were never seen there) are queried, in batches of
//! the venue's maximum. A pending order (submit outcome unknown) that the
//! venue still does not know after the pending timeout is reported rejected:
//! it was never placed. A submit still in flight (queued for budget or
//! awaiting its answer) is not looked for at all: that would only spend
//! budget on a question its own answer is about to settle.
//!
//! Foreign orders (ones the venue reports that Herd cannot model, placed by
//! hand or another tool) count toward a pair's open orders, as they do at
//! the venue, and are recorded in the registry's foreign set; they never
//! stand in for an engine's order, whatever client id they carry.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use herd_venue::{OrderRef, OrderState, OrderStatus, VenueError};

use crate::fair::Priority;
use crate::service::Core;

/// The poller's name in the fair queue; its weight is its reserved share.
pub const POLLER: &str = "poller";

/// How often the open-order count is refreshed while no order is tracked.
const IDLE_COUNT_REFRESH_MS: i64 = 10_000;

/// What one poll cycle did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PollReport {
    pub tracked: usize,
    pub venue_calls: usize,
    pub events: usize,
}

/// One poll cycle.
pub async fn poll_once(core: &Core, pending_timeout_ms: i64) -> Result<PollReport, VenueError> {
    let tracked = core.registry.tracked();
    let mut report = PollReport {
        tracked: tracked.len(),
        ..PollReport::default()
    };
    let counts_age =
        core.clock.now_ms() - core.open_counts.lock().unwrap_or_else(|p| p.into_inner()).1;
    // With nothing tracked, look only now and then (the per-pair open-order
    // count still matters to engines' capacity checks).
    if tracked.is_empty() && counts_age < IDLE_COUNT_REFRESH_MS {
        return Ok(report);
    }
    let slot = core.fair.acquire(POLLER, Priority::Query).await;
    let open = core.venue.open_orders().await?;
    drop(slot);
    report.venue_calls += 1;
    let now = core.clock.now_ms();
    {
        let mut counts: HashMap<String, u32> = HashMap::new();
        for s in &open {
            *counts.entry(s.symbol.clone()).or_default() += 1;
        }
        *core.open_counts.lock().unwrap_or_else(|p| p.into_inner()) = (counts, now);
    }
    core.registry.set_foreign(&open);
    let mut seen: HashSet<String> = HashSet::new();
    for s in open.iter().filter(|s| !s.is_foreign()) {
        report.events += core.registry.apply(s, now).len();
        seen.insert(s.client_order_id.clone());
    }
    let in_flight = core
        .in_flight
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let missing: Vec<(OrderRef, OrderStatus, i64)> = tracked
        .into_iter()
        .filter(|(r, _, _)| !seen.contains(&r.client_order_id))
        .filter(|(r, status, _)| {
            *status != OrderStatus::Pending || !in_flight.contains(&r.client_order_id)
        })
        .collect();
    let mut found: HashSet<String> = HashSet::new();
    let batch = core.venue.max_query_batch().max(1);
    let refs: Vec<OrderRef> = missing.iter().map(|(r, _, _)| r.clone()).collect();
    for chunk in refs.chunks(batch) {
        let slot = core.fair.acquire(POLLER, Priority::Query).await;
        let states = core.venue.query_orders(chunk).await?;
        drop(slot);
        report.venue_calls += 1;
        let now = core.clock.now_ms();
        for s in states.iter().filter(|s| !s.is_foreign()) {
            report.events += core.registry.apply(s, now).len();
            found.insert(s.client_order_id.clone());
        }
    }
    let now = core.clock.now_ms();
    for (r, status, opened_at) in missing {
        if status == OrderStatus::Pending
            && !found.contains(&r.client_order_id)
            && !core.is_in_flight(&r.client_order_id)
            && now - opened_at > pending_timeout_ms
            && let Some(state) = rejected_state(core, &r, now)
        {
            tracing::warn!(client_order_id = %r.client_order_id, "pending order unknown to the venue; reporting it rejected");
            report.events += core.registry.apply(&state, now).len();
        }
    }
    Ok(report)
}

fn rejected_state(core: &Core, r: &OrderRef, now: i64) -> Option<OrderState> {
    let (engine, client_id) = core.registry.owner(&r.client_order_id)?;
    let mut state = core.registry.get(&engine, &client_id)?;
    state.status = OrderStatus::Rejected;
    state.closed_at_ms = Some(now);
    state.reason = Some("the venue never acknowledged the order".into());
    Some(state)
}

/// Polls every `interval`, or at once when woken, until the task is dropped.
pub async fn run(core: Arc<Core>, interval: Duration, pending_timeout_ms: i64) {
    let mut consecutive_errors = 0u32;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = core.poll_now.notified() => {}
        }
        let started = std::time::Instant::now();
        let polled = poll_once(&core, pending_timeout_ms).await;
        // Idle cycles that made no venue call are not polls worth timing.
        if polled.as_ref().map_or(true, |r| r.venue_calls > 0) {
            core.metrics.record_poll(started, polled.is_ok());
        }
        match polled {
            Ok(r) => {
                consecutive_errors = 0;
                if r.events > 0 {
                    tracing::debug!(
                        tracked = r.tracked,
                        calls = r.venue_calls,
                        events = r.events,
                        "poll"
                    );
                }
            }
            Err(e) => {
                consecutive_errors += 1;
                tracing::warn!(error = %e, consecutive_errors, "order poll failed");
            }
        }
    }
}
