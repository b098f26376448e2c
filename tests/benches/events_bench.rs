//! Benchmark (not a timed test) of a critical herd event's trip (issue 17):
//! from the operator's EmergencyStop call to an engine until the event's
//! webhook delivery arrives at a receiver on loopback. The path: the
//! engine's outbox (SQLite, synchronous = FULL) -> PublishHerdEvents -> the
//! gateway's event log (one transaction that also fills the sink outbox) ->
//! the sink task -> HTTP POST with its HMAC signature. Prints p50 / p99 /
//! max over `HERD_EVENTS_N` (default 200) stops after 20 warm-up ones.
//!
//! ```text
//! cargo bench -p herd-tests --bench events_bench
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use herd_tests::load::quantile;
use herd_tests::procs::{EngineProc, GatewayOpts, GatewayProc, engine_client};
use tokio::sync::mpsc;

async fn hook(
    State(tx): State<mpsc::UnboundedSender<(String, Instant)>>,
    body: Bytes,
) -> StatusCode {
    let at = Instant::now();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let _ = tx.send((v["message"].as_str().unwrap_or_default().to_string(), at));
    StatusCode::OK
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("HERD_EVENTS_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let warm = 20;
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let app = Router::new().route("/hook", post(hook)).with_state(tx);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    std::fs::write(dir.path().join("secret"), "bench-secret").unwrap();
    let sinks = format!(
        "[[events.sinks]]\nname = \"ops\"\ntype = \"webhook\"\nurl = \"http://127.0.0.1:{port}/hook\"\n\
         secret_file = \"{}\"\nmin_severity = \"critical\"\nkinds = [\"emergency_stop\"]\n",
        dir.path().join("secret").display()
    );
    let opts = GatewayOpts {
        state_dir: Some(dir.path().join("state")),
        ..GatewayOpts::default()
    };
    let gw = GatewayProc::start_with(dir.path(), 1, &sinks, &opts)
        .await
        .unwrap();
    let engine = EngineProc::start(dir.path(), "e0", &gw.proc.addr, "")
        .await
        .unwrap();
    let mut ctl = engine_client(&engine.proc.url()).await.unwrap();
    let mut ms = Vec::with_capacity(n);
    for i in 0..warm + n {
        let reason = format!("bench {i}");
        let t0 = Instant::now();
        ctl.emergency_stop(herd_proto::engine::EmergencyStopRequest {
            reason: reason.clone(),
        })
        .await
        .unwrap();
        let want = format!("emergency stop: {reason}");
        let at = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                let (msg, at) = rx.recv().await.unwrap();
                if msg == want {
                    return at;
                }
            }
        })
        .await
        .expect("the webhook got the event");
        if i >= warm {
            ms.push(at.duration_since(t0).as_secs_f64() * 1000.0);
        }
    }
    ms.sort_by(f64::total_cmp);
    println!(
        "critical event (emergency stop) -> loopback webhook, n = {n}: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        quantile(&ms, 0.50),
        quantile(&ms, 0.99),
        ms.last().copied().unwrap_or(f64::NAN)
    );
}
