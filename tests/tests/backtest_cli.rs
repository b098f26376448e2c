//! `herdctl backtest` as users run it: an engine config and a candle file
//! in, the report's files out (they exist and parse), and bad input named.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fmt::Write as _;
use std::process::Command;

use herd_tests::bin_path;

/// A day of 1-minute DOGE/USD candles on a sine, +-2 % every 40 minutes.
fn candles_csv() -> String {
    let mut s = String::new();
    let mut p = 0.1f64;
    for i in 0..1440i64 {
        let close = 0.1 * (1.0 + 0.02 * (std::f64::consts::TAU * (i + 1) as f64 / 40.0).sin());
        let (hi, lo) = (p.max(close) + 0.00006, p.min(close) - 0.00005);
        // Kraken OHLCVT: no header, seconds, trades last.
        let _ = writeln!(
            s,
            "{},{p:.7},{hi:.7},{lo:.7},{close:.7},1000,12",
            1_704_067_200 + 60 * i
        );
        p = close;
    }
    s
}

const ENGINE_TOML: &str = r#"
symbol = "DOGEUSD"
regime_source = "fixed"
fixed_regime = "RANGING"

[rangers]
enabled = true
max_slots = 2
order_size_usd = "20"
entry_pct = "0.3"
profit_pct = "1.2"
"#;

#[test]
fn backtest_writes_a_report_that_parses() {
    let herdctl = bin_path("herdctl").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("engine.toml");
    std::fs::write(&config, ENGINE_TOML).unwrap();
    let candles = dir.path().join("XDGUSD_1.csv");
    std::fs::write(&candles, candles_csv()).unwrap();
    let out_dir = dir.path().join("report");
    let out = Command::new(&herdctl)
        .args(["backtest", "--config"])
        .arg(&config)
        .arg("--candles")
        .arg(&candles)
        .args(["--maker-fee", "0.0016", "--taker-fee", "0.0026", "--out"])
        .arg(&out_dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("backtest DOGEUSD 2024-01-01T00:00:00Z"),
        "{stdout}"
    );

    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["candles"], 1440);
    assert_eq!(report["symbol"], "DOGEUSD");
    assert!(report["cycles"].as_u64().unwrap() > 0, "{report:#}");
    assert!(report["fills"].as_u64().unwrap() >= 2 * report["cycles"].as_u64().unwrap());
    assert_eq!(report["regime_time_pct"]["RANGING"], "100");

    let fills = std::fs::read_to_string(out_dir.join("fills.csv")).unwrap();
    let mut lines = fills.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(header[0], "time");
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len() as u64, report["fills"].as_u64().unwrap());
    for r in &rows {
        assert_eq!(r.len(), header.len(), "{r:?}");
        // Resting rangers' orders are makers at the fee given on the line.
        let (price, volume, fee): (f64, f64, f64) = (
            r[5].parse().unwrap(),
            r[6].parse().unwrap(),
            r[7].parse().unwrap(),
        );
        assert!((fee - price * volume * 0.0016).abs() < 1e-8, "{r:?}");
    }

    for svg in ["equity.svg", "drawdown.svg"] {
        let text = std::fs::read_to_string(out_dir.join(svg)).unwrap();
        assert!(
            text.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""),
            "{svg}"
        );
        assert!(text.contains("<polyline"), "{svg}");
        assert!(text.trim_end().ends_with("</svg>"), "{svg}");
    }
    let html = std::fs::read_to_string(out_dir.join("report.html")).unwrap();
    assert!(html.contains("<svg") && html.contains("id=\"summary\""));
    // Self-contained: nothing fetched from elsewhere.
    for needle in ["src=", "href=", "http://", "https://"] {
        let outside = html.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
        assert!(!outside.contains(needle), "report.html refers to {needle}");
    }
}

#[test]
fn backtest_names_the_bad_row() {
    let herdctl = bin_path("herdctl").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("engine.toml");
    std::fs::write(&config, ENGINE_TOML).unwrap();
    let candles = dir.path().join("bad.csv");
    std::fs::write(
        &candles,
        "time,open,high,low,close\n60,1,1,1,1\n120,1,1,x,1\n",
    )
    .unwrap();
    let out = Command::new(&herdctl)
        .args(["backtest", "--config"])
        .arg(&config)
        .arg("--candles")
        .arg(&candles)
        .arg("--out")
        .arg(dir.path().join("r"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "{}:3: column low: \"x\" is not a number",
            candles.display()
        )),
        "{stderr}"
    );
    let good = dir.path().join("good.csv");
    std::fs::write(&good, "time,open,high,low,close\n60,1,1,1,1\n").unwrap();
    let bad_flag = Command::new(&herdctl)
        .args(["backtest", "--config"])
        .arg(&config)
        .arg("--candles")
        .arg(&good)
        .args(["--maker-fee", "lots"])
        .output()
        .unwrap();
    assert_eq!(bad_flag.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&bad_flag.stderr)
            .contains("--maker-fee: \"lots\" is not a decimal number")
    );
}

/// A real dataset no one here wrote: the daily GOOG candles backtesting.py
/// ships (PyPI `backtesting`, pinned in scripts/install-test-tools).
#[test]
fn backtest_runs_backtesting_py_goog_candles_end_to_end() {
    let root = herd_tests::workspace_root();
    let goog = root.join(".herd/tools/pip-backtesting/backtesting/test/GOOG.csv");
    assert!(
        goog.exists(),
        "{} is missing: run scripts/install-test-tools backtesting",
        goog.display()
    );
    let herdctl = bin_path("herdctl").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("engine.toml");
    std::fs::write(
        &config,
        r#"
symbol = "GOOGUSD"
regime_source = "fixed"
fixed_regime = "RANGING"

[rangers]
enabled = true
max_slots = 3
order_size_usd = "2000"
entry_pct = "1"
profit_pct = "2"
entry_timeout_sec = 172800
exit_timeout_sec = 2592000
doge_reserve = "0"
"#,
    )
    .unwrap();
    let out_dir = dir.path().join("report");
    let out = Command::new(&herdctl)
        .args(["backtest", "--config"])
        .arg(&config)
        .arg("--candles")
        .arg(&goog)
        .args(["--balance", "USD=100000", "--balance", "GOOG=200", "--out"])
        .arg(&out_dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // Daily stock candles: weekends and holidays are gaps, reported.
    assert!(stderr.contains("gap:"), "{stderr}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("report.json")).unwrap()).unwrap();
    let rows = std::fs::read_to_string(&goog).unwrap().lines().count() - 1;
    assert_eq!(report["candles"].as_u64().unwrap() as usize, rows);
    assert_eq!(report["start"], "2004-08-19T00:00:00Z");
    assert_eq!(report["interval_ms"], 86_400_000);
    assert!(report["gaps"].as_u64().unwrap() > 100, "{report:#}");
    assert!(report["cycles"].as_u64().unwrap() > 0, "{report:#}");
    assert!(out_dir.join("report.html").exists());
}

/// The Indexed Job's sweep, as one of its pods runs it: slice 1 of 4 of the
/// deploy overlay's own sweep file and engine config (HMM regime).
#[test]
fn sweep_slice_ranks_its_combinations_and_writes_the_table() {
    let root = herd_tests::workspace_root();
    let overlay = root.join("deploy/k8s/overlays/backtest-sweep");
    let herdctl = bin_path("herdctl").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let candles = dir.path().join("candles.csv");
    std::fs::write(&candles, candles_csv()).unwrap();
    let out = Command::new(&herdctl)
        .args(["backtest", "--config"])
        .arg(overlay.join("engine.toml"))
        .arg("--sweep")
        .arg(overlay.join("sweep.toml"))
        .arg("--candles")
        .arg(&candles)
        .args(["--sweep-count", "4", "--out"])
        .arg(dir.path())
        .env("JOB_COMPLETION_INDEX", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("3 of 12 combinations"), "{stdout}");
    let table = std::fs::read_to_string(dir.path().join("sweep-1-of-4.csv")).unwrap();
    let rows: Vec<Vec<&str>> = table
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    assert_eq!(rows.len(), 3, "{table}");
    // Slice 1 of 4 holds combinations 1, 5 and 9; ranked best net PnL first.
    let mut numbers: Vec<&str> = rows.iter().map(|r| r[1]).collect();
    numbers.sort_unstable();
    assert_eq!(numbers, ["1", "5", "9"]);
    let pnl: Vec<f64> = rows.iter().map(|r| r[5].parse().unwrap()).collect();
    assert!(pnl.windows(2).all(|w| w[0] >= w[1]), "{table}");
    assert!(
        rows.iter().all(|r| r.last() == Some(&"")),
        "no errors: {table}"
    );

    let bad = dir.path().join("bad-sweep.toml");
    std::fs::write(
        &bad,
        "rank_by = \"luck\"\n[params]\nRANGER_ENTRY_PCT = [\"0.3\"]\n",
    )
    .unwrap();
    let out = Command::new(&herdctl)
        .args(["backtest", "--config"])
        .arg(overlay.join("engine.toml"))
        .arg("--sweep")
        .arg(&bad)
        .arg("--candles")
        .arg(&candles)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("rank_by: \"luck\" is not one of"));
}
