//! The HTTP side of the simulator: a hyper 1 HTTP/1.1 server (keep-alive,
//! TCP_NODELAY) that routes `/0/public/*` and `/0/private/*` to the
//! [`Sim`], applies injected faults, and serves the admin endpoints under
//! `/sim/`.
//!
//! Admin endpoints (no authentication; the simulator listens on loopback):
//! - `GET /sim/stats`: counters, rate-limit levels, lockout, DMS deadline
//! - `GET /sim/orders`: every order (txid, cl_ord_id, userref, status, ...)
//! - `GET /sim/trades`: every trade as booked (id, txid, pair, side, price, vol, fee, ms)
//! - `GET /sim/balances`: each asset's total and free balance
//! - `POST /sim/faults` `{"rules": [...]}` (see [`super::faults`]); `DELETE` clears
//! - `POST /sim/price` `{"pair": "XDGUSD", "price": "0.13"}`: one market trade
//! - `POST /sim/step`: one step of every price path
//! - `POST /sim/lockout` `{"ms": 3000}`: a temporary lockout of the key
//! - `POST /sim/status` `{"status": "cancel_only"}`: SystemStatus and its effect
//! - `GET /sim/requests`: the last [`REQUEST_LOG`] venue requests as they
//!   arrived: `{"ms", "method", "private", "user_agent"}` (the user agent
//!   tells two gateways on one key apart: `[kraken] user_agent`)

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use super::exchange::{Now, Sim, SimConfig};
use super::faults::{FaultKind, FaultSet};
use super::wire::{Form, err};

/// Largest request body accepted.
const MAX_BODY: usize = 1 << 20;
/// How many venue requests `GET /sim/requests` keeps (the newest).
pub const REQUEST_LOG: usize = 50_000;
/// How often the dead man's switch and the price paths are looked at.
const TICK: Duration = Duration::from_millis(50);

/// State shared by every connection.
pub struct Shared {
    sim: Mutex<Sim>,
    /// Where the durable state goes (`--state FILE`): written (temp file,
    /// fsync, rename, fsync of the directory) after every private request
    /// and every admin change, before the answer leaves, under the lock that
    /// orders the changes; loaded on start.
    state_file: Option<PathBuf>,
    faults: Mutex<FaultSet>,
    /// Every venue request on arrival (newest last), for `GET /sim/requests`.
    requests: Mutex<std::collections::VecDeque<Value>>,
    origin: Instant,
    skew_ms: i64,
}

impl Shared {
    pub fn new(cfg: SimConfig) -> Result<Shared, String> {
        let origin = Instant::now();
        let skew_ms = cfg.clock_skew_ms;
        let now = Now {
            ms: wall_ms() + skew_ms,
            s: 0.0,
        };
        Ok(Shared {
            skew_ms,
            sim: Mutex::new(Sim::new(cfg, now)?),
            state_file: None,
            faults: Mutex::new(FaultSet::default()),
            requests: Mutex::new(std::collections::VecDeque::new()),
            origin,
        })
    }

    /// Like [`Shared::new`], keeping the state in `path`: a state already
    /// there is loaded (a restart continues the same account, orders, trades
    /// and nonce); a missing file starts fresh and is written at once. The
    /// error names the file and what is wrong with it.
    pub fn with_state_file(cfg: SimConfig, path: &Path) -> Result<Shared, String> {
        let mut shared = Shared::new(cfg)?;
        match std::fs::read(path) {
            Ok(bytes) => shared
                .sim()
                .restore_state(&bytes)
                .map_err(|e| format!("state file {}: {e}", path.display()))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("state file {}: {e}", path.display())),
        }
        shared.state_file = Some(path.to_path_buf());
        {
            let sim = shared.sim();
            shared
                .persist(&sim)
                .map_err(|e| format!("state file {}: {e}", path.display()))?;
        }
        Ok(shared)
    }

    /// Writes `sim` to the state file (if any) durably: a temp file beside
    /// it, fsync, rename over it, fsync of the directory.
    fn persist(&self, sim: &Sim) -> io::Result<()> {
        let Some(path) = &self.state_file else {
            return Ok(());
        };
        let bytes = sim.state_json().map_err(io::Error::other)?;
        crate::state_file::write_atomic(path, &bytes)
    }

    /// [`Shared::persist`] for a handler: a failed write is logged and
    /// turns the answer into a 500 (the client must not take as done what
    /// a restart would forget).
    /// `Some` is the answer to send instead.
    fn persisted(&self, sim: &Sim) -> Option<Reply> {
        self.persist(sim).err().map(|e| {
            eprintln!("kraken-sim: cannot write the state file: {e}");
            html_reply(500)
        })
    }

    fn now(&self) -> Now {
        Now {
            ms: wall_ms() + self.skew_ms,
            s: self.origin.elapsed().as_secs_f64(),
        }
    }

    /// The simulated exchange (tests in the same process may look inside).
    pub fn sim(&self) -> MutexGuard<'_, Sim> {
        self.sim.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn faults(&self) -> MutexGuard<'_, FaultSet> {
        self.faults.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn log_request(&self, method: &str, private: bool, user_agent: Option<&str>) {
        let mut log = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        if log.len() >= REQUEST_LOG {
            log.pop_front();
        }
        log.push_back(json!({
            "ms": wall_ms(),
            "method": method,
            "private": private,
            "user_agent": user_agent.unwrap_or(""),
        }));
    }
}

fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A TCP stream that is reset (RST, not FIN) when dropped after a reset fault.
struct SimStream {
    inner: TcpStream,
    reset: Arc<AtomicBool>,
}

impl Drop for SimStream {
    fn drop(&mut self) {
        if self.reset.load(Ordering::SeqCst) {
            // A zero linger makes close() send RST at once; it never blocks.
            let _ = self.inner.set_zero_linger();
        }
    }
}

impl AsyncRead for SimStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for SimStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Why a connection is dropped without an answer.
#[derive(Debug)]
struct ResetConnection;

impl std::fmt::Display for ResetConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection reset by fault injection")
    }
}

impl std::error::Error for ResetConnection {}

type Reply = Result<Response<Full<Bytes>>, ResetConnection>;

fn json_reply(status: StatusCode, v: &Value) -> Reply {
    let mut r = Response::new(Full::new(Bytes::from(v.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json; charset=utf-8"),
    );
    Ok(r)
}

fn html_reply(status: u16) -> Reply {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    let body = format!(
        "<html><body><h1>{} {}</h1></body></html>",
        code.as_u16(),
        code.canonical_reason().unwrap_or("")
    );
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = code;
    Ok(r)
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    shutdown: impl Future<Output = ()> + Send,
) {
    let ticker = {
        let shared = shared.clone();
        tokio::spawn(async move {
            let step_every = shared.sim().cfg.step_ms.map(Duration::from_millis);
            let mut last_step = Instant::now();
            let mut tick = tokio::time::interval(TICK);
            loop {
                tick.tick().await;
                let step = step_every.is_some_and(|d| last_step.elapsed() >= d);
                if step {
                    last_step = Instant::now();
                }
                let now = shared.now();
                let mut sim = shared.sim();
                if sim.tick(now, step)
                    && let Err(e) = shared.persist(&sim)
                {
                    eprintln!("kraken-sim: cannot write the state file: {e}");
                }
            }
        })
    };
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = &mut shutdown => break,
        };
        let Ok((stream, _)) = accepted else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let reset = Arc::new(AtomicBool::new(false));
        let io = TokioIo::new(SimStream {
            inner: stream,
            reset: reset.clone(),
        });
        let shared = shared.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let shared = shared.clone();
                let reset = reset.clone();
                async move {
                    let out = handle(&shared, req).await;
                    if out.is_err() {
                        reset.store(true, Ordering::SeqCst);
                    }
                    out
                }
            });
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(io, svc)
                .await;
        });
    }
    ticker.abort();
}

async fn handle(shared: &Shared, req: Request<Incoming>) -> Reply {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let (key, sign) = (header("api-key"), header("api-sign"));
    let user_agent = header("user-agent");
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Err(ResetConnection),
    };
    if body.len() > MAX_BODY {
        return json_reply(
            StatusCode::PAYLOAD_TOO_LARGE,
            &err("EGeneral:Invalid arguments"),
        );
    }
    if let Some(rest) = path.strip_prefix("/sim/") {
        return admin(shared, &method, rest, &body);
    }
    let (private, name) = if let Some(n) = path.strip_prefix("/0/private/") {
        (true, n.to_string())
    } else if let Some(n) = path.strip_prefix("/0/public/") {
        (false, n.to_string())
    } else {
        return json_reply(StatusCode::NOT_FOUND, &err("EGeneral:Unknown method"));
    };
    shared.log_request(&name, private, user_agent.as_deref());
    let plan = shared.faults().plan(&name);
    if plan.latency_ms > 0 {
        // Simulated venue latency, part of what the sim models (a fault the
        // test asks for), not a wait for anything: clients in other processes
        // see it through their real timeouts, so paused time cannot stand in.
        tokio::time::sleep(Duration::from_millis(plan.latency_ms)).await;
    }
    let fault = plan.fault;
    if fault.is_some() {
        shared.sim().stats.faults_applied += 1;
    }
    let before = match &fault {
        Some((kind, false)) => Some(kind.clone()),
        _ => None,
    };
    if let Some(kind) = before {
        return apply(shared, &kind, &name);
    }
    let answer = {
        let now = shared.now();
        let mut sim = shared.sim();
        if private {
            let v = sim.private(&name, &path, key.as_deref(), sign.as_deref(), &body, now);
            // Every private call may change what a client relies on (at
            // least the nonce): durable before any answer leaves.
            if let Some(reply) = shared.persisted(&sim) {
                return reply;
            }
            v
        } else {
            let form = if method == Method::POST {
                Form::parse(&body)
            } else {
                Form::parse(query.as_bytes())
            };
            sim.public(&name, &form, now)
        }
    };
    match fault {
        Some((FaultKind::DelayAnswer { ms }, true)) => {
            // Accepted; the answer leaves only after the client's timeout.
            // Like the latency above, this is the fault itself (the client's
            // real timeout must expire), not test synchronisation.
            tokio::time::sleep(Duration::from_millis(ms)).await;
            json_reply(StatusCode::OK, &answer)
        }
        Some((kind, true)) => apply(shared, &kind, &name),
        _ => json_reply(StatusCode::OK, &answer),
    }
}

/// Answers with a fault instead of the real answer.
fn apply(shared: &Shared, kind: &FaultKind, _method: &str) -> Reply {
    match kind {
        FaultKind::Reset | FaultKind::LoseResponse => Err(ResetConnection),
        FaultKind::HttpStatus { status } => html_reply(*status),
        FaultKind::Error { error } => {
            let v = err(error);
            shared.sim().count_answer(&v);
            json_reply(StatusCode::OK, &v)
        }
        FaultKind::Latency { .. } | FaultKind::DelayAnswer { .. } => {
            json_reply(StatusCode::OK, &err("EGeneral:Internal error"))
        }
    }
}

fn admin(shared: &Shared, method: &Method, path: &str, body: &[u8]) -> Reply {
    let bad = |msg: String| json_reply(StatusCode::BAD_REQUEST, &json!({ "error": msg }));
    let parsed: Value = if body.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => return bad(format!("body is not JSON: {e}")),
        }
    };
    let now = shared.now();
    match (method, path) {
        (&Method::GET, "stats") => {
            let faults = shared.faults().hits();
            let sim = shared.sim();
            let levels: Vec<Value> = sim
                .limits
                .levels(now.s)
                .into_iter()
                .map(|(name, level, max)| json!({"name": name, "level": level, "max": max}))
                .collect();
            json_reply(
                StatusCode::OK,
                &json!({
                    "stats": sim.stats,
                    "counters": levels,
                    "locked_until_ms": sim.limits.locked_until_ms(now.ms),
                    "dms_deadline_ms": sim.dms_deadline_ms(),
                    "open_orders": sim.open_count(),
                    "fault_hits": faults,
                    "system_status": sim.system_status,
                }),
            )
        }
        (&Method::GET, "requests") => {
            let log = shared.requests.lock().unwrap_or_else(|p| p.into_inner());
            json_reply(StatusCode::OK, &Value::Array(log.iter().cloned().collect()))
        }
        (&Method::GET, "orders") => json_reply(StatusCode::OK, &shared.sim().orders_summary()),
        (&Method::GET, "trades") => json_reply(StatusCode::OK, &shared.sim().trades_summary()),
        (&Method::GET, "balances") => json_reply(StatusCode::OK, &shared.sim().balances_summary()),
        (&Method::POST, "faults") => match serde_json::from_value::<FaultSet>(parsed) {
            Ok(set) => {
                *shared.faults() = set;
                json_reply(StatusCode::OK, &json!({"ok": true}))
            }
            Err(e) => bad(format!("faults: {e}")),
        },
        (&Method::DELETE, "faults") => {
            *shared.faults() = FaultSet::default();
            json_reply(StatusCode::OK, &json!({"ok": true}))
        }
        (&Method::POST, "price") => {
            let pair = parsed.get("pair").and_then(Value::as_str).unwrap_or("");
            let price = parsed
                .get("price")
                .and_then(Value::as_str)
                .and_then(|p| Decimal::from_str(p).ok());
            match price {
                None => bad("price: a decimal string is required".into()),
                Some(p) => {
                    let mut sim = shared.sim();
                    match sim.set_price(pair, p, now) {
                        Ok(v) => {
                            if let Some(reply) = shared.persisted(&sim) {
                                return reply;
                            }
                            json_reply(StatusCode::OK, &v)
                        }
                        Err(e) => bad(e),
                    }
                }
            }
        }
        (&Method::POST, "step") => {
            let mut sim = shared.sim();
            sim.tick(now, true);
            if let Some(reply) = shared.persisted(&sim) {
                return reply;
            }
            json_reply(StatusCode::OK, &json!({"ok": true}))
        }
        (&Method::POST, "lockout") => {
            let ms = parsed.get("ms").and_then(Value::as_i64).unwrap_or(0);
            shared.sim().limits.lock_for(now.ms, ms.max(0));
            json_reply(
                StatusCode::OK,
                &json!({"locked_until_ms": now.ms + ms.max(0)}),
            )
        }
        (&Method::POST, "status") => {
            let s = parsed.get("status").and_then(Value::as_str).unwrap_or("");
            if !["online", "maintenance", "cancel_only", "post_only"].contains(&s) {
                return bad(format!(
                    "status: {s:?} is not online|maintenance|cancel_only|post_only"
                ));
            }
            let mut sim = shared.sim();
            sim.system_status = s.to_string();
            if let Some(reply) = shared.persisted(&sim) {
                return reply;
            }
            json_reply(StatusCode::OK, &json!({"ok": true}))
        }
        _ => json_reply(
            StatusCode::NOT_FOUND,
            &json!({"error": format!("no admin endpoint {method} /sim/{path}")}),
        ),
    }
}

/// A simulator running in this process.
pub struct SimHandle {
    pub addr: SocketAddr,
    pub shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl SimHandle {
    /// Binds `addr` (port 0 allowed) and serves in a task.
    pub async fn start(cfg: SimConfig, addr: SocketAddr) -> io::Result<SimHandle> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(cfg).map_err(io::Error::other)?);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, shared.clone(), async move {
            let _ = rx.await;
        }));
        Ok(SimHandle {
            addr,
            shared,
            stop: Some(tx),
            task,
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        self.task.abort();
    }
}
