//! Sweep scaling: the same 16-configuration sweep (4 ranger entry_pct x 4
//! profit_pct, rangers and grid enabled) run with 1 thread and then with
//! one per core, on `herd_backtest::sweep::run_parallel` (what
//! `herdctl backtest --sweep` uses). Prints the wall times and the speed-up.
//!
//! Run: `cargo bench --workspace --bench backtest_sweep` (release profile);
//! `HERD_BENCH_CANDLES` sets the candles per run (default 20,000).
//! Results and the machine are in docs/benchmarks.md.

use std::collections::BTreeMap;
use std::time::Instant;

use herd_backtest::sim::{FillModel, FundingSetup, RegimeSetup, Setup};
use herd_backtest::sweep::run_parallel;
use herd_backtest::{Bar, engine_strategies, report, run};
use herd_paper::{FeePolicy, PaperInstrument};
use herd_strategies::grid::GridConfig;
use herd_strategies::rangers::RangerConfig;
use herd_strategies::strategy::RegimeView;
use rust_decimal::Decimal;
use rust_decimal::prelude::FromPrimitive;

/// The allocator herdctl runs sweeps with (clients/herdctl/src/main.rs).
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const START_MS: i64 = 1_704_067_200_000;

/// 1 m candles around 0.1: two sines (40 min and 1 day) and a seeded jitter.
fn candles(n: usize) -> Vec<Bar> {
    let mut seed = 12_345u64;
    let mut jitter = || {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((seed >> 11) as f64 / (1u64 << 53) as f64 - 0.5) * 0.001
    };
    let price = |i: usize, j: f64| {
        let t = i as f64;
        0.1 * (1.0
            + 0.01 * (std::f64::consts::TAU * t / 40.0).sin()
            + 0.03 * (std::f64::consts::TAU * t / 1440.0).sin()
            + j)
    };
    let d = |x: f64| Decimal::from_f64(x).unwrap_or(Decimal::ONE).round_dp(7);
    let mut open = price(0, 0.0);
    (0..n)
        .map(|i| {
            let close = price(i + 1, jitter());
            let bar = Bar {
                open_time_ms: START_MS + 60_000 * i as i64,
                open: d(open),
                high: d(open.max(close) * 1.0006),
                low: d(open.min(close) * 0.9995),
                close: d(close),
                volume: Decimal::from(1000),
            };
            open = close;
            bar
        })
        .collect()
}

fn setup() -> Setup {
    Setup {
        instrument: PaperInstrument::doge_usd().instrument,
        balances: BTreeMap::from([
            ("USD".into(), Decimal::from(5000)),
            ("DOGE".into(), Decimal::from(50_000)),
        ]),
        fee_policy: FeePolicy::Quote,
        fill: FillModel::default(),
        regime: RegimeSetup::Fixed(RegimeView {
            regime: "RANGING".into(),
            ready: true,
            confidence: 1.0,
            bias: 0.0,
        }),
        funding: FundingSetup::default(),
    }
}

fn main() {
    let n: usize = std::env::var("HERD_BENCH_CANDLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let bars = candles(n);
    let setup = setup();
    let combos: Vec<(Decimal, Decimal)> = ["0.15", "0.3", "0.45", "0.6"]
        .iter()
        .flat_map(|e| {
            ["1.0", "1.4", "1.8", "2.2"]
                .iter()
                .map(move |p| (e.parse().unwrap_or_default(), p.parse().unwrap_or_default()))
        })
        .collect();
    let one = |k: usize| -> Decimal {
        let (entry_pct, profit_pct) = combos[k];
        let rangers = RangerConfig {
            enabled: true,
            entry_pct,
            profit_pct,
            ..RangerConfig::default()
        };
        let grid = GridConfig {
            enabled: true,
            ..GridConfig::default()
        };
        let Ok(s) = engine_strategies(rangers, grid, "DOGEUSD", START_MS) else {
            return Decimal::ZERO;
        };
        match run(&setup, s, &bars, 60_000, &mut ()) {
            Ok(out) => report::build(&out, &[]).net_pnl,
            Err(_) => Decimal::ZERO,
        }
    };
    let items: Vec<usize> = (0..combos.len()).collect();
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    println!(
        "sweep of {} configs x {n} candles, {cores} core(s)",
        items.len()
    );
    println!("| threads | wall time | configs/s | speed-up |");
    println!("|---:|---:|---:|---:|");
    let mut base = None;
    let mut results = Vec::new();
    for threads in [1, cores.max(2)] {
        let started = Instant::now();
        let r = run_parallel(&items, threads, one);
        let secs = started.elapsed().as_secs_f64();
        let base_secs = *base.get_or_insert(secs);
        println!(
            "| {threads} | {secs:.2} s | {:.2} | {:.2}x |",
            items.len() as f64 / secs,
            base_secs / secs
        );
        results.push(r);
    }
    // Same results whatever the thread count (each run is independent).
    if results.windows(2).any(|w| w[0] != w[1]) {
        eprintln!("results differ between thread counts");
        std::process::exit(1);
    }
}
