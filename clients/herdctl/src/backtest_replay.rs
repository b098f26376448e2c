//! `herdctl backtest --recording FILE`: a gateway recording (`[record]`,
//! `herd_gateway::recorder`) replayed through the strategies. Every ticker
//! of the engine's symbol becomes one flat candle (open = high = low =
//! close = its last price) at its time, so the strategies see the prices
//! the live engine saw, in order; the fills the gateway booked are kept to
//! compare with the replay's.

use std::path::Path;

use anyhow::{Context, bail};
use herd_backtest::{Bar, Candles};
use herd_gateway::recorder::Record;
use rust_decimal::Decimal;

/// A fill the gateway recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedFill {
    pub engine: String,
    pub client_order_id: String,
    pub side: herd_venue::Side,
    pub price: Decimal,
    pub volume: Decimal,
}

/// The recording's tickers of `symbol` as candles, and its fills on it.
pub fn load(path: &Path, symbol: &str) -> anyhow::Result<(Candles, Vec<RecordedFill>)> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the recording {}", path.display()))?;
    let mut bars: Vec<Bar> = Vec::new();
    let mut fills = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let record: Record = serde_json::from_str(line)
            .map_err(|e| anyhow::anyhow!("{}:{}: {e}", path.display(), i + 1))?;
        match record {
            Record::Ticker {
                time_ms,
                symbol: s,
                last,
                ..
            } if s == symbol && last > Decimal::ZERO => {
                // Lines are in the order the gateway saw them; a time a
                // millisecond behind the line before (two writers racing
                // for the file) counts as that line's time.
                let time_ms = bars.last().map_or(time_ms, |b| time_ms.max(b.open_time_ms));
                let bar = Bar {
                    open_time_ms: time_ms,
                    open: last,
                    high: last,
                    low: last,
                    close: last,
                    volume: Decimal::ZERO,
                };
                match bars.last_mut() {
                    // Two tickers in one millisecond: the later one stands.
                    Some(b) if b.open_time_ms == time_ms => *b = bar,
                    _ => bars.push(bar),
                }
            }
            Record::Fill {
                engine,
                client_order_id,
                symbol: s,
                side,
                price,
                volume,
                ..
            } if s == symbol => fills.push(RecordedFill {
                engine,
                client_order_id,
                side,
                price,
                volume,
            }),
            _ => {}
        }
    }
    if bars.is_empty() {
        bail!("{}: no tickers of {symbol} recorded", path.display());
    }
    // The smallest step between two tickers, so each candle's path ends
    // before the next ticker's time.
    let interval_ms = bars
        .windows(2)
        .map(|w| w[1].open_time_ms - w[0].open_time_ms)
        .min()
        .unwrap_or(60_000)
        .max(1);
    Ok((
        Candles {
            bars,
            interval_ms,
            gaps: Vec::new(),
            layout: "recording".into(),
        },
        fills,
    ))
}
