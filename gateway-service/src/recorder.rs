//! `[record] path = ...`: what the gateway saw, appended to a file as JSON
//! lines, for `herdctl backtest --recording FILE` to replay (docs/backtest.md).
//!
//! One line per record, written whole with one `write` on a file opened for
//! appending (nothing is rewritten; a crash loses at most the line being
//! written): tickers as the venue answered them or SetPaperPrice set them,
//! candles the first time each closed candle is seen, funding rates as
//! engines were told them, and every fill the fills ledger booked (engine,
//! client order id, side, price, volume, fee).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use herd_venue::{Candle, Side, Ticker};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// The `[record]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordConfig {
    /// The file the records are appended to (created if missing).
    pub path: PathBuf,
}

/// One line of a recording.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Record {
    Ticker {
        time_ms: i64,
        symbol: String,
        last: Decimal,
        bid: Decimal,
        ask: Decimal,
    },
    Candle {
        symbol: String,
        interval_minutes: u32,
        open_time_ms: i64,
        open: Decimal,
        high: Decimal,
        low: Decimal,
        close: Decimal,
        volume: Decimal,
    },
    /// A funding rate as an engine was told it: `rate` is the one the
    /// venue will settle at `next_funding_ms`.
    Funding {
        time_ms: i64,
        symbol: String,
        rate: Decimal,
        next_funding_ms: i64,
        mark: Decimal,
    },
    Fill {
        time_ms: i64,
        engine: String,
        client_order_id: String,
        symbol: String,
        side: Side,
        price: Decimal,
        volume: Decimal,
        fee: Decimal,
        fee_asset: String,
    },
}

/// The open recording.
#[derive(Debug)]
pub struct Recorder {
    path: PathBuf,
    file: Mutex<std::fs::File>,
    /// The newest candle written per (symbol, interval).
    candles: Mutex<HashMap<(String, u32), i64>>,
}

impl Recorder {
    /// Opens `path` for appending (creating it and its directory).
    pub fn open(path: &Path) -> anyhow::Result<Recorder> {
        use anyhow::Context;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("[record] path: cannot create {}", dir.display()))?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("[record] path: cannot open {}", path.display()))?;
        Ok(Recorder {
            path: path.to_path_buf(),
            file: Mutex::new(file),
            candles: Mutex::new(HashMap::new()),
        })
    }

    fn write(&self, r: &Record) {
        let Ok(mut line) = serde_json::to_vec(r) else {
            return;
        };
        line.push(b'\n');
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = f.write_all(&line) {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot append to the recording");
        }
    }

    pub fn ticker(&self, time_ms: i64, t: &Ticker) {
        self.write(&Record::Ticker {
            time_ms,
            symbol: t.symbol.clone(),
            last: t.last,
            bid: t.bid,
            ask: t.ask,
        });
    }

    /// Writes the closed candles (all but the newest, still forming) not
    /// written before.
    pub fn candles(&self, symbol: &str, interval_minutes: u32, all: &[Candle]) {
        let Some((_, closed)) = all.split_last() else {
            return;
        };
        let key = (symbol.to_string(), interval_minutes);
        let mut seen = self.candles.lock().unwrap_or_else(|p| p.into_inner());
        let last = seen.get(&key).copied().unwrap_or(i64::MIN);
        let mut newest = last;
        for c in closed.iter().filter(|c| c.open_time_ms > last) {
            self.write(&Record::Candle {
                symbol: symbol.to_string(),
                interval_minutes,
                open_time_ms: c.open_time_ms,
                open: c.open,
                high: c.high,
                low: c.low,
                close: c.close,
                volume: c.volume,
            });
            newest = newest.max(c.open_time_ms);
        }
        seen.insert(key, newest);
    }

    pub fn funding(&self, time_ms: i64, r: &herd_venue::FundingRate) {
        self.write(&Record::Funding {
            time_ms,
            symbol: r.symbol.clone(),
            rate: r.rate,
            next_funding_ms: r.next_funding_ms,
            mark: r.mark,
        });
    }

    pub fn fill(&self, f: &crate::fills::Fill) {
        self.write(&Record::Fill {
            time_ms: f.time_ms,
            engine: f.engine.clone(),
            client_order_id: f.client_order_id.clone(),
            symbol: f.symbol.clone(),
            side: f.side,
            price: f.price,
            volume: f.volume,
            fee: f.fee,
            fee_asset: f.fee_asset.clone(),
        });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use rust_decimal_macros::dec;

    fn candle(t: i64, close: Decimal) -> Candle {
        Candle {
            open_time_ms: t,
            open: close,
            high: close,
            low: close,
            close,
            volume: dec!(1),
        }
    }

    #[test]
    fn records_append_as_json_lines_and_candles_only_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("rec.jsonl");
        let rec = Recorder::open(&path).unwrap();
        rec.ticker(
            5,
            &Ticker {
                symbol: "DOGEUSD".into(),
                bid: dec!(0.0999),
                ask: dec!(0.1001),
                last: dec!(0.1),
                volume_24h: dec!(0),
                time_ms: 4,
            },
        );
        // The newest candle is still forming: not written; the next fetch
        // writes only what is new.
        rec.candles("DOGEUSD", 1, &[candle(0, dec!(1)), candle(60_000, dec!(2))]);
        rec.candles(
            "DOGEUSD",
            1,
            &[
                candle(0, dec!(1)),
                candle(60_000, dec!(2)),
                candle(120_000, dec!(3)),
            ],
        );
        rec.funding(
            7,
            &herd_venue::FundingRate {
                symbol: "BTCUSDT-PERP".into(),
                rate: dec!(0.0001),
                interval_hours: 8,
                next_funding_ms: 28_800_000,
                mark: dec!(40000),
                index: dec!(40000),
                last: dec!(40000),
                turnover_24h_usd: dec!(0),
                time_ms: 7,
            },
        );
        drop(rec);
        // Reopened: appended, nothing rewritten.
        Recorder::open(&path).unwrap().ticker(
            9,
            &Ticker {
                symbol: "DOGEUSD".into(),
                bid: dec!(0.1),
                ask: dec!(0.1002),
                last: dec!(0.1001),
                volume_24h: dec!(0),
                time_ms: 9,
            },
        );
        let text = std::fs::read_to_string(&path).unwrap();
        let records: Vec<Record> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let kinds: Vec<&str> = text
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                match v["kind"].as_str().unwrap() {
                    "ticker" => "ticker",
                    "candle" => "candle",
                    "funding" => "funding",
                    _ => "other",
                }
            })
            .collect();
        assert_eq!(
            kinds,
            ["ticker", "candle", "candle", "funding", "ticker"],
            "{text}"
        );
        assert!(matches!(
            &records[2],
            Record::Candle { open_time_ms: 60_000, close, .. } if *close == dec!(2)
        ));
        assert!(matches!(
            &records[3],
            Record::Funding { next_funding_ms: 28_800_000, rate, .. } if *rate == dec!(0.0001)
        ));
    }
}
