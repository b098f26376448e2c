//! A Herd trading engine.
//!
//! Strategies ([`strategy`]) are pure reducers; the execution layer
//! ([`execution`]) owns the gateway connection, follows the engine's order
//! events and journals them in the [`store`]; the control server
//! ([`control`]) gives operators status and control. Shared services for
//! strategies: [`capacity`] (open-order headroom) and [`capital`] (funds
//! promised to orders). Strategies: [`rangers`] and [`grid`] (slots,
//! ledger, self-healing) with its [`churner`]s, all reducers, and
//! [`funding`] (the funding-rate arbitrage orchestrator, an async component
//! the engine owns).

pub mod capacity;
pub mod capital;
pub mod churner;
pub mod config;
pub mod control;
pub mod execution;
pub mod funding;
pub mod grid;
pub mod http;
pub mod rangers;
pub mod regime;
pub mod store;
pub mod strategy;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use herd_proto::engine::engine_server::EngineServer;
use tonic::transport::Server;

use crate::config::EngineConfig;
use crate::control::{ControlAuth, ControlService};
use crate::execution::Shared;
use crate::store::Store;
use crate::strategy::Strategy;

/// Opens the store the config names: Postgres when `database_url` is set,
/// else SQLite under the data dir.
pub async fn open_store(cfg: &EngineConfig) -> anyhow::Result<Store> {
    let url = cfg.database_url.expose();
    let store = if url.is_empty() {
        Store::open_sqlite_dir(&cfg.data_dir, &cfg.id).await
    } else {
        Store::connect(url).await
    }
    .context("cannot open the engine's store")?;
    Ok(store)
}

/// The strategies the config asks for. The rangers and the grid are always
/// built (their status blocks are always present; disabled by default).
pub fn strategies_from_config(cfg: &EngineConfig) -> anyhow::Result<Vec<Box<dyn Strategy>>> {
    cfg.rangers
        .validate()
        .map_err(|e| anyhow::anyhow!("config: {e}"))?;
    cfg.grid
        .validate()
        .map_err(|e| anyhow::anyhow!("config: {e}"))?;
    let now = execution::now_ms();
    Ok(vec![
        Box::new(rangers::Rangers::new(cfg.rangers.clone(), &cfg.symbol, now)),
        Box::new(grid::Grid::new(cfg.grid.clone(), &cfg.symbol, now)),
    ])
}

/// Runs the engine until `shutdown` resolves. `on_ready` gets the control
/// server's bound address.
pub async fn run(
    cfg: EngineConfig,
    strategies: Vec<Box<dyn Strategy>>,
    on_ready: impl FnOnce(SocketAddr),
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let store = open_store(&cfg).await?;
    let gateway = execution::gateway_client(&cfg.gateway_url, &cfg.gateway_token)?;
    let shared = Arc::new(Shared::new(cfg.clone(), store.clone(), gateway, strategies));

    let mut tasks = tokio::task::JoinSet::new();
    if cfg.funding.enabled {
        let api = Arc::new(funding::gateway::GatewayApi::new(shared.clone()));
        let orchestrator = funding::Orchestrator::new(api, store.clone(), cfg.funding.clone());
        let _ = shared.funding.set(orchestrator.handle());
        // An emergency stop that fired and was not cleared survives the
        // restart: the engine comes back halted and the orchestrator does
        // not open (herdctl funding clear-emergency, then herdctl resume).
        match orchestrator.restore_emergency().await {
            Ok(Some(e)) => {
                let mut st = shared.state();
                st.mode = execution::Mode::Halted;
                st.pause_reason = format!(
                    "funding emergency stop latched before the restart: {}",
                    e.reason
                );
            }
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "cannot read the funding emergency latch"),
        }
        tasks.spawn(orchestrator.run());
    }
    tasks.spawn(emergency_on_sigusr1(shared.clone()));
    tasks.spawn(shared.clone().run_event_stream());
    tasks.spawn(shared.clone().run_ticks());
    tasks.spawn(regime::run(shared.clone()));

    let (health, health_svc) = tonic_health::server::health_reporter();
    health.set_serving::<EngineServer<ControlService>>().await;
    let auth = ControlAuth::new(&cfg.control_token);
    let control =
        EngineServer::with_interceptor(ControlService::new(shared.clone()), move |r| auth.check(r));
    let (incoming, local) = herd_proto::serving::bind(cfg.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.listen))?;
    tracing::info!(%local, engine = %cfg.id, gateway = %cfg.gateway_url, "engine control server listening");

    let http_state = Arc::new(http::HttpState {
        shared: shared.clone(),
        serving: std::sync::atomic::AtomicBool::new(true),
    });
    let (http_stop_tx, http_stop_rx) = tokio::sync::oneshot::channel::<()>();
    if let Some(addr) = cfg.http_listen {
        let (listener, http_local) = herd_proto::admin_http::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} (http_listen)"))?;
        tracing::info!(%http_local, "engine admin http listening");
        tasks.spawn(herd_proto::admin_http::serve(
            listener,
            http::handler(http_state.clone()),
            async move {
                let _ = http_stop_rx.await;
            },
        ));
    }
    on_ready(local);

    let health_on_stop = health.clone();
    let http_on_stop = http_state.clone();
    let stop = async move {
        shutdown.await;
        http_on_stop
            .serving
            .store(false, std::sync::atomic::Ordering::Relaxed);
        health_on_stop
            .set_not_serving::<EngineServer<ControlService>>()
            .await;
        health_on_stop
            .set_service_status("", tonic_health::ServingStatus::NotServing)
            .await;
        tracing::info!("engine draining");
    };
    Server::builder()
        .tcp_nodelay(true)
        .add_service(health_svc)
        .add_service(herd_proto::serving::reflection_v1()?)
        .add_service(herd_proto::serving::reflection_v1alpha()?)
        .add_service(control)
        .serve_with_incoming_shutdown(incoming, stop)
        .await
        .context("engine control server failed")?;
    if let Some(f) = shared.funding.get() {
        let policy = f.config().shutdown_policy.as_str();
        tracing::info!(policy, "funding orchestrator shutting down");
        if tokio::time::timeout(std::time::Duration::from_secs(60), f.shutdown())
            .await
            .is_err()
        {
            tracing::error!("funding shutdown did not finish within 60 s");
        }
    }
    let _ = http_stop_tx.send(());
    tasks.abort_all();
    store.close().await;
    tracing::info!("engine stopped");
    Ok(())
}

/// SIGUSR1 = emergency stop (design.md): the engine halts, its open orders
/// are cancelled and the funding orchestrator closes every position.
async fn emergency_on_sigusr1(shared: Arc<Shared>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut usr1) = signal(SignalKind::user_defined1()) else {
            tracing::warn!("cannot listen for SIGUSR1; emergency stop only by RPC");
            return;
        };
        while usr1.recv().await.is_some() {
            let (ok, message) = control::emergency_stop(&shared, "SIGUSR1").await;
            tracing::error!(ok, %message, "emergency stop by SIGUSR1");
        }
    }
    #[cfg(not(unix))]
    {
        let _ = shared;
        std::future::pending::<()>().await;
    }
}

/// Logs as JSON when `HERD_LOG_FORMAT=json`, else human-readable, to stderr.
pub fn init_tracing() {
    herd_proto::serving::init_tracing();
}
