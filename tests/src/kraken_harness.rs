//! Helpers of the Kraken end-to-end tests and benchmark: start `kraken-sim`
//! as a real process (ready when it prints its "listening on" line), steer
//! it through its admin endpoints, run the gateway in-process on
//! 127.0.0.1:0 against it (ready when `on_ready` reports the bound address),
//! and talk to the gateway as an engine.
//!
//! Nothing here sleeps to synchronise: readiness comes from the processes
//! themselves, and [`wait_until`] polls a condition with a deadline.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use herd_gateway::config::{EngineEntry, GatewayConfig, Secret, VenueKind};
use herd_kraken::{CredentialSource, KrakenConfig, Tier};
use herd_proto::gateway as pb;
use herd_proto::gateway::gateway_client::GatewayClient;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

/// The API key the simulator and the gateway share in tests.
pub const API_KEY: &str = "herd-sim-key";
/// Kraken's published example secret (base64).
pub const API_SECRET: &str =
    "kQH5HW/8p1uGOVjbgWA7FunAmGO8lsSUXNsu3eow76sz84Q18fWxnyRzBHCd3pd5nE9qa99HAZtuZuj6F1huXg==";
/// How long a process may take to say it is ready before the test fails.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A `kraken-sim` process; killed when dropped.
#[derive(Debug)]
pub struct SimProcess {
    pub addr: SocketAddr,
    child: Child,
}

impl SimProcess {
    /// Starts `bin` (the `kraken-sim` binary) on 127.0.0.1:0 with the test
    /// key and `extra` arguments, and waits for its "listening on" line.
    pub async fn spawn(bin: &Path, tier: &str, extra: &[&str]) -> anyhow::Result<SimProcess> {
        SimProcess::spawn_at(bin, "127.0.0.1:0", tier, extra).await
    }

    /// [`SimProcess::spawn`] on `listen` (a restart on the port clients
    /// already know).
    pub async fn spawn_at(
        bin: &Path,
        listen: &str,
        tier: &str,
        extra: &[&str],
    ) -> anyhow::Result<SimProcess> {
        let mut child = Command::new(bin)
            .args(["--listen", listen, "--key", API_KEY, "--tier", tier])
            .env("KRAKEN_SIM_SECRET", API_SECRET)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let addr = tokio::time::timeout(READY_TIMEOUT, async {
            while let Some(line) = lines.next_line().await? {
                if let Some(a) = line.strip_prefix("kraken-sim listening on ") {
                    return Ok::<SocketAddr, anyhow::Error>(a.trim().parse()?);
                }
            }
            bail!("kraken-sim exited before it was listening")
        })
        .await
        .context("kraken-sim did not start listening in time")??;
        // Keep draining stdout so the process never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(SimProcess { addr, child })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn admin(&self) -> SimAdmin {
        SimAdmin::new(&self.url())
    }

    /// Stops the process now (SIGKILL) and reaps it.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    /// The process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}

/// A client of the simulator's `/sim/` admin endpoints.
#[derive(Debug, Clone)]
pub struct SimAdmin {
    base: String,
    http: reqwest::Client,
}

impl SimAdmin {
    pub fn new(base: &str) -> SimAdmin {
        SimAdmin {
            base: base.trim_end_matches('/').to_string(),
            http: reqwest::Client::new(),
        }
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let resp = req.send().await?;
        let status = resp.status();
        let body: Value = resp.json().await?;
        if !status.is_success() {
            bail!("sim admin answered {status}: {body}");
        }
        Ok(body)
    }

    async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.send(
            self.http
                .post(format!("{}/sim/{path}", self.base))
                .json(&body),
        )
        .await
    }

    /// `GET /sim/stats`.
    pub async fn stats(&self) -> anyhow::Result<Value> {
        self.send(self.http.get(format!("{}/sim/stats", self.base)))
            .await
    }

    /// `GET /sim/requests`: the venue requests as they arrived (`ms`,
    /// `method`, `private`, `user_agent`).
    pub async fn requests(&self) -> anyhow::Result<Vec<Value>> {
        let v = self
            .send(self.http.get(format!("{}/sim/requests", self.base)))
            .await?;
        Ok(v.as_array().cloned().unwrap_or_default())
    }

    /// `GET /sim/orders`.
    pub async fn orders(&self) -> anyhow::Result<Vec<Value>> {
        let v = self
            .send(self.http.get(format!("{}/sim/orders", self.base)))
            .await?;
        Ok(v.as_array().cloned().unwrap_or_default())
    }

    /// `GET /sim/trades`.
    pub async fn trades(&self) -> anyhow::Result<Vec<Value>> {
        let v = self
            .send(self.http.get(format!("{}/sim/trades", self.base)))
            .await?;
        Ok(v.as_array().cloned().unwrap_or_default())
    }

    /// `GET /sim/balances`.
    pub async fn balances(&self) -> anyhow::Result<Value> {
        self.send(self.http.get(format!("{}/sim/balances", self.base)))
            .await
    }

    /// The sim's count of rate-limit answers.
    pub async fn rate_limit_errors(&self) -> anyhow::Result<u64> {
        Ok(self.stats().await?["stats"]["rate_limit_errors"]
            .as_u64()
            .unwrap_or(u64::MAX))
    }

    pub async fn set_price(&self, pair: &str, price: &str) -> anyhow::Result<Value> {
        self.post("price", json!({"pair": pair, "price": price}))
            .await
    }

    pub async fn set_faults(&self, rules: Value) -> anyhow::Result<Value> {
        self.post("faults", json!({ "rules": rules })).await
    }

    pub async fn clear_faults(&self) -> anyhow::Result<Value> {
        self.send(self.http.delete(format!("{}/sim/faults", self.base)))
            .await
    }

    pub async fn lockout(&self, ms: i64) -> anyhow::Result<Value> {
        self.post("lockout", json!({ "ms": ms })).await
    }

    pub async fn system_status(&self, status: &str) -> anyhow::Result<Value> {
        self.post("status", json!({ "status": status })).await
    }
}

/// Writes the test key and secret to files in `dir` (as a Kubernetes
/// Secret mount would provide them).
pub fn credential_files(dir: &Path) -> anyhow::Result<CredentialSource> {
    let key_path = dir.join("api-key");
    let secret_path = dir.join("api-secret");
    std::fs::write(&key_path, API_KEY)?;
    std::fs::write(&secret_path, API_SECRET)?;
    Ok(CredentialSource::Files {
        key_path,
        secret_path,
    })
}

/// The token of test engine `id`.
pub fn engine_token(id: &str) -> String {
    format!("token-of-{id}")
}

/// A gateway configuration on the Kraken venue at `sim_url`, on
/// 127.0.0.1:0, with engines `ids` (userrefs 1000 apart).
pub fn kraken_gateway_config(
    sim_url: &str,
    credentials: CredentialSource,
    tier: Tier,
    ids: &[&str],
) -> GatewayConfig {
    let engines = ids
        .iter()
        .zip(1i32..)
        .map(|(id, n)| EngineEntry {
            id: (*id).to_string(),
            token: Secret::new(engine_token(id)),
            token_file: None,
            userref_min: n * 1000,
            userref_max: n * 1000 + 999,
            order_prefix: None,
            weight: 1,
            cancel_on_disconnect_ms: 0,
        })
        .collect();
    GatewayConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        venue: VenueKind::Kraken,
        admin_token: Some(Secret::new("admin-token-for-tests")),
        engines,
        poll_interval_ms: 200,
        kraken: KrakenConfig {
            tier,
            base_url: sim_url.to_string(),
            credentials,
            request_timeout_ms: 5_000,
            connect_timeout_ms: 2_000,
            ..KrakenConfig::default()
        },
        // Stop at once (no load balancer to wait for).
        drain_delay_ms: 0,
        ..GatewayConfig::default()
    }
}

/// A gateway running in this process; stopped when dropped.
#[derive(Debug)]
pub struct GatewayHandle {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl GatewayHandle {
    /// Runs `herd_gateway::run` and waits for its `on_ready`.
    pub async fn start(cfg: GatewayConfig) -> anyhow::Result<GatewayHandle> {
        cfg.validate()?;
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(herd_gateway::run(
            cfg,
            move |addr| {
                let _ = ready_tx.send(addr);
            },
            async move {
                let _ = stop_rx.await;
            },
        ));
        let addr = match tokio::time::timeout(READY_TIMEOUT, ready_rx).await {
            Ok(Ok(a)) => a,
            _ => {
                let why = if task.is_finished() {
                    match task.await {
                        Ok(Err(e)) => format!("{e:#}"),
                        other => format!("{other:?}"),
                    }
                } else {
                    "no on_ready in time".to_string()
                };
                bail!("gateway did not start: {why}");
            }
        };
        Ok(GatewayHandle {
            addr,
            stop: Some(stop_tx),
            task,
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A client for engine `id`.
    pub fn engine(&self, id: &str) -> anyhow::Result<EngineClient> {
        engine_client(&self.url(), &engine_token(id))
    }

    /// Stops the gateway and waits for it.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        (&mut self.task).await?
    }
}

impl Drop for GatewayHandle {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        self.task.abort();
    }
}

/// Adds `authorization: Bearer <token>` to every call.
#[derive(Clone)]
pub struct Bearer(tonic::metadata::MetadataValue<tonic::metadata::Ascii>);

impl std::fmt::Debug for Bearer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Bearer(REDACTED)")
    }
}

impl Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        req.metadata_mut().insert("authorization", self.0.clone());
        Ok(req)
    }
}

/// An engine's view of the gateway.
pub type EngineClient = GatewayClient<InterceptedService<Channel, Bearer>>;

/// Connects (lazily) to `url` with `token`.
pub fn engine_client(url: &str, token: &str) -> anyhow::Result<EngineClient> {
    let channel = Endpoint::from_shared(url.to_string())?
        .tcp_nodelay(true)
        .connect_lazy();
    let header = format!("Bearer {token}").parse()?;
    Ok(GatewayClient::with_interceptor(channel, Bearer(header)))
}

/// A limit order request.
pub fn limit(
    id: &str,
    symbol: &str,
    side: pb::Side,
    volume: &str,
    price: &str,
) -> pb::PlaceOrderRequest {
    pb::PlaceOrderRequest {
        client_order_id: id.to_string(),
        symbol: symbol.to_string(),
        side: side as i32,
        order_type: pb::OrderType::Limit as i32,
        volume: volume.to_string(),
        price: price.to_string(),
        post_only: false,
        userref: 0,
        reduce_only: false,
        strategy: String::new(),
    }
}

/// Polls `check` until it yields a value or `within` passes.
pub async fn wait_until<T, F, Fut>(what: &str, within: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    crate::procs::wait_until(what, within, || {
        let next = check();
        async move { Ok(next.await) }
    })
    .await
}
