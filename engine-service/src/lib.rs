//! A Herd trading engine: the runtime around the pure strategies of
//! [`herd_strategies`].
//!
//! The execution layer ([`execution`]) owns the gateway connection, turns
//! the strategies' actions into gateway calls, follows the engine's order
//! events and journals them in the [`store`]; [`clock`] is the one place
//! that reads the wall clock. [`view`] builds the engine's status once for
//! every reader; the control server ([`control`]) gives operators status
//! and control, [`http`] and [`dashboard`] serve the admin port. [`regime`] runs the HMM detector over the gateway's
//! candles, and [`funding`] is the funding-rate arbitrage orchestrator (an
//! async component the engine owns, running the pure decisions of
//! [`herd_strategies::funding`]).
//!
//! Dependencies point one way: this crate uses the strategies, never the
//! other way round.

pub mod clock;
pub mod config;
pub mod control;
pub mod dashboard;
pub mod events;
pub mod execution;
pub mod funding;
pub mod http;
pub mod metrics;
pub mod reconcile;
pub mod regime;
pub mod reload;
pub mod risk;
pub mod store;
pub mod view;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use herd_proto::engine::engine_server::EngineServer;
use herd_proto::serving::{self, Stopped};
use tonic::server::NamedService;
use tracing::Instrument;

use crate::config::EngineConfig;
use crate::control::{ControlAuth, ControlService};
use crate::execution::Shared;
use crate::store::Store;
use herd_strategies::strategy::Strategy;
use herd_strategies::{grid, rangers};

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
/// Waits for a fresh wall-clock second first, so this run's client order ids
/// cannot repeat an earlier run's (see [`herd_strategies::strategy::IdGen`]).
pub async fn strategies_from_config(cfg: &EngineConfig) -> anyhow::Result<Vec<Box<dyn Strategy>>> {
    cfg.rangers
        .validate()
        .map_err(|e| anyhow::anyhow!("config: {e}"))?;
    cfg.grid
        .validate()
        .map_err(|e| anyhow::anyhow!("config: {e}"))?;
    let now = clock::fresh_run_start_ms().await;
    Ok(vec![
        Box::new(rangers::Rangers::new(cfg.rangers.clone(), &cfg.symbol, now)),
        Box::new(grid::Grid::new(cfg.grid.clone(), &cfg.symbol, now)),
    ])
}

/// Runs the engine until `shutdown` resolves, then drains (see
/// ARCHITECTURE.md, "Shutdown"): health NOT_SERVING at once, nothing new
/// placed for `drain_delay_ms`, then the control server stops accepting and
/// in-flight calls finish, the funding shutdown policy runs and the store
/// closes; an error when that takes longer than `shutdown_timeout_ms` (the
/// process exits non-zero). `on_ready` gets the control server's bound
/// address.
pub async fn run(
    cfg: EngineConfig,
    strategies: Vec<Box<dyn Strategy>>,
    on_ready: impl FnOnce(SocketAddr),
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    run_reloadable(cfg, strategies, None, on_ready, shutdown).await
}

/// [`run`] with the configuration's origin: SIGHUP, the `ReloadConfig`
/// RPC and a change of the file reload it (`reload`; docs/config.md).
/// Without an origin there is nothing to reload and `ReloadConfig`
/// answers FAILED_PRECONDITION.
pub async fn run_reloadable(
    cfg: EngineConfig,
    strategies: Vec<Box<dyn Strategy>>,
    origin: Option<reload::Origin>,
    on_ready: impl FnOnce(SocketAddr),
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    if !cfg.log_level.is_empty() {
        herd_proto::serving::set_log_level(&cfg.log_level).map_err(anyhow::Error::msg)?;
    }
    let store = open_store(&cfg).await?;
    store.event_ids().set_engine(&cfg.id, clock::now_ms());
    events::record(
        &store,
        clock::now_ms(),
        herd_proto::events::kind::ENGINE_STARTED,
        herd_proto::gateway::Severity::Notice,
        format!("engine {} started", cfg.id),
    )
    .await;
    let gateway = execution::gateway_client(&cfg.gateway_url, &cfg.gateway_token)?;
    let publisher = tokio::spawn(events::run_publisher(store.clone(), gateway.clone()));
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
    if let Some(origin) = origin {
        let path = origin.path.clone();
        let r = Arc::new(reload::Reloader::new(origin, cfg.clone(), clock::now_ms()));
        let _ = shared.reloader.set(r.clone());
        tasks.spawn(reload::run(shared.clone(), r, path, cfg.config_poll_ms));
    }
    // Runs until the end of the shutdown: fills of in-flight orders and of the
    // funding shutdown policy's orders are still journaled.
    let event_stream = tokio::spawn(shared.clone().run_event_stream());
    // Stops by itself once the engine drains (a tick in progress finishes).
    let mut ticks = tokio::spawn(shared.clone().run_ticks());
    tasks.spawn(regime::run(shared.clone()));
    tasks.spawn(risk::run(shared.clone()));

    let auth = ControlAuth::new(&cfg.control_token);
    let control =
        EngineServer::with_interceptor(ControlService::new(shared.clone()), move |r| auth.check(r));
    let health_service = <EngineServer<ControlService> as NamedService>::NAME;
    let (health, router) = serving::grpc_server(health_service).await?;
    let calls = serving::InFlight::new();
    let router = router.add_service(calls.wrap(control));
    let (incoming, local) = serving::bind(cfg.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.listen))?;
    tracing::info!(%local, engine = %cfg.id, gateway = %cfg.gateway_url, "engine control server listening");

    let admin_port = herd_proto::admin_http::start_with_readiness(
        cfg.http_listen,
        http::routes(shared.clone()),
        "engine",
        &mut tasks,
        shared.readiness.clone(),
    )
    .await?;
    tasks.spawn(health_follows_the_gateway(
        shared.clone(),
        health.clone(),
        health_service,
    ));
    on_ready(local);

    let serve = serving::Serve {
        name: "engine",
        router,
        incoming,
        health,
        health_service,
        admin: admin_port,
        drain: shared.drain.clone(),
        calls,
        times: serving::ShutdownTimes::from_ms(cfg.drain_delay_ms, cfg.shutdown_timeout_ms),
    };
    // Strategies and SubmitOrder place nothing new once `shared.drain`
    // started; the funding orchestrator is told here.
    let on_drain = || {
        if let Some(f) = shared.funding.get() {
            f.set_opening_paused(Some("engine shutting down".into()));
        }
    };
    // After the control server stopped: the tick in progress, then the
    // funding shutdown policy. `step` says which, should the deadline pass.
    let funding = shared.funding.get().cloned();
    let step = std::sync::Mutex::new("in-flight control calls");
    let set_step = |s: &'static str| *step.lock().unwrap_or_else(|p| p.into_inner()) = s;
    let after_server = async {
        set_step("the strategy tick in progress");
        let _ = (&mut ticks).await;
        if let Some(f) = funding {
            let policy = f.config().shutdown_policy.as_str();
            set_step("the funding shutdown policy");
            tracing::info!(policy, "funding orchestrator shutting down");
            f.shutdown().await;
        }
    };
    let stopped = serving::serve_with_drain(serve, shutdown, on_drain, after_server)
        .instrument(tracing::info_span!("shutdown", engine = %cfg.id))
        .await;
    tasks.abort_all();
    event_stream.abort();
    ticks.abort();
    publisher.abort();
    match stopped {
        Ok(Stopped::Drained { signaled }) => {
            events::record(
                &store,
                clock::now_ms(),
                herd_proto::events::kind::ENGINE_STOPPED,
                herd_proto::gateway::Severity::Notice,
                format!("engine {} stopped (drained after a signal)", cfg.id),
            )
            .await;
            // One last delivery, briefly: what does not go stays in the
            // outbox for the next start.
            let last = events::publish_once(&store, shared.gateway.clone());
            if !matches!(
                tokio::time::timeout(std::time::Duration::from_secs(2), last).await,
                Ok(Ok(_))
            ) {
                tracing::warn!("herd events left in the outbox for the next start");
            }
            // 4. Flush the store.
            store.close().await;
            tracing::info!(
                elapsed_ms = u64::try_from(signaled.elapsed().as_millis()).unwrap_or(u64::MAX),
                "engine stopped"
            );
            Ok(())
        }
        Ok(Stopped::DeadlinePassed { calls }) => {
            let waiting_for = *step.lock().unwrap_or_else(|p| p.into_inner());
            tracing::error!(
                shutdown_timeout_ms = cfg.shutdown_timeout_ms,
                waiting_for,
                calls = ?calls,
                "engine shutdown deadline passed with work still in flight; exiting anyway"
            );
            if tokio::time::timeout(std::time::Duration::from_secs(2), store.close())
                .await
                .is_err()
            {
                tracing::error!("engine store did not close within 2 s");
            }
            anyhow::bail!(
                "shutdown deadline of {} ms passed while waiting for {waiting_for} ({} call(s) in flight)",
                cfg.shutdown_timeout_ms,
                calls.len()
            )
        }
        Err(e) => {
            store.close().await;
            Err(e.into())
        }
    }
}

/// The engine's named gRPC health service (`herd.engine.v1.Engine`) reports
/// SERVING only while the gateway's event stream is connected, as `/readyz`
/// does: an engine that cannot reach its gateway waits (it does not pause)
/// and is not ready meanwhile. The overall status ("", which the Kubernetes
/// probes read) stays SERVING until the drain: an engine without a gateway
/// is alive, answers operators, and a restart would not bring the gateway
/// back. Once the drain starts, the drain owns health.
async fn health_follows_the_gateway(
    shared: Arc<Shared>,
    health: serving::HealthReporter,
    service: &'static str,
) {
    use serving::ServingStatus;
    let drain = shared.drain.clone();
    let mut connected = shared.gateway_reachability();
    loop {
        let up = *connected.borrow_and_update();
        if drain.is_draining() {
            return;
        }
        let status = if up {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        health.set_service_status(service, status).await;
        if drain.is_draining() {
            // The drain flipped health while this was being set.
            health
                .set_service_status(service, ServingStatus::NotServing)
                .await;
            return;
        }
        tokio::select! {
            () = drain.started() => return,
            changed = connected.changed() => if changed.is_err() { return },
        }
    }
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
