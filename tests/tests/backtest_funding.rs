//! `herdctl backtest` with the engine's funding orchestrator: the very
//! orchestrator the engine runs (herd_engine::funding::Orchestrator) trades
//! the spot pair and its perpetual at the candles' prices, every cycle of
//! simulated time, and the paper core settles the `--funding` rates at the
//! venue's times. A rich rate opens the hedge; once it decays, the
//! orchestrator closes it (after its confirmations); the funding it
//! collected is the report's, and its fills are in fills.csv. Two runs
//! write the same bytes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fmt::Write as _;
use std::process::Command;

use herd_tests::bin_path;
use rust_decimal::Decimal;

/// 2024-01-01 00:00 UTC.
const START_S: i64 = 1_704_067_200;

/// Four days of hourly BTC/USDT candles wobbling around 40,000.
fn candles_csv() -> String {
    let mut s = String::from("time,open,high,low,close,volume\n");
    for h in 0..96i64 {
        let open = 40_000 + (h % 5) * 10;
        let close = 40_000 + ((h + 1) % 5) * 10;
        let _ = writeln!(
            s,
            "{},{open},{},{},{close},5",
            START_S + 3600 * h,
            open.max(close) + 15,
            open.min(close) - 15
        );
    }
    s
}

/// 0.15 % per 8 h for two days, then 0.001 %.
fn funding_csv() -> String {
    let mut s = String::from("time,symbol,rate\n");
    for k in 0..13i64 {
        let rate = if k < 6 { "0.0015" } else { "0.00001" };
        let _ = writeln!(s, "{},BTCUSDT-PERP,{rate}", START_S + 8 * 3600 * k);
    }
    s
}

const ENGINE_TOML: &str = r#"
symbol = "BTCUSDT"
regime_source = "fixed"
fixed_regime = "RANGING"

[funding]
enabled = true
cycle_interval_ms = 3600000
"#;

#[test]
fn the_funding_orchestrator_runs_in_the_backtest_and_collects_the_rates() {
    let herdctl = bin_path("herdctl").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("engine.toml");
    std::fs::write(&config, ENGINE_TOML).unwrap();
    let candles = dir.path().join("BTCUSDT_60.csv");
    std::fs::write(&candles, candles_csv()).unwrap();
    let rates = dir.path().join("funding.csv");
    std::fs::write(&rates, funding_csv()).unwrap();
    let run = |name: &str| {
        let out_dir = dir.path().join(name);
        let out = Command::new(&herdctl)
            .args(["backtest", "--quiet", "--config"])
            .arg(&config)
            .arg("--candles")
            .arg(&candles)
            .arg("--funding")
            .arg(&rates)
            .arg("--out")
            .arg(&out_dir)
            .output()
            .unwrap();
        (out_dir, out)
    };
    let (out_dir, out) = run("report");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // Deterministic with the orchestrator too: a second run writes the same
    // bytes.
    let (again_dir, again) = run("again");
    assert!(again.status.success());
    for f in ["report.json", "fills.csv", "funding.csv", "equity.png"] {
        assert!(
            std::fs::read(out_dir.join(f)).unwrap() == std::fs::read(again_dir.join(f)).unwrap(),
            "{f} differs between two runs"
        );
    }
    assert!(
        stderr.contains("funding orchestrator: 96 cycles, 1 opened, 1 closed, 0 step errors"),
        "{stderr}"
    );

    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("report.json")).unwrap()).unwrap();
    let dec = |v: &serde_json::Value| -> Decimal { v.as_str().unwrap().parse().unwrap() };
    let funding = dec(&report["funding"]);
    // Short perp: it receives the rich rate at 08:00, 16:00, ... and a
    // little of the decayed one until the close.
    assert!(funding > Decimal::from(5), "{report:#}");
    assert_eq!(dec(&report["strategies"]["funding"]["funding"]), funding);

    // funding.csv: the settlements, all on the short perp, summing to it.
    let settlements = std::fs::read_to_string(out_dir.join("funding.csv")).unwrap();
    let rows: Vec<Vec<&str>> = settlements
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    assert_eq!(
        rows.len(),
        report["funding_settlements"].as_u64().unwrap() as usize
    );
    assert!(rows.len() >= 6, "{settlements}");
    let mut sum = Decimal::ZERO;
    for r in &rows {
        assert_eq!((r[2], r[3]), ("BTCUSDT-PERP", "short"), "{r:?}");
        sum += r[7].parse::<Decimal>().unwrap();
    }
    assert_eq!(sum, funding);

    // fills.csv: the orchestrator's legs, opened at the first cycle and
    // closed after the decay: spot buy + perp sell, then the reverse.
    let fills = std::fs::read_to_string(out_dir.join("fills.csv")).unwrap();
    let legs: Vec<Vec<&str>> = fills
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .filter(|r: &Vec<&str>| r[2] == "funding")
        .collect();
    let sides: Vec<&str> = legs.iter().map(|r| r[4]).collect();
    assert_eq!(legs.len(), 4, "{fills}");
    assert_eq!(legs[0][0], "2024-01-01T00:00:00Z", "{fills}");
    assert!(
        sides[..2].contains(&"buy") && sides[..2].contains(&"sell"),
        "{fills}"
    );
    assert!(
        sides[2..].contains(&"buy") && sides[2..].contains(&"sell"),
        "{fills}"
    );
    assert!(legs[2][0].as_bytes() > "2024-01-03".as_bytes(), "{fills}");
}
