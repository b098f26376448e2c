//! Issue 16 against real processes: `kraken-sim` as the venue and a real
//! `herd-gateway` process on it with risk limits. Two adversarial engines
//! (gRPC clients holding engine tokens, so exactly what a compromised
//! engine could send) try to exceed every limit; the simulator's ledger
//! (`/sim/orders`) proves that no order over a limit arrived. Then two
//! engines within their own limits breach the account's, HALT + cancel-all
//! cancels only the halted engine's orders at the venue, and after a
//! `kill -9` of the gateway and a restart the engine is still HALTED and
//! `herdctl risk status|audit` show it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use herd_proto::gateway as pb;
use herd_tests::kraken_herd::{HerdOpts, KrakenHerd, SYMBOL, prefix, userref_range};
use herd_tests::procs::{ADMIN_TOKEN, admin_client, engine_token, gateway_client};
use herd_tests::wait_until;
use rust_decimal::Decimal;
use tonic::Code;

fn sim_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_kraken-sim"))
}

fn buy(id: &str, volume: &str, price: &str) -> pb::PlaceOrderRequest {
    pb::PlaceOrderRequest {
        client_order_id: id.into(),
        symbol: SYMBOL.into(),
        side: pb::Side::Buy as i32,
        order_type: pb::OrderType::Limit as i32,
        volume: volume.into(),
        price: price.into(),
        ..Default::default()
    }
}

/// The gateway's config of the two engines and their limits, appended to
/// the herd's Kraken config.
fn risk_config(state_dir: &Path) -> String {
    let mut s = String::new();
    for i in 0..2 {
        let id = format!("e{i}");
        let (lo, hi) = userref_range(i);
        s.push_str(&format!(
            "[[engines]]\nid = \"{id}\"\ntoken = \"{}\"\nuserref_min = {lo}\nuserref_max = {hi}\ncancel_on_disconnect_ms = 0\n",
            engine_token(&id)
        ));
    }
    // DOGE at 0.12: resting buys at 0.10-0.11.
    let engine = "max_order_volume = \"1000\"\nmax_order_notional = \"100\"\nprice_band_pct = \"10\"\n\
                  max_open_orders = 3\nmax_exposure_per_instrument = \"200\"\n\
                  max_orders_per_window = 4\norder_window_ms = 600000\n";
    s.push_str(&format!(
        "[risk.account]\nmax_open_orders = 5\n[risk.engines.e0]\n{engine}[risk.engines.e1]\n{engine}"
    ));
    format!("state_dir = \"{}\"\n{s}", state_dir.display())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adversarial_engines_cannot_get_an_order_over_a_limit_to_the_venue() {
    let mut h = KrakenHerd::start(
        sim_bin(),
        HerdOpts {
            engines: 0,
            ..HerdOpts::default()
        },
    )
    .await
    .unwrap();
    // The herd's gateway, restarted with two engines and risk limits.
    let state_dir = h.dir.path().join("gateway-state");
    let base = std::fs::read_to_string(&h.gateway_config).unwrap();
    let cfg = risk_config(&state_dir);
    // The herd's config keeps its state in that same directory already.
    let (head, rest) = cfg.split_once('\n').unwrap();
    assert!(base.contains(head), "{base}");
    std::fs::write(&h.gateway_config, format!("{base}{rest}")).unwrap();
    h.kill_gateway().await.unwrap();
    h.start_gateway().await.unwrap();
    let url = format!("http://{}", h.gateway_addr());
    let mut g = [
        gateway_client(&url, &engine_token("e0")).await.unwrap(),
        gateway_client(&url, &engine_token("e1")).await.unwrap(),
    ];
    let mut admin = admin_client(&url).await.unwrap();

    let mut accepted: BTreeSet<String> = BTreeSet::new();
    let mut denied: BTreeSet<String> = BTreeSet::new();
    // (engine, id, order, code it must get; None = accepted)
    let attempts: Vec<(usize, &str, pb::PlaceOrderRequest, Option<&str>)> = vec![
        (0, "ok1", buy("ok1", "500", "0.11"), None),
        (0, "vol", buy("vol", "1001", "0.05"), Some("max_volume")),
        (
            0,
            "notional",
            buy("notional", "900", "0.115"),
            Some("max_notional"),
        ),
        (0, "band", buy("band", "100", "0.20"), Some("price_band")),
        (0, "ok2", buy("ok2", "800", "0.10"), None),
        // 500 + 800 + 900 resting buys = 2200 DOGE, at 0.10 220 USD > 200.
        (
            0,
            "exposure",
            buy("exposure", "900", "0.10"),
            Some("max_exposure"),
        ),
        (0, "ok3", buy("ok3", "100", "0.10"), None),
        (
            0,
            "open",
            buy("open", "100", "0.10"),
            Some("max_open_orders"),
        ),
        (1, "ok1", buy("ok1", "100", "0.10"), None),
        // e1 has 1 of its 3; the account has 4 of its 5.
        (1, "ok2", buy("ok2", "100", "0.10"), None),
        (
            1,
            "account",
            buy("account", "100", "0.10"),
            Some("max_open_orders"),
        ),
    ];
    for (e, id, req, want) in attempts {
        let r = g[e].place_order(req).await;
        let venue_id = format!("{}{id}", prefix(&format!("e{e}")));
        match (want, r) {
            (None, Ok(_)) => {
                accepted.insert(venue_id);
            }
            (Some(code), Err(s)) => {
                assert_eq!(
                    herd_proto::answer::risk_code(&s),
                    Some(code),
                    "e{e} {id}: {s:?}"
                );
                assert_eq!(s.code(), Code::FailedPrecondition, "e{e} {id}: {s:?}");
                denied.insert(venue_id);
            }
            (want, r) => panic!("e{e} {id}: wanted {want:?}, got {r:?}"),
        }
    }
    let account_denial = g[1]
        .place_order(buy("account2", "100", "0.10"))
        .await
        .unwrap_err();
    assert!(
        account_denial.message().contains("the account"),
        "{account_denial:?}"
    );
    denied.insert(format!("{}account2", prefix("e1")));
    // The rate limit (4 submits a window; denied ones do not count): e1
    // has sent 2. Cancels make room in the account for each.
    for id in ["ok1", "ok3"] {
        if id == "ok3" {
            g[1].place_order(buy(id, "100", "0.10")).await.unwrap();
            accepted.insert(format!("{}{id}", prefix("e1")));
        }
        g[1].cancel_order(pb::CancelOrderRequest {
            client_order_id: id.into(),
        })
        .await
        .unwrap();
    }
    g[1].place_order(buy("ok4", "100", "0.10")).await.unwrap();
    accepted.insert(format!("{}ok4", prefix("e1")));
    let s = g[1]
        .place_order(buy("rate", "100", "0.10"))
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::ResourceExhausted, "{s:?}");
    assert_eq!(
        herd_proto::answer::risk_code(&s),
        Some("order_rate"),
        "{s:?}"
    );
    assert!(s.metadata().get("retry-after-ms").is_some(), "{s:?}");
    denied.insert(format!("{}rate", prefix("e1")));

    // The simulator's ledger: every accepted order arrived, no denied one did,
    // and nothing there is over a limit.
    let orders = h.admin().orders().await.unwrap();
    let at_venue: BTreeSet<String> = orders
        .iter()
        .map(|o| o["cl_ord_id"].as_str().unwrap_or("").to_string())
        .collect();
    for id in &accepted {
        assert!(at_venue.contains(id), "{id} accepted but not at the venue");
    }
    for id in &denied {
        assert!(
            !at_venue.contains(id),
            "{id} was denied but reached the venue"
        );
    }
    for o in &orders {
        let vol: Decimal = o["vol"].as_str().unwrap_or("0").parse().unwrap_or_default();
        let price: Decimal = o["price"]
            .as_str()
            .unwrap_or("0")
            .parse()
            .unwrap_or_default();
        assert!(vol <= Decimal::from(1000), "{o}");
        assert!(vol * price <= Decimal::from(100), "{o}");
    }

    // HALT + cancel-all e0: its orders are canceled at the venue, e1's stay open.
    admin
        .set_trading_state(pb::SetTradingStateRequest {
            engine_id: "e0".into(),
            state: pb::TradingState::Halted as i32,
            cancel_all: true,
            reason: "adversarial".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let orders = h.admin().orders().await.unwrap();
    for o in &orders {
        let cl = o["cl_ord_id"].as_str().unwrap_or("");
        let status = o["status"].as_str().unwrap_or("");
        if cl.starts_with(&prefix("e0")) {
            assert_eq!(status, "canceled", "{o}");
        } else if [
            format!("{}ok2", prefix("e1")),
            format!("{}ok4", prefix("e1")),
        ]
        .contains(&cl.to_string())
        {
            assert_eq!(status, "open", "{o}");
        }
    }
    let s = g[0]
        .place_order(buy("halted", "100", "0.10"))
        .await
        .unwrap_err();
    assert_eq!(herd_proto::answer::risk_code(&s), Some("halted"));

    // kill -9 and restart: e0 is still HALTED, e1 still ACTIVE.
    h.kill_gateway().await.unwrap();
    h.start_gateway().await.unwrap();
    let admin = admin_client(&url).await.unwrap();
    let st = wait_until(
        "the restarted gateway answers",
        Duration::from_secs(20),
        || {
            let mut a = admin.clone();
            async move {
                Ok(a.get_risk_state(pb::GetRiskStateRequest::default())
                    .await
                    .ok()
                    .map(|r| r.into_inner()))
            }
        },
    )
    .await
    .unwrap();
    let state_of = |id: &str| st.engines.iter().find(|b| b.engine_id == id).unwrap().state;
    assert_eq!(state_of("e0"), pb::TradingState::Halted as i32);
    assert_eq!(state_of("e1"), pb::TradingState::Active as i32);
    let mut g0 = gateway_client(&url, &engine_token("e0")).await.unwrap();
    let s = g0
        .place_order(buy("after", "100", "0.10"))
        .await
        .unwrap_err();
    assert_eq!(herd_proto::answer::risk_code(&s), Some("halted"), "{s:?}");

    // herdctl shows it.
    let herdctl = herd_tests::bin_path("herdctl").unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(&herdctl)
            .args(args)
            .args(["--gateway", &url, "--token", ADMIN_TOKEN])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let status = run(&["risk", "status"]);
    assert!(
        status.contains("HALTED") && status.contains("e1"),
        "{status}"
    );
    let audit = run(&["risk", "audit", "e0"]);
    for want in [
        "denial",
        "max_volume",
        "state",
        "halted",
        "cancel_all",
        "adversarial",
    ] {
        assert!(audit.contains(want), "{want} not in:\n{audit}");
    }
    run(&["risk", "resume", "e0", "--reason", "test over"]);
    g0.place_order(buy("resumed", "100", "0.10")).await.unwrap();
    // Bad input through herdctl: exit 1 naming the field.
    let out = std::process::Command::new(&herdctl)
        .args(["risk", "set", "e0", "--max-order-notional=-5"])
        .args(["--gateway", &url, "--token", ADMIN_TOKEN])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("limits.max_order_notional"), "{err}");
    drop(admin);
    h.cleanup().await.unwrap();
}
