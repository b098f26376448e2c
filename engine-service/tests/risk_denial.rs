//! A risk denial at the gateway reaches the strategy as `PlaceFailed` with
//! the gateway's words, is journaled as a definite refusal, and shows in the
//! engine's own GetStatus (its risk book, read from the gateway at once after
//! the denial). A real engine and a real gateway over gRPC.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(dead_code)] // this test uses a part of the shared helpers
mod support;

use herd_proto::engine as epb;
use herd_proto::engine::engine_client::EngineClient;
use herd_proto::gateway as gpb;
use herd_proto::gateway::gateway_admin_client::GatewayAdminClient;
use herd_strategies::rangers::RangerConfig;
use herd_strategies::strategy::UpdateKind;
use support::probe::{start_probe_engine, until};
use support::{ADMIN_TOKEN, CONTROL_TOKEN, TestGateway, authed, engine_config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_risk_denial_reaches_the_strategy_as_place_failed_and_shows_in_status() {
    let gateway = TestGateway::start().await;
    // The operator caps e0's orders at 5 USD; the probe's buy is 100 DOGE at
    // 0.10 = 10 USD.
    let mut admin = GatewayAdminClient::new(gateway.channel().await);
    admin
        .set_risk_limits(authed(
            gpb::SetRiskLimitsRequest {
                engine_id: "e0".into(),
                account: false,
                limits: Some(gpb::RiskLimits {
                    max_order_notional: "5".into(),
                    ..Default::default()
                }),
                reason: "test: a cap below the probe's order".into(),
            },
            ADMIN_TOKEN,
        ))
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let cfg = engine_config(
        "e0",
        &gateway,
        dir.path(),
        "RANGING",
        RangerConfig::default(),
    );
    let (log, control, stop) = start_probe_engine(cfg).await;

    let (id, message) = until("the probe told its place failed", || async {
        let log = log.lock().unwrap();
        log.updates.iter().find_map(|(id, kind, msg)| {
            (*kind == UpdateKind::PlaceFailed).then(|| (id.clone(), msg.clone()))
        })
    })
    .await;
    assert!(
        message.contains("max_order_notional") && message.contains('5'),
        "the strategy gets the gateway's words: {message}"
    );
    {
        let log = log.lock().unwrap();
        assert!(
            !log.updates
                .iter()
                .any(|(i, kind, _)| *i == id && *kind == UpdateKind::Open),
            "a denied order never opens: {log:?}"
        );
    }
    // Nothing reached the venue.
    assert!(gateway.open_orders("e0").await.is_empty());

    // The journal holds it as a definite refusal.
    let store = herd_engine::store::Store::open_sqlite_dir(dir.path(), "e0")
        .await
        .unwrap();
    let row = until("the denied order journaled", || {
        let store = store.clone();
        let id = id.clone();
        async move { store.order(&id).await.unwrap() }
    })
    .await;
    assert_eq!(row.status, "rejected", "{row:?}");

    // The engine's status shows its risk book as the gateway keeps it.
    let engine = EngineClient::new(
        tonic::transport::Channel::from_shared(format!("http://{control}"))
            .unwrap()
            .connect()
            .await
            .unwrap(),
    );
    let risk = until("the denial in the engine's risk status", || {
        let mut engine = engine.clone();
        async move {
            let s = engine
                .get_status(authed(epb::GetStatusRequest {}, CONTROL_TOKEN))
                .await
                .ok()?
                .into_inner();
            s.risk.filter(|r| r.last_breach_code == "max_notional")
        }
    })
    .await;
    assert_eq!(
        risk.state, "ACTIVE",
        "a reject-only limit leaves e0 trading"
    );
    assert!(
        risk.denials.get("max_notional").copied().unwrap_or(0) >= 1,
        "{risk:?}"
    );
    assert!(risk.read_ms > 0 && risk.read_error.is_empty(), "{risk:?}");
    let _ = stop.send(());
}
