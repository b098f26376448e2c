//! Keeps the engine's regime reading current: fetches 1 m and 15 m candles
//! from the gateway, updates the two HMM detectors off the event loop (a
//! retrain takes tens of milliseconds and must never stall order handling),
//! and publishes the consensus for the gates and the status. With
//! `regime_source = "fixed"` it publishes `fixed_regime` instead (demos and
//! tests on the paper venue); "UNKNOWN" there is a detector that is not
//! ready, which gates read as not RANGING.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use herd_proto::gateway as pb;
use herd_regime::{Candle, TimeframeConfig, TimeframeDetector, TimeframeReading, consensus};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

use crate::config::RegimeSource;
use crate::execution::{Shared, now_ms};
use herd_strategies::strategy::RegimeView;

fn to_f64(s: &str) -> f64 {
    Decimal::from_str(s)
        .ok()
        .and_then(|d| d.to_f64())
        .unwrap_or(0.0)
}

/// Closed candles only: the venue's last candle is still forming.
fn closed_candles(candles: Vec<pb::Candle>, interval_ms: i64, now: i64) -> Vec<Candle> {
    candles
        .into_iter()
        .filter(|c| c.open_time_ms + interval_ms <= now)
        .map(|c| Candle {
            open_time_ms: c.open_time_ms,
            open: to_f64(&c.open),
            high: to_f64(&c.high),
            low: to_f64(&c.low),
            close: to_f64(&c.close),
            volume: to_f64(&c.volume),
        })
        .collect()
}

async fn fetch(shared: &Shared, minutes: u32, count: usize, now: i64) -> Vec<Candle> {
    let interval_ms = i64::from(minutes) * 60_000;
    let since = now - interval_ms * i64::try_from(count + 1).unwrap_or(i64::MAX / interval_ms / 2);
    match shared
        .gateway
        .clone()
        .get_candles(pb::GetCandlesRequest {
            symbol: shared.cfg.symbol.clone(),
            interval_minutes: minutes,
            since_ms: since,
        })
        .await
    {
        Ok(r) => closed_candles(r.into_inner().candles, interval_ms, now),
        Err(s) => {
            tracing::debug!(minutes, error = %s.message(), "candles unavailable");
            Vec::new()
        }
    }
}

fn reading_or_not_ready(
    r: Result<TimeframeReading, herd_regime::RegimeError>,
    name: &str,
) -> TimeframeReading {
    r.unwrap_or_else(|e| {
        tracing::warn!(timeframe = name, error = %e, "regime update failed");
        TimeframeReading::not_ready(name)
    })
}

/// The reading a fixed source publishes.
pub fn fixed_view(regime: &str) -> RegimeView {
    let ready = matches!(regime, "RANGING" | "BULLISH" | "BEARISH");
    if !ready {
        return RegimeView::not_ready();
    }
    RegimeView {
        regime: regime.to_string(),
        ready,
        confidence: 1.0,
        bias: 0.0,
    }
}

/// Runs forever, updating the shared regime every `regime_refresh_ms`.
pub async fn run(shared: Arc<Shared>) {
    if shared.cfg.regime_source == RegimeSource::Fixed {
        let view = fixed_view(&shared.cfg.fixed_regime);
        tracing::info!(regime = %view.regime, ready = view.ready, "regime source is fixed");
        let mut st = shared.state();
        st.regime_detail = serde_json::json!({
            "source": "fixed",
            "agreement": if view.ready { "fixed" } else { "not_ready" },
            "regime": view.regime,
        });
        st.regime = view;
        return;
    }
    let (Ok(mut d1), Ok(mut d15)) = (
        TimeframeDetector::new(TimeframeConfig::one_minute()),
        TimeframeDetector::new(TimeframeConfig::fifteen_minutes()),
    ) else {
        tracing::error!("regime detector config is invalid; regime stays not ready");
        return;
    };
    let every = Duration::from_millis(shared.cfg.regime_refresh_ms);
    loop {
        let now = now_ms();
        let c1 = fetch(&shared, 1, d1.config().train_candles, now).await;
        let c15 = fetch(&shared, 15, d15.config().train_candles, now).await;
        let joined = tokio::task::spawn_blocking(move || {
            let r1 = d1.update(&c1, now);
            let r15 = d15.update(&c15, now);
            (d1, d15, r1, r15)
        })
        .await;
        let Ok((n1, n15, r1, r15)) = joined else {
            tracing::error!("regime task panicked; regime stays not ready");
            return;
        };
        d1 = n1;
        d15 = n15;
        let reading = consensus(
            &reading_or_not_ready(r1, "1m"),
            &reading_or_not_ready(r15, "15m"),
        );
        let before = {
            let mut st = shared.state();
            let before = (st.regime.ready, st.regime.regime.clone());
            st.regime = RegimeView {
                regime: reading.regime.as_str().to_string(),
                ready: reading.ready,
                confidence: reading.confidence,
                bias: reading.bias,
            };
            st.regime_detail = serde_json::to_value(&reading).unwrap_or(serde_json::Value::Null);
            before
        };
        // A change between ready readings (not the first reading).
        if reading.ready && before.0 && before.1 != reading.regime.as_str() {
            crate::events::record_with(
                &shared.store,
                now,
                herd_proto::events::kind::REGIME_CHANGE,
                herd_proto::gateway::Severity::Notice,
                format!("regime {} -> {}", before.1, reading.regime.as_str()),
                |e| {
                    use herd_proto::events::EventExt;
                    e.with_instrument(&shared.cfg.symbol)
                        .text("before", before.1.clone())
                        .text("after", reading.regime.as_str())
                        .decimal("confidence", format!("{:.4}", reading.confidence))
                },
            )
            .await;
        }
        tokio::time::sleep(every).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_unknown_is_not_ready_and_not_ranging() {
        assert!(fixed_view("RANGING").is_ranging());
        assert!(!fixed_view("BULLISH").is_ranging());
        assert!(fixed_view("BULLISH").ready);
        let unknown = fixed_view("UNKNOWN");
        assert!(!unknown.ready && !unknown.is_ranging());
    }
}
