#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Rangers through the real execution layer: an in-process gateway on the
//! paper venue (its random walk frozen, the market moved only by the admin
//! SetPaperPrice), engines on port 0 with a fixed regime, and waits on
//! explicit conditions seen through GetStatus or the gateway.
//!
//! Hand computation of one cycle (as in tests/ranger_slots.rs): market 0.12;
//! sell 16.64170411 @ 0.12018 (maker fee 0.00500000); buy back @ 0.1187378
//! (maker fee 0.00494000); net 0.024000665667442 - 0.00994 =
//! 0.014060665667442 USD.

mod support;

use herd_engine::store::Store;
use herd_strategies::rangers::RangerConfig;
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use std::str::FromStr;
use support::{TestEngine, TestGateway, engine_config, wait_for, wait_stage};

fn rangers(enabled: bool, slots: u32) -> RangerConfig {
    RangerConfig {
        enabled,
        max_slots: slots,
        ..RangerConfig::default()
    }
}

fn is_ranger_order(o: &herd_proto::gateway::Order, engine_userref_min: i32) -> bool {
    (engine_userref_min + 800..engine_userref_min + 900).contains(&o.userref)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_paper_cycle_books_the_hand_computed_profit() {
    let gw = TestGateway::start().await;
    let dir = tempfile::tempdir().unwrap();
    let e0 = TestEngine::start(engine_config(
        "e0",
        &gw,
        dir.path(),
        "RANGING",
        rangers(true, 1),
    ))
    .await;

    let entry = wait_stage(&e0, 0, "entry_open").await;
    assert_eq!(entry.entry_price, "0.12018");
    assert_eq!(entry.entry_volume, "16.64170411");
    let open = gw.open_orders("e0").await;
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].userref, 1800, "ranger 0's userref in e0's range");
    assert_eq!(open[0].price, "0.12018");

    // The market trades up through the sell.
    gw.set_price("0.1202").await;
    let exit = wait_stage(&e0, 0, "exit_open").await;
    assert_eq!(exit.entry_price, "0.12018");
    assert_eq!(exit.exit_price, "0.1187378");
    wait_for("the exit resting on the venue", || async {
        let open = gw.open_orders("e0").await;
        match open.as_slice() {
            [o] if o.price == "0.1187378" && o.side == 1 => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;

    // And back down through the buy.
    gw.set_price("0.1187").await;
    let r = wait_for("one completed cycle", || async {
        let r = e0.rangers().await;
        if r.cycles_today == 1 {
            Ok(r)
        } else {
            Err(format!("{r:?}"))
        }
    })
    .await;
    assert_eq!(r.profit_today, "0.014060665667442");
    let profit = Decimal::from_str(&r.profit_today).unwrap();
    assert!(profit > Decimal::ZERO);
    assert_eq!(profit.round_dp(2), dec!(0.01));
    assert_eq!(r.orphans_today, 0);
    assert_eq!(r.slots[0].stage, "cooldown");

    // The venue's books agree: USD 1000 + sale - buy-back - both fees.
    let usd = gw
        .balances()
        .await
        .into_iter()
        .find(|b| b.asset == "USD")
        .unwrap();
    let usd = Decimal::from_str(&usd.total).unwrap();
    assert_eq!(usd - dec!(1000), dec!(0.014060665667442));

    e0.stop().await;
    let store = Store::open_sqlite_dir(dir.path(), "e0").await.unwrap();
    let journal = store.journal("rangers").await.unwrap();
    assert_eq!(journal.len(), 1, "{journal:?}");
    assert_eq!(journal[0].0, "cycle");
    let payload: serde_json::Value = serde_json::from_str(&journal[0].1).unwrap();
    assert_eq!(payload["net_usd"], "0.014060665667442");
    assert_eq!(payload["entry_fee_usd"], "0.005");
    assert_eq!(payload["exit_fee_usd"], "0.00494");
    store.close().await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_timeout_orphans_through_the_gateway() {
    let gw = TestGateway::start().await;
    let dir = tempfile::tempdir().unwrap();
    let e0 = TestEngine::start(engine_config(
        "e0",
        &gw,
        dir.path(),
        "RANGING",
        RangerConfig {
            exit_timeout_sec: 1,
            ..rangers(true, 1)
        },
    ))
    .await;
    wait_stage(&e0, 0, "entry_open").await;
    gw.set_price("0.1202").await;
    let r = wait_for("an orphaned exit", || async {
        let r = e0.rangers().await;
        if r.orphans_today == 1 {
            Ok(r)
        } else {
            Err(format!("{r:?}"))
        }
    })
    .await;
    assert_eq!(r.orphan_exposure_usd, "1.9999999999398");
    assert_eq!(r.cycles_today, 0);
    assert_eq!(r.slots[0].stage, "cooldown");
    wait_for("no ranger order left on the venue", || async {
        let open = gw.open_orders("e0").await;
        if open.is_empty() {
            Ok(())
        } else {
            Err(format!("{open:?}"))
        }
    })
    .await;
    e0.stop().await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_startup_cleanup_cancels_stale_ranger_userref_orders() {
    let gw = TestGateway::start().await;
    let dir = tempfile::tempdir().unwrap();
    let e0 = TestEngine::start(engine_config(
        "e0",
        &gw,
        dir.path(),
        "RANGING",
        rangers(true, 2),
    ))
    .await;
    wait_stage(&e0, 0, "entry_open").await;
    wait_stage(&e0, 1, "entry_open").await;
    // An operator's order (userref offset 0) must survive the cleanup.
    let manual = e0.submit("sell", "20", "0.2").await;
    e0.stop().await;
    let left = gw.open_orders("e0").await;
    assert_eq!(left.len(), 3, "{left:?}");
    assert_eq!(left.iter().filter(|o| is_ranger_order(o, 1000)).count(), 2);

    // The next run cleans up even with rangers disabled.
    let e0 = TestEngine::start(engine_config(
        "e0",
        &gw,
        dir.path(),
        "RANGING",
        rangers(false, 2),
    ))
    .await;
    let open = wait_for("stale ranger orders cancelled", || async {
        let open = gw.open_orders("e0").await;
        if open.iter().any(|o| is_ranger_order(o, 1000)) {
            Err(format!("{open:?}"))
        } else {
            Ok(open)
        }
    })
    .await;
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].client_order_id, manual);
    assert_eq!(open[0].userref, 1000);
    let r = e0.rangers().await;
    assert!(!r.enabled);
    assert!(r.slots.iter().all(|s| s.stage == "idle"));
    e0.stop().await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_engines_share_a_gateway_without_touching_each_other() {
    let gw = TestGateway::start().await;
    let (d0, d1) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let e0 = TestEngine::start(engine_config(
        "e0",
        &gw,
        d0.path(),
        "RANGING",
        rangers(true, 1),
    ))
    .await;
    let e1 = TestEngine::start(engine_config(
        "e1",
        &gw,
        d1.path(),
        "RANGING",
        rangers(true, 1),
    ))
    .await;
    wait_stage(&e0, 0, "entry_open").await;
    wait_stage(&e1, 0, "entry_open").await;
    let e0_entry = gw.open_orders("e0").await;
    assert_eq!(e0_entry.len(), 1);
    assert_eq!(e0_entry[0].userref, 1800);
    assert_eq!(gw.open_orders("e1").await[0].userref, 2800);

    // Restarting e1 cleans up e1's stale entry only.
    e1.stop().await;
    let e1 = TestEngine::start(engine_config(
        "e1",
        &gw,
        d1.path(),
        "RANGING",
        rangers(false, 1),
    ))
    .await;
    wait_for("e1's stale entry cancelled", || async {
        let open = gw.open_orders("e1").await;
        if open.is_empty() {
            Ok(())
        } else {
            Err(format!("{open:?}"))
        }
    })
    .await;
    let still = gw.open_orders("e0").await;
    assert_eq!(still.len(), 1);
    assert_eq!(still[0].client_order_id, e0_entry[0].client_order_id);
    assert_eq!(e0.rangers().await.slots[0].stage, "entry_open");

    // e1 resumes at runtime; both cycle on the same market.
    assert!(e1.set_rangers_enabled(true).await.ok);
    wait_stage(&e1, 0, "entry_open").await;
    gw.set_price("0.1202").await;
    wait_stage(&e0, 0, "exit_open").await;
    wait_stage(&e1, 0, "exit_open").await;
    gw.set_price("0.1187").await;
    for e in [&e0, &e1] {
        let r = wait_for("a completed cycle", || async {
            let r = e.rangers().await;
            if r.cycles_today == 1 {
                Ok(r)
            } else {
                Err(format!("{r:?}"))
            }
        })
        .await;
        assert_eq!(r.profit_today, "0.014060665667442", "{}", e.cfg.id);
        assert_eq!(r.orphans_today, 0);
    }
    e0.stop().await;
    e1.stop().await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_status_payload_exposes_rangers_block() {
    let gw = TestGateway::start().await;
    let dir = tempfile::tempdir().unwrap();
    // Defaults: rangers disabled, the block present with safe values.
    let e0 = TestEngine::start(engine_config(
        "e0",
        &gw,
        dir.path(),
        "RANGING",
        RangerConfig::default(),
    ))
    .await;
    let r = e0.rangers().await;
    assert!(!r.enabled);
    assert_eq!((r.active, r.cycles_today, r.orphans_today), (0, 0, 0));
    assert_eq!(r.profit_today, "0");
    assert_eq!(r.orphan_exposure_usd, "0");
    assert_eq!(r.doge_reserve, "100");
    assert_eq!(r.slots.len(), 3);
    assert!(
        r.slots
            .iter()
            .all(|s| s.stage == "idle" && s.entry_price.is_empty())
    );
    let st = e0.status().await;
    let detail = st
        .strategies
        .iter()
        .find(|s| s.name == "rangers")
        .expect("rangers strategy listed");
    assert!(!detail.enabled);

    // Enabled at runtime: the regime gate reads RANGING, entries go out (two
    // per loop, then the third).
    assert!(e0.set_rangers_enabled(true).await.ok);
    for id in 0..3 {
        wait_stage(&e0, id, "entry_open").await;
    }
    let r = e0.rangers().await;
    assert!(r.enabled && r.regime_ok);
    assert_eq!(r.active, 3);
    assert_eq!(r.slots[2].entry_price, "0.12018");
    assert!(r.slots[2].age_sec >= 0.0);
    let json: serde_json::Value = serde_json::from_str(&detail.detail_json).unwrap();
    assert!(json.get("capacity").is_some());

    // Disabled at runtime: every ranger order is cancelled, rangers idle.
    let resp = e0.set_rangers_enabled(false).await;
    assert!(resp.ok, "{resp:?}");
    for id in 0..3 {
        wait_stage(&e0, id, "idle").await;
    }
    wait_for("no ranger orders on the venue", || async {
        let open = gw.open_orders("e0").await;
        if open.is_empty() {
            Ok(())
        } else {
            Err(format!("{open:?}"))
        }
    })
    .await;
    e0.stop().await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_regime_places_nothing() {
    let gw = TestGateway::start().await;
    let dir = tempfile::tempdir().unwrap();
    let e0 = TestEngine::start(engine_config(
        "e0",
        &gw,
        dir.path(),
        "UNKNOWN",
        rangers(true, 1),
    ))
    .await;
    // Wait until the engine has seen a market (ticks run), then check.
    wait_for("a tick with a market", || async {
        let st = e0.status().await;
        if st.price.is_empty() {
            Err("no price yet".to_string())
        } else {
            Ok(())
        }
    })
    .await;
    let r = wait_for("the regime gate's reason", || async {
        let r = e0.rangers().await;
        if r.slots[0].last_error.contains("not RANGING") {
            Ok(r)
        } else {
            Err(format!("{r:?}"))
        }
    })
    .await;
    assert!(r.enabled && !r.regime_ok);
    assert_eq!(r.slots[0].stage, "idle");
    assert!(gw.open_orders("e0").await.is_empty());
    e0.stop().await;
    gw.stop().await;
}

#[tokio::test]
async fn demo_configs_parse_and_validate() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/rangers-demo");
    let gw = herd_gateway::config::GatewayConfig::load(Some(&dir.join("gateway.toml"))).unwrap();
    let doge = &gw.paper.exchange.instruments[0];
    assert_eq!(doge.instrument.symbol, "DOGEUSD");
    assert_eq!(doge.path.volatility, 0.0015);
    let e = herd_engine::config::EngineConfig::load(Some(&dir.join("engine.toml"))).unwrap();
    assert!(e.rangers.enabled);
    assert_eq!(e.rangers.entry_pct, dec!(0.15));
    assert_eq!(e.rangers.doge_reserve, dec!(100));
    assert_eq!(e.gateway_token.expose(), gw.engines[0].token.expose());
    let strategies = herd_engine::strategies_from_config(&e).await.unwrap();
    assert!(
        strategies
            .iter()
            .any(|s| s.name() == "rangers" && s.enabled())
    );
    // The grid is always built (its status block is always there), off here.
    assert!(
        strategies
            .iter()
            .all(|s| s.name() != "grid" || !s.enabled())
    );
}

/// The operator's CancelOrder answers with the status by name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_answer_names_the_status() {
    let gw = TestGateway::start().await;
    let dir = tempfile::tempdir().unwrap();
    let e0 = TestEngine::start(engine_config(
        "e0",
        &gw,
        dir.path(),
        "RANGING",
        rangers(false, 1),
    ))
    .await;
    wait_for("engine follows the gateway", || async {
        let s = e0.status().await;
        if s.gateway_connected {
            Ok(())
        } else {
            Err(format!("{s:?}"))
        }
    })
    .await;
    let id = e0.submit("sell", "20", "0.2").await;
    let answer = e0
        .client()
        .await
        .cancel_order(support::authed(
            herd_proto::engine::CancelOrderRequest {
                client_order_id: id.clone(),
            },
            support::CONTROL_TOKEN,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (answer.ok, answer.message),
        (true, format!("order {id} is CANCELED"))
    );
    e0.stop().await;
    gw.stop().await;
}
