//! Graceful shutdown with real processes: on SIGTERM a service reports
//! NOT_SERVING first (gRPC health and `/readyz`), refuses new orders with
//! UNAVAILABLE during its drain delay, lets the calls in flight finish,
//! flushes its state and exits 0; a call that cannot finish makes it exit
//! non-zero at its deadline, naming the call in its log.
//!
//! The paper venue's `latency_ms` knob keeps a place in flight long enough
//! to watch all of this; every step waits on an observable condition.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::ExitStatus;
use std::time::{Duration, Instant};

use herd_proto::engine as epb;
use herd_proto::gateway as gpb;
use herd_tests::procs::{EngineOpts, Proc};
use herd_tests::{
    EngineProc, GatewayOpts, GatewayProc, engine_client, engine_token, gateway_client, wait_until,
};
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

const WAIT: Duration = Duration::from_secs(30);
/// How long the slow paper venue takes for each place and cancel.
const VENUE_LATENCY_MS: u64 = 2_500;
/// The drain delay of the services under test: long enough to make calls in
/// it, well below the venue latency.
const DRAIN_DELAY_MS: u64 = 1_000;

fn slow_paper(latency_ms: u64, state_file: &std::path::Path) -> String {
    format!(
        "[paper]\nstep_ms = 3600000\nhistory_minutes = 0\nlatency_ms = {latency_ms}\nstate_file = \"{}\"\n",
        state_file.display()
    )
}

/// A limit buy far below the paper market (0.12): it rests on the book.
fn resting_buy(client_order_id: &str) -> gpb::PlaceOrderRequest {
    gpb::PlaceOrderRequest {
        client_order_id: client_order_id.into(),
        symbol: "DOGEUSD".into(),
        side: gpb::Side::Buy as i32,
        order_type: gpb::OrderType::Limit as i32,
        volume: "100".into(),
        price: "0.05".into(),
        ..Default::default()
    }
}

/// The overall status ("") and the named service's, from grpc.health.v1.
async fn health(url: &str, service: &str) -> anyhow::Result<(i32, i32)> {
    let channel = tonic::transport::Channel::from_shared(url.to_string())?
        .connect()
        .await?;
    let mut h = HealthClient::new(channel);
    let overall = h
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await?
        .into_inner()
        .status;
    let named = h
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await?
        .into_inner()
        .status;
    Ok((overall, named))
}

/// Waits until both statuses read NOT_SERVING; returns how long that took.
async fn wait_not_serving(url: &str, service: &str) -> Duration {
    let t0 = Instant::now();
    wait_until("health NOT_SERVING", WAIT, || async {
        let (overall, named) = health(url, service).await?;
        let not = ServingStatus::NotServing as i32;
        Ok((overall == not && named == not).then_some(()))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    t0.elapsed()
}

async fn readyz(http_addr: &str) -> u16 {
    reqwest::get(format!("http://{http_addr}/readyz"))
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn wait_exit(proc: &mut Proc) -> ExitStatus {
    tokio::time::timeout(WAIT, proc.child.wait())
        .await
        .unwrap_or_else(|_| panic!("still running; log:\n{}", proc.log_text()))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_sigterm_flips_health_refuses_new_orders_finishes_the_one_in_flight_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("paper-state.json");
    let opts = GatewayOpts {
        drain_delay_ms: Some(DRAIN_DELAY_MS),
        ..GatewayOpts::default()
    };
    let mut gw =
        GatewayProc::start_with(dir.path(), 1, &slow_paper(VENUE_LATENCY_MS, &state), &opts)
            .await
            .unwrap();
    let url = gw.proc.url();
    assert_eq!(readyz(&gw.http_addr).await, 200);
    let (overall, named) = health(&url, "herd.gateway.v1.Gateway").await.unwrap();
    assert_eq!(
        (overall, named),
        (ServingStatus::Serving as i32, ServingStatus::Serving as i32)
    );

    // A place that takes VENUE_LATENCY_MS at the venue.
    let mut client = gateway_client(&url, &engine_token("e0")).await.unwrap();
    let mut c = client.clone();
    let started = Instant::now();
    let in_flight = tokio::spawn(async move { c.place_order(resting_buy("drain-1")).await });
    // In flight: the gateway registers an order as pending before the venue call.
    wait_until("the place registered as pending", WAIT, || {
        let mut c = client.clone();
        async move {
            let open = c
                .list_open_orders(gpb::ListOpenOrdersRequest::default())
                .await?
                .into_inner()
                .orders;
            Ok(open
                .iter()
                .any(|o| {
                    o.client_order_id == "drain-1" && o.status == gpb::OrderStatus::Pending as i32
                })
                .then_some(()))
        }
    })
    .await
    .unwrap();

    // An engine's event stream, open across the shutdown.
    let mut events = client
        .stream_order_events(gpb::StreamOrderEventsRequest { after_sequence: 0 })
        .await
        .unwrap()
        .into_inner();
    let stream = tokio::spawn(async move {
        loop {
            match events.message().await {
                Ok(Some(_)) => {}
                Ok(None) => return Ok(Instant::now()),
                Err(e) => return Err(e),
            }
        }
    });

    gw.proc.sigterm().await.unwrap();
    let signaled = Instant::now();
    // 1. Health flips first, while the place is still at the venue.
    let flip = wait_not_serving(&url, "herd.gateway.v1.Gateway").await;
    assert!(
        !in_flight.is_finished(),
        "the place finished before health flipped"
    );
    assert_eq!(readyz(&gw.http_addr).await, 503, "/readyz during the drain");
    // 2. During the drain delay: new orders are refused, reads still answered.
    let refused = client
        .place_order(resting_buy("drain-2"))
        .await
        .expect_err("a new order during the drain must be refused");
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert!(refused.message().contains("shutting down"), "{refused:?}");
    // Marked as a definite refusal, so an engine does not take it for an
    // unknown outcome.
    assert!(
        herd_proto::serving::is_drain_refusal(&refused),
        "{refused:?}"
    );
    assert!(
        signaled.elapsed() < Duration::from_millis(DRAIN_DELAY_MS),
        "the checks took longer than the drain delay; the test proves nothing"
    );
    let ticker = client
        .get_ticker(gpb::GetTickerRequest {
            symbol: "DOGEUSD".into(),
        })
        .await;
    assert!(ticker.is_ok(), "reads during the drain: {ticker:?}");
    assert!(!in_flight.is_finished());

    // 3. The event stream ends cleanly (status OK) after the drain delay,
    //    so the server can stop; an engine would reconnect and resume.
    let ended = stream
        .await
        .unwrap()
        .expect("the event stream ends with status OK");
    assert!(
        ended.duration_since(signaled) >= Duration::from_millis(DRAIN_DELAY_MS),
        "the event stream ended during the drain delay"
    );
    // The call in flight completes OK and the order exists.
    let placed = in_flight
        .await
        .unwrap()
        .expect("the in-flight place succeeds");
    let order = placed.into_inner().order.unwrap();
    assert_eq!(order.client_order_id, "drain-1");
    assert_eq!(order.status, gpb::OrderStatus::Open as i32, "{order:?}");
    assert!(started.elapsed() >= Duration::from_millis(VENUE_LATENCY_MS));

    // 4. Exit 0, state flushed, the drain in the log.
    let status = wait_exit(&mut gw.proc).await;
    let exit_after = signaled.elapsed();
    let log = gw.proc.log_text();
    assert!(status.success(), "exit status {status}; log:\n{log}");
    for line in ["gateway draining", "gateway closing", "gateway stopped"] {
        assert!(log.contains(line), "log lacks {line:?}:\n{log}");
    }
    let saved = std::fs::read_to_string(&state).unwrap();
    assert!(
        saved.contains("e0-drain-1"),
        "the paper state file lacks the order placed during the drain"
    );
    assert!(
        !saved.contains("drain-2"),
        "the refused order reached the venue"
    );
    eprintln!(
        "gateway drain: health flipped {} ms after SIGTERM, exit {} ms after SIGTERM \
         (drain delay {DRAIN_DELAY_MS} ms, venue latency {VENUE_LATENCY_MS} ms)",
        flip.as_millis(),
        exit_after.as_millis()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_exits_non_zero_at_the_shutdown_deadline_naming_the_call_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("paper-state.json");
    let deadline = Duration::from_millis(1_500);
    let opts = GatewayOpts {
        drain_delay_ms: Some(100),
        shutdown_timeout_ms: Some(u64::try_from(deadline.as_millis()).unwrap()),
        ..GatewayOpts::default()
    };
    // The venue takes ten minutes: this place can never finish in time.
    let mut gw = GatewayProc::start_with(dir.path(), 1, &slow_paper(600_000, &state), &opts)
        .await
        .unwrap();
    let url = gw.proc.url();
    let client = gateway_client(&url, &engine_token("e0")).await.unwrap();
    let mut c = client.clone();
    let in_flight = tokio::spawn(async move { c.place_order(resting_buy("stuck-1")).await });
    wait_until("the place registered as pending", WAIT, || {
        let mut c = client.clone();
        async move {
            let open = c
                .list_open_orders(gpb::ListOpenOrdersRequest::default())
                .await?
                .into_inner()
                .orders;
            Ok(open
                .iter()
                .any(|o| o.client_order_id == "stuck-1")
                .then_some(()))
        }
    })
    .await
    .unwrap();

    gw.proc.sigterm().await.unwrap();
    let signaled = Instant::now();
    let status = wait_exit(&mut gw.proc).await;
    let took = signaled.elapsed();
    let log = gw.proc.log_text();
    assert!(!status.success(), "exit status {status}; log:\n{log}");
    assert!(
        took >= deadline,
        "exited after {took:?}, before the {deadline:?} deadline"
    );
    assert!(
        took < deadline + Duration::from_secs(5),
        "exited {took:?} after SIGTERM, long after the {deadline:?} deadline"
    );
    let line = log
        .lines()
        .find(|l| l.contains("shutdown deadline passed"))
        .unwrap_or_else(|| panic!("no deadline line in the log:\n{log}"));
    assert!(
        line.contains("/herd.gateway.v1.Gateway/PlaceOrder") && line.contains("e0-stuck-1"),
        "the deadline line names neither the call nor the order: {line}"
    );
    let answer = in_flight.await.unwrap();
    assert!(
        answer.is_err(),
        "the stuck place cannot succeed: {answer:?}"
    );
    eprintln!(
        "gateway deadline: {status} {} ms after SIGTERM (deadline {} ms)",
        took.as_millis(),
        deadline.as_millis()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_sigterm_flips_health_finishes_the_submit_in_flight_journals_it_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("paper-state.json");
    // The gateway is slow, not draining: the engine's call waits on it.
    let gw = GatewayProc::start(dir.path(), 1, &slow_paper(VENUE_LATENCY_MS, &state))
        .await
        .unwrap();
    let opts = EngineOpts {
        drain_delay_ms: Some(DRAIN_DELAY_MS),
        ..EngineOpts::default()
    };
    let mut e0 = EngineProc::start_with(dir.path(), "e0", &gw.proc.addr, "", &opts)
        .await
        .unwrap();
    let url = e0.proc.url();
    let engine = engine_client(&url).await.unwrap();
    wait_until("engine connected to the gateway", WAIT, || {
        let mut c = engine.clone();
        async move {
            let s = c.get_status(epb::GetStatusRequest {}).await?.into_inner();
            Ok(s.gateway_connected.then_some(()))
        }
    })
    .await
    .unwrap();
    assert_eq!(readyz(&e0.http_addr).await, 200);

    let submit = epb::SubmitOrderRequest {
        side: "buy".into(),
        order_type: "limit".into(),
        price: "0.05".into(),
        volume: "100".into(),
        ..Default::default()
    };
    let mut c = engine.clone();
    let req = submit.clone();
    let in_flight = tokio::spawn(async move { c.submit_order(req).await });
    // In flight: the engine's PlaceOrder is pending at the (slow) gateway.
    let gw_client = gateway_client(&gw.proc.url(), &engine_token("e0"))
        .await
        .unwrap();
    let client_order_id = wait_until("the submit pending at the gateway", WAIT, || {
        let mut c = gw_client.clone();
        async move {
            let open = c
                .list_open_orders(gpb::ListOpenOrdersRequest::default())
                .await?
                .into_inner()
                .orders;
            Ok(open
                .iter()
                .find(|o| o.status == gpb::OrderStatus::Pending as i32)
                .map(|o| o.client_order_id.clone()))
        }
    })
    .await
    .unwrap();

    e0.proc.sigterm().await.unwrap();
    let signaled = Instant::now();
    // 1. Health first, while the submit is still in flight.
    let flip = wait_not_serving(&url, "herd.engine.v1.Engine").await;
    assert!(
        !in_flight.is_finished(),
        "the submit finished before health flipped"
    );
    assert_eq!(readyz(&e0.http_addr).await, 503, "/readyz during the drain");
    // 2. During the drain delay: no new orders; status still answered.
    let refused = engine
        .clone()
        .submit_order(submit.clone())
        .await
        .expect_err("a new order during the drain must be refused");
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert!(refused.message().contains("shutting down"), "{refused:?}");
    let status = engine.clone().get_status(epb::GetStatusRequest {}).await;
    assert!(status.is_ok(), "status during the drain: {status:?}");
    assert!(
        signaled.elapsed() < Duration::from_millis(DRAIN_DELAY_MS),
        "the checks took longer than the drain delay; the test proves nothing"
    );

    // 3. The submit in flight completes OK.
    let done = in_flight
        .await
        .unwrap()
        .expect("the in-flight submit succeeds")
        .into_inner();
    assert_eq!(done.client_order_id, client_order_id);
    assert_eq!(done.status, "open");

    // 4. Exit 0; the drain in the log; the journal has the order as open.
    let exit = wait_exit(&mut e0.proc).await;
    let exit_after = signaled.elapsed();
    let log = e0.proc.log_text();
    assert!(exit.success(), "exit status {exit}; log:\n{log}");
    for line in ["engine draining", "engine closing", "engine stopped"] {
        assert!(log.contains(line), "log lacks {line:?}:\n{log}");
    }
    let store = herd_engine::store::Store::connect(&e0.db_url())
        .await
        .unwrap();
    let rows = store.orders_of("manual").await.unwrap();
    store.close().await;
    let row = rows
        .iter()
        .find(|r| r.client_order_id == client_order_id)
        .unwrap_or_else(|| panic!("{client_order_id} not journaled: {rows:?}"));
    assert_eq!(row.status, "open", "{row:?}");
    assert_eq!(rows.len(), 1, "only the in-flight order: {rows:?}");
    eprintln!(
        "engine drain: health flipped {} ms after SIGTERM, exit {} ms after SIGTERM \
         (drain delay {DRAIN_DELAY_MS} ms, gateway latency {VENUE_LATENCY_MS} ms)",
        flip.as_millis(),
        exit_after.as_millis()
    );
}
