//! The walking skeleton end to end, with real processes: a gateway on the
//! paper venue and two engines, talking gRPC over loopback.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use herd_engine::store::Store;
use herd_proto::engine as epb;
use herd_proto::gateway as gpb;
use herd_tests::{
    EngineProc, GatewayProc, admin_client, engine_client, engine_token, gateway_client, wait_until,
};
use rust_decimal::Decimal;
use tonic::Code;

/// The price path does not move on its own (one step an hour): only
/// SetPaperPrice moves the market, so fills happen exactly when the test says.
const STILL_MARKET: &str = "[paper]\nstep_ms = 3600000\nhistory_minutes = 0\n";
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

async fn wait_connected(engine_url: &str) -> epb::EngineStatus {
    let mut c = engine_client(engine_url).await.unwrap();
    wait_until("engine connected to the gateway", WAIT, || {
        let mut c = c.clone();
        async move {
            let s = c.get_status(epb::GetStatusRequest {}).await?.into_inner();
            Ok(s.gateway_connected.then_some(s))
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    c.get_status(epb::GetStatusRequest {})
        .await
        .unwrap()
        .into_inner()
}

async fn fills_in_store(engine: &EngineProc) -> Vec<herd_engine::store::FillRow> {
    let store = Store::connect(&engine.db_url()).await.unwrap();
    let fills = store.fills().await.unwrap();
    store.close().await;
    fills
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_fills_reach_the_owner_exactly_once_across_an_engine_crash() {
    let dir = tempfile::tempdir().unwrap();
    let gw = GatewayProc::start(dir.path(), 2, STILL_MARKET)
        .await
        .unwrap();
    let gw_url = gw.proc.url();
    set_price(&gw_url, "0.1").await;
    let mut e0 = EngineProc::start(dir.path(), "e0", &gw.proc.addr, "")
        .await
        .unwrap();
    let e1 = EngineProc::start(dir.path(), "e1", &gw.proc.addr, "")
        .await
        .unwrap();
    wait_connected(&e0.proc.url()).await;
    wait_connected(&e1.proc.url()).await;

    // e0 places a resting post-only buy below the market.
    let placed = engine_client(&e0.proc.url())
        .await
        .unwrap()
        .submit_order(epb::SubmitOrderRequest {
            symbol: "DOGEUSD".into(),
            side: "buy".into(),
            order_type: "limit".into(),
            volume: "100".into(),
            price: "0.099".into(),
            post_only: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(placed.status, "open");
    let id = placed.client_order_id.clone();

    // The other engine can neither see nor cancel it.
    let mut as_e1 = gateway_client(&gw_url, &engine_token("e1")).await.unwrap();
    let err = as_e1
        .query_orders(gpb::QueryOrdersRequest {
            client_order_ids: vec![id.clone()],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err}");
    let err = as_e1
        .cancel_order(gpb::CancelOrderRequest {
            client_order_id: id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err}");
    assert!(
        as_e1
            .list_open_orders(gpb::ListOpenOrdersRequest::default())
            .await
            .unwrap()
            .into_inner()
            .orders
            .is_empty()
    );

    // e0's journal has the open order (its OPEN event arrived).
    let mut e0c = engine_client(&e0.proc.url()).await.unwrap();
    wait_until("the OPEN event in e0's status", WAIT, || {
        let mut c = e0c.clone();
        let id = id.clone();
        async move {
            let s = c.get_status(epb::GetStatusRequest {}).await?.into_inner();
            Ok(s.open_orders
                .iter()
                .any(|o| o.client_order_id == id && o.status == "open")
                .then_some(()))
        }
    })
    .await
    .unwrap();
    let seq_before_crash = e0c
        .get_status(epb::GetStatusRequest {})
        .await
        .unwrap()
        .into_inner()
        .last_event_sequence;
    assert!(seq_before_crash >= 1);

    // Crash e0 while the order is open; the market trades through it.
    e0.proc.kill9().await.unwrap();
    set_price(&gw_url, "0.098").await;
    let mut as_e0 = gateway_client(&gw_url, &engine_token("e0")).await.unwrap();
    wait_until("the gateway to see the fill", WAIT, || {
        let mut c = as_e0.clone();
        let id = id.clone();
        async move {
            let o = c
                .query_orders(gpb::QueryOrdersRequest {
                    client_order_ids: vec![id],
                })
                .await?
                .into_inner()
                .orders;
            Ok((o[0].status == gpb::OrderStatus::Filled as i32).then_some(()))
        }
    })
    .await
    .unwrap();
    let gateway_seq = as_e0
        .get_session(gpb::GetSessionRequest {})
        .await
        .unwrap()
        .into_inner()
        .last_sequence;
    assert!(
        gateway_seq > seq_before_crash,
        "the fill is an event after the crash"
    );
    assert!(
        fills_in_store(&e0).await.is_empty(),
        "nothing journaled while e0 was down"
    );

    // e0 comes back on the same store and resumes after its last sequence.
    e0 = EngineProc::start(dir.path(), "e0", &gw.proc.addr, "")
        .await
        .unwrap();
    let mut e0c = engine_client(&e0.proc.url()).await.unwrap();
    wait_until("e0 to catch up with the gateway", WAIT, || {
        let mut c = e0c.clone();
        async move {
            let s = c.get_status(epb::GetStatusRequest {}).await?.into_inner();
            Ok((s.gateway_connected && s.last_event_sequence == gateway_seq).then_some(()))
        }
    })
    .await
    .unwrap();
    let fills = fills_in_store(&e0).await;
    assert_eq!(fills.len(), 1, "exactly one fill: {fills:?}");
    assert_eq!(fills[0].volume, Decimal::from(100));
    assert_eq!(fills[0].price, Decimal::new(99, 3));
    assert_eq!(
        fills[0].fee,
        Decimal::new(2475, 5),
        "maker fee 0.25 % of 9.9 USD"
    );
    // Journaled once, by whichever came first: the stream's replay (a
    // sequence after the crash) or the start reconcile, which journals a
    // fill the journal lacks before the strategies restore (sequence 0;
    // engine-service/src/execution.rs). The replay of the other is a no-op.
    assert!(
        fills[0].sequence == 0 || fills[0].sequence > seq_before_crash,
        "fill sequence {} vs {seq_before_crash} before the crash: {fills:?}",
        fills[0].sequence
    );
    let status = e0c
        .get_status(epb::GetStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.fills_journaled, 1);
    assert!(status.open_orders.is_empty());
    assert!(
        e0.proc
            .log_text()
            .contains(&format!("after={seq_before_crash}")),
        "resumed after its last sequence, not from the start: {}",
        e0.proc.log_text()
    );

    // A second restart replays nothing new.
    e0.proc.terminate().await.unwrap();
    let e0 = EngineProc::start(dir.path(), "e0", &gw.proc.addr, "")
        .await
        .unwrap();
    wait_connected(&e0.proc.url()).await;
    assert_eq!(fills_in_store(&e0).await.len(), 1);
    drop(e1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_invalid_argument_and_places_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let gw = GatewayProc::start(dir.path(), 1, STILL_MARKET)
        .await
        .unwrap();
    let gw_url = gw.proc.url();
    let mut c = gateway_client(&gw_url, &engine_token("e0")).await.unwrap();
    let good = gpb::PlaceOrderRequest {
        client_order_id: "bad-input-1".into(),
        symbol: "DOGEUSD".into(),
        side: gpb::Side::Buy as i32,
        order_type: gpb::OrderType::Limit as i32,
        volume: "100".into(),
        price: "0.05".into(),
        post_only: true,
        userref: 0,
        reduce_only: false,
        strategy: String::new(),
    };
    let cases: Vec<(&str, gpb::PlaceOrderRequest)> = vec![
        (
            "volume",
            gpb::PlaceOrderRequest {
                volume: "-5".into(),
                ..good.clone()
            },
        ),
        (
            "volume",
            gpb::PlaceOrderRequest {
                volume: "0".into(),
                ..good.clone()
            },
        ),
        (
            "volume",
            gpb::PlaceOrderRequest {
                volume: "lots".into(),
                ..good.clone()
            },
        ),
        (
            "price",
            gpb::PlaceOrderRequest {
                price: "NaN".into(),
                ..good.clone()
            },
        ),
        (
            "price",
            gpb::PlaceOrderRequest {
                price: "cheap".into(),
                ..good.clone()
            },
        ),
        (
            "symbol",
            gpb::PlaceOrderRequest {
                symbol: "NOPEUSD".into(),
                ..good.clone()
            },
        ),
        (
            "client_order_id",
            gpb::PlaceOrderRequest {
                client_order_id: String::new(),
                ..good.clone()
            },
        ),
        (
            "userref",
            gpb::PlaceOrderRequest {
                userref: 5,
                ..good.clone()
            },
        ),
        (
            "volume",
            gpb::PlaceOrderRequest {
                volume: "1".into(),
                ..good.clone()
            },
        ),
    ];
    for (field, req) in cases {
        let err = c.place_order(req.clone()).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{req:?}: {err}");
        assert!(
            err.message().starts_with(field),
            "{field}: {}",
            err.message()
        );
    }
    let open = c
        .list_open_orders(gpb::ListOpenOrdersRequest::default())
        .await
        .unwrap()
        .into_inner()
        .orders;
    assert!(open.is_empty(), "nothing placed: {open:?}");

    // No token, a wrong token, the admin token on the trading API.
    let mut anon = gpb::gateway_client::GatewayClient::connect(gw_url.clone())
        .await
        .unwrap();
    let err = anon
        .list_open_orders(gpb::ListOpenOrdersRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let mut wrong = gateway_client(&gw_url, "not-a-token").await.unwrap();
    assert_eq!(
        wrong
            .list_open_orders(gpb::ListOpenOrdersRequest::default())
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );
    let mut admin_as_engine = gateway_client(&gw_url, herd_tests::ADMIN_TOKEN)
        .await
        .unwrap();
    assert_eq!(
        admin_as_engine
            .place_order(good.clone())
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    // The same good order twice is one order.
    let a = c
        .place_order(good.clone())
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap();
    let b = c
        .place_order(good.clone())
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap();
    assert_eq!(a.venue_order_id, b.venue_order_id);
    assert_eq!(
        c.list_open_orders(gpb::ListOpenOrdersRequest::default())
            .await
            .unwrap()
            .into_inner()
            .orders
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let mut gw = GatewayProc::start(dir.path(), 1, STILL_MARKET)
        .await
        .unwrap();
    let mut e0 = EngineProc::start(dir.path(), "e0", &gw.proc.addr, "")
        .await
        .unwrap();
    wait_connected(&e0.proc.url()).await;
    assert!(e0.proc.terminate().await.unwrap().success());
    assert!(gw.proc.terminate().await.unwrap().success());
}
