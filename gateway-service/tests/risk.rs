//! Issue 16: the gateway's pre-trade risk checks, one table row per limit
//! and per breach action, against an in-process gateway on the paper venue
//! (127.0.0.1:0) with real tonic clients: two engines and the admin.
//!
//! Every denial must be FAILED_PRECONDITION (the rate limit:
//! RESOURCE_EXHAUSTED with `retry-after-ms`) carrying `herd-risk-code` and
//! `herd-refused`, name the limit, its value and the order's value, and
//! leave no order anywhere (QueryOrders: NOT_FOUND).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use herd_gateway::config::{EngineEntry, GatewayConfig, Secret};
use herd_gateway::risk::{BreachAction, Limits, RiskConfig};
use herd_proto::gateway as pb;
use herd_proto::gateway::gateway_admin_client::GatewayAdminClient;
use herd_proto::gateway::gateway_client::GatewayClient;
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

const TOKENS: [&str; 2] = ["engine-token-0", "engine-token-1"];
const ADMIN: &str = "admin-token-risk";

struct Gw {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    ch: Channel,
}

impl Gw {
    async fn start(risk: RiskConfig, state_dir: Option<PathBuf>) -> Gw {
        let engines = (0..2)
            .map(|i| EngineEntry {
                id: format!("e{i}"),
                token: Secret::new(TOKENS[i]),
                token_file: None,
                userref_min: 1 + 1000 * i32::try_from(i).unwrap(),
                userref_max: 999 + 1000 * i32::try_from(i).unwrap(),
                order_prefix: None,
                weight: 1,
                cancel_on_disconnect_ms: 0,
            })
            .collect();
        let mut cfg = GatewayConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            admin_token: Some(Secret::new(ADMIN)),
            engines,
            drain_delay_ms: 0,
            risk,
            state_dir,
            ..GatewayConfig::default()
        };
        cfg.paper.exchange.history_minutes = 0;
        // The price stays where the test puts it.
        cfg.paper.step_ms = 600_000;
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
        let ch = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        Gw {
            addr,
            stop: Some(stop_tx),
            task,
            ch,
        }
    }

    async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        (&mut self.task).await.unwrap().unwrap();
        let _ = self.addr;
    }

    fn g(&self) -> GatewayClient<Channel> {
        GatewayClient::new(self.ch.clone())
    }

    fn admin(&self) -> GatewayAdminClient<Channel> {
        GatewayAdminClient::new(self.ch.clone())
    }

    async fn place(&self, e: usize, req: pb::PlaceOrderRequest) -> Result<pb::Order, Status> {
        self.g()
            .place_order(authed(req, TOKENS[e]))
            .await
            .map(|r| r.into_inner().order.unwrap())
    }

    async fn cancel(&self, e: usize, id: &str) -> Result<pb::Order, Status> {
        self.g()
            .cancel_order(authed(
                pb::CancelOrderRequest {
                    client_order_id: id.into(),
                },
                TOKENS[e],
            ))
            .await
            .map(|r| r.into_inner().order.unwrap())
    }

    async fn exists(&self, e: usize, id: &str) -> bool {
        match self
            .g()
            .query_orders(authed(
                pb::QueryOrdersRequest {
                    client_order_ids: vec![id.into()],
                },
                TOKENS[e],
            ))
            .await
        {
            Ok(_) => true,
            Err(s) if s.code() == Code::NotFound => false,
            Err(s) => panic!("query {id}: {s:?}"),
        }
    }

    async fn state(&self) -> pb::GetRiskStateResponse {
        self.admin()
            .get_risk_state(authed(pb::GetRiskStateRequest::default(), ADMIN))
            .await
            .unwrap()
            .into_inner()
    }

    async fn book(&self, e: usize) -> pb::RiskBook {
        self.state()
            .await
            .engines
            .into_iter()
            .find(|b| b.engine_id == format!("e{e}"))
            .unwrap()
    }

    async fn set_state(&self, e: Option<usize>, state: pb::TradingState) {
        self.admin()
            .set_trading_state(authed(
                pb::SetTradingStateRequest {
                    engine_id: e.map(|e| format!("e{e}")).unwrap_or_default(),
                    account: e.is_none(),
                    state: state as i32,
                    reason: "test".into(),
                    ..Default::default()
                },
                ADMIN,
            ))
            .await
            .unwrap();
    }

    async fn set_price(&self, symbol: &str, price: &str) {
        self.admin()
            .set_paper_price(authed(
                pb::SetPaperPriceRequest {
                    symbol: symbol.into(),
                    price: price.into(),
                },
                ADMIN,
            ))
            .await
            .unwrap();
    }

    async fn positions(&self) -> Vec<pb::Position> {
        self.g()
            .get_positions(authed(pb::GetPositionsRequest::default(), TOKENS[0]))
            .await
            .unwrap()
            .into_inner()
            .positions
    }
}

fn authed<T>(msg: T, token: &str) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut().insert(
        "authorization",
        MetadataValue::try_from(format!("Bearer {token}")).unwrap(),
    );
    r
}

fn limit(
    id: &str,
    symbol: &str,
    side: pb::Side,
    volume: &str,
    price: &str,
) -> pb::PlaceOrderRequest {
    pb::PlaceOrderRequest {
        client_order_id: id.into(),
        symbol: symbol.into(),
        side: side as i32,
        order_type: pb::OrderType::Limit as i32,
        volume: volume.into(),
        price: price.into(),
        ..Default::default()
    }
}

fn buy(id: &str, volume: &str, price: &str) -> pb::PlaceOrderRequest {
    limit(id, "DOGEUSD", pb::Side::Buy, volume, price)
}

fn market(
    id: &str,
    symbol: &str,
    side: pb::Side,
    volume: &str,
    reduce_only: bool,
) -> pb::PlaceOrderRequest {
    pb::PlaceOrderRequest {
        client_order_id: id.into(),
        symbol: symbol.into(),
        side: side as i32,
        order_type: pb::OrderType::Market as i32,
        volume: volume.into(),
        reduce_only,
        ..Default::default()
    }
}

fn engine_limits(l: Limits) -> RiskConfig {
    RiskConfig {
        engines: [("e0".to_string(), l)].into(),
        ..RiskConfig::default()
    }
}

/// The denial's code, after checking its shape.
fn denied(r: Result<pb::Order, Status>, code: &str, mentions: &[&str]) {
    let s = match r {
        Err(s) => s,
        Ok(o) => panic!("{code}: placed {o:?}"),
    };
    let want = if code == "order_rate" {
        Code::ResourceExhausted
    } else {
        Code::FailedPrecondition
    };
    assert_eq!(s.code(), want, "{code}: {s:?}");
    assert_eq!(herd_proto::answer::risk_code(&s), Some(code), "{s:?}");
    assert_eq!(
        herd_proto::answer::classify(&s),
        herd_proto::answer::Answer::Refused,
        "{code}: a definite refusal"
    );
    for m in mentions {
        assert!(
            s.message().contains(m),
            "{code}: {:?} lacks {m:?}",
            s.message()
        );
    }
    if code == "order_rate" {
        let hint: i64 = s
            .metadata()
            .get("retry-after-ms")
            .unwrap()
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(hint > 0, "{hint}");
    }
}

/// Waits for the gateway's herd event that says a kill action (`cancel_all`
/// or `flatten`) was carried out for `engine`: the gateway audits it, and
/// raises the event, once the action is done.
async fn kill_done(gw: &Gw, engine: &str, action: &str) {
    let mut stream = gw
        .admin()
        .stream_herd_events(authed(
            pb::StreamHerdEventsRequest {
                kinds: vec![herd_proto::events::kind::RISK_KILL.into()],
                engines: vec![engine.into()],
                follow: true,
                ..Default::default()
            },
            ADMIN,
        ))
        .await
        .unwrap()
        .into_inner();
    tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(e) = stream.message().await.unwrap() {
            if e.message.contains(action) {
                return;
            }
        }
        panic!("the event stream ended before {engine}'s {action}");
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {engine}'s {action}"));
}

fn d(s: &str) -> Decimal {
    s.parse().unwrap()
}

/// One row per limit: what passes just below it, what is denied above it.
#[tokio::test]
async fn each_limit_denies_the_order_over_it_and_nothing_reaches_the_venue() {
    // max_order_volume
    let gw = Gw::start(
        engine_limits(Limits {
            max_order_volume: Some(dec!(1000)),
            ..Limits::default()
        }),
        None,
    )
    .await;
    gw.place(0, buy("v1", "1000", "0.10")).await.unwrap();
    denied(
        gw.place(0, buy("v2", "1000.5", "0.10")).await,
        "max_volume",
        &["max_order_volume", "1000", "1000.5"],
    );
    assert!(!gw.exists(0, "v2").await);
    // The other engine has no limit.
    gw.place(1, buy("v2", "2000", "0.10")).await.unwrap();
    gw.stop().await;

    // max_order_notional: limit orders at their price, market orders at the ticker.
    let gw = Gw::start(
        engine_limits(Limits {
            max_order_notional: Some(dec!(10)),
            ..Limits::default()
        }),
        None,
    )
    .await;
    gw.place(0, buy("n1", "100", "0.10")).await.unwrap();
    denied(
        gw.place(0, buy("n2", "100", "0.11")).await,
        "max_notional",
        &["max_order_notional", "10", "11"],
    );
    denied(
        gw.place(0, market("n3", "DOGEUSD", pb::Side::Buy, "100", false))
            .await,
        "max_notional",
        &["12"],
    );
    assert!(!gw.exists(0, "n2").await && !gw.exists(0, "n3").await);
    gw.stop().await;

    // price_band_pct against the last ticker (DOGEUSD starts at 0.12).
    let gw = Gw::start(
        engine_limits(Limits {
            price_band_pct: Some(dec!(5)),
            ..Limits::default()
        }),
        None,
    )
    .await;
    gw.place(0, buy("b1", "100", "0.125")).await.unwrap();
    denied(
        gw.place(0, buy("b2", "100", "0.20")).await,
        "price_band",
        &["price_band_pct", "5", "0.2 "],
    );
    denied(
        gw.place(0, limit("b3", "DOGEUSD", pb::Side::Sell, "100", "0.05"))
            .await,
        "price_band",
        &["0.05"],
    );
    assert!(!gw.exists(0, "b2").await && !gw.exists(0, "b3").await);
    gw.stop().await;

    // max_open_orders and per instrument; usage follows cancels.
    let gw = Gw::start(
        engine_limits(Limits {
            max_open_orders: Some(3),
            max_open_orders_per_instrument: Some(2),
            ..Limits::default()
        }),
        None,
    )
    .await;
    gw.place(0, buy("o1", "100", "0.10")).await.unwrap();
    gw.place(0, buy("o2", "100", "0.10")).await.unwrap();
    denied(
        gw.place(0, buy("o3", "100", "0.10")).await,
        "max_open_orders",
        &["max_open_orders_per_instrument", "2", "DOGEUSD"],
    );
    gw.place(0, limit("o4", "BTCUSDT", pb::Side::Buy, "0.001", "20000"))
        .await
        .unwrap();
    denied(
        gw.place(0, limit("o5", "BTCUSDT", pb::Side::Buy, "0.001", "20000"))
            .await,
        "max_open_orders",
        &["max_open_orders of engine e0 is 3", "4"],
    );
    gw.cancel(0, "o1").await.unwrap();
    gw.place(0, buy("o6", "100", "0.10")).await.unwrap();
    assert!(!gw.exists(0, "o3").await && !gw.exists(0, "o5").await);
    assert_eq!(gw.book(0).await.open_orders, 3);
    gw.stop().await;

    // max_exposure_per_instrument and max_gross_exposure (quote).
    let gw = Gw::start(
        engine_limits(Limits {
            max_exposure_per_instrument: Some(dec!(25)),
            max_gross_exposure: Some(dec!(40)),
            ..Limits::default()
        }),
        None,
    )
    .await;
    gw.place(0, buy("x1", "100", "0.10")).await.unwrap();
    gw.place(0, buy("x2", "100", "0.10")).await.unwrap();
    denied(
        gw.place(0, buy("x3", "100", "0.10")).await,
        "max_exposure",
        &["max_exposure_per_instrument", "25", "30"],
    );
    gw.place(0, limit("x4", "BTCUSDT", pb::Side::Buy, "0.001", "15000"))
        .await
        .unwrap();
    denied(
        gw.place(0, limit("x5", "ETHUSDT", pb::Side::Buy, "0.01", "1000"))
            .await,
        "max_exposure",
        &["max_gross_exposure", "40", "45"],
    );
    assert!(!gw.exists(0, "x3").await && !gw.exists(0, "x5").await);
    gw.stop().await;

    // order rate: a sliding window; RESOURCE_EXHAUSTED with a retry hint.
    let gw = Gw::start(
        engine_limits(Limits {
            max_orders_per_window: Some(3),
            order_window_ms: Some(60_000),
            ..Limits::default()
        }),
        None,
    )
    .await;
    for i in 0..3 {
        gw.place(0, buy(&format!("r{i}"), "100", "0.10"))
            .await
            .unwrap();
    }
    denied(
        gw.place(0, buy("r3", "100", "0.10")).await,
        "order_rate",
        &["max_orders_per_window", "3", "60000"],
    );
    assert!(!gw.exists(0, "r3").await);
    gw.place(1, buy("r3", "100", "0.10")).await.unwrap();
    gw.stop().await;
}

/// The day's realized loss from fills to the cent, fees included: past
/// the limit, new exposure is refused (default action: REDUCING) while a
/// sell of what the engine holds still passes.
#[tokio::test]
async fn daily_loss_from_fills_with_fees_and_the_reduce_action() {
    let gw = Gw::start(
        engine_limits(Limits {
            max_daily_loss: Some(dec!(5)),
            ..Limits::default()
        }),
        None,
    )
    .await;
    let b = gw
        .place(0, market("l1", "DOGEUSD", pb::Side::Buy, "1000", false))
        .await
        .unwrap();
    assert_eq!(b.status, pb::OrderStatus::Filled as i32, "{b:?}");
    gw.set_price("DOGEUSD", "0.115").await;
    let s = gw
        .place(0, market("l2", "DOGEUSD", pb::Side::Sell, "600", false))
        .await
        .unwrap();
    assert_eq!(s.status, pb::OrderStatus::Filled as i32, "{s:?}");
    // Average cost: the buy's price; the fees of both legs, in USD.
    let (bp, bf, sp, sf) = (
        d(&b.average_price),
        d(&b.fee),
        d(&s.average_price),
        d(&s.fee),
    );
    let expected = (sp - bp) * dec!(600) - bf - sf;
    let book = gw.book(0).await;
    assert_eq!(d(&book.realized_pnl_today), expected, "{book:?}");
    assert!(expected < dec!(-3) && expected > dec!(-5), "{expected}");
    // Still under 5: more of the same passes, then the loss crosses 5.
    gw.set_price("DOGEUSD", "0.09").await;
    gw.place(0, market("l3", "DOGEUSD", pb::Side::Sell, "200", false))
        .await
        .unwrap();
    let book = gw.book(0).await;
    assert!(d(&book.realized_pnl_today) < dec!(-5), "{book:?}");
    denied(
        gw.place(0, buy("l4", "100", "0.08")).await,
        "daily_loss",
        &["max_daily_loss", "5"],
    );
    let book = gw.book(0).await;
    assert_eq!(book.state, pb::TradingState::Reducing as i32);
    assert_eq!(book.last_breach_code, "daily_loss");
    // REDUCING: selling the 200 it still holds passes, more is refused.
    denied(
        gw.place(0, market("l5", "DOGEUSD", pb::Side::Sell, "300", false))
            .await,
        "reducing",
        &["REDUCING"],
    );
    gw.place(0, market("l6", "DOGEUSD", pb::Side::Sell, "200", false))
        .await
        .unwrap();
    // The other engine trades on.
    gw.place(1, buy("l4", "100", "0.08")).await.unwrap();
    gw.stop().await;
}

/// Drawdown from the day's peak (realized + unrealized at the last ticker).
#[tokio::test]
async fn drawdown_from_the_days_peak() {
    let gw = Gw::start(
        engine_limits(Limits {
            max_drawdown: Some(dec!(3)),
            ..Limits::default()
        }),
        None,
    )
    .await;
    gw.place(0, market("d1", "DOGEUSD", pb::Side::Buy, "1000", false))
        .await
        .unwrap();
    gw.set_price("DOGEUSD", "0.13").await;
    // A ticker is read for each check while a drawdown limit is set: up 10.
    gw.place(0, buy("d2", "100", "0.05")).await.unwrap();
    gw.set_price("DOGEUSD", "0.128").await;
    gw.place(0, buy("d3", "100", "0.05")).await.unwrap();
    gw.set_price("DOGEUSD", "0.12").await;
    denied(
        gw.place(0, buy("d4", "100", "0.05")).await,
        "drawdown",
        &["max_drawdown", "3"],
    );
    let book = gw.book(0).await;
    assert!(d(&book.peak_pnl_today) > dec!(5), "{book:?}");
    assert_eq!(book.state, pb::TradingState::Reducing as i32);
    gw.stop().await;
}

/// HALTED refuses every order, cancels pass; REDUCING admits reduce-only
/// and refuses the rest; an account state acts on every engine.
#[tokio::test]
async fn states_halted_and_reducing_and_cancels_always_pass() {
    let gw = Gw::start(RiskConfig::default(), None).await;
    gw.place(0, buy("h1", "100", "0.10")).await.unwrap();
    gw.place(
        0,
        market("p1", "BTCUSDT-PERP", pb::Side::Buy, "0.01", false),
    )
    .await
    .unwrap();
    gw.set_state(Some(0), pb::TradingState::Halted).await;
    denied(
        gw.place(0, buy("h2", "100", "0.10")).await,
        "halted",
        &["HALTED"],
    );
    denied(
        gw.place(
            0,
            market("p2", "BTCUSDT-PERP", pb::Side::Sell, "0.01", true),
        )
        .await,
        "halted",
        &[],
    );
    gw.cancel(0, "h1").await.unwrap();
    gw.place(1, buy("h2", "100", "0.10")).await.unwrap();

    gw.set_state(Some(0), pb::TradingState::Reducing).await;
    denied(
        gw.place(0, buy("h3", "100", "0.10")).await,
        "reducing",
        &["REDUCING"],
    );
    denied(
        gw.place(
            0,
            market("p3", "BTCUSDT-PERP", pb::Side::Buy, "0.01", false),
        )
        .await,
        "reducing",
        &[],
    );
    gw.place(
        0,
        market("p4", "BTCUSDT-PERP", pb::Side::Sell, "0.005", true),
    )
    .await
    .unwrap();
    // Not flagged reduce-only, but against the position and within it.
    gw.place(
        0,
        market("p5", "BTCUSDT-PERP", pb::Side::Sell, "0.005", false),
    )
    .await
    .unwrap();

    gw.set_state(Some(0), pb::TradingState::Active).await;
    gw.place(0, buy("h4", "100", "0.10")).await.unwrap();

    gw.set_state(None, pb::TradingState::Halted).await;
    for e in 0..2 {
        denied(
            gw.place(e, buy("h5", "100", "0.10")).await,
            "halted",
            &["account"],
        );
    }
    gw.cancel(0, "h4").await.unwrap();
    gw.set_state(None, pb::TradingState::Active).await;
    gw.place(1, buy("h5", "100", "0.10")).await.unwrap();
    gw.stop().await;
}

/// Two engines each within their own limits whose sum breaches the
/// account's.
#[tokio::test]
async fn two_engines_within_their_limits_breach_the_account() {
    let per_engine = Limits {
        max_open_orders: Some(3),
        max_exposure_per_instrument: Some(dec!(30)),
        ..Limits::default()
    };
    let gw = Gw::start(
        RiskConfig {
            account: Limits {
                max_open_orders: Some(4),
                max_exposure_per_instrument: Some(dec!(33)),
                ..Limits::default()
            },
            engines: [
                ("e0".to_string(), per_engine.clone()),
                ("e1".to_string(), per_engine),
            ]
            .into(),
        },
        None,
    )
    .await;
    gw.place(0, buy("a1", "50", "0.10")).await.unwrap();
    gw.place(0, buy("a2", "50", "0.10")).await.unwrap();
    gw.place(1, buy("a1", "100", "0.10")).await.unwrap();
    gw.place(1, buy("a2", "100", "0.10")).await.unwrap();
    // e1's third order is within its own limits (3 orders, 30 exposure),
    // not within the account's (5 orders).
    denied(
        gw.place(1, buy("a3", "100", "0.10")).await,
        "max_open_orders",
        &["the account", "4", "5"],
    );
    gw.cancel(0, "a2").await.unwrap();
    // e1 at 30 of its 30; the account at 35 of 33.
    denied(
        gw.place(1, buy("a3", "100", "0.10")).await,
        "max_exposure",
        &["max_exposure_per_instrument of the account is 33", "35"],
    );
    assert!(!gw.exists(1, "a3").await);
    let st = gw.state().await;
    assert_eq!(st.account.unwrap().open_orders, 3);
    assert_eq!(gw.book(1).await.open_orders, 2);
    gw.stop().await;
}

/// Breach actions: reduce, halt, halt + cancel all (only that engine's
/// orders), halt + flatten (only that engine's perp position).
#[tokio::test]
async fn each_breach_action() {
    for action in [
        BreachAction::Reject,
        BreachAction::Reduce,
        BreachAction::Halt,
    ] {
        let mut l = Limits {
            max_order_volume: Some(dec!(1000)),
            ..Limits::default()
        };
        l.actions.max_volume = action;
        let gw = Gw::start(engine_limits(l), None).await;
        denied(
            gw.place(0, buy("z1", "2000", "0.10")).await,
            "max_volume",
            &[],
        );
        let want = match action {
            BreachAction::Reject => pb::TradingState::Active,
            BreachAction::Reduce => pb::TradingState::Reducing,
            _ => pb::TradingState::Halted,
        };
        assert_eq!(gw.book(0).await.state, want as i32, "{action:?}");
        assert_eq!(gw.book(1).await.state, pb::TradingState::Active as i32);
        gw.stop().await;
    }

    // halt_cancel: e0's orders canceled, e1's left alone.
    let mut l = Limits {
        max_order_volume: Some(dec!(1000)),
        ..Limits::default()
    };
    l.actions.max_volume = BreachAction::HaltCancel;
    let gw = Gw::start(engine_limits(l), None).await;
    for e in 0..2 {
        gw.place(e, buy("c1", "100", "0.10")).await.unwrap();
        gw.place(e, buy("c2", "100", "0.09")).await.unwrap();
    }
    denied(
        gw.place(0, buy("c3", "2000", "0.10")).await,
        "max_volume",
        &[],
    );
    kill_done(&gw, "e0", "cancel_all").await;
    assert_eq!(gw.book(0).await.open_orders, 0);
    for id in ["c1", "c2"] {
        let mut g = gw.g();
        for (e, want) in [(0, pb::OrderStatus::Canceled), (1, pb::OrderStatus::Open)] {
            let o = g
                .query_orders(authed(
                    pb::QueryOrdersRequest {
                        client_order_ids: vec![id.into()],
                    },
                    TOKENS[e],
                ))
                .await
                .unwrap()
                .into_inner()
                .orders;
            assert_eq!(o[0].status, want as i32, "e{e} {id}");
        }
    }
    assert_eq!(gw.book(0).await.state, pb::TradingState::Halted as i32);
    gw.stop().await;

    // halt_flatten: e0's perp long closed reduce-only; e1's stays.
    let mut l = Limits {
        max_order_volume: Some(dec!(1)),
        ..Limits::default()
    };
    l.actions.max_volume = BreachAction::HaltFlatten;
    let gw = Gw::start(engine_limits(l), None).await;
    gw.place(
        0,
        market("f1", "BTCUSDT-PERP", pb::Side::Buy, "0.01", false),
    )
    .await
    .unwrap();
    gw.place(
        1,
        market("f1", "BTCUSDT-PERP", pb::Side::Buy, "0.02", false),
    )
    .await
    .unwrap();
    assert_eq!(d(&gw.positions().await[0].size), dec!(0.03));
    denied(
        gw.place(0, market("f2", "BTCUSDT-PERP", pb::Side::Buy, "2", false))
            .await,
        "max_volume",
        &[],
    );
    kill_done(&gw, "e0", "flatten").await;
    assert!(gw.book(0).await.positions.is_empty());
    let p = gw.positions().await;
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(
        d(&p[0].size),
        dec!(0.02),
        "only e0's 0.01 was closed: {p:?}"
    );
    assert_eq!(p[0].side, pb::PositionSide::Long as i32);
    let b1 = gw.book(1).await;
    assert_eq!(d(&b1.positions[0].net), dec!(0.02));
    let audit = gw
        .admin()
        .list_risk_audit(authed(
            pb::ListRiskAuditRequest {
                engine_id: "e0".into(),
                ..Default::default()
            },
            ADMIN,
        ))
        .await
        .unwrap()
        .into_inner()
        .entries;
    let kinds: Vec<&str> = audit.iter().map(|a| a.kind.as_str()).collect();
    for k in ["denial", "state", "cancel_all", "flatten"] {
        assert!(kinds.contains(&k), "{k} not in {kinds:?}");
    }
    gw.stop().await;
}

/// halt_flatten on spot: the engine's holdings (the base its buys brought
/// in) are sold with a market order; another engine's holdings and the
/// account's own balance stay.
#[tokio::test]
async fn halt_flatten_sells_only_the_spot_holdings_the_engine_bought() {
    let mut l = Limits {
        max_order_volume: Some(dec!(1000)),
        ..Limits::default()
    };
    l.actions.max_volume = BreachAction::HaltFlatten;
    let gw = Gw::start(engine_limits(l), None).await;
    let doge = || async {
        let mut g = gw.g();
        let b = g
            .get_balances(authed(pb::GetBalancesRequest {}, TOKENS[1]))
            .await
            .unwrap()
            .into_inner()
            .balances;
        d(&b.iter().find(|b| b.asset == "DOGE").unwrap().total)
    };
    let before = doge().await;
    gw.place(0, market("s1", "DOGEUSD", pb::Side::Buy, "100", false))
        .await
        .unwrap();
    gw.place(1, market("s1", "DOGEUSD", pb::Side::Buy, "200", false))
        .await
        .unwrap();
    assert_eq!(doge().await, before + dec!(300));
    assert_eq!(d(&gw.book(0).await.positions[0].net), dec!(100));
    denied(
        gw.place(0, buy("s2", "2000", "0.10")).await,
        "max_volume",
        &[],
    );
    kill_done(&gw, "e0", "flatten").await;
    assert!(gw.book(0).await.positions.is_empty());
    assert_eq!(
        doge().await,
        before + dec!(200),
        "only the 100 DOGE e0 bought were sold"
    );
    assert_eq!(d(&gw.book(1).await.positions[0].net), dec!(200));
    assert_eq!(gw.book(0).await.state, pb::TradingState::Halted as i32);
    assert_eq!(gw.book(1).await.state, pb::TradingState::Active as i32);
    gw.stop().await;
}

/// Limits change at runtime, validated per field; bad values are
/// INVALID_ARGUMENT naming the field; changes are audited.
#[tokio::test]
async fn set_limits_validates_each_field_and_is_audited() {
    let gw = Gw::start(RiskConfig::default(), None).await;
    let set = |engine: &str, account: bool, limits: pb::RiskLimits| {
        let mut a = gw.admin();
        let engine = engine.to_string();
        async move {
            a.set_risk_limits(authed(
                pb::SetRiskLimitsRequest {
                    engine_id: engine,
                    account,
                    limits: Some(limits),
                    reason: "test".into(),
                },
                ADMIN,
            ))
            .await
        }
    };
    let bad = [
        (
            "e0",
            pb::RiskLimits {
                max_order_notional: "-1".into(),
                ..Default::default()
            },
            "limits.max_order_notional",
        ),
        (
            "e0",
            pb::RiskLimits {
                max_daily_loss: "NaN".into(),
                ..Default::default()
            },
            "limits.max_daily_loss",
        ),
        (
            "e0",
            pb::RiskLimits {
                price_band_pct: "0".into(),
                ..Default::default()
            },
            "limits.price_band_pct",
        ),
        (
            "e0",
            pb::RiskLimits {
                max_drawdown: "1e5".into(),
                ..Default::default()
            },
            "limits.max_drawdown",
        ),
        (
            "nope",
            pb::RiskLimits {
                max_order_volume: "1".into(),
                ..Default::default()
            },
            "engine_id",
        ),
        ("", pb::RiskLimits::default(), "engine_id"),
        (
            "e0",
            pb::RiskLimits {
                actions: [("max_volume".to_string(), "explode".to_string())].into(),
                ..Default::default()
            },
            "limits.actions[max_volume]",
        ),
        (
            "e0",
            pb::RiskLimits {
                actions: [("speed".to_string(), "halt".to_string())].into(),
                ..Default::default()
            },
            "limits.actions",
        ),
    ];
    for (engine, limits, field) in bad {
        let e = set(engine, false, limits).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{field}: {e:?}");
        assert!(e.message().starts_with(field), "{field}: {:?}", e.message());
    }
    let r = set(
        "e0",
        false,
        pb::RiskLimits {
            max_order_volume: "500".into(),
            max_open_orders: Some(2),
            actions: [("max_volume".to_string(), "halt".to_string())].into(),
            ..Default::default()
        },
    )
    .await
    .unwrap()
    .into_inner();
    assert_eq!(r.after.as_ref().unwrap().max_order_volume, "500");
    denied(
        gw.place(0, buy("s1", "600", "0.10")).await,
        "max_volume",
        &["500", "600"],
    );
    assert_eq!(gw.book(0).await.state, pb::TradingState::Halted as i32);
    // "none" removes a limit; the account takes limits too.
    set(
        "e0",
        false,
        pb::RiskLimits {
            max_order_volume: "none".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    set(
        "",
        true,
        pb::RiskLimits {
            max_order_volume: "300".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    gw.set_state(Some(0), pb::TradingState::Active).await;
    denied(
        gw.place(0, buy("s2", "400", "0.10")).await,
        "max_volume",
        &["the account", "300"],
    );
    gw.place(0, buy("s3", "200", "0.10")).await.unwrap();
    // An engine sees its own risk (and the account's), not the others'.
    let own = gw
        .g()
        .get_risk_state(authed(
            pb::GetRiskStateRequest {
                engine_id: "e1".into(),
            },
            TOKENS[0],
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(own.engines.len(), 1);
    assert_eq!(own.engines[0].engine_id, "e0");
    assert_eq!(own.account.unwrap().limits.unwrap().max_order_volume, "300");
    let audit = gw
        .admin()
        .list_risk_audit(authed(pb::ListRiskAuditRequest::default(), ADMIN))
        .await
        .unwrap()
        .into_inner()
        .entries;
    let limits_changes = audit.iter().filter(|a| a.kind == "limits").count();
    assert_eq!(limits_changes, 3, "{audit:?}");
    gw.stop().await;
}

/// States and runtime limits live in `state_dir`: a restarted gateway
/// (same directory) is still HALTED and keeps the limits; the audit log too.
#[tokio::test]
async fn states_limits_and_audit_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gw::start(RiskConfig::default(), Some(dir.path().into())).await;
    gw.set_state(Some(0), pb::TradingState::Halted).await;
    gw.set_state(None, pb::TradingState::Reducing).await;
    gw.admin()
        .set_risk_limits(authed(
            pb::SetRiskLimitsRequest {
                engine_id: "e1".into(),
                limits: Some(pb::RiskLimits {
                    max_order_volume: "50".into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ADMIN,
        ))
        .await
        .unwrap();
    gw.stop().await;
    let gw = Gw::start(RiskConfig::default(), Some(dir.path().into())).await;
    let st = gw.state().await;
    assert_eq!(st.account.unwrap().state, pb::TradingState::Reducing as i32);
    assert_eq!(gw.book(0).await.state, pb::TradingState::Halted as i32);
    let b1 = gw.book(1).await;
    assert_eq!(b1.limits.unwrap().max_order_volume, "50");
    denied(gw.place(0, buy("q1", "100", "0.10")).await, "halted", &[]);
    let audit = gw
        .admin()
        .list_risk_audit(authed(pb::ListRiskAuditRequest::default(), ADMIN))
        .await
        .unwrap()
        .into_inner()
        .entries;
    assert!(
        audit.iter().filter(|a| a.kind == "state").count() >= 2,
        "{audit:?}"
    );
    assert!(
        audit
            .iter()
            .any(|a| a.kind == "denial" && a.engine_id == "e0"),
        "{audit:?}"
    );
    gw.stop().await;
}
