//! The gateway on the Kraken venue, end to end: kraken-sim runs as a real
//! process, the gateway in-process on 127.0.0.1:0, engines talk gRPC.
//! Place, poll, fill, cancel; the venue's client-id limit; the dead man's
//! switch; many engines at full speed with zero rate-limit answers; lost
//! AddOrder responses resolved to exactly one order each; lockouts.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::time::{Duration, Instant};

use herd_gateway::config::{DeadMansSwitch, GatewayConfig};
use herd_kraken::Tier;
use herd_proto::gateway as pb;
use herd_tests::kraken_harness::{
    EngineClient, GatewayHandle, SimProcess, credential_files, kraken_gateway_config, limit,
    wait_until,
};
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use serde_json::json;
use tempfile::TempDir;
use tonic::Code;

fn sim_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_kraken-sim"))
}

struct Setup {
    sim: SimProcess,
    gw: GatewayHandle,
    _dir: TempDir,
}

async fn setup(tier: Tier, ids: &[&str], tune: impl FnOnce(&mut GatewayConfig)) -> Setup {
    let tier_name = match tier {
        Tier::Starter => "starter",
        Tier::Intermediate => "intermediate",
        Tier::Pro => "pro",
    };
    let sim = SimProcess::spawn(sim_bin(), tier_name, &[]).await.unwrap();
    let dir = TempDir::new().unwrap();
    let mut cfg =
        kraken_gateway_config(&sim.url(), credential_files(dir.path()).unwrap(), tier, ids);
    tune(&mut cfg);
    let gw = GatewayHandle::start(cfg).await.unwrap();
    Setup { sim, gw, _dir: dir }
}

async fn query(e: &mut EngineClient, ids: &[&str]) -> Vec<pb::Order> {
    e.query_orders(pb::QueryOrdersRequest {
        client_order_ids: ids.iter().map(|s| s.to_string()).collect(),
    })
    .await
    .unwrap()
    .into_inner()
    .orders
}

fn dec(s: &str) -> Decimal {
    s.parse().unwrap()
}

fn status(o: &pb::Order) -> pb::OrderStatus {
    pb::OrderStatus::try_from(o.status).unwrap()
}

fn post_only(mut r: pb::PlaceOrderRequest) -> pb::PlaceOrderRequest {
    r.post_only = true;
    r
}

/// A post-only buy of 100 DOGE at 0.05, far below the market: it rests.
async fn place_resting(e: &mut EngineClient, id: &str) -> Result<pb::Order, tonic::Status> {
    let r = e
        .place_order(post_only(limit(
            id,
            "DOGEUSD",
            pb::Side::Buy,
            "100",
            "0.05",
        )))
        .await?;
    r.into_inner()
        .order
        .ok_or_else(|| tonic::Status::internal("PlaceOrder answered without the order"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn place_poll_fill_cancel() {
    let s = setup(Tier::Starter, &["e0"], |_| {}).await;
    let mut e0 = s.gw.engine("e0").unwrap();
    let session = e0
        .get_session(pb::GetSessionRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(session.venue, "kraken");
    let instruments = e0
        .list_instruments(pb::ListInstrumentsRequest {})
        .await
        .unwrap()
        .into_inner()
        .instruments;
    let doge = instruments.iter().find(|i| i.symbol == "DOGEUSD").unwrap();
    assert_eq!(doge.max_open_orders, 60);
    let mut events = e0
        .stream_order_events(pb::StreamOrderEventsRequest { after_sequence: 0 })
        .await
        .unwrap()
        .into_inner();

    let a = e0
        .place_order(post_only(limit(
            "buy-1",
            "DOGEUSD",
            pb::Side::Buy,
            "100",
            "0.11",
        )))
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap();
    assert_eq!(status(&a), pb::OrderStatus::Open);
    assert_eq!(a.venue_order_id.split('-').count(), 3);
    let b = e0
        .place_order(limit("buy-2", "DOGEUSD", pb::Side::Buy, "100", "0.10"))
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap();
    assert_eq!(status(&b), pb::OrderStatus::Open);

    // "e0-" + 16 characters is 19: over Kraken's 18 for a free-text cl_ord_id.
    let long = e0
        .place_order(limit(
            "sixteen-chars-id",
            "DOGEUSD",
            pb::Side::Buy,
            "100",
            "0.1",
        ))
        .await
        .unwrap_err();
    assert_eq!(long.code(), Code::InvalidArgument);
    assert!(
        long.message().starts_with("client_order_id:"),
        "{}",
        long.message()
    );
    assert!(
        long.message().contains("15"),
        "says how long it may be: {}",
        long.message()
    );

    let c = e0
        .cancel_order(pb::CancelOrderRequest {
            client_order_id: "buy-2".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap();
    assert_eq!(status(&c), pb::OrderStatus::Canceled);

    // The market trades through buy-1: the poller sees the fill.
    s.sim.admin().set_price("XDGUSD", "0.105").await.unwrap();
    let mut seen: Vec<(String, pb::OrderEventKind)> = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(ev) = events.message().await.unwrap() {
            let kind = pb::OrderEventKind::try_from(ev.kind).unwrap();
            let id = ev.order.as_ref().unwrap().client_order_id.clone();
            seen.push((id.clone(), kind));
            if id == "buy-1" && kind == pb::OrderEventKind::Filled {
                assert_eq!(dec(&ev.fill_volume), dec!(100));
                assert_eq!(dec(&ev.fill_price), dec!(0.11));
                break;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no fill event; saw {seen:?}"));
    use pb::OrderEventKind as K;
    assert_eq!(
        seen,
        [
            ("buy-1".to_string(), K::Open),
            ("buy-2".to_string(), K::Open),
            ("buy-2".to_string(), K::Canceled),
            ("buy-1".to_string(), K::Filled),
        ]
    );
    let filled = &query(&mut e0, &["buy-1"]).await[0];
    assert_eq!(status(filled), pb::OrderStatus::Filled);
    assert_eq!(dec(&filled.average_price), dec!(0.11));

    let balances = e0
        .get_balances(pb::GetBalancesRequest {})
        .await
        .unwrap()
        .into_inner()
        .balances;
    let doge_bal = balances.iter().find(|b| b.asset == "DOGE").unwrap();
    assert_eq!(dec(&doge_bal.total), dec!(100000100));
    let budget = e0
        .get_budget(pb::GetBudgetRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(budget.venue, "kraken");
    assert!(
        budget
            .counters
            .iter()
            .any(|c| c.name == "rest" && c.limit == "15")
    );
    assert_eq!(budget.locked_until_ms, 0);
    assert_eq!(s.sim.admin().rate_limit_errors().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_mans_switch_follows_the_engines_streams() {
    let s = setup(Tier::Starter, &["e0"], |c| {
        c.dead_mans_switch = DeadMansSwitch {
            enabled: Some(true),
            timeout_s: 3,
            refresh_s: 1,
        };
    })
    .await;
    let admin = s.sim.admin();
    let mut e0 = s.gw.engine("e0").unwrap();
    let stats = admin.stats().await.unwrap();
    assert_eq!(
        stats["stats"]["dms_refreshes"], 0,
        "not armed while nobody listens"
    );
    let events = e0
        .stream_order_events(pb::StreamOrderEventsRequest { after_sequence: 0 })
        .await
        .unwrap()
        .into_inner();
    wait_until(
        "the switch to be refreshed",
        Duration::from_secs(10),
        || async {
            let st = admin.stats().await.ok()?;
            (st["stats"]["dms_refreshes"].as_u64()? >= 3).then_some(())
        },
    )
    .await
    .unwrap();
    e0.place_order(post_only(limit(
        "dms-1",
        "DOGEUSD",
        pb::Side::Buy,
        "100",
        "0.1",
    )))
    .await
    .unwrap();
    assert_eq!(admin.stats().await.unwrap()["stats"]["dms_triggers"], 0);

    // The engine goes away: the gateway stops refreshing and Kraken cancels.
    drop(events);
    wait_until("the switch to fire", Duration::from_secs(15), || async {
        let st = admin.stats().await.ok()?;
        (st["stats"]["dms_triggers"].as_u64()? == 1 && st["open_orders"] == 0).then_some(())
    })
    .await
    .unwrap();
    wait_until(
        "the gateway to see the cancel",
        Duration::from_secs(15),
        || {
            let mut e0 = e0.clone();
            async move {
                let o = query(&mut e0, &["dms-1"]).await;
                (status(&o[0]) == pb::OrderStatus::Canceled).then_some(())
            }
        },
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_engines_at_full_speed_get_no_rate_limit_errors() {
    let ids = ["e0", "e1", "e2"];
    let s = setup(Tier::Starter, &ids, |_| {}).await;
    let run_for = Duration::from_secs(10);
    let mut tasks = Vec::new();
    for id in ids {
        let mut e = s.gw.engine(id).unwrap();
        tasks.push(tokio::spawn(async move {
            let start = Instant::now();
            let mut open: VecDeque<String> = VecDeque::new();
            let mut errors: HashMap<Code, u32> = HashMap::new();
            let (mut placed, mut cancelled, mut queries) = (0u32, 0u32, 0u32);
            let mut n = 0u32;
            while start.elapsed() < run_for {
                n += 1;
                let (sym, vol, price) = if n.is_multiple_of(2) {
                    ("DOGEUSD", "100", format!("0.{:04}", 500 + n % 100))
                } else {
                    ("BTCUSD", "0.001", format!("{}", 30_000 + n % 100))
                };
                let id = format!("s{n}");
                let req = post_only(limit(&id, sym, pb::Side::Buy, vol, &price));
                match e.place_order(req).await {
                    Ok(_) => {
                        placed += 1;
                        open.push_back(id);
                    }
                    Err(st) => *errors.entry(st.code()).or_default() += 1,
                }
                if open.len() >= 6
                    && let Some(old) = open.pop_front()
                {
                    match e
                        .cancel_order(pb::CancelOrderRequest {
                            client_order_id: old,
                        })
                        .await
                    {
                        Ok(_) => cancelled += 1,
                        Err(st) => *errors.entry(st.code()).or_default() += 1,
                    }
                }
                if n.is_multiple_of(8) {
                    match e.get_balances(pb::GetBalancesRequest {}).await {
                        Ok(_) => queries += 1,
                        Err(st) => *errors.entry(st.code()).or_default() += 1,
                    }
                }
            }
            (placed, cancelled, queries, errors)
        }));
    }
    let mut total_placed = 0;
    let mut total_cancelled = 0;
    for t in tasks {
        let (placed, cancelled, queries, errors) = t.await.unwrap();
        assert!(errors.is_empty(), "engines saw errors: {errors:?}");
        total_placed += placed;
        total_cancelled += cancelled;
        assert!(queries > 0 || placed < 8);
    }
    let stats = s.sim.admin().stats().await.unwrap();
    eprintln!(
        "placed {total_placed}, cancelled {total_cancelled}; sim: {}",
        stats["stats"]
    );
    assert_eq!(stats["stats"]["rate_limit_errors"], 0, "{stats}");
    assert!(
        total_placed >= 20,
        "only {total_placed} orders in {run_for:?}"
    );
    assert!(total_cancelled >= 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_add_order_responses_resolve_to_exactly_one_order_each() {
    let s = setup(Tier::Pro, &["e0"], |c| {
        c.kraken.add_order_deadline_s = Some(2);
        // The venue's own floor (deadline + grace) still applies.
        c.pending_timeout_ms = 1_000;
    })
    .await;
    let admin = s.sim.admin();
    let mut e0 = s.gw.engine("e0").unwrap();
    // Warm the pair directory so every AddOrder below is one request.
    e0.list_instruments(pb::ListInstrumentsRequest {})
        .await
        .unwrap();
    admin
        .set_faults(json!([
            {"method": "AddOrder", "kind": {"type": "lose_response"}, "every": 3}
        ]))
        .await
        .unwrap();
    let ids: Vec<String> = (1..=9).map(|i| format!("lr-{i}")).collect();
    let mut first: HashMap<String, pb::OrderStatus> = HashMap::new();
    for (i, id) in ids.iter().enumerate() {
        // lr-3 crosses the book and fills at once: it is never in OpenOrders.
        let req = if i + 1 == 3 {
            limit(id, "DOGEUSD", pb::Side::Buy, "100", "0.13")
        } else {
            post_only(limit(
                id,
                "DOGEUSD",
                pb::Side::Buy,
                "100",
                &format!("0.{:03}", 100 - i),
            ))
        };
        let o = e0
            .place_order(req)
            .await
            .unwrap()
            .into_inner()
            .order
            .unwrap();
        first.insert(id.clone(), status(&o));
    }
    let pending: Vec<&String> = ids
        .iter()
        .filter(|id| first[*id] == pb::OrderStatus::Pending)
        .collect();
    assert_eq!(
        pending,
        ["lr-3", "lr-6", "lr-9"],
        "every third answer was lost"
    );
    admin.clear_faults().await.unwrap();

    let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let resolved = wait_until("lost submits to resolve", Duration::from_secs(30), || {
        let mut e0 = e0.clone();
        let id_refs = id_refs.clone();
        async move {
            let orders = query(&mut e0, &id_refs).await;
            orders
                .iter()
                .all(|o| status(o) != pb::OrderStatus::Pending)
                .then_some(orders)
        }
    })
    .await
    .unwrap();
    let sim_orders = admin.orders().await.unwrap();
    for o in &resolved {
        let want = if o.client_order_id == "lr-3" {
            pb::OrderStatus::Filled
        } else {
            pb::OrderStatus::Open
        };
        assert_eq!(status(o), want, "{}", o.client_order_id);
        let at_sim: Vec<_> = sim_orders
            .iter()
            .filter(|s| s["cl_ord_id"] == format!("e0-{}", o.client_order_id))
            .collect();
        assert_eq!(at_sim.len(), 1, "{} placed exactly once", o.client_order_id);
        assert_eq!(at_sim[0]["txid"], o.venue_order_id.as_str());
    }
    assert_eq!(sim_orders.len(), 9, "no duplicates, none lost");

    // A submit that never reached the matching engine is reported rejected
    // once its deadline has certainly passed, and nothing exists at Kraken.
    admin
        .set_faults(json!([
            {"method": "AddOrder", "kind": {"type": "reset"}, "times": 1}
        ]))
        .await
        .unwrap();
    let o = place_resting(&mut e0, "never-1").await.unwrap();
    assert_eq!(status(&o), pb::OrderStatus::Pending);
    let after = place_resting(&mut e0, "after-1").await.unwrap();
    assert_eq!(status(&after), pb::OrderStatus::Open);
    wait_until("never-1 to be rejected", Duration::from_secs(40), || {
        let mut e0 = e0.clone();
        async move {
            let o = query(&mut e0, &["never-1"]).await;
            (status(&o[0]) == pb::OrderStatus::Rejected).then_some(())
        }
    })
    .await
    .unwrap();
    let sim_orders = admin.orders().await.unwrap();
    assert!(!sim_orders.iter().any(|s| s["cl_ord_id"] == "e0-never-1"));
    assert_eq!(sim_orders.len(), 10);
    assert_eq!(admin.rate_limit_errors().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lockout_is_reported_and_calls_resume_after() {
    let s = setup(Tier::Starter, &["e0"], |c| {
        c.kraken.lockout_ms = 3_000;
    })
    .await;
    let admin = s.sim.admin();
    let mut e0 = s.gw.engine("e0").unwrap();
    e0.get_balances(pb::GetBalancesRequest {}).await.unwrap();
    admin.lockout(3_000).await.unwrap();
    let err = e0
        .get_balances(pb::GetBalancesRequest {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    let budget = e0
        .get_budget(pb::GetBudgetRequest {})
        .await
        .unwrap()
        .into_inner();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    assert!(budget.locked_until_ms > now_ms, "{budget:?}");
    // While locked the gateway does not keep knocking.
    let again = e0
        .get_balances(pb::GetBalancesRequest {})
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::ResourceExhausted);
    assert_eq!(admin.stats().await.unwrap()["stats"]["lockout_errors"], 1);

    wait_until("calls to resume", Duration::from_secs(15), || {
        let mut e0 = e0.clone();
        async move { e0.get_balances(pb::GetBalancesRequest {}).await.ok() }
    })
    .await
    .unwrap();
    let budget = e0
        .get_budget(pb::GetBudgetRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(budget.locked_until_ms, 0);
    assert_eq!(admin.rate_limit_errors().await.unwrap(), 0);
}

/// An authentication error (bad key, signature or permission) fails the
/// call it answered with INTERNAL naming the venue, and nothing more: the
/// gateway does not stop the key, and the next call goes through once the
/// venue accepts the key again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auth_error_fails_one_call_and_does_not_stop_the_key() {
    let s = setup(Tier::Starter, &["e0"], |_| {}).await;
    let admin = s.sim.admin();
    let mut e0 = s.gw.engine("e0").unwrap();
    admin
        .set_faults(json!([
            {"method": "AddOrder", "kind": {"type": "error", "error": "EAPI:Invalid key"}, "times": 1}
        ]))
        .await
        .unwrap();
    let err = place_resting(&mut e0, "auth-1").await.unwrap_err();
    assert_eq!(err.code(), Code::Internal, "{err:?}");
    assert!(
        err.message().contains("cannot authenticate") && err.message().contains("Invalid key"),
        "{err:?}"
    );
    let budget = e0
        .get_budget(pb::GetBudgetRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(budget.locked_until_ms, 0, "{budget:?}");
    // The very next call is sent and answered.
    let o = place_resting(&mut e0, "auth-2").await.unwrap();
    assert_eq!(status(&o), pb::OrderStatus::Open);
    assert_eq!(admin.rate_limit_errors().await.unwrap(), 0);
}
