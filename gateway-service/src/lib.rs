//! Herd's exchange gateway.
//!
//! The gateway owns the venue's API key: it signs every call, keeps the
//! nonce, spends the rate budget across engines, polls every open order and
//! streams each engine its own order events. Engines authenticate with a
//! bearer token and only ever see their own orders.
//!
//! Map: [`config`] (typed config), [`auth`] (tokens -> identity),
//! [`service`] (the gRPC handlers and the shared [`service::Core`]),
//! [`registry`] (ownership, last-known states, per-engine event logs),
//! [`poller`] (venue polling -> events), [`dms`] (the venue's dead man's
//! switch), [`convert`] (wire <-> venue types), [`lease`] (one active
//! gateway per key: the Kubernetes Lease and its fence, or the state lock).

pub mod auth;
pub mod config;
pub mod convert;
pub mod dms;
pub mod events;
pub mod fair;
pub mod fills;
pub mod herd_http;
pub mod http;
pub mod keycheck;
pub mod lease;
pub mod ledger_api;
pub mod market;
pub mod metrics;
pub mod pnl;
pub mod poller;
pub mod recorder;
pub mod recovery;
pub mod registry;
pub mod reload;
pub mod risk;
pub mod risk_store;
pub mod service;
pub mod sinks;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use herd_paper::PaperVenue;
use herd_proto::gateway::gateway_admin_server::GatewayAdminServer;
use herd_proto::gateway::gateway_server::GatewayServer;
use herd_proto::serving::{self, Stopped};
use herd_venue::{Clock, SystemClock, Venue};
use tonic::server::NamedService;

use crate::auth::Auth;
use crate::config::{GatewayConfig, VenueKind};
use crate::registry::Registry;
use crate::service::{AdminService, Core, GatewayService};

/// A new id for this process's life: events carry it so an engine can tell
/// a restarted gateway from the one it talked to before.
fn new_incarnation(clock: &dyn Clock) -> String {
    format!("{:x}-{:x}", clock.now_ms(), std::process::id())
}

/// Runs the gateway until `shutdown` resolves, then drains (see
/// ARCHITECTURE.md, "Shutdown"): health NOT_SERVING at once, new orders
/// refused for `drain_delay_ms`, then event streams end, the listener closes
/// and in-flight calls finish; an error when that takes longer than
/// `shutdown_timeout_ms` (the process exits non-zero). `on_ready` gets the
/// address actually bound (useful with port 0).
pub async fn run(
    cfg: GatewayConfig,
    on_ready: impl FnOnce(SocketAddr),
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    run_reloadable(cfg, None, on_ready, shutdown).await
}

/// [`run`] with the configuration's origin: SIGHUP, the `ReloadConfig`
/// RPC and a change of the file reload it (`reload`; docs/config.md).
/// Without an origin (a gateway run from code) there is nothing to reload
/// and `ReloadConfig` answers FAILED_PRECONDITION.
pub async fn run_reloadable(
    mut cfg: GatewayConfig,
    origin: Option<reload::Origin>,
    on_ready: impl FnOnce(SocketAddr),
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // `load` validates too; a config built in code must pass the same rules
    // (above all: no engine's order prefix begins another's).
    cfg.validate()?;
    if !cfg.log_level.is_empty() {
        herd_proto::serving::set_log_level(&cfg.log_level).map_err(anyhow::Error::msg)?;
    }
    // One active gateway per key (lease.rs): with [lease], a standby until
    // this process holds the Lease; else the state_dir lock. Nothing before
    // this opens state or builds the venue, and every venue call below goes
    // through the hold's fence. A standby stops on the signal too: it opened
    // nothing.
    let mut shutdown = Box::pin(shutdown);
    let hold = tokio::select! {
        held = lease::hold(&mut cfg) => held?,
        () = &mut shutdown => {
            tracing::info!("gateway stopped before it was active");
            return Ok(());
        }
    };
    // Everything from here to serving is the start: a failure in it (a
    // port taken, a state file unreadable, the key refused) gives the Lease
    // back at once, so a standby need not wait for it to expire.
    let started = async {
        if cfg.admin_token.is_none() {
            tracing::warn!(
                "no admin_token configured: the GatewayAdmin service refuses every call \
                 (set admin_token or {})",
                config::env::ADMIN_TOKEN
            );
        }
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let (venue, paper): (Arc<dyn Venue>, Option<PaperVenue>) = match cfg.venue {
            VenueKind::Paper => {
                let p = match &cfg.paper.state_file {
                    Some(path) => PaperVenue::load_or_new(&cfg.paper.exchange, clock.clone(), path)?,
                    None => PaperVenue::new(&cfg.paper.exchange, clock.clone()),
                }
                .with_latency(Duration::from_millis(cfg.paper.latency_ms));
                (Arc::new(p.clone()), Some(p))
            }
            VenueKind::Kraken => {
                let k = herd_kraken::KrakenVenue::new(&cfg.kraken)
                    .context("cannot start the Kraken venue")?;
                (Arc::new(k), None)
            }
            VenueKind::Bybit => {
                let v = herd_bybit::BybitVenue::new(&cfg.bybit)
                    .map_err(|e| anyhow::anyhow!("bybit venue: {e}"))?;
                (Arc::new(v), None)
            }
        };
        let metrics = Arc::new(metrics::GatewayMetrics::new(
            cfg.engines.iter().map(|e| e.id.as_str()),
        ));
        let incarnation = new_incarnation(clock.as_ref());
        let sink_stats = sinks::stats_for(&cfg.events.sinks, None);
        let routes = sinks::routes_for(&cfg.events.sinks, &sink_stats);
        let event_log =
            events::EventLog::open(cfg.state_dir.as_deref(), &cfg.events, &incarnation, routes)
                .await
                .context("opening the herd event log")?;
        let http = reqwest::Client::builder()
            .build()
            .context("building the sinks' HTTP client")?;
        // One delivery task per sink; a reload restarts the changed ones.
        let sink_workers = Arc::new(sinks::Supervisor::new(event_log.clone(), http));
        sink_workers.apply(&cfg.events.sinks, &sink_stats);
        let emitter = events::Emitter::new(event_log.clone());
        events::gateway_started(&emitter, venue.name(), &incarnation, cfg.engines.len());
        let venue = hold.fence_venue(metrics::MeteredVenue::wrap_with_events(
            venue,
            metrics.clone(),
            emitter.clone(),
        ));
        // Before anything else talks to the venue: what may this key do?
        let key_state = Arc::new(keycheck::KeyState::default());
        key_state.set_events(emitter.clone());
        let checked = keycheck::check_at_start(venue.as_ref(), &cfg.key_check, &key_state, || {
            clock.now_ms()
        })
        .await;
        if let Err(e) = &checked {
            events::gateway_refused(&emitter, e);
            event_log.flush().await;
        }
        checked.context("the API key failed the start-up check")?;
        keycheck::check_clock(venue.as_ref(), &cfg.key_check, &key_state, clock.now_ms()).await;
        let engines: Vec<(String, String)> = cfg
            .engines
            .iter()
            .map(|e| (e.id.clone(), e.prefix()))
            .collect();
        let registry = Arc::new(Registry::new(
            &engines,
            incarnation.clone(),
            cfg.event_retention,
        ));
        let userrefs: HashMap<String, (i32, i32)> = cfg
            .engines
            .iter()
            .map(|e| (e.id.clone(), (e.userref_min, e.userref_max)))
            .collect();
        let fair = fair::FairQueue::new(
            cfg.venue_slots,
            cfg.engine_queue_limit,
            &reload::fair_weights(&cfg),
        );
        let mut core = Core::new(
            venue.clone(),
            paper.clone(),
            registry.clone(),
            clock,
            userrefs,
        )
        .with_fair_queue(fair)
        .with_metrics(metrics)
        .with_risk(&cfg.risk)
        .with_key_state(key_state.clone())
        .with_events(emitter.clone())
        .with_sinks(cfg.events.sinks.clone(), sink_stats);
        if let Some(dir) = &cfg.state_dir {
            let store = risk_store::RiskStore::open(dir).await?;
            store
                .restore(&core.risk)
                .await
                .with_context(|| format!("restoring the risk state from {}", dir.display()))?;
            core.risk.persist_days_to(store.sender());
            core = core.with_risk_store(store);
        }
        let ledger = fills::Ledger::open(cfg.state_dir.as_deref(), core.clock.clone())
            .await
            .context("opening the fills ledger")?;
        core = core.with_ledger(Arc::new(ledger));
        if let Some(rec) = &cfg.record {
            let recorder = Arc::new(recorder::Recorder::open(&rec.path)?);
            tracing::info!(path = %rec.path.display(), "recording tickers, candles and fills");
            core.registry.set_recorder(recorder.clone());
            core.market.set_recorder(recorder);
        }
        let reloader = origin.map(|origin| {
            let path = origin.path.clone();
            let r = Arc::new(reload::Reloader::new(
                origin,
                cfg.clone(),
                sink_workers.clone(),
                core.clock.now_ms(),
            ));
            (r, path)
        });
        if let Some((r, _)) = &reloader {
            core = core.with_reloader(r.clone());
        }
        let core = Arc::new(core);
        let mut tasks = tokio::task::JoinSet::new();
        if let Some((r, path)) = reloader {
            tasks.spawn(reload::run(core.clone(), r, path, cfg.config_poll_ms));
        }
        tasks.spawn(core.clone().run_kills());
        tasks.spawn(events::watch_budget(core.clone()));
        tasks.spawn(events::watch_engines(
            core.clone(),
            cfg.events.engine_gone_after_ms,
        ));

        core.registry.mark_all_gone_since(core.clock.now_ms());
        tasks.spawn(recovery::run_adoption(core.clone()));
        tasks.spawn(recovery::run_dead_man(
            core.clone(),
            cfg.engines
                .iter()
                .map(|e| (e.id.clone(), e.cancel_on_disconnect_ms))
                .collect(),
        ));
        if let Some(p) = paper.clone() {
            tasks.spawn(p.drive(Duration::from_millis(cfg.paper.step_ms)));
        }
        if let (Some(p), Some(path)) = (paper.clone(), cfg.paper.state_file.clone()) {
            tasks.spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(2));
                loop {
                    tick.tick().await;
                    // Serializing and fsyncing megabytes of candles blocks: not
                    // on a runtime thread.
                    let (p, path) = (p.clone(), path.clone());
                    match tokio::task::spawn_blocking(move || p.save(&path)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => tracing::error!(error = %e, "paper state not saved"),
                        Err(e) => tracing::error!(error = %e, "paper state save did not finish"),
                    }
                }
            });
        }
        tasks.spawn(keycheck::run(
            venue.clone(),
            cfg.key_check.clone(),
            key_state,
            core.clock.clone(),
        ));
        tasks.spawn(poller::run(
            core.clone(),
            Duration::from_millis(cfg.poll_interval_ms),
            cfg.pending_timeout_ms.max(venue.min_pending_timeout_ms()),
        ));
        if cfg.dead_mans_switch.active_on(cfg.venue) {
            tasks.spawn(dms::run(core.clone(), cfg.dead_mans_switch.clone()));
        }

        let auth = Auth::from_config(&cfg).with_events(emitter.clone());
        let engine_auth = auth.clone();
        let gateway = GatewayServer::with_interceptor(GatewayService::new(core.clone()), move |r| {
            engine_auth.engine(r)
        });
        let admin = GatewayAdminServer::with_interceptor(AdminService::new(core.clone()), move |r| {
            auth.admin(r)
        });
        let health_service = <GatewayServer<GatewayService> as NamedService>::NAME;
        let (health, router) = serving::grpc_server(health_service).await?;
        let calls = serving::InFlight::new();
        let router = router
            .add_service(calls.wrap(gateway))
            .add_service(calls.wrap(admin));

        let (incoming, local) = serving::bind(cfg.listen)
            .await
            .with_context(|| format!("cannot listen on {}", cfg.listen))?;
        tracing::info!(%local, venue = venue.name(), engines = engines.len(), incarnation = registry.incarnation(), "gateway listening");

        let admin_port = herd_proto::admin_http::start(
            cfg.http_listen,
            http::routes(core.clone()).merge(herd_http::routes(herd_http::HerdState::new(
                core.clone(),
                &cfg,
            ))),
            "gateway",
            &mut tasks,
        )
        .await?;
        let serve = serving::Serve {
            name: "gateway",
            router,
            incoming,
            health,
            health_service,
            admin: admin_port,
            drain: core.drain.clone(),
            calls,
            times: serving::ShutdownTimes::from_ms(cfg.drain_delay_ms, cfg.shutdown_timeout_ms),
        };
        Ok::<_, anyhow::Error>((core, tasks, event_log, sink_workers, emitter, paper, serve, local))
    }
    .await;
    let (core, mut tasks, event_log, sink_workers, emitter, paper, serve, local) = match started {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "gateway start failed; releasing the Lease");
            hold.release().await;
            return Err(e);
        }
    };
    on_ready(local);
    // Reads, cancels and event streams go on during the drain; Drain alone
    // refuses new orders, so nothing gateway-specific happens at its start
    // or after the server stopped.
    // Losing the Lease drains like a signal (health NOT_SERVING at once; the
    // fence already stopped every venue call) and exits non-zero below.
    let shutdown = hold.shutdown_or_lost(shutdown);
    let stopped = serving::serve_with_drain(serve, shutdown, || {}, async {}).await;
    tasks.abort_all();
    let signaled = match stopped? {
        Stopped::Drained { signaled } => signaled,
        Stopped::DeadlinePassed { calls } => {
            let submits: Vec<String> = core
                .in_flight
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .cloned()
                .collect();
            tracing::error!(
                shutdown_timeout_ms = cfg.shutdown_timeout_ms,
                calls = ?calls,
                venue_submits = ?submits,
                "gateway shutdown deadline passed with calls still in flight; exiting anyway"
            );
            save_paper(paper.as_ref(), cfg.paper.state_file.as_deref());
            anyhow::bail!(
                "shutdown deadline of {} ms passed with {} call(s) in flight",
                cfg.shutdown_timeout_ms,
                calls.len().max(submits.len())
            );
        }
    };
    // 4. Flush state.
    let lost = hold.lost_reason();
    emitter.emit(emitter.make(
        herd_proto::events::kind::GATEWAY_STOPPED,
        herd_proto::gateway::Severity::Notice,
        match &lost {
            None => "gateway stopped (drained after a signal)".to_string(),
            Some(why) => format!("gateway stopped: it lost its Lease ({why})"),
        },
    ));
    event_log.flush().await;
    sink_workers.stop_all();
    event_log.close().await;
    if let Some(store) = &core.risk_store {
        store.close().await;
    }
    if let Some(ledger) = &core.ledger {
        ledger.close().await;
    }
    if let (Some(p), Some(path)) = (paper, cfg.paper.state_file.as_ref()) {
        p.save(path).context("saving the paper state at shutdown")?;
    }
    if let Some(why) = lost {
        anyhow::bail!("stopped: this gateway lost its Lease and was fenced ({why})");
    }
    hold.release().await;
    tracing::info!(
        elapsed_ms = u64::try_from(signaled.elapsed().as_millis()).unwrap_or(u64::MAX),
        "gateway stopped"
    );
    Ok(())
}

/// Best effort on the way out after the deadline: the error is logged.
fn save_paper(paper: Option<&PaperVenue>, path: Option<&std::path::Path>) {
    if let (Some(p), Some(path)) = (paper, path)
        && let Err(e) = p.save(path)
    {
        tracing::error!(error = %e, "paper state not saved at shutdown");
    }
}

/// Logs as JSON when `HERD_LOG_FORMAT=json`, else human-readable, to stderr.
pub fn init_tracing() {
    herd_proto::serving::init_tracing();
}
