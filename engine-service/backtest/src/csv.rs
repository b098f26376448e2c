//! Reading history: OHLCV candles and funding rates from CSV files.
//!
//! Candles come in two layouts. Kraken's downloadable OHLCVT files have no
//! header and seven columns (time in seconds, open, high, low, close,
//! volume, trades); a header-named file has columns called time (or
//! timestamp, date, datetime, open_time, or an empty first name, as pandas
//! writes its index), open, high, low, close and optionally volume, in any
//! order and any letter case. Times are unix seconds or milliseconds
//! (detected from the first row's size) or dates (`2024-01-02`,
//! `2024-01-02 03:04:05`, with `T` and a trailing `Z` allowed, read as UTC).
//!
//! Every bad row is an error naming `file:line` and what is wrong with it;
//! rows must be in strictly increasing time. Missing candles are not
//! bridged: they are reported as [`Gap`]s.

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::Serialize;

/// One OHLCV candle.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bar {
    pub open_time_ms: i64,
    pub open: Decimal,
    pub high: Decimal,
    pub low: Decimal,
    pub close: Decimal,
    pub volume: Decimal,
}

/// Candles missing between two rows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Gap {
    /// Open time of the candle before the gap.
    pub after_ms: i64,
    /// Open time of the candle after it.
    pub before_ms: i64,
    /// Candles of the series' interval that are missing.
    pub missing: i64,
}

/// A loaded candle series.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Candles {
    pub bars: Vec<Bar>,
    /// The series' interval: the smallest step between two rows.
    pub interval_ms: i64,
    pub gaps: Vec<Gap>,
    /// Which layout was read ("kraken_ohlcvt" or "header").
    pub layout: String,
}

impl Candles {
    /// Candles missing in all gaps together.
    pub fn missing(&self) -> i64 {
        self.gaps.iter().map(|g| g.missing).sum()
    }

    /// Only the candles opening in `[from_ms, to_ms)`; gaps are recomputed.
    pub fn between(&self, from_ms: Option<i64>, to_ms: Option<i64>) -> Candles {
        let bars: Vec<Bar> = self
            .bars
            .iter()
            .filter(|b| from_ms.is_none_or(|f| b.open_time_ms >= f))
            .filter(|b| to_ms.is_none_or(|t| b.open_time_ms < t))
            .cloned()
            .collect();
        Candles {
            gaps: gaps_of(&bars, self.interval_ms),
            bars,
            interval_ms: self.interval_ms,
            layout: self.layout.clone(),
        }
    }

    /// [`Candles::between`] in place: no second copy of the candles (a
    /// year of 1-minute bars is 46 MB).
    pub fn into_between(mut self, from_ms: Option<i64>, to_ms: Option<i64>) -> Candles {
        if from_ms.is_none() && to_ms.is_none() {
            return self;
        }
        self.bars.retain(|b| {
            from_ms.is_none_or(|f| b.open_time_ms >= f) && to_ms.is_none_or(|t| b.open_time_ms < t)
        });
        self.bars.shrink_to_fit();
        self.gaps = gaps_of(&self.bars, self.interval_ms);
        self
    }
}

/// One funding settlement rate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FundingRow {
    pub time_ms: i64,
    pub symbol: String,
    /// The rate for the interval ending at `time_ms` (0.0001 = 0.01 %).
    pub rate: Decimal,
    /// The mark price the venue settled at, when the file gives it.
    pub mark: Option<Decimal>,
}

/// What is wrong with an input file: `file:line: message` (line 0: the
/// file as a whole).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for CsvError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line > 0 {
            write!(f, "{}:{}: {}", self.file, self.line, self.message)
        } else {
            write!(f, "{}: {}", self.file, self.message)
        }
    }
}

impl std::error::Error for CsvError {}

fn err(file: &str, line: usize, message: impl Into<String>) -> CsvError {
    CsvError {
        file: file.to_string(),
        line,
        message: message.into(),
    }
}

fn read(path: &Path) -> Result<(String, String), CsvError> {
    let name = path.display().to_string();
    let text =
        std::fs::read_to_string(path).map_err(|e| err(&name, 0, format!("cannot read: {e}")))?;
    Ok((name, text))
}

/// Reads a candle file (see the module doc for the layouts).
pub fn load_candles(path: &Path) -> Result<Candles, CsvError> {
    let (name, text) = read(path)?;
    parse_candles(&name, &text)
}

/// Reads a funding-rate file: columns time, symbol, rate and optionally
/// mark, named in a header (time may be called timestamp or
/// funding_time, rate funding_rate, mark mark_price) or, without a header,
/// in that order.
pub fn load_funding(path: &Path) -> Result<Vec<FundingRow>, CsvError> {
    let (name, text) = read(path)?;
    parse_funding(&name, &text)
}

/// Non-empty lines with their 1-based numbers, fields trimmed.
fn rows(text: &str) -> impl Iterator<Item = (usize, Vec<&str>)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim_end_matches('\r')))
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, l)| {
            (
                n,
                l.split(',').map(|f| f.trim().trim_matches('"')).collect(),
            )
        })
}

fn is_numeric(field: &str) -> bool {
    !field.is_empty() && field.parse::<f64>().is_ok()
}

/// Column positions of a candle file.
struct CandleColumns {
    time: usize,
    open: usize,
    high: usize,
    low: usize,
    close: usize,
    volume: Option<usize>,
    width: usize,
}

fn header_index(header: &[&str]) -> BTreeMap<String, usize> {
    header
        .iter()
        .enumerate()
        .map(|(i, h)| (h.to_ascii_lowercase(), i))
        .collect()
}

fn find(index: &BTreeMap<String, usize>, names: &[&str]) -> Option<usize> {
    names.iter().find_map(|n| index.get(*n).copied())
}

fn candle_columns(file: &str, line: usize, header: &[&str]) -> Result<CandleColumns, CsvError> {
    let index = header_index(header);
    let time = find(
        &index,
        &["time", "timestamp", "date", "datetime", "open_time", "ts"],
    )
    .or_else(|| (header.first() == Some(&"")).then_some(0));
    let need = |names: &[&str], what: &str| {
        find(&index, names).ok_or_else(|| {
            err(
                file,
                line,
                format!(
                    "missing column {what:?} in the header (columns: {})",
                    header.join(",")
                ),
            )
        })
    };
    let time = time.ok_or_else(|| {
        err(
            file,
            line,
            format!(
                "missing column \"time\" in the header (also read as timestamp, date, datetime, open_time; columns: {})",
                header.join(",")
            ),
        )
    })?;
    Ok(CandleColumns {
        time,
        open: need(&["open", "o"], "open")?,
        high: need(&["high", "h"], "high")?,
        low: need(&["low", "l"], "low")?,
        close: need(&["close", "c"], "close")?,
        volume: find(&index, &["volume", "vol", "v"]),
        width: header.len(),
    })
}

/// Parses candle CSV text; `file` names it in errors.
pub fn parse_candles(file: &str, text: &str) -> Result<Candles, CsvError> {
    let mut it = rows(text).peekable();
    let Some((first_line, first)) = it.peek().cloned() else {
        return Err(err(file, 0, "no rows"));
    };
    let (cols, layout) = if is_numeric(first[0]) {
        if first.len() < 5 {
            return Err(err(
                file,
                first_line,
                format!(
                    "{} columns; a file without a header needs time, open, high, low, close[, volume, trades]",
                    first.len()
                ),
            ));
        }
        (
            CandleColumns {
                time: 0,
                open: 1,
                high: 2,
                low: 3,
                close: 4,
                volume: (first.len() > 5).then_some(5),
                width: first.len(),
            },
            "kraken_ohlcvt",
        )
    } else {
        it.next();
        (candle_columns(file, first_line, &first)?, "header")
    };
    let mut unit: Option<TimeUnit> = None;
    // Sized once (at most one bar a line): a growing vector would double
    // to 2^20 bars (92 MB) for a year of 525,600.
    let mut bars: Vec<Bar> = Vec::with_capacity(text.lines().count());
    let mut prev_line = 0;
    for (line, fields) in it {
        if fields.len() != cols.width {
            return Err(err(
                file,
                line,
                format!("{} columns, expected {}", fields.len(), cols.width),
            ));
        }
        let unit = *unit.get_or_insert_with(|| TimeUnit::detect(fields[cols.time]));
        let t = parse_time(fields[cols.time], unit)
            .map_err(|m| err(file, line, format!("column time: {m}")))?;
        let num = |i: usize, what: &str| -> Result<Decimal, CsvError> {
            parse_number(fields[i]).ok_or_else(|| {
                err(
                    file,
                    line,
                    format!("column {what}: {:?} is not a number", fields[i]),
                )
            })
        };
        let bar = Bar {
            open_time_ms: t,
            open: num(cols.open, "open")?,
            high: num(cols.high, "high")?,
            low: num(cols.low, "low")?,
            close: num(cols.close, "close")?,
            volume: match cols.volume {
                Some(i) => num(i, "volume")?,
                None => Decimal::ZERO,
            },
        };
        if bar.low <= Decimal::ZERO {
            return Err(err(
                file,
                line,
                format!("low {} is not above zero", bar.low),
            ));
        }
        if bar.high < bar.open.max(bar.close) || bar.low > bar.open.min(bar.close) {
            return Err(err(
                file,
                line,
                format!(
                    "high {} and low {} do not contain open {} and close {}",
                    bar.high, bar.low, bar.open, bar.close
                ),
            ));
        }
        if bar.volume < Decimal::ZERO {
            return Err(err(
                file,
                line,
                format!("volume {} is negative", bar.volume),
            ));
        }
        if let Some(last) = bars.last()
            && t == last.open_time_ms
        {
            return Err(err(
                file,
                line,
                format!(
                    "duplicate row: time {} was already given on line {prev_line}",
                    fmt_time(t)
                ),
            ));
        }
        if let Some(last) = bars.last()
            && t < last.open_time_ms
        {
            return Err(err(
                file,
                line,
                format!(
                    "time {} is before the previous row's {} (line {prev_line}): rows must be in time order",
                    fmt_time(t),
                    fmt_time(last.open_time_ms)
                ),
            ));
        }
        prev_line = line;
        bars.push(bar);
    }
    if bars.is_empty() {
        return Err(err(file, 0, "a header but no candles"));
    }
    let interval_ms = bars
        .windows(2)
        .map(|w| w[1].open_time_ms - w[0].open_time_ms)
        .min()
        .unwrap_or(60_000);
    Ok(Candles {
        gaps: gaps_of(&bars, interval_ms),
        bars,
        interval_ms,
        layout: layout.to_string(),
    })
}

fn gaps_of(bars: &[Bar], interval_ms: i64) -> Vec<Gap> {
    if interval_ms <= 0 {
        return Vec::new();
    }
    bars.windows(2)
        .filter_map(|w| {
            let step = w[1].open_time_ms - w[0].open_time_ms;
            (step > interval_ms).then(|| Gap {
                after_ms: w[0].open_time_ms,
                before_ms: w[1].open_time_ms,
                missing: step / interval_ms - 1 + i64::from(step % interval_ms != 0),
            })
        })
        .collect()
}

/// Parses funding CSV text; `file` names it in errors.
pub fn parse_funding(file: &str, text: &str) -> Result<Vec<FundingRow>, CsvError> {
    let mut it = rows(text).peekable();
    let Some((first_line, first)) = it.peek().cloned() else {
        return Err(err(file, 0, "no rows"));
    };
    let (time, symbol, rate, mark, width) = if is_numeric(first[0]) || first[0].contains('-') {
        if first.len() < 3 {
            return Err(err(
                file,
                first_line,
                format!(
                    "{} columns; a file without a header needs time, symbol, rate[, mark]",
                    first.len()
                ),
            ));
        }
        (0, 1, 2, (first.len() > 3).then_some(3), first.len())
    } else {
        it.next();
        let index = header_index(&first);
        let need = |names: &[&str], what: &str| {
            find(&index, names).ok_or_else(|| {
                err(
                    file,
                    first_line,
                    format!(
                        "missing column {what:?} in the header (columns: {})",
                        first.join(",")
                    ),
                )
            })
        };
        (
            need(
                &["time", "timestamp", "funding_time", "date", "datetime"],
                "time",
            )?,
            need(&["symbol", "pair", "instrument"], "symbol")?,
            need(&["rate", "funding_rate"], "rate")?,
            find(&index, &["mark", "mark_price"]),
            first.len(),
        )
    };
    let mut unit: Option<TimeUnit> = None;
    let mut out: Vec<FundingRow> = Vec::new();
    let mut last_of: BTreeMap<String, (i64, usize)> = BTreeMap::new();
    for (line, fields) in it {
        if fields.len() != width {
            return Err(err(
                file,
                line,
                format!("{} columns, expected {width}", fields.len()),
            ));
        }
        let unit = *unit.get_or_insert_with(|| TimeUnit::detect(fields[time]));
        let t = parse_time(fields[time], unit)
            .map_err(|m| err(file, line, format!("column time: {m}")))?;
        let sym = fields[symbol];
        if sym.is_empty() {
            return Err(err(file, line, "column symbol: empty"));
        }
        let r = parse_number(fields[rate]).ok_or_else(|| {
            err(
                file,
                line,
                format!("column rate: {:?} is not a number", fields[rate]),
            )
        })?;
        let m = match mark {
            Some(i) if !fields[i].is_empty() => Some(parse_number(fields[i]).ok_or_else(|| {
                err(
                    file,
                    line,
                    format!("column mark: {:?} is not a number", fields[i]),
                )
            })?),
            _ => None,
        };
        if let Some((prev, prev_line)) = last_of.get(sym) {
            if t == *prev {
                return Err(err(
                    file,
                    line,
                    format!(
                        "duplicate row: {sym} at {} was already given on line {prev_line}",
                        fmt_time(t)
                    ),
                ));
            }
            if t < *prev {
                return Err(err(
                    file,
                    line,
                    format!(
                        "time {} is before {sym}'s previous row {} (line {prev_line}): rows must be in time order",
                        fmt_time(t),
                        fmt_time(*prev)
                    ),
                ));
            }
        }
        last_of.insert(sym.to_string(), (t, line));
        out.push(FundingRow {
            time_ms: t,
            symbol: sym.to_string(),
            rate: r,
            mark: m,
        });
    }
    out.sort_by(|a, b| (a.time_ms, &a.symbol).cmp(&(b.time_ms, &b.symbol)));
    Ok(out)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TimeUnit {
    Seconds,
    Millis,
    Date,
}

impl TimeUnit {
    /// Unix seconds are ten digits until 2286; milliseconds are thirteen.
    /// Anything above 10^11 is read as milliseconds.
    fn detect(field: &str) -> TimeUnit {
        match field.parse::<i64>() {
            Ok(n) if n.abs() >= 100_000_000_000 => TimeUnit::Millis,
            Ok(_) => TimeUnit::Seconds,
            Err(_) => TimeUnit::Date,
        }
    }
}

fn parse_time(field: &str, unit: TimeUnit) -> Result<i64, String> {
    match unit {
        TimeUnit::Seconds | TimeUnit::Millis => {
            let n: i64 = field.parse().map_err(|_| {
                format!(
                    "{field:?} is not a whole number of {} like the first row",
                    unit_name(unit)
                )
            })?;
            if unit == TimeUnit::Seconds {
                n.checked_mul(1000)
                    .ok_or_else(|| format!("{field} is out of range"))
            } else {
                Ok(n)
            }
        }
        TimeUnit::Date => parse_date_time(field).ok_or_else(|| {
            format!("{field:?} is not a date (YYYY-MM-DD[ HH:MM[:SS]]) like the first row")
        }),
    }
}

fn unit_name(unit: TimeUnit) -> &'static str {
    match unit {
        TimeUnit::Seconds => "seconds",
        TimeUnit::Millis => "milliseconds",
        TimeUnit::Date => "dates",
    }
}

/// A number: plain decimal or scientific notation.
fn parse_number(field: &str) -> Option<Decimal> {
    Decimal::from_str(field)
        .ok()
        .or_else(|| Decimal::from_scientific(field).ok())
}

pub use herd_venue::calendar::{parse_utc as parse_date_time, utc_string as fmt_time};

/// A time given on the command line: unix seconds, unix milliseconds or a
/// date as in the files.
pub fn parse_cli_time(text: &str) -> Option<i64> {
    match TimeUnit::detect(text) {
        TimeUnit::Date => parse_date_time(text),
        unit => parse_time(text, unit).ok(),
    }
}
