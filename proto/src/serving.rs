//! What every Herd gRPC server carries besides its own services: reflection
//! (v1 and v1alpha, with the health descriptor registered so grpcurl can
//! describe the health service too) and a listener with TCP_NODELAY set on
//! every accepted connection; the shutdown both services run
//! ([`serve_with_drain`], built on [`Drain`], [`InFlight`], [`ShutdownTimes`]).

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tonic::codegen::{Service, http};
use tonic::transport::Server;
use tonic::transport::server::{Router, TcpIncoming};
pub use tonic_health::ServingStatus;
pub use tonic_health::server::HealthReporter;

use crate::admin_http::AdminPort;

/// Reflection, v1.
pub fn reflection_v1() -> Result<
    tonic_reflection::server::v1::ServerReflectionServer<
        impl tonic_reflection::server::v1::ServerReflection,
    >,
    tonic_reflection::server::Error,
> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
}

/// Reflection, v1alpha (older grpcurl and tooling).
pub fn reflection_v1alpha() -> Result<
    tonic_reflection::server::v1alpha::ServerReflectionServer<
        impl tonic_reflection::server::v1alpha::ServerReflection,
    >,
    tonic_reflection::server::Error,
> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
}

/// Binds `addr` (port 0 picks a free one) and returns the listener with the
/// address it actually got. Without TCP_NODELAY on accepted connections a
/// small unary call's p99 is tens of milliseconds (Nagle vs delayed ACK).
pub async fn bind(addr: SocketAddr) -> std::io::Result<(TcpIncoming, SocketAddr)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((TcpIncoming::from(listener).with_nodelay(Some(true)), local))
}

/// Resolves when the process gets SIGTERM or SIGINT (Ctrl-C). The handlers
/// are installed when this is called (inside a runtime), not when the future
/// is first polled: a service polls it only once it serves, and a SIGTERM
/// that came after its readiness line but before that would otherwise kill
/// it undrained.
pub fn termination_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let handlers = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        );
        async move {
            match handlers {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Logs to stderr: JSON when `HERD_LOG_FORMAT=json`, else human-readable
/// (colours only on a terminal). `RUST_LOG` filters, default `info`.
pub fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("HERD_LOG_FORMAT").is_ok_and(|v| v == "json");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    // The filter sits behind a reload handle: `log_level` is a live field
    // of both services' configs (set_log_filter).
    if json {
        let builder = builder.json().with_filter_reloading();
        let handle = builder.reload_handle();
        let _ = LOG_FILTER.set(Box::new(move |f| {
            handle.reload(f).map_err(|e| e.to_string())
        }));
        builder.init();
    } else {
        let builder = builder.with_filter_reloading();
        let handle = builder.reload_handle();
        let _ = LOG_FILTER.set(Box::new(move |f| {
            handle.reload(f).map_err(|e| e.to_string())
        }));
        builder.init();
    }
}

type FilterSetter = Box<dyn Fn(tracing_subscriber::EnvFilter) -> Result<(), String> + Send + Sync>;

/// Replaces the log filter of [`init_tracing`]'s subscriber.
static LOG_FILTER: std::sync::OnceLock<FilterSetter> = std::sync::OnceLock::new();

/// The filter a `log_level` setting means: its directives ("info",
/// "warn,herd_gateway=debug"); empty = `RUST_LOG`, else "info".
fn log_filter(level: &str) -> Result<tracing_subscriber::EnvFilter, String> {
    use tracing_subscriber::EnvFilter;
    if level.trim().is_empty() {
        return Ok(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")));
    }
    EnvFilter::try_new(level.trim()).map_err(|e| format!("{:?} is not a log filter: {e}", level))
}

/// Checks a `log_level` setting (config validation).
pub fn check_log_level(level: &str) -> Result<(), String> {
    log_filter(level).map(|_| ())
}

/// Applies a `log_level` setting to the running subscriber (a no-op when
/// tracing was not set up by [`init_tracing`], as in tests).
pub fn set_log_level(level: &str) -> Result<(), String> {
    let filter = log_filter(level)?;
    match LOG_FILTER.get() {
        Some(set) => set(filter),
        None => Ok(()),
    }
}

/// Trailer metadata on a refusal by [`Drain::check_accepting`]: unlike other
/// UNAVAILABLE answers, the call was refused before it did anything, so its
/// outcome is known (nothing happened).
pub const DRAIN_REFUSAL_KEY: &str = crate::answer::REFUSED_KEY;

/// True when `status` is a draining server's refusal (see
/// [`DRAIN_REFUSAL_KEY`]): a definite "not done", not an unknown outcome.
pub fn is_drain_refusal(status: &tonic::Status) -> bool {
    status.code() == tonic::Code::Unavailable
        && crate::answer::classify(status) == crate::answer::Answer::Draining
}

/// A server's shutdown state, shared with its handlers and streams.
///
/// SIGTERM first makes the service [`Drain::start`] (it still serves, but
/// refuses new order-mutating work with UNAVAILABLE "shutting down"); after
/// the drain delay [`Drain::close`] ends the server streams so the server
/// can stop. Clones share the state.
#[derive(Debug, Clone)]
pub struct Drain {
    /// 0 serving, 1 draining, 2 closing.
    phase: Arc<tokio::sync::watch::Sender<u8>>,
}

impl Default for Drain {
    fn default() -> Drain {
        Drain::new()
    }
}

impl Drain {
    pub fn new() -> Drain {
        Drain {
            phase: Arc::new(tokio::sync::watch::channel(0).0),
        }
    }

    fn advance(&self, to: u8) {
        self.phase.send_if_modified(|p| {
            let changed = *p < to;
            *p = (*p).max(to);
            changed
        });
    }

    async fn reached(&self, phase: u8) {
        let mut rx = self.phase.subscribe();
        // Err only if the sender is gone, which cannot happen while `self` lives.
        let _ = rx.wait_for(|p| *p >= phase).await;
    }

    /// From now on new order-mutating work is refused.
    pub fn start(&self) {
        self.advance(1);
    }

    /// True once the shutdown started.
    pub fn is_draining(&self) -> bool {
        *self.phase.borrow() >= 1
    }

    /// Resolves once [`Drain::start`] was called (at once if it was).
    pub async fn started(&self) {
        self.reached(1).await;
    }

    /// Ok while serving; UNAVAILABLE "shutting down" once draining (the
    /// caller may retry elsewhere or after the restart).
    pub fn check_accepting(&self) -> Result<(), tonic::Status> {
        if self.is_draining() {
            let mut st = tonic::Status::unavailable(
                "shutting down: no new orders are accepted; retry after the restart",
            );
            st.metadata_mut().insert(
                DRAIN_REFUSAL_KEY,
                tonic::metadata::MetadataValue::from_static(crate::answer::SHUTTING_DOWN),
            );
            Err(st)
        } else {
            Ok(())
        }
    }

    /// Ends the server streams (they finish cleanly; clients reconnect and
    /// resume). Implies [`Drain::start`].
    pub fn close(&self) {
        self.advance(2);
    }

    /// Resolves once [`Drain::close`] was called (at once if it was).
    pub async fn closed(&self) {
        self.reached(2).await;
    }
}

/// The gRPC calls a server is running, by method, so a shutdown that runs
/// out of time can say what it was still waiting for. Wrap each service with
/// [`InFlight::wrap`]; clones share the table.
///
/// A call counts from its request until its handler answered (for a server
/// stream: until the stream was set up; open streams are the service's to
/// count).
#[derive(Debug, Clone, Default)]
pub struct InFlight {
    calls: Arc<Mutex<BTreeMap<u64, (String, Instant)>>>,
    next: Arc<AtomicU64>,
}

impl InFlight {
    pub fn new() -> InFlight {
        InFlight::default()
    }

    /// `service` with its calls counted here.
    pub fn wrap<S>(&self, service: S) -> Tracked<S> {
        Tracked {
            inner: service,
            table: self.clone(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, (String, Instant)>> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn enter(&self, method: &str) -> CallGuard {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(id, (method.to_string(), Instant::now()));
        CallGuard {
            table: self.clone(),
            id,
        }
    }

    /// Calls in progress.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// "method (running N ms)" for each call in progress, oldest first.
    pub fn describe(&self) -> Vec<String> {
        self.lock()
            .values()
            .map(|(method, since)| format!("{method} (running {} ms)", since.elapsed().as_millis()))
            .collect()
    }
}

struct CallGuard {
    table: InFlight,
    id: u64,
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        self.table.lock().remove(&self.id);
    }
}

/// A service whose calls are counted in an [`InFlight`] table.
#[derive(Debug, Clone)]
pub struct Tracked<S> {
    inner: S,
    table: InFlight,
}

impl<S: tonic::server::NamedService> tonic::server::NamedService for Tracked<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> Service<http::Request<B>> for Tracked<S>
where
    S: Service<http::Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let guard = self.table.enter(req.uri().path());
        let fut = self.inner.call(req);
        Box::pin(async move {
            let out = fut.await;
            drop(guard);
            out
        })
    }
}

/// How a service stops on SIGTERM: health NOT_SERVING at once, serve on for
/// `drain_delay` (refusing new order-mutating work), then stop accepting and
/// let in-flight calls finish; `timeout` (from the signal) is the hard limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownTimes {
    pub drain_delay: Duration,
    pub timeout: Duration,
}

impl ShutdownTimes {
    pub fn from_ms(drain_delay_ms: u64, shutdown_timeout_ms: u64) -> ShutdownTimes {
        ShutdownTimes {
            drain_delay: Duration::from_millis(drain_delay_ms),
            timeout: Duration::from_millis(shutdown_timeout_ms),
        }
    }

    /// Checks the two config values (`drain_delay_ms`, `shutdown_timeout_ms`):
    /// the delay must leave time to finish in-flight calls.
    pub fn validate(drain_delay_ms: u64, shutdown_timeout_ms: u64) -> Result<(), String> {
        if shutdown_timeout_ms == 0 {
            return Err("shutdown_timeout_ms must be positive".into());
        }
        if drain_delay_ms >= shutdown_timeout_ms {
            return Err(format!(
                "drain_delay_ms ({drain_delay_ms}) must be less than shutdown_timeout_ms \
                 ({shutdown_timeout_ms}): the timeout counts from the signal and includes the delay"
            ));
        }
        Ok(())
    }
}

/// A gRPC server with what every Herd server carries: health (SERVING for
/// "" and `health_service`), reflection v1 and v1alpha, TCP_NODELAY. Add
/// the service's own services to the router, wrapped with
/// [`InFlight::wrap`], and hand both to [`serve_with_drain`].
pub async fn grpc_server(
    health_service: &'static str,
) -> Result<(HealthReporter, Router), tonic_reflection::server::Error> {
    let (health, health_svc) = tonic_health::server::health_reporter();
    health
        .set_service_status(health_service, ServingStatus::Serving)
        .await;
    let router = Server::builder()
        .tcp_nodelay(true)
        .add_service(health_svc)
        .add_service(reflection_v1()?)
        .add_service(reflection_v1alpha()?);
    Ok((health, router))
}

/// What [`serve_with_drain`] serves and drains.
pub struct Serve {
    /// "gateway" or "engine": the log lines read "{name} draining",
    /// "{name} closing".
    pub name: &'static str,
    /// The gRPC services, from [`grpc_server`].
    pub router: Router,
    /// The listener, from [`bind`].
    pub incoming: TcpIncoming,
    /// The reporter [`grpc_server`] returned.
    pub health: HealthReporter,
    /// The named service whose health flips to NOT_SERVING (with "").
    pub health_service: &'static str,
    /// The admin port: `/readyz` answers 503 from the signal on; it stops
    /// once the gRPC server stopped (or the deadline passed).
    pub admin: AdminPort,
    /// The service's drain state, shared with its handlers.
    pub drain: Drain,
    /// The table the router's services were wrapped with.
    pub calls: InFlight,
    pub times: ShutdownTimes,
}

impl std::fmt::Debug for Serve {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Serve")
            .field("name", &self.name)
            .field("health_service", &self.health_service)
            .field("admin", &self.admin)
            .field("times", &self.times)
            .finish_non_exhaustive()
    }
}

/// How [`serve_with_drain`] ended after the shutdown signal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stopped {
    /// The server and the service's own finishing work were done before the
    /// deadline; `signaled` is when the signal came.
    Drained { signaled: tokio::time::Instant },
    /// The deadline passed first; `calls` were still in flight
    /// ([`InFlight::describe`]). The service logs what else it was waiting
    /// for and exits non-zero.
    DeadlinePassed { calls: Vec<String> },
}

/// The gRPC server failed, or stopped without being asked to.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{0} server failed: {1}")]
    Failed(&'static str, tonic::transport::Error),
    #[error("{0} server task: {1}")]
    Task(&'static str, tokio::task::JoinError),
    #[error("{0} server stopped without a shutdown signal")]
    StoppedUnasked(&'static str),
}

/// Serves `serve.router` until `shutdown` resolves, then drains (see
/// ARCHITECTURE.md, "Shutdown"):
///
/// 1. `/readyz` and `/healthz` answer 503, gRPC health reports NOT_SERVING
///    for "" and the named service;
/// 2. [`Drain::start`], then `on_drain` (the service's own refusals); the
///    server serves on for the drain delay;
/// 3. [`Drain::close`] (server streams end), the listener closes and the
///    calls in flight finish; then `after_server` runs (the service's own
///    work to finish, e.g. the engine's tick in progress);
/// 4. the admin port stops.
///
/// Steps 2 and 3 must be done within `serve.times.timeout` of the signal,
/// else [`Stopped::DeadlinePassed`]. Flushing state and the exit code are
/// the caller's. An error when the server fails, or stops before the signal
/// (the admin port is stopped then too).
pub async fn serve_with_drain(
    serve: Serve,
    shutdown: impl Future<Output = ()>,
    on_drain: impl FnOnce(),
    after_server: impl Future<Output = ()>,
) -> Result<Stopped, ServeError> {
    let Serve {
        name,
        router,
        incoming,
        health,
        health_service,
        mut admin,
        drain,
        calls,
        times,
    } = serve;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let mut server = tokio::spawn(router.serve_with_incoming_shutdown(incoming, async move {
        let _ = stop_rx.await;
    }));

    // Serve until the signal (or until the server fails on its own).
    tokio::select! {
        joined = &mut server => {
            admin.stop();
            joined
                .map_err(|e| ServeError::Task(name, e))?
                .map_err(|e| ServeError::Failed(name, e))?;
            return Err(ServeError::StoppedUnasked(name));
        }
        () = shutdown => {}
    }
    let signaled = tokio::time::Instant::now();
    let deadline = signaled + times.timeout;

    // 1. Tell probes and clients first.
    admin.set_draining();
    health
        .set_service_status(health_service, ServingStatus::NotServing)
        .await;
    health
        .set_service_status("", ServingStatus::NotServing)
        .await;
    // 2. Serve on for the drain delay, refusing new order-mutating work.
    drain.start();
    on_drain();
    tracing::info!(
        drain_delay_ms = millis(times.drain_delay),
        shutdown_timeout_ms = millis(times.timeout),
        in_flight = calls.len(),
        "{name} draining: health NOT_SERVING, no new orders"
    );
    tokio::time::sleep_until((signaled + times.drain_delay).min(deadline)).await;

    // 3. End the server streams, stop accepting, let in-flight calls finish.
    drain.close();
    let _ = stop_tx.send(());
    tracing::info!(
        in_flight = calls.len(),
        calls = ?calls.describe(),
        "{name} closing: no new connections; waiting for in-flight calls"
    );
    let finish = async {
        let served = (&mut server).await;
        after_server.await;
        served
    };
    let finished = tokio::time::timeout_at(deadline, finish).await;
    admin.stop();
    match finished {
        Ok(served) => {
            served
                .map_err(|e| ServeError::Task(name, e))?
                .map_err(|e| ServeError::Failed(name, e))?;
            Ok(Stopped::Drained { signaled })
        }
        Err(_) => {
            let calls = calls.describe();
            server.abort();
            Ok(Stopped::DeadlinePassed { calls })
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

    #[test]
    fn a_drain_refusal_is_told_apart_from_other_unavailable_answers() {
        let drain = Drain::new();
        assert!(drain.check_accepting().is_ok());
        drain.start();
        let Err(refused) = drain.check_accepting() else {
            unreachable!("a draining server accepts nothing new")
        };
        assert_eq!(refused.code(), tonic::Code::Unavailable);
        assert!(refused.message().starts_with("shutting down"));
        assert!(is_drain_refusal(&refused));
        assert!(!is_drain_refusal(&tonic::Status::unavailable("venue down")));
    }

    #[tokio::test]
    async fn close_implies_start_and_wakes_waiters() {
        let drain = Drain::new();
        let waiter = tokio::spawn({
            let d = drain.clone();
            async move { d.closed().await }
        });
        assert!(!drain.is_draining());
        drain.close();
        assert!(drain.is_draining());
        drain.started().await;
        waiter.await.ok();
        // Idempotent, never goes back.
        drain.start();
        drain.closed().await;
    }

    /// A server from [`grpc_server`] on a free port with an admin port; its
    /// gRPC url, admin address and drain state.
    async fn harness(
        tasks: &mut tokio::task::JoinSet<()>,
        times: ShutdownTimes,
    ) -> (String, SocketAddr, Drain, Serve) {
        let (health, router) = grpc_server("test.Svc").await.unwrap();
        let (incoming, local) = bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap();
        let admin = crate::admin_http::start(
            Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            axum::Router::new(),
            "test",
            tasks,
        )
        .await
        .unwrap();
        let admin_addr = admin.local.unwrap();
        let drain = Drain::new();
        let serve = Serve {
            name: "test",
            router,
            incoming,
            health,
            health_service: "test.Svc",
            admin,
            drain: drain.clone(),
            calls: InFlight::new(),
            times,
        };
        (format!("http://{local}"), admin_addr, drain, serve)
    }

    async fn readyz(admin: SocketAddr) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(admin).await.unwrap();
        s.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    /// A grpc.health.v1 watch of `service`, once it reported SERVING.
    async fn watch_serving(url: &str, service: &str) -> tonic::Streaming<HealthCheckResponse> {
        let channel = tonic::transport::Channel::from_shared(url.to_string())
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut watch = HealthClient::new(channel)
            .watch(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        let first = watch.message().await.unwrap().unwrap();
        assert_eq!(first.status, ServingStatus::Serving as i32, "{service:?}");
        watch
    }

    #[tokio::test]
    async fn serve_with_drain_flips_health_then_drains_and_stops() {
        let mut tasks = tokio::task::JoinSet::new();
        let (url, admin, drain, serve) =
            harness(&mut tasks, ShutdownTimes::from_ms(20, 5_000)).await;
        let (signal, signaled) = tokio::sync::oneshot::channel::<()>();
        let (on_drain_tx, on_drain_rx) = tokio::sync::oneshot::channel::<bool>();
        let d = drain.clone();
        let run = tokio::spawn(serve_with_drain(
            serve,
            async move {
                let _ = signaled.await;
            },
            move || {
                let _ = on_drain_tx.send(d.is_draining());
            },
            async {},
        ));
        assert!(readyz(admin).await.starts_with("HTTP/1.1 200"));
        let mut named = watch_serving(&url, "test.Svc").await;
        let mut overall = watch_serving(&url, "").await;

        let _ = signal.send(());
        for watch in [&mut named, &mut overall] {
            let next = watch.message().await.unwrap().unwrap();
            assert_eq!(next.status, ServingStatus::NotServing as i32);
        }
        assert!(
            on_drain_rx.await.unwrap(),
            "on_drain runs after Drain::start"
        );
        // The open watches would hold the server; a client leaves.
        drop((named, overall));
        let stopped = run.await.unwrap().unwrap();
        assert!(matches!(stopped, Stopped::Drained { .. }), "{stopped:?}");
        drain.closed().await;
        // The admin port was told to stop with the server.
        while tasks.join_next().await.is_some() {}
        assert!(tokio::net::TcpStream::connect(admin).await.is_err());
    }

    #[tokio::test]
    async fn serve_with_drain_reports_a_deadline_passed() {
        let mut tasks = tokio::task::JoinSet::new();
        let (_, admin, drain, serve) = harness(&mut tasks, ShutdownTimes::from_ms(10, 200)).await;
        let t0 = tokio::time::Instant::now();
        let stopped = serve_with_drain(serve, async {}, || {}, std::future::pending::<()>())
            .await
            .unwrap();
        assert_eq!(stopped, Stopped::DeadlinePassed { calls: Vec::new() });
        assert!(t0.elapsed() >= Duration::from_millis(200));
        assert!(drain.is_draining());
        while tasks.join_next().await.is_some() {}
        assert!(tokio::net::TcpStream::connect(admin).await.is_err());
    }

    #[test]
    fn the_drain_delay_must_leave_time_before_the_deadline() {
        assert!(ShutdownTimes::validate(2_000, 30_000).is_ok());
        assert!(ShutdownTimes::validate(0, 1).is_ok());
        let e = ShutdownTimes::validate(30_000, 30_000).unwrap_err();
        assert!(e.contains("drain_delay_ms"), "{e}");
        assert!(ShutdownTimes::validate(0, 0).is_err());
    }
}
