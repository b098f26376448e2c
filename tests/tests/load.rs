//! Issue 9's load suite, as real processes: `kraken-sim` at Starter tier,
//! one `herd-gateway` (venue = kraken) on it with ten engines weighted
//! 1,1,1,1,1,2,2,2,3,3, each sending 100 requests/s (see
//! `herd_tests::load` for the mix; the engines are gRPC clients in this
//! process, one task and channel and token each).
//!
//! Asserts: zero rate-limit answers at the simulator; each engine's share of
//! the venue calls the gateway granted within 10 % of its weighted share,
//! measured once every engine has a backlog (before that an engine asking
//! for less than its share rightly gets only what it asks for); every
//! RESOURCE_EXHAUSTED answer carries a retry hint; the gateway's peak RSS
//! (VmHWM) stays under a bound, and is printed.
//!
//! The measured window is `HERD_LOAD_SECS` seconds, 10 by default so CI
//! stays fast; the benchmark (`cargo bench -p herd-tests --bench
//! gateway_bench`) runs the same scenario for 60 s.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::Duration;

use herd_tests::admin_client;
use herd_tests::kraken_harness::SimProcess;
use herd_tests::load::{self, LoadRun};

/// Peak RSS the gateway may reach under this load (debug build).
const RSS_BOUND_KIB: u64 = 256 * 1024;

fn window() -> Duration {
    let secs = std::env::var("HERD_LOAD_SECS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(10);
    Duration::from_secs(secs.max(1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_weighted_engines_at_100_rps_share_starter_budget_fairly() {
    let dir = tempfile::TempDir::new().unwrap();
    let sim = SimProcess::spawn(
        Path::new(env!("CARGO_BIN_EXE_kraken-sim")),
        "starter",
        &["--extra-pairs", &load::EXTRA_PAIRS.to_string()],
    )
    .await
    .unwrap();
    let engines = load::engines();
    let (gw, _http) = load::start_kraken_gateway(dir.path(), &sim.url(), &engines)
        .await
        .unwrap();
    let pid = gw.child.id().unwrap();
    let (_, idle_rss) = load::rss_kib(pid).unwrap();
    let mut admin = admin_client(&gw.url()).await.unwrap();

    let run = LoadRun::start(&gw.url(), &engines, 100).await.unwrap();
    // Shares are measured once every engine has calls waiting: from then on
    // all of them compete for the same counters.
    let before = load::wait_for_backlog(&admin, 10).await.unwrap();
    let window = window();
    let start = tokio::time::Instant::now();
    let mut every_second = tokio::time::interval(Duration::from_secs(1));
    let mut peak_seen = 0;
    loop {
        every_second.tick().await;
        peak_seen = peak_seen.max(load::rss_kib(pid).unwrap().0);
        if start.elapsed() >= window {
            break;
        }
    }
    let after = load::grants(&mut admin).await.unwrap();
    let tallies = run.stop().await.unwrap();

    let stats = sim.admin().stats().await.unwrap();
    let (hwm, rss) = load::rss_kib(pid).unwrap();
    let shares = load::shares(&engines, &before, &after);
    let total: u64 = shares.iter().map(|s| s.2).sum();
    eprintln!(
        "load window {window:?}: {total} venue calls granted to engines; sim requests {}",
        stats["stats"]["requests"]
    );
    eprintln!("engine weight grants share  wanted | sent placed cancelled queried exhausted other");
    for ((id, w, g, share, want), (_, t)) in shares.iter().zip(&tallies) {
        eprintln!(
            "{id:>6} {w:>6} {g:>6} {share:.3} {want:.3} | {} {} {} {} {} {:?}",
            t.sent, t.placed, t.cancelled, t.queried, t.exhausted, t.other
        );
    }
    eprintln!(
        "gateway RSS: idle {} KiB, peak (VmHWM) {} KiB, now {} KiB",
        idle_rss,
        hwm.max(peak_seen),
        rss
    );

    assert_eq!(
        stats["stats"]["rate_limit_errors"], 0,
        "the venue refused calls for rate: {stats}"
    );
    assert_eq!(stats["stats"]["lockout_errors"], 0, "{stats}");
    assert!(
        total >= 100,
        "too few grants in the window to judge shares: {total}"
    );
    for (id, w, g, share, want) in &shares {
        assert!(
            (share - want).abs() <= 0.10 * want,
            "{id} (weight {w}) got {g} grants, share {share:.4}, wanted {want:.4} +-10%: {shares:?}"
        );
    }
    for (id, t) in &tallies {
        assert!(t.exhausted > 0, "{id} was never told to back off: {t:?}");
        assert_eq!(
            t.exhausted_without_hint, 0,
            "{id}: RESOURCE_EXHAUSTED without a retry-after-ms hint"
        );
        assert!(t.placed > 0 && t.queried > 0, "{id}: {t:?}");
        assert!(t.cancelled > 0, "{id} cancelled nothing: {t:?}");
        // No other answer: the adapter's open-order guard looks at Kraken
        // before refusing when orders accepted since its last full view make
        // a pair look full (the crossing orders here fill at once).
        assert!(t.other.is_empty(), "{id}: unexpected errors {:?}", t.other);
    }
    assert!(
        hwm.max(peak_seen) < RSS_BOUND_KIB,
        "gateway peak RSS {} KiB over the bound {RSS_BOUND_KIB} KiB",
        hwm.max(peak_seen)
    );
    // The gateway and the simulator are killed when dropped.
    drop(gw);
}
