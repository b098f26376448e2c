//! The admin HTTP port each service serves beside its gRPC port: an axum
//! HTTP/1.1 server (keep-alive) for `/metrics`, health and, on the engine,
//! the dashboard. It is read-only by design: nothing served here can trade,
//! so the port can be scraped and viewed without a token.
//!
//! Each service builds an axum [`Router`] of its own pages; [`start`] adds
//! what every admin port has: `/healthz` (200 while serving, 503 once
//! [`AdminPort::set_draining`] was called) and `/readyz` (the same, and 503
//! while the service says it is not ready through [`Readiness`]), a
//! plain-text 404, and
//! the read-only guard in front of every route (only `GET` and `HEAD`
//! reach a handler; anything else gets 405, whatever the path).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::ListenerExt;

/// A page in the OpenMetrics text format ([`crate::prom::encode`]), or 500
/// when the page could not be encoded.
pub fn metrics_page(page: Result<String, std::fmt::Error>) -> Response {
    match page {
        Ok(page) => ([(header::CONTENT_TYPE, crate::prom::CONTENT_TYPE)], page).into_response(),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "metrics: encoding failed\n",
        )
            .into_response(),
    }
}

/// `/healthz` and `/readyz`: 200 while serving, 503 once draining.
pub fn health(serving: bool) -> Response {
    if serving {
        "ok\n".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response()
    }
}

/// `/readyz` of a serving service: 200, or 503 with why it is not ready.
fn ready(serving: bool, not_ready: Option<String>) -> Response {
    match not_ready {
        Some(why) if serving => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
            .into_response(),
        _ => health(serving),
    }
}

/// Whether a service is ready for work, as `/readyz` reports it (a
/// draining service is not ready either way). Cloned handles share it.
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<Mutex<Option<String>>>);

impl Readiness {
    /// Ready (the default).
    pub fn set_ready(&self) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Not ready, and `why` (the answer's body says it).
    pub fn set_not_ready(&self, why: impl Into<String>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(why.into());
    }

    /// Why it is not ready, or None when it is.
    pub fn not_ready(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Parses an admin address from configuration: `host:port`, or empty for
/// "not served". The error says what is wrong.
pub fn parse_optional_addr(v: &str) -> Result<Option<SocketAddr>, String> {
    let v = v.trim();
    if v.is_empty() {
        return Ok(None);
    }
    v.parse()
        .map(Some)
        .map_err(|e| format!("{v:?} is not host:port ({e})"))
}

/// Binds the admin port (port 0 picks a free one).
pub async fn bind(addr: SocketAddr) -> std::io::Result<(tokio::net::TcpListener, SocketAddr)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

/// A started admin port; [`AdminPort::stop`] ends it (and so does drop).
#[derive(Debug, Default)]
pub struct AdminPort {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// Read by `/healthz` and `/readyz`.
    draining: Arc<AtomicBool>,
    /// Read by `/readyz`.
    readiness: Readiness,
    /// The bound address (None when the port is not configured).
    pub local: Option<SocketAddr>,
}

impl AdminPort {
    /// From now on `/healthz` and `/readyz` answer 503.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// The handle through which the service says whether it is ready.
    pub fn readiness(&self) -> Readiness {
        self.readiness.clone()
    }

    /// Stops accepting; requests in progress finish, idle connections close.
    pub fn stop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// The service's `routes` with what every admin port has: health, the 404
/// fallback, the read-only guard and `Cache-Control: no-store`. `draining`
/// makes `/healthz` and `/readyz` answer 503 once set.
pub fn app(routes: Router, draining: Arc<AtomicBool>) -> Router {
    app_with_readiness(routes, draining, Readiness::default())
}

/// [`app`] whose `/readyz` also answers 503 while `readiness` says so.
pub fn app_with_readiness(
    routes: Router,
    draining: Arc<AtomicBool>,
    readiness: Readiness,
) -> Router {
    let live = draining.clone();
    let health_route = get(move || {
        let serving = !live.load(Ordering::SeqCst);
        async move { health(serving) }
    });
    let ready_route = get(move || {
        let serving = !draining.load(Ordering::SeqCst);
        let not_ready = readiness.not_ready();
        async move { ready(serving, not_ready) }
    });
    routes
        .route("/healthz", health_route)
        .route("/readyz", ready_route)
        .fallback(not_found)
        // Last, so it runs first and covers the fallback too.
        .layer(middleware::from_fn(read_only))
}

async fn not_found(uri: Uri) -> Response {
    (
        StatusCode::NOT_FOUND,
        format!("no such page: {}\n", uri.path()),
    )
        .into_response()
}

async fn read_only(req: Request, next: Next) -> Response {
    let mut response = if req.method() == Method::GET || req.method() == Method::HEAD {
        next.run(req).await
    } else {
        (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, "GET, HEAD")],
            "the admin port is read-only: GET only\n",
        )
            .into_response()
    };
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Binds `addr` (when configured) and serves `routes` (see [`app`]) there
/// on a task of `tasks` until the returned port is stopped. `service` names
/// the service in the log line and the bind error.
pub async fn start(
    addr: Option<SocketAddr>,
    routes: Router,
    service: &str,
    tasks: &mut tokio::task::JoinSet<()>,
) -> std::io::Result<AdminPort> {
    start_with_readiness(addr, routes, service, tasks, Readiness::default()).await
}

/// [`start`] with `/readyz` following `readiness` too.
pub async fn start_with_readiness(
    addr: Option<SocketAddr>,
    routes: Router,
    service: &str,
    tasks: &mut tokio::task::JoinSet<()>,
    readiness: Readiness,
) -> std::io::Result<AdminPort> {
    let Some(addr) = addr else {
        return Ok(AdminPort {
            readiness,
            ..AdminPort::default()
        });
    };
    let (listener, local) = bind(addr).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("{service}: cannot listen on {addr} (http_listen): {e}"),
        )
    })?;
    tracing::info!(%local, "{service} admin http listening");
    let draining = Arc::new(AtomicBool::new(false));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let app = app_with_readiness(routes, draining.clone(), readiness.clone());
    tasks.spawn(serve(listener, app, async move {
        let _ = stopped.await;
    }));
    Ok(AdminPort {
        stop: Some(stop),
        draining,
        readiness,
        local: Some(local),
    })
}

/// Serves `app` on `listener` (TCP_NODELAY on every connection) until
/// `shutdown` resolves; requests in progress then finish and idle
/// keep-alive connections close.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
    {
        tracing::warn!(error = %e, "admin port stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: SocketAddr, raw: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr)
            .await
            .unwrap_or_else(|e| {
                unreachable!("connect: {e}");
            });
        let _ = s.write_all(raw.as_bytes()).await;
        let mut out = String::new();
        let _ = s.read_to_string(&mut out).await;
        out
    }

    #[tokio::test]
    async fn routes_get_and_refuses_writes() {
        let routes = Router::new().route(
            "/metrics",
            axum::routing::get(|| async {
                metrics_page(Ok("# TYPE up gauge\nup 1\n# EOF\n".to_string()))
            }),
        );
        let (listener, addr) = bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .unwrap_or_else(|e| unreachable!("bind: {e}"));
        let draining = Arc::new(AtomicBool::new(false));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, app(routes, draining.clone()), async move {
            let _ = rx.await;
        }));

        let ok = get(
            addr,
            "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
        assert!(
            ok.contains("content-type: application/openmetrics-text; version=1.0.0"),
            "{ok}"
        );
        assert!(ok.contains("cache-control: no-store"), "{ok}");
        assert!(ok.ends_with("up 1\n# EOF\n"), "{ok}");

        let head = get(
            addr,
            "HEAD /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(
            head.ends_with("\r\n\r\n"),
            "a HEAD answer has no body: {head}"
        );

        let missing = get(
            addr,
            "GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
        assert!(missing.ends_with("no such page: /nope\n"), "{missing}");

        for (method, path) in [
            ("POST", "/metrics"),
            ("DELETE", "/readyz"),
            ("PUT", "/nope"),
        ] {
            let refused = get(
                addr,
                &format!(
                    "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                ),
            )
            .await;
            assert!(
                refused.starts_with("HTTP/1.1 405"),
                "{method} {path}: {refused}"
            );
            assert!(
                refused.contains("allow: GET, HEAD"),
                "{method} {path}: {refused}"
            );
        }

        let _ = tx.send(());
        let _ = server.await;
    }

    #[tokio::test]
    async fn health_answers_503_once_draining() {
        let mut tasks = tokio::task::JoinSet::new();
        let mut port = start(
            Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            Router::new(),
            "test",
            &mut tasks,
        )
        .await
        .unwrap_or_else(|e| unreachable!("start: {e}"));
        let addr = port.local.unwrap_or_else(|| unreachable!("bound"));
        for path in ["/healthz", "/readyz"] {
            let ok = get(
                addr,
                &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
            )
            .await;
            assert!(ok.starts_with("HTTP/1.1 200"), "{path}: {ok}");
            assert!(ok.ends_with("ok\n"), "{path}: {ok}");
        }
        port.set_draining();
        for path in ["/healthz", "/readyz"] {
            let draining = get(
                addr,
                &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
            )
            .await;
            assert!(draining.starts_with("HTTP/1.1 503"), "{path}: {draining}");
            assert!(draining.ends_with("draining\n"), "{path}: {draining}");
        }
        port.stop();
        while tasks.join_next().await.is_some() {}
    }

    #[tokio::test]
    async fn readyz_answers_503_while_not_ready_and_healthz_stays_200() {
        let mut tasks = tokio::task::JoinSet::new();
        let mut port = start(
            Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            Router::new(),
            "test",
            &mut tasks,
        )
        .await
        .unwrap_or_else(|e| unreachable!("start: {e}"));
        let addr = port.local.unwrap_or_else(|| unreachable!("bound"));
        let at =
            |path: &str| format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        port.readiness().set_not_ready("gateway unreachable");
        let readyz = get(addr, &at("/readyz")).await;
        assert!(readyz.starts_with("HTTP/1.1 503"), "{readyz}");
        assert!(
            readyz.ends_with("not ready: gateway unreachable\n"),
            "{readyz}"
        );
        let healthz = get(addr, &at("/healthz")).await;
        assert!(
            healthz.starts_with("HTTP/1.1 200"),
            "alive all the same: {healthz}"
        );
        port.readiness().set_ready();
        let readyz = get(addr, &at("/readyz")).await;
        assert!(readyz.starts_with("HTTP/1.1 200"), "{readyz}");
        port.readiness().set_not_ready("gateway unreachable");
        port.set_draining();
        let readyz = get(addr, &at("/readyz")).await;
        assert!(readyz.ends_with("draining\n"), "{readyz}");
        port.stop();
        while tasks.join_next().await.is_some() {}
    }

    #[test]
    fn admin_addresses_parse_or_say_why_not() {
        assert_eq!(parse_optional_addr("  "), Ok(None));
        assert_eq!(
            parse_optional_addr("127.0.0.1:9090"),
            Ok(Some(SocketAddr::from(([127, 0, 0, 1], 9090))))
        );
        let e = parse_optional_addr("localhost").unwrap_err();
        assert!(e.contains("not host:port"), "{e}");
    }
}
