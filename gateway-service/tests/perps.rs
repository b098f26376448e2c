//! The perp and funding RPCs end to end over gRPC, on the paper venue: an
//! in-process gateway on 127.0.0.1:0 and a real tonic client.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;

use herd_gateway::config::{EngineEntry, GatewayConfig, Secret};
use herd_proto::gateway as pb;
use herd_proto::gateway::gateway_admin_client::GatewayAdminClient;
use herd_proto::gateway::gateway_client::GatewayClient;
use rust_decimal::Decimal;
use tonic::Request;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

const ENGINE_TOKEN: &str = "engine-token-0";
const ADMIN_TOKEN: &str = "admin-token-0";

struct Gateway {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Gateway {
    async fn start() -> Gateway {
        let mut cfg = GatewayConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            admin_token: Some(Secret::new(ADMIN_TOKEN)),
            engines: vec![EngineEntry {
                id: "e0".into(),
                token: Secret::new(ENGINE_TOKEN),
                token_file: None,
                userref_min: 1,
                userref_max: 1000,
                order_prefix: None,
                weight: 1,
                cancel_on_disconnect_ms: 0,
            }],
            // Stop at once (no load balancer to wait for).
            drain_delay_ms: 0,
            ..GatewayConfig::default()
        };
        cfg.paper.exchange.history_minutes = 0;
        cfg.paper.step_ms = 60_000;
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
        }
    }

    async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.task.await.unwrap().unwrap();
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

fn market(
    id: &str,
    symbol: &str,
    side: pb::Side,
    volume: &str,
    reduce: bool,
) -> pb::PlaceOrderRequest {
    pb::PlaceOrderRequest {
        client_order_id: id.into(),
        symbol: symbol.into(),
        side: side as i32,
        order_type: pb::OrderType::Market as i32,
        volume: volume.into(),
        price: String::new(),
        post_only: false,
        userref: 0,
        reduce_only: reduce,
        strategy: String::new(),
    }
}

#[tokio::test]
async fn hedge_funding_and_close_over_grpc() {
    let gw = Gateway::start().await;
    let ch = gw.channel().await;
    let mut g = GatewayClient::new(ch.clone());
    let mut admin = GatewayAdminClient::new(ch);

    let rates = g
        .list_funding_rates(authed(pb::ListFundingRatesRequest::default(), ENGINE_TOKEN))
        .await
        .unwrap()
        .into_inner()
        .rates;
    assert_eq!(rates.len(), 3, "{rates:?}");
    assert!(rates.iter().all(|r| r.symbol.ends_with("-PERP")));
    let bad = g
        .list_funding_rates(authed(
            pb::ListFundingRatesRequest {
                symbols: vec!["BTCUSDT".into()],
            },
            ENGINE_TOKEN,
        ))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument, "{bad:?}");

    for (id, symbol, side) in [
        ("spot-1", "BTCUSDT", pb::Side::Buy),
        ("perp-1", "BTCUSDT-PERP", pb::Side::Sell),
    ] {
        let o = g
            .place_order(authed(
                market(id, symbol, side, "0.01", false),
                ENGINE_TOKEN,
            ))
            .await
            .unwrap()
            .into_inner()
            .order
            .unwrap();
        assert_eq!(o.status, pb::OrderStatus::Filled as i32, "{o:?}");
    }

    let positions = g
        .get_positions(authed(pb::GetPositionsRequest::default(), ENGINE_TOKEN))
        .await
        .unwrap()
        .into_inner()
        .positions;
    assert_eq!(positions.len(), 1);
    assert_eq!(positions[0].symbol, "BTCUSDT-PERP");
    assert_eq!(positions[0].side, pb::PositionSide::Short as i32);
    assert_eq!(positions[0].size, "0.01");

    let settled = admin
        .set_paper_funding(authed(
            pb::SetPaperFundingRequest {
                symbol: "BTCUSDT-PERP".into(),
                rate: "0.0003".into(),
                settle_now: true,
            },
            ADMIN_TOKEN,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(settled.rate.unwrap().rate, "0.0003");
    assert_eq!(settled.payments.len(), 1);
    let amount: Decimal = settled.payments[0].amount.parse().unwrap();
    assert!(amount > Decimal::ZERO, "the short receives");

    let listed = g
        .list_funding_payments(authed(
            pb::ListFundingPaymentsRequest {
                symbol: "BTCUSDT-PERP".into(),
                ..Default::default()
            },
            ENGINE_TOKEN,
        ))
        .await
        .unwrap()
        .into_inner()
        .payments;
    assert_eq!(listed, settled.payments);

    let margin = g
        .get_account_margin(authed(pb::GetAccountMarginRequest {}, ENGINE_TOKEN))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(margin.asset, "USDT");
    let mm: Decimal = margin.maintenance_margin_ratio.parse().unwrap();
    assert!(mm > Decimal::ZERO && mm < Decimal::ONE, "{mm}");

    let close = g
        .place_order(authed(
            market("perp-2", "BTCUSDT-PERP", pb::Side::Buy, "0.01", true),
            ENGINE_TOKEN,
        ))
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap();
    assert_eq!(close.status, pb::OrderStatus::Filled as i32);
    let positions = g
        .get_positions(authed(pb::GetPositionsRequest::default(), ENGINE_TOKEN))
        .await
        .unwrap()
        .into_inner()
        .positions;
    assert!(positions.is_empty(), "{positions:?}");
    let again = g
        .place_order(authed(
            market("perp-3", "BTCUSDT-PERP", pb::Side::Buy, "0.01", true),
            ENGINE_TOKEN,
        ))
        .await
        .unwrap_err();
    assert_eq!(again.code(), tonic::Code::FailedPrecondition, "{again:?}");

    let no_token = g
        .get_positions(Request::new(pb::GetPositionsRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(no_token.code(), tonic::Code::Unauthenticated);
    gw.stop().await;
}

/// Every call that takes a symbol answers an unknown one alike:
/// INVALID_ARGUMENT naming `symbol` (ListOpenOrders, GetPositions and
/// ListFundingPayments used to answer OK and empty). An empty symbol still
/// means every symbol where the API says so; a spot symbol is not a
/// perpetual for positions and funding payments.
#[tokio::test]
async fn reduce_only_on_spot_is_refused_naming_the_field() {
    let gw = Gateway::start().await;
    let mut g = GatewayClient::new(gw.channel().await);
    let st = g
        .place_order(authed(
            market("ro-spot", "BTCUSDT", pb::Side::Sell, "0.01", true),
            ENGINE_TOKEN,
        ))
        .await
        .unwrap_err();
    assert_eq!(st.code(), tonic::Code::InvalidArgument, "{st:?}");
    assert_eq!(
        st.message(),
        "reduce_only: reduce-only applies to perpetuals; BTCUSDT is spot"
    );
    // Nothing was registered or placed.
    let open = g
        .list_open_orders(authed(pb::ListOpenOrdersRequest::default(), ENGINE_TOKEN))
        .await
        .unwrap()
        .into_inner()
        .orders;
    assert!(open.is_empty(), "{open:?}");
    gw.stop().await;
}

#[tokio::test]
async fn unknown_symbols_are_invalid_argument_everywhere() {
    let gw = Gateway::start().await;
    let mut g = GatewayClient::new(gw.channel().await);
    let t = ENGINE_TOKEN;
    let answers: Vec<(&str, tonic::Status)> = vec![
        (
            "GetTicker",
            g.get_ticker(authed(
                pb::GetTickerRequest {
                    symbol: "NOPE".into(),
                },
                t,
            ))
            .await
            .unwrap_err(),
        ),
        (
            "GetCapacity",
            g.get_capacity(authed(
                pb::GetCapacityRequest {
                    symbol: "NOPE".into(),
                },
                t,
            ))
            .await
            .unwrap_err(),
        ),
        (
            "ListOpenOrders",
            g.list_open_orders(authed(
                pb::ListOpenOrdersRequest {
                    symbol: "NOPE".into(),
                },
                t,
            ))
            .await
            .unwrap_err(),
        ),
        (
            "GetPositions",
            g.get_positions(authed(
                pb::GetPositionsRequest {
                    symbol: "NOPE".into(),
                },
                t,
            ))
            .await
            .unwrap_err(),
        ),
        (
            "ListFundingPayments",
            g.list_funding_payments(authed(
                pb::ListFundingPaymentsRequest {
                    symbol: "NOPE".into(),
                    ..Default::default()
                },
                t,
            ))
            .await
            .unwrap_err(),
        ),
    ];
    for (rpc, st) in answers {
        assert_eq!(st.code(), tonic::Code::InvalidArgument, "{rpc}: {st:?}");
        assert_eq!(
            st.message(),
            "symbol: unknown instrument \"NOPE\"",
            "{rpc}: {st:?}"
        );
    }
    let spot = g
        .get_positions(authed(
            pb::GetPositionsRequest {
                symbol: "BTCUSDT".into(),
            },
            t,
        ))
        .await
        .unwrap_err();
    assert_eq!(spot.code(), tonic::Code::InvalidArgument, "{spot:?}");
    assert_eq!(spot.message(), "symbol: \"BTCUSDT\" is not a perpetual");

    // Empty = all; a known symbol filters.
    g.list_open_orders(authed(pb::ListOpenOrdersRequest::default(), t))
        .await
        .unwrap();
    g.list_open_orders(authed(
        pb::ListOpenOrdersRequest {
            symbol: "BTCUSDT".into(),
        },
        t,
    ))
    .await
    .unwrap();
    g.get_positions(authed(pb::GetPositionsRequest::default(), t))
        .await
        .unwrap();
    g.get_positions(authed(
        pb::GetPositionsRequest {
            symbol: "BTCUSDT-PERP".into(),
        },
        t,
    ))
    .await
    .unwrap();
    g.list_funding_payments(authed(pb::ListFundingPaymentsRequest::default(), t))
        .await
        .unwrap();
    g.list_funding_payments(authed(
        pb::ListFundingPaymentsRequest {
            symbol: "BTCUSDT-PERP".into(),
            ..Default::default()
        },
        t,
    ))
    .await
    .unwrap();
    gw.stop().await;
}

/// The fills ledger over gRPC on a funding hedge: every leg's fill carries
/// the strategy tag its PlaceOrder gave, the funding the engine listed is
/// booked to it, and GetPnl by strategy is the legs' gains less fees plus
/// the funding, by hand from the fills. Bad tags and filters are
/// INVALID_ARGUMENT naming the field.
#[tokio::test]
async fn funding_hedge_pnl_in_the_ledger() {
    let gw = Gateway::start().await;
    let ch = gw.channel().await;
    let mut g = GatewayClient::new(ch.clone());
    let mut admin = GatewayAdminClient::new(ch);
    let tagged = |id: &str, symbol: &str, side: pb::Side, reduce: bool| pb::PlaceOrderRequest {
        strategy: "funding".into(),
        ..market(id, symbol, side, "0.01", reduce)
    };
    let bad = g
        .place_order(authed(
            pb::PlaceOrderRequest {
                strategy: "fund ing".into(),
                ..tagged("x", "BTCUSDT", pb::Side::Buy, false)
            },
            ENGINE_TOKEN,
        ))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    assert!(bad.message().starts_with("strategy: "), "{bad:?}");

    for (id, symbol, side) in [
        ("h-spot", "BTCUSDT", pb::Side::Buy),
        ("h-perp", "BTCUSDT-PERP", pb::Side::Sell),
    ] {
        g.place_order(authed(tagged(id, symbol, side, false), ENGINE_TOKEN))
            .await
            .unwrap();
    }
    admin
        .set_paper_funding(authed(
            pb::SetPaperFundingRequest {
                symbol: "BTCUSDT-PERP".into(),
                rate: "0.0003".into(),
                settle_now: true,
            },
            ADMIN_TOKEN,
        ))
        .await
        .unwrap();
    let payments = g
        .list_funding_payments(authed(
            pb::ListFundingPaymentsRequest {
                symbol: "BTCUSDT-PERP".into(),
                ..Default::default()
            },
            ENGINE_TOKEN,
        ))
        .await
        .unwrap()
        .into_inner()
        .payments;
    assert_eq!(payments.len(), 1);
    let funding: Decimal = payments[0].amount.parse().unwrap();
    g.place_order(authed(
        tagged("h-perp-x", "BTCUSDT-PERP", pb::Side::Buy, true),
        ENGINE_TOKEN,
    ))
    .await
    .unwrap();
    // Sell what the spot buy delivered (its fee may have been taken in BTC).
    let spot = admin
        .list_fills(authed(
            pb::ListFillsRequest {
                symbol: "BTCUSDT".into(),
                ..Default::default()
            },
            ADMIN_TOKEN,
        ))
        .await
        .unwrap()
        .into_inner()
        .fills;
    let bought: Decimal = spot[0].volume.parse().unwrap();
    let fee: Decimal = spot[0].fee.parse().unwrap();
    let held = if spot[0].fee_asset == "BTC" {
        bought - fee
    } else {
        bought
    };
    g.place_order(authed(
        pb::PlaceOrderRequest {
            volume: held.normalize().to_string(),
            ..tagged("h-spot-x", "BTCUSDT", pb::Side::Sell, false)
        },
        ENGINE_TOKEN,
    ))
    .await
    .unwrap();

    let fills = admin
        .list_fills(authed(pb::ListFillsRequest::default(), ADMIN_TOKEN))
        .await
        .unwrap()
        .into_inner()
        .fills;
    assert_eq!(fills.len(), 4, "{fills:#?}");
    assert!(
        fills
            .iter()
            .all(|f| f.strategy == "funding" && f.engine_id == "e0")
    );
    // By hand: what was paid and received, fees in quote, funding. A fee
    // taken in BTC is already in it: the spot sell sold only what arrived.
    let d = |s: &str| s.parse::<Decimal>().unwrap();
    let mut hand = funding;
    for f in &fills {
        let value = d(&f.volume) * d(&f.price);
        hand += if f.side == "sell" { value } else { -value };
        if f.fee_asset != "BTC" {
            hand -= d(&f.fee);
        }
    }
    let pnl = admin
        .get_pnl(authed(
            pb::GetPnlRequest {
                by: pb::PnlGrouping::Strategy as i32,
                ..Default::default()
            },
            ADMIN_TOKEN,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(pnl.rows.len(), 1);
    let row = &pnl.rows[0];
    assert_eq!(row.key, "funding");
    assert_eq!(d(&row.funding), funding);
    assert_eq!(d(&row.unrealized), Decimal::ZERO, "both legs closed");
    assert_eq!(d(&row.realized).round_dp(2), hand.round_dp(2));
    assert_eq!(d(&row.realized), hand.round_dp(8));

    let bad = admin
        .list_fills(authed(
            pb::ListFillsRequest {
                engine_id: "nope".into(),
                ..Default::default()
            },
            ADMIN_TOKEN,
        ))
        .await
        .unwrap_err();
    assert!(bad.message().starts_with("engine_id: "), "{bad:?}");
    let bad = admin
        .get_pnl(authed(
            pb::GetPnlRequest {
                by: 42,
                ..Default::default()
            },
            ADMIN_TOKEN,
        ))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    assert!(bad.message().starts_with("by: "), "{bad:?}");
    gw.stop().await;
}
