#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The grid through the real execution layer: an in-process gateway on the
//! paper venue (random walk frozen, the market moved by SetPaperPrice) and
//! engines on port 0. Slots place in the grid's userref sub-range, entry
//! fills open ledger positions visible in GetStatus, churner spawns are
//! refused with the gate that failed, and a restarted engine rebuilds its
//! ledger from the journal and adopts the exits still live on the venue.
//!
//! Prices as in tests/grid_slots.rs: at 0.12 the slot sells 16.63339986 @
//! 0.12024 and buys 16.70006680 @ 0.11976; the buy's exit is 0.1209576.

// Shared with the rangers' e2e tests; not every helper is used here.
#[allow(dead_code)]
mod support;

use herd_proto::engine as epb;
use herd_proto::engine::engine_client::EngineClient;
use herd_proto::gateway::gateway_admin_client::GatewayAdminClient;
use herd_strategies::grid::GridConfig;
use herd_strategies::rangers::RangerConfig;
use support::{CONTROL_TOKEN, TestEngine, TestGateway, authed, engine_config, wait_for};
use tonic::transport::Channel;

fn with_grid(
    mut cfg: herd_engine::config::EngineConfig,
    slots: u32,
) -> herd_engine::config::EngineConfig {
    cfg.grid = GridConfig {
        enabled: true,
        slots,
        ..GridConfig::default()
    };
    cfg
}

async fn client(e: &TestEngine) -> EngineClient<Channel> {
    EngineClient::new(
        Channel::from_shared(format!("http://{}", e.addr))
            .unwrap()
            .connect()
            .await
            .unwrap(),
    )
}

async fn spawn(e: &TestEngine) -> Result<String, tonic::Status> {
    client(e)
        .await
        .spawn_churner(authed(epb::SpawnChurnerRequest {}, CONTROL_TOKEN))
        .await
        .map(|r| r.into_inner().message)
}

async fn grid(e: &TestEngine) -> epb::GridStatus {
    e.status().await.grid.expect("grid block present")
}

/// Moves the price through slot 0's buy entry and waits for its position
/// (with its exit, the slot in S1b).
async fn fill_the_buy_entry(gw: &TestGateway, e: &TestEngine) -> epb::SelfHealingStatus {
    gw.set_price("0.1197").await;
    wait_for("a ledger position", || async {
        let s = e.status().await;
        let h = s.self_healing.clone().unwrap();
        let g = s.grid.clone().unwrap();
        if h.positions.len() == 1 && g.slots[0].phase == "S1b" {
            Ok(h)
        } else {
            Err(format!("{h:?} {g:?}"))
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slots_ledger_gates_and_restart_through_the_gateway() {
    let gw = TestGateway::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = with_grid(
        engine_config("e0", &gw, dir.path(), "UNKNOWN", RangerConfig::default()),
        1,
    );
    let e0 = TestEngine::start(cfg.clone()).await;

    let g = wait_for("slot 0's two entries", || async {
        let g = grid(&e0).await;
        if g.slots.first().is_some_and(|s| s.open_orders.len() == 2) {
            Ok(g)
        } else {
            Err(format!("{g:?}"))
        }
    })
    .await;
    assert_eq!(g.slots[0].phase, "S0");
    // The gateway lists an order once its place has returned to the engine
    // and the registry has it open; wait for both rather than race them.
    let mut prices: Vec<(String, i32)> = wait_for("both entries open at the gateway", || async {
        let open = gw.open_orders("e0").await;
        if open.len() == 2 {
            Ok(open.iter().map(|o| (o.price.clone(), o.userref)).collect())
        } else {
            Err(format!("{open:?}"))
        }
    })
    .await;
    prices.sort();
    assert_eq!(
        prices,
        vec![("0.11976".to_string(), 1100), ("0.12024".to_string(), 1100)],
        "slot 0 in the grid's userref sub-range (e0's range starts at 1000)"
    );
    let status = e0.status().await;
    let cap = status.capacity.expect("capacity block");
    assert_eq!(
        (cap.limit, cap.safe_cap, cap.band.as_str()),
        (225, 168, "normal")
    );

    // Not ready: fail closed.
    let e = spawn(&e0).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    assert!(
        e.message().starts_with("regime_not_ready"),
        "{}",
        e.message()
    );

    // The buy entry fills: a position with its exit, in S1b.
    let h = fill_the_buy_entry(&gw, &e0).await;
    let pos = h.positions[0].clone();
    assert_eq!(
        (pos.entry_price.as_str(), pos.exit_price.as_str()),
        ("0.11976", "0.1209576")
    );
    assert_eq!(pos.band, "fresh");
    assert_eq!(h.churner.unwrap().max, 5);

    // Operator actions: break-even needs subsidy; hold is journaled.
    let r = client(&e0)
        .await
        .reprice_break_even(authed(
            epb::PositionRequest {
                position_id: pos.position_id.clone(),
            },
            CONTROL_TOKEN,
        ))
        .await
        .unwrap_err();
    assert!(
        r.message().contains("already at or inside") || r.message().contains("cannot pay"),
        "{}",
        r.message()
    );
    let r = client(&e0)
        .await
        .keep_holding(authed(
            epb::KeepHoldingRequest {
                position_id: pos.position_id.clone(),
                hours: 2,
            },
            CONTROL_TOKEN,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(r.ok && r.message.contains("held"), "{r:?}");

    // Restart: the ledger comes back from the journal and the live exit is
    // adopted (into recovery); the old entry is cancelled.
    e0.stop().await;
    let exit_id = pos.exit_order_id.clone();
    let e0 = TestEngine::start(cfg).await;
    let g = wait_for("the ledger rebuilt and the exit adopted", || async {
        let g = grid(&e0).await;
        let adopted = g.slots.first().is_some_and(|s| {
            s.recovery_orders
                .iter()
                .any(|o| o.client_order_id == exit_id && o.orphan_reason == "restart")
        });
        if g.open_positions == 1 && adopted {
            Ok(g)
        } else {
            Err(format!("{g:?}"))
        }
    })
    .await;
    assert_eq!(g.ledger_conflicts, 0);
    // The adopted exit still books when it fills.
    gw.set_price("0.121").await;
    wait_for("the adopted exit's cycle", || async {
        let g = grid(&e0).await;
        if g.closed_positions == 1
            && g.slots[0]
                .recent_cycles
                .iter()
                .any(|c| c.kind == "recovery")
        {
            Ok(())
        } else {
            let venue = gw.query_orders("e0", std::slice::from_ref(&exit_id)).await;
            Err(format!("{g:?}; the exit at the gateway: {venue:?}"))
        }
    })
    .await;
    e0.stop().await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawn_without_an_aging_parent_is_refused_by_name() {
    let gw = TestGateway::start().await;
    let dir = tempfile::tempdir().unwrap();
    let e1 = TestEngine::start(with_grid(
        engine_config("e1", &gw, dir.path(), "RANGING", RangerConfig::default()),
        1,
    ))
    .await;
    // The gates read the regime: wait for the fixed RANGING to be reported
    // ready, so the refusal is about the parent and nothing else.
    wait_for("a capacity reading and a ready regime", || async {
        let s = e1.status().await;
        match (s.capacity, s.regime) {
            (Some(c), Some(r)) if r.ready => Ok(c),
            (c, r) => Err(format!("capacity {c:?}, regime {r:?}")),
        }
    })
    .await;
    // The status reports the engine's regime; the grid reads it on its next
    // tick. Until then a spawn is refused for the regime (no side effect).
    let e = wait_for("the grid to see the ready regime", || async {
        match spawn(&e1).await {
            Err(e) if e.message().starts_with("regime_not_ready") => Err(e.message().to_string()),
            other => Ok(other),
        }
    })
    .await
    .unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    assert!(e.message().starts_with("no_parent"), "{}", e.message());
    let r = client(&e1)
        .await
        .kill_churner(authed(
            epb::KillChurnerRequest { churner_id: 7 },
            CONTROL_TOKEN,
        ))
        .await
        .unwrap_err();
    assert!(r.message().contains("no churner 7"), "{}", r.message());
    assert_eq!(r.code(), tonic::Code::NotFound, "{r:?}");
    let nope = || {
        authed(
            epb::PositionRequest {
                position_id: "nope".into(),
            },
            CONTROL_TOKEN,
        )
    };
    let mut c = client(&e1).await;
    for (rpc, r) in [
        ("reprice", c.reprice_break_even(nope()).await),
        ("close", c.close_position_at_market(nope()).await),
    ] {
        let e = r.unwrap_err();
        assert_eq!(e.code(), tonic::Code::NotFound, "{rpc}: {e:?}");
        assert!(e.message().contains("no position \"nope\""), "{rpc}: {e:?}");
    }
    e1.stop().await;
    gw.stop().await;
}

/// The exit fills while the engine is down. The restarted engine's event
/// stream replays that fill at once, usually before the strategies are
/// restored and have had a tick that knew the instrument; it must still
/// close the position (it used to be dropped, leaving the position open).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exit_filled_while_the_engine_was_down_closes_its_position() {
    let gw = TestGateway::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = with_grid(
        engine_config("e0", &gw, dir.path(), "UNKNOWN", RangerConfig::default()),
        1,
    );
    let e0 = TestEngine::start(cfg.clone()).await;
    wait_for("both entries open at the gateway", || async {
        let open = gw.open_orders("e0").await;
        if open.len() == 2 {
            Ok(())
        } else {
            Err(format!("{open:?}"))
        }
    })
    .await;
    let pos = fill_the_buy_entry(&gw, &e0).await.positions[0].clone();
    e0.stop().await;

    gw.set_price("0.121").await;
    let exit_id = pos.exit_order_id.clone();
    wait_for("the exit filled at the gateway", || async {
        let o = gw.query_orders("e0", std::slice::from_ref(&exit_id)).await;
        if o.first()
            .is_some_and(|o| o.status == herd_proto::gateway::OrderStatus::Filled as i32)
        {
            Ok(())
        } else {
            Err(format!("{o:?}"))
        }
    })
    .await;

    // The move to 0.121 also filled the sell entry left open (at 0.12024):
    // it opens a position of its own, with its exit placed on the restart.
    let e0 = TestEngine::start(cfg).await;
    let g = wait_for("the position closed by the replayed fill", || async {
        let g = grid(&e0).await;
        let a_exit = g.slots[0]
            .recovery_orders
            .iter()
            .any(|o| o.trade == "A" && o.role == "exit" && o.side == "buy");
        if g.closed_positions == 1 && g.open_positions == 1 && a_exit {
            Ok(g)
        } else {
            Err(format!("{g:?}"))
        }
    })
    .await;
    // B bought 16.70006680 @ 0.11976 and sold @ 0.1209576: a profit after fees.
    let pnl: rust_decimal::Decimal = g.realized_pnl.parse().unwrap();
    // Once: about 0.00995 (gross 0.0200 less two maker fees), not twice.
    assert!(
        pnl > rust_decimal::Decimal::ZERO && pnl < rust_decimal::Decimal::new(15, 3),
        "{g:?}"
    );
    assert_eq!(g.ledger_conflicts, 0);

    // The gateway's ledger agrees: every fill tagged `grid`, and its PnL
    // (realized + unrealized at the last price, 0.121) is the grid's
    // realized cycle plus the sell entry A it still holds, marked at
    // 0.121, less A's fee. (The ledger's average cost and the grid's lots
    // split realized from unrealized differently when A fills before B's
    // exit; their sum cannot differ.)
    let mut admin = GatewayAdminClient::new(
        Channel::from_shared(gw.url())
            .unwrap()
            .connect()
            .await
            .unwrap(),
    );
    let fills = admin
        .list_fills(authed(
            herd_proto::gateway::ListFillsRequest::default(),
            support::ADMIN_TOKEN,
        ))
        .await
        .unwrap()
        .into_inner()
        .fills;
    assert!(fills.iter().all(|f| f.strategy == "grid"), "{fills:#?}");
    let a_entry: Vec<_> = fills
        .iter()
        .filter(|f| f.side == "sell" && f.client_order_id != exit_id)
        .collect();
    assert_eq!(a_entry.len(), 1, "{fills:#?}");
    let a_fee: rust_decimal::Decimal = a_entry[0].fee.parse().unwrap();
    let a_volume: rust_decimal::Decimal = a_entry[0].volume.parse().unwrap();
    let a_price: rust_decimal::Decimal = a_entry[0].price.parse().unwrap();
    let mark = rust_decimal::Decimal::new(121, 3);
    let ledger = admin
        .get_pnl(authed(
            herd_proto::gateway::GetPnlRequest {
                by: herd_proto::gateway::PnlGrouping::Strategy as i32,
                ..Default::default()
            },
            support::ADMIN_TOKEN,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ledger.rows.len(), 1);
    assert_eq!(ledger.rows[0].key, "grid");
    let total: rust_decimal::Decimal = ledger.rows[0].total.parse().unwrap();
    let want = pnl + a_volume * (a_price - mark) - a_fee;
    assert!(
        (total - want).abs() < rust_decimal::Decimal::new(1, 8),
        "ledger {total}, the grid's realized {pnl} + A {a_volume} sold at {a_price} \
         marked at {mark} - A's fee {a_fee} = {want}"
    );
    e0.stop().await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_at_market_after_an_emergency_stop_refuses_while_halted_then_closes() {
    let gw = TestGateway::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = with_grid(
        engine_config("e0", &gw, dir.path(), "UNKNOWN", RangerConfig::default()),
        1,
    );
    let e0 = TestEngine::start(cfg).await;
    wait_for("slot 0's two entries open at the gateway", || async {
        let open = gw.open_orders("e0").await;
        if open.len() == 2 {
            Ok(())
        } else {
            Err(format!("{open:?}"))
        }
    })
    .await;
    let h = fill_the_buy_entry(&gw, &e0).await;
    let position_id = h.positions[0].position_id.clone();
    let exit = h.positions[0].exit_order_id.clone();

    let stop = client(&e0)
        .await
        .emergency_stop(authed(
            epb::EmergencyStopRequest {
                reason: "drill".into(),
            },
            CONTROL_TOKEN,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(stop.ok, "{stop:?}");
    // The exit is cancelled at the venue and the slot has heard of it.
    wait_for("the exit canceled and in recovery", || async {
        let g = grid(&e0).await;
        let open = gw.open_orders("e0").await;
        if open.is_empty()
            && g.slots[0]
                .recovery_orders
                .iter()
                .any(|o| o.client_order_id == exit)
        {
            Ok(())
        } else {
            Err(format!("{open:?} {g:?}"))
        }
    })
    .await;

    // Halted: the engine places nothing, so the close is refused and says why.
    let refused = client(&e0)
        .await
        .close_position_at_market(authed(
            epb::PositionRequest {
                position_id: position_id.clone(),
            },
            CONTROL_TOKEN,
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert!(refused.message().contains("HALTED"), "{refused:?}");
    assert!(refused.message().contains("herdctl resume"), "{refused:?}");
    assert_eq!(e0.status().await.self_healing.unwrap().positions.len(), 1);

    client(&e0)
        .await
        .resume(authed(epb::ResumeRequest {}, CONTROL_TOKEN))
        .await
        .unwrap();
    let closed = client(&e0)
        .await
        .close_position_at_market(authed(
            epb::PositionRequest {
                position_id: position_id.clone(),
            },
            CONTROL_TOKEN,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(closed.ok, "{closed:?}");
    assert!(closed.message.contains("already canceled"), "{closed:?}");
    // The market order is placed and fills: the position is closed.
    wait_for("the position closed at market", || async {
        let s = e0.status().await;
        let h = s.self_healing.clone().unwrap();
        if h.positions.iter().all(|p| p.position_id != position_id) {
            Ok(())
        } else {
            Err(format!("{h:?}"))
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn free_text_over_500_chars_is_refused_naming_the_field() {
    let gw = TestGateway::start().await;
    let dir = tempfile::tempdir().unwrap();
    let e0 = TestEngine::start(engine_config(
        "e0",
        &gw,
        dir.path(),
        "UNKNOWN",
        RangerConfig::default(),
    ))
    .await;
    let long = "x".repeat(70_000);
    let mut c = client(&e0).await;
    let pause = c
        .pause(authed(
            epb::PauseRequest {
                reason: long.clone(),
            },
            CONTROL_TOKEN,
        ))
        .await
        .unwrap_err();
    let stop = c
        .emergency_stop(authed(
            epb::EmergencyStopRequest {
                reason: long.clone(),
            },
            CONTROL_TOKEN,
        ))
        .await
        .unwrap_err();
    let opening = c
        .set_funding_opening(authed(
            epb::SetFundingOpeningRequest {
                paused: true,
                reason: long.clone(),
            },
            CONTROL_TOKEN,
        ))
        .await
        .unwrap_err();
    let clear = c
        .clear_funding_emergency(authed(
            epb::ClearFundingEmergencyRequest {
                reason: long.clone(),
            },
            CONTROL_TOKEN,
        ))
        .await
        .unwrap_err();
    for s in [pause, stop, opening, clear] {
        assert_eq!(s.code(), tonic::Code::InvalidArgument, "{s:?}");
        assert_eq!(
            s.message(),
            "reason: at most 500 characters, got 70000",
            "{s:?}"
        );
    }
    // Nothing happened: the engine still runs; 500 characters are fine.
    let s = e0.status().await;
    assert_eq!(s.mode, epb::Mode::Running as i32);
    c.pause(authed(
        epb::PauseRequest {
            reason: "y".repeat(500),
        },
        CONTROL_TOKEN,
    ))
    .await
    .unwrap();
    assert_eq!(e0.status().await.pause_reason, "y".repeat(500));
}
