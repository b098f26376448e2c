//! Issue 16 against real processes: `kraken-sim` as the venue and a real
//! `herd-gateway` process on it with risk limits. Two adversarial engines
//! (`risk-adversary` processes holding engine tokens, so exactly what a
//! compromised engine could send) try to exceed every limit; the simulator's ledger
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

/// Runs the `risk-adversary` process as the engine holding `token` with
/// `input` (JSON lines) and returns its answers.
async fn adversary(url: &str, token: &str, input: &str) -> Vec<serde_json::Value> {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_risk-adversary"))
        .args(["--gateway", url, "--token", token])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).await.unwrap();
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("the adversary did not finish")
        .unwrap();
    assert!(out.status.success(), "risk-adversary failed: {out:?}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
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
    let mut g0 = gateway_client(&url, &engine_token("e0")).await.unwrap();
    let mut admin = admin_client(&url).await.unwrap();

    let mut accepted: BTreeSet<String> = BTreeSet::new();
    let mut denied: BTreeSet<String> = BTreeSet::new();
    // Each engine's attack runs in an adversary process of its own:
    // (op, id, volume, price, what the gateway must answer: None = accepted,
    // Some(risk code)).
    let e0: &[(&str, &str, &str, &str, Option<&str>)] = &[
        ("place", "ok1", "500", "0.11", None),
        ("place", "vol", "1001", "0.05", Some("max_volume")),
        ("place", "notional", "900", "0.115", Some("max_notional")),
        ("place", "band", "100", "0.20", Some("price_band")),
        ("place", "ok2", "800", "0.10", None),
        // 500 + 800 + 900 resting buys = 2200 DOGE, at 0.10 220 USD > 200.
        ("place", "exposure", "900", "0.10", Some("max_exposure")),
        ("place", "ok3", "100", "0.10", None),
        ("place", "open", "100", "0.10", Some("max_open_orders")),
    ];
    let e1: &[(&str, &str, &str, &str, Option<&str>)] = &[
        ("place", "ok1", "100", "0.10", None),
        // e1 has 1 of its 3; the account has 4 of its 5.
        ("place", "ok2", "100", "0.10", None),
        ("place", "account", "100", "0.10", Some("max_open_orders")),
        ("place", "account2", "100", "0.10", Some("max_open_orders")),
        // The rate limit (4 submits a window; denied ones do not count):
        // e1 has sent 2. Cancels make room in the account for each.
        ("cancel", "ok1", "", "", None),
        ("place", "ok3", "100", "0.10", None),
        ("cancel", "ok3", "", "", None),
        ("place", "ok4", "100", "0.10", None),
        ("place", "rate", "100", "0.10", Some("order_rate")),
    ];
    for (engine, ops) in [("e0", e0), ("e1", e1)] {
        let input: String = ops
            .iter()
            .map(|(op, id, volume, price, _)| {
                format!(
                    "{}\n",
                    serde_json::json!({"op": op, "id": id, "side": "buy", "volume": volume, "price": price})
                )
            })
            .collect();
        let answers = adversary(&url, &engine_token(engine), &input).await;
        assert_eq!(answers.len(), ops.len(), "{answers:?}");
        for ((op, id, _, _, want), got) in ops.iter().zip(&answers) {
            let venue_id = format!("{}{id}", prefix(engine));
            match want {
                None => {
                    assert_eq!(got["ok"], true, "{engine} {op} {id}: {got}");
                    if *op == "place" {
                        accepted.insert(venue_id);
                    }
                }
                Some(code) => {
                    assert_eq!(got["ok"], false, "{engine} {id}: {got}");
                    assert_eq!(got["risk_code"], *code, "{engine} {id}: {got}");
                    let grpc = if *code == "order_rate" {
                        "ResourceExhausted"
                    } else {
                        "FailedPrecondition"
                    };
                    assert_eq!(got["grpc"], grpc, "{engine} {id}: {got}");
                    denied.insert(venue_id);
                }
            }
        }
        if engine == "e1" {
            let account = &answers[3];
            assert!(
                account["message"].as_str().unwrap().contains("the account"),
                "{account}"
            );
            let rate = answers.last().unwrap();
            assert!(rate["retry_after_ms"].is_string(), "{rate}");
        }
    }

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
    let s = g0
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
