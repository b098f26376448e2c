//! The admin HTTP port each service serves beside its gRPC port: a small
//! HTTP/1.1 server (hyper, keep-alive) for `/metrics`, health and, on the
//! engine, the dashboard. It is read-only by design: nothing served here can
//! trade, so the port can be scraped and viewed without a token.
//!
//! Each service passes one [`AdminHandler`]; routing is a `match` on the path
//! inside it. Only `GET` and `HEAD` reach the handler; anything else gets 405.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;

/// What a handler sees of a request.
#[derive(Debug, Clone)]
pub struct AdminRequest {
    /// The path without the query, e.g. `/metrics`.
    pub path: String,
    /// The raw query string, if any (`a=1&b=2`).
    pub query: Option<String>,
}

/// A handler's answer.
#[derive(Debug, Clone)]
pub struct AdminResponse {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Bytes,
}

impl AdminResponse {
    /// 200 with the given content type.
    pub fn ok(content_type: &'static str, body: impl Into<Bytes>) -> Self {
        Self {
            status: 200,
            content_type,
            body: body.into(),
        }
    }

    /// 200 text/plain.
    pub fn text(body: impl Into<Bytes>) -> Self {
        Self::ok("text/plain; charset=utf-8", body)
    }

    /// 200 application/json.
    pub fn json(body: impl Into<Bytes>) -> Self {
        Self::ok("application/json", body)
    }

    /// A metrics page in the OpenMetrics text format ([`crate::prom::encode`]).
    pub fn prometheus(body: impl Into<Bytes>) -> Self {
        Self::ok(crate::prom::CONTENT_TYPE, body)
    }

    /// `/healthz` and `/readyz`: 200 while serving, 503 once draining.
    pub fn health(serving: bool) -> Self {
        if serving {
            AdminResponse::text("ok\n")
        } else {
            AdminResponse::status(503, "draining\n")
        }
    }

    /// 404 naming the path.
    pub fn not_found(path: &str) -> Self {
        Self {
            status: 404,
            content_type: "text/plain; charset=utf-8",
            body: Bytes::from(format!("no such page: {path}\n")),
        }
    }

    /// Any status with a plain-text message.
    pub fn status(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            content_type: "text/plain; charset=utf-8",
            body: Bytes::from(message.into()),
        }
    }
}

/// A boxed future, as handlers return.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// The service's routes.
pub type AdminHandler = Arc<dyn Fn(AdminRequest) -> BoxFuture<AdminResponse> + Send + Sync>;

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
    /// The bound address (None when the port is not configured).
    pub local: Option<SocketAddr>,
}

impl AdminPort {
    /// Stops accepting; connections already open finish their request.
    pub fn stop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// Binds `addr` (when configured) and serves `handler` there on a task of
/// `tasks` until the returned port is stopped. `service` names the service
/// in the log line and the bind error.
pub async fn start(
    addr: Option<SocketAddr>,
    handler: AdminHandler,
    service: &str,
    tasks: &mut tokio::task::JoinSet<()>,
) -> std::io::Result<AdminPort> {
    let Some(addr) = addr else {
        return Ok(AdminPort::default());
    };
    let (listener, local) = bind(addr).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("{service}: cannot listen on {addr} (http_listen): {e}"),
        )
    })?;
    tracing::info!(%local, "{service} admin http listening");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tasks.spawn(serve(listener, handler, async move {
        let _ = stopped.await;
    }));
    Ok(AdminPort {
        stop: Some(stop),
        local: Some(local),
    })
}

/// Serves `handler` on `listener` until `shutdown` resolves; connections
/// already open finish their current request.
pub async fn serve(
    listener: tokio::net::TcpListener,
    handler: AdminHandler,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    tokio::pin!(shutdown);
    // The connection tasks; dropping the set aborts those still open.
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = &mut shutdown => break,
        };
        let (stream, _) = match accepted {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "admin port accept failed");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        // Reap finished connections so the set does not grow forever.
        while conns.try_join_next().is_some() {}
        conns.spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let handler = handler.clone();
                async move { Ok::<_, Infallible>(respond(&handler, req).await) }
            });
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
    // Idle keep-alive connections are aborted with the set.
    conns.shutdown().await;
}

async fn respond(handler: &AdminHandler, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let head = req.method() == Method::HEAD;
    if req.method() != Method::GET && !head {
        return build(AdminResponse::status(
            405,
            "the admin port is read-only: GET only\n",
        ))
        .map(|mut r| {
            r.headers_mut()
                .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
            r
        })
        .unwrap_or_else(|_| fallback());
    }
    let request = AdminRequest {
        path: req.uri().path().to_string(),
        query: req.uri().query().map(str::to_string),
    };
    let mut answer = handler(request).await;
    if head {
        answer.body = Bytes::new();
    }
    build(answer).unwrap_or_else(|_| fallback())
}

fn build(a: AdminResponse) -> Result<Response<Full<Bytes>>, hyper::http::Error> {
    Response::builder()
        .status(StatusCode::from_u16(a.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(header::CONTENT_TYPE, a.content_type)
        .header(header::CACHE_CONTROL, "no-store")
        .body(Full::new(a.body))
}

fn fallback() -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(b"internal error\n")));
    *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    r
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
        let handler: AdminHandler = Arc::new(|r: AdminRequest| {
            Box::pin(async move {
                match r.path.as_str() {
                    "/metrics" => AdminResponse::prometheus("# TYPE up gauge\nup 1\n# EOF\n"),
                    p => AdminResponse::not_found(p),
                }
            })
        });
        let (listener, addr) = bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .unwrap_or_else(|e| unreachable!("bind: {e}"));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, handler, async move {
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
        assert!(ok.ends_with("up 1\n# EOF\n"), "{ok}");

        let missing = get(
            addr,
            "GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");

        let post = get(
            addr,
            "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(post.starts_with("HTTP/1.1 405"), "{post}");

        let _ = tx.send(());
        let _ = server.await;
    }
}
