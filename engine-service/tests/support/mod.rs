//! Shared helpers for the engine's end-to-end tests: an in-process gateway
//! on the paper venue (its random walk frozen: only SetPaperPrice moves the
//! market), engines on port 0 against it, authenticated clients, and a
//! bounded poll for explicit conditions.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use herd_engine::config::{EngineConfig, RegimeSource, Secret};
use herd_gateway::config::{EngineEntry, GatewayConfig, PaperSection, Secret as GwSecret};
use herd_paper::{PaperConfig, PaperInstrument, PathConfig};
use herd_proto::engine as epb;
use herd_proto::engine::engine_client::EngineClient;
use herd_proto::gateway as gpb;
use herd_proto::gateway::gateway_admin_client::GatewayAdminClient;
use herd_proto::gateway::gateway_client::GatewayClient;
use herd_strategies::rangers::RangerConfig;
use rust_decimal::Decimal;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

pub const ADMIN_TOKEN: &str = "admin-token-test";
pub const CONTROL_TOKEN: &str = "control-token-test";
pub const SYMBOL: &str = "DOGEUSD";

/// Engine ids the test gateway knows, with their tokens and userref ranges.
pub const ENGINES: &[(&str, &str, i32, i32)] = &[
    ("e0", "engine-token-e0", 1000, 1999),
    ("e1", "engine-token-e1", 2000, 2999),
];

/// A running in-process gateway.
pub struct TestGateway {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl TestGateway {
    /// Starts a paper gateway whose price stays at 0.12 until moved.
    pub async fn start() -> TestGateway {
        let mut doge = PaperInstrument::doge_usd();
        doge.start_price = Decimal::new(12, 2);
        // A flat path: the driver's steps (one at start, then hourly) leave
        // the price where it is.
        doge.path = flat_path();
        let gw = TestGateway::start_paper(PaperConfig {
            instruments: vec![doge],
            history_minutes: 0,
            ..PaperConfig::default()
        })
        .await;
        gw.set_price("0.12").await;
        gw
    }

    /// Starts a gateway on a paper venue configured as given (the driver
    /// steps once at start, then hourly).
    pub async fn start_paper(exchange: PaperConfig) -> TestGateway {
        let cfg = GatewayConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin_token: Some(GwSecret::new(ADMIN_TOKEN)),
            engines: ENGINES
                .iter()
                .map(|(id, token, lo, hi)| EngineEntry {
                    id: (*id).into(),
                    token: GwSecret::new(*token),
                    token_file: None,
                    userref_min: *lo,
                    userref_max: *hi,
                    order_prefix: None,
                    weight: 1,
                    cancel_on_disconnect_ms: 0,
                })
                .collect(),
            poll_interval_ms: 20,
            paper: PaperSection {
                exchange,
                // The random walk would move the market under the test.
                step_ms: 3_600_000,
                state_file: None,
                latency_ms: 0,
            },
            // Stop at once (no load balancer to wait for).
            drain_delay_ms: 0,
            ..GatewayConfig::default()
        };
        TestGateway::start_config(cfg).await
    }

    /// Starts a gateway with a whole config (its listen address is used
    /// as given: port 0 picks a free one).
    pub async fn start_config(cfg: GatewayConfig) -> TestGateway {
        let (ready_tx, ready_rx) = oneshot::channel();
        let (stop, stop_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(herd_gateway::run(
            cfg,
            move |a| {
                let _ = ready_tx.send(a);
            },
            async move {
                let _ = stop_rx.await;
            },
        ));
        let addr = tokio::time::timeout(Duration::from_secs(10), ready_rx)
            .await
            .expect("gateway did not start")
            .expect("gateway failed");
        TestGateway {
            addr,
            stop: Some(stop),
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.url())
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    /// Moves the paper market (admin RPC) and fills what it crosses.
    pub async fn set_price(&self, price: &str) {
        let mut admin = GatewayAdminClient::new(self.channel().await);
        admin
            .set_paper_price(authed(
                gpb::SetPaperPriceRequest {
                    symbol: SYMBOL.into(),
                    price: price.into(),
                },
                ADMIN_TOKEN,
            ))
            .await
            .unwrap();
    }

    /// Sets a paper perpetual's funding rate and/or settles it now (admin
    /// RPC); returns the settlement made, if any.
    #[allow(dead_code)] // the funding tests' helper
    pub async fn set_funding(
        &self,
        symbol: &str,
        rate: &str,
        settle_now: bool,
    ) -> Vec<gpb::FundingPayment> {
        let mut admin = GatewayAdminClient::new(self.channel().await);
        admin
            .set_paper_funding(authed(
                gpb::SetPaperFundingRequest {
                    symbol: symbol.into(),
                    rate: rate.into(),
                    settle_now,
                },
                ADMIN_TOKEN,
            ))
            .await
            .unwrap()
            .into_inner()
            .payments
    }

    /// The account's perp positions (as engine e0: positions are the key's).
    #[allow(dead_code)] // the funding tests' helper
    pub async fn positions(&self) -> Vec<gpb::Position> {
        let mut gw = GatewayClient::new(self.channel().await);
        gw.get_positions(authed(
            gpb::GetPositionsRequest {
                symbol: String::new(),
            },
            ENGINES[0].1,
        ))
        .await
        .unwrap()
        .into_inner()
        .positions
    }

    /// The gateway's open orders of `engine` (as that engine).
    pub async fn open_orders(&self, engine: &str) -> Vec<gpb::Order> {
        let token = ENGINES.iter().find(|e| e.0 == engine).unwrap().1;
        let mut gw = GatewayClient::new(self.channel().await);
        gw.list_open_orders(authed(
            gpb::ListOpenOrdersRequest {
                symbol: String::new(),
            },
            token,
        ))
        .await
        .unwrap()
        .into_inner()
        .orders
    }

    /// The gateway's view of some of `engine`'s orders.
    #[allow(dead_code)] // the grid tests' helper
    pub async fn query_orders(&self, engine: &str, ids: &[String]) -> Vec<gpb::Order> {
        let token = ENGINES.iter().find(|e| e.0 == engine).unwrap().1;
        let mut gw = GatewayClient::new(self.channel().await);
        gw.query_orders(authed(
            gpb::QueryOrdersRequest {
                client_order_ids: ids.to_vec(),
            },
            token,
        ))
        .await
        .unwrap()
        .into_inner()
        .orders
    }

    /// The paper venue's balances (as engine e0: balances are the key's).
    pub async fn balances(&self) -> Vec<gpb::Balance> {
        let mut gw = GatewayClient::new(self.channel().await);
        gw.get_balances(authed(gpb::GetBalancesRequest {}, ENGINES[0].1))
            .await
            .unwrap()
            .into_inner()
            .balances
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        // A stop that hangs must not leave the old instance running beside
        // a restarted one (it would take the restarted one's events).
        let abort = self.task.abort_handle();
        if tokio::time::timeout(Duration::from_secs(20), self.task)
            .await
            .is_err()
        {
            eprintln!("the in-process service did not stop within 20 s; aborted");
            abort.abort();
        }
    }
}

/// A price path that never moves.
pub fn flat_path() -> PathConfig {
    PathConfig {
        volatility: 0.0,
        mean_reversion: 0.0,
        trend_drift: 0.0,
        switch_probability: 0.0,
        ..PathConfig::default()
    }
}

/// A request with a bearer token.
pub fn authed<T>(msg: T, token: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    r
}

/// An engine config for `id` against `gateway`, ticking every 50 ms, with a
/// fixed regime and the given rangers.
pub fn engine_config(
    id: &str,
    gateway: &TestGateway,
    data_dir: &Path,
    regime: &str,
    rangers: RangerConfig,
) -> EngineConfig {
    let token = ENGINES.iter().find(|e| e.0 == id).unwrap().1;
    EngineConfig {
        id: id.into(),
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        gateway_url: gateway.url(),
        gateway_token: Secret::new(token),
        control_token: Secret::new(CONTROL_TOKEN),
        data_dir: data_dir.to_path_buf(),
        tick_ms: 50,
        balance_refresh_ms: 100,
        regime_source: RegimeSource::Fixed,
        fixed_regime: regime.into(),
        rangers,
        // Stop at once (no load balancer to wait for).
        drain_delay_ms: 0,
        ..EngineConfig::default()
    }
}

/// A running engine.
pub struct TestEngine {
    pub addr: SocketAddr,
    pub cfg: EngineConfig,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl TestEngine {
    /// Starts `herd_engine::run` with the strategies its config asks for.
    pub async fn start(cfg: EngineConfig) -> TestEngine {
        cfg.validate().unwrap();
        let strategies = herd_engine::strategies_from_config(&cfg).await.unwrap();
        let (ready_tx, ready_rx) = oneshot::channel();
        let (stop, stop_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(herd_engine::run(
            cfg.clone(),
            strategies,
            move |a| {
                let _ = ready_tx.send(a);
            },
            async move {
                let _ = stop_rx.await;
            },
        ));
        let addr = tokio::time::timeout(Duration::from_secs(10), ready_rx)
            .await
            .expect("engine did not start")
            .expect("engine failed");
        TestEngine {
            addr,
            cfg,
            stop: Some(stop),
            task,
        }
    }

    pub async fn client(&self) -> EngineClient<Channel> {
        EngineClient::new(
            Channel::from_shared(format!("http://{}", self.addr))
                .unwrap()
                .connect()
                .await
                .unwrap(),
        )
    }

    pub async fn status(&self) -> epb::EngineStatus {
        self.client()
            .await
            .get_status(authed(epb::GetStatusRequest {}, CONTROL_TOKEN))
            .await
            .unwrap()
            .into_inner()
    }

    pub async fn rangers(&self) -> epb::RangersStatus {
        self.status().await.rangers.expect("rangers block present")
    }

    pub async fn set_rangers_enabled(&self, enabled: bool) -> epb::ControlResponse {
        self.client()
            .await
            .set_rangers_enabled(authed(
                epb::SetRangersEnabledRequest { enabled },
                CONTROL_TOKEN,
            ))
            .await
            .unwrap()
            .into_inner()
    }

    pub async fn submit(&self, side: &str, volume: &str, price: &str) -> String {
        self.client()
            .await
            .submit_order(authed(
                epb::SubmitOrderRequest {
                    symbol: SYMBOL.into(),
                    side: side.into(),
                    order_type: "limit".into(),
                    volume: volume.into(),
                    price: price.into(),
                    post_only: true,
                },
                CONTROL_TOKEN,
            ))
            .await
            .unwrap()
            .into_inner()
            .client_order_id
    }

    /// Stops the engine and waits for it to finish.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        // A stop that hangs must not leave the old instance running beside
        // a restarted one (it would take the restarted one's events).
        let abort = self.task.abort_handle();
        if tokio::time::timeout(Duration::from_secs(20), self.task)
            .await
            .is_err()
        {
            eprintln!("the in-process service did not stop within 20 s; aborted");
            abort.abort();
        }
    }
}

/// Polls `check` every 20 ms until it returns `Some`, failing after 15 s
/// with `what` and the last value seen.
pub async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let mut poll = tokio::time::interval(Duration::from_millis(20));
    loop {
        poll.tick().await;
        let last = match check().await {
            Ok(v) => return v,
            Err(seen) => seen,
        };
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for {what}; last seen: {last}");
        }
    }
}

/// Waits until `engine`'s ranger `id` is in `stage`; returns its row.
pub async fn wait_stage(engine: &TestEngine, id: u32, stage: &str) -> epb::RangerSlotStatus {
    wait_for(
        &format!("{} ranger {id} in {stage}", engine.cfg.id),
        || async {
            let r = engine.rangers().await;
            let slot = r.slots.iter().find(|s| s.ranger_id == id).cloned();
            match slot {
                Some(s) if s.stage == stage => Ok(s),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await
}

/// A strategy that keeps one resting buy, for engine-level tests.
#[allow(dead_code)] // not every test that includes `support` uses it
pub mod probe;
