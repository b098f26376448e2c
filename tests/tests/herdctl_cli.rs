//! herdctl as users run it: the regime command on a CSV of candles, and the
//! exit codes scripts rely on.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

use herd_tests::{bin_path, workspace_root};

#[test]
fn regime_prints_one_row_per_candle_after_warm_up() {
    let herdctl = bin_path("herdctl").unwrap();
    let candles = workspace_root().join("engine-service/regime/reference/candles.csv");
    let n_candles = std::fs::read_to_string(&candles).unwrap().lines().count() - 1;
    let out = Command::new(&herdctl)
        .args(["regime", "--candles"])
        .arg(&candles)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("time,p_bearish,p_ranging,p_bullish,regime,confidence,bias")
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(
        rows.len(),
        n_candles - herd_regime_warmup(),
        "one row per candle after the warm-up"
    );
    for r in &rows {
        let p: f64 = r[1..4].iter().map(|x| x.parse::<f64>().unwrap()).sum();
        assert!((p - 1.0).abs() < 1e-5, "posteriors sum to 1: {r:?}");
        assert!(["BEARISH", "RANGING", "BULLISH"].contains(&r[4]), "{r:?}");
    }
    let json = Command::new(&herdctl)
        .args(["regime", "--output", "json", "--candles"])
        .arg(&candles)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["rows"].as_array().unwrap().len(), rows.len());
}

fn herd_regime_warmup() -> usize {
    34
}

#[test]
fn bad_usage_and_missing_files_have_distinct_exit_codes() {
    let herdctl = bin_path("herdctl").unwrap();
    let usage = Command::new(&herdctl).args(["regime"]).output().unwrap();
    assert_eq!(usage.status.code(), Some(2), "clap usage error");
    let missing = Command::new(&herdctl)
        .args(["regime", "--candles", "/nonexistent.csv"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot read /nonexistent.csv"));
    let declined = Command::new(&herdctl)
        .args([
            "emergency-stop",
            "--engine",
            "http://127.0.0.1:1",
            "--token",
            "x",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        declined.status.code(),
        Some(3),
        "no terminal to confirm on: declined, nothing done"
    );
}
