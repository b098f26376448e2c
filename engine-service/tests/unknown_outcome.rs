//! A place whose outcome is unknown is never reported to the strategy as
//! failed: the strategy does not place again while the order may exist, and
//! the engine resolves it by asking the gateway. A real engine and a real
//! gateway, with a gRPC proxy between them that loses one PlaceOrder answer
//! (after forwarding it, or before).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(dead_code)] // this test uses a part of the shared helpers
mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use herd_proto::gateway as gpb;
use herd_proto::gateway::gateway_admin_client::GatewayAdminClient;
use herd_proto::gateway::gateway_client::GatewayClient;
use herd_proto::gateway::gateway_server::{Gateway, GatewayServer};
use herd_strategies::rangers::RangerConfig;
use herd_strategies::strategy::UpdateKind;
use support::probe::{Log, start_probe_engine, until};
use support::{ADMIN_TOKEN, TestGateway, authed, engine_config};
use tokio::sync::oneshot;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

/// What the proxy does to the first PlaceOrder.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Fault {
    /// Forwards it, then answers UNKNOWN (the answer was lost on the way).
    AnswerLost,
    /// Answers UNAVAILABLE without forwarding (the request was lost).
    RequestLost,
}

struct Proxy {
    inner: GatewayClient<Channel>,
    fault: Fault,
    faulted: Mutex<bool>,
}

fn forward<T>(req: Request<T>) -> Request<T> {
    let (meta, _, msg) = req.into_parts();
    let mut out = Request::new(msg);
    *out.metadata_mut() = meta;
    out
}

type Answer<'a, T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Response<T>, Status>> + Send + 'a>>;

// The generated trait is an `async_trait`, whose attribute runs before this
// macro expands: so the methods are written in the form it produces.
macro_rules! unary {
    ($($name:ident($req:ty) -> $resp:ty;)*) => {$(
        fn $name<'life0, 'async_trait>(&'life0 self, req: Request<$req>) -> Answer<'async_trait, $resp>
        where
            'life0: 'async_trait,
            Self: 'async_trait,
        {
            Box::pin(async move { self.inner.clone().$name(forward(req)).await })
        }
    )*};
}

#[tonic::async_trait]
impl Gateway for Proxy {
    unary! {
        get_session(gpb::GetSessionRequest) -> gpb::GetSessionResponse;
        list_instruments(gpb::ListInstrumentsRequest) -> gpb::ListInstrumentsResponse;
        get_ticker(gpb::GetTickerRequest) -> gpb::Ticker;
        get_candles(gpb::GetCandlesRequest) -> gpb::GetCandlesResponse;
        get_balances(gpb::GetBalancesRequest) -> gpb::GetBalancesResponse;
        cancel_order(gpb::CancelOrderRequest) -> gpb::CancelOrderResponse;
        query_orders(gpb::QueryOrdersRequest) -> gpb::QueryOrdersResponse;
        list_open_orders(gpb::ListOpenOrdersRequest) -> gpb::ListOpenOrdersResponse;
        get_budget(gpb::GetBudgetRequest) -> gpb::GetBudgetResponse;
        get_capacity(gpb::GetCapacityRequest) -> gpb::GetCapacityResponse;
        list_funding_rates(gpb::ListFundingRatesRequest) -> gpb::ListFundingRatesResponse;
        get_positions(gpb::GetPositionsRequest) -> gpb::GetPositionsResponse;
        get_account_margin(gpb::GetAccountMarginRequest) -> gpb::GetAccountMarginResponse;
        list_funding_payments(gpb::ListFundingPaymentsRequest) -> gpb::ListFundingPaymentsResponse;
        get_risk_state(gpb::GetRiskStateRequest) -> gpb::GetRiskStateResponse;
        publish_herd_events(gpb::PublishHerdEventsRequest) -> gpb::PublishHerdEventsResponse;
    }

    async fn place_order(
        &self,
        req: Request<gpb::PlaceOrderRequest>,
    ) -> Result<Response<gpb::PlaceOrderResponse>, Status> {
        let first = !std::mem::replace(&mut *self.faulted.lock().unwrap(), true);
        if !first {
            return self.inner.clone().place_order(forward(req)).await;
        }
        match self.fault {
            Fault::AnswerLost => {
                let r = self.inner.clone().place_order(forward(req)).await;
                assert!(r.is_ok(), "the gateway refused the probe's order: {r:?}");
                Err(Status::unknown(
                    "h2 stream reset after the request was sent",
                ))
            }
            Fault::RequestLost => Err(Status::unavailable("connection reset")),
        }
    }

    type StreamOrderEventsStream = tonic::codec::Streaming<gpb::OrderEvent>;

    async fn stream_order_events(
        &self,
        req: Request<gpb::StreamOrderEventsRequest>,
    ) -> Result<Response<Self::StreamOrderEventsStream>, Status> {
        self.inner.clone().stream_order_events(forward(req)).await
    }
}

async fn start_proxy(gateway: &TestGateway, fault: Fault) -> SocketAddr {
    let inner = GatewayClient::new(
        Channel::from_shared(gateway.url())
            .unwrap()
            .connect()
            .await
            .unwrap(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let proxy = Proxy {
        inner,
        fault,
        faulted: Mutex::new(false),
    };
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(GatewayServer::new(proxy))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    addr
}

struct Herd {
    gateway: TestGateway,
    log: Arc<Mutex<Log>>,
    stop: oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

async fn start(fault: Fault) -> Herd {
    let gateway = TestGateway::start().await;
    let proxy = start_proxy(&gateway, fault).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = engine_config(
        "e0",
        &gateway,
        dir.path(),
        "RANGING",
        RangerConfig::default(),
    );
    cfg.gateway_url = format!("http://{proxy}");
    let (log, _, stop) = start_probe_engine(cfg).await;
    Herd {
        gateway,
        log,
        stop,
        _dir: dir,
    }
}

/// The herd event the engine published when it settled `id`'s outcome,
/// read from the gateway's feed.
async fn resolved_event(gateway: &TestGateway, id: &str) -> gpb::HerdEvent {
    until(
        "the unknown_outcome_resolved event at the gateway",
        || async {
            let mut admin = GatewayAdminClient::new(gateway.channel().await);
            let mut s = admin
                .stream_herd_events(authed(
                    gpb::StreamHerdEventsRequest {
                        kinds: vec![herd_proto::events::kind::UNKNOWN_OUTCOME_RESOLVED.into()],
                        ..Default::default()
                    },
                    ADMIN_TOKEN,
                ))
                .await
                .ok()?
                .into_inner();
            while let Some(e) = s.message().await.ok()? {
                if e.order_ids.iter().any(|o| o == id) {
                    return Some(e);
                }
            }
            None
        },
    )
    .await
}

fn ticks(log: &Arc<Mutex<Log>>) -> u64 {
    log.lock().unwrap().ticks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_answer_is_not_a_failure_and_the_strategy_does_not_place_again() {
    let herd = start(Fault::AnswerLost).await;
    let first = until("the probe's first place", || async {
        herd.log.lock().unwrap().places.first().cloned()
    })
    .await;
    // The order reached the gateway: its stream says it is open.
    until(
        "the open event of the order whose answer was lost",
        || async {
            let log = herd.log.lock().unwrap();
            log.updates
                .iter()
                .any(|(id, kind, _)| *id == first && *kind == UpdateKind::Open)
                .then_some(())
        },
    )
    .await;
    // Long enough for the engine to have asked the gateway about it
    // (UNKNOWN_OUTCOME_ASK_MS at 50 ms ticks), counted in ticks.
    let seen = ticks(&herd.log);
    let more = u64::try_from(herd_engine::execution::UNKNOWN_OUTCOME_ASK_MS / 50).unwrap() * 2;
    until("more ticks", || async {
        (ticks(&herd.log) >= seen + more).then_some(())
    })
    .await;
    {
        let log = herd.log.lock().unwrap();
        assert_eq!(log.places, vec![first.clone()], "placed again: {log:?}");
        assert!(
            !log.updates
                .iter()
                .any(|(_, kind, _)| *kind == UpdateKind::PlaceFailed),
            "an unknown outcome was reported as a failure: {log:?}"
        );
    }
    let open = herd.gateway.open_orders("e0").await;
    assert_eq!(open.len(), 1, "{open:?}");
    let e = resolved_event(&herd.gateway, &first).await;
    assert_eq!(e.severity, gpb::Severity::Notice as i32, "{e:?}");
    assert_eq!(e.engine, "e0");
    let _ = herd.stop.send(());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_request_is_resolved_by_asking_the_gateway_before_placing_again() {
    let herd = start(Fault::RequestLost).await;
    let first = until("the probe's first place", || async {
        herd.log.lock().unwrap().places.first().cloned()
    })
    .await;
    let message = until("the lost order resolved as failed", || async {
        let log = herd.log.lock().unwrap();
        log.updates.iter().find_map(|(id, kind, msg)| {
            (*id == first && *kind == UpdateKind::PlaceFailed).then(|| msg.clone())
        })
    })
    .await;
    assert!(message.contains("never reached the gateway"), "{message}");
    let e = resolved_event(&herd.gateway, &first).await;
    assert_eq!(e.severity, gpb::Severity::Warning as i32, "{e:?}");
    assert!(e.message.contains("never reached the gateway"), "{e:?}");
    // Only now does the probe place again, and that order goes through.
    let second = until("the probe's second place", || async {
        herd.log.lock().unwrap().places.get(1).cloned()
    })
    .await;
    assert_ne!(second, first);
    let open = until("the second order open at the gateway", || async {
        let open = herd.gateway.open_orders("e0").await;
        (!open.is_empty()).then_some(open)
    })
    .await;
    assert_eq!(open.len(), 1, "{open:?}");
    assert!(open[0].client_order_id.ends_with(&second), "{open:?}");
    let log = herd.log.lock().unwrap();
    assert_eq!(log.places.len(), 2, "{log:?}");
    let _ = herd.stop.send(());
}
