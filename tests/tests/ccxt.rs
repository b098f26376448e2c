//! Acceptance by an independent client: the Python ccxt library (pinned,
//! installed into `.herd/tools/ccxt` by `scripts/install-test-tools`) runs
//! its unified flow against `kraken-sim` and `bybit-sim` as real processes,
//! unchanged but for its API URLs, and `tests/ccxt/flow.py` checks every
//! value ccxt parses against what the simulator booked.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use herd_tests::kraken_harness::{API_KEY, API_SECRET, SimProcess};
use herd_tests::procs::Proc;
use herd_tests::workspace_root;

const DEADLINE: Duration = Duration::from_secs(120);

/// Where ccxt is installed: `HERD_CCXT_PATH`, else `.herd/tools/ccxt`.
fn ccxt_path() -> PathBuf {
    let dir = std::env::var_os("HERD_CCXT_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".herd/tools/ccxt"));
    assert!(
        dir.join("ccxt").is_dir(),
        "ccxt is not installed in {}: run scripts/install-test-tools ccxt (the README's test command does)",
        dir.display()
    );
    dir
}

/// Runs the flow script for `venue` and returns its summary line.
async fn flow(venue: &str, url: &str, key: &str, secret: &str) -> serde_json::Value {
    let script = workspace_root().join("tests/ccxt/flow.py");
    let out = tokio::time::timeout(
        DEADLINE,
        tokio::process::Command::new("python3")
            .arg(&script)
            .args([venue, url, key, secret])
            .env("PYTHONPATH", ccxt_path())
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the ccxt flow did not finish in time")
    .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "ccxt's {venue} flow failed:\n{stderr}\n{stdout}"
    );
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("summary {last:?}: {e}"))
}

#[tokio::test]
async fn ccxt_kraken_unified_flow_matches_the_simulators_books() {
    let sim = SimProcess::spawn(&PathBuf::from(env!("CARGO_BIN_EXE_kraken-sim")), "pro", &[])
        .await
        .unwrap();
    let summary = flow("kraken", &sim.url(), API_KEY, API_SECRET).await;
    assert_eq!(summary["venue"], "kraken");
    assert_eq!(summary["orders"], 5);
    assert!(summary["trades"].as_u64().unwrap() >= 1, "{summary}");
    assert!(summary["checks"].as_u64().unwrap() >= 80, "{summary}");
}

#[tokio::test]
async fn ccxt_bybit_unified_flow_matches_the_simulators_books() {
    const KEY: &str = "ccxt-key";
    const SECRET: &str = "ccxt-secret";
    let dir = tempfile::tempdir().unwrap();
    let sim = Proc::start(
        Path::new(env!("CARGO_BIN_EXE_bybit-sim")),
        &[
            "--listen",
            "127.0.0.1:0",
            "--key",
            KEY,
            "--secret",
            SECRET,
            "--step-ms",
            "0",
        ],
        &dir.path().join("bybit-sim.log"),
        &[],
    )
    .await
    .unwrap();
    let summary = flow("bybit", &sim.url(), KEY, SECRET).await;
    assert_eq!(summary["venue"], "bybit");
    assert_eq!(summary["funding"], 1, "{summary}");
    assert_eq!(summary["orders"], 6, "{summary}");
    assert!(summary["checks"].as_u64().unwrap() >= 55, "{summary}");
}
