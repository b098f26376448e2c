//! The dead man's switch refresher: while any engine has its order-event
//! stream connected, keep the venue's switch armed (Kraken:
//! CancelAllOrdersAfter with a 60 s timeout, refreshed every 15-30 s). When
//! the last engine disconnects the gateway stops refreshing, so the venue
//! cancels every open order of the key once the timeout runs out: orders are
//! never left working with nobody watching them, even if the gateway itself
//! dies.

use std::sync::Arc;
use std::time::Duration;

use crate::config::DeadMansSwitch;
use crate::service::Core;

/// How often the loop looks at the engines' streams.
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// Wait after a failed refresh before trying again.
const RETRY_AFTER: Duration = Duration::from_secs(5);

/// What the refresher does next, given the time since its last arm.
fn due(
    connected: bool,
    since_arm: Option<Duration>,
    since_fail: Option<Duration>,
    refresh: Duration,
) -> bool {
    connected
        && since_fail.is_none_or(|f| f >= RETRY_AFTER)
        && since_arm.is_none_or(|a| a >= refresh)
}

/// Runs until the task is dropped.
pub async fn run(core: Arc<Core>, cfg: DeadMansSwitch) {
    let refresh = Duration::from_secs(u64::from(cfg.refresh_s));
    let mut last_arm: Option<tokio::time::Instant> = None;
    let mut last_fail: Option<tokio::time::Instant> = None;
    let mut tick = tokio::time::interval(CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let connected = core.registry.any_stream_connected();
        if !connected && last_arm.take().is_some() {
            tracing::warn!(
                timeout_s = cfg.timeout_s,
                "no engine connected: dead man's switch left to expire"
            );
        }
        if !due(
            connected,
            last_arm.map(|t| t.elapsed()),
            last_fail.map(|t| t.elapsed()),
            refresh,
        ) {
            continue;
        }
        match core.venue.arm_dead_mans_switch(cfg.timeout_s).await {
            Ok(true) => {
                if last_arm.is_none() {
                    tracing::info!(
                        timeout_s = cfg.timeout_s,
                        refresh_s = cfg.refresh_s,
                        "dead man's switch armed"
                    );
                }
                last_arm = Some(tokio::time::Instant::now());
                last_fail = None;
            }
            Ok(false) => {
                tracing::info!(venue = core.venue.name(), "venue has no dead man's switch");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "dead man's switch refresh failed");
                crate::events::dms_refresh_failed(&core.events, &e.to_string());
                last_fail = Some(tokio::time::Instant::now());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_table() {
        let s = Duration::from_secs;
        let r = s(20);
        let cases = [
            (false, None, None, false),
            (true, None, None, true),
            (true, Some(s(5)), None, false),
            (true, Some(s(20)), None, true),
            (true, None, Some(s(1)), false),
            (true, None, Some(s(5)), true),
            (false, Some(s(30)), None, false),
        ];
        for (connected, arm, fail, want) in cases {
            assert_eq!(
                due(connected, arm, fail, r),
                want,
                "{connected} {arm:?} {fail:?}"
            );
        }
    }
}
