#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Candle and funding files: the layouts that load, and the bad ones with
//! the `file:line: what is wrong` each gives.

use herd_backtest::csv::{parse_candles, parse_funding};
use rust_decimal_macros::dec;

#[test]
fn kraken_ohlcvt_without_header_in_seconds() {
    let text = "1700000000,0.1,0.11,0.09,0.105,1234.5,17\n\
                1700000060,0.105,0.106,0.1,0.1,10,3\n";
    let c = parse_candles("XDGUSD_1.csv", text).unwrap();
    assert_eq!(c.layout, "kraken_ohlcvt");
    assert_eq!(c.interval_ms, 60_000);
    assert_eq!(c.bars.len(), 2);
    assert_eq!(c.bars[0].open_time_ms, 1_700_000_000_000);
    assert_eq!(c.bars[0].high, dec!(0.11));
    assert_eq!(c.bars[0].volume, dec!(1234.5));
    assert!(c.gaps.is_empty());
}

#[test]
fn header_named_columns_in_any_order_with_milliseconds_or_dates() {
    let text = "Close,Open,High,Low,Volume,timestamp\n\
                2,1,2,1,5,1700000000000\n\
                3,2,3,2,5,1700000060000\n";
    let c = parse_candles("ms.csv", text).unwrap();
    assert_eq!(c.layout, "header");
    assert_eq!(c.bars[1].open_time_ms, 1_700_000_060_000);
    assert_eq!(c.bars[1].close, dec!(3));
    // pandas writes its index with an empty name (backtesting.py's files).
    let text = ",Open,High,Low,Close,Volume\n\
                2017-04-19 09:00:00,1.07160,1.07220,1.07083,1.07219,1413\n\
                2017-04-19 10:00:00,1.07214,1.07296,1.07214,1.07260,1241\n";
    let c = parse_candles("EURUSD.csv", text).unwrap();
    assert_eq!(c.interval_ms, 3_600_000);
    assert_eq!(c.bars[0].open_time_ms, 1_492_592_400_000);
}

#[test]
fn gaps_are_reported_not_bridged() {
    let text = "time,open,high,low,close\n60,1,1,1,1\n120,1,1,1,1\n360,1,1,1,1\n420,1,1,1,1\n";
    let c = parse_candles("g.csv", text).unwrap();
    assert_eq!(c.bars.len(), 4);
    assert_eq!(c.gaps.len(), 1);
    assert_eq!(c.gaps[0].after_ms, 120_000);
    assert_eq!(c.gaps[0].before_ms, 360_000);
    assert_eq!(c.gaps[0].missing, 3);
    assert_eq!(c.missing(), 3);
}

#[test]
fn cutting_in_place_gives_what_cutting_a_copy_gives() {
    let text = "time,open,high,low,close\n60,1,1,1,1\n120,1,1,1,1\n360,1,1,1,1\n420,1,1,1,1\n480,1,1,1,1\n";
    let c = parse_candles("g.csv", text).unwrap();
    let cuts = [
        (None, None),
        (Some(120_000), None),
        (None, Some(420_000)),
        (Some(100_000), Some(400_000)),
        (Some(360_000), Some(480_000)),
        (Some(500_000), None),
    ];
    for (from, to) in cuts {
        let copy = c.between(from, to);
        let in_place = c.clone().into_between(from, to);
        assert_eq!(in_place, copy, "{from:?}..{to:?}");
    }
    assert_eq!(c.between(Some(100_000), Some(400_000)).gaps.len(), 1);
    assert!(c.between(Some(360_000), None).gaps.is_empty());
}

#[test]
fn bad_candle_files_name_file_line_and_problem() {
    let cases: &[(&str, &str)] = &[
        ("", "bad.csv: no rows"),
        (
            "time,open,high,close\n1,1,1,1\n",
            "bad.csv:1: missing column \"low\" in the header (columns: time,open,high,close)",
        ),
        (
            "open,high,low,close\n1,1,1,1\n",
            "bad.csv:1: missing column \"time\" in the header",
        ),
        (
            "time,open,high,low,close\n60,1,1,1,1\n120,1,x1,1,1\n",
            "bad.csv:3: column high: \"x1\" is not a number",
        ),
        (
            "60,1,1,1,1,5,1\n120,1,1,1,1,5\n",
            "bad.csv:2: 6 columns, expected 7",
        ),
        (
            "time,open,high,low,close\n120,1,1,1,1\n60,1,1,1,1\n",
            "bad.csv:3: time 1970-01-01T00:01:00Z is before the previous row's 1970-01-01T00:02:00Z (line 2): rows must be in time order",
        ),
        (
            "time,open,high,low,close\n60,1,1,1,1\n\n60,1,1,1,1\n",
            "bad.csv:4: duplicate row: time 1970-01-01T00:01:00Z was already given on line 2",
        ),
        (
            "time,open,high,low,close\n60,1,0.9,0.8,1\n",
            "bad.csv:2: high 0.9 and low 0.8 do not contain open 1 and close 1",
        ),
        (
            "time,open,high,low,close\n60,1,1,0,1\n",
            "bad.csv:2: low 0 is not above zero",
        ),
        (
            "time,open,high,low,close\n60,1,1,1,1\n2024-01-01,1,1,1,1\n",
            "bad.csv:3: column time: \"2024-01-01\" is not a whole number of seconds like the first row",
        ),
        (
            "date,open,high,low,close\n2024-01-01,1,1,1,1\n2024-13-01,1,1,1,1\n",
            "bad.csv:3: column time: \"2024-13-01\" is not a date",
        ),
        (
            "time,open,high,low,close\n",
            "bad.csv: a header but no candles",
        ),
    ];
    for (text, want) in cases {
        let e = parse_candles("bad.csv", text).unwrap_err().to_string();
        assert!(e.starts_with(want), "for {text:?}\n got: {e}\nwant: {want}");
    }
}

#[test]
fn funding_files_with_and_without_header() {
    let text = "time,symbol,rate,mark\n\
                1700000000,BTCUSDT-PERP,0.0001,60000\n\
                1700028800,BTCUSDT-PERP,-0.00005,\n";
    let f = parse_funding("f.csv", text).unwrap();
    assert_eq!(f.len(), 2);
    assert_eq!(f[0].mark, Some(dec!(60000)));
    assert_eq!(f[1].rate, dec!(-0.00005));
    assert_eq!(f[1].mark, None);
    let f = parse_funding("f.csv", "1700000000000,ETHUSDT-PERP,0.0003\n").unwrap();
    assert_eq!(f[0].time_ms, 1_700_000_000_000);
}

#[test]
fn bad_funding_files_name_file_line_and_problem() {
    let cases: &[(&str, &str)] = &[
        (
            "time,symbol\n1,X\n",
            "f.csv:1: missing column \"rate\" in the header",
        ),
        (
            "time,symbol,rate\n1,X,abc\n",
            "f.csv:2: column rate: \"abc\" is not a number",
        ),
        (
            "time,symbol,rate\n10,X,0.1\n5,X,0.1\n",
            "f.csv:3: time 1970-01-01T00:00:05Z is before X's previous row 1970-01-01T00:00:10Z (line 2)",
        ),
        (
            "time,symbol,rate\n10,X,0.1\n10,X,0.2\n",
            "f.csv:3: duplicate row: X at 1970-01-01T00:00:10Z was already given on line 2",
        ),
    ];
    for (text, want) in cases {
        let e = parse_funding("f.csv", text).unwrap_err().to_string();
        assert!(e.starts_with(want), "for {text:?}\n got: {e}\nwant: {want}");
    }
}
