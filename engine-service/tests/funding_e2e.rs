#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The funding orchestrator through the real engine and gateway: an
//! in-process gateway on the paper venue with ETH spot and its perpetual
//! (prices frozen, funding settled on demand through the admin RPC), an
//! engine with `[funding]` enabled, and waits on explicit conditions seen
//! through GetStatus or the gateway. Covers the typed status block, funding
//! accruing, a restart mid-position, and the control RPCs.

#[allow(dead_code)] // helpers shared with the rangers tests
mod support;

use herd_paper::{FundingPathConfig, PaperConfig, PaperInstrument};
use herd_proto::engine as epb;
use herd_strategies::funding::FundingConfig;
use herd_strategies::rangers::RangerConfig;
use rust_decimal::Decimal;
use support::{CONTROL_TOKEN, TestEngine, TestGateway, authed, flat_path, wait_for};
use tonic::Code;

const PERP: &str = "ETHUSDT-PERP";

async fn gateway() -> TestGateway {
    let mut spot = PaperInstrument::usdt_spot("ETH", Decimal::from(3000), 2, 4, 102);
    spot.path = flat_path();
    let mut perp = PaperInstrument::usdt_perp(
        "ETH",
        Decimal::from(3000),
        2,
        2,
        8,
        FundingPathConfig {
            seed: 9,
            start_rate: Decimal::new(2, 3),
            mean_rate: Decimal::new(2, 3),
            persistence: 1.0,
            volatility: 0.0,
            ..FundingPathConfig::default()
        },
        Decimal::from(2_000_000_000u64),
    );
    perp.path = flat_path();
    if let Some(p) = perp.perp.as_mut() {
        p.basis_volatility = 0.0;
    }
    TestGateway::start_paper(PaperConfig {
        instruments: vec![spot, perp],
        balances: [("USDT".to_string(), Decimal::from(10_000))].into(),
        history_minutes: 0,
        ..PaperConfig::default()
    })
    .await
}

fn funding_engine(gw: &TestGateway, dir: &std::path::Path) -> herd_engine::config::EngineConfig {
    let mut cfg = support::engine_config("e1", gw, dir, "UNKNOWN", RangerConfig::default());
    cfg.symbol = "ETHUSDT".into();
    cfg.funding = FundingConfig {
        enabled: true,
        cycle_interval_ms: 100,
        poll_interval_ms: 20,
        ..FundingConfig::default()
    };
    cfg
}

async fn funding(engine: &TestEngine) -> epb::FundingStatus {
    engine
        .status()
        .await
        .funding
        .expect("funding block present")
}

/// Waits for an active position on the perp; returns its row.
async fn wait_open(engine: &TestEngine) -> epb::FundingPositionStatus {
    wait_for("an open funding position", || async {
        let f = funding(engine).await;
        f.positions
            .iter()
            .find(|p| p.symbol == PERP && p.state == "open")
            .cloned()
            .ok_or_else(|| format!("{:?}", f.positions))
    })
    .await
}

async fn wait_funding(engine: &TestEngine, want: Decimal) -> epb::FundingStatus {
    wait_for(&format!("funding collected = {want}"), || async {
        let f = funding(engine).await;
        let got: Decimal = f
            .portfolio
            .as_ref()
            .map(|p| p.total_funding.parse().unwrap())
            .unwrap_or_default();
        if got == want {
            Ok(f)
        } else {
            Err(format!("{got}; {:?}", f.positions))
        }
    })
    .await
}

#[tokio::test]
async fn opens_collects_funding_and_keeps_collecting_across_a_restart() {
    let gw = gateway().await;
    let dir = tempfile::tempdir().unwrap();
    let engine = TestEngine::start(funding_engine(&gw, dir.path())).await;
    let pos = wait_open(&engine).await;
    let f = funding(&engine).await;
    assert!(f.enabled && f.running, "{f:?}");
    assert_eq!(f.mode, "paper");
    assert_eq!(f.margin_band, "ok");
    assert_eq!(f.ranking[0].symbol, PERP);
    assert_eq!(f.ranking[0].interval_hours, 8);
    // 1000 USD * 0.999 / 3000 = 0.333 -> 0.33 on the perp's step.
    assert_eq!(pos.perp_qty, "0.33");
    let venue = gw.positions().await;
    assert_eq!(venue.len(), 1);
    assert_eq!(
        (venue[0].symbol.as_str(), venue[0].size.as_str()),
        (PERP, "0.33")
    );

    let first = gw.set_funding(PERP, "", true).await;
    assert_eq!(first.len(), 1);
    let a: Decimal = first[0].amount.parse().unwrap();
    assert!(a > Decimal::ZERO, "the short receives a positive rate: {a}");
    let before = wait_funding(&engine, a).await;
    let net_before: Decimal = before.portfolio.unwrap().net_pnl.parse().unwrap();
    engine.stop().await;

    // The engine comes back on the same store: same position, reconciled,
    // the funding it had, and it keeps collecting.
    let engine = TestEngine::start(funding_engine(&gw, dir.path())).await;
    let again = wait_open(&engine).await;
    assert_eq!(again.id, pos.id);
    let f = wait_funding(&engine, a).await;
    assert!(
        f.reconcile_mismatches.is_empty(),
        "{:?}",
        f.reconcile_mismatches
    );
    let net_after: Decimal = f.portfolio.as_ref().unwrap().net_pnl.parse().unwrap();
    assert!(
        (net_after - net_before).abs() < Decimal::new(1, 2),
        "{net_before} -> {net_after}"
    );
    let second = gw.set_funding(PERP, "", true).await;
    let b: Decimal = second[0].amount.parse().unwrap();
    let f = wait_funding(&engine, a + b).await;
    assert_eq!(f.positions.iter().filter(|p| p.state == "open").count(), 1);
    assert_eq!(f.positions[0].funding_payments, 2);
    assert_eq!(gw.positions().await[0].size, "0.33", "nothing opened twice");
    engine.stop().await;
    gw.stop().await;
}

#[tokio::test]
async fn control_rpcs_pause_limits_close_and_emergency() {
    let gw = gateway().await;
    let dir = tempfile::tempdir().unwrap();
    let engine = TestEngine::start(funding_engine(&gw, dir.path())).await;
    wait_open(&engine).await;
    let mut c = engine.client().await;

    let r = c
        .set_funding_opening(authed(
            epb::SetFundingOpeningRequest {
                paused: true,
                reason: "test".into(),
            },
            CONTROL_TOKEN,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(r.ok, "{r:?}");
    assert!(funding(&engine).await.opening_paused);

    for (req, field) in [
        (
            epb::SetFundingRiskLimitsRequest {
                margin_critical: "0.7".into(),
                ..Default::default()
            },
            "margin_critical",
        ),
        (
            epb::SetFundingRiskLimitsRequest {
                max_position_usd: "lots".into(),
                ..Default::default()
            },
            "max_position_usd",
        ),
        (
            epb::SetFundingRiskLimitsRequest {
                exit_rate: "0.01".into(),
                ..Default::default()
            },
            "exit_rate",
        ),
    ] {
        let e = c
            .set_funding_risk_limits(authed(req, CONTROL_TOKEN))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        assert!(e.message().starts_with(field), "{field}: {}", e.message());
    }
    let limits = c
        .set_funding_risk_limits(authed(
            epb::SetFundingRiskLimitsRequest {
                max_positions: 3,
                min_rate: "0.0005".into(),
                ..Default::default()
            },
            CONTROL_TOKEN,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (limits.max_positions, limits.min_rate.as_str()),
        (3, "0.0005")
    );
    assert_eq!(funding(&engine).await.limits.unwrap().max_positions, 3);

    let r = c
        .close_funding_position(authed(
            epb::CloseFundingPositionRequest {
                symbol: "ETHUSDT".into(),
            },
            CONTROL_TOKEN,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(r.ok, "{r:?}");
    assert!(gw.positions().await.is_empty());
    let e = c
        .close_funding_position(authed(
            epb::CloseFundingPositionRequest {
                symbol: "BTCUSDT-PERP".into(),
            },
            CONTROL_TOKEN,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    // Paused: several cycles pass and nothing reopens.
    let run = funding(&engine).await.cycles.unwrap().run;
    let f = wait_for("three more cycles", || async {
        let f = funding(&engine).await;
        if f.cycles.as_ref().unwrap().run >= run + 3 {
            Ok(f)
        } else {
            Err(format!("{:?}", f.cycles))
        }
    })
    .await;
    assert!(
        f.positions.iter().all(|p| p.state == "closed"),
        "{:?}",
        f.positions
    );

    c.set_funding_opening(authed(
        epb::SetFundingOpeningRequest {
            paused: false,
            reason: String::new(),
        },
        CONTROL_TOKEN,
    ))
    .await
    .unwrap();
    wait_open(&engine).await;

    let r = c
        .emergency_stop(authed(
            epb::EmergencyStopRequest {
                reason: "drill".into(),
            },
            CONTROL_TOKEN,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(
        r.message.contains("funding: closing every position"),
        "{r:?}"
    );
    let f = wait_for("the emergency to finish", || async {
        let f = funding(&engine).await;
        match &f.emergency {
            Some(e) if e.done => Ok(f),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let e = f.emergency.unwrap();
    assert!(
        e.triggered && e.failures.is_empty() && e.reason == "drill",
        "{e:?}"
    );
    assert!(
        f.positions.iter().all(|p| p.state == "closed"),
        "{:?}",
        f.positions
    );
    assert!(gw.positions().await.is_empty());
    let r = c
        .emergency_stop(authed(
            epb::EmergencyStopRequest {
                reason: "again".into(),
            },
            CONTROL_TOKEN,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(r.message.contains("already fired"), "{r:?}");
    engine.stop().await;

    // An engine without the orchestrator: a disabled block, and the RPCs
    // say why they cannot act.
    let mut cfg = support::engine_config("e0", &gw, dir.path(), "UNKNOWN", RangerConfig::default());
    cfg.symbol = "ETHUSDT".into();
    let plain = TestEngine::start(cfg).await;
    let f = funding(&plain).await;
    assert!(!f.enabled && !f.running);
    assert_eq!(f.shutdown_policy, "keep");
    let e = plain
        .client()
        .await
        .set_funding_opening(authed(
            epb::SetFundingOpeningRequest::default(),
            CONTROL_TOKEN,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    plain.stop().await;
    gw.stop().await;
}

/// The local herd's configs (deploy/local, what `herdctl up` runs): the
/// gateway lists the USDT perps and engine e1's `[funding]` section opens
/// hedges on the rich ones at its first cycle, and not on BTC's baseline.
#[tokio::test]
async fn local_herd_engine_1_opens_hedges_on_the_paper_perps() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/local");
    let dir = tempfile::tempdir().unwrap();
    let fill = |text: &str, gateway_port: u16| {
        text.replace("{gateway_port}", &gateway_port.to_string())
            .replace("{engine_0_port}", "0")
            .replace("{engine_1_port}", "0")
            .replace("{gateway_http_port}", "0")
            .replace("{engine_0_http_port}", "0")
            .replace("{engine_1_http_port}", "0")
            .replace("{data_dir}", &dir.path().display().to_string())
    };
    let gw_path = dir.path().join("gateway.toml");
    std::fs::write(
        &gw_path,
        fill(
            &std::fs::read_to_string(root.join("gateway.toml")).unwrap(),
            0,
        ),
    )
    .unwrap();
    let mut gw_cfg = herd_gateway::config::GatewayConfig::load(Some(&gw_path)).unwrap();
    // History is for the rangers' regime detector; not needed here. The
    // test helpers speak with the test tokens.
    gw_cfg.paper.exchange.history_minutes = 0;
    gw_cfg.admin_token = Some(herd_gateway::config::Secret::new(support::ADMIN_TOKEN));
    for e in &mut gw_cfg.engines {
        let token = support::ENGINES.iter().find(|t| t.0 == e.id).unwrap().1;
        e.token = herd_gateway::config::Secret::new(token);
    }
    let perps: Vec<&str> = gw_cfg
        .paper
        .exchange
        .instruments
        .iter()
        .filter(|i| i.perp.is_some())
        .map(|i| i.instrument.symbol.as_str())
        .collect();
    assert_eq!(perps, vec!["BTCUSDT-PERP", "ETHUSDT-PERP", "SOLUSDT-PERP"]);
    let gw = TestGateway::start_config(gw_cfg).await;
    let e_path = dir.path().join("engine-1.toml");
    std::fs::write(
        &e_path,
        fill(
            &std::fs::read_to_string(root.join("engine-1.toml")).unwrap(),
            gw.addr.port(),
        ),
    )
    .unwrap();
    let mut cfg = herd_engine::config::EngineConfig::load(Some(&e_path)).unwrap();
    cfg.gateway_token = herd_engine::config::Secret::new(support::ENGINES[1].1);
    cfg.control_token = herd_engine::config::Secret::new(CONTROL_TOKEN);
    assert!(cfg.funding.enabled);
    assert_eq!(cfg.funding.cycle_interval_ms, 60_000);
    let engine = TestEngine::start(cfg).await;
    let f = wait_for("ETH and SOL hedged", || async {
        let f = funding(&engine).await;
        let mut open: Vec<String> = f
            .positions
            .iter()
            .filter(|p| p.state == "open")
            .map(|p| p.symbol.clone())
            .collect();
        open.sort();
        if open == ["ETHUSDT-PERP", "SOLUSDT-PERP"] {
            Ok(f)
        } else {
            Err(format!("{open:?}; {:?}", f.cycles))
        }
    })
    .await;
    assert_eq!(
        f.ranking.len(),
        2,
        "BTC's baseline rate is not ranked: {:?}",
        f.ranking
    );
    assert!(
        f.reconcile_mismatches.is_empty(),
        "{:?}",
        f.reconcile_mismatches
    );
    let venue = gw.positions().await;
    assert_eq!(venue.len(), 2);
    // Funding settles hourly; settle one now instead of waiting.
    let paid = gw.set_funding("ETHUSDT-PERP", "", true).await;
    assert!(paid[0].amount.parse::<Decimal>().unwrap() > Decimal::ZERO);
    engine.stop().await;
    gw.stop().await;
}
