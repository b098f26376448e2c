//! Keeps the engine's regime reading current: fetches 1 m and 15 m candles
//! from the gateway, updates the two HMM detectors off the event loop (a
//! retrain takes tens of milliseconds and must never stall order handling),
//! and publishes the consensus for the gates and the status.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use herd_proto::gateway as pb;
use herd_regime::{Candle, TimeframeConfig, TimeframeDetector, TimeframeReading, consensus};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

use crate::execution::{Shared, now_ms};
use crate::strategy::RegimeView;

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

/// Runs forever, updating the shared regime every `regime_refresh_ms`.
pub async fn run(shared: Arc<Shared>) {
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
        {
            let mut st = shared.state();
            st.regime = RegimeView {
                regime: reading.regime.as_str().to_string(),
                ready: reading.ready,
                confidence: reading.confidence,
                bias: reading.bias,
            };
            st.regime_detail = serde_json::to_value(&reading).unwrap_or(serde_json::Value::Null);
        }
        tokio::time::sleep(every).await;
    }
}
