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

/// Runs herdctl with `args` and returns (exit code, parsed JSON stdout).
fn herdctl_json(args: &[&str]) -> (i32, serde_json::Value) {
    let out = Command::new(bin_path("herdctl").unwrap())
        .args(args)
        .args(["--output", "json"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{args:?}: {e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn herdctl_controls_a_running_herd() {
    use herd_tests::{
        ADMIN_TOKEN, CONTROL_TOKEN, EngineProc, GatewayProc, engine_token, wait_until,
    };
    let dir = tempfile::tempdir().unwrap();
    let gw = GatewayProc::start(dir.path(), 1, "[paper]\nhistory_minutes = 0\n")
        .await
        .unwrap();
    let e0 = EngineProc::start(dir.path(), "e0", &gw.proc.addr, "")
        .await
        .unwrap();
    let engine = e0.proc.url();
    let gateway = gw.proc.url();
    let base = ["--engine", engine.as_str(), "--token", CONTROL_TOKEN];
    let status = |extra: &[&str]| {
        let mut args = vec!["status"];
        args.extend_from_slice(&base);
        args.extend_from_slice(extra);
        herdctl_json(&args)
    };
    wait_until(
        "engine connected",
        std::time::Duration::from_secs(30),
        || async {
            Ok(status(&[]).1["gateway_connected"]
                .as_bool()
                .unwrap_or(false)
                .then_some(()))
        },
    )
    .await
    .unwrap();
    let (code, s) = status(&[]);
    assert_eq!(
        (code, s["engine_id"].as_str(), s["mode"].as_str()),
        (0, Some("e0"), Some("RUNNING"))
    );
    assert_eq!(s["rangers"]["enabled"], false);

    let run = |cmd: &[&str]| {
        let mut args = cmd.to_vec();
        args.extend_from_slice(&base);
        herdctl_json(&args)
    };
    assert_eq!(run(&["rangers", "enable"]).0, 0);
    assert_eq!(status(&[]).1["rangers"]["enabled"], true);
    assert_eq!(run(&["rangers", "disable"]).0, 0);
    assert_eq!(status(&[]).1["rangers"]["enabled"], false);
    assert_eq!(run(&["pause", "--reason", "cli test"]).0, 0);
    let s = status(&[]).1;
    assert_eq!(
        (s["mode"].as_str(), s["pause_reason"].as_str()),
        (Some("PAUSED"), Some("cli test"))
    );
    assert_eq!(run(&["resume"]).0, 0);
    assert_eq!(status(&[]).1["mode"], "RUNNING");
    let (code, r) = run(&["emergency-stop", "--yes", "--reason", "drill"]);
    assert_eq!((code, r["ok"].as_bool()), (0, Some(true)), "{r}");
    assert_eq!(status(&[]).1["mode"], "HALTED");

    let (code, b) = herdctl_json(&[
        "budget",
        "--gateway",
        &gateway,
        "--token",
        &engine_token("e0"),
    ]);
    assert_eq!((code, b["venue"].as_str()), (0, Some("paper")));
    let (code, l) = herdctl_json(&["engines", "--gateway", &gateway, "--token", ADMIN_TOKEN]);
    assert_eq!(code, 0);
    assert_eq!(l[0]["engine_id"], "e0");
    assert_eq!(l[0]["stream_connected"], true);
    // A wrong token fails with exit code 1.
    let out = Command::new(bin_path("herdctl").unwrap())
        .args(["status", "--engine", &engine, "--token", "wrong-token"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}
