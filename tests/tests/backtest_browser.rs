#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The backtest's HTML report in a real headless browser (Debian's
//! chromium through playwright-core, driven by tests/browser/dashboard.cjs):
//! it loads from a file with no console or page errors, shows both charts
//! with their curves and the summary table, and asks for nothing from
//! elsewhere (the page's only resources are itself).
//!
//! Needs node, /usr/bin/chromium and playwright-core in .herd/tools/browser:
//! `scripts/install-test-tools` installs them. A missing one fails the test.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use herd_tests::{bin_path, workspace_root};
use serde_json::Value;

const INSTALL_HINT: &str = "run scripts/install-test-tools (it installs Debian's chromium and playwright-core into .herd/tools/browser)";

#[test]
fn report_html_opens_with_its_charts_and_no_errors() {
    let dir = tempfile::tempdir().unwrap();
    // A report from the three hand-checked candles plus a day of a sine.
    let mut csv = String::from("time,open,high,low,close,volume\n");
    let mut p = 0.1f64;
    for i in 0..1440i64 {
        let close = 0.1 * (1.0 + 0.02 * (std::f64::consts::TAU * (i + 1) as f64 / 40.0).sin());
        let (hi, lo) = (p.max(close) + 0.00006, p.min(close) - 0.00005);
        csv.push_str(&format!(
            "{},{p:.7},{hi:.7},{lo:.7},{close:.7},1000\n",
            1_704_067_200 + 60 * i
        ));
        p = close;
    }
    std::fs::write(dir.path().join("c.csv"), csv).unwrap();
    std::fs::write(
        dir.path().join("engine.toml"),
        "symbol = \"DOGEUSD\"\nregime_source = \"fixed\"\nfixed_regime = \"RANGING\"\n[rangers]\nenabled = true\n",
    )
    .unwrap();
    let report = dir.path().join("report");
    let out = Command::new(bin_path("herdctl").unwrap())
        .current_dir(dir.path())
        .args([
            "backtest",
            "--config",
            "engine.toml",
            "--candles",
            "c.csv",
            "--out",
        ])
        .arg(&report)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let pw = workspace_root().join(".herd/tools/browser/node_modules/playwright-core");
    assert!(pw.exists(), "{} missing: {INSTALL_HINT}", pw.display());
    let chromium = std::env::var("HERD_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "{chromium} missing: {INSTALL_HINT}"
    );
    let mut child = Command::new("node")
        .arg(workspace_root().join("tests/browser/dashboard.cjs"))
        .env("HERD_PLAYWRIGHT_CORE", &pw)
        .env("HERD_CHROMIUM", &chromium)
        .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(
            std::fs::File::create(dir.path().join("browser.log")).unwrap(),
        ))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start node: {e}; {INSTALL_HINT}"));
    let url = format!("file://{}", report.join("report.html").display());
    let commands = [
        serde_json::json!({"cmd": "open", "url": url}),
        serde_json::json!({"cmd": "eval", "js": "JSON.stringify({svgs: document.querySelectorAll('#equity svg, #drawdown svg').length, points: [...document.querySelectorAll('polyline')].map(p => p.points.numberOfItems), widths: [...document.querySelectorAll('svg')].map(s => s.getBoundingClientRect().width), summary: document.querySelectorAll('#summary tr').length, resources: performance.getEntriesByType('resource').length})"}),
        serde_json::json!({"cmd": "errors"}),
        serde_json::json!({"cmd": "quit"}),
    ];
    let mut stdin = child.stdin.take().unwrap();
    for c in &commands {
        writeln!(stdin, "{c}").unwrap();
    }
    let answers: Vec<Value> = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
        .collect();
    let status = child.wait().unwrap();
    let log = std::fs::read_to_string(dir.path().join("browser.log")).unwrap_or_default();
    // The greeting, then one answer per command.
    assert_eq!(answers.len(), 1 + commands.len(), "{answers:?}\n{log}");
    assert!(
        answers.iter().all(|a| a["ok"] == true),
        "{answers:?}\n{log}"
    );
    assert!(status.success(), "{log}");
    let page: Value = serde_json::from_str(answers[2]["value"].as_str().unwrap()).unwrap();
    assert_eq!(page["svgs"], 2, "{page}");
    let points: Vec<u64> = page["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_u64().unwrap())
        .collect();
    assert_eq!(
        points,
        [1440, 1440],
        "one point per candle in each chart: {page}"
    );
    assert!(
        page["widths"]
            .as_array()
            .unwrap()
            .iter()
            .all(|w| w.as_f64().unwrap() > 100.0),
        "{page}"
    );
    assert!(page["summary"].as_u64().unwrap() >= 10, "{page}");
    assert_eq!(page["resources"], 0, "the report fetched something: {page}");
    let errors = &answers[3]["value"];
    assert_eq!(errors["console"], serde_json::json!([]), "{errors}");
    assert_eq!(errors["page"], serde_json::json!([]), "{errors}");
}
