//! A local fake of the Kubernetes API's Lease resource
//! (`coordination.k8s.io/v1`), real HTTP on hyper 1, for the gateway's Lease
//! tests: the gateway's real client (kube) talks to it through a kubeconfig
//! ([`FakeKube::write_kubeconfig`]).
//!
//! - `GET /apis/coordination.k8s.io/v1/namespaces/{ns}/leases/{name}`: the
//!   Lease, or 404 `NotFound`.
//! - `POST .../namespaces/{ns}/leases`: creates it (201), 409 `AlreadyExists`.
//! - `PUT .../leases/{name}`: replaces it when the body's
//!   `metadata.resourceVersion` is the current one (else 409 `Conflict`, the
//!   optimistic concurrency every Kubernetes object has); 404 when missing.
//! - `PATCH .../leases/{name}`: a JSON merge patch (merge-patch or
//!   strategic-merge content types), checked against a `resourceVersion` the
//!   patch carries; server-side apply is 415.
//! - `DELETE .../leases/{name}`.
//!
//! Errors are `Status` objects as the API server sends them. Every write that
//! succeeded is recorded ([`FakeKube::writes`]: when it arrived, who holds the
//! Lease after it, its renewTime). Writes that would make a given identity
//! the holder can be stalled (the request hangs until [`FakeKube::unstall`])
//! or failed with a 500 ([`FakeKube::fail_writes_of`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;

const PREFIX: &str = "/apis/coordination.k8s.io/v1/namespaces/";

/// One successful write of a Lease, as the fake saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Write {
    /// Wall-clock ms when the request arrived.
    pub at_ms: i64,
    /// "create", "replace", "patch" or "delete".
    pub verb: String,
    pub namespace: String,
    pub name: String,
    /// `spec.holderIdentity` after the write (None: released or deleted).
    pub holder: Option<String>,
    /// `spec.renewTime` after the write, in ms.
    pub renew_ms: Option<i64>,
    /// `spec.leaseDurationSeconds` after the write.
    pub duration_s: Option<i64>,
    /// The new resourceVersion.
    pub version: String,
}

#[derive(Debug, Default)]
struct Inner {
    leases: BTreeMap<(String, String), Value>,
    next_version: u64,
    writes: Vec<Write>,
    /// Identities whose writes are answered 500.
    failing: Vec<String>,
    /// Requests seen (method, path), for debugging a failed test.
    requests: Vec<(String, String)>,
}

#[derive(Debug)]
struct State {
    inner: Mutex<Inner>,
    /// Identities whose writes hang.
    stalled: watch::Sender<Vec<String>>,
}

impl State {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The fake API server; stops when dropped.
#[derive(Debug)]
pub struct FakeKube {
    pub addr: SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// An RFC 3339 timestamp (as MicroTime writes it) in ms since the epoch.
pub fn rfc3339_ms(s: &str) -> Option<i64> {
    // YYYY-MM-DDTHH:MM:SS[.ffffff]Z
    let (date, rest) = s.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let rest = rest.strip_suffix('Z')?;
    let (hms, frac) = rest.split_once('.').unwrap_or((rest, ""));
    let mut t = hms.split(':').map(|p| p.parse::<i64>());
    let (hh, mm, ss) = (t.next()?.ok()?, t.next()?.ok()?, t.next()?.ok()?);
    let ms_frac: i64 = if frac.is_empty() {
        0
    } else {
        format!("{:0<3}", &frac[..frac.len().min(3)]).parse().ok()?
    };
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 24 + hh) * 60 + mm) * 60_000 + ss * 1000 + ms_frac)
}

/// ms since the epoch as RFC 3339 with microseconds (MicroTime's format).
pub fn ms_rfc3339(ms: i64) -> String {
    let (days, rem) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}000Z",
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000
    )
}

fn reply(status: StatusCode, v: &Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(v.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

fn status(code: StatusCode, reason: &str, message: String) -> Response<Full<Bytes>> {
    reply(
        code,
        &json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": reason,
            "code": code.as_u16(),
        }),
    )
}

/// RFC 7386 JSON merge patch.
fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = json!({});
            }
            if let Value::Object(t) = target {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
        }
        other => *target = other.clone(),
    }
}

fn holder_of(lease: &Value) -> Option<String> {
    lease["spec"]["holderIdentity"]
        .as_str()
        .filter(|h| !h.is_empty())
        .map(str::to_string)
}

impl FakeKube {
    /// Serves on 127.0.0.1 (a free port) in a task of this runtime.
    pub async fn start() -> std::io::Result<FakeKube> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            inner: Mutex::new(Inner {
                next_version: 100,
                ..Inner::default()
            }),
            stalled: watch::channel(Vec::new()).0,
        });
        let s = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let s = s.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let s = s.clone();
                        async move { Ok::<_, std::convert::Infallible>(handle(&s, req).await) }
                    });
                    let _ = http1::Builder::new()
                        .keep_alive(true)
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Ok(FakeKube { addr, state, task })
    }

    /// A kubeconfig pointing at this server (plain HTTP, no credentials),
    /// whose context's namespace is `namespace`.
    pub fn write_kubeconfig(&self, path: &Path, namespace: &str) -> std::io::Result<()> {
        std::fs::write(
            path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://{}\n\
                 contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: {namespace}\n\
                 current-context: fake\nusers:\n- name: fake\n  user: {{}}\n",
                self.addr
            ),
        )
    }

    /// Every successful write so far, oldest first.
    pub fn writes(&self) -> Vec<Write> {
        self.state.lock().writes.clone()
    }

    /// The Lease as stored.
    pub fn lease(&self, namespace: &str, name: &str) -> Option<Value> {
        self.state
            .lock()
            .leases
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
    }

    /// Requests seen so far (method, path).
    pub fn requests(&self) -> Vec<(String, String)> {
        self.state.lock().requests.clone()
    }

    /// From now on, writes whose result names `identity` as the holder hang
    /// (the request gets no answer) until [`FakeKube::unstall`].
    pub fn stall_writes_of(&self, identity: &str) {
        self.state
            .stalled
            .send_modify(|s| s.push(identity.to_string()));
    }

    pub fn unstall(&self) {
        self.state.stalled.send_modify(Vec::clear);
    }

    /// Another client writes the Lease: `identity` holds it, renewed now (a
    /// new resourceVersion, so the old holder's next renewal conflicts).
    pub fn steal(&self, namespace: &str, name: &str, identity: &str) -> Option<Write> {
        let mut inner = self.state.lock();
        let key = (namespace.to_string(), name.to_string());
        let mut lease = inner.leases.get(&key)?.clone();
        let now = wall_ms();
        lease["spec"]["holderIdentity"] = json!(identity);
        lease["spec"]["renewTime"] = json!(ms_rfc3339(now));
        lease["spec"]["acquireTime"] = json!(ms_rfc3339(now));
        inner.next_version += 1;
        let version = inner.next_version.to_string();
        lease["metadata"]["resourceVersion"] = json!(version);
        let w = Write {
            at_ms: now,
            verb: "replace".into(),
            namespace: namespace.to_string(),
            name: name.to_string(),
            holder: Some(identity.to_string()),
            renew_ms: Some(now),
            duration_s: lease["spec"]["leaseDurationSeconds"].as_i64(),
            version,
        };
        inner.writes.push(w.clone());
        inner.leases.insert(key, lease);
        Some(w)
    }

    /// From now on, writes whose result names `identity` are answered 500.
    pub fn fail_writes_of(&self, identity: &str) {
        self.state.lock().failing.push(identity.to_string());
    }
}

async fn handle(state: &State, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let content_type = req
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    state
        .lock()
        .requests
        .push((method.to_string(), path.clone()));
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return status(StatusCode::BAD_REQUEST, "BadRequest", e.to_string()),
    };
    let Some(rest) = path.strip_prefix(PREFIX) else {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("the fake serves only Leases, not {path}"),
        );
    };
    let parts: Vec<&str> = rest.split('/').collect();
    let (ns, name) = match parts.as_slice() {
        [ns, "leases"] => (ns.to_string(), None),
        [ns, "leases", name] => (ns.to_string(), Some(name.to_string())),
        _ => {
            return status(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("no such path {path}"),
            );
        }
    };
    let parsed: Value = if body.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => {
                return status(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    format!("body is not JSON: {e}"),
                );
            }
        }
    };
    match (&method, name) {
        (&Method::GET, Some(name)) => match state.lock().leases.get(&(ns.clone(), name.clone())) {
            Some(l) => reply(StatusCode::OK, l),
            None => status(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("leases.coordination.k8s.io \"{name}\" not found"),
            ),
        },
        (&Method::POST, None) => {
            let name = parsed["metadata"]["name"]
                .as_str()
                .unwrap_or("")
                .to_string();
            if name.is_empty() {
                return status(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Invalid",
                    "metadata.name: Required value".into(),
                );
            }
            write(state, "create", ns, name, None, |_| Ok(parsed.clone())).await
        }
        (&Method::PUT, Some(name)) => {
            let want = parsed["metadata"]["resourceVersion"]
                .as_str()
                .map(str::to_string);
            write(state, "replace", ns, name, want, |_| Ok(parsed.clone())).await
        }
        (&Method::PATCH, Some(name)) => {
            if content_type.contains("apply-patch") {
                return status(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "UnsupportedMediaType",
                    "the fake does not do server-side apply".into(),
                );
            }
            let want = parsed["metadata"]["resourceVersion"]
                .as_str()
                .map(str::to_string);
            write(state, "patch", ns, name, want, |current| {
                let mut l = current.cloned().ok_or(())?;
                merge_patch(&mut l, &parsed);
                Ok(l)
            })
            .await
        }
        (&Method::DELETE, Some(name)) => {
            let mut inner = state.lock();
            match inner.leases.remove(&(ns.clone(), name.clone())) {
                Some(l) => {
                    inner.writes.push(Write {
                        at_ms: wall_ms(),
                        verb: "delete".into(),
                        namespace: ns,
                        name,
                        holder: None,
                        renew_ms: None,
                        duration_s: None,
                        version: String::new(),
                    });
                    reply(StatusCode::OK, &l)
                }
                None => status(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    format!("leases.coordination.k8s.io \"{name}\" not found"),
                ),
            }
        }
        _ => status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!("{method} is not supported on {path}"),
        ),
    }
}

/// A write: `build` turns the current object (None when missing) into the
/// new one; a create finds none, a replace or patch needs one and, when
/// `want_version` is given, the current resourceVersion must be it.
async fn write(
    state: &State,
    verb: &str,
    ns: String,
    name: String,
    want_version: Option<String>,
    build: impl Fn(Option<&Value>) -> Result<Value, ()>,
) -> Response<Full<Bytes>> {
    let arrived = wall_ms();
    // What the write would make of the Lease, to know whose write it is.
    let preview = {
        let inner = state.lock();
        build(inner.leases.get(&(ns.clone(), name.clone()))).ok()
    };
    let identity = preview.as_ref().and_then(holder_of);
    if let Some(id) = &identity {
        let mut rx = state.stalled.subscribe();
        let _ = rx.wait_for(|s| !s.contains(id)).await;
        if state.lock().failing.contains(id) {
            return status(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                format!("the fake fails writes of {id}"),
            );
        }
    }
    let mut inner = state.lock();
    let key = (ns.clone(), name.clone());
    let current = inner.leases.get(&key).cloned();
    match (verb, &current) {
        ("create", Some(_)) => {
            return status(
                StatusCode::CONFLICT,
                "AlreadyExists",
                format!("leases.coordination.k8s.io \"{name}\" already exists"),
            );
        }
        ("replace" | "patch", None) => {
            return status(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("leases.coordination.k8s.io \"{name}\" not found"),
            );
        }
        _ => {}
    }
    if let (Some(want), Some(cur)) = (&want_version, &current) {
        let have = cur["metadata"]["resourceVersion"].as_str().unwrap_or("");
        if want != have {
            return status(
                StatusCode::CONFLICT,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on leases.coordination.k8s.io \"{name}\": \
                     the object has been modified; please apply your changes to the latest \
                     version and try again"
                ),
            );
        }
    }
    let Ok(mut lease) = build(current.as_ref()) else {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("leases.coordination.k8s.io \"{name}\" not found"),
        );
    };
    inner.next_version += 1;
    let version = inner.next_version.to_string();
    lease["apiVersion"] = json!("coordination.k8s.io/v1");
    lease["kind"] = json!("Lease");
    lease["metadata"]["name"] = json!(name);
    lease["metadata"]["namespace"] = json!(ns);
    lease["metadata"]["resourceVersion"] = json!(version);
    if let Some(cur) = &current {
        lease["metadata"]["uid"] = cur["metadata"]["uid"].clone();
    } else {
        lease["metadata"]["uid"] = json!(format!("uid-{version}"));
    }
    inner.writes.push(Write {
        at_ms: arrived,
        verb: verb.to_string(),
        namespace: ns,
        name,
        holder: holder_of(&lease),
        renew_ms: lease["spec"]["renewTime"].as_str().and_then(rfc3339_ms),
        duration_s: lease["spec"]["leaseDurationSeconds"].as_i64(),
        version,
    });
    inner.leases.insert(key, lease.clone());
    reply(
        if verb == "create" {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        &lease,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_to_ms() {
        assert_eq!(rfc3339_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(rfc3339_ms("1970-01-01T00:00:01.5Z"), Some(1500));
        assert_eq!(
            rfc3339_ms("2026-12-06T00:11:11.123456Z"),
            Some(1_796_515_871_123)
        );
        assert_eq!(rfc3339_ms("junk"), None);
        for ms in [0, 1_796_515_871_123, 951_782_400_000, 4_107_542_399_999] {
            assert_eq!(rfc3339_ms(&ms_rfc3339(ms)), Some(ms), "{}", ms_rfc3339(ms));
        }
        assert_eq!(ms_rfc3339(1_796_515_871_123), "2026-12-06T00:11:11.123000Z");
    }

    #[test]
    fn merge_patch_rfc7386() {
        let mut t = json!({"a": 1, "b": {"c": 2, "d": 3}});
        merge_patch(&mut t, &json!({"a": null, "b": {"c": 5}, "e": "x"}));
        assert_eq!(t, json!({"b": {"c": 5, "d": 3}, "e": "x"}));
    }
}
