//! Event sinks against real local receivers (issue 17, docs/events.md): a
//! webhook that refuses deliveries and then goes down, Slack, Discord and
//! Telegram fakes, a NATS JetStream server, a gateway kill -9 with
//! undelivered events, and a bad sink config refused at start.
//!
//! The NATS server is found at `HERD_NATS_URL` (default
//! `nats://127.0.0.1:4222`, where CI's machine runs one with JetStream) by
//! connecting to it. When none answers the NATS test fails if
//! `HERD_REQUIRE_NATS=1` (CI), else it prints why it skipped and passes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use herd_proto::gateway as gpb;
use herd_tests::bin_path;
use herd_tests::procs::{
    GatewayOpts, GatewayProc, admin_client, engine_token, free_port, gateway_client, wait_until,
};
use hmac::{Hmac, Mac};
use sha2::Sha256;

const SECRET: &str = "shared-hmac-secret-for-tests";
const BOT_TOKEN: &str = "123456:test-bot-token";

/// What the receiver saw.
#[derive(Default)]
struct Seen {
    /// Requests to /hook (any answer).
    attempts: usize,
    /// Refuse this many more with 503 before taking any.
    refuse: usize,
    /// Record the next delivery and still answer 500 (a lost answer).
    lose_answer_once: bool,
    /// Idempotency keys taken, in order.
    keys: Vec<String>,
    bodies: Vec<serde_json::Value>,
    /// Deliveries whose key was taken before (dropped by the receiver).
    duplicates: usize,
    bad_signatures: usize,
    slack: Vec<serde_json::Value>,
    discord: Vec<serde_json::Value>,
    telegram: Vec<serde_json::Value>,
}

type Shared = Arc<Mutex<Seen>>;

async fn hook(State(s): State<Shared>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let mut s = s.lock().unwrap();
    s.attempts += 1;
    if s.refuse > 0 {
        s.refuse -= 1;
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let sig = headers
        .get("x-herd-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(&body);
    if sig != format!("sha256={}", hex::encode(mac.finalize().into_bytes())) {
        s.bad_signatures += 1;
        return StatusCode::UNAUTHORIZED;
    }
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    if s.keys.contains(&key) {
        s.duplicates += 1;
        return StatusCode::OK;
    }
    s.keys.push(key);
    s.bodies.push(serde_json::from_slice(&body).unwrap());
    if std::mem::take(&mut s.lose_answer_once) {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    StatusCode::OK
}

async fn slack(State(s): State<Shared>, body: Bytes) -> StatusCode {
    s.lock()
        .unwrap()
        .slack
        .push(serde_json::from_slice(&body).unwrap());
    StatusCode::OK
}

async fn discord(State(s): State<Shared>, body: Bytes) -> StatusCode {
    s.lock()
        .unwrap()
        .discord
        .push(serde_json::from_slice(&body).unwrap());
    StatusCode::NO_CONTENT
}

async fn telegram(State(s): State<Shared>, body: Bytes) -> (StatusCode, String) {
    s.lock()
        .unwrap()
        .telegram
        .push(serde_json::from_slice(&body).unwrap());
    (StatusCode::OK, r#"{"ok":true,"result":{}}"#.into())
}

/// A socket bound to `addr` (127.0.0.1:0 picks a port) and not listening:
/// the port stays the receiver's, and connections to it are refused. The
/// receiver holds its port this way from the start and while it is down, so
/// no other socket of a parallel test can take it in between.
fn reserve(addr: SocketAddr) -> tokio::net::TcpSocket {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_reuseaddr(true).unwrap();
    socket.bind(addr).unwrap();
    socket
}

/// Serves the receiver on `socket` until the returned task is aborted.
async fn serve(socket: tokio::net::TcpSocket, s: Shared) -> tokio::task::JoinHandle<()> {
    let app = Router::new()
        .route("/hook", post(hook))
        .route("/slack", post(slack))
        .route("/discord", post(discord))
        .route(&format!("/tg/bot{BOT_TOKEN}/sendMessage"), post(telegram))
        .with_state(s);
    let listener = socket.listen(1024).unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    })
}

fn sinks_toml(dir: &std::path::Path, port: u16) -> String {
    std::fs::write(dir.join("hmac.secret"), SECRET).unwrap();
    std::fs::write(dir.join("bot.token"), BOT_TOKEN).unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let fast = "retry_base_ms = 20\nretry_max_ms = 200\n";
    format!(
        "[[events.sinks]]\nname = \"hook\"\ntype = \"webhook\"\nurl = \"{base}/hook\"\n\
         secret_file = \"{}\"\nmin_severity = \"info\"\nkinds = [\"fill\"]\n\
         retry_base_ms = 20\nretry_max_ms = 200\nmax_attempts = 10000\n\
         [[events.sinks]]\nname = \"slack\"\ntype = \"slack\"\nurl = \"{base}/slack\"\nkinds = [\"fill\"]\n{fast}\
         [[events.sinks]]\nname = \"discord\"\ntype = \"discord\"\nurl = \"{base}/discord\"\nkinds = [\"fill\"]\n{fast}\
         [[events.sinks]]\nname = \"tg\"\ntype = \"telegram\"\nbase_url = \"{base}/tg\"\n\
         token_file = \"{}\"\nchat_id = \"-1001\"\nkinds = [\"fill\"]\n{fast}",
        dir.join("hmac.secret").display(),
        dir.join("bot.token").display(),
    )
}

fn market_buy(id: &str) -> gpb::PlaceOrderRequest {
    gpb::PlaceOrderRequest {
        client_order_id: id.into(),
        symbol: "DOGEUSD".into(),
        side: gpb::Side::Buy as i32,
        order_type: gpb::OrderType::Market as i32,
        volume: "100".into(),
        price: String::new(),
        post_only: false,
        ..Default::default()
    }
}

/// The fill events the gateway logged, in order.
async fn logged_fills(url: &str) -> Vec<String> {
    let mut admin = admin_client(url).await.unwrap();
    let mut s = admin
        .stream_herd_events(gpb::StreamHerdEventsRequest {
            kinds: vec!["fill".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut ids = Vec::new();
    while let Some(e) = s.message().await.unwrap() {
        ids.push(e.id);
    }
    ids
}

#[tokio::test]
async fn a_refusing_then_absent_webhook_gets_every_event_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let socket = reserve(SocketAddr::from(([127, 0, 0, 1], 0)));
    let addr = socket.local_addr().unwrap();
    let port = addr.port();
    let seen: Shared = Arc::new(Mutex::new(Seen {
        refuse: 3,
        ..Seen::default()
    }));
    let receiver = serve(socket, seen.clone()).await;
    let opts = GatewayOpts {
        state_dir: Some(dir.path().join("state")),
        ..GatewayOpts::default()
    };
    let gw = GatewayProc::start_with(dir.path(), 1, &sinks_toml(dir.path(), port), &opts)
        .await
        .unwrap();
    let url = gw.proc.url();
    let mut e0 = gateway_client(&url, &engine_token("e0")).await.unwrap();
    e0.place_order(market_buy("s-1")).await.unwrap();
    e0.place_order(market_buy("s-2")).await.unwrap();
    wait_until("two fills taken", Duration::from_secs(20), || async {
        Ok((seen.lock().unwrap().keys.len() >= 2).then_some(()))
    })
    .await
    .unwrap();
    // One answer is lost: the receiver has the event, the gateway retries it.
    seen.lock().unwrap().lose_answer_once = true;
    e0.place_order(market_buy("s-3")).await.unwrap();
    wait_until(
        "the retry of the lost answer",
        Duration::from_secs(20),
        || async { Ok((seen.lock().unwrap().duplicates >= 1).then_some(())) },
    )
    .await
    .unwrap();

    // The receiver goes down; events keep coming.
    receiver.abort();
    let _ = receiver.await;
    let down = reserve(addr);
    for i in 4..=6 {
        e0.place_order(market_buy(&format!("s-{i}"))).await.unwrap();
    }
    let mut admin = admin_client(&url).await.unwrap();
    wait_until(
        "failures while the receiver is down",
        Duration::from_secs(20),
        || {
            let mut admin = admin.clone();
            async move {
                let r = admin
                    .list_event_sinks(gpb::ListEventSinksRequest {})
                    .await?
                    .into_inner();
                let hook = r.sinks.iter().find(|s| s.name == "hook").unwrap().clone();
                Ok((hook.pending >= 1 && hook.failures >= 4).then_some(hook))
            }
        },
    )
    .await
    .map(|hook| {
        assert!(
            !hook.last_error.contains("127.0.0.1"),
            "no URL in errors: {}",
            hook.last_error
        );
    })
    .unwrap();

    // Back: everything arrives, once, in the order the gateway logged it.
    let _receiver = serve(down, seen.clone()).await;
    let logged = logged_fills(&url).await;
    assert_eq!(logged.len(), 6);
    let lines = |v: &[serde_json::Value], key: &str| -> usize {
        v.iter()
            .map(|m| m[key].as_str().unwrap().lines().count())
            .sum()
    };
    wait_until("all six at every sink", Duration::from_secs(30), || async {
        let s = seen.lock().unwrap();
        Ok((s.keys.len() >= 6
            && lines(&s.slack, "text") >= 6
            && lines(&s.discord, "content") >= 6
            && lines(&s.telegram, "text") >= 6)
            .then_some(()))
    })
    .await
    .unwrap();
    {
        let s = seen.lock().unwrap();
        assert_eq!(s.keys, logged, "each event once, in order");
        assert_eq!(s.bad_signatures, 0);
        assert!(
            s.attempts > 6 + 3,
            "refusals and retries happened: {}",
            s.attempts
        );
        for (b, key) in s.bodies.iter().zip(&s.keys) {
            assert_eq!(b["id"], key.as_str(), "the key is the event id");
            assert_eq!(b["kind"], "fill");
            assert!(b["fields"]["price"].is_string(), "{b}");
        }
        // Chat sinks: documented shapes, the formatted line.
        assert!(!s.slack.is_empty() && !s.discord.is_empty() && !s.telegram.is_empty());
        let slack_keys: HashSet<&str> = s.slack[0]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(slack_keys, HashSet::from(["text"]));
        assert!(
            s.slack[0]["text"]
                .as_str()
                .unwrap()
                .starts_with("[NOTICE] e0 fill: e0 buy 100 DOGEUSD @")
        );
        assert!(
            s.discord[0]["content"]
                .as_str()
                .unwrap()
                .starts_with("[NOTICE] e0 fill:")
        );
        assert_eq!(s.discord[0]["username"], "Herd");
        assert_eq!(s.telegram[0]["chat_id"], "-1001");
        assert!(
            s.telegram[0]["text"]
                .as_str()
                .unwrap()
                .contains("e0 fill: e0 buy 100 DOGEUSD")
        );
        assert_eq!(
            lines(&s.telegram, "text"),
            6,
            "every fill once (batched into messages)"
        );
        assert_eq!(lines(&s.slack, "text"), 6);
        assert_eq!(lines(&s.discord, "content"), 6);
    }
    let metrics = reqwest::get(format!("http://{}/metrics", gw.http_addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("herd_gateway_event_sink_delivered_total{sink=\"hook\"} 6"),
        "{metrics}"
    );
    admin = admin_client(&url).await.unwrap();
    let r = admin
        .list_event_sinks(gpb::ListEventSinksRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(
        r.sinks
            .iter()
            .all(|s| s.pending == 0 && s.dead_letters == 0),
        "{r:?}"
    );
}

#[tokio::test]
async fn undelivered_events_survive_a_gateway_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let socket = reserve(SocketAddr::from(([127, 0, 0, 1], 0)));
    let port = socket.local_addr().unwrap().port();
    let opts = GatewayOpts {
        port: free_port().unwrap(),
        state_dir: Some(dir.path().join("state")),
        ..GatewayOpts::default()
    };
    let toml = sinks_toml(dir.path(), port);
    // Nothing listens at the webhook yet.
    let mut gw = GatewayProc::start_with(dir.path(), 1, &toml, &opts)
        .await
        .unwrap();
    let url = gw.proc.url();
    let mut e0 = gateway_client(&url, &engine_token("e0")).await.unwrap();
    for i in 1..=3 {
        e0.place_order(market_buy(&format!("k-{i}"))).await.unwrap();
    }
    let admin = admin_client(&url).await.unwrap();
    wait_until("three fills waiting", Duration::from_secs(20), || {
        let mut admin = admin.clone();
        async move {
            let r = admin
                .list_event_sinks(gpb::ListEventSinksRequest {})
                .await?
                .into_inner();
            Ok(r.sinks
                .iter()
                .any(|s| s.name == "hook" && s.pending == 3)
                .then_some(()))
        }
    })
    .await
    .unwrap();
    let logged = logged_fills(&url).await;
    gw.proc.kill9().await.unwrap();

    let seen: Shared = Arc::default();
    let _receiver = serve(socket, seen.clone()).await;
    let gw2 = GatewayProc::start_with(dir.path(), 1, &toml, &opts)
        .await
        .unwrap();
    wait_until(
        "the three at the webhook",
        Duration::from_secs(30),
        || async { Ok((seen.lock().unwrap().keys.len() >= 3).then_some(())) },
    )
    .await
    .unwrap();
    assert_eq!(seen.lock().unwrap().keys, logged);
    drop(gw2);
}

/// A sink's pending and dead-letter counts.
async fn outbox(url: &str, sink: &str) -> (u64, u64) {
    let mut admin = admin_client(url).await.unwrap();
    let r = admin
        .list_event_sinks(gpb::ListEventSinksRequest {})
        .await
        .unwrap()
        .into_inner();
    let s = r.sinks.iter().find(|s| s.name == sink).unwrap();
    (s.pending, s.dead_letters)
}

#[tokio::test]
async fn dead_letters_go_back_for_delivery_when_an_operator_asks() {
    let dir = tempfile::tempdir().unwrap();
    let socket = reserve(SocketAddr::from(([127, 0, 0, 1], 0)));
    let port = socket.local_addr().unwrap().port();
    // The receiver refuses everything until it is "fixed".
    let seen: Shared = Arc::new(Mutex::new(Seen {
        refuse: usize::MAX,
        ..Seen::default()
    }));
    let _receiver = serve(socket, seen.clone()).await;
    std::fs::write(dir.path().join("hmac.secret"), SECRET).unwrap();
    let toml = format!(
        "[[events.sinks]]\nname = \"hook\"\ntype = \"webhook\"\nurl = \"http://127.0.0.1:{port}/hook\"\n\
         secret_file = \"{}\"\nkinds = [\"fill\"]\nretry_base_ms = 10\nretry_max_ms = 20\nmax_attempts = 2\n",
        dir.path().join("hmac.secret").display()
    );
    let opts = GatewayOpts {
        state_dir: Some(dir.path().join("state")),
        ..GatewayOpts::default()
    };
    let gw = GatewayProc::start_with(dir.path(), 1, &toml, &opts)
        .await
        .unwrap();
    let url = gw.proc.url();
    let mut e0 = gateway_client(&url, &engine_token("e0")).await.unwrap();
    for i in 1..=3 {
        e0.place_order(market_buy(&format!("d-{i}"))).await.unwrap();
    }
    wait_until("three dead letters", Duration::from_secs(20), || async {
        Ok((outbox(&url, "hook").await == (0, 3)).then_some(()))
    })
    .await
    .unwrap();
    assert_eq!(
        seen.lock().unwrap().attempts,
        6,
        "two attempts each, then dead"
    );
    assert!(seen.lock().unwrap().keys.is_empty());

    // A name that is not a sink is refused, naming the field.
    let mut admin = admin_client(&url).await.unwrap();
    let err = admin
        .redeliver_dead_letters(gpb::RedeliverDeadLettersRequest {
            sink: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().starts_with("sink: "), "{}", err.message());

    // Fixed: the operator puts them back with herdctl; each arrives once,
    // in the order they were logged.
    seen.lock().unwrap().refuse = 0;
    let out = std::process::Command::new(bin_path("herdctl").unwrap())
        .args(["events", "--redeliver-dead", "hook", "--output", "json"])
        .args(["--gateway", &url, "--token", herd_tests::procs::ADMIN_TOKEN])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["requeued"], 3, "{answer}");
    wait_until("the three delivered", Duration::from_secs(20), || async {
        Ok((seen.lock().unwrap().keys.len() >= 3).then_some(()))
    })
    .await
    .unwrap();
    let logged = logged_fills(&url).await;
    assert_eq!(seen.lock().unwrap().keys, logged);
    wait_until("the outbox empty", Duration::from_secs(20), || async {
        Ok((outbox(&url, "hook").await == (0, 0)).then_some(()))
    })
    .await
    .unwrap();
    assert_eq!(seen.lock().unwrap().duplicates, 0);
}

/// Posts a receiver took, with when it took them.
type Posts = Arc<Mutex<Vec<(std::time::Instant, serde_json::Value)>>>;

/// A chat sink with a rate limit and batching: posts are at least the
/// rate's interval apart, hold at most `batch_max` events each, and carry
/// every event once, in order.
#[tokio::test]
async fn a_rate_limited_chat_sink_batches_and_spaces_its_posts() {
    let dir = tempfile::tempdir().unwrap();
    let socket = reserve(SocketAddr::from(([127, 0, 0, 1], 0)));
    let port = socket.local_addr().unwrap().port();
    let posts: Posts = Arc::default();
    let app = Router::new()
        .route(
            "/slack",
            post(|State(p): State<Posts>, body: Bytes| async move {
                p.lock().unwrap().push((
                    std::time::Instant::now(),
                    serde_json::from_slice(&body).unwrap(),
                ));
                StatusCode::OK
            }),
        )
        .with_state(posts.clone());
    let listener = socket.listen(1024).unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    // 120 posts a minute: one every 500 ms; at most 4 events a post.
    let toml = format!(
        "[[events.sinks]]\nname = \"slack\"\ntype = \"slack\"\nurl = \"http://127.0.0.1:{port}/slack\"\n\
         kinds = [\"fill\"]\nrate_per_minute = 120\nbatch_max = 4\n"
    );
    let gw = GatewayProc::start_with(dir.path(), 1, &toml, &GatewayOpts::default())
        .await
        .unwrap();
    let url = gw.proc.url();
    let mut e0 = gateway_client(&url, &engine_token("e0")).await.unwrap();
    const N: usize = 10;
    for i in 1..=N {
        e0.place_order(market_buy(&format!("r-{i}"))).await.unwrap();
    }
    let lines = |p: &[(std::time::Instant, serde_json::Value)]| -> Vec<String> {
        p.iter()
            .flat_map(|(_, v)| {
                v["text"]
                    .as_str()
                    .unwrap()
                    .lines()
                    .map(String::from)
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    wait_until("every fill posted", Duration::from_secs(30), || async {
        Ok((lines(&posts.lock().unwrap()).len() >= N).then_some(()))
    })
    .await
    .unwrap();
    let posts: Vec<_> = posts.lock().unwrap().clone();
    let all = lines(&posts);
    assert_eq!(all.len(), N, "each fill once: {all:#?}");
    // In the order the gateway logged them.
    let mut admin = admin_client(&url).await.unwrap();
    let mut feed = admin
        .stream_herd_events(gpb::StreamHerdEventsRequest {
            kinds: vec!["fill".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut messages = Vec::new();
    while let Some(e) = feed.message().await.unwrap() {
        messages.push(e.message);
    }
    assert_eq!(messages.len(), N);
    for (line, message) in all.iter().zip(&messages) {
        assert!(line.contains("fill: e0 buy 100 DOGEUSD"), "{line}");
        assert!(line.ends_with(message.as_str()), "{line} vs {message}");
    }
    assert!(
        posts.len() >= N.div_ceil(4),
        "at most 4 events a post: {} posts",
        posts.len()
    );
    for (_, v) in posts.iter() {
        let n = v["text"].as_str().unwrap().lines().count();
        assert!((1..=4).contains(&n), "a post of {n} events");
    }
    for w in posts.windows(2) {
        let gap = w[1].0.duration_since(w[0].0);
        // The gateway spaces its sends 500 ms apart; the receiver's clock
        // sees them within a few ms of that.
        assert!(
            gap >= Duration::from_millis(450),
            "posts {gap:?} apart, under the 500 ms the rate allows"
        );
    }
}

#[test]
fn a_bad_sink_config_is_a_clear_start_up_error() {
    let dir = tempfile::tempdir().unwrap();
    let bin = bin_path("herd-gateway").unwrap();
    let cases = [
        (
            "[[events.sinks]]\nname = \"ops\"\ntype = \"webhook\"\nurl = \"htp:/nowhere\"\n",
            "events.sinks[0] (\"ops\").url",
        ),
        (
            "[[events.sinks]]\nname = \"tg\"\ntype = \"telegram\"\nchat_id = \"1\"\ntoken_file = \"/nonexistent/bot.token\"\n",
            "events.sinks[0] (\"tg\").token_file: cannot read /nonexistent/bot.token",
        ),
    ];
    for (toml, want) in cases {
        let path = dir.path().join("gateway.toml");
        std::fs::write(&path, format!("listen = \"127.0.0.1:0\"\n{toml}")).unwrap();
        let out = std::process::Command::new(&bin)
            .arg("--config")
            .arg(&path)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{toml}");
        assert!(err.contains(want), "{want}\n{err}");
        assert!(
            err.contains(&path.display().to_string()),
            "names the file: {err}"
        );
    }
}

/// The NATS server's URL, or None (after saying why) when the test should
/// skip; panics when HERD_REQUIRE_NATS=1 and none answers.
async fn nats_url() -> Option<String> {
    let url = std::env::var("HERD_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let hostport = url.split("://").nth(1).unwrap_or(&url).to_string();
    let reachable = tokio::time::timeout(
        Duration::from_secs(2),
        tokio::net::TcpStream::connect(&hostport),
    )
    .await
    .is_ok_and(|r| r.is_ok());
    if reachable {
        return Some(url);
    }
    if std::env::var("HERD_REQUIRE_NATS").as_deref() == Ok("1") {
        panic!("HERD_REQUIRE_NATS=1 but no NATS server answers at {url} (set HERD_NATS_URL)");
    }
    eprintln!(
        "SKIPPED: no NATS server answers at {url} (set HERD_NATS_URL, or HERD_REQUIRE_NATS=1 to fail)"
    );
    None
}

#[tokio::test]
async fn fills_reach_a_jetstream_stream_once_each_with_their_ids() {
    let Some(nats) = nats_url().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let tag = format!("{}{}", std::process::id(), free_port().unwrap());
    let subject = format!("herdtest.{tag}");
    let stream = format!("HERDTEST_{tag}");
    let toml = format!(
        "[[events.sinks]]\nname = \"bus\"\ntype = \"nats\"\nurl = \"{nats}\"\nsubject = \"{subject}\"\n\
         stream = \"{stream}\"\nmin_severity = \"info\"\nkinds = [\"fill\"]\n"
    );
    let gw = GatewayProc::start(dir.path(), 1, &toml).await.unwrap();
    let url = gw.proc.url();
    let mut e0 = gateway_client(&url, &engine_token("e0")).await.unwrap();
    e0.place_order(market_buy("n-1")).await.unwrap();
    e0.place_order(market_buy("n-2")).await.unwrap();

    let js = async_nats::jetstream::new(async_nats::connect(&nats).await.unwrap());
    let mut st = wait_until(
        "two messages in the sink's stream",
        Duration::from_secs(20),
        || {
            let (js, name) = (js.clone(), stream.clone());
            async move {
                let Ok(mut st) = js.get_stream(&name).await else {
                    return Ok(None);
                };
                let n = st.info().await?.state.messages;
                Ok((n >= 2).then_some(st))
            }
        },
    )
    .await
    .unwrap();
    let logged = logged_fills(&url).await;
    let mut got = Vec::new();
    for seq in 1..=2 {
        let m = st.get_raw_message(seq).await.unwrap();
        assert_eq!(m.subject.as_str(), format!("{subject}.fill"));
        let body: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
        let id = m.headers.get("Nats-Msg-Id").unwrap().as_str().to_string();
        assert_eq!(body["id"], id.as_str(), "the dedup id is the event id");
        got.push(id);
    }
    assert_eq!(got, logged, "in the log's order");
    assert_eq!(st.info().await.unwrap().state.messages, 2, "each once");
    let admin = admin_client(&url).await.unwrap();
    let r = admin
        .clone()
        .list_event_sinks(gpb::ListEventSinksRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.sinks[0].kind, "nats");
    assert_eq!(r.sinks[0].pending, 0);
    js.delete_stream(&stream).await.unwrap();
}
