//! Benchmark (not a timed test) of one gateway serving many engines
//! (issue 9). Prints a table. Sections:
//!
//! - (a) PlaceOrder latency, p50 / p99, sequential, loopback: the paper
//!   venue called in-process; the same orders through a `herd-gateway`
//!   process on the paper venue; and, as the floor, a bare tonic echo service
//!   (this binary re-run as a process, one unary method taking a
//!   PlaceOrderRequest and answering a PlaceOrderResponse of the same size
//!   as the gateway's).
//! - (b) Throughput with concurrent clients: order RPCs through the gateway
//!   beside the echo service.
//! - (c) Polling cost: see `tests/benches/kraken_poll.rs` (docs/benchmarks.md).
//! - (d) RSS (VmRSS / VmHWM from /proc) of the gateway and of an engine
//!   process idle and after load (the engine journals the event stream of
//!   the orders placed under its token during (b)).
//! - (e) Issue 9's load scenario on kraken-sim at Starter for
//!   `HERD_LOAD_SECS` (default 60) seconds: grants and shares per engine,
//!   rate-limit answers, gateway peak RSS.
//!
//! ```text
//! cargo bench -p herd-tests --bench gateway_bench
//! # (a) alone, e.g. to profile the sequential path with perf on the gateway:
//! HERD_BENCH_ONLY_A=1 cargo bench -p herd-tests --bench gateway_bench
//! # against binaries built apart (no build; e.g. two builds, alternately):
//! HERD_BIN_DIR=/tmp/build-a cargo bench -p herd-tests --bench gateway_bench
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use herd_paper::PaperVenue;
use herd_proto::gateway as pb;
use herd_tests::kraken_harness::SimProcess;
use herd_tests::load::{self, LoadRun, quantile, rss_kib};
use herd_tests::{EngineProc, GatewayProc, Proc, admin_client, engine_token, gateway_client};
use herd_venue::{Clock, NewOrder, OrderType, Side, SystemClock, Venue};
use rust_decimal::Decimal;
use tonic::codegen::{BoxFuture, StdError, http};
use tonic::transport::Channel;

const ECHO_ENV: &str = "HERD_BENCH_ECHO";
const ECHO_PATH: &str = "/herd.bench.Echo/Place";
const WARMUP: usize = 200;
const SAMPLES: usize = 3_000;
const CONCURRENCY: usize = 32;
const THROUGHPUT_SECS: u64 = 5;

/// The echo's one unary method: answers the order the request describes.
#[derive(Clone)]
struct EchoPlace;

fn echo_answer(r: &pb::PlaceOrderRequest) -> pb::PlaceOrderResponse {
    pb::PlaceOrderResponse {
        order: Some(pb::Order {
            client_order_id: r.client_order_id.clone(),
            venue_order_id: "OU22CG-KLAF2-FWUDD7".into(),
            symbol: r.symbol.clone(),
            side: r.side,
            order_type: r.order_type,
            status: pb::OrderStatus::Filled as i32,
            volume: r.volume.clone(),
            volume_executed: r.volume.clone(),
            price: r.price.clone(),
            average_price: r.price.clone(),
            fee: "0.0312".into(),
            userref: 1000,
            opened_at_ms: 1_763_700_000_000,
            closed_at_ms: 1_763_700_000_001,
            ..Default::default()
        }),
    }
}

impl tonic::server::UnaryService<pb::PlaceOrderRequest> for EchoPlace {
    type Response = pb::PlaceOrderResponse;
    type Future = BoxFuture<tonic::Response<pb::PlaceOrderResponse>, tonic::Status>;
    fn call(&mut self, req: tonic::Request<pb::PlaceOrderRequest>) -> Self::Future {
        let answer = echo_answer(req.get_ref());
        Box::pin(async move { Ok(tonic::Response::new(answer)) })
    }
}

/// A minimal tonic service with that one method.
#[derive(Clone)]
struct Echo;

impl tonic::server::NamedService for Echo {
    const NAME: &'static str = "herd.bench.Echo";
}

impl<B> tonic::codegen::Service<http::Request<B>> for Echo
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        Box::pin(async move {
            if req.uri().path() != ECHO_PATH {
                return Ok(tonic::Status::unimplemented("no such method").into_http());
            }
            let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
            Ok(grpc.unary(EchoPlace, req).await)
        })
    }
}

async fn serve_echo() {
    let (incoming, local) = herd_proto::serving::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    println!("herd-bench-echo listening on {local}");
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(Echo)
        .serve_with_incoming(incoming)
        .await
        .unwrap();
}

async fn echo_call(
    grpc: &mut tonic::client::Grpc<Channel>,
    req: pb::PlaceOrderRequest,
) -> Result<pb::PlaceOrderResponse, tonic::Status> {
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let codec: tonic_prost::ProstCodec<pb::PlaceOrderRequest, pb::PlaceOrderResponse> =
        tonic_prost::ProstCodec::default();
    let path = http::uri::PathAndQuery::from_static(ECHO_PATH);
    Ok(grpc
        .unary(tonic::Request::new(req), path, codec)
        .await?
        .into_inner())
}

async fn channel(url: &str) -> Channel {
    tonic::transport::Endpoint::from_shared(url.to_string())
        .unwrap()
        .tcp_nodelay(true)
        .connect()
        .await
        .unwrap()
}

/// The n-th order: alternately buying above and selling below the market,
/// so it fills at once and the balances stay level.
fn request(n: usize) -> pb::PlaceOrderRequest {
    let buy = n.is_multiple_of(2);
    pb::PlaceOrderRequest {
        client_order_id: format!("b{n}"),
        symbol: "DOGEUSD".into(),
        side: if buy { pb::Side::Buy } else { pb::Side::Sell } as i32,
        order_type: pb::OrderType::Limit as i32,
        volume: "100".into(),
        price: if buy { "0.2" } else { "0.05" }.into(),
        post_only: false,
        userref: 0,
        reduce_only: false,
        strategy: String::new(),
    }
}

fn new_order(n: usize, prefix: &str) -> NewOrder {
    let r = request(n);
    NewOrder {
        client_order_id: format!("{prefix}{}", r.client_order_id),
        symbol: r.symbol,
        side: if n.is_multiple_of(2) {
            Side::Buy
        } else {
            Side::Sell
        },
        order_type: OrderType::Limit,
        volume: Decimal::from(100),
        price: Some(r.price.parse().unwrap()),
        post_only: false,
        userref: 1000,
        reduce_only: false,
    }
}

/// Latencies (ms) of `SAMPLES` sequential calls after `WARMUP`.
async fn sequential<F, Fut>(mut call: F) -> Vec<f64>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for n in 0..WARMUP {
        call(n).await;
    }
    let mut out = Vec::with_capacity(SAMPLES);
    for n in WARMUP..WARMUP + SAMPLES {
        let t = Instant::now();
        call(n).await;
        out.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    out.sort_by(f64::total_cmp);
    out
}

/// CPU time (user + system) a process has used so far, in seconds, from
/// `/proc/<pid>/stat` (clock ticks of 10 ms on Linux: read it around
/// thousands of calls). A wall-clock-free measure of the work per call,
/// steadier than latency on a shared machine.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces): state is the
    // 3rd field, utime the 14th, stime the 15th.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

/// Calls per second with `CONCURRENCY` callers for `THROUGHPUT_SECS`.
async fn throughput<F, Fut>(call: F) -> f64
where
    F: Fn(usize, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let call = Arc::new(call);
    let deadline = Instant::now() + Duration::from_secs(THROUGHPUT_SECS);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for k in 0..CONCURRENCY {
        let call = call.clone();
        tasks.push(tokio::spawn(async move {
            let mut ok = 0u64;
            let mut n = 0;
            while Instant::now() < deadline {
                if call(k, 1_000_000 + k * 100_000 + n).await {
                    ok += 1;
                }
                n += 1;
            }
            ok
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    total as f64 / started.elapsed().as_secs_f64()
}

fn print_rows(rows: &[(String, String)]) {
    let width = rows.iter().map(|r| r.0.len()).max().unwrap_or(10);
    println!();
    println!("| {:width$} | result |", "measure");
    println!("|{}|---:|", "-".repeat(width + 2));
    for (k, v) in rows {
        println!("| {k:width$} | {v} |");
    }
    println!();
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    if std::env::var_os(ECHO_ENV).is_some() {
        rt.block_on(serve_echo());
    } else {
        rt.block_on(bench());
    }
}

/// Risk on (issue 16): every per-order, per-engine and account check runs
/// (the price band against the ticker included), with limits this load
/// never reaches, so each order pays for the checks and none is denied.
fn risk_limits(engines: usize) -> String {
    let limits = "max_order_notional = \"1000000\"\nmax_order_volume = \"10000000\"\n\
                  price_band_pct = \"500\"\nmax_open_orders = 100000\n\
                  max_open_orders_per_instrument = 100000\n\
                  max_exposure_per_instrument = \"100000000\"\nmax_gross_exposure = \"100000000\"\n\
                  max_orders_per_window = 1000000\norder_window_ms = 1000\n\
                  max_daily_loss = \"100000000\"\nmax_drawdown = \"100000000\"\n";
    let mut toml = format!("[risk.account]\n{limits}");
    for i in 0..engines {
        toml.push_str(&format!("[risk.engines.e{i}]\n{limits}"));
    }
    toml
}

async fn bench() {
    let dir = tempfile::TempDir::new().unwrap();
    let mut rows: Vec<(String, String)> = Vec::new();

    // The processes, idle.
    let opts = herd_tests::procs::GatewayOpts {
        venue_slots: std::env::var("HERD_BENCH_SLOTS")
            .ok()
            .and_then(|v| v.parse().ok()),
        ..Default::default()
    };
    // Balances deep enough that no caller of (a) + (b) runs out of funds:
    // every call must be a real placement, not a quick refusal.
    let extra = format!(
        "{}[paper]\nbalances = {{ USD = \"1000000000\", DOGE = \"10000000000\" }}\n",
        risk_limits(10)
    );
    let gw = GatewayProc::start_with(dir.path(), 10, &extra, &opts)
        .await
        .unwrap();
    let gw_pid = gw.proc.child.id().unwrap();
    let engine = EngineProc::start(dir.path(), "e0", &gw.proc.addr, "")
        .await
        .unwrap();
    let engine_pid = engine.proc.child.id().unwrap();
    let echo_log = dir.path().join("echo.log");
    let echo = Proc::start(
        &std::env::current_exe().unwrap(),
        &[],
        &echo_log,
        &[(ECHO_ENV, "1")],
    )
    .await
    .unwrap();
    let e0 = gateway_client(&gw.proc.url(), &engine_token("e0"))
        .await
        .unwrap();
    // Let the engine connect its stream and settle before the idle reading.
    herd_tests::wait_until("the engine's stream", Duration::from_secs(30), || {
        let url = gw.proc.url();
        async move {
            let mut admin = admin_client(&url).await?;
            let list = admin
                .list_engines(pb::ListEnginesRequest {})
                .await?
                .into_inner();
            Ok(list
                .engines
                .iter()
                .any(|e| e.engine_id == "e0" && e.stream_connected)
                .then_some(()))
        }
    })
    .await
    .unwrap();
    let gw_idle = rss_kib(gw_pid).unwrap();
    let engine_idle = rss_kib(engine_pid).unwrap();

    // (a) latency.
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let paper = PaperVenue::new(
        &herd_gateway::config::PaperSection::default().exchange,
        clock,
    );
    let direct = sequential(|n| {
        let paper = paper.clone();
        async move {
            paper.place_order(&new_order(n, "e0-")).await.unwrap();
        }
    })
    .await;
    let gw_cpu = cpu_secs(gw_pid);
    let through = sequential(|n| {
        let mut c = e0.clone();
        async move {
            c.place_order(request(n)).await.unwrap();
        }
    })
    .await;
    let gw_cpu_a = cpu_secs(gw_pid) - gw_cpu;
    let echo_pid = echo.child.id().unwrap();
    let echo_ch = channel(&echo.url()).await;
    let echo_cpu = cpu_secs(echo_pid);
    let floor = sequential(|n| {
        let mut g = tonic::client::Grpc::new(echo_ch.clone());
        async move {
            echo_call(&mut g, request(n)).await.unwrap();
        }
    })
    .await;
    let echo_cpu_a = cpu_secs(echo_pid) - echo_cpu;
    let calls_a = (WARMUP + SAMPLES) as f64;
    let p = |v: &[f64], q| format!("{:.3}", quantile(v, q));
    rows.push((
        "(a) PlaceOrder latency, paper venue in-process, p50 / p99 (ms)".into(),
        format!("{} / {}", p(&direct, 0.5), p(&direct, 0.99)),
    ));
    rows.push((
        "(a) PlaceOrder latency through herd-gateway (paper), p50 / p99 (ms)".into(),
        format!("{} / {}", p(&through, 0.5), p(&through, 0.99)),
    ));
    rows.push((
        "(a) bare tonic echo, same message sizes, p50 / p99 (ms)".into(),
        format!("{} / {}", p(&floor, 0.5), p(&floor, 0.99)),
    ));
    rows.push((
        "(a) gateway added over in-process venue, p50 (ms)".into(),
        format!("{:.3}", quantile(&through, 0.5) - quantile(&direct, 0.5)),
    ));
    rows.push((
        "(a) gateway over the echo floor, p50 (ms)".into(),
        format!("{:.3}", quantile(&through, 0.5) - quantile(&floor, 0.5)),
    ));
    rows.push((
        "(a) CPU per call (user + system, /proc): herd-gateway / echo (us)".into(),
        format!(
            "{:.0} / {:.0}",
            gw_cpu_a / calls_a * 1e6,
            echo_cpu_a / calls_a * 1e6
        ),
    ));
    let probe = request(1);
    rows.push((
        "(a) message sizes: PlaceOrderRequest / echo answer (bytes)".into(),
        format!(
            "{} / {}",
            prost::Message::encoded_len(&probe),
            prost::Message::encoded_len(&echo_answer(&probe))
        ),
    ));
    drop(e0);
    if std::env::var_os("HERD_BENCH_ONLY_A").is_some() {
        // Profiling the sequential path alone (perf on the gateway's pid).
        print_rows(&rows);
        return;
    }

    // (b) throughput, CONCURRENCY callers spread over the ten engines' tokens.
    let mut clients = Vec::new();
    for k in 0..10 {
        clients.push(
            gateway_client(&gw.proc.url(), &engine_token(&format!("e{k}")))
                .await
                .unwrap(),
        );
    }
    let clients = Arc::new(clients);
    let errors = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let errs = errors.clone();
    let first_error: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
    let first = first_error.clone();
    let gw_cpu = cpu_secs(gw_pid);
    let gw_started = Instant::now();
    let gw_rps = throughput(move |k, n| {
        let mut c = clients[k % 10].clone();
        let errs = errs.clone();
        let first = first.clone();
        async move {
            let r = c.place_order(request(n)).await;
            if let Err(e) = &r {
                errs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                first
                    .lock()
                    .unwrap()
                    .get_or_insert_with(|| format!("{:?}: {}", e.code(), e.message()));
            }
            r.is_ok()
        }
    })
    .await;
    let gw_cpu_b = cpu_secs(gw_pid) - gw_cpu;
    let gw_calls_b = gw_rps * gw_started.elapsed().as_secs_f64();
    let echo_chs: Vec<Channel> = {
        let mut v = Vec::new();
        for _ in 0..10 {
            v.push(channel(&echo.url()).await);
        }
        v
    };
    let echo_chs = Arc::new(echo_chs);
    let echo_cpu = cpu_secs(echo_pid);
    let echo_started = Instant::now();
    let echo_rps = throughput(move |k, n| {
        let mut g = tonic::client::Grpc::new(echo_chs[k % 10].clone());
        async move { echo_call(&mut g, request(n)).await.is_ok() }
    })
    .await;
    let echo_cpu_b = cpu_secs(echo_pid) - echo_cpu;
    let echo_calls_b = echo_rps * echo_started.elapsed().as_secs_f64();
    rows.push((
        format!("(b) PlaceOrder through herd-gateway, {CONCURRENCY} concurrent callers (calls/s)"),
        format!(
            "{gw_rps:.0} ({} errors{})",
            errors.load(std::sync::atomic::Ordering::Relaxed),
            first_error
                .lock()
                .unwrap()
                .as_ref()
                .map(|e| format!("; first: {e}"))
                .unwrap_or_default()
        ),
    ));
    rows.push((
        format!("(b) bare tonic echo, {CONCURRENCY} concurrent callers (calls/s)"),
        format!("{echo_rps:.0}"),
    ));
    rows.push((
        "(b) CPU per successful call: herd-gateway / echo (us)".into(),
        format!(
            "{:.0} / {:.0}",
            gw_cpu_b / gw_calls_b * 1e6,
            echo_cpu_b / echo_calls_b * 1e6
        ),
    ));

    // (d) memory after load; the engine journals e0's share of the events.
    let engine_seq = {
        let mut admin = admin_client(&gw.proc.url()).await.unwrap();
        let last = admin
            .list_engines(pb::ListEnginesRequest {})
            .await
            .unwrap()
            .into_inner()
            .engines
            .into_iter()
            .find(|e| e.engine_id == "e0")
            .map_or(0, |e| e.last_sequence);
        let ec = herd_tests::engine_client(&engine.proc.url()).await.unwrap();
        herd_tests::wait_until(
            "the engine to journal e0's events",
            Duration::from_secs(120),
            || {
                let mut ec = ec.clone();
                async move {
                    let st = ec
                        .get_status(herd_proto::engine::GetStatusRequest {})
                        .await?
                        .into_inner();
                    Ok((st.last_event_sequence >= last).then_some(st.last_event_sequence))
                }
            },
        )
        .await
        .unwrap();
        last
    };
    let gw_loaded = rss_kib(gw_pid).unwrap();
    let engine_loaded = rss_kib(engine_pid).unwrap();
    rows.push((
        "(d) herd-gateway RSS idle / after (a)+(b), VmRSS (MiB)".into(),
        format!("{:.1} / {:.1}", mib(gw_idle.1), mib(gw_loaded.1)),
    ));
    rows.push((
        "(d) herd-gateway peak RSS (VmHWM, MiB)".into(),
        format!("{:.1}", mib(gw_loaded.0)),
    ));
    rows.push((
        format!("(d) herd-engine RSS idle / after journaling {engine_seq} events, VmRSS (MiB)"),
        format!("{:.1} / {:.1}", mib(engine_idle.1), mib(engine_loaded.1)),
    ));
    rows.push((
        "(d) herd-engine peak RSS (VmHWM, MiB)".into(),
        format!("{:.1}", mib(engine_loaded.0)),
    ));
    drop(engine);
    drop(gw);
    drop(echo);

    // (e) issue 9's load scenario at Starter.
    let secs = std::env::var("HERD_LOAD_SECS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(60);
    let sim = SimProcess::spawn(
        Path::new(env!("CARGO_BIN_EXE_kraken-sim")),
        "starter",
        &["--extra-pairs", &load::EXTRA_PAIRS.to_string()],
    )
    .await
    .unwrap();
    let kdir = tempfile::TempDir::new().unwrap();
    let engines = load::engines();
    let (kgw, _) = load::start_kraken_gateway(kdir.path(), &sim.url(), &engines)
        .await
        .unwrap();
    let kpid = kgw.child.id().unwrap();
    let kidle = rss_kib(kpid).unwrap();
    let mut admin = admin_client(&kgw.url()).await.unwrap();
    let run = LoadRun::start(&kgw.url(), &engines, 100).await.unwrap();
    let before = load::wait_for_backlog(&admin, 10).await.unwrap();
    let start = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    while start.elapsed() < Duration::from_secs(secs) {
        tick.tick().await;
    }
    let after = load::grants(&mut admin).await.unwrap();
    let tallies = run.stop().await.unwrap();
    let stats = sim.admin().stats().await.unwrap();
    let khwm = rss_kib(kpid).unwrap();
    let shares = load::shares(&engines, &before, &after);
    let total: u64 = shares.iter().map(|s| s.2).sum();
    let worst = shares
        .iter()
        .map(|(_, _, _, s, w)| (s - w).abs() / w)
        .fold(0.0, f64::max);
    let sent: u64 = tallies.iter().map(|(_, t)| t.sent).sum();
    let exhausted: u64 = tallies.iter().map(|(_, t)| t.exhausted).sum();
    let no_hint: u64 = tallies.iter().map(|(_, t)| t.exhausted_without_hint).sum();
    let cancelled: u64 = tallies.iter().map(|(_, t)| t.cancelled).sum();
    rows.push((
        format!("(e) Starter load, 10 engines x 100 req/s, {secs} s window: venue calls granted"),
        format!("{total} ({:.1}/s)", total as f64 / secs as f64),
    ));
    rows.push((
        "(e) worst engine share vs weighted share (relative)".into(),
        format!("{:.1} %", worst * 100.0),
    ));
    rows.push((
        "(e) requests sent / RESOURCE_EXHAUSTED / without retry hint / cancels done".into(),
        format!("{sent} / {exhausted} / {no_hint} / {cancelled}"),
    ));
    rows.push((
        "(e) rate-limit answers at kraken-sim".into(),
        format!("{}", stats["stats"]["rate_limit_errors"]),
    ));
    rows.push((
        "(e) herd-gateway RSS idle / peak under load (MiB)".into(),
        format!("{:.1} / {:.1}", mib(kidle.1), mib(khwm.0)),
    ));

    print_rows(&rows);
    println!("(e) per engine: id weight grants share wanted");
    for (id, w, g, s, want) in &shares {
        println!("  {id} {w} {g} {s:.4} {want:.4}");
    }
}
