//! The fault matrix: a herd of real processes (kraken-sim as the venue,
//! herd-gateway on it, two herd-engines) takes one fault per test: venue
//! 5xx bursts, timeouts after accept, connection resets, rate-limit answers,
//! a temporary lockout, the gateway killed with -9 and restarted, an engine
//! killed with -9 and restarted, the engine's database connections killed
//! (Postgres when TEST_DATABASE_URL is set; otherwise the SQLite variant,
//! which says so). Orders go through the engines' SubmitOrder / CancelOrder,
//! fills come from the simulator's market. After each fault the herd must
//! converge to: no duplicate order at the venue, no lost fill (every
//! executed volume journaled exactly once), no lost journal row, no order of
//! one engine touched by another ([`KrakenHerd::check`]).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use herd_tests::kraken_herd::{CheckReport, HerdOpts, KrakenHerd, StoreKind};
use herd_tests::wait_until;
use rust_decimal::Decimal;
use serde_json::json;
use tonic::Code;

const CONVERGE: Duration = Duration::from_secs(40);

fn sim_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_kraken-sim"))
}

async fn herd(opts: HerdOpts) -> KrakenHerd {
    KrakenHerd::start(sim_bin(), opts).await.unwrap()
}

/// Distinct resting prices: engine `i`'s `n`-th order.
fn price(i: usize, n: usize) -> String {
    format!("0.{}", 1100 - i * 50 - n)
}

/// Every engine places `n` resting buys; returns their ids per engine.
async fn baseline(h: &KrakenHerd, n: usize) -> Vec<Vec<String>> {
    let mut ids = Vec::new();
    for i in 0..h.engines.len() {
        let mut mine = Vec::new();
        for k in 0..n {
            mine.push(h.submit_ok(i, &price(i, k)).await.unwrap());
        }
        ids.push(mine);
    }
    ids
}

/// Submits `n` orders through engine `i` while a fault is armed; returns
/// the answers (accepted ones are open or pending).
async fn submit_through_fault(
    h: &KrakenHerd,
    i: usize,
    first: usize,
    n: usize,
) -> Vec<Result<String, tonic::Status>> {
    let mut out = Vec::new();
    for k in first..first + n {
        out.push(
            h.submit(i, &price(i, k))
                .await
                .unwrap()
                .map(|r| r.client_order_id),
        );
    }
    out
}

fn no_cancels(h: &KrakenHerd) -> Vec<BTreeSet<String>> {
    vec![BTreeSet::new(); h.engines.len()]
}

async fn faults_applied(h: &KrakenHerd) -> u64 {
    h.admin().stats().await.unwrap()["stats"]["faults_applied"]
        .as_u64()
        .unwrap()
}

/// Every order resting when the market trades through filled; the report
/// says what converged.
fn assert_filled(report: &CheckReport, canceled: usize) {
    let at_venue: usize = report.venue_orders.values().sum();
    assert_eq!(
        report.executed_orders,
        at_venue - canceled,
        "every resting order filled: {report:?}"
    );
    assert_eq!(
        report.executed_volume,
        Decimal::from(100 * (at_venue - canceled)),
        "{report:?}"
    );
    let fills: usize = report.fills.values().sum();
    assert!(fills >= report.executed_orders, "{report:?}");
}

/// Arms `rules`, submits through them, clears them, cancels one order of
/// engine 0, trades through every buy and waits for the invariants.
/// Returns the report and the submit answers per engine.
async fn run_fault(
    h: &KrakenHerd,
    rules: serde_json::Value,
    per_engine: usize,
) -> (
    CheckReport,
    Vec<Vec<Result<String, tonic::Status>>>,
    Vec<BTreeSet<String>>,
) {
    let ids = baseline(h, 2).await;
    h.admin().set_faults(rules).await.unwrap();
    let mut answers = Vec::new();
    for i in 0..h.engines.len() {
        answers.push(submit_through_fault(h, i, 2, per_engine).await);
    }
    assert!(faults_applied(h).await > 0, "the faults fired");
    h.admin().clear_faults().await.unwrap();
    let mut asked = no_cancels(h);
    h.cancel(0, &ids[0][0]).await.unwrap().unwrap();
    asked[0].insert(ids[0][0].clone());
    h.fill_all().await.unwrap();
    let report = h.converge(CONVERGE, &asked).await.unwrap();
    assert_filled(&report, 1);
    eprintln!("report: {report:?}");
    (report, answers, asked)
}

fn count(answers: &[Vec<Result<String, tonic::Status>>], code: Code) -> usize {
    answers
        .iter()
        .flatten()
        .filter(|a| a.as_ref().err().map(tonic::Status::code) == Some(code))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn venue_5xx_bursts() {
    let start = Instant::now();
    let h = herd(HerdOpts::default()).await;
    let (report, _, _) = run_fault(
        &h,
        json!([
            // Refused by a proxy before Kraken saw it: never placed.
            {"method": "AddOrder", "kind": {"type": "http_status", "status": 502}, "every": 2, "times": 2},
            // Placed, then the proxy answered 503: the outcome is unknown.
            {"method": "AddOrder", "kind": {"type": "http_status", "status": 503}, "after_processing": true, "every": 3, "times": 2},
            {"method": "OpenOrders", "kind": {"type": "http_status", "status": 500}, "times": 3},
            {"method": "QueryOrders", "kind": {"type": "http_status", "status": 504}, "times": 2},
            {"method": "CancelOrder", "kind": {"type": "http_status", "status": 502}, "times": 1}
        ]),
        5,
    )
    .await;
    let rejected: usize = report.rejected.values().sum();
    assert!(
        rejected >= 2,
        "the submits the proxy refused are journaled rejected: {report:?}"
    );
    eprintln!("venue_5xx_bursts took {:?}", start.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_after_accept() {
    let start = Instant::now();
    // The gateway waits 1 s for Kraken; the sim answers after 1.5 s.
    let h = herd(HerdOpts {
        request_timeout_ms: 1_000,
        ..HerdOpts::default()
    })
    .await;
    let (report, answers, _) = run_fault(
        &h,
        json!([
            {"method": "AddOrder", "kind": {"type": "delay_answer", "ms": 1500}, "every": 2, "times": 3}
        ]),
        3,
    )
    .await;
    // Every submit that timed out was accepted by the venue: none rejected,
    // each at the venue exactly once.
    assert_eq!(report.rejected.values().sum::<usize>(), 0, "{report:?}");
    let accepted = answers.iter().flatten().filter(|a| a.is_ok()).count();
    assert_eq!(
        report.venue_orders.values().sum::<usize>(),
        accepted + 2 * h.engines.len(),
        "{answers:?}"
    );
    eprintln!("timeouts_after_accept took {:?}", start.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_resets() {
    let start = Instant::now();
    let h = herd(HerdOpts::default()).await;
    let (report, _, _) = run_fault(
        &h,
        json!([
            // Reset before Kraken saw it: never placed.
            {"method": "AddOrder", "kind": {"type": "reset"}, "every": 3, "times": 2},
            // Placed, then the connection was reset: the answer is lost.
            {"method": "AddOrder", "kind": {"type": "lose_response"}, "every": 2, "times": 2},
            {"method": "OpenOrders", "kind": {"type": "reset"}, "every": 2, "times": 3},
            {"method": "QueryOrders", "kind": {"type": "lose_response"}, "times": 2}
        ]),
        5,
    )
    .await;
    assert!(
        report.rejected.values().sum::<usize>() >= 1,
        "a submit reset before the venue saw it ends rejected: {report:?}"
    );
    eprintln!("connection_resets took {:?}", start.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_answers() {
    let start = Instant::now();
    let h = herd(HerdOpts::default()).await;
    let (report, answers, asked) = run_fault(
        &h,
        json!([
            {"method": "AddOrder", "kind": {"type": "error", "error": "EOrder:Rate limit exceeded"}, "every": 2, "times": 2},
            {"method": "AddOrder", "kind": {"type": "error", "error": "EAPI:Rate limit exceeded"}, "times": 1},
            {"method": "OpenOrders", "kind": {"type": "error", "error": "EAPI:Rate limit exceeded"}, "times": 2},
            {"method": "QueryOrders", "kind": {"type": "error", "error": "EAPI:Rate limit exceeded"}, "times": 1}
        ]),
        4,
    )
    .await;
    // A scattered rate-limit answer is refused before it takes effect, so
    // the gateway repeats the call once its budget allows: the engines never
    // see it, and the venue still has each order once (checked above).
    assert_eq!(count(&answers, Code::ResourceExhausted), 0, "{answers:?}");
    assert!(
        h.admin().rate_limit_errors().await.unwrap() >= 5,
        "the rate-limit answers were given"
    );
    assert_eq!(report.rejected.values().sum::<usize>(), 0, "{report:?}");
    // A venue that keeps answering "rate limit" outlasts the retries: the
    // engine gets RESOURCE_EXHAUSTED and journals the order rejected.
    h.admin()
        .set_faults(json!([
            {"method": "AddOrder", "kind": {"type": "error", "error": "EOrder:Rate limit exceeded"}}
        ]))
        .await
        .unwrap();
    let refused = h.submit(1, "0.05").await.unwrap().unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(refused.message().contains("ate limit"), "{refused:?}");
    h.admin().clear_faults().await.unwrap();
    // After the burst orders flow again.
    wait_until(
        "a submit to pass again",
        Duration::from_secs(20),
        || async { Ok(h.submit(1, "0.05").await?.ok()) },
    )
    .await
    .unwrap();
    let report = h.converge(CONVERGE, &asked).await.unwrap();
    assert!(report.rejected["e1"] >= 1, "{report:?}");
    eprintln!("rate_limit_answers took {:?}", start.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporary_lockout() {
    let start = Instant::now();
    let h = herd(HerdOpts::default()).await;
    let ids = baseline(&h, 2).await;
    h.admin().lockout(1_500).await.unwrap();
    let refused = h.submit(0, &price(0, 5)).await.unwrap().unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    let other = h.submit(1, &price(1, 5)).await.unwrap().unwrap_err();
    assert_eq!(other.code(), Code::ResourceExhausted, "{other:?}");
    // The gateway does not keep knocking while locked: one lockout answer.
    assert_eq!(
        h.admin().stats().await.unwrap()["stats"]["lockout_errors"],
        1
    );
    wait_until("the lockout to end", Duration::from_secs(20), || async {
        Ok(h.submit(0, &price(0, 6)).await?.ok())
    })
    .await
    .unwrap();
    let mut asked = no_cancels(&h);
    h.cancel(1, &ids[1][1]).await.unwrap().unwrap();
    asked[1].insert(ids[1][1].clone());
    h.fill_all().await.unwrap();
    let report = h.converge(CONVERGE, &asked).await.unwrap();
    assert_filled(&report, 1);
    assert!(
        report.rejected["e0"] >= 1 && report.rejected["e1"] >= 1,
        "{report:?}"
    );
    eprintln!("temporary_lockout took {:?}: {report:?}", start.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_kill9_and_restart() {
    let start = Instant::now();
    let mut h = herd(HerdOpts::default()).await;
    let ids = baseline(&h, 3).await;
    let mut asked = no_cancels(&h);
    h.cancel(1, &ids[1][0]).await.unwrap().unwrap();
    asked[1].insert(ids[1][0].clone());
    let before = h.status(0).await.unwrap().gateway_incarnation;
    h.kill_gateway().await.unwrap();
    // While the gateway is gone the market trades through every buy, and an
    // engine tries to place (journaled, never placed).
    h.fill_all().await.unwrap();
    let lost = h.submit(0, &price(0, 9)).await.unwrap();
    assert!(lost.is_err(), "no gateway, no order: {lost:?}");
    h.start_gateway().await.unwrap();
    for i in 0..2 {
        wait_until("the engine on the new incarnation", CONVERGE, || async {
            let s = h.status(i).await?;
            Ok((s.gateway_connected && s.gateway_incarnation != before).then_some(()))
        })
        .await
        .unwrap();
    }
    let report = h.converge(CONVERGE, &asked).await.unwrap();
    assert_filled(&report, 1);
    assert_eq!(report.executed_orders, 5, "{report:?}");
    // The herd trades on after the restart.
    h.submit_ok(0, "0.05").await.unwrap();
    h.converge(CONVERGE, &asked).await.unwrap();
    eprintln!(
        "gateway_kill9_and_restart took {:?}: {report:?}",
        start.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_kill9_and_restart() {
    let start = Instant::now();
    let mut h = herd(HerdOpts::default()).await;
    baseline(&h, 3).await;
    // e0 dies while it is placing.
    let url_ok = h.submit(0, &price(0, 3)).await.unwrap().is_ok();
    assert!(url_ok);
    h.kill_engine(0).await.unwrap();
    // Its orders fill while it is gone; e1 journals its own fills live.
    h.fill_all().await.unwrap();
    wait_until("e1 journals its fills", CONVERGE, || async {
        Ok((h.status(1).await?.fills_journaled == 3).then_some(()))
    })
    .await
    .unwrap();
    h.start_engine(0).await.unwrap();
    let report = h.converge(CONVERGE, &no_cancels(&h)).await.unwrap();
    assert_filled(&report, 0);
    assert_eq!(report.executed_orders, 7, "{report:?}");
    // Ids stay unique across the restart: a new order is a new order.
    h.submit_ok(0, "0.05").await.unwrap();
    let report = h.converge(CONVERGE, &no_cancels(&h)).await.unwrap();
    assert_eq!(report.venue_orders["e0"], 5, "{report:?}");
    eprintln!(
        "engine_kill9_and_restart took {:?}: {report:?}",
        start.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_restart_under_the_engine() {
    let start = Instant::now();
    let Ok(base_url) = std::env::var("TEST_DATABASE_URL") else {
        eprintln!(
            "TEST_DATABASE_URL is unset: running the SQLite variant of the database fault \
             (the engine is killed -9 with fills in flight and reopens its SQLite journal); \
             the Postgres backend-termination path did NOT run"
        );
        sqlite_variant().await;
        eprintln!(
            "database_restart_under_the_engine (SQLite variant) took {:?}",
            start.elapsed()
        );
        return;
    };
    eprintln!("TEST_DATABASE_URL is set: engines journal to Postgres; terminating e0's backends");
    let mut h = herd(HerdOpts {
        store: StoreKind::Postgres { base_url },
        ..HerdOpts::default()
    })
    .await;
    baseline(&h, 3).await;
    let killed = h.terminate_db_connections(0).await.unwrap();
    assert!(killed >= 1, "e0 had database connections to terminate");
    // Fills arrive while e0's pool holds dead connections.
    h.fill_all().await.unwrap();
    let killed_again = h.terminate_db_connections(0).await.unwrap();
    // e0 keeps placing (and journaling) once its pool has reconnected.
    wait_until("e0 places again", CONVERGE, || async {
        Ok(h.submit(0, "0.05").await?.ok())
    })
    .await
    .unwrap();
    let report = h.converge(CONVERGE, &no_cancels(&h)).await.unwrap();
    assert_eq!(report.executed_orders, 6, "{report:?}");
    assert_eq!(report.fills["e0"], 3, "{report:?}");
    let s = h.status(0).await.unwrap();
    assert!(s.gateway_connected);
    eprintln!(
        "database_restart_under_the_engine (Postgres; {killed} + {killed_again} backends terminated) took {:?}: {report:?}",
        start.elapsed()
    );
    h.cleanup().await.unwrap();
}

async fn sqlite_variant() {
    let mut h = herd(HerdOpts::default()).await;
    baseline(&h, 3).await;
    h.fill_all().await.unwrap();
    // Killed while the fills stream in: some may be journaled, some not.
    h.kill_engine(0).await.unwrap();
    h.start_engine(0).await.unwrap();
    let report = h.converge(CONVERGE, &no_cancels(&h)).await.unwrap();
    assert_eq!(report.executed_orders, 6, "{report:?}");
    assert_eq!(report.fills["e0"], 3, "{report:?}");
}

/// The chaos soak's short, seeded run (issue 22; the long one is the
/// `chaos-soak` binary, docs/faults.md): 40 steps of submits, cancels,
/// market moves, armed faults and kill -9 + restarts of the gateway, the
/// engines and kraken-sim (state file kept), with e1 running the grid and
/// the rangers, and the Bybit leg (bybit-sim, its gateway, a funding engine)
/// beside; every invariant (venue vs journals, no phantom, capital ledgers
/// vs open orders, funding positions vs the venue) checked after each step.
/// Seed 22's first 40 steps include every kind of step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_soak_short_seeded_run() {
    let report = herd_tests::soak::run(
        sim_bin(),
        22,
        herd_tests::soak::SoakLength::Steps(40),
        HerdOpts {
            engine_extra: herd_tests::soak::strategy_engines(2),
            funding_leg: true,
            ..HerdOpts::default()
        },
    )
    .await
    .unwrap();
    println!("{report}");
    assert!(report.violations.is_empty(), "{:#?}", report.violations);
    assert_eq!(report.checks, 40, "{report}");
    for (what, n) in [
        ("submits", report.submits),
        ("cancels", report.cancels),
        ("market moves", report.market_moves),
        ("faults", report.faults),
        ("gateway restarts", report.gateway_restarts),
        ("engine restarts", report.engine_restarts),
        ("simulator restarts", report.sim_restarts),
        ("funding rate changes", report.funding_rate_changes),
        ("bybit-sim restarts", report.bybit_sim_restarts),
        ("Bybit gateway restarts", report.bybit_gateway_restarts),
        ("funding engine restarts", report.funding_engine_restarts),
        ("capital holds checked", report.holds_checked),
        ("open hedges checked", report.open_hedges_checked),
    ] {
        assert!(n > 0, "no {what} in 40 steps: {report}");
    }
}

/// The engine's startup cleanup asks a refused cancel again (issue 22,
/// found by the chaos soak): e0 runs the rangers, is killed with -9 with
/// their entries resting, and restarts into a 4 s lockout. Its first cancels
/// of the previous run's entries are refused; they are asked again with a
/// backoff until the lockout ends, so none stays open owned by no ranger.
/// Before the fix the refused cancels were skipped and the entries stayed
/// open at the venue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_cleanup_asks_refused_cancels_again() {
    let start = Instant::now();
    let rangers = "[rangers]\nenabled = true\nmax_slots = 2\nentry_pct = \"0.30\"\n\
                   profit_pct = \"1.20\"\ncooldown_sec = 1\n";
    let mut h = herd(HerdOpts {
        engines: 1,
        engine_extra: vec![rangers.to_string()],
        ..HerdOpts::default()
    })
    .await;
    let open_of_e0 = |orders: Vec<serde_json::Value>| -> BTreeSet<String> {
        orders
            .iter()
            .filter(|o| o["status"] == "open")
            .filter_map(|o| o["cl_ord_id"].as_str())
            .filter(|cl| cl.starts_with("e0-"))
            .map(str::to_string)
            .collect()
    };
    let entries = wait_until("both rangers' entries resting", CONVERGE, || async {
        let open = open_of_e0(h.admin().orders().await?);
        Ok((open.len() == 2).then_some(open))
    })
    .await
    .unwrap();
    eprintln!("entries resting after {:?}", start.elapsed());
    h.kill_engine(0).await.unwrap();
    h.admin().lockout(4_000).await.unwrap();
    h.start_engine(0).await.unwrap();
    wait_until(
        "the previous run's entries cancelled at the venue",
        CONVERGE,
        || async {
            let orders = h.admin().orders().await?;
            let left: Vec<&serde_json::Value> = orders
                .iter()
                .filter(|o| {
                    o["cl_ord_id"]
                        .as_str()
                        .is_some_and(|cl| entries.contains(cl))
                        && o["status"] != "canceled"
                })
                .collect();
            Ok(left.is_empty().then_some(()))
        },
    )
    .await
    .unwrap();
    eprintln!("entries cancelled after {:?}", start.elapsed());
    // The lockout did refuse the cleanup's first cancels: what this test is
    // about happened.
    let log = h.engines[0]
        .logs
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap_or_default())
        .collect::<String>();
    assert!(
        log.contains("startup cleanup: cancel failed"),
        "no refused cleanup cancel in e0's logs"
    );
    assert!(
        !log.contains("startup cleanup: cancels still refused"),
        "the cleanup gave up"
    );
    h.cleanup().await.unwrap();
}
