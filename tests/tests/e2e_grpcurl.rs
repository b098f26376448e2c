//! The real grpcurl client against a real gateway and engine: reflection
//! lists and describes the services, health answers, GetStatus works with a
//! token and fails without one. grpcurl comes from scripts/install-test-tools
//! (a prebuilt binary inside a PyPI package); if it is missing the test fails
//! and says how to install it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::time::Duration;

use herd_proto::engine as epb;
use herd_tests::{
    CONTROL_TOKEN, EngineProc, GatewayProc, engine_client, wait_until, workspace_root,
};

fn grpcurl() -> PathBuf {
    if let Ok(p) = std::env::var("HERD_GRPCURL") {
        return PathBuf::from(p);
    }
    let local = workspace_root().join(".herd/tools/grpcurl");
    if local.exists() {
        return local;
    }
    if let Ok(out) = std::process::Command::new("grpcurl")
        .arg("-version")
        .output()
        && out.status.success()
    {
        return PathBuf::from("grpcurl");
    }
    panic!("grpcurl is not installed: run scripts/install-test-tools (or set HERD_GRPCURL)");
}

fn run(args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(grpcurl())
        .args(args)
        .output()
        .expect("grpcurl runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_lists_describes_checks_health_and_gets_status() {
    let dir = tempfile::tempdir().unwrap();
    let gw = GatewayProc::start(dir.path(), 1, "[paper]\nhistory_minutes = 0\n")
        .await
        .unwrap();
    let e0 = EngineProc::start(dir.path(), "e0", &gw.proc.addr, "")
        .await
        .unwrap();
    let mut c = engine_client(&e0.proc.url()).await.unwrap();
    wait_until("engine connected", Duration::from_secs(30), || {
        let mut c = c.clone();
        async move {
            let s = c.get_status(epb::GetStatusRequest {}).await?.into_inner();
            Ok(s.gateway_connected.then_some(()))
        }
    })
    .await
    .unwrap();
    c.get_status(epb::GetStatusRequest {}).await.unwrap();

    let gw_addr = gw.proc.addr.as_str();
    let e_addr = e0.proc.addr.as_str();

    let (ok, out) = run(&["-plaintext", gw_addr, "list"]);
    assert!(ok, "{out}");
    for svc in [
        "herd.gateway.v1.Gateway",
        "herd.gateway.v1.GatewayAdmin",
        "grpc.health.v1.Health",
    ] {
        assert!(out.contains(svc), "gateway list lacks {svc}: {out}");
    }
    let (ok, out) = run(&["-plaintext", e_addr, "list"]);
    assert!(
        ok && out.contains("herd.engine.v1.Engine") && out.contains("grpc.health.v1.Health"),
        "{out}"
    );

    let (ok, out) = run(&[
        "-plaintext",
        gw_addr,
        "describe",
        "herd.gateway.v1.Gateway.PlaceOrder",
    ]);
    assert!(ok && out.contains("PlaceOrderRequest"), "{out}");
    let (ok, out) = run(&[
        "-plaintext",
        gw_addr,
        "describe",
        "herd.gateway.v1.PlaceOrderRequest",
    ]);
    assert!(ok && out.contains("client_order_id"), "{out}");
    let (ok, out) = run(&["-plaintext", gw_addr, "describe", "grpc.health.v1.Health"]);
    assert!(ok && out.contains("Check"), "{out}");

    for addr in [gw_addr, e_addr] {
        let (ok, out) = run(&["-plaintext", addr, "grpc.health.v1.Health/Check"]);
        assert!(ok && out.contains("\"SERVING\""), "{addr}: {out}");
    }

    let auth = format!("authorization: Bearer {CONTROL_TOKEN}");
    let (ok, out) = run(&[
        "-plaintext",
        "-H",
        &auth,
        e_addr,
        "herd.engine.v1.Engine/GetStatus",
    ]);
    assert!(ok, "{out}");
    let status: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(status["engineId"], "e0");
    assert_eq!(status["mode"], "MODE_RUNNING");
    assert_eq!(status["gatewayConnected"], true);

    let (ok, out) = run(&["-plaintext", e_addr, "herd.engine.v1.Engine/GetStatus"]);
    assert!(!ok && out.contains("Unauthenticated"), "{out}");

    // After the whole run (including refused calls), no log holds a secret.
    let logs = format!("{}{}", gw.proc.log_text(), e0.proc.log_text());
    assert!(logs.contains("gateway listening"), "logs were captured");
    for secret in [
        CONTROL_TOKEN,
        herd_tests::ADMIN_TOKEN,
        &herd_tests::engine_token("e0"),
    ] {
        assert!(
            !logs.contains(secret),
            "a secret reached the logs: {secret}"
        );
    }
}
