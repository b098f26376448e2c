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
    // A wrong token fails with exit code 1 and says which token, on stderr.
    let (code, out, err) = herdctl_text(&["status", "--engine", &engine, "--token", "wrong-token"]);
    assert_eq!((code, out.as_str()), (1, ""), "{err}");
    assert_eq!(
        err.trim(),
        format!(
            "herdctl: the token given with --token or HERD_CONTROL_TOKEN is not known to the engine at {engine}"
        )
    );
    let token_file = dir.path().join("wrong.token");
    std::fs::write(&token_file, "wrong-token\n").unwrap();
    let file_arg = token_file.to_str().unwrap();
    let (code, out, err) = herdctl_text(&["status", "--engine", &engine, "--token-file", file_arg]);
    assert_eq!((code, out.as_str()), (1, ""), "{err}");
    assert_eq!(
        err.trim(),
        format!("herdctl: the token in {file_arg} is not known to the engine at {engine}")
    );
    // The gateway's address given as the engine's, and the other way round.
    let (code, out, err) =
        herdctl_text(&["status", "--engine", &gateway, "--token", CONTROL_TOKEN]);
    assert_eq!((code, out.as_str()), (1, ""), "{err}");
    assert_eq!(
        err.trim(),
        format!("herdctl: {gateway} is a gateway, not an engine")
    );
    let (code, _, err) = herdctl_text(&["engines", "--gateway", &engine, "--token", ADMIN_TOKEN]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(
        err.trim(),
        format!("herdctl: {engine} is an engine, not a gateway")
    );
    // An engine's token where the admin token is needed.
    let (code, _, err) = herdctl_text(&[
        "engines",
        "--gateway",
        &gateway,
        "--token",
        &engine_token("e0"),
    ]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(
        err.trim(),
        "herdctl: the token given with --token or HERD_GATEWAY_TOKEN is an engine's token; \
         this command needs the gateway's admin token"
    );
}

#[test]
fn herdctl_errors_say_what_is_wrong() {
    // A port nothing listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let (code, out, err) = herdctl_text(&["status", "--engine", &url, "--token", "t"]);
    assert_eq!((code, out.as_str()), (1, ""), "{err}");
    assert_eq!(
        err.trim(),
        format!("herdctl: cannot connect to {url}: connection refused (nothing listens there)")
    );
    // No token anywhere: not in flags, the environment or .herd/local/.
    let empty = tempfile::tempdir().unwrap();
    let out = Command::new(bin_path("herdctl").unwrap())
        .args(["status", "--engine", &url])
        .current_dir(empty.path())
        .env_remove("HERD_CONTROL_TOKEN")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!((out.status.code(), out.stdout.len()), (Some(1), 0), "{err}");
    assert_eq!(
        err.trim(),
        "herdctl: no token: set HERD_CONTROL_TOKEN or pass --token (or --token-file); \
         the local herd's .herd/local/control.token does not exist here either"
    );
    let out = Command::new(bin_path("herdctl").unwrap())
        .args(["engines", "--gateway", &url])
        .current_dir(empty.path())
        .env_remove("HERD_GATEWAY_TOKEN")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("set HERD_GATEWAY_TOKEN or pass --token"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A paper gateway and engine e0 with the funding orchestrator on (short
/// cycles; fees spread over a day as in the local herd, so the paper
/// venue's ETH and SOL perps are worth hedging).
async fn funding_herd(dir: &std::path::Path) -> (herd_tests::GatewayProc, herd_tests::EngineProc) {
    let gw = herd_tests::GatewayProc::start(dir, 1, "[paper]\nhistory_minutes = 0\n")
        .await
        .unwrap();
    let e0 = herd_tests::EngineProc::start(dir, "e0", &gw.proc.addr, FUNDING_ENGINE)
        .await
        .unwrap();
    (gw, e0)
}

const FUNDING_ENGINE: &str = "[funding]\nenabled = true\ncycle_interval_ms = 200\n\
    min_holding_periods = 24\npoll_interval_ms = 25\nleg_timeout_ms = 3000\n";

/// `herdctl funding status -o json` on `engine`.
fn funding_status(engine: &str) -> serde_json::Value {
    let (code, v) = herdctl_json(&[
        "funding",
        "status",
        "--engine",
        engine,
        "--token",
        herd_tests::CONTROL_TOKEN,
    ]);
    assert_eq!(code, 0, "{v}");
    v
}

fn active_positions(f: &serde_json::Value) -> Vec<serde_json::Value> {
    f["positions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["state"] == "open")
        .cloned()
        .collect()
}

/// Waits until `check` holds on `herdctl funding status`.
async fn wait_funding(
    engine: &str,
    what: &str,
    check: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    herd_tests::wait_until(what, std::time::Duration::from_secs(40), || {
        let f = funding_status(engine);
        let ok = check(&f);
        async move { Ok(ok.then_some(f)) }
    })
    .await
    .unwrap()
}

/// herdctl with `args` (no `--output`): (exit code, stdout, stderr).
fn herdctl_text(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin_path("herdctl").unwrap())
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn herdctl_funding_status_pause_limits_close_resume() {
    use herd_tests::CONTROL_TOKEN;
    let dir = tempfile::tempdir().unwrap();
    let (_gw, e0) = funding_herd(dir.path()).await;
    let engine = e0.proc.url();
    let base = ["--engine", engine.as_str(), "--token", CONTROL_TOKEN];
    let run = |cmd: &[&str]| {
        let mut args = cmd.to_vec();
        args.extend_from_slice(&base);
        herdctl_json(&args)
    };
    let text = |cmd: &[&str]| {
        let mut args = cmd.to_vec();
        args.extend_from_slice(&base);
        herdctl_text(&args)
    };

    let f = wait_funding(&engine, "a hedge open", |f| !active_positions(f).is_empty()).await;
    assert_eq!(
        (f["enabled"].as_bool(), f["mode"].as_str()),
        (Some(true), Some("paper"))
    );
    assert!(f["cycles"]["run"].as_u64().unwrap() >= 1, "{f}");
    assert_eq!(f["limits"]["max_positions"], 5, "{f}");
    assert!(!f["ranking"].as_array().unwrap().is_empty(), "{f}");
    let symbol = active_positions(&f)[0]["symbol"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, table, _) = text(&["funding", "status"]);
    assert_eq!(code, 0);
    assert!(
        table.starts_with("funding (paper, running): opening on"),
        "{table}"
    );
    assert!(
        table.contains(&symbol) && table.contains("annualized"),
        "{table}"
    );

    let (code, r) = run(&["funding", "pause", "--reason", "cli drill"]);
    assert_eq!((code, r["ok"].as_bool()), (0, Some(true)), "{r}");
    let f = funding_status(&engine);
    assert_eq!(
        (f["opening_paused"].as_bool(), f["pause_reason"].as_str()),
        (Some(true), Some("cli drill"))
    );

    let (code, l) = run(&[
        "funding",
        "limits",
        "--max-position-usd",
        "500",
        "--max-total-exposure-usd",
        "1500",
        "--max-positions",
        "2",
    ]);
    assert_eq!(code, 0, "{l}");
    assert_eq!(
        (
            l["max_position_usd"].as_str(),
            l["max_total_exposure_usd"].as_str(),
            l["max_positions"].as_u64()
        ),
        (Some("500"), Some("1500"), Some(2))
    );
    assert_eq!(funding_status(&engine)["limits"]["max_positions"], 2);
    // Refused values: exit 2 with the engine's INVALID_ARGUMENT message;
    // nothing changes.
    for (args, field) in [
        (vec!["--max-position-usd", "lots"], "max_position_usd"),
        (
            vec!["--max-total-exposure-usd", "100"],
            "max_total_exposure_usd",
        ),
        (vec!["--margin-critical", "0.5"], "margin_critical"),
    ] {
        let mut cmd = vec!["funding", "limits"];
        cmd.extend(args);
        let (code, _, err) = text(&cmd);
        assert_eq!(code, 2, "{field}: {err}");
        assert!(
            err.contains(&format!("invalid limit: {field}")),
            "{field}: {err}"
        );
    }
    assert_eq!(funding_status(&engine)["limits"]["max_position_usd"], "500");

    let (code, r) = run(&["funding", "close", &symbol, "--yes"]);
    assert_eq!((code, r["ok"].as_bool()), (0, Some(true)), "{r}");
    let f = funding_status(&engine);
    assert!(
        f["positions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["symbol"] == symbol.as_str() && p["state"] == "closed"),
        "{f}"
    );
    let (code, r) = run(&["funding", "close", "NOPEUSDT-PERP", "--yes"]);
    assert_eq!((code, r["ok"].as_bool()), (1, Some(false)), "{r}");
    // Unconfirmed (no terminal): nothing done.
    assert_eq!(text(&["funding", "close", &symbol]).0, 3);
    // Nothing to clear.
    let (code, r) = run(&["funding", "clear-emergency"]);
    assert_eq!(code, 1, "{r}");
    assert!(
        r["message"].as_str().unwrap().contains("no emergency stop"),
        "{r}"
    );

    let (code, _) = run(&["funding", "resume"]);
    assert_eq!(code, 0);
    wait_funding(&engine, "a hedge open again", |f| {
        f["opening_paused"] == false && !active_positions(f).is_empty()
    })
    .await;
}

/// RPC, SIGUSR1 and a critical margin ratio fire the emergency controller
/// together: each position is closed once. The latch survives a restart
/// (the engine comes back halted, nothing opens) until herdctl clears it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn funding_emergency_fires_once_and_its_latch_survives_a_restart() {
    use herd_tests::CONTROL_TOKEN;
    use rust_decimal::Decimal;
    let dir = tempfile::tempdir().unwrap();
    let (_gw, mut e0) = funding_herd(dir.path()).await;
    let engine = e0.proc.url();
    let f = wait_funding(&engine, "two hedges open", |f| {
        active_positions(f).len() >= 2 && f["margin_ratio"].as_str().is_some_and(|r| !r.is_empty())
    })
    .await;
    let ids: Vec<String> = active_positions(&f)
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_string())
        .collect();
    let ratio: Decimal = f["margin_ratio"].as_str().unwrap().parse().unwrap();
    assert!(ratio > Decimal::ZERO, "{f}");
    let alert = (ratio / Decimal::from(4)).round_dp(8).to_string();
    let critical = (ratio / Decimal::from(2)).round_dp(8).to_string();

    // All three triggers at once.
    let pid = e0.proc.child.id().unwrap().to_string();
    let rpc = {
        let engine = engine.clone();
        tokio::task::spawn_blocking(move || {
            herdctl_json(&[
                "emergency-stop",
                "--yes",
                "--reason",
                "drill",
                "--engine",
                &engine,
                "--token",
                CONTROL_TOKEN,
            ])
        })
    };
    let usr1 = tokio::task::spawn_blocking(move || {
        Command::new("kill").args(["-USR1", &pid]).status().unwrap()
    });
    let margin = {
        let engine = engine.clone();
        tokio::task::spawn_blocking(move || {
            herdctl_json(&[
                "funding",
                "limits",
                "--margin-alert",
                &alert,
                "--margin-critical",
                &critical,
                "--engine",
                &engine,
                "--token",
                CONTROL_TOKEN,
            ])
        })
    };
    let (rpc, usr1, margin) = tokio::join!(rpc, usr1, margin);
    assert!(usr1.unwrap().success());
    assert_eq!(margin.unwrap().0, 0);
    let (code, r) = rpc.unwrap();
    assert_eq!(code, 0, "{r}");
    let f = wait_funding(&engine, "the emergency done", |f| {
        f["emergency"]["done"] == true
    })
    .await;
    let e = &f["emergency"];
    assert!(
        e["triggered"] == true && e["failures"].as_array().unwrap().is_empty(),
        "{e}"
    );
    let reason = e["reason"].as_str().unwrap();
    assert!(
        reason == "drill" || reason == "SIGUSR1" || reason.starts_with("maintenance margin ratio"),
        "{reason}"
    );
    assert!(active_positions(&f).is_empty(), "{f}");
    assert_eq!(f["opening_paused"], true);
    let log = e0.proc.log_text();
    assert!(
        log.contains("already fired; ignored"),
        "a second trigger is ignored"
    );

    // Each position was closed once: one spot sell and one perp buy.
    e0.proc.terminate().await.unwrap();
    let store = herd_engine::store::Store::open_sqlite_dir(&e0.data_dir, "e0")
        .await
        .unwrap();
    for id in &ids {
        let mut closes: Vec<String> = store
            .funding_fills(id)
            .await
            .unwrap()
            .iter()
            .filter(|x| x.purpose != "open")
            .map(|x| format!("{}:{}", x.leg, x.side))
            .collect();
        closes.sort();
        assert_eq!(closes, vec!["perp:buy", "spot:sell"], "{id}");
    }
    store.close().await;

    // Restart: halted, latched, nothing opens.
    let e0 = herd_tests::EngineProc::start(dir.path(), "e0", &_gw.proc.addr, FUNDING_ENGINE)
        .await
        .unwrap();
    let engine = e0.proc.url();
    let f = funding_status(&engine);
    let run0 = f["cycles"]["run"].as_u64().unwrap();
    let f = wait_funding(&engine, "three cycles after the restart", |f| {
        f["cycles"]["run"].as_u64().unwrap() >= run0 + 3
    })
    .await;
    assert_eq!(f["emergency"]["triggered"], true, "{f}");
    assert_eq!(f["emergency"]["reason"].as_str(), Some(reason));
    assert_eq!(f["opening_paused"], true);
    assert!(active_positions(&f).is_empty(), "{f}");
    let (_, s) = herdctl_json(&["status", "--engine", &engine, "--token", CONTROL_TOKEN]);
    assert_eq!(s["mode"], "HALTED", "{s}");
    assert!(
        s["pause_reason"].as_str().unwrap().contains("latched"),
        "{s}"
    );

    let (code, r) = herdctl_json(&[
        "funding",
        "clear-emergency",
        "--engine",
        &engine,
        "--token",
        CONTROL_TOKEN,
    ]);
    assert_eq!((code, r["ok"].as_bool()), (0, Some(true)), "{r}");
    assert_eq!(
        herdctl_json(&["resume", "--engine", &engine, "--token", CONTROL_TOKEN]).0,
        0
    );
    let f = wait_funding(&engine, "hedges open after the clear", |f| {
        !active_positions(f).is_empty()
    })
    .await;
    assert_eq!(f["emergency"]["triggered"], false);
}

/// Waits until none of `pids` runs any more.
async fn wait_all_exited(pids: &[u32], what: &str) {
    herd_tests::wait_until(what, std::time::Duration::from_secs(40), || async {
        Ok(pids
            .iter()
            .all(|p| !herd_tests::process_alive(*p))
            .then_some(()))
    })
    .await
    .unwrap();
}

/// Issue 22: `herdctl up` owns its children. SIGTERM (as a process manager
/// sends) stops every child gracefully, each exits 0 and nothing remains;
/// after a kill -9 of `herdctl up` the children exit on their own
/// (parent-death signal), where before they ran on, re-parented to init.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn herdctl_up_owns_its_children() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(".herd");
    let mut up = herd_tests::HerdctlUp::start(&dir, &[]).await.unwrap();
    let pids = up.pids();
    assert!(pids.iter().all(|p| herd_tests::process_alive(*p)));
    up.signal("TERM").await.unwrap();
    let status = tokio::time::timeout(std::time::Duration::from_secs(40), up.child.wait())
        .await
        .unwrap()
        .unwrap();
    let err = up.stderr_text();
    assert!(
        status.success(),
        "herdctl up after SIGTERM: {status}\n{err}"
    );
    for name in ["engine-0", "engine-1", "gateway"] {
        assert!(
            err.contains(&format!("{name} stopped (exit status: 0)")),
            "{name} did not exit 0 after SIGTERM:\n{err}"
        );
    }
    assert!(
        pids.iter().all(|p| !herd_tests::process_alive(*p)),
        "a child outlived herdctl up: {pids:?}"
    );

    let mut up = herd_tests::HerdctlUp::start(&dir, &[]).await.unwrap();
    let pids = up.pids();
    up.child.kill().await.unwrap();
    wait_all_exited(&pids, "the children of a killed herdctl up to exit").await;
}

/// Issue 23, bug 7: a second `herdctl up` in the directory of a running
/// herd is refused before it touches anything (it used to truncate the live
/// gateway.log and rewrite .herd/local/), naming the running one's pid; and
/// a new run keeps the previous run's logs as *.log.1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_herdctl_up_is_refused_and_logs_rotate() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(".herd");
    let mut up = herd_tests::HerdctlUp::start(&dir, &[]).await.unwrap();
    let gateway_log = dir.join("logs/gateway.log");
    let config = dir.join("local/gateway.toml");
    let log_before = std::fs::read(&gateway_log).unwrap();
    let config_before = std::fs::read_to_string(&config).unwrap();
    assert!(!log_before.is_empty());

    let dir_arg = dir.display().to_string();
    let (code, _, err) = herdctl_text(&[
        "up",
        "--check",
        "--dir",
        &dir_arg,
        "--gateway-port",
        "0",
        "--engine-port",
        "0",
        "--http-port",
        "0",
    ]);
    let pid = up.child.id().unwrap();
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!("another herdctl up (pid {pid})")) && err.contains(&dir_arg),
        "{err}"
    );
    let log_after = std::fs::read(&gateway_log).unwrap();
    assert!(
        log_after.starts_with(&log_before),
        "the running herd's gateway.log was rewritten"
    );
    assert_eq!(std::fs::read_to_string(&config).unwrap(), config_before);
    assert!(
        up.pids().iter().all(|p| herd_tests::process_alive(*p)),
        "the running herd lost a process"
    );

    up.signal("TERM").await.unwrap();
    assert!(up.child.wait().await.unwrap().success());
    let first_run: Vec<Vec<u8>> = ["gateway.log", "engine-0.log", "engine-1.log"]
        .iter()
        .map(|n| std::fs::read(dir.join("logs").join(n)).unwrap())
        .collect();
    let mut up = herd_tests::HerdctlUp::start(&dir, &[]).await.unwrap();
    for (name, before) in ["gateway.log", "engine-0.log", "engine-1.log"]
        .iter()
        .zip(&first_run)
    {
        let kept = std::fs::read(dir.join("logs").join(format!("{name}.1"))).unwrap();
        assert_eq!(&kept, before, "{name}.1 is the previous run's {name}");
        let now = std::fs::read(dir.join("logs").join(name)).unwrap();
        assert!(!now.starts_with(before), "{name} starts afresh");
    }
    // SIGHUP (a closed terminal) stops the herd as SIGTERM does.
    up.signal("HUP").await.unwrap();
    assert!(
        up.child.wait().await.unwrap().success(),
        "{}",
        up.stderr_text()
    );
    assert!(up.pids().iter().all(|p| !herd_tests::process_alive(*p)));
}

/// The client order ids an engine of the local herd lists as open, and the
/// ones its gateway lists for it.
async fn local_open_orders(
    up: &herd_tests::HerdctlUp,
    engine: &str,
    token: &str,
) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    let engine_url = up.url(engine);
    let status = tokio::task::spawn_blocking(move || {
        herdctl_json(&[
            "status",
            "--engine",
            &engine_url,
            "--token",
            "herd-local-control",
        ])
    })
    .await?;
    anyhow::ensure!(status.0 == 0, "herdctl status: {}", status.1);
    let mut engine_ids: Vec<String> = status.1["open_orders"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|o| o["client_order_id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let mut gw = herd_tests::gateway_client(&up.url("gateway"), token).await?;
    let mut gateway_ids: Vec<String> = gw
        .list_open_orders(herd_proto::gateway::ListOpenOrdersRequest::default())
        .await?
        .into_inner()
        .orders
        .into_iter()
        .map(|o| o.client_order_id)
        .collect();
    engine_ids.sort();
    gateway_ids.sort();
    Ok((engine_ids, gateway_ids))
}

/// Issue 22, found 1: stop the local herd with working orders and start it
/// again in the same directory: the paper account persists under .herd/,
/// so the engines' open orders are the gateway's (the paper venue used to
/// start empty while e0 restored its journal and kept orders that existed
/// nowhere). `--fresh` then starts from nothing, saying what it removes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_herd_restarts_with_the_same_account() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(".herd");
    let mut up = herd_tests::HerdctlUp::start(&dir, &[]).await.unwrap();
    let before = herd_tests::wait_until(
        "e0 working orders the gateway knows",
        std::time::Duration::from_secs(60),
        || async {
            let (engine, gateway) =
                local_open_orders(&up, "engine-0", "herd-local-engine-0").await?;
            Ok((!engine.is_empty() && engine == gateway).then_some(engine))
        },
    )
    .await
    .unwrap();
    // SIGINT (Ctrl-C) stops the herd as SIGTERM does.
    up.signal("INT").await.unwrap();
    assert!(
        up.child.wait().await.unwrap().success(),
        "{}",
        up.stderr_text()
    );
    assert!(dir.join("data/paper.json").exists());

    let mut up = herd_tests::HerdctlUp::start(&dir, &[]).await.unwrap();
    for (engine, token) in [
        ("engine-0", "herd-local-engine-0"),
        ("engine-1", "herd-local-engine-1"),
    ] {
        let agreed = herd_tests::wait_until(
            "the engine's open orders to equal the gateway's",
            std::time::Duration::from_secs(60),
            || async {
                let (e, g) = local_open_orders(&up, engine, token).await?;
                Ok((e == g).then_some(()))
            },
        )
        .await;
        if let Err(e) = agreed {
            let now = local_open_orders(&up, engine, token).await.unwrap();
            panic!("{engine}: {e}; engine vs gateway {now:?}");
        }
    }
    // Every order of the first run is known to the paper account (open,
    // or closed since), not only to e0's journal.
    let known = known_orders(&up, &before).await;
    assert_eq!(known, before, "the first run's orders after the restart");
    up.signal("TERM").await.unwrap();
    assert!(up.child.wait().await.unwrap().success());

    let mut up = herd_tests::HerdctlUp::start(&dir, &["--fresh"])
        .await
        .unwrap();
    assert!(
        up.printed.contains("--fresh: removing")
            && up.printed.contains("paper.json")
            && up.printed.contains("e0.db"),
        "{}",
        up.printed
    );
    assert_eq!(known_orders(&up, &before).await, Vec::<String>::new());
    let (e0, _) = local_open_orders(&up, "engine-0", "herd-local-engine-0")
        .await
        .unwrap();
    assert!(
        e0.iter().all(|id| !before.contains(id)),
        "--fresh kept e0's journal: {e0:?}"
    );
    up.signal("TERM").await.unwrap();
    assert!(up.child.wait().await.unwrap().success());
}

/// Which of e0's client order ids `ids` the local gateway knows.
async fn known_orders(up: &herd_tests::HerdctlUp, ids: &[String]) -> Vec<String> {
    let mut gw = herd_tests::gateway_client(&up.url("gateway"), "herd-local-engine-0")
        .await
        .unwrap();
    let mut known = Vec::new();
    for id in ids {
        let r = gw
            .query_orders(herd_proto::gateway::QueryOrdersRequest {
                client_order_ids: vec![id.clone()],
            })
            .await;
        match r {
            Ok(_) => known.push(id.clone()),
            Err(s) if s.code() == tonic::Code::NotFound => {}
            Err(s) => panic!("QueryOrders {id}: {s}"),
        }
    }
    known
}

/// The line a process printed on stderr that starts with `prefix`.
fn error_line(out: &std::process::Output, prefix: &str) -> String {
    let err = String::from_utf8_lossy(&out.stderr);
    err.lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} line in: {err}"))
        .to_string()
}

#[test]
fn startup_errors_name_the_path_and_say_each_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("engine.toml");
    std::fs::write(&config, "id = \"e0\"\n").unwrap();
    let engine = Command::new(bin_path("herd-engine").unwrap())
        .arg("--config")
        .arg(&config)
        .env("DATABASE_URL", "sqlite:///proc/nope/x.db")
        .env("HERD_GATEWAY_TOKEN", "gateway-token-long-enough")
        .env("HERD_CONTROL_TOKEN", "control-token-long-enough")
        .env("HERD_DATA_DIR", dir.path())
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    assert_eq!(engine.status.code(), Some(1));
    assert_eq!(
        error_line(&engine, "Error:"),
        "Error: cannot open the engine's store: cannot open the SQLite database /proc/nope/x.db: \
         error returned from database: (code: 14) unable to open database file"
    );
    let stderr = String::from_utf8_lossy(&engine.stderr);
    assert!(!stderr.contains("Caused by"), "{stderr}");

    let missing = dir.path().join("missing.toml");
    let gateway = Command::new(bin_path("herd-gateway").unwrap())
        .arg("--config")
        .arg(&missing)
        .output()
        .unwrap();
    assert_eq!(gateway.status.code(), Some(1));
    assert_eq!(
        error_line(&gateway, "Error:"),
        format!(
            "Error: cannot read config file {}: No such file or directory (os error 2)",
            missing.display()
        )
    );
    let herdctl = Command::new(bin_path("herdctl").unwrap())
        .arg("gateway")
        .arg("--config")
        .arg(&missing)
        .output()
        .unwrap();
    assert_eq!(herdctl.status.code(), Some(1));
    assert_eq!(
        error_line(&herdctl, "herdctl:"),
        format!(
            "herdctl: cannot read config file {}: No such file or directory (os error 2)",
            missing.display()
        )
    );
}

/// Issue 22: `herdctl reconcile` on a prepared difference (an open order
/// with e0's prefix that e0's journal does not know: placed with its token,
/// then deleted from the journal as a restore from an old backup would):
/// the dry run lists it with the action its rule takes (cancel,
/// the default policy) and changes nothing; without --yes and no terminal it
/// declines (exit 3); with --yes it applies; a second dry run finds nothing,
/// and status carries the operator's reconcile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn herdctl_reconcile_dry_run_then_apply_then_nothing() {
    use herd_tests::{CONTROL_TOKEN, EngineProc, GatewayProc, engine_token, wait_until};
    let dir = tempfile::tempdir().unwrap();
    let gw = GatewayProc::start(dir.path(), 1, "[paper]\nhistory_minutes = 0\n")
        .await
        .unwrap();
    let e0 = EngineProc::start(dir.path(), "e0", &gw.proc.addr, "")
        .await
        .unwrap();
    let engine = e0.proc.url();
    let base = ["--engine", engine.as_str(), "--token", CONTROL_TOKEN];
    wait_until(
        "engine connected",
        std::time::Duration::from_secs(30),
        || async {
            let (_, s) = herdctl_json(&[&["status"][..], &base[..]].concat());
            Ok(s["gateway_connected"]
                .as_bool()
                .unwrap_or(false)
                .then_some(()))
        },
    )
    .await
    .unwrap();
    let mut gateway = herd_tests::gateway_client(&gw.proc.url(), &engine_token("e0"))
        .await
        .unwrap();
    let stray = "stray-1";
    // Placed with e0's token behind e0's back: the gateway streams it to e0,
    // which journals it ...
    gateway
        .place_order(herd_proto::gateway::PlaceOrderRequest {
            client_order_id: stray.into(),
            symbol: "DOGEUSD".into(),
            side: herd_proto::gateway::Side::Buy as i32,
            order_type: herd_proto::gateway::OrderType::Limit as i32,
            volume: "100".into(),
            price: "0.01".into(),
            post_only: true,
            ..Default::default()
        })
        .await
        .unwrap();
    let journal = herd_engine::store::Store::open_sqlite_dir(&e0.data_dir, "e0")
        .await
        .unwrap();
    wait_until(
        "e0 journaled the stray order from its stream",
        std::time::Duration::from_secs(30),
        || async { Ok(journal.order(stray).await?.map(|_| ())) },
    )
    .await
    .unwrap();
    // ... and then its journal loses it (restored from an older backup).
    journal
        .execute_raw("DELETE FROM orders WHERE client_order_id = 'stray-1'")
        .await
        .unwrap();
    journal.close().await;
    let open_at_gateway = || {
        let mut gateway = gateway.clone();
        async move {
            gateway
                .list_open_orders(herd_proto::gateway::ListOpenOrdersRequest::default())
                .await
                .unwrap()
                .into_inner()
                .orders
                .into_iter()
                .map(|o| o.client_order_id)
                .collect::<Vec<_>>()
        }
    };
    let reconcile = |extra: &[&str]| {
        let mut args = vec!["reconcile"];
        args.extend_from_slice(&base);
        args.extend_from_slice(extra);
        herdctl_text(&args)
    };

    let (code, out, err) = reconcile(&["--dry-run"]);
    assert_eq!(code, 0, "{err}");
    let line = out
        .lines()
        .find(|l| l.contains(stray))
        .unwrap_or_else(|| panic!("the stray order is not listed:\n{out}"));
    let cells: Vec<&str> = line.split('|').map(str::trim).collect();
    assert_eq!(
        (cells[0], cells[1], cells[4]),
        ("unknown_open_order", stray, "cancel"),
        "{out}"
    );
    assert!(cells[3].contains("policy: cancel"), "{out}");
    assert!(
        out.contains("1 difference(s) (dry run: nothing changed)"),
        "{out}"
    );
    assert_eq!(open_at_gateway().await, vec![stray.to_string()]);

    // No terminal to ask on and no --yes: declined, nothing done.
    let (code, _, err) = reconcile(&[]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("pass --yes"), "{err}");
    assert_eq!(open_at_gateway().await, vec![stray.to_string()]);

    let (code, out, err) = reconcile(&["--yes"]);
    assert_eq!(code, 0, "{out}{err}");
    let line = out.lines().find(|l| l.contains(stray)).unwrap_or_default();
    assert!(line.ends_with("done"), "{out}");
    assert!(out.contains("1 applied, 0 failed"), "{out}");
    assert_eq!(open_at_gateway().await, Vec::<String>::new());

    let (code, out, err) = reconcile(&["--dry-run"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.trim(),
        "no differences: the journal and the gateway agree"
    );
    let (_, s) = herdctl_json(&[&["status"][..], &base[..]].concat());
    let last = &s["last_reconcile"];
    assert_eq!(last["trigger"], "operator", "{s}");
    assert_eq!(last["counts"][0]["kind"], "unknown_open_order", "{s}");
    assert_eq!(last["counts"][0]["count"], 1, "{s}");
    assert_eq!(last["applied"], 1, "{s}");
}

/// Issue 22, found 1, as it was: the local herd stops and its paper venue
/// comes back empty (the state file gone) while e0 restores its journal.
/// The start reconcile closes every working order neither the gateway nor
/// the venue knows as lost (journaled), so afterwards each engine's open
/// orders are exactly the gateway's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_herd_whose_venue_forgot_everything_agrees_after_reconcile() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(".herd");
    let mut up = herd_tests::HerdctlUp::start(&dir, &[]).await.unwrap();
    let before = herd_tests::wait_until(
        "e0 working orders the gateway knows",
        std::time::Duration::from_secs(60),
        || async {
            let (engine, gateway) =
                local_open_orders(&up, "engine-0", "herd-local-engine-0").await?;
            Ok((!engine.is_empty() && engine == gateway).then_some(engine))
        },
    )
    .await
    .unwrap();
    up.signal("TERM").await.unwrap();
    assert!(
        up.child.wait().await.unwrap().success(),
        "{}",
        up.stderr_text()
    );
    // What e0's journal held working when it stopped.
    let store = herd_engine::store::Store::open_sqlite_dir(&dir.join("data"), "e0")
        .await
        .unwrap();
    let working: Vec<String> = store
        .working_orders()
        .await
        .unwrap()
        .into_iter()
        .filter(|o| o.status != "pending")
        .map(|o| o.client_order_id)
        .collect();
    store.close().await;
    assert!(!working.is_empty(), "e0 stopped with no working orders");
    // The venue forgets the account: what the local herd did before
    // paper.state_file existed.
    // (the snapshot and the account record written beside it).
    let mut removed = 0;
    for f in std::fs::read_dir(dir.join("data")).unwrap() {
        let f = f.unwrap();
        if f.file_name().to_string_lossy().starts_with("paper.json") {
            std::fs::remove_file(f.path()).unwrap();
            removed += 1;
        }
    }
    assert!(removed > 0, "no paper state file under {}", dir.display());

    let mut up = herd_tests::HerdctlUp::start(&dir, &[]).await.unwrap();
    for (engine, token) in [
        ("engine-0", "herd-local-engine-0"),
        ("engine-1", "herd-local-engine-1"),
    ] {
        let agreed = herd_tests::wait_until(
            "the engine's open orders to equal the gateway's",
            std::time::Duration::from_secs(60),
            || async {
                let (e, g) = local_open_orders(&up, engine, token).await?;
                Ok((e == g).then_some(e))
            },
        )
        .await;
        match agreed {
            Ok(open) => assert!(
                open.iter().all(|id| !before.contains(id)),
                "{engine} still lists orders of the forgotten account: {open:?}"
            ),
            Err(e) => {
                let now = local_open_orders(&up, engine, token).await.unwrap();
                panic!("{engine}: {e}; engine vs gateway {now:?}");
            }
        }
    }
    // Each forgotten order was closed as lost, and that is journaled.
    let store = herd_engine::store::Store::open_sqlite_dir(&dir.join("data"), "e0")
        .await
        .unwrap();
    for id in &working {
        let row = store.order(id).await.unwrap().unwrap();
        assert_eq!(row.status, "lost", "{id}");
    }
    let journal = store.journal("reconcile").await.unwrap();
    let lost = journal.iter().filter(|(kind, _, _)| kind == "lost").count();
    assert_eq!(lost, working.len(), "{journal:?}");
    store.close().await;
    up.signal("TERM").await.unwrap();
    assert!(up.child.wait().await.unwrap().success());
}
