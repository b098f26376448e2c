//! Shared helpers of the integration tests: a tiny HTTP/1.1 server on
//! 127.0.0.1 that records every request and answers from a handler, the
//! recorded fixtures, and a venue wired to the server with injected clocks.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use herd_kraken::budget::TokioClock;
use herd_kraken::nonce::NonceGenerator;
use herd_kraken::{CREDENTIAL_SPEC, CredentialSource, KrakenConfig, KrakenVenue, Tier};
use herd_venue::ManualClock;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

pub const SECRET: &str =
    "kQH5HW/8p1uGOVjbgWA7FunAmGO8lsSUXNsu3eow76sz84Q18fWxnyRzBHCd3pd5nE9qa99HAZtuZuj6F1huXg==";
pub const API_KEY: &str = "test-api-key";
/// Wall-clock start of the tests: a few seconds after the fixtures' orders opened.
pub const T0_MS: i64 = 1_700_000_003_000;

/// A fixture from test_data/.
pub fn fixture(name: &str) -> String {
    let path = format!("{}/test_data/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// One request as the server read it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: HashMap<String, String>,
    pub body: String,
}

impl Recorded {
    /// A form field of the body (or the query string), decoded.
    pub fn field(&self, name: &str) -> Option<String> {
        let src = if self.method == "POST" {
            &self.body
        } else {
            &self.query
        };
        src.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            (k == name).then(|| decode(v))
        })
    }

    pub fn nonce(&self) -> u64 {
        self.field("nonce").unwrap().parse().unwrap()
    }
}

fn decode(v: &str) -> String {
    let bytes = v.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                out.push(u8::from_str_radix(&v[i + 1..i + 3], 16).unwrap());
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

/// What the server answers.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: String,
    pub delay: Duration,
}

impl Reply {
    pub fn json(body: impl Into<String>) -> Reply {
        Reply {
            status: 200,
            body: body.into(),
            delay: Duration::ZERO,
        }
    }

    pub fn fixture(name: &str) -> Reply {
        Reply::json(fixture(name))
    }

    pub fn status(status: u16, body: &str) -> Reply {
        Reply {
            status,
            body: body.into(),
            delay: Duration::ZERO,
        }
    }

    pub fn after(mut self, d: Duration) -> Reply {
        self.delay = d;
        self
    }
}

type Handler = dyn Fn(&Recorded) -> Reply + Send + Sync;

/// The test server.
pub struct MockKraken {
    pub url: String,
    requests: Arc<Mutex<Vec<Recorded>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for MockKraken {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl MockKraken {
    pub async fn start(handler: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> MockKraken {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let rec = requests.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let rec = rec.clone();
                let handler = handler.clone();
                tokio::spawn(async move {
                    let Some(req) = read_request(&mut sock).await else {
                        return;
                    };
                    rec.lock().unwrap().push(req.clone());
                    let reply = handler(&req);
                    tokio::time::sleep(reply.delay).await;
                    let head = format!(
                        "HTTP/1.1 {} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        reply.status,
                        reply.body.len()
                    );
                    let _ = sock.write_all(head.as_bytes()).await;
                    let _ = sock.write_all(reply.body.as_bytes()).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        MockKraken {
            url,
            requests,
            task,
        }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    /// Requests to one method (`AddOrder`, `Ticker`, ...).
    pub fn calls(&self, method: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.path.rsplit('/').next() == Some(method))
            .collect()
    }
}

async fn read_request(sock: &mut tokio::net::TcpStream) -> Option<Recorded> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let target = first.next()?.to_string();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len {
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (target, String::new()),
    };
    Some(Recorded {
        method,
        path,
        query,
        headers,
        body: String::from_utf8_lossy(&body).to_string(),
    })
}

/// Answers public endpoints from the fixtures and hands private ones to `private`.
pub fn with_public(
    private: impl Fn(&str, &Recorded) -> Reply + Send + Sync + 'static,
) -> impl Fn(&Recorded) -> Reply + Send + Sync + 'static {
    move |r: &Recorded| {
        let method = r.path.rsplit('/').next().unwrap_or("").to_string();
        match method.as_str() {
            "AssetPairs" => Reply::fixture("http_asset_pairs.json"),
            "Ticker" => Reply::fixture("http_ticker.json"),
            "OHLC" => Reply::fixture("http_ohlc.json"),
            "Time" => Reply::fixture("http_time.json"),
            "SystemStatus" => Reply::fixture("http_system_status.json"),
            m => private(m, r),
        }
    }
}

/// A venue on `url` with a wall clock the test controls.
pub fn venue_with(
    url: &str,
    tier: Tier,
    config: impl FnOnce(&mut KrakenConfig),
) -> (KrakenVenue, ManualClock) {
    let wall = ManualClock::new(T0_MS);
    let mut cfg = KrakenConfig {
        tier,
        base_url: url.to_string(),
        credentials: CredentialSource::None,
        request_timeout_ms: 400,
        connect_timeout_ms: 400,
        ..KrakenConfig::default()
    };
    config(&mut cfg);
    let venue = KrakenVenue::with_parts(
        &cfg,
        Some(CREDENTIAL_SPEC.parse(API_KEY, SECRET).unwrap()),
        NonceGenerator::new(None).unwrap(),
        Arc::new(wall.clone()),
        Arc::new(TokioClock::new()),
    )
    .unwrap();
    (venue, wall)
}

pub fn venue(url: &str, tier: Tier) -> (KrakenVenue, ManualClock) {
    venue_with(url, tier, |_| {})
}
