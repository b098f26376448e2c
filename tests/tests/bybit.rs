//! The Bybit adapter against the wire-level simulator: through the gateway's
//! gRPC API (in-process gateway and simulator on 127.0.0.1:0), through the
//! venue directly for the submit edge cases, and the `bybit-sim` binary as a
//! real process.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use herd_bybit::{BybitConfig, BybitVenue, CREDENTIAL_SPEC, CredentialSource};
use herd_gateway::config::{EngineEntry, GatewayConfig, Secret, VenueKind};
use herd_proto::gateway as pb;
use herd_proto::gateway::gateway_client::GatewayClient;
use herd_tests::bybit_sim::{self, Fault, FaultKind, SimConfig, SimHandle};
use herd_venue::{
    NewOrder, OrderRef, OrderStatus, OrderType, PlaceOutcome, Side, SystemClock, Venue, VenueError,
};
use rust_decimal::Decimal;
use tonic::Request;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

const KEY: &str = "sim-api-key";
const SECRET: &str = "sim-api-secret";
const DEADLINE: Duration = Duration::from_secs(20);

fn dec(s: &str) -> Decimal {
    s.parse().unwrap()
}

/// Polls `f` until it returns `Some` or the deadline passes.
async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    herd_tests::wait_until(what, DEADLINE, || {
        let next = f();
        async move { Ok(next.await) }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

async fn sim(skew_ms: i64) -> SimHandle {
    let mut cfg = SimConfig::new(KEY, SECRET);
    cfg.clock_skew_ms = skew_ms;
    // Prices move only when a test moves them.
    cfg.step_ms = 0;
    bybit_sim::start(cfg, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

fn bybit_config(sim: &SimHandle) -> BybitConfig {
    BybitConfig {
        base_url: sim.base_url(),
        credentials: CredentialSource::None,
        request_timeout_ms: 2_000,
        ..BybitConfig::default()
    }
}

fn venue(sim: &SimHandle) -> BybitVenue {
    BybitVenue::with_parts(
        &bybit_config(sim),
        Some(CREDENTIAL_SPEC.parse(KEY, SECRET).unwrap()),
        Arc::new(SystemClock),
    )
    .unwrap()
}

struct Gateway {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    _dir: tempfile::TempDir,
}

fn token(engine: &str) -> String {
    format!("token-of-{engine}")
}

impl Gateway {
    async fn start(sim: &SimHandle, engines: &[&str]) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let key_path = dir.path().join("api-key");
        let secret_path = dir.path().join("api-secret");
        std::fs::write(&key_path, format!("{KEY}\n")).unwrap();
        std::fs::write(&secret_path, format!("{SECRET}\n")).unwrap();
        let cfg = GatewayConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            venue: VenueKind::Bybit,
            admin_token: Some(Secret::new("admin-token-x")),
            engines: engines
                .iter()
                .enumerate()
                .map(|(i, e)| EngineEntry {
                    id: (*e).into(),
                    token: Secret::new(token(e)),
                    token_file: None,
                    userref_min: 1000 * (i as i32 + 1),
                    userref_max: 1000 * (i as i32 + 1) + 999,
                    order_prefix: None,
                    weight: 1,
                    cancel_on_disconnect_ms: 0,
                })
                .collect(),
            poll_interval_ms: 100,
            pending_timeout_ms: 1_500,
            bybit: BybitConfig {
                credentials: CredentialSource::Files {
                    key_path,
                    secret_path,
                },
                ..bybit_config(sim)
            },
            // Stop at once (no load balancer to wait for).
            drain_delay_ms: 0,
            ..GatewayConfig::default()
        };
        cfg.validate().unwrap();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(herd_gateway::run(
            cfg,
            move |a| {
                let _ = ready_tx.send(a);
            },
            async move {
                let _ = stop_rx.await;
            },
        ));
        let addr = ready_rx.await.unwrap();
        Gateway {
            addr,
            stop: Some(stop_tx),
            task,
            _dir: dir,
        }
    }

    async fn client(&self) -> GatewayClient<Channel> {
        let ch = Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .unwrap();
        GatewayClient::new(ch)
    }

    async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.task.await.unwrap().unwrap();
    }
}

fn authed<T>(engine: &str, msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut().insert(
        "authorization",
        MetadataValue::try_from(format!("Bearer {}", token(engine))).unwrap(),
    );
    r
}

fn order_req(
    id: &str,
    symbol: &str,
    side: pb::Side,
    volume: &str,
    price: Option<&str>,
    reduce_only: bool,
) -> pb::PlaceOrderRequest {
    pb::PlaceOrderRequest {
        client_order_id: id.into(),
        symbol: symbol.into(),
        side: side as i32,
        order_type: if price.is_some() {
            pb::OrderType::Limit
        } else {
            pb::OrderType::Market
        } as i32,
        volume: volume.into(),
        price: price.unwrap_or_default().into(),
        post_only: false,
        userref: 0,
        reduce_only,
        strategy: String::new(),
    }
}

async fn wait_status(
    g: &mut GatewayClient<Channel>,
    engine: &str,
    id: &str,
    want: pb::OrderStatus,
) -> pb::Order {
    eventually(&format!("{id} to be {want:?}"), || {
        let mut g = g.clone();
        async move {
            let o = g
                .query_orders(authed(
                    engine,
                    pb::QueryOrdersRequest {
                        client_order_ids: vec![id.into()],
                    },
                ))
                .await
                .ok()?
                .into_inner()
                .orders
                .pop()?;
            (o.status == want as i32).then_some(o)
        }
    })
    .await
}

async fn positions(g: &mut GatewayClient<Channel>, engine: &str) -> Vec<pb::Position> {
    g.get_positions(authed(engine, pb::GetPositionsRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .positions
}

#[tokio::test]
async fn hedge_funding_and_reduce_only_close_through_the_gateway() {
    let sim = sim(0).await;
    sim.sim.set_price("spot", "BTCUSDT", dec("50000")).unwrap();
    sim.sim
        .set_price("linear", "BTCUSDT", dec("50010"))
        .unwrap();
    let gw = Gateway::start(&sim, &["e0"]).await;
    let mut g = gw.client().await;

    let instruments = g
        .list_instruments(authed("e0", pb::ListInstrumentsRequest {}))
        .await
        .unwrap()
        .into_inner()
        .instruments;
    let perp = instruments
        .iter()
        .find(|i| i.symbol == "BTCUSDT-PERP")
        .unwrap();
    assert_eq!(perp.kind, pb::InstrumentKind::Perpetual as i32);
    assert_eq!(perp.taker_fee, "0.00055");

    // Spot long + perp short, sent concurrently like the orchestrator does.
    let mut g2 = g.clone();
    let (spot, short) = tokio::join!(
        g.place_order(authed(
            "e0",
            order_req("spot-1", "BTCUSDT", pb::Side::Buy, "0.01", None, false)
        )),
        g2.place_order(authed(
            "e0",
            order_req(
                "perp-1",
                "BTCUSDT-PERP",
                pb::Side::Sell,
                "0.01",
                None,
                false
            )
        )),
    );
    spot.unwrap();
    short.unwrap();
    let spot = wait_status(&mut g, "e0", "spot-1", pb::OrderStatus::Filled).await;
    assert_eq!(
        spot.fee_asset, "BTC",
        "a spot buy pays its fee in the base coin"
    );
    assert_eq!(spot.volume_executed, "0.01");
    let short = wait_status(&mut g, "e0", "perp-1", pb::OrderStatus::Filled).await;
    assert_eq!(short.fee_asset, "USDT");

    let pos = positions(&mut g, "e0").await;
    assert_eq!(pos.len(), 1, "{pos:?}");
    assert_eq!(pos[0].symbol, "BTCUSDT-PERP");
    assert_eq!(pos[0].side, pb::PositionSide::Short as i32);
    assert_eq!(pos[0].size, "0.01");

    let balances = g
        .get_balances(authed("e0", pb::GetBalancesRequest {}))
        .await
        .unwrap()
        .into_inner()
        .balances;
    let btc = balances.iter().find(|b| b.asset == "BTC").unwrap();
    assert_eq!(dec(&btc.total), dec("0.00999"));

    // A positive rate settles in the short's favour.
    let paid = sim
        .sim
        .set_funding("BTCUSDT", Some(dec("0.0005")), true)
        .unwrap()
        .unwrap();
    assert!(paid > Decimal::ZERO);
    let payments = g
        .list_funding_payments(authed(
            "e0",
            pb::ListFundingPaymentsRequest {
                symbol: "BTCUSDT-PERP".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .payments;
    assert_eq!(payments.len(), 1, "{payments:?}");
    assert_eq!(dec(&payments[0].amount), paid);
    assert_eq!(payments[0].side, pb::PositionSide::Short as i32);
    assert_eq!(dec(&payments[0].rate), dec("0.0005"));

    let rates = g
        .list_funding_rates(authed(
            "e0",
            pb::ListFundingRatesRequest {
                symbols: vec!["BTCUSDT-PERP".into()],
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .rates;
    assert_eq!(rates.len(), 1);
    assert_eq!(rates[0].rate, "0.0005");
    assert!(dec(&rates[0].turnover_24h_usd) >= dec("1000000"));

    let margin = g
        .get_account_margin(authed("e0", pb::GetAccountMarginRequest {}))
        .await
        .unwrap()
        .into_inner();
    let mm = dec(&margin.maintenance_margin_ratio);
    assert!(mm > Decimal::ZERO && mm < dec("0.1"), "{margin:?}");

    // Reduce-only close flattens; another one is refused.
    g.place_order(authed(
        "e0",
        order_req("perp-2", "BTCUSDT-PERP", pb::Side::Buy, "0.01", None, true),
    ))
    .await
    .unwrap();
    wait_status(&mut g, "e0", "perp-2", pb::OrderStatus::Filled).await;
    assert!(positions(&mut g, "e0").await.is_empty());
    let err = g
        .place_order(authed(
            "e0",
            order_req("perp-3", "BTCUSDT-PERP", pb::Side::Buy, "0.01", None, true),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");

    let stats = sim.sim.stats();
    assert_eq!(stats.bad_signatures, 0);
    assert_eq!(stats.timestamp_rejections, 0);
    assert_eq!(stats.rate_limited, 0);
    gw.stop().await;
}

fn limit(id: &str, symbol: &str, side: Side, volume: &str, price: &str) -> NewOrder {
    NewOrder {
        client_order_id: id.into(),
        symbol: symbol.into(),
        side,
        order_type: OrderType::Limit,
        volume: dec(volume),
        price: Some(dec(price)),
        post_only: false,
        userref: 7,
        reduce_only: false,
    }
}

fn accepted(o: PlaceOutcome) -> herd_venue::OrderState {
    match o {
        PlaceOutcome::Accepted(s) => s,
        other => panic!("expected accepted, got {other:?}"),
    }
}

#[tokio::test]
async fn duplicate_order_link_id_and_unknown_outcomes() {
    let sim = sim(0).await;
    sim.sim.set_price("linear", "ETHUSDT", dec("3000")).unwrap();
    let v = venue(&sim);

    // The same orderLinkId twice is one order.
    let first = accepted(
        v.place_order(&limit("dup-1", "ETHUSDT-PERP", Side::Buy, "0.1", "2000"))
            .await
            .unwrap(),
    );
    assert_eq!(first.status, OrderStatus::Open);
    assert_eq!(first.userref, 7);
    let again = accepted(
        v.place_order(&limit("dup-1", "ETHUSDT-PERP", Side::Buy, "0.1", "2000"))
            .await
            .unwrap(),
    );
    assert_eq!(again.venue_order_id, first.venue_order_id);
    assert_eq!(sim.sim.stats().orders_created, 1);

    // Accepted but the answer was lost: found by orderLinkId.
    sim.sim
        .inject(Fault::once(FaultKind::ResponseLost, "/v5/order/create"));
    let lost = accepted(
        v.place_order(&limit("lost-1", "ETHUSDT-PERP", Side::Buy, "0.1", "2001"))
            .await
            .unwrap(),
    );
    assert_eq!(lost.client_order_id, "lost-1");
    assert_eq!(lost.status, OrderStatus::Open);

    // 5xx, reset and 10016 before the order was taken: unknown, not placed.
    for (kind, id) in [
        (FaultKind::Http5xx, "x5xx-1"),
        (FaultKind::Reset, "reset-1"),
        (FaultKind::ServerError, "e10016-1"),
    ] {
        sim.sim.inject(Fault::once(kind, "/v5/order/create"));
        let out = v
            .place_order(&limit(id, "ETHUSDT-PERP", Side::Buy, "0.1", "2002"))
            .await
            .unwrap();
        assert!(
            matches!(out, PlaceOutcome::Unknown { .. }),
            "{kind:?}: {out:?}"
        );
        let found = v
            .query_orders(&[OrderRef {
                client_order_id: id.into(),
                venue_order_id: None,
            }])
            .await
            .unwrap();
        assert!(found.is_empty(), "{kind:?}: {found:?}");
    }

    // Slow answers still arrive.
    sim.sim.inject(Fault {
        latency_ms: 300,
        ..Fault::once(FaultKind::Latency, "/v5/order/create")
    });
    accepted(
        v.place_order(&limit("slow-1", "ETHUSDT-PERP", Side::Buy, "0.1", "2003"))
            .await
            .unwrap(),
    );

    // Cancel by orderLinkId through the remembered category; unknown orders.
    v.cancel_order(&OrderRef {
        client_order_id: "dup-1".into(),
        venue_order_id: None,
    })
    .await
    .unwrap();
    let err = v
        .cancel_order(&OrderRef {
            client_order_id: "dup-1".into(),
            venue_order_id: None,
        })
        .await
        .unwrap_err();
    assert!(matches!(err, VenueError::UnknownOrder(_)), "{err:?}");
    let open = v.open_orders().await.unwrap();
    let ids: Vec<&str> = open.iter().map(|o| o.client_order_id.as_str()).collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(ids.contains(&"lost-1") && ids.contains(&"slow-1"));
}

#[tokio::test]
async fn unknown_submit_through_the_gateway_resolves_by_polling() {
    let sim = sim(0).await;
    sim.sim.set_price("spot", "SOLUSDT", dec("150")).unwrap();
    let gw = Gateway::start(&sim, &["e0"]).await;
    let mut g = gw.client().await;

    // Lost answer: the gateway learns the order exists.
    sim.sim
        .inject(Fault::once(FaultKind::ResponseLost, "/v5/order/create"));
    g.place_order(authed(
        "e0",
        order_req("a-1", "SOLUSDT", pb::Side::Buy, "1", Some("100"), false),
    ))
    .await
    .unwrap();
    wait_status(&mut g, "e0", "a-1", pb::OrderStatus::Open).await;

    // Never placed: pending, then rejected once the pending timeout passes.
    sim.sim
        .inject(Fault::once(FaultKind::Http5xx, "/v5/order/create"));
    let o = g
        .place_order(authed(
            "e0",
            order_req("b-1", "SOLUSDT", pb::Side::Buy, "1", Some("100"), false),
        ))
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap();
    assert_eq!(o.status, pb::OrderStatus::Pending as i32);
    wait_status(&mut g, "e0", "b-1", pb::OrderStatus::Rejected).await;
    gw.stop().await;
}

#[tokio::test]
async fn rate_limit_10006_backs_off_and_403_stops_everything() {
    let sim = sim(0).await;
    let v = venue(&sim);
    v.open_orders().await.unwrap();

    // One 10006: waited out until the reset, then the call goes through.
    sim.sim
        .inject(Fault::once(FaultKind::RateLimit, "/v5/order/realtime"));
    v.open_orders().await.unwrap();
    // Two in a row: reported as rate limited with a retry time.
    sim.sim.inject(Fault {
        count: 2,
        ..Fault::once(FaultKind::RateLimit, "/v5/order/realtime")
    });
    let err = v.open_orders().await.unwrap_err();
    assert!(
        matches!(err, VenueError::RateLimited { retry_after_ms, .. } if retry_after_ms > 0),
        "{err:?}"
    );
    assert!(err.is_retryable());

    // Through the gateway: a 403 stops every call and shows in the budget.
    let gw = Gateway::start(&sim, &["e0"]).await;
    let mut g = gw.client().await;
    sim.sim.inject(Fault::once(
        FaultKind::Forbidden,
        "/v5/account/wallet-balance",
    ));
    let err = g
        .get_balances(authed("e0", pb::GetBalancesRequest {}))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");
    let budget = g
        .get_budget(authed("e0", pb::GetBudgetRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(budget.venue, "bybit");
    let now = sim.sim.now_ms();
    assert!(budget.locked_until_ms > now + 9 * 60 * 1000, "{budget:?}");
    let before = sim.sim.stats().requests;
    let err = g
        .get_positions(authed("e0", pb::GetPositionsRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted);
    assert_eq!(sim.sim.stats().requests, before, "no call reached Bybit");
    gw.stop().await;
}

#[tokio::test]
async fn a_burst_from_several_engines_meets_no_rate_limit() {
    let sim = sim(0).await;
    sim.sim.set_price("spot", "ETHUSDT", dec("3000")).unwrap();
    sim.sim.set_price("linear", "ETHUSDT", dec("3000")).unwrap();
    let engines = ["e0", "e1", "e2"];
    let gw = Gateway::start(&sim, &engines).await;
    let g = gw.client().await;
    let mut tasks = tokio::task::JoinSet::new();
    for engine in engines {
        for i in 0..8 {
            for (symbol, price) in [("ETHUSDT", "2500"), ("ETHUSDT-PERP", "2400")] {
                let mut g = g.clone();
                let id = format!("{}-{i}", if symbol == "ETHUSDT" { "s" } else { "p" });
                tasks.spawn(async move {
                    g.place_order(authed(
                        engine,
                        order_req(&id, symbol, pb::Side::Buy, "0.01", Some(price), false),
                    ))
                    .await
                    .map(|r| r.into_inner().order.unwrap())
                });
            }
        }
    }
    let mut placed = 0;
    while let Some(r) = tasks.join_next().await {
        let o = r.unwrap().unwrap();
        assert_eq!(o.status, pb::OrderStatus::Open as i32, "{o:?}");
        placed += 1;
    }
    assert_eq!(placed, 48);
    let stats = sim.sim.stats();
    assert_eq!(stats.orders_created, 48);
    assert_eq!(stats.rate_limited, 0, "{stats:?}");
    assert_eq!(stats.forbidden, 0, "{stats:?}");
    gw.stop().await;
}

#[tokio::test]
async fn clock_skew_is_measured_and_10002_resyncs() {
    for skew in [4_000, -4_000] {
        let sim = sim(skew).await;
        let v = venue(&sim);
        sim.sim.set_price("spot", "BTCUSDT", dec("50000")).unwrap();
        accepted(
            v.place_order(&limit("skew-1", "BTCUSDT", Side::Buy, "0.001", "40000"))
                .await
                .unwrap(),
        );
        assert!(!v.balances().await.unwrap().is_empty());
        let offset = v.http().server_offset_ms();
        assert!(
            (offset - skew).abs() < 500,
            "offset {offset} for skew {skew}"
        );
        assert_eq!(sim.sim.stats().timestamp_rejections, 0);
    }

    // The server's clock jumps after we measured it: 10002, resync, retry.
    let sim = sim(0).await;
    let v = venue(&sim);
    v.balances().await.unwrap();
    sim.sim.set_skew_ms(20_000);
    v.balances().await.unwrap();
    let stats = sim.sim.stats();
    assert_eq!(stats.timestamp_rejections, 1, "{stats:?}");
    assert!((v.http().server_offset_ms() - 20_000).abs() < 500);
}

#[tokio::test]
async fn the_binary_reports_readiness_and_serves_admin_and_v5() {
    let (mut child, addr) = sim_process("127.0.0.1:0", None).await;
    let http = reqwest::Client::new();
    let r = http
        .post(format!("http://{addr}/admin/price"))
        .body(r#"{"category":"linear","symbol":"SOLUSDT","price":"123.456"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let t: serde_json::Value = http
        .get(format!(
            "http://{addr}/v5/market/tickers?category=linear&symbol=SOLUSDT"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(t["retCode"], 0);
    assert_eq!(t["result"]["list"][0]["lastPrice"], "123.456");
    // Private calls without a signature are refused with Bybit's codes.
    let unsigned: serde_json::Value = http
        .get(format!(
            "http://{addr}/v5/account/wallet-balance?accountType=UNIFIED"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(unsigned["retCode"], 10003);
    child.kill().await.unwrap();
}

/// Starts the `bybit-sim` binary on `listen` (with `--state` when given);
/// returns the child and its address once it reported readiness.
async fn sim_process(
    listen: &str,
    state: Option<&std::path::Path>,
) -> (tokio::process::Child, String) {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_bybit-sim"))
        .args([
            "--listen",
            listen,
            "--key",
            KEY,
            "--secret",
            SECRET,
            "--step-ms",
            "0",
        ])
        .args(
            state
                .map(|p| [std::ffi::OsStr::new("--state"), p.as_os_str()])
                .into_iter()
                .flatten(),
        )
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let addr = tokio::time::timeout(DEADLINE, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(a) = line.strip_prefix("bybit-sim listening on ") {
                return a.trim().to_string();
            }
        }
        panic!("bybit-sim exited before listening")
    })
    .await
    .expect("bybit-sim did not report readiness");
    (child, addr)
}

/// `--state FILE` (issue 22): a position, a fill, a resting order and the
/// wallet survive a kill -9 and a restart on the same port and file; the
/// same orderLinkId after the restart is still the same order.
#[tokio::test]
async fn state_file_keeps_orders_fills_and_positions_across_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("bybit-sim.state");
    let (mut child, addr) = sim_process("127.0.0.1:0", Some(&state)).await;
    let http = reqwest::Client::new();
    let admin = |route: &str| format!("http://{addr}/admin/{route}");
    let r = http
        .post(admin("price"))
        .body(r#"{"category":"linear","symbol":"ETHUSDT","price":"3000"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut cfg = BybitConfig {
        base_url: format!("http://{addr}"),
        credentials: CredentialSource::None,
        request_timeout_ms: 2_000,
        ..BybitConfig::default()
    };
    let v = BybitVenue::with_parts(
        &cfg,
        Some(CREDENTIAL_SPEC.parse(KEY, SECRET).unwrap()),
        Arc::new(SystemClock),
    )
    .unwrap();
    // A short position (market sell) and a resting buy below the market.
    let mut market = limit("keep-short", "ETHUSDT-PERP", Side::Sell, "0.5", "3000");
    market.order_type = OrderType::Market;
    market.price = None;
    accepted(v.place_order(&market).await.unwrap());
    let resting = accepted(
        v.place_order(&limit(
            "keep-rest",
            "ETHUSDT-PERP",
            Side::Buy,
            "0.1",
            "2000",
        ))
        .await
        .unwrap(),
    );
    let ledger = |http: reqwest::Client, url: String| async move {
        http.get(url)
            .send()
            .await
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap()
    };
    let before = ledger(http.clone(), admin("ledger")).await;
    assert_eq!(before["positions"].as_array().unwrap().len(), 1, "{before}");
    assert_eq!(before["fills"].as_array().unwrap().len(), 1, "{before}");

    child.kill().await.unwrap();
    let (_child, addr2) = sim_process(&addr, Some(&state)).await;
    assert_eq!(addr2, addr);
    let after = ledger(http.clone(), admin("ledger")).await;
    assert_eq!(after, before);
    cfg.base_url = format!("http://{addr2}");
    let v = BybitVenue::with_parts(
        &cfg,
        Some(CREDENTIAL_SPEC.parse(KEY, SECRET).unwrap()),
        Arc::new(SystemClock),
    )
    .unwrap();
    let open = v.open_orders().await.unwrap();
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0].client_order_id, "keep-rest");
    let positions = v.positions().await.unwrap();
    assert_eq!(positions.len(), 1, "{positions:?}");
    let again = accepted(
        v.place_order(&limit(
            "keep-rest",
            "ETHUSDT-PERP",
            Side::Buy,
            "0.1",
            "2000",
        ))
        .await
        .unwrap(),
    );
    assert_eq!(again.venue_order_id, resting.venue_order_id);
    assert_eq!(v.open_orders().await.unwrap().len(), 1);
}
