//! The headless-browser driver the dashboard tests share: Debian's
//! chromium driven by playwright-core through tests/browser/dashboard.cjs,
//! one JSON command per line in, one answer per line out. A missing tool
//! fails the test loudly (it is never skipped).

// Only tests drive this: a driver that misbehaves is a failed test, so it
// panics with what it saw rather than threading errors through every step.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::procs::workspace_root;

pub const INSTALL_HINT: &str = "run scripts/install-test-tools (it installs Debian's chromium and playwright-core into .herd/tools/browser)";

/// The browser driver: one JSON command per line in, one answer per line out.
pub struct Browser {
    pub child: Child,
    pub stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    log: PathBuf,
}

fn chromium_path() -> PathBuf {
    std::env::var_os("HERD_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// Fails loudly (never skips) when a browser tool is missing.
pub fn check_tools() -> PathBuf {
    let chromium = chromium_path();
    assert!(
        chromium.exists(),
        "{} not found: {INSTALL_HINT}",
        chromium.display()
    );
    let node = std::process::Command::new("node").arg("--version").output();
    assert!(
        node.as_ref().is_ok_and(|o| o.status.success()),
        "node is not installed or does not run ({node:?}): install Node.js, then {INSTALL_HINT}"
    );
    let pw = workspace_root().join(".herd/tools/browser/node_modules/playwright-core");
    assert!(
        pw.join("package.json").exists(),
        "playwright-core not found at {}: {INSTALL_HINT}",
        pw.display()
    );
    pw
}

impl Browser {
    pub async fn start(dir: &Path) -> Browser {
        let pw = check_tools();
        let log = dir.join("browser.log");
        let mut child = Command::new("node")
            .arg(workspace_root().join("tests/browser/dashboard.cjs"))
            .env("HERD_PLAYWRIGHT_CORE", &pw)
            .env("HERD_CHROMIUM", chromium_path())
            // Never fetch a browser at test time.
            .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start node: {e}; {INSTALL_HINT}"));
        let stdin = child.stdin.take().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut b = Browser {
            child,
            stdin,
            lines,
            log,
        };
        let hello = b.answer().await;
        println!("browser: {}", hello["value"]["browser"]);
        b
    }

    pub async fn answer(&mut self) -> Value {
        let line = tokio::time::timeout(Duration::from_secs(90), self.lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("the browser driver did not answer in 90 s"))
            .unwrap();
        let Some(line) = line else {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            panic!("the browser driver exited; its stderr:\n{log}");
        };
        let v: Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("driver said {line:?} ({e})"));
        if v["ok"] != true {
            panic!("browser: {}", serde_json::to_string_pretty(&v).unwrap());
        }
        v
    }

    /// Sends a command; returns (value, milliseconds it took).
    pub async fn call(&mut self, cmd: Value) -> (Value, u64) {
        let mut line = cmd.to_string();
        line.push('\n');
        tokio::time::timeout(Duration::from_secs(10), async {
            self.stdin.write_all(line.as_bytes()).await.unwrap();
            self.stdin.flush().await.unwrap();
        })
        .await
        .unwrap_or_else(|_| panic!("the browser driver does not read its commands"));
        let v = self.answer().await;
        (v["value"].clone(), v["ms"].as_u64().unwrap_or(0))
    }

    pub async fn wait(&mut self, what: &str, js: &str) -> u64 {
        println!("waiting in the page for {what}");
        self.call(json!({"cmd": "wait", "js": js, "timeout_ms": 45_000}))
            .await
            .1
    }

    pub async fn eval(&mut self, js: &str) -> Value {
        self.call(json!({"cmd": "eval", "js": js})).await.0
    }

    /// Quits the browser and waits for the driver to exit cleanly.
    pub async fn quit(mut self) {
        self.call(json!({"cmd": "quit"})).await;
        drop(self.stdin);
        let exit = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("the browser driver did not exit after quit"));
        assert!(
            exit.as_ref().is_ok_and(std::process::ExitStatus::success),
            "browser driver: {exit:?}"
        );
    }
}
