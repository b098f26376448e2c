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

/// What a recording gives a replay.
#[derive(Debug)]
pub struct Replay {
    pub candles: Candles,
    pub fills: Vec<RecordedFill>,
    /// Funding rates engines were told, as settlement rows: the rate at its
    /// `next_funding_ms` (the last one told for each settlement stands).
    pub funding: Vec<herd_backtest::FundingRow>,
}

/// The recording's tickers of `symbol` as candles, its fills on it, and
/// the funding rates of it (or of its perpetual).
pub fn load(path: &Path, symbol: &str) -> anyhow::Result<Replay> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the recording {}", path.display()))?;
    let mut bars: Vec<Bar> = Vec::new();
    let mut fills = Vec::new();
    let mut funding: std::collections::BTreeMap<i64, herd_backtest::FundingRow> =
        std::collections::BTreeMap::new();
    let pair = symbol.strip_suffix("-PERP").unwrap_or(symbol);
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
            Record::Funding {
                symbol: s,
                rate,
                next_funding_ms,
                mark,
                ..
            } if s == symbol || s.strip_suffix("-PERP") == Some(pair) => {
                funding.insert(
                    next_funding_ms,
                    herd_backtest::FundingRow {
                        time_ms: next_funding_ms,
                        symbol: s,
                        rate,
                        mark: Some(mark),
                    },
                );
            }
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
    Ok(Replay {
        candles: Candles {
            bars,
            interval_ms,
            gaps: Vec::new(),
            layout: "recording".into(),
        },
        fills,
        funding: funding.into_values().collect(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn tickers_become_flat_candles_and_funding_becomes_settlement_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rec.jsonl");
        let lines = [
            r#"{"kind":"ticker","time_ms":1000,"symbol":"BTCUSDT-PERP","last":"40000","bid":"39999","ask":"40001"}"#,
            r#"{"kind":"ticker","time_ms":1000,"symbol":"BTCUSDT-PERP","last":"40010","bid":"40009","ask":"40011"}"#,
            r#"{"kind":"ticker","time_ms":999,"symbol":"BTCUSDT-PERP","last":"40020","bid":"40019","ask":"40021"}"#,
            r#"{"kind":"ticker","time_ms":1500,"symbol":"ETHUSDT","last":"2000","bid":"1999","ask":"2001"}"#,
            r#"{"kind":"funding","time_ms":1200,"symbol":"BTCUSDT-PERP","rate":"0.0001","next_funding_ms":28800000,"mark":"40000"}"#,
            r#"{"kind":"funding","time_ms":1300,"symbol":"BTCUSDT-PERP","rate":"0.0002","next_funding_ms":28800000,"mark":"40010"}"#,
            r#"{"kind":"ticker","time_ms":3000,"symbol":"BTCUSDT-PERP","last":"40030","bid":"40029","ask":"40031"}"#,
            r#"{"kind":"fill","time_ms":3000,"engine":"e0","client_order_id":"g-1","symbol":"BTCUSDT-PERP","side":"buy","price":"40030","volume":"0.01","fee":"0.2","fee_asset":"USDT"}"#,
        ];
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        let r = load(&path, "BTCUSDT-PERP").unwrap();
        let bars: Vec<(i64, String)> = r
            .candles
            .bars
            .iter()
            .map(|b| (b.open_time_ms, b.close.to_string()))
            .collect();
        // Same millisecond: the later stands; a millisecond behind counts
        // as the line before's time; other symbols are skipped.
        assert_eq!(bars, [(1000, "40020".into()), (3000, "40030".into())]);
        assert_eq!(r.candles.interval_ms, 2000);
        assert_eq!(r.fills.len(), 1);
        assert_eq!(r.funding.len(), 1);
        assert_eq!(r.funding[0].time_ms, 28_800_000);
        assert_eq!(
            r.funding[0].rate,
            Decimal::new(2, 4),
            "the last told stands"
        );

        std::fs::write(&path, "{\"kind\":\"ticker\",\"time_ms\":1}\n").unwrap();
        let err = load(&path, "BTCUSDT-PERP").unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("{}:1: missing field", path.display())),
            "{err}"
        );
    }
}
