//! Benchmark (not a timed test): what keeping 1,000 open orders of 10
//! engines current costs on Kraken at Starter tier, against kraken-sim.
//!
//! The gateway's poller (one OpenOrders for the whole key, QueryOrders in
//! batches of 50 only for orders that left the open list) is compared with
//! what clients without a gateway would do: every engine asking OpenOrders
//! for itself, and a single-bot client querying each order on its own.
//! Prints a table. Run with:
//!
//! ```text
//! CARGO_TARGET_DIR=/work/target-kraken cargo bench -p herd-tests --bench kraken_poll
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use herd_gateway::poller::poll_once;
use herd_gateway::registry::Registry;
use herd_gateway::service::Core;
use herd_kraken::common::enums::{KrakenOrderType, KrakenSide};
use herd_kraken::http::HttpConfig;
use herd_kraken::http::query::{AddOrderParams, OpenOrdersParams, QueryOrdersParams};
use herd_kraken::nonce::NonceGenerator;
use herd_kraken::{CREDENTIAL_SPEC, KrakenConfig, KrakenHttpClient, KrakenVenue, Tier};
use herd_tests::kraken_harness::{API_KEY, API_SECRET, SimProcess, credential_files};
use herd_venue::{Clock, NewOrder, OrderState, OrderType, PlaceOutcome, Side, SystemClock, Venue};
use rust_decimal::Decimal;

const ENGINES: usize = 10;
const PER_ENGINE: usize = 100;
/// DOGEUSD and the synthetic P1USD..P16USD: 17 pairs x 59 orders >= 1,000
/// (Starter allows 60 open orders per pair).
const EXTRA_PAIRS: usize = 16;
/// Starter's REST counter decay: one private call per this many seconds.
const STARTER_S_PER_CALL: f64 = 1.0 / 0.33;
const STARTER_BURST: f64 = 15.0;

fn symbol(i: usize) -> String {
    match i % (EXTRA_PAIRS + 1) {
        0 => "DOGEUSD".to_string(),
        n => format!("P{n}USD"),
    }
}

struct Row {
    scenario: &'static str,
    calls: usize,
    first_ms: f64,
    sustained_s: f64,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let bin = Path::new(env!("CARGO_BIN_EXE_kraken-sim"));
    let sim = SimProcess::spawn(bin, "starter", &["--extra-pairs", &EXTRA_PAIRS.to_string()])
        .await
        .unwrap();
    let dir = tempfile::TempDir::new().unwrap();
    let cfg = KrakenConfig {
        tier: Tier::Starter,
        base_url: sim.url(),
        credentials: credential_files(dir.path()).unwrap(),
        ..KrakenConfig::default()
    };
    let venue = Arc::new(KrakenVenue::new(&cfg).unwrap());
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let engines: Vec<(String, String)> = (0..ENGINES)
        .map(|k| (format!("e{k}"), format!("e{k}-")))
        .collect();
    let userrefs: HashMap<String, (i32, i32)> = (0..ENGINES)
        .map(|k| {
            let lo = 1000 * (i32::try_from(k).unwrap() + 1);
            (format!("e{k}"), (lo, lo + 999))
        })
        .collect();
    let registry = Arc::new(Registry::new(&engines, "bench".into(), 100_000));
    let core = Core::new(
        venue.clone(),
        None,
        registry.clone(),
        clock.clone(),
        userrefs,
    );

    // 1,000 open orders, 100 per engine, placed as the gateway places them.
    let t0 = Instant::now();
    for k in 0..ENGINES {
        for j in 0..PER_ENGINE {
            let g = k * PER_ENGINE + j;
            let engine = format!("e{k}");
            let order = NewOrder {
                client_order_id: format!("e{k}-o{j}"),
                symbol: symbol(g),
                side: Side::Buy,
                order_type: OrderType::Limit,
                volume: Decimal::from(100),
                price: Some(Decimal::new(1000 - i64::try_from(j % 50).unwrap(), 4)),
                post_only: true,
                userref: 1000 * (i32::try_from(k).unwrap() + 1),
                reduce_only: false,
            };
            registry.register(
                &engine,
                &format!("o{j}"),
                OrderState::pending(&order, clock.now_ms()),
            );
            match venue.place_order(&order).await.unwrap() {
                PlaceOutcome::Accepted(state) => {
                    registry.apply(&state, clock.now_ms());
                }
                PlaceOutcome::Unknown { reason } => panic!("unknown outcome: {reason}"),
            }
        }
    }
    let place_s = t0.elapsed().as_secs_f64();
    let tracked = registry.tracked().len();
    assert_eq!(tracked, ENGINES * PER_ENGINE);

    let mut rows = Vec::new();

    // Gateway poller, all 1,000 still open: one OpenOrders.
    let t = Instant::now();
    let r = poll_once(&core, 30_000).await.unwrap();
    rows.push(Row {
        scenario: "gateway poller, all open",
        calls: r.venue_calls,
        first_ms: t.elapsed().as_secs_f64() * 1e3,
        sustained_s: r.venue_calls as f64 * STARTER_S_PER_CALL,
    });

    // Two pairs trade through their orders: ~118 leave the open list and are
    // fetched with QueryOrders, 50 a call.
    sim.admin().set_price("XDGUSD", "0.05").await.unwrap();
    sim.admin().set_price("P1USD", "0.05").await.unwrap();
    let t = Instant::now();
    let r = poll_once(&core, 30_000).await.unwrap();
    let left = ENGINES * PER_ENGINE - registry.tracked().len();
    rows.push(Row {
        scenario: "gateway poller, ~12% filled since last poll",
        calls: r.venue_calls,
        first_ms: t.elapsed().as_secs_f64() * 1e3,
        sustained_s: r.venue_calls as f64 * STARTER_S_PER_CALL,
    });

    // Sustained: spend the burst, then time cycles paced by the budget.
    let remaining = registry.tracked().len();
    for _ in 0..12 {
        poll_once(&core, 30_000).await.unwrap();
    }
    let cycles = 4;
    let t = Instant::now();
    for _ in 0..cycles {
        assert_eq!(poll_once(&core, 30_000).await.unwrap().venue_calls, 1);
    }
    let measured_period = t.elapsed().as_secs_f64() / f64::from(cycles);
    let stats = sim.admin().stats().await.unwrap();

    // Without a gateway, on a second simulator with its limits off (so the
    // calls can be timed at all): 1,000 open orders again, then what
    // gateway-less clients would call.
    let raw_sim = SimProcess::spawn(
        bin,
        "starter",
        &["--extra-pairs", &EXTRA_PAIRS.to_string(), "--no-limits"],
    )
    .await
    .unwrap();
    let http = KrakenHttpClient::new(
        &HttpConfig {
            base_url: raw_sim.url(),
            ..HttpConfig::default()
        },
        Some(CREDENTIAL_SPEC.parse(API_KEY, API_SECRET).unwrap()),
        NonceGenerator::new(None).unwrap(),
    )
    .unwrap();
    let mut txids = Vec::new();
    for g in 0..ENGINES * PER_ENGINE {
        let sym = symbol(g);
        let pair = if sym == "DOGEUSD" {
            "XDGUSD".to_string()
        } else {
            sym
        };
        let r = http
            .add_order(&AddOrderParams {
                pair,
                side: KrakenSide::Buy,
                ordertype: KrakenOrderType::Limit,
                volume: Decimal::from(100),
                price: Some(Decimal::new(1000, 4)),
                post_only: true,
                userref: None,
                cl_ord_id: None,
                deadline: None,
                validate: false,
            })
            .await
            .unwrap();
        txids.extend(r.txid);
    }
    let t = Instant::now();
    for _ in 0..ENGINES {
        let open = http
            .open_orders(&OpenOrdersParams::default())
            .await
            .unwrap();
        assert_eq!(open.open.len(), ENGINES * PER_ENGINE);
    }
    rows.push(Row {
        scenario: "no gateway: 10 engines, OpenOrders each",
        calls: ENGINES,
        first_ms: t.elapsed().as_secs_f64() * 1e3,
        sustained_s: ENGINES as f64 * STARTER_S_PER_CALL,
    });
    let t = Instant::now();
    for txid in &txids {
        http.query_orders(&QueryOrdersParams {
            txids: vec![txid.clone()],
            ..QueryOrdersParams::default()
        })
        .await
        .unwrap();
    }
    let naive_calls = txids.len();
    rows.push(Row {
        scenario: "no gateway: naive QueryOrders per order",
        calls: naive_calls,
        first_ms: t.elapsed().as_secs_f64() * 1e3,
        sustained_s: naive_calls as f64 * STARTER_S_PER_CALL,
    });
    let naive_first_refresh_s = (naive_calls as f64 - STARTER_BURST) * STARTER_S_PER_CALL;

    println!(
        "kraken_poll: {tracked} tracked orders, {ENGINES} engines, Starter tier, kraken-sim on loopback"
    );
    println!(
        "placed 1,000 orders in {place_s:.2} s (AddOrder is on the per-pair trading counter, not REST)"
    );
    println!();
    println!(
        "| {:<44} | {:>22} | {:>24} | {:>30} |",
        "refresh of 1,000 open orders",
        "venue calls / refresh",
        "calls per 1,000 tracked",
        "wall time of one refresh (ms)"
    );
    println!("|{:-<46}|{:->24}|{:->26}|{:->32}|", "", "", "", "");
    for r in &rows {
        let per_1000 = r.calls as f64 * 1000.0 / tracked as f64;
        println!(
            "| {:<44} | {:>22} | {:>24.1} | {:>30.1} |",
            r.scenario, r.calls, per_1000, r.first_ms
        );
    }
    println!();
    println!(
        "Starter pacing (REST counter 15, decay 0.33/s => {STARTER_S_PER_CALL:.2} s per private call):"
    );
    for r in &rows {
        println!(
            "  {:<44} sustained refresh period {:>8.1} s",
            r.scenario, r.sustained_s
        );
    }
    println!(
        "  measured: {cycles} gateway poll cycles ({remaining} tracked) through the adapter's Starter budget after its burst: {measured_period:.2} s per cycle"
    );
    println!(
        "  naive per-order querying: first full refresh needs {naive_first_refresh_s:.0} s (~{:.0} min) even after a full burst",
        naive_first_refresh_s / 60.0
    );
    println!("  orders that left the open list in the second scenario: {left}");
    println!(
        "  sim rate-limit answers during the bench: {}",
        stats["stats"]["rate_limit_errors"]
    );
    println!(
        "  (wall times of the two \"no gateway\" rows are unthrottled, on a second simulator with --no-limits)"
    );
}
