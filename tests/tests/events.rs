//! The herd's event feed (issue 17, docs/events.md) with real processes:
//! gateway-produced events (fills, risk denials, refused tokens, start and
//! stop) in a durable log read by `StreamHerdEvents` and `herdctl events`,
//! and an engine's own events delivered exactly once after the gateway was
//! gone for a while.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Stdio;
use std::time::Duration;

use herd_proto::gateway as gpb;
use herd_tests::bin_path;
use herd_tests::procs::{
    ADMIN_TOKEN, EngineProc, GatewayOpts, GatewayProc, admin_client, engine_client, engine_token,
    free_port, gateway_client, wait_until,
};
use tokio::io::{AsyncBufReadExt, BufReader};

/// Everything the gateway's log holds now (no follow), oldest first.
async fn feed(url: &str, req: gpb::StreamHerdEventsRequest) -> anyhow::Result<Vec<gpb::HerdEvent>> {
    let mut admin = admin_client(url).await?;
    let mut s = admin.stream_herd_events(req).await?.into_inner();
    let mut out = Vec::new();
    while let Some(e) = s.message().await? {
        out.push(e);
    }
    Ok(out)
}

fn all() -> gpb::StreamHerdEventsRequest {
    gpb::StreamHerdEventsRequest::default()
}

fn kinds(v: &[gpb::HerdEvent]) -> Vec<&str> {
    v.iter().map(|e| e.kind.as_str()).collect()
}

async fn wait_for_kind(url: &str, kind: &str, n: usize) -> anyhow::Result<Vec<gpb::HerdEvent>> {
    wait_until(
        &format!("{n} {kind} event(s)"),
        Duration::from_secs(20),
        || async {
            let got = feed(
                url,
                gpb::StreamHerdEventsRequest {
                    kinds: vec![kind.to_string()],
                    ..all()
                },
            )
            .await?;
            Ok((got.len() >= n).then_some(got))
        },
    )
    .await
}

fn market_buy(id: &str, volume: &str) -> gpb::PlaceOrderRequest {
    gpb::PlaceOrderRequest {
        client_order_id: id.into(),
        symbol: "DOGEUSD".into(),
        side: gpb::Side::Buy as i32,
        order_type: gpb::OrderType::Market as i32,
        volume: volume.into(),
        price: String::new(),
        post_only: false,
        ..Default::default()
    }
}

#[tokio::test]
async fn gateway_events_are_logged_durably_and_read_by_herdctl() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let extra = "[risk.engines.e0]\nmax_order_volume = \"1000\"\n";
    let opts = GatewayOpts {
        port: free_port().unwrap(),
        state_dir: Some(state),
        ..GatewayOpts::default()
    };
    let mut gw = GatewayProc::start_with(dir.path(), 1, extra, &opts)
        .await
        .unwrap();
    let url = gw.proc.url();

    // A fill, a risk denial and a refused token.
    let mut e0 = gateway_client(&url, &engine_token("e0")).await.unwrap();
    e0.place_order(market_buy("ev-fill-1", "100"))
        .await
        .unwrap();
    let denied = e0.place_order(market_buy("ev-big-1", "5000")).await;
    assert!(denied.is_err(), "over max_order_volume");
    let mut stranger = gateway_client(&url, "not-a-token-at-all").await.unwrap();
    assert!(
        stranger
            .get_session(gpb::GetSessionRequest {})
            .await
            .is_err()
    );

    let fills = wait_for_kind(&url, "fill", 1).await.unwrap();
    let fill = fills.last().unwrap();
    assert_eq!(fill.engine, "e0");
    assert_eq!(fill.source, "gateway");
    assert_eq!(fill.instrument, "DOGEUSD");
    assert_eq!(fill.order_ids, ["ev-fill-1"]);
    let f = herd_proto::events::to_json(fill);
    assert_eq!(f["fields"]["complete"], true, "{f}");
    assert_eq!(f["fields"]["volume"], "100", "{f}");
    assert!(
        f["fields"]["price"]
            .as_str()
            .unwrap()
            .parse::<f64>()
            .unwrap()
            > 0.0
    );
    assert!(f["fields"].get("fee").is_some(), "{f}");
    assert_eq!(f["severity"], "notice");

    let denial = wait_for_kind(&url, "risk_denial", 1).await.unwrap();
    assert_eq!(denial[0].engine, "e0");
    assert_eq!(denial[0].severity, gpb::Severity::Warning as i32);
    let auth = wait_for_kind(&url, "auth_error", 1).await.unwrap();
    assert!(
        !auth[0].message.contains("not-a-token"),
        "the token never appears in an event: {}",
        auth[0].message
    );

    // Filters: severity and engine, and a bad filter named.
    let warnings = feed(
        &url,
        gpb::StreamHerdEventsRequest {
            min_severity: gpb::Severity::Warning as i32,
            ..all()
        },
    )
    .await
    .unwrap();
    assert!(
        warnings
            .iter()
            .all(|e| e.severity >= gpb::Severity::Warning as i32)
    );
    assert!(kinds(&warnings).contains(&"risk_denial"));
    assert!(!kinds(&warnings).contains(&"fill"));
    let bad = feed(
        &url,
        gpb::StreamHerdEventsRequest {
            engines: vec!["e7".into()],
            ..all()
        },
    )
    .await
    .unwrap_err();
    assert!(bad.to_string().contains("engines"), "{bad}");

    // herdctl: JSON Lines, filtered by kind.
    let herdctl = bin_path("herdctl").unwrap();
    let out = std::process::Command::new(&herdctl)
        .args(["events", "--gateway", &url, "--token", ADMIN_TOKEN])
        .args(["--kind", "fill", "--output", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["id"], fill.id.as_str());
    let table = std::process::Command::new(&herdctl)
        .args(["events", "--gateway", &url, "--token", ADMIN_TOKEN])
        .args(["--severity", "warning"])
        .output()
        .unwrap();
    let text = String::from_utf8(table.stdout).unwrap();
    assert!(text.starts_with("TIME"), "{text}");
    assert!(
        text.contains("risk_denial") && !text.contains(" fill "),
        "{text}"
    );

    // herdctl events --follow sees an event logged after it started.
    let mut follow = tokio::process::Command::new(&herdctl)
        .args([
            "events",
            "--follow",
            "--gateway",
            &url,
            "--token",
            ADMIN_TOKEN,
        ])
        .args(["--kind", "fill", "--output", "json", "--last", "0"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(follow.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(first.contains("ev-fill-1"), "the kept fill first: {first}");
    e0.place_order(market_buy("ev-fill-2", "100"))
        .await
        .unwrap();
    let next = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(next.contains("ev-fill-2"), "followed: {next}");
    follow.kill().await.unwrap();

    // The log survives a restart; a reader resumes after an id.
    let before = feed(&url, all()).await.unwrap();
    assert_eq!(before.first().unwrap().kind, "gateway_started");
    let status = gw.proc.terminate().await.unwrap();
    assert!(status.success());
    let gw2 = GatewayProc::start_with(dir.path(), 1, extra, &opts)
        .await
        .unwrap();
    let url = gw2.proc.url();
    let after = wait_until(
        "the second start's event",
        Duration::from_secs(20),
        || async {
            let v = feed(&url, all()).await?;
            Ok((v.iter().filter(|e| e.kind == "gateway_started").count() == 2).then_some(v))
        },
    )
    .await
    .unwrap();
    let ids = |v: &[gpb::HerdEvent]| v.iter().map(|e| e.id.clone()).collect::<Vec<_>>();
    assert_eq!(
        ids(&after[..before.len()]),
        ids(&before),
        "what was logged before the restart is kept, in order"
    );
    assert_eq!(after[before.len()].kind, "gateway_stopped");
    let resumed = feed(
        &url,
        gpb::StreamHerdEventsRequest {
            after_id: before.last().unwrap().id.clone(),
            ..all()
        },
    )
    .await
    .unwrap();
    assert_eq!(ids(&resumed), ids(&after[before.len()..]));
}

#[tokio::test]
async fn an_engine_cut_off_from_the_gateway_delivers_its_events_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let opts = GatewayOpts {
        port: free_port().unwrap(),
        state_dir: Some(state),
        ..GatewayOpts::default()
    };
    let mut gw = GatewayProc::start_with(dir.path(), 1, "", &opts)
        .await
        .unwrap();
    let addr = gw.proc.addr.clone();
    let mut engine = EngineProc::start(dir.path(), "e0", &addr, "")
        .await
        .unwrap();
    let started = wait_for_kind(&gw.proc.url(), "engine_started", 1)
        .await
        .unwrap();
    assert_eq!(started[0].source, "e0");

    // The gateway goes away; the engine keeps producing events.
    assert!(gw.proc.terminate().await.unwrap().success());
    let mut ctl = engine_client(&engine.proc.url()).await.unwrap();
    for reason in ["drill one", "drill two"] {
        ctl.emergency_stop(herd_proto::engine::EmergencyStopRequest {
            reason: reason.into(),
        })
        .await
        .unwrap();
    }
    let db = engine.db_url();
    let queued: i64 = {
        let pool = sqlx::SqlitePool::connect(&db).await.unwrap();
        let n = sqlx::query_scalar("SELECT COUNT(*) FROM event_outbox")
            .fetch_one(&pool)
            .await
            .unwrap();
        pool.close().await;
        n
    };
    assert_eq!(
        queued, 2,
        "both emergency stops wait in the engine's outbox"
    );

    // Back on the same address and state: delivered, once each.
    let gw2 = GatewayProc::start_with(dir.path(), 1, "", &opts)
        .await
        .unwrap();
    let url = gw2.proc.url();
    let stops = wait_for_kind(&url, "emergency_stop", 2).await.unwrap();
    let reasons: Vec<&str> = stops.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(
        reasons,
        ["emergency stop: drill one", "emergency stop: drill two"]
    );
    assert!(
        stops
            .iter()
            .all(|e| e.source == "e0" && e.severity == gpb::Severity::Critical as i32)
    );

    // A clean stop: engine_stopped goes out, and nothing is left behind or doubled.
    assert!(engine.proc.terminate().await.unwrap().success());
    wait_for_kind(&url, "engine_stopped", 1).await.unwrap();
    let everything = feed(&url, all()).await.unwrap();
    // (A regime change, should the detector read one, is no business here.)
    let from_e0: Vec<&gpb::HerdEvent> = everything
        .iter()
        .filter(|e| e.source == "e0" && e.kind != "regime_change")
        .collect();
    let mut ids: Vec<&str> = from_e0.iter().map(|e| e.id.as_str()).collect();
    let n = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), n, "no engine event twice");
    assert_eq!(
        from_e0.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(),
        [
            "engine_started",
            "emergency_stop",
            "emergency_stop",
            "engine_stopped"
        ]
    );
    let pool = sqlx::SqlitePool::connect(&db).await.unwrap();
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM event_outbox")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        left, 0,
        "the outbox is empty once the gateway has everything"
    );
}
