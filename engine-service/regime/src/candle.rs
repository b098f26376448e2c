//! Candle input: the OHLCV struct the detector consumes, validation, and a CSV parser for
//! `time,open,high,low,close,volume` files (what `herdctl regime --candles FILE.csv` reads).

use crate::error::RegimeError;

/// One OHLCV candle. Prices and volume are f64 because they only feed statistics here.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Candle {
    /// Open time, Unix milliseconds.
    pub open_time_ms: i64,
    /// Open price.
    pub open: f64,
    /// High price.
    pub high: f64,
    /// Low price.
    pub low: f64,
    /// Close price.
    pub close: f64,
    /// Traded volume in the base asset.
    pub volume: f64,
}

/// Checks that every candle can feed the features: prices finite and > 0, volume finite and
/// >= 0. This is what lets the feature code promise finite output.
pub(crate) fn validate(candles: &[Candle]) -> Result<(), RegimeError> {
    for (index, c) in candles.iter().enumerate() {
        let bad = |message: String| RegimeError::InvalidCandle {
            index,
            open_time_ms: c.open_time_ms,
            message,
        };
        for (name, v) in [
            ("open", c.open),
            ("high", c.high),
            ("low", c.low),
            ("close", c.close),
        ] {
            if !v.is_finite() || v <= 0.0 {
                return Err(bad(format!("{name} must be finite and > 0, got {v}")));
            }
        }
        if !c.volume.is_finite() || c.volume < 0.0 {
            return Err(bad(format!(
                "volume must be finite and >= 0, got {}",
                c.volume
            )));
        }
    }
    Ok(())
}

/// Parses a candle CSV: a header line naming `time,open,high,low,close,volume` (in that order,
/// case-insensitive), then one candle per line. `time` is Unix time in milliseconds, or in
/// seconds when it is below 10^11 (seconds are converted). Blank lines are skipped. Rows must
/// be in strictly increasing time order. Errors carry the 1-based line number.
pub fn parse_candles_csv(text: &str) -> Result<Vec<Candle>, RegimeError> {
    const HEADER: [&str; 6] = ["time", "open", "high", "low", "close", "volume"];
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let Some((header_idx, header)) = lines.next() else {
        return Err(RegimeError::Csv {
            line: 1,
            message: "empty file; expected header time,open,high,low,close,volume".into(),
        });
    };
    let names: Vec<String> = header
        .trim_start_matches('\u{feff}')
        .split(',')
        .map(|s| s.trim().to_ascii_lowercase())
        .collect();
    if names != HEADER {
        return Err(RegimeError::Csv {
            line: header_idx + 1,
            message: format!("header must be time,open,high,low,close,volume, got {header:?}"),
        });
    }
    let mut out: Vec<Candle> = Vec::new();
    for (idx, line) in lines {
        let line_no = idx + 1;
        let err = |message: String| RegimeError::Csv {
            line: line_no,
            message,
        };
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if fields.len() != HEADER.len() {
            return Err(err(format!("expected 6 fields, got {}", fields.len())));
        }
        let time = parse_time(fields[0]).map_err(&err)?;
        let mut vals = [0.0f64; 5];
        for (slot, (name, raw)) in vals.iter_mut().zip(HEADER[1..].iter().zip(&fields[1..])) {
            *slot = raw
                .parse::<f64>()
                .map_err(|e| err(format!("{name} {raw:?}: {e}")))?;
        }
        let candle = Candle {
            open_time_ms: time,
            open: vals[0],
            high: vals[1],
            low: vals[2],
            close: vals[3],
            volume: vals[4],
        };
        validate(std::slice::from_ref(&candle)).map_err(|e| match e {
            RegimeError::InvalidCandle { message, .. } => err(message),
            other => other,
        })?;
        if let Some(prev) = out.last()
            && prev.open_time_ms >= candle.open_time_ms
        {
            return Err(err(format!(
                "time {} is not after the previous row's {}",
                candle.open_time_ms, prev.open_time_ms
            )));
        }
        out.push(candle);
    }
    Ok(out)
}

fn parse_time(raw: &str) -> Result<i64, String> {
    let t: i64 = match raw.parse::<i64>() {
        Ok(t) => t,
        // Some exports write integral timestamps as floats ("1700000000.0").
        Err(_) => {
            let f: f64 = raw.parse().map_err(|e| format!("time {raw:?}: {e}"))?;
            if !f.is_finite() || f.fract() != 0.0 || f.abs() > 9.0e15 {
                return Err(format!("time {raw:?} is not an integral timestamp"));
            }
            f as i64
        }
    };
    if t < 0 {
        return Err(format!("time {t} is negative"));
    }
    Ok(if t < 100_000_000_000 { t * 1000 } else { t })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    struct Case {
        text: &'static str,
        expect: Result<usize, (usize, &'static str)>,
    }

    #[test]
    fn csv_table() {
        let cases = [
            Case {
                text: "time,open,high,low,close,volume\n1700000000000,1,2,0.5,1.5,10\n1700000060000,1.5,2,1,1.2,0\n",
                expect: Ok(2),
            },
            Case {
                text: "Time, Open,High,Low,Close,Volume\n\n1700000000,1,1,1,1,1\n",
                expect: Ok(1),
            },
            Case {
                text: "",
                expect: Err((1, "empty file")),
            },
            Case {
                text: "t,o,h,l,c,v\n",
                expect: Err((1, "header")),
            },
            Case {
                text: "time,open,high,low,close,volume\n1,1,1,1,1\n",
                expect: Err((2, "expected 6 fields")),
            },
            Case {
                text: "time,open,high,low,close,volume\n1700000000000,1,1,1,1,1\n1700000060000,1,x,1,1,1\n",
                expect: Err((3, "high")),
            },
            Case {
                text: "time,open,high,low,close,volume\n1700000000000,1,1,1,0,1\n",
                expect: Err((2, "close must be finite and > 0")),
            },
            Case {
                text: "time,open,high,low,close,volume\n1700000000000,1,1,1,1,-1\n",
                expect: Err((2, "volume")),
            },
            Case {
                text: "time,open,high,low,close,volume\n1700000000000,1,1,1,1,1\n1700000000000,1,1,1,1,1\n",
                expect: Err((3, "not after")),
            },
            Case {
                text: "time,open,high,low,close,volume\n1700000000000,1,1,1,NaN,1\n",
                expect: Err((2, "close")),
            },
        ];
        for case in cases {
            match (parse_candles_csv(case.text), case.expect) {
                (Ok(c), Ok(n)) => assert_eq!(c.len(), n, "{:?}", case.text),
                (Err(RegimeError::Csv { line, message }), Err((l, m))) => {
                    assert_eq!(line, l, "{:?}: {message}", case.text);
                    assert!(message.contains(m), "{:?}: {message}", case.text);
                }
                (got, want) => panic!("{:?}: got {got:?}, want {want:?}", case.text),
            }
        }
    }

    #[test]
    fn seconds_are_converted_to_millis() {
        let c =
            parse_candles_csv("time,open,high,low,close,volume\n1700000000,1,1,1,1,1\n").unwrap();
        assert_eq!(c[0].open_time_ms, 1_700_000_000_000);
    }
}
