//! Processes going away: a gateway killed with -9 and restarted rebuilds
//! order ownership from the venue (a paper account kept in a file) and the
//! engine reconciles without losing or doubling a fill; an engine whose
//! stream is gone past its grace has its orders (and only its orders)
//! canceled by the gateway's dead man's switch.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use herd_engine::store::Store;
use herd_proto::engine as epb;
use herd_proto::gateway as gpb;
use herd_tests::{
    EngineProc, GatewayOpts, GatewayProc, admin_client, engine_client, engine_token, free_port,
    gateway_client, wait_until,
};
use rust_decimal::Decimal;

const WAIT: Duration = Duration::from_secs(30);

async fn set_price(gateway_url: &str, price: &str) {
    admin_client(gateway_url)
        .await
        .unwrap()
        .set_paper_price(gpb::SetPaperPriceRequest {
            symbol: "DOGEUSD".into(),
            price: price.into(),
        })
        .await
        .unwrap();
}

async fn status(engine_url: &str) -> anyhow::Result<epb::EngineStatus> {
    Ok(engine_client(engine_url)
        .await?
        .get_status(epb::GetStatusRequest {})
        .await?
        .into_inner())
}

async fn submit_buy(engine_url: &str, price: &str) -> String {
    engine_client(engine_url)
        .await
        .unwrap()
        .submit_order(epb::SubmitOrderRequest {
            symbol: "DOGEUSD".into(),
            side: "buy".into(),
            order_type: "limit".into(),
            volume: "100".into(),
            price: price.into(),
            post_only: true,
        })
        .await
        .unwrap()
        .into_inner()
        .client_order_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_kill9_and_restart_loses_no_fill_and_counts_none_twice() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("paper-state.json");
    let extra = format!(
        "[paper]\nstep_ms = 3600000\nhistory_minutes = 0\nstate_file = \"{}\"\n",
        state.display()
    );
    let opts = GatewayOpts {
        port: free_port().unwrap(),
        ..GatewayOpts::default()
    };
    let mut gw = GatewayProc::start_with(dir.path(), 1, &extra, &opts)
        .await
        .unwrap();
    set_price(&gw.proc.url(), "0.1").await;
    let e0 = EngineProc::start(dir.path(), "e0", &gw.proc.addr, "")
        .await
        .unwrap();
    let url = e0.proc.url();
    wait_until("e0 connected", WAIT, || {
        let url = url.clone();
        async move { Ok(status(&url).await?.gateway_connected.then_some(())) }
    })
    .await
    .unwrap();
    let id = submit_buy(&url, "0.099").await;
    let first = status(&url).await.unwrap().gateway_incarnation;

    // The paper account (with the order) reaches its file, then the gateway dies.
    wait_until("the order in the saved paper state", WAIT, || {
        let state = state.clone();
        let id = id.clone();
        async move {
            Ok(std::fs::read_to_string(&state)
                .unwrap_or_default()
                .contains(&id)
                .then_some(()))
        }
    })
    .await
    .unwrap();
    gw.proc.kill9().await.unwrap();

    let gw = GatewayProc::start_with(dir.path(), 1, &extra, &opts)
        .await
        .unwrap();
    // The new gateway knows the order belongs to e0 before any engine asks.
    let mut as_e0 = gateway_client(&gw.proc.url(), &engine_token("e0"))
        .await
        .unwrap();
    wait_until("the order adopted from the venue", WAIT, || {
        let mut c = as_e0.clone();
        async move {
            let open = c
                .list_open_orders(gpb::ListOpenOrdersRequest::default())
                .await?
                .into_inner()
                .orders;
            Ok((open.len() == 1).then_some(()))
        }
    })
    .await
    .unwrap();
    set_price(&gw.proc.url(), "0.098").await;
    wait_until(
        "e0 journals the fill under the new incarnation",
        WAIT,
        || {
            let url = url.clone();
            let first = first.clone();
            async move {
                let s = status(&url).await?;
                Ok((s.gateway_connected
                    && s.gateway_incarnation != first
                    && s.fills_journaled == 1
                    && s.open_orders.is_empty())
                .then_some(()))
            }
        },
    )
    .await
    .unwrap();
    // Exactly one fill, of the whole order, at its limit price.
    let store = Store::connect(&e0.db_url()).await.unwrap();
    let fills = store.fills().await.unwrap();
    store.close().await;
    assert_eq!(fills.len(), 1, "{fills:?}");
    assert_eq!(fills[0].volume, Decimal::from(100));
    assert_eq!(fills[0].price, Decimal::new(99, 3));
    let o = as_e0
        .query_orders(gpb::QueryOrdersRequest {
            client_order_ids: vec![id],
        })
        .await
        .unwrap()
        .into_inner()
        .orders;
    assert_eq!(o[0].status, gpb::OrderStatus::Filled as i32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_man_switch_cancels_only_the_silent_engines_orders() {
    let dir = tempfile::tempdir().unwrap();
    let opts = GatewayOpts {
        cancel_on_disconnect_ms: Some(300),
        ..GatewayOpts::default()
    };
    let gw = GatewayProc::start_with(
        dir.path(),
        2,
        "[paper]\nstep_ms = 3600000\nhistory_minutes = 0\n",
        &opts,
    )
    .await
    .unwrap();
    set_price(&gw.proc.url(), "0.1").await;
    let mut e0 = EngineProc::start(dir.path(), "e0", &gw.proc.addr, "")
        .await
        .unwrap();
    let e1 = EngineProc::start(dir.path(), "e1", &gw.proc.addr, "")
        .await
        .unwrap();
    for e in [&e0, &e1] {
        let url = e.proc.url();
        wait_until("engine connected", WAIT, || {
            let url = url.clone();
            async move { Ok(status(&url).await?.gateway_connected.then_some(())) }
        })
        .await
        .unwrap();
    }
    let id0 = submit_buy(&e0.proc.url(), "0.099").await;
    let id1 = submit_buy(&e1.proc.url(), "0.098").await;
    e0.proc.kill9().await.unwrap();

    let mut admin = admin_client(&gw.proc.url()).await.unwrap();
    let fired = wait_until("the dead man's switch for e0", WAIT, || {
        let mut admin = admin.clone();
        async move {
            let engines = admin
                .list_engines(gpb::ListEnginesRequest {})
                .await?
                .into_inner()
                .engines;
            let e0 = engines.into_iter().find(|e| e.engine_id == "e0").unwrap();
            Ok((e0.dead_man_canceled > 0).then_some(e0))
        }
    })
    .await
    .unwrap();
    assert_eq!(fired.dead_man_canceled, 1);
    assert!(!fired.stream_connected);
    let mut as_e0 = gateway_client(&gw.proc.url(), &engine_token("e0"))
        .await
        .unwrap();
    let o0 = as_e0
        .query_orders(gpb::QueryOrdersRequest {
            client_order_ids: vec![id0],
        })
        .await
        .unwrap()
        .into_inner()
        .orders;
    assert_eq!(o0[0].status, gpb::OrderStatus::Canceled as i32);
    let mut as_e1 = gateway_client(&gw.proc.url(), &engine_token("e1"))
        .await
        .unwrap();
    let o1 = as_e1
        .query_orders(gpb::QueryOrdersRequest {
            client_order_ids: vec![id1],
        })
        .await
        .unwrap()
        .into_inner()
        .orders;
    assert_eq!(
        o1[0].status,
        gpb::OrderStatus::Open as i32,
        "e1 is connected: its order stays"
    );
    let engines = admin
        .list_engines(gpb::ListEnginesRequest {})
        .await
        .unwrap()
        .into_inner()
        .engines;
    assert_eq!(
        engines
            .iter()
            .find(|e| e.engine_id == "e1")
            .unwrap()
            .dead_man_canceled,
        0
    );

    // e0 comes back, resumes and journals the cancel.
    let e0 = EngineProc::start(dir.path(), "e0", &gw.proc.addr, "")
        .await
        .unwrap();
    let url = e0.proc.url();
    wait_until("e0 sees its order canceled", WAIT, || {
        let url = url.clone();
        async move {
            let s = status(&url).await?;
            Ok((s.gateway_connected && s.open_orders.is_empty()).then_some(()))
        }
    })
    .await
    .unwrap();
}

/// Issue 23, bug 8: with `paper.state_file`, an order the gateway answered
/// as accepted is on disk before the answer, so a kill -9 right after the
/// answers loses none (the state used to be saved every 2 s only: orders
/// of the last second were gone after a restart while the engine kept
/// them open). Placed one at a time and many at once (they share writes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_kill9_right_after_accepting_orders_loses_none() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("paper-state.json");
    let extra = format!(
        "[paper]\nstep_ms = 3600000\nhistory_minutes = 0\nstate_file = \"{}\"\n",
        state.display()
    );
    let opts = GatewayOpts {
        port: free_port().unwrap(),
        ..GatewayOpts::default()
    };
    let mut gw = GatewayProc::start_with(dir.path(), 1, &extra, &opts)
        .await
        .unwrap();
    let order = |id: String| gpb::PlaceOrderRequest {
        client_order_id: id,
        symbol: "DOGEUSD".into(),
        side: gpb::Side::Buy as i32,
        order_type: gpb::OrderType::Limit as i32,
        volume: "100".into(),
        price: "0.05".into(),
        post_only: true,
        ..Default::default()
    };
    let mut as_e0 = gateway_client(&gw.proc.url(), &engine_token("e0"))
        .await
        .unwrap();
    let mut accepted = Vec::new();
    for i in 0..5 {
        let id = format!("one-{i}");
        as_e0.place_order(order(id.clone())).await.unwrap();
        accepted.push(id);
    }
    let at_once: Vec<_> = (0..20)
        .map(|i| {
            let mut c = as_e0.clone();
            let req = order(format!("many-{i}"));
            tokio::spawn(async move { c.place_order(req).await })
        })
        .collect();
    for t in at_once {
        let placed = t.await.unwrap().unwrap().into_inner();
        accepted.push(placed.order.unwrap().client_order_id);
    }
    let canceled = accepted[0].clone();
    as_e0
        .cancel_order(gpb::CancelOrderRequest {
            client_order_id: canceled.clone(),
        })
        .await
        .unwrap();
    gw.proc.kill9().await.unwrap();

    let gw = GatewayProc::start_with(dir.path(), 1, &extra, &opts)
        .await
        .unwrap();
    let mut as_e0 = gateway_client(&gw.proc.url(), &engine_token("e0"))
        .await
        .unwrap();
    let found = as_e0
        .query_orders(gpb::QueryOrdersRequest {
            client_order_ids: accepted.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .orders;
    let mut states: Vec<(String, i32)> = found
        .iter()
        .map(|o| (o.client_order_id.clone(), o.status))
        .collect();
    states.sort();
    let mut expected: Vec<(String, i32)> = accepted
        .iter()
        .map(|id| {
            let status = if *id == canceled {
                gpb::OrderStatus::Canceled
            } else {
                gpb::OrderStatus::Open
            };
            (id.clone(), status as i32)
        })
        .collect();
    expected.sort();
    assert_eq!(
        states, expected,
        "every answered place and cancel survives kill -9"
    );
}

/// `/readyz` on the engine's admin port: the status code.
async fn readyz(http_addr: &str) -> anyhow::Result<u16> {
    Ok(reqwest::get(format!("http://{http_addr}/readyz"))
        .await?
        .status()
        .as_u16())
}

/// The engine's named gRPC health status (`herd.engine.v1.Engine`) and the
/// overall one ("").
async fn engine_health(url: &str) -> anyhow::Result<(i32, i32)> {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    let channel = tonic::transport::Channel::from_shared(url.to_string())?
        .connect()
        .await?;
    let mut h = HealthClient::new(channel);
    let mut check = async |service: &str| -> anyhow::Result<i32> {
        Ok(h.check(HealthCheckRequest {
            service: service.into(),
        })
        .await?
        .into_inner()
        .status)
    };
    let named = check("herd.engine.v1.Engine").await?;
    let overall = check("").await?;
    Ok((named, overall))
}

/// A sample of the engine's `/metrics` page (0 when absent).
async fn engine_metric(http_addr: &str, name: &str) -> anyhow::Result<f64> {
    let page = reqwest::get(format!("http://{http_addr}/metrics"))
        .await?
        .text()
        .await?;
    Ok(page
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_outage_makes_the_engine_wait_not_pause_and_it_resumes_on_reconnect() {
    use tonic_health::pb::health_check_response::ServingStatus;
    const MAX_ERRORS: u32 = 3;
    let dir = tempfile::tempdir().unwrap();
    let extra = "[paper]\nstep_ms = 3600000\nhistory_minutes = 0\n";
    let opts = GatewayOpts {
        port: free_port().unwrap(),
        ..GatewayOpts::default()
    };
    let mut gw = GatewayProc::start_with(dir.path(), 1, extra, &opts)
        .await
        .unwrap();
    set_price(&gw.proc.url(), "0.1").await;
    let e0 = EngineProc::start(
        dir.path(),
        "e0",
        &gw.proc.addr,
        &format!("max_consecutive_errors = {MAX_ERRORS}\n"),
    )
    .await
    .unwrap();
    let url = e0.proc.url();
    let http = e0.http_addr.clone();
    wait_until("e0 connected and ready", WAIT, || {
        let (url, http) = (url.clone(), http.clone());
        async move {
            Ok(
                (status(&url).await?.gateway_connected && readyz(&http).await? == 200)
                    .then_some(()),
            )
        }
    })
    .await
    .unwrap();
    let serving = ServingStatus::Serving as i32;
    let not_serving = ServingStatus::NotServing as i32;
    assert_eq!(engine_health(&url).await.unwrap(), (serving, serving));

    gw.proc.kill9().await.unwrap();
    wait_until("e0 reports itself not ready", WAIT, || {
        let (url, http) = (url.clone(), http.clone());
        async move {
            Ok(
                (readyz(&http).await? == 503 && engine_health(&url).await?.0 == not_serving)
                    .then_some(()),
            )
        }
    })
    .await
    .unwrap();
    // The outage lasts for many more failed gateway calls than the pause
    // threshold (each tick makes several).
    let failed = wait_until("e0's calls fail many times over", WAIT, || {
        let http = http.clone();
        async move {
            let n = engine_metric(&http, "herd_engine_gateway_unreachable_total").await?;
            Ok((n >= f64::from(4 * MAX_ERRORS)).then_some(n))
        }
    })
    .await
    .unwrap();
    let during = status(&url).await.unwrap();
    assert_eq!(
        during.mode,
        epb::Mode::Running as i32,
        "after {failed} failed calls: {:?}",
        during.pause_reason
    );
    assert!(!during.gateway_connected);
    assert_eq!(during.consecutive_venue_errors, 0);
    assert_eq!(
        engine_health(&url).await.unwrap(),
        (not_serving, serving),
        "not ready, but alive: the overall status (the probes') stays SERVING"
    );

    // The gateway comes back on the same port: the engine reconnects,
    // reconciles and is ready again, with no `herdctl resume`.
    let _gw = GatewayProc::start_with(dir.path(), 1, extra, &opts)
        .await
        .unwrap();
    wait_until("e0 reconnected and ready", WAIT, || {
        let (url, http) = (url.clone(), http.clone());
        async move {
            Ok(
                (status(&url).await?.gateway_connected && readyz(&http).await? == 200)
                    .then_some(()),
            )
        }
    })
    .await
    .unwrap();
    let after = status(&url).await.unwrap();
    assert_eq!(
        after.mode,
        epb::Mode::Running as i32,
        "{:?}",
        after.pause_reason
    );
    assert!(after.pause_reason.is_empty(), "{:?}", after.pause_reason);
    assert_eq!(engine_health(&url).await.unwrap(), (serving, serving));
}
