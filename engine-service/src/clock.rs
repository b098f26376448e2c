//! The engine's one reading of the wall clock. Strategies never read a
//! clock: the runtime reads it here and hands the time in.

use std::time::{SystemTime, UNIX_EPOCH};

/// Unix time in ms.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Waits until the wall clock enters a new second and returns that instant
/// in ms: a run started this way has a run id later than any run started
/// before it (see [`herd_strategies::strategy::IdGen`]). Costs at most one
/// second at start-up.
pub async fn fresh_run_start_ms() -> i64 {
    let now = now_ms();
    let wait = 1000 - now.rem_euclid(1000);
    tokio::time::sleep(std::time::Duration::from_millis(
        u64::try_from(wait).unwrap_or(1000),
    ))
    .await;
    now_ms().max(now + wait)
}
